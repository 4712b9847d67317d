//! `GET /v1/grids/{code}`, `GET /v1/grids?bbox=…|community=…` and
//! `GET /v1/communities/{code}`: grids and communities as GeoJSON with
//! their statistics. Persons appear only as per-grid counts.
//!
//! Counts of households and persons follow the privacy rule
//! ([`wangge_engine::privacy`]): an anonymous request gets `"<10"` for a
//! withheld count and no `balance` that would reveal it; a request with the
//! server's bearer token gets the exact counts. Answers carry
//! `Vary: Authorization`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::{CACHE_CONTROL, VARY};
use axum::response::{IntoResponse, Response};
use geo::Intersects;
use geo_types::{Geometry, Rect, coord};
use serde_json::{Map, Value as Json, json};
use wangge_engine::assign::code_path;
use wangge_engine::codes::{CommunityCode, GridCode};
use wangge_engine::io::geojson::geometry_to_json;
use wangge_engine::model::Layer;
use wangge_engine::privacy::{Disclosure, Privacy};
use wangge_engine::store::{AnyStore, Selection, StoreError, Value};

use super::AppState;
use super::error::{ApiError, blocking};

/// Entity layers counted per grid (persons are counted in the grid row).
const COUNTED: [Layer; 4] = [
    Layer::Places,
    Layer::Objects,
    Layer::Events,
    Layer::Organizations,
];

/// Default and largest number of grids in one listing.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

/// Where each grid and community is, and the entity counts per grid: read
/// once at start and after each edit, so lookups by code do not scan.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directory {
    grids: HashMap<String, GridEntry>,
    communities: HashMap<String, i64>,
    /// Grid codes per community, sorted.
    community_grids: HashMap<String, Vec<String>>,
    counts: HashMap<String, [u64; 4]>,
    /// Whose counts an anonymous request may see.
    disclosure: Disclosure,
}

#[derive(Debug, Clone, PartialEq)]
struct GridEntry {
    fid: i64,
    households: i64,
}

/// Who asks: anyone (counts by the privacy rule) or staff with the token
/// (exact counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// No `Authorization` header.
    Public,
    /// The server's bearer token.
    Staff,
}

/// The audience of a request: public without an `Authorization` header,
/// staff with the right token; a wrong token is 401 (and any token on a
/// server without `--token` is 403), so a client never mistakes withheld
/// counts for exact ones.
pub(crate) fn audience(state: &AppState, headers: &HeaderMap) -> Result<Audience, ApiError> {
    if headers.get(axum::http::header::AUTHORIZATION).is_none() {
        return Ok(Audience::Public);
    }
    match super::edits::authorize(state, headers) {
        Ok(()) => Ok(Audience::Staff),
        Err(ApiError::Forbidden(_)) => Err(ApiError::Forbidden(
            "exact counts need the server's token, and this server was started without \
             --token; send no Authorization header for the public counts"
                .into(),
        )),
        Err(e) => Err(e),
    }
}

/// A JSON answer whose counts depend on the audience.
fn answer(v: Json, who: Audience) -> Response {
    let cache = match who {
        Audience::Public => "no-cache",
        Audience::Staff => "private, no-store",
    };
    (
        [(VARY, "authorization"), (CACHE_CONTROL, cache)],
        axum::Json(v),
    )
        .into_response()
}

/// Replaces `households` and `persons` in `props` by the withheld label.
fn withhold(props: &mut Map<String, Json>, privacy: Privacy) {
    for k in ["households", "persons"] {
        if props.contains_key(k) {
            props.insert(k.into(), json!(privacy.label()));
        }
    }
}

/// An integer column of `props` (0 when absent or not a number).
fn int(props: &Map<String, Json>, k: &str) -> i64 {
    props.get(k).and_then(Json::as_i64).unwrap_or(0)
}

impl Directory {
    /// Reads the directory of a store.
    ///
    /// # Errors
    /// Store errors.
    pub fn load(store: &AnyStore, privacy: Privacy) -> Result<Directory, ApiError> {
        let mut d = Directory {
            disclosure: Disclosure::load(store, privacy)?,
            ..Directory::default()
        };
        if store.has_layer(Layer::Grids.name())? {
            let columns = ["code", "parent_code", "households"];
            store.read_rows(Layer::Grids.name(), &columns, Selection::All, |fid, v| {
                let Some(code) = v[0].as_str() else {
                    return Ok::<(), ApiError>(());
                };
                let parent = v[1]
                    .as_str()
                    .unwrap_or_else(|| code_path(code)[2])
                    .to_owned();
                d.community_grids
                    .entry(parent)
                    .or_default()
                    .push(code.to_owned());
                d.grids.insert(
                    code.to_owned(),
                    GridEntry {
                        fid,
                        households: v[2].as_i64().unwrap_or(0),
                    },
                );
                Ok(())
            })?;
            for codes in d.community_grids.values_mut() {
                codes.sort_unstable();
            }
        }
        if store.has_layer(Layer::Communities.name())? {
            store.read_rows(
                Layer::Communities.name(),
                &["code"],
                Selection::All,
                |fid, v| {
                    if let Some(code) = v[0].as_str() {
                        d.communities.insert(code.to_owned(), fid);
                    }
                    Ok::<(), ApiError>(())
                },
            )?;
        }
        for (i, l) in COUNTED.iter().enumerate() {
            if !store.has_layer(l.name())? {
                continue;
            }
            for (code, n) in store.count_codes(*l, "grid_code", Selection::All)? {
                d.counts.entry(code).or_default()[i] = u64::from(n);
            }
        }
        Ok(d)
    }

    /// The directory after a change inside `community` (an edit or a
    /// re-partition of it, which moves entities only between its own
    /// grids): its grids and the entity counts of its old and new grid
    /// codes are read again, and the privacy decisions below it
    /// ([`Disclosure::update`]). Equal to a fresh [`Directory::load`].
    ///
    /// # Errors
    /// Store errors.
    pub fn updated(&self, store: &AnyStore, community: &str) -> Result<Directory, ApiError> {
        let mut d = self.clone();
        d.disclosure.update(store, community)?;
        let old = d.community_grids.remove(community).unwrap_or_default();
        for g in &old {
            d.grids.remove(g);
        }
        let mut codes = Vec::new();
        if store.has_layer(Layer::Grids.name())? {
            let mine = [community];
            let selection = Selection::In {
                column: "parent_code",
                values: &mine,
            };
            let columns = ["code", "households"];
            store.read_rows(Layer::Grids.name(), &columns, selection, |fid, v| {
                if let Some(code) = v[0].as_str() {
                    codes.push(code.to_owned());
                    let households = v[1].as_i64().unwrap_or(0);
                    d.grids
                        .insert(code.to_owned(), GridEntry { fid, households });
                }
                Ok::<(), ApiError>(())
            })?;
        }
        codes.sort_unstable();
        let mut keys: Vec<&str> = old.iter().chain(&codes).map(String::as_str).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in &keys {
            d.counts.remove(*k);
        }
        for (i, l) in COUNTED.iter().enumerate() {
            let selection = Selection::In {
                column: "grid_code",
                values: &keys,
            };
            for (code, n) in store.count_codes(*l, "grid_code", selection)? {
                d.counts.entry(code).or_default()[i] = u64::from(n);
            }
        }
        if !codes.is_empty() {
            d.community_grids.insert(community.to_owned(), codes);
        }
        Ok(d)
    }

    /// Brings the directory up to date after a batch of the change feed:
    /// the privacy decisions where counts changed
    /// ([`Disclosure::update_counts`]), the households of the grids of
    /// `communities`, and the entity counts of the grids in `counted`.
    /// Afterwards it equals a fresh [`Directory::load`].
    ///
    /// # Errors
    /// Store errors.
    pub fn apply_changes(
        &mut self,
        store: &AnyStore,
        communities: &[&str],
        counted: &[&str],
        buildings_changed: bool,
    ) -> Result<(), ApiError> {
        let d = self;
        if !communities.is_empty() {
            d.disclosure
                .update_counts(store, communities, buildings_changed)?;
            let selection = Selection::In {
                column: "parent_code",
                values: communities,
            };
            store.read_rows(
                Layer::Grids.name(),
                &["code", "households"],
                selection,
                |fid, v| {
                    if let Some(code) = v[0].as_str() {
                        let households = v[1].as_i64().unwrap_or(0);
                        d.grids
                            .insert(code.to_owned(), GridEntry { fid, households });
                    }
                    Ok::<(), ApiError>(())
                },
            )?;
        }
        if !counted.is_empty() {
            for k in counted {
                d.counts.remove(*k);
            }
            for (i, l) in COUNTED.iter().enumerate() {
                if !store.has_layer(l.name())? {
                    continue;
                }
                let selection = Selection::In {
                    column: "grid_code",
                    values: counted,
                };
                for (code, n) in store.count_codes(*l, "grid_code", selection)? {
                    d.counts.entry(code).or_default()[i] = u64::from(n);
                }
            }
        }
        Ok(())
    }

    /// Number of communities.
    #[must_use]
    pub fn communities(&self) -> usize {
        self.communities.len()
    }

    /// Number of grids.
    #[must_use]
    pub fn grids(&self) -> usize {
        self.grids.len()
    }

    /// True when the counts of unit `code` (with these `props`) may be
    /// published: the hierarchy's decision and each count on its own.
    fn published(&self, code: &str, props: &Map<String, Json>) -> bool {
        self.disclosure.unit_published(
            Some(code),
            int(props, "households"),
            Some(int(props, "persons")),
        )
    }

    /// Applies the privacy rule to a unit's `props` for `who`; returns
    /// whether its counts are shown.
    fn disclose(&self, code: &str, props: &mut Map<String, Json>, who: Audience) -> bool {
        if who == Audience::Staff || self.published(code, props) {
            return true;
        }
        withhold(props, self.disclosure.privacy());
        false
    }
}

/// A feature's geometry and its columns as JSON.
type Row = (Geometry<f64>, Map<String, Json>);

/// One feature of `layer` by fid.
fn read_row(store: &AnyStore, layer: Layer, fid: i64) -> Result<Option<Row>, ApiError> {
    let schema = store.schema(layer.name())?;
    let cols: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let mut row = None;
    store.read_features(
        layer.name(),
        &cols,
        Selection::Fids(&[fid]),
        |_, g, values| {
            let mut props = Map::new();
            for (c, v) in cols.iter().zip(values) {
                props.insert(
                    (*c).to_owned(),
                    match v {
                        Value::Integer(i) => json!(i),
                        Value::Real(f) => json!(f),
                        Value::Text(s) => json!(s),
                        Value::Null => Json::Null,
                    },
                );
            }
            let geometry = match g {
                Some(Ok(g)) => g,
                Some(Err(reason)) => return Err(ApiError::from(StoreError::Blob { reason })),
                None => Geometry::MultiPolygon(geo_types::MultiPolygon::new(vec![])),
            };
            row = Some((geometry, props));
            Ok(())
        },
    )?;
    Ok(row)
}

/// The latest version of a community, 0 when it has none (or its code is
/// not one wangge writes versions for).
fn version(store: &AnyStore, community: &str) -> Result<i64, ApiError> {
    match community.parse::<CommunityCode>() {
        Ok(c) => Ok(store.latest_version(c)?),
        Err(_) => Ok(0),
    }
}

/// Whether a grid is locked (a code wangge cannot lock never is).
fn locked(store: &AnyStore, code: &str) -> Result<bool, ApiError> {
    match code.parse::<GridCode>() {
        Ok(g) => Ok(store.is_locked(g)?),
        Err(_) => Ok(false),
    }
}

/// The GeoJSON Feature of a grid with its statistics.
fn grid_feature(
    store: &AnyStore,
    dir: &Directory,
    code: &str,
    with_version: bool,
    who: Audience,
) -> Result<Option<Json>, ApiError> {
    let Some(entry) = dir.grids.get(code) else {
        return Ok(None);
    };
    let Some((geometry, mut props)) = read_row(store, Layer::Grids, entry.fid)? else {
        return Ok(None);
    };
    let path = code_path(code);
    props.insert("district_code".into(), json!(path[0]));
    props.insert("street_code".into(), json!(path[1]));
    props.insert("community_code".into(), json!(path[2]));
    let counts = dir.counts.get(code).copied().unwrap_or_default();
    for (l, n) in COUNTED.iter().zip(counts) {
        props.insert(l.name().into(), json!(n));
    }
    let shown = dir.disclose(code, &mut props, who);
    // Households relative to the community's mean grid; in public only
    // when both counts are published (with the community's total it would
    // give the grid's households, and the reverse).
    let community_shown = who == Audience::Staff
        || dir.disclosure.code_published(path[2]) && dir.disclosure.code_published(code);
    if let Some(sibs) = dir.community_grids.get(path[2])
        && shown
        && community_shown
    {
        let total: i64 = sibs
            .iter()
            .filter_map(|c| dir.grids.get(c))
            .map(|g| g.households)
            .sum();
        if total > 0 {
            let mean = total as f64 / sibs.len() as f64;
            props.insert(
                "balance".into(),
                json!((entry.households as f64 / mean * 1000.0).round() / 1000.0),
            );
        }
    }
    props.insert("locked".into(), json!(locked(store, code)?));
    if with_version {
        props.insert("version".into(), json!(version(store, path[2])?));
    }
    Ok(Some(json!({
        "type": "Feature",
        "id": code,
        "geometry": geometry_to_json(&geometry),
        "properties": props,
    })))
}

fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// `GET /v1/grids/{code}`: one grid as a GeoJSON Feature with its counts
/// (households, persons, buildings, places, objects, events,
/// organizations), area, balance, lock and community version.
pub(crate) async fn grid(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let who = audience(&state, &headers)?;
    let code: GridCode = code
        .parse()
        .map_err(|e: wangge_engine::codes::CodeError| ApiError::BadRequest(e.to_string()))?;
    let code = code.to_string();
    let st = Arc::clone(&state);
    let f = blocking(move || {
        let dir = st.directory();
        st.pool
            .with(|store| grid_feature(store, &dir, &code, true, who))?
            .ok_or_else(|| ApiError::NotFound(format!("no grid {code}")))
    })
    .await?;
    Ok(answer(f, who))
}

fn parse_bbox(s: &str) -> Result<[f64; 4], ApiError> {
    let bad = |why: &str| {
        ApiError::BadRequest(format!(
            "bbox {:?}: {why}; expected minlon,minlat,maxlon,maxlat",
            s.chars().take(80).collect::<String>()
        ))
    };
    let v: Vec<f64> = s
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad("not four numbers"))?;
    let [a, b, c, d] = v[..] else {
        return Err(bad("not four numbers"));
    };
    if ![a, b, c, d].iter().all(|x| x.is_finite()) {
        return Err(bad("not finite"));
    }
    if !(-180.0..=180.0).contains(&a)
        || !(-180.0..=180.0).contains(&c)
        || !(-90.0..=90.0).contains(&b)
        || !(-90.0..=90.0).contains(&d)
    {
        return Err(bad("outside -180..180 / -90..90"));
    }
    if a > c || b > d {
        return Err(bad("min is greater than max"));
    }
    Ok([a, b, c, d])
}

/// `GET /v1/grids?bbox=minlon,minlat,maxlon,maxlat` (grids that intersect
/// the box) or `?community=CODE`, with `limit` (default 1000, at most
/// 10000): a FeatureCollection in code order; `truncated` says whether
/// more matched.
pub(crate) async fn grids(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let who = audience(&state, &headers)?;
    let q = query_map(q)?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|&l| (1..=MAX_LIMIT).contains(&l))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be a whole number in 1..={MAX_LIMIT}"))
            })?,
    };
    enum By {
        Bbox([f64; 4]),
        Community(String),
    }
    let by = match (q.get("bbox"), q.get("community")) {
        (Some(b), None) => By::Bbox(parse_bbox(b)?),
        (None, Some(c)) => By::Community(
            c.parse::<CommunityCode>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))?
                .to_string(),
        ),
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of bbox=minlon,minlat,maxlon,maxlat or community=CODE".into(),
            ));
        }
    };
    let st = Arc::clone(&state);
    let v = blocking(move || {
        let dir = st.directory();
        st.pool.with(|store| {
            let mut feats = Vec::new();
            let mut truncated = false;
            match by {
                By::Community(c) => {
                    if !dir.communities.contains_key(&c) && !dir.community_grids.contains_key(&c) {
                        return Err(ApiError::NotFound(format!("no community {c}")));
                    }
                    for code in dir.community_grids.get(&c).into_iter().flatten() {
                        if feats.len() == limit {
                            truncated = true;
                            break;
                        }
                        if let Some(f) = grid_feature(store, &dir, code, false, who)? {
                            feats.push(f);
                        }
                    }
                }
                By::Bbox(_) if dir.grids.is_empty() => {}
                By::Bbox(b) => {
                    let rect = Rect::new(coord! {x: b[0], y: b[1]}, coord! {x: b[2], y: b[3]});
                    for code in store.codes_in(Layer::Grids, rect)? {
                        let Some(entry) = dir.grids.get(&code) else {
                            continue;
                        };
                        // Exact test on the outline, after the R-tree's box test.
                        let Some((g, _)) = read_row(store, Layer::Grids, entry.fid)? else {
                            continue;
                        };
                        if !g.intersects(&rect) {
                            continue;
                        }
                        if feats.len() == limit {
                            truncated = true;
                            break;
                        }
                        if let Some(f) = grid_feature(store, &dir, &code, false, who)? {
                            feats.push(f);
                        }
                    }
                }
            }
            Ok(json!({"type": "FeatureCollection", "features": feats, "truncated": truncated}))
        })
    })
    .await?;
    Ok(answer(v, who))
}

/// `GET /v1/communities/{code}`: the community as a GeoJSON Feature with
/// its version and a summary of its grids.
pub(crate) async fn community(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let who = audience(&state, &headers)?;
    let code = code
        .parse::<CommunityCode>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .to_string();
    let st = Arc::clone(&state);
    let v = blocking(move || {
        let dir = st.directory();
        st.pool.with(|store| {
            let fid = dir
                .communities
                .get(&code)
                .ok_or_else(|| ApiError::NotFound(format!("no community {code}")))?;
            let (geometry, mut props) = read_row(store, Layer::Communities, *fid)?
                .ok_or_else(|| ApiError::NotFound(format!("no community {code}")))?;
            let community_shown = dir.disclose(&code, &mut props, who);
            let mut grids = Vec::new();
            let mut hh = Vec::new();
            let mut withheld = 0usize;
            for g in dir.community_grids.get(&code).into_iter().flatten() {
                let Some(entry) = dir.grids.get(g) else {
                    continue;
                };
                if let Some((_, p)) = read_row(store, Layer::Grids, entry.fid)? {
                    let mut s = Map::new();
                    for k in [
                        "code",
                        "name",
                        "households",
                        "persons",
                        "buildings",
                        "area_m2",
                    ] {
                        s.insert(k.into(), p.get(k).cloned().unwrap_or(Json::Null));
                    }
                    if dir.disclose(g, &mut s, who) {
                        hh.push(entry.households);
                    } else {
                        withheld += 1;
                    }
                    s.insert("locked".into(), json!(locked(store, g)?));
                    grids.push(Json::Object(s));
                }
            }
            props.insert("version".into(), json!(version(store, &code)?));
            props.insert("grid_count".into(), json!(grids.len()));
            // Over the grids whose counts are shown; the mean of all grids
            // (the community's total over their number) only when the
            // community's total is shown.
            if !hh.is_empty() || withheld > 0 {
                let all = hh.len() + withheld;
                let mean = (community_shown && all > 0).then(|| {
                    let total: i64 = dir
                        .community_grids
                        .get(&code)
                        .into_iter()
                        .flatten()
                        .filter_map(|g| dir.grids.get(g))
                        .map(|g| g.households)
                        .sum();
                    (total as f64 / all as f64 * 10.0).round() / 10.0
                });
                props.insert(
                    "grid_households".into(),
                    json!({"min": hh.iter().min(), "max": hh.iter().max(),
                           "mean": mean, "withheld": withheld}),
                );
            }
            props.insert("grids".into(), Json::Array(grids));
            Ok(json!({
                "type": "Feature",
                "id": code,
                "geometry": geometry_to_json(&geometry),
                "properties": props,
            }))
        })
    })
    .await?;
    Ok(answer(v, who))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_parsing_rejects_what_it_should() {
        assert_eq!(
            parse_bbox("116.3,39.8,116.5,40").unwrap(),
            [116.3, 39.8, 116.5, 40.0]
        );
        for bad in [
            "1,2,3",
            "a,b,c,d",
            "116.5,39,116.3,40",
            "NaN,1,2,3",
            "0,95,1,96",
        ] {
            assert!(parse_bbox(bad).is_err(), "{bad}");
        }
    }
}
