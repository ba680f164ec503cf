//! The event log as a library, apart from the conformance suite (which runs every backend):
//! query validation, and event log URLs.

use databuild_bel::{query::PartitionQuery, BelError};
use databuild_proto::{OrderBy, PartitionEventQuery, TimeRange};

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
            start: Some(databuild_proto::Timestamp {
                seconds: 1,
                nanos: -5,
            }),
            end: None,
        }),
        ..Default::default()
    });
    assert!(e.contains("malformed timestamp"), "{e}");
}

#[tokio::test]
async fn event_log_urls_take_a_busy_timeout_and_refuse_other_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let url = |q: &str| format!("sqlite://{}/bel.sqlite{q}", dir.path().display());
    databuild_bel::open(&url("?busy_timeout_ms=250"), dir.path())
        .await
        .unwrap();
    assert!(dir.path().join("bel.sqlite").exists());
    assert!(!dir.path().join("bel.sqlite?busy_timeout_ms=250").exists());

    let err = databuild_bel::open(&url("?busy_timeout_ms=soon"), dir.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("`busy_timeout_ms` must be a whole number of milliseconds (got `soon`)"),
        "{err}"
    );
    let err = databuild_bel::open(&url("?mode=ro"), dir.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown parameter `mode=ro`"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_backends_and_malformed_postgres_urls_are_refused_with_the_password_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let err = databuild_bel::open("mysql://u@h/db", dir.path())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "event log backend of `mysql://u@h/db` is not supported; use `sqlite:///path/to/bel.sqlite` or `postgres://user:password@host:port/database`"
    );
    let err = databuild_bel::open("postgres://u:secret@h:notaport/db", dir.path())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, BelError::InvalidPostgresUrl { .. }),
        "{err:?}"
    );
    assert!(!msg.contains("secret"), "{msg}");
    assert!(
        msg.starts_with("invalid event log URL `postgres://u:***@h:notaport/db`: "),
        "{msg}"
    );
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
