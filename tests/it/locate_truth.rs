//! One million random points over Beijing against 20,000 Voronoi grids made
//! by an independent Python script: every point that is not within 1e-8° of
//! a boundary gets exactly the grid GEOS (shapely `contains`) gives it, or is
//! rejected as outside exactly when GEOS finds no grid.

use std::collections::HashMap;

use crate::support::{python, s, wangge_ok};

#[test]
fn million_points_match_geos_off_boundary() {
    points_match_geos(&[], 1_000_000);
}

/// Regression: a grid layer made with shapely whose cells are partly
/// GeometryCollections (a polygon with a stray line and point, what GEOS
/// intersections return) was rejected cell by cell, and the points inside
/// those cells went to the rejects as "outside". Every 10th cell here.
#[test]
fn grids_written_as_geometry_collections_keep_their_points() {
    points_match_geos(&["--collections", "10"], 300_000);
}

/// `n` random points over the city against 20,000 Voronoi grids made with
/// `voronoi_grids.py EXTRA…`, compared with GEOS point by point.
fn points_match_geos(extra: &[&str], n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let grids = dir.path().join("grids.geojson");
    let points = dir.path().join("points.csv");
    let mut args = vec![s(&grids), "--cells", "20000", "--seed", "7"];
    args.extend_from_slice(extra);
    python("voronoi_grids.py", &args);
    let count = n.to_string();
    python(
        "locate_truth.py",
        &[s(&grids), s(&points), "--points", &count, "--seed", "11"],
    );
    let (out, rej) = (dir.path().join("out.csv"), dir.path().join("rej.csv"));
    let v: serde_json::Value = serde_json::from_str(&wangge_ok(&[
        "assign",
        "--grids",
        s(&grids),
        "--input",
        s(&points),
        "--output",
        s(&out),
        "--rejects",
        s(&rej),
        "--json",
        "--quiet",
    ]))
    .unwrap();
    assert_eq!(v["rows_in"], n);
    assert_eq!(
        v["assigned"].as_u64().unwrap() + v["rejected"].as_u64().unwrap(),
        n
    );

    // id -> our answer ("" = outside).
    let mut ours: HashMap<u64, String> = HashMap::with_capacity(n as usize);
    for r in csv::Reader::from_path(&out).unwrap().records() {
        let r = r.unwrap();
        ours.insert(r[0].parse().unwrap(), r[3].to_owned());
    }
    for r in csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&rej)
        .unwrap()
        .records()
    {
        let r = r.unwrap();
        assert_eq!(&r[1], "outside every grid", "{r:?}");
        assert!(!r[2].is_empty(), "{r:?}");
        assert!(r[3].parse::<f64>().is_ok_and(|d| d >= 0.0), "{r:?}");
        ours.insert(r[4].parse().unwrap(), String::new());
    }
    assert_eq!(ours.len() as u64, n, "every id answered once");

    let truth = points.with_file_name("points.truth.csv");
    let (mut checked, mut boundary, mut inside, mut mismatches) = (0u64, 0u64, 0u64, Vec::new());
    for r in csv::Reader::from_path(&truth).unwrap().records() {
        let r = r.unwrap();
        let id: u64 = r[0].parse().unwrap();
        if &r[2] == "1" {
            boundary += 1;
            continue;
        }
        checked += 1;
        inside += u64::from(!r[1].is_empty());
        if ours[&id] != r[1] {
            mismatches.push((id, r[1].to_owned(), ours[&id].clone()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, e.g. (id, geos, ours) {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
    // The comparison is not vacuous: nearly all points checked, about half
    // inside (Beijing fills half of its box),
    // and some outside (the bbox margin and the gaps between districts).
    assert!(
        checked > n - n / 1000,
        "{checked} checked, {boundary} near a boundary"
    );
    assert!(
        inside > n * 3 / 10 && inside < checked,
        "{inside} inside of {checked}"
    );
}
