//! Point-in-polygon index over a polygon layer: built once, queried millions
//! of times from many threads.
//!
//! # How it works
//!
//! The layer's bounding box is covered by a raster of equal-angle cells,
//! sized from the polygons (about 4 cells across a small polygon, at most
//! 16 Mi cells). Every polygon edge marks the cells its segment passes
//! through (with a small safety margin), and those *boundary* cells keep the
//! list of polygons whose edges touch them. Every other cell lies wholly
//! inside one polygon (or outside all), so it stores that answer directly:
//! a query in such a cell is one multiply-and-floor and one array read. A
//! query in a boundary cell runs an exact crossing-number test against the
//! few candidate polygons. An [`rstar`] R-tree over polygon boxes labels the
//! interior cells at build time and is the plain fallback path
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

use std::sync::OnceLock;

use geo_types::{LineString, MultiPolygon};
use rstar::{
    AABB, RTree,
    primitives::{GeomWithData, Line, Rectangle},
};

use crate::geom::metres_per_degree;

mod h3;
pub use h3::{CellHasher, H3Cover};

/// Points no polygon contains, but within this distance (degrees) of one,
/// are given to the nearest polygon (about 0.1 mm).
pub const SNAP_DEG: f64 = 1e-9;

/// Cell value: outside every polygon.
const OUTSIDE: u32 = u32::MAX;
/// Cell value flag: a boundary cell; the low bits index the candidate lists.
const BOUNDARY: u32 = 1 << 31;

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
        self.y0 <= y
            && y < self.y1
            && x < self.x0 + (y - self.y0) * (self.x1 - self.x0) / (self.y1 - self.y0)
    }
}

/// One polygon, prepared: its box and its range in the edge array.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    min: [f64; 2],
    max: [f64; 2],
    edges: (u32, u32),
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
    edges: Vec<Edge>,
    band_off: Vec<u32>,
    band_edges: Vec<u32>,
    boxes: RTree<BoxEntry>,
    /// Segment tree for nearest-polygon queries, built on first use, with
    /// longitudes multiplied by `seg_k` (so that tree distances are close to
    /// ground distances and nearest searches stop early).
    segments: OnceLock<RTree<SegEntry>>,
    seg_k: f64,
    origin: [f64; 2],
    inv_cell: [f64; 2],
    cell: [f64; 2],
    nx: usize,
    ny: usize,
    cells: Vec<u32>,
    cand_start: Vec<u32>,
    cand: Vec<u32>,
}

impl GridIndex {
    /// Builds the index. Position in `polygons` is the polygon's id and its
    /// priority where polygons overlap (lower wins).
    ///
    /// # Panics
    /// If there are 2³¹ polygons or 2³² edges or more.
    #[must_use]
    pub fn new(polygons: &[MultiPolygon<f64>]) -> GridIndex {
        Self::with_cells(polygons, None)
    }

    /// Like [`GridIndex::new`] with a chosen raster cell size in degrees
    /// (for tests and benches); `None` picks it from the polygons.
    ///
    /// # Panics
    /// As [`GridIndex::new`].
    #[must_use]
    pub fn with_cells(polygons: &[MultiPolygon<f64>], cell_deg: Option<f64>) -> GridIndex {
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
    pub fn new_coverage(polygons: &[MultiPolygon<f64>]) -> GridIndex {
        Self::build(polygons, None, true)
    }

    /// Like [`GridIndex::new_coverage`] with a chosen raster cell size.
    ///
    /// # Panics
    /// As [`GridIndex::new`].
    #[must_use]
    pub fn coverage_with_cells(polygons: &[MultiPolygon<f64>], cell_deg: Option<f64>) -> GridIndex {
        Self::build(polygons, cell_deg, true)
    }

    fn build(polygons: &[MultiPolygon<f64>], cell_deg: Option<f64>, coverage: bool) -> GridIndex {
        assert!(polygons.len() < BOUNDARY as usize, "too many polygons");
        let mut edges = Vec::new();
        let mut polys = Vec::with_capacity(polygons.len());
        let mut band_off: Vec<u32> = Vec::new();
        let mut band_edges: Vec<u32> = Vec::new();
        for mp in polygons {
            let start = edges.len();
            let mut min = [f64::INFINITY; 2];
            let mut max = [f64::NEG_INFINITY; 2];
            for ring in
                mp.0.iter()
                    .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
            {
                push_ring(ring, &mut edges, &mut min, &mut max);
            }
            let end = u32::try_from(edges.len()).expect("too many edges");
            let mut p = Prepared {
                min,
                max,
                edges: (u32::try_from(start).expect("too many edges"), end),
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
        let boxes = RTree::bulk_load(
            polys
                .iter()
                .enumerate()
                .filter(|(_, p)| p.min[0] <= p.max[0])
                .map(|(i, p)| GeomWithData::new(Rectangle::from_corners(p.min, p.max), i as u32))
                .collect(),
        );
        let mut index = GridIndex {
            polys,
            edges,
            band_off,
            band_edges,
            boxes,
            segments: OnceLock::new(),
            seg_k: 1.0,
            origin: [0.0; 2],
            inv_cell: [0.0; 2],
            cell: [1.0; 2],
            nx: 0,
            ny: 0,
            cells: Vec::new(),
            cand_start: vec![0],
            cand: Vec::new(),
        };
        index.build_raster(cell_deg, coverage);
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
            let k = (c & !BOUNDARY) as usize;
            let list = &self.cand[self.cand_start[k] as usize..self.cand_start[k + 1] as usize];
            list.iter()
                .copied()
                .find(|&id| self.contains(id, lon, lat))
                .or_else(|| self.snap_among(list, lon, lat))
        }
    }

    /// [`GridIndex::snap`] among `ids`: every polygon with an edge within
    /// [`SNAP_DEG`] of a point is a candidate of the point's boundary cell
    /// (cells are marked with a wider margin), so no tree is needed.
    fn snap_among(&self, ids: &[u32], lon: f64, lat: f64) -> Option<u32> {
        let mut best: Option<(f64, u32)> = None;
        for &id in ids {
            let p = &self.polys[id as usize];
            for e in &self.edges[p.edges.0 as usize..p.edges.1 as usize] {
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
        let p = &self.polys[id as usize];
        if lon < p.min[0] || lon > p.max[0] || lat < p.min[1] || lat > p.max[1] {
            return false;
        }
        let mut inside = false;
        if p.bands == 0 {
            for e in &self.edges[p.edges.0 as usize..p.edges.1 as usize] {
                inside ^= e.crosses(lon, lat);
            }
        } else {
            let b = p.band_start as usize + p.band(lat);
            for &i in &self.band_edges[self.band_off[b] as usize..self.band_off[b + 1] as usize] {
                inside ^= self.edges[i as usize].crosses(lon, lat);
            }
        }
        inside
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

    /// Statistics about the index.
    #[must_use]
    pub fn stats(&self) -> IndexStats {
        let boundary = self.cand_start.len() - 1;
        let outside = self.cells.iter().filter(|&&c| c == OUTSIDE).count();
        IndexStats {
            polygons: self.polys.len(),
            edges: self.edges.len(),
            cells: self.cells.len(),
            cell_deg: self.cell,
            interior_cells: self.cells.len() - boundary - outside,
            boundary_cells: boundary,
            candidates: self.cand.len(),
            memory_bytes: self.polys.len() * size_of::<Prepared>()
                + self.edges.len() * size_of::<Edge>()
                + (self.band_off.len() + self.band_edges.len()) * 4
                + self.cells.len() * 4
                + (self.cand_start.len() + self.cand.len()) * 4
                + self.polys.len() * (size_of::<BoxEntry>() + 16),
        }
    }

    /// The first polygon (lowest id) containing the point, via the R-tree.
    fn first_containing(&self, lon: f64, lat: f64) -> Option<u32> {
        let mut best: Option<u32> = None;
        for e in self.boxes.locate_all_at_point(&[lon, lat]) {
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

    fn segment_tree(&self) -> &RTree<SegEntry> {
        self.segments.get_or_init(|| {
            let k = self.seg_k;
            let mut segs = Vec::with_capacity(self.edges.len());
            for (id, p) in self.polys.iter().enumerate() {
                for e in &self.edges[p.edges.0 as usize..p.edges.1 as usize] {
                    segs.push(GeomWithData::new(
                        Line::new([e.x0 * k, e.y0], [e.x1 * k, e.y1]),
                        id as u32,
                    ));
                }
            }
            RTree::bulk_load(segs)
        })
    }

    fn nearest_edge(&self, lon: f64, lat: f64) -> Option<Nearest> {
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

    /// Sizes the raster and fills it; see the module docs.
    fn build_raster(&mut self, cell_deg: Option<f64>, coverage: bool) {
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
        let mut pairs: Vec<u64> = Vec::with_capacity(self.edges.len() * 3);
        for (id, p) in self.polys.iter().enumerate() {
            for e in &self.edges[p.edges.0 as usize..p.edges.1 as usize] {
                self.mark_edge(e, margin, |cell| {
                    pairs.push((cell as u64) << id_bits | id as u64)
                });
            }
        }
        pairs.sort_unstable();
        pairs.dedup();

        let mut cells = vec![UNSET; nx * ny];
        let buckets = Buckets::new(&self.polys, min, max);
        let mut cand_start = vec![0u32];
        let mut cand = Vec::with_capacity(pairs.len());
        let mut i = 0;
        while i < pairs.len() {
            let cell = (pairs[i] >> id_bits) as usize;
            let first = cand.len();
            while i < pairs.len() && (pairs[i] >> id_bits) as usize == cell {
                cand.push((pairs[i] & id_mask) as u32);
                i += 1;
            }
            // A polygon with no edge near the cell either covers all of it or
            // none of it; those that cover it (overlapping layers) are
            // candidates too.
            let centre = [
                self.origin[0] + ((cell % nx) as f64 + 0.5) * size,
                self.origin[1] + ((cell / nx) as f64 + 0.5) * size,
            ];
            if !coverage {
                let ids = buckets.at(centre[0], centre[1]).iter().copied();
                self.add_covering(&mut cand, first, centre, ids);
            }
            cells[cell] = BOUNDARY | (cand_start.len() as u32 - 1);
            cand_start.push(cand.len() as u32);
        }
        // Label each run of untouched cells in a row: no edge comes near the
        // run, so one answer holds for all of it, and for any untouched cell
        // next to it in the row below. Only runs with no such neighbour need
        // a point-in-polygon query (at the first cell's centre).
        let untouched = |c: u32| c == OUTSIDE || c & BOUNDARY == 0;
        for row in 0..ny {
            let mut label = None;
            for col in 0..nx {
                let i = row * nx + col;
                if cells[i] & BOUNDARY != 0 && cells[i] != UNSET {
                    label = None;
                    continue;
                }
                if label.is_none() && row > 0 && untouched(cells[i - nx]) {
                    label = Some(cells[i - nx]);
                }
                let l = *label.get_or_insert_with(|| {
                    let cx = self.origin[0] + (col as f64 + 0.5) * size;
                    let cy = self.origin[1] + (row as f64 + 0.5) * size;
                    buckets
                        .at(cx, cy)
                        .iter()
                        .copied()
                        .find(|&id| self.contains(id, cx, cy))
                        .unwrap_or(OUTSIDE)
                });
                cells[i] = l;
            }
        }
        self.cells = cells;
        self.cand_start = cand_start;
        self.cand = cand;
    }

    /// Adds to the candidate list `list[first..]` the polygons among `ids`
    /// that contain the cell centre `c` and are not in it yet — polygons
    /// that cover the cell without an edge in it (overlapping layers) —
    /// and sorts it.
    fn add_covering(
        &self,
        list: &mut Vec<u32>,
        first: usize,
        c: [f64; 2],
        ids: impl IntoIterator<Item = u32>,
    ) {
        for id in ids {
            if !list[first..].contains(&id) && self.contains(id, c[0], c[1]) {
                list.push(id);
            }
        }
        list[first..].sort_unstable();
    }

    /// A cell size giving about 4 cells across a small (20th percentile)
    /// polygon, and at least one cell per polygon over the whole box. (8
    /// cells across made queries of 1 M random points 10 % faster and the
    /// build twice as slow; see BENCHMARKS.md.)
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
        let by_small = *small / 4.0;
        let by_count = (w * h / sizes.len() as f64).sqrt();
        by_small.min(by_count).max(1e-7)
    }

    /// Calls `f` with every cell the edge passes within `margin` of.
    fn mark_edge(&self, e: &Edge, margin: f64, mut f: impl FnMut(usize)) {
        let cell_of = |v: f64, axis: usize, n: usize| -> usize {
            let t = ((v - self.origin[axis]) * self.inv_cell[axis]).floor();
            t.clamp(0.0, (n - 1) as f64) as usize
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

/// Cap on raster cells (64 MiB of cell entries).
const MAX_CELLS: usize = 1 << 24;

fn push_ring(
    ring: &LineString<f64>,
    edges: &mut Vec<Edge>,
    min: &mut [f64; 2],
    max: &mut [f64; 2],
) {
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
        let idx = GridIndex::new(&[]);
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
