//! The benchmark suite (`benches/run.py`) still works: its generator writes valid
//! workloads and its runner times them and prints its tables, at tiny sizes.

use std::{path::Path, process::Command};

use crate::util::bin;

#[test]
fn bench_runner_smoke_prints_tables() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(repo.join("benches/run.py"))
        .arg("--smoke")
        .arg("--databuild")
        .arg(bin())
        .env_remove("DATABUILD_GRAPH")
        .env_remove("DATABUILD_BEL")
        .output()
        .expect("python3 is needed to run benches/run.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "benches/run.py --smoke failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for heading in [
        "| workload | mode | databuild | make -j2 | ninja -j2 |",
        "| W1 chain of 5 | cold |",
        "| W1 chain of 5, persistent `config` | cold |",
        "| W1 chain of 5, `config` answers for its upstream | cold |",
        "| W2 fan-out 1 → 5 → 1, persistent `config` | no-op |",
        "| W3 layers 3x4, 3 parents | no-op |",
        "| W3 layers 3x4, 3 parents, persistent `config` | cold |",
        "| W7 one level of 20 independent partitions | cold |",
        "### W4: no-op request of already-available partitions",
        "| 200 |",
        "| 2 × 20, 50 % overlap | 30 |",
        "### Wants: the reconciler",
        // 200 live wants: 2 never built, and 10 satisfied ones since gone STALE.
        "| 200 | 12 |",
        "From a wanted partition going STALE",
        "### Backfills",
        "| planning (`backfill start --dry-run`, one job, no inputs) | 300 |",
        "| running: `make -j2`, the same no-op command per partition | 50 |",
    ] {
        assert!(
            stdout.contains(heading),
            "missing `{heading}` in:\n{stdout}"
        );
    }
    // The floor of the job protocol (benches/floor.c, built with the linker's `cc`) ran
    // every cold DAG: a time in its column, and none for a no-op (it keeps no record).
    if which("cc") {
        let floor_col = |row: &str| {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(row))
                .unwrap_or_else(|| panic!("no `{row}` in:\n{stdout}"));
            line.split('|')
                .nth(6)
                .expect("a floor column")
                .trim()
                .to_string()
        };
        assert!(
            stdout.contains("| ninja -j2 | floor -j2 | databuild / make |"),
            "{stdout}"
        );
        let cold = floor_col("| W3 layers 3x4, 3 parents | cold |");
        assert!(cold.ends_with(" s"), "floor's cold W3: {cold:?}");
        assert_eq!(floor_col("| W3 layers 3x4, 3 parents | no-op |"), "–");
    }
    // Concurrent clients never ran a partition twice, and built every one.
    let w5 = stdout
        .lines()
        .find(|l| l.starts_with("| 2 × 20"))
        .expect("W5 row");
    assert!(w5.ends_with("| 0 | 0 |"), "{w5}");
    // W8 needs h2load (`scripts/test.sh` installs it); every request answered.
    if which("h2load") {
        for proto in ["| HTTP/1.1 ", "| gRPC "] {
            let row = stdout
                .lines()
                .find(|l| l.starts_with(proto))
                .unwrap_or_else(|| panic!("no W8 row `{proto}` in:\n{stdout}"));
            assert!(row.ends_with("| 0 | 1 |"), "requests failed: {row}");
        }
    }
    // PostgreSQL rows run on the tests' server (`scripts/test.sh` starts it).
    if std::env::var_os("DATABUILD_TEST_POSTGRES").is_some() {
        let w5: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("| 2 × 20"))
            .collect();
        assert_eq!(w5.len(), 2, "W5 on SQLite and on PostgreSQL:\n{stdout}");
        assert!(w5.iter().all(|l| l.ends_with("| 0 | 0 |")), "{w5:?}");
        for row in ["| SQLite | 2 × 10 |", "| PostgreSQL | 2 × 10 |"] {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(row))
                .unwrap_or_else(|| panic!("no `{row}` in:\n{stdout}"));
            assert!(line.ends_with("| 0 | 0 |"), "{line}");
        }
    }
}

/// A workload that fails part-way (here: every databuild call in W1's directories exits
/// non-zero, as on a full disk) is reported in the table's place, the workloads after it
/// still run and print their rows, and the runner exits non-zero.
#[test]
fn a_failing_workload_is_reported_and_the_others_still_print_their_rows() {
    use std::os::unix::fs::PermissionsExt;

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("databuild");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$PWD\" in */w1-*) echo \"No space left on device\" >&2; exit 3;; esac\nexec '{}' \"$@\"\n",
            bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("python3")
        .arg(repo.join("benches/run.py"))
        .args(["--smoke", "--only", "W1,W3,W4", "--databuild"])
        .arg(&fake)
        .env_remove("DATABUILD_GRAPH")
        .env_remove("DATABUILD_BEL")
        .output()
        .expect("python3 is needed to run benches/run.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    for want in [
        "| W3 layers 3x4, 3 parents | cold |",
        "**W1 chain of 5 failed**; the suite went on:",
        "benchmark step failed: databuild analyze exited 3",
        "No space left on device",
        "### W4: no-op request of already-available partitions",
        "| 200 |",
        "Load average at the end",
    ] {
        assert!(stdout.contains(want), "missing `{want}` in:\n{stdout}");
    }
    assert!(!stdout.contains("| W1 chain of 5 |"), "{stdout}");
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
