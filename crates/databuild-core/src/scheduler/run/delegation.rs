//! Claims and delegation: a task's outputs are claimed in the event log as one group; a
//! group held by another live graph run is delegated to it, and this run waits for that
//! run's outcome (taking the claim over if the owner is lost).

use std::{collections::HashMap, time::Duration};

use databuild_bel::{ClaimGroup, ClaimOutcome, PartitionRow};
use databuild_proto::{FailureCause, PartitionStatus};

use super::{materialize_refs, strip, Failure, Run, State};
use crate::{scheduler::Progress, CoreError};

/// How often delegated partitions are checked.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// Every this many polls, runs whose owner died are reclaimed.
const RECLAIM_EVERY: u32 = 10;

impl Run<'_> {
    /// Claims the outputs of `tasks`, one group per task, in one transaction.
    pub(super) async fn claim(&mut self, tasks: Vec<usize>) -> Result<(), CoreError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let groups = tasks
            .iter()
            .map(|&i| {
                let t = &self.tasks[i];
                ClaimGroup {
                    refs: t.outputs.clone(),
                    producing_job: t.label.clone(),
                    upstream_deps: materialize_refs(&t.config)
                        .into_iter()
                        .map(|r| r.str)
                        .collect(),
                    skip_if_available: !t.forced,
                }
            })
            .collect();
        let outcomes = self
            .bel
            .claim(&self.run_id, &self.opts.client_id, groups)
            .await?;
        for (i, outcome) in tasks.into_iter().zip(outcomes) {
            match outcome {
                ClaimOutcome::Claimed => {
                    if self.tasks[i].state == State::Delegated {
                        self.tasks[i].state = State::Waiting;
                        self.tasks[i].owner = None;
                        self.delegated -= 1;
                        if let Some(failure) = self.tasks[i].upstream_failed.take() {
                            self.fail_task(i, failure, None, None);
                        } else if self.tasks[i].deps_left == 0 {
                            self.make_ready(i);
                        }
                    }
                }
                ClaimOutcome::HeldBy { owner_run_id, .. } => {
                    if self.tasks[i].state != State::Delegated {
                        self.tasks[i].state = State::Delegated;
                        self.delegated += 1;
                        (self.progress)(Progress::Delegated {
                            refs: self.tasks[i].outputs.clone(),
                            owner_run_id: owner_run_id.clone(),
                        });
                    }
                    self.tasks[i].owner = Some(owner_run_id);
                }
                ClaimOutcome::Available => self.adopt(i).await?,
            }
        }
        Ok(())
    }

    /// Takes outputs that another run built as done: their manifests become this run's
    /// lineage and the task's dependents may start.
    async fn adopt(&mut self, i: usize) -> Result<(), CoreError> {
        if self.tasks[i].state == State::Delegated {
            self.delegated -= 1;
        }
        let outputs = self.tasks[i].outputs.clone();
        for o in &outputs {
            if let Some(m) = self
                .bel
                .latest_partition_event(o)
                .await?
                .and_then(|e| e.manifest)
            {
                self.manifests.insert(o.clone(), strip(m));
            }
        }
        self.tasks[i].state = State::Succeeded;
        self.unfinished -= 1;
        (self.progress)(Progress::DelegationEnded {
            refs: outputs.clone(),
            owner_run_id: self.tasks[i].owner.clone().unwrap_or_default(),
            ok: true,
            reason: String::new(),
        });
        self.outcome.delegated.extend(outputs);
        self.release_dependents(i);
        Ok(())
    }

    /// Checks on every delegated task: adopts what its owner built, fails what its owner
    /// failed, and claims again what its owner let go (or lost).
    pub(super) async fn poll_delegated(&mut self) -> Result<(), CoreError> {
        self.polls += 1;
        let orphans = if self.polls.is_multiple_of(RECLAIM_EVERY) {
            crate::scheduler::reclaim_lost(self.graph, self.bel.as_ref(), &self.executors).await?
        } else {
            Vec::new()
        };
        let waiting: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].state == State::Delegated)
            .collect();
        let refs: Vec<String> = waiting
            .iter()
            .flat_map(|&i| self.tasks[i].outputs.iter().cloned())
            .collect();
        let rows: HashMap<String, PartitionRow> = self
            .bel
            .partitions(&refs)
            .await?
            .into_iter()
            .map(|r| (r.partition_ref.clone(), r))
            .collect();
        let status = |r: &str| rows.get(r).map(|row| row.status);
        let mut again = Vec::new();
        for i in waiting {
            let outputs = self.tasks[i].outputs.clone();
            if outputs
                .iter()
                .all(|o| status(o) == Some(PartitionStatus::PartitionAvailable))
            {
                self.adopt(i).await?;
                continue;
            }
            let held = outputs.iter().any(|o| {
                matches!(
                    status(o),
                    Some(PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding)
                )
            });
            if held {
                continue;
            }
            let failed = outputs
                .iter()
                .find(|o| status(o) == Some(PartitionStatus::PartitionFailed));
            match failed {
                Some(r) => {
                    let latest = self.bel.latest_partition_event(r).await?;
                    let cause = latest.as_ref().map(|e| e.failure_cause());
                    let reason = latest.map(|e| e.failure_reason).unwrap_or_default();
                    // The owner died: nobody failed to build it, so claim it again.
                    if cause == Some(FailureCause::OwnerRunLost) {
                        again.push(i);
                    } else {
                        let owner = self.tasks[i].owner.clone().unwrap_or_default();
                        self.fail_delegated(
                            i,
                            format!("graph run `{owner}` failed to build `{r}`: {reason}"),
                        );
                    }
                }
                None => again.push(i),
            }
        }
        self.claim(again).await?;
        // What the lost owner left on cluster engines: adopted for what this run now builds,
        // else cancelled.
        self.take_orphans(orphans).await;
        Ok(())
    }

    /// Ends a delegated task whose owner failed; this run's dependents of it fail too.
    fn fail_delegated(&mut self, i: usize, reason: String) {
        self.tasks[i].state = State::Failed;
        self.delegated -= 1;
        self.unfinished -= 1;
        let outputs = self.tasks[i].outputs.clone();
        for o in &outputs {
            self.outcome.failed.push((o.clone(), reason.clone()));
        }
        (self.progress)(Progress::DelegationEnded {
            refs: outputs.clone(),
            owner_run_id: self.tasks[i].owner.clone().unwrap_or_default(),
            ok: false,
            reason,
        });
        let first = outputs.first().cloned().unwrap_or_default();
        let label = self.tasks[i].label.clone();
        for d in self.tasks[i].dependents.clone() {
            self.fail_task(
                d,
                Failure::new(
                    FailureCause::UpstreamFailed,
                    format!("upstream partition `{first}` failed (job `{label}`, built by another graph run)"),
                ),
                None,
                Some(first.clone()),
            );
        }
    }
}
