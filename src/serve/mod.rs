//! `wangge serve`: the HTTP API (locate, grids, communities, edits), vector
//! tiles with a cache, health and metrics, on axum and tokio.
//!
//! Everything that reads the store or spends CPU (locating batches,
//! encoding and compressing tiles, GeoJSON, edits) runs on the blocking
//! pool, never on the async executor. Errors are JSON `{"error": …}` with a
//! status that says what was wrong; 5xx bodies never carry internals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};
use wangge_engine::privacy::Privacy;
use wangge_engine::store::AnyStore;

mod cache;
mod changes;
mod edits;
mod error;
mod grids;
mod locate;
mod metrics;
mod tiles;
mod viewer;

pub use cache::{CachedTile, Encoding, TileCache, TileKey, tile_touches};
pub use error::ApiError;
pub use grids::Directory;
pub use locate::{Locator, MAX_POINTS};
pub use metrics::Metrics;
pub use tiles::{TileSource, VectorLayer, negotiate};
pub use wangge_tiler::Changes as TileChanges;
pub use wangge_tiler::serving::StoreTiles;

use crate::cli::Ui;

/// `wangge serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The store to serve: a GeoPackage or a PostgreSQL URL (postgres://user@host:port/db;
    /// any number of servers may serve one database).
    #[arg(long)]
    pub store: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Bearer token that edits must present; without it edits are disabled
    /// (403). Also read from WANGGE_TOKEN.
    #[arg(long, env = "WANGGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tile cache size, MiB (0 disables the cache).
    #[arg(long, default_value_t = 256)]
    pub cache_mb: usize,
    /// Largest request body, MiB (larger: 413).
    #[arg(long, default_value_t = 16)]
    pub body_limit_mb: usize,
    /// Longest time to answer a request, seconds (longer: 408).
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,
    /// Longest time a client may take to send a request's headers, seconds
    /// (slower: the connection is closed).
    #[arg(long, default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Serve no tiles (faster start, less memory: the API only).
    #[arg(long)]
    pub no_tiles: bool,
    /// Privacy threshold k: no public count of households or persons below
    /// it (tiles, TileJSON, anonymous API answers; complementary cells too).
    /// Requests with the token get exact counts.
    #[arg(long, default_value_t = wangge_engine::privacy::DEFAULT_K,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub privacy_k: u32,
}

/// Settings of a server beyond its store and tile sources.
#[derive(Debug, Clone)]
pub struct Options {
    /// The edit token (`None`: edits disabled).
    pub token: Option<String>,
    /// Tile cache limit, bytes.
    pub cache_bytes: usize,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Request timeout.
    pub timeout: Duration,
    /// `host:port` used in URLs when a request has no usable Host header.
    pub addr: String,
    /// The publication rule for counts in public answers.
    pub privacy: Privacy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            cache_bytes: 256 << 20,
            body_limit: 16 << 20,
            timeout: Duration::from_secs(60),
            addr: "127.0.0.1:8080".into(),
            privacy: Privacy::default(),
        }
    }
}

/// Idle read connections to the store, opened on demand.
#[derive(Debug)]
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<AnyStore>>,
}

impl ReadPool {
    /// Runs `f` with a connection (call from the blocking pool).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&AnyStore) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        // Connections the database dropped (a restart) are left behind.
        let taken = self.idle.lock().ok().and_then(|mut v| {
            v.retain(|s| !s.is_broken());
            v.pop()
        });
        let store = match taken {
            Some(s) => s,
            None => open_reader(&self.path)?,
        };
        let out = f(&store);
        // A connection the database dropped is not kept.
        if !store.is_broken()
            && let Ok(mut v) = self.idle.lock()
            && v.len() < 8
        {
            v.push(store);
        }
        out
    }
}

/// Opens the store (a reader waits for an edit's write transaction, as
/// [`Store::open`] sets a busy timeout, instead of failing with "database is
/// locked").
pub(crate) fn open_reader(path: &std::path::Path) -> Result<AnyStore, ApiError> {
    Ok(AnyStore::open(path)?)
}

/// Everything the handlers share.
pub struct AppState {
    pub(crate) store_path: PathBuf,
    pub(crate) addr: String,
    locator: RwLock<Arc<Locator>>,
    directory: RwLock<Arc<Directory>>,
    pub(crate) pool: ReadPool,
    pub(crate) sources: Vec<Arc<dyn TileSource>>,
    pub(crate) cache: TileCache,
    pub(crate) metrics: Metrics,
    pub(crate) token: Option<String>,
    pub(crate) privacy: Privacy,
    pub(crate) edits: tokio::sync::Mutex<()>,
    /// The position in the store's log of versions up to which the index,
    /// directory and tiles are current (see [`AppState::catch_up`]).
    seen: std::sync::atomic::AtomicI64,
    /// The position in the store's change log up to which they are current.
    seen_changes: std::sync::atomic::AtomicI64,
    /// The change stream's events.
    pub(crate) feed: changes::Feed,
    /// The store's count of writes no log describes, when last read
    /// whole.
    generation: std::sync::atomic::AtomicI64,
    body_limit: usize,
    timeout: Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store_path", &self.store_path)
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Reads the store's grid index and directory and takes the tile sources.
    ///
    /// # Errors
    /// When the store cannot be read or has nothing to locate in.
    pub fn open(
        store_path: PathBuf,
        sources: Vec<Arc<dyn TileSource>>,
        options: Options,
    ) -> Result<AppState> {
        let store = open_reader(&store_path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let locator = Locator::load(&store)?;
        let directory =
            Directory::load(&store, options.privacy).map_err(|e| anyhow::anyhow!("{e}"))?;
        let seen = store
            .last_version_position()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let seen_changes = store
            .last_change_seq()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let generation = store
            .write_generation()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(AppState {
            seen: std::sync::atomic::AtomicI64::new(seen),
            seen_changes: std::sync::atomic::AtomicI64::new(seen_changes),
            feed: changes::Feed::new(seen_changes),
            generation: std::sync::atomic::AtomicI64::new(generation),
            pool: ReadPool {
                path: store_path.clone(),
                idle: Mutex::new(vec![store]),
            },
            store_path,
            addr: options.addr,
            locator: RwLock::new(Arc::new(locator)),
            directory: RwLock::new(Arc::new(directory)),
            sources,
            cache: TileCache::new(options.cache_bytes),
            metrics: Metrics::default(),
            token: options.token,
            privacy: options.privacy,
            edits: tokio::sync::Mutex::new(()),
            body_limit: options.body_limit,
            timeout: options.timeout,
        })
    }

    /// The current point index.
    #[must_use]
    pub fn locator(&self) -> Arc<Locator> {
        Arc::clone(&self.locator.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The current grid directory.
    #[must_use]
    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The tile cache.
    #[must_use]
    pub fn cache(&self) -> &TileCache {
        &self.cache
    }

    /// Drops the cached tiles of every zoom that touch a lon/lat box
    /// `[min_lon, min_lat, max_lon, max_lat]`; returns how many.
    pub fn invalidate_bbox(&self, bbox: [f64; 4]) -> usize {
        self.cache.invalidate_bbox(bbox)
    }

    /// The position of source `id` in the server's list (the
    /// [`TileKey::source`] of its tiles).
    #[must_use]
    pub fn source_index(&self, id: &str) -> Option<u16> {
        self.sources
            .iter()
            .position(|s| s.id() == id)
            .map(|i| i as u16)
    }

    /// Catches up with every version recorded since the last one seen, by
    /// this server's own edits or by other processes (a CLI `edit` or
    /// `partition` on the file being served), for just the changed
    /// communities (from the whole store when more than
    /// [`INCREMENTAL_MAX`] changed): the grid directory first, then each
    /// changed community's tiles are re-read and exactly their cached tiles
    /// dropped, and last the point index, the slowest to rebuild, so that
    /// maps show the change as soon as they can. Returns how many
    /// communities changed. Callers hold the edit lock.
    ///
    /// # Errors
    /// Store failures (every cached tile is dropped then).
    pub(crate) fn catch_up(&self, store: &AnyStore) -> Result<usize, ApiError> {
        self.catch_up_timed(store).map(|(n, _)| n)
    }

    /// [`AppState::catch_up`], with the seconds it took to update the
    /// directory, the tiles and the point index.
    fn catch_up_timed(&self, store: &AnyStore) -> Result<(usize, [f64; 3]), ApiError> {
        use std::sync::atomic::Ordering::SeqCst;
        // A write no log describes (an import, a re-index by another
        // process): everything is read again.
        let generation = store.write_generation()?;
        if generation != self.generation.load(SeqCst) {
            return self.reload_whole(store, generation);
        }
        let after = self.seen.load(SeqCst);
        let new = store.versions_after(after)?;
        // Then the change feed's batches, which change no outline.
        let fed = self.catch_up_changes(store)?;
        if fed > 0 {
            self.metrics
                .changes_followed
                .fetch_add(fed as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(&(last, _)) = new.last() else {
            return Ok((0, [0.0; 3]));
        };
        let communities: std::collections::BTreeSet<&str> =
            new.iter().map(|(_, c)| c.as_str()).collect();
        let whole = communities.len() > INCREMENTAL_MAX;
        let t = std::time::Instant::now();
        let directory = if whole {
            Directory::load(store, self.privacy)?
        } else {
            let mut d = self.directory();
            for c in &communities {
                d = Arc::new(d.updated(store, c)?);
            }
            Arc::unwrap_or_clone(d)
        };
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
        let directory_s = t.elapsed().as_secs_f64();
        let mut result = Ok(());
        for c in &communities {
            if let Err(e) = self.reload_tiles(store, c) {
                result = Err(e);
            }
        }
        let tiles_s = t.elapsed().as_secs_f64() - directory_s;
        let locator = if whole {
            Arc::new(Locator::load(store).map_err(ApiError::internal)?)
        } else {
            let mut l = self.locator();
            for c in &communities {
                l = Arc::new(l.updated(store, c).map_err(ApiError::internal)?);
            }
            l
        };
        *self.locator.write().unwrap_or_else(|p| p.into_inner()) = locator;
        let index_s = t.elapsed().as_secs_f64() - directory_s - tiles_s;
        self.seen.store(last, SeqCst);
        result.map(|()| (communities.len(), [directory_s, tiles_s, index_s]))
    }

    /// After an edit of `community` (the directory updated): lets
    /// every tile source (not the views) re-read what the edit changed,
    /// then drops exactly the cached tiles those changes touch: per source,
    /// at the zooms of its changed layers, the tiles whose buffered square
    /// meets a changed feature's old or new geometry (see
    /// [`wangge_tiler::changes`]). A failed reload drops every tile.
    fn reload_tiles(&self, store: &AnyStore, community: &str) -> Result<(), ApiError> {
        self.update_tiles(|s| s.reload_grids(store, community))
            .map(drop)
    }

    /// Lets every tile source (not the views) update itself by `update`,
    /// then drops exactly the cached tiles the changes touch: per source,
    /// at the zooms of its changed layers, the tiles whose buffered square
    /// meets a changed feature's old or new geometry (see
    /// [`wangge_tiler::changes`]). A failed update drops every tile.
    /// Returns the changes of the main source ([`StoreTiles::ID`]).
    fn update_tiles(
        &self,
        update: impl Fn(&dyn TileSource) -> Result<TileChanges, String>,
    ) -> Result<Option<TileChanges>, ApiError> {
        let mut failed = None;
        let mut changes: std::collections::HashMap<&str, TileChanges> =
            std::collections::HashMap::new();
        for s in self.sources.iter().filter(|s| s.view_of().is_none()) {
            match update(s.as_ref()) {
                Ok(c) => {
                    changes.insert(s.id(), c);
                }
                Err(e) => failed = Some(format!("tile source {}: {e}", s.id())),
            }
        }
        // Per source (by index): the changes of the data it shows, and its
        // layers.
        let per: Vec<(Option<&TileChanges>, std::collections::HashSet<String>)> = self
            .sources
            .iter()
            .map(|s| {
                let c = changes.get(s.view_of().unwrap_or(s.id()));
                let layers = s.layers().into_iter().map(|l| l.id).collect();
                (c, layers)
            })
            .collect();
        let removed = if failed.is_some() || changes.values().any(TileChanges::is_everything) {
            let n = self.cache.usage().0;
            self.cache.clear();
            n
        } else if changes.values().all(TileChanges::is_empty) {
            0
        } else {
            self.cache.invalidate_where(|k| {
                let Some((Some(c), layers)) = per.get(usize::from(k.source)) else {
                    return false;
                };
                wangge_tiler::TileCoord::new(k.z, k.x, k.y)
                    .is_ok_and(|t| c.touches(t, &|l| layers.contains(l)))
            })
        };
        self.metrics
            .tiles_invalidated
            .fetch_add(removed as u64, std::sync::atomic::Ordering::Relaxed);
        drop(per);
        match failed {
            Some(e) => Err(ApiError::Internal(e)),
            None => Ok(changes.remove(StoreTiles::ID)),
        }
    }

    /// Reads the whole store again (directory, every tile source, point
    /// index), drops every cached tile and takes the logs' positions as
    /// seen; reports it as every community reloaded.
    fn reload_whole(
        &self,
        store: &AnyStore,
        generation: i64,
    ) -> Result<(usize, [f64; 3]), ApiError> {
        use std::sync::atomic::Ordering::SeqCst;
        let t = std::time::Instant::now();
        // The positions first: what is written meanwhile comes next time.
        let seen = store.last_version_position()?;
        let seen_changes = store.last_change_seq()?;
        let directory = Directory::load(store, self.privacy)?;
        let communities = directory.communities();
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
        let directory_s = t.elapsed().as_secs_f64();
        let tiles = self.update_tiles(|s| s.reload_all());
        let tiles_s = t.elapsed().as_secs_f64() - directory_s;
        let locator = Locator::load(store).map_err(ApiError::internal)?;
        *self.locator.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(locator);
        let index_s = t.elapsed().as_secs_f64() - directory_s - tiles_s;
        self.seen.store(seen, SeqCst);
        self.seen_changes.store(seen_changes, SeqCst);
        self.generation.store(generation, SeqCst);
        self.feed.publish(changes::StreamEvent {
            seq: seen_changes,
            data: serde_json::json!({"seq": seen_changes, "reason": "the store was written by another process; read again whole"}).to_string(),
            reset: true,
        });
        tiles?;
        Ok((communities, [directory_s, tiles_s, index_s]))
    }

    /// The change-log position the server is current to.
    pub(crate) fn seen_changes(&self) -> i64 {
        self.seen_changes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Catches up with the change feed's batches logged since the last one
    /// seen (by this server's `POST /v1/changes` or by other processes'
    /// `wangge apply` and replicas): the directory where counts changed,
    /// then per batch, layer and operation the tiles it touched, and one
    /// stream event for each. Returns how many changes. Callers hold the
    /// edit lock.
    fn catch_up_changes(&self, store: &AnyStore) -> Result<usize, ApiError> {
        use std::collections::{BTreeMap, BTreeSet};
        use std::sync::atomic::Ordering::SeqCst;
        use wangge_engine::model::Layer;
        let mut after = self.seen_changes.load(SeqCst);
        let mut total = 0;
        loop {
            let rows = store.changes_after(after, 100_000)?;
            let Some(last) = rows.last().map(|r| r.seq) else {
                return Ok(total);
            };
            total += rows.len();
            let community = |g: &Option<String>| {
                g.as_deref()
                    .filter(|g| g.len() == 15 && g.bytes().all(|b| b.is_ascii_digit()))
                    .map(|g| g[..12].to_owned())
            };
            // The directory once: communities whose grid counts changed,
            // and grids whose entity counts changed.
            let mut communities: BTreeSet<String> = BTreeSet::new();
            let mut counted: BTreeSet<String> = BTreeSet::new();
            for r in &rows {
                let grids = [&r.old_grid, &r.new_grid];
                if matches!(r.layer, Layer::Persons | Layer::Buildings) {
                    communities.extend(grids.iter().filter_map(|g| community(g)));
                } else {
                    counted.extend(grids.iter().filter_map(|g| (*g).clone()));
                }
            }
            let c: Vec<&str> = communities.iter().map(String::as_str).collect();
            let g: Vec<&str> = counted.iter().map(String::as_str).collect();
            let buildings = rows.iter().any(|r| r.layer == Layer::Buildings);
            {
                // In place unless a request still holds the old one.
                let mut guard = self.directory.write().unwrap_or_else(|p| p.into_inner());
                Arc::make_mut(&mut guard).apply_changes(store, &c, &g, buildings)?;
            }
            // Then the tiles and the stream, per batch and layer.
            let mut groups: BTreeMap<
                (i64, &'static str),
                Vec<&wangge_engine::store::changes::LoggedChange>,
            > = BTreeMap::new();
            for r in &rows {
                groups.entry((r.batch, r.layer.name())).or_default().push(r);
            }
            let mut ordered: Vec<_> = groups.into_iter().collect();
            ordered.sort_by_key(|(_, rs)| rs.last().map_or(0, |r| r.seq));
            let mut result = Ok(());
            for ((_, layer), rs) in ordered {
                let ops: BTreeSet<&str> = rs.iter().map(|r| r.op.name()).collect();
                let op = if ops.len() == 1 {
                    ops.first().copied().unwrap_or("mixed")
                } else {
                    "mixed"
                };
                let mut touched = wangge_tiler::Touched::default();
                let mut grid_codes: BTreeSet<&str> = BTreeSet::new();
                for r in &rs {
                    grid_codes.extend(r.old_grid.iter().chain(&r.new_grid).map(String::as_str));
                    match r.layer {
                        Layer::Persons => {
                            touched.communities.extend(
                                [&r.old_grid, &r.new_grid]
                                    .iter()
                                    .filter_map(|g| community(g)),
                            );
                            for (cell, d) in [(r.old_cell, -1), (r.new_cell, 1)] {
                                if let Some(c) = cell {
                                    *touched.cells.entry(c as u64).or_default() += d;
                                }
                            }
                        }
                        l => {
                            if l == Layer::Buildings {
                                touched.communities.extend(
                                    [&r.old_grid, &r.new_grid]
                                        .iter()
                                        .filter_map(|g| community(g)),
                                );
                            }
                            touched
                                .fids
                                .entry(l.name().to_owned())
                                .or_default()
                                .push(r.fid);
                        }
                    }
                }
                touched.cells.retain(|_, d| *d != 0);
                let changed = match self.update_tiles(|s| s.apply_changes(store, &touched)) {
                    Ok(c) => c,
                    Err(e) => {
                        result = Err(e);
                        None
                    }
                };
                let (tiles, truncated) = changed
                    .map(|c| c.tiles(&|_| true, changes::MAX_EVENT_TILES))
                    .unwrap_or((Vec::new(), false));
                let tiles: Vec<String> = tiles
                    .iter()
                    .map(|t| format!("{}/{}/{}", t.z(), t.x(), t.y()))
                    .collect();
                let seq = rs.last().map_or(0, |r| r.seq);
                let mut data = serde_json::json!({
                    "seq": seq,
                    "layer": layer,
                    "op": op,
                    "grid_codes": grid_codes,
                    "tiles": tiles,
                });
                if truncated {
                    data["tiles_truncated"] = serde_json::json!(true);
                }
                self.feed.publish(changes::StreamEvent {
                    seq,
                    data: data.to_string(),
                    reset: false,
                });
            }
            self.seen_changes.store(last, SeqCst);
            after = last;
            result?;
        }
    }
}

/// The whole API on one router.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/v1/locate",
            get(locate::locate_one).post(locate::locate_many),
        )
        .route("/v1/grids", get(grids::grids))
        .route("/v1/grids/{code}", get(grids::grid))
        .route("/v1/communities/{code}", get(grids::community))
        .route("/v1/communities/{code}/edits", post(edits::post_edit))
        .route("/v1/changes", post(changes::post_changes))
        .layer(tower_http::compression::CompressionLayer::new());
    let limit = state.body_limit;
    let timeout = state.timeout;
    Router::new()
        .route("/health", get(health))
        // Not compressed: events must reach the client as they happen.
        .route("/v1/changes/stream", get(changes::stream_changes))
        .route("/metrics", get(metrics_text))
        .route("/catalog", get(tiles::catalog))
        .route("/style.json", get(tiles::style))
        .route("/tiles/{file}", get(tiles::tilejson_file))
        .route("/tiles/{source}/{z}/{x}/{y}", get(tiles::tile))
        .route("/{source}", get(tiles::tilejson_root))
        .merge(api)
        .merge(
            Router::new()
                .route("/", get(viewer::index))
                .route("/viewer/{file}", get(viewer::file))
                .layer(tower_http::compression::CompressionLayer::new()),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Inside the guard, so a timeout is counted and gets a JSON body.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            guard,
        ))
        // Maps on any origin may read tiles and the API; `Authorization` is
        // not among the allowed headers, so edits stay same-origin or
        // non-browser.
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([
                    axum::http::Method::GET,
                    axum::http::Method::HEAD,
                    axum::http::Method::POST,
                ])
                .allow_headers([CONTENT_TYPE, axum::http::header::IF_NONE_MATCH])
                .expose_headers([axum::http::header::ETAG]),
        )
        .with_state(state)
}

/// Per request: refuse declared oversize bodies before reading them, count
/// the request in the metrics, and turn axum's plain-text rejections into
/// JSON error bodies.
async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let resp = if declared.is_some_and(|n| n > state.body_limit) {
        ApiError::TooLarge(format!(
            "request body too large: at most {} bytes",
            state.body_limit
        ))
        .into_response()
    } else {
        jsonify(next.run(req).await).await
    };
    state
        .metrics
        .request(&route, resp.status().as_u16(), t0.elapsed().as_secs_f64());
    resp
}

/// A 4xx/5xx whose body is not JSON (an extractor's rejection, the
/// timeout) gets `{"error": <its text or the status reason>}`.
async fn jsonify(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let msg = if status.is_server_error() {
        if !text.is_empty() {
            eprintln!("wangge serve: {status}: {text}");
        }
        status
            .canonical_reason()
            .unwrap_or("server error")
            .to_lowercase()
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_lowercase()
    } else {
        text
    };
    let mut out = Response::from_parts(parts, Body::from(json!({"error": msg}).to_string()));
    out.headers_mut().remove(CONTENT_LENGTH);
    out.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /catalog, /health, /v1/…".into())
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({"error": "method not allowed on this endpoint"})),
    )
        .into_response()
}

/// `GET /health`.
async fn health(State(state): State<Arc<AppState>>) -> axum::Json<Json> {
    let loc = state.locator();
    axum::Json(json!({
        "status": "ok",
        "level": loc.level(),
        "polygons": loc.len(),
        "grids": state.directory().grids(),
        "tile_sources": state.sources.iter().map(|s| s.id().to_owned()).collect::<Vec<_>>(),
        "edits": state.token.is_some(),
    }))
}

/// `GET /metrics`.
async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render(state.cache.usage());
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The tile sources of a store: all its layers as source `wangge`, then
/// each layer alone as a source named after it.
fn tile_sources(ui: &Ui, a: &ServeArgs) -> Result<Vec<Arc<dyn TileSource>>> {
    if a.no_tiles {
        return Ok(Vec::new());
    }
    let t = Instant::now();
    let options = wangge_tiler::TilerOptions {
        privacy: Privacy::new(a.privacy_k)?,
        ..wangge_tiler::TilerOptions::default()
    };
    let tiles = StoreTiles::open_with(&a.store, options).with_context(|| {
        format!(
            "cannot read the tile layers of {}",
            crate::cli::shown(&a.store)
        )
    })?;
    let warnings = tiles.warnings();
    ui.say(format!(
        "tiles: {} layers loaded in {:.1} s{}",
        tiles.layers().len(),
        t.elapsed().as_secs_f64(),
        if warnings.is_empty() {
            String::new()
        } else {
            format!(", {} warning(s):", warnings.len())
        }
    ));
    for w in warnings.iter().take(20) {
        ui.say(format!("  {w}"));
    }
    let mut sources: Vec<Arc<dyn TileSource>> = tiles
        .layer_views()
        .into_iter()
        .map(|v| Arc::new(v) as Arc<dyn TileSource>)
        .collect();
    sources.insert(0, Arc::new(tiles));
    Ok(sources)
}

/// Runs `wangge serve` until Ctrl-C or SIGTERM, then finishes the requests
/// in flight.
pub(crate) fn serve_cmd(ui: &Ui, a: &ServeArgs) -> Result<()> {
    let t0 = Instant::now();
    // Bind first: a taken port fails at once, not after loading the store.
    let std_listener = std::net::TcpListener::bind(a.addr)
        .with_context(|| format!("cannot listen on {}", a.addr))?;
    std_listener.set_nonblocking(true)?;
    // A store another tool wrote or edited: name every missing or retyped
    // column now, not as an SQL error on the first request.
    {
        let store = AnyStore::open(&a.store)
            .with_context(|| format!("cannot serve {}", crate::cli::shown(&a.store)))?;
        if let AnyStore::Gpkg(store) = &store {
            crate::cli::require_store(store)?;
        }
    }
    let sources = tile_sources(ui, a)?;
    let state = AppState::open(
        a.store.clone(),
        sources,
        Options {
            token: a.token.clone().filter(|t| !t.is_empty()),
            cache_bytes: a.cache_mb << 20,
            body_limit: a.body_limit_mb << 20,
            timeout: Duration::from_secs(a.timeout_s.max(1)),
            addr: a.addr.to_string(),
            privacy: Privacy::new(a.privacy_k)?,
        },
    )
    .with_context(|| format!("cannot serve {}", crate::cli::shown(&a.store)))?;
    ui.say(format!(
        "{}: {} {}s indexed, {} tile source(s), in {:.1} s; edits {}",
        crate::cli::shown(&a.store),
        state.locator().len(),
        state.locator().level(),
        state.sources.len(),
        t0.elapsed().as_secs_f64(),
        if state.token.is_some() {
            "need the bearer token"
        } else {
            "disabled (no --token)"
        }
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let local = listener.local_addr()?;
        let mut state = state;
        state.addr = local.to_string();
        let state = Arc::new(state);
        watch_store(Arc::clone(&state));
        // Printed even with --quiet: scripts read the port from it.
        eprintln!("listening on http://{local}");
        run(
            listener,
            router(state),
            Duration::from_secs(a.header_timeout_s.max(1)),
        )
        .await;
        eprintln!("shut down");
        Ok(())
    })
}

/// Most changed communities that [`AppState::catch_up`] brings up to
/// date one by one; beyond, it reads the whole store again (a city-wide
/// `partition`).
const INCREMENTAL_MAX: usize = 16;

/// How often the server looks for writes by other processes.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Watches the store for commits by other processes (a CLI `edit`,
/// `partition` or `apply` on the file being served), cheaply: one
/// `PRAGMA data_version` every [`WATCH_EVERY`] on a connection of its
/// own, and on a change the versions recorded since the last one seen
/// ([`AppState::catch_up`]), under the edit lock.
fn watch_store(state: Arc<AppState>) {
    let spawned = std::thread::Builder::new()
        .name("wangge-watch".into())
        .spawn(move || watch(&state));
    if let Err(e) = spawned {
        eprintln!("wangge serve: not watching the store for other writers: {e}");
    }
}

/// The watcher's loop. On PostgreSQL it `LISTEN`s, so a notice wakes it
/// at once; a lost connection (the database restarted) is opened again
/// and the catch-up continues from the last version seen, so no change is
/// missed even though NOTIFY is not a queue.
fn watch(state: &AppState) {
    let open = || -> Result<AnyStore, ApiError> {
        let s = open_reader(&state.store_path)?;
        s.listen()?;
        Ok(s)
    };
    let mut store = match open() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("wangge serve: not watching the store for other writers: {e}");
            return;
        }
    };
    let mut last = store.as_ref().and_then(|s| s.data_version().ok());
    let mut failing = false;
    loop {
        let now = match &store {
            Some(s) if !s.is_broken() => s
                .wait_for_change(WATCH_EVERY)
                .and_then(|()| s.data_version())
                .map_err(ApiError::from),
            _ => {
                std::thread::sleep(WATCH_EVERY);
                if let Ok(s) = open() {
                    eprintln!("wangge serve: watching the store again");
                    store = Some(s);
                    failing = false;
                    // Catch up with whatever was written meanwhile.
                    last = None;
                }
                continue;
            }
        };
        let now = match now {
            Ok(v) => Some(v),
            Err(e) => {
                if !failing {
                    eprintln!("wangge serve: watching the store: {e}");
                    failing = true;
                }
                if store.as_ref().is_some_and(AnyStore::is_broken) {
                    store = None;
                }
                continue;
            }
        };
        failing = false;
        if now == last {
            continue;
        }
        last = now;
        let Some(s) = &store else { continue };
        let _writer = state.edits.blocking_lock();
        match state.catch_up_timed(s) {
            Ok((0, _)) => {}
            Ok((n, [directory_s, tiles_s, index_s])) => eprintln!(
                "store changed by another process: {n} communit{} reloaded \
                 (directory {:.0} ms, tiles {:.0} ms, point index {:.0} ms)",
                if n == 1 { "y" } else { "ies" },
                directory_s * 1e3,
                tiles_s * 1e3,
                index_s * 1e3
            ),
            Err(e) => {
                eprintln!("wangge serve: reloading after another process's write: {e}")
            }
        }
    }
}

/// Accepts HTTP/1.1 connections until Ctrl-C or SIGTERM, with a deadline
/// for each request's headers (so slow clients cannot hold connections),
/// then lets the requests in flight finish (at most 30 s).
async fn run(listener: tokio::net::TcpListener, app: Router, header_timeout: Duration) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut signal = std::pin::pin!(shutdown());
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let stream = match conn {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        eprintln!("wangge serve: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .keep_alive(true);
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut signal => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            eprintln!("wangge serve: requests still running after 30 s; stopping anyway");
        },
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
