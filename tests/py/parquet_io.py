#!/usr/bin/env python3
"""Independent Parquet writer/reader (pyarrow) for the `wangge assign` tests.

    parquet_io.py write OUT.parquet     # the registry below, lon/lat columns
    parquet_io.py write-wkb OUT.parquet # the same points as WKB `geometry`
    parquet_io.py read FILE.parquet     # prints {"columns": [...], "rows": [...]} as JSON

The registry has ids 1..8 over two grids A = [116, 116.01] x [39.9, 39.91]
and B = [116.01, 116.02] x [39.9, 39.91]; rows 3 (null lon), 4 (NaN),
5 (lat 91) and 6 (far east, outside) must be rejected.
"""

import json
import math
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq

LON = [116.005, 116.015, None, float("nan"), 116.005, 116.5, 116.001, 116.019]
LAT = [39.905, 39.905, 39.905, 39.905, 91.0, 39.905, 39.901, 39.909]


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        t = pa.table({
            "id": pa.array(range(1, 9), pa.int64()),
            "name": ["a", "b, c", "d", "e", "f", "g", "h", "i"],
            "lon": pa.array(LON, pa.float64()),
            "lat": pa.array(LAT, pa.float64()),
        })
        pq.write_table(t, path)
    elif mode == "write-wkb":
        geoms = []
        for x, y in zip(LON, LAT):
            geoms.append(None if x is None else struct.pack("<BIdd", 1, 1, x, y))
        t = pa.table({"id": pa.array(range(1, 9), pa.int64()), "geometry": pa.array(geoms, pa.binary())})
        meta = {"version": "1.0.0", "primary_column": "geometry",
                "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"]}}}
        t = t.replace_schema_metadata({"geo": json.dumps(meta)})
        pq.write_table(t, path)
    elif mode == "read":
        t = pq.read_table(path)
        rows = []
        for r in t.to_pylist():
            clean = {}
            for k, v in r.items():
                if isinstance(v, float) and math.isnan(v):
                    v = "NaN"
                elif isinstance(v, bytes):
                    v = v.hex()
                clean[k] = v
            rows.append(clean)
        print(json.dumps({"columns": t.column_names, "rows": rows,
                          "geo": (t.schema.metadata or {}).get(b"geo", b"").decode()}))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
