//! Recovery of the Ray jobs that lost graph runs left: finding them by their submission
//! ids (the lost runs' job run ids, or the ids their partition events record) to adopt,
//! and stopping the ones no task adopts.

use std::sync::Arc;

use databuild_bel::EventLog;
use tokio::time::Instant;

use super::{Api, LeftState, CANCEL_SLACK, MIN_POLL, NAME};
use crate::{
    graph::{Graph, JobExecutor},
    scheduler::executor::{lost_job_runs, Leftover},
};

/// The Ray jobs that the lost graph runs `lost` left behind: for each job run of a Ray
/// job, the Ray job its partition events record (an adopted one) or else the one whose
/// submission id is the job run id, checked against Ray: those still pending or
/// running, and those that succeeded. Ray being unreachable is logged, not an error.
pub(super) async fn find_orphans(
    bel: &dyn EventLog,
    graph: &Graph,
    lost: &[String],
) -> Result<Vec<Leftover>, databuild_bel::BelError> {
    let runs = lost_job_runs(bel, lost, NAME).await?;
    let mut orphans = Vec::new();
    for (job_run_id, jr) in runs {
        if jr.succeeded {
            continue;
        }
        let Some(JobExecutor::Ray(options)) = graph.job(&jr.label).map(|j| &j.executor) else {
            continue;
        };
        let address = match options.resolved_address() {
            Ok((a, _)) => a,
            Err(e) => {
                tracing::warn!(job_run = %job_run_id, error = %e, "cannot check the Ray job of a lost graph run");
                continue;
            }
        };
        let id = jr.engine_id.clone().unwrap_or_else(|| job_run_id.clone());
        let api = Api::new(&address);
        let seen = match api.status(&id).await {
            Ok(Some(seen)) => seen,
            // Ray never had the job whose id was recorded.
            Ok(None) if jr.engine_id.is_some() => continue,
            // Never recorded as accepted: the lost run may have died while submitting it,
            // and that request (its `curl` outlives it) may still reach Ray.
            Ok(None) => match held(&api, &id).await {
                Some(seen) => seen,
                None => continue,
            },
            Err(e) => {
                tracing::warn!(
                    lost_run = %jr.run_id, ray_job = %id, error = %e,
                    "cannot check the Ray job of a lost graph run; it may still be running"
                );
                continue;
            }
        };
        if seen.is_over() && !seen.succeeded() {
            continue;
        }
        orphans.push(Leftover {
            executor: NAME,
            id,
            run_id: jr.run_id,
            job_run_id,
            label: jr.label,
            job_key: jr.job_key,
            config: jr.config,
            detail: Arc::new(LeftState { address, seen }),
        });
    }
    Ok(orphans)
}

/// Makes sure the submission `id` of a lost job run can no longer start a job: takes the
/// id with a job that does nothing (`None`: nothing was submitted, nor can be now), or,
/// when Ray already has a job with it, returns what Ray says of that job, to adopt.
async fn held(api: &Api, id: &str) -> Option<super::Seen> {
    let refused = match api.hold(id).await {
        Ok(()) => return None,
        Err(e) => e,
    };
    match api.status(id).await {
        Ok(Some(seen)) => Some(seen),
        _ => {
            tracing::warn!(ray_job = %id, error = %refused, "cannot check whether a lost graph run submitted this Ray job; it may still start");
            None
        }
    }
}

/// Stops the still active `orphans` and waits (a few seconds at most) until Ray reports
/// them ended, so that they no longer write what a new job run is about to build.
pub(super) async fn cancel_orphans(orphans: &[Leftover]) {
    let mut active = Vec::new();
    for o in orphans {
        let Some(s) = o.detail.downcast_ref::<LeftState>() else {
            continue;
        };
        if s.seen.is_over() {
            continue;
        }
        let api = Api::new(&s.address);
        tracing::info!(ray_job = %o.id, "stopping the Ray job of a lost graph run");
        match api.stop(&o.id).await {
            Ok(()) => active.push((api, o.id.clone())),
            Err(e) => {
                tracing::warn!(ray_job = %o.id, error = %e, "cannot stop the Ray job of a lost graph run");
            }
        }
    }
    let deadline = Instant::now() + CANCEL_SLACK * 2;
    while !active.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (api, id) in active {
            match api.status(&id).await {
                Ok(Some(seen)) if !seen.is_over() => still.push((api, id)),
                _ => {}
            }
        }
        active = still;
        if !active.is_empty() {
            tokio::time::sleep(MIN_POLL).await;
        }
    }
    if !active.is_empty() {
        let ids: Vec<&str> = active.iter().map(|(_, id)| id.as_str()).collect();
        tracing::warn!(ray_jobs = ?ids, "stopped Ray jobs of lost graph runs have not ended yet");
    }
}
