//! The event loop of one graph run: claims, ready queues per job, job runners, retries,
//! failure propagation, cancellation and lease renewal.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Instant, SystemTime},
};

use databuild_bel::{Event, EventLog};
use databuild_proto::{
    DepType, FailureCause, GraphLabel, JobConfig, JobGraph, JobGraphRunStatus, JobLabel,
    JobRunStatus, PartitionManifest, PartitionRef, PartitionStatus, Task,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    executor::{Executors, Leftover, Submission},
    runner::{ExecResult, Failure},
    Begun, BuildOptions, Progress, ProgressFn, RunOutcome, Signals,
};
use crate::{events, graph::Graph, job_key, CoreError};

mod delegation;
mod jobs;

/// A job run's task, to spawn.
type Launch = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Backoff,
    Succeeded,
    Failed,
    /// Another graph run holds the outputs; waiting for its outcome.
    Delegated,
}

struct TaskState {
    job: usize,
    label: String,
    key: String,
    outputs: Vec<String>,
    config: JobConfig,
    deps_left: usize,
    dependents: Vec<usize>,
    state: State,
    attempt: u32,
    job_run_id: String,
    started: Option<(Instant, SystemTime)>,
    /// Manifests of the inputs available when the current attempt started (its lineage).
    inputs: Vec<PartitionManifest>,
    cancel: Option<oneshot::Sender<()>>,
    /// The graph run holding the outputs while delegated.
    owner: Option<String>,
    /// An upstream failure that reached the task while it was delegated: it fails with
    /// this reason if it ever has to be built here.
    upstream_failed: Option<Failure>,
    /// Rebuild even if the outputs are available when claimed (`--force`).
    forced: bool,
}

impl TaskState {
    /// An event of this task's job run `job_run_id` in graph run `run_id`.
    fn job_event(
        &self,
        run_id: &str,
        job_run_id: &str,
        status: JobRunStatus,
        config: Option<JobConfig>,
        logs: Option<Vec<String>>,
    ) -> Event {
        let ids = events::JobRunIds {
            run_id,
            job_run_id,
            label: &self.label,
            job_key: &self.key,
            outputs: &self.outputs,
        };
        events::job(&ids, status, config, logs)
    }
}

enum Msg {
    Lines {
        task: usize,
        job_run_id: String,
        lines: Vec<String>,
    },
    /// A cluster engine accepted the job run.
    Submitted {
        task: usize,
        job_run_id: String,
        submission: Submission,
    },
    /// A local job run's process started.
    Started {
        task: usize,
        job_run_id: String,
        handle: databuild_proto::JobRunHandle,
    },
    Exited {
        task: usize,
        job_run_id: String,
        result: ExecResult,
    },
    RetryDue {
        task: usize,
    },
}

struct Run<'a> {
    graph: &'a Graph,
    bel: Arc<dyn EventLog>,
    opts: &'a BuildOptions,
    progress: ProgressFn,
    run_id: String,
    tasks: Vec<TaskState>,
    /// Ready tasks per job, and the jobs with ready tasks (each at most once).
    ready: Vec<VecDeque<usize>>,
    ready_jobs: VecDeque<usize>,
    job_queued: Vec<bool>,
    running_per_job: Vec<usize>,
    running: usize,
    in_backoff: usize,
    delegated: usize,
    polls: u32,
    unfinished: usize,
    graph_status: JobGraphRunStatus,
    pending: Vec<Event>,
    /// Manifests (without nested inputs) of partitions available to this run.
    manifests: HashMap<String, PartitionManifest>,
    producer: HashMap<String, usize>,
    tx: mpsc::UnboundedSender<Msg>,
    cancelled: Option<String>,
    outcome: RunOutcome,
    executors: Executors,
    /// Job runs started this tick, launched once the events announcing them are durable
    /// (so that a cluster job is never submitted before the log names its job run).
    /// (In a mutex only to keep the run `Sync`; the loop takes it with `get_mut`.)
    launches: std::sync::Mutex<Vec<(usize, String, Launch)>>,
    /// What stopped the run after it began running jobs (the event log could not be
    /// written): its jobs are stopped and the error is returned once they are gone.
    failure: Option<CoreError>,
    /// Jobs of lost graph runs to adopt, by job key.
    orphans: HashMap<String, Leftover>,
}

/// Claims the outputs of the planned tasks `nodes` and runs them to the end; `requested`
/// are the distinct refs the run was asked for.
#[expect(clippy::too_many_arguments)] // the parts of one graph run, passed once
pub(super) async fn execute_run(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    begun: Begun,
    nodes: Vec<Task>,
    requested: &[String],
    opts: &BuildOptions,
    progress: ProgressFn,
    mut signals: Signals,
) -> Result<RunOutcome, CoreError> {
    let Begun {
        run_id,
        executors,
        leftovers: orphans,
        ..
    } = begun;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut run = Run {
        graph,
        bel: bel.clone(),
        opts,
        progress: progress.clone(),
        run_id: run_id.clone(),
        tasks: Vec::with_capacity(nodes.len()),
        ready: vec![VecDeque::new(); graph.jobs.len()],
        ready_jobs: VecDeque::new(),
        job_queued: vec![false; graph.jobs.len()],
        running_per_job: vec![0; graph.jobs.len()],
        running: 0,
        in_backoff: 0,
        delegated: 0,
        polls: 0,
        unfinished: nodes.len(),
        graph_status: JobGraphRunStatus::GraphAnalyzed,
        pending: Vec::new(),
        manifests: HashMap::new(),
        producer: HashMap::new(),
        tx,
        cancelled: None,
        outcome: RunOutcome {
            run_id: run_id.clone(),
            ..Default::default()
        },
        executors,
        launches: std::sync::Mutex::new(Vec::new()),
        failure: None,
        orphans: HashMap::new(),
    };
    let planned = nodes.clone();
    let up_to_date = run.setup(nodes, requested).await?;
    // The stored plan lists the requested refs with work to do; the up-to-date ones are
    // counted on GRAPH_STARTED, so the event grows with the work, not the request.
    let analysis = JobGraph {
        label: Some(GraphLabel {
            label: graph.label.clone(),
        }),
        outputs: requested
            .iter()
            .filter(|r| run.producer.contains_key(*r))
            .map(|r| PartitionRef::new(r.clone()))
            .collect(),
        nodes: planned,
    };
    run.pending.push(events::graph(
        &run_id,
        &graph.label,
        JobGraphRunStatus::GraphAnalyzed,
        Some(analysis),
    ));
    run.outcome.up_to_date = up_to_date.clone();
    progress(Progress::Planned {
        run_id: run_id.clone(),
        tasks: run.tasks.len(),
        up_to_date,
    });
    run.flush().await?;
    let all: Vec<usize> = (0..run.tasks.len()).collect();
    if let Err(e) = run.claim(all).await {
        run.executors.cancel_leftovers(orphans).await;
        bel.append(vec![events::graph(
            &run_id,
            &graph.label,
            JobGraphRunStatus::GraphFailed,
            None,
        )])
        .await?;
        return Err(e);
    }
    run.fail_missing_inputs().await?;
    run.take_orphans(orphans).await;

    // From here on jobs run: an error stops them and fails the run (see `stop_on`)
    // instead of returning while they still run.
    loop {
        if let Err(e) = run.start_ready().await {
            run.stop_on(e);
        }
        run.track_graph_status();
        let launches = std::mem::take(run.launches.get_mut().expect("launches"));
        match run.flush_or_keep().await {
            Ok(()) => {
                for (_, _, launch) in launches {
                    tokio::spawn(launch);
                }
            }
            Err(e) => {
                // Never started: a job runs only once the events announcing it are durable.
                for (task, job_run_id, _) in launches {
                    let _ = run.tx.send(Msg::Exited {
                        task,
                        job_run_id,
                        result: ExecResult::failed(FailureCause::NotStarted, "not started"),
                    });
                }
                run.stop_on(e);
            }
        }
        if run.running == 0
            && run.ready_jobs.is_empty()
            && run.in_backoff == 0
            && run.delegated == 0
        {
            break;
        }
        tokio::select! {
            Some(msg) = rx.recv() => {
                let mut handled = run.handle(msg).await;
                while handled.is_ok() {
                    let Ok(msg) = rx.try_recv() else { break };
                    handled = run.handle(msg).await;
                }
                if let Err(e) = handled {
                    run.stop_on(e);
                }
            }
            _ = tokio::time::sleep(delegation::POLL), if run.delegated > 0 => {
                if let Err(e) = run.poll_delegated().await {
                    run.stop_on(e);
                }
            }
            reason = signals.recv() => run.cancel_all(reason.into()),
        }
    }
    run.finish(requested).await
}

impl Run<'_> {
    /// Builds the task table. Returns requested refs that need no work.
    async fn setup(
        &mut self,
        nodes: Vec<Task>,
        requested: &[String],
    ) -> Result<Vec<String>, CoreError> {
        for (i, task) in nodes.into_iter().enumerate() {
            let label = task.job.map(|j| j.label).unwrap_or_default();
            let job = self
                .graph
                .jobs
                .iter()
                .position(|j| j.label == label)
                .ok_or_else(|| {
                    CoreError::InvalidJobGraph(format!(
                        "task #{} names unknown job `{label}`",
                        i + 1
                    ))
                })?;
            let config = task.config.unwrap_or_default();
            let outputs: Vec<String> = config.outputs.iter().map(|o| o.str.clone()).collect();
            for o in &outputs {
                if self.producer.insert(o.clone(), i).is_some() {
                    return Err(CoreError::InvalidJobGraph(format!(
                        "partition `{o}` is an output of two tasks"
                    )));
                }
            }
            self.tasks.push(TaskState {
                job,
                key: job_key(&label, &outputs),
                label,
                outputs,
                config,
                deps_left: 0,
                dependents: Vec::new(),
                state: State::Waiting,
                attempt: 0,
                job_run_id: String::new(),
                started: None,
                inputs: Vec::new(),
                cancel: None,
                owner: None,
                upstream_failed: None,
                forced: false,
            });
        }
        for i in 0..self.tasks.len() {
            let mut deps: Vec<usize> = self.tasks[i]
                .config
                .inputs
                .iter()
                .filter(|d| d.dep_type == DepType::Materialize as i32)
                .filter_map(|d| d.partition_ref.as_ref())
                .filter_map(|r| self.producer.get(&r.str).copied())
                .filter(|&p| p != i)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            self.tasks[i].deps_left = deps.len();
            for d in deps {
                self.tasks[d].dependents.push(i);
            }
        }
        if self.opts.force {
            for r in requested {
                if let Some(&p) = self.producer.get(r) {
                    self.tasks[p].forced = true;
                }
            }
        }
        Ok(requested
            .iter()
            .filter(|r| !self.producer.contains_key(*r))
            .cloned()
            .collect())
    }

    /// Fails tasks whose MATERIALIZE inputs are neither produced here nor available;
    /// readies the rest that wait for nothing; loads manifests of available inputs.
    async fn fail_missing_inputs(&mut self) -> Result<(), CoreError> {
        let mut outside: Vec<String> = self
            .tasks
            .iter()
            .flat_map(|t| materialize_refs(&t.config))
            .map(|r| r.str)
            .filter(|r| !self.producer.contains_key(r))
            .collect();
        outside.sort();
        outside.dedup();
        let available: std::collections::HashSet<String> = self
            .bel
            .partitions(&outside)
            .await?
            .into_iter()
            .filter(|r| r.status == PartitionStatus::PartitionAvailable)
            .map(|r| r.partition_ref)
            .collect();
        for r in &available {
            if let Some(ev) = self.bel.latest_partition_event(r).await? {
                if let Some(m) = ev.manifest {
                    self.manifests.insert(r.clone(), strip(m));
                }
            }
        }
        for i in 0..self.tasks.len() {
            if self.tasks[i].state != State::Waiting {
                continue;
            }
            let missing: Vec<String> = materialize_refs(&self.tasks[i].config)
                .into_iter()
                .map(|r| r.str)
                .filter(|r| !self.producer.contains_key(r) && !available.contains(r))
                .collect();
            if let Some(m) = missing.first() {
                let failure = Failure::new(
                    FailureCause::InputMissing,
                    format!("input `{m}` is not available"),
                );
                self.fail_task(i, failure, None, Some(m.clone()));
            } else if self.tasks[i].deps_left == 0 && self.tasks[i].state == State::Waiting {
                self.make_ready(i);
            }
        }
        Ok(())
    }

    /// Task `i` is done: its dependents no longer wait for it.
    fn release_dependents(&mut self, i: usize) {
        let dependents = std::mem::take(&mut self.tasks[i].dependents);
        for &d in &dependents {
            let dt = &mut self.tasks[d];
            dt.deps_left -= 1;
            if dt.deps_left == 0 && dt.state == State::Waiting {
                self.make_ready(d);
            }
        }
        self.tasks[i].dependents = dependents;
    }

    fn make_ready(&mut self, i: usize) {
        self.tasks[i].state = State::Ready;
        let job = self.tasks[i].job;
        self.ready[job].push_back(i);
        if !self.job_queued[job] {
            self.job_queued[job] = true;
            self.ready_jobs.push_back(job);
        }
    }

    async fn start_ready(&mut self) -> Result<(), CoreError> {
        if self.cancelled.is_some() {
            return Ok(());
        }
        let mut blocked = Vec::new();
        while self.running < self.opts.parallelism.max(1) {
            let Some(job) = self.ready_jobs.pop_front() else {
                break;
            };
            let limit = self.graph.jobs[job].max_concurrency.unwrap_or(usize::MAX);
            if self.running_per_job[job] >= limit {
                blocked.push(job);
                continue;
            }
            let Some(i) = self.ready[job].pop_front() else {
                self.job_queued[job] = false;
                continue;
            };
            if self.ready[job].is_empty() {
                self.job_queued[job] = false;
            } else {
                self.ready_jobs.push_back(job);
            }
            self.start(i).await?;
        }
        for job in blocked.into_iter().rev() {
            self.ready_jobs.push_front(job);
        }
        Ok(())
    }

    /// Manifests of task `i`'s inputs available now, in config order: MATERIALIZE ones and
    /// QUERY ones that exist (built by this run, or AVAILABLE in the log).
    async fn available_inputs(&self, i: usize) -> Result<Vec<PartitionManifest>, CoreError> {
        let mut inputs = Vec::new();
        for d in &self.tasks[i].config.inputs {
            let Some(r) = d.partition_ref.as_ref().map(|r| r.str.clone()) else {
                continue;
            };
            if let Some(m) = self.manifests.get(&r) {
                inputs.push(m.clone());
            } else if d.dep_type != DepType::Materialize as i32 {
                let row = self.bel.partitions(std::slice::from_ref(&r)).await?;
                if row
                    .first()
                    .is_some_and(|p| p.status == PartitionStatus::PartitionAvailable)
                {
                    if let Some(m) = self
                        .bel
                        .latest_partition_event(&r)
                        .await?
                        .and_then(|e| e.manifest)
                    {
                        inputs.push(strip(m));
                    }
                }
            }
        }
        Ok(inputs)
    }

    /// The manifest of task `i`'s successful run: outputs, the input manifests available
    /// at its start (MATERIALIZE, and QUERY ones that existed), times and the task.
    fn manifest(&self, i: usize, start: SystemTime) -> PartitionManifest {
        let t = &self.tasks[i];
        PartitionManifest {
            outputs: t
                .outputs
                .iter()
                .map(|o| PartitionRef::new(o.clone()))
                .collect(),
            inputs: t.inputs.clone(),
            start_time: Some(databuild_proto::timestamp(start)),
            end_time: Some(databuild_proto::now()),
            task: Some(Task {
                job: Some(JobLabel::new(t.label.clone())),
                config: Some(t.config.clone()),
            }),
        }
    }

    /// Fails task `i`'s outputs with `failure`, and everything downstream that has not
    /// run (as UPSTREAM_FAILED). `upstream` is the input whose failure (or absence) caused
    /// this one, if any.
    pub(super) fn fail_task(
        &mut self,
        i: usize,
        failure: Failure,
        job_run_id: Option<String>,
        upstream: Option<String>,
    ) {
        let mut queue = VecDeque::from([(i, failure, job_run_id, upstream)]);
        while let Some((t, failure, job_run_id, upstream)) = queue.pop_front() {
            let task = &mut self.tasks[t];
            if matches!(task.state, State::Succeeded | State::Failed) {
                continue;
            }
            if task.state == State::Delegated {
                // Another run builds it from its own inputs; remember in case it comes back.
                task.upstream_failed.get_or_insert(failure);
                continue;
            }
            if task.state == State::Backoff {
                self.in_backoff = self.in_backoff.saturating_sub(1);
            }
            if task.state == State::Ready {
                self.ready[task.job].retain(|&x| x != t);
            }
            task.state = State::Failed;
            self.unfinished -= 1;
            for o in &task.outputs {
                let mut e = events::failed(o, &self.run_id, &failure);
                e.job_run_id = job_run_id.clone().unwrap_or_default();
                e.producing_job = Some(JobLabel::new(task.label.clone()));
                e.upstream_deps = upstream
                    .iter()
                    .map(|u| PartitionRef::new(u.clone()))
                    .collect();
                self.pending.push(Event::Partition(e));
                self.outcome
                    .failed
                    .push((o.clone(), failure.reason.clone()));
            }
            if job_run_id.is_none() {
                (self.progress)(Progress::PartitionsFailed {
                    refs: task.outputs.clone(),
                    reason: failure.reason.clone(),
                });
            }
            let first = task.outputs.first().cloned().unwrap_or_default();
            let label = task.label.clone();
            for &d in &task.dependents {
                queue.push_back((
                    d,
                    Failure::new(
                        FailureCause::UpstreamFailed,
                        format!("upstream partition `{first}` failed (job `{label}`)"),
                    ),
                    None,
                    Some(first.clone()),
                ));
            }
        }
    }

    /// Stops everything: running jobs are killed, nothing new starts, waiting work fails.
    fn cancel_all(&mut self, reason: String) {
        if self.cancelled.is_some() {
            return;
        }
        self.cancelled = Some(reason.clone());
        for i in 0..self.tasks.len() {
            match self.tasks[i].state {
                State::Running => {
                    if let Some(c) = self.tasks[i].cancel.take() {
                        let _ = c.send(());
                    }
                }
                State::Waiting | State::Ready | State::Backoff => {
                    if self.tasks[i].state == State::Backoff {
                        self.in_backoff -= 1;
                        self.tasks[i].state = State::Waiting;
                    }
                    let task = &mut self.tasks[i];
                    task.state = State::Failed;
                    self.unfinished -= 1;
                    let failure = Failure::new(FailureCause::Cancelled, reason.clone());
                    for o in &task.outputs {
                        let mut e = events::failed(o, &self.run_id, &failure);
                        e.producing_job = Some(JobLabel::new(task.label.clone()));
                        self.pending.push(Event::Partition(e));
                        self.outcome.failed.push((o.clone(), reason.clone()));
                    }
                    (self.progress)(Progress::PartitionsFailed {
                        refs: task.outputs.clone(),
                        reason: reason.clone(),
                    });
                }
                State::Delegated => {
                    // Held by another run: stop waiting; its partitions are not ours to fail.
                    self.tasks[i].state = State::Failed;
                    self.delegated -= 1;
                    self.unfinished -= 1;
                    for o in &self.tasks[i].outputs {
                        self.outcome.failed.push((o.clone(), reason.clone()));
                    }
                }
                State::Succeeded | State::Failed => {}
            }
        }
        for q in &mut self.ready {
            q.clear();
        }
        self.ready_jobs.clear();
        self.job_queued.iter_mut().for_each(|q| *q = false);
    }

    /// GRAPH_RUNNING while jobs run, AWAITING_DEPS while work waits with none running.
    fn track_graph_status(&mut self) {
        let next = if self.running > 0 {
            JobGraphRunStatus::GraphRunning
        } else if self.unfinished > 0 {
            JobGraphRunStatus::AwaitingDeps
        } else {
            return;
        };
        if next != self.graph_status {
            self.graph_status = next;
            self.pending
                .push(events::graph(&self.run_id, &self.graph.label, next, None));
        }
    }

    async fn flush(&mut self) -> Result<(), CoreError> {
        if !self.pending.is_empty() {
            self.bel.append(std::mem::take(&mut self.pending)).await?;
        }
        Ok(())
    }

    /// Like [`Run::flush`], but events that could not be written stay pending, ahead of
    /// later ones, so that a later write (once there is room again) records them in order.
    async fn flush_or_keep(&mut self) -> Result<(), CoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        match self.bel.append(batch.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let later = std::mem::replace(&mut self.pending, batch);
                self.pending.extend(later);
                Err(e.into())
            }
        }
    }

    /// The run cannot go on (the event log cannot be written): stop every job, and
    /// return `e` once they are gone and the run's end is recorded where it still can be.
    fn stop_on(&mut self, e: CoreError) {
        if self.failure.is_some() {
            return;
        }
        tracing::error!(run_id = %self.run_id, error = %e, "stopping the graph run");
        self.cancel_all(format!("cancelled: {e}"));
        self.failure = Some(e);
    }

    async fn finish(mut self, requested: &[String]) -> Result<RunOutcome, CoreError> {
        let failed: std::collections::HashSet<&str> = self
            .outcome
            .failed
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        let failed_requested =
            !failed.is_empty() && requested.iter().any(|r| failed.contains(r.as_str()));
        let success =
            self.outcome.failed.is_empty() && !failed_requested && self.cancelled.is_none();
        let status = if success {
            JobGraphRunStatus::GraphSuccess
        } else {
            JobGraphRunStatus::GraphFailed
        };
        self.pending
            .push(events::graph(&self.run_id, &self.graph.label, status, None));
        let recorded = self.flush_or_keep().await;
        if let Some(cause) = self.failure.take() {
            return Err(CoreError::Stopped {
                run_id: self.run_id.clone(),
                cause: Box::new(cause),
                recorded: if recorded.is_ok() {
                    "the graph run is recorded as failed"
                } else {
                    "the graph run could not be recorded as failed; the next build reclaims it"
                },
            });
        }
        recorded?;
        let unadopted: Vec<Leftover> = self.orphans.drain().map(|(_, o)| o).collect();
        self.executors.cancel_leftovers(unadopted).await;
        self.outcome.success = success;
        self.outcome.cancelled = self.cancelled.is_some();
        Ok(self.outcome)
    }
}

fn materialize_refs(config: &JobConfig) -> Vec<PartitionRef> {
    config
        .inputs
        .iter()
        .filter(|d| d.dep_type == DepType::Materialize as i32)
        .filter_map(|d| d.partition_ref.clone())
        .collect()
}

/// A manifest without its nested input manifests (lineage deeper than one level is
/// reachable through the inputs' own events).
fn strip(mut m: PartitionManifest) -> PartitionManifest {
    m.inputs.clear();
    m
}
