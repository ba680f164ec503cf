//! The PostgreSQL test harness: a fresh database per test, graphs whose jobs record every
//! execution in a shared file, and the CLI run with `--bel <url>`.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Stdio},
};

pub use crate::util::{assert_code, finish};
use crate::util::{ref_job, Output, TestGraph};

const ENV: &str = "DATABUILD_TEST_POSTGRES";

/// The test server's URL (its `databuild` database; the role may create databases).
pub fn server_url() -> String {
    std::env::var(ENV).unwrap_or_else(|_| {
        panic!(
            "{ENV} is not set: the PostgreSQL tests need a server. Run the tests with \
             `scripts/test.sh`, which starts one, or start one with `scripts/postgres.sh start` \
             and `export {ENV}=$(scripts/postgres.sh url)`"
        )
    })
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    format!("{base}/{db}{query}")
}

/// `host:port` of a URL.
pub fn server_address(url: &str) -> String {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// Runs `statements` on `url`.
pub fn sql(url: &str, statements: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"));
        let driver = tokio::spawn(connection);
        client
            .batch_execute(statements)
            .await
            .unwrap_or_else(|e| panic!("`{statements}` failed: {e:?}"));
        drop(client);
        let _ = driver.await;
    });
}

/// A new database on the test server, dropped when this is.
pub struct Database {
    server: String,
    pub name: String,
    pub url: String,
}

impl Database {
    pub fn new() -> Self {
        Self::on(&server_url())
    }

    /// A new database on the server of `server` (a URL).
    pub fn on(server: &str) -> Self {
        let server = server.to_string();
        let name = format!(
            "databuild_cli_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        sql(&server, &format!("CREATE DATABASE {name}"));
        let url = with_database(&server, &name);
        Self { server, name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        sql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A graph whose jobs `<label>` produce `<label>/<digits>`; each job appends its ref to
/// `execs` (an absolute path, shared by every working directory), then runs `exec`. With
/// `upstream`, `<label>/N` needs `<upstream>/N` built first.
pub fn graph_dir(jobs: &[(&str, Option<&str>, &str)], execs: &Path) -> TestGraph {
    let mut toml = String::from("[graph]\nlabel = \"postgres_test\"\n");
    for (label, _, _) in jobs {
        toml.push_str(&format!(
            "\n[[jobs]]\nlabel = \"{label}\"\nentrypoint = [\"jobs/{label}\"]\nproduces = ['{label}/\\d+']\n"
        ));
    }
    let g = TestGraph::new(&toml);
    for (label, upstream, exec) in jobs {
        let inputs = match upstream {
            Some(u) => format!(r#"inputs=$(dep MATERIALIZE "{u}/${{r#*/}}")"#),
            None => String::new(),
        };
        let exec = format!(
            "echo \"$r\" >> {execs}\necho \"building $r\"\n{exec}",
            execs = execs.display()
        );
        ref_job(&g, label, &inputs, &exec);
    }
    g
}

/// `databuild --bel <url> <args>` in `g`'s directory.
pub fn run(g: &TestGraph, url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--bel", url];
    all.extend_from_slice(args);
    g.run(&all)
}

pub fn spawn(g: &TestGraph, url: &str, args: &[&str]) -> Child {
    let mut all = vec!["--bel", url];
    all.extend_from_slice(args);
    g.command(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn databuild")
}

/// Every event of the log, as JSON.
pub fn events(g: &TestGraph, url: &str) -> Vec<serde_json::Value> {
    let out = run(g, url, &["events", "--json"]);
    assert_code(&out, 0);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect()
}

/// `(ref, status)` of every partition.
pub fn partitions(g: &TestGraph, url: &str) -> BTreeMap<String, String> {
    let out = run(g, url, &["partitions", "list", "--json", "--limit", "0"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["partitions"]
        .as_array()
        .expect("a `partitions` list")
        .iter()
        .map(|p| {
            (
                p["partitionRef"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Asserts no partition is left claimed and every graph run finished; returns the number
/// of events.
pub fn assert_intact(g: &TestGraph, url: &str) -> usize {
    for (r, s) in partitions(g, url) {
        assert!(
            s != "PARTITION_SCHEDULED" && s != "PARTITION_BUILDING",
            "partition {r} left {s}"
        );
    }
    let out = run(g, url, &["runs", "list", "--json", "--limit", "0"]);
    assert_code(&out, 0);
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for r in runs["runs"].as_array().expect("a `runs` list") {
        let s = r["status"].as_str().unwrap();
        assert!(
            s == "GRAPH_SUCCESS" || s == "GRAPH_FAILED",
            "graph run left {s}: {r}"
        );
    }
    events(g, url).len()
}

/// How many times each ref was executed.
pub fn execs(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = BTreeMap::new();
    for l in text.lines() {
        *m.entry(l.to_string()).or_insert(0) += 1;
    }
    m
}
