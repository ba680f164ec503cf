//! `analyze --estimate`: counts from the plan, times from each job's past successful job
//! runs, checked against a build of the same partitions with jobs that sleep a known time.

use std::time::{Duration, Instant};

use crate::util::{assert_code, TestGraph};

/// How long each job run sleeps.
const SLEEP: &str = "0.5";

/// Job `raw` makes `raw/<n>`; job `sum` makes `sum/<n>` from `raw/<n>` (MATERIALIZE).
/// Each job run sleeps [`SLEEP`] seconds.
fn graph() -> TestGraph {
    let g = TestGraph::new(
        "[graph]\nlabel = \"estimate\"\n\n[[jobs]]\nlabel = \"raw\"\nentrypoint = [\"jobs/raw\"]\nproduces = ['raw/\\d+']\n\n[[jobs]]\nlabel = \"sum\"\nentrypoint = [\"jobs/sum\"]\nproduces = ['sum/\\d+']\n",
    );
    g.script(
        "raw",
        &format!(
            r#"if [ "$1" = config ]; then
    shift
    sep=""
    printf '{{"configs":['
    for r in "$@"; do
        printf '%s{{"outputs":[{{"str":"%s"}}],"inputs":[]}}' "$sep" "$r"
        sep=,
    done
    printf ']}}\n'
    exit 0
fi
sleep {SLEEP}"#
        ),
    );
    g.script(
        "sum",
        &format!(
            r#"if [ "$1" = config ]; then
    shift
    sep=""
    printf '{{"configs":['
    for r in "$@"; do
        printf '%s{{"outputs":[{{"str":"%s"}}],"inputs":[{{"depType":"MATERIALIZE","partitionRef":{{"str":"raw/%s"}}}}]}}' "$sep" "$r" "${{r#sum/}}"
        sep=,
    done
    printf ']}}\n'
    exit 0
fi
sleep {SLEEP}"#
        ),
    );
    g
}

fn estimate_json(g: &TestGraph, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "analyze", "--estimate"];
    all.extend_from_slice(args);
    let out = g.run(&all);
    assert_code(&out, 0);
    serde_json::from_str(&out.stdout).expect("estimate json")
}

/// After `sum/1..4` were built, `sum/3..10` at -j 2 wants 8 partitions of which 2 are
/// there, plans 12 job runs, and predicts a wall time within a factor of two of a real
/// build's.
#[test]
fn estimate_is_within_twice_a_measured_build() {
    let g = graph();
    assert_code(&g.run(&["build", "-j", "4", "sum/[1..4]"]), 0);

    let e = estimate_json(&g, &["-j", "2", "sum/[3..10]"]);
    assert_eq!(e["wanted"], 8, "{e}");
    assert_eq!(e["available"], 2, "{e}");
    assert_eq!(e["jobRuns"], 12, "{e}");
    assert_eq!(e["partitionsBuilt"], 12, "{e}");
    assert_eq!(e["parallelism"], 2, "{e}");
    assert_eq!(e["partial"], false, "{e}");
    assert_eq!(e["noHistory"], serde_json::json!([]), "{e}");
    assert_eq!(e["criticalPathTasks"], 2, "{e}");
    for job in ["raw", "sum"] {
        let p50 = e["p50Micros"][job].as_u64().expect("a median per job");
        assert!(
            p50 >= 500_000,
            "{job} p50 {p50} µs is less than it sleeps: {e}"
        );
    }
    let micros = |k: &str| Duration::from_micros(e[k].as_u64().unwrap());
    let (job_time, wall) = (micros("jobTimeMicros"), micros("wallTimeMicros"));
    assert!(job_time >= Duration::from_secs(6), "{e}");
    assert!(wall >= job_time / 2 && wall < job_time, "{e}");

    let started = Instant::now();
    let out = g.run(&["build", "-j", "2", "sum/[3..10]"]);
    let measured = started.elapsed();
    assert_code(&out, 0);
    assert!(
        out.stdout.contains("built 12 partitions with 12 job runs"),
        "{}",
        out.stdout
    );
    assert!(
        wall <= measured * 2 && wall * 2 >= measured,
        "estimated {wall:?}, measured {measured:?}"
    );

    // Now everything wanted is there: nothing to run.
    let e = estimate_json(&g, &["-j", "2", "sum/[3..10]"]);
    assert_eq!(
        (e["wanted"].as_u64(), e["available"].as_u64()),
        (Some(8), Some(8))
    );
    assert_eq!(
        (e["jobRuns"].as_u64(), e["wallTimeMicros"].as_u64()),
        (Some(0), Some(0))
    );
    g.assert_bel_intact();
}

/// A job that never ran is named, left out of the times, and the estimate says it is
/// partial; the text shape is stable once durations are blanked.
#[test]
fn estimate_without_history_says_so() {
    let g = graph();
    assert_code(&g.run(&["build", "raw/[1..2]"]), 0);
    let before = g.events();
    let out = g.run(&["analyze", "--estimate", "-j", "2", "sum/[1..3]"]);
    assert_code(&out, 0);
    insta::assert_snapshot!("estimate_partial", g.redact(&out.stdout));
    assert_eq!(g.events(), before, "estimating wrote to the event log");

    let e = estimate_json(&g, &["-j", "2", "sum/[1..3]"]);
    assert_eq!(e["jobRuns"], 4, "{e}");
    assert_eq!(e["partial"], true, "{e}");
    assert_eq!(
        e["noHistory"],
        serde_json::json!([{"job": "sum", "jobRuns": 3}]),
        "{e}"
    );
    // Only `raw/3` is counted: one median of `raw`.
    assert_eq!(e["jobTimeMicros"], e["p50Micros"]["raw"], "{e}");
}
