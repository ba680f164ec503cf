//! The messages of the job runs the machine started: output lines, a cluster engine's
//! acceptance, a local process's handle, the end (success, retry or failure), a retry due.

use std::{collections::HashMap, time::Duration};

use databuild_proto::{FailureCause, JobRunStatus};

use super::{stripped, Machine, Msg, State};
use crate::scheduler::{runner::ExecResult, Progress};

impl Machine {
    /// Takes in a message from a job run.
    pub fn on(&mut self, msg: Msg) {
        match msg {
            Msg::Lines {
                task,
                job_run_id,
                lines,
            } => {
                let e = self.tasks[task].job_event(
                    &self.run_id,
                    &job_run_id,
                    JobRunStatus::JobRunning,
                    None,
                    Some(lines),
                );
                self.out.events.push(e);
            }
            Msg::Submitted {
                task,
                job_run_id,
                submission,
            } => {
                let t = &self.tasks[task];
                if t.is_running(&job_run_id) {
                    let e = t.handle_event(
                        &self.run_id,
                        &job_run_id,
                        submission.handle(),
                        Some(vec![submission.log_line()]),
                    );
                    self.out.events.push(e);
                    let building = t.building(&self.run_id, &job_run_id, Some(&submission));
                    self.out.events.extend(building);
                    self.out.urgent = true;
                }
            }
            Msg::Started {
                task,
                job_run_id,
                handle,
            } => {
                let t = &self.tasks[task];
                if t.is_running(&job_run_id) && !self.out.add_handle(&job_run_id, &handle) {
                    let e = t.handle_event(&self.run_id, &job_run_id, handle, None);
                    self.out.events.push(e);
                }
            }
            Msg::Exited {
                task,
                job_run_id,
                result,
                digests,
            } => self.exited(task, job_run_id, result, digests),
            Msg::RetryDue { task } => {
                // A task taken out of backoff early (cancelled, failed upstream) was
                // already uncounted then.
                if self.tasks[task].state == State::Backoff {
                    self.in_backoff -= 1;
                    self.make_ready(task);
                }
            }
        }
    }

    fn exited(
        &mut self,
        i: usize,
        job_run_id: String,
        result: ExecResult,
        mut digests: HashMap<String, String>,
    ) {
        self.running -= 1;
        let job = self.tasks[i].job;
        self.running_per_job[job] -= 1;
        if !self.ready[job].is_empty() {
            self.queue_job(job);
        }
        let (started_at, start_time) = self.tasks[i]
            .started
            .take()
            .expect("running task has a start");
        let elapsed = started_at.elapsed();
        let label = self.tasks[i].label.clone();
        let outputs = self.tasks[i].outputs.clone();
        match result {
            ExecResult::Success => {
                let t = &mut self.tasks[i];
                digests.retain(|r, _| t.outputs.contains(r));
                let manifest = t.manifest(start_time, &self.jobs[job].version, digests);
                self.out.events.push(t.job_event(
                    &self.run_id,
                    &job_run_id,
                    JobRunStatus::JobSuccess,
                    None,
                    None,
                ));
                let available = t.available(&self.run_id, &job_run_id, &manifest);
                self.out.events.extend(available);
                for o in &outputs {
                    self.manifests.insert(o.clone(), stripped(&manifest));
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
                let rules = &self.jobs[job];
                let attempt = self.tasks[i].attempt;
                let will_retry = self.cancelled.is_none() && attempt <= rules.retries;
                self.out.events.push(self.tasks[i].job_event(
                    &self.run_id,
                    &job_run_id,
                    JobRunStatus::JobFailed,
                    None,
                    Some(vec![format!("job failed: {reason}")]),
                ));
                (self.progress)(Progress::JobFinished {
                    job_run_id: job_run_id.clone(),
                    label: label.clone(),
                    outputs,
                    ok: false,
                    reason: reason.clone(),
                    elapsed,
                    will_retry,
                });
                if will_retry {
                    let backoff = rules.retry_backoff * 2u32.saturating_pow(attempt - 1);
                    self.tasks[i].state = State::Backoff;
                    self.in_backoff += 1;
                    self.out
                        .retry
                        .push((i, backoff.min(Duration::from_secs(300))));
                } else {
                    let tries = if attempt > 1 {
                        format!(" after {attempt} attempts")
                    } else {
                        String::new()
                    };
                    let full = failure.reworded(format!(
                        "job `{label}` failed{tries}: {reason} (job run `{job_run_id}`)"
                    ));
                    self.fail_task(i, full, Some(job_run_id), None);
                    if self.policy.fail_fast && self.cancelled.is_none() {
                        self.cancel_all(format!(
                            "cancelled: --fail-fast after job `{label}` failed"
                        ));
                    }
                }
            }
        }
    }
}
