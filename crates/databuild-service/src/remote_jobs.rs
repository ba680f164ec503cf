//! The gRPC client of remote jobs (`JobConfigure`, `JobExecute`) and lookup servers
//! (`GraphLookup`) named by `grpc://host:port` entrypoints: the engine's
//! [`RemoteJobs`](databuild_core::RemoteJobs), over tonic. Channels are made lazily and
//! kept per endpoint; a server that restarts is reconnected to.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use databuild_core::{RemoteError, RemoteExec, RemoteJobs};
use databuild_proto::{
    GraphLookupRequest, GraphLookupResponse, JobConfigureRequest, JobConfigureResponse,
    JobExecuteRequest, JobExecuteResponse, PartitionRef,
};
use prost::Message as _;
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
    Code, Status,
};

use crate::clients::{
    graph_lookup_client::GraphLookupClient, job_configure_client::JobConfigureClient,
    job_execute_client::JobExecuteClient,
};

/// How long connecting to a remote server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// gRPC metadata sent with `JobExecute.Execute`: the job run, the graph run, and the
/// task's `JobConfig` (protobuf, binary metadata).
pub const JOB_RUN_ID: &str = "databuild-job-run-id";
/// See [`JOB_RUN_ID`].
pub const GRAPH_RUN_ID: &str = "databuild-graph-run-id";
/// See [`JOB_RUN_ID`].
pub const JOB_CONFIG: &str = "databuild-job-config-bin";

/// Calls remote job and lookup servers over gRPC.
#[derive(Debug, Default)]
pub struct GrpcJobs {
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcJobs {
    /// A client, shareable by a graph.
    pub fn shared() -> Arc<dyn RemoteJobs> {
        Arc::new(Self::default())
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, RemoteError> {
        let mut channels = self.channels.lock().expect("channels lock");
        if let Some(c) = channels.get(endpoint) {
            return Ok(c.clone());
        }
        let addr = endpoint
            .strip_prefix(databuild_core::remote::SCHEME)
            .unwrap_or(endpoint)
            .trim_end_matches('/');
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| RemoteError::Unreachable {
                endpoint: endpoint.to_string(),
                detail: format!("invalid address: {e}"),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }
}

/// The message of a status and of its sources ("tcp connect error: Connection refused").
fn chain(s: &Status) -> String {
    let mut out = s.message().to_string();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out = if out.is_empty() {
                text
            } else {
                format!("{out}: {text}")
            };
        }
        source = e.source();
    }
    out
}

fn map_status(endpoint: &str, s: Status) -> RemoteError {
    let endpoint = endpoint.to_string();
    match s.code() {
        Code::Unavailable => RemoteError::Unreachable {
            endpoint,
            detail: chain(&s),
        },
        Code::Internal if s.message().contains("decode") => RemoteError::Malformed {
            endpoint,
            detail: chain(&s),
        },
        code => RemoteError::Status {
            endpoint,
            code: format!("{code:?}"),
            message: chain(&s),
        },
    }
}

fn refs(v: &[String]) -> Vec<PartitionRef> {
    v.iter().map(|r| PartitionRef::new(r.clone())).collect()
}

#[async_trait::async_trait]
impl RemoteJobs for GrpcJobs {
    async fn configure(
        &self,
        endpoint: &str,
        outputs: &[String],
    ) -> Result<JobConfigureResponse, RemoteError> {
        let mut client = JobConfigureClient::new(self.channel(endpoint)?);
        let req = JobConfigureRequest {
            outputs: refs(outputs),
        };
        client
            .configure(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| map_status(endpoint, s))
    }

    async fn execute(
        &self,
        endpoint: &str,
        exec: &RemoteExec,
    ) -> Result<JobExecuteResponse, RemoteError> {
        let mut client = JobExecuteClient::new(self.channel(endpoint)?);
        let mut req = tonic::Request::new(JobExecuteRequest {
            outputs: refs(&exec.outputs),
        });
        let md = req.metadata_mut();
        for (key, value) in [
            (JOB_RUN_ID, &exec.job_run_id),
            (GRAPH_RUN_ID, &exec.graph_run_id),
        ] {
            if let Ok(v) = value.parse() {
                md.insert(key, v);
            }
        }
        md.insert_bin(
            JOB_CONFIG,
            MetadataValue::from_bytes(&exec.config.encode_to_vec()),
        );
        client
            .execute(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| map_status(endpoint, s))
    }

    async fn lookup(
        &self,
        endpoint: &str,
        outputs: &[String],
    ) -> Result<GraphLookupResponse, RemoteError> {
        let mut client = GraphLookupClient::new(self.channel(endpoint)?);
        client
            .lookup(GraphLookupRequest {
                outputs: refs(outputs),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| map_status(endpoint, s))
    }
}
