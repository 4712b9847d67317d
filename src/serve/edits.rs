//! `POST /v1/communities/{code}/edits`: planner edits over HTTP, with a
//! bearer token and optimistic concurrency on the community's version.
//!
//! Edits of one server are applied one at a time (one writer per store).
//! After an edit the grid directory, the tile sources and the point index
//! re-read what changed in the community (and the neighbours its edit
//! noded), and exactly the cached tiles that the changed features reach
//! are dropped (see [`super::AppState`]).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use wangge_engine::codes::CommunityCode;
use wangge_partitioner::edit::{self, EditError, Op, Request};

use super::AppState;
use super::error::{ApiError, blocking};
use super::locate::{is_json, media_type};

/// The JSON body of an edit.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum EditBody {
    Merge {
        grids: [String; 2],
        #[serde(flatten)]
        who: Who,
    },
    Split {
        grid: String,
        #[serde(default = "two")]
        parts: usize,
        #[serde(flatten)]
        who: Who,
    },
    Move {
        building: String,
        to: String,
        #[serde(flatten)]
        who: Who,
    },
    Lock {
        grid: String,
        #[serde(flatten)]
        who: Who,
    },
    Unlock {
        grid: String,
        #[serde(flatten)]
        who: Who,
    },
    Rebalance {
        target: Option<f64>,
        tolerance: Option<f64>,
        #[serde(flatten)]
        who: Who,
    },
}

fn two() -> usize {
    2
}

/// Who asks and why, recorded in the history.
#[derive(Debug, Default, Deserialize)]
struct Who {
    author: Option<String>,
    reason: Option<String>,
}

impl EditBody {
    fn into_op(self, community: &str) -> (Op, Who) {
        match self {
            EditBody::Merge { grids: [a, b], who } => (Op::Merge { a, b }, who),
            EditBody::Split { grid, parts, who } => (Op::Split { grid, parts }, who),
            EditBody::Move { building, to, who } => (Op::Move { building, to }, who),
            EditBody::Lock { grid, who } => (Op::Lock { grid }, who),
            EditBody::Unlock { grid, who } => (Op::Unlock { grid }, who),
            EditBody::Rebalance {
                target,
                tolerance,
                who,
            } => (
                Op::Rebalance {
                    community: community.to_owned(),
                    target,
                    tolerance,
                },
                who,
            ),
        }
    }
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 403 when edits are disabled, 401 without the right bearer token.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Err(ApiError::Forbidden(
            "edits are disabled: the server was started without --token".into(),
        ));
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        None => Err(ApiError::Unauthorized(
            "edits need an Authorization: Bearer <token> header".into(),
        )),
        Some(g) if same_secret(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("invalid bearer token".into())),
    }
}

/// The version in `If-Match` (`3`, `"3"` or `W/"3"`).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let t = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    t.parse::<i64>().map(Some).map_err(|_| {
        ApiError::BadRequest(format!(
            "If-Match {:?} is not a version number",
            s.chars().take(40).collect::<String>()
        ))
    })
}

/// `POST /v1/communities/{code}/edits`.
pub(crate) async fn post_edit(
    State(state): State<Arc<AppState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let parsed_code = code
        .parse::<CommunityCode>()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let community = parsed_code.to_string();
    match media_type(&headers) {
        Some(m) if is_json(&m) => {}
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "edits take application/json, not {}",
                other.as_deref().unwrap_or("a body without Content-Type")
            )));
        }
    }
    let parsed: EditBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("malformed edit: {e}")))?;
    let (op, who) = parsed.into_op(&community);
    match op.community() {
        Ok(c) if c == parsed_code => {}
        Ok(c) => {
            return Err(ApiError::BadRequest(format!(
                "the edit is on community {c}, not {community}"
            )));
        }
        Err(e) => return Err(edit_error(e)),
    }
    let wanted = if_match(&headers)?;
    // One writer per store: edits queue here.
    let _writer = state.edits.lock().await;
    let st = Arc::clone(&state);
    let out = blocking(move || {
        let mut store = super::open_reader(&st.store_path)?;
        let current = store.latest_version(parsed_code)?;
        let Some(v) = wanted else {
            return Err(ApiError::PreconditionRequired {
                message: format!(
                    "edits need If-Match: <version>; community {community} is at version {current}"
                ),
                current,
            });
        };
        if v != current {
            return Err(ApiError::Stale {
                given: v.to_string(),
                current,
            });
        }
        let req = Request {
            op,
            author: who.author.unwrap_or_else(|| "wangge serve".into()),
            reason: who.reason.unwrap_or_default(),
            if_version: Some(v),
        };
        let out = edit::apply(&mut store, &req).map_err(edit_error)?;
        // The edit's own version, and any another process recorded since
        // the last catch-up.
        st.catch_up(&store)?;
        st.metrics.edits.fetch_add(1, Relaxed);
        Ok(out)
    })
    .await?;
    let mut resp = axum::Json(json!(out)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", out.version)) {
        resp.headers_mut().insert(ETAG, v);
    }
    Ok(resp)
}

fn edit_error(e: EditError) -> ApiError {
    match e {
        EditError::Refused(r) => ApiError::Conflict(format!("refused: {r}")),
        EditError::NotFound(r) => ApiError::NotFound(r),
        EditError::Stale {
            expected, current, ..
        } => ApiError::Stale {
            given: expected.to_string(),
            current,
        },
        EditError::Store(s) => ApiError::internal(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_bodies_parse() {
        let b: EditBody = serde_json::from_str(r#"{"op":"merge","grids":["a","b"]}"#).unwrap();
        assert!(matches!(b.into_op("c").0, Op::Merge { .. }));
        let b: EditBody =
            serde_json::from_str(r#"{"op":"split","grid":"g","reason":"too big"}"#).unwrap();
        assert!(matches!(b.into_op("c").0, Op::Split { parts: 2, .. }));
        assert!(serde_json::from_str::<EditBody>(r#"{"op":"explode"}"#).is_err());
    }

    #[test]
    fn if_match_takes_quoted_and_bare_versions() {
        let mut h = HeaderMap::new();
        assert_eq!(if_match(&h).unwrap(), None);
        h.insert(IF_MATCH, HeaderValue::from_static("\"3\""));
        assert_eq!(if_match(&h).unwrap(), Some(3));
        h.insert(IF_MATCH, HeaderValue::from_static("W/\"4\""));
        assert_eq!(if_match(&h).unwrap(), Some(4));
        h.insert(IF_MATCH, HeaderValue::from_static("x"));
        assert!(if_match(&h).is_err());
    }
}
