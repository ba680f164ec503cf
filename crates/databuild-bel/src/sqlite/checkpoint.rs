//! Checkpoints of the write-ahead log on a background thread. With `synchronous = NORMAL`
//! a checkpoint is where SQLite `fsync`s (the log, then the database file); left to the
//! writer, every 1,000 pages one append waits for both (about 12 ms on a slow disk, which
//! in a chain of short jobs cost more than all the other appends together). Here the
//! writer only notes how long the log has grown and wakes a thread with its own
//! connection, which runs a PASSIVE checkpoint (never blocking writers) while the writer
//! goes on. Should that thread fall far behind, the writer checkpoints itself.

use std::{
    cell::Cell,
    os::raw::c_int,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use rusqlite::{hooks::Wal, Connection};

/// Log pages after which the background thread checkpoints (16 MiB of 4 KiB pages; four
/// times SQLite's default for its own automatic checkpoint). A checkpoint copies each page
/// once however often the log rewrote it, and a build rewrites the same few pages on every
/// append: a longer log between checkpoints copies fewer pages per job (a W3 build of
/// 1,000 jobs: 52 `fsync`s instead of about 250).
const BACKGROUND_PAGES: c_int = 4_000;
/// Log pages after which the writer checkpoints itself: the background thread is behind.
const WRITER_PAGES: c_int = 20_000;

thread_local! {
    /// Pages in the log after this thread's last commit (set by the log hook, which SQLite
    /// calls on the committing thread).
    static LOG_PAGES: Cell<c_int> = const { Cell::new(0) };
}

fn note_log_pages(_wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    LOG_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Replaces the writer connection's automatic checkpoint with the log-size hook.
pub(super) fn install(conn: &Connection) {
    conn.wal_hook(Some(note_log_pages));
}

#[derive(Debug, Default)]
struct Wanted {
    checkpoint: bool,
    stop: bool,
}

/// The checkpoint thread of one event log (started on first need, stopped on drop, which
/// waits for a checkpoint in progress).
#[derive(Debug)]
pub(super) struct Checkpointer {
    path: PathBuf,
    wanted: Arc<(Mutex<Wanted>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            wanted: Arc::default(),
            thread: Mutex::new(None),
        }
    }

    /// After a commit on `conn` (the writer): hands a checkpoint to the thread once the
    /// log is long enough, or runs one at once when it is far too long.
    pub(super) fn after_commit(&self, conn: &Connection) {
        let pages = LOG_PAGES.with(|p| p.replace(0));
        if pages >= WRITER_PAGES {
            checkpoint(conn);
        } else if pages >= BACKGROUND_PAGES {
            self.request();
        }
    }

    fn request(&self) {
        let mut thread = self.thread.lock().expect("checkpoint thread");
        if thread.is_none() {
            let path = self.path.clone();
            let wanted = self.wanted.clone();
            match std::thread::Builder::new()
                .name("bel-checkpoint".into())
                .spawn(move || run(&path, &wanted))
            {
                Ok(handle) => *thread = Some(handle),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot start the checkpoint thread; the writer checkpoints later");
                    return;
                }
            }
        }
        let (lock, cvar) = &*self.wanted;
        lock.lock().expect("checkpoint request").checkpoint = true;
        cvar.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let Some(handle) = self.thread.get_mut().expect("checkpoint thread").take() else {
            return;
        };
        let (lock, cvar) = &*self.wanted;
        lock.lock().expect("checkpoint request").stop = true;
        cvar.notify_one();
        let _ = handle.join();
    }
}

/// The thread: one PASSIVE checkpoint per request, on its own connection.
fn run(path: &Path, wanted: &(Mutex<Wanted>, Condvar)) {
    let mut conn: Option<Connection> = None;
    loop {
        {
            let (lock, cvar) = wanted;
            let mut w = lock.lock().expect("checkpoint request");
            while !w.checkpoint && !w.stop {
                w = cvar.wait(w).expect("checkpoint request");
            }
            if w.stop {
                return;
            }
            w.checkpoint = false;
        }
        if conn.is_none() {
            conn = Connection::open(path)
                .and_then(|c| c.busy_timeout(Duration::from_millis(100)).map(|()| c))
                .map_err(
                    |e| tracing::debug!(error = %e, "cannot open the event log to checkpoint it"),
                )
                .ok();
        }
        if let Some(c) = &conn {
            checkpoint(c);
        }
    }
}

/// A PASSIVE checkpoint: copies what it can without waiting for readers or writers.
fn checkpoint(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::debug!(error = %e, "checkpoint of the event log skipped");
    }
}
