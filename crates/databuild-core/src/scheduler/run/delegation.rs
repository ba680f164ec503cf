//! Claims and delegation, the I/O side: claiming task groups in one transaction and
//! polling the partitions of delegated tasks; the machine decides what each answer means
//! (`machine/owners.rs`).

use std::{collections::HashMap, time::Duration};

use databuild_bel::{ClaimOutcome, PartitionRow};

use super::Run;
use crate::{
    scheduler::machine::{observe, Claim, Observed, OwnerOutcome},
    CoreError,
};

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
        let groups = self.m.claim_groups(&tasks);
        let outcomes = self
            .bel
            .claim(self.m.run_id(), &self.opts.client_id, groups)
            .await?;
        let mut claims = Vec::with_capacity(tasks.len());
        for (i, outcome) in tasks.into_iter().zip(outcomes) {
            let claim = match outcome {
                ClaimOutcome::Claimed => Claim::Claimed,
                ClaimOutcome::HeldBy { owner_run_id, .. } => Claim::HeldBy(owner_run_id),
                ClaimOutcome::Available => {
                    Claim::Built(self.manifests(self.m.task(i).outputs.iter()).await?)
                }
            };
            claims.push((i, claim));
        }
        self.m.on_claims(claims);
        Ok(())
    }

    /// Checks on every delegated task: tells the machine what its owner built, failed or
    /// let go, and claims again what the machine asks to.
    pub(super) async fn poll_delegated(&mut self) -> Result<(), CoreError> {
        // What this run wrote is in the log before it reads and claims.
        self.settle().await?;
        self.polls += 1;
        let orphans = if self.polls.is_multiple_of(RECLAIM_EVERY) {
            crate::scheduler::reclaim_lost(self.graph, self.bel.as_ref(), &self.executors).await?
        } else {
            Vec::new()
        };
        let waiting = self.m.delegated_tasks();
        let refs: Vec<String> = waiting
            .iter()
            .flat_map(|&i| self.m.task(i).outputs.iter().cloned())
            .collect();
        let rows: HashMap<String, PartitionRow> = self
            .bel
            .partitions(&refs)
            .await?
            .into_iter()
            .map(|r| (r.partition_ref.clone(), r))
            .collect();
        for i in waiting {
            let outputs = &self.m.task(i).outputs;
            let statuses: Vec<_> = outputs
                .iter()
                .map(|o| rows.get(o).map(|row| row.status))
                .collect();
            let outcome = match observe(&statuses) {
                Observed::Held => continue,
                Observed::Built => OwnerOutcome::Built(self.manifests(outputs.iter()).await?),
                Observed::Released => OwnerOutcome::Released,
                Observed::Failed(k) => {
                    let partition = outputs[k].clone();
                    let latest = self.bel.latest_partition_event(&partition).await?;
                    OwnerOutcome::Failed {
                        partition,
                        cause: latest
                            .as_ref()
                            .map(|e| e.failure_cause())
                            .unwrap_or_default(),
                        reason: latest.map(|e| e.failure_reason).unwrap_or_default(),
                    }
                }
            };
            self.m.on_owner(i, outcome);
        }
        let again = self.m.claims_due();
        self.claim(again).await?;
        // What the lost owner left on cluster engines: adopted for what this run now builds,
        // else cancelled.
        self.take_orphans(orphans).await;
        Ok(())
    }
}
