//! The Slurm executor: each job run is one batch job submitted with `sbatch` (the job's
//! environment exported, the graph's directory as working directory, the `JobConfig` as
//! stdin, a job name holding the job label and job run id). One poller per graph run
//! watches every job with one `squeue` call per tick (`sacct -c` for jobs `squeue` no
//! longer shows), backing off while nothing changes; cancellations are batched into one
//! `scancel` ([`poller`]). Output is read back from the files Slurm writes (beside the
//! job logs, so that directory must be visible to the compute nodes).
//!
//! Restart safety: a graph run whose databuild died leaves Slurm jobs behind. The run
//! that reclaims it finds them ([`recover`]) by the ids recorded in its partition
//! events (and by job name for a job whose id was not recorded yet), adopts a job still
//! running (or completed) for the same task and configuration, and cancels the rest.

mod poller;
mod recover;

use self::poller::{command, Seen, Slurm, CANCEL_SLACK, TAIL_EVERY};

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use databuild_bel::EventLog;
use databuild_proto::FailureCause;
use tokio::sync::watch;

use super::{
    log::{Log, Stream},
    Executor, Exit, Leftover, RunningJob, Submission,
};
use crate::{
    graph::{Graph, JobDef, JobExecutor, SlurmResources},
    scheduler::runner::{ExecSpec, Failure},
    CoreError,
};

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
