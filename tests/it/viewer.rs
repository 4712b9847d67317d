//! The built-in viewer in a real browser: headless Debian chromium driven by
//! playwright-core (`tests/js/viewer.mjs`) loads `/` from the real `wangge
//! serve`, waits for the map, finds the grids drawn on it, clicks one and
//! reads its code from the panel, then merges it with a neighbour through
//! the UI. The truths: the `wangge locate` CLI for the clicked point, GEOS
//! for which grids are neighbours, and the store read back afterwards.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::partition::grids;
use crate::serve::{Server, city_copy};
use crate::support::{python_json, repo, s, wangge_ok};

const TOKEN: &str = "viewer-token";

#[test]
fn viewer_shows_grids_inspects_and_merges_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let store = city_copy(dir.path());
    // The community with the most grids, and a GEOS-neighbour pair in it.
    let all = grids(&store);
    let mut per = std::collections::BTreeMap::<String, usize>::new();
    for g in &all {
        *per.entry(g.1.clone()).or_default() += 1;
    }
    let (c, _) = per
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse((*c).clone())))
        .unwrap();
    let facts = python_json("edit_candidates.py", &[s(&store), c]);
    let pair = &facts["neighbours"][0];
    let (a, b) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    assert!(a < b);
    let hh = |code: &str| all.iter().find(|g| g.0 == code).unwrap().2;
    let (hh_a, hh_b) = (hh(a), hh(b));

    let server = Server::start(&store, &["--token", TOKEN]);
    let shot = dir.path().join("viewer.png");
    let out = Command::new("node")
        .arg(repo("tests/js/viewer.mjs"))
        .args([&server.url(""), c.as_str(), a, b, TOKEN, s(&shot)])
        .output()
        .expect("node runs; `scripts/test` installs Node.js deps and chromium");
    assert!(
        out.status.success(),
        "viewer.mjs failed (run `scripts/test`, which installs chromium and playwright-core):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    let layers: Vec<&str> = seen["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().split(' ').next().unwrap())
        .collect();
    for l in ["districts", "communities", "grids", "buildings"] {
        assert!(layers.contains(&l), "no {l} toggle: {layers:?}");
    }
    assert!(
        !layers.contains(&"persons"),
        "persons must never be a point layer"
    );
    // Every grid of the community is drawn.
    let drawn: Vec<&str> = seen["rendered_grids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for g in all.iter().filter(|g| &g.1 == c) {
        assert!(
            drawn.contains(&g.0.as_str()),
            "{} not drawn: {drawn:?}",
            g.0
        );
    }
    // The clicked point lies in grid A (the locate CLI), and the panel says A.
    let click = &seen["click_a"];
    let (lon, lat) = (
        click["lon"].as_f64().unwrap(),
        click["lat"].as_f64().unwrap(),
    );
    let located: Value = serde_json::from_str(&wangge_ok(&[
        "locate",
        "--store",
        s(&store),
        &lon.to_string(),
        &lat.to_string(),
        "--json",
    ]))
    .unwrap();
    assert_eq!(located["code"], a, "{located}");
    assert_eq!(seen["panel_code"], a, "{seen}");
    // The merge went through the edit API and the redrawn tiles show it.
    let edit = &seen["last_edit"];
    assert_eq!(edit["removed"], serde_json::json!([b]), "{seen}");
    assert_eq!(edit["changed"], serde_json::json!([a]), "{seen}");
    assert!(
        !seen["rendered_after"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == b),
        "{b} still drawn after the merge: {seen}"
    );
    assert_eq!(seen["code_at_b_after"], a, "{seen}");
    assert_eq!(seen["panel_code_after"], a, "{seen}");
    let after = grids(&store);
    assert!(!after.iter().any(|g| g.0 == b));
    assert_eq!(after.iter().find(|g| g.0 == a).unwrap().2, hh_a + hh_b);
    // A change from another client redrew the map live: the grid drawn at
    // the clicked point shows the 12 persons added (the store's count).
    assert_eq!(seen["live_post"], 200, "{seen}");
    assert_eq!(seen["live_answer"]["applied"], 12, "{seen}");
    assert!(seen["live"]["redraws"].as_u64().unwrap() >= 1, "{seen}");
    let seq = seen["live_answer"]["seq"].as_i64().unwrap();
    assert!(seen["live"]["seq"].as_i64().unwrap() >= seq, "{seen}");
    assert!(
        seen["live_status"]
            .as_str()
            .unwrap()
            .contains(&seq.to_string()),
        "{seen}"
    );
    let stored_persons = |code: &str| -> i64 {
        let c = rusqlite::Connection::open(&store).unwrap();
        c.query_row("SELECT persons FROM grids WHERE code = ?1", [code], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let before = seen["live_persons_before"]
        .as_i64()
        .expect("grid A's persons are public");
    assert_eq!(
        seen["live_persons_after"].as_i64(),
        Some(before + 12),
        "{seen}"
    );
    assert_eq!(stored_persons(a), before + 12);
    // The redraw asked for the tiles in view again.
    let statuses = &seen["live_tile_statuses"];
    assert!(statuses["200"].as_u64().unwrap_or(0) >= 1, "{seen}");
    // A screenshot was taken.
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    if let Ok(keep) = std::env::var("WANGGE_VIEWER_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(&keep)).unwrap();
    }
}
