//! Integration tests: one binary, many modules (see ARCHITECTURE.md).

mod crs;

mod assign;
mod bad_input;
mod gpkg;
mod locate_truth;
mod partition;
mod support;
mod synth;
mod tiles;
mod validate;
