//! The writes of the PostgreSQL backend, each a [`WriteOp`] run in a transaction that
//! holds the write lock (shared or alone, see `locks.rs`): append, heartbeat, reclaiming
//! lost runs, invalidation and claims, applied by `crate::apply` over the transaction's
//! [`State`].

use super::{locks::Mode, state::State};
use crate::{
    apply, common, BelError, ClaimGroup, ClaimOutcome, Event, LoggedEvent, Owner, ReclaimedRun,
};

/// One write, run in a transaction that holds the write lock. `run` may be called again
/// after a lost connection, so it takes `&self`.
#[async_trait::async_trait]
pub(super) trait WriteOp: Sync {
    type Out: Send;
    /// The mode the write is tried in first: shared for the writes that touch a few known
    /// rows, alone for those that read many (unfinished runs, everything downstream).
    const MODE: Mode = Mode::Exclusive;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError>;
}

/// Appends stamped events.
pub(super) struct Append(pub Vec<Event>);

impl Append {
    /// The append of `events`, stamped first: every attempt of the transaction writes
    /// the same ids and times.
    pub(super) fn stamped(mut events: Vec<Event>) -> Self {
        for e in &mut events {
            common::stamp(e);
        }
        Self(events)
    }
}

#[async_trait::async_trait]
impl WriteOp for Append {
    type Out = Vec<LoggedEvent>;
    const MODE: Mode = Mode::Shared;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        apply::append(st, self.0.clone()).await
    }
}

/// Renews a run's lease.
pub(super) struct Heartbeat<'a> {
    pub run_id: &'a str,
    pub owner: &'a Owner,
    pub lease_until: i64,
}

#[async_trait::async_trait]
impl WriteOp for Heartbeat<'_> {
    type Out = ();
    async fn run(&self, st: &mut State<'_>) -> Result<(), BelError> {
        apply::heartbeat(st, self.run_id, self.owner, self.lease_until).await
    }
}

/// Fails the runs whose owner is gone.
pub(super) struct Reclaim<'a> {
    pub now: i64,
    pub this_host: &'a str,
    pub cleared: &'a [String],
}

#[async_trait::async_trait]
impl WriteOp for Reclaim<'_> {
    type Out = Vec<ReclaimedRun>;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        apply::reclaim_lost_runs(st, self.now, self.this_host, self.cleared).await
    }
}

/// Invalidates an AVAILABLE partition and everything built from it.
pub(super) struct Invalidate<'a> {
    pub partition_ref: &'a str,
    pub reason: &'a str,
}

#[async_trait::async_trait]
impl WriteOp for Invalidate<'_> {
    type Out = Vec<String>;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        apply::invalidate(st, self.partition_ref, self.reason).await
    }
}

/// Claims groups of partitions for a run.
pub(super) struct Claim<'a> {
    pub run_id: &'a str,
    pub client: &'a str,
    pub groups: Vec<ClaimGroup>,
}

#[async_trait::async_trait]
impl WriteOp for Claim<'_> {
    type Out = Vec<ClaimOutcome>;
    const MODE: Mode = Mode::Shared;
    async fn run(&self, st: &mut State<'_>) -> Result<Self::Out, BelError> {
        apply::claim(st, self.run_id, self.client, &self.groups).await
    }
}
