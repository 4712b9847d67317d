//! Grid layers and batch assignment: which grid (and community, street,
//! district) holds each point of a registry.
//!
//! [`GridLayer`] is a polygon layer with codes and names behind a
//! [`GridIndex`]. [`assign_csv`] streams a CSV of any size (UTF-8 or
//! GBK/GB18030, decoded in the parallel stage so UTF-8 is only checked) or
//! a spreadsheet through it:
//! a reader thread parses records in chunks, the rayon pool locates each
//! chunk in parallel and formats its output, and the calling thread writes
//! the chunks in order, so memory is bounded by a few chunks whatever the
//! size of a CSV input (a spreadsheet, at most 1,048,576 rows, is read
//! whole). Every row ends up in the output or in the rejects file with
//! its row number and reason: `rows_in == assigned + rejected`.

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use geo_types::{Geometry, MultiPolygon};
use rayon::prelude::*;
use serde::Serialize;

use crate::crs::Crs;
use crate::index::{GridIndex, IndexStats};
use crate::io::csv::{TableInfo, check_lon_lat, coordinate_columns, csv_columns, parse_coordinate};
use crate::io::encoding::{self, Encoding};
use crate::io::geojson::read_geojson;
use crate::io::records::{Block, Records, push_field, split_fields, unquote};
use crate::io::sheet::{self, Sheet, SheetOptions, SheetRecords};
use crate::io::{FeatureError, ReadError};
use crate::model::Layer;
use crate::progress::Progress;
use crate::store::{AnyStore, Reads, StoreError};
use crate::validate::{Areas, PolygonInput, ValidationReport, validate_polygons_with};

mod parquet;
pub use parquet::assign_parquet;

/// True for paths the Parquet reader and writer handle (`.parquet`,
/// `.geoparquet`, `.pq`).
#[must_use]
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["parquet", "geoparquet", "pq"].contains(&e.to_ascii_lowercase().as_str()))
}

/// The column of the duplicate-id check: the named one (an error names the
/// columns found when it is missing), else `id` when present; none when the
/// check is off.
fn id_column(columns: &[String], opts: &AssignOptions) -> Result<Option<usize>, String> {
    if !opts.check_ids {
        return Ok(None);
    }
    match &opts.id_col {
        Some(c) => columns
            .iter()
            .position(|x| x.eq_ignore_ascii_case(c))
            .map(Some)
            .ok_or_else(|| format!("no id column {c:?}; columns found: {}", columns.join(", "))),
        None => Ok(columns.iter().position(|x| x.eq_ignore_ascii_case("id"))),
    }
}

/// The columns a rejects file starts with, before the row's own fields.
const REJECT_COLUMNS: [&str; 4] = ["row", "reason", "nearest_code", "distance_m"];

/// Opens an input file, naming it in the error.
fn open_input(path: &Path) -> Result<File, ReadError> {
    File::open(path).map_err(|source| ReadError::Open {
        path: path.to_owned(),
        source,
    })
}

/// Creates an output file, naming it in the error.
fn create_output(path: &Path) -> Result<File, AssignError> {
    File::create(path).map_err(|source| AssignError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Where each output code column goes: the position of an input column of
/// that name (filled in place), else the next position after the input's
/// columns (appended, in order).
fn code_slots(columns: &[String], names: &[&str]) -> Vec<usize> {
    let mut appended = columns.len();
    names
        .iter()
        .map(|n| {
            columns.iter().position(|c| c == n).unwrap_or_else(|| {
                appended += 1;
                appended - 1
            })
        })
        .collect()
}

impl AssignSummary {
    fn new(output: &Path, rejects: &Path) -> AssignSummary {
        AssignSummary {
            output: output.to_owned(),
            rejects: rejects.to_owned(),
            ..AssignSummary::default()
        }
    }

    /// Counts repeated ids and sets the run's totals.
    fn finish(&mut self, ids: &mut [(u64, u64)], t0: Instant) {
        duplicates(ids, self);
        self.total_s = t0.elapsed().as_secs_f64();
        self.rows_per_s = self.rows_in as f64 / self.total_s.max(1e-9);
    }
}

/// The hasher of the duplicate-id check.
fn id_hasher() -> BuildHasherDefault<DefaultHasher> {
    BuildHasherDefault::<DefaultHasher>::default()
}

/// Counts repeated ids from `(hash of id, row)` pairs: equal hashes in a run
/// repeat the first row's id (64-bit hashes: a false match is ~1e-5 likely
/// at 20 M rows).
fn duplicates(ids: &mut [(u64, u64)], summary: &mut AssignSummary) {
    ids.par_sort_unstable();
    for run in ids.chunk_by(|a, b| a.0 == b.0) {
        for &(_, row) in &run[1..] {
            summary.duplicate_ids += 1;
            if summary.duplicate_examples.len() < 10 {
                summary.duplicate_examples.push((row, run[0].1));
            }
        }
    }
    summary.duplicate_examples.sort_unstable();
}

/// A polygon layer with codes and names, indexed for point queries.
#[derive(Debug)]
pub struct GridLayer {
    codes: Vec<String>,
    names: Vec<String>,
    index: GridIndex,
    build_s: f64,
}

/// One polygon of a [`GridLayer`] before indexing.
#[derive(Debug, Clone)]
pub struct GridPolygon {
    /// The code (decides the winner where polygons overlap: lower wins).
    pub code: String,
    /// The display name.
    pub name: String,
    /// The area.
    pub geometry: MultiPolygon<f64>,
}

impl GridLayer {
    /// Indexes polygons. They are ordered by code, so the result does not
    /// depend on the input order and overlaps go to the lower code.
    #[must_use]
    pub fn new(polygons: Vec<GridPolygon>) -> GridLayer {
        Self::build(polygons, false)
    }

    /// Indexes a coverage (polygons whose interiors do not overlap) with the
    /// faster [`GridIndex::new_coverage`].
    #[must_use]
    pub fn new_coverage(polygons: Vec<GridPolygon>) -> GridLayer {
        Self::build(polygons, true)
    }

    /// [`GridLayer::new_coverage`] over shared polygons, which stay with
    /// the caller (a server keeps them to rebuild the layer after an edit
    /// without reading the store again).
    #[must_use]
    pub fn new_coverage_shared(polygons: &[Arc<GridPolygon>]) -> GridLayer {
        Self::build_from(polygons, true)
    }

    fn build(polygons: Vec<GridPolygon>, coverage: bool) -> GridLayer {
        Self::build_from(&polygons, coverage)
    }

    fn build_from<P: std::borrow::Borrow<GridPolygon>>(
        polygons: &[P],
        coverage: bool,
    ) -> GridLayer {
        let t = Instant::now();
        let mut sorted: Vec<&GridPolygon> = polygons.iter().map(P::borrow).collect();
        sorted.sort_by(|a, b| a.code.cmp(&b.code));
        let geoms: Vec<&MultiPolygon<f64>> = sorted.iter().map(|p| &p.geometry).collect();
        let index = if coverage {
            GridIndex::new_coverage(&geoms)
        } else {
            GridIndex::new(&geoms)
        };
        GridLayer {
            codes: sorted.iter().map(|p| p.code.clone()).collect(),
            names: sorted.iter().map(|p| p.name.clone()).collect(),
            index,
            build_s: t.elapsed().as_secs_f64(),
        }
    }

    /// Reads an admin or grid layer (`code`, `name`, polygon) of a store.
    pub fn from_store(store: &impl Reads, layer: Layer) -> Result<GridLayer, StoreError> {
        // A store's levels are coverages (validated and repaired on import,
        // noded by the partitioner): the faster coverage build applies.
        Ok(GridLayer::new_coverage(Self::polygons_of(
            store, layer, None,
        )?))
    }

    /// The polygons of an admin or grid layer of a store (`code`, `name`,
    /// geometry; a feature that is not a polygon is an empty one): every
    /// one, or those whose box meets `region`, through the spatial index.
    pub fn polygons_of(
        store: &impl Reads,
        layer: Layer,
        region: Option<geo_types::Rect<f64>>,
    ) -> Result<Vec<GridPolygon>, StoreError> {
        let schema = store.schema(layer.name())?;
        let col = |name: &str| schema.columns.iter().position(|c| c.name == name);
        if col("code").is_none() || col("name").is_none() {
            return Err(StoreError::BadSchema {
                layer: layer.name().to_owned(),
                reason: "a grid layer needs code and name columns".to_owned(),
            });
        }
        // Read by name: columns other tools added cannot get in the way.
        let (code, name) = (0, 1);
        let mut polygons = Vec::new();
        store.for_each_columns(layer.name(), &["code", "name"], region, |f| {
            let geometry = match f.geometry {
                Geometry::Polygon(p) => MultiPolygon::new(vec![p]),
                Geometry::MultiPolygon(m) => m,
                _ => MultiPolygon::new(vec![]),
            };
            polygons.push(GridPolygon {
                code: f.values[code].as_str().unwrap_or_default().to_owned(),
                name: f.values[name].as_str().unwrap_or_default().to_owned(),
                geometry,
            });
            Ok(())
        })?;
        Ok(polygons)
    }

    /// Reads a polygon GeoJSON layer whose codes are in `code_field`
    /// (names in `name`, if any), declared in `crs`. Every feature is
    /// validated and repaired ([`validate_polygons_with`], without the area
    /// sums): invalid polygons are made valid and overlaps go to the lower
    /// code. The report lists what was repaired; unreadable features are in
    /// its errors too.
    pub fn from_geojson(
        path: &Path,
        code_field: &str,
        crs: Crs,
    ) -> Result<(GridLayer, ValidationReport), ReadError> {
        let mut inputs = Vec::new();
        let mut names = Vec::new();
        let mut unreadable: Vec<FeatureError> = Vec::new();
        read_geojson(path, |f| match f {
            Ok(mut f) => {
                crs.geometry_to_wgs84(&mut f.geometry);
                let code = f.property_text(code_field).or_else(|| f.id.clone());
                names.push(f.property_text("name").unwrap_or_default());
                inputs.push(PolygonInput {
                    number: f.number,
                    code,
                    geometry: f.geometry,
                    notes: f.notes,
                });
            }
            Err(e) => unreadable.push(e),
        })?;
        let (fixed, mut report) = validate_polygons_with(&inputs, Areas::Skip);
        for e in unreadable {
            report.features += 1;
            report.rejected += 1;
            report.errors.push(crate::validate::Issue {
                part: None,
                feature: match e.location {
                    crate::io::Location::Feature(n) => n,
                    _ => 0,
                },
                code: None,
                reason: e.to_string(),
                action: crate::validate::Action::Rejected,
            });
        }
        let mut polygons = Vec::with_capacity(fixed.len());
        for ((input, geometry), name) in inputs.into_iter().zip(fixed).zip(names) {
            let Some(geometry) = geometry else { continue };
            let code = input.code.unwrap_or_else(|| format!("#{}", input.number));
            if code.is_empty() {
                continue;
            }
            polygons.push(GridPolygon {
                code,
                name,
                geometry,
            });
        }
        // Overlaps are resolved: the layer is a coverage.
        Ok((GridLayer::new_coverage(polygons), report))
    }

    /// Number of polygons.
    #[must_use]
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// True when the layer has no polygons.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The code of polygon `id`.
    #[must_use]
    pub fn code(&self, id: u32) -> &str {
        &self.codes[id as usize]
    }

    /// The name of polygon `id`.
    #[must_use]
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The index.
    #[must_use]
    pub fn index(&self) -> &GridIndex {
        &self.index
    }

    /// Seconds it took to build the index (after reading).
    #[must_use]
    pub fn build_seconds(&self) -> f64 {
        self.build_s
    }

    /// Index statistics.
    #[must_use]
    pub fn stats(&self) -> IndexStats {
        self.index.stats()
    }

    /// Locates a WGS84 point; see [`GridIndex::locate`].
    #[must_use]
    pub fn locate(&self, lon: f64, lat: f64) -> Option<u32> {
        self.index.locate(lon, lat)
    }

    /// Why a point is in no polygon: `outside every grid; nearest C at D
    /// m` (the nearest polygon's code and its distance in metres), the
    /// reason a change or a located point is refused with. (Rejects files
    /// say `outside every grid` and give the code and the distance in
    /// columns of their own.)
    #[must_use]
    pub fn outside_reason(&self, lon: f64, lat: f64) -> String {
        match nearest_outside(self, lon, lat) {
            Some((code, dist)) => format!("{OUTSIDE}; nearest {code} at {dist} m"),
            None => OUTSIDE_EMPTY.to_owned(),
        }
    }
}

/// The code path of an administrative or grid code: district, street,
/// community and grid codes (empty where the code is coarser). Codes that
/// are not 6/9/12/15 digits give only the grid code.
#[must_use]
pub fn code_path(code: &str) -> [&str; 4] {
    let digits = code.bytes().all(|b| b.is_ascii_digit());
    match code.len() {
        6 | 9 | 12 | 15 if digits => {
            let part = |n: usize| if code.len() >= n { &code[..n] } else { "" };
            [part(6), part(9), part(12), part(15)]
        }
        _ => ["", "", "", code],
    }
}

/// Which code columns the output gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputColumns {
    /// `district_code, street_code, community_code, grid_code`.
    Path,
    /// `grid_code` only (layers with free-form codes).
    GridOnly,
}

impl OutputColumns {
    fn names(self) -> &'static [&'static str] {
        match self {
            OutputColumns::Path => &[
                "district_code",
                "street_code",
                "community_code",
                "grid_code",
            ],
            OutputColumns::GridOnly => &["grid_code"],
        }
    }
}

/// Options of [`assign_csv`].
#[derive(Debug, Clone)]
pub struct AssignOptions {
    /// Longitude column (default: the usual names).
    pub lon_col: Option<String>,
    /// Latitude column (default: the usual names).
    pub lat_col: Option<String>,
    /// Id column for the duplicate check (default `id` when present).
    pub id_col: Option<String>,
    /// Check ids for repeats. The check keeps 16 bytes per row (350 MB for
    /// 21.9 M rows), the only memory that grows with the input.
    pub check_ids: bool,
    /// The input's coordinate system.
    pub crs: Crs,
    /// Output code columns.
    pub columns: OutputColumns,
    /// Rows per chunk.
    pub chunk_rows: usize,
    /// The encoding of a CSV input (default: detected, see
    /// [`encoding::detect`]).
    pub encoding: Option<Encoding>,
    /// The sheet of a spreadsheet input (default: the first).
    pub sheet: Option<String>,
    /// Start the CSV output and rejects with a UTF-8 byte-order mark (for
    /// Excel).
    pub bom: bool,
}

impl Default for AssignOptions {
    fn default() -> Self {
        AssignOptions {
            lon_col: None,
            lat_col: None,
            id_col: None,
            check_ids: true,
            crs: Crs::Wgs84,
            columns: OutputColumns::Path,
            chunk_rows: 65_536,
            encoding: None,
            sheet: None,
            bom: false,
        }
    }
}

/// The outcome of a batch assignment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AssignSummary {
    /// Data rows read (the header is not counted).
    pub rows_in: u64,
    /// Rows written to the output with their codes.
    pub assigned: u64,
    /// Rows written to the rejects file.
    pub rejected: u64,
    /// Rejected rows by reason: `encoding` (not valid in the file's
    /// encoding), `field_count`, `not_a_number`, `empty`, `out_of_range`,
    /// `outside`.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Rows whose id repeats an earlier row's (kept, reported).
    pub duplicate_ids: u64,
    /// Up to 10 `(row, first_row)` pairs of repeated ids.
    pub duplicate_examples: Vec<(u64, u64)>,
    /// Seconds spent parsing coordinates out of the rows (wall, all threads).
    pub parse_s: f64,
    /// Seconds spent in the index locating the parsed points (wall, all
    /// threads): the figure to compare with other point-in-polygon engines.
    pub locate_s: f64,
    /// Seconds for the whole run.
    pub total_s: f64,
    /// Rows per second over the whole run.
    pub rows_per_s: f64,
    /// The output file.
    pub output: PathBuf,
    /// The rejects file.
    pub rejects: PathBuf,
    /// How a CSV or spreadsheet input was read (encoding, sheet, header
    /// row, blank rows skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<TableInfo>,
}

/// Errors that stop a batch (bad rows never do).
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The input cannot be read or has no usable header.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// An output file cannot be written.
    #[error("{path}: {source}", path = path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One processed row: its grid, or why it was rejected.
enum Outcome {
    /// Parsed, not located yet: the WGS84 point.
    Point(f64, f64),
    Assigned(u32),
    Rejected(&'static str, String),
    /// Outside every polygon, at this WGS84 point.
    Outside(f64, f64),
}

impl Outcome {
    /// Counts a located row in the summary.
    fn tally(&self, summary: &mut AssignSummary) {
        let kind = match self {
            Outcome::Assigned(_) => {
                summary.assigned += 1;
                return;
            }
            Outcome::Point(..) => unreachable!("every point is located before counting"),
            Outcome::Rejected(kind, _) => kind,
            Outcome::Outside(..) => "outside",
        };
        summary.rejected += 1;
        *summary
            .rejected_by_reason
            .entry(kind.to_owned())
            .or_default() += 1;
    }
}

/// A chunk of records from the reader thread.
#[derive(Default)]
struct Chunk {
    /// The data row number of each record.
    rows: Vec<u64>,
    /// The records, as raw bytes in the file's encoding.
    block: Block,
}

/// Where the reader thread takes records from.
enum Rows<'a> {
    /// A CSV file, cut into records as read.
    Csv(Records<File>),
    /// A spreadsheet's non-blank rows, each written as a CSV line.
    Sheet(SheetRecords<'a>, csv::ByteRecord),
}

impl Rows<'_> {
    /// Fills `chunk` with the next records, at most `max`; `false` at the
    /// end. `next_row` is the number the next CSV record gets.
    fn next(&mut self, chunk: &mut Chunk, next_row: &mut u64, max: usize) -> std::io::Result<bool> {
        chunk.rows.clear();
        match self {
            Rows::Csv(r) => {
                let more = r.next_block(&mut chunk.block, max)?;
                let n = chunk.block.records.len() as u64;
                chunk.rows.extend(*next_row..*next_row + n);
                *next_row += n;
                Ok(more)
            }
            Rows::Sheet(s, record) => {
                let block = &mut chunk.block;
                block.data.clear();
                block.records.clear();
                while block.records.len() < max {
                    let Some(row) = s.next_into(record) else {
                        break;
                    };
                    let start = block.data.len();
                    push_record(&mut block.data, record.iter());
                    block.data.pop(); // its `\n`
                    block.records.push(start..block.data.len());
                    chunk.rows.push(row);
                }
                Ok(!block.records.is_empty())
            }
        }
    }

    /// Blank rows skipped (sheets only).
    fn blank_rows(&self) -> u64 {
        match self {
            Rows::Csv(_) => 0,
            Rows::Sheet(s, _) => s.blank_rows(),
        }
    }
}

/// What every row of one input is parsed with.
struct RowContext<'a> {
    encoding: Encoding,
    /// How the encoding was chosen, for the reason of a row not valid in it.
    hint: &'a str,
    columns: &'a [String],
    lon_i: usize,
    lat_i: usize,
    id_i: Option<usize>,
    crs: Crs,
    hasher: BuildHasherDefault<DefaultHasher>,
}

/// Per-thread buffers of [`parse_row`].
#[derive(Default)]
struct Scratch {
    fields: Vec<Range<usize>>,
    record: csv::ByteRecord,
    decoder: encoding::Decoder,
}

/// What parsing a row gives besides its outcome: the hash of its id, and
/// its text when that is not the input's bytes.
type RowExtra = (Option<u64>, Option<Vec<u8>>);

/// Parses one raw record. A record that is valid in the file's encoding as
/// it stands (every ASCII record, every UTF-8 record of a UTF-8 file) is
/// used as read; any other one is decoded field by field (GBK/GB18030
/// transcoded, invalid bytes rejected with the column named) and written
/// anew as UTF-8, as is a last record left inside an open quote.
fn parse_row(line: &[u8], cx: &RowContext<'_>, sc: &mut Scratch) -> (Outcome, RowExtra) {
    let valid = line.is_ascii()
        || (cx.encoding == Encoding::Utf8 && simdutf8::basic::from_utf8(line).is_ok());
    let closed = split_fields(line, &mut sc.fields);
    if valid && closed {
        let outcome = classify(line, &sc.fields, cx);
        return (outcome, (id_hash(line, &sc.fields, cx), None));
    }
    sc.record.clear();
    for r in &sc.fields {
        sc.record.push_field(&unquote(&line[r.clone()]));
    }
    let decoded = if valid {
        Ok(())
    } else {
        encoding::decode_record(cx.encoding, &mut sc.record, &mut sc.decoder)
    };
    let mut text = Vec::with_capacity(line.len() + 8);
    push_record(&mut text, sc.record.iter());
    text.pop();
    split_fields(&text, &mut sc.fields);
    let outcome = match decoded {
        Ok(()) => classify(&text, &sc.fields, cx),
        Err(e) => Outcome::Rejected("encoding", format!("{}; {}", e.reason(cx.columns), cx.hint)),
    };
    let id = id_hash(&text, &sc.fields, cx);
    (outcome, (id, Some(text)))
}

/// The hash of a row's id field, when there is an id column and the row has
/// that field.
fn id_hash(line: &[u8], fields: &[Range<usize>], cx: &RowContext<'_>) -> Option<u64> {
    let r = fields.get(cx.id_i?)?;
    Some(cx.hasher.hash_one(&*unquote(&line[r.clone()])))
}

/// Streams `input` through `layer`, writing every row with its codes to
/// `output` and every rejected row to `rejects` (row number, reason,
/// nearest grid and distance when outside, then the row's fields). The
/// input is a CSV file with a header and lon/lat columns, in UTF-8 or
/// GBK/GB18030 ([`AssignOptions::encoding`]; detected by default, a row
/// not valid in the file's encoding is rejected with the bad bytes named),
/// or a spreadsheet ([`sheet::is_sheet`], [`AssignOptions::sheet`]). Output
/// is UTF-8 CSV (with a byte-order mark when [`AssignOptions::bom`]).
/// Columns of the input that already have an output column's name are
/// filled in place; the others are appended.
pub fn assign_csv(
    layer: &GridLayer,
    input: &Path,
    output: &Path,
    rejects: &Path,
    opts: &AssignOptions,
    progress: &dyn Progress,
) -> Result<AssignSummary, AssignError> {
    let t0 = Instant::now();
    let bad = |location, reason: String| ReadError::Bad {
        path: input.to_owned(),
        location,
        reason,
    };
    let sheet = if sheet::is_sheet(input) {
        Some(Sheet::open(
            input,
            SheetOptions {
                sheet: opts.sheet.as_deref(),
                lon_col: opts.lon_col.as_deref(),
                lat_col: opts.lat_col.as_deref(),
            },
        )?)
    } else {
        None
    };
    let (mut rows, columns, encoding, hint, mut info, file_len) = match &sheet {
        Some(s) => (
            Rows::Sheet(s.records(), csv::ByteRecord::new()),
            s.columns.clone(),
            // Cells are text: only checked.
            Encoding::Utf8,
            String::new(),
            TableInfo::sheet(s),
            0,
        ),
        None => {
            let mut file = open_input(input)?;
            let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let detected = encoding::detect(&mut file, input, opts.encoding)?;
            let mut records = Records::new(file, 8 << 20);
            let mut first = Block::default();
            records.next_block(&mut first, 1).map_err(|e| {
                bad(
                    crate::io::Location::Row(0),
                    format!("cannot read the header: {e}"),
                )
            })?;
            let mut header = csv::ByteRecord::new();
            if let Some(r) = first.records.first() {
                let line = &first.data[r.clone()];
                let mut fields = Vec::new();
                split_fields(line, &mut fields);
                for f in fields {
                    header.push_field(&unquote(&line[f]));
                }
            }
            if header.is_empty()
                || (header.len() == 1 && header[0].iter().all(u8::is_ascii_whitespace))
            {
                return Err(ReadError::Empty {
                    path: input.to_owned(),
                }
                .into());
            }
            let columns = csv_columns(input, &detected, &header)?;
            (
                Rows::Csv(records),
                columns,
                detected.encoding,
                detected.hint(),
                TableInfo::csv(&detected),
                file_len,
            )
        }
    };
    let (lon_i, lat_i) =
        coordinate_columns(&columns, opts.lon_col.as_deref(), opts.lat_col.as_deref())
            .map_err(|r| bad(crate::io::Location::Row(0), r))?;
    let id_i = id_column(&columns, opts).map_err(|r| bad(crate::io::Location::Row(0), r))?;
    let names = opts.columns.names();
    let slots = code_slots(&columns, names);
    let mut out_header: Vec<String> = columns.clone();
    for (slot, n) in slots.iter().zip(names) {
        if *slot >= columns.len() {
            out_header.push((*n).to_owned());
        }
    }
    let ncols = columns.len();

    let mut out = BufWriter::with_capacity(1 << 20, create_output(output)?);
    let mut rej = BufWriter::with_capacity(1 << 20, create_output(rejects)?);
    let werr = |path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| AssignError::Write { path, source: e }
    };
    if opts.bom {
        out.write_all(UTF8_BOM).map_err(werr(output))?;
        rej.write_all(UTF8_BOM).map_err(werr(rejects))?;
    }
    out.write_all(&csv_line(out_header.iter().map(String::as_bytes)))
        .map_err(werr(output))?;
    let rej_header = REJECT_COLUMNS
        .into_iter()
        .chain(columns.iter().map(String::as_str));
    rej.write_all(&csv_line(rej_header.map(str::as_bytes)))
        .map_err(werr(rejects))?;

    let mut summary = AssignSummary::new(output, rejects);
    let mut ids: Vec<(u64, u64)> = Vec::new();
    let chunk_rows = opts.chunk_rows.max(1);
    progress.stage(
        "assigning rows",
        sheet.as_ref().map_or(0, Sheet::rows_below_header),
    );

    let cx = RowContext {
        encoding,
        hint: &hint,
        columns: &columns,
        lon_i,
        lat_i,
        id_i,
        crs: opts.crs,
        hasher: id_hasher(),
    };
    let shape = OutputShape::new(&slots, ncols, opts.columns);

    let read_result: Result<u64, AssignError> = std::thread::scope(|s| {
        // The writer thread: chunk N is written while N + 1 is processed.
        let (wtx, wrx) = mpsc::sync_channel::<Vec<(Vec<u8>, Vec<u8>)>>(2);
        let (out, rej) = (&mut out, &mut rej);
        let writer = s.spawn(move || -> Result<(), AssignError> {
            for parts in wrx {
                for (o, r) in &parts {
                    out.write_all(o).map_err(werr(output))?;
                    rej.write_all(r).map_err(werr(rejects))?;
                }
            }
            out.flush().map_err(werr(output))?;
            rej.flush().map_err(werr(rejects))
        });
        let (tx, rx) = mpsc::sync_channel::<std::io::Result<Chunk>>(2);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Chunk>();
        let reader = s.spawn(move || {
            let mut next_row = 1u64;
            loop {
                let mut chunk = recycle_rx.try_recv().unwrap_or_default();
                match rows.next(&mut chunk, &mut next_row, chunk_rows) {
                    Ok(true) => {}
                    Ok(false) => return rows.blank_rows(),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return rows.blank_rows();
                    }
                }
                if tx.send(Ok(chunk)).is_err() {
                    return rows.blank_rows();
                }
            }
        });

        let mut estimated = false;
        for chunk in rx {
            let chunk = chunk
                .map_err(|e| bad(crate::io::Location::Row(summary.rows_in + 1), e.to_string()))?;
            let block = &chunk.block;
            let len = block.records.len();
            let tp = Instant::now();
            let (mut outcomes, extras): (Vec<Outcome>, Vec<RowExtra>) = (0..len)
                .into_par_iter()
                .with_min_len(1024)
                .map_init(Scratch::default, |sc, i| {
                    parse_row(block.record(i), &cx, sc)
                })
                .unzip();
            summary.parse_s += tp.elapsed().as_secs_f64();
            summary.locate_s += locate_all(layer, &mut outcomes);
            // Format in parallel, write in order.
            const PART: usize = 8192;
            let parts: Vec<(Vec<u8>, Vec<u8>)> = outcomes
                .par_chunks(PART)
                .zip(extras.par_chunks(PART))
                .enumerate()
                .map(|(k, (outs, extra))| {
                    let base = k * PART;
                    let line = |i: usize| {
                        extra[i]
                            .1
                            .as_deref()
                            .unwrap_or_else(|| block.record(base + i))
                    };
                    format_part(layer, line, outs, &chunk.rows[base..], &shape)
                })
                .collect();
            if wtx.send(parts).is_err() {
                // The writer stopped on an error: it says which.
                break;
            }
            for (i, (o, (id, _))) in outcomes.iter().zip(&extras).enumerate() {
                o.tally(&mut summary);
                if let Some(id) = id {
                    ids.push((*id, chunk.rows[i]));
                }
            }
            summary.rows_in += len as u64;
            if !estimated && block.end_offset > 0 {
                estimated = true;
                let per_row = block.end_offset as f64 / len.max(1) as f64;
                progress.set_total((file_len as f64 / per_row) as u64);
            }
            progress.inc(len as u64);
            let _ = recycle_tx.send(chunk);
        }
        progress.set_total(summary.rows_in);
        drop(wtx);
        // Neither thread panics; a panic would be a bug.
        writer.join().unwrap_or(Ok(()))?;
        Ok(reader.join().unwrap_or(0))
    });
    info.blank_rows = read_result?;

    summary.input = Some(info);
    summary.finish(&mut ids, t0);
    Ok(summary)
}

/// The UTF-8 byte-order mark (Excel reads a CSV that starts with it as
/// UTF-8).
pub const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// One CSV line (quoted as needed) from fields.
fn csv_line<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    push_record(&mut out, fields);
    out
}

/// Appends one CSV record and its `\n` to `out`, byte for byte what the
/// `csv` crate's writer writes with its defaults (a field is quoted when
/// it holds a comma, a quote, `\r` or `\n`, quotes doubled; a record of
/// one empty field, or of none, is `""`), without its per-byte state machine: the
/// output rows of `assign` are mostly fields copied as read.
fn push_record<'a>(out: &mut Vec<u8>, fields: impl IntoIterator<Item = &'a [u8]>) {
    let mut n = 0usize;
    let mut only_empty = true;
    for f in fields {
        if n > 0 {
            out.push(b',');
        }
        n += 1;
        only_empty &= f.is_empty();
        push_field(out, f);
    }
    if n <= 1 && only_empty {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

/// Parses one record's coordinates (`fields` are its raw field ranges).
fn classify(line: &[u8], fields: &[Range<usize>], cx: &RowContext<'_>) -> Outcome {
    let ncols = cx.columns.len();
    if fields.len() != ncols {
        return Outcome::Rejected(
            "field_count",
            format!("has {} field(s), the header has {ncols}", fields.len()),
        );
    }
    let num = |i: usize, what: &str| -> Result<f64, Outcome> {
        let raw = unquote(&line[fields[i].clone()]);
        let s = std::str::from_utf8(&raw).unwrap_or("\u{fffd}").trim();
        if s.is_empty() {
            return Err(Outcome::Rejected("empty", format!("{what} is empty")));
        }
        parse_coordinate(s).ok_or_else(|| {
            Outcome::Rejected("not_a_number", format!("{what} {s:?} is not a number"))
        })
    };
    point_outcome(
        num(cx.lon_i, "longitude"),
        num(cx.lat_i, "latitude"),
        cx.crs,
    )
}

/// A parsed coordinate pair checked for range and converted to WGS84, or
/// the first reason it is rejected.
fn point_outcome(lon: Result<f64, Outcome>, lat: Result<f64, Outcome>, crs: Crs) -> Outcome {
    let (lon, lat) = match (lon, lat) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if let Err(reason) = check_lon_lat(lon, lat) {
        let kind = if lon.is_finite() && lat.is_finite() {
            "out_of_range"
        } else {
            "not_a_number"
        };
        return Outcome::Rejected(kind, reason);
    }
    let (lon, lat) = crs.to_wgs84(lon, lat);
    Outcome::Point(lon, lat)
}

/// Locates every parsed point of a chunk in parallel; returns the seconds
/// it took (the pure index time).
fn locate_all(layer: &GridLayer, outcomes: &mut [Outcome]) -> f64 {
    let t = Instant::now();
    outcomes.par_chunks_mut(4096).for_each_init(
        || (Vec::with_capacity(4096), Vec::with_capacity(4096)),
        |(points, found), part| {
            points.clear();
            points.extend(part.iter().filter_map(|o| match *o {
                Outcome::Point(x, y) => Some([x, y]),
                _ => None,
            }));
            found.clear();
            found.resize(points.len(), None);
            layer.index.locate_many(points, found);
            let mut found = found.iter();
            for o in part.iter_mut() {
                if let Outcome::Point(x, y) = *o {
                    *o = match found.next().copied().flatten() {
                        Some(id) => Outcome::Assigned(id),
                        None => Outcome::Outside(x, y),
                    };
                }
            }
        },
    );
    t.elapsed().as_secs_f64()
}

/// Where the code values go in an output row.
struct OutputShape {
    /// `(input field, value)` pairs filled in place, by field.
    in_place: Vec<(usize, usize)>,
    /// Values appended after the input's fields, in order.
    appended: Vec<usize>,
    columns: OutputColumns,
}

impl OutputShape {
    fn new(slots: &[usize], ncols: usize, columns: OutputColumns) -> OutputShape {
        let mut in_place: Vec<(usize, usize)> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s < ncols)
            .map(|(v, s)| (*s, v))
            .collect();
        in_place.sort_unstable();
        let mut appended: Vec<(usize, usize)> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s >= ncols)
            .map(|(v, s)| (*s, v))
            .collect();
        appended.sort_unstable();
        OutputShape {
            in_place,
            appended: appended.into_iter().map(|(_, v)| v).collect(),
            columns,
        }
    }
}

/// Formats one part of a chunk: (output bytes, rejects bytes). `line(i)`
/// is row `i`'s text: an output row is its line as read with the code
/// fields filled in or appended; a reject row is the row number, reason,
/// nearest grid and distance, then the line.
fn format_part<'a>(
    layer: &GridLayer,
    line: impl Fn(usize) -> &'a [u8],
    outs: &[Outcome],
    rows: &[u64],
    shape: &OutputShape,
) -> (Vec<u8>, Vec<u8>) {
    let mut out: Vec<u8> = Vec::with_capacity(outs.len() * 160);
    let mut rej: Vec<u8> = Vec::new();
    let mut fields: Vec<Range<usize>> = Vec::new();
    let (mut row_buf, mut dist_buf) = (String::new(), String::new());
    let reject = |rej: &mut Vec<u8>, head: [&[u8]; 4], line: &[u8]| {
        for f in head {
            push_field(rej, f);
            rej.push(b',');
        }
        rej.extend_from_slice(line);
        rej.push(b'\n');
    };
    for (i, o) in outs.iter().enumerate() {
        let text = line(i);
        match o {
            Outcome::Assigned(id) => {
                let code = layer.code(*id);
                let values: [&str; 4] = match shape.columns {
                    OutputColumns::Path => code_path(code),
                    OutputColumns::GridOnly => [code, "", "", ""],
                };
                if shape.in_place.is_empty() {
                    out.extend_from_slice(text);
                } else {
                    split_fields(text, &mut fields);
                    let mut from = 0;
                    for &(f, v) in &shape.in_place {
                        let r = &fields[f];
                        out.extend_from_slice(&text[from..r.start]);
                        push_field(&mut out, values[v].as_bytes());
                        from = r.end;
                    }
                    out.extend_from_slice(&text[from..]);
                }
                for &v in &shape.appended {
                    out.push(b',');
                    push_field(&mut out, values[v].as_bytes());
                }
                out.push(b'\n');
            }
            Outcome::Outside(lon, lat) => {
                // The commonest reject: no allocation per row.
                use std::fmt::Write as _;
                row_buf.clear();
                let _ = write!(row_buf, "{}", rows[i]);
                let near = write_outside(layer, *lon, *lat, &mut dist_buf);
                let head = [
                    row_buf.as_bytes(),
                    near.map_or(OUTSIDE_EMPTY, |_| OUTSIDE).as_bytes(),
                    near.unwrap_or_default().as_bytes(),
                    dist_buf.as_bytes(),
                ];
                reject(&mut rej, head, text);
            }
            Outcome::Rejected(_, reason) => {
                let row = rows[i].to_string();
                reject(
                    &mut rej,
                    [row.as_bytes(), reason.as_bytes(), b"", b""],
                    text,
                );
            }
            Outcome::Point(..) => unreachable!("every point is located before formatting"),
        }
    }
    (out, rej)
}

/// The reason a rejects file gives a point outside every polygon; the
/// nearest polygon's code and the distance have columns of their own.
const OUTSIDE: &str = "outside every grid";

/// The reason a rejects file gives a point outside every polygon of an
/// empty layer.
const OUTSIDE_EMPTY: &str = "outside every grid; the layer is empty";

/// The nearest polygon's code and the distance in metres (one decimal) of
/// a point outside every polygon; `None` for an empty layer.
fn nearest_outside(layer: &GridLayer, lon: f64, lat: f64) -> Option<(&str, String)> {
    let mut dist = String::new();
    write_outside(layer, lon, lat, &mut dist).map(|code| (code, dist))
}

/// [`nearest_outside`] into a reused buffer (cleared first): the nearest
/// code, with the distance in `dist`; nothing is allocated once the buffer
/// has grown.
fn write_outside<'l>(
    layer: &'l GridLayer,
    lon: f64,
    lat: f64,
    dist: &mut String,
) -> Option<&'l str> {
    use std::fmt::Write as _;
    dist.clear();
    let n = layer.index.nearest_outside(lon, lat)?;
    let _ = write!(dist, "{:.1}", n.distance_m);
    Some(layer.code(n.id))
}

/// The outcome of re-indexing one entity layer of a store.
#[derive(Debug, Clone, Serialize)]
pub struct LayerAssignment {
    /// The layer.
    pub layer: String,
    /// Features read.
    pub rows_in: u64,
    /// Features inside a polygon of the level used (codes set).
    pub assigned: u64,
    /// Features outside every polygon (codes cleared, feature kept).
    pub outside: u64,
    /// Up to 10 fids of features outside.
    pub outside_examples: Vec<i64>,
}

/// Re-indexes entity layers of a store: sets `community_code` and
/// `grid_code` of every feature from `layer` (grid codes give both; a
/// community layer leaves `grid_code` empty), one transaction per layer,
/// locating in parallel chunk by chunk. Features outside every polygon
/// keep their row, with both codes cleared, and are counted.
pub fn assign_store(
    store: &mut AnyStore,
    layer: &GridLayer,
    entity_layers: &[Layer],
    progress: &dyn Progress,
) -> Result<Vec<LayerAssignment>, StoreError> {
    let mut out = Vec::new();
    for l in entity_layers {
        let total = store.count(l.name())?;
        progress.stage(&format!("assigning {}", l.name()), total);
        let mut a = LayerAssignment {
            layer: l.name().to_owned(),
            rows_in: 0,
            assigned: 0,
            outside: 0,
            outside_examples: Vec::new(),
        };
        store.update_from_points(l.name(), &["community_code", "grid_code"], 262_144, |pts| {
            let ids: Vec<Option<u32>> = pts
                .par_iter()
                .with_min_len(1024)
                .map(|&(_, x, y)| layer.locate(x, y))
                .collect();
            let values = pts
                .iter()
                .zip(ids)
                .map(|(&(fid, _, _), id)| {
                    a.rows_in += 1;
                    let [_, _, community, grid] = match id {
                        Some(id) => {
                            a.assigned += 1;
                            code_path(layer.code(id))
                        }
                        None => {
                            a.outside += 1;
                            if a.outside_examples.len() < 10 {
                                a.outside_examples.push(fid);
                            }
                            ["", "", "", ""]
                        }
                    };
                    vec![
                        crate::store::Value::Text(community.to_owned()),
                        crate::store::Value::Text(grid.to_owned()),
                    ]
                })
                .collect();
            progress.inc(pts.len() as u64);
            values
        })?;
        out.push(a);
    }
    // No version or change records this: servers on the store reload it.
    store.note_unlogged_write()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::polygon;

    #[test]
    fn records_are_written_as_the_csv_crate_writes_them() {
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![b"a", b"b"],
            vec![b""],
            vec![b"", b""],
            vec![
                b"with,comma",
                b"with \"quote\"",
                b"line\nbreak",
                b"cr\r",
                "网格".as_bytes(),
            ],
            vec![b" spaced ", b"'", b"#x", b"\t"],
            vec![],
        ];
        for c in cases {
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .from_writer(Vec::new());
            w.write_record(&c).unwrap();
            let want = w.into_inner().unwrap();
            let mut got = Vec::new();
            push_record(&mut got, c.iter().copied());
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{c:?}"
            );
        }
    }

    #[test]
    fn code_paths() {
        assert_eq!(
            code_path("110101001002003"),
            ["110101", "110101001", "110101001002", "110101001002003"]
        );
        assert_eq!(
            code_path("110101001002"),
            ["110101", "110101001", "110101001002", ""]
        );
        assert_eq!(code_path("110101"), ["110101", "", "", ""]);
        assert_eq!(code_path("G-7"), ["", "", "", "G-7"]);
        assert_eq!(code_path("11010100100A"), ["", "", "", "11010100100A"]);
    }

    fn layer() -> GridLayer {
        let sq = |x: f64, code: &str| GridPolygon {
            code: code.to_owned(),
            name: format!("grid {code}"),
            geometry: MultiPolygon::new(vec![
                polygon![(x: x, y: 0.0), (x: x + 1.0, y: 0.0), (x: x + 1.0, y: 1.0), (x: x, y: 1.0)],
            ]),
        };
        // Given out of code order on purpose.
        GridLayer::new(vec![sq(1.0, "110101001001002"), sq(0.0, "110101001001001")])
    }

    #[test]
    fn csv_rows_add_up_and_rejects_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(
            &input,
            "\u{feff}id,lon,lat,note\r\n1,0.5,0.5,\"a, b\"\r\n2,1.5,0.5,x\r\n2,abc,0.5,x\r\n4,0.5,95,x\r\n5,9,9,x\r\n6,,0.5,x\r\n7,1.0,0.5,edge\r\n8,0.5",
        )
        .unwrap();
        let (output, rejects) = (dir.path().join("out.csv"), dir.path().join("rej.csv"));
        let s = assign_csv(
            &layer(),
            &input,
            &output,
            &rejects,
            &AssignOptions {
                chunk_rows: 3,
                ..AssignOptions::default()
            },
            &crate::progress::NoProgress,
        )
        .unwrap();
        assert_eq!((s.rows_in, s.assigned, s.rejected), (8, 3, 5));
        assert_eq!(s.duplicate_ids, 1);
        assert_eq!(s.duplicate_examples, vec![(3, 2)]);
        let out = std::fs::read_to_string(&output).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "id,lon,lat,note,district_code,street_code,community_code,grid_code"
        );
        assert_eq!(
            lines[1],
            "1,0.5,0.5,\"a, b\",110101,110101001,110101001001,110101001001001"
        );
        assert!(lines[2].ends_with(",110101001001002"));
        // On the shared edge x = 1: the grid to the east.
        assert!(
            lines[3].starts_with("7,") && lines[3].ends_with(",110101001001002"),
            "{}",
            lines[3]
        );
        let rej = std::fs::read_to_string(&rejects).unwrap();
        let rows: Vec<&str> = rej.lines().collect();
        assert_eq!(rows.len(), 6);
        assert!(
            rows[1].starts_with("3,") && rows[1].contains("not a number"),
            "{}",
            rows[1]
        );
        assert!(rows[2].contains("outside -90..90"), "{}", rows[2]);
        assert!(
            rows[3].starts_with("5,outside every grid,110101001001002,"),
            "{}",
            rows[3]
        );
        assert!(rows[4].contains("empty"), "{}", rows[4]);
        assert!(
            rows[5].starts_with("8,") && rows[5].contains("field"),
            "{}",
            rows[5]
        );
    }

    #[test]
    fn rows_are_copied_as_read_and_codes_filled_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        // Needless quotes, a literal quote inside a field, a code column
        // to fill in place, CRLF endings, and no newline at the end.
        std::fs::write(
            &input,
            "id,grid_code,lon,lat,note\r\n\"1\",old,\"0.5\",0.5,a\"b\r\n2,,1.5,0.5,\"x\"\"y\"",
        )
        .unwrap();
        let (o, r) = (dir.path().join("o.csv"), dir.path().join("r.csv"));
        let s = assign_csv(
            &layer(),
            &input,
            &o,
            &r,
            &AssignOptions::default(),
            &crate::progress::NoProgress,
        )
        .unwrap();
        assert_eq!(s.assigned, 2);
        let out = std::fs::read_to_string(&o).unwrap();
        assert_eq!(
            out,
            "id,grid_code,lon,lat,note,district_code,street_code,community_code\n\
             \"1\",110101001001001,\"0.5\",0.5,a\"b,110101,110101001,110101001001\n\
             2,110101001001002,1.5,0.5,\"x\"\"y\",110101,110101001,110101001001\n"
        );
    }

    #[test]
    fn duplicate_check_can_be_turned_off_and_names_a_missing_column() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, "id,lon,lat\n1,0.5,0.5\n1,1.5,0.5\n").unwrap();
        let (o, r) = (dir.path().join("o.csv"), dir.path().join("r.csv"));
        let run = |opts: AssignOptions| {
            assign_csv(
                &layer(),
                &input,
                &o,
                &r,
                &opts,
                &crate::progress::NoProgress,
            )
        };
        assert_eq!(run(AssignOptions::default()).unwrap().duplicate_ids, 1);
        let off = AssignOptions {
            check_ids: false,
            ..AssignOptions::default()
        };
        assert_eq!(run(off).unwrap().duplicate_ids, 0);
        let named = AssignOptions {
            id_col: Some("person".into()),
            ..AssignOptions::default()
        };
        let e = run(named).unwrap_err().to_string();
        assert!(
            e.contains("no id column \"person\"; columns found: id, lon, lat"),
            "{e}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Fuzz: any bytes after a valid header (quotes, separators, CR/LF,
        /// numbers, text, invalid UTF-8) never panic, and every data row the
        /// CSV reader sees is written once, to the output or the rejects.
        #[test]
        fn arbitrary_rows_never_panic_and_always_add_up(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b','), proptest::strategy::Just(b'"'),
                    proptest::strategy::Just(b'\n'), proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'.'), proptest::strategy::Just(b'-'),
                    proptest::strategy::Just(b'e'), proptest::strategy::Just(0xff),
                    b'0'..=b'9', b'a'..=b'z',
                ],
                0..400,
            ),
            chunk in 1usize..8,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let input = dir.path().join("in.csv");
            let mut text = b"id,lon,lat\n".to_vec();
            text.extend(&body);
            std::fs::write(&input, &text).unwrap();
            let (output, rejects) = (dir.path().join("o.csv"), dir.path().join("r.csv"));
            let opts = AssignOptions { chunk_rows: chunk, ..AssignOptions::default() };
            let s = assign_csv(&layer(), &input, &output, &rejects, &opts, &crate::progress::NoProgress).unwrap();
            proptest::prop_assert_eq!(s.rows_in, s.assigned + s.rejected);
            let records = |p: &Path| csv::ReaderBuilder::new().flexible(true).from_path(p).unwrap().byte_records().count() as u64;
            proptest::prop_assert_eq!(records(&output), s.assigned);
            proptest::prop_assert_eq!(records(&rejects), s.rejected);
            // The reader's own records, as the truth.
            let read = |p: &Path| -> Vec<csv::ByteRecord> {
                csv::ReaderBuilder::new().flexible(true).from_path(p).unwrap()
                    .byte_records().map(Result::unwrap).collect()
            };
            let truth = read(&input);
            proptest::prop_assert_eq!(s.rows_in, truth.len() as u64);
            // Every output row reads back as its input record plus the codes,
            // every reject row as its row number, reason, nearest, distance
            // and the record.
            let rejected: Vec<csv::ByteRecord> = read(&rejects);
            let numbers: std::collections::HashSet<usize> = rejected.iter()
                .map(|r| std::str::from_utf8(&r[0]).unwrap().parse().unwrap()).collect();
            let kept: Vec<&csv::ByteRecord> = truth.iter().enumerate()
                .filter(|(i, _)| !numbers.contains(&(i + 1))).map(|(_, r)| r).collect();
            let written = read(&output);
            proptest::prop_assert_eq!(written.len(), kept.len());
            for (w, k) in written.iter().zip(kept) {
                proptest::prop_assert_eq!(&w.iter().take(3).collect::<Vec<_>>(), &k.iter().collect::<Vec<_>>());
                proptest::prop_assert_eq!(w.len(), 7);
            }
            for r in &rejected {
                let n: usize = std::str::from_utf8(&r[0]).unwrap().parse().unwrap();
                let fields: Vec<&[u8]> = r.iter().skip(4).collect();
                let want: Vec<Vec<u8>> = truth[n - 1].iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned().into_bytes()).collect();
                proptest::prop_assert_eq!(fields, want.iter().map(Vec::as_slice).collect::<Vec<_>>());
            }
        }
    }
}
