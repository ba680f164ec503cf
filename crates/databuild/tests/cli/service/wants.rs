//! Wants through the service: the `Wants` gRPC service and the `/api/v1/wants` routes
//! create, list, show and cancel them; bad input is refused with a message and writes
//! nothing; only the `build` role may create or cancel; the dashboard lists them.
//! (`serve` may satisfy a want while a test runs, so a new want is ACTIVE or SATISFIED.)

use databuild_proto::{self as pb, PartitionRef, WantStatus};
use databuild_service::clients::wants_client::WantsClient;
use tonic::Code;

use super::{
    example, raw_request_with, runtime,
    security::{add_token, call},
    Service,
};

const DAY: &str = "reviews/daily/date=2025-01-07";
const RAW: &str = "reviews/raw/date=2025-01-08";
const DAY_MICROS: i64 = 86_400_000_000;
const HOUR_MICROS: i64 = 3_600_000_000;
const SECOND: i64 = 1_000_000;

fn micros(t: &Option<pb::Timestamp>) -> i64 {
    databuild_proto::timestamp_micros(t.as_ref().expect("a time"))
}

fn is_live(status: i32) -> bool {
    status == WantStatus::WantActive as i32 || status == WantStatus::WantSatisfied as i32
}

#[test]
fn wants_over_grpc_are_created_listed_shown_and_cancelled() {
    let g = example();
    let svc = Service::start(&g, &["--no-reconcile"]);
    runtime().block_on(async {
        let ch = svc.channel().await;
        let mut wants = WantsClient::new(ch.clone());
        let mut req = tonic::Request::new(pb::CreateWantsRequest {
            partition_refs: vec![PartitionRef::new(DAY), PartitionRef::new(RAW)],
            ttl: "30d".into(),
            sla: "6h".into(),
            requesting_clients: Vec::new(),
        });
        req.metadata_mut()
            .insert("x-databuild-client", "nightly".parse().unwrap());
        let created = wants.create_wants(req).await.unwrap().into_inner().wants;
        assert_eq!(created.len(), 2, "{created:?}");
        let refs: Vec<&str> = created
            .iter()
            .map(|w| w.partition_ref.as_ref().unwrap().str.as_str())
            .collect();
        assert_eq!(refs, [DAY, RAW]);
        for w in &created {
            assert!(w.want_id.starts_with("want-"), "{w:?}");
            assert!(is_live(w.status), "{w:?}");
            // Counted from when the request was taken, just before the event was written.
            let ttl = micros(&w.expires_at) - micros(&w.created_at);
            let sla = micros(&w.sla_deadline) - micros(&w.created_at);
            assert!(
                (30 * DAY_MICROS - SECOND..=30 * DAY_MICROS).contains(&ttl),
                "{ttl}"
            );
            assert!(
                (6 * HOUR_MICROS - SECOND..=6 * HOUR_MICROS).contains(&sla),
                "{sla}"
            );
            assert_eq!(w.requesting_clients, ["anonymous@loopback (nightly)"]);
        }
        let day = created[0].want_id.clone();

        let all = wants
            .list_wants(pb::ListWantsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .wants;
        let mut ids: Vec<&str> = all.iter().map(|w| w.want_id.as_str()).collect();
        let mut made: Vec<&str> = created.iter().map(|w| w.want_id.as_str()).collect();
        ids.sort_unstable();
        made.sort_unstable();
        assert_eq!(ids, made);
        // Paged one at a time with `after`: every want once, in id order, and the last
        // page says there is no next one.
        let mut paged: Vec<String> = Vec::new();
        let mut after = String::new();
        loop {
            let page = wants
                .list_wants(pb::ListWantsRequest {
                    status: 0,
                    limit: 1,
                    after: after.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(page.wants.len() <= 1);
            paged.extend(page.wants.iter().map(|w| w.want_id.clone()));
            if page.next_after.is_empty() {
                break;
            }
            assert_eq!(page.next_after, page.wants[0].want_id);
            after = page.next_after;
            assert!(paged.len() <= ids.len(), "paging does not end: {paged:?}");
        }
        assert_eq!(paged, ids);

        let got = wants
            .get_want(pb::GetWantRequest {
                want_id: day.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.want.as_ref().unwrap().want_id, day);
        assert_eq!(got.events[0].status, WantStatus::WantActive as i32);
        assert_eq!(got.events[0].want_id, day);
        assert!(!got.waiting_for.is_empty(), "{got:?}");
        assert!(got.waiting_for.contains(DAY), "{}", got.waiting_for);

        // Cancelled by id: recorded with who cancelled it; a second time there is no live
        // want of that id.
        let cancelled = wants
            .cancel_wants(pb::CancelWantsRequest {
                wants: vec![day.clone()],
            })
            .await
            .unwrap()
            .into_inner()
            .wants;
        assert_eq!(cancelled.len(), 1);
        assert_eq!(cancelled[0].status, WantStatus::WantCancelled as i32);
        assert_eq!(cancelled[0].reason, "cancelled by anonymous@loopback");
        let again = wants
            .cancel_wants(pb::CancelWantsRequest {
                wants: vec![day.clone()],
            })
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::NotFound, "{again}");
        let got = wants
            .get_want(pb::GetWantRequest {
                want_id: day.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let last = got.events.last().unwrap();
        assert_eq!(last.status, WantStatus::WantCancelled as i32);
        assert_eq!(got.waiting_for, "nothing: it is CANCELLED");
        let listed = wants
            .list_wants(pb::ListWantsRequest {
                status: WantStatus::WantCancelled as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .wants;
        let ids: Vec<&str> = listed.iter().map(|w| w.want_id.as_str()).collect();
        assert_eq!(ids, [day.as_str()]);

        // Cancelled by ref: every live want of it. A registered external partition may
        // be wanted.
        wants
            .create_wants(pb::CreateWantsRequest {
                partition_refs: vec![PartitionRef::new("catalog/podcasts")],
                ..Default::default()
            })
            .await
            .unwrap();
        let by_ref = wants
            .cancel_wants(pb::CancelWantsRequest {
                wants: vec!["catalog/podcasts".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .wants;
        assert_eq!(by_ref.len(), 1);
        assert_eq!(
            by_ref[0].partition_ref.as_ref().unwrap().str,
            "catalog/podcasts"
        );
        assert_eq!(by_ref[0].status, WantStatus::WantCancelled as i32);

        // Bad input: INVALID_ARGUMENT or NOT_FOUND, with a message.
        let mut report = Vec::new();
        let mut note = |what: &str, s: tonic::Status| {
            report.push(format!("{what}\n  -> {:?}: {}", s.code(), s.message()));
        };
        let bad_create = |refs: &[&str], ttl: &str, sla: &str| pb::CreateWantsRequest {
            partition_refs: refs.iter().map(|r| PartitionRef::new(*r)).collect(),
            ttl: ttl.into(),
            sla: sla.into(),
            requesting_clients: Vec::new(),
        };
        for (what, req) in [
            ("create, no refs", bad_create(&[], "", "")),
            ("create, ttl `forever`", bad_create(&[DAY], "forever", "")),
            ("create, sla `0s`", bad_create(&[DAY], "", "0s")),
            (
                "create, a ref no job produces",
                bad_create(&["nothing/makes=this"], "", ""),
            ),
        ] {
            let e = wants.create_wants(req).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e}");
            note(what, e);
        }
        let e = wants
            .get_want(pb::GetWantRequest {
                want_id: "want-nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
        note("get, unknown id", e);
        let e = wants
            .cancel_wants(pb::CancelWantsRequest { wants: vec![] })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        note("cancel, nothing named", e);
        let e = wants
            .list_wants(pb::ListWantsRequest {
                status: WantStatus::WantSlaMissed as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        note("list, status WANT_SLA_MISSED", e);
        insta::assert_snapshot!("grpc_want_bad_requests", report.join("\n"));

        // Reflection and health know the service.
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "databuild.v1.Wants".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    });
    drop(svc);
    let want_events = g
        .events()
        .iter()
        .filter(|e| e.get("wantEvent").is_some())
        .count();
    assert!(want_events >= 5, "3 created, 2 cancelled: {want_events}");
    g.assert_bel_intact();
}

#[test]
fn wants_over_http_and_bad_input_that_writes_nothing() {
    let g = example();
    let svc = Service::start(&g, &["--no-reconcile"]);
    let before = g.events().len();
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/api/v1/wants", "{}", 400),
        ("POST", "/api/v1/wants", r#"{"refs": []}"#, 400),
        (
            "POST",
            "/api/v1/wants",
            r#"{"refs": ["reviews/daily/date=2025-01-07"], "ttl": "forever"}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/wants",
            r#"{"refs": ["reviews/daily/date=2025-01-07"], "sla": "0s"}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/wants",
            r#"{"refs": ["nothing/makes=this", "nor/this"]}"#,
            400,
        ),
        ("POST", "/api/v1/wants", r#"{"refs": ["line\nbreak"]}"#, 400),
        (
            "POST",
            "/api/v1/wants",
            r#"{"partitionRefs": [{"str": "reviews/daily/date=2025-01-07"}]}"#,
            400,
        ),
        ("POST", "/api/v1/wants/cancel", r#"{"wants": []}"#, 400),
        (
            "POST",
            "/api/v1/wants/cancel",
            r#"{"wants": ["want-nope"]}"#,
            404,
        ),
        ("GET", "/api/v1/wants/want-nope", "", 404),
        ("GET", "/api/v1/wants?status=shiny", "", 400),
        ("GET", "/api/v1/wants?status=sla_missed", "", 400),
        ("GET", "/api/v1/wants?limit=100000", "", 400),
        ("GET", "/api/v1/wants?after=line%0Abreak", "", 400),
    ];
    let mut report = Vec::new();
    for (method, path, body, want) in cases {
        let (status, resp) = svc.request(method, path, body);
        assert_eq!(status, *want, "{method} {path} {body}: {resp}");
        let e: serde_json::Value =
            serde_json::from_str(&resp).unwrap_or_else(|_| panic!("not JSON: {resp}"));
        report.push(format!(
            "{method} {path} {body}\n  -> {status} {}: {}",
            e["code"].as_str().unwrap(),
            e["message"].as_str().unwrap()
        ));
    }
    insta::assert_snapshot!("http_want_bad_requests", g.redact(&report.join("\n")));
    assert_eq!(g.events().len(), before, "bad requests wrote no events");

    let created = svc.post_json(
        "/api/v1/wants",
        &format!(r#"{{"refs": ["{DAY}"], "ttl": "30d", "sla": "6h"}}"#),
    );
    let w = &created["wants"][0];
    let id = w["wantId"].as_str().unwrap().to_string();
    assert_eq!(w["partitionRef"]["str"], DAY, "{created}");
    assert!(
        w["status"] == "WANT_ACTIVE" || w["status"] == "WANT_SATISFIED",
        "{created}"
    );
    assert!(
        w["slaDeadline"].is_string() && w["expiresAt"].is_string(),
        "{created}"
    );
    assert_eq!(w["requestingClients"][0], "anonymous@loopback", "{created}");

    let listed = svc.get_json("/api/v1/wants");
    assert_eq!(listed["wants"][0]["wantId"], id.as_str(), "{listed}");
    // One want: a page of one names it as where the next page starts, and that page is
    // empty and the last.
    let page = svc.get_json("/api/v1/wants?limit=1");
    assert_eq!(page["nextAfter"], id.as_str(), "{page}");
    let next = svc.get_json(&format!("/api/v1/wants?after={id}"));
    assert!(next["wants"].as_array().is_none_or(Vec::is_empty), "{next}");
    assert!(
        next["nextAfter"].as_str().is_none_or(str::is_empty),
        "{next}"
    );
    let none = svc.get_json("/api/v1/wants?status=cancelled");
    assert!(none["wants"].as_array().is_none_or(Vec::is_empty), "{none}");
    let got = svc.get_json(&format!("/api/v1/wants/{id}"));
    assert_eq!(got["want"]["wantId"], id.as_str(), "{got}");
    assert_eq!(got["events"][0]["status"], "WANT_ACTIVE", "{got}");
    assert!(got["waitingFor"].as_str().unwrap().contains(DAY), "{got}");

    let cancelled = svc.post_json("/api/v1/wants/cancel", &format!(r#"{{"wants": ["{id}"]}}"#));
    assert_eq!(
        cancelled["wants"][0]["status"], "WANT_CANCELLED",
        "{cancelled}"
    );
    let listed = svc.get_json("/api/v1/wants?status=cancelled&limit=10");
    assert_eq!(listed["wants"][0]["wantId"], id.as_str(), "{listed}");
    let got = svc.get_json(&format!("/api/v1/wants/{id}"));
    let events = got["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["status"], "WANT_CANCELLED", "{got}");
    drop(svc);
    g.assert_bel_intact();
}

#[test]
fn only_the_build_role_creates_or_cancels_wants() {
    let g = example();
    let reader = add_token(&g, "rita", "read");
    let builder = add_token(&g, "ci", "build");
    let svc = Service::start(&g, &["--auth", "auth.toml", "--no-reconcile"]);
    let before = g.assert_bel_intact();
    let body = format!(r#"{{"refs": ["{DAY}"]}}"#);
    let (status, resp) = call(&svc, "POST", "/api/v1/wants", Some(&reader), &body);
    assert_eq!(status, 403, "{resp}");
    assert!(
        resp.contains("principal `rita` has role `read`; POST /api/v1/wants needs role `build`"),
        "{resp}"
    );
    let (status, resp) = call(
        &svc,
        "POST",
        "/api/v1/wants/cancel",
        Some(&reader),
        r#"{"wants": [""]}"#,
    );
    assert_eq!(status, 403, "{resp}");
    let (status, resp) = call(&svc, "POST", "/api/v1/wants", None, &body);
    assert_eq!(status, 401, "{resp}");
    // A browser's cross-origin POST is refused even with a token.
    let auth = format!("Bearer {builder}");
    let (status, resp) = raw_request_with(
        &svc.addr,
        "POST",
        "/api/v1/wants",
        &[
            ("Host", &svc.addr),
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
            ("Origin", "http://evil.example"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(status, 403, "{resp}");
    assert!(resp.contains("cross-origin request refused"), "{resp}");
    runtime().block_on(async {
        let mut wants = WantsClient::new(svc.channel().await);
        let as_reader = |req| {
            let mut req = tonic::Request::new(req);
            req.metadata_mut()
                .insert("authorization", format!("Bearer {reader}").parse().unwrap());
            req
        };
        let e = wants
            .create_wants(as_reader(pb::CreateWantsRequest {
                partition_refs: vec![PartitionRef::new(DAY)],
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e}");
        let mut req = tonic::Request::new(pb::ListWantsRequest::default());
        req.metadata_mut()
            .insert("authorization", format!("Bearer {reader}").parse().unwrap());
        assert!(wants
            .list_wants(req)
            .await
            .unwrap()
            .into_inner()
            .wants
            .is_empty());
    });
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "refused requests changed the log"
    );

    // `build` may; the principal is the requester. `read` may read.
    let (status, resp) = call(&svc, "POST", "/api/v1/wants", Some(&builder), &body);
    assert_eq!(status, 200, "{resp}");
    let created: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(
        created["wants"][0]["requestingClients"][0], "ci",
        "{created}"
    );
    let id = created["wants"][0]["wantId"].as_str().unwrap();
    let (status, resp) = call(
        &svc,
        "GET",
        &format!("/api/v1/wants/{id}"),
        Some(&reader),
        "",
    );
    assert_eq!(status, 200, "{resp}");
    let cancel = format!(r#"{{"wants": ["{id}"]}}"#);
    let (status, resp) = call(
        &svc,
        "POST",
        "/api/v1/wants/cancel",
        Some(&builder),
        &cancel,
    );
    assert_eq!(status, 200, "{resp}");
    assert!(resp.contains("cancelled by ci"), "{resp}");
    drop(svc);
    g.assert_bel_intact();
}

#[test]
fn the_dashboard_lists_wants_and_shows_each_with_its_history() {
    let g = example();
    let svc = Service::start(&g, &["--no-reconcile"]);
    let page = |path: &str, want: u16| {
        let (status, body) = svc.request("GET", path, "");
        assert_eq!(status, want, "{path}: {body}");
        assert!(body.contains("</html>"), "{path}: not a whole page: {body}");
        body
    };
    let empty = page("/wants", 200);
    assert!(empty.contains("id=\"no-wants\""), "{empty}");
    assert!(
        empty.contains("<a href=\"/wants\" class=\"here\">Wants</a>"),
        "{empty}"
    );

    let created = svc.post_json(
        "/api/v1/wants",
        &format!(r#"{{"refs": ["{RAW}"], "sla": "6h"}}"#),
    );
    let id = created["wants"][0]["wantId"].as_str().unwrap().to_string();
    let list = page("/wants", 200);
    let row = list
        .split("<tr data-want=")
        .find(|r| r.starts_with(&format!("\"{id}\"")))
        .unwrap_or_else(|| panic!("no row of {id}: {list}"));
    assert!(row.contains(&format!("href=\"/wants/{id}\"")), "{row}");
    assert!(
        row.contains("href=\"/partition?ref=reviews%2Fraw%2Fdate%3D2025-01-08\""),
        "{row}"
    );
    let active = row.contains("data-status=\"ACTIVE\"");
    assert!(active || row.contains("data-status=\"SATISFIED\""), "{row}");
    if active {
        // Due within the SLA, and waiting for its partition (linked).
        assert!(
            row.contains(">due in 5h 59m<") || row.contains(">due in 6h 0m<"),
            "{row}"
        );
        assert!(row.contains("class=\"waiting\"><a class=\"ref\""), "{row}");
    }

    let detail = page(&format!("/wants/{id}"), 200);
    assert!(detail.contains("id=\"waiting-for\""), "{detail}");
    assert!(detail.contains("id=\"cancel-want\""), "{detail}");
    assert!(detail.contains("data-status=\"ACTIVE\""), "{detail}");

    // The Cancel button's form: refused without the page's CSRF token, then done.
    let form = |body: &str| {
        super::raw_request_as(
            &svc.addr,
            "POST",
            "/actions/unwant",
            "application/x-www-form-urlencoded",
            body,
        )
        .unwrap()
    };
    let (status, body) = form(&format!("want={id}"));
    assert_eq!(status, 403, "{body}");
    let csrf = crate::dashboard::csrf_token(&svc.addr);
    let (status, body) = form(&format!("want={id}&csrf={csrf}"));
    assert_eq!(status, 303, "{body}");
    let (status, body) = form(&format!("want={id}&csrf={csrf}"));
    assert_eq!(status, 404, "only a live want is cancelled: {body}");
    assert!(body.contains("no active want"), "{body}");
    let detail = page(&format!("/wants/{id}"), 200);
    let history = detail.split("id=\"want-history\"").nth(1).unwrap();
    assert!(history.contains("data-status=\"CANCELLED\""), "{history}");
    assert!(
        history.contains("cancelled by anonymous@loopback (dashboard)"),
        "{history}"
    );
    assert!(!detail.contains("id=\"cancel-want\""), "{detail}");
    let only_cancelled = page("/wants?status=cancelled", 200);
    assert!(only_cancelled.contains(&format!("data-want=\"{id}\"")));
    let only_active = page("/wants?status=active", 200);
    assert!(!only_active.contains(&format!("data-want=\"{id}\"")));
    let unknown = page("/wants/want-nope", 404);
    assert!(
        unknown.contains("There is no want `want-nope`"),
        "{unknown}"
    );
    page("/wants?status=bogus", 400);
    drop(svc);
    g.assert_bel_intact();
}

#[test]
fn want_unwant_and_wants_with_remote_match_the_local_commands() {
    let g = example();
    let svc = Service::start(&g, &["--no-reconcile"]);
    let remote = |args: &[&str]| {
        let mut all = vec!["--remote", svc.url.as_str()];
        all.extend(args);
        g.run(&all)
    };
    const OTHER: &str = "reviews/daily/date=2025-01-09";
    let out = remote(&["want", DAY, OTHER, "--ttl", "30d", "--sla", "6h"]);
    crate::util::assert_code(&out, 0);
    let ids: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{}", out.stdout);
    assert!(out.stdout.contains(" sla ") && out.stdout.contains(" expires "));

    // The service's answers print as the local commands print the log (the local `show`
    // also numbers each event with its log position).
    let id = ids[0].as_str();
    for args in [
        vec!["wants", "list"],
        vec!["wants", "list", "--status", "active", "--limit", "1"],
        vec!["--json", "wants", "list"],
        vec!["--json", "wants", "show", id],
    ] {
        let (here, there) = (g.run(&args), remote(&args));
        crate::util::assert_code(&there, 0);
        assert_eq!(here.stdout, there.stdout, "{args:?}");
    }
    let here = g.run(&["wants", "show", id]).stdout;
    let there = remote(&["wants", "show", id]).stdout;
    let unnumbered = regex::Regex::new(r"(?m)^  #\d+ ").unwrap();
    assert_eq!(unnumbered.replace_all(&here, "  "), there);
    assert!(there.contains("WANT_ACTIVE"), "{there}");

    // Unknown ids are refused as locally, and nothing is withdrawn.
    let before = g.events().len();
    let (here, there) = (
        g.run(&["unwant", "want-nope", OTHER]),
        remote(&["unwant", "want-nope", OTHER]),
    );
    assert_ne!(there.code, 0, "{}", there.stdout);
    assert_eq!(here.code, there.code, "{}\n{}", here.stderr, there.stderr);
    assert!(there.stderr.contains("want-nope"), "{}", there.stderr);
    assert_eq!(g.events().len(), before);
    let out = remote(&["unwant", id, OTHER]);
    crate::util::assert_code(&out, 0);
    let listed = g.run(&["wants", "list", "--status", "cancelled"]).stdout;
    assert_eq!(listed.lines().count(), 2, "{listed}");
    drop(svc);
    g.assert_bel_intact();
}
