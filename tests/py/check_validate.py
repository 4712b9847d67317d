"""Independent truth for `wangge validate`: GEOS (via shapely 2) measures the
original and the repaired layer.

usage: check_validate.py ORIGINAL.geojson FIXED.geojson
prints one JSON object:
  invalid           features of ORIGINAL that GEOS calls invalid
  make_valid_area   sum of shapely.make_valid(original) areas (deg²)
  fixed_features    features in FIXED
  fixed_invalid     features of FIXED that GEOS calls invalid
  fixed_area        sum of FIXED areas (deg²)
  fixed_overlap     summed pairwise intersection area of FIXED (deg²)
  original_overlap  summed pairwise intersection area of make_valid(original) (deg²)
"""
import json
import sys

import shapely
from shapely.geometry import shape


def load(path):
    with open(path) as f:
        return [shape(feat["geometry"]) for feat in json.load(f)["features"]]


def pairwise_overlap(geoms):
    tree = shapely.STRtree(geoms)
    total = 0.0
    for i, g in enumerate(geoms):
        for j in tree.query(g):
            if j > i:
                total += g.intersection(geoms[j]).area
    return total


orig = load(sys.argv[1])
fixed = load(sys.argv[2])
valid = [shapely.make_valid(g) for g in orig]
print(json.dumps({
    "invalid": sum(not g.is_valid for g in orig),
    "make_valid_area": sum(g.area for g in valid),
    "original_overlap": pairwise_overlap(valid),
    "fixed_features": len(fixed),
    "fixed_invalid": sum(not g.is_valid for g in fixed),
    "fixed_area": sum(g.area for g in fixed),
    "fixed_overlap": pairwise_overlap(fixed),
}))
