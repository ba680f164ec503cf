//! The decisions of one graph run as a state machine: messages in (a claim's outcome, a
//! job run's report or end, a retry due, an owner's outcome, a cancellation), effects out
//! (events to append, job runs to start, jobs to stop, retries to time, groups to claim
//! again). It does no I/O, so it is tested without processes or an event log
//! (`machine/tests.rs`, `machine/prop.rs`); `run.rs` is the shell that carries effects out.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use databuild_bel::Event;
use databuild_proto::{
    DepType, FailureCause, GraphLabel, JobConfig, JobGraph, JobGraphRunStatus, JobRunHandle,
    JobRunStatus, PartitionManifest, PartitionRef, Task,
};

use super::{
    executor::Submission,
    runner::{ExecResult, Failure},
    Progress, ProgressFn, RunOutcome,
};
use crate::{job_key, CoreError};

mod cutoff;
mod messages;
mod owners;
#[cfg(test)]
mod prop;
mod task;
#[cfg(test)]
mod tests;

pub(crate) use self::owners::{observe, Claim, Observed, OwnerOutcome};
pub(crate) use self::task::{State, TaskState};

/// What the machine needs to know of a job.
#[derive(Debug, Clone)]
pub(crate) struct JobRules {
    /// The job's label.
    pub label: String,
    /// Job runs of it at once, at most.
    pub max_concurrency: Option<usize>,
    /// Attempts after the first.
    pub retries: u32,
    /// The wait before the first retry (doubling with each).
    pub retry_backoff: Duration,
    /// Its executor's name.
    pub executor: &'static str,
    /// Whether its executor queues job runs (outputs BUILDING once accepted).
    pub queues: bool,
    /// Its version, recorded with each build (`JobDef::version`).
    pub version: String,
    /// Whether its executor finds a job run after a crash even if nothing about it was
    /// recorded (`Executor::finds_unrecorded`): its job runs may start before the events
    /// announcing them are durable.
    pub finds_unrecorded: bool,
}

/// The run's options that decide what happens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Job runs at once, at most.
    pub parallelism: usize,
    /// Cancel everything after the first job that fails for good.
    pub fail_fast: bool,
    /// Rebuild the requested refs even if available.
    pub force: bool,
}

/// A message to the machine from the job runs it started.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Output lines of a job run.
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
        handle: JobRunHandle,
    },
    /// A job run ended; a successful one with the digests of its outputs it reported or
    /// databuild computed (by ref).
    Exited {
        task: usize,
        job_run_id: String,
        result: ExecResult,
        digests: HashMap<String, String>,
    },
    /// A task's retry backoff is over.
    RetryDue { task: usize },
}

/// A job run to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    pub task: usize,
    pub job_run_id: String,
    /// Whether it may start before the events announcing it are durable: its executor
    /// finds a job run after a crash even if nothing about it was recorded
    /// ([`JobRules::finds_unrecorded`]). The others start once they are durable.
    pub early: bool,
}

/// What the shell has to do, accumulated until it takes it.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Events to append, in order, in one transaction.
    pub events: Vec<Event>,
    /// Whether `events` hold something to write at once: an engine's id for a submitted
    /// job run, by which a later run finds it.
    pub urgent: bool,
    /// How many of `events` have their id and time ([`Effects::stamp`]).
    stamped: usize,
    /// Job runs to start (see [`Start::early`]).
    pub start: Vec<Start>,
    /// Tasks whose running job run to stop.
    pub cancel: Vec<usize>,
    /// Tasks to send [`Msg::RetryDue`] for after a delay.
    pub retry: Vec<(usize, Duration)>,
    /// Delegated tasks to claim again (their owner let them go).
    pub claim: Vec<usize>,
}

impl Effects {
    /// Whether what there is to do is events that may wait a little for more, so that
    /// the job runs of several loop turns share one transaction, and job runs that may
    /// start before their events are durable. Stops, retries and claims do not wait, nor
    /// does a job run that starts only once its events are durable.
    pub fn may_wait(&self) -> bool {
        !self.events.is_empty()
            && !self.urgent
            && self.start.iter().all(|s| s.early)
            && self.cancel.is_empty()
            && self.retry.is_empty()
            && self.claim.is_empty()
    }

    /// Gives the events added since the last call their id and the time they happened
    /// (now), since they may be written a little later.
    pub fn stamp(&mut self) {
        for e in self.events.iter_mut().skip(self.stamped) {
            databuild_bel::stamp(e);
        }
        self.stamped = self.events.len();
    }

    /// Records `handle` in job run `job_run_id`'s JOB_RUNNING event if that event is still
    /// pending (not yet taken to be written) and has no handle or output yet; says whether
    /// it did. A local job's process is known a moment after its start, usually before the
    /// start's events are written: one event then says both.
    pub fn add_handle(&mut self, job_run_id: &str, handle: &JobRunHandle) -> bool {
        let pending = self.events.iter_mut().rev().find_map(|e| match e {
            Event::Run(r) => r.job_event.as_mut().filter(|j| {
                j.job_run_id == job_run_id && j.status == JobRunStatus::JobRunning as i32
            }),
            _ => None,
        });
        match pending {
            Some(j) if j.handle.is_none() && j.logs.is_none() => {
                j.handle = Some(handle.clone());
                true
            }
            _ => false,
        }
    }

    /// Takes the events to append.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.urgent = false;
        self.stamped = 0;
        std::mem::take(&mut self.events)
    }
}

/// The state of one graph run's tasks and the rules that move it.
pub(crate) struct Machine {
    run_id: String,
    graph_label: String,
    jobs: Vec<JobRules>,
    policy: Policy,
    progress: ProgressFn,
    tasks: Vec<TaskState>,
    /// Ready tasks per job, and the jobs with ready tasks (each at most once).
    ready: Vec<VecDeque<usize>>,
    ready_jobs: VecDeque<usize>,
    job_queued: Vec<bool>,
    running_per_job: Vec<usize>,
    running: usize,
    in_backoff: usize,
    delegated: usize,
    unfinished: usize,
    graph_status: JobGraphRunStatus,
    /// Manifests (without nested inputs) of partitions available to this run.
    manifests: HashMap<String, PartitionManifest>,
    producer: HashMap<String, usize>,
    cancelled: Option<String>,
    outcome: RunOutcome,
    /// Ready tasks that may be made fresh without running (early cutoff), to check.
    fresh: Vec<usize>,
    /// What the shell has to do next.
    pub out: Effects,
}

impl Machine {
    /// The machine of graph run `run_id` over the planned tasks `nodes`; `requested` are
    /// the distinct refs the run was asked for. Also returns how many of them need no work.
    pub fn new(
        run_id: &str,
        graph_label: &str,
        jobs: Vec<JobRules>,
        policy: Policy,
        progress: ProgressFn,
        nodes: Vec<Task>,
        requested: &[String],
    ) -> Result<(Self, usize), CoreError> {
        let by_label: HashMap<&str, usize> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| (j.label.as_str(), i))
            .collect();
        let mut tasks = Vec::with_capacity(nodes.len());
        let mut producer = HashMap::new();
        for (i, task) in nodes.into_iter().enumerate() {
            let label = task.job.map(|j| j.label).unwrap_or_default();
            let job = *by_label.get(label.as_str()).ok_or_else(|| {
                CoreError::InvalidJobGraph(format!("task #{} names unknown job `{label}`", i + 1))
            })?;
            let config = task.config.unwrap_or_default();
            let outputs: Vec<String> = config.outputs.iter().map(|o| o.str.clone()).collect();
            for o in &outputs {
                if producer.insert(o.clone(), i).is_some() {
                    return Err(CoreError::InvalidJobGraph(format!(
                        "partition `{o}` is an output of two tasks"
                    )));
                }
            }
            tasks.push(TaskState::new(
                job,
                job_key(&label, &outputs),
                label,
                outputs,
                config,
            ));
        }
        for i in 0..tasks.len() {
            let mut deps: Vec<usize> = materialize_refs(&tasks[i].config)
                .iter()
                .filter_map(|r| producer.get(&r.str).copied())
                .filter(|&p| p != i)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            tasks[i].deps_left = deps.len();
            for d in deps {
                tasks[d].dependents.push(i);
            }
        }
        if policy.force {
            for r in requested {
                if let Some(&p) = producer.get(r) {
                    tasks[p].forced = true;
                }
            }
        }
        let up_to_date = requested
            .iter()
            .filter(|r| !producer.contains_key(*r))
            .count();
        let n = jobs.len();
        let machine = Self {
            run_id: run_id.to_string(),
            graph_label: graph_label.to_string(),
            jobs,
            policy,
            progress,
            unfinished: tasks.len(),
            tasks,
            ready: vec![VecDeque::new(); n],
            ready_jobs: VecDeque::new(),
            job_queued: vec![false; n],
            running_per_job: vec![0; n],
            running: 0,
            in_backoff: 0,
            delegated: 0,
            graph_status: JobGraphRunStatus::GraphAnalyzed,
            manifests: HashMap::new(),
            producer,
            cancelled: None,
            fresh: Vec::new(),
            outcome: RunOutcome {
                run_id: run_id.to_string(),
                ..Default::default()
            },
            out: Effects::default(),
        };
        Ok((machine, up_to_date))
    }

    /// Records GRAPH_ANALYZED with the plan: the requested refs with work to do (the
    /// up-to-date ones are counted on GRAPH_STARTED, so the event grows with the work,
    /// not the request) and the planned tasks.
    pub fn analyzed(&mut self, requested: &[String], planned: Vec<Task>, up_to_date: usize) {
        let analysis = JobGraph {
            label: Some(GraphLabel {
                label: self.graph_label.clone(),
            }),
            outputs: requested
                .iter()
                .filter(|r| self.producer.contains_key(*r))
                .map(|r| PartitionRef::new(r.clone()))
                .collect(),
            nodes: planned,
        };
        self.out
            .events
            .push(self.graph_event(JobGraphRunStatus::GraphAnalyzed, Some(analysis)));
        (self.progress)(Progress::Planned {
            run_id: self.run_id.clone(),
            tasks: self.tasks.len(),
            up_to_date,
        });
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Task `i`.
    pub fn task(&self, i: usize) -> &TaskState {
        &self.tasks[i]
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether nothing runs, waits to run or waits on another run any more.
    pub fn is_done(&self) -> bool {
        self.running == 0
            && self.ready_jobs.is_empty()
            && self.in_backoff == 0
            && self.delegated == 0
    }

    /// Whether some task waits on another graph run.
    pub fn has_delegated(&self) -> bool {
        self.delegated > 0
    }

    /// MATERIALIZE inputs of the tasks that no task of this run produces, sorted.
    pub fn outside_inputs(&self) -> Vec<String> {
        let mut outside: Vec<String> = self
            .tasks
            .iter()
            .flat_map(|t| materialize_refs(&t.config))
            .map(|r| r.str)
            .filter(|r| !self.producer.contains_key(r))
            .collect();
        outside.sort();
        outside.dedup();
        outside
    }

    /// What the event log says of the outside inputs: those `available` (with their
    /// `manifests`). Fails the tasks whose MATERIALIZE inputs are neither produced here nor
    /// available, and readies the rest that wait for nothing.
    pub fn inputs_known(
        &mut self,
        available: &HashSet<String>,
        manifests: HashMap<String, PartitionManifest>,
    ) {
        self.manifests
            .extend(manifests.into_iter().map(|(r, m)| (r, strip(m))));
        for i in 0..self.tasks.len() {
            if self.tasks[i].state != State::Waiting {
                continue;
            }
            let missing = materialize_refs(&self.tasks[i].config)
                .into_iter()
                .map(|r| r.str)
                .find(|r| !self.producer.contains_key(r) && !available.contains(r));
            if let Some(m) = missing {
                let failure = Failure::new(
                    FailureCause::InputMissing,
                    format!("input `{m}` is not available"),
                );
                self.fail_task(i, failure, None, Some(m));
            } else if self.tasks[i].deps_left == 0 {
                self.make_ready(i);
            }
        }
    }

    /// Whether a job that a lost run left (of task `job_key`, with `config`, on
    /// `executor`) can be adopted by this run: same task, same configuration, still on the
    /// same executor, claimed by this run and not started.
    pub fn adoptable(&self, job_key: &str, config: Option<&JobConfig>, executor: &str) -> bool {
        self.tasks.iter().any(|t| {
            t.key == job_key
                && matches!(t.state, State::Waiting | State::Ready)
                && !t.forced
                && config == Some(&t.config)
                && self.jobs[t.job].executor == executor
        })
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
        if self.tasks[i].previous.is_some() && !self.tasks[i].forced {
            self.fresh.push(i);
        }
        self.tasks[i].state = State::Ready;
        let job = self.tasks[i].job;
        self.ready[job].push_back(i);
        self.queue_job(job);
    }

    fn queue_job(&mut self, job: usize) {
        if !self.job_queued[job] {
            self.job_queued[job] = true;
            self.ready_jobs.push_back(job);
        }
    }

    /// Starts ready tasks, round robin over jobs, within the run's parallelism and each
    /// job's `max_concurrency`: their job runs' SCHEDULED and RUNNING events (and BUILDING,
    /// unless the executor queues) and a [`Start`] each.
    pub fn start_ready(&mut self) {
        if self.cancelled.is_some() {
            return;
        }
        self.cut_off_fresh();
        let mut blocked = Vec::new();
        while self.running < self.policy.parallelism.max(1) {
            let Some(job) = self.ready_jobs.pop_front() else {
                break;
            };
            let limit = self.jobs[job].max_concurrency.unwrap_or(usize::MAX);
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
            self.start(i);
        }
        for job in blocked.into_iter().rev() {
            self.ready_jobs.push_front(job);
        }
    }

    fn start(&mut self, i: usize) {
        let queues = self.jobs[self.tasks[i].job].queues;
        let t = &mut self.tasks[i];
        t.attempt += 1;
        t.job_run_id = databuild_bel::new_id();
        t.state = State::Running;
        t.started = Some((Instant::now(), SystemTime::now()));
        t.inputs = t
            .config
            .inputs
            .iter()
            .filter_map(|d| self.manifests.get(&d.partition_ref.as_ref()?.str).cloned())
            .collect();
        let t = &self.tasks[i];
        let job_run_id = t.job_run_id.clone();
        self.out.events.push(t.job_event(
            &self.run_id,
            &job_run_id,
            JobRunStatus::JobScheduled,
            Some(t.config.clone()),
            None,
        ));
        self.out.events.push(t.job_event(
            &self.run_id,
            &job_run_id,
            JobRunStatus::JobRunning,
            None,
            None,
        ));
        // On a cluster, the outputs are BUILDING once the engine accepted the job (the
        // events then record its id).
        if !queues {
            let building = t.building(&self.run_id, &job_run_id, None);
            self.out.events.extend(building);
        }
        (self.progress)(Progress::JobStarted {
            job_run_id: job_run_id.clone(),
            label: t.label.clone(),
            outputs: t.outputs.clone(),
            attempt: t.attempt,
        });
        self.running += 1;
        self.running_per_job[t.job] += 1;
        self.outcome.job_runs += 1;
        self.out.start.push(Start {
            task: i,
            job_run_id,
            early: self.jobs[t.job].finds_unrecorded,
        });
    }

    /// The inputs of started task `i` that are not MATERIALIZE inputs (whose manifests the
    /// machine has): the shell looks up those that exist and passes them to
    /// [`Machine::query_inputs_found`].
    pub fn query_inputs(&self, i: usize) -> Vec<String> {
        self.tasks[i]
            .config
            .inputs
            .iter()
            .filter(|d| d.dep_type != DepType::Materialize as i32)
            .filter_map(|d| d.partition_ref.as_ref().map(|r| r.str.clone()))
            .filter(|r| !self.manifests.contains_key(r))
            .collect()
    }

    /// The lineage of started task `i`: the manifests of its inputs available now, in
    /// config order — MATERIALIZE ones, and QUERY ones that exist (built by this run, or
    /// `found` AVAILABLE in the log).
    pub fn query_inputs_found(&mut self, i: usize, found: &HashMap<String, PartitionManifest>) {
        let inputs = self.tasks[i]
            .config
            .inputs
            .iter()
            .filter_map(|d| {
                let r = &d.partition_ref.as_ref()?.str;
                match self.manifests.get(r) {
                    Some(m) => Some(m.clone()),
                    None if d.dep_type != DepType::Materialize as i32 => {
                        found.get(r).cloned().map(strip)
                    }
                    None => None,
                }
            })
            .collect();
        self.tasks[i].inputs = inputs;
    }

    /// Fails task `i`'s outputs with `failure`, and everything downstream that has not
    /// run (as UPSTREAM_FAILED). `upstream` is the input whose failure (or absence) caused
    /// this one, if any.
    fn fail_task(
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
                self.in_backoff -= 1;
            }
            if task.state == State::Ready {
                self.ready[task.job].retain(|&x| x != t);
            }
            task.state = State::Failed;
            self.unfinished -= 1;
            let task = &self.tasks[t];
            let failed = task.failed(&self.run_id, &failure, job_run_id.as_deref(), upstream);
            self.out.events.extend(failed);
            self.outcome.failed.extend(
                task.outputs
                    .iter()
                    .map(|o| (o.clone(), failure.reason.clone())),
            );
            if job_run_id.is_none() {
                (self.progress)(Progress::PartitionsFailed {
                    refs: task.outputs.clone(),
                    reason: failure.reason.clone(),
                });
            }
            let first = task.outputs.first().cloned().unwrap_or_default();
            for &d in &task.dependents {
                queue.push_back((
                    d,
                    Failure::new(
                        FailureCause::UpstreamFailed,
                        format!("upstream partition `{first}` failed (job `{}`)", task.label),
                    ),
                    None,
                    Some(first.clone()),
                ));
            }
        }
    }

    /// Stops everything: running jobs are stopped, nothing new starts, waiting work
    /// fails (as CANCELLED, with `reason`), delegated work is no longer waited for.
    pub fn cancel_all(&mut self, reason: String) {
        if self.cancelled.is_some() {
            return;
        }
        self.cancelled = Some(reason.clone());
        for i in 0..self.tasks.len() {
            match self.tasks[i].state {
                State::Running => self.out.cancel.push(i),
                State::Waiting | State::Ready | State::Backoff => {
                    if self.tasks[i].state == State::Backoff {
                        self.in_backoff -= 1;
                    }
                    self.tasks[i].state = State::Failed;
                    self.unfinished -= 1;
                    let task = &self.tasks[i];
                    let failure = Failure::new(FailureCause::Cancelled, reason.clone());
                    let failed = task.failed(&self.run_id, &failure, None, None);
                    self.out.events.extend(failed);
                    self.outcome
                        .failed
                        .extend(task.outputs.iter().map(|o| (o.clone(), reason.clone())));
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
                    let outputs = &self.tasks[i].outputs;
                    self.outcome
                        .failed
                        .extend(outputs.iter().map(|o| (o.clone(), reason.clone())));
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
    pub fn track_graph_status(&mut self) {
        let next = if self.running > 0 {
            JobGraphRunStatus::GraphRunning
        } else if self.unfinished > 0 {
            JobGraphRunStatus::AwaitingDeps
        } else {
            return;
        };
        if next != self.graph_status {
            self.graph_status = next;
            self.out.events.push(self.graph_event(next, None));
        }
    }

    /// The requested refs that needed no work, for the outcome: moved out of `requested`
    /// when it is owned (a request of ten million refs is not copied).
    pub fn up_to_date(&self, requested: std::borrow::Cow<'_, [String]>) -> Vec<String> {
        match requested {
            std::borrow::Cow::Owned(refs) => refs
                .into_iter()
                .filter(|r| !self.producer.contains_key(r))
                .collect(),
            std::borrow::Cow::Borrowed(refs) => refs
                .iter()
                .filter(|r| !self.producer.contains_key(*r))
                .cloned()
                .collect(),
        }
    }

    /// Ends the run: GRAPH_SUCCESS if nothing failed and no requested ref failed and it
    /// was not cancelled, else GRAPH_FAILED. Returns the outcome.
    pub fn finish(&mut self, requested: &[String]) -> RunOutcome {
        let failed: HashSet<&str> = self
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
        self.graph_status = status;
        self.out.events.push(self.graph_event(status, None));
        let mut outcome = std::mem::take(&mut self.outcome);
        outcome.success = success;
        outcome.cancelled = self.cancelled.is_some();
        outcome
    }

    /// Frees the finished run's tasks, manifests and producers on a thread of their own:
    /// for a large run (every task's configuration, inputs and manifest) that takes
    /// milliseconds the caller need not wait for. Call it last: the machine has no tasks
    /// afterwards.
    pub fn free_tasks(&mut self) {
        let held = (
            std::mem::take(&mut self.tasks),
            std::mem::take(&mut self.manifests),
            std::mem::take(&mut self.producer),
        );
        // Should no thread start, the closure and what it holds are freed here instead.
        let _ = std::thread::Builder::new()
            .name("databuild-free".into())
            .spawn(move || drop(held));
    }

    fn graph_event(&self, status: JobGraphRunStatus, analysis: Option<JobGraph>) -> Event {
        crate::events::graph(&self.run_id, &self.graph_label, status, analysis)
    }
}

pub(crate) fn materialize_refs(config: &JobConfig) -> Vec<PartitionRef> {
    config
        .inputs
        .iter()
        .filter(|d| d.dep_type == DepType::Materialize as i32)
        .filter_map(|d| d.partition_ref.clone())
        .collect()
}

/// A manifest without its nested input manifests (lineage deeper than one level is
/// reachable through the inputs' own events).
pub(crate) fn strip(mut m: PartitionManifest) -> PartitionManifest {
    m.inputs.clear();
    m
}

/// [`strip`] of a copy, without copying the nested input manifests first.
pub(crate) fn stripped(m: &PartitionManifest) -> PartitionManifest {
    let PartitionManifest {
        job_version,
        config_fingerprint,
        digests,
        outputs,
        inputs: _,
        start_time,
        end_time,
        task,
    } = m;
    PartitionManifest {
        job_version: job_version.clone(),
        config_fingerprint: config_fingerprint.clone(),
        digests: digests.clone(),
        outputs: outputs.clone(),
        inputs: Vec::new(),
        start_time: *start_time,
        end_time: *end_time,
        task: task.clone(),
    }
}
