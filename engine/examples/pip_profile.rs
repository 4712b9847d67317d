//! The point-in-grid index alone, in memory, on one thread: reads a GeoJSON
//! polygon layer (codes in `code`) and a CSV of `id,lon,lat`, then times
//! `GridIndex::new_coverage` and `GridIndex::locate_many` over all points
//! (best of `--runs`). The same measurement as shapely's `STRtree.query`
//! over an array of points; `benches/compare/pip.sh` runs both. Also handy
//! under `perf record`.
//!
//! ```sh
//! cargo build --release -p wangge-engine --example pip_profile
//! target/release/examples/pip_profile GRIDS.geojson POINTS.csv [--runs 5] [--cell DEG] [--out ANSWERS.csv] [--json]
//! ```
//!
//! `--out` writes `id,grid_code` per point (empty code: outside every grid).
use std::io::Write;
use std::time::Instant;

use geo_types::{Geometry, MultiPolygon};
use wangge_engine::index::GridIndex;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut files = Vec::new();
    let (mut runs, mut cell, mut out, mut json) = (5usize, None, None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|s| s.parse().ok()).expect("--runs N"),
            "--cell" => {
                cell = Some(
                    args.next()
                        .and_then(|s| s.parse().ok())
                        .expect("--cell DEG"),
                )
            }
            "--out" => out = Some(args.next().expect("--out FILE")),
            "--json" => json = true,
            _ => files.push(a),
        }
    }
    let [grids, points] = &files[..] else {
        eprintln!(
            "usage: pip_profile GRIDS.geojson POINTS.csv [--runs N] [--cell DEG] [--out F] [--json]"
        );
        std::process::exit(2);
    };
    // Ordered by code, as `wangge assign` orders them.
    let mut layer: Vec<(String, MultiPolygon<f64>)> = Vec::new();
    wangge_engine::io::geojson::read_geojson(grids.as_ref(), |f| {
        let f = f.expect("a readable feature");
        let code = f.property_text("code").unwrap_or_default();
        match f.geometry {
            Geometry::Polygon(p) => layer.push((code, MultiPolygon::new(vec![p]))),
            Geometry::MultiPolygon(m) => layer.push((code, m)),
            _ => {}
        }
    })
    .expect("a GeoJSON polygon layer");
    layer.sort_by(|a, b| a.0.cmp(&b.0));
    let (codes, polys): (Vec<String>, Vec<MultiPolygon<f64>>) = layer.into_iter().unzip();

    let text = std::fs::read_to_string(points).expect("the points CSV");
    let (mut ids, mut pts) = (Vec::new(), Vec::new());
    for l in text.lines().skip(1) {
        let mut it = l.split(',');
        let id = it.next().unwrap_or_default();
        let lon = it.next().and_then(|s| s.parse().ok());
        let lat = it.next().and_then(|s| s.parse().ok());
        ids.push(id);
        pts.push([lon.unwrap_or(f64::NAN), lat.unwrap_or(f64::NAN)]);
    }

    let (mut build, mut query) = (f64::INFINITY, f64::INFINITY);
    let mut found = vec![None; pts.len()];
    let mut index = GridIndex::coverage_with_cells(&polys, cell);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        index = GridIndex::coverage_with_cells(&polys, cell);
        build = build.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        index.locate_many(&pts, &mut found);
        query = query.min(t.elapsed().as_secs_f64());
    }
    if let Some(out) = out {
        let mut w = std::io::BufWriter::new(std::fs::File::create(out).expect("--out"));
        writeln!(w, "id,grid_code").expect("write");
        for (id, f) in ids.iter().zip(&found) {
            let code = f.map_or("", |i| codes[i as usize].as_str());
            writeln!(w, "{id},{code}").expect("write");
        }
    }
    let inside = found.iter().filter(|f| f.is_some()).count();
    let stats = index.stats();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "polygons": polys.len(), "points": pts.len(), "inside": inside,
                "runs": runs, "build_s": build, "query_s": query, "stats": stats,
            })
        );
    } else {
        println!(
            "{} polygons, {} points ({inside} inside): build {:.1} ms, query {:.1} ms ({:.0} ns/point)\n{stats:?}",
            polys.len(),
            pts.len(),
            build * 1e3,
            query * 1e3,
            query * 1e9 / pts.len().max(1) as f64,
        );
    }
}
