//! Cross-checks `wangge_engine::crs` against independent implementations: the
//! PyPI packages `prcoords` and `eviltransform`, driven by `tests/py/crs_truth.py`.
//!
//! Needs python3 with both packages; `scripts/test` installs them. When they
//! are missing these tests fail (rather than skip) so that CI cannot go green
//! without the cross-check. `WANGGE_PYTHON` overrides the interpreter.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use wangge_engine::crs::{bd09_to_wgs84, gcj02_to_wgs84, wgs84_to_bd09, wgs84_to_gcj02};

/// Our forward GCJ-02 / BD-09 must match `prcoords` this closely (degrees).
const FORWARD_TOLERANCE_DEG: f64 = 1e-7;
/// eviltransform 0.1.1 converts metres to degrees with a = 6378137 instead of
/// Krasovsky's 6378245, which moves its GCJ-02 by up to ~1.7e-7° (~2 cm).
const EVILTRANSFORM_TOLERANCE_DEG: f64 = 3e-7;
/// Product requirement for recovering WGS84 from GCJ-02 / BD-09 input.
const INVERSE_TOLERANCE_M: f64 = 0.5;
/// Our inverses iterate to ~1e-12°, so they must do far better than that.
const OUR_INVERSE_TOLERANCE_M: f64 = 1e-3;
/// eviltransform's `gcj2wgs_exact` bisects lon and lat independently and can
/// lock onto a wrong bracket where one offset component is near zero: over
/// 100,000 random points in China it was off by up to 1.74 m. It is only a
/// sanity check on the magnitude; `prcoords` is the reference for the inverse.
const EVILTRANSFORM_INVERSE_TOLERANCE_M: f64 = 5.0;
const METRES_PER_DEGREE: f64 = 111_320.0;

/// A 64-bit linear congruential generator (Knuth's MMIX constants), so the
/// points are the same on every run without a `rand` dependency.
struct Lcg(u64);

impl Lcg {
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // The top 53 bits are the best-mixed ones and fill an f64 mantissa exactly.
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        lo + unit * (hi - lo)
    }
}

/// 2,024 WGS84 `(lon, lat)` points: Beijing, all of China, and some outside.
fn test_points() -> Vec<(f64, f64)> {
    let mut rng = Lcg(20_240_611);
    let mut points = Vec::new();
    // Beijing municipality's bounding box.
    points.extend((0..1000).map(|_| (rng.range(115.4, 117.6), rng.range(39.4, 41.1))));
    // Mainland China with its coastal waters, well inside the GCJ-02 box.
    points.extend((0..1000).map(|_| (rng.range(73.5, 135.0), rng.range(18.0, 53.5))));
    // West of the box, where GCJ-02 is the identity but BD-09 still applies.
    points.extend((0..24).map(|_| (rng.range(-170.0, 70.0), rng.range(-60.0, 70.0))));
    points
}

/// Runs `crs_truth.py --mode <mode>` on `input`, returning `columns` floats per point.
fn python_truth(mode: &str, input: &[(f64, f64)], columns: usize) -> Vec<Vec<f64>> {
    let python = std::env::var("WANGGE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/crs_truth.py");
    let command = format!("{python} {} --mode {mode}", script.display());
    let hint = "run `scripts/test`, which installs python3 and the PyPI packages \
                eviltransform and prcoords";
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--mode", mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}; {hint}"));
    // `{:?}` prints the shortest string that parses back to the same f64.
    let csv: String = input
        .iter()
        .map(|(lon, lat)| format!("{lon:?},{lat:?}\n"))
        .collect();
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Feed stdin from another thread: the child's output could otherwise fill
    // its pipe while we are still writing, and both would wait forever.
    let writer = std::thread::spawn(move || stdin.write_all(csv.as_bytes()));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{command}`: {e}"));
    let written = writer.join().expect("stdin writer thread panicked");
    // Check the exit status first: a missing package closes stdin early.
    assert!(
        output.status.success(),
        "`{command}` failed ({}): {}\n{hint}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    written.unwrap_or_else(|e| panic!("writing to `{command}`: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rows: Vec<Vec<f64>> = stdout
        .lines()
        .map(|line| {
            let row: Vec<f64> = line
                .split(',')
                .map(|field| {
                    field
                        .parse()
                        .unwrap_or_else(|e| panic!("`{command}` printed {line:?}: {e}"))
                })
                .collect();
            assert_eq!(row.len(), columns, "`{command}` printed {line:?}");
            row
        })
        .collect();
    assert_eq!(
        rows.len(),
        input.len(),
        "`{command}` printed the wrong number of lines"
    );
    rows
}

/// Largest absolute coordinate difference, in degrees.
fn deg_error(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).abs().max((a.1 - b.1).abs())
}

/// Distance in metres, equirectangular (exact enough for sub-metre errors).
fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let dx = (a.0 - b.0) * METRES_PER_DEGREE * b.1.to_radians().cos();
    let dy = (a.1 - b.1) * METRES_PER_DEGREE;
    dx.hypot(dy)
}

/// Running maximum of an error, remembering where it happened.
struct Worst {
    what: &'static str,
    unit: &'static str,
    error: f64,
    at: (f64, f64),
}

impl Worst {
    fn new(what: &'static str, unit: &'static str) -> Self {
        Self {
            what,
            unit,
            error: 0.0,
            at: (f64::NAN, f64::NAN),
        }
    }

    fn update(&mut self, error: f64, at: (f64, f64)) {
        // A NaN error counts as the worst.
        if error.is_nan() || error >= self.error {
            self.error = error;
            self.at = at;
        }
    }

    fn check(&self, tolerance: f64) {
        println!(
            "{}: max error {:.3e} {} at {:?}",
            self.what, self.error, self.unit, self.at
        );
        assert!(
            self.error < tolerance,
            "{}: max error {:e} {} at WGS84 {:?} exceeds {tolerance:e} {}",
            self.what,
            self.error,
            self.unit,
            self.at,
            self.unit
        );
    }
}

#[test]
fn forward_matches_python_truth() {
    let points = test_points();
    let truth = python_truth("forward", &points, 6);
    let mut gcj = Worst::new("wgs84_to_gcj02 vs prcoords", "°");
    let mut bd = Worst::new("wgs84_to_bd09 vs prcoords", "°");
    let mut evil = Worst::new("wgs84_to_gcj02 vs eviltransform", "°");
    for (&p, t) in points.iter().zip(&truth) {
        gcj.update(deg_error(wgs84_to_gcj02(p.0, p.1), (t[0], t[1])), p);
        bd.update(deg_error(wgs84_to_bd09(p.0, p.1), (t[2], t[3])), p);
        evil.update(deg_error(wgs84_to_gcj02(p.0, p.1), (t[4], t[5])), p);
    }
    println!("{} points", points.len());
    gcj.check(FORWARD_TOLERANCE_DEG);
    bd.check(FORWARD_TOLERANCE_DEG);
    evil.check(EVILTRANSFORM_TOLERANCE_DEG);
}

#[test]
fn inverse_recovers_wgs84() {
    let points = test_points();
    let truth = python_truth("forward", &points, 6);
    let gcj_points: Vec<(f64, f64)> = truth.iter().map(|t| (t[0], t[1])).collect();
    let bd_points: Vec<(f64, f64)> = truth.iter().map(|t| (t[2], t[3])).collect();
    let gcj_inverse = python_truth("inverse", &gcj_points, 4);
    let bd_inverse = python_truth("inverse-bd", &bd_points, 2);
    let mut from_gcj = Worst::new("gcj02_to_wgs84(prcoords gcj) vs input", "m");
    let mut from_bd = Worst::new("bd09_to_wgs84(prcoords bd) vs input", "m");
    let mut prc_gcj = Worst::new("gcj02_to_wgs84 vs prcoords gcj_wgs_bored", "m");
    let mut prc_bd = Worst::new("bd09_to_wgs84 vs prcoords bd_wgs_bored", "m");
    let mut evil = Worst::new("gcj02_to_wgs84 vs eviltransform gcj2wgs_exact", "m");
    for (i, &p) in points.iter().enumerate() {
        let ours_gcj = gcj02_to_wgs84(gcj_points[i].0, gcj_points[i].1);
        let ours_bd = bd09_to_wgs84(bd_points[i].0, bd_points[i].1);
        let (g, b) = (&gcj_inverse[i], &bd_inverse[i]);
        from_gcj.update(metres(ours_gcj, p), p);
        from_bd.update(metres(ours_bd, p), p);
        prc_gcj.update(metres(ours_gcj, (g[0], g[1])), p);
        prc_bd.update(metres(ours_bd, (b[0], b[1])), p);
        evil.update(metres(ours_gcj, (g[2], g[3])), p);
    }
    println!("{} points", points.len());
    from_gcj.check(OUR_INVERSE_TOLERANCE_M);
    from_bd.check(OUR_INVERSE_TOLERANCE_M);
    prc_gcj.check(INVERSE_TOLERANCE_M);
    prc_bd.check(INVERSE_TOLERANCE_M);
    evil.check(EVILTRANSFORM_INVERSE_TOLERANCE_M);
}
