//! Quality of a partition as stored: balance, compactness, contiguity,
//! coverage and split buildings, per community and city-wide.
//!
//! Everything is measured from the stored layers (grids, communities,
//! buildings with their `grid_code`), not from the partitioner's memory, so
//! the report also checks grids that were imported or edited by hand.

use std::collections::HashMap;

use geo::{Area, Contains, InteriorPoint};
use geo_types::{Coord, Geometry, LineString, MultiPolygon, Polygon};
use rayon::prelude::*;
use serde::Serialize;
use wangge_engine::geom::{self, Frame};
use wangge_engine::model::Layer;
use wangge_engine::store::{AnyStore, StoreError};

/// Quality of one community's grids.
#[derive(Debug, Clone, Serialize)]
pub struct CommunityQuality {
    /// Community code.
    pub community: String,
    /// Number of grids.
    pub grids: usize,
    /// Households per grid: minimum.
    pub households_min: u64,
    /// Households per grid: median.
    pub households_median: u64,
    /// Households per grid: maximum.
    pub households_max: u64,
    /// Grids within the tolerance of the target.
    pub within_tolerance: usize,
    /// Grids that are one connected polygon per part of the community.
    pub contiguous: usize,
    /// Median Polsby-Popper compactness (4πA/P², 1 for a disc).
    pub polsby_popper_median: f64,
    /// Community area not covered by any grid, m².
    pub gap_m2: f64,
    /// Area covered by more than one grid, m².
    pub overlap_m2: f64,
    /// Grid area outside the community, m².
    pub outside_m2: f64,
    /// Buildings whose footprint is not wholly inside their own grid.
    pub split_buildings: usize,
    /// Buildings with no (or an unknown) grid code.
    pub unassigned_buildings: usize,
}

/// The city-wide report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Target households per grid.
    pub target: f64,
    /// Tolerance (relative).
    pub tolerance: f64,
    /// Communities reported.
    pub communities: usize,
    /// Grids.
    pub grids: usize,
    /// Households per grid: minimum.
    pub households_min: u64,
    /// Households per grid: median.
    pub households_median: u64,
    /// Households per grid: maximum.
    pub households_max: u64,
    /// Share of grids within tolerance, %.
    pub within_tolerance_pct: f64,
    /// Share of grids that are contiguous, %.
    pub contiguous_pct: f64,
    /// Median Polsby-Popper compactness.
    pub polsby_popper_median: f64,
    /// 10th percentile of Polsby-Popper compactness.
    pub polsby_popper_p10: f64,
    /// Total gap area, m².
    pub gap_m2: f64,
    /// Total overlap area, m².
    pub overlap_m2: f64,
    /// Total grid area outside its community, m².
    pub outside_m2: f64,
    /// Buildings split by a grid boundary.
    pub split_buildings: usize,
    /// Buildings without a valid grid.
    pub unassigned_buildings: usize,
    /// Communities without any grid.
    pub communities_without_grids: usize,
    /// Per community (only with `--community` or `--per-community`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_community: Vec<CommunityQuality>,
}

struct GridRow {
    code: String,
    households: u64,
    geometry: MultiPolygon<f64>,
}

fn multi(g: Geometry<f64>) -> MultiPolygon<f64> {
    geom::as_multi(g).unwrap_or_else(|| MultiPolygon::new(vec![]))
}

/// Polsby-Popper compactness of a polygon, measured in a local metric
/// frame: 4π·area / perimeter².
#[must_use]
pub fn polsby_popper(mp: &MultiPolygon<f64>) -> f64 {
    let Some(r) = geom::bbox(mp) else { return 0.0 };
    let frame = Frame::at(r.center());
    let ring_m = |l: &LineString<f64>| -> LineString<f64> {
        l.0.iter()
            .map(|&c| {
                let p = frame.to_m(c);
                Coord { x: p[0], y: p[1] }
            })
            .collect()
    };
    let mut area = 0.0;
    let mut perim = 0.0;
    for p in &mp.0 {
        let pm = Polygon::new(
            ring_m(p.exterior()),
            p.interiors().iter().map(ring_m).collect(),
        );
        area += pm.unsigned_area();
        for r in std::iter::once(pm.exterior()).chain(pm.interiors()) {
            perim +=
                r.0.windows(2)
                    .map(|w| (w[1].x - w[0].x).hypot(w[1].y - w[0].y))
                    .sum::<f64>();
        }
    }
    if perim > 0.0 {
        4.0 * std::f64::consts::PI * area / (perim * perim)
    } else {
        0.0
    }
}

fn median(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Measures the stored partition of every community (or those in `only`).
///
/// # Errors
/// Store errors, or an unknown community code.
pub fn report(
    store: &AnyStore,
    only: &[String],
    target: f64,
    tolerance: f64,
    per_community: bool,
) -> Result<Report, StoreError> {
    let mut comms: Vec<(String, MultiPolygon<f64>)> = Vec::new();
    store.for_each_columns(Layer::Communities.name(), &["code"], None, |f| {
        let code = f.values[0].as_str().unwrap_or_default().to_owned();
        if only.is_empty() || only.contains(&code) {
            comms.push((code, multi(f.geometry)));
        }
        Ok(())
    })?;
    for c in only {
        if !comms.iter().any(|(k, _)| k == c) {
            return Err(StoreError::BadSchema {
                layer: "communities".into(),
                reason: format!("no community with code {c:?}"),
            });
        }
    }
    let index: HashMap<String, usize> = comms
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (c.clone(), i))
        .collect();
    let mut grids: Vec<Vec<GridRow>> = (0..comms.len()).map(|_| Vec::new()).collect();
    store.for_each_columns(Layer::Grids.name(), &["code", "parent_code"], None, |f| {
        let parent = f.values[1].as_str().unwrap_or_default();
        if let Some(&i) = index.get(parent) {
            grids[i].push(GridRow {
                code: f.values[0].as_str().unwrap_or_default().to_owned(),
                households: 0,
                geometry: multi(f.geometry),
            });
        }
        Ok(())
    })?;
    // Buildings by community, with their grid and households.
    let mut buildings: Vec<Vec<(Polygon<f64>, String, u64)>> =
        (0..comms.len()).map(|_| Vec::new()).collect();
    let columns = ["households", "community_code", "grid_code"];
    store.for_each_columns(Layer::Buildings.name(), &columns, None, |f| {
        let c = f.values[1].as_str().unwrap_or_default();
        let g = f.values[2].as_str().unwrap_or_default().to_owned();
        // A building belongs to the community of its grid when it has one.
        let ci = index.get(g.get(..12).unwrap_or(c)).or_else(|| index.get(c));
        if let (Some(&i), Geometry::Polygon(p)) = (ci, f.geometry) {
            let h = f.values[0].as_i64().unwrap_or(0).max(0) as u64;
            buildings[i].push((p, g, h));
        }
        Ok(())
    })?;
    let per: Vec<(CommunityQuality, Vec<u64>, Vec<f64>)> = comms
        .par_iter()
        .zip(grids.par_iter_mut())
        .zip(buildings.par_iter())
        .map(|(((code, area), gs), bs)| measure(code, area, gs, bs, target, tolerance))
        .collect();
    let mut hh_all: Vec<u64> = per.iter().flat_map(|p| p.1.iter().copied()).collect();
    let mut pp_all: Vec<f64> = per.iter().flat_map(|p| p.2.iter().copied()).collect();
    let n_grids = hh_all.len();
    let pct = |n: usize| {
        if n_grids == 0 {
            0.0
        } else {
            100.0 * n as f64 / n_grids as f64
        }
    };
    let sum = |f: fn(&CommunityQuality) -> f64| per.iter().map(|p| f(&p.0)).sum::<f64>();
    Ok(Report {
        target,
        tolerance,
        communities: comms.len(),
        grids: n_grids,
        households_min: hh_all.iter().copied().min().unwrap_or(0),
        households_max: hh_all.iter().copied().max().unwrap_or(0),
        households_median: median(&mut hh_all),
        within_tolerance_pct: pct(per.iter().map(|p| p.0.within_tolerance).sum()),
        contiguous_pct: pct(per.iter().map(|p| p.0.contiguous).sum()),
        polsby_popper_median: quantile(&mut pp_all, 0.5),
        polsby_popper_p10: quantile(&mut pp_all, 0.1),
        gap_m2: sum(|q| q.gap_m2),
        overlap_m2: sum(|q| q.overlap_m2),
        outside_m2: sum(|q| q.outside_m2),
        split_buildings: per.iter().map(|p| p.0.split_buildings).sum(),
        unassigned_buildings: per.iter().map(|p| p.0.unassigned_buildings).sum(),
        communities_without_grids: per.iter().filter(|p| p.0.grids == 0).count(),
        per_community: if per_community || !only.is_empty() {
            per.into_iter().map(|p| p.0).collect()
        } else {
            Vec::new()
        },
    })
}

fn measure(
    code: &str,
    area: &MultiPolygon<f64>,
    grids: &mut [GridRow],
    buildings: &[(Polygon<f64>, String, u64)],
    target: f64,
    tolerance: f64,
) -> (CommunityQuality, Vec<u64>, Vec<f64>) {
    let by_code: HashMap<&str, usize> = grids
        .iter()
        .enumerate()
        .map(|(i, g)| (g.code.as_str(), i))
        .collect();
    let mut hh = vec![0u64; grids.len()];
    let mut split = 0;
    let mut unassigned = 0;
    for (fp, g, h) in buildings {
        let Some(&gi) = by_code.get(g.as_str()) else {
            unassigned += 1;
            continue;
        };
        hh[gi] += h;
        // Both sides are rounded to the same overlay grid, so a footprint
        // inside its grid leaves nothing outside it.
        let fpm = MultiPolygon::new(vec![fp.clone()]);
        let outside = geom::difference(&fpm, &grids[gi].geometry).unsigned_area();
        if outside > fp.unsigned_area() * 1e-6 {
            split += 1;
        }
    }
    for (g, h) in grids.iter_mut().zip(&hh) {
        g.households = *h;
    }
    let within = grids
        .iter()
        .filter(|g| (g.households as f64 - target).abs() <= tolerance * target)
        .count();
    let contiguous = grids
        .iter()
        .filter(|g| {
            let mut per_part = vec![0usize; area.0.len().max(1)];
            for p in &g.geometry.0 {
                let i = p
                    .interior_point()
                    .and_then(|ip| area.0.iter().position(|cp| cp.contains(&ip)))
                    .unwrap_or(0);
                per_part[i] += 1;
            }
            !g.geometry.0.is_empty() && per_part.iter().all(|&n| n <= 1)
        })
        .count();
    let pp: Vec<f64> = grids.iter().map(|g| polsby_popper(&g.geometry)).collect();
    let union = geom::union_all(grids.iter().map(|g| &g.geometry));
    // Planar areas (as the polygons are drawn, like GEOS) in m² at the
    // community's latitude: geodesic areas of the same outline drawn with
    // more or fewer vertices along an edge differ.
    let m2 = {
        let lat = geom::bbox(area).map_or(0.0, |r| r.center().y);
        let (mx, my) = geom::metres_per_degree(lat);
        move |mp: &MultiPolygon<f64>| mp.unsigned_area() * mx * my
    };
    let sum_area: f64 = grids.iter().map(|g| m2(&g.geometry)).sum();
    let union_area = m2(&union);
    let gap = m2(&geom::difference(area, &union));
    let outside = m2(&geom::difference(&union, area));
    let mut hv = hh.clone();
    let mut ppv = pp.clone();
    let q = CommunityQuality {
        community: code.to_owned(),
        grids: grids.len(),
        households_min: hh.iter().copied().min().unwrap_or(0),
        households_max: hh.iter().copied().max().unwrap_or(0),
        households_median: median(&mut hv),
        within_tolerance: within,
        contiguous,
        polsby_popper_median: quantile(&mut ppv, 0.5),
        gap_m2: gap,
        overlap_m2: (sum_area - union_area).max(0.0),
        outside_m2: outside,
        split_buildings: split,
        unassigned_buildings: unassigned,
    };
    (q, hh, pp)
}
