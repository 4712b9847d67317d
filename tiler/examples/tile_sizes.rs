//! Encodes every tile over a store's bounds for zooms `min..=max` (default
//! 0..=16) and prints, per zoom, the tile count, the largest tile and the
//! encoding time: the "no tile over 500 KB" check.
//!
//! `cargo run --release -p wangge-tiler --example tile_sizes -- STORE [MIN MAX]`

use std::time::Instant;

use rayon::prelude::*;
use wangge_tiler::Tiler;
use wangge_tiler::tile::tiles_covering;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let store = args.get(1).ok_or("usage: tile_sizes STORE [MIN MAX]")?;
    let min: u8 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let max: u8 = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let t0 = Instant::now();
    let tiler = Tiler::open(std::path::Path::new(store))?;
    println!(
        "open {:.2} s, bounds {:?}",
        t0.elapsed().as_secs_f64(),
        tiler.bounds()
    );
    for w in tiler.warnings() {
        println!("warning: {w}");
    }
    println!("zoom  tiles  non-empty  largest_bytes  largest_tile  total_MB  seconds  ms/tile");
    let mut worst = 0;
    for z in min..=max {
        let Some(r) = tiles_covering(tiler.bounds(), z) else {
            continue;
        };
        let tiles: Vec<_> = r.iter().collect();
        let t = Instant::now();
        let sizes: Vec<(usize, String)> = tiles
            .par_iter()
            .map(|t| (tiler.encode(*t).len(), t.to_string()))
            .collect();
        let s = t.elapsed().as_secs_f64();
        let nonempty = sizes.iter().filter(|x| x.0 > 0).count();
        let total: usize = sizes.iter().map(|x| x.0).sum();
        let big = sizes
            .iter()
            .max_by_key(|x| x.0)
            .cloned()
            .unwrap_or_default();
        worst = worst.max(big.0);
        let mut per_layer = String::new();
        if let Some(t) = tiles.iter().find(|t| t.to_string() == big.1) {
            let bytes = tiler.encode(*t);
            for l in wangge_tiler::mvt::decode(&bytes)? {
                per_layer.push_str(&format!(" {}={}", l.name, l.features.len()));
            }
        }
        println!(
            "{z:>4} {:>6} {:>10} {:>14} {:>13} {:>9.2} {:>8.2} {:>8.3}",
            tiles.len(),
            nonempty,
            big.0,
            big.1,
            total as f64 / 1e6,
            s,
            s * 1e3 / tiles.len() as f64
        );
        println!("      largest tile's features:{per_layer}");
    }
    println!(
        "largest tile: {worst} bytes ({})",
        if worst <= 500_000 {
            "<= 500 KB"
        } else {
            "OVER 500 KB"
        }
    );
    Ok(())
}
