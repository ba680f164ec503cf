//! Ranges and lists in refs: `build 'x/date=[2025-01-01..2025-01-31]'` asks for 31
//! partitions, `--from-file` lines expand too, `--literal` takes refs as written, and a
//! bad range is a usage error (exit 2) that leaves the event log as it was.

use crate::util::{assert_code, TestGraph};

/// A graph whose one job `daily` produces `reviews/daily/date=<day>` (no inputs); `exec`
/// appends its output to `execs`.
fn graph() -> TestGraph {
    crate::util::no_input_graph("ranges", "daily", r"reviews/daily/date=\d{4}-\d{2}-\d{2}")
}

fn execs(g: &TestGraph) -> Vec<String> {
    crate::util::sorted_lines(g, "execs")
}

fn days(month: &str, n: u32) -> Vec<String> {
    (1..=n)
        .map(|d| format!("reviews/daily/date={month}-{d:02}"))
        .collect()
}

#[test]
fn build_a_day_range_builds_every_day() {
    let g = graph();
    let out = g.run(&["build", "reviews/daily/date=[2025-01-01..2025-01-31]"]);
    assert_code(&out, 0);
    assert!(
        out.stdout.contains("built 31 partitions with 31 job runs"),
        "{}",
        out.stdout
    );
    assert_eq!(execs(&g), days("2025-01", 31));
    let available: Vec<String> = g
        .partitions()
        .into_iter()
        .filter(|(_, s)| s == "PARTITION_AVAILABLE")
        .map(|(r, _)| r)
        .collect();
    assert_eq!(available.len(), 31, "{available:?}");
    g.assert_bel_intact();
}

#[test]
fn from_file_lines_expand_lists_and_ranges() {
    let g = graph();
    g.write(
        "refs.txt",
        "reviews/daily/date=2025-02-{01,03}\nreviews/daily/date=[2025-02-27..2025-03-01]\n",
    );
    let out = g.run(&["lookup", "--from-file", "refs.txt"]);
    assert_code(&out, 0);
    let refs: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "reviews/daily/date=2025-02-01",
            "reviews/daily/date=2025-02-03",
            "reviews/daily/date=2025-02-27",
            "reviews/daily/date=2025-02-28",
            "reviews/daily/date=2025-03-01"
        ]
    );
}

#[test]
fn literal_takes_brackets_and_braces_as_written() {
    let g = graph();
    let weird = "ext/[raw]{v1}";
    let refused = g.run(&["partitions", "register", weird]);
    assert_code(&refused, 2);
    assert!(refused.stderr.contains("--literal"), "{}", refused.stderr);
    assert!(!g.bel_path().exists(), "an event log was created");

    let out = g.run(&["partitions", "register", "--literal", weird]);
    assert_code(&out, 0);
    assert_eq!(g.status(weird).as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(g.partitions().len(), 1);

    let range = "reviews/daily/date=[2025-01-01..2025-01-02]";
    let looked = g.run(&["lookup", "--literal", range]);
    assert_code(&looked, 0);
    assert_eq!(
        looked.stdout,
        format!("{range}\t(external: no job produces it)\n")
    );
}

/// Runs `args` after registering one partition, expects exit 2 and an unchanged event
/// log, and returns stderr with the directory and ids redacted.
fn refused(args: &[&str]) -> String {
    let g = graph();
    assert_code(&g.run(&["partitions", "register", "ext/known"]), 0);
    let before = g.events();
    let out = g.run(args);
    assert_code(&out, 2);
    assert_eq!(g.events(), before, "the event log changed");
    assert!(execs(&g).is_empty());
    g.assert_bel_intact();
    g.redact(&out.stderr)
}

#[test]
fn range_that_ends_before_it_starts() {
    let stderr = refused(&["build", "reviews/daily/date=[2025-03-01..2025-01-01]"]);
    insta::assert_snapshot!("range_backwards", stderr);
}

#[test]
fn range_mixing_a_month_and_a_day() {
    let stderr = refused(&["build", "reviews/daily/date=[2025-01..2025-03-31]"]);
    insta::assert_snapshot!("range_mixed_kinds", stderr);
}

#[test]
fn range_with_an_invalid_date() {
    let stderr = refused(&["analyze", "reviews/daily/date=[2025-02-30..2025-03-01]"]);
    insta::assert_snapshot!("range_invalid_date", stderr);
}

#[test]
fn range_over_ten_million_refs_is_refused_before_expanding() {
    let started = std::time::Instant::now();
    let stderr = refused(&["build", "x/[0..99999]/[0..99999]", "y/{a,b}"]);
    insta::assert_snapshot!("range_too_many", stderr);
    // Counting, not making 10^10 refs.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn unclosed_bracket_and_brace() {
    let bracket = refused(&["build", "reviews/daily/date=[2025-01-01..2025-01-31"]);
    insta::assert_snapshot!("range_unclosed_bracket", bracket);
    let brace = refused(&["partitions", "register", "ext/{a,b"]);
    insta::assert_snapshot!("range_unclosed_brace", brace);
}

/// Refs no job produces are found in planning: the error lists the first ten and counts
/// the rest, the graph run is recorded as failed, and no partition gets a record.
#[test]
fn range_of_refs_no_job_produces_lists_the_first_ones() {
    let g = graph();
    let out = g.run(&["build", "a/date=[2025-01-01..2025-01-31]"]);
    assert_code(&out, 2);
    let stderr = g.redact(&out.stderr);
    insta::assert_snapshot!("range_not_produced", stderr);
    assert!(stderr.contains("... 21 more"), "{stderr}");
    assert!(g.partitions().is_empty(), "{:?}", g.partitions());
    let runs = g.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, "GRAPH_FAILED");
    assert!(execs(&g).is_empty());
    g.assert_bel_intact();
}

/// `partitions why` explains every ref of a range, one paragraph each, in order.
#[test]
fn why_explains_each_ref_of_a_range() {
    let g = graph();
    assert_code(
        &g.run(&["build", "reviews/daily/date=[2025-01-01..2025-01-02]"]),
        0,
    );
    let out = g.run(&[
        "partitions",
        "why",
        "reviews/daily/date=[2025-01-01..2025-01-03]",
    ]);
    assert_code(&out, 0);
    let paragraphs: Vec<&str> = out.stdout.trim_end().split("\n\n").collect();
    assert_eq!(paragraphs.len(), 3, "{}", out.stdout);
    for (p, day) in paragraphs.iter().zip(["01", "02", "03"]) {
        let r = format!("reviews/daily/date=2025-01-{day}");
        assert!(p.contains(&r), "{p}");
        let single = g.run(&["partitions", "why", &r]);
        assert_eq!(single.stdout.trim_end(), *p);
    }
}
