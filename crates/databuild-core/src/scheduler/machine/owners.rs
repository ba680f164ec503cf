//! Claims and delegation in the machine: what a claim's outcome does to a task, what the
//! partitions of a delegated task say of its owner, and adopting, failing or claiming
//! again accordingly.

use std::collections::HashMap;

use databuild_bel::ClaimGroup;
use databuild_proto::{FailureCause, PartitionManifest, PartitionStatus};

use super::{materialize_refs, strip, Machine, State};
use crate::scheduler::{runner::Failure, Progress};

/// A claim's outcome for one task, as the machine needs it.
#[derive(Debug, Clone)]
pub(crate) enum Claim {
    /// This run holds the outputs.
    Claimed,
    /// Graph run `.0` holds them.
    HeldBy(String),
    /// They are all AVAILABLE already (built by another run), with these manifests.
    Built(HashMap<String, PartitionManifest>),
}

/// What the statuses of a delegated task's outputs say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// All AVAILABLE: the owner built them.
    Built,
    /// Some still SCHEDULED or BUILDING: the owner is at work.
    Held,
    /// Output `.0` (an index) FAILED.
    Failed(usize),
    /// Nobody holds them any more.
    Released,
}

/// Classifies the latest statuses of a delegated task's outputs.
pub(crate) fn observe(statuses: &[Option<PartitionStatus>]) -> Observed {
    use PartitionStatus as P;
    if statuses.iter().all(|s| *s == Some(P::PartitionAvailable)) {
        return Observed::Built;
    }
    if statuses
        .iter()
        .any(|s| matches!(s, Some(P::PartitionScheduled | P::PartitionBuilding)))
    {
        return Observed::Held;
    }
    match statuses.iter().position(|s| *s == Some(P::PartitionFailed)) {
        Some(i) => Observed::Failed(i),
        None => Observed::Released,
    }
}

/// How the owner of a delegated task ended with it.
#[derive(Debug, Clone)]
pub(crate) enum OwnerOutcome {
    /// It built the outputs, with these manifests.
    Built(HashMap<String, PartitionManifest>),
    /// Output `partition` FAILED with `cause`, for `reason`.
    Failed {
        partition: String,
        cause: FailureCause,
        reason: String,
    },
    /// It let them go.
    Released,
}

impl Machine {
    /// The claim groups of `tasks`: each task's outputs.
    pub fn claim_groups(&self, tasks: &[usize]) -> Vec<ClaimGroup> {
        tasks
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
                    skip_if_available: !t.forced && !t.outdated,
                }
            })
            .collect()
    }

    /// Takes in the outcomes of claiming task groups.
    pub fn on_claims(&mut self, outcomes: Vec<(usize, Claim)>) {
        for (i, outcome) in outcomes {
            match outcome {
                Claim::Claimed => {
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
                Claim::HeldBy(owner_run_id) => {
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
                Claim::Built(manifests) => self.adopt(i, manifests),
            }
        }
    }

    /// The tasks waiting on another graph run.
    pub fn delegated_tasks(&self) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&i| self.tasks[i].state == State::Delegated)
            .collect()
    }

    /// Takes in how the owner of delegated task `i` ended with it: adopts what it built,
    /// fails what it failed, and claims again (an [`super::Effects::claim`]) what it let go
    /// or lost.
    pub fn on_owner(&mut self, i: usize, outcome: OwnerOutcome) {
        if self.tasks[i].state != State::Delegated {
            return;
        }
        match outcome {
            OwnerOutcome::Built(manifests) => self.adopt(i, manifests),
            // The owner died: nobody failed to build it, so claim it again.
            OwnerOutcome::Failed {
                cause: FailureCause::OwnerRunLost,
                ..
            }
            | OwnerOutcome::Released => self.out.claim.push(i),
            OwnerOutcome::Failed {
                partition, reason, ..
            } => {
                let owner = self.tasks[i].owner.clone().unwrap_or_default();
                self.fail_delegated(
                    i,
                    format!("graph run `{owner}` failed to build `{partition}`: {reason}"),
                );
            }
        }
    }

    /// The delegated tasks to claim again (from [`super::Effects::claim`]), leaving out
    /// those that ended since (a cancellation).
    pub fn claims_due(&mut self) -> Vec<usize> {
        let mut due = std::mem::take(&mut self.out.claim);
        due.retain(|&i| self.tasks[i].state == State::Delegated);
        due
    }

    /// Takes outputs that another run built as done: their manifests become this run's
    /// lineage and the task's dependents may start.
    fn adopt(&mut self, i: usize, manifests: HashMap<String, PartitionManifest>) {
        if self.tasks[i].state == State::Delegated {
            self.delegated -= 1;
        }
        self.manifests
            .extend(manifests.into_iter().map(|(r, m)| (r, strip(m))));
        self.tasks[i].state = State::Succeeded;
        self.unfinished -= 1;
        let outputs = self.tasks[i].outputs.clone();
        (self.progress)(Progress::DelegationEnded {
            refs: outputs.clone(),
            owner_run_id: self.tasks[i].owner.clone().unwrap_or_default(),
            ok: true,
            reason: String::new(),
        });
        self.outcome.delegated.extend(outputs);
        self.release_dependents(i);
    }

    /// Ends a delegated task whose owner failed; this run's dependents of it fail too.
    fn fail_delegated(&mut self, i: usize, reason: String) {
        self.tasks[i].state = State::Failed;
        self.delegated -= 1;
        self.unfinished -= 1;
        let outputs = self.tasks[i].outputs.clone();
        self.outcome
            .failed
            .extend(outputs.iter().map(|o| (o.clone(), reason.clone())));
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
                    format!(
                        "upstream partition `{first}` failed (job `{label}`, built by another graph run)"
                    ),
                ),
                None,
                Some(first.clone()),
            );
        }
    }
}
