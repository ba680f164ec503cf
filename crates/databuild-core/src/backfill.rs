//! Backfills: a named, persistent set of wants worked through in chunks. `start` records
//! one (its refs as given, ranges unexpanded, and how many partitions they make); `drive`
//! works through it chunk by chunk — creating the chunk's wants (ids `<backfill>#<index>`,
//! so a chunk created twice is refused), building those not yet satisfied with one graph
//! run, recording each want SATISFIED or FAILED — until it completes, pauses after
//! `max_failures` or is cancelled. Everything is in the log, so a driver killed at any
//! moment is resumed where it was: nothing satisfied is built again.

use std::{sync::Arc, time::Duration};

use databuild_bel::{
    backfill_want_id, BackfillRow, BelError, Event, EventLog, WantFilter, WantRow,
};
use databuild_proto::{BackfillEvent, BackfillStatus, PartitionStatus, WantStatus};

use crate::{
    wants::{event, reconcile::root_failure},
    BuildOptions, CoreError, Graph,
};

/// A backfill that cannot be started, resumed, retried or cancelled as asked.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// No backfill with this id.
    #[error("no backfill `{0}`; see `databuild backfill list`")]
    Unknown(String),
    /// `resume` of one that is finished.
    #[error("backfill `{id}` is {status} and cannot be resumed{hint}")]
    NotResumable {
        id: String,
        status: &'static str,
        hint: &'static str,
    },
    /// `retry` of one with no failed partitions.
    #[error("backfill `{0}` has no failed partitions to retry")]
    NothingToRetry(String),
    /// Refs that no job produces (and that are not registered).
    #[error("the backfill's refs include {count} that no job produces and that are not registered: {refs}; check them against the graph's `produces` patterns")]
    Unproduced { refs: String, count: usize },
    /// No refs.
    #[error("a backfill needs at least one ref")]
    Empty,
    /// Ranges that do not expand.
    #[error(transparent)]
    Range(#[from] crate::ranges::RangeError),
    /// The event log.
    #[error(transparent)]
    Bel(#[from] BelError),
    /// Planning or building.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// A name for people ("" : the first ref).
    pub name: String,
    /// The refs as given (ranges and lists are expanded here).
    pub refs: Vec<String>,
    /// Pause after this many failed partitions (0: never).
    pub max_failures: u32,
    /// Jobs at once.
    pub parallelism: u32,
    /// Who asked.
    pub client: String,
}

/// A backfill's progress, from its wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Partitions in all.
    pub total: u64,
    /// Built (wants satisfied).
    pub built: u64,
    /// Failed (wants failed).
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl Counts {
    /// Partitions neither built, failed nor cancelled.
    pub fn pending(&self) -> u64 {
        self.total
            .saturating_sub(self.built + self.failed + self.cancelled)
    }
}

/// The counts of backfill `row` from its wants.
pub async fn counts(
    bel: &dyn databuild_bel::EventRead,
    row: &BackfillRow,
) -> Result<Counts, BelError> {
    let mut c = Counts {
        total: row.total,
        ..Default::default()
    };
    for (status, n) in bel.backfill_counts(&row.backfill_id).await? {
        match status {
            WantStatus::WantSatisfied => c.built += n,
            WantStatus::WantFailed => c.failed += n,
            WantStatus::WantCancelled | WantStatus::WantExpired => c.cancelled += n,
            _ => {}
        }
    }
    Ok(c)
}

/// Expands `refs` and checks that a job produces each (or that it is registered): the
/// partitions of a backfill, in order.
pub async fn expand(
    graph: &Graph,
    bel: &dyn databuild_bel::EventRead,
    refs: &[String],
) -> Result<Vec<String>, BackfillError> {
    if refs.is_empty() {
        return Err(BackfillError::Empty);
    }
    let all = crate::ranges::expand_refs(refs)?;
    for r in &all {
        databuild_proto::validate_ref(r).map_err(|e| CoreError::from(crate::PlanError::from(e)))?;
    }
    let missing = crate::wants::unbuildable(graph, bel, &all).await?;
    if !missing.is_empty() {
        return Err(BackfillError::Unproduced {
            count: missing.len(),
            refs: crate::protocol::ref_list(&missing),
        });
    }
    Ok(all)
}

/// Records a new backfill (RUNNING, nothing built yet); `drive` works through it.
pub async fn start(
    graph: &Graph,
    bel: &dyn EventLog,
    spec: &Spec,
) -> Result<BackfillRow, BackfillError> {
    let all = expand(graph, bel, &spec.refs).await?;
    let id = format!("backfill-{}", databuild_bel::new_id());
    let name = if spec.name.is_empty() {
        spec.refs[0].clone()
    } else {
        spec.name.clone()
    };
    bel.append(vec![Event::Backfill(BackfillEvent {
        backfill_id: id.clone(),
        status: BackfillStatus::BackfillRunning as i32,
        name,
        refs: spec.refs.clone(),
        total: all.len() as u64,
        max_failures: spec.max_failures,
        parallelism: spec.parallelism,
        requesting_clients: vec![spec.client.clone()],
        ..Default::default()
    })])
    .await?;
    Ok(bel.backfill(&id).await?.expect("just recorded"))
}

fn backfill_event(id: &str, status: BackfillStatus, reason: String) -> Event {
    Event::Backfill(BackfillEvent {
        backfill_id: id.to_string(),
        status: status as i32,
        reason,
        ..Default::default()
    })
}

/// The backfill `id`, which must exist.
pub async fn get(
    bel: &dyn databuild_bel::EventRead,
    id: &str,
) -> Result<BackfillRow, BackfillError> {
    bel.backfill(id)
        .await?
        .ok_or_else(|| BackfillError::Unknown(id.to_string()))
}

/// Makes a paused backfill (or one whose driver died) run again. A completed or
/// cancelled one cannot be resumed.
pub async fn resume(bel: &dyn EventLog, id: &str) -> Result<BackfillRow, BackfillError> {
    let row = get(bel, id).await?;
    match row.status {
        BackfillStatus::BackfillPaused => {
            bel.append(vec![backfill_event(
                id,
                BackfillStatus::BackfillRunning,
                "resumed".into(),
            )])
            .await?;
        }
        BackfillStatus::BackfillRunning => {}
        BackfillStatus::BackfillCompleted => {
            return Err(BackfillError::NotResumable {
                id: id.to_string(),
                status: "COMPLETED",
                hint: "; `databuild backfill retry` reruns its failed partitions",
            })
        }
        _ => {
            return Err(BackfillError::NotResumable {
                id: id.to_string(),
                status: "CANCELLED",
                hint: "",
            })
        }
    }
    get(bel, id).await
}

/// Makes the failed wants of a backfill active again (and the backfill RUNNING), so that
/// `drive` rebuilds only them and what they need.
pub async fn retry(bel: &dyn EventLog, id: &str) -> Result<u64, BackfillError> {
    let row = get(bel, id).await?;
    if row.status == BackfillStatus::BackfillCancelled {
        return Err(BackfillError::NotResumable {
            id: id.to_string(),
            status: "CANCELLED",
            hint: "",
        });
    }
    let failed = bel
        .wants(&WantFilter {
            statuses: vec![WantStatus::WantFailed],
            backfill: Some(id.to_string()),
            ..Default::default()
        })
        .await?;
    if failed.is_empty() {
        return Err(BackfillError::NothingToRetry(id.to_string()));
    }
    let mut events: Vec<Event> = failed
        .iter()
        .map(|w| {
            let mut e = event(&w.want_id, &w.partition_ref, WantStatus::WantActive);
            e.reason = "retried".into();
            e.backfill_id = id.to_string();
            Event::Want(e)
        })
        .collect();
    if row.status != BackfillStatus::BackfillRunning {
        events.push(backfill_event(
            id,
            BackfillStatus::BackfillRunning,
            format!("retrying {} failed partitions", failed.len()),
        ));
    }
    bel.append(events).await?;
    Ok(failed.len() as u64)
}

/// Cancels a backfill and withdraws its live wants; with `now`, a driver stops its jobs
/// instead of letting them finish.
pub async fn cancel(bel: &dyn EventLog, id: &str, now: bool) -> Result<BackfillRow, BackfillError> {
    let row = get(bel, id).await?;
    if row.status == BackfillStatus::BackfillCancelled {
        return Ok(row);
    }
    let live = bel
        .wants(&WantFilter {
            statuses: vec![WantStatus::WantActive],
            backfill: Some(id.to_string()),
            ..Default::default()
        })
        .await?;
    let mut events: Vec<Event> = vec![Event::Backfill(BackfillEvent {
        backfill_id: id.to_string(),
        status: BackfillStatus::BackfillCancelled as i32,
        reason: if now {
            "cancelled; its jobs are stopped".into()
        } else {
            "cancelled; running jobs finish".into()
        },
        stop_jobs: now,
        ..Default::default()
    })];
    events.extend(live.iter().map(|w| {
        let mut e = event(&w.want_id, &w.partition_ref, WantStatus::WantCancelled);
        e.reason = "its backfill was cancelled".into();
        Event::Want(e)
    }));
    bel.append(events).await?;
    get(bel, id).await
}

/// How `drive` works.
#[derive(Clone)]
pub struct DriveOptions {
    /// How its graph runs build (`parallelism` is the backfill's own).
    pub build: BuildOptions,
    /// Partitions per chunk (one graph run each).
    pub chunk: usize,
}

/// Works through backfill `id` from where it is until it completes, pauses or is
/// cancelled; `progress` is told the counts after each chunk. Returns the backfill as it
/// ends.
pub async fn drive(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    id: &str,
    opts: &DriveOptions,
    progress: &(dyn Fn(&Counts) + Send + Sync),
) -> Result<BackfillRow, BackfillError> {
    let row = get(bel.as_ref(), id).await?;
    if row.status != BackfillStatus::BackfillRunning {
        return Ok(row);
    }
    let all = crate::ranges::expand_refs(&row.refs)?;
    let mut members: Vec<Option<WantStatus>> = vec![None; all.len()];
    let mut after = None;
    loop {
        let page = bel
            .wants(&WantFilter {
                backfill: Some(id.to_string()),
                after: after.clone(),
                limit: 100_000,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.want_id.clone());
        for w in &page {
            if let Some(i) = index_of(id, &w.want_id) {
                if let Some(m) = members.get_mut(i) {
                    *m = Some(w.status);
                }
            }
        }
    }
    let mut failed = members
        .iter()
        .filter(|m| **m == Some(WantStatus::WantFailed))
        .count() as u32;
    let mut build = opts.build.clone();
    build.parallelism = (row.parallelism as usize).max(1);
    let chunk = opts.chunk.max(1);
    progress(&counts(bel.as_ref(), &row).await?);
    for start in (0..all.len()).step_by(chunk) {
        let end = (start + chunk).min(all.len());
        // Cancelled or paused by someone else meanwhile: stop here.
        let now = get(bel.as_ref(), id).await?;
        if now.status != BackfillStatus::BackfillRunning {
            return Ok(now);
        }
        // This chunk's wants that do not exist yet.
        let create: Vec<Event> = (start..end)
            .filter(|i| members[*i].is_none())
            .map(|i| {
                let mut e = event(
                    &backfill_want_id(id, i as u64),
                    &all[i],
                    WantStatus::WantActive,
                );
                e.backfill_id = id.to_string();
                e.requesting_clients = vec![format!("backfill:{id}")];
                Event::Want(e)
            })
            .collect();
        if !create.is_empty() {
            match bel.append(create).await {
                Ok(_) => {}
                // Another driver created them first: its wants are as good.
                Err(BelError::WantState { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            for m in &mut members[start..end] {
                m.get_or_insert(WantStatus::WantActive);
            }
        }
        let todo: Vec<usize> = (start..end)
            .filter(|i| members[*i] == Some(WantStatus::WantActive))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let refs: Vec<String> = todo.iter().map(|i| all[*i].clone()).collect();
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        build.cancel = Some(cancel_rx);
        let watcher = watch_for_cancel(bel.clone(), id.to_string(), cancel_tx);
        let progress_fn: crate::scheduler::ProgressFn = Arc::new(|_| {});
        let result = crate::build(graph, bel.clone(), &refs, &build, progress_fn).await;
        watcher.abort();
        if let Err(e) = &result {
            tracing::warn!("backfill `{id}`: a chunk's graph run failed: {e}");
        }
        let statuses = bel.statuses(&refs).await?;
        let mut events = Vec::new();
        for (i, status) in todo.iter().zip(statuses) {
            let want_id = backfill_want_id(id, *i as u64);
            match status {
                Some(PartitionStatus::PartitionAvailable) => {
                    let mut e = event(&want_id, &all[*i], WantStatus::WantSatisfied);
                    e.job_graph_run_id = result
                        .as_ref()
                        .map(|o| o.run_id.clone())
                        .unwrap_or_default();
                    events.push(Event::Want(e));
                    members[*i] = Some(WantStatus::WantSatisfied);
                }
                _ => {
                    let (cause, _) = root_failure(bel.as_ref(), &all[*i]).await?;
                    if cause == databuild_proto::FailureCause::Cancelled {
                        continue;
                    }
                    let mut e = event(&want_id, &all[*i], WantStatus::WantFailed);
                    e.failure_cause = cause as i32;
                    e.reason = "its build failed".into();
                    events.push(Event::Want(e));
                    members[*i] = Some(WantStatus::WantFailed);
                    failed += 1;
                }
            }
        }
        record(bel.as_ref(), events).await?;
        let row = get(bel.as_ref(), id).await?;
        progress(&counts(bel.as_ref(), &row).await?);
        if row.status != BackfillStatus::BackfillRunning {
            return Ok(row);
        }
        if row.max_failures > 0 && failed >= row.max_failures {
            bel.append(vec![backfill_event(
                id,
                BackfillStatus::BackfillPaused,
                format!(
                    "paused after {failed} failed partitions (--max-failures {}); `databuild backfill retry {id}` reruns them, `resume` goes on",
                    row.max_failures
                ),
            )])
            .await?;
            return get(bel.as_ref(), id).await;
        }
    }
    let row = get(bel.as_ref(), id).await?;
    let c = counts(bel.as_ref(), &row).await?;
    if row.status == BackfillStatus::BackfillRunning {
        bel.append(vec![backfill_event(
            id,
            BackfillStatus::BackfillCompleted,
            format!("{} built, {} failed", c.built, c.failed),
        )])
        .await?;
    }
    get(bel.as_ref(), id).await
}

/// Appends want events, dropping those another process made moot meanwhile.
async fn record(bel: &dyn EventLog, events: Vec<Event>) -> Result<(), BackfillError> {
    if events.is_empty() {
        return Ok(());
    }
    match bel.append(events.clone()).await {
        Ok(_) => return Ok(()),
        Err(BelError::WantState { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for e in events {
        match bel.append(vec![e]).await {
            Ok(_) | Err(BelError::WantState { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Turns `tx` true when the backfill is cancelled with `--now`, checking twice a second.
fn watch_for_cancel(
    bel: Arc<dyn EventLog>,
    id: String,
    tx: tokio::sync::watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Ok(events) = bel.run_events(&id).await else {
                continue;
            };
            let stop = events.iter().rev().find_map(|e| match &e.event {
                Event::Backfill(b) => {
                    Some(b.status == BackfillStatus::BackfillCancelled as i32 && b.stop_jobs)
                }
                _ => None,
            });
            if stop == Some(true) {
                let _ = tx.send(true);
                return;
            }
        }
    })
}

/// The index of a backfill's want from its id.
fn index_of(backfill_id: &str, want_id: &str) -> Option<usize> {
    want_id
        .strip_prefix(backfill_id)?
        .strip_prefix('#')?
        .parse()
        .ok()
}

/// The wants of backfill `id` in order of their partitions (at most `limit`, 0: all).
pub async fn wants(
    bel: &dyn databuild_bel::EventRead,
    id: &str,
    limit: usize,
) -> Result<Vec<WantRow>, BelError> {
    bel.wants(&WantFilter {
        backfill: Some(id.to_string()),
        limit,
        ..Default::default()
    })
    .await
}
