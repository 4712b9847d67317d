//! Polygon helpers shared by validation, the synthetic city and the store:
//! make-valid, overlay wrappers and areas.

use geo::{Area, BoundingRect, GeodesicArea, Orient, orient::Direction};
use geo_types::{Coord, LineString, MultiPolygon, Polygon, Rect};
use i_overlay::core::fill_rule::FillRule;
use i_overlay::core::overlay::{IntOverlayOptions, Overlay};
use i_overlay::core::overlay_rule::OverlayRule;
use i_overlay::core::solver::Solver;
use i_overlay::i_float::int::point::IntPoint;

use crate::points::PointIndex;

/// Overlays run on a fixed integer grid of 1e-7° (about 1 cm): every
/// coordinate an overlay returns is a multiple of it, so edges shared by two
/// results computed separately (neighbouring communities, say) are identical
/// to the bit and tilings stay exact.
pub const GRID_PER_DEGREE: f64 = 1e7;

fn to_int(c: Coord<f64>) -> IntPoint {
    // |lon| ≤ 180 → |x| ≤ 1.8e9 < 2^31.
    IntPoint::new(
        (c.x * GRID_PER_DEGREE).round() as i32,
        (c.y * GRID_PER_DEGREE).round() as i32,
    )
}

fn ring_int(ring: &LineString<f64>) -> Vec<IntPoint> {
    let mut pts: Vec<IntPoint> = ring.0.iter().map(|&c| to_int(c)).collect();
    pts.dedup();
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    pts
}

fn shapes_int(mp: &MultiPolygon<f64>) -> Vec<Vec<Vec<IntPoint>>> {
    mp.0.iter()
        .map(|p| {
            std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(ring_int)
                .filter(|r| r.len() >= 3)
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// i_overlay output (shapes of contours, outer first) as a geo multipolygon.
fn from_int(shapes: Vec<Vec<Vec<IntPoint>>>) -> MultiPolygon<f64> {
    let polys = shapes
        .into_iter()
        .filter_map(|shape| {
            let mut rings = shape.into_iter().map(|c| {
                let mut pts: Vec<Coord<f64>> = c
                    .into_iter()
                    .map(|p| Coord {
                        x: f64::from(p.x) / GRID_PER_DEGREE,
                        y: f64::from(p.y) / GRID_PER_DEGREE,
                    })
                    .collect();
                if let Some(&first) = pts.first() {
                    pts.push(first);
                }
                LineString::from(pts)
            });
            let exterior = rings.next()?;
            Some(Polygon::new(exterior, rings.collect()))
        })
        .collect();
    oriented(MultiPolygon::new(polys))
}

fn overlay(
    subj: &[Vec<Vec<IntPoint>>],
    clip: &[Vec<Vec<IntPoint>>],
    rule: OverlayRule,
    fill: FillRule,
) -> MultiPolygon<f64> {
    from_int(raw_overlay(subj, clip, rule, fill))
}

/// Keeps the noding vertices in the output: where a ring touches itself the
/// touch point must be a vertex of both passes for [`split_self_touching`]
/// to see it.
fn raw_overlay(
    subj: &[Vec<Vec<IntPoint>>],
    clip: &[Vec<Vec<IntPoint>>],
    rule: OverlayRule,
    fill: FillRule,
) -> Vec<Vec<Vec<IntPoint>>> {
    let options = IntOverlayOptions {
        preserve_output_collinear: true,
        ..IntOverlayOptions::default()
    };
    Overlay::with_shapes_options(subj, clip, options, Solver::default()).overlay(rule, fill)
}

/// Rebuilds a valid multipolygon from the rings of `mp` with the even-odd
/// rule, the "linework" repair of GEOS/shapely `make_valid`: self-intersecting
/// rings become several polygons, spikes and zero-area parts disappear, holes
/// that touch or cross their shell are cut out where they cover it.
///
/// Each input polygon is rebuilt from all its rings by one even-odd overlay,
/// then the polygons are unioned, so overlapping parts of a multipolygon
/// merge. Coordinates land on the 1e-7° grid ([`GRID_PER_DEGREE`]).
/// Non-finite coordinates must have been removed before.
#[must_use]
pub fn make_valid(mp: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    make_valid_with(mp, false)
}

/// Repairs `mp` as GEOS `make_valid` (method "linework") does: every ring
/// of every part in one even-odd overlay, so a shell nested in another
/// part becomes its hole and the overlap of two parts is left out, where
/// [`make_valid`] unions the parts. (GEOS differs from both where two
/// parts share a stretch of edge: it merges the doubled edge and keeps
/// the overlap there.) Coordinates land on the 1e-7° grid.
#[must_use]
pub fn make_valid_linework(mp: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    make_valid_with(mp, true)
}

fn make_valid_with(mp: &MultiPolygon<f64>, across_parts: bool) -> MultiPolygon<f64> {
    if across_parts {
        let rings: Vec<Vec<IntPoint>> = shapes_int(mp).into_iter().flatten().collect();
        let once = raw_overlay(&[rings], &[], OverlayRule::Subject, FillRule::EvenOdd);
        // The even-odd pass may return touching pieces; one union makes
        // them one valid multipolygon.
        return overlay(&once, &[], OverlayRule::Subject, FillRule::NonZero);
    }
    let parts: Vec<Vec<Vec<IntPoint>>> = shapes_int(mp)
        .into_iter()
        .flat_map(|rings| raw_overlay(&[rings], &[], OverlayRule::Subject, FillRule::EvenOdd))
        .collect();
    overlay(&parts, &[], OverlayRule::Subject, FillRule::NonZero)
}

/// `mp` with exteriors counter-clockwise and holes clockwise (OGC / RFC 7946),
/// which geodesic area and GeoJSON output expect, and with self-touching
/// rings split into simple ones (see [`split_self_touching`]).
#[must_use]
pub fn oriented(mp: MultiPolygon<f64>) -> MultiPolygon<f64> {
    split_self_touching(mp.orient(Direction::Default))
}

/// Splits rings that pass through the same vertex twice into simple loops.
///
/// Overlay engines (i_overlay included) may return an exterior that touches
/// itself at a point, enclosing an "inverted" hole, or two parts joined at a
/// vertex. OGC (GEOS, PostGIS, shapely) calls such rings invalid. Loops of an
/// exterior that wind like it become exteriors of their own; loops that wind
/// the other way are holes, given to the exterior that contains them.
/// Expects the orientation of [`oriented`].
#[must_use]
pub fn split_self_touching(mp: MultiPolygon<f64>) -> MultiPolygon<f64> {
    use geo::{Contains, InteriorPoint};
    let needs = |r: &LineString<f64>| {
        let n = r.0.len().saturating_sub(1);
        let mut seen = std::collections::HashSet::with_capacity(n);
        r.0[..n]
            .iter()
            .any(|c| !seen.insert((c.x.to_bits(), c.y.to_bits())))
    };
    if !mp
        .0
        .iter()
        .any(|p| needs(p.exterior()) || p.interiors().iter().any(needs))
    {
        return mp;
    }
    let mut exteriors: Vec<LineString<f64>> = Vec::new();
    let mut holes: Vec<LineString<f64>> = Vec::new();
    for p in mp.0 {
        let (ext, ints) = p.into_inner();
        for l in simple_loops(&ext) {
            if signed_ring_area(&l) > 0.0 {
                exteriors.push(l)
            } else {
                holes.push(l)
            }
        }
        for h in ints {
            for l in simple_loops(&h) {
                if signed_ring_area(&l) < 0.0 {
                    holes.push(l)
                } else {
                    exteriors.push(l)
                }
            }
        }
    }
    let mut polys: Vec<(Polygon<f64>, Vec<LineString<f64>>)> = exteriors
        .into_iter()
        .map(|e| (Polygon::new(e, vec![]), Vec::new()))
        .collect();
    for h in holes {
        let Some(probe) = Polygon::new(h.clone(), vec![]).interior_point() else {
            continue;
        };
        // The smallest exterior containing the hole owns it.
        let owner = polys
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| p.contains(&probe))
            .min_by(|a, b| a.1.0.unsigned_area().total_cmp(&b.1.0.unsigned_area()))
            .map(|(i, _)| i);
        if let Some(i) = owner {
            polys[i].1.push(h);
        }
    }
    MultiPolygon::new(
        polys
            .into_iter()
            .map(|(p, hs)| Polygon::new(p.into_inner().0, hs))
            .collect(),
    )
}

/// Cuts a closed ring into loops that visit no vertex twice.
fn simple_loops(ring: &LineString<f64>) -> Vec<LineString<f64>> {
    let n = ring.0.len().saturating_sub(1);
    let mut out = Vec::new();
    let mut path: Vec<Coord<f64>> = Vec::with_capacity(n);
    let mut at: std::collections::HashMap<(u64, u64), usize> =
        std::collections::HashMap::with_capacity(n);
    for &c in &ring.0[..n] {
        let key = (c.x.to_bits(), c.y.to_bits());
        if let Some(&start) = at.get(&key) {
            let mut lp: Vec<Coord<f64>> = path.drain(start..).collect();
            for q in &lp {
                at.remove(&(q.x.to_bits(), q.y.to_bits()));
            }
            if lp.len() >= 3 {
                lp.push(lp[0]);
                out.push(LineString::from(lp));
            }
        }
        at.insert(key, path.len());
        path.push(c);
    }
    if path.len() >= 3 {
        path.push(path[0]);
        out.push(LineString::from(path));
    }
    out
}

fn signed_ring_area(r: &LineString<f64>) -> f64 {
    Polygon::new(r.clone(), vec![]).signed_area()
}

/// Geodesic area in square metres on the WGS84 ellipsoid (Karney).
#[must_use]
pub fn area_m2(mp: &MultiPolygon<f64>) -> f64 {
    // Karney's algorithm gives the complement (the rest of the globe) for a
    // ring it reads as clockwise; a degenerate ring can read either way.
    const EARTH_M2: f64 = 510_065_621_724_088.5;
    mp.0.iter()
        .map(|p| {
            let a = p.geodesic_area_unsigned();
            if a > EARTH_M2 / 2.0 { EARTH_M2 - a } else { a }
        })
        .sum()
}

/// Planar area in square degrees, the unit shapely reports for lon/lat data.
#[must_use]
pub fn area_deg2(mp: &MultiPolygon<f64>) -> f64 {
    mp.unsigned_area()
}

/// The bounding rectangle, or `None` for an empty geometry.
#[must_use]
pub fn bbox(mp: &MultiPolygon<f64>) -> Option<Rect<f64>> {
    mp.bounding_rect()
}

/// A polygon or multipolygon as a multipolygon; `None` for other
/// geometry types.
#[must_use]
pub fn as_multi(g: geo_types::Geometry<f64>) -> Option<MultiPolygon<f64>> {
    match g {
        geo_types::Geometry::Polygon(p) => Some(MultiPolygon::new(vec![p])),
        geo_types::Geometry::MultiPolygon(m) => Some(m),
        _ => None,
    }
}

/// `a ∩ b` (valid inputs), on the 1e-7° grid.
#[must_use]
pub fn intersection(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    overlay(
        &shapes_int(a),
        &shapes_int(b),
        OverlayRule::Intersect,
        FillRule::NonZero,
    )
}

/// The region enclosed by `rings` (even-odd: a ring inside another is a
/// hole; orientation does not matter) intersected with `clip`, on the
/// 1e-7° grid.
#[must_use]
pub fn clip_rings(rings: &[LineString<f64>], clip: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    let subj: Vec<Vec<Vec<IntPoint>>> = rings
        .iter()
        .map(ring_int)
        .filter(|r| r.len() >= 3)
        .map(|r| vec![r])
        .collect();
    overlay(
        &subj,
        &shapes_int(clip),
        OverlayRule::Intersect,
        FillRule::EvenOdd,
    )
}

/// `a − b` (valid inputs), on the 1e-7° grid.
#[must_use]
pub fn difference(a: &MultiPolygon<f64>, b: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    overlay(
        &shapes_int(a),
        &shapes_int(b),
        OverlayRule::Difference,
        FillRule::NonZero,
    )
}

/// The union of many valid multipolygons, on the 1e-7° grid.
#[must_use]
pub fn union_all<'a>(parts: impl IntoIterator<Item = &'a MultiPolygon<f64>>) -> MultiPolygon<f64> {
    let shapes: Vec<Vec<Vec<IntPoint>>> = parts.into_iter().flat_map(shapes_int).collect();
    overlay(&shapes, &[], OverlayRule::Subject, FillRule::NonZero)
}

/// Square degrees per square metre at latitude `lat`, for turning metre
/// thresholds into degree thresholds locally.
#[must_use]
pub fn metres_per_degree(lat: f64) -> (f64, f64) {
    let lat_m = 111_132.954 - 559.822 * (2.0 * lat.to_radians()).cos();
    let lon_m = 111_412.84 * lat.to_radians().cos();
    (lon_m, lat_m)
}

/// A local metric frame: metres east/north of an origin, with the scale of
/// [`metres_per_degree`] at the origin's latitude.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    origin: Coord<f64>,
    mx: f64,
    my: f64,
}

impl Frame {
    /// The frame at `origin` (lon/lat).
    #[must_use]
    pub fn at(origin: Coord<f64>) -> Frame {
        let (mx, my) = metres_per_degree(origin.y);
        Frame { origin, mx, my }
    }

    /// Metres east/north of the origin.
    #[must_use]
    pub fn to_m(self, c: Coord<f64>) -> [f64; 2] {
        [
            (c.x - self.origin.x) * self.mx,
            (c.y - self.origin.y) * self.my,
        ]
    }

    /// Back to lon/lat.
    #[must_use]
    pub fn to_deg(self, p: [f64; 2]) -> Coord<f64> {
        Coord {
            x: self.origin.x + p[0] / self.mx,
            y: self.origin.y + p[1] / self.my,
        }
    }
}

/// Drops polygons whose planar area is below `min_deg2` (slivers left by
/// overlay snapping).
#[must_use]
pub fn drop_slivers(mp: MultiPolygon<f64>, min_deg2: f64) -> MultiPolygon<f64> {
    MultiPolygon::new(
        mp.0.into_iter()
            .filter(|p| p.unsigned_area() >= min_deg2)
            .collect(),
    )
}

/// Rounds every coordinate to the overlay grid ([`GRID_PER_DEGREE`]) the way
/// the overlays do, dropping repeated vertices. Returns `None` when the
/// rounded polygon is not valid (the caller repairs it).
#[must_use]
pub fn snap_to_grid(mp: &MultiPolygon<f64>) -> Option<MultiPolygon<f64>> {
    let snap = |ring: &LineString<f64>| -> LineString<f64> {
        let mut pts: Vec<Coord<f64>> = ring
            .0
            .iter()
            .map(|&c| {
                let p = to_int(c);
                Coord {
                    x: f64::from(p.x) / GRID_PER_DEGREE,
                    y: f64::from(p.y) / GRID_PER_DEGREE,
                }
            })
            .collect();
        pts.dedup();
        LineString::from(pts)
    };
    let out = MultiPolygon::new(
        mp.0.iter()
            .map(|p| Polygon::new(snap(p.exterior()), p.interiors().iter().map(snap).collect()))
            .collect(),
    );
    crate::validity::is_valid(&out).then_some(out)
}

/// [`snap_to_grid`] of a polygon known to be valid: when it is on the grid
/// already (rounding changes no vertex and drops none), it is returned as
/// it is, without checking its validity again.
#[must_use]
pub fn snap_valid_to_grid(mp: &MultiPolygon<f64>) -> Option<MultiPolygon<f64>> {
    let on_grid = |ring: &LineString<f64>| {
        let mut last: Option<IntPoint> = None;
        ring.0.iter().all(|&c| {
            let p = to_int(c);
            let same = f64::from(p.x) / GRID_PER_DEGREE == c.x
                && f64::from(p.y) / GRID_PER_DEGREE == c.y
                && last != Some(p);
            last = Some(p);
            same
        })
    };
    if mp
        .0
        .iter()
        .all(|p| on_grid(p.exterior()) && p.interiors().iter().all(on_grid))
    {
        return Some(mp.clone());
    }
    snap_to_grid(mp)
}

/// Every vertex of the layer with the index of its polygon (each pair
/// once), in a [`PointIndex`].
fn vertex_index(layer: &[Option<MultiPolygon<f64>>]) -> PointIndex<u32> {
    use rayon::prelude::*;
    let mut pts: Vec<([f64; 2], u32)> = layer
        .par_iter()
        .enumerate()
        .filter_map(|(i, mp)| mp.as_ref().map(|mp| (i as u32, mp)))
        .flat_map_iter(|(i, mp)| {
            let mut v: Vec<([f64; 2], u32)> =
                mp.0.iter()
                    .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
                    .flat_map(|r| r.0.iter().map(move |c| ([c.x, c.y], i)))
                    .collect();
            v.sort_unstable_by(|a, b| a.0[0].total_cmp(&b.0[0]).then(a.0[1].total_cmp(&b.0[1])));
            v.dedup();
            v
        })
        .collect();
    pts.shrink_to_fit();
    PointIndex::new(pts)
}

/// Snaps vertices that are within `tol` of each other (but not equal) to
/// one point: each vertex moves to the lexicographically smallest vertex
/// of the layer within `tol` (repeatedly, so a chain ends at one point),
/// the same target for every polygon holding it. Two corners computed
/// separately (an overlay rounds each to the 1e-7° grid) then coincide
/// instead of leaving a sliver that edge noding cannot close (it never
/// inserts a vertex next to a corner). A cluster whose snapping would make
/// any polygon invalid is left as it was everywhere. Returns the number of
/// polygons changed.
pub fn snap_vertices(layer: &mut [Option<MultiPolygon<f64>>], tol: f64) -> usize {
    snap_vertices_in(layer, tol, &vertex_index(layer))
}

/// [`snap_vertices`] with the layer's [`vertex_index`] already built.
fn snap_vertices_in(
    layer: &mut [Option<MultiPolygon<f64>>],
    tol: f64,
    index: &PointIndex<u32>,
) -> usize {
    use rayon::prelude::*;
    use std::collections::HashMap;
    let lex = |a: [f64; 2], b: [f64; 2]| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1]));
    let key = |p: [f64; 2]| (p[0].to_bits(), p[1].to_bits());
    // The smallest vertex within `tol` of each vertex that has one.
    let mut target: HashMap<(u64, u64), [f64; 2]> = index
        .points()
        .par_iter()
        .filter_map(|&(p, _)| {
            let mut best: Option<[f64; 2]> = None;
            index.within(p, tol * tol, |w| {
                if best.is_none_or(|b| lex(w.0, b).is_lt()) {
                    best = Some(w.0);
                }
            });
            let best = best?;
            lex(best, p).is_lt().then(|| (key(p), best))
        })
        .collect();
    // Follow chains a → b → c to their end.
    let keys: Vec<(u64, u64)> = target.keys().copied().collect();
    for k in keys {
        let mut t = target[&k];
        for _ in 0..16 {
            match target.get(&key(t)) {
                Some(&next) if lex(next, t).is_lt() => t = next,
                _ => break,
            }
        }
        target.insert(k, t);
    }
    if target.is_empty() {
        return 0;
    }
    // A cluster snaps in every polygon or in none: when snapping makes a
    // polygon invalid, its clusters are dropped and the rest retried.
    for _round in 0..8 {
        let snap_ring = |ring: &LineString<f64>, hit: &mut Vec<[f64; 2]>| -> LineString<f64> {
            let mut out: Vec<Coord<f64>> = ring
                .0
                .iter()
                .map(|&c| match target.get(&key([c.x, c.y])) {
                    Some(t) => {
                        hit.push(*t);
                        Coord { x: t[0], y: t[1] }
                    }
                    None => c,
                })
                .collect();
            out.dedup();
            LineString::from(out)
        };
        // Per polygon: its snapped form (None: nothing to snap), or the
        // targets that broke it.
        type Tried = Result<Option<MultiPolygon<f64>>, Vec<[f64; 2]>>;
        let tried: Vec<Tried> = layer
            .par_iter()
            .map(|slot| {
                let Some(mp) = slot.as_ref() else {
                    return Ok(None);
                };
                let mut hit = Vec::new();
                let snapped = MultiPolygon::new(
                    mp.0.iter()
                        .map(|p| {
                            Polygon::new(
                                snap_ring(p.exterior(), &mut hit),
                                p.interiors()
                                    .iter()
                                    .map(|r| snap_ring(r, &mut hit))
                                    .collect(),
                            )
                        })
                        .collect(),
                );
                if hit.is_empty() {
                    return Ok(None);
                }
                let rings_ok = snapped.0.iter().all(|p| {
                    p.exterior().0.len() >= 4 && p.interiors().iter().all(|r| r.0.len() >= 4)
                });
                if rings_ok && crate::validity::is_valid(&snapped) {
                    Ok(Some(snapped))
                } else {
                    Err(hit)
                }
            })
            .collect();
        let failed: std::collections::HashSet<(u64, u64)> = tried
            .iter()
            .filter_map(|r| r.as_ref().err())
            .flatten()
            .map(|&t| key(t))
            .collect();
        if failed.is_empty() {
            let mut moved = 0;
            for (slot, r) in layer.iter_mut().zip(tried) {
                if let Ok(Some(m)) = r {
                    moved += 1;
                    *slot = Some(m);
                }
            }
            return moved;
        }
        target.retain(|_, t| !failed.contains(&key(*t)));
    }
    0
}

/// Nodes a polygon layer: every vertex of any polygon that lies within `tol`
/// (degrees) of another polygon's edge, strictly between its ends, is
/// inserted into that edge. Boundaries that neighbours computed separately
/// (an overlay rounds its intersection points to the grid) then run through
/// the same vertices, so they meet without slivers of overlap or gap. A
/// polygon that noding would make invalid is left as it was. Returns the
/// number of vertices inserted.
pub fn node_layer(layer: &mut [Option<MultiPolygon<f64>>], tol: f64) -> usize {
    use rayon::prelude::*;
    // Every vertex with the polygon it belongs to: a polygon is noded with
    // the vertices of the others only.
    let mut index = vertex_index(layer);
    if snap_vertices_in(layer, tol, &index) > 0 {
        index = vertex_index(layer);
    }
    let node_ring = |ring: &LineString<f64>, own: u32, added: &mut usize| -> LineString<f64> {
        let mut out: Vec<Coord<f64>> = Vec::with_capacity(ring.0.len());
        for w in ring.0.windows(2) {
            let (a, b) = (w[0], w[1]);
            out.push(a);
            let (dx, dy) = (b.x - a.x, b.y - a.y);
            let len2 = dx * dx + dy * dy;
            if len2 == 0.0 {
                continue;
            }
            let mut on: Vec<(f64, Coord<f64>)> = Vec::new();
            index.in_box(
                [a.x.min(b.x) - tol, a.y.min(b.y) - tol],
                [a.x.max(b.x) + tol, a.y.max(b.y) + tol],
                |&(p, poly)| {
                    if poly == own {
                        return;
                    }
                    let c = Coord { x: p[0], y: p[1] };
                    if c == a || c == b {
                        return;
                    }
                    let t = ((c.x - a.x) * dx + (c.y - a.y) * dy) / len2;
                    if t <= 0.0 || t >= 1.0 {
                        return;
                    }
                    // A vertex next to a corner would be inserted into both
                    // edges of the corner, making a spike.
                    let near = |e: Coord<f64>| (c.x - e.x).hypot(c.y - e.y) <= tol;
                    if near(a) || near(b) {
                        return;
                    }
                    let (px, py) = (a.x + t * dx - c.x, a.y + t * dy - c.y);
                    if px * px + py * py <= tol * tol {
                        on.push((t, c));
                    }
                },
            );
            on.sort_by(|x, y| x.0.total_cmp(&y.0));
            on.dedup_by(|x, y| x.1 == y.1);
            *added += on.len();
            out.extend(on.into_iter().map(|(_, c)| c));
        }
        if let Some(&last) = ring.0.last() {
            out.push(last);
        }
        LineString::from(out)
    };
    layer
        .par_iter_mut()
        .enumerate()
        .map(|(own, slot)| {
            let own = own as u32;
            let Some(mp) = slot.as_ref() else { return 0 };
            let mut added = 0;
            let noded = MultiPolygon::new(
                mp.0.iter()
                    .map(|p| {
                        Polygon::new(
                            node_ring(p.exterior(), own, &mut added),
                            p.interiors()
                                .iter()
                                .map(|r| node_ring(r, own, &mut added))
                                .collect(),
                        )
                    })
                    .collect(),
            );
            if added > 0 && crate::validity::is_valid(&noded) {
                *slot = Some(noded);
                added
            } else {
                0
            }
        })
        .sum()
}

/// Indices of `points` in reading order: rows of height `band` from north to
/// south, west to east within a row (the DB11 numbering convention).
#[must_use]
pub fn reading_order(points: &[Coord<f64>], band: f64) -> Vec<usize> {
    let top = points.iter().map(|p| p.y).fold(f64::NEG_INFINITY, f64::max);
    let mut idx: Vec<usize> = (0..points.len()).collect();
    let band = if band > 0.0 { band } else { 1.0 };
    idx.sort_by(|&a, &b| {
        let ra = ((top - points[a].y) / band).floor();
        let rb = ((top - points[b].y) / band).floor();
        ra.total_cmp(&rb).then(points[a].x.total_cmp(&points[b].x))
    });
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_order_is_rows_north_to_south_then_west_to_east() {
        let pts = [
            Coord { x: 1.0, y: 0.0 },
            Coord { x: 0.0, y: 0.0 },
            Coord { x: 5.0, y: 1.0 },
            Coord { x: 3.0, y: 1.0 },
        ];
        assert_eq!(reading_order(&pts, 0.5), vec![3, 2, 1, 0]);
    }

    use geo::Validation;
    use geo_types::polygon;

    #[test]
    fn bowtie_becomes_two_triangles() {
        // Hand-computed: the bow-tie (0,0)-(2,2)-(2,0)-(0,2) crosses at (1,1)
        // and encloses two triangles of area 1 each.
        let bowtie = polygon![(x: 0., y: 0.), (x: 2., y: 2.), (x: 2., y: 0.), (x: 0., y: 2.)];
        assert!(!bowtie.is_valid());
        let fixed = make_valid(&MultiPolygon::new(vec![bowtie]));
        assert!(fixed.is_valid());
        assert_eq!(fixed.0.len(), 2);
        assert!((fixed.unsigned_area() - 2.0).abs() < 1e-12);
    }

    #[test]
    fn spike_is_removed_without_changing_area() {
        let spiky = polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 1., y: 3.), (x: 1., y: 1.), (x: 0., y: 1.)];
        let fixed = make_valid(&MultiPolygon::new(vec![spiky]));
        assert!(fixed.is_valid());
        assert!((fixed.unsigned_area() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn exteriors_are_counter_clockwise() {
        let cw = polygon![(x: 0., y: 0.), (x: 0., y: 1.), (x: 1., y: 1.), (x: 1., y: 0.)];
        let fixed = make_valid(&MultiPolygon::new(vec![cw]));
        assert!(fixed.0[0].signed_area() > 0.0);
    }

    fn mp(p: Polygon<f64>) -> Option<MultiPolygon<f64>> {
        Some(MultiPolygon::new(vec![p]))
    }

    #[test]
    fn corners_a_grid_unit_apart_are_snapped_together() {
        // Two unit squares side by side whose shared top corner was rounded
        // differently: (1, 1) in the left one, (1 + 1e-7, 1) in the right.
        let e = 1e-7;
        let mut layer = vec![
            mp(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 1.)]),
            mp(polygon![(x: 1., y: 0.), (x: 2., y: 0.), (x: 2., y: 1.), (x: 1. + e, y: 1.)]),
        ];
        let right_before = layer[1].as_ref().unwrap().unsigned_area();
        assert_eq!(snap_vertices(&mut layer, 2e-7), 1);
        // The right square moved its corner to the smaller point (1, 1).
        let right = layer[1].as_ref().unwrap();
        assert!(right.0[0].exterior().0.contains(&Coord { x: 1.0, y: 1.0 }));
        // Hand-computed: it gains the sliver triangle of area e / 2.
        assert!((right.unsigned_area() - right_before - e / 2.0).abs() < 1e-15);
        assert_eq!(layer[0].as_ref().unwrap().unsigned_area(), 1.0);
    }

    #[test]
    fn a_cluster_that_would_break_a_polygon_is_left_alone_everywhere() {
        // An L-shaped polygon pinched nearly shut: its two vertices (1, 1)
        // and (1 + 1e-7, 1) would merge into a self-touching ring. A third
        // polygon holds (1 + 1e-7, 1) too; it must not move it alone.
        let e = 1e-7;
        let pinched = polygon![
            (x: 0., y: 0.), (x: 2., y: 0.), (x: 2., y: 2.), (x: 1. + e, y: 2.),
            (x: 1. + e, y: 1.), (x: 1.5, y: 1.5), (x: 1.5, y: 0.5), (x: 1., y: 1.),
            (x: 1., y: 2.), (x: 0., y: 2.)
        ];
        assert!(pinched.is_valid());
        let other = polygon![(x: 1. + e, y: 1.), (x: 1.5, y: 1.5), (x: 1.2, y: 1.8)];
        let mut layer = vec![mp(pinched.clone()), mp(other.clone())];
        snap_vertices(&mut layer, 2e-7);
        assert_eq!(layer[0], mp(pinched));
        assert_eq!(layer[1], mp(other));
    }

    #[test]
    fn geodesic_area_of_a_small_square_matches_hand_computation() {
        // 0.01° × 0.01° at the equator ≈ 1113.19 m × 1105.74 m.
        let sq = polygon![(x: 0., y: 0.), (x: 0.01, y: 0.), (x: 0.01, y: 0.01), (x: 0., y: 0.01)];
        let a = area_m2(&MultiPolygon::new(vec![sq]));
        assert!((a - 1113.19 * 1105.74).abs() / a < 1e-3, "{a}");
    }
}
