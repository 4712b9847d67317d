//! Vector tiles against independent truths: PostGIS `ST_AsMVTGeom`, the
//! `mapbox-vector-tile` decoder, h3-py person counts and the `pmtiles`
//! reader (`tests/py/check_tiles.py`, `tests/py/check_archives.py`); plus
//! hand-made stores for privacy, bad input, edits and an `insta` snapshot.

use std::path::{Path, PathBuf};

use geo_types::{Geometry, LineString, Point, Polygon, polygon};
use serde_json::Value as Json;
use wangge_engine::model::Layer;
use wangge_engine::store::{AnyStore, Store, Value};
use wangge_tiler::mvt::{self, GeomKind, PropValue};
use wangge_tiler::tile::{TileCoord, tiles_covering};
use wangge_tiler::{Tiler, TilerOptions};

use crate::support::{gdal_sql, python_json, s, wangge_ok};

/// A partitioned synthetic city of three real districts (as the partition
/// tests build it), entities assigned to grids.
fn city(dir: &Path) -> PathBuf {
    let out = crate::partition::city(dir);
    crate::partition::partition_ok(&out, &["--assign"]);
    out
}

/// Writes `tiles.json`, `layers.json` and every non-empty tile as
/// `z/x/y.mvt` for the truth scripts.
fn write_tiles(tiler: &Tiler, tiles: &[TileCoord], dir: &Path) -> usize {
    let mut n = 0;
    for t in tiles {
        let bytes = tiler.encode(*t);
        if bytes.is_empty() {
            continue;
        }
        let d = dir.join(t.z().to_string()).join(t.x().to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("{}.mvt", t.y())), bytes).unwrap();
        n += 1;
    }
    let list: Vec<[u32; 3]> = tiles.iter().map(|t| [t.z().into(), t.x(), t.y()]).collect();
    std::fs::write(dir.join("tiles.json"), serde_json::to_vec(&list).unwrap()).unwrap();
    std::fs::write(
        dir.join("layers.json"),
        serde_json::to_vec(tiler.layers()).unwrap(),
    )
    .unwrap();
    n
}

/// Every tile over the city at zooms 0–12, and 3×3 blocks at 13–16 around
/// three spots of the bounds and the first event and organization.
fn sample_tiles(tiler: &Tiler, store: &Path) -> Vec<TileCoord> {
    let b = tiler.bounds();
    let mut tiles = Vec::new();
    for z in 0..=12 {
        tiles.extend(tiles_covering(b, z).unwrap().iter());
    }
    let mut spots = vec![
        ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0),
        (b[0] + (b[2] - b[0]) * 0.3, b[1] + (b[3] - b[1]) * 0.6),
        (b[0] + (b[2] - b[0]) * 0.7, b[1] + (b[3] - b[1]) * 0.35),
    ];
    let st = Store::open(store).unwrap();
    for layer in ["events", "organizations"] {
        let mut first = None;
        st.for_each(layer, |f| {
            if let (None, Geometry::Point(p)) = (first, &f.geometry) {
                first = Some((p.x(), p.y()));
            }
            Ok(())
        })
        .unwrap();
        spots.extend(first);
    }
    for z in 13..=16u8 {
        for &(lon, lat) in &spots {
            let r = tiles_covering([lon, lat, lon, lat], z).unwrap();
            for dx in -1i64..=1 {
                for dy in -1i64..=1 {
                    let (x, y) = (i64::from(r.min_x) + dx, i64::from(r.min_y) + dy);
                    if let Ok(t) = TileCoord::new(z, x as u32, y as u32) {
                        tiles.push(t);
                    }
                }
            }
        }
    }
    tiles.sort_unstable();
    tiles.dedup();
    tiles
}

#[test]
fn tiles_match_postgis_st_asmvtgeom_the_store_and_h3() {
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    let tiler = Tiler::open_with(
        &store,
        TilerOptions {
            simplify: false,
            ..TilerOptions::default()
        },
    )
    .unwrap();
    assert!(tiler.warnings().is_empty(), "{:?}", tiler.warnings());
    let tiles = sample_tiles(&tiler, &store);
    let out = dir.path().join("tiles");
    let written = write_tiles(&tiler, &tiles, &out);
    assert!(written > 50, "{written} non-empty tiles");
    if std::env::var_os("WANGGE_KEEP_TILES").is_some() {
        eprintln!("keeping {}", dir.path().display());
        std::mem::forget(dir);
    }
    let truth = python_json("check_tiles.py", &[s(&store), s(&out)]);
    assert_eq!(truth["mismatches"], Json::Array(vec![]), "{truth:#}");
    // The comparison is not vacuous: every layer was compared somewhere.
    for layer in [
        "districts",
        "streets",
        "communities",
        "grids",
        "roads",
        "buildings",
        "places",
        "objects",
        "events",
        "organizations",
        "persons_hex",
    ] {
        assert!(
            truth["compared"][layer].as_u64().unwrap_or(0) > 0,
            "{layer} never compared: {truth:#}"
        );
    }
}

#[test]
fn archives_read_back_with_independent_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    let (pm, mb) = (dir.path().join("c.pmtiles"), dir.path().join("c.mbtiles"));
    let mut summaries = Vec::new();
    for out in [&pm, &mb] {
        let j: Json = serde_json::from_str(&wangge_ok(&[
            "export-tiles",
            "--store",
            s(&store),
            "--out",
            s(out),
            "--minzoom",
            "0",
            "--maxzoom",
            "16",
            "--json",
            "--quiet",
        ]))
        .unwrap();
        summaries.push(j);
    }
    // What the archives must hold: every non-empty tile the tiler encodes.
    let tiler = Tiler::open(&store).unwrap();
    let mut tiles = Vec::new();
    for z in 0..=16 {
        tiles.extend(tiles_covering(tiler.bounds(), z).unwrap().iter());
    }
    let raw = dir.path().join("raw");
    let n = write_tiles(&tiler, &tiles, &raw);
    for j in &summaries {
        assert_eq!(j["tiles_written"].as_u64(), Some(n as u64), "{j:#}");
    }
    let truth = python_json("check_archives.py", &[s(&pm), s(&mb), s(&raw)]);
    assert_eq!(truth["mismatches"], Json::Array(vec![]), "{truth:#}");
    assert_eq!(truth["pmtiles_tiles"].as_u64(), Some(n as u64));
    assert_eq!(truth["mbtiles_tiles"].as_u64(), Some(n as u64));
    // Down to zoom 16 the root directory would pass 16 KiB: leaves were
    // written, and the independent reader followed them.
    assert!(
        truth["pmtiles_leaf_directory_bytes"].as_u64().unwrap() > 0,
        "{truth:#}"
    );
    // A bad extension or zoom range is a clear error, not a panic.
    let bad = crate::support::wangge(&[
        "export-tiles",
        "--store",
        s(&store),
        "--out",
        s(&dir.path().join("x.zip")),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains(".pmtiles or .mbtiles"));
}

// ---------------------------------------------------------------------------
// Hand-made stores

const LON: f64 = 116.40;
const LAT: f64 = 39.90;

fn square(x0: f64, y0: f64, d: f64) -> Polygon<f64> {
    polygon![(x: x0, y: y0), (x: x0 + d, y: y0), (x: x0 + d, y: y0 + d), (x: x0, y: y0 + d), (x: x0, y: y0)]
}

fn admin(code: &str, name: &str, parent: &str) -> Vec<Value> {
    vec![
        code.into(),
        name.into(),
        parent.into(),
        Value::Null,
        Value::Null,
        Value::Null,
    ]
}

fn grid(code: &str, parent: &str, households: i64) -> Vec<Value> {
    vec![
        code.into(),
        format!("第{}网格", &code[12..]).into(),
        parent.into(),
        households.into(),
        (households * 3).into(),
        Value::Integer(1),
        Value::Real(1.0),
    ]
}

/// One district, two grids of community 110101001001 (one with a hole), a
/// road, a place, 12 persons in one spot and 9 in another, target 10.
fn tiny_store(path: &Path) -> Store {
    let mut st = Store::create(path).unwrap();
    for l in [
        Layer::Districts,
        Layer::Grids,
        Layer::Roads,
        Layer::Places,
        Layer::Persons,
    ] {
        st.create_layer(&l.schema()).unwrap();
    }
    let mp = |p: Polygon<f64>| Geometry::MultiPolygon(p.into());
    let mut w = st.writer("districts").unwrap();
    w.insert(&mp(square(LON, LAT, 0.01)), &admin("110101", "东城区", ""))
        .unwrap();
    w.commit().unwrap();
    let mut w = st.writer("grids").unwrap();
    let holed = Polygon::new(
        square(LON, LAT, 0.005).exterior().clone(),
        vec![square(LON + 0.002, LAT + 0.002, 0.001).exterior().clone()],
    );
    w.insert(&mp(holed), &grid("110101001001001", "110101001001", 8))
        .unwrap();
    w.insert(
        &mp(square(LON + 0.005, LAT, 0.005)),
        &grid("110101001001002", "110101001001", 12),
    )
    .unwrap();
    w.commit().unwrap();
    let mut w = st.writer("roads").unwrap();
    let road = LineString::from(vec![(LON - 0.01, LAT + 0.004), (LON + 0.02, LAT + 0.004)]);
    w.insert(
        &Geometry::LineString(road),
        &["R1".into(), "arterial".into(), "长安街".into()],
    )
    .unwrap();
    w.commit().unwrap();
    let mut w = st.writer("places").unwrap();
    w.insert(
        &Geometry::Point(Point::new(LON + 0.001, LAT + 0.001)),
        &[
            "S1".into(),
            "school".into(),
            "史家小学".into(),
            "110101001001".into(),
            "110101001001001".into(),
        ],
    )
    .unwrap();
    w.commit().unwrap();
    let mut w = st.writer("persons").unwrap();
    let spots = [
        (LON + 0.0071, LAT + 0.0071, 12),
        (LON + 0.05, LAT + 0.05, 9),
    ];
    let mut i = 0;
    for (lon, lat, n) in spots {
        for k in 0..n {
            i += 1;
            let p = Point::new(lon + f64::from(k) * 1e-6, lat);
            w.insert(
                &Geometry::Point(p),
                &[
                    format!("P{i:04}").into(),
                    "registered".into(),
                    "11010119900101001X".into(),
                    "H1".into(),
                    "B1".into(),
                    "25-34".into(),
                    Value::Integer(1),
                    "110101001001".into(),
                    "110101001001002".into(),
                ],
            )
            .unwrap();
        }
    }
    w.commit().unwrap();
    st.set_meta("partition_target", "10").unwrap();
    st
}

/// The z16 tile holding the tiny store's district corner.
fn tiny_tile(z: u8) -> TileCoord {
    let r = tiles_covering([LON + 0.001, LAT + 0.001, LON + 0.001, LAT + 0.001], z).unwrap();
    TileCoord::new(z, r.min_x, r.min_y).unwrap()
}

/// A decoded tile as GeoJSON-like JSON, for snapshots.
fn decoded_json(bytes: &[u8]) -> Json {
    let layers = mvt::decode(bytes).unwrap();
    let prop = |v: &PropValue| match v {
        PropValue::String(s) => Json::from(s.as_str()),
        PropValue::Double(d) => Json::from(*d),
        PropValue::Int(i) => Json::from(*i),
        PropValue::Bool(b) => Json::from(*b),
    };
    Json::Array(
        layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "layer": l.name,
                    "extent": l.extent,
                    "features": l.features.iter().map(|f| serde_json::json!({
                        "id": f.id,
                        "type": format!("{:?}", f.kind.unwrap()),
                        "properties": f.properties.iter().map(|(k, v)| (k.clone(), prop(v))).collect::<serde_json::Map<_, _>>(),
                        "paths": f.paths,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

#[test]
fn decoded_tile_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gpkg");
    drop(tiny_store(&path));
    let tiler = Tiler::open_with(
        &path,
        TilerOptions {
            simplify: false,
            ..TilerOptions::default()
        },
    )
    .unwrap();
    // The z14 tile holding the whole district (0.01° square), its two grids
    // (one with a hole), the road, the place and the hexagon of 12.
    let c = (LON + 0.005, LAT + 0.005);
    let r = tiles_covering([c.0, c.1, c.0, c.1], 14).unwrap();
    let bytes = tiler.tile(14, r.min_x, r.min_y).unwrap();
    insta::assert_json_snapshot!("tiny_store_z14", decoded_json(&bytes));
}

#[test]
fn persons_only_as_hexagons_of_ten_or_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gpkg");
    drop(tiny_store(&path));
    let tiler = Tiler::open(&path).unwrap();
    assert!(tiler.layers().iter().all(|l| l.name != "persons"));
    let mut seen = Vec::new();
    for z in 0..=16u8 {
        for t in tiles_covering(tiler.bounds(), z).unwrap().iter() {
            for l in mvt::decode(&tiler.encode(t)).unwrap() {
                for f in &l.features {
                    // No feature carries a person's identifiers.
                    for (k, v) in &f.properties {
                        assert!(!["id_card", "household_id", "age_band"].contains(&k.as_str()));
                        assert_ne!(v, &PropValue::String("11010119900101001X".into()));
                    }
                    if f.kind == Some(GeomKind::Point) {
                        assert_eq!(l.name, "places", "only the place is a point");
                    }
                    if l.name == "persons_hex" {
                        let n = f.properties.iter().find(|p| p.0 == "persons").unwrap();
                        seen.push((z, n.1.clone()));
                    }
                }
            }
        }
    }
    // At zoom 12–13 (resolution 8) the 12 are one hexagon and the 9 are not shown.
    // (It may show in two tiles: the buffer.)
    let mut at12: Vec<_> = seen.iter().filter(|s| s.0 == 12).map(|s| &s.1).collect();
    at12.dedup();
    assert_eq!(at12, vec![&PropValue::Int(12)]);
    // Regression (differencing): at every zoom the 9 are in no hexagon, so a
    // coarse hexagon holding both spots says 12, not 21, and 21 − 12 cannot
    // reveal the suppressed 9.
    assert!(seen.iter().all(|s| s.1 == PropValue::Int(12)), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| matches!(s.1, PropValue::Int(n) if n >= 10))
    );
    assert!(seen.iter().all(|s| s.0 <= 13));
}

#[test]
fn bad_and_missing_input_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gpkg");
    let st = tiny_store(&path);
    // A malformed geometry blob, an empty geometry collection and a swapped
    // lon/lat point, written behind the store's back.
    // GDAL writing the file, as another tool would (its R-tree triggers
    // would refuse the bad blobs, so they are dropped first).
    gdal_sql(&path, "DROP TRIGGER IF EXISTS rtree_places_geom_insert");
    gdal_sql(&path, "DROP TRIGGER IF EXISTS rtree_persons_geom_insert");
    for (id, blob) in [
        ("bad1", "47500001E610000001 01"),
        ("bad2", "6E6F7420612067656F6D65747279"),
    ] {
        gdal_sql(
            &path,
            &format!(
                "INSERT INTO places (geom, id) VALUES (X'{}', '{id}')",
                blob.replace(' ', "")
            ),
        );
    }
    gdal_sql(
        &path,
        "INSERT INTO persons (geom, id) VALUES (X'47500001', 'P-bad')",
    );
    drop(st);
    let tiler = Tiler::open(&path).unwrap();
    let w = tiler.warnings();
    assert!(w.iter().any(|w| w.starts_with("places fid")), "{w:?}");
    // A bad person is counted, never named: no row id, no position.
    assert!(
        w.iter()
            .any(|w| w == "persons: 1 feature(s) without a valid point; not counted"),
        "{w:?}"
    );
    // The good place is still served.
    let t = tiny_tile(16);
    let names: Vec<String> = mvt::decode(&tiler.tile(t.z(), t.x(), t.y()).unwrap())
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(names.contains(&"places".to_owned()), "{names:?}");
    // Out-of-range addresses are errors, not panics.
    assert!(tiler.tile(23, 0, 0).is_err());
    assert!(tiler.tile(3, 8, 0).is_err());
    // Above the last zoom: empty.
    assert!(tiler.tile(17, 0, 0).unwrap().is_empty());

    // A store with only an empty districts layer.
    let p2 = dir.path().join("empty.gpkg");
    let mut st = Store::create(&p2).unwrap();
    st.create_layer(&Layer::Districts.schema()).unwrap();
    drop(st);
    let tiler = Tiler::open(&p2).unwrap();
    assert_eq!(
        tiler
            .layers()
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        ["districts"]
    );
    assert!(tiler.tile(0, 0, 0).unwrap().is_empty());
    assert!(tiler.is_empty());
    // Exporting it writes a valid, empty archive (not the world's tiles).
    let out = dir.path().join("empty.mbtiles");
    let s =
        wangge_tiler::export(&tiler, &out, 0, 14, &wangge_engine::progress::NoProgress).unwrap();
    assert_eq!((s.tiles_visited, s.tiles_written), (0, 0));
    assert!(out.exists());
}

#[test]
fn reload_grids_after_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gpkg");
    let st = tiny_store(&path);
    let mut tiler = Tiler::open(&path).unwrap();
    let t = tiny_tile(15);
    let grids = |tiler: &Tiler| -> Vec<(String, Json)> {
        let bytes = tiler.tile(t.z(), t.x(), t.y()).unwrap();
        let j = decoded_json(&bytes);
        let mut v: Vec<(String, Json)> = j
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["layer"] == "grids")
            .flat_map(|l| l["features"].as_array().unwrap().clone())
            .map(|f| {
                (
                    f["properties"]["code"].as_str().unwrap().to_owned(),
                    f["properties"].clone(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = grids(&tiler);
    assert_eq!(before.len(), 2);
    let bb = tiler.grids_bounds("110101001001").unwrap();
    assert!(
        (bb[0] - LON).abs() < 1e-9 && (bb[2] - (LON + 0.01)).abs() < 1e-9,
        "{bb:?}"
    );
    assert!(
        (bb[1] - LAT).abs() < 1e-9 && (bb[3] - (LAT + 0.005)).abs() < 1e-9,
        "{bb:?}"
    );
    assert_eq!(tiler.grids_bounds("110101001002"), None);
    assert_eq!(before[1].1["deviation"], Json::from(12.0 / 10.0 - 1.0));
    // The planner merges the two grids into one of 20 households.
    for statement in [
        "DELETE FROM grids WHERE code = '110101001001002'",
        "UPDATE grids SET households = 20 WHERE code = '110101001001001'",
        "UPDATE places SET grid_code = '110101001001009' WHERE id = 'S1'",
    ] {
        gdal_sql(st.path(), statement);
    }
    let place_grid = |tiler: &Tiler| -> Json {
        let j = decoded_json(&tiler.tile(t.z(), t.x(), t.y()).unwrap());
        j.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["layer"] == "places")
            .flat_map(|l| l["features"].as_array().unwrap().clone())
            .map(|f| f["properties"]["grid_code"].clone())
            .next()
            .unwrap()
    };
    assert_eq!(place_grid(&tiler), Json::from("110101001001001"));
    let changes = tiler
        .reload_grids(&AnyStore::Gpkg(Store::open(&path).unwrap()), "110101001001")
        .unwrap();
    // What changed: the removed grid and the one that gained its
    // households (ids are the codes), the place with its new grid code.
    let changed: Vec<(&str, Vec<u64>)> = changes
        .layers()
        .iter()
        .map(|l| (l.name(), l.ids().to_vec()))
        .collect();
    assert_eq!(
        changed,
        [
            ("places", vec![1]),
            ("grids", vec![110101001001001, 110101001001002])
        ],
        "{changes:?}"
    );
    assert_eq!(
        changes
            .layers()
            .iter()
            .map(|l| (l.minzoom(), l.maxzoom()))
            .collect::<Vec<_>>(),
        [(14, 16), (11, 16)]
    );
    assert!(changes.touches(t, &|_| true));
    assert!(!changes.touches(t, &|l| l == "roads"));
    // The community's entities carry their new grid codes.
    assert_eq!(place_grid(&tiler), Json::from("110101001001009"));
    let after = grids(&tiler);
    assert_eq!(after.len(), 1, "{after:?}");
    let bb = tiler.grids_bounds("110101001001").unwrap();
    assert!((bb[2] - (LON + 0.005)).abs() < 1e-9, "{bb:?}");
    assert_eq!(after[0].1["households"], Json::from(20));
    assert_eq!(after[0].1["deviation"], Json::from(1.0));
    // Another community's reload leaves these alone.
    let changes = tiler
        .reload_grids(&AnyStore::Gpkg(Store::open(&path).unwrap()), "110101001002")
        .unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(grids(&tiler), after);
    // The reloaded tiler writes every tile as a fresh one does.
    let fresh = Tiler::open(&path).unwrap();
    for z in 11..=16 {
        let t = tiny_tile(z);
        assert_eq!(
            tiler.tile(t.z(), t.x(), t.y()).unwrap(),
            fresh.tile(t.z(), t.x(), t.y()).unwrap(),
            "z{z}"
        );
    }
}
