//! The build event log (BEL): an append-only, validated log of graph, job, partition and
//! want events, with derived views (latest status per partition, runs, job runs) kept in step in
//! the same transaction. Backends implement [`EventLog`] (reads in [`EventRead`], writes on
//! top); [`open`] picks one from a URL.

mod apply;
mod cause;
mod cluster;
mod common;
mod error;
mod model;
mod pattern;
mod postgres;
pub mod query;
mod sqlite;
pub mod transitions;

use std::{path::Path, sync::Arc, time::Duration};

pub use apply::owner_lost;
pub use cause::legacy_cause;
pub use cluster::{cluster_job, ClusterJob};
pub use databuild_proto::ActiveBuild;
pub use error::BelError;
pub use model::{
    backfill_want_id, BackfillRow, BuildRow, ClaimGroup, ClaimOutcome, Event, JobRunRow,
    LoggedEvent, Owner, PartitionFilter, PartitionRow, ReclaimedRun, RunFilter, RunRow,
    StatusCount, WantFilter, WantRow,
};
pub use postgres::{pem_certificates, system_bundle, PostgresEventLog, POSTGRES_SCHEMA_VERSION};
pub use sqlite::{SqliteEventLog, SqliteOptions, DEFAULT_BUSY_TIMEOUT, SCHEMA_VERSION};

/// Reading the event log: the derived views (partitions, graph runs, job runs, lineage,
/// claims) and the events themselves. Every backend implements it, and so does a log read
/// from elsewhere (a service's, over its API), which cannot be written to: code that only
/// reads takes a `&dyn EventRead`.
#[async_trait::async_trait]
pub trait EventRead: Send + Sync + std::fmt::Debug {
    /// Latest state of each of `refs` that has any (missing refs are absent from the result).
    async fn partitions(&self, refs: &[String]) -> Result<Vec<PartitionRow>, BelError>;

    /// What the latest build of each of `refs` was made by and of, in the order of `refs`
    /// (None: never built, or built before the log recorded it).
    async fn builds(&self, refs: &[String]) -> Result<Vec<Option<BuildRow>>, BelError>;

    /// The AVAILABLE partitions whose latest build was made by one of the jobs of `jobs`
    /// (`(label, version)` pairs) at another version than the one given, sorted.
    async fn built_by_other_version(
        &self,
        jobs: &[(String, String)],
    ) -> Result<Vec<String>, BelError>;

    /// The latest status of each of `refs`, in the order of `refs` (None: no status yet),
    /// read in one snapshot. What the planner needs of millions of refs, without the
    /// rows' other columns.
    async fn statuses(
        &self,
        refs: &[String],
    ) -> Result<Vec<Option<databuild_proto::PartitionStatus>>, BelError> {
        let found: std::collections::HashMap<String, databuild_proto::PartitionStatus> = self
            .partitions(refs)
            .await?
            .into_iter()
            .map(|r| (r.partition_ref, r.status))
            .collect();
        Ok(refs.iter().map(|r| found.get(r).copied()).collect())
    }

    /// Lists partitions' latest states.
    async fn list_partitions(
        &self,
        filter: &PartitionFilter,
    ) -> Result<Vec<PartitionRow>, BelError>;

    /// How many partitions have each latest status (statuses without any are absent).
    async fn status_counts(&self) -> Result<Vec<StatusCount>, BelError>;

    /// The most recent job runs (by scheduling time, newest first), of one job label or
    /// of all, at most `limit`.
    async fn recent_job_runs(
        &self,
        label: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRunRow>, BelError>;

    /// The latest partition event of `partition_ref`.
    async fn latest_partition_event(
        &self,
        partition_ref: &str,
    ) -> Result<Option<databuild_proto::PartitionEvent>, BelError>;

    /// Every event about `partition_ref`, oldest first.
    async fn partition_history(&self, partition_ref: &str) -> Result<Vec<LoggedEvent>, BelError>;

    /// Graph runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, BelError>;

    /// One graph run's summary.
    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, BelError>;

    /// Every event of one graph run (graph, job and partition events), in log order.
    async fn run_events(&self, run_id: &str) -> Result<Vec<LoggedEvent>, BelError>;

    /// What graph run `run_id` was asked for: the request on its GRAPH_STARTED event (None
    /// for an unknown run or one recorded without it). This fallback reads every event of
    /// the run; backends read only the first.
    async fn run_request(
        &self,
        run_id: &str,
    ) -> Result<Option<databuild_proto::GraphRequestEvent>, BelError> {
        Ok(common::run_request(self.run_events(run_id).await?.first()))
    }

    /// Job runs of one graph run.
    async fn job_runs(&self, run_id: &str) -> Result<Vec<JobRunRow>, BelError>;

    /// One job run.
    async fn job_run(&self, job_run_id: &str) -> Result<Option<JobRunRow>, BelError>;

    /// Every event of one job run, in log order.
    async fn job_run_events(&self, job_run_id: &str) -> Result<Vec<LoggedEvent>, BelError>;

    /// Events with a log position greater than `after_seq`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, BelError>;

    /// Returns once an event with a log position greater than `after_seq` may have been
    /// appended (by any process), or when `timeout` has passed; the caller reads with
    /// [`EventRead::events_after`] either way. PostgreSQL is woken by LISTEN/NOTIFY; SQLite
    /// checks the log every 50 ms.
    async fn wait_for_events(&self, after_seq: i64, timeout: Duration) -> Result<(), BelError>;

    /// Lineage pairs `(upstream, downstream)` of the latest builds: those whose downstream
    /// is one of `refs` (`downstream = false`) or whose upstream is (`downstream = true`).
    async fn lineage(
        &self,
        refs: &[String],
        downstream: bool,
    ) -> Result<Vec<(String, String)>, BelError>;

    /// Claims held right now (SCHEDULED or BUILDING) among `refs`, or all if `refs` is empty.
    async fn active_builds(&self, refs: &[String]) -> Result<Vec<ActiveBuild>, BelError>;

    /// Partition events matching `query` (validated: see [`query::PartitionQuery`]) and
    /// how many match before limit and offset.
    async fn query_partition_events(
        &self,
        query: &query::PartitionQuery,
    ) -> Result<(Vec<LoggedEvent>, i64), BelError>;

    /// The wants `filter` selects, ordered by id. A log read from elsewhere may not serve
    /// them.
    async fn wants(&self, filter: &WantFilter) -> Result<Vec<WantRow>, BelError> {
        let _ = filter;
        Err(BelError::Remote(
            "this event log does not serve wants".into(),
        ))
    }

    /// The latest state of want `want_id`.
    async fn want(&self, want_id: &str) -> Result<Option<WantRow>, BelError> {
        let _ = want_id;
        Err(BelError::Remote(
            "this event log does not serve wants".into(),
        ))
    }

    /// The events of want `want_id`, in log order (stored with the want id as their run).
    async fn want_events(&self, want_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        Ok(self
            .run_events(want_id)
            .await?
            .into_iter()
            .filter(|e| matches!(e.event, Event::Want(_)))
            .collect())
    }

    /// The latest state of backfill `backfill_id`.
    async fn backfill(&self, backfill_id: &str) -> Result<Option<BackfillRow>, BelError> {
        let _ = backfill_id;
        Err(BelError::Remote(
            "this event log does not serve backfills".into(),
        ))
    }

    /// Every backfill, newest first.
    async fn backfills(&self) -> Result<Vec<BackfillRow>, BelError> {
        Err(BelError::Remote(
            "this event log does not serve backfills".into(),
        ))
    }

    /// How many wants of backfill `backfill_id` have each status.
    async fn backfill_counts(
        &self,
        backfill_id: &str,
    ) -> Result<Vec<(databuild_proto::WantStatus, u64)>, BelError> {
        let _ = backfill_id;
        Err(BelError::Remote(
            "this event log does not serve backfills".into(),
        ))
    }

    /// The position of the last event in the log (0 when empty).
    async fn last_seq(&self) -> Result<i64, BelError> {
        Err(BelError::Remote(
            "this event log does not serve its position".into(),
        ))
    }

    /// The latest tick recorded for schedule `schedule` (microseconds), if any.
    async fn last_tick(&self, schedule: &str) -> Result<Option<i64>, BelError> {
        let _ = schedule;
        Err(BelError::Remote(
            "this event log does not serve wants".into(),
        ))
    }
}

/// The event log a process writes: everything of [`EventRead`], and the writes. Appends
/// are atomic per batch: either every event of the batch is durable and the derived views
/// reflect it, or the call fails and nothing was written. Every write of the log goes
/// through these methods, so a log that cannot be written implements [`EventRead`] only.
#[async_trait::async_trait]
pub trait EventLog: EventRead {
    /// Validates and appends `events` in one transaction. Missing event ids and timestamps
    /// are filled in, and graph-run event `sequence` numbers are assigned. Returns the
    /// events as stored.
    async fn append(&self, events: Vec<Event>) -> Result<Vec<LoggedEvent>, BelError>;

    /// [`EventLog::append`] for a writer that needs nothing back but, should the write
    /// fail, its events, to write them again (a retry keeps the ids and times filled in).
    /// Nothing is copied to keep them.
    async fn append_or_return(&self, events: Vec<Event>) -> Result<(), (BelError, Vec<Event>)>;

    /// Records (or renews) the lease of a live graph run.
    async fn heartbeat(
        &self,
        run_id: &str,
        owner: &Owner,
        lease_until_micros: i64,
    ) -> Result<(), BelError>;

    /// Fails every unfinished graph run whose owner is gone (lease expired, or a dead
    /// process on this host; see [`owner_lost`]): its claimed partitions become FAILED
    /// with cause `OWNER_RUN_LOST` (reason "owner run lost"), its jobs and the run FAILED. A run owned by
    /// `this_host` is reclaimed only if it is in `cleared`: the caller has stopped the
    /// job processes it left on this host, so that none of them still writes a partition
    /// that is claimed again. Returns what was reclaimed.
    async fn reclaim_lost_runs(
        &self,
        now_micros: i64,
        this_host: &str,
        cleared: &[String],
    ) -> Result<Vec<ReclaimedRun>, BelError>;

    /// Marks AVAILABLE `partition_ref` STALE with `reason`, and transitively every
    /// partition built from it. Returns the refs made stale, `partition_ref` first.
    async fn invalidate(&self, partition_ref: &str, reason: &str) -> Result<Vec<String>, BelError>;

    /// Claims partitions for graph run `run_id`, group by group (a group is a task's
    /// outputs): a group is claimed whole (SCHEDULED events) unless one of its refs is held
    /// by another unfinished run, in which case the held refs get DELEGATED events naming
    /// the owner and nothing of the group is claimed. One transaction for all groups.
    async fn claim(
        &self,
        run_id: &str,
        client: &str,
        groups: Vec<ClaimGroup>,
    ) -> Result<Vec<ClaimOutcome>, BelError>;
}

/// Opens the event log named by `url`: `sqlite:///abs/path`, `sqlite://rel/path` or a
/// plain path (relative ones resolve against `base`), created if missing; or
/// `postgres://user:password@host:port/database` (also `postgresql://`), whose schema is
/// created on first use. A `sqlite://` URL may end in `?busy_timeout_ms=N`: how long a
/// write waits for another writer's lock (default [`DEFAULT_BUSY_TIMEOUT`]). Must be
/// called within a tokio runtime (a PostgreSQL log's connections run on it).
pub async fn open(url: &str, base: &Path) -> Result<Arc<dyn EventLog>, BelError> {
    if is_postgres_url(url) {
        return Ok(Arc::new(PostgresEventLog::open(url).await?));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        let is_scheme = scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if is_scheme && scheme != "sqlite" {
            return Err(BelError::UnsupportedBackend {
                url: url.to_string(),
            });
        }
    }
    let (path, params) = match url.strip_prefix("sqlite://") {
        Some(rest) => match rest.split_once('?') {
            Some((path, params)) => (path, Some(params)),
            None => (rest, None),
        },
        None => (url, None),
    };
    if path.is_empty() {
        return Err(BelError::InvalidUrl {
            url: url.to_string(),
        });
    }
    if path == ":memory:" {
        return Err(BelError::NotDurable {
            url: url.to_string(),
        });
    }
    let mut options = SqliteOptions::default();
    for param in params.into_iter().flat_map(|p| p.split('&')) {
        let bad = |detail: String| BelError::InvalidUrlParameter {
            url: url.to_string(),
            detail,
        };
        match param.split_once('=') {
            Some(("busy_timeout_ms", ms)) => {
                let ms: u64 = ms.parse().map_err(|_| {
                    bad(format!(
                        "`busy_timeout_ms` must be a whole number of milliseconds (got `{ms}`)"
                    ))
                })?;
                options.busy_timeout = std::time::Duration::from_millis(ms);
            }
            _ => return Err(bad(format!("unknown parameter `{param}`"))),
        }
    }
    let path = base.join(path);
    Ok(Arc::new(SqliteEventLog::open(&path, &options)?))
}

/// Whether `url` names a PostgreSQL event log.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Gives `event` its id and timestamp (now) if it has none, as an append would: an event
/// kept to be written later then says when it happened, not when it was written.
pub fn stamp(event: &mut Event) {
    common::stamp(event);
}

/// A new UUIDv7 as a string.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
