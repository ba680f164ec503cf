//! Catalog reads of the SQLite backend: lineage, active builds and partition event
//! queries.

use databuild_proto::{ActiveBuild, PartitionRef, PartitionStatus};
use rusqlite::{params, Connection};

use super::{partition_row, query_events};
use crate::{
    query::{OrderField, PartitionQuery},
    BelError, LoggedEvent,
};

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
