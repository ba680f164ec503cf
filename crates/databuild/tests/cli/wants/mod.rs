//! Wants: the reconciler in `databuild serve` and `databuild reconcile` keeping wanted
//! partitions built, schedules, SLAs and notifications to real receivers, and bad input.

mod bad_input;
mod chaos;
mod keep;
mod notify;
mod schedules;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    sync::mpsc,
    time::Duration,
};

use crate::util::TestGraph;

/// Every want (`wants list --json`), by id: `(ref, status)`.
pub fn wants(g: &TestGraph, bel: &[&str]) -> BTreeMap<String, (String, String)> {
    let mut args: Vec<&str> = bel.to_vec();
    args.extend(["--json", "wants", "list", "--limit", "0"]);
    let out = g.run(&args);
    assert_eq!(out.code, 0, "wants list: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    v["wants"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|w| {
            (
                w["wantId"].as_str().unwrap().to_string(),
                (
                    w["partitionRef"]["str"].as_str().unwrap().to_string(),
                    w["status"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The tick of a scheduled want's id (`<schedule>@2025-01-01T00:00:02Z`) in seconds since
/// the epoch.
pub fn tick_seconds(want_id: &str) -> i64 {
    let (_, t) = want_id.split_once('@').expect("a scheduled want id");
    let out = std::process::Command::new("date")
        .args(["-u", "-d", t, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The graph runs' job runs, by graph run: the job labels, in order.
pub fn job_runs(events: &[serde_json::Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in events {
        let j = &e["jobGraphRunEvent"]["jobEvent"];
        if j["status"] == "JOB_RUNNING" && seen.insert(j["jobRunId"].to_string()) {
            out.entry(j["jobGraphRunId"].as_str().unwrap().to_string())
                .or_default()
                .push(j["label"]["label"].as_str().unwrap_or("").to_string());
        }
    }
    out
}

/// One request a [`Receiver`] got.
#[derive(Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: serde_json::Value,
}

/// A real HTTP server on a loopback port that records each request and answers with the
/// next of `statuses` (the last one repeats).
pub struct Receiver {
    pub url: String,
    rx: mpsc::Receiver<Received>,
}

impl Receiver {
    pub fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        let statuses = statuses.to_vec();
        std::thread::spawn(move || {
            let mut n = 0;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let status = statuses[n.min(statuses.len() - 1)];
                n += 1;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let mut parts = request_line.split_whitespace();
                let _ = tx.send(Received {
                    method: parts.next().unwrap_or("").to_string(),
                    path: parts.next().unwrap_or("").to_string(),
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                });
            }
        });
        Receiver { url, rx }
    }

    /// The next request, waiting at most `deadline`.
    pub fn next(&self, deadline: Duration) -> Received {
        self.rx
            .recv_timeout(deadline)
            .unwrap_or_else(|_| panic!("no request within {deadline:?}"))
    }

    /// Requests received so far and not yet taken.
    pub fn pending(&self) -> Vec<Received> {
        self.rx.try_iter().collect()
    }
}
