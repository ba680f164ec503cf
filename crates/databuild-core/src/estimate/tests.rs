//! Unit tests of the estimate's arithmetic on small plans.

use std::{collections::HashMap, time::Duration};

use databuild_proto::{
    DataDep, DepType, JobConfig, JobGraph, JobLabel, PartitionRef, PartitionStatus, Task,
};

use super::*;

/// A task of job `job` building `output` from the MATERIALIZE `inputs`.
fn task(job: &str, output: &str, inputs: &[&str]) -> Task {
    Task {
        job: Some(JobLabel {
            label: job.to_string(),
        }),
        config: Some(JobConfig {
            outputs: vec![PartitionRef::new(output)],
            inputs: inputs
                .iter()
                .map(|i| DataDep {
                    dep_type: DepType::Materialize as i32,
                    partition_ref: Some(PartitionRef::new(*i)),
                })
                .collect(),
            ..Default::default()
        }),
    }
}

fn plan(outputs: &[&str], nodes: Vec<Task>) -> JobGraph {
    JobGraph {
        label: None,
        outputs: outputs.iter().map(|o| PartitionRef::new(*o)).collect(),
        nodes,
    }
}

fn secs(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|s| Duration::from_secs(*s)).collect()
}

const S: u64 = 1_000_000;

#[test]
fn p50_is_the_lower_middle() {
    assert_eq!(p50(&[]), None);
    assert_eq!(p50(&secs(&[5])), Some(Duration::from_secs(5)));
    assert_eq!(p50(&secs(&[9, 1, 5])), Some(Duration::from_secs(5)));
    assert_eq!(p50(&secs(&[4, 1, 3, 2])), Some(Duration::from_secs(2)));
}

/// Four independent 10 s tasks feeding one 5 s task: job time 45 s; at -j 2, two rounds
/// then the last: 25 s; the critical path is 15 s over 2 tasks.
#[test]
fn fan_in_at_two_slots() {
    let g = plan(
        &["sum/1", "raw/9"],
        vec![
            task("sum", "sum/1", &["raw/1", "raw/2", "raw/3", "raw/4"]),
            task("raw", "raw/1", &[]),
            task("raw", "raw/2", &[]),
            task("raw", "raw/3", &[]),
            task("raw", "raw/4", &[]),
        ],
    );
    let history = HashMap::from([
        ("raw".to_string(), secs(&[10, 10, 30])),
        ("sum".to_string(), secs(&[5])),
    ]);
    let statuses = [None, Some(PartitionStatus::PartitionAvailable)];
    let e = estimate(&g, &statuses, &history, 2);
    assert_eq!(
        e,
        Estimate {
            wanted: 2,
            available: 1,
            job_runs: 5,
            partitions_built: 5,
            p50_micros: BTreeMap::from([("raw".to_string(), 10 * S), ("sum".to_string(), 5 * S)]),
            job_time_micros: 45 * S,
            parallelism: 2,
            wall_time_micros: 25 * S,
            critical_path_micros: 15 * S,
            critical_path_tasks: 2,
            no_history: vec![],
            partial: false,
        }
    );
    assert_eq!(
        estimate(&g, &statuses, &history, 1).wall_time_micros,
        45 * S
    );
    assert_eq!(
        estimate(&g, &statuses, &history, 8).wall_time_micros,
        15 * S
    );
    assert_eq!(estimate(&g, &statuses, &history, 0).parallelism, 1);
}

/// A chain a -> b -> c beside one long independent task: the critical path is the long
/// task when it is longer than the chain, and the chain counts its tasks.
#[test]
fn critical_path_is_the_longest_chain_by_time() {
    let g = plan(
        &["c/1", "long/1"],
        vec![
            task("c", "c/1", &["b/1"]),
            task("b", "b/1", &["a/1"]),
            task("a", "a/1", &[]),
            task("long", "long/1", &[]),
        ],
    );
    let mut history = HashMap::from([
        ("a".to_string(), secs(&[1])),
        ("b".to_string(), secs(&[1])),
        ("c".to_string(), secs(&[1])),
        ("long".to_string(), secs(&[2])),
    ]);
    let e = estimate(&g, &[None, None], &history, 4);
    assert_eq!((e.critical_path_micros, e.critical_path_tasks), (3 * S, 3));
    assert_eq!(e.wall_time_micros, 3 * S);
    history.insert("long".to_string(), secs(&[7]));
    let e = estimate(&g, &[None, None], &history, 4);
    assert_eq!((e.critical_path_micros, e.critical_path_tasks), (7 * S, 1));
    assert_eq!(e.wall_time_micros, 7 * S);
    // One slot: the ready task first in the plan runs first; all in sequence.
    assert_eq!(
        estimate(&g, &[None, None], &history, 1).wall_time_micros,
        10 * S
    );
}

/// A job without history is named with its job runs, counts as no time, and makes the
/// estimate partial.
#[test]
fn jobs_without_history_are_left_out_and_named() {
    let g = plan(
        &["x/1", "x/2", "y/1"],
        vec![
            task("new", "x/1", &[]),
            task("new", "x/2", &[]),
            task("old", "y/1", &["x/1"]),
        ],
    );
    let history = HashMap::from([("old".to_string(), secs(&[4])), ("new".to_string(), vec![])]);
    let e = estimate(&g, &[None, None, None], &history, 2);
    assert!(e.partial);
    assert_eq!(
        e.no_history,
        [NoHistory {
            job: "new".to_string(),
            job_runs: 2
        }]
    );
    assert_eq!(e.job_time_micros, 4 * S);
    assert_eq!(e.wall_time_micros, 4 * S);
    assert_eq!(e.p50_micros.keys().collect::<Vec<_>>(), ["old"]);
}

#[test]
fn an_empty_plan_takes_no_time() {
    let g = plan(&["a/1"], vec![]);
    let e = estimate(
        &g,
        &[Some(PartitionStatus::PartitionAvailable)],
        &HashMap::new(),
        4,
    );
    assert_eq!((e.wanted, e.available, e.job_runs), (1, 1, 0));
    assert_eq!((e.wall_time_micros, e.critical_path_tasks), (0, 0));
    assert!(!e.partial);
}
