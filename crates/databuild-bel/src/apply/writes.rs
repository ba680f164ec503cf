//! The writes of the log, each inside one write transaction over a backend's [`Rows`]:
//! appending events, claiming partitions, invalidating one, failing the runs whose owner
//! is gone, and renewing a run's lease.

use databuild_proto::PartitionStatus;

use super::{apply, propagate_stale, rules, Keys, Rows};
use crate::{BelError, ClaimGroup, ClaimOutcome, Event, LoggedEvent, Owner, ReclaimedRun};

/// Validates and stores `events` in order (stamped if they are not yet); returns them as
/// stored.
pub(crate) async fn append<R: Rows>(
    rows: &mut R,
    mut events: Vec<Event>,
) -> Result<Vec<LoggedEvent>, BelError> {
    let seqs = append_in_place(rows, &mut events).await?;
    Ok(seqs
        .into_iter()
        .zip(events)
        .map(|(seq, event)| LoggedEvent { seq, event })
        .collect())
}

/// [`append`] that stamps `events` where they are and returns their sequence numbers: the
/// caller keeps them, as they were stored or, if the write fails, to write them again.
pub(crate) async fn append_in_place<R: Rows>(
    rows: &mut R,
    events: &mut [Event],
) -> Result<Vec<i64>, BelError> {
    rows.expect_events(events.len());
    rows.prefetch(keys(events)).await?;
    let mut seqs = Vec::with_capacity(events.len());
    for e in events {
        seqs.push(apply(rows, e).await?);
    }
    Ok(seqs)
}

/// The rows appending `events` reads.
fn keys(events: &[Event]) -> Keys {
    let mut keys = Keys::default();
    for e in events {
        keys.run_ids.push(e.run_id().to_string());
        match e {
            Event::Partition(p) => {
                let r = p.partition_ref.as_ref().map(|r| r.str.clone());
                if p.status == PartitionStatus::PartitionAvailable as i32 {
                    keys.upstreams.extend(r.clone());
                }
                keys.refs.extend(r);
            }
            Event::Run(r) => keys
                .job_run_ids
                .extend(r.job_event.as_ref().map(|j| j.job_run_id.clone())),
            Event::Want(_) | Event::Backfill(_) => {}
        }
    }
    keys.run_ids.retain(|r| !r.is_empty());
    keys
}

/// Records the owner and lease of graph run `run_id`.
pub(crate) async fn heartbeat<R: Rows>(
    rows: &mut R,
    run_id: &str,
    owner: &Owner,
    lease_until: i64,
) -> Result<(), BelError> {
    if !rows.set_lease(run_id, owner, lease_until).await? {
        return Err(BelError::InvalidTransition(format!(
            "cannot renew the lease of unknown graph run `{run_id}`"
        )));
    }
    Ok(())
}

/// Fails every unfinished graph run whose owner is lost (see [`rules::reclaimable`]).
pub(crate) async fn reclaim_lost_runs<R: Rows>(
    rows: &mut R,
    now: i64,
    this_host: &str,
    cleared: &[String],
) -> Result<Vec<ReclaimedRun>, BelError> {
    let mut reclaimed = Vec::new();
    for o in rows.unfinished_runs().await? {
        let at = (now, this_host, cleared);
        if rules::reclaimable(&o.run_id, at, o.host.as_deref(), o.pid, o.lease_until) {
            reclaimed.push(fail_run(rows, &o.run_id).await?);
        }
    }
    Ok(reclaimed)
}

/// Fails unfinished graph run `run_id` and everything it holds, its owner lost.
async fn fail_run<R: Rows>(rows: &mut R, run_id: &str) -> Result<ReclaimedRun, BelError> {
    let (held, jobs) = rows.holdings(run_id).await?;
    let label = rows
        .graph(run_id)
        .await?
        .map(|g| g.label)
        .unwrap_or_default();
    let failure = rules::OWNER_LOST_FAILURE;
    for mut e in rules::fail_run_events(run_id, &label, &held, &jobs, failure) {
        apply(rows, &mut e).await?;
    }
    Ok(ReclaimedRun {
        run_id: run_id.to_string(),
        partitions: held.into_iter().map(|h| h.0).collect(),
    })
}

/// Marks AVAILABLE `r` STALE with `reason`, and everything built from it. Returns the
/// refs made stale, `r` first.
pub(crate) async fn invalidate<R: Rows>(
    rows: &mut R,
    r: &str,
    reason: &str,
) -> Result<Vec<String>, BelError> {
    let cur = rows.partition(r).await?;
    apply(rows, &mut rules::invalidation(r, cur.as_ref(), reason)?).await?;
    let mut stale = vec![r.to_string()];
    stale.extend(propagate_stale(rows, r, "", rules::stale_upstream(r)).await?);
    Ok(stale)
}

/// Claims `groups` for graph run `run_id` on behalf of `client` (see
/// [`rules::claim_events`]).
pub(crate) async fn claim<R: Rows>(
    rows: &mut R,
    run_id: &str,
    client: &str,
    groups: &[ClaimGroup],
) -> Result<Vec<ClaimOutcome>, BelError> {
    rows.expect_events(groups.iter().map(|g| g.refs.len()).sum());
    rows.prefetch(Keys {
        refs: groups.iter().flat_map(|g| g.refs.clone()).collect(),
        run_ids: vec![run_id.to_string()],
        ..Keys::default()
    })
    .await?;
    let mut outcomes = Vec::with_capacity(groups.len());
    for g in groups {
        let mut current = Vec::with_capacity(g.refs.len());
        for r in &g.refs {
            current.push(rows.partition(r).await?);
        }
        let (outcome, events) = rules::claim_events(run_id, client, g, &current);
        for mut e in events {
            apply(rows, &mut e).await?;
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
