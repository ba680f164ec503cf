//! The `Catalog` RPCs (all but `StreamPartitionEvents`, which is in [`crate::stream`]).

use std::time::Duration;

use databuild_bel::{query::PartitionQuery, Event};
use databuild_core::{catalog, request};
use databuild_proto::{
    request_result, AppendPartitionEventRequest, AppendPartitionEventResponse,
    GetActiveBuildStatusRequest, GetActiveBuildStatusResponse, GetDependencyGraphRequest,
    GetDependencyGraphResponse, GetLatestPartitionEventRequest, GetLatestPartitionEventResponse,
    ListJobGraphRunsRequest, ListJobGraphRunsResponse, ListPartitionManifestsRequest,
    ListPartitionManifestsResponse, PartitionRef, PartitionStatus, QueryPartitionEventsRequest,
    QueryPartitionEventsResponse, RequestPartitionRequest, RequestPartitionResponse,
};

use crate::{errors::ApiError, state::App};

/// Longest `timeout_seconds` a `RequestPartition` may wait.
pub const MAX_REQUEST_TIMEOUT_SECS: i32 = 3600;

/// The valid ref of a required `partition_ref` field.
pub fn required_ref(r: Option<&PartitionRef>, field: &str) -> Result<String, ApiError> {
    let Some(r) = r else {
        return Err(ApiError::invalid(format!(
            "`{field}` is missing; give it as {{\"{field}\": {{\"str\": \"reviews/date=2025-01-01\"}}}}"
        )));
    };
    databuild_proto::validate_ref(&r.str)?;
    Ok(r.str.clone())
}

/// `Catalog.ListJobGraphRuns`.
pub async fn list_runs(
    app: &App,
    req: ListJobGraphRunsRequest,
) -> Result<ListJobGraphRunsResponse, ApiError> {
    let q = req.query.unwrap_or_default();
    let runs = catalog::list_runs(app.bel.as_ref(), &q).await?;
    Ok(ListJobGraphRunsResponse { runs })
}

/// `Catalog.ListPartitions`.
pub async fn list_partitions(
    app: &App,
    req: ListPartitionManifestsRequest,
) -> Result<ListPartitionManifestsResponse, ApiError> {
    let q = req.query.unwrap_or_default();
    let manifests = catalog::list_manifests(app.bel.as_ref(), &q).await?;
    Ok(ListPartitionManifestsResponse { manifests })
}

/// `Catalog.AppendPartitionEvent`: validated against the partition state machine.
pub async fn append_event(
    app: &App,
    req: AppendPartitionEventRequest,
) -> Result<AppendPartitionEventResponse, ApiError> {
    let Some(e) = req.event else {
        return Err(ApiError::invalid(
            "`event` is missing; send a `PartitionEvent` with at least `partitionRef` and `status`",
        ));
    };
    required_ref(e.partition_ref.as_ref(), "event.partition_ref")?;
    match PartitionStatus::try_from(e.status) {
        Ok(PartitionStatus::PartitionUnknown) => {
            return Err(ApiError::invalid(
                "`event.status` is missing; give the partition's new status, e.g. `PARTITION_AVAILABLE`",
            ))
        }
        Err(_) => {
            return Err(ApiError::invalid(format!(
                "`event.status` {} is not a partition status; use e.g. `PARTITION_AVAILABLE`",
                e.status
            )))
        }
        Ok(_) => {}
    }
    let stored = app.bel.append(vec![Event::Partition(e)]).await?;
    let event_id = match stored.into_iter().next().map(|l| l.event) {
        Some(Event::Partition(p)) => p.partition_event_id,
        _ => String::new(),
    };
    Ok(AppendPartitionEventResponse { event_id })
}

/// `Catalog.GetLatestPartitionEvent`: NOT_FOUND for a partition without events.
pub async fn latest_event(
    app: &App,
    req: GetLatestPartitionEventRequest,
) -> Result<GetLatestPartitionEventResponse, ApiError> {
    let r = required_ref(req.partition_ref.as_ref(), "partition_ref")?;
    match app.bel.latest_partition_event(&r).await? {
        Some(e) => Ok(GetLatestPartitionEventResponse { event: Some(e) }),
        None => Err(ApiError::not_found(format!(
            "no events for partition `{r}`; it was never requested, built or registered"
        ))),
    }
}

/// `Catalog.QueryPartitionEvents`.
pub async fn query_events(
    app: &App,
    req: QueryPartitionEventsRequest,
) -> Result<QueryPartitionEventsResponse, ApiError> {
    let q = PartitionQuery::from_proto(&req.query.unwrap_or_default())?;
    let (events, total_count) = app.bel.query_partition_events(&q).await?;
    Ok(QueryPartitionEventsResponse {
        events: events
            .into_iter()
            .filter_map(|e| match e.event {
                Event::Partition(p) => Some(p),
                Event::Run(_) | Event::Want(_) | Event::Backfill(_) => None,
            })
            .collect(),
        total_count,
    })
}

/// `Catalog.RequestPartition` (PRODUCT §6): the partition if available, else join the
/// build in flight (unless `allow_delegation` is false) or start one, waiting up to
/// `timeout_seconds` for the data. Without `options`, delegation is allowed and the answer
/// comes at once.
pub async fn request_partition(
    app: &App,
    req: RequestPartitionRequest,
    client: &str,
) -> Result<RequestPartitionResponse, ApiError> {
    let r = required_ref(req.partition_ref.as_ref(), "partition_ref")?;
    let (allow_delegation, timeout) = match &req.options {
        None => (true, 0),
        Some(o) => (o.allow_delegation, o.timeout_seconds),
    };
    if !(0..=MAX_REQUEST_TIMEOUT_SECS).contains(&timeout) {
        return Err(ApiError::invalid(format!(
            "`options.timeout_seconds` must be between 0 and {MAX_REQUEST_TIMEOUT_SECS} (got {timeout})"
        )));
    }
    app.check_accepting()?;
    let client_id = if req.client_id.is_empty() {
        client.to_string()
    } else {
        req.client_id.clone()
    };
    let opts = request::RequestOptions {
        client_id: client_id.clone(),
        allow_delegation,
        timeout: Duration::from_secs(timeout as u64),
    };
    let requested = request::request_partition(
        app.graph.clone(),
        app.bel.clone(),
        &r,
        &opts,
        &app.build_options(&client_id),
    )
    .await?;
    if let Some(handle) = requested.build {
        let run_id = match &requested.result.result {
            Some(request_result::Result::Building(b)) => b.job_graph_run_id.clone(),
            _ => String::new(),
        };
        app.track(&run_id, handle);
    }
    Ok(RequestPartitionResponse {
        result: Some(requested.result),
    })
}

/// `Catalog.GetActiveBuildStatus`: claims held now among the refs (all if none).
pub async fn active_builds(
    app: &App,
    req: GetActiveBuildStatusRequest,
) -> Result<GetActiveBuildStatusResponse, ApiError> {
    let refs: Vec<String> = req.partition_refs.iter().map(|r| r.str.clone()).collect();
    for r in &refs {
        databuild_proto::validate_ref(r)?;
    }
    Ok(GetActiveBuildStatusResponse {
        active_builds: app.bel.active_builds(&refs).await?,
    })
}

/// `Catalog.GetDependencyGraph`.
pub async fn dependency_graph(
    app: &App,
    req: GetDependencyGraphRequest,
) -> Result<GetDependencyGraphResponse, ApiError> {
    let r = required_ref(req.partition_ref.as_ref(), "partition_ref")?;
    let graph = catalog::dependency_graph(app.bel.as_ref(), &r, req.depth).await?;
    Ok(GetDependencyGraphResponse { graph: Some(graph) })
}
