//! Schedules: a `[[wants]]` with `every = "2s"` creates a want each tick and they are
//! built; a restart replays the ticks missed within `catchup`, and no tick is recorded or
//! built twice.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use super::{tick_seconds, wants};
use crate::{
    service::Service,
    util::{assert_code, jobs_graph, ref_job, wait_for, TestGraph},
};

fn scheduled_graph(extra: &str) -> TestGraph {
    let toml = format!(
        "{}\n[[wants]]\nname = \"often\"\nref = \"t/{{tick}}\"\nevery = \"2s\"\ncatchup = \"1h\"\nttl = \"1h\"\n{extra}",
        jobs_graph("scheduled", &[("t", "")])
    );
    let g = TestGraph::new(&toml);
    ref_job(&g, "t", "", "true");
    g
}

/// The ticks of schedule `often` from its want ids, oldest first.
fn ticks(g: &TestGraph) -> Vec<i64> {
    wants(g, &[])
        .keys()
        .map(|id| {
            assert!(id.starts_with("often@"), "a scheduled want id: {id}");
            tick_seconds(id)
        })
        .collect()
}

#[test]
fn an_interval_schedule_wants_each_tick_and_a_restart_replays_the_missed_ones_once() {
    let g = scheduled_graph("");
    let mut s = Service::start(&g, &[]);
    wait_for("three ticks built", Duration::from_secs(30), || {
        let w = wants(&g, &[]);
        w.values().filter(|(_, s)| s == "WANT_SATISFIED").count() >= 3
    });
    assert_eq!(s.signal_and_wait("TERM"), 0);
    let before = ticks(&g);
    // Stay down for at least three ticks.
    let down = Instant::now();
    wait_for("three ticks to pass", Duration::from_secs(30), || {
        down.elapsed() >= Duration::from_secs(7)
    });
    let mut s = Service::start(&g, &[]);
    let last_before = *before.last().unwrap();
    wait_for(
        "the missed ticks replayed and built",
        Duration::from_secs(30),
        || {
            let t = ticks(&g);
            t.len() >= before.len() + 4
                && wants(&g, &[]).values().all(|(_, s)| s == "WANT_SATISFIED")
        },
    );
    assert_eq!(s.signal_and_wait("TERM"), 0);
    let after = ticks(&g);
    // Every tick from the first to the last, 2 s apart: none lost while it was down.
    for pair in after.windows(2) {
        assert_eq!(pair[1] - pair[0], 2, "ticks {after:?}");
    }
    assert!(after.iter().any(|t| *t > last_before + 4), "{after:?}");
    // Each tick recorded once: one WANT_ACTIVE event per want, one build per partition.
    let events = g.events();
    let mut created = BTreeSet::new();
    for e in &events {
        let w = &e["wantEvent"];
        if w["status"] == "WANT_ACTIVE" {
            assert!(
                created.insert(w["wantId"].as_str().unwrap().to_string()),
                "{w}"
            );
        }
    }
    assert_eq!(created.len(), after.len());
    let mut built = BTreeSet::new();
    for e in &events {
        let p = &e["partitionEvent"];
        if p["status"] == "PARTITION_AVAILABLE" {
            assert!(
                built.insert(p["partitionRef"]["str"].as_str().unwrap().to_string()),
                "{p}"
            );
        }
    }
    assert_eq!(built.len(), after.len());
    g.assert_bel_intact();
}

#[test]
fn reconcile_once_records_the_due_tick_and_builds_it() {
    let g = scheduled_graph("");
    let out = g.run(&["reconcile", "--once"]);
    assert_code(&out, 0);
    assert!(out.stderr.contains("1 ticks recorded"), "{}", out.stderr);
    let w = wants(&g, &[]);
    assert_eq!(w.len(), 1);
    assert_eq!(w.values().next().unwrap().1, "WANT_SATISFIED");
    let r = &w.values().next().unwrap().0;
    assert_eq!(g.status(r).as_deref(), Some("PARTITION_AVAILABLE"));
}
