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
        "| W1 chain of 5, `config` answers for its upstream | cold |",
        "| W3 layers 3x4, 3 parents | no-op |",
        "### W4: no-op request of already-available partitions",
        "| 200 |",
        "| 2 × 20, 50 % overlap | 30 |",
        "### Wants: the reconciler",
        "| 200 | 2 |",
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
    // Concurrent clients never ran a partition twice, and built every one.
    let w5 = stdout
        .lines()
        .find(|l| l.starts_with("| 2 × 20"))
        .expect("W5 row");
    assert!(w5.ends_with("| 0 | 0 |"), "{w5}");
}
