//! The PostgreSQL + PostGIS backend: `wangge copy` both ways on a
//! partitioned, edited city, checked by GDAL reading the GeoPackage and the
//! PostGIS tables independently (`ogr2ogr PG:…`), by PostGIS itself
//! (`ST_IsValid`, `ST_SRID`, GiST indexes) and by psql counts; and every
//! kind of bad URL or database refused with a clear message and nothing
//! written.

use std::path::Path;

use serde_json::Value;

use crate::partition::{city, partition_ok};
use crate::support::{PgCluster, gdal, gdal_sql, s, wangge, wangge_ok};

/// Every feature of `layer` as GDAL reads it from `source` (a GeoPackage
/// path or `PG:…`), sorted by fid, with the fid as `id`.
fn gdal_features(source: &str, layer: &str) -> Vec<Value> {
    let json = gdal(
        "ogr2ogr",
        &[
            "-f",
            "GeoJSON",
            "/vsistdout/",
            source,
            layer,
            "-preserve_fid",
        ],
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    let mut features = v["features"].as_array().unwrap().clone();
    features.sort_by_key(|f| f["id"].as_i64().expect("GDAL writes the fid as id"));
    features
}

/// `SELECT count(*) FROM table` on a GeoPackage, through GDAL.
fn gpkg_count(store: &Path, table: &str) -> String {
    let out = gdal(
        "ogrinfo",
        &[
            s(store),
            "-q",
            "-sql",
            &format!("SELECT count(*) AS n FROM {table}"),
        ],
    );
    out.lines()
        .find_map(|l| l.trim().strip_prefix("n (Integer) = "))
        .unwrap_or_else(|| panic!("no count in {out}"))
        .to_owned()
}

fn fails(args: &[&str]) -> String {
    let out = wangge(args);
    assert_eq!(out.status.code(), Some(1), "{args:?} did not fail: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn copy_moves_a_store_to_postgis_and_back_keeping_everything() {
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    partition_ok(&store, &[]);
    // A store as users leave it: a grid locked and a column added in QGIS.
    let first = gdal_features(s(&store), "grids")[0]["properties"]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    wangge_ok(&["edit", "--store", s(&store), "--quiet", "lock", &first]);
    gdal_sql(&store, "ALTER TABLE grids ADD COLUMN note TEXT");
    gdal_sql(
        &store,
        &format!("UPDATE grids SET note = '待核查\t\\ \"x\"' WHERE code = '{first}'"),
    );

    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let back = dir.path().join("back.gpkg");
    wangge_ok(&["copy", "--from", &url, "--to", s(&back), "--quiet"]);

    // GDAL reads the same features, fids and values from all three.
    let ogr = pg.ogr("city");
    let layers = [
        "districts",
        "streets",
        "communities",
        "grids",
        "buildings",
        "roads",
        "persons",
        "places",
        "objects",
        "events",
        "organizations",
    ];
    for layer in layers {
        let source = gdal_features(s(&store), layer);
        assert!(!source.is_empty(), "{layer} is empty");
        assert_eq!(gdal_features(&ogr, layer), source, "{layer} in PostGIS");
        assert_eq!(
            gdal_features(s(&back), layer),
            source,
            "{layer} copied back"
        );
    }
    let grids = gdal_features(&ogr, "grids");
    assert!(
        grids
            .iter()
            .any(|f| f["properties"]["note"] == "待核查\t\\ \"x\"")
    );

    // PostGIS's own view: valid grids in EPSG:4326, a GiST index per layer.
    assert_eq!(
        pg.psql("city", "SELECT count(*) FILTER (WHERE NOT ST_IsValid(geom)), min(ST_SRID(geom)), max(ST_SRID(geom)) FROM grids"),
        "0|4326|4326"
    );
    for layer in layers {
        let gist = pg.psql(
            "city",
            &format!(
                "SELECT count(*) FROM pg_indexes WHERE tablename = '{layer}'
                   AND indexdef LIKE '%USING gist (geom)%'"
            ),
        );
        assert_eq!(gist, "1", "the GiST index of {layer}");
    }

    // Versions, their grids and buildings, and the lock survive both ways.
    for table in [
        "wangge_versions",
        "wangge_version_grids",
        "wangge_version_buildings",
        "wangge_grid_locks",
    ] {
        let n = gpkg_count(&store, table);
        assert_ne!(n, "0", "{table}");
        assert_eq!(
            pg.psql("city", &format!("SELECT count(*) FROM {table}")),
            n,
            "{table}"
        );
        assert_eq!(gpkg_count(&back, table), n, "{table} copied back");
    }
    assert_eq!(pg.psql("city", "SELECT code FROM wangge_grid_locks"), first);
    let community = &first[..12];
    let history = |store: &str| {
        wangge_ok(&[
            "history",
            "--store",
            store,
            "--community",
            community,
            "--json",
        ])
    };
    assert_eq!(history(s(&back)), history(s(&store)));

    // A registry assigned against either store gets the same codes and
    // the same rejects (with the nearest grid and distance).
    let mut csv = String::from("id,lon,lat\n");
    for (i, [lon, lat]) in crate::serve::sample_points(&grids, 300).iter().enumerate() {
        csv.push_str(&format!("{i},{lon},{lat}\n"));
    }
    let registry = dir.path().join("registry.csv");
    std::fs::write(&registry, csv).unwrap();
    let assigned = |store: &str, name: &str| -> (String, String) {
        let out = dir.path().join(format!("{name}.csv"));
        let rejects = dir.path().join(format!("{name}.rejects.csv"));
        wangge_ok(&[
            "assign",
            "--store",
            store,
            "--input",
            s(&registry),
            "--output",
            s(&out),
            "--rejects",
            s(&rejects),
            "--quiet",
        ]);
        (
            std::fs::read_to_string(&out).unwrap(),
            std::fs::read_to_string(&rejects).unwrap(),
        )
    };
    let (rows, rejects) = assigned(s(&store), "from-gpkg");
    assert!(rows.lines().count() > 100 && rejects.lines().count() > 1);
    assert_eq!(assigned(&url, "from-pg"), (rows, rejects));

    // `info` and `export` read the PostgreSQL store directly.
    let info: Value = serde_json::from_str(&wangge_ok(&["info", &url, "--json"])).unwrap();
    let local: Value = serde_json::from_str(&wangge_ok(&["info", s(&store), "--json"])).unwrap();
    assert_eq!(info["features"], local["features"]);
    for layer in layers {
        assert_eq!(
            info["layers"][layer]["count"],
            local["layers"][layer]["count"]
        );
    }
    let from_pg = dir.path().join("pg.geojson");
    let from_gpkg = dir.path().join("gpkg.geojson");
    wangge_ok(&[
        "export",
        &url,
        "--layer",
        "grids",
        "--out",
        s(&from_pg),
        "--quiet",
    ]);
    wangge_ok(&[
        "export",
        s(&store),
        "--layer",
        "grids",
        "--out",
        s(&from_gpkg),
        "--quiet",
    ]);
    assert_eq!(
        std::fs::read_to_string(&from_pg).unwrap(),
        std::fs::read_to_string(&from_gpkg).unwrap()
    );
}

#[test]
fn bad_postgres_stores_are_refused_clearly_and_nothing_is_written() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("small.gpkg");
    wangge_ok(&[
        "synth",
        "--out",
        s(&store),
        "--scale",
        "0.002",
        "--quiet",
        "--districts",
        s(&crate::support::repo(
            "tests/fixtures/districts-subset.geojson",
        )),
    ]);
    let copy_to = |url: &str| fails(&["copy", "--from", s(&store), "--to", url]);

    // synth builds straight into PostgreSQL: the same city as in a file.
    let made = pg.database("made", true);
    let synth = |out: &str| {
        wangge_ok(&[
            "synth",
            "--out",
            out,
            "--scale",
            "0.002",
            "--quiet",
            "--districts",
            s(&crate::support::repo(
                "tests/fixtures/districts-subset.geojson",
            )),
        ]);
    };
    synth(&made);
    // Counts and types per layer (the extents differ: a GeoPackage's
    // R-tree boxes are rounded outward to f32).
    let layers = |store: &str| -> Value {
        let info: Value = serde_json::from_str(&wangge_ok(&["info", store, "--json"])).unwrap();
        let mut layers = info["layers"].clone();
        for l in layers.as_object_mut().unwrap().values_mut() {
            l.as_object_mut().unwrap().remove("bbox");
        }
        layers
    };
    assert_eq!(layers(&made), layers(s(&store)));
    let msg = fails(&[
        "synth",
        "--out",
        &made,
        "--scale",
        "0.002",
        "--districts",
        s(&crate::support::repo(
            "tests/fixtures/districts-subset.geojson",
        )),
    ]);
    assert!(msg.contains("already holds a wangge store"), "{msg}");

    let msg = copy_to("postgres://postgres@127.0.0.1:notaport/x");
    assert!(msg.contains("not a valid PostgreSQL URL"), "{msg}");
    let msg = copy_to(&format!("postgres://postgres@127.0.0.1:{}", pg.port));
    assert!(msg.contains("names no database"), "{msg}");

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let msg = copy_to(&format!("postgres://postgres@127.0.0.1:{closed}/x"));
    assert!(msg.contains("error connecting to server"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");

    let msg = copy_to(&format!(
        "postgres://postgres@127.0.0.1:{}/missing",
        pg.port
    ));
    assert!(msg.contains("\"missing\" does not exist"), "{msg}");

    let plain = pg.database("plain", false);
    let msg = copy_to(&plain);
    assert!(msg.contains("no PostGIS extension"), "{msg}");
    assert_eq!(
        pg.psql(
            "plain",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );

    let other = pg.database("other", true);
    pg.psql(
        "other",
        "CREATE TABLE customers (id int); INSERT INTO customers VALUES (1)",
    );
    let msg = copy_to(&other);
    assert!(msg.contains("of another application (customers)"), "{msg}");
    assert_eq!(
        pg.psql(
            "other",
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "customers,spatial_ref_sys"
    );
    let msg = fails(&["info", &other]);
    assert!(msg.contains("holds no wangge store"), "{msg}");

    let empty = pg.database("empty", true);
    let msg = fails(&["info", &empty]);
    assert!(
        msg.contains("holds no wangge store (it has no tables)"),
        "{msg}"
    );

    // A password never reaches a message.
    let msg = fails(&[
        "info",
        &format!("postgres://postgres:s3cret@127.0.0.1:{closed}/x"),
    ]);
    assert!(
        !msg.contains("s3cret") && msg.contains("postgres:***@"),
        "{msg}"
    );

    // A store is made once; demo builds a GeoPackage and says so.
    let url = pg.database("city", true);
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let msg = copy_to(&url);
    assert!(msg.contains("already holds a wangge store"), "{msg}");
    let msg = fails(&["demo", "--out", &url, "--no-serve"]);
    assert!(msg.contains("demo writes a GeoPackage"), "{msg}");

    // import into an empty database makes it a store; the rows land as in
    // a GeoPackage, and the rejects are the same.
    let places = dir.path().join("places.geojson");
    wangge_ok(&[
        "export",
        s(&store),
        "--layer",
        "places",
        "--out",
        s(&places),
        "--quiet",
    ]);
    let text = std::fs::read_to_string(&places).unwrap();
    let text = text.replacen("\"type\":\"Point\"", "\"type\":\"LineString\"", 1);
    std::fs::write(&places, text).unwrap();
    let imported = pg.database("imported", true);
    let fresh = dir.path().join("fresh.gpkg");
    let mut outs = Vec::new();
    for target in [imported.as_str(), s(&fresh)] {
        let rejects = dir.path().join("rejects.ndjson");
        let out = wangge(&[
            "import",
            target,
            "--layer",
            "places",
            s(&places),
            "--rejects",
            s(&rejects),
            "--json",
            "--quiet",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exported = dir.path().join("again.geojson");
        wangge_ok(&[
            "export",
            target,
            "--layer",
            "places",
            "--out",
            s(&exported),
            "--quiet",
        ]);
        outs.push((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            std::fs::read_to_string(&rejects).unwrap().lines().count(),
            std::fs::read(&exported).unwrap(),
        ));
    }
    assert_eq!(outs[0].1, 1, "the LineString is the one reject");
    assert!(outs[0] == outs[1], "{} / {}", outs[0].0, outs[1].0);
}

#[test]
fn a_server_on_postgis_answers_byte_for_byte_like_one_on_the_geopackage() {
    use crate::serve::{Server, TOKEN, city_copy, get, grids_by_community};
    use crate::serve::{sample_points, tile_of};
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let local = Server::start(&store, &["--token", TOKEN]);
    let remote = Server::start(Path::new(&url), &["--token", TOKEN]);

    let grids = crate::support::exported(&store, "grids", dir.path());
    let mut tiles = 0;
    for [lon, lat] in sample_points(&grids, 40) {
        for z in [8u8, 11, 13, 15] {
            let (x, y) = tile_of(lon, lat, z);
            for source in ["wangge", "grids", "persons_hex"] {
                let path = format!("/tiles/{source}/{z}/{x}/{y}.mvt");
                let (a, b) = (get(&local.url(&path), &[]), get(&remote.url(&path), &[]));
                assert_eq!((a.status, &a.body), (b.status, &b.body), "{path}");
                tiles += usize::from(a.status == 200 && !a.body.is_empty());
            }
        }
        let path = format!("/v1/locate?lon={lon}&lat={lat}");
        let (a, b) = (get(&local.url(&path), &[]), get(&remote.url(&path), &[]));
        assert_eq!((a.status, a.json()), (b.status, b.json()), "{path}");
    }
    assert!(tiles > 100, "only {tiles} non-empty tiles compared");
    let by = grids_by_community(&store, dir.path());
    let (community, codes) = by.iter().next().unwrap();
    for path in [
        format!("/v1/grids/{}", codes[0]),
        format!("/v1/communities/{community}"),
    ] {
        let (a, b) = (get(&local.url(&path), &[]), get(&remote.url(&path), &[]));
        assert_eq!((a.status, a.json()), (b.status, b.json()), "{path}");
    }
}

/// `wangge partition` and `wangge edit` on PostGIS write what they write
/// on a GeoPackage (the same deterministic partition, the same split),
/// GEOS finds every hard constraint kept, and of two edits raced with
/// `--if-version` on one community exactly one wins.
#[test]
fn partition_and_edits_on_postgis_equal_the_geopackage_and_one_racer_wins() {
    use crate::partition::TARGET;
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    partition_ok(&store, &["--assign"]);
    wangge_ok(&[
        "partition",
        "--store",
        &url,
        "--target",
        TARGET,
        "--assign",
        "--quiet",
    ]);
    let same = |what: &str| {
        for layer in [
            "grids",
            "buildings",
            "persons",
            "places",
            "objects",
            "events",
            "organizations",
        ] {
            let a = dir.path().join("a.geojson");
            let b = dir.path().join("b.geojson");
            wangge_ok(&[
                "export",
                s(&store),
                "--layer",
                layer,
                "--out",
                s(&a),
                "--quiet",
            ]);
            wangge_ok(&["export", &url, "--layer", layer, "--out", s(&b), "--quiet"]);
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{layer} differ {what}"
            );
        }
    };
    same("after the partition");

    let by = crate::serve::grids_by_community(&store, dir.path());
    let (community, codes) = by.iter().find(|(_, v)| v.len() >= 2).unwrap();
    let history = |store: &str| -> Vec<Value> {
        let h: Value = serde_json::from_str(&wangge_ok(&[
            "history",
            "--store",
            store,
            "--community",
            community,
            "--json",
        ]))
        .unwrap();
        // Same versions, ops and counts; the times differ.
        h.as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.as_object_mut().unwrap().remove("created");
                v
            })
            .collect()
    };
    for target in [s(&store), url.as_str()] {
        wangge_ok(&[
            "edit", "--store", target, "--quiet", "split", &codes[0], "--parts", "2",
        ]);
    }
    same("after a split");
    assert_eq!(history(&url), history(s(&store)));

    // `assign --store … --layers` re-indexes the entity layers on both
    // backends alike (the codes are already right, so it reports the same
    // counts and changes nothing).
    let assigned = |target: &str| -> Value {
        let mut v: Value = serde_json::from_str(&wangge_ok(&[
            "assign",
            "--store",
            target,
            "--layers",
            "persons,places,objects,events,organizations",
            "--json",
            "--quiet",
        ]))
        .unwrap();
        let o = v.as_object_mut().unwrap();
        o.retain(|k, _| k == "layers");
        v
    };
    let (a, b) = (assigned(s(&store)), assigned(&url));
    assert_eq!(a, b);
    assert!(a["layers"][0]["assigned"].as_u64().unwrap() > 100, "{a}");
    same("after assign --layers");

    // GEOS checks the edited community as PostGIS holds it.
    let back = dir.path().join("back.gpkg");
    wangge_ok(&["copy", "--from", &url, "--to", s(&back), "--quiet"]);
    crate::edit::geos_clean_grids(&back, community);

    // Two edits of one community from the same version, at once: the
    // table lock orders them and the second finds the version moved on.
    let version = history(&url)[0]["version"].as_i64().unwrap().to_string();
    let now: Vec<String> = crate::support::exported(Path::new(&url), "grids", dir.path())
        .iter()
        .filter(|f| f["properties"]["parent_code"] == community.as_str())
        .map(|f| f["properties"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert!(now.len() >= 2, "{now:?}");
    let racers: Vec<_> = now[..2]
        .iter()
        .map(|g| {
            let (url, version, g) = (url.clone(), version.clone(), g.clone());
            std::thread::spawn(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_wangge"))
                    .args(["edit", "--store", &url, "--if-version", &version, "--quiet"])
                    .args(["lock", &g])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<_> = racers.into_iter().map(|h| h.join().unwrap()).collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outs:?}");
    let lost = outs.iter().find(|o| !o.status.success()).unwrap();
    let msg = String::from_utf8_lossy(&lost.stderr);
    assert!(msg.contains("version"), "{msg}");
    assert_eq!(
        pg.psql("city", "SELECT count(*) FROM wangge_grid_locks"),
        "1"
    );
    let v: i64 = version.parse().unwrap();
    assert_eq!(history(&url)[0]["version"], v + 1);
}

/// Two servers on one PostGIS store: an edit through one shows on the
/// other, both keep serving through a PostgreSQL restart and catch up
/// with a CLI edit made after it; their tiles stay byte-identical.
#[test]
fn replicas_on_postgis_follow_each_other_through_a_restart() {
    use crate::serve::{JSON_CT, Server, TOKEN, city_copy, get, grids_by_community, post};
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let a = Server::start(Path::new(&url), &["--token", TOKEN]);
    let b = Server::start(Path::new(&url), &["--token", TOKEN]);
    let by = grids_by_community(&store, dir.path());
    let mut multi = by.iter().filter(|(_, v)| v.len() >= 2);
    let (first, first_codes) = multi.next().unwrap();
    let (second, second_codes) = multi.next().unwrap();
    let listed = |srv: &Server, community: &str| -> Vec<String> {
        let fc = get(&srv.url(&format!("/v1/grids?community={community}")), &[]);
        if fc.status != 200 {
            return Vec::new();
        }
        fc.json()["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let wait_for = |srv: &Server, community: &str, codes: &[String]| {
        // The deadline only turns a broken follower into a failure.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !codes.iter().all(|c| listed(srv, community).contains(c)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never showed {codes:?}:\n{}",
                srv.url(""),
                srv.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let added = |v: &Value| -> Vec<String> {
        v["added"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    // The z15 tile over a grid: what each server renders from its memory
    // (unlike /v1/grids, which reads the database), so it shows whether a
    // replica caught up.
    let tile_over = |code: &str| -> String {
        let g = get(&a.url(&format!("/v1/grids/{code}")), &[]).json();
        let c = &g["geometry"]["coordinates"][0][0][0];
        let (x, y) = crate::serve::tile_of(c[0].as_f64().unwrap(), c[1].as_f64().unwrap(), 15);
        format!("/tiles/wangge/15/{x}/{y}.mvt")
    };
    let converge = |path: &str, before: &[u8]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (ta, tb) = (get(&a.url(path), &[]), get(&b.url(path), &[]));
            assert_eq!((ta.status, tb.status), (200, 200), "{path}");
            if ta.body != before && ta.body == tb.body {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{path} never converged:\n{}\n{}",
                a.log_text(),
                b.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let path1 = tile_over(&first_codes[0]);
    let path2 = tile_over(&second_codes[0]);
    let before1 = get(&b.url(&path1), &[]).body;
    let before2 = get(&b.url(&path2), &[]).body;

    // An edit through A reaches B.
    let split = serde_json::json!({"op": "split", "grid": first_codes[0], "parts": 2}).to_string();
    let version =
        get(&a.url(&format!("/v1/grids/{}", first_codes[0])), &[]).json()["properties"]["version"]
            .as_i64()
            .unwrap();
    let answer = post(
        &a.url(&format!("/v1/communities/{first}/edits")),
        &[
            JSON_CT,
            ("authorization", &format!("Bearer {TOKEN}")),
            ("if-match", &version.to_string()),
        ],
        split.as_bytes(),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let new = added(&answer.json());
    assert!(!new.is_empty());
    wait_for(&b, first, &new);
    converge(&path1, &before1);

    // PostgreSQL goes down and comes back; then the CLI edits, and both
    // servers catch up.
    pg.restart();
    let out: Value = serde_json::from_str(&wangge_ok(&[
        "edit",
        "--store",
        &url,
        "--json",
        "--quiet",
        "split",
        &second_codes[0],
        "--parts",
        "2",
    ]))
    .unwrap();
    let new2 = added(&out);
    wait_for(&a, second, &new2);
    wait_for(&b, second, &new2);
    converge(&path2, &before2);
    assert!(
        b.log_text().contains("watching the store again"),
        "{}",
        b.log_text()
    );
    // Each replica's catch-ups are done (its point index comes last):
    // then both answer as a server started afresh on the database.
    a.wait_for_reloads(1);
    b.wait_for_reloads(2);
    let fresh = Server::start(Path::new(&url), &["--token", TOKEN]);
    for replica in [&a, &b] {
        let (compared, _) = crate::serve::assert_answers_equal(replica, &fresh, &[first, second]);
        assert!(compared > 50, "{compared}");
    }
}

/// A connection lost in the middle of a write (the server ends the
/// backend) rolls the whole write back: the partition fails with a clear
/// message and the grids, buildings and versions are as before.
#[test]
fn a_connection_lost_mid_write_rolls_back() {
    use crate::partition::TARGET;
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    wangge_ok(&["partition", "--store", &url, "--target", TARGET, "--quiet"]);
    let state = || {
        pg.psql(
            "city",
            "SELECT (SELECT count(*) FROM grids), (SELECT count(*) FROM wangge_versions),
                    (SELECT md5(string_agg(fid || ':' || coalesce(grid_code, ''), ',' ORDER BY fid))
                       FROM buildings)",
        )
    };
    let before = state();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wangge"))
        .args(["partition", "--store", &url, "--target", "7", "--quiet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its write transaction has written (it has a transaction
    // id; reads never get one), then end its backend.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let killed = loop {
        let pids = pg.psql(
            "city",
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'wangge'
               AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        );
        if let Some(pid) = pids.lines().next() {
            break pg.psql("city", &format!("SELECT pg_terminate_backend({pid})"));
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break String::new();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        killed, "t",
        "the partition's write transaction was never seen"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("PostgreSQL error on postgres://"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
    assert_eq!(state(), before);
    // And the store works on.
    wangge_ok(&["partition", "--store", &url, "--target", "7", "--quiet"]);
    assert_ne!(state(), before);
}

/// The change feed on PostGIS: batches through replica A and `wangge
/// apply` on the URL reach replica B through the change log; both then
/// answer as a fresh server on the database, and as a GeoPackage server
/// fed the same batches; the counts read back equal the rows they count
/// and a full re-index; a replay through B changes nothing.
#[test]
fn the_change_feed_on_postgis_feeds_every_replica() {
    use crate::changes::{
        Feed, assert_counts_match_rows, codes_of, digest, metric, post_changes, replay,
    };
    use crate::serve::{Server, TOKEN, assert_answers_equal, city_copy};
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let a = Server::start(Path::new(&url), &["--token", TOKEN]);
    let b = Server::start(Path::new(&url), &["--token", TOKEN]);
    let g = Server::start(&store, &["--token", TOKEN]);
    let mut feed = Feed::new(&store, 11);
    let mut batches = Vec::new();
    let mut applied = 0;
    for i in 0..8 {
        let batch = feed.batch(100);
        let body = serde_json::to_vec(&batch).unwrap();
        let n = if i % 4 == 3 {
            let path = dir.path().join("feed.ndjson");
            std::fs::write(
                &path,
                batch.iter().map(|c| format!("{c}\n")).collect::<String>(),
            )
            .unwrap();
            let out: Value = serde_json::from_str(&wangge_ok(&[
                "apply",
                "--store",
                &url,
                s(&path),
                "--json",
                "--quiet",
            ]))
            .unwrap();
            out["applied"].as_u64().unwrap()
        } else {
            post_changes(&a, &body, "application/json")["applied"]
                .as_u64()
                .unwrap()
        };
        // The same batch into the GeoPackage, through its server.
        let on_gpkg = post_changes(&g, &body, "application/json");
        assert_eq!(on_gpkg["applied"].as_u64().unwrap(), n, "{on_gpkg}");
        applied += n;
        batches.push(batch);
    }
    assert!(applied > 600, "{applied}");
    // B followed every change, A the CLI's too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for srv in [&a, &b] {
        while metric(srv, "wangge_changes_followed_total") < applied {
            assert!(std::time::Instant::now() < deadline, "{}", srv.log_text());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let touched: Vec<String> = pg
        .psql(
            "city",
            "SELECT DISTINCT substr(new_grid, 1, 12) FROM wangge_changes WHERE new_grid IS NOT NULL ORDER BY 1",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    let sample: Vec<&str> = touched
        .iter()
        .step_by((touched.len() / 4).max(1))
        .map(String::as_str)
        .collect();
    let fresh = Server::start(Path::new(&url), &["--token", TOKEN]);
    for srv in [&a, &b, &g] {
        let (compared, _) = assert_answers_equal(srv, &fresh, &sample);
        assert!(compared > 50, "{compared}");
    }
    // What the database holds, read back through a copy.
    let back = dir.path().join("back.gpkg");
    wangge_ok(&["copy", "--from", &url, "--to", s(&back), "--quiet"]);
    assert_counts_match_rows(&back);
    for l in [
        "persons",
        "places",
        "objects",
        "events",
        "organizations",
        "buildings",
    ] {
        assert_eq!(
            codes_of(&back, l),
            codes_of(&store, l),
            "{l}: PostGIS vs GeoPackage"
        );
    }
    let copy = dir.path().join("reindexed.gpkg");
    std::fs::copy(&back, &copy).unwrap();
    wangge_ok(&[
        "assign",
        "--store",
        s(&copy),
        "--layers",
        "persons,places,objects,events,organizations",
        "--quiet",
    ]);
    for l in ["persons", "places", "objects", "events", "organizations"] {
        assert_eq!(
            codes_of(&back, l),
            codes_of(&copy, l),
            "{l}: feed vs re-index"
        );
    }
    // A replay through B: every applied change is a duplicate.
    assert_eq!(replay(&b, &batches), applied);
    let again = dir.path().join("again.gpkg");
    wangge_ok(&["copy", "--from", &url, "--to", s(&again), "--quiet"]);
    assert_eq!(
        digest(&again),
        digest(&back),
        "a replay changed the database"
    );
}

/// `wangge apply` on PostGIS killed with SIGKILL once its batch has
/// written: the database rolls the transaction back (no log rows, the
/// same persons and counts), and a rerun applies the whole feed.
#[test]
fn an_apply_on_postgis_killed_mid_batch_leaves_nothing() {
    use crate::changes::Feed;
    use crate::serve::city_copy;
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let mut feed = Feed::new(&store, 13);
    let path = dir.path().join("big.ndjson");
    let changes = feed.batch(10_000);
    std::fs::write(
        &path,
        changes.iter().map(|c| format!("{c}\n")).collect::<String>(),
    )
    .unwrap();
    let state = || {
        pg.psql(
            "city",
            "SELECT to_regclass('wangge_changes') IS NOT NULL, (SELECT count(*) FROM persons),
                    (SELECT sum(persons) FROM grids), (SELECT sum(households) FROM communities),
                    (SELECT md5(string_agg(fid || ':' || coalesce(grid_code, ''), ',' ORDER BY fid)) FROM places)",
        )
    };
    let before = state();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wangge"))
        .args([
            "apply",
            "--store",
            &url,
            s(&path),
            "--batch",
            "10000",
            "--quiet",
        ])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let seen = loop {
        let pids = pg.psql(
            "city",
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'wangge'
               AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        );
        if !pids.trim().is_empty() {
            break true;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(seen, "the apply's write transaction was never seen");
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the closed connection and rolls back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !pg
        .psql(
            "city",
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'wangge' AND pid <> pg_backend_pid()",
        )
        .trim()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "the killed client's backend stays");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state(), before);
    let out: Value = serde_json::from_str(&wangge_ok(&[
        "apply",
        "--store",
        &url,
        s(&path),
        "--json",
        "--quiet",
    ]))
    .unwrap();
    assert_eq!(
        out["applied"].as_u64().unwrap() + out["rejected"].as_u64().unwrap(),
        10_000,
        "{out}"
    );
    assert_ne!(state(), before);
}

/// On PostGIS too, writes no log describes reach a server: places
/// imported into the database and re-indexed by other processes show in
/// its answers and tiles as in a fresh server's.
#[test]
fn a_server_on_postgis_reloads_after_an_import_and_a_reindex() {
    use crate::serve::{
        Server, TOKEN, assert_answers_equal, city_copy, get, grids_by_community, places_at,
        vertex_mean,
    };
    let pg = PgCluster::start();
    let url = pg.database("city", true);
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    wangge_ok(&["copy", "--from", s(&store), "--to", &url, "--quiet"]);
    let by = grids_by_community(&store, dir.path());
    let (comm, _) = by.iter().find(|(_, v)| v.len() >= 2).unwrap();
    let srv = Server::start(Path::new(&url), &["--token", TOKEN]);
    let fc = get(&srv.url(&format!("/v1/grids?community={comm}")), &[]).json();
    let (x, y) = vertex_mean(&fc["features"][0]["geometry"]["coordinates"][0][0]);
    let file = places_at(dir.path(), "PG-IMPORTED", 4, x, y);
    wangge_ok(&["import", &url, "--layer", "places", s(&file), "--quiet"]);
    srv.wait_for_reloads(1);
    wangge_ok(&["assign", "--store", &url, "--layers", "places", "--quiet"]);
    srv.wait_for_reloads(2);
    let fresh = Server::start(Path::new(&url), &["--token", TOKEN]);
    let (compared, _) = assert_answers_equal(&srv, &fresh, &[comm.as_str()]);
    assert!(compared > 20, "{compared}");
    let at = get(&fresh.url(&format!("/v1/locate?lon={x}&lat={y}")), &[]).json();
    let grid = get(
        &srv.url(&format!("/v1/grids/{}", at["code"].as_str().unwrap())),
        &[],
    )
    .json();
    assert!(
        grid["properties"]["places"].as_u64().unwrap() >= 4,
        "{grid}"
    );
}
