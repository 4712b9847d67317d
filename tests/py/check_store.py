"""Independent truth for a synthetic city: reads the GeoPackage with sqlite3,
decodes geometries with shapely 2 (GEOS) and measures what wangge promises.

usage: check_store.py STORE.gpkg CENSUS.csv SCALE
prints one JSON object with, per admin level, the worst relative difference
between a parent's area and the union of its children, the summed pairwise
overlap of siblings, code validity/uniqueness, entity containment and the
persons per district against round(census × scale).
"""
import csv
import json
import sqlite3
import sys
from collections import defaultdict

import shapely

from gpkgutil import geom
from shapely import STRtree

store, census_path, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
db = sqlite3.connect(store)


def rows(sql):
    return db.execute(sql).fetchall()


def check_digit_ok(idc):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(c) * w for c, w in zip(idc[:17], weights))
    return "10X98765432"[total % 11] == idc[17]


out = {"levels": {}}
levels = [("districts", 6), ("streets", 9), ("communities", 12)]
geoms = {}
for layer, digits in levels:
    data = rows(f"select code, parent_code, geom from {layer}")
    codes = [c for c, _, _ in data]
    geoms[layer] = {c: geom(g) for c, _, g in data}
    ok_codes = all(c.isdigit() and len(c) == digits for c in codes)
    info = {
        "count": len(codes),
        "codes_valid": ok_codes,
        "codes_unique": len(set(codes)) == len(codes),
        "invalid": sum(not g.is_valid for g in geoms[layer].values()),
    }
    # Sibling overlaps.
    items = list(geoms[layer].values())
    tree = STRtree(items)
    overlap = 0.0
    for i, g in enumerate(items):
        for j in tree.query(g):
            if j > i:
                overlap += g.intersection(items[j]).area
    info["overlap_deg2"] = overlap
    info["area_deg2"] = sum(g.area for g in items)
    if layer != "districts":
        parent_layer = levels[[l for l, _ in levels].index(layer) - 1][0]
        children = defaultdict(list)
        for c, p, _ in data:
            children[p].append(geoms[layer][c])
            info.setdefault("parent_prefix_ok", True)
            if not c.startswith(p) or p not in geoms[parent_layer]:
                info["parent_prefix_ok"] = False
        worst = 0.0
        for p, pg in geoms[parent_layer].items():
            u = shapely.union_all(children.get(p, []))
            worst = max(worst, pg.symmetric_difference(u).area / pg.area)
        info["worst_cover_rel"] = worst
    out["levels"][layer] = info

# Entities inside their community.
comm = geoms["communities"]
for layer in ["buildings", "places", "objects", "events", "organizations", "persons"]:
    outside = 0
    n = 0
    for cc, g in rows(f"select community_code, geom from {layer}"):
        n += 1
        shp = geom(g)
        if not comm[cc].covers(shp):
            outside += 1
    out[layer] = {"count": n, "outside_community": outside}

# Persons per district and identity numbers.
census = {r["code"]: int(r["population_2020"]) for r in csv.DictReader(open(census_path, encoding="utf-8-sig"))}
per_district = defaultdict(int)
bad_id = 0
ids = set()
for cc, idc in rows("select community_code, id_card from persons"):
    per_district[cc[:6]] += 1
    bad_id += not check_digit_ok(idc)
    ids.add(idc)
out["persons_per_district"] = dict(per_district)
out["expected_per_district"] = {d: round(census[d] * scale) for d in geoms["districts"]}
out["bad_id_check_digits"] = bad_id
out["distinct_id_cards"] = len(ids)
print(json.dumps(out))
