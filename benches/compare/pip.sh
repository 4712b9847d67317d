#!/usr/bin/env bash
# Point-in-polygon comparison: `wangge assign` against shapely 2 (GEOS STRtree)
# and PostGIS (ST_Contains + GiST), on N random points over the bounding box of
# Beijing and a Voronoi grid layer clipped to the city (tests/py/voronoi_grids.py,
# tests/py/locate_truth.py). Prints a Markdown table on stdout; progress and
# per-run figures go to stderr. Run from anywhere:
#
#   benches/compare/pip.sh [--points 1000000] [--cells 20000] [--seed 7]
#                          [--runs 3] [--no-build] [--no-postgis]
#
# Work files go to target/compare/. PostGIS runs in a throwaway PostgreSQL 15
# cluster on a free port >= 55432 (installed with apt-get when missing; as root
# the cluster is owned by the `postgres` user), removed again on exit.
# The wangge step is skipped with a message while `wangge assign` does not exist.
set -euo pipefail
cd "$(dirname "$0")/../.."

POINTS=1000000
CELLS=20000
SEED=7
RUNS=3
BUILD=1
POSTGIS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --points) POINTS="$2"; shift 2 ;;
    --cells) CELLS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-postgis) POSTGIS=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pip.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "[pip] $*" >&2; }
SUDO=""; AS_PG=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
else
  AS_PG="runuser -u postgres --"  # initdb refuses to run as root: the cluster belongs to `postgres`
fi
WORK=target/compare
mkdir -p "$WORK"
GRIDS="$WORK/voronoi-c$CELLS-s$SEED.geojson"
PTS="$WORK/points-p$POINTS-c$CELLS-s$SEED.csv"
rm -f "$WORK"/result-*.json

# (a) the release binary
if [ "$BUILD" = 1 ]; then
  say "cargo build --release (and the in-memory index timer)"
  cargo build --release >&2
  cargo build --release -p wangge-engine --example pip_profile >&2
fi

# (b) data: grids and points with their shapely truth (deterministic)
say "making $CELLS Voronoi grids and $POINTS points"
python3 tests/py/voronoi_grids.py "$GRIDS" --cells "$CELLS" --seed "$SEED"
python3 tests/py/locate_truth.py "$GRIDS" "$PTS" --points "$POINTS" --seed "$SEED"

# (e, c) wangge (1 thread and default threads) and shapely, before any server runs
python3 benches/compare/pip_peers.py wangge --dir "$WORK" --grids "$GRIDS" --points "$PTS" \
  --runs "$RUNS" --bin target/release/wangge
python3 benches/compare/pip_peers.py shapely --dir "$WORK" --grids "$GRIDS" --points "$PTS" --runs "$RUNS"

# (d) PostGIS in a throwaway cluster
PG_BIN=/usr/lib/postgresql/15/bin
PGDIR=""
PEER_PID=""
cleanup() {
  if [ -n "$PEER_PID" ]; then kill "$PEER_PID" 2>/dev/null || true; fi
  if [ -n "$PGDIR" ] && [ -d "$PGDIR" ]; then
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
      $AS_PG "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGDIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ "$POSTGIS" = 1 ]; then
  if ! dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1; then
    say "installing postgresql-15-postgis-3 (apt)"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-15-postgis-3; } >&2 \
      || { say "could not install PostGIS; skipping it"; POSTGIS=0; }
  fi
fi
if [ "$POSTGIS" = 1 ]; then
  PGDIR=$(mktemp -d /tmp/wangge-pip-pg.XXXXXX)
  if [ -n "$AS_PG" ]; then chown postgres: "$PGDIR"; fi
  PORT=$(python3 -c '
import socket
for p in range(55432, 55532):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p)); print(p); break
        except OSError:
            pass')
  say "PostgreSQL cluster in $PGDIR on port $PORT"
  $AS_PG "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 --locale=C >"$PGDIR/initdb.log" 2>&1 \
    || { cat "$PGDIR/initdb.log" >&2; exit 1; }
  $AS_PG "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
    -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c fsync=off" start >/dev/null \
    || { cat "$PGDIR/server.log" >&2; exit 1; }
  # In the background so that a signal reaches the trap (and the server stops) at once.
  python3 benches/compare/pip_peers.py postgis --dir "$WORK" --grids "$GRIDS" --points "$PTS" \
    --runs "$RUNS" --port "$PORT" &
  PEER_PID=$!
  wait "$PEER_PID"
  PEER_PID=""
  cleanup
  PGDIR=""
fi

# (f) the table
python3 benches/compare/pip_peers.py report --dir "$WORK"
