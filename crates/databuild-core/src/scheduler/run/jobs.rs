//! Job runs: launching one through its executor (taking over a lost run's job when it
//! fits), and turning what it reports into messages to the machine.

use std::{collections::HashMap, sync::Arc};

use databuild_proto::FailureCause;
use tokio::sync::oneshot;

use super::Run;
use crate::{
    protocol,
    scheduler::{
        digests,
        executor::{self, Leftover, Report},
        machine::{Msg, Start},
        runner::{ExecResult, ExecSpec},
    },
};

impl Run<'_> {
    /// Launches the job run `start` through its job's executor.
    pub(super) fn launch(&mut self, start: Start) {
        let Start {
            task: i,
            job_run_id,
            ..
        } = start;
        let t = self.m.task(i);
        let job = &self.graph.jobs[t.job];
        let run_id = self.m.run_id().to_string();
        let mut call = protocol::exec_call(job, &t.config, &t.outputs, &job_run_id, &run_id);
        let digests_file = self.opts.log_dir.join(format!("{job_run_id}.digests.json"));
        if !self.log_dir_made {
            // Where a job may write its digests (logs are created when output comes).
            self.log_dir_made = std::fs::create_dir_all(&self.opts.log_dir).is_ok();
        }
        call.env.push((
            crate::scheduler::DIGESTS_VAR.into(),
            digests_file.to_string_lossy().into_owned(),
        ));
        let graph_dir = self.graph.dir.clone();
        let outputs = t.outputs.clone();
        let spec = ExecSpec {
            label: t.label.clone(),
            job_run_id: job_run_id.clone(),
            argv: call.argv,
            cwd: self.graph.dir.clone(),
            env: call.env,
            stdin: call.stdin,
            timeout: job.timeout,
            kill_grace: self.opts.kill_grace,
            log_path: crate::logs::path(&self.opts.log_dir, &job_run_id),
            log_cap_bytes: self.opts.log_cap_bytes,
            max_bel_lines: self.opts.max_bel_log_lines,
            kill_leftovers: job.kill_leftovers,
            outputs: t.outputs.clone(),
            config: t.config.clone(),
            graph_run_id: run_id,
        };
        let executor = self.executors.of(job);
        let adopt = self
            .orphans
            .remove(&t.key)
            .filter(|o| o.executor == executor.name());
        let job_def = job.clone();
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.cancels.insert(i, cancel_tx);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let report_tx = tx.clone();
            let report_id = job_run_id.clone();
            let report = move |r: Report| {
                let job_run_id = report_id.clone();
                let _ = report_tx.send(match r {
                    Report::Lines(lines) => Msg::Lines {
                        task: i,
                        job_run_id,
                        lines,
                    },
                    Report::Submitted(submission) => Msg::Submitted {
                        task: i,
                        job_run_id,
                        submission,
                    },
                    Report::Started(handle) => Msg::Started {
                        task: i,
                        job_run_id,
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
            let (result, digests) = match result {
                ExecResult::Success => {
                    match digests::collect(&job_def, &graph_dir, &outputs, &digests_file) {
                        Ok(digests) => (ExecResult::Success, digests),
                        Err(reason) => (
                            ExecResult::failed(FailureCause::JobFailed, reason),
                            HashMap::new(),
                        ),
                    }
                }
                failed => {
                    let _ = std::fs::remove_file(&digests_file);
                    (failed, HashMap::new())
                }
            };
            let _ = tx.send(Msg::Exited {
                task: i,
                job_run_id,
                result,
                digests,
            });
        });
    }

    /// Keeps the jobs of lost runs that this run can adopt (see
    /// [`crate::scheduler::machine::Machine::adoptable`]) and cancels the others.
    pub(super) async fn take_orphans(&mut self, orphans: Vec<Leftover>) {
        if orphans.is_empty() {
            return;
        }
        let mut adopt: HashMap<String, Leftover> = HashMap::new();
        let mut cancel = Vec::new();
        for o in orphans {
            let fits = self.m.adoptable(&o.job_key, o.config.as_ref(), o.executor);
            if fits && !self.orphans.contains_key(&o.job_key) && !adopt.contains_key(&o.job_key) {
                adopt.insert(o.job_key.clone(), o);
            } else {
                cancel.push(o);
            }
        }
        self.executors.cancel_leftovers(cancel).await;
        for (key, o) in adopt {
            tracing::info!(executor = o.executor, job = %o.id, label = %o.label, lost_run = %o.run_id, "adopting a job of a lost graph run");
            self.orphans.insert(key, o);
        }
    }
}
