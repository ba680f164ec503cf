//! The local executor: one `exec` in its own process group on this machine, its
//! `JobConfig` on stdin, stdout/stderr read from pipes as they come; stopped with SIGTERM
//! to the group, SIGKILL after the grace period. The job dies with databuild where Linux
//! allows it (`PR_SET_PDEATHSIG`); its handle (pid, start time, boot id) is recorded so
//! that a later run can stop what is left ([`super::procs`]); what is left of its group
//! when it exits is killed unless the job says `kill_leftovers = false`.

use std::{sync::Arc, time::Duration};

use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, task::JoinSet};

use databuild_bel::EventLog;
use databuild_proto::{FailureCause, JobRunHandle};

use super::{
    log::{Log, Stream},
    procs, spawn, Executor, Exit, Leftover, RunningJob,
};
use crate::{
    graph::JobDef,
    protocol::describe_exit,
    scheduler::{
        hostname,
        runner::{ExecSpec, Failure},
    },
    CoreError,
};

/// Runs jobs as local processes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local;

/// A started process.
pub(crate) struct LocalJob {
    child: spawn::Child,
    pgid: u32,
    readers: JoinSet<()>,
    handle: JobRunHandle,
    kill_leftovers: bool,
}

/// How long the job processes of a lost run get to disappear after SIGKILL.
const STOP_LOST_DEADLINE: Duration = Duration::from_secs(30);

#[async_trait::async_trait]
impl Executor for Local {
    fn name(&self) -> &'static str {
        procs::LOCAL
    }

    async fn submit(
        &self,
        _job: &JobDef,
        spec: &ExecSpec,
        _adopt: Option<Leftover>,
        log: &Arc<Log>,
    ) -> Result<Box<dyn RunningJob>, String> {
        let mut env: Vec<(&str, &str)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("DATABUILD_EXECUTOR", procs::LOCAL));
        let spawned = spawn::spawn(&spec.argv, &env, &spec.cwd)
            .map_err(|e| format!("cannot start `{}`: {e}", spec.argv[0]))?;
        let child = spawn::Child::new(spawned.pid);
        let pgid = spawned.pid as u32;
        let handle = procs::identify(pgid, &hostname());
        let pipe_err =
            |e: std::io::Error| format!("cannot read the pipes of `{}`: {e}", spec.argv[0]);
        let mut stdin =
            tokio::net::unix::pipe::Sender::from_owned_fd(spawned.stdin).map_err(pipe_err)?;
        let input = spec.stdin.clone();
        tokio::spawn(async move {
            // A job that never reads stdin may exit first: a broken pipe is fine.
            let _ = stdin.write_all(input.as_bytes()).await;
        });
        let stdout =
            tokio::net::unix::pipe::Receiver::from_owned_fd(spawned.stdout).map_err(pipe_err)?;
        let stderr =
            tokio::net::unix::pipe::Receiver::from_owned_fd(spawned.stderr).map_err(pipe_err)?;
        let mut readers = JoinSet::new();
        let streams: [(Stream, Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>); 2] = [
            (Stream::Stdout, Some(Box::new(stdout) as _)),
            (Stream::Stderr, Some(Box::new(stderr) as _)),
        ];
        for (which, stream) in streams {
            let Some(mut stream) = stream else { continue };
            let log = log.clone();
            readers.spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => log.write(which, &buf[..n]),
                    }
                }
            });
        }
        Ok(Box::new(LocalJob {
            child,
            pgid,
            readers,
            handle,
            kill_leftovers: spec.kill_leftovers,
        }))
    }

    /// Its job processes carry their graph run in their environment, which
    /// [`procs::stop_lost`] looks for.
    fn finds_unrecorded(&self) -> bool {
        true
    }

    /// Kills the process groups the lost runs recorded and every process marked as one
    /// of their local jobs, and waits until they are gone.
    async fn stop_lost(&self, bel: &dyn EventLog, lost: &[String]) -> Result<bool, CoreError> {
        let mut handles = Vec::new();
        for run_id in lost {
            for e in bel.run_events(run_id).await? {
                if let databuild_bel::Event::Run(r) = e.event {
                    handles.extend(r.job_event.and_then(|j| j.handle));
                }
            }
        }
        match procs::stop_lost(lost, &handles, &hostname(), STOP_LOST_DEADLINE).await {
            Ok(0) => Ok(true),
            Ok(killed) => {
                tracing::warn!(runs = ?lost, killed, "killed the job processes of lost graph runs");
                Ok(true)
            }
            Err(alive) => {
                tracing::error!(runs = ?lost, pids = ?alive, "job processes of lost graph runs survive SIGKILL; their partitions stay claimed");
                Ok(false)
            }
        }
    }
}

#[async_trait::async_trait]
impl RunningJob for LocalJob {
    fn handle(&self) -> Option<JobRunHandle> {
        Some(self.handle.clone())
    }

    async fn watch(&mut self, _log: &Arc<Log>) -> Exit {
        let job = self;
        let status = job.child.wait().await;
        match status {
            Ok(s) if s.success() => Exit::Success,
            Ok(s) => Exit::ProgramFailed(describe_exit(s)),
            Err(e) => Exit::Failed(Failure::new(
                FailureCause::JobFailed,
                format!("cannot wait for the job: {e}"),
            )),
        }
    }

    async fn cancel(&mut self, grace: Duration) {
        // Stopped: how it exited no longer matters.
        let _ = terminate(&mut self.child, self.pgid, grace).await;
    }

    async fn fetch_logs(&mut self, _log: &Arc<Log>) {
        let job = self;
        if job.kill_leftovers && job.pgid > 1 {
            // The leader has exited (or was stopped); background processes it left in its
            // group would outlive the job run and write its outputs unwatched.
            signal_group(job.pgid, libc::SIGKILL);
        }
        // Output still buffered in the pipes arrives shortly; background processes that
        // keep the pipes open are not waited for.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while job.readers.join_next().await.is_some() {}
        })
        .await;
        job.readers.abort_all();
    }
}

/// Sends `sig` to the process group `pgid`.
#[allow(unsafe_code)] // libc::killpg has no safe wrapper in std
fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: killpg only takes integers and has no memory effects.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// SIGTERM to the group, SIGKILL after `grace`.
async fn terminate(
    child: &mut spawn::Child,
    pgid: u32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(pgid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => {
            // Leftovers in the group that ignored or outlived the leader.
            signal_group(pgid, libc::SIGKILL);
            s
        }
        Err(_) => {
            signal_group(pgid, libc::SIGKILL);
            child.wait().await
        }
    }
}
