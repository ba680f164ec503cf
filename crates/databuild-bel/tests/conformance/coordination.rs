//! Coordination: claims and delegation, leases and lost runs, and many writers at once.

use std::collections::BTreeMap;

use databuild_bel::{BelError, ClaimGroup, ClaimOutcome, Event, Owner, ReclaimedRun};
use databuild_proto::{JobGraphRunStatus, JobRunStatus, PartitionStatus};

use crate::{backend::Backend, support::*};

fn group(refs: &[&str]) -> ClaimGroup {
    ClaimGroup {
        refs: refs.iter().map(|r| r.to_string()).collect(),
        producing_job: "make".into(),
        upstream_deps: vec!["up".into()],
        skip_if_available: false,
    }
}

fn held(r: &str, owner: &str) -> ClaimOutcome {
    ClaimOutcome::HeldBy {
        partition_ref: r.into(),
        owner_run_id: owner.into(),
    }
}

pub async fn a_claimed_group_is_delegated_to_the_run_holding_it(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        graph("r2", JobGraphRunStatus::GraphStarted),
    ])
    .await
    .unwrap();
    let got = bel
        .claim("r1", "c1", vec![group(&["a", "b"]), group(&["c"])])
        .await
        .unwrap();
    assert_eq!(got, [ClaimOutcome::Claimed, ClaimOutcome::Claimed]);
    let scheduled = bel.latest_partition_event("a").await.unwrap().unwrap();
    assert_eq!(scheduled.status(), PartitionScheduled);
    assert_eq!(scheduled.requesting_clients, ["c1"]);
    assert_eq!(scheduled.producing_job.unwrap().label, "make");
    assert_eq!(scheduled.upstream_deps[0].str, "up");

    // A group with one held ref is delegated whole: nothing of it is claimed.
    let before = event_count(bel).await;
    let skip_c = ClaimGroup {
        skip_if_available: true,
        ..group(&["c"])
    };
    let got = bel
        .claim("r2", "c2", vec![group(&["b", "d"]), group(&["e"]), skip_c])
        .await
        .unwrap();
    assert_eq!(
        got,
        [held("b", "r1"), ClaimOutcome::Claimed, held("c", "r1")]
    );
    assert_eq!(event_count(bel).await, before + 3);
    assert_eq!(status(bel, "d").await, None);
    let delegated = bel.partition_history("b").await.unwrap();
    let delegated = partition_event(delegated.last().unwrap());
    assert_eq!(delegated.status(), PartitionDelegated);
    assert_eq!(
        (
            delegated.job_graph_run_id.as_str(),
            delegated.delegated_to_run_id.as_str()
        ),
        ("r2", "r1")
    );
    assert_eq!(delegated.requesting_clients, ["c2"]);
    // DELEGATED is logged; the owner keeps the partition.
    let row = &bel.partitions(&["b".into()]).await.unwrap()[0];
    assert_eq!(
        (row.status, row.run_id.as_str()),
        (PartitionScheduled, "r1")
    );

    // Active builds: every claim, with everyone who asked; or those of some refs, in order.
    let active = bel.active_builds(&[]).await.unwrap();
    let summary: Vec<_> = active
        .iter()
        .map(|a| {
            (
                a.partition_ref.as_ref().unwrap().str.as_str(),
                a.job_graph_run_id.as_str(),
                a.requesting_clients.clone(),
            )
        })
        .collect();
    let clients = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            ("a", "r1", clients(&["c1"])),
            ("b", "r1", clients(&["c1", "c2"])),
            ("c", "r1", clients(&["c1", "c2"])),
            ("e", "r2", clients(&["c2"])),
        ]
    );
    let some = bel
        .active_builds(&["e".into(), "zz".into(), "a".into()])
        .await
        .unwrap();
    let refs: Vec<_> = some
        .iter()
        .map(|a| a.partition_ref.as_ref().unwrap().str.as_str())
        .collect();
    assert_eq!(refs, ["e", "a"]);

    // Once built, a partition is no longer an active build, and a claim that may skip
    // available partitions skips it.
    bel.append(vec![
        partition("a", PartitionBuilding, "r1", 0),
        partition("a", PartitionAvailable, "r1", 0),
    ])
    .await
    .unwrap();
    assert!(bel.active_builds(&["a".into()]).await.unwrap().is_empty());
    let skip_a = ClaimGroup {
        skip_if_available: true,
        ..group(&["a"])
    };
    assert_eq!(
        bel.claim("r2", "c2", vec![skip_a]).await.unwrap(),
        [ClaimOutcome::Available]
    );
    assert_eq!(
        bel.claim("r2", "c2", vec![group(&["a"])]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
}

pub async fn a_lost_run_of_this_host_is_reclaimed_only_once_its_jobs_are_stopped(b: &Backend) {
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let now = databuild_proto::timestamp_micros(&databuild_proto::now());
    let here = Owner {
        host: "this-host".into(),
        pid: 1,
    };
    bel.append(vec![graph("r1", JobGraphRunStatus::GraphStarted)])
        .await
        .unwrap();
    bel.claim("r1", "c1", vec![group(&["a"])]).await.unwrap();
    bel.heartbeat("r1", &here, now - 1_000_000).await.unwrap();
    // Lost, but its job processes may still run on this host: not reclaimed until the
    // caller says it stopped them.
    assert!(bel
        .reclaim_lost_runs(now, "this-host", &["other".into()])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        status(bel, "a").await,
        Some(PartitionStatus::PartitionScheduled)
    );
    let reclaimed = bel
        .reclaim_lost_runs(now, "this-host", &["r1".into()])
        .await
        .unwrap();
    assert_eq!(
        reclaimed,
        [ReclaimedRun {
            run_id: "r1".into(),
            partitions: vec!["a".into()],
        }]
    );
    assert_eq!(
        status(bel, "a").await,
        Some(PartitionStatus::PartitionFailed)
    );
}

pub async fn expired_leases_are_reclaimed_as_owner_run_lost(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let now = databuild_proto::timestamp_micros(&databuild_proto::now());
    let elsewhere = Owner {
        host: "elsewhere".into(),
        pid: 1,
    };
    bel.append(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        graph("r2", JobGraphRunStatus::GraphStarted),
    ])
    .await
    .unwrap();
    bel.claim("r1", "c1", vec![group(&["a", "b"])])
        .await
        .unwrap();
    bel.claim("r2", "c2", vec![group(&["c"])]).await.unwrap();
    bel.append(vec![
        job("r1", "j1", JobRunStatus::JobScheduled),
        built("a", PartitionBuilding, "r1", "j1", &[]),
    ])
    .await
    .unwrap();
    bel.heartbeat("r1", &elsewhere, now - 1_000_000)
        .await
        .unwrap();
    bel.heartbeat("r2", &elsewhere, now + 60_000_000)
        .await
        .unwrap();

    let reclaimed = bel.reclaim_lost_runs(now, "this-host", &[]).await.unwrap();
    assert_eq!(
        reclaimed,
        [ReclaimedRun {
            run_id: "r1".into(),
            partitions: vec!["a".into(), "b".into()],
        }]
    );
    for r in ["a", "b"] {
        let e = bel.latest_partition_event(r).await.unwrap().unwrap();
        assert_eq!(
            (
                e.status(),
                e.failure_cause(),
                e.failure_reason.as_str(),
                e.job_graph_run_id.as_str()
            ),
            (
                PartitionFailed,
                databuild_proto::FailureCause::OwnerRunLost,
                "owner run lost",
                "r1"
            )
        );
    }
    let j1 = bel.job_run("j1").await.unwrap().unwrap();
    assert_eq!(j1.status, JobRunStatus::JobFailed);
    let r1 = bel.run("r1").await.unwrap().unwrap();
    assert_eq!(r1.status, JobGraphRunStatus::GraphFailed);
    assert_eq!(r1.host.as_deref(), Some("elsewhere"));
    // The live run keeps its claim; nothing is left to reclaim.
    assert_eq!(
        bel.run("r2").await.unwrap().unwrap().status,
        JobGraphRunStatus::GraphStarted
    );
    assert_eq!(status(bel, "c").await, Some(PartitionScheduled));
    assert!(bel
        .reclaim_lost_runs(now, "this-host", &[])
        .await
        .unwrap()
        .is_empty());
    // The lost run's partitions can be claimed again; it takes no more events.
    assert_eq!(
        bel.claim("r2", "c2", vec![group(&["a"])]).await.unwrap(),
        [ClaimOutcome::Claimed]
    );
    assert_rejected(
        bel,
        vec![graph("r1", JobGraphRunStatus::GraphRunning)],
        "graph run `r1` cannot go from GRAPH_FAILED to GRAPH_RUNNING",
    )
    .await;
    let err = bel.heartbeat("nope", &elsewhere, now).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid transition: cannot renew the lease of unknown graph run `nope`"
    );
}

pub async fn concurrent_writers_claim_each_partition_exactly_once(b: &Backend) {
    const WRITERS: usize = 8;
    const REFS: usize = 12;
    let refs: Vec<String> = (0..REFS).map(|i| format!("p{i:02}")).collect();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        // Each writer has its own handle (its own connections), as another process would.
        let bel = b.open().await.unwrap();
        let refs = refs.clone();
        tasks.push(tokio::spawn(async move {
            let run_id = format!("w{w}");
            bel.append(vec![graph(&run_id, JobGraphRunStatus::GraphStarted)])
                .await
                .unwrap();
            let mut won = Vec::new();
            // Claims one at a time, each writer starting elsewhere, so they interleave.
            for k in 0..REFS {
                let r = &refs[(k + w * 5) % REFS];
                let out = bel
                    .claim(&run_id, &run_id, vec![group(&[r])])
                    .await
                    .unwrap();
                match &out[0] {
                    ClaimOutcome::Claimed => won.push(r.clone()),
                    ClaimOutcome::HeldBy { .. } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            // Then everyone races for one more partition with a plain SCHEDULED append.
            let direct = bel
                .append(vec![partition(
                    "last",
                    PartitionStatus::PartitionScheduled,
                    &run_id,
                    0,
                )])
                .await;
            match direct {
                Ok(_) => won.push("last".into()),
                Err(BelError::Claimed { .. }) => {}
                Err(e) => panic!("unexpected {e}"),
            }
            (run_id, won)
        }));
    }
    let mut winners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tasks {
        let (run_id, won) = t.await.unwrap();
        for r in won {
            winners.entry(r).or_default().push(run_id.clone());
        }
    }
    let bel = b.open().await.unwrap();
    let mut all = refs.clone();
    all.push("last".into());
    for r in &all {
        let w = winners.get(r).cloned().unwrap_or_default();
        assert_eq!(w.len(), 1, "{r} claimed by {w:?}");
        let row = &bel.partitions(std::slice::from_ref(r)).await.unwrap()[0];
        assert_eq!(row.run_id, w[0], "{r}");
    }
    // The log agrees: one SCHEDULED per partition, a DELEGATED for every other claim.
    let events = bel.events_after(0, 0).await.unwrap();
    assert!(events.windows(2).all(|e| e[0].seq < e[1].seq));
    let count = |s: PartitionStatus| {
        events
            .iter()
            .filter(|e| matches!(&e.event, Event::Partition(p) if p.status == s as i32))
            .count()
    };
    assert_eq!(count(PartitionStatus::PartitionScheduled), REFS + 1);
    assert_eq!(
        count(PartitionStatus::PartitionDelegated),
        REFS * (WRITERS - 1)
    );
}

/// PostgreSQL: a write whose row another write holds does not wait on that row (no
/// deadlock is possible); it runs again holding the write lock alone, after the other
/// write ends, and then succeeds. A write on another row is not held up at all.
pub async fn a_write_on_a_row_another_write_holds_runs_again_alone(b: &Backend) {
    use std::time::Duration;
    let Some((mut client, driver)) = b.postgres_client().await else {
        return; // SQLite has one writer at a time.
    };
    let bel = b.open().await.unwrap();
    bel.append(vec![graph("r", JobGraphRunStatus::GraphStarted)])
        .await
        .unwrap();
    // Another writer, as databuild's shared-mode writes lock: the write lock shared, then
    // partition `p` (class 1).
    let other = client.transaction().await.unwrap();
    other
        .execute(
            "SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock(1, hashtext('p'))",
            &[&0x6461_7461_6275_696c_i64],
        )
        .await
        .unwrap();

    // A write on another partition goes through while the other writer is open.
    tokio::time::timeout(
        Duration::from_secs(20),
        bel.append(vec![partition(
            "q",
            PartitionStatus::PartitionScheduled,
            "r",
            0,
        )]),
    )
    .await
    .expect("a write on another row is not held up")
    .unwrap();

    // A write on `p` is held until the other writer ends.
    let mut held = tokio::spawn({
        let bel = bel.clone();
        async move {
            bel.append(vec![partition(
                "p",
                PartitionStatus::PartitionScheduled,
                "r",
                0,
            )])
            .await
        }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut held)
            .await
            .is_err(),
        "the write on `p` did not wait for the writer holding it"
    );
    other.rollback().await.unwrap();
    drop(client);
    let _ = driver.await;
    let logged = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the write on `p` ends once the other writer has")
        .unwrap()
        .unwrap();
    assert_eq!(
        summary(&logged),
        [ev("p", PartitionStatus::PartitionScheduled, "r")]
    );
    assert_eq!(
        status(bel.as_ref(), "p").await,
        Some(PartitionStatus::PartitionScheduled)
    );
}
