#!/usr/bin/env python3
"""Registry assignment: `wangge assign` against DuckDB (plain copy and spatial
join) and SedonaDB, for benches/compare/registry.sh.

  registry_peers.py make --grids G --out R.csv --rows N [--seed S] [--outside]
      a registry CSV of N rows as wide as the persons registry, 11 columns
      ``id,lon,lat,name,id_card,household_id,building_id,age_band,registered,
      community_code,grid_code`` (``grid_code`` empty, to be filled). The points
      are inside the grids' union (half uniform over it, half normal around the
      centre, sigma 0.15 degree); with ``--outside`` half the rows (shuffled in)
      are uniform over the grids' bounding box but outside every grid. Written
      in chunks with numpy byte matrices (no per-row Python). Deterministic for
      the same arguments and grids; an existing file whose ``R.csv.meta.json``
      matches is reused.
  registry_peers.py bench --dir D --grids G --input R.csv [--outside R2.csv]
                          [--runs 3] [--threads 2] [--peers duckdb,spatial,sedona]
                          [--bin target/release/wangge] [--cmdline "..."]
      round-robin runs (run 1 of every side, then run 2, ...), each in a fresh
      process; checks every output's row count against wangge's `assigned`;
      prints the Markdown table on stdout (progress on stderr) and writes
      D/result.json.
  registry_peers.py once PEER --grids G --input R --output O --threads T [--explain]
      one run of one peer (duckdb, spatial or sedona) in this process; prints a
      JSON object on stdout (with --explain: the plan, nothing is written).
"""

import argparse
import glob
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

TAG = "[registry]"
CENTRE = (116.397, 39.909)
SIGMA = 0.15
CHUNK = 250_000
GEN_VERSION = 2  # bump when the generator's output changes

HEADER = "id,lon,lat,name,id_card,household_id,building_id,age_band,registered,community_code,grid_code"

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红娥玲芬燕彬建国志文辉力宇浩然涵欣怡梓轩诺思雨晨"
         "阳佳琪博鑫瑞婷雪梅琳淑珍凤秀英慧颖嘉俊豪泽昊睿子一航宁安")
# Beijing district codes (the first 6 digits of an identity number / community code)
DISTRICTS = (110101, 110102, 110105, 110106, 110107, 110108, 110109, 110111,
             110112, 110113, 110114, 110115, 110116, 110117, 110118, 110119)
AGE_BANDS = ("0-14", "15-24", "25-34", "35-44", "45-59", "60-74", "75+")
AGE_EDGES = (15, 25, 35, 45, 60, 75)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = b"10X98765432"


def log(msg):
    print(f"{TAG} {msg}", file=sys.stderr, flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 22), b""):
            h.update(b)
    return h.hexdigest()


def median(xs):
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------- make


def load_grids(path):
    import shapely

    with open(path, encoding="utf-8") as f:
        feats = json.load(f)["features"]
    geoms = shapely.from_geojson([json.dumps(ft["geometry"]) for ft in feats])
    codes = [str(ft["properties"]["code"]) for ft in feats]
    return geoms, codes


# (column, width of its slot); variable-width values are padded with NUL bytes,
# which are squeezed out when a chunk is written.
SLOTS = (("id", 11), ("lon", 16), ("lat", 15), ("name", 9), ("id_card", 18), ("household_id", 19),
         ("building_id", 18), ("age_band", 5), ("registered", 1), ("community_code", 12), ("grid_code", 0))


def digits(np, values, n):
    """(len(values), n) uint8 ASCII digits of values (zero-padded)."""
    p10 = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(values, dtype=np.int64)[:, None] // p10) % 10 + 48).astype(np.uint8)


def chunk_bytes(rng, np, first_id, lon, lat):
    """The CSV bytes of len(lon) rows numbered from first_id."""
    n = len(lon)
    pos, off = {}, 0
    template = bytearray()
    for name, w in SLOTS:
        pos[name] = off
        template += b"\0" * w + b","
        off += w + 1
    template[-1] = ord("\n")
    for name, at, ch in (("id", 0, "P"), ("lon", 3, "."), ("lat", 2, "."), ("household_id", 0, "H"),
                         ("household_id", 13, "-"), ("building_id", 0, "B"), ("building_id", 13, "-")):
        template[pos[name] + at] = ord(ch)
    mat = np.tile(np.frombuffer(bytes(template), dtype=np.uint8), (n, 1))

    def put(name, at, block):
        mat[:, pos[name] + at:pos[name] + at + block.shape[1]] = block

    put("id", 1, digits(np, np.arange(first_id, first_id + n), 10))
    # lon / lat with 12 decimals (lon has 3 integer digits, lat 2 inside Beijing)
    for key, vals, ndig in (("lon", lon, 3), ("lat", lat, 2)):
        scaled = np.rint(vals * 1e12).astype(np.int64)
        put(key, 0, digits(np, scaled // 10**12, ndig))
        put(key, ndig + 1, digits(np, scaled % 10**12, 12))
    # name: surname + 1 or 2 given characters (3 UTF-8 bytes each)
    sur = np.frombuffer(SURNAMES.encode("utf-8"), dtype=np.uint8).reshape(-1, 3)
    giv = np.frombuffer(GIVEN.encode("utf-8"), dtype=np.uint8).reshape(-1, 3)
    put("name", 0, sur[rng.integers(0, len(sur), n)])
    put("name", 3, giv[rng.integers(0, len(giv), n)])
    third = giv[rng.integers(0, len(giv), n)]
    third[rng.random(n) < 0.3] = 0  # 30 % of the names have two characters
    put("name", 6, third)
    # id_card: district + birth date + sequence + ISO 7064 MOD 11-2 check character
    district = np.asarray(DISTRICTS, dtype=np.int64)[rng.integers(0, len(DISTRICTS), n)]
    age = np.minimum(rng.exponential(38.0, n), 99.0).astype(np.int64)  # at the 2020 census
    birth = (2020 - age) * 10**4 + rng.integers(1, 13, n) * 100 + rng.integers(1, 29, n)
    body = np.concatenate([digits(np, district, 6), digits(np, birth, 8),
                           digits(np, rng.integers(0, 1000, n), 3)], axis=1)
    s = (body.astype(np.int64) - 48) @ np.asarray(ID_WEIGHTS, dtype=np.int64)
    put("id_card", 0, body)
    put("id_card", 17, np.frombuffer(ID_CHECK, dtype=np.uint8)[s % 11][:, None])
    # community code (district + street + community), household and building ids in it
    community = digits(np, district * 10**6 + rng.integers(1, 31, n) * 1000 + rng.integers(1, 41, n), 12)
    put("household_id", 1, community)
    put("household_id", 14, digits(np, rng.integers(1, 3000, n), 5))
    put("building_id", 1, community)
    put("building_id", 14, digits(np, rng.integers(1, 200, n), 4))
    put("community_code", 0, community)
    # age band, registered (户籍) flag
    bands = np.zeros((len(AGE_BANDS), 5), dtype=np.uint8)
    for i, b in enumerate(AGE_BANDS):
        bands[i, :len(b)] = np.frombuffer(b.encode(), dtype=np.uint8)
    put("age_band", 0, bands[np.searchsorted(AGE_EDGES, age, side="right")])
    put("registered", 0, np.where(rng.random(n) < 0.62, ord("1"), ord("0")).astype(np.uint8)[:, None])

    flat = mat.ravel()
    return flat[flat != 0].tobytes()


def cmd_make(a):
    import numpy as np
    import shapely

    meta_path = a.out + ".meta.json"
    want = {"generator": GEN_VERSION, "rows": a.rows, "seed": a.seed, "outside": a.outside,
            "grids_sha256": sha256(a.grids), "header": HEADER}
    if os.path.exists(a.out) and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            have = json.load(f)
        if {k: have.get(k) for k in want} == want and os.path.getsize(a.out) == have.get("bytes"):
            log(f"reusing {a.out} ({a.rows:,} rows, {have['bytes'] / 1e6:.0f} MB)")
            return
    t0 = time.perf_counter()
    geoms, _ = load_grids(a.grids)
    area = shapely.union_all(geoms)
    # Points stay 1e-6 degree clear of the outline either way, so that inside or
    # outside does not depend on how an engine treats the boundary.
    inner, outer = shapely.buffer(area, -1e-6), shapely.buffer(area, 1e-6)
    shapely.prepare(inner)
    shapely.prepare(outer)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    rng = np.random.default_rng(a.seed)

    def draw(n, kind):
        """n points: 'area' (half uniform, half around the centre, inside the union)
        or 'outside' (uniform over the bounding box, inside no grid)."""
        xs, ys, got = [], [], 0
        while got < n:
            m = max(2 * (n - got), 1024)
            if kind == "area":
                k = m // 2
                x = np.concatenate([rng.uniform(x0, x1, k), rng.normal(CENTRE[0], SIGMA, m - k)])
                y = np.concatenate([rng.uniform(y0, y1, k), rng.normal(CENTRE[1], SIGMA, m - k)])
                keep = shapely.contains_xy(inner, x, y)
            else:
                x, y = rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)
                keep = ~shapely.intersects_xy(outer, x, y)
            xs.append(x[keep])
            ys.append(y[keep])
            got += int(keep.sum())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]

    tmp = a.out + ".part"
    inside_rows = 0
    with open(tmp, "wb") as out:
        out.write(HEADER.encode() + b"\n")
        done = 0
        while done < a.rows:
            n = min(CHUNK, a.rows - done)
            if a.outside:
                k = n // 2 + (1 if (n % 2 and done // CHUNK % 2) else 0)
                xi, yi = draw(k, "area")
                xo, yo = draw(n - k, "outside")
                perm = rng.permutation(n)
                lon, lat = np.concatenate([xi, xo])[perm], np.concatenate([yi, yo])[perm]
                inside_rows += k
            else:
                lon, lat = draw(n, "area")
                inside_rows += n
            out.write(chunk_bytes(rng, np, done + 1, lon, lat))
            done += n
            if done % (20 * CHUNK) == 0 or done == a.rows:
                log(f"  {done:,} / {a.rows:,} rows ({time.perf_counter() - t0:.1f} s)")
    os.replace(tmp, a.out)
    have = dict(want, bytes=os.path.getsize(a.out), inside_rows=inside_rows,
                seconds=round(time.perf_counter() - t0, 2))
    with open(meta_path, "w", encoding="utf-8") as f:
        json.dump(have, f, indent=1)
        f.write("\n")
    log(f"wrote {a.out}: {a.rows:,} rows ({inside_rows:,} inside), {have['bytes'] / 1e6:.0f} MB, "
        f"{have['bytes'] / max(a.rows, 1):.0f} bytes/row, in {have['seconds']:.1f} s")


# --------------------------------------------------------------------------- peers (one run)

SPATIAL_EXT = "duckdb_ext/extensions/v{v}/linux_amd64/spatial.duckdb_extension"


def q(path):
    return "'" + os.path.abspath(path).replace("'", "''") + "'"


def spatial_extension_path():
    import duckdb
    import duckdb_ext  # namespace package of duckdb-ext-spatial

    rel = SPATIAL_EXT.format(v=duckdb.__version__)
    for base in list(duckdb_ext.__path__):
        p = os.path.join(os.path.dirname(base), rel)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"no {rel} under {list(duckdb_ext.__path__)}")


def duckdb_sql(a):
    src = f"read_csv({q(a.input)})"
    if a.peer == "duckdb":
        return f"SELECT * FROM {src}"
    return (f"SELECT r.* REPLACE (g.code AS grid_code) FROM {src} r "
            f"JOIN grids g ON ST_Contains(g.geom, ST_Point(r.lon, r.lat))")


def once_duckdb(a):
    import duckdb

    res = {"peer": a.peer, "version": duckdb.__version__}
    t0 = time.perf_counter()
    if a.peer == "duckdb":
        con = duckdb.connect(config={"threads": a.threads})
    else:
        ext = spatial_extension_path()
        con = duckdb.connect(config={"allow_unsigned_extensions": "true", "threads": a.threads})
        con.execute(f"LOAD {q(ext)}")
        res["extension"] = ext
        res["spatial_version"] = con.execute(
            "SELECT extension_version FROM duckdb_extensions() WHERE extension_name = 'spatial'").fetchone()[0]
    res["threads_setting"] = con.execute("SELECT current_setting('threads')").fetchone()[0]
    res["setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if a.peer == "spatial":
        con.execute(f"CREATE TABLE grids AS SELECT code, geom FROM ST_Read({q(a.grids)})")
        res["grids"] = con.execute("SELECT count(*) FROM grids").fetchone()[0]
    res["load_s"] = time.perf_counter() - t0
    sql = duckdb_sql(a)
    if a.explain:
        res["plan"] = "\n".join(r[1] for r in con.execute("EXPLAIN " + sql).fetchall())
        return res
    copy = f"COPY ({sql}) TO {q(a.output)} (FORMAT csv, HEADER true)"
    res["sql"] = copy
    t0 = time.perf_counter()
    res["rows_reported"] = con.execute(copy).fetchone()[0]
    res["query_s"] = time.perf_counter() - t0
    res["output_format"] = "CSV"
    return res


def once_sedona(a):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PROJ / GDAL are not needed here
        import pyarrow as pa
        import sedonadb
        import shapely

    res = {"peer": "sedona", "version": sedonadb.__version__}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd = sedonadb.connect()
    try:
        sd.sql(f"SET datafusion.execution.target_partitions = {int(a.threads)}").execute()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        res["threads_note"] = f"could not set target_partitions: {e}"
    got = sd.sql("SELECT value FROM information_schema.df_settings "
                 "WHERE name = 'datafusion.execution.target_partitions'").to_arrow_table().to_pylist()
    res["target_partitions"] = got[0]["value"] if got else None
    res["tokio_worker_threads_env"] = os.environ.get("TOKIO_WORKER_THREADS")
    res["setup_s"] = time.perf_counter() - t0

    # the grids: GeoJSON -> shapely -> WKB in an Arrow table (no GDAL in the wheel)
    t0 = time.perf_counter()
    geoms, codes = load_grids(a.grids)
    tbl = pa.table({"code": pa.array(codes, pa.string()),
                    "wkb": pa.array(shapely.to_wkb(geoms).tolist(), pa.binary())})
    sd.create_data_frame(tbl).to_view("grids_wkb", overwrite=True)
    sd.sql("SELECT code, ST_GeomFromWKB(wkb) AS geom FROM grids_wkb").to_memtable().to_view("grids", overwrite=True)
    res["grids"] = len(codes)
    res["load_s"] = time.perf_counter() - t0

    sd.read.csv(os.path.abspath(a.input)).to_view("r", overwrite=True)
    # The grids first: SpatialJoinExec builds its index on the left side, and
    # SedonaDB 0.5.0 does not swap a CSV scan (no statistics) to the probe side,
    # so `FROM r JOIN grids` would buffer and index every registry row instead of
    # streaming the registry past an index of the 20,000 grids.
    sql = ("SELECT r.* REPLACE (g.code AS grid_code) FROM grids g "
           "JOIN r ON ST_Contains(g.geom, ST_Point(r.lon, r.lat))")
    res["sql"] = sql
    df = sd.sql(sql)
    if a.explain:
        rows = df.explain().to_arrow_table().to_pylist()
        res["plan"] = "\n".join(f"{r['plan_type']}:\n{r['plan']}" for r in rows)
        return res
    t0 = time.perf_counter()
    try:
        df.to_csv(os.path.abspath(a.output))
        res["output_format"] = "CSV"
    except Exception as e:  # noqa: BLE001 - fall back to Parquet, say so
        res["csv_error"] = str(e).splitlines()[0][:300]
        pq = a.output[: -len(".csv")] + ".parquet" if a.output.endswith(".csv") else a.output + ".parquet"
        t0 = time.perf_counter()
        df.to_parquet(os.path.abspath(pq), single_file_output=True)
        res["output_format"] = "Parquet"
        res["output"] = pq
    res["query_s"] = time.perf_counter() - t0
    try:
        names = [open(f"/proc/self/task/{t}/comm", encoding="utf-8").read().strip()
                 for t in os.listdir("/proc/self/task")]
        res["tokio_workers"] = sum(1 for n in names if n.startswith("tokio-rt-worker"))
    except OSError:
        pass
    return res


def cmd_once(a):
    res = once_sedona(a) if a.peer == "sedona" else once_duckdb(a)
    print(json.dumps(res))


# --------------------------------------------------------------------------- bench


def count_rows(path):
    """Data rows of a CSV file (or of every CSV file in a directory), or of a Parquet file."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    files = sorted(glob.glob(os.path.join(path, "*.csv"))) if os.path.isdir(path) else [path]
    total = 0
    for fp in files:
        n, last = 0, b"\n"
        with open(fp, "rb") as f:
            for b in iter(lambda: f.read(1 << 24), b""):
                n += b.count(b"\n")
                last = b[-1:]
        if last != b"\n":
            n += 1
        total += max(n - 1, 0)  # the header
    return total


def remove(path):
    if os.path.isdir(path):
        for fp in glob.glob(os.path.join(path, "*")):
            os.remove(fp)
        os.rmdir(path)
    elif os.path.exists(path):
        os.remove(path)


def compare_codes(wangge_out, outputs):
    """Per peer: ids whose grid_code differs from wangge's output (a full outer join
    on id, in DuckDB; not timed), or the reason it could not be checked."""
    try:
        import duckdb
    except ImportError as e:
        return {s: f"duckdb not importable ({e})" for s in outputs}
    con = duckdb.connect(config={"threads": 2})

    def src(path):
        if path.endswith(".parquet"):
            return f"(SELECT CAST(id AS VARCHAR) AS id, CAST(grid_code AS VARCHAR) AS grid_code FROM read_parquet({q(path)}))"
        return f"read_csv({q(path)}, all_varchar = true)"

    res = {}
    t0 = time.perf_counter()
    for s, path in outputs.items():
        try:
            ids, differ = con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE w.grid_code IS DISTINCT FROM p.grid_code) "
                f"FROM (SELECT id, grid_code FROM {src(wangge_out)}) w "
                f"FULL JOIN (SELECT id, grid_code FROM {src(path)}) p ON w.id = p.id").fetchone()
            ex = con.execute(
                f"SELECT coalesce(w.id, p.id), w.grid_code, p.grid_code "
                f"FROM (SELECT id, grid_code FROM {src(wangge_out)}) w "
                f"FULL JOIN (SELECT id, grid_code FROM {src(path)}) p ON w.id = p.id "
                f"WHERE w.grid_code IS DISTINCT FROM p.grid_code LIMIT 3").fetchall() if differ else []
            res[s] = {"ids": ids, "differ": differ,
                      "examples": [f"{i}: wangge {wc} / {s} {pc}" for i, wc, pc in ex]}
        except Exception as e:  # noqa: BLE001 - reported
            res[s] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    log(f"grid_code check against wangge's output: {time.perf_counter() - t0:.1f} s (not timed)")
    return res


def cpu_of_children():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def parse_json(text):
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text[text.index("{"):])


def probe_peer(peer):
    """None when the peer's packages are importable, else the reason."""
    code = {"duckdb": "import duckdb",
            "spatial": "import duckdb, duckdb_ext",
            "sedona": "import warnings; warnings.simplefilter('ignore'); import sedonadb, pyarrow, shapely"}[peer]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or ["import failed"])[-1]
    return None


PLAN_MARKERS = {"spatial": ("SPATIAL_JOIN",), "sedona": ("SpatialJoinExec",)}
JOIN_WORDS = ("JOIN", "Join")


class Bench:
    def __init__(self, a):
        self.a = a
        self.out_dir = os.path.join(a.dir, "out")
        os.makedirs(self.out_dir, exist_ok=True)
        self.env = dict(os.environ, TOKIO_WORKER_THREADS=str(a.threads))

    def run_wangge(self, inp, tag):
        out = os.path.join(self.out_dir, f"wangge-{tag}.csv")
        rej = out + ".rejects.csv"
        cmd = [self.a.bin, "assign", "--grids", self.a.grids, "--input", inp, "--output", out,
               "--threads", str(self.a.threads), "--no-id-check", "--json"]
        remove(out)
        remove(rej)
        c0, t0 = cpu_of_children(), time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, cpu_of_children() - c0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr.strip()[-2000:]}")
        js = parse_json(p.stdout)
        return {"time_s": wall, "wall_s": wall, "cpu_s": cpu, "json": js, "cmd": " ".join(cmd), "output": out,
                "rejects": rej, "output_format": "CSV"}

    def run_peer(self, peer, inp, explain=False):
        out = os.path.join(self.out_dir, f"{peer}.csv")
        cmd = [sys.executable, os.path.abspath(__file__), "once", peer, "--grids", self.a.grids,
               "--input", inp, "--output", out, "--threads", str(self.a.threads)]
        if explain:
            cmd.append("--explain")
        else:
            remove(out)
            remove(out[: -len(".csv")] + ".parquet")
        c0, t0 = cpu_of_children(), time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        wall, cpu = time.perf_counter() - t0, cpu_of_children() - c0
        if p.returncode != 0:
            err = p.stderr.strip().splitlines()
            raise RuntimeError(f"{peer} failed (exit {p.returncode}): " + (err[-1] if err else "no message"))
        js = parse_json(p.stdout)
        js.setdefault("output", out)
        js["wall_s"] = wall
        js["cpu_s"] = cpu
        if not explain:
            js["time_s"] = js["load_s"] + js["query_s"]
        return js

    def check_plan(self, peer, plan):
        """The line of the plan naming the join operator (and whether it is the spatial one)."""
        lines = [ln.strip(" │┌┐└┘─") for ln in plan.splitlines()]
        for marker in PLAN_MARKERS[peer]:
            hit = [ln.strip() for ln in lines if marker in ln]
            if hit:
                return True, hit[0]
        joins = [ln.strip() for ln in lines if any(w in ln for w in JOIN_WORDS)]
        return False, (joins[0] if joins else "(no join operator found)")


def cmd_bench(a):
    b = Bench(a)
    peers = [p for p in a.peers.split(",") if p]
    for p in peers:
        if p not in ("duckdb", "spatial", "sedona"):
            raise SystemExit(f"unknown peer {p!r} (choose from duckdb,spatial,sedona)")
    with open(a.input + ".meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    rows = meta["rows"]
    sides = ["wangge"] + peers
    info = {s: {} for s in sides}
    unavailable = {}
    times = {s: [] for s in sides}
    walls = {s: [] for s in sides}
    loads = {s: [] for s in sides}
    cpus = {s: [] for s in sides}
    last = {}

    for p in peers:
        why = probe_peer(p)
        if why:
            unavailable[p] = f"not installed ({why})"
            log(f"{p}: unavailable: {unavailable[p]}")
            continue
        if p in PLAN_MARKERS:
            try:
                js = b.run_peer(p, a.input, explain=True)
            except RuntimeError as e:
                unavailable[p] = str(e)[:500]
                log(f"{p}: unavailable: {unavailable[p]}")
                continue
            ok, line = b.check_plan(p, js["plan"])
            info[p]["plan_ok"], info[p]["plan_line"] = ok, line
            if ok:
                log(f"{p}: EXPLAIN plans the spatial join operator: {line}")
            else:
                log(f"{p}: WARNING: EXPLAIN shows no {'/'.join(PLAN_MARKERS[p])}; join operator: {line}")
                log("    plan:\n    " + "\n    ".join(js["plan"].splitlines()))
    live = [s for s in sides if s not in unavailable]

    log("reading the input once so that every side starts with it in the page cache")
    count_rows(a.input)
    if a.outside:
        count_rows(a.outside)
    outside_times = []
    for run in range(1, a.runs + 1):
        for s in list(live):
            try:
                r = b.run_wangge(a.input, "inside") if s == "wangge" else b.run_peer(s, a.input)
            except RuntimeError as e:
                if s == "wangge":
                    raise SystemExit(f"{TAG} {e}")
                unavailable[s] = str(e)[:500]
                live.remove(s)
                log(f"{s}: failed, dropped: {unavailable[s]}")
                continue
            times[s].append(r["time_s"])
            walls[s].append(r["wall_s"])
            cpus[s].append(r["cpu_s"])
            loads[s].append(r["json"].get("read_s", 0.0) if s == "wangge" else r["load_s"])
            last[s] = r
            if s == "wangge":
                js = r["json"]
                log(f"run {run} wangge: {r['wall_s']:.2f} s wall (total_s {js['total_s']:.2f}, read_s "
                    f"{js.get('read_s', 0):.2f}, parse_s {js.get('parse_s', 0):.2f}, locate_s "
                    f"{js.get('locate_s', 0):.2f}); {js['assigned']:,} assigned, {js['rejected']:,} rejected")
            else:
                log(f"run {run} {s}: {r['time_s']:.2f} s (grids {r['load_s']:.2f} + query {r['query_s']:.2f}; "
                    f"process wall {r['wall_s']:.2f} s), "
                    f"output {r['output_format']}")
        if a.outside and "wangge" in live:
            r = b.run_wangge(a.outside, "outside")
            outside_times.append(r["time_s"])
            last["wangge-outside"] = r
            js = r["json"]
            log(f"run {run} wangge (half outside): {r['wall_s']:.2f} s wall (total_s {js['total_s']:.2f}, "
                f"locate_s {js.get('locate_s', 0):.2f}); {js['assigned']:,} assigned, {js['rejected']:,} rejected")

    # row counts from the files of the last run
    wj = last["wangge"]["json"]
    assigned = wj["assigned"]
    mismatches = []
    counts = {"wangge": count_rows(last["wangge"]["output"])}
    if counts["wangge"] != assigned:
        mismatches.append(f"wangge wrote {counts['wangge']:,} rows but reported {assigned:,} assigned")
    if assigned != meta.get("inside_rows", rows):
        mismatches.append(f"wangge assigned {assigned:,} rows of {rows:,}; the generator put "
                          f"{meta.get('inside_rows', rows):,} inside the grids")
    for s in live:
        if s == "wangge":
            continue
        counts[s] = count_rows(last[s]["output"])
        want = rows if s == "duckdb" else assigned
        what = "rows_in" if s == "duckdb" else "wangge's assigned"
        if counts[s] != want:
            mismatches.append(f"{s} wrote {counts[s]:,} rows, {what} is {want:,}")
    if a.outside and "wangge-outside" in last:
        oj = last["wangge-outside"]["json"]
        with open(a.outside + ".meta.json", encoding="utf-8") as f:
            ometa = json.load(f)
        if oj["assigned"] != ometa["inside_rows"]:
            mismatches.append(f"wangge on the half-outside file assigned {oj['assigned']:,}, "
                              f"the generator put {ometa['inside_rows']:,} inside")
    code_check = {}
    joins = [s for s in live if s in ("spatial", "sedona")]
    if joins:
        code_check = compare_codes(last["wangge"]["output"], {s: last[s]["output"] for s in joins})
        for s, c in code_check.items():
            if isinstance(c, dict) and c["differ"]:
                mismatches.append(f"{s}: {c['differ']:,} ids whose grid_code differs from wangge's "
                                  f"(or missing on one side), e.g. {c['examples']}")
            elif isinstance(c, dict):
                log(f"{s}: every id has the same grid_code as in wangge's output ({c['ids']:,} ids)")
            else:
                log(f"{s}: grid_code check not done: {c}")
    for m in mismatches:
        log("!" * 20 + f" MISMATCH: {m}")

    result = {"cmdline": a.cmdline, "rows": rows, "bytes": meta["bytes"], "runs": a.runs,
              "grids_label": meta.get("grids_label", "20,000 Voronoi grids"),
              "threads": a.threads, "cpus": os.cpu_count(), "times": times, "walls": walls, "loads": loads, "cpu": cpus,
              "outside_times": outside_times, "code_check": code_check,
              "counts": counts, "mismatches": mismatches, "unavailable": unavailable, "info": info,
              "last": {k: {kk: vv for kk, vv in v.items() if kk != "plan"} for k, v in last.items()}}
    with open(os.path.join(a.dir, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    report(result, peers)


def fmt_rate(n, s):
    if not s:
        return "-"
    r = n / s
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.0f} k"


NAMES = {"wangge": "wangge assign",
         "duckdb": "DuckDB plain copy (no spatial work)",
         "spatial": "DuckDB spatial: ST_Contains join",
         "sedona": "SedonaDB: ST_Contains join"}


def report(res, peers):
    rows, runs = res["rows"], res["runs"]
    last, times, counts = res["last"], res["times"], res["counts"]
    med = {s: median(t) for s, t in times.items() if t}
    wg, cp = med.get("wangge"), med.get("duckdb")
    print(f"## Registry assignment: {rows:,} rows ({res['bytes'] / 1e6:.0f} MB CSV, 11 columns), "
          f"{res.get('grids_label', '20,000 Voronoi grids')}, {res['threads']} threads\n")
    print(f"Command: `{res['cmdline']}`\n")
    print(f"Median of {runs} run{'s' if runs > 1 else ''} of each side (round-robin, a fresh process per run) "
          f"on a machine with {res['cpus']} CPUs. *time* includes reading the grids (*grids s*); "
          "for the Python peers it is measured in-process (interpreter start, imports and connect are only "
          "in *process wall*).\n")
    print("| method | threads | output | rows out | grids s | time s | rows/s | peer ÷ wangge | ÷ DuckDB copy "
          "| process wall s | process CPU s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in ["wangge"] + peers:
        if s not in med:
            if s in res["unavailable"]:
                print(f"| {NAMES[s]} | - | - | - | - | - | - | unavailable | - | - | - |")
            continue
        r = last[s]
        if s == "wangge":
            thr = f"--threads {res['threads']}"
        elif s == "sedona":
            thr = f"target_partitions={r.get('target_partitions')}"
            if r.get("tokio_worker_threads_env"):
                thr += f", TOKIO_WORKER_THREADS={r['tokio_worker_threads_env']}"
            if r.get("threads_note"):
                thr += f" ({r['threads_note']})"
        else:
            thr = f"threads={r.get('threads_setting')}"
        t = med[s]
        ratio = "1.00" if s == "wangge" else (f"{t / wg:.2f}" if wg else "-")
        vs_copy = f"{t / cp:.2f}" if cp else "-"
        print(f"| {NAMES[s]} | {thr} | {r['output_format']} | {counts.get(s, 0):,} | "
              f"{median(res['loads'][s]):.2f} | {t:.2f} | {fmt_rate(rows, t)} | {ratio} | {vs_copy} | "
              f"{median(res['walls'][s]):.2f} | {median(res['cpu'][s]):.2f} |")
    print()
    if res["outside_times"] and wg:
        o = median(res["outside_times"])
        oj = last["wangge-outside"]["json"]
        print(f"wangge on a file of the same size with half the rows outside every grid: {o:.2f} s "
              f"({fmt_rate(rows, o)} rows/s; {oj['assigned']:,} assigned, {oj['rejected']:,} rejected with "
              f"their nearest grid) — **outside/inside time ratio {o / wg:.2f}**.\n")
    if res["mismatches"]:
        print("**MISMATCH:**\n")
        for m in res["mismatches"]:
            print(f"- **{m}**")
        print()
    else:
        checked = [s for s, c in res.get("code_check", {}).items() if isinstance(c, dict)]
        print(f"Row counts agree: every join peer wrote wangge's {last['wangge']['json']['assigned']:,} "
              f"assigned rows; the plain copy wrote all {rows:,}."
              + (f" Every id has the same grid_code in {', '.join(NAMES[s] for s in checked)} as in wangge's "
                 "output (full join on id, in DuckDB)." if checked else "") + "\n")
    if res["unavailable"]:
        print("Unavailable:\n")
        for p, why in res["unavailable"].items():
            print(f"- {NAMES.get(p, p)}: {why}")
        print()
    notes = []
    wj = last["wangge"]["json"]
    notes.append(f"wangge: `{last['wangge']['cmd']}`; time = process wall time (GeoJSON read, validation "
                 f"and index build: read_s {wj.get('read_s', 0):.2f} of which build_s {wj.get('build_s', 0):.2f}; "
                 f"then total_s {wj['total_s']:.2f} with parse_s {wj.get('parse_s', 0):.2f}, locate_s "
                 f"{wj.get('locate_s', 0):.2f}, in the last run). It copies every input field verbatim and "
                 "fills the `grid_code` column in place (11 columns out).")
    for p in peers:
        if p not in med:
            continue
        r = last[p]
        ver = f"DuckDB {r['version']}" if p != "sedona" else f"SedonaDB {r['version']}"
        if p == "spatial":
            ver += f", spatial extension {r.get('spatial_version')}"
        extra = ""
        if p in res["info"] and "plan_line" in res["info"][p]:
            ok = res["info"][p]["plan_ok"]
            extra = (f" EXPLAIN: `{res['info'][p]['plan_line']}`"
                     + ("" if ok else " — **not the spatial join operator**") + ".")
        if r.get("csv_error"):
            extra += f" CSV writing failed ({r['csv_error']}); wrote Parquet instead."
        if p == "sedona":
            how = (f"`{r['sql']}` over `sd.read.csv(R.csv)` and the grids as an Arrow table "
                   "(GeoJSON → shapely → WKB, `ST_GeomFromWKB`, materialised with `to_memtable`), then "
                   "`DataFrame.to_csv`")
        elif p == "spatial":
            how = (f"grids `CREATE TABLE grids AS SELECT code, geom FROM ST_Read(grids.geojson)`, then "
                   f"`{r['sql']}`")
        else:
            how = f"`{r['sql']}`"
        notes.append(f"{NAMES[p]} ({ver}): {how}. In the last run: grids {r['load_s']:.2f} s + query "
                     f"{r['query_s']:.2f} s.{extra}")
    print("Notes:\n")
    for n in notes:
        print(f"- {n}")
    tok = ""
    if last.get("sedona", {}).get("tokio_workers") is not None:
        tok = f": {last['sedona']['tokio_workers']} named tokio-rt-worker at the end of the last run"
    print(f"- Threads: wangge `--threads {res['threads']}` sizes its worker pool (its CSV reader runs on a "
          f"thread of its own); DuckDB `threads={res['threads']}`; SedonaDB `SET "
          f"datafusion.execution.target_partitions = {res['threads']}` and TOKIO_WORKER_THREADS="
          f"{res['threads']} in its environment (tokio's worker pool; file I/O also runs on tokio's blocking "
          f"pool, threads of the same name{tok}). The machine has {res['cpus']} CPUs; *process CPU s* is the "
          "user + system time of the side's process (at most CPUs × wall).")
    print("- Join peers write `r.* REPLACE (g.code AS grid_code)`: the same 11 columns as wangge (values "
          "re-formatted by the engine, e.g. trailing zeros of the coordinates dropped).")
    print("- peer ÷ wangge > 1 means wangge is faster; ÷ DuckDB copy is the side's time over the plain "
          "copy's (parsing and formatting the same CSV, no spatial work).")


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--grids", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--rows", type=int, default=10_000_000)
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--outside", action="store_true")
    bn = sub.add_parser("bench")
    bn.add_argument("--dir", required=True)
    bn.add_argument("--grids", required=True)
    bn.add_argument("--input", required=True)
    bn.add_argument("--outside")
    bn.add_argument("--runs", type=int, default=3)
    bn.add_argument("--threads", type=int, default=2)
    bn.add_argument("--peers", default="duckdb,spatial,sedona")
    bn.add_argument("--bin", default="target/release/wangge")
    bn.add_argument("--cmdline", default=" ".join(sys.argv))
    o = sub.add_parser("once")
    o.add_argument("peer", choices=("duckdb", "spatial", "sedona"))
    o.add_argument("--grids", required=True)
    o.add_argument("--input", required=True)
    o.add_argument("--output", required=True)
    o.add_argument("--threads", type=int, default=2)
    o.add_argument("--explain", action="store_true")
    a = ap.parse_args()
    if a.cmd == "make":
        cmd_make(a)
    elif a.cmd == "bench":
        if a.runs < 1:
            ap.error("--runs must be at least 1")
        cmd_bench(a)
    else:
        cmd_once(a)


if __name__ == "__main__":
    main()
