//! Helpers shared by the integration tests: the real binary, temp dirs and
//! the Python/GDAL truth scripts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the repository root.
pub fn repo(rel: &str) -> PathBuf {
    root().join(rel)
}

/// Runs the real `wangge` binary with `args`.
pub fn wangge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wangge"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the wangge binary runs")
}

/// Runs `wangge`, asserts success and returns stdout.
pub fn wangge_ok(args: &[&str]) -> String {
    let out = wangge(args);
    assert!(
        out.status.success(),
        "wangge {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a truth script under `tests/py` and parses its JSON stdout. Fails
/// (never skips) when python3 or its packages are missing.
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = python(script, args);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "{script}: bad JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// Runs a GDAL program, asserts it succeeded and returns its stdout.
pub fn gdal(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}); run `scripts/test`, which installs gdal-bin")
    });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ogrinfo STORE -q -sql SQL`: a statement run on a store by another
/// tool, as QGIS or a user would (GDAL registers the GeoPackage SQL
/// functions its R-tree triggers call).
pub fn gdal_sql(store: &Path, statement: &str) {
    gdal("ogrinfo", &[s(store), "-q", "-sql", statement]);
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs a script under `tests/py`, asserts it succeeded and returns its
/// stdout. Fails (never skips) when python3 or its packages are missing.
pub fn python(script: &str, args: &[&str]) -> Vec<u8> {
    let python = std::env::var("WANGGE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = Command::new(&python)
        .arg(repo("tests/py").join(script))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run `scripts/test`"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed; run `scripts/test`, which installs python3 with shapely:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every feature of a store's layer via `wangge export` (GeoJSON), the
/// file written in `dir`.
pub fn exported(store: &Path, layer: &str, dir: &Path) -> Vec<serde_json::Value> {
    let out = dir.join(format!("{layer}.geojson"));
    wangge_ok(&[
        "export",
        s(store),
        "--layer",
        layer,
        "--out",
        s(&out),
        "--quiet",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    v["features"].as_array().unwrap().clone()
}
