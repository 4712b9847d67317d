"""Dirty polygons as real files hold them, and GEOS's verdict on each.

usage:
  dirty_geometries.py generate OUT.geojson [--seed N] [--big N]
  dirty_geometries.py check ORIG.geojson FIXED.geojson REPORT.json

`generate` writes a FeatureCollection of >= 2,000 cases, one per cell of a
lattice near Beijing (cells 0.01 deg apart, so no two cases meet), each with
properties {"code": "case-NNNNN", "kind": ..., "extra": ...}: bow-ties,
figure eights, spikes, repeated and collinear points, unclosed rings, holes
outside / crossing / touching the shell, nested shells, overlapping parts,
inverted winding, degenerate parts and holes in multipolygons (2 distinct
positions, one position, zero area, spike-only), GeometryCollections with
lines and points (nested ones too, and some with no polygon at all),
slivers of about 1e-9 deg^2, 3-D coordinates, and `--big` rings of 100,000
vertices.

`check` rebuilds every original with shapely as leniently as GEOS can
(rings closed, rings GEOS cannot build -- fewer than 4 positions -- left
out, Z dropped), takes the polygonal part of `shapely.make_valid` as the
truth and compares wangge's `validate --fix` output (FIXED) and `--json`
report: every case where GEOS keeps area > 0 is kept, areas agree within
0.1 % or 1 m^2, every output is valid for GEOS, cases with no area are
rejected, properties and feature order are kept, and each dropped part is
reported with its `part`. Prints one JSON object; "problems" must be empty.
"""
import json
import math
import random
import sys
from collections import Counter

import shapely
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Point, Polygon

SPACING = 0.01
LON0, LAT0 = 116.0, 39.6
# Square metres per square degree here (small cells: a constant is exact enough
# for a 1 m^2 tolerance on areas of at most ~1e5 m^2).
M2_PER_DEG2 = 111_320.0 * math.cos(math.radians(39.9)) * 110_574.0


def star(rng, cx, cy, r, n):
    """A simple (valid) star-shaped polygon ring, closed, counter-clockwise."""
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))
    # Distinct angles so consecutive vertices are distinct.
    pts = []
    for a in angles:
        rr = r * rng.uniform(0.4, 1.0)
        pts.append([cx + rr * math.cos(a), cy + rr * math.sin(a)])
    pts.append(list(pts[0]))
    return pts


def square(cx, cy, r):
    return [[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r], [cx - r, cy - r]]


def poly(*rings):
    return {"type": "Polygon", "coordinates": [list(r) for r in rings]}


def multi(*polys):
    return {"type": "MultiPolygon", "coordinates": [p["coordinates"] for p in polys]}


def case(kind, rng, cx, cy):
    r = SPACING * rng.uniform(0.15, 0.4)
    if kind == "valid":
        return poly(star(rng, cx, cy, r, rng.randint(3, 30)))
    if kind == "bowtie":
        a = rng.uniform(0.5, 1.0) * r
        return poly([[cx - a, cy - r], [cx + a, cy + r], [cx + a, cy - r], [cx - a, cy + r], [cx - a, cy - r]])
    if kind == "figure8":
        return poly([[cx, cy], [cx + r, cy + r], [cx + r, cy], [cx, cy], [cx - r, cy - r * 0.5],
                     [cx - r, cy], [cx, cy]])
    if kind == "spike":
        ring = star(rng, cx, cy, r, rng.randint(4, 20))[:-1]
        i = rng.randrange(len(ring))
        v = ring[i]
        tip = [v[0] + rng.uniform(-1, 1) * r * 0.5, v[1] + rng.uniform(-1, 1) * r * 0.5]
        ring = ring[:i + 1] + [tip, list(v)] + ring[i + 1:]
        ring.append(list(ring[0]))
        g = poly(ring)
        g["tip"] = i + 1  # where the spike is (read by `check`, ignored by readers)
        return g
    if kind == "repeated":
        ring = star(rng, cx, cy, r, rng.randint(4, 20))[:-1]
        out = []
        for p in ring:
            out.append(p)
            for _ in range(rng.choice([0, 0, 1, 3])):
                out.append(list(p))
        out.append(list(out[0]))
        return poly(out)
    if kind == "collinear":
        ring = star(rng, cx, cy, r, rng.randint(3, 12))
        out = []
        for a, b in zip(ring, ring[1:]):
            out.append(a)
            for t in (0.25, 0.5):
                out.append([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])])
        out.append(list(out[0]))
        return poly(out)
    if kind == "unclosed":
        return poly(star(rng, cx, cy, r, rng.randint(3, 20))[:-1])
    if kind == "hole_outside":
        h = r * 0.3
        return poly(square(cx - r * 0.4, cy, r * 0.5), square(cx + r * 0.6, cy, h))
    if kind == "hole_crossing":
        return poly(square(cx, cy, r * 0.6), square(cx + r * 0.5, cy, r * 0.3))
    if kind == "hole_touching":
        s = r * 0.6
        return poly(square(cx, cy, s), [[cx - s, cy], [cx, cy - s * 0.5], [cx, cy + s * 0.5], [cx - s, cy]])
    if kind == "nested_shells":
        return multi(poly(square(cx, cy, r)), poly(square(cx, cy, r * rng.uniform(0.2, 0.6))))
    if kind == "overlapping_parts":
        # Offsets in x and y, so no edges are collinear (where GEOS merges a
        # doubled edge and keeps the overlap; see README).
        dy = r * rng.uniform(0.05, 0.3)
        return multi(poly(square(cx - r * 0.3, cy - dy, r * 0.5)),
                     poly(star(rng, cx + r * 0.3, cy + dy, r * 0.6, rng.randint(3, 9))))
    if kind == "inverted":
        shell = square(cx, cy, r)[::-1]
        hole = square(cx, cy, r * 0.4)
        return poly(shell, hole)
    if kind == "degenerate_part":
        good = poly(star(rng, cx - r * 0.3, cy, r * 0.5, rng.randint(3, 15)))
        # On one horizontal line, so exactly collinear in floating point.
        a = [cx + r * 0.5, cy]
        b = [cx + r * 0.7, cy]
        c = [cx + r * 0.9, cy]
        bad = rng.choice([
            [a, b, a],                    # 2 distinct positions
            [a, b],                       # 2 positions, unclosed
            [a, a, a, a],                 # one position
            [a],                          # one position, unclosed
            [a, b, c, a],                 # zero area (collinear)
            [a, b, a, b, a],              # spike only
        ])
        parts = [good["coordinates"], [bad]]
        if rng.random() < 0.5:
            parts.reverse()
        if rng.random() < 0.3:
            parts.append(poly(square(cx, cy + r * 0.7, r * 0.15))["coordinates"])
        return {"type": "MultiPolygon", "coordinates": parts}
    if kind == "degenerate_hole":
        s = r * 0.6
        a, b = [cx, cy], [cx + s * 0.2, cy + s * 0.2]
        return poly(square(cx, cy, s), rng.choice([[a, b, a], [a, a, a, a], [a, b]]))
    if kind == "collection":
        p = poly(star(rng, cx, cy, r * 0.6, rng.randint(3, 12)))
        line = {"type": "LineString", "coordinates": [[cx - r, cy - r], [cx + r, cy - r * 0.9]]}
        pt = {"type": "Point", "coordinates": [cx + r * 0.8, cy + r * 0.8]}
        shape = rng.randrange(4)
        if shape == 0:
            members = [p, line]
        elif shape == 1:
            members = [pt, p, line]
        elif shape == 2:
            inner = {"type": "GeometryCollection",
                     "geometries": [multi(poly(square(cx + r * 0.8, cy - r * 0.8, r * 0.1))), pt]}
            members = [line, inner, p]
        else:
            members = [line, pt]  # nothing polygonal: rejected
        return {"type": "GeometryCollection", "geometries": members}
    if kind == "sliver":
        # A thin triangle of about 1e-9 deg^2 (~9 m^2), 3e-6..3e-5 deg wide.
        w = rng.uniform(3e-6, 3e-5)
        length = 2e-9 / w
        a = rng.uniform(0, math.pi)
        ux, uy = math.cos(a), math.sin(a)
        return poly([[cx, cy], [cx + length * ux, cy + length * uy],
                     [cx - w * uy, cy + w * ux], [cx, cy]])
    if kind == "z3d":
        ring = [[x, y, rng.uniform(0, 50)] for x, y in star(rng, cx, cy, r, rng.randint(3, 12))[:-1]]
        ring.append(list(ring[0]))
        return poly(ring)
    raise ValueError(kind)


KINDS = ["valid", "bowtie", "figure8", "spike", "repeated", "collinear", "unclosed",
         "hole_outside", "hole_crossing", "hole_touching", "nested_shells", "overlapping_parts",
         "inverted", "degenerate_part", "degenerate_hole", "collection", "sliver", "z3d"]


def big_ring(rng, cx, cy, r, n, kind):
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n
        rr = r * (1.0 if kind != "wavy" else 0.8 + 0.2 * math.sin(37 * a))
        pts.append([cx + rr * math.cos(a), cy + rr * math.sin(a)])
    if kind == "crossing":
        # Swap two neighbours: a small bow-tie on a long ring.
        k = n // 3
        pts[k], pts[k + 1] = pts[k + 1], pts[k]
    pts.append(list(pts[0]))
    return poly(pts)


def generate(out, seed, big):
    rng = random.Random(seed)
    feats = []
    per = 120
    cells = [(i, j) for i in range(60) for j in range(60)]
    n = 0
    for kind in KINDS:
        for _ in range(per):
            i, j = cells[n]
            cx, cy = LON0 + (i + 0.5) * SPACING, LAT0 + (j + 0.5) * SPACING
            g = case(kind, rng, cx, cy)
            props = {"code": f"case-{n:05d}", "kind": kind, "extra": {"n": n, "名称": "测试"}}
            if "tip" in g:
                props["tip"] = g.pop("tip")
            feats.append({"type": "Feature", "properties": props, "geometry": g})
            n += 1
    for b in range(big):
        i, j = cells[n]
        cx, cy = LON0 + (i + 0.5) * SPACING, LAT0 + (j + 0.5) * SPACING
        kind = ["circle", "wavy", "crossing"][b % 3]
        feats.append({"type": "Feature", "properties": {"code": f"case-{n:05d}", "kind": f"big_{kind}"},
                      "geometry": big_ring(rng, cx, cy, SPACING * 0.4, 100_000, kind)})
        n += 1
    with open(out, "w") as f:
        json.dump({"type": "FeatureCollection", "features": feats}, f)
    print(json.dumps({"cases": n, "kinds": dict(Counter(f["properties"]["kind"] for f in feats))}))


def lenient(g):
    """The original as GEOS can build it: rings closed, short rings dropped, Z dropped."""
    t = g["type"]

    def ring(coords):
        pts = [tuple(p[:2]) for p in coords]
        if pts and pts[0] != pts[-1]:
            pts.append(pts[0])
        return pts if len(pts) >= 4 else None

    def polygon(rings):
        rs = [ring(r) for r in rings]
        if not rs or rs[0] is None:
            return None
        return Polygon(rs[0], [r for r in rs[1:] if r is not None])

    if t == "Polygon":
        p = polygon(g["coordinates"])
        return [p] if p is not None else []
    if t == "MultiPolygon":
        return [p for p in (polygon(c) for c in g["coordinates"]) if p is not None]
    if t == "GeometryCollection":
        out = []
        for m in g["geometries"]:
            out.extend(lenient(m))
        return out
    return []  # points and lines: no area


def polygonal_area(v):
    return sum(x.area for x in shapely.get_parts(v) if x.geom_type in ("Polygon", "MultiPolygon"))


def truth_area(g):
    parts = lenient(g)
    if not parts:
        return 0.0
    if len(parts) == 1:
        return polygonal_area(shapely.make_valid(parts[0]))
    # A multipolygon (or the polygons of a collection) is made valid as one
    # geometry (even-odd across parts, as GEOS does). GEOS refuses a part
    # of zero area there ("mixed-dimension"); without such parts it is the
    # same geometry.
    try:
        return polygonal_area(shapely.make_valid(MultiPolygon(parts)))
    except shapely.errors.GEOSException:
        keep = [p for p in parts if polygonal_area(shapely.make_valid(p)) > 0]
        return polygonal_area(shapely.make_valid(MultiPolygon(keep))) if keep else 0.0


def check(orig_path, fixed_path, report_path):
    orig = json.load(open(orig_path))["features"]
    fixed = json.load(open(fixed_path))["features"]
    report = json.load(open(report_path))
    problems = []

    def bad(msg):
        if len(problems) < 60:
            problems.append(msg)

    by_code = {}
    for f in fixed:
        by_code[f["properties"]["code"]] = f
    # Order and properties kept.
    order = [f["properties"]["code"] for f in orig if f["properties"]["code"] in by_code]
    if order != [f["properties"]["code"] for f in fixed]:
        bad("feature order changed")
    errors_by_feature = {}
    for e in report["errors"]:
        errors_by_feature.setdefault(e["feature"], []).append(e)
    stats = Counter()
    worst = 0.0
    worst_m2 = 0.0
    for n, f in enumerate(orig, start=1):
        code = f["properties"]["code"]
        kind = f["properties"]["kind"]
        want = truth_area(f["geometry"])
        got_f = by_code.get(code)
        stats[kind] += 1
        if got_f is not None and got_f["properties"] != f["properties"]:
            bad(f"{code} ({kind}): properties changed")
        if want <= 0:
            if got_f is not None:
                g = shapely.geometry.shape(got_f["geometry"])
                if g.area * M2_PER_DEG2 > 1.0:
                    bad(f"{code} ({kind}): GEOS has no area, wangge kept {g.area * M2_PER_DEG2:.2f} m^2")
            else:
                stats["rejected_like_geos"] += 1
            continue
        if got_f is None:
            reasons = [e["reason"] for e in errors_by_feature.get(n, [])]
            bad(f"{code} ({kind}): GEOS keeps {want * M2_PER_DEG2:.1f} m^2, wangge rejected it: {reasons}")
            continue
        g = shapely.geometry.shape(got_f["geometry"])
        if not g.is_valid:
            bad(f"{code} ({kind}): output invalid for GEOS: {shapely.is_valid_reason(g)}")
        diff = abs(g.area - want)
        tol = max(0.001 * want, 1.0 / M2_PER_DEG2)
        if diff > tol and kind == "spike":
            # Where the spike crosses another edge, GEOS merges its two sides
            # into one boundary edge and keeps the sliver between the spike
            # and that edge; wangge drops the spike as a line of no width.
            # Then the truth is GEOS on the ring without the spike.
            ring = f["geometry"]["coordinates"][0]
            t = f["properties"]["tip"]
            plain = ring[:t] + ring[t + 2:]
            want2 = polygonal_area(shapely.make_valid(Polygon([tuple(p[:2]) for p in plain])))
            crosses = LineString([ring[t - 1][:2], ring[t][:2]]).crosses(LineString([p[:2] for p in plain]))
            if crosses and abs(g.area - want2) <= max(0.001 * want2, 1.0 / M2_PER_DEG2):
                stats["spike_crossing_an_edge_geos_keeps_a_sliver"] += 1
                continue
        if diff > tol:
            bad(f"{code} ({kind}): area {g.area * M2_PER_DEG2:.3f} m^2, GEOS {want * M2_PER_DEG2:.3f} m^2")
        worst = max(worst, diff / want)
        worst_m2 = max(worst_m2, diff * M2_PER_DEG2)
        if kind == "degenerate_part":
            if not any(e.get("part") is not None for e in errors_by_feature.get(n, [])):
                bad(f"{code}: degenerate part dropped without a part-level report")
        if kind == "collection" and not any(e.get("part") is not None
                                            for e in errors_by_feature.get(n, [])):
            bad(f"{code}: collection members dropped without a part-level report")
        stats["kept"] += 1
    print(json.dumps({"cases": len(orig), "by_kind": dict(stats),
                      "worst_relative_area_difference": worst,
                      "worst_area_difference_m2": worst_m2, "problems": problems}))


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        args = sys.argv[3:]
        seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
        big = int(args[args.index("--big") + 1]) if "--big" in args else 3
        generate(sys.argv[2], seed, big)
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4])
