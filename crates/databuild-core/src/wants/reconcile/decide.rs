//! What a pass decides for the wants the reconciler holds: expiry, satisfaction (a
//! satisfied want whose partition is AVAILABLE is let go), an SLA miss, failure for good
//! after its retries, or a build — and the events and notifications that follow.

use std::collections::HashSet;

use databuild_bel::{Event, EventLog, WantRow};
use databuild_proto::{FailureCause, PartitionStatus, WantStatus};

use super::{event, rfc3339, root_failure, NotificationKind, PassReport, Reconciler};
use crate::CoreError;

/// What one pass has decided so far.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) report: PassReport,
    /// Partitions to build, in the order decided.
    pub(super) to_build: Vec<String>,
    pub(super) queued: HashSet<String>,
}

/// Whether a partition with this status is being built (or was asked for and will be).
pub(super) fn in_flight(status: PartitionStatus) -> bool {
    matches!(
        status,
        PartitionStatus::PartitionRequested
            | PartitionStatus::PartitionScheduled
            | PartitionStatus::PartitionBuilding
            | PartitionStatus::PartitionDelegated
    )
}

impl Reconciler {
    /// Decides what held wants `ids` need: expiry, satisfaction (a satisfied want whose
    /// partition is AVAILABLE is let go), an SLA miss, failure for good, or a build (added
    /// to `plan`). Records the events and sends the notifications.
    pub(super) async fn decide(
        &mut self,
        ids: Vec<String>,
        now: i64,
        plan: &mut Plan,
    ) -> Result<(), CoreError> {
        let ids: Vec<String> = ids
            .into_iter()
            .filter(|id| self.wants.contains_key(id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let report = &mut plan.report;
        report.checked += ids.len();
        let refs: Vec<String> = ids
            .iter()
            .map(|id| self.wants[id].row.partition_ref.clone())
            .collect();
        let statuses = self.bel.statuses(&refs).await?;
        let mut events = Vec::new();
        let mut notes = Vec::new();
        let mut failing: Vec<WantRow> = Vec::new();
        let mut let_go: Vec<String> = Vec::new();
        for ((id, r), status) in ids.iter().zip(&refs).zip(statuses) {
            self.dirty.remove(id);
            let t = self.wants.get_mut(id).expect("filtered above");
            let row = &t.row;
            if row.expires_micros.is_some_and(|e| e <= now) {
                let mut e = event(id, r, WantStatus::WantExpired);
                e.reason = format!(
                    "its TTL ended at {}",
                    rfc3339(row.expires_micros.unwrap_or(0))
                );
                events.push(Event::Want(e));
                report.expired += 1;
                continue;
            }
            if status == Some(PartitionStatus::PartitionAvailable) && !self.outdated.contains(r) {
                if row.status == WantStatus::WantActive && !self.opts.dry_run {
                    let mut e = event(id, r, WantStatus::WantSatisfied);
                    e.late = row.sla_micros.is_some_and(|s| s < now);
                    if e.late {
                        notes.push((NotificationKind::SatisfiedLate, row.clone()));
                    }
                    events.push(Event::Want(e));
                    report.satisfied += 1;
                } else {
                    if row.status == WantStatus::WantActive {
                        report.satisfied += 1;
                    }
                    let_go.push(id.clone());
                }
                continue;
            }
            // Held until it is satisfied: its deadlines are timers.
            if let Some(e) = row.expires_micros {
                self.timers.insert((e, id.clone()));
            }
            if row.status == WantStatus::WantActive && !row.sla_missed {
                match row.sla_micros {
                    Some(s) if s <= now => {
                        let mut e = event(id, r, WantStatus::WantSlaMissed);
                        e.reason = format!("not AVAILABLE by its deadline {}", rfc3339(s));
                        events.push(Event::Want(e));
                        notes.push((NotificationKind::SlaMissed, row.clone()));
                        report.sla_missed += 1;
                    }
                    Some(s) => {
                        self.timers.insert((s, id.clone()));
                    }
                    None => {}
                }
            }
            if status.is_some_and(in_flight) || self.building.contains(r) || t.waiting_on.is_some()
            {
                continue;
            }
            if status == Some(PartitionStatus::PartitionFailed) && t.attempts == 0 {
                // A reconciler that starts again (or `reconcile --once` from cron) counts
                // the failed builds since the want was created or last satisfied.
                let since = match row.status {
                    WantStatus::WantSatisfied => row.updated_micros,
                    _ => row.created_micros,
                };
                let failed = failed_builds_since(self.bel.as_ref(), r, since).await?;
                let t = self.wants.get_mut(id).expect("filtered above");
                t.attempts = failed;
                if failed > self.opts.retries {
                    let mut e = event(id, r, WantStatus::WantFailed);
                    e.reason = format!("its build failed {failed} times");
                    let (cause, _) = root_failure(self.bel.as_ref(), r).await?;
                    e.failure_cause = cause as i32;
                    events.push(Event::Want(e));
                    failing.push(t.row.clone());
                    continue;
                }
            }
            let t = self.wants.get_mut(id).expect("filtered above");
            if let Some(at) = t.retry_at.filter(|at| *at > now) {
                self.timers.insert((at, id.clone()));
                continue;
            }
            if plan.queued.insert(r.clone()) {
                plan.to_build.push(r.clone());
            }
        }
        for id in let_go {
            self.untrack(&id);
        }
        let recorded = self.record(events).await?;
        for e in &recorded {
            if let Event::Want(w) = e {
                match WantStatus::try_from(w.status) {
                    // Satisfied: its partition is AVAILABLE, so it is let go.
                    Ok(WantStatus::WantExpired | WantStatus::WantSatisfied) => {
                        self.untrack(&w.want_id)
                    }
                    Ok(WantStatus::WantFailed) => {
                        self.failed += 1;
                        plan.report.failed += 1;
                        self.untrack(&w.want_id);
                    }
                    Ok(WantStatus::WantSlaMissed) => {
                        if let Some(t) = self.wants.get_mut(&w.want_id) {
                            t.row.sla_missed = true;
                        }
                    }
                    _ => {}
                }
            }
        }
        let sent: HashSet<(String, i32)> = recorded
            .iter()
            .filter_map(|e| match e {
                Event::Want(w) => Some((w.want_id.clone(), w.status)),
                _ => None,
            })
            .collect();
        for row in failing {
            if sent.contains(&(row.want_id.clone(), WantStatus::WantFailed as i32)) {
                self.notify(NotificationKind::WantFailed, &row).await;
            }
        }
        for (kind, row) in notes {
            let status = match kind {
                NotificationKind::SlaMissed => WantStatus::WantSlaMissed,
                _ => WantStatus::WantSatisfied,
            };
            // Only the reconciler whose event was recorded notifies.
            if sent.contains(&(row.want_id.clone(), status as i32)) {
                self.notify(kind, &row).await;
            }
        }
        Ok(())
    }
}

/// Whether a failure with this cause is one of a want's attempts: a run that was lost
/// (its process killed) or stopped says nothing about the job, so it is built again.
pub(super) fn counts_as_attempt(cause: FailureCause) -> bool {
    !matches!(cause, FailureCause::OwnerRunLost | FailureCause::Cancelled)
}

/// How many times `r` failed since `since` (microseconds), counting the failures that are
/// attempts.
async fn failed_builds_since(bel: &dyn EventLog, r: &str, since: i64) -> Result<u32, CoreError> {
    let history = bel.partition_history(r).await?;
    Ok(history
        .iter()
        .filter(|e| match &e.event {
            Event::Partition(p) => {
                p.status == PartitionStatus::PartitionFailed as i32
                    && e.event.timestamp_micros() >= since
                    && counts_as_attempt(p.failure_cause())
            }
            _ => false,
        })
        .count() as u32)
}
