//! `partitions forget`: a partition that never had a successful build leaves the listings
//! (an event records it); one that was built, one being built and an unknown ref are
//! refused, and then nothing is written.

use std::time::Duration;

use crate::util::{jobs_graph, ref_job, wait_for, TestGraph};

/// Job `part` builds `part/<n>`; it fails when the file `fail` exists and waits for the
/// file `go` when the file `hold` exists.
fn graph() -> TestGraph {
    let g = TestGraph::new(&jobs_graph("forget", &[("part", "")]));
    ref_job(
        &g,
        "part",
        "",
        "if [ -e hold ]; then while [ ! -e go ]; do sleep 0.02; done; fi\n[ ! -e fail ]",
    );
    g
}

#[test]
fn a_failed_partition_is_forgotten_and_its_events_stay() {
    let g = graph();
    g.write("fail", "");
    let out = g.run(&["build", "part/1", "part/2"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(g.status("part/1").as_deref(), Some("PARTITION_FAILED"));

    let out = g.run(&["partitions", "forget", "part/1", "part/2", "part/1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("forget_ok", out.stdout);
    assert!(g.partitions().is_empty(), "{:?}", g.partitions());
    let history = g.run(&["partitions", "history", "part/1"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let last = history.stdout.lines().last().unwrap_or_default();
    assert!(last.contains("PARTITION_FORGOTTEN"), "{}", history.stdout);
    g.assert_bel_intact();

    // A forgotten ref builds again like a new one.
    std::fs::remove_file(g.path().join("fail")).unwrap();
    let out = g.run(&["build", "part/1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(g.status("part/1").as_deref(), Some("PARTITION_AVAILABLE"));
}

/// Runs `forget args`, expecting a refusal that changes nothing; returns the redacted
/// stderr.
fn refused(g: &TestGraph, args: &[&str]) -> String {
    let before = g.events();
    let mut all = vec!["partitions", "forget"];
    all.extend_from_slice(args);
    let out = g.run(&all);
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(g.events(), before, "a refused forget wrote events");
    g.redact(&out.stderr)
}

#[test]
fn forget_refuses_built_unknown_and_claimed_partitions_and_writes_nothing() {
    let g = graph();
    let reg = g.run(&["partitions", "register", "--force", "part/9"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    g.write("fail", "");
    let out = g.run(&["build", "part/1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);

    insta::assert_snapshot!("forget_available", refused(&g, &["part/1", "part/9"]));
    insta::assert_snapshot!("forget_unknown", refused(&g, &["part/1", "part/404"]));
    assert_eq!(g.status("part/1").as_deref(), Some("PARTITION_FAILED"));

    // Built once, then failed on a forced rebuild: still refused.
    std::fs::remove_file(g.path().join("fail")).unwrap();
    let out = g.run(&["build", "part/2"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    g.write("fail", "");
    let out = g.run(&["build", "--force", "part/2"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(g.status("part/2").as_deref(), Some("PARTITION_FAILED"));
    let stderr = refused(&g, &["part/2"]);
    assert!(stderr.contains("`part/2` was AVAILABLE"), "{stderr}");

    // Being built right now.
    std::fs::remove_file(g.path().join("fail")).unwrap();
    g.write("hold", "");
    let mut build = g.command(&["build", "part/3"]).spawn().unwrap();
    wait_for("part/3 to be BUILDING", Duration::from_secs(30), || {
        g.status("part/3").as_deref() == Some("PARTITION_BUILDING")
    });
    insta::assert_snapshot!("forget_claimed", refused(&g, &["part/3"]));
    g.write("go", "");
    assert!(build.wait().unwrap().success());
    g.assert_bel_intact();
}
