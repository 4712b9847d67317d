//! Writing partitions to the store, with a version per community.
//!
//! Besides the `grids` layer and the buildings' `grid_code` (and
//! `community_code`: the community each was partitioned in), every write
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

/// Which stored grids a [`write()`] replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Every grid of the store, and every lock (a whole-city partition).
    All,
    /// The grids of the written communities, and their locks (a partition
    /// of some communities).
    Communities,
    /// The grids of the written communities; their locks stay (an edit).
    KeepLocks,
}

/// Replaces grids as `replace` says, writes the new ones, updates the
/// buildings' `grid_code`, writes the noded geometries of other features
/// (see [`crate::noding`]) and records a new version of each community, in
/// one transaction. `extra` runs last inside the same transaction (an edit
/// re-assigns its entities there). Returns the new version of each
/// community.
///
/// # Errors
/// Store errors; nothing is written then.
pub fn write(
    store: &mut Store,
    comms: &[&Community],
    parts: &[Partition],
    replace: Replace,
    noded: &[Update],
    meta: &VersionMeta,
    extra: &mut dyn FnMut(&Connection) -> Result<(), StoreError>,
) -> Result<Vec<i64>, StoreError> {
    let path = store.path().to_owned();
    let err = |e: rusqlite::Error| StoreError::BadSchema {
        layer: path.display().to_string(),
        reason: e.to_string(),
    };
    ensure_tables(store.connection()).map_err(|e| sql_err(store, &e))?;
    if !store.has_layer(Layer::Grids.name())? {
        store.create_layer(&Layer::Grids.schema())?;
    }
    // Columns users added to the grids (in QGIS, say) are carried over by
    // code: a grid rewritten with the same code keeps them, new grids get
    // NULL.
    // A building's community is the one it was partitioned in (a store
    // another tool wrote may have had none).
    let has_community = store
        .schema(Layer::Buildings.name())?
        .columns
        .iter()
        .any(|c| c.name == "community_code");
    let mut w = store.writer_for(&Layer::Grids.schema(), Some("code"))?;
    {
        let conn = w.connection();
        let unlock = replace != Replace::KeepLocks;
        if replace == Replace::All {
            conn.execute("DELETE FROM grids", []).map_err(err)?;
            conn.execute("DELETE FROM wangge_grid_locks", [])
                .map_err(err)?;
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
            .prepare(if has_community {
                "UPDATE buildings SET grid_code = ?1, community_code = ?3 WHERE fid = ?2"
            } else {
                "UPDATE buildings SET grid_code = ?1 WHERE fid = ?2 AND ?3 IS NOT NULL"
            })
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
                upd.execute(params![code, b.fid, p.community])
                    .map_err(err)?;
                vb.execute(params![p.community, v, b.id, code, i64::from(b.households)])
                    .map_err(err)?;
            }
        }
        extra(conn)?;
    }
    w.commit()?;
    Ok(versions)
}

/// One version of a community, as `wangge history` lists it.
#[derive(Debug, Clone, serde::Serialize)]
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

/// The versions of one community (or of all), newest first, at most
/// `limit`.
///
/// # Errors
/// SQLite errors.
pub fn history(
    conn: &Connection,
    community: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<VersionInfo>> {
    ensure_tables(conn)?;
    let mut stmt = conn.prepare(
        "SELECT v.community, v.version, v.author, v.created, v.op, v.reason,
                (SELECT count(*) FROM wangge_version_grids g
                  WHERE g.community = v.community AND g.version = v.version),
                (SELECT coalesce(sum(households), 0) FROM wangge_version_grids g
                  WHERE g.community = v.community AND g.version = v.version)
           FROM wangge_versions v
          WHERE ?1 IS NULL OR v.community = ?1
          ORDER BY v.created DESC, v.community, v.version DESC
          LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![community, limit as i64], |r| {
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
    })?;
    rows.collect()
}

/// A grid whose households or buildings differ between two versions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GridChange {
    /// The grid's code.
    pub code: String,
    /// Households before and after.
    pub households: [i64; 2],
    /// Buildings before and after.
    pub buildings: [i64; 2],
    /// Area (m²) before and after.
    pub area_m2: [f64; 2],
}

/// A building that changed grid between two versions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Moved {
    /// Building id.
    pub building: String,
    /// Its grid before.
    pub from: String,
    /// Its grid after.
    pub to: String,
    /// Its households.
    pub households: i64,
}

/// What changed in a community between two versions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Diff {
    /// The community.
    pub community: String,
    /// The older version.
    pub from: i64,
    /// The newer version.
    pub to: i64,
    /// Grids only in `to`.
    pub added: Vec<String>,
    /// Grids only in `from`.
    pub removed: Vec<String>,
    /// Grids in both whose buildings or outline (area beyond 1e-9
    /// relative) differ.
    pub changed: Vec<GridChange>,
    /// Buildings in another grid (a removed or added grid counts).
    pub moved: Vec<Moved>,
    /// Households of the moved buildings.
    pub households_moved: i64,
}

/// The difference between versions `from` and `to` of a community.
///
/// # Errors
/// SQLite errors, or `Ok(None)` when a version does not exist.
pub fn diff(
    conn: &Connection,
    community: &str,
    from: i64,
    to: i64,
) -> rusqlite::Result<Option<Diff>> {
    use std::collections::BTreeMap;
    ensure_tables(conn)?;
    let exists = |v: i64| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM wangge_versions WHERE community = ?1 AND version = ?2)",
            params![community, v],
            |r| r.get(0),
        )
    };
    if !exists(from)? || !exists(to)? {
        return Ok(None);
    }
    let grids = |v: i64| -> rusqlite::Result<BTreeMap<String, (i64, i64, f64)>> {
        let mut stmt = conn.prepare(
            "SELECT code, households, buildings, area_m2 FROM wangge_version_grids
              WHERE community = ?1 AND version = ?2",
        )?;
        let rows = stmt.query_map(params![community, v], |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
        })?;
        rows.collect()
    };
    let buildings = |v: i64| -> rusqlite::Result<BTreeMap<String, (String, i64)>> {
        let mut stmt = conn.prepare(
            "SELECT building, grid, households FROM wangge_version_buildings
              WHERE community = ?1 AND version = ?2",
        )?;
        let rows = stmt.query_map(params![community, v], |r| {
            Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
        })?;
        rows.collect()
    };
    let (ga, gb) = (grids(from)?, grids(to)?);
    let (ba, bb) = (buildings(from)?, buildings(to)?);
    let mut moved = Vec::new();
    let mut touched = std::collections::BTreeSet::new();
    for (b, (g0, hh)) in &ba {
        if let Some((g1, _)) = bb.get(b)
            && g1 != g0
        {
            touched.insert(g0.clone());
            touched.insert(g1.clone());
            moved.push(Moved {
                building: b.clone(),
                from: g0.clone(),
                to: g1.clone(),
                households: *hh,
            });
        }
    }
    let changed = ga
        .iter()
        .filter_map(|(code, a)| {
            let b = gb.get(code)?;
            let area_differs = (a.2 - b.2).abs() > 1e-9 * a.2.abs().max(1.0);
            (touched.contains(code) || a.0 != b.0 || a.1 != b.1 || area_differs).then(|| {
                GridChange {
                    code: code.clone(),
                    households: [a.0, b.0],
                    buildings: [a.1, b.1],
                    area_m2: [a.2, b.2],
                }
            })
        })
        .collect();
    Ok(Some(Diff {
        community: community.to_owned(),
        from,
        to,
        added: gb
            .keys()
            .filter(|c| !ga.contains_key(*c))
            .cloned()
            .collect(),
        removed: ga
            .keys()
            .filter(|c| !gb.contains_key(*c))
            .cloned()
            .collect(),
        changed,
        households_moved: moved.iter().map(|m| m.households).sum(),
        moved,
    }))
}
