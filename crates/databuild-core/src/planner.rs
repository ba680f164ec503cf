//! The planner (`AnalyzeGraph`): lookup → one batched `config` per job → MATERIALIZE
//! inputs → repeat until closed. Partitions already AVAILABLE are not planned (unless
//! forced); external refs must be available; a dependency cycle is an error.

use std::collections::{HashMap, HashSet};

use databuild_bel::EventLog;
use databuild_proto::{
    DepType, GraphLabel, JobGraph, JobLabel, PartitionRef, PartitionStatus, Task,
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
    MissingExternal { refs: String, count: usize },
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
    bel: &dyn EventLog,
    refs: &[String],
    force: bool,
) -> Result<JobGraph, PlanError> {
    for r in refs {
        databuild_proto::validate_ref(r)?;
    }
    let mut requested: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for r in refs {
        if seen.insert(r.clone()) {
            requested.push(r.clone());
        }
    }

    let mut tasks: Vec<Task> = Vec::new();
    // ref -> index of the task that produces it
    let mut producer: HashMap<String, usize> = HashMap::new();
    let mut missing_external: Vec<String> = Vec::new();
    let mut wave = requested.clone();
    let mut first_wave = true;

    while !wave.is_empty() {
        let states: HashMap<String, PartitionStatus> = bel
            .partitions(&wave)
            .await?
            .into_iter()
            .map(|r| (r.partition_ref, r.status))
            .collect();
        let need: Vec<String> = wave
            .iter()
            .filter(|r| !producer.contains_key(*r))
            .filter(|r| {
                (first_wave && force)
                    || states.get(*r) != Some(&PartitionStatus::PartitionAvailable)
            })
            .cloned()
            .collect();
        first_wave = false;
        let looked_up = graph.lookup(&need).await?;
        missing_external.extend(looked_up.unproduced);

        let mut calls = tokio::task::JoinSet::new();
        for (label, job_refs) in looked_up.by_job {
            let graph = graph.clone();
            calls.spawn(async move {
                let job = graph.job(&label).expect("lookup returns known jobs");
                let configs = protocol::configure(&graph, job, &job_refs).await;
                (label, configs)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = calls.join_next().await {
            answers.push(joined.expect("configure task panicked"));
        }
        answers.sort_by(|a, b| a.0.cmp(&b.0));

        let mut next: Vec<String> = Vec::new();
        for (label, configs) in answers {
            for config in configs? {
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
        wave = next;
    }

    if !missing_external.is_empty() {
        missing_external.sort();
        return Err(PlanError::MissingExternal {
            count: missing_external.len(),
            refs: ref_list(&missing_external),
        });
    }
    if let Some(cycle) = find_cycle(&tasks, &producer) {
        return Err(PlanError::Cycle(cycle));
    }
    Ok(JobGraph {
        label: Some(GraphLabel {
            label: graph.label.clone(),
        }),
        outputs: requested.into_iter().map(PartitionRef::new).collect(),
        nodes: tasks,
    })
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
        // Iterative DFS; the stack holds (task, the ref through which we entered it, next input index).
        let mut stack: Vec<(usize, String, usize)> = vec![(start, first_output(&tasks[start]), 0)];
        mark[start] = Mark::Active;
        while let Some(top) = stack.last_mut() {
            let (t, _, i) = (top.0, top.1.clone(), top.2);
            let inputs: Vec<&str> = materialize_inputs(&tasks[t]).collect();
            if i >= inputs.len() {
                mark[t] = Mark::Done;
                stack.pop();
                continue;
            }
            top.2 += 1;
            let input = inputs[i];
            let Some(&p) = producer.get(input) else {
                continue;
            };
            match mark[p] {
                Mark::Done => {}
                Mark::New => {
                    mark[p] = Mark::Active;
                    stack.push((p, input.to_string(), 0));
                }
                Mark::Active => {
                    let pos = stack
                        .iter()
                        .position(|s| s.0 == p)
                        .expect("active task is on the stack");
                    let mut refs: Vec<String> =
                        stack[pos + 1..].iter().map(|s| s.1.clone()).collect();
                    refs.insert(0, input.to_string());
                    refs.push(input.to_string());
                    return Some(refs.join(" -> "));
                }
            }
        }
    }
    None
}

fn first_output(task: &Task) -> String {
    task.config
        .as_ref()
        .and_then(|c| c.outputs.first())
        .map(|o| o.str.clone())
        .unwrap_or_default()
}
