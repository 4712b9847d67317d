#!/usr/bin/env python3
"""Independent reference values for wangge's WGS84 / GCJ-02 / BD-09 conversions.

Used by tests/it/crs.rs; needs the PyPI packages ``eviltransform`` and
``prcoords`` (``scripts/test`` installs them).

Usage::

    python3 tests/py/crs_truth.py [--mode forward|inverse|inverse-bd] < points.csv

Input: one ``lon,lat`` pair per line (CSV, no header, degrees); blank lines
are skipped. Output: one CSV line per non-blank input line, floats printed with
``repr`` so that they parse back to the exact same double.

``--mode forward`` (default), input WGS84, output 6 columns::

    gcj_lon,gcj_lat,bd_lon,bd_lat,evil_gcj_lon,evil_gcj_lat

  * ``gcj``: ``prcoords.wgs_gcj`` -- the standard public algorithm on the
    Krasovsky ellipsoid (a = 6378245).
  * ``bd``: ``prcoords.wgs_bd`` (= ``gcj_bd(wgs_gcj(...))``).
  * ``evil_gcj``: ``eviltransform.wgs2gcj``. Note that eviltransform 0.1.1
    uses a = 6378137 (WGS84) instead of Krasovsky's 6378245 in the offset's
    metres-to-degrees step, so it differs from the standard algorithm by up
    to ~2e-7 degrees (~2 cm); compare it with a tolerance that allows that.

``--mode inverse``, input GCJ-02, output 4 columns::

    wgs_lon,wgs_lat,evil_wgs_lon,evil_wgs_lat

  * ``wgs``: ``prcoords.gcj_wgs_bored`` (fixed-point iteration, ~1e-8 degrees).
  * ``evil_wgs``: ``eviltransform.gcj2wgs_exact``. Its bisection treats lon
    and lat independently and can lock onto a wrong bracket where one offset
    component is close to zero: over 100,000 random points in China it was
    off by up to 1.74 m (21 points above 0.5 m), so treat it as a sanity
    check, not as ground truth.

``--mode inverse-bd``, input BD-09, output 2 columns::

    wgs_lon,wgs_lat

  from ``prcoords.bd_wgs_bored``.

prcoords' ``*_bored`` inverses apply the GCJ-02 offset everywhere, while its
(and eviltransform's) forward functions leave points outside the rough China
box (``prcoords.sanity_in_china_p``) unchanged; outside that box the inverse
modes therefore undo only the BD-09 step (GCJ-02 = WGS84 there).

Exits with status 3 and a message on stderr if a package is missing, and 2
on malformed input.
"""

import argparse
import sys
import warnings

try:
    import eviltransform
    import prcoords
except ImportError as exc:  # pragma: no cover - reported to the Rust test
    sys.stderr.write(
        f"crs_truth.py: {exc}; install with `pip install eviltransform prcoords` "
        "(scripts/test does this)\n"
    )
    sys.exit(3)


def forward(lon, lat):
    gcj = prcoords.wgs_gcj((lat, lon))
    bd = prcoords.wgs_bd((lat, lon))
    evil_lat, evil_lon = eviltransform.wgs2gcj(lat, lon)
    return (gcj.lon, gcj.lat, bd.lon, bd.lat, evil_lon, evil_lat)


def inverse(lon, lat):
    gcj = prcoords.Coords(lat, lon)
    wgs = prcoords.gcj_wgs_bored(gcj) if prcoords.sanity_in_china_p(gcj) else gcj
    evil_lat, evil_lon = eviltransform.gcj2wgs_exact(lat, lon)
    return (wgs.lon, wgs.lat, evil_lon, evil_lat)


def inverse_bd(lon, lat):
    bd = prcoords.Coords(lat, lon)
    gcj = prcoords.bd_gcj_bored(bd)
    wgs = prcoords.bd_wgs_bored(bd) if prcoords.sanity_in_china_p(gcj) else gcj
    return (wgs.lon, wgs.lat)


MODES = {"forward": forward, "inverse": inverse, "inverse-bd": inverse_bd}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=tuple(MODES), default="forward")
    args = parser.parse_args()
    convert = MODES[args.mode]
    # prcoords warns (and returns the input) for points outside China; that is
    # the behaviour under test, not something to print.
    warnings.simplefilter("ignore")
    out = []
    for number, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            lon, lat = (float(field) for field in line.split(","))
        except ValueError:
            sys.stderr.write(f"crs_truth.py: line {number}: expected 'lon,lat', got {line!r}\n")
            sys.exit(2)
        out.append(",".join(repr(value) for value in convert(lon, lat)))
    sys.stdout.write("".join(row + "\n" for row in out))


if __name__ == "__main__":
    main()
