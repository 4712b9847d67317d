"""Our grids against METIS (pymetis, contiguous option on) on the same
building-adjacency graphs, the same number of parts per community.

usage: metis.py GRAPHS.jsonl   (written by `wangge partition --graph-out`)

Per method: balance (share of grids within ±tolerance of the target; worst
grid / mean), contiguity failures (grids whose buildings are not connected
on the graph, and grids whose outline — the union of their buildings'
territories — is more than one polygon per community part), compactness
(Polsby-Popper of the outlines, metres at the community's latitude: median
and 10th percentile), empty grids and time (our grouping step on the given
graph, `balance::partition`, one thread; `pymetis.part_graph`, one thread).
Prints a markdown table, then one JSON object.
"""
import json
import math
import sys
import time
from collections import defaultdict

import numpy as np
import pymetis
import shapely
from shapely.geometry import shape


def frame(lat):
    return (111412.84 * math.cos(math.radians(lat)),
            111132.954 - 559.822 * math.cos(math.radians(2 * lat)))


def polsby_popper(g, mx, my):
    m = shapely.transform(g, lambda c: c * [mx, my])
    return 4 * math.pi * m.area / (m.length ** 2) if m.length > 0 else 0.0


def connected(members, adj):
    members = set(members)
    if not members:
        return True
    start = next(iter(members))
    seen, stack = {start}, [start]
    while stack:
        u = stack.pop()
        for v in adj[u]:
            if v in members and v not in seen:
                seen.add(v)
                stack.append(v)
    return len(seen) == len(members)


def measure(labels, k, rec, adj, cells, comm_parts, mx, my):
    hh = rec["households"]
    members = defaultdict(list)
    for b, g in enumerate(labels):
        members[g].append(b)
    target, tol = rec["target"], rec["tolerance"]
    total = sum(hh)
    out = dict(grids=k, within=0, empty=0, graph_split=0, geom_split=0, pp=[], worst=0.0)
    for g in range(k):
        m = members.get(g, [])
        if not m:
            out["empty"] += 1
            continue
        w = sum(hh[b] for b in m)
        out["within"] += abs(w - target) <= tol * target
        out["worst"] = max(out["worst"], w / (total / k))
        if not connected(m, adj):
            out["graph_split"] += 1
        u = shapely.union_all([cells[b] for b in m])
        polys = list(getattr(u, "geoms", [u]))
        per_part = defaultdict(int)
        for p in polys:
            rp = p.representative_point()
            per_part[next((i for i, cp in enumerate(comm_parts) if cp.contains(rp)), -1)] += 1
        if any(n > 1 for n in per_part.values()):
            out["geom_split"] += 1
        out["pp"].append(polsby_popper(u, mx, my))
    return out


def main():
    recs = [json.loads(l) for l in open(sys.argv[1])]
    agg = {m: dict(communities=0, grids=0, within=0, empty=0, graph_split=0, geom_split=0,
                   pp=[], worst=[], seconds=0.0, metis_errors=0) for m in ("wangge", "metis")}
    for rec in recs:
        k, n = rec["k"], len(rec["households"])
        if k < 2 or n < 2:
            continue
        adj = [[] for _ in range(n)]
        for u, v in rec["edges"]:
            adj[u].append(v)
            adj[v].append(u)
        comm = shape({"type": "MultiPolygon", "coordinates": rec["community_geometry"]})
        comm_parts = list(comm.geoms)
        mx, my = frame(comm.centroid.y)
        cells = [shape({"type": "MultiPolygon", "coordinates": c}) for c in rec["territories"]]
        xadj = np.cumsum([0] + [len(a) for a in adj]).tolist()
        adjncy = [v for a in adj for v in a]
        # METIS needs positive vertex weights: a building with no household
        # weighs 1 (the same for every method's balance below).
        vw = [max(1, h) for h in rec["households"]]
        graph = pymetis.CSRAdjacency(xadj, adjncy)
        t = time.perf_counter()
        try:
            part = pymetis.part_graph(k, graph, vweights=vw, options=pymetis.Options(contig=1))
        except Exception:
            # METIS refuses `contig` on a disconnected graph: partition
            # without it and count.
            agg["metis"]["metis_errors"] += 1
            part = pymetis.part_graph(k, graph, vweights=vw)
        agg["metis"]["seconds"] += time.perf_counter() - t
        metis_labels = list(part.vertex_part)
        agg["wangge"]["seconds"] += rec["group_s"]
        for name, labels in (("wangge", rec["labels"]), ("metis", metis_labels)):
            r = measure(labels, k, rec, adj, cells, comm_parts, mx, my)
            a = agg[name]
            a["communities"] += 1
            for key in ("grids", "within", "empty", "graph_split", "geom_split"):
                a[key] += r[key]
            a["pp"] += r["pp"]
            a["worst"].append(r["worst"])
    rows = {}
    for name, a in agg.items():
        pp = sorted(a["pp"])
        rows[name] = dict(
            communities=a["communities"], grids=a["grids"],
            within_tolerance_pct=100.0 * a["within"] / max(1, a["grids"]),
            worst_over_mean_median=float(np.median(a["worst"])) if a["worst"] else 0.0,
            graph_noncontiguous=a["graph_split"], outline_noncontiguous=a["geom_split"],
            empty_grids=a["empty"],
            polsby_popper_median=pp[len(pp) // 2] if pp else 0.0,
            polsby_popper_p10=pp[len(pp) // 10] if pp else 0.0,
            seconds=a["seconds"], metis_contiguous_failed=a["metis_errors"])
    print("| method | communities | grids | within ±tol | worst/mean (median) | non-contiguous (graph / outline) | empty | Polsby-Popper median / p10 | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['communities']} | {r['grids']} | {r['within_tolerance_pct']:.1f} % | "
              f"{r['worst_over_mean_median']:.3f} | {r['graph_noncontiguous']} / {r['outline_noncontiguous']} | "
              f"{r['empty_grids']} | {r['polsby_popper_median']:.3f} / {r['polsby_popper_p10']:.3f} | {r['seconds']:.3f} |")
    print(json.dumps(rows))


main()
