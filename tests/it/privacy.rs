//! The privacy rule (k = 10, complementary suppression) on everything a
//! public client sees: every tile of two areas at z11–16 from every tile
//! source of a running `wangge serve`, an `export-tiles` archive, and the
//! grid and community API answers with and without the token, decoded and
//! checked by `tests/py/check_privacy.py` against the store (sqlite3).

use std::path::Path;

use serde_json::Value;
use wangge_tiler::tile::tiles_covering;

use crate::serve::{Server, get};
use crate::support::{python_json, repo, s, wangge_ok};

const TOKEN: &str = "privacy-token";

/// A city with both sides of the rule: scale 0.1 of three real districts
/// partitioned at 40 households per grid (buildings of 1 to 60
/// households), then the rural community with the most one-household
/// buildings partitioned again at a target of 2, so that it has grids of a
/// single household (the example: one family pinned to one house).
/// Returns the store, the rural community and a dense one.
fn city(dir: &Path) -> (std::path::PathBuf, String, String) {
    let store = dir.join("city.gpkg");
    wangge_ok(&[
        "synth",
        "--out",
        s(&store),
        "--scale",
        "0.1",
        "--seed",
        "11",
        "--districts",
        s(&repo("tests/fixtures/districts-subset.geojson")),
        "--quiet",
    ]);
    wangge_ok(&[
        "partition",
        "--store",
        s(&store),
        "--target",
        "40",
        "--assign",
        "--quiet",
    ]);
    let db = rusqlite::Connection::open(&store).unwrap();
    let pick = |sql: &str| -> String { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let rural = pick(
        "SELECT community_code FROM buildings WHERE households = 1
         GROUP BY community_code ORDER BY count(*) DESC, community_code LIMIT 1",
    );
    let dense = pick(
        "SELECT community_code FROM buildings WHERE community_code LIKE '110101%'
         GROUP BY community_code
         ORDER BY sum(households >= 10) * sum(households < 10) DESC, community_code LIMIT 1",
    );
    drop(db);
    wangge_ok(&[
        "partition",
        "--store",
        s(&store),
        "--community",
        &rural,
        "--target",
        "2",
        "--assign",
        "--quiet",
    ]);
    (store, rural, dense)
}

/// `[w, s, e, n]` of a community's outline.
fn community_bbox(store: &Path, code: &str) -> [f64; 4] {
    let db = rusqlite::Connection::open(store).unwrap();
    db.query_row(
        "SELECT r.minx, r.miny, r.maxx, r.maxy FROM communities c
         JOIN rtree_communities_geom r ON r.id = c.fid WHERE c.code = ?1",
        [code],
        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
    )
    .unwrap()
}

fn save(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

#[test]
fn no_public_count_below_k_nor_recoverable_by_subtraction() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rural, dense) = city(dir.path());
    let out = dir.path().join("seen");
    let srv = Server::start(&store, &["--token", TOKEN]);
    let staff = format!("Bearer {TOKEN}");
    let staff = [("authorization", staff.as_str())];

    // Every tile at z11–16 of both communities, from every source.
    let sources = crate::serve::tile_sources(&srv);
    assert!(sources.len() >= 12, "{sources:?}");
    let areas = [
        community_bbox(&store, &rural),
        community_bbox(&store, &dense),
    ];
    let mut covered = Vec::new();
    let mut fetched = 0;
    for area in areas {
        let mut cover: Option<[f64; 4]> = None;
        for z in 11..=16u8 {
            for t in tiles_covering(area, z).unwrap().iter() {
                if z == 16 {
                    cover = Some(wangge_engine::store::merge_bbox(cover, t.bounds()));
                }
                for src in &sources {
                    let a = get(
                        &srv.url(&format!("/tiles/{src}/{}/{}/{}", t.z(), t.x(), t.y())),
                        &[],
                    );
                    match a.status {
                        200 => {
                            fetched += 1;
                            let p = out.join("tiles").join(src).join(format!(
                                "{}/{}/{}.mvt",
                                t.z(),
                                t.x(),
                                t.y()
                            ));
                            save(&p, &a.body);
                        }
                        204 | 404 => {}
                        other => panic!("{src} {t:?}: status {other}"),
                    }
                }
            }
        }
        covered.push(cover.unwrap());
    }
    assert!(fetched > 100, "{fetched} tiles");
    save(
        &out.join("coverage.json"),
        &serde_json::to_vec(&serde_json::json!({"areas": covered})).unwrap(),
    );

    // The archive of the rural area (public too).
    let [w, so, e, n] = areas[0];
    wangge_ok(&[
        "export-tiles",
        "--store",
        s(&store),
        "--out",
        s(&out.join("archive.mbtiles")),
        "--minzoom",
        "11",
        "--maxzoom",
        "16",
        "--bbox",
        &format!("{w},{so},{e},{n}"),
        "--quiet",
    ]);

    // The API: every grid and community of both areas, anonymous and staff.
    let mut answers = 0;
    for (i, area) in areas.iter().enumerate() {
        let [w, so, e, n] = *area;
        let q = format!("/v1/grids?bbox={w},{so},{e},{n}&limit=10000");
        for (who, h) in [("public", &[][..]), ("staff", &staff[..])] {
            let a = get(&srv.url(&q), h);
            assert_eq!(a.status, 200);
            assert_eq!(
                a.header("vary").map(|v| v.contains("authorization")),
                Some(true)
            );
            let fc = a.json();
            save(&out.join(who).join(format!("bbox-{i}.json")), &a.body);
            let mut comms = std::collections::BTreeSet::new();
            for f in fc["features"].as_array().unwrap() {
                let code = f["id"].as_str().unwrap();
                comms.insert(code[..12].to_owned());
                let g = get(&srv.url(&format!("/v1/grids/{code}")), h);
                save(&out.join(who).join(format!("grid-{code}.json")), &g.body);
                answers += 1;
            }
            for c in comms {
                let a = get(&srv.url(&format!("/v1/communities/{c}")), h);
                assert_eq!(a.status, 200);
                save(&out.join(who).join(format!("community-{c}.json")), &a.body);
            }
        }
    }
    assert!(answers > 20, "{answers} grid answers");

    // A wrong token is refused, not answered with public counts.
    let some_grid: Value = get(&srv.url(&format!("/v1/grids?community={rural}")), &[]).json();
    let code = some_grid["features"][0]["id"].as_str().unwrap().to_owned();
    let wrong = get(
        &srv.url(&format!("/v1/grids/{code}")),
        &[("authorization", "Bearer nope")],
    );
    assert!(wrong.error(401).contains("invalid bearer token"));

    // Errors the server logs (a bad request, an unknown tile) and its
    // start-up output go to the log check.
    let _ = get(&srv.url("/v1/locate?lon=116.41234567&lat=abc"), &[]);
    let _ = get(&srv.url("/tiles/nope/14/1/1"), &[]);
    save(&out.join("stderr.log"), srv.log_text().as_bytes());
    drop(srv);

    let truth = python_json("check_privacy.py", &[s(&store), s(&out), "10"]);
    eprintln!("{truth:#}");
    assert_eq!(truth["problems"], Value::Array(vec![]), "{truth:#}");
    // Not vacuous: both sides of the rule were seen and checked.
    for key in [
        "grids_withheld",
        "buildings_withheld",
        "one_household_grids",
        "archive_tiles",
    ] {
        assert!(truth[key].as_u64().unwrap() > 0, "{key}: {truth:#}");
    }
    assert!(
        truth["grids_seen"].as_u64() > truth["grids_withheld"].as_u64(),
        "{truth:#}"
    );
    assert!(
        truth["buildings_seen"].as_u64() > truth["buildings_withheld"].as_u64(),
        "{truth:#}"
    );
    for key in [
        "communities_published",
        "grids_published_all_buildings_seen",
        "grids_withheld_all_buildings_seen",
    ] {
        assert!(
            truth["checked"][key].as_u64().unwrap_or(0) > 0,
            "{key}: {truth:#}"
        );
    }

    // A server without a token has no staff: a token is refused with 403.
    let srv = Server::start(&store, &["--no-tiles"]);
    let a = get(
        &srv.url(&format!("/v1/grids/{code}")),
        &[("authorization", "Bearer anything")],
    );
    assert!(a.error(403).contains("--token"));
    let a = get(&srv.url(&format!("/v1/grids/{code}")), &[]).json();
    assert!(
        a["properties"]["households"].is_string()
            || a["properties"]["households"].as_i64() >= Some(10)
    );
}

#[test]
fn a_higher_k_withholds_more_and_tiles_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::serve::city_copy(dir.path());
    let withheld = |k: &str| {
        let out = dir.path().join(format!("k{k}.mbtiles"));
        wangge_ok(&[
            "export-tiles",
            "--store",
            s(&store),
            "--out",
            s(&out),
            "--minzoom",
            "14",
            "--maxzoom",
            "14",
            "--privacy-k",
            k,
            "--quiet",
        ]);
        let db = rusqlite::Connection::open(&out).unwrap();
        let mut stmt = db.prepare("SELECT tile_data FROM tiles").unwrap();
        let mut shown = 0;
        let mut hidden = 0;
        let mut min = i64::MAX;
        for blob in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap() {
            let mut raw = Vec::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&blob.unwrap()[..])
                .read_to_end(&mut raw)
                .unwrap();
            for l in wangge_tiler::mvt::decode(&raw).unwrap() {
                if l.name != "grids" {
                    continue;
                }
                for f in l.features {
                    match f.properties.iter().find(|p| p.0 == "households") {
                        Some((_, wangge_tiler::mvt::PropValue::Int(n))) => {
                            shown += 1;
                            min = min.min(*n);
                        }
                        _ => hidden += 1,
                    }
                }
            }
        }
        (shown, hidden, min)
    };
    let (s10, h10, min10) = withheld("10");
    let (s20, h20, min20) = withheld("20");
    assert!(min10 >= 10 && min20 >= 20, "{min10} {min20}");
    assert_eq!(s10 + h10, s20 + h20, "same features");
    assert!(h20 > h10 && h10 > 0, "{h10} {h20}");
    let bad = crate::support::wangge(&["serve", "--store", s(&store), "--privacy-k", "0"]);
    assert_eq!(bad.status.code(), Some(2), "k = 0 is a usage error");
}
