//! wangge storage: the data model and the store that keeps it.
//!
//! This is the bottom of the crate graph (store → engine →
//! synth/partitioner → tiler → server → CLI) and the only crate that speaks
//! SQL or depends on a database client.
//!
//! * [`codes`]: validated administrative and grid codes, id-card numbers.
//! * [`model`]: layers, their schemas and the typed entities.
//! * [`Store`]: a project store, one GeoPackage file that QGIS and GDAL
//!   open directly (see [`gpkg`] for its layout), with typed operations for
//!   layers, counts, versions, locks and history ([`versions`]).
//! * [`project`]: a store's wangge layers against their fixed schemas
//!   (stores edited or written by QGIS, GDAL and other tools).
//! * [`postgis`]: the same store in a PostgreSQL + PostGIS database
//!   ([`PgStore`]), and [`AnyStore`], either backend behind one type, with
//!   [`copy`] between them.
//! * [`mbtiles`]: the MBTiles (SQLite) tile archive writer.

mod backend;
pub mod changes;
mod changes_pg;
pub mod codes;
pub mod gpkg;
pub mod mbtiles;
pub mod model;
pub mod postgis;
mod postgis_reads;
mod postgis_tx;
pub mod project;
mod queries;
pub mod versions;

pub use backend::{AnyStore, AnyWriter, CopyReport, Reads, WRITE_GENERATION, copy};
pub use gpkg::*;
pub use postgis::{PgLayerWriter, PgStore};
pub use queries::Selection;
