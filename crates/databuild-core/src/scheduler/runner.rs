//! The local process executor: runs one `exec` in its own process group, feeds it its
//! `JobConfig` on stdin, captures stdout/stderr to a size-capped log file and to log
//! lines for the event log, and enforces timeout, cancellation and the kill grace period.

use std::{
    io::Write as _,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, sync::oneshot};

use crate::protocol::describe_exit;

/// Longest log line kept in the event log.
const MAX_LINE_CHARS: usize = 1000;

/// One execution to run.
#[derive(Debug)]
pub struct ExecSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Environment added to the caller's.
    pub env: Vec<(String, String)>,
    /// Written to stdin, then stdin is closed.
    pub stdin: String,
    /// Kill after this long.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The log file (created on first output).
    pub log_path: PathBuf,
    /// Bytes kept in the log file.
    pub log_cap_bytes: u64,
    /// Lines forwarded to the event log.
    pub max_bel_lines: usize,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecResult {
    /// Exit code 0.
    Success,
    /// Anything else, with a reason for people.
    Failed(String),
}

/// Collects output: the capped log file and the lines for the event log.
struct LogSink {
    path: PathBuf,
    file: Option<std::fs::File>,
    written: u64,
    cap: u64,
    truncated: bool,
    lines_left: usize,
    partial: [String; 2],
}

impl LogSink {
    fn write(&mut self, stream: usize, chunk: &[u8]) -> Vec<String> {
        let mut kept = 0;
        if self.written < self.cap {
            if self.file.is_none() {
                if let Some(dir) = self.path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                self.file = std::fs::File::create(&self.path).ok();
            }
            kept = chunk.len().min((self.cap - self.written) as usize);
            if let Some(f) = self.file.as_mut() {
                let _ = f.write_all(&chunk[..kept]);
            }
            self.written += kept as u64;
        }
        // Noted as soon as a byte is dropped: the cut chunk may be the job's last.
        if kept < chunk.len() && !self.truncated {
            self.truncated = true;
            if let Some(f) = self.file.as_mut() {
                let _ = writeln!(
                    f,
                    "\n[databuild: log truncated at {} bytes; further output discarded]",
                    self.cap
                );
            }
        }
        let mut lines = Vec::new();
        if self.lines_left == 0 {
            return lines;
        }
        let text = String::from_utf8_lossy(chunk);
        let partial = &mut self.partial[stream];
        for piece in text.split_inclusive('\n') {
            if partial.chars().count() < MAX_LINE_CHARS {
                partial.extend(piece.trim_end_matches('\n').chars().take(MAX_LINE_CHARS));
            }
            if piece.ends_with('\n') {
                lines.push(std::mem::take(partial));
            }
        }
        self.take_budget(lines)
    }

    fn finish(&mut self) -> Vec<String> {
        let rest: Vec<String> = self
            .partial
            .iter_mut()
            .map(std::mem::take)
            .filter(|p| !p.is_empty())
            .collect();
        self.take_budget(rest)
    }

    fn take_budget(&mut self, mut lines: Vec<String>) -> Vec<String> {
        if lines.len() >= self.lines_left {
            lines.truncate(self.lines_left.saturating_sub(1));
            lines.push(format!(
                "[databuild: further output only in the log file {}]",
                self.path.display()
            ));
            self.lines_left = 0;
        } else {
            self.lines_left -= lines.len();
        }
        lines
    }
}

/// Sends `sig` to the process group `pgid`.
#[allow(unsafe_code)] // libc::killpg has no safe wrapper in std
fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: killpg only takes integers and has no memory effects.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// Runs `spec` to completion. `on_lines` receives output lines as they arrive;
/// `cancel` firing kills the job's process group.
pub async fn run(
    spec: ExecSpec,
    cancel: oneshot::Receiver<()>,
    on_lines: impl Fn(Vec<String>) + Send + Sync + 'static,
) -> ExecResult {
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ExecResult::Failed(format!("cannot start `{}`: {e}", spec.argv[0])),
    };
    let pgid = child.id().unwrap_or(0);
    if let Some(mut stdin) = child.stdin.take() {
        let input = spec.stdin;
        tokio::spawn(async move {
            // A job that never reads stdin may exit first: a broken pipe is fine.
            let _ = stdin.write_all(input.as_bytes()).await;
        });
    }
    let sink = Arc::new(Mutex::new(LogSink {
        path: spec.log_path,
        file: None,
        written: 0,
        cap: spec.log_cap_bytes,
        truncated: false,
        lines_left: spec.max_bel_lines,
        partial: [String::new(), String::new()],
    }));
    let on_lines = Arc::new(on_lines);
    let mut readers = tokio::task::JoinSet::new();
    let streams: [Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    for (i, stream) in streams.into_iter().enumerate() {
        let Some(mut stream) = stream else { continue };
        let sink = sink.clone();
        let on_lines = on_lines.clone();
        readers.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let lines = sink.lock().expect("log sink").write(i, &buf[..n]);
                        if !lines.is_empty() {
                            on_lines(lines);
                        }
                    }
                }
            }
        });
    }

    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let killed: Option<String>;
    let status = tokio::select! {
        s = child.wait() => { killed = None; s }
        _ = timeout => {
            killed = Some(format!("timed out after {}", humantime(spec.timeout.unwrap_or_default())));
            terminate(&mut child, pgid, spec.kill_grace).await
        }
        Ok(()) = cancel => {
            killed = Some("cancelled".into());
            terminate(&mut child, pgid, spec.kill_grace).await
        }
    };
    // Output still buffered in the pipes arrives shortly; background processes that
    // keep the pipes open are not waited for.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();
    let rest = sink.lock().expect("log sink").finish();
    if !rest.is_empty() {
        on_lines(rest);
    }
    match (killed, status) {
        (Some(reason), _) => ExecResult::Failed(reason),
        (None, Ok(s)) if s.success() => ExecResult::Success,
        (None, Ok(s)) => ExecResult::Failed(describe_exit(s)),
        (None, Err(e)) => ExecResult::Failed(format!("cannot wait for the job: {e}")),
    }
}

/// SIGTERM to the group, SIGKILL after `grace`.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: u32,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(pgid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => {
            // Leftovers in the group that ignored or outlived the leader.
            signal_group(pgid, libc::SIGKILL);
            s
        }
        Err(_) => {
            signal_group(pgid, libc::SIGKILL);
            child.wait().await
        }
    }
}

/// "2s", "1.5s", "3m".
pub fn humantime(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{}s", (s * 1000.0).round() / 1000.0)
    } else if s < 3600.0 {
        format!("{}m", (s / 60.0 * 10.0).round() / 10.0)
    } else {
        format!("{}h", (s / 3600.0 * 10.0).round() / 10.0)
    }
}
