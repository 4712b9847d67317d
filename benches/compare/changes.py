#!/usr/bin/env python3
"""The change feed under load (issue 15): a `wangge serve` on a copy of a
store takes a steady stream of person changes through POST /v1/changes
while a probe measures, for one person added at a time, the time from
sending its POST to the first /tiles/grids/16/x/y whose grid shows the new
`persons` count (the tile decoded here, by a minimal MVT reader). Then the
throughput of `wangge apply` on an NDJSON feed of N changes.

    python3 benches/compare/changes.py --store demo/beijing.gpkg \
        --seconds 60 --rate 1000 --batch 100 --apply 1000000

Prints a JSON summary (p50/p99 in ms, changes/s); nothing is asserted.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "bench-token"


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) of a protobuf message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {t}")
        yield f, t, v


def grid_persons(tile, grid_id):
    """The `persons` attribute of the feature with id `grid_id` in layer
    `grids` of an MVT tile, or None."""
    for f, _, layer in fields(tile):
        if f != 3:
            continue
        name, keys, values, feats = None, [], [], []
        for lf, _, v in fields(layer):
            if lf == 1:
                name = v.decode()
            elif lf == 3:
                keys.append(v.decode())
            elif lf == 4:
                val = None
                for vf, _, x in fields(v):
                    if vf in (4, 5):
                        val = x
                    elif vf == 6:
                        val = (x >> 1) ^ -(x & 1)
                    elif vf == 1:
                        val = x.decode()
                values.append(val)
            elif lf == 2:
                feats.append(v)
        if name != "grids":
            continue
        for feat in feats:
            fid, tags = None, []
            for ff, _, v in fields(feat):
                if ff == 1:
                    fid = v
                elif ff == 2:
                    j = 0
                    while j < len(v):
                        x, j = varint(v, j)
                        tags.append(x)
            if fid == grid_id:
                props = {keys[tags[k]]: values[tags[k + 1]] for k in range(0, len(tags), 2)}
                return props.get("persons")
    return None


def tile_of(lon, lat, z):
    import math
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    r = math.radians(lat)
    y = int((1 - math.log(math.tan(r) + 1 / math.cos(r)) / math.pi) / 2 * n)
    return x, y


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, body):
        self.c.request("POST", "/v1/changes", body=json.dumps(body),
                       headers={"Content-Type": "application/json",
                                "Authorization": f"Bearer {TOKEN}"})
        r = self.c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{r.status} {data[:300]}")
        return json.loads(data)

    def get(self, path):
        self.c.request("GET", path)
        r = self.c.getresponse()
        return r.status, r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=os.path.join(ROOT, "demo/beijing.gpkg"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=float, default=1000, help="changes per second of background load")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--apply", type=int, default=1_000_000, help="changes in the `wangge apply` feed (0: skip)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/wangge"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wangge-changes-")
    store = os.path.join(tmp, "s.gpkg")
    shutil.copy(a.store, store)
    db = sqlite3.connect(store)
    # Persons' positions with their grids, and which grids are public
    # (persons >= 15, so one add keeps them published).
    rows = db.execute(
        "SELECT p.grid_code, r.minx, r.miny FROM persons p JOIN rtree_persons_geom r ON r.id = p.fid "
        "WHERE p.fid % 53 = 0").fetchall()
    public = {c for (c,) in db.execute("SELECT code FROM grids WHERE persons >= 15 AND households >= 15")}
    ids = [i for (i,) in db.execute("SELECT id FROM persons WHERE fid % 211 = 0")]
    db.close()
    spots = [r for r in rows if r[0] in public]
    rng = random.Random(5)
    port = free_port()
    log = open(os.path.join(tmp, "serve.log"), "w")
    t0 = time.time()
    srv = subprocess.Popen([a.bin, "serve", "--store", store, "--addr", f"127.0.0.1:{port}",
                            "--token", TOKEN], stderr=log, stdout=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if srv.poll() is not None or time.time() - t0 > 300:
                    sys.exit("the server did not start; see " + log.name)
                time.sleep(0.2)
        # Warm the id index (the first batch creates it).
        Client(port).post([{"change_id": "warm", "op": "add", "layer": "persons", "id": "WARM",
                            "lon": spots[0][1], "lat": spots[0][2]}])
        stop = threading.Event()
        stats = {"load_changes": 0, "load_posts": [], "errors": 0}
        next_id = [0]

        def load():
            c = Client(port)
            period = a.batch / a.rate
            t_next = time.time()
            pool = list(ids)
            while not stop.is_set():
                body = []
                for _ in range(a.batch):
                    next_id[0] += 1
                    n = next_id[0]
                    r = rng.random()
                    _, x, y = rng.choice(rows)
                    if r < 0.5 or not pool:
                        pid = f"LOAD-{n}"
                        body.append({"change_id": f"l{n}", "op": "add", "layer": "persons",
                                     "id": pid, "lon": x, "lat": y})
                        pool.append(pid)
                    elif r < 0.85:
                        body.append({"change_id": f"l{n}", "op": "move", "layer": "persons",
                                     "id": rng.choice(pool), "lon": x, "lat": y})
                    else:
                        pid = pool.pop(rng.randrange(len(pool)))
                        body.append({"change_id": f"l{n}", "op": "remove", "layer": "persons", "id": pid})
                t = time.time()
                try:
                    ans = c.post(body)
                    stats["load_changes"] += ans["applied"]
                except Exception:
                    stats["errors"] += 1
                    c = Client(port)
                stats["load_posts"].append(time.time() - t)
                t_next += period
                time.sleep(max(0.0, t_next - time.time()))

        th = threading.Thread(target=load, daemon=True)
        start = time.time()
        th.start()
        probe = Client(port)
        tiles = Client(port)
        shown, answered = [], []
        k = 0
        while time.time() - start < a.seconds:
            code, x, y = rng.choice(spots)
            tx, ty = tile_of(x, y, 16)
            path = f"/tiles/grids/16/{tx}/{ty}"
            _, before = tiles.get(path)
            old = grid_persons(before, int(code))
            if old is None:
                continue
            k += 1
            t = time.time()
            probe.post([{"change_id": f"probe{k}", "op": "add", "layer": "persons",
                         "id": f"PROBE-{k}", "lon": x, "lat": y}])
            answered.append(time.time() - t)
            while True:
                _, body = tiles.get(path)
                now = grid_persons(body, int(code))
                if now is not None and now != old:
                    shown.append(time.time() - t)
                    break
                if time.time() - t > 30:
                    shown.append(float("inf"))
                    break
                time.sleep(0.002)
            time.sleep(0.5)
        stop.set()
        th.join()
        elapsed = time.time() - start
        out = {
            "store": a.store,
            "seconds": round(elapsed, 1),
            "background_rate_asked": a.rate,
            "background_changes_applied_per_s": round(stats["load_changes"] / elapsed, 1),
            "background_post_p50_ms": round(1e3 * percentile(stats["load_posts"], 50), 1),
            "background_post_p99_ms": round(1e3 * percentile(stats["load_posts"], 99), 1),
            "errors": stats["errors"],
            "probes": len(shown),
            "probe_answer_p50_ms": round(1e3 * percentile(answered, 50), 1),
            "probe_answer_p99_ms": round(1e3 * percentile(answered, 99), 1),
            "probe_tile_shows_p50_ms": round(1e3 * percentile(shown, 50), 1),
            "probe_tile_shows_p99_ms": round(1e3 * percentile(shown, 99), 1),
        }
    finally:
        srv.terminate()
        srv.wait()
    if a.apply:
        feed = os.path.join(tmp, "feed.ndjson")
        with open(feed, "w") as f:
            pool = []
            for n in range(a.apply):
                _, x, y = rows[n % len(rows)]
                if n % 4 == 3 and pool:
                    f.write(json.dumps({"change_id": f"a{n}", "op": "move", "layer": "persons",
                                        "id": pool[(n * 7919) % len(pool)], "lon": x, "lat": y}) + "\n")
                else:
                    pid = f"APPLY-{n}"
                    pool.append(pid)
                    f.write(json.dumps({"change_id": f"a{n}", "op": "add", "layer": "persons",
                                        "id": pid, "lon": x, "lat": y}) + "\n")
        t = time.time()
        r = subprocess.run([a.bin, "apply", "--store", store, feed, "--json", "--quiet"],
                           capture_output=True, text=True)
        took = time.time() - t
        if r.returncode != 0:
            sys.exit(r.stderr)
        res = json.loads(r.stdout)
        out["apply_changes"] = res["changes_in"]
        out["apply_applied"] = res["applied"]
        out["apply_seconds"] = round(took, 1)
        out["apply_changes_per_s"] = round(res["changes_in"] / took)
    print(json.dumps(out, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
