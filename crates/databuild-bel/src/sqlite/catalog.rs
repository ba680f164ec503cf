//! Catalog reads and coordination writes of the SQLite backend: invalidation, lineage,
//! active builds, partition event queries and claims.

use databuild_proto::{ActiveBuild, PartitionEvent, PartitionRef, PartitionStatus};
use rusqlite::{params, Connection};

use super::{apply, derived, partition_row, query_events};
use crate::{
    query::{OrderField, PartitionQuery},
    BelError, ClaimGroup, ClaimOutcome, Event, LoggedEvent,
};

pub(super) fn invalidate(tx: &Connection, r: &str, reason: &str) -> Result<Vec<String>, BelError> {
    let Some(cur) = partition_row(tx, r)? else {
        return Err(BelError::UnknownPartition(r.to_string()));
    };
    if cur.status != PartitionStatus::PartitionAvailable {
        let hint = match cur.status {
            PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding => {
                "it is being built now; invalidate it once it is AVAILABLE".to_string()
            }
            PartitionStatus::PartitionStale => {
                "it is already stale; the next build that needs it rebuilds it".to_string()
            }
            _ => format!("there is nothing to invalidate; `databuild build {r}` builds it"),
        };
        return Err(BelError::InvalidTransition(format!(
            "partition `{r}` is {}; only an AVAILABLE partition can be invalidated: {hint}",
            cur.status.as_str_name()
        )));
    }
    apply(
        tx,
        Event::Partition(PartitionEvent {
            partition_ref: Some(PartitionRef::new(r)),
            status: PartitionStatus::PartitionStale as i32,
            failure_reason: format!("invalidated: {reason}"),
            ..Default::default()
        }),
    )?;
    let mut stale = vec![r.to_string()];
    stale.extend(derived::propagate_stale(
        tx,
        r,
        "",
        format!("upstream `{r}` is stale"),
    )?);
    Ok(stale)
}

pub(super) fn lineage(
    conn: &Connection,
    refs: &[String],
    downstream: bool,
) -> Result<Vec<(String, String)>, BelError> {
    let sql = if downstream {
        "SELECT upstream, downstream FROM deps WHERE upstream = ?1 ORDER BY downstream"
    } else {
        "SELECT upstream, downstream FROM deps WHERE downstream = ?1 ORDER BY upstream"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut out = Vec::new();
    for r in refs {
        let rows = stmt.query_map([r], |row| Ok((row.get(0)?, row.get(1)?)))?;
        for row in rows {
            out.push(row?);
        }
    }
    Ok(out)
}

pub(super) fn active_builds(
    conn: &Connection,
    refs: &[String],
) -> Result<Vec<ActiveBuild>, BelError> {
    let mut rows: Vec<(String, String, i32, i64)> = Vec::new();
    if refs.is_empty() {
        let mut stmt = conn.prepare_cached(
            "SELECT ref, run_id, status, ts FROM partitions WHERE status IN (2, 3) ORDER BY ref",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))? {
            rows.push(row?);
        }
    } else {
        for r in refs {
            if let Some(p) = partition_row(conn, r)? {
                if matches!(
                    p.status,
                    PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding
                ) {
                    rows.push((p.partition_ref, p.run_id, p.status as i32, p.updated_micros));
                }
            }
        }
    }
    let mut clients =
        conn.prepare_cached("SELECT client FROM requesters WHERE ref = ?1 ORDER BY client")?;
    let mut started = conn.prepare_cached(
        "SELECT min(ts) FROM events WHERE ref = ?1 AND run_id = ?2 AND status = 2",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for (r, run_id, status, ts) in rows {
        let requesting_clients = clients
            .query_map([&r], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let since: Option<i64> = started.query_row(params![r, run_id], |row| row.get(0))?;
        out.push(ActiveBuild {
            partition_ref: Some(PartitionRef::new(r)),
            job_graph_run_id: run_id,
            status,
            requesting_clients,
            started_at: Some(databuild_proto::timestamp_from_micros(since.unwrap_or(ts))),
        });
    }
    Ok(out)
}

pub(super) fn query_partition_events(
    conn: &Connection,
    q: &PartitionQuery,
) -> Result<(Vec<LoggedEvent>, i64), BelError> {
    use rusqlite::types::Value;
    let mut sql = String::from(" FROM events WHERE kind = 3");
    let mut args: Vec<Value> = Vec::new();
    let in_list = |sql: &mut String, col: &str, values: Vec<Value>, args: &mut Vec<Value>| {
        if values.is_empty() {
            return;
        }
        let marks = vec!["?"; values.len()].join(", ");
        sql.push_str(&format!(" AND {col} IN ({marks})"));
        args.extend(values);
    };
    in_list(
        &mut sql,
        "ref",
        q.refs.iter().cloned().map(Value::from).collect(),
        &mut args,
    );
    in_list(
        &mut sql,
        "status",
        q.statuses.iter().map(|s| Value::from(*s as i32)).collect(),
        &mut args,
    );
    in_list(
        &mut sql,
        "run_id",
        q.run_ids.iter().cloned().map(Value::from).collect(),
        &mut args,
    );
    if let Some(s) = q.start_micros {
        sql.push_str(" AND ts >= ?");
        args.push(s.into());
    }
    if let Some(e) = q.end_micros {
        sql.push_str(" AND ts < ?");
        args.push(e.into());
    }
    let total: i64 = conn
        .prepare(&format!("SELECT count(*){sql}"))?
        .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    let dir = if q.ascending { "ASC" } else { "DESC" };
    let order = match q.order {
        OrderField::Timestamp => format!("seq {dir}"),
        OrderField::PartitionRef => format!("ref {dir}, seq {dir}"),
        OrderField::Status => format!("status {dir}, seq {dir}"),
    };
    sql = format!("SELECT seq, kind, body{sql} ORDER BY {order} LIMIT ? OFFSET ?");
    args.push(q.limit.into());
    args.push(q.offset.into());
    let events = query_events(conn, &sql, rusqlite::params_from_iter(args.iter()))?;
    Ok((events, total))
}

pub(super) fn claim(
    tx: &Connection,
    run_id: &str,
    client: &str,
    groups: Vec<ClaimGroup>,
) -> Result<Vec<ClaimOutcome>, BelError> {
    let mut outcomes = Vec::with_capacity(groups.len());
    for g in groups {
        let mut held = Vec::new();
        let mut available = 0;
        for r in &g.refs {
            if let Some(cur) = partition_row(tx, r)? {
                if cur.status == PartitionStatus::PartitionAvailable {
                    available += 1;
                }
                let claimed = matches!(
                    cur.status,
                    PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding
                );
                if claimed && cur.run_id != run_id {
                    held.push((r.clone(), cur.run_id));
                }
            }
        }
        if let Some((first_ref, first_owner)) = held.first().cloned() {
            for (r, owner) in held {
                apply(
                    tx,
                    Event::Partition(PartitionEvent {
                        partition_ref: Some(PartitionRef::new(r)),
                        status: PartitionStatus::PartitionDelegated as i32,
                        job_graph_run_id: run_id.to_string(),
                        delegated_to_run_id: owner,
                        requesting_clients: vec![client.to_string()],
                        producing_job: Some(databuild_proto::JobLabel::new(
                            g.producing_job.clone(),
                        )),
                        ..Default::default()
                    }),
                )?;
            }
            outcomes.push(ClaimOutcome::HeldBy {
                partition_ref: first_ref,
                owner_run_id: first_owner,
            });
            continue;
        }
        if g.skip_if_available && available == g.refs.len() {
            outcomes.push(ClaimOutcome::Available);
            continue;
        }
        for r in &g.refs {
            apply(
                tx,
                Event::Partition(PartitionEvent {
                    partition_ref: Some(PartitionRef::new(r.clone())),
                    status: PartitionStatus::PartitionScheduled as i32,
                    job_graph_run_id: run_id.to_string(),
                    requesting_clients: vec![client.to_string()],
                    producing_job: Some(databuild_proto::JobLabel::new(g.producing_job.clone())),
                    upstream_deps: g
                        .upstream_deps
                        .iter()
                        .map(|u| PartitionRef::new(u.clone()))
                        .collect(),
                    ..Default::default()
                }),
            )?;
        }
        outcomes.push(ClaimOutcome::Claimed);
    }
    Ok(outcomes)
}
