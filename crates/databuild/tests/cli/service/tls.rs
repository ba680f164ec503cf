//! `serve --tls-cert/--tls-key`: the port speaks TLS (HTTP/1.1, and HTTP/2 chosen by ALPN
//! for gRPC); `--remote https://.. --ca-cert` reads and builds through it, a server whose
//! certificate another CA signed is refused, and unusable certificate or key files stop
//! `serve` with exit 2.

use std::process::Command;

use super::{example, Service};
use crate::util::{make_certs, TestCerts, TestGraph};

const WEEK: &str = "reports/weekly/week=2025-01-06";

fn tls_service(g: &TestGraph) -> (Service, TestCerts) {
    let certs = make_certs(g.path());
    let svc = Service::start(
        g,
        &[
            "--tls-cert",
            certs.cert.to_str().unwrap(),
            "--tls-key",
            certs.key.to_str().unwrap(),
        ],
    );
    assert!(svc.url.starts_with("https://"), "{}", svc.url);
    (svc, certs)
}

#[test]
fn remote_over_tls_reads_and_builds() {
    let g = example();
    let (svc, certs) = tls_service(&g);
    let ca = certs.ca.to_str().unwrap();
    let list = g.run(&["--remote", &svc.url, "--ca-cert", ca, "partitions", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(list.stdout.contains("catalog/podcasts"), "{}", list.stdout);
    // By name as well as by address: the certificate names both.
    let by_name = svc.url.replace("127.0.0.1", "localhost");
    let build = g.run(&[
        "--remote",
        &by_name,
        "--ca-cert",
        ca,
        "build",
        WEEK,
        "-j",
        "2",
    ]);
    assert_eq!(build.code, 0, "{}", build.stderr);
    let show = g.run(&[
        "--remote",
        &svc.url,
        "--ca-cert",
        ca,
        "partitions",
        "show",
        WEEK,
    ]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("AVAILABLE"), "{}", show.stdout);
    // HTTP/2 by ALPN (what gRPC clients speak), checked with curl.
    let curl = Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--cacert",
            ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ])
        .arg(format!("{}/api/v1/health", svc.url))
        .output();
    if let Ok(out) = curl {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2", "{out:?}");
    }
    // Plain HTTP on the TLS port gets no answer.
    assert!(svc
        .try_request("GET", "/api/v1/health", "")
        .map_or(true, |r| r.0 != 200));
}

#[test]
fn remote_over_tls_refuses_a_server_another_ca_signed() {
    let g = example();
    let (svc, certs) = tls_service(&g);
    let port = svc.addr.rsplit(':').next().unwrap().to_string();
    let out = g.run(&[
        "--remote",
        &svc.url,
        "--ca-cert",
        certs.other_ca.to_str().unwrap(),
        "partitions",
        "list",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains(&svc.url), "{}", out.stderr);
    insta::assert_snapshot!(
        "remote_tls_wrong_ca",
        g.redact(&out.stderr).replace(&port, "[PORT]")
    );
    let missing = g.run(&[
        "--remote",
        &svc.url,
        "--ca-cert",
        "nope.pem",
        "partitions",
        "list",
    ]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    insta::assert_snapshot!(
        "remote_tls_missing_ca",
        g.redact(&missing.stderr).replace(&port, "[PORT]")
    );
}

#[test]
fn serve_with_an_unusable_certificate_or_key_exits_2() {
    let g = example();
    let certs = make_certs(g.path());
    std::fs::write(g.path().join("empty.pem"), "").unwrap();
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    for (name, c, k) in [
        ("serve_tls_missing_cert", "missing.crt", key),
        ("serve_tls_missing_key", cert, "missing.key"),
        ("serve_tls_key_not_pem", cert, "empty.pem"),
        ("serve_tls_cert_not_pem", "empty.pem", key),
        (
            "serve_tls_key_of_another_cert",
            certs.other_ca.to_str().unwrap(),
            key,
        ),
    ] {
        let out = g.run(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            c,
            "--tls-key",
            k,
        ]);
        assert_eq!(out.code, 2, "{name}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout);
        insta::assert_snapshot!(name, g.redact(&out.stderr));
    }
    let alone = g.run(&["serve", "--tls-cert", cert]);
    assert_eq!(alone.code, 2, "{}", alone.stderr);
    assert!(alone.stderr.contains("--tls-key"), "{}", alone.stderr);
}
