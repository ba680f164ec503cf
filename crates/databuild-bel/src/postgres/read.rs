//! Reads of the PostgreSQL backend: derived views, event ranges, lineage, active builds
//! and partition event queries. Same answers, in the same order, as the SQLite backend.

use databuild_proto::{
    ActiveBuild, JobGraphRunStatus, JobRunStatus, PartitionRef, PartitionStatus,
};
use tokio_postgres::{types::ToSql, Row};

use super::conn::Conn;
use crate::{
    common, pattern,
    query::{OrderField, PartitionQuery},
    BelError, JobRunRow, LoggedEvent, PartitionFilter, PartitionRow, RunFilter, RunRow,
    StatusCount,
};

pub(super) fn partition_row(r: &Row) -> PartitionRow {
    PartitionRow {
        partition_ref: r.get(0),
        status: PartitionStatus::try_from(r.get::<_, i32>(1)).unwrap_or_default(),
        run_id: r.get(2),
        job_run_id: r.get(3),
        seq: r.get(4),
        updated_micros: r.get(5),
    }
}

fn run_row(r: &Row) -> RunRow {
    RunRow {
        run_id: r.get(0),
        label: r.get(1),
        status: JobGraphRunStatus::try_from(r.get::<_, i32>(2)).unwrap_or_default(),
        started_micros: r.get(3),
        updated_micros: r.get(4),
        host: r.get(5),
        pid: r
            .get::<_, Option<i64>>(6)
            .and_then(|p| u32::try_from(p).ok()),
        lease_until_micros: r.get(7),
    }
}

fn job_run_row(r: &Row) -> JobRunRow {
    JobRunRow {
        job_run_id: r.get(0),
        run_id: r.get(1),
        label: r.get(2),
        job_key: r.get(3),
        status: JobRunStatus::try_from(r.get::<_, i32>(4)).unwrap_or_default(),
        scheduled_micros: r.get(5),
        updated_micros: r.get(6),
    }
}

fn decode_rows(rows: &[Row]) -> Result<Vec<LoggedEvent>, BelError> {
    rows.iter()
        .map(|r| {
            common::decode(
                r.get(0),
                i64::from(r.get::<_, i32>(1)),
                r.get::<_, &[u8]>(2),
            )
        })
        .collect()
}

/// `NULL` (no limit) for 0.
fn limit(n: usize) -> Option<i64> {
    (n != 0).then_some(n as i64)
}

/// Runs a cached statement.
pub(super) async fn query(
    c: &mut Conn,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, BelError> {
    let stmt = c.stmts.get(&c.client, sql).await?;
    Ok(c.client.query(&stmt, params).await?)
}

/// Events selected by a cached statement whose columns are `seq, kind, body`.
async fn events(
    c: &mut Conn,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<LoggedEvent>, BelError> {
    decode_rows(&query(c, sql, params).await?)
}

pub(super) async fn partitions(
    c: &mut Conn,
    refs: &[String],
) -> Result<Vec<PartitionRow>, BelError> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        c,
        "SELECT ref, status, run_id, job_run_id, seq, ts FROM partitions WHERE ref = ANY($1)",
        &[&refs],
    )
    .await?;
    let found: std::collections::HashMap<String, PartitionRow> = rows
        .iter()
        .map(|r| {
            let row = partition_row(r);
            (row.partition_ref.clone(), row)
        })
        .collect();
    Ok(refs.iter().filter_map(|r| found.get(r).cloned()).collect())
}

/// The latest status of each of `refs`, in their order (NULL where none), in one query.
pub(super) async fn statuses(
    c: &mut Conn,
    refs: &[String],
) -> Result<Vec<Option<PartitionStatus>>, BelError> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        c,
        "SELECT p.status FROM unnest($1::text[]) WITH ORDINALITY AS r(ref, i) \
         LEFT JOIN partitions p ON p.ref = r.ref COLLATE \"C\" ORDER BY r.i",
        &[&refs],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            r.get::<_, Option<i32>>(0)
                .map(|s| PartitionStatus::try_from(s).unwrap_or_default())
        })
        .collect())
}

pub(super) async fn builds(
    c: &mut Conn,
    refs: &[String],
) -> Result<Vec<Option<crate::BuildRow>>, BelError> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        c,
        "SELECT b.job, b.version, b.digest FROM unnest($1::text[]) WITH ORDINALITY AS r(ref, i) \
         LEFT JOIN builds b ON b.ref = r.ref COLLATE \"C\" ORDER BY r.i",
        &[&refs],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            r.get::<_, Option<String>>(0).map(|job| crate::BuildRow {
                job,
                version: r.get(1),
                digest: r.get(2),
            })
        })
        .collect())
}

pub(super) async fn built_by_other_version(
    c: &mut Conn,
    jobs: &[(String, String)],
) -> Result<Vec<String>, BelError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let labels: Vec<&str> = jobs.iter().map(|(j, _)| j.as_str()).collect();
    let versions: Vec<&str> = jobs.iter().map(|(_, v)| v.as_str()).collect();
    let rows = query(
        c,
        "SELECT b.ref FROM unnest($1::text[], $2::text[]) AS j(job, version)
         JOIN builds b ON b.job = j.job AND (b.version < j.version OR b.version > j.version)
         JOIN partitions p ON p.ref = b.ref
         WHERE p.status = $3 ORDER BY b.ref",
        &[
            &labels,
            &versions,
            &(PartitionStatus::PartitionAvailable as i32),
        ],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(super) async fn list_partitions(
    c: &mut Conn,
    filter: &PartitionFilter,
) -> Result<Vec<PartitionRow>, BelError> {
    let statuses: Vec<i32> = filter.statuses.iter().map(|s| *s as i32).collect();
    let start = pattern::literal_start(filter).unwrap_or_default();
    let like = filter.pattern.as_deref().map(pattern::to_like);
    let rows = query(
        c,
        "SELECT ref, status, run_id, job_run_id, seq, ts FROM partitions
         WHERE ($1 = '' OR starts_with(ref, $1))
           AND (cardinality($2::int4[]) = 0 OR status = ANY($2))
           AND ($5::text IS NULL OR ref LIKE $5 ESCAPE '\\')
           AND ($6::text IS NULL OR ref > $6)
         ORDER BY ref LIMIT $3 OFFSET $4",
        &[
            &start,
            &statuses,
            &limit(filter.limit),
            &(filter.offset as i64),
            &like,
            &filter.after,
        ],
    )
    .await?;
    Ok(rows.iter().map(partition_row).collect())
}

pub(super) async fn status_counts(c: &mut Conn) -> Result<Vec<StatusCount>, BelError> {
    let rows = query(
        c,
        "SELECT status, COUNT(*) FROM partitions GROUP BY status ORDER BY status",
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(StatusCount {
                status: PartitionStatus::try_from(r.get::<_, i32>(0)).ok()?,
                count: r.get::<_, i64>(1) as u64,
            })
        })
        .collect())
}

pub(super) async fn recent_job_runs(
    c: &mut Conn,
    label: Option<&str>,
    max: usize,
) -> Result<Vec<JobRunRow>, BelError> {
    let rows = query(
        c,
        "SELECT job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts
         FROM job_runs WHERE ($1::text IS NULL OR label = $1)
         ORDER BY scheduled_ts DESC, job_run_id DESC LIMIT $2",
        &[&label, &limit(max)],
    )
    .await?;
    Ok(rows.iter().map(job_run_row).collect())
}

pub(super) async fn latest_partition_event(
    c: &mut Conn,
    r: &str,
) -> Result<Option<LoggedEvent>, BelError> {
    let found = events(
        c,
        "SELECT e.seq, e.kind, e.body FROM partitions p JOIN events e ON e.seq = p.seq
         WHERE p.ref = $1",
        &[&r],
    )
    .await?;
    Ok(found.into_iter().next())
}

pub(super) async fn partition_history(c: &mut Conn, r: &str) -> Result<Vec<LoggedEvent>, BelError> {
    events(
        c,
        "SELECT seq, kind, body FROM events WHERE ref = $1 ORDER BY seq",
        &[&r],
    )
    .await
}

pub(super) async fn list_runs(c: &mut Conn, filter: &RunFilter) -> Result<Vec<RunRow>, BelError> {
    let statuses: Vec<i32> = filter.statuses.iter().map(|s| *s as i32).collect();
    let rows = query(
        c,
        "SELECT run_id, label, status, started_ts, updated_ts, host, pid, lease_until
         FROM graph_runs
         WHERE ($1::text IS NULL OR label = $1)
           AND (cardinality($2::int4[]) = 0 OR status = ANY($2))
           AND ($5::int8 IS NULL OR started_ts >= $5)
           AND ($6::int8 IS NULL OR started_ts < $6)
         ORDER BY started_ts DESC, run_id DESC LIMIT $3 OFFSET $4",
        &[
            &filter.label,
            &statuses,
            &limit(filter.limit),
            &(filter.offset as i64),
            &filter.started_from,
            &filter.started_before,
        ],
    )
    .await?;
    Ok(rows.iter().map(run_row).collect())
}

pub(super) async fn run(c: &mut Conn, run_id: &str) -> Result<Option<RunRow>, BelError> {
    let rows = query(
        c,
        "SELECT run_id, label, status, started_ts, updated_ts, host, pid, lease_until
         FROM graph_runs WHERE run_id = $1",
        &[&run_id],
    )
    .await?;
    Ok(rows.first().map(run_row))
}

pub(super) async fn run_events(c: &mut Conn, run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
    events(
        c,
        "SELECT seq, kind, body FROM events WHERE run_id = $1 ORDER BY seq",
        &[&run_id],
    )
    .await
}

pub(super) async fn run_request(
    c: &mut Conn,
    run_id: &str,
) -> Result<Option<databuild_proto::GraphRequestEvent>, BelError> {
    let first = events(
        c,
        "SELECT seq, kind, body FROM events WHERE run_id = $1 ORDER BY seq LIMIT 1",
        &[&run_id],
    )
    .await?;
    Ok(crate::common::run_request(first.first()))
}

pub(super) async fn job_runs(c: &mut Conn, run_id: &str) -> Result<Vec<JobRunRow>, BelError> {
    let rows = query(
        c,
        "SELECT job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts
         FROM job_runs WHERE run_id = $1 ORDER BY scheduled_ts, job_run_id",
        &[&run_id],
    )
    .await?;
    Ok(rows.iter().map(job_run_row).collect())
}

pub(super) async fn job_run(c: &mut Conn, job_run_id: &str) -> Result<Option<JobRunRow>, BelError> {
    let rows = query(
        c,
        "SELECT job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts
         FROM job_runs WHERE job_run_id = $1",
        &[&job_run_id],
    )
    .await?;
    Ok(rows.first().map(job_run_row))
}

pub(super) async fn job_run_events(
    c: &mut Conn,
    job_run_id: &str,
) -> Result<Vec<LoggedEvent>, BelError> {
    events(
        c,
        "SELECT seq, kind, body FROM events WHERE job_run_id = $1 ORDER BY seq",
        &[&job_run_id],
    )
    .await
}

pub(super) async fn events_after(
    c: &mut Conn,
    after_seq: i64,
    n: usize,
) -> Result<Vec<LoggedEvent>, BelError> {
    let below = horizon(c).await?;
    events(
        c,
        "SELECT seq, kind, body FROM events WHERE seq > $1 AND seq < $3 ORDER BY seq LIMIT $2",
        &[&after_seq, &limit(n), &below],
    )
    .await
}

/// The highest final log position (0 for an empty log): no write still running can
/// commit an event at or below it.
pub(super) async fn last_seq(c: &mut Conn) -> Result<i64, BelError> {
    let below = horizon(c).await?;
    let rows = query(
        c,
        "SELECT coalesce(max(seq), 0)::int8 FROM events WHERE seq < $1",
        &[&below],
    )
    .await?;
    Ok(rows[0].get(0))
}

/// The first log position a running write may still commit. Read in a statement of its
/// own, before the statement that reads the events below it (whose snapshot is later).
async fn horizon(c: &mut Conn) -> Result<i64, BelError> {
    let rows = query(c, "SELECT databuild_horizon()", &[]).await?;
    Ok(rows[0].get(0))
}

pub(super) async fn lineage(
    c: &mut Conn,
    refs: &[String],
    downstream: bool,
) -> Result<Vec<(String, String)>, BelError> {
    let rows = if downstream {
        query(
            c,
            "SELECT d.upstream, d.downstream FROM unnest($1::text[]) WITH ORDINALITY AS q(r, i)
             JOIN deps d ON d.upstream = q.r ORDER BY q.i, d.downstream",
            &[&refs],
        )
        .await?
    } else {
        query(
            c,
            "SELECT d.upstream, d.downstream FROM unnest($1::text[]) WITH ORDINALITY AS q(r, i)
             JOIN deps d ON d.downstream = q.r ORDER BY q.i, d.upstream",
            &[&refs],
        )
        .await?
    };
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(super) async fn active_builds(
    c: &mut Conn,
    refs: &[String],
) -> Result<Vec<ActiveBuild>, BelError> {
    let rows = if refs.is_empty() {
        query(
            c,
            "SELECT p.ref, p.run_id, p.status, p.ts,
               (SELECT min(e.ts) FROM events e WHERE e.ref = p.ref AND e.run_id = p.run_id AND e.status = 2),
               ARRAY(SELECT r.client FROM requesters r WHERE r.ref = p.ref ORDER BY r.client)
             FROM partitions p WHERE p.status IN (2, 3) ORDER BY p.ref",
            &[],
        )
        .await?
    } else {
        query(
            c,
            "SELECT p.ref, p.run_id, p.status, p.ts,
               (SELECT min(e.ts) FROM events e WHERE e.ref = p.ref AND e.run_id = p.run_id AND e.status = 2),
               ARRAY(SELECT r.client FROM requesters r WHERE r.ref = p.ref ORDER BY r.client)
             FROM unnest($1::text[]) WITH ORDINALITY AS q(r, i)
             JOIN partitions p ON p.ref = q.r WHERE p.status IN (2, 3) ORDER BY q.i",
            &[&refs],
        )
        .await?
    };
    Ok(rows
        .iter()
        .map(|row| {
            let ts: i64 = row.get(3);
            let since: Option<i64> = row.get(4);
            ActiveBuild {
                partition_ref: Some(PartitionRef::new(row.get::<_, String>(0))),
                job_graph_run_id: row.get(1),
                status: row.get(2),
                requesting_clients: row.get(5),
                started_at: Some(databuild_proto::timestamp_from_micros(since.unwrap_or(ts))),
            }
        })
        .collect())
}

pub(super) async fn query_partition_events(
    c: &mut Conn,
    q: &PartitionQuery,
) -> Result<(Vec<LoggedEvent>, i64), BelError> {
    let statuses: Vec<i32> = q.statuses.iter().map(|s| *s as i32).collect();
    let filter = "FROM events WHERE kind = 3
           AND (cardinality($1::text[]) = 0 OR ref = ANY($1))
           AND (cardinality($2::int4[]) = 0 OR status = ANY($2))
           AND (cardinality($3::text[]) = 0 OR run_id = ANY($3))
           AND ($4::int8 IS NULL OR ts >= $4)
           AND ($5::int8 IS NULL OR ts < $5)";
    let dir = if q.ascending { "ASC" } else { "DESC" };
    let order = match q.order {
        OrderField::Timestamp => format!("seq {dir}"),
        OrderField::PartitionRef => format!("ref {dir}, seq {dir}"),
        OrderField::Status => format!("status {dir}, seq {dir}"),
    };
    let count_sql = format!("SELECT count(*) {filter}");
    let page_sql = format!("SELECT seq, kind, body {filter} ORDER BY {order} LIMIT $6 OFFSET $7");
    let params: [&(dyn ToSql + Sync); 5] = [
        &q.refs,
        &statuses,
        &q.run_ids,
        &q.start_micros,
        &q.end_micros,
    ];
    let mut page_params = params.to_vec();
    page_params.push(&q.limit);
    page_params.push(&q.offset);
    let client = &c.client;
    let (total, rows) = tokio::try_join!(
        client.query_one(count_sql.as_str(), &params),
        client.query(page_sql.as_str(), &page_params)
    )?;
    Ok((decode_rows(&rows)?, total.get(0)))
}
