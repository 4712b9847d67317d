"""Independent facts for the planner-edit tests, from GEOS (shapely 2)
reading the GeoPackage: which grids of a community are neighbours and which
buildings could move between them.

usage: edit_candidates.py STORE.gpkg COMMUNITY
prints one JSON object:
  grids: {code: households}
  neighbours: [[a, b], …]   pairs sharing more than 1 m of boundary
  apart: [[a, b], …]        pairs that do not touch at all
  moves: [[building, from, to], …]  for every neighbour pair (both ways),
         the buildings of `from` nearest to `to` first (at most 5 each)
"""
import json
import sqlite3
import sys

from gpkgutil import geom

store, community = sys.argv[1], sys.argv[2]
db = sqlite3.connect(store)
grids = {c: (hh, geom(g)) for c, hh, g in db.execute(
    "SELECT code, households, geom FROM grids WHERE parent_code = ?", (community,))}
buildings = [(i, gc, geom(g)) for i, gc, g in db.execute(
    "SELECT id, grid_code, geom FROM buildings WHERE community_code = ?", (community,))]
codes = sorted(grids)
M = 111_000.0  # metres per degree, roughly: only used for a threshold
out = dict(grids={c: grids[c][0] for c in codes}, neighbours=[], apart=[], moves=[])
for i, a in enumerate(codes):
    for b in codes[i + 1:]:
        ga, gb = grids[a][1], grids[b][1]
        shared = ga.boundary.intersection(gb.boundary).length * M
        if shared > 1.0:
            out["neighbours"].append([a, b])
        elif ga.distance(gb) > 0:
            out["apart"].append([a, b])
for a, b in out["neighbours"]:
    for f, t in ((a, b), (b, a)):
        mine = [(grids[t][1].distance(g), i) for i, gc, g in buildings if gc == f]
        for _, i in sorted(mine)[:5]:
            out["moves"].append([i, f, t])
print(json.dumps(out))
