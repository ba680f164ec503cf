//! The gRPC services (`databuild.v1.DataBuildService`, `Catalog`, `GraphLookup`, `Wants`)
//! as thin wrappers over [`crate::ops`]; plus server reflection and health.

use databuild_proto as pb;
use futures_util::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::{
    metrics::Metrics,
    ops,
    security::Principal,
    servers::{
        catalog_server::{Catalog, CatalogServer},
        data_build_service_server::{DataBuildService, DataBuildServiceServer},
        graph_lookup_server::{GraphLookup, GraphLookupServer},
        wants_server::{Wants, WantsServer},
    },
    state::{App, CLIENT_HEADER},
    stream,
};

/// The gRPC side of the service.
#[derive(Debug, Clone)]
pub struct Grpc(pub App);

type Reply<T> = Result<Response<T>, Status>;

impl Grpc {
    fn begin<T>(&self, req: Request<T>) -> (T, String) {
        Metrics::inc(&self.0.metrics.grpc_requests);
        let label = req
            .metadata()
            .get(CLIENT_HEADER)
            .and_then(|v| v.to_str().ok());
        // The guard put the authenticated principal in the request's extensions.
        let client = req
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::anonymous)
            .requester(label);
        (req.into_inner(), client)
    }
}

fn reply<T>(r: Result<T, crate::errors::ApiError>) -> Reply<T> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl DataBuildService for Grpc {
    async fn analyze_graph(
        &self,
        req: Request<pb::GraphAnalyzeRequest>,
    ) -> Reply<pb::GraphAnalyzeResponse> {
        let (req, _) = self.begin(req);
        reply(ops::analyze(&self.0, req).await)
    }

    async fn execute(&self, req: Request<pb::JobGraph>) -> Reply<pb::GraphExecuteResponse> {
        let (req, client) = self.begin(req);
        reply(ops::execute(&self.0, req, &client).await)
    }

    async fn build(&self, req: Request<pb::GraphBuildRequest>) -> Reply<pb::GraphBuildResponse> {
        let (req, client) = self.begin(req);
        reply(ops::build(&self.0, req, &client).await)
    }
}

#[tonic::async_trait]
impl GraphLookup for Grpc {
    async fn lookup(&self, req: Request<pb::GraphLookupRequest>) -> Reply<pb::GraphLookupResponse> {
        let (req, _) = self.begin(req);
        reply(ops::lookup(&self.0, req).await)
    }
}

/// The stream type of `StreamPartitionEvents`.
pub type EventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::PartitionEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Catalog for Grpc {
    async fn list_job_graph_runs(
        &self,
        req: Request<pb::ListJobGraphRunsRequest>,
    ) -> Reply<pb::ListJobGraphRunsResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::list_runs(&self.0, req).await)
    }

    async fn list_partitions(
        &self,
        req: Request<pb::ListPartitionManifestsRequest>,
    ) -> Reply<pb::ListPartitionManifestsResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::list_partitions(&self.0, req).await)
    }

    async fn append_partition_event(
        &self,
        req: Request<pb::AppendPartitionEventRequest>,
    ) -> Reply<pb::AppendPartitionEventResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::append_event(&self.0, req).await)
    }

    async fn get_latest_partition_event(
        &self,
        req: Request<pb::GetLatestPartitionEventRequest>,
    ) -> Reply<pb::GetLatestPartitionEventResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::latest_event(&self.0, req).await)
    }

    async fn query_partition_events(
        &self,
        req: Request<pb::QueryPartitionEventsRequest>,
    ) -> Reply<pb::QueryPartitionEventsResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::query_events(&self.0, req).await)
    }

    type StreamPartitionEventsStream = EventStream;

    async fn stream_partition_events(
        &self,
        req: Request<pb::StreamPartitionEventsRequest>,
    ) -> Reply<EventStream> {
        let (req, _) = self.begin(req);
        let filter = stream::Filter::from_proto(req.filter).map_err(Status::from)?;
        let s = stream::open(&self.0, filter).map(|r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(s)))
    }

    async fn request_partition(
        &self,
        req: Request<pb::RequestPartitionRequest>,
    ) -> Reply<pb::RequestPartitionResponse> {
        let (req, client) = self.begin(req);
        reply(ops::catalog::request_partition(&self.0, req, &client).await)
    }

    async fn get_active_build_status(
        &self,
        req: Request<pb::GetActiveBuildStatusRequest>,
    ) -> Reply<pb::GetActiveBuildStatusResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::active_builds(&self.0, req).await)
    }

    async fn get_dependency_graph(
        &self,
        req: Request<pb::GetDependencyGraphRequest>,
    ) -> Reply<pb::GetDependencyGraphResponse> {
        let (req, _) = self.begin(req);
        reply(ops::catalog::dependency_graph(&self.0, req).await)
    }
}

#[tonic::async_trait]
impl Wants for Grpc {
    async fn create_wants(
        &self,
        req: Request<pb::CreateWantsRequest>,
    ) -> Reply<pb::CreateWantsResponse> {
        let (req, client) = self.begin(req);
        reply(ops::wants::create(&self.0, req, &client).await)
    }

    async fn cancel_wants(
        &self,
        req: Request<pb::CancelWantsRequest>,
    ) -> Reply<pb::CancelWantsResponse> {
        let (req, client) = self.begin(req);
        reply(ops::wants::cancel(&self.0, req, &client).await)
    }

    async fn list_wants(&self, req: Request<pb::ListWantsRequest>) -> Reply<pb::ListWantsResponse> {
        let (req, _) = self.begin(req);
        reply(ops::wants::list(&self.0, req).await)
    }

    async fn get_want(&self, req: Request<pb::GetWantRequest>) -> Reply<pb::GetWantResponse> {
        let (req, _) = self.begin(req);
        reply(ops::wants::get(&self.0, req).await)
    }
}

/// The services whose health is reported (`""` is the whole server).
const HEALTH: [&str; 5] = [
    "",
    "databuild.v1.DataBuildService",
    "databuild.v1.Catalog",
    "databuild.v1.GraphLookup",
    "databuild.v1.Wants",
];

/// Every gRPC service of `app` (with reflection and health) as one set of routes. Health
/// turns NOT_SERVING when shutdown begins.
pub async fn routes(app: &App) -> tonic::service::Routes {
    let grpc = Grpc(app.clone());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the compiled descriptor set is valid");
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in HEALTH {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let app2 = app.clone();
    tokio::spawn(async move {
        app2.on_shutdown().await;
        for name in HEALTH {
            reporter
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
    });
    tonic::service::Routes::new(DataBuildServiceServer::new(grpc.clone()))
        .add_service(CatalogServer::new(grpc.clone()))
        .add_service(GraphLookupServer::new(grpc.clone()))
        .add_service(WantsServer::new(grpc))
        .add_service(reflection)
        .add_service(health)
}
