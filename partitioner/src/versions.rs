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

use wangge_engine::codes::CommunityCode;
use wangge_engine::model::Layer;
use wangge_engine::store::versions::{Tx, VersionBuilding, VersionGrid};
pub use wangge_engine::store::versions::{VersionInfo, VersionMeta};
use wangge_engine::store::{AnyStore, StoreError};

use crate::city::{Community, Partition, grid_values};
use crate::noding::Update;

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
    store: &mut AnyStore,
    comms: &[&Community],
    parts: &[Partition],
    replace: Replace,
    noded: &[Update],
    meta: &VersionMeta,
    extra: &mut dyn FnMut(&Tx<'_>) -> Result<(), StoreError>,
) -> Result<Vec<i64>, StoreError> {
    store.ensure_version_tables()?;
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
        let tx = w.tx();
        if replace == Replace::All {
            tx.delete_all_grids()?;
        } else {
            for p in parts {
                tx.delete_grids_of(&p.community, replace != Replace::KeepLocks)?;
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
        let tx = w.tx();
        let now = tx.now()?;
        for u in noded {
            tx.set_geometry(u.layer, u.fid, &u.geometry.clone().into())?;
        }
        let mut placed: Vec<(i64, &str, &str)> = Vec::new();
        for (c, p) in comms.iter().zip(parts) {
            let v = tx.latest_version(&p.community)? + 1;
            versions.push(v);
            let grids: Vec<(VersionGrid, geo_types::Geometry<f64>)> = p
                .grids
                .iter()
                .map(|g| {
                    (
                        VersionGrid {
                            code: g.code.clone(),
                            households: g.households as i64,
                            persons: g.persons as i64,
                            buildings: g.buildings.len() as i64,
                            area_m2: g.area_m2,
                        },
                        g.geometry.clone().into(),
                    )
                })
                .collect();
            placed.extend(
                c.buildings
                    .iter()
                    .zip(&p.building_grid)
                    .map(|(b, &gi)| (b.fid, p.grids[gi].code.as_str(), p.community.as_str())),
            );
            let buildings: Vec<VersionBuilding> = c
                .buildings
                .iter()
                .zip(&p.building_grid)
                .map(|(b, &gi)| VersionBuilding {
                    building: b.id.clone(),
                    grid: p.grids[gi].code.clone(),
                    households: i64::from(b.households),
                })
                .collect();
            tx.record_version(&p.community, v, meta, &now, &grids, &buildings)?;
        }
        tx.place_buildings(&placed, has_community)?;
        extra(&tx)?;
    }
    w.commit()?;
    Ok(versions)
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
/// [`StoreError::NotFound`] when a version does not exist; store errors.
pub fn diff(
    store: &AnyStore,
    community: CommunityCode,
    from: i64,
    to: i64,
) -> Result<Diff, StoreError> {
    let (ga, ba) = store.version(community, from)?;
    let (gb, bb) = store.version(community, to)?;
    let mut moved = Vec::new();
    let mut touched = std::collections::BTreeSet::new();
    for (
        b,
        VersionBuilding {
            grid: g0,
            households: hh,
            ..
        },
    ) in &ba
    {
        if let Some(VersionBuilding { grid: g1, .. }) = bb.get(b)
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
            let area_differs = (a.area_m2 - b.area_m2).abs() > 1e-9 * a.area_m2.abs().max(1.0);
            let differs = a.households != b.households || a.buildings != b.buildings;
            (touched.contains(code) || differs || area_differs).then(|| GridChange {
                code: code.clone(),
                households: [a.households, b.households],
                buildings: [a.buildings, b.buildings],
                area_m2: [a.area_m2, b.area_m2],
            })
        })
        .collect();
    Ok(Diff {
        community: community.to_string(),
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
    })
}
