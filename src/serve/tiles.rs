//! Vector tiles, martin style: `/catalog`, TileJSON 3.0.0 per source,
//! `/style.json`, and `/tiles/{source}/{z}/{x}/{y}` with compression
//! negotiation, strong ETags, 204 for empty tiles and the [`TileCache`].

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use wangge_tiler::TileCoord;
pub use wangge_tiler::serving::{TileSource, VectorLayer};

use super::AppState;
use super::cache::{CachedTile, Encoding, TileKey};
use super::error::{ApiError, blocking};

/// Picks the response encoding from `Accept-Encoding`: brotli, then gzip,
/// then identity, honouring `q=0`.
#[must_use]
pub fn negotiate(headers: &HeaderMap) -> Encoding {
    let mut br = false;
    let mut gzip = false;
    for v in headers.get_all(ACCEPT_ENCODING) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f64>().ok())
                .next()
                .unwrap_or(1.0);
            if q <= 0.0 {
                continue;
            }
            match name.as_str() {
                "br" => br = true,
                "gzip" | "x-gzip" => gzip = true,
                "*" => {
                    br = true;
                    gzip = true;
                }
                _ => {}
            }
        }
    }
    if br {
        Encoding::Brotli
    } else if gzip {
        Encoding::Gzip
    } else {
        Encoding::Identity
    }
}

/// `http://host` of the request: the Host header when it looks like a host
/// (so a forged header cannot inject markup), else the listening address;
/// `https` when a proxy says so in `X-Forwarded-Proto`.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .map_or_else(|| state.addr.clone(), str::to_owned);
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn source_by_id<'a>(
    state: &'a AppState,
    id: &str,
) -> Result<(u16, &'a Arc<dyn TileSource>), ApiError> {
    state
        .sources
        .iter()
        .enumerate()
        .find(|(_, s)| s.id() == id)
        .map(|(i, s)| (i as u16, s))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no tile source {:?}; see /catalog",
                id.chars().take(64).collect::<String>()
            ))
        })
}

/// `GET /catalog`: the tile sources (martin's catalog shape).
pub(crate) async fn catalog(State(state): State<Arc<AppState>>) -> axum::Json<Json> {
    let tiles: serde_json::Map<String, Json> = state
        .sources
        .iter()
        .map(|s| {
            (
                s.id().to_owned(),
                json!({"content_type": "application/x-protobuf", "description": s.description(),
                       "layers": s.layers().iter().map(|l| l.id.clone()).collect::<Vec<_>>()}),
            )
        })
        .collect();
    axum::Json(
        json!({"tiles": tiles, "sprites": {}, "fonts": {}, "styles": {"wangge": {"path": "/style.json"}}}),
    )
}

/// The TileJSON 3.0.0 document of a source.
pub(crate) fn tilejson(base: &str, s: &dyn TileSource) -> Json {
    let b = s.bounds();
    let center_zoom = s.minzoom().max(10).min(s.maxzoom());
    json!({
        "tilejson": "3.0.0",
        "name": s.id(),
        "description": s.description(),
        "tiles": [format!("{base}/tiles/{}/{{z}}/{{x}}/{{y}}", s.id())],
        "vector_layers": s.layers(),
        "bounds": b,
        "center": [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0, center_zoom],
        "minzoom": s.minzoom(),
        "maxzoom": s.maxzoom(),
        "scheme": "xyz",
        "format": "pbf",
    })
}

/// `GET /{source}`: TileJSON (martin's path).
pub(crate) async fn tilejson_root(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Json>, ApiError> {
    let (_, s) = source_by_id(&state, &id)?;
    Ok(axum::Json(tilejson(
        &base_url(&state, &headers),
        s.as_ref(),
    )))
}

/// `GET /tiles/{source}.json`: TileJSON.
pub(crate) async fn tilejson_file(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<Json>, ApiError> {
    let id = file.strip_suffix(".json").ok_or_else(|| {
        ApiError::NotFound("no such resource; TileJSON is at /tiles/{source}.json".into())
    })?;
    let (_, s) = source_by_id(&state, id)?;
    Ok(axum::Json(tilejson(
        &base_url(&state, &headers),
        s.as_ref(),
    )))
}

/// Colours per known layer; other layers get grey.
fn colour(layer: &str) -> &'static str {
    match layer {
        "districts" => "#5b2c6f",
        "streets" => "#1f618d",
        "communities" => "#117a65",
        "grids" => "#d35400",
        "roads" => "#7f8c8d",
        "buildings" => "#a04000",
        "places" => "#2874a6",
        "objects" => "#7d3c98",
        "events" => "#c0392b",
        "organizations" => "#148f77",
        l if l.contains("person") => "#b03a2e",
        _ => "#616a6b",
    }
}

/// `GET /style.json`: a MapLibre style drawing every layer of every source
/// that is not a view of another (polygons as fill + outline, lines, points as circles). It has no
/// symbol layers, so it needs neither glyphs nor sprites.
pub(crate) async fn style(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> axum::Json<Json> {
    let base = base_url(&state, &headers);
    let mut sources = serde_json::Map::new();
    let mut layers = vec![json!({
        "id": "background", "type": "background", "paint": {"background-color": "#f4f1ea"}
    })];
    let polygon = json!([
        "match",
        ["geometry-type"],
        ["Polygon", "MultiPolygon"],
        true,
        false
    ]);
    let line = json!([
        "match",
        ["geometry-type"],
        ["LineString", "MultiLineString"],
        true,
        false
    ]);
    let point = json!([
        "match",
        ["geometry-type"],
        ["Point", "MultiPoint"],
        true,
        false
    ]);
    let mut bounds: Option<[f64; 4]> = None;
    for s in state.sources.iter().filter(|s| s.view_of().is_none()) {
        let sid = s.id();
        sources.insert(
            sid.to_owned(),
            json!({"type": "vector", "url": format!("{base}/tiles/{sid}.json")}),
        );
        let b = s.bounds();
        bounds = Some(bounds.map_or(b, |a| wangge_engine::store::merge_bbox(Some(a), b)));
        for l in s.layers() {
            let c = colour(&l.id);
            // A layer that reaches the source's last zoom stays drawn
            // (over-zoomed) beyond it.
            let top = l.maxzoom >= s.maxzoom();
            let common = |kind: &str, filter: &Json| {
                let mut v = json!({"id": format!("{sid}-{}-{kind}", l.id), "source": sid, "source-layer": l.id,
                       "minzoom": l.minzoom, "filter": filter});
                if !top {
                    v["maxzoom"] = json!(f64::from(l.maxzoom) + 1.0);
                }
                v
            };
            let admin = matches!(l.id.as_str(), "districts" | "streets" | "communities");
            if !admin {
                let mut fill = common("fill", &polygon);
                fill["type"] = json!("fill");
                fill["paint"] = if l.id == "grids" {
                    // A grid whose counts the privacy rule withholds has no
                    // `households`: drawn grey, not as an empty grid.
                    json!({"fill-color": ["case", ["has", "households"],
                                          ["interpolate", ["linear"], ["get", "households"],
                                           0, "#fdebd0", 200, "#f5b041", 800, "#ba4a00"],
                                          "#d5d8dc"],
                           "fill-opacity": 0.35})
                } else {
                    json!({"fill-color": c, "fill-opacity": 0.3})
                };
                layers.push(fill);
            }
            let mut outline = common("outline", &polygon);
            outline["type"] = json!("line");
            let width = match l.id.as_str() {
                "districts" => 2.5,
                "streets" => 1.6,
                "communities" => 1.0,
                _ => 0.6,
            };
            outline["paint"] = json!({"line-color": c, "line-width": width});
            layers.push(outline);
            let mut lines = common("line", &line);
            lines["type"] = json!("line");
            lines["paint"] = json!({"line-color": c, "line-width": 1.0});
            layers.push(lines);
            let mut circles = common("circle", &point);
            circles["type"] = json!("circle");
            circles["paint"] = json!({"circle-color": c, "circle-radius": 3,
                                      "circle-stroke-color": "#ffffff", "circle-stroke-width": 0.5});
            layers.push(circles);
        }
    }
    let b = bounds.unwrap_or([115.4, 39.4, 117.5, 41.1]);
    axum::Json(json!({
        "version": 8,
        "name": "wangge",
        "center": [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0],
        "zoom": 9,
        "sources": sources,
        "layers": layers,
    }))
}

/// Parses the z, x and y of a tile URL: 400 when not a number, 404 when
/// outside the source's zooms or the zoom's tiles. `y` may end in `.pbf` or
/// `.mvt`.
fn parse_zxy(s: &dyn TileSource, z: &str, x: &str, y: &str) -> Result<(u8, u32, u32), ApiError> {
    let y = y
        .strip_suffix(".pbf")
        .or_else(|| y.strip_suffix(".mvt"))
        .unwrap_or(y);
    let num = |what: &str, v: &str| -> Result<u64, ApiError> {
        if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::BadRequest(format!(
                "tile {what} {:?} is not a whole number",
                v.chars().take(32).collect::<String>()
            )));
        }
        v.parse()
            .map_err(|_| ApiError::BadRequest(format!("tile {what} {v:?} is not a whole number")))
    };
    let (z, x, y) = (num("z", z)?, num("x", x)?, num("y", y)?);
    if z < u64::from(s.minzoom()) || z > u64::from(s.maxzoom()) {
        return Err(ApiError::NotFound(format!(
            "zoom {z} is outside {}..={} for source {}",
            s.minzoom(),
            s.maxzoom(),
            s.id()
        )));
    }
    let n = 1u64 << z;
    if x >= n || y >= n {
        return Err(ApiError::NotFound(format!(
            "tile {z}/{x}/{y} does not exist: x and y must be below {n} at zoom {z}"
        )));
    }
    Ok((z as u8, x as u32, y as u32))
}

/// `GET /tiles/{source}/{z}/{x}/{y}`.
pub(crate) async fn tile(
    State(state): State<Arc<AppState>>,
    Path((id, z, x, y)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (si, source) = source_by_id(&state, &id)?;
    let (z, x, y) = parse_zxy(source.as_ref(), &z, &x, &y)?;
    let key = TileKey {
        source: si,
        z,
        x,
        y,
    };
    let enc = negotiate(&headers);
    // Taken before the lookup: a tile read or encoded before an
    // invalidation must not be put back after it.
    let generation = state.cache.generation();
    let (tile, body) = match state.cache.get(&key) {
        Some(t) => {
            state.metrics.tile_hits.fetch_add(1, Relaxed);
            match t.variant(enc) {
                Some(b) => (t, b),
                None if t.raw.is_empty() => (t, Bytes::new()),
                None => {
                    let mut t2 = t.clone();
                    let raw = t.raw.clone();
                    let b = blocking(move || Ok(enc.compress(&raw))).await?;
                    t2.set_variant(enc, b.clone());
                    state.cache.insert(key, generation, t2.clone());
                    (t2, b)
                }
            }
        }
        None => {
            state.metrics.tile_misses.fetch_add(1, Relaxed);
            let src = Arc::clone(source);
            let (t, b) = blocking(move || {
                let t = TileCoord::new(z, x, y)
                    .map_err(|e| ApiError::NotFound(format!("tile {z}/{x}/{y}: {e}")))?;
                let raw = src.tile(t).map_err(|e| {
                    ApiError::Internal(format!("tile {}/{z}/{x}/{y}: {e}", src.id()))
                })?;
                let mut t = CachedTile::new(Bytes::from(raw));
                let b = if t.raw.is_empty() {
                    Bytes::new()
                } else {
                    let b = enc.compress(&t.raw);
                    t.set_variant(enc, b.clone());
                    b
                };
                Ok((t, b))
            })
            .await?;
            state.metrics.tile_bytes.observe(t.raw.len() as f64);
            state.cache.insert(key, generation, t.clone());
            (t, b)
        }
    };
    if tile.raw.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let etag = tile.etag(enc);
    let inm = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| tile.matches(v));
    let mut resp = if inm {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/x-protobuf"),
        );
        if let Some(ce) = enc.header() {
            r.headers_mut()
                .insert(CONTENT_ENCODING, axum::http::HeaderValue::from_static(ce));
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = axum::http::HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(
        VARY,
        axum::http::HeaderValue::from_static("accept-encoding"),
    );
    // Tiles change with edits: caches may keep them but must revalidate.
    h.insert(
        CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ae: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, ae.parse().unwrap());
        h
    }

    #[test]
    fn negotiation_prefers_br_then_gzip_and_honours_q0() {
        assert_eq!(negotiate(&headers("gzip, deflate, br")), Encoding::Brotli);
        assert_eq!(negotiate(&headers("gzip")), Encoding::Gzip);
        assert_eq!(negotiate(&headers("br;q=0, gzip;q=0.5")), Encoding::Gzip);
        assert_eq!(negotiate(&headers("identity")), Encoding::Identity);
        assert_eq!(negotiate(&HeaderMap::new()), Encoding::Identity);
    }
}
