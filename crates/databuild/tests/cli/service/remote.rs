//! `databuild --remote URL`: the same commands against a service, the same output, and
//! the same events in the log as a local build.

use std::collections::{BTreeMap, BTreeSet};

use super::{example, Service};
use crate::util::TestGraph;

const WEEK: &str = "reports/weekly/week=2025-01-06";

/// The log as JSON with everything that differs between two runs of the same work
/// blanked (ids, times), and job output lines taken out of it: how a job's output is cut
/// into events, and how its stdout and stderr lines interleave, depend on timing. Returns
/// the events and each job's output lines, sorted (by job key).
fn normalized_events(g: &TestGraph) -> (Vec<serde_json::Value>, BTreeMap<String, Vec<String>>) {
    fn blank(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    let lower = k.to_ascii_lowercase();
                    if lower.ends_with("id")
                        || lower.ends_with("time")
                        || lower == "startticks"
                        || lower == "timestamp"
                        || lower == "seq"
                        || lower == "sequence"
                    {
                        *v = serde_json::Value::String("[blank]".into());
                    } else {
                        blank(v);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(blank),
            _ => {}
        }
    }
    let mut logs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut events = Vec::new();
    // A job run's process handle is in its start's JOB_RUNNING event, or in one of its own
    // when a write took the start first (timing): compared apart from the events.
    let (mut started, mut with_handle) = (BTreeSet::new(), BTreeSet::new());
    for mut e in g.events() {
        let job = &e["jobGraphRunEvent"]["jobEvent"];
        if let Some(lines) = job["logs"]["logs"].as_array() {
            let key = job["jobKey"].as_str().unwrap().to_string();
            logs.entry(key)
                .or_default()
                .extend(lines.iter().map(|l| l.as_str().unwrap().to_string()));
            continue;
        }
        if job["status"] == "JOB_RUNNING" {
            let id = job["jobRunId"].as_str().unwrap().to_string();
            if job["handle"].is_object() {
                with_handle.insert(id.clone());
            }
            if !started.insert(id) {
                continue;
            }
        }
        if let Some(job) = e
            .pointer_mut("/jobGraphRunEvent/jobEvent")
            .and_then(|j| j.as_object_mut())
        {
            job.remove("handle");
        }
        blank(&mut e);
        events.push(e);
    }
    assert_eq!(
        started, with_handle,
        "every job run that started records its process"
    );
    logs.values_mut().for_each(|l| l.sort());
    (events, logs)
}

#[test]
fn a_build_through_the_service_writes_the_same_events_as_the_cli() {
    let local = example();
    let out = local.run(&["build", WEEK, "-j", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let served = example();
    let svc = Service::start(&served, &["-j", "1"]);
    let out = served.run(&["--remote", &svc.url, "build", WEEK]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("built 29 partitions with 22 job runs"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("GRAPH_SUCCESS"),
        "progress is printed: {}",
        out.stderr
    );
    drop(svc);

    let ((a, a_logs), (b, b_logs)) = (normalized_events(&local), normalized_events(&served));
    // The service records its principal as the requester and the CLI's name as a label.
    let b: Vec<serde_json::Value> = b
        .into_iter()
        .map(|mut e| {
            if let Some(clients) = e
                .pointer_mut("/partitionEvent/requestingClients")
                .and_then(|c| c.as_array_mut())
            {
                for c in clients {
                    let s = c.as_str().unwrap_or_default();
                    if let Some(label) = s
                        .strip_prefix("anonymous@loopback (")
                        .and_then(|l| l.strip_suffix(')'))
                    {
                        *c = label.into();
                    }
                }
            }
            e
        })
        .collect();
    assert_eq!(a_logs, b_logs, "job output");
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "event #{} differs:\n{x}\n{y}", i + 1);
    }
    served.assert_bel_intact();
}

#[test]
fn read_commands_print_the_same_through_the_service() {
    let g = example();
    let out = g.run(&["build", "reviews/daily/date=2025-01-07"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let svc = Service::start(&g, &[]);
    let runs = g.run(&["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    let run_id = runs["runs"][0]["jobGraphRunId"]
        .as_str()
        .unwrap()
        .to_string();
    let job = g.run(&["runs", "show", &run_id]);
    let job_run = job
        .stdout
        .lines()
        .find(|l| l.contains("JOB_SUCCESS"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["runs", "list"],
        vec!["runs", "show", &run_id],
        vec!["runs", "show", &run_id, "--json"],
        vec!["partitions", "list"],
        vec![
            "partitions",
            "list",
            "--status",
            "available",
            "--prefix",
            "reviews/",
        ],
        vec!["partitions", "list", "--pattern", "reviews/(raw|clean)/.*"],
        vec!["partitions", "show", "reviews/daily/date=2025-01-07"],
        vec!["partitions", "history", "reviews/daily/date=2025-01-07"],
        vec!["partitions", "why", "reviews/daily/date=2025-01-08"],
        vec!["events", "--limit", "7"],
        vec!["events", "--json", "--ref", "reviews/daily/date=2025-01-07"],
        vec!["deps", "reviews/daily/date=2025-01-07"],
        vec!["active"],
        vec![
            "lookup",
            "reviews/daily/date=2025-01-07",
            "catalog/podcasts",
        ],
        vec![
            "analyze",
            "--format",
            "dot",
            "reviews/daily/date=2025-01-08",
        ],
        vec!["logs", &job_run],
    ];
    for args in commands {
        let here = g.run(&args);
        let mut remote_args = vec!["--remote", svc.url.as_str()];
        remote_args.extend(&args);
        let there = g.run(&remote_args);
        assert_eq!(here.code, 0, "{args:?}: {}", here.stderr);
        assert_eq!(there.code, 0, "--remote {args:?}: {}", there.stderr);
        assert_eq!(here.stdout, there.stdout, "{args:?}");
    }
}

#[test]
fn remote_commands_explain_what_went_wrong() {
    let g = example();
    let svc = Service::start(&g, &[]);
    let mut report = Vec::new();
    let mut case = |args: &[&str], code: i32| {
        let out = g.run(args);
        assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
        report.push(format!(
            "$ databuild {}\n{}",
            args.join(" "),
            out.stderr.trim_end()
        ));
    };
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{free}");
    case(&["--remote", &down, "runs", "list"], 2);
    case(
        &["--remote", &down, "build", "reviews/raw/date=2025-01-07"],
        2,
    );
    case(&["--remote", "ftp://example.invalid", "runs", "list"], 2);
    case(&["--remote", &svc.url, "build", "nothing/makes=this"], 2);
    case(
        &[
            "--remote",
            &svc.url,
            "partitions",
            "register",
            "landing/x",
            "--force",
        ],
        2,
    );
    case(
        &[
            "--remote",
            &svc.url,
            "partitions",
            "list",
            "--status",
            "shiny",
        ],
        2,
    );
    let text = report
        .join("\n\n")
        .replace(&svc.url, "[SERVICE]")
        .replace(&down, "[DOWN]");
    insta::assert_snapshot!("remote_errors", g.redact(&text));
    drop(svc);
    g.assert_bel_intact();
}

#[test]
fn events_follow_through_the_service_prints_new_events_as_they_happen() {
    use std::io::BufRead as _;
    let g = example();
    let svc = Service::start(&g, &[]);
    let day = "reviews/daily/date=2025-01-07";
    let mut child = g
        .command(&["--remote", &svc.url, "events", "--follow", "--ref", day])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in reader.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    let body = format!(r#"{{"outputs":[{{"str":"{day}"}}]}}"#);
    svc.post_json("/api/v1/build", &body);
    crate::util::wait_for(
        "the followed events to reach AVAILABLE",
        std::time::Duration::from_secs(10),
        || {
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("PARTITION_AVAILABLE"))
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    let seen = lines.lock().unwrap().clone();
    let statuses: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    assert_eq!(
        statuses,
        [
            "PARTITION_REQUESTED",
            "PARTITION_SCHEDULED",
            "PARTITION_BUILDING",
            "PARTITION_AVAILABLE"
        ],
        "{seen:?}"
    );
}
