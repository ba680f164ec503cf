//! The state machines every write is validated against: graph runs, job runs,
//! partitions, wants and backfills. Pure functions over the current derived state, shared by every backend.

use databuild_proto::{JobGraphRunStatus as G, JobRunStatus as J, PartitionStatus as P};

use crate::{BelError, PartitionRow};

/// Whether a graph run may move from `current` (None: unknown run) to `next`.
pub fn check_graph(run_id: &str, current: Option<G>, next: G) -> Result<(), BelError> {
    let ok = match (current, next) {
        (None, G::GraphStarted) => true,
        (None, _) => false,
        (Some(G::GraphSuccess | G::GraphFailed), _) => false,
        (Some(_), G::GraphStarted) => false,
        (Some(G::GraphStarted), G::GraphAnalyzed | G::GraphFailed) => true,
        (Some(G::GraphStarted), _) => false,
        (Some(_), G::GraphFailed) => true,
        (Some(G::GraphAnalyzed | G::AwaitingDeps | G::GraphRunning), _) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(BelError::InvalidTransition(format!(
            "graph run `{run_id}` cannot go from {} to {}",
            current.map_or("(no run)", |s| s.as_str_name()),
            next.as_str_name()
        )))
    }
}

/// Whether a job run may move from `current` (None: unknown job run) to `next`. An event
/// that repeats the current status is an annotation (config or logs) and is accepted while
/// the job run is unfinished.
pub fn check_job(job_run_id: &str, current: Option<J>, next: J) -> Result<(), BelError> {
    let ok = match (current, next) {
        (None, J::NotScheduled | J::JobScheduled) => true,
        (None, _) => false,
        (Some(J::JobSuccess | J::JobFailed), _) => false,
        (Some(c), n) if c == n => true,
        (Some(J::NotScheduled), J::JobScheduled | J::JobFailed) => true,
        (Some(J::JobScheduled), J::JobRunning | J::JobFailed) => true,
        (Some(J::JobRunning), J::JobSuccess | J::JobFailed) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(BelError::InvalidTransition(format!(
            "job run `{job_run_id}` cannot go from {} to {}",
            current.map_or("(no job run)", |s| s.as_str_name()),
            next.as_str_name()
        )))
    }
}

/// What a valid partition event does to the latest-status view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionEffect {
    /// The event becomes the partition's latest status.
    SetStatus,
    /// The event is logged (a request or delegation) but the status stays.
    LogOnly,
    /// The partition leaves the latest-status view (it was forgotten).
    Remove,
}

/// Whether partition event `status` by graph run `run_id` is valid given the partition's
/// `current` latest state and whether `run_id` is an unfinished graph run.
pub fn check_partition(
    partition_ref: &str,
    current: Option<&PartitionRow>,
    status: P,
    run_id: &str,
    run_is_live: bool,
) -> Result<PartitionEffect, BelError> {
    let cur = current.map(|c| c.status);
    let same_run = current.is_some_and(|c| c.run_id == run_id);
    let claimed = matches!(cur, Some(P::PartitionScheduled | P::PartitionBuilding));
    let invalid = |why: &str| {
        Err(BelError::InvalidTransition(format!(
            "partition `{partition_ref}` cannot go from {} to {} in graph run `{run_id}`: {why}",
            cur.map_or("(no status)", |s| s.as_str_name()),
            status.as_str_name()
        )))
    };
    let needs_live_run = |effect| {
        if run_is_live {
            Ok(effect)
        } else {
            invalid("the event needs an unfinished graph run")
        }
    };
    match status {
        P::PartitionUnknown => invalid("UNKNOWN is not a status that can be recorded"),
        P::PartitionRequested | P::PartitionDelegated => match cur {
            Some(P::PartitionScheduled | P::PartitionBuilding | P::PartitionAvailable) => {
                Ok(PartitionEffect::LogOnly)
            }
            _ => Ok(PartitionEffect::SetStatus),
        },
        P::PartitionScheduled => {
            if claimed {
                if same_run {
                    return invalid("the run already holds it");
                }
                return Err(BelError::Claimed {
                    partition_ref: partition_ref.to_string(),
                    owner_run_id: current.map(|c| c.run_id.clone()).unwrap_or_default(),
                });
            }
            if cur == Some(P::PartitionAvailable) && same_run {
                return invalid("rebuilding an AVAILABLE partition needs a new graph run");
            }
            needs_live_run(PartitionEffect::SetStatus)
        }
        P::PartitionBuilding => {
            // BUILDING again is a retry by a new job run of the same graph run.
            if claimed && same_run {
                needs_live_run(PartitionEffect::SetStatus)
            } else {
                invalid("BUILDING needs SCHEDULED by the same run")
            }
        }
        P::PartitionAvailable => {
            if run_id.is_empty() {
                // An external registration.
                if claimed {
                    invalid("it is being built")
                } else {
                    Ok(PartitionEffect::SetStatus)
                }
            } else if cur == Some(P::PartitionBuilding) && same_run {
                needs_live_run(PartitionEffect::SetStatus)
            } else {
                invalid("AVAILABLE needs BUILDING by the same run")
            }
        }
        P::PartitionFailed => {
            let allowed = if claimed {
                same_run
            } else {
                matches!(
                    cur,
                    None | Some(P::PartitionRequested | P::PartitionFailed | P::PartitionDelegated)
                )
            };
            if allowed {
                Ok(PartitionEffect::SetStatus)
            } else {
                invalid("FAILED needs SCHEDULED or BUILDING by the same run")
            }
        }
        P::PartitionStale => {
            if cur == Some(P::PartitionAvailable) || cur == Some(P::PartitionStale) {
                Ok(PartitionEffect::SetStatus)
            } else {
                invalid("only an AVAILABLE partition can become STALE")
            }
        }
        P::PartitionForgotten => match cur {
            Some(P::PartitionRequested | P::PartitionFailed | P::PartitionDelegated) => {
                Ok(PartitionEffect::Remove)
            }
            _ => invalid("only a partition that is not built and not being built can be forgotten"),
        },
    }
}

/// Whether a want may take event `next` from `current` (None: unknown want; the flag: its
/// SLA was already missed). A want is created once; it is satisfied, fails, expires or is
/// cancelled while live; a failed one may be retried (active again); its SLA is missed at
/// most once, before it is satisfied.
pub fn check_want(
    want_id: &str,
    current: Option<(databuild_proto::WantStatus, bool)>,
    next: databuild_proto::WantStatus,
) -> Result<(), BelError> {
    use databuild_proto::WantStatus as W;
    let Some((cur, sla_missed)) = current else {
        return match next {
            W::WantActive => Ok(()),
            _ => Err(BelError::UnknownWant(want_id.to_string())),
        };
    };
    let ok = match (cur, next) {
        (W::WantActive, W::WantSlaMissed) => !sla_missed,
        (W::WantActive, W::WantSatisfied) => true,
        (W::WantActive | W::WantSatisfied, W::WantFailed) => true,
        // Retried (`databuild backfill retry`).
        (W::WantFailed, W::WantActive) => true,
        (W::WantActive | W::WantSatisfied | W::WantFailed, W::WantExpired | W::WantCancelled) => {
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(BelError::WantState {
            want_id: want_id.to_string(),
            current: cur,
            next,
        })
    }
}

/// Whether a backfill may move from `current` (None: unknown backfill) to `next`: created
/// RUNNING; RUNNING pauses, is cancelled or completes; PAUSED resumes or is cancelled; a
/// COMPLETED one runs again (retrying its failures); CANCELLED is final.
pub fn check_backfill(
    backfill_id: &str,
    current: Option<databuild_proto::BackfillStatus>,
    next: databuild_proto::BackfillStatus,
) -> Result<(), BelError> {
    use databuild_proto::BackfillStatus as B;
    let Some(cur) = current else {
        return match next {
            B::BackfillRunning => Ok(()),
            _ => Err(BelError::UnknownBackfill(backfill_id.to_string())),
        };
    };
    let ok = matches!(
        (cur, next),
        (
            B::BackfillRunning,
            B::BackfillPaused | B::BackfillCancelled | B::BackfillCompleted
        ) | (B::BackfillPaused, B::BackfillRunning | B::BackfillCancelled)
            | (B::BackfillCompleted, B::BackfillRunning)
    );
    if ok {
        Ok(())
    } else {
        Err(BelError::BackfillState {
            backfill_id: backfill_id.to_string(),
            current: cur,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: P, run: &str) -> PartitionRow {
        PartitionRow {
            partition_ref: "a".into(),
            status,
            run_id: run.into(),
            job_run_id: String::new(),
            seq: 1,
            updated_micros: 0,
        }
    }

    #[test]
    fn available_to_building_needs_a_new_run() {
        let cur = row(P::PartitionAvailable, "r1");
        assert!(check_partition("a", Some(&cur), P::PartitionScheduled, "r1", true).is_err());
        assert_eq!(
            check_partition("a", Some(&cur), P::PartitionScheduled, "r2", true).unwrap(),
            PartitionEffect::SetStatus
        );
    }

    #[test]
    fn a_claim_held_by_another_run_is_refused_with_the_owner() {
        let cur = row(P::PartitionBuilding, "r1");
        let err = check_partition("a", Some(&cur), P::PartitionScheduled, "r2", true).unwrap_err();
        assert!(matches!(err, BelError::Claimed { ref owner_run_id, .. } if owner_run_id == "r1"));
    }

    #[test]
    fn success_needs_running() {
        assert!(check_job("j", Some(J::JobScheduled), J::JobSuccess).is_err());
        assert!(check_job("j", Some(J::JobRunning), J::JobSuccess).is_ok());
        assert!(check_job("j", Some(J::JobSuccess), J::JobFailed).is_err());
    }

    #[test]
    fn finished_graph_runs_take_no_more_events() {
        assert!(check_graph("g", Some(G::GraphSuccess), G::GraphRunning).is_err());
        assert!(check_graph("g", None, G::GraphRunning).is_err());
        assert!(check_graph("g", Some(G::GraphStarted), G::GraphAnalyzed).is_ok());
    }

    #[test]
    fn only_unbuilt_unclaimed_partitions_can_be_forgotten() {
        let forget = |cur: Option<&PartitionRow>| {
            check_partition("a", cur, P::PartitionForgotten, "", false)
        };
        assert_eq!(
            forget(Some(&row(P::PartitionFailed, "r1"))).unwrap(),
            PartitionEffect::Remove
        );
        assert!(forget(Some(&row(P::PartitionRequested, "r1"))).is_ok());
        assert!(forget(None).is_err());
        for s in [
            P::PartitionScheduled,
            P::PartitionBuilding,
            P::PartitionAvailable,
            P::PartitionStale,
        ] {
            assert!(forget(Some(&row(s, "r1"))).is_err(), "{s:?}");
        }
    }

    #[test]
    fn available_needs_building_by_the_same_run() {
        let cur = row(P::PartitionScheduled, "r1");
        assert!(check_partition("a", Some(&cur), P::PartitionAvailable, "r1", true).is_err());
        let cur = row(P::PartitionBuilding, "r1");
        assert!(check_partition("a", Some(&cur), P::PartitionAvailable, "r2", true).is_err());
        assert!(check_partition("a", Some(&cur), P::PartitionAvailable, "r1", true).is_ok());
    }
}
