//! Starting a local job without copying databuild's address space: `clone(CLONE_VM |
//! CLONE_VFORK)`, as `posix_spawn` does, with the child asking for SIGKILL when the thread
//! that started it dies (`PR_SET_PDEATHSIG`), which `posix_spawn` cannot do. A `fork`
//! (what `Command` does once a `pre_exec` hook is set) copies every page table of the
//! parent and makes its next writes fault page by page: a cost per job that grows with
//! databuild's memory, so quadratic in the number of tasks of a large build.

#![allow(unsafe_code)] // clone, dup2, execve, waitpid, pidfd_open, sysconf and clock_gettime have no safe wrappers

use std::{
    ffi::{CString, OsStr, OsString},
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, process::ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::ExitStatus,
};

/// Stack of the cloned child until it execs (it runs a handful of system calls).
const CHILD_STACK: usize = 64 * 1024;

thread_local! {
    /// The child stack of this thread's spawns, allocated once: `CLONE_VFORK` suspends
    /// the thread until the child has exec'd or exited, so one spawn at a time uses it.
    /// (Allocating and freeing 64 KiB per job costs a zeroing and, on free, a
    /// consolidation of the allocator's free lists.)
    static STACK: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHILD_STACK]);
}

/// A started job process: its pid and the parent's ends of its stdin, stdout, stderr.
pub(crate) struct Spawned {
    pub pid: libc::pid_t,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Its start time in clock ticks since boot, as `/proc/<pid>/stat` gives it, when
    /// known without asking: the boot clock's tick was the same just before and after.
    pub start_ticks: Option<u64>,
}

/// What the child needs, prepared by the parent (the child must not allocate).
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: [libc::c_int; 3],
    parent: libc::pid_t,
    /// Set by the child when it could not exec.
    errno: libc::c_int,
}

/// This process's environment, read once (databuild never changes its own): each
/// variable's name and its `NAME=value` for `execve`.
fn base_env() -> &'static [(OsString, CString)] {
    static BASE: std::sync::OnceLock<Vec<(OsString, CString)>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                Some((k, CString::new(kv).ok()?))
            })
            .collect()
    })
}

/// Starts `argv` in `cwd` with the environment of this process plus `env` (later names
/// win), in a new process group, with piped stdio, dying with the calling thread.
pub(crate) fn spawn(argv: &[String], env: &[(&str, &str)], cwd: &Path) -> io::Result<Spawned> {
    let cstr = |b: &[u8]| {
        CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "nul byte"))
    };
    let overrides = |name: &OsStr| env.iter().any(|(k, _)| OsStr::new(k) == name);
    let base = base_env();
    let mut envs: Vec<CString> = Vec::with_capacity(env.len());
    for (i, (k, v)) in env.iter().enumerate() {
        if !env[i + 1..].iter().any(|(later, _)| later == k) {
            envs.push(cstr(format!("{k}={v}").as_bytes())?);
        }
    }
    let path_var = match env.iter().rev().find(|(k, _)| *k == "PATH") {
        Some((_, v)) => Some(OsStr::new(v)),
        None => base
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, kv)| OsStr::from_bytes(&kv.as_bytes()["PATH=".len()..])),
    };
    let program = resolve(&argv[0], path_var)?;
    let program = cstr(program.as_os_str().as_bytes())?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let cwd = cstr(cwd.as_os_str().as_bytes())?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = base
        .iter()
        .filter(|(k, _)| !overrides(k))
        .map(|(_, kv)| kv.as_ptr())
        .chain(envs.iter().map(|e| e.as_ptr()))
        .collect();
    env_ptrs.push(std::ptr::null());

    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let mut child_args = ChildArgs {
        program: program.as_ptr(),
        argv: arg_ptrs.as_ptr(),
        envp: env_ptrs.as_ptr(),
        cwd: cwd.as_ptr(),
        fds: [
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ],
        parent: std::process::id() as libc::pid_t,
        errno: 0,
    };
    // SAFETY: the stack is ours until the child has exec'd or exited (CLONE_VFORK
    // suspends this thread until then); it grows down from its 16-byte aligned end.
    // `child` touches only `child_args` and makes async-signal-safe calls.
    let before = boot_tick();
    let pid = STACK.with_borrow_mut(|stack| unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK);
        let top = top.sub(top as usize % 16);
        libc::clone(
            child,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut child_args as *mut ChildArgs).cast(),
        )
    });
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let after = boot_tick();
    // The child has exec'd or exited: its ends of the pipes are closed here.
    drop((stdin_r, stdout_w, stderr_w));
    if child_args.errno != 0 {
        let mut status = 0;
        // SAFETY: reaps the child that failed to exec.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(child_args.errno));
    }
    Ok(Spawned {
        pid,
        stdin: stdin_w,
        stdout: stdout_r,
        stderr: stderr_r,
        start_ticks: before.filter(|b| Some(*b) == after),
    })
}

/// The child: stdio, directory, process group, death signal, default signal handling,
/// then exec. Only async-signal-safe calls; an error is left in `errno` for the parent.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent is suspended.
    unsafe {
        let a = &mut *(arg as *mut ChildArgs);
        let fail = |a: &mut ChildArgs| -> libc::c_int {
            a.errno = *libc::__errno_location();
            if a.errno == 0 {
                a.errno = libc::ECHILD;
            }
            libc::_exit(127)
        };
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            return fail(a);
        }
        // Rust ignores SIGPIPE; a job gets the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        for (i, fd) in a.fds.iter().enumerate() {
            if libc::dup2(*fd, i as libc::c_int) < 0 {
                return fail(a);
            }
        }
        if libc::chdir(a.cwd) != 0 || libc::setpgid(0, 0) != 0 {
            return fail(a);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return fail(a);
        }
        // databuild died before prctl took effect: do not run unwatched.
        if libc::getppid() != a.parent {
            *libc::__errno_location() = libc::ESRCH;
            return fail(a);
        }
        libc::execve(a.program, a.argv, a.envp);
        fail(a)
    }
}

/// Makes `fd` (this process's end of a pipe made by [`spawn`]) non-blocking, in one call.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: fcntl on a descriptor we own; F_SETFL of a pipe's end made here, whose only
    // status flag is the one set.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The tick of the boot clock now, in the clock ticks `/proc/<pid>/stat` gives a
/// process's start time in (`USER_HZ`, measured from boot as the kernel stamps a new
/// process), if the clock can be read.
pub(crate) fn boot_tick() -> Option<u64> {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a constant of the system.
    let hz =
        *HZ.get_or_init(|| u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(0));
    if hz == 0 || 1_000_000_000 % hz != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    let ns = u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?;
    Some(ns / (1_000_000_000 / hz))
}

/// A pipe whose both ends close on exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just opened and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The program `name` names: itself when it has a `/`, else the first executable file of
/// that name in `path` (the job's `PATH`).
fn resolve(name: &str, path: Option<&OsStr>) -> io::Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    use std::os::unix::fs::PermissionsExt as _;
    for dir in std::env::split_paths(path.unwrap_or(OsStr::new("/usr/bin:/bin"))) {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::from(io::ErrorKind::NotFound))
}

/// A started job process that is killed (and reaped) when dropped before it was waited
/// for.
pub(crate) struct Child {
    pid: libc::pid_t,
    /// The process's pidfd, readable once it exited: waited for on the runtime's own
    /// poller, with no thread per job (None until first waited for, or where the kernel
    /// has no `pidfd_open`).
    pidfd: Option<tokio::io::unix::AsyncFd<OwnedFd>>,
    waiter: Option<tokio::task::JoinHandle<io::Result<ExitStatus>>>,
    status: Option<ExitStatus>,
}

impl Child {
    pub(crate) fn new(pid: libc::pid_t) -> Self {
        Child {
            pid,
            pidfd: None,
            waiter: None,
            status: None,
        }
    }

    /// Waits for the process to exit (on its pidfd, else on a blocking thread); may be
    /// called again after being cancelled.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let pid = self.pid;
        if self.waiter.is_none() && self.pidfd.is_none() {
            self.pidfd = pidfd_open(pid);
        }
        if let Some(fd) = &self.pidfd {
            loop {
                let mut ready = fd.readable().await?;
                if let Some(status) = try_reap(pid)? {
                    self.status = Some(status);
                    return Ok(status);
                }
                ready.clear_ready();
            }
        }
        let waiter = self
            .waiter
            .get_or_insert_with(|| tokio::task::spawn_blocking(move || reap(pid)));
        let status = waiter.await.map_err(io::Error::other)??;
        self.waiter = None;
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: the pid is our unreaped child, so it names no other process.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        if self.waiter.is_none() {
            let pid = self.pid;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn_blocking(move || reap(pid));
            }
        }
    }
}

/// A pidfd of child `pid` registered with the runtime, if the kernel has `pidfd_open`.
fn pidfd_open(pid: libc::pid_t) -> Option<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::O_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    // SAFETY: an OwnedFd keeps its descriptor open, and names the same one, until dropped.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .ok()
}

/// Reaps `pid` if it has exited.
fn try_reap(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    waitpid(pid, libc::WNOHANG)
}

/// Blocks until `pid` exits and reaps it.
fn reap(pid: libc::pid_t) -> io::Result<ExitStatus> {
    waitpid(pid, 0)?.ok_or_else(|| io::Error::other("waitpid returned without an exit"))
}

/// `waitpid(pid, flags)` of our own child, retried when interrupted: its exit status, or
/// None if it is still running (with `WNOHANG`).
fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a valid place to write.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == pid {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
