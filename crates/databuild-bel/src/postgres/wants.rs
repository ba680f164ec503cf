//! The PostgreSQL `wants` and `backfills` views: their schema, one row inside a write
//! transaction, and listing. Same answers, in the same order, as the SQLite backend.

use databuild_proto::WantStatus;
use tokio_postgres::{Row, Transaction};

use super::conn::{Conn, Stmts};
use crate::{BackfillRow, BelError, WantFilter, WantRow};

/// What version 3 added: the latest state of every want.
pub(super) const SCHEMA_V3: &str = r#"
CREATE TABLE IF NOT EXISTS wants (
    want_id TEXT COLLATE "C" PRIMARY KEY,
    ref TEXT COLLATE "C" NOT NULL,
    status INT NOT NULL,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    expires_ts BIGINT,
    sla_ts BIGINT,
    sla_missed BOOLEAN NOT NULL,
    schedule TEXT NOT NULL,
    tick_ts BIGINT,
    requesters TEXT NOT NULL,
    reason TEXT NOT NULL,
    seq BIGINT NOT NULL,
    backfill TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS wants_by_ref ON wants (ref);
CREATE INDEX IF NOT EXISTS wants_by_backfill ON wants (backfill, want_id) WHERE backfill <> '';
CREATE TABLE IF NOT EXISTS backfills (
    backfill_id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    status INT NOT NULL,
    refs TEXT NOT NULL,
    total BIGINT NOT NULL,
    max_failures BIGINT NOT NULL,
    parallelism BIGINT NOT NULL,
    requesters TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS wants_by_status ON wants (status, want_id);
CREATE INDEX IF NOT EXISTS wants_by_schedule ON wants (schedule, tick_ts) WHERE schedule <> '';
"#;

/// What version 4 added: live wants (ACTIVE 1, SATISFIED 2) by when their TTL ends.
pub(super) const SCHEMA_V4: &str = r#"
CREATE INDEX IF NOT EXISTS wants_by_expiry ON wants (expires_ts, want_id)
    WHERE expires_ts IS NOT NULL AND status IN (1, 2);
"#;

const SELECT_ONE: &str = "SELECT want_id, ref, status, created_ts, updated_ts, expires_ts, \
     sla_ts, sla_missed, schedule, tick_ts, requesters, reason, seq, backfill FROM wants WHERE want_id = $1";

/// The list of wants a [`WantFilter`] selects, in `$order`.
macro_rules! select_list {
    ($order:literal) => {
        concat!(
            "SELECT want_id, ref, status, created_ts, updated_ts, expires_ts, \
             sla_ts, sla_missed, schedule, tick_ts, requesters, reason, seq, backfill FROM wants \
             WHERE ($1::int4[] IS NULL OR status = ANY($1)) AND ($2::text IS NULL OR ref = $2) \
             AND ($3::text IS NULL OR want_id > $3) AND ($5::text IS NULL OR backfill = $5) \
             AND (cardinality($6::text[]) = 0 OR ref = ANY($6)) \
             AND ($7::int8 IS NULL OR (expires_ts IS NOT NULL AND expires_ts <= $7)) \
             AND (NOT $8::bool OR ref IN (SELECT ref FROM partitions WHERE status <> 4)) \
             ORDER BY ",
            $order,
            " LIMIT $4"
        )
    };
}

const SELECT_LIST: &str = select_list!("want_id");

const SELECT_EXPIRING: &str = select_list!("expires_ts, want_id");

const UPSERT: &str = "INSERT INTO wants (want_id, ref, status, created_ts, updated_ts, \
     expires_ts, sla_ts, sla_missed, schedule, tick_ts, requesters, reason, seq, backfill) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (want_id) DO UPDATE SET status = excluded.status, \
     updated_ts = excluded.updated_ts, sla_missed = excluded.sla_missed, \
     reason = excluded.reason, seq = excluded.seq";

fn read_row(r: &Row) -> WantRow {
    let requesters: String = r.get(10);
    WantRow {
        want_id: r.get(0),
        partition_ref: r.get(1),
        status: WantStatus::try_from(r.get::<_, i32>(2)).unwrap_or_default(),
        created_micros: r.get(3),
        updated_micros: r.get(4),
        expires_micros: r.get(5),
        sla_micros: r.get(6),
        sla_missed: r.get(7),
        schedule: r.get(8),
        tick_micros: r.get(9),
        requesters: requesters.lines().map(str::to_string).collect(),
        reason: r.get(11),
        seq: r.get(12),
        backfill: r.get(13),
    }
}

/// The row of want `id`, read inside a write transaction.
pub(super) async fn get_tx(
    tx: &Transaction<'_>,
    stmts: &mut Stmts,
    id: &str,
) -> Result<Option<WantRow>, BelError> {
    let stmt = stmts.get(tx, SELECT_ONE).await?;
    Ok(tx.query_opt(&stmt, &[&id]).await?.as_ref().map(read_row))
}

/// Writes want rows inside a write transaction.
pub(super) async fn put_tx(
    tx: &Transaction<'_>,
    stmts: &mut Stmts,
    rows: Vec<WantRow>,
) -> Result<(), BelError> {
    let stmt = stmts.get(tx, UPSERT).await?;
    for w in rows {
        tx.execute(
            &stmt,
            &[
                &w.want_id,
                &w.partition_ref,
                &(w.status as i32),
                &w.created_micros,
                &w.updated_micros,
                &w.expires_micros,
                &w.sla_micros,
                &w.sla_missed,
                &w.schedule,
                &w.tick_micros,
                &w.requesters.join("\n"),
                &w.reason,
                &w.seq,
                &w.backfill,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The row of want `id`.
pub(super) async fn get(c: &mut Conn, id: &str) -> Result<Option<WantRow>, BelError> {
    Ok(super::read::query(c, SELECT_ONE, &[&id])
        .await?
        .first()
        .map(read_row))
}

/// The wants `filter` selects, by id (by expiry with `expires_by`).
pub(super) async fn list(c: &mut Conn, filter: &WantFilter) -> Result<Vec<WantRow>, BelError> {
    let statuses: Option<Vec<i32>> =
        (!filter.statuses.is_empty()).then(|| filter.statuses.iter().map(|s| *s as i32).collect());
    let limit: Option<i64> = (filter.limit != 0).then_some(filter.limit as i64);
    let sql = match filter.expires_by {
        Some(_) => SELECT_EXPIRING,
        None => SELECT_LIST,
    };
    let rows = super::read::query(
        c,
        sql,
        &[
            &statuses,
            &filter.partition_ref,
            &filter.after,
            &limit,
            &filter.backfill,
            &filter.refs,
            &filter.expires_by,
            &filter.unavailable,
        ],
    )
    .await?;
    Ok(rows.iter().map(read_row).collect())
}

/// The latest tick recorded for `schedule`.
pub(super) async fn last_tick(c: &mut Conn, schedule: &str) -> Result<Option<i64>, BelError> {
    let rows = super::read::query(
        c,
        "SELECT max(tick_ts) FROM wants WHERE schedule = $1 AND schedule <> ''",
        &[&schedule],
    )
    .await?;
    Ok(rows.first().and_then(|r| r.get(0)))
}

const BACKFILL_COLUMNS: &str = "backfill_id, name, status, refs, total, max_failures, \
     parallelism, requesters, reason, created_ts, updated_ts, seq";

fn read_backfill(r: &Row) -> BackfillRow {
    let refs: String = r.get(3);
    let requesters: String = r.get(7);
    BackfillRow {
        backfill_id: r.get(0),
        name: r.get(1),
        status: databuild_proto::BackfillStatus::try_from(r.get::<_, i32>(2)).unwrap_or_default(),
        refs: refs.lines().map(str::to_string).collect(),
        total: r.get::<_, i64>(4) as u64,
        max_failures: r.get::<_, i64>(5) as u32,
        parallelism: r.get::<_, i64>(6) as u32,
        requesters: requesters.lines().map(str::to_string).collect(),
        reason: r.get(8),
        created_micros: r.get(9),
        updated_micros: r.get(10),
        seq: r.get(11),
    }
}

const SELECT_BACKFILL: &str = "SELECT backfill_id, name, status, refs, total, max_failures, \
     parallelism, requesters, reason, created_ts, updated_ts, seq FROM backfills WHERE backfill_id = $1";

/// The row of backfill `id`, read inside a write transaction.
pub(super) async fn get_backfill_tx(
    tx: &Transaction<'_>,
    stmts: &mut Stmts,
    id: &str,
) -> Result<Option<BackfillRow>, BelError> {
    let stmt = stmts.get(tx, SELECT_BACKFILL).await?;
    Ok(tx
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(read_backfill))
}

/// Writes backfill rows inside a write transaction.
pub(super) async fn put_backfills_tx(
    tx: &Transaction<'_>,
    rows: Vec<BackfillRow>,
) -> Result<(), BelError> {
    let sql = format!(
        "INSERT INTO backfills ({BACKFILL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (backfill_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, \
         updated_ts = excluded.updated_ts, seq = excluded.seq"
    );
    for b in rows {
        tx.execute(
            &sql,
            &[
                &b.backfill_id,
                &b.name,
                &(b.status as i32),
                &b.refs.join("\n"),
                &(b.total as i64),
                &(b.max_failures as i64),
                &(b.parallelism as i64),
                &b.requesters.join("\n"),
                &b.reason,
                &b.created_micros,
                &b.updated_micros,
                &b.seq,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The row of backfill `id`.
pub(super) async fn get_backfill(c: &mut Conn, id: &str) -> Result<Option<BackfillRow>, BelError> {
    Ok(super::read::query(c, SELECT_BACKFILL, &[&id])
        .await?
        .first()
        .map(read_backfill))
}

/// Every backfill, newest first.
pub(super) async fn list_backfills(c: &mut Conn) -> Result<Vec<BackfillRow>, BelError> {
    let rows = super::read::query(
        c,
        "SELECT backfill_id, name, status, refs, total, max_failures, parallelism, requesters, \
         reason, created_ts, updated_ts, seq FROM backfills ORDER BY created_ts DESC, backfill_id",
        &[],
    )
    .await?;
    Ok(rows.iter().map(read_backfill).collect())
}

/// How many wants of backfill `id` have each status.
pub(super) async fn backfill_counts(
    c: &mut Conn,
    id: &str,
) -> Result<Vec<(databuild_proto::WantStatus, u64)>, BelError> {
    let rows = super::read::query(
        c,
        "SELECT status, count(*) FROM wants WHERE backfill = $1 GROUP BY status ORDER BY status",
        &[&id],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                databuild_proto::WantStatus::try_from(r.get::<_, i32>(0)).unwrap_or_default(),
                r.get::<_, i64>(1) as u64,
            )
        })
        .collect())
}
