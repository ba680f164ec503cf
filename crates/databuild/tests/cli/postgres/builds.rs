//! Builds against a PostgreSQL event log: every command reads them back, ten concurrent
//! builds in separate working directories share one log without a duplicate execution, and
//! `events --follow` is woken by each append.

use std::{
    collections::BTreeSet,
    io::BufRead as _,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use super::harness::*;
use crate::util::{Output, TestGraph};

#[test]
fn a_build_with_a_postgres_event_log_reads_back_through_every_command() {
    let db = Database::new();
    let shared = tempfile::tempdir().unwrap();
    let execs_path = shared.path().join("execs");
    let g = graph_dir(&[("raw", None, ""), ("top", Some("raw"), "")], &execs_path);
    let out = run(&g, &db.url, &["build", "top/1", "top/2"]);
    assert_code(&out, 0);
    assert_eq!(
        partitions(&g, &db.url).into_iter().collect::<Vec<_>>(),
        ["raw/1", "raw/2", "top/1", "top/2"]
            .map(|r| (r.to_string(), "PARTITION_AVAILABLE".to_string()))
    );
    // Nothing to do the second time.
    assert_code(&run(&g, &db.url, &["build", "top/1", "top/2"]), 0);
    assert_eq!(execs(&execs_path).len(), 4);
    assert!(execs(&execs_path).values().all(|n| *n == 1));

    // Job logs stay beside the graph; `logs` finds them.
    let evs = events(&g, &db.url);
    let job_run = evs
        .iter()
        .find_map(|e| e["jobGraphRunEvent"]["jobEvent"]["jobRunId"].as_str())
        .unwrap()
        .to_string();
    let logs = run(&g, &db.url, &["logs", &job_run]);
    assert_code(&logs, 0);
    assert!(logs.stdout.contains("building "), "{}", logs.stdout);
    assert!(g.path().join(".databuild/logs").is_dir());

    // Staleness and a rebuild of exactly what was invalidated.
    assert_code(&run(&g, &db.url, &["partitions", "invalidate", "raw/1"]), 0);
    assert_eq!(
        partitions(&g, &db.url)["top/1"],
        "PARTITION_STALE".to_string()
    );
    assert_code(&run(&g, &db.url, &["build", "top/1", "top/2"]), 0);
    let counts = execs(&execs_path);
    assert_eq!(
        (counts["raw/1"], counts["top/1"], counts["top/2"]),
        (2, 2, 1)
    );
    assert_intact(&g, &db.url);
    assert!(!g.bel_path().exists(), "a SQLite log was created too");
}

#[test]
fn ten_concurrent_builds_in_separate_directories_share_one_log_without_duplicates() {
    let db = Database::new();
    let shared = tempfile::tempdir().unwrap();
    let execs_path = shared.path().join("execs");
    // Build i asks for p/(10i)..p/(10i+29): every ref is wanted by up to three builds.
    let sets: Vec<Vec<String>> = (0..10)
        .map(|i| (10 * i..10 * i + 30).map(|n| format!("p/{n}")).collect())
        .collect();
    let dirs: Vec<TestGraph> = (0..10)
        .map(|_| graph_dir(&[("p", None, "sleep 0.005")], &execs_path))
        .collect();
    let children: Vec<Child> = sets
        .iter()
        .zip(&dirs)
        .map(|(set, g)| {
            let mut args = vec!["--json", "build", "-j", "4"];
            args.extend(set.iter().map(String::as_str));
            spawn(g, &db.url, &args)
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(finish).collect();
    for (out, set) in outs.iter().zip(&sets) {
        assert_code(out, 0);
        let o: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let got: BTreeSet<&str> = ["built", "delegated", "upToDate"]
            .iter()
            .flat_map(|k| o[k].as_array().unwrap().iter())
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(
            set.iter().all(|r| got.contains(r.as_str())),
            "a build did not account for all it asked for: {o}"
        );
    }
    let counts = execs(&execs_path);
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(duplicates, Vec::<(&String, &usize)>::new());
    assert_eq!(counts.len(), 120);
    let statuses = partitions(&dirs[0], &db.url);
    assert_eq!(statuses.len(), 120);
    assert!(statuses.values().all(|s| s == "PARTITION_AVAILABLE"));
    assert_intact(&dirs[0], &db.url);
}

#[test]
fn events_follow_on_postgres_prints_another_process_s_build_as_it_happens() {
    let db = Database::new();
    let shared = tempfile::tempdir().unwrap();
    let execs_path = shared.path().join("execs");
    let g = graph_dir(&[("g", None, "")], &execs_path);
    // Create the schema first, so the follower starts on an existing log.
    assert_code(&run(&g, &db.url, &["partitions", "list"]), 0);
    let mut follower = g
        .command(&["--bel", &db.url, "events", "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let out = run(&g, &db.url, &["--json", "build", "g/1"]);
    assert_code(&out, 0);
    let o: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let want = format!(
        "graph run {} GRAPH_SUCCESS",
        o["jobGraphRunId"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(&want) => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("timed out waiting for `{want}`; follower printed:\n{seen:#?}"),
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    reader.join().unwrap();
}
