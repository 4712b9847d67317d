//! Integration tests: one binary, many modules (see ARCHITECTURE.md).

mod crs;

mod support;
mod validate;
mod bad_input;
mod synth;
mod gpkg;
