//! The Slurm executor: each job run is one batch job submitted with `sbatch` (the job's
//! environment exported, the graph's directory as working directory, the `JobConfig` as
//! stdin, a job name holding the job label and job run id). One poller per graph run
//! watches every job with one `squeue` call per tick (`sacct -c` for jobs `squeue` no
//! longer shows), backing off while nothing changes; cancellations are batched into one
//! `scancel`. Output is read back from the files Slurm writes (beside the job logs, so
//! that directory must be visible to the compute nodes).
//!
//! Restart safety: a graph run whose databuild died leaves Slurm jobs behind. The run
//! that reclaims it finds them ([`recover`]) by the ids recorded in its partition
//! events (and by job name for a job whose id was not recorded yet), adopts a job still
//! running (or completed) for the same task and configuration, and cancels the rest.

mod recover;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use databuild_bel::EventLog;
use databuild_proto::FailureCause;
use tokio::{
    io::AsyncWriteExt as _,
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};

use super::{
    log::{Log, Stream},
    Executor, Exit, Leftover, RunningJob, Submission,
};
use crate::{
    graph::{Graph, JobDef, JobExecutor, SlurmResources},
    scheduler::runner::{humantime, ExecSpec, Failure},
    CoreError,
};

/// First poll interval, and the interval after anything changed.
const MIN_POLL: Duration = Duration::from_millis(200);
/// Longest poll interval while nothing changes.
const MAX_POLL: Duration = Duration::from_secs(5);
/// How long one `sbatch`, `squeue`, `sacct` or `scancel` call may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the controller may be unreachable before its jobs are given up as lost.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(300);
/// Polls in which neither `squeue` nor `sacct -c` shows a job before it counts as lost.
const UNSEEN_LIMIT: u32 = 10;
/// How often a job's output files are read while it runs.
const TAIL_EVERY: Duration = Duration::from_millis(500);
/// `sbatch` calls at once.
const MAX_SUBMITS: usize = 8;
/// How long a cancelled job may take to end beyond the kill grace period.
const CANCEL_SLACK: Duration = Duration::from_secs(5);

/// What Slurm says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Submitted; not yet polled.
    Submitted,
    /// Waiting in the queue.
    Pending,
    /// Started (running, suspended or completing).
    Running,
    /// Ended: Slurm's state and, when known, the exit code and signal.
    Ended {
        state: String,
        exit: Option<(i32, i32)>,
    },
    /// Slurm cannot tell what became of it: why.
    Lost(String),
}

impl Seen {
    fn from_state(state: &str, exit: Option<(i32, i32)>) -> Seen {
        match state {
            "COMPLETED" | "FAILED" | "TIMEOUT" | "CANCELLED" | "NODE_FAIL" | "OUT_OF_MEMORY"
            | "PREEMPTED" | "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => Seen::Ended {
                state: state.to_string(),
                exit,
            },
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED" | "STOPPED" | "SIGNALING"
            | "STAGE_OUT" | "RESIZING" => Seen::Running,
            _ => Seen::Pending,
        }
    }

    fn is_over(&self) -> bool {
        matches!(self, Seen::Ended { .. } | Seen::Lost(_))
    }
}

/// One job as `squeue` or `sacct -c` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: String,
    state: String,
    exit: Option<(i32, i32)>,
    name: String,
}

impl Row {
    fn seen(&self) -> Seen {
        Seen::from_state(&self.state, self.exit)
    }
}

enum Cmd {
    Watch { id: String, tx: watch::Sender<Seen> },
    Cancel(Vec<String>),
}

/// The Slurm side of one graph run: the poller and the submission limit.
#[derive(Debug)]
pub(crate) struct Slurm {
    cmds: mpsc::UnboundedSender<Cmd>,
    submits: Semaphore,
    spool: PathBuf,
}

impl Slurm {
    /// Starts the poller; job files go to `<log_dir>/slurm/`.
    pub(crate) fn start(log_dir: &Path) -> Arc<Slurm> {
        let (cmds, rx) = mpsc::unbounded_channel();
        tokio::spawn(poll_loop(rx));
        let spool = log_dir.join("slurm");
        Arc::new(Slurm {
            cmds,
            submits: Semaphore::new(MAX_SUBMITS),
            spool: std::path::absolute(&spool).unwrap_or(spool),
        })
    }

    fn watch(&self, id: &str, initial: Seen) -> watch::Receiver<Seen> {
        let (tx, rx) = watch::channel(initial);
        let _ = self.cmds.send(Cmd::Watch {
            id: id.to_string(),
            tx,
        });
        rx
    }

    fn cancel(&self, id: &str) {
        let _ = self.cmds.send(Cmd::Cancel(vec![id.to_string()]));
    }
}

/// Watches every job of a graph run: one `squeue` per tick for all of them.
async fn poll_loop(mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let mut watched: HashMap<String, (watch::Sender<Seen>, u32)> = HashMap::new();
    let mut interval = MIN_POLL;
    let mut next = Instant::now() + MIN_POLL;
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                let mut cancels = Vec::new();
                let mut take = |cmd| match cmd {
                    Cmd::Watch { id, tx } => {
                        watched.insert(id, (tx, 0));
                        interval = MIN_POLL;
                        next = next.min(Instant::now() + MIN_POLL);
                    }
                    Cmd::Cancel(ids) => cancels.extend(ids),
                };
                take(cmd);
                while let Ok(cmd) = cmds.try_recv() {
                    take(cmd);
                }
                if !cancels.is_empty() {
                    if let Err(e) = scancel(&cancels).await {
                        tracing::warn!(jobs = ?cancels, error = %e, "cannot cancel Slurm jobs");
                    }
                    interval = MIN_POLL;
                    next = Instant::now() + MIN_POLL;
                }
                continue;
            }
            () = tokio::time::sleep_until(next), if !watched.is_empty() => {}
        }
        let changed = poll(&mut watched, &mut failing_since).await;
        interval = if changed {
            MIN_POLL
        } else {
            interval.mul_f32(1.5).min(MAX_POLL)
        };
        next = Instant::now() + interval;
    }
}

/// One tick: asks Slurm about every watched job, updates them; whether anything changed.
async fn poll(
    watched: &mut HashMap<String, (watch::Sender<Seen>, u32)>,
    failing_since: &mut Option<Instant>,
) -> bool {
    let ids: Vec<String> = watched.keys().cloned().collect();
    let rows = match squeue(&ids, &[]).await {
        Ok(rows) => {
            *failing_since = None;
            rows
        }
        Err(e) => {
            let since = *failing_since.get_or_insert_with(Instant::now);
            tracing::warn!(error = %e, "cannot ask Slurm about its jobs; retrying");
            if since.elapsed() >= UNREACHABLE_LIMIT {
                let why = format!(
                    "lost contact with the Slurm controller for {}: {e}",
                    humantime(UNREACHABLE_LIMIT)
                );
                for (_, (tx, _)) in watched.drain() {
                    tx.send_replace(Seen::Lost(why.clone()));
                }
                // They may still run; try to stop them.
                let _ = scancel(&ids).await;
            }
            return false;
        }
    };
    let mut changed = false;
    let mut unseen = Vec::new();
    for id in ids {
        match rows.iter().find(|r| r.id == id) {
            Some(row) => changed |= update(watched, &id, row.seen()),
            None => unseen.push(id),
        }
    }
    if unseen.is_empty() {
        return changed;
    }
    // Gone from `squeue` (older than MinJobAge, or a restarted controller): the
    // job-completion log has the end.
    let ended = sacct(&unseen).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read Slurm's job-completion log");
        Vec::new()
    });
    for id in unseen {
        if let Some(row) = ended.iter().find(|r| r.id == id) {
            changed |= update(watched, &id, row.seen());
            continue;
        }
        let Some((tx, count)) = watched.get_mut(&id) else {
            continue;
        };
        *count += 1;
        if *count >= UNSEEN_LIMIT {
            tx.send_replace(Seen::Lost(format!(
                "Slurm no longer knows slurm job {id} (neither `squeue` nor `sacct -c` shows it)"
            )));
            watched.remove(&id);
            changed = true;
        }
    }
    changed
}

fn update(watched: &mut HashMap<String, (watch::Sender<Seen>, u32)>, id: &str, seen: Seen) -> bool {
    let Some((tx, count)) = watched.get_mut(id) else {
        return false;
    };
    *count = 0;
    let over = seen.is_over();
    let changed = tx.send_if_modified(|cur| {
        if *cur == seen {
            false
        } else {
            *cur = seen;
            true
        }
    });
    if over {
        watched.remove(id);
    }
    changed
}

/// Runs a Slurm command with `env` added to ours and `stdin`; its stdout, or why it failed.
async fn command(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    stdin: Option<&str>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("`{program}` not found on PATH; install Slurm's client commands (Debian: `apt-get install slurm-client`) or run the job locally (`executor = \"local\"`)")
        } else {
            format!("cannot run `{program}`: {e}")
        }
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("cannot write to `{program}`: {e}"))?;
    }
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "`{program}` did not answer within {}; is the Slurm controller up (`scontrol ping`)?",
                humantime(COMMAND_TIMEOUT)
            )
        })?
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = stderr[stderr.len().saturating_sub(3)..].join(" / ");
    Err(format!(
        "`{program}` failed ({}): {}",
        crate::protocol::describe_exit(out.status),
        if tail.is_empty() { "no message" } else { &tail }
    ))
}

/// `squeue` over the given job ids and job names (every state Slurm still remembers).
async fn squeue(ids: &[String], names: &[String]) -> Result<Vec<Row>, String> {
    let mut args: Vec<String> = ["-h", "-t", "all", "-O", "JobID:|,State:|,exit_code:|,Name:"]
        .map(String::from)
        .into();
    if !ids.is_empty() {
        args.push(format!("--jobs={}", ids.join(",")));
    }
    if !names.is_empty() {
        args.push(format!("--name={}", names.join(",")));
    }
    match command("squeue", &args, &[], None).await {
        Ok(out) => Ok(parse_squeue(&out)),
        // Every id unknown (e.g. aged out): an empty answer, not a failure.
        Err(e) if e.contains("Invalid job id") => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn parse_squeue(out: &str) -> Vec<Row> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '|');
            let id = f.next()?.trim().to_string();
            let state = f.next()?.trim().to_string();
            // A wait status: exit code in the high byte, signal in the low bits.
            let exit = f
                .next()?
                .trim()
                .parse::<i32>()
                .ok()
                .map(|w| ((w >> 8) & 0xff, w & 0x7f));
            let name = f.next().unwrap_or("").trim().to_string();
            (!id.is_empty()).then_some(Row {
                id,
                state,
                exit,
                name,
            })
        })
        .collect()
}

/// `sacct -c`: ended jobs from Slurm's job-completion log.
async fn sacct(ids: &[String]) -> Result<Vec<Row>, String> {
    let args = vec![
        "-c".to_string(),
        "-P".into(),
        "-n".into(),
        "--format=JobID,State,ExitCode,JobName".into(),
        format!("--jobs={}", ids.join(",")),
    ];
    command("sacct", &args, &[], None)
        .await
        .map(|out| parse_sacct(&out))
}

fn parse_sacct(out: &str) -> Vec<Row> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, '|');
            let id = f.next()?.trim().to_string();
            // "CANCELLED by 0"
            let state = f.next()?.split_whitespace().next()?.to_string();
            let exit = f
                .next()?
                .trim()
                .split_once(':')
                .and_then(|(c, s)| Some((c.parse::<i32>().ok()?, s.parse::<i32>().ok()?)));
            let name = f.next().unwrap_or("").trim().to_string();
            (!id.is_empty()).then_some(Row {
                id,
                state,
                exit,
                name,
            })
        })
        .collect()
}

/// `scancel` of every job in `ids`, in one call.
async fn scancel(ids: &[String]) -> Result<(), String> {
    command("scancel", ids, &[], None).await.map(|_| ())
}

/// The Slurm job name of a job run: `databuild:<label>:<job run id>`, the label reduced
/// to characters that are safe in Slurm's comma-separated name lists.
pub(crate) fn job_name(label: &str, job_run_id: &str) -> String {
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("databuild:{label}:{job_run_id}")
}

/// A shell word for `s`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: the job's `exec` command line.
fn script(argv: &[String], job_run_id: &str) -> String {
    let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    format!(
        "#!/bin/sh\n# databuild job run {job_run_id}\nexec {}\n",
        words.join(" ")
    )
}

/// `SLURM_CONF` naming a file that does not exist makes every Slurm command retry for a
/// minute before failing: said at once instead.
fn check_conf() -> Result<(), String> {
    match std::env::var_os("SLURM_CONF") {
        Some(conf) if !Path::new(&conf).exists() => Err(format!(
            "cannot submit to Slurm: `SLURM_CONF` names `{}`, which does not exist; point it at the cluster's slurm.conf, or unset it to use Slurm's default (/etc/slurm/slurm.conf)",
            Path::new(&conf).display()
        )),
        _ => Ok(()),
    }
}

/// Where a job run's Slurm files are.
#[derive(Debug, Clone)]
struct Files {
    input: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl Files {
    fn of(spool: &Path, job_run_id: &str) -> Files {
        Files {
            input: spool.join(format!("{job_run_id}.in")),
            out: spool.join(format!("{job_run_id}.out")),
            err: spool.join(format!("{job_run_id}.err")),
        }
    }
}

/// The registry name.
const NAME: &str = "slurm";

/// The Slurm executor of one graph run: its poller starts on first use.
#[derive(Debug)]
pub(crate) struct SlurmExecutor {
    log_dir: PathBuf,
    slurm: std::sync::OnceLock<Arc<Slurm>>,
}

impl SlurmExecutor {
    pub(crate) fn new(log_dir: PathBuf) -> Self {
        Self {
            log_dir,
            slurm: std::sync::OnceLock::new(),
        }
    }

    fn slurm(&self) -> &Arc<Slurm> {
        self.slurm.get_or_init(|| Slurm::start(&self.log_dir))
    }
}

/// A submitted (or adopted) Slurm job.
pub(crate) struct SlurmJob {
    id: String,
    state: watch::Receiver<Seen>,
    files: Files,
    offsets: [u64; 2],
    adopted_from: Option<String>,
    slurm: Arc<Slurm>,
    resources: SlurmResources,
}

impl SlurmJob {
    /// Copies what the job wrote since the last look into `log`.
    async fn tail(&mut self, log: &Log) {
        let files = [
            (self.files.out.clone(), Stream::Stdout),
            (self.files.err.clone(), Stream::Stderr),
        ];
        for (i, (path, stream)) in files.into_iter().enumerate() {
            // Not there yet while the job waits in the queue.
            let _ = copy_from(&path, &mut self.offsets[i], stream, log).await;
        }
    }
}

/// Copies `path` from `offset` to its end into `log`, a chunk at a time, advancing
/// `offset`.
async fn copy_from(
    path: &Path,
    offset: &mut u64,
    stream: Stream,
    log: &Log,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(*offset)).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        *offset += n as u64;
        log.write(stream, &buf[..n]);
    }
}

#[async_trait::async_trait]
impl Executor for SlurmExecutor {
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
        let JobExecutor::Slurm(resources) = &job.executor else {
            return Err(format!("job `{}` does not run on Slurm", job.label));
        };
        let slurm = self.slurm();
        if let Some(o) = adopt {
            return Ok(Box::new(SlurmJob {
                state: slurm.watch(&o.id, recover::seen_of(&o)),
                files: Files::of(&slurm.spool, &o.job_run_id),
                id: o.id,
                offsets: [0, 0],
                adopted_from: Some(o.job_run_id),
                slurm: slurm.clone(),
                resources: resources.clone(),
            }));
        }
        check_conf()?;
        let files = Files::of(&slurm.spool, &spec.job_run_id);
        tokio::fs::create_dir_all(&slurm.spool)
            .await
            .map_err(|e| format!("cannot create `{}`: {e}", slurm.spool.display()))?;
        tokio::fs::write(&files.input, &spec.stdin)
            .await
            .map_err(|e| format!("cannot write `{}`: {e}", files.input.display()))?;
        let mut args = vec![
            "--parsable".to_string(),
            "--export=ALL".into(),
            format!("--job-name={}", job_name(&spec.label, &spec.job_run_id)),
            format!("--chdir={}", spec.cwd.display()),
            format!("--output={}", files.out.display()),
            format!("--error={}", files.err.display()),
            format!("--input={}", files.input.display()),
        ];
        args.extend(resources.sbatch_args());
        let out = {
            let _permit = slurm.submits.acquire().await;
            command(
                "sbatch",
                &args,
                &spec.env,
                Some(&script(&spec.argv, &spec.job_run_id)),
            )
            .await
        };
        let out = out.map_err(|e| {
            let _ = std::fs::remove_file(&files.input);
            let hint = if e.contains("Unable to contact slurm controller") {
                "; check that the controller is up (`scontrol ping`) and that `SLURM_CONF` names the cluster's configuration"
            } else {
                ""
            };
            format!("cannot submit to Slurm: {e}{hint}")
        })?;
        let id = out.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "cannot submit to Slurm: `sbatch --parsable` printed {:?}, not a job id",
                out.trim()
            ));
        }
        Ok(Box::new(SlurmJob {
            state: slurm.watch(&id, Seen::Submitted),
            id,
            files,
            offsets: [0, 0],
            adopted_from: None,
            slurm: slurm.clone(),
            resources: resources.clone(),
        }))
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
impl RunningJob for SlurmJob {
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
            let _ = state
                .wait_for(|s| !matches!(s, Seen::Submitted | Seen::Pending))
                .await;
        })
    }

    async fn watch(&mut self, log: &Arc<Log>) -> Exit {
        let job = self;
        loop {
            let seen = job.state.borrow_and_update().clone();
            match seen {
                Seen::Ended { state, exit } => {
                    return describe(&job.id, &state, exit, &job.resources);
                }
                Seen::Lost(why) => {
                    return Exit::Failed(Failure::new(FailureCause::ClusterStopped, why))
                }
                Seen::Submitted | Seen::Pending | Seen::Running => {}
            }
            tokio::select! {
                r = job.state.changed() => {
                    if r.is_err() && !job.state.borrow().is_over() {
                        return Exit::Failed(Failure::new(
                            FailureCause::ClusterStopped,
                            format!("stopped watching slurm job {}", job.id),
                        ));
                    }
                }
                () = tokio::time::sleep(TAIL_EVERY) => job.tail(log).await,
            }
        }
    }

    async fn cancel(&mut self, grace: Duration) {
        let job = self;
        if job.state.borrow().is_over() {
            return;
        }
        job.slurm.cancel(&job.id);
        let ended = tokio::time::timeout(grace + CANCEL_SLACK, job.state.wait_for(Seen::is_over));
        if ended.await.is_err() {
            tracing::warn!(slurm_job = %job.id, "a cancelled Slurm job has not ended yet");
        }
    }

    async fn fetch_logs(&mut self, log: &Arc<Log>) {
        let job = self;
        job.tail(log).await;
        for f in [&job.files.input, &job.files.out, &job.files.err] {
            let _ = tokio::fs::remove_file(f).await;
        }
    }
}

/// How a Slurm job ended, in words. The reason starts with what happened ("timeout",
/// "out of memory", "cancelled by Slurm", "exit code N") and names the Slurm job.
fn describe(id: &str, state: &str, exit: Option<(i32, i32)>, res: &SlurmResources) -> Exit {
    let failed = |cause, reason| Exit::Failed(Failure::new(cause, reason));
    let limit = |key: &str, v: &Option<String>| {
        v.as_ref()
            .map(|v| format!(" (`{key} = \"{v}\"`)"))
            .unwrap_or_default()
    };
    match state {
        "COMPLETED" => Exit::Success,
        "FAILED" => Exit::ProgramFailed(match exit {
            Some((_, sig)) if sig != 0 => format!("killed by signal {sig} (slurm job {id})"),
            Some((code, _)) if code != 0 => format!("exit code {code} (slurm job {id})"),
            _ => format!("Slurm could not start slurm job {id}; check that the graph's directory and the job log directory exist on the compute node"),
        }),
        "TIMEOUT" => failed(
            FailureCause::Timeout,
            format!(
                "timeout: Slurm stopped slurm job {id} at its time limit{}",
                limit("time", &res.time)
            ),
        ),
        "OUT_OF_MEMORY" => failed(
            FailureCause::OutOfMemory,
            format!(
                "out of memory: Slurm stopped slurm job {id} at its memory limit{}",
                limit("mem", &res.mem)
            ),
        ),
        "CANCELLED" => failed(
            FailureCause::ClusterStopped,
            format!("cancelled by Slurm: slurm job {id} was cancelled outside databuild (`scancel` or an administrator)"),
        ),
        "NODE_FAIL" | "BOOT_FAIL" => failed(
            FailureCause::NodeFailure,
            format!("node failure: the node of slurm job {id} failed"),
        ),
        "PREEMPTED" => failed(
            FailureCause::ClusterStopped,
            format!("preempted: Slurm preempted slurm job {id}"),
        ),
        "DEADLINE" => failed(
            FailureCause::ClusterStopped,
            format!("deadline: slurm job {id} could not end before its deadline"),
        ),
        other => failed(
            FailureCause::ClusterStopped,
            format!("slurm job {id} ended in Slurm state {other}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res() -> SlurmResources {
        SlurmResources {
            time: Some("1".into()),
            mem: Some("100M".into()),
            ..Default::default()
        }
    }

    fn reason(state: &str, exit: Option<(i32, i32)>) -> String {
        match describe("42", state, exit, &res()) {
            Exit::Success => "success".into(),
            Exit::ProgramFailed(r) | Exit::Failed(Failure { reason: r, .. }) => r,
        }
    }

    fn cause(state: &str) -> FailureCause {
        match describe("42", state, Some((1, 0)), &res()) {
            Exit::Success => FailureCause::Unknown,
            Exit::ProgramFailed(_) => FailureCause::JobFailed,
            Exit::Failed(f) => f.cause,
        }
    }

    #[test]
    fn slurm_end_states_map_to_causes() {
        for (state, want) in [
            ("FAILED", FailureCause::JobFailed),
            ("TIMEOUT", FailureCause::Timeout),
            ("OUT_OF_MEMORY", FailureCause::OutOfMemory),
            ("NODE_FAIL", FailureCause::NodeFailure),
            ("BOOT_FAIL", FailureCause::NodeFailure),
            ("CANCELLED", FailureCause::ClusterStopped),
            ("PREEMPTED", FailureCause::ClusterStopped),
            ("DEADLINE", FailureCause::ClusterStopped),
            ("REVOKED", FailureCause::ClusterStopped),
        ] {
            assert_eq!(cause(state), want, "{state}");
        }
    }

    #[test]
    fn slurm_end_states_map_to_reasons() {
        assert_eq!(reason("COMPLETED", Some((0, 0))), "success");
        assert_eq!(reason("FAILED", Some((3, 0))), "exit code 3 (slurm job 42)");
        assert_eq!(
            reason("FAILED", Some((0, 9))),
            "killed by signal 9 (slurm job 42)"
        );
        assert!(reason("TIMEOUT", None).starts_with("timeout: "));
        assert!(reason("TIMEOUT", None).contains("`time = \"1\"`"));
        assert!(reason("OUT_OF_MEMORY", None).starts_with("out of memory: "));
        assert!(reason("OUT_OF_MEMORY", None).contains("`mem = \"100M\"`"));
        assert!(reason("CANCELLED", Some((0, 15))).contains("cancelled outside databuild"));
        assert!(reason("NODE_FAIL", None).starts_with("node failure: "));
        assert_eq!(
            reason("REVOKED", None),
            "slurm job 42 ended in Slurm state REVOKED"
        );
        assert!(matches!(
            describe("1", "FAILED", Some((1, 0)), &res()),
            Exit::ProgramFailed(_)
        ));
    }

    #[test]
    fn squeue_and_sacct_output_parses() {
        let rows = parse_squeue("7|FAILED|768|databuild:a:b\n8|RUNNING|0|x|y\n\n");
        assert_eq!(rows[0].exit, Some((3, 0)));
        assert_eq!(rows[0].name, "databuild:a:b");
        assert_eq!(rows[1].seen(), Seen::Running);
        assert_eq!(rows[1].name, "x|y");
        assert_eq!(parse_squeue("9|CANCELLED|15|n")[0].exit, Some((0, 15)));
        let rows = parse_sacct("7|CANCELLED by 0|0:15|n\n8|TIMEOUT|0:0|m\n");
        assert_eq!(rows[0].state, "CANCELLED");
        assert_eq!(rows[0].exit, Some((0, 15)));
        assert_eq!(
            rows[1].seen(),
            Seen::Ended {
                state: "TIMEOUT".into(),
                exit: Some((0, 0))
            }
        );
        assert_eq!(Seen::from_state("PENDING", None), Seen::Pending);
        assert_eq!(Seen::from_state("COMPLETING", None), Seen::Running);
    }

    #[test]
    fn job_names_keep_label_and_job_run_and_no_commas() {
        assert_eq!(
            job_name("daily summary,v2", "0190-ab"),
            "databuild:daily_summary_v2:0190-ab"
        );
        assert_eq!(
            script(&["/g/jobs/x.sh".into(), "exec".into(), "it's".into()], "r1"),
            "#!/bin/sh\n# databuild job run r1\nexec '/g/jobs/x.sh' 'exec' 'it'\\''s'\n"
        );
    }
}
