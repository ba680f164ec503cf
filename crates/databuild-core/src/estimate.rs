//! `analyze --estimate`: how much work a plan is and how long it should take, from each
//! job's duration history (the median of its past successful job runs). The arithmetic
//! ([`estimate`]) is a pure function; [`history`] reads the durations from the log.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap},
    time::Duration,
};

use databuild_bel::EventRead;
use databuild_proto::{DepType, JobGraph, JobRunStatus, PartitionStatus, Task};

/// Past successful job runs read per job.
pub const HISTORY_RUNS: usize = 1000;

/// A job in the plan that has no successful job run in the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoHistory {
    /// The job label.
    pub job: String,
    /// Its job runs in the plan, left out of the totals.
    pub job_runs: usize,
}

/// What a plan will cost. Durations are of the job runs with history only; `partial`
/// says whether some were left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Estimate {
    /// Distinct requested partitions.
    pub wanted: usize,
    /// Of those, how many are AVAILABLE already.
    pub available: usize,
    /// Job runs in the plan.
    pub job_runs: usize,
    /// Partitions those job runs build (requested and upstream).
    pub partitions_built: usize,
    /// The median duration of each planned job that has history, in microseconds.
    pub p50_micros: BTreeMap<String, u64>,
    /// Sum of the job runs' medians.
    pub job_time_micros: u64,
    /// The parallelism the wall time is for.
    pub parallelism: usize,
    /// Wall time of a list schedule of the plan at `parallelism`.
    pub wall_time_micros: u64,
    /// The longest chain of job runs through the plan, by median duration.
    pub critical_path_micros: u64,
    /// Job runs on that chain.
    pub critical_path_tasks: usize,
    /// Planned jobs without history (sorted by label).
    pub no_history: Vec<NoHistory>,
    /// Whether job runs were left out of the durations for lack of history.
    pub partial: bool,
}

/// The median of `durations` (the lower middle one of an even count); `None` if empty.
pub fn p50(durations: &[Duration]) -> Option<Duration> {
    let mut v = durations.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// The durations of the past successful job runs (up to [`HISTORY_RUNS`] most recent) of
/// each job `plan` runs.
pub async fn history(
    bel: &dyn EventRead,
    plan: &JobGraph,
) -> Result<HashMap<String, Vec<Duration>>, databuild_bel::BelError> {
    let labels: BTreeSet<&str> = plan.nodes.iter().map(label).collect();
    let mut out = HashMap::new();
    for l in labels {
        let runs = bel.recent_job_runs(Some(l), HISTORY_RUNS).await?;
        let durations = runs
            .iter()
            .filter(|r| r.status == JobRunStatus::JobSuccess)
            .map(|r| {
                Duration::from_micros(
                    r.updated_micros.saturating_sub(r.scheduled_micros).max(0) as u64
                )
            })
            .collect();
        out.insert(l.to_string(), durations);
    }
    Ok(out)
}

/// Estimates `plan` (for the requested refs whose latest `statuses` are given) at
/// `parallelism`, from each job's past durations. Tasks of a job without history count
/// as taking no time in the schedule and are named in `no_history`.
pub fn estimate(
    plan: &JobGraph,
    statuses: &[Option<PartitionStatus>],
    history: &HashMap<String, Vec<Duration>>,
    parallelism: usize,
) -> Estimate {
    let parallelism = parallelism.max(1);
    let p50s: BTreeMap<String, u64> = plan
        .nodes
        .iter()
        .map(label)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|l| {
            let d = p50(history.get(l).map_or(&[][..], Vec::as_slice))?;
            Some((l.to_string(), d.as_micros() as u64))
        })
        .collect();
    let mut missing: BTreeMap<String, usize> = BTreeMap::new();
    let durations: Vec<u64> = plan
        .nodes
        .iter()
        .map(|t| match p50s.get(label(t)) {
            Some(&d) => d,
            None => {
                *missing.entry(label(t).to_string()).or_default() += 1;
                0
            }
        })
        .collect();
    let deps = dependencies(&plan.nodes);
    let (critical_path_micros, critical_path_tasks) = critical_path(&deps, &durations);
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    for o in &plan.outputs {
        wanted.insert(&o.str);
    }
    Estimate {
        wanted: wanted.len(),
        available: statuses
            .iter()
            .filter(|s| **s == Some(PartitionStatus::PartitionAvailable))
            .count(),
        job_runs: plan.nodes.len(),
        partitions_built: plan
            .nodes
            .iter()
            .map(|t| t.config.as_ref().map_or(0, |c| c.outputs.len()))
            .sum(),
        job_time_micros: durations.iter().sum(),
        wall_time_micros: list_schedule(&deps, &durations, parallelism),
        parallelism,
        critical_path_micros,
        critical_path_tasks,
        partial: !missing.is_empty(),
        no_history: missing
            .into_iter()
            .map(|(job, job_runs)| NoHistory { job, job_runs })
            .collect(),
        p50_micros: p50s,
    }
}

fn label(t: &Task) -> &str {
    t.job.as_ref().map_or("", |j| j.label.as_str())
}

/// For each task, the tasks of the plan that produce its MATERIALIZE inputs.
fn dependencies(tasks: &[Task]) -> Vec<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        for o in t.config.iter().flat_map(|c| &c.outputs) {
            producer.insert(&o.str, i);
        }
    }
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut deps: Vec<usize> = t
                .config
                .iter()
                .flat_map(|c| &c.inputs)
                .filter(|d| d.dep_type == DepType::Materialize as i32)
                .filter_map(|d| {
                    producer
                        .get(d.partition_ref.as_ref()?.str.as_str())
                        .copied()
                })
                .filter(|&j| j != i)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

/// The order in which every task comes after its dependencies (Kahn, lowest index
/// first); tasks on a cycle (which a plan does not have) are left out.
fn topological(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.insert(j);
            }
        }
    }
    order
}

/// The longest chain by duration: its length and how many tasks it has.
fn critical_path(deps: &[Vec<usize>], durations: &[u64]) -> (u64, usize) {
    // For each task: the longest chain ending with it, and its task count.
    let mut best = vec![(0u64, 0usize); deps.len()];
    for i in topological(deps) {
        let before = deps[i].iter().map(|&d| best[d]).max().unwrap_or((0, 0));
        best[i] = (before.0 + durations[i], before.1 + 1);
    }
    best.into_iter().max().unwrap_or((0, 0))
}

/// The finish time of a greedy list schedule on `slots` workers: whenever a worker is
/// free, it starts the ready task that comes first in the plan.
fn list_schedule(deps: &[Vec<usize>], durations: &[u64], slots: usize) -> u64 {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    // (finish time, task), earliest first.
    let mut running: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut now = 0u64;
    loop {
        while running.len() < slots {
            let Some(i) = ready.pop_first() else { break };
            running.push(Reverse((now + durations[i], i)));
        }
        let Some(Reverse((t, i))) = running.pop() else {
            return now;
        };
        now = t;
        let mut done = vec![i];
        while let Some(&Reverse((t, j))) = running.peek() {
            if t != now {
                break;
            }
            running.pop();
            done.push(j);
        }
        for i in done {
            for &j in &dependents[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.insert(j);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
