//! The reconciler keeps wanted partitions built: in `serve` with no other command, after an
//! upstream is invalidated (exactly the affected jobs rerun), when external data lands, and
//! `reconcile --once` from cron, with failures retried up to a limit.

use std::time::Duration;

use super::{job_runs, wants};
use crate::{
    service::{example, Service},
    util::{assert_code, jobs_graph, ref_job, wait_for, TestGraph},
};

#[test]
fn serve_builds_a_wanted_partition_and_rebuilds_it_when_an_upstream_is_invalidated() {
    let g = example();
    let mut s = Service::start(&g, &["-j", "2"]);
    let out = g.run(&["want", "reviews/daily/date=2025-01-03", "--ttl", "1d"]);
    assert_code(&out, 0);
    let id = out.stdout.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("want-"), "{}", out.stdout);
    wait_for("the want to be satisfied", Duration::from_secs(60), || {
        wants(&g, &[])
            .get(&id)
            .is_some_and(|(_, s)| s == "WANT_SATISFIED")
    });
    assert_eq!(
        g.status("reviews/daily/date=2025-01-03").as_deref(),
        Some("PARTITION_AVAILABLE")
    );
    let first = job_runs(&g.events());
    assert_eq!(first.len(), 1, "one graph run: {first:?}");

    // An upstream invalidated: the reconciler rebuilds the wanted partition by itself,
    // rerunning exactly the jobs downstream of the invalidated partition.
    assert_code(
        &g.run(&["partitions", "invalidate", "reviews/clean/date=2025-01-03"]),
        0,
    );
    wait_for("the rebuild", Duration::from_secs(60), || {
        job_runs(&g.events()).len() == 2
            && g.status("reviews/daily/date=2025-01-03").as_deref() == Some("PARTITION_AVAILABLE")
    });
    let runs = job_runs(&g.events());
    let rebuild: Vec<&Vec<String>> = runs
        .values()
        .filter(|v| **v != first.values().next().cloned().unwrap())
        .collect();
    assert_eq!(rebuild.len(), 1, "{runs:?}");
    let mut labels = rebuild[0].clone();
    labels.sort();
    assert_eq!(labels, ["clean_reviews", "daily_summary"], "{runs:?}");
    // The want stays satisfied: one SATISFIED event, and its history says so.
    let show = g.run(&["wants", "show", &id]);
    assert_code(&show, 0);
    assert_eq!(
        show.stdout.matches("WANT_SATISFIED").count(),
        1,
        "{}",
        show.stdout
    );
    assert_eq!(s.signal_and_wait("TERM"), 0);
    g.assert_bel_intact();
}

/// A graph whose job `b` needs the external `raw/N` for `b/N`; `b` appends its ref to
/// `execs` and fails while the file `fail` exists.
fn external_graph() -> TestGraph {
    let g = TestGraph::new(&jobs_graph("wants", &[("b", "")]));
    ref_job(
        &g,
        "b",
        r#"inputs=$(dep MATERIALIZE "raw/${r#*/}")"#,
        "[ -e fail ] && exit 3\nmkdir -p out && echo ok > \"out/$name\"",
    );
    g
}

fn execs(g: &TestGraph) -> Vec<String> {
    std::fs::read_to_string(g.path().join("execs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn reconcile_once_waits_for_external_data_instead_of_failing() {
    let g = external_graph();
    assert_code(&g.run(&["want", "b/1", "b/2"]), 0);
    assert_code(&g.run(&["partitions", "register", "raw/2"]), 0);
    let out = g.run(&["reconcile", "--once"]);
    assert_code(&out, 0);
    assert_eq!(execs(&g), ["b/2"]);
    let w = wants(&g, &[]);
    let status = |r: &str| w.values().find(|(p, _)| p == r).unwrap().1.clone();
    assert_eq!(status("b/2"), "WANT_SATISFIED");
    // b/1 waits for raw/1: still active, and `wants show` says what for.
    assert_eq!(status("b/1"), "WANT_ACTIVE");
    let id = w.iter().find(|(_, (r, _))| r == "b/1").unwrap().0.clone();
    let show = g.run(&["wants", "show", &id]);
    assert!(show.stdout.contains("raw/1"), "{}", show.stdout);
    // Again: nothing new is built, b/1 still waits.
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    assert_eq!(execs(&g), ["b/2"]);
    // The data lands; the next pass builds it.
    assert_code(&g.run(&["partitions", "register", "raw/1"]), 0);
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    assert_eq!(execs(&g), ["b/2", "b/1"]);
    assert!(wants(&g, &[]).values().all(|(_, s)| s == "WANT_SATISFIED"));
    g.assert_bel_intact();
}

/// `reconcile --once --dry-run --json`: (wants held, partitions it would build).
fn held(g: &TestGraph) -> (u64, u64) {
    let out = g.run(&["--json", "reconcile", "--once", "--dry-run"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect(&out.stdout);
    (
        v["live"].as_u64().unwrap(),
        v["wouldBuild"].as_u64().unwrap(),
    )
}

#[test]
fn a_reconciler_holds_only_the_wants_that_need_it_and_expires_the_rest_from_the_log() {
    let g = external_graph();
    assert_code(&g.run(&["partitions", "register", "raw/1", "raw/2"]), 0);
    assert_code(&g.run(&["want", "b/1", "--ttl", "1d"]), 0);
    assert_code(&g.run(&["want", "b/2", "--ttl", "3s"]), 0);
    assert_eq!(held(&g), (2, 2));
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    let mut built = execs(&g);
    built.sort();
    assert_eq!(built, ["b/1", "b/2"]);
    // Both satisfied and AVAILABLE: a reconciler starting now holds neither.
    assert_eq!(held(&g), (0, 0));
    // b/1 goes STALE while no reconciler runs: the next one finds its satisfied want from
    // the partitions that are not AVAILABLE, and rebuilds it.
    assert_code(&g.run(&["partitions", "invalidate", "b/1"]), 0);
    assert_eq!(held(&g), (1, 1));
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    assert_eq!(execs(&g).len(), 3);
    assert_eq!(execs(&g)[2], "b/1");
    assert_eq!(held(&g), (0, 0));
    // b/2's TTL ends: a pass expires it from the log's index, though nothing holds it.
    let status = |r: &str| {
        wants(&g, &[])
            .values()
            .find(|(p, _)| p == r)
            .unwrap()
            .1
            .clone()
    };
    wait_for("b/2's want to expire", Duration::from_secs(30), || {
        assert_code(&g.run(&["reconcile", "--once"]), 0);
        status("b/2") == "WANT_EXPIRED"
    });
    assert_eq!(status("b/1"), "WANT_SATISFIED");
    assert_eq!(execs(&g).len(), 3, "nothing built again");
    g.assert_bel_intact();
}

#[test]
fn a_wanted_partition_built_by_another_version_of_its_job_is_rebuilt() {
    let g = external_graph();
    assert_code(&g.run(&["partitions", "register", "raw/1", "raw/2"]), 0);
    assert_code(&g.run(&["want", "b/1"]), 0);
    assert_code(&g.run(&["build", "b/2"]), 0);
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    assert_eq!(execs(&g), ["b/2", "b/1"]);
    // Job `b` at version 2: its wanted partition is outdated and rebuilt; `b/2`, built by
    // the old version too but not wanted, is left alone.
    let path = g.path().join("databuild.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let bumped = toml.replacen("label = \"b\"\n", "label = \"b\"\nversion = \"2\"\n", 1);
    assert_ne!(toml, bumped);
    std::fs::write(&path, bumped).unwrap();
    // `--keep-outdated` keeps it as it is.
    let out = g.run(&[
        "--json",
        "reconcile",
        "--once",
        "--dry-run",
        "--keep-outdated",
    ]);
    assert_code(&out, 0);
    assert!(out.stdout.contains("\"wouldBuild\":0"), "{}", out.stdout);
    assert_eq!(held(&g), (1, 1));
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    assert_eq!(execs(&g), ["b/2", "b/1", "b/1"]);
    assert_eq!(held(&g), (0, 0));
    assert_code(&g.run(&["reconcile", "--once"]), 0);
    assert_eq!(execs(&g).len(), 3, "built once by the new version");
    g.assert_bel_intact();
}

#[test]
fn serve_wakes_a_waiting_want_when_its_external_data_is_registered() {
    let g = external_graph();
    let mut s = Service::start(&g, &[]);
    assert_code(&g.run(&["want", "b/7"]), 0);
    wait_for("the first attempt", Duration::from_secs(30), || {
        !g.runs().is_empty() && g.runs().iter().all(|(_, s)| s == "GRAPH_FAILED")
    });
    assert!(execs(&g).is_empty());
    assert_code(&g.run(&["partitions", "register", "raw/7"]), 0);
    wait_for("the want to be satisfied", Duration::from_secs(30), || {
        wants(&g, &[]).values().all(|(_, s)| s == "WANT_SATISFIED")
    });
    assert_eq!(execs(&g), ["b/7"]);
    assert_eq!(s.signal_and_wait("TERM"), 0);
}

#[test]
fn failures_are_retried_then_the_want_fails_for_good() {
    let g = external_graph();
    g.write("fail", "");
    assert_code(&g.run(&["partitions", "register", "raw/1", "raw/2"]), 0);
    assert_code(&g.run(&["want", "b/1"]), 0);
    // From cron: each `--once` is one attempt; after 1 retry the want fails.
    let first = g.run(&["reconcile", "--once", "--retries", "1"]);
    assert_code(&first, 0);
    let second = g.run(&["reconcile", "--once", "--retries", "1"]);
    assert_code(&second, 1);
    assert!(second.stderr.contains("1 failed"), "{}", second.stderr);
    let third = g.run(&["reconcile", "--once", "--retries", "1"]);
    assert_code(&third, 0);
    assert_eq!(execs(&g), ["b/1", "b/1"]);
    let w = wants(&g, &[]);
    assert_eq!(w.values().next().unwrap().1, "WANT_FAILED");
    let id = w.keys().next().unwrap().clone();
    let show = g.run(&["--json", "wants", "show", &id]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    let last = v["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "WANT_FAILED");
    assert_eq!(last["failureCause"], "FAILURE_CAUSE_JOB_FAILED");

    // In the foreground, retries come after the backoff, in the same process.
    assert_code(&g.run(&["want", "b/2"]), 0);
    let mut child = g.spawn(&["reconcile", "--retries", "2", "--retry-backoff", "100ms"]);
    wait_for("the want to fail", Duration::from_secs(30), || {
        wants(&g, &[])
            .values()
            .any(|(r, s)| r == "b/2" && s == "WANT_FAILED")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(execs(&g).iter().filter(|r| *r == "b/2").count(), 3);
}
