"""Independent truth for `wangge partition`: reads the GeoPackage with sqlite3
and GEOS (shapely 2) and checks the hard constraints on every community.

usage: check_partition.py STORE.gpkg TARGET TOLERANCE [--communities C,C…] [--stable-codes]
  --communities: check only these communities (and their buildings), and
    also that every entity point in them carries the code of the grid that
    GEOS finds containing it (entities_misassigned; points on a boundary or
    outside every grid are not counted).
  --stable-codes: codes need only be the community code + 3 digits, unique
    (after planner edits), not consecutive from 001.
prints one JSON object:
  communities, grids, worst_cover_rel (max over communities of
  area(community XOR union(grids)) / area(community)), overlap_rel (max of
  summed pairwise grid overlap / community area), invalid_grids,
  noncontiguous (grids with more than one polygon per community part),
  split_buildings (footprint not within its grid, to 1e-9 of its area),
  buildings_without_grid, bad_codes (not community code + 3 digits from 001,
  consecutive), households_mismatch (grids whose stored households differ from
  the sum over their buildings), households_in_two_grids (households whose
  persons carry more than one grid code; only when persons were assigned),
  within_tolerance_pct, polsby_popper_median.
"""
import json
import math
import sqlite3
import sys
from collections import defaultdict

import shapely

from gpkgutil import geom

store, target, tol = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
only = None
stable = "--stable-codes" in sys.argv
if "--communities" in sys.argv:
    only = set(sys.argv[sys.argv.index("--communities") + 1].split(","))
db = sqlite3.connect(store)




def polsby_popper(g):
    # Local metric frame at the polygon's latitude.
    lat = g.centroid.y
    mx = 111412.84 * math.cos(math.radians(lat))
    my = 111132.954 - 559.822 * math.cos(math.radians(2 * lat))
    m = shapely.transform(g, lambda c: c * [mx, my])
    return 4 * math.pi * m.area / (m.length ** 2) if m.length > 0 else 0.0


comms = {c: geom(g) for c, g in db.execute("SELECT code, geom FROM communities")
         if only is None or c in only}
grids = defaultdict(list)
for code, parent, hh, g in db.execute("SELECT code, parent_code, households, geom FROM grids"):
    grids[parent].append((code, hh, geom(g)))
bld = defaultdict(list)
for gc, hh, g in db.execute("SELECT grid_code, households, geom FROM buildings"):
    if only is None or (gc or "")[:12] in only:
        bld[gc].append((hh, geom(g)))

out = dict(communities=len(comms), grids=sum(len(grids.get(c, [])) for c in comms),
           worst_cover_rel=0.0, overlap_rel=0.0, invalid_grids=0, noncontiguous=0,
           split_buildings=0, buildings_without_grid=0, bad_codes=0,
           households_mismatch=0, communities_without_grids=0)
known = set()
within = 0
pps = []
for c, cg in comms.items():
    gs = grids.get(c, [])
    if not gs:
        out["communities_without_grids"] += 1
        continue
    codes = sorted(code for code, _, _ in gs)
    if stable:
        if len(set(codes)) != len(codes) or any(
                len(x) != 15 or not x.startswith(c) or not x[12:].isdigit() or x[12:] == "000"
                for x in codes):
            out["bad_codes"] += 1
    elif codes != [f"{c}{i:03d}" for i in range(1, len(gs) + 1)]:
        out["bad_codes"] += 1
    polys = [g for _, _, g in gs]
    union = shapely.union_all(polys)
    out["worst_cover_rel"] = max(out["worst_cover_rel"], cg.symmetric_difference(union).area / cg.area)
    ov = 0.0
    tree = shapely.STRtree(polys)
    for i, j in zip(*tree.query(polys, predicate="intersects")):
        if i < j:
            ov += polys[i].intersection(polys[j]).area
    out["overlap_rel"] = max(out["overlap_rel"], ov / cg.area)
    parts = list(getattr(cg, "geoms", [cg]))
    for code, hh, g in gs:
        known.add(code)
        if not g.is_valid:
            out["invalid_grids"] += 1
        per_part = defaultdict(int)
        for p in getattr(g, "geoms", [g]):
            rp = p.representative_point()
            k = next((i for i, cp in enumerate(parts) if cp.contains(rp)), -1)
            per_part[k] += 1
        if any(n > 1 for n in per_part.values()):
            out["noncontiguous"] += 1
        total = 0
        for bhh, fp in bld.get(code, []):
            total += bhh
            if fp.difference(g).area > 1e-9 * fp.area:
                out["split_buildings"] += 1
        if total != hh:
            out["households_mismatch"] += 1
        if abs(hh - target) <= tol * target:
            within += 1
        pps.append(polsby_popper(g))
out["buildings_without_grid"] = sum(len(v) for k, v in bld.items() if k not in known)
out["within_tolerance_pct"] = 100.0 * within / max(1, out["grids"])
pps.sort()
out["polsby_popper_median"] = pps[len(pps) // 2] if pps else 0.0
# Entities of the checked communities carry the grid GEOS finds holding them.
if only is not None:
    polys, pcodes = [], []
    for c in only:
        for code, _, g in grids.get(c, []):
            polys.append(g)
            pcodes.append(code)
    tree = shapely.STRtree(polys)
    bad = checked = 0
    for layer in ("persons", "places", "objects", "events", "organizations"):
        if not db.execute("SELECT count(*) FROM sqlite_master WHERE name = ?", (layer,)).fetchone()[0]:
            continue
        for gc, cc, g in db.execute(f"SELECT grid_code, community_code, geom FROM {layer}"):
            if cc not in only:
                continue
            p = geom(g)
            hits = [pcodes[i] for i in tree.query(p, predicate="within")]
            if len(hits) != 1 or any(polys[i].boundary.distance(p) < 1e-9
                                     for i in tree.query(p, predicate="intersects")):
                continue
            checked += 1
            if hits[0] != gc:
                bad += 1
    out["entities_checked"] = checked
    out["entities_misassigned"] = bad
# Households split across grids, from the persons' assigned grid codes.
has_persons = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'persons'").fetchone()[0]
n = has_persons and db.execute(
    "SELECT count(*) FROM persons WHERE grid_code IS NOT NULL AND length(grid_code) = 15").fetchone()[0]
if n:
    out["households_in_two_grids"] = db.execute(
        "SELECT count(*) FROM (SELECT household_id FROM persons GROUP BY household_id "
        "HAVING count(DISTINCT grid_code) > 1)").fetchone()[0]
print(json.dumps(out))
