//! Writing partitions to the store, with a version per community.
//!
//! Besides the `grids` layer and the buildings' `grid_code`, every write
//! records a new version of each community it touched in three plain tables
//! (GeoPackage allows tables outside `gpkg_contents`):
//!
//! * `wangge_versions(community, version, author, created, reason, op)`
//! * `wangge_version_grids(community, version, code, households, persons,
//!   buildings, area_m2, geom)`: the grids as they were at that version;
//! * `wangge_version_buildings(community, version, building, grid,
//!   households)`: where each building was.
//!
//! `wangge_grid_locks(code)` holds the grids a planner locked.

use rusqlite::{Connection, OptionalExtension, params};
use wangge_engine::model::Layer;
use wangge_engine::store::{Store, StoreError, encode_geometry};

use crate::city::{Community, Partition, grid_values, sql_err};
use crate::noding::Update;

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

/// Creates the version tables when missing.
///
/// # Errors
/// SQLite errors.
pub fn ensure_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// The latest version of a community (0 when it has none).
///
/// # Errors
/// SQLite errors.
pub fn latest(conn: &Connection, community: &str) -> rusqlite::Result<i64> {
    let v: Option<i64> = conn
        .query_row(
            "SELECT max(version) FROM wangge_versions WHERE community = ?1",
            [community],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(v.unwrap_or(0))
}

/// Replaces the grids of the partitioned communities (all grids when
/// `replace_all`), updates their buildings' `grid_code`, writes the noded
/// geometries of other features (see [`crate::noding`]) and records a new
/// version of each community, in one transaction. `unlock` drops the locks of the
/// replaced grids. Returns the new version of each community.
///
/// # Errors
/// Store errors; nothing is written then.
pub fn write(
    store: &mut Store,
    comms: &[&Community],
    parts: &[Partition],
    replace_all: bool,
    unlock: bool,
    noded: &[Update],
    meta: &VersionMeta,
) -> Result<Vec<i64>, StoreError> {
    let path = store.path().to_owned();
    let err = |e: rusqlite::Error| StoreError::BadSchema {
        layer: path.display().to_string(),
        reason: e.to_string(),
    };
    ensure_tables(store.connection()).map_err(|e| sql_err(store, &e))?;
    let mut w = store.writer(Layer::Grids.name())?;
    {
        let conn = w.connection();
        if replace_all {
            conn.execute("DELETE FROM grids", []).map_err(err)?;
            if unlock {
                conn.execute("DELETE FROM wangge_grid_locks", [])
                    .map_err(err)?;
            }
        } else {
            for p in parts {
                conn.execute("DELETE FROM grids WHERE parent_code = ?1", [&p.community])
                    .map_err(err)?;
                if unlock {
                    conn.execute(
                        "DELETE FROM wangge_grid_locks WHERE substr(code, 1, 12) = ?1",
                        [&p.community],
                    )
                    .map_err(err)?;
                }
            }
        }
    }
    for p in parts {
        for g in &p.grids {
            w.insert(&g.geometry.clone().into(), &grid_values(g))?;
        }
    }
    let mut versions = Vec::with_capacity(parts.len());
    {
        let conn = w.connection();
        let now: String = conn
            .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ','now')", [], |r| {
                r.get(0)
            })
            .map_err(err)?;
        let mut upd = conn
            .prepare("UPDATE buildings SET grid_code = ?1 WHERE fid = ?2")
            .map_err(err)?;
        let mut ver = conn
            .prepare("INSERT INTO wangge_versions VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(err)?;
        let mut vg = conn
            .prepare("INSERT INTO wangge_version_grids VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
            .map_err(err)?;
        let mut vb = conn
            .prepare("INSERT INTO wangge_version_buildings VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(err)?;
        for u in noded {
            conn.execute(
                &format!("UPDATE \"{}\" SET geom = ?1 WHERE fid = ?2", u.layer.name()),
                params![encode_geometry(&u.geometry.clone().into(), 4326), u.fid],
            )
            .map_err(err)?;
        }
        for (c, p) in comms.iter().zip(parts) {
            let v = latest(conn, &p.community).map_err(err)? + 1;
            versions.push(v);
            ver.execute(params![
                p.community,
                v,
                meta.author,
                now,
                meta.reason,
                meta.op
            ])
            .map_err(err)?;
            for g in &p.grids {
                vg.execute(params![
                    p.community,
                    v,
                    g.code,
                    g.households as i64,
                    g.persons as i64,
                    g.buildings.len() as i64,
                    g.area_m2,
                    encode_geometry(&g.geometry.clone().into(), 4326)
                ])
                .map_err(err)?;
            }
            for (b, &gi) in c.buildings.iter().zip(&p.building_grid) {
                let code = &p.grids[gi].code;
                upd.execute(params![code, b.fid]).map_err(err)?;
                vb.execute(params![p.community, v, b.id, code, i64::from(b.households)])
                    .map_err(err)?;
            }
        }
    }
    w.commit()?;
    Ok(versions)
}
