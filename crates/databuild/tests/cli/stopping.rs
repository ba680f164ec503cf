//! Stopping jobs: a timeout kills the job's whole process group, a job that ignores
//! SIGTERM is killed after the grace period, `--fail-fast` and Ctrl-C cancel running and
//! waiting work, and a build after `kill -9` of `databuild` reclaims the dead run.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    execution::{assert_code, execs, graph, job, pids, reason, upstream},
    procs::{alive, group_alive, kill, kill_group, wait_exit},
    util::{wait_for, TestGraph},
};

#[test]
fn timeout_kills_the_whole_process_group() {
    let g = TestGraph::new(&graph(&[("sleepy", "timeout = \"300ms\""), ("other", "")]));
    job(
        &g,
        "sleepy",
        "",
        "echo $$ >> pids\nsleep 30 &\necho $! >> pids\nsh -c 'echo $$ >> pids; exec sleep 30'",
    );
    job(&g, "other", "", "");

    let start = Instant::now();
    let out = g.run(&["build", "sleepy/1", "other/1"]);
    let took = start.elapsed();
    assert_code(&out, 1);
    // SIGTERM ends this job: the default 5 s grace period is not needed.
    assert!(took < Duration::from_secs(4), "build took {took:?}");
    insta::assert_snapshot!("timeout_failure_summary", g.redact(&out.stdout));
    g.assert_bel_intact();
    let r = reason(&g, "sleepy/1");
    assert!(r.contains("timed out after 0.3s"), "{r}");
    assert_eq!(g.status("other/1").as_deref(), Some("PARTITION_AVAILABLE"));

    let pids = pids(&g, "pids");
    assert_eq!(
        pids.len(),
        3,
        "shell, background and foreground sleep: {pids:?}"
    );
    wait_for(
        "every process of the timed-out job to exit",
        Duration::from_secs(5),
        || pids.iter().all(|&p| !alive(p)),
    );
    assert!(!group_alive(pids[0]));
}

#[test]
fn job_ignoring_sigterm_is_killed_after_the_grace_period() {
    let g = TestGraph::new(&graph(&[("stubborn", "timeout = \"300ms\"")]));
    job(&g, "stubborn", "", "trap '' TERM\necho $$ > pid\nsleep 30");

    let start = Instant::now();
    let out = g.run(&["build", "--kill-grace", "300ms", "stubborn/1"]);
    let took = start.elapsed();
    assert_code(&out, 1);
    assert!(
        took >= Duration::from_millis(600),
        "killed before timeout + grace: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "build took {took:?}");
    g.assert_bel_intact();
    let r = reason(&g, "stubborn/1");
    assert!(r.contains("timed out after 0.3s"), "{r}");
    let pgid = pids(&g, "pid")[0];
    wait_for(
        "the stubborn job's process group to exit",
        Duration::from_secs(5),
        || !group_alive(pgid),
    );
}

#[test]
fn fail_fast_cancels_running_and_waiting_work() {
    let g = TestGraph::new(&graph(&[
        ("bad", ""),
        ("slow", "max_concurrency = 1"),
        ("down", ""),
    ]));
    // `bad` fails once `slow/1` is surely running; `slow/2` waits for a `slow` slot,
    // `down/1` waits for `slow/1`.
    job(
        &g,
        "bad",
        "",
        "i=0; while [ ! -f slow_1.pid ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done\nexit 1",
    );
    job(&g, "slow", "", "echo $$ > $name.pid\nsleep 30");
    job(&g, "down", &upstream("slow"), "");

    let start = Instant::now();
    let out = g.run(&[
        "build",
        "--fail-fast",
        "-j",
        "4",
        "bad/1",
        "slow/1",
        "slow/2",
        "down/1",
    ]);
    let took = start.elapsed();
    assert_code(&out, 1);
    assert!(took < Duration::from_secs(4), "build took {took:?}");
    insta::assert_snapshot!("fail_fast_summary", g.redact(&out.stdout));
    g.assert_bel_intact();

    for (r, s) in g.partitions() {
        assert_eq!(s, "PARTITION_FAILED", "{r}");
    }
    assert!(reason(&g, "bad/1").contains("job `bad` failed: exit code 1"));
    for r in ["slow/1", "slow/2", "down/1"] {
        let why = reason(&g, r);
        assert!(
            why.contains("cancelled: --fail-fast after job `bad` failed"),
            "{r}: {why}"
        );
    }
    let ran = execs(&g);
    assert!(
        !ran.contains_key("slow/2") && !ran.contains_key("down/1"),
        "{ran:?}"
    );
    let pgid = pids(&g, "slow_1.pid")[0];
    wait_for(
        "the cancelled job's group to exit",
        Duration::from_secs(5),
        || !group_alive(pgid),
    );
}

#[test]
fn fail_fast_while_a_retry_waits_ends_the_run() {
    let g = TestGraph::new(&graph(&[
        // A backoff far longer than the test: the retry must be cancelled, not raced.
        ("flaky", "retries = 1\nretry_backoff = \"60s\""),
        ("bad", ""),
        ("stubborn", ""),
    ]));
    job(&g, "flaky", "", "touch flaky_failed\nexit 1");
    // Fails after `flaky`'s first attempt, so the cancel finds `flaky` waiting to retry
    // (or, if its exit is seen late, still running); `stubborn` ignores SIGTERM.
    job(
        &g,
        "bad",
        "",
        "i=0\nwhile { [ ! -f flaky_failed ] || [ ! -s pid ]; } && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done\nexit 1",
    );
    job(&g, "stubborn", "", "trap '' TERM\necho $$ > pid\nsleep 30");

    let out = g.run(&[
        "build",
        "--fail-fast",
        "-j",
        "3",
        "--kill-grace",
        "600ms",
        "flaky/1",
        "bad/1",
        "stubborn/1",
    ]);
    assert_code(&out, 1);
    g.assert_bel_intact();
    assert_eq!(execs(&g)["flaky/1"], 1, "no retry after the cancel");
    // Usually `flaky`'s failure is seen first and the cancel finds it waiting to retry; on
    // a loaded machine `bad`'s failure can be seen first, and `flaky`'s own exit then ends
    // it without a retry. Either way it runs once and the run ends.
    let r = reason(&g, "flaky/1");
    assert!(
        r.contains("cancelled: --fail-fast after job `bad` failed")
            || r.starts_with("job `flaky` failed: exit code 1"),
        "{r}"
    );
    assert!(reason(&g, "stubborn/1").contains("cancelled"));
    let pgid = pids(&g, "pid")[0];
    wait_for(
        "the stubborn job's group to exit",
        Duration::from_secs(5),
        || !group_alive(pgid),
    );
}

#[test]
fn ctrl_c_cancels_running_jobs_and_fails_the_run() {
    let g = TestGraph::new(&graph(&[("slow", ""), ("down", "")]));
    job(&g, "slow", "", "echo $$ > pid\nsleep 30");
    job(&g, "down", &upstream("slow"), "");

    let mut child = g
        .command(&["build", "--kill-grace", "2s", "down/1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = g.path().join("pid");
    wait_for("the slow job to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pgid = pids(&g, "pid")[0];
    kill("-INT", child.id());
    let start = Instant::now();
    let status = wait_exit(
        &mut child,
        "databuild to exit after SIGINT",
        Duration::from_secs(3),
    );
    let took = start.elapsed();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    insta::assert_snapshot!(
        "ctrl_c_summary",
        g.redact(&String::from_utf8_lossy(&out.stdout))
    );
    assert!(
        !group_alive(pgid),
        "the job's process group outlived databuild"
    );
    g.assert_bel_intact();
    for r in ["slow/1", "down/1"] {
        assert_eq!(g.status(r).as_deref(), Some("PARTITION_FAILED"), "{r}");
        let why = reason(&g, r);
        assert!(why.contains("cancelled (interrupted)"), "{r}: {why}");
    }
    assert_eq!(g.runs()[0].1, "GRAPH_FAILED");
}

#[test]
fn build_after_kill_9_reclaims_the_dead_run_and_keeps_built_partitions() {
    let g = TestGraph::new(&graph(&[("up", ""), ("slow", ""), ("top", "")]));
    job(&g, "up", "", "");
    // The first run of `slow` hangs (until killed); later runs finish at once.
    job(
        &g,
        "slow",
        &upstream("up"),
        "if [ \"$(grep -c '^slow/' execs)\" -eq 1 ]; then echo $$ > pid; sleep 30; fi",
    );
    job(
        &g,
        "top",
        r#"inputs="$(dep MATERIALIZE "slow/${r#*/}"),$(dep MATERIALIZE "up/other")""#,
        "",
    );

    let mut child = g
        .command(&["build", "top/1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = g.path().join("pid");
    wait_for("the slow job to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    wait_for("up/other to be built", Duration::from_secs(10), || {
        g.status("up/other").as_deref() == Some("PARTITION_AVAILABLE")
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The orphaned job keeps running; nothing in the log depends on it.
    let orphan = pids(&g, "pid")[0];
    kill_group(orphan);

    let before = g.events().len();
    let dead_run = g.runs()[0].0.clone();
    assert_eq!(g.status("up/1").as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(g.status("slow/1").as_deref(), Some("PARTITION_BUILDING"));
    assert_eq!(g.status("top/1").as_deref(), Some("PARTITION_SCHEDULED"));

    let again = g.run(&["build", "top/1"]);
    assert_code(&again, 0);
    assert!(g.events().len() > before);
    g.assert_bel_intact();

    let ran = execs(&g);
    assert_eq!(ran["up/1"], 1, "{ran:?}");
    assert_eq!(ran["up/other"], 1, "{ran:?}");
    assert_eq!(ran["slow/1"], 2, "{ran:?}");
    assert_eq!(ran["top/1"], 1, "{ran:?}");
    for r in ["up/1", "up/other", "slow/1", "top/1"] {
        assert_eq!(g.status(r).as_deref(), Some("PARTITION_AVAILABLE"), "{r}");
    }

    let status = g
        .runs()
        .into_iter()
        .find(|(id, _)| *id == dead_run)
        .unwrap()
        .1;
    assert_eq!(status, "GRAPH_FAILED");
    for r in ["slow/1", "top/1"] {
        let history = g.run(&["--json", "partitions", "history", r]);
        let lost = history
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| e["partitionEvent"]["jobGraphRunId"] == dead_run.as_str())
            .find(|e| e["partitionEvent"]["status"] == "PARTITION_FAILED")
            .unwrap_or_else(|| panic!("{r} not failed in the dead run: {}", history.stdout));
        assert_eq!(
            lost["partitionEvent"]["failureCause"],
            "FAILURE_CAUSE_OWNER_RUN_LOST"
        );
    }
}
