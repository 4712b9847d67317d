"""What a GeoPackage holds, read with Python's sqlite3 alone (no wangge
code), for the tests of stores that other tools edited (tests/it/foreign.rs).

usage: foreign_dump.py STORE.gpkg [--tables T,T…] [--values LAYER:KEY:COL …]
                        [--areas LAYER:KEY]
prints one JSON object:
  tables: {T: {"sql": the CREATE statement, "rows": [[repr of each value]…],
               "meta": the gpkg_contents, gpkg_geometry_columns and
               gpkg_extensions rows naming T}}
          every row in rowid order, each value as Python's repr (BLOBs as
          bytes), so equal dumps mean equal content, byte for byte;
          "sql" is null for a table that does not exist
  values: {"LAYER:KEY:COL": {key: value}}  COL by KEY for every row
  columns: {LAYER: [[name, declared type]…]} for every LAYER of --values
  geometry: {LAYER: [column_name, geometry_type_name]} likewise
  areas: {KEY: m²} of LAYER's geometries on the WGS 84 ellipsoid, with
         edges taken as geodesics (great circles on the sphere of reduced
         latitude, cut into pieces of at most 1e-4°), projected equal-area
         (Lambert cylindrical on the authalic latitude, exact for areas),
         measured by shapely's planar area: not Karney's algorithm, which
         wangge uses
"""
import json
import sqlite3
import sys

args = sys.argv[1:]
store = args.pop(0)
tables, values, areas = [], [], None
while args:
    flag = args.pop(0)
    if flag == "--tables":
        tables = [t for t in args.pop(0).split(",") if t]
    elif flag == "--areas":
        areas = args.pop(0)
    elif flag == "--values":
        while args and not args[0].startswith("--"):
            values.append(args.pop(0))
    else:
        sys.exit(f"unknown argument {flag}")

db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)


def q_(name):
    return '"' + name.replace('"', '""') + '"'


out = {"tables": {}, "values": {}, "columns": {}, "geometry": {}}
for t in tables:
    row = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t,)).fetchone()
    entry = {"sql": row[0] if row else None, "rows": [], "meta": []}
    if row:
        # Virtual tables (R-trees) have a rowid too.
        entry["rows"] = [[repr(v) for v in r]
                         for r in db.execute(f"SELECT rowid, * FROM {q_(t)} ORDER BY rowid")]
    for meta in ("gpkg_contents", "gpkg_geometry_columns", "gpkg_extensions"):
        entry["meta"] += [[meta] + [repr(v) for v in r]
                          for r in db.execute(f"SELECT * FROM {meta} WHERE table_name = ?", (t,))]
    out["tables"][t] = entry
for spec in values:
    layer, key, col = spec.split(":")
    out["values"][spec] = {str(k): v for k, v in db.execute(
        f"SELECT {q_(key)}, {q_(col)} FROM {q_(layer)} ORDER BY rowid")}
    out["columns"][layer] = [[n, t] for _, n, t, *_ in db.execute(f"PRAGMA table_info({q_(layer)})")]
    g = db.execute("SELECT column_name, geometry_type_name FROM gpkg_geometry_columns "
                   "WHERE table_name = ?", (layer,)).fetchone()
    out["geometry"][layer] = list(g) if g else None
if areas:
    import math

    import shapely

    from gpkgutil import geom

    A, F = 6378137.0, 1 / 298.257223563
    E2 = F * (2 - F)
    E = math.sqrt(E2)

    def q(phi):
        s = math.sin(phi)
        return (1 - E2) * (s / (1 - E2 * s * s) - math.log((1 - E * s) / (1 + E * s)) / (2 * E))

    def unit(lon, lat):
        # The reduced latitude: geodesics are nearly great circles there.
        b = math.atan((1 - F) * math.tan(math.radians(lat)))
        l = math.radians(lon)
        return (math.cos(b) * math.cos(l), math.cos(b) * math.sin(l), math.sin(b))

    def lonlat(v):
        b = math.atan2(v[2], math.hypot(v[0], v[1]))
        return math.degrees(math.atan2(v[1], v[0])), math.degrees(math.atan(math.tan(b) / (1 - F)))

    def ring(coords):
        out = []
        for (x0, y0), (x1, y1) in zip(coords, coords[1:]):
            u, v = unit(x0, y0), unit(x1, y1)
            w = math.acos(max(-1.0, min(1.0, sum(a * b for a, b in zip(u, v)))))
            n = max(1, math.ceil(math.degrees(w) / 1e-4))
            for k in range(n):
                t = k / n
                if w < 1e-15:
                    p = u
                else:
                    a, b = math.sin((1 - t) * w) / math.sin(w), math.sin(t * w) / math.sin(w)
                    p = tuple(a * c + b * d for c, d in zip(u, v))
                lon, lat = lonlat(p)
                out.append((A * math.radians(lon), A * q(math.radians(lat)) / 2))
        out.append(out[0])
        return out

    def area(g):
        total = 0.0
        for poly in shapely.get_parts(g):
            p = shapely.Polygon(ring(list(poly.exterior.coords)),
                                [ring(list(h.coords)) for h in poly.interiors])
            total += p.area
        return total

    layer, key = areas.split(":")
    out["areas"] = {str(k): area(geom(g))
                    for k, g in db.execute(f"SELECT {q_(key)}, geom FROM {q_(layer)}") if g}
print(json.dumps(out, ensure_ascii=False))
