//! The dashboard end to end: `e2e/tests/` drive headless Chromium (Debian's `chromium` with
//! `playwright-core`) against a real `databuild serve` on a copy of the example graph,
//! writing a screenshot of each page to `target/dashboard-screenshots/`.

use std::{path::PathBuf, process::Command};

fn e2e_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../e2e")
}

#[test]
fn dashboard_in_headless_chromium() {
    let dir = e2e_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "e2e/node_modules/playwright-core is missing: `npm ci --prefix e2e` installs it (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "tests/"])
        .current_dir(&dir)
        .env("DATABUILD_BIN", crate::util::bin())
        .output()
        .expect("node runs (Node.js 18 or newer)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the dashboard's browser tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(
        !stdout.contains("# pass 0"),
        "no browser test ran:\n{stdout}"
    );
}
