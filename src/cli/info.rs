//! `wangge info`: counts, totals and extents of a store.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Map, json};
use wangge_engine::store::AnyStore;

use super::Ui;

/// `wangge info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The store: a GeoPackage file or a PostgreSQL URL (postgres://user@host:port/db).
    pub store: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn info_cmd(_ui: &Ui, a: &InfoArgs) -> Result<()> {
    let store = AnyStore::open(&a.store)?;
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
                "store": store.location(),
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
        println!("{}", store.location());
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
