//! Bad input is refused with exit code 2 and a message that says what, where and what to
//! do, and it never damages the event log: the graph file, partition refs, a job's
//! `config` answer, dependency cycles and the event log file itself.

use crate::util::{Output, TestGraph};

/// A graph whose one job `a` produces `x/<n>` from the external partition `ext/raw`.
const GOOD: &str = r#"[graph]
label = "g"

[[jobs]]
label = "a"
entrypoint = ["jobs/a"]
produces = ['x/\d+']
"#;

/// Job `a`: one config per requested ref, each needing `ext/raw`.
const JOB_A: &str = r#"case "$1" in
config)
  shift
  printf '{"configs":['
  sep=
  for r in "$@"; do
    printf '%s{"outputs":[{"str":"%s"}],"inputs":[{"depType":"MATERIALIZE","partitionRef":{"str":"ext/raw"}}]}' "$sep" "$r"
    sep=,
  done
  printf ']}\n'
  ;;
exec) echo "built $DATABUILD_OUTPUTS" ;;
esac"#;

/// The good graph with `ext/raw` registered, so that the event log holds events.
fn good_graph() -> TestGraph {
    let g = TestGraph::new(GOOD);
    g.script("a", JOB_A);
    let reg = g.run(&["partitions", "register", "ext/raw"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    g
}

/// Runs `args` against the graph file `bad` (after `prepare`), then puts the good graph
/// file back and checks that the event log lost nothing.
fn with_graph_file(bad: &str, prepare: impl FnOnce(&TestGraph), args: &[&str]) -> Output {
    let g = good_graph();
    let before = g.events();
    prepare(&g);
    g.write("databuild.toml", bad);
    let out = g.run(args);
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    g.write("databuild.toml", GOOD);
    assert_eq!(g.events(), before, "the event log changed");
    g.assert_bel_intact();
    Output {
        stderr: g.redact(&out.stderr),
        ..out
    }
}

/// Asserts the `n` error lines of `stderr`: no error is reported twice or in pieces.
pub(crate) fn assert_error_lines(stderr: &str, n: usize) {
    let errors = stderr.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(errors, n, "{stderr}");
    assert!(!stderr.contains("caused by"), "cause repeated: {stderr}");
}

#[test]
fn missing_graph_file_is_a_usage_error() {
    let g = TestGraph::empty();
    let out = g.run(&["build", "x/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("missing_graph_file", g.redact(&out.stderr));
    assert!(!g.bel_path().exists(), "an event log was created");
}

#[test]
fn graph_file_that_is_not_toml_shows_line_and_column() {
    let bad = "[graph]\nlabel = \"g\"\n\n[[jobs]\nlabel = \"a\"\n";
    let out = with_graph_file(bad, |_| {}, &["build", "x/1"]);
    assert!(out.stderr.contains("line 4, column 8"), "{}", out.stderr);
    insta::assert_snapshot!("graph_file_not_toml", out.stderr);
}

#[test]
fn unknown_key_in_graph_section_is_named_with_its_line() {
    let bad = "[graph]\nlabel = \"g\"\ncolour = \"red\"\n";
    let out = with_graph_file(bad, |_| {}, &["build", "x/1"]);
    assert!(out.stderr.contains("`colour`"), "{}", out.stderr);
    insta::assert_snapshot!("graph_file_unknown_graph_key", out.stderr);
}

#[test]
fn unknown_key_in_a_job_is_named_with_its_line() {
    let bad = GOOD.replace("produces", "produce");
    let out = with_graph_file(&bad, |_| {}, &["build", "x/1"]);
    assert!(out.stderr.contains("`produce`"), "{}", out.stderr);
    insta::assert_snapshot!("graph_file_unknown_job_key", out.stderr);
}

#[test]
fn duplicate_job_label_is_refused() {
    let bad = format!("{GOOD}\n[[jobs]]\nlabel = \"a\"\nentrypoint = [\"jobs/a\"]\n");
    let out = with_graph_file(&bad, |_| {}, &["build", "x/1"]);
    insta::assert_snapshot!("graph_file_duplicate_label", out.stderr);
}

#[test]
fn invalid_produces_regex_is_refused() {
    let bad = GOOD.replace(r"'x/\d+'", "'x/([0-9]+'");
    let out = with_graph_file(&bad, |_| {}, &["build", "x/1"]);
    insta::assert_snapshot!("graph_file_invalid_regex", out.stderr);
}

#[test]
fn missing_entrypoint_is_refused() {
    let bad = GOOD.replace("jobs/a", "jobs/nope");
    let out = with_graph_file(&bad, |_| {}, &["build", "x/1"]);
    insta::assert_snapshot!("graph_file_entrypoint_not_found", out.stderr);

    let bad = GOOD.replace("jobs/a", "databuild-no-such-program");
    let out = with_graph_file(&bad, |_| {}, &["build", "x/1"]);
    insta::assert_snapshot!("graph_file_entrypoint_not_on_path", out.stderr);
}

#[test]
fn entrypoint_that_is_not_executable_is_refused() {
    let bad = GOOD.replace("jobs/a", "jobs/plain");
    let out = with_graph_file(
        &bad,
        |g| g.write("jobs/plain", "#!/bin/sh\n"),
        &["build", "x/1"],
    );
    insta::assert_snapshot!("graph_file_entrypoint_not_executable", out.stderr);
}

/// Two jobs whose patterns both match `x/1...`.
fn overlapping_graph() -> String {
    format!("{GOOD}\n[[jobs]]\nlabel = \"b\"\nentrypoint = [\"jobs/a\"]\nproduces = ['x/1.*']\n")
}

#[test]
fn ref_matched_by_two_jobs_names_both_at_lookup() {
    let out = with_graph_file(&overlapping_graph(), |_| {}, &["lookup", "x/2", "x/1"]);
    assert!(
        out.stderr.contains("`a`") && out.stderr.contains("`b`"),
        "{}",
        out.stderr
    );
    assert_error_lines(&out.stderr, 1);
    insta::assert_snapshot!("lookup_ref_matched_by_two_jobs", out.stderr);
}

#[test]
fn ref_matched_by_two_jobs_names_both_at_build_and_fails_the_run() {
    let g = good_graph();
    g.write("databuild.toml", &overlapping_graph());
    let out = g.run(&["build", "x/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let stderr = g.redact(&out.stderr);
    assert!(stderr.contains("`a`") && stderr.contains("`b`"), "{stderr}");
    insta::assert_snapshot!("build_ref_matched_by_two_jobs", stderr);
    assert_analysis_failed(&g, &["x/1"]);
}

/// A graph with the good job, ready for a `build` with a bad ref; returns the events.
fn build_bad_ref(r: &str) -> (TestGraph, Output) {
    let g = good_graph();
    let before = g.events();
    let out = g.run(&["build", "x/1", r]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        g.events(),
        before,
        "a bad ref must be refused before any event"
    );
    g.assert_bel_intact();
    assert_error_lines(&out.stderr, 1);
    let stderr = g.redact(&out.stderr);
    (g, Output { stderr, ..out })
}

#[test]
fn empty_ref_is_refused() {
    let (_, out) = build_bad_ref("");
    insta::assert_snapshot!("ref_empty", out.stderr);
}

#[test]
fn ref_with_a_control_character_is_refused() {
    let (_, out) = build_bad_ref("a\tb");
    assert!(out.stderr.contains(r#""a\tb""#), "{}", out.stderr);
    insta::assert_snapshot!("ref_tab", out.stderr);
    let (_, out) = build_bad_ref("a\nb");
    assert!(out.stderr.contains(r#""a\nb""#), "{}", out.stderr);
    insta::assert_snapshot!("ref_newline", out.stderr);
}

#[test]
fn ref_over_4096_bytes_is_refused() {
    let (_, out) = build_bad_ref(&"y".repeat(4097));
    assert!(out.stderr.contains("4097 bytes"), "{}", out.stderr);
    insta::assert_snapshot!("ref_too_long", out.stderr);
}

#[test]
fn refs_no_job_produces_are_all_listed_in_one_error() {
    let g = good_graph();
    let reg = g.run(&["partitions", "register", "ext/known"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let out = g.run(&["build", "ext/3", "x/1", "ext/1", "ext/known", "ext/2"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let stderr = g.redact(&out.stderr);
    assert_error_lines(&stderr, 1);
    for r in ["`ext/1`", "`ext/2`", "`ext/3`"] {
        assert!(stderr.contains(r), "{r} missing: {stderr}");
    }
    assert!(!stderr.contains("`x/1`"), "{stderr}");
    assert!(!stderr.contains("`ext/known`"), "{stderr}");
    insta::assert_snapshot!("refs_not_produced", stderr);
    assert_analysis_failed(&g, &["ext/1", "ext/2", "ext/3", "x/1"]);
    assert_eq!(
        g.status("ext/known").as_deref(),
        Some("PARTITION_AVAILABLE")
    );
}

/// The latest graph run ended GRAPH_FAILED with a reason naming the analysis failure, and
/// none of `refs` got a partition record: a run that fails before it has a plan leaves no
/// partition behind.
pub(crate) fn assert_analysis_failed(g: &TestGraph, refs: &[&str]) {
    let runs = g.runs();
    assert_eq!(runs[0].1, "GRAPH_FAILED", "{runs:?}");
    let run_id = runs[0].0.as_str();
    let show = g.run(&["--json", "runs", "show", run_id]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let run: serde_json::Value = serde_json::from_str(&show.stdout).expect("run json");
    let reason = run["events"]
        .as_array()
        .and_then(|evs| evs.last())
        .and_then(|e| e["graphEvent"]["failureReason"].as_str())
        .unwrap_or_default();
    assert!(reason.starts_with("analysis failed: "), "{run}");
    for r in refs {
        assert_eq!(g.status(r), None, "{r} has a partition record");
        let history = g.run(&["partitions", "history", r]);
        assert_ne!(history.code, 0, "{r} has events: {}", history.stdout);
    }
    g.assert_bel_intact();
}

#[test]
fn a_typo_in_a_ref_leaves_a_failed_run_with_its_reason_and_no_partition() {
    let g = good_graph();
    let out = g.run(&["build", "foo/bar"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_analysis_failed(&g, &["foo/bar"]);
    let list = g.run(&["partitions", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(!list.stdout.contains("foo/bar"), "{}", list.stdout);
    let run_id = g.runs()[0].0.clone();
    let show = g.run(&["runs", "show", &run_id]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    // The owner line names this machine and process.
    let show: Vec<&str> = show
        .stdout
        .lines()
        .filter(|l| !l.starts_with("owner "))
        .collect();
    insta::assert_snapshot!("typo_runs_show", g.redact(&show.join("\n")));
    let runs = g.run(&["runs", "list"]);
    assert_eq!(runs.code, 0, "{}", runs.stderr);
    insta::assert_snapshot!("typo_runs_list", g.redact(&runs.stdout));
}

/// Builds `x/1 x/2` with job `a`'s `config` replaced by `body`; checks the run failed in
/// analysis and no event was lost. Returns the redacted stderr.
fn build_with_config(body: &str) -> String {
    let g = good_graph();
    let before = g.events();
    g.script(
        "a",
        &format!("case \"$1\" in\nconfig)\n{body}\n;;\nexec) exit 0 ;;\nesac"),
    );
    let out = g.run(&["build", "x/1", "x/2"]);
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_analysis_failed(&g, &["x/1", "x/2"]);
    let after = g.events();
    assert_eq!(after[..before.len()], before[..], "earlier events changed");
    let stderr = g.redact(&out.stderr);
    assert_error_lines(&stderr, 1);
    assert!(stderr.contains("job `a`"), "{stderr}");
    stderr
}

#[test]
fn config_that_exits_non_zero_fails_the_run_and_shows_its_stderr() {
    let stderr = build_with_config("echo 'cannot reach the warehouse' >&2; exit 3");
    assert!(stderr.contains("cannot reach the warehouse"), "{stderr}");
    assert!(stderr.contains("exit code 3"), "{stderr}");
    insta::assert_snapshot!("config_exit_non_zero", stderr);
}

#[test]
fn config_that_prints_non_json_fails_the_run() {
    let stderr = build_with_config("echo 'configuring...'; echo 'a warning' >&2");
    assert!(stderr.contains("configuring..."), "{stderr}");
    assert!(stderr.contains("a warning"), "{stderr}");
    insta::assert_snapshot!("config_not_json", stderr);
}

#[test]
fn config_that_prints_json_of_the_wrong_shape_fails_the_run() {
    let stderr = build_with_config(r#"echo '{"configs": 5}'"#);
    insta::assert_snapshot!("config_wrong_shape_number", stderr);
    let stderr = build_with_config(r#"echo '{"cfgs": []}'"#);
    assert!(stderr.contains("`cfgs`"), "{stderr}");
    insta::assert_snapshot!("config_wrong_shape_unknown_field", stderr);
}

#[test]
fn config_missing_a_requested_ref_fails_the_run() {
    let stderr = build_with_config(r#"echo '{"configs":[{"outputs":[{"str":"x/1"}]}]}'"#);
    assert!(stderr.contains("`x/2`"), "{stderr}");
    insta::assert_snapshot!("config_missing_ref", stderr);
}

#[test]
fn config_with_a_ref_in_two_configs_fails_the_run() {
    let stderr = build_with_config(
        r#"echo '{"configs":[{"outputs":[{"str":"x/1"},{"str":"x/2"}]},{"outputs":[{"str":"x/2"}]}]}'"#,
    );
    assert!(stderr.contains("`x/2`"), "{stderr}");
    insta::assert_snapshot!("config_ref_in_two_configs", stderr);
}

#[test]
fn config_output_outside_the_jobs_patterns_fails_the_run() {
    let stderr = build_with_config(
        r#"echo '{"configs":[{"outputs":[{"str":"x/1"},{"str":"x/2"},{"str":"y/3"}]}]}'"#,
    );
    assert!(stderr.contains("`y/3`"), "{stderr}");
    insta::assert_snapshot!("config_output_outside_patterns", stderr);
}

#[test]
fn dependency_cycle_is_printed_as_refs() {
    let g = TestGraph::new(
        r#"[graph]
label = "g"

[[jobs]]
label = "a"
entrypoint = ["jobs/a"]
produces = ['x/\d+']

[[jobs]]
label = "b"
entrypoint = ["jobs/b"]
produces = ['y/\d+']
"#,
    );
    // a: x/N needs y/N; b: y/N needs x/N.
    for (job, from, to) in [("a", "x", "y"), ("b", "y", "x")] {
        g.script(
            job,
            &format!(
                r#"[ "$1" = config ] || exit 0
n="${{2#{from}/}}"
echo '{{"configs":[{{"outputs":[{{"str":"{from}/'"$n"'"}}],"inputs":[{{"depType":"MATERIALIZE","partitionRef":{{"str":"{to}/'"$n"'"}}}}]}}]}}'"#
            ),
        );
    }
    let analyze = g.run(&["analyze", "x/1"]);
    assert_eq!(analyze.code, 2, "{}", analyze.stderr);
    assert!(
        analyze.stderr.contains("x/1 -> y/1 -> x/1"),
        "{}",
        analyze.stderr
    );

    let out = g.run(&["build", "x/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let stderr = g.redact(&out.stderr);
    assert!(stderr.contains("x/1 -> y/1 -> x/1"), "{stderr}");
    assert_error_lines(&stderr, 1);
    insta::assert_snapshot!("dependency_cycle", stderr);
    assert_analysis_failed(&g, &["x/1"]);
    assert_eq!(g.status("y/1"), None, "y/1 was never requested");
}

#[test]
fn event_log_under_a_regular_file_is_refused() {
    let g = good_graph();
    let before = g.events();
    g.write("afile", "not a directory\n");
    for (name, bel) in [
        ("bel_parent_is_a_file", "afile/bel.sqlite"),
        ("bel_ancestor_is_a_file", "afile/sub/bel.sqlite"),
    ] {
        let url = format!("sqlite://{}", g.path().join(bel).display());
        let out = g.run(&["--bel", &url, "build", "x/1"]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        let stderr = g.redact(&out.stderr);
        assert!(stderr.contains("[DIR]/afile"), "{stderr}");
        assert_error_lines(&stderr, 1);
        insta::assert_snapshot!(name, stderr);
    }
    assert_eq!(
        std::fs::read_to_string(g.path().join("afile")).unwrap(),
        "not a directory\n"
    );
    assert_eq!(g.events(), before);
    g.assert_bel_intact();
}

#[test]
fn event_log_that_is_not_a_database_is_refused_and_left_untouched() {
    let g = TestGraph::new(GOOD);
    g.script("a", JOB_A);
    let garbage = b"these are my notes, not a database\n\x00\x01\x02 and some bytes\n";
    std::fs::create_dir_all(g.bel_path().parent().unwrap()).unwrap();
    std::fs::write(g.bel_path(), garbage).unwrap();
    for (name, args) in [
        ("bel_not_a_database", &["build", "x/1"][..]),
        ("bel_not_a_database_read", &["events"][..]),
    ] {
        let out = g.run(args);
        assert_eq!(out.code, 2, "{}", out.stderr);
        let stderr = g.redact(&out.stderr);
        assert_error_lines(&stderr, 1);
        insta::assert_snapshot!(name, stderr);
    }
    assert_eq!(std::fs::read(g.bel_path()).unwrap(), garbage);
    let mut left: Vec<String> = std::fs::read_dir(g.bel_path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["bel.sqlite"], "files were added beside the log");
}

fn set_schema_version(g: &TestGraph, version: &str) {
    let db = rusqlite::Connection::open(g.bel_path()).expect("open the event log");
    let n = db
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [version],
        )
        .expect("update schema_version");
    assert_eq!(n, 1);
}

#[test]
fn event_log_from_a_newer_schema_is_refused_and_left_unchanged() {
    let g = good_graph();
    let built = g.run(&["build", "x/1"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let before = g.events();
    set_schema_version(&g, "99");
    let bytes = std::fs::read(g.bel_path()).unwrap();

    for (name, args) in [
        ("bel_newer_schema", &["build", "x/2"][..]),
        ("bel_newer_schema_read", &["events"][..]),
    ] {
        let out = g.run(args);
        assert_eq!(out.code, 2, "{}", out.stderr);
        let stderr = g.redact(&out.stderr);
        assert!(stderr.contains("99"), "{stderr}");
        assert_error_lines(&stderr, 1);
        insta::assert_snapshot!(name, stderr);
    }
    assert_eq!(
        std::fs::read(g.bel_path()).unwrap(),
        bytes,
        "the file changed"
    );

    set_schema_version(&g, &databuild_schema_version());
    assert_eq!(g.events(), before);
    assert_eq!(g.status("x/2"), None);
    g.assert_bel_intact();
}

/// The schema version a fresh event log is written with.
fn databuild_schema_version() -> String {
    let g = TestGraph::new(GOOD);
    g.script("a", JOB_A);
    assert_eq!(g.run(&["events"]).code, 0);
    let db = rusqlite::Connection::open(g.bel_path()).unwrap();
    db.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn good_build_after_a_failed_attempt_succeeds_and_keeps_the_failure() {
    let g = TestGraph::new(GOOD);
    g.script("a", JOB_A);
    let failed = g.run(&["build", "x/1"]);
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(failed.stderr.contains("`ext/raw`"), "{}", failed.stderr);
    let before = g.events();
    assert!(!before.is_empty());

    let reg = g.run(&["partitions", "register", "ext/raw"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let out = g.run(&["build", "x/1"]);
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(g.status("x/1").as_deref(), Some("PARTITION_AVAILABLE"));

    let after = g.events();
    assert_eq!(
        after[..before.len()],
        before[..],
        "the failed attempt's events changed"
    );
    let statuses: Vec<String> = g.runs().into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, ["GRAPH_SUCCESS", "GRAPH_FAILED"]);
    g.assert_bel_intact();
}
