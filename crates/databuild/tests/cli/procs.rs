//! Processes as tests see them through `/proc`: liveness, process groups, environment and
//! command line; signals; waiting for a child to exit.

#![allow(dead_code)] // each test module uses a different part

use std::{
    process::{Child, ExitStatus},
    time::Duration,
};

use crate::util::wait_for;

/// `(state, pgrp)` of a process from `/proc/<pid>/stat`.
fn proc_stat(pid: &str) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// The live (not zombie) processes, with their process group.
fn live() -> impl Iterator<Item = (u32, i32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let (s, g) = proc_stat(&p.to_string())?;
            (s != 'Z' && s != 'X').then_some((p, g))
        })
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc_stat(&pid.to_string()).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

/// Whether any live process is in process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    live().any(|(_, g)| g == pgid)
}

/// Live processes whose environment holds `var` (`NAME=value`).
pub fn processes_with_env(var: &str) -> Vec<u32> {
    live()
        .map(|(p, _)| p)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == var.as_bytes()))
        })
        .collect()
}

/// Whether a live process's command line is `argv` (e.g. `["sleep", "7000123"]`) at its end.
pub fn command_alive(argv: &[&str]) -> bool {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    live().any(|(p, _)| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.ends_with(&wanted))
    })
}

/// Sends `signal` (e.g. `-INT`) to one process with the `kill` command.
pub fn kill(signal: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {signal} {pid} failed");
}

/// Kills a leftover process group (the jobs of a `databuild` that was killed with -9).
pub fn kill_group(pgid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
}

/// Waits (at most `deadline`) for `child` to exit, saying `what` if it does not.
pub fn wait_exit(child: &mut Child, what: &str, deadline: Duration) -> ExitStatus {
    let mut status = None;
    wait_for(what, deadline, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}
