//! Restart safety on Slurm: the jobs a lost graph run left behind, found by the ids its
//! partition events record (or by job name), to adopt or to cancel.

use std::sync::Arc;

use databuild_bel::EventLog;
use tokio::time::Instant;

use super::{
    job_name,
    poller::{scancel, squeue, MIN_POLL},
    Seen, CANCEL_SLACK, NAME,
};
use crate::{
    graph::{Graph, JobExecutor},
    scheduler::executor::{lost_job_runs, Leftover},
};

/// What Slurm said of a job a lost run left (a [`Leftover`]'s detail).
#[derive(Debug)]
pub(super) struct LeftState(pub(super) Seen);

pub(super) fn seen_of(l: &Leftover) -> Seen {
    l.detail
        .downcast_ref::<LeftState>()
        .map_or(Seen::Submitted, |s| s.0.clone())
}

/// The Slurm jobs that the lost graph runs `lost` left behind, found by the ids their
/// events record (`databuild_bel::cluster_job`; and, for a job run whose id was not recorded yet, by its
/// job name), checked against Slurm: those still queued or running, and those that
/// completed. Slurm being unreachable is logged, not an error: the build goes on.
pub(super) async fn find_orphans(
    bel: &dyn EventLog,
    graph: &Graph,
    lost: &[String],
) -> Result<Vec<Leftover>, databuild_bel::BelError> {
    let runs = lost_job_runs(bel, lost, NAME).await?;
    let is_slurm = |label: &str| {
        graph
            .job(label)
            .is_some_and(|j| matches!(j.executor, JobExecutor::Slurm(_)))
    };
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for (job_run_id, jr) in &runs {
        if jr.succeeded {
            continue;
        }
        match &jr.engine_id {
            Some(id) => ids.push(id.clone()),
            None if is_slurm(&jr.label) => names.push(job_name(&jr.label, job_run_id)),
            None => {}
        }
    }
    if ids.is_empty() && names.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    for (ids, names) in [(&ids, &Vec::new()), (&Vec::new(), &names)] {
        if ids.is_empty() && names.is_empty() {
            continue;
        }
        match squeue(ids, names).await {
            Ok(r) => rows.extend(r),
            Err(e) => {
                tracing::warn!(
                    lost_runs = ?lost, slurm_jobs = ?ids, error = %e,
                    "cannot check the Slurm jobs of lost graph runs; they may still be running"
                );
            }
        }
    }
    let mut orphans = Vec::new();
    for (job_run_id, jr) in runs {
        // The name check also guards against a Slurm job id reused by a new controller.
        let Some(row) = rows
            .iter()
            .find(|r| r.name == job_name(&jr.label, &job_run_id))
        else {
            continue;
        };
        let seen = row.seen();
        let completed = matches!(&seen, Seen::Ended { state, .. } if state == "COMPLETED");
        if seen.is_over() && !completed {
            continue;
        }
        orphans.push(Leftover {
            executor: NAME,
            id: row.id.clone(),
            job_run_id,
            run_id: jr.run_id,
            label: jr.label,
            job_key: jr.job_key,
            config: jr.config,
            detail: Arc::new(LeftState(seen)),
        });
    }
    Ok(orphans)
}

/// Cancels the still active `orphans` and waits (a few seconds at most) until Slurm
/// reports them ended, so that they no longer write what a new job run is about to build.
pub(super) async fn cancel_orphans(orphans: &[Leftover]) {
    let ids: Vec<String> = orphans
        .iter()
        .filter(|o| !seen_of(o).is_over())
        .map(|o| o.id.clone())
        .collect();
    if ids.is_empty() {
        return;
    }
    tracing::info!(slurm_jobs = ?ids, "cancelling the Slurm jobs of lost graph runs");
    if let Err(e) = scancel(&ids).await {
        tracing::warn!(slurm_jobs = ?ids, error = %e, "cannot cancel the Slurm jobs of lost graph runs");
        return;
    }
    let deadline = Instant::now() + CANCEL_SLACK * 2;
    while Instant::now() < deadline {
        match squeue(&ids, &[]).await {
            Ok(rows) if rows.iter().all(|r| r.seen().is_over()) => return,
            Ok(_) => tokio::time::sleep(MIN_POLL).await,
            Err(_) => return,
        }
    }
    tracing::warn!(slurm_jobs = ?ids, "cancelled Slurm jobs of lost graph runs have not ended yet");
}
