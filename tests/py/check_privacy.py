"""Independent check of wangge's privacy rule on everything a public client
can see of a store, against the store itself (sqlite3).

usage: check_privacy.py STORE OUT_DIR K

OUT_DIR holds what the Rust side fetched from a running `wangge serve`:
  * tiles/<source>/<z>/<x>/<y>.mvt  every tile of an area at z11-16 for
    every tile source (uncompressed), decoded here with mapbox-vector-tile;
  * archive.mbtiles                 `wangge export-tiles` of the same area;
  * coverage.json                   {"areas": [[w, s, e, n], ...]} the z16 tiles cover;
  * public/*.json, staff/*.json     API answers without and with the token
                                    (grid-<code>, community-<code>, bbox);
  * stderr.log                      the server's own output.

Asserts, printing one JSON object whose "problems" must be empty:
  1. no published count of households or persons below K anywhere public
     (tiles, archive, anonymous API), and every published count is the
     store's exact value (no noise that could hide a bug);
  2. no withheld count is recoverable by subtraction: a community whose
     total is published has 0 or >= 2 grids withheld (its answer lists them
     all); a grid whose count is published has 0 or >= 2 buildings withheld
     (for grids whose buildings all lie in the covered area); a withheld
     parent never has all its children published (their sum);
  3. staff answers (with the token) carry the store's exact counts;
  4. a grid of one household is pinned to no house: its counts and its
     buildings' households are withheld everywhere (the issue's example);
  5. the server's stderr holds no person's id, id-card number or anything
     that looks like a coordinate.
"""
import glob
import gzip
import json
import os
import re
import sqlite3
import sys
from collections import defaultdict

import mapbox_vector_tile

COUNTS = ("households", "persons")


def decode(data):
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return mapbox_vector_tile.decode(data)


def main():
    store, out, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    label = f"<{k}"
    problems = []

    def bad(msg):
        if len(problems) < 60:
            problems.append(msg)

    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    grids = {c: (p, h or 0, n or 0) for c, p, h, n in db.execute(
        "SELECT code, parent_code, households, persons FROM grids")}
    comms = {c: (h or 0, n or 0) for c, h, n in db.execute(
        "SELECT code, households, persons FROM communities")}
    bbox_of = {}
    for fid, x0, x1, y0, y1 in db.execute(
            "SELECT id, minx, maxx, miny, maxy FROM rtree_buildings_geom"):
        bbox_of[fid] = (x0, y0, x1, y1)
    buildings = {}
    grid_buildings = defaultdict(list)
    for fid, g, h in db.execute("SELECT fid, grid_code, households FROM buildings"):
        buildings[fid] = (g, h or 0)
        grid_buildings[g].append(fid)
    comm_grids = defaultdict(list)
    for c, (p, _, _) in grids.items():
        comm_grids[p].append(c)

    # What the public sees: unit -> {"shown": values seen, "withheld": times seen without}.
    seen_grid = defaultdict(lambda: {"shown": set(), "withheld": 0})
    seen_bldg = defaultdict(lambda: {"shown": set(), "withheld": 0})
    tiles = 0
    sources = set()

    def look_tile(data, where):
        nonlocal tiles
        tiles += 1
        for name, layer in decode(data).items():
            for f in layer["features"]:
                p = f["properties"]
                for key in COUNTS:
                    v = p.get(key)
                    if isinstance(v, (int, float)) and v < k:
                        bad(f"{where} {name} {f.get('id')}: {key} = {v} < {k}")
                if name == "grids":
                    code = str(f["id"])
                    if code not in grids:
                        bad(f"{where}: grid {code} not in the store")
                        continue
                    has = [key for key in ("households", "persons", "deviation") if key in p]
                    if has and len(has) < 3 and "deviation" in has:
                        bad(f"{where}: grid {code} shows only {has}")
                    if "households" in p:
                        seen_grid[code]["shown"].add((p["households"], p.get("persons")))
                    else:
                        seen_grid[code]["withheld"] += 1
                        if "deviation" in p or "persons" in p:
                            bad(f"{where}: grid {code} withholds households but shows {sorted(p)}")
                elif name == "buildings":
                    fid = f["id"]
                    if "households" in p:
                        seen_bldg[fid]["shown"].add(p["households"])
                    else:
                        seen_bldg[fid]["withheld"] += 1
                elif name == "persons_hex":
                    if p.get("persons", 0) < k:
                        bad(f"{where}: hexagon {p.get('h3')} with {p.get('persons')} persons")

    for path in sorted(glob.glob(os.path.join(out, "tiles", "*", "*", "*", "*.mvt"))):
        parts = path.split(os.sep)
        sources.add(parts[-4])
        with open(path, "rb") as fh:
            look_tile(fh.read(), "/".join(parts[-4:]))
    archive_tiles = 0
    mb = os.path.join(out, "archive.mbtiles")
    if os.path.exists(mb):
        a = sqlite3.connect(f"file:{mb}?mode=ro", uri=True)
        for z, x, y, data in a.execute(
                "SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles"):
            archive_tiles += 1
            look_tile(bytes(data), f"mbtiles {z}/{x}/{y}")

    # The API, anonymous.
    seen_comm = {}
    comm_listing = {}
    public_files = sorted(glob.glob(os.path.join(out, "public", "*.json")))

    def walk_numbers(v, where):
        if isinstance(v, dict):
            for key, x in v.items():
                if key in COUNTS + ("min", "max") and isinstance(x, (int, float)) \
                        and not isinstance(x, bool) and x < k:
                    bad(f"{where}: {key} = {x} < {k}")
                if key in COUNTS and isinstance(x, str) and x != label:
                    bad(f"{where}: {key} = {x!r}, expected a number or {label!r}")
                walk_numbers(x, where)
        elif isinstance(v, list):
            for x in v:
                walk_numbers(x, where)

    def note_grid(props, where):
        code = props["code"]
        if props.get("households") == label:
            seen_grid[code]["withheld"] += 1
            if "balance" in props:
                bad(f"{where}: withheld grid {code} has a balance")
        else:
            seen_grid[code]["shown"].add((props.get("households"), props.get("persons")))

    for path in public_files:
        v = json.load(open(path))
        where = "public/" + os.path.basename(path)
        walk_numbers(v, where)
        feats = v.get("features") or [v]
        for f in feats:
            p = f["properties"]
            if len(str(p.get("code"))) == 15:
                note_grid(p, where)
            elif len(str(p.get("code"))) == 12:
                code = p["code"]
                seen_comm[code] = p.get("households")
                comm_listing[code] = {g["code"]: g for g in p.get("grids", [])}
                for g in p.get("grids", []):
                    note_grid(g, where)
                gh = p.get("grid_households") or {}
                if p.get("households") == label and gh.get("mean") is not None:
                    bad(f"{where}: withheld community shows a mean of its grids")

    # 1. Published values are exact.
    for code, s in seen_grid.items():
        _, h, n = grids[code]
        for (hh, pp) in s["shown"]:
            if hh != h or (pp is not None and pp != n):
                bad(f"grid {code}: published ({hh}, {pp}), store ({h}, {n})")
        if s["shown"] and s["withheld"]:
            bad(f"grid {code}: shown in one place, withheld in another")
    for fid, s in seen_bldg.items():
        for hh in s["shown"]:
            if hh != buildings[fid][1]:
                bad(f"building {fid}: published {hh}, store {buildings[fid][1]}")
        if s["shown"] and s["withheld"]:
            bad(f"building {fid}: shown in one place, withheld in another")
    for code, hh in seen_comm.items():
        if hh != label and hh != comms[code][0]:
            bad(f"community {code}: published {hh}, store {comms[code][0]}")

    # 2. Subtraction.
    checked = defaultdict(int)
    for code, hh in seen_comm.items():
        listing = comm_listing[code]
        kids = comm_grids.get(code, [])
        if set(listing) != set(kids):
            bad(f"community {code}: lists {len(listing)} grids, store has {len(kids)}")
            continue
        withheld = [g for g in kids if listing[g].get("households") == label]
        if hh != label:
            checked["communities_published"] += 1
            if len(withheld) == 1:
                bad(f"community {code} ({hh}) minus its published grids gives grid {withheld[0]}")
        else:
            checked["communities_withheld"] += 1
            if kids and not withheld:
                bad(f"community {code} is withheld but all its grids are published (their sum)")
    areas = json.load(open(os.path.join(out, "coverage.json")))["areas"]

    def covered(fid):
        b = bbox_of.get(fid)
        return b and any(b[0] >= c[0] and b[1] >= c[1] and b[2] <= c[2] and b[3] <= c[3]
                         for c in areas)

    for code, s in seen_grid.items():
        kids = grid_buildings.get(code, [])
        if not kids or not all(covered(b) for b in kids):
            continue
        unseen = [b for b in kids if b not in seen_bldg]
        if unseen:
            bad(f"grid {code}: buildings {unseen[:3]} lie in the covered area but were in no tile")
            continue
        withheld = [b for b in kids if not seen_bldg[b]["shown"]]
        if s["shown"]:
            checked["grids_published_all_buildings_seen"] += 1
            if len(withheld) == 1:
                bad(f"grid {code} minus its published buildings gives building {withheld[0]}")
        else:
            checked["grids_withheld_all_buildings_seen"] += 1
            if not withheld:
                bad(f"grid {code} is withheld but all its buildings are published (their sum)")

    # 3. Staff answers are exact.
    staff = 0
    for path in sorted(glob.glob(os.path.join(out, "staff", "*.json"))):
        v = json.load(open(path))
        where = "staff/" + os.path.basename(path)
        for f in v.get("features") or [v]:
            p = f["properties"]
            units = [p] + p.get("grids", [])
            for u in units:
                code = str(u.get("code"))
                exact = grids.get(code, (None,) + comms.get(code, (None, None)))[1:]
                if (u.get("households"), u.get("persons")) != tuple(exact):
                    bad(f"{where}: {code} has ({u.get('households')}, {u.get('persons')}), "
                        f"store {tuple(exact)}")
                staff += 1

    # 4. The regression: grids of one household.
    single = [c for c, (_, h, _) in grids.items() if h == 1 and c in seen_grid]
    for code in single:
        if seen_grid[code]["shown"]:
            bad(f"one-household grid {code} published as {seen_grid[code]['shown']}")
        for b in grid_buildings.get(code, []):
            if b in seen_bldg and seen_bldg[b]["shown"]:
                bad(f"one-household grid {code}: building {b} shows households "
                    f"{seen_bldg[b]['shown']}")

    # 5. The server's log.
    log = open(os.path.join(out, "stderr.log"), encoding="utf-8", errors="replace").read()
    ids = set()
    for pid, card in db.execute("SELECT id, id_card FROM persons"):
        ids.add(str(pid))
        ids.add(str(card))
    tokens = set(re.findall(r"[0-9A-Za-z_-]{6,}", log))
    leaked = sorted(tokens & ids)
    if leaked:
        bad(f"server log names persons: {leaked[:3]}")
    if re.search(r"\b\d{17}[\dX]\b", log):
        bad("server log holds an 18-character id-card-like number")
    m = re.search(r"[^\n]*\d+\.\d{4,}[^\n]*", log)
    if m:
        bad(f"server log holds a coordinate-like number: {m.group(0)!r}")

    print(json.dumps({
        "k": k,
        "tiles": tiles,
        "archive_tiles": archive_tiles,
        "sources": sorted(sources),
        "grids_seen": len(seen_grid),
        "grids_withheld": sum(1 for s in seen_grid.values() if not s["shown"]),
        "buildings_seen": len(seen_bldg),
        "buildings_withheld": sum(1 for s in seen_bldg.values() if not s["shown"]),
        "communities_seen": len(seen_comm),
        "one_household_grids": len(single),
        "public_answers": len(public_files),
        "staff_units": staff,
        "checked": dict(checked),
        "log_lines": log.count("\n"),
        "problems": problems,
    }))


if __name__ == "__main__":
    main()
