//! `wangge copy`: a whole store from one backend to the other.

use std::path::PathBuf;

use anyhow::{Result, bail};
use wangge_engine::progress::Progress;
use wangge_engine::store::{AnyStore, copy};

use super::{Bars, Ui};

/// `wangge copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The store to read: a GeoPackage file or a PostgreSQL URL
    /// (postgres://user@host:port/db).
    #[arg(long)]
    pub from: PathBuf,
    /// The new store to write: a GeoPackage file that does not exist yet,
    /// or an empty PostgreSQL database with PostGIS.
    #[arg(long)]
    pub to: PathBuf,
}

pub(crate) fn copy_cmd(ui: &Ui, a: &CopyArgs) -> Result<()> {
    let from = AnyStore::open(&a.from)?;
    let mut to = AnyStore::create(&a.to)?;
    let bars = Bars::new(ui.quiet);
    let counts: Vec<(String, u64)> = from
        .layers()?
        .into_iter()
        .map(|l| (l.name, l.count))
        .collect();
    let mut shown = 0;
    let report = copy(&from, &mut to, |layer, n| {
        if n == 0 {
            let total = counts.iter().find(|(l, _)| l == layer).map_or(0, |c| c.1);
            bars.stage(&format!("copying {layer}"), total);
            shown = 0;
        } else {
            bars.inc(n - shown);
            shown = n;
        }
    })?;
    drop(bars);
    // Counts in = counts out, read back from the new store.
    for (layer, n) in &report.layers {
        let stored = to.count(layer)?;
        if stored != *n {
            bail!(
                "{}: layer {layer} holds {stored} features after the copy of {n}",
                to.location()
            );
        }
    }
    ui.say(format!("{} → {}", from.location(), to.location()));
    for (layer, n) in &report.layers {
        ui.say(format!("  {layer:<14} {n:>10}"));
    }
    ui.say(format!(
        "  {} metadata entries, {} versions, {} locked grids",
        report.meta, report.versions, report.locks
    ));
    Ok(())
}
