//! Derived views that follow partition events: who is waiting on a claim, the lineage
//! graph, and staleness, which propagates downstream in the same transaction.

use std::collections::VecDeque;

use databuild_proto::{PartitionEvent, PartitionRef, PartitionStatus};
use rusqlite::{params, Connection};

use super::apply;
use crate::{BelError, Event};

/// Updates requesters, lineage and staleness after `p` (with status `status`) was stored.
/// `was_claimed`: the partition was SCHEDULED/BUILDING before this event.
pub(super) fn after_partition_event(
    tx: &Connection,
    p: &PartitionEvent,
    status: PartitionStatus,
    was_claimed: bool,
) -> Result<(), BelError> {
    let r = p
        .partition_ref
        .as_ref()
        .map(|r| r.str.as_str())
        .unwrap_or("");
    match status {
        PartitionStatus::PartitionScheduled | PartitionStatus::PartitionDelegated => {
            add_requesters(tx, r, &p.requesting_clients)?;
        }
        PartitionStatus::PartitionRequested if was_claimed => {
            add_requesters(tx, r, &p.requesting_clients)?;
        }
        PartitionStatus::PartitionAvailable => {
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
            let cause = if p.job_graph_run_id.is_empty() {
                format!("upstream `{r}` was registered again")
            } else {
                format!(
                    "upstream `{r}` was rebuilt by graph run `{}`",
                    p.job_graph_run_id
                )
            };
            propagate_stale(tx, r, &p.job_graph_run_id, cause)?;
        }
        PartitionStatus::PartitionFailed | PartitionStatus::PartitionStale => {
            tx.prepare_cached("DELETE FROM requesters WHERE ref = ?1")?
                .execute([r])?;
        }
        _ => {}
    }
    Ok(())
}

fn add_requesters(tx: &Connection, r: &str, clients: &[String]) -> Result<(), BelError> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO requesters (ref, client) VALUES (?1, ?2)")?;
    for c in clients {
        insert.execute(params![r, c])?;
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
        let mut downstream = Vec::new();
        for d in candidates {
            if super::partition_row(tx, &d)?
                .is_some_and(|p| p.status == PartitionStatus::PartitionAvailable)
            {
                downstream.push(d);
            }
        }
        for d in downstream {
            apply(
                tx,
                Event::Partition(PartitionEvent {
                    partition_ref: Some(PartitionRef::new(d.clone())),
                    status: PartitionStatus::PartitionStale as i32,
                    job_graph_run_id: run_id.to_string(),
                    failure_reason: reason.clone(),
                    upstream_deps: vec![PartitionRef::new(up.clone())],
                    ..Default::default()
                }),
            )?;
            queue.push_back((d.clone(), format!("upstream `{d}` is stale")));
            made_stale.push(d);
        }
    }
    Ok(made_stale)
}
