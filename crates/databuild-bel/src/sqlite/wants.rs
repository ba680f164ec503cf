//! The SQLite `wants` and `backfills` views: reading and writing one row, and listing.

use databuild_proto::WantStatus;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{BackfillRow, BelError, WantFilter, WantRow};

/// Schema version 3: the derived latest state of every want.
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS wants (
    want_id TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    status INTEGER NOT NULL,
    created_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL,
    expires_ts INTEGER,
    sla_ts INTEGER,
    sla_missed INTEGER NOT NULL,
    schedule TEXT NOT NULL,
    tick_ts INTEGER,
    requesters TEXT NOT NULL,
    reason TEXT NOT NULL,
    seq INTEGER NOT NULL,
    backfill TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS wants_by_ref ON wants (ref);
CREATE INDEX IF NOT EXISTS wants_by_backfill ON wants (backfill, want_id) WHERE backfill <> '';
CREATE TABLE IF NOT EXISTS backfills (
    backfill_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status INTEGER NOT NULL,
    refs TEXT NOT NULL,
    total INTEGER NOT NULL,
    max_failures INTEGER NOT NULL,
    parallelism INTEGER NOT NULL,
    requesters TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS wants_by_status ON wants (status, want_id);
CREATE INDEX IF NOT EXISTS wants_by_schedule ON wants (schedule, tick_ts) WHERE schedule <> '';
";

/// Schema version 4: live wants (ACTIVE 1, SATISFIED 2) by when their TTL ends, so that
/// the reconciler finds the wants due to expire without holding every live want.
pub(super) const SCHEMA_V4: &str = "
CREATE INDEX IF NOT EXISTS wants_by_expiry ON wants (expires_ts, want_id)
    WHERE expires_ts IS NOT NULL AND status IN (1, 2);
";

const COLUMNS: &str = "want_id, ref, status, created_ts, updated_ts, expires_ts, sla_ts, \
     sla_missed, schedule, tick_ts, requesters, reason, seq, backfill";

fn read_row(r: &Row<'_>) -> rusqlite::Result<WantRow> {
    let requesters: String = r.get(10)?;
    Ok(WantRow {
        want_id: r.get(0)?,
        partition_ref: r.get(1)?,
        status: WantStatus::try_from(r.get::<_, i32>(2)?).unwrap_or_default(),
        created_micros: r.get(3)?,
        updated_micros: r.get(4)?,
        expires_micros: r.get(5)?,
        sla_micros: r.get(6)?,
        sla_missed: r.get::<_, i64>(7)? != 0,
        schedule: r.get(8)?,
        tick_micros: r.get(9)?,
        requesters: split(&requesters),
        reason: r.get(11)?,
        seq: r.get(12)?,
        backfill: r.get(13)?,
    })
}

/// Requesters are stored one per line (a client name has no line break).
fn split(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

/// The row of want `id`.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<WantRow>, BelError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM wants WHERE want_id = ?1"))?
        .query_row([id], read_row)
        .optional()?)
}

/// Inserts or replaces the row of a want.
pub(super) fn put(conn: &Connection, w: &WantRow) -> Result<(), BelError> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO wants ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        w.want_id,
        w.partition_ref,
        w.status as i32,
        w.created_micros,
        w.updated_micros,
        w.expires_micros,
        w.sla_micros,
        w.sla_missed as i64,
        w.schedule,
        w.tick_micros,
        w.requesters.join("\n"),
        w.reason,
        w.seq,
        w.backfill
    ])?;
    Ok(())
}

/// Most refs bound in one statement when a filter names refs.
const REFS_PER_QUERY: usize = 500;

/// The wants `filter` selects, by id (by expiry with `expires_by`).
pub(super) fn list(conn: &Connection, filter: &WantFilter) -> Result<Vec<WantRow>, BelError> {
    if filter.refs.is_empty() {
        return list_some(conn, filter, &[]);
    }
    let mut rows = Vec::new();
    for chunk in filter.refs.chunks(REFS_PER_QUERY) {
        rows.extend(list_some(conn, filter, chunk)?);
    }
    if filter.expires_by.is_some() {
        rows.sort_by(|a, b| (a.expires_micros, &a.want_id).cmp(&(b.expires_micros, &b.want_id)));
    } else {
        rows.sort_by(|a, b| a.want_id.cmp(&b.want_id));
    }
    rows.dedup_by(|a, b| a.want_id == b.want_id);
    if filter.limit > 0 {
        rows.truncate(filter.limit);
    }
    Ok(rows)
}

/// [`list`] with `refs` (at most [`REFS_PER_QUERY`]) in place of the filter's.
fn list_some(
    conn: &Connection,
    filter: &WantFilter,
    refs: &[String],
) -> Result<Vec<WantRow>, BelError> {
    let mut sql = format!("SELECT {COLUMNS} FROM wants WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if !filter.statuses.is_empty() {
        let list: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| (*s as i32).to_string())
            .collect();
        // Paging through wants of several statuses walks the primary key in order
        // (`+status` keeps the status index out of it, which would sort every matching row
        // for each page); one status pages along the status index itself.
        let column = if filter.after.is_some() && list.len() > 1 {
            "+status"
        } else {
            "status"
        };
        sql.push_str(&format!(" AND {column} IN ({})", list.join(", ")));
    }
    if let Some(r) = &filter.partition_ref {
        args.push(r.clone().into());
        sql.push_str(&format!(" AND ref = ?{}", args.len()));
    }
    if !refs.is_empty() {
        let first = args.len() + 1;
        args.extend(refs.iter().map(|r| r.clone().into()));
        let marks: Vec<String> = (first..=args.len()).map(|i| format!("?{i}")).collect();
        sql.push_str(&format!(" AND ref IN ({})", marks.join(", ")));
    }
    if let Some(b) = &filter.backfill {
        args.push(b.clone().into());
        sql.push_str(&format!(" AND backfill = ?{}", args.len()));
    }
    if let Some(at) = filter.expires_by {
        args.push(at.into());
        sql.push_str(&format!(
            " AND expires_ts IS NOT NULL AND expires_ts <= ?{}",
            args.len()
        ));
    }
    if filter.unavailable {
        // Driven by the partitions that are not AVAILABLE (their status index), each
        // looked up in the wants by ref.
        sql.push_str(
            " AND ref IN (SELECT ref FROM partitions WHERE status IN (0, 1, 2, 3, 5, 6, 7, 8))",
        );
    }
    if let Some(after) = &filter.after {
        args.push(after.clone().into());
        sql.push_str(&format!(" AND want_id > ?{}", args.len()));
    }
    if filter.expires_by.is_some() {
        sql.push_str(" ORDER BY expires_ts, want_id");
    } else {
        sql.push_str(" ORDER BY want_id");
    }
    if filter.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", filter.limit));
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), read_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The latest tick recorded for `schedule`, microseconds.
pub(super) fn last_tick(conn: &Connection, schedule: &str) -> Result<Option<i64>, BelError> {
    Ok(conn
        .prepare_cached("SELECT max(tick_ts) FROM wants WHERE schedule = ?1 AND schedule <> ''")?
        .query_row([schedule], |r| r.get(0))?)
}

const BACKFILL_COLUMNS: &str = "backfill_id, name, status, refs, total, max_failures, \
     parallelism, requesters, reason, created_ts, updated_ts, seq";

fn read_backfill(r: &Row<'_>) -> rusqlite::Result<BackfillRow> {
    let refs: String = r.get(3)?;
    let requesters: String = r.get(7)?;
    Ok(BackfillRow {
        backfill_id: r.get(0)?,
        name: r.get(1)?,
        status: databuild_proto::BackfillStatus::try_from(r.get::<_, i32>(2)?).unwrap_or_default(),
        refs: split(&refs),
        total: r.get::<_, i64>(4)? as u64,
        max_failures: r.get::<_, i64>(5)? as u32,
        parallelism: r.get::<_, i64>(6)? as u32,
        requesters: split(&requesters),
        reason: r.get(8)?,
        created_micros: r.get(9)?,
        updated_micros: r.get(10)?,
        seq: r.get(11)?,
    })
}

/// The row of backfill `id`.
pub(super) fn get_backfill(conn: &Connection, id: &str) -> Result<Option<BackfillRow>, BelError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {BACKFILL_COLUMNS} FROM backfills WHERE backfill_id = ?1"
        ))?
        .query_row([id], read_backfill)
        .optional()?)
}

/// Inserts or replaces the row of a backfill.
pub(super) fn put_backfill(conn: &Connection, b: &BackfillRow) -> Result<(), BelError> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO backfills ({BACKFILL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        b.backfill_id,
        b.name,
        b.status as i32,
        b.refs.join("\n"),
        b.total as i64,
        b.max_failures as i64,
        b.parallelism as i64,
        b.requesters.join("\n"),
        b.reason,
        b.created_micros,
        b.updated_micros,
        b.seq
    ])?;
    Ok(())
}

/// Every backfill, newest first.
pub(super) fn list_backfills(conn: &Connection) -> Result<Vec<BackfillRow>, BelError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {BACKFILL_COLUMNS} FROM backfills ORDER BY created_ts DESC, backfill_id"
    ))?;
    let rows = stmt
        .query_map([], read_backfill)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// How many wants of backfill `id` have each status.
pub(super) fn backfill_counts(
    conn: &Connection,
    id: &str,
) -> Result<Vec<(databuild_proto::WantStatus, u64)>, BelError> {
    let mut stmt = conn.prepare_cached(
        "SELECT status, count(*) FROM wants WHERE backfill = ?1 GROUP BY status ORDER BY status",
    )?;
    let rows = stmt
        .query_map([id], |r| {
            Ok((
                databuild_proto::WantStatus::try_from(r.get::<_, i32>(0)?).unwrap_or_default(),
                r.get::<_, i64>(1)? as u64,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
