//! Wants: partitions databuild keeps built. Recording and withdrawing wants (events in the
//! log), what an unsatisfied want waits for, schedules that create wants tick by tick
//! (`schedule.rs`), the reconciler that keeps them satisfied (`reconcile.rs`) and the
//! notifications it sends (`notify.rs`).

pub mod notify;
pub mod reconcile;
pub mod schedule;

use std::time::Duration;

use databuild_bel::{BelError, Event, EventLog, EventRead, WantFilter, WantRow};
use databuild_proto::{PartitionRef, PartitionStatus, WantEvent, WantStatus};

use crate::{CoreError, Graph};

pub use notify::{CommandNotifier, Notification, NotificationKind, Notifier, Notifiers};
pub use reconcile::{PassReport, ReconcileOptions, Reconciler};
pub use schedule::{Schedule, ScheduleError};

/// A want that cannot be recorded or found.
#[derive(Debug, thiserror::Error)]
pub enum WantError {
    /// Refs no job produces and that are not registered.
    #[error("cannot want {refs}: no job produces {them} and {they} not registered as available; register external data with `databuild partitions register <ref>`, or check the refs against the graph's `produces` patterns", them = if *count == 1 { "it" } else { "them" }, they = if *count == 1 { "it is" } else { "they are" })]
    Unproduced { refs: String, count: usize },
    /// `unwant` of something that is neither a live want's id nor a wanted ref.
    #[error("no active want `{0}`: it is neither the id of an active want nor a partition with one; see `databuild wants list`")]
    Unknown(String),
    /// The event log.
    #[error(transparent)]
    Bel(#[from] BelError),
    /// Looking refs up in the graph.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// A want event of `want_id` about `r`.
pub fn event(want_id: &str, r: &str, status: WantStatus) -> WantEvent {
    WantEvent {
        want_id: want_id.to_string(),
        status: status as i32,
        partition_ref: Some(PartitionRef { str: r.to_string() }),
        ..Default::default()
    }
}

fn micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

/// Records one want per ref (after checking that a job produces each ref or that it is
/// registered), expiring after `ttl` and due within `sla`. Returns them, in order.
pub async fn create(
    graph: &Graph,
    bel: &dyn EventLog,
    refs: &[String],
    ttl: Option<Duration>,
    sla: Option<Duration>,
    client: &str,
) -> Result<Vec<WantRow>, WantError> {
    let refs = crate::planner::distinct(refs);
    let mut missing = unbuildable(graph, bel, &refs).await?;
    if !missing.is_empty() {
        missing.sort();
        return Err(WantError::Unproduced {
            count: missing.len(),
            refs: crate::protocol::ref_list(&missing),
        });
    }
    let now = databuild_proto::timestamp_micros(&databuild_proto::now());
    let events: Vec<Event> = refs
        .iter()
        .map(|r| {
            let mut w = event(
                &format!("want-{}", databuild_bel::new_id()),
                r,
                WantStatus::WantActive,
            );
            w.requesting_clients = vec![client.to_string()];
            w.expires_at = ttl.map(|t| databuild_proto::timestamp_from_micros(now + micros(t)));
            w.sla_deadline = sla.map(|s| databuild_proto::timestamp_from_micros(now + micros(s)));
            Event::Want(w)
        })
        .collect();
    let logged = bel.append(events).await?;
    Ok(logged.iter().filter_map(created_row).collect())
}

/// The refs of `refs` that can never be built here: no job of `graph` produces them and
/// they are not registered in the log. In the order given.
pub(crate) async fn unbuildable(
    graph: &Graph,
    bel: &dyn databuild_bel::EventRead,
    refs: &[String],
) -> Result<Vec<String>, CoreError> {
    let looked_up = graph
        .lookup(refs)
        .await
        .map_err(|e| CoreError::from(crate::planner::PlanError::from(e)))?;
    if looked_up.unproduced.is_empty() {
        return Ok(Vec::new());
    }
    let statuses = bel.statuses(&looked_up.unproduced).await?;
    Ok(looked_up
        .unproduced
        .into_iter()
        .zip(statuses)
        .filter(|(_, s)| s.is_none())
        .map(|(r, _)| r)
        .collect())
}

/// The row a want's creation event makes (what the log's `wants` view holds for it).
fn created_row(e: &databuild_bel::LoggedEvent) -> Option<WantRow> {
    let Event::Want(w) = &e.event else {
        return None;
    };
    Some(WantRow::created(w, e.event.timestamp_micros(), e.seq))
}

/// Withdraws wants: each argument is a want id, or a ref whose live wants are all
/// withdrawn. Nothing is recorded unless every argument names a live want.
pub async fn cancel(
    bel: &dyn EventLog,
    ids_or_refs: &[String],
    reason: &str,
) -> Result<Vec<WantRow>, WantError> {
    let mut chosen: Vec<WantRow> = Vec::new();
    for a in ids_or_refs {
        let by_id = bel.want(a).await?.filter(|w| w.is_live());
        let found: Vec<WantRow> = match by_id {
            Some(w) => vec![w],
            None => {
                bel.wants(&WantFilter {
                    statuses: vec![WantStatus::WantActive, WantStatus::WantSatisfied],
                    partition_ref: Some(a.clone()),
                    ..Default::default()
                })
                .await?
            }
        };
        if found.is_empty() {
            return Err(WantError::Unknown(a.clone()));
        }
        for w in found {
            if !chosen.iter().any(|c| c.want_id == w.want_id) {
                chosen.push(w);
            }
        }
    }
    let events = chosen
        .iter()
        .map(|w| {
            let mut e = event(&w.want_id, &w.partition_ref, WantStatus::WantCancelled);
            e.reason = reason.to_string();
            Event::Want(e)
        })
        .collect();
    bel.append(events).await?;
    let mut out = Vec::new();
    for w in &chosen {
        out.extend(bel.want(&w.want_id).await?);
    }
    Ok(out)
}

/// What want `w` waits for, in one line (as `why` says it for a partition).
pub async fn waiting_for(
    graph: &Graph,
    bel: &dyn EventRead,
    w: &WantRow,
) -> Result<String, CoreError> {
    match w.status {
        WantStatus::WantExpired | WantStatus::WantCancelled => {
            return Ok(format!("nothing: it is {}", status_word(w.status)))
        }
        WantStatus::WantFailed => {
            return Ok(format!("nothing: it failed ({})", w.reason));
        }
        _ => {}
    }
    let status = bel
        .partitions(std::slice::from_ref(&w.partition_ref))
        .await?
        .into_iter()
        .next()
        .map(|p| p.status);
    if status == Some(PartitionStatus::PartitionAvailable) {
        return Ok(format!("nothing: `{}` is AVAILABLE", w.partition_ref));
    }
    if status.is_none() {
        // Never built: planning it says whether external data is missing.
        let r = std::slice::from_ref(&w.partition_ref);
        return Ok(match crate::planner::analyze(graph, bel, r, false).await {
            Err(crate::PlanError::MissingExternal { refs, count, .. }) => format!(
                "waiting for external data: {refs} {} not registered (`databuild partitions register <ref>` when it lands)",
                if count == 1 { "is" } else { "are" }
            ),
            Err(e) => format!("`{}` cannot be planned: {e}", w.partition_ref),
            Ok(_) => format!(
                "`{}` has not been built yet: the reconciler builds it",
                w.partition_ref
            ),
        });
    }
    let chain = crate::catalog::why_chain(Some(graph), bel, &w.partition_ref).await?;
    Ok(chain.join("; "))
}

/// The word for a want status, as people read it.
pub fn status_word(s: WantStatus) -> &'static str {
    s.short_name()
}
