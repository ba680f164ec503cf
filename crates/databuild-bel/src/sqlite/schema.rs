//! The SQLite schema, its version, and the checks made when a file is opened.

use std::{
    io::Read as _,
    path::Path,
    time::{Duration, Instant},
};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::BelError;

/// The schema version this build writes and reads (2 added `builds`, 3 `wants` and
/// `backfills`, 4 an index of live wants by expiry; an older log is upgraded when opened
/// for writing).
pub const SCHEMA_VERSION: i64 = 4;

/// The writer's page cache, in KiB (`PRAGMA cache_size` takes a negative number for KiB).
const CACHE_KIB: i64 = -16 * 1024;

const SCHEMA_V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every event, in append order. body: the prost-encoded JobGraphRunEvent (kind 1 graph,
-- 2 job) or PartitionEvent (kind 3).
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    run_seq INTEGER NOT NULL,
    job_run_id TEXT,
    ref TEXT,
    status INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX events_by_ref ON events (ref, seq) WHERE ref IS NOT NULL;
CREATE INDEX events_by_run ON events (run_id, seq);
CREATE INDEX events_by_job_run ON events (job_run_id, seq) WHERE job_run_id IS NOT NULL;
CREATE INDEX events_by_ts ON events (ts);
-- Derived: latest status per partition.
CREATE TABLE partitions (
    ref TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    job_run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX partitions_by_status ON partitions (status, ref);
CREATE INDEX partitions_by_run ON partitions (run_id) WHERE status IN (2, 3);
-- Derived: everyone who asked for a partition while its current claim is held
-- (REQUESTED, SCHEDULED and DELEGATED events), cleared when the claim ends.
CREATE TABLE requesters (
    ref TEXT NOT NULL,
    client TEXT NOT NULL,
    PRIMARY KEY (ref, client)
) WITHOUT ROWID;
-- Derived: MATERIALIZE lineage of the latest build of each partition (downstream was
-- built from upstream), for staleness and dependency graphs.
CREATE TABLE deps (
    upstream TEXT NOT NULL,
    downstream TEXT NOT NULL,
    PRIMARY KEY (upstream, downstream)
) WITHOUT ROWID;
CREATE INDEX deps_by_downstream ON deps (downstream, upstream);
-- Derived: graph runs, with the owner's lease.
CREATE TABLE graph_runs (
    run_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    status INTEGER NOT NULL,
    started_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    host TEXT,
    pid INTEGER,
    lease_until INTEGER
);
CREATE INDEX graph_runs_unfinished ON graph_runs (status) WHERE status NOT IN (4, 5);
-- Derived: job runs.
CREATE TABLE job_runs (
    job_run_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    label TEXT NOT NULL,
    job_key TEXT NOT NULL,
    status INTEGER NOT NULL,
    scheduled_ts INTEGER NOT NULL,
    updated_ts INTEGER NOT NULL
);
CREATE INDEX job_runs_by_run ON job_runs (run_id);
CREATE INDEX job_runs_by_label ON job_runs (label, scheduled_ts);
";

/// What version 2 added: the latest build of each partition (job, version, digest), kept
/// across later status changes.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS builds (
    ref TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS builds_by_job ON builds (job, version);
";

/// Refuses a non-empty file that does not start with the SQLite header.
pub(crate) fn check_header(path: &Path) -> Result<(), BelError> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Ok(());
    };
    let mut header = [0u8; 16];
    let n = f.read(&mut header).unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    if n < 16 || &header != b"SQLite format 3\0" {
        return Err(BelError::NotADatabase {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Switches the file to WAL mode. While another connection creates the same file, SQLite
/// answers SQLITE_BUSY at once, without waiting in the busy handler: retry until
/// `busy_timeout` has passed.
fn set_wal(conn: &Connection, busy_timeout: Duration) -> Result<(), BelError> {
    let started = Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && started.elapsed() < busy_timeout =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return Ok(other?),
        }
    }
}

/// Sets pragmas and creates or checks the schema.
pub(crate) fn migrate(
    conn: &mut Connection,
    path: &Path,
    busy_timeout: Duration,
) -> Result<(), BelError> {
    set_wal(conn, busy_timeout)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The pages a build rewrites on every append (the ends of the events table and of its
    // indexes, the partitions and job runs it updates) stay cached: with SQLite's 2 MiB a
    // build of a few thousand jobs read them back from the file on every transaction.
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_meta: bool = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !has_meta {
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            return Err(BelError::ForeignDatabase {
                path: path.to_path_buf(),
            });
        }
        tx.execute_batch(SCHEMA_V1)?;
        tx.execute_batch(SCHEMA_V2)?;
        tx.execute_batch(super::wants::SCHEMA_V3)?;
        tx.execute_batch(super::wants::SCHEMA_V4)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1), ('application', 'databuild')",
            [SCHEMA_VERSION.to_string()],
        )?;
        tx.commit()?;
        return Ok(());
    }
    let found: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if check_version(found, path)? < SCHEMA_VERSION {
        // Builds recorded before version 2 read as "no version, no digest"; a log before
        // version 3 has no wants.
        tx.execute_batch(SCHEMA_V2)?;
        tx.execute_batch(super::wants::SCHEMA_V3)?;
        tx.execute_batch(super::wants::SCHEMA_V4)?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [SCHEMA_VERSION.to_string()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Checks the `schema_version` a log records: refused if missing (not a databuild log)
/// or newer than this build reads. Returns it.
pub(super) fn check_version(found: Option<String>, path: &Path) -> Result<i64, BelError> {
    let found: i64 =
        found
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| BelError::ForeignDatabase {
                path: path.to_path_buf(),
            })?;
    if found > SCHEMA_VERSION {
        return Err(BelError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}
