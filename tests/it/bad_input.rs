//! Bad input never crashes and never disappears: each case gets a clear error
//! or a reported repair, through the real binary.

use std::fs;

use crate::support::{s, wangge, wangge_ok};

fn fc(features: &[&str]) -> String {
    let feats: Vec<String> = features
        .iter()
        .enumerate()
        .map(|(i, g)| {
            format!(
                r#"{{"type":"Feature","properties":{{"code":"11010{}"}},"geometry":{g}}}"#,
                i + 1
            )
        })
        .collect();
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        feats.join(",\n")
    )
}

fn validate_json(text: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.geojson");
    fs::write(&path, text).unwrap();
    serde_json::from_str(&wangge_ok(&["validate", s(&path), "--json"])).unwrap()
}

fn reasons(report: &serde_json::Value) -> Vec<(u64, String, String)> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["feature"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn each_polygon_defect_is_named_and_nothing_is_dropped() {
    let report = validate_json(&fc(&[
        // 1: unclosed ring
        r#"{"type":"Polygon","coordinates":[[[116.30,39.90],[116.31,39.90],[116.31,39.91],[116.30,39.91]]]}"#,
        // 2: self-intersecting bow-tie
        r#"{"type":"Polygon","coordinates":[[[116.32,39.90],[116.33,39.91],[116.33,39.90],[116.32,39.91],[116.32,39.90]]]}"#,
        // 3: NaN and ±Infinity vertices as Python's json writes them
        r#"{"type":"Polygon","coordinates":[[[116.34,39.90],[116.35,39.90],[NaN,39.905],[116.35,39.91],[Infinity,-Infinity],[116.34,39.91],[116.34,39.90]]]}"#,
        // 4: latitude > 90 that is not a swap
        r#"{"type":"Polygon","coordinates":[[[116.36,95.0],[116.37,39.90],[116.37,39.91],[116.36,95.0]]]}"#,
        // 5: swapped lon/lat
        r#"{"type":"Polygon","coordinates":[[[39.90,116.38],[39.90,116.39],[39.91,116.39],[39.91,116.38],[39.90,116.38]]]}"#,
        // 6: a point where a polygon belongs
        r#"{"type":"Point","coordinates":[116.4,39.9]}"#,
    ]));
    assert_eq!(report["features"], 6);
    let r = reasons(&report);
    let has = |f: u64, needle: &str, action: &str| {
        r.iter()
            .any(|(ff, reason, a)| *ff == f && reason.contains(needle) && a == action)
    };
    assert!(has(1, "not closed", "repaired"), "{r:?}");
    assert!(has(2, "self-intersection", "repaired"), "{r:?}");
    assert!(has(3, "non-finite", "repaired"), "{r:?}");
    assert!(has(4, "outside", "rejected"), "{r:?}");
    assert!(has(5, "swapped", "repaired"), "{r:?}");
    assert!(has(6, "expected Polygon", "rejected"), "{r:?}");
    // Every feature is accounted for: repaired or rejected, none vanished.
    assert_eq!(report["rejected"], 2);
    assert_eq!(report["invalid"], 5, "{report}");
}

#[test]
fn unreadable_files_fail_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.geojson");
    fs::write(&empty, "\n  \n").unwrap();
    let out = wangge(&["validate", s(&empty)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("empty.geojson") && err.contains("empty"),
        "{err}"
    );

    let broken = dir.path().join("broken.geojson");
    fs::write(
        &broken,
        "{\"type\":\"FeatureCollection\",\n\"features\":[\n{\"type\":\"Feature\",,}\n]}",
    )
    .unwrap();
    let out = wangge(&["validate", s(&broken)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.geojson") && err.contains("line 3"),
        "{err}"
    );

    let missing = dir.path().join("nope.geojson");
    let out = wangge(&["validate", s(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));

    // A usage error is exit code 2.
    assert_eq!(wangge(&["validate"]).status.code(), Some(2));
}

#[test]
fn csv_import_rejects_bad_rows_with_reasons_and_counts_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.gpkg");
    let csv = dir.path().join("places.csv");
    fs::write(
        &csv,
        "\u{feff}id,kind,name,lon,lat\r\nL1,school,\"No. 1, East\",116.40,39.90\r\nL2,park,short\r\nL3,park,nan,NaN,39.9\r\nL4,market,lat,116.4,95\r\nL5,market,swap,39.9,116.4\r\nL6,clinic,ok,116.41,39.91",
    )
    .unwrap();
    let rejects = dir.path().join("rejects.ndjson");
    let out: serde_json::Value = serde_json::from_str(&wangge_ok(&[
        "import",
        s(&store),
        "--layer",
        "places",
        s(&csv),
        "--rejects",
        s(&rejects),
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["read"], 6);
    assert_eq!(out["imported"], 2);
    assert_eq!(out["rejected"], 4);
    let lines: Vec<serde_json::Value> = fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at: Vec<&str> = lines.iter().map(|l| l["at"].as_str().unwrap()).collect();
    assert_eq!(at, ["row 2", "row 3", "row 4", "row 5"]);
    assert!(lines[0]["reason"].as_str().unwrap().contains("field"));
    assert!(lines[1]["reason"].as_str().unwrap().contains("finite"));
    assert!(
        lines[2]["reason"]
            .as_str()
            .unwrap()
            .contains("outside -90..90")
    );
    assert!(lines[3]["reason"].as_str().unwrap().contains("swapped"));
    // The quoted field with a comma survived.
    let export = dir.path().join("places.geojson");
    wangge_ok(&[
        "export",
        s(&store),
        "--layer",
        "places",
        "--out",
        s(&export),
    ]);
    assert!(fs::read_to_string(&export).unwrap().contains("No. 1, East"));
}

#[test]
fn wrong_code_format_is_rejected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.gpkg");
    let input = dir.path().join("d.geojson");
    let sq = r#"{"type":"Polygon","coordinates":[[[116.30,39.90],[116.31,39.90],[116.31,39.91],[116.30,39.91],[116.30,39.90]]]}"#;
    fs::write(
        &input,
        format!(
            r#"{{"type":"FeatureCollection","features":[
{{"type":"Feature","properties":{{"code":"11010"}},"geometry":{sq}}},
{{"type":"Feature","properties":{{"code":"110101001"}},"geometry":{sq}}},
{{"type":"Feature","properties":{{"code":"110101"}},"geometry":{sq}}}]}}"#
        ),
    )
    .unwrap();
    let rejects = dir.path().join("r.ndjson");
    let out: serde_json::Value = serde_json::from_str(&wangge_ok(&[
        "import",
        s(&store),
        "--layer",
        "districts",
        s(&input),
        "--rejects",
        s(&rejects),
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (
            out["read"].as_u64(),
            out["imported"].as_u64(),
            out["rejected"].as_u64()
        ),
        (Some(3), Some(1), Some(2))
    );
    let text = fs::read_to_string(&rejects).unwrap();
    assert!(
        text.contains("feature 1") && text.contains("11010"),
        "{text}"
    );
    assert!(
        text.contains("feature 2") && text.contains("6 digits"),
        "{text}"
    );
}
