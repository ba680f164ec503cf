//! Notifications about wants (`[notify]` in the graph file): what is sent when an SLA is
//! missed, a want fails for good or is satisfied late, and the seam that sends it. A
//! `command` gets the JSON on stdin here; the webhook (an HTTP client) is implemented by
//! the service crate. Sending never blocks the reconciler: each notification is sent on
//! its own task, retried with backoff, and failures are logged.

use std::{process::Stdio, sync::Arc, time::Duration};

use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

/// What happened to a want.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The SLA deadline passed before the partition was AVAILABLE.
    SlaMissed,
    /// The partition's build failed after every retry.
    WantFailed,
    /// The partition became AVAILABLE after the SLA deadline.
    SatisfiedLate,
    /// A backfill paused after `--max-failures` failed partitions.
    BackfillPaused,
}

/// One notification, sent as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// What happened.
    pub kind: NotificationKind,
    /// The want.
    pub want_id: String,
    /// Its partition.
    pub partition_ref: String,
    /// Its SLA deadline (RFC 3339), if it has one.
    pub deadline: Option<String>,
    /// When this was noticed (RFC 3339).
    pub at: String,
    /// The schedule that created the want ("" if none).
    pub schedule: String,
    /// Why, down to the root cause, in one line.
    pub root_cause: String,
    /// The graph.
    pub graph: String,
}

/// Sends notifications somewhere.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Where it sends them, for logs.
    fn target(&self) -> String;
    /// Sends one notification once; an error says why it was not delivered.
    async fn send(&self, n: &Notification) -> Result<(), String>;
}

/// Every configured notifier, with retries.
#[derive(Clone, Default)]
pub struct Notifiers {
    targets: Vec<Arc<dyn Notifier>>,
    /// Attempts per notification and target.
    pub attempts: u32,
    /// Wait before the second attempt; doubled after each.
    pub backoff: Duration,
}

impl Notifiers {
    /// No notifier yet: 4 attempts, 1 s apart at first.
    pub fn new() -> Self {
        Self {
            targets: Vec::new(),
            attempts: 4,
            backoff: Duration::from_secs(1),
        }
    }

    /// Adds a notifier.
    pub fn add(&mut self, n: Arc<dyn Notifier>) {
        self.targets.push(n);
    }

    /// Whether any notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Sends `n` to every target in the background, each retried with backoff; returns
    /// the tasks (a caller that exits soon waits for them).
    pub fn send(&self, n: Notification) -> Vec<tokio::task::JoinHandle<()>> {
        let n = Arc::new(n);
        self.targets
            .iter()
            .map(|t| {
                let (t, n) = (t.clone(), n.clone());
                let (attempts, mut wait) = (self.attempts.max(1), self.backoff);
                tokio::spawn(async move {
                    for attempt in 1..=attempts {
                        match t.send(&n).await {
                            Ok(()) => return,
                            Err(e) if attempt < attempts => {
                                tracing::warn!(target = %t.target(), want = %n.want_id, attempt, "notification not delivered: {e}; retrying in {wait:?}");
                                tokio::time::sleep(wait).await;
                                wait *= 2;
                            }
                            Err(e) => tracing::error!(target = %t.target(), want = %n.want_id, "notification not delivered after {attempts} attempts: {e}"),
                        }
                    }
                })
            })
            .collect()
    }
}

/// `[notify] command`: runs the program with the notification's JSON on stdin; a non-zero
/// exit or `timeout` is a failed delivery.
pub struct CommandNotifier {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Its working directory (the graph file's).
    pub dir: std::path::PathBuf,
    /// How long it may run.
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl Notifier for CommandNotifier {
    fn target(&self) -> String {
        format!("command `{}`", self.argv.join(" "))
    }

    async fn send(&self, n: &Notification) -> Result<(), String> {
        let json = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let (program, args) = self.argv.split_first().ok_or("empty command")?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start it: {e}"))?;
        let mut stdin = child.stdin.take().expect("piped");
        let run = async {
            // A program that does not read its input still gets to run.
            let _ = stdin.write_all(&json).await;
            drop(stdin);
            child.wait_with_output().await
        };
        match tokio::time::timeout(self.timeout, run).await {
            Err(_) => Err(format!("it did not finish within {:?}", self.timeout)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(format!(
                "it exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }
}
