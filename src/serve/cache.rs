//! The in-memory tile cache: one entry per tile holding the uncompressed
//! tile and the compressed variants asked for so far, under a byte limit.
//!
//! Eviction is second-chance FIFO (CLOCK): cheap, and close to LRU for tile
//! traffic. Invalidation removes the tiles a predicate picks (after an edit:
//! exactly those the edit's [`wangge_tiler::Changes`] touch) and bumps a
//! generation counter, so a tile encoded from data older than the
//! invalidation is never put back.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use axum::body::Bytes;

/// A tile of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileKey {
    /// Position of the source in the server's list.
    pub source: u16,
    /// Zoom.
    pub z: u8,
    /// Column.
    pub x: u32,
    /// Row (XYZ scheme, 0 at the north).
    pub y: u32,
}

/// A content encoding of a tile response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Uncompressed.
    Identity,
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
}

impl Encoding {
    /// The `Content-Encoding` value (`None` for identity).
    #[must_use]
    pub fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }

    /// The ETag suffix that keeps each representation's tag distinct.
    fn suffix(self) -> &'static str {
        match self {
            Encoding::Identity => "",
            Encoding::Gzip => ".gz",
            Encoding::Brotli => ".br",
        }
    }

    /// Compresses `raw` in this encoding.
    #[must_use]
    pub fn compress(self, raw: &[u8]) -> Bytes {
        use std::io::Write;
        match self {
            Encoding::Identity => Bytes::copy_from_slice(raw),
            Encoding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(raw.len() / 2 + 64),
                    flate2::Compression::new(6),
                );
                // Writing to a Vec cannot fail.
                let _ = e.write_all(raw);
                Bytes::from(e.finish().unwrap_or_default())
            }
            Encoding::Brotli => {
                let mut out = Vec::with_capacity(raw.len() / 2 + 64);
                {
                    // Quality 5: most of brotli's gain at a few times gzip's cost.
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    let _ = w.write_all(raw);
                }
                Bytes::from(out)
            }
        }
    }
}

/// A cached tile.
#[derive(Debug, Clone)]
pub struct CachedTile {
    /// The uncompressed MVT (empty when the tile has no features).
    pub raw: Bytes,
    /// Content hash, the stem of every representation's ETag.
    pub hash: u64,
    gzip: Option<Bytes>,
    br: Option<Bytes>,
    used: bool,
}

impl CachedTile {
    /// A tile and its content hash.
    #[must_use]
    pub fn new(raw: Bytes) -> CachedTile {
        let mut h = std::hash::DefaultHasher::new();
        raw.hash(&mut h);
        CachedTile {
            hash: h.finish(),
            raw,
            gzip: None,
            br: None,
            used: false,
        }
    }

    /// The body in `enc`, when it was computed.
    #[must_use]
    pub fn variant(&self, enc: Encoding) -> Option<Bytes> {
        match enc {
            Encoding::Identity => Some(self.raw.clone()),
            Encoding::Gzip => self.gzip.clone(),
            Encoding::Brotli => self.br.clone(),
        }
    }

    /// Stores the body in `enc`.
    pub fn set_variant(&mut self, enc: Encoding, body: Bytes) {
        match enc {
            Encoding::Identity => {}
            Encoding::Gzip => self.gzip = Some(body),
            Encoding::Brotli => self.br = Some(body),
        }
    }

    /// The strong ETag of the representation in `enc`, quoted.
    #[must_use]
    pub fn etag(&self, enc: Encoding) -> String {
        format!("\"{:016x}{}\"", self.hash, enc.suffix())
    }

    /// Does an `If-None-Match` value name this tile (any encoding of the same
    /// content, or `*`)?
    #[must_use]
    pub fn matches(&self, if_none_match: &str) -> bool {
        let stem = format!("{:016x}", self.hash);
        if_none_match.split(',').any(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            if t == "*" {
                return true;
            }
            let t = t.trim_matches('"');
            let t = t
                .strip_suffix(".gz")
                .or_else(|| t.strip_suffix(".br"))
                .unwrap_or(t);
            t == stem
        })
    }

    fn bytes(&self) -> usize {
        // Key, entry and map overhead, roughly.
        96 + self.raw.len()
            + self.gzip.as_ref().map_or(0, Bytes::len)
            + self.br.as_ref().map_or(0, Bytes::len)
    }
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<TileKey, CachedTile>,
    order: VecDeque<TileKey>,
    bytes: usize,
    generation: u64,
}

/// The tile cache; see the module docs.
#[derive(Debug)]
pub struct TileCache {
    inner: Mutex<Inner>,
    limit: usize,
}

impl TileCache {
    /// A cache holding at most `limit` bytes (0 disables it).
    #[must_use]
    pub fn new(limit: usize) -> TileCache {
        TileCache {
            inner: Mutex::new(Inner::default()),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (every
        // mutation is a single call), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current generation; pass it back to [`TileCache::insert`].
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The cached tile, marked as recently used.
    #[must_use]
    pub fn get(&self, key: &TileKey) -> Option<CachedTile> {
        let mut g = self.lock();
        let e = g.map.get_mut(key)?;
        e.used = true;
        Some(e.clone())
    }

    /// Stores a tile encoded at `generation`, unless an invalidation came
    /// since (the tile may be stale) or it alone exceeds the limit. An
    /// existing entry is replaced (it gains the new variants).
    pub fn insert(&self, key: TileKey, generation: u64, tile: CachedTile) {
        let size = tile.bytes();
        if size > self.limit {
            return;
        }
        let mut g = self.lock();
        if g.generation != generation {
            return;
        }
        if let Some(old) = g.map.insert(key, tile) {
            g.bytes -= old.bytes();
        } else {
            g.order.push_back(key);
        }
        g.bytes += size;
        while g.bytes > self.limit {
            let Some(k) = g.order.pop_front() else { break };
            let second_chance = match g.map.get_mut(&k) {
                Some(e) if e.used && k != key => {
                    e.used = false;
                    true
                }
                Some(_) => false,
                None => continue,
            };
            if second_chance {
                g.order.push_back(k);
            } else if let Some(e) = g.map.remove(&k) {
                g.bytes -= e.bytes();
            }
        }
        if g.order.len() > 2 * g.map.len() + 1024 {
            let keys: VecDeque<TileKey> = g.map.keys().copied().collect();
            g.order = keys;
        }
    }

    /// Removes every tile of every zoom (of every source) whose area, with
    /// twice the MVT buffer around it, touches the lon/lat box
    /// `[min_lon, min_lat, max_lon, max_lat]`. Returns how many were removed.
    pub fn invalidate_bbox(&self, bbox: [f64; 4]) -> usize {
        self.invalidate_where(|k| tile_touches(k.z, k.x, k.y, bbox))
    }

    /// Removes every tile for which `stale` answers true, and makes every
    /// insert that began before this call a no-op (the tile it brings may
    /// be stale). Returns how many were removed.
    pub fn invalidate_where(&self, mut stale: impl FnMut(&TileKey) -> bool) -> usize {
        let mut g = self.lock();
        g.generation += 1;
        let before = g.map.len();
        let mut freed = 0;
        g.map.retain(|k, e| {
            let keep = !stale(k);
            if !keep {
                freed += e.bytes();
            }
            keep
        });
        g.bytes -= freed;
        before - g.map.len()
    }

    /// Is the tile cached? (Does not count as a use.)
    #[must_use]
    pub fn contains(&self, key: &TileKey) -> bool {
        self.lock().map.contains_key(key)
    }

    /// Removes everything.
    pub fn clear(&self) {
        let mut g = self.lock();
        g.generation += 1;
        g.map.clear();
        g.order.clear();
        g.bytes = 0;
    }

    /// (entries, bytes, limit).
    #[must_use]
    pub fn usage(&self) -> (usize, usize, usize) {
        let g = self.lock();
        (g.map.len(), g.bytes, self.limit)
    }
}

/// The share of a tile's width around it that its features may reach (MVT
/// buffer 64 of extent 4096), doubled for safety.
const BUFFER: f64 = 128.0 / 4096.0;

/// Does tile z/x/y, grown by twice the MVT buffer (128 of 4096), touch the
/// lon/lat box?
#[must_use]
pub fn tile_touches(z: u8, x: u32, y: u32, bbox: [f64; 4]) -> bool {
    let n = f64::from(1u32 << z.min(31));
    let (fx0, fx1) = (lon_to_x(bbox[0]) * n, lon_to_x(bbox[2]) * n);
    // y grows southwards.
    let (fy0, fy1) = (lat_to_y(bbox[3]) * n, lat_to_y(bbox[1]) * n);
    let (x, y) = (f64::from(x), f64::from(y));
    x - BUFFER <= fx1 && x + 1.0 + BUFFER >= fx0 && y - BUFFER <= fy1 && y + 1.0 + BUFFER >= fy0
}

/// Longitude → Web Mercator x in [0, 1].
fn lon_to_x(lon: f64) -> f64 {
    ((lon + 180.0) / 360.0).clamp(0.0, 1.0)
}

/// Latitude → Web Mercator y in [0, 1] (0 at the north edge).
fn lat_to_y(lat: f64) -> f64 {
    let lat = lat.clamp(-85.051_128_78, 85.051_128_78).to_radians();
    ((1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(z: u8, x: u32, y: u32) -> TileKey {
        TileKey { source: 0, z, x, y }
    }

    #[test]
    fn invalidation_removes_exactly_the_touching_tiles() {
        let c = TileCache::new(1 << 20);
        // Beijing centre at z14: x 13489, y 6208.
        let g = c.generation();
        for (z, x, y) in [
            (14, 13489, 6208),
            (14, 13000, 6208),
            (0, 0, 0),
            (10, 843, 388),
        ] {
            c.insert(key(z, x, y), g, CachedTile::new(Bytes::from_static(b"abc")));
        }
        assert_eq!(c.usage().0, 4);
        let removed = c.invalidate_bbox([116.39, 39.90, 116.40, 39.91]);
        assert_eq!(removed, 3);
        assert!(c.get(&key(14, 13000, 6208)).is_some());
        // An insert that began before the invalidation is dropped.
        c.insert(key(14, 13489, 6208), g, CachedTile::new(Bytes::new()));
        assert!(c.get(&key(14, 13489, 6208)).is_none());
    }

    #[test]
    fn the_byte_limit_holds() {
        let c = TileCache::new(10_000);
        let g = c.generation();
        for i in 0..100 {
            c.insert(
                key(10, i, 0),
                g,
                CachedTile::new(Bytes::from(vec![7u8; 1000])),
            );
            assert!(c.usage().1 <= 10_000);
        }
        assert!(c.usage().0 >= 8);
    }

    #[test]
    fn etags_differ_by_encoding_and_match_any() {
        let t = CachedTile::new(Bytes::from_static(b"tile"));
        assert_ne!(t.etag(Encoding::Gzip), t.etag(Encoding::Identity));
        assert!(t.matches(&t.etag(Encoding::Brotli)));
        assert!(t.matches(&format!("\"x\", W/{}", t.etag(Encoding::Identity))));
        assert!(!t.matches("\"0000000000000000\""));
    }

    #[test]
    fn compression_round_trips() {
        let raw: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
        let gz = Encoding::Gzip.compress(&raw);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, raw);
        let br = Encoding::Brotli.compress(&raw);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut brotli::Decompressor::new(&br[..], 4096), &mut out)
            .unwrap();
        assert_eq!(out, raw);
    }
}
