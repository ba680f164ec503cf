//! Graph runs: `build` (analyze + execute) and `execute` of a given job graph. One event
//! loop owns the run's state; job runners talk to it by messages; every state change is
//! an event, and the events of one loop tick are appended in one transaction.

mod digests;
mod executor;
mod machine;
mod run;
pub mod runner;
pub use digests::DIGESTS_VAR;
pub(crate) use run::versions::outdated;

use std::{path::PathBuf, sync::Arc, time::Duration};

use databuild_bel::{EventLog, Owner};
use databuild_proto::{
    FailureCause, GraphRequestEvent, JobGraph, PartitionManifest, PartitionStatus,
};

use crate::{events, graph::Graph, planner, CoreError};

/// How a graph run behaves.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Most jobs running at once.
    pub parallelism: usize,
    /// Stop at the first failed job (default: keep going with independent work).
    pub fail_fast: bool,
    /// Rebuild the requested partitions even if AVAILABLE.
    pub force: bool,
    /// Leave AVAILABLE partitions built by another version of their job as they are
    /// (default: rebuild them when requested or needed, as `make` does after a recipe
    /// changed).
    pub keep_outdated: bool,
    /// Time between SIGTERM and SIGKILL when a job is stopped.
    pub kill_grace: Duration,
    /// Lease of the run's claims; renewed every third of it.
    pub lease: Duration,
    /// Where job logs are written.
    pub log_dir: PathBuf,
    /// Bytes of each job's log kept on disk.
    pub log_cap_bytes: u64,
    /// Lines of each job's output copied into the event log.
    pub max_bel_log_lines: usize,
    /// Who asked (recorded in `requesting_clients`).
    pub client_id: String,
    /// Cancel the run on SIGINT/SIGTERM (a command line build); a long-running service
    /// turns this off and lets in-flight builds finish.
    pub handle_signals: bool,
    /// Cancel the run (its jobs stopped, as on a signal) when this turns true.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
            fail_fast: false,
            force: false,
            keep_outdated: false,
            kill_grace: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            log_dir: PathBuf::from(".databuild/logs"),
            log_cap_bytes: 64 * 1024 * 1024,
            max_bel_log_lines: 1000,
            client_id: format!("cli@{}", hostname()),
            handle_signals: true,
            cancel: None,
        }
    }
}

/// What happened, for progress displays.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The graph run began.
    Started { run_id: String },
    /// Planning finished.
    Planned {
        run_id: String,
        tasks: usize,
        /// How many requested refs need no work.
        up_to_date: usize,
    },
    /// A job run started.
    JobStarted {
        job_run_id: String,
        label: String,
        outputs: Vec<String>,
        attempt: u32,
    },
    /// A job run ended.
    JobFinished {
        job_run_id: String,
        label: String,
        outputs: Vec<String>,
        ok: bool,
        reason: String,
        elapsed: Duration,
        will_retry: bool,
    },
    /// Another graph run holds these partitions; this run waits for its outcome.
    Delegated {
        refs: Vec<String>,
        owner_run_id: String,
    },
    /// The run they were delegated to finished with them.
    DelegationEnded {
        refs: Vec<String>,
        owner_run_id: String,
        ok: bool,
        reason: String,
    },
    /// Partitions failed without their job running (upstream failure, cancellation).
    PartitionsFailed { refs: Vec<String>, reason: String },
    /// A task's outputs were made fresh without running its job: its inputs have the
    /// digests its latest build was made from (early cutoff).
    CutOff { label: String, outputs: Vec<String> },
}

/// A callback for progress.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// The result of a graph run that ran (whether or not every job succeeded).
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// The graph run id.
    pub run_id: String,
    /// Whether every requested partition is available.
    pub success: bool,
    /// Requested partitions that were already available (nothing to do).
    pub up_to_date: Vec<String>,
    /// Partitions built by this run.
    pub built: Vec<String>,
    /// Partitions this run needed that another graph run built.
    pub delegated: Vec<String>,
    /// Partitions made fresh without running their job (early cutoff).
    pub cut_off: Vec<String>,
    /// Partitions that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Manifests of the job runs that succeeded.
    pub manifests: Vec<PartitionManifest>,
    /// Job runs started (attempts included).
    pub job_runs: usize,
    /// The run was cancelled (Ctrl-C, SIGTERM or `--fail-fast`).
    pub cancelled: bool,
}

/// This machine's host name (read once per process: every job's handle names it).
pub fn hostname() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".into())
    })
    .clone()
}

pub(crate) fn now_micros() -> i64 {
    databuild_proto::timestamp_micros(&databuild_proto::now())
}

/// Fails the claims of graph runs whose owner died; returns the jobs they left on the
/// engines the graph uses (to adopt or cancel). A lost run of this host is reclaimed only
/// once every executor stopped what it left on this machine.
pub(crate) async fn reclaim_lost(
    graph: &Graph,
    bel: &dyn EventLog,
    executors: &executor::Executors,
) -> Result<Vec<executor::Leftover>, CoreError> {
    let (now, host) = (now_micros(), hostname());
    let cleared = lost_here(bel, now, &host).await?;
    let cleared = if cleared.is_empty() || executors.stop_lost(bel, &cleared).await? {
        cleared
    } else {
        Vec::new()
    };
    let lost = bel.reclaim_lost_runs(now, &host, &cleared).await?;
    for l in &lost {
        tracing::warn!(run_id = %l.run_id, partitions = l.partitions.len(), "reclaimed the claims of a lost graph run");
    }
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = lost.into_iter().map(|l| l.run_id).collect();
    executors.recover(bel, graph, &ids).await
}

/// The unfinished graph runs owned by this host whose owner is lost.
async fn lost_here(bel: &dyn EventLog, now: i64, host: &str) -> Result<Vec<String>, CoreError> {
    use databuild_proto::JobGraphRunStatus as G;
    let filter = databuild_bel::RunFilter {
        statuses: vec![
            G::GraphStarted,
            G::GraphAnalyzed,
            G::AwaitingDeps,
            G::GraphRunning,
        ],
        ..Default::default()
    };
    Ok(bel
        .list_runs(&filter)
        .await?
        .into_iter()
        .filter(|r| r.host.as_deref() == Some(host))
        .filter(|r| {
            databuild_bel::owner_lost(now, host, r.host.as_deref(), r.pid, r.lease_until_micros)
        })
        .map(|r| r.run_id)
        .collect())
}

impl Begun {
    /// Cancels the jobs lost runs left (the run ends before it could adopt them).
    async fn cancel_leftovers(&mut self) {
        let leftovers = std::mem::take(&mut self.leftovers);
        self.executors.cancel_leftovers(leftovers).await;
    }
}

/// A graph run just begun.
pub(crate) struct Begun {
    /// Its id.
    run_id: String,
    /// The run's executors.
    executors: executor::Executors,
    /// The jobs that lost runs left behind, to adopt or cancel.
    leftovers: Vec<executor::Leftover>,
    /// The latest status of each requested ref when the run started, in request order.
    statuses: Vec<Option<PartitionStatus>>,
}

/// Starts a graph run for the distinct refs `requested`: reclaims runs whose owner died,
/// reads the requested refs' statuses, records GRAPH_STARTED (with what was requested)
/// and the lease. The requests of the refs with work to do are recorded by
/// [`record_requests`] once the run knows it can build them.
async fn begin(
    graph: &Graph,
    bel: &dyn EventLog,
    opts: &BuildOptions,
    requested: &[String],
) -> Result<Begun, CoreError> {
    let executors = executor::Executors::new(graph, opts.log_dir.clone());
    let leftovers = reclaim_lost(graph, bel, &executors).await?;
    let started = match bel.statuses(requested).await {
        Ok(statuses) => start_run(graph, bel, opts, requested, &statuses)
            .await
            .map(|run_id| (run_id, statuses)),
        Err(e) => Err(e.into()),
    };
    match started {
        Ok((run_id, statuses)) => Ok(Begun {
            run_id,
            executors,
            leftovers,
            statuses,
        }),
        Err(e) => {
            executors.cancel_leftovers(leftovers).await;
            Err(e)
        }
    }
}

fn is_available(s: &Option<PartitionStatus>) -> bool {
    *s == Some(PartitionStatus::PartitionAvailable)
}

/// Records GRAPH_STARTED and the lease of a new graph run.
async fn start_run(
    graph: &Graph,
    bel: &dyn EventLog,
    opts: &BuildOptions,
    requested: &[String],
    statuses: &[Option<PartitionStatus>],
) -> Result<String, CoreError> {
    let run_id = databuild_bel::new_id();
    let request = GraphRequestEvent {
        requested: requested.len() as i64,
        already_available: statuses.iter().filter(|s| is_available(s)).count() as i64,
        client_id: opts.client_id.clone(),
        force: opts.force,
        first_ref: requested.first().cloned().unwrap_or_default(),
    };
    bel.append(vec![events::graph_started(&run_id, &graph.label, request)])
        .await?;
    bel.heartbeat(&run_id, &owner(), lease_until(opts.lease))
        .await?;
    Ok(run_id)
}

/// Records the requests of graph run `run_id` once it has a plan: a requested ref that is
/// already AVAILABLE (without `force`) gets no PARTITION_REQUESTED event (the run's
/// request only counts it); each of the others gets one, in transactions of bounded size.
/// A run that fails before it has a plan (a ref no job produces, a config that rejects a
/// ref) so leaves no partition behind, only its GRAPH_FAILED with the reason.
async fn record_requests(
    graph: &Graph,
    bel: &dyn EventLog,
    opts: &BuildOptions,
    run_id: &str,
    requested: &[String],
    statuses: &[Option<PartitionStatus>],
) -> Result<(), CoreError> {
    /// Requests recorded per transaction: bounds memory for huge requests.
    const REQUESTS_PER_APPEND: usize = 10_000;
    let to_request: Vec<&String> = requested
        .iter()
        .zip(statuses)
        .filter(|(_, s)| opts.force || !is_available(s))
        .map(|(r, _)| r)
        .collect();
    for chunk in to_request.chunks(REQUESTS_PER_APPEND) {
        let requests = chunk
            .iter()
            .map(|r| {
                let mut e = events::partition(r, PartitionStatus::PartitionRequested, run_id);
                e.requesting_clients = vec![opts.client_id.clone()];
                databuild_bel::Event::Partition(e)
            })
            .collect();
        if let Err(e) = bel.append(requests).await {
            // Best effort: the run must not look alive; its lease would end it anyway.
            let reason = format!("cannot record the requests: {e}");
            let failed = events::graph_failed(run_id, &graph.label, &reason);
            let _ = bel.append(vec![failed]).await;
            return Err(e.into());
        }
    }
    Ok(())
}

fn owner() -> Owner {
    Owner {
        host: hostname(),
        pid: std::process::id(),
    }
}

fn lease_until(lease: Duration) -> i64 {
    now_micros() + lease.as_micros() as i64
}

/// SIGINT and SIGTERM, listened to for the whole graph run (planning included), so that
/// either cancels the run cleanly instead of killing the process.
pub(crate) struct Signals(
    Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
    Option<tokio::sync::watch::Receiver<bool>>,
);

impl Signals {
    fn new(opts: &BuildOptions) -> Result<Self, CoreError> {
        use tokio::signal::unix::{signal, SignalKind};
        let cancel = opts.cancel.clone();
        if !opts.handle_signals {
            return Ok(Self(None, cancel));
        }
        let listen = |kind, name: &str| {
            signal(kind).map_err(|source| CoreError::Io {
                what: format!("cannot listen for {name}"),
                error: source,
            })
        };
        Ok(Self(
            Some((
                listen(SignalKind::interrupt(), "SIGINT")?,
                listen(SignalKind::terminate(), "SIGTERM")?,
            )),
            cancel,
        ))
    }

    /// Waits for either signal; returns the cancellation reason.
    pub(crate) async fn recv(&mut self) -> &'static str {
        let cancelled = async {
            let withdrawn = match self.1.as_mut() {
                Some(rx) => rx.wait_for(|c| *c).await.is_ok(),
                None => false,
            };
            if !withdrawn {
                std::future::pending::<()>().await;
            }
        };
        let Some((interrupt, terminate)) = self.0.as_mut() else {
            cancelled.await;
            return "cancelled (its request was withdrawn)";
        };
        tokio::select! {
            _ = interrupt.recv() => "cancelled (interrupted)",
            _ = terminate.recv() => "cancelled (terminated)",
            _ = cancelled => "cancelled (its request was withdrawn)",
        }
    }
}

/// Renews a graph run's lease every third of its length until dropped, so that planning
/// and execution alike keep the run's claims.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl LeaseKeeper {
    fn start(bel: Arc<dyn EventLog>, run_id: String, lease: Duration) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = bel.heartbeat(&run_id, &owner(), lease_until(lease)).await {
                    tracing::warn!(%run_id, error = %e, "cannot renew the graph run's lease");
                }
            }
        }))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends a run that failed before executing: partitions it requested FAILED with
/// `failure`, run FAILED with its reason.
async fn abort(
    graph: &Graph,
    bel: &dyn EventLog,
    run_id: &str,
    requested: &[String],
    failure: runner::Failure,
) -> Result<(), CoreError> {
    let mut evs = Vec::new();
    for row in bel.partitions(requested).await? {
        if row.run_id == run_id && row.status == PartitionStatus::PartitionRequested {
            let e = events::failed(&row.partition_ref, run_id, &failure);
            evs.push(databuild_bel::Event::Partition(e));
        }
    }
    evs.push(events::graph_failed(run_id, &graph.label, &failure.reason));
    bel.append(evs).await?;
    Ok(())
}

/// Builds `refs`: analyze, then execute, as one graph run.
pub async fn build(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    refs: &[String],
    opts: &BuildOptions,
    progress: ProgressFn,
) -> Result<RunOutcome, CoreError> {
    build_distinct(graph, bel, planner::distinct(refs), opts, progress).await
}

/// [`build`] of refs the caller gives up: the outcome's up-to-date refs are moved out of
/// them rather than copied (a no-op request of ten million refs holds them once).
pub async fn build_owned(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    refs: Vec<String>,
    opts: &BuildOptions,
    progress: ProgressFn,
) -> Result<RunOutcome, CoreError> {
    let requested = match planner::distinct(&refs) {
        std::borrow::Cow::Borrowed(_) => refs,
        std::borrow::Cow::Owned(distinct) => distinct,
    };
    build_distinct(
        graph,
        bel,
        std::borrow::Cow::Owned(requested),
        opts,
        progress,
    )
    .await
}

/// [`build`] of the distinct refs `requested`, each validated first.
async fn build_distinct(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    requested: std::borrow::Cow<'_, [String]>,
    opts: &BuildOptions,
    progress: ProgressFn,
) -> Result<RunOutcome, CoreError> {
    for r in requested.iter() {
        databuild_proto::validate_ref(r).map_err(planner::PlanError::from)?;
    }
    let mut signals = Signals::new(opts)?;
    let mut begun = begin(graph, bel.as_ref(), opts, &requested).await?;
    let run_id = begun.run_id.clone();
    let _lease = LeaseKeeper::start(bel.clone(), run_id.clone(), opts.lease);
    progress(Progress::Started {
        run_id: run_id.clone(),
    });
    let statuses = std::mem::take(&mut begun.statuses);
    let analyzed = tokio::select! {
        r = planner::plan(graph, bel.as_ref(), &requested, &statuses, opts.force, opts.keep_outdated) => r,
        reason = signals.recv() => {
            begun.cancel_leftovers().await;
            let failure = runner::Failure::new(FailureCause::Cancelled, reason);
            abort(graph, bel.as_ref(), &run_id, &requested, failure).await?;
            return Err(CoreError::Cancelled(reason.to_string()));
        }
    };
    let nodes = match analyzed {
        Ok(nodes) => nodes,
        Err(e) => {
            drop(statuses);
            begun.cancel_leftovers().await;
            abort(
                graph,
                bel.as_ref(),
                &run_id,
                &requested,
                runner::Failure::new(
                    FailureCause::AnalysisFailed,
                    format!("analysis failed: {e}"),
                ),
            )
            .await?;
            return Err(e.into());
        }
    };
    if let Err(e) = record_requests(graph, bel.as_ref(), opts, &run_id, &requested, &statuses).await
    {
        begun.cancel_leftovers().await;
        return Err(e);
    }
    drop(statuses);
    run::execute_run(graph, bel, begun, nodes, requested, opts, progress, signals).await
}

/// Executes a given job graph as a new graph run.
pub async fn execute(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    job_graph: JobGraph,
    opts: &BuildOptions,
    progress: ProgressFn,
) -> Result<RunOutcome, CoreError> {
    for (i, task) in job_graph.nodes.iter().enumerate() {
        let label = task.job.as_ref().map(|j| j.label.as_str()).unwrap_or("");
        if graph.job(label).is_none() {
            return Err(CoreError::InvalidJobGraph(format!(
                "task #{} names job `{label}`, which graph `{}` does not define",
                i + 1,
                graph.label
            )));
        }
        let config = task
            .config
            .as_ref()
            .ok_or_else(|| CoreError::InvalidJobGraph(format!("task #{} has no config", i + 1)))?;
        if config.outputs.is_empty() {
            return Err(CoreError::InvalidJobGraph(format!(
                "task #{} has no outputs",
                i + 1
            )));
        }
        for r in config
            .outputs
            .iter()
            .map(|o| o.str.as_str())
            .chain(planner::materialize_inputs(task))
        {
            databuild_proto::validate_ref(r)
                .map_err(|e| CoreError::InvalidJobGraph(format!("task #{}: {e}", i + 1)))?;
        }
    }
    let mut producer = std::collections::HashMap::new();
    for (i, task) in job_graph.nodes.iter().enumerate() {
        for o in task.config.iter().flat_map(|c| c.outputs.iter()) {
            if producer.insert(o.str.clone(), i).is_some() {
                return Err(CoreError::InvalidJobGraph(format!(
                    "partition `{}` is an output of two tasks",
                    o.str
                )));
            }
        }
    }
    if let Some(cycle) = planner::find_cycle(&job_graph.nodes, &producer) {
        return Err(planner::PlanError::Cycle(cycle).into());
    }
    let outputs: Vec<String> = job_graph.outputs.into_iter().map(|o| o.str).collect();
    let requested = planner::distinct(&outputs);
    let signals = Signals::new(opts)?;
    let mut begun = begin(graph, bel.as_ref(), opts, &requested).await?;
    let run_id = begun.run_id.clone();
    let statuses = std::mem::take(&mut begun.statuses);
    if let Err(e) = record_requests(graph, bel.as_ref(), opts, &run_id, &requested, &statuses).await
    {
        begun.cancel_leftovers().await;
        return Err(e);
    }
    drop(statuses);
    let _lease = LeaseKeeper::start(bel.clone(), run_id.clone(), opts.lease);
    progress(Progress::Started {
        run_id: run_id.clone(),
    });
    run::execute_run(
        graph,
        bel,
        begun,
        job_graph.nodes,
        requested,
        opts,
        progress,
        signals,
    )
    .await
}
