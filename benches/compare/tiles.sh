#!/usr/bin/env bash
# Tile serving: `wangge serve` against martin 1.14 on the same grids, in one run.
#
#   benches/compare/tiles.sh [STORE.gpkg] [--seconds 10] [--no-build]
#
# STORE (default demo/beijing.gpkg, made by `wangge demo`). The script:
#   1. exports the store's tiles z10-z16 around the city centre to MBTiles
#      (`wangge export-tiles`) and loads the grids into a throwaway PostGIS
#      (PostgreSQL 15 on a free port, removed on exit; ogr2ogr);
#   2. starts wangge serve (cache on, and a second one with --cache-mb 0),
#      martin on the MBTiles (the very same tile bytes), martin on PostGIS
#      (its default cache, and a second one with --cache-size 0);
#   3. warm throughput with wrk over the same z10-z16 URL list (plain and
#      with Accept-Encoding: gzip), cold z14 latency (p50/p99, each tile once,
#      caches off) and POST /v1/locate with 100,000 points;
#   4. 30 s of mixed tile and locate requests on wangge: errors must be 0.
# Prints a Markdown table; needs wrk, gdal-bin, postgresql-15-postgis-3 and
# martin (`cargo install martin --version 1.14.0 --locked --no-default-features
# --features postgres,mbtiles,pmtiles,metrics`; MARTIN=/path/to/martin).
set -euo pipefail
cd "$(dirname "$0")/../.."
STORE=demo/beijing.gpkg
SECONDS_RUN=10
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_RUN="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) STORE="$1"; shift ;;
  esac
done
MARTIN=${MARTIN:-$(command -v martin || echo /opt/martin/bin/martin)}
[ -x "$MARTIN" ] || { echo "tiles.sh: martin not found (set MARTIN=)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "tiles.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
say() { echo "[tiles] $*" >&2; }
[ "$BUILD" = 1 ] && cargo build --release -q
WG=target/release/wangge
WORK=target/compare/tiles
mkdir -p "$WORK"
PIDS=()
PGDIR=""
AS_PG=""; [ "$(id -u)" -eq 0 ] && AS_PG="runuser -u postgres --"
PG_BIN=/usr/lib/postgresql/15/bin
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  if [ -n "$PGDIR" ]; then
    $AS_PG "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
  fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# 1. the URL list and the MBTiles
python3 benches/compare/tiles_peers.py urls --store "$STORE" --out "$WORK/urls.json"
BBOX=$(python3 -c "import json; print(','.join(map(str, json.load(open('$WORK/urls.json'))['bbox'])))")
say "export-tiles z10-16 over $BBOX"
rm -f "$WORK/grids.mbtiles"
$WG export-tiles --store "$STORE" --out "$WORK/grids.mbtiles" --minzoom 10 --maxzoom 16 --bbox "$BBOX" --quiet

# PostGIS with the grids
PGDIR=$(mktemp -d /tmp/wangge-tiles-pg.XXXXXX); [ -n "$AS_PG" ] && chown postgres: "$PGDIR"
PGPORT=$(free_port)
$AS_PG "$PG_BIN/initdb" -D "$PGDIR/data" -A trust -U postgres -E UTF8 --locale=C >/dev/null
$AS_PG "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_parallel_workers_per_gather=0" start >/dev/null
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE EXTENSION postgis" >/dev/null
ogr2ogr -f PostgreSQL "PG:host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres" "$STORE" grids \
  -nln grids -lco GEOMETRY_NAME=geom -lco SPATIAL_INDEX=GIST -t_srs EPSG:3857 -nlt MULTIPOLYGON
PGURL="postgresql://postgres@127.0.0.1:$PGPORT/postgres"

# 2. the servers
start() { # name, port, command…
  local name=$1 port=$2; shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 240); do
    curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    curl -fs "http://127.0.0.1:$port/catalog" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "tiles.sh: $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1
}
P1=$(free_port); start wangge "$P1" $WG serve --store "$STORE" --addr "127.0.0.1:$P1"
P2=$(free_port); start wangge-cold "$P2" $WG serve --store "$STORE" --addr "127.0.0.1:$P2" --cache-mb 0
P3=$(free_port); start martin-mbtiles "$P3" "$MARTIN" -l "127.0.0.1:$P3" "$WORK/grids.mbtiles"
P4=$(free_port); start martin-pg "$P4" "$MARTIN" -l "127.0.0.1:$P4" "$PGURL"
P5=$(free_port); start martin-pg-cold "$P5" "$MARTIN" -l "127.0.0.1:$P5" -C 0 "$PGURL"

# 3. measure
python3 benches/compare/tiles_peers.py run --urls "$WORK/urls.json" --seconds "$SECONDS_RUN" \
  --wangge "http://127.0.0.1:$P1" --wangge-cold "http://127.0.0.1:$P2" \
  --martin-mbtiles "http://127.0.0.1:$P3/grids" --martin-pg "http://127.0.0.1:$P4/grids" \
  --martin-pg-cold "http://127.0.0.1:$P5/grids" --work "$WORK"
# 4. a bounded mixed load on wangge: must show no errors
python3 benches/compare/tiles_peers.py load --urls "$WORK/urls.json" --wangge "http://127.0.0.1:$P1" \
  --work "$WORK" --seconds 30
