//! The derived views: latest status, graph runs, job runs, lineage, and staleness, which
//! follows rebuilds and invalidation downstream in the same transaction.

use databuild_bel::{BelError, EventRead, PartitionFilter, RunFilter, StatusCount};
use databuild_proto::{JobGraphRunStatus, JobRunStatus, PartitionStatus};

use crate::{backend::Backend, support::*};

/// The refs `bel` lists for `filter`, in order.
async fn listed(bel: &dyn EventRead, filter: PartitionFilter) -> Vec<String> {
    bel.list_partitions(&filter)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.partition_ref)
        .collect()
}

pub async fn latest_status_runs_and_job_runs_follow_the_log(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let t = |i: i64| 1_700_000_000_000_000 + i * 1_000_000;
    bel.append(vec![at(partition("x", PartitionAvailable, "", 0), t(0))])
        .await
        .unwrap();
    let stored = bel
        .append(vec![
            at(graph("r1", JobGraphRunStatus::GraphStarted), t(1)),
            at(partition("a", PartitionScheduled, "r1", 0), t(2)),
            at(job("r1", "j1", JobRunStatus::JobScheduled), t(3)),
            at(job("r1", "j1", JobRunStatus::JobRunning), t(4)),
            at(built("a", PartitionBuilding, "r1", "j1", &["x"]), t(5)),
            at(built("a", PartitionAvailable, "r1", "j1", &["x"]), t(6)),
            at(job("r1", "j1", JobRunStatus::JobSuccess), t(7)),
            at(graph("r1", JobGraphRunStatus::GraphAnalyzed), t(8)),
            at(graph("r1", JobGraphRunStatus::GraphSuccess), t(9)),
            at(graph("r2", JobGraphRunStatus::GraphStarted), t(10)),
            at(partition("b", PartitionScheduled, "r2", 0), t(11)),
        ])
        .await
        .unwrap();

    // Latest status: in the order asked, unknown refs left out.
    let rows = bel
        .partitions(&["a".into(), "nope".into(), "x".into()])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let a = &rows[0];
    assert_eq!(
        (a.partition_ref.as_str(), a.status, a.run_id.as_str()),
        ("a", PartitionAvailable, "r1")
    );
    assert_eq!(a.job_run_id, "j1");
    assert_eq!((a.seq, a.updated_micros), (stored[5].seq, t(6)));
    assert_eq!(rows[1].partition_ref, "x");
    // Statuses alone: one per ref asked, in that order, repeats included.
    let statuses = bel
        .statuses(&[
            "x".into(),
            "nope".into(),
            "b".into(),
            "a".into(),
            "x".into(),
        ])
        .await
        .unwrap();
    assert_eq!(
        statuses,
        [
            Some(PartitionAvailable),
            None,
            Some(PartitionScheduled),
            Some(PartitionAvailable),
            Some(PartitionAvailable)
        ]
    );
    assert!(bel.statuses(&[]).await.unwrap().is_empty());
    let latest = bel.latest_partition_event("a").await.unwrap().unwrap();
    assert_eq!(&latest, partition_event(&stored[5]));
    assert!(bel.latest_partition_event("nope").await.unwrap().is_none());

    let list = |statuses: Vec<PartitionStatus>, prefix: Option<&str>, limit, offset| {
        let filter = PartitionFilter {
            statuses,
            prefix: prefix.map(str::to_string),
            limit,
            offset,
            ..Default::default()
        };
        listed(bel, filter)
    };
    assert_eq!(list(vec![], None, 0, 0).await, ["a", "b", "x"]);
    assert_eq!(list(vec![PartitionAvailable], None, 0, 0).await, ["a", "x"]);
    assert_eq!(list(vec![PartitionScheduled], None, 0, 0).await, ["b"]);
    assert_eq!(list(vec![], Some("x"), 0, 0).await, ["x"]);
    assert_eq!(list(vec![], None, 1, 1).await, ["b"]);

    // Graph runs: newest first, with status, label, times and the owner once known.
    let r1 = bel.run("r1").await.unwrap().unwrap();
    assert_eq!(
        (
            r1.label.as_str(),
            r1.status,
            r1.started_micros,
            r1.updated_micros
        ),
        ("test", JobGraphRunStatus::GraphSuccess, t(1), t(9))
    );
    assert!(r1.is_finished());
    assert_eq!((r1.host, r1.pid, r1.lease_until_micros), (None, None, None));
    let owner = databuild_bel::Owner {
        host: "h1".into(),
        pid: 42,
    };
    bel.heartbeat("r2", &owner, t(100)).await.unwrap();
    let r2 = bel.run("r2").await.unwrap().unwrap();
    assert_eq!(
        (r2.host.as_deref(), r2.pid, r2.lease_until_micros),
        (Some("h1"), Some(42), Some(t(100)))
    );
    assert!(bel.run("nope").await.unwrap().is_none());
    let runs = |filter: RunFilter| async move {
        bel.list_runs(&filter)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(runs(RunFilter::default()).await, ["r2", "r1"]);
    assert_eq!(
        runs(RunFilter {
            statuses: vec![JobGraphRunStatus::GraphSuccess],
            ..Default::default()
        })
        .await,
        ["r1"]
    );
    assert_eq!(
        runs(RunFilter {
            label: Some("other".into()),
            ..Default::default()
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        runs(RunFilter {
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .await,
        ["r1"]
    );
    // Start times: `started_from` inclusive, `started_before` exclusive.
    assert_eq!(
        runs(RunFilter {
            started_from: Some(t(5)),
            ..Default::default()
        })
        .await,
        ["r2"]
    );
    assert_eq!(
        runs(RunFilter {
            started_from: Some(t(1)),
            started_before: Some(t(10)),
            ..Default::default()
        })
        .await,
        ["r1"]
    );
    assert_eq!(bel.run_events("r1").await.unwrap(), stored[..9]);

    // Job runs.
    let jobs = bel.job_runs("r1").await.unwrap();
    assert_eq!(jobs.len(), 1);
    let j1 = &jobs[0];
    assert_eq!(
        (
            j1.job_run_id.as_str(),
            j1.run_id.as_str(),
            j1.label.as_str()
        ),
        ("j1", "r1", "make")
    );
    assert_eq!(
        (
            j1.job_key.as_str(),
            j1.status,
            j1.scheduled_micros,
            j1.updated_micros
        ),
        ("key-j1", JobRunStatus::JobSuccess, t(3), t(7))
    );
    assert_eq!(bel.job_run("j1").await.unwrap().as_ref(), Some(j1));
    assert!(bel.job_run("nope").await.unwrap().is_none());

    // Lineage of the latest build, both ways.
    let pair = || ("x".to_string(), "a".to_string());
    assert_eq!(bel.lineage(&["a".into()], false).await.unwrap(), [pair()]);
    assert_eq!(bel.lineage(&["x".into()], true).await.unwrap(), [pair()]);
    assert!(bel.lineage(&["a".into()], true).await.unwrap().is_empty());
}

pub async fn partitions_list_by_pattern_and_page_by_key(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let refs = [
        "a/date=2025-01-01",
        "a/date=2025-01-02",
        "a/x?y[1]%_",
        "b/date=2025-01-01",
        "b/ünï cödé",
    ];
    bel.append(
        refs.iter()
            .map(|r| partition(r, PartitionAvailable, "", 0))
            .collect(),
    )
    .await
    .unwrap();
    bel.append(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        partition("c", PartitionScheduled, "r1", 0),
    ])
    .await
    .unwrap();
    let list = |pattern: &str, after: Option<&str>, limit: usize| {
        let filter = PartitionFilter {
            pattern: Some(pattern.to_string()),
            after: after.map(str::to_string),
            limit,
            ..Default::default()
        };
        listed(bel, filter)
    };
    assert_eq!(
        list("*/date=2025-01-01", None, 0).await,
        ["a/date=2025-01-01", "b/date=2025-01-01"]
    );
    assert_eq!(list("a/*", None, 2).await, &refs[..2]);
    assert_eq!(list("a/*", Some(refs[1]), 2).await, ["a/x?y[1]%_"]);
    // Characters that are wildcards in SQL match only themselves.
    assert_eq!(list("a/x?y[1]%_", None, 0).await, ["a/x?y[1]%_"]);
    assert!(list("a/x_y*", None, 0).await.is_empty());
    assert!(list("a/date=2025-01-0?", None, 0).await.is_empty());
    assert_eq!(list("b/ü*é", None, 0).await, ["b/ünï cödé"]);
    assert_eq!(
        list("*", Some("b/date=2025-01-01"), 0).await,
        ["b/ünï cödé", "c"]
    );
    // The whole ref must match.
    assert!(list("a/date", None, 0).await.is_empty());

    assert_eq!(
        bel.status_counts().await.unwrap(),
        [
            StatusCount {
                status: PartitionScheduled,
                count: 1
            },
            StatusCount {
                status: PartitionAvailable,
                count: 5
            }
        ]
    );
}

pub async fn recent_job_runs_are_newest_first_by_label(b: &Backend) {
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let t = |i: i64| 1_700_000_000_000_000 + i * 1_000_000;
    bel.append(vec![
        at(graph("r1", JobGraphRunStatus::GraphStarted), t(0)),
        at(job("r1", "j1", JobRunStatus::JobScheduled), t(1)),
        at(job("r1", "j2", JobRunStatus::JobScheduled), t(2)),
        at(job("r1", "j3", JobRunStatus::JobScheduled), t(3)),
    ])
    .await
    .unwrap();
    let ids = |rows: Vec<databuild_bel::JobRunRow>| {
        rows.into_iter().map(|r| r.job_run_id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(bel.recent_job_runs(None, 0).await.unwrap()),
        ["j3", "j2", "j1"]
    );
    assert_eq!(
        ids(bel.recent_job_runs(Some("make"), 2).await.unwrap()),
        ["j3", "j2"]
    );
    assert!(bel
        .recent_job_runs(Some("other"), 0)
        .await
        .unwrap()
        .is_empty());
}

/// `(status, failure reason)` of the latest event of `r`.
async fn why(bel: &dyn EventRead, r: &str) -> (PartitionStatus, String) {
    let e = bel.latest_partition_event(r).await.unwrap().unwrap();
    (e.status(), e.failure_reason)
}

pub async fn rebuilding_an_upstream_makes_its_dependents_stale(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append(vec![
        partition("x", PartitionAvailable, "", 0),
        partition("y", PartitionAvailable, "", 0),
    ])
    .await
    .unwrap();
    build(bel, "r1", "b", &["x"]).await;
    build(bel, "r2", "c", &["b"]).await;
    build(bel, "r3", "d", &["c"]).await;
    build(bel, "r4", "e", &["y"]).await;

    // x registered again: everything built from it, transitively, is STALE at once.
    let before = event_count(bel).await;
    bel.append(vec![partition("x", PartitionAvailable, "", 0)])
        .await
        .unwrap();
    assert_eq!(event_count(bel).await, before + 4);
    assert_eq!(
        why(bel, "b").await,
        (PartitionStale, "upstream `x` was registered again".into())
    );
    assert_eq!(
        why(bel, "c").await,
        (PartitionStale, "upstream `b` is stale".into())
    );
    assert_eq!(
        why(bel, "d").await,
        (PartitionStale, "upstream `c` is stale".into())
    );
    assert_eq!(status(bel, "e").await, Some(PartitionAvailable));
    let stale_c = bel.latest_partition_event("c").await.unwrap().unwrap();
    assert_eq!(stale_c.upstream_deps[0].str, "b");

    // A rebuild by a graph run names the run; dependents already STALE stay as they are.
    build(bel, "r5", "b", &["x"]).await;
    assert_eq!(status(bel, "c").await, Some(PartitionStale));
    build(bel, "r6", "c", &["b"]).await;
    build(bel, "r7", "b", &["x", "y"]).await;
    assert_eq!(
        why(bel, "c").await,
        (
            PartitionStale,
            "upstream `b` was rebuilt by graph run `r7`".into()
        )
    );
    // The lineage is that of the latest build.
    assert_eq!(
        bel.lineage(&["b".into()], false).await.unwrap(),
        [("x".into(), "b".into()), ("y".into(), "b".into())]
    );
    // y's rebuild now reaches b (and through it nothing AVAILABLE but e).
    bel.append(vec![partition("y", PartitionAvailable, "", 0)])
        .await
        .unwrap();
    assert_eq!(status(bel, "b").await, Some(PartitionStale));
    assert_eq!(status(bel, "e").await, Some(PartitionStale));
}

pub async fn invalidate_marks_a_partition_and_its_dependents_stale(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append(vec![partition("x", PartitionAvailable, "", 0)])
        .await
        .unwrap();
    build(bel, "r1", "b", &["x"]).await;
    build(bel, "r2", "c", &["b"]).await;

    let stale = bel.invalidate("x", "bad data").await.unwrap();
    assert_eq!(stale, ["x", "b", "c"]);
    assert_eq!(
        why(bel, "x").await,
        (PartitionStale, "invalidated: bad data".into())
    );
    assert_eq!(
        why(bel, "b").await,
        (PartitionStale, "upstream `x` is stale".into())
    );
    assert_eq!(
        why(bel, "c").await,
        (PartitionStale, "upstream `b` is stale".into())
    );

    let before = event_count(bel).await;
    let err = bel.invalidate("x", "again").await.unwrap_err();
    assert!(matches!(err, BelError::InvalidTransition(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid transition: partition `x` is PARTITION_STALE; only an AVAILABLE partition can be invalidated: it is already stale; the next build that needs it rebuilds it"
    );
    let err = bel.invalidate("nope", "why").await.unwrap_err();
    assert!(
        matches!(err, BelError::UnknownPartition(ref r) if r == "nope"),
        "{err:?}"
    );
    assert_eq!(event_count(bel).await, before);
}

pub async fn a_forgotten_partition_leaves_the_listings_and_keeps_its_events(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append(vec![
        graph("r1", JobGraphRunStatus::GraphStarted),
        partition("typo", PartitionRequested, "r1", 0),
        partition("typo", PartitionFailed, "r1", 0),
        graph("r1", JobGraphRunStatus::GraphFailed),
        partition("ext", PartitionAvailable, "", 0),
        graph("r2", JobGraphRunStatus::GraphStarted),
        partition("held", PartitionScheduled, "r2", 0),
    ])
    .await
    .unwrap();

    bel.append(vec![partition("typo", PartitionForgotten, "", 0)])
        .await
        .unwrap();
    assert_eq!(status(bel, "typo").await, None);
    assert_eq!(
        listed(bel, PartitionFilter::default()).await,
        ["ext", "held"]
    );
    let counts = bel.status_counts().await.unwrap();
    assert!(
        counts
            .iter()
            .all(|c| c.status != PartitionFailed && c.status != PartitionForgotten),
        "{counts:?}"
    );
    assert_eq!(
        summary(&bel.partition_history("typo").await.unwrap()),
        [
            ev("typo", PartitionRequested, "r1"),
            ev("typo", PartitionFailed, "r1"),
            ev("typo", PartitionForgotten, ""),
        ]
    );

    // Only a partition that is neither built nor being built, and has a status.
    for r in ["ext", "held", "typo", "never"] {
        assert_rejected(
            bel,
            vec![partition(r, PartitionForgotten, "", 0)],
            "can be forgotten",
        )
        .await;
    }

    // A forgotten ref may be asked for again, and forgotten again in one batch.
    bel.append(vec![
        partition("typo", PartitionRequested, "r2", 0),
        partition("typo", PartitionForgotten, "", 0),
    ])
    .await
    .unwrap();
    assert_eq!(status(bel, "typo").await, None);
    bel.append(vec![partition("typo", PartitionRequested, "r2", 0)])
        .await
        .unwrap();
    assert_eq!(status(bel, "typo").await, Some(PartitionRequested));
}

/// Builds `r` from `upstream` in a new run, by job `job` at `version`, with `digest`
/// (none if empty); `cut_off`: made fresh without a job run.
async fn build_digest(
    bel: &dyn databuild_bel::EventLog,
    run_id: &str,
    r: &str,
    upstream: &[&str],
    (label, version, digest): (&str, &str, &str),
    cut_off: bool,
) {
    use databuild_bel::Event;
    use databuild_proto::{JobLabel, PartitionManifest, PartitionRef};
    use PartitionStatus::*;
    let jr = if cut_off {
        String::new()
    } else {
        format!("{run_id}-{r}")
    };
    let mut available = built(r, PartitionAvailable, run_id, &jr, upstream);
    if let Event::Partition(p) = &mut available {
        p.producing_job = Some(JobLabel::new(label));
        p.cut_off = cut_off;
        p.manifest = Some(PartitionManifest {
            outputs: vec![PartitionRef::new(r)],
            job_version: version.into(),
            digests: if digest.is_empty() {
                Default::default()
            } else {
                [(r.to_string(), digest.to_string())].into()
            },
            ..Default::default()
        });
    }
    let mut events = vec![
        graph(run_id, JobGraphRunStatus::GraphStarted),
        partition(r, PartitionScheduled, run_id, 0),
    ];
    if !cut_off {
        events.push(job(run_id, &jr, JobRunStatus::JobScheduled));
        events.push(job(run_id, &jr, JobRunStatus::JobRunning));
    }
    events.push(built(r, PartitionBuilding, run_id, &jr, upstream));
    events.push(available);
    if !cut_off {
        events.push(job(run_id, &jr, JobRunStatus::JobSuccess));
    }
    events.push(graph(run_id, JobGraphRunStatus::GraphAnalyzed));
    events.push(graph(run_id, JobGraphRunStatus::GraphSuccess));
    bel.append(events)
        .await
        .unwrap_or_else(|e| panic!("building {r}: {e}"));
}

pub async fn a_rebuild_with_the_same_digest_keeps_its_dependents_fresh(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    bel.append(vec![partition("x", PartitionAvailable, "", 0)])
        .await
        .unwrap();
    build_digest(bel, "r1", "b", &["x"], ("jb", "1", "d1"), false).await;
    build_digest(bel, "r2", "c", &["b"], ("jc", "1", "dc"), false).await;

    // Same digest: early cutoff, `c` stays AVAILABLE.
    build_digest(bel, "r3", "b", &["x"], ("jb", "1", "d1"), false).await;
    assert_eq!(status(bel, "c").await, Some(PartitionAvailable));
    // Made fresh without a job run: nothing changed, whatever the digest says.
    build_digest(bel, "r4", "b", &["x"], ("jb", "1", ""), true).await;
    assert_eq!(status(bel, "c").await, Some(PartitionAvailable));
    // No digest counts as changed.
    build_digest(bel, "r5", "b", &["x"], ("jb", "1", ""), false).await;
    assert_eq!(status(bel, "c").await, Some(PartitionStale));
    build_digest(bel, "r6", "c", &["b"], ("jc", "1", "dc"), false).await;
    // Another digest: `c` goes STALE.
    build_digest(bel, "r7", "b", &["x"], ("jb", "2", "d2"), false).await;
    assert_eq!(status(bel, "c").await, Some(PartitionStale));

    // What the latest builds were made by and of, kept while the status changes.
    let refs: Vec<String> = ["b", "c", "nope"].iter().map(|s| s.to_string()).collect();
    let builds = bel.builds(&refs).await.unwrap();
    let b_row = builds[0].clone().unwrap();
    assert_eq!(
        (
            b_row.job.as_str(),
            b_row.version.as_str(),
            b_row.digest.as_str()
        ),
        ("jb", "2", "d2")
    );
    assert_eq!(
        builds[1].clone().unwrap().version,
        "1",
        "c is STALE, its build kept"
    );
    assert_eq!(builds[2], None);
    // Partitions AVAILABLE and built at another version than the one asked about.
    assert_eq!(
        bel.built_by_other_version(&[("jb".into(), "3".into())])
            .await
            .unwrap(),
        ["b"]
    );
    assert!(bel
        .built_by_other_version(&[("jb".into(), "2".into()), ("jc".into(), "1".into())])
        .await
        .unwrap()
        .is_empty());
    assert!(
        bel.built_by_other_version(&[("jc".into(), "9".into())])
            .await
            .unwrap()
            .is_empty(),
        "a STALE partition is rebuilt anyway"
    );
}

/// `statuses` answers one status per ref asked, in that order, whatever the order of the
/// refs: sorted and dense among the partitions, sorted and sparse, with refs before and
/// after every partition, or unsorted.
pub async fn statuses_of_many_refs_agree_sorted_sparse_or_not(b: &Backend) {
    use PartitionStatus::*;
    let bel = b.open().await.unwrap();
    let bel = bel.as_ref();
    let name = |i: usize| format!("p/{i:04}");
    // 6,000 refs, every third one never recorded (more than one run of refs is walked,
    // and the sparse refs, one in ten, fall back to lookups).
    let present: Vec<String> = (0..6_000)
        .filter(|i: &usize| !i.is_multiple_of(3))
        .map(name)
        .collect();
    bel.append(
        present
            .iter()
            .map(|r| partition(r, PartitionAvailable, "", 0))
            .collect(),
    )
    .await
    .unwrap();
    for r in ["p/0001", "p/1501", "p/5999"] {
        bel.invalidate(r, "test").await.unwrap();
    }
    let expect = |r: &str| -> Option<PartitionStatus> {
        let i: usize = r.strip_prefix("p/")?.parse().ok()?;
        if i.is_multiple_of(3) || i >= 6_000 {
            None
        } else if [1, 1501, 5999].contains(&i) {
            Some(PartitionStale)
        } else {
            Some(PartitionAvailable)
        }
    };
    let dense: Vec<String> = std::iter::once("a".to_string())
        .chain((0..6_000).map(name))
        .chain(["p/9999".to_string(), "q".to_string()])
        .collect();
    let sparse: Vec<String> = (0..6_000).step_by(10).map(name).collect();
    let mut unsorted = dense.clone();
    unsorted.reverse();
    unsorted.push("p/0002".into());
    for (what, refs) in [("dense", dense), ("sparse", sparse), ("unsorted", unsorted)] {
        let got = bel.statuses(&refs).await.unwrap();
        let want: Vec<Option<PartitionStatus>> = refs.iter().map(|r| expect(r)).collect();
        assert_eq!(got.len(), refs.len(), "{what}");
        for ((r, g), w) in refs.iter().zip(&got).zip(&want) {
            assert_eq!(g, w, "{what}: {r}");
        }
    }
}
