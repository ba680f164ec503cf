//! The local executor: one `exec` in its own process group on this machine, its
//! `JobConfig` on stdin, stdout/stderr read from pipes as they come; stopped with SIGTERM
//! to the group, SIGKILL after the grace period. The job dies with databuild where Linux
//! allows it (`PR_SET_PDEATHSIG`); its handle (pid, start time, boot id) is recorded so
//! that a later run can stop what is left ([`super::procs`]); what is left of its group
//! when it exits is killed unless the job says `kill_leftovers = false`.

use std::{sync::Arc, time::Duration};

use tokio::{io::AsyncWriteExt as _, task::JoinSet};

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

thread_local! {
    /// The buffer a job's output is read into before it goes to its log: one per thread,
    /// since a read and its write to the log never wait in between.
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0; 64 * 1024].into_boxed_slice());
}

/// Reads what `stream` holds now into its log; `Ok(0)` at its end.
fn read_into_log(
    stream: &tokio::net::unix::pipe::Receiver,
    which: Stream,
    log: &Log,
) -> std::io::Result<usize> {
    READ_BUF.with_borrow_mut(|buf| {
        let n = stream.try_read(buf)?;
        if n > 0 {
            log.write(which, &buf[..n]);
        }
        Ok(n)
    })
}

/// What an empty pipe takes in one write without blocking (`PIPE_BUF`).
const PIPE_BUF: usize = 4096;

/// Gives a job its `JobConfig` on stdin and closes it: at once when it fits in the empty
/// pipe, else from a task as the job reads it. A job that never reads stdin may exit
/// first: a broken pipe is fine.
fn write_stdin(fd: std::os::fd::OwnedFd, input: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if input.len() <= PIPE_BUF {
        let _ = std::fs::File::from(fd).write_all(input.as_bytes());
        return Ok(());
    }
    spawn::set_nonblocking(&fd)?;
    let mut stdin = tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(fd)?;
    let input = input.to_string();
    tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
    });
    Ok(())
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
        let handle = procs::identify(pgid, &hostname(), spawned.start_ticks);
        let pipe_err =
            |e: std::io::Error| format!("cannot read the pipes of `{}`: {e}", spec.argv[0]);
        write_stdin(spawned.stdin, &spec.stdin).map_err(pipe_err)?;
        let receiver = |fd: std::os::fd::OwnedFd| {
            spawn::set_nonblocking(&fd)?;
            tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)
        };
        let stdout = receiver(spawned.stdout).map_err(pipe_err)?;
        let stderr = receiver(spawned.stderr).map_err(pipe_err)?;
        let mut readers = JoinSet::new();
        for (which, stream) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
            let log = log.clone();
            readers.spawn(async move {
                while stream.readable().await.is_ok() {
                    match read_into_log(&stream, which, &log) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
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
