//! The values that go into and come out of the event log.

use databuild_proto::{
    BackfillEvent, BackfillStatus, JobGraphRunEvent, JobGraphRunStatus, JobRunStatus,
    PartitionEvent, PartitionStatus, WantEvent, WantStatus,
};

/// One event to append: a graph-run event (graph or job), a partition event or a want event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A `JobGraphRunEvent` carrying a `GraphEvent` or a `JobEvent`.
    Run(JobGraphRunEvent),
    /// A `PartitionEvent`.
    Partition(PartitionEvent),
    /// A `WantEvent`.
    Want(WantEvent),
    /// A `BackfillEvent`.
    Backfill(BackfillEvent),
}

impl Event {
    /// The graph run this event belongs to, if any.
    pub fn run_id(&self) -> &str {
        match self {
            Event::Run(e) => {
                if let Some(g) = &e.graph_event {
                    &g.job_graph_run_id
                } else if let Some(j) = &e.job_event {
                    &j.job_graph_run_id
                } else {
                    ""
                }
            }
            Event::Partition(p) => &p.job_graph_run_id,
            Event::Want(_) | Event::Backfill(_) => "",
        }
    }

    /// The event's timestamp in microseconds (0 if unset).
    pub fn timestamp_micros(&self) -> i64 {
        let ts = match self {
            Event::Run(e) => e.timestamp.as_ref(),
            Event::Partition(p) => p.timestamp.as_ref(),
            Event::Want(w) => w.timestamp.as_ref(),
            Event::Backfill(b) => b.timestamp.as_ref(),
        };
        ts.map(databuild_proto::timestamp_micros).unwrap_or(0)
    }
}

/// An event as stored, with its position in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Position in the log: strictly increasing in append order.
    pub seq: i64,
    /// The event with ids, timestamp and sequence filled in.
    pub event: Event,
}

/// The process that owns a graph run, for leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Host name of the owning process.
    pub host: String,
    /// Process id of the owning process.
    pub pid: u32,
}

/// Latest state of one partition (the derived view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    /// The partition ref.
    pub partition_ref: String,
    /// Its latest status.
    pub status: PartitionStatus,
    /// The graph run of the latest status ("" for external registrations).
    pub run_id: String,
    /// The job run of the latest status ("" if none).
    pub job_run_id: String,
    /// Log position of the event that set it.
    pub seq: i64,
    /// When it was set, in microseconds since the epoch.
    pub updated_micros: i64,
}

/// What the latest build of a partition (its latest AVAILABLE event) was made by and of:
/// kept while later events change its status (STALE, SCHEDULED, ...), for versions and
/// early cutoff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildRow {
    /// The producing job's label ("" for external data).
    pub job: String,
    /// The job's version (`PartitionManifest.job_version`; "" if none).
    pub version: String,
    /// The partition's digest (`PartitionManifest.digests`; "" if none was reported).
    pub digest: String,
}

/// Which partitions to list.
#[derive(Debug, Clone, Default)]
pub struct PartitionFilter {
    /// Only these statuses (all if empty).
    pub statuses: Vec<PartitionStatus>,
    /// Only refs starting with this prefix.
    pub prefix: Option<String>,
    /// Only refs matching this pattern, where `*` stands for any text (including none) and
    /// every other character for itself; the whole ref must match.
    pub pattern: Option<String>,
    /// Only refs after this one (keyset pagination: pass the last ref of a page).
    pub after: Option<String>,
    /// At most this many rows (0: no limit).
    pub limit: usize,
    /// Skip this many rows.
    pub offset: usize,
}

/// Summary of one graph run (the derived view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// The graph run id.
    pub run_id: String,
    /// The graph label.
    pub label: String,
    /// Latest graph status.
    pub status: JobGraphRunStatus,
    /// Start time, microseconds.
    pub started_micros: i64,
    /// Time of the latest graph event, microseconds.
    pub updated_micros: i64,
    /// Owning host, if known.
    pub host: Option<String>,
    /// Owning pid, if known.
    pub pid: Option<u32>,
    /// Lease expiry, microseconds, if any.
    pub lease_until_micros: Option<i64>,
}

impl RunRow {
    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status,
            JobGraphRunStatus::GraphSuccess | JobGraphRunStatus::GraphFailed
        )
    }
}

/// Which graph runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs of this graph label.
    pub label: Option<String>,
    /// Only these statuses (all if empty).
    pub statuses: Vec<JobGraphRunStatus>,
    /// Only runs started at or after this time (microseconds).
    pub started_from: Option<i64>,
    /// Only runs started before this time (microseconds).
    pub started_before: Option<i64>,
    /// At most this many (0: no limit).
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
}

/// Summary of one job run (the derived view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRunRow {
    /// The job run id.
    pub job_run_id: String,
    /// Its graph run.
    pub run_id: String,
    /// The job label.
    pub label: String,
    /// Stable hash of (label, sorted outputs).
    pub job_key: String,
    /// Latest status.
    pub status: JobRunStatus,
    /// Time of the first event, microseconds.
    pub scheduled_micros: i64,
    /// Time of the latest event, microseconds.
    pub updated_micros: i64,
}

/// How many partitions have each latest status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCount {
    /// The status.
    pub status: PartitionStatus,
    /// Partitions whose latest status it is.
    pub count: u64,
}

/// A graph run found dead and failed by [`crate::EventLog::reclaim_lost_runs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimedRun {
    /// The lost run.
    pub run_id: String,
    /// The partitions it held, now FAILED.
    pub partitions: Vec<String>,
}

/// The outputs of one task, to be claimed together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimGroup {
    /// The partitions.
    pub refs: Vec<String>,
    /// The job that will produce them.
    pub producing_job: String,
    /// Their MATERIALIZE inputs.
    pub upstream_deps: Vec<String>,
    /// If every ref is AVAILABLE when claimed, claim nothing and answer
    /// [`ClaimOutcome::Available`] (another run built them since planning).
    pub skip_if_available: bool,
}

/// What [`crate::EventLog::claim`] did with one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Every ref of the group is now SCHEDULED by the claiming run.
    Claimed,
    /// Every ref was already AVAILABLE (only with `skip_if_available`); nothing claimed.
    Available,
    /// `partition_ref` (at least) is held by unfinished graph run `owner_run_id`.
    HeldBy {
        /// A held ref of the group.
        partition_ref: String,
        /// The run holding it.
        owner_run_id: String,
    },
}

/// Latest state of one want (the derived view of its [`WantEvent`]s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantRow {
    /// The want id.
    pub want_id: String,
    /// The wanted partition.
    pub partition_ref: String,
    /// Its latest status (never [`WantStatus::WantSlaMissed`], which is `sla_missed`).
    pub status: WantStatus,
    /// When it was created, microseconds.
    pub created_micros: i64,
    /// When its latest event was written, microseconds.
    pub updated_micros: i64,
    /// When it expires, microseconds (None: never).
    pub expires_micros: Option<i64>,
    /// When its partition must be AVAILABLE, microseconds (None: no SLA).
    pub sla_micros: Option<i64>,
    /// Its SLA deadline passed before it was satisfied.
    pub sla_missed: bool,
    /// The schedule that created it ("" if none).
    pub schedule: String,
    /// The schedule tick it was created for, microseconds.
    pub tick_micros: Option<i64>,
    /// Who asked for it.
    pub requesters: Vec<String>,
    /// Why it failed, was cancelled or expired ("" otherwise).
    pub reason: String,
    /// Log position of its latest event.
    pub seq: i64,
    /// The backfill it belongs to ("" if none).
    pub backfill: String,
}

/// Microseconds since the epoch of an optional timestamp.
fn micros(t: &Option<databuild_proto::Timestamp>) -> Option<i64> {
    t.as_ref().map(databuild_proto::timestamp_micros)
}

/// The ref an optional `PartitionRef` names (empty if none).
fn ref_of(r: &Option<databuild_proto::PartitionRef>) -> String {
    r.as_ref().map(|r| r.str.clone()).unwrap_or_default()
}

impl WantRow {
    /// The row a want's creation event makes: `w` (WANT_ACTIVE, written at `ts`
    /// microseconds) stored at log position `seq`.
    pub fn created(w: &WantEvent, ts: i64, seq: i64) -> WantRow {
        WantRow {
            want_id: w.want_id.clone(),
            partition_ref: ref_of(&w.partition_ref),
            status: WantStatus::WantActive,
            created_micros: ts,
            updated_micros: ts,
            expires_micros: micros(&w.expires_at),
            sla_micros: micros(&w.sla_deadline),
            sla_missed: false,
            schedule: w.schedule.clone(),
            tick_micros: micros(&w.tick),
            requesters: w.requesting_clients.clone(),
            reason: String::new(),
            seq,
            backfill: w.backfill_id.clone(),
        }
    }

    /// Whether the want is still kept: active or satisfied.
    pub fn is_live(&self) -> bool {
        matches!(
            self.status,
            WantStatus::WantActive | WantStatus::WantSatisfied
        )
    }
}

/// Which wants to list.
#[derive(Debug, Clone, Default)]
pub struct WantFilter {
    /// Only these statuses (all if empty).
    pub statuses: Vec<WantStatus>,
    /// Only wants of this partition.
    pub partition_ref: Option<String>,
    /// Only wants with ids after this one (keyset pagination).
    pub after: Option<String>,
    /// At most this many (0: no limit).
    pub limit: usize,
    /// Only wants of this backfill.
    pub backfill: Option<String>,
    /// Only wants of these partitions (any number; all if empty).
    pub refs: Vec<String>,
    /// Only wants whose TTL ends at or before this (microseconds), soonest first instead
    /// of by id. With `statuses` of exactly ACTIVE and SATISFIED (the live wants) it reads
    /// an index of live wants by expiry.
    pub expires_by: Option<i64>,
    /// Only wants whose partition the log knows and is not AVAILABLE (STALE, FAILED, being
    /// built, forgotten): read from the partitions that are not AVAILABLE, not every want.
    pub unavailable: bool,
}

/// Latest state of one backfill (the derived view of its [`BackfillEvent`]s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillRow {
    /// The backfill id.
    pub backfill_id: String,
    /// Its name.
    pub name: String,
    /// Its latest status.
    pub status: BackfillStatus,
    /// The refs as given (ranges unexpanded).
    pub refs: Vec<String>,
    /// How many partitions they expand to.
    pub total: u64,
    /// Pause after this many failed partitions (0: never).
    pub max_failures: u32,
    /// Jobs at once.
    pub parallelism: u32,
    /// Who started it.
    pub requesters: Vec<String>,
    /// Why it paused, was cancelled or completed.
    pub reason: String,
    /// When it was created, microseconds.
    pub created_micros: i64,
    /// When its latest event was written, microseconds.
    pub updated_micros: i64,
    /// Log position of its latest event.
    pub seq: i64,
}

impl WantRow {
    /// The `databuild.v1.Want` of this row.
    pub fn to_proto(&self) -> databuild_proto::Want {
        let ts = databuild_proto::timestamp_from_micros;
        databuild_proto::Want {
            want_id: self.want_id.clone(),
            partition_ref: Some(databuild_proto::PartitionRef {
                str: self.partition_ref.clone(),
            }),
            status: self.status as i32,
            created_at: Some(ts(self.created_micros)),
            expires_at: self.expires_micros.map(ts),
            sla_deadline: self.sla_micros.map(ts),
            sla_missed: self.sla_missed,
            schedule: self.schedule.clone(),
            tick: self.tick_micros.map(ts),
            requesting_clients: self.requesters.clone(),
            reason: self.reason.clone(),
        }
    }

    /// The row a `databuild.v1.Want` describes (as a service answers): what the message
    /// lacks — when it last changed, its log position — reads as its creation.
    pub fn from_proto(w: &databuild_proto::Want) -> Self {
        let created = micros(&w.created_at).unwrap_or(0);
        Self {
            want_id: w.want_id.clone(),
            partition_ref: ref_of(&w.partition_ref),
            status: WantStatus::try_from(w.status).unwrap_or_default(),
            created_micros: created,
            updated_micros: created,
            expires_micros: micros(&w.expires_at),
            sla_micros: micros(&w.sla_deadline),
            sla_missed: w.sla_missed,
            schedule: w.schedule.clone(),
            tick_micros: micros(&w.tick),
            requesters: w.requesting_clients.clone(),
            reason: w.reason.clone(),
            seq: 0,
            backfill: w
                .want_id
                .rsplit_once('#')
                .map(|(b, _)| b.to_string())
                .unwrap_or_default(),
        }
    }
}

/// A backfill's want ids are `<backfill id>#<index in its expanded refs, 9 digits>`, so
/// that creating a chunk twice is refused and they sort in order.
pub fn backfill_want_id(backfill_id: &str, index: u64) -> String {
    format!("{backfill_id}#{index:09}")
}
