//! Running a `config` or lookup program: refs on argv or in a file, a time limit and a
//! stdout cap, and its whole process group killed when it overruns or is abandoned.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Refs go on the command line only while there are at most this many of them...
pub const ARGV_MAX_REFS: usize = 1_000;
/// ...and they take at most this many bytes; beyond either, only `DATABUILD_REFS_FILE`.
pub const ARGV_MAX_BYTES: usize = 64 * 1024;
/// The environment variable naming the file of requested refs, one per line.
pub const REFS_FILE_VAR: &str = "DATABUILD_REFS_FILE";
/// How long a timed-out program's group has between SIGTERM and SIGKILL.
pub(super) const KILL_GRACE: Duration = Duration::from_secs(1);
/// How much of the end of a program's stderr is kept for error messages.
pub(super) const STDERR_KEEP: usize = 64 * 1024;

/// What a call may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time until the program's group is killed.
    pub timeout: Duration,
    /// Bytes of stdout accepted; more kills the group.
    pub max_stdout: u64,
}

/// What the finished program left.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    /// The end of stderr (at most [`STDERR_KEEP`] bytes, from a line start when cut).
    pub stderr: Vec<u8>,
}

/// Why a call gave no [`Finished`].
#[derive(Debug)]
pub enum Failure {
    /// The file of refs could not be written.
    RefsFile(std::io::Error),
    /// The program could not be started.
    Spawn(std::io::Error),
    /// Reading the program's output or waiting for it failed.
    Io(std::io::Error),
    /// It ran past the time limit; its group was killed.
    TimedOut,
    /// It printed more than the cap; its group was killed.
    TooLarge,
}

/// Whether `refs` go on the command line as well as in the refs file.
pub fn refs_fit_argv(refs: &[String]) -> bool {
    refs.len() <= ARGV_MAX_REFS && refs.iter().map(|r| r.len() + 1).sum::<usize>() <= ARGV_MAX_BYTES
}

/// Runs `argv` in `dir` with `env` and `DATABUILD_REFS_FILE` naming a file of `refs`,
/// within `limits`.
pub async fn run(
    dir: &Path,
    env: &BTreeMap<String, String>,
    argv: &[String],
    refs: &[String],
    limits: Limits,
) -> Result<Finished, Failure> {
    let refs_file = RefsFile::write(refs).map_err(Failure::RefsFile)?;
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(dir)
        .envs(env)
        .env(REFS_FILE_VAR, &refs_file.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(Failure::Spawn)?;
    // Dropping this future (a cancelled build) kills the group, not only its leader.
    let mut group = GroupGuard(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let work = async {
        let (out, err) = tokio::try_join!(read_capped(stdout, limits.max_stdout), async {
            read_tail(stderr).await.map_err(Failure::Io)
        },)?;
        let status = child.wait().await.map_err(Failure::Io)?;
        Ok((status, out, err))
    };
    let result = match tokio::time::timeout(limits.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::TimedOut),
    };
    match result {
        Ok((status, stdout, stderr)) => {
            group.disarm();
            Ok(Finished {
                status,
                stdout,
                stderr,
            })
        }
        Err(failure) => {
            if let Some(pgid) = group.disarm() {
                terminate(&mut child, pgid).await;
            }
            Err(failure)
        }
    }
}

/// Reads all of `r`, failing with [`Failure::TooLarge`] past `cap` bytes.
async fn read_capped(r: impl AsyncRead + Unpin, cap: u64) -> Result<Vec<u8>, Failure> {
    let mut buf = Vec::new();
    let n = r
        .take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .await
        .map_err(Failure::Io)?;
    if n as u64 > cap {
        return Err(Failure::TooLarge);
    }
    Ok(buf)
}

/// Reads all of `r`, keeping about the last [`STDERR_KEEP`] bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut cut = false;
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 2 * STDERR_KEEP {
            kept.drain(..kept.len() - STDERR_KEEP);
            cut = true;
        }
    }
    if cut {
        // Start at a whole line.
        if let Some(nl) = kept.iter().position(|&b| b == b'\n') {
            kept.drain(..=nl);
        }
    }
    Ok(kept)
}

/// SIGTERM to the group, SIGKILL after [`KILL_GRACE`] (or at once when the leader is
/// gone, for what it left behind).
pub(super) async fn terminate(child: &mut tokio::process::Child, pgid: u32) {
    signal_group(pgid, libc::SIGTERM);
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    signal_group(pgid, libc::SIGKILL);
    let _ = child.wait().await;
}

/// Sends `sig` to the process group `pgid`.
#[allow(unsafe_code)] // libc::killpg has no safe wrapper in std
fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: killpg only takes integers and has no memory effects.
    unsafe {
        libc::killpg(pgid as libc::pid_t, sig);
    }
}

/// Kills the process group of a program not yet waited for when dropped.
pub(super) struct GroupGuard(Option<u32>);

impl GroupGuard {
    /// Guards the group led by the process `pid` (none when it is already reaped).
    pub(super) fn new(pid: Option<u32>) -> Self {
        GroupGuard(pid)
    }

    /// Whether it stopped guarding.
    pub(super) fn is_disarmed(&self) -> bool {
        self.0.is_none()
    }

    /// Stops guarding (the program finished or is being killed); returns the group.
    pub(super) fn disarm(&mut self) -> Option<u32> {
        self.0.take()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // The leader is not reaped yet, so its pid still names this group.
        if let Some(pgid) = self.0 {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// A temporary file of refs, one per line, removed when dropped.
struct RefsFile(PathBuf);

impl RefsFile {
    fn write(refs: &[String]) -> std::io::Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir();
        loop {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = dir.join(format!(
                "databuild-refs-{}-{seq}-{nanos:x}.txt",
                std::process::id()
            ));
            let file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let guard = RefsFile(path);
            let mut w = std::io::BufWriter::new(file);
            for r in refs {
                w.write_all(r.as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            return Ok(guard);
        }
    }
}

impl Drop for RefsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ref_lists_fit_the_command_line() {
        let few: Vec<String> = (0..10).map(|i| format!("x/{i}")).collect();
        assert!(refs_fit_argv(&few));
        let many: Vec<String> = (0..=ARGV_MAX_REFS).map(|i| format!("x/{i}")).collect();
        assert!(!refs_fit_argv(&many));
        let long = vec!["x".repeat(ARGV_MAX_BYTES)];
        assert!(!refs_fit_argv(&long));
    }

    #[tokio::test]
    async fn stdout_past_the_cap_is_refused() {
        let data = [b'a'; 100];
        assert!(matches!(
            read_capped(&data[..], 99).await,
            Err(Failure::TooLarge)
        ));
        assert_eq!(read_capped(&data[..], 100).await.unwrap().len(), 100);
    }

    #[tokio::test]
    async fn stderr_keeps_its_end_from_a_line_start() {
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        let kept = read_tail(text.as_bytes()).await.unwrap();
        let kept = String::from_utf8(kept).unwrap();
        assert!(kept.starts_with("line "), "{}", &kept[..20]);
        assert!(kept.ends_with("line 19999\n"));
        assert!(kept.len() <= 2 * STDERR_KEEP);
    }
}
