//! `POST /v1/changes` (the change feed, with the token) and `GET
//! /v1/changes/stream` (server-sent events of what changed, public).
//!
//! A batch is validated and located against the server's grids, written in
//! one transaction ([`wangge_engine::changes`]), then the server catches
//! up from the change log like any follower ([`super::AppState::catch_up`]):
//! the grid directory and the privacy decisions where counts changed, the
//! tiles the batch touched (old and new positions, the grids whose counts
//! changed, the `persons_hex` cells), and the cached tiles they reach. One
//! stream event goes out per batch and layer (`op` is `mixed` when the
//! batch did several things to the layer).
//!
//! The stream never carries a person's id, name or position: an event is
//! `{"seq", "layer", "op", "grid_codes", "tiles"}`, the grid codes sorted
//! (old and new together, so no direction of a move). Events are kept in
//! memory ([`RECENT_EVENTS`]); `Last-Event-ID` resumes from a sequence
//! number among them exactly; an older one (or one from before this
//! server started) is answered from the change log first: the same
//! events with their grid codes but `"tiles": []` and `"tiles_truncated":
//! true` (redraw what you show), or `event: reset` when more than
//! [`MAX_REPLAY`] changes behind.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast;
use wangge_engine::changes::{MAX_CHANGES, apply_batch, split_body};
use wangge_engine::time::now_iso;

use super::AppState;
use super::error::{ApiError, blocking};
use super::locate::{is_json, media_type};

/// Stream events kept for `Last-Event-ID`.
pub const RECENT_EVENTS: usize = 10_000;

/// Tiles listed per event at most (`"tiles_truncated": true` beyond).
pub const MAX_EVENT_TILES: usize = 2_000;

/// One event of the stream: its position and JSON data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// The last change-log position it covers.
    pub seq: i64,
    /// The JSON object sent as `data`.
    pub data: String,
    /// An `event: reset` (the server read the store again whole: redraw
    /// everything) rather than an `event: change`.
    pub reset: bool,
}

/// The events a server sends: live to subscribers, and the recent ones
/// for clients that resume.
#[derive(Debug)]
pub struct Feed {
    live: broadcast::Sender<Arc<StreamEvent>>,
    recent: std::sync::Mutex<Recent>,
}

/// The kept events and the log position they start after.
#[derive(Debug)]
struct Recent {
    events: VecDeque<Arc<StreamEvent>>,
    /// Every change after this position is covered by `events`.
    start: i64,
}

impl Feed {
    /// A feed whose events start after change-log position `start` (where
    /// the server was current when it started).
    #[must_use]
    pub fn new(start: i64) -> Feed {
        Feed {
            live: broadcast::channel(1024).0,
            recent: std::sync::Mutex::new(Recent {
                events: VecDeque::new(),
                start,
            }),
        }
    }

    /// Publishes one event.
    pub fn publish(&self, e: StreamEvent) {
        let e = Arc::new(e);
        {
            let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if r.events.len() == RECENT_EVENTS
                && let Some(old) = r.events.pop_front()
            {
                r.start = old.seq;
            }
            r.events.push_back(Arc::clone(&e));
        }
        // No subscriber is fine.
        let _ = self.live.send(e);
    }

    /// The kept events after `seq`, and the position they start after
    /// (changes in `(seq, start]` are not among them).
    fn since(&self, seq: i64) -> (Vec<Arc<StreamEvent>>, i64) {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let kept = r.events.iter().filter(|e| e.seq > seq).cloned().collect();
        (kept, r.start)
    }
}

/// Changes older than the kept events a resuming client is sent from the
/// log at most; further behind, it gets `event: reset`.
pub const MAX_REPLAY: usize = 100_000;

/// Events for the logged changes in `(after, upto]`, one per batch and
/// layer, from the change log: the grid codes exactly, the tiles not (the
/// state they were drawn from is gone), so each says `"tiles": []` with
/// `"tiles_truncated": true`: redraw what you show. `None` when more than
/// [`MAX_REPLAY`] changes are behind.
fn replay(
    store: &wangge_engine::store::AnyStore,
    after: i64,
    upto: i64,
) -> Result<Option<Vec<StreamEvent>>, ApiError> {
    use std::collections::{BTreeMap, BTreeSet};
    let rows = store.changes_after(after, MAX_REPLAY + 1)?;
    let rows: Vec<_> = rows.into_iter().filter(|r| r.seq <= upto).collect();
    if rows.len() > MAX_REPLAY {
        return Ok(None);
    }
    type Group<'a> = (i64, BTreeSet<&'a str>, BTreeSet<&'a str>);
    let mut groups: BTreeMap<(i64, &str), Group<'_>> = BTreeMap::new();
    for r in &rows {
        let g = groups
            .entry((r.batch, r.layer.name()))
            .or_insert_with(|| (r.seq, BTreeSet::new(), BTreeSet::new()));
        g.0 = g.0.max(r.seq);
        g.1.insert(r.op.name());
        g.2.extend(r.old_grid.iter().chain(&r.new_grid).map(String::as_str));
    }
    let mut out: Vec<StreamEvent> = groups
        .into_iter()
        .map(|((_, layer), (seq, ops, grids))| {
            let op = if ops.len() == 1 {
                ops.first().copied().unwrap_or("mixed")
            } else {
                "mixed"
            };
            StreamEvent {
                seq,
                data: json!({"seq": seq, "layer": layer, "op": op, "grid_codes": grids,
                             "tiles": [], "tiles_truncated": true})
                .to_string(),
                reset: false,
            }
        })
        .collect();
    out.sort_by_key(|e| e.seq);
    Ok(Some(out))
}

/// `POST /v1/changes`.
pub(crate) async fn post_changes(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    super::edits::authorize(&state, &headers)?;
    let ndjson = match media_type(&headers) {
        Some(m) if is_json(&m) => false,
        Some(m) if m == "application/x-ndjson" || m == "application/ndjson" => true,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "changes take application/json (an array) or application/x-ndjson, not {}",
                other.as_deref().unwrap_or("a body without Content-Type")
            )));
        }
    };
    let items = split_body(&body, ndjson).map_err(ApiError::BadRequest)?;
    if items.len() > MAX_CHANGES {
        return Err(ApiError::TooLarge(format!(
            "{} changes in one request; at most {MAX_CHANGES}",
            items.len()
        )));
    }
    let locator = state.locator();
    if locator.level() != "grid" {
        return Err(ApiError::Conflict(format!(
            "the store has no grids (it locates by {}): run `wangge partition` first",
            locator.level()
        )));
    }
    // One writer per store.
    let _writer = state.edits.lock().await;
    let st = Arc::clone(&state);
    let report = blocking(move || {
        let mut store = super::open_reader(&st.store_path)?;
        let report = apply_batch(&mut store, locator.layer(), &items, &now_iso())?;
        st.catch_up(&store)?;
        Ok(report)
    })
    .await?;
    let rejected: Vec<_> = report
        .rejected
        .iter()
        .map(|r| json!({"index": r.index, "change_id": r.change_id, "reason": r.reason}))
        .collect();
    Ok(axum::Json(json!({
        "applied": report.applied,
        "duplicates": report.duplicates,
        "rejected": rejected,
        "seq": report.seq,
        "results": report.results,
    }))
    .into_response())
}

/// `GET /v1/changes/stream`.
pub(crate) async fn stream_changes(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let last = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest("Last-Event-ID must be a sequence number".into())
                })?,
        ),
    };
    // Subscribe before reading the kept events, so none falls between.
    let rx = state.feed.live.subscribe();
    let (backlog, start) = match last {
        Some(seq) => state.feed.since(seq),
        None => (Vec::new(), i64::MIN),
    };
    let mut first: Vec<Event> = Vec::new();
    let mut sent = last.unwrap_or(i64::MIN);
    if let Some(seq) = last
        && seq < start
    {
        // Older than what is kept (or than this server's start): from the
        // log, or a reset when too far behind.
        let st = Arc::clone(&state);
        let old = blocking(move || {
            let store = super::open_reader(&st.store_path)?;
            replay(&store, seq, start)
        })
        .await?;
        match old {
            Some(events) => {
                for e in &events {
                    first.push(to_event(e));
                    sent = sent.max(e.seq);
                }
            }
            None => first.push(
                Event::default()
                    .event("reset")
                    .data(json!({"seq": state.seen_changes()}).to_string()),
            ),
        }
    }
    for e in &backlog {
        first.push(to_event(e));
        sent = sent.max(e.seq);
    }
    let head = stream::iter(first.into_iter().map(Ok));
    let live = stream::unfold((rx, sent), |(mut rx, mut sent)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if e.seq <= sent && !e.reset => continue,
                Ok(e) => {
                    sent = e.seq;
                    return Some((Ok(to_event(&e)), (rx, sent)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let ev = Event::default()
                        .event("reset")
                        .data(json!({"reason": "the client fell behind"}).to_string());
                    return Some((Ok(ev), (rx, sent)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt as _;
    Ok(Sse::new(head.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn to_event(e: &StreamEvent) -> Event {
    Event::default()
        .event(if e.reset { "reset" } else { "change" })
        .id(e.seq.to_string())
        .data(e.data.clone())
}
