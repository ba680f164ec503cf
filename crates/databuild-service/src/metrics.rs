//! Prometheus metrics (text format at `/metrics`): counters kept by the service (builds,
//! job runs by status, streams, requests) and values read from the event log when scraped
//! (partitions being built, the claim queue). Event-log append latency is measured by
//! [`TimedLog`], which wraps the log every build of the service writes through.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering},
    sync::Arc,
    time::{Duration, Instant},
};

use databuild_bel::{
    ActiveBuild, BelError, ClaimGroup, ClaimOutcome, Event, EventLog, EventRead, JobRunRow,
    LoggedEvent, Owner, PartitionFilter, PartitionRow, ReclaimedRun, RunFilter, RunRow,
    StatusCount,
};
use databuild_proto::PartitionStatus;

/// Upper bounds (seconds) of the append latency histogram.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pub builds_started: AtomicU64,
    pub builds_succeeded: AtomicU64,
    pub builds_failed: AtomicU64,
    pub builds_errored: AtomicU64,
    pub builds_in_flight: AtomicU64,
    pub job_runs_started: AtomicU64,
    pub job_runs_succeeded: AtomicU64,
    pub job_runs_failed: AtomicU64,
    pub streams_open: AtomicU64,
    pub streams_closed_slow: AtomicU64,
    pub streams_refused: AtomicU64,
    pub connections_refused: AtomicU64,
    pub requests_refused: AtomicU64,
    pub grpc_requests: AtomicU64,
    pub http_requests: AtomicU64,
    append_buckets: [AtomicU64; BUCKETS.len()],
    append_count: AtomicU64,
    append_micros: AtomicU64,
}

impl Metrics {
    /// Adds one to `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one from `c`.
    pub fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }

    fn observe_append(&self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.append_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.append_count.fetch_add(1, Ordering::Relaxed);
        self.append_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with `active` (the claims held now) from the log.
    pub fn render(&self, active: &[ActiveBuild]) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "databuild_builds_total",
            "counter",
            "Graph runs started by this service, by outcome.",
            &[
                ("{outcome=\"succeeded\"}", get(&self.builds_succeeded)),
                ("{outcome=\"failed\"}", get(&self.builds_failed)),
                ("{outcome=\"error\"}", get(&self.builds_errored)),
            ],
        );
        metric(
            "databuild_builds_started_total",
            "counter",
            "Graph runs started by this service.",
            &[("", get(&self.builds_started))],
        );
        metric(
            "databuild_builds_in_flight",
            "gauge",
            "Graph runs of this service running now.",
            &[("", get(&self.builds_in_flight))],
        );
        let started = get(&self.job_runs_started);
        let ended = get(&self.job_runs_succeeded) + get(&self.job_runs_failed);
        metric(
            "databuild_job_runs",
            "gauge",
            "Job runs of this service's graph runs, by status.",
            &[
                ("{status=\"running\"}", started.saturating_sub(ended)),
                ("{status=\"success\"}", get(&self.job_runs_succeeded)),
                ("{status=\"failed\"}", get(&self.job_runs_failed)),
            ],
        );
        let count = |s: PartitionStatus| active.iter().filter(|a| a.status == s as i32).count();
        metric(
            "databuild_queue_depth",
            "gauge",
            "Partitions claimed (SCHEDULED) and waiting for their job, in the event log.",
            &[("", count(PartitionStatus::PartitionScheduled) as u64)],
        );
        metric(
            "databuild_partitions_building",
            "gauge",
            "Partitions being built (BUILDING) now, in the event log.",
            &[("", count(PartitionStatus::PartitionBuilding) as u64)],
        );
        metric(
            "databuild_streams_open",
            "gauge",
            "Partition event streams (gRPC and SSE) open now.",
            &[("", get(&self.streams_open))],
        );
        metric(
            "databuild_streams_closed_slow_total",
            "counter",
            "Streams closed because the consumer fell behind.",
            &[("", get(&self.streams_closed_slow))],
        );
        metric(
            "databuild_streams_refused_total",
            "counter",
            "Streams refused because their principal had as many open as allowed.",
            &[("", get(&self.streams_refused))],
        );
        metric(
            "databuild_connections_refused_total",
            "counter",
            "Connections closed at once because as many were open as allowed and none was idle.",
            &[("", get(&self.connections_refused))],
        );
        metric(
            "databuild_requests_refused_total",
            "counter",
            "Requests refused before any handler ran (host, origin, content type, credentials, role, CSRF).",
            &[("", get(&self.requests_refused))],
        );
        metric(
            "databuild_requests_total",
            "counter",
            "Requests served, by API.",
            &[
                ("{api=\"grpc\"}", get(&self.grpc_requests)),
                ("{api=\"http\"}", get(&self.http_requests)),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP databuild_bel_append_seconds Latency of event-log appends.\n# TYPE databuild_bel_append_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "databuild_bel_append_seconds_bucket{{le=\"{b}\"}} {}",
                get(&self.append_buckets[i])
            );
        }
        let n = get(&self.append_count);
        let _ = writeln!(
            out,
            "databuild_bel_append_seconds_bucket{{le=\"+Inf\"}} {n}"
        );
        let _ = writeln!(
            out,
            "databuild_bel_append_seconds_sum {}",
            get(&self.append_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "databuild_bel_append_seconds_count {n}");
        out
    }
}

/// An event log that times its appends into [`Metrics`]; everything else passes through.
#[derive(Debug)]
pub struct TimedLog {
    inner: Arc<dyn EventLog>,
    metrics: Arc<Metrics>,
}

impl TimedLog {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventLog>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    /// Awaits `append`, recording how long it took.
    async fn timed<T>(&self, append: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let r = append.await;
        self.metrics.observe_append(start.elapsed().as_secs_f64());
        r
    }
}

#[async_trait::async_trait]
impl EventLog for TimedLog {
    async fn append(&self, events: Vec<Event>) -> Result<Vec<LoggedEvent>, BelError> {
        self.timed(self.inner.append(events)).await
    }
    async fn append_or_return(&self, events: Vec<Event>) -> Result<(), (BelError, Vec<Event>)> {
        self.timed(self.inner.append_or_return(events)).await
    }
    async fn heartbeat(&self, run_id: &str, owner: &Owner, until: i64) -> Result<(), BelError> {
        self.inner.heartbeat(run_id, owner, until).await
    }
    async fn reclaim_lost_runs(
        &self,
        now_micros: i64,
        this_host: &str,
        cleared: &[String],
    ) -> Result<Vec<ReclaimedRun>, BelError> {
        self.inner
            .reclaim_lost_runs(now_micros, this_host, cleared)
            .await
    }
    async fn invalidate(&self, r: &str, reason: &str) -> Result<Vec<String>, BelError> {
        self.inner.invalidate(r, reason).await
    }
    async fn claim(
        &self,
        run_id: &str,
        client: &str,
        groups: Vec<ClaimGroup>,
    ) -> Result<Vec<ClaimOutcome>, BelError> {
        let start = Instant::now();
        let r = self.inner.claim(run_id, client, groups).await;
        self.metrics.observe_append(start.elapsed().as_secs_f64());
        r
    }
}

#[async_trait::async_trait]
impl EventRead for TimedLog {
    async fn partitions(&self, refs: &[String]) -> Result<Vec<PartitionRow>, BelError> {
        self.inner.partitions(refs).await
    }
    async fn statuses(&self, refs: &[String]) -> Result<Vec<Option<PartitionStatus>>, BelError> {
        self.inner.statuses(refs).await
    }
    async fn builds(
        &self,
        refs: &[String],
    ) -> Result<Vec<Option<databuild_bel::BuildRow>>, BelError> {
        self.inner.builds(refs).await
    }
    async fn built_by_other_version(
        &self,
        jobs: &[(String, String)],
    ) -> Result<Vec<String>, BelError> {
        self.inner.built_by_other_version(jobs).await
    }
    async fn list_partitions(&self, f: &PartitionFilter) -> Result<Vec<PartitionRow>, BelError> {
        self.inner.list_partitions(f).await
    }
    async fn status_counts(&self) -> Result<Vec<StatusCount>, BelError> {
        self.inner.status_counts().await
    }
    async fn recent_job_runs(
        &self,
        label: Option<&str>,
        limit: usize,
    ) -> Result<Vec<JobRunRow>, BelError> {
        self.inner.recent_job_runs(label, limit).await
    }
    async fn latest_partition_event(
        &self,
        r: &str,
    ) -> Result<Option<databuild_proto::PartitionEvent>, BelError> {
        self.inner.latest_partition_event(r).await
    }
    async fn partition_history(&self, r: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.inner.partition_history(r).await
    }
    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>, BelError> {
        self.inner.list_runs(f).await
    }
    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, BelError> {
        self.inner.run(run_id).await
    }
    async fn run_events(&self, run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.inner.run_events(run_id).await
    }
    async fn run_request(
        &self,
        run_id: &str,
    ) -> Result<Option<databuild_proto::GraphRequestEvent>, BelError> {
        self.inner.run_request(run_id).await
    }
    async fn job_runs(&self, run_id: &str) -> Result<Vec<JobRunRow>, BelError> {
        self.inner.job_runs(run_id).await
    }
    async fn job_run(&self, id: &str) -> Result<Option<JobRunRow>, BelError> {
        self.inner.job_run(id).await
    }
    async fn job_run_events(&self, id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.inner.job_run_events(id).await
    }
    async fn events_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedEvent>, BelError> {
        self.inner.events_after(after, limit).await
    }
    async fn wait_for_events(&self, after: i64, timeout: Duration) -> Result<(), BelError> {
        self.inner.wait_for_events(after, timeout).await
    }
    async fn lineage(
        &self,
        refs: &[String],
        downstream: bool,
    ) -> Result<Vec<(String, String)>, BelError> {
        self.inner.lineage(refs, downstream).await
    }
    async fn active_builds(&self, refs: &[String]) -> Result<Vec<ActiveBuild>, BelError> {
        self.inner.active_builds(refs).await
    }
    async fn query_partition_events(
        &self,
        q: &databuild_bel::query::PartitionQuery,
    ) -> Result<(Vec<LoggedEvent>, i64), BelError> {
        self.inner.query_partition_events(q).await
    }
    async fn wants(
        &self,
        filter: &databuild_bel::WantFilter,
    ) -> Result<Vec<databuild_bel::WantRow>, BelError> {
        self.inner.wants(filter).await
    }
    async fn want(&self, want_id: &str) -> Result<Option<databuild_bel::WantRow>, BelError> {
        self.inner.want(want_id).await
    }
    async fn want_events(&self, want_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        self.inner.want_events(want_id).await
    }
    async fn last_seq(&self) -> Result<i64, BelError> {
        self.inner.last_seq().await
    }
    async fn backfill(&self, id: &str) -> Result<Option<databuild_bel::BackfillRow>, BelError> {
        self.inner.backfill(id).await
    }
    async fn backfills(&self) -> Result<Vec<databuild_bel::BackfillRow>, BelError> {
        self.inner.backfills().await
    }
    async fn backfill_counts(
        &self,
        id: &str,
    ) -> Result<Vec<(databuild_proto::WantStatus, u64)>, BelError> {
        self.inner.backfill_counts(id).await
    }
    async fn last_tick(&self, schedule: &str) -> Result<Option<i64>, BelError> {
        self.inner.last_tick(schedule).await
    }
}
