//! Every FAILED partition records why as a typed cause (`failureCause`) beside the words
//! for people (`failureReason`).

use crate::util::{jobs_graph, ref_job, TestGraph};

/// `failureCause` of each partition's latest event.
fn cause(g: &TestGraph, r: &str) -> String {
    let out = g.run(&["--json", "partitions", "show", r]);
    assert_eq!(out.code, 0, "partitions show {r}: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["failureCause"].as_str().unwrap_or_default().to_string()
}

#[test]
fn failed_partitions_record_their_cause() {
    let g = TestGraph::new(&jobs_graph(
        "causes",
        &[("up", ""), ("down", ""), ("hang", "timeout = \"300ms\"")],
    ));
    ref_job(&g, "up", "", "if [ \"$r\" = up/bad ]; then exit 3; fi");
    ref_job(&g, "down", r#"inputs=$(dep MATERIALIZE "up/${r#*/}")"#, "");
    ref_job(&g, "hang", "", "sleep 30");

    let out = g.run(&["build", "down/bad", "hang/1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(cause(&g, "up/bad"), "FAILURE_CAUSE_JOB_FAILED");
    assert_eq!(cause(&g, "down/bad"), "FAILURE_CAUSE_UPSTREAM_FAILED");
    assert_eq!(cause(&g, "hang/1"), "FAILURE_CAUSE_TIMEOUT");

    // The human view shows the cause above the reason.
    let show = g.run(&["partitions", "show", "hang/1"]);
    assert!(
        show.stdout.contains("cause      timeout\n"),
        "{}",
        show.stdout
    );

    // `why` stops at a failure of its own and follows an upstream one.
    let why = g.run(&["partitions", "why", "down/bad"]);
    assert!(
        why.stdout
            .contains("<- `up/bad` is FAILED: job `up` failed"),
        "{}",
        why.stdout
    );
    g.assert_bel_intact();
}
