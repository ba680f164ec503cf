//! Concurrent builds that share one event log: claims, delegation, a failed or killed
//! owner; the catalog answers (`why`, staleness after `invalidate`, `events --follow`);
//! bad catalog input and a locked event log.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::BufRead as _,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::{
    procs::{group_alive, kill_group},
    util::{assert_code, example_graph, finish, ref_job, wait_for, Output, TestGraph},
};

/// A graph file with one job per `(label, extra toml)`; each job produces `<label>/<digits>`
/// and runs `jobs/<label>`.
fn graph(jobs: &[(&str, &str)]) -> String {
    let mut s = String::from("[graph]\nlabel = \"coordination_test\"\n");
    for (label, extra) in jobs {
        s.push_str(&format!(
            "\n[[jobs]]\nlabel = \"{label}\"\nentrypoint = [\"jobs/{label}\"]\nproduces = ['{label}/\\d+']\n{extra}\n"
        ));
    }
    s
}

/// A job script (see [`ref_job`]) with one MATERIALIZE input `<upstream>/<the ref's
/// number>` if `upstream` is given.
fn job(g: &TestGraph, label: &str, upstream: Option<&str>, exec: &str) {
    let inputs = match upstream {
        Some(u) => format!(r#"inputs=$(dep MATERIALIZE "{u}/${{r#*/}}")"#),
        None => String::new(),
    };
    ref_job(g, label, &inputs, exec);
}

/// Shell snippet: wait until the test creates the file `go` in the graph directory (at
/// most about 20 s, so a failed test leaves no job behind for long).
const WAIT_FOR_GO: &str =
    "i=0; while [ ! -e go ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done";

/// A child process killed (SIGKILL) when dropped, also when a test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// Refs executed more than once.
fn duplicates(g: &TestGraph) -> Vec<String> {
    execs(g)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(r, _)| r)
        .collect()
}

/// `<label>/<n>` for each `n` of `range`.
fn refs(label: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{label}/{n}")).collect()
}

/// Like [`wait_for`], but fails at once (with its output) if one of `children` exits first.
fn wait_while_running(
    children: &mut [&mut Child],
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) {
    wait_for(what, deadline, || {
        for c in children.iter_mut() {
            if c.try_wait().unwrap().is_some() {
                panic!(
                    "a build exited while waiting for {what}:\n{}",
                    exited_output(c)
                );
            }
        }
        cond()
    });
}

/// The exit code and output of a child that has exited.
fn exited_output(c: &mut Child) -> String {
    use std::io::Read as _;
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = c.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = c.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    let code = c.wait().unwrap().code();
    format!("exit {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
}

/// The outcome printed by `databuild --json build`.
fn outcome(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("build --json output: {e}\n{}\n{}", out.stdout, out.stderr))
}

fn strings(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// `(waiting run, ref, owner run)` of every PARTITION_DELEGATED event.
fn delegations(g: &TestGraph) -> Vec<(String, String, String)> {
    g.events()
        .iter()
        .filter_map(|e| e.get("partitionEvent"))
        .filter(|p| p["status"] == "PARTITION_DELEGATED")
        .map(|p| {
            (
                p["jobGraphRunId"].as_str().unwrap().to_string(),
                p["partitionRef"]["str"].as_str().unwrap().to_string(),
                p["delegatedToRunId"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How many partitions are SCHEDULED or BUILDING right now (`databuild active --json`).
fn active_count(g: &TestGraph) -> usize {
    let out = g.run(&["--json", "active"]);
    assert_eq!(out.code, 0, "active failed: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v.get("activeBuilds")
        .and_then(|a| a.as_array())
        .map_or(0, |a| a.len())
}

/// Partition events of `r` as JSON, oldest first.
fn history(g: &TestGraph, r: &str) -> Vec<serde_json::Value> {
    let out = g.run(&["--json", "partitions", "history", r]);
    assert_eq!(out.code, 0, "history {r}: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["partitionEvent"].clone())
        .collect()
}

#[test]
fn two_builds_racing_for_overlapping_partitions_never_run_one_twice() {
    let first_set = refs("p", 0..150);
    let second_set = refs("p", 50..200);
    let overlap: BTreeSet<String> = refs("p", 50..150).into_iter().collect();
    for round in 0..10 {
        let started = Instant::now();
        let g = TestGraph::new(&graph(&[("p", "")]));
        // Jobs wait for `go`, so both runs have claimed before any partition is built:
        // whichever claimed second must wait on the other for the overlap.
        job(&g, "p", None, &format!("{WAIT_FOR_GO}\nsleep 0.005"));
        let mut args_a = vec!["--json", "build", "-j", "8"];
        args_a.extend(first_set.iter().map(String::as_str));
        let mut args_b = vec!["--json", "build", "-j", "8"];
        args_b.extend(second_set.iter().map(String::as_str));
        let mut a = g.spawn(&args_a);
        let mut b = g.spawn(&args_b);
        wait_while_running(
            &mut [&mut a, &mut b],
            "both runs to claim all 200 partitions",
            Duration::from_secs(10),
            || active_count(&g) == 200,
        );
        g.write("go", "");
        let (a, b) = (finish(a), finish(b));
        assert_code(&a, 0);
        assert_code(&b, 0);
        assert_eq!(duplicates(&g), Vec::<String>::new(), "round {round}");
        assert_eq!(execs(&g).len(), 200, "round {round}");

        let (a, b) = (outcome(&a), outcome(&b));
        let a_id = a["jobGraphRunId"].as_str().unwrap().to_string();
        let b_id = b["jobGraphRunId"].as_str().unwrap().to_string();
        let delegated = delegations(&g);
        let (waiter, owner, waiter_outcome) = match delegated.first() {
            Some((w, _, _)) if *w == a_id => (&a_id, &b_id, &a),
            Some(_) => (&b_id, &a_id, &b),
            None => panic!("round {round}: no PARTITION_DELEGATED event"),
        };
        let mut delegated_refs = BTreeSet::new();
        for (w, r, o) in &delegated {
            assert_eq!((w, o), (waiter, owner), "round {round}: {r}");
            delegated_refs.insert(r.clone());
        }
        assert_eq!(delegated_refs, overlap, "round {round}");
        assert_eq!(
            strings(&waiter_outcome["delegated"]),
            overlap,
            "round {round}"
        );
        assert_eq!(
            a["jobRuns"].as_u64().unwrap() + b["jobRuns"].as_u64().unwrap(),
            200,
            "round {round}"
        );

        let statuses = g.partitions();
        assert_eq!(statuses.len(), 200, "round {round}");
        for (r, s) in statuses {
            assert_eq!(s, "PARTITION_AVAILABLE", "round {round}: {r}");
        }
        g.assert_bel_intact();
        // A waiter learns its owner's outcome by polling, not by outliving a lease.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "round {round} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn ten_concurrent_builds_of_overlapping_sets_run_each_partition_once() {
    let g = TestGraph::new(&graph(&[("p", "")]));
    job(&g, "p", None, "sleep 0.005");
    // Build i asks for p/(10i)..p/(10i+29): every ref is wanted by up to three builds.
    let sets: Vec<Vec<String>> = (0..10).map(|i| refs("p", 10 * i..10 * i + 30)).collect();
    let children: Vec<Child> = sets
        .iter()
        .map(|set| {
            let mut args = vec!["--json", "build", "-j", "4"];
            args.extend(set.iter().map(String::as_str));
            g.spawn(&args)
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(finish).collect();
    let mut run_ids = BTreeSet::new();
    let mut job_runs = 0;
    for (out, set) in outs.iter().zip(&sets) {
        assert_code(out, 0);
        let o = outcome(out);
        run_ids.insert(o["jobGraphRunId"].as_str().unwrap().to_string());
        job_runs += o["jobRuns"].as_u64().unwrap();
        let got: BTreeSet<String> = strings(&o["built"])
            .into_iter()
            .chain(strings(&o["delegated"]))
            .chain(strings(&o["upToDate"]))
            .collect();
        assert!(
            set.iter().all(|r| got.contains(r)),
            "a build did not account for all it asked for: {o}"
        );
    }
    assert_eq!(duplicates(&g), Vec::<String>::new());
    assert_eq!(execs(&g).len(), 120);
    assert_eq!(job_runs, 120);
    for (waiter, r, owner) in delegations(&g) {
        assert_ne!(waiter, owner, "{r}");
        assert!(
            run_ids.contains(&waiter) && run_ids.contains(&owner),
            "{r}: {waiter} -> {owner}"
        );
    }
    let statuses = g.partitions();
    assert_eq!(statuses.len(), 120);
    for (r, s) in statuses {
        assert_eq!(s, "PARTITION_AVAILABLE", "{r}");
    }
    g.assert_bel_intact();
}

#[test]
fn waiter_fails_with_the_owner_run_named_when_the_owner_fails() {
    let g = TestGraph::new(&graph(&[("f", "")]));
    job(&g, "f", None, &format!("{WAIT_FOR_GO}\nexit 3"));
    let mut owner = g.spawn(&["--json", "build", "f/1"]);
    wait_while_running(
        &mut [&mut owner],
        "the owner to start f/1",
        Duration::from_secs(10),
        || g.status("f/1").as_deref() == Some("PARTITION_BUILDING"),
    );
    let mut waiter = g.spawn(&["--json", "build", "f/1"]);
    wait_while_running(
        &mut [&mut owner, &mut waiter],
        "the waiter to delegate f/1",
        Duration::from_secs(10),
        || !delegations(&g).is_empty(),
    );
    g.write("go", "");
    let (owner, waiter) = (finish(owner), finish(waiter));
    assert_code(&owner, 1);
    assert_code(&waiter, 1);
    let owner_id = outcome(&owner)["jobGraphRunId"]
        .as_str()
        .unwrap()
        .to_string();
    let w = outcome(&waiter);
    let waiter_id = w["jobGraphRunId"].as_str().unwrap();
    assert_eq!(
        delegations(&g),
        [(waiter_id.to_string(), "f/1".to_string(), owner_id.clone())]
    );
    assert_eq!(w["jobRuns"], 0, "{w}");
    let failed = w["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{w}");
    assert_eq!(failed[0]["partitionRef"], "f/1");
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("graph run `{owner_id}` failed to build `f/1`: ")),
        "{reason}"
    );
    assert!(reason.contains("exit code 3"), "{reason}");
    assert_eq!(execs(&g)["f/1"], 1);
    let statuses: BTreeMap<String, String> = g.runs().into_iter().collect();
    assert_eq!(statuses[&owner_id], "GRAPH_FAILED");
    assert_eq!(statuses[waiter_id], "GRAPH_FAILED");
    g.assert_bel_intact();
}

#[test]
fn waiter_takes_over_when_the_owner_is_killed() {
    let g = TestGraph::new(&graph(&[("slow", ""), ("top", "")]));
    // The first run of `slow` hangs (until killed); later runs finish at once.
    job(
        &g,
        "slow",
        None,
        "if [ \"$(grep -c '^slow/' execs)\" -eq 1 ]; then echo $$ > pid; sleep 30; fi",
    );
    job(&g, "top", Some("slow"), "");
    let mut owner = g.spawn(&["build", "--lease", "1s", "top/1"]);
    let pid_file = g.path().join("pid");
    wait_while_running(
        &mut [&mut owner],
        "the slow job to start",
        Duration::from_secs(10),
        || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')),
    );
    let mut waiter = g.spawn(&["--json", "build", "--lease", "1s", "top/1"]);
    wait_while_running(
        &mut [&mut owner, &mut waiter],
        "the waiter to delegate slow/1 and top/1",
        Duration::from_secs(10),
        || delegations(&g).len() == 2,
    );
    let owner_pid = owner.id();
    owner.kill().unwrap(); // SIGKILL
    owner.wait().unwrap();
    let orphan: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The waiter reclaims the lost run only once its job (the `sleep` the killed
    // owner's job started) is gone, then builds `slow/1` again.
    let waiter = finish(waiter);
    let left = group_alive(orphan);
    kill_group(orphan); // a leftover must not outlive the test
    assert!(!left, "the lost run's job is still running");
    assert_code(&waiter, 0);
    let w = outcome(&waiter);
    assert_eq!(
        strings(&w["built"]),
        BTreeSet::from(["slow/1".to_string(), "top/1".to_string()]),
        "{w}"
    );
    assert_eq!(w["jobRuns"], 2, "{w}");
    let waiter_id = w["jobGraphRunId"].as_str().unwrap();
    let ran = execs(&g);
    assert_eq!(ran["slow/1"], 2, "{ran:?}");
    assert_eq!(ran["top/1"], 1, "{ran:?}");
    g.assert_bel_intact();

    let statuses: BTreeMap<String, String> = g.runs().into_iter().collect();
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[waiter_id], "GRAPH_SUCCESS");
    let dead = statuses.keys().find(|id| *id != waiter_id).unwrap();
    assert_eq!(statuses[dead], "GRAPH_FAILED", "owner pid {owner_pid}");
    for r in ["slow/1", "top/1"] {
        let h = history(&g, r);
        let lost = h
            .iter()
            .find(|e| e["jobGraphRunId"] == dead.as_str() && e["status"] == "PARTITION_FAILED")
            .unwrap_or_else(|| panic!("{r} not failed in the dead run: {h:?}"));
        assert_eq!(lost["failureCause"], "FAILURE_CAUSE_OWNER_RUN_LOST");
        let last = h.last().unwrap();
        assert_eq!(last["status"], "PARTITION_AVAILABLE");
        assert_eq!(last["jobGraphRunId"], waiter_id);
    }
}

#[test]
fn why_explains_missing_stale_and_failed_partitions_in_one_line() {
    let g = TestGraph::new(&graph(&[("up", ""), ("mid", ""), ("top", "")]));
    job(&g, "up", None, "if [ \"$r\" = up/2 ]; then exit 3; fi");
    job(&g, "mid", Some("up"), "");
    job(&g, "top", Some("mid"), "");
    let out = g.run(&["build", "top/1", "top/2"]);
    assert_code(&out, 1);
    let out = g.run(&["partitions", "invalidate", "up/1", "--reason", "bad dump"]);
    assert_code(&out, 0);

    for (name, r) in [
        ("why_missing_never_built", "top/9"),
        ("why_missing_unproduced", "external/1"),
        ("why_stale", "top/1"),
        ("why_failed", "top/2"),
    ] {
        let out = g.run(&["partitions", "why", r]);
        assert_code(&out, 0);
        assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
        insta::assert_snapshot!(name, g.redact(&out.stdout));
    }
    g.assert_bel_intact();
}

/// Job runs per label of graph run `run_id`, counted from JOB_RUNNING events.
fn job_runs_per_label(g: &TestGraph, run_id: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeSet::new();
    let mut per_label = BTreeMap::new();
    for e in g.events() {
        let Some(j) = e["jobGraphRunEvent"].get("jobEvent") else {
            continue;
        };
        if j["jobGraphRunId"] != run_id || j["status"] != "JOB_RUNNING" {
            continue;
        }
        if seen.insert(j["jobRunId"].as_str().unwrap().to_string()) {
            *per_label
                .entry(j["label"]["label"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    per_label
}

#[test]
fn invalidating_one_upstream_partition_rebuilds_exactly_what_was_built_from_it() {
    const WEEK: &str = "reports/weekly/week=2025-01-06";
    const RAW: &str = "reviews/raw/date=2025-01-08";
    const NEXT_DAILY: &str = "reviews/daily/date=2025-01-09";
    let g = example_graph();
    assert_code(&g.run(&["partitions", "register", "catalog/podcasts"]), 0);
    let first = g.run(&["--json", "build", WEEK]);
    assert_code(&first, 0);
    assert_eq!(outcome(&first)["jobRuns"], 22);

    let out = g.run(&["partitions", "invalidate", RAW, "--reason", "bad API dump"]);
    assert_code(&out, 0);
    let affected = [
        RAW,
        "reviews/clean/date=2025-01-08",
        "reviews/daily/date=2025-01-08",
        "reviews/daily_top/date=2025-01-08",
        WEEK,
    ];
    let stale: BTreeSet<&str> = out.stdout.lines().skip(1).map(str::trim).collect();
    assert_eq!(stale, BTreeSet::from(affected), "{}", out.stdout);
    assert!(out.stdout.starts_with("5 partitions now stale:"));
    for (r, s) in g.partitions() {
        let want = if affected.contains(&r.as_str()) {
            "PARTITION_STALE"
        } else {
            "PARTITION_AVAILABLE"
        };
        assert_eq!(s, want, "{r}");
    }

    let second = g.run(&["--json", "build", WEEK]);
    assert_code(&second, 0);
    let o = outcome(&second);
    let run_id = o["jobGraphRunId"].as_str().unwrap();
    assert_eq!(
        job_runs_per_label(&g, run_id),
        BTreeMap::from([
            ("clean_reviews".to_string(), 1),
            ("daily_summary".to_string(), 1),
            ("ingest_reviews".to_string(), 1),
            ("weekly_report".to_string(), 1),
        ])
    );
    assert_eq!(o["jobRuns"], 4);
    assert_eq!(
        strings(&o["built"]),
        affected.iter().map(|r| r.to_string()).collect()
    );
    for (r, s) in g.partitions() {
        assert_eq!(s, "PARTITION_AVAILABLE", "{r}");
    }
    // The next day's summary reads 2025-01-08 as a QUERY input: rebuilding that day never
    // made it stale.
    let h = history(&g, NEXT_DAILY);
    assert!(
        h.iter().all(|e| e["status"] != "PARTITION_STALE"),
        "{NEXT_DAILY}: {h:?}"
    );
    let third = g.run(&["build", WEEK]);
    assert_code(&third, 0);
    assert!(
        third.stdout.starts_with("nothing to do"),
        "{}",
        third.stdout
    );
    g.assert_bel_intact();
}

#[test]
fn events_follow_prints_another_process_s_build_as_it_happens() {
    let g = TestGraph::new(&graph(&[("g", "")]));
    job(&g, "g", None, WAIT_FOR_GO);
    // Create the event log first, so the follower reads the one the build writes.
    assert_code(&g.run(&["partitions", "list"]), 0);
    let mut follower = KillOnDrop(
        g.command(&["events", "--follow"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = follower.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut wait_line = |what: &str, want: &dyn Fn(&str) -> bool| loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = want(&line);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(_) => panic!("timed out waiting for {what}; follower printed:\n{seen:#?}"),
        }
    };

    let mut build = g.spawn(&["--json", "build", "g/1"]);
    wait_line("the job's JOB_RUNNING event", &|l| {
        l.contains("job g JOB_RUNNING")
    });
    assert!(
        build.try_wait().unwrap().is_none(),
        "the build ended before its events were followed"
    );
    g.write("go", "");
    let out = finish(build);
    assert_code(&out, 0);
    let run_id = outcome(&out)["jobGraphRunId"].as_str().unwrap().to_string();
    let want = format!("graph run {run_id} GRAPH_SUCCESS");
    wait_line("the build's GRAPH_SUCCESS event", &|l| l.contains(&want));

    drop(follower);
    reader.join().unwrap();
}

/// Runs a bad command: exit 2, one snapshotted error, and the event log unchanged.
fn assert_refused(g: &TestGraph, name: &str, args: &[&str]) {
    let before = g.assert_bel_intact();
    let out = g.run(args);
    assert_code(&out, 2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    insta::assert_snapshot!(name, g.redact(&out.stderr));
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "{name}: the event log changed"
    );
}

#[test]
fn bad_catalog_requests_are_refused_and_change_nothing() {
    let g = TestGraph::new(&graph(&[("p", ""), ("f", "")]));
    job(&g, "p", None, "");
    job(&g, "f", None, "exit 3");
    assert_code(&g.run(&["build", "p/1", "f/1"]), 1);
    assert_eq!(g.status("f/1").as_deref(), Some("PARTITION_FAILED"));

    assert_refused(
        &g,
        "partitions_list_unknown_status",
        &["partitions", "list", "--status", "bogus"],
    );
    assert_refused(
        &g,
        "partitions_list_invalid_pattern",
        &["partitions", "list", "--pattern", "("],
    );
    assert_refused(&g, "deps_negative_depth", &["deps", "p/1", "--depth", "-1"]);
    assert_refused(
        &g,
        "register_a_produced_ref",
        &["partitions", "register", "p/7"],
    );
    assert_refused(
        &g,
        "register_an_empty_ref",
        &["partitions", "register", "ext/1", ""],
    );
    assert_refused(
        &g,
        "register_a_ref_with_a_tab",
        &["partitions", "register", "--force", "ext/1", "a\tb"],
    );
    assert_refused(
        &g,
        "invalidate_unknown_ref",
        &["partitions", "invalidate", "nope/1"],
    );
    assert_refused(
        &g,
        "invalidate_a_failed_partition",
        &["partitions", "invalidate", "f/1"],
    );

    let before = g.assert_bel_intact();
    let out = g.run(&["partitions", "register", "--force", "p/7"]);
    assert_code(&out, 0);
    assert_eq!(g.status("p/7").as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(g.assert_bel_intact(), before + 1);
}

#[test]
fn event_log_locked_by_another_writer_fails_clearly_after_the_busy_timeout() {
    let g = TestGraph::new(&graph(&[("p", "")]));
    job(&g, "p", None, "");
    assert_code(&g.run(&["build", "p/1"]), 0);
    let before = g.assert_bel_intact();

    let lock = rusqlite::Connection::open(g.bel_path()).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let bel = format!("sqlite://{}?busy_timeout_ms=300", g.bel_path().display());
    let started = Instant::now();
    let out = g.run(&["--bel", &bel, "partitions", "register", "external/1"]);
    let took = started.elapsed();
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    // Exit 1, as for any build that could not record its events (2 is for bad usage).
    assert_code(&out, 1);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
    let ms = regex::Regex::new(r"\d+ ms").unwrap();
    insta::assert_snapshot!(
        "event_log_locked",
        ms.replace_all(&g.redact(&out.stderr), "[N] ms")
    );
    assert_eq!(g.assert_bel_intact(), before);
    assert_eq!(g.status("external/1"), None);

    // Once the lock is gone the same command works.
    let out = g.run(&["--bel", &bel, "partitions", "register", "external/1"]);
    assert_code(&out, 0);
    assert_eq!(g.assert_bel_intact(), before + 1);
}
