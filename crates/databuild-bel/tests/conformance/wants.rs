//! Wants: created once per id (so a schedule tick recorded twice is refused), folded into
//! the `wants` view, with their events readable by want; backfills and their wants.

use databuild_bel::{BelError, Event, EventRead, WantFilter};
use databuild_proto::{BackfillEvent, BackfillStatus, PartitionRef, WantEvent, WantStatus};

use crate::{backend::Backend, support::*};

fn want(id: &str, r: &str, status: WantStatus) -> Event {
    Event::Want(WantEvent {
        want_id: id.into(),
        status: status as i32,
        partition_ref: Some(PartitionRef { str: r.into() }),
        ..Default::default()
    })
}

fn scheduled(id: &str, r: &str, schedule: &str, tick: i64) -> Event {
    let Event::Want(mut w) = want(id, r, WantStatus::WantActive) else {
        unreachable!()
    };
    w.schedule = schedule.into();
    w.tick = Some(databuild_proto::timestamp_from_micros(tick));
    w.sla_deadline = Some(databuild_proto::timestamp_from_micros(tick + 10));
    w.requesting_clients = vec!["alice".into(), "cron".into()];
    Event::Want(w)
}

async fn ids(bel: &dyn EventRead, statuses: Vec<WantStatus>) -> Vec<String> {
    bel.wants(&WantFilter {
        statuses,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_iter()
    .map(|w| w.want_id)
    .collect()
}

pub async fn wants_follow_their_events_and_a_tick_is_recorded_once(b: &Backend) {
    use WantStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append(vec![
        want("w1", "a/1", WantActive),
        scheduled("daily@100", "a/2", "daily", 100),
        want("w3", "a/3", WantActive),
    ])
    .await
    .unwrap();
    assert_eq!(bel.last_tick("daily").await.unwrap(), Some(100));
    assert_eq!(bel.last_tick("hourly").await.unwrap(), None);

    // A second creation of one id (another reconciler firing the same tick) is refused
    // as a want-state error, and the whole batch with it.
    let before = event_count(bel).await;
    let err = bel
        .append(vec![
            want("w4", "a/4", WantActive),
            scheduled("daily@100", "a/2", "daily", 100),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BelError::WantState { want_id, current: WantActive, next: WantActive } if want_id == "daily@100"),
        "{err:?}"
    );
    assert_eq!(event_count(bel).await, before);
    assert!(bel.want("w4").await.unwrap().is_none());
    // Events of an unknown want are refused.
    let err = bel
        .append(vec![want("nope", "a/9", WantCancelled)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BelError::UnknownWant(id) if id == "nope"),
        "{err:?}"
    );
    // A want is about one partition.
    assert!(bel
        .append(vec![want("w1", "a/other", WantSatisfied)])
        .await
        .is_err());

    bel.append(vec![
        want("daily@100", "a/2", WantSlaMissed),
        want("w1", "a/1", WantSatisfied),
        want("w3", "a/3", WantCancelled),
    ])
    .await
    .unwrap();
    // The SLA is missed once; a satisfied want cannot miss it.
    for e in [
        want("daily@100", "a/2", WantSlaMissed),
        want("w1", "a/1", WantSlaMissed),
        want("w3", "a/3", WantSatisfied),
    ] {
        let err = bel.append(vec![e]).await.unwrap_err();
        assert!(matches!(err, BelError::WantState { .. }), "{err:?}");
    }
    assert_eq!(ids(bel, vec![WantActive]).await, ["daily@100"]);
    assert_eq!(
        ids(bel, vec![WantSatisfied, WantCancelled]).await,
        ["w1", "w3"]
    );
    assert_eq!(ids(bel, vec![]).await, ["daily@100", "w1", "w3"]);
    let d = bel.want("daily@100").await.unwrap().unwrap();
    assert_eq!(
        (
            d.partition_ref.as_str(),
            d.status,
            d.sla_missed,
            d.schedule.as_str()
        ),
        ("a/2", WantActive, true, "daily")
    );
    assert_eq!((d.tick_micros, d.sla_micros), (Some(100), Some(110)));
    assert_eq!(d.requesters, ["alice", "cron"]);
    // By partition, and paged by id.
    let of_a1 = bel
        .wants(&WantFilter {
            partition_ref: Some("a/1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_a1.len(), 1);
    let page = bel
        .wants(&WantFilter {
            after: Some("daily@100".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page[0].want_id, "w1");
    assert_eq!(page.len(), 1);
    // A want's events, in order, and nothing else.
    let events = bel.want_events("daily@100").await.unwrap();
    let statuses: Vec<i32> = events
        .iter()
        .map(|e| match &e.event {
            Event::Want(w) => w.status,
            _ => panic!("not a want event"),
        })
        .collect();
    assert_eq!(statuses, [WantActive as i32, WantSlaMissed as i32]);
    assert_eq!(d.seq, events[1].seq);
    // Want events are not partition history.
    assert!(bel.partition_history("a/2").await.unwrap().is_empty());
}

fn backfill(id: &str, status: BackfillStatus) -> Event {
    Event::Backfill(BackfillEvent {
        backfill_id: id.into(),
        status: status as i32,
        ..Default::default()
    })
}

pub async fn backfills_follow_their_events_and_count_their_wants(b: &Backend) {
    use BackfillStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let Event::Backfill(mut first) = backfill("bf1", BackfillRunning) else {
        unreachable!()
    };
    first.name = "year".into();
    first.refs = vec!["a/[1..3]".into()];
    first.total = 3;
    first.max_failures = 2;
    first.parallelism = 4;
    bel.append(vec![Event::Backfill(first)]).await.unwrap();
    let mut members = Vec::new();
    for i in 0..3u64 {
        let Event::Want(mut w) = want(
            &databuild_bel::backfill_want_id("bf1", i),
            &format!("a/{}", i + 1),
            WantStatus::WantActive,
        ) else {
            unreachable!()
        };
        w.backfill_id = "bf1".into();
        members.push(Event::Want(w));
    }
    bel.append(members.clone()).await.unwrap();
    // A chunk created twice is refused whole.
    let err = bel.append(members).await.unwrap_err();
    assert!(matches!(err, BelError::WantState { .. }), "{err:?}");
    bel.append(vec![want("bf1#000000001", "a/2", WantStatus::WantFailed)])
        .await
        .unwrap();
    bel.append(vec![want(
        "bf1#000000000",
        "a/1",
        WantStatus::WantSatisfied,
    )])
    .await
    .unwrap();
    let counts = bel.backfill_counts("bf1").await.unwrap();
    assert_eq!(
        counts,
        [
            (WantStatus::WantActive, 1),
            (WantStatus::WantSatisfied, 1),
            (WantStatus::WantFailed, 1)
        ]
    );
    let of_bf = bel
        .wants(&WantFilter {
            backfill: Some("bf1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_bf.len(), 3);
    assert!(of_bf.iter().all(|w| w.backfill == "bf1"));
    assert_eq!(of_bf[0].want_id, "bf1#000000000");
    // Its state machine: paused, resumed, completed, run again; cancelled is final.
    for s in [
        BackfillPaused,
        BackfillRunning,
        BackfillCompleted,
        BackfillRunning,
        BackfillCancelled,
    ] {
        bel.append(vec![backfill("bf1", s)]).await.unwrap();
    }
    for s in [BackfillRunning, BackfillPaused, BackfillCompleted] {
        let err = bel.append(vec![backfill("bf1", s)]).await.unwrap_err();
        assert!(matches!(err, BelError::BackfillState { .. }), "{err:?}");
    }
    let err = bel
        .append(vec![backfill("nope", BackfillPaused)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BelError::UnknownBackfill(id) if id == "nope"),
        "{err:?}"
    );
    let row = bel.backfill("bf1").await.unwrap().unwrap();
    assert_eq!(
        (
            row.name.as_str(),
            row.status,
            row.total,
            row.max_failures,
            row.parallelism
        ),
        ("year", BackfillCancelled, 3, 2, 4)
    );
    assert_eq!(row.refs, ["a/[1..3]"]);
    assert_eq!(bel.backfills().await.unwrap().len(), 1);
    assert_eq!(bel.run_events("bf1").await.unwrap().len(), 6);
}

fn expiring(id: &str, r: &str, expires: i64) -> Event {
    let Event::Want(mut w) = want(id, r, WantStatus::WantActive) else {
        unreachable!()
    };
    w.expires_at = Some(databuild_proto::timestamp_from_micros(expires));
    Event::Want(w)
}

/// The reads a reconciler holding only the wants that need it makes: wants of many refs,
/// live wants due to expire (soonest first, ended ones left out), and wants whose
/// partition went out of AVAILABLE.
pub async fn wants_by_refs_by_expiry_and_by_unavailable_partition(b: &Backend) {
    use WantStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    build(bel, "r1", "up/1", &[]).await;
    build(bel, "r2", "p/1", &["up/1"]).await;
    build(bel, "r3", "p/2", &[]).await;
    bel.append(vec![
        expiring("e30", "p/1", 30),
        expiring("e10", "p/2", 10),
        expiring("e20", "p/3", 20),
        expiring("e5", "p/4", 5),
        want("never", "p/1", WantActive),
    ])
    .await
    .unwrap();
    bel.append(vec![
        want("e30", "p/1", WantSatisfied),
        want("e10", "p/2", WantSatisfied),
        want("e5", "p/4", WantCancelled),
    ])
    .await
    .unwrap();

    // Many refs at once (more than one statement binds), by id; ANDed with the rest.
    let mut refs: Vec<String> = (0..1_200).map(|i| format!("x/{i}")).collect();
    refs.extend(["p/2".to_string(), "p/1".to_string()]);
    let of = |statuses: Vec<WantStatus>, refs: &[String]| WantFilter {
        statuses,
        refs: refs.to_vec(),
        ..Default::default()
    };
    let got: Vec<String> = bel
        .wants(&of(vec![], &refs))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.want_id)
        .collect();
    assert_eq!(got, ["e10", "e30", "never"]);
    let got = bel.wants(&of(vec![WantSatisfied], &refs)).await.unwrap();
    assert_eq!(
        got.iter().map(|w| w.want_id.as_str()).collect::<Vec<_>>(),
        ["e10", "e30"]
    );

    // Live wants due by 25: soonest first; the cancelled one (due at 5) is not live.
    let due = |by: i64, limit: usize| WantFilter {
        statuses: vec![WantActive, WantSatisfied],
        expires_by: Some(by),
        limit,
        ..Default::default()
    };
    let got: Vec<String> = bel
        .wants(&due(25, 0))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.want_id)
        .collect();
    assert_eq!(got, ["e10", "e20"]);
    let got = bel.wants(&due(100, 1)).await.unwrap();
    assert_eq!(got[0].want_id, "e10");
    assert_eq!(got.len(), 1);
    assert!(bel.wants(&due(9, 0)).await.unwrap().is_empty());

    // Nothing unavailable yet; invalidating `up/1` makes `p/1` STALE, and its live wants
    // (not those of never-built `p/3`) are found from the partitions.
    let unavailable = WantFilter {
        statuses: vec![WantActive, WantSatisfied],
        unavailable: true,
        ..Default::default()
    };
    assert!(bel.wants(&unavailable).await.unwrap().is_empty());
    bel.invalidate("up/1", "test").await.unwrap();
    let got: Vec<String> = bel
        .wants(&unavailable)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.want_id)
        .collect();
    assert_eq!(got, ["e30", "never"]);
}
