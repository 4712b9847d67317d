//! `wangge export-tiles`: a PMTiles or MBTiles archive of a store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use wangge_tiler::{Tiler, TilerOptions};

use crate::cli::{Bars, Ui};

/// `wangge export-tiles`.
#[derive(Debug, clap::Args)]
pub struct ExportTilesArgs {
    /// The store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long)]
    pub store: PathBuf,
    /// The archive to write: `.pmtiles` (PMTiles v3) or `.mbtiles`. An
    /// existing file is replaced once the new one is complete.
    #[arg(long)]
    pub out: PathBuf,
    /// First zoom level.
    #[arg(long, default_value_t = 0)]
    pub minzoom: u8,
    /// Last zoom level.
    #[arg(long, default_value_t = 14)]
    pub maxzoom: u8,
    /// Only the tiles meeting this lon/lat box: `min_lon,min_lat,max_lon,max_lat`.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub bbox: Option<Vec<f64>>,
    /// Keep every vertex (no Douglas–Peucker below each layer's last zoom).
    #[arg(long, hide = true)]
    pub no_simplify: bool,
    /// Privacy threshold k: archives are public, so grids and buildings
    /// carry no household or person count below k (nor complementary
    /// ones) and hexagons under k persons are left out.
    #[arg(long, default_value_t = wangge_engine::privacy::DEFAULT_K,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub privacy_k: u32,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `wangge export-tiles`.
pub(crate) fn export_tiles_cmd(ui: &Ui, a: &ExportTilesArgs) -> Result<()> {
    ui.say(format!("loading {} …", crate::cli::shown(&a.store)));
    let options = TilerOptions {
        simplify: !a.no_simplify,
        privacy: wangge_engine::privacy::Privacy::new(a.privacy_k)?,
    };
    let tiler = Tiler::open_with(&a.store, options)
        .with_context(|| format!("opening {}", crate::cli::shown(&a.store)))?;
    for w in tiler.warnings() {
        ui.say(format!("  warning: {w}"));
    }
    let bars = Bars::new(ui.quiet);
    let bbox = match a.bbox.as_deref() {
        Some(&[x0, y0, x1, y1]) if x0 <= x1 && y0 <= y1 => Some([x0, y0, x1, y1]),
        Some(b) => anyhow::bail!("--bbox must be min_lon,min_lat,max_lon,max_lat, got {b:?}"),
        None => None,
    };
    let s = wangge_tiler::export_in(&tiler, &a.out, a.minzoom, a.maxzoom, bbox, &bars)
        .with_context(|| format!("exporting tiles to {}", a.out.display()))?;
    drop(bars);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    ui.say(format!(
        "{}: {} tiles of {} looked at, zoom {}–{}, {:.1} MB in {:.1} s",
        s.path.display(),
        s.tiles_written,
        s.tiles_visited,
        s.minzoom,
        s.maxzoom,
        s.file_bytes as f64 / 1e6,
        s.seconds
    ));
    if !ui.quiet {
        println!("zoom  tiles  largest (raw / gzip bytes)  tile");
        for z in &s.zooms {
            println!(
                "{:>4} {:>6}  {:>10} / {:<10}  {}",
                z.z,
                z.tiles,
                z.max_bytes,
                z.max_gzip_bytes,
                z.max_tile.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}
