//! `StreamPartitionEvents`: the partition events matching a filter — first those since
//! `since` (if set), then live ones as they are appended — through a bounded buffer. A
//! consumer whose buffer stays full longer than the grace period has its stream closed
//! with RESOURCE_EXHAUSTED instead of the service holding ever more events for it; a
//! consumer that hangs up ends the tailing task at once.

use std::{
    collections::HashSet,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use databuild_bel::{
    query::{OrderField, PartitionQuery},
    Event,
};
use databuild_proto::{EventStreamFilter, PartitionEvent, PartitionStatus};
use tokio::sync::mpsc;

use crate::{
    errors::{ApiError, ErrorCode},
    metrics::Metrics,
    state::App,
};

/// Events read from the log per query while following it.
const PAGE: usize = 1000;
/// Events read per query while catching up from `since`: with the buffer, all a stream
/// holds for a consumer, however long the log (the next page is read only once this one
/// went into the buffer).
const SINCE_PAGE: usize = 200;

/// Which partition events a stream carries.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    refs: HashSet<String>,
    statuses: Vec<PartitionStatus>,
    since_micros: Option<i64>,
}

impl Filter {
    /// Checks a seed filter: valid refs, known statuses, a well-formed `since`.
    pub fn from_proto(f: Option<EventStreamFilter>) -> Result<Self, ApiError> {
        let f = f.unwrap_or_default();
        let mut refs = HashSet::new();
        for r in &f.partition_refs {
            databuild_proto::validate_ref(&r.str)?;
            refs.insert(r.str.clone());
        }
        if refs.len() > crate::ops::MAX_REFS {
            return Err(ApiError::invalid(format!(
                "the filter names {} refs; at most {} are accepted",
                refs.len(),
                crate::ops::MAX_REFS
            )));
        }
        let statuses = f
            .statuses
            .iter()
            .map(|&s| {
                PartitionStatus::try_from(s).map_err(|_| {
                    ApiError::invalid(format!("unknown partition status {s} in the filter"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let since_micros = match &f.since {
            Some(t) if !(0..1_000_000_000).contains(&t.nanos) => {
                return Err(ApiError::invalid(format!(
                    "malformed `since` timestamp: nanos {} is outside 0..1e9",
                    t.nanos
                )))
            }
            Some(t) => Some(databuild_proto::timestamp_micros(t)),
            None => None,
        };
        Ok(Self {
            refs,
            statuses,
            since_micros,
        })
    }

    fn matches(&self, e: &PartitionEvent) -> bool {
        let r = e.partition_ref.as_ref().map_or("", |r| r.str.as_str());
        (self.refs.is_empty() || self.refs.contains(r))
            && (self.statuses.is_empty() || self.statuses.iter().any(|s| *s as i32 == e.status))
    }

    fn query(
        &self,
        start_micros: Option<i64>,
        limit: i64,
        offset: i64,
        ascending: bool,
    ) -> PartitionQuery {
        PartitionQuery {
            refs: self.refs.iter().cloned().collect(),
            statuses: self.statuses.clone(),
            run_ids: Vec::new(),
            start_micros,
            end_micros: None,
            limit,
            offset,
            order: OrderField::Timestamp,
            ascending,
        }
    }
}

/// A live stream of partition events; ends with an error item if it was closed by the
/// service (slow consumer, shutdown, a failing log).
pub struct EventStream {
    rx: mpsc::Receiver<PartitionEvent>,
    end: Arc<Mutex<Option<ApiError>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventStream")
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        Metrics::dec(&self.metrics.streams_open);
    }
}

impl futures_util::Stream for EventStream {
    type Item = Result<PartitionEvent, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Some(Ok(e))),
            Poll::Ready(None) => {
                Poll::Ready(self.end.lock().expect("stream end lock").take().map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Opens a stream of the events matching `filter`.
pub fn open(app: &App, filter: Filter) -> EventStream {
    let (tx, rx) = mpsc::channel(app.opts.stream_buffer.max(1));
    let end = Arc::new(Mutex::new(None));
    Metrics::inc(&app.metrics.streams_open);
    let task_end = end.clone();
    let app2 = app.clone();
    tokio::spawn(async move {
        let reason = tokio::select! {
            r = tail(&app2, &filter, &tx) => r,
            _ = app2.on_shutdown() => Some(ApiError::new(
                ErrorCode::Unavailable,
                "the service is shutting down; reconnect to a running service with `since` set to the time of the last event received",
            )),
        };
        if let Some(e) = reason {
            *task_end.lock().expect("stream end lock") = Some(e);
        }
    });
    EventStream {
        rx,
        end,
        metrics: app.metrics.clone(),
    }
}

/// Sends one event; `Err(None)` when the consumer is gone, `Err(Some(e))` when it is too
/// slow.
async fn send(
    app: &App,
    tx: &mpsc::Sender<PartitionEvent>,
    e: PartitionEvent,
) -> Result<(), Option<ApiError>> {
    let e = match tx.try_send(e) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(None),
        Err(mpsc::error::TrySendError::Full(e)) => e,
    };
    let grace = app.opts.slow_consumer_grace;
    match tokio::time::timeout(grace, tx.send(e)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => {
            Metrics::inc(&app.metrics.streams_closed_slow);
            tracing::warn!(
                buffer = app.opts.stream_buffer,
                "closing the stream of a slow consumer"
            );
            Err(Some(ApiError::new(
                ErrorCode::ResourceExhausted,
                format!(
                    "the stream consumer fell behind: {} events waited for it longer than {}; the stream is closed. Read faster, or reconnect with `since` set to the time of the last event received",
                    app.opts.stream_buffer,
                    databuild_core::scheduler::runner::humantime(grace)
                ),
            )))
        }
    }
}

/// Catches up from `since`, then follows the log. Returns why it stopped, if the consumer
/// should be told.
async fn tail(app: &App, filter: &Filter, tx: &mpsc::Sender<PartitionEvent>) -> Option<ApiError> {
    match tail_inner(app, filter, tx).await {
        Ok(()) => None,
        Err(e) => e,
    }
}

async fn tail_inner(
    app: &App,
    filter: &Filter,
    tx: &mpsc::Sender<PartitionEvent>,
) -> Result<(), Option<ApiError>> {
    let bel = app.bel.clone();
    let log_err = |e: databuild_bel::BelError| Some(ApiError::from(e));
    // The last partition event now: history is up to it, live events after it.
    let head = bel
        .query_partition_events(&Filter::default().query(None, 1, 0, false))
        .await
        .map_err(log_err)?
        .0
        .first()
        .map_or(0, |e| e.seq);
    let mut pos = head;
    if let Some(since) = filter.since_micros {
        let mut offset = 0;
        loop {
            let (page, _) = bel
                .query_partition_events(&filter.query(Some(since), SINCE_PAGE as i64, offset, true))
                .await
                .map_err(log_err)?;
            let n = page.len();
            for e in page.into_iter().filter(|e| e.seq <= head) {
                if let Event::Partition(p) = e.event {
                    send(app, tx, p).await?;
                }
            }
            if n < SINCE_PAGE {
                break;
            }
            offset += SINCE_PAGE as i64;
        }
    } else {
        // Only live events: start from the end of the whole log.
        loop {
            let batch = bel.events_after(pos, PAGE).await.map_err(log_err)?;
            match batch.last() {
                Some(last) => pos = last.seq,
                None => break,
            }
            if batch.len() < PAGE {
                break;
            }
        }
    }
    loop {
        tokio::select! {
            r = bel.wait_for_events(pos, Duration::from_secs(1)) => r.map_err(log_err)?,
            _ = tx.closed() => return Err(None),
        }
        let batch = bel.events_after(pos, PAGE).await.map_err(log_err)?;
        for e in batch {
            pos = e.seq;
            if let Event::Partition(p) = e.event {
                if filter.matches(&p) {
                    send(app, tx, p).await?;
                }
            }
        }
    }
}
