#!/usr/bin/env bash
# Tile-size check (DESIGN §6: no tile over 500 KB at any zoom): encodes every
# tile over a store's bounds at zooms MIN..MAX with the release build and
# prints, per zoom, the number of tiles, the largest (uncompressed) tile, what
# it holds and the encoding time; the last line says whether the goal is met.
#
#   benches/compare/tile_sizes.sh [STORE] [MIN] [MAX]
#
# STORE defaults to /tmp/full.gpkg (`wangge synth --scale 1.0` then
# `wangge partition`) when it exists, else demo/beijing.gpkg.
set -euo pipefail
cd "$(dirname "$0")/../.."
STORE="${1:-}"
if [ -z "$STORE" ]; then
  if [ -f /tmp/full.gpkg ]; then STORE=/tmp/full.gpkg; else STORE=demo/beijing.gpkg; fi
fi
cargo build --release -q -p wangge-tiler --example tile_sizes
TARGET="${CARGO_TARGET_DIR:-target}"
"$TARGET/release/examples/tile_sizes" "$STORE" "${2:-0}" "${3:-16}"
