//! `databuild init`, `databuild completions` and `databuild man`: the sample graph
//! builds as written (sh, and Python with the SDK), an existing graph file is never
//! overwritten, and the generated completions and man page name every command.

use std::path::Path;

use crate::util::{bin, redact, TestGraph};

const SAMPLE: &str = "hello/date=2025-01-01";

fn databuild(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .current_dir(dir)
        .args(args)
        .env_remove("DATABUILD_GRAPH")
        .env_remove("DATABUILD_BEL")
        .env_remove("DATABUILD_REMOTE")
        // The Python sample imports `databuild` (the SDK) from the repository.
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python/src"),
        )
        .output()
        .expect("run databuild")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn init_then_build(python: bool) {
    let g = TestGraph::empty();
    let mut args = vec!["init", "demo"];
    if python {
        args.push("--python");
    }
    let out = databuild(g.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "wrote demo/databuild.toml and demo/jobs/hello.{}\nnext: cd demo && databuild build {SAMPLE}\n",
            if python { "py" } else { "sh" }
        )
    );
    let demo = g.path().join("demo");
    let out = databuild(&demo, &["build", SAMPLE]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let greeting = demo.join("data/hello/date=2025-01-01/greeting.txt");
    assert_eq!(
        std::fs::read_to_string(greeting).unwrap(),
        "hello from databuild, for 2025-01-01\n"
    );
    // Many refs at once (some only in DATABUILD_REFS_FILE) build too.
    let refs: Vec<String> = (1..=28)
        .map(|d| format!("hello/date=2025-02-{d:02}"))
        .collect();
    let mut args = vec!["build"];
    args.extend(refs.iter().map(String::as_str));
    let out = databuild(&demo, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = databuild(&demo, &["build", "hello/date=yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn init_writes_a_sh_sample_that_builds() {
    init_then_build(false);
}

#[test]
fn init_python_writes_an_sdk_sample_that_builds() {
    init_then_build(true);
}

#[test]
fn init_into_the_current_directory_names_no_cd() {
    let g = TestGraph::empty();
    let out = databuild(g.path(), &["init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("wrote ./databuild.toml and ./jobs/hello.sh\nnext: databuild build {SAMPLE}\n")
    );
    assert!(g.path().join("jobs/hello.sh").exists());
}

#[test]
fn init_refuses_to_overwrite_a_graph_file() {
    let g = TestGraph::new("[graph]\nlabel = \"mine\"\n");
    std::fs::write(g.path().join("notes.txt"), "keep me").unwrap();
    let out = databuild(g.path(), &["init", "--python", "."]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(
        "init_existing_graph_file",
        redact(&text(&out.stderr), g.path())
    );
    assert_eq!(
        std::fs::read_to_string(g.path().join("databuild.toml")).unwrap(),
        "[graph]\nlabel = \"mine\"\n"
    );
    assert!(
        !g.path().join("jobs").exists(),
        "nothing written when refusing"
    );
}

#[test]
fn init_refuses_to_overwrite_a_sample_job() {
    let g = TestGraph::empty();
    g.write("jobs/hello.sh", "#!/bin/sh\necho mine\n");
    let out = databuild(g.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(
        "init_existing_job_file",
        redact(&text(&out.stderr), g.path())
    );
    assert!(!g.path().join("databuild.toml").exists());
}

#[test]
fn completions_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = databuild(Path::new("."), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for cmd in [
            "build",
            "partitions",
            "invalidate",
            "serve",
            "init",
            "completions",
            "man",
        ] {
            assert!(script.contains(cmd), "{shell} completions lack `{cmd}`");
        }
    }
    let out = databuild(Path::new("."), &["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[possible values: bash, zsh, fish]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn man_page_documents_every_subcommand() {
    let out = databuild(Path::new("."), &["man"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq \\(aq"),
        "{}",
        &page[..200]
    );
    assert!(page.contains(".TH databuild 1"), "{}", &page[..400]);
    for section in [
        "DATABUILD BUILD",
        "DATABUILD PARTITIONS WHY",
        "DATABUILD RUNS LIST",
        "DATABUILD INIT",
        "DATABUILD SERVE",
    ] {
        assert!(page.contains(section), "the man page lacks `{section}`");
    }
    assert!(page.contains("\\-\\-fail\\-fast"), "options are listed");
    // `man` renders it without warnings, where man is installed.
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("databuild.1");
        std::fs::write(&file, &page).unwrap();
        let rendered = std::process::Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_STDERR", "1")
            .output()
            .unwrap();
        assert!(rendered.status.success(), "{}", text(&rendered.stderr));
        assert!(text(&rendered.stdout).contains("databuild init"));
    }
}
