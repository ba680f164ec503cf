//! The Bazel rules (`bazel/defs.bzl`) with Debian's `bazel-bootstrap`, offline, in a copy
//! of the repository's Bazel workspace (its rules, stand-ins and both examples) whose
//! `databuild` is this build's binary (`DATABUILD_BIN`): the podcast example built with
//! `bazel run //examples/bazel:graph -- build ...` (job labels in the event log are Bazel
//! labels), `analyze --format dot` rendered by `dot`, and the bad inputs: a `produces`
//! pattern that does not compile and a job binary that is not executable fail the Bazel
//! build; two jobs producing one ref fail the build of it, naming both labels.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::util::bin;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A Bazel workspace in a temporary directory; its Bazel server is shut down on drop.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        for path in [
            "WORKSPACE",
            ".bazelrc",
            "bazel",
            "third_party/bazel",
            "examples/basic/BUILD.bazel",
            "examples/basic/jobs",
            "examples/basic/data/podcasts.csv",
            "examples/bazel/BUILD.bazel",
        ] {
            let to = dir.path().join(path);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let ok = Command::new("cp")
                .args(["-a"])
                .arg(root.join(path))
                .arg(&to)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cp {path}");
        }
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// `bazel <args>` in the workspace, with this build's `databuild`.
    fn bazel(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = Command::new("bazel")
            .args(args)
            .current_dir(self.path())
            .env("DATABUILD_BIN", bin())
            .output()
            .expect("run bazel: install Debian's bazel-bootstrap (scripts/test.sh does)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = Command::new("bazel")
            .arg("shutdown")
            .current_dir(self.path())
            .output();
    }
}

/// The line of `text` that holds `needle`, for a snapshot.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[test]
fn bazel_example_builds_with_bazel_labels_and_bad_targets_fail_clearly() {
    let ws = Workspace::new();
    ws.write(
        "bad/BUILD.bazel",
        r#"load("//bazel:defs.bzl", "databuild_graph", "databuild_job")

databuild_job(name = "unclosed", binary = "job.sh", produces = ["a/(b"])
databuild_graph(name = "bad_regex", jobs = [":unclosed"])

databuild_job(name = "plain", binary = "plain.sh", produces = ["p/.*"])
databuild_graph(name = "not_executable", jobs = [":plain"])

databuild_job(name = "first", binary = "job.sh", produces = [r"x/\d+"])
databuild_job(name = "second", binary = "job.sh", produces = [r"x/.*"])
databuild_graph(name = "overlap", jobs = [":first", ":second"])
"#,
    );
    ws.write("bad/job.sh", "#!/bin/sh\nexit 0\n");
    ws.write("bad/plain.sh", "#!/bin/sh\nexit 0\n");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        ws.path().join("bad/job.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    // The example: register the external catalog, build a week, labels are Bazel's.
    let graph = "//examples/bazel:graph";
    let (code, _, err) = ws.bazel(&[
        "run",
        graph,
        "--",
        "partitions",
        "register",
        "catalog/podcasts",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = ws.bazel(&[
        "run",
        graph,
        "--",
        "build",
        "reports/weekly/week=2025-01-06",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("built 29 partitions with 22 job runs"),
        "{out}"
    );
    let report = ws
        .path()
        .join("examples/bazel/data/out/reports/weekly/week=2025-01-06.txt");
    assert!(
        report.is_file(),
        "the report is in the workspace, not in runfiles"
    );
    let bel = ws.path().join(".databuild/examples/bazel/graph/bel.sqlite");
    let events = Command::new(bin())
        .arg("--bel")
        .arg(&bel)
        .args(["--json", "events"])
        .output()
        .unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    let mut labels: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| {
            e["jobGraphRunEvent"]["jobEvent"]["label"]["label"]
                .as_str()
                .map(String::from)
        })
        .collect();
    labels.sort();
    labels.dedup();
    assert_eq!(
        labels,
        [
            "//examples/bazel:clean_reviews",
            "//examples/bazel:daily_summary",
            "//examples/bazel:ingest_reviews",
            "//examples/bazel:weekly_report",
        ]
    );
    let (code, out, _) = ws.bazel(&[
        "run",
        graph,
        "--",
        "build",
        "reports/weekly/week=2025-01-06",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("nothing to do"),
        "a second build is a no-op: {out}"
    );

    // `analyze --format dot` renders, and `.cfg` calls the job's `config`.
    let (code, dot, err) = ws.bazel(&[
        "run",
        "//examples/bazel:graph.analyze",
        "--",
        "--format",
        "dot",
        "reports/weekly/week=2025-01-13",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut render = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run dot (graphviz)");
    use std::io::Write as _;
    render
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let svg = render.wait_with_output().unwrap();
    assert!(svg.status.success());
    assert!(String::from_utf8_lossy(&svg.stdout).contains("//examples/bazel:weekly_report"));
    let (code, config, err) = ws.bazel(&[
        "run",
        "//examples/bazel:daily_summary.cfg",
        "--",
        "reviews/daily/date=2025-01-07",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        config.contains(r#""str":"reviews/clean/date=2025-01-07""#),
        "{config}"
    );

    // Bad targets.
    let (code, _, err) = ws.bazel(&["build", "//bad:bad_regex"]);
    assert_ne!(
        code, 0,
        "a pattern that does not compile fails the Bazel build"
    );
    insta::assert_snapshot!(
        "bazel_bad_regex",
        line_with(&err, "invalid `produces` pattern")
    );
    let (code, _, err) = ws.bazel(&["build", "//bad:not_executable"]);
    assert_ne!(
        code, 0,
        "a job binary that is not executable fails the Bazel build"
    );
    let line = line_with(&err, "is not executable");
    assert!(line.contains("job `//bad:plain`: entrypoint"), "{line}");
    let (code, _, err) = ws.bazel(&["build", "//bad:overlap"]);
    assert_eq!(code, 0, "overlapping patterns are found per ref: {err}");
    let (code, _, err) = ws.bazel(&["run", "//bad:overlap", "--", "build", "x/1"]);
    assert_eq!(code, 2, "{err}");
    insta::assert_snapshot!("bazel_overlap", line_with(&err, "produced by two jobs"));
}
