//! An example remote job: a gRPC server implementing the seed's `JobConfigure` and
//! `JobExecute`, for `entrypoint = "grpc://host:port"`. It produces `<prefix>/<key>` from
//! the MATERIALIZE input `<input_prefix>/<key>` (if it has one) by writing
//! `<data_dir>/<ref>.txt`. `examples/job_server.rs` runs it; tests run it with faults.

use std::{path::PathBuf, sync::Arc, time::Duration};

use databuild_proto::{
    DataDep, DepType, JobConfig, JobConfigureRequest, JobConfigureResponse, JobExecuteRequest,
    JobExecuteResponse, PartitionManifest, PartitionRef,
};
use tonic::{Request, Response, Status};

use crate::servers::{
    job_configure_server::{JobConfigure, JobConfigureServer},
    job_execute_server::{JobExecute, JobExecuteServer},
};

/// A fault to show how databuild reports a misbehaving job server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// `Configure` never answers.
    HangConfigure,
    /// `Execute` never answers.
    HangExecute,
    /// `Configure` answers with bytes that are not a `JobConfigureResponse`.
    MalformedConfigure,
    /// `Execute` answers with an error status.
    FailExecute,
}

/// What the example job produces, and from what.
#[derive(Debug, Clone)]
pub struct ExampleJob {
    /// Outputs are `<prefix>/<key>`.
    pub prefix: String,
    /// Each output needs `<input_prefix>/<key>` (MATERIALIZE), if set.
    pub input_prefix: Option<String>,
    /// Where outputs (and inputs) are files `<ref>.txt`.
    pub data_dir: PathBuf,
    /// A fault to inject.
    pub fault: Fault,
}

#[derive(Debug, Clone)]
struct Job(Arc<ExampleJob>);

async fn hang() -> ! {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

#[tonic::async_trait]
impl JobConfigure for Job {
    async fn configure(
        &self,
        req: Request<JobConfigureRequest>,
    ) -> Result<Response<JobConfigureResponse>, Status> {
        if self.0.fault == Fault::HangConfigure {
            hang().await;
        }
        let mut configs = Vec::new();
        for out in req.into_inner().outputs {
            let Some(key) = out.str.strip_prefix(&format!("{}/", self.0.prefix)) else {
                return Err(Status::invalid_argument(format!(
                    "this job produces only `{}/<key>`, not `{}`",
                    self.0.prefix, out.str
                )));
            };
            configs.push(JobConfig {
                inputs: self
                    .0
                    .input_prefix
                    .iter()
                    .map(|p| DataDep {
                        dep_type: DepType::Materialize as i32,
                        partition_ref: Some(PartitionRef::new(format!("{p}/{key}"))),
                    })
                    .collect(),
                args: vec![key.to_string()],
                outputs: vec![out],
                ..Default::default()
            });
        }
        Ok(Response::new(JobConfigureResponse { configs }))
    }
}

#[tonic::async_trait]
impl JobExecute for Job {
    async fn execute(
        &self,
        req: Request<JobExecuteRequest>,
    ) -> Result<Response<JobExecuteResponse>, Status> {
        match self.0.fault {
            Fault::HangExecute => hang().await,
            Fault::FailExecute => {
                return Err(Status::failed_precondition(
                    "the example job was told to fail",
                ))
            }
            _ => {}
        }
        let job_run = req
            .metadata()
            .get(crate::remote_jobs::JOB_RUN_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let start = databuild_proto::now();
        let mut manifests = Vec::new();
        for out in req.into_inner().outputs {
            let key = out
                .str
                .strip_prefix(&format!("{}/", self.0.prefix))
                .unwrap_or(&out.str)
                .to_string();
            let mut text = format!("{} built by job run {job_run}\n", out.str);
            if let Some(p) = &self.0.input_prefix {
                let input = self.0.data_dir.join(format!("{p}/{key}.txt"));
                let from = tokio::fs::read_to_string(&input).await.map_err(|e| {
                    Status::failed_precondition(format!(
                        "cannot read input `{}`: {e}",
                        input.display()
                    ))
                })?;
                text.push_str(&from);
            }
            let path = self.0.data_dir.join(format!("{}.txt", out.str));
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
            tokio::fs::write(&path, text)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            manifests.push(PartitionManifest {
                outputs: vec![out],
                start_time: Some(start),
                end_time: Some(databuild_proto::now()),
                ..Default::default()
            });
        }
        Ok(Response::new(JobExecuteResponse { manifests }))
    }
}

/// A gRPC answer whose message bytes do not decode.
async fn malformed() -> axum::response::Response {
    use http_body_util::StreamBody;
    let mut trailers = axum::http::HeaderMap::new();
    trailers.insert("grpc-status", axum::http::HeaderValue::from_static("0"));
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
            axum::body::Bytes::from_static(&[0, 0, 0, 0, 3, 0xff, 0xff, 0xff]),
        )),
        Ok(hyper::body::Frame::trailers(trailers)),
    ]);
    axum::response::Response::builder()
        .header("content-type", "application/grpc")
        .body(axum::body::Body::new(StreamBody::new(frames)))
        .expect("a valid response")
}

/// Serves `job` on `listener` until `shutdown` resolves.
pub async fn serve(
    job: ExampleJob,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let fault = job.fault;
    let job = Job(Arc::new(job));
    let mut routes = tonic::service::Routes::new(JobExecuteServer::new(job.clone()));
    if fault != Fault::MalformedConfigure {
        routes = routes.add_service(JobConfigureServer::new(job));
    }
    let mut router = routes.into_axum_router();
    if fault == Fault::MalformedConfigure {
        router = router.route(
            "/databuild.v1.JobConfigure/Configure",
            axum::routing::post(malformed),
        );
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
