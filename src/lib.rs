//! wangge (网格): a GIS engine and vector-tile server for grid-based community
//! management. This crate wires the engine, partitioner and tiler into the
//! `wangge` command line; see [`cli`].

mod assign_cli;
pub mod cli;
mod edit_cli;
mod partition_cli;
pub mod serve;
mod tiles_cli;
