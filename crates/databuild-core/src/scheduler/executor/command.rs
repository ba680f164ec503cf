//! Running a cluster engine's client program (`sbatch`, `squeue`, `curl`, ...): optional
//! text on stdin, stdout and stderr captured, killed if the call is dropped.

use std::process::{Output, Stdio};

use tokio::{io::AsyncWriteExt as _, process::Command};

/// Why a program could not be run to its end.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// The program is not on PATH.
    NotFound,
    /// It could not be started, written to or waited for.
    Failed(String),
}

/// Runs `cmd` with `stdin` written to it (else no stdin) and returns its output.
pub(crate) async fn output(mut cmd: Command, stdin: Option<&str>) -> Result<Output, CommandError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CommandError::NotFound
        } else {
            CommandError::Failed(format!("cannot run it: {e}"))
        }
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| CommandError::Failed(format!("cannot write to it: {e}")))?;
    }
    child
        .wait_with_output()
        .await
        .map_err(|e| CommandError::Failed(format!("cannot run it: {e}")))
}
