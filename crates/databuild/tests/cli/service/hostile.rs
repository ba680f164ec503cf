//! Hostile clients against a real `databuild serve --auth`: missing, wrong, revoked and
//! under-privileged tokens, cross-origin and CSRF-less form posts, a forged `Host`,
//! `text/plain` JSON, a spoofed client label, a 100 MB body, slowloris, 20,000 idle
//! sockets during a build and 200 `since` streams that never read. Every attack must be
//! refused or bounded, refused requests must leave the event log as it was, and the build
//! in flight must succeed. Prints "N attacks, N refused/bounded, 0 succeeded".

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::{raw_exchange, runtime, security::add_token, Service};
use crate::util::wait_for;

const WEEK: &str = "reports/weekly/week=2025-01-06";

#[derive(Default)]
struct Tally {
    attacks: usize,
    refused: usize,
    succeeded: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: &str, refused: bool, detail: &str) {
        self.attacks += 1;
        if refused {
            self.refused += 1;
        } else {
            self.succeeded.push(format!("{what}: {detail}"));
        }
    }
}

/// A request with these extra headers (Host is the service's unless given); (status, head,
/// body).
fn send(
    svc: &Service,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        headers.push(("Host", &svc.addr));
    }
    headers.extend_from_slice(extra);
    raw_exchange(&svc.addr, method, path, &headers, body).unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Whether the server has closed `s` (nonblocking).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn hostile_clients_are_refused_or_bounded_and_a_build_in_flight_succeeds() {
    let g = super::example();
    let admin = add_token(&g, "alice", "admin");
    let reader = add_token(&g, "rita", "read");
    let builder = add_token(&g, "ci", "build");
    let revoked = add_token(&g, "gone", "admin");
    assert_eq!(
        g.run(&["auth", "revoke", "gone", "--file", "auth.toml"])
            .code,
        0
    );
    let svc = Service::start(
        &g,
        &[
            "--auth",
            "auth.toml",
            "-j",
            "2",
            "--header-read-timeout",
            "2s",
            "--idle-timeout",
            "5s",
            "--max-connections",
            "4096",
        ],
    );
    let pid = svc.pid();
    let bearer = |t: &str| format!("Bearer {t}");
    let (ba, br, bb, bx) = (
        bearer(&admin),
        bearer(&reader),
        bearer(&builder),
        bearer(&revoked),
    );
    let json = ("Content-Type", "application/json");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let build = format!(r#"{{"outputs":[{{"str":"{WEEK}"}}]}}"#);
    let available = r#"{"event":{"partitionRef":{"str":"reviews/daily/date=2025-01-07"},"status":"PARTITION_AVAILABLE"}}"#;
    let writes: Vec<(&str, &str, (&str, &str), String)> = vec![
        ("POST", "/api/v1/build", json, build.clone()),
        ("POST", "/api/v1/builds", json, build.clone()),
        ("POST", "/api/v1/execute", json, "{}".into()),
        (
            "POST",
            "/api/v1/partitions/request",
            json,
            format!(r#"{{"partitionRef":{{"str":"{WEEK}"}}}}"#),
        ),
        ("POST", "/api/v1/events", json, available.into()),
        ("POST", "/actions/build", form, format!("refs={WEEK}")),
        (
            "POST",
            "/actions/invalidate",
            form,
            "ref=catalog%2Fpodcasts".into(),
        ),
    ];
    let mut t = Tally::default();
    let before = g.assert_bel_intact();

    // Credentials: none, wrong, revoked, and `read` attempting each write.
    for (who, auth) in [
        ("no token", None),
        ("wrong token", Some("Bearer dbt_not_a_token".to_string())),
        ("revoked token", Some(bx.clone())),
        ("read token", Some(br.clone())),
    ] {
        for (m, path, ct, body) in &writes {
            let mut h = vec![*ct];
            if let Some(a) = &auth {
                h.push(("Authorization", a));
            }
            let (status, _, resp) = send(&svc, m, path, &h, body);
            let want = if who == "read token" { 403 } else { 401 };
            // A dashboard form without a session is sent to sign in, never run.
            let refused = status == want || (path.starts_with("/actions") && status == 401);
            t.record(
                &format!("{who} {m} {path}"),
                refused,
                &format!("{status} {resp}"),
            );
        }
    }
    runtime().block_on(async {
        use databuild_service::clients::{
            catalog_client::CatalogClient, data_build_service_client::DataBuildServiceClient,
        };
        let ch = svc.channel().await;
        let mut req = tonic::Request::new(databuild_proto::AppendPartitionEventRequest::default());
        req.metadata_mut()
            .insert("authorization", br.parse().unwrap());
        let r = CatalogClient::new(ch.clone())
            .append_partition_event(req)
            .await;
        let refused = r
            .as_ref()
            .is_err_and(|e| e.code() == tonic::Code::PermissionDenied);
        t.record(
            "read token gRPC AppendPartitionEvent",
            refused,
            &format!("{r:?}"),
        );
        let mut req = tonic::Request::new(databuild_proto::GraphBuildRequest::default());
        req.metadata_mut()
            .insert("authorization", br.parse().unwrap());
        let r = DataBuildServiceClient::new(ch.clone()).build(req).await;
        let refused = r
            .as_ref()
            .is_err_and(|e| e.code() == tonic::Code::PermissionDenied);
        t.record("read token gRPC Build", refused, &format!("{r:?}"));
        let req = tonic::Request::new(databuild_proto::AppendPartitionEventRequest::default());
        let r = CatalogClient::new(ch).append_partition_event(req).await;
        let refused = r
            .as_ref()
            .is_err_and(|e| e.code() == tonic::Code::Unauthenticated);
        t.record(
            "no token gRPC AppendPartitionEvent",
            refused,
            &format!("{r:?}"),
        );
    });

    // A signed-in admin's browser, and pages of other origins posting its forms.
    let origin = format!("http://{}", svc.addr);
    let (status, head, _) = send(
        &svc,
        "POST",
        "/sign-in",
        &[form, ("Origin", &origin)],
        &format!("token={admin}"),
    );
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let (_, _, home) = send(&svc, "GET", "/", &[("Cookie", &cookie)], "");
    let csrf = regex::Regex::new(r#"name="csrf" value="([^"]+)""#)
        .unwrap()
        .captures(&home)
        .expect("a CSRF token")[1]
        .to_string();
    let invalidate = format!("ref=catalog%2Fpodcasts&csrf={csrf}");
    for (what, h, body) in [
        (
            "cross-origin form",
            vec![("Origin", "http://evil.example")],
            invalidate.clone(),
        ),
        (
            "cross-site fetch metadata",
            vec![("Sec-Fetch-Site", "cross-site")],
            invalidate.clone(),
        ),
        ("null origin", vec![("Origin", "null")], invalidate.clone()),
        (
            "form without CSRF token",
            vec![("Origin", origin.as_str())],
            "ref=catalog%2Fpodcasts".to_string(),
        ),
        (
            "form with a wrong CSRF token",
            vec![("Origin", origin.as_str())],
            "ref=catalog%2Fpodcasts&csrf=dbt_guess".to_string(),
        ),
    ] {
        let mut h = h.clone();
        h.extend([form, ("Cookie", cookie.as_str())]);
        let (status, _, resp) = send(&svc, "POST", "/actions/invalidate", &h, &body);
        t.record(what, status == 403, &format!("{status} {resp}"));
    }
    // A forged Host (DNS rebinding), even with a valid token; text/plain JSON.
    let (status, _, resp) = send(
        &svc,
        "GET",
        "/api/v1/partitions",
        &[("Host", "evil.example"), ("Authorization", &ba)],
        "",
    );
    t.record("forged Host", status == 403, &format!("{status} {resp}"));
    let (status, _, resp) = send(
        &svc,
        "POST",
        "/api/v1/events",
        &[("Content-Type", "text/plain"), ("Authorization", &ba)],
        available,
    );
    t.record(
        "text/plain JSON",
        status == 415,
        &format!("{status} {resp}"),
    );
    // 100 MB body: refused at the limit, not read to the end.
    {
        let mut s = TcpStream::connect(&svc.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(s, "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: {ba}\r\nContent-Length: {}\r\n\r\n", svc.addr, 100 * 1024 * 1024).unwrap();
        let chunk = vec![b' '; 1024 * 1024];
        let sent = (0..100).take_while(|_| s.write_all(&chunk).is_ok()).count();
        let mut head = [0u8; 64];
        let n = s.read(&mut head).unwrap_or(0);
        let status = String::from_utf8_lossy(&head[..n]).to_string();
        let refused = status.starts_with("HTTP/1.1 4") || n == 0;
        t.record(
            "100 MB body",
            refused,
            &format!("sent {sent} MB, answer {status:?}"),
        );
    }
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "refused requests changed the event log"
    );

    // A spoofed client label is kept only as a label after the principal.
    let (status, _, resp) = send(
        &svc,
        "POST",
        "/api/v1/builds",
        &[
            json,
            ("Authorization", &bb),
            ("x-databuild-client", "ops-admin"),
        ],
        &build,
    );
    assert_eq!(status, 202, "{resp}");
    let run_id = serde_json::from_str::<serde_json::Value>(&resp).unwrap()["jobGraphRunId"]
        .as_str()
        .unwrap()
        .to_string();
    // The submitted build records its request once planned.
    let mut history = String::new();
    wait_for(
        "the build's request to be recorded",
        Duration::from_secs(30),
        || {
            history = g.run(&["--json", "partitions", "history", WEEK]).stdout;
            history.contains("PARTITION_REQUESTED")
        },
    );
    let spoofed = history.contains("\"ops-admin\"");
    t.record(
        "spoofed client header",
        !spoofed && history.contains("ci (ops-admin)"),
        &history,
    );

    // 5,000 slowloris sockets: headers never finished; all closed by the header timeout.
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..5000)
        .filter_map(|_| {
            let mut s = TcpStream::connect(&svc.addr).ok()?;
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    let opened = slow.len();
    let (status, _, _) = send(&svc, "GET", "/api/v1/health", &[], "");
    assert_eq!(
        status, 200,
        "the service answers while slowloris sockets are open"
    );
    wait_for(
        "slowloris sockets to be closed",
        Duration::from_secs(30),
        || {
            slow.retain_mut(|s| !closed_by_server(s));
            slow.is_empty()
        },
    );
    t.record("5000 slowloris sockets", true, "");
    println!(
        "slowloris: {opened} sockets, all closed after {:?}",
        start.elapsed()
    );

    // 20,000 idle sockets while the build runs: the service keeps answering and its
    // descriptors stay under the cap; at most 15,000 held at once here (this process's
    // own limit).
    let mut idle: Vec<TcpStream> = Vec::new();
    let mut peak_fds = 0;
    for i in 0..20_000 {
        if let Ok(s) = TcpStream::connect(&svc.addr) {
            let _ = s.set_nonblocking(true);
            idle.push(s);
        }
        if idle.len() >= 15_000 || i % 2000 == 1999 {
            idle.retain_mut(|s| !closed_by_server(s));
            peak_fds = peak_fds.max(open_fds(pid));
            let (status, _, _) = send(&svc, "GET", "/api/v1/health", &[], "");
            assert_eq!(
                status,
                200,
                "the service answers with {} idle sockets open",
                idle.len()
            );
        }
    }
    peak_fds = peak_fds.max(open_fds(pid));
    t.record(
        "20000 idle sockets",
        peak_fds < 4096 + 512,
        &format!("{peak_fds} descriptors"),
    );
    println!(
        "idle sockets: server peak {peak_fds} descriptors, {} still open here",
        idle.len()
    );
    drop(idle);

    // 200 `since` streams that never read: at most 64 per principal, memory bounded.
    let rss_before = rss_kb(pid);
    let streams: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(&svc.addr).unwrap();
            write!(s, "GET /api/v1/events/stream?since=1970-01-01T00:00:00Z HTTP/1.1\r\nHost: {}\r\nAuthorization: {br}\r\n\r\n", svc.addr).unwrap();
            s
        })
        .collect();
    let metric = |name: &str| -> f64 {
        let (_, _, text) = send(&svc, "GET", "/metrics", &[("Authorization", &ba)], "");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    wait_for(
        "every stream to be opened or refused",
        Duration::from_secs(30),
        || metric("databuild_streams_open") + metric("databuild_streams_refused_total") >= 200.0,
    );
    let grown = rss_kb(pid).saturating_sub(rss_before);
    let open = metric("databuild_streams_open");
    t.record(
        "200 non-reading since streams",
        open <= 64.0 && grown < 64 * 1024,
        &format!("{open} open, RSS +{grown} kB"),
    );
    println!("since streams: {open} open, the rest refused; RSS grew {grown} kB");
    drop(streams);

    // The build in flight through all of it succeeded.
    wait_for("the build to end", Duration::from_secs(120), || {
        let (_, _, b) = send(
            &svc,
            "GET",
            &format!("/api/v1/builds/{run_id}"),
            &[("Authorization", &br)],
            "",
        );
        !b.contains("\"running\"")
    });
    let (_, _, b) = send(
        &svc,
        "GET",
        &format!("/api/v1/builds/{run_id}"),
        &[("Authorization", &br)],
        "",
    );
    assert!(b.contains("\"succeeded\""), "the build in flight: {b}");
    g.assert_bel_intact();

    println!(
        "{} attacks, {} refused/bounded, {} succeeded",
        t.attacks,
        t.refused,
        t.succeeded.len()
    );
    assert!(
        t.succeeded.is_empty(),
        "attacks that succeeded:\n{}",
        t.succeeded.join("\n")
    );
}
