//! `databuild init`: a new graph directory with a `databuild.toml` and one sample job
//! that builds as it is, so a first build is one command away.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use databuild_core::ExitKind;

/// The partition the sample job builds, as `databuild init` prints it.
const SAMPLE_REF: &str = "hello/date=2025-01-01";

const HELLO_SH: &str = include_str!("init/hello.sh");
const HELLO_PY: &str = include_str!("init/hello.py");

/// The graph file for the sample job at `entrypoint` (a TOML array).
fn graph_toml(label: &str, entrypoint: &str, note: &str) -> String {
    format!(
        r#"# A databuild graph: jobs and the partitions each produces (anchored regexes).
# Build the sample partition with `databuild build {SAMPLE_REF}`; see
# `databuild --help` and the README's "Defining a graph" for every setting.

[graph]
label = "{label}"
# bel = "sqlite://.databuild/bel.sqlite"   # the event log; the default, relative to this file

[[jobs]]
label = "hello"
{note}entrypoint = {entrypoint}    # relative to this file, or a program on PATH
produces = ['hello/date=(?P<date>\d{{4}}-\d{{2}}-\d{{2}})']
"#
    )
}

/// A graph label from the directory's name: letters, digits and `_`, else `demo`.
fn label(dir: &Path) -> String {
    let name = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let label: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if label.trim_matches('_').is_empty() {
        "demo".into()
    } else {
        label
    }
}

/// Writes `databuild.toml` and the sample job into `dir` (created if missing). Refuses,
/// writing nothing, when either file exists.
pub fn init(dir: &Path, python: bool) -> Result<ExitKind> {
    let graph = dir.join("databuild.toml");
    let (job_rel, job_text) = if python {
        ("jobs/hello.py", HELLO_PY)
    } else {
        ("jobs/hello.sh", HELLO_SH)
    };
    let job = dir.join(job_rel);
    for existing in [&graph, &job] {
        if existing.exists() {
            bail!(
                "`{}` already exists; `databuild init` never overwrites a file: choose another directory (`databuild init DIR`) or move it away",
                existing.display()
            );
        }
    }
    std::fs::create_dir_all(dir.join("jobs"))
        .with_context(|| format!("cannot create `{}`", dir.join("jobs").display()))?;
    let toml = if python {
        graph_toml(
            &label(dir),
            r#"["python3", "jobs/hello.py"]"#,
            "# `python3` must import `databuild` (the job SDK: `pip install` databuild's wheel);\n# name a virtualenv's python here to use that one.\n",
        )
    } else {
        graph_toml(&label(dir), r#"["jobs/hello.sh"]"#, "")
    };
    write_new(&graph, &toml)?;
    write_new(&job, job_text)?;
    make_executable(&job)?;
    let cd = if dir == Path::new(".") {
        String::new()
    } else {
        format!("cd {} && ", shown(dir))
    };
    println!(
        "wrote {} and {}\nnext: {cd}databuild build {SAMPLE_REF}",
        graph.display(),
        job.display()
    );
    Ok(ExitKind::Success)
}

/// `dir` as a user would type it.
fn shown(dir: &Path) -> String {
    let s = dir.display().to_string();
    if s.contains([' ', '\'', '"', '$', '\\']) {
        format!("'{}'", s.replace('\'', r"'\''"))
    } else {
        s
    }
}

fn write_new(path: &PathBuf, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make `{}` executable", path.display()))
}
