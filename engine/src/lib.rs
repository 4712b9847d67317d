//! wangge engine: the grid-management data model and everything that works on
//! it without knowing about HTTP or tiles.
//!
//! * [`codes`]: validated administrative and grid codes, id-card numbers.
//! * [`model`]: layers, their schemas and the typed entities.
//! * [`crs`]: WGS84 / GCJ-02 / BD-09 conversions.
//! * [`io`]: streaming GeoJSON and CSV readers and writers.
//! * [`geom`]: make-valid, overlays, areas.
//! * [`validate`]: validation and repair of polygon layers.
//! * [`synth`]: the deterministic synthetic Beijing.
//! * [`store`]: the GeoPackage project store.

pub mod codes;
pub mod crs;
pub mod geom;
pub mod io;
pub mod model;
pub mod store;
pub mod synth;
pub mod validate;
