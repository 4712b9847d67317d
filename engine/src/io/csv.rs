//! Tables of points with longitude/latitude columns: CSV files (UTF-8 or
//! GBK/GB18030, [`super::encoding`]) and spreadsheets ([`super::sheet`]).

use std::fs::File;
use std::path::Path;

use geo_types::Point;
use serde::Serialize;

use super::encoding::{self, Detected, Encoding};
use super::sheet::{self, Sheet, SheetOptions};
use super::{FeatureError, Location, ReadError};

/// Column names recognised as longitude when none is given (ASCII
/// case-insensitive; a unit in brackets after the name, as in `经度(°)` or
/// `lon (WGS84)`, is ignored).
pub const LON_NAMES: [&str; 6] = ["lon", "lng", "longitude", "x", "经度", "东经"];
/// Column names recognised as latitude when none is given (as
/// [`LON_NAMES`]).
pub const LAT_NAMES: [&str; 5] = ["lat", "latitude", "y", "纬度", "北纬"];

/// One good row of a point CSV.
#[derive(Debug, Clone)]
pub struct PointRow {
    /// 1-based data row number (the header is row 0).
    pub row: u64,
    /// The position, checked to be finite and in range.
    pub point: Point<f64>,
    /// Every field of the row, as written.
    pub fields: csv::StringRecord,
}

/// The header of a point CSV and where its coordinates are.
#[derive(Debug, Clone)]
pub struct PointHeader {
    /// Column names (a UTF-8 byte-order mark on the first one removed).
    pub columns: Vec<String>,
    /// Index of the longitude column.
    pub lon: usize,
    /// Index of the latitude column.
    pub lat: usize,
}

/// Parses a coordinate as written: a decimal number, also with full-width
/// digits, sign and point (`１１６．４`, as Chinese input methods type them)
/// or a trailing degree sign (`116.4°`). Surrounding whitespace is ignored.
#[must_use]
pub fn parse_coordinate(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    let half: String = s
        .trim_end_matches('°')
        .trim_end()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '．' => '.',
            '－' | '−' => '-',
            '＋' => '+',
            _ => c,
        })
        .collect();
    half.parse::<f64>().ok()
}

/// Checks a longitude/latitude pair; the reason says what is wrong and hints
/// at swapped columns when that is the likely cause.
pub fn check_lon_lat(lon: f64, lat: f64) -> Result<(), String> {
    if !lon.is_finite() || !lat.is_finite() {
        return Err(format!(
            "coordinate is not a finite number (lon {lon}, lat {lat})"
        ));
    }
    if !(-90.0..=90.0).contains(&lat) {
        let hint = if (-90.0..=90.0).contains(&lon) && (-180.0..=180.0).contains(&lat) {
            "; longitude and latitude look swapped"
        } else {
            ""
        };
        return Err(format!("latitude {lat} is outside -90..90{hint}"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is outside -180..180"));
    }
    Ok(())
}

/// Finds the longitude and latitude columns of a header: the named ones, or
/// else the first of the usual names ([`LON_NAMES`], [`LAT_NAMES`]),
/// case-insensitively. The error names the columns that were found.
pub fn coordinate_columns(
    columns: &[String],
    lon_col: Option<&str>,
    lat_col: Option<&str>,
) -> Result<(usize, usize), String> {
    let bare: Vec<String> = columns.iter().map(|c| bare_name(c)).collect();
    let find = |given: Option<&str>, names: &[&str], what: &str| -> Result<usize, String> {
        let exact = |n: &str| {
            columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(n.trim()))
        };
        let loose = |n: &str| {
            let n = bare_name(n);
            bare.iter().position(|c| *c == n)
        };
        let hit = match given {
            Some(g) => exact(g).or_else(|| loose(g)),
            None => names
                .iter()
                .find_map(|n| exact(n))
                .or_else(|| names.iter().find_map(|n| loose(n))),
        };
        hit.ok_or_else(|| {
            format!(
                "no {what} column {}; columns found: {}",
                given.map_or_else(
                    || format!("(looked for {})", names.join(", ")),
                    |g| format!("{g:?}")
                ),
                columns.join(", ")
            )
        })
    };
    Ok((
        find(lon_col, &LON_NAMES, "longitude")?,
        find(lat_col, &LAT_NAMES, "latitude")?,
    ))
}

/// A column name without its unit: trimmed, ASCII lower case, without a
/// trailing bracketed part (`(°)`, `（度）`, `[deg]`, `【WGS84】`) or degree
/// sign.
fn bare_name(name: &str) -> String {
    let mut s = name.trim();
    loop {
        let before = s;
        for (open, close) in [('(', ')'), ('（', '）'), ('[', ']'), ('【', '】')] {
            if let Some(rest) = s.strip_suffix(close)
                && let Some(i) = rest.rfind(open)
            {
                s = rest[..i].trim_end();
            }
        }
        s = s.trim_end_matches('°').trim_end();
        if s == before {
            break;
        }
    }
    s.to_ascii_lowercase()
}

/// What to read of a point table and how.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions<'a> {
    /// The longitude column (default: the usual names, [`LON_NAMES`]).
    pub lon_col: Option<&'a str>,
    /// The latitude column (default: the usual names, [`LAT_NAMES`]).
    pub lat_col: Option<&'a str>,
    /// The encoding of a CSV file (default: detected, see
    /// [`encoding::detect`]).
    pub encoding: Option<Encoding>,
    /// The sheet of a spreadsheet (default: the first).
    pub sheet: Option<&'a str>,
}

/// How a table was read: its format, a CSV's encoding, a sheet's name and
/// header row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// `csv` or `sheet`.
    pub format: &'static str,
    /// A CSV's encoding (`utf-8` or `gb18030`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<&'static str>,
    /// Why that encoding (forced, byte-order mark, or what detection saw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_how: Option<String>,
    /// A spreadsheet's sheet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    /// A spreadsheet's header row, as Excel numbers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_row: Option<u64>,
    /// Non-blank rows above a spreadsheet's header (titles), skipped.
    pub rows_above_header: u64,
    /// Blank spreadsheet rows (every cell empty) skipped.
    pub blank_rows: u64,
}

impl TableInfo {
    /// The info of a CSV read in `d`.
    #[must_use]
    pub fn csv(d: &Detected) -> TableInfo {
        TableInfo {
            format: "csv",
            encoding: Some(d.encoding.name()),
            encoding_how: Some(d.how.clone()),
            ..TableInfo::default()
        }
    }

    /// The info of a sheet (its blank rows still to be counted).
    #[must_use]
    pub fn sheet(s: &Sheet) -> TableInfo {
        TableInfo {
            format: "sheet",
            sheet: Some(s.name.clone()),
            header_row: Some(s.header_row),
            rows_above_header: s.rows_above_header,
            ..TableInfo::default()
        }
    }
}

/// What [`read_points`] read.
#[derive(Debug, Clone)]
pub struct PointsRead {
    /// The header.
    pub header: PointHeader,
    /// How the table was read.
    pub info: TableInfo,
    /// Data rows seen (each handed to the callback once).
    pub rows: u64,
}

/// The column names of a CSV header record decoded in `d`; errors name the
/// file.
pub fn csv_columns(
    path: &Path,
    d: &Detected,
    header: &csv::ByteRecord,
) -> Result<Vec<String>, ReadError> {
    encoding::decode_header(d.encoding, header).map_err(|e| ReadError::Bad {
        path: path.to_owned(),
        location: Location::Row(0),
        reason: format!("the header's {}; {}", e.reason(&[]), d.hint()),
    })
}

/// Reads a point table — CSV (UTF-8 or GBK/GB18030, see [`encoding`]) or a
/// spreadsheet ([`sheet::is_sheet`]) — calling `f` with the header and each
/// row or the reason it was rejected (a row not valid in the file's
/// encoding among them). Only a file that cannot be read, or a header
/// without the coordinate columns, is an error.
pub fn read_points(
    path: &Path,
    opts: &TableOptions<'_>,
    mut f: impl FnMut(&PointHeader, Result<PointRow, FeatureError>),
) -> Result<PointsRead, ReadError> {
    if sheet::is_sheet(path) {
        let s = Sheet::open(
            path,
            SheetOptions {
                sheet: opts.sheet,
                lon_col: opts.lon_col,
                lat_col: opts.lat_col,
            },
        )?;
        let mut info = TableInfo::sheet(&s);
        let header = PointHeader {
            columns: s.columns.clone(),
            lon: s.lon,
            lat: s.lat,
        };
        let mut records = s.records();
        let mut record = csv::ByteRecord::new();
        let mut n = 0u64;
        while let Some(row) = records.next_into(&mut record) {
            n += 1;
            // Cells are text already.
            let rec = csv::StringRecord::from_byte_record(record.clone()).unwrap_or_else(|e| {
                csv::StringRecord::from_byte_record_lossy(e.into_byte_record())
            });
            let r = parse_row(&header, &rec, row).map_err(|reason| FeatureError {
                path: path.to_owned(),
                location: Location::Row(row),
                reason: format!("sheet {:?}: {reason}", s.name),
            });
            f(&header, r);
        }
        info.blank_rows = records.blank_rows();
        return Ok(PointsRead {
            header,
            info,
            rows: n,
        });
    }
    let mut file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    let detected = encoding::detect(&mut file, path, opts.encoding)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let mut header = csv::ByteRecord::new();
    let got = reader
        .read_byte_record(&mut header)
        .map_err(|e| ReadError::Bad {
            path: path.to_owned(),
            location: Location::Row(0),
            reason: format!("cannot read the header: {e}"),
        })?;
    if !got || (header.len() == 1 && header[0].iter().all(u8::is_ascii_whitespace)) {
        return Err(ReadError::Empty {
            path: path.to_owned(),
        });
    }
    let columns = csv_columns(path, &detected, &header)?;
    let (lon, lat) =
        coordinate_columns(&columns, opts.lon_col, opts.lat_col).map_err(|reason| {
            ReadError::Bad {
                path: path.to_owned(),
                location: Location::Row(0),
                reason,
            }
        })?;
    let header = PointHeader { columns, lon, lat };
    let info = TableInfo::csv(&detected);

    let mut record = csv::ByteRecord::new();
    let mut decoder = encoding::Decoder::default();
    let mut row = 0u64;
    loop {
        row += 1;
        let err = |reason: String| FeatureError {
            path: path.to_owned(),
            location: Location::Row(row),
            reason,
        };
        match reader.read_byte_record(&mut record) {
            Ok(false) => {
                return Ok(PointsRead {
                    header,
                    info,
                    rows: row - 1,
                });
            }
            Ok(true) => {
                let r = match encoding::decode_record(detected.encoding, &mut record, &mut decoder)
                {
                    Err(e) => Err(err(format!(
                        "{}; {}",
                        e.reason(&header.columns),
                        detected.hint()
                    ))),
                    Ok(()) => match csv::StringRecord::from_byte_record(record.clone()) {
                        Ok(rec) => parse_row(&header, &rec, row).map_err(err),
                        // Decoded records are UTF-8.
                        Err(e) => Err(err(format!("unreadable row: {e}"))),
                    },
                };
                f(&header, r);
            }
            Err(e) => {
                // I/O errors end the file; a malformed record is one row.
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(ReadError::Bad {
                        path: path.to_owned(),
                        location: Location::Row(row),
                        reason: e.to_string(),
                    });
                }
                f(&header, Err(err(format!("unreadable row: {e}"))));
            }
        }
    }
}

fn parse_row(h: &PointHeader, record: &csv::StringRecord, row: u64) -> Result<PointRow, String> {
    if record.len() != h.columns.len() {
        return Err(format!(
            "has {} field(s), the header has {}",
            record.len(),
            h.columns.len()
        ));
    }
    let num = |i: usize| -> Result<f64, String> {
        let s = record[i].trim();
        if s.is_empty() {
            return Err(format!("{} is empty", h.columns[i]));
        }
        parse_coordinate(s).ok_or_else(|| format!("{} {s:?} is not a number", h.columns[i]))
    };
    let (lon, lat) = (num(h.lon)?, num(h.lat)?);
    check_lon_lat(lon, lat)?;
    Ok(PointRow {
        row,
        point: Point::new(lon, lat),
        fields: record.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Read = (
        Result<(PointHeader, u64), ReadError>,
        Vec<Result<PointRow, FeatureError>>,
    );

    fn read(text: &str) -> Read {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let mut rows = Vec::new();
        let r = read_points(file.path(), &TableOptions::default(), |_, x| rows.push(x))
            .map(|r| (r.header, r.rows));
        (r, rows)
    }

    #[test]
    fn good_and_bad_rows_add_up() {
        let (r, rows) = read(
            "\u{feff}id,lon,lat,note\r\n1,116.4,39.9,\"a, b\"\r\n2,abc,39.9,x\r\n3,116.4,95,x\r\n4,39.9,116.4,x\r\n5,116.4\r\n6,NaN,39.9,x\r\n7,,39.9,x\r\n8,116.5,40.0,last",
        );
        let (h, n) = r.unwrap();
        assert_eq!(h.columns[0], "id");
        assert_eq!(n, 8);
        assert_eq!(rows.len(), 8);
        let ok: Vec<u64> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|p| p.row))
            .collect();
        assert_eq!(ok, vec![1, 8]);
        assert_eq!(&rows[0].as_ref().unwrap().fields[3], "a, b");
        let reason = |i: usize| rows[i].as_ref().unwrap_err().reason.clone();
        assert!(reason(1).contains("not a number"), "{}", reason(1));
        assert!(reason(2).contains("outside -90..90"), "{}", reason(2));
        assert!(reason(3).contains("swapped"), "{}", reason(3));
        assert!(reason(4).contains("field"), "{}", reason(4));
        assert!(reason(5).contains("finite"), "{}", reason(5));
        assert!(reason(6).contains("empty"), "{}", reason(6));
    }

    #[test]
    fn missing_coordinate_columns_name_what_was_found() {
        let (r, _) = read("a,b,c\n1,2,3\n");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("columns found: a, b, c"), "{e}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let (r, _) = read("");
        assert!(matches!(
            r,
            Err(ReadError::Empty { .. }) | Err(ReadError::Bad { .. })
        ));
    }
}
