//! Executors: where a job's `exec` runs — a process group on this machine ([`local`]), a
//! Slurm batch job ([`slurm`]) or a call to a remote job server ([`remote`]). Every
//! executor implements one open trait, [`Executor`] (submit a [`RunningJob`]: watch,
//! cancel, fetch logs, map the exit status; stop, recover or cancel what lost graph runs
//! left), and [`Executors`] is the registry by name. [`drive`] runs every job run the same
//! way (timeout, cancellation, the capped log file and the event-log lines, the failure
//! reason), so the event loop only sees [`Report`]s and an [`ExecResult`], and names no
//! executor.

mod command;
mod local;
mod log;
pub(crate) mod procs;
mod ray;
mod remote;
pub(crate) mod slurm;
mod spawn;

use std::{collections::HashMap, future::Future, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::oneshot;

use databuild_bel::EventLog;

use self::log::Log;
pub(crate) use self::log::LogSink;
use super::runner::{humantime, ExecResult, ExecSpec, Failure};
use crate::{
    graph::{Graph, JobDef},
    CoreError,
};
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

/// One engine where job runs execute: a local process group, a Slurm batch job, a remote
/// job server. The scheduler sees executors only through this trait and [`Executors`],
/// the registry of one graph run; an engine is one implementation, chosen by the name a
/// job's `executor` gives.
#[async_trait::async_trait]
pub(crate) trait Executor: Send + Sync + std::fmt::Debug {
    /// The name a graph file gives it (`executor = "..."`).
    fn name(&self) -> &'static str;

    /// Starts job run `spec` of `job`, or takes over `adopt` (a job of a lost graph run
    /// doing the same task, from [`Executor::recover`]). Its output goes to `log` as it
    /// appears. `Err` says why it could not start (a failed job, not a databuild error).
    async fn submit(
        &self,
        job: &JobDef,
        spec: &ExecSpec,
        adopt: Option<Leftover>,
        log: &Arc<Log>,
    ) -> Result<Box<dyn RunningJob>, String>;

    /// Whether its jobs wait in an engine's queue: their outputs become BUILDING when
    /// the engine accepts them ([`RunningJob::submission`]), not when handed over.
    fn queues(&self) -> bool {
        false
    }

    /// Whether a job run it started is found after a crash even if nothing about it was
    /// recorded ([`Executor::stop_lost`] finds it all the same): such a job run may start
    /// before the events announcing it are durable.
    fn finds_unrecorded(&self) -> bool {
        false
    }

    /// Stops what graph runs `lost` (lost runs owned by this host) left running on this
    /// machine, before their claims are released. Returns whether all of it is gone.
    async fn stop_lost(&self, _bel: &dyn EventLog, _lost: &[String]) -> Result<bool, CoreError> {
        Ok(true)
    }

    /// The jobs that the lost graph runs `lost` left on this engine and that may still
    /// run (or completed): candidates to adopt instead of starting again.
    async fn recover(
        &self,
        _bel: &dyn EventLog,
        _graph: &Graph,
        _lost: &[String],
    ) -> Result<Vec<Leftover>, CoreError> {
        Ok(Vec::new())
    }

    /// Stops `leftovers` of this engine that no task adopted, and waits (briefly) until
    /// they are gone.
    async fn cancel_leftovers(&self, _leftovers: Vec<Leftover>) {}
}

/// A started job run, as its executor follows it.
#[async_trait::async_trait]
pub(crate) trait RunningJob: Send {
    /// What the event log records of it once an engine accepted it (a cluster job id).
    fn submission(&self) -> Option<Submission> {
        None
    }

    /// What identifies a started local process, for the event log.
    fn handle(&self) -> Option<databuild_proto::JobRunHandle> {
        None
    }

    /// Resolves once the job runs: time queued on a cluster does not count against the
    /// job's timeout.
    fn started(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(std::future::ready(()))
    }

    /// Waits for the job to end, copying its output into `log` as it appears, and maps
    /// how it ended.
    async fn watch(&mut self, log: &Arc<Log>) -> Exit;

    /// Stops the job (timeout, cancellation), allowing it `grace` to exit.
    async fn cancel(&mut self, grace: Duration);

    /// Collects the rest of the job's output into `log` and releases what it held.
    async fn fetch_logs(&mut self, log: &Arc<Log>);
}

/// Sends `value` to the watchers of `tx` if it differs from what they have; whether it
/// did. How a cluster poller reports a job's state only when it changes.
pub(crate) fn publish<T: PartialEq>(tx: &tokio::sync::watch::Sender<T>, value: T) -> bool {
    tx.send_if_modified(|cur| {
        if *cur == value {
            false
        } else {
            *cur = value;
            true
        }
    })
}

/// A job that a lost graph run left on an engine: adopted by a task of this run that
/// does the same work with the same configuration, or cancelled.
#[derive(Debug, Clone)]
pub(crate) struct Leftover {
    /// The engine's name.
    pub executor: &'static str,
    /// The engine's id of the job.
    pub id: String,
    /// The lost graph run and the job run that started it.
    pub run_id: String,
    pub job_run_id: String,
    /// The task: job label, job key and configuration.
    pub label: String,
    pub job_key: String,
    pub config: Option<databuild_proto::JobConfig>,
    /// What the engine needs to take it over (e.g. a Slurm job id and state).
    pub detail: Arc<dyn std::any::Any + Send + Sync>,
}

/// Runs one job on `exec` to its end. `report` receives output lines and the submission;
/// `cancel` firing stops the job.
pub(crate) async fn drive(
    exec: &dyn Executor,
    job_def: &JobDef,
    adopt: Option<Leftover>,
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
    let mut job = match exec.submit(job_def, &spec, adopt, &log).await {
        Ok(job) => job,
        Err(reason) => return ExecResult::failed(FailureCause::NotStarted, reason),
    };
    if let Some(s) = job.submission() {
        report(Report::Submitted(s));
    }
    if let Some(h) = job.handle() {
        report(Report::Started(h));
    }
    let started = job.started();
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
        exit = job.watch(&log) => Some(exit),
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
        job.cancel(spec.kill_grace).await;
    }
    job.fetch_logs(&log).await;
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

/// A job run of a lost graph run, as the log tells it: what recovery needs to find its
/// job on an engine and to decide whether a task of this run may adopt it.
#[derive(Debug)]
pub(crate) struct LostJobRun {
    /// Its graph run.
    pub run_id: String,
    /// Its task: job label, job key and configuration.
    pub label: String,
    pub job_key: String,
    pub config: Option<databuild_proto::JobConfig>,
    /// The engine's id of its job, as recorded (`databuild_bel::cluster_job`).
    pub engine_id: Option<String>,
    /// It succeeded: nothing of it is left to recover.
    pub succeeded: bool,
}

/// The job runs of the lost graph runs `lost`, by job run id, with the job id that
/// `executor` recorded for each (if any).
pub(crate) async fn lost_job_runs(
    bel: &dyn EventLog,
    lost: &[String],
    executor: &str,
) -> Result<HashMap<String, LostJobRun>, databuild_bel::BelError> {
    let mut runs: HashMap<String, LostJobRun> = HashMap::new();
    for run_id in lost {
        for e in bel.run_events(run_id).await? {
            let engine_job = databuild_bel::cluster_job(&e.event)
                .filter(|c| c.executor == executor)
                .map(|c| (c.job_run_id.to_string(), c.id.to_string()));
            if let databuild_bel::Event::Run(r) = e.event {
                if let Some(j) = r.job_event {
                    let jr = runs
                        .entry(j.job_run_id.clone())
                        .or_insert_with(|| LostJobRun {
                            run_id: run_id.clone(),
                            label: j
                                .label
                                .as_ref()
                                .map(|l| l.label.clone())
                                .unwrap_or_default(),
                            job_key: j.job_key.clone(),
                            config: None,
                            engine_id: None,
                            succeeded: false,
                        });
                    if let Some(c) = j.config.and_then(|c| c.config) {
                        jr.config = Some(c);
                    }
                    jr.succeeded |= j.status == databuild_proto::JobRunStatus::JobSuccess as i32;
                }
            }
            if let Some((job_run_id, id)) = engine_job {
                if let Some(jr) = runs.get_mut(&job_run_id) {
                    jr.engine_id = Some(id);
                }
            }
        }
    }
    Ok(runs)
}

/// The executors of one graph run, by name: the registry the scheduler asks for a job's
/// executor and for what lost runs left behind. The Slurm one starts its poller on first
/// use.
#[derive(Debug)]
pub(crate) struct Executors {
    all: Vec<Arc<dyn Executor>>,
}

impl Executors {
    pub(crate) fn new(graph: &Graph, log_dir: PathBuf) -> Self {
        Self {
            all: vec![
                Arc::new(local::Local),
                Arc::new(slurm::SlurmExecutor::new(log_dir)),
                Arc::new(remote::Remote::new(graph.remote.clone())),
                Arc::new(ray::RayExecutor),
            ],
        }
    }

    /// The executor of `job`.
    pub(crate) fn of(&self, job: &JobDef) -> Arc<dyn Executor> {
        let name = if job.remote_endpoint().is_some() {
            remote::NAME
        } else {
            job.executor.name()
        };
        self.all
            .iter()
            .find(|e| e.name() == name)
            .cloned()
            .unwrap_or_else(|| unreachable!("executor `{name}` is checked when the graph loads"))
    }

    /// The executors that `graph`'s jobs use.
    fn used(&self, graph: &Graph) -> Vec<Arc<dyn Executor>> {
        let mut used: Vec<Arc<dyn Executor>> = Vec::new();
        for j in &graph.jobs {
            let e = self.of(j);
            if !used.iter().any(|u| u.name() == e.name()) {
                used.push(e);
            }
        }
        used
    }

    /// Stops what lost runs of this host left on this machine (every executor, the
    /// local one whatever the graph uses: an earlier graph file may have). Returns
    /// whether all of it is gone.
    pub(crate) async fn stop_lost(
        &self,
        bel: &dyn EventLog,
        lost: &[String],
    ) -> Result<bool, CoreError> {
        let mut all_gone = true;
        for e in &self.all {
            all_gone &= e.stop_lost(bel, lost).await?;
        }
        Ok(all_gone)
    }

    /// What the lost runs `lost` left on the engines `graph` uses.
    pub(crate) async fn recover(
        &self,
        bel: &dyn EventLog,
        graph: &Graph,
        lost: &[String],
    ) -> Result<Vec<Leftover>, CoreError> {
        let mut out = Vec::new();
        for e in self.used(graph) {
            out.extend(e.recover(bel, graph, lost).await?);
        }
        Ok(out)
    }

    /// Cancels `leftovers` on their engines.
    pub(crate) async fn cancel_leftovers(&self, leftovers: Vec<Leftover>) {
        for e in &self.all {
            let mine: Vec<Leftover> = leftovers
                .iter()
                .filter(|l| l.executor == e.name())
                .cloned()
                .collect();
            if !mine.is_empty() {
                e.cancel_leftovers(mine).await;
            }
        }
    }
}
