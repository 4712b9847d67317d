//! The building units of one community and the territory each one owns.
//!
//! Every building footprint is sampled along its outline (corners plus
//! points at most [`SAMPLE_M`] apart) and the Voronoi diagram of all samples
//! of the community is taken. A building's territory is the union of its
//! samples' cells. Territories tile the plane, so any grouping of buildings
//! gives grids that tile the community once clipped to it, and a grid's
//! outline runs along the middle of the gaps between buildings — along the
//! roads between blocks and between the rows of a block, never through a
//! footprint: a point of a convex footprint at depth `t` is at most
//! `t + SAMPLE_M / 2` from its own samples and at least `t + gap` from any
//! other building, so footprints at least `SAMPLE_M / 2` apart stay whole.
//!
//! A grid outline is built directly from the diagram: the Voronoi edges
//! between a sample of the grid and a sample of another grid are chained
//! into rings (each Voronoi vertex is one circumcentre, computed once, so
//! neighbours share their edges to the bit), then clipped to the community
//! on the 1e-7° overlay grid.

use std::collections::HashMap;

use geo::{Centroid, Contains};
use geo_types::{Coord, LineString, MultiPolygon, Point, Polygon};
use spade::{DelaunayTriangulation, HasPosition, Point2, Triangulation};
use wangge_engine::geom::{self, Frame};

/// Largest spacing (metres) between consecutive samples of a footprint.
pub const SAMPLE_M: f64 = 15.0;

/// Label of the frame sites that close the diagram.
const FRAME: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Site {
    pos: Point2<f64>,
    building: u32,
}

impl HasPosition for Site {
    type Scalar = f64;
    fn position(&self) -> Point2<f64> {
        self.pos
    }
}

/// The Voronoi territories of a community's buildings and their adjacency.
#[derive(Debug)]
pub struct Territories {
    tri: DelaunayTriangulation<Site>,
    /// Circumcentre (lon/lat) of each face, by face index.
    centres: Vec<Coord<f64>>,
    /// Buildings whose territories share an edge inside the community,
    /// sorted, per building.
    pub adjacency: Vec<Vec<u32>>,
}

/// Sample points (metres) of one footprint: its vertices and points along
/// its edges at most [`SAMPLE_M`] apart; its centroid when it is degenerate.
fn samples(footprint: &Polygon<f64>, frame: Frame, out: &mut Vec<[f64; 2]>) {
    let start = out.len();
    let ring = &footprint.exterior().0;
    for w in ring.windows(2) {
        let (a, b) = (frame.to_m(w[0]), frame.to_m(w[1]));
        let len = (b[0] - a[0]).hypot(b[1] - a[1]);
        if !len.is_finite() {
            continue;
        }
        out.push(a);
        let n = (len / SAMPLE_M).ceil() as usize;
        for i in 1..n {
            let t = i as f64 / n as f64;
            out.push([a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]);
        }
    }
    if out.len() == start
        && let Some(c) = footprint.centroid()
    {
        out.push(frame.to_m(c.0));
    }
}

impl Territories {
    /// The territories of `footprints` inside `community` (lon/lat).
    /// Returns `None` when there are no usable footprints.
    #[must_use]
    pub fn new(community: &MultiPolygon<f64>, footprints: &[Polygon<f64>]) -> Option<Territories> {
        let bbox = geom::bbox(community)?;
        let frame = Frame::at(bbox.center());
        let mut sites = Vec::new();
        let mut pts = Vec::new();
        for (b, f) in footprints.iter().enumerate() {
            pts.clear();
            samples(f, frame, &mut pts);
            sites.extend(
                pts.iter()
                    .filter(|p| p[0].is_finite() && p[1].is_finite())
                    .map(|p| Site {
                        pos: Point2::new(p[0], p[1]),
                        building: b as u32,
                    }),
            );
        }
        if sites.is_empty() {
            return None;
        }
        // Frame sites far outside the community close every real cell.
        let (lo, hi) = (frame.to_m(bbox.min()), frame.to_m(bbox.max()));
        let r = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(100.0) * 2.0;
        let (cx, cy) = (0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]));
        for (dx, dy) in [
            (-1., -1.),
            (0., -1.),
            (1., -1.),
            (1., 0.),
            (1., 1.),
            (0., 1.),
            (-1., 1.),
            (-1., 0.),
        ] {
            sites.push(Site {
                pos: Point2::new(cx + dx * r, cy + dy * r),
                building: FRAME,
            });
        }
        let tri = DelaunayTriangulation::<Site>::bulk_load(sites).ok()?;
        let mut centres = vec![
            Coord {
                x: f64::NAN,
                y: f64::NAN
            };
            tri.num_all_faces()
        ];
        for f in tri.inner_faces() {
            let c = f.circumcenter();
            centres[f.fix().index()] = frame.to_deg([c.x, c.y]);
        }
        let mut adjacency = vec![Vec::new(); footprints.len()];
        for e in tri.undirected_edges() {
            let [u, v] = e.vertices();
            let (a, b) = (u.data().building, v.data().building);
            if a == b || a == FRAME || b == FRAME {
                continue;
            }
            let d = e.as_directed();
            let (Some(l), Some(r)) = (d.face().as_inner(), d.rev().face().as_inner()) else {
                continue;
            };
            let (p, q) = (centres[l.fix().index()], centres[r.fix().index()]);
            let mid = Point::new(0.5 * (p.x + q.x), 0.5 * (p.y + q.y));
            if community.contains(&mid) {
                adjacency[a as usize].push(b);
                adjacency[b as usize].push(a);
            }
        }
        for list in &mut adjacency {
            list.sort_unstable();
            list.dedup();
        }
        Some(Territories {
            tri,
            centres,
            adjacency,
        })
    }

    /// The outline of each of `k` groups (`group[b]` for building `b`),
    /// clipped to `community`. Empty for a group with no building.
    #[must_use]
    pub fn outlines(
        &self,
        community: &MultiPolygon<f64>,
        group: &[u32],
        k: usize,
    ) -> Vec<MultiPolygon<f64>> {
        let label = |b: u32| if b == FRAME { FRAME } else { group[b as usize] };
        // Directed boundary edges of each group, as (from face, to face),
        // with the group on their left.
        let mut edges: Vec<Vec<(u32, u32)>> = vec![Vec::new(); k];
        for e in self.tri.directed_edges() {
            let (gu, gv) = (
                label(e.from().data().building),
                label(e.to().data().building),
            );
            if gu == gv || gu == FRAME {
                continue;
            }
            let (Some(l), Some(r)) = (e.face().as_inner(), e.rev().face().as_inner()) else {
                continue;
            };
            edges[gu as usize].push((r.fix().index() as u32, l.fix().index() as u32));
        }
        edges
            .into_iter()
            .map(|list| {
                let rings = chain(&list, &self.centres);
                if rings.is_empty() {
                    MultiPolygon::new(Vec::new())
                } else {
                    geom::clip_rings(&rings, community)
                }
            })
            .collect()
    }
}

/// Chains directed edges `(from, to)` between circumcentres into closed
/// rings.
fn chain(edges: &[(u32, u32)], centres: &[Coord<f64>]) -> Vec<LineString<f64>> {
    let mut out_of: HashMap<u32, Vec<usize>> = HashMap::with_capacity(edges.len());
    for (i, e) in edges.iter().enumerate() {
        out_of.entry(e.0).or_default().push(i);
    }
    let mut used = vec![false; edges.len()];
    let mut rings = Vec::new();
    for first in 0..edges.len() {
        if used[first] {
            continue;
        }
        used[first] = true;
        let start = edges[first].0;
        let mut ring = vec![centres[start as usize]];
        let mut at = edges[first].1;
        while at != start {
            ring.push(centres[at as usize]);
            let Some(next) = out_of
                .get(&at)
                .and_then(|l| l.iter().copied().find(|&i| !used[i]))
            else {
                break;
            };
            used[next] = true;
            at = edges[next].1;
        }
        if at == start && ring.len() >= 3 {
            ring.push(ring[0]);
            rings.push(LineString::from(ring));
        }
    }
    rings
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Area;
    use geo_types::polygon;

    fn rect(x: f64, y: f64, w: f64, h: f64) -> Polygon<f64> {
        polygon![(x: x, y: y), (x: x + w, y: y), (x: x + w, y: y + h), (x: x, y: y + h)]
    }

    #[test]
    fn two_groups_tile_a_square_without_splitting_footprints() {
        // A 0.01° square at Beijing's latitude with a 4 × 3 lattice of
        // footprints 0.0008° apart (about 70 m and 90 m).
        let community = MultiPolygon::new(vec![rect(116.4, 39.9, 0.01, 0.01)]);
        let mut fps = Vec::new();
        for i in 0..4 {
            for j in 0..3 {
                fps.push(rect(
                    116.401 + i as f64 * 0.0024,
                    39.901 + j as f64 * 0.003,
                    0.0006,
                    0.0002,
                ));
            }
        }
        let t = Territories::new(&community, &fps).expect("territories");
        let group: Vec<u32> = (0..fps.len()).map(|b| u32::from(b >= 6)).collect();
        let out = t.outlines(&community, &group, 2);
        let total: f64 = out.iter().map(Area::unsigned_area).sum();
        let expect = community.unsigned_area();
        assert!(
            (total - expect).abs() / expect < 1e-9,
            "{total} vs {expect}"
        );
        let overlap = geom::intersection(&out[0], &out[1]).unsigned_area();
        assert!(overlap < 1e-15, "{overlap}");
        for (b, f) in fps.iter().enumerate() {
            assert!(out[group[b] as usize].contains(f), "footprint {b} split");
        }
        // Columns 0-1 and 2-3: one connected polygon each.
        assert_eq!(out[0].0.len(), 1);
        assert_eq!(out[1].0.len(), 1);
        // Neighbouring footprints are adjacent; far ones are not.
        assert!(t.adjacency[0].contains(&1));
        assert!(!t.adjacency[0].contains(&11));
    }
}
