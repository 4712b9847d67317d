//! Web Mercator (EPSG:3857) tile math in the XYZ scheme: tile `(0, 0)` is the
//! north-west corner, `y` grows southward.
//!
//! Positions are carried as *normalised Mercator* coordinates: `x` and `y` in
//! `[0, 1]` over the whole world, `y` down, so that at zoom `z` the tile
//! `(x, y)` covers `[x, x + 1] / 2^z × [y, y + 1] / 2^z` and tile-local
//! coordinates are one multiply and one subtract away.
//!
//! ```
//! use wangge_tiler::tile::{TileCoord, lonlat_to_merc};
//! let t = TileCoord::new(1, 1, 0).unwrap();
//! assert_eq!(t.bounds()[0], 0.0); // the north-east quarter starts at 0° E
//! let p = lonlat_to_merc(0.0, 0.0);
//! assert_eq!(t.to_tile(p, 4096), [0.0, 4096.0]);
//! ```

use std::fmt;

/// The deepest zoom level a [`TileCoord`] accepts.
pub const MAX_ZOOM: u8 = 22;

/// The latitude where Web Mercator's square world ends (`atan(sinh(π))`).
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// A tile address that is known to be valid: `z ≤ 22`, `x, y < 2^z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    z: u8,
    x: u32,
    y: u32,
}

/// A tile address out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tile {z}/{x}/{y} does not exist: {reason}")]
pub struct InvalidTile {
    /// Zoom requested.
    pub z: u32,
    /// Column requested.
    pub x: u64,
    /// Row requested.
    pub y: u64,
    /// Why it is invalid.
    pub reason: &'static str,
}

impl TileCoord {
    /// Validates a tile address.
    pub fn new(z: u8, x: u32, y: u32) -> Result<TileCoord, InvalidTile> {
        let bad = |reason| InvalidTile {
            z: z.into(),
            x: x.into(),
            y: y.into(),
            reason,
        };
        if z > MAX_ZOOM {
            return Err(bad("the zoom level is above 22"));
        }
        let n = 1u64 << z;
        if u64::from(x) >= n {
            return Err(bad("x is not below 2^z"));
        }
        if u64::from(y) >= n {
            return Err(bad("y is not below 2^z"));
        }
        Ok(TileCoord { z, x, y })
    }

    /// Zoom level.
    #[must_use]
    pub const fn z(self) -> u8 {
        self.z
    }

    /// Column, west to east.
    #[must_use]
    pub const fn x(self) -> u32 {
        self.x
    }

    /// Row, north to south (XYZ, not TMS).
    #[must_use]
    pub const fn y(self) -> u32 {
        self.y
    }

    /// The row in the TMS scheme (south to north), as MBTiles stores it.
    #[must_use]
    pub const fn tms_y(self) -> u32 {
        ((1u64 << self.z) - 1 - self.y as u64) as u32
    }

    /// `[min_x, min_y, max_x, max_y]` of the tile in normalised Mercator
    /// (`y` down, so `min_y` is the north edge).
    #[must_use]
    pub fn merc_bounds(self) -> [f64; 4] {
        let n = f64::from(1u32 << self.z);
        let (x, y) = (f64::from(self.x), f64::from(self.y));
        [x / n, y / n, (x + 1.0) / n, (y + 1.0) / n]
    }

    /// `[west, south, east, north]` of the tile in degrees.
    #[must_use]
    pub fn bounds(self) -> [f64; 4] {
        let [x0, y0, x1, y1] = self.merc_bounds();
        let (w, n) = merc_to_lonlat([x0, y0]);
        let (e, s) = merc_to_lonlat([x1, y1]);
        [w, s, e, n]
    }

    /// A normalised Mercator position in this tile's local coordinates for
    /// an `extent`-unit tile: `(0, 0)` at the north-west corner, `y` down.
    #[must_use]
    pub fn to_tile(self, p: [f64; 2], extent: u32) -> [f64; 2] {
        let n = f64::from(1u32 << self.z);
        let e = f64::from(extent);
        [
            (p[0] * n - f64::from(self.x)) * e,
            (p[1] * n - f64::from(self.y)) * e,
        ]
    }

    /// The tile one zoom level up that contains this one (`None` at zoom 0).
    #[must_use]
    pub const fn parent(self) -> Option<TileCoord> {
        if self.z == 0 {
            None
        } else {
            Some(TileCoord {
                z: self.z - 1,
                x: self.x / 2,
                y: self.y / 2,
            })
        }
    }
}

/// Parses `z/x/y` (what [`TileCoord`]'s `Display` prints), validating it.
impl std::str::FromStr for TileCoord {
    type Err = InvalidTile;

    fn from_str(s: &str) -> Result<TileCoord, InvalidTile> {
        let bad = InvalidTile {
            z: 0,
            x: 0,
            y: 0,
            reason: "not of the form z/x/y with non-negative integers",
        };
        let mut it = s.split('/');
        let (Some(z), Some(x), Some(y), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(bad);
        };
        let (Ok(z), Ok(x), Ok(y)) = (z.parse::<u32>(), x.parse::<u64>(), y.parse::<u64>()) else {
            return Err(bad);
        };
        match (u8::try_from(z), u32::try_from(x), u32::try_from(y)) {
            (Ok(z8), Ok(x32), Ok(y32)) => TileCoord::new(z8, x32, y32),
            _ => Err(InvalidTile {
                z,
                x,
                y,
                reason: "a coordinate is out of range",
            }),
        }
    }
}

impl fmt::Display for TileCoord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// Longitude/latitude (degrees) to normalised Mercator `[x, y]`, `y` down.
/// Latitudes beyond ±[`MAX_LAT`] are clamped to the edge of the square.
#[must_use]
pub fn lonlat_to_merc(lon: f64, lat: f64) -> [f64; 2] {
    let lat = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let x = (lon + 180.0) / 360.0;
    let y = 0.5 - (lat.tan() + 1.0 / lat.cos()).ln() / (2.0 * std::f64::consts::PI);
    [x, y.clamp(0.0, 1.0)]
}

/// Normalised Mercator `[x, y]` back to `(lon, lat)` in degrees.
#[must_use]
pub fn merc_to_lonlat(p: [f64; 2]) -> (f64, f64) {
    let lon = p[0] * 360.0 - 180.0;
    let lat = ((1.0 - 2.0 * p[1]) * std::f64::consts::PI)
        .sinh()
        .atan()
        .to_degrees();
    (lon, lat)
}

/// The block of tiles at one zoom level that covers a bounding box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRange {
    /// Zoom level.
    pub z: u8,
    /// First column.
    pub min_x: u32,
    /// First row (northernmost).
    pub min_y: u32,
    /// Last column, inclusive.
    pub max_x: u32,
    /// Last row, inclusive.
    pub max_y: u32,
}

impl TileRange {
    /// Number of tiles in the block.
    #[must_use]
    pub fn count(&self) -> u64 {
        u64::from(self.max_x - self.min_x + 1) * u64::from(self.max_y - self.min_y + 1)
    }

    /// Every tile of the block, row by row.
    pub fn iter(&self) -> impl Iterator<Item = TileCoord> + '_ {
        let z = self.z;
        (self.min_y..=self.max_y)
            .flat_map(move |y| (self.min_x..=self.max_x).map(move |x| TileCoord { z, x, y }))
    }
}

/// The tiles at zoom `z` (≤ [`MAX_ZOOM`], else clamped) that intersect the
/// lon/lat box `[west, south, east, north]`. A box edge exactly on a tile
/// boundary does not pull in the tile beyond it. Returns `None` for a box
/// with non-finite or inverted coordinates.
#[must_use]
pub fn tiles_covering(bbox: [f64; 4], z: u8) -> Option<TileRange> {
    let [w, s, e, n] = bbox;
    if !bbox.iter().all(|v| v.is_finite()) || w > e || s > n {
        return None;
    }
    let z = z.min(MAX_ZOOM);
    let size = 1u64 << z;
    let [x0, y0] = lonlat_to_merc(w.clamp(-180.0, 180.0), n);
    let [x1, y1] = lonlat_to_merc(e.clamp(-180.0, 180.0), s);
    let f = size as f64;
    let last = (size - 1) as f64;
    let lo = |v: f64| (v * f).floor().clamp(0.0, last) as u32;
    // An east/south edge exactly on a tile boundary belongs to the tile
    // before it, unless the box is degenerate along that axis.
    let hi = |v: f64, lo_v: f64| {
        let t = v * f;
        let t = if t == t.floor() && v > lo_v {
            t - 1.0
        } else {
            t.floor()
        };
        t.clamp(0.0, last) as u32
    };
    Some(TileRange {
        z,
        min_x: lo(x0),
        min_y: lo(y0),
        max_x: hi(x1, x0),
        max_y: hi(y1, y0),
    })
}

/// The tiles at zoom `z` whose buffered square (`buffer` units of an
/// `extent`-unit tile on each side) meets the lon/lat box: every tile whose
/// encoding can change when features inside the box change. This is what a
/// tile cache invalidates after an edit.
#[must_use]
pub fn tiles_touching(bbox: [f64; 4], z: u8, extent: u32, buffer: u32) -> Option<TileRange> {
    let r = tiles_covering(bbox, z)?;
    let [w, s, e, n] = bbox;
    let size = 1u64 << r.z;
    let f = size as f64;
    let pad = f64::from(buffer) / f64::from(extent);
    let [x0, y0] = lonlat_to_merc(w.clamp(-180.0, 180.0), n);
    let [x1, y1] = lonlat_to_merc(e.clamp(-180.0, 180.0), s);
    let last = (size - 1) as f64;
    // A tile t is touched when [t - pad, t + 1 + pad] meets [v0, v1] (in
    // tile units): t >= v0 - 1 - pad and t <= v1 + pad.
    let lo = |v: f64| (v * f - 1.0 - pad).ceil().clamp(0.0, last) as u32;
    let hi = |v: f64| (v * f + pad).floor().clamp(0.0, last) as u32;
    Some(TileRange {
        z: r.z,
        min_x: lo(x0).min(r.min_x),
        min_y: lo(y0).min(r.min_y),
        max_x: hi(x1).max(r.max_x),
        max_y: hi(y1).max(r.max_y),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(TileCoord::new(0, 0, 0).is_ok());
        assert!(TileCoord::new(0, 1, 0).is_err());
        assert!(TileCoord::new(3, 7, 7).is_ok());
        assert!(TileCoord::new(3, 8, 0).is_err());
        assert!(TileCoord::new(3, 0, 8).is_err());
        assert!(TileCoord::new(22, (1 << 22) - 1, 0).is_ok());
        assert!(TileCoord::new(23, 0, 0).is_err());
        let e = TileCoord::new(2, 4, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tile 2/4/0 does not exist: x is not below 2^z"
        );
    }

    #[test]
    fn world_corners_by_hand() {
        // Zoom 0 covers lon ±180 and lat ±atan(sinh(π)).
        let b = TileCoord::new(0, 0, 0).unwrap().bounds();
        assert_eq!(b[0], -180.0);
        assert_eq!(b[2], 180.0);
        assert!((b[3] - MAX_LAT).abs() < 1e-12 && (b[1] + MAX_LAT).abs() < 1e-12);
        // Zoom 1, tile (0, 1) is the south-west quarter: lon [-180, 0], lat [-85.05, 0].
        let b = TileCoord::new(1, 0, 1).unwrap().bounds();
        assert_eq!([b[0], b[2]], [-180.0, 0.0]);
        assert!(b[3].abs() < 1e-12);
    }

    #[test]
    fn lonlat_to_tile_by_hand() {
        // lat 45°: y = 0.5 - ln(tan 45° + sec 45°) / 2π = 0.5 - ln(1 + √2) / 2π.
        let p = lonlat_to_merc(90.0, 45.0);
        let y = 0.5 - (1.0 + 2f64.sqrt()).ln() / (2.0 * std::f64::consts::PI);
        assert_eq!(p[0], 0.75);
        assert!((p[1] - y).abs() < 1e-15);
        // At z = 2 the point lies in tile (3, 1), at local x = 0 and
        // local y = (4y - 1) * 4096.
        let t = TileCoord::new(2, 3, 1).unwrap();
        let l = t.to_tile(p, 4096);
        assert_eq!(l[0], 0.0);
        assert!((l[1] - (4.0 * y - 1.0) * 4096.0).abs() < 1e-9);
        // Round trip.
        let (lon, lat) = merc_to_lonlat(p);
        assert!((lon - 90.0).abs() < 1e-12 && (lat - 45.0).abs() < 1e-12);
    }

    #[test]
    fn parse_round_trips_and_rejects() {
        let t: TileCoord = "14/13488/6208".parse().unwrap();
        assert_eq!((t.z(), t.x(), t.y()), (14, 13488, 6208));
        assert_eq!(t.to_string().parse::<TileCoord>(), Ok(t));
        for bad in [
            "",
            "1/2",
            "1/2/3/4",
            "a/0/0",
            "-1/0/0",
            "1/2/0",
            "99/0/0",
            "300/0/0",
            "0/0/4294967296",
        ] {
            assert!(bad.parse::<TileCoord>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tms_flip() {
        let t = TileCoord::new(3, 2, 1).unwrap();
        assert_eq!(t.tms_y(), 6);
        assert_eq!(TileCoord::new(0, 0, 0).unwrap().tms_y(), 0);
        assert_eq!(t.parent(), Some(TileCoord::new(2, 1, 0).unwrap()));
    }

    #[test]
    fn covering() {
        // The north-east quarter of the world at zoom 1 is exactly one tile.
        let r = tiles_covering([0.0, 0.0, 180.0, 85.0], 1).unwrap();
        assert_eq!((r.min_x, r.max_x, r.min_y, r.max_y), (1, 1, 0, 0));
        // Crossing lon 0 and lat 0 at zoom 1 takes all four.
        let r = tiles_covering([-1.0, -1.0, 1.0, 1.0], 1).unwrap();
        assert_eq!(r.count(), 4);
        assert_eq!(r.iter().count(), 4);
        // Beijing's Tian'anmen (116.3975, 39.9087) at z 10: x = floor((lon+180)/360 * 1024).
        let r = tiles_covering([116.3975, 39.9087, 116.3975, 39.9087], 10).unwrap();
        assert_eq!((r.min_x, r.max_x), (843, 843));
        assert_eq!((r.min_y, r.max_y), (388, 388));
        // A point exactly on a boundary is in the tile east/south of it.
        let r = tiles_covering([0.0, 0.0, 0.0, 0.0], 1).unwrap();
        assert_eq!((r.min_x, r.min_y, r.count()), (1, 1, 1));
        assert!(tiles_covering([1.0, 0.0, 0.0, 1.0], 3).is_none());
    }

    #[test]
    fn touching_includes_the_neighbours_whose_buffer_reaches_in() {
        // A point in the middle of tile (2, 1) at z 2 touches only it...
        let t = TileCoord::new(2, 2, 1).unwrap();
        let [w, s, e, n] = t.bounds();
        let (cx, cy) = ((w + e) / 2.0, (s + n) / 2.0);
        let r = tiles_touching([cx, cy, cx, cy], 2, 4096, 64).unwrap();
        assert_eq!((r.min_x, r.max_x, r.min_y, r.max_y), (2, 2, 1, 1));
        // ...one 1/128 of a tile inside its west edge also touches (1, 1),
        // whose 64-unit buffer (1/64 of a tile) reaches over it.
        let lon = w + (e - w) / 128.0;
        let r = tiles_touching([lon, cy, lon, cy], 2, 4096, 64).unwrap();
        assert_eq!((r.min_x, r.max_x, r.min_y, r.max_y), (1, 2, 1, 1));
        // A quarter of a tile in is beyond every neighbour's buffer.
        let lon = w + (e - w) / 4.0;
        let r = tiles_touching([lon, cy, lon, cy], 2, 4096, 64).unwrap();
        assert_eq!((r.min_x, r.max_x), (2, 2));
        assert!(tiles_covering([f64::NAN, 0.0, 0.0, 1.0], 3).is_none());
    }
}
