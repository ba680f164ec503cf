//! The limits of `config` and lookup calls: `config_timeout` kills a hung program with
//! its whole process group, `max_config_bytes` caps an answer, a stopped build kills the
//! group it waits for, and refs too many for a command line come in `DATABUILD_REFS_FILE`.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    procs::{command_alive, kill, wait_exit},
    util::{wait_for, TestGraph},
};

/// A number unique to this test process and `k`, for finding a test's `sleep` by its argv.
fn marker(k: u32) -> String {
    (7_000_000 + (std::process::id() % 100_000) * 10 + k).to_string()
}

/// Whether any live process runs `sleep <marker>`.
fn sleep_alive(marker: &str) -> bool {
    command_alive(&["sleep", marker])
}

/// A shell snippet that leaves a background `sleep <marker>` and then hangs itself.
fn hang(marker: &str) -> String {
    format!("sleep {marker} &\nsleep {marker}\n")
}

/// A graph with job `a` producing `a/<n>` and `extra` in its `[[jobs]]` entry.
fn one_job(extra: &str) -> TestGraph {
    TestGraph::new(&format!(
        "[graph]\nlabel = \"limits\"\n\n[[jobs]]\nlabel = \"a\"\nentrypoint = [\"jobs/a\"]\nproduces = ['a/\\d+']\n{extra}\n"
    ))
}

/// Job `a` whose `config` runs `config` (a shell snippet) and whose `exec` does nothing.
fn job_a(g: &TestGraph, config: &str) {
    g.script(
        "a",
        &format!("case \"$1\" in\nconfig)\n{config}\n;;\nexec) ;;\nesac"),
    );
}

/// Asserts a build failed planning with exit code 2 in reasonable time, and the log is fine.
fn assert_planning_failed(g: &TestGraph, args: &[&str]) -> String {
    let start = Instant::now();
    let out = g.run(args);
    let took = start.elapsed();
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(took < Duration::from_secs(20), "the build took {took:?}");
    g.assert_bel_intact();
    assert_eq!(g.runs()[0].1, "GRAPH_FAILED");
    g.redact(&out.stderr)
}

#[test]
fn hung_config_is_killed_with_its_group_after_config_timeout() {
    let m = marker(1);
    let g = one_job("config_timeout = \"1s\"");
    job_a(&g, &hang(&m));
    let stderr = assert_planning_failed(&g, &["build", "a/1", "a/2"]);
    assert!(stderr.contains("timed out after 1s"), "{stderr}");
    insta::assert_snapshot!("config_timeout", stderr);
    assert_eq!(g.status("a/1"), None, "a refused plan records no partition");
    wait_for(
        "the config's background sleep to be gone",
        Duration::from_secs(5),
        || !sleep_alive(&m),
    );
}

#[test]
fn hung_lookup_program_is_killed_with_its_group_after_its_config_timeout() {
    let m = marker(2);
    let g = TestGraph::new(
        "[graph]\nlabel = \"limits\"\n\n[lookup]\nentrypoint = [\"jobs/lookup\"]\nconfig_timeout = \"1s\"\n\n[[jobs]]\nlabel = \"a\"\nentrypoint = [\"jobs/a\"]\n",
    );
    job_a(&g, "echo '{\"configs\": []}'");
    g.script("lookup", &hang(&m));
    let stderr = assert_planning_failed(&g, &["build", "a/1"]);
    insta::assert_snapshot!("lookup_timeout", stderr);
    wait_for(
        "the lookup's background sleep to be gone",
        Duration::from_secs(5),
        || !sleep_alive(&m),
    );
}

#[test]
fn sigterm_while_config_hangs_kills_the_config_group() {
    let m = marker(3);
    let g = one_job("");
    job_a(&g, &hang(&m));
    let mut child = g
        .command(&["build", "a/1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the config to start", Duration::from_secs(10), || {
        sleep_alive(&m)
    });
    kill("-TERM", child.id());
    let status = wait_exit(
        &mut child,
        "databuild to exit after SIGTERM",
        Duration::from_secs(5),
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the config's process group to be gone",
        Duration::from_secs(3),
        || !sleep_alive(&m),
    );
    g.assert_bel_intact();
}

#[test]
fn config_printing_past_max_config_bytes_is_killed() {
    let g = TestGraph::new(
        "[graph]\nlabel = \"limits\"\nmax_config_bytes = 4096\n\n[[jobs]]\nlabel = \"a\"\nentrypoint = [\"jobs/a\"]\nproduces = ['a/\\d+']\n",
    );
    // Never stops printing: only the cap ends it.
    job_a(
        &g,
        "while :; do echo '{\"configs\": [                  ]}'; done",
    );
    let stderr = assert_planning_failed(&g, &["build", "a/1"]);
    insta::assert_snapshot!("config_too_large", stderr);
}

#[test]
fn invalid_config_timeout_is_a_graph_file_error() {
    let g = one_job("config_timeout = \"soon\"");
    job_a(&g, "exit 1");
    let out = g.run(&["build", "a/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("config_timeout_invalid", g.redact(&out.stderr));
}

/// Job `a` in Python: `config` writes how many refs it got on the command line to `argc`,
/// checks they are the refs of `DATABUILD_REFS_FILE`, and answers one config per ref.
const PY_JOB: &str = r#"#!/usr/bin/env python3
import json, os, sys
if sys.argv[1] == "config":
    with open(os.environ["DATABUILD_REFS_FILE"]) as f:
        refs = f.read().split("\n")[:-1]
    argv_refs = sys.argv[2:]
    if argv_refs and argv_refs != refs:
        sys.exit("the command line and DATABUILD_REFS_FILE differ")
    with open("argc", "a") as f:
        f.write(f"{len(argv_refs)} {len(refs)}\n")
    with open("refs_path", "w") as f:
        f.write(os.environ["DATABUILD_REFS_FILE"])
    json.dump({"configs": [{"outputs": [{"str": r}], "args": [r]} for r in refs]}, sys.stdout)
"#;

fn py_job(g: &TestGraph) {
    use std::os::unix::fs::PermissionsExt;
    g.write("jobs/a", PY_JOB);
    let p = g.path().join("jobs/a");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn config_of_100000_refs_gets_them_in_the_refs_file_not_on_the_command_line() {
    let g = one_job("");
    py_job(&g);
    let refs: String = (0..100_000).map(|i| format!("a/{i}\n")).collect();
    g.write("refs.txt", &refs);
    let out = g.run(&["--json", "analyze", "--from-file", "refs.txt"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let graph: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 100_000);
    let argc = std::fs::read_to_string(g.path().join("argc")).unwrap();
    assert_eq!(argc, "0 100000\n");
    let refs_file = std::fs::read_to_string(g.path().join("refs_path")).unwrap();
    assert!(
        !std::path::Path::new(&refs_file).exists(),
        "{refs_file} was left behind"
    );
}

#[test]
fn few_refs_are_on_the_command_line_and_in_the_refs_file() {
    let g = one_job("");
    py_job(&g);
    let out = g.run(&["analyze", "a/1", "a/2", "a/3"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let argc = std::fs::read_to_string(g.path().join("argc")).unwrap();
    assert_eq!(argc, "3 3\n");
}
