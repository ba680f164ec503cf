//! The shipped example graph builds, a second build does nothing, and the story of both
//! runs can be read back.

use crate::util::example_graph;

const WEEK: &str = "reports/weekly/week=2025-01-06";

#[test]
fn example_builds_then_second_build_does_no_work() {
    let g = example_graph();
    let reg = g.run(&["partitions", "register", "catalog/podcasts"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);

    let first = g.run(&["build", WEEK]);
    assert_eq!(
        first.code, 0,
        "stdout: {}\nstderr: {}",
        first.stdout, first.stderr
    );
    assert!(
        first
            .stdout
            .contains("built 29 partitions with 22 job runs"),
        "{}",
        first.stdout
    );
    assert!(g
        .path()
        .join("data/out/reports/weekly/week=2025-01-06.txt")
        .exists());

    let second = g.run(&["build", WEEK]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.starts_with("nothing to do"),
        "{}",
        second.stdout
    );

    let runs = g.runs();
    assert_eq!(runs.len(), 2);
    let history = g.run(&["partitions", "history", WEEK]);
    let statuses: Vec<&str> = history
        .stdout
        .lines()
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    // A request for an AVAILABLE partition adds nothing to its history: the no-op run
    // records only how many partitions it was asked for.
    assert_eq!(
        statuses,
        [
            "PARTITION_REQUESTED",
            "PARTITION_SCHEDULED",
            "PARTITION_BUILDING",
            "PARTITION_AVAILABLE"
        ]
    );
    let noop_run = second
        .stdout
        .trim_end()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(runs.iter().any(|(id, _)| id == noop_run), "{noop_run}");
    for (id, _) in &runs {
        let id = id.as_str();
        let show = g.run(&["runs", "show", id]);
        assert_eq!(show.code, 0, "{}", show.stderr);
        assert!(show.stdout.contains("GRAPH_SUCCESS"), "{}", show.stdout);
        let available = if id == noop_run { 1 } else { 0 };
        let request = format!("request    1 partition requested, {available} already available\n");
        assert!(show.stdout.contains(&request), "{}", show.stdout);
    }
    g.assert_bel_intact();
}
