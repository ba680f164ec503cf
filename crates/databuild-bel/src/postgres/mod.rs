//! The PostgreSQL backend, for many processes on many machines sharing one log. Every
//! write is one transaction. Appends and claims hold the write lock (a transaction-level
//! advisory lock) shared and lock each row they touch, so writes on disjoint partitions run
//! at once; a write that finds a row locked is rolled back and run again holding the write
//! lock alone, as the other writes always do (`locks.rs`). A claim is decided against the
//! state every earlier writer of its rows committed. Log positions come from a sequence;
//! readers of the log in order stop below the first position a running write may still
//! commit (`schema::SCHEMA_V5`). Reads need no lock.
//!
//! A lost connection (server restart) is retried on a new one for up to
//! [`conn::RECONNECT_WINDOW`]: a write that failed before COMMIT was rolled back and runs
//! again; one whose COMMIT got no answer is looked up by the token it wrote, so it is
//! never applied twice.

mod apply;
mod conn;
mod flush;
mod listen;
mod locks;
mod read;
mod schema;
mod state;
mod tls;
mod wants;

pub use tls::{pem_certificates, system_bundle};

use std::time::Duration;

use apply::WriteOp;
use conn::{Conn, Pool, Retry};
use locks::Mode;
use state::State;

pub(crate) use conn::describe;
pub use schema::SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION;

use crate::{
    BelError, ClaimGroup, ClaimOutcome, Event, JobRunRow, LoggedEvent, Owner, PartitionFilter,
    PartitionRow, ReclaimedRun, RunFilter, RunRow, StatusCount,
};

/// The PostgreSQL event log.
#[derive(Debug)]
pub struct PostgresEventLog {
    pool: Pool,
    notifications: listen::Notifications,
}

/// Runs `$body` (which uses the connection `$c`), retrying on a new connection after a
/// transient failure.
macro_rules! read {
    ($log:expr, |$c:ident| $body:expr) => {{
        let mut retry = Retry::new();
        loop {
            let mut $c = match $log.pool.get().await {
                Ok(c) => c,
                Err(e) => match retry.after(&$log.pool, e.into()).await {
                    None => continue,
                    Some(e) => break Err(e),
                },
            };
            let out = $body;
            match out {
                Ok(v) => {
                    $log.pool.put($c);
                    break Ok(v);
                }
                Err(e) => match retry.after(&$log.pool, e).await {
                    None => continue,
                    Some(e) => {
                        $log.pool.put($c);
                        break Err(e);
                    }
                },
            }
        }
    }};
}

/// How one try of a write ended badly.
enum Failed<T> {
    /// A row it needed was locked by another write: rolled back, to run again alone.
    Contended,
    /// Before COMMIT: the transaction was rolled back.
    Before(BelError),
    /// At COMMIT, with the result the write would have.
    AtCommit(T, BelError),
}

impl PostgresEventLog {
    /// Connects to the database named by `url` (`postgres://user:password@host:port/db`),
    /// creating the schema on first use.
    pub async fn open(url: &str) -> Result<Self, BelError> {
        let pool = Pool::new(url)?;
        let started = std::time::Instant::now();
        let mut conn = loop {
            match pool.connect().await {
                Ok(c) => break c,
                // The server is starting up: worth waiting for.
                Err(e)
                    if e.code() == Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW)
                        && started.elapsed() < conn::RECONNECT_WINDOW =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(pool.connect_error(&e)),
            }
        };
        schema::migrate(&mut conn.client, &pool.url).await?;
        pool.put(conn);
        Ok(Self {
            pool,
            notifications: listen::Notifications::default(),
        })
    }

    /// The URL of this log, password hidden.
    pub fn url(&self) -> &str {
        &self.pool.url
    }

    async fn write<O: WriteOp>(&self, op: &O) -> Result<O::Out, BelError> {
        let mut retry = Retry::new();
        let mut mode = O::MODE;
        loop {
            let mut conn = match self.pool.get().await {
                Ok(c) => c,
                Err(e) => match retry.after(&self.pool, e.into()).await {
                    None => continue,
                    Some(e) => return Err(e),
                },
            };
            let token = crate::new_id();
            match attempt(&mut conn, op, &token, mode).await {
                Ok(v) => {
                    self.pool.put(conn);
                    return Ok(v);
                }
                Err(Failed::Contended) => {
                    self.pool.put(conn);
                    mode = Mode::Exclusive;
                }
                Err(Failed::Before(e)) => {
                    self.pool.put(conn);
                    if let Some(e) = retry.after(&self.pool, e).await {
                        return Err(e);
                    }
                }
                Err(Failed::AtCommit(v, e)) => {
                    if !matches!(&e, BelError::Postgres(pg) if conn::is_transient(pg)) {
                        // The server answered: COMMIT failed and nothing was written.
                        return Err(e);
                    }
                    if let Some(e) = retry.after(&self.pool, e).await {
                        return Err(e);
                    }
                    // No answer to COMMIT: whether it happened is in the commit tokens.
                    let committed = read!(self, |c| committed(&mut c, &token).await);
                    if committed? {
                        return Ok(v);
                    }
                }
            }
        }
    }
}

/// One try of `op` in a transaction on `conn`.
async fn attempt<O: WriteOp>(
    conn: &mut Conn,
    op: &O,
    token: &str,
    mode: Mode,
) -> Result<O::Out, Failed<O::Out>> {
    let Conn { client, stmts } = conn;
    let tx = client
        .transaction()
        .await
        .map_err(|e| Failed::Before(e.into()))?;
    let out = {
        let mut st = State::begin(&tx, stmts, token, mode)
            .await
            .map_err(Failed::Before)?;
        let out = match op.run(&mut st).await {
            Ok(v) => st.finish().await.map(|()| v),
            Err(e) => Err(e),
        };
        // Whatever the write made of it (dropping the transaction rolls it back).
        if st.contended {
            return Err(Failed::Contended);
        }
        out.map_err(Failed::Before)?
    };
    match tx.commit().await {
        Ok(()) => Ok(out),
        Err(e) => Err(Failed::AtCommit(out, e.into())),
    }
}

async fn committed(c: &mut Conn, token: &str) -> Result<bool, BelError> {
    let stmt = c
        .stmts
        .get(&c.client, "SELECT 1 FROM commits WHERE token = $1")
        .await?;
    Ok(c.client.query_opt(&stmt, &[&token]).await?.is_some())
}

#[async_trait::async_trait]
impl crate::EventLog for PostgresEventLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<LoggedEvent>, BelError> {
        self.write(&apply::Append::stamped(events)).await
    }

    async fn append_or_return(&self, events: Vec<Event>) -> Result<(), (BelError, Vec<Event>)> {
        let append = apply::Append::stamped(events);
        match self.write(&append).await {
            Ok(_) => Ok(()),
            Err(e) => Err((e, append.0)),
        }
    }

    async fn heartbeat(
        &self,
        run_id: &str,
        owner: &Owner,
        lease_until_micros: i64,
    ) -> Result<(), BelError> {
        self.write(&apply::Heartbeat {
            run_id,
            owner,
            lease_until: lease_until_micros,
        })
        .await
    }

    async fn reclaim_lost_runs(
        &self,
        now_micros: i64,
        this_host: &str,
        cleared: &[String],
    ) -> Result<Vec<ReclaimedRun>, BelError> {
        self.write(&apply::Reclaim {
            now: now_micros,
            this_host,
            cleared,
        })
        .await
    }

    async fn invalidate(&self, partition_ref: &str, reason: &str) -> Result<Vec<String>, BelError> {
        self.write(&apply::Invalidate {
            partition_ref,
            reason,
        })
        .await
    }

    async fn claim(
        &self,
        run_id: &str,
        client: &str,
        groups: Vec<ClaimGroup>,
    ) -> Result<Vec<ClaimOutcome>, BelError> {
        self.write(&apply::Claim {
            run_id,
            client,
            groups,
        })
        .await
    }
}

#[async_trait::async_trait]
impl crate::EventRead for PostgresEventLog {
    async fn partitions(&self, refs: &[String]) -> Result<Vec<PartitionRow>, BelError> {
        read!(self, |c| read::partitions(&mut c, refs).await)
    }

    async fn built_by_other_version(
        &self,
        jobs: &[(String, String)],
    ) -> Result<Vec<String>, BelError> {
        read!(self, |c| read::built_by_other_version(&mut c, jobs).await)
    }

    async fn builds(&self, refs: &[String]) -> Result<Vec<Option<crate::BuildRow>>, BelError> {
        read!(self, |c| read::builds(&mut c, refs).await)
    }

    async fn statuses(
        &self,
        refs: &[String],
    ) -> Result<Vec<Option<databuild_proto::PartitionStatus>>, BelError> {
        read!(self, |c| read::statuses(&mut c, refs).await)
    }

    async fn list_partitions(
        &self,
        filter: &PartitionFilter,
    ) -> Result<Vec<PartitionRow>, BelError> {
        read!(self, |c| read::list_partitions(&mut c, filter).await)
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>, BelError> {
        read!(self, |c| read::status_counts(&mut c).await)
    }

    async fn recent_job_runs(
        &self,
        label: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRunRow>, BelError> {
        read!(self, |c| read::recent_job_runs(&mut c, label, limit).await)
    }

    async fn latest_partition_event(
        &self,
        partition_ref: &str,
    ) -> Result<Option<databuild_proto::PartitionEvent>, BelError> {
        let found = read!(self, |c| read::latest_partition_event(
            &mut c,
            partition_ref
        )
        .await)?;
        Ok(found.and_then(|e| match e.event {
            Event::Partition(p) => Some(p),
            Event::Run(_) | Event::Want(_) | Event::Backfill(_) => None,
        }))
    }

    async fn partition_history(&self, partition_ref: &str) -> Result<Vec<LoggedEvent>, BelError> {
        read!(self, |c| read::partition_history(&mut c, partition_ref)
            .await)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, BelError> {
        read!(self, |c| read::list_runs(&mut c, filter).await)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, BelError> {
        read!(self, |c| read::run(&mut c, run_id).await)
    }

    async fn wants(&self, filter: &crate::WantFilter) -> Result<Vec<crate::WantRow>, BelError> {
        read!(self, |c| wants::list(&mut c, filter).await)
    }

    async fn want(&self, want_id: &str) -> Result<Option<crate::WantRow>, BelError> {
        read!(self, |c| wants::get(&mut c, want_id).await)
    }

    async fn backfill(&self, id: &str) -> Result<Option<crate::BackfillRow>, BelError> {
        read!(self, |c| wants::get_backfill(&mut c, id).await)
    }

    async fn backfills(&self) -> Result<Vec<crate::BackfillRow>, BelError> {
        read!(self, |c| wants::list_backfills(&mut c).await)
    }

    async fn backfill_counts(
        &self,
        id: &str,
    ) -> Result<Vec<(databuild_proto::WantStatus, u64)>, BelError> {
        read!(self, |c| wants::backfill_counts(&mut c, id).await)
    }

    async fn last_seq(&self) -> Result<i64, BelError> {
        read!(self, |c| read::last_seq(&mut c).await)
    }

    async fn last_tick(&self, schedule: &str) -> Result<Option<i64>, BelError> {
        read!(self, |c| wants::last_tick(&mut c, schedule).await)
    }

    async fn run_events(&self, run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        read!(self, |c| read::run_events(&mut c, run_id).await)
    }

    async fn run_request(
        &self,
        run_id: &str,
    ) -> Result<Option<databuild_proto::GraphRequestEvent>, BelError> {
        read!(self, |c| read::run_request(&mut c, run_id).await)
    }

    async fn job_runs(&self, run_id: &str) -> Result<Vec<JobRunRow>, BelError> {
        read!(self, |c| read::job_runs(&mut c, run_id).await)
    }

    async fn job_run(&self, job_run_id: &str) -> Result<Option<JobRunRow>, BelError> {
        read!(self, |c| read::job_run(&mut c, job_run_id).await)
    }

    async fn job_run_events(&self, job_run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        read!(self, |c| read::job_run_events(&mut c, job_run_id).await)
    }

    async fn events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, BelError> {
        read!(self, |c| read::events_after(&mut c, after_seq, limit).await)
    }

    async fn wait_for_events(&self, after_seq: i64, timeout: Duration) -> Result<(), BelError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = match self.notifications.receiver(&self.pool).await {
            Ok(rx) => rx,
            Err(e) if conn::is_transient(&e) => {
                // The server is away; the caller's next read reconnects or says so.
                tokio::time::sleep(Duration::from_millis(100).min(timeout)).await;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // Listening from here on: anything committed earlier is in the table.
        rx.borrow_and_update();
        if read!(self, |c| read::last_seq(&mut c).await)? > after_seq {
            return Ok(());
        }
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                // An event above `after_seq` was committed; it can be read once no write
                // below it is still running (a later write's notification may come first).
                Ok(Ok(())) => {
                    if *rx.borrow_and_update() > after_seq
                        && read!(self, |c| read::last_seq(&mut c).await)? > after_seq
                    {
                        return Ok(());
                    }
                }
                // Timed out, or the listening connection ended: let the caller read again.
                Err(_) | Ok(Err(_)) => return Ok(()),
            }
        }
    }

    async fn lineage(
        &self,
        refs: &[String],
        downstream: bool,
    ) -> Result<Vec<(String, String)>, BelError> {
        read!(self, |c| read::lineage(&mut c, refs, downstream).await)
    }

    async fn active_builds(
        &self,
        refs: &[String],
    ) -> Result<Vec<databuild_proto::ActiveBuild>, BelError> {
        read!(self, |c| read::active_builds(&mut c, refs).await)
    }

    async fn query_partition_events(
        &self,
        query: &crate::query::PartitionQuery,
    ) -> Result<(Vec<LoggedEvent>, i64), BelError> {
        read!(self, |c| read::query_partition_events(&mut c, query).await)
    }
}
