//! How jobs run and how they fail: exit codes, signals, timeouts, huge output, retries,
//! `--fail-fast`, Ctrl-C, `kill -9` of `databuild` itself, parallelism limits, the exec
//! environment, logs, QUERY inputs and the analyze formats.

use std::{
    collections::{BTreeMap, HashSet},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::util::{jobs_graph, ref_job, wait_for, TestGraph};

/// A graph file with one job per `(label, extra toml)` (see [`jobs_graph`]).
fn graph(jobs: &[(&str, &str)]) -> String {
    jobs_graph("exec_test", jobs)
}

/// A job script (see [`ref_job`]).
fn job(g: &TestGraph, label: &str, inputs: &str, exec: &str) {
    ref_job(g, label, inputs, exec);
}

/// `inputs` snippet: one MATERIALIZE input `<label>/<the ref's key>` (the part after `/`).
fn upstream(label: &str) -> String {
    format!(r#"inputs=$(dep MATERIALIZE "{label}/${{r#*/}}")"#)
}

/// The failure reason of a partition's latest event.
fn reason(g: &TestGraph, r: &str) -> String {
    let out = g.run(&["--json", "partitions", "show", r]);
    assert_eq!(out.code, 0, "partitions show {r}: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["failureReason"].as_str().unwrap_or_default().to_string()
}

/// How many times `exec` ran for each ref (from the `execs` file).
fn execs(g: &TestGraph) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(g.path().join("execs")).unwrap_or_default();
    let mut m = BTreeMap::new();
    for l in text.lines() {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

/// Pids written one per line into `rel` by a job.
fn pids(g: &TestGraph, rel: &str) -> Vec<i32> {
    std::fs::read_to_string(g.path().join(rel))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

/// `(state, pgrp)` of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: &str) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Whether a process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    proc_stat(&pid.to_string()).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

/// Whether any live process is in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| proc_stat(&e.file_name().to_string_lossy()))
        .any(|(s, g)| g == pgid && s != 'Z' && s != 'X')
}

/// Sends `signal` (e.g. `-INT`) to one process with the `kill` command.
fn kill(signal: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {signal} {pid} failed");
}

/// Kills a leftover process group (the jobs of a `databuild` that was killed with -9).
fn kill_group(pgid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

/// Job events in log order: `(job_run_id, label, job_key, status)`.
fn job_events(g: &TestGraph) -> Vec<(String, String, String, String)> {
    g.events()
        .iter()
        .filter_map(|e| e["jobGraphRunEvent"].get("jobEvent").cloned())
        .map(|j| {
            (
                j["jobRunId"].as_str().unwrap().to_string(),
                j["label"]["label"].as_str().unwrap().to_string(),
                j["jobKey"].as_str().unwrap().to_string(),
                j["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The most jobs (of `label`, or of any label) running at once according to the event log
/// (a job counts from its first JOB_RUNNING event, which log lines repeat, to its end).
fn max_running(g: &TestGraph, label: Option<&str>) -> usize {
    let mut running = HashSet::new();
    let mut max = 0;
    for (id, l, _, status) in job_events(g) {
        if label.is_some_and(|want| want != l) {
            continue;
        }
        match status.as_str() {
            "JOB_RUNNING" => {
                running.insert(id);
            }
            "JOB_SUCCESS" | "JOB_FAILED" | "JOB_CANCELLED" => {
                running.remove(&id);
            }
            _ => {}
        }
        max = max.max(running.len());
    }
    max
}

fn assert_code(out: &crate::util::Output, code: i32) {
    assert_eq!(
        out.code, code,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[test]
fn failed_job_fails_downstream_and_independent_branch_still_builds() {
    let g = TestGraph::new(&graph(&[("up", ""), ("down", ""), ("other", "")]));
    job(
        &g,
        "up",
        "",
        "echo 'up: cannot reach the source' >&2; exit 3",
    );
    job(&g, "down", &upstream("up"), "");
    job(&g, "other", "", "");

    let out = g.run(&["build", "down/1", "other/1"]);
    assert_code(&out, 1);
    insta::assert_snapshot!("exit_code_failure_summary", g.redact(&out.stdout));
    g.assert_bel_intact();

    assert_eq!(g.status("up/1").as_deref(), Some("PARTITION_FAILED"));
    let up = reason(&g, "up/1");
    assert!(up.contains("job `up` failed: exit code 3"), "{up}");
    assert_eq!(g.status("down/1").as_deref(), Some("PARTITION_FAILED"));
    let down = reason(&g, "down/1");
    assert!(down.contains("upstream partition `up/1` failed"), "{down}");
    assert_eq!(g.status("other/1").as_deref(), Some("PARTITION_AVAILABLE"));
    assert!(
        !execs(&g).contains_key("down/1"),
        "down ran: {:?}",
        execs(&g)
    );
}

#[test]
fn job_killed_by_signal_names_the_signal() {
    let g = TestGraph::new(&graph(&[("selfkill", ""), ("other", "")]));
    job(&g, "selfkill", "", "kill -9 $$");
    job(&g, "other", "", "");

    let out = g.run(&["build", "selfkill/1", "other/1"]);
    assert_code(&out, 1);
    insta::assert_snapshot!("signal_failure_summary", g.redact(&out.stdout));
    g.assert_bel_intact();
    assert_eq!(g.status("selfkill/1").as_deref(), Some("PARTITION_FAILED"));
    let r = reason(&g, "selfkill/1");
    assert!(r.contains("killed by signal 9 (SIGKILL)"), "{r}");
    assert_eq!(g.status("other/1").as_deref(), Some("PARTITION_AVAILABLE"));
}

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
fn huge_output_is_capped_and_the_build_goes_on() {
    const BYTES: u64 = 1_000_000_000;
    let g = TestGraph::new(&graph(&[("chatty", ""), ("after", "")]));
    job(&g, "chatty", "", &format!("yes | head -c {BYTES}"));
    job(&g, "after", &upstream("chatty"), "");

    let start = Instant::now();
    let out = g.run(&["build", "--log-cap-bytes", "1000000", "after/1"]);
    let took = start.elapsed();
    assert_code(&out, 0);
    eprintln!("{BYTES} bytes of job output took {took:?}");
    g.assert_bel_intact();
    assert_eq!(g.status("chatty/1").as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(g.status("after/1").as_deref(), Some("PARTITION_AVAILABLE"));

    let (id, ..) = job_events(&g)
        .into_iter()
        .find(|(_, l, ..)| l == "chatty")
        .unwrap();
    let log = std::fs::read(g.path().join(format!(".databuild/logs/{id}.log"))).unwrap();
    assert!(
        log.len() <= 1_000_000 + 200,
        "log file has {} bytes",
        log.len()
    );
    assert!(log.starts_with(b"y\ny\n"));
    let tail = String::from_utf8_lossy(&log[log.len() - 100..]);
    assert!(
        tail.ends_with("[databuild: log truncated at 1000000 bytes; further output discarded]\n"),
        "{tail}"
    );
}

#[test]
fn output_cut_in_its_last_chunk_still_says_truncated() {
    let g = TestGraph::new(&graph(&[("short", "")]));
    job(&g, "short", "", "head -c 1500 /dev/zero | tr '\\0' x");

    let out = g.run(&["build", "--log-cap-bytes", "1000", "short/1"]);
    assert_code(&out, 0);
    let (id, ..) = job_events(&g).into_iter().next().unwrap();
    let logs = g.run(&["logs", &id]);
    assert_code(&logs, 0);
    assert_eq!(
        logs.stdout,
        format!(
            "{}\n[databuild: log truncated at 1000 bytes; further output discarded]\n",
            "x".repeat(1000)
        )
    );
}

#[test]
fn retries_rerun_a_flaky_job_and_report_attempts_of_a_broken_one() {
    let g = TestGraph::new(&graph(&[
        ("flaky", "retries = 2\nretry_backoff = \"50ms\""),
        ("broken", "retries = 1\nretry_backoff = \"50ms\""),
    ]));
    job(
        &g,
        "flaky",
        "",
        "n=$(cat count 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > count\n[ $n -ge 3 ]",
    );
    job(&g, "broken", "", "echo 'broken: always fails' >&2; exit 1");

    let out = g.run(&["build", "flaky/1", "broken/1"]);
    assert_code(&out, 1);
    insta::assert_snapshot!("retries_failure_summary", g.redact(&out.stdout));
    g.assert_bel_intact();

    assert_eq!(g.status("flaky/1").as_deref(), Some("PARTITION_AVAILABLE"));
    let jobs = job_events(&g);
    let runs_of = |label: &str| {
        let keys: HashSet<&str> = jobs
            .iter()
            .filter(|j| j.1 == label)
            .map(|j| j.2.as_str())
            .collect();
        assert_eq!(keys.len(), 1, "one job key per task: {keys:?}");
        jobs.iter()
            .filter(|j| j.1 == label && j.3 == "JOB_SCHEDULED")
            .map(|j| j.0.as_str())
            .collect::<HashSet<_>>()
            .len()
    };
    assert_eq!(runs_of("flaky"), 3);
    assert_eq!(runs_of("broken"), 2);
    assert_eq!(execs(&g)["broken/1"], 2);
    assert_eq!(g.status("broken/1").as_deref(), Some("PARTITION_FAILED"));
    let r = reason(&g, "broken/1");
    assert!(r.contains("failed after 2 attempts: exit code 1"), "{r}");
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
    let mut status = None;
    wait_for(
        "databuild to exit after SIGINT",
        Duration::from_secs(3),
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
    );
    let took = start.elapsed();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        status.unwrap().code(),
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

#[test]
fn parallelism_and_max_concurrency_limit_running_jobs() {
    let g = TestGraph::new(&graph(&[("par", ""), ("solo", "max_concurrency = 1")]));
    // Each job also checks the real processes: how many are running as it starts.
    let body = "mkdir -p running\ntouch running/$name\n\
                n=$(ls running | grep -c \"^$(echo $r | cut -d/ -f1)_\")\n\
                echo $n >> seen\nsleep 0.15\nrm running/$name";
    job(&g, "par", "", body);
    job(&g, "solo", "", body);

    let refs: Vec<String> = (1..=6).map(|i| format!("par/{i}")).collect();
    let mut args = vec!["build", "-j", "2"];
    args.extend(refs.iter().map(String::as_str));
    let out = g.run(&args);
    assert_code(&out, 0);
    assert_eq!(max_running(&g, None), 2);
    let seen = std::fs::read_to_string(g.path().join("seen")).unwrap();
    assert!(seen.lines().all(|n| n == "1" || n == "2"), "{seen}");

    std::fs::remove_file(g.path().join("seen")).unwrap();
    let out = g.run(&["build", "-j", "8", "solo/1", "solo/2", "solo/3"]);
    assert_code(&out, 0);
    assert_eq!(max_running(&g, Some("solo")), 1);
    let seen = std::fs::read_to_string(g.path().join("seen")).unwrap();
    assert_eq!(seen, "1\n1\n1\n");
    g.assert_bel_intact();
}

#[test]
fn exec_gets_its_environment_stdin_args_and_the_graph_dir() {
    let g = TestGraph::new(
        "[graph]\nlabel = \"env_test\"\n\n[[jobs]]\nlabel = \"env\"\nentrypoint = [\"jobs/env\"]\n\
         produces = ['env/.*']\nenv = { FROM_GRAPH = \"graph\", OVERRIDDEN = \"graph\" }\n",
    );
    g.script(
        "env",
        r#"if [ "$1" = config ]; then
    printf '{"configs":[{"outputs":[{"str":"env/a"},{"str":"env/b"}],"args":["one arg","two"],"env":{"OVERRIDDEN":"config","FROM_CONFIG":"config"}}]}\n'
    exit 0
fi
shift
{
    echo "argc=$#"
    for a in "$@"; do echo "arg=$a"; done
    echo "outputs=$DATABUILD_OUTPUTS"
    echo "job_run_id=$DATABUILD_JOB_RUN_ID"
    echo "graph_run_id=$DATABUILD_GRAPH_RUN_ID"
    echo "from_graph=$FROM_GRAPH"
    echo "from_config=$FROM_CONFIG"
    echo "overridden=$OVERRIDDEN"
    echo "from_caller=$FROM_CALLER"
    echo "cwd=$(pwd -P)"
} > dump
printf '%s' "$DATABUILD_JOB_CONFIG" > config_env
cat > config_stdin"#,
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let graph_file = g.path().join("databuild.toml");
    let out = g
        .command(&["--graph", graph_file.to_str().unwrap(), "build", "env/a"])
        .current_dir(elsewhere.path())
        .env("FROM_CALLER", "caller")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    g.assert_bel_intact();

    let dump = std::fs::read_to_string(g.path().join("dump")).unwrap();
    let vars: BTreeMap<&str, &str> = dump.lines().filter_map(|l| l.split_once('=')).collect();
    let (job_run_id, ..) = job_events(&g).into_iter().next().unwrap();
    let (run_id, _) = g.runs().into_iter().next().unwrap();
    let cwd = std::fs::canonicalize(g.path()).unwrap();
    assert_eq!(vars["argc"], "2");
    assert_eq!(
        dump.lines()
            .filter(|l| l.starts_with("arg="))
            .collect::<Vec<_>>(),
        ["arg=one arg", "arg=two"]
    );
    assert_eq!(
        serde_json::from_str::<Vec<String>>(vars["outputs"]).unwrap(),
        ["env/a", "env/b"]
    );
    assert_eq!(vars["job_run_id"], job_run_id);
    assert_eq!(vars["graph_run_id"], run_id);
    assert_eq!(vars["from_graph"], "graph");
    assert_eq!(vars["from_config"], "config");
    assert_eq!(
        vars["overridden"], "config",
        "config env overrides graph env"
    );
    assert_eq!(vars["from_caller"], "caller");
    assert_eq!(vars["cwd"], cwd.to_str().unwrap());

    let from_env = std::fs::read_to_string(g.path().join("config_env")).unwrap();
    let from_stdin = std::fs::read_to_string(g.path().join("config_stdin")).unwrap();
    assert_eq!(from_stdin.trim_end(), from_env);
    let config: serde_json::Value = serde_json::from_str(&from_env).unwrap();
    assert_eq!(config["args"], serde_json::json!(["one arg", "two"]));
    assert_eq!(
        config["outputs"],
        serde_json::json!([{"str": "env/a"}, {"str": "env/b"}])
    );
    assert_eq!(config["env"]["OVERRIDDEN"], "config");
    assert_eq!(g.status("env/b").as_deref(), Some("PARTITION_AVAILABLE"));
}

#[test]
fn logs_prints_job_output_and_runs_show_lists_job_runs() {
    let g = TestGraph::new(&graph(&[("talk", ""), ("fail", "")]));
    job(
        &g,
        "talk",
        "",
        "echo \"hello from $r\"\necho 'to stderr' >&2",
    );
    job(&g, "fail", "", "echo 'fail: giving up' >&2; exit 2");

    let out = g.run(&["build", "talk/1", "fail/1"]);
    assert_code(&out, 1);
    let jobs = job_events(&g);
    let id_of = |label: &str| jobs.iter().find(|j| j.1 == label).unwrap().0.clone();

    let logs = g.run(&["logs", &id_of("talk")]);
    assert_code(&logs, 0);
    let mut lines: Vec<&str> = logs.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["hello from talk/1", "to stderr"]);
    let logs = g.run(&["logs", &id_of("fail")]);
    assert_code(&logs, 0);
    assert_eq!(logs.stdout, "fail: giving up\n");

    let (run_id, status) = g.runs().into_iter().next().unwrap();
    assert_eq!(status, "GRAPH_FAILED");
    let show = g.run(&["runs", "show", &run_id]);
    assert_code(&show, 0);
    assert!(show.stdout.contains("job runs   2"), "{}", show.stdout);
    for (label, status) in [("talk", "JOB_SUCCESS"), ("fail", "JOB_FAILED")] {
        let id = id_of(label);
        let line = show
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&id))
            .unwrap_or_else(|| panic!("no job run line for {label}: {}", show.stdout));
        assert!(line.contains(status) && line.contains(label), "{line}");
    }
    g.assert_bel_intact();
}

#[test]
fn query_inputs_are_not_built_but_materialize_inputs_are() {
    let g = TestGraph::new(&graph(&[("src", ""), ("peek", ""), ("need", "")]));
    job(&g, "src", "", "");
    job(&g, "peek", r#"inputs=$(dep QUERY "src/${r#*/}")"#, "");
    job(&g, "need", &upstream("src"), "");

    let out = g.run(&["build", "peek/1"]);
    assert_code(&out, 0);
    assert!(!execs(&g).contains_key("src/1"), "{:?}", execs(&g));
    assert_eq!(g.status("src/1"), None);
    let show = g.run(&["--json", "partitions", "show", "peek/1"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert!(
        v["manifest"]["inputs"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "a missing QUERY input is not lineage: {v}"
    );

    let out = g.run(&["build", "need/1"]);
    assert_code(&out, 0);
    assert_eq!(execs(&g)["src/1"], 1);
    assert_eq!(g.status("src/1").as_deref(), Some("PARTITION_AVAILABLE"));

    // Now that it exists, the QUERY input is recorded in the lineage.
    let out = g.run(&["build", "--force", "peek/1"]);
    assert_code(&out, 0);
    assert_eq!(execs(&g)["src/1"], 1);
    let show = g.run(&["--json", "partitions", "show", "peek/1"]);
    let v: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(
        v["manifest"]["inputs"][0]["outputs"][0]["str"], "src/1",
        "{v}"
    );
    g.assert_bel_intact();
}

#[test]
fn analyze_formats_render_and_json_executes() {
    let g = TestGraph::new(&graph(&[("raw", ""), ("pair", ""), ("report", "")]));
    job(&g, "raw", "", "");
    // A multi-output task: `pair/<k>` and `pair/<k>.idx` come from one run.
    g.script(
        "pair",
        r#"if [ "$1" = config ]; then
    k=${2#pair/}; k=${k%.idx}
    printf '{"configs":[{"outputs":[{"str":"pair/%s"},{"str":"pair/%s.idx"}],"inputs":[{"depType":"MATERIALIZE","partitionRef":{"str":"raw/%s"}}],"args":["%s"]}]}\n' "$k" "$k" "$k" "$k"
    exit 0
fi
echo "pair/$2" >> execs"#,
    );
    job(
        &g,
        "report",
        r#"inputs="$(dep MATERIALIZE "pair/${r#*/}"),$(dep QUERY "raw/old")""#,
        "",
    );
    let refs = ["report/1"];

    let dot = g.run(&["analyze", "--format", "dot", refs[0]]);
    assert_code(&dot, 0);
    let svg = render_dot(&dot.stdout);
    for text in ["raw/1", "pair/1", "pair/1.idx", "report/1", "raw/old"] {
        assert!(
            svg.contains(&format!(">{text}</text>")),
            "`{text}` is not a line of the picture:\n{svg}"
        );
    }

    let mermaid = g.run(&["analyze", "--format", "mermaid", refs[0]]);
    assert_code(&mermaid, 0);
    insta::assert_snapshot!("analyze_mermaid", mermaid.stdout);

    let json = g.run(&["analyze", "--format", "json", refs[0]]);
    assert_code(&json, 0);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(doc["outputs"], serde_json::json!([{"str": "report/1"}]));
    assert!(g.partitions().is_empty(), "analyze builds nothing");

    let out = g.run_with_stdin(&["execute"], &json.stdout);
    assert_code(&out, 0);
    g.assert_bel_intact();
    for r in ["raw/1", "pair/1", "pair/1.idx", "report/1"] {
        assert_eq!(g.status(r).as_deref(), Some("PARTITION_AVAILABLE"), "{r}");
    }
    assert_eq!(g.status("raw/old"), None, "a QUERY input is not built");
    assert_eq!(execs(&g).values().sum::<usize>(), 3, "{:?}", execs(&g));
}

/// Renders DOT with graphviz's `dot -Tsvg`, failing on any warning.
fn render_dot(dot: &str) -> String {
    use std::io::Write as _;
    let Ok(mut child) = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        panic!("graphviz `dot` is not on PATH; install graphviz (e.g. `apt-get install -y graphviz`) to run this test");
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "dot rejected the graph: {stderr}\n{dot}"
    );
    String::from_utf8(out.stdout).unwrap()
}
