//! Validating and applying events inside a write transaction, and the writes built on it:
//! append, heartbeat, reclaiming lost runs, invalidation and claims. The same steps as the
//! SQLite backend, against the transaction's [`State`].

use std::{future::Future, pin::Pin};

use databuild_proto::{FailureCause, JobGraphRunStatus, JobRunStatus};

use super::state::{EventRow, GraphRow, JobRow, State};
use crate::{
    common::{self, Derived, Subject},
    transitions::{self, PartitionEffect},
    BelError, ClaimGroup, ClaimOutcome, Event, LoggedEvent, Owner, PartitionRow, ReclaimedRun,
};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BelError>> + Send + 'a>>;

/// One write, run in a transaction that holds the write lock. `run` may be called again
/// after a lost connection, so it takes `&self`.
#[async_trait::async_trait]
pub(super) trait WriteOp: Sync {
    type Out: Send;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError>;
}

fn graph_status(row: &Option<GraphRow>) -> Option<JobGraphRunStatus> {
    row.as_ref()
        .map(|g| JobGraphRunStatus::try_from(g.status).unwrap_or(JobGraphRunStatus::GraphFailed))
}

/// Validates one event against the current state, stores it and updates the views.
pub(super) fn apply<'s, 'a>(st: &'s mut State<'a>, event: Event) -> BoxFut<'s, LoggedEvent> {
    Box::pin(async move {
        let mut event = event;
        let ts = common::stamp(&mut event);
        let subject = common::classify(&event)?;
        let event_id = common::event_id(&event).to_string();
        let (run_id, run_seq, job_run_id, partition_ref, status);
        let mut derived = None;
        match subject {
            Subject::Graph {
                run_id: id,
                label,
                status: next,
            } => {
                let cur = st.graph(&id).await?;
                transitions::check_graph(&id, graph_status(&cur), next)?;
                let (seq, row) = match cur {
                    None => (
                        0,
                        GraphRow {
                            label,
                            status: next as i32,
                            started_ts: ts,
                            updated_ts: ts,
                            next_seq: 1,
                        },
                    ),
                    Some(mut row) => {
                        let seq = row.next_seq;
                        row.next_seq += 1;
                        row.status = next as i32;
                        row.updated_ts = ts;
                        (seq, row)
                    }
                };
                st.set_graph(&id, row);
                (run_id, run_seq, job_run_id, partition_ref, status) =
                    (id, seq, None, None, next as i32);
            }
            Subject::Job {
                run_id: id,
                job_run_id: jr,
                label,
                job_key,
                status: next,
            } => {
                let graph = st.graph(&id).await?;
                common::check_job_run_graph(&jr, &id, graph_status(&graph))?;
                let cur = st.job(&jr).await?;
                let cur_status = cur
                    .as_ref()
                    .map(|c| JobRunStatus::try_from(c.status).unwrap_or_default());
                transitions::check_job(&jr, cur_status, next)?;
                let row = match cur {
                    None => JobRow {
                        run_id: id.clone(),
                        label,
                        job_key,
                        status: next as i32,
                        scheduled_ts: ts,
                        updated_ts: ts,
                    },
                    Some(mut row) => {
                        row.status = next as i32;
                        row.updated_ts = ts;
                        row
                    }
                };
                st.set_job(&jr, row);
                let mut graph = graph.expect("checked above");
                let seq = graph.next_seq;
                graph.next_seq += 1;
                st.set_graph(&id, graph);
                (run_id, run_seq, job_run_id, partition_ref, status) =
                    (id, seq, Some(jr), None, next as i32);
            }
            Subject::Partition {
                partition_ref: r,
                status: next,
            } => {
                let Event::Partition(p) = &event else {
                    unreachable!("a partition subject comes from a partition event")
                };
                let live = !p.job_graph_run_id.is_empty()
                    && graph_status(&st.graph(&p.job_graph_run_id).await?)
                        .is_some_and(|s| !common::graph_finished(s));
                let cur = st.partition(&r).await?;
                let effect = transitions::check_partition(
                    &r,
                    cur.as_ref(),
                    next,
                    &p.job_graph_run_id,
                    live,
                )?;
                let was_claimed = cur.as_ref().is_some_and(|c| common::is_claimed(c.status));
                derived = Some((
                    effect,
                    common::derived_effect(p, &r, next, was_claimed),
                    p.upstream_deps.iter().map(|u| u.str.clone()).collect(),
                    p.job_run_id.clone(),
                ));
                (run_id, run_seq, job_run_id, partition_ref, status) = (
                    p.job_graph_run_id.clone(),
                    0,
                    (!p.job_run_id.is_empty()).then(|| p.job_run_id.clone()),
                    Some(r),
                    next as i32,
                );
            }
        }
        common::set_run_sequence(&mut event, run_seq);
        let (kind, body) = common::encode(&event);
        let seq = st.insert_event(EventRow {
            event_id,
            kind,
            run_id: run_id.clone(),
            run_seq,
            job_run_id,
            partition_ref: partition_ref.clone(),
            status,
            ts,
            body,
        });
        if let (Some((effect, derived, upstreams, job_run_id)), Some(r)) = (derived, partition_ref)
        {
            if effect == PartitionEffect::SetStatus {
                st.set_partition(PartitionRow {
                    partition_ref: r.clone(),
                    status: databuild_proto::PartitionStatus::try_from(status).unwrap_or_default(),
                    run_id: run_id.clone(),
                    job_run_id,
                    seq,
                    updated_micros: ts,
                });
            } else if effect == PartitionEffect::Remove {
                st.remove_partition(&r);
            }
            let clients = match &event {
                Event::Partition(p) => p.requesting_clients.clone(),
                Event::Run(_) => Vec::new(),
            };
            match derived {
                Derived::None => {}
                Derived::AddRequesters => st.add_requesters(&r, &clients),
                Derived::ClearRequesters => st.clear_requesters(&r),
                Derived::Built { cause } => {
                    st.clear_requesters(&r);
                    st.replace_deps(&r, upstreams);
                    propagate_stale(st, &r, &run_id, cause).await?;
                }
            }
        }
        Ok(LoggedEvent { seq, event })
    })
}

/// Marks every AVAILABLE partition built from `root` STALE, transitively. Returns the
/// refs made stale.
pub(super) async fn propagate_stale(
    st: &mut State<'_>,
    root: &str,
    run_id: &str,
    reason: String,
) -> Result<Vec<String>, BelError> {
    let mut made_stale = Vec::new();
    let mut queue = std::collections::VecDeque::from([(root.to_string(), reason)]);
    while let Some((up, reason)) = queue.pop_front() {
        for d in st.available_downstream(&up).await? {
            apply(st, common::stale_event(&d, &up, run_id, &reason)).await?;
            queue.push_back((d.clone(), common::stale_upstream(&d)));
            made_stale.push(d);
        }
    }
    Ok(made_stale)
}

/// Appends stamped events.
pub(super) struct Append(pub Vec<Event>);

#[async_trait::async_trait]
impl WriteOp for Append {
    type Out = Vec<LoggedEvent>;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        let (mut refs, mut runs, mut jobs, mut built) = (vec![], vec![], vec![], vec![]);
        for e in &self.0 {
            runs.push(e.run_id().to_string());
            match e {
                Event::Partition(p) => {
                    let r = p.partition_ref.as_ref().map(|r| r.str.clone());
                    if p.status == databuild_proto::PartitionStatus::PartitionAvailable as i32 {
                        built.extend(r.clone());
                    }
                    refs.extend(r);
                }
                Event::Run(r) => jobs.extend(r.job_event.as_ref().map(|j| j.job_run_id.clone())),
            }
        }
        runs.retain(|r| !r.is_empty());
        st.prefetch(refs, runs, jobs, built).await?;
        let mut out = Vec::with_capacity(self.0.len());
        for e in &self.0 {
            out.push(apply(st, e.clone()).await?);
        }
        Ok(out)
    }
}

/// Renews a run's lease.
pub(super) struct Heartbeat<'a> {
    pub run_id: &'a str,
    pub owner: &'a Owner,
    pub lease_until: i64,
}

#[async_trait::async_trait]
impl WriteOp for Heartbeat<'_> {
    type Out = ();
    async fn run(&self, st: &mut State<'_>) -> Result<(), BelError> {
        let stmt = st
            .stmts
            .get(
                st.tx,
                "UPDATE graph_runs SET host = $2, pid = $3, lease_until = $4 WHERE run_id = $1",
            )
            .await?;
        let n = st
            .tx
            .execute(
                &stmt,
                &[
                    &self.run_id,
                    &self.owner.host,
                    &i64::from(self.owner.pid),
                    &self.lease_until,
                ],
            )
            .await?;
        if n == 0 {
            return Err(BelError::InvalidTransition(format!(
                "cannot renew the lease of unknown graph run `{}`",
                self.run_id
            )));
        }
        Ok(())
    }
}

/// Fails the runs whose owner is gone.
pub(super) struct Reclaim<'a> {
    pub now: i64,
    pub this_host: &'a str,
    pub cleared: &'a [String],
}

#[async_trait::async_trait]
impl WriteOp for Reclaim<'_> {
    type Out = Vec<ReclaimedRun>;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        let stmt = st
            .stmts
            .get(
                st.tx,
                "SELECT run_id, host, pid, lease_until FROM graph_runs WHERE status NOT IN (4, 5)
                 ORDER BY run_id",
            )
            .await?;
        let candidates = st.tx.query(&stmt, &[]).await?;
        let mut reclaimed = Vec::new();
        for row in candidates {
            let run_id: String = row.get(0);
            let host: Option<String> = row.get(1);
            let pid: Option<i64> = row.get(2);
            let lease: Option<i64> = row.get(3);
            let pid = pid.and_then(|p| u32::try_from(p).ok());
            if common::reclaimable(
                &run_id,
                (self.now, self.this_host, self.cleared),
                host.as_deref(),
                pid,
                lease,
            ) {
                reclaimed.push(fail_run(st, &run_id, common::OWNER_LOST_FAILURE).await?);
            }
        }
        Ok(reclaimed)
    }
}

/// Fails an unfinished graph run and everything it holds.
async fn fail_run(
    st: &mut State<'_>,
    run_id: &str,
    failure: (FailureCause, &str),
) -> Result<ReclaimedRun, BelError> {
    st.flush().await?;
    let s_held = st
        .stmts
        .get(
            st.tx,
            "SELECT ref, job_run_id FROM partitions WHERE run_id = $1 AND status IN (2, 3)
             ORDER BY ref",
        )
        .await?;
    let s_jobs = st
        .stmts
        .get(
            st.tx,
            "SELECT job_run_id, label, job_key FROM job_runs
             WHERE run_id = $1 AND status NOT IN (3, 4) ORDER BY scheduled_ts, job_run_id",
        )
        .await?;
    let (held, jobs) = tokio::try_join!(async { st.tx.query(&s_held, &[&run_id]).await }, async {
        st.tx.query(&s_jobs, &[&run_id]).await
    })?;
    let held: Vec<(String, String)> = held.iter().map(|r| (r.get(0), r.get(1))).collect();
    let jobs: Vec<(String, String, String)> = jobs
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let label = st.graph(run_id).await?.map(|g| g.label).unwrap_or_default();
    for e in common::fail_run_events(run_id, &label, &held, &jobs, failure) {
        apply(st, e).await?;
    }
    Ok(ReclaimedRun {
        run_id: run_id.to_string(),
        partitions: held.into_iter().map(|h| h.0).collect(),
    })
}

/// Invalidates an AVAILABLE partition and everything built from it.
pub(super) struct Invalidate<'a> {
    pub partition_ref: &'a str,
    pub reason: &'a str,
}

#[async_trait::async_trait]
impl WriteOp for Invalidate<'_> {
    type Out = Vec<String>;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        let r = self.partition_ref;
        let cur = st.partition(r).await?;
        apply(st, common::invalidation(r, cur.as_ref(), self.reason)?).await?;
        let mut stale = vec![r.to_string()];
        stale.extend(propagate_stale(st, r, "", common::stale_upstream(r)).await?);
        Ok(stale)
    }
}

/// Claims groups of partitions for a run.
pub(super) struct Claim<'a> {
    pub run_id: &'a str,
    pub client: &'a str,
    pub groups: Vec<ClaimGroup>,
}

#[async_trait::async_trait]
impl WriteOp for Claim<'_> {
    type Out = Vec<ClaimOutcome>;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        let refs = self.groups.iter().flat_map(|g| g.refs.clone()).collect();
        st.prefetch(refs, vec![self.run_id.to_string()], vec![], vec![])
            .await?;
        let mut outcomes = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let mut current = Vec::with_capacity(g.refs.len());
            for r in &g.refs {
                current.push(st.partition(r).await?);
            }
            let (outcome, events) = common::claim_events(self.run_id, self.client, g, &current);
            for e in events {
                apply(st, e).await?;
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}
