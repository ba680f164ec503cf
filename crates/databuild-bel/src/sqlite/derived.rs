//! Derived views that follow partition events: who is waiting on a claim, the lineage
//! graph, and staleness, which propagates downstream in the same transaction.

use std::collections::VecDeque;

use databuild_proto::{PartitionEvent, PartitionStatus};
use rusqlite::{params, Connection};

use super::apply;
use crate::{
    common::{self, Derived},
    BelError,
};

/// Updates requesters, lineage and staleness after `p` (about `r`, with status `status`)
/// was stored. `was_claimed`: the partition was SCHEDULED/BUILDING before this event.
pub(super) fn after_partition_event(
    tx: &Connection,
    p: &PartitionEvent,
    r: &str,
    status: PartitionStatus,
    was_claimed: bool,
) -> Result<(), BelError> {
    match common::derived_effect(p, r, status, was_claimed) {
        Derived::None => {}
        Derived::AddRequesters => {
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO requesters (ref, client) VALUES (?1, ?2)")?;
            for c in &p.requesting_clients {
                insert.execute(params![r, c])?;
            }
        }
        Derived::ClearRequesters => {
            tx.prepare_cached("DELETE FROM requesters WHERE ref = ?1")?
                .execute([r])?;
        }
        Derived::Built { cause } => {
            tx.prepare_cached("DELETE FROM requesters WHERE ref = ?1")?
                .execute([r])?;
            tx.prepare_cached("DELETE FROM deps WHERE downstream = ?1")?
                .execute([r])?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO deps (upstream, downstream) VALUES (?1, ?2)",
            )?;
            for u in &p.upstream_deps {
                insert.execute(params![u.str, r])?;
            }
            propagate_stale(tx, r, &p.job_graph_run_id, cause)?;
        }
    }
    Ok(())
}

/// Marks every AVAILABLE partition built from `root` STALE, transitively, with `reason`
/// for the direct dependents and "upstream `x` is stale" further down. Returns the refs
/// made stale.
pub(super) fn propagate_stale(
    tx: &Connection,
    root: &str,
    run_id: &str,
    reason: String,
) -> Result<Vec<String>, BelError> {
    let mut made_stale = Vec::new();
    let mut queue = VecDeque::from([(root.to_string(), reason)]);
    while let Some((up, reason)) = queue.pop_front() {
        // Lineage first, then each dependent's status: the join written the other way
        // round lets SQLite scan every AVAILABLE partition.
        let candidates: Vec<String> = tx
            .prepare_cached("SELECT downstream FROM deps WHERE upstream = ?1 ORDER BY downstream")?
            .query_map([&up], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for d in candidates {
            let available = super::partition_row(tx, &d)?
                .is_some_and(|p| p.status == PartitionStatus::PartitionAvailable);
            if !available {
                continue;
            }
            apply(tx, common::stale_event(&d, &up, run_id, &reason))?;
            queue.push_back((d.clone(), common::stale_upstream(&d)));
            made_stale.push(d);
        }
    }
    Ok(made_stale)
}
