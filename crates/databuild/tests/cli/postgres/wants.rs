//! Two `databuild serve` processes, each running the reconciler, on one PostgreSQL event
//! log: 200 wants are built once each, and every schedule tick is recorded and built once.

use std::{collections::BTreeSet, time::Duration};

use super::harness::{assert_intact, events, execs, graph_dir, partitions, run, Database};
use crate::{
    service::Service,
    util::{assert_code, wait_for},
};

#[test]
fn two_services_build_each_wanted_partition_and_each_tick_once() {
    let db = Database::new();
    let dir = tempfile::tempdir().unwrap();
    let execs_path = dir.path().join("execs");
    let g = graph_dir(&[("a", None, "sleep 0.01")], &execs_path);
    let toml = std::fs::read_to_string(g.path().join("databuild.toml")).unwrap();
    g.write(
        "databuild.toml",
        &format!("{toml}\n[[wants]]\nname = \"each_second\"\nref = \"a/{{n}}\"\nn = \"tick as %s\"\nevery = \"1s\"\ncatchup = \"1h\"\n"),
    );
    let mut one = Service::start(&g, &["--bel", &db.url, "-j", "2"]);
    let mut two = Service::start(&g, &["--bel", &db.url, "-j", "2"]);
    let out = run(&g, &db.url, &["want", "a/[0..199]"]);
    assert_code(&out, 0);
    assert_eq!(out.stdout.lines().count(), 200);
    wait_for(
        "200 wanted partitions built",
        Duration::from_secs(120),
        || {
            let p = partitions(&g, &db.url);
            (0..200).all(|i| {
                p.get(&format!("a/{i}"))
                    .is_some_and(|s| s == "PARTITION_AVAILABLE")
            })
        },
    );
    // Let both run through a few more ticks together.
    wait_for("five ticks", Duration::from_secs(30), || {
        scheduled(&g, &db.url).len() >= 5
    });
    assert_eq!(one.signal_and_wait("TERM"), 0);
    assert_eq!(two.signal_and_wait("TERM"), 0);

    // Every wanted partition and every tick's partition executed exactly once.
    let ran = execs(&execs_path);
    let doubled: Vec<_> = ran.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "built twice: {doubled:?}");
    for i in 0..200 {
        assert_eq!(ran.get(&format!("a/{i}")), Some(&1), "a/{i}");
    }
    // Each tick recorded once (one WANT_ACTIVE per want id), one second apart.
    let ticks = scheduled(&g, &db.url);
    let mut ids = BTreeSet::new();
    for id in &ticks {
        assert!(ids.insert(id.clone()), "tick recorded twice: {id}");
    }
    let seconds: Vec<i64> = ticks
        .iter()
        .map(|id| crate::wants::tick_seconds(id))
        .collect();
    for pair in seconds.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "{ticks:?}");
    }
    for s in &seconds {
        let r = format!("a/{s}");
        assert!(ran.get(&r).is_none_or(|n| *n == 1), "{r}");
    }
    assert_intact(&g, &db.url);
}

/// The ids of the schedule's wants, in log order of their creation.
fn scheduled(g: &crate::util::TestGraph, url: &str) -> Vec<String> {
    events(g, url)
        .iter()
        .filter(|e| e["wantEvent"]["status"] == "WANT_ACTIVE")
        .filter_map(|e| e["wantEvent"]["wantId"].as_str())
        .filter(|id| id.starts_with("each_second@"))
        .map(str::to_string)
        .collect()
}
