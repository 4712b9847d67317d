//! `GET /v1/locate` and `POST /v1/locate`: which grid holds a point, with
//! the answers of `wangge locate`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use rayon::prelude::*;
use serde_json::{Map, Value as Json, json};
use wangge_engine::assign::{GridLayer, GridPolygon, code_path};
use wangge_engine::codes::CommunityCode;
use wangge_engine::crs::Crs;
use wangge_engine::io::csv::{check_lon_lat, coordinate_columns};
use wangge_engine::model::Layer;
use wangge_engine::store::AnyStore;

use super::AppState;
use super::error::{ApiError, blocking};

/// Most points one `POST /v1/locate` takes.
pub const MAX_POINTS: usize = 100_000;

/// The point index and the names of every code: what locate answers from.
#[derive(Debug)]
pub struct Locator {
    layer: GridLayer,
    level: &'static str,
    names: HashMap<String, String>,
    /// The polygons indexed, kept to rebuild the index after an edit
    /// ([`Locator::updated`]) without reading every grid again.
    polygons: Vec<Arc<GridPolygon>>,
}

/// How far around a community [`Locator::updated`] reads grids again,
/// degrees: well beyond what noding moves a neighbour's vertex (about
/// 2 cm), so every grid an edit can have changed is read.
const NODED_MARGIN_DEG: f64 = 1e-5;

impl Locator {
    /// Indexes the grids of a store (its communities while it has no grids,
    /// as `wangge locate` does) and reads every code's name.
    ///
    /// # Errors
    /// Store errors, or a store with neither grids nor communities.
    pub fn load(store: &AnyStore) -> anyhow::Result<Locator> {
        let (layer, level) = if store.has_features(Layer::Grids.name())? {
            (Layer::Grids, "grid")
        } else if store.has_features(Layer::Communities.name())? {
            (Layer::Communities, "community")
        } else {
            anyhow::bail!(
                "{}: neither grids nor communities to locate points in",
                store.location()
            );
        };
        let names = crate::cli::admin_names(store)?;
        let polygons: Vec<Arc<GridPolygon>> = GridLayer::polygons_of(store, layer, None)?
            .into_iter()
            .map(Arc::new)
            .collect();
        Ok(Locator {
            layer: GridLayer::new_coverage_shared(&polygons),
            level,
            names,
            polygons,
        })
    }

    /// The index after a change inside `community` (an edit or a
    /// re-partition of it): the grids whose box meets the community's
    /// (its own, and the neighbours whose outlines the edit noded) are
    /// read again and the index rebuilt from memory. Equal to a fresh
    /// [`Locator::load`]; that is what it falls back to for a store that
    /// had no grids before, or a community it cannot find.
    ///
    /// # Errors
    /// Store errors.
    pub fn updated(&self, store: &AnyStore, community: &str) -> anyhow::Result<Locator> {
        let bbox = match community.parse::<CommunityCode>() {
            Ok(c) => store.bbox_of(c.into())?,
            Err(_) => None,
        };
        let region = match bbox {
            Some(b) if self.level == "grid" => b,
            _ => return Locator::load(store),
        };
        let m = NODED_MARGIN_DEG;
        let region = geo_types::Rect::new(
            (region.min().x - m, region.min().y - m),
            (region.max().x + m, region.max().y + m),
        );
        let fresh = GridLayer::polygons_of(store, Layer::Grids, Some(region))?;
        let fresh_codes: std::collections::HashSet<&str> =
            fresh.iter().map(|p| p.code.as_str()).collect();
        let meets = |p: &GridPolygon| {
            use geo::BoundingRect;
            p.geometry.bounding_rect().is_some_and(|b| {
                b.min().x <= region.max().x
                    && b.max().x >= region.min().x
                    && b.min().y <= region.max().y
                    && b.max().y >= region.min().y
            })
        };
        let mut names = self.names.clone();
        let mut polygons = Vec::with_capacity(self.polygons.len() + fresh.len());
        for p in &self.polygons {
            if fresh_codes.contains(p.code.as_str()) || meets(p) {
                names.remove(&p.code);
            } else {
                polygons.push(Arc::clone(p));
            }
        }
        for p in fresh {
            names.insert(p.code.clone(), p.name.clone());
            polygons.push(Arc::new(p));
        }
        Ok(Locator {
            layer: GridLayer::new_coverage_shared(&polygons),
            level: self.level,
            names,
            polygons,
        })
    }

    /// The level answered (`grid`, or `community` for a store without grids).
    #[must_use]
    pub fn level(&self) -> &'static str {
        self.level
    }

    /// The polygons it locates in.
    #[must_use]
    pub fn layer(&self) -> &GridLayer {
        &self.layer
    }

    /// Number of polygons indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.layer.len()
    }

    /// True when nothing is indexed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.layer.is_empty()
    }

    fn name_of<'a>(&'a self, code: &str, fallback: &'a str) -> &'a str {
        self.names.get(code).map_or(fallback, String::as_str)
    }

    /// The answer for one WGS84 point, in the shape of `wangge locate --json`
    /// (`lon`/`lat` are echoed as given).
    fn answer(&self, given: (f64, f64), id: Option<u32>, lon: f64, lat: f64) -> Json {
        match id {
            Some(id) => {
                let code = self.layer.code(id);
                let path: Vec<Json> = ["district", "street", "community", "grid"]
                    .iter()
                    .zip(code_path(code))
                    .filter(|(_, c)| !c.is_empty())
                    .map(|(level, c)| {
                        json!({"level": level, "code": c, "name": self.name_of(c, self.layer.name(id))})
                    })
                    .collect();
                json!({"lon": given.0, "lat": given.1, "inside": true, "level": self.level,
                       "code": code, "name": self.layer.name(id), "path": path})
            }
            None => {
                let near = self.layer.index().nearest(lon, lat);
                json!({"lon": given.0, "lat": given.1, "inside": false, "level": self.level,
                       "nearest_code": near.map(|n| self.layer.code(n.id)),
                       "nearest_name": near.map(|n| self.layer.name(n.id)),
                       "distance_m": near.map(|n| (n.distance_m * 10.0).round() / 10.0)})
            }
        }
    }

    /// The compact batch answer for one point.
    fn batch_answer(&self, id: Option<u32>, lon: f64, lat: f64) -> Json {
        match id {
            Some(id) => {
                let code = self.layer.code(id);
                let mut m = Map::new();
                m.insert("inside".into(), json!(true));
                m.insert("code".into(), json!(code));
                m.insert("name".into(), json!(self.layer.name(id)));
                for (k, c) in [
                    "district_code",
                    "street_code",
                    "community_code",
                    "grid_code",
                ]
                .iter()
                .zip(code_path(code))
                {
                    if !c.is_empty() {
                        m.insert((*k).into(), json!(c));
                    }
                }
                Json::Object(m)
            }
            None => {
                let near = self.layer.index().nearest(lon, lat);
                json!({"inside": false,
                       "nearest_code": near.map(|n| self.layer.code(n.id)),
                       "distance_m": near.map(|n| (n.distance_m * 10.0).round() / 10.0)})
            }
        }
    }
}

fn query_map(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn crs_of(q: &HashMap<String, String>) -> Result<Crs, ApiError> {
    q.get("crs").map_or(Ok(Crs::Wgs84), |c| {
        c.parse()
            .map_err(|e: wangge_engine::crs::CrsParseError| ApiError::BadRequest(e.to_string()))
    })
}

fn number(q: &HashMap<String, String>, key: &str) -> Result<f64, ApiError> {
    let v = q
        .get(key)
        .ok_or_else(|| ApiError::BadRequest(format!("missing query parameter {key}")))?;
    v.trim().parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{key} {:?} is not a number",
            v.chars().take(40).collect::<String>()
        ))
    })
}

/// `GET /v1/locate?lon=&lat=[&crs=wgs84|gcj02|bd09]`.
pub(crate) async fn locate_one(
    State(state): State<Arc<AppState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<axum::Json<Json>, ApiError> {
    let q = query_map(q)?;
    let crs = crs_of(&q)?;
    let (lon, lat) = (number(&q, "lon")?, number(&q, "lat")?);
    check_lon_lat(lon, lat).map_err(ApiError::BadRequest)?;
    let (wlon, wlat) = crs.to_wgs84(lon, lat);
    let loc = state.locator();
    let id = loc.layer.locate(wlon, wlat);
    let mut v = if id.is_some() {
        loc.answer((lon, lat), id, wlon, wlat)
    } else {
        // The nearest search may build the segment tree on first use.
        blocking(move || Ok(loc.answer((lon, lat), None, wlon, wlat))).await?
    };
    v["crs"] = json!(crs.name());
    Ok(axum::Json(v))
}

/// One point of a batch as parsed: its coordinates or why not.
type Parsed = Result<(f64, f64), String>;

fn parse_json_points(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    let v: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
    let Json::Array(items) = v else {
        return Err(ApiError::BadRequest(
            "the JSON body must be an array of [lon, lat] or {\"lon\": …, \"lat\": …}".into(),
        ));
    };
    too_many(items.len())?;
    let coord = |v: Option<&Json>, what: &str| -> Result<f64, String> {
        match v {
            Some(Json::Number(n)) => n.as_f64().ok_or_else(|| format!("{what} is not a number")),
            // Allow numbers written as strings, e.g. "NaN", to get a precise reason.
            Some(Json::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| format!("{what} {s:?} is not a number")),
            Some(other) => Err(format!("{what} {other} is not a number")),
            None => Err(format!("no {what}")),
        }
    };
    Ok(items
        .iter()
        .map(|it| match it {
            Json::Array(a) if a.len() == 2 => {
                Ok((coord(a.first(), "lon")?, coord(a.get(1), "lat")?))
            }
            Json::Array(a) => Err(format!(
                "expected [lon, lat], got an array of {} values",
                a.len()
            )),
            Json::Object(o) => Ok((
                coord(o.get("lon").or_else(|| o.get("lng")), "lon")?,
                coord(o.get("lat"), "lat")?,
            )),
            other => Err(format!(
                "expected [lon, lat] or {{\"lon\": …, \"lat\": …}}, got {}",
                other.to_string().chars().take(40).collect::<String>()
            )),
        })
        .collect())
}

fn parse_csv_points(body: &[u8]) -> Result<Vec<Parsed>, ApiError> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let header: Vec<String> = r
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let (ilon, ilat) = coordinate_columns(&header, None, None)
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?;
    let mut out = Vec::new();
    for rec in r.records() {
        too_many(out.len() + 1)?;
        out.push(match rec {
            Ok(rec) => {
                let f = |i: usize, what: &str| -> Result<f64, String> {
                    let s = rec.get(i).ok_or_else(|| format!("no {what} field"))?;
                    s.parse()
                        .map_err(|_| format!("{what} {s:?} is not a number"))
                };
                f(ilon, "lon").and_then(|lon| Ok((lon, f(ilat, "lat")?)))
            }
            Err(e) => Err(format!("unreadable CSV row: {e}")),
        });
    }
    Ok(out)
}

fn too_many(n: usize) -> Result<(), ApiError> {
    if n > MAX_POINTS {
        Err(ApiError::TooLarge(format!(
            "too many points: at most {MAX_POINTS} per request"
        )))
    } else {
        Ok(())
    }
}

/// The media type of a request without parameters, lowercased.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// True for `application/json` and `application/*+json`.
pub(crate) fn is_json(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// `POST /v1/locate[?crs=…]`: a JSON array or a CSV table (`lon,lat`
/// header) of up to [`MAX_POINTS`] points; answers in input order, each
/// inside (codes), outside (nearest grid) or an error.
pub(crate) async fn locate_many(
    State(state): State<Arc<AppState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Json>, ApiError> {
    let q = query_map(q)?;
    let crs = crs_of(&q)?;
    let media = media_type(&headers);
    let csv = match media.as_deref() {
        Some(m) if is_json(m) => false,
        Some("text/csv" | "application/csv") => true,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "POST /v1/locate takes application/json or text/csv, not {}",
                other.unwrap_or("a body without Content-Type")
            )));
        }
    };
    let loc = state.locator();
    let v = blocking(move || {
        let parsed = if csv {
            parse_csv_points(&body)?
        } else {
            parse_json_points(&body)?
        };
        let checked: Vec<Parsed> = parsed
            .into_par_iter()
            .map(|p| {
                let (lon, lat) = p?;
                check_lon_lat(lon, lat)?;
                Ok(crs.to_wgs84(lon, lat))
            })
            .collect();
        let points: Vec<[f64; 2]> = checked
            .iter()
            .map(|p| p.as_ref().map_or([f64::NAN, f64::NAN], |&(x, y)| [x, y]))
            .collect();
        let mut ids = vec![None; points.len()];
        points
            .par_chunks(4096)
            .zip(ids.par_chunks_mut(4096))
            .for_each(|(p, o)| loc.layer.index().locate_many(p, o));
        let results: Vec<Json> = checked
            .par_iter()
            .zip(ids.par_iter())
            .map(|(p, &id)| match p {
                Ok((lon, lat)) => loc.batch_answer(id, *lon, *lat),
                Err(e) => json!({"error": e}),
            })
            .collect();
        let inside = results.iter().filter(|r| r["inside"] == true).count();
        let errors = checked.iter().filter(|p| p.is_err()).count();
        Ok(json!({
            "level": loc.level,
            "crs": crs.name(),
            "count": results.len(),
            "inside": inside,
            "outside": results.len() - inside - errors,
            "errors": errors,
            "results": results,
        }))
    })
    .await?;
    Ok(axum::Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_points_take_both_shapes_and_report_bad_ones() {
        let p = parse_json_points(
            br#"[[116.4, 39.9], {"lon": 116.5, "lat": 40}, [1], {"lat": 2}, "x", ["NaN", 1]]"#,
        )
        .unwrap();
        assert_eq!(p[0], Ok((116.4, 39.9)));
        assert_eq!(p[1], Ok((116.5, 40.0)));
        assert!(p[2].is_err() && p[3].is_err() && p[4].is_err());
        assert!(p[5].as_ref().is_ok_and(|(x, _)| x.is_nan()));
        assert!(parse_json_points(b"{").is_err());
        assert!(parse_json_points(b"{}").is_err());
    }

    #[test]
    fn csv_points_need_a_header() {
        let p = parse_csv_points(b"id,lon,lat\n1,116.4,39.9\n2,abc,39\n").unwrap();
        assert_eq!(p[0], Ok((116.4, 39.9)));
        assert!(p[1].is_err());
        assert!(parse_csv_points(b"a,b\n1,2\n").is_err());
    }
}
