//! Integration tests: one binary, many modules (see ARCHITECTURE.md).

mod crs;
mod edit;

mod assign;
mod bad_input;
mod changes;
mod foreign;
mod gpkg;
mod locate_truth;
mod partition;
mod postgis;
mod privacy;
mod registries;
mod serve;
mod support;
mod synth;
mod tiles;
mod validate;
mod viewer;
