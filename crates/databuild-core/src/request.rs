//! `RequestPartition`: answer with the partition if it is available, join the build in
//! flight (a delegation), or start a build — then wait up to a timeout for the data.

use std::{sync::Arc, time::Duration};

use databuild_bel::{Event, EventLog, EventRead};
use databuild_proto::{
    request_result, BuildToken, DelegationToken, PartitionLocation, PartitionRef, PartitionStatus,
    RequestResult,
};
use tokio::task::JoinHandle;

use crate::{events, graph::Graph, scheduler, BuildOptions, CoreError, RunOutcome};

/// How often a waiting request looks at the partition.
const POLL: Duration = Duration::from_millis(50);

/// How a request behaves.
#[derive(Debug, Clone)]
pub struct RequestOptions {
    /// Who asks (recorded in `requesting_clients`).
    pub client_id: String,
    /// Join a build in flight instead of refusing.
    pub allow_delegation: bool,
    /// How long to wait for the partition to become available before answering with a
    /// token (zero: answer at once).
    pub timeout: Duration,
}

/// A request's answer, and the build it started, if any (still running unless the
/// partition became available within the timeout).
#[derive(Debug)]
pub struct Requested {
    /// `available`, `delegated` or `building`.
    pub result: RequestResult,
    /// The build this request started.
    pub build: Option<JoinHandle<Result<RunOutcome, CoreError>>>,
}

/// Requests one partition (PRODUCT §6).
pub async fn request_partition(
    graph: Arc<Graph>,
    bel: Arc<dyn EventLog>,
    partition_ref: &str,
    opts: &RequestOptions,
    build_opts: &BuildOptions,
) -> Result<Requested, CoreError> {
    databuild_proto::validate_ref(partition_ref).map_err(crate::planner::PlanError::from)?;
    let row = bel.partitions(&[partition_ref.to_string()]).await?.pop();
    match row.as_ref().map(|r| r.status) {
        Some(PartitionStatus::PartitionAvailable) => {
            return Ok(Requested {
                result: available(bel.as_ref(), partition_ref).await?,
                build: None,
            });
        }
        Some(PartitionStatus::PartitionScheduled | PartitionStatus::PartitionBuilding) => {
            let owner = row.map(|r| r.run_id).unwrap_or_default();
            if !opts.allow_delegation {
                return Err(CoreError::Delegation(format!(
                    "partition `{partition_ref}` is being built by graph run `{owner}` and delegation is not allowed; retry later or allow delegation"
                )));
            }
            let mut e = events::partition(partition_ref, PartitionStatus::PartitionDelegated, "");
            e.delegated_to_run_id = owner.clone();
            e.requesting_clients = vec![opts.client_id.clone()];
            bel.append(vec![Event::Partition(e)]).await?;
            if wait_available(bel.as_ref(), partition_ref, opts.timeout).await? {
                return Ok(Requested {
                    result: available(bel.as_ref(), partition_ref).await?,
                    build: None,
                });
            }
            return Ok(Requested {
                result: RequestResult {
                    result: Some(request_result::Result::Delegated(DelegationToken {
                        job_graph_run_id: owner,
                        estimated_completion: None,
                    })),
                },
                build: None,
            });
        }
        _ => {}
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let progress: scheduler::ProgressFn = Arc::new(move |p| {
        if let scheduler::Progress::Started { run_id } = p {
            if let Some(tx) = tx.lock().expect("progress lock").take() {
                let _ = tx.send(run_id);
            }
        }
    });
    let mut build_opts = build_opts.clone();
    build_opts.client_id = opts.client_id.clone();
    let refs = vec![partition_ref.to_string()];
    let build_bel = bel.clone();
    let handle = tokio::spawn(async move {
        scheduler::build(&graph, build_bel, &refs, &build_opts, progress).await
    });
    let started_at = databuild_proto::now();
    let Ok(run_id) = rx.await else {
        // The build ended before it started a run: its error is the answer.
        return match handle.await {
            Ok(Err(e)) => Err(e),
            _ => Err(CoreError::Delegation("the build could not start".into())),
        };
    };
    if wait_available(bel.as_ref(), partition_ref, opts.timeout).await? {
        return Ok(Requested {
            result: available(bel.as_ref(), partition_ref).await?,
            build: Some(handle),
        });
    }
    Ok(Requested {
        result: RequestResult {
            result: Some(request_result::Result::Building(BuildToken {
                job_graph_run_id: run_id,
                started_at: Some(started_at),
            })),
        },
        build: Some(handle),
    })
}

async fn available(bel: &dyn EventRead, r: &str) -> Result<RequestResult, CoreError> {
    let manifest = bel
        .latest_partition_event(r)
        .await?
        .and_then(|e| e.manifest);
    Ok(RequestResult {
        result: Some(request_result::Result::Available(PartitionLocation {
            partition_ref: Some(PartitionRef::new(r)),
            manifest,
        })),
    })
}

/// Waits up to `timeout` for `r` to be AVAILABLE; false if it is not (or failed).
async fn wait_available(
    bel: &dyn EventRead,
    r: &str,
    timeout: Duration,
) -> Result<bool, CoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = bel
            .partitions(&[r.to_string()])
            .await?
            .pop()
            .map(|p| p.status);
        match status {
            Some(PartitionStatus::PartitionAvailable) => return Ok(true),
            Some(PartitionStatus::PartitionFailed) => return Ok(false),
            _ => {}
        }
        if tokio::time::Instant::now() + POLL > deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}
