"""Helpers of benches/compare/tiles.sh.

  tiles_peers.py urls --store S.gpkg --out urls.json
      the bbox of central Beijing (districts 110101 and 110102) and tile
      lists: every tile of z10-z13 over it and 300 seeded random tiles per
      zoom of z14-z16 (warm URL list), and the z14 ones (cold list).
  tiles_peers.py run --urls urls.json --seconds N --wangge URL … --work DIR
      warm throughput (wrk, 2 threads, 32 connections, after one pass that
      fills every cache), plain and with Accept-Encoding: gzip; cold z14
      latency (one keep-alive connection, each tile once, caches off);
      POST /v1/locate with 100,000 points; prints a Markdown table and JSON.
  tiles_peers.py load --urls urls.json --wangge URL --work DIR [--seconds 30]
      a bounded mixed run of tile and locate requests: counts, non-2xx and
      socket errors.
"""
import argparse
import http.client
import json
import math
import os
import random
import re
import sqlite3
import statistics
import subprocess
import time
import urllib.parse


def tile_of(lon, lat, z):
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def cmd_urls(a):
    db = sqlite3.connect(a.store)
    b = db.execute("SELECT min(r.minx), min(r.miny), max(r.maxx), max(r.maxy) FROM districts d "
                   "JOIN rtree_districts_geom r ON r.id = d.fid WHERE d.code IN ('110101', '110102')").fetchone()
    rng = random.Random(7)
    tiles = []
    for z in range(10, 17):
        x0, y1 = tile_of(b[0], b[1], z)
        x1, y0 = tile_of(b[2], b[3], z)
        every = [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        tiles += every if len(every) <= 300 else rng.sample(every, 300)
    json.dump({"bbox": list(b), "tiles": tiles, "z14": [t for t in tiles if t[0] == 14]}, open(a.out, "w"))


def path(base, t):
    u = urllib.parse.urlsplit(base)
    prefix = u.path.rstrip("/") or "/tiles/wangge"
    return f"{prefix}/{t[0]}/{t[1]}/{t[2]}"


def connection(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def fetch_all(base, tiles, headers=None):
    """GET every tile once on one connection; per-request seconds, sizes, statuses."""
    c = connection(base)
    times, sizes, statuses = [], [], {}
    for t in tiles:
        t0 = time.perf_counter()
        c.request("GET", path(base, t), headers=headers or {})
        r = c.getresponse()
        body = r.read()
        times.append(time.perf_counter() - t0)
        sizes.append(len(body))
        statuses[r.status] = statuses.get(r.status, 0) + 1
    c.close()
    return times, sizes, statuses


WRK_LUA = r"""
local paths = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  if args[2] == "gzip" then wrk.headers["Accept-Encoding"] = "gzip" end
  i = math.random(#paths)
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def wrk(base, tiles, seconds, work, gzip):
    u = urllib.parse.urlsplit(base)
    plist = os.path.join(work, "paths-" + re.sub(r"\W", "_", base) + ".txt")
    with open(plist, "w") as f:
        f.write("\n".join(path(base, t) for t in tiles) + "\n")
    lua = os.path.join(work, "rotate.lua")
    open(lua, "w").write(WRK_LUA)
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", lua, f"http://{u.hostname}:{u.port}",
                          "--", plist, "gzip" if gzip else "plain"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


def latency_ms(wrk_out, q):
    """The q-th percentile latency of `wrk --latency` output, in ms."""
    m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", wrk_out, re.M)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def cmd_run(a):
    u = json.load(open(a.urls))
    tiles, z14 = [tuple(t) for t in u["tiles"]], [tuple(t) for t in u["z14"]]
    res = {"warm": {}, "cold": {}, "locate": {}}
    for name, base in (("wangge", a.wangge + "/tiles/wangge"),
                       ("wangge, grids source", a.wangge + "/tiles/grids"),
                       ("martin (MBTiles)", a.martin_mbtiles),
                       ("martin (PostGIS)", a.martin_pg)):
        _, sizes, statuses = fetch_all(base, tiles)  # fill the caches
        r = {"statuses": statuses, "mean_bytes": statistics.mean(sizes)}
        r["plain"] = wrk(base, tiles, a.seconds, a.work, False)
        r["gzip"] = wrk(base, tiles, a.seconds, a.work, True)
        res["warm"][name] = r
    # Cache off on both sides: every request encodes its tile. Three passes
    # over the z14 tiles (the database's own page cache is warm after one).
    for name, base in (("wangge (cache off)", a.wangge_cold + "/tiles/wangge"),
                       ("wangge, grids source (cache off)", a.wangge_cold + "/tiles/grids"),
                       ("martin + PostGIS (cache off)", a.martin_pg_cold)):
        times, sizes, statuses = fetch_all(base, z14 * 3)
        res["cold"][name] = {"p50_ms": 1000 * pct(times, 0.5), "p99_ms": 1000 * pct(times, 0.99),
                             "mean_bytes": statistics.mean(sizes), "statuses": statuses, "tiles": len(times)}
    rng = random.Random(3)
    b = u["bbox"]
    pts = [[rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3])] for _ in range(100_000)]
    body = json.dumps(pts).encode()
    runs = []
    for _ in range(5):
        c = connection(a.wangge)
        t0 = time.perf_counter()
        c.request("POST", "/v1/locate", body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        runs.append(time.perf_counter() - t0)
        c.close()
    res["locate"] = {"status": r.status, "points": len(pts), "median_s": statistics.median(runs),
                     "results": len(json.loads(data).get("results", [])) if r.status == 200 else 0}
    print("| warm, z10-z16 URL list | req/s plain | req/s gzip | mean tile bytes | statuses |")
    print("|---|---|---|---|---|")
    for n, r in res["warm"].items():
        print(f"| {n} | {r['plain']['rps']:.0f} | {r['gzip']['rps']:.0f} | {r['mean_bytes']:.0f} | {r['statuses']} |")
    print("\n| cold z14, each tile once | p50 ms | p99 ms | mean tile bytes | statuses |")
    print("|---|---|---|---|---|")
    for n, r in res["cold"].items():
        print(f"| {n} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_bytes']:.0f} | {r['statuses']} |")
    L = res["locate"]
    print(f"\nPOST /v1/locate, {L['points']} points (JSON): median {L['median_s']:.3f} s over 5 runs, "
          f"status {L['status']}, {L['results']} results")
    print(json.dumps(res))


def cmd_load(a):
    """A bounded mixed run: tile and single-locate URLs, wrk for N seconds;
    every answer must be 2xx (204 counts) with no socket errors."""
    u = json.load(open(a.urls))
    rng = random.Random(11)
    b = u["bbox"]
    tiles = [path(a.wangge + "/tiles/wangge", t) for t in u["tiles"]]
    locs = [f"/v1/locate?lon={rng.uniform(b[0], b[2]):.6f}&lat={rng.uniform(b[1], b[3]):.6f}" for _ in range(len(tiles))]
    mixed = [p for pair in zip(tiles, locs) for p in pair]
    plist = os.path.join(a.work, "mixed.txt")
    open(plist, "w").write("\n".join(mixed) + "\n")
    lua = os.path.join(a.work, "rotate.lua")
    open(lua, "w").write(WRK_LUA)
    host = urllib.parse.urlsplit(a.wangge)
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{a.seconds}s", "--latency", "-s", lua,
                          f"http://{host.hostname}:{host.port}", "--", plist, "gzip"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    res = {"seconds": a.seconds, "requests": total, "rps": rps,
           "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else "none"}
    print(f"mixed load ({len(tiles)} tile + {len(locs)} locate URLs, wrk -t2 -c64, {a.seconds} s): "
          f"{total} requests, {rps:.0f} req/s, non-2xx {res['non_2xx']}, socket errors {res['socket_errors']}")
    # Single GET /v1/locate under load: latency percentiles from wrk, at a
    # few concurrencies (wrk shares the machine, so many connections queue).
    plist = os.path.join(a.work, "locate.txt")
    open(plist, "w").write("\n".join(locs) + "\n")
    res["locate_load"] = []
    for conns in (2, 8, 16):
        out = subprocess.run(["wrk", "-t2", f"-c{conns}", "-d8s", "--latency", "-s", lua,
                              f"http://{host.hostname}:{host.port}", "--", plist, "plain"],
                             capture_output=True, text=True, check=True).stdout
        L = {"connections": conns, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
             "p50_ms": latency_ms(out, 50), "p99_ms": latency_ms(out, 99)}
        res["locate_load"].append(L)
        print(f"single GET /v1/locate under load (wrk -t2 -c{conns}, 8 s): {L['rps']:.0f} req/s, "
              f"p50 {L['p50_ms']:.3f} ms, p99 {L['p99_ms']:.3f} ms")
    print(json.dumps(res))


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
s = sub.add_parser("urls")
s.add_argument("--store", required=True)
s.add_argument("--out", required=True)
s = sub.add_parser("run")
for k in ("urls", "wangge", "wangge-cold", "martin-mbtiles", "martin-pg", "martin-pg-cold", "work"):
    s.add_argument(f"--{k}", required=True)
s.add_argument("--seconds", type=int, default=10)
s = sub.add_parser("load")
for k in ("urls", "wangge", "work"):
    s.add_argument(f"--{k}", required=True)
s.add_argument("--seconds", type=int, default=30)
a = p.parse_args()
{"urls": cmd_urls, "run": cmd_run, "load": cmd_load}[a.cmd](a)
