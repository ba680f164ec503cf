//! Faults around the service: a client that hangs up mid-stream, a consumer too slow for
//! its bounded buffer, SIGTERM with a build in flight, and `kill -9` mid-build.

use std::{io::Read as _, io::Write as _, time::Duration};

use databuild_proto as pb;
use databuild_service::clients::catalog_client::CatalogClient;
use futures_util::StreamExt as _;

use super::{runtime, Service};
use crate::util::{wait_for, TestGraph};

/// A graph whose job `slow` builds `slow/<x>` once the file `go` exists.
fn gated_graph() -> TestGraph {
    let g = TestGraph::new(
        "[graph]\nlabel = \"gated\"\n[[jobs]]\nlabel = \"slow\"\nentrypoint = [\"jobs/slow\"]\nproduces = ['slow/.*']\n",
    );
    g.script(
        "slow",
        r#"if [ "$1" = config ]; then shift; printf '{"configs":[{"outputs":[{"str":"%s"}]}]}' "$1"; exit 0; fi
while [ ! -e go ]; do sleep 0.02; done"#,
    );
    g
}

fn status_is(g: &TestGraph, r: &str, want: &str) -> bool {
    g.status(r).as_deref() == Some(want)
}

#[test]
fn a_client_that_hangs_up_mid_stream_frees_its_stream() {
    let g = super::example();
    let svc = Service::start(&g, &[]);
    // SSE over a raw connection: read the first event, then hang up.
    let mut s = std::net::TcpStream::connect(&svc.addr).unwrap();
    write!(
        s,
        "GET /api/v1/events/stream?since=1970-01-01T00:00:00Z HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
    wait_for("the SSE stream to open", Duration::from_secs(5), || {
        svc.metric("databuild_streams_open") == 1.0
    });
    drop(s);
    // gRPC: take one event, then drop the stream.
    runtime().block_on(async {
        let mut cat = CatalogClient::new(svc.channel().await);
        let mut stream = cat
            .stream_partition_events(pb::StreamPartitionEventsRequest {
                filter: Some(pb::EventStreamFilter {
                    since: Some(databuild_proto::timestamp_from_micros(0)),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(stream.next().await.unwrap().is_ok());
        drop(stream);
    });
    wait_for("both streams to be freed", Duration::from_secs(5), || {
        svc.metric("databuild_streams_open") == 0.0
    });
    assert_eq!(svc.request("GET", "/api/v1/health", "").0, 200);
}

#[test]
fn a_slow_stream_consumer_is_cut_off_with_resource_exhausted() {
    let g = super::example();
    let svc = Service::start(&g, &["--stream-buffer", "8"]);
    let refs: String = (0..3000).map(|i| format!("landing/file={i}\n")).collect();
    g.write("refs.txt", &refs);
    runtime().block_on(async {
        // A small HTTP/2 window, so that unread events back up into the service quickly.
        let ch = tonic::transport::Endpoint::from_shared(svc.url.clone())
            .unwrap()
            .initial_stream_window_size(Some(65_535))
            .initial_connection_window_size(Some(65_535))
            .connect()
            .await
            .unwrap();
        let mut cat = CatalogClient::new(ch);
        let mut stream = cat
            .stream_partition_events(pb::StreamPartitionEventsRequest { filter: None })
            .await
            .unwrap()
            .into_inner();
        // Many events while the consumer reads nothing.
        let out = g.run(&["partitions", "register", "--from-file", "refs.txt"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let metric = || async {
            tokio::task::block_in_place(|| svc.metric("databuild_streams_closed_slow_total"))
        };
        let start = std::time::Instant::now();
        while metric().await < 1.0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the slow stream was never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut received = 0;
        let status = loop {
            match stream.next().await {
                Some(Ok(_)) => received += 1,
                Some(Err(s)) => break s,
                None => panic!("the stream ended without a status after {received} events"),
            }
        };
        assert!(received < 3000, "{received}");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        insta::assert_snapshot!("slow_stream_consumer", status.message());
    });
    assert_eq!(svc.metric("databuild_streams_open"), 0.0);
}

#[test]
fn sigterm_refuses_new_builds_and_lets_the_build_in_flight_finish() {
    let g = gated_graph();
    let mut svc = Service::start(&g, &[]);
    svc.submit("slow/a");
    wait_for("slow/a to be building", Duration::from_secs(5), || {
        status_is(&g, "slow/a", "PARTITION_BUILDING")
    });
    let pid = svc.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(
        "the service to stop taking requests",
        Duration::from_secs(5),
        || {
            !svc.try_request("GET", "/api/v1/health", "")
                .is_ok_and(|r| r.0 == 200)
        },
    );
    let refused = svc.try_request(
        "POST",
        "/api/v1/builds",
        r#"{"outputs":[{"str":"slow/b"}]}"#,
    );
    assert!(!refused.as_ref().is_ok_and(|r| r.0 == 202), "{refused:?}");
    // Still running, still holding its claim.
    assert!(status_is(&g, "slow/a", "PARTITION_BUILDING"));
    g.write("go", "");
    let code = svc.wait();
    assert_eq!(code, 0, "{}", svc.stderr());
    assert!(status_is(&g, "slow/a", "PARTITION_AVAILABLE"));
    assert_eq!(g.status("slow/b"), None);
    g.assert_bel_intact();
}

#[test]
fn kill_9_mid_build_then_restart_and_the_rebuild_completes() {
    let g = gated_graph();
    let mut svc = Service::start(&g, &[]);
    svc.submit("slow/a");
    wait_for("slow/a to be building", Duration::from_secs(5), || {
        status_is(&g, "slow/a", "PARTITION_BUILDING")
    });
    svc.signal_and_wait("KILL");
    let svc = Service::start(&g, &[]);
    g.write("go", "");
    let built = svc.post_json("/api/v1/build", r#"{"outputs":[{"str":"slow/a"}]}"#);
    assert_eq!(built["manifests"].as_array().unwrap().len(), 1, "{built}");
    let runs = svc.get_json("/api/v1/runs");
    let statuses: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["GRAPH_SUCCESS", "GRAPH_FAILED"],
        "the killed run is failed, the rebuild succeeded"
    );
    let history = g.run(&["--json", "partitions", "history", "slow/a"]);
    assert!(
        history
            .stdout
            .contains(r#""failureCause":"FAILURE_CAUSE_OWNER_RUN_LOST""#),
        "{}",
        history.stdout
    );
    drop(svc);
    g.assert_bel_intact();
}
