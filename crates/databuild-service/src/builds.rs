//! Builds started by the service: each runs in its own task (a client that hangs up does
//! not cancel it), is registered under its graph run id so that its outcome can be asked
//! for later, and is counted while in flight so that shutdown can wait for it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use databuild_core::{scheduler, CoreError, Progress, RunOutcome};
use databuild_proto::{JobGraph, PartitionManifest};
use tokio::sync::{oneshot, watch};

use crate::{
    errors::{ApiError, ErrorCode},
    metrics::Metrics,
    state::App,
};

/// Builds whose outcome is kept for `GET /api/v1/builds/{run_id}`.
const KEPT: usize = 1000;

/// What a build is asked to do.
#[derive(Debug, Clone)]
pub enum Work {
    /// Analyze and execute these refs.
    Build { refs: Vec<String>, force: bool },
    /// Execute this job graph.
    Execute(JobGraph),
}

/// How a build ended.
#[derive(Debug, Clone)]
pub enum Ended {
    /// It ran (successfully or not).
    Outcome(RunOutcome),
    /// databuild could not proceed.
    Error(ApiError),
}

type Done = watch::Receiver<Option<Ended>>;

/// The registry of builds started here.
#[derive(Debug)]
pub struct Builds {
    entries: Mutex<(HashMap<String, Done>, VecDeque<String>)>,
    in_flight: watch::Sender<usize>,
}

impl Default for Builds {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Default::default()),
            in_flight: watch::channel(0).0,
        }
    }
}

impl Builds {
    fn register(&self, run_id: &str, done: Done) {
        let mut e = self.entries.lock().expect("builds lock");
        e.0.insert(run_id.to_string(), done);
        e.1.push_back(run_id.to_string());
        while e.1.len() > KEPT {
            if let Some(old) = e.1.pop_front() {
                e.0.remove(&old);
            }
        }
    }

    /// The state of a build started here: `None` if unknown, `Some(None)` while running.
    pub fn get(&self, run_id: &str) -> Option<Option<Ended>> {
        let e = self.entries.lock().expect("builds lock");
        e.0.get(run_id).map(|d| d.borrow().clone())
    }

    /// Builds running now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Resolves when no build is running.
    pub async fn idle(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn enter(&self) {
        self.in_flight.send_modify(|n| *n += 1);
    }

    fn leave(&self) {
        self.in_flight.send_modify(|n| *n -= 1);
    }
}

/// A build that has started (its graph run exists).
#[derive(Debug)]
pub struct Started {
    /// The graph run id.
    pub run_id: String,
    done: Done,
}

impl Started {
    /// Waits for the build to end.
    pub async fn wait(mut self) -> Ended {
        match self.done.wait_for(Option::is_some).await {
            Ok(v) => v.clone().expect("waited for Some"),
            Err(_) => Ended::Error(ApiError::internal(&"build task ended without a result")),
        }
    }
}

fn record(metrics: &Metrics, r: &Result<RunOutcome, CoreError>) {
    Metrics::dec(&metrics.builds_in_flight);
    match r {
        Ok(o) if o.success => Metrics::inc(&metrics.builds_succeeded),
        Ok(_) => Metrics::inc(&metrics.builds_failed),
        Err(_) => Metrics::inc(&metrics.builds_errored),
    }
}

impl App {
    /// Starts `work` for `client_id` and returns once its graph run exists (or with the
    /// error that kept it from starting).
    pub async fn start(&self, work: Work, client_id: &str) -> Result<Started, ApiError> {
        self.check_accepting()?;
        let (id_tx, id_rx) = oneshot::channel();
        let id_tx = Mutex::new(Some(id_tx));
        let metrics = self.metrics.clone();
        let progress: scheduler::ProgressFn = Arc::new(move |p| match p {
            Progress::Started { run_id } => {
                if let Some(tx) = id_tx.lock().expect("progress lock").take() {
                    let _ = tx.send(run_id);
                }
            }
            Progress::JobStarted { .. } => Metrics::inc(&metrics.job_runs_started),
            Progress::JobFinished { ok, .. } => Metrics::inc(if ok {
                &metrics.job_runs_succeeded
            } else {
                &metrics.job_runs_failed
            }),
            _ => {}
        });
        let (done_tx, done_rx) = watch::channel(None);
        let opts = self.build_options(client_id);
        let app = self.clone();
        self.builds.enter();
        Metrics::inc(&self.metrics.builds_started);
        Metrics::inc(&self.metrics.builds_in_flight);
        tokio::spawn(async move {
            let graph = app.graph.clone();
            let bel = app.bel.clone();
            let r = match work {
                Work::Build { refs, force } => {
                    let opts = databuild_core::BuildOptions { force, ..opts };
                    scheduler::build(&graph, bel, &refs, &opts, progress).await
                }
                Work::Execute(job_graph) => {
                    scheduler::execute(&graph, bel, job_graph, &opts, progress).await
                }
            };
            record(&app.metrics, &r);
            done_tx.send_replace(Some(match r {
                Ok(o) => Ended::Outcome(o),
                Err(e) => Ended::Error(e.into()),
            }));
            app.builds.leave();
        });
        match id_rx.await {
            Ok(run_id) => {
                self.builds.register(&run_id, done_rx.clone());
                Ok(Started {
                    run_id,
                    done: done_rx,
                })
            }
            Err(_) => match (Started {
                run_id: String::new(),
                done: done_rx,
            })
            .wait()
            .await
            {
                Ended::Error(e) => Err(e),
                Ended::Outcome(_) => Err(ApiError::internal(&"build ended before it started")),
            },
        }
    }

    /// Tracks a build started elsewhere (by `RequestPartition`) under `run_id`.
    pub fn track(
        &self,
        run_id: &str,
        handle: tokio::task::JoinHandle<Result<RunOutcome, CoreError>>,
    ) {
        let (done_tx, done_rx) = watch::channel(None);
        if !run_id.is_empty() {
            self.builds.register(run_id, done_rx);
        }
        self.builds.enter();
        Metrics::inc(&self.metrics.builds_started);
        Metrics::inc(&self.metrics.builds_in_flight);
        let app = self.clone();
        tokio::spawn(async move {
            let r = handle.await.unwrap_or_else(|e| {
                Err(CoreError::Io {
                    what: "the build task failed".into(),
                    error: std::io::Error::other(e.to_string()),
                })
            });
            record(&app.metrics, &r);
            done_tx.send_replace(Some(match r {
                Ok(o) => Ended::Outcome(o),
                Err(e) => Ended::Error(e.into()),
            }));
            app.builds.leave();
        });
    }
}

/// The manifests of a successful run, else the BUILD_FAILED error naming the failed
/// partitions and the run.
pub fn manifests(ended: Ended) -> Result<Vec<PartitionManifest>, ApiError> {
    let o = match ended {
        Ended::Error(e) => return Err(e),
        Ended::Outcome(o) => o,
    };
    if o.success {
        return Ok(o.manifests);
    }
    Err(ApiError::new(ErrorCode::BuildFailed, failure_message(&o)))
}

/// "graph run `id` failed: 2 partitions failed: `a` (reason); `b` (reason)".
pub fn failure_message(o: &RunOutcome) -> String {
    const SHOWN: usize = 10;
    if o.failed.is_empty() {
        return format!(
            "graph run `{}` failed{}",
            o.run_id,
            if o.cancelled { " (cancelled)" } else { "" }
        );
    }
    let n = o.failed.len();
    let mut parts: Vec<String> = o
        .failed
        .iter()
        .take(SHOWN)
        .map(|(r, reason)| format!("`{r}` ({reason})"))
        .collect();
    if n > SHOWN {
        parts.push(format!("... {} more", n - SHOWN));
    }
    format!(
        "graph run `{}` failed: {n} partition{} failed: {}; see `databuild runs show {}`",
        o.run_id,
        if n == 1 { "" } else { "s" },
        parts.join("; "),
        o.run_id
    )
}
