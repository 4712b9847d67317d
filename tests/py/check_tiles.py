"""Independent truth for wangge's vector tiles.

usage: check_tiles.py STORE TILES_DIR

TILES_DIR holds `tiles.json` (every tile address the Rust side encoded, empty
ones included), `layers.json` (the tiler's TileJSON vector_layers) and the
non-empty tiles as `z/x/y.mvt` (uncompressed, simplification off).

Each tile is decoded with the `mapbox-vector-tile` package and compared with:
  * PostGIS `ST_AsMVTGeom(geom, ST_TileEnvelope(z, x, y), 4096, 64, true)` on
    the same store features (a throwaway cluster on a free port, started and
    stopped here): the set of feature ids per layer, and each geometry
    within one tile unit inside the tile proper (Hausdorff distance <= 1;
    polygon area within half a unit per unit of perimeter). PostGIS rounds
    before it clips and simplifies by half a unit, and two roundings can
    each move a vertex 0.71 units, so where the two differ by more, the exact
    float clip (shapely) of the source decides: no part of ours may lie more
    than one unit from it, and no part of it more than one unit from ours
    except a sub-unit sliver that rounding collapses (under one square unit);
  * the store's attribute values (read with sqlite3), `deviation` recomputed
    from `partition_target`;
  * persons: h3-py bins every person independently; every `persons_hex`
    feature must be a cell with >= 10 persons and the right count, and
    PostGIS decides which of those cells the tile must hold. No person's id,
    id-card number or household id may appear anywhere, and no layer other
    than the documented ones.

Prints one JSON object: counts and the first mismatches (empty when right).
"""
import gzip
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict

import h3
import numpy as np
import mapbox_vector_tile
import shapely
from shapely.geometry import shape

from gpkgutil import geom as gpkg_geom

PG_BIN = "/usr/lib/postgresql/15/bin"
LAYERS = {
    "districts": ["code", "name"],
    "streets": ["code", "name"],
    "communities": ["code", "name"],
    "grids": ["code", "name", "households", "persons"],
    "roads": ["id", "kind", "name"],
    "buildings": ["id", "kind", "floors", "households", "grid_code"],
    "places": ["id", "kind", "name", "grid_code"],
    "objects": ["id", "kind", "status", "grid_code"],
    "events": ["id", "kind", "status", "reported_at", "grid_code"],
    "organizations": ["id", "kind", "name", "grid_code"],
}
ROAD_MINZOOM = {"arterial": 10, "secondary": 12, "local": 13}
HEX_MIN = 10
# Attributes that carry (or derive from) counts of households or persons.
COUNT_KEYS = ("households", "persons", "deviation")


def hex_res(z):
    return 4 if z <= 5 else 5 if z <= 7 else 6 if z <= 9 else 7 if z <= 11 else 8


def to_tile(g, z, x, y):
    """Lon/lat to tile units (spherical Web Mercator, y down), in floats."""
    n = 1 << z

    def f(c):
        lat = np.radians(np.clip(c[:, 1], -85.0511287798, 85.0511287798))
        mx = (c[:, 0] + 180.0) / 360.0
        my = 0.5 - np.log(np.tan(lat) + 1.0 / np.cos(lat)) / (2.0 * np.pi)
        return np.stack([(mx * n - x) * 4096.0, (my * n - y) * 4096.0], axis=1)

    return shapely.transform(g, f)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostGIS:
    """A throwaway PostgreSQL 15 + PostGIS cluster owned by `postgres`."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="wangge-pg-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        asuser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.asuser = asuser
        subprocess.run(asuser + [f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)
        subprocess.run(asuser + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-o",
                                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                                 "-w", "-l", os.path.join(self.dir, "log"), "start"],
                       check=True, capture_output=True)
        self.sql("CREATE EXTENSION postgis")

    def sql(self, query, stdin=None):
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", query],
                             input=stdin, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def copy(self, table, rows):
        data = "".join("\t".join(str(v) for v in r) + "\n" for r in rows)
        out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                              str(self.port), "-U", "postgres", "-c", f"\\copy {table} FROM STDIN"],
                             input=data, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"copy failed: {out.stderr}")

    def stop(self):
        subprocess.run(self.asuser + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    store, tiles_dir = sys.argv[1], sys.argv[2]
    tiles = [tuple(t) for t in json.load(open(os.path.join(tiles_dir, "tiles.json")))]
    vector_layers = {l["id"]: l for l in json.load(open(os.path.join(tiles_dir, "layers.json")))}

    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    target = db.execute("SELECT value FROM wangge_meta WHERE key = 'partition_target'").fetchone()
    target = float(target[0]) if target else None
    attrs = {}  # (layer, fid) -> dict
    feats = []  # (layer, fid, minzoom, hex wkb)
    source = {}  # (layer, fid) -> lon/lat shapely geometry
    for layer, cols in LAYERS.items():
        extra = ", kind" if layer == "roads" else ""
        for row in db.execute(f"SELECT fid, geom, {', '.join(cols)}{extra} FROM {layer}"):
            fid, blob = row[0], row[1]
            props = {c: v for c, v in zip(cols, row[2:2 + len(cols)]) if v is not None}
            if layer == "grids" and str(props.get("code", "")).isdigit():
                # A grid's feature id is its code, stable across edits.
                fid = int(props["code"])
            if layer == "grids" and target and "households" in props:
                props["deviation"] = props["households"] / target - 1
            attrs[(layer, fid)] = props
            zmin = vector_layers[layer]["minzoom"]
            if layer == "roads":
                zmin = ROAD_MINZOOM.get(row[-1], zmin)
            g = gpkg_geom(blob)
            source[(layer, fid)] = g
            feats.append((layer, fid, zmin, shapely.to_wkb(g, hex=True)))

    # Persons, binned independently of the tiler (h3-py, the C library).
    secrets = set()
    counts = {r: defaultdict(int) for r in range(4, 9)}
    finest = defaultdict(int)
    for blob, pid, card, hh in db.execute("SELECT geom, id, id_card, household_id FROM persons"):
        secrets.update(v for v in (pid, card, hh) if v)
        p = gpkg_geom(blob)
        finest[h3.latlng_to_cell(p.y, p.x, 8)] += 1
    # The documented rule: only resolution-8 cells of >= 10 count, at every
    # resolution (no differencing of suppressed cells across levels).
    for cell, n in finest.items():
        if n >= HEX_MIN:
            for r in range(4, 9):
                counts[r][h3.cell_to_parent(cell, r)] += n
    hexes = []
    for r, cells in counts.items():
        for c, n in cells.items():
            if n >= HEX_MIN:
                ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(c)]
                poly = shapely.Polygon(ring)
                source[("persons_hex", int(c, 16))] = poly
                hexes.append(("persons_hex", int(c, 16), r, shapely.to_wkb(poly, hex=True)))
                attrs[("persons_hex", int(c, 16))] = {"h3": c, "res": r, "persons": n}

    pg = PostGIS()
    try:
        pg.sql("CREATE TABLE feats (layer text, fid bigint, zmin int, geom geometry)")
        pg.copy("feats", feats)
        pg.sql("CREATE TABLE hexes (layer text, fid bigint, res int, geom geometry)")
        pg.copy("hexes", hexes)
        pg.sql("CREATE TABLE tiles (z int, x int, y int)")
        pg.copy("tiles", tiles)
        pg.sql("""
            ALTER TABLE feats ADD COLUMN g geometry; UPDATE feats SET g = ST_Transform(ST_SetSRID(geom, 4326), 3857);
            ALTER TABLE hexes ADD COLUMN g geometry; UPDATE hexes SET g = ST_Transform(ST_SetSRID(geom, 4326), 3857);
            CREATE INDEX ON feats USING gist (g); CREATE INDEX ON hexes USING gist (g); ANALYZE;""")
        rows = pg.sql("""
            WITH t AS (SELECT z, x, y, ST_TileEnvelope(z, x, y) AS env,
                              ST_Expand(ST_TileEnvelope(z, x, y), 64.0 / 4096 * 40075016.68557849 / (1 << z)) AS big
                       FROM tiles)
            SELECT t.z, t.x, t.y, f.layer, f.fid, ST_AsText(m)
            FROM t JOIN feats f ON f.g && t.big AND t.z >= f.zmin
            CROSS JOIN LATERAL ST_AsMVTGeom(f.g, t.env, 4096, 64, true) AS m
            WHERE m IS NOT NULL AND NOT ST_IsEmpty(m)
            UNION ALL
            SELECT t.z, t.x, t.y, h.layer, h.fid, ST_AsText(m)
            FROM t JOIN hexes h ON h.g && t.big AND t.z <= 13 AND h.res = CASE
                 WHEN t.z <= 5 THEN 4 WHEN t.z <= 7 THEN 5 WHEN t.z <= 9 THEN 6 WHEN t.z <= 11 THEN 7 ELSE 8 END
            CROSS JOIN LATERAL ST_AsMVTGeom(h.g, t.env, 4096, 64, true) AS m
            WHERE m IS NOT NULL AND NOT ST_IsEmpty(m)""")
    finally:
        pg.stop()

    truth = defaultdict(dict)  # (z,x,y,layer) -> fid -> geometry
    for z, x, y, layer, fid, wkt in rows:
        maxz = vector_layers.get(layer, {}).get("maxzoom", 16)
        if int(z) <= maxz:
            truth[(int(z), int(x), int(y), layer)][int(fid)] = shapely.from_wkt(wkt)

    allowed = set(vector_layers)
    mismatches = []
    postgis_farther = 0
    hausdorff_max = 0.0  # ours vs PostGIS, inside the tile
    exact_max = 0.0  # sliver of the exact clip beyond 1 unit of ours, where PostGIS is over 1 unit off
    compared = defaultdict(int)
    withheld = defaultdict(int)
    ours_count = defaultdict(int)

    def bad(msg):
        if len(mismatches) < 30:
            mismatches.append(msg)

    def negligible(g):
        # Rounding decides whether a sub-unit sliver survives, differently
        # in each encoder.
        return (g.geom_type.endswith("Polygon") and g.area < 2.0) or \
               (g.geom_type.endswith("LineString") and g.length < 2.0)

    for z, x, y in tiles:
        path = os.path.join(tiles_dir, str(z), str(x), f"{y}.mvt")
        data = open(path, "rb").read() if os.path.exists(path) else b""
        decoded = mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}) if data else {}
        for name in decoded:
            if name not in allowed:
                bad(f"{z}/{x}/{y}: unexpected layer {name}")
        layers = set(decoded) | {k[3] for k in truth if k[:3] == (z, x, y)}
        for name in layers:
            want = truth.get((z, x, y, name), {})
            got = {f["id"]: f for f in decoded.get(name, {}).get("features", [])}
            ours_count[name] += len(got)
            for fid in set(want) - set(got):
                if not negligible(want[fid]):
                    bad(f"{z}/{x}/{y} {name} fid {fid}: PostGIS has it ({want[fid].geom_type}, "
                        f"area {want[fid].area:.2f}, length {want[fid].length:.2f}), the tile does not")
            for fid in set(got) - set(want):
                g = shape(got[fid]["geometry"])
                if not negligible(g):
                    bad(f"{z}/{x}/{y} {name} fid {fid}: in the tile ({g.geom_type}, area {g.area:.2f}, "
                        f"length {g.length:.2f}), not in PostGIS")
            for fid in set(got) & set(want):
                f = got[fid]
                compared[name] += 1
                # Attributes.
                exp = attrs.get((name, fid))
                props = f["properties"]
                # The privacy rule (check_privacy.py checks which): a grid or
                # building may have its counts withheld, all together; a
                # count that is shown is the store's and at least k.
                if exp is not None and name in ("grids", "buildings") \
                        and not any(k in props for k in COUNT_KEYS):
                    exp = {k: v for k, v in exp.items() if k not in COUNT_KEYS}
                    withheld[name] += 1
                for k in COUNT_KEYS:
                    if k in ("households", "persons") and k in props and props[k] < HEX_MIN:
                        bad(f"{z}/{x}/{y} {name} fid {fid}: {k} = {props[k]} is below k")
                if exp is None or set(props) != set(exp):
                    bad(f"{z}/{x}/{y} {name} fid {fid}: properties {sorted(props)} != {sorted(exp or {})}")
                else:
                    for k, v in exp.items():
                        pv = props[k]
                        same = abs(pv - v) <= 1e-9 * max(1, abs(v)) if isinstance(v, float) else pv == v
                        if not same:
                            bad(f"{z}/{x}/{y} {name} fid {fid}: {k} = {pv!r}, store has {v!r}")
                if name == "persons_hex" and props.get("persons", 0) < HEX_MIN:
                    bad(f"{z}/{x}/{y}: hexagon {fid} with {props.get('persons')} persons")
                # Geometry.
                g = shapely.make_valid(shape(f["geometry"]))
                w = want[fid]
                if g.is_empty:
                    bad(f"{z}/{x}/{y} {name} fid {fid}: empty geometry")
                    continue
                # PostGIS rounds to integers *before* it clips, which moves
                # the cut on a steep edge by several units along the buffer
                # edge; compare inside the tile proper (64 units from it).
                gi = shapely.clip_by_rect(g, 0, 0, 4096, 4096)
                wi = shapely.clip_by_rect(shapely.make_valid(w), 0, 0, 4096, 4096)
                if gi.is_empty != wi.is_empty:
                    if not negligible(gi if wi.is_empty else wi):
                        bad(f"{z}/{x}/{y} {name} fid {fid}: inside the tile, one side is empty")
                elif not gi.is_empty:
                    d = shapely.hausdorff_distance(gi, wi)
                    hausdorff_max = max(hausdorff_max, d)
                    if d > 1.0:
                        # Two roundings to the integer grid can each move a
                        # vertex by up to 0.71 units, PostGIS also simplifies
                        # (half a unit) and rounds before clipping, and a
                        # part thinner than a unit may collapse in either
                        # encoder. Let the exact float clip decide: nothing
                        # of ours may lie more than one unit from it, and
                        # nothing of it more than one unit from ours but
                        # such a sub-unit sliver (under one square unit, or
                        # one unit of line).
                        # Each side inside the tile proper against the
                        # other as far as the buffer reaches: cutting both
                        # at the tile edge would move the cut of a rounded
                        # edge nearly parallel to it by several units.
                        src_t = to_tile(source[(name, fid)], z, x, y)
                        exact = shapely.clip_by_rect(src_t, 0, 0, 4096, 4096)
                        exact_b = shapely.clip_by_rect(src_t, -64, -64, 4160, 4160)
                        measure = shapely.area if w.geom_type.endswith("Polygon") else shapely.length
                        ours_off = measure(shapely.difference(gi, shapely.buffer(exact_b, 1.0)))
                        exact_off = measure(shapely.difference(exact, shapely.buffer(g, 1.0)))
                        exact_max = max(exact_max, exact_off)
                        if ours_off > 1e-6 or exact_off >= 1.0:
                            bad(f"{z}/{x}/{y} {name} fid {fid}: Hausdorff {d:.2f} from ST_AsMVTGeom; "
                                f"{ours_off:.3g} of ours beyond one unit of the exact clip, "
                                f"{exact_off:.3g} of it beyond one unit of ours")
                        else:
                            postgis_farther += 1
                if w.geom_type.endswith("Polygon"):
                    diff = shapely.symmetric_difference(gi, wi).area
                    if diff > 0.5 * w.length + 1:
                        bad(f"{z}/{x}/{y} {name} fid {fid}: area differs by {diff:.1f} "
                            f"(perimeter {w.length:.0f})")
                if w.geom_type.endswith("Point"):
                    if g.geom_type != w.geom_type and not (len(shapely.get_parts(g)) == len(shapely.get_parts(w))):
                        bad(f"{z}/{x}/{y} {name} fid {fid}: {g.geom_type} != {w.geom_type}")
            # Privacy: no person's identifiers in any property.
            for f in decoded.get(name, {}).get("features", []):
                for k, v in f["properties"].items():
                    if k in ("id_card", "household_id", "age_band", "registered") or v in secrets:
                        bad(f"{z}/{x}/{y} {name}: personal data {k}={v!r}")

    print(json.dumps({
        "tiles": len(tiles),
        "postgis_features": len(rows),
        "tile_features": dict(ours_count),
        "compared": dict(compared),
        "counts_withheld": dict(withheld),
        "hex_cells_at_least_10": len(hexes),
        "postgis_off_by_more_than_1_ours_within_1_of_exact": postgis_farther,
        "hausdorff_max_vs_postgis": round(hausdorff_max, 3),
        "largest_sliver_of_exact_beyond_1_of_ours": round(exact_max, 4),
        "persons": sum(finest.values()),
        "persons_in_shown_hexagons": sum(counts[8].values()),
        "mismatches": mismatches,
    }))


if __name__ == "__main__":
    main()
