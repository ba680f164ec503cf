//! Where the event log lives: a log that would not outlive the command (`:memory:`) is
//! refused; a log in a directory that is not writable can be read, and writes to it are
//! refused with a message saying why.

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use crate::util::{bin, TestGraph};

const GRAPH: &str = "[graph]\nlabel = \"g\"\n";

#[test]
fn an_in_memory_event_log_is_refused_and_no_file_is_created() {
    let g = TestGraph::new(GRAPH);
    for bel in [":memory:", "sqlite://:memory:"] {
        let out = g.run(&["--bel", bel, "partitions", "register", "ext/1"]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(!g.path().join(":memory:").exists(), "{bel} created a file");
        if bel == ":memory:" {
            insta::assert_snapshot!("bel_in_memory", g.redact(&out.stderr));
        }
    }
}

/// The effective user id of this process, from `/proc/self/status`.
fn euid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Runs the binary with `args` as a user that cannot write a 0555 directory: this user,
/// or `nobody` (through `setpriv`) when this is root, which writes anywhere.
fn run_unprivileged(args: &[&str]) -> (i32, String, String) {
    let mut cmd = if euid() == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let out = cmd
        .args(args)
        .env_remove("DATABUILD_GRAPH")
        .env_remove("DATABUILD_BEL")
        .env_remove("DATABUILD_REMOTE")
        .current_dir("/")
        .output()
        .expect("run databuild (as root this needs `setpriv` from util-linux)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_log_in_a_read_only_directory_is_read_and_writes_are_refused() {
    let g = TestGraph::new(GRAPH);
    let reg = g.run(&["partitions", "register", "ext/1"]);
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let bel = ro.join("bel.sqlite");
    std::fs::copy(g.bel_path(), &bel).unwrap();
    std::fs::set_permissions(&bel, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bel = bel.to_str().unwrap();

    let (code, stdout, stderr) = run_unprivileged(&["--bel", bel, "partitions", "list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ext/1"), "{stdout}");

    let (code, _, stderr) = run_unprivileged(&["--bel", bel, "partitions", "invalidate", "ext/1"]);
    assert_eq!(code, 2, "{stderr}");
    let stderr = stderr.replace(&*dir.path().to_string_lossy(), "[DIR]");
    assert!(stderr.contains("is read-only here"), "{stderr}");
    insta::assert_snapshot!("bel_read_only", stderr);
    let entries: Vec<_> = std::fs::read_dir(&ro).unwrap().collect();
    assert_eq!(
        entries.len(),
        1,
        "files appeared beside the log: {entries:?}"
    );
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}
