//! Event constructors and small assertions shared by the cases.

use databuild_bel::{BelError, Event, EventLog, EventRead, LoggedEvent};
use databuild_proto::{
    GraphEvent, GraphLabel, JobEvent, JobGraphRunEvent, JobGraphRunStatus, JobLabel, JobRunStatus,
    PartitionEvent, PartitionRef, PartitionStatus,
};

pub fn graph(run_id: &str, status: JobGraphRunStatus) -> Event {
    Event::Run(JobGraphRunEvent {
        graph_event: Some(GraphEvent {
            job_graph_run_id: run_id.into(),
            status: status as i32,
            label: Some(GraphLabel {
                label: "test".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

pub fn job(run_id: &str, job_run_id: &str, status: JobRunStatus) -> Event {
    Event::Run(JobGraphRunEvent {
        job_event: Some(JobEvent {
            job_graph_run_id: run_id.into(),
            job_run_id: job_run_id.into(),
            status: status as i32,
            job_key: format!("key-{job_run_id}"),
            label: Some(JobLabel::new("make")),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A partition event at `ts` microseconds (0: now).
pub fn partition(r: &str, status: PartitionStatus, run_id: &str, ts: i64) -> Event {
    Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(r)),
        status: status as i32,
        job_graph_run_id: run_id.into(),
        timestamp: (ts != 0).then(|| databuild_proto::timestamp_from_micros(ts)),
        ..Default::default()
    })
}

/// A partition event of job run `job_run_id`, built from `upstream`.
pub fn built(
    r: &str,
    status: PartitionStatus,
    run_id: &str,
    job_run_id: &str,
    upstream: &[&str],
) -> Event {
    Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(r)),
        status: status as i32,
        job_graph_run_id: run_id.into(),
        job_run_id: job_run_id.into(),
        upstream_deps: upstream.iter().map(|u| PartitionRef::new(*u)).collect(),
        ..Default::default()
    })
}

/// Builds `r` from `upstream` in a new run `run_id` (started and finished here).
pub async fn build(bel: &dyn EventLog, run_id: &str, r: &str, upstream: &[&str]) {
    use PartitionStatus::*;
    let jr = format!("{run_id}-{r}");
    bel.append(vec![
        graph(run_id, JobGraphRunStatus::GraphStarted),
        partition(r, PartitionScheduled, run_id, 0),
        job(run_id, &jr, JobRunStatus::JobScheduled),
        job(run_id, &jr, JobRunStatus::JobRunning),
        built(r, PartitionBuilding, run_id, &jr, upstream),
        built(r, PartitionAvailable, run_id, &jr, upstream),
        job(run_id, &jr, JobRunStatus::JobSuccess),
        graph(run_id, JobGraphRunStatus::GraphAnalyzed),
        graph(run_id, JobGraphRunStatus::GraphSuccess),
    ])
    .await
    .unwrap_or_else(|e| panic!("building {r}: {e}"));
}

pub async fn event_count(bel: &dyn EventRead) -> usize {
    bel.events_after(0, 0).await.unwrap().len()
}

/// Appends `events`, expecting an invalid transition whose message contains `want`, and
/// checks that nothing was written.
pub async fn assert_rejected(bel: &dyn EventLog, events: Vec<Event>, want: &str) {
    let before = event_count(bel).await;
    let err = bel.append(events).await.unwrap_err();
    assert!(
        matches!(err, BelError::InvalidTransition(_)),
        "not an invalid transition: {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(want), "{msg}");
    assert_eq!(
        event_count(bel).await,
        before,
        "the log changed after: {msg}"
    );
}

/// The partition event of a logged event.
pub fn partition_event(e: &LoggedEvent) -> &PartitionEvent {
    match &e.event {
        Event::Partition(p) => p,
        other => panic!("not a partition event: {other:?}"),
    }
}

/// `(ref, status, run)` of logged partition events.
pub fn summary(events: &[LoggedEvent]) -> Vec<(String, PartitionStatus, String)> {
    events
        .iter()
        .map(|e| {
            let p = partition_event(e);
            (
                p.partition_ref.as_ref().unwrap().str.clone(),
                PartitionStatus::try_from(p.status).unwrap(),
                p.job_graph_run_id.clone(),
            )
        })
        .collect()
}

pub fn ev(r: &str, s: PartitionStatus, run: &str) -> (String, PartitionStatus, String) {
    (r.to_string(), s, run.to_string())
}

/// The latest status of `r`.
pub async fn status(bel: &dyn EventRead, r: &str) -> Option<PartitionStatus> {
    bel.partitions(&[r.to_string()])
        .await
        .unwrap()
        .first()
        .map(|p| p.status)
}

/// `event` with its timestamp set to `ts` microseconds.
pub fn at(mut event: Event, ts: i64) -> Event {
    let t = Some(databuild_proto::timestamp_from_micros(ts));
    match &mut event {
        Event::Run(r) => r.timestamp = t,
        Event::Partition(p) => p.timestamp = t,
        Event::Want(w) => w.timestamp = t,
        Event::Backfill(b) => b.timestamp = t,
    }
    event
}
