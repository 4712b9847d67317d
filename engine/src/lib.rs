//! wangge engine: the grid-management data model and everything that works on
//! it without knowing about HTTP or tiles.
//!
//! * [`codes`], [`model`], [`store`]: re-exported from [`wangge_store`]
//!   (codes, layers and schemas, the GeoPackage store).
//! * [`crs`]: WGS84 / GCJ-02 / BD-09 conversions.
//! * [`io`]: streaming GeoJSON and CSV readers and writers.
//! * [`geom`]: make-valid, overlays, areas.
//! * [`index`]: the point-in-polygon index ([`index::GridIndex`]).
//! * [`points`]: a static k-d index of points (the layer's vertex searches).
//! * [`validate`]: validation and repair of polygon layers.
//! * [`validity`]: OGC validity of (multi)polygons in O(n log n).
//! * [`privacy`]: the publication rule for counts (k-suppression, complementary).
//! * [`progress`]: progress reporting for long work.
//! * [`assign`]: grid layers and batch assignment of point records.
//! * [`project`]: a store's wangge layers against their fixed schemas
//!   (stores edited or written by QGIS, GDAL and other tools).

pub mod assign;
pub mod changes;
pub mod crs;
pub mod geom;
pub mod index;
pub mod io;
pub mod points;
pub mod privacy;
pub mod progress;
pub mod project;
pub mod time;
pub mod validate;
pub mod validity;

/// The store (GeoPackage), from [`wangge_store`]: the engine's paths
/// `wangge_engine::store::…` keep working.
pub use wangge_store as store;
pub use wangge_store::{codes, model};
