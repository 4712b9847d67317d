//! A Mapbox Vector Tile 2.1 encoder (and a small decoder for tests and
//! tools), with the geometry pipeline that makes the tile valid:
//!
//! 1. input in tile-local coordinates (`f64`, `0..extent`, `y` down);
//! 2. clip to the buffered square `[-buffer, extent + buffer]²`: points
//!    outside are dropped, lines are clipped segment by segment and split
//!    where they leave, polygons crossing the edge are intersected with the
//!    square exactly (`i_overlay`), so no spike or zero-width corridor runs
//!    along the buffer edge;
//! 3. Douglas–Peucker simplification with a tolerance in tile units (`0`
//!    turns it off);
//! 4. rounding to integers, dropping repeated points, rings with fewer than
//!    three distinct points and zero-area rings (a polygon whose exterior
//!    goes takes its holes along);
//! 5. winding as the spec wants it: exterior rings have a positive surveyor's
//!    area in tile coordinates (clockwise on screen), holes a negative one.
//!
//! The protobuf is written by hand (the schema is six messages); keys and
//! values are deduplicated per layer.
//!
//! Rounding to integers can still make a ring touch itself or a neighbour
//! (as in every MVT encoder); rings that collapse are dropped.

use std::collections::HashMap;

use i_overlay::core::fill_rule::FillRule;
use i_overlay::core::overlay::Overlay;
use i_overlay::core::overlay_rule::OverlayRule;
use i_overlay::i_float::int::point::IntPoint;

/// Tile extent in integer units (the spec's default).
pub const EXTENT: u32 = 4096;
/// Buffer around the tile in tile units, kept so that lines and polygon
/// edges render seamlessly across tile borders.
pub const BUFFER: u32 = 64;

/// MVT geometry type of a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeomKind {
    /// `POINT` (one or several points).
    Point = 1,
    /// `LINESTRING` (one or several lines).
    LineString = 2,
    /// `POLYGON` (one or several polygons).
    Polygon = 3,
}

/// Integer tile geometry, ready to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TileGeometry {
    /// One or more points.
    Points(Vec<[i32; 2]>),
    /// One or more lines of at least two distinct consecutive points.
    Lines(Vec<Vec<[i32; 2]>>),
    /// One or more polygons, each `[exterior, holes…]`; rings are open (the
    /// first point is not repeated), the exterior has a positive area in
    /// tile coordinates, holes a negative one.
    Polygons(Vec<Vec<Vec<[i32; 2]>>>),
}

impl TileGeometry {
    /// The MVT geometry type.
    #[must_use]
    pub fn kind(&self) -> GeomKind {
        match self {
            TileGeometry::Points(_) => GeomKind::Point,
            TileGeometry::Lines(_) => GeomKind::LineString,
            TileGeometry::Polygons(_) => GeomKind::Polygon,
        }
    }

    /// Appends the MVT command stream (spec §4.3) to `out`. Parts the spec
    /// does not allow (a line of fewer than two points, a ring of fewer than
    /// three, no points at all) are left out rather than encoded.
    pub fn encode_commands(&self, out: &mut Vec<u32>) {
        let mut cursor = [0i32; 2];
        let mut point = |out: &mut Vec<u32>, p: [i32; 2]| {
            out.push(zigzag(p[0].wrapping_sub(cursor[0])));
            out.push(zigzag(p[1].wrapping_sub(cursor[1])));
            cursor = p;
        };
        match self {
            TileGeometry::Points(pts) if pts.is_empty() => {}
            TileGeometry::Points(pts) => {
                out.push(command(MOVE_TO, pts.len() as u32));
                for &p in pts {
                    point(out, p);
                }
            }
            TileGeometry::Lines(lines) => {
                for line in lines.iter().filter(|l| l.len() >= 2) {
                    out.push(command(MOVE_TO, 1));
                    point(out, line[0]);
                    out.push(command(LINE_TO, (line.len() - 1) as u32));
                    for &p in &line[1..] {
                        point(out, p);
                    }
                }
            }
            TileGeometry::Polygons(polys) => {
                // A polygon whose exterior is unusable goes with its holes.
                let usable = polys
                    .iter()
                    .filter(|p| p.first().is_some_and(|r| r.len() >= 3));
                for ring in usable.flatten().filter(|r| r.len() >= 3) {
                    out.push(command(MOVE_TO, 1));
                    point(out, ring[0]);
                    out.push(command(LINE_TO, (ring.len() - 1) as u32));
                    for &p in &ring[1..] {
                        point(out, p);
                    }
                    out.push(command(CLOSE_PATH, 1));
                }
            }
        }
    }
}

const MOVE_TO: u32 = 1;
const LINE_TO: u32 = 2;
const CLOSE_PATH: u32 = 7;

const fn command(id: u32, count: u32) -> u32 {
    (id & 0x7) | (count << 3)
}

const fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Twice the surveyor's (shoelace) area of an open ring, exact in integers:
/// positive for an exterior ring in MVT tile coordinates.
#[must_use]
pub fn ring_area2(ring: &[[i32; 2]]) -> i64 {
    let n = ring.len();
    let mut a = 0i64;
    for i in 0..n {
        let p = ring[i];
        let q = ring[(i + 1) % n];
        a += i64::from(p[0]) * i64::from(q[1]) - i64::from(q[0]) * i64::from(p[1]);
    }
    a
}

/// Turns tile-local `f64` geometry into valid integer [`TileGeometry`]: clip
/// to the buffered square, simplify, quantise, fix winding (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeometryEncoder {
    /// Tile extent (units per tile side).
    pub extent: u32,
    /// Buffer around the tile, in tile units.
    pub buffer: u32,
    /// Douglas–Peucker tolerance in tile units; `0` keeps every vertex.
    pub tolerance: f64,
}

impl Default for GeometryEncoder {
    fn default() -> Self {
        GeometryEncoder {
            extent: EXTENT,
            buffer: BUFFER,
            tolerance: 0.0,
        }
    }
}

impl GeometryEncoder {
    /// The buffered square features are clipped to.
    pub(crate) fn clip_box(&self) -> Rect {
        let b = f64::from(self.buffer);
        Rect {
            min: -b,
            max: f64::from(self.extent) + b,
        }
    }

    /// Points rounded, then kept when inside the buffered square (edges
    /// included): rounding first, as PostGIS `ST_AsMVTGeom` does, so a point
    /// 0.4 units beyond the edge lands on it and stays.
    #[must_use]
    pub fn points(&self, pts: &[[f64; 2]]) -> Option<TileGeometry> {
        let r = self.clip_box();
        let (lo, hi) = (r.min as i64, r.max as i64);
        let out: Vec<[i32; 2]> = pts
            .iter()
            .filter(|p| p[0].is_finite() && p[1].is_finite())
            .map(|p| [p[0].round() as i64, p[1].round() as i64])
            .filter(|q| q.iter().all(|c| (lo..=hi).contains(c)))
            .map(|q| [q[0] as i32, q[1] as i32])
            .collect();
        (!out.is_empty()).then_some(TileGeometry::Points(out))
    }

    /// Lines clipped to the buffered square (split where they leave it),
    /// simplified and rounded; parts shorter than one unit disappear.
    #[must_use]
    pub fn lines(&self, lines: &[Vec<[f64; 2]>]) -> Option<TileGeometry> {
        let r = self.clip_box();
        let mut out = Vec::new();
        let mut parts = Vec::new();
        for line in lines {
            parts.clear();
            r.clip_line(line, &mut parts);
            for part in &parts {
                let part = simplify(part, self.tolerance);
                let q = quantise_path(&part);
                if q.len() >= 2 {
                    out.push(q);
                }
            }
        }
        (!out.is_empty()).then_some(TileGeometry::Lines(out))
    }

    /// Polygons (each `[exterior, holes…]`, rings open or closed, any
    /// orientation) clipped, simplified, rounded and wound per the spec.
    ///
    /// A polygon wholly inside the buffered square is only simplified and
    /// rounded. One whose exterior enters the square once (every vertex
    /// strictly inside or outside it, two crossings, no outside edge
    /// meeting it, holes wholly inside or beside it) is clipped by
    /// Sutherland–Hodgman, exact in that case. Any other that crosses its edge is intersected
    /// with it exactly by `i_overlay` (after a Sutherland–Hodgman pre-clip to
    /// a square three tiles wide, which keeps the integers small), so the
    /// result has no zero-width spikes or corridors along the buffer edge and
    /// may become several polygons.
    #[must_use]
    pub fn polygons(&self, polys: &[Vec<Vec<[f64; 2]>>]) -> Option<TileGeometry> {
        let r = self.clip_box();
        let mut out = Vec::new();
        for poly in polys {
            let Some(ext) = poly.first() else { continue };
            let b = bbox(ext);
            if b[2] < r.min || b[3] < r.min || b[0] > r.max || b[1] > r.max {
                continue;
            }
            if b[0] >= r.min && b[1] >= r.min && b[2] <= r.max && b[3] <= r.max {
                self.push_polygon(poly, &mut out);
            } else if let Some(piece) = self.one_piece_clip(poly) {
                self.push_polygon(&piece, &mut out);
            } else {
                for piece in self.overlay_clip(poly) {
                    self.push_polygon(&piece, &mut out);
                }
            }
        }
        (!out.is_empty()).then_some(TileGeometry::Polygons(out))
    }

    /// Simplifies, rounds and orients one polygon that needs no clipping.
    fn push_polygon(&self, poly: &[Vec<[f64; 2]>], out: &mut Vec<Vec<Vec<[i32; 2]>>>) {
        let mut rings: Vec<Vec<[i32; 2]>> = Vec::with_capacity(poly.len());
        for (i, ring) in poly.iter().enumerate() {
            let Some(mut q) = self.ring(ring) else {
                if i == 0 {
                    return;
                }
                continue;
            };
            // Exterior positive, holes negative.
            if (i == 0) == (ring_area2(&q) < 0) {
                q.reverse();
            }
            rings.push(q);
        }
        if !rings.is_empty() {
            out.push(rings);
        }
    }

    /// The intersection of a polygon with the buffered square when it is
    /// one piece that Sutherland–Hodgman clips exactly, else `None`: every
    /// exterior vertex strictly inside or strictly outside the square, the
    /// ring passing from one to the other exactly twice, no edge between
    /// two outside vertices meeting the square, and every hole wholly
    /// inside (kept) or wholly beside it (dropped). Then the part of the
    /// ring inside is one arc, the intersection is that arc closed along
    /// the square's edge, and no zero-width corridor can arise. (It made
    /// cold z14 grid tiles about 30 % faster; see BENCHMARKS.md.)
    fn one_piece_clip(&self, poly: &[Vec<[f64; 2]>]) -> Option<Vec<Vec<[f64; 2]>>> {
        let r = self.clip_box();
        let inside = |p: &[f64; 2]| p[0] > r.min && p[0] < r.max && p[1] > r.min && p[1] < r.max;
        let outside = |p: &[f64; 2]| p[0] < r.min || p[0] > r.max || p[1] < r.min || p[1] > r.max;
        let ext = open(poly.first()?);
        let n = ext.len();
        if n < 3 {
            return None;
        }
        let mut changes = 0;
        for i in 0..n {
            let (a, b) = (ext[i], ext[(i + 1) % n]);
            match (inside(&a), inside(&b)) {
                (true, true) => {}
                (true, false) | (false, true) => changes += 1,
                (false, false) => {
                    if !outside(&a) || r.clip_segment(a, b).is_some() {
                        return None;
                    }
                }
            }
            if !inside(&a) && !outside(&a) {
                return None;
            }
        }
        if changes != 2 {
            return None;
        }
        let mut out = vec![r.clip_ring(ext)?];
        for hole in &poly[1..] {
            let h = bbox(hole);
            if h[0] > r.min && h[1] > r.min && h[2] < r.max && h[3] < r.max {
                out.push(hole.clone());
            } else if !(h[2] < r.min || h[3] < r.min || h[0] > r.max || h[1] > r.max) {
                return None;
            }
        }
        Some(out)
    }

    /// The exact intersection of a polygon with the buffered square, as
    /// polygons `[exterior, holes…]` in tile units.
    fn overlay_clip(&self, poly: &[Vec<[f64; 2]>]) -> Vec<Vec<Vec<[f64; 2]>>> {
        let r = self.clip_box();
        let e = f64::from(self.extent);
        let wide = Rect {
            min: -e,
            max: 2.0 * e,
        };
        let to_int = |p: &[f64; 2]| {
            IntPoint::new(
                (p[0] * OVERLAY_SCALE).round() as i32,
                (p[1] * OVERLAY_SCALE).round() as i32,
            )
        };
        let mut subject: Vec<Vec<IntPoint>> = Vec::with_capacity(poly.len());
        for ring in poly {
            let Some(c) = wide.clip_ring(open(ring)) else {
                continue;
            };
            let mut pts: Vec<IntPoint> = c.iter().map(to_int).collect();
            pts.dedup();
            if pts.len() >= 3 {
                subject.push(pts);
            }
        }
        if subject.is_empty() {
            return Vec::new();
        }
        let (lo, hi) = (to_int(&[r.min, r.min]), to_int(&[r.max, r.max]));
        let square = vec![vec![
            IntPoint::new(lo.x, lo.y),
            IntPoint::new(hi.x, lo.y),
            IntPoint::new(hi.x, hi.y),
            IntPoint::new(lo.x, hi.y),
        ]];
        let shapes = Overlay::with_contours(&subject, &square)
            .overlay(OverlayRule::Intersect, FillRule::EvenOdd);
        shapes
            .into_iter()
            .map(|shape| {
                shape
                    .into_iter()
                    .map(|c| {
                        c.into_iter()
                            .map(|p| {
                                [
                                    f64::from(p.x) / OVERLAY_SCALE,
                                    f64::from(p.y) / OVERLAY_SCALE,
                                ]
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    /// One ring (already inside the buffered square) simplified and
    /// rounded; `None` when it has no area left.
    fn ring(&self, ring: &[[f64; 2]]) -> Option<Vec<[i32; 2]>> {
        let ring = open(ring);
        if ring.len() < 3 {
            return None;
        }
        let mut closed = ring.to_vec();
        // Close it for the simplifier, which keeps both ends.
        closed.push(closed[0]);
        let simple = simplify(&closed, self.tolerance);
        let mut q = quantise_path(&simple);
        while q.len() > 1 && q.first() == q.last() {
            q.pop();
        }
        if q.len() < 3 || ring_area2(&q) == 0 {
            return None;
        }
        Some(q)
    }
}

/// Sub-units per tile unit for the exact polygon clip.
const OVERLAY_SCALE: f64 = 256.0;

/// The ring without its closing point(s).
fn open(mut ring: &[[f64; 2]]) -> &[[f64; 2]] {
    while ring.len() > 1 && ring.first() == ring.last() {
        ring = &ring[..ring.len() - 1];
    }
    ring
}

fn bbox(ring: &[[f64; 2]]) -> [f64; 4] {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for p in ring {
        b[0] = b[0].min(p[0]);
        b[1] = b[1].min(p[1]);
        b[2] = b[2].max(p[0]);
        b[3] = b[3].max(p[1]);
    }
    b
}

fn quantise(p: [f64; 2]) -> [i32; 2] {
    [p[0].round() as i32, p[1].round() as i32]
}

/// Rounds a path, dropping points equal to their predecessor.
fn quantise_path(path: &[[f64; 2]]) -> Vec<[i32; 2]> {
    let mut out: Vec<[i32; 2]> = Vec::with_capacity(path.len());
    for &p in path {
        let q = quantise(p);
        if out.last() != Some(&q) {
            out.push(q);
        }
    }
    out
}

/// The clip square `[min, max]²`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rect {
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Rect {
    /// Sutherland–Hodgman against the four edges; `None` when nothing is
    /// left. A ring wholly inside is returned unchanged.
    fn clip_ring(&self, ring: &[[f64; 2]]) -> Option<Vec<[f64; 2]>> {
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in ring {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        if hi[0] < self.min || hi[1] < self.min || lo[0] > self.max || lo[1] > self.max {
            return None;
        }
        if lo[0] >= self.min && lo[1] >= self.min && hi[0] <= self.max && hi[1] <= self.max {
            return Some(ring.to_vec());
        }
        let mut a = ring.to_vec();
        let mut b = Vec::with_capacity(ring.len() + 4);
        for (axis, v, keep_above) in [
            (0, self.min, true),
            (0, self.max, false),
            (1, self.min, true),
            (1, self.max, false),
        ] {
            b.clear();
            clip_edge(&a, &mut b, axis, v, keep_above);
            std::mem::swap(&mut a, &mut b);
            if a.is_empty() {
                return None;
            }
        }
        Some(a)
    }

    /// Clips a polyline, pushing each inside run as its own part.
    fn clip_line(&self, line: &[[f64; 2]], parts: &mut Vec<Vec<[f64; 2]>>) {
        let mut cur: Vec<[f64; 2]> = Vec::new();
        for w in line.windows(2) {
            match self.clip_segment(w[0], w[1]) {
                None => {
                    if cur.len() >= 2 {
                        parts.push(std::mem::take(&mut cur));
                    }
                    cur.clear();
                }
                Some((p, q, leaves)) => {
                    if cur.last() != Some(&p) {
                        if cur.len() >= 2 {
                            parts.push(std::mem::take(&mut cur));
                        }
                        cur.clear();
                        cur.push(p);
                    }
                    cur.push(q);
                    if leaves {
                        parts.push(std::mem::take(&mut cur));
                    }
                }
            }
        }
        if cur.len() >= 2 {
            parts.push(cur);
        }
    }

    /// Liang–Barsky: the part of segment `a → b` inside, and whether it was
    /// cut short at the end.
    pub(crate) fn clip_segment(
        &self,
        a: [f64; 2],
        b: [f64; 2],
    ) -> Option<([f64; 2], [f64; 2], bool)> {
        let d = [b[0] - a[0], b[1] - a[1]];
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for k in 0..2 {
            for (p, q) in [(-d[k], a[k] - self.min), (d[k], self.max - a[k])] {
                if p == 0.0 {
                    if q < 0.0 {
                        return None;
                    }
                } else {
                    let t = q / p;
                    if p < 0.0 {
                        t0 = t0.max(t);
                    } else {
                        t1 = t1.min(t);
                    }
                }
            }
        }
        if t0 > t1 {
            return None;
        }
        let at = |t: f64| {
            if t == 0.0 {
                a
            } else if t == 1.0 {
                b
            } else {
                [a[0] + t * d[0], a[1] + t * d[1]]
            }
        };
        Some((at(t0), at(t1), t1 < 1.0))
    }
}

/// One Sutherland–Hodgman pass: keeps the side of `p[axis] = v` that is
/// above (`keep_above`) or below it.
fn clip_edge(input: &[[f64; 2]], out: &mut Vec<[f64; 2]>, axis: usize, v: f64, keep_above: bool) {
    let inside = |p: &[f64; 2]| {
        if keep_above {
            p[axis] >= v
        } else {
            p[axis] <= v
        }
    };
    let cut = |a: [f64; 2], b: [f64; 2]| {
        let t = (v - a[axis]) / (b[axis] - a[axis]);
        let mut p = [0.0; 2];
        p[axis] = v;
        p[1 - axis] = a[1 - axis] + t * (b[1 - axis] - a[1 - axis]);
        p
    };
    let n = input.len();
    for i in 0..n {
        let cur = input[i];
        let prev = input[(i + n - 1) % n];
        match (inside(&prev), inside(&cur)) {
            (true, true) => out.push(cur),
            (true, false) => out.push(cut(prev, cur)),
            (false, true) => {
                out.push(cut(prev, cur));
                out.push(cur);
            }
            (false, false) => {}
        }
    }
}

/// Douglas–Peucker with tolerance `tol` (same units as the points); keeps
/// both ends. `tol <= 0` returns the path as is.
fn simplify(path: &[[f64; 2]], tol: f64) -> Vec<[f64; 2]> {
    if tol <= 0.0 || path.len() <= 2 {
        return path.to_vec();
    }
    let tol2 = tol * tol;
    let mut keep = vec![false; path.len()];
    keep[0] = true;
    keep[path.len() - 1] = true;
    let mut stack = vec![(0usize, path.len() - 1)];
    while let Some((first, last)) = stack.pop() {
        let mut max = 0.0;
        let mut index = first;
        for i in first + 1..last {
            let d = seg_dist2(path[i], path[first], path[last]);
            if d > max {
                max = d;
                index = i;
            }
        }
        if max > tol2 {
            keep[index] = true;
            if index - first > 1 {
                stack.push((first, index));
            }
            if last - index > 1 {
                stack.push((index, last));
            }
        }
    }
    path.iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(*p))
        .collect()
}

/// Squared distance from `p` to segment `a b`.
fn seg_dist2(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let (mut x, mut y) = (a[0], a[1]);
    let (dx, dy) = (b[0] - x, b[1] - y);
    if dx != 0.0 || dy != 0.0 {
        let t = ((p[0] - x) * dx + (p[1] - y) * dy) / (dx * dx + dy * dy);
        if t > 1.0 {
            x = b[0];
            y = b[1];
        } else if t > 0.0 {
            x += dx * t;
            y += dy * t;
        }
    }
    let (ex, ey) = (p[0] - x, p[1] - y);
    ex * ex + ey * ey
}

// ---------------------------------------------------------------------------
// Protobuf

/// An attribute value (MVT `Value` message).
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// `string_value`.
    String(String),
    /// `double_value`.
    Double(f64),
    /// `uint_value` when non-negative, `sint_value` otherwise.
    Int(i64),
    /// `bool_value`.
    Bool(bool),
}

/// A hashable image of a [`PropValue`] for the values table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ValueKey {
    S(String),
    D(u64),
    I(i64),
    B(bool),
}

impl From<&PropValue> for ValueKey {
    fn from(v: &PropValue) -> ValueKey {
        match v {
            PropValue::String(s) => ValueKey::S(s.clone()),
            PropValue::Double(d) => ValueKey::D(d.to_bits()),
            PropValue::Int(i) => ValueKey::I(*i),
            PropValue::Bool(b) => ValueKey::B(*b),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

const fn varint_len(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(7)
    }
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_packed(out: &mut Vec<u8>, field: u32, vals: &[u32]) {
    put_key(out, field, 2);
    let len: usize = vals.iter().map(|&v| varint_len(v.into())).sum();
    put_varint(out, len as u64);
    for &v in vals {
        put_varint(out, v.into());
    }
}

/// Builds one MVT layer: features with deduplicated keys and values.
#[derive(Debug, Clone)]
pub struct LayerBuilder {
    name: String,
    extent: u32,
    keys: Vec<String>,
    key_index: HashMap<String, u32>,
    values: Vec<PropValue>,
    value_index: HashMap<ValueKey, u32>,
    features: Vec<u8>,
    count: usize,
    tags: Vec<u32>,
    commands: Vec<u32>,
    scratch: Vec<u8>,
}

impl LayerBuilder {
    /// An empty layer called `name` with the given extent.
    #[must_use]
    pub fn new(name: &str, extent: u32) -> LayerBuilder {
        LayerBuilder {
            name: name.to_owned(),
            extent,
            keys: Vec::new(),
            key_index: HashMap::new(),
            values: Vec::new(),
            value_index: HashMap::new(),
            features: Vec::new(),
            count: 0,
            tags: Vec::new(),
            commands: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Number of features added.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no feature was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn key(&mut self, k: &str) -> u32 {
        if let Some(&i) = self.key_index.get(k) {
            return i;
        }
        let i = self.keys.len() as u32;
        self.keys.push(k.to_owned());
        self.key_index.insert(k.to_owned(), i);
        i
    }

    fn value(&mut self, v: &PropValue) -> u32 {
        let key = ValueKey::from(v);
        if let Some(&i) = self.value_index.get(&key) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(v.clone());
        self.value_index.insert(key, i);
        i
    }

    /// Adds a feature with an optional id and its properties (a property
    /// given twice is written once, the first value wins).
    pub fn add<'a>(
        &mut self,
        id: Option<u64>,
        props: impl IntoIterator<Item = (&'a str, &'a PropValue)>,
        geometry: &TileGeometry,
    ) {
        let mut tags = std::mem::take(&mut self.tags);
        tags.clear();
        for (k, v) in props {
            let ki = self.key(k);
            if tags.chunks(2).any(|c| c[0] == ki) {
                continue;
            }
            let vi = self.value(v);
            tags.push(ki);
            tags.push(vi);
        }
        let mut commands = std::mem::take(&mut self.commands);
        commands.clear();
        geometry.encode_commands(&mut commands);
        let f = &mut self.scratch;
        f.clear();
        if let Some(id) = id {
            put_key(f, 1, 0);
            put_varint(f, id);
        }
        if !tags.is_empty() {
            put_packed(f, 2, &tags);
        }
        put_key(f, 3, 0);
        put_varint(f, geometry.kind() as u64);
        put_packed(f, 4, &commands);
        put_bytes(&mut self.features, 2, f);
        self.count += 1;
        self.tags = tags;
        self.commands = commands;
    }

    /// Appends this layer to an MVT `Tile` message (`layers`, field 3).
    /// Nothing is written for an empty layer.
    pub fn write_to(&self, tile: &mut Vec<u8>) {
        if self.is_empty() {
            return;
        }
        let mut l = Vec::with_capacity(self.features.len() + 64);
        put_key(&mut l, 15, 0);
        put_varint(&mut l, 2);
        put_bytes(&mut l, 1, self.name.as_bytes());
        l.extend_from_slice(&self.features);
        for k in &self.keys {
            put_bytes(&mut l, 3, k.as_bytes());
        }
        let mut v = Vec::new();
        for value in &self.values {
            v.clear();
            match value {
                PropValue::String(s) => put_bytes(&mut v, 1, s.as_bytes()),
                PropValue::Double(d) => {
                    put_key(&mut v, 3, 1);
                    v.extend_from_slice(&d.to_le_bytes());
                }
                PropValue::Int(i) if *i >= 0 => {
                    put_key(&mut v, 5, 0);
                    put_varint(&mut v, *i as u64);
                }
                PropValue::Int(i) => {
                    put_key(&mut v, 6, 0);
                    put_varint(&mut v, ((*i << 1) ^ (*i >> 63)) as u64);
                }
                PropValue::Bool(b) => {
                    put_key(&mut v, 7, 0);
                    put_varint(&mut v, u64::from(*b));
                }
            }
            put_bytes(&mut l, 4, &v);
        }
        put_key(&mut l, 5, 0);
        put_varint(&mut l, u64::from(self.extent));
        put_bytes(tile, 3, &l);
    }
}

// ---------------------------------------------------------------------------
// Decoder

/// A decoded feature (see [`decode`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFeature {
    /// Feature id, if any.
    pub id: Option<u64>,
    /// Geometry type.
    pub kind: Option<GeomKind>,
    /// Properties in tag order.
    pub properties: Vec<(String, PropValue)>,
    /// Paths in tile coordinates: one per point for points, one per line or
    /// ring otherwise (rings without the closing point).
    pub paths: Vec<Vec<[i32; 2]>>,
}

/// A decoded layer (see [`decode`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedLayer {
    /// Layer name.
    pub name: String,
    /// Extent.
    pub extent: u32,
    /// Features in tile order.
    pub features: Vec<DecodedFeature>,
}

/// A tile that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed vector tile at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Byte offset in the message being read.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            reason,
        }
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()? as usize;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(self.err("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn fixed(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = (self.pos + n <= self.buf.len())
            .then_some(self.pos + n)
            .ok_or(self.err("truncated fixed field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// Next `(field, wire)` or `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u32)>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some(((k >> 3) as u32, (k & 7) as u32)))
    }
    fn skip(&mut self, wire: u32) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.fixed(8).map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => self.fixed(4).map(|_| ()),
            _ => Err(self.err("unsupported wire type")),
        }
    }
    fn packed(bytes: &'a [u8]) -> Result<Vec<u32>, DecodeError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let mut out = Vec::new();
        while r.pos < bytes.len() {
            out.push(r.varint()? as u32);
        }
        Ok(out)
    }
}

/// Decodes an uncompressed MVT tile. Meant for tests and tools (the server
/// never decodes); rejects what it cannot read rather than panicking.
pub fn decode(tile: &[u8]) -> Result<Vec<DecodedLayer>, DecodeError> {
    let mut r = Reader { buf: tile, pos: 0 };
    let mut layers = Vec::new();
    while let Some((field, wire)) = r.key()? {
        if field == 3 && wire == 2 {
            layers.push(decode_layer(r.bytes()?)?);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(layers)
}

fn decode_layer(buf: &[u8]) -> Result<DecodedLayer, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let (mut name, mut extent) = (String::new(), 4096);
    let (mut keys, mut values, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, 2) => name = String::from_utf8_lossy(r.bytes()?).into_owned(),
            (2, 2) => raw.push(r.bytes()?),
            (3, 2) => keys.push(String::from_utf8_lossy(r.bytes()?).into_owned()),
            (4, 2) => values.push(decode_value(r.bytes()?)?),
            (5, 0) => extent = r.varint()? as u32,
            _ => r.skip(wire)?,
        }
    }
    let mut features = Vec::with_capacity(raw.len());
    for f in raw {
        features.push(decode_feature(f, &keys, &values)?);
    }
    Ok(DecodedLayer {
        name,
        extent,
        features,
    })
}

fn decode_value(buf: &[u8]) -> Result<PropValue, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let mut v = None;
    while let Some((field, wire)) = r.key()? {
        v = Some(match (field, wire) {
            (1, 2) => PropValue::String(String::from_utf8_lossy(r.bytes()?).into_owned()),
            (2, 5) => {
                let b = r.fixed(4)?;
                PropValue::Double(f32::from_le_bytes([b[0], b[1], b[2], b[3]]).into())
            }
            (3, 1) => {
                let b = r.fixed(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                PropValue::Double(f64::from_le_bytes(a))
            }
            (4, 0) | (5, 0) => PropValue::Int(r.varint()? as i64),
            (6, 0) => {
                let z = r.varint()?;
                PropValue::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            (7, 0) => PropValue::Bool(r.varint()? != 0),
            _ => {
                r.skip(wire)?;
                continue;
            }
        });
    }
    v.ok_or(r.err("empty value"))
}

fn decode_feature(
    buf: &[u8],
    keys: &[String],
    values: &[PropValue],
) -> Result<DecodedFeature, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let mut f = DecodedFeature {
        id: None,
        kind: None,
        properties: Vec::new(),
        paths: Vec::new(),
    };
    let mut commands = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, 0) => f.id = Some(r.varint()?),
            (2, 2) => {
                let tags = Reader::packed(r.bytes()?)?;
                for c in tags.chunks(2) {
                    let (Some(k), Some(v)) = (
                        c.first().and_then(|&k| keys.get(k as usize)),
                        c.get(1).and_then(|&v| values.get(v as usize)),
                    ) else {
                        return Err(r.err("tag index out of range"));
                    };
                    f.properties.push((k.clone(), v.clone()));
                }
            }
            (3, 0) => {
                f.kind = match r.varint()? {
                    1 => Some(GeomKind::Point),
                    2 => Some(GeomKind::LineString),
                    3 => Some(GeomKind::Polygon),
                    _ => None,
                }
            }
            (4, 2) => commands = Reader::packed(r.bytes()?)?,
            _ => r.skip(wire)?,
        }
    }
    let err = DecodeError {
        offset: 0,
        reason: "bad geometry command stream",
    };
    let (mut i, mut cur) = (0usize, [0i32; 2]);
    let unzig = |v: u32| ((v >> 1) as i32) ^ -((v & 1) as i32);
    while i < commands.len() {
        let (id, count) = (commands[i] & 7, commands[i] >> 3);
        i += 1;
        match id {
            MOVE_TO | LINE_TO => {
                for _ in 0..count {
                    let (Some(&dx), Some(&dy)) = (commands.get(i), commands.get(i + 1)) else {
                        return Err(err);
                    };
                    i += 2;
                    cur = [
                        cur[0].wrapping_add(unzig(dx)),
                        cur[1].wrapping_add(unzig(dy)),
                    ];
                    if id == MOVE_TO {
                        f.paths.push(vec![cur]);
                    } else {
                        f.paths.last_mut().ok_or(err)?.push(cur);
                    }
                }
            }
            CLOSE_PATH => {}
            _ => return Err(err),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc() -> GeometryEncoder {
        GeometryEncoder::default()
    }

    fn cmds(g: &TileGeometry) -> Vec<u32> {
        let mut v = Vec::new();
        g.encode_commands(&mut v);
        v
    }

    /// The three worked examples of the MVT 2.1 specification, §4.3.5.
    #[test]
    fn spec_examples() {
        assert_eq!(cmds(&TileGeometry::Points(vec![[25, 17]])), [9, 50, 34]);
        assert_eq!(
            cmds(&TileGeometry::Points(vec![[5, 7], [3, 2]])),
            [17, 10, 14, 3, 9]
        );
        assert_eq!(
            cmds(&TileGeometry::Lines(vec![vec![[2, 2], [2, 10], [10, 10]]])),
            [9, 4, 4, 18, 0, 16, 16, 0]
        );
        assert_eq!(
            cmds(&TileGeometry::Lines(vec![
                vec![[2, 2], [2, 10], [10, 10]],
                vec![[1, 1], [3, 5]]
            ])),
            [9, 4, 4, 18, 0, 16, 16, 0, 9, 17, 17, 10, 4, 8]
        );
        assert_eq!(
            cmds(&TileGeometry::Polygons(vec![vec![vec![
                [3, 6],
                [8, 12],
                [20, 34]
            ]]])),
            [9, 6, 12, 18, 10, 12, 24, 44, 15]
        );
    }

    #[test]
    fn malformed_geometry_is_not_encoded() {
        assert!(cmds(&TileGeometry::Points(vec![])).is_empty());
        assert!(cmds(&TileGeometry::Lines(vec![vec![], vec![[1, 1]]])).is_empty());
        assert!(
            cmds(&TileGeometry::Polygons(vec![vec![
                vec![[0, 0], [1, 1]],
                vec![[0, 0], [5, 0], [5, 5]]
            ]]))
            .is_empty()
        );
    }

    #[test]
    fn area_sign_follows_the_spec() {
        // The spec's example exterior ring (3,6) (8,12) (20,34): shoelace
        // 3*12-8*6 + 8*34-20*12 + 20*6-3*34 = -12 + 32 + 18 = 38 > 0.
        assert_eq!(ring_area2(&[[3, 6], [8, 12], [20, 34]]), 38);
        // Square (0,0) (10,0) (10,10) (0,10): clockwise on screen (y down), +200.
        assert_eq!(ring_area2(&[[0, 0], [10, 0], [10, 10], [0, 10]]), 200);
    }

    #[test]
    fn winding_is_fixed_for_exteriors_and_holes() {
        // Exterior given counter-clockwise on screen, hole clockwise: both flipped.
        let ext = vec![
            [0.0, 0.0],
            [0.0, 100.0],
            [100.0, 100.0],
            [100.0, 0.0],
            [0.0, 0.0],
        ];
        let hole = vec![[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]];
        let g = enc().polygons(&[vec![ext, hole]]).unwrap();
        let TileGeometry::Polygons(p) = g else {
            panic!()
        };
        assert_eq!(p[0].len(), 2);
        assert_eq!(ring_area2(&p[0][0]), 2 * 100 * 100);
        assert_eq!(ring_area2(&p[0][1]), -2 * 10 * 10);
        assert_eq!(p[0][0].len(), 4, "closing point dropped");
    }

    /// Twice the signed area of rings in floats (holes subtracted by their
    /// orientation being made opposite).
    fn area_f(poly: &[Vec<[f64; 2]>]) -> f64 {
        poly.iter()
            .enumerate()
            .map(|(i, r)| {
                let a: f64 = (0..r.len())
                    .map(|k| {
                        let (p, q) = (r[k], r[(k + 1) % r.len()]);
                        p[0] * q[1] - q[0] * p[1]
                    })
                    .sum::<f64>()
                    .abs();
                if i == 0 { a } else { -a }
            })
            .sum()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// Where the one-piece clip applies, it gives the overlay's area (to
        /// the overlay's 1/256 grid) and one piece, as the overlay does.
        #[test]
        fn one_piece_clip_agrees_with_the_overlay(
            cx in -300.0f64..4400.0,
            cy in -300.0f64..4400.0,
            radii in proptest::collection::vec(20.0f64..900.0, 3..40),
            hole in proptest::option::of((0.05f64..0.3, -0.2f64..0.2)),
        ) {
            let n = radii.len();
            let ring: Vec<[f64; 2]> = radii
                .iter()
                .enumerate()
                .map(|(k, r)| {
                    let t = std::f64::consts::TAU * k as f64 / n as f64;
                    [cx + r * t.cos(), cy + r * t.sin()]
                })
                .collect();
            let mut poly = vec![ring];
            if let Some((f, d)) = hole {
                // A small square hole near the centre (inside the star).
                let m = radii.iter().copied().fold(f64::INFINITY, f64::min) * f;
                let (hx, hy) = (cx + d * m, cy + d * m);
                poly.push(vec![[hx - m, hy - m], [hx - m, hy + m], [hx + m, hy + m], [hx + m, hy - m]]);
            }
            let e = enc();
            if let Some(piece) = e.one_piece_clip(&poly) {
                let over = e.overlay_clip(&poly);
                proptest::prop_assert_eq!(over.len(), 1, "the overlay made {} pieces", over.len());
                let (a, b) = (area_f(&piece), area_f(&over[0]));
                let perimeter: f64 = 4.0 * 4224.0 + radii.iter().sum::<f64>() * 7.0;
                proptest::prop_assert!((a - b).abs() <= 2.0 * perimeter / 256.0 + 1e-6, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn polygon_clipped_to_buffered_square() {
        // A square from -1000 to 1000 is cut to [-64, 1000]².
        let sq = vec![
            [-1000.0, -1000.0],
            [1000.0, -1000.0],
            [1000.0, 1000.0],
            [-1000.0, 1000.0],
        ];
        let TileGeometry::Polygons(p) = enc().polygons(&[vec![sq]]).unwrap() else {
            panic!()
        };
        let ring = &p[0][0];
        assert_eq!(ring_area2(ring), 2 * 1064 * 1064);
        for q in ring {
            assert!(q.iter().all(|&c| c == -64 || c == 1000), "{q:?}");
        }
        // A triangle wholly outside disappears.
        let out = vec![[5000.0, 5000.0], [6000.0, 5000.0], [5000.0, 6000.0]];
        assert!(enc().polygons(&[vec![out]]).is_none());
        // A triangle cut by the right buffer edge x = 4160: the part left of it.
        // Triangle (4000,0) (4320,0) (4000,320): x + y <= 4320, x <= 4160 →
        // a quadrilateral (4000,0) (4160,0) (4160,160) (4000,320), area
        // = 320*320/2 - 160*160/2 = 38400.
        let t = vec![[4000.0, 0.0], [4320.0, 0.0], [4000.0, 320.0]];
        let TileGeometry::Polygons(p) = enc().polygons(&[vec![t]]).unwrap() else {
            panic!()
        };
        assert_eq!(ring_area2(&p[0][0]), 2 * 38400);
        assert_eq!(p[0][0].len(), 4);
    }

    #[test]
    fn a_polygon_cut_in_two_by_the_buffer_edge_becomes_two() {
        // An arch (∩) whose bar lies above the buffered square: its two legs
        // reach into the tile. Sutherland–Hodgman alone would join them by a
        // zero-width corridor along y = -64; the exact clip gives two
        // rectangles: x 0–100 and 300–400, y -64–500.
        let arch = vec![
            [0.0, -300.0],
            [400.0, -300.0],
            [400.0, 500.0],
            [300.0, 500.0],
            [300.0, -200.0],
            [100.0, -200.0],
            [100.0, 500.0],
            [0.0, 500.0],
        ];
        let TileGeometry::Polygons(p) = enc().polygons(&[vec![arch]]).unwrap() else {
            panic!()
        };
        assert_eq!(p.len(), 2, "{p:?}");
        for poly in &p {
            assert_eq!(poly.len(), 1);
            assert_eq!(poly[0].len(), 4, "{poly:?}");
            assert_eq!(ring_area2(&poly[0]), 2 * 100 * 564);
        }
    }

    #[test]
    fn tiny_and_degenerate_rings_are_dropped() {
        // Collapses to one integer point.
        let tiny = vec![[10.1, 10.1], [10.2, 10.1], [10.2, 10.2]];
        assert!(enc().polygons(&[vec![tiny]]).is_none());
        // Zero area after rounding: collinear.
        let flat = vec![[0.0, 0.0], [10.0, 0.2], [20.0, 0.0]];
        assert!(enc().polygons(&[vec![flat]]).is_none());
        // A hole that collapses goes, the exterior stays.
        let ext = vec![[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]];
        let hole = vec![[50.0, 50.0], [50.2, 50.0], [50.2, 50.2]];
        let TileGeometry::Polygons(p) = enc().polygons(&[vec![ext.clone(), hole]]).unwrap() else {
            panic!()
        };
        assert_eq!(p[0].len(), 1);
        // An exterior that collapses takes its hole along.
        let small = vec![[0.0, 0.0], [0.3, 0.0], [0.3, 0.3]];
        assert!(enc().polygons(&[vec![small, ext]]).is_none());
    }

    #[test]
    fn lines_are_clipped_and_split() {
        // Enters at x = -64, leaves at x = 4160, comes back, leaves again.
        let l = vec![
            [-200.0, 10.0],
            [5000.0, 10.0],
            [5000.0, 20.0],
            [100.0, 20.0],
            [100.0, -500.0],
        ];
        let TileGeometry::Lines(parts) = enc().lines(&[l]).unwrap() else {
            panic!()
        };
        assert_eq!(
            parts,
            vec![
                vec![[-64, 10], [4160, 10]],
                vec![[4160, 20], [100, 20], [100, -64]],
            ]
        );
        // Wholly outside.
        assert!(
            enc()
                .lines(&[vec![[-500.0, -500.0], [-100.0, -100.0]]])
                .is_none()
        );
        // Repeated points are dropped; a sub-unit line vanishes.
        let TileGeometry::Lines(parts) = enc()
            .lines(&[vec![[0.0, 0.0], [0.2, 0.0], [10.0, 0.0], [10.0, 0.0]]])
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(parts, vec![vec![[0, 0], [10, 0]]]);
        assert!(enc().lines(&[vec![[0.0, 0.0], [0.3, 0.1]]]).is_none());
    }

    #[test]
    fn points_outside_the_buffer_are_dropped() {
        // Rounded first (as PostGIS does): -64.4 lands on the edge and stays.
        let g = enc().points(&[
            [-64.0, 0.0],
            [-64.6, 0.0],
            [4160.0, 4160.0],
            [100.4, 200.6],
            [3062.8, -64.4],
            [f64::NAN, 1.0],
        ]);
        assert_eq!(
            g,
            Some(TileGeometry::Points(vec![
                [-64, 0],
                [4160, 4160],
                [100, 201],
                [3063, -64]
            ]))
        );
        assert!(enc().points(&[[5000.0, 0.0]]).is_none());
    }

    #[test]
    fn douglas_peucker_by_hand() {
        // The middle point is 0.5 off the chord: kept at tolerance 0.4,
        // dropped at 0.6.
        let p = [[0.0, 0.0], [5.0, 0.5], [10.0, 0.0]];
        assert_eq!(simplify(&p, 0.4).len(), 3);
        assert_eq!(simplify(&p, 0.6), vec![[0.0, 0.0], [10.0, 0.0]]);
        assert_eq!(simplify(&p, 0.0).len(), 3);
        let e = GeometryEncoder {
            tolerance: 2.0,
            ..enc()
        };
        let l = vec![[0.0, 0.0], [100.0, 1.0], [200.0, 0.0], [300.0, 50.0]];
        assert_eq!(
            e.lines(&[l]),
            Some(TileGeometry::Lines(vec![vec![[0, 0], [200, 0], [300, 50]]]))
        );
    }

    #[test]
    fn layer_protobuf_by_hand() {
        let mut l = LayerBuilder::new("a", 4096);
        let v = PropValue::String("x".into());
        l.add(Some(1), [("k", &v)], &TileGeometry::Points(vec![[25, 17]]));
        let mut tile = Vec::new();
        l.write_to(&mut tile);
        let feature = [0x08, 1, 0x12, 2, 0, 0, 0x18, 1, 0x22, 3, 9, 50, 34];
        let mut layer = vec![0x78, 2, 0x0a, 1, b'a', 0x12, feature.len() as u8];
        layer.extend_from_slice(&feature);
        layer.extend_from_slice(&[0x1a, 1, b'k']);
        layer.extend_from_slice(&[0x22, 3, 0x0a, 1, b'x']);
        layer.extend_from_slice(&[0x28, 0x80, 0x20]);
        let mut want = vec![0x1a, layer.len() as u8];
        want.extend_from_slice(&layer);
        assert_eq!(tile, want);
    }

    #[test]
    fn keys_and_values_are_deduplicated_and_decode_back() {
        let mut l = LayerBuilder::new("grids", 4096);
        let a = PropValue::String("a".into());
        let n = PropValue::Int(-3);
        let d = PropValue::Double(0.25);
        for i in 0..3 {
            l.add(
                Some(i),
                [("name", &a), ("n", &n), ("d", &d), ("name", &n)],
                &TileGeometry::Lines(vec![vec![[0, 0], [i as i32 + 1, 5]]]),
            );
        }
        let mut tile = Vec::new();
        l.write_to(&mut tile);
        let layers = decode(&tile).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].features.len(), 3);
        let f = &layers[0].features[2];
        assert_eq!(f.id, Some(2));
        assert_eq!(f.kind, Some(GeomKind::LineString));
        assert_eq!(
            f.properties,
            vec![("name".into(), a), ("n".into(), n), ("d".into(), d)]
        );
        assert_eq!(f.paths, vec![vec![[0, 0], [3, 5]]]);
        // 3 keys and 3 values, each once.
        assert_eq!(tile.windows(6).filter(|w| w == b"\x1a\x04name").count(), 1);
        assert!(decode(&[0x1a, 10, 1]).is_err());
        let mut empty = Vec::new();
        LayerBuilder::new("x", 4096).write_to(&mut empty);
        assert!(empty.is_empty());
    }
}
