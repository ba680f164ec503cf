//! The test harness: a graph in a temporary directory, job scripts, running the CLI,
//! reading the event log back, redacting ids and times for snapshots.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The `databuild` binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_databuild"))
}

/// A graph in its own temporary directory.
pub struct TestGraph {
    dir: tempfile::TempDir,
}

/// What a CLI invocation did.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Fails, showing what the command printed, unless it exited with `code`.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.code, code,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

/// Waits for a spawned `databuild` to exit.
pub fn finish(child: std::process::Child) -> Output {
    child.wait_with_output().expect("wait databuild").into()
}

/// Waits (up to `deadline`) for a spawned `databuild` to exit.
pub fn finish_within(mut child: std::process::Child, deadline: Duration) -> Output {
    wait_for("databuild to exit", deadline, || {
        child.try_wait().unwrap().is_some()
    });
    finish(child)
}

impl TestGraph {
    /// A graph whose `databuild.toml` is `toml`.
    pub fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("databuild.toml"), toml).expect("write graph");
        Self { dir }
    }

    /// An empty directory (no graph file).
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The graph's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes an executable `sh` script at `jobs/<name>` with `body` after a shebang and
    /// `set -eu`.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("jobs").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\nset -eu\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Writes a file relative to the graph directory.
    pub fn write(&self, rel: &str, contents: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    /// Runs `databuild <args>` in the graph directory.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs `databuild <args>` with `stdin`.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn databuild");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        finish(child)
    }

    /// Starts `databuild <args>` in the background, stdout and stderr captured.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn databuild")
    }

    /// The failure reason of a partition's latest event.
    pub fn reason(&self, r: &str) -> String {
        let out = self.run(&["--json", "partitions", "show", r]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["failureReason"].as_str().unwrap_or_default().to_string()
    }

    /// A `databuild` command in the graph directory (for tests that manage the process).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("DATABUILD_GRAPH")
            .env_remove("DATABUILD_BEL")
            .env_remove("DATABUILD_REMOTE");
        cmd
    }

    /// The default SQLite event log path.
    pub fn bel_path(&self) -> PathBuf {
        self.dir.path().join(".databuild/bel.sqlite")
    }

    /// Every event in the log, as JSON (`databuild events --json`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["events", "--json"]);
        assert_eq!(out.code, 0, "events failed: {}", out.stderr);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("event json"))
            .collect()
    }

    /// Latest status per partition (`databuild partitions list --json`), as (ref, status).
    pub fn partitions(&self) -> Vec<(String, String)> {
        let out = self.run(&["partitions", "list", "--json", "--limit", "0"]);
        assert_eq!(out.code, 0, "partitions list failed: {}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        v["partitions"]
            .as_array()
            .expect("a `partitions` list")
            .iter()
            .map(|p| {
                (
                    p["partitionRef"].as_str().unwrap().to_string(),
                    p["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The status of one partition, if it has any.
    pub fn status(&self, r: &str) -> Option<String> {
        self.partitions()
            .into_iter()
            .find(|(p, _)| p == r)
            .map(|(_, s)| s)
    }

    /// Asserts the event log reads back, no partition is left claimed, and no graph run is
    /// left unfinished. Returns the number of events.
    pub fn assert_bel_intact(&self) -> usize {
        if !self.bel_path().exists() {
            return 0;
        }
        let events = self.events();
        for (r, s) in self.partitions() {
            assert!(
                s != "PARTITION_SCHEDULED" && s != "PARTITION_BUILDING",
                "partition {r} left {s}"
            );
        }
        for (id, s) in self.runs() {
            assert!(
                s == "GRAPH_SUCCESS" || s == "GRAPH_FAILED",
                "graph run {id} left {s}"
            );
        }
        events.len()
    }

    /// The graph runs, newest first, as `(id, status)`.
    pub fn runs(&self) -> Vec<(String, String)> {
        let out = self.run(&["--json", "runs", "list", "--limit", "0"]);
        assert_eq!(out.code, 0, "runs list failed: {}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["runs"]
            .as_array()
            .expect("a `runs` list")
            .iter()
            .map(|r| {
                (
                    r["jobGraphRunId"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Replaces this graph's directory, ids, times and durations with placeholders.
    pub fn redact(&self, s: &str) -> String {
        redact(s, self.dir.path())
    }
}

/// Replaces `dir`, UUIDs, RFC 3339 times and durations with stable placeholders.
pub fn redact(s: &str, dir: &Path) -> String {
    let dir = dir.to_string_lossy();
    let canonical = std::fs::canonicalize(&*dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut s = s.replace(&*dir, "[DIR]");
    if !canonical.is_empty() {
        s = s.replace(&canonical, "[DIR]");
    }
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let ts = regex::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z").unwrap();
    let secs = regex::Regex::new(r"\b\d+\.\d+s\b").unwrap();
    let s = uuid.replace_all(&s, "[UUID]");
    let s = ts.replace_all(&s, "[TIME]");
    secs.replace_all(&s, "[SECS]").into_owned()
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes; panics with `what`.
pub fn wait_for(what: &str, deadline: Duration, cond: impl FnMut() -> bool) {
    wait_for_or(what, deadline, cond, String::new)
}

/// [`wait_for`], whose failure message ends with `why()`, called once on timeout.
pub fn wait_for_or(
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
    why: impl FnOnce() -> String,
) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}\n{}", why());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The example graph shipped in `examples/basic`, copied into a temporary directory.
pub fn example_graph() -> TestGraph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/basic");
    let g = TestGraph::empty();
    copy_dir(&src, g.path());
    let _ = std::fs::remove_dir_all(g.path().join(".databuild"));
    let _ = std::fs::remove_dir_all(g.path().join("data/out"));
    g
}

fn copy_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let mode = entry.metadata().unwrap().permissions().mode();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

/// A graph file labelled `graph_label` with one job per `(label, extra toml)`; each job
/// produces `<label>/...` and runs `jobs/<label>` (write it with [`ref_job`]).
pub fn jobs_graph(graph_label: &str, jobs: &[(&str, &str)]) -> String {
    let mut s = format!("[graph]\nlabel = \"{graph_label}\"\n");
    for (label, extra) in jobs {
        s.push_str(&format!(
            "\n[[jobs]]\nlabel = \"{label}\"\nentrypoint = [\"jobs/{label}\"]\nproduces = ['{label}/.*']\n{extra}\n"
        ));
    }
    s
}

/// A job script: `config` answers one config per ref with `args = [ref]` and the inputs a
/// shell snippet sets in `$inputs` from `$r` (`dep MATERIALIZE up/1` prints one input);
/// `exec` appends the ref to the graph's `execs` file, sets `$r` (the ref) and `$name` (the
/// ref with `/` as `_`), then runs `exec`.
pub fn ref_job(g: &TestGraph, label: &str, inputs: &str, exec: &str) {
    g.script(
        label,
        &format!(
            r#"dep() {{ printf '{{"depType":"%s","partitionRef":{{"str":"%s"}}}}' "$1" "$2"; }}
if [ "$1" = config ]; then
    shift
    sep=""
    printf '{{"configs":['
    for r in "$@"; do
        inputs=""
        {inputs}
        printf '%s{{"outputs":[{{"str":"%s"}}],"inputs":[%s],"args":["%s"]}}' "$sep" "$r" "$inputs" "$r"
        sep=,
    done
    printf ']}}\n'
    exit 0
fi
r=$2
name=$(echo "$r" | tr / _)
echo "$r" >> execs
{exec}"#
        ),
    );
}

/// Certificates made with `openssl` for a test: a CA, a server certificate it signed for
/// `localhost` and `127.0.0.1` with its key, and another CA that signed nothing.
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_ca: PathBuf,
}

/// Makes [`TestCerts`] in `dir`.
pub fn make_certs(dir: &Path) -> TestCerts {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (install it: `apt-get install openssl`)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (name, cn) in [("ca", "databuild test CA"), ("other-ca", "another CA")] {
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-days",
            "2",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }
    openssl(&[
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    TestCerts {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.crt"),
    }
}

/// A graph labelled `graph_label` whose one job `job` produces refs matching `produces`
/// with no inputs; its `exec` appends its output ref to `execs`.
pub fn no_input_graph(graph_label: &str, job: &str, produces: &str) -> TestGraph {
    let g = TestGraph::new(&format!(
        "[graph]\nlabel = \"{graph_label}\"\n\n[[jobs]]\nlabel = \"{job}\"\nentrypoint = [\"jobs/{job}\"]\nproduces = ['{produces}']\n"
    ));
    g.script(
        job,
        r#"if [ "$1" = config ]; then
    shift
    sep=""
    printf '{"configs":['
    for r in "$@"; do
        printf '%s{"outputs":[{"str":"%s"}],"inputs":[],"args":["%s"]}' "$sep" "$r" "$r"
        sep=,
    done
    printf ']}\n'
    exit 0
fi
echo "$2" >> execs"#,
    );
    g
}

/// The lines of file `name` in the graph's directory, sorted.
pub fn sorted_lines(g: &TestGraph, name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(g.path().join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}
