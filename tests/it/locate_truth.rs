//! One million random points over Beijing against 20,000 Voronoi grids made
//! by an independent Python script: every point that is not within 1e-8° of
//! a boundary gets exactly the grid GEOS (shapely `contains`) gives it, or is
//! rejected as outside exactly when GEOS finds no grid.

use std::collections::HashMap;

use crate::support::{python, s, wangge_ok};

#[test]
fn million_points_match_geos_off_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let grids = dir.path().join("grids.geojson");
    let points = dir.path().join("points.csv");
    python(
        "voronoi_grids.py",
        &[s(&grids), "--cells", "20000", "--seed", "7"],
    );
    python(
        "locate_truth.py",
        &[s(&grids), s(&points), "--points", "1000000", "--seed", "11"],
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
    assert_eq!(v["rows_in"], 1_000_000);
    assert_eq!(
        v["assigned"].as_u64().unwrap() + v["rejected"].as_u64().unwrap(),
        1_000_000
    );

    // id -> our answer ("" = outside).
    let mut ours: HashMap<u64, String> = HashMap::with_capacity(1_000_000);
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
        assert!(r[1].starts_with("outside every grid; nearest"), "{r:?}");
        ours.insert(r[4].parse().unwrap(), String::new());
    }
    assert_eq!(ours.len(), 1_000_000, "every id answered once");

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
        checked > 999_000,
        "{checked} checked, {boundary} near a boundary"
    );
    assert!(
        inside > 300_000 && inside < checked,
        "{inside} inside of {checked}"
    );
}
