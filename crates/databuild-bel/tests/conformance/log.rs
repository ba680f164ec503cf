//! The log itself: what an append stores, partition event queries, validation, reading in
//! order, waiting for new events, and schema versions.

use std::time::{Duration, Instant};

use databuild_bel::{query::PartitionQuery, BelError, Event};
use databuild_proto::{
    JobGraphRunStatus, JobRunStatus, OrderBy, PartitionEvent, PartitionEventQuery, PartitionRef,
    PartitionStatus, TimeRange,
};

use crate::{backend::Backend, support::*};

pub async fn appended_events_read_back_with_ids_times_and_run_sequences(b: &Backend) {
    let bel = b.open().await.unwrap();
    let given_ts = 1_700_000_000_123_456;
    let stored = bel
        .append(vec![
            graph("r1", JobGraphRunStatus::GraphStarted),
            Event::Partition(PartitionEvent {
                partition_event_id: "my-id".into(),
                partition_ref: Some(PartitionRef::new("a")),
                status: PartitionStatus::PartitionRequested as i32,
                job_graph_run_id: "r1".into(),
                requesting_clients: vec!["c1".into()],
                timestamp: Some(databuild_proto::timestamp_from_micros(given_ts)),
                ..Default::default()
            }),
            job("r1", "j1", JobRunStatus::JobScheduled),
            graph("r1", JobGraphRunStatus::GraphAnalyzed),
        ])
        .await
        .unwrap();
    assert_eq!(stored.len(), 4);
    assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq), "{stored:?}");
    // Ids and timestamps are filled in, or kept when given; graph and job events get
    // per-run sequence numbers in append order.
    let mut sequences = Vec::new();
    for e in &stored {
        match &e.event {
            Event::Run(r) => {
                assert_eq!(r.job_graph_run_event_id.len(), 36, "{r:?}");
                assert!(r.timestamp.is_some());
                if let Some(g) = &r.graph_event {
                    assert_eq!(g.job_graph_run_event_id, r.job_graph_run_event_id);
                    sequences.push(g.sequence);
                }
                if let Some(j) = &r.job_event {
                    assert_eq!(j.job_graph_run_event_id, r.job_graph_run_event_id);
                    sequences.push(j.sequence);
                }
            }
            Event::Partition(p) => {
                assert_eq!(p.partition_event_id, "my-id");
                assert_eq!(
                    databuild_proto::timestamp_micros(p.timestamp.as_ref().unwrap()),
                    given_ts
                );
            }
            other @ (Event::Want(_) | Event::Backfill(_)) => {
                panic!("only run and partition events were appended: {other:?}")
            }
        }
    }
    assert_eq!(sequences, [0, 1, 2]);
    // What is read back is what the append returned, through every read.
    assert_eq!(bel.events_after(0, 0).await.unwrap(), stored);
    assert_eq!(bel.run_events("r1").await.unwrap(), stored);
    assert_eq!(bel.job_run_events("j1").await.unwrap(), [stored[2].clone()]);
    assert_eq!(
        bel.partition_history("a").await.unwrap(),
        [stored[1].clone()]
    );
    // A second handle (another process) sees the same log.
    let other = b.open().await.unwrap();
    assert_eq!(other.events_after(0, 0).await.unwrap(), stored);
}

/// A writer that keeps nothing back (`append_or_return`) gets every event of a failed
/// write back, in order, with nothing of them in the log; written again, they are stored
/// once, and the run's sequence numbers have no gap where the failed write was.
pub async fn a_failed_write_gives_its_events_back_to_be_written_again(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append_or_return(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        partition("a", PartitionScheduled, "r1", 0),
    ])
    .await
    .unwrap();
    let before = event_count(bel).await;

    let given = vec![
        partition("b", PartitionScheduled, "r1", 0),
        job("r1", "j1", JobRunStatus::JobScheduled),
        partition("a", PartitionStale, "r1", 0),
    ];
    let (err, mut back) = bel.append_or_return(given.clone()).await.unwrap_err();
    assert!(matches!(err, BelError::InvalidTransition(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("only an AVAILABLE partition can become STALE"),
        "{err}"
    );
    assert_eq!(
        event_count(bel).await,
        before,
        "a failed write wrote nothing"
    );
    assert!(bel.job_run("j1").await.unwrap().is_none());
    assert_eq!(back.len(), given.len());
    for (got, gave) in back.iter().zip(&given) {
        assert_eq!(got.run_id(), gave.run_id());
        assert_eq!(event_subject(got), event_subject(gave), "{got:?}");
    }

    back.pop();
    bel.append_or_return(back).await.unwrap();
    let stored = bel.events_after(0, 0).await.unwrap();
    assert_eq!(stored.len(), before + 2);
    let rows = bel.partitions(&["b".into()]).await.unwrap();
    assert_eq!(rows[0].status, PartitionScheduled);
    assert!(bel.job_run("j1").await.unwrap().is_some());
    let sequences: Vec<_> = stored
        .iter()
        .filter_map(|e| match &e.event {
            Event::Run(r) => r
                .graph_event
                .as_ref()
                .map(|g| g.sequence)
                .or(r.job_event.as_ref().map(|j| j.sequence)),
            _ => None,
        })
        .collect();
    assert_eq!(sequences, [0, 1]);
}

/// What an event is about: its partition and status, or its job run and status.
fn event_subject(e: &Event) -> (String, i32) {
    match e {
        Event::Partition(p) => (p.partition_ref.as_ref().unwrap().str.clone(), p.status),
        Event::Run(r) => {
            let j = r.job_event.as_ref().unwrap();
            (j.job_run_id.clone(), j.status)
        }
        other => panic!("only run and partition events here: {other:?}"),
    }
}

pub async fn partition_event_queries_honour_every_field(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
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
    let refs = |rs: &[&str]| rs.iter().map(|r| PartitionRef::new(*r)).collect::<Vec<_>>();

    // No filter: every partition event (graph events are not partition events), in order.
    let (all, total) = query(PartitionEventQuery::default()).await;
    assert_eq!((all.len(), total), (8, 8));
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
    assert_eq!((got, total), (vec![ev("c", PartitionScheduled, "r2")], 1));

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
            ev("b", PartitionBuilding, "r1")
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
            ev("a", PartitionAvailable, "r1")
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
    let order: Vec<_> = got.iter().map(|(r, s, _)| (r.as_str(), *s)).collect();
    assert_eq!(
        order,
        [
            ("d", PartitionAvailable),
            ("c", PartitionScheduled),
            ("b", PartitionFailed),
            ("b", PartitionBuilding),
            ("b", PartitionScheduled),
            ("a", PartitionAvailable),
            ("a", PartitionBuilding),
            ("a", PartitionScheduled),
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
            ev("a", PartitionBuilding, "r1")
        ]
    );
}

pub async fn invalid_transitions_are_rejected_and_leave_the_log_unchanged(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
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
        vec![partition("b", PartitionScheduled, "r9", 0)],
        "the event needs an unfinished graph run",
    )
    .await;
    assert_rejected(
        bel,
        vec![job("r9", "j1", JobRunStatus::JobScheduled)],
        "job run `j1` belongs to graph run `r9`, which is not running",
    )
    .await;
    assert_rejected(
        bel,
        vec![
            job("r1", "j1", JobRunStatus::JobScheduled),
            job("r1", "j1", JobRunStatus::JobSuccess),
        ],
        "job run `j1` cannot go from JOB_SCHEDULED to JOB_SUCCESS",
    )
    .await;
    // One bad event spoils its whole batch: the valid events before it are not written,
    // and neither are their effects on the derived views.
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
    assert!(bel.job_run("j1").await.unwrap().is_none());

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

    // Malformed events are refused as such.
    let err = bel
        .append(vec![partition("", PartitionRequested, "r1", 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, BelError::InvalidEvent(_)), "{err:?}");

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
    assert_eq!(status(bel, "a").await, Some(PartitionAvailable));
}

pub async fn events_after_pages_through_the_log_in_order(b: &Backend) {
    let one = b.open().await.unwrap();
    let two = b.open().await.unwrap();
    let mut appended = Vec::new();
    for i in 0..6 {
        let bel = if i % 2 == 0 { &one } else { &two };
        let r = format!("p{i}");
        appended.extend(
            bel.append(vec![
                partition(&r, PartitionStatus::PartitionRequested, "", 0),
                partition(&r, PartitionStatus::PartitionAvailable, "", 0),
            ])
            .await
            .unwrap(),
        );
    }
    assert!(appended.windows(2).all(|w| w[0].seq < w[1].seq));
    let all = one.events_after(0, 0).await.unwrap();
    assert_eq!(all, appended);
    let first = one.events_after(0, 5).await.unwrap();
    assert_eq!(first, appended[..5]);
    let rest = two.events_after(first[4].seq, 0).await.unwrap();
    assert_eq!(rest, appended[5..]);
    let last = appended.last().unwrap().seq;
    assert!(one.events_after(last, 0).await.unwrap().is_empty());
}

pub async fn waiting_for_events_wakes_on_an_append_by_another_handle(b: &Backend) {
    let reader = b.open().await.unwrap();
    let writer = b.open().await.unwrap();
    writer
        .append(vec![partition(
            "x",
            PartitionStatus::PartitionAvailable,
            "",
            0,
        )])
        .await
        .unwrap();
    let last = reader.events_after(0, 0).await.unwrap().last().unwrap().seq;

    // Events already after the position: no wait.
    let t = Instant::now();
    reader
        .wait_for_events(last - 1, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Nothing new: returns at the timeout.
    let t = Instant::now();
    reader
        .wait_for_events(last, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));

    // An append by another handle wakes the waiter long before its timeout.
    let waiter = tokio::spawn({
        let reader = reader.clone();
        async move {
            let t = Instant::now();
            reader
                .wait_for_events(last, Duration::from_secs(20))
                .await
                .unwrap();
            t.elapsed()
        }
    });
    writer
        .append(vec![partition(
            "y",
            PartitionStatus::PartitionAvailable,
            "",
            0,
        )])
        .await
        .unwrap();
    let waited = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
    let new = reader.events_after(last, 0).await.unwrap();
    assert_eq!(
        summary(&new),
        [ev("y", PartitionStatus::PartitionAvailable, "")]
    );
}

pub async fn a_log_written_by_a_newer_schema_is_refused(b: &Backend) {
    let bel = b.open().await.unwrap();
    bel.append(vec![partition(
        "x",
        PartitionStatus::PartitionAvailable,
        "",
        0,
    )])
    .await
    .unwrap();
    drop(bel);
    b.set_schema_version(99).await;
    let err = b.open().await.unwrap_err();
    let BelError::NewerSchema {
        found: 99,
        supported,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    // Each backend versions its schema apart.
    assert!(
        [
            databuild_bel::SCHEMA_VERSION,
            databuild_bel::POSTGRES_SCHEMA_VERSION
        ]
        .contains(&supported),
        "{supported}"
    );
    let msg = err.to_string();
    assert!(
        msg.ends_with(&format!(
            "was written by a newer databuild (event log schema version 99, this databuild reads up to {supported}); upgrade databuild to read it"
        )),
        "{msg}"
    );
}

pub async fn a_version_1_log_is_upgraded_and_reads_as_no_version_no_digest(b: &Backend) {
    let bel = b.open().await.unwrap();
    build(bel.as_ref(), "r1", "a", &[]).await;
    drop(bel);
    // What a version-1 log looks like: no `builds`.
    b.execute("DROP TABLE builds").await;
    b.set_schema_version(1).await;
    let bel = b.open().await.unwrap();
    let refs = ["a".to_string()];
    assert_eq!(bel.builds(&refs).await.unwrap(), [None]);
    assert!(bel
        .built_by_other_version(&[("j".into(), "2".into())])
        .await
        .unwrap()
        .is_empty());
    build(bel.as_ref(), "r2", "a", &[]).await;
    assert!(
        bel.builds(&refs).await.unwrap()[0].is_some(),
        "recorded once upgraded"
    );
}
