#!/usr/bin/env python3
"""Random points and their point-in-polygon truth per shapely (GEOS).

Usage::

    python3 tests/py/locate_truth.py GRIDS.geojson POINTS.csv [--points N] [--seed S]
        [--code-field code] [--margin 1e-8]

Writes two files:

* ``POINTS.csv``: header ``id,lon,lat``, then N points (default 1,000,000)
  drawn with ``numpy.random.default_rng(S)`` (default 11) uniformly over the
  bounding box of the grids expanded by 0.02 degrees. ``id`` runs from 1;
  coordinates are printed with ``repr`` so they parse back to the same double.
* ``POINTS.truth.csv`` (``.csv`` replaced by ``.truth.csv``): header
  ``id,code,boundary``. ``code`` is the code of the grid whose polygon
  contains the point (``STRtree.query(points, predicate="within")``), empty
  if none. ``boundary`` is 1 when the point lies within ``--margin`` degrees
  of some grid boundary (``predicate="dwithin"`` on a tree of the grid
  boundaries), or inside more than one grid; 0 otherwise. Points with
  ``boundary = 1`` are the ones where two correct implementations may
  legitimately disagree; compare only ``boundary = 0`` rows strictly.

Points inside two grids (impossible for a valid coverage) are listed on stderr;
their ``code`` column holds the first code in file order. Timings go to stderr.
"""

import argparse
import json
import sys
import time

import numpy as np
import shapely

PAD = 0.02


def truth_path(points_path):
    if points_path.endswith(".csv"):
        return points_path[: -len(".csv")] + ".truth.csv"
    return points_path + ".truth.csv"


def load_grids(path, code_field):
    with open(path, encoding="utf-8") as f:
        fc = json.load(f)
    feats = fc["features"]
    geoms = shapely.from_geojson([json.dumps(ft["geometry"]) for ft in feats])
    codes = [str(ft["properties"][code_field]) for ft in feats]
    return np.asarray(geoms, dtype=object), codes


def write_csv(path, header, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(header + "\n")
        f.write("\n".join(lines))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("grids")
    ap.add_argument("points_csv")
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--code-field", default="code")
    ap.add_argument("--margin", type=float, default=1e-8,
                    help="distance to a grid boundary (degrees) that counts as 'on the boundary'")
    a = ap.parse_args()

    t0 = time.perf_counter()
    geoms, codes = load_grids(a.grids, a.code_field)
    xmin, ymin, xmax, ymax = shapely.total_bounds(geoms)
    rng = np.random.default_rng(a.seed)
    n = a.points
    lon = rng.uniform(xmin - PAD, xmax + PAD, n)
    lat = rng.uniform(ymin - PAD, ymax + PAD, n)
    t_gen = time.perf_counter()

    pts = shapely.points(lon, lat)
    tree = shapely.STRtree(geoms)
    pi, gi = tree.query(pts, predicate="within")
    t_within = time.perf_counter()

    btree = shapely.STRtree(shapely.boundary(geoms))
    near = np.unique(btree.query(pts, predicate="dwithin", distance=a.margin)[0])
    t_bound = time.perf_counter()

    code_idx = np.full(n, -1, dtype=np.int64)
    boundary = np.zeros(n, dtype=np.uint8)
    boundary[near] = 1
    # query results are sorted by input index; keep the first grid per point
    # in file order and report any point that is inside more than one.
    order = np.lexsort((gi, pi))
    pi, gi = pi[order], gi[order]
    first = np.ones(len(pi), dtype=bool)
    first[1:] = pi[1:] != pi[:-1]
    code_idx[pi[first]] = gi[first]
    multi = np.unique(pi[~first])
    for p in multi:
        inside = [codes[g] for g in gi[pi == p]]
        print(f"locate_truth: point id {p + 1} ({lon[p]!r}, {lat[p]!r}) is inside {len(inside)} grids: "
              f"{' '.join(inside)}", file=sys.stderr)
    boundary[multi] = 1

    write_csv(a.points_csv, "id,lon,lat",
              (f"{i},{x!r},{y!r}" for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist()), start=1)))
    code_str = np.array(codes + [""], dtype=object)[code_idx]  # -1 picks ""
    tpath = truth_path(a.points_csv)
    write_csv(tpath, "id,code,boundary",
              (f"{i},{c},{b}" for i, (c, b) in enumerate(zip(code_str.tolist(), boundary.tolist()), start=1)))
    t_write = time.perf_counter()

    inside = int((code_idx >= 0).sum())
    print(f"locate_truth: {n} points, {len(geoms)} grids: {inside} inside, {n - inside} outside, "
          f"{int(boundary.sum())} near a boundary (< {a.margin:g} deg), {len(multi)} in several grids",
          file=sys.stderr)
    print(f"locate_truth: read+generate {t_gen - t0:.2f} s, within query {t_within - t_gen:.2f} s, "
          f"boundary query {t_bound - t_within:.2f} s, write {t_write - t_bound:.2f} s "
          f"-> {a.points_csv}, {tpath}", file=sys.stderr)


if __name__ == "__main__":
    main()
