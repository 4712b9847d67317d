//! wangge tiler: Mapbox Vector Tiles from a wangge store, served on demand
//! or exported to PMTiles / MBTiles archives.
//!
//! * [`tile`]: Web Mercator tile math ([`tile::TileCoord`]).
//! * [`mvt`]: the MVT 2.1 encoder (clipping, simplification, winding,
//!   protobuf) and a small decoder.
//! * [`source`]: [`Tiler`], the store's layers in memory with an R-tree,
//!   encoding a tile on demand. Persons are only ever emitted as aggregates.
//! * [`changes`]: what a reload after an edit changed, and which tiles
//!   that can alter (exact invalidation).
//! * [`mod@export`]: PMTiles v3 and MBTiles archives of a zoom range.
//!
//! ```no_run
//! # fn main() -> Result<(), wangge_tiler::TilerError> {
//! let tiler = wangge_tiler::Tiler::open(std::path::Path::new("demo/beijing.gpkg"))?;
//! let mvt: Vec<u8> = tiler.tile(14, 13492, 6206)?; // uncompressed, empty when no feature
//! # Ok(()) }
//! ```

use std::path::PathBuf;

pub mod changes;
pub mod export;
pub mod mvt;
pub mod serving;
pub mod source;
pub mod tile;

pub use changes::{Changes, LayerChanges};
pub use export::{ExportSummary, export, export_in};
pub use source::{FieldType, LayerInfo, Tiler, TilerOptions, Touched};
pub use tile::TileCoord;

/// Everything the tiler can fail on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TilerError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] wangge_engine::store::StoreError),
    /// A tile address out of range.
    #[error(transparent)]
    Tile(#[from] tile::InvalidTile),
    /// Writing an archive failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Bad export parameters (zoom range, file extension).
    #[error("{0}")]
    Export(String),
}
