//! Failure causes: a FAILED event keeps the cause it was written with, and one written
//! before causes existed reads back with the cause its reason text implies.

use databuild_bel::Event;
use databuild_proto::{
    FailureCause, JobGraphRunStatus, PartitionEvent, PartitionRef, PartitionStatus,
};

use crate::{backend::Backend, support::*};

fn failed(r: &str, cause: FailureCause, reason: &str) -> Event {
    Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(r)),
        status: PartitionStatus::PartitionFailed as i32,
        job_graph_run_id: "r1".into(),
        failure_cause: cause as i32,
        failure_reason: reason.into(),
        ..Default::default()
    })
}

pub async fn failure_causes_are_kept_and_derived_for_events_without_one(b: &Backend) {
    let bel = b.open().await.unwrap();
    let mut events = vec![graph("r1", JobGraphRunStatus::GraphStarted)];
    let cases = [
        // Written with a cause: kept, whatever the words say.
        (
            "kept",
            FailureCause::Timeout,
            "owner run lost",
            FailureCause::Timeout,
        ),
        // Written without one (an old log): derived from the words.
        (
            "lost",
            FailureCause::Unknown,
            "owner run lost",
            FailureCause::OwnerRunLost,
        ),
        (
            "timeout",
            FailureCause::Unknown,
            "job `j` failed: timed out after 1s (job run `x`)",
            FailureCause::Timeout,
        ),
        (
            "down",
            FailureCause::Unknown,
            "upstream partition `up` failed (job `j`)",
            FailureCause::UpstreamFailed,
        ),
        (
            "odd",
            FailureCause::Unknown,
            "who knows",
            FailureCause::Unknown,
        ),
    ];
    for (r, written, reason, _) in cases {
        events.push(partition(r, PartitionStatus::PartitionRequested, "r1", 0));
        events.push(failed(r, written, reason));
    }
    events.push(graph("r1", JobGraphRunStatus::GraphFailed));
    bel.append(events).await.unwrap();

    for (r, _, _, read) in cases {
        let latest = bel.latest_partition_event(r).await.unwrap().unwrap();
        assert_eq!(latest.failure_cause(), read, "{r}");
        let history = bel.partition_history(r).await.unwrap();
        assert_eq!(
            partition_event(history.last().unwrap()).failure_cause(),
            read,
            "{r}"
        );
    }
    let all = bel.events_after(0, 1000).await.unwrap();
    let lost = all
        .iter()
        .filter_map(|e| match &e.event {
            Event::Partition(p) if p.partition_ref.as_ref().unwrap().str == "lost" => Some(p),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!(lost.failure_cause(), FailureCause::OwnerRunLost);
}
