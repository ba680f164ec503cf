//! A `config` program kept running for a whole planning (`config_mode = "persistent"`):
//! one JSON request per line on its stdin, one answer per line on its stdout, the same
//! time limit and stdout cap per answer as a per-call `config`, and its process group
//! killed when it fails or is dropped.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
};

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::call::{self, GroupGuard, Limits, STDERR_KEEP};

/// Why a request got no answer line. The process is unusable afterwards.
#[derive(Debug)]
pub enum Failure {
    /// The program could not be started.
    Spawn(std::io::Error),
    /// It closed its stdout or exited before answering.
    Exited(Option<std::process::ExitStatus>),
    /// It did not answer within the time limit; its group was killed.
    TimedOut,
    /// Its answer line was longer than the cap; its group was killed.
    TooLarge,
    /// Reading its answer failed.
    Io(std::io::Error),
}

/// A running persistent `config` program.
pub struct Process {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
    /// The end of its stderr so far (at most about [`STDERR_KEEP`] bytes).
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Option<tokio::task::JoinHandle<()>>,
    group: GroupGuard,
}

impl Process {
    /// Starts `argv` in `dir` with `env`, in its own process group.
    pub fn spawn(
        dir: &Path,
        env: &BTreeMap<String, String>,
        argv: &[String],
    ) -> Result<Self, Failure> {
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(Failure::Spawn)?;
        let group = GroupGuard::new(child.id());
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = tokio::spawn(keep_tail(
            child.stderr.take().expect("stderr is piped"),
            stderr.clone(),
        ));
        Ok(Process {
            child,
            stdin,
            stdout,
            stderr,
            stderr_done: Some(stderr_done),
            group,
        })
    }

    /// Sends `{"refs": [...]}` and a newline, and reads one answer line (without its
    /// newline) within `limits`. On failure the process group is killed.
    pub async fn request(&mut self, refs: &[String], limits: Limits) -> Result<Vec<u8>, Failure> {
        let mut line =
            serde_json::to_vec(&serde_json::json!({ "refs": refs })).expect("strings serialize");
        line.push(b'\n');
        let work = async {
            if self.stdin.write_all(&line).await.is_err() || self.stdin.flush().await.is_err() {
                // A closed stdin: it exited (or closed it); what it printed tells.
                return Err(Failure::Exited(None));
            }
            read_line_capped(&mut self.stdout, limits.max_stdout).await
        };
        let result = match tokio::time::timeout(limits.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::TimedOut),
        };
        if let Err(failure) = result {
            return Err(self.fail(failure).await);
        }
        result
    }

    /// Kills the group and, for a program that exited, adds how it ended.
    async fn fail(&mut self, failure: Failure) -> Failure {
        let status = match failure {
            Failure::Exited(_) => tokio::time::timeout(call::KILL_GRACE, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok),
            _ => None,
        };
        if let Some(pgid) = self.group.disarm() {
            call::terminate(&mut self.child, pgid).await;
        }
        match failure {
            Failure::Exited(_) => Failure::Exited(status),
            other => other,
        }
    }

    /// Kills the group (its answers cannot be trusted any more) and returns the end of
    /// its stderr.
    pub async fn abandon(&mut self) -> Vec<u8> {
        if let Some(pgid) = self.group.disarm() {
            call::terminate(&mut self.child, pgid).await;
        }
        self.stderr_tail().await
    }

    /// The end of what it printed on stderr. After a failure, waits (briefly) until its
    /// stderr is closed so that the last lines are in.
    pub async fn stderr_tail(&mut self) -> Vec<u8> {
        if self.group.is_disarmed() {
            if let Some(done) = self.stderr_done.take() {
                let _ = tokio::time::timeout(call::KILL_GRACE, done).await;
            }
        }
        self.stderr.lock().expect("stderr tail lock").clone()
    }
}

/// Reads up to a newline, failing past `cap` bytes; end of file first is [`Failure::Exited`].
async fn read_line_capped(
    r: &mut tokio::io::BufReader<tokio::process::ChildStdout>,
    cap: u64,
) -> Result<Vec<u8>, Failure> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.map_err(Failure::Io)?;
        if buf.is_empty() {
            return Err(Failure::Exited(None));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            line.pop();
        }
        if line.len() as u64 > cap {
            return Err(Failure::TooLarge);
        }
        if done {
            return Ok(line);
        }
    }
}

/// Reads `r` to its end, keeping about the last [`STDERR_KEEP`] bytes in `tail`.
async fn keep_tail(mut r: impl AsyncRead + Unpin, tail: Arc<Mutex<Vec<u8>>>) {
    let mut chunk = vec![0u8; 8192];
    while let Ok(n) = r.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        let mut kept = tail.lock().expect("stderr tail lock");
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 2 * STDERR_KEEP {
            let cut = kept.len() - STDERR_KEEP;
            kept.drain(..cut);
            // Start at a whole line.
            if let Some(nl) = kept.iter().position(|&b| b == b'\n') {
                kept.drain(..=nl);
            }
        }
    }
}
