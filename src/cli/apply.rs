//! `wangge apply`: a batch feed of changes (NDJSON) into a store, the same
//! work as `POST /v1/changes`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::{Value as Json, json};
use wangge_engine::assign::GridLayer;
use wangge_engine::changes::{Report, apply_batch};
use wangge_engine::model::Layer;
use wangge_engine::progress::Progress;
use wangge_engine::time::now_iso;

use super::{Bars, Ui, complete_any, open_store, shown};

/// `wangge apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The store: a GeoPackage or a PostgreSQL URL.
    #[arg(long)]
    pub store: PathBuf,
    /// The changes, one JSON object per line (NDJSON; blank lines are
    /// skipped): `{"change_id", "op", "layer", "id", "lon", "lat", "crs"?,
    /// "properties"?}`, a building with a GeoJSON `geometry`.
    pub input: PathBuf,
    /// Changes per transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Where rejected changes go, one JSON object per line with the line
    /// number, change id, reason and the line as given (default:
    /// INPUT.rejects.ndjson, written only when there are rejects).
    #[arg(long)]
    pub rejects: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn apply_cmd(ui: &Ui, a: &ApplyArgs) -> Result<()> {
    let file = std::fs::File::open(&a.input)
        .with_context(|| format!("cannot read {}", a.input.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut store = open_store(&a.store)?;
    complete_any(ui, &mut store)?;
    if !store.has_layer(Layer::Grids.name())? {
        bail!(
            "{} has no grids layer: run `wangge partition --store {}` first",
            shown(&a.store),
            shown(&a.store)
        );
    }
    let grids = GridLayer::from_store(&store, Layer::Grids)?;
    let rejects_path = a.rejects.clone().unwrap_or_else(|| {
        let mut p = a.input.clone().into_os_string();
        p.push(".rejects.ndjson");
        PathBuf::from(p)
    });
    let mut rejects: Option<std::io::BufWriter<std::fs::File>> = None;
    let bars = Bars::new(ui.quiet || a.json);
    bars.stage("applying changes", size);
    let mut total = Report::default();
    let mut reader = BufReader::new(file);
    let (mut line_no, mut done) = (0usize, false);
    let mut buf = String::new();
    while !done {
        // One batch: its items, their line numbers and texts.
        let mut items = Vec::new();
        let mut lines: Vec<(usize, String)> = Vec::new();
        while items.len() < a.batch as usize {
            buf.clear();
            let n = reader.read_line(&mut buf).with_context(|| {
                format!("{}: line {}: cannot read", a.input.display(), line_no + 1)
            })?;
            if n == 0 {
                done = true;
                break;
            }
            line_no += 1;
            bars.inc(n as u64);
            let text = buf.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            items.push(serde_json::from_str::<Json>(text).map_err(|e| format!("not JSON: {e}")));
            lines.push((line_no, text.to_owned()));
        }
        if items.is_empty() {
            continue;
        }
        let r = apply_batch(&mut store, &grids, &items, &now_iso()).with_context(|| {
            format!(
                "applying lines {}–{} of {}",
                lines[0].0,
                line_no,
                a.input.display()
            )
        })?;
        for rej in &r.rejected {
            let (line, text) = &lines[rej.index];
            let w = match &mut rejects {
                Some(w) => w,
                None => rejects.insert(std::io::BufWriter::new(
                    std::fs::File::create(&rejects_path)
                        .with_context(|| format!("cannot write {}", rejects_path.display()))?,
                )),
            };
            let row = json!({"line": line, "change_id": rej.change_id, "reason": rej.reason, "change": text});
            writeln!(w, "{row}").with_context(|| format!("writing {}", rejects_path.display()))?;
        }
        total.changes_in += r.changes_in;
        total.applied += r.applied;
        total.duplicates += r.duplicates;
        total.seq = r.seq;
        // Counted, not kept: a million-change feed keeps ten examples.
        let room = 10usize.saturating_sub(total.rejected.len());
        // Examples name the input line (1-based), not the batch position.
        total
            .rejected
            .extend(r.rejected.into_iter().take(room).map(|mut x| {
                x.index = lines[x.index].0;
                x
            }));
    }
    if let Some(mut w) = rejects.take() {
        w.flush()
            .with_context(|| format!("writing {}", rejects_path.display()))?;
    }
    drop(bars);
    let rejected = total.changes_in - total.applied - total.duplicates;
    if a.json {
        let v = json!({
            "store": shown(&a.store),
            "input": a.input,
            "changes_in": total.changes_in,
            "applied": total.applied,
            "duplicates": total.duplicates,
            "rejected": rejected,
            "rejected_examples": total.rejected.iter().map(|r| json!({
                "line": r.index, "change_id": r.change_id, "reason": r.reason,
            })).collect::<Vec<_>>(),
            "rejects": (rejected > 0).then(|| rejects_path.display().to_string()),
            "seq": total.seq,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        ui.say(format!(
            "{}: {} changes read: {} applied, {} duplicates, {} rejected; change log at {}",
            a.input.display(),
            total.changes_in,
            total.applied,
            total.duplicates,
            rejected,
            total.seq
        ));
        if rejected > 0 {
            for r in &total.rejected {
                ui.say(format!(
                    "  line {}: rejected {}: {}",
                    r.index,
                    r.change_id.as_deref().unwrap_or("(no change_id)"),
                    r.reason
                ));
            }
            ui.say(format!(
                "  every rejected change is in {}",
                rejects_path.display()
            ));
        }
    }
    Ok(())
}
