//! Local job processes as the operating system sees them: what identifies one safely
//! against pid reuse ([`identify`]), and stopping every process a lost graph run left on
//! this machine ([`stop_lost`]) before its partitions are claimed again.
//!
//! A lost run's job processes are found two ways, so that neither a job that clears its
//! environment nor one that was killed before its handle was durable escapes:
//! * the handles its JOB_RUNNING events recorded (process group, start time, boot id):
//!   the group is signalled when its leader is gone (a pid cannot be reused while it
//!   still names a group) or is still the process that was recorded;
//! * every process whose environment says it is a local job of that run
//!   (`DATABUILD_EXECUTOR=local` and `DATABUILD_GRAPH_RUN_ID`), which a job's children
//!   inherit.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use databuild_proto::JobRunHandle;

/// The executor name recorded in local handles and in `DATABUILD_EXECUTOR`.
pub(crate) const LOCAL: &str = "local";

/// The kernel's boot id: tells a process from one with the same pid after a reboot (read
/// once per process).
fn boot_id() -> String {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        })
        .clone()
}

/// State and start time (clock ticks since boot) of process `pid`, if it exists.
fn stat(pid: u32) -> Option<(char, u64)> {
    use std::io::Read as _;
    // One read of the whole line (a few hundred bytes; the kernel makes it in one go),
    // with no allocation but the path: this runs once for every local job run.
    let mut buf = [0u8; 2048];
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(&mut buf).ok()?;
    // The command name may hold spaces, parentheses and any byte: fields follow the
    // last `)`.
    let close = buf[..n].iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&buf[close + 1..n]).ok()?;
    // rest starts at field 3 (state); start time is field 22.
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The handle of a local process just started, leading its own process group;
/// `start_ticks` is its start time when it is known already (the boot clock's tick was
/// the same just before and just after it was started, [`super::spawn::boot_tick`]),
/// else it is read from `/proc`.
pub(crate) fn identify(pid: u32, host: &str, start_ticks: Option<u64>) -> JobRunHandle {
    JobRunHandle {
        executor: LOCAL.to_string(),
        host: host.to_string(),
        pid,
        start_ticks: start_ticks.unwrap_or_else(|| stat(pid).map_or(0, |(_, t)| t)),
        boot_id: boot_id(),
        id: String::new(),
    }
}

/// Whether `pid` is a live process (not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'))
}

/// The process group of `pid`.
fn pgid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    // Fields after `)`: state, ppid, pgrp.
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether process `pid`'s environment marks it as a local job of one of `runs`.
fn belongs_to(pid: u32, runs: &HashSet<&str>) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut local = false;
    let mut run = false;
    for var in environ.split(|&b| b == 0) {
        if var == b"DATABUILD_EXECUTOR=local" {
            local = true;
        } else if let Some(id) = var.strip_prefix(b"DATABUILD_GRAPH_RUN_ID=") {
            run = std::str::from_utf8(id).is_ok_and(|id| runs.contains(id));
        }
    }
    local && run
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The live processes that belong to `runs`: members of the recorded groups that are
/// still theirs, and processes marked as their local jobs.
fn find(runs: &HashSet<&str>, groups: &HashSet<u32>) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| p != me && alive(p))
        .filter(|&p| pgid(p).is_some_and(|g| groups.contains(&g)) || belongs_to(p, runs))
        .collect()
}

/// Sends `sig` to process `pid`.
#[allow(unsafe_code)] // libc::kill has no safe wrapper in std
fn signal(pid: u32, sig: i32) {
    // SAFETY: kill only takes integers and has no memory effects.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Kills every process that graph runs `runs` (lost, owned by this host) left running,
/// given the `handles` their job runs recorded, and waits until they are gone (at most
/// `deadline`). Returns how many processes were killed, or the pids still alive.
pub(crate) async fn stop_lost(
    runs: &[String],
    handles: &[JobRunHandle],
    host: &str,
    deadline: Duration,
) -> Result<usize, Vec<u32>> {
    let runs: HashSet<&str> = runs.iter().map(String::as_str).collect();
    let boot = boot_id();
    // A recorded group is still the job's when its leader is the recorded process, or is
    // gone while members remain (the kernel does not reuse a pid that names a group).
    let groups: HashSet<u32> = handles
        .iter()
        .filter(|h| h.executor == LOCAL && h.host == host && h.boot_id == boot && h.pid > 1)
        .filter(|h| match stat(h.pid) {
            Some((_, start)) => start == h.start_ticks,
            None => true,
        })
        .map(|h| h.pid)
        .collect();
    let started = Instant::now();
    let mut killed = HashSet::new();
    loop {
        let left = find(&runs, &groups);
        if left.is_empty() {
            return Ok(killed.len());
        }
        if started.elapsed() > deadline {
            return Err(left);
        }
        for &p in &left {
            signal(p, libc::SIGKILL);
            killed.insert(p);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::{os::unix::process::CommandExt as _, path::Path};

    use super::*;

    #[test]
    fn identifies_this_process_with_its_start_time_and_boot() {
        let h = identify(std::process::id(), "h", None);
        assert_eq!(h.executor, "local");
        assert!(h.start_ticks > 0);
        assert!(!h.boot_id.is_empty());
        assert!(alive(std::process::id()));
    }

    #[tokio::test]
    async fn the_start_time_known_at_spawn_is_the_one_proc_gives() {
        // Many spawns, so that some start across a tick of the boot clock.
        let mut known = 0;
        for _ in 0..200 {
            let s = super::super::spawn::spawn(&["true".into()], &[], Path::new("/")).unwrap();
            let pid = s.pid as u32;
            if let Some(t) = s.start_ticks {
                assert_eq!(Some(t), stat(pid).map(|(_, t)| t), "pid {pid}");
                known += 1;
            }
            let handle = identify(pid, "h", s.start_ticks);
            assert_eq!(Some(handle.start_ticks), stat(pid).map(|(_, t)| t));
            super::super::spawn::Child::new(s.pid).wait().await.unwrap();
        }
        assert!(known > 100, "known at spawn for {known} of 200");
    }

    #[tokio::test]
    async fn kills_a_recorded_group_and_its_children_but_not_a_reused_pid() {
        // A group leader that started a child, as a job does.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 1000 & sleep 1000"])
            .process_group(0)
            .spawn()
            .unwrap();
        // Wait until the shell has started its background child.
        let members = || {
            all_pids()
                .into_iter()
                .filter(|&p| pgid(p) == Some(child.id()))
                .count()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while members() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the group never had 2 members"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let handle = identify(child.id(), "h", None);
        // The same pid with another start time is somebody else's: left alone.
        let mut stranger = handle.clone();
        stranger.start_ticks += 1;
        let n = stop_lost(&[], &[stranger], "h", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert!(alive(child.id()));
        let n = stop_lost(&[], &[handle], "h", Duration::from_secs(5))
            .await
            .unwrap();
        assert!(n >= 2, "the leader and its child: {n}");
        child.wait().unwrap();
    }
}
