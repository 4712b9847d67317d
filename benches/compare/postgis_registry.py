#!/usr/bin/env python3
"""The full registry assigned against a PostGIS store and against the same
store as a GeoPackage: same machine, same run, same release binary.

    benches/compare/postgis_registry.py [--runs 3] [--threads 2]
                                        [--partition] [--bin target/release/wangge]

Needs the full synthetic registry that `benches/compare/registry.sh --full`
makes in target/compare/registry/full/ (full.gpkg: `synth --scale 1.0` +
`partition`, and persons.csv: its 21.9 M persons). Starts a throwaway
PostgreSQL 15 + PostGIS cluster on a free port (never 5432), copies the
whole store in (`wangge copy`, timed), then runs `wangge assign --store S
--input persons.csv --output O.csv --threads T --no-id-check --json` with S
the GeoPackage and the PostgreSQL URL in turn (round-robin, a fresh process
each), and checks that both wrote the same bytes (output and rejects).
With --partition it first times `wangge partition` of the whole city on
both stores (round-robin, --runs times; the same grids come out, so the
registry's answers stay the same).
Prints a Markdown table on stdout (progress on stderr).
"""

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postgis import Cluster, log  # noqa: E402

FULL = "target/compare/registry/full"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin", default="target/release/wangge")
    ap.add_argument("--partition", action="store_true")
    a = ap.parse_args()
    gpkg, persons = f"{FULL}/full.gpkg", f"{FULL}/persons.csv"
    for f in (gpkg, persons, a.bin):
        if not os.path.exists(f):
            raise SystemExit(f"{f} not found (run benches/compare/registry.sh --full first)")
    out_dir = "target/compare/registry/out"
    os.makedirs(out_dir, exist_ok=True)
    cluster = Cluster()
    try:
        url = cluster.database("registry")
        log(f"wangge copy --from {gpkg} --to PostGIS …")
        t = time.perf_counter()
        subprocess.run([a.bin, "copy", "--from", gpkg, "--to", url, "--quiet"], check=True)
        copy_s = time.perf_counter() - t
        log(f"  {copy_s:.1f} s")
        sides = {"GeoPackage": gpkg, "PostGIS": url}
        parts = {k: [] for k in sides}
        for run in range(1, (a.runs if a.partition else 0) + 1):
            for name, store in sides.items():
                t = time.perf_counter()
                subprocess.run([a.bin, "partition", "--store", store, "--quiet"], check=True)
                parts[name].append(time.perf_counter() - t)
                log(f"run {run} partition {name}: {parts[name][-1]:.2f} s")
        log("reading the registry once (page cache)")
        with open(persons, "rb") as f:
            while f.read(1 << 24):
                pass
        times = {k: [] for k in sides}
        last = {}
        for run in range(1, a.runs + 1):
            for name, store in sides.items():
                out = f"{out_dir}/store-{name}.csv"
                t = time.perf_counter()
                r = subprocess.run([a.bin, "assign", "--store", store, "--input", persons,
                                    "--output", out, "--threads", str(a.threads), "--no-id-check",
                                    "--json"], capture_output=True, text=True)
                wall = time.perf_counter() - t
                if r.returncode != 0:
                    raise SystemExit(f"assign --store {name} failed:\n{r.stderr}")
                js = json.loads(r.stdout)
                times[name].append(wall)
                last[name] = js
                log(f"run {run} {name}: {wall:.2f} s (read_s {js['read_s']:.2f}, "
                    f"total_s {js['total_s']:.2f}); {js['assigned']:,} assigned, "
                    f"{js['rejected']:,} rejected")
        same = all(filecmp.cmp(f"{out_dir}/store-GeoPackage.csv{sfx}",
                               f"{out_dir}/store-PostGIS.csv{sfx}", shallow=False)
                   for sfx in ("", ".rejects.csv"))
    finally:
        cluster.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    g = last["GeoPackage"]
    print("## The full registry against a PostGIS store and a GeoPackage\n")
    flags = " --partition" if a.partition else ""
    print(f"Command: `benches/compare/postgis_registry.py --runs {a.runs} --threads {a.threads}{flags}`\n")
    print(f"`wangge assign --store S --input persons.csv` ({g['rows_in']:,} rows, "
          f"{os.path.getsize(persons) / 1e6:.0f} MB; the store's 4 admin levels and grids give "
          f"every row its code path), {a.threads} threads, median of {a.runs} round-robin runs; "
          f"`wangge copy` of the whole store into PostGIS took {copy_s:.1f} s.\n")
    print("| store | time s | read_s (codes, names, index) | rows/s | ÷ GeoPackage |")
    print("|---|---:|---:|---:|---:|")
    for name in sides:
        js = last[name]
        print(f"| {name} | {med[name]:.2f} | {js['read_s']:.2f} | "
              f"{js['rows_in'] / med[name] / 1e6:.2f} M | {med[name] / med['GeoPackage']:.2f} |")
    if a.partition:
        pm = {k: statistics.median(v) for k, v in parts.items()}
        print(f"\n`wangge partition --store S` of the whole city (22,139 grids), median of {a.runs}:\n")
        print("| store | time s | ÷ GeoPackage |")
        print("|---|---:|---:|")
        for name in sides:
            print(f"| {name} | {pm[name]:.2f} | {pm[name] / pm['GeoPackage']:.2f} |")
    print()
    print("Outputs and rejects byte-identical on both stores: " + ("yes" if same else "**NO**"))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
