#!/usr/bin/env bash
# Registry assignment: `wangge assign` against DuckDB (a plain CSV copy, the
# floor of parsing + formatting, and the spatial extension's ST_Contains join)
# and SedonaDB (its SpatialJoinExec), on the same files and the same number of
# threads, in one run. Prints a Markdown table on stdout (median wall time,
# rows/s, peer ÷ wangge, ÷ DuckDB plain copy); progress goes to stderr.
#
#   benches/compare/registry.sh [--rows 10000000] [--runs 3] [--no-build]
#                               [--peers duckdb,spatial,sedona] [--outside]
#                               [--threads 2] [--seed 7] [--full]
#
# Inputs (deterministic, reused while unchanged) in target/compare/registry/:
# the 20,000-cell Voronoi grids (tests/py/voronoi_grids.py --cells 20000
# --seed 7) and a registry CSV of --rows points inside the city with the 11
# columns id,lon,lat,name,id_card,household_id,building_id,age_band,
# registered,community_code,grid_code (~133 bytes a row, like the persons
# registry). --outside also makes a file of the same size with half the rows
# outside every grid and reports wangge's outside/inside time ratio.
# --full instead runs on the full synthetic registry: `wangge synth --scale
# 1.0` (21.9 M persons), `wangge partition` (22,139 grids at the default
# target of 400 households), the grids exported to GeoJSON and the persons
# to CSV (11 columns, 3.0 GB), kept in target/compare/registry/full/ and
# reused while present (about 3 minutes to make; --rows and --outside do not
# apply).
# Every join peer's output row count must equal wangge's `assigned` (the plain
# copy's: every row); a mismatch is printed loudly. Python packages are
# installed with pip when missing (duckdb==1.4.4,
# duckdb-ext-spatial==1.4.4.20260205, sedonadb==0.5.0, geoarrow-pyarrow,
# pyarrow); a peer that cannot be installed or run is reported as unavailable.
set -euo pipefail
CMDLINE="benches/compare/registry.sh$(printf ' %q' "$@")"
cd "$(dirname "$0")/../.."

ROWS=10000000
RUNS=3
BUILD=1
PEERS=duckdb,spatial,sedona
OUTSIDE=0
FULL=0
THREADS=2
SEED=7
CELLS=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --peers) PEERS="$2"; shift 2 ;;
    --outside) OUTSIDE=1; shift ;;
    --threads) THREADS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --full) FULL=1; shift ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "registry.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

say() { echo "[registry] $*" >&2; }
WORK=target/compare/registry
mkdir -p "$WORK"
PY=${PYTHON:-python3}

# (a) Python packages, pinned; a failed install leaves that peer unavailable
need_pkg() {  # need_pkg IMPORT_CHECK PIP_SPEC...
  local check="$1"; shift
  if ! $PY -c "$check" >/dev/null 2>&1; then
    say "pip install $*"
    $PY -m pip install -q "$@" >&2 || say "could not install $* (the peers that need it will be reported unavailable)"
  fi
}
need_pkg "import numpy, shapely" numpy shapely
case ",$PEERS," in *,duckdb,*|*,spatial,*)
  need_pkg "import duckdb; assert duckdb.__version__ == '1.4.4'" duckdb==1.4.4 ;;
esac
case ",$PEERS," in *,spatial,*)
  need_pkg "import importlib.metadata as m; assert m.version('duckdb-ext-spatial') == '1.4.4.20260205'" \
    duckdb-ext-spatial==1.4.4.20260205 ;;
esac
case ",$PEERS," in *,sedona,*)
  need_pkg "import importlib.metadata as m, pyarrow, geoarrow.pyarrow; assert m.version('sedonadb') == '0.5.0'" \
    sedonadb==0.5.0 geoarrow-pyarrow pyarrow ;;
esac

# (b) the release binary
if [ "$BUILD" = 1 ]; then
  say "cargo build --release"
  cargo build --release >&2
fi
[ -x target/release/wangge ] || { say "target/release/wangge not found (drop --no-build)"; exit 1; }

# (c) inputs
if [ "$FULL" = 1 ]; then
  [ "$OUTSIDE" = 0 ] || { say "--outside does not apply with --full"; exit 2; }
  F="$WORK/full"
  mkdir -p "$F"
  if [ ! -s "$F/persons.csv" ] || [ ! -s "$F/grids.geojson" ]; then
    rm -f "$F/full.gpkg" "$F/persons.csv" "$F/grids.geojson"
    say "wangge synth --scale 1.0 (about 70 s)"
    target/release/wangge synth --out "$F/full.gpkg" --scale 1.0 --quiet
    say "wangge partition (about 10 s)"
    target/release/wangge partition --store "$F/full.gpkg" --quiet
    say "exporting the grids and the persons (about 45 s)"
    target/release/wangge export "$F/full.gpkg" --layer grids --out "$F/grids.geojson" --quiet
    target/release/wangge export "$F/full.gpkg" --layer persons --out "$F/persons.tmp.csv" --quiet
    mv "$F/persons.tmp.csv" "$F/persons.csv"
  fi
  if [ ! -s "$F/persons.csv.meta.json" ]; then
    say "counting the registry's rows"
    $PY - "$F" <<'PY'
import json, os, sys
f = sys.argv[1]
with open(f"{f}/persons.csv", "rb") as fh:
    rows = sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 24), b"")) - 1
with open(f"{f}/grids.geojson", encoding="utf-8") as fh:
    grids = len(json.load(fh)["features"])
json.dump({"rows": rows, "bytes": os.path.getsize(f"{f}/persons.csv"),
           "grids_label": f"{grids:,} grids of `wangge partition` (synth --scale 1.0)"},
          open(f"{f}/persons.csv.meta.json", "w"))
PY
  fi
  $PY benches/compare/registry_peers.py bench --dir "$WORK" --grids "$F/grids.geojson" --input "$F/persons.csv" \
    --runs "$RUNS" --threads "$THREADS" --peers "$PEERS" --bin target/release/wangge --cmdline "$CMDLINE"
  exit 0
fi
GRIDS="$WORK/grids-c$CELLS-s7.geojson"
if [ ! -s "$GRIDS" ]; then
  say "making $CELLS Voronoi grids"
  $PY tests/py/voronoi_grids.py "$GRIDS" --cells "$CELLS" --seed 7 >&2
fi
REG="$WORK/registry-r$ROWS-s$SEED.csv"
say "registry: $ROWS rows inside the city"
$PY benches/compare/registry_peers.py make --grids "$GRIDS" --out "$REG" --rows "$ROWS" --seed "$SEED"
OUT_ARGS=()
if [ "$OUTSIDE" = 1 ]; then
  REG_OUT="$WORK/registry-r$ROWS-s$SEED-outside.csv"
  say "registry: $ROWS rows, half outside every grid"
  $PY benches/compare/registry_peers.py make --grids "$GRIDS" --out "$REG_OUT" --rows "$ROWS" --seed "$((SEED + 1))" --outside
  OUT_ARGS=(--outside "$REG_OUT")
fi

# (d) the runs and the table (outputs of the last run stay in $WORK/out/)
$PY benches/compare/registry_peers.py bench --dir "$WORK" --grids "$GRIDS" --input "$REG" "${OUT_ARGS[@]}" \
  --runs "$RUNS" --threads "$THREADS" --peers "$PEERS" --bin target/release/wangge --cmdline "$CMDLINE"
