//! The PostgreSQL event log over TLS, against the `ssl=on` server named by
//! `DATABUILD_TEST_POSTGRES_TLS` (`scripts/postgres.sh env` starts it, with its CA in
//! `DATABUILD_TEST_POSTGRES_TLS_CA`): `sslmode=verify-full` with the right CA builds and
//! `pg_stat_ssl` shows the connection encrypted; another CA is refused with a clear error.

use std::time::Duration;

use super::harness::*;
use crate::util::{make_certs, redact, wait_for};

fn tls_server() -> (String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the PostgreSQL TLS tests need a server with `ssl=on`. Run the \
                 tests with `scripts/test.sh`, or `eval \"$(scripts/postgres.sh env)\"` first"
            )
        })
    };
    (
        var("DATABUILD_TEST_POSTGRES_TLS"),
        var("DATABUILD_TEST_POSTGRES_TLS_CA"),
    )
}

/// Whether the `databuild` connections to database `db` use TLS (`pg_stat_ssl`), or
/// `None` while there is none.
fn databuild_ssl(server: &str, db: &str) -> Option<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
            .await
            .unwrap();
        let driver = tokio::spawn(connection);
        let rows = client
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = $1 AND a.application_name = 'databuild'",
                &[&db],
            )
            .await
            .unwrap();
        drop(client);
        let _ = driver.await;
        rows.first().map(|r| r.get::<_, bool>(0))
    })
}

#[test]
fn verify_full_builds_over_tls_and_another_ca_is_refused() {
    let (server, ca) = tls_server();
    let db = Database::on(&server);
    let shared = tempfile::tempdir().unwrap();
    let execs_path = shared.path().join("execs");
    let g = graph_dir(&[("raw", None, ""), ("top", Some("raw"), "")], &execs_path);
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "{}?sslmode=verify-full&sslrootcert={ca}",
            db.url.replace("127.0.0.1", host)
        );
        let out = run(&g, &url, &["build", "top/1"]);
        assert_code(&out, 0);
    }
    assert_eq!(execs(&execs_path).len(), 2);

    // A long-lived connection (`events --follow` listens) shows in pg_stat_ssl.
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url);
    let mut follow = spawn(&g, &url, &["events", "--follow"]);
    wait_for("databuild's connection", Duration::from_secs(10), || {
        databuild_ssl(&server, &db.name).is_some()
    });
    assert_eq!(databuild_ssl(&server, &db.name), Some(true));
    let _ = follow.kill();
    let _ = follow.wait();

    // `require` encrypts without verifying; `disable` does not encrypt.
    assert_code(
        &run(
            &g,
            &format!("{}?sslmode=require", db.url),
            &["build", "top/2"],
        ),
        0,
    );
    let mut plain = spawn(
        &g,
        &format!("{}?sslmode=disable", db.url),
        &["events", "--follow"],
    );
    wait_for("databuild's connection", Duration::from_secs(10), || {
        databuild_ssl(&server, &db.name).is_some()
    });
    assert_eq!(databuild_ssl(&server, &db.name), Some(false));
    let _ = plain.kill();
    let _ = plain.wait();

    // Another CA: refused, saying which file did not verify the server.
    let certs = make_certs(g.path());
    let other = certs.other_ca.to_str().unwrap();
    for mode in ["verify-full", "verify-ca"] {
        let out = run(
            &g,
            &format!("{}?sslmode={mode}&sslrootcert={other}", db.url),
            &["build", "top/3"],
        );
        assert_code(&out, 2);
        assert!(out.stderr.contains("UnknownIssuer"), "{}", out.stderr);
        if mode == "verify-full" {
            let port = server_address(&server);
            let text = redact(&out.stderr, g.path())
                .replace(&db.name, "[DB]")
                .replace(&port, "[HOST:PORT]");
            insta::assert_snapshot!("postgres_tls_wrong_ca", text);
        }
    }
    // verify-ca takes a host name the certificate does not name (connecting to
    // `hostaddr`); verify-full refuses it.
    let misnamed = format!(
        "{}?hostaddr=127.0.0.1&sslrootcert={ca}",
        db.url.replace("127.0.0.1", "db.invalid")
    );
    let by_ca = run(
        &g,
        &format!("{misnamed}&sslmode=verify-ca"),
        &["partitions", "list"],
    );
    assert_code(&by_ca, 0);
    let by_full = run(
        &g,
        &format!("{misnamed}&sslmode=verify-full"),
        &["partitions", "list"],
    );
    assert_code(&by_full, 2);
    assert!(
        by_full.stderr.contains("not valid for name"),
        "{}",
        by_full.stderr
    );
    assert_eq!(execs(&execs_path).len(), 4);
}
