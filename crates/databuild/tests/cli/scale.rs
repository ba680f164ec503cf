//! Graphs at scale: a task with 100,000 MATERIALIZE inputs is planned, and thousands of
//! jobs with Unicode-class patterns load and answer lookups.

use crate::util::TestGraph;

/// A graph with one job, `fanin`, producing `all` and `in/i=<k>`: `all` needs the `n`
/// inputs `in/i=0` .. `in/i=<n-1>`, and the one `config` call for `all` answers for them
/// too (pre-configured refs), by printing a prepared answer.
fn fanin_graph(n: usize) -> TestGraph {
    let g = TestGraph::new(
        "[graph]\nlabel = \"fanin_test\"\n\n[[jobs]]\nlabel = \"fanin\"\n\
         entrypoint = [\"jobs/fanin\"]\nproduces = ['all', 'in/i=\\d+']\n",
    );
    let mut answer = String::from(r#"{"configs":[{"outputs":[{"str":"all"}],"inputs":["#);
    for k in 0..n {
        if k > 0 {
            answer.push(',');
        }
        answer.push_str(&format!(
            r#"{{"depType":"MATERIALIZE","partitionRef":{{"str":"in/i={k}"}}}}"#
        ));
    }
    answer.push_str(r#"],"args":["all"]}"#);
    for k in 0..n {
        answer.push_str(&format!(
            r#",{{"outputs":[{{"str":"in/i={k}"}}],"args":["{k}"]}}"#
        ));
    }
    answer.push_str("]}\n");
    g.write("jobs/answer.json", &answer);
    g.script(
        "fanin",
        r#"if [ "$1" = config ]; then exec cat "$(dirname "$0")/answer.json"; fi"#,
    );
    g
}

#[test]
fn a_task_with_100000_materialize_inputs_is_planned() {
    let n = 100_000;
    let g = fanin_graph(n);

    let out = g.run(&["--json", "analyze", "all"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let nodes = plan["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), n + 1);
    let all = nodes
        .iter()
        .find(|t| t["config"]["outputs"][0]["str"] == "all")
        .expect("a task for `all`");
    let inputs = all["config"]["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), n);
    assert_eq!(
        inputs[n - 1]["partitionRef"]["str"],
        format!("in/i={}", n - 1)
    );
    let leaves = nodes
        .iter()
        .filter(|t| {
            t["config"]["outputs"][0]["str"]
                .as_str()
                .is_some_and(|r| r.starts_with("in/i="))
        })
        .count();
    assert_eq!(leaves, n);
}

/// Loading compiles no pattern: 5,000 Unicode `\d` patterns used to exceed the regex size
/// limit as one set.
#[test]
fn five_thousand_jobs_with_unicode_digit_patterns_load_and_answer() {
    let mut toml = String::from("[graph]\nlabel = \"many_jobs_test\"\n");
    for k in 0..5_000 {
        toml.push_str(&format!(
            "\n[[jobs]]\nlabel = \"t{k}\"\nentrypoint = [\"jobs/noop\"]\n\
             produces = ['t{k}/date=(?P<date>\\d{{4}}-\\d{{2}}-\\d{{2}})']\n"
        ));
    }
    let g = TestGraph::new(&toml);
    g.script("noop", "exit 0");

    g.write("refs.txt", "t17/date=2025-1-1\nt5000/date=2025-01-01\n");

    let out = g.run(&[
        "lookup",
        "t0/date=2025-01-01",
        "t4999/date=2025-12-31",
        "--from-file",
        "refs.txt",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "t0/date=2025-01-01\tt0\n\
         t4999/date=2025-12-31\tt4999\n\
         t17/date=2025-1-1\t(external: no job produces it)\n\
         t5000/date=2025-01-01\t(external: no job produces it)\n"
    );
}
