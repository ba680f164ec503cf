//! The planner (`AnalyzeGraph`): lookup → one batched `config` per job → MATERIALIZE
//! inputs → repeat until closed. Configs a job returns for refs it was not asked for are
//! kept and used when a later wave needs those refs (no second `config` call). Partitions
//! already AVAILABLE are not planned (unless forced); external refs must be available; a
//! dependency cycle is an error.

use std::collections::{HashMap, HashSet};

use databuild_bel::EventRead;
use databuild_proto::{
    DepType, GraphLabel, JobConfig, JobGraph, JobLabel, PartitionRef, PartitionStatus, Task,
};

use crate::{
    graph::{Graph, LookupError},
    protocol::{self, ref_list, ProtocolError},
};

/// Why no job graph could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A requested ref is not valid (the message already says it is a partition ref).
    #[error(transparent)]
    InvalidRef(#[from] databuild_proto::RefError),
    /// Lookup failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// A job's `config` failed.
    #[error(transparent)]
    Configure(#[from] ProtocolError),
    /// Refs that no job produces and that are not available.
    #[error("no job produces {refs} and {they} not registered as available; register external data with `databuild partitions register <ref>`, or check the refs against the graph's `produces` patterns", they = if *count == 1 { "it is" } else { "they are" })]
    MissingExternal {
        refs: String,
        count: usize,
        /// The refs, sorted.
        missing: Vec<String>,
    },
    /// The MATERIALIZE inputs form a cycle.
    #[error("dependency cycle: {0} (each partition needs the next as a MATERIALIZE input); change the jobs' `config` so that no partition depends on itself")]
    Cycle(String),
    /// Reading partition statuses.
    #[error(transparent)]
    Bel(#[from] databuild_bel::BelError),
}

/// Plans the tasks that produce `refs`. With `force`, the requested refs are planned even
/// if AVAILABLE (their inputs are not).
pub async fn analyze(
    graph: &Graph,
    bel: &dyn EventRead,
    refs: &[String],
    force: bool,
) -> Result<JobGraph, PlanError> {
    for r in refs {
        databuild_proto::validate_ref(r)?;
    }
    let requested = distinct(refs);
    let statuses = bel.statuses(&requested).await?;
    let nodes = plan(graph, bel, &requested, &statuses, force, false).await?;
    Ok(JobGraph {
        label: Some(GraphLabel {
            label: graph.label.clone(),
        }),
        outputs: requested.iter().cloned().map(PartitionRef::new).collect(),
        nodes,
    })
}

/// `refs` without repeats, in first-seen order (borrowed when there are none).
pub(crate) fn distinct(refs: &[String]) -> std::borrow::Cow<'_, [String]> {
    // Sorted refs (a file of them, an expanded range) repeat none if each is greater than
    // the one before: one pass, no set.
    if refs.windows(2).all(|w| w[0] < w[1]) {
        return std::borrow::Cow::Borrowed(refs);
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(refs.len());
    if refs.iter().all(|r| seen.insert(r)) {
        return std::borrow::Cow::Borrowed(refs);
    }
    seen.clear();
    std::borrow::Cow::Owned(refs.iter().filter(|r| seen.insert(r)).cloned().collect())
}

/// Plans the tasks that produce the distinct refs `requested`, whose latest `statuses`
/// (in the same order) the caller read. Requested refs that are AVAILABLE are left out
/// (unless `force`); so are inputs that are AVAILABLE — unless they are outdated (built
/// by another version of their job) and not `keep_outdated`.
pub(crate) async fn plan(
    graph: &Graph,
    bel: &dyn EventRead,
    requested: &[String],
    statuses: &[Option<PartitionStatus>],
    force: bool,
    keep_outdated: bool,
) -> Result<Vec<Task>, PlanError> {
    let mut tasks: Vec<Task> = Vec::new();
    // ref -> index of the task that produces it
    let mut producer: HashMap<String, usize> = HashMap::new();
    let mut missing_external: Vec<String> = Vec::new();
    // Refs planned or queued for planning: an input is queued once. Requested refs that
    // are AVAILABLE are not in it; as somebody's input they are looked at again (and
    // found AVAILABLE), which costs less than remembering millions of them.
    // AVAILABLE partitions built by another version of their job, or from one: planned
    // like missing ones (one query per job; empty when nothing is outdated).
    let outdated = if keep_outdated {
        Default::default()
    } else {
        crate::scheduler::outdated(graph, bel).await?
    };
    let none_outdated = outdated.all.is_empty();
    let keep = |r: &String, s: &Option<PartitionStatus>| {
        *s == Some(PartitionStatus::PartitionAvailable)
            && (none_outdated || !outdated.all.contains(r))
    };
    let mut need: Vec<String> = requested
        .iter()
        .zip(statuses)
        .filter(|(r, s)| force || !keep(r, s))
        .map(|(r, _)| r.clone())
        .collect();
    let mut seen: HashSet<String> = need.iter().cloned().collect();

    // Configs a job answered for refs it was not asked for, kept for later waves.
    let mut preconfigured = Preconfigured::default();
    // Persistent `config` processes, one per job, for the whole planning; killed when
    // planning ends.
    let sessions = protocol::ConfigSessions::default();

    while !need.is_empty() {
        let looked_up = graph.lookup(&need).await?;
        missing_external.extend(looked_up.unproduced);

        let mut answers: Vec<(String, Vec<JobConfig>)> = Vec::new();
        let mut calls = tokio::task::JoinSet::new();
        for (label, job_refs) in looked_up.by_job {
            let (kept, job_refs) = preconfigured.take(&label, job_refs, &producer);
            if !kept.is_empty() {
                answers.push((label.clone(), kept));
            }
            if job_refs.is_empty() {
                continue;
            }
            let graph = graph.clone();
            let sessions = sessions.clone();
            calls.spawn(async move {
                let job = graph.job(&label).expect("lookup returns known jobs");
                let configs = protocol::configure(&graph, job, &job_refs, &sessions).await;
                (label, job_refs, configs)
            });
        }
        let mut called = Vec::new();
        while let Some(joined) = calls.join_next().await {
            called.push(joined.expect("configure task panicked"));
        }
        called.sort_by(|a, b| a.0.cmp(&b.0));
        for (label, asked, configs) in called {
            let asked: HashSet<&str> = asked.iter().map(String::as_str).collect();
            let (wanted, extra): (Vec<JobConfig>, Vec<JobConfig>) = configs?
                .into_iter()
                .partition(|c| c.outputs.iter().any(|o| asked.contains(o.str.as_str())));
            preconfigured.keep(&label, extra);
            answers.push((label, wanted));
        }
        // Stable: for one job, kept configs come before the ones just answered.
        answers.sort_by(|a, b| a.0.cmp(&b.0));

        let mut next: Vec<String> = Vec::new();
        for (label, configs) in answers {
            for config in configs {
                let idx = tasks.len();
                for o in &config.outputs {
                    if let Some(&other) = producer.get(&o.str) {
                        let other_label = tasks[other]
                            .job
                            .as_ref()
                            .map(|j| j.label.clone())
                            .unwrap_or_default();
                        if other_label != label {
                            return Err(LookupError::Ambiguous {
                                partition_ref: o.str.clone(),
                                first: other_label,
                                first_pattern: "(config output)".into(),
                                second: label.clone(),
                                second_pattern: "(config output)".into(),
                            }
                            .into());
                        }
                        continue;
                    }
                    producer.insert(o.str.clone(), idx);
                }
                for d in &config.inputs {
                    if d.dep_type == DepType::Materialize as i32 {
                        let r = d
                            .partition_ref
                            .as_ref()
                            .map(|r| r.str.clone())
                            .unwrap_or_default();
                        if seen.insert(r.clone()) {
                            next.push(r);
                        }
                    }
                }
                tasks.push(Task {
                    job: Some(JobLabel::new(label.clone())),
                    config: Some(config),
                });
            }
        }
        next.retain(|r| !producer.contains_key(r));
        if next.is_empty() {
            break;
        }
        let states = bel.statuses(&next).await?;
        need = next
            .into_iter()
            .zip(states)
            .filter(|(r, s)| !keep(r, s))
            .map(|(r, _)| r)
            .collect();
    }

    if !missing_external.is_empty() {
        missing_external.sort();
        return Err(PlanError::MissingExternal {
            count: missing_external.len(),
            refs: ref_list(&missing_external),
            missing: missing_external,
        });
    }
    if let Some(cycle) = find_cycle(&tasks, &producer) {
        return Err(PlanError::Cycle(cycle));
    }
    Ok(tasks)
}

/// Configs that a job's `config` returned for refs it was not asked for (a job that knows
/// its upstream answers for it at once). They are validated with the answer; a later wave
/// that needs one of their outputs uses the kept config instead of calling `config`
/// again, provided lookup maps the ref to the same job, no later answer replaced the
/// config for any of its outputs, and none of its outputs is planned already. Kept
/// configs that no wave needs are dropped.
#[derive(Default)]
struct Preconfigured {
    configs: Vec<Option<(String, JobConfig)>>,
    /// Output ref -> the config last kept for it.
    by_ref: HashMap<String, usize>,
}

impl Preconfigured {
    /// Keeps the configs job `label` answered without being asked.
    fn keep(&mut self, label: &str, configs: Vec<JobConfig>) {
        for config in configs {
            let i = self.configs.len();
            for o in &config.outputs {
                self.by_ref.insert(o.str.clone(), i);
            }
            self.configs.push(Some((label.to_string(), config)));
        }
    }

    /// Splits `refs`, which lookup maps to job `label`, into the kept configs that produce
    /// them (each taken once) and the refs left to configure.
    fn take(
        &mut self,
        label: &str,
        refs: Vec<String>,
        producer: &HashMap<String, usize>,
    ) -> (Vec<JobConfig>, Vec<String>) {
        if self.by_ref.is_empty() {
            return (Vec::new(), refs);
        }
        let mut taken: Vec<JobConfig> = Vec::new();
        let mut covered: HashSet<String> = HashSet::new();
        let mut rest = Vec::new();
        for r in refs {
            if covered.contains(&r) {
                continue;
            }
            let usable = self
                .by_ref
                .get(&r)
                .copied()
                .filter(|&i| self.usable(i, label, producer));
            let Some(i) = usable else {
                rest.push(r);
                continue;
            };
            let (_, config) = self.configs[i].take().expect("a usable config is kept");
            for o in &config.outputs {
                self.by_ref.remove(&o.str);
                covered.insert(o.str.clone());
            }
            taken.push(config);
        }
        (taken, rest)
    }

    fn usable(&self, i: usize, label: &str, producer: &HashMap<String, usize>) -> bool {
        self.configs[i].as_ref().is_some_and(|(l, config)| {
            l == label
                && config
                    .outputs
                    .iter()
                    .all(|o| self.by_ref.get(&o.str) == Some(&i) && !producer.contains_key(&o.str))
        })
    }
}

/// MATERIALIZE inputs of a task.
pub fn materialize_inputs(task: &Task) -> impl Iterator<Item = &str> {
    task.config
        .iter()
        .flat_map(|c| c.inputs.iter())
        .filter_map(|d| {
            (d.dep_type == DepType::Materialize as i32)
                .then(|| d.partition_ref.as_ref().map(|r| r.str.as_str()))
                .flatten()
        })
}

/// Finds a cycle among tasks along MATERIALIZE edges; returns it as `a -> b -> a` in refs.
/// Linear in tasks and inputs: each input is visited once.
pub fn find_cycle(tasks: &[Task], producer: &HashMap<String, usize>) -> Option<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; tasks.len()];
    for start in 0..tasks.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS; the stack holds (task, the ref through which we entered it, the
        // position of the next dependency in its config's inputs).
        let mut stack: Vec<(usize, &str, usize)> = vec![(start, first_output(&tasks[start]), 0)];
        mark[start] = Mark::Active;
        while let Some(top) = stack.last_mut() {
            let t = top.0;
            let deps = tasks[t].config.as_ref().map_or(&[][..], |c| &c.inputs[..]);
            let Some(d) = deps.get(top.2) else {
                mark[t] = Mark::Done;
                stack.pop();
                continue;
            };
            top.2 += 1;
            if d.dep_type != DepType::Materialize as i32 {
                continue;
            }
            let Some(input) = d.partition_ref.as_ref().map(|r| r.str.as_str()) else {
                continue;
            };
            let Some(&p) = producer.get(input) else {
                continue;
            };
            match mark[p] {
                Mark::Done => {}
                Mark::New => {
                    mark[p] = Mark::Active;
                    stack.push((p, input, 0));
                }
                Mark::Active => {
                    let pos = stack
                        .iter()
                        .position(|s| s.0 == p)
                        .expect("active task is on the stack");
                    let mut refs: Vec<&str> = vec![input];
                    refs.extend(stack[pos + 1..].iter().map(|s| s.1));
                    refs.push(input);
                    return Some(refs.join(" -> "));
                }
            }
        }
    }
    None
}

fn first_output(task: &Task) -> &str {
    task.config
        .as_ref()
        .and_then(|c| c.outputs.first())
        .map_or("", |o| o.str.as_str())
}
