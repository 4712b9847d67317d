//! Times `GridIndex` build and `locate_many` on a GeoJSON polygon layer and
//! a CSV of `id,lon,lat` points (for profiling; see BENCHMARKS.md):
//!
//! ```sh
//! cargo run --release -p wangge-engine --example pip_profile -- GRIDS.geojson POINTS.csv [RUNS]
//! ```
use std::time::Instant;

use geo_types::{Geometry, MultiPolygon};
use wangge_engine::index::GridIndex;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (grids, points) = (&args[1], &args[2]);
    let runs: usize = args.get(3).map_or(5, |s| s.parse().expect("RUNS"));
    let mut polys = Vec::new();
    wangge_engine::io::geojson::read_geojson(grids.as_ref(), |f| {
        let f = f.expect("feature");
        match f.geometry {
            Geometry::Polygon(p) => polys.push(MultiPolygon::new(vec![p])),
            Geometry::MultiPolygon(m) => polys.push(m),
            _ => {}
        }
    })
    .expect("grids");
    let text = std::fs::read_to_string(points).expect("points");
    let pts: Vec<[f64; 2]> = text
        .lines()
        .skip(1)
        .map(|l| {
            let mut it = l.split(',').skip(1);
            [
                it.next().unwrap().parse().unwrap(),
                it.next().unwrap().parse().unwrap(),
            ]
        })
        .collect();
    let (mut build, mut query) = (f64::INFINITY, f64::INFINITY);
    let mut out = vec![None; pts.len()];
    let cell: Option<f64> = std::env::var("CELL")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap());
    let mut index = GridIndex::coverage_with_cells(&polys, cell);
    for _ in 0..runs {
        let t = Instant::now();
        index = GridIndex::coverage_with_cells(&polys, cell);
        build = build.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        index.locate_many(&pts, &mut out);
        query = query.min(t.elapsed().as_secs_f64());
    }
    let found = out.iter().filter(|o| o.is_some()).count();
    let sum: u64 = out.iter().map(|o| o.map_or(0, u64::from)).sum();
    println!(
        "{} polygons, {} points ({found} inside, checksum {sum}): build {:.1} ms, query {:.1} ms ({:.0} ns/pt)\n{:?}",
        polys.len(),
        pts.len(),
        build * 1e3,
        query * 1e3,
        query * 1e9 / pts.len() as f64,
        index.stats()
    );
}
