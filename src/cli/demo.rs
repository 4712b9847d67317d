//! `wangge demo`: a synthetic Beijing built, validated, partitioned, assigned and served.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use wangge_engine::model::Layer;
use wangge_engine::store::{Store, Value};
use wangge_engine::validate::{self, PolygonInput};

use super::{SynthArgs, Ui};

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

pub(crate) fn demo(ui: &Ui, a: &DemoArgs) -> Result<()> {
    if wangge_engine::store::postgis::is_postgres_path(&a.out) {
        anyhow::bail!(
            "demo writes a GeoPackage (--out F.gpkg); for PostgreSQL run `wangge demo`, then \
             `wangge copy --from demo/beijing.gpkg --to URL`, or `wangge synth --out URL`"
        );
    }
    let t0 = Instant::now();
    ui.say(format!(
        "wangge demo: a synthetic Beijing at scale {} (seed {})",
        a.scale, a.seed
    ));
    super::synth::synth_cmd(
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
    super::partition::partition_cmd(
        ui,
        &super::partition::PartitionArgs {
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
