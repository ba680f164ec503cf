//! Failure causes of events written before `PartitionEvent.failure_cause` existed: the
//! legacy mapping from a FAILED event's reason text to its [`FailureCause`].
//!
//! This is the only code that looks at the words of a failure reason. It runs once, as
//! either backend decodes a stored event ([`fill_legacy_cause`] from `common::decode`), so
//! that every reader of the log sees a typed cause whatever wrote the event. The patterns
//! are the reasons databuild wrote before it recorded causes; they never change, and new
//! reasons need no entry here because new events carry their cause.

use databuild_proto::{FailureCause, PartitionEvent, PartitionStatus};

use crate::common::OWNER_LOST;

/// Fills in the cause of a FAILED event that has none, from its reason text.
pub(crate) fn fill_legacy_cause(e: &mut PartitionEvent) {
    if e.status == PartitionStatus::PartitionFailed as i32
        && e.failure_cause == FailureCause::Unknown as i32
    {
        e.failure_cause = legacy_cause(&e.failure_reason) as i32;
    }
}

/// The cause of a FAILED event written before causes were recorded, from its
/// `failure_reason` as databuild worded it then. Unrecognised text is
/// [`FailureCause::Unknown`].
pub fn legacy_cause(reason: &str) -> FailureCause {
    if reason == OWNER_LOST {
        return FailureCause::OwnerRunLost;
    }
    if reason.starts_with("upstream partition `") {
        return FailureCause::UpstreamFailed;
    }
    if reason.starts_with("input `") && reason.ends_with("` is not available") {
        return FailureCause::InputMissing;
    }
    if reason.starts_with("cancelled") {
        return FailureCause::Cancelled;
    }
    if reason.starts_with("analysis failed: ") {
        return FailureCause::AnalysisFailed;
    }
    // "job `<label>` failed[ after N attempts]: <how it ended> (job run `<id>`)"
    let Some(rest) = reason.strip_prefix("job `") else {
        return FailureCause::Unknown;
    };
    let Some((_, how)) = rest.split_once(": ") else {
        return FailureCause::Unknown;
    };
    job_end_cause(how)
}

/// The cause of a job run that ended with `how` (the words the executors wrote).
fn job_end_cause(how: &str) -> FailureCause {
    const BY_PREFIX: &[(&str, FailureCause)] = &[
        ("timed out after ", FailureCause::Timeout),
        ("timeout: ", FailureCause::Timeout),
        ("out of memory: ", FailureCause::OutOfMemory),
        ("node failure: ", FailureCause::NodeFailure),
        ("cancelled by Slurm: ", FailureCause::ClusterStopped),
        ("preempted: ", FailureCause::ClusterStopped),
        ("deadline: ", FailureCause::ClusterStopped),
        ("stopped watching slurm job ", FailureCause::ClusterStopped),
        ("cancelled", FailureCause::Cancelled),
        ("not started", FailureCause::NotStarted),
    ];
    BY_PREFIX
        .iter()
        .find(|(prefix, _)| how.starts_with(prefix))
        .map_or(FailureCause::JobFailed, |&(_, cause)| cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_reasons_map_to_causes() {
        let cases = [
            (OWNER_LOST, FailureCause::OwnerRunLost),
            (
                "upstream partition `up/1` failed (job `up`)",
                FailureCause::UpstreamFailed,
            ),
            (
                "upstream partition `up/1` failed (job `up`, built by another graph run)",
                FailureCause::UpstreamFailed,
            ),
            ("input `raw/1` is not available", FailureCause::InputMissing),
            ("cancelled (interrupted)", FailureCause::Cancelled),
            (
                "cancelled: --fail-fast after job `a` failed",
                FailureCause::Cancelled,
            ),
            (
                "analysis failed: no job produces `x/1`",
                FailureCause::AnalysisFailed,
            ),
            (
                "job `up` failed: exit code 3, stderr ends with \"boom\" (job run `r`)",
                FailureCause::JobFailed,
            ),
            (
                "job `up` failed after 3 attempts: exit code 3 (job run `r`)",
                FailureCause::JobFailed,
            ),
            (
                "job `hang` failed: timed out after 1s (job run `r`)",
                FailureCause::Timeout,
            ),
            (
                "job `hang` failed: cancelled (interrupted) (job run `r`)",
                FailureCause::Cancelled,
            ),
            (
                "job `s` failed: timeout: Slurm stopped slurm job 7 at its time limit (job run `r`)",
                FailureCause::Timeout,
            ),
            (
                "job `s` failed: out of memory: Slurm stopped slurm job 7 at its memory limit (job run `r`)",
                FailureCause::OutOfMemory,
            ),
            (
                "job `s` failed: node failure: the node of slurm job 7 failed (job run `r`)",
                FailureCause::NodeFailure,
            ),
            (
                "job `s` failed: cancelled by Slurm: slurm job 7 was cancelled outside databuild (job run `r`)",
                FailureCause::ClusterStopped,
            ),
            (
                "job `s` failed: preempted: Slurm preempted slurm job 7 (job run `r`)",
                FailureCause::ClusterStopped,
            ),
            ("job `a` failed: not started (job run `r`)", FailureCause::NotStarted),
            ("something else", FailureCause::Unknown),
        ];
        for (reason, cause) in cases {
            assert_eq!(legacy_cause(reason), cause, "{reason}");
        }
    }

    #[test]
    fn only_failed_events_without_a_cause_are_filled() {
        let mut e = PartitionEvent {
            status: PartitionStatus::PartitionFailed as i32,
            failure_reason: OWNER_LOST.into(),
            ..Default::default()
        };
        fill_legacy_cause(&mut e);
        assert_eq!(e.failure_cause, FailureCause::OwnerRunLost as i32);

        let mut recorded = PartitionEvent {
            status: PartitionStatus::PartitionFailed as i32,
            failure_reason: OWNER_LOST.into(),
            failure_cause: FailureCause::Cancelled as i32,
            ..Default::default()
        };
        fill_legacy_cause(&mut recorded);
        assert_eq!(recorded.failure_cause, FailureCause::Cancelled as i32);

        let mut stale = PartitionEvent {
            status: PartitionStatus::PartitionStale as i32,
            failure_reason: "invalidated: by hand".into(),
            ..Default::default()
        };
        fill_legacy_cause(&mut stale);
        assert_eq!(stale.failure_cause, FailureCause::Unknown as i32);
    }
}
