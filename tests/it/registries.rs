//! Registries as Chinese offices deliver them: GBK, GB18030 and UTF-8 (with
//! a byte-order mark) CSV with 经度/纬度 headers, and `.xlsx` workbooks, all
//! written by Python (`tests/py/registries.py`, its own codecs and openpyxl),
//! never by wangge. Each must give the same rows and grid codes as the
//! UTF-8 file, keep the Chinese fields byte for byte, and reject bad rows
//! with their row numbers and reasons.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::assign::two_grids;
use crate::support::{python_json, s, wangge, wangge_ok};

/// The files the script wrote and what it says is in them.
struct Registries {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    grids: PathBuf,
    truth: Json,
}

impl Registries {
    fn new() -> Registries {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let truth = python_json("registries.py", &[s(&path)]);
        let grids = two_grids(&path);
        Registries {
            _dir: dir,
            dir: path,
            grids,
            truth,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn rows(&self) -> &Vec<Json> {
        self.truth["rows"].as_array().unwrap()
    }
}

/// One `assign --json` run: the summary and the raw output and rejects.
struct Run {
    summary: Json,
    output: Vec<u8>,
    rejects: Vec<u8>,
}

impl Run {
    /// The output's records, decoded as strict UTF-8 (a panic otherwise).
    fn records(bytes: &[u8]) -> Vec<Vec<String>> {
        let text = std::str::from_utf8(bytes).expect("output is UTF-8");
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        r.records()
            .map(|x| x.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    fn out(&self) -> Vec<Vec<String>> {
        Run::records(&self.output)
    }

    fn rej(&self) -> Vec<Vec<String>> {
        Run::records(&self.rejects)
    }

    fn count(&self, key: &str) -> u64 {
        self.summary[key].as_u64().unwrap()
    }

    /// `rows_in = assigned + rejected`, and both files hold those rows.
    fn adds_up(&self) {
        assert_eq!(
            self.count("rows_in"),
            self.count("assigned") + self.count("rejected"),
            "{}",
            self.summary
        );
        assert_eq!(self.out().len() as u64 - 1, self.count("assigned"));
        assert_eq!(self.rej().len() as u64 - 1, self.count("rejected"));
    }
}

fn assign(r: &Registries, input: &str, extra: &[&str]) -> Run {
    let (out, rej) = (
        r.file(&format!("{input}.out.csv")),
        r.file(&format!("{input}.rej.csv")),
    );
    let input = r.file(input);
    let mut args = vec![
        "assign",
        "--grids",
        s(&r.grids),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--rejects",
        s(&rej),
        "--json",
        "--quiet",
    ];
    args.extend(extra);
    let summary: Json = serde_json::from_str(&wangge_ok(&args)).unwrap();
    Run {
        summary,
        output: fs::read(&out).unwrap(),
        rejects: fs::read(&rej).unwrap(),
    }
}

/// Runs `wangge assign` expecting failure; the stderr.
fn assign_fails(r: &Registries, input: &Path, extra: &[&str]) -> String {
    assign_to_fails(r, input, &r.file("fail.out.csv"), extra)
}

/// [`assign_fails`] with the output named.
fn assign_to_fails(r: &Registries, input: &Path, output: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "assign",
        "--grids",
        s(&r.grids),
        "--input",
        s(input),
        "--output",
        s(output),
    ];
    args.extend(extra);
    let out = wangge(&args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks a run against the script's rows (those `keep` selects, in file
/// order): every expected row in the output with its grid and its Chinese
/// fields exactly as Python wrote them, every other in the rejects with its
/// row number (`row_of`) and kind.
fn check_against_truth(
    run: &Run,
    rows: &[&Json],
    row_of: impl Fn(usize, &Json) -> u64,
    what: &str,
) {
    run.adds_up();
    let out = run.out();
    assert_eq!(
        out[0],
        ["id", "姓名", "住址", "经度", "纬度", "grid_code"],
        "{what}"
    );
    let by_id: BTreeMap<&str, &Vec<String>> = out[1..].iter().map(|r| (r[0].as_str(), r)).collect();
    let rej = run.rej();
    let rej_by_id: BTreeMap<&str, &Vec<String>> =
        rej[1..].iter().map(|r| (r[4].as_str(), r)).collect();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (i, t) in rows.iter().enumerate() {
        let id = t["id"].as_str().unwrap();
        match t["grid"].as_str() {
            Some(grid) => {
                let o = by_id
                    .get(id)
                    .unwrap_or_else(|| panic!("{what}: id {id} not in the output"));
                assert_eq!(o[1], t["name"].as_str().unwrap(), "{what}: name of {id}");
                assert_eq!(
                    o[2],
                    t["address"].as_str().unwrap(),
                    "{what}: address of {id}"
                );
                assert_eq!(o[5], grid, "{what}: grid of {id}");
            }
            None => {
                let kind = t["reject"].as_str().unwrap();
                *kinds.entry(kind.to_owned()).or_default() += 1;
                let r = rej_by_id
                    .get(id)
                    .unwrap_or_else(|| panic!("{what}: id {id} not in the rejects"));
                assert_eq!(r[0], row_of(i, t).to_string(), "{what}: row of {id}");
                assert_eq!(r[5], t["name"].as_str().unwrap(), "{what}: name of {id}");
                let expect = match kind {
                    "outside" => "outside every grid",
                    "empty" => "is empty",
                    _ => "is not a number",
                };
                assert!(r[1].contains(expect), "{what}: {id}: {}", r[1]);
            }
        }
    }
    assert_eq!(out.len() - 1 + rej.len() - 1, rows.len(), "{what}");
    let got: BTreeMap<String, u64> =
        serde_json::from_value(run.summary["rejected_by_reason"].clone()).unwrap();
    assert_eq!(got, kinds, "{what}");
}

#[test]
fn gbk_gb18030_and_bom_files_give_the_utf8_rows_and_codes() {
    let r = Registries::new();
    let all: Vec<&Json> = r.rows().iter().collect();
    let gbk: Vec<&Json> = all.iter().copied().filter(|t| t["gbk"] == true).collect();
    assert!(gbk.len() < all.len(), "some names are outside GBK");
    let reference = assign(&r, "utf8.csv", &[]);
    check_against_truth(&reference, &all, |i, _| i as u64 + 1, "utf8.csv");
    assert_eq!(reference.summary["input"]["encoding"], "utf-8");

    for (file, encoding, how) in [
        ("utf8-bom.csv", "utf-8", "byte-order mark"),
        ("gb18030.csv", "gb18030", "is not UTF-8"),
    ] {
        let run = assign(&r, file, &[]);
        // Byte for byte the reference's output and rejects.
        assert_eq!(
            String::from_utf8(run.output.clone()).unwrap(),
            String::from_utf8(reference.output.clone()).unwrap(),
            "{file}"
        );
        assert_eq!(run.rejects, reference.rejects, "{file}");
        check_against_truth(&run, &all, |i, _| i as u64 + 1, file);
        assert_eq!(run.summary["input"]["encoding"], encoding, "{file}");
        assert!(
            run.summary["input"]["encoding_how"]
                .as_str()
                .unwrap()
                .contains(how),
            "{file}: {}",
            run.summary["input"]
        );
    }

    // GBK holds the rows GBK can encode: the reference's rows, less the others.
    let run = assign(&r, "gbk.csv", &[]);
    assert_eq!(run.summary["input"]["encoding"], "gb18030");
    check_against_truth(&run, &gbk, |i, _| i as u64 + 1, "gbk.csv");
    let keep: Vec<&str> = gbk.iter().map(|t| t["id"].as_str().unwrap()).collect();
    let expect: Vec<Vec<String>> = reference
        .out()
        .into_iter()
        .enumerate()
        .filter(|(i, row)| *i == 0 || keep.contains(&row[0].as_str()))
        .map(|(_, row)| row)
        .collect();
    assert_eq!(run.out(), expect);

    // Chinese column names given on the command line.
    let named = assign(&r, "gbk.csv", &["--lon-col", "经度", "--lat-col", "纬度"]);
    assert_eq!(named.output, run.output);
}

#[test]
fn rows_not_valid_in_the_encoding_are_rejected_with_row_and_bytes() {
    let r = Registries::new();
    let bad_row = r.truth["bad_row"].as_u64().unwrap();
    // GBK with a 0xFF byte in one name: that row alone is rejected.
    let run = assign(&r, "gbk-bad.csv", &[]);
    run.adds_up();
    assert_eq!(run.summary["rejected_by_reason"]["encoding"], 1);
    let rej = run.rej();
    let bad = rej.iter().find(|x| x[4] == "99").expect("row 99 rejected");
    assert_eq!(bad[0], bad_row.to_string());
    for part in [
        "姓名 (column 2)",
        "not valid GB18030/GBK",
        "0xff",
        "read as gb18030",
    ] {
        assert!(bad[1].contains(part), "{part}: {}", bad[1]);
    }
    // The rest is what gbk.csv gives, rows after the bad one one further on.
    let gbk: Vec<&Json> = r.rows().iter().filter(|t| t["gbk"] == true).collect();
    let reference = assign(&r, "gbk.csv", &[]);
    assert_eq!(run.output, reference.output);
    for t in &gbk {
        if t["grid"].is_null() {
            let id = t["id"].as_str().unwrap();
            let pos = gbk.iter().position(|x| x["id"] == id).unwrap() as u64 + 1;
            let row = if pos >= bad_row { pos + 1 } else { pos };
            let x = rej.iter().find(|x| x[4] == id).unwrap();
            assert_eq!(x[0], row.to_string(), "row of {id}");
        }
    }

    // UTF-8 for more than the detector reads, then one GBK row: read as
    // UTF-8, the GBK row rejected with a hint, every other row assigned.
    let run = assign(&r, "utf8-late-gbk.csv", &[]);
    run.adds_up();
    let late = r.truth["late_row"].as_u64().unwrap();
    let filler = r.truth["filler_rows"].as_u64().unwrap();
    assert_eq!(run.count("rows_in"), filler + 2);
    assert_eq!(run.count("rejected"), 1);
    assert_eq!(run.summary["input"]["encoding"], "utf-8");
    let rej = run.rej();
    assert_eq!(rej[1][0], late.to_string());
    for part in ["姓名 (column 2)", "not valid UTF-8", "--encoding gbk"] {
        assert!(rej[1][1].contains(part), "{part}: {}", rej[1][1]);
    }
    let out = run.out();
    assert_eq!(out.last().unwrap()[..2], ["last", "李娜"]);

    // import names the file and the row, and its counts add up.
    let store = r.file("s.gpkg");
    let rejects = r.file("import.rejects.ndjson");
    let v: Json = serde_json::from_str(&wangge_ok(&[
        "import",
        s(&store),
        "--layer",
        "places",
        s(&r.file("gbk-bad.csv")),
        "--rejects",
        s(&rejects),
        "--json",
    ]))
    .unwrap();
    let bad_rows = gbk
        .iter()
        .filter(|t| !t["reject"].is_null() && t["reject"] != "outside")
        .count() as u64
        + 1;
    assert_eq!(v["read"].as_u64(), Some(gbk.len() as u64 + 1), "{v}");
    assert_eq!(v["rejected"].as_u64(), Some(bad_rows), "{v}");
    assert_eq!(
        v["read"].as_u64().unwrap(),
        v["imported"].as_u64().unwrap() + v["rejected"].as_u64().unwrap()
    );
    assert_eq!(v["input"]["encoding"], "gb18030");
    let lines: Vec<Json> = fs::read_to_string(&rejects)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = lines
        .iter()
        .find(|l| l["at"] == format!("row {bad_row}"))
        .expect("the bad row in the import rejects");
    assert!(line["file"].as_str().unwrap().ends_with("gbk-bad.csv"));
    assert!(line["reason"].as_str().unwrap().contains("0xff"), "{line}");
}

#[test]
fn encoding_can_be_forced() {
    let r = Registries::new();
    let names =
        |run: &Run| -> Vec<String> { run.out()[1..].iter().map(|x| x[1].clone()).collect() };
    let truth: Vec<String> = serde_json::from_value(r.truth["ambiguous"].clone()).unwrap();
    let as_utf8: Vec<String> =
        serde_json::from_value(r.truth["ambiguous_as_utf8"].clone()).unwrap();
    // These GBK bytes are valid UTF-8 too: detection cannot tell (the
    // documented limit), forcing can.
    let auto = assign(&r, "ambiguous-gbk.csv", &[]);
    assert_eq!(auto.summary["input"]["encoding"], "utf-8");
    assert_eq!(names(&auto), as_utf8);
    for forced in ["gbk", "gb18030"] {
        let run = assign(&r, "ambiguous-gbk.csv", &["--encoding", forced]);
        assert_eq!(names(&run), truth, "{forced}");
        assert_eq!(run.summary["input"]["encoding"], "gb18030");
        assert!(
            run.summary["input"]["encoding_how"]
                .as_str()
                .unwrap()
                .contains("forced"),
        );
    }
    // Forcing UTF-8 on a GBK file: the header is not UTF-8, a clear error.
    let err = assign_fails(&r, &r.file("gbk.csv"), &["--encoding", "utf8"]);
    for part in [
        "gbk.csv",
        "row 0",
        "header",
        "not valid UTF-8",
        "--encoding gbk",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // --encoding does not apply to a workbook.
    let err = assign_fails(&r, &r.file("registry.xlsx"), &["--encoding", "gbk"]);
    assert!(err.contains("--encoding applies to CSV"), "{err}");
}

#[test]
fn xlsx_sheets_give_the_utf8_rows_and_codes() {
    let r = Registries::new();
    let all: Vec<&Json> = r.rows().iter().collect();
    let reference = assign(&r, "utf8.csv", &[]);
    // The first sheet: numbers and text coordinates, a blank row, an empty
    // cell. The output is the UTF-8 file's, byte for byte.
    let run = assign(&r, "registry.xlsx", &[]);
    assert_eq!(
        String::from_utf8(run.output.clone()).unwrap(),
        String::from_utf8(reference.output.clone()).unwrap()
    );
    // Rows are numbered from the header (Excel row 1), blank rows included.
    check_against_truth(
        &run,
        &all,
        |_, t| t["excel_row"].as_u64().unwrap() - 1,
        "registry.xlsx",
    );
    let info = &run.summary["input"];
    assert_eq!(info["format"], "sheet");
    assert_eq!(info["sheet"], "登记表");
    assert_eq!(info["header_row"], 1);
    assert_eq!(info["blank_rows"], 1);

    // The second sheet, named: its header is below a title row.
    let run = assign(&r, "registry.xlsx", &["--sheet", "第二批"]);
    run.adds_up();
    let out = run.out();
    assert_eq!(out[0], ["序号", "姓名", "经度(°)", "纬度(°)", "grid_code"]);
    let expect: Vec<(String, String, String)> = r.truth["second_sheet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["name"].as_str().unwrap().to_owned(),
                t["grid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let got: Vec<(String, String, String)> = out[1..]
        .iter()
        .map(|x| (x[0].clone(), x[1].clone(), x[4].clone()))
        .collect();
    assert_eq!(got, expect);
    assert_eq!(run.summary["input"]["header_row"], 2);
    assert_eq!(run.summary["input"]["rows_above_header"], 1);
    // The same columns named on the command line, units and all.
    let named = assign(
        &r,
        "registry.xlsx",
        &[
            "--sheet",
            "第二批",
            "--lon-col",
            "经度(°)",
            "--lat-col",
            "纬度(°)",
        ],
    );
    assert_eq!(named.output, run.output);

    // An unknown sheet names the sheets there are.
    let err = assign_fails(&r, &r.file("registry.xlsx"), &["--sheet", "第三批"]);
    assert!(
        err.contains("registry.xlsx") && err.contains("no sheet \"第三批\""),
        "{err}"
    );
    for name in r.truth["sheets"].as_array().unwrap() {
        assert!(
            err.contains(&format!("\"{}\"", name.as_str().unwrap())),
            "{err}"
        );
    }
    // The output of a workbook is CSV.
    let out = r.file("o.xlsx");
    let err = assign_to_fails(&r, &r.file("registry.xlsx"), &out, &[]);
    assert!(err.contains("spreadsheet output is not supported"), "{err}");
}

#[test]
fn bom_output_and_imports_keep_chinese_fields() {
    let r = Registries::new();
    let plain = assign(&r, "gbk.csv", &[]);
    let bom = assign(&r, "gbk.csv", &["--bom"]);
    assert_eq!(&bom.output[..3], b"\xef\xbb\xbf");
    assert_eq!(&bom.output[3..], &plain.output[..]);
    assert_eq!(&bom.rejects[..3], b"\xef\xbb\xbf");
    assert_eq!(&bom.rejects[3..], &plain.rejects[..]);

    let places = r.truth["places"].as_array().unwrap();
    let ok = places.iter().filter(|p| p["ok"] == true).count() as u64;
    for file in ["places-gbk.csv", "places.xlsx"] {
        let store = r.file(&format!("{file}.gpkg"));
        let v: Json = serde_json::from_str(&wangge_ok(&[
            "import",
            s(&store),
            "--layer",
            "places",
            s(&r.file(file)),
            "--rejects",
            s(&r.file(&format!("{file}.rejects.ndjson"))),
            "--json",
        ]))
        .unwrap();
        assert_eq!(
            (
                v["read"].as_u64(),
                v["imported"].as_u64(),
                v["rejected"].as_u64()
            ),
            (
                Some(places.len() as u64),
                Some(ok),
                Some(places.len() as u64 - ok)
            ),
            "{file}: {v}"
        );
        let csv_out = r.file(&format!("{file}.export.csv"));
        wangge_ok(&[
            "export",
            s(&store),
            "--layer",
            "places",
            "--out",
            s(&csv_out),
            "--bom",
            "--quiet",
        ]);
        let bytes = fs::read(&csv_out).unwrap();
        assert_eq!(&bytes[..3], b"\xef\xbb\xbf", "{file}");
        let rows = Run::records(&bytes);
        let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
        let (id, kind, name) = (col("id"), col("kind"), col("name"));
        let got: Vec<(String, String, String)> = rows[1..]
            .iter()
            .map(|x| (x[id].clone(), x[kind].clone(), x[name].clone()))
            .collect();
        let expect: Vec<(String, String, String)> = places
            .iter()
            .filter(|p| p["ok"] == true)
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_owned(),
                    p["kind"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, expect, "{file}");
    }
}
