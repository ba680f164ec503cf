//! Executors: where a job's `exec` runs — a process group on this machine ([`local`]) or
//! a Slurm batch job ([`slurm`]). Every executor follows one shape, [`Executor`]: submit,
//! watch, cancel, fetch logs, map the exit status. [`drive`] runs that shape the same way
//! for each (timeout, cancellation, the capped log file and the event-log lines, the
//! failure reason), so the event loop only sees [`Report`]s and an [`ExecResult`].

mod local;
mod log;
pub(crate) mod procs;
pub(crate) mod slurm;

use std::{collections::HashMap, future::Future, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::oneshot;

use self::log::Log;
pub(crate) use self::log::LogSink;
use super::runner::{humantime, ExecResult, ExecSpec, Failure};
use crate::graph::{JobDef, JobExecutor};
use databuild_proto::FailureCause;

/// What a running job tells the event loop before it ends.
#[derive(Debug)]
pub(crate) enum Report {
    /// Output lines for the event log.
    Lines(Vec<String>),
    /// A cluster engine accepted the job.
    Submitted(Submission),
    /// The job started; this identifies it (a local process group).
    Started(databuild_proto::JobRunHandle),
}

/// A job a cluster engine accepted: what the event log records of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submission {
    /// The executor's name (`slurm`).
    pub executor: &'static str,
    /// The engine's job id.
    pub id: String,
    /// For a job submitted by a lost graph run and adopted by this one: its job run.
    pub adopted_from: Option<String>,
}

impl Submission {
    /// The `storage_metadata` entries of the partition events that record it (read by
    /// older versions; readers use [`Submission::handle`], see `databuild_bel::cluster_job`).
    pub(crate) fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([
            ("executor".to_string(), self.executor.to_string()),
            (format!("{}_job_id", self.executor), self.id.clone()),
        ]);
        if let Some(from) = &self.adopted_from {
            m.insert("adopted_from_job_run".into(), from.clone());
        }
        m
    }

    /// What identifies the job run in the event log (`JobEvent.handle`).
    pub(crate) fn handle(&self) -> databuild_proto::JobRunHandle {
        databuild_proto::JobRunHandle {
            executor: self.executor.to_string(),
            id: self.id.clone(),
            ..Default::default()
        }
    }

    /// A line for the job's log in the event log.
    pub(crate) fn log_line(&self) -> String {
        match &self.adopted_from {
            None => format!(
                "[databuild: submitted as {} job {}]",
                self.executor, self.id
            ),
            Some(from) => format!(
                "[databuild: adopted {} job {}, submitted by job run {from} of a lost graph run]",
                self.executor, self.id
            ),
        }
    }
}

/// How a job ended, as its executor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Every output is built.
    Success,
    /// The program failed (e.g. `exit code 3`): the reason gets the last line of stderr.
    ProgramFailed(String),
    /// Something else ended it (the engine killed it, the engine lost it).
    Failed(Failure),
}

/// The shape every executor follows for one job run.
pub(crate) trait Executor: Send + Sync {
    /// A submitted job.
    type Job: Send;

    /// Starts the job; its output goes to `log` as it appears. `Err` says why it could
    /// not start (a failed job, not a databuild error).
    fn submit(
        &self,
        spec: &ExecSpec,
        log: &Arc<Log>,
    ) -> impl Future<Output = Result<Self::Job, String>> + Send;

    /// What the event log records of a started job (a cluster engine's job id).
    fn submission(&self, job: &Self::Job) -> Option<Submission>;

    /// What identifies a started local process, for the event log.
    fn handle(&self, _job: &Self::Job) -> Option<databuild_proto::JobRunHandle> {
        None
    }

    /// Resolves once the job runs: time queued on a cluster does not count against the
    /// job's timeout.
    fn started(&self, job: &Self::Job) -> impl Future<Output = ()> + Send + 'static;

    /// Waits for the job to end, copying its output into `log` as it appears, and maps
    /// how it ended.
    fn watch(&self, job: &mut Self::Job, log: &Arc<Log>) -> impl Future<Output = Exit> + Send;

    /// Stops the job (timeout, cancellation), allowing it `grace` to exit.
    fn cancel(&self, job: &mut Self::Job, grace: Duration) -> impl Future<Output = ()> + Send;

    /// Collects the rest of the job's output into `log` and releases what it held.
    fn fetch_logs(&self, job: &mut Self::Job, log: &Arc<Log>) -> impl Future<Output = ()> + Send;
}

/// Runs one job on `exec` to its end. `report` receives output lines and the submission;
/// `cancel` firing stops the job.
pub(crate) async fn drive<E: Executor>(
    exec: &E,
    spec: ExecSpec,
    mut cancel: oneshot::Receiver<()>,
    report: Arc<dyn Fn(Report) + Send + Sync>,
) -> ExecResult {
    let log = {
        let report = report.clone();
        Arc::new(Log::new(
            LogSink::new(
                spec.log_path.clone(),
                spec.log_cap_bytes,
                spec.max_bel_lines,
            ),
            move |lines| report(Report::Lines(lines)),
        ))
    };
    // Not raced against `cancel`: a submission abandoned halfway could leave a cluster
    // job nobody watches. A cancellation that came meanwhile stops the job below.
    let mut job = match exec.submit(&spec, &log).await {
        Ok(job) => job,
        Err(reason) => return ExecResult::failed(FailureCause::NotStarted, reason),
    };
    if let Some(s) = exec.submission(&job) {
        report(Report::Submitted(s));
    }
    if let Some(h) = exec.handle(&job) {
        report(Report::Started(h));
    }
    let started = exec.started(&job);
    let timeout = spec.timeout;
    let timer = async move {
        match timeout {
            Some(t) => {
                started.await;
                tokio::time::sleep(t).await;
            }
            None => std::future::pending().await,
        }
    };
    let mut stopped = None;
    let exit = tokio::select! {
        exit = exec.watch(&mut job, &log) => Some(exit),
        () = timer => {
            stopped = Some(Failure::new(
                FailureCause::Timeout,
                format!("timed out after {}", humantime(timeout.unwrap_or_default())),
            ));
            None
        }
        Ok(()) = &mut cancel => {
            stopped = Some(Failure::new(FailureCause::Cancelled, "cancelled"));
            None
        }
    };
    if stopped.is_some() {
        exec.cancel(&mut job, spec.kill_grace).await;
    }
    exec.fetch_logs(&mut job, &log).await;
    let last_stderr = log.finish();
    match (stopped, exit) {
        (Some(failure), _) => ExecResult::Failed(failure),
        (None, Some(Exit::Success)) => ExecResult::Success,
        (None, Some(Exit::ProgramFailed(why))) => ExecResult::failed(
            FailureCause::JobFailed,
            match last_stderr {
                Some(line) => format!("{why}, stderr ends with {line:?}"),
                None => why,
            },
        ),
        (None, Some(Exit::Failed(failure))) => ExecResult::Failed(failure),
        (None, None) => unreachable!("a job either ended or was stopped"),
    }
}

/// The executors of one graph run. The Slurm one (and its poller) starts on first use.
#[derive(Debug)]
pub(crate) struct Executors {
    log_dir: PathBuf,
    slurm: Option<Arc<slurm::Slurm>>,
}

/// The executor chosen for one job run.
#[derive(Debug)]
pub(crate) enum Chosen {
    Local,
    Slurm(Box<slurm::SlurmExec>),
}

impl Executors {
    pub(crate) fn new(log_dir: PathBuf) -> Self {
        Self {
            log_dir,
            slurm: None,
        }
    }

    /// The executor of `job`; `adopt` is a Slurm job of a lost run to take over instead
    /// of submitting a new one.
    pub(crate) fn choose(&mut self, job: &JobDef, adopt: Option<slurm::Orphan>) -> Chosen {
        match &job.executor {
            JobExecutor::Local => Chosen::Local,
            JobExecutor::Slurm(resources) => {
                let log_dir = &self.log_dir;
                let slurm = self
                    .slurm
                    .get_or_insert_with(|| slurm::Slurm::start(log_dir))
                    .clone();
                Chosen::Slurm(Box::new(slurm::SlurmExec::new(
                    slurm,
                    resources.clone(),
                    adopt,
                )))
            }
        }
    }
}

impl Chosen {
    /// Runs the job to its end (see [`drive`]).
    pub(crate) async fn run(
        self,
        spec: ExecSpec,
        cancel: oneshot::Receiver<()>,
        report: Arc<dyn Fn(Report) + Send + Sync>,
    ) -> ExecResult {
        match self {
            Chosen::Local => drive(&local::Local, spec, cancel, report).await,
            Chosen::Slurm(exec) => drive(exec.as_ref(), spec, cancel, report).await,
        }
    }
}

/// Runs one job as a local process (the [`local`] executor).
pub(crate) async fn run_local(
    spec: ExecSpec,
    cancel: oneshot::Receiver<()>,
    report: Arc<dyn Fn(Report) + Send + Sync>,
) -> ExecResult {
    drive(&local::Local, spec, cancel, report).await
}
