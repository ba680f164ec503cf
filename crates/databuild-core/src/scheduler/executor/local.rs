//! The local executor: one `exec` in its own process group on this machine, its
//! `JobConfig` on stdin, stdout/stderr read from pipes as they come; stopped with SIGTERM
//! to the group, SIGKILL after the grace period. The job dies with databuild where Linux
//! allows it (`PR_SET_PDEATHSIG`); its handle (pid, start time, boot id) is recorded so
//! that a later run can stop what is left ([`super::procs`]); what is left of its group
//! when it exits is killed unless the job says `kill_leftovers = false`.

use std::{process::Stdio, sync::Arc, time::Duration};

use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, task::JoinSet};

use databuild_proto::{FailureCause, JobRunHandle};

use super::{
    log::{Log, Stream},
    procs, Executor, Exit, Submission,
};
use crate::{
    protocol::describe_exit,
    scheduler::runner::{ExecSpec, Failure},
};

/// Runs jobs as local processes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local;

/// A started process.
pub(crate) struct LocalJob {
    child: tokio::process::Child,
    pgid: u32,
    readers: JoinSet<()>,
    handle: JobRunHandle,
    kill_leftovers: bool,
}

impl Executor for Local {
    type Job = LocalJob;

    async fn submit(&self, spec: &ExecSpec, log: &Arc<Log>) -> Result<LocalJob, String> {
        let mut cmd = tokio::process::Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..])
            .current_dir(&spec.cwd)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env("DATABUILD_EXECUTOR", procs::LOCAL)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", spec.argv[0]))?;
        let pgid = child.id().unwrap_or(0);
        let handle = procs::identify(pgid, &crate::scheduler::hostname());
        if let Some(mut stdin) = child.stdin.take() {
            let input = spec.stdin.clone();
            tokio::spawn(async move {
                // A job that never reads stdin may exit first: a broken pipe is fine.
                let _ = stdin.write_all(input.as_bytes()).await;
            });
        }
        let mut readers = JoinSet::new();
        let streams: [(Stream, Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>); 2] = [
            (
                Stream::Stdout,
                child.stdout.take().map(|s| Box::new(s) as _),
            ),
            (
                Stream::Stderr,
                child.stderr.take().map(|s| Box::new(s) as _),
            ),
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
        Ok(LocalJob {
            child,
            pgid,
            readers,
            handle,
            kill_leftovers: spec.kill_leftovers,
        })
    }

    fn submission(&self, _job: &LocalJob) -> Option<Submission> {
        None
    }

    fn handle(&self, job: &LocalJob) -> Option<JobRunHandle> {
        Some(job.handle.clone())
    }

    fn started(&self, _job: &LocalJob) -> impl std::future::Future<Output = ()> + Send + 'static {
        std::future::ready(())
    }

    async fn watch(&self, job: &mut LocalJob, _log: &Arc<Log>) -> Exit {
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

    async fn cancel(&self, job: &mut LocalJob, grace: Duration) {
        // Stopped: how it exited no longer matters.
        let _ = terminate(&mut job.child, job.pgid, grace).await;
    }

    async fn fetch_logs(&self, job: &mut LocalJob, _log: &Arc<Log>) {
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

/// Makes the job's process receive SIGKILL when the thread that started it (a runtime
/// worker, which lives as long as databuild) exits, so a `kill -9` of databuild does not
/// leave the job running unwatched. Its own children are stopped through its process
/// group by the run that reclaims the lost one.
#[allow(unsafe_code)] // pre_exec and prctl have no safe wrappers
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // calls (prctl, getppid) without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // databuild died before prctl took effect: do not run unwatched.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
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
    child: &mut tokio::process::Child,
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
