#!/usr/bin/env python3
"""Deterministic Voronoi grid layer over Beijing, built independently of wangge.

Usage::

    python3 tests/py/voronoi_grids.py OUT.geojson [--cells N] [--seed S]
        [--districts data/beijing-districts.geojson]

The area is the union of the 16 district outlines (each repaired with
``shapely.make_valid`` first; the union keeps the small gaps between
neighbouring districts as holes). ``N`` seed points (default 20000) are drawn
with ``numpy.random.default_rng(S)`` (default 7): half uniformly over the
area, half from a normal distribution around the city centre (so the central
cells are smaller, as real grids are), both by rejection against the area.
The cells of ``shapely.voronoi_polygons`` are clipped to the area; only
Polygon/MultiPolygon parts are kept. Coordinates are rounded to 7 decimals,
anything the rounding made invalid is repaired again, and every output
geometry is checked to be valid and non-empty. Rings are oriented as RFC 7946
asks (exterior counter-clockwise).

Output: a GeoJSON FeatureCollection, one feature per line, with properties
``{"code": "110000000000001", "name": "voronoi 1"}`` numbered in seed order
(cells that vanish are skipped, numbering stays dense). The file is
byte-identical for the same arguments.
"""

import argparse
import json
import os
import sys

import numpy as np
import shapely
from shapely.geometry import mapping

DEFAULT_DISTRICTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "beijing-districts.geojson"
)
CENTRE = (116.397, 39.909)  # Tiananmen
CENTRE_SIGMA = 0.15  # degrees
CODE_BASE = 110000000000000
DECIMALS = 7


def polygonal(geoms):
    """Keep only the Polygon/MultiPolygon parts of each geometry (array in, array out)."""
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            out[i] = None
            continue
        kind = shapely.get_type_id(g)
        if kind in (3, 6):  # Polygon, MultiPolygon
            out[i] = g
            continue
        parts = shapely.get_parts(g)
        polys = []
        for p in parts:
            k = shapely.get_type_id(p)
            if k == 3:
                polys.append(p)
            elif k == 6:
                polys.extend(shapely.get_parts(p))
        if not polys:
            out[i] = None
        elif len(polys) == 1:
            out[i] = polys[0]
        else:
            out[i] = shapely.multipolygons(polys)
    return out


def load_area(path):
    with open(path, encoding="utf-8") as f:
        fc = json.load(f)
    geoms = [shapely.from_geojson(json.dumps(ft["geometry"])) for ft in fc["features"]]
    geoms = polygonal(shapely.make_valid(np.array(geoms, dtype=object)))
    area = shapely.union_all([g for g in geoms if g is not None])
    area = polygonal(np.array([area], dtype=object))[0]
    if area is None or not area.is_valid:
        sys.exit("voronoi_grids: the district union is not a valid polygonal area")
    return area


def seeds(area, n, rng):
    """n points in the area: half uniform, half normal around CENTRE (rejection)."""
    shapely.prepare(area)
    xmin, ymin, xmax, ymax = area.bounds
    n_centre = n // 2
    out = []
    for want, draw in (
        (n - n_centre, lambda k: (rng.uniform(xmin, xmax, k), rng.uniform(ymin, ymax, k))),
        (n_centre, lambda k: (rng.normal(CENTRE[0], CENTRE_SIGMA, k), rng.normal(CENTRE[1], CENTRE_SIGMA, k))),
    ):
        got = np.empty((0, 2))
        while len(got) < want:
            x, y = draw(max(1024, 2 * (want - len(got))))
            ok = shapely.contains_xy(area, x, y)
            got = np.vstack([got, np.column_stack([x[ok], y[ok]])])
        out.append(got[:want])
    xy = np.vstack(out)
    # Duplicate seeds would merge cells; keep the first occurrence, in order.
    _, first = np.unique(xy, axis=0, return_index=True)
    return xy[np.sort(first)]


def rounded(geoms):
    """Round coordinates to DECIMALS and repair what that broke."""
    geoms = shapely.transform(geoms, lambda c: np.round(c, DECIMALS))
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        fixed = polygonal(shapely.make_valid(geoms[bad]))
        # make_valid may construct new intersection vertices; round them too.
        fixed = shapely.transform(fixed, lambda c: np.round(c, DECIMALS))
        geoms = geoms.copy()
        geoms[bad] = fixed
    return geoms, int(bad.sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--districts", default=DEFAULT_DISTRICTS)
    ap.add_argument("--collections", type=int, default=0,
                    help="write every Nth cell as a GeometryCollection of its polygon, a stray "
                         "LineString and a Point, as GEOS intersections return them")
    a = ap.parse_args()
    if a.cells < 2:
        sys.exit("voronoi_grids: --cells must be at least 2")

    area = load_area(a.districts)
    rng = np.random.default_rng(a.seed)
    xy = seeds(area, a.cells, rng)

    xmin, ymin, xmax, ymax = area.bounds
    frame = shapely.box(xmin - 1, ymin - 1, xmax + 1, ymax + 1)
    diagram = shapely.voronoi_polygons(shapely.multipoints(xy), extend_to=frame, ordered=True)
    cells = shapely.get_parts(diagram)
    if len(cells) != len(xy):
        sys.exit(f"voronoi_grids: {len(xy)} seeds but {len(cells)} cells")

    clipped = polygonal(shapely.intersection(cells, area))
    clipped, repaired = rounded(clipped)
    clipped = polygonal(clipped)
    keep = np.array([g is not None and not g.is_empty and g.area > 0 for g in clipped])
    cells = shapely.orient_polygons(clipped[keep], exterior_cw=False)
    if not shapely.is_valid(cells).all():
        bad = np.flatnonzero(~shapely.is_valid(cells))
        sys.exit(f"voronoi_grids: {len(bad)} cells invalid after repair, e.g. #{bad[0]}: "
                 f"{shapely.is_valid_reason(cells[bad[0]])}")

    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write('{"type": "FeatureCollection", "features": [\n')
        for i, g in enumerate(cells, start=1):
            geometry = mapping(g)
            if a.collections and i % a.collections == 0:
                x0, y0 = g.exterior.coords[0] if g.geom_type == "Polygon" else g.geoms[0].exterior.coords[0]
                geometry = {"type": "GeometryCollection", "geometries": [
                    {"type": "LineString", "coordinates": [[x0, y0], [x0 + 1e-4, y0 + 1e-4]]},
                    geometry,
                    {"type": "Point", "coordinates": [x0, y0]},
                ]}
            feat = {
                "type": "Feature",
                "properties": {"code": str(CODE_BASE + i), "name": f"voronoi {i}"},
                "geometry": geometry,
            }
            f.write(json.dumps(feat, ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if i < len(cells) else "\n")
        f.write("]}\n")
    os.replace(tmp, a.out)
    print(f"voronoi_grids: {len(cells)} cells ({len(xy) - len(cells)} vanished, "
          f"{repaired} repaired after rounding) -> {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
