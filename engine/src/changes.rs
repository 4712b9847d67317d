//! The change feed's input (DESIGN §11): changes read from JSON or NDJSON,
//! validated, located in the grid layer, then written by the store in one
//! transaction per batch ([`wangge_store::changes`]).
//!
//! A change is an object:
//! `{"change_id", "op": "add"|"move"|"update"|"remove", "layer", "id",
//! "lon", "lat", "crs"?, "properties"?}`; a building carries a GeoJSON
//! `"geometry"` (a Polygon) instead of lon/lat and is located by its
//! interior point. Each bad change is rejected alone with its reason
//! ([`Rejected`]); the others apply. A point outside every grid is
//! rejected with the nearest grid and its distance.

use std::str::FromStr;

use geo::InteriorPoint;
use geo_types::{Geometry, MultiPolygon, Point};
use h3o::{LatLng, Resolution};
use serde::Serialize;
use serde_json::Value as Json;

use crate::assign::{GridLayer, code_path};
use crate::crs::Crs;
use crate::model::Layer;
use crate::store::changes::{CHANGE_LAYERS, ChangeOp, EntityChange, Outcome, Placed};
use crate::store::{AnyStore, StoreError, Value};

/// The most changes one request may carry.
pub const MAX_CHANGES: usize = 100_000;

/// The H3 resolution of the cells a person's position is logged as.
pub const PERSON_CELL_RES: Resolution = Resolution::Eight;

/// A change refused, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Its position in the input (0-based: array element or line).
    pub index: usize,
    /// Its `change_id`, when it had one.
    pub change_id: Option<String>,
    /// Why.
    pub reason: String,
}

/// One applied change, as the answer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The change's id.
    pub change_id: String,
    /// The entity's id.
    pub id: String,
    /// The entity's grid afterwards (`null` once removed).
    pub grid_code: Option<String>,
    /// The entity's community afterwards (`null` once removed).
    pub community_code: Option<String>,
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Changes read.
    pub changes_in: u64,
    /// Changes written.
    pub applied: u64,
    /// Changes whose `change_id` was applied before (nothing changed).
    pub duplicates: u64,
    /// The refused ones, in input order.
    pub rejected: Vec<Rejected>,
    /// The change log's last position after the batch.
    pub seq: i64,
    /// The applied changes, in input order.
    pub results: Vec<Applied>,
}

/// The H3 cell (resolution [`PERSON_CELL_RES`]) of a WGS84 point, as the
/// change log keeps a person's position.
#[must_use]
pub fn person_cell(lon: f64, lat: f64) -> Option<i64> {
    let ll = LatLng::new(lat, lon).ok()?;
    Some(u64::from(ll.to_cell(PERSON_CELL_RES)) as i64)
}

/// Splits a request body into change objects: a JSON array, or NDJSON (one
/// object per non-blank line). An element that is not an object, or a line
/// that is not JSON, is a reject of its own (its index counts the non-blank
/// lines); a body that is not an array at all is an error.
///
/// # Errors
/// The reason the body as a whole cannot be read.
pub fn split_body(body: &[u8], ndjson: bool) -> Result<Vec<Result<Json, String>>, String> {
    if ndjson {
        let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
        return Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {e}")))
            .collect());
    }
    let v: Json = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match v {
        Json::Array(items) => Ok(items.into_iter().map(Ok).collect()),
        other => Err(format!(
            "the body must be a JSON array of changes (or application/x-ndjson), not {}",
            kind(&other)
        )),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Reads, checks and locates one change.
///
/// # Errors
/// Why it is refused.
pub fn prepare(v: &Json, grids: &GridLayer) -> Result<EntityChange, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("a change must be an object, not {}", kind(v)))?;
    let text = |k: &str| -> Result<Option<String>, String> {
        match o.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) if s.trim().is_empty() => Err(format!("\"{k}\" is empty")),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Number(n)) if k == "id" => Ok(Some(n.to_string())),
            Some(other) => Err(format!("\"{k}\" must be a string, not {}", kind(other))),
        }
    };
    let change_id = text("change_id")?.ok_or("missing \"change_id\"")?;
    if change_id.len() > 200 {
        return Err("\"change_id\" is longer than 200 bytes".into());
    }
    let op_name = text("op")?.ok_or("missing \"op\"")?;
    let op = ChangeOp::parse(&op_name).ok_or_else(|| {
        format!("unknown op {op_name:?}; expected one of: add, move, update, remove")
    })?;
    let layer_name = text("layer")?.ok_or("missing \"layer\"")?;
    let layer = Layer::from_str(&layer_name)
        .ok()
        .filter(|l| CHANGE_LAYERS.contains(l))
        .ok_or_else(|| {
            format!(
                "unknown layer {layer_name:?}; expected one of: persons, buildings, places, \
                 objects, events, organizations"
            )
        })?;
    let id = text("id")?.ok_or("missing \"id\"")?;
    let crs = match text("crs")? {
        None => Crs::Wgs84,
        Some(c) => Crs::from_str(&c).map_err(|e| e.to_string())?,
    };
    let properties = match o.get("properties") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Object(p)) => p
            .iter()
            .map(|(k, v)| Ok((k.clone(), value(k, v)?)))
            .collect::<Result<_, String>>()?,
        Some(other) => {
            return Err(format!(
                "\"properties\" must be an object, not {}",
                kind(other)
            ));
        }
    };
    let geometry = if layer == Layer::Buildings {
        for k in ["lon", "lat"] {
            if o.contains_key(k) {
                return Err(format!(
                    "a building is given by its \"geometry\" (a Polygon), not \"{k}\""
                ));
            }
        }
        match o.get("geometry") {
            None | Some(Json::Null) => None,
            Some(g) => Some(building(g, crs)?),
        }
    } else {
        if o.contains_key("geometry") {
            return Err(format!(
                "a change to {layer} is given by lon/lat, not \"geometry\""
            ));
        }
        point(o.get("lon"), o.get("lat"), crs)?.map(Geometry::Point)
    };
    let placed = match geometry {
        None => None,
        Some(g) => Some(locate(g, layer, grids)?),
    };
    Ok(EntityChange {
        change_id,
        op,
        layer,
        id,
        placed,
        properties,
    })
}

/// A property value: numbers, text, booleans (as 0/1) and null.
fn value(k: &str, v: &Json) -> Result<Value, String> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| format!("property {k:?} is not a finite number"))?,
            ),
        },
        Json::String(s) => Value::Text(s.clone()),
        other => {
            return Err(format!(
                "property {k:?} is {}; only numbers, text, true/false and null are stored",
                kind(other)
            ));
        }
    })
}

/// A WGS84 point from `lon`/`lat` given in `crs`; none when both are absent.
fn point(lon: Option<&Json>, lat: Option<&Json>, crs: Crs) -> Result<Option<Point<f64>>, String> {
    let num = |k: &str, v: Option<&Json>| -> Result<Option<f64>, String> {
        match v {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(format!("\"{k}\" must be a number, not {}", kind(other))),
        }
    };
    match (num("lon", lon)?, num("lat", lat)?) {
        (None, None) => Ok(None),
        (Some(x), Some(y)) => {
            if !(x.is_finite()
                && y.is_finite()
                && (-180.0..=180.0).contains(&x)
                && (-90.0..=90.0).contains(&y))
            {
                return Err(format!(
                    "bad coordinates lon {x}, lat {y}: need -180 ≤ lon ≤ 180 and -90 ≤ lat ≤ 90"
                ));
            }
            let (x, y) = crs.to_wgs84(x, y);
            Ok(Some(Point::new(x, y)))
        }
        _ => Err("give both \"lon\" and \"lat\"".into()),
    }
}

/// A building's polygon, checked for validity.
fn building(g: &Json, crs: Crs) -> Result<Geometry<f64>, String> {
    let mut notes = Vec::new();
    let mut geometry = crate::io::geojson::parse_geometry(g, &mut notes)
        .map_err(|e| format!("bad \"geometry\": {e}"))?;
    let Geometry::Polygon(p) = &geometry else {
        return Err("a building's \"geometry\" must be a Polygon".into());
    };
    let bad = p
        .exterior()
        .0
        .iter()
        .chain(p.interiors().iter().flat_map(|r| &r.0))
        .any(|c| {
            !(c.x.is_finite()
                && c.y.is_finite()
                && (-180.0..=180.0).contains(&c.x)
                && (-90.0..=90.0).contains(&c.y))
        });
    if bad {
        return Err("bad \"geometry\": coordinates outside -180..180 / -90..90".into());
    }
    crs.geometry_to_wgs84(&mut geometry);
    let Geometry::Polygon(p) = &geometry else {
        unreachable!("converting coordinates keeps the type")
    };
    let problems = crate::validity::problems(&MultiPolygon::new(vec![p.clone()]), 1);
    if let Some(first) = problems.first() {
        return Err(format!("invalid building polygon: {first}"));
    }
    Ok(geometry)
}

/// The grid and community of a new geometry.
fn locate(geometry: Geometry<f64>, layer: Layer, grids: &GridLayer) -> Result<Placed, String> {
    let at = match &geometry {
        Geometry::Point(p) => *p,
        other => other
            .interior_point()
            .ok_or("the geometry has no interior point")?,
    };
    let Some(id) = grids.locate(at.x(), at.y()) else {
        return Err(grids.outside_reason(at.x(), at.y()));
    };
    let grid_code = grids.code(id).to_owned();
    let community_code = code_path(&grid_code)[2].to_owned();
    let cell = (layer == Layer::Persons)
        .then(|| person_cell(at.x(), at.y()))
        .flatten();
    Ok(Placed {
        geometry,
        grid_code,
        community_code,
        cell,
    })
}

/// Prepares and applies one batch in one transaction of `store`, with the
/// time `at` (ISO 8601) in the log. A reject's `index` is its position in
/// `items`.
///
/// # Errors
/// Store errors; nothing of the batch is written then.
pub fn apply_batch(
    store: &mut AnyStore,
    grids: &GridLayer,
    items: &[Result<Json, String>],
    at: &str,
) -> Result<Report, StoreError> {
    let mut report = Report {
        changes_in: items.len() as u64,
        ..Report::default()
    };
    let mut ready = Vec::new();
    let mut where_ = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let change_id = item
            .as_ref()
            .ok()
            .and_then(|v| v.get("change_id"))
            .and_then(Json::as_str)
            .map(str::to_owned);
        match item
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|v| prepare(v, grids))
        {
            Ok(c) => {
                ready.push(c);
                where_.push(i);
            }
            Err(reason) => report.rejected.push(Rejected {
                index: i,
                change_id,
                reason,
            }),
        }
    }
    let outcomes = if ready.is_empty() {
        Vec::new()
    } else {
        store.apply_changes(at, &ready, &person_cell)?
    };
    for ((c, o), i) in ready.into_iter().zip(outcomes).zip(where_) {
        match o {
            Outcome::Applied {
                grid_code,
                community_code,
                ..
            } => {
                report.applied += 1;
                report.results.push(Applied {
                    change_id: c.change_id,
                    id: c.id,
                    grid_code,
                    community_code,
                });
            }
            Outcome::Duplicate => report.duplicates += 1,
            Outcome::Rejected(reason) => report.rejected.push(Rejected {
                index: i,
                change_id: Some(c.change_id),
                reason,
            }),
        }
    }
    report.rejected.sort_by_key(|r| r.index);
    report.seq = store.last_change_seq()?;
    Ok(report)
}
