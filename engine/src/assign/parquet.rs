//! Batch assignment of Parquet (and GeoParquet point) registries.
//!
//! Coordinates come from two numeric (or text) lon/lat columns, or from a
//! GeoParquet-style `geometry` column of WKB points. The file is read batch by
//! batch; each batch is located in parallel and written out at once, so
//! memory is bounded by a few batches. The output keeps every input column
//! and adds the code columns (as UTF-8 strings); the rejects file is Parquet
//! too: `row`, `reason`, `nearest_code`, `distance_m`, then the input columns.

use std::hash::BuildHasher;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    LargeBinaryArray, LargeStringArray, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

use super::{
    AssignError, AssignOptions, AssignSummary, GridLayer, OUTSIDE, OUTSIDE_EMPTY, Outcome,
    OutputColumns, code_path, locate_all, nearest_outside,
};
use crate::io::csv::coordinate_columns;
use crate::io::{Location, ReadError};
use crate::progress::Progress;

/// Where the coordinates are.
enum Coords {
    LonLat(usize, usize),
    Wkb(usize),
}

/// Streams a Parquet registry through `layer`; see the module docs and
/// [`super::assign_csv`] for the rules.
pub fn assign_parquet(
    layer: &GridLayer,
    input: &Path,
    output: &Path,
    rejects: &Path,
    opts: &AssignOptions,
    progress: &dyn Progress,
) -> Result<AssignSummary, AssignError> {
    let t0 = Instant::now();
    let bad = |reason: String| ReadError::Bad {
        path: input.to_owned(),
        location: Location::Row(0),
        reason,
    };
    let file = super::open_input(input)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(opts.chunk_rows.max(1))
        .build()
        .map_err(|e| bad(e.to_string()))?;

    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let coords = match coordinate_columns(&names, opts.lon_col.as_deref(), opts.lat_col.as_deref())
    {
        Ok((lon, lat)) => Coords::LonLat(lon, lat),
        Err(reason) => match names.iter().position(|n| n == "geometry" || n == "geom") {
            Some(g) if opts.lon_col.is_none() => Coords::Wkb(g),
            _ => return Err(bad(format!("{reason}; and no WKB `geometry` column")).into()),
        },
    };
    let id_col = super::id_column(&names, opts).map_err(bad)?;

    // Output schema: input fields, code columns replacing same-named ones
    // (as UTF-8) or appended.
    let code_names = opts.columns.names();
    let slots = super::code_slots(&names, code_names);
    let mut out_fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (slot, n) in slots.iter().zip(code_names) {
        let field = Field::new(*n, DataType::Utf8, true);
        match out_fields.get_mut(*slot) {
            Some(f) => *f = field,
            None => out_fields.push(field),
        }
    }
    let out_schema: SchemaRef = Arc::new(Schema::new_with_metadata(
        out_fields,
        schema.metadata().clone(),
    ));
    let [row, reason, nearest, distance] = super::REJECT_COLUMNS;
    let mut rej_fields = vec![
        Field::new(row, DataType::UInt64, false),
        Field::new(reason, DataType::Utf8, false),
        Field::new(nearest, DataType::Utf8, true),
        Field::new(distance, DataType::Float64, true),
    ];
    rej_fields.extend(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true)),
    );
    let rej_schema: SchemaRef = Arc::new(Schema::new(rej_fields));

    let props = || {
        Some(
            WriterProperties::builder()
                .set_compression(Compression::SNAPPY)
                .build(),
        )
    };
    let werr = |path: &Path| {
        let path = path.to_owned();
        move |e: parquet::errors::ParquetError| AssignError::Write {
            path,
            source: std::io::Error::other(e.to_string()),
        }
    };
    let create = super::create_output;
    let mut out =
        ArrowWriter::try_new(create(output)?, out_schema.clone(), props()).map_err(werr(output))?;
    let mut rej = ArrowWriter::try_new(create(rejects)?, rej_schema.clone(), props())
        .map_err(werr(rejects))?;

    let mut summary = AssignSummary::new(output, rejects);
    let mut ids: Vec<(u64, u64)> = Vec::new();
    progress.stage("assigning rows", total);
    let mut first_row = 1u64;
    for batch in reader {
        let batch = batch.map_err(|e| ReadError::Bad {
            path: input.to_owned(),
            location: Location::Row(first_row),
            reason: e.to_string(),
        })?;
        let n = batch.num_rows();
        let tl = Instant::now();
        let mut rows: Vec<Outcome> = match coords {
            Coords::LonLat(lon, lat) => {
                let (lon_v, lat_v) = (
                    numbers(batch.column(lon), &names[lon])?,
                    numbers(batch.column(lat), &names[lat])?,
                );
                (0..n)
                    .into_par_iter()
                    .with_min_len(1024)
                    .map(|i| classify(lon_v.get(i, &names[lon]), lat_v.get(i, &names[lat]), opts))
                    .collect()
            }
            Coords::Wkb(g) => {
                let col = batch.column(g);
                (0..n)
                    .into_par_iter()
                    .with_min_len(1024)
                    .map(|i| match wkb_point(col.as_ref(), i) {
                        Ok((x, y)) => classify(Ok(x), Ok(y), opts),
                        Err(r) => Outcome::Rejected("not_a_number", r),
                    })
                    .collect()
            }
        };
        summary.parse_s += tl.elapsed().as_secs_f64();
        summary.locate_s += locate_all(layer, &mut rows);

        // Output: the assigned rows plus their codes.
        let keep = BooleanArray::from(
            rows.iter()
                .map(|r| matches!(r, Outcome::Assigned(_)))
                .collect::<Vec<_>>(),
        );
        let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
            .map_err(|e| werr(output)(e.into()))?;
        let codes: Vec<[&str; 4]> = rows
            .iter()
            .filter_map(|r| match r {
                Outcome::Assigned(id) => Some(match opts.columns {
                    OutputColumns::Path => code_path(layer.code(*id)),
                    OutputColumns::GridOnly => [layer.code(*id), "", "", ""],
                }),
                _ => None,
            })
            .collect();
        let mut cols: Vec<ArrayRef> = kept.columns().to_vec();
        for (k, slot) in slots.iter().enumerate() {
            let arr: ArrayRef = Arc::new(StringArray::from_iter(
                codes.iter().map(|c| Some(c[k]).filter(|s| !s.is_empty())),
            ));
            if *slot < cols.len() {
                cols[*slot] = arr;
            } else {
                cols.push(arr);
            }
        }
        let out_batch =
            RecordBatch::try_new(out_schema.clone(), cols).map_err(|e| werr(output)(e.into()))?;
        out.write(&out_batch).map_err(werr(output))?;

        // Rejects, with row numbers and reasons.
        let reject_mask = BooleanArray::from(
            rows.iter()
                .map(|r| !matches!(r, Outcome::Assigned(_)))
                .collect::<Vec<_>>(),
        );
        let bad_rows: Vec<(u64, String, Option<String>, Option<f64>)> = rows
            .par_iter()
            .enumerate()
            .filter(|(_, r)| !matches!(r, Outcome::Assigned(_)))
            .map(|(i, r)| {
                let row = first_row + i as u64;
                match r {
                    Outcome::Outside(x, y) => match nearest_outside(layer, *x, *y) {
                        Some((near, dist)) => (
                            row,
                            OUTSIDE.to_owned(),
                            Some(near.to_owned()),
                            dist.parse().ok(),
                        ),
                        None => (row, OUTSIDE_EMPTY.to_owned(), None, None),
                    },
                    Outcome::Rejected(_, reason) => (row, reason.clone(), None, None),
                    Outcome::Assigned(_) | Outcome::Point(..) => unreachable!(),
                }
            })
            .collect();
        if !bad_rows.is_empty() {
            let rejected = arrow_select::filter::filter_record_batch(&batch, &reject_mask)
                .map_err(|e| werr(rejects)(e.into()))?;
            let mut cols: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from_iter_values(bad_rows.iter().map(|b| b.0))),
                Arc::new(StringArray::from_iter_values(
                    bad_rows.iter().map(|b| b.1.as_str()),
                )),
                Arc::new(StringArray::from_iter(
                    bad_rows.iter().map(|b| b.2.as_deref()),
                )),
                Arc::new(Float64Array::from_iter(bad_rows.iter().map(|b| b.3))),
            ];
            cols.extend(rejected.columns().iter().cloned());
            let b = RecordBatch::try_new(rej_schema.clone(), cols)
                .map_err(|e| werr(rejects)(e.into()))?;
            rej.write(&b).map_err(werr(rejects))?;
        }
        for r in &rows {
            r.tally(&mut summary);
        }
        if let Some(c) = id_col {
            id_hashes(batch.column(c).as_ref(), first_row, &mut ids);
        }
        summary.rows_in += n as u64;
        first_row += n as u64;
        progress.inc(n as u64);
    }
    out.close().map_err(werr(output))?;
    rej.close().map_err(werr(rejects))?;
    summary.finish(&mut ids, t0);
    Ok(summary)
}

fn classify(lon: Result<f64, Outcome>, lat: Result<f64, Outcome>, opts: &AssignOptions) -> Outcome {
    super::point_outcome(lon, lat, opts.crs)
}

/// A numeric (or text) coordinate column.
enum Numbers<'a> {
    F64(&'a Float64Array),
    F32(&'a Float32Array),
    I64(&'a Int64Array),
    I32(&'a Int32Array),
    Text(&'a StringArray),
    LargeText(&'a LargeStringArray),
}

fn numbers<'a>(a: &'a ArrayRef, name: &str) -> Result<Numbers<'a>, AssignError> {
    let any = a.as_any();
    let n = if let Some(x) = any.downcast_ref::<Float64Array>() {
        Numbers::F64(x)
    } else if let Some(x) = any.downcast_ref::<Float32Array>() {
        Numbers::F32(x)
    } else if let Some(x) = any.downcast_ref::<Int64Array>() {
        Numbers::I64(x)
    } else if let Some(x) = any.downcast_ref::<Int32Array>() {
        Numbers::I32(x)
    } else if let Some(x) = any.downcast_ref::<StringArray>() {
        Numbers::Text(x)
    } else if let Some(x) = any.downcast_ref::<LargeStringArray>() {
        Numbers::LargeText(x)
    } else {
        return Err(AssignError::Read(ReadError::Bad {
            path: Default::default(),
            location: Location::Row(0),
            reason: format!(
                "column {name} has type {}, not a number or text",
                a.data_type()
            ),
        }));
    };
    Ok(n)
}

impl Numbers<'_> {
    fn get(&self, i: usize, name: &str) -> Result<f64, Outcome> {
        let empty = || Outcome::Rejected("empty", format!("{name} is empty"));
        let text = |s: &str| {
            let s = s.trim();
            if s.is_empty() {
                return Err(empty());
            }
            s.parse::<f64>().map_err(|_| {
                Outcome::Rejected("not_a_number", format!("{name} {s:?} is not a number"))
            })
        };
        macro_rules! val {
            ($a:expr, $f:expr) => {
                if $a.is_null(i) {
                    Err(empty())
                } else {
                    $f($a.value(i))
                }
            };
        }
        match self {
            Numbers::F64(a) => val!(a, Ok),
            Numbers::F32(a) => val!(a, |v: f32| Ok(f64::from(v))),
            Numbers::I64(a) => val!(a, |v: i64| Ok(v as f64)),
            Numbers::I32(a) => val!(a, |v: i32| Ok(f64::from(v))),
            Numbers::Text(a) => val!(a, text),
            Numbers::LargeText(a) => val!(a, text),
        }
    }
}

/// The point in a WKB (ISO or EWKB) Point value.
fn wkb_point(col: &dyn Array, i: usize) -> Result<(f64, f64), String> {
    if col.is_null(i) {
        return Err("geometry is null".to_owned());
    }
    let any = col.as_any();
    let b: &[u8] = if let Some(a) = any.downcast_ref::<BinaryArray>() {
        a.value(i)
    } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
        a.value(i)
    } else {
        return Err(format!(
            "geometry column has type {}, not WKB binary",
            col.data_type()
        ));
    };
    if b.len() < 21 {
        return Err(format!(
            "geometry is {} bytes, too short for a WKB point",
            b.len()
        ));
    }
    let le = match b[0] {
        1 => true,
        0 => false,
        x => return Err(format!("bad WKB byte order {x}")),
    };
    let u32_at = |o: usize| {
        let w = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let ty = u32_at(1);
    // EWKB flags (Z/M/SRID) in the high bits; ISO Z/M types as 1001/2001/3001.
    let has_srid = ty & 0x2000_0000 != 0;
    let base = (ty & 0x0FFF_FFFF) % 1000;
    if base != 1 {
        return Err(format!("geometry is WKB type {ty}, not a point"));
    }
    let o = if has_srid { 9 } else { 5 };
    if b.len() < o + 16 {
        return Err("WKB point is truncated".to_owned());
    }
    let f64_at = |o: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[o..o + 8]);
        if le {
            f64::from_le_bytes(w)
        } else {
            f64::from_be_bytes(w)
        }
    };
    Ok((f64_at(o), f64_at(o + 8)))
}

/// Pushes `(hash of id, row)` for every non-null id of a column.
fn id_hashes(col: &dyn Array, first_row: u64, ids: &mut Vec<(u64, u64)>) {
    let h = super::id_hasher();
    let any = col.as_any();
    let mut push = |i: usize, bytes: &[u8]| ids.push((h.hash_one(bytes), first_row + i as u64));
    if let Some(a) = any.downcast_ref::<StringArray>() {
        (0..a.len())
            .filter(|&i| a.is_valid(i))
            .for_each(|i| push(i, a.value(i).as_bytes()));
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        (0..a.len())
            .filter(|&i| a.is_valid(i))
            .for_each(|i| push(i, a.value(i).as_bytes()));
    } else if let Some(a) = any.downcast_ref::<Int64Array>() {
        (0..a.len())
            .filter(|&i| a.is_valid(i))
            .for_each(|i| push(i, &a.value(i).to_le_bytes()));
    } else if let Some(a) = any.downcast_ref::<Int32Array>() {
        (0..a.len())
            .filter(|&i| a.is_valid(i))
            .for_each(|i| push(i, &i64::from(a.value(i)).to_le_bytes()));
    }
}
