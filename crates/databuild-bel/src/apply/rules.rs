//! The rules of writing, apart from reading and writing rows: when a job event's graph
//! run may take it, what a partition event does to the requesters and lineage views, and
//! the events that staleness, invalidation, claims and lost runs write.

use databuild_proto::{
    FailureCause, GraphEvent, GraphLabel, JobEvent, JobGraphRunEvent, JobGraphRunStatus, JobLabel,
    JobLogsEvent, JobRunStatus, PartitionEvent, PartitionRef, PartitionStatus,
};

use crate::{common::OWNER_LOST, BelError, BuildRow, ClaimGroup, Event, PartitionRow};

/// What fails the claims of a graph run whose owner is gone.
pub(crate) const OWNER_LOST_FAILURE: (FailureCause, &str) =
    (FailureCause::OwnerRunLost, OWNER_LOST);

/// Whether a graph run in `status` has ended.
pub(crate) fn graph_finished(status: JobGraphRunStatus) -> bool {
    matches!(
        status,
        JobGraphRunStatus::GraphSuccess | JobGraphRunStatus::GraphFailed
    )
}

/// Whether a partition in `status` is claimed by a run.
pub(crate) fn is_claimed(status: PartitionStatus) -> bool {
    matches!(
        status,
        PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding
    )
}

/// A job event needs its graph run (in `graph`) to be unfinished.
pub(crate) fn check_job_run_graph(
    job_run_id: &str,
    run_id: &str,
    graph: Option<JobGraphRunStatus>,
) -> Result<(), BelError> {
    match graph {
        Some(s) if !graph_finished(s) => Ok(()),
        _ => Err(BelError::InvalidTransition(format!(
            "job run `{job_run_id}` belongs to graph run `{run_id}`, which is not running"
        ))),
    }
}

/// What a stored partition event does to the requesters and lineage views.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Derived {
    /// Nothing.
    None,
    /// Its requesting clients join the partition's requesters.
    AddRequesters,
    /// The claim ended: requesters are cleared.
    ClearRequesters,
    /// A new build is AVAILABLE: requesters cleared, lineage replaced by the event's
    /// upstream deps, and everything built from it made STALE with `cause`.
    Built { cause: String },
}

/// The derived-view effect of partition event `p` with `status`; `was_claimed`: the
/// partition was SCHEDULED or BUILDING before it.
pub(crate) fn derived_effect(
    p: &PartitionEvent,
    partition_ref: &str,
    status: PartitionStatus,
    was_claimed: bool,
) -> Derived {
    match status {
        PartitionStatus::PartitionScheduled | PartitionStatus::PartitionDelegated => {
            Derived::AddRequesters
        }
        PartitionStatus::PartitionRequested if was_claimed => Derived::AddRequesters,
        PartitionStatus::PartitionAvailable => Derived::Built {
            cause: if p.job_graph_run_id.is_empty() {
                format!("upstream `{partition_ref}` was registered again")
            } else {
                format!(
                    "upstream `{partition_ref}` was rebuilt by graph run `{}`",
                    p.job_graph_run_id
                )
            },
        },
        PartitionStatus::PartitionFailed
        | PartitionStatus::PartitionStale
        | PartitionStatus::PartitionForgotten => Derived::ClearRequesters,
        _ => Derived::None,
    }
}

/// What AVAILABLE event `p` of `partition_ref` says of its build.
pub(crate) fn build_row(p: &PartitionEvent, partition_ref: &str) -> BuildRow {
    let manifest = p.manifest.as_ref();
    BuildRow {
        job: p
            .producing_job
            .as_ref()
            .map(|j| j.label.clone())
            .unwrap_or_default(),
        version: manifest.map(|m| m.job_version.clone()).unwrap_or_default(),
        digest: manifest
            .and_then(|m| m.digests.get(partition_ref).cloned())
            .unwrap_or_default(),
    }
}

/// Whether a new build has the digest of the one `before` it (no digest: changed).
pub(crate) fn same_digest(before: Option<&BuildRow>, new: &BuildRow) -> bool {
    !new.digest.is_empty() && before.is_some_and(|b| b.digest == new.digest)
}

/// The STALE event of `downstream`, built from `upstream`, with `reason`.
pub(crate) fn stale_event(downstream: &str, upstream: &str, run_id: &str, reason: &str) -> Event {
    Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(downstream)),
        status: PartitionStatus::PartitionStale as i32,
        job_graph_run_id: run_id.to_string(),
        failure_reason: reason.to_string(),
        upstream_deps: vec![PartitionRef::new(upstream)],
        ..Default::default()
    })
}

/// The reason given to partitions further down from a stale `partition_ref`.
pub(crate) fn stale_upstream(partition_ref: &str) -> String {
    format!("upstream `{partition_ref}` is stale")
}

/// Checks that `partition_ref` (latest state `current`) can be invalidated, and returns
/// the STALE event that does it.
pub(crate) fn invalidation(
    partition_ref: &str,
    current: Option<&PartitionRow>,
    reason: &str,
) -> Result<Event, BelError> {
    let Some(cur) = current else {
        return Err(BelError::UnknownPartition(partition_ref.to_string()));
    };
    if cur.status != PartitionStatus::PartitionAvailable {
        let hint = match cur.status {
            PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding => {
                "it is being built now; invalidate it once it is AVAILABLE".to_string()
            }
            PartitionStatus::PartitionStale => {
                "it is already stale; the next build that needs it rebuilds it".to_string()
            }
            _ => format!(
                "there is nothing to invalidate; `databuild build {partition_ref}` builds it"
            ),
        };
        return Err(BelError::InvalidTransition(format!(
            "partition `{partition_ref}` is {}; only an AVAILABLE partition can be invalidated: {hint}",
            cur.status.as_str_name()
        )));
    }
    Ok(Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(partition_ref)),
        status: PartitionStatus::PartitionStale as i32,
        failure_reason: format!("invalidated: {reason}"),
        ..Default::default()
    }))
}

/// What a claim does with one group, given the latest state of each of its refs (in the
/// group's order; `None` for refs without one).
pub(crate) fn claim_events(
    run_id: &str,
    client: &str,
    group: &ClaimGroup,
    current: &[Option<PartitionRow>],
) -> (crate::ClaimOutcome, Vec<Event>) {
    let mut held = Vec::new();
    let mut available = 0;
    for (r, cur) in group.refs.iter().zip(current) {
        if let Some(cur) = cur {
            if cur.status == PartitionStatus::PartitionAvailable {
                available += 1;
            }
            if is_claimed(cur.status) && cur.run_id != run_id {
                held.push((r.clone(), cur.run_id.clone()));
            }
        }
    }
    let producing_job = Some(JobLabel::new(group.producing_job.clone()));
    if let Some((first_ref, first_owner)) = held.first().cloned() {
        let events = held
            .into_iter()
            .map(|(r, owner)| {
                Event::Partition(PartitionEvent {
                    partition_ref: Some(PartitionRef::new(r)),
                    status: PartitionStatus::PartitionDelegated as i32,
                    job_graph_run_id: run_id.to_string(),
                    delegated_to_run_id: owner,
                    requesting_clients: vec![client.to_string()],
                    producing_job: producing_job.clone(),
                    ..Default::default()
                })
            })
            .collect();
        let outcome = crate::ClaimOutcome::HeldBy {
            partition_ref: first_ref,
            owner_run_id: first_owner,
        };
        return (outcome, events);
    }
    if group.skip_if_available && available == group.refs.len() {
        return (crate::ClaimOutcome::Available, Vec::new());
    }
    let events = group
        .refs
        .iter()
        .map(|r| {
            Event::Partition(PartitionEvent {
                partition_ref: Some(PartitionRef::new(r.clone())),
                status: PartitionStatus::PartitionScheduled as i32,
                job_graph_run_id: run_id.to_string(),
                requesting_clients: vec![client.to_string()],
                producing_job: producing_job.clone(),
                upstream_deps: group
                    .upstream_deps
                    .iter()
                    .map(|u| PartitionRef::new(u.clone()))
                    .collect(),
                ..Default::default()
            })
        })
        .collect();
    (crate::ClaimOutcome::Claimed, events)
}

/// Whether unfinished run `run_id` may be reclaimed now (`at` = now, this host, the runs
/// whose job processes the caller stopped): its owner is lost, and when that owner ran
/// on this host, the caller has stopped its jobs first.
pub(crate) fn reclaimable(
    run_id: &str,
    (now, this_host, cleared): (i64, &str, &[String]),
    host: Option<&str>,
    pid: Option<u32>,
    lease_until: Option<i64>,
) -> bool {
    owner_lost(now, this_host, host, pid, lease_until)
        && (host != Some(this_host) || cleared.iter().any(|c| c == run_id))
}

/// Whether the owner of an unfinished run is gone: its lease expired, or it is a dead
/// process on this host.
pub fn owner_lost(
    now: i64,
    this_host: &str,
    host: Option<&str>,
    pid: Option<u32>,
    lease_until: Option<i64>,
) -> bool {
    let expired = lease_until.is_some_and(|l| l < now);
    let dead_here = host == Some(this_host)
        && pid.is_some_and(|p| p != std::process::id() && process_is_dead(p));
    expired || dead_here
}

/// Whether process `pid` on this host is gone (Linux: no `/proc/<pid>` or a zombie).
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => std::path::Path::new("/proc/self").exists(),
    }
}

/// The events that fail graph run `run_id` of graph `label`: its `held` partitions
/// `(ref, job run)` FAILED, its unfinished `jobs` `(job run, label, job key)` FAILED, then
/// the run, each with `reason`; the partitions with `cause`.
pub(crate) fn fail_run_events(
    run_id: &str,
    label: &str,
    held: &[(String, String)],
    jobs: &[(String, String, String)],
    (cause, reason): (FailureCause, &str),
) -> Vec<Event> {
    let mut out = Vec::with_capacity(held.len() + jobs.len() + 1);
    for (r, job_run_id) in held {
        out.push(Event::Partition(PartitionEvent {
            partition_ref: Some(PartitionRef::new(r.clone())),
            status: PartitionStatus::PartitionFailed as i32,
            job_graph_run_id: run_id.to_string(),
            job_run_id: job_run_id.clone(),
            failure_reason: reason.to_string(),
            failure_cause: cause as i32,
            ..Default::default()
        }));
    }
    for (job_run_id, job_label, job_key) in jobs {
        out.push(Event::Run(JobGraphRunEvent {
            job_event: Some(JobEvent {
                job_graph_run_id: run_id.to_string(),
                job_run_id: job_run_id.clone(),
                status: JobRunStatus::JobFailed as i32,
                job_key: job_key.clone(),
                label: Some(JobLabel::new(job_label.clone())),
                logs: Some(JobLogsEvent {
                    logs: vec![reason.to_string()],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    out.push(Event::Run(JobGraphRunEvent {
        graph_event: Some(GraphEvent {
            job_graph_run_id: run_id.to_string(),
            status: JobGraphRunStatus::GraphFailed as i32,
            label: Some(GraphLabel {
                label: label.to_string(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    out
}
