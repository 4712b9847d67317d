//! `wangge synth`: the synthetic Beijing into a new store.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Map, json};
use wangge_engine::io::geojson::read_geojson_from;
use wangge_engine::store::{AnyStore, PgStore, Store, copy, postgis};
use wangge_synth::{self as synth, SynthOptions};

use super::{Bars, Ui, read_features};

/// `wangge synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// The store to create: a GeoPackage (replaced if it exists,
    /// atomically) or an empty PostgreSQL database with PostGIS
    /// (postgres://user@host:port/db; built as a GeoPackage in the temp
    /// folder, then copied in).
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

pub(crate) fn synth_cmd(ui: &Ui, a: &SynthArgs) -> Result<synth::SynthSummary> {
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
    let postgres = postgis::is_postgres_path(&a.out);
    if postgres {
        // Fail now, not after the city is built.
        PgStore::check_new(&a.out.to_string_lossy())?;
    } else if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Build next to the target and rename at the end: a crash leaves the
    // previous store untouched.
    let partial = if postgres {
        std::env::temp_dir().join(format!("wangge-synth-{}.gpkg.partial", std::process::id()))
    } else {
        a.out.with_extension("gpkg.partial")
    };
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
    if postgres {
        let copied = AnyStore::open(&partial).and_then(|from| {
            let mut to = AnyStore::create(&a.out)?;
            copy(&from, &mut to, |_, _| {})
        });
        let _ = std::fs::remove_file(&partial);
        copied?;
    } else {
        std::fs::rename(&partial, &a.out)
            .with_context(|| format!("cannot move the new store to {}", a.out.display()))?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "store": super::shown(&a.out),
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
            super::shown(&a.out),
            t0.elapsed().as_secs_f64()
        ));
        for (layer, n) in &summary.layers {
            ui.say(format!("  {layer:<14} {n:>10}"));
        }
        ui.say(format!("  households     {:>10}", summary.households));
    }
    Ok(summary)
}
