//! `wangge validate` on the real district outlines, checked against GEOS
//! (shapely 2) as the independent truth.

use serde_json::Value;

use crate::support::{python_json, repo, s, wangge, wangge_ok};

#[test]
fn districts_are_repaired_like_geos_says() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = dir.path().join("fixed.geojson");
    let input = repo("data/beijing-districts.geojson");
    let ours: serde_json::Value = serde_json::from_str(&wangge_ok(&[
        "validate",
        s(&input),
        "--fix",
        s(&fixed),
        "--json",
    ]))
    .unwrap();
    let truth = python_json("check_validate.py", &[s(&input), s(&fixed)]);

    // The same features are invalid for us and for GEOS: 12 of 16.
    assert_eq!(ours["features"], 16);
    assert_eq!(truth["invalid"], 12);
    assert_eq!(ours["invalid"], truth["invalid"]);
    assert_eq!(ours["rejected"], 0);

    // After --fix GEOS finds every polygon valid and no feature missing.
    assert_eq!(truth["fixed_features"], 16);
    assert_eq!(truth["fixed_invalid"], 0);

    // Overlaps were found and measured like GEOS measures them (m² from
    // deg² with the layer's own ratio), and none is left after the fix.
    let fixed_area = truth["fixed_area"].as_f64().unwrap();
    let mv_area = truth["make_valid_area"].as_f64().unwrap();
    let m2_per_deg2 = ours["area_before_m2"].as_f64().unwrap() / mv_area;
    let geos_overlap_m2 = truth["original_overlap"].as_f64().unwrap() * m2_per_deg2;
    let our_overlap_m2 = ours["overlap_area_m2"].as_f64().unwrap();
    assert!(
        ours["overlaps"].as_u64().unwrap() >= 10,
        "{}",
        ours["overlaps"]
    );
    assert!(
        (our_overlap_m2 - geos_overlap_m2).abs() / geos_overlap_m2 < 0.02,
        "ours {our_overlap_m2} m², GEOS {geos_overlap_m2} m²"
    );
    // After the fix, neighbours share their boundary vertices (snapped to
    // the 1e-7° grid and noded): GEOS measures no overlap at all.
    let left = truth["fixed_overlap"].as_f64().unwrap();
    assert!(
        left == 0.0,
        "overlap left after fix: {left} deg² of {fixed_area}"
    );

    // Total area changes by < 0.1 % against GEOS make_valid.
    assert!(
        (fixed_area - mv_area).abs() / mv_area < 1e-3,
        "{fixed_area} vs {mv_area}"
    );

    // Every error names its feature and a reason.
    let errors = ours["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("self-intersection"))
    );
    assert!(
        errors
            .iter()
            .any(|e| e["reason"].as_str().unwrap().starts_with("spike"))
    );
    for e in errors {
        assert!(e["feature"].is_u64() && e["reason"].is_string(), "{e}");
    }
}

/// 2,163 dirty polygons written by Python (`tests/py/dirty_geometries.py`:
/// bow-ties, spikes, repeated and collinear points, unclosed rings, holes
/// outside or across the shell, nested shells, overlapping and degenerate
/// parts, collections with lines and points, slivers of 1e-9 deg², 3-D
/// coordinates, rings of 100,000 vertices) through `validate --fix`, against
/// shapely `make_valid`: whatever GEOS keeps is kept, with the same area
/// (0.1 % or 1 m²), valid for GEOS, properties and order kept, every
/// dropped part reported with its `part`.
#[test]
fn repair_keeps_what_geos_keeps_on_dirty_geometries() {
    let dir = tempfile::tempdir().unwrap();
    let orig = dir.path().join("dirty.geojson");
    let fixed = dir.path().join("fixed.geojson");
    let made = python_json(
        "dirty_geometries.py",
        &["generate", s(&orig), "--seed", "1", "--big", "3"],
    );
    assert!(made["cases"].as_u64().unwrap() >= 2000, "{made}");
    let out = wangge(&[
        "validate",
        s(&orig),
        "--fix",
        s(&fixed),
        "--code-field",
        "code",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = dir.path().join("report.json");
    std::fs::write(&report, &out.stdout).unwrap();
    let truth = python_json(
        "dirty_geometries.py",
        &["check", s(&orig), s(&fixed), s(&report)],
    );
    assert_eq!(truth["problems"], Value::Array(vec![]), "{truth:#}");
    assert!(
        truth["by_kind"]["kept"].as_u64().unwrap() > 2000,
        "{truth:#}"
    );
    assert!(
        truth["by_kind"]["rejected_like_geos"].as_u64().unwrap() > 0,
        "{truth:#}"
    );
}
