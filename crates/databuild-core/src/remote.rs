//! Jobs and lookup served by long-running gRPC servers: an `entrypoint` of the form
//! `grpc://host:port` names a server implementing the seed's `JobConfigure` and
//! `JobExecute` (for a job) or `GraphLookup` (for `[lookup]`). The engine knows no gRPC:
//! it calls such servers through [`RemoteJobs`], which the host program (the CLI, the
//! service) implements and puts in [`crate::Graph::remote`].

use std::time::Duration;

use databuild_proto::{GraphLookupResponse, JobConfig, JobConfigureResponse, JobExecuteResponse};

/// The URL scheme of remote entrypoints.
pub const SCHEME: &str = "grpc://";

/// The endpoint URL if `entrypoint` names a remote server (one element, `grpc://...`).
pub fn endpoint(entrypoint: &[String]) -> Option<&str> {
    match entrypoint {
        [one] if one.starts_with(SCHEME) => Some(one),
        _ => None,
    }
}

/// Checks a `grpc://host:port` URL: a host and a numeric port, nothing after.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix(SCHEME).unwrap_or(url);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("it has no port".into());
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("`{host}` is not a host name"));
    }
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("`{port}` is not a port number"));
    }
    Ok(())
}

/// One execution asked of a remote job. The request carries the outputs; the ids and the
/// configuration travel alongside (the seed's `JobExecuteRequest` holds only outputs).
#[derive(Debug, Clone)]
pub struct RemoteExec {
    /// The partitions to build.
    pub outputs: Vec<String>,
    /// The task's configuration, as `configure` returned it.
    pub config: JobConfig,
    /// The job run.
    pub job_run_id: String,
    /// The graph run.
    pub graph_run_id: String,
}

/// A remote call that gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// No connection could be made.
    #[error(
        "cannot reach `{endpoint}`: {detail}; check that the server is running and listening there"
    )]
    Unreachable { endpoint: String, detail: String },
    /// No answer within the deadline.
    #[error("`{endpoint}` did not answer within {deadline}; the call was abandoned")]
    Timeout { endpoint: String, deadline: String },
    /// The server answered with an error status.
    #[error("`{endpoint}` answered with an error ({code}): {message}")]
    Status {
        endpoint: String,
        code: String,
        message: String,
    },
    /// The answer could not be decoded.
    #[error("`{endpoint}` sent a malformed response: {detail}")]
    Malformed { endpoint: String, detail: String },
    /// The graph uses remote entrypoints but the program runs without a gRPC client.
    #[error(
        "`{endpoint}` is a remote entrypoint, but this program has no gRPC client for remote jobs"
    )]
    NoClient { endpoint: String },
}

/// Calls remote job and lookup servers. Implemented outside the engine (over gRPC).
#[async_trait::async_trait]
pub trait RemoteJobs: Send + Sync + std::fmt::Debug {
    /// `JobConfigure.Configure` with `outputs`.
    async fn configure(
        &self,
        endpoint: &str,
        outputs: &[String],
    ) -> Result<JobConfigureResponse, RemoteError>;

    /// `JobExecute.Execute` of one task.
    async fn execute(
        &self,
        endpoint: &str,
        exec: &RemoteExec,
    ) -> Result<JobExecuteResponse, RemoteError>;

    /// `GraphLookup.Lookup` with `outputs`.
    async fn lookup(
        &self,
        endpoint: &str,
        outputs: &[String],
    ) -> Result<GraphLookupResponse, RemoteError>;
}

/// Runs `call` with a deadline, turning its expiry into [`RemoteError::Timeout`].
pub(crate) async fn with_deadline<T>(
    endpoint: &str,
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, RemoteError>>,
) -> Result<T, RemoteError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(RemoteError::Timeout {
            endpoint: endpoint.to_string(),
            deadline: crate::scheduler::runner::humantime(deadline),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_a_host_and_a_port() {
        assert!(check_endpoint("grpc://127.0.0.1:50051").is_ok());
        assert!(check_endpoint("grpc://jobs.internal:7000/").is_ok());
        assert!(check_endpoint("grpc://127.0.0.1").is_err());
        assert!(check_endpoint("grpc://:80").is_err());
        assert!(check_endpoint("grpc://h:port").is_err());
        assert_eq!(endpoint(&["grpc://h:1".to_string()]), Some("grpc://h:1"));
        assert_eq!(endpoint(&["jobs/x.sh".to_string()]), None);
    }
}
