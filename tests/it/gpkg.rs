//! The GeoPackage store checked against GDAL, the reader QGIS uses: what we
//! write must be what `ogrinfo`/`ogr2ogr` read, with no warning, and what
//! GDAL writes into our file must be what we read back.

use std::path::Path;
use std::process::Command;

use geo_types::{Geometry, LineString, MultiLineString, MultiPolygon, Point, Polygon};
use wangge_engine::store::{Column, ColumnType, GeomType, LayerSchema, Store, Value};

/// Runs a GDAL tool, failing the test (not skipping it) when GDAL is absent:
/// it is the independent truth these tests exist for.
fn gdal(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {program} ({e}); GDAL is required: run scripts/test, which installs gdal-bin")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stderr}\n{stdout}"
    );
    // GDAL reports anything it finds odd about a GeoPackage as "Warning n:"
    // or "ERROR n:" on stderr; a valid file produces neither.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") || l.to_ascii_lowercase().contains("warning"))
        .collect();
    assert!(
        complaints.is_empty(),
        "{program} {args:?} complained:\n{}",
        complaints.join("\n")
    );
    stdout
}

fn ring(coords: &[(f64, f64)]) -> LineString<f64> {
    coords.to_vec().into()
}

/// A fixture layer: schema, features, and what GDAL should report.
struct Layer {
    schema: LayerSchema,
    features: Vec<(Geometry<f64>, Vec<Value>)>,
    gdal_type: &'static str,
}

impl Layer {
    fn extent(&self) -> [f64; 4] {
        let mut e = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        let mut add = |c: &geo_types::Coord<f64>| {
            e = [e[0].min(c.x), e[1].min(c.y), e[2].max(c.x), e[3].max(c.y)];
        };
        for (g, _) in &self.features {
            match g {
                Geometry::Point(p) => add(&p.0),
                Geometry::LineString(l) => l.0.iter().for_each(&mut add),
                Geometry::MultiLineString(m) => m.0.iter().flat_map(|l| &l.0).for_each(&mut add),
                Geometry::Polygon(p) => p.exterior().0.iter().for_each(&mut add),
                Geometry::MultiPolygon(m) => {
                    m.0.iter().flat_map(|p| &p.exterior().0).for_each(&mut add)
                }
                other => panic!("fixture has no {other:?}"),
            }
        }
        e
    }
}

fn col(name: &str, ty: ColumnType) -> Column {
    Column {
        name: name.into(),
        ty,
    }
}

/// Central Beijing: a grid of points, grid cells with a hole, districts as
/// multipolygons, roads and a river. Coordinates have full f64 precision.
fn fixture() -> Vec<Layer> {
    let pois = (0..1000)
        .map(|i| {
            let (x, y) = (
                116.3 + f64::from(i % 40) * 0.001,
                39.9 + f64::from(i / 40) * 0.001,
            );
            let name = if i % 7 == 0 {
                Value::Null
            } else {
                Value::from(format!("楼 {i}"))
            };
            (
                Geometry::Point(Point::new(x, y)),
                vec![name, Value::from(i64::from(i % 30)), Value::from(x * 2.5)],
            )
        })
        .collect();
    let hole = Polygon::new(
        ring(&[
            (116.397_128, 39.916_527),
            (116.417_3, 39.916_527),
            (116.417_3, 39.930_01),
            (116.397_128, 39.930_01),
            (116.397_128, 39.916_527),
        ]),
        vec![ring(&[
            (116.40, 39.92),
            (116.40, 39.925),
            (116.405, 39.925),
            (116.405, 39.92),
            (116.40, 39.92),
        ])],
    );
    let plain = Polygon::new(
        ring(&[
            (116.42, 39.9),
            (116.43, 39.9),
            (116.425, 39.91),
            (116.42, 39.9),
        ]),
        vec![],
    );
    let district = MultiPolygon(vec![hole.clone(), plain.clone()]);
    let road = |i: u32| {
        let y = 39.9 + f64::from(i) * 0.005;
        Geometry::LineString(ring(&[(116.3, y), (116.35, y + 0.001), (116.4, y - 0.002)]))
    };
    vec![
        Layer {
            schema: LayerSchema {
                name: "pois".into(),
                geometry: GeomType::Point,
                columns: vec![
                    col("name", ColumnType::Text),
                    col("floors", ColumnType::Integer),
                    col("height", ColumnType::Real),
                ],
            },
            features: pois,
            gdal_type: "Point",
        },
        Layer {
            schema: LayerSchema {
                name: "grids".into(),
                geometry: GeomType::Polygon,
                columns: vec![col("code", ColumnType::Text), col("area", ColumnType::Real)],
            },
            features: vec![
                (
                    Geometry::Polygon(hole.clone()),
                    vec!["110101001001".into(), 1.25.into()],
                ),
                (
                    Geometry::Polygon(plain.clone()),
                    vec!["110101001002".into(), Value::Null],
                ),
            ],
            gdal_type: "Polygon",
        },
        Layer {
            schema: LayerSchema {
                name: "districts".into(),
                geometry: GeomType::MultiPolygon,
                columns: vec![col("adcode", ColumnType::Integer)],
            },
            features: vec![
                (Geometry::MultiPolygon(district), vec![110_101.into()]),
                (
                    Geometry::MultiPolygon(MultiPolygon(vec![plain])),
                    vec![110_102.into()],
                ),
            ],
            gdal_type: "Multi Polygon",
        },
        Layer {
            schema: LayerSchema {
                name: "roads".into(),
                geometry: GeomType::LineString,
                columns: vec![],
            },
            features: (0..5).map(|i| (road(i), vec![])).collect(),
            gdal_type: "Line String",
        },
        Layer {
            schema: LayerSchema {
                name: "rivers".into(),
                geometry: GeomType::MultiLineString,
                columns: vec![col("name", ColumnType::Text)],
            },
            features: vec![(
                Geometry::MultiLineString(MultiLineString(vec![
                    ring(&[(116.31, 39.95), (116.36, 39.94)]),
                    ring(&[(116.36, 39.94), (116.38, 39.93), (116.39, 39.95)]),
                ])),
                vec!["通惠河".into()],
            )],
            gdal_type: "Multi Line String",
        },
    ]
}

fn write_fixture(path: &Path) -> Vec<Layer> {
    let layers = fixture();
    let mut store = Store::create(path).unwrap();
    for layer in &layers {
        store.create_layer(&layer.schema).unwrap();
        let mut w = store.writer(&layer.schema.name).unwrap();
        for (g, values) in &layer.features {
            w.insert(g, values).unwrap();
        }
        assert_eq!(w.commit().unwrap(), layer.features.len() as u64);
    }
    store.set_meta("project", "东城区").unwrap();
    layers
}

/// `ogrinfo -so` output for one layer: the block after "Layer name: <name>".
fn layer_block<'a>(info: &'a str, name: &str) -> &'a str {
    let start = info
        .find(&format!("Layer name: {name}\n"))
        .unwrap_or_else(|| panic!("GDAL does not list layer {name}:\n{info}"));
    let rest = &info[start + 12..];
    &rest[..rest.find("Layer name: ").unwrap_or(rest.len())]
}

fn field<'a>(block: &'a str, key: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} in\n{block}"))
        .trim()
}

/// Parses `Extent: (minx, miny) - (maxx, maxy)`.
fn extent(block: &str) -> [f64; 4] {
    let nums: Vec<f64> = field(block, "Extent:")
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter(|s| !s.is_empty() && *s != "-")
        .map(|s| s.parse().unwrap())
        .collect();
    nums.try_into()
        .unwrap_or_else(|n| panic!("bad extent {n:?}"))
}

#[test]
fn gdal_reads_what_the_store_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongcheng.gpkg");
    let layers = write_fixture(&path);
    let file = path.to_str().unwrap();

    let info = gdal("ogrinfo", &["-ro", "-so", "-al", file]);
    for layer in &layers {
        let name = &layer.schema.name;
        let block = layer_block(&info, name);
        assert_eq!(field(block, "Geometry:"), layer.gdal_type, "{name}");
        assert_eq!(
            field(block, "Feature Count:"),
            layer.features.len().to_string(),
            "{name}"
        );
        assert_eq!(field(block, "FID Column ="), "fid");
        assert_eq!(field(block, "Geometry Column ="), "geom");
        assert!(
            block.contains("ID[\"EPSG\",4326]"),
            "{name} is not in EPSG:4326:\n{block}"
        );
        let (got, want) = (extent(block), layer.extent());
        for k in 0..4 {
            // ogrinfo prints six decimals.
            assert!(
                (got[k] - want[k]).abs() <= 5.1e-7,
                "{name} extent {got:?}, wrote {want:?}"
            );
        }
        for c in &layer.schema.columns {
            let ty = match c.ty {
                ColumnType::Integer => "Integer64",
                ColumnType::Real => "Real",
                ColumnType::Text => "String",
            };
            assert!(
                block.contains(&format!("\n{}: {ty} ", c.name)),
                "{name}.{} is not {ty}:\n{block}",
                c.name
            );
        }
    }
    // The metadata table is a GeoPackage attributes table.
    assert_eq!(
        field(layer_block(&info, "wangge_meta"), "Geometry:"),
        "None"
    );

    // Reading every feature decodes every geometry blob without complaint.
    let all = gdal("ogrinfo", &["-ro", "-al", file]);
    assert!(all.contains(
        "MULTILINESTRING ((116.31 39.95,116.36 39.94),(116.36 39.94,116.38 39.93,116.39 39.95))"
    ));
    assert!(all.contains("通惠河"));

    // GDAL answers a window query through our R-tree the same as brute force.
    let window = [116.3095, 39.9035, 116.3195, 39.9085];
    let expected = layers[0]
        .features
        .iter()
        .filter(|(g, _)| {
            let Geometry::Point(p) = g else {
                unreachable!()
            };
            (window[0]..=window[2]).contains(&p.x()) && (window[1]..=window[3]).contains(&p.y())
        })
        .count();
    assert_eq!(expected, 50);
    let spat: Vec<String> = window.iter().map(f64::to_string).collect();
    let mut args = vec!["-ro", "-so", file, "pois", "-spat"];
    args.extend(spat.iter().map(String::as_str));
    let filtered = gdal("ogrinfo", &args);
    assert_eq!(field(&filtered, "Feature Count:"), expected.to_string());

    // Our own summary agrees with GDAL's.
    let store = Store::open(&path).unwrap();
    let summary = store.layers().unwrap();
    assert_eq!(summary.len(), layers.len());
    for layer in &layers {
        let s = summary
            .iter()
            .find(|s| s.name == layer.schema.name)
            .unwrap();
        assert_eq!(s.count, layer.features.len() as u64);
        let (bbox, want) = (s.bbox.unwrap(), layer.extent());
        for k in 0..4 {
            assert!(
                (bbox[k] - want[k]).abs() < 2e-5,
                "{}: {bbox:?} vs {want:?}",
                s.name
            );
        }
    }
}

#[test]
fn gdal_geojson_export_matches_polygon_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongcheng.gpkg");
    let layers = write_fixture(&path);
    let file = path.to_str().unwrap();
    for (name, index) in [("grids", 1), ("districts", 2)] {
        let json = gdal("ogr2ogr", &["-f", "GeoJSON", "/vsistdout/", file, name]);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        let features = doc["features"].as_array().unwrap();
        assert_eq!(features.len(), layers[index].features.len());
        for (feature, (geometry, _)) in features.iter().zip(&layers[index].features) {
            let polygons: Vec<&Polygon<f64>> = match geometry {
                Geometry::Polygon(p) => vec![p],
                Geometry::MultiPolygon(m) => m.0.iter().collect(),
                other => panic!("{other:?}"),
            };
            let coords = &feature["geometry"]["coordinates"];
            let gdal_polygons: Vec<&serde_json::Value> = match geometry {
                Geometry::Polygon(_) => vec![coords],
                _ => coords.as_array().unwrap().iter().collect(),
            };
            assert_eq!(gdal_polygons.len(), polygons.len(), "{name}: {feature}");
            for (gp, p) in gdal_polygons.iter().zip(polygons) {
                let rings: Vec<&LineString<f64>> =
                    std::iter::once(p.exterior()).chain(p.interiors()).collect();
                let gdal_rings = gp.as_array().unwrap();
                assert_eq!(gdal_rings.len(), rings.len(), "{name}: holes lost");
                for (gr, r) in gdal_rings.iter().zip(rings) {
                    let gr = gr.as_array().unwrap();
                    assert_eq!(gr.len(), r.0.len());
                    for (gc, c) in gr.iter().zip(&r.0) {
                        let (x, y) = (gc[0].as_f64().unwrap(), gc[1].as_f64().unwrap());
                        assert!(
                            (x - c.x).abs() < 1e-9 && (y - c.y).abs() < 1e-9,
                            "{name}: ({x}, {y}) vs {c:?}"
                        );
                    }
                }
            }
        }
    }
    let grid = &doc_properties(file, "grids")[0];
    assert_eq!(grid["code"], "110101001001");
    assert_eq!(grid["area"], 1.25);
}

fn doc_properties(file: &str, layer: &str) -> Vec<serde_json::Value> {
    let json = gdal("ogr2ogr", &["-f", "GeoJSON", "/vsistdout/", file, layer]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"].clone())
        .collect()
}

/// GDAL appends to our layer through the spec's triggers with its own SQL
/// functions; we must decode its blobs and find the index still exact.
#[test]
fn store_reads_what_gdal_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongcheng.gpkg");
    write_fixture(&path);
    let geojson = dir.path().join("more.geojson");
    std::fs::write(
        &geojson,
        r#"{"type": "FeatureCollection", "features": [
          {"type": "Feature", "properties": {"name": "新楼", "floors": 33, "height": 99.5},
           "geometry": {"type": "Point", "coordinates": [116.5, 40.25]}},
          {"type": "Feature", "properties": {"code": "x"},
           "geometry": {"type": "Polygon", "coordinates": [[[116.0, 39.0], [116.1, 39.0], [116.1, 39.2], [116.0, 39.0]]]}}
        ]}"#,
    )
    .unwrap();
    let file = path.to_str().unwrap();
    gdal(
        "ogr2ogr",
        &[
            "-update",
            "-append",
            file,
            geojson.to_str().unwrap(),
            "-nln",
            "pois",
            "-where",
            "name IS NOT NULL",
        ],
    );
    gdal(
        "ogr2ogr",
        &[
            "-update",
            "-append",
            file,
            geojson.to_str().unwrap(),
            "-nln",
            "grids",
            "-where",
            "code IS NOT NULL",
        ],
    );

    let mut store = Store::open(&path).unwrap();
    let mut last = None;
    store
        .for_each("pois", |f| {
            last = Some(f);
            Ok(())
        })
        .unwrap();
    let last = last.unwrap();
    assert_eq!(last.fid, 1001);
    assert_eq!(last.geometry, Geometry::Point(Point::new(116.5, 40.25)));
    assert_eq!(
        last.values,
        [Value::from("新楼"), Value::from(33i64), Value::from(99.5)]
    );
    let mut polygons = Vec::new();
    store
        .for_each("grids", |f| {
            polygons.push(f.geometry);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        polygons[2],
        Geometry::Polygon(Polygon::new(
            ring(&[(116.0, 39.0), (116.1, 39.0), (116.1, 39.2), (116.0, 39.0)]),
            vec![]
        ))
    );
    let layers = store.layers().unwrap();
    let pois = layers.iter().find(|l| l.name == "pois").unwrap();
    assert_eq!(pois.count, 1001);
    assert!(pois.bbox.unwrap()[3] >= 40.25);
    for rtree in ["rtree_pois_geom", "rtree_grids_geom"] {
        let check: String = rusqlite::Connection::open(store.path())
            .unwrap()
            .query_row(&format!("SELECT rtreecheck('{rtree}')"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    // And we can keep writing after GDAL did.
    let mut w = store.writer("pois").unwrap();
    w.insert(
        &Geometry::Point(Point::new(116.0, 39.0)),
        &[Value::Null, Value::Null, Value::Null],
    )
    .unwrap();
    w.commit().unwrap();
    let info = gdal("ogrinfo", &["-ro", "-so", file, "pois"]);
    assert_eq!(field(&info, "Feature Count:"), "1002");
}

/// GDAL's own GeoPackage validator (part of its Python bindings), when
/// installed; everything else above needs only gdal-bin.
#[test]
fn gdal_validator_accepts_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dongcheng.gpkg");
    write_fixture(&path);
    // The Debian package installs the bindings for the system interpreter,
    // which a pyenv/venv python3 earlier on PATH may not see.
    let Some(python) = ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "from osgeo_utils.samples import validate_gpkg"])
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!(
            "skipping validate_gpkg: GDAL's Python bindings (python3-gdal) are not installed"
        );
        return;
    };
    let out = Command::new(python)
        .args([
            "-m",
            "osgeo_utils.samples.validate_gpkg",
            "-k",
            "--extra",
            path.to_str().unwrap(),
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
        "validate_gpkg:\n{report}"
    );
}
