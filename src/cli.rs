//! The `wangge` command line.
//!
//! Exit codes: `0` success; `1` the work failed (unreadable input, store
//! error, …: the message on stderr says which file, feature or row and why);
//! `2` the command line itself is wrong (unknown flag, missing argument).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value as Json, json};

use wangge_engine::codes::AdminCode;
use wangge_engine::crs::Crs;
use wangge_engine::io::encoding::Encoding;
use wangge_engine::io::geojson::{
    GeoFeature, GeoJsonWriter, geometry_to_json, read_geojson, read_geojson_from,
};
use wangge_engine::io::{FeatureError, csv as point_csv};
use wangge_engine::model::Layer;
use wangge_engine::progress::Progress;
use wangge_engine::project;
use wangge_engine::store::{ColumnType, GeomType, Store, Value};
use wangge_engine::validate::{self, Action, PolygonInput};
use wangge_synth::{self as synth, SynthOptions};

/// wangge (网格): divide communities into service grids, keep every person,
/// place, object, event and organization in exactly one grid, and serve it.
#[derive(Debug, Parser)]
#[command(name = "wangge", version, about, long_about = None)]
pub struct Cli {
    /// Print nothing but errors (and the result with --json).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a synthetic Beijing into demo/beijing.gpkg, validate it,
    /// partition it into grids, assign every entity and print a summary.
    Demo(DemoArgs),
    /// Generate a deterministic synthetic Beijing into a new GeoPackage store.
    Synth(SynthArgs),
    /// Check a polygon GeoJSON layer; report and optionally repair every defect.
    Validate(ValidateArgs),
    /// Counts per layer, totals and extents of a store.
    Info(InfoArgs),
    /// Import a GeoJSON or CSV file into a layer of a store.
    Import(ImportArgs),
    /// Export a layer of a store to GeoJSON or CSV.
    Export(ExportArgs),
    /// Assign every row of a CSV registry to its grid (and community, street,
    /// district), or re-index the entity layers of a store.
    Assign(crate::assign_cli::AssignArgs),
    /// Which grid holds a point: its code path and name.
    Locate(crate::assign_cli::LocateArgs),
    /// Divide communities into contiguous, balanced, compact grids.
    Partition(crate::partition_cli::PartitionArgs),
    /// Quality of the stored grids: balance, compactness, contiguity,
    /// coverage, split buildings.
    Report(crate::partition_cli::ReportArgs),
    /// Serve the HTTP API, vector tiles, health and metrics.
    Serve(crate::serve::ServeArgs),
    /// Planner edits of a community's grids: move, split, merge, lock,
    /// unlock, rebalance (validated, transactional, versioned).
    Edit(crate::edit_cli::EditArgs),
    /// The versions of a community's grids.
    History(crate::edit_cli::HistoryArgs),
    /// What changed in a community between two versions.
    Diff(crate::edit_cli::DiffArgs),
    /// Write the vector tiles of a zoom range to a PMTiles or MBTiles archive.
    ExportTiles(crate::tiles_cli::ExportTilesArgs),
}

/// `wangge demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Population scale (1.0 = 21.9 M persons).
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Random seed.
    #[arg(long, default_value_t = 2020)]
    pub seed: u64,
    /// Where to write the store.
    #[arg(long, default_value = "demo/beijing.gpkg")]
    pub out: PathBuf,
    /// Where the viewer and API are served at the end.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// Edit token of the served viewer (default: a fresh random one,
    /// printed).
    #[arg(long, env = "WANGGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Stop after building the city instead of serving it.
    #[arg(long)]
    pub no_serve: bool,
    /// Privacy threshold k of the served city (see `wangge serve --help`).
    #[arg(long, default_value_t = wangge_engine::privacy::DEFAULT_K,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub privacy_k: u32,
}

/// `wangge synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// The GeoPackage to create (replaced if it exists, atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Population scale (1.0 = census totals, 21.9 M persons).
    #[arg(long, default_value_t = 0.1)]
    pub scale: f64,
    /// Random seed: the same seed gives the same city.
    #[arg(long, default_value_t = 2020)]
    pub seed: u64,
    /// District outlines (GeoJSON with `code` and `name`); default: the
    /// shipped real Beijing outlines.
    #[arg(long)]
    pub districts: Option<PathBuf>,
    /// Census CSV (`code,name,population_2020`); default: the shipped 2020 census.
    #[arg(long)]
    pub census: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `wangge validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// A GeoJSON file of polygons (FeatureCollection or newline-delimited).
    pub file: PathBuf,
    /// Write the repaired features to this GeoJSON file.
    #[arg(long)]
    pub fix: Option<PathBuf>,
    /// The property holding each feature's code (decides who keeps overlaps).
    #[arg(long, default_value = "code")]
    pub code_field: String,
    /// The input's coordinate system: wgs84 (= cgcs2000), gcj02 or bd09.
    #[arg(long, default_value = "wgs84")]
    pub crs: Crs,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `wangge info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The store.
    pub store: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

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

/// The coordinate system of an input and, for tables, its coordinate columns
/// (shared by `import` and `assign`).
#[derive(Debug, clap::Args)]
pub struct PointInput {
    /// The input's coordinate system: wgs84 (= cgcs2000), gcj02 or bd09.
    #[arg(long, default_value = "wgs84")]
    pub crs: Crs,
    /// Longitude column of a CSV, spreadsheet or Parquet input (default:
    /// lon, lng, longitude, x, 经度 or 东经; a unit in brackets such as
    /// `经度(°)` is ignored).
    #[arg(long)]
    pub lon_col: Option<String>,
    /// Latitude column of a CSV or Parquet input (default: lat, latitude,
    /// y, 纬度 or 北纬).
    #[arg(long)]
    pub lat_col: Option<String>,
    /// Text encoding of a CSV input: auto (UTF-8 when the file is valid
    /// UTF-8 or starts with a UTF-8 byte-order mark, else GB18030), utf8,
    /// gbk or gb18030 (gbk is read as gb18030, its superset).
    #[arg(long, default_value = "auto")]
    pub encoding: EncodingArg,
    /// Sheet of a spreadsheet input (.xlsx, .xls, .ods; default: the first).
    #[arg(long)]
    pub sheet: Option<String>,
}

/// `--encoding`: the text encoding of a CSV input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodingArg {
    /// Detected from the file.
    Auto,
    /// UTF-8 (with or without a byte-order mark).
    #[value(alias = "utf-8")]
    Utf8,
    /// GBK (CP936), read as GB18030.
    #[value(alias = "cp936")]
    Gbk,
    /// GB18030 (includes GBK and GB2312).
    #[value(alias = "gb2312")]
    Gb18030,
}

impl EncodingArg {
    /// The forced encoding, or `None` to detect it.
    #[must_use]
    pub fn forced(self) -> Option<Encoding> {
        match self {
            EncodingArg::Auto => None,
            EncodingArg::Utf8 => Some(Encoding::Utf8),
            EncodingArg::Gbk | EncodingArg::Gb18030 => Some(Encoding::Gb18030),
        }
    }
}

impl PointInput {
    /// Refuses `--encoding` and `--sheet` where they do not apply to `path`
    /// (`csv`: the command reads it as CSV).
    pub fn check_applies(&self, path: &Path, csv: bool) -> Result<()> {
        let sheet = wangge_engine::io::sheet::is_sheet(path);
        if self.sheet.is_some() && !sheet {
            bail!(
                "--sheet applies to spreadsheet input (.xlsx, .xls, .ods), not {}",
                path.display()
            );
        }
        if self.encoding != EncodingArg::Auto && !csv {
            bail!("--encoding applies to CSV input, not {}", path.display());
        }
        Ok(())
    }
}

/// `wangge export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The store.
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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let ui = Ui { quiet: cli.quiet };
    match cli.command {
        Command::Demo(a) => demo(&ui, &a),
        Command::Synth(a) => synth_cmd(&ui, &a).map(|_| ()),
        Command::Validate(a) => validate_cmd(&ui, &a),
        Command::Info(a) => info_cmd(&ui, &a),
        Command::Import(a) => import_cmd(&ui, &a),
        Command::Export(a) => export_cmd(&ui, &a),
        Command::Assign(a) => crate::assign_cli::assign_cmd(&ui, &a),
        Command::Locate(a) => crate::assign_cli::locate_cmd(&ui, &a),
        Command::Partition(a) => crate::partition_cli::partition_cmd(&ui, &a).map(|_| ()),
        Command::Report(a) => crate::partition_cli::report_cmd(&ui, &a),
        Command::Serve(a) => crate::serve::serve_cmd(&ui, &a),
        Command::Edit(a) => crate::edit_cli::edit_cmd(&ui, &a),
        Command::History(a) => crate::edit_cli::history_cmd(&a),
        Command::Diff(a) => crate::edit_cli::diff_cmd(&a),
        Command::ExportTiles(a) => crate::tiles_cli::export_tiles_cmd(&ui, &a),
    }
}

/// Console output that respects `--quiet`.
pub(crate) struct Ui {
    pub(crate) quiet: bool,
}

impl Ui {
    pub(crate) fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }
}

/// Brings the wangge layers of a store that another tool edited or wrote
/// to their schemas before a command writes to it
/// ([`wangge_engine::project::complete`]), saying what was added; fails
/// with every problem that cannot be fixed.
pub(crate) fn complete_store(ui: &Ui, store: &mut Store) -> Result<()> {
    let done = project::complete(store)?;
    if !done.is_empty() {
        ui.say(format!(
            "{}: completed the layers for wangge:",
            store.path().display()
        ));
        for d in &done {
            ui.say(format!("  {}: {}", d.layer, d.what));
        }
    }
    Ok(())
}

/// Fails, naming every layer, column and what was expected, when the
/// wangge layers of a store differ from their schemas
/// ([`wangge_engine::project::require`]): what reading commands check.
pub(crate) fn require_store(store: &Store) -> Result<()> {
    Ok(project::require(store)?)
}

/// indicatif bars for engine progress.
pub(crate) struct Bars {
    bar: ProgressBar,
}

impl Bars {
    pub(crate) fn new(quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>18} [{bar:30}] {human_pos}/{human_len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self { bar }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        self.bar.set_message(name.to_owned());
        self.bar.set_length(total);
        self.bar.set_position(0);
        self.bar.reset_eta();
    }
    fn set_total(&self, total: u64) {
        self.bar.set_length(total);
    }
    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

// ---------------------------------------------------------------------------
// synth / demo
// ---------------------------------------------------------------------------

fn synth_cmd(ui: &Ui, a: &SynthArgs) -> Result<synth::SynthSummary> {
    let t0 = Instant::now();
    let census = match &a.census {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            synth::parse_census(&text, &p.display().to_string()).map_err(anyhow::Error::msg)?
        }
        None => synth::parse_census(synth::BEIJING_CENSUS_CSV, "data/beijing-census-2020.csv")
            .map_err(anyhow::Error::msg)?,
    };
    let (features, label) = match &a.districts {
        Some(p) => (read_features(p)?, p.display().to_string()),
        None => {
            let label = Path::new("data/beijing-districts.geojson");
            let mut feats = Vec::new();
            let mut errors = Vec::new();
            read_geojson_from(
                synth::BEIJING_DISTRICTS_GEOJSON.as_bytes(),
                label,
                |f| match f {
                    Ok(f) => feats.push(f),
                    Err(e) => errors.push(e),
                },
            )?;
            if let Some(e) = errors.first() {
                bail!("{e}");
            }
            (feats, label.display().to_string())
        }
    };
    let (districts, report) =
        synth::prepare_districts(&features, &census, &label).map_err(anyhow::Error::msg)?;
    ui.say(format!(
        "districts: {} read, {} invalid repaired, {} overlapping pairs resolved ({:.0} m²)",
        report.features, report.invalid, report.overlaps, report.overlap_area_m2
    ));
    let opts = SynthOptions {
        scale: a.scale,
        seed: a.seed,
        ..SynthOptions::default()
    };
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Build next to the target and rename at the end: a crash leaves the
    // previous store untouched.
    let partial = a.out.with_extension("gpkg.partial");
    let _ = std::fs::remove_file(&partial);
    let summary = {
        let mut store = Store::create(&partial)?;
        let bars = Bars::new(ui.quiet);
        let result = synth::synthesize(&mut store, &districts, &opts, &bars);
        match result {
            Ok(s) => {
                store.set_meta("synth.seed", &a.seed.to_string())?;
                store.set_meta("synth.scale", &a.scale.to_string())?;
                s
            }
            Err(e) => {
                drop(store);
                let _ = std::fs::remove_file(&partial);
                return Err(e.into());
            }
        }
    };
    std::fs::rename(&partial, &a.out)
        .with_context(|| format!("cannot move the new store to {}", a.out.display()))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "store": a.out,
                "seed": a.seed,
                "scale": a.scale,
                "layers": summary.layers.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
                "households": summary.households,
                "persons": summary.persons,
                "seconds": t0.elapsed().as_secs_f64(),
            }))?
        );
    } else {
        ui.say(format!(
            "wrote {} in {:.1} s",
            a.out.display(),
            t0.elapsed().as_secs_f64()
        ));
        for (layer, n) in &summary.layers {
            ui.say(format!("  {layer:<14} {n:>10}"));
        }
        ui.say(format!("  households     {:>10}", summary.households));
    }
    Ok(summary)
}

fn demo(ui: &Ui, a: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    ui.say(format!(
        "wangge demo: a synthetic Beijing at scale {} (seed {})",
        a.scale, a.seed
    ));
    synth_cmd(
        ui,
        &SynthArgs {
            out: a.out.clone(),
            scale: a.scale,
            seed: a.seed,
            districts: None,
            census: None,
            json: false,
        },
    )?;
    // Validate what was written: each admin level must tile its parent.
    let store = Store::open(&a.out)?;
    ui.say("checking each level (the gaps between districts are those of the real outlines):");
    for layer in [Layer::Districts, Layer::Streets, Layer::Communities] {
        let mut inputs = Vec::new();
        store.for_each(layer.name(), |f| {
            let code = match &f.values[0] {
                Value::Text(s) => Some(s.clone()),
                _ => None,
            };
            inputs.push(PolygonInput {
                number: inputs.len() + 1,
                code,
                geometry: f.geometry,
                notes: vec![],
            });
            Ok(())
        })?;
        let (_, r) = validate::validate_polygons(&inputs);
        ui.say(format!(
            "  {:<12} {:>6} features, {} invalid, overlaps {:.1} m² ({} pairs), gaps {:.1} m² ({}), area {:.1} km²",
            layer.name(),
            r.features,
            r.invalid,
            r.overlap_area_m2,
            r.overlaps,
            r.gap_area_m2,
            r.gaps,
            r.area_after_m2 / 1e6
        ));
    }
    drop(store);
    // Partition every community into grids and re-index every entity layer
    // against them. Households scale with the population, so the target
    // does too (400 households per grid at scale 1).
    let target = (400.0 * a.scale).max(1.0);
    ui.say(format!(
        "partitioning every community into grids of about {target} households (400 × scale) …"
    ));
    crate::partition_cli::partition_cmd(
        ui,
        &crate::partition_cli::PartitionArgs {
            store: a.out.clone(),
            target,
            tolerance: 0.15,
            community: Vec::new(),
            seed: 0,
            assign: true,
            author: "wangge demo".into(),
            json: false,
            graph_out: None,
            dry_run: false,
        },
    )?;
    ui.say(format!(
        "done in {:.1} s: open {} in QGIS, run `wangge info {}`, or `wangge locate --store {} 116.397 39.908`",
        t0.elapsed().as_secs_f64(),
        a.out.display(),
        a.out.display(),
        a.out.display()
    ));
    if a.no_serve {
        return Ok(());
    }
    let token = a.token.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{:016x}",
            (nanos as u64) ^ (u64::from(std::process::id()) << 40)
        )
    });
    // Printed even with --quiet, like the address.
    eprintln!(
        "viewer: http://{}/  (edit token: {token}; Ctrl-C stops the server)",
        a.addr
    );
    crate::serve::serve_cmd(
        ui,
        &crate::serve::ServeArgs {
            store: a.out.clone(),
            addr: a.addr,
            token: Some(token),
            cache_mb: 256,
            body_limit_mb: 16,
            timeout_s: 60,
            header_timeout_s: 10,
            no_tiles: false,
            privacy_k: a.privacy_k,
        },
    )
}

// ---------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------

/// Reads every feature of a GeoJSON file; the first bad feature is an error.
fn read_features(path: &Path) -> Result<Vec<GeoFeature>> {
    let mut feats = Vec::new();
    let mut errors: Vec<FeatureError> = Vec::new();
    read_geojson(path, |f| match f {
        Ok(f) => feats.push(f),
        Err(e) => errors.push(e),
    })?;
    if let Some(e) = errors.first() {
        bail!("{e}");
    }
    Ok(feats)
}

fn validate_cmd(ui: &Ui, a: &ValidateArgs) -> Result<()> {
    let mut inputs = Vec::new();
    let mut props = Vec::new();
    let mut unreadable: Vec<validate::Issue> = Vec::new();
    read_geojson(&a.file, |f| match f {
        Ok(mut f) => {
            a.crs.geometry_to_wgs84(&mut f.geometry);
            inputs.push(PolygonInput {
                number: f.number,
                code: f.property_text(&a.code_field),
                geometry: f.geometry,
                notes: f.notes,
            });
            props.push(f.properties);
        }
        Err(e) => unreadable.push(validate::Issue {
            part: None,
            feature: match e.location {
                wangge_engine::io::Location::Feature(n) => n,
                _ => 0,
            },
            code: None,
            reason: format!("{}: {}", e.location, e.reason),
            action: Action::Rejected,
        }),
    })?;
    let (fixed, mut report) = validate::validate_polygons(&inputs);
    report.features += unreadable.len();
    report.invalid += unreadable.len();
    report.rejected += unreadable.len();
    report.errors.extend(unreadable);
    report.errors.sort_by_key(|e| e.feature);
    if let Some(out) = &a.fix {
        let mut w = GeoJsonWriter::create(out)
            .with_context(|| format!("{}: cannot create", out.display()))?;
        for (g, p) in fixed.iter().zip(&props) {
            if let Some(g) = g {
                w.write(&geo_types::Geometry::MultiPolygon(g.clone()), p)?;
            }
        }
        w.finish()?;
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["file"] = json!(a.file);
        if let Some(out) = &a.fix {
            v["fixed"] = json!(out);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !ui.quiet {
        println!("{}: {} features", a.file.display(), report.features);
        for e in &report.errors {
            let code = e
                .code
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let what = match e.action {
                Action::Repaired => "repaired",
                Action::Rejected => "REJECTED",
                Action::Reported => "reported",
            };
            if e.feature == 0 {
                println!("  {what:<9} {}", e.reason);
            } else {
                println!("  {what:<9} feature {}{code}: {}", e.feature, e.reason);
            }
        }
        println!(
            "invalid {}, repaired {}, rejected {}, overlapping pairs {} ({:.1} m²), gaps {} ({:.1} m²), area {:.3} km² -> {:.3} km²",
            report.invalid,
            report.repaired,
            report.rejected,
            report.overlaps,
            report.overlap_area_m2,
            report.gaps,
            report.gap_area_m2,
            report.area_before_m2 / 1e6,
            report.area_after_m2 / 1e6
        );
        if let Some(out) = &a.fix {
            println!("repaired layer written to {}", out.display());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// info / import / export
// ---------------------------------------------------------------------------

fn info_cmd(_ui: &Ui, a: &InfoArgs) -> Result<()> {
    let store = Store::open(&a.store)?;
    let layers = store.layers()?;
    let mut bbox: Option<[f64; 4]> = None;
    for l in &layers {
        if let Some(b) = l.bbox {
            bbox = Some(wangge_engine::store::merge_bbox(bbox, b));
        }
    }
    let total: u64 = layers.iter().map(|l| l.count).sum();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "store": a.store,
                "layers": layers.iter().map(|l| (l.name.clone(), json!({
                    "count": l.count,
                    "geometry": format!("{:?}", l.geometry),
                    "bbox": l.bbox,
                }))).collect::<Map<_, _>>(),
                "features": total,
                "bbox": bbox,
            }))?
        );
    } else {
        println!("{}", a.store.display());
        for l in &layers {
            println!("  {:<14} {:>10}  {:?}", l.name, l.count, l.geometry);
        }
        println!("  {:<14} {:>10}", "total", total);
        if let Some(b) = bbox {
            println!("  bbox {:.6},{:.6},{:.6},{:.6}", b[0], b[1], b[2], b[3]);
        }
    }
    Ok(())
}

/// Writes rejected features as newline-delimited JSON objects.
struct Rejects {
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

fn import_cmd(ui: &Ui, a: &ImportArgs) -> Result<()> {
    let mut store = if a.store.exists() {
        Store::open(&a.store)?
    } else {
        Store::create(&a.store)?
    };
    complete_store(ui, &mut store)?;
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
                    match values_of(&get) {
                        Ok(values) => Parsed::Good {
                            at,
                            geometry: geo_types::Geometry::Point(row.point),
                            values,
                        },
                        Err(reason) => Parsed::Bad { at, reason },
                    }
                }
                Err(e) => Parsed::Bad {
                    at: e.location.to_string(),
                    reason: e.reason,
                },
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
                    match values_of(&|name: &str| f.property_text(name)) {
                        Ok(values) => {
                            if a.layer.is_admin() {
                                admin_inputs.push(PolygonInput {
                                    number: f.number,
                                    code: f.property_text("code"),
                                    geometry: f.geometry.clone(),
                                    notes: f.notes,
                                });
                            }
                            Parsed::Good {
                                at,
                                geometry: f.geometry,
                                values,
                            }
                        }
                        Err(reason) => Parsed::Bad { at, reason },
                    }
                }
                Err(e) => Parsed::Bad {
                    at: e.location.to_string(),
                    reason: e.reason,
                },
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
    complete_store(ui, &mut store)?;
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
enum Parsed {
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

fn export_cmd(ui: &Ui, a: &ExportArgs) -> Result<()> {
    let store = Store::open(&a.store)?;
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

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Real(r) => json!(r),
        Value::Text(s) => json!(s),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => s.clone(),
    }
}

/// Well-known text of a geometry (via its GeoJSON form).
fn wkt(g: &geo_types::Geometry<f64>) -> String {
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
