//! Job runs: starting one through its executor once the events announcing it are
//! durable, the messages it sends while it runs (output lines, a cluster submission, a
//! local process handle), its end (retries, failure propagation), and adopting the jobs
//! a lost graph run left.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use databuild_bel::Event;
use databuild_proto::{FailureCause, JobLabel, JobRunStatus, PartitionStatus};
use tokio::sync::oneshot;

use super::{materialize_refs, strip, Msg, Run, State};
use crate::{
    events,
    scheduler::{
        executor::{self, Leftover, Report, Submission},
        runner::{ExecResult, ExecSpec},
        Progress,
    },
    CoreError,
};

impl Run<'_> {
    pub(super) async fn start(&mut self, i: usize) -> Result<(), CoreError> {
        let inputs = self.available_inputs(i).await?;
        let job = &self.graph.jobs[self.tasks[i].job];
        let run_id = self.run_id.clone();
        let t = &mut self.tasks[i];
        t.attempt += 1;
        t.job_run_id = databuild_bel::new_id();
        t.state = State::Running;
        t.started = Some((Instant::now(), SystemTime::now()));
        t.inputs = inputs;
        self.pending.push(t.job_event(
            &run_id,
            &t.job_run_id,
            JobRunStatus::JobScheduled,
            Some(t.config.clone()),
            None,
        ));
        self.pending.push(t.job_event(
            &run_id,
            &t.job_run_id,
            JobRunStatus::JobRunning,
            None,
            None,
        ));
        // On a cluster, the outputs are BUILDING once the engine accepted the job (the
        // events then record its id).
        let executor = self.executors.of(job);
        if !executor.queues() {
            for o in &t.outputs {
                let mut e = events::partition(o, PartitionStatus::PartitionBuilding, &run_id);
                e.job_run_id = t.job_run_id.clone();
                e.producing_job = Some(JobLabel::new(t.label.clone()));
                self.pending.push(Event::Partition(e));
            }
        }
        let config_json = databuild_proto::to_json(&t.config);
        let outputs_json = serde_json::to_string(&t.outputs).expect("strings serialize");
        let mut env: Vec<(String, String)> = job
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend(t.config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env.push(("DATABUILD_JOB_RUN_ID".into(), t.job_run_id.clone()));
        env.push(("DATABUILD_GRAPH_RUN_ID".into(), run_id));
        env.push(("DATABUILD_OUTPUTS".into(), outputs_json));
        env.push(("DATABUILD_JOB_CONFIG".into(), config_json.clone()));
        let mut argv = job.entrypoint.clone();
        argv.push("exec".into());
        argv.extend(t.config.args.iter().cloned());
        let spec = ExecSpec {
            label: t.label.clone(),
            job_run_id: t.job_run_id.clone(),
            argv,
            cwd: self.graph.dir.clone(),
            env,
            stdin: config_json,
            timeout: job.timeout,
            kill_grace: self.opts.kill_grace,
            log_path: self.opts.log_dir.join(format!("{}.log", t.job_run_id)),
            log_cap_bytes: self.opts.log_cap_bytes,
            max_bel_lines: self.opts.max_bel_log_lines,
            kill_leftovers: job.kill_leftovers,
            outputs: t.outputs.clone(),
            config: t.config.clone(),
            graph_run_id: self.run_id.clone(),
        };
        let (cancel_tx, cancel_rx) = oneshot::channel();
        t.cancel = Some(cancel_tx);
        let tx = self.tx.clone();
        let job_run_id = t.job_run_id.clone();
        (self.progress)(Progress::JobStarted {
            job_run_id: job_run_id.clone(),
            label: t.label.clone(),
            outputs: t.outputs.clone(),
            attempt: t.attempt,
        });
        self.running += 1;
        self.running_per_job[t.job] += 1;
        self.outcome.job_runs += 1;
        let adopt = self
            .orphans
            .remove(&t.key)
            .filter(|o| o.executor == executor.name());
        let job_def = job.clone();
        let launched_id = job_run_id.clone();
        self.launches.get_mut().expect("launches").push((
            i,
            launched_id,
            Box::pin(async move {
                let report_tx = tx.clone();
                let report_id = job_run_id.clone();
                let report = move |r: Report| {
                    let _ = report_tx.send(match r {
                        Report::Lines(lines) => Msg::Lines {
                            task: i,
                            job_run_id: report_id.clone(),
                            lines,
                        },
                        Report::Submitted(submission) => Msg::Submitted {
                            task: i,
                            job_run_id: report_id.clone(),
                            submission,
                        },
                        Report::Started(handle) => Msg::Started {
                            task: i,
                            job_run_id: report_id.clone(),
                            handle,
                        },
                    });
                };
                let result = executor::drive(
                    executor.as_ref(),
                    &job_def,
                    adopt,
                    spec,
                    cancel_rx,
                    Arc::new(report),
                )
                .await;
                let _ = tx.send(Msg::Exited {
                    task: i,
                    job_run_id,
                    result,
                });
            }),
        ));
        Ok(())
    }

    pub(super) async fn handle(&mut self, msg: Msg) -> Result<(), CoreError> {
        match msg {
            Msg::Lines {
                task,
                job_run_id,
                lines,
            } => {
                self.pending.push(self.tasks[task].job_event(
                    &self.run_id,
                    &job_run_id,
                    JobRunStatus::JobRunning,
                    None,
                    Some(lines),
                ));
            }
            Msg::Submitted {
                task,
                job_run_id,
                submission,
            } => self.submitted(task, &job_run_id, &submission),
            Msg::Started {
                task,
                job_run_id,
                handle,
            } => {
                let t = &self.tasks[task];
                if t.state == State::Running && t.job_run_id == job_run_id {
                    let mut e = t.job_event(
                        &self.run_id,
                        &job_run_id,
                        JobRunStatus::JobRunning,
                        None,
                        None,
                    );
                    if let Event::Run(r) = &mut e {
                        if let Some(j) = &mut r.job_event {
                            j.handle = Some(handle);
                        }
                    }
                    self.pending.push(e);
                }
            }
            Msg::Exited {
                task,
                job_run_id,
                result,
            } => self.exited(task, job_run_id, result).await?,
            Msg::RetryDue { task } => {
                // A task taken out of backoff early (cancelled, failed upstream) was
                // already uncounted then.
                if self.tasks[task].state == State::Backoff {
                    self.in_backoff -= 1;
                    self.make_ready(task);
                }
            }
        }
        Ok(())
    }

    /// A cluster engine accepted task `i`'s job run: its outputs are BUILDING, and the
    /// events record the engine's job id (in the job event's handle).
    pub(super) fn submitted(&mut self, i: usize, job_run_id: &str, submission: &Submission) {
        let t = &self.tasks[i];
        if t.state != State::Running || t.job_run_id != job_run_id {
            return;
        }
        let mut e = t.job_event(
            &self.run_id,
            job_run_id,
            JobRunStatus::JobRunning,
            None,
            Some(vec![submission.log_line()]),
        );
        if let Event::Run(r) = &mut e {
            if let Some(j) = &mut r.job_event {
                j.handle = Some(submission.handle());
            }
        }
        self.pending.push(e);
        for o in &t.outputs {
            let mut e = events::partition(o, PartitionStatus::PartitionBuilding, &self.run_id);
            e.job_run_id = job_run_id.to_string();
            e.producing_job = Some(JobLabel::new(t.label.clone()));
            e.storage_metadata = submission.metadata();
            self.pending.push(Event::Partition(e));
        }
    }

    /// Keeps the jobs of lost runs that this run can adopt — same task, same
    /// configuration, still on the same executor, claimed by this run and not yet
    /// started — and cancels the others.
    pub(super) async fn take_orphans(&mut self, orphans: Vec<Leftover>) {
        if orphans.is_empty() {
            return;
        }
        let by_key: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.as_str(), i))
            .collect();
        let mut adopt = Vec::new();
        let mut cancel = Vec::new();
        for o in orphans {
            let fits = by_key.get(o.job_key.as_str()).is_some_and(|&i| {
                let t = &self.tasks[i];
                matches!(t.state, State::Waiting | State::Ready)
                    && !t.forced
                    && o.config.as_ref() == Some(&t.config)
                    && self.executors.of(&self.graph.jobs[t.job]).name() == o.executor
            });
            if fits && !self.orphans.contains_key(&o.job_key) {
                adopt.push(o);
            } else {
                cancel.push(o);
            }
        }
        self.executors.cancel_leftovers(cancel).await;
        for o in adopt {
            tracing::info!(executor = o.executor, job = %o.id, label = %o.label, lost_run = %o.run_id, "adopting a job of a lost graph run");
            self.orphans.insert(o.job_key.clone(), o);
        }
    }

    pub(super) async fn exited(
        &mut self,
        i: usize,
        job_run_id: String,
        result: ExecResult,
    ) -> Result<(), CoreError> {
        self.running -= 1;
        let job = self.tasks[i].job;
        self.running_per_job[job] -= 1;
        if !self.ready[job].is_empty() && !self.job_queued[job] {
            self.job_queued[job] = true;
            self.ready_jobs.push_back(job);
        }
        let (started_at, start_time) = self.tasks[i]
            .started
            .take()
            .expect("running task has a start");
        let elapsed = started_at.elapsed();
        self.tasks[i].cancel = None;
        let label = self.tasks[i].label.clone();
        let outputs = self.tasks[i].outputs.clone();
        match result {
            ExecResult::Success => {
                let manifest = self.manifest(i, start_time);
                self.pending.push(self.tasks[i].job_event(
                    &self.run_id,
                    &job_run_id,
                    JobRunStatus::JobSuccess,
                    None,
                    None,
                ));
                for o in &outputs {
                    let mut e =
                        events::partition(o, PartitionStatus::PartitionAvailable, &self.run_id);
                    e.job_run_id = job_run_id.clone();
                    e.producing_job = Some(JobLabel::new(label.clone()));
                    e.upstream_deps = materialize_refs(&self.tasks[i].config);
                    e.manifest = Some(manifest.clone());
                    self.pending.push(Event::Partition(e));
                    self.manifests.insert(o.clone(), strip(manifest.clone()));
                }
                self.outcome.built.extend(outputs.iter().cloned());
                self.outcome.manifests.push(manifest);
                self.tasks[i].state = State::Succeeded;
                self.unfinished -= 1;
                (self.progress)(Progress::JobFinished {
                    job_run_id,
                    label,
                    outputs,
                    ok: true,
                    reason: String::new(),
                    elapsed,
                    will_retry: false,
                });
                self.release_dependents(i);
            }
            ExecResult::Failed(failure) => {
                // A job stopped because the run was cancelled says why the run was.
                let failure = match &self.cancelled {
                    Some(c) if failure.cause == FailureCause::Cancelled => {
                        failure.reworded(c.clone())
                    }
                    _ => failure,
                };
                let reason = failure.reason.clone();
                let retries = self.graph.jobs[job].retries;
                let will_retry = self.cancelled.is_none() && self.tasks[i].attempt <= retries;
                self.pending.push(self.tasks[i].job_event(
                    &self.run_id,
                    &job_run_id,
                    JobRunStatus::JobFailed,
                    None,
                    Some(vec![format!("job failed: {reason}")]),
                ));
                (self.progress)(Progress::JobFinished {
                    job_run_id: job_run_id.clone(),
                    label: label.clone(),
                    outputs: outputs.clone(),
                    ok: false,
                    reason: reason.clone(),
                    elapsed,
                    will_retry,
                });
                if will_retry {
                    let backoff = self.graph.jobs[job].retry_backoff
                        * 2u32.saturating_pow(self.tasks[i].attempt - 1);
                    self.tasks[i].state = State::Backoff;
                    self.in_backoff += 1;
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(backoff.min(Duration::from_secs(300))).await;
                        let _ = tx.send(Msg::RetryDue { task: i });
                    });
                } else {
                    let attempts = self.tasks[i].attempt;
                    let tries = if attempts > 1 {
                        format!(" after {attempts} attempts")
                    } else {
                        String::new()
                    };
                    let full = failure.reworded(format!(
                        "job `{label}` failed{tries}: {reason} (job run `{job_run_id}`)"
                    ));
                    self.fail_task(i, full, Some(job_run_id), None);
                    if self.opts.fail_fast && self.cancelled.is_none() {
                        self.cancel_all(format!(
                            "cancelled: --fail-fast after job `{label}` failed"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
