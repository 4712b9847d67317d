//! `wangge partition` and `wangge report`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use wangge_engine::assign::{GridLayer, assign_store};
use wangge_engine::model::Layer;
use wangge_engine::progress::Progress;
use wangge_partitioner::balance::Params;
use wangge_partitioner::city::{self, Partition};
use wangge_partitioner::quality::{self, Report};
use wangge_partitioner::versions::{self, VersionMeta};

use crate::cli::{Bars, Ui};

/// `wangge partition`.
#[derive(Debug, clap::Args)]
pub struct PartitionArgs {
    /// The store, a GeoPackage or a PostgreSQL URL (its communities,
    /// buildings and persons are read; its grids layer is written).
    #[arg(long)]
    pub store: PathBuf,
    /// Target households per grid.
    #[arg(long, default_value_t = 400.0)]
    pub target: f64,
    /// Accepted deviation from the target (0.15 = ±15 %).
    #[arg(long, default_value_t = 0.15)]
    pub tolerance: f64,
    /// Only these communities (12-digit codes); the others keep their grids.
    #[arg(long, num_args = 1..)]
    pub community: Vec<String>,
    /// Seed (turns the direction of the cuts; same seed, same grids).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Then re-index every entity layer against the new grids.
    #[arg(long)]
    pub assign: bool,
    /// Author recorded in the version history.
    #[arg(long, default_value = "wangge")]
    pub author: String,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Partition and report, but write nothing to the store.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write each community's building graph, our grids and the
    /// buildings' territories as JSON lines, for comparing with other
    /// partitioners (`benches/compare/metis.py`).
    #[arg(long)]
    pub graph_out: Option<PathBuf>,
}

/// `wangge report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The store: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db).
    #[arg(long)]
    pub store: PathBuf,
    /// Only these communities (their rows are listed too).
    #[arg(long, num_args = 1..)]
    pub community: Vec<String>,
    /// List every community.
    #[arg(long)]
    pub per_community: bool,
    /// Target households per grid (default: the one the store was
    /// partitioned with, else 400).
    #[arg(long)]
    pub target: Option<f64>,
    /// Tolerance (default: the partition's, else 0.15).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn check_params(target: f64, tolerance: f64) -> Result<()> {
    if !(target.is_finite() && target > 0.0) {
        bail!("--target must be a positive number of households, got {target}");
    }
    if !(tolerance.is_finite() && (0.0..1.0).contains(&tolerance)) {
        bail!("--tolerance must be in [0, 1), got {tolerance}");
    }
    Ok(())
}

/// Runs `wangge partition`; returns the partitions written.
pub(crate) fn partition_cmd(ui: &Ui, a: &PartitionArgs) -> Result<Vec<Partition>> {
    check_params(a.target, a.tolerance)?;
    let t0 = Instant::now();
    let mut store = crate::cli::open_store(&a.store)?;
    if a.dry_run {
        crate::cli::require_any(&store)?;
    } else {
        crate::cli::complete_any(ui, &mut store)?;
    }
    ui.say("reading communities and buildings …");
    let (comms, load) = city::load(&store, &a.community)?;
    let read_s = t0.elapsed().as_secs_f64();
    if load.crossing_border
        + load.reassigned
        + load.outside
        + load.bad_footprint
        + load.partly_outside
        > 0
    {
        ui.say(format!(
            "  buildings: {} read; {} cross a community border (kept whole in the community holding most of them); \
             {} partly outside every community (kept); \
             {} moved to the community they lie in; {} outside every community and {} with a bad footprint left out{}",
            load.buildings,
            load.crossing_border,
            load.partly_outside,
            load.reassigned,
            load.outside,
            load.bad_footprint,
            if load.outside_ids.is_empty() {
                String::new()
            } else {
                format!(" (e.g. {})", load.outside_ids.iter().take(5).cloned().collect::<Vec<_>>().join(", "))
            }
        ));
    }
    let params = Params {
        target: a.target,
        tolerance: a.tolerance,
        seed: a.seed,
    };
    let t1 = Instant::now();
    let bars = Bars::new(ui.quiet);
    bars.stage("partitioning", comms.len() as u64);
    let mut parts = city::partition_all(&comms, &params, &bars);
    drop(bars);
    let noded = if a.dry_run {
        Vec::new()
    } else {
        wangge_partitioner::noding::node_with_store(&store, &mut parts, None)?
    };
    // Persons are counted where they are, as `assign --layers` and the
    // change feed count them (one pass over the persons layer).
    city::count_persons(&store, &mut parts, !a.community.is_empty())?;
    let partition_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let refs: Vec<&city::Community> = comms.iter().collect();
    let meta = VersionMeta {
        author: a.author.clone(),
        reason: format!(
            "partition target {} tolerance {} seed {}",
            a.target, a.tolerance, a.seed
        ),
        op: "partition".into(),
    };
    if !a.dry_run {
        versions::write(
            &mut store,
            &refs,
            &parts,
            if a.community.is_empty() {
                versions::Replace::All
            } else {
                versions::Replace::Communities
            },
            &noded,
            &meta,
            &mut |_| Ok(()),
        )?;
        store.set_meta("partition_target", &a.target.to_string())?;
        store.set_meta("partition_tolerance", &a.tolerance.to_string())?;
    }
    let write_s = t2.elapsed().as_secs_f64();
    let grids: usize = parts.iter().map(|p| p.grids.len()).sum();
    let households: u64 = parts
        .iter()
        .flat_map(|p| &p.grids)
        .map(|g| g.households)
        .sum();
    ui.say(format!(
        "partitioned {} communities into {} grids ({} households, {:.0} per grid) in {:.1} s \
         (read {:.1} s, partition {:.1} s, write {:.1} s)",
        comms.len(),
        grids,
        households,
        households as f64 / grids.max(1) as f64,
        t0.elapsed().as_secs_f64(),
        read_s,
        partition_s,
        write_s
    ));
    if let Some(path) = &a.graph_out {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for c in &comms {
            writeln!(out, "{}", city::graph_record(c, &params))?;
        }
        out.flush()?;
        ui.say(format!(
            "graphs of {} communities written to {}",
            comms.len(),
            path.display()
        ));
    }
    let mut assigned = Vec::new();
    if a.assign && !a.dry_run {
        let layer = GridLayer::from_store(&store, Layer::Grids)?;
        let bars = Bars::new(ui.quiet);
        let present: Vec<Layer> = Layer::POINT_ENTITIES
            .into_iter()
            .filter(|l| store.has_layer(l.name()).unwrap_or(false))
            .collect();
        assigned = assign_store(&mut store, &layer, &present, &bars)?;
        drop(bars);
        for r in &assigned {
            ui.say(format!(
                "  assigned {:<14} {:>9} of {:>9} to their grid ({} outside)",
                r.layer, r.assigned, r.rows_in, r.outside
            ));
        }
    } else if a.dry_run {
        ui.say("dry run: nothing was written");
    } else {
        ui.say(format!(
            "entity layers keep their old grid codes: run `wangge assign --store {} --layers persons,places,objects,events,organizations`",
            crate::cli::shown(&a.store)
        ));
    }
    if !a.dry_run {
        // Counts of units that derive from what was just written (a store
        // another tool wrote had none).
        crate::cli::complete_any(ui, &mut store)?;
    }
    if a.json {
        println!(
            "{}",
            json!({
                "communities": comms.len(),
                "grids": grids,
                "households": households,
                "buildings": load,
                "read_s": read_s,
                "partition_s": partition_s,
                "write_s": write_s,
                "total_s": t0.elapsed().as_secs_f64(),
                "assigned": assigned.iter().map(|r| json!({"layer": r.layer.to_string(), "rows_in": r.rows_in, "assigned": r.assigned, "outside": r.outside})).collect::<Vec<_>>(),
            })
        );
    }
    Ok(parts)
}

/// Runs `wangge report`.
pub(crate) fn report_cmd(ui: &Ui, a: &ReportArgs) -> Result<()> {
    let store = crate::cli::open_store(&a.store)?;
    crate::cli::require_any(&store)?;
    let meta_f =
        |k: &str| -> Option<f64> { store.meta(k).ok().flatten().and_then(|v| v.parse().ok()) };
    let target = a
        .target
        .or_else(|| meta_f("partition_target"))
        .unwrap_or(400.0);
    let tolerance = a
        .tolerance
        .or_else(|| meta_f("partition_tolerance"))
        .unwrap_or(0.15);
    check_params(target, tolerance)?;
    let r = quality::report(&store, &a.community, target, tolerance, a.per_community)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if !ui.quiet {
        print_report(&r);
    }
    Ok(())
}

fn print_report(r: &Report) {
    if !r.per_community.is_empty() {
        println!(
            "{:<13} {:>5} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6} {:>10} {:>10} {:>6}",
            "community",
            "grids",
            "hh min",
            "hh med",
            "hh max",
            "in tol",
            "contig",
            "PP med",
            "gap m²",
            "overlap m²",
            "split"
        );
        for c in &r.per_community {
            println!(
                "{:<13} {:>5} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6.3} {:>10.3} {:>10.3} {:>6}",
                c.community,
                c.grids,
                c.households_min,
                c.households_median,
                c.households_max,
                c.within_tolerance,
                c.contiguous,
                c.polsby_popper_median,
                c.gap_m2,
                c.overlap_m2,
                c.split_buildings
            );
        }
        println!();
    }
    println!("communities            {}", r.communities);
    println!("grids                  {}", r.grids);
    println!(
        "households per grid    min {} / median {} / max {} (target {} ± {:.0} %)",
        r.households_min,
        r.households_median,
        r.households_max,
        r.target,
        r.tolerance * 100.0
    );
    println!("within tolerance       {:.1} %", r.within_tolerance_pct);
    println!("contiguous             {:.1} %", r.contiguous_pct);
    println!(
        "Polsby-Popper          median {:.3}, 10th percentile {:.3}",
        r.polsby_popper_median, r.polsby_popper_p10
    );
    println!(
        "coverage               gap {:.3} m², overlap {:.3} m², outside {:.3} m²",
        r.gap_m2, r.overlap_m2, r.outside_m2
    );
    println!(
        "buildings              {} split, {} without a grid",
        r.split_buildings, r.unassigned_buildings
    );
    if r.communities_without_grids > 0 {
        println!(
            "communities without grids: {} (run `wangge partition`)",
            r.communities_without_grids
        );
    }
}
