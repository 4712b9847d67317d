//! A deterministic synthetic Beijing inside real district outlines.
//!
//! The city is built top-down and written layer by layer:
//!
//! 1. **Communities and streets.** Per district, community seeds are drawn
//!    with a density gradient (a dense core around Tiananmen plus one town
//!    centre per outer district) and spread by best-candidate sampling; their
//!    Voronoi cells clipped to the district are the communities, so
//!    communities tile the district with no gap and no overlap. Street seeds
//!    are drawn the same way, more sparsely; each community joins the street
//!    of its nearest street seed and a street is the union of its
//!    communities, so streets tile the district and contain their
//!    communities exactly. Voronoi edges between communities are the roads:
//!    arterial between streets, secondary inside a street.
//! 2. **Blocks and buildings.** Each community is cut into blocks (a second
//!    Voronoi, whose edges are local roads) and filled, from its centre
//!    outwards, with footprints on a rotated lattice set back from the roads,
//!    until their capacity holds the community's households at full scale.
//!    Slabs of 8–24 floors in the core, 4–12 in the suburbs, 1–2 storey
//!    courtyard houses in villages.
//! 3. **People and things.** Each district gets exactly `round(census ×
//!    scale)` persons, shared among its communities by density, grouped in
//!    households of 1–5 (mean ≈ 2.5) living in buildings. Places, objects,
//!    events and organizations are spread over each community.
//!
//! Every random choice comes from a ChaCha8 stream keyed by (seed, unit,
//! purpose), so the output depends only on the seed, the scale and the
//! outlines — not on thread scheduling.

use std::collections::HashMap;

use geo::{BooleanOps, BoundingRect, Centroid, Contains, InteriorPoint};
use geo_types::{Coord, Geometry, LineString, MultiLineString, MultiPolygon, Point, Polygon, Rect};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rstar::RTree;
use spade::{DelaunayTriangulation, Point2, Triangulation};

use wangge_engine::codes::{CommunityCode, DistrictCode, IdCardNumber, StreetCode};
use wangge_engine::geom::{self, Frame, reading_order};
use wangge_engine::model::{
    AdminUnit, Building, EVENT_KINDS, EVENT_STATUS, Layer, OBJECT_KINDS, ORGANIZATION_KINDS,
    PLACE_KINDS, Person, PointEntity, RoadKind, age_band,
};
use wangge_engine::store::{Store, StoreError, Value};

/// Beijing's resident population in the 2020 census.
pub const BEIJING_POPULATION: u64 = 21_893_095;
/// Beijing's land area in km², for sharing streets/communities by area.
pub const BEIJING_AREA_KM2: f64 = 16_410.5;
/// Persons per household the synthetic registry aims for.
pub const PERSONS_PER_HOUSEHOLD: f64 = 2.5;

/// Options of [`synthesize`].
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Population scale: 1.0 = census totals.
    pub scale: f64,
    /// Random seed; the same seed gives the same city.
    pub seed: u64,
    /// Streets/townships for the whole of Beijing (a subset of districts gets
    /// its share).
    pub streets_total: usize,
    /// Communities/villages for the whole of Beijing.
    pub communities_total: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            scale: 0.1,
            seed: 2020,
            streets_total: 349,
            communities_total: 7000,
        }
    }
}

/// One district outline to fill.
#[derive(Debug, Clone)]
pub struct DistrictInput {
    /// GB/T 2260 code.
    pub code: DistrictCode,
    /// Name, e.g. 东城区.
    pub name: String,
    /// Census population at scale 1.
    pub population: u64,
    /// Valid outline (repaired and without overlaps).
    pub geometry: MultiPolygon<f64>,
}

pub use wangge_engine::progress::{NoProgress, Progress};

/// Errors of the synthetic city.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The options make no sense.
    #[error("{0}")]
    Options(String),
}

/// What was generated.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SynthSummary {
    /// Features written per layer, in store order.
    pub layers: Vec<(String, u64)>,
    /// Households generated.
    pub households: u64,
    /// Persons generated (= Σ round(census × scale) over districts).
    pub persons: u64,
}

// ---------------------------------------------------------------------------
// Randomness and density
// ---------------------------------------------------------------------------

/// Purposes of random streams, so that layers can be generated independently.
#[derive(Clone, Copy)]
enum Stream {
    Seeds = 1,
    StreetSeeds,
    Blocks,
    Buildings,
    Households,
    Persons,
    Places,
    Objects,
    Events,
    Organizations,
    Names,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn rng_for(seed: u64, unit: u64, stream: Stream) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(splitmix(splitmix(seed ^ splitmix(unit)) ^ stream as u64))
}

const CENTRE: Coord<f64> = Coord {
    x: 116.397,
    y: 39.909,
};

fn km(a: Coord<f64>, b: Coord<f64>) -> f64 {
    let (mx, my) = geom::metres_per_degree(0.5 * (a.y + b.y));
    ((a.x - b.x) * mx).hypot((a.y - b.y) * my) / 1000.0
}

/// Relative resident density: a dense core, outer town centres, a floor.
fn density(p: Coord<f64>, towns: &[Coord<f64>]) -> f64 {
    let d = km(p, CENTRE);
    let core = (-d / 6.0).exp() + 0.25 * (-d / 18.0).exp();
    let town = towns
        .iter()
        .map(|t| 0.45 * (-km(p, *t) / 3.0).exp())
        .fold(0.0, f64::max);
    core.max(town) + 0.003
}

/// The density class of a place decides building types and naming.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Core,
    Urban,
    Rural,
}

fn class(rho: f64) -> Class {
    if rho > 0.45 {
        Class::Core
    } else if rho > 0.07 {
        Class::Urban
    } else {
        Class::Rural
    }
}

// ---------------------------------------------------------------------------
// Seeds and Voronoi
// ---------------------------------------------------------------------------

/// Draws `n` well-spread points inside `area` with local spacing ∝
/// `weight^-½` (best-candidate sampling, distances in metres).
fn sample_seeds(
    area: &MultiPolygon<f64>,
    n: usize,
    weight: &dyn Fn(Coord<f64>) -> f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Coord<f64>> {
    let Some(bbox) = area.bounding_rect() else {
        return Vec::new();
    };
    let frame = Frame::at(bbox.center());
    let uniform = |rng: &mut ChaCha8Rng| Coord {
        x: rng.random_range(bbox.min().x..=bbox.max().x),
        y: rng.random_range(bbox.min().y..=bbox.max().y),
    };
    // Estimate the largest weight for rejection sampling.
    let mut wmax = 0.0f64;
    for _ in 0..256 {
        wmax = wmax.max(weight(uniform(rng)));
    }
    let wmax = wmax * 1.5 + 1e-12;
    let mut tree: RTree<[f64; 2]> = RTree::new();
    let mut out = Vec::with_capacity(n);
    let mut tries = 0usize;
    while out.len() < n && tries < 200_000 * n.max(1) {
        let mut best: Option<(f64, Coord<f64>)> = None;
        let mut got = 0;
        while got < 6 && tries < 200_000 * n.max(1) {
            tries += 1;
            let c = uniform(rng);
            let w = weight(c);
            if rng.random::<f64>() * wmax > w || !area.contains(&Point(c)) {
                continue;
            }
            got += 1;
            let score = match tree.nearest_neighbor(&frame.to_m(c)) {
                Some(q) => {
                    let p = frame.to_m(c);
                    ((p[0] - q[0]).hypot(p[1] - q[1])) * w.sqrt()
                }
                None => f64::INFINITY,
            };
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, c));
            }
        }
        if let Some((_, c)) = best {
            tree.insert(frame.to_m(c));
            out.push(c);
        }
    }
    out
}

/// A Voronoi edge between seeds `a < b`: `(a, b, segment)`.
type VoronoiEdge = (usize, usize, [Coord<f64>; 2]);

/// Voronoi cells (in seed order) and edges `(a, b, segment)` between seeds
/// `a < b`, for seeds inside `bbox`.
fn voronoi(seeds: &[Coord<f64>], bbox: Rect<f64>) -> (Vec<Polygon<f64>>, Vec<VoronoiEdge>) {
    let n = seeds.len();
    let (w, h) = (bbox.width().max(1e-6), bbox.height().max(1e-6));
    let c = bbox.center();
    let mut pts: Vec<Point2<f64>> = seeds.iter().map(|s| Point2::new(s.x, s.y)).collect();
    // Far dummies bound every real cell.
    for (dx, dy) in [
        (-1.0, -1.0),
        (1.0, -1.0),
        (1.0, 1.0),
        (-1.0, 1.0),
        (0.0, -1.3),
        (0.0, 1.3),
        (-1.3, 0.0),
        (1.3, 0.0),
    ] {
        pts.push(Point2::new(c.x + dx * 4.0 * w, c.y + dy * 4.0 * h));
    }
    let Ok(tri) = DelaunayTriangulation::<Point2<f64>>::bulk_load_stable(pts) else {
        return (Vec::new(), Vec::new());
    };
    let mut cells = Vec::with_capacity(n);
    for i in 0..n {
        let v = tri.vertex(spade::handles::FixedVertexHandle::from_index(i));
        let ring: Vec<Coord<f64>> = v
            .as_voronoi_face()
            .adjacent_edges()
            .filter_map(|e| e.from().position())
            .map(|p| Coord { x: p.x, y: p.y })
            .collect();
        cells.push(Polygon::new(LineString::from(ring), vec![]));
    }
    let mut edges = Vec::new();
    for e in tri.undirected_edges() {
        let [a, b] = e.vertices();
        let (a, b) = (a.fix().index(), b.fix().index());
        if a >= n || b >= n {
            continue;
        }
        let [p, q] = e.as_voronoi_edge().vertices();
        if let (Some(p), Some(q)) = (p.position(), q.position()) {
            edges.push((
                a.min(b),
                a.max(b),
                [Coord { x: p.x, y: p.y }, Coord { x: q.x, y: q.y }],
            ));
        }
    }
    (cells, edges)
}

fn clip_lines(area: &MultiPolygon<f64>, seg: [Coord<f64>; 2]) -> Vec<LineString<f64>> {
    let mls = MultiLineString::new(vec![LineString::from(vec![seg[0], seg[1]])]);
    area.clip(&mls, false)
        .0
        .into_iter()
        .filter(|l| l.0.len() >= 2 && l.0[0] != l.0[l.0.len() - 1])
        .collect()
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

const SYLLABLES: [&str; 40] = [
    "安", "定", "和", "平", "东", "西", "南", "北", "华", "光", "明", "德", "新", "兴", "福", "春",
    "永", "月", "坛", "门", "桥", "园", "里", "河", "庄", "营", "清", "景", "山", "湖", "金", "台",
    "长", "丰", "双", "井", "柳", "林", "马", "花",
];

fn name2(rng: &mut ChaCha8Rng) -> String {
    let a = SYLLABLES[rng.random_range(0..SYLLABLES.len())];
    let b = SYLLABLES[rng.random_range(0..SYLLABLES.len())];
    format!("{a}{b}")
}

// ---------------------------------------------------------------------------
// Plan: the geometry of the city before anyone lives in it
// ---------------------------------------------------------------------------

struct BuildingPlan {
    footprint: Polygon<f64>,
    floors: u16,
    capacity: f64,
    kind: &'static str,
}

struct CommunityPlan {
    code: CommunityCode,
    name: String,
    district: usize,
    geometry: MultiPolygon<f64>,
    seed: Coord<f64>,
    class: Class,
    /// Persons at full scale, before allocation.
    persons_ref: f64,
    buildings: Vec<BuildingPlan>,
    /// Persons actually living here at the chosen scale.
    persons: u64,
    /// Household sizes, in household order.
    households: Vec<u8>,
}

struct StreetPlan {
    code: StreetCode,
    name: String,
    geometry: MultiPolygon<f64>,
    communities: Vec<usize>,
}

struct DistrictPlan {
    streets: Vec<StreetPlan>,
    communities: Vec<CommunityPlan>,
    roads: Vec<(LineString<f64>, RoadKind)>,
}

/// How many streets and communities a district gets out of the city totals.
fn shares(d: &DistrictInput, opts: &SynthOptions) -> (usize, usize) {
    let area_km2 = geom::area_m2(&d.geometry) / 1e6;
    let pop = d.population as f64 / BEIJING_POPULATION as f64;
    let area = area_km2 / BEIJING_AREA_KM2;
    let streets = ((0.5 * pop + 0.5 * area) * opts.streets_total as f64)
        .round()
        .max(3.0) as usize;
    let communities = ((0.75 * pop + 0.25 * area) * opts.communities_total as f64)
        .round()
        .max(2.0 * streets as f64) as usize;
    (streets, communities)
}

fn plan_district(
    di: usize,
    d: &DistrictInput,
    towns: &[Coord<f64>],
    opts: &SynthOptions,
) -> DistrictPlan {
    let (n_streets, n_comm) = shares(d, opts);
    let rho = |c: Coord<f64>| density(c, towns);
    let unit = d.code.as_u64();
    let mut rng = rng_for(opts.seed, unit, Stream::Seeds);
    let seeds = sample_seeds(&d.geometry, n_comm, &|c| rho(c).powf(0.8), &mut rng);
    let mut rng = rng_for(opts.seed, unit, Stream::StreetSeeds);
    let street_seeds = sample_seeds(&d.geometry, n_streets, &|c| rho(c).powf(0.5), &mut rng);
    let bbox = d
        .geometry
        .bounding_rect()
        .unwrap_or(Rect::new((0.0, 0.0), (0.0, 0.0)));
    let (cells, edges) = voronoi(&seeds, bbox);
    let clipped: Vec<MultiPolygon<f64>> = cells
        .par_iter()
        .map(|cell| geom::intersection(&MultiPolygon::new(vec![cell.clone()]), &d.geometry))
        .collect();

    // Each community joins the street of its nearest street seed.
    let frame = Frame::at(bbox.center());
    let nearest_street = |c: Coord<f64>| {
        let p = frame.to_m(c);
        street_seeds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let q = frame.to_m(*s);
                (i, (p[0] - q[0]).hypot(p[1] - q[1]))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(0, |(i, _)| i)
    };
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); street_seeds.len().max(1)];
    for (ci, s) in seeds.iter().enumerate() {
        if !clipped[ci].0.is_empty() {
            members[nearest_street(*s)].push(ci);
        }
    }
    let live: Vec<usize> = (0..members.len())
        .filter(|&s| !members[s].is_empty())
        .collect();
    let street_pts: Vec<Coord<f64>> = live
        .iter()
        .map(|&s| street_seeds.get(s).copied().unwrap_or(bbox.center()))
        .collect();
    let band = (bbox.width() * bbox.height() / live.len().max(1) as f64).sqrt();
    let mut street_of_comm = vec![usize::MAX; seeds.len()];
    let mut streets = Vec::new();
    let mut communities: Vec<CommunityPlan> = Vec::new();
    let mut name_rng = rng_for(opts.seed, unit, Stream::Names);
    for (si, &k) in reading_order(&street_pts, band).iter().enumerate() {
        let s = live[k];
        let Ok(code) = d.code.child(u16::try_from(si + 1).unwrap_or(999)) else {
            continue;
        };
        let seed_class = class(rho(street_pts[k]));
        let name = format!(
            "{}{}",
            name2(&mut name_rng),
            if seed_class == Class::Rural {
                "镇"
            } else {
                "街道"
            }
        );
        let pts: Vec<Coord<f64>> = members[s].iter().map(|&c| seeds[c]).collect();
        let band = {
            let r = MultiPolygon::new(
                members[s]
                    .iter()
                    .flat_map(|&c| clipped[c].0.clone())
                    .collect(),
            )
            .bounding_rect()
            .unwrap_or(bbox);
            (r.width() * r.height() / pts.len().max(1) as f64).sqrt()
        };
        let mut comm_ids = Vec::new();
        for (k2, &j) in reading_order(&pts, band).iter().enumerate() {
            let ci = members[s][j];
            let Ok(ccode) = code.child(u16::try_from(k2 + 1).unwrap_or(999)) else {
                continue;
            };
            street_of_comm[ci] = streets.len();
            let centroid = clipped[ci].centroid().map_or(seeds[ci], |p| p.0);
            let cls = class(rho(seeds[ci]));
            let cname = format!(
                "{}{}",
                name2(&mut name_rng),
                if cls == Class::Rural { "村" } else { "社区" }
            );
            comm_ids.push(communities.len());
            communities.push(CommunityPlan {
                code: ccode,
                name: cname,
                district: di,
                geometry: clipped[ci].clone(),
                seed: seeds[ci],
                class: cls,
                persons_ref: geom::area_m2(&clipped[ci]) * rho(centroid).max(rho(seeds[ci])),
                buildings: Vec::new(),
                persons: 0,
                households: Vec::new(),
            });
        }
        streets.push(StreetPlan {
            code,
            name,
            geometry: MultiPolygon::new(vec![]),
            communities: comm_ids,
        });
    }
    // Street geometries are the unions of their communities, made once every
    // community of the city is noded (see `synthesize`).
    // Normalise full-scale persons to the census total.
    let total: f64 = communities.iter().map(|c| c.persons_ref).sum();
    for c in &mut communities {
        c.persons_ref *= d.population as f64 / total.max(1e-12);
    }
    // Roads between communities.
    let roads: Vec<(LineString<f64>, RoadKind)> = edges
        .par_iter()
        .flat_map_iter(|&(a, b, seg)| {
            let (sa, sb) = (street_of_comm[a], street_of_comm[b]);
            let kind = if sa != sb {
                RoadKind::Arterial
            } else {
                RoadKind::Secondary
            };
            clip_lines(&d.geometry, seg)
                .into_iter()
                .map(move |l| (l, kind))
        })
        .collect();
    DistrictPlan {
        streets,
        communities,
        roads,
    }
}

/// Building template per class: (length m, width m, gap along, gap across,
/// floors range).
fn template(class: Class) -> (f64, f64, f64, f64, std::ops::RangeInclusive<u16>) {
    match class {
        Class::Core => (60.0, 14.0, 18.0, 26.0, 8..=24),
        Class::Urban => (45.0, 12.0, 15.0, 22.0, 4..=12),
        Class::Rural => (24.0, 18.0, 10.0, 10.0, 2..=3),
    }
}

/// Road setback: buildings keep this far (m) from block boundaries.
const SETBACK_M: f64 = 6.0;

/// Blocks, local roads and buildings of one community.
fn plan_blocks(c: &mut CommunityPlan, index: u64, seed: u64) -> Vec<LineString<f64>> {
    let Some(bbox) = c.geometry.bounding_rect() else {
        return Vec::new();
    };
    let frame = Frame::at(c.seed);
    let households_ref = c.persons_ref / PERSONS_PER_HOUSEHOLD;
    let mut rng = rng_for(seed, index, Stream::Blocks);
    let n_blocks = match c.class {
        Class::Rural => {
            1 + usize::from(households_ref > 400.0) + usize::from(households_ref > 900.0)
        }
        _ => ((households_ref / 350.0).sqrt().round() as usize).clamp(1, 9),
    };
    let block_seeds = if n_blocks > 1 {
        sample_seeds(&c.geometry, n_blocks, &|_| 1.0, &mut rng)
    } else {
        vec![c.seed]
    };
    let (cells, edges) = if block_seeds.len() > 1 {
        voronoi(&block_seeds, bbox)
    } else {
        (Vec::new(), Vec::new())
    };
    let blocks: Vec<MultiPolygon<f64>> = if cells.is_empty() {
        vec![c.geometry.clone()]
    } else {
        cells
            .iter()
            .map(|cell| geom::intersection(&MultiPolygon::new(vec![cell.clone()]), &c.geometry))
            .filter(|b| !b.0.is_empty())
            .collect()
    };
    let roads: Vec<LineString<f64>> = edges
        .iter()
        .flat_map(|&(_, _, seg)| clip_lines(&c.geometry, seg))
        .collect();

    let (len, wid, gap_along, gap_across, floors) = template(c.class);
    let theta = rng.random_range(-0.6..0.6f64);
    let mut rng_b = rng_for(seed, index, Stream::Buildings);
    // Candidates from every block, nearest to the community centre first.
    let mut cands: Vec<(f64, [[f64; 2]; 4])> = Vec::new();
    let centre = frame.to_m(c.seed);
    for block in &blocks {
        let rings: Vec<Vec<[f64; 2]>> = block
            .0
            .iter()
            .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
            .map(|r| r.0.iter().map(|&q| frame.to_m(q)).collect())
            .collect();
        let t = theta + rng.random_range(-0.15..0.15f64);
        let (ct, st) = (t.cos(), t.sin());
        let along = [ct, st];
        let across = [-st, ct];
        // Extent of the block in the rotated frame.
        let (mut umin, mut umax, mut vmin, mut vmax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in rings.iter().flatten() {
            let u = p[0] * along[0] + p[1] * along[1];
            let v = p[0] * across[0] + p[1] * across[1];
            umin = umin.min(u);
            umax = umax.max(u);
            vmin = vmin.min(v);
            vmax = vmax.max(v);
        }
        let (su, sv) = (len + gap_along, wid + gap_across);
        if !(umax - umin).is_finite() || (umax - umin) / su * (vmax - vmin) / sv > 2e6 {
            continue;
        }
        let off_u = rng.random_range(0.0..su);
        let off_v = rng.random_range(0.0..sv);
        let mut u = umin + off_u - su;
        while u < umax + su {
            let mut v = vmin + off_v - sv;
            while v < vmax + sv {
                let corner = |du: f64, dv: f64| {
                    let (uu, vv) = (u + du, v + dv);
                    [
                        uu * along[0] + vv * across[0],
                        uu * along[1] + vv * across[1],
                    ]
                };
                let (hl, hw) = (len / 2.0, wid / 2.0);
                let m = SETBACK_M;
                let outer = [
                    corner(-hl - m, -hw - m),
                    corner(hl + m, -hw - m),
                    corner(hl + m, hw + m),
                    corner(-hl - m, hw + m),
                ];
                if rect_inside(&outer, &rings) {
                    let rect = [
                        corner(-hl, -hw),
                        corner(hl, -hw),
                        corner(hl, hw),
                        corner(-hl, hw),
                    ];
                    let mid = corner(0.0, 0.0);
                    cands.push(((mid[0] - centre[0]).hypot(mid[1] - centre[1]), rect));
                }
                v += sv;
            }
            u += su;
        }
    }
    cands.sort_by(|a, b| a.0.total_cmp(&b.0));
    let need = households_ref * 1.05;
    let mut capacity = 0.0;
    for (_, rect) in cands {
        if capacity >= need && !c.buildings.is_empty() {
            break;
        }
        let f = rng_b.random_range(floors.clone());
        let cap = (f64::from(f) * len * wid * 0.8 / 90.0).max(1.0);
        capacity += cap;
        let ring: Vec<Coord<f64>> = rect.iter().map(|&p| frame.to_deg(p)).collect();
        let kind = match c.class {
            Class::Rural => "house",
            _ if rng_b.random::<f64>() < 0.1 => "mixed",
            _ => "residential",
        };
        c.buildings.push(BuildingPlan {
            footprint: Polygon::new(LineString::from(ring), vec![]),
            floors: f,
            capacity: cap,
            kind,
        });
    }
    if c.buildings.is_empty() {
        // Too small for the template: one small house at an interior point.
        if let Some(ip) = c.geometry.interior_point() {
            for half in [6.0, 3.0, 1.5] {
                let p = frame.to_m(ip.0);
                let ring: Vec<Coord<f64>> =
                    [[-half, -half], [half, -half], [half, half], [-half, half]]
                        .iter()
                        .map(|d| frame.to_deg([p[0] + d[0], p[1] + d[1]]))
                        .collect();
                let poly = Polygon::new(LineString::from(ring), vec![]);
                if c.geometry.contains(&poly) {
                    c.buildings.push(BuildingPlan {
                        footprint: poly,
                        floors: 1,
                        capacity: 1.0,
                        kind: "house",
                    });
                    break;
                }
            }
        }
    }
    roads
}

/// True when the convex quadrilateral `q` lies inside the region bounded by
/// `rings` (even-odd): its corners are inside and no ring edge crosses it.
fn rect_inside(q: &[[f64; 2]; 4], rings: &[Vec<[f64; 2]>]) -> bool {
    let inside = |p: [f64; 2]| {
        let mut odd = false;
        for r in rings {
            let n = r.len();
            for i in 0..n {
                let (a, b) = (r[i], r[(i + 1) % n]);
                if (a[1] > p[1]) != (b[1] > p[1])
                    && p[0] < a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0])
                {
                    odd = !odd;
                }
            }
        }
        odd
    };
    if !q.iter().all(|&p| inside(p)) {
        return false;
    }
    let cross = |o: [f64; 2], a: [f64; 2], b: [f64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let seg_x = |p1: [f64; 2], p2: [f64; 2], p3: [f64; 2], p4: [f64; 2]| {
        let d1 = cross(p3, p4, p1);
        let d2 = cross(p3, p4, p2);
        let d3 = cross(p1, p2, p3);
        let d4 = cross(p1, p2, p4);
        (d1 > 0.0) != (d2 > 0.0) && (d3 > 0.0) != (d4 > 0.0)
    };
    for r in rings {
        let n = r.len();
        for i in 0..n {
            let (a, b) = (r[i], r[(i + 1) % n]);
            for k in 0..4 {
                if seg_x(q[k], q[(k + 1) % 4], a, b) {
                    return false;
                }
            }
        }
    }
    true
}

/// Splits `total` into integer parts proportional to `weights` (largest
/// remainder), so the parts add up exactly.
fn apportion(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if sum <= 0.0 {
        let mut out = vec![0; weights.len()];
        out[0] = total;
        return out;
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut rest = total.saturating_sub(out.iter().sum());
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if rest == 0 {
            break;
        }
        out[i] += 1;
        rest -= 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Calendar and identity numbers
// ---------------------------------------------------------------------------

pub use wangge_engine::time::civil_from_days;

/// Days from 1970-01-01 to 1930-01-01 and to the census day 2020-11-01.
const DAY_1930: i64 = -14_610;
const DAY_CENSUS: i64 = 18_567;

/// Provinces floating residents come from (prefecture-level seats).
const ORIGINS: [u32; 10] = [
    130_102, 370_102, 410_102, 130_602, 230_102, 510_104, 340_102, 210_102, 420_102, 120_101,
];

/// Maps person numbers to distinct (birth day, sequence) pairs: an affine
/// bijection on `days × 999`, so identity numbers never collide.
struct IdSpace {
    modulus: u128,
    a: u128,
    b: u128,
    days: u128,
}

impl IdSpace {
    fn new(seed: u64) -> Self {
        let days = (DAY_CENSUS - DAY_1930) as u128;
        let modulus = days * 999;
        let gcd = |mut x: u128, mut y: u128| {
            while y != 0 {
                (x, y) = (y, x % y);
            }
            x
        };
        let mut a = u128::from(splitmix(seed) % 1_000_000_007) + 1_000_003;
        while gcd(a, modulus) != 1 {
            a += 1;
        }
        Self {
            modulus,
            a,
            b: u128::from(splitmix(seed ^ 0xD1B5)) % modulus,
            days,
        }
    }

    fn id(&self, n: u64, address: u32) -> IdCardNumber {
        let k = (self.a * u128::from(n) + self.b) % self.modulus;
        let day = DAY_1930 + (k % self.days) as i64;
        let seq = (k / self.days) as u16 + 1;
        let (y, m, d) = civil_from_days(day);
        IdCardNumber::new(address, y as u16, m, d, seq).unwrap_or_else(|_| unreachable_id())
    }
}

#[cold]
fn unreachable_id() -> IdCardNumber {
    // Every (day, seq) above is a valid date in 1930..2020 and 1..=999.
    IdCardNumber::new(110_101, 1970, 1, 1, 1).unwrap_or_else(|e| panic!("{e}"))
}

fn age_at_census(id: &IdCardNumber) -> u32 {
    let (y, m, d) = id.birth_date();
    let mut age = 2020 - i32::from(y);
    if (m, d) > (11, 1) {
        age -= 1;
    }
    age.max(0) as u32
}

// ---------------------------------------------------------------------------
// The whole city
// ---------------------------------------------------------------------------

/// Builds the synthetic city into `store`, which must be new (no layers).
/// Streams persons in chunks so memory stays bounded at any scale.
pub fn synthesize(
    store: &mut Store,
    districts: &[DistrictInput],
    opts: &SynthOptions,
    progress: &dyn Progress,
) -> Result<SynthSummary, SynthError> {
    if !(opts.scale > 0.0 && opts.scale <= 10.0) {
        return Err(SynthError::Options(format!(
            "scale {} must be in (0, 10]",
            opts.scale
        )));
    }
    if districts.is_empty() {
        return Err(SynthError::Options("no districts to fill".into()));
    }
    let towns: Vec<Coord<f64>> = districts
        .iter()
        .filter(|d| km(d.geometry.interior_point().map_or(CENTRE, |p| p.0), CENTRE) > 15.0)
        .filter_map(|d| {
            d.geometry
                .0
                .iter()
                .max_by(|a, b| {
                    geo::Area::unsigned_area(*a).total_cmp(&geo::Area::unsigned_area(*b))
                })
                .and_then(|p| p.interior_point())
                .map(|p| p.0)
        })
        .collect();

    progress.stage("communities", districts.len() as u64);
    let mut plans: Vec<DistrictPlan> = districts
        .par_iter()
        .enumerate()
        .map(|(i, d)| {
            let p = plan_district(i, d, &towns, opts);
            progress.inc(1);
            p
        })
        .collect();

    // Node every community against all the others, across districts too, so
    // that neighbours share their boundary vertices (no cm slivers of
    // overlap where clipping rounded a crossing point); then streets are the
    // unions of their communities, so they contain them exactly.
    let mut all: Vec<Option<MultiPolygon<f64>>> = plans
        .iter_mut()
        .flat_map(|p| p.communities.iter_mut())
        .map(|c| {
            Some(std::mem::replace(
                &mut c.geometry,
                MultiPolygon::new(Vec::new()),
            ))
        })
        .collect();
    geom::node_layer(&mut all, 1.0 / geom::GRID_PER_DEGREE);
    let mut noded = all.into_iter();
    for plan in &mut plans {
        for c in &mut plan.communities {
            // node_layer keeps every slot filled.
            if let Some(Some(g)) = noded.next() {
                c.geometry = g;
            }
        }
        let communities = &plan.communities;
        let geoms: Vec<MultiPolygon<f64>> = plan
            .streets
            .par_iter()
            .map(|s| geom::union_all(s.communities.iter().map(|&c| &communities[c].geometry)))
            .collect();
        for (s, g) in plan.streets.iter_mut().zip(geoms) {
            s.geometry = g;
        }
    }

    let total_comms: usize = plans.iter().map(|p| p.communities.len()).sum();
    progress.stage("buildings", total_comms as u64);
    let mut local_roads: Vec<Vec<LineString<f64>>> = Vec::new();
    for plan in &mut plans {
        let roads: Vec<Vec<LineString<f64>>> = plan
            .communities
            .par_iter_mut()
            .map(|c| {
                let r = plan_blocks(c, c.code.as_u64(), opts.seed);
                progress.inc(1);
                r
            })
            .collect();
        local_roads.extend(roads);
    }

    // Persons per community: exact district totals, shared by density among
    // communities that have somewhere to live.
    let mut summary = SynthSummary::default();
    for (plan, d) in plans.iter_mut().zip(districts) {
        let total = (d.population as f64 * opts.scale).round() as u64;
        let weights: Vec<f64> = plan
            .communities
            .iter()
            .map(|c| {
                if c.buildings.is_empty() {
                    0.0
                } else {
                    c.persons_ref
                }
            })
            .collect();
        for (c, p) in plan.communities.iter_mut().zip(apportion(total, &weights)) {
            c.persons = p;
            let mut rng = rng_for(opts.seed, c.code.as_u64(), Stream::Households);
            let mut left = p;
            while left > 0 {
                let r: f64 = rng.random();
                let size: u64 = match r {
                    x if x < 0.25 => 1,
                    x if x < 0.55 => 2,
                    x if x < 0.80 => 3,
                    x if x < 0.92 => 4,
                    _ => 5,
                };
                let size = size.min(left);
                c.households.push(size as u8);
                left -= size;
            }
            summary.households += c.households.len() as u64;
            summary.persons += p;
        }
    }

    let comms: Vec<&CommunityPlan> = plans.iter().flat_map(|p| p.communities.iter()).collect();
    write_admin(store, districts, &plans, &mut summary)?;
    write_roads(store, &plans, &local_roads, &mut summary)?;
    write_buildings(store, &comms, progress, &mut summary)?;
    write_points(store, &comms, opts, progress, &mut summary)?;
    write_persons(store, &comms, districts, opts, progress, &mut summary)?;
    Ok(summary)
}

/// Households per building of a community, proportional to capacity.
fn households_per_building(c: &CommunityPlan) -> Vec<u64> {
    let caps: Vec<f64> = c.buildings.iter().map(|b| b.capacity).collect();
    apportion(c.households.len() as u64, &caps)
}

fn building_id(c: &CommunityPlan, k: usize) -> String {
    format!("B{}-{:04}", c.code, k + 1)
}

fn write_admin(
    store: &mut Store,
    districts: &[DistrictInput],
    plans: &[DistrictPlan],
    summary: &mut SynthSummary,
) -> Result<(), SynthError> {
    for layer in Layer::ALL {
        store.create_layer(&layer.schema())?;
    }
    let count = |cs: &mut dyn Iterator<Item = &CommunityPlan>| {
        cs.fold((0i64, 0i64), |(h, p), c| {
            (h + c.households.len() as i64, p + c.persons as i64)
        })
    };
    let unit =
        |code: String, name: &str, parent: String, (h, p): (i64, i64), g: &MultiPolygon<f64>| {
            AdminUnit {
                code,
                name: name.to_owned(),
                parent_code: parent,
                households: h,
                persons: p,
                area_m2: geom::area_m2(g),
                geometry: g.clone(),
            }
        };
    let mut units: Vec<(Layer, Vec<AdminUnit>)> = vec![
        (Layer::Districts, Vec::new()),
        (Layer::Streets, Vec::new()),
        (Layer::Communities, Vec::new()),
    ];
    // A district is stored as the union of its streets, so the levels nest
    // exactly (its outline differs from the repaired input by the cm of
    // noding at most).
    let outlines: Vec<MultiPolygon<f64>> = plans
        .par_iter()
        .map(|p| geom::union_all(p.streets.iter().map(|s| &s.geometry)))
        .collect();
    for ((d, plan), outline) in districts.iter().zip(plans).zip(&outlines) {
        let totals = count(&mut plan.communities.iter());
        units[0].1.push(unit(
            d.code.to_string(),
            &d.name,
            String::new(),
            totals,
            outline,
        ));
        for s in &plan.streets {
            let totals = count(&mut s.communities.iter().map(|&c| &plan.communities[c]));
            units[1].1.push(unit(
                s.code.to_string(),
                &s.name,
                s.code.parent().to_string(),
                totals,
                &s.geometry,
            ));
        }
        for c in &plan.communities {
            let totals = (c.households.len() as i64, c.persons as i64);
            units[2].1.push(unit(
                c.code.to_string(),
                &c.name,
                c.code.parent().to_string(),
                totals,
                &c.geometry,
            ));
        }
    }
    for (layer, list) in units {
        let mut w = store.writer(layer.name())?;
        for u in &list {
            w.insert(&Geometry::MultiPolygon(u.geometry.clone()), &u.values())?;
        }
        summary.layers.push((layer.name().into(), w.commit()?));
    }
    summary.layers.push(("grids".into(), 0));
    Ok(())
}

fn write_roads(
    store: &mut Store,
    plans: &[DistrictPlan],
    local: &[Vec<LineString<f64>>],
    summary: &mut SynthSummary,
) -> Result<(), SynthError> {
    let mut w = store.writer(Layer::Roads.name())?;
    let mut n = 0u64;
    let mut push =
        |w: &mut wangge_engine::store::LayerWriter<'_>, l: &LineString<f64>, kind: RoadKind| {
            n += 1;
            w.insert(
                &Geometry::LineString(l.clone()),
                &[
                    Value::Text(format!("R{n:07}")),
                    Value::from(kind.as_str()),
                    Value::from(""),
                ],
            )
        };
    for plan in plans {
        for (l, kind) in &plan.roads {
            push(&mut w, l, *kind)?;
        }
    }
    for l in local.iter().flatten() {
        push(&mut w, l, RoadKind::Local)?;
    }
    summary.layers.push(("roads".into(), w.commit()?));
    Ok(())
}

fn write_buildings(
    store: &mut Store,
    comms: &[&CommunityPlan],
    progress: &dyn Progress,
    summary: &mut SynthSummary,
) -> Result<(), SynthError> {
    progress.stage("write buildings", comms.len() as u64);
    let mut w = store.writer(Layer::Buildings.name())?;
    for c in comms {
        for (k, (b, h)) in c
            .buildings
            .iter()
            .zip(households_per_building(c))
            .enumerate()
        {
            let building = Building {
                id: building_id(c, k),
                kind: b.kind,
                floors: b.floors,
                households: h as u32,
                community: c.code,
                footprint: b.footprint.clone(),
            };
            w.insert(
                &Geometry::Polygon(building.footprint.clone()),
                &building.values(),
            )?;
        }
        progress.inc(1);
    }
    summary.layers.push(("buildings".into(), w.commit()?));
    Ok(())
}

/// A random point inside a community: in a random building's footprint when
/// `in_building`, else anywhere in its area (rejection sampling).
fn random_point(c: &CommunityPlan, rng: &mut ChaCha8Rng, in_building: bool) -> Option<Point<f64>> {
    if in_building && !c.buildings.is_empty() {
        let b = &c.buildings[rng.random_range(0..c.buildings.len())];
        return Some(point_in_rect(&b.footprint, rng));
    }
    let r = c.geometry.bounding_rect()?;
    for _ in 0..10_000 {
        let p = Point::new(
            rng.random_range(r.min().x..=r.max().x),
            rng.random_range(r.min().y..=r.max().y),
        );
        if c.geometry.contains(&p) {
            return Some(p);
        }
    }
    c.geometry.interior_point()
}

/// A point strictly inside a (convex) building footprint.
fn point_in_rect(footprint: &Polygon<f64>, rng: &mut ChaCha8Rng) -> Point<f64> {
    let r = &footprint.exterior().0;
    // Bilinear interpolation between the four corners, away from the edges.
    let (s, t) = (rng.random_range(0.1..0.9), rng.random_range(0.1..0.9));
    let lerp = |a: Coord<f64>, b: Coord<f64>, k: f64| a + (b - a) * k;
    let p = lerp(lerp(r[0], r[1], s), lerp(r[3], r[2], s), t);
    Point(p)
}

fn write_points(
    store: &mut Store,
    comms: &[&CommunityPlan],
    opts: &SynthOptions,
    progress: &dyn Progress,
    summary: &mut SynthSummary,
) -> Result<(), SynthError> {
    const KIND_CN: [&str; 8] = [
        "小学",
        "幼儿园",
        "社区卫生服务站",
        "菜市场",
        "公园",
        "药店",
        "社区服务中心",
        "公交站",
    ];
    const ORG_CN: [&str; 4] = ["科技有限公司", "志愿者协会", "党支部", "便利店"];
    for (layer, stream) in [
        (Layer::Places, Stream::Places),
        (Layer::Objects, Stream::Objects),
        (Layer::Events, Stream::Events),
        (Layer::Organizations, Stream::Organizations),
    ] {
        progress.stage(&format!("write {layer}"), comms.len() as u64);
        let mut w = store.writer(layer.name())?;
        for chunk in comms.chunks(256) {
            let rows: Vec<Vec<PointEntity>> = chunk
                .par_iter()
                .map(|c| {
                    let mut rng = rng_for(opts.seed, c.code.as_u64(), stream);
                    let hh_ref = c.persons_ref / PERSONS_PER_HOUSEHOLD;
                    let n = match layer {
                        Layer::Places => 2 + (hh_ref / 500.0) as usize,
                        Layer::Objects => 8 + c.buildings.len() / 2,
                        Layer::Events => poisson_like(c.persons as f64 * 0.004, &mut rng),
                        _ => poisson_like(c.persons as f64 * 0.02, &mut rng),
                    };
                    (0..n)
                        .filter_map(|k| {
                            let in_building = matches!(layer, Layer::Places | Layer::Organizations);
                            let location = random_point(c, &mut rng, in_building)?;
                            let (kind, label, extra) = match layer {
                                Layer::Places => {
                                    let i = rng.random_range(0..PLACE_KINDS.len());
                                    let base =
                                        c.name.trim_end_matches("社区").trim_end_matches('村');
                                    (
                                        PLACE_KINDS[i],
                                        format!("{base}{}", KIND_CN[i]),
                                        String::new(),
                                    )
                                }
                                Layer::Objects => {
                                    let kind =
                                        OBJECT_KINDS[rng.random_range(0..OBJECT_KINDS.len())];
                                    let status = if rng.random::<f64>() < 0.95 {
                                        "normal"
                                    } else {
                                        "damaged"
                                    };
                                    (kind, status.to_owned(), String::new())
                                }
                                Layer::Events => {
                                    let kind = EVENT_KINDS[rng.random_range(0..EVENT_KINDS.len())];
                                    let status =
                                        EVENT_STATUS[rng.random_range(0..EVENT_STATUS.len())];
                                    // 2026-01-01 .. 2026-11-01
                                    let day = 20_454 + rng.random_range(0..304);
                                    let (y, m, d) = civil_from_days(day);
                                    let secs = rng.random_range(0..86_400);
                                    let at = format!(
                                        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00",
                                        secs / 3600,
                                        secs / 60 % 60,
                                        secs % 60
                                    );
                                    (kind, status.to_owned(), at)
                                }
                                _ => {
                                    let i = rng.random_range(0..ORGANIZATION_KINDS.len());
                                    let employees: u32 = if i == 0 {
                                        rng.random_range(3..500)
                                    } else {
                                        rng.random_range(1..40)
                                    };
                                    (
                                        ORGANIZATION_KINDS[i],
                                        format!("{}{}", name2(&mut rng), ORG_CN[i]),
                                        employees.to_string(),
                                    )
                                }
                            };
                            let prefix = match layer {
                                Layer::Places => 'L',
                                Layer::Objects => 'O',
                                Layer::Events => 'E',
                                _ => 'G',
                            };
                            Some(PointEntity {
                                layer,
                                id: format!("{prefix}{}-{:05}", c.code, k + 1),
                                kind,
                                label,
                                extra,
                                community: c.code,
                                location,
                            })
                        })
                        .collect()
                })
                .collect();
            for e in rows.iter().flatten() {
                w.insert(&e.geometry(), &e.values())?;
            }
            progress.inc(chunk.len() as u64);
        }
        summary.layers.push((layer.name().into(), w.commit()?));
    }
    Ok(())
}

/// A count with mean `mean` (rounded mean plus ±√mean jitter, never negative).
fn poisson_like(mean: f64, rng: &mut ChaCha8Rng) -> usize {
    let jitter = rng.random_range(-1.0..1.0) * mean.sqrt();
    (mean + jitter).round().max(0.0) as usize
}

fn write_persons(
    store: &mut Store,
    comms: &[&CommunityPlan],
    districts: &[DistrictInput],
    opts: &SynthOptions,
    progress: &dyn Progress,
    summary: &mut SynthSummary,
) -> Result<(), SynthError> {
    let ids = IdSpace::new(opts.seed);
    // Global person numbers: prefix sums in community order.
    let mut first = Vec::with_capacity(comms.len());
    let mut n = 0u64;
    for c in comms {
        first.push(n);
        n += c.persons;
    }
    let district_code: HashMap<usize, u32> = districts
        .iter()
        .enumerate()
        .map(|(i, d)| (i, d.code.as_u64() as u32))
        .collect();
    progress.stage("write persons", n);
    let mut w = store.writer(Layer::Persons.name())?;
    let mut written = 0u64;
    let mut start = 0usize;
    while start < comms.len() {
        // Chunks of about 200k persons keep memory flat at any scale.
        let mut end = start;
        let mut persons = 0u64;
        while end < comms.len() && (persons < 200_000 || end == start) {
            persons += comms[end].persons;
            end += 1;
        }
        let rows: Vec<Vec<Person>> = (start..end)
            .into_par_iter()
            .map(|ci| {
                let c = comms[ci];
                let mut rng = rng_for(opts.seed, c.code.as_u64(), Stream::Persons);
                let home = district_code.get(&c.district).copied().unwrap_or(110_101);
                let per_building = households_per_building(c);
                let mut out = Vec::with_capacity(c.persons as usize);
                let mut h = 0usize;
                let mut k = first[ci];
                for (b, &count) in per_building.iter().enumerate() {
                    let bid = building_id(c, b);
                    for _ in 0..count {
                        let hid = format!("H{}-{:05}", c.code, h + 1);
                        let registered = rng.random::<f64>() < 0.62;
                        let address = if registered {
                            home
                        } else {
                            ORIGINS[rng.random_range(0..ORIGINS.len())]
                        };
                        for _ in 0..c.households[h] {
                            let id_card = ids.id(k, address);
                            out.push(Person {
                                id: format!("P{k:010}"),
                                age_band: age_band(age_at_census(&id_card)),
                                id_card,
                                household_id: hid.clone(),
                                building_id: bid.clone(),
                                registered,
                                community: c.code,
                                location: point_in_rect(&c.buildings[b].footprint, &mut rng),
                            });
                            k += 1;
                        }
                        h += 1;
                    }
                }
                out
            })
            .collect();
        for p in rows.iter().flatten() {
            w.insert(&Geometry::Point(p.location), &p.values())?;
            written += 1;
        }
        progress.inc(persons);
        start = end;
    }
    summary.layers.push(("persons".into(), w.commit()?));
    debug_assert_eq!(written, summary.persons);
    Ok(())
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// The real district outlines shipped in `data/` (see its README).
pub const BEIJING_DISTRICTS_GEOJSON: &str = include_str!("../../data/beijing-districts.geojson");
/// The 2020 census populations shipped in `data/`.
pub const BEIJING_CENSUS_CSV: &str = include_str!("../../data/beijing-census-2020.csv");

/// Parses a census CSV with columns `code` and `population_2020` (or
/// `population`). Errors name the row.
pub fn parse_census(text: &str, label: &str) -> Result<HashMap<DistrictCode, u64>, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = r
        .headers()
        .map_err(|e| format!("{label}: header: {e}"))?
        .clone();
    let col = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&h.trim_start_matches('\u{feff}').trim()))
    };
    let code = col(&["code"]).ok_or_else(|| format!("{label}: no `code` column"))?;
    let pop = col(&["population_2020", "population"])
        .ok_or_else(|| format!("{label}: no `population_2020` column"))?;
    let mut out = HashMap::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("{label}: row {}: {e}", i + 1))?;
        let c: DistrictCode = rec
            .get(code)
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|e| format!("{label}: row {}: {e}", i + 1))?;
        let p: u64 = rec.get(pop).unwrap_or("").trim().parse().map_err(|_| {
            format!(
                "{label}: row {}: population {:?} is not a whole number",
                i + 1,
                rec.get(pop).unwrap_or("")
            )
        })?;
        out.insert(c, p);
    }
    Ok(out)
}

/// Turns district features into repaired, non-overlapping inputs for
/// [`synthesize`]: codes from `properties.code` (or the feature id), names
/// from `properties.name`, populations from `census` (districts missing from
/// it get 1,000 persons per km²). Returns the validation report too.
pub fn prepare_districts(
    features: &[wangge_engine::io::geojson::GeoFeature],
    census: &HashMap<DistrictCode, u64>,
    label: &str,
) -> Result<
    (
        Vec<DistrictInput>,
        wangge_engine::validate::ValidationReport,
    ),
    String,
> {
    let mut codes = Vec::with_capacity(features.len());
    let mut inputs = Vec::with_capacity(features.len());
    for f in features {
        let text = f
            .property_text("code")
            .or_else(|| f.id.clone())
            .ok_or_else(|| format!("{label}: feature {}: no `code` property or id", f.number))?;
        let code: DistrictCode = text
            .parse()
            .map_err(|e| format!("{label}: feature {}: {e}", f.number))?;
        if codes.contains(&code) {
            return Err(format!(
                "{label}: feature {}: district code {code} appears twice",
                f.number
            ));
        }
        codes.push(code);
        inputs.push(wangge_engine::validate::PolygonInput {
            number: f.number,
            code: Some(code.to_string()),
            geometry: f.geometry.clone(),
            notes: f.notes.clone(),
        });
    }
    let (fixed, report) = wangge_engine::validate::validate_polygons(&inputs);
    let mut out = Vec::new();
    for ((f, code), g) in features.iter().zip(codes).zip(fixed) {
        let Some(geometry) = g else {
            return Err(format!(
                "{label}: feature {} ({code}) could not be repaired; see `wangge validate`",
                f.number
            ));
        };
        let population = census
            .get(&code)
            .copied()
            .unwrap_or_else(|| (geom::area_m2(&geometry) / 1e3) as u64);
        out.push(DistrictInput {
            code,
            name: f.property_text("name").unwrap_or_else(|| code.to_string()),
            population,
            geometry,
        });
    }
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_adds_up_exactly() {
        let parts = apportion(10, &[1.0, 1.0, 1.0]);
        assert_eq!(parts.iter().sum::<u64>(), 10);
        assert_eq!(parts, vec![4, 3, 3]);
        assert_eq!(apportion(7, &[0.0, 0.0]), vec![7, 0]);
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(DAY_1930), (1930, 1, 1));
        assert_eq!(civil_from_days(DAY_CENSUS), (2020, 11, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn identity_numbers_are_distinct_and_valid() {
        let ids = IdSpace::new(7);
        let mut seen = std::collections::HashSet::new();
        for n in 0..50_000 {
            let id = ids.id(n, 110_101);
            assert!(id.to_string().parse::<IdCardNumber>().is_ok());
            assert!(seen.insert(id.to_string()));
        }
    }

    #[test]
    fn rect_inside_rejects_a_notch() {
        // A square with a thin slit cut from the top down through the middle.
        let ring = vec![
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [5.1, 10.0],
            [5.1, 2.0],
            [4.9, 2.0],
            [4.9, 10.0],
            [0.0, 10.0],
        ];
        let q = [[1.0, 3.0], [9.0, 3.0], [9.0, 4.0], [1.0, 4.0]];
        assert!(!rect_inside(&q, std::slice::from_ref(&ring)));
        let q2 = [[1.0, 0.5], [9.0, 0.5], [9.0, 1.5], [1.0, 1.5]];
        assert!(rect_inside(&q2, &[ring]));
    }

    #[test]
    fn voronoi_cells_tile_their_box() {
        let mut rng = rng_for(1, 1, Stream::Seeds);
        let seeds: Vec<Coord<f64>> = (0..50)
            .map(|_| Coord {
                x: rng.random_range(0.0..1.0),
                y: rng.random_range(0.0..1.0),
            })
            .collect();
        let (cells, edges) = voronoi(&seeds, Rect::new((0.0, 0.0), (1.0, 1.0)));
        let unit = MultiPolygon::new(vec![Rect::new((0.0, 0.0), (1.0, 1.0)).to_polygon()]);
        let total: f64 = cells
            .iter()
            .map(|c| {
                geom::area_deg2(&geom::intersection(
                    &MultiPolygon::new(vec![c.clone()]),
                    &unit,
                ))
            })
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!(edges.len() >= 50);
        for (i, s) in seeds.iter().enumerate() {
            assert!(cells[i].contains(&Point(*s)));
        }
    }
}
