//! [`Changes`]: what a [`crate::Tiler::reload_grids`] changed in the tiles,
//! and which tiles that can alter.
//!
//! A feature counts as changed when it appeared, disappeared, or its id,
//! attributes, first zoom or geometry differ; features read again
//! unchanged do not count. For each changed feature the old and new
//! geometries are kept, and a tile is *touched* when, at a zoom where the
//! feature's layer is drawn, the tile grown by the encoder's buffer
//! ([`BUFFER`] of [`EXTENT`] units) meets them. The test is exact and made in
//! the tile's own coordinates, as the encoder sees the feature:
//!
//! * points: rounded, then inside the buffered square (edges included), the
//!   encoder's own rule;
//! * lines: a segment meets the closed buffered square;
//! * polygons: a ring segment meets the square, or the square's centre lies
//!   inside the polygon (so a tile wholly inside a polygon is touched, one in
//!   a hole is not);
//! * a polygon whose attributes are unchanged but whose outline moved (a
//!   grid redrawn, a neighbour given a vertex by noding): only the segments
//!   that are in one outline and not the other count, and the square's centre
//!   when it is inside one outline and not the other. Segments the two
//!   outlines share bound both clipped shapes alike, so a tile they alone
//!   reach encodes to the same bytes.
//!
//! A touched tile may still encode to the same bytes (a polygon that only
//! grazes the buffer's edge clips to nothing; a 2 cm noding vertex vanishes
//! when rounded at low zooms); an untouched tile never changes.

use std::collections::{HashMap, HashSet};

use crate::mvt::{BUFFER, EXTENT, GeometryEncoder, PropValue};
use crate::source::Shape;
use crate::tile::TileCoord;

/// What a reload changed; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    everything: bool,
    layers: Vec<LayerChanges>,
}

/// The changed features of one layer.
#[derive(Debug, Clone)]
pub struct LayerChanges {
    name: String,
    minzoom: u8,
    maxzoom: u8,
    ids: Vec<u64>,
    footprints: Vec<Footprint>,
    /// Normalised Mercator box of every footprint.
    bbox: [f64; 4],
}

/// Where one changed feature may alter tiles.
#[derive(Debug, Clone)]
enum Footprint {
    /// Added, removed, or attributes changed: all of both geometries.
    Whole {
        minzoom: u8,
        shapes: Vec<Shape>,
        bbox: [f64; 4],
    },
    /// Same attributes, another polygon outline.
    Reshaped {
        minzoom: u8,
        /// Segments in one outline and not the other.
        segments: Vec<[[f64; 2]; 2]>,
        old: Shape,
        new: Shape,
        old_bbox: [f64; 4],
        new_bbox: [f64; 4],
        bbox: [f64; 4],
    },
}

impl Footprint {
    fn bbox(&self) -> [f64; 4] {
        match self {
            Footprint::Whole { bbox, .. } | Footprint::Reshaped { bbox, .. } => *bbox,
        }
    }
    fn minzoom(&self) -> u8 {
        match self {
            Footprint::Whole { minzoom, .. } | Footprint::Reshaped { minzoom, .. } => *minzoom,
        }
    }
}

/// One feature as the diff sees it.
pub(crate) struct Version<'a> {
    pub(crate) id: u64,
    pub(crate) minzoom: u8,
    pub(crate) shape: &'a Shape,
    pub(crate) props: &'a [Option<PropValue>],
}

impl Changes {
    /// Everything may have changed (the caller should drop every tile).
    #[must_use]
    pub fn everything() -> Changes {
        Changes {
            everything: true,
            layers: Vec::new(),
        }
    }

    /// True when every tile may have changed (for instance the partition
    /// target changed, and with it every grid's `deviation`).
    #[must_use]
    pub fn is_everything(&self) -> bool {
        self.everything
    }

    /// True when nothing changed (a lock, or an edit read back identical).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.everything && self.layers.is_empty()
    }

    /// The layers with changed features.
    #[must_use]
    pub fn layers(&self) -> &[LayerChanges] {
        &self.layers
    }

    /// Adds `other`'s changes to these.
    pub fn extend(&mut self, other: Changes) {
        self.everything |= other.everything;
        self.layers.extend(other.layers);
    }

    /// Can tile `t` of a source holding the layers for which `layer`
    /// answers true differ after the reload? Always true after
    /// [`Changes::everything`].
    #[must_use]
    pub fn touches(&self, t: TileCoord, layer: &dyn Fn(&str) -> bool) -> bool {
        self.everything || self.layers.iter().any(|l| layer(&l.name) && l.touches(t))
    }

    /// Every tile that can differ, in (z, x, y) order, for a source holding
    /// the layers for which `layer` answers true: per changed feature, the
    /// tiles at its layer's zooms whose buffered square the exact test of
    /// [`Changes::touches`] finds it in. At most `limit` tiles; the flag is
    /// true when more were left out (and always after
    /// [`Changes::everything`], which lists none).
    #[must_use]
    pub fn tiles(&self, layer: &dyn Fn(&str) -> bool, limit: usize) -> (Vec<TileCoord>, bool) {
        if self.everything {
            return (Vec::new(), true);
        }
        let mut out: std::collections::BTreeSet<TileCoord> = std::collections::BTreeSet::new();
        let mut truncated = false;
        'layers: for l in self.layers.iter().filter(|l| layer(&l.name)) {
            for f in &l.footprints {
                let [x0, y0, x1, y1] = f.bbox();
                for z in f.minzoom().max(l.minzoom)..=l.maxzoom {
                    let n = f64::from(1u32 << z);
                    let last = (1u32 << z) - 1;
                    // One unit more than the buffer, as `touches` pads.
                    let pad = f64::from(BUFFER + 1) / f64::from(EXTENT);
                    let lo = |v: f64| ((v * n - pad).floor().max(0.0) as u32).min(last);
                    let hi = |v: f64| ((v * n + pad).floor().max(0.0) as u32).min(last);
                    let (tx0, tx1, ty0, ty1) = (lo(x0), hi(x1), lo(y0), hi(y1));
                    if u64::from(tx1 - tx0 + 1) * u64::from(ty1 - ty0 + 1) > limit as u64 {
                        truncated = true;
                        break 'layers;
                    }
                    for x in tx0..=tx1 {
                        for y in ty0..=ty1 {
                            let Ok(t) = TileCoord::new(z, x, y) else {
                                continue;
                            };
                            if !out.contains(&t) && reaches(f, t, &env_of(t)) {
                                out.insert(t);
                                if out.len() > limit {
                                    out.pop_last();
                                    truncated = true;
                                    break 'layers;
                                }
                            }
                        }
                    }
                }
            }
        }
        (out.into_iter().collect(), truncated)
    }

    /// Records the changes between the `old` and `new` features of a layer
    /// drawn at zooms `minzoom..=maxzoom`.
    pub(crate) fn diff(
        &mut self,
        name: &str,
        minzoom: u8,
        maxzoom: u8,
        old: &[Version<'_>],
        new: &[Version<'_>],
    ) {
        let mut by_id: HashMap<u64, (Vec<&Version<'_>>, Vec<&Version<'_>>)> = HashMap::new();
        for v in old {
            by_id.entry(v.id).or_default().0.push(v);
        }
        for v in new {
            by_id.entry(v.id).or_default().1.push(v);
        }
        let mut ids: Vec<u64> = by_id.keys().copied().collect();
        ids.sort_unstable();
        let mut out = LayerChanges {
            name: name.to_owned(),
            minzoom,
            maxzoom,
            ids: Vec::new(),
            footprints: Vec::new(),
            bbox: EMPTY,
        };
        for id in ids {
            let (o, n) = &by_id[&id];
            let fp = match (o.as_slice(), n.as_slice()) {
                ([a], [b]) if a.minzoom == b.minzoom && a.props == b.props => {
                    if a.shape == b.shape {
                        continue;
                    }
                    reshaped(a, b).unwrap_or_else(|| whole(&[a, b]))
                }
                // Duplicate ids cannot be paired: all of them count.
                _ => whole(&o.iter().chain(n.iter()).copied().collect::<Vec<_>>()),
            };
            out.bbox = union(out.bbox, fp.bbox());
            out.ids.push(id);
            out.footprints.push(fp);
        }
        if !out.ids.is_empty() {
            self.layers.push(out);
        }
    }
}

impl LayerChanges {
    /// The layer name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// First zoom at which the layer is drawn.
    #[must_use]
    pub fn minzoom(&self) -> u8 {
        self.minzoom
    }

    /// Last zoom at which the layer is drawn.
    #[must_use]
    pub fn maxzoom(&self) -> u8 {
        self.maxzoom
    }

    /// The feature ids of the changed features (old or new), ascending.
    #[must_use]
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Can this layer's part of tile `t` differ after the reload?
    #[must_use]
    pub fn touches(&self, t: TileCoord) -> bool {
        let z = t.z();
        if z < self.minzoom || z > self.maxzoom {
            return false;
        }
        let env = env_of(t);
        if !meets(self.bbox, env) {
            return false;
        }
        self.footprints
            .iter()
            .any(|f| z >= f.minzoom() && reaches(f, t, &env))
    }
}

/// The encoder's R-tree query box of tile `t`: its square grown by one
/// unit more than the buffer.
fn env_of(t: TileCoord) -> [f64; 4] {
    let [x0, y0, x1, y1] = t.merc_bounds();
    let pad = (x1 - x0) * f64::from(BUFFER + 1) / f64::from(EXTENT);
    [x0 - pad, y0 - pad, x1 + pad, y1 + pad]
}

/// Whether footprint `f` can alter tile `t` (whose query box is `env`).
fn reaches(f: &Footprint, t: TileCoord, env: &[f64; 4]) -> bool {
    meets(f.bbox(), *env) && footprint_touches(f, t)
}

const EMPTY: [f64; 4] = [
    f64::INFINITY,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::NEG_INFINITY,
];

fn union(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

fn meets(a: [f64; 4], b: [f64; 4]) -> bool {
    a[0] <= b[2] && b[0] <= a[2] && a[1] <= b[3] && b[1] <= a[3]
}

fn shape_box(s: &Shape) -> [f64; 4] {
    let mut b = EMPTY;
    let mut add = |p: &[f64; 2]| b = union(b, [p[0], p[1], p[0], p[1]]);
    match s {
        Shape::Points(v) => v.iter().for_each(&mut add),
        Shape::Lines(v) => v.iter().flatten().for_each(&mut add),
        Shape::Polygons(v) => v.iter().flatten().flatten().for_each(&mut add),
    }
    b
}

fn whole(versions: &[&Version<'_>]) -> Footprint {
    let shapes: Vec<Shape> = versions.iter().map(|v| v.shape.clone()).collect();
    let bbox = shapes.iter().map(shape_box).fold(EMPTY, union);
    Footprint::Whole {
        minzoom: versions.iter().map(|v| v.minzoom).min().unwrap_or(0),
        shapes,
        bbox,
    }
}

/// Segment keys: exact coordinates, direction-free.
fn segment_set(polys: &[Vec<Vec<[f64; 2]>>]) -> HashSet<[u64; 4]> {
    let mut set = HashSet::new();
    for ring in polys.iter().flatten() {
        for w in ring.windows(2) {
            set.insert(key(w[0], w[1]));
        }
        // Rings may be stored open.
        if let (Some(a), Some(b)) = (ring.last(), ring.first())
            && a != b
        {
            set.insert(key(*a, *b));
        }
    }
    set
}

fn key(a: [f64; 2], b: [f64; 2]) -> [u64; 4] {
    let (a, b) = if (a[0], a[1]) <= (b[0], b[1]) {
        (a, b)
    } else {
        (b, a)
    };
    [
        a[0].to_bits(),
        a[1].to_bits(),
        b[0].to_bits(),
        b[1].to_bits(),
    ]
}

fn unkey(k: [u64; 4]) -> [[f64; 2]; 2] {
    [
        [f64::from_bits(k[0]), f64::from_bits(k[1])],
        [f64::from_bits(k[2]), f64::from_bits(k[3])],
    ]
}

/// The outline-only change of a polygon; `None` for other kinds.
fn reshaped(a: &Version<'_>, b: &Version<'_>) -> Option<Footprint> {
    let (Shape::Polygons(pa), Shape::Polygons(pb)) = (a.shape, b.shape) else {
        return None;
    };
    let (sa, sb) = (segment_set(pa), segment_set(pb));
    let mut keys: Vec<[u64; 4]> = sa.symmetric_difference(&sb).copied().collect();
    keys.sort_unstable();
    let segments: Vec<[[f64; 2]; 2]> = keys.into_iter().map(unkey).collect();
    let (old_bbox, new_bbox) = (shape_box(a.shape), shape_box(b.shape));
    let bbox = segments
        .iter()
        .map(|s| {
            [
                s[0][0].min(s[1][0]),
                s[0][1].min(s[1][1]),
                s[0][0].max(s[1][0]),
                s[0][1].max(s[1][1]),
            ]
        })
        .fold(EMPTY, union);
    // A tile inside one outline and outside the other may be met by no
    // differing segment: it lies within the old or new box, so those count.
    let bbox = if segments.is_empty() {
        union(old_bbox, new_bbox)
    } else {
        union(bbox, union(old_bbox, new_bbox))
    };
    Some(Footprint::Reshaped {
        minzoom: a.minzoom,
        segments,
        old: a.shape.clone(),
        new: b.shape.clone(),
        old_bbox,
        new_bbox,
        bbox,
    })
}

/// The buffered square in tile units, `[lo, hi]²`.
fn square() -> (f64, f64) {
    let r = GeometryEncoder::default().clip_box();
    (r.min, r.max)
}

fn footprint_touches(f: &Footprint, t: TileCoord) -> bool {
    match f {
        Footprint::Whole { shapes, .. } => shapes.iter().any(|s| shape_touches(s, t)),
        Footprint::Reshaped {
            segments,
            old,
            new,
            old_bbox,
            new_bbox,
            ..
        } => {
            let tr = |p: [f64; 2]| t.to_tile(p, EXTENT);
            if segments.iter().any(|s| segment_meets(tr(s[0]), tr(s[1]))) {
                return true;
            }
            // The encoder takes another path (no clipping) for a polygon
            // wholly inside the square: a change of that status counts.
            if inside_square(*old_bbox, t) != inside_square(*new_bbox, t) {
                return true;
            }
            let c = centre(t);
            contains(old, c) != contains(new, c)
        }
    }
}

/// The square's centre in normalised Mercator.
fn centre(t: TileCoord) -> [f64; 2] {
    let [x0, y0, x1, y1] = t.merc_bounds();
    [(x0 + x1) / 2.0, (y0 + y1) / 2.0]
}

fn inside_square(b: [f64; 4], t: TileCoord) -> bool {
    let (lo, hi) = square();
    let p = t.to_tile([b[0], b[1]], EXTENT);
    let q = t.to_tile([b[2], b[3]], EXTENT);
    p[0] >= lo && p[1] >= lo && q[0] <= hi && q[1] <= hi
}

fn shape_touches(s: &Shape, t: TileCoord) -> bool {
    let tr = |p: &[f64; 2]| t.to_tile(*p, EXTENT);
    let (lo, hi) = square();
    match s {
        // The encoder's rule: round, then inside the square, edges included.
        Shape::Points(v) => v.iter().any(|p| {
            let q = tr(p);
            q.iter()
                .all(|c| c.is_finite() && (lo..=hi).contains(&c.round()))
        }),
        Shape::Lines(v) => v
            .iter()
            .any(|l| l.windows(2).any(|w| segment_meets(tr(&w[0]), tr(&w[1])))),
        Shape::Polygons(v) => {
            v.iter().flatten().any(|ring| {
                let n = ring.len();
                (0..n).any(|i| segment_meets(tr(&ring[i]), tr(&ring[(i + 1) % n])))
            }) || contains(s, centre(t))
        }
    }
}

/// Does the segment meet the closed buffered square? The encoder's own
/// Liang–Barsky clip decides.
fn segment_meets(a: [f64; 2], b: [f64; 2]) -> bool {
    GeometryEncoder::default()
        .clip_box()
        .clip_segment(a, b)
        .is_some()
}

/// Even–odd point in polygon over every ring (for valid polygons, inside
/// an exterior and outside its holes).
fn contains(s: &Shape, p: [f64; 2]) -> bool {
    let Shape::Polygons(v) = s else { return false };
    let mut inside = false;
    for ring in v.iter().flatten() {
        let n = ring.len();
        for i in 0..n {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            if (a[1] > p[1]) != (b[1] > p[1])
                && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0]
            {
                inside = !inside;
            }
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_poly(x0: f64, y0: f64, x1: f64, y1: f64) -> Shape {
        Shape::Polygons(vec![vec![vec![
            [x0, y0],
            [x1, y0],
            [x1, y1],
            [x0, y1],
            [x0, y0],
        ]]])
    }

    fn changes(old: &Shape, new: &Shape, props_differ: bool) -> Changes {
        let (pa, pb) = (
            [Some(PropValue::Int(1))],
            [Some(PropValue::Int(if props_differ { 2 } else { 1 }))],
        );
        let mut c = Changes::default();
        c.diff(
            "grids",
            11,
            16,
            &[Version {
                id: 7,
                minzoom: 11,
                shape: old,
                props: &pa,
            }],
            &[Version {
                id: 7,
                minzoom: 11,
                shape: new,
                props: &pb,
            }],
        );
        c
    }

    #[test]
    fn unchanged_features_do_not_count() {
        let s = square_poly(0.5, 0.5, 0.5001, 0.5001);
        assert!(changes(&s, &s, false).is_empty());
        assert!(!changes(&s, &s, true).is_empty());
    }

    #[test]
    fn attribute_change_touches_the_tiles_the_polygon_meets_at_its_zooms() {
        // A polygon covering z16 tiles 32768..32770 in x, one row.
        let n = 65536.0;
        let s = square_poly(32768.2 / n, 32768.2 / n, 32770.5 / n, 32768.8 / n);
        let c = changes(&s, &s, true);
        let all = |_: &str| true;
        let t = |x, y| TileCoord::new(16, x, y).unwrap();
        assert!(c.touches(t(32768, 32768), &all));
        assert!(c.touches(t(32770, 32768), &all));
        assert!(!c.touches(t(32771, 32768), &all));
        assert!(!c.touches(t(32768, 32770), &all));
        // Below the layer's zooms, or another layer: untouched.
        assert!(!c.touches(TileCoord::new(10, 512, 512).unwrap(), &all));
        assert!(!c.touches(t(32768, 32768), &|l| l != "grids"));
        // The buffer is 64 / 4096 = 0.0156 of a tile: a polygon ending 0.01
        // tile north of the next row touches it, one ending 0.02 north
        // does not.
        let near = square_poly(
            32768.2 / n,
            32768.2 / n,
            32768.8 / n,
            32769.0 / n - 0.01 / n,
        );
        let c = changes(&near, &near, true);
        assert!(c.touches(t(32768, 32769), &all), "within the buffer");
        let far = square_poly(
            32768.2 / n,
            32768.2 / n,
            32768.8 / n,
            32769.0 / n - 0.02 / n,
        );
        let c = changes(&far, &far, true);
        assert!(!c.touches(t(32768, 32769), &all), "beyond the buffer");
    }

    #[test]
    fn a_tile_inside_a_changed_polygon_is_touched_one_in_a_hole_is_not() {
        let n = 65536.0;
        let outer = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        let hole = [[3.0, 3.0], [7.0, 3.0], [7.0, 7.0], [3.0, 7.0]];
        let ring = |r: &[[f64; 2]; 4]| {
            r.iter()
                .map(|p| [(32768.0 + p[0]) / n, (32768.0 + p[1]) / n])
                .collect::<Vec<_>>()
        };
        let s = Shape::Polygons(vec![vec![ring(&outer), ring(&hole)]]);
        let c = changes(&s, &s, true);
        let all = |_: &str| true;
        assert!(c.touches(TileCoord::new(16, 32769, 32769).unwrap(), &all));
        assert!(!c.touches(TileCoord::new(16, 32773, 32773).unwrap(), &all));
    }

    #[test]
    fn a_new_vertex_touches_only_the_tiles_near_it() {
        // A long edge split by a vertex in tile x = 32770: tiles along the
        // rest of the edge keep the same clipped shape.
        let n = 65536.0;
        let y = 32768.5 / n;
        let old = Shape::Polygons(vec![vec![vec![
            [32768.5 / n, y],
            [32775.5 / n, y],
            [32775.5 / n, 32770.5 / n],
            [32768.5 / n, 32770.5 / n],
        ]]]);
        let new = Shape::Polygons(vec![vec![vec![
            [32768.5 / n, y],
            [32770.5 / n, y],
            [32775.5 / n, y],
            [32775.5 / n, 32770.5 / n],
            [32768.5 / n, 32770.5 / n],
        ]]]);
        let c = changes(&old, &new, false);
        let all = |_: &str| true;
        let t = |x| TileCoord::new(16, x, 32768).unwrap();
        // The differing segments (the old edge, both new halves) span
        // the whole edge, so every tile along it is touched, but not the
        // tiles inside the polygon that the edge does not reach.
        assert!(c.touches(t(32770), &all));
        assert!(!c.touches(TileCoord::new(16, 32770, 32769).unwrap(), &all));
    }
}
