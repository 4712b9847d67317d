//! Stores that other tools edited or wrote, with GDAL itself as the other
//! tool: columns added to wangge's layers (`ogrinfo -sql "ALTER TABLE …"`),
//! rows appended (`ogr2ogr -append -addfields`), QGIS's own tables and an
//! extra layer, a dropped or retyped fixed column, and a GeoPackage that
//! `ogr2ogr` wrote from GeoJSON. What the commands leave in the file is read
//! back with Python's sqlite3 (`tests/py/foreign_dump.py`) and GDAL
//! (`ogrinfo`, and GDAL's GeoPackage validator), not with wangge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::partition::{TARGET, partition_ok};
use crate::serve::{Server, city_copy, get};
use crate::support::{gdal, gdal_sql as sql, python_json, s, wangge, wangge_ok};

/// Runs a GDAL command line tool, asserts success and returns stdout.
/// The sqlite3 view of a store (see `tests/py/foreign_dump.py`).
fn dump(store: &Path, tables: &[&str], values: &[&str]) -> Value {
    let tables = tables.join(",");
    let mut args = vec![s(store), "--tables", &tables, "--values"];
    args.extend_from_slice(values);
    python_json("foreign_dump.py", &args)
}

/// `COL` by `KEY` of every row of a layer, as sqlite3 reads them.
fn column(store: &Path, layer: &str, key: &str, col: &str) -> BTreeMap<String, Value> {
    let spec = format!("{layer}:{key}:{col}");
    let d = dump(store, &[], &[&spec]);
    d["values"][&spec]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The tables other tools own: QGIS's styles and projects, an extra layer
/// and its R-tree.
const THEIRS: [&str; 4] = [
    "layer_styles",
    "qgis_projects",
    "patrol_routes",
    "rtree_patrol_routes_geom",
];

/// GDAL's GeoPackage validator (`python3-gdal`) accepts the store.
fn assert_gdal_validates(store: &Path) {
    let mut tried = Vec::new();
    for py in [
        std::env::var("WANGGE_PYTHON").ok(),
        Some("python3".into()),
        Some("/usr/bin/python3".into()),
    ]
    .into_iter()
    .flatten()
    {
        let probe = Command::new(&py)
            .args(["-c", "import osgeo_utils.samples.validate_gpkg"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            tried.push(py);
            continue;
        }
        let out = Command::new(&py)
            .args([
                "-m",
                "osgeo_utils.samples.validate_gpkg",
                "-k",
                "--extra",
                s(store),
            ])
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "GDAL's validator on {}:\n{report}",
            store.display()
        );
        return;
    }
    panic!(
        "no python with osgeo_utils among {tried:?}; run `scripts/test`, which installs python3-gdal"
    );
}

/// Runs wangge, asserts it fails with exit code 1 and a message holding
/// every needle (and no SQL error or panic); returns the message.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let out = wangge(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "wangge {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "wangge {args:?}: {n:?} not in:\n{err}");
    }
    for bad in [
        "no such column",
        "panicked",
        "internal error",
        "SQLite error",
    ] {
        assert!(!err.contains(bad), "wangge {args:?}: {bad:?} in:\n{err}");
    }
    err
}

/// The tile of zoom `z` holding a point.
fn tile(lon: f64, lat: f64, z: u32) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor();
    let r = lat.to_radians();
    let y = ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor();
    (x as u32, y as u32)
}

/// The first vertex of a GeoJSON (multi)polygon.
fn first_vertex(geometry: &Value) -> (f64, f64) {
    let mut c = &geometry["coordinates"];
    while c[0].is_array() {
        c = &c[0];
    }
    (c[0].as_f64().unwrap(), c[1].as_f64().unwrap())
}

#[test]
fn columns_tables_and_layers_of_qgis_and_gdal_survive_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());

    // --- What a QGIS user does to the store, done with GDAL. ---
    sql(&store, "ALTER TABLE grids ADD COLUMN note TEXT");
    sql(&store, "UPDATE grids SET note = 'g-' || code");
    sql(&store, "ALTER TABLE buildings ADD COLUMN survey TEXT");
    sql(
        &store,
        "UPDATE buildings SET survey = 's-' || id WHERE fid % 2 = 0",
    );
    sql(&store, "ALTER TABLE persons ADD COLUMN verified INTEGER");
    sql(&store, "UPDATE persons SET verified = fid % 3");
    // Rows appended by GDAL, with a field the layer did not have.
    let appended = dir.path().join("appended.geojson");
    let grids_before = column(&store, "grids", "code", "parent_code");
    // Points where places already are (inside grids), for the new rows.
    let at: Vec<(f64, f64)> = crate::support::exported(&store, "places", dir.path())
        .iter()
        .filter(|f| {
            f["properties"]["grid_code"]
                .as_str()
                .is_some_and(|g| g.len() == 15)
        })
        .take(4)
        .map(|f| first_vertex(&f["geometry"]))
        .collect();
    let (lon, lat) = at[0];
    let features: Vec<Value> = (0..3)
        .map(|i: usize| {
            json!({
                "type": "Feature",
                "properties": {"id": format!("GDAL-{i}"), "kind": "kiosk", "name": "appended",
                               "phone": format!("010-{i}")},
                "geometry": {"type": "Point", "coordinates": [at[i].0, at[i].1]},
            })
        })
        .collect();
    std::fs::write(
        &appended,
        json!({"type": "FeatureCollection", "features": features}).to_string(),
    )
    .unwrap();
    gdal(
        "ogr2ogr",
        &[
            "-update",
            "-append",
            "-addfields",
            s(&store),
            s(&appended),
            "-nln",
            "places",
        ],
    );
    // QGIS's own tables and a layer of the user's.
    let styles = dir.path().join("styles.csv");
    std::fs::write(
        &styles,
        "f_table_name,f_geometry_column,styleName,styleQML,useAsDefault\n\
         grids,geom,households,\"<qgis><renderer-v2 type=\"\"graduated\"\"/></qgis>\",1\n",
    )
    .unwrap();
    gdal(
        "ogr2ogr",
        &["-update", s(&store), s(&styles), "-nln", "layer_styles"],
    );
    sql(
        &store,
        "CREATE TABLE qgis_projects (name TEXT PRIMARY KEY, metadata BLOB, content BLOB)",
    );
    sql(
        &store,
        "INSERT INTO qgis_projects VALUES ('plan', X'7b7d', X'504b0304deadbeef00')",
    );
    let routes = dir.path().join("routes.geojson");
    std::fs::write(
        &routes,
        json!({"type": "FeatureCollection", "features": [{"type": "Feature",
            "properties": {"route": "north", "km": 2.5},
            "geometry": {"type": "LineString", "coordinates": [[lon, lat], [lon + 0.01, lat + 0.01]]}}]})
        .to_string(),
    )
    .unwrap();
    gdal(
        "ogr2ogr",
        &["-update", s(&store), s(&routes), "-nln", "patrol_routes"],
    );
    let theirs = dump(&store, &THEIRS, &[])["tables"].clone();
    assert!(
        THEIRS
            .iter()
            .all(|t| theirs[t]["sql"].is_string()
                && !theirs[t]["rows"].as_array().unwrap().is_empty()),
        "{theirs}"
    );
    let notes_before = column(&store, "grids", "code", "note");
    let survey = column(&store, "buildings", "id", "survey");
    let verified = column(&store, "persons", "id", "verified");
    let info = wangge_ok(&["info", s(&store)]);
    assert!(info.contains("patrol_routes"), "{info}");

    // --- The full cycle. ---
    // A whole-city partition (the same codes), then one community again
    // with a smaller target (more grids: new codes).
    partition_ok(&store, &[]);
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for p in grids_before.values() {
        *per.entry(p.as_str().unwrap().to_owned()).or_default() += 1;
    }
    let (community, _) = per
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse((*c).clone())))
        .unwrap();
    let community = community.clone();
    wangge_ok(&[
        "partition",
        "--store",
        s(&store),
        "--target",
        "4",
        "--community",
        &community,
        "--quiet",
    ]);
    // A merge of two neighbours (GEOS says which) and a split.
    let cand = python_json("edit_candidates.py", &[s(&store), &community]);
    let pair = cand["neighbours"][0].as_array().unwrap();
    let (a, b) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    wangge_ok(&["edit", "--store", s(&store), "--quiet", "merge", a, b]);
    let split: Value = serde_json::from_str(&wangge_ok(&[
        "edit",
        "--store",
        s(&store),
        "--json",
        "--quiet",
        "split",
        a.min(b),
        "--parts",
        "2",
    ]))
    .unwrap();
    assert_eq!(split["added"].as_array().unwrap().len(), 1, "{split}");
    // An import that fills the added column from its property.
    let more = dir.path().join("more.geojson");
    std::fs::write(
        &more,
        json!({"type": "FeatureCollection", "features": [{"type": "Feature",
            "properties": {"id": "IMP-1", "kind": "clinic", "name": "imported", "phone": "010-9"},
            "geometry": {"type": "Point", "coordinates": [at[3].0, at[3].1]}}]})
        .to_string(),
    )
    .unwrap();
    wangge_ok(&[
        "import",
        s(&store),
        "--layer",
        "places",
        s(&more),
        "--quiet",
    ]);
    wangge_ok(&[
        "assign",
        "--store",
        s(&store),
        "--layers",
        "persons,places",
        "--quiet",
    ]);

    // --- What GDAL and sqlite3 find. ---
    let notes = column(&store, "grids", "code", "note");
    let (mut kept, mut new) = (0, 0);
    for (code, note) in &notes {
        if notes_before.contains_key(code) {
            assert_eq!(
                note,
                &json!(format!("g-{code}")),
                "grid {code} lost its note"
            );
            kept += 1;
        } else {
            assert_eq!(note, &Value::Null, "new grid {code} has a note");
            new += 1;
        }
    }
    assert!(kept > 100 && new >= 2, "kept {kept}, new {new}");
    assert!(notes.keys().any(|c| c.starts_with(&community)));
    assert!(
        !notes.contains_key(a.max(b)),
        "the merged-away grid is gone"
    );
    assert_eq!(column(&store, "buildings", "id", "survey"), survey);
    assert_eq!(column(&store, "persons", "id", "verified"), verified);
    let phone = column(&store, "places", "id", "phone");
    let grid_of = column(&store, "places", "id", "grid_code");
    for i in 0..3 {
        let id = format!("GDAL-{i}");
        assert_eq!(phone[&id], json!(format!("010-{i}")));
        assert!(
            grid_of[&id].as_str().is_some_and(|g| g.len() == 15),
            "{id}: {:?}",
            grid_of[&id]
        );
    }
    assert_eq!(phone["IMP-1"], json!("010-9"));
    assert!(grid_of["IMP-1"].as_str().is_some_and(|g| g.len() == 15));
    assert_eq!(phone.values().filter(|v| !v.is_null()).count(), 4);
    assert_eq!(
        dump(&store, &THEIRS, &[])["tables"],
        theirs,
        "other tools' tables changed"
    );
    let so = gdal("ogrinfo", &["-ro", "-so", s(&store), "grids"]);
    assert!(so.contains("note: String"), "{so}");
    assert!(
        so.contains(&format!("Feature Count: {}", notes.len())),
        "{so}"
    );
    assert_gdal_validates(&store);

    // --- serve: the grid with its note, a tile, the extra layer ignored. ---
    let server = Server::start(&store, &["--quiet"]);
    let code = notes
        .keys()
        .find(|c| notes_before.contains_key(*c))
        .unwrap();
    let g = get(&server.url(&format!("/v1/grids/{code}")), &[]);
    assert_eq!(g.status, 200);
    let g = g.json();
    assert_eq!(g["properties"]["note"], json!(format!("g-{code}")), "{g}");
    let (lon, lat) = first_vertex(&g["geometry"]);
    let (x, y) = tile(lon, lat, 14);
    let t = get(&server.url(&format!("/tiles/wangge/14/{x}/{y}")), &[]);
    assert_eq!(t.status, 200);
    assert!(!t.body.is_empty());
    assert_eq!(get(&server.url("/health"), &[]).status, 200);
    drop(server);
    assert_eq!(dump(&store, &THEIRS, &[])["tables"], theirs);
}

#[test]
fn dropped_and_retyped_columns_are_named_with_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let grid = column(&store, "grids", "code", "parent_code");
    let (code, community) = grid.iter().next().unwrap();
    let community = community.as_str().unwrap().to_owned();
    let missing = "layer \"grids\" has no column \"households\" (expected INTEGER)";

    // Dropped in QGIS/GDAL: readers name it, writers put it back.
    sql(&store, "ALTER TABLE grids DROP COLUMN households");
    let serve = [
        "serve",
        "--store",
        s(&store),
        "--addr",
        "127.0.0.1:0",
        "--quiet",
    ];
    let msg = fails(&serve, &[missing, "wangge partition"]);
    assert!(msg.contains(s(&store)), "{msg}");
    fails(&["edit", "--store", s(&store), "lock", code], &[missing]);
    fails(&["report", "--store", s(&store)], &[missing]);
    fails(
        &["locate", "--store", s(&store), "116.4", "39.9"],
        &[missing],
    );
    let out = wangge(&[
        "partition",
        "--store",
        s(&store),
        "--target",
        TARGET,
        "--community",
        &community,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("added column \"households\""), "{said}");
    // Every grid has its households again: those partitioned just now and
    // the others, derived from their buildings (sqlite3 sums them here).
    let households = column(&store, "grids", "code", "households");
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    let hh = column(&store, "buildings", "id", "households");
    for (id, g) in column(&store, "buildings", "id", "grid_code") {
        if let Some(g) = g.as_str() {
            *sums.entry(g.to_owned()).or_default() += hh[&id].as_i64().unwrap();
        }
    }
    assert_eq!(households.len(), grid.len());
    for (code, n) in &households {
        assert_eq!(
            n.as_i64(),
            Some(sums.get(code).copied().unwrap_or(0)),
            "grid {code}"
        );
    }
    Server::start(&store, &["--quiet"]);

    // A key column dropped: no command can make it up, and the failing
    // ones write nothing.
    let copy = dir.path().join("nokey.gpkg");
    std::fs::copy(&store, &copy).unwrap();
    sql(&copy, "ALTER TABLE buildings DROP COLUMN id");
    let bytes = std::fs::read(&copy).unwrap();
    let nokey = "layer \"buildings\" has no column \"id\" (expected TEXT)";
    fails(
        &["partition", "--store", s(&copy), "--target", TARGET],
        &[nokey, "cannot be made up"],
    );
    fails(
        &["assign", "--store", s(&copy), "--layers", "persons"],
        &[nokey],
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        bytes,
        "a refused command wrote"
    );

    // Retyped (GDAL's ALTER COLUMN … TYPE, as QGIS's field editor does):
    // every command refuses, naming the declared and the expected type.
    gdal(
        "ogrinfo",
        &[
            s(&store),
            "-q",
            "-dialect",
            "OGRSQL",
            "-sql",
            "ALTER TABLE communities ALTER COLUMN code TYPE integer",
        ],
    );
    let bytes = std::fs::read(&store).unwrap();
    let retyped = "column \"code\" of layer \"communities\" is declared MEDIUMINT (expected TEXT)";
    let places = dir.path().join("p.geojson");
    std::fs::write(
        &places,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"id":"Q1"},"geometry":{"type":"Point","coordinates":[116.4,39.9]}}]}"#,
    )
    .unwrap();
    for args in [
        vec!["partition", "--store", s(&store), "--target", TARGET],
        vec!["edit", "--store", s(&store), "lock", code],
        vec!["assign", "--store", s(&store), "--layers", "persons"],
        vec!["import", s(&store), "--layer", "places", s(&places)],
        serve.to_vec(),
    ] {
        fails(&args, &[retyped, "expected type back"]);
    }
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bytes,
        "a refused command wrote"
    );
}

/// `wangge export` of a layer, each feature's properties cut to `keep`
/// and one-part multipolygons written as polygons (what another tool
/// would produce).
fn foreign_geojson(store: &Path, layer: &str, keep: &[&str], dir: &Path) -> std::path::PathBuf {
    let mut features = crate::support::exported(store, layer, dir);
    for f in &mut features {
        let props = f["properties"].as_object().unwrap();
        f["properties"] = keep
            .iter()
            .map(|k| ((*k).to_owned(), props[*k].clone()))
            .collect();
        let g = &mut f["geometry"];
        if g["type"] == "MultiPolygon" && g["coordinates"].as_array().unwrap().len() == 1 {
            let one = g["coordinates"][0].clone();
            *g = json!({"type": "Polygon", "coordinates": one});
        }
    }
    let out = dir.join(format!("{layer}.min.geojson"));
    std::fs::write(
        &out,
        json!({"type": "FeatureCollection", "features": features}).to_string(),
    )
    .unwrap();
    out
}

#[test]
fn a_geopackage_written_by_ogr2ogr_is_completed_or_its_gaps_named() {
    let dir = tempfile::tempdir().unwrap();
    let city = city_copy(dir.path());
    let communities = foreign_geojson(&city, "communities", &["code", "name"], dir.path());
    let buildings = foreign_geojson(
        &city,
        "buildings",
        &["id", "kind", "floors", "households"],
        dir.path(),
    );
    let persons = foreign_geojson(&city, "persons", &["id", "kind", "building_id"], dir.path());
    let made = dir.path().join("foreign.gpkg");
    gdal(
        "ogr2ogr",
        &[
            "-f",
            "GPKG",
            s(&made),
            s(&communities),
            "-nln",
            "communities",
        ],
    );
    gdal(
        "ogr2ogr",
        &[
            "-update",
            s(&made),
            s(&buildings),
            "-nln",
            "buildings",
            "-lco",
            "SPATIAL_INDEX=NO",
        ],
    );
    gdal(
        "ogr2ogr",
        &["-update", s(&made), s(&persons), "-nln", "persons"],
    );
    let before = dump(&made, &[], &["communities:code:name"]);
    // Polygons and multipolygons: GDAL declares GEOMETRY, which holds both.
    assert_eq!(
        before["geometry"]["communities"],
        json!(["geom", "GEOMETRY"]),
        "{}",
        before["geometry"]
    );

    // serve names exactly what is missing.
    let serve = [
        "serve",
        "--store",
        s(&made),
        "--addr",
        "127.0.0.1:0",
        "--quiet",
    ];
    fails(
        &serve,
        &[
            "layer \"communities\" has no column \"households\" (expected INTEGER)",
            "layer \"communities\" has no column \"parent_code\" (expected TEXT)",
            "layer \"communities\" has no column \"area_m2\" (expected REAL)",
            "layer \"buildings\" has no R-tree spatial index",
            "layer \"persons\" has no column \"grid_code\" (expected TEXT)",
            "complete the store",
        ],
    );

    // partition completes it; sqlite3 finds the values the synthetic city
    // had (it derived them the same way), GDAL a valid GeoPackage.
    let out = wangge(&[
        "partition",
        "--store",
        s(&made),
        "--target",
        TARGET,
        "--assign",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("created the R-tree spatial index"), "{said}");
    let specs = [
        "communities:code:parent_code",
        "communities:code:households",
        "communities:code:persons",
        "communities:code:area_m2",
    ];
    let now = dump(&made, &[], &specs);
    let truth = dump(&city, &[], &specs);
    for spec in &specs[..3] {
        assert_eq!(now["values"][spec], truth["values"][spec], "{spec}");
    }
    // Areas against an independent geodesic measure of the stored outlines
    // (equal-area projection, see foreign_dump.py): within 5e-6, as
    // partition's noding moved outlines by up to a centimetre after the
    // areas were derived.
    let measured = python_json(
        "foreign_dump.py",
        &[
            s(&made),
            "--values",
            specs[3],
            "--areas",
            "communities:code",
        ],
    );
    let areas = measured["values"][specs[3]].as_object().unwrap();
    assert_eq!(
        areas.len(),
        truth["values"][specs[3]].as_object().unwrap().len()
    );
    for (code, a) in areas {
        let (a, t) = (
            a.as_f64().unwrap(),
            measured["areas"][code].as_f64().unwrap(),
        );
        assert!((a - t).abs() <= 5e-6 * t, "{code}: {a} m² vs {t} m²");
    }
    let grids: BTreeSet<String> = column(&made, "grids", "code", "parent_code")
        .into_keys()
        .collect();
    assert!(grids.len() > areas.len(), "{} grids", grids.len());
    let assigned = column(&made, "persons", "id", "grid_code");
    assert!(
        assigned
            .values()
            .all(|g| g.as_str().is_some_and(|g| grids.contains(g)))
    );
    assert_gdal_validates(&made);
    let server = Server::start(&made, &["--quiet"]);
    let code = grids.iter().next().unwrap();
    assert_eq!(
        get(&server.url(&format!("/v1/grids/{code}")), &[]).status,
        200
    );
    drop(server);

    // Only polygons: GDAL declares POLYGON, where partition and noding
    // write multipolygons; partition promotes the layer.
    let polygons = dir.path().join("polygons.gpkg");
    gdal(
        "ogr2ogr",
        &[
            "-f",
            "GPKG",
            s(&polygons),
            s(&communities),
            "-nln",
            "communities",
            "-where",
            "OGR_GEOMETRY = 'POLYGON'",
            "-nlt",
            "POLYGON",
        ],
    );
    gdal(
        "ogr2ogr",
        &["-update", s(&polygons), s(&buildings), "-nln", "buildings"],
    );
    let names = dump(&polygons, &[], &["communities:code:name"]);
    assert_eq!(names["geometry"]["communities"], json!(["geom", "POLYGON"]));
    fails(
        &[
            "serve",
            "--store",
            s(&polygons),
            "--addr",
            "127.0.0.1:0",
            "--quiet",
        ],
        &["layer \"communities\" declares POLYGON geometries (expected MULTIPOLYGON)"],
    );
    let out = wangge(&["partition", "--store", s(&polygons), "--target", TARGET]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("declared MULTIPOLYGON instead of POLYGON"),
        "{said}"
    );
    let promoted = dump(&polygons, &[], &["communities:code:name"]);
    assert_eq!(
        promoted["geometry"]["communities"],
        json!(["geom", "MULTIPOLYGON"])
    );
    assert_eq!(promoted["values"], names["values"]);
    let so = gdal("ogrinfo", &["-ro", "-so", s(&polygons), "communities"]);
    assert!(so.contains("Geometry: Multi Polygon"), "{so}");
    assert_gdal_validates(&polygons);

    // Another geometry column or fid name: refused with the ogr2ogr fix.
    for (lco, needle) in [
        (
            "GEOMETRY_NAME=geometry",
            "keeps its geometry in column \"geometry\" (expected \"geom\"",
        ),
        (
            "FID=ogc_fid",
            "has the primary key \"ogc_fid\" (expected an INTEGER \"fid\"",
        ),
    ] {
        let other = dir.path().join(format!("{}.gpkg", &lco[..3]));
        gdal(
            "ogr2ogr",
            &[
                "-f",
                "GPKG",
                s(&other),
                s(&communities),
                "-nln",
                "communities",
                "-lco",
                lco,
            ],
        );
        gdal(
            "ogr2ogr",
            &["-update", s(&other), s(&buildings), "-nln", "buildings"],
        );
        fails(
            &["partition", "--store", s(&other), "--target", TARGET],
            &[needle, "ogr2ogr -lco"],
        );
        fails(
            &[
                "serve",
                "--store",
                s(&other),
                "--addr",
                "127.0.0.1:0",
                "--quiet",
            ],
            &[needle],
        );
    }
}
