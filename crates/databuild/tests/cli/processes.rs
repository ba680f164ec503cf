//! Job processes: what a job leaves behind is killed with its group when it exits (unless
//! the job keeps it), and a job dies with the databuild that started it.

use std::{process::Stdio, time::Duration};

use crate::{
    procs::processes_with_env,
    util::{jobs_graph, ref_job, wait_for, TestGraph},
};

/// A graph of one job `bg` whose `exec` starts a background `sleep` and exits 0 (or
/// hangs, with `HANG` naming a file it creates once it runs).
fn graph(tag: &str, extra: &str) -> TestGraph {
    let g = TestGraph::new(&jobs_graph(
        "processes",
        &[("bg", &format!("env = {{ PROC_TAG = \"{tag}\" }}\n{extra}"))],
    ));
    ref_job(
        &g,
        "bg",
        "",
        r#"sleep 1000 > /dev/null 2>&1 &
if [ -n "${HANG:-}" ]; then echo started > "$HANG"; sleep 1000; fi"#,
    );
    g
}

#[test]
fn background_processes_of_a_finished_job_are_killed_with_its_group() {
    let tag = format!("leftover-{}", std::process::id());
    let g = graph(&tag, "");
    let out = g.run(&["build", "bg/1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let left = processes_with_env(&format!("PROC_TAG={tag}"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn kill_leftovers_false_keeps_a_job_s_background_processes() {
    let tag = format!("kept-{}", std::process::id());
    let g = graph(&tag, "kill_leftovers = false");
    let out = g.run(&["build", "bg/1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kept = processes_with_env(&format!("PROC_TAG={tag}"));
    for p in &kept {
        let _ = std::process::Command::new("kill")
            .args(["-9", &p.to_string()])
            .status();
    }
    assert_eq!(kept.len(), 1, "the job's background sleep: {kept:?}");
}

#[test]
fn a_job_dies_with_the_databuild_that_started_it_and_the_next_build_stops_its_children() {
    let tag = format!("pdeath-{}", std::process::id());
    let g = graph(&tag, "");
    let marker = g.path().join("started");
    let mut child = g
        .command(&["build", "bg/1"])
        .env("HANG", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the job to start", Duration::from_secs(20), || {
        marker.exists()
    });
    let procs = processes_with_env(&format!("PROC_TAG={tag}"));
    assert_eq!(
        procs.len(),
        3,
        "the job, its sleep and its background sleep: {procs:?}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The job's own process follows databuild at once; its children are left to the
    // run that reclaims the lost one.
    wait_for(
        "the job to die with databuild",
        Duration::from_secs(10),
        || processes_with_env(&format!("PROC_TAG={tag}")).len() == 2,
    );
    let out = g.run(&["build", "bg/1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let left = processes_with_env(&format!("PROC_TAG={tag}"));
    assert!(
        left.is_empty(),
        "left behind after the next build: {left:?}"
    );
    g.assert_bel_intact();
    assert_eq!(g.status("bg/1").as_deref(), Some("PARTITION_AVAILABLE"));
}
