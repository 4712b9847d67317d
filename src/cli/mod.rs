//! The `wangge` command line.
//!
//! Exit codes: `0` success; `1` the work failed (unreadable input, store
//! error, …: the message on stderr says which file, feature or row and why);
//! `2` the command line itself is wrong (unknown flag, missing argument).

use std::path::Path;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use wangge_engine::crs::Crs;
use wangge_engine::io::FeatureError;
use wangge_engine::io::encoding::Encoding;
use wangge_engine::io::geojson::{GeoFeature, read_geojson};
use wangge_engine::progress::Progress;
use wangge_engine::project;
use wangge_engine::store::{AnyStore, Store};

mod apply;
mod assign;
mod copy;
mod demo;
mod edit;
mod export;
mod import;
mod info;
mod partition;
mod synth;
mod tiles;
mod validate;

pub use apply::ApplyArgs;
pub(crate) use assign::admin_names;
pub use assign::{AssignArgs, LocateArgs};
pub use copy::CopyArgs;
pub use demo::DemoArgs;
pub use edit::{DiffArgs, EditArgs, HistoryArgs};
pub use export::ExportArgs;
pub use import::ImportArgs;
pub use info::InfoArgs;
pub use partition::{PartitionArgs, ReportArgs};
pub use synth::SynthArgs;
pub use tiles::ExportTilesArgs;
pub use validate::ValidateArgs;

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
    /// Generate a deterministic synthetic Beijing into a new store (GeoPackage or PostgreSQL).
    Synth(SynthArgs),
    /// Check a polygon GeoJSON layer; report and optionally repair every defect.
    Validate(ValidateArgs),
    /// Counts per layer, totals and extents of a store.
    Info(InfoArgs),
    /// Import a GeoJSON or CSV file into a layer of a store.
    Import(ImportArgs),
    /// Export a layer of a store to GeoJSON or CSV.
    Export(ExportArgs),
    /// Copy a whole store (layers, fids, metadata, versions, locks) between
    /// a GeoPackage and a PostgreSQL + PostGIS database, either way.
    Copy(CopyArgs),
    /// Assign every row of a CSV registry to its grid (and community, street,
    /// district), or re-index the entity layers of a store.
    Assign(AssignArgs),
    /// Which grid holds a point: its code path and name.
    Locate(LocateArgs),
    /// Apply a feed of changes (NDJSON: add, move, update, remove of
    /// persons, buildings, places, objects, events, organizations) to a
    /// store: located, counted, logged, idempotent by change id.
    Apply(ApplyArgs),
    /// Divide communities into contiguous, balanced, compact grids.
    Partition(PartitionArgs),
    /// Quality of the stored grids: balance, compactness, contiguity,
    /// coverage, split buildings.
    Report(ReportArgs),
    /// Serve the HTTP API, vector tiles, health and metrics.
    Serve(crate::serve::ServeArgs),
    /// Planner edits of a community's grids: move, split, merge, lock,
    /// unlock, rebalance (validated, transactional, versioned).
    Edit(EditArgs),
    /// The versions of a community's grids.
    History(HistoryArgs),
    /// What changed in a community between two versions.
    Diff(DiffArgs),
    /// Write the vector tiles of a zoom range to a PMTiles or MBTiles archive.
    ExportTiles(ExportTilesArgs),
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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let ui = Ui { quiet: cli.quiet };
    match cli.command {
        Command::Demo(a) => demo::demo(&ui, &a),
        Command::Synth(a) => synth::synth_cmd(&ui, &a).map(|_| ()),
        Command::Validate(a) => validate::validate_cmd(&ui, &a),
        Command::Info(a) => info::info_cmd(&ui, &a),
        Command::Import(a) => import::import_cmd(&ui, &a),
        Command::Export(a) => export::export_cmd(&ui, &a),
        Command::Copy(a) => copy::copy_cmd(&ui, &a),
        Command::Assign(a) => assign::assign_cmd(&ui, &a),
        Command::Locate(a) => assign::locate_cmd(&ui, &a),
        Command::Apply(a) => apply::apply_cmd(&ui, &a),
        Command::Partition(a) => partition::partition_cmd(&ui, &a).map(|_| ()),
        Command::Report(a) => partition::report_cmd(&ui, &a),
        Command::Serve(a) => crate::serve::serve_cmd(&ui, &a),
        Command::Edit(a) => edit::edit_cmd(&ui, &a),
        Command::History(a) => edit::history_cmd(&a),
        Command::Diff(a) => edit::diff_cmd(&a),
        Command::ExportTiles(a) => tiles::export_tiles_cmd(&ui, &a),
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

/// Opens a store of either backend, naming it in the error.
pub(crate) fn open_store(path: &Path) -> Result<AnyStore> {
    use anyhow::Context;
    AnyStore::open(path).with_context(|| format!("opening {}", shown(path)))
}

/// [`require_store`] for either backend (a PostgreSQL store is not
/// checked against the schemas yet: it is written by wangge only).
pub(crate) fn require_any(store: &AnyStore) -> Result<()> {
    match store {
        AnyStore::Gpkg(s) => require_store(s),
        AnyStore::Postgis(_) => Ok(()),
    }
}

/// [`complete_store`] for either backend (nothing to complete on a
/// PostgreSQL store, which wangge writes whole).
pub(crate) fn complete_any(ui: &Ui, store: &mut AnyStore) -> Result<()> {
    match store {
        AnyStore::Gpkg(s) => complete_store(ui, s),
        AnyStore::Postgis(_) => Ok(()),
    }
}

/// A store argument for messages: a path, or a URL without its password.
pub(crate) fn shown(store: &Path) -> String {
    wangge_engine::store::postgis::redact(&store.to_string_lossy())
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

/// Reads every feature of a GeoJSON file; the first bad feature is an error.
pub(crate) fn read_features(path: &Path) -> Result<Vec<GeoFeature>> {
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
