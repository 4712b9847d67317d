//! `wangge validate`: every defect of a polygon layer, reported and optionally repaired.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;
use wangge_engine::crs::Crs;
use wangge_engine::io::geojson::{GeoJsonWriter, read_geojson};
use wangge_engine::validate::{self, Action, PolygonInput};

use super::Ui;

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

pub(crate) fn validate_cmd(ui: &Ui, a: &ValidateArgs) -> Result<()> {
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
