//! Prometheus metrics in the text exposition format, kept with atomics and
//! one small map (no registry crate needed for a handful of series).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths of the unit.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micro.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cum += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micro.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const SIZE_BOUNDS: &[f64] = &[
    0.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 131072.0, 262144.0, 524288.0, 1048576.0,
];

/// The server's counters.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
    /// Tile requests answered from the cache.
    pub tile_hits: AtomicU64,
    /// Tile requests that had to encode the tile.
    pub tile_misses: AtomicU64,
    /// Uncompressed size of every encoded tile, bytes.
    pub tile_bytes: Histogram,
    /// Edits applied.
    pub edits: AtomicU64,
    /// Cached tiles dropped after edits.
    pub tiles_invalidated: AtomicU64,
    /// Changes of the change log the server brought itself up to date with
    /// (its own `POST /v1/changes` and other writers').
    pub changes_followed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            tile_hits: AtomicU64::new(0),
            tile_misses: AtomicU64::new(0),
            tile_bytes: Histogram::new(SIZE_BOUNDS),
            edits: AtomicU64::new(0),
            tiles_invalidated: AtomicU64::new(0),
            changes_followed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one answered request of `route` (the matched route pattern,
    /// so the label set stays small) with its status and duration.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_owned(), status)).or_insert(0) += 1;
        }
        let hist = match self.latency.lock() {
            Ok(mut m) => Arc::clone(
                m.entry(route.to_owned())
                    .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BOUNDS))),
            ),
            Err(_) => return,
        };
        hist.observe(seconds);
    }

    /// The text exposition of every series; `cache` is (entries, bytes,
    /// limit) of the tile cache.
    #[must_use]
    pub fn render(&self, cache: (usize, usize, usize)) -> String {
        let mut out = String::new();
        out.push_str("# HELP wangge_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE wangge_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "wangge_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP wangge_http_request_duration_seconds Time to answer, by route.\n\
             # TYPE wangge_http_request_duration_seconds histogram\n",
        );
        if let Ok(m) = self.latency.lock() {
            for (route, h) in m.iter() {
                h.render(
                    &mut out,
                    "wangge_http_request_duration_seconds",
                    &format!("route=\"{}\"", escape(route)),
                );
            }
        }
        let _ = write!(
            out,
            "# HELP wangge_tile_cache_hits_total Tile requests answered from the cache.\n\
             # TYPE wangge_tile_cache_hits_total counter\n\
             wangge_tile_cache_hits_total {}\n\
             # HELP wangge_tile_cache_misses_total Tile requests that encoded the tile.\n\
             # TYPE wangge_tile_cache_misses_total counter\n\
             wangge_tile_cache_misses_total {}\n\
             # HELP wangge_tile_cache_entries Tiles held in the cache.\n\
             # TYPE wangge_tile_cache_entries gauge\n\
             wangge_tile_cache_entries {}\n\
             # HELP wangge_tile_cache_bytes Bytes held in the cache (all encodings).\n\
             # TYPE wangge_tile_cache_bytes gauge\n\
             wangge_tile_cache_bytes {}\n\
             # HELP wangge_tile_cache_limit_bytes The cache's byte limit.\n\
             # TYPE wangge_tile_cache_limit_bytes gauge\n\
             wangge_tile_cache_limit_bytes {}\n\
             # HELP wangge_edits_total Edits applied.\n\
             # TYPE wangge_edits_total counter\n\
             wangge_edits_total {}\n\
             # HELP wangge_tile_cache_invalidated_total Cached tiles dropped after edits.\n\
             # TYPE wangge_tile_cache_invalidated_total counter\n\
             wangge_tile_cache_invalidated_total {}\n\
             # HELP wangge_changes_followed_total Changes of the change log applied to the in-memory index, counts and tiles.\n\
             # TYPE wangge_changes_followed_total counter\n\
             wangge_changes_followed_total {}\n",
            self.tile_hits.load(Relaxed),
            self.tile_misses.load(Relaxed),
            cache.0,
            cache.1,
            cache.2,
            self.edits.load(Relaxed),
            self.tiles_invalidated.load(Relaxed),
            self.changes_followed.load(Relaxed),
        );
        out.push_str(
            "# HELP wangge_tile_size_bytes Uncompressed size of encoded tiles.\n\
             # TYPE wangge_tile_size_bytes histogram\n",
        );
        self.tile_bytes
            .render(&mut out, "wangge_tile_size_bytes", "");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
