//! Every RPC as one function from its request message to its response message (or an
//! [`ApiError`]); the gRPC services and the HTTP routes are thin wrappers around these, so
//! both transports behave the same.

pub mod catalog;
pub mod wants;

use databuild_proto::{
    GraphAnalyzeRequest, GraphAnalyzeResponse, GraphBuildRequest, GraphBuildResponse,
    GraphExecuteResponse, GraphLookupRequest, GraphLookupResponse, JobGraph, PartitionRef,
};

use crate::{
    builds::{self, Started, Work},
    errors::ApiError,
    state::App,
};

/// The refs of a request, checked: at least one, each valid, at most [`MAX_REFS`].
pub fn refs_of(outputs: &[PartitionRef], field: &str) -> Result<Vec<String>, ApiError> {
    if outputs.is_empty() {
        return Err(ApiError::invalid(format!(
            "`{field}` is empty; name at least one partition ref, e.g. {{\"{field}\": [{{\"str\": \"reviews/date=2025-01-01\"}}]}}"
        )));
    }
    if outputs.len() > MAX_REFS {
        return Err(ApiError::invalid(format!(
            "`{field}` has {} refs; at most {MAX_REFS} are accepted in one request",
            outputs.len()
        )));
    }
    let refs: Vec<String> = outputs.iter().map(|o| o.str.clone()).collect();
    for r in &refs {
        databuild_proto::validate_ref(r)?;
    }
    Ok(refs)
}

/// Refuses requested refs that no job produces and that are not available: the client
/// named partitions this graph does not know (INVALID_ARGUMENT, not a planning failure).
pub async fn check_known(app: &App, refs: &[String]) -> Result<(), ApiError> {
    let found = app
        .graph
        .lookup(refs)
        .await
        .map_err(databuild_core::PlanError::from)
        .map_err(databuild_core::CoreError::from)?;
    if found.unproduced.is_empty() {
        return Ok(());
    }
    let available: std::collections::HashSet<String> = app
        .bel
        .partitions(&found.unproduced)
        .await?
        .into_iter()
        .filter(|p| p.status == databuild_proto::PartitionStatus::PartitionAvailable)
        .map(|p| p.partition_ref)
        .collect();
    let unknown: Vec<&String> = found
        .unproduced
        .iter()
        .filter(|r| !available.contains(*r))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let one = unknown.len() == 1;
    Err(ApiError::invalid(format!(
        "unknown partition ref{} {}: no job of graph `{}` produces {} and {} not registered as available; check the refs against the graph's `produces` patterns, or register external data first",
        if one { "" } else { "s" },
        databuild_core::protocol::ref_list(&unknown),
        app.graph.label,
        if one { "it" } else { "them" },
        if one { "it is" } else { "they are" },
    )))
}

/// Most refs one request may name.
pub const MAX_REFS: usize = 100_000;

/// `DataBuildService.AnalyzeGraph`.
pub async fn analyze(
    app: &App,
    req: GraphAnalyzeRequest,
) -> Result<GraphAnalyzeResponse, ApiError> {
    let refs = refs_of(&req.outputs, "outputs")?;
    check_known(app, &refs).await?;
    let graph = databuild_core::analyze(&app.graph, app.bel.as_ref(), &refs, false)
        .await
        .map_err(databuild_core::CoreError::from)?;
    Ok(GraphAnalyzeResponse { graph: Some(graph) })
}

/// Starts a build of `req`'s outputs (the asynchronous submit).
pub async fn submit_build(
    app: &App,
    req: GraphBuildRequest,
    force: bool,
    client: &str,
) -> Result<Started, ApiError> {
    let refs = refs_of(&req.outputs, "outputs")?;
    check_known(app, &refs).await?;
    app.start(Work::Build { refs, force }, client).await
}

/// `DataBuildService.Build`: the manifests once the run ends.
pub async fn build(
    app: &App,
    req: GraphBuildRequest,
    client: &str,
) -> Result<GraphBuildResponse, ApiError> {
    let started = submit_build(app, req, false, client).await?;
    let manifests = builds::manifests(started.wait().await)?;
    Ok(GraphBuildResponse { manifests })
}

/// `DataBuildService.Execute`: the manifests once the run ends.
pub async fn execute(
    app: &App,
    req: JobGraph,
    client: &str,
) -> Result<GraphExecuteResponse, ApiError> {
    if req.nodes.is_empty() && req.outputs.is_empty() {
        return Err(ApiError::invalid(
            "the job graph is empty; send a `JobGraph` as `AnalyzeGraph` returns it",
        ));
    }
    let started = app.start(Work::Execute(req), client).await?;
    let manifests = builds::manifests(started.wait().await)?;
    Ok(GraphExecuteResponse { manifests })
}

/// `GraphLookup.Lookup`: the task refs of the refs some job produces (refs no job produces
/// are left out).
pub async fn lookup(app: &App, req: GraphLookupRequest) -> Result<GraphLookupResponse, ApiError> {
    let refs = refs_of(&req.outputs, "outputs")?;
    let found = app
        .graph
        .lookup(&refs)
        .await
        .map_err(databuild_core::PlanError::from)
        .map_err(databuild_core::CoreError::from)?;
    Ok(found.to_response())
}
