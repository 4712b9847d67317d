//! Tile encoding benches on the demo city (`wangge demo` →
//! `demo/beijing.gpkg`, or the store named by `WANGGE_BENCH_STORE`): the
//! densest tile at zoom 11, 14 and 16 (found by `benches/compare/tile_sizes.sh`)
//! and a row of ordinary z14 tiles, with and without simplification.
//!
//! Run: `cargo bench --bench tiles` (results in `target/criterion`). Without
//! the store the bench says so and measures nothing.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wangge_tiler::{TileCoord, Tiler, TilerOptions};

fn store() -> Option<PathBuf> {
    let p = std::env::var_os("WANGGE_BENCH_STORE")
        .map_or_else(|| PathBuf::from("demo/beijing.gpkg"), PathBuf::from);
    p.exists().then_some(p)
}

fn bench(c: &mut Criterion) {
    let Some(path) = store() else {
        eprintln!("tiles bench: no demo/beijing.gpkg (run `wangge demo`); nothing measured");
        return;
    };
    let densest = [(11, 1685, 775), (14, 13488, 6208), (16, 53952, 24830)];
    for simplify in [true, false] {
        let tiler = Tiler::open_with(
            &path,
            TilerOptions {
                simplify,
                ..TilerOptions::default()
            },
        )
        .expect("tiler");
        let mut g = c.benchmark_group(if simplify {
            "encode"
        } else {
            "encode_unsimplified"
        });
        for (z, x, y) in densest {
            let t = TileCoord::new(z, x, y).expect("tile");
            g.throughput(Throughput::Bytes(tiler.encode(t).len() as u64));
            g.bench_with_input(BenchmarkId::new("densest", format!("z{z}")), &t, |b, t| {
                b.iter(|| black_box(tiler.encode(*t)))
            });
        }
        // Sixteen tiles in a row across the city centre at z14.
        let row: Vec<TileCoord> = (13480..13496)
            .map(|x| TileCoord::new(14, x, 6208).expect("tile"))
            .collect();
        g.throughput(Throughput::Elements(row.len() as u64));
        g.bench_function("z14_row_of_16", |b| {
            b.iter(|| row.iter().map(|t| tiler.encode(*t).len()).sum::<usize>())
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
