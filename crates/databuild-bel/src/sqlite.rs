//! The embedded SQLite backend: one WAL-mode file, every write one `BEGIN IMMEDIATE`
//! transaction that applies it (`crate::apply`) over the transaction's rows
//! (`sqlite/write.rs`).

mod catalog;
mod checkpoint;
mod read_only;
mod rows;
mod schema;
mod statuses;
mod wants;
mod write;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Instant,
};

use databuild_proto::{PartitionEvent, PartitionStatus};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    apply, common, pattern, BelError, BuildRow, Event, JobRunRow, LoggedEvent, Owner,
    PartitionFilter, PartitionRow, ReclaimedRun, RunFilter, RunRow, StatusCount,
};

use rows::{query_events, read_job_run_row, read_run_row, JOB_RUN_COLUMNS, RUN_COLUMNS};
pub use schema::SCHEMA_VERSION;
use statuses::{point_statuses, sorted_statuses, STATUS_RUN};
use write::TxRows;

/// How long a write waits for another writer's lock by default.
pub const DEFAULT_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a SQLite event log is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a write waits for another writer's lock before failing with
    /// [`BelError::Busy`].
    pub busy_timeout: std::time::Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The SQLite event log.
#[derive(Debug)]
pub struct SqliteEventLog {
    path: PathBuf,
    /// Dropped (its thread stopped, its connection closed) before `conn`, so that the
    /// writer's connection is the last one and its close checkpoints the rest of the log.
    checkpointer: checkpoint::Checkpointer,
    conn: Mutex<Connection>,
    /// Opened for reading only: writes are refused.
    read_only: bool,
}

impl SqliteEventLog {
    /// Opens (creating if needed) the event log at `path`.
    pub fn open(path: &Path, options: &SqliteOptions) -> Result<Self, BelError> {
        match Self::open_writable(path, options) {
            Err(e) if read_only::is_unwritable(&e) && path.is_file() => {
                let conn = read_only::open(path).map_err(|_| e)?;
                Ok(Self {
                    path: path.to_path_buf(),
                    checkpointer: checkpoint::Checkpointer::new(path),
                    conn: Mutex::new(conn),
                    read_only: true,
                })
            }
            other => other,
        }
    }

    fn open_writable(path: &Path, options: &SqliteOptions) -> Result<Self, BelError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Some(file) = dir.ancestors().find(|a| a.exists() && !a.is_dir()) {
                return Err(BelError::NotADirectory {
                    path: path.to_path_buf(),
                    file: file.to_path_buf(),
                });
            }
            std::fs::create_dir_all(dir).map_err(|source| BelError::Unwritable {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        schema::check_header(path)?;
        let conn = Connection::open(path).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly) => {
                BelError::Unwritable {
                    path: path.parent().unwrap_or(path).to_path_buf(),
                    source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
                }
            }
            _ => BelError::Sqlite(e),
        })?;
        conn.busy_timeout(options.busy_timeout)?;
        let log = Self {
            path: path.to_path_buf(),
            checkpointer: checkpoint::Checkpointer::new(path),
            conn: Mutex::new(conn),
            read_only: false,
        };
        {
            let started = Instant::now();
            let mut conn = log.conn.lock().expect("event log lock");
            schema::migrate(&mut conn, path, options.busy_timeout)
                .map_err(|e| log.map_busy(e, started))?;
            checkpoint::install(&conn);
        }
        Ok(log)
    }

    /// The file behind this log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn map_busy(&self, e: BelError, started: Instant) -> BelError {
        match e {
            BelError::Sqlite(ref s)
                if matches!(
                    s.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                BelError::Busy {
                    path: self.path.clone(),
                    waited_ms: started.elapsed().as_millis() as u64,
                }
            }
            BelError::Sqlite(ref s)
                if s.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) =>
            {
                BelError::NotADatabase {
                    path: self.path.clone(),
                }
            }
            other => other,
        }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, BelError>,
    ) -> Result<T, BelError> {
        let started = Instant::now();
        let mut conn = self.conn.lock().expect("event log lock");
        f(&mut conn).map_err(|e| self.map_busy(e, started))
    }

    /// Runs `f` over the rows of one `BEGIN IMMEDIATE` transaction and commits it.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut TxRows<'_>) -> Result<T, BelError>,
    ) -> Result<T, BelError> {
        if self.read_only {
            return Err(BelError::ReadOnly {
                path: self.path.clone(),
            });
        }
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut rows = TxRows::new(&tx);
            let out = f(&mut rows)?;
            rows.flush()?;
            tx.commit()?;
            self.checkpointer.after_commit(conn);
            Ok(out)
        })
    }
}

const PARTITION_ROW_SQL: &str =
    "SELECT ref, status, run_id, job_run_id, seq, ts FROM partitions WHERE ref = ?1";

fn partition_row(tx: &Connection, partition_ref: &str) -> Result<Option<PartitionRow>, BelError> {
    Ok(tx
        .prepare_cached(PARTITION_ROW_SQL)?
        .query_row([partition_ref], read_partition_row)
        .optional()?)
}

fn read_partition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PartitionRow> {
    Ok(PartitionRow {
        partition_ref: r.get(0)?,
        status: PartitionStatus::try_from(r.get::<_, i32>(1)?).unwrap_or_default(),
        run_id: r.get(2)?,
        job_run_id: r.get(3)?,
        seq: r.get(4)?,
        updated_micros: r.get(5)?,
    })
}

#[async_trait::async_trait]
impl crate::EventLog for SqliteEventLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<LoggedEvent>, BelError> {
        self.write(|rows| write::now(apply::append(rows, events)))
    }

    async fn append_or_return(&self, mut events: Vec<Event>) -> Result<(), (BelError, Vec<Event>)> {
        match self.write(|rows| write::now(apply::append_in_place(rows, &mut events))) {
            Ok(_) => Ok(()),
            Err(e) => Err((e, events)),
        }
    }

    async fn heartbeat(
        &self,
        run_id: &str,
        owner: &Owner,
        lease_until_micros: i64,
    ) -> Result<(), BelError> {
        self.write(|rows| write::now(apply::heartbeat(rows, run_id, owner, lease_until_micros)))
    }

    async fn reclaim_lost_runs(
        &self,
        now: i64,
        this_host: &str,
        cleared: &[String],
    ) -> Result<Vec<ReclaimedRun>, BelError> {
        self.write(|rows| write::now(apply::reclaim_lost_runs(rows, now, this_host, cleared)))
    }

    async fn invalidate(&self, partition_ref: &str, reason: &str) -> Result<Vec<String>, BelError> {
        self.write(|rows| write::now(apply::invalidate(rows, partition_ref, reason)))
    }

    async fn claim(
        &self,
        run_id: &str,
        client: &str,
        groups: Vec<crate::ClaimGroup>,
    ) -> Result<Vec<crate::ClaimOutcome>, BelError> {
        self.write(|rows| write::now(apply::claim(rows, run_id, client, &groups)))
    }
}

#[async_trait::async_trait]
impl crate::EventRead for SqliteEventLog {
    async fn partitions(&self, refs: &[String]) -> Result<Vec<PartitionRow>, BelError> {
        self.with_conn(|conn| {
            let mut out = Vec::with_capacity(refs.len());
            if let [r] = refs {
                out.extend(partition_row(conn, r)?);
                return Ok(out);
            }
            // One read transaction for the batch: one snapshot, and one file lock instead
            // of one per ref (which cost more than the lookups themselves); one statement.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            {
                let mut stmt = tx.prepare_cached(PARTITION_ROW_SQL)?;
                for r in refs {
                    out.extend(stmt.query_row([r], read_partition_row).optional()?);
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    async fn builds(&self, refs: &[String]) -> Result<Vec<Option<BuildRow>>, BelError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let mut out = Vec::with_capacity(refs.len());
            {
                let mut stmt =
                    tx.prepare_cached("SELECT job, version, digest FROM builds WHERE ref = ?1")?;
                for r in refs {
                    out.push(
                        stmt.query_row([r], |row| {
                            Ok(BuildRow {
                                job: row.get(0)?,
                                version: row.get(1)?,
                                digest: row.get(2)?,
                            })
                        })
                        .optional()?,
                    );
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    async fn built_by_other_version(
        &self,
        jobs: &[(String, String)],
    ) -> Result<Vec<String>, BelError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let mut out = Vec::new();
            {
                // Two index ranges (below and above the version) of `builds`, kept the outer
                // loop by CROSS JOIN: without statistics SQLite would rather walk every
                // AVAILABLE partition, and `!=` would scan every build of the job.
                let mut stmt = tx.prepare_cached(
                    "SELECT b.ref FROM builds b CROSS JOIN partitions p ON p.ref = b.ref
                     WHERE b.job = ?1 AND b.version < ?2 AND p.status = ?3
                     UNION ALL
                     SELECT b.ref FROM builds b CROSS JOIN partitions p ON p.ref = b.ref
                     WHERE b.job = ?1 AND b.version > ?2 AND p.status = ?3",
                )?;
                for (job, version) in jobs {
                    let rows = stmt.query_map(
                        params![job, version, PartitionStatus::PartitionAvailable as i32],
                        |r| r.get::<_, String>(0),
                    )?;
                    for r in rows {
                        out.push(r?);
                    }
                }
            }
            tx.commit()?;
            out.sort();
            Ok(out)
        })
    }

    async fn statuses(&self, refs: &[String]) -> Result<Vec<Option<PartitionStatus>>, BelError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = if refs.len() >= STATUS_RUN && refs.windows(2).all(|w| w[0] < w[1]) {
                sorted_statuses(&tx, refs)?
            } else {
                point_statuses(&tx, refs)?
            };
            tx.commit()?;
            Ok(out)
        })
    }

    async fn list_partitions(
        &self,
        filter: &PartitionFilter,
    ) -> Result<Vec<PartitionRow>, BelError> {
        self.with_conn(|conn| {
            let mut sql = String::from(
                "SELECT ref, status, run_id, job_run_id, seq, ts FROM partitions WHERE 1 = 1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            // The longest literal start of prefix and pattern bounds an index range.
            if let Some(start) = pattern::literal_start(filter) {
                sql.push_str(" AND ref >= ? AND ref < ?");
                args.push(start.clone().into());
                args.push(format!("{start}{}", char::MAX).into());
            }
            if let Some(prefix) = filter.prefix.as_deref().filter(|p| !p.is_empty()) {
                sql.push_str(" AND substr(ref, 1, ?) = ?");
                args.push((prefix.chars().count() as i64).into());
                args.push(prefix.to_string().into());
            }
            if let Some(pattern) = filter.pattern.as_deref() {
                sql.push_str(" AND ref GLOB ?");
                args.push(pattern::to_glob(pattern).into());
            }
            if let Some(after) = filter.after.as_deref() {
                sql.push_str(" AND ref > ?");
                args.push(after.to_string().into());
            }
            if !filter.statuses.is_empty() {
                let list: Vec<String> = filter
                    .statuses
                    .iter()
                    .map(|s| (*s as i32).to_string())
                    .collect();
                sql.push_str(&format!(" AND status IN ({})", list.join(",")));
            }
            sql.push_str(" ORDER BY ref LIMIT ? OFFSET ?");
            args.push(
                (if filter.limit == 0 {
                    -1
                } else {
                    filter.limit as i64
                })
                .into(),
            );
            args.push((filter.offset as i64).into());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), read_partition_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>, BelError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT status, COUNT(*) FROM partitions GROUP BY status ORDER BY status",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter_map(|(s, n)| {
                    Some(StatusCount {
                        status: PartitionStatus::try_from(s).ok()?,
                        count: n as u64,
                    })
                })
                .collect())
        })
    }

    async fn recent_job_runs(
        &self,
        label: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRunRow>, BelError> {
        let label = label.map(str::to_string);
        self.with_conn(move |conn| {
            let limit = if limit == 0 { -1 } else { limit as i64 };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE (?1 IS NULL OR label = ?1)
                 ORDER BY scheduled_ts DESC, job_run_id DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(rusqlite::params![label, limit], read_job_run_row)?
                .collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    async fn latest_partition_event(
        &self,
        partition_ref: &str,
    ) -> Result<Option<PartitionEvent>, BelError> {
        self.with_conn(|conn| {
            let found = query_events(
                conn,
                "SELECT e.seq, e.kind, e.body FROM partitions p JOIN events e ON e.seq = p.seq WHERE p.ref = ?1",
                [partition_ref],
            )?;
            Ok(found.into_iter().next().and_then(|e| match e.event {
                Event::Partition(p) => Some(p),
                Event::Run(_) | Event::Want(_) | Event::Backfill(_) => None,
            }))
        })
    }

    async fn partition_history(&self, partition_ref: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.with_conn(|conn| {
            query_events(
                conn,
                "SELECT seq, kind, body FROM events WHERE ref = ?1 ORDER BY seq",
                [partition_ref],
            )
        })
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, BelError> {
        self.with_conn(|conn| {
            let mut sql = format!("SELECT {RUN_COLUMNS} FROM graph_runs WHERE 1 = 1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(label) = &filter.label {
                sql.push_str(" AND label = ?");
                args.push(label.clone().into());
            }
            if !filter.statuses.is_empty() {
                let list: Vec<String> = filter
                    .statuses
                    .iter()
                    .map(|s| (*s as i32).to_string())
                    .collect();
                sql.push_str(&format!(" AND status IN ({})", list.join(",")));
            }
            if let Some(from) = filter.started_from {
                sql.push_str(" AND started_ts >= ?");
                args.push(from.into());
            }
            if let Some(before) = filter.started_before {
                sql.push_str(" AND started_ts < ?");
                args.push(before.into());
            }
            sql.push_str(" ORDER BY started_ts DESC, run_id DESC LIMIT ? OFFSET ?");
            args.push(
                (if filter.limit == 0 {
                    -1
                } else {
                    filter.limit as i64
                })
                .into(),
            );
            args.push((filter.offset as i64).into());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args), read_run_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, BelError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {RUN_COLUMNS} FROM graph_runs WHERE run_id = ?1"
                ))?
                .query_row([run_id], read_run_row)
                .optional()?)
        })
    }

    async fn wants(&self, filter: &crate::WantFilter) -> Result<Vec<crate::WantRow>, BelError> {
        self.with_conn(|conn| wants::list(conn, filter))
    }

    async fn want(&self, want_id: &str) -> Result<Option<crate::WantRow>, BelError> {
        self.with_conn(|conn| wants::get(conn, want_id))
    }

    async fn backfill(&self, id: &str) -> Result<Option<crate::BackfillRow>, BelError> {
        self.with_conn(|conn| wants::get_backfill(conn, id))
    }

    async fn backfills(&self) -> Result<Vec<crate::BackfillRow>, BelError> {
        self.with_conn(|conn| wants::list_backfills(conn))
    }

    async fn backfill_counts(
        &self,
        id: &str,
    ) -> Result<Vec<(databuild_proto::WantStatus, u64)>, BelError> {
        self.with_conn(|conn| wants::backfill_counts(conn, id))
    }

    async fn last_seq(&self) -> Result<i64, BelError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
                .query_row([], |r| r.get(0))?)
        })
    }

    async fn last_tick(&self, schedule: &str) -> Result<Option<i64>, BelError> {
        self.with_conn(|conn| wants::last_tick(conn, schedule))
    }

    async fn run_events(&self, run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.with_conn(|conn| {
            query_events(
                conn,
                "SELECT seq, kind, body FROM events WHERE run_id = ?1 ORDER BY seq",
                [run_id],
            )
        })
    }

    async fn run_request(
        &self,
        run_id: &str,
    ) -> Result<Option<databuild_proto::GraphRequestEvent>, BelError> {
        self.with_conn(|conn| {
            let first = query_events(
                conn,
                "SELECT seq, kind, body FROM events WHERE run_id = ?1 ORDER BY seq LIMIT 1",
                [run_id],
            )?;
            Ok(common::run_request(first.first()))
        })
    }

    async fn job_runs(&self, run_id: &str) -> Result<Vec<JobRunRow>, BelError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE run_id = ?1 ORDER BY scheduled_ts, job_run_id"
            ))?;
            let rows = stmt.query_map([run_id], read_job_run_row)?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
    }

    async fn job_run(&self, job_run_id: &str) -> Result<Option<JobRunRow>, BelError> {
        self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {JOB_RUN_COLUMNS} FROM job_runs WHERE job_run_id = ?1"
                ))?
                .query_row([job_run_id], read_job_run_row)
                .optional()?)
        })
    }

    async fn job_run_events(&self, job_run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.with_conn(|conn| {
            query_events(
                conn,
                "SELECT seq, kind, body FROM events WHERE job_run_id = ?1 ORDER BY seq",
                [job_run_id],
            )
        })
    }

    async fn events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, BelError> {
        self.with_conn(|conn| {
            query_events(
                conn,
                "SELECT seq, kind, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                params![after_seq, if limit == 0 { -1 } else { limit as i64 }],
            )
        })
    }

    async fn wait_for_events(
        &self,
        after_seq: i64,
        timeout: std::time::Duration,
    ) -> Result<(), BelError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last: i64 = self.with_conn(|conn| {
                Ok(conn
                    .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")?
                    .query_row([], |r| r.get(0))?)
            })?;
            let now = Instant::now();
            if last > after_seq || now >= deadline {
                return Ok(());
            }
            tokio::time::sleep((deadline - now).min(std::time::Duration::from_millis(50))).await;
        }
    }

    async fn lineage(
        &self,
        refs: &[String],
        downstream: bool,
    ) -> Result<Vec<(String, String)>, BelError> {
        self.with_conn(|conn| catalog::lineage(conn, refs, downstream))
    }

    async fn active_builds(
        &self,
        refs: &[String],
    ) -> Result<Vec<databuild_proto::ActiveBuild>, BelError> {
        self.with_conn(|conn| catalog::active_builds(conn, refs))
    }

    async fn query_partition_events(
        &self,
        query: &crate::query::PartitionQuery,
    ) -> Result<(Vec<LoggedEvent>, i64), BelError> {
        self.with_conn(|conn| catalog::query_partition_events(conn, query))
    }
}
