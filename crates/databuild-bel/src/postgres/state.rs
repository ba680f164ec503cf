//! The state of one write transaction, the PostgreSQL backend's [`Rows`]: the derived rows
//! it read or wrote, kept in memory while the transaction holds the write lock, and written
//! back in a few bulk statements (`flush.rs`) before commit. Reads go to the database once
//! per row; every write goes through this state, so what it holds is what the database
//! would say. What is read with SQL over many rows (unfinished runs, what a run holds) is
//! read after a flush.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use tokio_postgres::Transaction;

use super::{
    conn::Stmts,
    locks::{self, Class, KeyLocks, Mode},
    schema,
};
use crate::{
    apply::{EventRow, GraphRow, Holdings, JobRow, Keys, Rows, RunOwner},
    BelError, BuildRow, Owner, PartitionRow, WantRow,
};

/// Changes to a keyed set (requesters of a ref, upstreams of a downstream) not yet written:
/// the stored set was cleared (or not), then `added` were added.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    pub cleared: bool,
    pub added: BTreeSet<String>,
}

pub(super) struct State<'a> {
    pub tx: &'a Transaction<'a>,
    pub stmts: &'a mut Stmts,
    pub(super) token: &'a str,
    pub(super) mode: Mode,
    /// Whether the write lock is held yet.
    pub(super) write_locked: bool,
    pub(super) locks: KeyLocks,
    /// A row this write needs is held by another write: it is rolled back and run again in
    /// exclusive mode, whatever it returned.
    pub(super) contended: bool,
    /// Log positions reserved and not yet used, in order.
    pub(super) seqs: VecDeque<i64>,
    /// How many events the write said it would store, before the first reservation.
    pub(super) expected: usize,
    /// The size of the last reservation made without being told.
    pub(super) growth: usize,
    pub(super) last_seq: Option<i64>,
    pub(super) parts: HashMap<String, Option<PartitionRow>>,
    pub(super) parts_dirty: BTreeSet<String>,
    pub(super) builds: HashMap<String, Option<BuildRow>>,
    pub(super) builds_dirty: BTreeSet<String>,
    pub(super) wants: HashMap<String, Option<WantRow>>,
    pub(super) wants_dirty: BTreeSet<String>,
    pub(super) backfills: HashMap<String, Option<crate::BackfillRow>>,
    pub(super) backfills_dirty: BTreeSet<String>,
    pub(super) graphs: HashMap<String, Option<GraphRow>>,
    pub(super) graphs_dirty: BTreeSet<String>,
    pub(super) jobs: HashMap<String, Option<JobRow>>,
    pub(super) jobs_dirty: BTreeSet<String>,
    pub(super) events: Vec<(i64, EventRow)>,
    pub(super) requesters: BTreeMap<String, Overlay>,
    /// Lineage changes by downstream ref.
    pub(super) deps: BTreeMap<String, Overlay>,
    /// Downstreams added in `deps`, by upstream.
    pub(super) deps_added_by_up: HashMap<String, BTreeSet<String>>,
    /// Stored lineage (as of the last flush) by upstream.
    pub(super) deps_stored: HashMap<String, Vec<String>>,
}

impl<'a> State<'a> {
    /// Takes the write lock alone (exclusive mode), or starts a shared-mode write, which
    /// takes it shared in the first round trip it makes (see [`State::write_lock`]).
    pub async fn begin(
        tx: &'a Transaction<'a>,
        stmts: &'a mut Stmts,
        token: &'a str,
        mode: Mode,
    ) -> Result<Self, BelError> {
        let mut st = Self {
            tx,
            stmts,
            token,
            mode,
            write_locked: false,
            locks: KeyLocks::default(),
            contended: false,
            seqs: VecDeque::new(),
            expected: 0,
            growth: 0,
            last_seq: None,
            parts: HashMap::new(),
            parts_dirty: BTreeSet::new(),
            builds: HashMap::new(),
            builds_dirty: BTreeSet::new(),
            wants: HashMap::new(),
            wants_dirty: BTreeSet::new(),
            backfills: HashMap::new(),
            backfills_dirty: BTreeSet::new(),
            graphs: HashMap::new(),
            graphs_dirty: BTreeSet::new(),
            jobs: HashMap::new(),
            jobs_dirty: BTreeSet::new(),
            events: Vec::new(),
            requesters: BTreeMap::new(),
            deps: BTreeMap::new(),
            deps_added_by_up: HashMap::new(),
            deps_stored: HashMap::new(),
        };
        if mode == Mode::Exclusive {
            st.write_lock().await?;
        }
        Ok(st)
    }

    /// Loads, in one round trip, the rows of these keys not yet held.
    async fn load(&mut self, keys: Keys) -> Result<(), BelError> {
        let Keys {
            refs,
            run_ids,
            job_run_ids,
            upstreams,
        } = keys;
        let missing = |keys: Vec<String>, have: &dyn Fn(&str) -> bool| {
            let set: BTreeSet<String> = keys.into_iter().filter(|k| !have(k)).collect();
            set.into_iter().collect::<Vec<_>>()
        };
        let refs = missing(refs, &|k| self.parts.contains_key(k));
        let run_ids = missing(run_ids, &|k| self.graphs.contains_key(k));
        let job_run_ids = missing(job_run_ids, &|k| self.jobs.contains_key(k));
        let upstreams = missing(upstreams, &|k| self.deps_stored.contains_key(k));
        // A partition whose lineage is read is being made AVAILABLE: its last build is
        // read next (early cutoff).
        let builds = missing(upstreams.clone(), &|k| self.builds.contains_key(k));
        let mut part_keys = refs.clone();
        part_keys.extend(upstreams.iter().cloned());
        let unheld = self.unheld(vec![
            (Class::Partition, part_keys),
            (Class::Run, run_ids.clone()),
            (Class::JobRun, job_run_ids.clone()),
        ]);
        let reserve = if self.expected > 0 && self.seqs.is_empty() {
            Some(locks::reserve_count(std::mem::take(&mut self.expected)))
        } else {
            None
        };
        let write_lock = !std::mem::replace(&mut self.write_locked, true);
        let s_shared = self
            .stmts
            .get(self.tx, locks::write_lock_sql(self.mode))
            .await?;
        let s_lock = self.stmts.get(self.tx, locks::TRY_LOCK).await?;
        let s_reserve = self.stmts.get(self.tx, locks::RESERVE).await?;
        let sp = self.stmts.get(self.tx, SELECT_PARTITIONS).await?;
        let sg = self.stmts.get(self.tx, SELECT_GRAPHS).await?;
        let sj = self.stmts.get(self.tx, SELECT_JOBS).await?;
        let sd = self.stmts.get(self.tx, SELECT_DEPS).await?;
        let sb = self.stmts.get(self.tx, SELECT_BUILDS).await?;
        let tx = self.tx;
        // One round trip, sent in this order: the write lock (shared) if not yet held, the
        // row locks, then the reads behind them (each statement reads what was committed
        // when it starts). Reads made without a lock are dropped with the write.
        let (_, got, reserved, p, g, j, d, b) = tokio::try_join!(
            async {
                match write_lock {
                    true => tx.execute(&s_shared, &[&schema::WRITE_LOCK]).await,
                    false => Ok(0),
                }
            },
            locks::try_lock(tx, &s_lock, &unheld),
            async {
                match reserve {
                    Some(n) => tx.query_one(&s_reserve, &[&n]).await.map(Some),
                    None => Ok(None),
                }
            },
            query_if(tx, &sp, &refs),
            query_if(tx, &sg, &run_ids),
            query_if(tx, &sj, &job_run_ids),
            query_if(tx, &sd, &upstreams),
            query_if(tx, &sb, &builds),
        )?;
        self.locked(unheld, got)?;
        if let Some(row) = reserved {
            self.reserved(&row);
        }
        for r in refs {
            self.parts.insert(r, None);
        }
        for r in builds {
            self.builds.insert(r, None);
        }
        for row in b {
            let build = BuildRow {
                job: row.get(1),
                version: row.get(2),
                digest: row.get(3),
            };
            self.builds.insert(row.get(0), Some(build));
        }
        for row in p {
            let row = super::read::partition_row(&row);
            self.parts.insert(row.partition_ref.clone(), Some(row));
        }
        for id in run_ids {
            self.graphs.insert(id, None);
        }
        for row in g {
            self.graphs.insert(
                row.get(0),
                Some(GraphRow {
                    label: row.get(1),
                    status: row.get(2),
                    started_ts: row.get(3),
                    updated_ts: row.get(4),
                    next_seq: row.get(5),
                }),
            );
        }
        for id in job_run_ids {
            self.jobs.insert(id, None);
        }
        for row in j {
            self.jobs.insert(
                row.get(0),
                Some(JobRow {
                    run_id: row.get(1),
                    label: row.get(2),
                    job_key: row.get(3),
                    status: row.get(4),
                    scheduled_ts: row.get(5),
                    updated_ts: row.get(6),
                }),
            );
        }
        for up in upstreams {
            self.deps_stored.insert(up, Vec::new());
        }
        for row in d {
            let up: String = row.get(0);
            self.deps_stored.entry(up).or_default().push(row.get(1));
        }
        Ok(())
    }
}

impl Rows for State<'_> {
    async fn build(&mut self, r: &str) -> Result<Option<BuildRow>, BelError> {
        if !self.builds.contains_key(r) {
            self.lock(vec![(Class::Partition, vec![r.to_string()])])
                .await?;
            let stmt = self
                .stmts
                .get(
                    self.tx,
                    "SELECT job, version, digest FROM builds WHERE ref = $1",
                )
                .await?;
            let row = self.tx.query_opt(&stmt, &[&r]).await?.map(|row| BuildRow {
                job: row.get(0),
                version: row.get(1),
                digest: row.get(2),
            });
            self.builds.insert(r.to_string(), row);
        }
        Ok(self.builds[r].clone())
    }

    async fn want(&mut self, want_id: &str) -> Result<Option<WantRow>, BelError> {
        if !self.wants.contains_key(want_id) {
            self.lock(vec![(Class::Want, vec![want_id.to_string()])])
                .await?;
            let row = super::wants::get_tx(self.tx, self.stmts, want_id).await?;
            self.wants.insert(want_id.to_string(), row);
        }
        Ok(self.wants[want_id].clone())
    }

    async fn backfill(&mut self, id: &str) -> Result<Option<crate::BackfillRow>, BelError> {
        if !self.backfills.contains_key(id) {
            self.lock(vec![(Class::Backfill, vec![id.to_string()])])
                .await?;
            let row = super::wants::get_backfill_tx(self.tx, self.stmts, id).await?;
            self.backfills.insert(id.to_string(), row);
        }
        Ok(self.backfills[id].clone())
    }

    fn put_backfill(&mut self, row: crate::BackfillRow) -> Result<(), BelError> {
        self.touch(Class::Backfill, &row.backfill_id);
        self.backfills_dirty.insert(row.backfill_id.clone());
        self.backfills.insert(row.backfill_id.clone(), Some(row));
        Ok(())
    }

    fn put_want(&mut self, row: WantRow) -> Result<(), BelError> {
        self.touch(Class::Want, &row.want_id);
        self.wants_dirty.insert(row.want_id.clone());
        self.wants.insert(row.want_id.clone(), Some(row));
        Ok(())
    }

    fn put_build(&mut self, r: &str, row: BuildRow) -> Result<(), BelError> {
        self.touch(Class::Partition, r);
        self.builds_dirty.insert(r.to_string());
        self.builds.insert(r.to_string(), Some(row));
        Ok(())
    }

    async fn prefetch(&mut self, keys: Keys) -> Result<(), BelError> {
        self.load(keys).await
    }

    async fn graph(&mut self, run_id: &str) -> Result<Option<GraphRow>, BelError> {
        if !self.graphs.contains_key(run_id) {
            self.load(Keys {
                run_ids: vec![run_id.to_string()],
                ..Keys::default()
            })
            .await?;
        }
        Ok(self.graphs[run_id].clone())
    }

    fn put_graph(&mut self, run_id: &str, row: GraphRow) -> Result<(), BelError> {
        self.touch(Class::Run, run_id);
        self.graphs_dirty.insert(run_id.to_string());
        self.graphs.insert(run_id.to_string(), Some(row));
        Ok(())
    }

    async fn job(&mut self, job_run_id: &str) -> Result<Option<JobRow>, BelError> {
        if !self.jobs.contains_key(job_run_id) {
            self.load(Keys {
                job_run_ids: vec![job_run_id.to_string()],
                ..Keys::default()
            })
            .await?;
        }
        Ok(self.jobs[job_run_id].clone())
    }

    fn put_job(&mut self, job_run_id: &str, row: JobRow) -> Result<(), BelError> {
        self.touch(Class::JobRun, job_run_id);
        self.jobs_dirty.insert(job_run_id.to_string());
        self.jobs.insert(job_run_id.to_string(), Some(row));
        Ok(())
    }

    async fn partition(&mut self, r: &str) -> Result<Option<PartitionRow>, BelError> {
        if !self.parts.contains_key(r) {
            self.load(Keys {
                refs: vec![r.to_string()],
                ..Keys::default()
            })
            .await?;
        }
        Ok(self.parts[r].clone())
    }

    fn put_partition(&mut self, row: PartitionRow) -> Result<(), BelError> {
        self.touch(Class::Partition, &row.partition_ref);
        self.parts_dirty.insert(row.partition_ref.clone());
        self.parts.insert(row.partition_ref.clone(), Some(row));
        Ok(())
    }

    fn remove_partition(&mut self, r: &str) -> Result<(), BelError> {
        self.touch(Class::Partition, r);
        self.parts_dirty.insert(r.to_string());
        self.parts.insert(r.to_string(), None);
        Ok(())
    }

    async fn insert_event(&mut self, row: EventRow) -> Result<i64, BelError> {
        let seq = self.next_position().await?;
        self.last_seq = Some(seq);
        self.events.push((seq, row));
        Ok(seq)
    }

    fn expect_events(&mut self, n: usize) {
        if self.seqs.is_empty() {
            self.expected = n;
        }
    }

    fn add_requesters(&mut self, r: &str, clients: &[String]) -> Result<(), BelError> {
        self.touch(Class::Partition, r);
        if !clients.is_empty() {
            let o = self.requesters.entry(r.to_string()).or_default();
            o.added.extend(clients.iter().cloned());
        }
        Ok(())
    }

    fn clear_requesters(&mut self, r: &str) -> Result<(), BelError> {
        self.touch(Class::Partition, r);
        let o = self.requesters.entry(r.to_string()).or_default();
        o.cleared = true;
        o.added.clear();
        Ok(())
    }

    fn replace_deps(&mut self, downstream: &str, upstreams: Vec<String>) -> Result<(), BelError> {
        self.touch(Class::Partition, downstream);
        for u in &upstreams {
            self.touch(Class::Partition, u);
        }
        if let Some(old) = self.deps.get(downstream) {
            for u in &old.added {
                if let Some(set) = self.deps_added_by_up.get_mut(u) {
                    set.remove(downstream);
                }
            }
        }
        for u in &upstreams {
            self.deps_added_by_up
                .entry(u.clone())
                .or_default()
                .insert(downstream.to_string());
        }
        self.deps.insert(
            downstream.to_string(),
            Overlay {
                cleared: true,
                added: upstreams.into_iter().collect(),
            },
        );
        Ok(())
    }

    /// Also loads the partitions found, in one round trip: the caller reads their status.
    async fn downstream(&mut self, upstream: &str) -> Result<Vec<String>, BelError> {
        if !self.deps_stored.contains_key(upstream) {
            self.load(Keys {
                upstreams: vec![upstream.to_string()],
                ..Keys::default()
            })
            .await?;
        }
        let mut out: BTreeSet<String> = self.deps_stored[upstream]
            .iter()
            .filter(|d| self.deps.get(*d).is_none_or(|o| !o.cleared))
            .cloned()
            .collect();
        if let Some(added) = self.deps_added_by_up.get(upstream) {
            out.extend(added.iter().cloned());
        }
        let out: Vec<String> = out.into_iter().collect();
        self.load(Keys {
            refs: out.clone(),
            ..Keys::default()
        })
        .await?;
        Ok(out)
    }

    async fn unfinished_runs(&mut self) -> Result<Vec<RunOwner>, BelError> {
        self.needs_exclusive()?;
        self.flush().await?;
        let stmt = self
            .stmts
            .get(
                self.tx,
                "SELECT run_id, host, pid, lease_until FROM graph_runs WHERE status NOT IN (4, 5)
                 ORDER BY run_id",
            )
            .await?;
        let rows = self.tx.query(&stmt, &[]).await?;
        Ok(rows
            .iter()
            .map(|row| RunOwner {
                run_id: row.get(0),
                host: row.get(1),
                pid: row
                    .get::<_, Option<i64>>(2)
                    .and_then(|p| u32::try_from(p).ok()),
                lease_until: row.get(3),
            })
            .collect())
    }

    async fn holdings(&mut self, run_id: &str) -> Result<Holdings, BelError> {
        self.needs_exclusive()?;
        self.flush().await?;
        let s_held = self
            .stmts
            .get(
                self.tx,
                "SELECT ref, job_run_id FROM partitions WHERE run_id = $1 AND status IN (2, 3)
                 ORDER BY ref",
            )
            .await?;
        let s_jobs = self
            .stmts
            .get(
                self.tx,
                "SELECT job_run_id, label, job_key FROM job_runs
                 WHERE run_id = $1 AND status NOT IN (3, 4) ORDER BY scheduled_ts, job_run_id",
            )
            .await?;
        let tx = self.tx;
        let (held, jobs) =
            tokio::try_join!(async { tx.query(&s_held, &[&run_id]).await }, async {
                tx.query(&s_jobs, &[&run_id]).await
            })?;
        Ok((
            held.iter().map(|r| (r.get(0), r.get(1))).collect(),
            jobs.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        ))
    }

    async fn set_lease(
        &mut self,
        run_id: &str,
        owner: &Owner,
        lease_until: i64,
    ) -> Result<bool, BelError> {
        self.needs_exclusive()?;
        self.flush().await?;
        let stmt = self
            .stmts
            .get(
                self.tx,
                "UPDATE graph_runs SET host = $2, pid = $3, lease_until = $4 WHERE run_id = $1",
            )
            .await?;
        let n = self
            .tx
            .execute(
                &stmt,
                &[&run_id, &owner.host, &i64::from(owner.pid), &lease_until],
            )
            .await?;
        Ok(n > 0)
    }
}

/// Runs `stmt` with `keys` as its one array parameter, unless there are none.
async fn query_if(
    tx: &Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    keys: &Vec<String>,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    tx.query(stmt, &[keys]).await
}

const SELECT_PARTITIONS: &str =
    "SELECT ref, status, run_id, job_run_id, seq, ts FROM partitions WHERE ref = ANY($1)";
const SELECT_GRAPHS: &str = "SELECT run_id, label, status, started_ts, updated_ts, next_seq
     FROM graph_runs WHERE run_id = ANY($1)";
const SELECT_JOBS: &str =
    "SELECT job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts
     FROM job_runs WHERE job_run_id = ANY($1)";
const SELECT_BUILDS: &str = "SELECT ref, job, version, digest FROM builds WHERE ref = ANY($1)";
const SELECT_DEPS: &str = "SELECT upstream, downstream FROM deps WHERE upstream = ANY($1)";
