#!/usr/bin/env python3
"""Registries as Chinese offices deliver them, written independently of wangge.

Usage::

    python3 tests/py/registries.py OUTDIR

Writes into OUTDIR, with Python's own codecs and openpyxl:

- ``utf8.csv``: the reference, UTF-8 without a byte-order mark, LF;
  header ``id,姓名,住址,经度,纬度``; every row of ``rows`` (below).
- ``utf8-bom.csv``: the same rows, UTF-8 with a BOM (``utf-8-sig``), CRLF.
- ``gbk.csv``: the rows that GBK can encode (``gbk`` codec), CRLF.
- ``gb18030.csv``: every row (``gb18030`` codec), including names with
  characters outside GBK (four-byte GB18030 sequences).
- ``gbk-bad.csv``: ``gbk.csv`` with one more row whose name holds the byte
  0xFF (never valid in GBK/GB18030), at data row ``bad_row``.
- ``utf8-late-gbk.csv``: valid UTF-8 rows (more than the 4 MiB wangge's
  detector reads after the first non-ASCII byte), then one row encoded in
  GBK at data row ``late_row``.
- ``ambiguous-gbk.csv``: GBK whose bytes happen to be valid UTF-8 too
  (header ``id,name,lon,lat``, names such as 郑伟), so only
  ``--encoding gbk`` reads it right.
- ``registry.xlsx`` (openpyxl): sheet ``登记表`` with the same header and
  rows (ids as numbers, coordinates as numbers or as text, one blank row
  between data rows, an empty longitude cell), and a second sheet
  ``第二批`` whose header ``序号,姓名,经度(°),纬度(°)`` sits below a title
  row.
- ``places-gbk.csv`` / ``places.xlsx``: rows for the ``places`` layer
  (``id,kind,name,经度,纬度``) for ``wangge import``.

Prints one JSON object: the rows as written (``id``, ``name``, ``address``,
``lon``, ``lat`` as text) with the grid each should get (``A`` west of
116.01, ``B`` east of it, inside [116, 116.02] × [39.9, 39.91]; ``null``
when the row must be rejected, with ``reject`` the kind), which rows GBK
can encode, the bad rows' numbers and the names of the other files' rows.
"""

import json
import os
import sys

import openpyxl

HEADER = ["id", "姓名", "住址", "经度", "纬度"]

# (id, name, address, lon, lat): lon/lat as written in the CSV files.
ROWS = [
    ("1", "王芳", "北京市东城区和平里街道1号", "116.005", "39.905"),
    ("2", "李娜", "朝阳区, 望京街道", "116.015", "39.905"),
    ("3", "张伟", '说"你好"的楼', "116.001", "39.909"),
    ("4", "刘洋", "城外", "116.5", "39.905"),
    ("5", "陈静", "纬度写错", "116.005", "北纬39"),
    ("6", "赵磊", "经度空", "", "39.905"),
    ("7", "欧阳娜娜", "海淀区　中关村", "116.019", "39.901"),
    ("8", "周杰", "全角坐标", "１１６．００５", "３９．９０５"),
    ("9", "李𠀀", "生僻字（扩展B）", "116.012", "39.902"),
    ("10", "吴㐀", "生僻字（扩展A）", "116.003", "39.903"),
    ("11", "喆堃", "GBK 扩展字", "116.017", "39.907"),
]

AMBIGUOUS = ["郑伟", "郑英", "郑强", "郑霞", "郑平"]


def half(s):
    """Full-width digits and point to ASCII (the truth's own parser)."""
    return s.translate({0xFF10 + i: 0x30 + i for i in range(10)} | {0xFF0E: 0x2E})


def expected(lon, lat):
    """The grid a point gets, or the reject kind, decided here."""
    if lon.strip() == "" or lat.strip() == "":
        return None, "empty"
    try:
        x, y = float(half(lon)), float(half(lat))
    except ValueError:
        return None, "not_a_number"
    if 39.9 <= y <= 39.91 and 116.0 <= x <= 116.02:
        return ("A" if x < 116.01 else "B"), None
    return None, "outside"


def gbk_ok(row):
    try:
        ",".join(row).encode("gbk")
        return True
    except UnicodeEncodeError:
        return False


def csv_line(fields):
    out = []
    for f in fields:
        if any(c in f for c in ',"\r\n'):
            f = '"' + f.replace('"', '""') + '"'
        out.append(f)
    return ",".join(out)


def write_text(path, rows, encoding, newline="\n"):
    text = newline.join(csv_line(r) for r in [HEADER] + rows) + newline
    with open(path, "wb") as f:
        f.write(text.encode(encoding))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rows = [list(r) for r in ROWS]
    gbk_rows = [r for r in rows if gbk_ok(r)]
    write_text(os.path.join(out, "utf8.csv"), rows, "utf-8")
    write_text(os.path.join(out, "utf8-bom.csv"), rows, "utf-8-sig", "\r\n")
    write_text(os.path.join(out, "gbk.csv"), gbk_rows, "gbk", "\r\n")
    write_text(os.path.join(out, "gb18030.csv"), rows, "gb18030")

    # GBK with one undecodable row after the second data row.
    bad_at = 2
    with open(os.path.join(out, "gbk-bad.csv"), "wb") as f:
        lines = [csv_line(HEADER).encode("gbk")]
        for i, r in enumerate(gbk_rows):
            lines.append(csv_line(r).encode("gbk"))
            if i + 1 == bad_at:
                lines.append(b"99," + "王".encode("gbk") + b"\xff" + "芳".encode("gbk")
                             + b",x,116.005,39.905")
        f.write(b"\r\n".join(lines) + b"\r\n")

    # UTF-8 for more than 4 MiB, then a GBK row.
    filler = []
    size = 0
    i = 0
    while size < 5 * 1024 * 1024:
        i += 1
        r = [f"f{i}", "填充行", "北京市东城区和平里街道某号楼某单元", "116.005", "39.905"]
        filler.append(r)
        size += len(csv_line(r).encode("utf-8")) + 1
    with open(os.path.join(out, "utf8-late-gbk.csv"), "wb") as f:
        f.write((csv_line(HEADER) + "\n").encode("utf-8"))
        for r in filler:
            f.write((csv_line(r) + "\n").encode("utf-8"))
        f.write(csv_line(["late", "王芳", "和平里", "116.005", "39.905"]).encode("gbk") + b"\n")
        f.write(("last,李娜,望京,116.015,39.905\n").encode("utf-8"))
    late_row = len(filler) + 1

    with open(os.path.join(out, "ambiguous-gbk.csv"), "wb") as f:
        text = "id,name,lon,lat\r\n" + "".join(
            f"{k + 1},{n},116.005,39.905\r\n" for k, n in enumerate(AMBIGUOUS))
        data = text.encode("gbk")
        data.decode("utf-8")  # the point of the file: valid UTF-8 as well
        f.write(data)

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "登记表"
    ws.append(HEADER)
    excel_rows = {}
    for k, r in enumerate(rows):
        if k == 3:
            ws.append([])  # a blank row between data rows
        ident, name, addr, lon, lat = r
        cells = [int(ident), name, addr]
        for v in (lon, lat):
            if v == "":
                cells.append(None)  # an empty cell
            elif int(ident) % 2 == 0 and v.isascii():
                cells.append(float(v))  # even rows store numbers
            else:
                cells.append(v)  # odd rows (and full-width text) keep text
        ws.append(cells)
        excel_rows[ident] = ws.max_row
    second = wb.create_sheet("第二批")
    second.append(["第二批登记（2024年）"])
    second.merge_cells("A1:D1")
    second.append(["序号", "姓名", "经度(°)", "纬度(°)"])
    second.append([1, "孙悟空", 116.002, 39.902])
    second.append([2, "猪八戒", "116.018", "39.908"])
    wb.save(os.path.join(out, "registry.xlsx"))

    places = [
        ["P1", "学校", "东城区第一小学", "116.004", "39.904"],
        ["P2", "公园", "地坛公园, 北门", "116.016", "39.906"],
        ["P3", "医院", "坐标缺失", "", "39.906"],
    ]
    places_header = ["id", "kind", "name", "经度", "纬度"]
    with open(os.path.join(out, "places-gbk.csv"), "wb") as f:
        f.write(("\r\n".join(csv_line(r) for r in [places_header] + places) + "\r\n").encode("gbk"))
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "场所"
    ws.append(places_header)
    for r in places:
        ws.append(r[:3] + [float(r[3]) if r[3] else None, float(r[4])])
    wb.save(os.path.join(out, "places.xlsx"))

    truth = []
    for r in rows:
        grid, reject = expected(r[3], r[4])
        truth.append({"id": r[0], "name": r[1], "address": r[2], "lon": r[3], "lat": r[4],
                      "grid": grid, "reject": reject, "gbk": gbk_ok(r),
                      "excel_row": excel_rows[r[0]]})
    print(json.dumps({
        "header": HEADER,
        "rows": truth,
        "bad_row": bad_at + 1,
        "late_row": late_row,
        "filler_rows": len(filler),
        "ambiguous": AMBIGUOUS,
        "ambiguous_as_utf8": [n.encode("gbk").decode("utf-8") for n in AMBIGUOUS],
        "sheets": ["登记表", "第二批"],
        "second_sheet": [{"id": "1", "name": "孙悟空", "grid": "A"},
                         {"id": "2", "name": "猪八戒", "grid": "B"}],
        "places": [{"id": r[0], "kind": r[1], "name": r[2],
                    "ok": r[3] != ""} for r in places],
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
