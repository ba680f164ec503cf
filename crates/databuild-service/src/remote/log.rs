//! [`RemoteLog`]: the event log of a databuild service, read over its HTTP API. It
//! implements [`EventRead`] only: the service writes its own log (builds go through the
//! service), so nothing can ask a `RemoteLog` to write.

use std::time::{Duration, Instant};

use databuild_bel::{
    query::PartitionQuery, ActiveBuild, BelError, EventRead, JobRunRow, LoggedEvent,
    PartitionFilter, PartitionRow, RunFilter, RunRow, StatusCount,
};
use databuild_proto::{
    GetActiveBuildStatusRequest, GetActiveBuildStatusResponse, GetLatestPartitionEventRequest,
    GetLatestPartitionEventResponse, PartitionEvent, PartitionRef,
};

use super::{query, segment, Client, ClientError};
use crate::wire::{
    WireEvents, WireJobRun, WireJobRuns, WireLineage, WirePartitions, WireRun, WireRuns,
};

/// Refs per request when asking for many.
const REFS_PER_REQUEST: usize = 200;
/// How often `wait_for_events` looks.
const POLL: Duration = Duration::from_millis(100);

/// The event log of the service `client` talks to.
#[derive(Debug, Clone)]
pub struct RemoteLog {
    client: Client,
}

impl RemoteLog {
    /// Reads the log of the service behind `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn bel(e: ClientError) -> BelError {
    BelError::Remote(e.to_string())
}

fn events(w: WireEvents) -> Vec<LoggedEvent> {
    w.events
        .into_iter()
        .filter_map(|e| e.into_logged())
        .collect()
}

/// A read the service's HTTP API does not serve.
fn not_served(what: &str) -> BelError {
    BelError::Remote(format!(
        "{what} is not available through `--remote`: the service's API does not serve it; run the command on the service's machine, without `--remote`"
    ))
}

/// `Ok(None)` for a 404.
fn optional<T>(r: Result<T, ClientError>) -> Result<Option<T>, BelError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(bel(e)),
    }
}

#[async_trait::async_trait]
impl EventRead for RemoteLog {
    async fn partitions(&self, refs: &[String]) -> Result<Vec<PartitionRow>, BelError> {
        let mut out = Vec::new();
        for chunk in refs.chunks(REFS_PER_REQUEST) {
            let q = query(chunk.iter().map(|r| ("ref", r.as_str())));
            let w: WirePartitions = self
                .client
                .get(&format!("/api/v1/partitions?{q}"))
                .await
                .map_err(bel)?;
            out.extend(w.partitions.into_iter().map(PartitionRow::from));
        }
        Ok(out)
    }

    async fn list_partitions(&self, f: &PartitionFilter) -> Result<Vec<PartitionRow>, BelError> {
        let limit = f.limit.to_string();
        let offset = f.offset.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![("limit", &limit), ("offset", &offset)];
        pairs.extend(f.statuses.iter().map(|s| ("status", s.as_str_name())));
        if let Some(p) = &f.prefix {
            pairs.push(("prefix", p));
        }
        if let Some(p) = &f.pattern {
            pairs.push(("pattern", p));
        }
        if let Some(a) = &f.after {
            pairs.push(("after", a));
        }
        let w: WirePartitions = self
            .client
            .get(&format!("/api/v1/partitions?{}", query(pairs)))
            .await
            .map_err(bel)?;
        Ok(w.partitions.into_iter().map(PartitionRow::from).collect())
    }

    async fn builds(&self, _: &[String]) -> Result<Vec<Option<databuild_bel::BuildRow>>, BelError> {
        Err(not_served("reading what partitions were built by"))
    }

    async fn built_by_other_version(
        &self,
        _: &[(String, String)],
    ) -> Result<Vec<String>, BelError> {
        Err(not_served("finding outdated partitions"))
    }

    async fn status_counts(&self) -> Result<Vec<StatusCount>, BelError> {
        Err(not_served("counting partitions by status"))
    }

    async fn recent_job_runs(&self, _: Option<&str>, _: usize) -> Result<Vec<JobRunRow>, BelError> {
        Err(not_served("listing recent job runs"))
    }

    async fn latest_partition_event(&self, r: &str) -> Result<Option<PartitionEvent>, BelError> {
        let req = GetLatestPartitionEventRequest {
            partition_ref: Some(PartitionRef::new(r)),
        };
        let resp: Option<GetLatestPartitionEventResponse> =
            optional(self.client.post("/api/v1/partitions/latest", &req).await)?;
        Ok(resp.and_then(|r| r.event))
    }

    async fn partition_history(&self, r: &str) -> Result<Vec<LoggedEvent>, BelError> {
        let path = format!("/api/v1/partitions/history?{}", query([("ref", r)]));
        Ok(events(self.client.get(&path).await.map_err(bel)?))
    }

    async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>, BelError> {
        let limit = f.limit.to_string();
        let offset = f.offset.to_string();
        let mut pairs: Vec<(&str, &str)> = vec![("limit", &limit), ("offset", &offset)];
        pairs.extend(f.statuses.iter().map(|s| ("status", s.as_str_name())));
        if let Some(l) = &f.label {
            pairs.push(("label", l));
        }
        let from = f.started_from.map(|m| m.to_string());
        if let Some(m) = &from {
            pairs.push(("startedFromMicros", m));
        }
        let before = f.started_before.map(|m| m.to_string());
        if let Some(m) = &before {
            pairs.push(("startedBeforeMicros", m));
        }
        let w: WireRuns = self
            .client
            .get(&format!("/api/v1/runs?{}", query(pairs)))
            .await
            .map_err(bel)?;
        Ok(w.runs.into_iter().map(RunRow::from).collect())
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>, BelError> {
        let path = format!("/api/v1/runs/{}", segment(run_id));
        Ok(optional::<WireRun>(self.client.get(&path).await)?.map(RunRow::from))
    }

    async fn run_events(&self, run_id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        let path = format!("/api/v1/runs/{}/events", segment(run_id));
        Ok(events(self.client.get(&path).await.map_err(bel)?))
    }

    async fn job_runs(&self, run_id: &str) -> Result<Vec<JobRunRow>, BelError> {
        let path = format!("/api/v1/runs/{}/jobs", segment(run_id));
        let w: WireJobRuns = self.client.get(&path).await.map_err(bel)?;
        Ok(w.job_runs.into_iter().map(JobRunRow::from).collect())
    }

    async fn job_run(&self, id: &str) -> Result<Option<JobRunRow>, BelError> {
        let path = format!("/api/v1/jobs/{}", segment(id));
        Ok(optional::<WireJobRun>(self.client.get(&path).await)?.map(JobRunRow::from))
    }

    async fn job_run_events(&self, id: &str) -> Result<Vec<LoggedEvent>, BelError> {
        let path = format!("/api/v1/jobs/{}/events", segment(id));
        Ok(events(self.client.get(&path).await.map_err(bel)?))
    }

    async fn events_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedEvent>, BelError> {
        let limit = limit.clamp(1, databuild_bel::query::MAX_LIMIT as usize);
        let path = format!("/api/v1/log?after={after}&limit={limit}");
        Ok(events(self.client.get(&path).await.map_err(bel)?))
    }

    async fn wait_for_events(&self, after: i64, timeout: Duration) -> Result<(), BelError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.events_after(after, 1).await?.is_empty() {
                break;
            }
            tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        Ok(())
    }

    async fn lineage(
        &self,
        refs: &[String],
        downstream: bool,
    ) -> Result<Vec<(String, String)>, BelError> {
        let mut out = Vec::new();
        let flag = if downstream { "true" } else { "false" };
        for chunk in refs.chunks(REFS_PER_REQUEST) {
            let q = query(
                chunk
                    .iter()
                    .map(|r| ("ref", r.as_str()))
                    .chain([("downstream", flag)]),
            );
            let w: WireLineage = self
                .client
                .get(&format!("/api/v1/lineage?{q}"))
                .await
                .map_err(bel)?;
            out.extend(w.pairs);
        }
        Ok(out)
    }

    async fn active_builds(&self, refs: &[String]) -> Result<Vec<ActiveBuild>, BelError> {
        let req = GetActiveBuildStatusRequest {
            partition_refs: refs.iter().map(|r| PartitionRef::new(r.clone())).collect(),
        };
        let resp: GetActiveBuildStatusResponse = self
            .client
            .post("/api/v1/builds/active", &req)
            .await
            .map_err(bel)?;
        Ok(resp.active_builds)
    }

    async fn query_partition_events(
        &self,
        _: &PartitionQuery,
    ) -> Result<(Vec<LoggedEvent>, i64), BelError> {
        Err(not_served("querying partition events by log position"))
    }
}
