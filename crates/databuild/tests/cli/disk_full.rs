//! A disk that fills up while a build runs: the build stops its jobs, exits 1 naming the
//! cause, records the run as failed where the log can still be written, and loses
//! nothing the log had; `databuild logs` falls back to the event log's lines.

use std::path::{Path, PathBuf};

use crate::util::{jobs_graph, redact, ref_job, TestGraph};

/// A small tmpfs mounted at a directory until dropped (needs root, as the test script
/// runs; says so otherwise).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs to fill (the disk-full tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// `fill` fills the disk of the event log once `slow` runs (or at once without it);
/// `slow` frees the space when it is stopped; `ok` prints a line.
fn graph() -> TestGraph {
    let g = TestGraph::new(&jobs_graph(
        "disk",
        &[("fill", ""), ("slow", ""), ("ok", "")],
    ));
    ref_job(
        &g,
        "fill",
        "",
        r#"echo "filling the disk"
if [ -n "${WAIT_FOR_SLOW:-}" ]; then
  while [ ! -e slow-started ]; do sleep 0.02; done
fi
cat /dev/zero > .databuild/filler 2>/dev/null || true"#,
    );
    ref_job(
        &g,
        "slow",
        "",
        r#"trap 'rm -f .databuild/filler; exit 1' TERM
echo "slow started"
touch slow-started
sleep 1000 &
wait $!"#,
    );
    ref_job(&g, "ok", "", "echo hello from ok");
    g
}

#[test]
fn a_disk_that_fills_mid_build_stops_the_jobs_exits_1_and_records_the_run_as_failed() {
    let g = graph();
    let _disk = Tmpfs::mount(&g.path().join(".databuild"), "4m");
    let out = g
        .command(&["build", "fill/1", "slow/1"])
        .env("WAIT_FOR_SLOW", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    insta::assert_snapshot!("disk_full_recorded", redact(last, g.path()));
    // The space came back when `slow` was stopped: everything is recorded.
    g.assert_bel_intact();
    let runs = g.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, "GRAPH_FAILED");
    assert_eq!(g.status("fill/1").as_deref(), Some("PARTITION_AVAILABLE"));
    assert_eq!(g.status("slow/1").as_deref(), Some("PARTITION_FAILED"));
}

#[test]
fn a_disk_that_stays_full_exits_1_and_the_next_build_reclaims_the_run() {
    let g = graph();
    let _disk = Tmpfs::mount(&g.path().join(".databuild"), "4m");
    let out = g.run(&["build", "fill/1"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = redact(out.stderr.lines().last().unwrap_or_default(), g.path());
    // Whether SQLite still finds room for the run's last event in pages it already has
    // is up to it; either way the message says which happened.
    let (cause, end) = last
        .split_once("; its jobs were stopped and ")
        .unwrap_or_else(|| panic!("{last}"));
    insta::assert_snapshot!("disk_full_not_recorded", cause);
    assert!(
        [
            "the graph run could not be recorded as failed; the next build reclaims it",
            "the graph run is recorded as failed"
        ]
        .contains(&end),
        "{end}"
    );
    std::fs::remove_file(g.path().join(".databuild/filler")).unwrap();
    // Room again: the next build reclaims the run that could not record its end.
    let next = g.run(&["build", "ok/1"]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    g.assert_bel_intact();
    let statuses: Vec<String> = g.runs().into_iter().map(|(_, s)| s).collect();
    assert_eq!(statuses, ["GRAPH_SUCCESS", "GRAPH_FAILED"]);
    assert_ne!(g.status("fill/1").as_deref(), Some("PARTITION_BUILDING"));
}

#[test]
fn logs_fall_back_to_the_event_log_when_the_log_file_is_empty() {
    let g = graph();
    let out = g.run(&["build", "ok/1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let logs: Vec<PathBuf> = std::fs::read_dir(g.path().join(".databuild/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    // A log directory that was full leaves an empty file.
    std::fs::write(&logs[0], "").unwrap();
    let id = logs[0].file_stem().unwrap().to_str().unwrap();
    let out = g.run(&["logs", id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "hello from ok");
}
