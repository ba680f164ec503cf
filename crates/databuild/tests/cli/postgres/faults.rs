//! Faults with a PostgreSQL event log: URLs that cannot connect (one clear line, exit 2,
//! nothing written) and a server restart in the middle of a build (nothing lost or
//! duplicated; the build goes on).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use super::harness::*;
use crate::util::{wait_for, TestGraph};

/// Runs a build against a bad URL: exit 2, one snapshotted line naming what to fix, no job
/// run, and the test database unchanged. `hide` replaces test-specific text in the line.
fn assert_connection_refused(
    g: &TestGraph,
    db: &Database,
    name: &str,
    url: &str,
    hide: &[(&str, &str)],
) {
    let before = assert_intact(g, &db.url);
    let out = run(g, url, &["build", "p/1"]);
    assert_code(&out, 2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let mut text = out
        .stderr
        .replace(&server_address(&db.url), "[SERVER]")
        .replace(&db.name, "[DB]");
    for (from, to) in hide {
        text = text.replace(from, to);
    }
    insta::assert_snapshot!(name, g.redact(&text));
    assert_eq!(assert_intact(g, &db.url), before, "{name}: the log changed");
}

#[test]
fn bad_postgres_urls_fail_with_one_clear_line_and_change_nothing() {
    let db = Database::new();
    let shared = tempfile::tempdir().unwrap();
    let execs_path = shared.path().join("execs");
    let g = graph_dir(&[("p", None, "")], &execs_path);
    assert_code(&run(&g, &db.url, &["build", "p/0"]), 0);
    let server = server_address(&db.url);
    let user = db.url.split("://").nth(1).unwrap();
    let user = user.split([':', '@']).next().unwrap();

    let wrong_password = format!("postgres://{user}:not-the-password@{server}/{}", db.name);
    assert_connection_refused(&g, &db, "postgres_wrong_password", &wrong_password, &[]);

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let unreachable = format!("postgres://{user}:pw@127.0.0.1:{closed_port}/{}", db.name);
    assert_connection_refused(
        &g,
        &db,
        "postgres_unreachable_host",
        &unreachable,
        &[(&closed_port, "[PORT]")],
    );

    let missing = with_database(&db.url, "databuild_no_such_database");
    let (host, port) = server.rsplit_once(':').unwrap();
    let hint = format!("-h {host} -p {port}");
    assert_connection_refused(
        &g,
        &db,
        "postgres_missing_database",
        &missing,
        &[(&hint, "-h [HOST] -p [PORT]")],
    );
    assert_eq!(execs(&execs_path).len(), 1, "a job ran after a bad URL");
}

/// Asserts that no event is duplicated or missing: unique event ids, `seq` strictly
/// increasing, per-run sequences 0, 1, 2, … without gaps, and for each of `built` exactly
/// one SCHEDULED, BUILDING and AVAILABLE.
fn assert_no_event_lost_or_duplicated(events: &[serde_json::Value], built: &[&str]) {
    let mut ids = BTreeSet::new();
    let mut last_seq = 0;
    let mut sequences: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut statuses: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in events {
        let seq = e["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
        if let Some(p) = e.get("partitionEvent") {
            assert!(ids.insert(p["partitionEventId"].to_string()), "{e}");
            let key = (
                p["partitionRef"]["str"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            );
            *statuses.entry(key).or_default() += 1;
        } else {
            let r = &e["jobGraphRunEvent"];
            assert!(ids.insert(r["jobGraphRunEventId"].to_string()), "{e}");
            let inner = r.get("graphEvent").or_else(|| r.get("jobEvent")).unwrap();
            let seq = inner["sequence"]
                .as_str()
                .map_or(0, |s| s.parse::<i64>().unwrap());
            sequences
                .entry(inner["jobGraphRunId"].as_str().unwrap().to_string())
                .or_default()
                .push(seq);
        }
    }
    for (run, seqs) in sequences {
        let want: Vec<i64> = (0..seqs.len() as i64).collect();
        assert_eq!(seqs, want, "sequences of graph run {run}");
    }
    for r in built {
        for s in [
            "PARTITION_SCHEDULED",
            "PARTITION_BUILDING",
            "PARTITION_AVAILABLE",
        ] {
            let n = statuses.get(&(r.to_string(), s.into())).copied();
            assert_eq!(n, Some(1), "{r} {s}");
        }
    }
}

/// A second PostgreSQL cluster, on port 55433, that one test stops and starts with
/// `scripts/postgres.sh` (the shared one serves tests running at the same time). It is
/// created on first use and left running, like the shared one, so later runs start fast.
struct RestartableCluster {
    port: u16,
}

impl RestartableCluster {
    fn script(&self, cmd: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .arg(cmd)
            .env("DATABUILD_PG_PORT", self.port.to_string())
            .env_remove("DATABUILD_PG_DIR")
            .output()
            .expect("run scripts/postgres.sh");
        assert!(
            out.status.success(),
            "scripts/postgres.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> Self {
        let c = Self { port: 55433 };
        c.script("start");
        c
    }

    fn server_url(&self) -> String {
        format!(
            "postgres://databuild:databuild@127.0.0.1:{}/databuild",
            self.port
        )
    }
}

#[test]
fn a_postgres_restart_in_the_middle_of_a_build_loses_and_duplicates_no_event() {
    // Checked so that this test, which restarts a cluster of its own, runs where the other
    // PostgreSQL tests do.
    server_url();
    let cluster = RestartableCluster::start();
    let db = Database::on(&cluster.server_url());
    let shared = tempfile::tempdir().unwrap();
    let execs_path = shared.path().join("execs");
    let go = shared.path().join("go");
    let wait_for_go = format!(
        "i=0; while [ ! -e {} ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done",
        go.display()
    );
    let g = graph_dir(
        &[("slow", None, &wait_for_go), ("top", Some("slow"), "")],
        &execs_path,
    );
    let build = spawn(&g, &db.url, &["--json", "build", "top/1"]);
    wait_for("the slow job to start", Duration::from_secs(10), || {
        execs(&execs_path).contains_key("slow/1")
    });
    // Restart the server while the job runs; then let the job finish.
    cluster.script("stop");
    cluster.script("start");
    std::fs::write(&go, "").unwrap();
    let out = finish(build);
    assert_code(&out, 0);
    let o: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let built: BTreeSet<&str> = o["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(built, BTreeSet::from(["slow/1", "top/1"]));
    assert_no_event_lost_or_duplicated(&events(&g, &db.url), &["slow/1", "top/1"]);
    assert_intact(&g, &db.url);
    // A rerun has nothing left to do.
    let again = run(&g, &db.url, &["--json", "build", "top/1"]);
    assert_code(&again, 0);
    assert_eq!(execs(&execs_path).len(), 2);
    assert!(execs(&execs_path).values().all(|n| *n == 1));
}
