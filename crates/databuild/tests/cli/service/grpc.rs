//! Every RPC of the seed's services over gRPC with tonic clients, reflection and health,
//! and bad input answered with INVALID_ARGUMENT and a message.

use std::time::Duration;

use databuild_proto::{self as pb, PartitionRef};
use databuild_service::clients::{
    catalog_client::CatalogClient, data_build_service_client::DataBuildServiceClient,
    graph_lookup_client::GraphLookupClient,
};
use futures_util::StreamExt as _;

use super::{example, runtime, Service};

const DAY: &str = "reviews/daily/date=2025-01-07";

fn r(s: &str) -> PartitionRef {
    PartitionRef::new(s)
}

#[test]
fn every_rpc_answers_over_grpc() {
    let g = example();
    let svc = Service::start(&g, &["-j", "2"]);
    runtime().block_on(async {
        let ch = svc.channel().await;
        let mut dbs = DataBuildServiceClient::new(ch.clone());
        let mut cat = CatalogClient::new(ch.clone());
        let mut look = GraphLookupClient::new(ch.clone());

        // A stream opened first sees the build's events live.
        let mut live = cat
            .stream_partition_events(pb::StreamPartitionEventsRequest {
                filter: Some(pb::EventStreamFilter {
                    partition_refs: vec![r(DAY)],
                    statuses: vec![pb::PartitionStatus::PartitionAvailable as i32],
                    since: None,
                }),
            })
            .await
            .unwrap()
            .into_inner();

        let analyzed = dbs
            .analyze_graph(pb::GraphAnalyzeRequest {
                outputs: vec![r(DAY)],
            })
            .await
            .unwrap()
            .into_inner();
        let job_graph = analyzed.graph.unwrap();
        assert_eq!(job_graph.nodes.len(), 3, "{job_graph:?}");

        let built = dbs
            .build(pb::GraphBuildRequest {
                outputs: vec![r(DAY)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(built.manifests.len(), 3);
        let first = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .expect("a live event")
            .unwrap()
            .unwrap();
        assert_eq!(first.partition_ref.unwrap().str, DAY);
        drop(live);

        let other = dbs
            .analyze_graph(pb::GraphAnalyzeRequest {
                outputs: vec![r("reviews/clean/date=2025-01-08")],
            })
            .await
            .unwrap()
            .into_inner()
            .graph
            .unwrap();
        let executed = dbs.execute(other).await.unwrap().into_inner();
        assert_eq!(executed.manifests.len(), 2);

        let found = look
            .lookup(pb::GraphLookupRequest {
                outputs: vec![r(DAY), r("catalog/podcasts")],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.task_refs.len(), 1);
        assert_eq!(
            found.task_refs[0].job.as_ref().unwrap().label,
            "daily_summary"
        );

        let runs = cat
            .list_job_graph_runs(pb::ListJobGraphRunsRequest {
                query: Some(pb::JobGraphRunQuery {
                    statuses: vec![pb::JobGraphRunStatus::GraphSuccess as i32],
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(runs.runs.len(), 2);
        assert!(runs.runs.iter().all(|r| !r.events.is_empty()));
        // A time range selects by start time, in the event log's query (newest first).
        let started = |run: &pb::JobGraphRun| {
            databuild_proto::timestamp_micros(run.events[0].timestamp.as_ref().unwrap())
        };
        let (newer, older) = (started(&runs.runs[0]), started(&runs.runs[1]));
        assert!(newer > older);
        for (start, end, want) in [
            (Some(older + 1), None, &runs.runs[0]),
            (None, Some(newer), &runs.runs[1]),
            (Some(older), Some(older + 1), &runs.runs[1]),
        ] {
            let found = cat
                .list_job_graph_runs(pb::ListJobGraphRunsRequest {
                    query: Some(pb::JobGraphRunQuery {
                        time_range: Some(pb::TimeRange {
                            start: start.map(databuild_proto::timestamp_from_micros),
                            end: end.map(databuild_proto::timestamp_from_micros),
                        }),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner();
            let ids: Vec<&str> = found
                .runs
                .iter()
                .map(|r| r.job_graph_run_id.as_str())
                .collect();
            assert_eq!(ids, [want.job_graph_run_id.as_str()], "{start:?}..{end:?}");
        }

        let manifests = cat
            .list_partitions(pb::ListPartitionManifestsRequest {
                query: Some(pb::PartitionManifestsQuery {
                    ref_pattern: "reviews/clean/.*".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(manifests.manifests.len(), 2);

        let appended = cat
            .append_partition_event(pb::AppendPartitionEventRequest {
                event: Some(pb::PartitionEvent {
                    partition_ref: Some(r("landing/file=1")),
                    status: pb::PartitionStatus::PartitionAvailable as i32,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!appended.event_id.is_empty());

        let latest = cat
            .get_latest_partition_event(pb::GetLatestPartitionEventRequest {
                partition_ref: Some(r(DAY)),
            })
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
        assert_eq!(
            latest.status,
            pb::PartitionStatus::PartitionAvailable as i32
        );
        assert!(latest.manifest.is_some());

        let queried = cat
            .query_partition_events(pb::QueryPartitionEventsRequest {
                query: Some(pb::PartitionEventQuery {
                    partition_refs: vec![r(DAY)],
                    limit: 2,
                    order_by: Some(pb::OrderBy {
                        field: "timestamp".into(),
                        ascending: false,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(queried.events.len(), 2);
        assert_eq!(queried.total_count, 4, "{queried:?}");

        let since = cat
            .stream_partition_events(pb::StreamPartitionEventsRequest {
                filter: Some(pb::EventStreamFilter {
                    partition_refs: vec![r(DAY)],
                    statuses: vec![],
                    since: Some(databuild_proto::timestamp_from_micros(0)),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let history: Vec<_> = since.take(4).collect().await;
        let statuses: Vec<i32> = history.into_iter().map(|e| e.unwrap().status).collect();
        assert_eq!(
            statuses,
            [1, 2, 3, 4],
            "REQUESTED, SCHEDULED, BUILDING, AVAILABLE"
        );

        let available = cat
            .request_partition(pb::RequestPartitionRequest {
                partition_ref: Some(r(DAY)),
                client_id: "dashboard".into(),
                options: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(
            available.result.unwrap().result,
            Some(pb::request_result::Result::Available(_))
        ));
        let waited = cat
            .request_partition(pb::RequestPartitionRequest {
                partition_ref: Some(r("reviews/raw/date=2025-01-09")),
                client_id: "scheduler".into(),
                options: Some(pb::RequestOptions {
                    allow_delegation: true,
                    timeout_seconds: 10,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            matches!(
                waited.result.as_ref().unwrap().result,
                Some(pb::request_result::Result::Available(_))
            ),
            "{waited:?}"
        );

        let active = cat
            .get_active_build_status(pb::GetActiveBuildStatusRequest {
                partition_refs: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(active.active_builds.is_empty(), "{active:?}");

        let deps = cat
            .get_dependency_graph(pb::GetDependencyGraphRequest {
                partition_ref: Some(r(DAY)),
                depth: 2,
            })
            .await
            .unwrap()
            .into_inner()
            .graph
            .unwrap();
        assert!(deps.nodes.len() >= 4, "{deps:?}");

        // Reflection lists the services; health says SERVING.
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let mut refl = ServerReflectionClient::new(ch.clone());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = refl
            .server_reflection_info(futures_util::stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            resp.next().await.unwrap().unwrap().message_response
        else {
            panic!("no service list")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for s in [
            "databuild.v1.DataBuildService",
            "databuild.v1.Catalog",
            "databuild.v1.GraphLookup",
            "databuild.v1.Wants",
        ] {
            assert!(names.iter().any(|n| n == s), "{names:?}");
        }
        let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "databuild.v1.Catalog".into(),
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
    crate::util::wait_for("three builds counted", Duration::from_secs(5), || {
        svc.metric("databuild_builds_total{outcome=\"succeeded\"}") == 3.0
    });
    drop(svc);
    g.assert_bel_intact();
}

#[test]
fn bad_grpc_requests_are_invalid_argument_with_a_message() {
    let g = example();
    let svc = Service::start(&g, &[]);
    let before = g.events().len();
    let report = runtime().block_on(async {
        let ch = svc.channel().await;
        let mut dbs = DataBuildServiceClient::new(ch.clone());
        let mut cat = CatalogClient::new(ch.clone());
        let mut lines = Vec::new();
        let mut note = |what: &str, s: tonic::Status| {
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{what}: {s:?}");
            lines.push(format!("{what}: {}", s.message()));
        };
        // A DataDep's field 1 is a number; GraphAnalyzeRequest's is a message.
        let mut raw = tonic::client::Grpc::new(ch.clone());
        raw.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<pb::DataDep, pb::GraphAnalyzeResponse>::default();
        let e = raw
            .unary(
                tonic::Request::new(pb::DataDep {
                    dep_type: 1,
                    partition_ref: None,
                }),
                "/databuild.v1.DataBuildService/AnalyzeGraph"
                    .parse()
                    .unwrap(),
                codec,
            )
            .await
            .unwrap_err();
        note("malformed protobuf", e);
        let e = dbs
            .build(pb::GraphBuildRequest {
                outputs: vec![r("nothing/makes=this")],
            })
            .await
            .unwrap_err();
        note("unknown ref", e);
        let e = dbs
            .analyze_graph(pb::GraphAnalyzeRequest {
                outputs: vec![r("tab\there")],
            })
            .await
            .unwrap_err();
        note("invalid ref", e);
        let e = dbs
            .build(pb::GraphBuildRequest { outputs: vec![] })
            .await
            .unwrap_err();
        note("no refs", e);
        let e = cat
            .query_partition_events(pb::QueryPartitionEventsRequest {
                query: Some(pb::PartitionEventQuery {
                    limit: 1_000_000,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        note("absurd limit", e);
        let e = cat
            .query_partition_events(pb::QueryPartitionEventsRequest {
                query: Some(pb::PartitionEventQuery {
                    order_by: Some(pb::OrderBy {
                        field: "colour".into(),
                        ascending: true,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        note("unknown order_by", e);
        let e = cat
            .list_job_graph_runs(pb::ListJobGraphRunsRequest {
                query: Some(pb::JobGraphRunQuery {
                    limit: -5,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        note("negative limit", e);
        let e = cat
            .get_dependency_graph(pb::GetDependencyGraphRequest {
                partition_ref: Some(r(DAY)),
                depth: 5000,
            })
            .await
            .unwrap_err();
        note("absurd depth", e);
        let e = cat
            .request_partition(pb::RequestPartitionRequest {
                partition_ref: Some(r(DAY)),
                client_id: String::new(),
                options: Some(pb::RequestOptions {
                    allow_delegation: true,
                    timeout_seconds: -1,
                }),
            })
            .await
            .unwrap_err();
        note("negative timeout", e);
        let e = cat
            .get_latest_partition_event(pb::GetLatestPartitionEventRequest {
                partition_ref: None,
            })
            .await
            .unwrap_err();
        note("missing ref", e);
        let e = cat
            .append_partition_event(pb::AppendPartitionEventRequest {
                event: Some(pb::PartitionEvent {
                    partition_ref: Some(r("x")),
                    status: 42,
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        note("unknown status", e);
        let e = cat
            .list_partitions(pb::ListPartitionManifestsRequest {
                query: Some(pb::PartitionManifestsQuery {
                    ref_pattern: "(".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        note("invalid pattern", e);
        let e = cat
            .get_latest_partition_event(pb::GetLatestPartitionEventRequest {
                partition_ref: Some(r("never/seen")),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        lines.push(format!("unknown partition (NOT_FOUND): {}", e.message()));
        lines.join("\n")
    });
    insta::assert_snapshot!("grpc_bad_requests", g.redact(&report));
    drop(svc);
    assert_eq!(
        g.assert_bel_intact(),
        before,
        "bad requests wrote no events"
    );
}

#[test]
fn a_failed_build_is_an_error_naming_the_failed_partitions_and_the_run() {
    let g = crate::util::TestGraph::new(
        "[graph]\nlabel = \"g\"\n[[jobs]]\nlabel = \"broken\"\nentrypoint = [\"jobs/broken\"]\nproduces = ['out/.*']\n",
    );
    g.script(
        "broken",
        r#"if [ "$1" = config ]; then shift; printf '{"configs":[{"outputs":[{"str":"%s"}]}]}' "$1"; else echo boom >&2; exit 3; fi"#,
    );
    let svc = Service::start(&g, &[]);
    let status = runtime().block_on(async {
        let mut dbs = DataBuildServiceClient::new(svc.channel().await);
        dbs.build(pb::GraphBuildRequest {
            outputs: vec![r("out/a")],
        })
        .await
        .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::Aborted);
    let (id, _) = g.runs().into_iter().next().unwrap();
    assert!(status.message().contains(&id), "{}", status.message());
    insta::assert_snapshot!("grpc_failed_build", g.redact(status.message()));
    drop(svc);
    g.assert_bel_intact();
}
