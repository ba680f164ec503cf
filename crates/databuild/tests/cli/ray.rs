//! The Ray executor against a real one-machine Ray cluster (`scripts/ray.sh start`;
//! `RAY_ADDRESS` must name its dashboard): the example graph on Ray, the job's
//! environment, stdin and logs, how Ray jobs fail (exit code, stopped from outside,
//! timeout, no cluster at the address), and a restart after `kill -9` of `databuild`
//! adopting the lost run's Ray job instead of submitting it again. Bad Ray settings in
//! the graph file need no cluster.
//!
//! The Ray tests take turns (`ray()`), so that one test's waiting jobs never slow the
//! jobs another test times.

use std::{
    process::Command,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::util::{
    assert_code, example_graph, finish_within, jobs_graph, ref_job, wait_for, TestGraph,
};

static RAY: Mutex<()> = Mutex::new(());

/// The cluster's dashboard address, for one test at a time. Fails when `RAY_ADDRESS` is
/// not set.
pub(crate) fn ray() -> (MutexGuard<'static, ()>, String) {
    let address = std::env::var("RAY_ADDRESS").unwrap_or_default();
    assert!(
        address.starts_with("http"),
        "RAY_ADDRESS is not set (or is not the dashboard's http:// address): the Ray tests \
         need a running cluster; run `scripts/ray.sh start` (it installs and starts one) \
         and export the RAY_ADDRESS it prints, e.g. `eval \"$(scripts/ray.sh env)\"`, then \
         test again"
    );
    (RAY.lock().unwrap_or_else(|e| e.into_inner()), address)
}

/// A graph file with one job per `(label, extra toml)` (see [`jobs_graph`]).
fn graph(jobs: &[(&str, &str)]) -> String {
    jobs_graph("ray_test", jobs)
}

/// `curl` against the dashboard: the body of the answer.
fn api(method: &str, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-X", method, url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status of Ray job `id` (`PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`, `STOPPED`).
fn ray_status(address: &str, id: &str) -> String {
    let body = api("GET", &format!("{address}/api/jobs/{id}"));
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["status"].as_str().unwrap_or_default().to_string()
}

/// The Ray job ids recorded in the event log (partition events' `storage_metadata`).
fn recorded_ray_ids(g: &TestGraph) -> Vec<String> {
    let mut ids: Vec<String> = g
        .events()
        .iter()
        .filter_map(|e| e["partitionEvent"]["storageMetadata"]["ray_job_id"].as_str())
        .map(String::from)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Waits until `n` Ray jobs recorded in the log are RUNNING; returns their ids.
fn wait_running(g: &TestGraph, address: &str, n: usize) -> Vec<String> {
    let mut running = Vec::new();
    wait_for(
        &format!("{n} Ray jobs to run"),
        Duration::from_secs(60),
        || {
            running = recorded_ray_ids(g)
                .into_iter()
                .filter(|id| ray_status(address, id) == "RUNNING")
                .collect();
            running.len() >= n
        },
    );
    running
}

const WEEK: &str = "reports/weekly/week=2025-01-06";

#[test]
fn example_graph_builds_with_every_job_on_ray() {
    let (_ray, address) = ray();
    let g = example_graph();
    let toml = std::fs::read_to_string(g.path().join("databuild.toml")).unwrap();
    let edited = toml.replacen("[graph]\n", "[graph]\nexecutor = \"ray\"\n", 1);
    assert_ne!(
        toml, edited,
        "the example's graph file has no `[graph]` line"
    );
    g.write("databuild.toml", &edited);
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
    eprintln!("the example on Ray took {took:?}");
    for (r, s) in g.partitions() {
        assert_eq!(s, "PARTITION_AVAILABLE", "{r}");
    }

    // Every job run was one Ray job, submitted with the job run id, which succeeded;
    // the log records each id.
    let ids = recorded_ray_ids(&g);
    assert_eq!(ids.len(), 22, "{ids:?}");
    let mut job_runs: Vec<String> = g
        .events()
        .iter()
        .filter_map(|e| e["jobGraphRunEvent"]["jobEvent"]["jobRunId"].as_str())
        .map(String::from)
        .collect();
    job_runs.sort();
    job_runs.dedup();
    assert_eq!(ids, job_runs);
    for id in &ids {
        assert_eq!(ray_status(&address, id), "SUCCEEDED", "{id}");
    }
    let events = g.run(&["events"]).stdout;
    assert_eq!(
        events.matches("[databuild: submitted as ray job ").count(),
        22,
        "{events}"
    );
    assert!(!events.contains("Runtime env is setting up"), "{events}");

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
    g.assert_bel_intact();
}

#[test]
fn ray_job_gets_the_environment_the_config_on_stdin_and_its_logs_come_back() {
    let (_ray, address) = ray();
    let g = TestGraph::new(&graph(&[
        ("up", ""),
        (
            "down",
            "executor = \"ray\"\nenv = { GREETING = \"hej\" }\n[jobs.ray]\nentrypoint_num_cpus = 0.5",
        ),
    ]));
    ref_job(&g, "up", "", "echo \"up for $r\" > \"$name\"");
    ref_job(
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
} > "$name"
echo "down says hello"
echo "down warns" >&2"#,
    );
    let out = g.run(&["build", "down/1"]);
    assert_code(&out, 0);
    let ids = recorded_ray_ids(&g);
    assert_eq!(ids.len(), 1, "only `down` runs on Ray: {ids:?}");
    let job_run = &ids[0];
    let info = api("GET", &format!("{address}/api/jobs/{job_run}"));
    // The job's environment is the Ray job's runtime environment.
    assert!(info.contains("\"GREETING\": \"hej\""), "{info}");
    let cwd = std::fs::canonicalize(g.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(g.path().join("down_1")).unwrap(),
        format!(
            "input: up for up/1\ngreeting: hej\ncwd: {}\njob run: {job_run}\noutputs: [\"down/1\"]\nstdin args: \"args\":[\"down/1\"]\n",
            cwd.display()
        )
    );
    let logs = g.run(&["logs", job_run]);
    assert_code(&logs, 0);
    let mut lines: Vec<&str> = logs.stdout.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["down says hello", "down warns"]);
    g.assert_bel_intact();
}

#[test]
fn ray_job_exiting_3_fails_its_partition_with_the_exit_code() {
    let (_ray, address) = ray();
    let g = TestGraph::new(&graph(&[("bad", "executor = \"ray\"")]));
    ref_job(&g, "bad", "", "echo 'bad: no input file' >&2; exit 3");
    let out = g.run(&["build", "bad/1"]);
    assert_code(&out, 1);
    let ids = recorded_ray_ids(&g);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let why = g.reason("bad/1");
    assert!(
        why.contains(&format!("failed: exit code 3 (ray job {})", ids[0])),
        "{why}"
    );
    assert_eq!(g.status("bad/1").as_deref(), Some("PARTITION_FAILED"));
    assert_eq!(ray_status(&address, &ids[0]), "FAILED");
    g.assert_bel_intact();
}

#[test]
fn ray_job_stopped_from_outside_fails_its_partition_as_stopped() {
    let (_ray, address) = ray();
    let g = TestGraph::new(&graph(&[("sleeper", "executor = \"ray\"")]));
    ref_job(&g, "sleeper", "", "sleep 60");
    let child = g.spawn(&["build", "sleeper/1"]);
    let running = wait_running(&g, &address, 1);
    api("POST", &format!("{address}/api/jobs/{}/stop", running[0]));
    let out = finish_within(child, Duration::from_secs(30));
    assert_code(&out, 1);
    let why = g.reason("sleeper/1");
    assert!(
        why.contains(&format!(
            "failed: stopped: ray job {} was stopped outside databuild",
            running[0]
        )),
        "{why}"
    );
    assert_eq!(g.status("sleeper/1").as_deref(), Some("PARTITION_FAILED"));
    g.assert_bel_intact();
}

#[test]
fn timeout_stops_the_ray_job() {
    let (_ray, address) = ray();
    let g = TestGraph::new(&graph(&[(
        "sleeper",
        "executor = \"ray\"\ntimeout = \"1s\"",
    )]));
    ref_job(&g, "sleeper", "", "sleep 60");
    let start = Instant::now();
    let out = g.run(&["build", "--kill-grace", "300ms", "sleeper/1"]);
    assert_code(&out, 1);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let why = g.reason("sleeper/1");
    assert!(why.contains("timed out after 1s"), "{why}");
    // Stopped in Ray, not left running.
    let ids = recorded_ray_ids(&g);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(ray_status(&address, &ids[0]), "STOPPED");
    g.assert_bel_intact();
}

/// A graph of one Ray job that holds (running) until the file `go` exists.
fn holding_graph() -> TestGraph {
    let g = TestGraph::new(&graph(&[("hold", "executor = \"ray\"")]));
    ref_job(
        &g,
        "hold",
        "",
        "while [ ! -e go ]; do sleep 0.1; done\necho built >> \"$name\"",
    );
    g
}

/// Builds `hold/1`, kills `databuild` with SIGKILL once its Ray job runs; returns the
/// Ray job's id.
fn build_and_kill_9(g: &TestGraph, address: &str) -> Vec<String> {
    let mut child = g.spawn(&["build", "hold/1"]);
    let lost = wait_running(g, address, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    lost
}

#[test]
fn restart_after_kill_9_adopts_the_running_ray_job_instead_of_submitting_again() {
    let (_ray, address) = ray();
    let g = holding_graph();
    let lost = build_and_kill_9(&g, &address);

    let child = g.spawn(&["build", "hold/1"]);
    wait_for(
        "the restarted build to adopt the Ray job",
        Duration::from_secs(30),
        || {
            g.run(&["events"])
                .stdout
                .contains(&format!("[databuild: adopted ray job {}", lost[0]))
        },
    );
    g.write("go", "");
    let out = finish_within(child, Duration::from_secs(30));
    assert_code(&out, 0);

    // No new submission: the lost run's Ray job ran once and succeeded.
    assert_eq!(recorded_ray_ids(&g), lost);
    assert_eq!(ray_status(&address, &lost[0]), "SUCCEEDED");
    let execs = std::fs::read_to_string(g.path().join("execs")).unwrap();
    assert_eq!(execs.lines().count(), 1, "{execs}");
    assert_eq!(g.status("hold/1").as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(
        std::fs::read_to_string(g.path().join("hold_1")).unwrap(),
        "built\n"
    );
    let (_, status) = g.runs().into_iter().next().unwrap();
    assert_eq!(status, "GRAPH_SUCCESS");
    g.assert_bel_intact();
}

#[test]
fn restart_with_force_stops_the_lost_runs_ray_job_before_rebuilding() {
    let (_ray, address) = ray();
    let g = holding_graph();
    let lost = build_and_kill_9(&g, &address);

    let child = g.spawn(&["build", "--force", "hold/1"]);
    wait_for(
        "the lost run's Ray job to be stopped",
        Duration::from_secs(30),
        || ray_status(&address, &lost[0]) == "STOPPED",
    );
    g.write("go", "");
    let out = finish_within(child, Duration::from_secs(30));
    assert_code(&out, 0);

    // A new Ray job built the partition once; the lost one never wrote it.
    let ids = recorded_ray_ids(&g);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let new: Vec<&String> = ids.iter().filter(|id| **id != lost[0]).collect();
    assert_eq!(ray_status(&address, new[0]), "SUCCEEDED");
    assert_eq!(g.status("hold/1").as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(
        std::fs::read_to_string(g.path().join("hold_1")).unwrap(),
        "built\n"
    );
    g.assert_bel_intact();
}

#[test]
fn unreachable_cluster_fails_the_job_naming_the_address_and_how_to_start_one() {
    let g = TestGraph::new(&graph(&[(
        "work",
        "executor = \"ray\"\n[jobs.ray]\naddress = \"http://127.0.0.1:9\"",
    )]));
    ref_job(&g, "work", "", "echo built > \"$name\"");
    let start = Instant::now();
    let out = g.run(&["build", "work/1"]);
    assert_code(&out, 1);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    insta::assert_snapshot!("ray_unreachable", g.redact(&out.stdout));
    assert_eq!(g.status("work/1").as_deref(), Some("PARTITION_FAILED"));
    assert!(!g.path().join("execs").exists());
    g.assert_bel_intact();

    // From `RAY_ADDRESS` when the graph file names none.
    let g = TestGraph::new(&graph(&[("work", "executor = \"ray\"")]));
    ref_job(&g, "work", "", "echo built > \"$name\"");
    let out = g
        .command(&["build", "work/1"])
        .env("RAY_ADDRESS", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        g.reason("work/1")
            .contains("(from the `RAY_ADDRESS` environment variable)"),
        "{}",
        g.reason("work/1")
    );
    g.assert_bel_intact();
}

#[test]
fn invalid_ray_settings_are_rejected_when_the_graph_file_loads() {
    for (name, extra) in [
        (
            "ray_address_not_http",
            "executor = \"ray\"\n[jobs.ray]\naddress = \"127.0.0.1:8265\"",
        ),
        (
            "ray_address_no_host",
            "executor = \"ray\"\n[jobs.ray]\naddress = \"http://:8265\"",
        ),
        (
            "ray_cpus_negative",
            "executor = \"ray\"\n[jobs.ray]\nentrypoint_num_cpus = -1.0",
        ),
        (
            "ray_unknown_key",
            "executor = \"ray\"\n[jobs.ray]\nnum_cpus = 1",
        ),
        ("ray_executor_unknown", "executor = \"rays\""),
    ] {
        let g = TestGraph::new(&graph(&[("work", extra)]));
        ref_job(&g, "work", "", "");
        let out = g.run(&["build", "work/1"]);
        assert_code(&out, 2);
        insta::assert_snapshot!(name, g.redact(&out.stderr));
        assert!(!g.bel_path().exists(), "{name}: nothing is written");
    }
    let g = TestGraph::new(
        "[graph]\nlabel = \"x\"\nexecutor = \"ray\"\n[graph.ray]\naddress = \"ray://head:10001\"\n",
    );
    let out = g.run(&["build", "work/1"]);
    assert_code(&out, 2);
    insta::assert_snapshot!("ray_graph_address_invalid", g.redact(&out.stderr));
}

#[test]
fn a_submission_still_on_its_way_when_databuild_died_can_no_longer_start_a_job() {
    let (_ray, address) = ray();
    // The first build submits to an address that takes the connection and never answers,
    // so its submission is still on its way when `databuild` is killed.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let at = |address: &str| {
        graph(&[(
            "work",
            &format!("executor = \"ray\"\n[jobs.ray]\naddress = \"{address}\""),
        )])
    };
    let g = TestGraph::new(&at(&format!("http://127.0.0.1:{port}")));
    ref_job(&g, "work", "", "echo built >> \"$name\"");
    let mut child = g.spawn(&["build", "work/1"]);
    let mut lost = String::new();
    wait_for(
        "the job run to be RUNNING in the log",
        Duration::from_secs(30),
        || {
            let running = g.events().into_iter().find_map(|e| {
                let j = e["jobGraphRunEvent"].get("jobEvent")?.clone();
                (j["status"] == "JOB_RUNNING").then(|| j["jobRunId"].as_str().unwrap().to_string())
            });
            lost = running.unwrap_or_default();
            !lost.is_empty()
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The same graph on the running cluster: the lost job run's id is taken before the
    // partition is built again.
    g.write("databuild.toml", &at(&address));
    let out = g.run(&["build", "work/1"]);
    assert_code(&out, 0);
    assert_eq!(g.status("work/1").as_deref(), Some("PARTITION_AVAILABLE"));
    let execs = std::fs::read_to_string(g.path().join("execs")).unwrap();
    assert_eq!(execs.lines().count(), 1, "{execs}");
    let body = api("GET", &format!("{address}/api/jobs/{lost}"));
    let held: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("Ray has no job {lost} (the lost job run): {e}: {body}"));
    assert_eq!(held["entrypoint"], "true", "{held}");

    // The submission that was on its way, arriving now, is refused.
    let late = serde_json::json!({
        "entrypoint": "echo late >> execs",
        "submission_id": lost,
    });
    let code = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(late.to_string())
        .arg(format!("{address}/api/jobs/"))
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&code.stdout).to_string();
    assert!(
        !code.starts_with('2'),
        "a late submission was accepted: HTTP {code}"
    );
    g.assert_bel_intact();
    drop(silent);
}
