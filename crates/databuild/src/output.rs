//! Human output: a live progress display on a terminal, plain lines otherwise, and
//! time formatting.

use std::{
    io::IsTerminal as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use databuild_core::{scheduler::ProgressFn, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// `eprintln!` in one `write`: stderr is unbuffered and `eprintln!` writes each piece of
/// its format separately, a system call each, for every job that starts or ends.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

/// A progress reporter writing to stderr.
pub fn reporter(quiet: bool) -> ProgressFn {
    if quiet {
        return Arc::new(|_| {});
    }
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} jobs  {wide_msg}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let running = Arc::new(Mutex::new(Vec::<String>::new()));
        Arc::new(move |p| match p {
            Progress::Started { .. } => {}
            Progress::Planned { run_id, tasks, .. } => {
                bar.set_length(tasks as u64);
                bar.println(format!("graph run {run_id}: {tasks} jobs to run"));
                if tasks == 0 {
                    bar.finish_and_clear();
                }
            }
            Progress::JobStarted { label, .. } => {
                let mut r = running.lock().expect("progress lock");
                r.push(label);
                bar.set_message(r.join(", "));
            }
            Progress::JobFinished {
                label,
                outputs,
                ok,
                reason,
                elapsed,
                will_retry,
                ..
            } => {
                let mut r = running.lock().expect("progress lock");
                if let Some(i) = r.iter().position(|l| *l == label) {
                    r.remove(i);
                }
                bar.set_message(r.join(", "));
                if ok {
                    bar.inc(1);
                } else {
                    let what = if will_retry {
                        "failed, will retry"
                    } else {
                        "FAILED"
                    };
                    bar.println(format!(
                        "{what}: {label} {} ({reason}) after {}",
                        outputs.join(" "),
                        secs(elapsed)
                    ));
                    if !will_retry {
                        bar.inc(1);
                    }
                }
                if bar.length() == Some(bar.position()) {
                    bar.finish_and_clear();
                }
            }
            Progress::Delegated { refs, owner_run_id } => {
                bar.println(format!(
                    "wait: {} (being built by graph run {owner_run_id})",
                    refs.join(" ")
                ));
            }
            Progress::DelegationEnded {
                refs,
                owner_run_id,
                ok,
                reason,
            } => {
                bar.inc(1);
                if ok {
                    bar.println(format!(
                        "done: {} (built by graph run {owner_run_id})",
                        refs.join(" ")
                    ));
                } else {
                    bar.println(format!("FAILED: {} ({reason})", refs.join(" ")));
                }
                if bar.length() == Some(bar.position()) {
                    bar.finish_and_clear();
                }
            }
            Progress::CutOff { label, outputs } => {
                bar.inc(1);
                bar.println(format!(
                    "fresh: {label} {} (inputs unchanged, not run)",
                    outputs.join(" ")
                ));
                if bar.length() == Some(bar.position()) {
                    bar.finish_and_clear();
                }
            }
            Progress::PartitionsFailed { refs, reason } => {
                bar.inc(1);
                bar.println(format!("not built: {} ({reason})", refs.join(" ")));
                if bar.length() == Some(bar.position()) {
                    bar.finish_and_clear();
                }
            }
        })
    } else {
        Arc::new(|p| match p {
            Progress::Started { run_id } => say!("graph run {run_id}"),
            Progress::Planned {
                tasks, up_to_date, ..
            } => {
                say!(
                    "planned {}; {} up to date",
                    count(tasks, "job"),
                    count(up_to_date, "requested partition")
                )
            }
            Progress::JobStarted {
                label,
                outputs,
                attempt,
                job_run_id,
            } => {
                let retry = if attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                say!(
                    "start {label} {}{retry} [job run {job_run_id}]",
                    outputs.join(" ")
                )
            }
            Progress::JobFinished {
                label,
                outputs,
                ok,
                reason,
                elapsed,
                will_retry,
                ..
            } => {
                if ok {
                    say!("done  {label} {} in {}", outputs.join(" "), secs(elapsed))
                } else {
                    let what = if will_retry { "retry" } else { "FAIL " };
                    say!(
                        "{what} {label} {}: {reason} after {}",
                        outputs.join(" "),
                        secs(elapsed)
                    )
                }
            }
            Progress::CutOff { label, outputs } => {
                say!(
                    "fresh {label} {} (inputs unchanged, not run)",
                    outputs.join(" ")
                )
            }
            Progress::Delegated { refs, owner_run_id } => {
                say!(
                    "wait  {} (being built by graph run {owner_run_id})",
                    refs.join(" ")
                )
            }
            Progress::DelegationEnded {
                refs,
                owner_run_id,
                ok,
                reason,
            } => {
                if ok {
                    say!(
                        "done  {} (built by graph run {owner_run_id})",
                        refs.join(" ")
                    )
                } else {
                    say!("FAIL  {}: {reason}", refs.join(" "))
                }
            }
            Progress::PartitionsFailed { refs, reason } => {
                say!("skip  {}: {reason}", refs.join(" "))
            }
        })
    }
}

/// "1 partition", "2 partitions".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "1.23s".
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// RFC 3339 UTC with milliseconds from microseconds since the epoch.
pub fn timestamp(micros: i64) -> String {
    let t = databuild_proto::UtcTime::from_micros(micros);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::timestamp(1_735_689_600_123_456),
            "2025-01-01T00:00:00.123Z"
        );
        assert_eq!(
            super::timestamp(951_782_400_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
