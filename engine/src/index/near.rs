//! Nearest polygon edge by a coarse raster of candidates: what an outside
//! point's reject needs (the nearest grid and the distance), at about the
//! cost of locating it.
//!
//! The raster covers the polygons' box (in the index's scaled space,
//! longitudes × `seg_k`), about one bucket per two edges. For each bucket
//! (filled the first time a query falls in it), the R-tree gives the edge
//! nearest to its centre at scaled distance `D`; every edge within
//! `s · (D + r) + r` of the centre is kept as a candidate, where `r` is the
//! bucket's half-diagonal and `s` bounds how much the ground metric at any
//! point of the bucket stretches one axis against the other. That holds every edge
//! that can be nearest (or tie) for any point of the bucket, so a query
//! scans one short list and returns exactly what the R-tree search returns
//! (the least distance, ties to the lower polygon id). Points outside the
//! raster go to the R-tree. A candidate is an edge number and a distance
//! bound (8 bytes), so the scan of one query touches a cache line or two
//! of the list: an outside point's cost is the memory it reads.

use std::sync::OnceLock;

use rstar::RTree;
use rstar::primitives::{GeomWithData, Line};

use super::SegEntry;
use crate::geom::metres_per_degree;

/// At most this many buckets (the raster of a layer with a million edges
/// stays under ~100 MB).
const MAX_BUCKETS: usize = 1 << 19;

/// The candidate raster.
#[derive(Debug)]
pub(super) struct NearGrid {
    origin: [f64; 2],
    size: f64,
    nx: usize,
    ny: usize,
    /// The longitude scale of the scaled space.
    k: f64,
    /// Every edge once, with its polygon.
    edges: Vec<(Line<[f64; 2]>, u32)>,
    /// The edges by their index in `edges`.
    tree: RTree<GeomWithData<Line<[f64; 2]>, u32>>,
    /// Bucket `b`'s candidates, by their scaled distance from the bucket's
    /// centre, built the first time a query falls in it: a layer's
    /// outside points fall in few of its buckets (those outside the city,
    /// in its gaps and along its edge), and a single query pays for one.
    lists: Vec<OnceLock<Box<[Candidate]>>>,
}

/// A candidate: its index in `edges` and its scaled distance from the
/// bucket's centre, rounded down to `f32` (a lower bound is all the scan
/// needs). Eight bytes, so that a query's list is one or two cache lines
/// and the whole raster stays a few times smaller than the edges it
/// indexes several times over.
type Candidate = (u32, f32);

/// `v` rounded down to an `f32`.
fn f32_below(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v { f.next_down() } else { f }
}

impl NearGrid {
    /// Sizes the raster over `tree` (scaled edges with their polygon);
    /// `k` is the longitude scale of the tree. Buckets are filled on use.
    pub(super) fn new(tree: &RTree<SegEntry>, k: f64) -> NearGrid {
        let edges: Vec<(Line<[f64; 2]>, u32)> = tree.iter().map(|e| (*e.geom(), e.data)).collect();
        let n = edges.len();
        let by_index: RTree<GeomWithData<Line<[f64; 2]>, u32>> = RTree::bulk_load(
            edges
                .iter()
                .enumerate()
                .map(|(i, (l, _))| GeomWithData::new(*l, i as u32))
                .collect(),
        );
        let (origin, size, nx, ny) = if n == 0 {
            ([0.0; 2], 1.0, 0, 0)
        } else {
            let env = by_index.root().envelope();
            let (lo, hi) = (env.lower(), env.upper());
            let (w, h) = ((hi[0] - lo[0]).max(1e-9), (hi[1] - lo[1]).max(1e-9));
            // One bucket per two edges: finer buckets scan fewer candidates
            // per query but cost more to build (measured on 20,000 Voronoi
            // grids, 123 k edges: n/4 scanned 23 per query, n/2 14, n 11).
            let want = (n / 2).clamp(1, MAX_BUCKETS) as f64;
            let mut size = (w * h / want).sqrt().max(1e-9);
            while (w / size + 1.0) * (h / size + 1.0) > MAX_BUCKETS as f64 {
                size *= 1.25;
            }
            let nx = (w / size).floor() as usize + 1;
            let ny = (h / size).floor() as usize + 1;
            (lo, size, nx, ny)
        };
        NearGrid {
            origin,
            size,
            nx,
            ny,
            k,
            edges,
            tree: by_index,
            lists: (0..nx * ny).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Bucket `b`'s candidates: the R-tree gives the edge nearest to the
    /// bucket's centre at scaled distance `D`; every edge within `s · (D +
    /// r) + r` of the centre is kept (see the module documentation).
    fn candidates(&self, b: usize) -> &[Candidate] {
        self.lists[b].get_or_init(|| {
            let (i, j) = (b % self.nx, b / self.nx);
            let size = self.size;
            let c = [
                self.origin[0] + (i as f64 + 0.5) * size,
                self.origin[1] + (j as f64 + 0.5) * size,
            ];
            let Some(near) = self.tree.nearest_neighbor(&c) else {
                return Box::default();
            };
            let r = size * std::f64::consts::SQRT_2 / 2.0;
            let d = rstar::PointDistance::distance_2(near.geom(), &c).sqrt();
            let s = self.stretch(c[1] - size / 2.0, c[1] + size / 2.0);
            // A hair more, for rounding in the distance computations.
            let radius = (s * (d + r) + r) * (1.0 + 1e-9) + 1e-12;
            let mut v: Vec<(f64, u32, u32)> = self
                .tree
                .locate_within_distance(c, radius * radius)
                .map(|e| {
                    let dc = rstar::PointDistance::distance_2(e.geom(), &c).sqrt();
                    (dc, self.edges[e.data as usize].1, e.data)
                })
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            v.into_iter().map(|(dc, _, i)| (i, f32_below(dc))).collect()
        })
    }

    /// The stretch between the axes of the ground metric over latitudes
    /// `lat0..lat1`, scaled space: x by sx = mx / (k my), y by 1; it varies
    /// with latitude only.
    fn stretch(&self, lat0: f64, lat1: f64) -> f64 {
        let sx = |lat: f64| {
            let (mx, my) = metres_per_degree(lat.clamp(-89.9, 89.9));
            mx / (self.k * my)
        };
        let (a, b) = (sx(lat0), sx(lat1));
        let (smin, smax) = (a.min(b).min(1.0), a.max(b).max(1.0));
        smax / smin
    }

    /// The nearest candidate edge to scaled point `(x, y)` as (metres,
    /// polygon) by `dist_m`; `None` outside the raster (or without edges).
    /// `lower` turns a scaled distance into a lower bound of metres at the
    /// point: candidates come nearest to the bucket's centre first, and the
    /// scan stops once the next one's distance from the centre, less the
    /// point's own distance from it (the triangle inequality), is beyond
    /// the best found.
    pub(super) fn nearest(
        &self,
        x: f64,
        y: f64,
        lower: f64,
        dist_m: impl Fn(&Line<[f64; 2]>) -> f64,
    ) -> Option<(f64, u32)> {
        let fx = (x - self.origin[0]) / self.size;
        let fy = (y - self.origin[1]) / self.size;
        if !(fx >= 0.0 && fy >= 0.0 && fx < self.nx as f64 && fy < self.ny as f64) {
            return None;
        }
        let (i, j) = (fx as usize, fy as usize);
        let b = j * self.nx + i;
        // The point's distance from the bucket's centre (at most the
        // half-diagonal): an edge at `dc` from the centre is at least
        // `dc - dp` from the point.
        let (cx, cy) = (
            self.origin[0] + (i as f64 + 0.5) * self.size,
            self.origin[1] + (j as f64 + 0.5) * self.size,
        );
        let dp = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() * (1.0 + 1e-12);
        let mut best: Option<(f64, u32)> = None;
        for &(e, dc) in self.candidates(b) {
            if let Some((bd, _)) = best
                && (f64::from(dc) - dp) * lower > bd
            {
                break;
            }
            let (l, id) = &self.edges[e as usize];
            let d = dist_m(l);
            if best.is_none_or(|(bd, bid)| (d, *id) < (bd, bid)) {
                best = Some((d, *id));
            }
        }
        best
    }
}
