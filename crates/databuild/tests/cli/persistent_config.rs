//! `config_mode = "persistent"`: one `config` process answers every planning wave of its
//! job, one request line at a time; a persistent `config` that exits, prints a malformed
//! line or hangs fails the run with a clear error and leaves the event log intact.

use crate::{
    bad_input::{assert_analysis_failed, assert_error_lines},
    util::TestGraph,
};

/// Job `c` produces `c/<n>`; `c/<n>` needs `c/<n-1>` (a chain). Every start of its
/// `config` appends a line to `config-starts.txt`.
fn chain_graph(mode: &str) -> TestGraph {
    let g = TestGraph::new(&format!(
        r#"[graph]
label = "g"

[[jobs]]
label = "c"
entrypoint = ["jobs/c"]
produces = ['c/\d+']
{mode}
"#
    ));
    g.script(
        "c",
        r#"answer() {
  printf '{"configs":['
  sep=
  for r in "$@"; do
    n=${r#c/}
    inputs=
    if [ "$n" -gt 0 ]; then
      inputs="{\"depType\":\"MATERIALIZE\",\"partitionRef\":{\"str\":\"c/$((n - 1))\"}}"
    fi
    printf '%s{"outputs":[{"str":"%s"}],"inputs":[%s]}' "$sep" "$r" "$inputs"
    sep=,
  done
  printf ']}\n'
}
case "$1" in
config)
  echo "$$" >>config-starts.txt
  if [ "${2:-}" = --persistent ]; then
    while IFS= read -r line; do
      answer $(printf '%s' "$line" | sed 's/^{"refs":\[//; s/\]}$//; s/[",]/ /g')
    done
  else
    shift
    answer "$@"
  fi
  ;;
exec) : ;;
esac"#,
    );
    g
}

fn config_starts(g: &TestGraph) -> usize {
    std::fs::read_to_string(g.path().join("config-starts.txt"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_chain_planned_with_a_persistent_config_starts_one_config_process() {
    const N: usize = 30;
    let top = format!("c/{}", N - 1);
    let g = chain_graph(r#"config_mode = "persistent""#);
    let out = g.run(&["build", &top]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(config_starts(&g), 1, "one process for {N} planning waves");
    for i in 0..N {
        assert_eq!(
            g.status(&format!("c/{i}")).as_deref(),
            Some("PARTITION_AVAILABLE")
        );
    }
    g.assert_bel_intact();
}

#[test]
fn a_chain_planned_per_call_starts_one_config_process_per_wave() {
    const N: usize = 30;
    let g = chain_graph("");
    let out = g.run(&["build", &format!("c/{}", N - 1)]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(config_starts(&g), N);
}

#[test]
fn an_unknown_config_mode_is_refused_with_the_choices() {
    let g = chain_graph(r#"config_mode = "forever""#);
    let out = g.run(&["build", "c/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("persistent_unknown_mode", g.redact(&out.stderr));
}

/// A graph whose job `a` (persistent `config`, `config_timeout = "1s"`) produces `x/<n>`
/// from the registered `ext/raw`; its `config` is `body`. Builds `x/1 x/2`, checks that
/// the run failed in analysis and no event was lost; returns the redacted stderr.
fn build_with_persistent_config(body: &str) -> String {
    let g = TestGraph::new(
        r#"[graph]
label = "g"

[[jobs]]
label = "a"
entrypoint = ["jobs/a"]
produces = ['x/\d+']
config_mode = "persistent"
config_timeout = "1s"
"#,
    );
    g.script(
        "a",
        &format!("case \"$1\" in\nconfig)\n{body}\n;;\nexec) exit 0 ;;\nesac"),
    );
    let reg = g.run(&["partitions", "register", "ext/raw"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let before = g.events();
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
fn a_persistent_config_that_exits_before_answering_fails_the_run() {
    let stderr =
        build_with_persistent_config("read -r line; echo \"giving up on $line\" >&2; exit 3");
    assert!(stderr.contains("exited (exit code 3)"), "{stderr}");
    assert!(
        stderr.contains(r#"giving up on {"refs":["x/1","x/2"]}"#),
        "{stderr}"
    );
    insta::assert_snapshot!("persistent_config_exits", stderr);
}

#[test]
fn a_persistent_config_that_prints_a_malformed_line_fails_the_run() {
    let stderr = build_with_persistent_config(
        // The warning first: once the malformed line is read the group is killed, and a
        // later warning might never be written.
        "read -r line; echo 'a warning' >&2; echo 'configs: none'; cat >/dev/null",
    );
    assert!(stderr.contains("configs: none"), "{stderr}");
    assert!(stderr.contains("a warning"), "{stderr}");
    insta::assert_snapshot!("persistent_config_malformed_line", stderr);
}

#[test]
fn a_persistent_config_that_hangs_is_killed_at_its_timeout() {
    let stderr = build_with_persistent_config("read -r line; exec sleep 60");
    assert!(stderr.contains("timed out after 1s"), "{stderr}");
    insta::assert_snapshot!("persistent_config_hangs", stderr);
}
