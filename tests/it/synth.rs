//! `wangge synth` on three real districts (two dense core districts and a
//! mountainous outer one), checked with GEOS (shapely) reading the
//! GeoPackage directly, and with GDAL's `ogrinfo`.

use std::fs;
use std::process::Command;

use crate::support::{python_json, repo, s, wangge_ok};

const SCALE: &str = "0.02";

fn synth(out: &std::path::Path, seed: &str) -> serde_json::Value {
    let districts = repo("tests/fixtures/districts-subset.geojson");
    serde_json::from_str(&wangge_ok(&[
        "synth",
        "--out",
        s(out),
        "--scale",
        SCALE,
        "--seed",
        seed,
        "--districts",
        s(&districts),
        "--json",
        "--quiet",
    ]))
    .unwrap()
}

#[test]
fn synthetic_city_tiles_nests_and_counts_like_geos_says() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gpkg");
    let summary = synth(&a, "7");
    let truth = python_json(
        "check_store.py",
        &[s(&a), s(&repo("data/beijing-census-2020.csv")), SCALE],
    );

    for (layer, digits) in [("districts", 6), ("streets", 9), ("communities", 12)] {
        let l = &truth["levels"][layer];
        assert_eq!(l["codes_valid"], true, "{layer}");
        assert_eq!(l["codes_unique"], true, "{layer}");
        assert_eq!(l["invalid"], 0, "{layer}: GEOS finds invalid polygons");
        let area = l["area_deg2"].as_f64().unwrap();
        // Siblings share their boundary vertices (noded): GEOS measures no
        // overlap at all.
        assert_eq!(
            l["overlap_deg2"].as_f64().unwrap(),
            0.0,
            "{layer}: {l} (area {area})"
        );
        if digits > 6 {
            assert_eq!(l["parent_prefix_ok"], true, "{layer}");
            // Children tile their parent exactly: the symmetric difference
            // between a parent and the union of its children is float noise.
            assert!(
                l["worst_cover_rel"].as_f64().unwrap() < 1e-12,
                "{layer}: {l}"
            );
        }
    }
    let n = |l: &str| truth["levels"][l]["count"].as_u64().unwrap();
    assert_eq!(n("districts"), 3);
    // Shares of the city's ~349 streets and ~7,000 communities.
    assert!((25..=60).contains(&n("streets")), "{}", n("streets"));
    assert!(
        (400..=900).contains(&n("communities")),
        "{}",
        n("communities")
    );

    for layer in [
        "buildings",
        "places",
        "objects",
        "events",
        "organizations",
        "persons",
    ] {
        assert!(
            truth[layer]["count"].as_u64().unwrap() > 0,
            "{layer} is empty"
        );
        assert_eq!(
            truth[layer]["outside_community"], 0,
            "{layer}: entities outside their community"
        );
    }
    // Persons per district = round(census × scale), exactly.
    assert_eq!(
        truth["persons_per_district"],
        truth["expected_per_district"]
    );
    let persons = truth["persons"]["count"].as_u64().unwrap();
    assert_eq!(summary["persons"].as_u64(), Some(persons));
    assert_eq!(truth["bad_id_check_digits"], 0);
    assert_eq!(truth["distinct_id_cards"].as_u64(), Some(persons));
    // ~2.5 persons per household.
    let hh = summary["households"].as_f64().unwrap();
    let ratio = persons as f64 / hh;
    assert!((2.2..=2.8).contains(&ratio), "{ratio}");
    // The core is denser than the mountains: persons per km² by district.
    let per = &truth["persons_per_district"];
    assert!(per["110102"].as_u64().unwrap() > per["110109"].as_u64().unwrap() / 2);
}

#[test]
fn same_seed_same_city_other_seed_other_city() {
    let dir = tempfile::tempdir().unwrap();
    let export = |store: &std::path::Path, layer: &str| {
        let out = dir.path().join(format!(
            "{}-{layer}.csv",
            store.file_stem().unwrap().to_str().unwrap()
        ));
        wangge_ok(&[
            "export",
            s(store),
            "--layer",
            layer,
            "--out",
            s(&out),
            "--quiet",
        ]);
        fs::read(out).unwrap()
    };
    let (a, b, c) = (
        dir.path().join("a.gpkg"),
        dir.path().join("b.gpkg"),
        dir.path().join("c.gpkg"),
    );
    synth(&a, "11");
    synth(&b, "11");
    synth(&c, "12");
    for layer in ["communities", "buildings", "persons", "events"] {
        assert!(
            export(&a, layer) == export(&b, layer),
            "{layer} differs between two runs with one seed"
        );
    }
    assert!(export(&a, "communities") != export(&c, "communities"));
}

#[test]
fn gdal_opens_the_store_with_the_same_counts() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.gpkg");
    synth(&a, "3");
    let info: serde_json::Value =
        serde_json::from_str(&wangge_ok(&["info", s(&a), "--json"])).unwrap();
    let out = Command::new("ogrinfo")
        .args(["-ro", "-so", "-al", s(&a)])
        .output()
        .expect("ogrinfo runs; run `scripts/test`, which installs gdal-bin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ERROR") && !stderr.contains("Warning"),
        "{stderr}"
    );
    let mut seen = 0;
    for block in text.split("Layer name: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        let count: u64 = block
            .lines()
            .find_map(|l| l.strip_prefix("Feature Count: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if let Some(ours) = info["layers"][name]["count"].as_u64() {
            assert_eq!(count, ours, "layer {name}");
            seen += 1;
        }
    }
    assert_eq!(seen, 11, "GDAL lists every layer:\n{text}");
}
