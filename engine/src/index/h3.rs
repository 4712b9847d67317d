//! The same cover idea as the raster, with H3 cells (h3o) instead of
//! equal-angle boxes: kept to measure against the raster (`cargo bench
//! --bench index`), since the design suggests it.
//!
//! Every H3 cell over the layer's box is visited once (breadth-first from the
//! centre cell). A cell whose box (grown by 5 % for the curvature of its
//! edges) no polygon edge comes near is wholly inside one polygon or outside
//! all, and stores that answer; the others keep their candidate polygons for
//! the exact test. A point whose cell was not visited falls back to the
//! R-tree path, so the answer never depends on the cover being complete.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use h3o::{CellIndex, LatLng, Resolution};
use rstar::AABB;

use super::{BOUNDARY, GridIndex, OUTSIDE};
use crate::geom::metres_per_degree;

/// A fast hasher for H3 indexes (u64 keys).
#[derive(Default)]
pub struct CellHasher(u64);

impl Hasher for CellHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // splitmix64's finaliser: every output bit depends on every input
        // bit (H3 indexes of one resolution share their low bits).
        let mut z = v;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
}

/// An H3 cell cover over a [`GridIndex`].
#[derive(Debug)]
pub struct H3Cover<'a> {
    index: &'a GridIndex,
    res: Resolution,
    cells: HashMap<u64, u32, BuildHasherDefault<CellHasher>>,
    cand_start: Vec<u32>,
    cand: Vec<u32>,
}

impl std::fmt::Debug for CellHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CellHasher")
    }
}

impl GridIndex {
    /// Builds an H3 cover at `res`, or at the coarsest resolution whose
    /// hexagons are at most 8 times the raster cells.
    #[must_use]
    pub fn h3_cover(&self, res: Option<Resolution>) -> H3Cover<'_> {
        H3Cover::new(self, res)
    }
}

impl<'a> H3Cover<'a> {
    fn new(index: &'a GridIndex, res: Option<Resolution>) -> H3Cover<'a> {
        let min = index.origin;
        let max = [
            min[0] + index.nx as f64 * index.cell[0],
            min[1] + index.ny as f64 * index.cell[1],
        ];
        let mid = [0.5 * (min[0] + max[0]), 0.5 * (min[1] + max[1])];
        let res = res.unwrap_or_else(|| {
            let (mx, my) = metres_per_degree(mid[1]);
            let target = index.cell[0] * mx * index.cell[1] * my;
            // Hexagons up to 8x the raster cell: H3 cells cost far more
            // memory each (a hash map entry), so the cover stays coarser.
            Resolution::range(Resolution::Zero, Resolution::Fifteen)
                .find(|r| r.area_m2() <= 8.0 * target)
                .unwrap_or(Resolution::Fifteen)
        });
        let mut cover = H3Cover {
            index,
            res,
            cells: HashMap::default(),
            cand_start: vec![0],
            cand: Vec::new(),
        };
        if index.nx == 0 {
            return cover;
        }
        let Ok(start) = LatLng::new(mid[1], mid[0]).map(|ll| ll.to_cell(res)) else {
            return cover;
        };
        let tree = index.segment_tree();
        let k = index.seg_k;
        let mut seen: HashMap<u64, (), BuildHasherDefault<CellHasher>> = HashMap::default();
        let mut queue = VecDeque::from([start]);
        seen.insert(u64::from(start), ());
        while let Some(cell) = queue.pop_front() {
            let (lo, hi) = cell_box(cell);
            if hi[0] < min[0] || lo[0] > max[0] || hi[1] < min[1] || lo[1] > max[1] {
                continue;
            }
            let grow = [(hi[0] - lo[0]) * 0.05, (hi[1] - lo[1]) * 0.05];
            let env = AABB::from_corners(
                [(lo[0] - grow[0]) * k, lo[1] - grow[1]],
                [(hi[0] + grow[0]) * k, hi[1] + grow[1]],
            );
            let mut ids: Vec<u32> = tree
                .locate_in_envelope_intersecting(&env)
                .map(|s| s.data)
                .collect();
            let centre = LatLng::from(cell);
            let (cx, cy) = (centre.lng(), centre.lat());
            let entry = if ids.is_empty() {
                index.first_containing(cx, cy).unwrap_or(OUTSIDE)
            } else {
                ids.sort_unstable();
                ids.dedup();
                let covering = index
                    .box_tree()
                    .locate_all_at_point(&[cx, cy])
                    .map(|e| e.data);
                index.add_covering(&mut ids, [cx, cy], covering);
                cover.cand.extend_from_slice(&ids);
                cover.cand_start.push(cover.cand.len() as u32);
                BOUNDARY | (cover.cand_start.len() as u32 - 2)
            };
            cover.cells.insert(u64::from(cell), entry);
            for n in cell.grid_disk::<Vec<CellIndex>>(1) {
                if seen.insert(u64::from(n), ()).is_none() {
                    queue.push_back(n);
                }
            }
        }
        cover
    }

    /// The H3 resolution of the cover.
    #[must_use]
    pub fn resolution(&self) -> Resolution {
        self.res
    }

    /// Cells stored, and of them the boundary cells.
    #[must_use]
    pub fn cell_counts(&self) -> (usize, usize) {
        (self.cells.len(), self.cand_start.len() - 1)
    }

    /// The same answer as [`GridIndex::locate`].
    #[must_use]
    pub fn locate(&self, lon: f64, lat: f64) -> Option<u32> {
        let Ok(ll) = LatLng::new(lat, lon) else {
            return None;
        };
        match self.cells.get(&u64::from(ll.to_cell(self.res))) {
            None => self.index.locate_rtree(lon, lat),
            Some(&OUTSIDE) => None,
            Some(&c) if c & BOUNDARY == 0 => Some(c),
            Some(&c) => {
                let k = (c & !BOUNDARY) as usize;
                let list = &self.cand[self.cand_start[k] as usize..self.cand_start[k + 1] as usize];
                list.iter()
                    .copied()
                    .find(|&id| self.index.contains(id, lon, lat))
                    .or_else(|| self.index.snap(lon, lat))
            }
        }
    }
}

/// The longitude/latitude box of a cell's boundary.
fn cell_box(cell: CellIndex) -> ([f64; 2], [f64; 2]) {
    let mut lo = [f64::INFINITY; 2];
    let mut hi = [f64::NEG_INFINITY; 2];
    for v in cell.boundary().iter() {
        lo = [lo[0].min(v.lng()), lo[1].min(v.lat())];
        hi = [hi[0].max(v.lng()), hi[1].max(v.lat())];
    }
    (lo, hi)
}
