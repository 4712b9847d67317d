//! Tile archives of a zoom range: **PMTiles v3** (`.pmtiles`) or
//! **MBTiles** (`.mbtiles`), chosen by the file extension.
//!
//! Tiles are encoded in parallel (rayon) in batches, gzip-compressed and
//! written in order; empty tiles are left out. Both formats carry the
//! TileJSON `vector_layers` of [`Tiler::layers`].
//!
//! PMTiles: header (127 bytes), root directory, metadata, leaf directories,
//! tile data, as the v3 specification lays them out. Tiles are written in
//! Hilbert tile-id order (`clustered`); runs of identical consecutive tiles
//! share one entry, identical small tiles elsewhere share their bytes;
//! directories and metadata are gzip-compressed; when the root directory
//! would not fit in the first 16 KiB the entries move to leaf directories.
//!
//! MBTiles: the 1.3 schema (`metadata`, `tiles` with TMS rows), gzip tiles,
//! `format = pbf` and a `json` entry with `vector_layers`.
//!
//! The archive is written to `<out>.tmp` and renamed into place when
//! complete, so an interrupted export never leaves a half archive at `out`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use flate2::Compression;
use flate2::write::GzEncoder;
use rayon::prelude::*;
use serde::Serialize;
use wangge_engine::progress::Progress;
use wangge_engine::store::mbtiles::MbTilesWriter;

use crate::TilerError;
use crate::source::Tiler;
use crate::tile::{MAX_ZOOM, TileCoord, tiles_covering};

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSummary {
    /// The archive.
    pub path: PathBuf,
    /// `"pmtiles"` or `"mbtiles"`.
    pub format: &'static str,
    /// Zoom range.
    pub minzoom: u8,
    /// Zoom range.
    pub maxzoom: u8,
    /// Tiles looked at (every tile over the data bounds in the range).
    pub tiles_visited: u64,
    /// Non-empty tiles written.
    pub tiles_written: u64,
    /// Size of the archive file in bytes.
    pub file_bytes: u64,
    /// Per zoom level: tiles written and the largest tile.
    pub zooms: Vec<ZoomStats>,
    /// Wall time.
    pub seconds: f64,
}

/// Tile counts and sizes of one zoom level of an export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZoomStats {
    /// Zoom level.
    pub z: u8,
    /// Non-empty tiles.
    pub tiles: u64,
    /// Sum of uncompressed tile sizes.
    pub bytes: u64,
    /// Largest uncompressed tile in bytes.
    pub max_bytes: u64,
    /// Its gzip-compressed size.
    pub max_gzip_bytes: u64,
    /// Its address `z/x/y`.
    pub max_tile: Option<String>,
}

/// Archive format, from the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    PmTiles,
    MbTiles,
}

/// Tiles encoded per parallel batch.
const BATCH: usize = 512;

/// Writes every non-empty tile of zooms `minzoom..=maxzoom` over the
/// tiler's bounds to `out` (`.pmtiles` or `.mbtiles`), reporting progress per
/// tile. An existing `out` is replaced only once the new archive is complete.
pub fn export(
    tiler: &Tiler,
    out: &Path,
    minzoom: u8,
    maxzoom: u8,
    progress: &dyn Progress,
) -> Result<ExportSummary, TilerError> {
    export_in(tiler, out, minzoom, maxzoom, None, progress)
}

/// [`export`], with `bbox` (`[min lon, min lat, max lon, max lat]`) only
/// the tiles that meet it.
pub fn export_in(
    tiler: &Tiler,
    out: &Path,
    minzoom: u8,
    maxzoom: u8,
    bbox: Option<[f64; 4]>,
    progress: &dyn Progress,
) -> Result<ExportSummary, TilerError> {
    let t0 = Instant::now();
    let b = tiler.bounds();
    let area = match bbox {
        Some(q) => [
            q[0].max(b[0]),
            q[1].max(b[1]),
            q[2].min(b[2]),
            q[3].min(b[3]),
        ],
        None => b,
    };
    let empty = tiler.is_empty() || area[0] > area[2] || area[1] > area[3];
    let format = match out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("pmtiles") => Format::PmTiles,
        Some(e) if e.eq_ignore_ascii_case("mbtiles") => Format::MbTiles,
        _ => {
            return Err(TilerError::Export(format!(
                "{}: the output must end in .pmtiles or .mbtiles",
                out.display()
            )));
        }
    };
    if minzoom > maxzoom || maxzoom > MAX_ZOOM {
        return Err(TilerError::Export(format!(
            "zoom range {minzoom}..={maxzoom} is invalid (0 <= minzoom <= maxzoom <= {MAX_ZOOM})"
        )));
    }
    let mut tiles: Vec<(u64, TileCoord)> = Vec::new();
    // An empty store has the world as bounds: nothing to enumerate.
    for z in (minzoom..=maxzoom).filter(|_| !empty) {
        if let Some(r) = tiles_covering(area, z) {
            tiles.extend(r.iter().map(|t| (tile_id(t), t)));
        }
    }
    tiles.sort_unstable_by_key(|t| t.0);
    progress.stage("encoding tiles", tiles.len() as u64);
    let tmp = tmp_path(out);
    let _ = std::fs::remove_file(&tmp);
    let mut zooms: Vec<ZoomStats> = (minzoom..=maxzoom)
        .map(|z| ZoomStats {
            z,
            tiles: 0,
            bytes: 0,
            max_bytes: 0,
            max_gzip_bytes: 0,
            max_tile: None,
        })
        .collect();
    let mut sink: Box<dyn Sink> = match format {
        Format::PmTiles => Box::new(PmTilesSink::new(&tmp)?),
        Format::MbTiles => Box::new(MbTilesSink::new(&tmp)?),
    };
    let mut written = 0u64;
    for batch in tiles.chunks(BATCH) {
        let encoded: Vec<(u64, TileCoord, usize, Vec<u8>)> = batch
            .par_iter()
            .filter_map(|&(id, t)| {
                let raw = tiler.encode(t);
                (!raw.is_empty()).then(|| (id, t, raw.len(), gzip(&raw)))
            })
            .collect();
        for (id, t, raw_len, gz) in encoded {
            let s = &mut zooms[usize::from(t.z() - minzoom)];
            s.tiles += 1;
            s.bytes += raw_len as u64;
            if raw_len as u64 > s.max_bytes {
                s.max_bytes = raw_len as u64;
                s.max_gzip_bytes = gz.len() as u64;
                s.max_tile = Some(t.to_string());
            }
            sink.add(id, t, &gz)?;
            written += 1;
        }
        progress.inc(batch.len() as u64);
    }
    sink.finish(tiler, minzoom, maxzoom)?;
    std::fs::rename(&tmp, out).map_err(io_err(out))?;
    let file_bytes = std::fs::metadata(out).map_err(io_err(out))?.len();
    Ok(ExportSummary {
        path: out.to_owned(),
        format: match format {
            Format::PmTiles => "pmtiles",
            Format::MbTiles => "mbtiles",
        },
        minzoom,
        maxzoom,
        tiles_visited: tiles.len() as u64,
        tiles_written: written,
        file_bytes,
        zooms,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TilerError + '_ {
    move |source| TilerError::Io {
        path: path.to_owned(),
        source,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::with_capacity(data.len() / 2 + 32), Compression::new(6));
    e.write_all(data).expect("writing to a Vec cannot fail");
    e.finish().expect("writing to a Vec cannot fail")
}

/// The PMTiles v3 tile id: tiles of all lower zooms first, then the
/// position along the Hilbert curve at zoom `z`.
#[must_use]
pub fn tile_id(t: TileCoord) -> u64 {
    let z = u32::from(t.z());
    let mut acc: u64 = ((1u64 << (2 * z)) - 1) / 3;
    let (mut x, mut y) = (u64::from(t.x()), u64::from(t.y()));
    for a in (0..z).rev() {
        let s = 1u64 << a;
        let rx = u64::from(x & s != 0);
        let ry = u64::from(y & s != 0);
        acc += ((3 * rx) ^ ry) << (2 * a);
        // Rotate the quadrant (only the bits below `s` matter from here on).
        if ry == 0 {
            if rx == 1 {
                x = s.wrapping_sub(1).wrapping_sub(x);
                y = s.wrapping_sub(1).wrapping_sub(y);
            }
            std::mem::swap(&mut x, &mut y);
        }
    }
    acc
}

trait Sink {
    fn add(&mut self, id: u64, t: TileCoord, gz: &[u8]) -> Result<(), TilerError>;
    fn finish(self: Box<Self>, tiler: &Tiler, minzoom: u8, maxzoom: u8) -> Result<(), TilerError>;
}

fn metadata_json(tiler: &Tiler, minzoom: u8, maxzoom: u8) -> serde_json::Value {
    let name = tiler
        .path()
        .file_stem()
        .map_or_else(|| "wangge".to_owned(), |s| s.to_string_lossy().into_owned());
    serde_json::json!({
        "name": name,
        "description": "wangge grid-management layers",
        "format": "pbf",
        "type": "overlay",
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": tiler.bounds(),
        "vector_layers": tiler.layers(),
    })
}

// ---------------------------------------------------------------------------
// PMTiles v3

#[derive(Debug, Clone, Copy)]
struct Entry {
    tile_id: u64,
    offset: u64,
    length: u32,
    run_length: u32,
}

/// Tiles up to this size are deduplicated by content across the archive.
const DEDUP_MAX: usize = 2048;
const HEADER_LEN: usize = 127;
const ROOT_MAX: usize = 16_384 - HEADER_LEN;

struct PmTilesSink {
    path: PathBuf,
    data_path: PathBuf,
    data: BufWriter<File>,
    offset: u64,
    entries: Vec<Entry>,
    last: Vec<u8>,
    seen: HashMap<Vec<u8>, (u64, u32)>,
    contents: u64,
}

impl PmTilesSink {
    fn new(path: &Path) -> Result<PmTilesSink, TilerError> {
        let mut data_path = path.as_os_str().to_owned();
        data_path.push(".data");
        let data_path = PathBuf::from(data_path);
        let f = File::create(&data_path).map_err(io_err(&data_path))?;
        Ok(PmTilesSink {
            path: path.to_owned(),
            data_path,
            data: BufWriter::new(f),
            offset: 0,
            entries: Vec::new(),
            last: Vec::new(),
            seen: HashMap::new(),
            contents: 0,
        })
    }
}

impl Sink for PmTilesSink {
    fn add(&mut self, id: u64, _t: TileCoord, gz: &[u8]) -> Result<(), TilerError> {
        if let Some(e) = self.entries.last_mut()
            && e.tile_id + u64::from(e.run_length) == id
            && self.last == gz
        {
            e.run_length += 1;
            return Ok(());
        }
        let (offset, length) = match self.seen.get(gz) {
            Some(&at) => at,
            None => {
                let at = (self.offset, gz.len() as u32);
                self.data.write_all(gz).map_err(io_err(&self.data_path))?;
                self.offset += gz.len() as u64;
                self.contents += 1;
                if gz.len() <= DEDUP_MAX {
                    self.seen.insert(gz.to_vec(), at);
                }
                at
            }
        };
        self.entries.push(Entry {
            tile_id: id,
            offset,
            length,
            run_length: 1,
        });
        self.last.clear();
        self.last.extend_from_slice(gz);
        Ok(())
    }

    fn finish(self: Box<Self>, tiler: &Tiler, minzoom: u8, maxzoom: u8) -> Result<(), TilerError> {
        let PmTilesSink {
            path,
            data_path,
            data,
            offset: data_len,
            entries,
            contents,
            ..
        } = *self;
        data.into_inner()
            .map_err(|e| TilerError::Io {
                path: data_path.clone(),
                source: e.into_error(),
            })?
            .sync_all()
            .map_err(io_err(&data_path))?;
        let (root, leaves) = build_directories(&entries);
        let meta =
            gzip(&serde_json::to_vec(&metadata_json(tiler, minzoom, maxzoom)).expect("json"));
        let root_off = HEADER_LEN as u64;
        let meta_off = root_off + root.len() as u64;
        let leaf_off = meta_off + meta.len() as u64;
        let data_off = leaf_off + leaves.len() as u64;
        let addressed: u64 = entries.iter().map(|e| u64::from(e.run_length)).sum();
        let b = tiler.bounds();
        let e7 = |v: f64| (v * 1e7).round() as i32;
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(b"PMTiles");
        h.push(3);
        for v in [
            root_off,
            root.len() as u64,
            meta_off,
            meta.len() as u64,
            leaf_off,
            leaves.len() as u64,
            data_off,
            data_len,
            addressed,
            entries.len() as u64,
            contents,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        // clustered, internal compression gzip (2), tile compression gzip
        // (2), tile type MVT (1), zooms.
        h.extend_from_slice(&[1, 2, 2, 1, minzoom, maxzoom]);
        for v in [b[0], b[1], b[2], b[3]] {
            h.extend_from_slice(&e7(v).to_le_bytes());
        }
        h.push(minzoom.max(maxzoom.saturating_sub(2)).min(maxzoom));
        h.extend_from_slice(&e7((b[0] + b[2]) / 2.0).to_le_bytes());
        h.extend_from_slice(&e7((b[1] + b[3]) / 2.0).to_le_bytes());
        debug_assert_eq!(h.len(), HEADER_LEN);
        let f = File::create(&path).map_err(io_err(&path))?;
        let mut w = BufWriter::new(f);
        let werr = io_err(&path);
        w.write_all(&h).map_err(&werr)?;
        w.write_all(&root).map_err(&werr)?;
        w.write_all(&meta).map_err(&werr)?;
        w.write_all(&leaves).map_err(&werr)?;
        let mut r = File::open(&data_path).map_err(io_err(&data_path))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf).map_err(io_err(&data_path))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).map_err(&werr)?;
        }
        w.into_inner()
            .map_err(|e| TilerError::Io {
                path: path.clone(),
                source: e.into_error(),
            })?
            .sync_all()
            .map_err(&werr)?;
        let _ = std::fs::remove_file(&data_path);
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A gzip-compressed directory (spec §4: count, then delta ids, run
/// lengths, lengths, offsets with 0 meaning "right after the previous").
fn serialize_directory(entries: &[Entry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(entries.len() * 4 + 8);
    put_varint(&mut b, entries.len() as u64);
    let mut last = 0;
    for e in entries {
        put_varint(&mut b, e.tile_id - last);
        last = e.tile_id;
    }
    for e in entries {
        put_varint(&mut b, e.run_length.into());
    }
    for e in entries {
        put_varint(&mut b, e.length.into());
    }
    for (i, e) in entries.iter().enumerate() {
        if i > 0 && e.offset == entries[i - 1].offset + u64::from(entries[i - 1].length) {
            put_varint(&mut b, 0);
        } else {
            put_varint(&mut b, e.offset + 1);
        }
    }
    gzip(&b)
}

/// The root directory and the concatenated leaf directories: everything in
/// the root when it fits in the first 16 KiB, else leaves of growing size
/// until the root of leaf pointers fits.
fn build_directories(entries: &[Entry]) -> (Vec<u8>, Vec<u8>) {
    let root = serialize_directory(entries);
    if root.len() <= ROOT_MAX {
        return (root, Vec::new());
    }
    let mut leaf_size = 4096usize;
    loop {
        let mut leaves = Vec::new();
        let mut pointers = Vec::new();
        for chunk in entries.chunks(leaf_size) {
            let leaf = serialize_directory(chunk);
            pointers.push(Entry {
                tile_id: chunk[0].tile_id,
                offset: leaves.len() as u64,
                length: leaf.len() as u32,
                run_length: 0,
            });
            leaves.extend_from_slice(&leaf);
        }
        let root = serialize_directory(&pointers);
        if root.len() <= ROOT_MAX {
            return (root, leaves);
        }
        leaf_size *= 2;
    }
}

// ---------------------------------------------------------------------------
// MBTiles

struct MbTilesSink(MbTilesWriter);

impl MbTilesSink {
    fn new(path: &Path) -> Result<MbTilesSink, TilerError> {
        Ok(MbTilesSink(MbTilesWriter::create(path)?))
    }
}

impl Sink for MbTilesSink {
    fn add(&mut self, _id: u64, t: TileCoord, gz: &[u8]) -> Result<(), TilerError> {
        Ok(self.0.add(t.z(), t.x(), t.tms_y(), gz)?)
    }

    fn finish(self: Box<Self>, tiler: &Tiler, minzoom: u8, maxzoom: u8) -> Result<(), TilerError> {
        let b = tiler.bounds();
        let meta = metadata_json(tiler, minzoom, maxzoom);
        let json = serde_json::json!({ "vector_layers": tiler.layers() }).to_string();
        let center_zoom = minzoom.max(maxzoom.saturating_sub(2)).min(maxzoom);
        let rows = [
            ("name", meta["name"].as_str().unwrap_or("wangge").to_owned()),
            ("description", "wangge grid-management layers".to_owned()),
            ("format", "pbf".to_owned()),
            ("type", "overlay".to_owned()),
            ("version", "1".to_owned()),
            ("minzoom", minzoom.to_string()),
            ("maxzoom", maxzoom.to_string()),
            ("bounds", format!("{},{},{},{}", b[0], b[1], b[2], b[3])),
            (
                "center",
                format!(
                    "{},{},{center_zoom}",
                    (b[0] + b[2]) / 2.0,
                    (b[1] + b[3]) / 2.0
                ),
            ),
            ("json", json),
        ];
        Ok(self.0.finish(&rows)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(z: u8, x: u32, y: u32) -> TileCoord {
        TileCoord::new(z, x, y).unwrap()
    }

    /// The tile ids of the PMTiles v3 specification's examples.
    #[test]
    fn tile_ids_by_hand() {
        assert_eq!(tile_id(t(0, 0, 0)), 0);
        // Zoom 1 in Hilbert order: (0,0) (0,1) (1,1) (1,0).
        assert_eq!(tile_id(t(1, 0, 0)), 1);
        assert_eq!(tile_id(t(1, 0, 1)), 2);
        assert_eq!(tile_id(t(1, 1, 1)), 3);
        assert_eq!(tile_id(t(1, 1, 0)), 4);
        // Zoom 2 starts at 1 + 4 = 5 with (0,0).
        assert_eq!(tile_id(t(2, 0, 0)), 5);
        // The last tile of zoom 2 on the curve is (3,0): 5 + 15.
        assert_eq!(tile_id(t(2, 3, 0)), 20);
        // Every id of zoom 3 appears once.
        let mut ids: Vec<u64> = (0..8)
            .flat_map(|x| (0..8).map(move |y| tile_id(t(3, x, y))))
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (21..85).collect::<Vec<u64>>());
        // Consecutive ids are neighbours (the curve is continuous).
        let mut by_id: Vec<(u64, (u32, u32))> = (0..8)
            .flat_map(|x| (0..8).map(move |y| (tile_id(t(3, x, y)), (x, y))))
            .collect();
        by_id.sort_unstable();
        for w in by_id.windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            assert_eq!(a.0.abs_diff(b.0) + a.1.abs_diff(b.1), 1, "{a:?} {b:?}");
        }
    }

    #[test]
    fn directory_encoding_by_hand() {
        let e = [
            Entry {
                tile_id: 5,
                offset: 0,
                length: 10,
                run_length: 1,
            },
            Entry {
                tile_id: 7,
                offset: 10,
                length: 3,
                run_length: 2,
            },
            Entry {
                tile_id: 9,
                offset: 0,
                length: 10,
                run_length: 1,
            },
        ];
        let gz = serialize_directory(&e);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        // count, ids 5 +2 +2, runs, lengths, offsets 0+1, 0 (contiguous), 0+1.
        assert_eq!(raw, [3, 5, 2, 2, 1, 2, 1, 10, 3, 10, 1, 0, 1]);
    }

    #[test]
    fn large_directories_go_to_leaves() {
        let entries: Vec<Entry> = (0..200_000u64)
            .map(|i| Entry {
                tile_id: i * 3,
                offset: i * 1000 + (i % 7) * 13,
                length: 900 + (i % 97) as u32,
                run_length: 1,
            })
            .collect();
        let (root, leaves) = build_directories(&entries);
        assert!(root.len() <= ROOT_MAX);
        assert!(!leaves.is_empty());
    }
}
