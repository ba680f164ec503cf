//! The PostgreSQL schema, its version, and creating or checking it on first use.

use std::path::PathBuf;

use tokio_postgres::Client;

use crate::BelError;

/// The schema version this build writes and reads (versioned apart from SQLite's; 2 added
/// `builds`, 3 `wants` and `backfills`, 4 an index of live wants by expiry, 5 log positions
/// from a sequence, reserved under a lock a reader can see; an older database is upgraded
/// on first use).
pub const SCHEMA_VERSION: i64 = 5;

/// Key of the transaction-level advisory lock every write holds: shared by the writes that
/// lock the rows they touch (appends, claims), exclusive for the others (and for creating
/// the schema), whichever process or machine they run on.
pub(super) const WRITE_LOCK: i64 = 0x6461_7461_6275_696c; // "databuil"

/// What version 5 added: log positions come from `events_seq`. A write reserves its
/// positions with `databuild_reserve(n)`, which first takes a shared transaction-level
/// advisory lock keyed by the next position (a bigint key below 2^62; the write lock's key
/// is above it, row locks use the two-integer form), then takes `n` values. Positions
/// below `databuild_horizon()` are final: every write that reserved one has ended. It
/// reads the next position first and the lowest held reservation second, so a write that
/// reserved before the first read is seen by the second.
pub(super) const SCHEMA_V5: &str = r#"
CREATE SEQUENCE IF NOT EXISTS events_seq;
SELECT setval('events_seq', coalesce((SELECT max(seq) FROM events), 0) + 1, false);
CREATE OR REPLACE FUNCTION databuild_reserve(n integer) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE k bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO k FROM events_seq;
    PERFORM pg_advisory_xact_lock_shared(k);
    RETURN ARRAY(SELECT nextval('events_seq') FROM generate_series(1, n));
END $$;
CREATE OR REPLACE FUNCTION databuild_horizon() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE upcoming bigint;
DECLARE held bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO upcoming FROM events_seq;
    SELECT min((l.classid::int8 << 32) | l.objid::int8) INTO held
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid::int8 < 1073741824;
    RETURN least(upcoming, coalesce(held, upcoming));
END $$;
"#;

/// The channel on which every append notifies the last log position it wrote.
pub(super) const CHANNEL: &str = "databuild_events";

// Refs and run ids sort bytewise (`COLLATE "C"`), as in SQLite. Times are microseconds.
const SCHEMA_V1: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every event, in log order (seq from events_seq; see SCHEMA_V5 for when a position is
-- final). body: the prost-encoded JobGraphRunEvent (kind 1 graph, 2 job) or
-- PartitionEvent (kind 3).
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    run_seq BIGINT NOT NULL,
    job_run_id TEXT,
    ref TEXT COLLATE "C",
    status INTEGER NOT NULL,
    ts BIGINT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX events_by_ref ON events (ref, seq) WHERE ref IS NOT NULL;
CREATE INDEX events_by_run ON events (run_id, seq);
CREATE INDEX events_by_job_run ON events (job_run_id, seq) WHERE job_run_id IS NOT NULL;
CREATE INDEX events_by_ts ON events (ts);
-- Derived: latest status per partition.
CREATE TABLE partitions (
    ref TEXT COLLATE "C" PRIMARY KEY,
    status INTEGER NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    job_run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL
);
CREATE INDEX partitions_by_status ON partitions (status, ref);
CREATE INDEX partitions_by_run ON partitions (run_id) WHERE status IN (2, 3);
-- Derived: everyone who asked for a partition while its current claim is held.
CREATE TABLE requesters (
    ref TEXT COLLATE "C" NOT NULL,
    client TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (ref, client)
);
-- Derived: MATERIALIZE lineage of the latest build of each partition.
CREATE TABLE deps (
    upstream TEXT COLLATE "C" NOT NULL,
    downstream TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (upstream, downstream)
);
CREATE INDEX deps_by_downstream ON deps (downstream, upstream);
-- Derived: graph runs, with the owner's lease.
CREATE TABLE graph_runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    label TEXT NOT NULL,
    status INTEGER NOT NULL,
    started_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL,
    next_seq BIGINT NOT NULL,
    host TEXT,
    pid BIGINT,
    lease_until BIGINT
);
CREATE INDEX graph_runs_unfinished ON graph_runs (status) WHERE status NOT IN (4, 5);
-- Derived: job runs.
CREATE TABLE job_runs (
    job_run_id TEXT COLLATE "C" PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL,
    label TEXT NOT NULL,
    job_key TEXT NOT NULL,
    status INTEGER NOT NULL,
    scheduled_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX job_runs_by_run ON job_runs (run_id);
CREATE INDEX job_runs_by_label ON job_runs (label, scheduled_ts);
-- Tokens of recent write transactions: after a connection lost during COMMIT, whether
-- the write happened. Pruned after an hour.
CREATE TABLE commits (token TEXT PRIMARY KEY, ts BIGINT NOT NULL);
CREATE INDEX commits_by_ts ON commits (ts);
"#;

/// What version 2 added: the latest build of each partition (job, version, digest).
const SCHEMA_V2: &str = r#"
CREATE TABLE IF NOT EXISTS builds (
    ref TEXT COLLATE "C" PRIMARY KEY,
    job TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_by_job ON builds (job, version);
"#;

/// Creates the schema in an empty database, or checks the version of an existing one.
/// Runs under the write lock, so concurrent first uses create it once.
pub(super) async fn migrate(client: &mut Client, url: &str) -> Result<(), BelError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    let has_meta = tx
        .query_opt(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'meta'",
            &[],
        )
        .await?
        .is_some();
    if !has_meta {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .await?
            .get(0);
        if tables > 0 {
            return Err(BelError::ForeignPostgresDatabase {
                url: url.to_string(),
            });
        }
        tx.batch_execute(SCHEMA_V1).await?;
        tx.batch_execute(SCHEMA_V2).await?;
        tx.batch_execute(super::wants::SCHEMA_V3).await?;
        tx.batch_execute(super::wants::SCHEMA_V4).await?;
        tx.batch_execute(SCHEMA_V5).await?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1), ('application', 'databuild')",
            &[&SCHEMA_VERSION.to_string()],
        )
        .await?;
        tx.commit().await?;
        return Ok(());
    }
    let found: Option<String> = tx
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await?
        .map(|r| r.get(0));
    let found: i64 =
        found
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| BelError::ForeignPostgresDatabase {
                url: url.to_string(),
            })?;
    if found > SCHEMA_VERSION {
        return Err(BelError::NewerSchema {
            path: PathBuf::from(url),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        tx.batch_execute(SCHEMA_V2).await?;
        tx.batch_execute(super::wants::SCHEMA_V3).await?;
        tx.batch_execute(super::wants::SCHEMA_V4).await?;
        tx.batch_execute(SCHEMA_V5).await?;
        tx.execute(
            "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
            &[&SCHEMA_VERSION.to_string()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
