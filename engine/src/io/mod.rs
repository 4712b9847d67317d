//! Reading and writing vector data: GeoJSON (FeatureCollection and
//! newline-delimited), and tables with lon/lat columns: CSV in UTF-8 or
//! GBK/GB18030 ([`encoding`]) and spreadsheets ([`sheet`]).
//!
//! Readers stream and never stop at a bad feature or row: each one is handed
//! to the caller as a [`FeatureError`] naming the file, the feature, line or
//! row and the reason, so callers can write rejects and keep counts that add
//! up. Only a file that cannot be read at all is a [`ReadError`].

pub mod csv;
pub mod encoding;
pub mod geojson;
pub mod records;
pub mod sheet;

use std::fmt;
use std::path::PathBuf;

/// Where in a file something was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// 1-based feature number in a FeatureCollection.
    Feature(usize),
    /// 1-based line number.
    Line(u64),
    /// 1-based line and column.
    LineColumn(u64, u64),
    /// 1-based data row of a CSV file (the header is row 0).
    Row(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Feature(n) => write!(f, "feature {n}"),
            Location::Line(n) => write!(f, "line {n}"),
            Location::LineColumn(l, c) => write!(f, "line {l}, column {c}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// A file that could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened.
    #[error("{path}: cannot open: {source}", path = path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no data.
    #[error("{path}: the file is empty", path = path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file as a whole cannot be used (an unknown sheet, a UTF-16 text
    /// file, a workbook that does not open).
    #[error("{path}: {reason}", path = path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file is malformed at a location (e.g. a JSON syntax error).
    #[error("{path}: {location}: {reason}", path = path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// Where.
        location: Location,
        /// Why.
        reason: String,
    },
}

/// One feature or row that could not be read; reading goes on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {location}: {reason}", path = path.display())]
pub struct FeatureError {
    /// The file.
    pub path: PathBuf,
    /// Where.
    pub location: Location,
    /// Why, as a sentence fragment ("latitude 95 is outside -90..90").
    pub reason: String,
}
