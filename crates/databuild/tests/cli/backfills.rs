//! Backfills: `kill -9` of the driver mid-way and `resume` build every partition exactly
//! once; `retry` reruns only what failed and what it needs; `--max-failures` pauses with a
//! notification; `cancel` (and `--now`) stop it; bad input records nothing.

use std::{collections::BTreeMap, time::Duration};

use crate::util::{assert_code, jobs_graph, ref_job, wait_for, TestGraph};

/// Lines of a file in the graph's directory, counted.
fn lines(g: &TestGraph, name: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in std::fs::read_to_string(g.path().join(name))
        .unwrap_or_default()
        .lines()
    {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

fn only_backfill(g: &TestGraph) -> serde_json::Value {
    let out = g.run(&["--json", "backfill", "list"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let all = v["backfills"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{v}");
    all[0].clone()
}

/// Job `b` makes `b/N`, writing `N` to `built` as its last act; with the file `fail`
/// present it fails for the numbers listed in it; from `hold` on it waits for `go`.
fn graph(notify: &str) -> TestGraph {
    let g = TestGraph::new(&format!("{}\n{notify}", jobs_graph("bf", &[("b", "")])));
    ref_job(
        &g,
        "b",
        "",
        r#"n=${r#b/}
if [ -e fail ] && grep -qx "$n" fail; then exit 3; fi
if [ -e hold ] && [ "$n" -ge "$(cat hold)" ]; then while [ ! -e go ]; do sleep 0.02; done; fi
echo "$r" >> built"#,
    );
    g
}

#[test]
fn a_backfill_killed_mid_way_is_resumed_and_builds_every_partition_once() {
    let g = graph("");
    g.write("hold", "1000");
    let mut driver = g.spawn(&[
        "backfill",
        "start",
        "b/[0..1999]",
        "--chunk",
        "250",
        "-j",
        "2",
    ]);
    wait_for(
        "half the partitions built and the next jobs held",
        Duration::from_secs(120),
        || lines(&g, "built").len() == 1000 && lines(&g, "execs").len() >= 1002,
    );
    driver.kill().unwrap();
    driver.wait().unwrap();
    let b = only_backfill(&g);
    assert_eq!(b["status"], "BACKFILL_RUNNING");
    assert_eq!(b["built"], 1000);
    let id = b["backfillId"].as_str().unwrap().to_string();
    g.write("go", "");
    let out = g.run(&["backfill", "resume", &id, "--chunk", "250"]);
    assert_code(&out, 0);
    let built = lines(&g, "built");
    assert_eq!(built.len(), 2000);
    let twice: Vec<_> = built.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "built more than once: {twice:?}");
    let b = only_backfill(&g);
    assert_eq!(b["status"], "BACKFILL_COMPLETED");
    assert_eq!(
        (b["built"].as_u64(), b["failed"].as_u64()),
        (Some(2000), Some(0))
    );
    // Finished: resuming again is refused, and so is retrying without failures.
    let again = g.run(&["backfill", "resume", &id]);
    assert_code(&again, 2);
    insta::assert_snapshot!(
        "backfill_resume_completed",
        g.redact(&again.stderr).replace(&id, "[ID]")
    );
    let retry = g.run(&["backfill", "retry", &id]);
    assert_code(&retry, 2);
    insta::assert_snapshot!(
        "backfill_retry_nothing",
        g.redact(&retry.stderr).replace(&id, "[ID]")
    );
    g.assert_bel_intact();
}

/// Job `u` makes `u/N` (failing for the numbers in `fail`); job `d` makes `d/N` from `u/N`.
fn chained() -> TestGraph {
    let g = TestGraph::new(&jobs_graph("bf", &[("u", ""), ("d", "")]));
    ref_job(
        &g,
        "u",
        "",
        r#"n=${r#u/}
if [ -e fail ] && grep -qx "$n" fail; then exit 3; fi"#,
    );
    ref_job(&g, "d", r#"inputs=$(dep MATERIALIZE "u/${r#d/}")"#, "true");
    g
}

#[test]
fn retry_reruns_only_the_failed_partitions_and_what_they_need() {
    let g = chained();
    g.write("fail", "3\n7\n");
    let out = g.run(&["backfill", "start", "d/[0..9]", "--chunk", "4", "-j", "2"]);
    assert_code(&out, 1);
    let b = only_backfill(&g);
    assert_eq!(
        (b["built"].as_u64(), b["failed"].as_u64()),
        (Some(8), Some(2))
    );
    let id = b["backfillId"].as_str().unwrap().to_string();
    let show = g.run(&["backfill", "show", &id]);
    assert!(
        show.stdout
            .contains("failed (job failed): 2 partitions: d/3, d/7"),
        "{}",
        show.stdout
    );
    let before = lines(&g, "execs");
    std::fs::remove_file(g.path().join("fail")).unwrap();
    let out = g.run(&["backfill", "retry", &id]);
    assert_code(&out, 0);
    let after = lines(&g, "execs");
    let rerun: Vec<&String> = after
        .keys()
        .filter(|r| after[*r] > before.get(*r).copied().unwrap_or(0))
        .collect();
    assert_eq!(rerun, ["d/3", "d/7", "u/3", "u/7"]);
    let b = only_backfill(&g);
    assert_eq!(b["status"], "BACKFILL_COMPLETED");
    assert_eq!(
        (b["built"].as_u64(), b["failed"].as_u64()),
        (Some(10), Some(0))
    );
}

#[test]
fn too_many_failures_pause_the_backfill_and_notify() {
    let g = graph(
        "[notify]\ncommand = [\"sh\", \"-c\", \"cat >> notified.jsonl; echo >> notified.jsonl\"]\n",
    );
    g.write(
        "fail",
        &(0..10).map(|n| format!("{n}\n")).collect::<String>(),
    );
    let out = g.run(&[
        "backfill",
        "start",
        "b/[0..9]",
        "--max-failures",
        "3",
        "--chunk",
        "2",
        "-j",
        "1",
    ]);
    assert_code(&out, 1);
    let b = only_backfill(&g);
    assert_eq!(b["status"], "BACKFILL_PAUSED");
    // Paused after the chunk that reached 3 failures: 4 tried, 6 never started.
    assert_eq!(
        (b["failed"].as_u64(), b["pending"].as_u64()),
        (Some(4), Some(6))
    );
    assert_eq!(lines(&g, "execs").len(), 4);
    let note = std::fs::read_to_string(g.path().join("notified.jsonl")).unwrap();
    let n: serde_json::Value = serde_json::from_str(note.lines().next().unwrap()).unwrap();
    assert_eq!(n["kind"], "backfill_paused");
    assert!(
        n["root_cause"]
            .as_str()
            .unwrap()
            .contains("4 of 10 partitions failed"),
        "{n}"
    );
    // Fixed: resume goes on with the rest; the failed ones wait for `retry`.
    std::fs::remove_file(g.path().join("fail")).unwrap();
    let id = b["backfillId"].as_str().unwrap().to_string();
    assert_code(&g.run(&["backfill", "resume", &id]), 1);
    let b = only_backfill(&g);
    assert_eq!(
        (b["built"].as_u64(), b["failed"].as_u64()),
        (Some(6), Some(4))
    );
    assert_code(&g.run(&["backfill", "retry", &id]), 0);
    assert_eq!(only_backfill(&g)["built"], 10);
}

#[test]
fn cancel_stops_new_work_and_now_stops_the_jobs() {
    let g = graph("");
    g.write("hold", "0");
    let driver = g.spawn(&["backfill", "start", "b/[0..99]", "--chunk", "10", "-j", "2"]);
    wait_for("two jobs running", Duration::from_secs(30), || {
        lines(&g, "execs").len() >= 2
    });
    let id = only_backfill(&g)["backfillId"]
        .as_str()
        .unwrap()
        .to_string();
    let out = g.run(&["backfill", "cancel", &id, "--now"]);
    assert_code(&out, 0);
    let status = crate::util::finish_within(driver, Duration::from_secs(20));
    assert_eq!(status.code, 0, "{}", status.stderr);
    let b = only_backfill(&g);
    assert_eq!(b["status"], "BACKFILL_CANCELLED");
    assert_eq!(b["built"], 0);
    assert!(lines(&g, "built").is_empty());
    // Everything it wanted is withdrawn; a cancelled backfill cannot be resumed.
    assert_eq!(b["pending"], 90, "{b}");
    let again = g.run(&["backfill", "resume", &id]);
    assert_code(&again, 2);
    g.assert_bel_intact();
}

#[test]
fn bad_backfills_are_refused_and_record_nothing() {
    let g = graph("");
    assert_code(&g.run(&["partitions", "register", "ext/1"]), 0);
    let before = g.events().len();
    for (name, args) in [
        ("end_before_start", vec!["backfill", "start", "b/[10..2]"]),
        (
            "mixed_kinds",
            vec!["backfill", "start", "b/[2025-01..2025-03-31]"],
        ),
        (
            "invalid_date",
            vec!["backfill", "start", "b/[2025-02-27..2025-02-30]"],
        ),
        ("unproduced", vec!["backfill", "start", "nobody/[1..40]"]),
        (
            "resume_unknown",
            vec!["backfill", "resume", "backfill-nope"],
        ),
        ("show_unknown", vec!["backfill", "show", "backfill-nope"]),
    ] {
        let out = g.run(&args);
        assert_code(&out, 2);
        insta::assert_snapshot!(format!("backfill_{name}"), g.redact(&out.stderr));
        assert_eq!(g.events().len(), before, "{name} recorded nothing");
    }
}
