//! Versions and early cutoff: bumping a job's `version` (or editing a `version_files`
//! file) reruns exactly that job's partitions that are asked for and what is downstream of
//! them; a rebuild with the digest it had before leaves downstream fresh, one with another
//! digest makes exactly the downstream rerun; after an `invalidate`, partitions whose
//! inputs kept their digests are made fresh without running; `why` and `partitions list
//! --outdated` say so; and the bad inputs (a `version_files` pattern matching nothing, a
//! bad digests file, an output missing at its `path`) each get a clear message.

use crate::util::{example_graph, jobs_graph, ref_job, Output, TestGraph};

const WEEK: &str = "reports/weekly/week=2025-01-06";

fn ok(out: &Output) {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

/// The refs the jobs of graph `g` executed (its `execs` file), and empties it.
fn take_execs(g: &TestGraph) -> Vec<String> {
    let path = g.path().join("execs");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(path);
    let mut execs: Vec<String> = text.lines().map(String::from).collect();
    execs.sort();
    execs
}

/// The labels of the job runs a build's text output started, sorted.
fn started(out: &Output) -> Vec<String> {
    let mut labels: Vec<String> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter_map(|l| l.strip_prefix("start "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    labels.sort();
    labels
}

fn set_version(g: &TestGraph, job: &str, version: &str) {
    let path = g.path().join("databuild.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let line = format!("label = \"{job}\"\n");
    let edited = toml.replacen(&line, &format!("{line}version = \"{version}\"\n"), 1);
    assert_ne!(toml, edited, "no job `{job}`");
    std::fs::write(path, edited).unwrap();
}

#[test]
fn bumping_a_version_reruns_that_jobs_partitions_and_what_is_downstream_only() {
    let g = example_graph();
    ok(&g.run(&["partitions", "register", "catalog/podcasts"]));
    ok(&g.run(&["build", WEEK]));
    set_version(&g, "daily_summary", "2");

    let listed = g.run(&["partitions", "list", "--outdated"]);
    ok(&listed);
    assert_eq!(
        listed.stdout.lines().count(),
        14,
        "7 days × 2 outputs: {}",
        listed.stdout
    );
    let why = g.run(&["partitions", "why", "reviews/daily/date=2025-01-07"]);
    insta::assert_snapshot!("version_why_outdated", why.stdout.trim());

    let kept = g.run(&["build", "--keep-outdated", WEEK]);
    ok(&kept);
    assert!(kept.stdout.contains("nothing to do"), "{}", kept.stdout);

    let out = g.run(&["build", WEEK]);
    ok(&out);
    let mut expected = vec!["daily_summary".to_string(); 7];
    expected.push("weekly_report".into());
    assert_eq!(started(&out), expected, "{}", out.stderr);
    assert!(
        out.stdout.contains("built 15 partitions with 8 job runs"),
        "{}",
        out.stdout
    );
    let again = g.run(&["build", WEEK]);
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);
    assert_eq!(g.run(&["partitions", "list", "--outdated"]).stdout, "");
    g.assert_bel_intact();
}

#[test]
fn editing_a_version_file_makes_its_job_outdated() {
    let g = TestGraph::new(&jobs_graph(
        "versions",
        &[
            ("up", "version = \"1\"\nversion_files = [\"lib/*.sh\"]"),
            ("down", ""),
        ],
    ));
    g.write("lib/helper.sh", "echo 1\n");
    ref_job(&g, "up", "", "true");
    ref_job(
        &g,
        "down",
        r#"inputs=$(dep MATERIALIZE "up/${r#down/}")"#,
        "true",
    );
    ok(&g.run(&["build", "down/1"]));
    assert_eq!(take_execs(&g), ["down/1", "up/1"]);
    ok(&g.run(&["build", "down/1"]));
    assert!(take_execs(&g).is_empty(), "nothing changed");
    g.write("lib/helper.sh", "echo 2\n");
    ok(&g.run(&["build", "down/1"]));
    assert_eq!(
        take_execs(&g),
        ["down/1", "up/1"],
        "the edited file reruns both"
    );
}

/// A chain `a` → `b` → `c` whose jobs copy their input and append a line; `a` copies
/// `seed`. Outputs are at `out/<ref>`, which databuild hashes (`path`).
fn chain() -> TestGraph {
    let g = TestGraph::new(&jobs_graph(
        "cutoff",
        &[
            ("a", "path = \"out/{ref}\""),
            ("b", "path = \"out/{ref}\""),
            ("c", "path = \"out/{ref}\""),
        ],
    ));
    let copy = |from: &str| {
        format!(r#"mkdir -p "out/$(dirname "$r")"; {{ {from}; echo "$r"; }} > "out/$r""#)
    };
    ref_job(&g, "a", "", &copy("cat seed"));
    ref_job(
        &g,
        "b",
        r#"inputs=$(dep MATERIALIZE "a/${r#b/}")"#,
        &copy(r#"cat "out/a/${r#b/}""#),
    );
    ref_job(
        &g,
        "c",
        r#"inputs=$(dep MATERIALIZE "b/${r#c/}")"#,
        &copy(r#"cat "out/b/${r#c/}""#),
    );
    g.write("seed", "1\n");
    g
}

#[test]
fn a_rebuild_with_the_same_digest_leaves_downstream_fresh_and_another_digest_reruns_it() {
    let g = chain();
    ok(&g.run(&["build", "c/1"]));
    assert_eq!(take_execs(&g), ["a/1", "b/1", "c/1"]);

    // Same bytes: same digest, nothing downstream goes STALE.
    ok(&g.run(&["build", "--force", "a/1"]));
    assert_eq!(take_execs(&g), ["a/1"]);
    let statuses: Vec<(String, String)> = g.partitions();
    assert!(
        statuses.iter().all(|(_, s)| s == "PARTITION_AVAILABLE"),
        "{statuses:?}"
    );
    let out = g.run(&["build", "c/1"]);
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    assert!(take_execs(&g).is_empty());

    // One byte more: exactly the downstream reruns.
    g.write("seed", "1!\n");
    ok(&g.run(&["build", "--force", "a/1"]));
    ok(&g.run(&["build", "c/1"]));
    assert_eq!(take_execs(&g), ["a/1", "b/1", "c/1"]);
    g.assert_bel_intact();
}

#[test]
fn after_an_invalidate_partitions_whose_inputs_kept_their_digests_are_not_rebuilt() {
    let g = chain();
    ok(&g.run(&["build", "c/1"]));
    take_execs(&g);
    ok(&g.run(&["partitions", "invalidate", "a/1"]));
    let out = g.run(&["build", "c/1"]);
    ok(&out);
    assert_eq!(take_execs(&g), ["a/1"], "one job instead of three");
    assert!(
        out.stdout.contains("built 1 partition with 1 job run; 2 partitions kept without running (inputs unchanged)"),
        "{}",
        out.stdout
    );
    let why = g.run(&["partitions", "why", "c/1"]);
    insta::assert_snapshot!(
        "version_why_cut_off",
        why.stdout.trim().replace(&run_id(&why.stdout), "<run>")
    );
    // A partition invalidated itself is rebuilt even though its inputs did not change.
    ok(&g.run(&["partitions", "invalidate", "b/1"]));
    ok(&g.run(&["build", "c/1"]));
    assert_eq!(
        take_execs(&g),
        ["b/1"],
        "b reruns; c keeps its build (same digest)"
    );
    g.assert_bel_intact();
}

fn run_id(text: &str) -> String {
    text.split("graph run `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn digests_reported_by_the_job_decide_too() {
    let g = TestGraph::new(&jobs_graph("digests", &[("src", ""), ("dst", "")]));
    ref_job(
        &g,
        "src",
        "",
        r#"printf '{"%s": "%s"}' "$r" "$(cat seed)" > "$DATABUILD_DIGESTS""#,
    );
    ref_job(
        &g,
        "dst",
        r#"inputs=$(dep MATERIALIZE "src/${r#dst/}")"#,
        "true",
    );
    g.write("seed", "v1");
    ok(&g.run(&["build", "dst/1"]));
    take_execs(&g);
    ok(&g.run(&["build", "--force", "src/1"]));
    ok(&g.run(&["build", "dst/1"]));
    assert_eq!(
        take_execs(&g),
        ["src/1"],
        "same reported digest: dst stays fresh"
    );
    g.write("seed", "v2");
    ok(&g.run(&["build", "--force", "src/1"]));
    ok(&g.run(&["build", "dst/1"]));
    assert_eq!(take_execs(&g), ["dst/1", "src/1"]);
}

#[test]
fn bad_version_files_digests_and_paths_are_clear_errors() {
    // A `version_files` pattern that matches nothing: the graph does not load.
    let g = TestGraph::new(&jobs_graph(
        "bad",
        &[("j", "version_files = [\"lib/*.py\"]")],
    ));
    ref_job(&g, "j", "", "true");
    let out = g.run(&["build", "j/1"]);
    assert_eq!(out.code, 2);
    insta::assert_snapshot!(
        "version_files_match_nothing",
        out.stderr
            .trim()
            .replace(&g.path().display().to_string(), "<graph dir>")
    );

    // A digests file that is not JSON, or names a ref the job did not build; an output
    // missing at the job's `path`: the partition FAILED with why, the log intact.
    let g = TestGraph::new(&jobs_graph(
        "bad",
        &[
            ("notjson", ""),
            ("other", ""),
            ("nopath", "path = \"out/{ref}\""),
        ],
    ));
    ref_job(
        &g,
        "notjson",
        "",
        r#"echo 'not json' > "$DATABUILD_DIGESTS""#,
    );
    ref_job(
        &g,
        "other",
        "",
        r#"echo '{"other/2": "x"}' > "$DATABUILD_DIGESTS""#,
    );
    ref_job(&g, "nopath", "", "true");
    for (r, name) in [
        ("notjson/1", "digests_not_json"),
        ("other/1", "digests_other_ref"),
        ("nopath/1", "output_missing_at_path"),
    ] {
        let out = g.run(&["build", r]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        let reason = g.run(&["--json", "partitions", "show", r]);
        let v: serde_json::Value = serde_json::from_str(&reason.stdout).unwrap();
        assert_eq!(v["status"], "PARTITION_FAILED");
        assert_eq!(v["failureCause"], "FAILURE_CAUSE_JOB_FAILED");
        let reason = v["failureReason"].as_str().unwrap();
        let reason = reason.split(" (job run `").next().unwrap();
        insta::assert_snapshot!(name, reason);
    }
    g.assert_bel_intact();
}
