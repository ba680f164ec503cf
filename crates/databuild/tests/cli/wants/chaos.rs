//! `kill -9` of `databuild serve` (and its reconciler) at random moments while a schedule
//! ticks and wants are being built, then a restart, several times: no tick is lost (within
//! `catchup`) or recorded twice, no partition is built by two jobs at once, and in the end
//! every want is satisfied. The test counts the kills and what survived them.

use std::{collections::BTreeSet, time::Duration};

use super::{tick_seconds, wants};
use crate::{
    service::Service,
    util::{assert_code, jobs_graph, ref_job, wait_for, wait_for_or, TestGraph},
};

#[test]
fn kill_9_of_the_reconciler_loses_no_tick_and_doubles_nothing() {
    let toml = format!(
        "{}\n[[wants]]\nname = \"s\"\nref = \"t/{{n}}\"\nn = \"tick as %s\"\nevery = \"1s\"\ncatchup = \"1h\"\n",
        jobs_graph("chaos", &[("t", "")])
    );
    let g = TestGraph::new(&toml);
    // A job holds a lock directory while it runs: a second execution of one partition at
    // the same time fails to take it and records the overlap.
    ref_job(
        &g,
        "t",
        "",
        r#"mkdir -p locks
if ! mkdir "locks/$name" 2>/dev/null; then echo "$r" >> overlaps; exit 1; fi
sleep 0.$(( $(od -An -N1 -tu1 /dev/urandom) % 3 ))
echo "$r" >> built
rmdir "locks/$name""#,
    );
    let mut rng: u64 = std::process::id() as u64 * 2654435761 % 1_000_003 + 1;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let kills = 4;
    for round in 0..kills {
        let s = Service::start(&g, &["-j", "2"]);
        if round == 0 {
            assert_code(&g.run(&["want", "t/[1..20]"]), 0);
        }
        // Let it work for a random while (at least one pass), then kill -9.
        let built_before = std::fs::read_to_string(g.path().join("built"))
            .unwrap_or_default()
            .lines()
            .count();
        let target = built_before + 1 + (next() % 6) as usize;
        wait_for("some progress", Duration::from_secs(60), || {
            std::fs::read_to_string(g.path().join("built"))
                .unwrap_or_default()
                .lines()
                .count()
                >= target
        });
        let _ = std::process::Command::new("kill")
            .args(["-9", &s.pid().to_string()])
            .status();
        drop(s);
        // Jobs die with it (their death signal); their locks stay: clear them, as the
        // next run's claims do for its own jobs.
        let _ = std::fs::remove_dir_all(g.path().join("locks"));
    }
    let mut s = Service::start(&g, &["-j", "2"]);
    // The schedule keeps adding a want a second: wait for the 20 asked for and every tick's
    // want older than a few seconds.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // The wants not yet satisfied (ticks of the last few seconds aside), and whether all
    // 20 asked for exist.
    let pending = || {
        let w = wants(&g, &[]);
        let all_asked = w.len() >= 20;
        let left: Vec<(String, String)> = w
            .into_iter()
            .filter(|(_, (r, st))| {
                let tick: Option<i64> = r
                    .strip_prefix("t/")
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 1000);
                st != "WANT_SATISFIED" && tick.is_none_or(|t| t <= now)
            })
            .map(|(id, (r, _))| (id, r))
            .collect();
        (all_asked, left)
    };
    wait_for_or(
        "every want satisfied",
        Duration::from_secs(120),
        || matches!(pending(), (true, left) if left.is_empty()),
        // Say why: each want still pending, its history and its partition's.
        || {
            let (all_asked, left) = pending();
            let mut why = format!("all 20 wants asked: {all_asked}; pending: {left:?}\n");
            for (id, r) in left.iter().take(5) {
                why += &g.run(&["wants", "show", id]).stdout;
                why += &g.run(&["partitions", "history", r]).stdout;
            }
            why
        },
    );
    assert_eq!(s.signal_and_wait("TERM"), 0);
    // No partition built by two jobs at once.
    let overlaps = std::fs::read_to_string(g.path().join("overlaps")).unwrap_or_default();
    assert!(overlaps.is_empty(), "overlapping executions: {overlaps}");
    // Each tick recorded once, and none lost between the first and the last.
    let mut created = BTreeSet::new();
    for e in g.events() {
        let w = &e["wantEvent"];
        if w["status"] == "WANT_ACTIVE" && w["wantId"].as_str().unwrap().starts_with("s@") {
            assert!(
                created.insert(w["wantId"].as_str().unwrap().to_string()),
                "{w}"
            );
        }
    }
    let ticks: Vec<i64> = created
        .iter()
        .filter(|id| id.starts_with("s@"))
        .map(|id| tick_seconds(id))
        .collect();
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 1, "a tick lost: {ticks:?}");
    }
    eprintln!(
        "kill -9 of the service {kills} times: {} ticks recorded once each and none lost, 0 overlapping executions",
        ticks.len()
    );
    g.assert_bel_intact();
}
