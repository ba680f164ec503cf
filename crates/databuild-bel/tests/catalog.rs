//! The event log as a library: invalid transitions are refused without writing anything,
//! partition event queries honour every field, query validation, and event log URLs.

use std::sync::Arc;

use databuild_bel::{query::PartitionQuery, BelError, Event, EventLog};
use databuild_proto::{
    GraphEvent, GraphLabel, JobGraphRunEvent, JobGraphRunStatus, OrderBy, PartitionEvent,
    PartitionEventQuery, PartitionRef, PartitionStatus, TimeRange,
};

fn open() -> (tempfile::TempDir, Arc<dyn EventLog>) {
    let dir = tempfile::tempdir().unwrap();
    let bel = databuild_bel::open("bel.sqlite", dir.path()).unwrap();
    (dir, bel)
}

fn graph(run_id: &str, status: JobGraphRunStatus) -> Event {
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

/// A partition event at `ts` microseconds (0: now).
fn partition(r: &str, status: PartitionStatus, run_id: &str, ts: i64) -> Event {
    Event::Partition(PartitionEvent {
        partition_ref: Some(PartitionRef::new(r)),
        status: status as i32,
        job_graph_run_id: run_id.into(),
        timestamp: (ts != 0).then(|| databuild_proto::timestamp_from_micros(ts)),
        ..Default::default()
    })
}

async fn event_count(bel: &dyn EventLog) -> usize {
    bel.events_after(0, 0).await.unwrap().len()
}

/// Appends `events`, expecting an invalid transition whose message contains `want`, and
/// checks that nothing was written.
async fn assert_rejected(bel: &dyn EventLog, events: Vec<Event>, want: &str) {
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

#[tokio::test]
async fn invalid_transitions_are_rejected_and_leave_the_log_unchanged() {
    use PartitionStatus::*;
    let (_dir, bel) = open();
    let bel = bel.as_ref();
    bel.append(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        graph("r2", JobGraphRunStatus::GraphStarted),
        partition("a", PartitionScheduled, "r1", 0),
    ])
    .await
    .unwrap();

    assert_rejected(
        bel,
        vec![partition("b", PartitionAvailable, "r1", 0)],
        "partition `b` cannot go from (no status) to PARTITION_AVAILABLE in graph run `r1`: AVAILABLE needs BUILDING by the same run",
    )
    .await;
    assert_rejected(
        bel,
        vec![partition("a", PartitionBuilding, "r2", 0)],
        "partition `a` cannot go from PARTITION_SCHEDULED to PARTITION_BUILDING in graph run `r2`: BUILDING needs SCHEDULED by the same run",
    )
    .await;
    assert_rejected(
        bel,
        vec![partition("a", PartitionAvailable, "r1", 0)],
        "AVAILABLE needs BUILDING by the same run",
    )
    .await;
    assert_rejected(
        bel,
        vec![partition("b", PartitionScheduled, "r9", 0)],
        "the event needs an unfinished graph run",
    )
    .await;
    // One bad event spoils its whole batch: the valid events before it are not written.
    assert_rejected(
        bel,
        vec![
            partition("a", PartitionBuilding, "r1", 0),
            partition("c", PartitionScheduled, "r2", 0),
            partition("a", PartitionStale, "r1", 0),
        ],
        "only an AVAILABLE partition can become STALE",
    )
    .await;
    let rows = bel.partitions(&["a".into(), "c".into()]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, PartitionScheduled);

    // Another run's claim is refused with the owner named.
    let before = event_count(bel).await;
    let err = bel
        .append(vec![partition("a", PartitionScheduled, "r2", 0)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, BelError::Claimed { ref owner_run_id, .. } if owner_run_id == "r1"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "partition `a` is already being built by graph run `r1`"
    );
    assert_eq!(event_count(bel).await, before);

    // Finished graph runs take no more events.
    bel.append(vec![graph("r2", JobGraphRunStatus::GraphFailed)])
        .await
        .unwrap();
    assert_rejected(
        bel,
        vec![graph("r2", JobGraphRunStatus::GraphRunning)],
        "graph run `r2` cannot go from GRAPH_FAILED to GRAPH_RUNNING",
    )
    .await;

    // The valid path still works after all that.
    bel.append(vec![
        partition("a", PartitionBuilding, "r1", 0),
        partition("a", PartitionAvailable, "r1", 0),
    ])
    .await
    .unwrap();
    let rows = bel.partitions(&["a".into()]).await.unwrap();
    assert_eq!(rows[0].status, PartitionAvailable);
}

/// `(ref, status, run)` of logged partition events.
fn summary(events: &[databuild_bel::LoggedEvent]) -> Vec<(String, PartitionStatus, String)> {
    events
        .iter()
        .map(|e| match &e.event {
            Event::Partition(p) => (
                p.partition_ref.as_ref().unwrap().str.clone(),
                PartitionStatus::try_from(p.status).unwrap(),
                p.job_graph_run_id.clone(),
            ),
            Event::Run(r) => panic!("not a partition event: {r:?}"),
        })
        .collect()
}

fn refs(rs: &[&str]) -> Vec<PartitionRef> {
    rs.iter().map(|r| PartitionRef::new(*r)).collect()
}

#[tokio::test]
async fn partition_event_queries_honour_every_field() {
    use PartitionStatus::*;
    let (_dir, bel) = open();
    let bel = bel.as_ref();
    // Times in microseconds: 1_000 apart, in append order.
    let t = |i: i64| 1_700_000_000_000_000 + i * 1_000;
    bel.append(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        graph("r2", JobGraphRunStatus::GraphStarted),
        partition("a", PartitionScheduled, "r1", t(1)),
        partition("b", PartitionScheduled, "r1", t(2)),
        partition("a", PartitionBuilding, "r1", t(3)),
        partition("b", PartitionBuilding, "r1", t(4)),
        partition("a", PartitionAvailable, "r1", t(5)),
        partition("b", PartitionFailed, "r1", t(6)),
        partition("c", PartitionScheduled, "r2", t(7)),
        partition("d", PartitionAvailable, "", t(8)),
    ])
    .await
    .unwrap();
    let query = |q: PartitionEventQuery| async move {
        let q = PartitionQuery::from_proto(&q).unwrap();
        let (events, total) = bel.query_partition_events(&q).await.unwrap();
        (summary(&events), total)
    };
    let ev = |r: &str, s: PartitionStatus, run: &str| (r.to_string(), s, run.to_string());

    // No filter: every partition event (graph events are not partition events), in order.
    let (all, total) = query(PartitionEventQuery::default()).await;
    assert_eq!(total, 8);
    assert_eq!(all.len(), 8);
    assert_eq!(all[0], ev("a", PartitionScheduled, "r1"));
    assert_eq!(all[7], ev("d", PartitionAvailable, ""));

    let (got, total) = query(PartitionEventQuery {
        partition_refs: refs(&["a"]),
        ..Default::default()
    })
    .await;
    assert_eq!(total, 3);
    assert_eq!(
        got,
        [
            ev("a", PartitionScheduled, "r1"),
            ev("a", PartitionBuilding, "r1"),
            ev("a", PartitionAvailable, "r1"),
        ]
    );

    let (got, total) = query(PartitionEventQuery {
        statuses: vec![PartitionAvailable as i32, PartitionFailed as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(total, 3);
    assert_eq!(
        got,
        [
            ev("a", PartitionAvailable, "r1"),
            ev("b", PartitionFailed, "r1"),
            ev("d", PartitionAvailable, ""),
        ]
    );

    let (got, total) = query(PartitionEventQuery {
        job_graph_run_ids: vec!["r2".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(total, 1);
    assert_eq!(got, [ev("c", PartitionScheduled, "r2")]);

    // Start inclusive, end exclusive.
    let (got, total) = query(PartitionEventQuery {
        time_range: Some(TimeRange {
            start: Some(databuild_proto::timestamp_from_micros(t(3))),
            end: Some(databuild_proto::timestamp_from_micros(t(5))),
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(total, 2);
    assert_eq!(
        got,
        [
            ev("a", PartitionBuilding, "r1"),
            ev("b", PartitionBuilding, "r1"),
        ]
    );

    // Limit and offset page through the matches; the total counts them all.
    let (got, total) = query(PartitionEventQuery {
        limit: 2,
        offset: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(total, 8);
    assert_eq!(
        got,
        [
            ev("b", PartitionBuilding, "r1"),
            ev("a", PartitionAvailable, "r1"),
        ]
    );
    let (got, total) = query(PartitionEventQuery {
        offset: 100,
        ..Default::default()
    })
    .await;
    assert_eq!((got.len(), total), (0, 8));

    let (got, _) = query(PartitionEventQuery {
        order_by: Some(OrderBy {
            field: "partition_ref".into(),
            ascending: false,
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(
        got,
        [
            ev("d", PartitionAvailable, ""),
            ev("c", PartitionScheduled, "r2"),
            ev("b", PartitionFailed, "r1"),
            ev("b", PartitionBuilding, "r1"),
            ev("b", PartitionScheduled, "r1"),
            ev("a", PartitionAvailable, "r1"),
            ev("a", PartitionBuilding, "r1"),
            ev("a", PartitionScheduled, "r1"),
        ]
    );

    let (got, _) = query(PartitionEventQuery {
        order_by: Some(OrderBy {
            field: "status".into(),
            ascending: true,
        }),
        statuses: vec![PartitionScheduled as i32, PartitionAvailable as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(
        got,
        [
            ev("a", PartitionScheduled, "r1"),
            ev("b", PartitionScheduled, "r1"),
            ev("c", PartitionScheduled, "r2"),
            ev("a", PartitionAvailable, "r1"),
            ev("d", PartitionAvailable, ""),
        ]
    );

    // Every field at once.
    let (got, total) = query(PartitionEventQuery {
        partition_refs: refs(&["a", "b", "c"]),
        statuses: vec![PartitionBuilding as i32, PartitionAvailable as i32],
        job_graph_run_ids: vec!["r1".into()],
        time_range: Some(TimeRange {
            start: Some(databuild_proto::timestamp_from_micros(t(2))),
            end: Some(databuild_proto::timestamp_from_micros(t(9))),
        }),
        limit: 2,
        offset: 1,
        order_by: Some(OrderBy {
            field: "partition_ref".into(),
            ascending: false,
        }),
    })
    .await;
    assert_eq!(total, 3);
    assert_eq!(
        got,
        [
            ev("a", PartitionAvailable, "r1"),
            ev("a", PartitionBuilding, "r1"),
        ]
    );
}

fn rejected(q: PartitionEventQuery) -> String {
    match PartitionQuery::from_proto(&q) {
        Err(e @ BelError::InvalidQuery(_)) => e.to_string(),
        other => panic!("not refused as an invalid query: {other:?}"),
    }
}

#[test]
fn partition_event_queries_that_cannot_be_answered_are_refused() {
    assert_eq!(
        rejected(PartitionEventQuery {
            limit: -1,
            ..Default::default()
        }),
        "invalid query: limit must not be negative (got -1)"
    );
    assert_eq!(
        rejected(PartitionEventQuery {
            offset: -3,
            ..Default::default()
        }),
        "invalid query: offset must not be negative (got -3)"
    );
    assert_eq!(
        rejected(PartitionEventQuery {
            time_range: Some(TimeRange {
                start: Some(databuild_proto::timestamp_from_micros(2_000_000)),
                end: Some(databuild_proto::timestamp_from_micros(1_000_000)),
            }),
            ..Default::default()
        }),
        "invalid query: time range start is after its end"
    );
    assert_eq!(
        rejected(PartitionEventQuery {
            order_by: Some(OrderBy {
                field: "colour".into(),
                ascending: true,
            }),
            ..Default::default()
        }),
        "invalid query: unknown order_by field `colour`; expected one of [`timestamp`, `partition_ref`, `status`]"
    );
    assert_eq!(
        rejected(PartitionEventQuery {
            statuses: vec![99],
            ..Default::default()
        }),
        "invalid query: unknown partition status 99"
    );
    let e = rejected(PartitionEventQuery {
        time_range: Some(TimeRange {
            start: Some(pbjson_types::Timestamp {
                seconds: 1,
                nanos: -5,
            }),
            end: None,
        }),
        ..Default::default()
    });
    assert!(e.contains("malformed timestamp"), "{e}");
}

#[test]
fn event_log_urls_take_a_busy_timeout_and_refuse_other_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let url = |q: &str| format!("sqlite://{}/bel.sqlite{q}", dir.path().display());
    databuild_bel::open(&url("?busy_timeout_ms=250"), dir.path()).unwrap();
    assert!(dir.path().join("bel.sqlite").exists());
    assert!(!dir.path().join("bel.sqlite?busy_timeout_ms=250").exists());

    let err = databuild_bel::open(&url("?busy_timeout_ms=soon"), dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("`busy_timeout_ms` must be a whole number of milliseconds (got `soon`)"),
        "{err}"
    );
    let err = databuild_bel::open(&url("?mode=ro"), dir.path()).unwrap_err();
    assert!(
        err.to_string().contains("unknown parameter `mode=ro`"),
        "{err}"
    );
}
