#!/usr/bin/env bash
# Our grids against METIS on the same building-adjacency graphs.
#   benches/compare/metis.sh STORE.gpkg [EVERY] [TARGET]
# STORE: a synthetic city (`wangge synth --scale 1.0 --out full.gpkg`);
# EVERY: take every EVERY-th community (by fid; default 1 = all);
# TARGET: households per grid (default 400).
# Installs pymetis and shapely when missing. Nothing is written to the store
# (`partition --dry-run`).
set -euo pipefail
cd "$(dirname "$0")/../.."
store=${1:?usage: metis.sh STORE.gpkg [EVERY] [TARGET]}
every=${2:-1}
target=${3:-400}
python3 -c "import pymetis, shapely, numpy" 2>/dev/null \
  || python3 -m pip install -q pymetis shapely numpy \
  || python3 -m pip install -q --break-system-packages pymetis shapely numpy
cargo build --release -q
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mapfile -t codes < <(python3 -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (c,) in db.execute('SELECT code FROM communities WHERE fid % ? = 0 ORDER BY fid', (int(sys.argv[2]),)):
    print(c)" "$store" "$every")
echo "communities: ${#codes[@]} (every $every), target $target"
target/release/wangge partition --store "$store" --target "$target" --dry-run \
  --community "${codes[@]}" --graph-out "$tmp/graphs.jsonl" --quiet
python3 benches/compare/metis.py "$tmp/graphs.jsonl"
