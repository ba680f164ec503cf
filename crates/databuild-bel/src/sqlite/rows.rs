//! Reading stored rows: events decoded from their bodies, graph runs and job runs.

use databuild_proto::{JobGraphRunStatus, JobRunStatus};
use rusqlite::Connection;

use crate::{common, BelError, JobRunRow, LoggedEvent, RunRow};

pub(super) fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<LoggedEvent>, BelError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, kind, body) = row?;
        out.push(common::decode(seq, kind, &body)?);
    }
    Ok(out)
}

pub(super) fn read_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        run_id: r.get(0)?,
        label: r.get(1)?,
        status: JobGraphRunStatus::try_from(r.get::<_, i32>(2)?).unwrap_or_default(),
        started_micros: r.get(3)?,
        updated_micros: r.get(4)?,
        host: r.get(5)?,
        pid: r.get(6)?,
        lease_until_micros: r.get(7)?,
    })
}

pub(super) fn read_job_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRunRow> {
    Ok(JobRunRow {
        job_run_id: r.get(0)?,
        run_id: r.get(1)?,
        label: r.get(2)?,
        job_key: r.get(3)?,
        status: JobRunStatus::try_from(r.get::<_, i32>(4)?).unwrap_or_default(),
        scheduled_micros: r.get(5)?,
        updated_micros: r.get(6)?,
    })
}

pub(super) const RUN_COLUMNS: &str =
    "run_id, label, status, started_ts, updated_ts, host, pid, lease_until";
pub(super) const JOB_RUN_COLUMNS: &str =
    "job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts";
