//! Forgetting partitions that were never built (a typo, a ref nobody produces): each gets
//! a PARTITION_FORGOTTEN event, which takes it out of the partition listings; its events
//! stay in the log.

use databuild_bel::{Event, EventLog};
use databuild_proto::PartitionStatus;

use crate::{events, CoreError};

/// Why a partition cannot be forgotten. Nothing is written when any ref is refused.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// The event log has no record of the ref.
    #[error("no partition `{partition_ref}` to forget: the event log has no record of it; see `databuild partitions list`")]
    Unknown { partition_ref: String },
    /// The ref was built once; its history matters.
    #[error("partition `{partition_ref}` was AVAILABLE before (built or registered), so it cannot be forgotten: only partitions that never had a successful build can be; to have it rebuilt, use `databuild partitions invalidate {partition_ref}`")]
    WasAvailable { partition_ref: String },
    /// A graph run holds the ref right now.
    #[error("partition `{partition_ref}` is being built ({status} by graph run `{run_id}`); wait for that run to end, then forget it")]
    Claimed {
        partition_ref: String,
        status: &'static str,
        run_id: String,
    },
    /// The ref was already forgotten.
    #[error("partition `{partition_ref}` is already forgotten")]
    AlreadyForgotten { partition_ref: String },
}

/// Forgets the distinct `refs` (each validated), all or none: every ref must have a
/// record, never have been AVAILABLE and not be claimed (SCHEDULED or BUILDING). Returns
/// the refs forgotten. `client` is recorded as the requesting client.
pub async fn forget(
    bel: &dyn EventLog,
    refs: &[String],
    client: &str,
) -> Result<Vec<String>, CoreError> {
    let refs = crate::planner::distinct(refs).into_owned();
    for r in &refs {
        databuild_proto::validate_ref(r).map_err(crate::planner::PlanError::from)?;
    }
    let current: std::collections::HashMap<String, databuild_bel::PartitionRow> = bel
        .partitions(&refs)
        .await?
        .into_iter()
        .map(|row| (row.partition_ref.clone(), row))
        .collect();
    for r in &refs {
        let Some(row) = current.get(r) else {
            let history = bel.partition_history(r).await?;
            return Err(if history.is_empty() {
                ForgetError::Unknown {
                    partition_ref: r.clone(),
                }
            } else {
                ForgetError::AlreadyForgotten {
                    partition_ref: r.clone(),
                }
            }
            .into());
        };
        if matches!(
            row.status,
            PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding
        ) {
            return Err(ForgetError::Claimed {
                partition_ref: r.clone(),
                status: row.status.short_name(),
                run_id: row.run_id.clone(),
            }
            .into());
        }
        let was_available = bel.partition_history(r).await?.iter().any(|e| {
            matches!(&e.event, Event::Partition(p)
                if p.status == PartitionStatus::PartitionAvailable as i32)
        });
        if was_available {
            return Err(ForgetError::WasAvailable {
                partition_ref: r.clone(),
            }
            .into());
        }
    }
    let evs = refs
        .iter()
        .map(|r| {
            let mut e = events::partition(r, PartitionStatus::PartitionForgotten, "");
            e.requesting_clients = vec![client.to_string()];
            Event::Partition(e)
        })
        .collect();
    // The event log checks each ref again in the append's transaction: a ref claimed or
    // built since it was read above is refused there, and nothing is written.
    bel.append(evs).await?;
    Ok(refs)
}
