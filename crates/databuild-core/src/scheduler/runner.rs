//! Running one `exec`: what to run ([`ExecSpec`]), how it ended ([`ExecResult`]), and
//! the entry points for a local process ([`run`], the `local` executor of
//! `scheduler::executor`) and a remote job server ([`run_remote`]).

use std::{path::PathBuf, sync::Arc, time::Duration};

use databuild_proto::FailureCause;
use tokio::sync::oneshot;

/// One execution to run.
#[derive(Debug)]
pub struct ExecSpec {
    /// The job's label.
    pub label: String,
    /// The job run.
    pub job_run_id: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Environment added to the caller's.
    pub env: Vec<(String, String)>,
    /// Written to stdin, then stdin is closed.
    pub stdin: String,
    /// Kill after this long.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The log file (created on first output).
    pub log_path: PathBuf,
    /// Bytes kept in the log file.
    pub log_cap_bytes: u64,
    /// Lines forwarded to the event log.
    pub max_bel_lines: usize,
    /// Kill the rest of a local job's process group once the job exited.
    pub kill_leftovers: bool,
    /// The partitions to build.
    pub outputs: Vec<String>,
    /// The task's configuration.
    pub config: databuild_proto::JobConfig,
    /// The graph run.
    pub graph_run_id: String,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecResult {
    /// Exit code 0.
    Success,
    /// Anything else.
    Failed(Failure),
}

/// Why something failed: a cause to decide on, and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened, as a value (recorded as `PartitionEvent.failure_cause`).
    pub cause: FailureCause,
    /// What happened, in words (recorded in `failure_reason`).
    pub reason: String,
}

impl Failure {
    pub fn new(cause: FailureCause, reason: impl Into<String>) -> Self {
        Self {
            cause,
            reason: reason.into(),
        }
    }

    /// The same cause, with other words.
    pub fn reworded(self, reason: impl Into<String>) -> Self {
        Self::new(self.cause, reason)
    }
}

impl ExecResult {
    /// A failed execution.
    pub fn failed(cause: FailureCause, reason: impl Into<String>) -> Self {
        Self::Failed(Failure::new(cause, reason))
    }
}

/// Runs one execution on a remote job server (`JobExecute.Execute`), within `timeout`;
/// `cancel` firing abandons the call. A manifest for a partition the job was not asked
/// to build is a malformed answer.
pub async fn run_remote(
    remote: Option<Arc<dyn crate::remote::RemoteJobs>>,
    endpoint: String,
    exec: crate::remote::RemoteExec,
    timeout: Option<Duration>,
    cancel: oneshot::Receiver<()>,
) -> ExecResult {
    let Some(remote) = remote else {
        return ExecResult::failed(
            FailureCause::NotStarted,
            crate::remote::RemoteError::NoClient { endpoint }.to_string(),
        );
    };
    let call = async {
        match timeout {
            Some(t) => {
                crate::remote::with_deadline(&endpoint, t, remote.execute(&endpoint, &exec)).await
            }
            None => remote.execute(&endpoint, &exec).await,
        }
    };
    tokio::select! {
        r = call => match r {
            Ok(resp) => {
                let stray = resp
                    .manifests
                    .iter()
                    .flat_map(|m| m.outputs.iter())
                    .find(|o| !exec.outputs.contains(&o.str));
                match stray {
                    Some(o) => ExecResult::failed(FailureCause::JobFailed, format!(
                        "remote job `{endpoint}` sent a malformed response: a manifest for `{}`, which it was not asked to build",
                        o.str
                    )),
                    None => ExecResult::Success,
                }
            }
            Err(crate::remote::RemoteError::Timeout { .. }) => ExecResult::failed(FailureCause::Timeout, format!(
                "timed out after {} (remote job `{endpoint}`)",
                humantime(timeout.unwrap_or_default())
            )),
            Err(e) => ExecResult::failed(FailureCause::JobFailed, format!("remote job {e}")),
        },
        Ok(()) = cancel => ExecResult::failed(FailureCause::Cancelled, "cancelled"),
    }
}

/// "2s", "1.5s", "3m".
pub fn humantime(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{}s", (s * 1000.0).round() / 1000.0)
    } else if s < 3600.0 {
        format!("{}m", (s / 60.0 * 10.0).round() / 10.0)
    } else {
        format!("{}h", (s / 3600.0 * 10.0).round() / 10.0)
    }
}
