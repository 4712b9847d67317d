//! wangge (网格): a GIS engine and vector-tile server for grid-based community
//! management. This crate wires the engine, partitioner and tiler into the
//! `wangge` command line; see [`cli`].

pub mod cli;
pub mod serve;
