//! The state of one write transaction: the derived rows it read or wrote, kept in memory
//! while the transaction holds the write lock, and written back in a few bulk statements
//! (`flush.rs`) before commit. Reads go to the database once per row; every write goes
//! through this state, so what it holds is what the database would say.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use databuild_proto::PartitionStatus;
use tokio_postgres::Transaction;

use super::{conn::Stmts, schema};
use crate::{BelError, PartitionRow};

/// A graph run's derived row, as far as appends change it.
#[derive(Debug, Clone)]
pub(super) struct GraphRow {
    pub label: String,
    pub status: i32,
    pub started_ts: i64,
    pub updated_ts: i64,
    pub next_seq: i64,
}

/// A job run's derived row.
#[derive(Debug, Clone)]
pub(super) struct JobRow {
    pub run_id: String,
    pub label: String,
    pub job_key: String,
    pub status: i32,
    pub scheduled_ts: i64,
    pub updated_ts: i64,
}

/// One stored event, before it is written.
pub(super) struct EventRow {
    pub event_id: String,
    pub kind: i64,
    pub run_id: String,
    pub run_seq: i64,
    pub job_run_id: Option<String>,
    pub partition_ref: Option<String>,
    pub status: i32,
    pub ts: i64,
    pub body: Vec<u8>,
}

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
    pub(super) next_seq: i64,
    pub(super) last_seq: Option<i64>,
    pub(super) parts: HashMap<String, Option<PartitionRow>>,
    pub(super) parts_dirty: BTreeSet<String>,
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
    /// Takes the write lock and reads the log's last position.
    pub async fn begin(
        tx: &'a Transaction<'a>,
        stmts: &'a mut Stmts,
        token: &'a str,
    ) -> Result<Self, BelError> {
        let lock = stmts.get(tx, "SELECT pg_advisory_xact_lock($1)").await?;
        let max = stmts
            .get(tx, "SELECT coalesce(max(seq), 0)::int8 FROM events")
            .await?;
        let (_, row) = tokio::try_join!(
            tx.execute(&lock, &[&schema::WRITE_LOCK]),
            tx.query_one(&max, &[])
        )?;
        Ok(Self {
            tx,
            stmts,
            token,
            next_seq: row.get::<_, i64>(0) + 1,
            last_seq: None,
            parts: HashMap::new(),
            parts_dirty: BTreeSet::new(),
            graphs: HashMap::new(),
            graphs_dirty: BTreeSet::new(),
            jobs: HashMap::new(),
            jobs_dirty: BTreeSet::new(),
            events: Vec::new(),
            requesters: BTreeMap::new(),
            deps: BTreeMap::new(),
            deps_added_by_up: HashMap::new(),
            deps_stored: HashMap::new(),
        })
    }

    /// Loads, in one round trip, the rows of these keys not yet held.
    pub async fn prefetch(
        &mut self,
        refs: Vec<String>,
        run_ids: Vec<String>,
        job_run_ids: Vec<String>,
        upstreams: Vec<String>,
    ) -> Result<(), BelError> {
        let missing = |keys: Vec<String>, have: &dyn Fn(&str) -> bool| {
            let set: BTreeSet<String> = keys.into_iter().filter(|k| !have(k)).collect();
            set.into_iter().collect::<Vec<_>>()
        };
        let refs = missing(refs, &|k| self.parts.contains_key(k));
        let run_ids = missing(run_ids, &|k| self.graphs.contains_key(k));
        let job_run_ids = missing(job_run_ids, &|k| self.jobs.contains_key(k));
        let upstreams = missing(upstreams, &|k| self.deps_stored.contains_key(k));
        let sp = self.stmts.get(self.tx, SELECT_PARTITIONS).await?;
        let sg = self.stmts.get(self.tx, SELECT_GRAPHS).await?;
        let sj = self.stmts.get(self.tx, SELECT_JOBS).await?;
        let sd = self.stmts.get(self.tx, SELECT_DEPS).await?;
        let tx = self.tx;
        let (p, g, j, d) = tokio::try_join!(
            query_if(tx, &sp, &refs),
            query_if(tx, &sg, &run_ids),
            query_if(tx, &sj, &job_run_ids),
            query_if(tx, &sd, &upstreams),
        )?;
        for r in refs {
            self.parts.insert(r, None);
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

    /// The latest state of partition `r`.
    pub async fn partition(&mut self, r: &str) -> Result<Option<PartitionRow>, BelError> {
        if !self.parts.contains_key(r) {
            self.prefetch(vec![r.to_string()], vec![], vec![], vec![])
                .await?;
        }
        Ok(self.parts[r].clone())
    }

    pub fn set_partition(&mut self, row: PartitionRow) {
        self.parts_dirty.insert(row.partition_ref.clone());
        self.parts.insert(row.partition_ref.clone(), Some(row));
    }

    /// Removes partition `r` from the latest-status view.
    pub fn remove_partition(&mut self, r: &str) {
        self.parts_dirty.insert(r.to_string());
        self.parts.insert(r.to_string(), None);
    }

    /// The derived row of graph run `run_id`.
    pub async fn graph(&mut self, run_id: &str) -> Result<Option<GraphRow>, BelError> {
        if !self.graphs.contains_key(run_id) {
            self.prefetch(vec![], vec![run_id.to_string()], vec![], vec![])
                .await?;
        }
        Ok(self.graphs[run_id].clone())
    }

    pub fn set_graph(&mut self, run_id: &str, row: GraphRow) {
        self.graphs_dirty.insert(run_id.to_string());
        self.graphs.insert(run_id.to_string(), Some(row));
    }

    /// The derived row of job run `job_run_id`.
    pub async fn job(&mut self, job_run_id: &str) -> Result<Option<JobRow>, BelError> {
        if !self.jobs.contains_key(job_run_id) {
            self.prefetch(vec![], vec![], vec![job_run_id.to_string()], vec![])
                .await?;
        }
        Ok(self.jobs[job_run_id].clone())
    }

    pub fn set_job(&mut self, job_run_id: &str, row: JobRow) {
        self.jobs_dirty.insert(job_run_id.to_string());
        self.jobs.insert(job_run_id.to_string(), Some(row));
    }

    /// Queues `row` for insertion; returns its log position.
    pub fn insert_event(&mut self, row: EventRow) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.last_seq = Some(seq);
        self.events.push((seq, row));
        seq
    }

    pub fn add_requesters(&mut self, r: &str, clients: &[String]) {
        if clients.is_empty() {
            return;
        }
        let o = self.requesters.entry(r.to_string()).or_default();
        o.added.extend(clients.iter().cloned());
    }

    pub fn clear_requesters(&mut self, r: &str) {
        let o = self.requesters.entry(r.to_string()).or_default();
        o.cleared = true;
        o.added.clear();
    }

    /// Replaces the lineage of `downstream` with `upstreams`.
    pub fn replace_deps(&mut self, downstream: &str, upstreams: Vec<String>) {
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
    }

    /// The AVAILABLE partitions built from `upstream`, sorted.
    pub async fn available_downstream(&mut self, upstream: &str) -> Result<Vec<String>, BelError> {
        if !self.deps_stored.contains_key(upstream) {
            self.prefetch(vec![], vec![], vec![], vec![upstream.to_string()])
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
        self.prefetch(out.clone(), vec![], vec![], vec![]).await?;
        Ok(out
            .into_iter()
            .filter(|d| {
                self.parts[d]
                    .as_ref()
                    .is_some_and(|p| p.status == PartitionStatus::PartitionAvailable)
            })
            .collect())
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
const SELECT_DEPS: &str = "SELECT upstream, downstream FROM deps WHERE upstream = ANY($1)";
