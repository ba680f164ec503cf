//! Row locks and log positions for one write transaction. A write in [`Mode::Shared`]
//! (appends, claims) holds the write lock shared and locks the keys it reads before reading
//! them, and the keys it writes before it writes them, each with a transaction-level
//! advisory lock it *tries* to take: if another write holds one, the write is rolled back
//! and run again in [`Mode::Exclusive`], which holds the write lock alone and needs no row
//! locks. No write waits for a row lock, so writes never deadlock. Log positions are
//! reserved from `events_seq` (see `schema::SCHEMA_V5`).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::state::State;
use crate::BelError;

/// How a write transaction excludes the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The write lock shared, plus a lock per key it touches.
    Shared,
    /// The write lock alone.
    Exclusive,
}

/// The kind of a locked key (the first half of its two-integer advisory lock key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Class {
    Partition = 1,
    Run = 2,
    JobRun = 3,
    Want = 4,
    Backfill = 5,
}

/// The keys a shared-mode write holds, and those it wrote without holding yet.
#[derive(Debug, Default)]
pub(super) struct KeyLocks {
    held: HashMap<Class, HashSet<String>>,
    needed: BTreeSet<(Class, String)>,
}

impl KeyLocks {
    fn holds(&self, class: Class, k: &str) -> bool {
        self.held.get(&class).is_some_and(|keys| keys.contains(k))
    }
}

/// The statement that takes the write lock in `mode` (waiting for any write holding it
/// in a mode that excludes this one).
pub(super) fn write_lock_sql(mode: Mode) -> &'static str {
    match mode {
        Mode::Shared => "SELECT pg_advisory_xact_lock_shared($1)",
        Mode::Exclusive => "SELECT pg_advisory_xact_lock($1)",
    }
}

/// Keys to lock, of any class: each key's class, the class's number, and the key.
#[derive(Debug, Default)]
pub(super) struct Unheld {
    kinds: Vec<Class>,
    classes: Vec<i32>,
    keys: Vec<String>,
}

impl Unheld {
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Tries to lock every key $2[i] of class $1[i]; true if it got them all.
pub(super) const TRY_LOCK: &str =
    "SELECT coalesce(bool_and(pg_try_advisory_xact_lock(c, hashtext(k))), true)
     FROM unnest($1::int4[], $2::text[]) AS t(c, k)";

/// How many positions a write reserves at most at once when it was not told how many.
const MAX_GROWTH: usize = 1024;

impl State<'_> {
    /// Locks the keys of `wanted` not yet held, in one round trip. In shared mode, a key
    /// another write holds makes this write contended (see [`State::contended`]).
    pub(super) async fn lock(&mut self, wanted: Vec<(Class, Vec<String>)>) -> Result<(), BelError> {
        self.write_lock().await?;
        let unheld = self.unheld(wanted);
        if unheld.is_empty() {
            return Ok(());
        }
        let stmt = self.stmts.get(self.tx, TRY_LOCK).await?;
        let got = try_lock(self.tx, &stmt, &unheld).await?;
        self.locked(unheld, got)
    }

    /// Takes the write lock in this write's mode, if it is not held yet: before anything
    /// else a write reads or writes.
    pub(super) async fn write_lock(&mut self) -> Result<(), BelError> {
        if !self.write_locked {
            let stmt = self.stmts.get(self.tx, write_lock_sql(self.mode)).await?;
            self.tx
                .execute(&stmt, &[&super::schema::WRITE_LOCK])
                .await?;
            self.write_locked = true;
        }
        Ok(())
    }

    /// The keys of `wanted` to lock (none in exclusive mode).
    pub(super) fn unheld(&self, wanted: Vec<(Class, Vec<String>)>) -> Unheld {
        let mut out = Unheld::default();
        if self.mode == Mode::Exclusive {
            return out;
        }
        for (class, keys) in wanted {
            let keys: BTreeSet<String> = keys
                .into_iter()
                .filter(|k| !self.locks.holds(class, k))
                .collect();
            for k in keys {
                out.kinds.push(class);
                out.classes.push(class as i32);
                out.keys.push(k);
            }
        }
        out
    }

    /// Records what [`try_lock`] got for `unheld`.
    pub(super) fn locked(&mut self, unheld: Unheld, got: bool) -> Result<(), BelError> {
        if !got {
            return Err(self.contend());
        }
        for (class, k) in unheld.kinds.into_iter().zip(unheld.keys) {
            self.locks.needed.remove(&(class, k.clone()));
            self.locks.held.entry(class).or_default().insert(k);
        }
        Ok(())
    }

    /// Records that this write changes key `k` of `class`: it is locked before the write
    /// is flushed, if it is not held by then.
    pub(super) fn touch(&mut self, class: Class, k: &str) {
        if self.mode == Mode::Shared && !self.locks.holds(class, k) {
            self.locks.needed.insert((class, k.to_string()));
        }
    }

    /// Locks every key written but not yet held.
    pub(super) async fn lock_touched(&mut self) -> Result<(), BelError> {
        let mut by_class: Vec<(Class, Vec<String>)> = Vec::new();
        for (class, k) in std::mem::take(&mut self.locks.needed) {
            match by_class.last_mut() {
                Some((c, keys)) if *c == class => keys.push(k),
                _ => by_class.push((class, vec![k])),
            }
        }
        self.lock(by_class).await
    }

    /// What a read that needs every row (unfinished runs, a run's holdings, leases) does:
    /// nothing in exclusive mode; in shared mode, it makes the write contended.
    pub(super) fn needs_exclusive(&mut self) -> Result<(), BelError> {
        match self.mode {
            Mode::Exclusive => Ok(()),
            Mode::Shared => Err(self.contend()),
        }
    }

    fn contend(&mut self) -> BelError {
        self.contended = true;
        BelError::InvalidTransition(
            "a concurrent write holds a row this write needs; it runs again alone".into(),
        )
    }

    /// The next log position, reserving more if none is left.
    pub(super) async fn next_position(&mut self) -> Result<i64, BelError> {
        if self.seqs.is_empty() {
            let n = if self.expected > 0 {
                std::mem::take(&mut self.expected)
            } else {
                self.growth = (self.growth * 2).clamp(1, MAX_GROWTH);
                self.growth
            };
            self.reserve(n).await?;
        }
        Ok(self.seqs.pop_front().expect("positions were just reserved"))
    }

    /// Reserves `n` log positions.
    pub(super) async fn reserve(&mut self, n: usize) -> Result<(), BelError> {
        self.write_lock().await?;
        let stmt = self.stmts.get(self.tx, RESERVE).await?;
        let row = self.tx.query_one(&stmt, &[&reserve_count(n)]).await?;
        self.reserved(&row);
        Ok(())
    }

    /// Takes the positions a [`RESERVE`] returned.
    pub(super) fn reserved(&mut self, row: &tokio_postgres::Row) {
        let mut got: Vec<i64> = row.get(0);
        got.sort_unstable();
        self.seqs.extend(got);
    }
}

/// Reserves $1 log positions.
pub(super) const RESERVE: &str = "SELECT databuild_reserve($1)";

/// The parameter of [`RESERVE`] for `n` positions.
pub(super) fn reserve_count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Runs [`TRY_LOCK`] (prepared as `stmt`) for `unheld`; true if every key was locked.
pub(super) async fn try_lock(
    tx: &tokio_postgres::Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    unheld: &Unheld,
) -> Result<bool, tokio_postgres::Error> {
    if unheld.is_empty() {
        return Ok(true);
    }
    let row = tx.query_one(stmt, &[&unheld.classes, &unheld.keys]).await?;
    Ok(row.get(0))
}
