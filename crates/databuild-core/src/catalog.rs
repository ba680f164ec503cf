//! Catalog answers built on the event log: why a partition is missing, stale or failed;
//! its dependency graph; manifests by ref pattern; graph runs by query; which logged
//! events a reader asked for.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use databuild_bel::{Event, EventRead, LoggedEvent, PartitionFilter, RunFilter};
use databuild_proto::{
    DependencyEdge, DependencyGraph, DependencyNode, DependencyType, FailureCause, JobGraphRun,
    JobGraphRunQuery, JobGraphRunStatus, PartitionManifest, PartitionManifestsQuery, PartitionRef,
    PartitionStatus,
};

use crate::{graph::Graph, CoreError};

/// Most hops `why` follows before giving up (a guard against malformed logs).
const MAX_WHY_HOPS: usize = 64;
/// Deepest dependency graph served.
pub const MAX_DEPTH: i32 = 100;

/// A catalog request that cannot be answered as asked.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A bad argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

fn status_word(s: PartitionStatus) -> &'static str {
    s.short_name()
}

/// Explains in one line why `partition_ref` is in its state, following upstream causes to
/// the root: e.g. "`a` is FAILED: upstream partition `b` failed (job `j`) <- `b` is FAILED:
/// job `k` failed: exit code 3 (job run `...`)".
pub async fn why(
    graph: Option<&Graph>,
    bel: &dyn EventRead,
    partition_ref: &str,
) -> Result<String, CoreError> {
    Ok(why_chain(graph, bel, partition_ref).await?.join(" <- "))
}

/// [`why`] as its links, from `partition_ref` to the root cause (the last link).
pub async fn why_chain(
    graph: Option<&Graph>,
    bel: &dyn EventRead,
    partition_ref: &str,
) -> Result<Vec<String>, CoreError> {
    databuild_proto::validate_ref(partition_ref).map_err(crate::planner::PlanError::from)?;
    let mut parts = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(partition_ref.to_string());
    while let Some(r) = next.take() {
        if !seen.insert(r.clone()) || parts.len() >= MAX_WHY_HOPS {
            break;
        }
        let Some(e) = bel.latest_partition_event(&r).await? else {
            parts.push(missing(graph, &r).await);
            break;
        };
        let status = PartitionStatus::try_from(e.status).unwrap_or_default();
        let upstream = e.upstream_deps.first().map(|u| u.str.clone());
        let run = if e.job_graph_run_id.is_empty() {
            String::new()
        } else {
            format!(" (graph run `{}`)", e.job_graph_run_id)
        };
        // A FAILED or STALE event names its cause in `upstream_deps` when the cause is
        // upstream (a failed or missing input, a rebuilt or stale one); follow it. A
        // failure whose cause is its own (the job failed, timed out, the run was lost)
        // ends the chain. (Events of old logs get their cause when read.)
        match status {
            PartitionStatus::PartitionFailed => {
                parts.push(format!("`{r}` is FAILED: {}", e.failure_reason));
                next = match e.failure_cause() {
                    FailureCause::UpstreamFailed
                    | FailureCause::InputMissing
                    | FailureCause::Unknown => upstream,
                    _ => None,
                };
            }
            PartitionStatus::PartitionStale => {
                parts.push(format!("`{r}` is STALE: {}", e.failure_reason));
                next = upstream;
            }
            PartitionStatus::PartitionAvailable => {
                parts.push(available(graph, bel, &r, &e).await?);
            }
            PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding => {
                parts.push(format!(
                    "`{r}` is {} by graph run `{}`: it is being built now",
                    status_word(status),
                    e.job_graph_run_id
                ));
            }
            other => parts.push(format!("`{r}` is {}{run}", status_word(other))),
        }
    }
    Ok(parts)
}

/// The AVAILABLE partitions (starting with `prefix`) whose latest build was made by
/// another version of their job than `graph` gives it now, `offset` and `limit` (0: all)
/// applied to them.
pub async fn outdated_partitions(
    graph: &Graph,
    bel: &dyn EventRead,
    prefix: Option<String>,
    limit: usize,
    offset: usize,
) -> Result<Vec<databuild_bel::PartitionRow>, CoreError> {
    let outdated = crate::scheduler::outdated(graph, bel).await?;
    let mut refs: Vec<String> = outdated
        .own
        .into_iter()
        .filter(|r| prefix.as_ref().is_none_or(|p| r.starts_with(p.as_str())))
        .collect();
    refs.sort();
    let refs: Vec<String> = refs
        .into_iter()
        .skip(offset)
        .take(if limit == 0 { usize::MAX } else { limit })
        .collect();
    Ok(bel.partitions(&refs).await?)
}

/// What `why` says of AVAILABLE partition `r` whose latest event is `e`: outdated (built
/// by another version of its job than `graph` gives it), made fresh without running
/// (early cutoff), or built.
async fn available(
    graph: Option<&Graph>,
    bel: &dyn EventRead,
    r: &str,
    e: &databuild_proto::PartitionEvent,
) -> Result<String, CoreError> {
    let run = &e.job_graph_run_id;
    if run.is_empty() {
        return Ok(format!("`{r}` is AVAILABLE (registered external data)"));
    }
    if let Some(g) = graph {
        let refs = [r.to_string()];
        if crate::scheduler::outdated(g, bel).await?.own.contains(r) {
            let built = bel.builds(&refs).await?.pop().flatten().unwrap_or_default();
            let now = g.job(&built.job).map(|j| j.version.as_str()).unwrap_or("");
            let built_with = if built.version.is_empty() {
                "without a version".to_string()
            } else {
                format!("version {}", built.version)
            };
            let graph_says = if now.is_empty() { "none" } else { now };
            return Ok(format!(
                "`{r}` is outdated: built by `{}` {built_with}, the graph says {graph_says} (`databuild build {r}` rebuilds it)",
                built.job
            ));
        }
    }
    if e.cut_off {
        return Ok(format!(
            "`{r}` is AVAILABLE and was not rebuilt by graph run `{run}`: its inputs have the digests it was built from"
        ));
    }
    Ok(format!("`{r}` is AVAILABLE, built by graph run `{run}`"))
}

async fn missing(graph: Option<&Graph>, r: &str) -> String {
    let job = match graph {
        Some(g) => g
            .lookup(&[r.to_string()])
            .await
            .ok()
            .and_then(|l| l.by_job.into_keys().next()),
        None => None,
    };
    match (graph, job) {
        (_, Some(job)) => format!("`{r}` is missing: it has never been built; job `{job}` produces it (`databuild build {r}`)"),
        (Some(_), None) => format!(
            "`{r}` is missing: no job produces it and it was never registered; if it is external data, `databuild partitions register {r}`"
        ),
        (None, None) => format!("`{r}` is missing: the event log has no record of it"),
    }
}

/// The partitions upstream and downstream of `partition_ref`, `depth` hops each way.
pub async fn dependency_graph(
    bel: &dyn EventRead,
    partition_ref: &str,
    depth: i32,
) -> Result<DependencyGraph, CoreError> {
    databuild_proto::validate_ref(partition_ref).map_err(crate::planner::PlanError::from)?;
    if !(0..=MAX_DEPTH).contains(&depth) {
        return Err(CatalogError::InvalidArgument(format!(
            "depth must be between 1 and {MAX_DEPTH} hops, or 0 for the default of 3 (got {depth})"
        ))
        .into());
    }
    let depth = if depth == 0 { 3 } else { depth };
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut nodes: BTreeSet<String> = BTreeSet::from([partition_ref.to_string()]);
    for downstream in [false, true] {
        let mut frontier = vec![partition_ref.to_string()];
        for _ in 0..depth {
            if frontier.is_empty() {
                break;
            }
            let pairs = bel.lineage(&frontier, downstream).await?;
            frontier.clear();
            for (u, d) in pairs {
                let next = if downstream { d.clone() } else { u.clone() };
                if nodes.insert(next.clone()) {
                    frontier.push(next);
                }
                edges.insert((d, u));
            }
        }
    }
    let refs: Vec<String> = nodes.iter().cloned().collect();
    let rows: BTreeMap<String, databuild_bel::PartitionRow> = bel
        .partitions(&refs)
        .await?
        .into_iter()
        .map(|r| (r.partition_ref.clone(), r))
        .collect();
    let mut out_edges: Vec<DependencyEdge> = edges
        .into_iter()
        .map(|(d, u)| DependencyEdge {
            source: Some(PartitionRef::new(d)),
            target: Some(PartitionRef::new(u)),
            r#type: DependencyType::DependsOn as i32,
        })
        .collect();
    // Outputs of the same job run as the root: PRODUCES edges from the root to them.
    if let Some(root) = rows.get(partition_ref).filter(|r| !r.job_run_id.is_empty()) {
        for e in bel.job_run_events(&root.job_run_id).await? {
            if let Event::Run(r) = e.event {
                if let Some(j) = r.job_event {
                    for o in j.outputs.iter().filter(|o| o.str != partition_ref) {
                        if !out_edges.iter().any(|x| {
                            x.r#type == DependencyType::Produces as i32
                                && x.target.as_ref() == Some(o)
                        }) {
                            out_edges.push(DependencyEdge {
                                source: Some(PartitionRef::new(partition_ref)),
                                target: Some(o.clone()),
                                r#type: DependencyType::Produces as i32,
                            });
                        }
                    }
                }
            }
        }
    }
    let mut out_nodes: Vec<DependencyNode> = nodes
        .into_iter()
        .map(|r| {
            let row = rows.get(&r);
            DependencyNode {
                status: row.map_or(0, |p| p.status as i32),
                last_updated: row.map(|p| databuild_proto::timestamp_from_micros(p.updated_micros)),
                partition_ref: Some(PartitionRef::new(r)),
            }
        })
        .collect();
    for e in &out_edges {
        if let Some(t) = e.target.as_ref().filter(|t| {
            !out_nodes
                .iter()
                .any(|n| n.partition_ref.as_ref() == Some(t))
        }) {
            let row = bel.partitions(std::slice::from_ref(&t.str)).await?.pop();
            out_nodes.push(DependencyNode {
                partition_ref: Some(t.clone()),
                status: row.as_ref().map_or(0, |p| p.status as i32),
                last_updated: row.map(|p| databuild_proto::timestamp_from_micros(p.updated_micros)),
            });
        }
    }
    Ok(DependencyGraph {
        root: Some(PartitionRef::new(partition_ref)),
        nodes: out_nodes,
        edges: out_edges,
    })
}

/// The literal prefix of a regular expression (up to its first metacharacter).
fn literal_prefix(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => {
                break
            }
            _ => {
                // A quantifier after this char would make it optional.
                if matches!(chars.peek(), Some('*' | '?' | '{')) {
                    break;
                }
                out.push(c);
            }
        }
    }
    out
}

/// Latest partition states whose ref fully matches `pattern` (a regex), in ref order.
pub async fn find_partitions(
    bel: &dyn EventRead,
    pattern: Option<&str>,
    statuses: Vec<PartitionStatus>,
    limit: usize,
    offset: usize,
) -> Result<Vec<databuild_bel::PartitionRow>, CoreError> {
    let Some(pattern) = pattern.filter(|p| !p.is_empty()) else {
        return Ok(bel
            .list_partitions(&PartitionFilter {
                statuses,
                prefix: None,
                limit,
                offset,
                ..Default::default()
            })
            .await?);
    };
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        CatalogError::InvalidArgument(format!(
            "invalid ref pattern `{pattern}`: {}; a ref pattern is a regular expression that must match the whole ref, e.g. `reviews/daily/.*`",
            e.to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .trim_start_matches("error: ")
        ))
    })?;
    let prefix = literal_prefix(pattern);
    const PAGE: usize = 5_000;
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut page_offset = 0;
    loop {
        let page = bel
            .list_partitions(&PartitionFilter {
                statuses: statuses.clone(),
                prefix: Some(prefix.clone()),
                limit: PAGE,
                offset: page_offset,
                ..Default::default()
            })
            .await?;
        let n = page.len();
        for row in page {
            if re.is_match(&row.partition_ref) {
                if skipped < offset {
                    skipped += 1;
                } else {
                    out.push(row);
                    if limit != 0 && out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        if n < PAGE {
            return Ok(out);
        }
        page_offset += PAGE;
    }
}

fn limit_offset(limit: i32, offset: i32) -> Result<(usize, usize), CoreError> {
    if limit < 0 || offset < 0 {
        return Err(CatalogError::InvalidArgument(format!(
            "limit and offset must not be negative (got {limit}, {offset})"
        ))
        .into());
    }
    if limit > databuild_bel::query::MAX_LIMIT as i32 {
        return Err(CatalogError::InvalidArgument(format!(
            "limit {limit} is above the maximum of {}",
            databuild_bel::query::MAX_LIMIT
        ))
        .into());
    }
    Ok((
        if limit == 0 { 100 } else { limit as usize },
        offset as usize,
    ))
}

/// `ListPartitions`: manifests of the latest builds of partitions matching the query.
pub async fn list_manifests(
    bel: &dyn EventRead,
    q: &PartitionManifestsQuery,
) -> Result<Vec<PartitionManifest>, CoreError> {
    let (limit, offset) = limit_offset(q.limit, q.offset)?;
    let statuses = q
        .statuses
        .iter()
        .map(|&s| {
            PartitionStatus::try_from(s)
                .map_err(|_| CatalogError::InvalidArgument(format!("unknown partition status {s}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = find_partitions(bel, Some(&q.ref_pattern), statuses, limit, offset).await?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(m) = bel
            .latest_partition_event(&row.partition_ref)
            .await?
            .and_then(|e| e.manifest)
        {
            out.push(m);
        }
    }
    Ok(out)
}

/// `ListJobGraphRuns`: runs matching the query, newest first, each with its graph and
/// events.
pub async fn list_runs(
    bel: &dyn EventRead,
    q: &JobGraphRunQuery,
) -> Result<Vec<JobGraphRun>, CoreError> {
    let (limit, offset) = limit_offset(q.limit, q.offset)?;
    let statuses = q
        .statuses
        .iter()
        .map(|&s| {
            JobGraphRunStatus::try_from(s)
                .map_err(|_| CatalogError::InvalidArgument(format!("unknown graph run status {s}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (start, end) = match &q.time_range {
        Some(t) => (
            t.start.as_ref().map(databuild_proto::timestamp_micros),
            t.end.as_ref().map(databuild_proto::timestamp_micros),
        ),
        None => (None, None),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(
                CatalogError::InvalidArgument("time range start is after its end".into()).into(),
            );
        }
    }
    let rows = bel
        .list_runs(&RunFilter {
            label: (!q.label.is_empty()).then(|| q.label.clone()),
            statuses,
            started_from: start,
            started_before: end,
            limit,
            offset,
        })
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let events = bel.run_events(&row.run_id).await?;
        out.push(job_graph_run(&row.run_id, &events));
    }
    Ok(out)
}

/// Graph run `run_id` from its events (oldest first): its graph and job events, and the
/// job graph its analysis recorded.
pub fn job_graph_run(run_id: &str, events: &[LoggedEvent]) -> JobGraphRun {
    let mut run = JobGraphRun {
        job_graph_run_id: run_id.to_string(),
        ..Default::default()
    };
    for e in events {
        if let Event::Run(r) = &e.event {
            if run.graph.is_none() {
                run.graph = r
                    .graph_event
                    .as_ref()
                    .and_then(|g| g.analysis.as_ref())
                    .and_then(|a| a.graph.clone());
            }
            run.events.push(r.clone());
        }
    }
    run
}

/// Which logged events to show: each non-empty list narrows the selection.
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    /// Only partition events of these refs.
    pub refs: Vec<String>,
    /// Only partition events with these statuses.
    pub statuses: Vec<PartitionStatus>,
    /// Only events of these graph runs.
    pub runs: Vec<String>,
}

impl EventFilter {
    /// The filter, its refs validated.
    pub fn new(
        refs: Vec<String>,
        statuses: Vec<PartitionStatus>,
        runs: Vec<String>,
    ) -> Result<Self, CoreError> {
        for r in &refs {
            databuild_proto::validate_ref(r).map_err(crate::planner::PlanError::from)?;
        }
        Ok(Self {
            refs,
            statuses,
            runs,
        })
    }

    /// Whether `e` is selected.
    pub fn matches(&self, e: &LoggedEvent) -> bool {
        if !self.runs.is_empty() && !self.runs.iter().any(|r| r == e.event.run_id()) {
            return false;
        }
        if self.refs.is_empty() && self.statuses.is_empty() {
            return true;
        }
        let Event::Partition(p) = &e.event else {
            return false;
        };
        let r = p
            .partition_ref
            .as_ref()
            .map(|r| r.str.as_str())
            .unwrap_or("");
        (self.refs.is_empty() || self.refs.iter().any(|x| x == r))
            && (self.statuses.is_empty() || self.statuses.iter().any(|s| *s as i32 == p.status))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn literal_prefixes_stop_at_metacharacters_and_optional_chars() {
        assert_eq!(
            super::literal_prefix(r"reviews/daily/date=2025-01-\d+"),
            "reviews/daily/date=2025-01-"
        );
        assert_eq!(super::literal_prefix("abc?"), "ab");
        assert_eq!(super::literal_prefix(".*"), "");
    }
}
