//! JSON shapes of the HTTP API that are not `databuild.v1` messages: event-log rows,
//! logged events with their log position, and build outcomes. Shared by the server, the
//! client and the CLI's `--json` output, so none of them can disagree; `openapi.rs`
//! checks samples of each against the OpenAPI document.

use databuild_bel::{Event, JobRunRow, LoggedEvent, PartitionRow, RunRow};
use databuild_core::RunOutcome;
use databuild_proto::{
    JobGraphRunEvent, JobGraphRunStatus, JobRunStatus, PartitionEvent, PartitionManifest,
    PartitionStatus,
};
use serde::{Deserialize, Serialize};

/// An event with its position in the log (`seq`): exactly one of the two events is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEvent {
    /// Position in the log.
    pub seq: i64,
    /// A graph or job event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_graph_run_event: Option<JobGraphRunEvent>,
    /// A partition event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_event: Option<PartitionEvent>,
    /// A want event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub want_event: Option<databuild_proto::WantEvent>,
    /// A backfill event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_event: Option<databuild_proto::BackfillEvent>,
}

impl From<&LoggedEvent> for WireEvent {
    fn from(e: &LoggedEvent) -> Self {
        let mut out = Self {
            seq: e.seq,
            job_graph_run_event: None,
            partition_event: None,
            want_event: None,
            backfill_event: None,
        };
        match &e.event {
            Event::Run(r) => out.job_graph_run_event = Some(r.clone()),
            Event::Partition(p) => out.partition_event = Some(p.clone()),
            Event::Want(w) => out.want_event = Some(w.clone()),
            Event::Backfill(b) => out.backfill_event = Some(b.clone()),
        }
        out
    }
}

impl WireEvent {
    /// Back to a logged event; `None` unless exactly one event is set.
    pub fn into_logged(self) -> Option<LoggedEvent> {
        let event = match (
            self.job_graph_run_event,
            self.partition_event,
            self.want_event,
            self.backfill_event,
        ) {
            (Some(r), None, None, None) => Event::Run(r),
            (None, Some(p), None, None) => Event::Partition(p),
            (None, None, Some(w), None) => Event::Want(w),
            (None, None, None, Some(b)) => Event::Backfill(b),
            _ => return None,
        };
        Some(LoggedEvent {
            seq: self.seq,
            event,
        })
    }
}

/// A list of logged events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WireEvents {
    /// The events, in log order.
    pub events: Vec<WireEvent>,
}

/// A partition's latest state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WirePartition {
    pub partition_ref: String,
    /// e.g. `PARTITION_AVAILABLE`.
    pub status: String,
    pub job_graph_run_id: String,
    pub job_run_id: String,
    pub seq: i64,
    pub updated_micros: i64,
}

impl From<&PartitionRow> for WirePartition {
    fn from(r: &PartitionRow) -> Self {
        Self {
            partition_ref: r.partition_ref.clone(),
            status: r.status.as_str_name().to_string(),
            job_graph_run_id: r.run_id.clone(),
            job_run_id: r.job_run_id.clone(),
            seq: r.seq,
            updated_micros: r.updated_micros,
        }
    }
}

impl From<WirePartition> for PartitionRow {
    fn from(r: WirePartition) -> Self {
        Self {
            status: PartitionStatus::from_str_name(&r.status).unwrap_or_default(),
            partition_ref: r.partition_ref,
            run_id: r.job_graph_run_id,
            job_run_id: r.job_run_id,
            seq: r.seq,
            updated_micros: r.updated_micros,
        }
    }
}

/// A list of partitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WirePartitions {
    pub partitions: Vec<WirePartition>,
}

/// A graph run's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireRun {
    pub job_graph_run_id: String,
    pub label: String,
    /// e.g. `GRAPH_SUCCESS`.
    pub status: String,
    pub started_micros: i64,
    pub updated_micros: i64,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub lease_until_micros: Option<i64>,
}

impl From<&RunRow> for WireRun {
    fn from(r: &RunRow) -> Self {
        Self {
            job_graph_run_id: r.run_id.clone(),
            label: r.label.clone(),
            status: r.status.as_str_name().to_string(),
            started_micros: r.started_micros,
            updated_micros: r.updated_micros,
            host: r.host.clone(),
            pid: r.pid,
            lease_until_micros: r.lease_until_micros,
        }
    }
}

impl From<WireRun> for RunRow {
    fn from(r: WireRun) -> Self {
        Self {
            status: JobGraphRunStatus::from_str_name(&r.status).unwrap_or_default(),
            run_id: r.job_graph_run_id,
            label: r.label,
            started_micros: r.started_micros,
            updated_micros: r.updated_micros,
            host: r.host,
            pid: r.pid,
            lease_until_micros: r.lease_until_micros,
        }
    }
}

/// A list of graph runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WireRuns {
    pub runs: Vec<WireRun>,
}

/// A job run's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireJobRun {
    pub job_run_id: String,
    pub job_graph_run_id: String,
    pub label: String,
    pub job_key: String,
    /// e.g. `JOB_SUCCESS`.
    pub status: String,
    pub scheduled_micros: i64,
    pub updated_micros: i64,
}

impl From<&JobRunRow> for WireJobRun {
    fn from(r: &JobRunRow) -> Self {
        Self {
            job_run_id: r.job_run_id.clone(),
            job_graph_run_id: r.run_id.clone(),
            label: r.label.clone(),
            job_key: r.job_key.clone(),
            status: r.status.as_str_name().to_string(),
            scheduled_micros: r.scheduled_micros,
            updated_micros: r.updated_micros,
        }
    }
}

impl From<WireJobRun> for JobRunRow {
    fn from(r: WireJobRun) -> Self {
        Self {
            status: JobRunStatus::from_str_name(&r.status).unwrap_or_default(),
            job_run_id: r.job_run_id,
            run_id: r.job_graph_run_id,
            label: r.label,
            job_key: r.job_key,
            scheduled_micros: r.scheduled_micros,
            updated_micros: r.updated_micros,
        }
    }
}

/// A list of job runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireJobRuns {
    pub job_runs: Vec<WireJobRun>,
}

/// Lineage pairs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WireLineage {
    /// `(upstream, downstream)` pairs.
    pub pairs: Vec<(String, String)>,
}

/// Why a partition is in its state, down to the root cause (`databuild partitions why`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireWhy {
    pub partition_ref: String,
    /// The whole explanation in one line: the links joined by ` <- `.
    pub why: String,
    /// The last link: the root cause.
    pub root_cause: String,
}

/// A failed partition and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFailure {
    pub partition_ref: String,
    pub reason: String,
}

/// What a graph run did (the `RunOutcome` of the library), as `databuild build --json`
/// prints it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireOutcome {
    pub job_graph_run_id: String,
    pub success: bool,
    pub built: Vec<String>,
    pub delegated: Vec<String>,
    /// Made fresh without running their job (early cutoff).
    #[serde(default)]
    pub cut_off: Vec<String>,
    pub up_to_date: Vec<String>,
    pub failed: Vec<WireFailure>,
    pub job_runs: usize,
    pub cancelled: bool,
    pub manifests: Vec<PartitionManifest>,
}

impl From<&RunOutcome> for WireOutcome {
    fn from(o: &RunOutcome) -> Self {
        Self {
            job_graph_run_id: o.run_id.clone(),
            success: o.success,
            built: o.built.clone(),
            delegated: o.delegated.clone(),
            cut_off: o.cut_off.clone(),
            up_to_date: o.up_to_date.clone(),
            failed: o
                .failed
                .iter()
                .map(|(r, reason)| WireFailure {
                    partition_ref: r.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            job_runs: o.job_runs,
            cancelled: o.cancelled,
            manifests: o.manifests.clone(),
        }
    }
}

impl From<WireOutcome> for RunOutcome {
    fn from(o: WireOutcome) -> Self {
        Self {
            run_id: o.job_graph_run_id,
            success: o.success,
            up_to_date: o.up_to_date,
            built: o.built,
            delegated: o.delegated,
            cut_off: o.cut_off,
            failed: o
                .failed
                .into_iter()
                .map(|f| (f.partition_ref, f.reason))
                .collect(),
            manifests: o.manifests,
            job_runs: o.job_runs,
            cancelled: o.cancelled,
        }
    }
}

/// The state of a build started through the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireBuild {
    pub job_graph_run_id: String,
    /// `running`, `succeeded`, `failed` or `error` (databuild could not proceed).
    pub state: String,
    /// When it has ended (builds started by this service only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<WireOutcome>,
    /// When it ended with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<WireError>,
}

/// The body of every HTTP error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// A stable code from the error table, e.g. `invalid_argument`.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// Whether the service serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireHealth {
    /// `SERVING` or `NOT_SERVING` (while shutting down).
    pub status: String,
}

/// The answer to an asynchronous submit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireSubmitted {
    pub job_graph_run_id: String,
    /// Where the build's state is.
    pub status_url: String,
    /// Where its events stream (Server-Sent Events).
    pub events_url: String,
}

/// The body of `POST /api/v1/wants`: the refs to keep built, with an optional time to live
/// and SLA in the graph file's duration syntax (`30d`, `6h`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireWantRequest {
    /// Partition refs, one want each.
    #[serde(default)]
    pub refs: Vec<String>,
    /// How long the wants live (none: until cancelled).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ttl: String,
    /// How soon their partitions must be AVAILABLE (none: no deadline).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sla: String,
}
