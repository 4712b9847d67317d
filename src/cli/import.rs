//! `wangge import`: a GeoJSON, CSV or spreadsheet file into a layer of a store, bad rows to the rejects.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};
use wangge_engine::codes::AdminCode;
use wangge_engine::io::geojson::read_geojson;
use wangge_engine::io::{FeatureError, csv as point_csv};
use wangge_engine::model::Layer;
use wangge_engine::store::{AnyStore, ColumnType, GeomType, PgStore, Value, postgis};
use wangge_engine::validate::{self, Action, PolygonInput};

use super::{PointInput, Ui, complete_any};

/// `wangge import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The store (created if missing).
    pub store: PathBuf,
    /// The layer to append to.
    #[arg(long)]
    pub layer: Layer,
    /// A GeoJSON (.geojson/.json/.ndjson) or CSV (.csv, with lon/lat columns) file.
    pub file: PathBuf,
    /// Where rejected features/rows go (newline-delimited JSON); default
    /// `<FILE>.rejects.ndjson`.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    #[command(flatten)]
    /// Coordinate system and CSV coordinate columns.
    pub points: PointInput,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Writes rejected features as newline-delimited JSON objects.
pub(crate) struct Rejects {
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    count: u64,
}

impl Rejects {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            out: None,
            count: 0,
        }
    }
    fn push(&mut self, v: Json) -> Result<()> {
        if self.out.is_none() {
            let f = std::fs::File::create(&self.path)
                .with_context(|| format!("{}: cannot create", self.path.display()))?;
            self.out = Some(std::io::BufWriter::new(f));
        }
        if let Some(o) = self.out.as_mut() {
            serde_json::to_writer(&mut *o, &v)?;
            o.write_all(b"\n")?;
        }
        self.count += 1;
        Ok(())
    }
    fn finish(self) -> Result<()> {
        if let Some(mut o) = self.out {
            o.flush()?;
        }
        Ok(())
    }
}

pub(crate) fn import_cmd(ui: &Ui, a: &ImportArgs) -> Result<()> {
    let mut store = if postgis::is_postgres_path(&a.store) {
        // An empty database becomes a store; anything else must be one.
        let url = a.store.to_string_lossy();
        if PgStore::check_new(&url).is_ok() {
            AnyStore::create(&a.store)?
        } else {
            AnyStore::open(&a.store)?
        }
    } else if a.store.exists() {
        AnyStore::open(&a.store)?
    } else {
        AnyStore::create(&a.store)?
    };
    complete_any(ui, &mut store)?;
    if matches!(store, AnyStore::Postgis(_)) && a.layer.is_admin() {
        ui.say(
            "note: a PostgreSQL store is not completed yet: parent_code, area_m2 and the \
             counts stay as imported",
        );
    }
    if !store.has_layer(a.layer.name())? {
        store.create_layer(&a.layer.schema())?;
    }
    let schema = store.schema(a.layer.name())?;
    let rejects_path = a.rejects.clone().unwrap_or_else(|| {
        let mut p = a.file.clone().into_os_string();
        p.push(".rejects.ndjson");
        PathBuf::from(p)
    });
    let mut rejects = Rejects::new(rejects_path);
    let is_sheet = wangge_engine::io::sheet::is_sheet(&a.file);
    let is_csv = a
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    a.points.check_applies(&a.file, is_csv)?;
    let mut table_info = Json::Null;
    // Every feature or row read, good (mapped onto the schema) or rejected.
    let mut parsed: Vec<Parsed> = Vec::new();
    let column_value =
        |ty: ColumnType, raw: Option<String>| -> std::result::Result<Value, String> {
            match (ty, raw) {
                (_, None) => Ok(Value::Null),
                (ColumnType::Text, Some(s)) => Ok(Value::Text(s)),
                (ColumnType::Integer, Some(s)) if s.trim().is_empty() => Ok(Value::Null),
                (ColumnType::Integer, Some(s)) => s
                    .trim()
                    .parse()
                    .map(Value::Integer)
                    .map_err(|_| format!("{s:?} is not a whole number")),
                (ColumnType::Real, Some(s)) if s.trim().is_empty() => Ok(Value::Null),
                (ColumnType::Real, Some(s)) => s
                    .trim()
                    .parse()
                    .map(Value::Real)
                    .map_err(|_| format!("{s:?} is not a number")),
            }
        };
    // The schema's values from a property getter, or the first bad one.
    let values_of =
        |get: &dyn Fn(&str) -> Option<String>| -> std::result::Result<Vec<Value>, String> {
            let values = schema
                .columns
                .iter()
                .map(|c| column_value(c.ty, get(&c.name)).map_err(|e| format!("{}: {e}", c.name)))
                .collect::<std::result::Result<Vec<Value>, String>>()?;
            if let Some(len) = a.layer.code_len() {
                let at = schema.columns.iter().position(|c| c.name == "code");
                let code = match at.and_then(|i| values.get(i)) {
                    Some(Value::Text(s)) => s.clone(),
                    _ => return Err("no `code` property".into()),
                };
                let parsed = AdminCode::parse(&code).map_err(|e| e.to_string())?;
                if code.len() != len {
                    return Err(format!(
                        "code {code} is a {:?} code; layer {} needs {len} digits",
                        parsed.level(),
                        a.layer
                    ));
                }
            }
            Ok(values)
        };
    let mut admin_inputs = Vec::new();
    let read: u64 = if is_csv || is_sheet {
        if schema.geometry != GeomType::Point {
            bail!(
                "{}: {} import needs a point layer; {} holds {:?}",
                a.file.display(),
                if is_sheet { "spreadsheet" } else { "CSV" },
                a.layer,
                schema.geometry
            );
        }
        let opts = point_csv::TableOptions {
            lon_col: a.points.lon_col.as_deref(),
            lat_col: a.points.lat_col.as_deref(),
            encoding: a.points.encoding.forced(),
            sheet: a.points.sheet.as_deref(),
        };
        let done = point_csv::read_points(&a.file, &opts, |header, r| {
            parsed.push(match r {
                Ok(row) => {
                    let at = format!("row {}", row.row);
                    let get = |name: &str| {
                        let i = header.columns.iter().position(|c| c == name)?;
                        row.fields.get(i).map(str::to_owned)
                    };
                    Parsed::of(at, geo_types::Geometry::Point(row.point), values_of(&get))
                }
                Err(e) => e.into(),
            });
        })?;
        match (&done.info.sheet, done.info.encoding) {
            (Some(name), _) => ui.say(format!(
                "{}: sheet {name:?}, header in Excel row {}, {} title row(s) above it and {} blank row(s) skipped",
                a.file.display(),
                done.info.header_row.unwrap_or(1),
                done.info.rows_above_header,
                done.info.blank_rows
            )),
            (None, Some(enc)) => ui.say(format!(
                "{}: read as {enc} ({})",
                a.file.display(),
                done.info.encoding_how.as_deref().unwrap_or("")
            )),
            _ => {}
        }
        table_info = serde_json::to_value(&done.info)?;
        done.rows
    } else {
        let count = read_geojson(&a.file, |f| {
            parsed.push(match f {
                Ok(mut f) => {
                    a.points.crs.geometry_to_wgs84(&mut f.geometry);
                    let at = format!("feature {}", f.number);
                    let values = values_of(&|name: &str| f.property_text(name));
                    if values.is_ok() && a.layer.is_admin() {
                        admin_inputs.push(PolygonInput {
                            number: f.number,
                            code: f.property_text("code"),
                            geometry: f.geometry.clone(),
                            notes: f.notes,
                        });
                    }
                    Parsed::of(at, f.geometry, values)
                }
                Err(e) => e.into(),
            });
        })?;
        count as u64
    };
    let mut rows: Vec<(String, geo_types::Geometry<f64>, Vec<Value>)> = Vec::new();
    for p in parsed {
        match p {
            Parsed::Good {
                at,
                geometry,
                values,
            } => rows.push((at, geometry, values)),
            Parsed::Bad { at, reason } => {
                rejects.push(json!({"file": a.file, "at": at, "reason": reason}))?;
            }
        }
    }
    let mut repairs = Json::Null;
    if a.layer.is_admin() {
        // Polygons are repaired and overlaps resolved before they land.
        let (fixed, report) = validate::validate_polygons(&admin_inputs);
        repairs = json!({
            "invalid": report.invalid,
            "repaired": report.repaired,
            "overlaps": report.overlaps,
            "overlap_area_m2": report.overlap_area_m2,
        });
        if report.invalid + report.overlaps > 0 {
            ui.say(format!(
                "  {} invalid polygons ({} repaired), {} overlapping pairs resolved ({:.0} m², lower code kept)",
                report.invalid, report.repaired, report.overlaps, report.overlap_area_m2
            ));
        }
        for e in &report.errors {
            ui.say(format!(
                "  feature {}: {} ({:?})",
                e.feature, e.reason, e.action
            ));
        }
        let mut out = Vec::new();
        for ((at, _, v), g) in rows.into_iter().zip(fixed) {
            match g {
                Some(g) => out.push((at, geo_types::Geometry::MultiPolygon(g), v)),
                None => {
                    let reason = report
                        .errors
                        .iter()
                        .filter(|e| {
                            format!("feature {}", e.feature) == at && e.action == Action::Rejected
                        })
                        .map(|e| e.reason.clone())
                        .collect::<Vec<_>>()
                        .join("; ");
                    rejects.push(json!({"file": a.file, "at": at, "reason": reason}))?;
                }
            }
        }
        rows = out;
    }
    // Polygons of the other layers (buildings) are repaired one by one, by
    // the same rules: degenerate parts dropped alone, collections keep
    // their polygons, a feature rejected only when no area is left.
    let polygonal = matches!(schema.geometry, GeomType::Polygon | GeomType::MultiPolygon);
    if polygonal && !a.layer.is_admin() {
        let mut out = Vec::with_capacity(rows.len());
        for (n, (at, g, v)) in rows.into_iter().enumerate() {
            let (fixed, issues) = validate::repair_feature(&PolygonInput {
                number: n + 1,
                code: None,
                geometry: g,
                notes: Vec::new(),
            });
            let say = |e: &validate::Issue| match e.part {
                Some(p) => format!("part {p}: {}", e.reason),
                None => e.reason.clone(),
            };
            for e in issues.iter().filter(|e| e.action == Action::Repaired) {
                ui.say(format!("  {at}: {}", say(e)));
            }
            match fixed {
                Some(mut m) if m.0.len() == 1 && schema.geometry == GeomType::Polygon => {
                    out.push((at, geo_types::Geometry::Polygon(m.0.remove(0)), v));
                }
                Some(m) => out.push((at, geo_types::Geometry::MultiPolygon(m), v)),
                None => {
                    let reason: Vec<String> = issues
                        .iter()
                        .filter(|e| e.action == Action::Rejected)
                        .map(say)
                        .collect();
                    rejects.push(json!({"file": a.file, "at": at, "reason": reason.join("; ")}))?;
                }
            }
        }
        rows = out;
    }
    // GeoPackage layers hold one geometry type.
    let mut typed = Vec::with_capacity(rows.len());
    for (pos, g, v) in rows {
        if schema.geometry.accepts(&g) {
            typed.push((pos, g, v));
        } else {
            let kind = wangge_engine::io::geojson::geometry_to_json(&g)["type"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            rejects.push(json!({"file": a.file, "at": pos, "reason": format!("geometry is a {kind}; layer {} holds {}", a.layer, schema.geometry)}))?;
        }
    }
    let rows = typed;
    let mut w = store.writer(a.layer.name())?;
    for (_, g, v) in &rows {
        w.insert(g, v)?;
    }
    let written = w.commit()?;
    // What derives from the new rows (an admin unit's parent code and area,
    // counts from imported entities).
    complete_any(ui, &mut store)?;
    // No version or change records an import: servers on the store reload it.
    store.note_unlogged_write()?;
    let rejected = rejects.count;
    let rejects_path = rejects.path.clone();
    rejects.finish()?;
    if a.json {
        println!(
            "{}",
            json!({"read": read, "imported": written, "rejected": rejected, "rejects": if rejected > 0 { json!(rejects_path) } else { Json::Null }, "repairs": repairs, "input": table_info})
        );
    } else {
        ui.say(format!(
            "{}: read {read}, imported {written} into {}, rejected {rejected}",
            a.file.display(),
            a.layer
        ));
        if rejected > 0 {
            ui.say(format!(
                "rejected rows with reasons: {}",
                rejects_path.display()
            ));
        }
    }
    if read != written + rejected {
        bail!("counts do not add up: read {read} != imported {written} + rejected {rejected}");
    }
    Ok(())
}

/// One feature or row of an import: mapped onto the layer's schema, or
/// rejected with where and why.
pub(crate) enum Parsed {
    Good {
        at: String,
        geometry: geo_types::Geometry<f64>,
        values: Vec<Value>,
    },
    Bad {
        at: String,
        reason: String,
    },
}

impl Parsed {
    /// A feature or row at `at` whose values mapped, or did not.
    fn of(
        at: String,
        geometry: geo_types::Geometry<f64>,
        values: Result<Vec<Value>, String>,
    ) -> Parsed {
        match values {
            Ok(values) => Parsed::Good {
                at,
                geometry,
                values,
            },
            Err(reason) => Parsed::Bad { at, reason },
        }
    }
}

impl From<FeatureError> for Parsed {
    /// A feature or row the reader could not read.
    fn from(e: FeatureError) -> Parsed {
        Parsed::Bad {
            at: e.location.to_string(),
            reason: e.reason,
        }
    }
}
