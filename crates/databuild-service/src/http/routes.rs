//! The table of HTTP routes — method, path, what it does, its request and response
//! schemas — from which both the router and the OpenAPI document are built, so neither
//! can list a route the other lacks.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, MethodRouter},
    Extension,
};

use super::{client, json_response, log, parse, respond, sse, Params};
use crate::{
    builds::Ended,
    errors::ApiError,
    ops,
    security::Principal,
    state::App,
    wire::{WireBuild, WireError, WireHealth, WireOutcome, WireSubmitted, WireWantRequest},
};

/// One documented route.
#[derive(Debug)]
pub struct RouteDoc {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path (axum syntax: `{name}` is a path parameter).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// The request body schema (a `databuild.v1` message or a wire type), if any.
    pub request: Option<&'static str>,
    /// The response body schema; `text/event-stream` or `text/plain` for those.
    pub response: &'static str,
    /// Query parameters: (name, description).
    pub params: &'static [(&'static str, &'static str)],
}

const fn post_rpc(
    path: &'static str,
    summary: &'static str,
    req: &'static str,
    resp: &'static str,
) -> RouteDoc {
    RouteDoc {
        method: "POST",
        path,
        summary,
        request: Some(req),
        response: resp,
        params: &[],
    }
}

const fn get_doc(
    path: &'static str,
    summary: &'static str,
    resp: &'static str,
    params: &'static [(&'static str, &'static str)],
) -> RouteDoc {
    RouteDoc {
        method: "GET",
        path,
        summary,
        request: None,
        response: resp,
        params,
    }
}

const REF: (&str, &str) = ("ref", "a partition ref (repeatable)");
const STATUS: (&str, &str) = (
    "status",
    "a partition status such as `available` (repeatable)",
);
const LIMIT: (&str, &str) = ("limit", "at most this many");
const OFFSET: (&str, &str) = ("offset", "skip this many");

/// Every HTTP route.
pub const ROUTES: &[RouteDoc] = &[
    post_rpc("/api/v1/analyze", "DataBuildService.AnalyzeGraph: the job graph that would build the outputs", "GraphAnalyzeRequest", "GraphAnalyzeResponse"),
    post_rpc("/api/v1/execute", "DataBuildService.Execute: run a job graph; answers when the run ends (a failed run is a `build_failed` error naming the failed partitions and the run)", "JobGraph", "GraphExecuteResponse"),
    post_rpc("/api/v1/build", "DataBuildService.Build: build the outputs; answers when the run ends (a failed run is a `build_failed` error naming the failed partitions and the run)", "GraphBuildRequest", "GraphBuildResponse"),
    RouteDoc { method: "POST", path: "/api/v1/builds", summary: "Start a build and answer at once with its graph run id (202); follow it at `eventsUrl`", request: Some("GraphBuildRequest"), response: "WireSubmitted", params: &[("force", "rebuild the outputs even if available")] },
    get_doc("/api/v1/builds/{run_id}", "A build's state, and its outcome once it ended (outcomes of builds this service ran)", "WireBuild", &[]),
    get_doc("/api/v1/builds/{run_id}/events", "A build's events as Server-Sent Events (`jobGraphRunEvent`, `partitionEvent`, each with its log position as id), then `end` with its state; a reconnecting client's `Last-Event-ID` resumes after that position", "text/event-stream", &[("after", "only events after this log position")]),
    post_rpc("/api/v1/builds/active", "Catalog.GetActiveBuildStatus: claims held now", "GetActiveBuildStatusRequest", "GetActiveBuildStatusResponse"),
    post_rpc("/api/v1/lookup", "GraphLookup.Lookup: the job producing each ref", "GraphLookupRequest", "GraphLookupResponse"),
    post_rpc("/api/v1/runs/list", "Catalog.ListJobGraphRuns", "ListJobGraphRunsRequest", "ListJobGraphRunsResponse"),
    post_rpc("/api/v1/partitions/list", "Catalog.ListPartitions: manifests of partitions matching a ref pattern", "ListPartitionManifestsRequest", "ListPartitionManifestsResponse"),
    post_rpc("/api/v1/partitions/latest", "Catalog.GetLatestPartitionEvent (404 for a partition without events)", "GetLatestPartitionEventRequest", "GetLatestPartitionEventResponse"),
    post_rpc("/api/v1/partitions/request", "Catalog.RequestPartition: available, delegated to the build in flight, or a new build", "RequestPartitionRequest", "RequestPartitionResponse"),
    post_rpc("/api/v1/partitions/dependencies", "Catalog.GetDependencyGraph", "GetDependencyGraphRequest", "GetDependencyGraphResponse"),
    post_rpc("/api/v1/events", "Catalog.AppendPartitionEvent (checked against the partition state machine)", "AppendPartitionEventRequest", "AppendPartitionEventResponse"),
    post_rpc("/api/v1/events/query", "Catalog.QueryPartitionEvents", "QueryPartitionEventsRequest", "QueryPartitionEventsResponse"),
    get_doc("/api/v1/events/stream", "Catalog.StreamPartitionEvents as Server-Sent Events (`partitionEvent`; `error` if the service closes the stream)", "text/event-stream", &[REF, STATUS, ("since", "also events since this time (RFC 3339)")]),
    get_doc("/api/v1/log", "Events of the log after a position, oldest first", "WireEvents", &[("after", "log position"), LIMIT]),
    get_doc("/api/v1/partitions", "Latest state of partitions: the refs given, else a listing", "WirePartitions", &[REF, STATUS, ("prefix", "refs starting with this"), ("pattern", "refs matching this whole, `*` standing for any text"), ("after", "refs after this one (the last ref of the previous page)"), LIMIT, OFFSET]),
    get_doc("/api/v1/partitions/history", "Every event of one partition", "WireEvents", &[REF]),
    get_doc("/api/v1/partitions/why", "Why a partition is missing, stale or failed, following upstream causes to the root cause (`databuild partitions why`)", "WireWhy", &[("ref", "the partition ref")]),
    get_doc("/api/v1/lineage", "Lineage pairs (upstream, downstream) of the latest builds of the refs", "WireLineage", &[REF, ("downstream", "follow downstream instead of upstream")]),
    get_doc("/api/v1/runs", "Graph runs, newest first", "WireRuns", &[("label", "graph label"), ("status", "a graph run status such as `GRAPH_FAILED` (repeatable)"), ("startedFromMicros", "only runs started at or after this time (microseconds since the epoch)"), ("startedBeforeMicros", "only runs started before this time (microseconds since the epoch)"), LIMIT, OFFSET]),
    get_doc("/api/v1/runs/{run_id}", "One graph run", "WireRun", &[]),
    get_doc("/api/v1/runs/{run_id}/events", "Every event of one graph run", "WireEvents", &[]),
    get_doc("/api/v1/runs/{run_id}/jobs", "The job runs of one graph run", "WireJobRuns", &[]),
    get_doc("/api/v1/jobs/{job_run_id}", "One job run", "WireJobRun", &[]),
    get_doc("/api/v1/jobs/{job_run_id}/events", "Every event of one job run", "WireEvents", &[]),
    get_doc("/api/v1/wants", "Wants.ListWants: wants in id order (oldest first)", "ListWantsResponse", &[("status", "a want status such as `active`"), ("after", "wants with ids after this one (`nextAfter` of the previous page)"), ("limit", "at most this many (default 1000, at most 10000)")]),
    RouteDoc { method: "POST", path: "/api/v1/wants", summary: "Wants.CreateWants: keep the refs built, one want each (a ref no job produces and not registered is refused)", request: Some("WireWantRequest"), response: "CreateWantsResponse", params: &[] },
    get_doc("/api/v1/wants/{want_id}", "Wants.GetWant: one want, its events and what it waits for (404 for an unknown id)", "GetWantResponse", &[]),
    post_rpc("/api/v1/wants/cancel", "Wants.CancelWants: withdraw wants, each named by its id or by its partition ref (all live wants of the ref); 404 if one names no live want, and then none is withdrawn", "CancelWantsRequest", "CancelWantsResponse"),
    get_doc("/api/v1/health", "Whether the service serves (503 while shutting down)", "WireHealth", &[]),
    get_doc("/api/v1/openapi.json", "This document", "OpenAPI", &[]),
    get_doc("/metrics", "Prometheus metrics", "text/plain", &[]),
];

type Body = Result<Bytes, BytesRejection>;

macro_rules! mirror {
    ($op:path) => {
        post(|State(app): State<App>, body: Body| async move {
            match parse(body) {
                Ok(req) => respond($op(&app, req).await),
                Err(e) => e.into_response(),
            }
        })
    };
    (client $op:path) => {
        post(
            |State(app): State<App>,
             p: Option<Extension<Principal>>,
             headers: HeaderMap,
             body: Body| async move {
                let who = client(p.as_deref(), &headers);
                match parse(body) {
                    Ok(req) => respond($op(&app, req, &who).await),
                    Err(e) => e.into_response(),
                }
            },
        )
    };
}

fn handler(doc: &RouteDoc) -> MethodRouter<App> {
    use ops::catalog as c;
    match doc.path {
        "/api/v1/analyze" => mirror!(ops::analyze),
        "/api/v1/execute" => mirror!(client ops::execute),
        "/api/v1/build" => mirror!(client ops::build),
        "/api/v1/builds" => post(submit),
        "/api/v1/builds/{run_id}" => get(
            |State(app): State<App>, Path(id): Path<String>| async move {
                respond(build_state(&app, &id).await)
            },
        ),
        "/api/v1/builds/{run_id}/events" => get(sse::build_events),
        "/api/v1/builds/active" => mirror!(c::active_builds),
        "/api/v1/lookup" => mirror!(ops::lookup),
        "/api/v1/runs/list" => mirror!(c::list_runs),
        "/api/v1/partitions/list" => mirror!(c::list_partitions),
        "/api/v1/partitions/latest" => mirror!(c::latest_event),
        "/api/v1/partitions/request" => mirror!(client c::request_partition),
        "/api/v1/partitions/dependencies" => mirror!(c::dependency_graph),
        "/api/v1/events" => mirror!(c::append_event),
        "/api/v1/events/query" => mirror!(c::query_events),
        "/api/v1/events/stream" => get(sse::partition_events),
        "/api/v1/log" => get(log::events_after),
        "/api/v1/partitions" => get(log::partitions),
        "/api/v1/partitions/history" => get(log::history),
        "/api/v1/partitions/why" => get(log::why),
        "/api/v1/lineage" => get(log::lineage),
        "/api/v1/runs" => get(log::runs),
        "/api/v1/runs/{run_id}" => get(log::run),
        "/api/v1/runs/{run_id}/events" => get(log::run_events),
        "/api/v1/runs/{run_id}/jobs" => get(log::job_runs),
        "/api/v1/jobs/{job_run_id}" => get(log::job_run),
        "/api/v1/jobs/{job_run_id}/events" => get(log::job_run_events),
        // Two routes share this path; the router merges their methods.
        "/api/v1/wants" if doc.method == "GET" => get(list_wants),
        "/api/v1/wants" => post(create_wants),
        "/api/v1/wants/{want_id}" => get(
            |State(app): State<App>, Path(id): Path<String>| async move {
                let req = databuild_proto::GetWantRequest { want_id: id };
                respond(ops::wants::get(&app, req).await)
            },
        ),
        "/api/v1/wants/cancel" => mirror!(client ops::wants::cancel),
        "/api/v1/health" => get(health),
        "/api/v1/openapi.json" => get(|| async { json_response(&crate::openapi::document()) }),
        "/metrics" => get(metrics),
        other => unreachable!("route `{other}` has no handler"),
    }
}

/// Every route with its handler.
pub(super) fn routes() -> Vec<(&'static RouteDoc, MethodRouter<App>)> {
    ROUTES.iter().map(|d| (d, handler(d))).collect()
}

async fn submit(
    State(app): State<App>,
    p: Option<Extension<Principal>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let go = async {
        let force = Params::parse(q.as_deref()).flag("force")?;
        let req = parse(body)?;
        let started = ops::submit_build(&app, req, force, &client(p.as_deref(), &headers)).await?;
        let id = started.run_id;
        Ok::<_, ApiError>(WireSubmitted {
            status_url: format!("/api/v1/builds/{id}"),
            events_url: format!("/api/v1/builds/{id}/events"),
            job_graph_run_id: id,
        })
    };
    match go.await {
        Ok(s) => (StatusCode::ACCEPTED, json_response(&s)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_wants(State(app): State<App>, RawQuery(q): RawQuery) -> Response {
    let go = async {
        let p = Params::parse(q.as_deref());
        let status = match p.get("status").filter(|s| !s.is_empty()) {
            None => databuild_proto::WantStatus::WantUnknown,
            Some(s) => databuild_proto::WantStatus::parse_name(s)
                .map_err(|e| ApiError::invalid(e.to_string()))?,
        };
        let limit = p.int("limit", 0, i64::from(ops::wants::MAX_LIMIT))? as u32;
        let req = databuild_proto::ListWantsRequest {
            status: status as i32,
            limit,
            after: p.get("after").unwrap_or_default().to_string(),
        };
        ops::wants::list(&app, req).await
    };
    respond(go.await)
}

async fn create_wants(
    State(app): State<App>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let go = async {
        let req: WireWantRequest = parse(body)?;
        if req.refs.is_empty() {
            return Err(ApiError::invalid(
                "`refs` is empty; name at least one partition ref, e.g. {\"refs\": [\"reviews/date=2025-01-01\"], \"ttl\": \"30d\", \"sla\": \"6h\"}",
            ));
        }
        let who = client(p.as_deref(), &headers);
        ops::wants::record(&app, &req.refs, &req.ttl, &req.sla, &who).await
    };
    respond(go.await)
}

/// The state of build `id`: from the registry for builds run here, else from the log.
pub(super) async fn build_state(app: &App, id: &str) -> Result<WireBuild, ApiError> {
    let mut b = WireBuild {
        job_graph_run_id: id.to_string(),
        state: "running".into(),
        outcome: None,
        error: None,
    };
    match app.builds.get(id) {
        Some(None) => {}
        Some(Some(Ended::Outcome(o))) => {
            b.state = if o.success { "succeeded" } else { "failed" }.into();
            b.outcome = Some(WireOutcome::from(&o));
        }
        Some(Some(Ended::Error(e))) => {
            b.state = "error".into();
            b.error = Some(WireError {
                code: e.code.name().into(),
                message: e.message,
            });
        }
        None => {
            let Some(run) = app.bel.run(id).await? else {
                return Err(ApiError::not_found(format!(
                    "no graph run `{id}`; see GET /api/v1/runs"
                )));
            };
            b.state = match run.status {
                databuild_proto::JobGraphRunStatus::GraphSuccess => "succeeded",
                databuild_proto::JobGraphRunStatus::GraphFailed => "failed",
                _ => "running",
            }
            .into();
        }
    }
    Ok(b)
}

async fn health(State(app): State<App>) -> Response {
    let serving = !app.shutting_down();
    let body = WireHealth {
        status: if serving { "SERVING" } else { "NOT_SERVING" }.into(),
    };
    let code = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, json_response(&body)).into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let active = match app.bel.active_builds(&[]).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(&active),
    )
        .into_response()
}
