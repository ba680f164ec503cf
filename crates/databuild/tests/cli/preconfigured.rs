//! Pre-configured refs: a job's `config` may answer for refs it was not asked for (here,
//! the whole chain upstream of the requested ref); the planner keeps those configs and
//! uses them when a later wave needs the refs, instead of calling `config` again. They are
//! validated like the requested ones, and only used when needed.

use crate::util::{jobs_graph, TestGraph};

/// A graph with one job, `chain`, producing `chain/<n>`; `chain/<n>` needs `chain/<n-1>`
/// (MATERIALIZE). Asked for `chain/<n>`, its `config` answers for `chain/<n>` down to
/// `chain/1` and appends the refs it was asked for to `config_calls`; with
/// `extra_output`, the config of `chain/1` also names that output.
fn chain_graph(extra_output: &str) -> TestGraph {
    let g = TestGraph::new(&jobs_graph("preconfigured_test", &[("chain", "")]));
    g.script(
        "chain",
        &format!(
            r#"if [ "$1" = config ]; then
    shift
    echo "$*" >> config_calls
    sep=""
    printf '{{"configs":['
    for r in "$@"; do
        n=${{r#chain/}}
        while [ "$n" -ge 1 ]; do
            inputs=""
            extra=""
            if [ "$n" -gt 1 ]; then
                inputs="{{\"depType\":\"MATERIALIZE\",\"partitionRef\":{{\"str\":\"chain/$((n - 1))\"}}}}"
            elif [ -n "{extra_output}" ]; then
                extra=",{{\"str\":\"{extra_output}\"}}"
            fi
            printf '%s{{"outputs":[{{"str":"chain/%s"}}%s],"inputs":[%s],"args":["chain/%s"]}}' "$sep" "$n" "$extra" "$inputs" "$n"
            sep=,
            n=$((n - 1))
        done
    done
    printf ']}}\n'
    exit 0
fi
echo "$2" >> execs"#
        ),
    );
    g
}

/// Lines of a file the job writes (empty when it does not exist).
fn lines(g: &TestGraph, rel: &str) -> Vec<String> {
    std::fs::read_to_string(g.path().join(rel))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn one_config_call_plans_a_chain_the_job_answers_for() {
    let g = chain_graph("");

    let plan = g.run(&["--json", "analyze", "chain/5"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 5, "{plan}");
    assert_eq!(lines(&g, "config_calls"), ["chain/5"]);

    let out = g.run(&["build", "chain/5"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(lines(&g, "config_calls"), ["chain/5", "chain/5"]);
    assert_eq!(
        lines(&g, "execs"),
        ["chain/1", "chain/2", "chain/3", "chain/4", "chain/5"]
    );
    g.assert_bel_intact();
}

#[test]
fn preconfigured_refs_already_available_are_not_built_again() {
    let g = chain_graph("");
    let out = g.run(&["build", "chain/2"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    // The answer for `chain/4` includes `chain/2` and `chain/1`: they are AVAILABLE, so
    // their kept configs are never used.
    let out = g.run(&["build", "chain/4"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("built 2 partitions with 2 job runs"),
        "{}",
        out.stdout
    );
    assert_eq!(lines(&g, "config_calls"), ["chain/2", "chain/4"]);
    assert_eq!(
        lines(&g, "execs"),
        ["chain/1", "chain/2", "chain/3", "chain/4"]
    );
    g.assert_bel_intact();
}

#[test]
fn an_invalid_preconfigured_config_fails_planning_like_a_requested_one() {
    // The config of `chain/1`, which `chain/3`'s answer includes unasked, names an output
    // outside the job's patterns.
    let g = chain_graph("other/1");
    let out = g.run(&["build", "chain/3"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "job `chain`: `config` returned output `other/1`, which matches none of the job's `produces` patterns"
        ),
        "{}",
        out.stderr
    );
    assert!(lines(&g, "execs").is_empty());
    g.assert_bel_intact();
}
