//! `wangge assign` and `wangge locate` on hand-made inputs: every row is
//! accounted for, every reject says why, and boundaries follow the rule.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::support::{s, wangge, wangge_ok};

/// Two unit squares side by side, codes A (west) and B (east), near Beijing:
/// A = [116, 116.01] × [39.9, 39.91], B = [116.01, 116.02] × [39.9, 39.91].
pub(crate) fn two_grids(dir: &Path) -> PathBuf {
    let p = dir.join("grids.geojson");
    let sq = |x0: f64, code: &str| {
        format!(
            r#"{{"type":"Feature","properties":{{"code":"{code}","name":"grid {code}"}},"geometry":{{"type":"Polygon","coordinates":[[[{x0},39.9],[{x1},39.9],[{x1},39.91],[{x0},39.91],[{x0},39.9]]]}}}}"#,
            x1 = x0 + 0.01
        )
    };
    fs::write(
        &p,
        format!(
            r#"{{"type":"FeatureCollection","features":[{},{}]}}"#,
            sq(116.01, "B"),
            sq(116.0, "A")
        ),
    )
    .unwrap();
    p
}

fn assign(
    dir: &Path,
    grids: &Path,
    csv: &str,
) -> (Json, Vec<csv::StringRecord>, Vec<csv::StringRecord>) {
    let input = dir.join("in.csv");
    fs::write(&input, csv).unwrap();
    let (out, rej) = (dir.join("out.csv"), dir.join("rej.csv"));
    let v: Json = serde_json::from_str(&wangge_ok(&[
        "assign",
        "--grids",
        s(grids),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--rejects",
        s(&rej),
        "--json",
    ]))
    .unwrap();
    let read = |p: &Path| -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(p)
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect()
    };
    (v, read(&out), read(&rej))
}

/// Runs `wangge assign --grids` on `input`, asserts it exits with 1 and
/// returns its stderr.
fn assign_fails(dir: &Path, grids: &Path, input: &Path) -> String {
    let out = wangge(&[
        "assign",
        "--grids",
        s(grids),
        "--input",
        s(input),
        "--output",
        s(&dir.join("o.csv")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_bad_row_is_rejected_with_its_row_number_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let grids = two_grids(dir.path());
    // BOM, CRLF, a quoted field with commas, text, NaN, empty, lat > 90,
    // swapped lon/lat, a duplicate id, a point outside, a truncated last line.
    let csv = "\u{feff}id,name,lon,lat\r\n\
               1,\"Wang, Li\",116.005,39.905\r\n\
               2,b,116.015,39.905\r\n\
               3,c,east,39.905\r\n\
               4,d,NaN,39.905\r\n\
               5,e,,39.905\r\n\
               6,f,116.005,91\r\n\
               7,g,39.905,116.005\r\n\
               2,h,116.001,39.901\r\n\
               9,i,116.5,39.905\r\n\
               10,j,116.0";
    let (v, out, rej) = assign(dir.path(), &grids, csv);
    assert_eq!(v["rows_in"], 10);
    assert_eq!(v["assigned"], 3);
    assert_eq!(v["rejected"], 7);
    assert_eq!(
        v["rows_in"].as_u64(),
        Some(v["assigned"].as_u64().unwrap() + v["rejected"].as_u64().unwrap())
    );
    assert_eq!(v["duplicate_ids"], 1);
    assert_eq!(v["duplicate_examples"][0], serde_json::json!([8, 2]));
    // Output: the input columns unchanged (BOM gone) plus grid_code.
    assert_eq!(out.len(), 3);
    assert_eq!(&out[0][1], "Wang, Li");
    assert_eq!((&out[0][0], &out[0][4]), ("1", "A"));
    assert_eq!((&out[1][0], &out[1][4]), ("2", "B"));
    assert_eq!((&out[2][0], &out[2][4]), ("2", "A"));
    let reason = |row: &str| -> String {
        let r = rej
            .iter()
            .find(|r| &r[0] == row)
            .unwrap_or_else(|| panic!("row {row} not in rejects"));
        r[1].to_owned()
    };
    assert!(
        reason("3").contains("\"east\" is not a number"),
        "{}",
        reason("3")
    );
    assert!(reason("4").contains("finite"), "{}", reason("4"));
    assert!(reason("5").contains("empty"), "{}", reason("5"));
    assert!(reason("6").contains("latitude 91"), "{}", reason("6"));
    assert!(reason("7").contains("swapped"), "{}", reason("7"));
    assert!(reason("10").contains("field"), "{}", reason("10"));
    // Outside: nearest grid B, 0.48° east of it at 39.905° N ≈ 41.1 km.
    let outside = rej.iter().find(|r| &r[0] == "9").unwrap();
    assert!(outside[1].contains("outside"), "{:?}", outside);
    assert_eq!(&outside[2], "B");
    let d: f64 = outside[3].parse().unwrap();
    let expect = 0.48 * 111_320.0 * 39.905_f64.to_radians().cos();
    assert!((d - expect).abs() / expect < 2e-3, "{d} vs {expect}");
    // The rejects keep the row's own fields.
    assert_eq!(&outside[4], "9");
}

#[test]
fn shared_edge_goes_east_and_results_do_not_depend_on_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let grids = two_grids(dir.path());
    let (_, out, _) = assign(
        dir.path(),
        &grids,
        "id,lon,lat\n1,116.01,39.905\n2,116.005,39.91\n",
    );
    // On the shared edge x = 116.01: the grid east of it. On the top edge of A
    // (the layer's outer boundary): not lost, A.
    assert_eq!(&out[0][3], "B");
    assert_eq!(&out[1][3], "A");
}

#[test]
fn header_without_coordinates_names_the_columns_found() {
    let dir = tempfile::tempdir().unwrap();
    let grids = two_grids(dir.path());
    let input = dir.path().join("in.csv");
    fs::write(&input, "id,x_coord,y_coord\n1,116,39.9\n").unwrap();
    let err = assign_fails(dir.path(), &grids, &input);
    assert!(err.contains("columns found: id, x_coord, y_coord"), "{err}");
    assert!(err.contains("in.csv"), "{err}");
    // Naming them works.
    let v: Json = serde_json::from_str(&wangge_ok(&[
        "assign",
        "--grids",
        s(&grids),
        "--input",
        s(&input),
        "--output",
        s(&dir.path().join("o.csv")),
        "--lon-col",
        "x_coord",
        "--lat-col",
        "y_coord",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["assigned"], 1);
}

#[test]
fn empty_input_is_a_clear_error_and_a_header_alone_is_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let grids = two_grids(dir.path());
    let input = dir.path().join("in.csv");
    fs::write(&input, "").unwrap();
    assert!(assign_fails(dir.path(), &grids, &input).contains("empty"));
    let (v, out, rej) = assign(dir.path(), &grids, "id,lon,lat\n");
    assert_eq!(
        (v["rows_in"].as_u64(), out.len(), rej.len()),
        (Some(0), 0, 0)
    );
}

#[test]
fn invalid_and_overlapping_grids_are_repaired_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let grids = dir.path().join("grids.geojson");
    // Z: a bow-tie (self-intersecting) over [0,2]²; Y overlaps X's east half.
    // X = [10,12]×[0,2], Y = [11,13]×[0,2].
    fs::write(
        &grids,
        r#"{"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"code":"Y"},"geometry":{"type":"Polygon","coordinates":[[[11,0],[13,0],[13,2],[11,2],[11,0]]]}},
{"type":"Feature","properties":{"code":"Z"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[2,2],[2,0],[0,2],[0,0]]]}},
{"type":"Feature","properties":{"code":"X"},"geometry":{"type":"Polygon","coordinates":[[[10,0],[12,0],[12,2],[10,2],[10,0]]]}}]}"#,
    )
    .unwrap();
    let input = dir.path().join("in.csv");
    // (1.5, 1.0) is in the right triangle of the bow-tie; (11.5, 1) is in
    // both X and Y: X has the lower code; (12.5, 1) only in Y; (0.3, 1) in
    // the left triangle of the bow-tie.
    fs::write(
        &input,
        "id,lon,lat\n1,1.5,1.0\n2,11.5,1\n3,12.5,1\n4,0.3,1.0\n",
    )
    .unwrap();
    let out = wangge(&[
        "assign",
        "--grids",
        s(&grids),
        "--input",
        s(&input),
        "--output",
        s(&dir.path().join("o.csv")),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("1 invalid") && err.contains("1 overlapping"),
        "{err}"
    );
    assert!(err.contains("lower code keeps the overlap"), "{err}");
    let v: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["repairs"]["invalid"], 1);
    assert_eq!(v["repairs"]["overlaps"], 1);
    let text = fs::read_to_string(dir.path().join("o.csv")).unwrap();
    let codes: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    assert_eq!(codes, vec!["Z", "X", "Y", "Z"]);
}

#[test]
fn locate_prints_the_code_or_the_nearest_grid() {
    let dir = tempfile::tempdir().unwrap();
    let grids = two_grids(dir.path());
    let v: Json = serde_json::from_str(&wangge_ok(&[
        "locate",
        "--grids",
        s(&grids),
        "116.015",
        "39.905",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (
            v["inside"].as_bool(),
            v["code"].as_str(),
            v["name"].as_str()
        ),
        (Some(true), Some("B"), Some("grid B"))
    );
    let v: Json = serde_json::from_str(&wangge_ok(&[
        "locate",
        "--grids",
        s(&grids),
        "115.99",
        "39.905",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["inside"], false);
    assert_eq!(v["nearest_code"], "A");
    let d = v["distance_m"].as_f64().unwrap();
    let expect = 0.01 * 111_320.0 * 39.905_f64.to_radians().cos();
    assert!((d - expect).abs() < 2.0, "{d} vs {expect}");
    // A bad coordinate is an error, not an answer.
    let out = wangge(&["locate", "--grids", s(&grids), "116", "95"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("latitude 95"));
}

/// The same registry written by pyarrow with lon/lat columns and as
/// GeoParquet WKB points; output and rejects read back with pyarrow.
#[test]
fn parquet_registry_round_trips_through_pyarrow() {
    use crate::support::{python, python_json};
    let dir = tempfile::tempdir().unwrap();
    let grids = two_grids(dir.path());
    for mode in ["write", "write-wkb"] {
        let input = dir.path().join(format!("{mode}.parquet"));
        python("parquet_io.py", &[mode, s(&input)]);
        let (out, rej) = (
            dir.path().join("out.parquet"),
            dir.path().join("rej.parquet"),
        );
        let v: Json = serde_json::from_str(&wangge_ok(&[
            "assign",
            "--grids",
            s(&grids),
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--rejects",
            s(&rej),
            "--json",
        ]))
        .unwrap();
        assert_eq!(
            (
                v["rows_in"].as_u64(),
                v["assigned"].as_u64(),
                v["rejected"].as_u64()
            ),
            (Some(8), Some(4), Some(4)),
            "{mode}: {v}"
        );
        let o = python_json("parquet_io.py", &["read", s(&out)]);
        let cols: Vec<&str> = o["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cols.last(), Some(&"grid_code"), "{mode}");
        let got: Vec<(i64, &str)> = o["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r["grid_code"].as_str().unwrap()))
            .collect();
        assert_eq!(got, vec![(1, "A"), (2, "B"), (7, "A"), (8, "B")], "{mode}");
        if mode == "write" {
            assert_eq!(o["rows"][1]["name"], "b, c");
        } else {
            // The GeoParquet metadata and the WKB column pass through.
            assert!(o["geo"].as_str().unwrap().contains("primary_column"), "{o}");
        }
        let r = python_json("parquet_io.py", &["read", s(&rej)]);
        let rows = r["rows"].as_array().unwrap();
        let by_id = |id: i64| {
            rows.iter()
                .find(|x| x["id"] == id)
                .unwrap_or_else(|| panic!("{mode}: id {id} not rejected"))
        };
        assert_eq!(by_id(3)["row"], 3);
        assert!(
            by_id(3)["reason"].as_str().unwrap().contains("null")
                || by_id(3)["reason"].as_str().unwrap().contains("empty"),
            "{}",
            by_id(3)
        );
        assert!(
            by_id(4)["reason"].as_str().unwrap().contains("finite"),
            "{}",
            by_id(4)
        );
        assert!(
            by_id(5)["reason"].as_str().unwrap().contains("latitude 91"),
            "{}",
            by_id(5)
        );
        assert_eq!(by_id(6)["nearest_code"], "B");
    }
}
