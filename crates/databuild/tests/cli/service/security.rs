//! Who may do what: `serve` refuses a non-loopback address without `--auth`, access
//! tokens (`auth add|list|revoke`) with their roles over HTTP, gRPC and `--remote`, and the
//! requester recorded being the authenticated principal.

use super::{raw_request_with, runtime, Service};
use crate::util::TestGraph;

const WEEKLY: &str = "reviews/daily/date=2025-01-07";

#[test]
fn serve_on_all_interfaces_without_auth_exits_2_and_says_what_to_do() {
    let g = super::example();
    let out = g.run(&["serve", "--addr", "0.0.0.0:0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    insta::assert_snapshot!(g.redact(&out.stderr));
}

/// Adds principal `name` with `role` to `auth.toml` in the graph's directory; its token.
pub fn add_token(g: &TestGraph, name: &str, role: &str) -> String {
    let out = g.run(&["auth", "add", name, "--role", role, "--file", "auth.toml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.trim().to_string()
}

/// A JSON request with a bearer token (or none); (status, body).
pub fn call(
    svc: &Service,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Host", svc.addr.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    raw_request_with(&svc.addr, method, path, &headers, body).unwrap()
}

#[test]
fn tokens_have_roles_and_revoked_ones_stop_working() {
    let g = super::example();
    let admin = add_token(&g, "alice", "admin");
    let reader = add_token(&g, "rita", "read");
    let builder = add_token(&g, "ci", "build");
    let text = std::fs::read_to_string(g.path().join("auth.toml")).unwrap();
    for t in [&admin, &reader, &builder] {
        assert!(
            !text.contains(&t[4..]),
            "a token is stored in clear: {text}"
        );
    }
    let list = g.run(&["auth", "list", "--file", "auth.toml"]);
    assert_eq!(list.stdout, "alice\tadmin\nrita\tread\nci\tbuild\n");
    let dup = g.run(&[
        "auth",
        "add",
        "alice",
        "--role",
        "read",
        "--file",
        "auth.toml",
    ]);
    assert_eq!(dup.code, 2);

    let svc = Service::start(&g, &["--auth", "auth.toml"]);
    let before = g.assert_bel_intact();
    let build = format!(r#"{{"outputs":[{{"str":"{WEEKLY}"}}]}}"#);
    let mut report = String::new();
    for (who, token) in [
        ("no token", None),
        ("a wrong token", Some("dbt_0000")),
        ("rita (read)", Some(reader.as_str())),
    ] {
        for (method, path, body) in [
            ("GET", "/api/v1/partitions", ""),
            ("POST", "/api/v1/builds", build.as_str()),
            ("POST", "/api/v1/events", "{}"),
        ] {
            let (status, mut resp) = call(&svc, method, path, token, body);
            if status == 200 {
                resp = "(the data)".into();
            }
            report.push_str(&format!("{who}: {method} {path} -> {status} {resp}\n"));
        }
    }
    insta::assert_snapshot!("roles_refused", report);
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "refused requests changed the log"
    );

    // `build` may build; the principal is the requester, the client header a label.
    let (status, resp) = raw_request_with(
        &svc.addr,
        "POST",
        "/api/v1/build",
        &[
            ("Host", &svc.addr),
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {builder}")),
            ("x-databuild-client", "ops-admin"),
        ],
        &build,
    )
    .unwrap();
    assert_eq!(status, 200, "{resp}");
    let history = g.run(&["--json", "partitions", "history", WEEKLY]);
    assert!(
        history
            .stdout
            .contains(r#""requestingClients":["ci (ops-admin)"]"#),
        "{}",
        history.stdout
    );

    // The CLI's `--remote` sends DATABUILD_TOKEN or the `--token-file`.
    let remote = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["--remote", svc.url.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["partitions", "show", WEEKLY]);
        let out = g
            .command(&args)
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = remote(&[], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unauthenticated"), "{err}");
    assert_eq!(remote(&[("DATABUILD_TOKEN", &reader)], &[]).0, 0);
    std::fs::write(g.path().join("token"), format!("{reader}\n")).unwrap();
    assert_eq!(remote(&[], &["--token-file", "token"]).0, 0);

    // gRPC carries the token as metadata.
    runtime().block_on(async {
        use databuild_service::clients::catalog_client::CatalogClient;
        let mut cat = CatalogClient::new(svc.channel().await);
        let req = databuild_proto::ListPartitionManifestsRequest::default();
        let err = cat.list_partitions(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
        let mut req = tonic::Request::new(req);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {reader}").parse().unwrap());
        cat.list_partitions(req).await.unwrap();
        let mut append =
            tonic::Request::new(databuild_proto::AppendPartitionEventRequest::default());
        append
            .metadata_mut()
            .insert("authorization", format!("Bearer {reader}").parse().unwrap());
        let err = cat.append_partition_event(append).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    });

    // Revoked: refused at once, without restarting the service.
    let out = g.run(&["auth", "revoke", "rita", "--file", "auth.toml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (status, resp) = call(&svc, "GET", "/api/v1/partitions", Some(&reader), "");
    assert_eq!(status, 401, "{resp}");
    let (status, _) = call(&svc, "GET", "/api/v1/partitions", Some(&admin), "");
    assert_eq!(status, 200);
    g.assert_bel_intact();
}
