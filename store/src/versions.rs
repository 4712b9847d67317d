//! Versions, locks and history of the grids, and the statements a
//! partition or an edit runs inside its write transaction.
//!
//! Besides the `grids` layer and the buildings' `grid_code`, every write of
//! a partition records a new version of each community it touched in three
//! plain tables (GeoPackage allows tables outside `gpkg_contents`):
//!
//! * `wangge_versions(community, version, author, created, reason, op)`
//! * `wangge_version_grids(community, version, code, households, persons,
//!   buildings, area_m2, geom)`: the grids as they were at that version;
//! * `wangge_version_buildings(community, version, building, grid,
//!   households)`: where each building was.
//!
//! `wangge_grid_locks(code)` holds the grids a planner locked.
//!
//! Reads are methods of [`Store`]; writes are methods of [`Tx`], the
//! statements of one open write transaction (a [`LayerWriter`]'s), so that
//! they commit or roll back together with the features it inserts.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use geo_types::{Geometry, Rect};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::gpkg::{At, quote, rtree_name, table_exists, where_in_box};
use crate::model::Layer;
use crate::postgis::PgStore;
use crate::{LayerWriter, Store, StoreError, decode_geometry, encode_geometry};

/// Rows from which a bulk update of buildings drops their key indexes and
/// builds them once after (one partitioned community has tens).
const BULK_ROWS: usize = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wangge_versions (
  community TEXT NOT NULL, version INTEGER NOT NULL, author TEXT NOT NULL,
  created TEXT NOT NULL, reason TEXT NOT NULL, op TEXT NOT NULL,
  PRIMARY KEY (community, version));
CREATE TABLE IF NOT EXISTS wangge_version_grids (
  community TEXT NOT NULL, version INTEGER NOT NULL, code TEXT NOT NULL,
  households INTEGER NOT NULL, persons INTEGER NOT NULL, buildings INTEGER NOT NULL,
  area_m2 REAL NOT NULL, geom BLOB,
  PRIMARY KEY (community, version, code));
CREATE TABLE IF NOT EXISTS wangge_version_buildings (
  community TEXT NOT NULL, version INTEGER NOT NULL, building TEXT NOT NULL,
  grid TEXT NOT NULL, households INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS wangge_version_buildings_cv
  ON wangge_version_buildings (community, version);
CREATE TABLE IF NOT EXISTS wangge_grid_locks (code TEXT PRIMARY KEY);
";

/// Who made a version and why.
#[derive(Debug, Clone)]
pub struct VersionMeta {
    /// Author (user name).
    pub author: String,
    /// Free-text reason.
    pub reason: String,
    /// The operation, e.g. `partition` or `merge 110101001001001 …`.
    pub op: String,
}

/// One version of a community, as `wangge history` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// The community's code.
    pub community: String,
    /// Version number (1 = first partition).
    pub version: i64,
    /// Who made it.
    pub author: String,
    /// When (UTC, ISO 8601).
    pub created: String,
    /// The operation.
    pub op: String,
    /// Why.
    pub reason: String,
    /// Grids at this version.
    pub grids: i64,
    /// Households at this version.
    pub households: i64,
}

/// A grid as a version recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionGrid {
    /// The grid's code.
    pub code: String,
    /// Households.
    pub households: i64,
    /// Persons.
    pub persons: i64,
    /// Buildings.
    pub buildings: i64,
    /// Area (m²).
    pub area_m2: f64,
}

/// Where a version put one building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionBuilding {
    /// The building's id.
    pub building: String,
    /// Its grid's code.
    pub grid: String,
    /// Its households.
    pub households: i64,
}

/// One recorded version of a community: its grids by code and its
/// buildings by id.
pub type VersionContents = (
    BTreeMap<String, VersionGrid>,
    BTreeMap<String, VersionBuilding>,
);

/// One row of `wangge_versions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// The community's code.
    pub community: String,
    /// Version number.
    pub version: i64,
    /// Who made it.
    pub author: String,
    /// When (UTC, ISO 8601).
    pub created: String,
    /// Why.
    pub reason: String,
    /// The operation.
    pub op: String,
}

/// Every row of the version and lock tables, as a copy between stores
/// moves them: versions, the grids (with their geometry) and buildings of
/// each, and the locked grid codes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionDump {
    /// `wangge_versions`, by community and version.
    pub versions: Vec<VersionRecord>,
    /// `wangge_version_grids`: community, version, the grid, its geometry.
    pub grids: Vec<(String, i64, VersionGrid, Option<Geometry<f64>>)>,
    /// `wangge_version_buildings`: community, version, the building.
    pub buildings: Vec<(String, i64, VersionBuilding)>,
    /// `wangge_grid_locks`, sorted.
    pub locks: Vec<String>,
}

/// A point feature of an entity layer, as [`Tx::points_in`] reads it.
#[derive(Debug, Clone)]
pub struct PointEntity {
    /// The feature id.
    pub fid: i64,
    /// Its geometry (a point for the entity layers; anything a foreign tool
    /// wrote otherwise).
    pub geometry: Option<Geometry<f64>>,
    /// Its `grid_code`.
    pub grid_code: Option<String>,
}

/// The statements of one open write transaction: everything a partition or
/// an edit writes besides the features it inserts. Get one from
/// [`LayerWriter::tx`]; it commits or rolls back with the writer.
#[derive(Debug, Clone, Copy)]
pub struct Tx<'a>(TxOn<'a>);

/// The backend a [`Tx`] writes to.
#[derive(Debug, Clone, Copy)]
enum TxOn<'a> {
    /// The open SQLite transaction of a GeoPackage writer.
    Gpkg {
        conn: &'a Connection,
        path: &'a Path,
    },
    /// The open transaction of a PostgreSQL writer.
    Pg(&'a PgStore),
}

impl<'a> Tx<'a> {
    /// The statements of a GeoPackage transaction open on `conn`.
    fn gpkg(conn: &'a Connection, path: &'a Path) -> Tx<'a> {
        Tx(TxOn::Gpkg { conn, path })
    }

    /// The statements of the transaction a PostgreSQL writer has open on
    /// `store`'s connection.
    pub(crate) fn pg(store: &'a PgStore) -> Tx<'a> {
        Tx(TxOn::Pg(store))
    }
}

impl LayerWriter<'_> {
    /// The statements of this writer's transaction.
    pub fn tx(&self) -> Tx<'_> {
        Tx::gpkg(self.connection(), self.path())
    }
}

impl Store {
    /// Read-only statements on the store, outside any write transaction.
    fn reads(&self) -> Tx<'_> {
        Tx::gpkg(self.connection(), self.path())
    }

    /// Creates the version and lock tables when missing.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn ensure_version_tables(&self) -> Result<(), StoreError> {
        self.reads().ensure_version_tables()
    }

    /// True when the version and lock tables exist (reads never create
    /// them: a store is only written by writes).
    fn has_version_tables(&self) -> Result<bool, StoreError> {
        Ok(
            table_exists(self.connection(), "wangge_versions").at(self.path())?
                && table_exists(self.connection(), "wangge_grid_locks").at(self.path())?,
        )
    }

    /// The latest version of a community (0 when it has none).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn latest_version(&self, community: &str) -> Result<i64, StoreError> {
        if !self.has_version_tables()? {
            return Ok(0);
        }
        self.reads().latest_version(community)
    }

    /// The locked grids of a community.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn locks(&self, community: &str) -> Result<HashSet<String>, StoreError> {
        if !self.has_version_tables()? {
            return Ok(HashSet::new());
        }
        self.reads().locks(community)
    }

    /// True when the grid is locked.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn is_locked(&self, grid: &str) -> Result<bool, StoreError> {
        if !self.has_version_tables()? {
            return Ok(false);
        }
        self.connection()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM wangge_grid_locks WHERE code = ?1)",
                [grid],
                |r| r.get(0),
            )
            .at(self.path())
    }

    /// A number that changes whenever another connection commits a write
    /// to the store (SQLite's `PRAGMA data_version` on this connection):
    /// what a serving process polls to notice another process's writes.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.connection()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .at(self.path())
    }

    /// The position of the last recorded version in the store's log of
    /// versions (0 when there is none): what [`Store::versions_after`]
    /// continues from.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn last_version_position(&self) -> Result<i64, StoreError> {
        if !self.has_version_tables()? {
            return Ok(0);
        }
        self.connection()
            .query_row(
                "SELECT coalesce(max(rowid), 0) FROM wangge_versions",
                [],
                |r| r.get(0),
            )
            .at(self.path())
    }

    /// The versions recorded after position `after` of the log, in the
    /// order they were written: `(position, community)`. Every write of a
    /// partition or an edit, by any process, appends here in its
    /// transaction, so a reader that remembers the last position it saw
    /// misses none.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn versions_after(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        if !self.has_version_tables()? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .connection()
            .prepare("SELECT rowid, community FROM wangge_versions WHERE rowid > ?1 ORDER BY rowid")
            .at(self.path())?;
        let rows = stmt
            .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))
            .at(self.path())?;
        rows.collect::<rusqlite::Result<_>>().at(self.path())
    }

    /// Every grid code a community ever had in a recorded version.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn past_grid_codes(&self, community: &str) -> Result<Vec<String>, StoreError> {
        if !self.has_version_tables()? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .connection()
            .prepare("SELECT DISTINCT code FROM wangge_version_grids WHERE community = ?1")
            .at(self.path())?;
        let rows = stmt.query_map([community], |r| r.get(0)).at(self.path())?;
        rows.collect::<rusqlite::Result<_>>().at(self.path())
    }

    /// The versions of one community (or of all), newest first, at most
    /// `limit`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn history(
        &self,
        community: Option<&str>,
        limit: usize,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        if !self.has_version_tables()? {
            return Ok(Vec::new());
        }
        let path = self.path();
        let mut stmt = self
            .connection()
            .prepare(
                "SELECT v.community, v.version, v.author, v.created, v.op, v.reason,
                        (SELECT count(*) FROM wangge_version_grids g
                          WHERE g.community = v.community AND g.version = v.version),
                        (SELECT coalesce(sum(households), 0) FROM wangge_version_grids g
                          WHERE g.community = v.community AND g.version = v.version)
                   FROM wangge_versions v
                  WHERE ?1 IS NULL OR v.community = ?1
                  ORDER BY v.created DESC, v.community, v.version DESC
                  LIMIT ?2",
            )
            .at(path)?;
        let rows = stmt
            .query_map(params![community, limit as i64], |r| {
                Ok(VersionInfo {
                    community: r.get(0)?,
                    version: r.get(1)?,
                    author: r.get(2)?,
                    created: r.get(3)?,
                    op: r.get(4)?,
                    reason: r.get(5)?,
                    grids: r.get(6)?,
                    households: r.get(7)?,
                })
            })
            .at(path)?;
        rows.collect::<rusqlite::Result<_>>().at(path)
    }

    /// The grids (by code) and the buildings (by id) of one version of a
    /// community.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the community has no such version;
    /// SQLite errors.
    pub fn version(&self, community: &str, version: i64) -> Result<VersionContents, StoreError> {
        let (conn, path) = (self.connection(), self.path());
        if !self.has_version_tables()? {
            return Err(StoreError::NotFound {
                what: format!("version {version} of community {community}"),
            });
        }
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM wangge_versions WHERE community = ?1 AND version = ?2)",
                params![community, version],
                |r| r.get(0),
            )
            .at(path)?;
        if !exists {
            return Err(StoreError::NotFound {
                what: format!("version {version} of community {community}"),
            });
        }
        let mut stmt = conn
            .prepare(
                "SELECT code, households, persons, buildings, area_m2 FROM wangge_version_grids
                  WHERE community = ?1 AND version = ?2",
            )
            .at(path)?;
        let grids = stmt
            .query_map(params![community, version], |r| {
                let g = VersionGrid {
                    code: r.get(0)?,
                    households: r.get(1)?,
                    persons: r.get(2)?,
                    buildings: r.get(3)?,
                    area_m2: r.get(4)?,
                };
                Ok((g.code.clone(), g))
            })
            .at(path)?
            .collect::<rusqlite::Result<_>>()
            .at(path)?;
        let mut stmt = conn
            .prepare(
                "SELECT building, grid, households FROM wangge_version_buildings
                  WHERE community = ?1 AND version = ?2",
            )
            .at(path)?;
        let buildings = stmt
            .query_map(params![community, version], |r| {
                let b = VersionBuilding {
                    building: r.get(0)?,
                    grid: r.get(1)?,
                    households: r.get(2)?,
                };
                Ok((b.building.clone(), b))
            })
            .at(path)?
            .collect::<rusqlite::Result<_>>()
            .at(path)?;
        Ok((grids, buildings))
    }
}

impl Store {
    /// Every row of the version and lock tables (empty when the store has
    /// none), for [`crate::copy`].
    ///
    /// # Errors
    /// SQLite errors; [`StoreError::Geometry`] for an unreadable grid
    /// geometry.
    pub fn dump_versions(&self) -> Result<VersionDump, StoreError> {
        let (conn, path) = (self.connection(), self.path());
        let mut dump = VersionDump::default();
        if !self.has_version_tables()? {
            return Ok(dump);
        }
        let mut stmt = conn
            .prepare(
                "SELECT community, version, author, created, reason, op FROM wangge_versions
                  ORDER BY community, version",
            )
            .at(path)?;
        dump.versions = stmt
            .query_map([], |r| {
                Ok(VersionRecord {
                    community: r.get(0)?,
                    version: r.get(1)?,
                    author: r.get(2)?,
                    created: r.get(3)?,
                    reason: r.get(4)?,
                    op: r.get(5)?,
                })
            })
            .at(path)?
            .collect::<rusqlite::Result<_>>()
            .at(path)?;
        let mut stmt = conn
            .prepare(
                "SELECT community, version, code, households, persons, buildings, area_m2, geom
                   FROM wangge_version_grids ORDER BY community, version, code",
            )
            .at(path)?;
        let mut rows = stmt.query([]).at(path)?;
        while let Some(r) = rows.next().at(path)? {
            let grid = VersionGrid {
                code: r.get(2).at(path)?,
                households: r.get(3).at(path)?,
                persons: r.get(4).at(path)?,
                buildings: r.get(5).at(path)?,
                area_m2: r.get(6).at(path)?,
            };
            let blob: Option<Vec<u8>> = r.get(7).at(path)?;
            let geom = blob
                .map(|b| {
                    decode_geometry(&b).map_err(|e| StoreError::Geometry {
                        layer: "wangge_version_grids".into(),
                        fid: dump.grids.len() as i64 + 1,
                        reason: e.to_string(),
                    })
                })
                .transpose()?;
            dump.grids
                .push((r.get(0).at(path)?, r.get(1).at(path)?, grid, geom));
        }
        let mut stmt = conn
            .prepare(
                "SELECT community, version, building, grid, households
                   FROM wangge_version_buildings ORDER BY community, version, rowid",
            )
            .at(path)?;
        dump.buildings = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    VersionBuilding {
                        building: r.get(2)?,
                        grid: r.get(3)?,
                        households: r.get(4)?,
                    },
                ))
            })
            .at(path)?
            .collect::<rusqlite::Result<_>>()
            .at(path)?;
        let mut stmt = conn
            .prepare("SELECT code FROM wangge_grid_locks ORDER BY code")
            .at(path)?;
        dump.locks = stmt
            .query_map([], |r| r.get(0))
            .at(path)?
            .collect::<rusqlite::Result<_>>()
            .at(path)?;
        Ok(dump)
    }
}

impl Store {
    /// Writes every row of `dump` into the version and lock tables, in one
    /// transaction ([`Tx::load_versions`]).
    ///
    /// # Errors
    /// SQLite errors, e.g. a version that is already there.
    pub fn load_versions(&mut self, dump: &VersionDump) -> Result<(), StoreError> {
        let path = self.path();
        let tx = rusqlite::Transaction::new_unchecked(
            self.connection(),
            rusqlite::TransactionBehavior::Immediate,
        )
        .at(path)?;
        Tx::gpkg(&tx, path).load_versions(dump)?;
        tx.commit().at(path)
    }
}

impl Tx<'_> {
    /// Writes every row of `dump` into the version and lock tables
    /// (created when missing), for [`crate::copy`].
    ///
    /// # Errors
    /// SQLite errors, e.g. a version that is already there.
    pub fn load_versions(&self, dump: &VersionDump) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_load_versions(dump),
        };
        self.ensure_version_tables()?;
        let mut stmt = conn
            .prepare("INSERT INTO wangge_versions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .at(path)?;
        for v in &dump.versions {
            stmt.execute(params![
                v.community,
                v.version,
                v.author,
                v.created,
                v.reason,
                v.op
            ])
            .at(path)?;
        }
        let mut stmt = conn
            .prepare("INSERT INTO wangge_version_grids VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
            .at(path)?;
        for (community, version, g, geom) in &dump.grids {
            let blob = geom
                .as_ref()
                .map(|g| encode_geometry(g, crate::gpkg::SRS_WGS84));
            stmt.execute(params![
                community,
                version,
                g.code,
                g.households,
                g.persons,
                g.buildings,
                g.area_m2,
                blob
            ])
            .at(path)?;
        }
        let mut stmt = conn
            .prepare("INSERT INTO wangge_version_buildings VALUES (?1, ?2, ?3, ?4, ?5)")
            .at(path)?;
        for (community, version, b) in &dump.buildings {
            stmt.execute(params![
                community,
                version,
                b.building,
                b.grid,
                b.households
            ])
            .at(path)?;
        }
        let mut stmt = conn
            .prepare("INSERT INTO wangge_grid_locks VALUES (?1)")
            .at(path)?;
        for code in &dump.locks {
            stmt.execute([code]).at(path)?;
        }
        Ok(())
    }

    /// Creates the version and lock tables when missing.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn ensure_version_tables(&self) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_ensure_version_tables(),
        };
        conn.execute_batch(SCHEMA).at(path)
    }

    /// The latest version of a community (0 when it has none), as this
    /// transaction sees it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn latest_version(&self, community: &str) -> Result<i64, StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_latest_version(community),
        };
        let v: Option<i64> = conn
            .query_row(
                "SELECT max(version) FROM wangge_versions WHERE community = ?1",
                [community],
                |r| r.get(0),
            )
            .optional()
            .at(path)?
            .flatten();
        Ok(v.unwrap_or(0))
    }

    /// The locked grids of a community.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn locks(&self, community: &str) -> Result<HashSet<String>, StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_locks(community),
        };
        let mut stmt = conn
            .prepare("SELECT code FROM wangge_grid_locks WHERE substr(code, 1, 12) = ?1")
            .at(path)?;
        let rows = stmt.query_map([community], |r| r.get(0)).at(path)?;
        rows.collect::<rusqlite::Result<_>>().at(path)
    }

    /// Locks a grid.
    ///
    /// # Errors
    /// SQLite errors (a grid locked twice is one).
    pub fn lock(&self, grid: &str) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_lock(grid),
        };
        conn.execute("INSERT INTO wangge_grid_locks VALUES (?1)", [grid])
            .at(path)
            .map(drop)
    }

    /// Unlocks a grid.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn unlock(&self, grid: &str) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_unlock(grid),
        };
        conn.execute("DELETE FROM wangge_grid_locks WHERE code = ?1", [grid])
            .at(path)
            .map(drop)
    }

    /// Deletes every grid and every lock (a whole-city partition).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete_all_grids(&self) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_delete_all_grids(),
        };
        conn.execute_batch("DELETE FROM grids; DELETE FROM wangge_grid_locks;")
            .at(path)
    }

    /// Deletes a community's grids, and with `unlock` their locks.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete_grids_of(&self, community: &str, unlock: bool) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_delete_grids_of(community, unlock),
        };
        conn.execute("DELETE FROM grids WHERE parent_code = ?1", [community])
            .at(path)?;
        if unlock {
            conn.execute(
                "DELETE FROM wangge_grid_locks WHERE substr(code, 1, 12) = ?1",
                [community],
            )
            .at(path)?;
        }
        Ok(())
    }

    /// The time of the database, UTC, ISO 8601 with milliseconds.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn now(&self) -> Result<String, StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_now(),
        };
        conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ','now')", [], |r| {
            r.get(0)
        })
        .at(path)
    }

    /// Replaces the geometry of feature `fid` of `layer`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_geometry(
        &self,
        layer: Layer,
        fid: i64,
        geometry: &Geometry<f64>,
    ) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_set_geometry(layer, fid, geometry),
        };
        conn.execute(
            &format!(
                "UPDATE {} SET geom = ?1 WHERE fid = ?2",
                quote(layer.name())
            ),
            params![encode_geometry(geometry, 4326), fid],
        )
        .at(path)
        .map(drop)
    }

    /// Sets the `grid_code` (and, with `community` for every row and
    /// `with_community`, the `community_code`) of buildings by fid:
    /// `(fid, grid, community)`. Without `with_community` the community is
    /// not written (a store another tool wrote may have no such column).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn place_buildings(
        &self,
        rows: &[(i64, &str, &str)],
        with_community: bool,
    ) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_place_buildings(rows, with_community),
        };
        // Many rows (a whole city): the key indexes are built once after.
        let suspended = if rows.len() >= BULK_ROWS {
            crate::gpkg::suspend_key_indexes(conn, Layer::Buildings.name()).at(path)?
        } else {
            Vec::new()
        };
        {
            let mut upd = conn
                .prepare_cached(if with_community {
                    "UPDATE buildings SET grid_code = ?1, community_code = ?3 WHERE fid = ?2"
                } else {
                    "UPDATE buildings SET grid_code = ?1 WHERE fid = ?2 AND ?3 IS NOT NULL"
                })
                .at(path)?;
            for (fid, grid, community) in rows {
                upd.execute(params![grid, fid, community]).at(path)?;
            }
        }
        crate::gpkg::restore_indexes(conn, &suspended).at(path)?;
        Ok(())
    }

    /// Records version `version` of `community`: who and why, its grids
    /// (with their geometries) and where its buildings are.
    ///
    /// # Errors
    /// SQLite errors (a version recorded twice among them).
    pub fn record_version(
        &self,
        community: &str,
        version: i64,
        meta: &VersionMeta,
        created: &str,
        grids: &[(VersionGrid, Geometry<f64>)],
        buildings: &[VersionBuilding],
    ) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => {
                return p.tx_record_version(community, version, meta, created, grids, buildings);
            }
        };
        conn.prepare_cached("INSERT INTO wangge_versions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .at(path)?
            .execute(params![
                community,
                version,
                meta.author,
                created,
                meta.reason,
                meta.op
            ])
            .at(path)?;
        let mut vg = conn
            .prepare_cached(
                "INSERT INTO wangge_version_grids VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .at(path)?;
        for (g, geometry) in grids {
            vg.execute(params![
                community,
                version,
                g.code,
                g.households,
                g.persons,
                g.buildings,
                g.area_m2,
                encode_geometry(geometry, 4326)
            ])
            .at(path)?;
        }
        let mut vb = conn
            .prepare_cached("INSERT INTO wangge_version_buildings VALUES (?1, ?2, ?3, ?4, ?5)")
            .at(path)?;
        for b in buildings {
            vb.execute(params![
                community,
                version,
                b.building,
                b.grid,
                b.households
            ])
            .at(path)?;
        }
        Ok(())
    }

    /// The features of point entity `layer` whose box meets `bbox`, through
    /// its spatial index; `None` when the layer or its index is missing.
    ///
    /// # Errors
    /// SQLite errors; an unreadable geometry is `None`, not an error.
    pub fn points_in(
        &self,
        layer: Layer,
        bbox: Rect<f64>,
    ) -> Result<Option<Vec<PointEntity>>, StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_points_in(layer, bbox),
        };
        let name = layer.name();
        let rtree = rtree_name(name, "geom");
        if !table_exists(conn, &rtree).at(path)? {
            return Ok(None);
        }
        let mut stmt = conn
            .prepare(&format!(
                "SELECT fid, geom, grid_code FROM {}{}",
                quote(name),
                where_in_box("fid", &rtree)
            ))
            .at(path)?;
        let (min, max) = (bbox.min(), bbox.max());
        let rows = stmt
            .query_map(params![min.x, min.y, max.x, max.y], |r| {
                let blob: Option<Vec<u8>> = r.get(1)?;
                Ok(PointEntity {
                    fid: r.get(0)?,
                    geometry: blob.and_then(|b| decode_geometry(&b).ok()),
                    grid_code: r.get(2)?,
                })
            })
            .at(path)?;
        rows.collect::<rusqlite::Result<_>>().at(path).map(Some)
    }

    /// Sets the `grid_code` of features of `layer` by fid (`None` clears
    /// it).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_grid_codes(
        &self,
        layer: Layer,
        rows: &[(i64, Option<&str>)],
    ) -> Result<(), StoreError> {
        let (conn, path) = match self.0 {
            TxOn::Gpkg { conn, path } => (conn, path),
            TxOn::Pg(p) => return p.tx_set_grid_codes(layer, rows),
        };
        let mut upd = conn
            .prepare(&format!(
                "UPDATE {} SET grid_code = ?1 WHERE fid = ?2",
                quote(layer.name())
            ))
            .at(path)?;
        for (fid, code) in rows {
            upd.execute(params![code, fid]).at(path)?;
        }
        Ok(())
    }
}
