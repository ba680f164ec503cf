//! Writing a transaction's held-back state in a few bulk statements, pipelined on its
//! connection, then the commit token and the notification.

use std::collections::BTreeMap;

use tokio_postgres::{types::ToSql, Transaction};

use super::{
    locks::Mode,
    schema,
    state::{Overlay, State},
};
use crate::{common, BelError};

type Fut<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>,
>;

impl State<'_> {
    /// Writes everything held back to the database (in one pipelined round trip).
    pub async fn flush(&mut self) -> Result<(), BelError> {
        self.write_lock().await?;
        let s_events = self.stmts.get(self.tx, INSERT_EVENTS).await?;
        let s_parts = self.stmts.get(self.tx, UPSERT_PARTITIONS).await?;
        let s_parts_del = self.stmts.get(self.tx, DELETE_PARTITIONS).await?;
        let s_graphs = self.stmts.get(self.tx, UPSERT_GRAPHS).await?;
        let s_jobs = self.stmts.get(self.tx, UPSERT_JOBS).await?;
        let s_req_del = self.stmts.get(self.tx, DELETE_REQUESTERS).await?;
        let s_req_ins = self.stmts.get(self.tx, INSERT_REQUESTERS).await?;
        let s_deps_del = self.stmts.get(self.tx, DELETE_DEPS).await?;
        let s_deps_ins = self.stmts.get(self.tx, INSERT_DEPS).await?;
        let s_builds = self.stmts.get(self.tx, UPSERT_BUILDS).await?;

        let events = std::mem::take(&mut self.events);
        let mut e = EventColumns::default();
        for (seq, row) in events {
            e.seq.push(seq);
            e.id.push(row.event_id);
            e.kind.push(row.kind as i32);
            e.run_id.push(row.run_id);
            e.run_seq.push(row.run_seq);
            e.job_run_id.push(row.job_run_id);
            e.partition_ref.push(row.partition_ref);
            e.status.push(row.status);
            e.ts.push(row.ts);
            e.body.push(row.body);
        }
        let mut p = (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut removed = Vec::new();
        for r in std::mem::take(&mut self.parts_dirty) {
            let Some(row) = self.parts[&r].clone() else {
                removed.push(r);
                continue;
            };
            p.0.push(row.partition_ref);
            p.1.push(row.status as i32);
            p.2.push(row.run_id);
            p.3.push(row.job_run_id);
            p.4.push(row.seq);
            p.5.push(row.updated_micros);
        }
        let mut g = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for id in std::mem::take(&mut self.graphs_dirty) {
            let row = self.graphs[&id].clone().expect("a written graph row");
            g.0.push(id);
            g.1.push(row.label);
            g.2.push(row.status);
            g.3.push(row.started_ts);
            g.4.push(row.updated_ts);
            g.5.push(row.next_seq);
        }
        let mut j = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for id in std::mem::take(&mut self.jobs_dirty) {
            let row = self.jobs[&id].clone().expect("a written job row");
            j.0.push(id);
            j.1.push(row.run_id);
            j.2.push(row.label);
            j.3.push(row.job_key);
            j.4.push(row.status);
            j.5.push(row.scheduled_ts);
            j.6.push(row.updated_ts);
        }
        let mut b = (vec![], vec![], vec![], vec![]);
        for r in std::mem::take(&mut self.builds_dirty) {
            let row = self.builds[&r].clone().expect("a written build row");
            b.0.push(r);
            b.1.push(row.job);
            b.2.push(row.version);
            b.3.push(row.digest);
        }
        let (req_cleared, req_added) = drain_overlay(&mut self.requesters);
        let (deps_cleared, deps_added) = drain_overlay(&mut self.deps);
        self.deps_added_by_up.clear();
        self.deps_stored.clear();

        let tx = self.tx;
        let mut futs: Vec<Fut<'_>> = Vec::new();
        if !e.seq.is_empty() {
            futs.push(exec(
                tx,
                s_events,
                vec![
                    &e.seq,
                    &e.id,
                    &e.kind,
                    &e.run_id,
                    &e.run_seq,
                    &e.job_run_id,
                    &e.partition_ref,
                    &e.status,
                    &e.ts,
                    &e.body,
                ],
            ));
        }
        if !p.0.is_empty() {
            futs.push(exec(tx, s_parts, vec![&p.0, &p.1, &p.2, &p.3, &p.4, &p.5]));
        }
        if !removed.is_empty() {
            futs.push(exec(tx, s_parts_del, vec![&removed]));
        }
        if !b.0.is_empty() {
            futs.push(exec(tx, s_builds, vec![&b.0, &b.1, &b.2, &b.3]));
        }
        if !g.0.is_empty() {
            futs.push(exec(tx, s_graphs, vec![&g.0, &g.1, &g.2, &g.3, &g.4, &g.5]));
        }
        if !j.0.is_empty() {
            futs.push(exec(
                tx,
                s_jobs,
                vec![&j.0, &j.1, &j.2, &j.3, &j.4, &j.5, &j.6],
            ));
        }
        if !req_cleared.is_empty() {
            futs.push(exec(tx, s_req_del, vec![&req_cleared]));
        }
        if !req_added.0.is_empty() {
            futs.push(exec(tx, s_req_ins, vec![&req_added.0, &req_added.1]));
        }
        if !deps_cleared.is_empty() {
            futs.push(exec(tx, s_deps_del, vec![&deps_cleared]));
        }
        // Lineage rows are (upstream, downstream): the overlay is keyed by downstream.
        if !deps_added.0.is_empty() {
            futs.push(exec(tx, s_deps_ins, vec![&deps_added.1, &deps_added.0]));
        }
        // Sent in this order on one connection (pipelined), so deletes precede inserts.
        for r in futures_util::future::join_all(futs).await {
            r?;
        }
        let wants: Vec<_> = std::mem::take(&mut self.wants_dirty)
            .into_iter()
            .map(|id| self.wants[&id].clone().expect("a written want row"))
            .collect();
        if !wants.is_empty() {
            super::wants::put_tx(self.tx, self.stmts, wants).await?;
        }
        let backfills: Vec<_> = std::mem::take(&mut self.backfills_dirty)
            .into_iter()
            .map(|id| self.backfills[&id].clone().expect("a written backfill row"))
            .collect();
        if !backfills.is_empty() {
            super::wants::put_backfills_tx(self.tx, backfills).await?;
        }
        Ok(())
    }

    /// Flushes, records the commit token, prunes old tokens and notifies listeners of the
    /// last position written. The caller commits.
    pub async fn finish(&mut self) -> Result<(), BelError> {
        self.lock_touched().await?;
        self.flush().await?;
        let s_token = self
            .stmts
            .get(self.tx, "INSERT INTO commits (token, ts) VALUES ($1, $2)")
            .await?;
        let s_prune = self
            .stmts
            .get(self.tx, "DELETE FROM commits WHERE ts < $1")
            .await?;
        let s_notify = self.stmts.get(self.tx, "SELECT pg_notify($1, $2)").await?;
        let now = common::now_micros();
        let hour_ago = now - 3_600_000_000;
        let last = self.last_seq.map(|s| s.to_string());
        let tx = self.tx;
        let notify = async {
            match &last {
                Some(last) => tx.execute(&s_notify, &[&schema::CHANNEL, last]).await,
                None => Ok(0),
            }
        };
        // Concurrent writes leave pruning to the exclusive ones (which reclaim lost runs at
        // the start of every build), so no two writes delete the same rows.
        let prune = async {
            match self.mode {
                Mode::Exclusive => tx.execute(&s_prune, &[&hour_ago]).await,
                Mode::Shared => Ok(0),
            }
        };
        tokio::try_join!(
            async { tx.execute(&s_token, &[&self.token, &now]).await },
            prune,
            notify,
        )?;
        Ok(())
    }
}

fn exec<'f>(
    tx: &'f Transaction<'_>,
    stmt: tokio_postgres::Statement,
    params: Vec<&'f (dyn ToSql + Sync)>,
) -> Fut<'f> {
    Box::pin(async move { tx.execute(&stmt, &params).await })
}

#[derive(Default)]
struct EventColumns {
    seq: Vec<i64>,
    id: Vec<String>,
    kind: Vec<i32>,
    run_id: Vec<String>,
    run_seq: Vec<i64>,
    job_run_id: Vec<Option<String>>,
    partition_ref: Vec<Option<String>>,
    status: Vec<i32>,
    ts: Vec<i64>,
    body: Vec<Vec<u8>>,
}

/// The keys whose stored set is cleared, and the `(key, member)` pairs to add.
fn drain_overlay(
    overlay: &mut BTreeMap<String, Overlay>,
) -> (Vec<String>, (Vec<String>, Vec<String>)) {
    let mut cleared = Vec::new();
    let mut added = (Vec::new(), Vec::new());
    for (key, o) in std::mem::take(overlay) {
        if o.cleared {
            cleared.push(key.clone());
        }
        for m in o.added {
            added.0.push(key.clone());
            added.1.push(m);
        }
    }
    (cleared, added)
}

const INSERT_EVENTS: &str =
    "INSERT INTO events (seq, event_id, kind, run_id, run_seq, job_run_id, ref, status, ts, body)
     SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int4[], $4::text[], $5::int8[],
                          $6::text[], $7::text[], $8::int4[], $9::int8[], $10::bytea[])";
const UPSERT_PARTITIONS: &str = "INSERT INTO partitions (ref, status, run_id, job_run_id, seq, ts)
     SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::text[], $5::int8[], $6::int8[])
     ON CONFLICT (ref) DO UPDATE SET status = excluded.status, run_id = excluded.run_id,
       job_run_id = excluded.job_run_id, seq = excluded.seq, ts = excluded.ts";
const UPSERT_BUILDS: &str = "INSERT INTO builds (ref, job, version, digest)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
     ON CONFLICT (ref) DO UPDATE SET job = excluded.job, version = excluded.version,
       digest = excluded.digest";
const DELETE_PARTITIONS: &str = "DELETE FROM partitions WHERE ref = ANY($1)";
const UPSERT_GRAPHS: &str =
    "INSERT INTO graph_runs (run_id, label, status, started_ts, updated_ts, next_seq)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int8[], $6::int8[])
     ON CONFLICT (run_id) DO UPDATE SET status = excluded.status,
       updated_ts = excluded.updated_ts, next_seq = excluded.next_seq";
const UPSERT_JOBS: &str =
    "INSERT INTO job_runs (job_run_id, run_id, label, job_key, status, scheduled_ts, updated_ts)
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[],
                          $6::int8[], $7::int8[])
     ON CONFLICT (job_run_id) DO UPDATE SET status = excluded.status,
       updated_ts = excluded.updated_ts";
const DELETE_REQUESTERS: &str = "DELETE FROM requesters WHERE ref = ANY($1)";
const INSERT_REQUESTERS: &str = "INSERT INTO requesters (ref, client)
     SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING";
const DELETE_DEPS: &str = "DELETE FROM deps WHERE downstream = ANY($1)";
const INSERT_DEPS: &str = "INSERT INTO deps (upstream, downstream)
     SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING";
