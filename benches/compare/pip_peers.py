#!/usr/bin/env python3
"""Point-in-polygon timings for benches/compare/pip.sh: wangge, shapely 2, PostGIS.

Each step measures one side and writes its figures to ``DIR/result-<step>.json``;
``report`` reads them all and prints the Markdown comparison. Normally run by
``benches/compare/pip.sh``, which makes the data and owns the PostgreSQL
cluster; the steps can also be run one by one::

    pip_peers.py wangge  --dir D --grids G --points P [--bin target/release/wangge] [--runs 3]
    pip_peers.py shapely --dir D --grids G --points P [--runs 3]
    pip_peers.py postgis --dir D --grids G --points P --port PORT [--runs 3]
    pip_peers.py report  --dir D

``P`` is a CSV ``id,lon,lat`` made by tests/py/locate_truth.py, which also wrote
``P`` with ``.csv`` replaced by ``.truth.csv`` (the shapely truth used to check
the answers of wangge and PostGIS on points that are not within 1e-8 degree of
a grid boundary). Timings exclude reading the input files everywhere; "build"
is the index build, "query" locates every point. Every measured figure is the
best of ``--runs``.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time

# --------------------------------------------------------------------------- helpers


def log(msg):
    print(f"[pip] {msg}", file=sys.stderr, flush=True)


def truth_path(points):
    return points[: -len(".csv")] + ".truth.csv" if points.endswith(".csv") else points + ".truth.csv"


def load_truth(points):
    """id -> (code, on_boundary) from the truth file."""
    out = {}
    with open(truth_path(points), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["id"]] = (row["code"], row["boundary"] == "1")
    return out


def compare(truth, got):
    """Count disagreements on off-boundary points; got: id -> code ('' = none)."""
    mismatch, examples, checked = 0, [], 0
    for pid, (code, on_boundary) in truth.items():
        if on_boundary:
            continue
        checked += 1
        mine = got.get(pid, "")
        if mine != code:
            mismatch += 1
            if len(examples) < 5:
                examples.append(f"id {pid}: truth {code or '-'} got {mine or '-'}")
    return {"checked": checked, "mismatch": mismatch, "examples": examples}


def save(d, step, data):
    with open(os.path.join(d, f"result-{step}.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def load_geojson(path):
    with open(path, encoding="utf-8") as f:
        fc = json.load(f)
    return fc["features"]


# --------------------------------------------------------------------------- wangge


def step_wangge(a):
    exe = a.bin
    probe = subprocess.run([exe, "assign", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        log(f"wangge: `{exe} assign --help` failed (exit {probe.returncode}); skipping wangge. "
            f"{(probe.stderr or probe.stdout).strip().splitlines()[:1]}")
        save(a.dir, "wangge", {"skipped": "wangge assign is not available"})
        return
    truth = load_truth(a.points)
    results = []
    # The index alone, in memory, one thread: the measurement shapely's gets.
    if a.index_bin and os.path.exists(a.index_bin):
        ans = os.path.join(a.dir, "wangge-index-answers.csv")
        cmd = [a.index_bin, a.grids, a.points, "--runs", str(a.runs), "--out", ans, "--json"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            log(f"wangge index: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr.strip()}")
        else:
            js = parse_json(p.stdout)
            with open(ans, newline="", encoding="utf-8") as f:
                r = csv.reader(f)
                next(r)
                got = {row[0]: row[1] for row in r if row[1]}
            check = compare(truth, got)
            log(f"wangge index in memory: build {js['build_s']:.4f} s, query {js['query_s']:.4f} s "
                f"(best of {a.runs}); {check['mismatch']} mismatches against shapely on "
                f"{check['checked']} off-boundary points")
            results.append(dict(js, threads_arg="1", threads="1", in_memory=True,
                                locate_s=js["query_s"], check=check, cmd=" ".join(cmd)))
    else:
        log(f"wangge index: {a.index_bin} not built; skipping the in-memory measurement")
    for threads in ("1", None):
        best = None
        for run in range(a.runs):
            out = os.path.join(a.dir, f"wangge-out-t{threads or 'default'}.csv")
            rej = os.path.join(a.dir, f"wangge-rejects-t{threads or 'default'}.csv")
            cmd = [exe, "assign", "--grids", a.grids, "--input", a.points, "--output", out,
                   "--rejects", rej, "--json"]
            if threads:
                cmd += ["--threads", threads]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                log(f"wangge: {' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr.strip()}")
                save(a.dir, "wangge", {"skipped": f"wangge assign failed (exit {p.returncode})"})
                return
            js = parse_json(p.stdout)
            log(f"wangge threads={threads or 'default'} run {run + 1}: build {js['build_s']:.3f} s, "
                f"locate {js['locate_s']:.3f} s, total {js['total_s']:.3f} s (wall {wall:.2f} s)")
            if best is None or js["build_s"] + js["locate_s"] < best["build_s"] + best["locate_s"]:
                best = dict(js, wall_s=wall, cmd=" ".join(cmd))
        check = check_wangge_output(a.points, out, rej, truth)
        log(f"wangge threads={threads or 'default'}: {check['mismatch']} mismatches against shapely on "
            f"{check['checked']} off-boundary points; {check['rows_out']} assigned rows, "
            f"{check['rows_rej']} rejects, {check['bad_rows']} rows with changed/missing input columns")
        for e in check["examples"]:
            log(f"  {e}")
        best["check"] = check
        best["threads_arg"] = threads or "default"
        results.append(best)
    save(a.dir, "wangge", {"runs": a.runs, "results": results})


def parse_json(text):
    """The JSON object wangge printed (pretty or on one line, possibly after other lines)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text[text.index("{"):])


def check_wangge_output(points, out, rej, truth):
    """Compare grid_code per id with the truth; check input columns are kept verbatim."""
    with open(points, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        header = next(r)
        inp = {row[0]: row for row in r}
    got, seen, bad_rows, rows_out, rows_rej = {}, set(), 0, 0, 0
    with open(out, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        h = next(r)
        ci = h.index("grid_code")
        cols = [h.index(c) for c in header]
        for row in r:
            rows_out += 1
            pid = row[cols[0]]
            got[pid] = row[ci]
            seen.add(pid)
            if [row[c] for c in cols] != inp.get(pid):
                bad_rows += 1
    if os.path.exists(rej):
        with open(rej, newline="", encoding="utf-8") as f:
            r = csv.reader(f)
            h = next(r)
            cols = [h.index(c) for c in header]
            for row in r:
                rows_rej += 1
                pid = row[cols[0]]
                if pid in got:
                    bad_rows += 1  # both assigned and rejected
                seen.add(pid)
                if [row[c] for c in cols] != inp.get(pid):
                    bad_rows += 1
    bad_rows += len(set(inp) - seen)  # rows lost altogether
    res = compare(truth, got)
    res.update(rows_out=rows_out, rows_rej=rows_rej, bad_rows=bad_rows)
    return res


# --------------------------------------------------------------------------- shapely


def step_shapely(a):
    import numpy as np
    import shapely

    feats = load_geojson(a.grids)
    grids = shapely.from_geojson([json.dumps(ft["geometry"]) for ft in feats])
    codes = np.array([str(ft["properties"]["code"]) for ft in feats], dtype=object)
    xy = np.loadtxt(a.points, delimiter=",", skiprows=1, usecols=(1, 2), dtype=np.float64)
    ids = np.loadtxt(a.points, delimiter=",", skiprows=1, usecols=(0,), dtype=np.int64)
    t0 = time.perf_counter()
    pts = shapely.points(np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]))
    points_s = time.perf_counter() - t0
    probe = shapely.points(0.0, 0.0)

    def grids_tree():
        # GEOS builds an STRtree lazily on its first query: force it inside "build".
        t0 = time.perf_counter()
        tree = shapely.STRtree(grids)
        tree.query(probe)
        t1 = time.perf_counter()
        pi, gi = tree.query(pts, predicate="within")
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, pi, gi

    def points_tree():
        t0 = time.perf_counter()
        tree = shapely.STRtree(pts)
        tree.query(probe)
        t1 = time.perf_counter()
        gi, pi = tree.query(grids, predicate="contains")
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, pi, gi

    truth = load_truth(a.points)
    results = []
    for name, fn in (("shapely STRtree(grids).query(points, within)", grids_tree),
                     ("shapely STRtree(points).query(grids, contains)", points_tree)):
        best = None
        for run in range(a.runs):
            build, query, pi, gi = fn()
            log(f"{name} run {run + 1}: build {build:.3f} s, query {query:.3f} s, {len(pi)} pairs")
            if best is None or build + query < best[0] + best[1]:
                best = (build, query)
        got = dict(zip(ids[pi].astype(str).tolist(), codes[gi].tolist()))
        check = compare(truth, got)
        log(f"{name}: {check['mismatch']} mismatches against the truth on {check['checked']} off-boundary points")
        results.append({"method": name, "threads": 1, "build_s": best[0], "query_s": best[1],
                        "pairs": int(len(pi)), "check": check})
    save(a.dir, "shapely", {"runs": a.runs, "points_create_s": points_s, "n_points": int(len(pts)),
                            "n_grids": int(len(grids)), "shapely": shapely.__version__,
                            "geos": shapely.geos_version_string, "results": results})


# --------------------------------------------------------------------------- PostGIS

TIME_RE = re.compile(r"^Time: ([0-9.]+) ms", re.M)


def psql(a, sql, timed=False):
    """Run SQL through psql; return (stdout, [ms per statement when timed])."""
    script = ("\\timing on\n" if timed else "") + sql
    p = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(a.port),
         "-U", "postgres", "-d", "postgres", "-At", "-f", "-"],
        input=script, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"psql failed (exit {p.returncode}):\n{p.stderr}\n--- SQL ---\n{sql}")
    return p.stdout, [float(m) / 1000 for m in TIME_RE.findall(p.stdout)]


SESSION = "SET max_parallel_workers_per_gather = 0;\nSET jit = off;\n"


def step_postgis(a):
    import shapely

    feats = load_geojson(a.grids)
    geoms = shapely.set_srid(shapely.from_geojson([json.dumps(ft["geometry"]) for ft in feats]), 4326)
    gcsv = os.path.join(a.dir, "postgis-grids.csv")
    with open(gcsv, "w", encoding="utf-8", newline="\n") as f:
        for ft, h in zip(feats, shapely.to_wkb(geoms, hex=True, include_srid=True)):
            f.write(f"{ft['properties']['code']},{h}\n")
    version, _ = psql(a, "CREATE EXTENSION IF NOT EXISTS postgis;\nSELECT postgis_full_version();\n")
    log(f"PostGIS: {version.strip()}")

    t0 = time.perf_counter()
    psql(a, f"""
DROP TABLE IF EXISTS grids, pts, g_load, assigned;
CREATE TABLE g_load (code text, wkb text);
\\copy g_load FROM '{gcsv}' WITH (FORMAT csv)
CREATE TABLE grids (code text PRIMARY KEY, geom geometry(MultiPolygon, 4326) NOT NULL);
INSERT INTO grids SELECT code, ST_Multi(wkb::geometry) FROM g_load;
DROP TABLE g_load;
CREATE TABLE p_load (id bigint, lon float8, lat float8);
\\copy p_load FROM '{os.path.abspath(a.points)}' WITH (FORMAT csv, HEADER true)
CREATE TABLE pts AS SELECT id, ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geometry(Point, 4326) AS geom FROM p_load;
DROP TABLE p_load;
ALTER TABLE pts ADD PRIMARY KEY (id);
VACUUM ANALYZE grids;
VACUUM ANALYZE pts;
""")
    log(f"PostGIS: loaded grids and points in {time.perf_counter() - t0:.1f} s (not timed)")

    count_sql = "SELECT count(*) FROM pts p JOIN grids g ON ST_Contains(g.geom, p.geom);\n"
    lateral_sql = ("SELECT count(*) FROM grids g CROSS JOIN LATERAL "
                   "(SELECT 1 FROM pts p WHERE ST_Contains(g.geom, p.geom) OFFSET 0) x;\n")
    variants = [
        ("PostGIS ST_Contains join, GiST on grids", "grids_gix", "grids", count_sql),
        ("PostGIS ST_Contains, GiST on points, per grid (LATERAL)", "pts_gix", "pts", lateral_sql),
    ]
    results = []
    for name, index, table, query in variants:
        _, (build,) = psql(a, f"CREATE INDEX {index} ON {table} USING gist (geom);\n", timed=True)
        psql(a, f"ANALYZE {table};\n")
        plan, _ = psql(a, SESSION + "EXPLAIN " + query)
        log(f"{name}: index {build:.3f} s; plan:\n    " + "\n    ".join(plan.strip().splitlines()))
        best, count = None, None
        for run in range(a.runs):
            out, times = psql(a, SESSION + query, timed=True)
            q = times[-1]
            count = int([ln for ln in out.splitlines() if ln.strip().isdigit()][-1])
            log(f"{name} run {run + 1}: query {q:.3f} s, {count} pairs")
            best = q if best is None else min(best, q)
        results.append({"method": name, "threads": 1, "build_s": build, "query_s": best, "pairs": count,
                        "plan": plan.strip()})
        if index == "grids_gix":
            # The second variant must not be able to use this index.
            psql(a, "DROP INDEX grids_gix;\n")

    # The actual assignment (not timed), checked against the shapely truth.
    acsv = os.path.join(a.dir, "postgis-assigned.csv")
    psql(a, SESSION + f"""
CREATE TABLE assigned AS SELECT p.id, g.code FROM grids g
  CROSS JOIN LATERAL (SELECT id FROM pts p WHERE ST_Contains(g.geom, p.geom) OFFSET 0) p;
\\copy assigned TO '{acsv}' WITH (FORMAT csv)
""")
    got = {}
    with open(acsv, newline="", encoding="utf-8") as f:
        for pid, code in csv.reader(f):
            got[pid] = code
    check = compare(load_truth(a.points), got)
    log(f"PostGIS: {check['mismatch']} mismatches against the truth on {check['checked']} off-boundary points")
    for r in results:
        r["check"] = check
    save(a.dir, "postgis", {"runs": a.runs, "version": version.strip(), "settings": SESSION.strip(),
                            "results": results})


# --------------------------------------------------------------------------- report


def fmt_s(x):
    return f"{x:.3f}" if x >= 0.1 else f"{x:.4f}"


def fmt_rate(n, s):
    if s <= 0:
        return "-"
    r = n / s
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.0f} k"


def step_report(a):
    res = {}
    for step in ("wangge", "shapely", "postgis"):
        p = os.path.join(a.dir, f"result-{step}.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                res[step] = json.load(f)
    if "shapely" not in res:
        raise SystemExit("report: no result-shapely.json (run the shapely step first)")
    sh = res["shapely"]
    n = sh["n_points"]
    rows = []  # (method, threads, build, query, mismatch)
    wg = res.get("wangge", {})
    wrows = []
    for r in wg.get("results", []):
        thr = r.get("threads") or ("1" if r["threads_arg"] == "1" else f"default ({os.cpu_count()} CPUs)")
        name = ("wangge GridIndex in memory (locate_many)" if r.get("in_memory")
                else f"wangge assign (--threads {r['threads_arg']})")
        row = (name, thr, r["build_s"], r["locate_s"], r["check"]["mismatch"])
        rows.append(row)
        wrows.append(row)
    peers = []
    for step in ("shapely", "postgis"):
        for r in res.get(step, {}).get("results", []):
            row = (r["method"], r["threads"], r["build_s"], r["query_s"], r["check"]["mismatch"])
            rows.append(row)
            peers.append(row)

    print(f"## Point-in-polygon: {n:,} random points, {sh['n_grids']:,} Voronoi grids\n")
    print(f"shapely {sh['shapely']} (GEOS {sh['geos']})"
          + (f"; {res['postgis']['version'].split(' [')[0]}" if "postgis" in res else "; PostGIS skipped")
          + f"; best of {sh['runs']} runs each; input file reading excluded everywhere.\n")
    print("| method | threads | build s | query s | build+query s | points/s (query) | points/s (build+query) | mismatches |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for m, t, b, q, mm in rows:
        print(f"| {m} | {t} | {fmt_s(b)} | {fmt_s(q)} | {fmt_s(b + q)} | {fmt_rate(n, q)} | "
              f"{fmt_rate(n, b + q)} | {mm} |")
    print()
    if not wrows:
        print(f"wangge: {wg.get('skipped', 'not run')}.\n")
    else:
        print("Speed-up of wangge over each peer (peer seconds / wangge seconds; > 1 means wangge is faster):\n")
        head = []
        for m, t, *_ in wrows:
            head += [f"{m} build+query", f"{m} query"]
        print("| peer | " + " | ".join(head) + " |")
        print("|---|" + "---:|" * len(head))
        for pm, _, pb, pq, _ in peers:
            cells = []
            for _, _, wb, wq, _ in wrows:
                cells += [f"{(pb + pq) / (wb + wq):.1f}x" if wb + wq > 0 else "-",
                          f"{pq / wq:.1f}x" if wq > 0 else "-"]
            print(f"| {pm} | " + " | ".join(cells) + " |")
        print()
        for w in [r for r in wrows if str(r[1]) == "1"]:
            wm, _, wb, wq, _ = w
            shp = [p for p in peers if p[0].startswith("shapely")]
            pg = [p for p in peers if p[0].startswith("PostGIS")]
            if shp:
                b = min(shp, key=lambda p: p[2] + p[3])
                print(f"- {wm}, one core, vs the faster shapely ({b[0]}): "
                      f"{(b[2] + b[3]) / (wb + wq):.1f}x build+query, {b[3] / wq:.1f}x query only.")
            if pg:
                b = min(pg, key=lambda p: p[2] + p[3])
                print(f"- {wm}, one core, vs the faster PostGIS ({b[0]}): "
                      f"{(b[2] + b[3]) / (wb + wq):.1f}x build+query, {b[3] / wq:.1f}x query only.")
        print()
    for r in [r for r in wg.get("results", []) if not r.get("in_memory")]:
        extra = ", ".join(f"{k} {r[k]:.3f} s" for k in ("read_s", "build_s", "locate_s") if k in r)
        print(f"- wangge --threads {r['threads_arg']} end to end: total_s {r['total_s']:.3f} s ({extra}; the rest "
              f"is CSV output and rejects), process wall time {r['wall_s']:.2f} s.")
    if wg.get("results"):
        print()
    print(f"Notes: shapely's conversion of the coordinates to Point objects ({sh['points_create_s']:.3f} s) is "
          "not counted. wangge's in-memory row is `GridIndex::new_coverage` + `locate_many` over parsed "
          "points, one thread (engine/examples/pip_profile.rs); its assign rows are the CLI's own "
          "`build_s`/`locate_s` (JSON) while it streams the CSV in and out. PostGIS figures are "
          "server-side `\\timing` of a `count(*)` over the join, one backend, "
          + (f"`{' '.join(res['postgis']['settings'].split())}`; " if "postgis" in res else "")
          + "its build is the `CREATE INDEX`. Mismatches: answers that differ from shapely's "
          "`contains` on points more than 1e-8 degree from every grid boundary.")


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("wangge", "shapely", "postgis", "report"))
    ap.add_argument("--dir", required=True, help="work directory for intermediate files and results")
    ap.add_argument("--grids")
    ap.add_argument("--points")
    ap.add_argument("--bin", default="target/release/wangge")
    ap.add_argument("--index-bin", default="target/release/examples/pip_profile",
                    help="the in-memory index timer (engine/examples/pip_profile.rs)")
    ap.add_argument("--port", type=int)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    os.makedirs(a.dir, exist_ok=True)
    if a.step != "report" and not (a.grids and a.points):
        ap.error("--grids and --points are required")
    if a.step == "postgis" and not a.port:
        ap.error("--port is required for postgis")
    {"wangge": step_wangge, "shapely": step_shapely, "postgis": step_postgis, "report": step_report}[a.step](a)


if __name__ == "__main__":
    main()
