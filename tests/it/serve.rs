//! `wangge serve`: the real binary on a free port over a small partitioned
//! city, checked with a plain HTTP client against the CLI (`wangge locate`,
//! `wangge assign`, `wangge export`) and the store; the tile machinery
//! (ETag, 304, gzip/br, 204, cache invalidation) in process through the
//! router with a counting tile source.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::partition::{city, partition_ok};
use crate::support::{exported, s, wangge_ok};

pub(crate) const TOKEN: &str = "s3cret-token";

/// One partitioned city for every test of this module (built once).
fn shared_city() -> &'static Path {
    static CITY: OnceLock<PathBuf> = OnceLock::new();
    CITY.get_or_init(|| {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        // Cities of earlier runs (an hour old or more) go.
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old && e.file_name().to_string_lossy().starts_with("serve-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = tmp.join(format!("serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = city(&dir);
        partition_ok(&store, &["--assign"]);
        store
    })
}

/// A copy of the shared city that a test may change.
pub(crate) fn city_copy(dir: &Path) -> PathBuf {
    let out = dir.join("copy.gpkg");
    std::fs::copy(shared_city(), &out).unwrap();
    out
}

/// The grid codes of each community of a store, in the order
/// `wangge export` writes them.
pub(crate) fn grids_by_community(store: &Path, dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in &exported(store, "grids", dir) {
        let p = &g["properties"];
        by.entry(p["parent_code"].as_str().unwrap().to_owned())
            .or_default()
            .push(p["code"].as_str().unwrap().to_owned());
    }
    by
}

/// A running `wangge serve`, killed on drop.
pub(crate) struct Server {
    child: Child,
    base: String,
    /// Its stderr so far.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub(crate) fn start(store: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wangge"))
            .args(["serve", "--store", s(store), "--addr", "127.0.0.1:0"])
            .args(extra)
            .env_remove("WANGGE_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wangge serve starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                if let Some(addr) = line.strip_prefix("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
                // Keep draining so the server never blocks on a full pipe.
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server prints its address");
        Server { child, base, log }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the server printed on stderr so far.
    pub(crate) fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// How many times it caught up with another process's write.
    pub(crate) fn reloads(&self) -> usize {
        self.log_text()
            .matches("store changed by another process")
            .count()
    }

    /// Waits until it has caught up `n` times (the deadline only turns a
    /// broken watcher into a failure instead of a hang).
    pub(crate) fn wait_for_reloads(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.reloads() < n {
            assert!(std::time::Instant::now() < deadline, "{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The mean of a ring's vertices (the closing one left out).
pub(crate) fn vertex_mean(ring: &Value) -> (f64, f64) {
    let ring = ring.as_array().unwrap();
    let n = ring.len() - 1;
    let (mut x, mut y) = (0.0, 0.0);
    for p in &ring[..n] {
        x += p[0].as_f64().unwrap() / n as f64;
        y += p[1].as_f64().unwrap() / n as f64;
    }
    (x, y)
}

/// A GeoJSON file of `n` places at one point, ids `{prefix}-0`, ….
pub(crate) fn places_at(dir: &Path, prefix: &str, n: usize, x: f64, y: f64) -> PathBuf {
    let features: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
                   "properties": {"id": format!("{prefix}-{i}"), "kind": "shop", "name": format!("店{i}")}})
        })
        .collect();
    let file = dir.join("places.geojson");
    std::fs::write(
        &file,
        json!({"type": "FeatureCollection", "features": features}).to_string(),
    )
    .unwrap();
    file
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    /// A 4xx/5xx with a JSON `{"error": "..."}` body; returns the message.
    pub(crate) fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let msg = self.json()["error"].as_str().unwrap_or("").to_owned();
        assert!(!msg.is_empty(), "no error message");
        msg
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
    let status = r.status().as_u16();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in r.headers() {
        let v = v.to_str().unwrap_or("");
        headers
            .entry(k.as_str().to_owned())
            .and_modify(|e| *e = format!("{e}, {v}"))
            .or_insert_with(|| v.to_owned());
    }
    let body = r
        .body_mut()
        .with_config()
        .limit(200 << 20)
        .read_to_vec()
        .unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    answer(req.call().unwrap())
}

pub(crate) fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    answer(req.send(body).unwrap())
}

pub(crate) const JSON_CT: (&str, &str) = ("content-type", "application/json");

/// POSTs a JSON body to /v1/locate over a raw socket, ignoring write
/// errors, and returns the whole answer as text.
fn raw_post(addr: &str, framing: &str, parts: &[&[u8]]) -> String {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/locate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let _ = c.write_all(head.as_bytes());
    for p in parts {
        if c.write_all(p).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Deterministic points over the city's extent and a margin around it.
pub(crate) fn sample_points(grids: &[Value], n: usize) -> Vec<[f64; 2]> {
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    let mut visit = |c: &Value| {
        let (x, y) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    };
    for g in grids {
        for poly in g["geometry"]["coordinates"].as_array().unwrap() {
            for ring in poly.as_array().unwrap() {
                ring.as_array().unwrap().iter().for_each(&mut visit);
            }
        }
    }
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            [
                b[0] - 0.05 * w + 1.1 * w * next(),
                b[1] - 0.05 * h + 1.1 * h * next(),
            ]
        })
        .map(|[x, y]| [(x * 1e7).round() / 1e7, (y * 1e7).round() / 1e7])
        .collect()
}

#[test]
fn serve_locate_answers_equal_the_locate_cli() {
    let store = shared_city();
    let dir = tempfile::tempdir().unwrap();
    let grids = exported(store, "grids", dir.path());
    let srv = Server::start(store, &[]);
    let health = get(&srv.url("/health"), &[]);
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json()["grids"].as_u64().unwrap() as usize,
        grids.len()
    );
    let mut inside = 0;
    for (i, [lon, lat]) in sample_points(&grids, 16).into_iter().enumerate() {
        let (lon_s, lat_s) = (lon.to_string(), lat.to_string());
        let cli: Value = serde_json::from_str(&wangge_ok(&[
            "locate",
            "--store",
            s(store),
            "--json",
            "--quiet",
            "--",
            &lon_s,
            &lat_s,
        ]))
        .unwrap();
        let mut got = get(&srv.url(&format!("/v1/locate?lon={lon}&lat={lat}")), &[]).json();
        assert_eq!(got["crs"], "wgs84");
        got.as_object_mut().unwrap().remove("crs");
        assert_eq!(got, cli, "at {lon},{lat}");
        inside += usize::from(cli["inside"] == true);
        // The same place given in GCJ-02 and BD-09 gets the same answer
        // as the CLI gives for those inputs.
        for crs in ["gcj02", "bd09"].iter().skip(i % 2).take(1) {
            let crs = *crs;
            let (x, y) = wangge_engine::crs::Crs::Wgs84.transform(crs.parse().unwrap(), lon, lat);
            let (xs, ys) = (x.to_string(), y.to_string());
            let cli: Value = serde_json::from_str(&wangge_ok(&[
                "locate",
                "--store",
                s(store),
                "--json",
                "--quiet",
                "--crs",
                crs,
                "--",
                &xs,
                &ys,
            ]))
            .unwrap();
            let mut got = get(
                &srv.url(&format!("/v1/locate?lon={x}&lat={y}&crs={crs}")),
                &[],
            )
            .json();
            assert_eq!(got["crs"], crs);
            got.as_object_mut().unwrap().remove("crs");
            assert_eq!(got, cli, "at {x},{y} {crs}");
        }
    }
    assert!(inside >= 4, "too few sample points inside: {inside}");
}

#[test]
fn serve_batch_locate_keeps_order_and_reports_each_bad_point() {
    let store = shared_city();
    let dir = tempfile::tempdir().unwrap();
    let grids = exported(store, "grids", dir.path());
    let pts = sample_points(&grids, 3000);
    // The truth: `wangge assign` over the same points as a CSV registry.
    let input = dir.path().join("pts.csv");
    let mut csv = String::from("id,lon,lat\n");
    for (i, [x, y]) in pts.iter().enumerate() {
        csv.push_str(&format!("{i},{x},{y}\n"));
    }
    std::fs::write(&input, &csv).unwrap();
    let output = dir.path().join("out.csv");
    wangge_ok(&[
        "assign",
        "--store",
        s(store),
        "--input",
        s(&input),
        "--output",
        s(&output),
        "--quiet",
    ]);
    let mut truth: BTreeMap<usize, String> = BTreeMap::new();
    let mut r = ::csv::Reader::from_path(&output).unwrap();
    let h = r.headers().unwrap().clone();
    let (ci, cg) = (
        h.iter().position(|c| c == "id").unwrap(),
        h.iter().position(|c| c == "grid_code").unwrap(),
    );
    for rec in r.records() {
        let rec = rec.unwrap();
        truth.insert(rec[ci].parse().unwrap(), rec[cg].to_owned());
    }
    assert!(truth.len() > 500, "{} inside", truth.len());

    let srv = Server::start(store, &[]);
    // JSON, both point shapes, with bad points mixed in.
    let mut body = Vec::new();
    let mut expect: Vec<Option<&str>> = Vec::new();
    for (i, [x, y]) in pts.iter().enumerate() {
        body.push(if i % 2 == 0 {
            json!([x, y])
        } else {
            json!({"lon": x, "lat": y})
        });
        expect.push(None);
        if i % 500 == 0 {
            body.push(json!(["NaN", 39.9]));
            expect.push(Some("finite"));
            body.push(json!([116.4, 95.0]));
            expect.push(Some("latitude"));
            body.push(json!([116.4]));
            expect.push(Some("expected [lon, lat]"));
            body.push(json!({"lon": "east", "lat": 1}));
            expect.push(Some("not a number"));
        }
    }
    let a = post(
        &srv.url("/v1/locate"),
        &[JSON_CT],
        serde_json::to_string(&body).unwrap().as_bytes(),
    );
    assert_eq!(a.status, 200);
    let v = a.json();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), body.len());
    assert_eq!(v["errors"].as_u64().unwrap() as usize, 4 * 6);
    let mut k = 0;
    for (r, e) in results.iter().zip(&expect) {
        match e {
            Some(why) => assert!(
                r["error"].as_str().unwrap().contains(why),
                "{r} lacks {why}"
            ),
            None => {
                match truth.get(&k) {
                    Some(code) => {
                        assert_eq!(r["inside"], true, "point {k}");
                        assert_eq!(r["grid_code"].as_str().unwrap(), code, "point {k}");
                        assert_eq!(&code[..12], r["community_code"].as_str().unwrap());
                    }
                    None => {
                        assert_eq!(r["inside"], false, "point {k}: {r}");
                        assert!(r["nearest_code"].is_string());
                        assert!(r["distance_m"].as_f64().unwrap() > 0.0);
                    }
                }
                k += 1;
            }
        }
    }
    assert_eq!(k, pts.len());
    // CSV gives the same answers.
    let a = post(
        &srv.url("/v1/locate"),
        &[("content-type", "text/csv; charset=utf-8")],
        csv.as_bytes(),
    );
    let v = a.json();
    for (i, r) in v["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            r["grid_code"].as_str(),
            truth.get(&i).map(String::as_str),
            "csv point {i}"
        );
    }
    // More than 100,000 points: 413 with a message.
    let many = format!("[{}]", vec!["[116.4,39.9]"; 100_001].join(","));
    assert!(
        post(&srv.url("/v1/locate"), &[JSON_CT], many.as_bytes())
            .error(413)
            .contains("100000")
    );
}

#[test]
fn serve_grids_equal_the_stored_grids() {
    let store = shared_city();
    let dir = tempfile::tempdir().unwrap();
    let grids = exported(store, "grids", dir.path());
    let srv = Server::start(store, &["--token", TOKEN]);
    let staff = format!("Bearer {TOKEN}");
    let staff = [("authorization", staff.as_str())];
    let mut by_community: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, g) in grids.iter().enumerate() {
        let p = &g["properties"];
        let code = p["code"].as_str().unwrap();
        by_community
            .entry(p["parent_code"].as_str().unwrap().to_owned())
            .or_default()
            .push(code.to_owned());
        if i % 3 != 0 {
            continue;
        }
        // With the token: the stored counts exactly.
        let f = get(&srv.url(&format!("/v1/grids/{code}")), &staff).json();
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["id"], code);
        assert_eq!(f["geometry"], g["geometry"], "grid {code}");
        for k in [
            "code",
            "name",
            "parent_code",
            "households",
            "persons",
            "buildings",
            "area_m2",
        ] {
            assert_eq!(f["properties"][k], p[k], "grid {code} {k}");
        }
        assert_eq!(f["properties"]["community_code"], p["parent_code"]);
        assert!(f["properties"]["version"].as_i64().unwrap() >= 1);
    }
    // Entity counts per grid equal the exported entity layers.
    let mut objects: BTreeMap<String, u64> = BTreeMap::new();
    for o in exported(store, "objects", dir.path()) {
        if let Some(c) = o["properties"]["grid_code"].as_str() {
            *objects.entry(c.to_owned()).or_default() += 1;
        }
    }
    for code in grids
        .iter()
        .step_by(7)
        .map(|g| g["properties"]["code"].as_str().unwrap())
    {
        let f = get(&srv.url(&format!("/v1/grids/{code}")), &[]).json();
        assert_eq!(
            f["properties"]["objects"].as_u64().unwrap(),
            objects.get(code).copied().unwrap_or(0),
            "objects in {code}"
        );
    }
    // Listing by community = the grids whose parent is that community.
    for (c, codes) in by_community.iter().take(10) {
        let fc = get(&srv.url(&format!("/v1/grids?community={c}")), &[]).json();
        assert_eq!(fc["type"], "FeatureCollection");
        let got: Vec<&str> = fc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert_eq!(got, *codes);
        let comm = get(&srv.url(&format!("/v1/communities/{c}")), &[]).json();
        assert_eq!(comm["id"], c.as_str());
        let listed: Vec<&str> = comm["properties"]["grids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["code"].as_str().unwrap())
            .collect();
        assert_eq!(listed, *codes);
        assert_eq!(comm["properties"]["grid_count"], codes.len());
    }
    // A bbox around a located point lists that point's grid.
    for [lon, lat] in sample_points(&grids, 12) {
        let loc = get(&srv.url(&format!("/v1/locate?lon={lon}&lat={lat}")), &[]).json();
        let Some(code) = loc["code"].as_str() else {
            continue;
        };
        let d = 1e-4;
        let fc = get(
            &srv.url(&format!(
                "/v1/grids?bbox={},{},{},{}",
                lon - d,
                lat - d,
                lon + d,
                lat + d
            )),
            &[],
        )
        .json();
        assert!(
            fc["features"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["id"] == code),
            "{code} not in the bbox listing around {lon},{lat}"
        );
    }
}

#[test]
fn serve_rejects_bad_requests_with_a_message_and_stays_up() {
    let store = shared_city();
    let mut srv = Server::start(
        store,
        &[
            "--body-limit-mb",
            "1",
            "--header-timeout-s",
            "1",
            "--no-tiles",
        ],
    );
    let u = |p: &str| srv.url(p);
    assert!(
        get(&u("/v1/locate?lon=abc&lat=39.9"), &[])
            .error(400)
            .contains("not a number")
    );
    assert!(
        get(&u("/v1/locate?lat=39.9"), &[])
            .error(400)
            .contains("lon")
    );
    assert!(
        get(&u("/v1/locate?lon=NaN&lat=39.9"), &[])
            .error(400)
            .contains("finite")
    );
    assert!(
        get(&u("/v1/locate?lon=39.9&lat=116.4"), &[])
            .error(400)
            .contains("swapped")
    );
    assert!(
        get(&u("/v1/locate?lon=116.4&lat=39.9&crs=utm"), &[])
            .error(400)
            .contains("utm")
    );
    assert!(
        get(&u("/v1/grids/12345"), &[])
            .error(400)
            .contains("15 digits")
    );
    assert!(
        get(&u("/v1/grids/110101001001999"), &[])
            .error(404)
            .contains("no grid")
    );
    assert!(
        get(&u("/v1/communities/999999999999"), &[])
            .error(404)
            .contains("no community")
    );
    assert!(
        get(&u("/v1/grids?bbox=1,2,3"), &[])
            .error(400)
            .contains("bbox")
    );
    assert!(get(&u("/v1/grids"), &[]).error(400).contains("bbox"));
    assert!(
        get(&u("/v1/grids?bbox=116,39,117,40&limit=0"), &[])
            .error(400)
            .contains("limit")
    );
    get(&u("/no/such/thing"), &[]).error(404);
    assert!(
        post(&u("/v1/locate"), &[JSON_CT], b"[[1,")
            .error(400)
            .contains("malformed JSON")
    );
    assert!(
        post(&u("/v1/locate"), &[JSON_CT], b"{\"lon\":1}")
            .error(400)
            .contains("array")
    );
    assert!(
        post(&u("/v1/locate"), &[("content-type", "text/plain")], b"1,2")
            .error(415)
            .contains("text/plain")
    );
    post(&u("/v1/locate"), &[], b"[]").error(415);
    assert!(
        post(
            &u("/v1/locate"),
            &[("content-type", "text/csv")],
            b"a,b\n1,2\n"
        )
        .error(400)
        .contains("CSV header")
    );
    // Over the 1 MiB limit, declared and chunked: 413 with a JSON message
    // (the server may answer and close before the body is sent, so a raw
    // socket that ignores write errors reads the answer).
    let huge = vec![b' '; 2 << 20];
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let declared = raw_post(&addr, "Content-Length: 2097152", &[&huge]);
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(declared.contains("too large"), "{declared}");
    let chunks: Vec<Vec<u8>> = huge
        .chunks(64 << 10)
        .map(|c| {
            [
                format!("{:x}\r\n", c.len()).into_bytes(),
                c.to_vec(),
                b"\r\n".to_vec(),
            ]
            .concat()
        })
        .chain([b"0\r\n\r\n".to_vec()])
        .collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let chunked = raw_post(&addr, "Transfer-Encoding: chunked", &refs);
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("\"error\""), "{chunked}");
    // Edits are disabled without --token: 403, whatever the token.
    let e = post(
        &u("/v1/communities/110101001001/edits"),
        &[JSON_CT, ("authorization", "Bearer x"), ("if-match", "1")],
        br#"{"op":"lock","grid":"110101001001001"}"#,
    );
    assert!(e.error(403).contains("--token"));
    // Tile routes without a tile source.
    get(&u("/tiles/nope/0/0/0"), &[]).error(404);
    get(&u("/nope"), &[]).error(404);
    // A client that never finishes its headers is cut off.
    let mut slow = std::net::TcpStream::connect(srv.base.trim_start_matches("http://")).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::io::Write::write_all(&mut slow, b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "slow client kept for {:?}",
        t.elapsed()
    );
    assert!(
        buf.is_empty() || buf.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // Still up and counting.
    assert_eq!(get(&u("/health"), &[]).status, 200);
    let m = get(&u("/metrics"), &[]);
    let text = String::from_utf8(m.body).unwrap();
    assert!(text.contains("wangge_http_requests_total{route=\"/v1/locate\",status=\"400\"}"));
    assert!(text.contains("wangge_http_request_duration_seconds_bucket"));
    // SIGTERM: a clean exit after the requests in flight.
    let pid = srv.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(srv.log.lock().unwrap().iter().any(|l| l == "shut down"));
}

#[test]
fn serve_edits_need_the_token_and_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    // A community with at least three grids; merge its first two if they
    // are neighbours, else lock one.
    let by = grids_by_community(&store, dir.path());
    let (comm, codes) = by.iter().find(|(_, v)| v.len() >= 3).unwrap();
    let srv = Server::start(&store, &["--token", TOKEN]);
    let url = srv.url(&format!("/v1/communities/{comm}/edits"));
    let auth = format!("Bearer {TOKEN}");
    let lock = json!({"op": "lock", "grid": codes[0], "reason": "test"}).to_string();
    assert!(
        post(&url, &[JSON_CT], lock.as_bytes())
            .error(401)
            .contains("Bearer")
    );
    post(
        &url,
        &[JSON_CT, ("authorization", "Bearer wrong")],
        lock.as_bytes(),
    )
    .error(401);
    let a = post(&url, &[JSON_CT, ("authorization", &auth)], lock.as_bytes());
    a.error(428);
    let v = a.json()["current_version"].as_i64().unwrap();
    assert!(v >= 1);
    let stale = (v - 1).to_string();
    let a = post(
        &url,
        &[JSON_CT, ("authorization", &auth), ("if-match", &stale)],
        lock.as_bytes(),
    );
    a.error(412);
    assert_eq!(a.json()["current_version"], v);
    post(
        &url,
        &[
            ("content-type", "text/plain"),
            ("authorization", &auth),
            ("if-match", "1"),
        ],
        b"x",
    )
    .error(415);
    post(
        &url,
        &[
            JSON_CT,
            ("authorization", &auth),
            ("if-match", &v.to_string()),
        ],
        b"{\"op\":\"explode\"}",
    )
    .error(400);
    let other = json!({"op": "lock", "grid": "110101001001001"}).to_string();
    if !comm.starts_with("110101001001") {
        post(
            &url,
            &[
                JSON_CT,
                ("authorization", &auth),
                ("if-match", &v.to_string()),
            ],
            other.as_bytes(),
        )
        .error(400);
    }
    // Lock: a new version, shown by the grid.
    let quoted = format!("\"{v}\"");
    let a = post(
        &url,
        &[JSON_CT, ("authorization", &auth), ("if-match", &quoted)],
        lock.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let out = a.json();
    assert_eq!(out["version"], v + 1);
    assert_eq!(a.header("etag"), Some(format!("\"{}\"", v + 1).as_str()));
    let g = get(&srv.url(&format!("/v1/grids/{}", codes[0])), &[]).json();
    assert_eq!(g["properties"]["locked"], true);
    assert_eq!(g["properties"]["version"], v + 1);
    // A refused edit (409) says why.
    let v = v + 1;
    let a = post(
        &url,
        &[
            JSON_CT,
            ("authorization", &auth),
            ("if-match", &v.to_string()),
        ],
        lock.as_bytes(),
    );
    assert!(a.error(409).contains("already locked"), "{}", a.json());
    // Unlock, then split the first grid: locate and the listing follow.
    let unlock = json!({"op": "unlock", "grid": codes[0]}).to_string();
    let a = post(
        &url,
        &[
            JSON_CT,
            ("authorization", &auth),
            ("if-match", &v.to_string()),
        ],
        unlock.as_bytes(),
    );
    assert_eq!(a.status, 200);
    let v = v + 1;
    let split = json!({"op": "split", "grid": codes[0], "parts": 2}).to_string();
    let a = post(
        &url,
        &[
            JSON_CT,
            ("authorization", &auth),
            ("if-match", &v.to_string()),
        ],
        split.as_bytes(),
    );
    if a.status == 200 {
        let out = a.json();
        let added: Vec<String> = out["added"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert!(!added.is_empty());
        let fc = get(&srv.url(&format!("/v1/grids?community={comm}")), &[]).json();
        let listed: HashSet<&str> = fc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        for c in &added {
            assert!(
                listed.contains(c.as_str()),
                "{c} not listed after the split"
            );
        }
        // The store agrees with what the server now answers.
        let after = exported(&store, "grids", dir.path());
        for f in after
            .iter()
            .filter(|f| added.contains(&f["properties"]["code"].as_str().unwrap().to_owned()))
        {
            let code = f["properties"]["code"].as_str().unwrap();
            let served = get(&srv.url(&format!("/v1/grids/{code}")), &[]).json();
            assert_eq!(served["geometry"], f["geometry"]);
        }
        // The stale version is refused now.
        post(
            &url,
            &[
                JSON_CT,
                ("authorization", &auth),
                ("if-match", &v.to_string()),
            ],
            split.as_bytes(),
        )
        .error(412);
    } else {
        // A grid of one building cannot be split; the refusal says why.
        a.error(409);
    }
    // Two edits planned on the same version at once: one wins, the other
    // gets 412 with the new version.
    let v = get(&srv.url(&format!("/v1/communities/{comm}")), &[]).json()["properties"]["version"]
        .as_i64()
        .unwrap();
    let vs = v.to_string();
    let bodies: Vec<String> = codes[1..3]
        .iter()
        .map(|g| json!({"op": "lock", "grid": g}).to_string())
        .collect();
    let mut answers: Vec<(u16, Value)> = std::thread::scope(|sc| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| {
                let (url, auth, vs) = (&url, &auth, &vs);
                sc.spawn(move || {
                    let a = post(
                        url,
                        &[JSON_CT, ("authorization", auth), ("if-match", vs)],
                        b.as_bytes(),
                    );
                    (a.status, a.json())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    answers.sort_by_key(|a| a.0);
    assert_eq!(answers[0].0, 200, "{:?}", answers);
    assert_eq!(answers[1].0, 412, "{:?}", answers);
    assert_eq!(answers[1].1["current_version"], v + 1);
    // Rebalance over HTTP with a smaller target: more grids, and the grid
    // the winner locked is left exactly as it was.
    let locked = answers[0].1["op"]
        .as_str()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    let before = get(&srv.url(&format!("/v1/grids/{locked}")), &[]).json();
    let count = |srv: &Server| {
        get(&srv.url(&format!("/v1/grids?community={comm}")), &[]).json()["features"]
            .as_array()
            .unwrap()
            .len()
    };
    let n_before = count(&srv);
    let rebalance = json!({"op": "rebalance", "target": 3}).to_string();
    let a = post(
        &url,
        &[
            JSON_CT,
            ("authorization", &auth),
            ("if-match", &(v + 1).to_string()),
        ],
        rebalance.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.json());
    let out = a.json();
    assert_eq!(out["version"], v + 2);
    assert!(
        !out["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == locked.as_str())
    );
    assert!(
        !out["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == locked.as_str())
    );
    assert!(count(&srv) > n_before, "{out}");
    let after = get(&srv.url(&format!("/v1/grids/{locked}")), &[]).json();
    for k in ["households", "buildings"] {
        assert_eq!(after["properties"][k], before["properties"][k], "{k}");
    }
    let area = |f: &Value| f["properties"]["area_m2"].as_f64().unwrap();
    // Noding may add a vertex where a neighbour's new corner meets a shared
    // edge; that vertex is on the 1e-7° overlay grid, so up to half a grid
    // unit off the old line, which moves the area by about 1e-9 to 1e-6 of
    // a grid's (the old vertices are all kept, checked below).
    assert!(
        (area(&after) - area(&before)).abs() <= 1e-6 * area(&before),
        "{} {}",
        area(&after),
        area(&before)
    );
    // Same outline: noding may only have added vertices where a new corner
    // of a neighbour meets a shared edge; every old vertex is still there,
    // in order.
    let ring = |f: &Value| {
        f["geometry"]["coordinates"][0][0]
            .as_array()
            .unwrap()
            .clone()
    };
    let (old, new) = (ring(&before), ring(&after));
    let mut it = new.iter();
    assert!(
        old.iter().all(|v| it.any(|w| w == v)),
        "{old:?} is not kept in {new:?}"
    );
}

#[test]
fn serve_never_reveals_a_person() {
    let store = shared_city();
    let dir = tempfile::tempdir().unwrap();
    let persons = dir.path().join("persons.csv");
    wangge_ok(&[
        "export",
        s(store),
        "--layer",
        "persons",
        "--out",
        s(&persons),
        "--quiet",
    ]);
    let mut r = ::csv::Reader::from_path(&persons).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (lon, lat, card) = (col("lon"), col("lat"), col("id_card"));
    let mut coords = Vec::new();
    let mut cards = Vec::new();
    for rec in r.records().step_by(3) {
        let rec = rec.unwrap();
        coords.push(rec[lon].to_owned());
        coords.push(rec[lat].to_owned());
        cards.push(rec[card].to_owned());
    }
    assert!(coords.len() > 100);
    let grids = exported(store, "grids", dir.path());
    let srv = Server::start(store, &[]);
    let mut texts = Vec::new();
    let code = grids[0]["properties"]["code"].as_str().unwrap();
    let comm = &code[..12];
    for p in [
        format!("/v1/grids/{code}"),
        format!("/v1/grids?community={comm}"),
        format!("/v1/communities/{comm}"),
        "/v1/grids?bbox=-180,-90,180,90&limit=10000".to_owned(),
        "/catalog".to_owned(),
        "/style.json".to_owned(),
        "/health".to_owned(),
    ] {
        let a = get(&srv.url(&p), &[]);
        assert_eq!(a.status, 200, "{p}");
        texts.push(String::from_utf8(a.body).unwrap());
    }
    // Every token of every answer (numbers, codes, words), to look the
    // person's id-card numbers and coordinates up in.
    let tokens: HashSet<&str> = texts
        .iter()
        .flat_map(|t| t.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '-')))
        .filter(|w| !w.is_empty())
        .collect();
    for t in &texts {
        assert!(!t.contains("id_card") && !t.contains("household_id"));
    }
    for c in &cards {
        assert!(
            !tokens.contains(c.as_str()),
            "a person's id card was served"
        );
    }
    // Person coordinates (7+ decimals) never appear in any answer.
    let distinctive: Vec<&String> = coords.iter().filter(|c| c.len() >= 10).collect();
    assert!(distinctive.len() > 100);
    for c in &distinctive {
        assert!(
            !tokens.contains(c.as_str()),
            "a person's coordinate {c} was served"
        );
    }
    // The check sees coordinates at all: grid vertices are tokens.
    let vertex = grids[0]["geometry"]["coordinates"][0][0][0][0].to_string();
    assert!(tokens.contains(vertex.as_str()), "{vertex}");
}

// ---------------------------------------------------------------------------
// Tiles in process: a counting tile source behind the real router.
// ---------------------------------------------------------------------------

/// Tiles are their own coordinates repeated (so every tile differs); tiles
/// with x = 0 are empty.
struct FakeSource {
    encoded: AtomicUsize,
}

impl wangge::serve::TileSource for FakeSource {
    fn id(&self) -> &str {
        "fake"
    }
    fn layers(&self) -> Vec<wangge::serve::VectorLayer> {
        vec![wangge::serve::VectorLayer {
            id: "grids".into(),
            description: "test".into(),
            minzoom: 0,
            maxzoom: 14,
            fields: [("code".to_owned(), "String".to_owned())].into(),
        }]
    }
    fn bounds(&self) -> [f64; 4] {
        [115.4, 39.4, 117.5, 41.1]
    }
    fn minzoom(&self) -> u8 {
        0
    }
    fn maxzoom(&self) -> u8 {
        14
    }
    fn tile(&self, t: wangge_tiler::TileCoord) -> Result<Vec<u8>, String> {
        self.encoded.fetch_add(1, Ordering::SeqCst);
        if t.x() == 0 {
            return Ok(Vec::new());
        }
        Ok(format!("{}/{}/{};", t.z(), t.x(), t.y())
            .repeat(500)
            .into_bytes())
    }
    fn reload_grids(
        &self,
        _store: &wangge_engine::store::AnyStore,
        _community: &str,
    ) -> Result<wangge::serve::TileChanges, String> {
        Ok(wangge::serve::TileChanges::everything())
    }
    fn apply_changes(
        &self,
        _store: &wangge_engine::store::AnyStore,
        _touched: &wangge_tiler::Touched,
    ) -> Result<wangge::serve::TileChanges, String> {
        Ok(wangge::serve::TileChanges::everything())
    }
    fn reload_all(&self) -> Result<wangge::serve::TileChanges, String> {
        Ok(wangge::serve::TileChanges::everything())
    }
}

async fn call(
    app: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .uri(uri)
        .header("host", "example.test:9");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let mut h: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in resp.headers() {
        let v = v.to_str().unwrap();
        h.entry(k.as_str().to_owned())
            .and_modify(|e| *e = format!("{e}, {v}"))
            .or_insert_with(|| v.to_owned());
    }
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, h, body.to_vec())
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tiles_negotiate_cache_and_invalidate() {
    let store = shared_city().to_owned();
    let source = Arc::new(FakeSource {
        encoded: AtomicUsize::new(0),
    });
    let state = tokio::task::spawn_blocking({
        let source = Arc::clone(&source);
        move || {
            wangge::serve::AppState::open(
                store,
                vec![source as Arc<dyn wangge::serve::TileSource>],
                wangge::serve::Options::default(),
            )
            .unwrap()
        }
    })
    .await
    .unwrap();
    let state = Arc::new(state);
    let app = wangge::serve::router(Arc::clone(&state));
    // Beijing centre at z14.
    let t = "/tiles/fake/14/13489/6208";
    let (st, h, plain) = call(&app, t, &[]).await;
    assert_eq!(st, 200);
    assert_eq!(plain, "14/13489/6208;".repeat(500).into_bytes());
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert!(!h.contains_key("content-encoding"));
    let etag = h["etag"].clone();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let (st, h, gz) = call(&app, &format!("{t}.pbf"), &[("accept-encoding", "gzip")]).await;
    assert_eq!((st, h["content-encoding"].as_str()), (200, "gzip"));
    assert_eq!(gunzip(&gz), plain);
    assert_ne!(h["etag"], etag, "each encoding has its own strong ETag");
    let (st, h, br) = call(
        &app,
        &format!("{t}.mvt"),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!((st, h["content-encoding"].as_str()), (200, "br"));
    assert_eq!(unbrotli(&br), plain);
    assert!(h["vary"].contains("accept-encoding"), "{}", h["vary"]);
    assert_eq!(
        source.encoded.load(Ordering::SeqCst),
        1,
        "encoded once, then cached"
    );
    // Revalidation.
    let (st, _, body) = call(&app, t, &[("if-none-match", &etag)]).await;
    assert_eq!((st, body.len()), (304, 0));
    let (st, _, _) = call(&app, t, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(st, 200);
    // Empty tiles: 204 without a body.
    let (st, _, body) = call(&app, "/tiles/fake/3/0/1", &[]).await;
    assert_eq!((st, body.len()), (204, 0));
    // Bad coordinates.
    for (uri, want) in [
        ("/tiles/fake/a/1/1", 400),
        ("/tiles/fake/3/1/x.pbf", 400),
        ("/tiles/fake/3/-1/1", 400),
        ("/tiles/fake/15/1/1", 404),
        ("/tiles/fake/3/8/1", 404),
        ("/tiles/fake/3/1/8", 404),
        ("/tiles/none/3/1/1", 404),
    ] {
        let (st, h, body) = call(&app, uri, &[]).await;
        assert_eq!(st, want, "{uri}");
        assert_eq!(h["content-type"], "application/json", "{uri}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].is_string(), "{uri}");
    }
    // Invalidation drops exactly the tiles that touch the box, at every zoom.
    let far = "/tiles/fake/14/13000/6208";
    call(&app, far, &[]).await;
    call(&app, "/tiles/fake/5/26/12", &[]).await;
    let before = source.encoded.load(Ordering::SeqCst);
    let removed = state.invalidate_bbox([116.39, 39.90, 116.40, 39.91]);
    assert_eq!(
        removed, 2,
        "the z14 centre tile and the z5 tile over Beijing"
    );
    call(&app, t, &[]).await;
    call(&app, far, &[]).await;
    call(&app, "/tiles/fake/5/26/12", &[]).await;
    assert_eq!(source.encoded.load(Ordering::SeqCst), before + 2);
    // TileJSON, catalog and style.
    for uri in ["/fake", "/tiles/fake.json"] {
        let (st, _, body) = call(&app, uri, &[]).await;
        assert_eq!(st, 200);
        let tj: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(tj["tilejson"], "3.0.0");
        assert_eq!(
            tj["tiles"][0],
            "http://example.test:9/tiles/fake/{z}/{x}/{y}"
        );
        assert_eq!(tj["vector_layers"][0]["id"], "grids");
        assert_eq!(tj["maxzoom"], 14);
    }
    let (_, _, body) = call(&app, "/catalog", &[]).await;
    let cat: Value = serde_json::from_slice(&body).unwrap();
    assert!(cat["tiles"]["fake"].is_object());
    let (_, _, body) = call(&app, "/style.json", &[]).await;
    let style: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(style["version"], 8);
    assert_eq!(
        style["sources"]["fake"]["url"],
        "http://example.test:9/tiles/fake.json"
    );
    let layers = style["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .any(|l| l["source-layer"] == "grids" && l["type"] == "fill")
    );
    assert!(style.get("glyphs").is_none() && style.get("sprite").is_none());
    // Metrics count hits and misses.
    let (_, _, body) = call(&app, "/metrics", &[]).await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("wangge_tile_cache_hits_total"));
    let misses: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wangge_tile_cache_misses_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(misses as usize, source.encoded.load(Ordering::SeqCst));
}

// ---------------------------------------------------------------------------
// Tiles from the real binary, decoded by the Python `mapbox-vector-tile`.
// ---------------------------------------------------------------------------

/// The XYZ tile holding a lon/lat at zoom z.
pub(crate) fn tile_of(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let r = lat.to_radians();
    let y =
        ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u32;
    (x, y)
}

/// Decodes raw MVT bytes with the independent Python decoder.
fn decode_tiles(dir: &Path, tiles: &[&[u8]]) -> Vec<Value> {
    let mut paths = Vec::new();
    for (i, t) in tiles.iter().enumerate() {
        let p = dir.join(format!("tile{i}.mvt"));
        std::fs::write(&p, t).unwrap();
        paths.push(p);
    }
    let args: Vec<&str> = paths.iter().map(|p| s(p)).collect();
    crate::support::python_json("mvt_decode.py", &args)
        .as_array()
        .unwrap()
        .clone()
}

fn grid_codes_in(tile: &Value) -> HashSet<String> {
    tile["grids"]["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["properties"]["code"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn serve_tiles_decode_and_follow_edits() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let grids = exported(&store, "grids", dir.path());
    let srv = Server::start(&store, &["--token", TOKEN]);
    let cat = get(&srv.url("/catalog"), &[]).json();
    assert!(cat["tiles"]["wangge"].is_object(), "{cat}");
    let tj = get(&srv.url("/tiles/wangge.json"), &[]).json();
    assert_eq!(tj["tilejson"], "3.0.0");
    assert_eq!(
        tj["tiles"][0].as_str().unwrap(),
        srv.url("/tiles/wangge/{z}/{x}/{y}")
    );
    let layers: Vec<&str> = tj["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert!(layers.contains(&"grids"), "{layers:?}");
    assert!(
        !layers.contains(&"persons"),
        "persons are never a tile layer"
    );
    let style = get(&srv.url("/style.json"), &[]).json();
    for l in &layers {
        assert!(
            style["layers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["source-layer"] == *l),
            "style misses {l}"
        );
    }

    // A community with several grids and a point inside its first grid.
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for g in &grids {
        by.entry(g["properties"]["parent_code"].as_str().unwrap().to_owned())
            .or_default()
            .push(g);
    }
    // A grid of several buildings (so it can be split) in a community of
    // several grids.
    let (comm, grid) = by
        .iter()
        .filter(|(_, v)| v.len() >= 3)
        .find_map(|(c, v)| {
            v.iter()
                .find(|g| g["properties"]["buildings"].as_i64().unwrap() >= 4)
                .map(|g| (c, *g))
        })
        .unwrap();
    let code = grid["properties"]["code"].as_str().unwrap();
    let ring = &grid["geometry"]["coordinates"][0][0];
    let (mut lon, mut lat) = (0.0, 0.0);
    let pts = ring.as_array().unwrap();
    for p in &pts[..pts.len() - 1] {
        lon += p[0].as_f64().unwrap() / (pts.len() - 1) as f64;
        lat += p[1].as_f64().unwrap() / (pts.len() - 1) as f64;
    }
    let z = 14;
    let (x, y) = tile_of(lon, lat, z);
    let url = srv.url(&format!("/tiles/wangge/{z}/{x}/{y}"));
    let plain = get(&url, &[]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some("application/x-protobuf"));
    let gz = get(&format!("{url}.pbf"), &[("accept-encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gz.body), plain.body);
    let br = get(
        &format!("{url}.mvt"),
        &[("accept-encoding", "br;q=1, gzip;q=0.5")],
    );
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&br.body), plain.body);
    let etag = plain.header("etag").unwrap().to_owned();
    assert_eq!(get(&url, &[("if-none-match", &etag)]).status, 304);

    let decoded = decode_tiles(dir.path(), &[&plain.body]);
    let before = grid_codes_in(&decoded[0]);
    assert!(
        before.contains(code),
        "{code} not in tile {z}/{x}/{y}: {before:?}"
    );
    let f = decoded[0]["grids"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["properties"]["code"] == code)
        .unwrap();
    // The tile and the public answer publish the same count, or both
    // withhold it (the privacy rule; tests/it/privacy.rs checks which).
    match &grid["properties"]["households"] {
        Value::String(s) => {
            assert_eq!(s, "<10");
            assert!(f["properties"].get("households").is_none(), "{f}");
        }
        n => assert_eq!(&f["properties"]["households"], n),
    }
    for (name, layer) in decoded[0].as_object().unwrap() {
        assert_ne!(name, "persons");
        assert_eq!(layer["extent"], 4096);
        for feat in layer["features"].as_array().unwrap() {
            let p = feat["properties"].as_object().unwrap();
            assert!(!p.contains_key("id_card") && !p.contains_key("household_id"));
        }
    }

    // Split the grid over HTTP: the cached tile is dropped and the new tile
    // shows the new grids.
    let v = get(&srv.url(&format!("/v1/communities/{comm}")), &[]).json()["properties"]["version"]
        .as_i64()
        .unwrap();
    let split = json!({"op": "split", "grid": code, "parts": 2}).to_string();
    let a = post(
        &srv.url(&format!("/v1/communities/{comm}/edits")),
        &[
            JSON_CT,
            ("authorization", &format!("Bearer {TOKEN}")),
            ("if-match", &v.to_string()),
        ],
        split.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let out = a.json();
    let after = get(&url, &[("if-none-match", &etag)]);
    assert_eq!(
        after.status, 200,
        "the edited tile was served from the cache"
    );
    assert_ne!(after.header("etag").unwrap(), etag);
    let decoded = decode_tiles(dir.path(), &[&after.body]);
    let codes = grid_codes_in(&decoded[0]);
    for added in out["added"].as_array().unwrap() {
        let added = added.as_str().unwrap();
        let served = get(&srv.url(&format!("/v1/grids/{added}")), &[]).json();
        // Only the new grids that reach this tile must be in it.
        let reaches = served["geometry"]["coordinates"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p[0].as_array().unwrap().iter())
            .any(|c| tile_of(c[0].as_f64().unwrap(), c[1].as_f64().unwrap(), z) == (x, y));
        if reaches {
            assert!(codes.contains(added), "{added} missing from the new tile");
        }
    }
    let metrics = String::from_utf8(get(&srv.url("/metrics"), &[]).body).unwrap();
    assert!(metrics.contains("wangge_edits_total 1"));
    assert!(metrics.contains("wangge_tile_size_bytes_count"));
}

// ---------------------------------------------------------------------------
// Exact invalidation, the move edit and the per-layer sources.
// ---------------------------------------------------------------------------

/// A POST through the router in process.
/// POSTs an edit with the bearer `auth` and `If-Match: version`.
async fn post_edit(
    app: &axum::Router,
    url: &str,
    auth: &str,
    version: u64,
    body: &str,
) -> (u16, Value) {
    let v = version.to_string();
    call_post(
        app,
        url,
        &[JSON_CT, ("authorization", auth), ("if-match", &v)],
        body,
    )
    .await
}

async fn call_post(
    app: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("host", "example.test:9");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(axum::body::Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// A counter of the `/metrics` text.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .parse()
        .unwrap()
}

/// `[w, s, e, n]` of every coordinate of some GeoJSON features.
fn features_bbox<'a>(features: impl Iterator<Item = &'a Value>) -> [f64; 4] {
    fn walk(v: &Value, b: &mut [f64; 4]) {
        match v.as_array() {
            Some(a) if a.first().is_some_and(Value::is_number) => {
                let (x, y) = (a[0].as_f64().unwrap(), a[1].as_f64().unwrap());
                *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            }
            Some(a) => a.iter().for_each(|c| walk(c, b)),
            None => {}
        }
    }
    let mut b = [f64::INFINITY, f64::INFINITY, -f64::INFINITY, -f64::INFINITY];
    for f in features {
        walk(&f["geometry"]["coordinates"], &mut b);
    }
    b
}

type Tiles = BTreeMap<(u8, u32, u32), Vec<u8>>;

/// Asks the router for every tile of `keys` of `source`; 204 is empty.
async fn fetch(app: &axum::Router, source: &str, keys: &[(u8, u32, u32)]) -> Tiles {
    let mut out = BTreeMap::new();
    for &(z, x, y) in keys {
        let (st, _, body) = call(app, &format!("/tiles/{source}/{z}/{x}/{y}"), &[]).await;
        assert!(st == 200 || st == 204, "{source}/{z}/{x}/{y}: {st}");
        out.insert((z, x, y), body);
    }
    out
}

/// After one edit through the router: the tiles whose bytes changed must
/// all have been dropped from the cache, every other tile must still be
/// cached, and the new tiles must equal those of a fresh tiler opened on
/// the edited store. Returns (changed, dropped) of the main source.
#[allow(clippy::too_many_arguments)]
async fn check_edit(
    state: &wangge::serve::AppState,
    app: &axum::Router,
    store: &Path,
    near: &[(u8, u32, u32)],
    low: &[(u8, u32, u32)],
    before: &Tiles,
    before_grids: &Tiles,
    what: &str,
) -> (Tiles, Tiles, usize, usize) {
    let main = state.source_index("wangge").unwrap();
    let gi = state.source_index("grids").unwrap();
    let key = |source, (z, x, y): (u8, u32, u32)| wangge::serve::TileKey { source, z, x, y };
    let dropped: HashSet<(u8, u32, u32)> = near
        .iter()
        .chain(low)
        .copied()
        .filter(|t| !state.cache().contains(&key(main, *t)))
        .collect();
    let dropped_grids: HashSet<(u8, u32, u32)> = near
        .iter()
        .copied()
        .filter(|t| !state.cache().contains(&key(gi, *t)))
        .collect();
    // Grids change only at 11–16 here (see below): nothing of z0–10 goes.
    for t in low {
        assert!(!dropped.contains(t), "{what}: z0–10 tile {t:?} was dropped");
    }
    let metrics = |app: &axum::Router| {
        let app = app.clone();
        async move { String::from_utf8(call(&app, "/metrics", &[]).await.2).unwrap() }
    };
    let m0 = metrics(app).await;
    let after = fetch(app, "wangge", near).await;
    let after_grids = fetch(app, "grids", near).await;
    let m1 = metrics(app).await;
    // Every tile not dropped came from the cache.
    let hits =
        counter(&m1, "wangge_tile_cache_hits_total") - counter(&m0, "wangge_tile_cache_hits_total");
    let misses = counter(&m1, "wangge_tile_cache_misses_total")
        - counter(&m0, "wangge_tile_cache_misses_total");
    let dropped_near = near.iter().filter(|t| dropped.contains(t)).count();
    assert_eq!(
        misses as usize,
        dropped_near + dropped_grids.len(),
        "{what}"
    );
    assert_eq!(
        hits as usize,
        2 * near.len() - dropped_near - dropped_grids.len(),
        "{what}"
    );
    // Truth 1: a tiler opened afresh on the edited store.
    let store = store.to_owned();
    let near_v = near.to_vec();
    let fresh: Tiles = tokio::task::spawn_blocking(move || {
        let t = wangge_tiler::Tiler::open(&store).unwrap();
        near_v
            .iter()
            .map(|&(z, x, y)| ((z, x, y), t.tile(z, x, y).unwrap()))
            .collect()
    })
    .await
    .unwrap();
    for (k, v) in &after {
        assert!(
            fresh[k] == *v,
            "{what}: tile {k:?} differs from a fresh load"
        );
    }
    // Truth 2: the bytes before and after.
    let changed: Vec<(u8, u32, u32)> = near
        .iter()
        .copied()
        .filter(|t| before[t] != after[t])
        .collect();
    assert!(!changed.is_empty(), "{what} changed no tile");
    for t in &changed {
        assert!(
            dropped.contains(t),
            "{what}: tile {t:?} changed but stayed cached"
        );
    }
    for t in near.iter().filter(|t| before_grids[t] != after_grids[t]) {
        assert!(
            dropped_grids.contains(t),
            "{what}: grids tile {t:?} changed but stayed cached"
        );
    }
    // The per-layer source drops only tiles whose grids changed: never
    // more than the main source.
    assert!(dropped_grids.iter().all(|t| dropped.contains(t)), "{what}");
    (after, after_grids, changed.len(), dropped.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_edits_drop_exactly_the_cached_tiles_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let grids = exported(&store, "grids", dir.path());
    // The community with the most grids.
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for g in &grids {
        by.entry(g["properties"]["parent_code"].as_str().unwrap().to_owned())
            .or_default()
            .push(g);
    }
    let (comm, mine) = by.iter().max_by_key(|(_, v)| v.len()).unwrap();
    assert!(mine.len() >= 3, "{}", mine.len());
    let comm = comm.clone();
    let facts = crate::support::python_json("edit_candidates.py", &[s(&store), &comm]);
    let bb = features_bbox(mine.iter().copied());
    let (st, store2) = (store.clone(), store.clone());
    let state = tokio::task::spawn_blocking(move || {
        let main = wangge::serve::StoreTiles::open(&st).unwrap();
        let mut sources: Vec<Arc<dyn wangge::serve::TileSource>> = main
            .layer_views()
            .into_iter()
            .map(|v| Arc::new(v) as Arc<dyn wangge::serve::TileSource>)
            .collect();
        sources.insert(0, Arc::new(main));
        wangge::serve::AppState::open(
            store2,
            sources,
            wangge::serve::Options {
                token: Some(TOKEN.into()),
                cache_bytes: 1 << 30,
                ..wangge::serve::Options::default()
            },
        )
        .unwrap()
    })
    .await
    .unwrap();
    let state = Arc::new(state);
    let app = wangge::serve::router(Arc::clone(&state));
    // Every tile of z11–16 over the community's box grown by two tiles, and
    // the tile of z0–10 holding its centre.
    let mut near = Vec::new();
    for z in 11..=16u8 {
        let (x0, y0) = tile_of(bb[0], bb[3], z);
        let (x1, y1) = tile_of(bb[2], bb[1], z);
        for x in x0 - 2..=x1 + 2 {
            for y in y0 - 2..=y1 + 2 {
                near.push((z, x, y));
            }
        }
    }
    let low: Vec<(u8, u32, u32)> = (0..=10u8)
        .map(|z| {
            let (x, y) = tile_of((bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0, z);
            (z, x, y)
        })
        .collect();
    fetch(&app, "wangge", &low).await;
    let mut before = fetch(&app, "wangge", &near).await;
    let mut before_grids = fetch(&app, "grids", &near).await;
    assert!(before.values().any(|t| !t.is_empty()));

    let auth = format!("Bearer {TOKEN}");
    let url = format!("/v1/communities/{comm}/edits");
    let mut version: u64 = 1;
    let mut report = Vec::new();
    // A merge of two neighbours, then a move of a building to a
    // neighbouring grid (GEOS's candidates, until one is accepted).
    let (a, b) = (
        facts["neighbours"][0][0].as_str().unwrap().to_owned(),
        facts["neighbours"][0][1].as_str().unwrap().to_owned(),
    );
    let merge = json!({"op": "merge", "grids": [a, b]}).to_string();
    let (st, out) = post_edit(&app, &url, &auth, version, &merge).await;
    assert_eq!(st, 200, "{out}");
    version += 1;
    let (after, after_grids, changed, dropped) = check_edit(
        &state,
        &app,
        &store,
        &near,
        &low,
        &before,
        &before_grids,
        "merge",
    )
    .await;
    report.push(("merge", changed, dropped));
    (before, before_grids) = (after, after_grids);

    let facts = crate::support::python_json("edit_candidates.py", &[s(&store), &comm]);
    let mut moved = false;
    for m in facts["moves"].as_array().unwrap() {
        let body = json!({"op": "move", "building": m[0], "to": m[2]}).to_string();
        let (st, out) = post_edit(&app, &url, &auth, version, &body).await;
        if st == 200 {
            moved = true;
            break;
        }
        assert_eq!(st, 409, "{out}");
    }
    assert!(moved, "no move was accepted");
    let (_, _, changed, dropped) = check_edit(
        &state,
        &app,
        &store,
        &near,
        &low,
        &before,
        &before_grids,
        "move",
    )
    .await;
    report.push(("move", changed, dropped));
    // Exactly the changed tiles were dropped (9 of 172 for each edit on
    // this city). Equality is not guaranteed in general: a changed grid
    // that only grazes a tile's buffer edge clips to nothing there, and a
    // vertex noding adds to a neighbour's outline may vanish when rounded
    // at low zooms; such a tile is dropped without changing. Should this
    // city ever hit such a case, relax this to the subset checked above.
    for (what, changed, dropped) in &report {
        eprintln!(
            "{what}: {changed} tiles changed, {dropped} dropped of {}",
            near.len() + low.len()
        );
        assert_eq!(changed, dropped, "{what}");
    }
}
/// Splits an MVT into its layers' messages: name → the bytes of the
/// `layers` field (tag, length and message), as written in the tile.
fn layer_messages(tile: &[u8]) -> BTreeMap<String, Vec<u8>> {
    fn varint(b: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[*pos];
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    let mut out = BTreeMap::new();
    let mut pos = 0;
    while pos < tile.len() {
        let start = pos;
        let key = varint(tile, &mut pos);
        assert_eq!(key, (3 << 3) | 2, "a tile holds only layers");
        let len = varint(tile, &mut pos) as usize;
        let msg = &tile[pos..pos + len];
        pos += len;
        // The layer's name: field 1.
        let mut p = 0;
        while p < msg.len() {
            let k = varint(msg, &mut p);
            match k & 7 {
                0 => {
                    varint(msg, &mut p);
                }
                2 => {
                    let n = varint(msg, &mut p) as usize;
                    if k >> 3 == 1 {
                        out.insert(
                            String::from_utf8(msg[p..p + n].to_vec()).unwrap(),
                            tile[start..pos].to_vec(),
                        );
                        break;
                    }
                    p += n;
                }
                1 => p += 8,
                5 => p += 4,
                w => panic!("wire type {w}"),
            }
        }
    }
    out
}

#[test]
fn serve_moves_a_building_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let grids = exported(&store, "grids", dir.path());
    let buildings = exported(&store, "buildings", dir.path());
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for g in &grids {
        *by.entry(g["properties"]["parent_code"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // A community where GEOS finds grids that do not touch (for the refused
    // move) and buildings bordering a neighbour.
    let (comm, facts) = by
        .iter()
        .filter(|(_, n)| **n >= 3)
        .map(|(c, _)| {
            (
                c.clone(),
                crate::support::python_json("edit_candidates.py", &[s(&store), c]),
            )
        })
        .find(|(_, f)| !f["apart"].as_array().unwrap().is_empty())
        .expect("a community with grids apart");
    let srv = Server::start(&store, &["--token", TOKEN]);
    let url = srv.url(&format!("/v1/communities/{comm}/edits"));
    let auth = format!("Bearer {TOKEN}");
    let version = |srv: &Server| {
        get(&srv.url(&format!("/v1/communities/{comm}")), &[]).json()["properties"]["version"]
            .as_i64()
            .unwrap()
    };
    // Exact counts need the token (public ones may be "<10").
    let households = |srv: &Server, g: &str| {
        get(
            &srv.url(&format!("/v1/grids/{g}")),
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .json()["properties"]["households"]
            .as_i64()
            .unwrap()
    };
    let v = version(&srv);

    // Refused: a building moved to a grid its grid does not touch.
    let (x, y) = (
        facts["apart"][0][0].as_str().unwrap(),
        facts["apart"][0][1].as_str().unwrap(),
    );
    let of_x = buildings
        .iter()
        .find(|b| b["properties"]["grid_code"] == x)
        .unwrap();
    let body = json!({"op": "move", "building": of_x["properties"]["id"], "to": y}).to_string();
    let a = post(
        &url,
        &[
            JSON_CT,
            ("authorization", &auth),
            ("if-match", &v.to_string()),
        ],
        body.as_bytes(),
    );
    let msg = a.error(409);
    assert!(msg.contains("does not border"), "{msg}");
    assert_eq!(version(&srv), v, "a refused move makes no version");

    // Accepted: GEOS's candidates, nearest first, until one keeps its old
    // grid connected.
    let mut done = None;
    for m in facts["moves"].as_array().unwrap() {
        let (id, from, to) = (
            m[0].as_str().unwrap(),
            m[1].as_str().unwrap(),
            m[2].as_str().unwrap(),
        );
        let (hf, ht) = (households(&srv, from), households(&srv, to));
        let body = json!({"op": "move", "building": id, "to": to}).to_string();
        let a = post(
            &url,
            &[
                JSON_CT,
                ("authorization", &auth),
                ("if-match", &v.to_string()),
            ],
            body.as_bytes(),
        );
        if a.status == 200 {
            let out = a.json();
            assert_eq!(out["version"], v + 1, "{out}");
            assert_eq!(a.header("etag"), Some(format!("\"{}\"", v + 1).as_str()));
            done = Some((id.to_owned(), from.to_owned(), to.to_owned(), hf, ht));
            break;
        }
        let msg = a.error(409);
        assert!(
            msg.contains("would cut grid")
                || msg.contains("does not border")
                || msg.contains("last building"),
            "{msg}"
        );
        assert_eq!(version(&srv), v);
    }
    let (id, from, to, hf, ht) = done.expect("no move was accepted");
    assert_eq!(version(&srv), v + 1);
    // The households moved with the building (its households as exported
    // from the store before the edit).
    let b = buildings
        .iter()
        .find(|b| b["properties"]["id"] == id.as_str())
        .unwrap();
    let bh = b["properties"]["households"].as_i64().unwrap();
    assert!(bh > 0);
    assert_eq!(households(&srv, &from), hf - bh);
    assert_eq!(households(&srv, &to), ht + bh);
    // The store agrees.
    let after = exported(&store, "buildings", dir.path());
    let now = after
        .iter()
        .find(|b| b["properties"]["id"] == id.as_str())
        .unwrap();
    assert_eq!(now["properties"]["grid_code"], to.as_str());
    // The next tiles at z14–16 over the building show it in its new grid
    // (decoded by the independent Python decoder), in the main source and
    // in the buildings source.
    let bb = features_bbox(std::iter::once(b));
    for z in 14..=16u8 {
        let (tx, ty) = tile_of((bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0, z);
        for source in ["wangge", "buildings"] {
            let t = get(&srv.url(&format!("/tiles/{source}/{z}/{tx}/{ty}")), &[]);
            assert_eq!(t.status, 200);
            let decoded = decode_tiles(dir.path(), &[&t.body]);
            let f = decoded[0]["buildings"]["features"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["properties"]["id"] == id.as_str())
                .unwrap_or_else(|| panic!("{id} not in {source}/{z}/{tx}/{ty}"));
            assert_eq!(f["properties"]["grid_code"], to.as_str(), "{source} z{z}");
        }
    }
}

#[test]
fn serve_one_source_per_layer_like_martin() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared_city();
    let grids = exported(store, "grids", dir.path());
    let srv = Server::start(store, &[]);
    let cat = get(&srv.url("/catalog"), &[]).json();
    let main = get(&srv.url("/tiles/wangge.json"), &[]).json();
    let layers: Vec<Value> = main["vector_layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 11, "{layers:?}");
    for l in &layers {
        let id = l["id"].as_str().unwrap();
        assert_eq!(cat["tiles"][id]["layers"], json!([id]), "{cat}");
        for tj in [
            get(&srv.url(&format!("/tiles/{id}.json")), &[]).json(),
            get(&srv.url(&format!("/{id}")), &[]).json(),
        ] {
            assert_eq!(tj["vector_layers"], json!([l]), "{id}");
            assert_eq!(tj["minzoom"], l["minzoom"], "{id}");
            assert_eq!(tj["maxzoom"], l["maxzoom"], "{id}");
            assert_eq!(
                tj["tiles"][0].as_str().unwrap(),
                srv.url(&format!("/tiles/{id}/{{z}}/{{x}}/{{y}}"))
            );
        }
    }
    let gj = get(&srv.url("/tiles/grids.json"), &[]).json();
    assert_eq!(
        (gj["minzoom"].as_u64(), gj["maxzoom"].as_u64()),
        (Some(11), Some(16))
    );
    // The style draws each layer once, from the main source.
    let style = get(&srv.url("/style.json"), &[]).json();
    assert_eq!(
        style["sources"].as_object().unwrap().len(),
        1,
        "{}",
        style["sources"]
    );

    // Each layer's tile is that layer's message of the main tile, byte for
    // byte, over a few tiles around a grid at every zoom of the layer.
    let ring = &grids[0]["geometry"]["coordinates"][0][0][0];
    let (lon, lat) = (ring[0].as_f64().unwrap(), ring[1].as_f64().unwrap());
    let mut seen_grids = 0;
    for l in &layers {
        let id = l["id"].as_str().unwrap();
        let (z0, z1) = (
            l["minzoom"].as_u64().unwrap() as u8,
            l["maxzoom"].as_u64().unwrap() as u8,
        );
        for z in z0..=z1 {
            let (x, y) = tile_of(lon, lat, z);
            for (x, y) in [(x, y), (x + 1, y), (x, y + 1)] {
                if x >> z != 0 || y >> z != 0 {
                    continue;
                }
                let m = get(&srv.url(&format!("/tiles/wangge/{z}/{x}/{y}")), &[]);
                let one = get(&srv.url(&format!("/tiles/{id}/{z}/{x}/{y}")), &[]);
                let want = layer_messages(&m.body).remove(id);
                match want {
                    Some(bytes) => {
                        assert_eq!(one.status, 200, "{id}/{z}/{x}/{y}");
                        assert!(one.body == bytes, "{id}/{z}/{x}/{y} differs");
                        if id == "grids" {
                            seen_grids += 1;
                        }
                    }
                    None => assert_eq!(one.status, 204, "{id}/{z}/{x}/{y}"),
                }
            }
        }
        // Outside the layer's zooms: 404, as for the main source.
        for z in [z0.checked_sub(1), Some(z1 + 1)].into_iter().flatten() {
            let (x, y) = tile_of(lon, lat, z);
            get(&srv.url(&format!("/tiles/{id}/{z}/{x}/{y}")), &[]).error(404);
        }
    }
    assert!(seen_grids > 0);
    // /tiles/grids/14 decodes (Python) to exactly the grids layer of the
    // main tile: same features, nothing else.
    let (x, y) = tile_of(lon, lat, 14);
    let m = get(&srv.url(&format!("/tiles/wangge/14/{x}/{y}")), &[]);
    let g = get(&srv.url(&format!("/tiles/grids/14/{x}/{y}")), &[]);
    let d = decode_tiles(dir.path(), &[&m.body, &g.body]);
    assert_eq!(d[1].as_object().unwrap().len(), 1);
    assert_eq!(d[1]["grids"], d[0]["grids"]);
    assert!(!grid_codes_in(&d[1]).is_empty());
    // The persons_hex source keeps the privacy rule: no hexagon under 10.
    let mut hexes = 0;
    for z in 0..=13u8 {
        let (x, y) = tile_of(lon, lat, z);
        let t = get(&srv.url(&format!("/tiles/persons_hex/{z}/{x}/{y}")), &[]);
        if t.status == 204 {
            continue;
        }
        let d = decode_tiles(dir.path(), &[&t.body]);
        assert_eq!(d[0].as_object().unwrap().len(), 1);
        for f in d[0]["persons_hex"]["features"].as_array().unwrap() {
            assert!(f["properties"]["persons"].as_i64().unwrap() >= 10, "{f}");
            hexes += 1;
        }
    }
    assert!(hexes > 0);
}

/// A write by another process to the file being served (here the CLI's
/// `wangge edit`) reaches a running server by itself: the grid a CLI split
/// adds is listed and served with the store's geometry, and the
/// community's version follows, without a restart (the tiles take the same
/// reload path as after an edit through the server). Then an edit through
/// the server continues the same log.
#[test]
fn the_server_follows_cli_edits_of_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let by = grids_by_community(&store, dir.path());
    let (comm, codes) = by.iter().find(|(_, v)| v.len() >= 2).unwrap();
    let srv = Server::start(&store, &["--token", TOKEN]);
    let listed = |srv: &Server| -> Vec<String> {
        let fc = get(&srv.url(&format!("/v1/grids?community={comm}")), &[]).json();
        fc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(&listed(&srv), codes);
    let before = get(&srv.url(&format!("/v1/grids/{}", codes[0])), &[]).json();
    let v0 = before["properties"]["version"].as_i64().unwrap();

    // The CLI splits a grid of the community in the served file.
    let out: Value = serde_json::from_str(&wangge_ok(&[
        "edit",
        "--store",
        s(&store),
        "--json",
        "--quiet",
        "split",
        &codes[0],
        "--parts",
        "2",
    ]))
    .unwrap();
    let added: Vec<String> = out["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert!(!added.is_empty(), "{out}");
    // The server notices on its own (it polls every 250 ms; the deadline
    // is only there so a broken watcher fails instead of hanging).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !added.iter().all(|c| listed(&srv).contains(c)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never showed {added:?}; it logged:\n{}",
            srv.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // What it serves is what the store holds.
    let after = exported(&store, "grids", dir.path());
    for code in &added {
        let f = after
            .iter()
            .find(|f| f["properties"]["code"] == code.as_str())
            .unwrap();
        let served = get(&srv.url(&format!("/v1/grids/{code}")), &[]).json();
        assert_eq!(served["geometry"], f["geometry"]);
        assert_eq!(served["properties"]["version"], v0 + 1);
    }
    // The log line comes once the tiles are reloaded too, after the
    // directory the listing reads.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !srv
        .log_text()
        .contains("store changed by another process: 1 community reloaded (")
    {
        assert!(std::time::Instant::now() < deadline, "{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // An edit through the server continues from the CLI's version.
    let url = srv.url(&format!("/v1/communities/{comm}/edits"));
    let lock = json!({"op": "lock", "grid": added[0]}).to_string();
    let a = post(
        &url,
        &[
            JSON_CT,
            ("authorization", &format!("Bearer {TOKEN}")),
            ("if-match", &(v0 + 1).to_string()),
        ],
        lock.as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["version"], v0 + 2);
}

/// The tile sources a server's catalog lists.
pub(crate) fn tile_sources(srv: &Server) -> Vec<String> {
    let catalog = get(&srv.url("/catalog"), &[]).json();
    catalog["tiles"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// Asserts that a server that followed changes to its store answers as a
/// server freshly started on it (which reads everything whole): for each
/// community, its own answer and its grids, public and with the token
/// (the privacy decisions below it), the grids in a box around it (the
/// neighbours an edit noded), every tile over it at z12–z16 of every
/// source, and the points of a lattice over it. Returns how many answers
/// were compared and how many counts were withheld among them.
pub(crate) fn assert_answers_equal(
    follower: &Server,
    fresh: &Server,
    communities: &[&str],
) -> (usize, usize) {
    let staff = format!("Bearer {TOKEN}");
    let audiences: [&[(&str, &str)]; 2] = [&[], &[("authorization", staff.as_str())]];
    let mut compared = 0;
    let mut withheld = 0;
    let mut same = |path: &str, headers: &[(&str, &str)], body: Option<&[u8]>| {
        let (a, b) = match body {
            None => (
                get(&follower.url(path), headers),
                get(&fresh.url(path), headers),
            ),
            Some(body) => (
                post(&follower.url(path), headers, body),
                post(&fresh.url(path), headers, body),
            ),
        };
        assert_eq!(
            (a.status, String::from_utf8_lossy(&a.body)),
            (b.status, String::from_utf8_lossy(&b.body)),
            "{path} {headers:?}: the follower (left) and a fresh server (right) differ"
        );
        compared += 1;
        withheld += String::from_utf8_lossy(&a.body).matches("\"<10\"").count();
        a
    };
    let sources = tile_sources(fresh);
    for c in communities {
        let mut bbox = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        for who in audiences {
            let answer = same(&format!("/v1/communities/{c}"), who, None);
            assert_eq!(answer.status, 200, "community {c}");
            let grids = same(&format!("/v1/grids?community={c}"), who, None).json();
            for g in grids["features"].as_array().unwrap() {
                for poly in g["geometry"]["coordinates"].as_array().unwrap() {
                    for p in poly[0].as_array().unwrap() {
                        let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                        bbox = [
                            bbox[0].min(x),
                            bbox[1].min(y),
                            bbox[2].max(x),
                            bbox[3].max(y),
                        ];
                    }
                }
            }
        }
        let m = 0.002;
        let around = format!(
            "/v1/grids?bbox={},{},{},{}",
            bbox[0] - m,
            bbox[1] - m,
            bbox[2] + m,
            bbox[3] + m
        );
        for who in audiences {
            same(&around, who, None);
        }
        for z in 12..=16u8 {
            let (x0, y0) = tile_of(bbox[0], bbox[3], z);
            let (x1, y1) = tile_of(bbox[2], bbox[1], z);
            for x in x0..=x1.min(x0 + 7) {
                for y in y0..=y1.min(y0 + 7) {
                    for source in &sources {
                        same(&format!("/tiles/{source}/{z}/{x}/{y}"), &[], None);
                    }
                }
            }
        }
        let mut points = Vec::new();
        for i in 0..=20 {
            for j in 0..=20 {
                let x = bbox[0] - m + (bbox[2] - bbox[0] + 2.0 * m) * f64::from(i) / 20.0;
                let y = bbox[1] - m + (bbox[3] - bbox[1] + 2.0 * m) * f64::from(j) / 20.0;
                points.push(json!([x, y]));
            }
        }
        let body = serde_json::to_vec(&points).unwrap();
        same("/v1/locate", &[JSON_CT], Some(&body));
    }
    (compared, withheld)
}

/// A server following CLI edits of its store (split, merge, move,
/// rebalance, lock) brings only the changed communities up to date, and
/// then answers exactly as a server started afresh on the same file, which
/// reads the whole store: grids, counts and their privacy decisions,
/// neighbours' noded outlines, tiles and point lookups.
#[test]
fn a_following_server_answers_as_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let by = grids_by_community(&store, dir.path());
    let multi: Vec<(&String, &Vec<String>)> = by.iter().filter(|(_, v)| v.len() >= 3).collect();
    assert!(
        multi.len() >= 3,
        "{} communities with 3+ grids",
        multi.len()
    );
    let srv = Server::start(&store, &["--token", TOKEN]);
    // Its tile cache warm, so a tile it failed to drop would show.
    let (c1, g1) = multi[0];
    let (c2, _) = multi[1];
    let (c3, g3) = multi[2];
    assert_answers_equal(&srv, &srv, &[c1, c2, c3]);
    let edit = |args: &[&str]| -> Value {
        let before = srv.reloads();
        let mut all = vec!["edit", "--store", s(&store), "--json", "--quiet"];
        all.extend_from_slice(args);
        let out: Value = serde_json::from_str(&wangge_ok(&all)).unwrap();
        srv.wait_for_reloads(before + 1);
        out
    };
    // A split into two, then a merge of the two halves it made.
    let split = edit(&["split", &g1[0], "--parts", "2"]);
    let mut halves: Vec<&str> = split["added"]
        .as_array()
        .unwrap()
        .iter()
        .chain(split["changed"].as_array().into_iter().flatten())
        .map(|v| v.as_str().unwrap())
        .collect();
    halves.sort_unstable();
    halves.dedup();
    assert_eq!(halves.len(), 2, "{split}");
    edit(&["merge", halves[0], halves[1]]);
    // A rebalance to a smaller target: every grid of the community anew.
    edit(&["rebalance", c2, "--target", "5"]);
    // A building moved to a neighbouring grid (the first move that keeps
    // its old grid connected), then a lock.
    let buildings = exported(&store, "buildings", dir.path());
    let candidates: Vec<String> = buildings
        .iter()
        .filter(|b| b["properties"]["grid_code"] == g3[0].as_str())
        .map(|b| b["properties"]["id"].as_str().unwrap().to_owned())
        .collect();
    let mut moved_ok = false;
    'found: for id in candidates.iter().take(40) {
        for to in &g3[1..] {
            let before = srv.reloads();
            let out = Command::new(env!("CARGO_BIN_EXE_wangge"))
                .args(["edit", "--store", s(&store), "--quiet"])
                .args(["move", "--building", id, "--to", to])
                .output()
                .unwrap();
            if out.status.success() {
                srv.wait_for_reloads(before + 1);
                moved_ok = true;
                break 'found;
            }
        }
    }
    assert!(moved_ok, "no building of {} could move", g3[0]);
    edit(&["lock", &g3[1]]);
    let log = srv.log_text();
    assert_eq!(srv.reloads(), 5, "{log}");
    let fresh = Server::start(&store, &["--token", TOKEN]);
    let (compared, withheld) = assert_answers_equal(&srv, &fresh, &[c1, c2, c3]);
    assert!(compared > 100, "{compared} answers compared");
    assert!(withheld > 0, "no withheld count among the answers compared");
}

/// Writes no log describes — an `import` of places and an `assign --store
/// … --layers places` by other processes — make a server on the file read
/// it again whole: it then answers (counts, tiles, lookups) as a fresh
/// server.
#[test]
fn a_server_reloads_after_an_import_and_a_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    let by = grids_by_community(&store, dir.path());
    let (comm, codes) = by.iter().find(|(_, v)| v.len() >= 2).unwrap();
    let srv = Server::start(&store, &["--token", TOKEN]);
    let grid = get(&srv.url(&format!("/v1/grids/{}", codes[0])), &[]).json();
    let places_before = grid["properties"]["places"].as_u64().unwrap();
    // Five new places at a point of the grid.
    let located = get(&srv.url(&format!("/v1/grids?community={comm}")), &[]).json();
    let (x, y) = vertex_mean(&located["features"][0]["geometry"]["coordinates"][0][0]);
    let at: Value = get(&srv.url(&format!("/v1/locate?lon={x}&lat={y}")), &[]).json();
    let target = at["code"]
        .as_str()
        .expect("the vertex mean is inside a grid")
        .to_owned();
    let file = places_at(dir.path(), "IMPORTED", 5, x, y);
    wangge_ok(&[
        "import",
        s(&store),
        "--layer",
        "places",
        s(&file),
        "--quiet",
    ]);
    srv.wait_for_reloads(1);
    wangge_ok(&[
        "assign",
        "--store",
        s(&store),
        "--layers",
        "places",
        "--quiet",
    ]);
    srv.wait_for_reloads(2);
    let grid = get(&srv.url(&format!("/v1/grids/{target}")), &[]).json();
    let fresh = Server::start(&store, &["--token", TOKEN]);
    let want = get(&fresh.url(&format!("/v1/grids/{target}")), &[]).json();
    assert_eq!(grid, want);
    if target == codes[0] {
        assert_eq!(
            grid["properties"]["places"].as_u64().unwrap(),
            places_before + 5
        );
    }
    let (compared, _) = assert_answers_equal(&srv, &fresh, &[comm.as_str()]);
    assert!(compared > 20, "{compared}");
}
