//! Applying events to the log, for every backend: validating each event against the
//! current state, storing it, and keeping the derived views (partitions, graph runs, job
//! runs, requesters, lineage, wants, backfills) in step, with staleness propagated downstream. The rules live
//! here once; a backend supplies only [`Rows`], its SQL for reading and writing one row
//! at a time inside a write transaction. The writes built on it (append, claim,
//! invalidation, lost runs, leases) are in `apply/writes.rs`, and the rules that need no
//! rows (the events a write makes, what an event does to the views) in `apply/rules.rs`.

mod backfills;
mod rules;
mod wants;
mod writes;

use std::collections::VecDeque;

use databuild_proto::{JobGraphRunStatus, JobRunStatus, PartitionStatus};

use crate::{
    common::{self, Subject},
    transitions::{self, PartitionEffect},
    BackfillRow, BelError, BuildRow, Event, Owner, PartitionRow, WantRow,
};

pub use rules::owner_lost;
use rules::Derived;
pub(crate) use writes::{append, append_in_place, claim, heartbeat, invalidate, reclaim_lost_runs};

/// A graph run's derived row, as far as appends change it (the lease is apart: see
/// [`Rows::set_lease`]).
#[derive(Debug, Clone)]
pub(crate) struct GraphRow {
    pub label: String,
    pub status: i32,
    pub started_ts: i64,
    pub updated_ts: i64,
    /// The `sequence` the run's next graph or job event gets.
    pub next_seq: i64,
}

/// A job run's derived row.
#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub run_id: String,
    pub label: String,
    pub job_key: String,
    pub status: i32,
    pub scheduled_ts: i64,
    pub updated_ts: i64,
}

/// One event as stored in `events`, before its log position is assigned.
#[derive(Debug)]
pub(crate) struct EventRow {
    pub event_id: String,
    pub kind: i64,
    pub run_id: String,
    pub run_seq: i64,
    pub job_run_id: Option<String>,
    pub partition_ref: Option<String>,
    pub status: i32,
    pub ts: i64,
    pub body: Vec<u8>,
}

/// The rows a write is about to read, so that a backend can load them in one go: refs,
/// graph runs, job runs, and upstreams whose lineage is read.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    pub refs: Vec<String>,
    pub run_ids: Vec<String>,
    pub job_run_ids: Vec<String>,
    pub upstreams: Vec<String>,
}

/// An unfinished graph run and who owns it.
pub(crate) struct RunOwner {
    pub run_id: String,
    pub host: Option<String>,
    pub pid: Option<u32>,
    pub lease_until: Option<i64>,
}

/// What an unfinished graph run holds: its claimed partitions `(ref, job run)`, by ref,
/// and its unfinished job runs `(job run, label, job key)`, by scheduling time.
pub(crate) type Holdings = (Vec<(String, String)>, Vec<(String, String, String)>);

/// The derived rows of one backend, read and written inside one write transaction (which
/// serializes writers). A read sees every write made before it through the same `Rows`.
/// Reads are async (a backend may go to its server for them); writes may be held back
/// until commit.
pub(crate) trait Rows {
    /// Loads the rows of `keys` ahead of the reads that follow (a hint; by default nothing).
    async fn prefetch(&mut self, keys: Keys) -> Result<(), BelError> {
        let _ = keys;
        Ok(())
    }

    /// The row of graph run `run_id`.
    async fn graph(&mut self, run_id: &str) -> Result<Option<GraphRow>, BelError>;

    /// Inserts or updates the row of graph run `run_id` (an update keeps its label, start
    /// time and lease).
    fn put_graph(&mut self, run_id: &str, row: GraphRow) -> Result<(), BelError>;

    /// The row of job run `job_run_id`.
    async fn job(&mut self, job_run_id: &str) -> Result<Option<JobRow>, BelError>;

    /// Inserts or updates the row of job run `job_run_id` (an update changes its status and
    /// update time).
    fn put_job(&mut self, job_run_id: &str, row: JobRow) -> Result<(), BelError>;

    /// The latest state of partition `r`.
    async fn partition(&mut self, r: &str) -> Result<Option<PartitionRow>, BelError>;

    /// Sets the latest state of a partition.
    fn put_partition(&mut self, row: PartitionRow) -> Result<(), BelError>;

    /// What the latest build of partition `r` was made by and of.
    async fn build(&mut self, r: &str) -> Result<Option<BuildRow>, BelError>;

    /// Sets what the latest build of partition `r` was made by and of.
    fn put_build(&mut self, r: &str, row: BuildRow) -> Result<(), BelError>;

    /// The latest state of want `want_id`.
    async fn want(&mut self, want_id: &str) -> Result<Option<WantRow>, BelError>;

    /// Sets the latest state of a want.
    fn put_want(&mut self, row: WantRow) -> Result<(), BelError>;

    /// The latest state of backfill `backfill_id`.
    async fn backfill(&mut self, backfill_id: &str) -> Result<Option<BackfillRow>, BelError>;

    /// Sets the latest state of a backfill.
    fn put_backfill(&mut self, row: BackfillRow) -> Result<(), BelError>;

    /// Removes partition `r` from the latest-status view.
    fn remove_partition(&mut self, r: &str) -> Result<(), BelError>;

    /// Stores an event; returns its log position (which a backend may have to reserve).
    async fn insert_event(&mut self, row: EventRow) -> Result<i64, BelError>;

    /// How many events the write is about to store (a hint; by default ignored).
    fn expect_events(&mut self, n: usize) {
        let _ = n;
    }

    /// Adds `clients` to the requesters of `r`.
    fn add_requesters(&mut self, r: &str, clients: &[String]) -> Result<(), BelError>;

    /// Clears the requesters of `r`.
    fn clear_requesters(&mut self, r: &str) -> Result<(), BelError>;

    /// Replaces the lineage of `downstream` with `upstreams`.
    fn replace_deps(&mut self, downstream: &str, upstreams: Vec<String>) -> Result<(), BelError>;

    /// The partitions whose latest build read `upstream`, sorted.
    async fn downstream(&mut self, upstream: &str) -> Result<Vec<String>, BelError>;

    /// The unfinished graph runs and their owners.
    async fn unfinished_runs(&mut self) -> Result<Vec<RunOwner>, BelError>;

    /// What unfinished graph run `run_id` holds.
    async fn holdings(&mut self, run_id: &str) -> Result<Holdings, BelError>;

    /// Records the owner and lease of graph run `run_id`; false if there is no such run.
    async fn set_lease(
        &mut self,
        run_id: &str,
        owner: &Owner,
        lease_until: i64,
    ) -> Result<bool, BelError>;
}

/// A stored AVAILABLE partition: everything built from it is made stale next.
struct Built {
    partition_ref: String,
    run_id: String,
    cause: String,
    /// The new build has the digest of the one before it, or was made fresh without
    /// running its job: what was built from it is still up to date (early cutoff).
    unchanged: bool,
}

/// Validates one event against the current state, stores it (stamped in place: id, time,
/// run sequence) and updates the views; a partition made AVAILABLE makes everything built
/// from it STALE, transitively. Returns the event's sequence number in the log.
async fn apply<R: Rows>(rows: &mut R, event: &mut Event) -> Result<i64, BelError> {
    let (seq, built) = store(rows, event).await?;
    if let Some(b) = built.filter(|b| !b.unchanged) {
        propagate_stale(rows, &b.partition_ref, &b.run_id, b.cause).await?;
    }
    Ok(seq)
}

fn graph_status(row: Option<&GraphRow>) -> Option<JobGraphRunStatus> {
    row.map(|g| JobGraphRunStatus::try_from(g.status).unwrap_or(JobGraphRunStatus::GraphFailed))
}

/// [`apply`] but for staleness, which is returned when the event starts it.
async fn store<R: Rows>(rows: &mut R, event: &mut Event) -> Result<(i64, Option<Built>), BelError> {
    let ts = common::stamp(event);
    let (run_id, run_seq, job_run_id, status) = match common::classify(event)? {
        Subject::Graph {
            run_id,
            label,
            status,
        } => {
            let cur = rows.graph(&run_id).await?;
            transitions::check_graph(&run_id, graph_status(cur.as_ref()), status)?;
            let (seq, row) = match cur {
                None => (
                    0,
                    GraphRow {
                        label,
                        status: status as i32,
                        started_ts: ts,
                        updated_ts: ts,
                        next_seq: 1,
                    },
                ),
                Some(mut row) => {
                    let seq = row.next_seq;
                    row.next_seq += 1;
                    row.status = status as i32;
                    row.updated_ts = ts;
                    (seq, row)
                }
            };
            rows.put_graph(&run_id, row)?;
            (run_id, seq, None, status as i32)
        }
        Subject::Job {
            run_id,
            job_run_id,
            label,
            job_key,
            status,
        } => {
            let graph = rows.graph(&run_id).await?;
            rules::check_job_run_graph(&job_run_id, &run_id, graph_status(graph.as_ref()))?;
            let cur = rows.job(&job_run_id).await?;
            let cur_status = cur
                .as_ref()
                .map(|c| JobRunStatus::try_from(c.status).unwrap_or_default());
            transitions::check_job(&job_run_id, cur_status, status)?;
            let row = match cur {
                None => JobRow {
                    run_id: run_id.clone(),
                    label,
                    job_key,
                    status: status as i32,
                    scheduled_ts: ts,
                    updated_ts: ts,
                },
                Some(mut row) => {
                    row.status = status as i32;
                    row.updated_ts = ts;
                    row
                }
            };
            rows.put_job(&job_run_id, row)?;
            let mut graph = graph.expect("checked above");
            let seq = graph.next_seq;
            graph.next_seq += 1;
            rows.put_graph(&run_id, graph)?;
            (run_id, seq, Some(job_run_id), status as i32)
        }
        Subject::Partition {
            partition_ref,
            status,
        } => return store_partition(rows, event, partition_ref, status, ts).await,
        Subject::Want {
            want_id,
            partition_ref,
            status,
        } => {
            let seq = wants::store(rows, event, want_id, partition_ref, status, ts).await?;
            return Ok((seq, None));
        }
        Subject::Backfill {
            backfill_id,
            status,
        } => {
            let seq = backfills::store(rows, event, backfill_id, status, ts).await?;
            return Ok((seq, None));
        }
    };
    common::set_run_sequence(event, run_seq);
    let (kind, body) = common::encode(event);
    let seq = rows
        .insert_event(EventRow {
            event_id: common::event_id(event).to_string(),
            kind,
            run_id,
            run_seq,
            job_run_id,
            partition_ref: None,
            status,
            ts,
            body,
        })
        .await?;
    Ok((seq, None))
}

/// [`store`] of a partition event (classified: about `r`, with status `next`).
async fn store_partition<R: Rows>(
    rows: &mut R,
    event: &Event,
    r: String,
    next: PartitionStatus,
    ts: i64,
) -> Result<(i64, Option<Built>), BelError> {
    let Event::Partition(p) = event else {
        unreachable!("a partition subject comes from a partition event")
    };
    let live = !p.job_graph_run_id.is_empty()
        && graph_status(rows.graph(&p.job_graph_run_id).await?.as_ref())
            .is_some_and(|s| !rules::graph_finished(s));
    let cur = rows.partition(&r).await?;
    let effect = transitions::check_partition(&r, cur.as_ref(), next, &p.job_graph_run_id, live)?;
    let (kind, body) = common::encode(event);
    let seq = rows
        .insert_event(EventRow {
            event_id: p.partition_event_id.clone(),
            kind,
            run_id: p.job_graph_run_id.clone(),
            run_seq: 0,
            job_run_id: (!p.job_run_id.is_empty()).then(|| p.job_run_id.clone()),
            partition_ref: Some(r.clone()),
            status: p.status,
            ts,
            body,
        })
        .await?;
    match effect {
        PartitionEffect::SetStatus => rows.put_partition(PartitionRow {
            partition_ref: r.clone(),
            status: next,
            run_id: p.job_graph_run_id.clone(),
            job_run_id: p.job_run_id.clone(),
            seq,
            updated_micros: ts,
        })?,
        PartitionEffect::Remove => rows.remove_partition(&r)?,
        PartitionEffect::LogOnly => {}
    }
    let was_claimed = cur.as_ref().is_some_and(|c| rules::is_claimed(c.status));
    let built = match rules::derived_effect(p, &r, next, was_claimed) {
        Derived::None => None,
        Derived::AddRequesters => {
            rows.add_requesters(&r, &p.requesting_clients)?;
            None
        }
        Derived::ClearRequesters => {
            rows.clear_requesters(&r)?;
            None
        }
        Derived::Built { cause } => {
            rows.clear_requesters(&r)?;
            rows.replace_deps(&r, p.upstream_deps.iter().map(|u| u.str.clone()).collect())?;
            let build = rules::build_row(p, &r);
            let before = rows.build(&r).await?;
            let unchanged = p.cut_off || rules::same_digest(before.as_ref(), &build);
            rows.put_build(&r, build)?;
            Some(Built {
                partition_ref: r,
                run_id: p.job_graph_run_id.clone(),
                cause,
                unchanged,
            })
        }
    };
    Ok((seq, built))
}

/// Marks every AVAILABLE partition built from `root` STALE, transitively, with `reason`
/// for the direct dependents and "upstream `x` is stale" further down. Returns the refs
/// made stale.
async fn propagate_stale<R: Rows>(
    rows: &mut R,
    root: &str,
    run_id: &str,
    reason: String,
) -> Result<Vec<String>, BelError> {
    let mut made_stale = Vec::new();
    let mut queue = VecDeque::from([(root.to_string(), reason)]);
    while let Some((up, reason)) = queue.pop_front() {
        for d in rows.downstream(&up).await? {
            let available = rows
                .partition(&d)
                .await?
                .is_some_and(|p| p.status == PartitionStatus::PartitionAvailable);
            if !available {
                continue;
            }
            let mut stale = rules::stale_event(&d, &up, run_id, &reason);
            let (_, built) = store(rows, &mut stale).await?;
            debug_assert!(
                built.is_none(),
                "a STALE event starts no staleness of its own"
            );
            queue.push_back((d.clone(), rules::stale_upstream(&d)));
            made_stale.push(d);
        }
    }
    Ok(made_stale)
}
