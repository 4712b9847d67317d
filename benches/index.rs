//! Point-in-grid index benches: build time, and point queries that land in
//! cell interiors, near boundaries and outside, for the raster-accelerated
//! [`GridIndex::locate`] (general build, one point at a time) and
//! [`GridIndex::locate_many`] on the coverage build (closed cells, batched)
//! against the H3 cell cover ([`GridIndex::h3_cover`]) and the plain R-tree
//! + exact-test path [`GridIndex::locate_rtree`].
//!
//! The polygons are real-shaped: the synthetic Beijing's communities with
//! 20,000 communities (about the number of grids of a large district set),
//! generated once into a temp store.
//!
//! Run: `cargo bench --bench index` (results in `target/criterion`).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use geo_types::{Geometry, MultiPolygon};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use wangge_engine::index::GridIndex;
use wangge_engine::io::geojson::read_geojson_from;
use wangge_engine::model::Layer;
use wangge_engine::progress::NoProgress;
use wangge_engine::store::Store;
use wangge_synth::{self as synth, SynthOptions};

/// The communities of a small-scale synthetic Beijing with `n` communities.
fn polygons(n: usize) -> Vec<MultiPolygon<f64>> {
    let census = synth::parse_census(synth::BEIJING_CENSUS_CSV, "census").expect("census");
    let mut feats = Vec::new();
    read_geojson_from(
        synth::BEIJING_DISTRICTS_GEOJSON.as_bytes(),
        std::path::Path::new("districts"),
        |f| feats.push(f.expect("district")),
    )
    .expect("districts");
    let (districts, _) = synth::prepare_districts(&feats, &census, "districts").expect("prepare");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.gpkg");
    let mut store = Store::create(&path).expect("store");
    let opts = SynthOptions {
        scale: 0.0002,
        seed: 1,
        communities_total: n,
        ..SynthOptions::default()
    };
    synth::synthesize(&mut store, &districts, &opts, &NoProgress).expect("synth");
    let mut out = Vec::new();
    store
        .for_each(Layer::Communities.name(), |f| {
            if let Geometry::MultiPolygon(m) = f.geometry {
                out.push(m);
            }
            Ok(())
        })
        .expect("read");
    out
}

/// Query sets of `n` points each: (name, points).
fn query_sets(
    idx: &GridIndex,
    polys: &[MultiPolygon<f64>],
    n: usize,
) -> Vec<(&'static str, Vec<[f64; 2]>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let (mut min, mut max) = ([f64::MAX; 2], [f64::MIN; 2]);
    for c in polys
        .iter()
        .flat_map(|m| m.0.iter())
        .flat_map(|p| p.exterior().0.iter())
    {
        min = [min[0].min(c.x), min[1].min(c.y)];
        max = [max[0].max(c.x), max[1].max(c.y)];
    }
    let mut uniform = || {
        [
            rng.random_range(min[0]..max[0]),
            rng.random_range(min[1]..max[1]),
        ]
    };
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    while inside.len() < n || outside.len() < n {
        let p = uniform();
        match idx.locate(p[0], p[1]) {
            Some(_) if inside.len() < n => inside.push(p),
            None if outside.len() < n => outside.push(p),
            _ => {}
        }
    }
    // Points 1e-7° off a random vertex-to-vertex edge: every one in a boundary cell.
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let rings: Vec<&[geo_types::Coord<f64>]> = polys
        .iter()
        .flat_map(|m| m.0.iter())
        .map(|p| p.exterior().0.as_slice())
        .collect();
    let mut boundary = Vec::with_capacity(n);
    while boundary.len() < n {
        let r = rings[rng.random_range(0..rings.len())];
        if r.len() < 2 {
            continue;
        }
        let i = rng.random_range(0..r.len() - 1);
        let t: f64 = rng.random();
        let (a, b) = (r[i], r[i + 1]);
        let off = if rng.random::<bool>() { 1e-7 } else { -1e-7 };
        boundary.push([a.x + t * (b.x - a.x) + off, a.y + t * (b.y - a.y) + off]);
    }
    // A million points spread over the whole box, as a registry in random
    // order: measures cache misses as much as the tests.
    let mut rng = ChaCha8Rng::seed_from_u64(44);
    let spread: Vec<[f64; 2]> = (0..1_000_000)
        .map(|_| {
            [
                rng.random_range(min[0]..max[0]),
                rng.random_range(min[1]..max[1]),
            ]
        })
        .collect();
    vec![
        ("inside", inside),
        ("boundary", boundary),
        ("outside", outside),
        ("spread-1m", spread),
    ]
}

fn bench(c: &mut Criterion) {
    let polys = polygons(20_000);
    let mut g = c.benchmark_group("build");
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("raster", polys.len()), |b| {
        b.iter(|| GridIndex::new(black_box(&polys)))
    });
    g.bench_function(BenchmarkId::new("raster-coverage", polys.len()), |b| {
        b.iter(|| GridIndex::new_coverage(black_box(&polys)))
    });
    g.finish();

    let idx = GridIndex::new(&polys);
    eprintln!("index: {:?}", idx.stats());
    let cover = GridIndex::new_coverage(&polys);
    eprintln!("coverage index: {:?}", cover.stats());
    let t = std::time::Instant::now();
    let h3 = idx.h3_cover(None);
    eprintln!(
        "h3 cover: resolution {}, (cells, boundary cells) {:?}, built in {:.2} s",
        h3.resolution(),
        h3.cell_counts(),
        t.elapsed().as_secs_f64()
    );
    let sets = query_sets(&idx, &polys, 20_000);
    let mut g = c.benchmark_group("locate");
    for (name, pts) in &sets {
        g.throughput(Throughput::Elements(pts.len() as u64));
        // The million-point set takes up to a second per iteration.
        g.sample_size(if pts.len() > 100_000 { 10 } else { 50 });
        g.bench_with_input(BenchmarkId::new("raster", name), pts, |b, pts| {
            b.iter(|| {
                pts.iter()
                    .filter(|p| idx.locate(p[0], p[1]).is_some())
                    .count()
            });
        });
        g.bench_with_input(
            BenchmarkId::new("raster-coverage-batch", name),
            pts,
            |b, pts| {
                let mut out = vec![None; pts.len()];
                b.iter(|| {
                    cover.locate_many(pts, &mut out);
                    out.iter().filter(|o| o.is_some()).count()
                });
            },
        );
        g.bench_with_input(BenchmarkId::new("h3", name), pts, |b, pts| {
            b.iter(|| {
                pts.iter()
                    .filter(|p| h3.locate(p[0], p[1]).is_some())
                    .count()
            });
        });
        g.bench_with_input(BenchmarkId::new("rtree", name), pts, |b, pts| {
            b.iter(|| {
                pts.iter()
                    .filter(|p| idx.locate_rtree(p[0], p[1]).is_some())
                    .count()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
