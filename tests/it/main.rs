//! Integration tests: one binary, many modules (see ARCHITECTURE.md).

mod crs;
mod gpkg;
mod support;
