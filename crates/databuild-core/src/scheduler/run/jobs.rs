//! Job runs: launching one through its executor once the events announcing it are
//! durable (taking over a lost run's job when it fits), and turning what it reports into
//! messages to the machine.

use std::{collections::HashMap, sync::Arc};

use tokio::sync::oneshot;

use super::Run;
use crate::{
    protocol,
    scheduler::{
        executor::{self, Leftover, Report},
        machine::{Msg, Start},
        runner::ExecSpec,
    },
};

impl Run<'_> {
    /// Launches the job run `start` through its job's executor.
    pub(super) fn launch(&mut self, start: Start) {
        let Start {
            task: i,
            job_run_id,
        } = start;
        let t = self.m.task(i);
        let job = &self.graph.jobs[t.job];
        let run_id = self.m.run_id().to_string();
        let call = protocol::exec_call(job, &t.config, &t.outputs, &job_run_id, &run_id);
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
            let _ = tx.send(Msg::Exited {
                task: i,
                job_run_id,
                result,
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
