//! The Slurm executor against a real one-machine Slurm cluster (`scripts/slurm.sh start`;
//! `SLURM_CONF` must name it): the example graph on Slurm, a graph mixing local and Slurm
//! jobs, how Slurm jobs fail (no `sbatch`, controller down, `scancel` from outside,
//! timeout, `--fail-fast`, Ctrl-C), and a restart after `kill -9` of `databuild` adopting
//! the lost run's Slurm jobs instead of submitting them again. Bad Slurm settings in the
//! graph file need no cluster.
//!
//! The cluster has two CPUs: the Slurm tests take turns (`slurm()`), so that one test's
//! sleeping jobs never hold the CPUs another test waits for.

use std::{
    process::Command,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::util::{
    assert_code, example_graph, finish_within, jobs_graph, ref_job, wait_for, Output, TestGraph,
};

static SLURM: Mutex<()> = Mutex::new(());

/// The cluster, for one test at a time. Fails when `SLURM_CONF` is not set.
fn slurm() -> MutexGuard<'static, ()> {
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    assert!(
        !conf.is_empty() && std::path::Path::new(&conf).exists(),
        "SLURM_CONF is not set (or names no file): the Slurm tests need a running cluster; \
         run `scripts/slurm.sh start` (it installs and starts one) and export the \
         SLURM_CONF it prints, e.g. `eval \"$(scripts/slurm.sh env)\"`, then test again"
    );
    SLURM.lock().unwrap_or_else(|e| e.into_inner())
}

/// A graph file with one job per `(label, extra toml)` (see [`jobs_graph`]).
fn graph(jobs: &[(&str, &str)]) -> String {
    jobs_graph("slurm_test", jobs)
}

/// A job script (see [`ref_job`]); its `config` uses only shell builtins, so it also runs
/// with an empty PATH.
fn job(g: &TestGraph, label: &str, inputs: &str, exec: &str) {
    ref_job(g, label, inputs, exec);
}

/// A Slurm job as `squeue` shows it.
#[derive(Debug, Clone)]
struct SlurmJob {
    id: String,
    state: String,
    name: String,
}

/// Every Slurm job this graph's job runs submitted (found by the job run id in the job
/// name), whatever its state.
/// [`slurm_jobs`] once Slurm has finished COMPLETING them (it may take a moment after a
/// cancellation, more on a loaded machine); at most 30 s.
fn settled_jobs(g: &TestGraph) -> Vec<SlurmJob> {
    let mut jobs = Vec::new();
    wait_for(
        "Slurm to finish completing the jobs",
        Duration::from_secs(30),
        || {
            jobs = slurm_jobs(g);
            jobs.iter().all(|j| j.state != "COMPLETING")
        },
    );
    jobs
}

fn slurm_jobs(g: &TestGraph) -> Vec<SlurmJob> {
    let job_runs: Vec<String> = g
        .events()
        .iter()
        .filter_map(|e| e["jobGraphRunEvent"]["jobEvent"]["jobRunId"].as_str())
        .map(String::from)
        .collect();
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-O", "JobID:|,State:|,Name:"])
        .output()
        .expect("run squeue");
    assert!(
        out.status.success(),
        "squeue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut jobs: Vec<SlurmJob> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            Some(SlurmJob {
                id: f.next()?.trim().to_string(),
                state: f.next()?.trim().to_string(),
                name: f.next()?.trim().to_string(),
            })
        })
        .filter(|j| job_runs.iter().any(|r| j.name.ends_with(r.as_str())))
        .collect();
    jobs.sort_by_key(|j| j.id.parse::<u64>().unwrap_or(0));
    jobs
}

/// The Slurm job ids recorded in the event log (partition events' `storage_metadata`).
fn recorded_slurm_ids(g: &TestGraph) -> Vec<String> {
    let mut ids: Vec<String> = g
        .events()
        .iter()
        .filter_map(|e| e["partitionEvent"]["storageMetadata"]["slurm_job_id"].as_str())
        .map(String::from)
        .collect();
    ids.sort_by_key(|id| id.parse::<u64>().unwrap_or(0));
    ids.dedup();
    ids
}

/// Snapshot text: the graph's directory, ids, times and Slurm job ids replaced.
fn redact(g: &TestGraph, s: &str) -> String {
    let s = g.redact(s);
    regex::Regex::new(r"slurm job \d+")
        .unwrap()
        .replace_all(&s, "slurm job [ID]")
        .into_owned()
}

/// Runs a prepared `databuild` command to its end.
fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run databuild").into()
}

/// Waits until `n` of the graph's Slurm jobs are RUNNING; returns them.
fn wait_running(g: &TestGraph, n: usize) -> Vec<SlurmJob> {
    let mut running = Vec::new();
    wait_for(
        &format!("{n} Slurm jobs to run"),
        Duration::from_secs(30),
        || {
            running = slurm_jobs(g)
                .into_iter()
                .filter(|j| j.state == "RUNNING")
                .collect();
            running.len() >= n
        },
    );
    running
}

fn scancel(id: &str) {
    let ok = Command::new("scancel").arg(id).status().unwrap().success();
    assert!(ok, "scancel {id} failed");
}

/// The graph file of the example with every job on Slurm.
fn on_slurm(g: &TestGraph) {
    let toml = std::fs::read_to_string(g.path().join("databuild.toml")).unwrap();
    let edited = toml.replacen("[graph]\n", "[graph]\nexecutor = \"slurm\"\n", 1);
    assert_ne!(
        toml, edited,
        "the example's graph file has no `[graph]` line"
    );
    g.write("databuild.toml", &edited);
}

const WEEK: &str = "reports/weekly/week=2025-01-06";

#[test]
fn example_graph_builds_with_every_job_on_slurm() {
    let _slurm = slurm();
    let g = example_graph();
    on_slurm(&g);
    assert_code(&g.run(&["partitions", "register", "catalog/podcasts"]), 0);
    let start = Instant::now();
    let out = g.run(&["build", WEEK]);
    let took = start.elapsed();
    assert_code(&out, 0);
    assert!(
        out.stdout.contains("built 29 partitions with 22 job runs"),
        "{}",
        out.stdout
    );
    eprintln!("the example on Slurm took {took:?}");

    // Every job run was one Slurm job, which completed; the log records each id.
    let jobs = slurm_jobs(&g);
    assert_eq!(jobs.len(), 22, "{jobs:?}");
    assert!(jobs.iter().all(|j| j.state == "COMPLETED"), "{jobs:?}");
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    assert_eq!(recorded_slurm_ids(&g), ids);
    let (run_id, _) = g.runs().into_iter().next().unwrap();
    let show = g.run(&["runs", "show", &run_id]);
    assert_code(&show, 0);
    for id in &ids {
        assert!(
            show.stdout.contains(&format!("(slurm job {id})")),
            "{}",
            show.stdout
        );
    }

    // The same data as a local build.
    let local = example_graph();
    assert_code(
        &local.run(&["partitions", "register", "catalog/podcasts"]),
        0,
    );
    assert_code(&local.run(&["build", WEEK]), 0);
    let report = "data/out/reports/weekly/week=2025-01-06.txt";
    assert_eq!(
        std::fs::read_to_string(g.path().join(report)).unwrap(),
        std::fs::read_to_string(local.path().join(report)).unwrap()
    );
    // Slurm's output files are read back and removed.
    let spool = g.path().join(".databuild/logs/slurm");
    assert_eq!(std::fs::read_dir(&spool).map_or(0, |d| d.count()), 0);
    g.assert_bel_intact();
}

#[test]
fn graph_mixing_local_and_slurm_jobs_builds_with_environment_stdin_and_logs() {
    let _slurm = slurm();
    let g = TestGraph::new(&graph(&[
        ("up", ""),
        (
            "down",
            "executor = \"slurm\"\nenv = { GREETING = \"hej\" }\n[jobs.slurm]\ncpus = 1\nmem = \"100M\"\ntime = \"5\"\npartition = \"debug\"\nextra_args = [\"--nice=0\"]",
        ),
    ]));
    job(&g, "up", "", "echo \"up for $r\" > \"$name\"");
    job(
        &g,
        "down",
        r#"inputs=$(dep MATERIALIZE "up/${r#*/}")"#,
        r#"up=$(cat "up_${r#*/}")
stdin=$(cat)
{
    echo "input: $up"
    echo "greeting: $GREETING"
    echo "cwd: $(pwd)"
    echo "job run: $DATABUILD_JOB_RUN_ID"
    echo "outputs: $DATABUILD_OUTPUTS"
    echo "stdin args: $(echo "$stdin" | grep -o '"args":\[[^]]*\]')"
    echo "slurm job: $SLURM_JOB_ID"
} > "$name"
echo "down says hello"
echo "down warns" >&2"#,
    );

    let out = g.run(&["build", "down/1"]);
    assert_code(&out, 0);
    let written = std::fs::read_to_string(g.path().join("down_1")).unwrap();
    let jobs = slurm_jobs(&g);
    assert_eq!(jobs.len(), 1, "only `down` runs on Slurm: {jobs:?}");
    let job_run = jobs[0].name.rsplit(':').next().unwrap();
    let cwd = std::fs::canonicalize(g.path()).unwrap();
    assert_eq!(
        written,
        format!(
            "input: up for up/1\ngreeting: hej\ncwd: {}\njob run: {job_run}\noutputs: [\"down/1\"]\nstdin args: \"args\":[\"down/1\"]\nslurm job: {}\n",
            cwd.display(),
            jobs[0].id
        )
    );
    assert_eq!(jobs[0].name, format!("databuild:down:{job_run}"));
    let logs = g.run(&["logs", job_run]);
    assert_code(&logs, 0);
    let mut lines: Vec<&str> = logs.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["down says hello", "down warns"]);
    // The lines are in the event log too, after the submission.
    let events = g.run(&["events"]);
    assert!(
        events.stdout.contains(&format!(
            "| [databuild: submitted as slurm job {}]",
            jobs[0].id
        )) && events.stdout.contains("| down says hello"),
        "{}",
        events.stdout
    );
    // `up` ran locally: its BUILDING event names no Slurm job.
    assert_eq!(recorded_slurm_ids(&g), [jobs[0].id.clone()]);
    g.assert_bel_intact();
}

#[test]
fn sbatch_missing_fails_the_job_with_a_clear_reason_at_once() {
    let g = TestGraph::new(&graph(&[("work", "executor = \"slurm\"")]));
    job(&g, "work", "", "echo built > \"$name\"");
    let empty = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = output(g.command(&["build", "work/1"]).env("PATH", empty.path()));
    assert_code(&out, 1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    insta::assert_snapshot!("slurm_sbatch_missing", redact(&g, &out.stdout));
    assert!(
        g.reason("work/1").contains("`sbatch` not found on PATH"),
        "{}",
        g.reason("work/1")
    );
    assert_eq!(g.status("work/1").as_deref(), Some("PARTITION_FAILED"));
    assert!(!g.path().join("execs").exists());
    g.assert_bel_intact();
}

#[test]
fn controller_down_fails_the_job_with_slurms_message_without_hanging() {
    let _slurm = slurm();
    let g = TestGraph::new(&graph(&[("work", "executor = \"slurm\"")]));
    job(&g, "work", "", "echo built > \"$name\"");
    // The cluster's configuration with a controller port nobody listens on; a short
    // message timeout makes Slurm's clients give up in a second instead of ten.
    let conf = std::fs::read_to_string(std::env::var("SLURM_CONF").unwrap()).unwrap();
    let dead: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("SlurmctldPort=") {
                "SlurmctldPort=9".to_string()
            } else {
                l.to_string()
            }
        })
        .chain(["MessageTimeout=1".to_string()])
        .collect::<Vec<_>>()
        .join("\n");
    g.write("dead.conf", &dead);
    let out = build_fails_within(&g, "dead.conf", Duration::from_secs(10));
    insta::assert_snapshot!("slurm_controller_down", redact(&g, &out.stdout));
    assert_eq!(g.status("work/1").as_deref(), Some("PARTITION_FAILED"));
    g.assert_bel_intact();
}

/// `build work/1` with `SLURM_CONF` set to `conf` (in the graph directory): it must fail
/// (exit 1) within `limit`.
fn build_fails_within(g: &TestGraph, conf: &str, limit: Duration) -> Output {
    let start = Instant::now();
    let out = output(
        g.command(&["build", "work/1"])
            .env("SLURM_CONF", g.path().join(conf)),
    );
    assert_code(&out, 1);
    assert!(start.elapsed() < limit, "{:?}", start.elapsed());
    out
}

#[test]
fn slurm_conf_naming_a_missing_file_fails_at_once() {
    let g = TestGraph::new(&graph(&[("work", "executor = \"slurm\"")]));
    job(&g, "work", "", "echo built > \"$name\"");
    let out = build_fails_within(&g, "no-such.conf", Duration::from_secs(5));
    insta::assert_snapshot!("slurm_conf_missing", redact(&g, &out.stdout));
    g.assert_bel_intact();
}

#[test]
fn scancel_from_outside_fails_the_partition_as_cancelled_by_slurm() {
    let _slurm = slurm();
    let g = TestGraph::new(&graph(&[
        ("sleeper", "executor = \"slurm\""),
        ("after", ""),
    ]));
    job(&g, "sleeper", "", "sleep 60");
    job(
        &g,
        "after",
        r#"inputs=$(dep MATERIALIZE "sleeper/${r#*/}")"#,
        "",
    );
    let child = g.spawn(&["build", "after/1"]);
    let running = wait_running(&g, 1);
    scancel(&running[0].id);
    let out = finish_within(child, Duration::from_secs(20));
    assert_code(&out, 1);
    insta::assert_snapshot!("slurm_scancel_outside", redact(&g, &out.stdout));
    let why = g.reason("sleeper/1");
    assert!(why.contains("cancelled by Slurm"), "{why}");
    assert!(
        why.contains(&format!("slurm job {}", running[0].id)),
        "{why}"
    );
    assert_eq!(g.status("after/1").as_deref(), Some("PARTITION_FAILED"));
    g.assert_bel_intact();
}

#[test]
fn timeout_cancels_the_slurm_job() {
    let _slurm = slurm();
    let g = TestGraph::new(&graph(&[(
        "sleeper",
        "executor = \"slurm\"\ntimeout = \"1s\"",
    )]));
    job(&g, "sleeper", "", "sleep 60");
    let start = Instant::now();
    let out = g.run(&["build", "--kill-grace", "300ms", "sleeper/1"]);
    assert_code(&out, 1);
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let why = g.reason("sleeper/1");
    assert!(why.contains("timed out after 1s"), "{why}");
    // Stopped in Slurm, not left running.
    let jobs = settled_jobs(&g);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state, "CANCELLED", "{jobs:?}");
    g.assert_bel_intact();
}

#[test]
fn fail_fast_and_ctrl_c_cancel_running_slurm_jobs() {
    let _slurm = slurm();
    let g = TestGraph::new(&graph(&[
        ("bad", "executor = \"slurm\""),
        ("slow", "executor = \"slurm\""),
    ]));
    job(
        &g,
        "bad",
        "",
        "sleep 1; echo 'bad: no input file' >&2; exit 3",
    );
    job(&g, "slow", "", "sleep 60");

    let out = g.run(&[
        "build",
        "--fail-fast",
        "--kill-grace",
        "300ms",
        "bad/1",
        "slow/1",
    ]);
    assert_code(&out, 1);
    insta::assert_snapshot!("slurm_fail_fast", redact(&g, &out.stdout));
    let mut states: Vec<(String, String)> = settled_jobs(&g)
        .into_iter()
        .map(|j| (j.name.split(':').nth(1).unwrap().to_string(), j.state))
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            ("bad".to_string(), "FAILED".to_string()),
            ("slow".to_string(), "CANCELLED".to_string())
        ]
    );
    assert!(
        g.reason("slow/1").contains("--fail-fast"),
        "{}",
        g.reason("slow/1")
    );

    let child = g.spawn(&["build", "--kill-grace", "300ms", "slow/2"]);
    let running = wait_running(&g, 1);
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let out = finish_within(child, Duration::from_secs(15));
    assert_code(&out, 1);
    let slow2 = settled_jobs(&g)
        .into_iter()
        .find(|j| j.id == running[0].id)
        .unwrap();
    assert_eq!(slow2.state, "CANCELLED");
    assert!(
        g.reason("slow/2").contains("cancelled (interrupted)"),
        "{}",
        g.reason("slow/2")
    );
    g.assert_bel_intact();
}

/// A graph of two Slurm jobs that hold (running) until the file `go` exists.
fn holding_graph() -> TestGraph {
    let g = TestGraph::new(&graph(&[("hold", "executor = \"slurm\"")]));
    job(
        &g,
        "hold",
        "",
        "while [ ! -e go ]; do sleep 0.1; done\necho built >> \"$name\"",
    );
    g
}

/// Builds `hold/1` and `hold/2`, kills `databuild` with SIGKILL once both Slurm jobs run;
/// returns those jobs.
fn build_and_kill_9(g: &TestGraph) -> Vec<SlurmJob> {
    let mut child = g.spawn(&["build", "hold/1", "hold/2"]);
    let running = wait_running(g, 2);
    // Both recorded in the log before databuild dies.
    wait_for(
        "the Slurm job ids in the log",
        Duration::from_secs(10),
        || recorded_slurm_ids(g).len() == 2,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    running
}

#[test]
fn restart_after_kill_9_adopts_running_slurm_jobs_instead_of_submitting_again() {
    let _slurm = slurm();
    let g = holding_graph();
    let lost = build_and_kill_9(&g);

    let child = g.spawn(&["build", "hold/1", "hold/2"]);
    wait_for(
        "the restarted build to adopt both jobs",
        Duration::from_secs(20),
        || {
            g.run(&["events"])
                .stdout
                .matches("[databuild: adopted slurm job")
                .count()
                == 2
        },
    );
    g.write("go", "");
    let out = finish_within(child, Duration::from_secs(20));
    assert_code(&out, 0);

    // No new submission: the two Slurm jobs of the lost run, both completed.
    let jobs = slurm_jobs(&g);
    let ids = |js: &[SlurmJob]| js.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&jobs), ids(&lost), "{jobs:?}");
    assert!(jobs.iter().all(|j| j.state == "COMPLETED"), "{jobs:?}");
    let execs = std::fs::read_to_string(g.path().join("execs")).unwrap();
    assert_eq!(execs.lines().count(), 2, "{execs}");
    for r in ["hold/1", "hold/2"] {
        assert_eq!(g.status(r).as_deref(), Some("PARTITION_AVAILABLE"), "{r}");
        let name = r.replace('/', "_");
        assert_eq!(
            std::fs::read_to_string(g.path().join(name)).unwrap(),
            "built\n"
        );
    }
    let (run_id, status) = g.runs().into_iter().next().unwrap();
    assert_eq!(status, "GRAPH_SUCCESS");
    let show = g.run(&["runs", "show", &run_id]);
    for j in &lost {
        assert!(
            show.stdout.contains(&format!("(slurm job {})", j.id)),
            "{}",
            show.stdout
        );
    }
    g.assert_bel_intact();
}

#[test]
fn restart_with_force_cancels_the_lost_runs_slurm_jobs_before_rebuilding() {
    let _slurm = slurm();
    let g = holding_graph();
    let lost = build_and_kill_9(&g);

    let child = g.spawn(&["build", "--force", "hold/1", "hold/2"]);
    wait_for(
        "the lost run's Slurm jobs to be cancelled",
        Duration::from_secs(20),
        || {
            slurm_jobs(&g)
                .iter()
                .filter(|j| lost.iter().any(|l| l.id == j.id))
                .all(|j| j.state == "CANCELLED")
        },
    );
    g.write("go", "");
    let out = finish_within(child, Duration::from_secs(30));
    assert_code(&out, 0);

    // Two cancelled jobs of the lost run, two new ones that built the partitions once.
    let states: Vec<String> = slurm_jobs(&g).into_iter().map(|j| j.state).collect();
    assert_eq!(states, ["CANCELLED", "CANCELLED", "COMPLETED", "COMPLETED"]);
    for r in ["hold/1", "hold/2"] {
        assert_eq!(g.status(r).as_deref(), Some("PARTITION_AVAILABLE"), "{r}");
        let name = r.replace('/', "_");
        assert_eq!(
            std::fs::read_to_string(g.path().join(name)).unwrap(),
            "built\n"
        );
    }
    g.assert_bel_intact();
}

/// A graph file whose one job sets `extra` (e.g. `executor` or a `[jobs.slurm]` table).
fn bad_graph(extra: &str) -> TestGraph {
    let g = TestGraph::new(&graph(&[("work", extra)]));
    job(&g, "work", "", "");
    g
}

#[test]
fn invalid_slurm_settings_are_rejected_when_the_graph_file_loads() {
    for (name, extra) in [
        (
            "slurm_mem_invalid",
            "executor = \"slurm\"\n[jobs.slurm]\nmem = \"lots\"",
        ),
        (
            "slurm_time_invalid",
            "executor = \"slurm\"\n[jobs.slurm]\ntime = \"1h\"",
        ),
        (
            "slurm_cpus_zero",
            "executor = \"slurm\"\n[jobs.slurm]\ncpus = 0",
        ),
        (
            "slurm_extra_args_reserved",
            "executor = \"slurm\"\n[jobs.slurm]\nextra_args = [\"--output=/tmp/x\"]",
        ),
        (
            "slurm_unknown_key",
            "executor = \"slurm\"\n[jobs.slurm]\nmemory = \"4G\"",
        ),
        ("executor_unknown", "executor = \"kubernetes\""),
    ] {
        let g = bad_graph(extra);
        let out = g.run(&["build", "work/1"]);
        assert_code(&out, 2);
        insta::assert_snapshot!(name, g.redact(&out.stderr));
        assert!(!g.bel_path().exists(), "{name}: nothing is written");
    }
    let g = TestGraph::new(
        "[graph]\nlabel = \"x\"\nexecutor = \"slurm\"\n[graph.slurm]\nmem = \"lots\"\n",
    );
    let out = g.run(&["build", "work/1"]);
    assert_code(&out, 2);
    insta::assert_snapshot!("slurm_graph_mem_invalid", g.redact(&out.stderr));
}
