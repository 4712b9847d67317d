//! Conversions between WGS84 and the obfuscated datums of Chinese web maps.
//!
//! wangge stores every coordinate as WGS84 longitude/latitude in degrees.
//! Input from Chinese map services is usually not WGS84:
//!
//! * **GCJ-02** ("Mars coordinates"), returned by Amap/Gaode, Tencent and
//!   Google Maps China, is WGS84 plus a smooth, deliberately undocumented
//!   offset of up to ~700 m. It is computed with the well-known public
//!   reconstruction of the algorithm, and only applied inside a rough box
//!   around China ([`in_china`]); outside it GCJ-02 equals WGS84.
//! * **BD-09** (Baidu) is GCJ-02 with a further polar-coordinate distortion.
//!
//! Forward conversions follow the public formulas exactly. GCJ-02 and BD-09
//! have no closed-form inverse, so the inverses iterate against the forward
//! transform until it reproduces the input to within 1e-12° (≈ 0.1 µm; the
//! published one-step "rough" inverses are off by up to ~2 m).
//!
//! All functions take and return `(lon, lat)` in degrees.
//!
//! ```
//! use wangge_engine::crs::{Crs, gcj02_to_wgs84, wgs84_to_gcj02};
//!
//! let tiananmen = (116.391275, 39.90765);
//! let (glon, glat) = wgs84_to_gcj02(tiananmen.0, tiananmen.1);
//! assert!((glon - tiananmen.0).abs() > 1e-3); // offset by several hundred metres
//! let (lon, lat) = gcj02_to_wgs84(glon, glat);
//! assert!((lon - tiananmen.0).abs() < 1e-9 && (lat - tiananmen.1).abs() < 1e-9);
//!
//! let baidu: Crs = "BD-09".parse()?;
//! let (lon, lat) = baidu.to_wgs84(116.404, 39.915);
//! let (blon, blat) = baidu.from_wgs84(lon, lat);
//! assert!((blon - 116.404).abs() < 1e-9 && (blat - 39.915).abs() < 1e-9);
//! # Ok::<(), wangge_engine::crs::CrsParseError>(())
//! ```

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Semi-major axis of the Krasovsky 1940 ellipsoid, which GCJ-02 uses.
const KRASOVSKY_A: f64 = 6_378_245.0;
/// Squared eccentricity of the Krasovsky 1940 ellipsoid (as published: 0.00669342162296594323).
const KRASOVSKY_EE: f64 = 0.006_693_421_622_965_943;
/// Baidu's angular scale: π·3000/180.
const X_PI: f64 = PI * 3000.0 / 180.0;
/// Baidu's constant shift, in degrees.
const BD_DLON: f64 = 0.0065;
const BD_DLAT: f64 = 0.006;
/// Inverses stop once the forward transform reproduces the target this closely (degrees).
const INVERSE_TOLERANCE: f64 = 1e-12;
/// Inverses give up after this many iterations (they normally need 3–5).
const INVERSE_MAX_ITERATIONS: usize = 30;

/// A coordinate reference system that input coordinates may be given in.
///
/// Parses case-insensitively from `wgs84`, `cgcs2000`, `epsg:4326` (all
/// [`Crs::Wgs84`]), `gcj02`, `gcj-02`, `bd09` and `bd-09`; displays and
/// serialises as the canonical `wgs84`, `gcj02` or `bd09`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Crs {
    /// WGS84 longitude/latitude (EPSG:4326). CGCS2000 is treated as the same:
    /// the two differ by centimetres, far below grid-management accuracy.
    #[default]
    Wgs84,
    /// GCJ-02, as returned by Amap/Gaode and Tencent.
    Gcj02,
    /// BD-09, as returned by Baidu.
    Bd09,
}

impl Crs {
    /// The canonical lowercase name: `wgs84`, `gcj02` or `bd09`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Wgs84 => "wgs84",
            Self::Gcj02 => "gcj02",
            Self::Bd09 => "bd09",
        }
    }

    /// Converts `(lon, lat)` given in this system to WGS84.
    #[must_use]
    pub fn to_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Self::Wgs84 => (lon, lat),
            Self::Gcj02 => gcj02_to_wgs84(lon, lat),
            Self::Bd09 => bd09_to_wgs84(lon, lat),
        }
    }

    /// Converts every coordinate of a geometry from this system to WGS84.
    pub fn geometry_to_wgs84(self, g: &mut geo_types::Geometry<f64>) {
        use geo::MapCoordsInPlace;
        if self != Self::Wgs84 {
            g.map_coords_in_place(|c| {
                let (x, y) = self.to_wgs84(c.x, c.y);
                geo_types::Coord { x, y }
            });
        }
    }

    /// Converts WGS84 `(lon, lat)` to this system.
    #[must_use]
    pub fn from_wgs84(self, lon: f64, lat: f64) -> (f64, f64) {
        match self {
            Self::Wgs84 => (lon, lat),
            Self::Gcj02 => wgs84_to_gcj02(lon, lat),
            Self::Bd09 => wgs84_to_bd09(lon, lat),
        }
    }

    /// Converts `(lon, lat)` from this system to `target`.
    #[must_use]
    pub fn transform(self, target: Self, lon: f64, lat: f64) -> (f64, f64) {
        match (self, target) {
            (a, b) if a == b => (lon, lat),
            (Self::Gcj02, Self::Bd09) => gcj02_to_bd09(lon, lat),
            (Self::Bd09, Self::Gcj02) => bd09_to_gcj02(lon, lat),
            _ => {
                let (lon, lat) = self.to_wgs84(lon, lat);
                target.from_wgs84(lon, lat)
            }
        }
    }
}

/// Every name [`Crs`] parses from (case-insensitively).
const ACCEPTED: &str = "wgs84, cgcs2000, epsg:4326, gcj02, gcj-02, bd09, bd-09";

/// A string that names no supported coordinate system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown coordinate system {input:?}: expected one of {ACCEPTED} (case-insensitive)")]
pub struct CrsParseError {
    /// The rejected input.
    pub input: String,
}

impl FromStr for Crs {
    type Err = CrsParseError;

    fn from_str(s: &str) -> Result<Self, CrsParseError> {
        match s.to_ascii_lowercase().as_str() {
            "wgs84" | "cgcs2000" | "epsg:4326" => Ok(Self::Wgs84),
            "gcj02" | "gcj-02" => Ok(Self::Gcj02),
            "bd09" | "bd-09" => Ok(Self::Bd09),
            _ => Err(CrsParseError {
                input: s.chars().take(40).collect(),
            }),
        }
    }
}

impl fmt::Display for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Crs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Crs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// Whether GCJ-02 applies its offset at `(lon, lat)`: the rough box
/// lon 72.004..=137.8347, lat 0.8293..=55.8271 that every public
/// implementation uses (it also covers parts of neighbouring countries).
#[must_use]
pub fn in_china(lon: f64, lat: f64) -> bool {
    (72.004..=137.8347).contains(&lon) && (0.8293..=55.8271).contains(&lat)
}

/// The GCJ-02 offset `(dlon, dlat)` in degrees at WGS84 `(lon, lat)`.
fn gcj_offset(lon: f64, lat: f64) -> (f64, f64) {
    // The polynomials give the offset in metres, centred on (105°E, 35°N).
    let (x, y) = (lon - 105.0, lat - 35.0);
    let common = (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    let mut dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    dlat += common;
    dlat += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    dlat += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    let mut dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    dlon += common;
    dlon += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    dlon += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    // Metres to degrees on the Krasovsky ellipsoid (meridian and parallel radii).
    let rad_lat = lat / 180.0 * PI;
    let magic = 1.0 - KRASOVSKY_EE * rad_lat.sin() * rad_lat.sin();
    let sqrt_magic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((KRASOVSKY_A * (1.0 - KRASOVSKY_EE)) / (magic * sqrt_magic) * PI);
    let dlon = (dlon * 180.0) / (KRASOVSKY_A / sqrt_magic * rad_lat.cos() * PI);
    (dlon, dlat)
}

/// Solves `forward(p) = target` by fixed-point iteration from `start`.
///
/// Converges because both obfuscations are the identity plus a perturbation
/// whose derivative is of order 1e-3, so each step shrinks the error ~1000×.
fn invert(
    forward: impl Fn(f64, f64) -> (f64, f64),
    target: (f64, f64),
    start: (f64, f64),
) -> (f64, f64) {
    let (mut lon, mut lat) = start;
    for _ in 0..INVERSE_MAX_ITERATIONS {
        let (flon, flat) = forward(lon, lat);
        let (rlon, rlat) = (flon - target.0, flat - target.1);
        if rlon.abs() < INVERSE_TOLERANCE && rlat.abs() < INVERSE_TOLERANCE {
            break;
        }
        lon -= rlon;
        lat -= rlat;
    }
    (lon, lat)
}

/// WGS84 → GCJ-02. Outside [`in_china`] the input is returned unchanged.
#[must_use]
pub fn wgs84_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    if !in_china(lon, lat) {
        return (lon, lat);
    }
    let (dlon, dlat) = gcj_offset(lon, lat);
    (lon + dlon, lat + dlat)
}

/// GCJ-02 → WGS84, exact to ~1e-12° (the forward transform of the result
/// reproduces the input). Points whose preimage lies outside [`in_china`]
/// come back unchanged, matching [`wgs84_to_gcj02`].
#[must_use]
pub fn gcj02_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    invert(wgs84_to_gcj02, (lon, lat), (lon, lat))
}

/// GCJ-02 → BD-09 (Baidu). Applied everywhere, as Baidu's own formula is.
#[must_use]
pub fn gcj02_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let z = (lon * lon + lat * lat).sqrt() + 0.00002 * (lat * X_PI).sin();
    let theta = lat.atan2(lon) + 0.000003 * (lon * X_PI).cos();
    (z * theta.cos() + BD_DLON, z * theta.sin() + BD_DLAT)
}

/// BD-09 → GCJ-02, exact to ~1e-12°: the published approximate inverse
/// (good to ~1e-7°), refined by iterating against [`gcj02_to_bd09`].
#[must_use]
pub fn bd09_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    let (x, y) = (lon - BD_DLON, lat - BD_DLAT);
    let z = (x * x + y * y).sqrt() - 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) - 0.000003 * (x * X_PI).cos();
    invert(
        gcj02_to_bd09,
        (lon, lat),
        (z * theta.cos(), z * theta.sin()),
    )
}

/// WGS84 → BD-09: [`wgs84_to_gcj02`] then [`gcj02_to_bd09`].
#[must_use]
pub fn wgs84_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let (lon, lat) = wgs84_to_gcj02(lon, lat);
    gcj02_to_bd09(lon, lat)
}

/// BD-09 → WGS84: [`bd09_to_gcj02`] then [`gcj02_to_wgs84`], both exact.
#[must_use]
pub fn bd09_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    let (lon, lat) = bd09_to_gcj02(lon, lat);
    gcj02_to_wgs84(lon, lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a regular grid over `[lon0, lon1] × [lat0, lat1]`.
    fn grid(
        lon0: f64,
        lon1: f64,
        lat0: f64,
        lat1: f64,
        n: usize,
    ) -> impl Iterator<Item = (f64, f64)> {
        (0..=n).flat_map(move |i| {
            (0..=n).map(move |j| {
                let (fi, fj) = (i as f64 / n as f64, j as f64 / n as f64);
                (lon0 + fi * (lon1 - lon0), lat0 + fj * (lat1 - lat0))
            })
        })
    }

    fn assert_close(got: (f64, f64), want: (f64, f64), tol: f64, what: &str) {
        let err = (got.0 - want.0).abs().max((got.1 - want.1).abs());
        assert!(
            err < tol,
            "{what}: got {got:?}, want {want:?}, error {err:e}°"
        );
    }

    fn assert_round_trips(points: impl Iterator<Item = (f64, f64)>) {
        for (lon, lat) in points {
            let gcj = wgs84_to_gcj02(lon, lat);
            assert_ne!(gcj, (lon, lat), "no offset applied");
            assert_close(
                gcj02_to_wgs84(gcj.0, gcj.1),
                (lon, lat),
                1e-9,
                "wgs→gcj→wgs",
            );
            let bd = wgs84_to_bd09(lon, lat);
            assert_close(bd09_to_wgs84(bd.0, bd.1), (lon, lat), 1e-9, "wgs→bd→wgs");
            assert_close(bd09_to_gcj02(bd.0, bd.1), gcj, 1e-11, "gcj→bd→gcj");
        }
    }

    #[test]
    fn round_trip_over_beijing() {
        assert_round_trips(grid(115.4, 117.6, 39.4, 41.1, 60));
    }

    #[test]
    fn round_trip_over_china() {
        // The whole GCJ box, less a margin so that the offset stays inside it.
        assert_round_trips(grid(72.1, 137.7, 0.9, 55.7, 150));
    }

    #[test]
    fn known_values() {
        // Reference values from the `prcoords` 1.0.2 Python package (wgs_gcj, wgs_bd).
        let cases = [
            (
                (116.391275, 39.90765),
                (116.39751618761511, 39.90905127070822),
                (116.40388883683364, 39.915394553775016),
            ),
            (
                (121.4737, 31.2304),
                (121.47822305927693, 31.22845773757727),
                (121.484781468503, 31.234310593689997),
            ),
            (
                (113.2644, 23.1291),
                (113.26972959210308, 23.126423339922844),
                (113.27615075157122, 23.13271125723948),
            ),
        ];
        for (wgs, gcj, bd) in cases {
            assert_close(wgs84_to_gcj02(wgs.0, wgs.1), gcj, 1e-12, "gcj");
            assert_close(wgs84_to_bd09(wgs.0, wgs.1), bd, 1e-12, "bd");
            assert_close(Crs::Gcj02.to_wgs84(gcj.0, gcj.1), wgs, 1e-11, "gcj inverse");
            assert_close(Crs::Bd09.to_wgs84(bd.0, bd.1), wgs, 1e-11, "bd inverse");
            assert_close(
                Crs::Bd09.transform(Crs::Gcj02, bd.0, bd.1),
                gcj,
                1e-11,
                "bd→gcj",
            );
            assert_close(
                Crs::Gcj02.transform(Crs::Bd09, gcj.0, gcj.1),
                bd,
                1e-12,
                "gcj→bd",
            );
        }
    }

    #[test]
    fn outside_china_is_unchanged() {
        for (lon, lat) in [
            (2.3522, 48.8566),
            (-74.006, 40.7128),
            (139.6917, 35.6895),
            (151.2, -33.9),
            (105.0, 0.5),
        ] {
            assert_eq!(wgs84_to_gcj02(lon, lat), (lon, lat));
            assert_eq!(gcj02_to_wgs84(lon, lat), (lon, lat));
            assert_eq!(Crs::Gcj02.to_wgs84(lon, lat), (lon, lat));
            assert_eq!(Crs::Wgs84.from_wgs84(lon, lat), (lon, lat));
            // BD-09 is still applied, and still inverts.
            let bd = Crs::Bd09.from_wgs84(lon, lat);
            assert_close(
                Crs::Bd09.to_wgs84(bd.0, bd.1),
                (lon, lat),
                1e-11,
                "bd outside",
            );
        }
        assert!(in_china(116.4, 39.9));
        assert!(!in_china(139.7, 35.7));
    }

    #[test]
    fn non_finite_input_does_not_hang() {
        assert!(gcj02_to_wgs84(f64::NAN, 39.9).0.is_nan());
        assert!(bd09_to_wgs84(f64::INFINITY, 39.9).0.is_nan());
    }

    #[test]
    fn parse_and_display() {
        for (s, crs) in [
            ("wgs84", Crs::Wgs84),
            ("CGCS2000", Crs::Wgs84),
            ("EPSG:4326", Crs::Wgs84),
            ("gcj02", Crs::Gcj02),
            ("GCJ-02", Crs::Gcj02),
            ("bd09", Crs::Bd09),
            ("Bd-09", Crs::Bd09),
        ] {
            assert_eq!(s.parse::<Crs>(), Ok(crs), "{s}");
            assert_eq!(crs.to_string().parse::<Crs>(), Ok(crs));
        }
        assert_eq!(Crs::Gcj02.to_string(), "gcj02");
        let err = " wgs84".parse::<Crs>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown coordinate system \" wgs84\": expected one of wgs84, cgcs2000, epsg:4326, \
             gcj02, gcj-02, bd09, bd-09 (case-insensitive)"
        );
        let de = Crs::deserialize(de::value::StrDeserializer::<de::value::Error>::new(
            "GCJ-02",
        ));
        assert_eq!(de, Ok(Crs::Gcj02));
    }
}
