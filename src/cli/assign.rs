//! `wangge assign` and `wangge locate`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};
use wangge_engine::assign::{
    self, AssignOptions, GridLayer, OutputColumns, assign_csv, assign_store, code_path,
};
use wangge_engine::crs::Crs;
use wangge_engine::io::sheet::is_sheet;
use wangge_engine::model::Layer;
use wangge_engine::store::{AnyStore, Reads, Selection, StoreError};
use wangge_engine::validate::{Action, ValidationReport};

use crate::cli::{Bars, PointInput, Ui};

/// Which administrative level a store query uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// Grids; falls back to communities (with a warning) while the grids
    /// layer is empty.
    Grid,
    /// Communities (社区/村).
    Community,
    /// Streets/townships (街道/乡镇).
    Street,
    /// Districts (区).
    District,
}

/// Where the polygons come from.
#[derive(Debug, clap::Args)]
pub struct Source {
    /// A wangge store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long, conflicts_with = "grids", required_unless_present = "grids")]
    pub store: Option<PathBuf>,
    /// With --store: the level to assign to.
    #[arg(long, default_value = "grid")]
    pub level: Level,
    /// A polygon GeoJSON layer instead of a store (validated and repaired).
    #[arg(long)]
    pub grids: Option<PathBuf>,
    /// With --grids: the property holding each polygon's code.
    #[arg(long, default_value = "code")]
    pub code_field: String,
}

/// `wangge assign`.
#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    #[command(flatten)]
    /// The polygons.
    pub source: Source,
    /// The registry to assign: CSV (header + lon/lat columns; UTF-8 or
    /// GBK/GB18030, see --encoding), a spreadsheet (.xlsx, .xls, .ods; see
    /// --sheet) or Parquet (lon/lat columns, or a GeoParquet WKB point
    /// `geometry` column).
    #[arg(long, requires = "output", conflicts_with = "layers")]
    pub input: Option<PathBuf>,
    /// Where the assigned rows go (same format as the input; CSV for a
    /// spreadsheet input, always UTF-8): every input column plus the code
    /// columns.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where rejected rows go (row, reason, nearest grid, distance, fields);
    /// default `<OUTPUT>.rejects.csv`.
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Instead of a CSV: re-index these entity layers of the --store
    /// (comma-separated: persons,places,objects,events,organizations).
    #[arg(long, value_delimiter = ',', requires = "store")]
    pub layers: Vec<Layer>,
    #[command(flatten)]
    /// Coordinate system and coordinate columns.
    pub points: PointInput,
    /// Id column for the duplicate-id check (default: `id` when present).
    #[arg(long)]
    pub id_col: Option<String>,
    /// Skip the duplicate-id check (it keeps 16 bytes per row in memory).
    #[arg(long, conflicts_with = "id_col")]
    pub no_id_check: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Start the CSV output and rejects with a UTF-8 byte-order mark, so
    /// Excel opens them as UTF-8 (Chinese text intact).
    #[arg(long)]
    pub bom: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `wangge locate`.
#[derive(Debug, clap::Args)]
pub struct LocateArgs {
    #[command(flatten)]
    /// The polygons.
    pub source: Source,
    /// Longitude.
    #[arg(allow_hyphen_values = true)]
    pub lon: f64,
    /// Latitude.
    #[arg(allow_hyphen_values = true)]
    pub lat: f64,
    /// The point's coordinate system: wgs84 (= cgcs2000), gcj02 or bd09.
    #[arg(long, default_value = "wgs84")]
    pub crs: Crs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A loaded polygon layer and what loading it found.
struct Loaded {
    layer: GridLayer,
    level: &'static str,
    columns: OutputColumns,
    read_s: f64,
    report: Option<ValidationReport>,
    /// The store the layer came from, if any.
    store: Option<AnyStore>,
}

/// Loads the polygons; a store is completed first when the command writes
/// to it (`write`, `assign --layers`), else checked.
fn load(ui: &Ui, src: &Source, write: bool) -> Result<Loaded> {
    let t = Instant::now();
    if let Some(path) = &src.grids {
        let (layer, report) = GridLayer::from_geojson(path, &src.code_field, Crs::Wgs84)
            .with_context(|| format!("cannot read the grids {}", path.display()))?;
        let repaired: Vec<_> = report
            .errors
            .iter()
            .filter(|e| e.action != Action::Reported)
            .collect();
        if !repaired.is_empty() || report.overlaps > 0 {
            ui.say(format!(
                "warning: {}: {} invalid polygon(s) repaired, {} rejected, {} overlapping pair(s) ({:.1} m²) resolved: the lower code keeps the overlap",
                path.display(),
                report.invalid,
                report.rejected,
                report.overlaps,
                report.overlap_area_m2
            ));
            for e in repaired.iter().take(20) {
                ui.say(format!("  feature {}: {}", e.feature, e.reason));
            }
            if repaired.len() > 20 {
                ui.say(format!(
                    "  … and {} more (see `wangge validate`)",
                    repaired.len() - 20
                ));
            }
        }
        if layer.is_empty() {
            bail!("{}: no usable polygons", path.display());
        }
        return Ok(Loaded {
            layer,
            level: "grid",
            columns: OutputColumns::GridOnly,
            read_s: t.elapsed().as_secs_f64(),
            report: Some(report),
            store: None,
        });
    }
    let path = src.store.as_ref().context("give --store or --grids")?;
    let mut store = AnyStore::open(path)?;
    if write {
        crate::cli::complete_any(ui, &mut store)?;
    } else if let AnyStore::Gpkg(s) = &store {
        crate::cli::require_store(s)?;
    }
    let (mut l, mut level) = match src.level {
        Level::Grid => (Layer::Grids, "grid"),
        Level::Community => (Layer::Communities, "community"),
        Level::Street => (Layer::Streets, "street"),
        Level::District => (Layer::Districts, "district"),
    };
    if l == Layer::Grids && !store.has_features(l.name())? {
        ui.say(format!(
            "warning: {}: the grids layer is empty (run `wangge partition` to fill it); using communities",
            path.display()
        ));
        (l, level) = (Layer::Communities, "community");
    }
    if !store.has_features(l.name())? {
        bail!("{}: the {} layer is empty", path.display(), l.name());
    }
    let layer = GridLayer::from_store(&store, l)?;
    Ok(Loaded {
        layer,
        level,
        columns: OutputColumns::Path,
        read_s: t.elapsed().as_secs_f64(),
        report: None,
        store: Some(store),
    })
}

/// The input and output of a registry run, checked before any work: the
/// formats go together (a spreadsheet's output is CSV, never a
/// spreadsheet) and `--encoding`, `--sheet` and `--bom` apply.
fn registry_paths(a: &AssignArgs) -> Result<(&PathBuf, &PathBuf, bool)> {
    let input = a
        .input
        .as_ref()
        .context("give --input and --output, or --store with --layers")?;
    let output = a
        .output
        .as_ref()
        .context("--output is required with --input")?;
    let parquet = assign::is_parquet(input);
    let sheet = is_sheet(input);
    if is_sheet(output) {
        bail!(
            "{}: spreadsheet output is not supported; write CSV (.csv, add --bom for Excel)",
            output.display()
        );
    }
    if sheet && assign::is_parquet(output) {
        bail!(
            "{}: the output of a spreadsheet input is CSV; name it .csv",
            output.display()
        );
    }
    if !sheet && parquet != assign::is_parquet(output) {
        bail!(
            "{} and {} must both be CSV or both Parquet (.parquet)",
            input.display(),
            output.display()
        );
    }
    a.points.check_applies(input, !parquet && !sheet)?;
    if a.bom && parquet {
        bail!("--bom applies to CSV output, not {}", output.display());
    }
    Ok((input, output, parquet))
}

/// Runs `wangge assign`.
pub(crate) fn assign_cmd(ui: &Ui, a: &AssignArgs) -> Result<()> {
    if let Some(n) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("cannot set up the thread pool")?;
    }
    let paths = if a.layers.is_empty() {
        Some(registry_paths(a)?)
    } else {
        None
    };
    let mut loaded = load(ui, &a.source, !a.layers.is_empty())?;
    let stats = loaded.layer.stats();
    ui.say(format!(
        "indexed {} {} polygons in {:.2} s ({} cells of {:.5}°, {:.0}% answered without a polygon test, {:.1} MiB)",
        stats.polygons,
        loaded.level,
        loaded.layer.build_seconds(),
        stats.cells,
        stats.cell_deg[0],
        100.0 * stats.interior_cells as f64 / stats.cells.max(1) as f64,
        stats.memory_bytes as f64 / 1048576.0
    ));
    let common = json!({
        "level": loaded.level,
        "polygons": stats.polygons,
        "read_s": loaded.read_s,
        "build_s": loaded.layer.build_seconds(),
        "index": stats,
        "threads": rayon::current_num_threads(),
        "repairs": loaded.report.as_ref().map(|r| json!({
            "invalid": r.invalid, "rejected": r.rejected, "overlaps": r.overlaps,
            "overlap_area_m2": r.overlap_area_m2,
        })),
    });

    if !a.layers.is_empty() {
        let mut store = loaded.store.take().context("--layers needs --store")?;
        for l in &a.layers {
            if !Layer::POINT_ENTITIES.contains(l) {
                bail!(
                    "--layers takes entity layers (persons, places, objects, events, organizations), not {}",
                    l.name()
                );
            }
        }
        let bars = Bars::new(ui.quiet);
        let t = Instant::now();
        let results = assign_store(&mut store, &loaded.layer, &a.layers, &bars)?;
        drop(bars);
        // Counts that derive from the codes just written.
        crate::cli::complete_any(ui, &mut store)?;
        if a.json {
            let mut v = common;
            v["layers"] = serde_json::to_value(&results)?;
            v["total_s"] = json!(t.elapsed().as_secs_f64());
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for r in &results {
                println!(
                    "{:<14} {:>10} features: {} assigned, {} outside every {}{}",
                    r.layer,
                    r.rows_in,
                    r.assigned,
                    r.outside,
                    loaded.level,
                    if r.outside_examples.is_empty() {
                        String::new()
                    } else {
                        format!(" (fids {:?}…)", r.outside_examples)
                    }
                );
            }
        }
        return Ok(());
    }

    let (input, output, parquet) =
        paths.context("give --input and --output, or --store with --layers")?;
    let rejects = a.rejects.clone().unwrap_or_else(|| {
        let mut p = output.clone().into_os_string();
        p.push(if parquet {
            ".rejects.parquet"
        } else {
            ".rejects.csv"
        });
        PathBuf::from(p)
    });
    let opts = AssignOptions {
        lon_col: a.points.lon_col.clone(),
        lat_col: a.points.lat_col.clone(),
        id_col: a.id_col.clone(),
        check_ids: !a.no_id_check,
        crs: a.points.crs,
        columns: loaded.columns,
        encoding: a.points.encoding.forced(),
        sheet: a.points.sheet.clone(),
        bom: a.bom,
        ..AssignOptions::default()
    };
    let bars = Bars::new(ui.quiet);
    let run = if parquet {
        assign::assign_parquet
    } else {
        assign_csv
    };
    let s = run(&loaded.layer, input, output, &rejects, &opts, &bars)?;
    drop(bars);
    debug_assert_eq!(s.rows_in, s.assigned + s.rejected);
    if s.duplicate_ids > 0 {
        ui.say(format!(
            "warning: {} row(s) repeat an earlier row's id (kept); e.g. {}",
            s.duplicate_ids,
            s.duplicate_examples
                .iter()
                .take(5)
                .map(|(r, f)| format!("row {r} repeats row {f}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(info) = &s.input {
        match (&info.sheet, info.encoding) {
            (Some(name), _) => ui.say(format!(
                "{}: sheet {name:?}, header in Excel row {}{}{}",
                input.display(),
                info.header_row.unwrap_or(1),
                if info.rows_above_header > 0 {
                    format!(
                        " ({} title row(s) above it skipped)",
                        info.rows_above_header
                    )
                } else {
                    String::new()
                },
                if info.blank_rows > 0 {
                    format!(", {} blank row(s) skipped", info.blank_rows)
                } else {
                    String::new()
                }
            )),
            (None, Some(enc))
                if enc != "utf-8" || s.rejected_by_reason.contains_key("encoding") =>
            {
                ui.say(format!(
                    "{}: read as {enc} ({})",
                    input.display(),
                    info.encoding_how.as_deref().unwrap_or("")
                ));
            }
            _ => {}
        }
    }
    if a.json {
        let mut v = common;
        for (k, x) in serde_json::to_value(&s)?.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !ui.quiet {
        println!(
            "{} rows in: {} assigned, {} rejected ({}) in {:.2} s ({:.0} rows/s)",
            s.rows_in,
            s.assigned,
            s.rejected,
            if s.rejected_by_reason.is_empty() {
                "none".to_owned()
            } else {
                s.rejected_by_reason
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            s.total_s,
            s.rows_per_s
        );
        println!(
            "output {}, rejects {}",
            s.output.display(),
            s.rejects.display()
        );
    }
    Ok(())
}

/// Runs `wangge locate`.
pub(crate) fn locate_cmd(ui: &Ui, a: &LocateArgs) -> Result<()> {
    wangge_engine::io::csv::check_lon_lat(a.lon, a.lat).map_err(anyhow::Error::msg)?;
    let (lon, lat) = a.crs.to_wgs84(a.lon, a.lat);
    let loaded = load(ui, &a.source, false)?;
    let layer = &loaded.layer;
    let names = match &loaded.store {
        Some(store) => admin_names(store)?,
        None => Default::default(),
    };
    let v = match layer.locate(lon, lat) {
        Some(id) => {
            let code = layer.code(id);
            let path: Vec<Json> = match loaded.columns {
                OutputColumns::Path => ["district", "street", "community", "grid"]
                    .iter()
                    .zip(code_path(code))
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(level, c)| json!({"level": level, "code": c, "name": names.get(c).map_or(layer.name(id), String::as_str)}))
                    .collect(),
                OutputColumns::GridOnly => vec![json!({"level": "grid", "code": code, "name": layer.name(id)})],
            };
            json!({"lon": a.lon, "lat": a.lat, "inside": true, "level": loaded.level,
                   "code": code, "name": layer.name(id), "path": path})
        }
        None => {
            let near = layer.index().nearest(lon, lat);
            json!({"lon": a.lon, "lat": a.lat, "inside": false, "level": loaded.level,
                   "nearest_code": near.map(|n| layer.code(n.id)),
                   "nearest_name": near.map(|n| layer.name(n.id)),
                   "distance_m": near.map(|n| (n.distance_m * 10.0).round() / 10.0)})
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if v["inside"] == true {
        for p in v["path"].as_array().into_iter().flatten() {
            println!(
                "{:<10} {:<16} {}",
                p["level"].as_str().unwrap_or(""),
                p["code"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            );
        }
    } else {
        println!(
            "outside every {}; nearest {} ({}) at {} m",
            loaded.level,
            v["nearest_code"].as_str().unwrap_or("-"),
            v["nearest_name"].as_str().unwrap_or(""),
            v["distance_m"]
        );
    }
    Ok(())
}

/// Code → name of every district, street, community and grid of a store.
pub(crate) fn admin_names(store: &impl Reads) -> Result<std::collections::HashMap<String, String>> {
    let mut m = std::collections::HashMap::new();
    for l in Layer::ADMIN {
        if !store.has_layer(l.name())? {
            continue;
        }
        store.read_rows(l.name(), &["code", "name"], Selection::All, |_, v| {
            if let Some(c) = v[0].as_str() {
                m.insert(c.to_owned(), v[1].as_str().unwrap_or_default().to_owned());
            }
            Ok::<(), StoreError>(())
        })?;
    }
    Ok(m)
}
