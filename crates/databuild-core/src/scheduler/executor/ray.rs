//! The Ray executor: each job run is one Ray job, submitted through the Ray Jobs REST API
//! of a cluster's dashboard (`POST /api/jobs/`), with the job run id as its submission id.
//! The entrypoint is the job's `exec` command line, run in the graph's directory with the
//! job's environment (every `DATABUILD_*` variable and the job's `env`) as the Ray job's
//! `runtime_env.env_vars`. Ray jobs have no stdin of their own: the entrypoint pipes
//! `DATABUILD_JOB_CONFIG` (the `JobConfig` a local job reads on stdin) into the program.
//!
//! The REST API is driven with `curl` subprocesses, as the Slurm executor drives `sbatch`
//! and `squeue`: `databuild-core` links no HTTP stack (no HTTP, gRPC or SQL in the core).
//! Each job has a poller (`GET /api/jobs/{id}`, backing off from 0.2 s to 2 s while
//! nothing changes) and its output is read back with `GET /api/jobs/{id}/logs`, only the
//! new part each time; Ray merges stdout and stderr into one log, kept as stdout, and
//! Ray's own "Runtime env is setting up." and "Running entrypoint for job" lines are
//! dropped. Stopping (timeout, cancellation) is `POST /api/jobs/{id}/stop`.
//!
//! Restart safety: a graph run whose databuild died leaves Ray jobs behind. Their
//! submission ids are the lost run's job run ids (or the ids its partition events
//! record, for a job that run adopted), so the run that reclaims it asks Ray about each
//! ([`recover::find_orphans`]), adopts a job still pending or running (or succeeded) for the same
//! task and configuration, and stops the rest.

mod recover;

use std::{sync::Arc, time::Duration};

use databuild_bel::EventLog;
use tokio::{
    sync::{watch, Notify},
    time::Instant,
};

use super::{
    command::{self, CommandError},
    log::{Log, Stream},
    Executor, Exit, Leftover, RunningJob, Submission,
};
use crate::{
    graph::{Graph, JobDef, JobExecutor},
    scheduler::runner::{humantime, ExecSpec, Failure},
    CoreError,
};
use databuild_proto::FailureCause;

/// The registry name.
const NAME: &str = "ray";
/// First poll interval, and the interval after anything changed.
const MIN_POLL: Duration = Duration::from_millis(200);
/// Longest poll interval while nothing changes.
const MAX_POLL: Duration = Duration::from_secs(2);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the dashboard may be unreachable before a job is given up as lost.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(300);
/// Polls in a row in which Ray does not know a job before it counts as lost.
const UNKNOWN_LIMIT: u32 = 10;
/// How often a running job's log is read.
const TAIL_EVERY: Duration = Duration::from_millis(500);
/// How long a stopped job may take to end beyond the kill grace period.
const CANCEL_SLACK: Duration = Duration::from_secs(5);

/// What Ray says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Submitted or `PENDING`.
    Pending,
    /// `RUNNING`.
    Running,
    /// `SUCCEEDED`, `FAILED` or `STOPPED`, with Ray's message and the entrypoint's exit
    /// code when known.
    Ended {
        status: String,
        message: String,
        exit_code: Option<i64>,
    },
    /// Ray cannot tell what became of it: why.
    Lost(String),
}

impl Seen {
    fn from_info(info: &serde_json::Value) -> Seen {
        let status = info["status"].as_str().unwrap_or("PENDING");
        match status {
            "SUCCEEDED" | "FAILED" | "STOPPED" => Seen::Ended {
                status: status.to_string(),
                message: info["message"].as_str().unwrap_or("").to_string(),
                exit_code: info["driver_exit_code"].as_i64(),
            },
            "RUNNING" => Seen::Running,
            _ => Seen::Pending,
        }
    }

    fn is_over(&self) -> bool {
        matches!(self, Seen::Ended { .. } | Seen::Lost(_))
    }

    fn succeeded(&self) -> bool {
        matches!(self, Seen::Ended { status, .. } if status == "SUCCEEDED")
    }
}

/// How a request failed.
#[derive(Debug)]
enum CallError {
    /// Nothing answered at the address (or `curl` could not run): why.
    Unreachable(String),
    /// The dashboard answered with an error status.
    Status(u16, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(why) => f.write_str(why),
            CallError::Status(code, body) => {
                let last = body.lines().rev().find(|l| !l.trim().is_empty());
                write!(f, "HTTP {code}: {}", last.unwrap_or("no message").trim())
            }
        }
    }
}

/// One request with `curl`: the status code and body of a 2xx answer.
async fn call(method: &str, url: &str, body: Option<&str>) -> Result<String, CallError> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sS", "--max-time"])
        .arg(REQUEST_TIMEOUT.as_secs().to_string())
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if body.is_some() {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ]);
    }
    cmd.arg(url);
    let out = command::output(cmd, body).await.map_err(|e| {
        CallError::Unreachable(match e {
            CommandError::NotFound => "`curl` not found on PATH; the Ray executor talks to Ray's Jobs REST API with it: install curl".to_string(),
            CommandError::Failed(why) => format!("`curl`: {why}"),
        })
    })?;
    if !out.status.success() {
        return Err(CallError::Unreachable(match out.status.code() {
            Some(6) => "cannot resolve the host".to_string(),
            Some(7) => "nothing answers there (connection failed)".to_string(),
            Some(28) => format!("no answer within {}", humantime(REQUEST_TIMEOUT)),
            _ => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                format!("`curl` failed: {}", stderr.trim())
            }
        }));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().unwrap_or(0);
    if (200..300).contains(&code) {
        Ok(body.to_string())
    } else {
        Err(CallError::Status(code, body.to_string()))
    }
}

/// The Jobs REST API of one dashboard.
#[derive(Debug, Clone)]
struct Api {
    base: String,
}

impl Api {
    fn new(address: &str) -> Api {
        Api {
            base: address.trim_end_matches('/').to_string(),
        }
    }

    /// What Ray says of job `id`; `None` when it does not know it.
    async fn status(&self, id: &str) -> Result<Option<Seen>, CallError> {
        match call("GET", &format!("{}/api/jobs/{id}", self.base), None).await {
            Ok(body) => {
                let info: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
                    CallError::Unreachable(format!("the dashboard's answer is not JSON: {e}"))
                })?;
                Ok(Some(Seen::from_info(&info)))
            }
            Err(CallError::Status(404, _)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn logs(&self, id: &str) -> Result<String, CallError> {
        let body = call("GET", &format!("{}/api/jobs/{id}/logs", self.base), None).await?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
            CallError::Unreachable(format!("the dashboard's answer is not JSON: {e}"))
        })?;
        Ok(v["logs"].as_str().unwrap_or("").to_string())
    }

    /// Submits the job `body` describes (`POST /api/jobs/`); an error when Ray refuses it,
    /// as it does a second job with a submission id it has.
    async fn submit(&self, body: &serde_json::Value) -> Result<(), CallError> {
        call(
            "POST",
            &format!("{}/api/jobs/", self.base),
            Some(&body.to_string()),
        )
        .await
        .map(|_| ())
    }

    /// Takes submission id `id` with a job that does nothing, so that no submission of
    /// it still on its way (from a process that died while submitting) can start later.
    /// An error when Ray refuses this one.
    async fn hold(&self, id: &str) -> Result<(), CallError> {
        self.submit(&serde_json::json!({
            "entrypoint": "true",
            "submission_id": id,
            "metadata": { "databuild": "held: a lost graph run may have been submitting this job run" },
        }))
        .await
    }

    async fn stop(&self, id: &str) -> Result<(), CallError> {
        call(
            "POST",
            &format!("{}/api/jobs/{id}/stop", self.base),
            Some("{}"),
        )
        .await
        .map(|_| ())
    }
}

/// A shell word for `s`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The Ray job's entrypoint: in the graph's directory, the `JobConfig` (from the
/// environment) on stdin, the job's `exec` command line.
fn entrypoint(spec: &ExecSpec) -> String {
    let words: Vec<String> = spec.argv.iter().map(|a| quote(a)).collect();
    format!(
        "cd {} && printf '%s' \"$DATABUILD_JOB_CONFIG\" | exec {}",
        quote(&spec.cwd.to_string_lossy()),
        words.join(" ")
    )
}

/// The `POST /api/jobs/` body of job run `spec`.
fn submit_body(spec: &ExecSpec, options: &crate::graph::JobExecutor) -> serde_json::Value {
    let env: serde_json::Map<String, serde_json::Value> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut body = serde_json::json!({
        "entrypoint": entrypoint(spec),
        "submission_id": spec.job_run_id,
        "runtime_env": { "env_vars": env },
    });
    if let JobExecutor::Ray(o) = options {
        if let Some(c) = o.entrypoint_num_cpus {
            body["entrypoint_num_cpus"] = c.into();
        }
        if let Some(g) = o.entrypoint_num_gpus {
            body["entrypoint_num_gpus"] = g.into();
        }
        if let Some(m) = o.entrypoint_memory {
            body["entrypoint_memory"] = m.into();
        }
    }
    body
}

/// Whether `line` is Ray's own, not the job's.
fn ray_line(line: &str, id: &str) -> bool {
    line.contains("-- Runtime env is setting up.")
        || line.starts_with(&format!("Running entrypoint for job {id}: "))
}

/// The executor: stateless, each job has its own poller.
#[derive(Debug)]
pub(crate) struct RayExecutor;

/// What Ray said of a job a lost run left (a [`Leftover`]'s detail).
#[derive(Debug)]
struct LeftState {
    address: String,
    seen: Seen,
}

/// A submitted (or adopted) Ray job.
struct RayJob {
    id: String,
    api: Api,
    state: watch::Receiver<Seen>,
    nudge: Arc<Notify>,
    poller: tokio::task::JoinHandle<()>,
    /// Bytes of Ray's log already copied.
    offset: usize,
    adopted_from: Option<String>,
}

impl RayJob {
    fn start(api: Api, id: String, initial: Seen, adopted_from: Option<String>) -> RayJob {
        let (tx, state) = watch::channel(initial);
        let nudge = Arc::new(Notify::new());
        let poller = tokio::spawn(poll(api.clone(), id.clone(), tx, nudge.clone()));
        RayJob {
            id,
            api,
            state,
            nudge,
            poller,
            offset: 0,
            adopted_from,
        }
    }

    /// Copies what the job wrote since the last look into `log`: whole lines only,
    /// unless `all`.
    async fn tail(&mut self, log: &Log, all: bool) {
        let Ok(text) = self.api.logs(&self.id).await else {
            return;
        };
        if text.len() < self.offset {
            self.offset = 0;
        }
        let new = &text[self.offset..];
        let take = if all {
            new.len()
        } else {
            new.rfind('\n').map_or(0, |i| i + 1)
        };
        if take == 0 {
            return;
        }
        let mut kept = String::new();
        for line in new[..take].split_inclusive('\n') {
            if !ray_line(line, &self.id) {
                kept.push_str(line);
            }
        }
        self.offset += take;
        if !kept.is_empty() {
            log.write(Stream::Stdout, kept.as_bytes());
        }
    }
}

impl Drop for RayJob {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Follows job `id` until it ends, publishing what Ray says on `tx`; `nudge` makes it
/// look again at once (after a stop).
async fn poll(api: Api, id: String, tx: watch::Sender<Seen>, nudge: Arc<Notify>) {
    let mut interval = MIN_POLL;
    let mut failing_since: Option<Instant> = None;
    let mut unknown = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = nudge.notified() => interval = MIN_POLL,
        }
        let seen = match api.status(&id).await {
            Ok(Some(seen)) => {
                failing_since = None;
                unknown = 0;
                seen
            }
            Ok(None) => {
                unknown += 1;
                if unknown < UNKNOWN_LIMIT {
                    continue;
                }
                Seen::Lost(format!(
                    "Ray no longer knows ray job {id} (was the cluster at {} restarted?)",
                    api.base
                ))
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::warn!(ray_job = %id, error = %e, "cannot ask Ray about a job; retrying");
                if since.elapsed() < UNREACHABLE_LIMIT {
                    interval = (interval.mul_f32(1.5)).min(MAX_POLL);
                    continue;
                }
                // It may still run; try to stop it.
                let _ = api.stop(&id).await;
                Seen::Lost(format!(
                    "lost contact with the Ray dashboard at {} for {}: {e}",
                    api.base,
                    humantime(UNREACHABLE_LIMIT)
                ))
            }
        };
        let over = seen.is_over();
        let changed = super::publish(&tx, seen);
        if over {
            return;
        }
        interval = if changed {
            MIN_POLL
        } else {
            interval.mul_f32(1.5).min(MAX_POLL)
        };
    }
}

/// How a Ray job ended, in words naming the Ray job.
fn describe(id: &str, seen: &Seen) -> Exit {
    match seen {
        Seen::Ended { status, .. } if status == "SUCCEEDED" => Exit::Success,
        Seen::Ended {
            status,
            exit_code: Some(code),
            ..
        } if status == "FAILED" => Exit::ProgramFailed(format!("exit code {code} (ray job {id})")),
        Seen::Ended {
            status, message, ..
        } if status == "FAILED" => {
            let first = message.lines().next().unwrap_or("").trim();
            let first: String = first.chars().take(300).collect();
            Exit::Failed(Failure::new(
                FailureCause::JobFailed,
                format!(
                    "ray job {id} failed: {}",
                    if first.is_empty() {
                        "Ray gave no reason"
                    } else {
                        &first
                    }
                ),
            ))
        }
        Seen::Ended { status, .. } if status == "STOPPED" => Exit::Failed(Failure::new(
            FailureCause::ClusterStopped,
            format!(
                "stopped: ray job {id} was stopped outside databuild (`ray job stop` or the dashboard)"
            ),
        )),
        Seen::Ended { status, .. } => {
            Exit::Failed(Failure::new(
                FailureCause::ClusterStopped,
                format!("ray job {id} ended in Ray status {status}"),
            ))
        }
        Seen::Lost(why) => Exit::Failed(Failure::new(FailureCause::ClusterStopped, why.clone())),
        Seen::Pending | Seen::Running => {
            Exit::Failed(Failure::new(
                FailureCause::ClusterStopped,
                format!("stopped watching ray job {id} before it ended"),
            ))
        }
    }
}

/// Why a job could not be submitted to `address`, found at `from`.
fn submit_error(address: &str, from: &str, e: &CallError) -> String {
    match e {
        CallError::Unreachable(why) => format!(
            "cannot submit to Ray at `{address}` (from {from}): {why}; start a Ray cluster with `ray start --head --dashboard-host=127.0.0.1` (in databuild's repository: `scripts/ray.sh start`), or point `address` in `[graph.ray]` or `RAY_ADDRESS` at its dashboard"
        ),
        CallError::Status(..) => {
            format!("cannot submit to Ray at `{address}` (from {from}): {e}")
        }
    }
}

#[async_trait::async_trait]
impl Executor for RayExecutor {
    fn name(&self) -> &'static str {
        NAME
    }

    fn queues(&self) -> bool {
        true
    }

    async fn submit(
        &self,
        job: &JobDef,
        spec: &ExecSpec,
        adopt: Option<Leftover>,
        _log: &Arc<Log>,
    ) -> Result<Box<dyn RunningJob>, String> {
        let JobExecutor::Ray(options) = &job.executor else {
            return Err(format!("job `{}` does not run on Ray", job.label));
        };
        if let Some(o) = adopt {
            let (address, seen) = o
                .detail
                .downcast_ref::<LeftState>()
                .map(|s| (s.address.clone(), s.seen.clone()))
                .ok_or_else(|| format!("ray job {} cannot be adopted: no Ray state", o.id))?;
            return Ok(Box::new(RayJob::start(
                Api::new(&address),
                o.id,
                seen,
                Some(o.job_run_id),
            )));
        }
        let (address, from) = options.resolved_address()?;
        let api = Api::new(&address);
        api.submit(&submit_body(spec, &job.executor))
            .await
            .map_err(|e| submit_error(&address, from, &e))?;
        Ok(Box::new(RayJob::start(
            api,
            spec.job_run_id.clone(),
            Seen::Pending,
            None,
        )))
    }

    async fn recover(
        &self,
        bel: &dyn EventLog,
        graph: &Graph,
        lost: &[String],
    ) -> Result<Vec<Leftover>, CoreError> {
        Ok(recover::find_orphans(bel, graph, lost).await?)
    }

    async fn cancel_leftovers(&self, leftovers: Vec<Leftover>) {
        recover::cancel_orphans(&leftovers).await;
    }
}

#[async_trait::async_trait]
impl RunningJob for RayJob {
    fn submission(&self) -> Option<Submission> {
        Some(Submission {
            executor: NAME,
            id: self.id.clone(),
            adopted_from: self.adopted_from.clone(),
        })
    }

    fn started(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let mut state = self.state.clone();
        Box::pin(async move {
            let _ = state.wait_for(|s| !matches!(s, Seen::Pending)).await;
        })
    }

    async fn watch(&mut self, log: &Arc<Log>) -> Exit {
        loop {
            let seen = self.state.borrow_and_update().clone();
            if seen.is_over() {
                return describe(&self.id, &seen);
            }
            tokio::select! {
                r = self.state.changed() => {
                    if r.is_err() && !self.state.borrow().is_over() {
                        return describe(&self.id, &self.state.borrow().clone());
                    }
                }
                () = tokio::time::sleep(TAIL_EVERY) => {
                    if seen != Seen::Pending {
                        self.tail(log, false).await;
                    }
                }
            }
        }
    }

    async fn cancel(&mut self, grace: Duration) {
        if self.state.borrow().is_over() {
            return;
        }
        if let Err(e) = self.api.stop(&self.id).await {
            tracing::warn!(ray_job = %self.id, error = %e, "cannot stop a Ray job");
        }
        self.nudge.notify_one();
        let ended = tokio::time::timeout(grace + CANCEL_SLACK, self.state.wait_for(Seen::is_over));
        if ended.await.is_err() {
            tracing::warn!(ray_job = %self.id, "a stopped Ray job has not ended yet");
        }
    }

    async fn fetch_logs(&mut self, log: &Arc<Log>) {
        self.tail(log, true).await;
        self.poller.abort();
    }
}

#[cfg(test)]
mod tests {
    use databuild_proto::JobConfig;

    use super::*;

    fn ended(status: &str, exit_code: Option<i64>, message: &str) -> Seen {
        Seen::Ended {
            status: status.into(),
            message: message.into(),
            exit_code,
        }
    }

    fn reason(seen: &Seen) -> String {
        match describe("r1", seen) {
            Exit::Success => "success".into(),
            Exit::ProgramFailed(r) | Exit::Failed(Failure { reason: r, .. }) => r,
        }
    }

    #[test]
    fn ray_end_states_map_to_reasons() {
        assert_eq!(reason(&ended("SUCCEEDED", Some(0), "")), "success");
        assert!(matches!(
            describe("r1", &ended("FAILED", Some(3), "whatever")),
            Exit::ProgramFailed(r) if r == "exit code 3 (ray job r1)"
        ));
        assert_eq!(
            reason(&ended("FAILED", None, "Job supervisor actor died\nmore")),
            "ray job r1 failed: Job supervisor actor died"
        );
        assert!(reason(&ended("STOPPED", None, ""))
            .starts_with("stopped: ray job r1 was stopped outside databuild"));
        assert_eq!(reason(&Seen::Lost("gone".into())), "gone");
    }

    #[test]
    fn job_info_parses_status_message_and_exit_code() {
        let info = serde_json::json!({"status": "FAILED", "message": "m", "driver_exit_code": 3});
        assert_eq!(Seen::from_info(&info), ended("FAILED", Some(3), "m"));
        let info = serde_json::json!({"status": "RUNNING", "driver_exit_code": null});
        assert_eq!(Seen::from_info(&info), Seen::Running);
        assert_eq!(
            Seen::from_info(&serde_json::json!({"status": "PENDING"})),
            Seen::Pending
        );
        assert!(ended("SUCCEEDED", None, "").succeeded());
    }

    #[test]
    fn entrypoint_runs_in_the_graph_directory_with_the_config_on_stdin() {
        let spec = ExecSpec {
            label: "x".into(),
            job_run_id: "r1".into(),
            argv: vec!["/g/jobs/x.sh".into(), "exec".into(), "it's".into()],
            cwd: "/g dir".into(),
            env: vec![("DATABUILD_JOB_CONFIG".into(), "{}".into())],
            stdin: "{}".into(),
            timeout: None,
            kill_grace: Duration::from_secs(1),
            log_path: "/tmp/x.log".into(),
            log_cap_bytes: 1,
            max_bel_lines: 1,
            kill_leftovers: true,
            outputs: Vec::new(),
            config: JobConfig::default(),
            graph_run_id: "g".into(),
        };
        assert_eq!(
            entrypoint(&spec),
            "cd '/g dir' && printf '%s' \"$DATABUILD_JOB_CONFIG\" | exec '/g/jobs/x.sh' 'exec' 'it'\\''s'"
        );
        let body = submit_body(&spec, &JobExecutor::Local);
        assert_eq!(body["submission_id"], "r1");
        assert_eq!(
            body["runtime_env"]["env_vars"]["DATABUILD_JOB_CONFIG"],
            "{}"
        );
        assert!(body.get("entrypoint_num_cpus").is_none());
    }

    #[test]
    fn rays_own_log_lines_are_dropped() {
        assert!(ray_line(
            "2026-11-30 10:57:03,772\tINFO job_manager.py:581 -- Runtime env is setting up.\n",
            "r1"
        ));
        assert!(ray_line(
            "Running entrypoint for job r1: cd /g && x\n",
            "r1"
        ));
        assert!(!ray_line("Running entrypoint for job r2: x\n", "r1"));
        assert!(!ray_line("hello\n", "r1"));
    }
}
