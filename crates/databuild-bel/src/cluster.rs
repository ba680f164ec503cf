//! Where the event log records a job run's cluster job (e.g. its Slurm job id): the
//! `id` of the job event's `JobRunHandle`, and in logs written before handles carried
//! it, the `storage_metadata` of the job run's BUILDING partition events.

use databuild_proto::PartitionStatus;

use crate::Event;

/// A cluster engine's job, as an event records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterJob<'a> {
    /// The job run the engine ran.
    pub job_run_id: &'a str,
    /// The executor's name (`slurm`).
    pub executor: &'a str,
    /// The engine's job id.
    pub id: &'a str,
}

/// The cluster job `event` records, if any: a job event's handle with an engine job id,
/// or (the only record in older logs) a BUILDING partition event's `storage_metadata`
/// entries `executor` and `<executor>_job_id`.
pub fn cluster_job(event: &Event) -> Option<ClusterJob<'_>> {
    match event {
        Event::Run(r) => {
            let j = r.job_event.as_ref()?;
            let h = j.handle.as_ref()?;
            (!h.id.is_empty()).then_some(ClusterJob {
                job_run_id: &j.job_run_id,
                executor: &h.executor,
                id: &h.id,
            })
        }
        Event::Want(_) | Event::Backfill(_) => None,
        Event::Partition(p) => {
            if p.status != PartitionStatus::PartitionBuilding as i32 {
                return None;
            }
            let executor = p.storage_metadata.get("executor")?;
            let id = p.storage_metadata.get(&format!("{executor}_job_id"))?;
            Some(ClusterJob {
                job_run_id: &p.job_run_id,
                executor,
                id,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use databuild_proto::{JobEvent, JobGraphRunEvent, JobRunHandle, PartitionEvent};

    use super::*;

    #[test]
    fn a_cluster_job_is_read_from_the_handle_or_an_old_logs_metadata() {
        let job = Event::Run(JobGraphRunEvent {
            job_event: Some(JobEvent {
                job_run_id: "j1".into(),
                handle: Some(JobRunHandle {
                    executor: "slurm".into(),
                    id: "42".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let want = ClusterJob {
            job_run_id: "j1",
            executor: "slurm",
            id: "42",
        };
        assert_eq!(cluster_job(&job), Some(want));

        let old = Event::Partition(PartitionEvent {
            status: PartitionStatus::PartitionBuilding as i32,
            job_run_id: "j1".into(),
            storage_metadata: [("executor", "slurm"), ("slurm_job_id", "42")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        });
        assert_eq!(cluster_job(&old), Some(want));

        let local = Event::Run(JobGraphRunEvent {
            job_event: Some(JobEvent {
                handle: Some(JobRunHandle {
                    executor: "local".into(),
                    pid: 7,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(cluster_job(&local), None);
    }
}
