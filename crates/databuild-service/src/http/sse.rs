//! Server-Sent Events: the partition event stream (`/api/v1/events/stream`, bounded like
//! its gRPC twin) and a build's progress (`/api/v1/builds/{run_id}/events`, read from the
//! log on demand, so a slow reader costs no memory).

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::{Path, RawQuery, State},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use databuild_proto::{EventStreamFilter, PartitionRef};
use futures_util::{Stream, StreamExt as _};

use super::{routes::build_state, Params};
use crate::{errors::ApiError, state::App, stream, wire::WireEvent};

fn error_event(e: &ApiError) -> Event {
    Event::default()
        .event("error")
        .data(databuild_proto::to_json(&crate::wire::WireError {
            code: e.code.name().into(),
            message: e.message.clone(),
        }))
}

/// `GET /api/v1/events/stream?ref=..&status=..&since=RFC3339`.
pub(super) async fn partition_events(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    let filter = (|| {
        let p = Params::parse(q.as_deref());
        let since = match p.get("since") {
            None => None,
            Some(s) => Some(
                serde_json::from_value::<databuild_proto::Timestamp>(serde_json::Value::String(
                    s.to_string(),
                ))
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "query parameter `since` must be an RFC 3339 time such as `2025-01-01T00:00:00Z` (got `{s}`)"
                    ))
                })?,
            ),
        };
        stream::Filter::from_proto(Some(EventStreamFilter {
            partition_refs: p.refs()?.into_iter().map(PartitionRef::new).collect(),
            statuses: p.statuses()?.into_iter().map(|s| s as i32).collect(),
            since,
        }))
    })();
    let filter = match filter {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let events = stream::open(&app, filter).map(|r| {
        Ok::<_, Infallible>(match r {
            Ok(e) => Event::default()
                .event("partitionEvent")
                .id(e.partition_event_id.clone())
                .data(databuild_proto::to_json(&e)),
            Err(e) => error_event(&e),
        })
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// `GET /api/v1/builds/{run_id}/events[?after=SEQ]`: the run's events so far (or those
/// after log position `after`, or after the `Last-Event-ID` a reconnecting client sends),
/// then new ones, then an `end` event with the build's state once the run has ended.
pub(super) async fn build_events(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> Response {
    let p = Params::parse(q.as_deref());
    let after = match p.int("after", 0, i64::MAX) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    match app.bel.run(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return ApiError::not_found(format!("no graph run `{id}`; see GET /api/v1/runs"))
                .into_response()
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    Sse::new(run_stream(app, id, after.max(resume)))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// How often a build's events are looked for while it runs.
const POLL: Duration = Duration::from_millis(100);
/// Events read from the log at a time while following a run.
const PAGE: usize = 5000;

struct Cursor {
    app: App,
    id: String,
    /// Log position of the last event sent (0: none yet).
    seen: i64,
    /// Whether the run's earlier events have been read (once, through the run's index).
    caught_up: bool,
    queue: std::collections::VecDeque<Event>,
    done: bool,
}

fn run_stream(app: App, id: String, after: i64) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = Cursor {
        app,
        id,
        seen: after,
        caught_up: false,
        queue: Default::default(),
        done: false,
    };
    futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if let Some(e) = c.queue.pop_front() {
                return Some((Ok(e), c));
            }
            if c.done {
                return None;
            }
            if let Err(e) = fill(&mut c).await {
                c.done = true;
                return Some((Ok(error_event(&e)), c));
            }
        }
    })
}

/// The run's events after `c.seen`: first from the run's own index, then, while it runs,
/// from the log's tail (so each poll reads only what is new, however long the run).
async fn new_events(c: &mut Cursor) -> Result<Vec<databuild_bel::LoggedEvent>, ApiError> {
    if !c.caught_up {
        c.caught_up = true;
        let seen = c.seen;
        let mut events = c.app.bel.run_events(&c.id).await?;
        events.retain(|e| e.seq > seen);
        // Continue from the log's end as it is now, not from this run's last event.
        if let Some(last) = events.last() {
            c.seen = last.seq;
        }
        return Ok(events);
    }
    let mut out = Vec::new();
    loop {
        let page = c.app.bel.events_after(c.seen, PAGE).await?;
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            c.seen = last.seq;
        }
        out.extend(page.into_iter().filter(|e| e.event.run_id() == c.id));
        if !full {
            return Ok(out);
        }
    }
}

/// Queues the run's new events; when it has ended, the `end` event.
async fn fill(c: &mut Cursor) -> Result<(), ApiError> {
    let finished = c.app.bel.run(&c.id).await?.is_some_and(|r| r.is_finished());
    for e in new_events(c).await? {
        let w = WireEvent::from(&e);
        let kind = if w.partition_event.is_some() {
            "partitionEvent"
        } else {
            "jobGraphRunEvent"
        };
        c.queue.push_back(
            Event::default()
                .event(kind)
                .id(e.seq.to_string())
                .data(databuild_proto::to_json(&w)),
        );
    }
    if finished {
        // A build run here has its outcome registered right after its last event.
        let mut state = build_state(&c.app, &c.id).await?;
        for _ in 0..100 {
            if state.state != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            state = build_state(&c.app, &c.id).await?;
        }
        c.queue.push_back(
            Event::default()
                .event("end")
                .data(databuild_proto::to_json(&state)),
        );
        c.done = true;
    } else if c.queue.is_empty() {
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}
