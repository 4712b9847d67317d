//! Communities and their buildings read from a store, partitioned into
//! grids and written back.

use std::collections::{BTreeMap, HashMap};

use geo::{Area, Centroid, Contains, InteriorPoint};
use geo_types::{Coord, Geometry, MultiPolygon, Point, Polygon, Rect};
use rayon::prelude::*;
use wangge_engine::assign::{GridLayer, GridPolygon};
use wangge_engine::codes::CommunityCode;
use wangge_engine::geom::reading_order;
use wangge_engine::geom::{self, Frame};
use wangge_engine::model::Layer;
use wangge_engine::progress::Progress;
use wangge_engine::store::{AnyStore, StoreError, Value};

use crate::balance::{self, Params, Unit};
use crate::units::Territories;

/// One building of a community.
#[derive(Debug, Clone)]
pub struct Building {
    /// Feature id in the store.
    pub fid: i64,
    /// Building id.
    pub id: String,
    /// Footprint (lon/lat).
    pub footprint: Polygon<f64>,
    /// Households living in it.
    pub households: u32,
}

/// One community with its buildings.
#[derive(Debug, Clone)]
pub struct Community {
    /// 12-digit code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Area (lon/lat).
    pub geometry: MultiPolygon<f64>,
    /// Buildings assigned to it.
    pub buildings: Vec<Building>,
}

/// What loading noticed about the buildings.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Buildings read.
    pub buildings: u64,
    /// Buildings whose footprint crosses a community border (assigned to
    /// the community holding most of their area).
    pub crossing_border: u64,
    /// Buildings whose stored community differs from where they lie
    /// (re-assigned by position).
    pub reassigned: u64,
    /// Buildings outside every community (left out; listed below).
    pub outside: u64,
    /// Ids of the buildings outside every community (at most 100).
    pub outside_ids: Vec<String>,
    /// Buildings with an empty or invalid footprint (left out).
    pub bad_footprint: u64,
    /// Buildings partly outside every community (kept, in the community
    /// holding them; no grid can hold them whole).
    pub partly_outside: u64,
}

/// Reads every community (or those in `only`) with its buildings. Each
/// building goes to the community that holds most of its footprint.
///
/// # Errors
/// Store errors, or an unknown code in `only`.
pub fn load(store: &AnyStore, only: &[String]) -> Result<(Vec<Community>, LoadReport), StoreError> {
    load_in(store, only, None)
}

/// Reads one community with its buildings, touching only the features
/// near it (through the layers' R-trees): what an edit needs.
///
/// # Errors
/// Store errors, or no community with that code.
pub fn load_community(store: &AnyStore, code: CommunityCode) -> Result<Community, StoreError> {
    let bbox = store.bbox_of(code.into())?;
    let (mut comms, _) = load_in(store, &[code.to_string()], bbox)?;
    comms.pop().ok_or_else(|| StoreError::NotFound {
        what: format!("community {code:?}"),
    })
}

/// [`load`], reading only the buildings that meet `region` and the
/// communities near it when given.
fn load_in(
    store: &AnyStore,
    only: &[String],
    region: Option<Rect<f64>>,
) -> Result<(Vec<Community>, LoadReport), StoreError> {
    // Communities a building in `region` can touch (buildings are far
    // smaller than 0.005°, about 500 m).
    let near = region.map(|b| padded(b, 0.005));
    let mut comms: Vec<Community> = Vec::new();
    let mut by_code: HashMap<String, usize> = HashMap::new();
    let columns = ["code", "name"];
    store.for_each_columns(Layer::Communities.name(), &columns, near, |f| {
        let geometry = geom::as_multi(f.geometry).unwrap_or_else(|| MultiPolygon::new(vec![]));
        let code = f.values[0].as_str().unwrap_or_default().to_owned();
        by_code.insert(code.clone(), comms.len());
        comms.push(Community {
            code,
            name: f.values[1].as_str().unwrap_or_default().to_owned(),
            geometry,
            buildings: Vec::new(),
        });
        Ok(())
    })?;
    for c in only {
        if !by_code.contains_key(c) {
            return Err(StoreError::BadSchema {
                layer: "communities".into(),
                reason: format!("no community with code {c:?}"),
            });
        }
    }
    let comm_layer = unnamed_layer(comms.iter().map(|c| (&c.code, &c.geometry)));
    let mut report = LoadReport::default();
    let columns = ["id", "households", "community_code"];
    store.for_each_columns(Layer::Buildings.name(), &columns, region, |f| {
        report.buildings += 1;
        let id = f.values[0].as_str().unwrap_or_default().to_owned();
        let footprint = match f.geometry {
            Geometry::Polygon(p) if p.exterior().0.len() >= 4 && p.unsigned_area() > 0.0 => p,
            Geometry::MultiPolygon(m) if m.0.len() == 1 && m.unsigned_area() > 0.0 => {
                let mut parts = m.0;
                parts.swap_remove(0)
            }
            _ => {
                report.bad_footprint += 1;
                return Ok(());
            }
        };
        let stored = f.values[2].as_str().unwrap_or_default();
        let Some(target) = home(&comm_layer, &comms, &by_code, &footprint, &mut report) else {
            report.outside += 1;
            if report.outside_ids.len() < 100 {
                report.outside_ids.push(id);
            }
            return Ok(());
        };
        if comms[target].code != stored {
            report.reassigned += 1;
        }
        let households = f.values[1]
            .as_i64()
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32;
        comms[target].buildings.push(Building {
            fid: f.fid,
            id,
            footprint,
            households,
        });
        Ok(())
    })?;
    if !only.is_empty() {
        comms.retain(|c| only.contains(&c.code));
    }
    Ok((comms, report))
}

/// The community holding most of a footprint.
fn home(
    layer: &GridLayer,
    comms: &[Community],
    by_code: &HashMap<String, usize>,
    footprint: &Polygon<f64>,
    report: &mut LoadReport,
) -> Option<usize> {
    let located: Vec<Option<u32>> = footprint
        .exterior()
        .0
        .iter()
        .copied()
        .chain(footprint.centroid().map(|c| c.0))
        .map(|c| layer.locate(c.x, c.y))
        .collect();
    let mut hits: Vec<usize> = located
        .iter()
        .flatten()
        .filter_map(|&id| by_code.get(layer.code(id)).copied())
        .collect();
    hits.sort_unstable();
    hits.dedup();
    if !hits.is_empty() && located.iter().any(Option::is_none) {
        report.partly_outside += 1;
    }
    match hits.len() {
        0 => None,
        1 => Some(hits[0]),
        _ => {
            report.crossing_border += 1;
            let fp = MultiPolygon::new(vec![footprint.clone()]);
            hits.into_iter()
                .map(|c| {
                    (
                        geom::intersection(&fp, &comms[c].geometry).unsigned_area(),
                        c,
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|(_, c)| c)
        }
    }
}

/// A layer of polygons by code (no names) to locate points in.
pub(crate) fn unnamed_layer<'a>(
    polygons: impl Iterator<Item = (&'a String, &'a MultiPolygon<f64>)>,
) -> GridLayer {
    GridLayer::new(
        polygons
            .map(|(code, geometry)| GridPolygon {
                code: code.clone(),
                name: String::new(),
                geometry: geometry.clone(),
            })
            .collect(),
    )
}

/// `r` grown by `d` degrees on every side.
fn padded(r: Rect<f64>, d: f64) -> Rect<f64> {
    Rect::new(
        (r.min().x - d, r.min().y - d),
        (r.max().x + d, r.max().y + d),
    )
}

/// Sets each grid's `persons` to the persons whose point lies in it, as
/// the change feed and `wangge assign --store … --layers` count them (a
/// person need not name a building): located in the partitions' grids
/// together. With `subset` (not every community was partitioned), only
/// the persons in the partitions' box are read, and a person counts only
/// in a grid of its stored community (by `grid_code`, else
/// `community_code`; one with neither counts where it lies), so persons
/// of a neighbouring community on the border are not taken.
///
/// # Errors
/// Store errors.
pub fn count_persons(
    store: &AnyStore,
    parts: &mut [Partition],
    subset: bool,
) -> Result<(), StoreError> {
    for g in parts.iter_mut().flat_map(|p| &mut p.grids) {
        g.persons = 0;
    }
    if !store.has_layer(Layer::Persons.name())? {
        return Ok(());
    }
    let schema = store.schema(Layer::Persons.name())?;
    let has = |n: &str| schema.columns.iter().any(|x| x.name == n);
    let grids: Vec<&Grid> = parts.iter().flat_map(|p| &p.grids).collect();
    if grids.is_empty() {
        return Ok(());
    }
    let region = if subset {
        let boxes = grids.iter().filter_map(|g| geom::bbox(&g.geometry));
        boxes
            .reduce(|a, b| {
                Rect::new(
                    (a.min().x.min(b.min().x), a.min().y.min(b.min().y)),
                    (a.max().x.max(b.max().x), a.max().y.max(b.max().y)),
                )
            })
            .map(|r| padded(r, 1e-6))
    } else {
        None
    };
    let layer = unnamed_layer(grids.iter().map(|g| (&g.code, &g.geometry)));
    let mut counts = vec![0u64; layer.len()];
    let columns: Vec<&str> = ["grid_code", "community_code"]
        .into_iter()
        .filter(|n| subset && has(n))
        .collect();
    store.for_each_columns(Layer::Persons.name(), &columns, region, |f| {
        let Geometry::Point(p) = f.geometry else {
            return Ok(());
        };
        let Some(id) = layer.locate(p.x(), p.y()) else {
            return Ok(());
        };
        let stored = f
            .values
            .iter()
            .filter_map(|v| v.as_str())
            .find(|c| c.len() >= 12)
            .map(|c| &c[..12]);
        if stored.is_none_or(|c| layer.code(id).starts_with(c)) {
            counts[id as usize] += 1;
        }
        Ok(())
    })?;
    // The layer holds the grids in code order.
    let by_code: HashMap<&str, u64> = (0..layer.len())
        .map(|i| (layer.code(i as u32), counts[i]))
        .collect();
    for g in parts.iter_mut().flat_map(|p| &mut p.grids) {
        g.persons = by_code.get(g.code.as_str()).copied().unwrap_or(0);
    }
    Ok(())
}

/// One grid of a partition.
#[derive(Debug, Clone)]
pub struct Grid {
    /// 15-digit code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// The community's code.
    pub parent: String,
    /// Outline (lon/lat).
    pub geometry: MultiPolygon<f64>,
    /// Households.
    pub households: u64,
    /// Persons.
    pub persons: u64,
    /// Indices (into the community's buildings) of its buildings.
    pub buildings: Vec<usize>,
    /// Area in m².
    pub area_m2: f64,
}

/// A community's grids.
#[derive(Debug, Clone)]
pub struct Partition {
    /// The community's code.
    pub community: String,
    /// Its grids in code order.
    pub grids: Vec<Grid>,
    /// Grid index of each building.
    pub building_grid: Vec<usize>,
    /// Seconds spent.
    pub seconds: f64,
}

/// Partitions one community with the default grid numbering (001, 002, …).
#[must_use]
pub fn partition(c: &Community, params: &Params) -> Partition {
    let t = std::time::Instant::now();
    let (group, k, territories) = group_buildings(c, params);
    let mut p = build_grids(c, &group, k, territories.as_ref(), |i| {
        format!("{}{:03}", c.code, i + 1)
    });
    p.seconds = t.elapsed().as_secs_f64();
    p
}

/// The territories of a community's buildings and the buildings as the
/// grouping sees them (households, centroid in metres of a local frame).
pub(crate) fn units(c: &Community) -> (Option<Territories>, Vec<Unit>) {
    let footprints: Vec<Polygon<f64>> = c.buildings.iter().map(|b| b.footprint.clone()).collect();
    let territories = Territories::new(&c.geometry, &footprints);
    let frame = Frame::at(
        geom::bbox(&c.geometry)
            .map(|r| r.center())
            .unwrap_or(Coord { x: 0.0, y: 0.0 }),
    );
    let units = c
        .buildings
        .iter()
        .map(|b| Unit {
            households: b.households,
            pos: b
                .footprint
                .centroid()
                .map_or([0.0, 0.0], |p| frame.to_m(p.0)),
        })
        .collect();
    (territories, units)
}

/// The grouping of a community's buildings and the territories it used.
fn group_buildings(c: &Community, params: &Params) -> (Vec<u32>, usize, Option<Territories>) {
    if c.buildings.is_empty() {
        return (Vec::new(), 1, None);
    }
    let (territories, units) = units(c);
    let empty = vec![Vec::new(); units.len()];
    let adjacency = territories.as_ref().map_or(&empty, |t| &t.adjacency);
    let (group, k) = balance::partition(&units, adjacency, params);
    (group, k.max(1), territories)
}

/// Builds grid outlines for a grouping and numbers the grids in reading
/// order with `code_of(rank)`.
pub(crate) fn build_grids(
    c: &Community,
    group: &[u32],
    k: usize,
    territories: Option<&Territories>,
    code_of: impl Fn(usize) -> String,
) -> Partition {
    let (group, outlines) = grid_outlines(c, group, k, territories);
    let rank = reading_ranks(c, &outlines);
    let codes: Vec<String> = rank.iter().map(|&r| code_of(r)).collect();
    assemble(c, &group, outlines, &codes)
}

/// The outline of each of the `k` groups of a grouping, clipped to the
/// community; where clipping cut a group in pieces, the pieces go to
/// neighbours with their buildings (see [`attach_orphans`]). Returns the
/// grouping after that and the outlines (one group when there is no
/// territory to split).
pub(crate) fn grid_outlines(
    c: &Community,
    group: &[u32],
    k: usize,
    territories: Option<&Territories>,
) -> (Vec<u32>, Vec<MultiPolygon<f64>>) {
    let mut outlines: Vec<MultiPolygon<f64>> = match territories {
        Some(t) if k > 1 => t.outlines(&c.geometry, group, k),
        _ => vec![c.geometry.clone(); 1],
    };
    let k = outlines.len();
    let mut group: Vec<u32> = if k == 1 {
        vec![0; c.buildings.len()]
    } else {
        group.to_vec()
    };
    if k > 1 {
        attach_orphans(c, &mut group, &mut outlines);
    }
    (group, outlines)
}

/// The rank of each outline in reading order (rows north→south, each
/// west→east) of their interior points.
pub(crate) fn reading_ranks(c: &Community, outlines: &[MultiPolygon<f64>]) -> Vec<usize> {
    let k = outlines.len();
    let anchors: Vec<Coord<f64>> = outlines
        .iter()
        .map(|o| {
            o.interior_point()
                .or_else(|| c.geometry.interior_point())
                .map_or(Coord { x: 0.0, y: 0.0 }, |p: Point<f64>| p.0)
        })
        .collect();
    let band = geom::bbox(&c.geometry).map_or(1.0, |r| (r.width() * r.height() / k as f64).sqrt());
    let order = reading_order(&anchors, band);
    let mut rank = vec![0; k];
    for (r, &g) in order.iter().enumerate() {
        rank[g] = r;
    }
    rank
}

/// The grids of a grouping whose group `g` has outline `outlines[g]` and
/// code `codes[g]`, in code order.
pub(crate) fn assemble(
    c: &Community,
    group: &[u32],
    outlines: Vec<MultiPolygon<f64>>,
    codes: &[String],
) -> Partition {
    let k = outlines.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| codes[a].cmp(&codes[b]));
    let mut slot = vec![0; k];
    for (i, &g) in order.iter().enumerate() {
        slot[g] = i;
    }
    let mut grids: Vec<Grid> = order
        .iter()
        .map(|&g| {
            let code = codes[g].clone();
            Grid {
                name: format!("{}{}网格", c.name, &code[code.len().saturating_sub(3)..]),
                code,
                parent: c.code.clone(),
                geometry: MultiPolygon::new(vec![]),
                households: 0,
                persons: 0,
                buildings: Vec::new(),
                area_m2: 0.0,
            }
        })
        .collect();
    let mut building_grid = vec![0; c.buildings.len()];
    for (b, &g) in group.iter().enumerate() {
        let r = slot[g as usize];
        building_grid[b] = r;
        grids[r].buildings.push(b);
        grids[r].households += u64::from(c.buildings[b].households);
    }
    for (g, o) in outlines.into_iter().enumerate() {
        let r = slot[g];
        grids[r].area_m2 = geom::area_m2(&o);
        grids[r].geometry = o;
    }
    Partition {
        community: c.code.clone(),
        grids,
        building_grid,
        seconds: 0.0,
    }
}

/// Where clipping to a concave community cut a grid in pieces, keeps the
/// piece holding most of its households (per part of the community) and
/// gives each other piece, with the buildings in it, to the neighbour it
/// shares the most boundary with.
fn attach_orphans(c: &Community, group: &mut [u32], outlines: &mut [MultiPolygon<f64>]) {
    let centroids: Vec<Option<Point<f64>>> =
        c.buildings.iter().map(|b| b.footprint.centroid()).collect();
    let part_of = |p: &Polygon<f64>| -> usize {
        p.interior_point()
            .and_then(|ip| c.geometry.0.iter().position(|cp| cp.contains(&ip)))
            .unwrap_or(0)
    };
    let mut orphans: Vec<(usize, Polygon<f64>)> = Vec::new();
    for (g, o) in outlines.iter_mut().enumerate() {
        if o.0.len() < 2 {
            continue;
        }
        // Best piece per community part: most households, then largest.
        let mut best: BTreeMap<usize, (u64, f64, usize)> = BTreeMap::new();
        let weights: Vec<u64> =
            o.0.iter()
                .map(|piece| {
                    group
                        .iter()
                        .enumerate()
                        .filter(|&(b, &gb)| {
                            gb as usize == g && centroids[b].is_some_and(|pt| piece.contains(&pt))
                        })
                        .map(|(b, _)| u64::from(c.buildings[b].households) + 1)
                        .sum()
                })
                .collect();
        for (i, piece) in o.0.iter().enumerate() {
            let key = (weights[i], piece.unsigned_area(), i);
            let e = best.entry(part_of(piece)).or_insert(key);
            if (key.0, key.1) > (e.0, e.1) {
                *e = key;
            }
        }
        let keep: Vec<usize> = best.values().map(|v| v.2).collect();
        let pieces = std::mem::take(&mut o.0);
        for (i, piece) in pieces.into_iter().enumerate() {
            if keep.contains(&i) {
                o.0.push(piece);
            } else {
                orphans.push((g, piece));
            }
        }
    }
    for (from, piece) in orphans {
        // Probe just outside every edge of the piece.
        let mut shared: BTreeMap<usize, f64> = BTreeMap::new();
        for w in piece.exterior().0.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let len = dx.hypot(dy);
            if len == 0.0 {
                continue;
            }
            let eps = (len * 0.05).min(1e-6);
            // Exterior rings are counter-clockwise: outside is on the right.
            let probe = Point::new(
                0.5 * (a.x + b.x) + dy / len * eps,
                0.5 * (a.y + b.y) - dx / len * eps,
            );
            if let Some(g) = outlines.iter().position(|o| o.contains(&probe)) {
                *shared.entry(g).or_default() += len;
            }
        }
        let to = shared
            .into_iter()
            .filter(|&(g, _)| g != from)
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map_or(from, |(g, _)| g);
        for (b, gb) in group.iter_mut().enumerate() {
            if *gb as usize == from && centroids[b].is_some_and(|pt| piece.contains(&pt)) {
                *gb = to as u32;
            }
        }
        let merged = geom::union_all([&outlines[to], &MultiPolygon::new(vec![piece])]);
        outlines[to] = merged;
    }
}

/// One community's partitioning problem and our answer, for comparing
/// with other graph partitioners (`benches/compare/metis.py`): households
/// and centroid (metres) per building, the adjacency edges, the grids
/// (`labels`, after orphan pieces moved), the seconds our grouping took
/// on the given graph (`group_s`, one thread) and each building's territory
/// clipped to the community (GeoJSON MultiPolygon coordinates), from which
/// any labelling's grid outlines are unions.
#[must_use]
pub fn graph_record(c: &Community, params: &Params) -> serde_json::Value {
    let (territories, units) = units(c);
    let empty = vec![Vec::new(); units.len()];
    let adjacency = territories.as_ref().map_or(&empty, |t| &t.adjacency);
    let t = std::time::Instant::now();
    let (group, k) = balance::partition(&units, adjacency, params);
    let group_s = t.elapsed().as_secs_f64();
    let p = build_grids(c, &group, k.max(1), territories.as_ref(), |i| {
        format!("{i:03}")
    });
    let n = c.buildings.len();
    let cells: Vec<MultiPolygon<f64>> = match &territories {
        Some(t) if n > 1 => t.outlines(&c.geometry, &(0..n as u32).collect::<Vec<_>>(), n),
        _ => vec![c.geometry.clone(); n],
    };
    let coords = |m: &MultiPolygon<f64>| -> Vec<Vec<Vec<[f64; 2]>>> {
        m.0.iter()
            .map(|p| {
                std::iter::once(p.exterior())
                    .chain(p.interiors())
                    .map(|r| r.0.iter().map(|c| [c.x, c.y]).collect())
                    .collect()
            })
            .collect()
    };
    let edges: Vec<[u32; 2]> = adjacency
        .iter()
        .enumerate()
        .flat_map(|(u, l)| {
            l.iter()
                .filter(move |&&v| v as usize > u)
                .map(move |&v| [u as u32, v])
        })
        .collect();
    serde_json::json!({
        "community": c.code,
        "target": params.target,
        "tolerance": params.tolerance,
        "households": units.iter().map(|u| u.households).collect::<Vec<_>>(),
        "pos": units.iter().map(|u| u.pos).collect::<Vec<_>>(),
        "edges": edges,
        "k": p.grids.len(),
        "labels": p.building_grid,
        "group_s": group_s,
        "community_geometry": coords(&c.geometry),
        "territories": cells.iter().map(coords).collect::<Vec<_>>(),
    })
}

/// Partitions many communities in parallel, reporting progress per
/// community.
#[must_use]
pub fn partition_all(
    comms: &[Community],
    params: &Params,
    progress: &dyn Progress,
) -> Vec<Partition> {
    progress.set_total(comms.len() as u64);
    comms
        .par_iter()
        .map(|c| {
            let p = partition(c, params);
            progress.inc(1);
            p
        })
        .collect()
}

/// Grid attribute values in the grids layer's column order.
#[must_use]
pub fn grid_values(g: &Grid) -> Vec<Value> {
    vec![
        Value::Text(g.code.clone()),
        Value::Text(g.name.clone()),
        Value::Text(g.parent.clone()),
        Value::Integer(g.households as i64),
        Value::Integer(g.persons as i64),
        Value::Integer(g.buildings.len() as i64),
        Value::Real(g.area_m2),
    ]
}
