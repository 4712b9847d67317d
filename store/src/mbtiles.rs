//! An MBTiles 1.3 archive writer (a SQLite file of tiles): the tile
//! archive's SQL lives here with the rest of the workspace's.

use std::path::{Path, PathBuf};

use crate::StoreError;
use crate::gpkg::At;

/// Writes tiles and metadata into a new MBTiles file, in one transaction
/// committed by [`MbTilesWriter::finish`].
#[derive(Debug)]
pub struct MbTilesWriter {
    path: PathBuf,
    conn: rusqlite::Connection,
}

impl MbTilesWriter {
    /// Creates the file's tables (the file is expected not to exist, or to
    /// be empty) and opens the transaction.
    ///
    /// # Errors
    /// SQLite errors (a file that already has the tables among them).
    pub fn create(path: &Path) -> Result<MbTilesWriter, StoreError> {
        let conn = rusqlite::Connection::open(path).at(path)?;
        conn.execute_batch(
            "PRAGMA application_id = 0x4d504258;
             PRAGMA journal_mode = OFF;
             PRAGMA synchronous = OFF;
             CREATE TABLE metadata (name TEXT NOT NULL, value TEXT);
             CREATE UNIQUE INDEX name ON metadata (name);
             CREATE TABLE tiles (zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL,
                                 tile_row INTEGER NOT NULL, tile_data BLOB NOT NULL);
             CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row);
             BEGIN;",
        )
        .at(path)?;
        Ok(MbTilesWriter {
            path: path.to_owned(),
            conn,
        })
    }

    /// Adds one tile; `tms_row` counts from the south (MBTiles' TMS rows).
    ///
    /// # Errors
    /// SQLite errors (a tile written twice among them).
    pub fn add(
        &mut self,
        zoom: u8,
        column: u32,
        tms_row: u32,
        data: &[u8],
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO tiles VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(rusqlite::params![zoom, column, tms_row, data]))
            .at(&self.path)
            .map(drop)
    }

    /// Writes the metadata rows, commits and closes the file.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn finish(self, metadata: &[(&str, String)]) -> Result<(), StoreError> {
        for (k, v) in metadata {
            self.conn
                .execute("INSERT INTO metadata VALUES (?1, ?2)", [k, v.as_str()])
                .at(&self.path)?;
        }
        self.conn.execute_batch("COMMIT;").at(&self.path)?;
        let path = self.path.clone();
        self.conn.close().map_err(|(_, e)| e).at(&path)
    }
}
