//! The Slurm side of one graph run: one poller task watches every job with one `squeue`
//! call per tick (`sacct -c` for jobs `squeue` no longer shows), backing off while
//! nothing changes, and batches cancellations into one `scancel`; the Slurm commands and
//! what they print.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};

use crate::scheduler::{
    executor::command::{self, CommandError},
    runner::humantime,
};

/// First poll interval, and the interval after anything changed.
pub(super) const MIN_POLL: Duration = Duration::from_millis(200);
/// Longest poll interval while nothing changes.
pub(super) const MAX_POLL: Duration = Duration::from_secs(5);
/// How long one `sbatch`, `squeue`, `sacct` or `scancel` call may take.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the controller may be unreachable before its jobs are given up as lost.
pub(super) const UNREACHABLE_LIMIT: Duration = Duration::from_secs(300);
/// Polls in which neither `squeue` nor `sacct -c` shows a job before it counts as lost.
pub(super) const UNSEEN_LIMIT: u32 = 10;
/// How often a job's output files are read while it runs.
pub(super) const TAIL_EVERY: Duration = Duration::from_millis(500);
/// `sbatch` calls at once.
pub(super) const MAX_SUBMITS: usize = 8;
/// How long a cancelled job may take to end beyond the kill grace period.
pub(super) const CANCEL_SLACK: Duration = Duration::from_secs(5);

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
    pub(super) fn from_state(state: &str, exit: Option<(i32, i32)>) -> Seen {
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

    pub(super) fn is_over(&self) -> bool {
        matches!(self, Seen::Ended { .. } | Seen::Lost(_))
    }
}

/// One job as `squeue` or `sacct -c` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) id: String,
    state: String,
    exit: Option<(i32, i32)>,
    pub(super) name: String,
}

impl Row {
    pub(super) fn seen(&self) -> Seen {
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
    pub(super) submits: Semaphore,
    pub(super) spool: PathBuf,
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

    pub(super) fn watch(&self, id: &str, initial: Seen) -> watch::Receiver<Seen> {
        let (tx, rx) = watch::channel(initial);
        let _ = self.cmds.send(Cmd::Watch {
            id: id.to_string(),
            tx,
        });
        rx
    }

    pub(super) fn cancel(&self, id: &str) {
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
    let changed = crate::scheduler::executor::publish(tx, seen);
    if over {
        watched.remove(id);
    }
    changed
}

/// Runs a Slurm command with `env` added to ours and `stdin`; its stdout, or why it failed.
pub(super) async fn command(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    stdin: Option<&str>,
) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    let out = tokio::time::timeout(COMMAND_TIMEOUT, command::output(cmd, stdin))
        .await
        .map_err(|_| {
            format!(
                "`{program}` did not answer within {}; is the Slurm controller up (`scontrol ping`)?",
                humantime(COMMAND_TIMEOUT)
            )
        })?
        .map_err(|e| match e {
            CommandError::NotFound => format!("`{program}` not found on PATH; install Slurm's client commands (Debian: `apt-get install slurm-client`) or run the job locally (`executor = \"local\"`)"),
            CommandError::Failed(why) => format!("`{program}`: {why}"),
        })?;
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
pub(super) async fn squeue(ids: &[String], names: &[String]) -> Result<Vec<Row>, String> {
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
pub(super) async fn scancel(ids: &[String]) -> Result<(), String> {
    command("scancel", ids, &[], None).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
