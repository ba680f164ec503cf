//! A job run's output: the log file the run wrote on this machine when it is there and
//! not empty, else the lines the event log kept (a run on another machine, a log
//! directory that was full or not writable).

use std::path::{Path, PathBuf};

use databuild_bel::{Event, EventRead};

use crate::CoreError;

/// Where a job run's output goes under `log_dir`.
pub fn path(log_dir: &Path, job_run_id: &str) -> PathBuf {
    log_dir.join(format!("{job_run_id}.log"))
}

/// A job run's output, from wherever it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutput {
    /// The log file's bytes.
    File(Vec<u8>),
    /// The event log's lines.
    Lines(Vec<String>),
}

/// The output of job run `job_run_id`; `None` if the event log has no such job run.
pub async fn job_output(
    bel: &dyn EventRead,
    log_dir: &Path,
    job_run_id: &str,
) -> Result<Option<JobOutput>, CoreError> {
    if bel.job_run(job_run_id).await?.is_none() {
        return Ok(None);
    }
    match std::fs::read(path(log_dir, job_run_id)) {
        Ok(bytes) if !bytes.is_empty() => return Ok(Some(JobOutput::File(bytes))),
        _ => {}
    }
    let mut lines = Vec::new();
    for e in bel.job_run_events(job_run_id).await? {
        if let Event::Run(r) = e.event {
            if let Some(logs) = r.job_event.and_then(|j| j.logs) {
                lines.extend(logs.logs);
            }
        }
    }
    Ok(Some(JobOutput::Lines(lines)))
}
