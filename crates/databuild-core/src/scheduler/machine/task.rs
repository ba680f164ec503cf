//! One task of a graph run — its state, its attempt, its lineage — and the one
//! constructor of each event shape its job runs and partitions produce.

use std::{
    collections::HashMap,
    time::{Instant, SystemTime},
};

use databuild_bel::Event;
use databuild_proto::{
    JobConfig, JobLabel, JobRunHandle, JobRunStatus, PartitionManifest, PartitionRef,
    PartitionStatus, Task,
};

use super::materialize_refs;
use crate::{
    events,
    scheduler::{executor::Submission, runner::Failure},
};

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Its inputs are not all built yet.
    Waiting,
    /// In its job's ready queue.
    Ready,
    /// A job run of it runs.
    Running,
    /// Its job run failed; a retry is due later.
    Backoff,
    Succeeded,
    Failed,
    /// Another graph run holds the outputs; waiting for its outcome.
    Delegated,
}

/// One planned task.
#[derive(Debug)]
pub(crate) struct TaskState {
    /// Index of its job.
    pub job: usize,
    pub label: String,
    /// Stable task key (job and outputs).
    pub key: String,
    pub outputs: Vec<String>,
    pub config: JobConfig,
    pub(super) deps_left: usize,
    pub(super) dependents: Vec<usize>,
    pub state: State,
    pub attempt: u32,
    /// The current (or last) job run.
    pub job_run_id: String,
    pub(super) started: Option<(Instant, SystemTime)>,
    /// Manifests of the inputs available when the current attempt started (its lineage).
    pub(super) inputs: Vec<PartitionManifest>,
    /// The graph run holding the outputs while delegated.
    pub owner: Option<String>,
    /// An upstream failure that reached the task while it was delegated: it fails with
    /// this reason if it ever has to be built here.
    pub(super) upstream_failed: Option<Failure>,
    /// Rebuild even if the outputs are available when claimed (`--force`).
    pub forced: bool,
    /// The outputs are AVAILABLE but were built by another version of the job: claimed
    /// to be rebuilt even though they are available.
    pub outdated: bool,
    /// The fingerprint of `config` (recorded with each build).
    pub fingerprint: String,
    /// The manifest of the outputs' latest build, when they have one that this run may
    /// keep instead of running the job (STALE or outdated outputs): see early cutoff.
    pub(super) previous: Option<PartitionManifest>,
}

impl TaskState {
    pub(super) fn new(
        job: usize,
        key: String,
        label: String,
        outputs: Vec<String>,
        config: JobConfig,
    ) -> Self {
        Self {
            job,
            label,
            key,
            outputs,
            deps_left: 0,
            dependents: Vec::new(),
            state: State::Waiting,
            attempt: 0,
            job_run_id: String::new(),
            started: None,
            inputs: Vec::new(),
            owner: None,
            upstream_failed: None,
            forced: false,
            outdated: false,
            fingerprint: crate::graph::config_fingerprint(&config),
            config,
            previous: None,
        }
    }

    /// Whether `job_run_id` is the task's job run and runs.
    pub(super) fn is_running(&self, job_run_id: &str) -> bool {
        self.state == State::Running && self.job_run_id == job_run_id
    }

    /// An event of this task's job run `job_run_id` in graph run `run_id`.
    pub(super) fn job_event(
        &self,
        run_id: &str,
        job_run_id: &str,
        status: JobRunStatus,
        config: Option<JobConfig>,
        logs: Option<Vec<String>>,
    ) -> Event {
        let ids = events::JobRunIds {
            run_id,
            job_run_id,
            label: &self.label,
            job_key: &self.key,
            outputs: &self.outputs,
        };
        events::job(&ids, status, config, logs)
    }

    /// JOB_RUNNING again, recording what identifies the running job (`handle`).
    pub(super) fn handle_event(
        &self,
        run_id: &str,
        job_run_id: &str,
        handle: JobRunHandle,
        logs: Option<Vec<String>>,
    ) -> Event {
        let mut e = self.job_event(run_id, job_run_id, JobRunStatus::JobRunning, None, logs);
        if let Event::Run(r) = &mut e {
            if let Some(j) = &mut r.job_event {
                j.handle = Some(handle);
            }
        }
        e
    }

    /// A partition event of each output, by job run `job_run_id`.
    fn partition_events(
        &self,
        run_id: &str,
        job_run_id: Option<&str>,
        status: PartitionStatus,
        fill: impl Fn(&mut databuild_proto::PartitionEvent),
    ) -> Vec<Event> {
        let job_run_id = job_run_id.unwrap_or_default();
        self.outputs
            .iter()
            .map(|o| {
                let mut e = events::partition(o, status, run_id);
                e.job_run_id = job_run_id.to_string();
                e.producing_job = Some(JobLabel::new(self.label.clone()));
                fill(&mut e);
                Event::Partition(e)
            })
            .collect()
    }

    /// The outputs BUILDING by job run `job_run_id` (on a cluster, once `submission` was
    /// accepted: the events record the engine's job for older readers).
    pub(super) fn building(
        &self,
        run_id: &str,
        job_run_id: &str,
        submission: Option<&Submission>,
    ) -> Vec<Event> {
        let metadata = submission.map(Submission::metadata).unwrap_or_default();
        self.partition_events(
            run_id,
            Some(job_run_id),
            PartitionStatus::PartitionBuilding,
            |e| {
                e.storage_metadata = metadata.clone();
            },
        )
    }

    /// The outputs BUILDING with no job run: on their way to be made fresh (early cutoff).
    pub(super) fn partition_events_building(&self, run_id: &str) -> Vec<Event> {
        self.partition_events(run_id, None, PartitionStatus::PartitionBuilding, |_| {})
    }

    /// The outputs AVAILABLE, built by job run `job_run_id` as `manifest` says (with no
    /// job run: made fresh without running, keeping the build `manifest`).
    pub(super) fn available(
        &self,
        run_id: &str,
        job_run_id: &str,
        manifest: &PartitionManifest,
    ) -> Vec<Event> {
        let upstream = materialize_refs(&self.config);
        let cut_off = job_run_id.is_empty();
        self.partition_events(
            run_id,
            Some(job_run_id),
            PartitionStatus::PartitionAvailable,
            |e| {
                e.upstream_deps = upstream.clone();
                e.manifest = Some(manifest.clone());
                e.cut_off = cut_off;
            },
        )
    }

    /// The outputs FAILED with `failure` (by job run `job_run_id`, if one ran), caused by
    /// input `upstream`, if any.
    pub(super) fn failed(
        &self,
        run_id: &str,
        failure: &Failure,
        job_run_id: Option<&str>,
        upstream: Option<String>,
    ) -> Vec<Event> {
        let upstream: Vec<PartitionRef> = upstream.into_iter().map(PartitionRef::new).collect();
        self.partition_events(run_id, job_run_id, PartitionStatus::PartitionFailed, |e| {
            e.failure_cause = failure.cause as i32;
            e.failure_reason = failure.reason.clone();
            e.upstream_deps = upstream.clone();
        })
    }

    /// The manifest of the task's successful run started at `start`: outputs, the input
    /// manifests available at its start (MATERIALIZE, and QUERY ones that existed), times
    /// and the task. The input manifests move into it: the run is over.
    pub(super) fn manifest(
        &mut self,
        start: SystemTime,
        version: &str,
        digests: HashMap<String, String>,
    ) -> PartitionManifest {
        PartitionManifest {
            job_version: version.to_string(),
            config_fingerprint: self.fingerprint.clone(),
            digests,
            outputs: self
                .outputs
                .iter()
                .map(|o| PartitionRef::new(o.clone()))
                .collect(),
            inputs: std::mem::take(&mut self.inputs),
            start_time: Some(databuild_proto::timestamp(start)),
            end_time: Some(databuild_proto::now()),
            task: Some(Task {
                job: Some(JobLabel::new(self.label.clone())),
                config: Some(self.config.clone()),
            }),
        }
    }
}
