//! Every HTTP route with a raw HTTP/1.1 client (Server-Sent Events included), the OpenAPI
//! document listing exactly those routes and describing what each answers, and bad input
//! answered with a 4xx JSON error.

use std::{collections::BTreeSet, time::Duration};

use databuild_service::{
    http::ROUTES,
    openapi::check::check_named,
    remote::{query, Client},
};

use super::{example, runtime, Service};
use crate::util::wait_for;

const DAY: &str = "reviews/daily/date=2025-01-07";

/// Asserts `v` is what the OpenAPI document says `name` is.
fn assert_schema(name: &str, v: &serde_json::Value, what: &str) {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(databuild_service::openapi::document);
    if let Err(e) = check_named(doc, name, v) {
        panic!("{what}: the answer is not the documented `{name}`: {e}\n{v}");
    }
}

/// Asserts the answer `v` of route `method path` is what the OpenAPI document says it is.
fn assert_documented(method: &str, path: &str, v: &serde_json::Value) {
    let route = ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .unwrap_or_else(|| panic!("no route {method} {path}"));
    assert_schema(route.response, v, &format!("{method} {path}"));
}

#[test]
fn every_http_route_answers() {
    let g = example();
    let svc = Service::start(&g, &[]);
    let covered: std::cell::RefCell<BTreeSet<(&str, &str)>> = Default::default();
    let post = |path: &'static str, body: &str| {
        covered.borrow_mut().insert(("POST", path));
        let v = svc.post_json(path, body);
        assert_documented("POST", path, &v);
        v
    };
    let day = format!(r#"{{"outputs":[{{"str":"{DAY}"}}]}}"#);
    let graph = post("/api/v1/analyze", &day);
    assert_eq!(graph["graph"]["nodes"].as_array().unwrap().len(), 3);
    let built = post("/api/v1/build", &day);
    assert_eq!(built["manifests"].as_array().unwrap().len(), 3);
    let plan = post(
        "/api/v1/analyze",
        r#"{"outputs":[{"str":"reviews/raw/date=2025-01-08"}]}"#,
    );
    let executed = post("/api/v1/execute", &plan["graph"].to_string());
    assert_eq!(executed["manifests"].as_array().unwrap().len(), 1);
    post("/api/v1/builds/active", "{}");
    let found = post("/api/v1/lookup", &day);
    assert_eq!(found["taskRefs"][0]["job"]["label"], "daily_summary");
    assert_eq!(
        post("/api/v1/runs/list", "{}")["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let manifests = post(
        "/api/v1/partitions/list",
        r#"{"query":{"refPattern":"reviews/raw/.*"}}"#,
    );
    assert_eq!(manifests["manifests"].as_array().unwrap().len(), 2);
    let latest = post(
        "/api/v1/partitions/latest",
        &format!(r#"{{"partitionRef":{{"str":"{DAY}"}}}}"#),
    );
    assert_eq!(latest["event"]["status"], "PARTITION_AVAILABLE");
    let requested = post(
        "/api/v1/partitions/request",
        &format!(r#"{{"partitionRef":{{"str":"{DAY}"}}}}"#),
    );
    assert!(requested["result"]["available"].is_object(), "{requested}");
    let deps = post(
        "/api/v1/partitions/dependencies",
        &format!(r#"{{"partitionRef":{{"str":"{DAY}"}},"depth":1}}"#),
    );
    assert!(
        deps["graph"]["edges"].as_array().unwrap().len() >= 2,
        "{deps}"
    );
    let appended = post(
        "/api/v1/events",
        r#"{"event":{"partitionRef":{"str":"landing/x"},"status":"PARTITION_AVAILABLE"}}"#,
    );
    assert!(appended["eventId"].as_str().is_some_and(|s| !s.is_empty()));
    let queried = post(
        "/api/v1/events/query",
        &format!(r#"{{"query":{{"partitionRefs":[{{"str":"{DAY}"}}]}}}}"#),
    );
    assert_eq!(
        queried["totalCount"], "4",
        "int64 is a string in proto3 JSON: {queried}"
    );

    // The asynchronous submit answers at once; the build goes on in the background.
    covered.borrow_mut().insert(("POST", "/api/v1/builds"));
    let id = svc.submit("reviews/raw/date=2025-01-10");
    let get = |template: &'static str, path: &str| {
        covered.borrow_mut().insert(("GET", template));
        let v = svc.get_json(path);
        assert_documented("GET", template, &v);
        v
    };
    wait_for(
        "the submitted build to end",
        Duration::from_secs(10),
        || svc.get_json(&format!("/api/v1/builds/{id}"))["state"] == "succeeded",
    );
    let state = get("/api/v1/builds/{run_id}", &format!("/api/v1/builds/{id}"));
    assert_eq!(
        state["outcome"]["built"][0], "reviews/raw/date=2025-01-10",
        "{state}"
    );
    covered
        .borrow_mut()
        .insert(("GET", "/api/v1/builds/{run_id}/events"));
    let (status, sse) = svc.request("GET", &format!("/api/v1/builds/{id}/events"), "");
    assert_eq!(status, 200);
    assert!(
        sse.contains("event: jobGraphRunEvent") && sse.contains("event: partitionEvent"),
        "{sse}"
    );
    assert!(sse.trim_end().contains("event: end\ndata: {"), "{sse}");
    let events = sse_events(&sse);
    assert!(
        events.len() > 2 && events.last().unwrap().0 == "end",
        "{sse}"
    );
    for (event, data) in events {
        let schema = if event == "end" {
            "WireBuild"
        } else {
            "WireEvent"
        };
        assert_schema(schema, &data, &format!("SSE event `{event}`"));
    }
    // Each event's id is its log position; `after` (and a reconnecting client's
    // Last-Event-ID) resumes after one.
    let ids: Vec<i64> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|i| i.parse().unwrap())
        .collect();
    assert!(
        ids.len() > 2 && ids.windows(2).all(|w| w[0] < w[1]),
        "{ids:?}"
    );
    let mid = ids[ids.len() / 2];
    let (_, rest) = svc.request(
        "GET",
        &format!("/api/v1/builds/{id}/events?after={mid}"),
        "",
    );
    let rest_ids: Vec<i64> = rest
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(rest_ids, ids[ids.len() / 2 + 1..], "{rest}");
    assert!(rest.trim_end().contains("event: end\ndata: {"), "{rest}");

    let q = query([("ref", DAY)]);
    assert_eq!(
        get("/api/v1/partitions", &format!("/api/v1/partitions?{q}"))["partitions"][0]["status"],
        "PARTITION_AVAILABLE"
    );
    let listed = get(
        "/api/v1/partitions",
        "/api/v1/partitions?status=available&limit=3",
    );
    assert_eq!(listed["partitions"].as_array().unwrap().len(), 3);
    let history = get(
        "/api/v1/partitions/history",
        &format!("/api/v1/partitions/history?{q}"),
    );
    assert_eq!(history["events"].as_array().unwrap().len(), 4, "{history}");
    let why = get(
        "/api/v1/partitions/why",
        &format!("/api/v1/partitions/why?{q}"),
    );
    assert_eq!(why["partitionRef"], DAY, "{why}");
    assert!(
        why["rootCause"]
            .as_str()
            .unwrap()
            .contains("is AVAILABLE, built by graph run"),
        "{why}"
    );
    let lineage = get("/api/v1/lineage", &format!("/api/v1/lineage?{q}"));
    assert!(!lineage["pairs"].as_array().unwrap().is_empty());
    let log = get("/api/v1/log", "/api/v1/log?after=0&limit=5");
    assert_eq!(log["events"].as_array().unwrap().len(), 5);
    assert_eq!(log["events"][0]["seq"], 1);
    let runs = get("/api/v1/runs", "/api/v1/runs?limit=10");
    assert_eq!(runs["runs"].as_array().unwrap().len(), 3, "{runs}");
    let run = get("/api/v1/runs/{run_id}", &format!("/api/v1/runs/{id}"));
    assert_eq!(run["status"], "GRAPH_SUCCESS");
    assert!(!get(
        "/api/v1/runs/{run_id}/events",
        &format!("/api/v1/runs/{id}/events")
    )["events"]
        .as_array()
        .unwrap()
        .is_empty());
    let jobs = get(
        "/api/v1/runs/{run_id}/jobs",
        &format!("/api/v1/runs/{id}/jobs"),
    );
    let job = jobs["jobRuns"][0]["jobRunId"].as_str().unwrap().to_string();
    assert_eq!(
        get("/api/v1/jobs/{job_run_id}", &format!("/api/v1/jobs/{job}"))["status"],
        "JOB_SUCCESS"
    );
    assert!(!get(
        "/api/v1/jobs/{job_run_id}/events",
        &format!("/api/v1/jobs/{job}/events")
    )["events"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(get("/api/v1/health", "/api/v1/health")["status"], "SERVING");
    let doc = get("/api/v1/openapi.json", "/api/v1/openapi.json");
    for r in ROUTES {
        assert!(
            doc["paths"][r.path][r.method.to_ascii_lowercase()].is_object(),
            "{} {}",
            r.method,
            r.path
        );
    }
    covered.borrow_mut().insert(("GET", "/metrics"));
    let (status, metrics) = svc.request("GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("databuild_bel_append_seconds_count"),
        "{metrics}"
    );
    assert!(
        metrics.contains("databuild_job_runs{status=\"success\"} 5"),
        "{metrics}"
    );

    // Wants: created, listed, shown with their events, cancelled.
    let wanted = post(
        "/api/v1/wants",
        &format!(r#"{{"refs":["{DAY}"],"ttl":"1d"}}"#),
    );
    let want = wanted["wants"][0]["wantId"].as_str().unwrap().to_string();
    let wants = get("/api/v1/wants", "/api/v1/wants?limit=10");
    assert_eq!(wants["wants"][0]["wantId"], want.as_str(), "{wants}");
    let shown = get("/api/v1/wants/{want_id}", &format!("/api/v1/wants/{want}"));
    assert_eq!(shown["events"][0]["wantId"], want.as_str(), "{shown}");
    let cancelled = post(
        "/api/v1/wants/cancel",
        &format!(r#"{{"wants":["{want}"]}}"#),
    );
    assert_eq!(cancelled["wants"][0]["status"], "WANT_CANCELLED");

    // The partition event stream (SSE): history since a time, then live.
    covered
        .borrow_mut()
        .insert(("GET", "/api/v1/events/stream"));
    let events = runtime().block_on(async {
        let client = Client::new(&svc.url, "test").unwrap();
        let mut got = Vec::new();
        let path = format!(
            "/api/v1/events/stream?{}",
            query([("ref", DAY), ("since", "1970-01-01T00:00:00Z")])
        );
        client
            .sse(&path, |e| {
                got.push(e);
                got.len() < 4
            })
            .await
            .unwrap();
        got
    });
    assert!(
        events.iter().all(|e| e.event == "partitionEvent"),
        "{events:?}"
    );
    assert!(events[3].data.contains("PARTITION_AVAILABLE"), "{events:?}");

    let all: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    let covered = covered.into_inner();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "routes not exercised: {missing:?}");
    drop(svc);
    g.assert_bel_intact();
}

#[test]
fn bad_http_requests_are_4xx_json_errors_with_a_message() {
    let g = example();
    let svc = Service::start(&g, &[]);
    let before = g.events().len();
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/api/v1/build", r#"{"outputs": [{"str": "a""#, 400),
        (
            "POST",
            "/api/v1/build",
            r#"{"outputs": [{"ref": "a"}]}"#,
            400,
        ),
        ("POST", "/api/v1/analyze", r#"{"outputs": "reviews"}"#, 400),
        (
            "POST",
            "/api/v1/build",
            r#"{"outputs": [{"str": "nothing/makes=this"}]}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/builds",
            r#"{"outputs": [{"str": "line\nbreak"}]}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/events/query",
            r#"{"query": {"limit": 99999999}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/events/query",
            r#"{"query": {"orderBy": {"field": "colour"}}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/events/query",
            r#"{"query": {"statuses": ["PARTITION_SHINY"]}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/partitions/dependencies",
            r#"{"partitionRef": {"str": "a"}, "depth": -1}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/events",
            r#"{"event": {"partitionRef": {"str": "x"}}}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/partitions/latest",
            r#"{"partitionRef": {"str": "never/seen"}}"#,
            404,
        ),
        ("GET", "/api/v1/log?limit=lots", "", 400),
        ("GET", "/api/v1/log?limit=10000000", "", 400),
        ("GET", "/api/v1/partitions?status=shiny", "", 400),
        ("GET", "/api/v1/events/stream?since=yesterday", "", 400),
        ("GET", "/api/v1/runs/no-such-run", "", 404),
        ("GET", "/api/v1/builds/no-such-run/events", "", 404),
        ("GET", "/api/v1/nothing-here", "", 404),
    ];
    let mut report = Vec::new();
    for (method, path, body, want) in cases {
        let (status, resp) = svc.request(method, path, body);
        assert_eq!(status, *want, "{method} {path} {body}: {resp}");
        let e: serde_json::Value =
            serde_json::from_str(&resp).unwrap_or_else(|_| panic!("not JSON: {resp}"));
        assert_schema("WireError", &e, &format!("{method} {path}"));
        report.push(format!(
            "{method} {path} {body}\n  -> {status} {}: {}",
            e["code"].as_str().unwrap(),
            e["message"].as_str().unwrap()
        ));
    }
    insta::assert_snapshot!("http_bad_requests", g.redact(&report.join("\n")));
    drop(svc);
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "bad requests wrote no events"
    );
}

/// The `(event, data)` of each Server-Sent Event in `text`, data parsed as JSON.
fn sse_events(text: &str) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let field = |name: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::to_string)
        };
        if let (Some(event), Some(data)) = (field("event: "), field("data: ")) {
            let data = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
            out.push((event, data));
        }
    }
    out
}

#[test]
fn cli_json_prints_what_the_http_api_answers_for_the_same_data() {
    let g = example();
    let built = g.run(&["--json", "build", DAY]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let outcome = serde_json::from_str(&built.stdout).unwrap();
    assert_schema("WireOutcome", &outcome, "build --json");
    let svc = Service::start(&g, &[]);
    let cli = |args: &[&str]| -> serde_json::Value {
        let out = g.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    let cli_lines = |args: &[&str]| -> serde_json::Value {
        let out = g.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect()
    };
    let q = query([("ref", DAY)]);
    let by_ref = format!(r#"{{"partitionRef":{{"str":"{DAY}"}}}}"#);
    let cases = [
        (
            cli(&["--json", "partitions", "list", "--limit", "0"]),
            svc.get_json("/api/v1/partitions"),
        ),
        (
            cli(&["--json", "runs", "list", "--limit", "0"]),
            svc.get_json("/api/v1/runs"),
        ),
        (
            cli_lines(&["--json", "partitions", "history", DAY]),
            svc.get_json(&format!("/api/v1/partitions/history?{q}"))["events"].clone(),
        ),
        (
            cli_lines(&["--json", "events"]),
            svc.get_json("/api/v1/log?limit=0")["events"].clone(),
        ),
        (
            cli(&["--json", "partitions", "show", DAY]),
            svc.post_json("/api/v1/partitions/latest", &by_ref)["event"].clone(),
        ),
        (
            cli(&["--json", "lookup", DAY]),
            svc.post_json(
                "/api/v1/lookup",
                &format!(r#"{{"outputs":[{{"str":"{DAY}"}}]}}"#),
            ),
        ),
        (
            cli(&["--json", "active"]),
            svc.post_json("/api/v1/builds/active", "{}"),
        ),
    ];
    for (from_cli, from_http) in cases {
        assert_eq!(from_cli, from_http);
    }
    drop(svc);
}
