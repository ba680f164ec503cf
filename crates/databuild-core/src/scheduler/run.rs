//! The I/O shell of one graph run around its state machine ([`super::machine`]): it
//! claims, reads what the machine needs from the event log, appends the events the
//! machine decides (one transaction for what gathers in up to [`WRITE_WAIT`]), launches
//! and stops job runs through their executors, times retries, and renews nothing itself
//! (the lease keeper does).

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use databuild_bel::EventLog;
use databuild_proto::{JobGraphRunStatus, PartitionManifest, PartitionStatus, Task};
use tokio::sync::{mpsc, oneshot};

use super::{
    executor::{Executors, Leftover},
    machine::{JobRules, Machine, Msg, Policy},
    Begun, BuildOptions, ProgressFn, RunOutcome, Signals,
};
use crate::{events, graph::Graph, CoreError};

/// How long events that may wait ([`super::machine::Effects::may_wait`]) gather before
/// they are written: the job runs that start and end in that time share one transaction,
/// and a short job records its start, handle and end in it.
const WRITE_WAIT: Duration = Duration::from_millis(20);

mod delegation;
mod jobs;
pub(crate) mod versions;
mod write;

struct Run<'a> {
    graph: &'a Graph,
    bel: Arc<dyn EventLog>,
    opts: &'a BuildOptions,
    /// The run's decisions.
    m: Machine,
    polls: u32,
    tx: mpsc::UnboundedSender<Msg>,
    /// How to stop each running task's job run.
    cancels: HashMap<usize, oneshot::Sender<()>>,
    executors: Executors,
    /// What stopped the run after it began running jobs (the event log could not be
    /// written): its jobs are stopped and the error is returned once they are gone.
    failure: Option<CoreError>,
    /// Jobs of lost graph runs to adopt, by job key.
    orphans: HashMap<String, Leftover>,
    /// Whether the job log directory exists (made before the first job run starts).
    log_dir_made: bool,
    /// The write in flight, if any ([`write`]).
    writing: Option<write::Writing>,
}

/// Claims the outputs of the planned tasks `nodes` and runs them to the end; `requested`
/// are the distinct refs the run was asked for.
#[expect(clippy::too_many_arguments)] // the parts of one graph run, passed once
pub(super) async fn execute_run(
    graph: &Graph,
    bel: Arc<dyn EventLog>,
    begun: Begun,
    nodes: Vec<Task>,
    requested: Cow<'_, [String]>,
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
    let jobs = graph
        .jobs
        .iter()
        .map(|j| {
            let executor = executors.of(j);
            JobRules {
                label: j.label.clone(),
                max_concurrency: j.max_concurrency,
                retries: j.retries,
                retry_backoff: j.retry_backoff,
                executor: executor.name(),
                queues: executor.queues(),
                version: j.version.clone(),
                finds_unrecorded: executor.finds_unrecorded(),
            }
        })
        .collect();
    let policy = Policy {
        parallelism: opts.parallelism,
        fail_fast: opts.fail_fast,
        force: opts.force,
    };
    let planned = nodes.clone();
    let (m, up_to_date) = Machine::new(
        &run_id,
        &graph.label,
        jobs,
        policy,
        progress,
        nodes,
        &requested,
    )?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut run = Run {
        graph,
        bel: bel.clone(),
        opts,
        m,
        polls: 0,
        tx,
        cancels: HashMap::new(),
        executors,
        failure: None,
        orphans: HashMap::new(),
        log_dir_made: false,
        writing: None,
    };
    run.m.analyzed(&requested, planned, up_to_date);
    run.flush().await?;
    run.versions().await?;
    let all: Vec<usize> = (0..run.m.len()).collect();
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
    run.inputs_known().await?;
    run.take_orphans(orphans).await;

    // From here on jobs run: an error stops them and fails the run (see `stop_on`)
    // instead of returning while they still run.
    // Since when the pending events have been waiting for the next write.
    let mut waiting_since: Option<Instant> = None;
    // Whether the last write failed: the next is tried once something else happens.
    let mut failed_write = false;
    loop {
        run.m.start_ready();
        if let Err(e) = run.lineage().await {
            run.stop_on(e);
        }
        run.m.track_graph_status();
        run.m.out.stamp();
        // Events wait up to WRITE_WAIT for more, unless something needs them durable
        // first (`Effects::may_wait`); the job runs that may start early start now. A
        // restarted build finds such a job run by its environment (`executor::procs`)
        // even if none of its events were written.
        let hold = if run.m.out.may_wait() && !run.m.is_done() {
            for s in std::mem::take(&mut run.m.out.start) {
                run.launch(s);
            }
            let since = *waiting_since.get_or_insert_with(Instant::now);
            Some(since + WRITE_WAIT).filter(|until| Instant::now() < *until)
        } else {
            None
        };
        // One write at a time, off this thread: while it runs, job runs' messages are
        // taken and early job runs start; what gathers meanwhile is the next write.
        if hold.is_none() && run.writing.is_none() {
            waiting_since = None;
            if !failed_write {
                run.begin_write();
            }
            if run.m.is_done() && run.writing.is_none() {
                break;
            }
        }
        tokio::select! {
            result = run.write_ended(), if run.writing.is_some() => {
                if let Err(e) = run.written(result) {
                    failed_write = true;
                    run.stop_on(e);
                    run.stop_cancelled();
                }
                continue;
            }
            Some(msg) = rx.recv() => {
                run.on(msg);
                while let Ok(msg) = rx.try_recv() {
                    run.on(msg);
                }
            }
            _ = tokio::time::sleep_until(hold.unwrap_or_else(Instant::now).into()), if hold.is_some() => {}
            _ = tokio::time::sleep(delegation::POLL), if run.m.has_delegated() => {
                if let Err(e) = run.poll_delegated().await {
                    run.stop_on(e);
                }
            }
            reason = signals.recv() => run.m.cancel_all(reason.into()),
        }
        failed_write = false;
    }
    run.finish(requested).await
}

impl Run<'_> {
    /// Tells the machine which of the tasks' outside inputs are available (and their
    /// manifests): tasks missing one fail, the rest that wait for nothing are ready.
    async fn inputs_known(&mut self) -> Result<(), CoreError> {
        let outside = self.m.outside_inputs();
        let available: HashSet<String> = self
            .bel
            .partitions(&outside)
            .await?
            .into_iter()
            .filter(|r| r.status == PartitionStatus::PartitionAvailable)
            .map(|r| r.partition_ref)
            .collect();
        let manifests = self.manifests(available.iter()).await?;
        self.m.inputs_known(&available, manifests);
        Ok(())
    }

    /// The manifests of the latest events of `refs` that have one.
    async fn manifests(
        &self,
        refs: impl Iterator<Item = &String>,
    ) -> Result<HashMap<String, PartitionManifest>, CoreError> {
        let mut manifests = HashMap::new();
        for r in refs {
            if let Some(m) = self
                .bel
                .latest_partition_event(r)
                .await?
                .and_then(|e| e.manifest)
            {
                manifests.insert(r.clone(), m);
            }
        }
        Ok(manifests)
    }

    /// Completes the lineage of the job runs about to start with their QUERY inputs
    /// that are AVAILABLE in the log (written first, so that the partitions this run
    /// made available are among them).
    async fn lineage(&mut self) -> Result<(), CoreError> {
        for s in 0..self.m.out.start.len() {
            let task = self.m.out.start[s].task;
            let query = self.m.query_inputs(task);
            if query.is_empty() {
                continue;
            }
            self.flush_or_keep().await?;
            let available: Vec<String> = self
                .bel
                .partitions(&query)
                .await?
                .into_iter()
                .filter(|p| p.status == PartitionStatus::PartitionAvailable)
                .map(|p| p.partition_ref)
                .collect();
            let found = self.manifests(available.iter()).await?;
            self.m.query_inputs_found(task, &found);
        }
        Ok(())
    }

    /// Takes in a job run's message; a job run that ended can no longer be stopped.
    fn on(&mut self, msg: Msg) {
        if let Msg::Exited { task, .. } = &msg {
            self.cancels.remove(task);
        }
        self.m.on(msg);
    }

    /// Stops at once the job runs the machine cancelled, before their events are durable
    /// (the run stops because the log cannot be written).
    fn stop_cancelled(&mut self) {
        for task in std::mem::take(&mut self.m.out.cancel) {
            if let Some(c) = self.cancels.remove(&task) {
                let _ = c.send(());
            }
        }
    }

    async fn flush(&mut self) -> Result<(), CoreError> {
        if !self.m.out.events.is_empty() {
            self.bel.append(self.m.out.take_events()).await?;
        }
        Ok(())
    }

    /// Like [`Run::flush`], but events that could not be written stay pending, ahead of
    /// later ones, so that a later write (once there is room again) records them in order.
    async fn flush_or_keep(&mut self) -> Result<(), CoreError> {
        self.settle().await?;
        if self.m.out.events.is_empty() {
            return Ok(());
        }
        let batch = self.m.out.take_events();
        match self.bel.append(batch.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let later = std::mem::replace(&mut self.m.out.events, batch);
                self.m.out.events.extend(later);
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
        tracing::error!(run_id = %self.m.run_id(), error = %e, "stopping the graph run");
        self.m.cancel_all(format!("cancelled: {e}"));
        self.failure = Some(e);
    }

    async fn finish(mut self, requested: Cow<'_, [String]>) -> Result<RunOutcome, CoreError> {
        let mut outcome = self.m.finish(&requested);
        outcome.up_to_date = self.m.up_to_date(requested);
        let recorded = self.flush_or_keep().await;
        self.m.free_tasks();
        if let Some(cause) = self.failure.take() {
            return Err(CoreError::Stopped {
                run_id: outcome.run_id,
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
        Ok(outcome)
    }
}
