//! CSV files of points with longitude/latitude columns.

use std::fs::File;
use std::path::Path;

use geo_types::Point;

use super::{FeatureError, Location, ReadError};

/// Column names recognised as longitude when none is given (case-insensitive).
pub const LON_NAMES: [&str; 4] = ["lon", "lng", "longitude", "x"];
/// Column names recognised as latitude when none is given (case-insensitive).
pub const LAT_NAMES: [&str; 3] = ["lat", "latitude", "y"];

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
    let find = |given: Option<&str>, names: &[&str], what: &str| -> Result<usize, String> {
        let hit = match given {
            Some(g) => columns.iter().position(|c| c.eq_ignore_ascii_case(g)),
            None => names
                .iter()
                .find_map(|n| columns.iter().position(|c| c.eq_ignore_ascii_case(n))),
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

/// Reads a point CSV, calling `f` with the header and each row or the
/// reason it was rejected. `lon_col`/`lat_col` name the columns; `None` looks for the
/// usual names ([`LON_NAMES`], [`LAT_NAMES`]). Returns the header and the
/// number of data rows seen.
pub fn read_points(
    path: &Path,
    lon_col: Option<&str>,
    lat_col: Option<&str>,
    mut f: impl FnMut(&PointHeader, Result<PointRow, FeatureError>),
) -> Result<(PointHeader, u64), ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let header = reader.headers().map_err(|e| ReadError::Bad {
        path: path.to_owned(),
        location: Location::Row(0),
        reason: format!("cannot read the header: {e}"),
    })?;
    if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
        return Err(ReadError::Empty {
            path: path.to_owned(),
        });
    }
    let columns: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            }
            .trim()
            .to_owned()
        })
        .collect();
    let (lon, lat) =
        coordinate_columns(&columns, lon_col, lat_col).map_err(|reason| ReadError::Bad {
            path: path.to_owned(),
            location: Location::Row(0),
            reason,
        })?;
    let header = PointHeader { columns, lon, lat };

    let mut record = csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        row += 1;
        let err = |reason: String| FeatureError {
            path: path.to_owned(),
            location: Location::Row(row),
            reason,
        };
        match reader.read_record(&mut record) {
            Ok(false) => return Ok((header, row - 1)),
            Ok(true) => f(&header, parse_row(&header, &record, row).map_err(err)),
            Err(e) => {
                // A UTF-8 error affects one record; I/O errors end the file.
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
        s.parse::<f64>()
            .map_err(|_| format!("{} {s:?} is not a number", h.columns[i]))
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
        let r = read_points(file.path(), None, None, |_, x| rows.push(x));
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
