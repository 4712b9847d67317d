//! `wangge edit`, `wangge history` and `wangge diff`.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use wangge_engine::codes::CommunityCode;
use wangge_engine::store::{AnyStore, StoreError};
use wangge_partitioner::edit::{self, Op, Request};
use wangge_partitioner::versions;

use crate::cli::{Ui, shown};

/// `wangge edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long)]
    pub store: PathBuf,
    /// Author recorded in the history.
    #[arg(long, default_value = "wangge")]
    pub author: String,
    /// Reason recorded in the history.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Refuse the edit unless the community is still at this version.
    #[arg(long)]
    pub if_version: Option<i64>,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The edit.
    #[command(subcommand)]
    pub op: EditOp,
}

/// The edits.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EditOp {
    /// Move a building to a neighbouring grid of its community.
    Move {
        /// The building's id.
        #[arg(long)]
        building: String,
        /// The grid it goes to (15-digit code).
        #[arg(long)]
        to: String,
    },
    /// Cut a grid into contiguous grids of about equal households.
    Split {
        /// The grid.
        grid: String,
        /// How many grids it becomes.
        #[arg(long, default_value_t = 2)]
        parts: usize,
    },
    /// Merge two neighbouring grids (the lower code stays).
    Merge {
        /// One grid.
        a: String,
        /// Its neighbour.
        b: String,
    },
    /// Lock a grid against edits and rebalancing.
    Lock {
        /// The grid.
        grid: String,
    },
    /// Unlock a grid.
    Unlock {
        /// The grid.
        grid: String,
    },
    /// Re-partition the unlocked grids of a community.
    Rebalance {
        /// The community (12-digit code).
        community: String,
        /// Target households per grid (default: the partition's).
        #[arg(long)]
        target: Option<f64>,
        /// Tolerance (default: the partition's).
        #[arg(long)]
        tolerance: Option<f64>,
    },
}

impl From<&EditOp> for Op {
    fn from(op: &EditOp) -> Op {
        match op.clone() {
            EditOp::Move { building, to } => Op::Move { building, to },
            EditOp::Split { grid, parts } => Op::Split { grid, parts },
            EditOp::Merge { a, b } => Op::Merge { a, b },
            EditOp::Lock { grid } => Op::Lock { grid },
            EditOp::Unlock { grid } => Op::Unlock { grid },
            EditOp::Rebalance {
                community,
                target,
                tolerance,
            } => Op::Rebalance {
                community,
                target,
                tolerance,
            },
        }
    }
}

/// `wangge history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long)]
    pub store: PathBuf,
    /// Only this community.
    #[arg(long)]
    pub community: Option<CommunityCode>,
    /// At most this many versions, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `wangge diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long)]
    pub store: PathBuf,
    /// The community.
    #[arg(long)]
    pub community: CommunityCode,
    /// The older version (default: the one before `--to`).
    #[arg(long)]
    pub from: Option<i64>,
    /// The newer version (default: the latest).
    #[arg(long)]
    pub to: Option<i64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Opens a store of either backend.
fn open_any(path: &std::path::Path) -> Result<AnyStore> {
    AnyStore::open(path).with_context(|| format!("opening {}", shown(path)))
}

/// Runs `wangge edit`.
pub(crate) fn edit_cmd(ui: &Ui, a: &EditArgs) -> Result<()> {
    let mut store = open_any(&a.store)?;
    crate::cli::require_any(&store)?;
    let req = Request {
        op: Op::from(&a.op),
        author: a.author.clone(),
        reason: a.reason.clone(),
        if_version: a.if_version,
    };
    let t = std::time::Instant::now();
    let out = edit::apply(&mut store, &req).map_err(|e| anyhow!("{e}"))?;
    ui.say(format!(
        "{}: community {} version {} → {} in {:.2} s",
        out.op,
        out.community,
        out.previous,
        out.version,
        t.elapsed().as_secs_f64()
    ));
    for (what, list) in [
        ("added", &out.added),
        ("removed", &out.removed),
        ("changed", &out.changed),
    ] {
        if !list.is_empty() {
            ui.say(format!("  {what:<8} {}", list.join(" ")));
        }
    }
    ui.say(format!(
        "  {} buildings ({} households) changed grid",
        out.buildings_moved, out.households_moved
    ));
    for r in &out.reassigned {
        ui.say(format!(
            "  {:<14} {:>7} in the changed grids, {:>7} re-assigned",
            r.layer, r.features, r.changed
        ));
    }
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    }
    Ok(())
}

/// Runs `wangge history`.
pub(crate) fn history_cmd(a: &HistoryArgs) -> Result<()> {
    let store = open_any(&a.store)?;
    let rows = store
        .history(a.community, a.limit)
        .with_context(|| format!("reading the history of {}", shown(&a.store)))?;
    if let Some(c) = &a.community
        && rows.is_empty()
    {
        bail!("community {c} has no versions (unknown code, or never partitioned)");
    }
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<12}  {:>3}  {:<24}  {:<12}  {:>5}  {:>10}  op / reason",
        "community", "v", "created", "author", "grids", "households"
    );
    for r in rows {
        println!(
            "{:<12}  {:>3}  {:<24}  {:<12}  {:>5}  {:>10}  {}{}",
            r.community,
            r.version,
            r.created,
            r.author,
            r.grids,
            r.households,
            r.op,
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(" — {}", r.reason)
            }
        );
    }
    Ok(())
}

/// Runs `wangge diff`.
pub(crate) fn diff_cmd(a: &DiffArgs) -> Result<()> {
    let store = open_any(&a.store)?;
    let latest = store.latest_version(a.community)?;
    if latest == 0 {
        bail!(
            "community {} has no versions (unknown code, or never partitioned)",
            a.community
        );
    }
    let to = a.to.unwrap_or(latest);
    let from = a.from.unwrap_or(to - 1);
    let d = versions::diff(&store, a.community, from, to).map_err(|e| match e {
        StoreError::NotFound { .. } => anyhow!(
            "community {} has versions 1..={latest}; there is no version {}",
            a.community,
            if (1..=latest).contains(&from) {
                to
            } else {
                from
            }
        ),
        e => e.into(),
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    println!("community {} version {} → {}", d.community, d.from, d.to);
    println!("  added    {}", d.added.join(" "));
    println!("  removed  {}", d.removed.join(" "));
    for c in &d.changed {
        println!(
            "  changed  {}: households {} → {}, buildings {} → {}, area {:.0} → {:.0} m²",
            c.code,
            c.households[0],
            c.households[1],
            c.buildings[0],
            c.buildings[1],
            c.area_m2[0],
            c.area_m2[1]
        );
    }
    println!(
        "  {} buildings ({} households) moved",
        d.moved.len(),
        d.households_moved
    );
    for m in d.moved.iter().take(20) {
        println!(
            "    {} {} → {} ({} households)",
            m.building, m.from, m.to, m.households
        );
    }
    if d.moved.len() > 20 {
        println!("    … (--json lists all)");
    }
    Ok(())
}
