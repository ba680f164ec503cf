//! An event log written before failure causes were recorded
//! (`fixtures/legacy_causes.sqlite`, left by builds of a small graph) reads with the new
//! binary: `why`
//! explains each failure in the same words, and every FAILED event gets the cause its
//! reason implies.
//!
//! The log holds: `up/bad`, whose job exited 3; `down/bad`, failed upstream of it;
//! `hang/1`, timed out; `hang/2`, cancelled by Ctrl-C; `hang/3`, whose build was killed
//! with SIGKILL and reclaimed as "owner run lost" by a later build; `slow/1`, lost the same
//! way, then built.

use crate::util::TestGraph;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/cli/fixtures/legacy_causes.sqlite"
);

/// A copy of the old log (opening it may write), in a directory without a graph.
fn old_log() -> TestGraph {
    let g = TestGraph::empty();
    std::fs::copy(FIXTURE, g.path().join("old.sqlite")).unwrap();
    g
}

/// `databuild --bel old.sqlite <args>`.
fn run(g: &TestGraph, args: &[&str]) -> crate::util::Output {
    let mut all = vec!["--bel", "old.sqlite"];
    all.extend(args);
    g.run(&all)
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn why_explains_the_failures_of_an_old_log_as_before() {
    let g = old_log();
    let job_failed = "`up/bad` is FAILED: job `up` failed: exit code 3, stderr ends with \"up failed on purpose\" (job run `01a22c0e-8f0d-7161-8863-52d9a762e01c`)";
    let cases = [
        ("up/bad", job_failed.to_string()),
        (
            "down/bad",
            format!("`down/bad` is FAILED: upstream partition `up/bad` failed (job `up`) <- {job_failed}"),
        ),
        (
            "hang/1",
            "`hang/1` is FAILED: job `hang` failed: timed out after 1s (job run `01a22c0e-be58-70b6-b42a-db6348804f3c`)".into(),
        ),
        (
            "hang/2",
            "`hang/2` is FAILED: job `hang` failed: cancelled (interrupted) (job run `01a22c0e-c256-7732-aa33-04c510cf455e`)".into(),
        ),
        ("hang/3", "`hang/3` is FAILED: owner run lost".into()),
    ];
    for (r, want) in cases {
        let out = run(&g, &["partitions", "why", r]);
        assert_eq!(out.code, 0, "{r}: {}", out.stderr);
        assert_eq!(out.stdout.trim_end(), want, "{r}");
    }
}

#[test]
fn failures_of_an_old_log_read_with_their_derived_causes() {
    let g = old_log();
    for (r, cause) in [
        ("up/bad", "FAILURE_CAUSE_JOB_FAILED"),
        ("down/bad", "FAILURE_CAUSE_UPSTREAM_FAILED"),
        ("hang/1", "FAILURE_CAUSE_TIMEOUT"),
        ("hang/2", "FAILURE_CAUSE_CANCELLED"),
        ("hang/3", "FAILURE_CAUSE_OWNER_RUN_LOST"),
    ] {
        let out = run(&g, &["--json", "partitions", "show", r]);
        assert_eq!(out.code, 0, "{r}: {}", out.stderr);
        let e: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(e["failureCause"], cause, "{r}: {e}");
    }
    // The lost claim on `slow/1`, in its history before the build that made it AVAILABLE.
    let history = run(&g, &["--json", "partitions", "history", "slow/1"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let causes: Vec<(String, String)> = json_lines(&history.stdout)
        .iter()
        .map(|e| {
            let p = &e["partitionEvent"];
            (
                p["status"].as_str().unwrap().to_string(),
                p["failureCause"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(s, _)| s == "PARTITION_FAILED" || s == "PARTITION_AVAILABLE")
        .collect();
    assert_eq!(
        causes,
        [
            (
                "PARTITION_FAILED".to_string(),
                "FAILURE_CAUSE_OWNER_RUN_LOST".to_string()
            ),
            ("PARTITION_AVAILABLE".to_string(), String::new()),
        ]
    );
    // Every FAILED event of the log has a cause.
    let events = run(&g, &["events", "--json"]);
    assert_eq!(events.code, 0, "{}", events.stderr);
    for e in json_lines(&events.stdout) {
        let p = &e["partitionEvent"];
        if p["status"] == "PARTITION_FAILED" {
            assert!(p["failureCause"].is_string(), "no cause: {e}");
        }
    }
}
