"""Reads wangge's tile archives back with independent readers.

usage: check_archives.py ARCHIVE.pmtiles ARCHIVE.mbtiles RAW_DIR

RAW_DIR holds the tiles the tiler encodes (`z/x/y.mvt`, uncompressed, the
empty ones absent). The PMTiles archive is read with the `pmtiles` package
(header, directories, leaf directories, metadata), the MBTiles archive with
sqlite3 (TMS rows flipped back); every tile is gunzipped, decoded with
`mapbox-vector-tile` and must equal the raw tile byte for byte, and both
archives must hold exactly the raw tiles (every fifth one is also decoded). Prints one JSON object.
"""
import gzip
import json
import os
import sqlite3
import sys

import mapbox_vector_tile
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType


def main():
    pm_path, mb_path, raw_dir = sys.argv[1:4]
    raw = {}
    for z in os.listdir(raw_dir):
        if not z.isdigit():
            continue
        for x in os.listdir(os.path.join(raw_dir, z)):
            for f in os.listdir(os.path.join(raw_dir, z, x)):
                raw[(int(z), int(x), int(f.split(".")[0]))] = open(os.path.join(raw_dir, z, x, f), "rb").read()
    layers = {l["id"] for l in json.load(open(os.path.join(raw_dir, "layers.json")))}
    mismatches = []

    def bad(msg):
        if len(mismatches) < 30:
            mismatches.append(msg)

    def check(kind, got):
        for key in set(raw) - set(got):
            bad(f"{kind}: tile {key} missing")
        for key in set(got) - set(raw):
            bad(f"{kind}: tile {key} should not be there")
        for i, key in enumerate(sorted(set(got) & set(raw))):
            data = gzip.decompress(got[key])
            if data != raw[key]:
                bad(f"{kind}: tile {key} differs from the tiler's")
            if i % 5:
                continue  # decoding every fifth tile is enough (they are equal bytes)
            decoded = mapbox_vector_tile.decode(data)
            if not decoded or not set(decoded) <= layers:
                bad(f"{kind}: tile {key} decodes to layers {sorted(decoded)}")

    with open(pm_path, "rb") as f:
        reader = Reader(MmapSource(f))
        h = reader.header()
        meta = reader.metadata()
        pm = {zxy: data for zxy, data in all_tiles(reader.get_bytes)}
        # Random access through the directories too.
        for key in list(raw)[:50]:
            if reader.get(*key) != pm.get(key):
                bad(f"pmtiles: get{key} differs from the full walk")
    if h["tile_type"] != TileType.MVT or h["tile_compression"] != Compression.GZIP:
        bad(f"pmtiles header: {h}")
    if (h["min_zoom"], h["max_zoom"]) != (min(k[0] for k in raw), max(k[0] for k in raw)):
        bad(f"pmtiles zooms {h['min_zoom']}..{h['max_zoom']}")
    if {l["id"] for l in meta.get("vector_layers", [])} != layers:
        bad(f"pmtiles metadata vector_layers: {meta.get('vector_layers')}")
    check("pmtiles", pm)

    db = sqlite3.connect(f"file:{mb_path}?mode=ro", uri=True)
    mb = {(z, x, (1 << z) - 1 - y): d for z, x, y, d in
          db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles")}
    md = dict(db.execute("SELECT name, value FROM metadata"))
    if md.get("format") != "pbf":
        bad(f"mbtiles format {md.get('format')}")
    if {l["id"] for l in json.loads(md.get("json", "{}")).get("vector_layers", [])} != layers:
        bad("mbtiles json vector_layers")
    check("mbtiles", mb)

    print(json.dumps({
        "raw_tiles": len(raw),
        "pmtiles_tiles": len(pm),
        "mbtiles_tiles": len(mb),
        "pmtiles_leaf_directory_bytes": h["leaf_directory_length"],
        "mismatches": mismatches,
    }))


if __name__ == "__main__":
    main()
