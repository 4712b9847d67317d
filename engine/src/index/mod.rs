//! Point-in-polygon index over a polygon layer: built once, queried millions
//! of times from many threads.
//!
//! # How it works
//!
//! The layer's bounding box is covered by a raster of equal-angle cells,
//! sized from the polygons (about 3 cells across a small polygon, at most
//! 16 Mi cells). Every polygon edge marks the cells its segment passes
//! through (with a small safety margin), and those *boundary* cells keep the
//! list of polygons whose edges touch them. Every other cell lies wholly
//! inside one polygon (or outside all), so it stores that answer directly:
//! a query in such a cell is one multiply-and-floor and one array read.
//!
//! A query in a boundary cell runs an exact crossing-number test against
//! the few candidate polygons — and only against the edges a ray along the
//! cell's raster row can cross: each candidate entry points at a contiguous
//! copy of its polygon's edges for that row, so the test reads one short run
//! of memory whatever the polygon's size. In a coverage build, a boundary
//! cell that no *unshared* edge comes near (every edge there is the exact
//! shared edge of two polygons on opposite sides) lies inside the union of
//! its candidates: there the last candidate is never tested, it is the
//! answer when the others are not, and the cheapest candidates go first.
//! [`GridIndex::locate_many`] fetches a batch's cells, candidate lists and
//! first edges in separate passes, so their cache misses overlap.
//!
//! An [`rstar`] R-tree over polygon boxes (built on first use) serves the
//! nearest-polygon search and is the plain fallback path
//! ([`GridIndex::locate_rtree`]), kept for comparison in the benches.
//!
//! [`H3Cover`] is the same idea with H3 cells (h3o) in place of the raster;
//! the benches compare the two.
//!
//! # Exactness and the boundary rule
//!
//! Answers are computed in `f64` on the coordinates as given; there is no
//! tolerance anywhere except the cell marking margin, which only makes more
//! cells "boundary" (exact) cells. The crossing test is half-open: an edge
//! counts when `y0 <= y < y1` (with `y0 < y1` after ordering its ends) and
//! the point lies strictly west of it. Because both neighbours of a shared
//! edge evaluate the same arithmetic on the same two vertices, a point on a
//! boundary shared by two polygons belongs to exactly one of them:
//!
//! * on a shared edge that is not horizontal: the polygon **east** of it;
//! * on a shared horizontal edge: the polygon **north** of it;
//! * on a shared vertex: the polygon that owns the area just north-east.
//!
//! Where polygons overlap (an unresolved layer), the one that comes first in
//! the index (the caller orders by code) wins. A point on the outer boundary
//! of the layer, or within [`SNAP_DEG`] of a polygon, that no polygon
//! contains by the rule above is given to the nearest polygon, so no point
//! on or next to the layer is lost to rounding.

use std::borrow::Borrow;
use std::sync::OnceLock;

use geo_types::{LineString, MultiPolygon};
use rstar::{
    AABB, RTree,
    primitives::{GeomWithData, Line, Rectangle},
};

use crate::geom::metres_per_degree;

mod h3;
mod near;
pub use h3::{CellHasher, H3Cover};

/// Points no polygon contains, but within this distance (degrees) of one,
/// are given to the nearest polygon (about 0.1 mm).
pub const SNAP_DEG: f64 = 1e-9;

/// Cell value: outside every polygon.
const OUTSIDE: u32 = u32::MAX;
/// Cell value flag: a boundary cell; the low bits index the candidate lists.
const BOUNDARY: u32 = 1 << 31;
/// Boundary cell flag (coverage builds): the cell lies inside the union of
/// its candidates, so a point no other candidate contains is in the last.
const CLOSED: u32 = 1 << 30;

/// One edge, ends ordered so that `y0 <= y1`. Horizontal edges are kept only
/// for the nearest-polygon search, never for crossing tests.
#[derive(Debug, Clone, Copy)]
struct Edge {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Edge {
    const ZERO: Edge = Edge {
        x0: 0.0,
        y0: 0.0,
        x1: 0.0,
        y1: 0.0,
    };

    fn new(a: geo_types::Coord<f64>, b: geo_types::Coord<f64>) -> Edge {
        if (a.y, a.x) <= (b.y, b.x) {
            Edge {
                x0: a.x,
                y0: a.y,
                x1: b.x,
                y1: b.y,
            }
        } else {
            Edge {
                x0: b.x,
                y0: b.y,
                x1: a.x,
                y1: a.y,
            }
        }
    }

    /// Does a ray from `(x, y)` towards +x cross this edge (half-open in y)?
    #[inline]
    fn crosses(&self, x: f64, y: f64) -> bool {
        // Without branches (they mispredict on real boundaries): for a
        // horizontal edge the quotient is NaN or infinite, but the y test
        // is false then anyway, so the answer is the short-circuit one.
        let xi = self.x0 + (y - self.y0) * (self.x1 - self.x0) / (self.y1 - self.y0);
        (self.y0 <= y) & (y < self.y1) & (x < xi)
    }
}

/// One polygon, prepared: its box and its bands (its edges are
/// [`GridIndex::poly_edges`]).
#[derive(Debug, Clone, Copy)]
struct Prepared {
    min: [f64; 2],
    max: [f64; 2],
    /// Horizontal bands for polygons with many edges: the crossing test at
    /// latitude y needs only the edges of y's band. `bands == 0`: none.
    bands: u32,
    band_start: u32,
    inv_band: f64,
}

/// Polygons with more edges than this get bands.
const BAND_MIN_EDGES: usize = 32;

impl Prepared {
    /// The band holding latitude `y` (monotone in `y`, clamped).
    #[inline]
    fn band(&self, y: f64) -> usize {
        let t = ((y - self.min[1]) * self.inv_band).floor();
        (t.max(0.0) as usize).min(self.bands as usize - 1)
    }
}

/// Statistics about a built index.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct IndexStats {
    /// Polygons indexed (empty ones included, they never match).
    pub polygons: usize,
    /// Edges over all rings.
    pub edges: usize,
    /// Raster cells.
    pub cells: usize,
    /// Cell size, degrees (longitude, latitude).
    pub cell_deg: [f64; 2],
    /// Cells wholly inside one polygon.
    pub interior_cells: usize,
    /// Cells touched by an edge (answered by exact tests).
    pub boundary_cells: usize,
    /// Boundary cells inside the union of their candidates (coverage
    /// builds): one candidate fewer to test.
    pub closed_cells: usize,
    /// Sum of candidate-list lengths over boundary cells.
    pub candidates: usize,
    /// Approximate heap memory of the index, bytes.
    pub memory_bytes: usize,
}

/// The nearest polygon to a point outside every polygon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearest {
    /// Position of the polygon in the index.
    pub id: u32,
    /// Distance from the point to the polygon's boundary, metres (local
    /// equirectangular at the point's latitude; < 0.1 % error within 50 km).
    pub distance_m: f64,
}

type BoxEntry = GeomWithData<Rectangle<[f64; 2]>, u32>;
type SegEntry = GeomWithData<Line<[f64; 2]>, u32>;

/// A point-in-polygon index; see the module docs.
#[derive(Debug)]
pub struct GridIndex {
    polys: Vec<Prepared>,
    /// Polygon `i`'s edges are `edges[edge_start[i]..edge_start[i + 1]]`;
    /// 4 bytes per polygon, apart from `polys`, so they stay in cache.
    edge_start: Vec<u32>,
    edges: Vec<Edge>,
    band_off: Vec<u32>,
    band_edges: Vec<u32>,
    /// R-tree over polygon boxes, built on first use (nearest-polygon
    /// queries and the plain baseline).
    boxes: OnceLock<RTree<BoxEntry>>,
    /// Segment tree for nearest-polygon queries, built on first use, with
    /// longitudes multiplied by `seg_k` (so that tree distances are close to
    /// ground distances and nearest searches stop early).
    segments: OnceLock<RTree<SegEntry>>,
    /// The same segments bucketed for nearest-edge queries of outside
    /// points, built on first use (`near`).
    near: OnceLock<near::NearGrid>,
    seg_k: f64,
    origin: [f64; 2],
    inv_cell: [f64; 2],
    cell: [f64; 2],
    nx: usize,
    ny: usize,
    cells: Vec<u32>,
    /// Boundary cell lists: a header `[n, 0, 0]` (a boundary cell's value
    /// is its position), then `n` candidates `[polygon, lo, hi]`, where
    /// `row_edges[lo..hi]` are the polygon's edges that a ray along the
    /// cell's raster row can cross.
    cand: Vec<[u32; 3]>,
    /// Copies of every polygon's non-horizontal edges, grouped by polygon
    /// and raster row: the row's edges of a candidate are contiguous, so a
    /// crossing test in a boundary cell reads one short run of memory.
    row_edges: Vec<Edge>,
}

impl GridIndex {
    /// Builds the index. Position in `polygons` is the polygon's id and its
    /// priority where polygons overlap (lower wins).
    ///
    /// # Panics
    /// If there are 2³¹ polygons or 2³² edges or more.
    #[must_use]
    pub fn new<P: Borrow<MultiPolygon<f64>>>(polygons: &[P]) -> GridIndex {
        Self::with_cells(polygons, None)
    }

    /// Like [`GridIndex::new`] with a chosen raster cell size in degrees
    /// (for tests and benches); `None` picks it from the polygons.
    ///
    /// # Panics
    /// As [`GridIndex::new`].
    #[must_use]
    pub fn with_cells<P: Borrow<MultiPolygon<f64>>>(
        polygons: &[P],
        cell_deg: Option<f64>,
    ) -> GridIndex {
        Self::build(polygons, cell_deg, false)
    }

    /// Builds the index for a *coverage*: polygons whose interiors do not
    /// overlap (a repaired grid layer, or any level of a wangge store). The
    /// build skips the search for polygons that cover a boundary cell
    /// without an edge in it — such a polygon would overlap a candidate —
    /// and is about 40 % faster. Answers are the same as [`GridIndex::new`]'s
    /// for a coverage; if polygons do overlap, a point in an overlap gets one
    /// of them, not necessarily the lowest.
    ///
    /// # Panics
    /// As [`GridIndex::new`].
    #[must_use]
    pub fn new_coverage<P: Borrow<MultiPolygon<f64>>>(polygons: &[P]) -> GridIndex {
        Self::build(polygons, None, true)
    }

    /// Like [`GridIndex::new_coverage`] with a chosen raster cell size.
    ///
    /// # Panics
    /// As [`GridIndex::new`].
    #[must_use]
    pub fn coverage_with_cells<P: Borrow<MultiPolygon<f64>>>(
        polygons: &[P],
        cell_deg: Option<f64>,
    ) -> GridIndex {
        Self::build(polygons, cell_deg, true)
    }

    fn build<P: Borrow<MultiPolygon<f64>>>(
        polygons: &[P],
        cell_deg: Option<f64>,
        coverage: bool,
    ) -> GridIndex {
        assert!(polygons.len() < CLOSED as usize, "too many polygons");
        let mut edges = Vec::new();
        // Per edge: is the polygon's interior left of the ordered edge?
        let mut sides = Vec::new();
        let mut polys = Vec::with_capacity(polygons.len());
        let mut band_off: Vec<u32> = Vec::new();
        let mut band_edges: Vec<u32> = Vec::new();
        let mut edge_start: Vec<u32> = Vec::with_capacity(polygons.len() + 1);
        for mp in polygons {
            let mp: &MultiPolygon<f64> = mp.borrow();
            let start = edges.len();
            let mut min = [f64::INFINITY; 2];
            let mut max = [f64::NEG_INFINITY; 2];
            for ring in mp.0.iter().flat_map(|p| {
                std::iter::once((p.exterior(), true))
                    .chain(p.interiors().iter().map(|r| (r, false)))
            }) {
                push_ring(ring, &mut edges, &mut sides, &mut min, &mut max);
            }
            edge_start.push(u32::try_from(start).expect("too many edges"));
            let mut p = Prepared {
                min,
                max,
                bands: 0,
                band_start: 0,
                inv_band: 0.0,
            };
            let n = edges.len() - start;
            if n > BAND_MIN_EDGES && max[1] > min[1] {
                let k = (n / 8).clamp(4, 4096);
                p.bands = k as u32;
                p.band_start = u32::try_from(band_off.len()).expect("too many bands");
                p.inv_band = k as f64 / (max[1] - min[1]);
                let mut lists: Vec<Vec<u32>> = vec![Vec::new(); k];
                for (i, e) in edges[start..].iter().enumerate() {
                    for list in &mut lists[p.band(e.y0)..=p.band(e.y1)] {
                        list.push((start + i) as u32);
                    }
                }
                for list in lists {
                    band_off.push(u32::try_from(band_edges.len()).expect("too many band entries"));
                    band_edges.extend(list);
                }
                band_off.push(u32::try_from(band_edges.len()).expect("too many band entries"));
            }
            polys.push(p);
        }
        edge_start.push(u32::try_from(edges.len()).expect("too many edges"));
        let mut index = GridIndex {
            polys,
            edge_start,
            edges,
            band_off,
            band_edges,
            boxes: OnceLock::new(),
            segments: OnceLock::new(),
            near: OnceLock::new(),
            seg_k: 1.0,
            origin: [0.0; 2],
            inv_cell: [0.0; 2],
            cell: [1.0; 2],
            nx: 0,
            ny: 0,
            cells: Vec::new(),
            cand: Vec::new(),
            row_edges: Vec::new(),
        };
        index.build_raster(cell_deg, coverage.then_some(&sides[..]));
        index
    }

    /// Number of polygons.
    #[must_use]
    pub fn len(&self) -> usize {
        self.polys.len()
    }

    /// True when the index holds no polygons.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.polys.is_empty()
    }

    /// The polygon containing `(lon, lat)` by the rule in the module docs, or
    /// `None` when the point is outside every polygon (or not finite).
    #[inline]
    #[must_use]
    pub fn locate(&self, lon: f64, lat: f64) -> Option<u32> {
        let fx = (lon - self.origin[0]) * self.inv_cell[0];
        let fy = (lat - self.origin[1]) * self.inv_cell[1];
        // Also false for NaN.
        if !(fx >= 0.0 && fy >= 0.0 && fx < self.nx as f64 && fy < self.ny as f64) {
            return None;
        }
        self.resolve(self.cells[fy as usize * self.nx + fx as usize], lon, lat)
    }

    /// [`GridIndex::locate`] for many points at once: `out[i]` is the answer
    /// for `points[i]` (`[lon, lat]`).
    ///
    /// Same answers as calling `locate` per point, but faster on scattered
    /// points: the raster cells of a small batch are fetched first in a loop
    /// without data-dependent branches, so the processor overlaps their cache
    /// misses, and only then is each point resolved.
    ///
    /// # Panics
    /// When `out` is shorter than `points`.
    pub fn locate_many(&self, points: &[[f64; 2]], out: &mut [Option<u32>]) {
        const BATCH: usize = 32;
        assert!(out.len() >= points.len(), "output shorter than input");
        let (nx, ny) = (self.nx as f64, self.ny as f64);
        let last = self.cells.len().saturating_sub(1);
        for (pts, outs) in points.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            let mut cells = [OUTSIDE; BATCH];
            for (c, p) in cells.iter_mut().zip(pts) {
                let fx = (p[0] - self.origin[0]) * self.inv_cell[0];
                let fy = (p[1] - self.origin[1]) * self.inv_cell[1];
                // Also false for NaN.
                let ok = fx >= 0.0 && fy >= 0.0 && fx < nx && fy < ny;
                let k = (fy as usize * self.nx + fx as usize).min(last);
                let v = self.cells.get(k).copied().unwrap_or(OUTSIDE);
                *c = if ok { v } else { OUTSIDE };
            }
            // Then, the same way, the boundary cells' candidate lists and
            // the first candidate's row edges: the next likely misses.
            let mut first = [[0u32; 3]; BATCH];
            for (f, &c) in first.iter_mut().zip(&cells) {
                if c & BOUNDARY != 0 && c != OUTSIDE {
                    let k = (c & !(BOUNDARY | CLOSED)) as usize + 1;
                    *f = self.cand.get(k).copied().unwrap_or_default();
                }
            }
            let mut sink = 0.0;
            for f in &first {
                if f[1] < f[2] {
                    sink += self.row_edges.get(f[1] as usize).map_or(0.0, |e| e.y0);
                }
            }
            std::hint::black_box(sink);
            for ((o, p), &c) in outs.iter_mut().zip(pts).zip(&cells) {
                *o = self.resolve(c, p[0], p[1]);
            }
        }
    }

    /// The answer for a point whose raster cell holds `c`.
    #[inline]
    fn resolve(&self, c: u32, lon: f64, lat: f64) -> Option<u32> {
        if c == OUTSIDE {
            None
        } else if c & BOUNDARY == 0 {
            Some(c)
        } else {
            let k = (c & !(BOUNDARY | CLOSED)) as usize;
            let list = &self.cand[k + 1..k + 1 + self.cand[k][0] as usize];
            let holds = |c: &&[u32; 3]| {
                let mut inside = false;
                for e in &self.row_edges[c[1] as usize..c[2] as usize] {
                    inside ^= e.crosses(lon, lat);
                }
                inside
            };
            if c & CLOSED != 0 {
                // Exactly one candidate holds the point (see `open_cells`).
                let (last, rest) = list.split_last()?;
                return Some(rest.iter().find(holds).unwrap_or(last)[0]);
            }
            list.iter()
                .find(holds)
                .map(|c| c[0])
                .or_else(|| self.snap_among(list.iter().map(|c| c[0]), lon, lat))
        }
    }

    /// [`GridIndex::snap`] among `ids`: every polygon with an edge within
    /// [`SNAP_DEG`] of a point is a candidate of the point's boundary cell
    /// (cells are marked with a wider margin), so no tree is needed.
    fn snap_among(&self, ids: impl Iterator<Item = u32>, lon: f64, lat: f64) -> Option<u32> {
        let mut best: Option<(f64, u32)> = None;
        for id in ids {
            for e in self.poly_edges(id as usize) {
                let line = Line::new([e.x0, e.y0], [e.x1, e.y1]);
                let d2 = seg_dist2(&line, lon, lat, 1.0);
                if d2 <= SNAP_DEG * SNAP_DEG && best.is_none_or(|(bd, bid)| (d2, id) < (bd, bid)) {
                    best = Some((d2, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// The same answer as [`GridIndex::locate`], found without the raster:
    /// R-tree over polygon boxes, then exact tests. The plain baseline.
    #[must_use]
    pub fn locate_rtree(&self, lon: f64, lat: f64) -> Option<u32> {
        if !(lon.is_finite() && lat.is_finite()) {
            return None;
        }
        self.first_containing(lon, lat)
            .or_else(|| self.snap(lon, lat))
    }

    /// Does polygon `id` contain the point (half-open rule, no snapping)?
    #[inline]
    #[must_use]
    pub fn contains(&self, id: u32, lon: f64, lat: f64) -> bool {
        let es = self.poly_edges(id as usize);
        // Few edges: testing them all costs less than first reading the
        // polygon's box (one cache miss fewer).
        if es.len() > BAND_MIN_EDGES {
            let p = &self.polys[id as usize];
            if lon < p.min[0] || lon > p.max[0] || lat < p.min[1] || lat > p.max[1] {
                return false;
            }
            if p.bands != 0 {
                let b = p.band_start as usize + p.band(lat);
                let band =
                    &self.band_edges[self.band_off[b] as usize..self.band_off[b + 1] as usize];
                return band.iter().fold(false, |inside, &i| {
                    inside ^ self.edges[i as usize].crosses(lon, lat)
                });
            }
        }
        es.iter()
            .fold(false, |inside, e| inside ^ e.crosses(lon, lat))
    }

    /// The nearest polygon to a point and its distance in metres (0 inside),
    /// or `None` for an empty index or a non-finite point.
    #[must_use]
    pub fn nearest(&self, lon: f64, lat: f64) -> Option<Nearest> {
        if !(lon.is_finite() && lat.is_finite()) {
            return None;
        }
        if let Some(id) = self.first_containing(lon, lat) {
            return Some(Nearest {
                id,
                distance_m: 0.0,
            });
        }
        self.nearest_edge(lon, lat)
    }

    /// [`GridIndex::nearest`] for a point already known to be in no
    /// polygon (what [`GridIndex::locate`] said): skips the containment
    /// test and goes straight to the nearest edge, the cost of an outside
    /// point in `assign`. For a point inside a polygon it returns the
    /// nearest edge's distance, not 0.
    #[must_use]
    pub fn nearest_outside(&self, lon: f64, lat: f64) -> Option<Nearest> {
        if !(lon.is_finite() && lat.is_finite()) {
            return None;
        }
        self.nearest_edge(lon, lat)
    }

    /// Statistics about the index.
    #[must_use]
    pub fn stats(&self) -> IndexStats {
        let boundary = self
            .cells
            .iter()
            .filter(|&&c| c != OUTSIDE && c & BOUNDARY != 0)
            .count();
        let outside = self.cells.iter().filter(|&&c| c == OUTSIDE).count();
        IndexStats {
            polygons: self.polys.len(),
            edges: self.edges.len(),
            cells: self.cells.len(),
            cell_deg: self.cell,
            interior_cells: self.cells.len() - boundary - outside,
            boundary_cells: boundary,
            closed_cells: self
                .cells
                .iter()
                .filter(|&&c| c != OUTSIDE && c & BOUNDARY != 0 && c & CLOSED != 0)
                .count(),
            candidates: self.cand.len() - boundary,
            memory_bytes: self.polys.len() * size_of::<Prepared>()
                + self.edges.len() * size_of::<Edge>()
                + (self.band_off.len() + self.band_edges.len()) * 4
                + self.cells.len() * 4
                + self.cand.len() * 12
                + self.row_edges.len() * size_of::<Edge>()
                + self.edge_start.len() * 4
                + self.polys.len() * (size_of::<BoxEntry>() + 16),
        }
    }

    /// The first polygon (lowest id) containing the point, via the R-tree.
    fn first_containing(&self, lon: f64, lat: f64) -> Option<u32> {
        let mut best: Option<u32> = None;
        for e in self.box_tree().locate_all_at_point(&[lon, lat]) {
            let id = e.data;
            if best.is_none_or(|b| id < b) && self.contains(id, lon, lat) {
                best = Some(id);
            }
        }
        best
    }

    /// The nearest polygon if it is within [`SNAP_DEG`].
    fn snap(&self, lon: f64, lat: f64) -> Option<u32> {
        let tree = self.segment_tree();
        let k = self.seg_k;
        let x = lon * k;
        let mut best: Option<(f64, u32)> = None;
        let envelope = AABB::from_corners(
            [x - SNAP_DEG * k, lat - SNAP_DEG],
            [x + SNAP_DEG * k, lat + SNAP_DEG],
        );
        for s in tree.locate_in_envelope_intersecting(&envelope) {
            let d2 = seg_dist2(s.geom(), x, lat, 1.0 / k);
            if d2 <= SNAP_DEG * SNAP_DEG && best.is_none_or(|(bd, bid)| (d2, s.data) < (bd, bid)) {
                best = Some((d2, s.data));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Polygon `id`'s edges.
    fn poly_edges(&self, id: usize) -> &[Edge] {
        &self.edges[self.edge_start[id] as usize..self.edge_start[id + 1] as usize]
    }

    fn box_tree(&self) -> &RTree<BoxEntry> {
        self.boxes.get_or_init(|| {
            RTree::bulk_load(
                self.polys
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.min[0] <= p.max[0])
                    .map(|(i, p)| {
                        GeomWithData::new(Rectangle::from_corners(p.min, p.max), i as u32)
                    })
                    .collect(),
            )
        })
    }

    fn segment_tree(&self) -> &RTree<SegEntry> {
        self.segments.get_or_init(|| {
            let k = self.seg_k;
            let mut segs = Vec::with_capacity(self.edges.len());
            for id in 0..self.polys.len() {
                for e in self.poly_edges(id) {
                    segs.push(GeomWithData::new(
                        Line::new([e.x0 * k, e.y0], [e.x1 * k, e.y1]),
                        id as u32,
                    ));
                }
            }
            RTree::bulk_load(segs)
        })
    }

    fn near_grid(&self) -> &near::NearGrid {
        self.near
            .get_or_init(|| near::NearGrid::new(self.segment_tree(), self.seg_k))
    }

    fn nearest_edge(&self, lon: f64, lat: f64) -> Option<Nearest> {
        let (mx, my) = metres_per_degree(lat);
        let x = lon * self.seg_k;
        let sx = mx / (self.seg_k * my);
        let lower = my * sx.min(1.0);
        let found = self
            .near_grid()
            .nearest(x, lat, lower, |l| seg_dist2(l, x, lat, sx).sqrt() * my);
        match found {
            Some((distance_m, id)) => Some(Nearest { id, distance_m }),
            None => self.nearest_edge_rtree(lon, lat),
        }
    }

    /// The R-tree search [`GridIndex::nearest_edge`] falls back to (and is
    /// tested against).
    fn nearest_edge_rtree(&self, lon: f64, lat: f64) -> Option<Nearest> {
        let (mx, my) = metres_per_degree(lat);
        let tree = self.segment_tree();
        let x = lon * self.seg_k;
        // Tree distances are in scaled degrees; ground distance stretches
        // the scaled x by `sx`, so tree distance * my * min(1, sx) is a lower
        // bound of the ground distance: stop once it passes the best.
        let sx = mx / (self.seg_k * my);
        let lower = my * sx.min(1.0);
        let mut best: Option<(f64, u32)> = None;
        for (s, d2) in tree.nearest_neighbor_iter_with_distance_2(&[x, lat]) {
            if let Some((bd, _)) = best
                && d2.sqrt() * lower > bd
            {
                break;
            }
            let d = seg_dist2(s.geom(), x, lat, sx).sqrt() * my;
            if best.is_none_or(|(bd, bid)| (d, s.data) < (bd, bid)) {
                best = Some((d, s.data));
            }
        }
        best.map(|(distance_m, id)| Nearest { id, distance_m })
    }

    /// Sizes the raster and fills it; see the module docs. `sides` (a
    /// coverage build) holds, per edge, whether its polygon lies left of it.
    fn build_raster(&mut self, cell_deg: Option<f64>, sides: Option<&[bool]>) {
        let Some((min, max)) = self.polys.iter().filter(|p| p.min[0] <= p.max[0]).fold(
            None,
            |acc: Option<([f64; 2], [f64; 2])>, p| {
                Some(match acc {
                    None => (p.min, p.max),
                    Some((a, b)) => (
                        [a[0].min(p.min[0]), a[1].min(p.min[1])],
                        [b[0].max(p.max[0]), b[1].max(p.max[1])],
                    ),
                })
            },
        ) else {
            return;
        };
        let (w, h) = (max[0] - min[0], max[1] - min[1]);
        let (mx, my) = metres_per_degree(0.5 * (min[1] + max[1]));
        self.seg_k = (mx / my).max(1e-3);
        let size = cell_deg.unwrap_or_else(|| self.auto_cell(w, h));
        // Cells are square in degrees; grow them if the cap would be passed.
        let mut size = size.max(1e-7);
        while (w / size + 2.0) * (h / size + 2.0) > MAX_CELLS as f64 {
            size *= 1.25;
        }
        let nx = (w / size).floor() as usize + 2;
        let ny = (h / size).floor() as usize + 2;
        self.origin = [min[0] - size * 0.5, min[1] - size * 0.5];
        self.cell = [size, size];
        self.inv_cell = [1.0 / size, 1.0 / size];
        self.nx = nx;
        self.ny = ny;

        // (cell << id_bits | polygon) for every cell an edge passes near,
        // sorted by cell then polygon.
        let margin = (size * 1e-6).max(2.0 * SNAP_DEG);
        let id_bits = usize::BITS - self.polys.len().leading_zeros();
        let id_mask = (1u64 << id_bits) - 1;
        let mut pairs: Vec<u64> = Vec::with_capacity(self.edges.len() * 6);
        for id in 0..self.polys.len() {
            // Consecutive edges share a vertex and so, often, a cell.
            let mut last = usize::MAX;
            for e in self.poly_edges(id) {
                self.mark_edge(e, margin, |cell| {
                    if cell != last {
                        last = cell;
                        pairs.push((cell as u64) << id_bits | id as u64);
                    }
                });
            }
        }
        radix_sort_by_cell(&mut pairs, id_bits, usize::BITS - (nx * ny).leading_zeros());
        pairs.dedup();
        let open = sides.map(|s| self.open_cells(s, margin));

        let mut cells = vec![UNSET; nx * ny];
        let buckets = Buckets::new(&self.polys, min, max);
        let rows = self.row_lists();
        let mut cand: Vec<[u32; 3]> = Vec::with_capacity(pairs.len() * 3 / 2);
        let mut ids = Vec::new();
        let mut i = 0;
        while i < pairs.len() {
            let cell = (pairs[i] >> id_bits) as usize;
            ids.clear();
            while i < pairs.len() && (pairs[i] >> id_bits) as usize == cell {
                ids.push((pairs[i] & id_mask) as u32);
                i += 1;
            }
            // A polygon with no edge near the cell either covers all of it or
            // none of it; those that cover it (overlapping layers) are
            // candidates too.
            let centre = [
                self.origin[0] + ((cell % nx) as f64 + 0.5) * size,
                self.origin[1] + ((cell / nx) as f64 + 0.5) * size,
            ];
            let closed = match &open {
                None => {
                    let covering = buckets.at(centre[0], centre[1]).iter().copied();
                    self.add_covering(&mut ids, centre, covering);
                    false
                }
                Some(open) => !open[cell] && ids.len() >= 2,
            };
            let header = cand.len();
            assert!(header < CLOSED as usize, "too many boundary cells");
            cand.push([ids.len() as u32, 0, 0]);
            cand.extend(ids.iter().map(|&id| rows.entry(id, cell / nx)));
            if closed {
                // The cheapest tests first; the dearest never runs.
                cand[header + 1..].sort_unstable_by_key(|c| (c[2] - c[1], c[0]));
            }
            cells[cell] = BOUNDARY | if closed { CLOSED } else { 0 } | header as u32;
        }
        self.row_edges = rows.edges;
        // Label each run of untouched cells in a row: no edge comes near the
        // run, so one answer holds for all of it, and for any untouched cell
        // next to it in the row below. Only runs with no such neighbour need
        // a point-in-polygon query (at the first cell's centre).
        let untouched = |c: u32| c == OUTSIDE || c & BOUNDARY == 0;
        for row in 0..ny {
            let line = row * nx;
            let mut col = 0;
            while let Some(k) = cells[line + col..line + nx]
                .iter()
                .position(|&c| c == UNSET)
            {
                let start = col + k;
                let len = cells[line + start..line + nx]
                    .iter()
                    .position(|&c| c != UNSET)
                    .unwrap_or(nx - start);
                col = start + len;
                let above = match row {
                    0 => None,
                    _ => cells[line - nx + start..line - nx + col]
                        .iter()
                        .copied()
                        .find(|&c| untouched(c)),
                };
                let l = above.unwrap_or_else(|| {
                    let cx = self.origin[0] + (start as f64 + 0.5) * size;
                    let cy = self.origin[1] + (row as f64 + 0.5) * size;
                    buckets
                        .at(cx, cy)
                        .iter()
                        .copied()
                        .find(|&id| self.contains(id, cx, cy))
                        .unwrap_or(OUTSIDE)
                });
                cells[line + start..line + col].fill(l);
                if col == nx {
                    break;
                }
            }
        }
        self.cells = cells;
        self.cand = cand;
    }

    /// Every polygon's non-horizontal edges grouped by the raster rows
    /// their y-range spans (rows as [`GridIndex::locate`] computes them: a
    /// point's row always holds every edge whose `y0 <= lat <= y1`).
    fn row_lists(&self) -> RowLists {
        let row = |y: f64| {
            let t = (y - self.origin[1]) * self.inv_cell[1];
            if t > 0.0 {
                (t as usize).min(self.ny - 1)
            } else {
                0
            }
        };
        let mut lists = RowLists {
            edges: Vec::with_capacity(self.edges.len() * 3 / 2),
            polys: Vec::with_capacity(self.polys.len()),
            off: Vec::new(),
        };
        let mut fill: Vec<u32> = Vec::new();
        for id in 0..self.polys.len() {
            let es = self.poly_edges(id);
            let spans = || {
                es.iter()
                    .filter(|e| e.y1 > e.y0)
                    .map(|e| (e, row(e.y0), row(e.y1)))
            };
            let (lo, hi) = spans().fold((usize::MAX, 0), |(lo, hi), (_, a, b)| {
                (lo.min(a), hi.max(b))
            });
            let off = lists.off.len() as u32;
            if lo > hi {
                lists.polys.push((0, off, 0));
                continue;
            }
            let n = hi - lo + 1;
            fill.clear();
            fill.resize(n + 1, 0);
            for (_, a, b) in spans() {
                for r in a..=b {
                    fill[r - lo + 1] += 1;
                }
            }
            for r in 1..=n {
                fill[r] += fill[r - 1];
            }
            let base = lists.edges.len() as u32;
            lists.off.extend(fill.iter().map(|&c| base + c));
            lists.edges.resize((base + fill[n]) as usize, Edge::ZERO);
            for (e, a, b) in spans() {
                for r in a..=b {
                    lists.edges[(base + fill[r - lo]) as usize] = *e;
                    fill[r - lo] += 1;
                }
            }
            lists.polys.push((lo as u32, off, n as u32));
        }
        assert!(u32::try_from(lists.edges.len()).is_ok(), "too many edges");
        lists
    }

    /// Marks the cells an *unshared* edge passes within `margin` of: an
    /// edge that is not exactly one edge of two different polygons with
    /// their interiors on opposite sides. In a coverage the union of the
    /// polygons has no boundary but unshared edges, so an unmarked boundary
    /// cell lies wholly inside the union of its candidates, and every point
    /// of it is in exactly one of them: the half-open crossing test gives a
    /// point on a shared edge to one side only, both sides evaluating the
    /// same arithmetic on the same ordered edge.
    fn open_cells(&self, sides: &[bool], margin: f64) -> Vec<bool> {
        let mut owner = vec![0u32; self.edges.len()];
        for id in 0..self.polys.len() {
            owner[self.edge_start[id] as usize..self.edge_start[id + 1] as usize].fill(id as u32);
        }
        let key = |e: &Edge| {
            [
                e.x0.to_bits(),
                e.y0.to_bits(),
                e.x1.to_bits(),
                e.y1.to_bits(),
            ]
        };
        // (32-bit hash of the edge << idx_bits | edge index), sorted by hash.
        let idx_bits = usize::BITS - self.edges.len().leading_zeros();
        let mut keyed: Vec<u64> = self
            .edges
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let h = key(e).iter().fold(0u64, |h, &k| {
                    (h.rotate_left(5) ^ k).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
                });
                (h >> 32) << idx_bits | i as u64
            })
            .collect();
        radix_sort_by_cell(&mut keyed, idx_bits, 32);
        let idx_mask = (1u64 << idx_bits) - 1;
        let mut open = vec![false; self.nx * self.ny];
        // A hash collision makes a group unshared: more cells marked open.
        for group in keyed.chunk_by(|a, b| a >> idx_bits == b >> idx_bits) {
            let shared = match group {
                [a, b] => {
                    let (a, b) = ((a & idx_mask) as usize, (b & idx_mask) as usize);
                    key(&self.edges[a]) == key(&self.edges[b])
                        && owner[a] != owner[b]
                        && sides[a] != sides[b]
                }
                _ => false,
            };
            if !shared {
                for &k in group {
                    self.mark_edge(&self.edges[(k & idx_mask) as usize], margin, |c| {
                        open[c] = true;
                    });
                }
            }
        }
        open
    }

    /// Adds to the candidate list `list` the polygons among `ids`
    /// that contain the cell centre `c` and are not in it yet — polygons
    /// that cover the cell without an edge in it (overlapping layers) —
    /// and sorts it.
    fn add_covering(&self, list: &mut Vec<u32>, c: [f64; 2], ids: impl IntoIterator<Item = u32>) {
        let known = list.len();
        for id in ids {
            if !list[..known].contains(&id) && self.contains(id, c[0], c[1]) {
                list.push(id);
            }
        }
        list.sort_unstable();
    }

    /// A cell size giving about 3 cells across a small (20th percentile)
    /// polygon, and at least one cell per polygon over the whole box.
    /// Smaller cells make the build slower (more cells and edge marks) for
    /// hardly faster queries; see BENCHMARKS.md.
    fn auto_cell(&self, w: f64, h: f64) -> f64 {
        let mut sizes: Vec<f64> = self
            .polys
            .iter()
            .filter(|p| p.min[0] <= p.max[0])
            .map(|p| ((p.max[0] - p.min[0]) * (p.max[1] - p.min[1])).sqrt())
            .collect();
        if sizes.is_empty() {
            return 1.0;
        }
        let k = sizes.len() / 5;
        let (_, small, _) = sizes.select_nth_unstable_by(k, f64::total_cmp);
        let by_small = *small / 3.0;
        let by_count = (w * h / sizes.len() as f64).sqrt();
        by_small.min(by_count).max(1e-7)
    }

    /// Calls `f` with every cell the edge passes within `margin` of.
    fn mark_edge(&self, e: &Edge, margin: f64, mut f: impl FnMut(usize)) {
        // `as` truncates, which is the floor for t >= 0 (and maps NaN to 0).
        let cell_of = |v: f64, axis: usize, n: usize| -> usize {
            let t = (v - self.origin[axis]) * self.inv_cell[axis];
            if t > 0.0 { (t as usize).min(n - 1) } else { 0 }
        };
        let r0 = cell_of(e.y0 - margin, 1, self.ny);
        let r1 = cell_of(e.y1 + margin, 1, self.ny);
        for row in r0..=r1 {
            // The part of the edge inside this row's band (plus margin).
            let b0 = (self.origin[1] + row as f64 * self.cell[1] - margin).max(e.y0);
            let b1 = (self.origin[1] + (row + 1) as f64 * self.cell[1] + margin).min(e.y1);
            let (xa, xb) = if e.y1 > e.y0 {
                let t = (e.x1 - e.x0) / (e.y1 - e.y0);
                (e.x0 + (b0 - e.y0) * t, e.x0 + (b1 - e.y0) * t)
            } else {
                (e.x0, e.x1)
            };
            let c0 = cell_of(xa.min(xb) - margin, 0, self.nx);
            let c1 = cell_of(xa.max(xb) + margin, 0, self.nx);
            for col in c0..=c1 {
                f(row * self.nx + col);
            }
        }
    }
}

/// Edges by polygon and raster row, while building.
struct RowLists {
    edges: Vec<Edge>,
    /// Per polygon: first row, start in `off`, number of rows.
    polys: Vec<(u32, u32, u32)>,
    /// Per polygon and row: start of its edges (one more for the end).
    off: Vec<u32>,
}

impl RowLists {
    /// The candidate entry `[polygon, lo, hi]` for `row`.
    fn entry(&self, id: u32, row: usize) -> [u32; 3] {
        let (first, off, n) = self.polys[id as usize];
        let Some(r) = row.checked_sub(first as usize).filter(|&r| r < n as usize) else {
            // No edge of the polygon spans the row: no ray there crosses it.
            return [id, 0, 0];
        };
        let k = off as usize + r;
        [id, self.off[k], self.off[k + 1]]
    }
}

/// Cell value while building: not labelled yet.
const UNSET: u32 = u32::MAX - 1;

/// Polygon ids by box, in a coarse uniform grid, for fast point queries at
/// build time (lists are in ascending id order, so the first polygon that
/// contains a point is the lowest).
struct Buckets {
    origin: [f64; 2],
    inv: [f64; 2],
    n: [usize; 2],
    start: Vec<u32>,
    ids: Vec<u32>,
}

impl Buckets {
    fn new(polys: &[Prepared], min: [f64; 2], max: [f64; 2]) -> Buckets {
        let side = ((polys.len() as f64).sqrt().ceil() as usize).clamp(1, 2048);
        let n = [side, side];
        let w = [(max[0] - min[0]).max(1e-12), (max[1] - min[1]).max(1e-12)];
        let inv = [n[0] as f64 / w[0], n[1] as f64 / w[1]];
        let at =
            |v: f64, a: usize| (((v - min[a]) * inv[a]).floor().max(0.0) as usize).min(n[a] - 1);
        let mut count = vec![0u32; n[0] * n[1] + 1];
        let mut ranges = Vec::with_capacity(polys.len());
        for p in polys {
            if p.min[0] > p.max[0] {
                ranges.push(None);
                continue;
            }
            let r = (
                at(p.min[0], 0),
                at(p.max[0], 0),
                at(p.min[1], 1),
                at(p.max[1], 1),
            );
            for y in r.2..=r.3 {
                for x in r.0..=r.1 {
                    count[y * n[0] + x + 1] += 1;
                }
            }
            ranges.push(Some(r));
        }
        for i in 1..count.len() {
            count[i] += count[i - 1];
        }
        let mut fill = count.clone();
        let mut ids = vec![0u32; count[count.len() - 1] as usize];
        for (id, r) in ranges.iter().enumerate() {
            let Some(r) = r else { continue };
            for y in r.2..=r.3 {
                for x in r.0..=r.1 {
                    let b = y * n[0] + x;
                    ids[fill[b] as usize] = id as u32;
                    fill[b] += 1;
                }
            }
        }
        Buckets {
            origin: min,
            inv,
            n,
            start: count,
            ids,
        }
    }

    /// Ids of the polygons whose boxes may hold the point.
    fn at(&self, x: f64, y: f64) -> &[u32] {
        let fx = (x - self.origin[0]) * self.inv[0];
        let fy = (y - self.origin[1]) * self.inv[1];
        if !(fx >= 0.0 && fy >= 0.0) {
            return &[];
        }
        // The far edge of the box belongs to the last bucket.
        if fx > self.n[0] as f64 || fy > self.n[1] as f64 {
            return &[];
        }
        let (bx, by) = (
            (fx as usize).min(self.n[0] - 1),
            (fy as usize).min(self.n[1] - 1),
        );
        let b = by * self.n[0] + bx;
        &self.ids[self.start[b] as usize..self.start[b + 1] as usize]
    }
}

/// Sorts `(cell << shift | id)` keys by cell, stably (the ids of a cell keep
/// their order), with a least-significant-digit radix sort over the
/// `cell_bits` bits above `shift` (the bits above those must be 0): a few
/// linear passes where a comparison sort of a million keys takes several
/// times longer.
fn radix_sort_by_cell(keys: &mut Vec<u64>, shift: u32, cell_bits: u32) {
    const DIGIT: u32 = 11;
    let mut buf = vec![0u64; keys.len()];
    let mut low = 0;
    while low < cell_bits {
        let at = shift + low;
        let digit = |k: u64| ((k >> at) & ((1 << DIGIT) - 1)) as usize;
        let mut start = [0usize; 1 << DIGIT];
        for &k in keys.iter() {
            start[digit(k)] += 1;
        }
        let mut sum = 0;
        for s in &mut start {
            (*s, sum) = (sum, sum + *s);
        }
        for &k in keys.iter() {
            let d = digit(k);
            buf[start[d]] = k;
            start[d] += 1;
        }
        std::mem::swap(keys, &mut buf);
        low += DIGIT;
    }
}

/// Cap on raster cells (64 MiB of cell entries).
const MAX_CELLS: usize = 1 << 24;

/// Appends the edges of a ring (`exterior` or a hole) and, for each, whether
/// the polygon's interior lies left of the edge as ordered by [`Edge::new`].
fn push_ring(
    (ring, exterior): (&LineString<f64>, bool),
    edges: &mut Vec<Edge>,
    sides: &mut Vec<bool>,
    min: &mut [f64; 2],
    max: &mut [f64; 2],
) {
    // Twice the signed area, relative to the first vertex for precision.
    let o = ring
        .0
        .first()
        .copied()
        .unwrap_or(geo_types::Coord { x: 0.0, y: 0.0 });
    let area2: f64 = ring
        .0
        .windows(2)
        .map(|w| (w[0].x - o.x) * (w[1].y - o.y) - (w[1].x - o.x) * (w[0].y - o.y))
        .sum();
    // Interior left of a→b: an anticlockwise exterior, a clockwise hole.
    let left = (area2 > 0.0) == exterior;
    for w in ring.0.windows(2) {
        let (a, b) = (w[0], w[1]);
        if !(a.x.is_finite() && a.y.is_finite() && b.x.is_finite() && b.y.is_finite()) || a == b {
            continue;
        }
        for c in [a, b] {
            min[0] = min[0].min(c.x);
            min[1] = min[1].min(c.y);
            max[0] = max[0].max(c.x);
            max[1] = max[1].max(c.y);
        }
        edges.push(Edge::new(a, b));
        sides.push(left == ((a.y, a.x) <= (b.y, b.x)));
    }
}

/// Squared distance from a point to a segment (same space), with x
/// differences stretched by `sx`.
fn seg_dist2(line: &Line<[f64; 2]>, x: f64, y: f64, sx: f64) -> f64 {
    let (ax, ay) = ((line.from[0] - x) * sx, line.from[1] - y);
    let (bx, by) = ((line.to[0] - x) * sx, line.to[1] - y);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (px, py) = (ax + t * dx, ay + t * dy);
    px * px + py * py
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Contains;

    /// The candidate raster answers exactly as the R-tree search: the same
    /// polygon and bit-identical distance, for points inside the layer's
    /// box (in gaps, holes and around it) and beyond it.
    #[test]
    fn nearest_by_raster_equals_nearest_by_rtree() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // Irregular polygons with gaps between them, over a 1°×1° area.
        let mut polys = Vec::new();
        for i in 0..20 {
            for j in 0..20 {
                if rng.random_bool(0.3) {
                    continue;
                }
                let (x, y) = (116.0 + f64::from(i) * 0.05, 39.5 + f64::from(j) * 0.05);
                let n = rng.random_range(3..12);
                let ring: Vec<(f64, f64)> = (0..n)
                    .map(|k| {
                        let t = std::f64::consts::TAU * f64::from(k) / f64::from(n);
                        let r = 0.02 * rng.random_range(0.5..1.0);
                        (x + 0.025 + r * t.cos(), y + 0.025 + r * t.sin())
                    })
                    .collect();
                polys.push(MultiPolygon::new(vec![Polygon::new(
                    LineString::from(ring),
                    vec![],
                )]));
            }
        }
        let idx = GridIndex::new(&polys);
        for _ in 0..20_000 {
            let (lon, lat) = (rng.random_range(115.5..117.5), rng.random_range(39.0..41.0));
            let a = idx.nearest_edge(lon, lat).unwrap();
            let b = idx.nearest_edge_rtree(lon, lat).unwrap();
            assert_eq!(
                (a.id, a.distance_m.to_bits()),
                (b.id, b.distance_m.to_bits()),
                "{lon} {lat}"
            );
        }
    }
    use geo_types::{Coord, Point, Polygon, polygon};
    use proptest::prelude::*;

    fn square(x: f64, y: f64, s: f64) -> MultiPolygon<f64> {
        MultiPolygon::new(vec![
            polygon![(x: x, y: y), (x: x + s, y: y), (x: x + s, y: y + s), (x: x, y: y + s)],
        ])
    }

    /// A 3 × 3 block of unit squares, ids row-major from the south-west.
    fn block() -> Vec<MultiPolygon<f64>> {
        (0..9)
            .map(|i| square(f64::from(i % 3), f64::from(i / 3), 1.0))
            .collect()
    }

    #[test]
    fn interior_points_hand_checked() {
        let idx = GridIndex::new(&block());
        assert_eq!(idx.locate(0.5, 0.5), Some(0));
        assert_eq!(idx.locate(2.5, 0.5), Some(2));
        assert_eq!(idx.locate(1.5, 2.5), Some(7));
        assert_eq!(idx.locate(-0.5, 0.5), None);
        assert_eq!(idx.locate(f64::NAN, 0.5), None);
    }

    #[test]
    fn shared_edges_go_east_then_north() {
        let idx = GridIndex::new(&block());
        // Vertical edge x = 1 between squares 0 and 1: east wins.
        assert_eq!(idx.locate(1.0, 0.5), Some(1));
        // Horizontal edge y = 1 between squares 0 and 3: north wins.
        assert_eq!(idx.locate(0.5, 1.0), Some(3));
        // Shared vertex (1, 1) of squares 0, 1, 3, 4: north-east wins.
        assert_eq!(idx.locate(1.0, 1.0), Some(4));
        // The outer boundary is not lost: snapped to its polygon.
        assert_eq!(idx.locate(3.0, 0.5), Some(2));
        assert_eq!(idx.locate(1.5, 3.0), Some(7));
        assert_eq!(idx.locate(3.0, 3.0), Some(8));
    }

    #[test]
    fn overlap_goes_to_the_lower_id() {
        let polys = vec![square(0.0, 0.0, 2.0), square(1.0, 1.0, 2.0)];
        let idx = GridIndex::new(&polys);
        assert_eq!(idx.locate(1.5, 1.5), Some(0));
        let polys = vec![square(1.0, 1.0, 2.0), square(0.0, 0.0, 2.0)];
        assert_eq!(GridIndex::new(&polys).locate(1.5, 1.5), Some(0));
    }

    #[test]
    fn holes_are_outside() {
        let outer = LineString::from(vec![
            (0.0, 0.0),
            (4.0, 0.0),
            (4.0, 4.0),
            (0.0, 4.0),
            (0.0, 0.0),
        ]);
        let hole = LineString::from(vec![
            (1.0, 1.0),
            (1.0, 3.0),
            (3.0, 3.0),
            (3.0, 1.0),
            (1.0, 1.0),
        ]);
        let idx = GridIndex::new(&[MultiPolygon::new(vec![Polygon::new(outer, vec![hole])])]);
        assert_eq!(idx.locate(0.5, 2.0), Some(0));
        assert_eq!(idx.locate(2.0, 2.0), None);
        // The hole's boundary belongs to the polygon (snapped).
        assert_eq!(idx.locate(1.0, 2.0), Some(0));
    }

    #[test]
    fn nearest_reports_metres() {
        // A 0.01° square at the equator; a point 0.001° (≈ 110.6 m) south of it.
        let idx = GridIndex::new(&[square(0.0, 0.0, 0.01)]);
        let n = idx.nearest(0.005, -0.001).expect("nearest");
        assert_eq!(n.id, 0);
        assert!((n.distance_m - 110.574).abs() < 0.5, "{}", n.distance_m);
        assert_eq!(idx.nearest(0.005, 0.005).map(|n| n.distance_m), Some(0.0));
    }

    #[test]
    fn empty_index_answers_none() {
        let idx = GridIndex::new::<MultiPolygon<f64>>(&[]);
        assert!(idx.is_empty());
        assert_eq!(idx.locate(0.0, 0.0), None);
        assert_eq!(idx.nearest(0.0, 0.0), None);
    }

    /// A random star-shaped polygon around (cx, cy).
    fn star(cx: f64, cy: f64, radii: &[f64]) -> MultiPolygon<f64> {
        let n = radii.len();
        let pts: Vec<Coord<f64>> = radii
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let a = std::f64::consts::TAU * i as f64 / n as f64;
                Coord {
                    x: cx + r * a.cos(),
                    y: cy + r * a.sin(),
                }
            })
            .collect();
        MultiPolygon::new(vec![Polygon::new(LineString::from(pts), vec![])])
    }

    /// Splits `r` into `n` rectangles by random guillotine cuts: a coverage
    /// with T-junctions between neighbours.
    fn guillotine(r: [f64; 4], cuts: &[(bool, f64)]) -> Vec<MultiPolygon<f64>> {
        let mut rects = vec![r];
        for (i, &(vertical, t)) in cuts.iter().enumerate() {
            let k = i % rects.len();
            let [x0, y0, x1, y1] = rects.swap_remove(k);
            if vertical {
                let x = x0 + (x1 - x0) * t;
                rects.extend([[x0, y0, x, y1], [x, y0, x1, y1]]);
            } else {
                let y = y0 + (y1 - y0) * t;
                rects.extend([[x0, y0, x1, y], [x0, y, x1, y1]]);
            }
        }
        rects
            .into_iter()
            .map(|[x0, y0, x1, y1]| square_rect(x0, y0, x1, y1))
            .collect()
    }

    fn square_rect(x0: f64, y0: f64, x1: f64, y1: f64) -> MultiPolygon<f64> {
        MultiPolygon::new(vec![
            polygon![(x: x0, y: y0), (x: x1, y: y0), (x: x1, y: y1), (x: x0, y: y1)],
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// On a coverage, the coverage build answers exactly like brute force
        /// and like the general build.
        #[test]
        fn coverage_build_agrees_on_coverages(
            cuts in prop::collection::vec((any::<bool>(), 0.05f64..0.95), 1..40),
            pts in prop::collection::vec((-1.0f64..11.0, -1.0f64..11.0), 300),
            cell in prop::option::of(0.05f64..3.0),
        ) {
            let polys = guillotine([0.0, 0.0, 10.0, 10.0], &cuts);
            let general = GridIndex::with_cells(&polys, cell);
            let cover = GridIndex::coverage_with_cells(&polys, cell);
            for (x, y) in pts {
                let p = Point::new(x, y);
                let near_edge = polys.iter().any(|mp| {
                    use geo::{Distance, Euclidean};
                    Euclidean.distance(&p, mp.0[0].exterior()) < 1e-9
                });
                if near_edge {
                    continue;
                }
                let brute = polys.iter().position(|mp| mp.contains(&p)).map(|i| i as u32);
                prop_assert_eq!(cover.locate(x, y), brute);
                prop_assert_eq!(general.locate(x, y), brute);
            }
        }
    }

    /// An `n` x `n` lattice over [0, 10]² with jittered inner vertices,
    /// cut into quads: a coverage whose inner edges are all shared exactly.
    fn lattice(n: usize, jitter: &[(f64, f64)]) -> Vec<MultiPolygon<f64>> {
        let step = 10.0 / n as f64;
        let v = |i: usize, j: usize| {
            let inner = i > 0 && j > 0 && i < n && j < n;
            let (dx, dy) = if inner {
                jitter[(i * 31 + j * 17) % jitter.len()]
            } else {
                (0.0, 0.0)
            };
            Coord {
                x: i as f64 * step + dx * step,
                y: j as f64 * step + dy * step,
            }
        };
        let mut out = Vec::new();
        for j in 0..n {
            for i in 0..n {
                let ring = vec![v(i, j), v(i + 1, j), v(i + 1, j + 1), v(i, j + 1), v(i, j)];
                out.push(MultiPolygon::new(vec![Polygon::new(
                    LineString::new(ring),
                    vec![],
                )]));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// On a coverage with shared edges (so with closed cells, where the
        /// last candidate is never tested), the coverage build answers like
        /// brute force off the boundaries and like the plain R-tree path
        /// everywhere: on edges and at vertices too, so the boundary rule
        /// holds in closed cells.
        #[test]
        fn closed_cells_keep_the_boundary_rule(
            n in 2usize..9,
            jitter in prop::collection::vec((-0.3f64..0.3, -0.3f64..0.3), 1..20),
            pts in prop::collection::vec((-0.5f64..10.5, -0.5f64..10.5), 200),
            along in prop::collection::vec((0usize..81, 0usize..4, 0.0f64..1.0), 100),
            cell in prop::option::of(0.05f64..3.0),
        ) {
            let polys = lattice(n, &jitter);
            let cover = GridIndex::coverage_with_cells(&polys, cell);
            prop_assert!(cover.stats().closed_cells > 0 || cover.stats().boundary_cells == 0);
            for (x, y) in pts.iter().copied() {
                let p = Point::new(x, y);
                let near_edge = polys.iter().any(|mp| {
                    use geo::{Distance, Euclidean};
                    Euclidean.distance(&p, mp.0[0].exterior()) < 1e-9
                });
                if !near_edge {
                    let brute = polys.iter().position(|mp| mp.contains(&p)).map(|i| i as u32);
                    prop_assert_eq!(cover.locate(x, y), brute);
                }
                prop_assert_eq!(cover.locate(x, y), cover.locate_rtree(x, y));
            }
            // Vertices and points on (or rounded next to) edges.
            for (k, side, t) in along {
                let ring = &polys[k % polys.len()].0[0].exterior().0;
                let (a, b) = (ring[side], ring[side + 1]);
                for (x, y) in [(a.x, a.y), (a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t)] {
                    prop_assert_eq!(cover.locate(x, y), cover.locate_rtree(x, y), "at {} {}", x, y);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Raster, R-tree and brute force over geo's `Contains` agree on
        /// every point not on a boundary (polygons of up to 80 edges, so both
        /// the plain and the banded crossing test run).
        #[test]
        fn raster_rtree_and_brute_force_agree(
            shapes in prop::collection::vec((0.0f64..10.0, 0.0f64..10.0, prop::collection::vec(0.1f64..2.0, 3..80)), 1..12),
            pts in prop::collection::vec((-1.0f64..12.0, -1.0f64..12.0), 200),
            cell in prop::option::of(0.05f64..3.0),
        ) {
            let polys: Vec<MultiPolygon<f64>> = shapes.iter().map(|(x, y, r)| star(*x, *y, r)).collect();
            let idx = GridIndex::with_cells(&polys, cell);
            let h3 = idx.h3_cover(None);
            let batch: Vec<[f64; 2]> = pts.iter().map(|&(x, y)| [x, y]).collect();
            let mut many = vec![Some(u32::MAX); batch.len()];
            idx.locate_many(&batch, &mut many);
            for (p, m) in batch.iter().zip(&many) {
                prop_assert_eq!(*m, idx.locate(p[0], p[1]), "locate_many at {:?}", p);
            }
            for (x, y) in pts {
                let p = Point::new(x, y);
                let brute = polys.iter().position(|mp| mp.contains(&p)).map(|i| i as u32);
                let on_boundary = polys.iter().any(|mp| {
                    use geo::{Distance, Euclidean};
                    mp.0.iter().flat_map(|pl| std::iter::once(pl.exterior()).chain(pl.interiors()))
                        .any(|r| Euclidean.distance(&p, r) < 1e-9)
                });
                if on_boundary {
                    continue;
                }
                prop_assert_eq!(idx.locate(x, y), brute, "raster at {} {}", x, y);
                prop_assert_eq!(idx.locate_rtree(x, y), brute, "rtree at {} {}", x, y);
                prop_assert_eq!(h3.locate(x, y), brute, "h3 at {} {}", x, y);
            }
        }
    }
}
