//! The reconciler: keeps every live want satisfied. It reacts to events — wants created
//! or withdrawn, their partitions going STALE, FAILED or AVAILABLE, external data being
//! registered — and to timers (schedule ticks, SLA deadlines, expiry, retry backoff); it
//! never rescans every want. It holds only the wants that need it: those not yet satisfied,
//! and satisfied ones whose partition left AVAILABLE (found from the partition's event, or
//! on start from the partitions that are not AVAILABLE); wants due to expire are read from
//! the log's index of live wants by expiry. Wanted partitions that are not AVAILABLE are
//! built through the normal path (graph runs, claims, delegation), batched into as few
//! graph runs as it can.
//! Everything it decides is an event in the log, so two reconcilers on one log agree: a
//! tick or a want's transition recorded by one is refused to the other.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use databuild_bel::{BelError, Event, EventLog, LoggedEvent, WantFilter, WantRow};
use databuild_proto::{FailureCause, PartitionStatus, WantStatus};
use tokio::task::JoinSet;

use super::{event, notify::Notification, NotificationKind, Notifiers, Schedule};
use crate::{planner::PlanError, BuildOptions, CoreError, Graph, RunOutcome};

/// How the reconciler works.
#[derive(Clone)]
pub struct ReconcileOptions {
    /// How its graph runs build.
    pub build: BuildOptions,
    /// Builds of a failed wanted partition after the first, before the want fails.
    pub retries: u32,
    /// Wait before the first retry; doubled after each.
    pub backoff: Duration,
    /// Most partitions in one graph run.
    pub batch: usize,
    /// Longest wait between passes when nothing happens.
    pub idle: Duration,
    /// Decide only: record nothing (no ticks, no want events), build nothing.
    pub dry_run: bool,
}

impl ReconcileOptions {
    /// Defaults around `build`: 3 retries from 5 s, 10,000 partitions per graph run; its
    /// graph runs are asked for by the client `reconciler`.
    pub fn new(mut build: BuildOptions) -> Self {
        build.client_id = "reconciler".into();
        Self {
            build,
            retries: 3,
            backoff: Duration::from_secs(5),
            batch: 10_000,
            idle: Duration::from_secs(1),
            dry_run: false,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Schedule ticks recorded.
    pub ticks: usize,
    /// Wants looked at (those events or timers touched).
    pub checked: usize,
    /// Wants newly satisfied.
    pub satisfied: usize,
    /// SLA misses recorded.
    pub sla_missed: usize,
    /// Wants expired.
    pub expired: usize,
    /// Wants failed for good.
    pub failed: usize,
    /// Partitions whose build this pass started.
    pub started: usize,
    /// Wants held in memory: those not yet satisfied, and satisfied ones whose partition
    /// is not AVAILABLE.
    pub live: usize,
    /// Partitions a pass would build (a dry run's answer).
    pub would_build: usize,
}

struct Tracked {
    row: WantRow,
    /// Failed builds since it was last AVAILABLE.
    attempts: u32,
    retry_at: Option<i64>,
    /// The unregistered external input it waits for.
    waiting_on: Option<String>,
}

mod decide;

use decide::{counts_as_attempt, in_flight, Plan};

type BuildResult = (Vec<String>, Result<RunOutcome, CoreError>);

/// The reconciler of one graph and event log.
pub struct Reconciler {
    graph: Arc<Graph>,
    bel: Arc<dyn EventLog>,
    opts: ReconcileOptions,
    notifiers: Notifiers,
    wants: HashMap<String, Tracked>,
    by_ref: HashMap<String, Vec<String>>,
    /// External ref -> wants waiting for it.
    waiting: HashMap<String, Vec<String>>,
    dirty: HashSet<String>,
    timers: BTreeSet<(i64, String)>,
    after_seq: i64,
    last_tick: HashMap<String, Option<i64>>,
    builds: JoinSet<BuildResult>,
    building: HashSet<String>,
    loaded: bool,
    sent: Vec<tokio::task::JoinHandle<()>>,
    /// Wants this reconciler failed for good.
    failed: usize,
    /// Refs of untracked wants whose partition left AVAILABLE: their wants are read.
    check_refs: HashSet<String>,
    /// What loading decided, reported (and built) by the first pass.
    carry: Option<(PassReport, Vec<String>)>,
    /// Wanted partitions AVAILABLE but outdated (built by another version of their job
    /// than the graph gives, or from such a partition), until a build of them ends.
    outdated: HashSet<String>,
}

/// Wants read (and decided) at once while loading, or due to expire in one step.
const PAGE: usize = 50_000;

fn now_micros() -> i64 {
    databuild_proto::timestamp_micros(&databuild_proto::now())
}

fn rfc3339(micros: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn duration_micros(d: Duration) -> i64 {
    d.as_micros().min(i64::MAX as u128) as i64
}

impl Reconciler {
    /// A reconciler; it loads the live wants on its first pass.
    pub fn new(
        graph: Arc<Graph>,
        bel: Arc<dyn EventLog>,
        opts: ReconcileOptions,
        notifiers: Notifiers,
    ) -> Self {
        Self {
            graph,
            bel,
            opts,
            notifiers,
            wants: HashMap::new(),
            by_ref: HashMap::new(),
            waiting: HashMap::new(),
            dirty: HashSet::new(),
            timers: BTreeSet::new(),
            after_seq: 0,
            last_tick: HashMap::new(),
            builds: JoinSet::new(),
            building: HashSet::new(),
            loaded: false,
            sent: Vec::new(),
            failed: 0,
            check_refs: HashSet::new(),
            carry: None,
            outdated: HashSet::new(),
        }
    }

    fn schedules(&self) -> &[Schedule] {
        &self.graph.schedules
    }

    /// Reads where the log ends and the wants that need attention: those whose partition
    /// is outdated, every ACTIVE want, page by page, each page decided before the next is
    /// read (a satisfied one is let go), and the SATISFIED wants whose partition is not
    /// AVAILABLE. What it decides is reported (and built) by the next pass.
    pub async fn load(&mut self) -> Result<(), CoreError> {
        self.after_seq = self.bel.last_seq().await?;
        for s in self.graph.schedules.iter() {
            let t = self.bel.last_tick(&s.name).await?;
            self.last_tick.insert(s.name.clone(), t);
        }
        self.loaded = true;
        let now = now_micros();
        let mut plan = Plan::default();
        // The graph's job versions are fixed for this reconciler's life: the wanted
        // partitions they make outdated are found once, and rebuilt like STALE ones.
        if !self.opts.build.keep_outdated {
            let outdated: Vec<String> = crate::scheduler::outdated(&self.graph, self.bel.as_ref())
                .await?
                .all
                .into_iter()
                .collect();
            let mut ids = Vec::new();
            for row in self.live_wants_of(&outdated).await? {
                self.outdated.insert(row.partition_ref.clone());
                ids.push(row.want_id.clone());
                self.track(row);
            }
            self.decide(ids, now, &mut plan).await?;
        }
        // From the first id on, along the status index.
        let mut after = Some(String::new());
        loop {
            let page = self
                .bel
                .wants(&WantFilter {
                    statuses: vec![WantStatus::WantActive],
                    after: after.clone(),
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.want_id.clone());
            let ids = page.into_iter().filter_map(|row| self.track(row)).collect();
            self.decide(ids, now, &mut plan).await?;
        }
        let stale = self
            .bel
            .wants(&WantFilter {
                statuses: vec![WantStatus::WantSatisfied],
                unavailable: true,
                ..Default::default()
            })
            .await?;
        let ids = stale
            .into_iter()
            .filter_map(|row| self.track(row))
            .collect();
        self.decide(ids, now, &mut plan).await?;
        self.carry = Some((plan.report, plan.to_build));
        Ok(())
    }

    /// Holds want `row` (unless held already); returns its id.
    fn track(&mut self, row: WantRow) -> Option<String> {
        if self.wants.contains_key(&row.want_id) {
            return None;
        }
        let id = row.want_id.clone();
        self.by_ref
            .entry(row.partition_ref.clone())
            .or_default()
            .push(id.clone());
        self.wants.insert(
            id.clone(),
            Tracked {
                row,
                attempts: 0,
                retry_at: None,
                waiting_on: None,
            },
        );
        Some(id)
    }

    fn untrack(&mut self, id: &str) {
        let Some(t) = self.wants.remove(id) else {
            return;
        };
        if let Some(ids) = self.by_ref.get_mut(&t.row.partition_ref) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_ref.remove(&t.row.partition_ref);
            }
        }
        self.dirty.remove(id);
    }

    /// Records the schedule ticks due at `now`: missed ones back to the catch-up window
    /// (at least 30 s, so that a slow pass loses none), the latest one for a schedule that
    /// never ticked.
    async fn fire_ticks(&mut self, now: i64) -> Result<usize, CoreError> {
        let mut fired = 0;
        if self.opts.dry_run {
            return Ok(0);
        }
        let graph = self.graph.clone();
        for s in graph.schedules.iter() {
            let window = duration_micros(s.catchup.max(Duration::from_secs(30)));
            let last = self.last_tick.get(&s.name).copied().flatten();
            let ticks = match last {
                None => s.ticks(i64::MIN, now, 1),
                Some(last) => s.ticks(last.max(now - window), now, 100_000),
            };
            for t in ticks {
                let mut w = event(&s.want_id(t), &s.format_ref(t), WantStatus::WantActive);
                w.schedule = s.name.clone();
                w.tick = Some(databuild_proto::timestamp_from_micros(t));
                w.requesting_clients = vec![format!("schedule:{}", s.name)];
                w.expires_at = s
                    .ttl
                    .map(|d| databuild_proto::timestamp_from_micros(t + duration_micros(d)));
                w.sla_deadline = s
                    .sla
                    .map(|d| databuild_proto::timestamp_from_micros(t + duration_micros(d)));
                match self.bel.append(vec![Event::Want(w)]).await {
                    Ok(_) => fired += 1,
                    // Another reconciler recorded this tick first.
                    Err(BelError::WantState { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.last_tick.insert(s.name.clone(), Some(t));
            }
        }
        Ok(fired)
    }

    /// Follows the log from where it was read: new and ended wants, and partition events
    /// of wanted or awaited refs.
    async fn read_events(&mut self) -> Result<(), CoreError> {
        loop {
            let events = self.bel.events_after(self.after_seq, 10_000).await?;
            let Some(last) = events.last() else { break };
            self.after_seq = last.seq;
            for e in events {
                self.on_event(e);
            }
        }
        Ok(())
    }

    fn on_event(&mut self, e: LoggedEvent) {
        match e.event {
            Event::Want(w) => {
                let status = WantStatus::try_from(w.status).unwrap_or_default();
                let ts = w
                    .timestamp
                    .as_ref()
                    .map(databuild_proto::timestamp_micros)
                    .unwrap_or(0);
                match status {
                    WantStatus::WantActive => {
                        if let Some(id) = self.track(WantRow::created(&w, ts, e.seq)) {
                            self.dirty.insert(id);
                        }
                    }
                    WantStatus::WantSatisfied => {
                        // Satisfied by another reconciler: let go once its partition is
                        // seen AVAILABLE.
                        if let Some(t) = self.wants.get_mut(&w.want_id) {
                            t.row.status = status;
                            self.dirty.insert(w.want_id.clone());
                        }
                    }
                    WantStatus::WantSlaMissed => {
                        if let Some(t) = self.wants.get_mut(&w.want_id) {
                            t.row.sla_missed = true;
                        }
                    }
                    WantStatus::WantFailed
                    | WantStatus::WantExpired
                    | WantStatus::WantCancelled => self.untrack(&w.want_id),
                    _ => {}
                }
            }
            Event::Partition(p) => {
                let Some(r) = p.partition_ref.as_ref().map(|r| r.str.as_str()) else {
                    return;
                };
                let status = PartitionStatus::try_from(p.status).unwrap_or_default();
                if let Some(ids) = self.by_ref.get(r) {
                    self.dirty.extend(ids.iter().cloned());
                } else if status != PartitionStatus::PartitionAvailable && !in_flight(status) {
                    // Satisfied wants of this ref (not held) need it rebuilt.
                    self.check_refs.insert(r.to_string());
                }
                if p.status == PartitionStatus::PartitionAvailable as i32 {
                    // Built again, by the graph's versions.
                    self.outdated.remove(r);
                    if let Some(ids) = self.waiting.remove(r) {
                        for id in ids {
                            if let Some(t) = self.wants.get_mut(&id) {
                                t.waiting_on = None;
                                self.dirty.insert(id);
                            }
                        }
                    }
                }
            }
            Event::Run(_) | Event::Backfill(_) => {}
        }
    }

    /// Appends want events one batch at a time; an event another reconciler made moot
    /// (the want changed meanwhile) is dropped. Returns the events recorded.
    async fn record(&self, events: Vec<Event>) -> Result<Vec<Event>, CoreError> {
        if events.is_empty() || self.opts.dry_run {
            return Ok(events);
        }
        match self.bel.append(events.clone()).await {
            Ok(_) => return Ok(events),
            Err(BelError::WantState { .. } | BelError::UnknownWant(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut kept = Vec::new();
        for e in events {
            match self.bel.append(vec![e.clone()]).await {
                Ok(_) => kept.push(e),
                Err(BelError::WantState { .. } | BelError::UnknownWant(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(kept)
    }

    /// One pass: ticks, new events, due timers, then what each touched want needs.
    /// With `start`, builds what is missing.
    pub async fn pass(&mut self, start: bool) -> Result<PassReport, CoreError> {
        self.pass_with(start, true).await
    }

    /// [`Reconciler::pass`], recording the schedules' due ticks only with `ticks`.
    async fn pass_with(&mut self, start: bool, ticks: bool) -> Result<PassReport, CoreError> {
        if !self.loaded {
            self.load().await?;
        }
        let mut plan = Plan::default();
        if let Some((report, to_build)) = self.carry.take() {
            plan.queued.extend(to_build.iter().cloned());
            plan.report = report;
            plan.to_build = to_build;
        }
        let now = now_micros();
        if ticks {
            plan.report.ticks += self.fire_ticks(now).await?;
        }
        self.read_events().await?;
        self.read_unavailable().await?;
        while let Some((t, id)) = self.timers.first().cloned() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            self.dirty.insert(id);
        }
        // The wants touched, with those due to expire (held or not), a page of those at a
        // time; each want is decided once (a dry run records nothing, so it reads one page).
        for _ in 0..1_000 {
            let due = self
                .bel
                .wants(&WantFilter {
                    statuses: vec![WantStatus::WantActive, WantStatus::WantSatisfied],
                    expires_by: Some(now),
                    limit: PAGE,
                    ..Default::default()
                })
                .await?;
            let full = due.len() == PAGE;
            for row in due {
                self.dirty.insert(row.want_id.clone());
                self.track(row);
            }
            let ids: Vec<String> = self.dirty.drain().collect();
            self.decide(ids, now, &mut plan).await?;
            if !full || self.opts.dry_run {
                break;
            }
        }
        let mut report = plan.report;
        report.would_build = plan.to_build.len();
        if start && !self.opts.dry_run && !plan.to_build.is_empty() {
            report.started = plan.to_build.len();
            for chunk in plan.to_build.chunks(self.opts.batch.max(1)) {
                self.start_build(chunk.to_vec());
            }
        }
        report.live = self.wants.len();
        Ok(report)
    }

    /// Holds the satisfied wants of the refs whose partition left AVAILABLE.
    async fn read_unavailable(&mut self) -> Result<(), CoreError> {
        let refs: Vec<String> = self.check_refs.drain().collect();
        for row in self.live_wants_of(&refs).await? {
            if let Some(id) = self.track(row) {
                self.dirty.insert(id);
            }
        }
        Ok(())
    }

    /// The live wants (ACTIVE or SATISFIED) of `refs`, read [`PAGE`] refs at a time.
    async fn live_wants_of(&self, refs: &[String]) -> Result<Vec<WantRow>, CoreError> {
        let mut out = Vec::new();
        for chunk in refs.chunks(PAGE) {
            out.extend(
                self.bel
                    .wants(&WantFilter {
                        statuses: vec![WantStatus::WantActive, WantStatus::WantSatisfied],
                        refs: chunk.to_vec(),
                        ..Default::default()
                    })
                    .await?,
            );
        }
        Ok(out)
    }

    fn start_build(&mut self, refs: Vec<String>) {
        self.building.extend(refs.iter().cloned());
        let graph = self.graph.clone();
        let bel = self.bel.clone();
        let opts = self.opts.build.clone();
        self.builds.spawn(async move {
            let progress: crate::scheduler::ProgressFn = Arc::new(|_| {});
            let r = crate::build(&graph, bel, &refs, &opts, progress).await;
            (refs, r)
        });
    }

    /// What a finished build means for the wants of its refs: an unregistered input makes
    /// them wait for it (a batch is split until each such want is found); a failure counts
    /// an attempt, retried with backoff until the want fails for good.
    async fn finished(&mut self, (refs, result): BuildResult) -> Result<(), CoreError> {
        for r in &refs {
            self.building.remove(r);
        }
        if let Err(CoreError::Plan(PlanError::MissingExternal { missing, .. })) = &result {
            if refs.len() > 1 {
                let half = refs.len() / 2;
                self.start_build(refs[..half].to_vec());
                self.start_build(refs[half..].to_vec());
                return Ok(());
            }
            for id in self.by_ref.get(&refs[0]).cloned().unwrap_or_default() {
                if let Some(t) = self.wants.get_mut(&id) {
                    t.waiting_on = missing.first().cloned();
                }
                for m in missing {
                    self.waiting.entry(m.clone()).or_default().push(id.clone());
                }
            }
            return Ok(());
        }
        if let Err(e) = &result {
            tracing::warn!(
                "a reconciler build of {} partitions failed: {e}",
                refs.len()
            );
        }
        let statuses = self.bel.statuses(&refs).await?;
        let now = now_micros();
        let mut events = Vec::new();
        let mut notes = Vec::new();
        for (r, status) in refs.iter().zip(statuses) {
            let ids = self.by_ref.get(r).cloned().unwrap_or_default();
            if status == Some(PartitionStatus::PartitionAvailable) || ids.is_empty() {
                self.dirty.extend(ids);
                continue;
            }
            let (cause, root) = root_failure(self.bel.as_ref(), r).await?;
            for id in ids {
                let Some(t) = self.wants.get_mut(&id) else {
                    continue;
                };
                if cause == FailureCause::InputMissing {
                    if let Some(m) = &root {
                        t.waiting_on = Some(m.clone());
                        self.waiting.entry(m.clone()).or_default().push(id);
                        continue;
                    }
                }
                if !counts_as_attempt(cause) {
                    // Not the job's doing (its run was lost or stopped): build it again.
                    self.dirty.insert(id);
                    continue;
                }
                t.attempts += 1;
                if t.attempts > self.opts.retries {
                    let mut e = event(&id, r, WantStatus::WantFailed);
                    e.failure_cause = cause as i32;
                    e.reason = format!("its build failed {} times", t.attempts);
                    e.job_graph_run_id = result
                        .as_ref()
                        .map(|o| o.run_id.clone())
                        .unwrap_or_default();
                    events.push(Event::Want(e));
                    notes.push(t.row.clone());
                } else {
                    let wait = self.opts.backoff * 2u32.saturating_pow(t.attempts - 1);
                    let at = now + duration_micros(wait);
                    t.retry_at = Some(at);
                    self.timers.insert((at, id));
                }
            }
        }
        let recorded = self.record(events).await?;
        self.failed += recorded.len();
        for e in &recorded {
            if let Event::Want(w) = e {
                self.untrack(&w.want_id);
            }
        }
        for row in notes {
            if recorded
                .iter()
                .any(|e| matches!(e, Event::Want(w) if w.want_id == row.want_id))
            {
                self.notify(NotificationKind::WantFailed, &row).await;
            }
        }
        Ok(())
    }

    async fn notify(&mut self, kind: NotificationKind, row: &WantRow) {
        if self.notifiers.is_empty() {
            return;
        }
        let root_cause = super::waiting_for(&self.graph, self.bel.as_ref(), row)
            .await
            .unwrap_or_else(|e| e.to_string());
        let n = Notification {
            kind,
            want_id: row.want_id.clone(),
            partition_ref: row.partition_ref.clone(),
            deadline: row.sla_micros.map(rfc3339),
            at: rfc3339(now_micros()),
            schedule: row.schedule.clone(),
            root_cause,
            graph: self.graph.label.clone(),
        };
        self.sent.extend(self.notifiers.send(n));
    }

    /// When the next timer or schedule tick is due (microseconds), if any.
    fn next_due(&self) -> Option<i64> {
        let now = now_micros();
        let ticks = self.schedules().iter().filter_map(|s| s.next_tick(now));
        self.timers
            .first()
            .map(|(t, _)| *t)
            .into_iter()
            .chain(ticks)
            .min()
    }

    /// Runs until `stop` resolves: a pass whenever events arrive, a build finishes or a
    /// timer is due.
    pub async fn run(
        &mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), CoreError> {
        tokio::pin!(stop);
        loop {
            let report = self.pass(true).await?;
            if report != PassReport::default() && report.checked + report.ticks > 0 {
                tracing::debug!(?report, "reconciler pass");
            }
            let wait = self
                .next_due()
                .map(|t| Duration::from_micros((t - now_micros()).max(0) as u64))
                .unwrap_or(self.opts.idle)
                .min(self.opts.idle);
            let bel = self.bel.clone();
            let after = self.after_seq;
            tokio::select! {
                _ = &mut stop => break,
                Some(done) = self.builds.join_next(), if !self.builds.is_empty() => {
                    if let Ok(done) = done {
                        self.finished(done).await?;
                    }
                }
                r = bel.wait_for_events(after, wait) => r?,
            }
        }
        // Stopped: start nothing more, and let the graph runs in flight finish.
        while let Some(done) = self.builds.join_next().await {
            if let Ok(done) = done {
                self.finished(done).await?;
            }
        }
        Ok(())
    }

    /// One pass that starts builds, then waits for them (and retries due meanwhile, and
    /// parts of a batch split to find missing inputs), records what they made of the
    /// wants, and waits for the notifications it sent.
    pub async fn once(&mut self) -> Result<PassReport, CoreError> {
        let failed_before = self.failed;
        let mut report = self.pass(true).await?;
        while let Some(done) = self.builds.join_next().await {
            if let Ok(done) = done {
                self.finished(done).await?;
            }
        }
        let after = self.pass_with(false, false).await?;
        report.satisfied += after.satisfied;
        report.sla_missed += after.sla_missed;
        report.expired += after.expired;
        report.failed = self.failed - failed_before;
        report.live = after.live;
        for h in std::mem::take(&mut self.sent) {
            let _ = h.await;
        }
        Ok(report)
    }
}

/// The cause of `r`'s failure at its root: follows FAILED partitions upstream while the
/// cause is upstream. Returns the cause and, for a missing input, the missing ref.
pub(crate) async fn root_failure(
    bel: &dyn EventLog,
    r: &str,
) -> Result<(FailureCause, Option<String>), CoreError> {
    let mut current = r.to_string();
    for _ in 0..64 {
        let Some(p) = bel.latest_partition_event(&current).await? else {
            return Ok((FailureCause::Unknown, None));
        };
        let upstream = p.upstream_deps.first().map(|u| u.str.clone());
        match p.failure_cause() {
            FailureCause::InputMissing => return Ok((FailureCause::InputMissing, upstream)),
            FailureCause::UpstreamFailed if upstream.is_some() => {
                current = upstream.expect("checked");
            }
            other => return Ok((other, None)),
        }
    }
    Ok((FailureCause::Unknown, None))
}
