//! `--from-file`: `build` and `partitions register` read refs one per line from a file or
//! stdin, for more refs than a command line holds.

use crate::util::TestGraph;

/// A graph with one job `part` producing `part/<n>` (no inputs); `exec` appends the ref
/// to `execs`.
fn graph() -> TestGraph {
    crate::util::no_input_graph("from_file", "part", r"part/\d+")
}

fn execs(g: &TestGraph) -> Vec<String> {
    crate::util::sorted_lines(g, "execs")
}

#[test]
fn build_from_file_builds_listed_refs_and_arguments() {
    let g = graph();
    g.write("refs.txt", "part/2\n\npart/3\r\npart/2\n");
    let out = g.run(&["build", "part/1", "--from-file", "refs.txt"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("built 3 partitions with 3 job runs"),
        "{}",
        out.stdout
    );
    assert_eq!(execs(&g), ["part/1", "part/2", "part/3"]);
    g.assert_bel_intact();
}

#[test]
fn build_from_stdin_with_dash() {
    let g = graph();
    let out = g.run_with_stdin(&["build", "--from-file", "-"], "part/7\npart/8\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(execs(&g), ["part/7", "part/8"]);
    let again = g.run_with_stdin(&["build", "--from-file", "-"], "part/7\npart/8\n");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.starts_with("nothing to do: 2 requested"),
        "{}",
        again.stdout
    );
    g.assert_bel_intact();
}

#[test]
fn register_from_file_registers_each_ref_once() {
    let g = graph();
    g.write("landed.txt", "part/1\npart/2\npart/1\n");
    let out = g.run(&[
        "partitions",
        "register",
        "--force",
        "--from-file",
        "landed.txt",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("registered 2 partitions as available"),
        "{}",
        out.stdout
    );
    let again = g.run(&[
        "partitions",
        "register",
        "--force",
        "--from-file",
        "landed.txt",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.stdout,
        "already available: part/1\nalready available: part/2\n"
    );
    let partitions = g.partitions();
    assert_eq!(
        partitions,
        [
            ("part/1".to_string(), "PARTITION_AVAILABLE".to_string()),
            ("part/2".to_string(), "PARTITION_AVAILABLE".to_string()),
        ]
    );
    // Built from the log, not rebuilt.
    let build = g.run(&["build", "--from-file", "landed.txt"]);
    assert_eq!(build.code, 0, "{}", build.stderr);
    assert!(execs(&g).is_empty());
    g.assert_bel_intact();
}

#[test]
fn unreadable_refs_file_is_a_usage_error() {
    let g = graph();
    let reg = g.run(&["partitions", "register", "--force", "part/1"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let before = g.assert_bel_intact();

    let out = g.run(&["build", "--from-file", "missing.txt"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("from_file_missing", g.redact(&out.stderr));
    let out = g.run(&["partitions", "register", "--from-file", "missing.txt"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(g.assert_bel_intact(), before);
    assert!(execs(&g).is_empty());
}

#[test]
fn build_needs_refs_or_a_file() {
    let g = graph();
    let out = g.run(&["build"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("from_file_no_refs", g.redact(&out.stderr));
    assert!(!g.bel_path().exists());
}

#[test]
fn refs_file_with_invalid_utf8_names_the_file_and_line() {
    let g = graph();
    std::fs::write(g.path().join("refs.txt"), b"part/1\npart/2\npart/\xff3\n").unwrap();
    let out = g.run(&["build", "--from-file", "refs.txt"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("line 3 of `refs.txt`"),
        "{}",
        out.stderr
    );
    insta::assert_snapshot!("from_file_invalid_utf8", g.redact(&out.stderr));
    assert!(execs(&g).is_empty());
    assert!(!g.bel_path().exists());
}
