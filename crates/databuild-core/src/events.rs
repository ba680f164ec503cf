//! Constructors for the events the engine writes, so that every writer (build, execute,
//! register) produces the same shapes.

use databuild_bel::Event;
use databuild_proto::{
    GraphAnalyzeEvent, GraphEvent, GraphLabel, GraphRequestEvent, JobConfig, JobConfigEvent,
    JobEvent, JobGraph, JobGraphRunEvent, JobGraphRunStatus, JobLabel, JobLogsEvent, JobRunStatus,
    PartitionEvent, PartitionRef, PartitionStatus,
};

use crate::scheduler::runner::Failure;

/// A FAILED event of partition `r` in graph run `run_id`, with why.
pub fn failed(r: &str, run_id: &str, failure: &Failure) -> PartitionEvent {
    let mut e = partition(r, PartitionStatus::PartitionFailed, run_id);
    e.failure_cause = failure.cause as i32;
    e.failure_reason = failure.reason.clone();
    e
}

/// A graph status change, optionally carrying the analyzed graph.
pub fn graph(
    run_id: &str,
    label: &str,
    status: JobGraphRunStatus,
    analysis: Option<JobGraph>,
) -> Event {
    graph_event(GraphEvent {
        job_graph_run_id: run_id.to_string(),
        status: status as i32,
        label: Some(GraphLabel {
            label: label.to_string(),
        }),
        analysis: analysis.map(|graph| GraphAnalyzeEvent { graph: Some(graph) }),
        ..Default::default()
    })
}

/// GRAPH_FAILED, with why.
pub fn graph_failed(run_id: &str, label: &str, reason: &str) -> Event {
    graph_event(GraphEvent {
        job_graph_run_id: run_id.to_string(),
        status: JobGraphRunStatus::GraphFailed as i32,
        label: Some(GraphLabel {
            label: label.to_string(),
        }),
        failure_reason: reason.to_string(),
        ..Default::default()
    })
}

/// GRAPH_STARTED, with what the run was asked for.
pub fn graph_started(run_id: &str, label: &str, request: GraphRequestEvent) -> Event {
    graph_event(GraphEvent {
        job_graph_run_id: run_id.to_string(),
        status: JobGraphRunStatus::GraphStarted as i32,
        label: Some(GraphLabel {
            label: label.to_string(),
        }),
        request: Some(request),
        ..Default::default()
    })
}

fn graph_event(g: GraphEvent) -> Event {
    Event::Run(JobGraphRunEvent {
        graph_event: Some(g),
        ..Default::default()
    })
}

/// Identity of one job run, repeated on each of its events.
#[derive(Debug, Clone)]
pub struct JobRunIds<'a> {
    /// Graph run.
    pub run_id: &'a str,
    /// Job run.
    pub job_run_id: &'a str,
    /// Job label.
    pub label: &'a str,
    /// Stable task key.
    pub job_key: &'a str,
    /// The task's outputs.
    pub outputs: &'a [String],
}

/// A job status change, optionally with its config or log lines.
pub fn job(
    ids: &JobRunIds<'_>,
    status: JobRunStatus,
    config: Option<JobConfig>,
    logs: Option<Vec<String>>,
) -> Event {
    Event::Run(JobGraphRunEvent {
        job_event: Some(JobEvent {
            job_graph_run_id: ids.run_id.to_string(),
            job_run_id: ids.job_run_id.to_string(),
            status: status as i32,
            job_key: ids.job_key.to_string(),
            label: Some(JobLabel::new(ids.label)),
            outputs: ids
                .outputs
                .iter()
                .map(|o| PartitionRef::new(o.clone()))
                .collect(),
            config: config.map(|config| JobConfigEvent {
                config: Some(config),
            }),
            logs: logs.map(|logs| JobLogsEvent { logs }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A partition status event; callers fill in the optional fields.
pub fn partition(partition_ref: &str, status: PartitionStatus, run_id: &str) -> PartitionEvent {
    PartitionEvent {
        partition_ref: Some(PartitionRef::new(partition_ref)),
        status: status as i32,
        job_graph_run_id: run_id.to_string(),
        ..Default::default()
    }
}
