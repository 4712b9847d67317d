#!/usr/bin/env python3
"""PostGIS against GeoPackage, same machine, same run, same release binary.

    benches/compare/postgis.py [--scale 0.1] [--edits 15] [--replicas 3]
                               [--tiles 300] [--bin target/release/wangge]

Starts a throwaway PostgreSQL 15 + PostGIS cluster on a free port (never
5432), synthesizes a city into a GeoPackage, copies it into PostGIS
(`wangge copy`), then times on both backends:

  * `partition` of the whole city (target 400 x scale);
  * single planner edits (`edit … split`, the same grids on both);
  * `serve`: start-up to "listening", cold and warm z14 tiles (p50 of one
    client), and that both servers return the same bytes;
  * replica propagation: N servers on the PostGIS store, an edit (split) of
    a grid through replica 0; the other replicas are polled from the
    moment the request is sent until each serves the z15 tile over the
    grid as replica 0 does after its answer: p50 and p99 from the request
    and from replica 0's answer (0 when they were first), and replica 0's
    own answer time.

Prints a Markdown table on stdout (progress on stderr). Needs the release
binary (cargo build --release) and postgresql-15-postgis-3 (scripts/test
installs it).
"""
import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

PG_BIN = "/usr/lib/postgresql/15/bin"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wangge-pg-bench-")
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.asuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        data = os.path.join(self.dir, "data")
        subprocess.run(self.asuser + [f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        subprocess.run(self.asuser + [f"{PG_BIN}/pg_ctl", "-D", data, "-o",
                                      f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                                      "-w", "-l", os.path.join(self.dir, "log"), "start"],
                       check=True, capture_output=True)
        self.data = data

    def psql(self, db, sql):
        subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)

    def database(self, name):
        self.psql("postgres", f"CREATE DATABASE {name}")
        self.psql(name, "CREATE EXTENSION postgis")
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        subprocess.run(self.asuser + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def run(binary, *args):
    t = time.perf_counter()
    out = subprocess.run([binary, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"wangge {' '.join(args)} failed:\n{out.stderr}")
    return time.perf_counter() - t, out.stdout


class Server:
    def __init__(self, binary, store, token):
        t = time.perf_counter()
        self.proc = subprocess.Popen([binary, "serve", "--store", store, "--addr", "127.0.0.1:0",
                                      "--token", token], stderr=subprocess.PIPE, text=True)
        self.base = None
        self.lines = []
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("listening on "):
                self.base = line.split()[-1]
                break
        if self.base is None:
            raise SystemExit("serve did not start:\n" + "".join(self.lines))
        self.start_s = time.perf_counter() - t
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def get(self, path):
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(self.base + path) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"GET {self.base}{path}: {e}\n" + "".join(self.lines[-20:]))
        return time.perf_counter() - t, body

    def status(self, path):
        try:
            with urllib.request.urlopen(self.base + path) as r:
                r.read()
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def post(self, path, body, headers):
        req = urllib.request.Request(self.base + path, data=body.encode(), headers=headers, method="POST")
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def tile_of(lon, lat, z):
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    r = math.radians(lat)
    y = int((1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * n)
    return x, y


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=300)
    ap.add_argument("--bin", default="target/release/wangge")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="wangge-bench-")
    cluster = Cluster()
    servers = []
    rows = []
    try:
        gpkg = os.path.join(work, "city.gpkg")
        log(f"synth --scale {a.scale}")
        run(binary, "synth", "--out", gpkg, "--scale", str(a.scale), "--quiet")
        url = cluster.database("city")
        t, _ = run(binary, "copy", "--from", gpkg, "--to", url, "--quiet")
        rows.append(("`copy` GeoPackage → PostGIS (whole store)", None, t))
        target = str(round(400 * a.scale))
        tg, _ = run(binary, "partition", "--store", gpkg, "--target", target, "--quiet")
        tp, _ = run(binary, "partition", "--store", url, "--target", target, "--quiet")
        rows.append((f"`partition` of the whole city (target {target})", tg, tp))

        csv_out = os.path.join(work, "grids.geojson")
        run(binary, "export", gpkg, "--layer", "grids", "--out", csv_out, "--quiet")
        grids = json.load(open(csv_out, encoding="utf-8"))["features"]
        by = {}
        for f in grids:
            by.setdefault(f["properties"]["parent_code"], []).append(f)
        multi = [v for v in by.values() if len(v) >= 2]
        targets = [v[0]["properties"]["code"] for v in multi[: a.edits]]
        eg, ep = [], []
        for code in targets:
            eg.append(run(binary, "edit", "--store", gpkg, "--quiet", "split", code)[0])
            ep.append(run(binary, "edit", "--store", url, "--quiet", "split", code)[0])
        rows.append((f"one `edit … split` (median of {len(targets)}, CLI process included)",
                     statistics.median(eg), statistics.median(ep)))
        log("edits done; serving")

        token = "bench-token"
        sg = Server(binary, gpkg, token)
        servers.append(sg)
        sp = Server(binary, url, token)
        servers.append(sp)
        rows.append(("`serve` start-up to listening", sg.start_s, sp.start_s))
        coords = []
        for f in grids[:: max(1, len(grids) // a.tiles)][: a.tiles]:
            lon, lat = f["geometry"]["coordinates"][0][0][0]
            coords.append(tile_of(lon, lat, 14))
        coords = sorted(set(coords))
        cold = {"g": [], "p": []}
        warm = {"g": [], "p": []}
        same = 0
        for x, y in coords:
            path = f"/tiles/wangge/14/{x}/{y}.mvt"
            tg_, bg = sg.get(path)
            tp_, bp = sp.get(path)
            cold["g"].append(tg_)
            cold["p"].append(tp_)
            same += bg == bp
            for _ in range(5):
                warm["g"].append(sg.get(path)[0])
                warm["p"].append(sp.get(path)[0])
        rows.append((f"cold z14 tile, p50 of {len(coords)} (one client)",
                     statistics.median(cold["g"]), statistics.median(cold["p"])))
        rows.append(("warm z14 tile, p50 (one client)",
                     statistics.median(warm["g"]), statistics.median(warm["p"])))
        log(f"tiles identical: {same}/{len(coords)}")
        sg.stop()
        sp.stop()
        servers.clear()

        log(f"{a.replicas} replicas")
        reps = [Server(binary, url, token) for _ in range(a.replicas)]
        servers.extend(reps)
        lags = []
        since_sent = []
        answers = []
        # Split a grid through replica 0; a replica has caught up when its
        # z15 tile over the grid is the one replica 0 serves after the edit
        # (tiles come from each server's memory, unlike /v1/grids, which
        # reads the database). The other replicas are polled from the
        # moment the edit is sent, while replica 0 works on it (each
        # learns of the commit by NOTIFY, not from replica 0's answer).
        fresh = [v[-1] for v in multi[a.edits: a.edits + a.edits]]
        for f in fresh:
            code = f["properties"]["code"]
            community = code[:12]
            lon, lat = f["geometry"]["coordinates"][0][0][0]
            x, y = tile_of(lon, lat, 15)
            tile = f"/tiles/wangge/15/{x}/{y}.mvt"
            before = [r.get(tile)[1] for r in reps]
            _, body = reps[0].get(f"/v1/grids/{code}")
            version = json.loads(body)["properties"]["version"]
            answered = {}

            def edit():
                reps[0].post(f"/v1/communities/{community}/edits",
                             json.dumps({"op": "split", "grid": code}),
                             {"content-type": "application/json",
                              "authorization": f"Bearer {token}", "if-match": str(version)})
                answered["t"] = time.perf_counter()

            sent = time.perf_counter()
            poster = threading.Thread(target=edit)
            poster.start()
            after = None
            pending = set(range(1, len(reps)))
            arrived = {}
            while pending:
                if after is None and not poster.is_alive():
                    poster.join()
                    if "t" not in answered:
                        raise SystemExit(f"the split of {code} through replica 0 failed")
                    after = reps[0].get(tile)[1]
                    if after == before[0]:
                        break
                    # A tile seen before the answer counts only if it is
                    # the one replica 0 serves now.
                    arrived = {i: v for i, v in arrived.items() if v[1] == after}
                    pending -= set(arrived)
                for i in list(pending):
                    body = reps[i].get(tile)[1]
                    if body != before[i] and (after is None or body == after):
                        arrived.setdefault(i, (time.perf_counter(), body))
                        if after is not None:
                            pending.discard(i)
                if time.perf_counter() - sent > 60:
                    raise SystemExit(f"replicas never showed the split of {code}")
                time.sleep(0.005)
            if after == before[0]:
                log(f"the split of {code} left {tile} unchanged; skipped")
                continue
            answers.append(answered["t"] - sent)
            for i, (t, body) in arrived.items():
                if body != after:
                    raise SystemExit(f"replica {i} showed another tile than replica 0 for {code}")
                lags.append(max(0.0, t - answered["t"]))
                since_sent.append(t - sent)
        rows.append((f"replica propagation ({a.replicas} replicas, {len(lags)} arrivals), "
                     "from replica 0's answer: p50", None, statistics.median(lags)))
        rows.append(("replica propagation from replica 0's answer: p99", None, pct(lags, 99)))
        rows.append(("replica propagation from the edit request sent to replica 0 (edit included): p50", None,
                     statistics.median(since_sent)))
        rows.append(("replica propagation from the edit request sent: p99", None,
                     pct(since_sent, 99)))
        rows.append((f"replica 0's answer to the HTTP edit (its own catch-up included, {len(answers)} edits): p50",
                     None, statistics.median(answers)))
        rows.append(("replica 0's answer to the HTTP edit: p99", None, pct(answers, 99)))
        log("lags: " + " ".join(f"{x:.2f}" for x in sorted(lags)))
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"| work (scale {a.scale}, release, same run) | GeoPackage | PostGIS | PostGIS ÷ GeoPackage |")
    print("|---|---|---|---|")
    for name, g, p in rows:
        fmt = lambda v: "—" if v is None else (f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s")
        ratio = "—" if g is None else f"{p / g:.2f}"
        print(f"| {name} | {fmt(g)} | {fmt(p)} | {ratio} |")
    print(f"\ntiles byte-identical between the two servers: {same}/{len(coords)}")


if __name__ == "__main__":
    main()
