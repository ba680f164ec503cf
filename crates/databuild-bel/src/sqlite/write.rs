//! The SQLite side of applying events: [`Rows`] over a write transaction, one cached
//! statement per row read or written (graph and job run rows kept in memory until the
//! write's end, [`TxRows::flush`]), and [`now`], which runs a write to its end.

use std::{collections::HashMap, future::Future};

use futures_util::FutureExt as _;
use rusqlite::{params, Connection, OptionalExtension};

use super::partition_row;
use crate::{
    apply::{EventRow, GraphRow, Holdings, JobRow, Rows, RunOwner},
    BelError, BuildRow, Owner, PartitionRow, WantRow,
};

/// The derived rows of the write transaction on this connection.
///
/// A graph run's row changes with every event of the run (its next position), and a job
/// run's with each of its events: they are read once per write and written once, at its
/// end ([`TxRows::flush`]), not once per event.
pub(super) struct TxRows<'a> {
    conn: &'a Connection,
    graphs: HashMap<String, Kept<GraphRow>>,
    jobs: HashMap<String, Kept<JobRow>>,
}

/// A row as this write last read or wrote it, and whether it is still to be written.
struct Kept<T> {
    row: Option<T>,
    dirty: bool,
}

/// The row `key` of `kept`, read with `load` the first time this write asks for it.
fn kept_row<T: Clone>(
    kept: &mut HashMap<String, Kept<T>>,
    key: &str,
    load: impl FnOnce() -> Result<Option<T>, BelError>,
) -> Result<Option<T>, BelError> {
    if let Some(k) = kept.get(key) {
        return Ok(k.row.clone());
    }
    let row = load()?;
    let k = Kept {
        row: row.clone(),
        dirty: false,
    };
    kept.insert(key.to_string(), k);
    Ok(row)
}

/// Sets the row `key` of `kept`, to be written at the write's end.
fn keep_row<T>(kept: &mut HashMap<String, Kept<T>>, key: &str, row: T) {
    let k = Kept {
        row: Some(row),
        dirty: true,
    };
    kept.insert(key.to_string(), k);
}

impl<'a> TxRows<'a> {
    pub(super) fn new(conn: &'a Connection) -> Self {
        Self {
            conn,
            graphs: HashMap::new(),
            jobs: HashMap::new(),
        }
    }

    /// Writes the graph and job run rows this write changed; before the commit, and
    /// before a statement that reads those tables itself.
    pub(super) fn flush(&mut self) -> Result<(), BelError> {
        for (run_id, kept) in &mut self.graphs {
            if let (true, Some(g)) = (kept.dirty, &kept.row) {
                self.conn
                    .prepare_cached(
                        "INSERT INTO graph_runs (run_id, label, status, started_ts, updated_ts, next_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT(run_id) DO UPDATE SET status = excluded.status,
                           updated_ts = excluded.updated_ts, next_seq = excluded.next_seq",
                    )?
                    .execute(params![
                        run_id,
                        g.label,
                        g.status,
                        g.started_ts,
                        g.updated_ts,
                        g.next_seq
                    ])?;
                kept.dirty = false;
            }
        }
        for (job_run_id, kept) in &mut self.jobs {
            if let (true, Some(j)) = (kept.dirty, &kept.row) {
                self.conn
                    .prepare_cached(
                        "INSERT INTO job_runs (job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT(job_run_id) DO UPDATE SET status = excluded.status,
                           updated_ts = excluded.updated_ts",
                    )?
                    .execute(params![
                        job_run_id,
                        j.run_id,
                        j.label,
                        j.job_key,
                        j.status,
                        j.scheduled_ts,
                        j.updated_ts
                    ])?;
                kept.dirty = false;
            }
        }
        Ok(())
    }
}

/// Runs `write` (over [`TxRows`]) to its end: SQLite reads and writes at once, so a write
/// never waits and is done at its first poll.
pub(super) fn now<T>(write: impl Future<Output = T>) -> T {
    write
        .now_or_never()
        .expect("a write over SQLite rows never waits")
}

impl Rows for TxRows<'_> {
    async fn graph(&mut self, run_id: &str) -> Result<Option<GraphRow>, BelError> {
        let conn = self.conn;
        kept_row(&mut self.graphs, run_id, || {
            Ok(conn
                .prepare_cached(
                    "SELECT label, status, started_ts, updated_ts, next_seq FROM graph_runs
                     WHERE run_id = ?1",
                )?
                .query_row([run_id], |r| {
                    Ok(GraphRow {
                        label: r.get(0)?,
                        status: r.get(1)?,
                        started_ts: r.get(2)?,
                        updated_ts: r.get(3)?,
                        next_seq: r.get(4)?,
                    })
                })
                .optional()?)
        })
    }

    fn put_graph(&mut self, run_id: &str, g: GraphRow) -> Result<(), BelError> {
        keep_row(&mut self.graphs, run_id, g);
        Ok(())
    }

    async fn job(&mut self, job_run_id: &str) -> Result<Option<JobRow>, BelError> {
        let conn = self.conn;
        kept_row(&mut self.jobs, job_run_id, || {
            Ok(conn
                .prepare_cached(
                    "SELECT run_id, label, job_key, status, scheduled_ts, updated_ts FROM job_runs
                     WHERE job_run_id = ?1",
                )?
                .query_row([job_run_id], |r| {
                    Ok(JobRow {
                        run_id: r.get(0)?,
                        label: r.get(1)?,
                        job_key: r.get(2)?,
                        status: r.get(3)?,
                        scheduled_ts: r.get(4)?,
                        updated_ts: r.get(5)?,
                    })
                })
                .optional()?)
        })
    }

    fn put_job(&mut self, job_run_id: &str, j: JobRow) -> Result<(), BelError> {
        keep_row(&mut self.jobs, job_run_id, j);
        Ok(())
    }

    async fn partition(&mut self, r: &str) -> Result<Option<PartitionRow>, BelError> {
        partition_row(self.conn, r)
    }

    fn put_partition(&mut self, p: PartitionRow) -> Result<(), BelError> {
        self.conn
            .prepare_cached(
                "INSERT INTO partitions (ref, status, run_id, job_run_id, seq, ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(ref) DO UPDATE SET status = excluded.status, run_id = excluded.run_id,
                   job_run_id = excluded.job_run_id, seq = excluded.seq, ts = excluded.ts",
            )?
            .execute(params![
                p.partition_ref,
                p.status as i32,
                p.run_id,
                p.job_run_id,
                p.seq,
                p.updated_micros
            ])?;
        Ok(())
    }

    async fn build(&mut self, r: &str) -> Result<Option<BuildRow>, BelError> {
        Ok(self
            .conn
            .prepare_cached("SELECT job, version, digest FROM builds WHERE ref = ?1")?
            .query_row([r], |row| {
                Ok(BuildRow {
                    job: row.get(0)?,
                    version: row.get(1)?,
                    digest: row.get(2)?,
                })
            })
            .optional()?)
    }

    fn put_build(&mut self, r: &str, b: BuildRow) -> Result<(), BelError> {
        self.conn
            .prepare_cached(
                "INSERT INTO builds (ref, job, version, digest) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(ref) DO UPDATE SET job = excluded.job, version = excluded.version,
                   digest = excluded.digest",
            )?
            .execute(params![r, b.job, b.version, b.digest])?;
        Ok(())
    }

    async fn want(&mut self, want_id: &str) -> Result<Option<WantRow>, BelError> {
        super::wants::get(self.conn, want_id)
    }

    fn put_want(&mut self, row: WantRow) -> Result<(), BelError> {
        super::wants::put(self.conn, &row)
    }

    async fn backfill(&mut self, id: &str) -> Result<Option<crate::BackfillRow>, BelError> {
        super::wants::get_backfill(self.conn, id)
    }

    fn put_backfill(&mut self, row: crate::BackfillRow) -> Result<(), BelError> {
        super::wants::put_backfill(self.conn, &row)
    }

    fn remove_partition(&mut self, r: &str) -> Result<(), BelError> {
        self.conn
            .prepare_cached("DELETE FROM partitions WHERE ref = ?1")?
            .execute([r])?;
        Ok(())
    }

    async fn insert_event(&mut self, e: EventRow) -> Result<i64, BelError> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (event_id, kind, run_id, run_seq, job_run_id, ref, status, ts, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                e.event_id,
                e.kind,
                e.run_id,
                e.run_seq,
                e.job_run_id,
                e.partition_ref,
                e.status,
                e.ts,
                e.body
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn add_requesters(&mut self, r: &str, clients: &[String]) -> Result<(), BelError> {
        let mut insert = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO requesters (ref, client) VALUES (?1, ?2)")?;
        for c in clients {
            insert.execute(params![r, c])?;
        }
        Ok(())
    }

    fn clear_requesters(&mut self, r: &str) -> Result<(), BelError> {
        self.conn
            .prepare_cached("DELETE FROM requesters WHERE ref = ?1")?
            .execute([r])?;
        Ok(())
    }

    fn replace_deps(&mut self, downstream: &str, upstreams: Vec<String>) -> Result<(), BelError> {
        self.conn
            .prepare_cached("DELETE FROM deps WHERE downstream = ?1")?
            .execute([downstream])?;
        let mut insert = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO deps (upstream, downstream) VALUES (?1, ?2)")?;
        for u in upstreams {
            insert.execute(params![u, downstream])?;
        }
        Ok(())
    }

    async fn downstream(&mut self, upstream: &str) -> Result<Vec<String>, BelError> {
        // Lineage first, then each dependent's status (read by the caller): the join
        // written the other way round lets SQLite scan every AVAILABLE partition.
        Ok(self
            .conn
            .prepare_cached("SELECT downstream FROM deps WHERE upstream = ?1 ORDER BY downstream")?
            .query_map([upstream], |row| row.get(0))?
            .collect::<Result<_, _>>()?)
    }

    async fn unfinished_runs(&mut self) -> Result<Vec<RunOwner>, BelError> {
        self.flush()?;
        Ok(self
            .conn
            .prepare_cached(
                "SELECT run_id, host, pid, lease_until FROM graph_runs WHERE status NOT IN (4, 5)",
            )?
            .query_map([], |r| {
                Ok(RunOwner {
                    run_id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    lease_until: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    async fn holdings(&mut self, run_id: &str) -> Result<Holdings, BelError> {
        self.flush()?;
        let held = self
            .conn
            .prepare_cached(
                "SELECT ref, job_run_id FROM partitions WHERE run_id = ?1 AND status IN (2, 3)
                 ORDER BY ref",
            )?
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let jobs = self
            .conn
            .prepare_cached(
                "SELECT job_run_id, label, job_key FROM job_runs WHERE run_id = ?1 AND status NOT IN (3, 4)
                 ORDER BY scheduled_ts, job_run_id",
            )?
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        Ok((held, jobs))
    }

    async fn set_lease(
        &mut self,
        run_id: &str,
        owner: &Owner,
        lease_until: i64,
    ) -> Result<bool, BelError> {
        self.flush()?;
        let n = self
            .conn
            .prepare_cached(
                "UPDATE graph_runs SET host = ?2, pid = ?3, lease_until = ?4 WHERE run_id = ?1",
            )?
            .execute(params![run_id, owner.host, owner.pid, lease_until])?;
        Ok(n > 0)
    }
}
