//! Planner edits (`wangge edit`, `history`, `diff`) on a partitioned
//! synthetic city. After every edit GEOS (`tests/py/check_partition.py`)
//! re-checks the hard constraints of the edited community and that every
//! entity in it carries the grid that contains it; which grids are
//! neighbours and which buildings border another grid comes from GEOS too
//! (`tests/py/edit_candidates.py`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::partition::{TARGET, city, grids, partition_ok};
use crate::support::{python_json, s, wangge, wangge_ok};

fn edit(store: &Path, args: &[&str]) -> Value {
    let mut full = vec!["edit", "--store", s(store), "--json", "--quiet"];
    full.extend_from_slice(args);
    serde_json::from_str(&wangge_ok(&full)).unwrap()
}

/// Runs an edit that must be refused; returns its message.
fn refused(store: &Path, args: &[&str]) -> String {
    let mut full = vec!["edit", "--store", s(store), "--quiet"];
    full.extend_from_slice(args);
    let out = wangge(&full);
    assert_eq!(out.status.code(), Some(1), "{args:?} was not refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn latest(store: &Path, community: &str) -> i64 {
    let h: Value = serde_json::from_str(&wangge_ok(&[
        "history",
        "--store",
        s(store),
        "--community",
        community,
        "--json",
    ]))
    .unwrap();
    h[0]["version"].as_i64().unwrap()
}

/// GEOS check of one community's grids after an edit (outlines, cover,
/// buildings, codes, households); returns the whole report.
pub(crate) fn geos_clean_grids(store: &Path, community: &str) -> Value {
    let t = python_json(
        "check_partition.py",
        &[
            s(store),
            TARGET,
            "0.15",
            "--communities",
            community,
            "--stable-codes",
        ],
    );
    for key in [
        "invalid_grids",
        "noncontiguous",
        "split_buildings",
        "buildings_without_grid",
        "bad_codes",
        "households_mismatch",
    ] {
        assert_eq!(t[key], 0, "{key}: {t}");
    }
    assert!(t["worst_cover_rel"].as_f64().unwrap() < 1e-6, "{t}");
    assert!(t["overlap_rel"].as_f64().unwrap() < 1e-9, "{t}");
    t
}

/// [`geos_clean_grids`], and every entity of the community in its grid.
fn geos_clean(store: &Path, community: &str) {
    let t = geos_clean_grids(store, community);
    for key in ["entities_misassigned", "households_in_two_grids"] {
        assert_eq!(t[key], 0, "{key}: {t}");
    }
    assert!(t["entities_checked"].as_u64().unwrap() > 0, "{t}");
}

/// building id → (grid code, households), from the exported buildings.
fn buildings(store: &Path, community: &str) -> BTreeMap<String, (String, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.csv");
    wangge_ok(&[
        "export",
        s(store),
        "--layer",
        "buildings",
        "--out",
        s(&out),
        "--quiet",
    ]);
    let mut r = csv::Reader::from_path(&out).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (id, gc, hh, cc) = (
        col("id"),
        col("grid_code"),
        col("households"),
        col("community_code"),
    );
    r.records()
        .map(|x| x.unwrap())
        .filter(|x| &x[cc] == community)
        .map(|x| (x[id].to_owned(), (x[gc].to_owned(), x[hh].parse().unwrap())))
        .collect()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn edits_keep_every_hard_constraint_and_are_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    partition_ok(&store, &["--assign"]);
    let all = grids(&store);
    // The community with the most grids.
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &all {
        *per.entry(g.1.as_str()).or_default() += 1;
    }
    let (&c, &k) = per
        .iter()
        .max_by_key(|(c, n)| (**n, std::cmp::Reverse(**c)))
        .unwrap();
    assert!(k >= 4, "need a community with 4+ grids, best has {k}");
    let c = c.to_owned();
    let hh_before: BTreeMap<String, i64> = all
        .iter()
        .filter(|g| g.1 == c)
        .map(|g| (g.0.clone(), g.2))
        .collect();
    let b0 = buildings(&store, &c);
    assert_eq!(latest(&store, &c), 1);
    let facts = python_json("edit_candidates.py", &[s(&store), &c]);

    // Merge two neighbours: the lower code stays with both grids' households.
    let (a, b) = pairs(&facts["neighbours"])[0].clone();
    let out = edit(&store, &["merge", &b, &a]);
    assert_eq!(out["removed"], serde_json::json!([b.clone()]));
    assert_eq!(out["changed"], serde_json::json!([a.clone()]));
    assert_eq!(out["version"], 2);
    let now = grids(&store);
    let merged = now.iter().find(|g| g.0 == a).unwrap();
    assert_eq!(merged.2, hh_before[&a] + hh_before[&b]);
    assert!(!now.iter().any(|g| g.0 == b));
    geos_clean(&store, &c);

    // Grids that do not touch (GEOS, after the merge) cannot merge; nothing
    // is written.
    let facts = python_json("edit_candidates.py", &[s(&store), &c]);
    if let Some((x, y)) = pairs(&facts["apart"]).into_iter().next() {
        assert!(refused(&store, &["merge", &x, &y]).contains("not neighbours"));
        assert_eq!(latest(&store, &c), 2);
    }

    // Split the merged grid: the new grid takes the next number never used
    // (the merged-away code is not reused).
    let out = edit(&store, &["split", &a, "--parts", "2"]);
    let next = format!("{c}{:03}", k + 1);
    assert_eq!(out["added"], serde_json::json!([next.clone()]));
    let now = grids(&store);
    let pair: i64 = now
        .iter()
        .filter(|g| g.0 == a || g.0 == next)
        .map(|g| g.2)
        .sum();
    assert_eq!(pair, hh_before[&a] + hh_before[&b]);
    geos_clean(&store, &c);

    // A locked grid is never edited.
    let facts = python_json("edit_candidates.py", &[s(&store), &c]);
    let (x, y) = pairs(&facts["neighbours"])[0].clone();
    edit(&store, &["lock", &x]);
    let v = latest(&store, &c);
    assert!(refused(&store, &["merge", &x, &y]).contains("is locked"));
    assert!(refused(&store, &["split", &x]).contains("is locked"));
    assert!(refused(&store, &["lock", &x]).contains("already locked"));
    assert_eq!(latest(&store, &c), v);
    edit(&store, &["unlock", &x]);

    // Move a building that borders another grid: try GEOS's nearest
    // candidates until one keeps its old grid connected.
    let mut moved = None;
    let mut reasons = Vec::new();
    for m in facts["moves"].as_array().unwrap() {
        let (id, to) = (m[0].as_str().unwrap(), m[2].as_str().unwrap());
        let mut full = vec!["edit", "--store", s(&store), "--quiet"];
        full.extend_from_slice(&["move", "--building", id, "--to", to]);
        let o = wangge(&full);
        if o.status.success() {
            moved = Some((id.to_owned(), to.to_owned()));
            break;
        }
        reasons.push(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let (id, to) = moved.unwrap_or_else(|| panic!("no move was accepted: {reasons:?}"));
    assert_eq!(buildings(&store, &c)[&id].0, to);
    geos_clean(&store, &c);
    for r in &reasons {
        assert!(
            r.contains("would cut grid")
                || r.contains("does not border")
                || r.contains("last building"),
            "{r}"
        );
    }

    // An edit planned on an old version is stale.
    assert!(refused(&store, &["--if-version", "1", "merge", &x, &y]).contains("stale"));

    // Rebalance around a locked grid: it stays exactly as it was.
    let locked = grids(&store).into_iter().find(|g| g.1 == c).unwrap();
    edit(&store, &["lock", &locked.0]);
    edit(&store, &["rebalance", &c, "--target", "5"]);
    let after = grids(&store);
    let same = after.iter().find(|g| g.0 == locked.0).unwrap();
    // Same households; same area, but for a vertex noding may add on a
    // shared edge (on the 1e-7° grid, so up to half a unit off the line).
    assert_eq!(same.2, locked.2);
    assert!(
        (same.3 - locked.3).abs() <= 1e-6 * locked.3,
        "{same:?} {locked:?}"
    );
    assert!(after.iter().filter(|g| g.1 == c).count() > k);
    geos_clean(&store, &c);

    // History lists every version; diff from the partition to now matches
    // the buildings as exported before and after.
    let h: Value = serde_json::from_str(&wangge_ok(&[
        "history",
        "--store",
        s(&store),
        "--community",
        &c,
        "--json",
    ]))
    .unwrap();
    let ops: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "rebalance",
            "lock",
            "move",
            "unlock",
            "lock",
            "split",
            "merge",
            "partition"
        ]
    );
    let d: Value = serde_json::from_str(&wangge_ok(&[
        "diff",
        "--store",
        s(&store),
        "--community",
        &c,
        "--from",
        "1",
        "--json",
    ]))
    .unwrap();
    let b1 = buildings(&store, &c);
    let moved_hh: i64 = b0
        .iter()
        .filter(|(id, (g, _))| b1[*id].0 != *g)
        .map(|(_, (_, h))| h)
        .sum();
    assert_eq!(d["households_moved"].as_i64().unwrap(), moved_hh);
    let codes_now: Vec<String> = after
        .iter()
        .filter(|g| g.1 == c)
        .map(|g| g.0.clone())
        .collect();
    for added in d["added"].as_array().unwrap() {
        let added = added.as_str().unwrap();
        assert!(codes_now.iter().any(|x| x == added) && !hh_before.contains_key(added));
    }
    for removed in d["removed"].as_array().unwrap() {
        let removed = removed.as_str().unwrap();
        assert!(!codes_now.iter().any(|x| x == removed) && hh_before.contains_key(removed));
    }

    // The rest of the city still tiles exactly (noding touched neighbours).
    let t = python_json(
        "check_partition.py",
        &[s(&store), TARGET, "0.15", "--stable-codes"],
    );
    assert!(t["worst_cover_rel"].as_f64().unwrap() < 1e-6, "{t}");
    assert!(t["overlap_rel"].as_f64().unwrap() < 1e-9, "{t}");
    assert_eq!(t["noncontiguous"], 0, "{t}");
    assert_eq!(t["invalid_grids"], 0, "{t}");
}

#[test]
fn edits_refuse_unknown_codes_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    // Before any partition there is nothing to edit.
    assert!(refused(&store, &["lock", "110101001001001"]).contains("no grids"));
    partition_ok(&store, &[]);
    assert!(refused(&store, &["lock", "12"]).contains("not a grid code"));
    assert!(refused(&store, &["lock", "999999999999001"]).contains("has no grids"));
    assert!(
        refused(&store, &["merge", "110105001001001", "110106001001001"])
            .contains("different communities")
    );
    assert!(refused(&store, &["rebalance", "1101"]).contains("not a community code"));
    let out = wangge(&["diff", "--store", s(&store), "--community", "999999999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no versions"));
}

#[test]
fn of_two_concurrent_edits_on_one_community_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = city(dir.path());
    partition_ok(&store, &[]);
    let all = grids(&store);
    let c = all
        .iter()
        .find(|g| all.iter().filter(|h| h.1 == g.1).count() >= 3)
        .unwrap()
        .1
        .clone();
    let facts = python_json("edit_candidates.py", &[s(&store), &c]);
    let (a, b) = pairs(&facts["neighbours"])[0].clone();
    let third = all
        .iter()
        .find(|g| g.1 == c && g.0 != a && g.0 != b)
        .unwrap()
        .0
        .clone();
    // Both planned on version 1, started together.
    let spawn = |args: &[&str]| {
        let mut full = vec!["edit", "--store", s(&store), "--if-version", "1", "--quiet"];
        full.extend_from_slice(args);
        std::process::Command::new(env!("CARGO_BIN_EXE_wangge"))
            .args(&full)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let p1 = spawn(&["merge", &a, &b]);
    let p2 = spawn(&["lock", &third]);
    let (o1, o2) = (
        p1.wait_with_output().unwrap(),
        p2.wait_with_output().unwrap(),
    );
    let ok = [o1.status.success(), o2.status.success()];
    assert_eq!(ok.iter().filter(|x| **x).count(), 1, "{o1:?} {o2:?}");
    let loser = if ok[0] { &o2 } else { &o1 };
    assert!(
        String::from_utf8_lossy(&loser.stderr).contains("stale"),
        "{}",
        String::from_utf8_lossy(&loser.stderr)
    );
    assert_eq!(latest(&store, &c), 2);
}
