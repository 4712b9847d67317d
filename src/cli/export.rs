//! `wangge export`: a layer of a store to GeoJSON or CSV.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value as Json, json};
use wangge_engine::io::geojson::{GeoJsonWriter, geometry_to_json};
use wangge_engine::model::Layer;
use wangge_engine::progress::Progress;
use wangge_engine::store::{AnyStore, GeomType, Value};

use super::{Bars, Ui};

/// `wangge export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    pub store: PathBuf,
    /// The layer to export.
    #[arg(long)]
    pub layer: Layer,
    /// Output file: `.geojson`/`.json` or `.csv` (points as lon/lat, other
    /// geometries as WKT).
    #[arg(long)]
    pub out: PathBuf,
    /// Start a CSV with a UTF-8 byte-order mark, so Excel opens it as UTF-8.
    #[arg(long)]
    pub bom: bool,
}

pub(crate) fn export_cmd(ui: &Ui, a: &ExportArgs) -> Result<()> {
    let store = AnyStore::open(&a.store)?;
    let schema = store.schema(a.layer.name())?;
    let bars = Bars::new(ui.quiet);
    bars.stage(
        &format!("exporting {}", a.layer),
        store.count(a.layer.name())?,
    );
    let ext = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if a.bom && ext != "csv" {
        bail!("--bom applies to CSV output, not {}", a.out.display());
    }
    let n = match ext.as_str() {
        "geojson" | "json" => {
            let mut w = GeoJsonWriter::create(&a.out)
                .with_context(|| format!("{}: cannot create", a.out.display()))?;
            store.for_each(a.layer.name(), |f| {
                let mut props = Map::new();
                for (c, v) in schema.columns.iter().zip(&f.values) {
                    props.insert(c.name.clone(), value_json(v));
                }
                bars.inc(1);
                w.write(&f.geometry, &props).map_err(|source| {
                    wangge_engine::store::StoreError::Io {
                        path: a.out.clone(),
                        source,
                    }
                })
            })?;
            w.finish()?
        }
        "csv" => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&a.out)
                    .with_context(|| format!("{}: cannot create", a.out.display()))?,
            );
            if a.bom {
                file.write_all(wangge_engine::assign::UTF8_BOM)
                    .with_context(|| format!("{}: cannot write", a.out.display()))?;
            }
            let mut w = csv::Writer::from_writer(file);
            let points = schema.geometry == GeomType::Point;
            let mut header: Vec<String> = schema.columns.iter().map(|c| c.name.clone()).collect();
            if points {
                header.extend(["lon".into(), "lat".into()]);
            } else {
                header.push("wkt".into());
            }
            w.write_record(&header)?;
            let mut n = 0u64;
            store.for_each(a.layer.name(), |f| {
                let mut rec: Vec<String> = f.values.iter().map(value_text).collect();
                match (&f.geometry, points) {
                    (geo_types::Geometry::Point(p), true) => {
                        rec.push(p.x().to_string());
                        rec.push(p.y().to_string());
                    }
                    (g, _) => rec.push(wkt(g)),
                }
                n += 1;
                if n.is_multiple_of(4096) {
                    bars.inc(4096);
                }
                w.write_record(&rec)
                    .map_err(|e| wangge_engine::store::StoreError::Io {
                        path: a.out.clone(),
                        source: std::io::Error::other(e),
                    })
            })?;
            w.flush()?;
            n
        }
        _ => bail!(
            "{}: unknown output format; use .geojson or .csv",
            a.out.display()
        ),
    };
    drop(bars);
    ui.say(format!(
        "wrote {n} features of {} to {}",
        a.layer,
        a.out.display()
    ));
    Ok(())
}

pub(crate) fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Real(r) => json!(r),
        Value::Text(s) => json!(s),
    }
}

pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => s.clone(),
    }
}

/// Well-known text of a geometry (via its GeoJSON form).
pub(crate) fn wkt(g: &geo_types::Geometry<f64>) -> String {
    fn coords(v: &Json) -> String {
        match v {
            Json::Array(a) if a.first().is_some_and(Json::is_number) => a
                .iter()
                .map(|x| x.as_f64().unwrap_or(f64::NAN).to_string())
                .collect::<Vec<_>>()
                .join(" "),
            Json::Array(a) => format!("({})", a.iter().map(coords).collect::<Vec<_>>().join(", ")),
            _ => String::new(),
        }
    }
    let j = geometry_to_json(g);
    let kind = j["type"].as_str().unwrap_or("").to_ascii_uppercase();
    let c = coords(&j["coordinates"]);
    if kind == "POINT" {
        format!("POINT ({c})")
    } else {
        format!("{kind} {c}")
    }
}
