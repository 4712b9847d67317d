//! Spreadsheets (`.xlsx`; `.xlsm`, `.xls`, `.xlsb` and `.ods` through the
//! same reader) as tables of text records, read with `calamine`.
//!
//! A sheet (the first one, or the one named) is read whole: spreadsheets
//! hold at most 1,048,576 rows. The header is the first row, among the first
//! [`HEADER_SEARCH_ROWS`] non-blank rows, in which the coordinate columns
//! are found, so a title row above the header ("某某社区人口登记表") is
//! skipped (and counted). Cells become text as Excel shows them unformatted:
//! numbers in their shortest exact form (`116.397`, `12` for 12.0), dates as
//! `YYYY-MM-DD[ HH:MM:SS]`, booleans as `TRUE`/`FALSE`, errors as `#N/A`,
//! `#DIV/0!`, … (so a coordinate that is an error is rejected as not a
//! number). Blank rows (every cell empty) are skipped and counted; data rows
//! are numbered by their distance from the header, so row `n` is `n` rows
//! below the header in Excel, whatever blank rows lie between.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use calamine::{Data, Range, Reader};

use super::ReadError;
use super::csv::coordinate_columns;

/// How many non-blank rows from the top of a sheet may hold the header.
pub const HEADER_SEARCH_ROWS: usize = 10;

/// True for paths read as spreadsheets: `.xlsx`, `.xlsm`, `.xls`, `.xlsb`,
/// `.ods`.
#[must_use]
pub fn is_sheet(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["xlsx", "xlsm", "xls", "xlsb", "ods"].contains(&e.to_ascii_lowercase().as_str())
    })
}

/// One sheet of a workbook, its header found.
#[derive(Debug)]
pub struct Sheet {
    /// The file.
    pub path: PathBuf,
    /// The sheet's name.
    pub name: String,
    /// Column names of the header (trimmed; the header ends at its last
    /// non-empty cell).
    pub columns: Vec<String>,
    /// Index of the longitude column.
    pub lon: usize,
    /// Index of the latitude column.
    pub lat: usize,
    /// The header's row as Excel numbers it (1-based).
    pub header_row: u64,
    /// Non-blank rows above the header (titles), skipped.
    pub rows_above_header: u64,
    range: Range<Data>,
    /// Index in `range` of the header row.
    header_index: usize,
}

/// What to read of a workbook.
#[derive(Debug, Clone, Copy, Default)]
pub struct SheetOptions<'a> {
    /// The sheet's name (default: the first sheet).
    pub sheet: Option<&'a str>,
    /// The longitude column (default: the usual names).
    pub lon_col: Option<&'a str>,
    /// The latitude column (default: the usual names).
    pub lat_col: Option<&'a str>,
}

impl Sheet {
    /// Opens a workbook and reads one sheet. Errors name the file (and the
    /// sheet): an unknown sheet lists the sheets there are; a header without
    /// coordinate columns lists the columns found.
    pub fn open(path: &Path, opts: SheetOptions<'_>) -> Result<Sheet, ReadError> {
        let bad = |reason: String| ReadError::Unusable {
            path: path.to_owned(),
            reason,
        };
        if !path.exists() {
            return Err(ReadError::Open {
                path: path.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let mut book = calamine::open_workbook_auto(path)
            .map_err(|e| bad(format!("cannot read the workbook: {e}")))?;
        let names = book.sheet_names();
        let name = match opts.sheet {
            Some(s) => names
                .iter()
                .find(|n| n.as_str() == s)
                .or_else(|| {
                    names
                        .iter()
                        .find(|n| n.trim().eq_ignore_ascii_case(s.trim()))
                })
                .cloned()
                .ok_or_else(|| {
                    bad(format!(
                        "no sheet {s:?}; the sheets are: {}",
                        names
                            .iter()
                            .map(|n| format!("{n:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
            None => names
                .first()
                .cloned()
                .ok_or_else(|| bad("the workbook has no sheets".to_owned()))?,
        };
        let range = book
            .worksheet_range(&name)
            .map_err(|e| bad(format!("sheet {name:?}: cannot read: {e}")))?;
        let Some((top, _)) = range.start() else {
            return Err(ReadError::Empty {
                path: path.to_owned(),
            });
        };
        // The header: the first non-blank row with both coordinate columns.
        let mut first: Option<(usize, Vec<String>, String)> = None;
        let mut above = 0u64;
        let mut found = None;
        for (i, cells) in range.rows().enumerate() {
            if is_blank(cells) {
                continue;
            }
            let columns = header_columns(cells);
            match coordinate_columns(&columns, opts.lon_col, opts.lat_col) {
                Ok((lon, lat)) => {
                    found = Some((i, columns, lon, lat));
                    break;
                }
                Err(reason) => {
                    if first.is_none() {
                        first = Some((i, columns, reason));
                    }
                    above += 1;
                    if above as usize >= HEADER_SEARCH_ROWS {
                        break;
                    }
                }
            }
        }
        let Some((header_index, columns, lon, lat)) = found else {
            let Some((i, _, reason)) = first else {
                return Err(ReadError::Empty {
                    path: path.to_owned(),
                });
            };
            return Err(bad(format!(
                "sheet {name:?}, header in Excel row {}: {reason}",
                u64::from(top) + i as u64 + 1
            )));
        };
        Ok(Sheet {
            path: path.to_owned(),
            name,
            columns,
            lon,
            lat,
            header_row: u64::from(top) + header_index as u64 + 1,
            rows_above_header: above,
            range,
            header_index,
        })
    }

    /// Rows below the header (blank ones included): an upper bound of the
    /// data rows, for progress bars.
    #[must_use]
    pub fn rows_below_header(&self) -> u64 {
        (self.range.height() - self.header_index - 1) as u64
    }

    /// The data rows below the header.
    #[must_use]
    pub fn records(&self) -> SheetRecords<'_> {
        SheetRecords {
            rows: self.range.rows().skip(self.header_index + 1),
            width: self.columns.len(),
            row: 0,
            blank: 0,
        }
    }
}

/// The data rows of a [`Sheet`], as text records.
#[derive(Debug)]
pub struct SheetRecords<'a> {
    rows: std::iter::Skip<calamine::Rows<'a, Data>>,
    width: usize,
    row: u64,
    blank: u64,
}

impl SheetRecords<'_> {
    /// Fills `record` with the next non-blank row's cells (the header's
    /// width, or more when cells beyond it hold values) and returns its
    /// data row number (the header is row 0), or `None` at the end.
    pub fn next_into(&mut self, record: &mut csv::ByteRecord) -> Option<u64> {
        loop {
            let cells = self.rows.next()?;
            self.row += 1;
            if is_blank(cells) {
                self.blank += 1;
                continue;
            }
            let last = cells.iter().rposition(|c| !is_empty(c)).unwrap_or(0);
            let len = self.width.max(last + 1);
            record.clear();
            for i in 0..len {
                match cells.get(i) {
                    Some(c) => record.push_field(cell_text(c).as_bytes()),
                    None => record.push_field(b""),
                }
            }
            return Some(self.row);
        }
    }

    /// Blank rows skipped so far.
    #[must_use]
    pub fn blank_rows(&self) -> u64 {
        self.blank
    }
}

fn is_empty(c: &Data) -> bool {
    match c {
        Data::Empty => true,
        Data::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn is_blank(cells: &[Data]) -> bool {
    cells.iter().all(is_empty)
}

/// The header's names, up to its last non-empty cell.
fn header_columns(cells: &[Data]) -> Vec<String> {
    let end = cells
        .iter()
        .rposition(|c| !is_empty(c))
        .map_or(0, |i| i + 1);
    cells[..end]
        .iter()
        .map(|c| cell_text(c).trim().to_owned())
        .collect()
}

/// A cell as text (see the module documentation).
#[must_use]
pub fn cell_text(c: &Data) -> Cow<'_, str> {
    match c {
        Data::Empty => Cow::Borrowed(""),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => Cow::Borrowed(s),
        // Rust prints the shortest text that reads back as the same f64,
        // without an exponent: 116.397, 12, 0.0000001.
        Data::Float(f) => Cow::Owned(f.to_string()),
        Data::Int(i) => Cow::Owned(i.to_string()),
        Data::Bool(b) => Cow::Borrowed(if *b { "TRUE" } else { "FALSE" }),
        Data::Error(e) => Cow::Owned(e.to_string()),
        Data::DateTime(d) if d.is_datetime() => {
            let (y, mo, day, h, mi, s, ms) = d.to_ymd_hms_milli();
            Cow::Owned(if (h, mi, s, ms) == (0, 0, 0, 0) {
                format!("{y:04}-{mo:02}-{day:02}")
            } else if ms == 0 {
                format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}")
            } else {
                format!("{y:04}-{mo:02}-{day:02} {h:02}:{mi:02}:{s:02}.{ms:03}")
            })
        }
        Data::DateTime(d) => Cow::Owned(d.as_f64().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_excel_shows_them() {
        assert_eq!(cell_text(&Data::Float(116.397)), "116.397");
        assert_eq!(cell_text(&Data::Float(12.0)), "12");
        assert_eq!(cell_text(&Data::Float(-0.5)), "-0.5");
        assert_eq!(cell_text(&Data::Int(7)), "7");
        assert_eq!(cell_text(&Data::String("王芳".into())), "王芳");
        assert_eq!(cell_text(&Data::Error(calamine::CellErrorType::NA)), "#N/A");
        let d = calamine::ExcelDateTime::new(45943.5, calamine::ExcelDateTimeType::DateTime, false);
        assert_eq!(cell_text(&Data::DateTime(d)), "2025-10-13 12:00:00");
    }

    #[test]
    fn sheet_paths() {
        assert!(is_sheet(Path::new("a/登记.XLSX")));
        assert!(!is_sheet(Path::new("a.csv")));
    }
}
