#!/usr/bin/env bash
# How soon a running `wangge serve` shows an edit made by another process:
# CLI `wangge edit … split` on the file being served, then the time until
# the server lists the new grid (GET /v1/grids/{code} → 200), polled every
# 5 ms from Python (one keep-alive connection). Prints one line per edit and the median and maximum on stdout.
#
#   benches/compare/follow.sh [--edits 10] [--store demo/beijing.gpkg] [--no-build]
#
# Works on a copy of the store (made with `cargo run --release -- demo`
# when absent); the release binary is built unless --no-build.
set -euo pipefail
cd "$(dirname "$0")/../.."
EDITS=10
STORE=demo/beijing.gpkg
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --edits) EDITS="$2"; shift 2 ;;
    --store) STORE="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "follow.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$BUILD" = 1 ] && cargo build --release >&2
BIN=target/release/wangge
[ -s "$STORE" ] || { echo "no $STORE: run cargo run --release -- demo first" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp "$STORE" "$WORK/s.gpkg"
"$BIN" serve --store "$WORK/s.gpkg" --addr 127.0.0.1:0 2> "$WORK/serve.log" &
SERVER=$!
for _ in $(seq 600); do grep -q "listening on" "$WORK/serve.log" && break; sleep 0.1; done
BASE=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1)
# Grids to split: the first grid of the first communities with 2+ grids.
"$BIN" export "$WORK/s.gpkg" --layer grids --out "$WORK/grids.csv" --quiet
python3 - "$WORK/grids.csv" "$EDITS" > "$WORK/targets" <<'PY'
import csv, sys, collections
by = collections.defaultdict(list)
for r in csv.DictReader(open(sys.argv[1], encoding="utf-8")):
    by[r["parent_code"]].append(r["code"])
picked = [sorted(v)[0] for k, v in sorted(by.items()) if len(v) >= 2][: int(sys.argv[2])]
print("\n".join(picked))
PY
# Each edit from Python, so the poll (every 5 ms, one HTTP keep-alive
# client) adds no process start-up to what is measured.
python3 - "$BIN" "$WORK/s.gpkg" "$BASE" "$WORK/targets" > "$WORK/times" <<'PY2'
import http.client, json, subprocess, sys, time, urllib.parse
bin_, store, base, targets = sys.argv[1:5]
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port)
def status(path):
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    return r.status
for grid in open(targets).read().split():
    out = subprocess.run([bin_, "edit", "--store", store, "--json", "--quiet", "split", grid,
                          "--parts", "2"], check=True, capture_output=True, text=True).stdout
    t0 = time.monotonic()
    new = json.loads(out)["added"][0]
    while status(f"/v1/grids/{new}") != 200:
        time.sleep(0.005)
    ms = round((time.monotonic() - t0) * 1000)
    print(f"split {grid} → {new} shown after {ms} ms", file=sys.stderr)
    print(ms)
    time.sleep(0.5)
PY2
# The server's own account of each catch-up.
grep "store changed by another process" "$WORK/serve.log" | sed 's/^/server: /' || true
python3 -c '
import sys, statistics
t = [int(x) for x in sys.stdin if x.strip()]
print(f"{len(t)} edits: median {statistics.median(t):.0f} ms, max {max(t)} ms (from the CLI edit exiting to the server answering 200 for the new grid)")' < "$WORK/times"
