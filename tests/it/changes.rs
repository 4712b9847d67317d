//! The change feed (`POST /v1/changes`, `wangge apply`, the event stream)
//! against independent truths: the store's counts against aggregates of
//! its own rows and against a full `wangge assign --store … --layers …`
//! re-index; the live server against a freshly started one; a replay
//! against the state before it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::serve::{JSON_CT, Server, TOKEN, assert_answers_equal, city_copy, get, post, tile_of};
use crate::support::{s, wangge, wangge_ok};

const ENTITY: [&str; 6] = [
    "persons",
    "buildings",
    "places",
    "objects",
    "events",
    "organizations",
];

/// Random changes over a store: adds, moves, updates and removes of every
/// layer at points inside random grids' boxes, plus changes that must be
/// refused (unknown ids, points far outside, bad ops) and never become
/// valid later, so a replay gives the same state.
pub(crate) struct Feed {
    rng: ChaCha8Rng,
    /// Ids present, per layer.
    ids: BTreeMap<&'static str, Vec<String>>,
    /// Grid boxes (w, s, e, n).
    boxes: Vec<[f64; 4]>,
    next: u64,
    /// Every person id the feed named.
    person_ids: BTreeSet<String>,
}

impl Feed {
    pub(crate) fn new(store: &Path, seed: u64) -> Feed {
        let c = Connection::open(store).unwrap();
        let mut ids = BTreeMap::new();
        let mut person_ids = BTreeSet::new();
        for l in ENTITY {
            // A sample, so moves and removes hit existing rows.
            let v: Vec<String> = c
                .prepare(&format!("SELECT id FROM {l} WHERE fid % 97 = 3"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            if l == "persons" {
                person_ids.extend(v.iter().cloned());
            }
            ids.insert(l, v);
        }
        let boxes = c
            .prepare("SELECT minx, miny, maxx, maxy FROM rtree_grids_geom")
            .unwrap()
            .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        Feed {
            rng: ChaCha8Rng::seed_from_u64(seed),
            ids,
            boxes,
            next: 0,
            person_ids,
        }
    }

    fn point(&mut self) -> (f64, f64) {
        let b = self.boxes[self.rng.random_range(0..self.boxes.len())];
        let x = b[0] + (b[2] - b[0]) * self.rng.random::<f64>();
        let y = b[1] + (b[3] - b[1]) * self.rng.random::<f64>();
        ((x * 1e7).round() / 1e7, (y * 1e7).round() / 1e7)
    }

    fn square(&mut self) -> Value {
        let (x, y) = self.point();
        let d = 0.00008;
        json!({"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]})
    }

    fn change(&mut self) -> Value {
        self.next += 1;
        let change_id = format!("chg-{}", self.next);
        let r: f64 = self.rng.random();
        if r < 0.04 {
            // Refused, and stays refused on a replay.
            return match self.rng.random_range(0..3) {
                0 => json!({"change_id": change_id, "op": "move", "layer": "persons",
                            "id": format!("GHOST-{}", self.next), "lon": 116.4, "lat": 39.9}),
                1 => json!({"change_id": change_id, "op": "add", "layer": "places",
                            "id": format!("FAR-{}", self.next), "lon": 100.0, "lat": 30.0}),
                _ => {
                    json!({"change_id": change_id, "op": "teleport", "layer": "objects", "id": "x"})
                }
            };
        }
        let layer = match self.rng.random_range(0..20) {
            0..=8 => "persons",
            9..=11 => "buildings",
            12..=13 => "places",
            14..=15 => "objects",
            16..=17 => "events",
            _ => "organizations",
        };
        let op = match self.rng.random_range(0..10) {
            0..=3 => "add",
            4..=6 => "move",
            7..=8 => "update",
            _ => "remove",
        };
        let pool_empty = self.ids[layer].is_empty();
        let op = if pool_empty { "add" } else { op };
        let id = if op == "add" {
            let id = format!("NEW-{layer}-{}", self.next);
            if layer == "persons" {
                self.person_ids.insert(id.clone());
            }
            id
        } else {
            let pool = &self.ids[layer];
            pool[self.rng.random_range(0..pool.len())].clone()
        };
        let mut c = json!({"change_id": change_id, "op": op, "layer": layer, "id": id});
        match op {
            "add" | "move" => {
                if layer == "buildings" {
                    c["geometry"] = self.square();
                } else {
                    let (x, y) = self.point();
                    c["lon"] = json!(x);
                    c["lat"] = json!(y);
                }
            }
            _ => {}
        }
        match (op, layer) {
            ("add" | "update", "buildings") => {
                c["properties"] = json!({"households": self.rng.random_range(0..40), "kind": "residential", "floors": 3});
            }
            ("add" | "update", "persons") => {
                c["properties"] = json!({"age_band": "30-39", "registered": 1});
            }
            ("add" | "update", _) => {
                c["properties"] = json!({"kind": format!("k{}", self.rng.random_range(0..5))});
            }
            _ => {}
        }
        let pool = self.ids.get_mut(layer).unwrap();
        match op {
            "add" => pool.push(id),
            "remove" => pool.retain(|x| *x != id),
            _ => {}
        }
        c
    }

    pub(crate) fn batch(&mut self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.change()).collect()
    }
}

pub(crate) fn post_changes(srv: &Server, body: &[u8], ct: &str) -> Value {
    let auth = format!("Bearer {TOKEN}");
    let a = post(
        &srv.url("/v1/changes"),
        &[("content-type", ct), ("authorization", &auth)],
        body,
    );
    assert_eq!(
        a.status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&a.body),
        srv.log_text()
    );
    a.json()
}

pub(crate) fn metric(srv: &Server, name: &str) -> u64 {
    let text = String::from_utf8(get(&srv.url("/metrics"), &[]).body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Every row of the entity layers and the count columns of the admin
/// layers, as text: what a replay must leave as it is.
pub(crate) fn digest(store: &Path) -> String {
    let c = Connection::open(store).unwrap();
    let mut out = String::new();
    for l in ENTITY {
        out.push_str(&rows_text(
            &c,
            &format!("SELECT fid, id, community_code, grid_code, hex(geom) FROM {l} ORDER BY fid"),
        ));
    }
    for l in ["grids", "communities", "streets", "districts"] {
        out.push_str(&rows_text(
            &c,
            &format!("SELECT code, households, persons FROM {l} ORDER BY code"),
        ));
    }
    out
}

/// Every row a query returns, one line each, its values `|`-separated.
fn rows_text(c: &Connection, sql: &str) -> String {
    let mut stmt = c.prepare(sql).unwrap();
    let n = stmt.column_count();
    let mut rows = stmt.query([]).unwrap();
    let mut out = String::new();
    while let Some(r) = rows.next().unwrap() {
        let cells: Vec<String> = (0..n)
            .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
            .collect();
        out.push_str(&cells.join("|"));
        out.push('\n');
    }
    out
}

/// Posts every batch again through `srv`: nothing may apply; returns how
/// many were duplicates.
pub(crate) fn replay(srv: &Server, batches: &[Vec<Value>]) -> u64 {
    let mut dups = 0;
    for b in batches {
        let a = post_changes(srv, &serde_json::to_vec(b).unwrap(), "application/json");
        assert_eq!(a["applied"], 0, "{a}");
        dups += a["duplicates"].as_u64().unwrap();
    }
    dups
}

/// Asserts that every stored count equals the aggregate of the rows it
/// counts: a grid's persons (by `grid_code`), households and buildings (its
/// buildings), and each community's, street's and district's persons and
/// households (by the code prefix of its grids' rows).
pub(crate) fn assert_counts_match_rows(store: &Path) -> usize {
    let c = Connection::open(store).unwrap();
    let map = |sql: &str| -> BTreeMap<String, i64> {
        c.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut checked = 0;
    for (len, layer) in [
        (15, "grids"),
        (12, "communities"),
        (9, "streets"),
        (6, "districts"),
    ] {
        let stored_p = map(&format!("SELECT code, coalesce(persons, 0) FROM {layer}"));
        let stored_h = map(&format!(
            "SELECT code, coalesce(households, 0) FROM {layer}"
        ));
        let rows_p = map(&format!(
            "SELECT substr(grid_code, 1, {len}), count(*) FROM persons WHERE grid_code <> '' GROUP BY 1"
        ));
        let rows_h = map(&format!(
            "SELECT substr(grid_code, 1, {len}), sum(households) FROM buildings WHERE grid_code <> '' GROUP BY 1"
        ));
        for (code, n) in &stored_p {
            assert_eq!(
                *n,
                rows_p.get(code).copied().unwrap_or(0),
                "{layer} {code} persons"
            );
            assert_eq!(
                stored_h[code],
                rows_h.get(code).copied().unwrap_or(0),
                "{layer} {code} households"
            );
            checked += 1;
        }
        assert!(
            rows_p.keys().all(|k| stored_p.contains_key(k)),
            "{layer}: persons in unknown units"
        );
    }
    let stored_b = map("SELECT code, coalesce(buildings, 0) FROM grids");
    let rows_b = map("SELECT grid_code, count(*) FROM buildings WHERE grid_code <> '' GROUP BY 1");
    for (code, n) in &stored_b {
        assert_eq!(
            *n,
            rows_b.get(code).copied().unwrap_or(0),
            "grid {code} buildings"
        );
    }
    checked
}

/// (id → (community_code, grid_code)) of an entity layer.
pub(crate) fn codes_of(store: &Path, layer: &str) -> BTreeMap<String, (String, String)> {
    let c = Connection::open(store).unwrap();
    c.prepare(&format!(
        "SELECT id, coalesce(community_code, ''), coalesce(grid_code, '') FROM {layer}"
    ))
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// 2,000 random changes (by default) through the HTTP feed (JSON and
/// NDJSON) and `wangge apply` from another process, with the event stream open: the
/// counts equal the rows they count and a full re-index; a fresh server
/// answers and tiles exactly as the live one; a replay changes nothing;
/// no event names a person.
#[test]
fn the_change_feed_equals_a_reindex_and_a_fresh_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    assert!(
        assert_counts_match_rows(&store) > 0,
        "the city's own counts"
    );
    let mut feed = Feed::new(&store, 7);
    let srv = Server::start(&store, &["--token", TOKEN]);
    // The stream, read on a thread.
    let (events_tx, events_rx) = std::sync::mpsc::channel::<String>();
    {
        let url = srv.url("/v1/changes/stream");
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(None)
                .build()
                .into();
            let resp = agent.get(&url).call().unwrap();
            let reader = BufReader::new(resp.into_body().into_reader());
            for line in reader.lines().map_while(Result::ok) {
                if events_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    // WANGGE_FEED_BATCHES=1000 runs the 100,000-change version of issue 15
    // (in a release test build it takes a few minutes).
    let http_batches: usize = std::env::var("WANGGE_FEED_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let mut batches: Vec<Vec<Value>> = Vec::new();
    let (mut applied, mut rejected) = (0u64, 0u64);
    for i in 0..http_batches {
        let b = feed.batch(100);
        let answer = if i % 3 == 2 {
            let nd: String = b.iter().map(|c| format!("{c}\n")).collect();
            post_changes(&srv, nd.as_bytes(), "application/x-ndjson")
        } else {
            post_changes(&srv, &serde_json::to_vec(&b).unwrap(), "application/json")
        };
        applied += answer["applied"].as_u64().unwrap();
        rejected += answer["rejected"].as_array().unwrap().len() as u64;
        assert_eq!(answer["duplicates"], 0);
        assert_eq!(
            answer["applied"].as_u64().unwrap()
                + answer["rejected"].as_array().unwrap().len() as u64,
            100,
            "{answer}"
        );
        assert_eq!(
            answer["results"].as_array().unwrap().len() as u64,
            answer["applied"].as_u64().unwrap()
        );
        for r in answer["rejected"].as_array().unwrap() {
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("there is no ")
                    || reason.starts_with("outside every grid; nearest ")
                    || reason.starts_with("unknown op \"teleport\""),
                "{r}"
            );
        }
        batches.push(b);
    }
    // Five batches from another process, which the server follows.
    let followed = metric(&srv, "wangge_changes_followed_total");
    let mut cli_applied = 0;
    for _ in 0..5 {
        let b = feed.batch(100);
        let path = dir.path().join("feed.ndjson");
        std::fs::write(
            &path,
            b.iter().map(|c| format!("{c}\n")).collect::<String>(),
        )
        .unwrap();
        let out: Value = serde_json::from_str(&wangge_ok(&[
            "apply",
            "--store",
            s(&store),
            s(&path),
            "--json",
            "--quiet",
        ]))
        .unwrap();
        assert_eq!(
            out["applied"].as_u64().unwrap() + out["rejected"].as_u64().unwrap(),
            100,
            "{out}"
        );
        cli_applied += out["applied"].as_u64().unwrap();
        batches.push(b);
    }
    applied += cli_applied;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while metric(&srv, "wangge_changes_followed_total") < followed + cli_applied {
        assert!(std::time::Instant::now() < deadline, "{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let total = (http_batches as u64 + 5) * 100;
    assert!(
        applied > total * 3 / 4 && rejected > total / 100,
        "{applied} applied, {rejected} rejected of {total}"
    );
    // The counts equal the rows they count.
    assert_counts_match_rows(&store);
    // A fresh server answers as the live one over the changed communities.
    let touched: BTreeSet<String> = {
        let c = Connection::open(&store).unwrap();
        c.prepare("SELECT DISTINCT substr(new_grid, 1, 12) FROM wangge_changes WHERE new_grid IS NOT NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let sample: Vec<&str> = touched
        .iter()
        .step_by((touched.len() / 6).max(1))
        .map(String::as_str)
        .collect();
    let fresh = Server::start(&store, &["--token", TOKEN]);
    let (compared, _) = assert_answers_equal(&srv, &fresh, &sample);
    assert!(compared > 100, "{compared}");
    // persons_hex below z12, over the whole city.
    let c = Connection::open(&store).unwrap();
    let (w, so, e, n): (f64, f64, f64, f64) = c
        .query_row(
            "SELECT min(minx), min(miny), max(maxx), max(maxy) FROM rtree_grids_geom",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let mut hex_tiles = 0;
    for z in 4..=11u8 {
        let (x0, y0) = tile_of(w, n, z);
        let (x1, y1) = tile_of(e, so, z);
        for x in x0..=x1 {
            for y in y0..=y1 {
                let p = format!("/tiles/persons_hex/{z}/{x}/{y}");
                let (a, b) = (get(&srv.url(&p), &[]), get(&fresh.url(&p), &[]));
                assert_eq!((a.status, a.body), (b.status, b.body), "{p}");
                hex_tiles += 1;
            }
        }
    }
    assert!(hex_tiles > 10);
    // The stream: one event per batch, layer and op, increasing, with
    // tiles, never a person's id.
    std::thread::sleep(Duration::from_millis(300));
    let lines: Vec<String> = events_rx.try_iter().collect();
    let text = lines.join("\n");
    let data: Vec<Value> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(data.len() >= 20 * 4, "{} events", data.len());
    let seqs: Vec<i64> = data.iter().map(|d| d["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        data.iter()
            .any(|d| d["layer"] == "persons" && !d["tiles"].as_array().unwrap().is_empty())
    );
    for id in &feed.person_ids {
        assert!(!text.contains(id.as_str()), "the stream names person {id}");
    }
    for d in &data {
        let keys: BTreeSet<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            keys.is_subset(&BTreeSet::from([
                "seq",
                "layer",
                "op",
                "grid_codes",
                "tiles",
                "tiles_truncated"
            ])),
            "{d}"
        );
    }
    // A replay of every batch changes nothing.
    let before = digest(&store);
    assert_eq!(replay(&srv, &batches), applied);
    assert_eq!(digest(&store), before, "a replay changed the store");
    // A full re-index of a copy gives every entity the codes the feed gave.
    drop(srv);
    drop(fresh);
    let copy = dir.path().join("reindexed.gpkg");
    std::fs::copy(&store, &copy).unwrap();
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
            codes_of(&store, l),
            codes_of(&copy, l),
            "{l}: feed vs re-index"
        );
    }
    assert_counts_match_rows(&copy);
}

/// Bad requests to the feed: no token, a wrong media type, too many
/// changes, a body that is not an array; each gets its status and a
/// message, and nothing is written.
#[test]
fn the_change_feed_refuses_bad_requests_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let before = digest(&store);
    let srv = Server::start(&store, &["--token", TOKEN]);
    let auth = format!("Bearer {TOKEN}");
    let one = br#"[{"change_id":"a","op":"add","layer":"places","id":"p","lon":116.4,"lat":39.9}]"#;
    let a = post(&srv.url("/v1/changes"), &[JSON_CT], one);
    assert!(a.error(401).contains("Bearer"));
    let a = post(
        &srv.url("/v1/changes"),
        &[("authorization", &auth), ("content-type", "text/csv")],
        one,
    );
    assert!(a.error(415).contains("application/x-ndjson"));
    let a = post(
        &srv.url("/v1/changes"),
        &[("authorization", &auth), JSON_CT],
        b"{\"op\":\"add\"}",
    );
    assert!(a.error(400).contains("JSON array"));
    let many: String = format!("[{}]", vec![r#"{"change_id":"x"}"#; 100_001].join(","));
    let a = post(
        &srv.url("/v1/changes"),
        &[("authorization", &auth), JSON_CT],
        many.as_bytes(),
    );
    assert!(a.error(413).contains("at most 100000"));
    drop(srv);
    let srv = Server::start(&store, &[]);
    let a = post(
        &srv.url("/v1/changes"),
        &[("authorization", &auth), JSON_CT],
        one,
    );
    assert!(a.error(403).contains("--token"));
    drop(srv);
    assert_eq!(digest(&store), before);
    // The CLI names the file and line of what it cannot read.
    let missing = wangge(&[
        "apply",
        "--store",
        s(&store),
        s(&dir.path().join("nope.ndjson")),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.ndjson"));
}

/// `wangge apply` killed with SIGKILL in the middle of a batch (its
/// rollback journal on disk) leaves nothing of the batch: the same rows,
/// counts and log as before, an intact file; run again, it applies all.
#[test]
fn an_apply_killed_mid_batch_leaves_nothing_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let mut feed = Feed::new(&store, 3);
    let path = dir.path().join("big.ndjson");
    let changes = feed.batch(10_000);
    std::fs::write(
        &path,
        changes.iter().map(|c| format!("{c}\n")).collect::<String>(),
    )
    .unwrap();
    let before = digest(&store);
    let journal = store.with_extension("gpkg-journal");
    let mut killed = 0;
    for attempt in 0..5 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wangge"))
            .args([
                "apply",
                "--store",
                s(&store),
                s(&path),
                "--batch",
                "10000",
                "--quiet",
            ])
            .spawn()
            .unwrap();
        // Wait for the write transaction to start (its journal appears),
        // then a little more, so the kill lands inside it.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !journal.exists() {
            if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(20 * (attempt + 1)));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap();
        child.wait().unwrap();
        if finished {
            break;
        }
        killed += 1;
        let c = Connection::open(&store).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        drop(c);
        assert_eq!(
            digest(&store),
            before,
            "attempt {attempt}: a killed batch left rows behind"
        );
    }
    assert!(killed >= 3, "only {killed} kills landed inside the batch");
    let out: Value = serde_json::from_str(&wangge_ok(&[
        "apply",
        "--store",
        s(&store),
        s(&path),
        "--json",
        "--quiet",
    ]))
    .unwrap();
    assert_eq!(out["duplicates"], 0, "{out}");
    assert_eq!(
        out["applied"].as_u64().unwrap() + out["rejected"].as_u64().unwrap(),
        10_000
    );
    assert_counts_match_rows(&store);
}

/// `Last-Event-ID` resumes the stream: a client that saw the first batch
/// gets exactly the later batches' events, in order, at once, from the
/// server's memory, and from the change log after a restart (grid codes
/// equal, tiles left to a redraw); a bad one is refused.
#[test]
fn the_stream_resumes_from_last_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let mut feed = Feed::new(&store, 5);
    let srv = Server::start(&store, &["--token", TOKEN]);
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let b: Vec<Value> = feed
            .batch(60)
            .into_iter()
            .filter(|c| c["layer"] == "places" || c["layer"] == "objects")
            .collect();
        let a = post_changes(&srv, &serde_json::to_vec(&b).unwrap(), "application/json");
        seqs.push(a["seq"].as_i64().unwrap());
    }
    let bad = get(
        &srv.url("/v1/changes/stream"),
        &[("last-event-id", "yesterday")],
    );
    assert!(bad.error(400).contains("Last-Event-ID"));
    // The events a client resuming after `from` gets, up to the last batch.
    let resume = |srv: &Server, from: i64| -> Vec<(i64, Value)> {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let url = srv.url("/v1/changes/stream");
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(None)
                .build()
                .into();
            let resp = agent
                .get(&url)
                .header("last-event-id", &from.to_string())
                .call()
                .unwrap();
            for line in BufReader::new(resp.into_body().into_reader())
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out: Vec<(i64, Value)> = Vec::new();
        let mut id = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while out.last().map(|e| e.0) != Some(seqs[2]) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("the resumed events arrive");
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse::<i64>().unwrap());
            } else if let Some(d) = line.strip_prefix("data: ") {
                out.push((id.take().unwrap(), serde_json::from_str(d).unwrap()));
            }
        }
        out
    };
    let check = |events: &[(i64, Value)]| {
        let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert!(
            ids.iter().all(|&i| i > seqs[0]),
            "{ids:?} after {}",
            seqs[0]
        );
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(
            ids.contains(&seqs[1]),
            "{ids:?} lacks the end of batch 2 ({})",
            seqs[1]
        );
    };
    let summary = |events: &[(i64, Value)]| -> Vec<(i64, Value, Value, Value)> {
        events
            .iter()
            .map(|(i, d)| {
                (
                    *i,
                    d["layer"].clone(),
                    d["op"].clone(),
                    d["grid_codes"].clone(),
                )
            })
            .collect()
    };
    // From the server's memory: exact, with the tiles.
    let live = resume(&srv, seqs[0]);
    check(&live);
    assert!(
        live.iter()
            .all(|(_, d)| !d["tiles"].as_array().unwrap().is_empty()),
        "{live:?}"
    );
    // From a server started afterwards: the same events from the change
    // log, with their grid codes, and no tiles (redraw).
    drop(srv);
    let later = Server::start(&store, &["--token", TOKEN]);
    let replayed = resume(&later, seqs[0]);
    check(&replayed);
    assert_eq!(summary(&replayed), summary(&live));
    assert!(replayed.iter().all(|(_, d)| d["tiles_truncated"] == true));
}

/// Persons the feed added without a building stay counted when a planner
/// edit or a partition redraws their grid: both count a grid's persons by
/// position, as the feed and a re-index do.
#[test]
fn an_edit_and_a_partition_after_the_feed_keep_the_persons_it_added() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let c = Connection::open(&store).unwrap();
    // The grid with the most buildings, and a point of one of its persons.
    let (grid, x, y): (String, f64, f64) = c
        .query_row(
            "SELECT p.grid_code, r.minx, r.miny FROM persons p JOIN rtree_persons_geom r ON r.id = p.fid
              WHERE p.grid_code = (SELECT grid_code FROM buildings GROUP BY grid_code ORDER BY count(*) DESC LIMIT 1)
              LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let community = grid[..12].to_owned();
    let sum = |c: &Connection| -> i64 {
        c.query_row(
            "SELECT sum(persons) FROM grids WHERE parent_code = ?1",
            [&community],
            |r| r.get(0),
        )
        .unwrap()
    };
    let before = sum(&c);
    drop(c);
    let feed: String = (0..20)
        .map(|i| {
            format!(
                "{}\n",
                json!({"change_id": format!("e{i}"), "op": "add", "layer": "persons",
                       "id": format!("EDIT-FEED-{i}"), "lon": x, "lat": y})
            )
        })
        .collect();
    let path = dir.path().join("feed.ndjson");
    std::fs::write(&path, feed).unwrap();
    let out: Value = serde_json::from_str(&wangge_ok(&[
        "apply",
        "--store",
        s(&store),
        s(&path),
        "--json",
        "--quiet",
    ]))
    .unwrap();
    assert_eq!(out["applied"], 20, "{out}");
    wangge_ok(&[
        "edit",
        "--store",
        s(&store),
        "--quiet",
        "split",
        &grid,
        "--parts",
        "2",
    ]);
    let c = Connection::open(&store).unwrap();
    assert_eq!(sum(&c), before + 20);
    drop(c);
    assert_counts_match_rows(&store);
    // A re-partition of the community, then of the whole city with the
    // re-index: grids still count the persons where they are, as the
    // re-index places them.
    wangge_ok(&[
        "partition",
        "--store",
        s(&store),
        "--community",
        &community,
        "--quiet",
    ]);
    let c = Connection::open(&store).unwrap();
    assert_eq!(sum(&c), before + 20);
    drop(c);
    wangge_ok(&["partition", "--store", s(&store), "--assign", "--quiet"]);
    let c = Connection::open(&store).unwrap();
    assert_eq!(sum(&c), before + 20);
    drop(c);
    assert_counts_match_rows(&store);
}
