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

/// One request with a form body (or none); (status, body).
fn form_request(addr: &str, method: &str, path: &str, form: &str) -> (u16, String) {
    crate::service::raw_request_as(
        addr,
        method,
        path,
        "application/x-www-form-urlencoded",
        form,
    )
    .unwrap()
}

/// The CSRF token the dashboard's forms carry (from the home page).
pub fn csrf_token(addr: &str) -> String {
    let (_, home) = form_request(addr, "GET", "/", "");
    let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).unwrap();
    re.captures(&home).expect("the build form has a CSRF token")[1].to_string()
}

/// The message of an error page (or of the build form's error), entities decoded.
fn page_message(body: &str) -> String {
    let re = regex::Regex::new(r#"<p class="(?:message|form-error)"[^>]*>(.*?)</p>"#).unwrap();
    let Some(m) = re.captures(body) else {
        return format!("(no message in {} bytes of page)", body.len());
    };
    m[1].replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[test]
fn bad_input_gets_a_friendly_page_and_the_log_is_unchanged() {
    let g = crate::service::example();
    let built = g.run(&["build", "reviews/raw/date=2025-01-07"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let svc = crate::service::Service::start(&g, &[]);
    let before = g.assert_bel_intact();
    let csrf = csrf_token(&svc.addr);
    let mut report = String::new();
    for (method, path, form) in [
        ("GET", "/runs/no-such-run", ""),
        ("GET", "/job-runs/no-such-job-run", ""),
        (
            "GET",
            "/partition?ref=reviews%2Fdaily%2Fdate%3D2031-01-01",
            "",
        ),
        ("GET", "/partition?ref=nobody%2Fmakes%2Fthis", ""),
        ("GET", "/partition", ""),
        ("GET", "/partition?ref=a%01b", ""),
        ("GET", "/partition?ref=catalog%2Fpodcasts&depth=99", ""),
        ("GET", "/partitions?status=bogus", ""),
        ("GET", "/no/such/page", ""),
        ("POST", "/actions/build", "refs=+%0A+"),
        ("POST", "/actions/build", "refs=nobody%2Fmakes%2Fthis"),
        ("POST", "/actions/build", "refs=a%01b"),
        (
            "POST",
            "/actions/invalidate",
            "ref=reviews%2Fdaily%2Fdate%3D2031-01-01",
        ),
    ] {
        let sent = if method == "POST" {
            format!("{form}&csrf={csrf}")
        } else {
            form.to_string()
        };
        let (status, body) = form_request(&svc.addr, method, path, &sent);
        assert!(
            body.contains("<nav>") && body.contains("</html>"),
            "{path}: not a whole page: {body}"
        );
        report.push_str(&format!(
            "{method} {path} {form}\n  -> {status}: {}\n",
            page_message(&body)
        ));
    }
    insta::assert_snapshot!(g.redact(&report));
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "bad input changed the event log"
    );
}

/// A child process killed when dropped, also when a test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_that_waited_for_another_shows_which_and_follows_its_outcome() {
    use crate::util::{jobs_graph, ref_job, wait_for, TestGraph};
    use std::time::Duration;
    let g = TestGraph::new(&jobs_graph("gate", &[("slow", "")]));
    // The job waits (bounded) for the test to create `go`.
    ref_job(
        &g,
        "slow",
        "",
        "i=0; while [ ! -e go ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done",
    );
    let svc = crate::service::Service::start(&g, &[]);
    let mut owner = KillOnDrop(
        g.command(&["build", "slow/x"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        "the CLI build to claim slow/x",
        Duration::from_secs(30),
        || g.status("slow/x").as_deref() == Some("PARTITION_BUILDING"),
    );
    let waiter = svc.submit("slow/x");
    let owner_run = g
        .events()
        .iter()
        .filter_map(|e| e.get("partitionEvent"))
        .find(|p| p["status"] == "PARTITION_BUILDING")
        .map(|p| p["jobGraphRunId"].as_str().unwrap().to_string())
        .unwrap();
    wait_for(
        "the service's run to delegate",
        Duration::from_secs(30),
        || {
            g.events()
                .iter()
                .filter_map(|e| e.get("partitionEvent"))
                .any(|p| {
                    p["status"] == "PARTITION_DELEGATED" && p["jobGraphRunId"] == waiter.as_str()
                })
        },
    );
    let page = |id: &str| {
        let (status, body) = form_request(&svc.addr, "GET", &format!("/runs/{id}"), "");
        assert_eq!(status, 200, "{body}");
        body
    };
    let waiting = page(&waiter);
    assert!(waiting.contains("Waited for other runs"), "{waiting}");
    assert!(
        waiting.contains(
            "<p class=\"request\">asked by <b>anonymous@loopback</b> for 1 partition</p>"
        ),
        "{waiting}"
    );
    assert!(
        waiting.contains(&format!("href=\"/runs/{owner_run}\"")),
        "no link to the owner run {owner_run}: {waiting}"
    );
    assert!(
        waiting.contains("class=\"node s-delegated\" data-id=\"slow/x\""),
        "{waiting}"
    );

    std::fs::write(g.path().join("go"), "").unwrap();
    assert!(owner.0.wait().unwrap().success());
    wait_for("the service's run to end", Duration::from_secs(30), || {
        svc.get_json(&format!("/api/v1/runs/{waiter}"))["status"] == "GRAPH_SUCCESS"
    });
    let done = page(&waiter);
    assert!(
        done.contains("class=\"node s-success\" data-id=\"slow/x\""),
        "{done}"
    );
    assert!(done.contains("Waited for other runs"), "{done}");
    assert_eq!(
        g.run(&["partitions", "history", "slow/x"])
            .stdout
            .matches("PARTITION_BUILDING")
            .count(),
        1,
        "built once"
    );
}
