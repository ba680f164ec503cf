//! How jobs run and how they fail: exit codes, signals, huge output, retries,
//! parallelism limits, the exec environment, logs, QUERY inputs and the analyze formats.
//! Stopping jobs (timeouts, `--fail-fast`, Ctrl-C, `kill -9`) is in `stopping.rs`.

use std::{
    collections::{BTreeMap, HashSet},
    process::Stdio,
    time::Instant,
};

use crate::util::{jobs_graph, ref_job, TestGraph};

/// A graph file with one job per `(label, extra toml)` (see [`jobs_graph`]).
pub(crate) fn graph(jobs: &[(&str, &str)]) -> String {
    jobs_graph("exec_test", jobs)
}

/// A job script (see [`ref_job`]).
pub(crate) fn job(g: &TestGraph, label: &str, inputs: &str, exec: &str) {
    ref_job(g, label, inputs, exec);
}

/// `inputs` snippet: one MATERIALIZE input `<label>/<the ref's key>` (the part after `/`).
pub(crate) fn upstream(label: &str) -> String {
    format!(r#"inputs=$(dep MATERIALIZE "{label}/${{r#*/}}")"#)
}

/// The failure reason of a partition's latest event.
pub(crate) fn reason(g: &TestGraph, r: &str) -> String {
    let out = g.run(&["--json", "partitions", "show", r]);
    assert_eq!(out.code, 0, "partitions show {r}: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["failureReason"].as_str().unwrap_or_default().to_string()
}

/// How many times `exec` ran for each ref (from the `execs` file).
pub(crate) fn execs(g: &TestGraph) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(g.path().join("execs")).unwrap_or_default();
    let mut m = BTreeMap::new();
    for l in text.lines() {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}

/// Pids written one per line into `rel` by a job.
pub(crate) fn pids(g: &TestGraph, rel: &str) -> Vec<i32> {
    std::fs::read_to_string(g.path().join(rel))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
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

pub(crate) fn assert_code(out: &crate::util::Output, code: i32) {
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
