//! The remote executor: a job whose entrypoint is `grpc://host:port` runs as one
//! `JobExecute.Execute` call to that job server, through the host program's
//! [`crate::remote::RemoteJobs`] client. The call applies the job's `timeout` itself (a
//! deadline on the call, so its message names the server); stopping the job abandons
//! the call.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use super::{log::Log, Executor, Exit, Leftover, RunningJob};
use crate::{
    graph::JobDef,
    remote::{RemoteExec, RemoteJobs},
    scheduler::runner::{self, ExecResult, ExecSpec},
};

/// The registry name of remote jobs (not written in graph files: a `grpc://` entrypoint
/// chooses it).
pub(crate) const NAME: &str = "remote";

/// Calls remote job servers.
#[derive(Debug)]
pub(crate) struct Remote {
    client: Option<Arc<dyn RemoteJobs>>,
}

impl Remote {
    pub(crate) fn new(client: Option<Arc<dyn RemoteJobs>>) -> Self {
        Self { client }
    }
}

/// One call in flight (started by `watch`).
struct RemoteJob {
    client: Option<Arc<dyn RemoteJobs>>,
    endpoint: String,
    exec: RemoteExec,
    timeout: Option<Duration>,
}

#[async_trait::async_trait]
impl Executor for Remote {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn submit(
        &self,
        job: &JobDef,
        spec: &ExecSpec,
        _adopt: Option<Leftover>,
        _log: &Arc<Log>,
    ) -> Result<Box<dyn RunningJob>, String> {
        let endpoint = job
            .remote_endpoint()
            .ok_or_else(|| format!("job `{}` has no `grpc://` entrypoint", job.label))?;
        Ok(Box::new(RemoteJob {
            client: self.client.clone(),
            endpoint: endpoint.to_string(),
            exec: RemoteExec {
                outputs: spec.outputs.clone(),
                config: spec.config.clone(),
                job_run_id: spec.job_run_id.clone(),
                graph_run_id: spec.graph_run_id.clone(),
            },
            timeout: spec.timeout,
        }))
    }
}

#[async_trait::async_trait]
impl RunningJob for RemoteJob {
    fn started(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        // The call carries its own deadline.
        Box::pin(std::future::pending())
    }

    async fn watch(&mut self, _log: &Arc<Log>) -> Exit {
        let (_never, cancel) = tokio::sync::oneshot::channel::<()>();
        let result = runner::run_remote(
            self.client.clone(),
            self.endpoint.clone(),
            self.exec.clone(),
            self.timeout,
            cancel,
        )
        .await;
        match result {
            ExecResult::Success => Exit::Success,
            ExecResult::Failed(why) => Exit::Failed(why),
        }
    }

    async fn cancel(&mut self, _grace: Duration) {
        // The call was abandoned when its future was dropped.
    }

    async fn fetch_logs(&mut self, _log: &Arc<Log>) {}
}
