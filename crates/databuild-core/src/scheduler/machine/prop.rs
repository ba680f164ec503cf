//! The machine on random DAGs with random completion, failure, retry, delegation and
//! cancellation orders, without processes: every event sequence it writes must pass the
//! event log's own transition rules, no limit may be exceeded, no task may start before
//! its inputs, and the outcome must be the one the DAG predicts.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use databuild_bel::{transitions, Event};
use databuild_proto::{
    FailureCause, JobGraphRunStatus, JobRunStatus, PartitionManifest, PartitionRef, PartitionStatus,
};
use proptest::{collection::vec, prelude::*};

use super::{
    tests::{policy, rules, task},
    Claim, Machine, Msg, OwnerOutcome, State,
};
use crate::scheduler::runner::ExecResult;

/// What another graph run holding a task's outputs does with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Builds,
    Fails,
    /// It dies: the outputs are claimed again and built here.
    Dies,
}

#[derive(Debug, Clone)]
struct Node {
    job: usize,
    deps: Vec<usize>,
    /// Attempts that fail before one succeeds.
    failures: u32,
    delegated: Option<Fate>,
    /// Has a previous build (STALE) the machine may keep when its inputs end with the
    /// digests that build was made from.
    kept: bool,
    /// A rebuild writes the bytes of the previous build (same digest).
    same: bool,
}

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<Node>,
    retries: Vec<u32>,
    limits: Vec<Option<usize>>,
    parallelism: usize,
    fail_fast: bool,
    cancel_at: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let node = |i: usize| {
        (
            0..3usize,
            vec(any::<bool>(), i),
            prop_oneof![6 => Just(0u32), 2 => Just(1), 1 => Just(3)],
            prop_oneof![
                8 => Just(None),
                1 => Just(Some(Fate::Builds)),
                1 => Just(Some(Fate::Fails)),
                1 => Just(Some(Fate::Dies)),
            ],
            prop::bool::weighted(0.4),
            any::<bool>(),
        )
            .prop_map(|(job, edges, failures, delegated, kept, same)| Node {
                job,
                deps: (0..edges.len()).filter(|&d| edges[d]).collect(),
                failures,
                kept: kept && delegated.is_none(),
                delegated,
                same,
            })
    };
    (1..14usize)
        .prop_flat_map(move |n| (0..n).map(node).collect::<Vec<_>>())
        .prop_flat_map(|nodes| {
            (
                Just(nodes),
                vec(0..3u32, 3),
                vec(prop::option::of(1..3usize), 3),
                1..5usize,
                prop::bool::weighted(0.2),
                prop::option::weighted(0.2, 0..60usize),
            )
        })
        .prop_map(
            |(nodes, retries, limits, parallelism, fail_fast, cancel_at)| Case {
                nodes,
                retries,
                limits,
                parallelism,
                fail_fast,
                cancel_at,
            },
        )
}

fn output(i: usize) -> String {
    format!("n/{i}")
}

/// How node `i` ends for this run, with no cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// AVAILABLE with the digest of its previous build (built by its owner, kept
    /// without running, or rebuilt with the same bytes).
    Old,
    /// AVAILABLE with another digest.
    New,
    Failed,
    /// Made fresh without running (and so `Old`).
    CutOff,
}

fn predicted(c: &Case, i: usize, memo: &mut HashMap<usize, End>) -> End {
    if let Some(&end) = memo.get(&i) {
        return end;
    }
    let n = &c.nodes[i];
    let old = |e: End| matches!(e, End::Old | End::CutOff);
    let deps: Vec<End> = n.deps.iter().map(|&d| predicted(c, d, memo)).collect();
    let end = match n.delegated {
        Some(Fate::Builds) => End::Old,
        Some(Fate::Fails) => End::Failed,
        _ if n.kept && !deps.is_empty() && deps.iter().all(|&e| old(e)) => End::CutOff,
        _ if n.failures <= c.retries[n.job] && deps.iter().all(|&e| e != End::Failed) => {
            if n.same {
                End::Old
            } else {
                End::New
            }
        }
        _ => End::Failed,
    };
    memo.insert(i, end);
    end
}

fn old_digest(i: usize) -> String {
    format!("old-{i}")
}

/// The previous build of node `i`: made from its deps' old digests.
fn previous(c: &Case, m: &Machine, i: usize) -> PartitionManifest {
    let manifest = |n: usize| PartitionManifest {
        outputs: vec![PartitionRef::new(output(n))],
        digests: HashMap::from([(output(n), old_digest(n))]),
        ..Default::default()
    };
    PartitionManifest {
        inputs: c.nodes[i].deps.iter().map(|&d| manifest(d)).collect(),
        config_fingerprint: m.task(i).fingerprint.clone(),
        ..manifest(i)
    }
}

/// Checks every event against the event log's transition rules and this run's promises.
struct Checker {
    graph: JobGraphRunStatus,
    jobs: HashMap<String, JobRunStatus>,
    /// Per partition: its statuses, in order.
    partitions: HashMap<String, Vec<(PartitionStatus, String)>>,
}

impl Checker {
    fn take(&mut self, events: Vec<Event>) -> Result<(), TestCaseError> {
        for e in events {
            match e {
                Event::Run(r) => {
                    if let Some(g) = r.graph_event {
                        let next = g.status();
                        transitions::check_graph("run", Some(self.graph), next)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        self.graph = next;
                    }
                    if let Some(j) = r.job_event {
                        let current = self.jobs.get(&j.job_run_id).copied();
                        transitions::check_job(&j.job_run_id, current, j.status())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        self.jobs.insert(j.job_run_id.clone(), j.status());
                    }
                }
                Event::Partition(p) => {
                    let r = p.partition_ref.as_ref().unwrap().str.clone();
                    let seen = self.partitions.entry(r.clone()).or_default();
                    if let Some((last, _)) = seen.last() {
                        prop_assert!(
                            *last == PartitionStatus::PartitionBuilding,
                            "`{r}` got {:?} after {last:?}",
                            p.status()
                        );
                    }
                    if p.status() == PartitionStatus::PartitionAvailable && !p.cut_off {
                        prop_assert_eq!(
                            self.jobs.get(&p.job_run_id),
                            Some(&JobRunStatus::JobSuccess),
                            "`{}` AVAILABLE without its job run's success",
                            r
                        );
                    }
                    if p.status() == PartitionStatus::PartitionFailed {
                        prop_assert!(p.failure_cause() != FailureCause::Unknown);
                    }
                    seen.push((p.status(), p.job_run_id));
                }
                other @ (Event::Want(_) | Event::Backfill(_)) => {
                    return Err(TestCaseError::fail(format!(
                        "a graph run wrote a want or backfill event: {other:?}"
                    )))
                }
            }
        }
        Ok(())
    }
}

/// One thing that can happen to the machine next.
type Step = Box<dyn FnOnce(&mut Machine)>;

fn simulate(c: &Case, choices: &[u32]) -> Result<(), TestCaseError> {
    let jobs: Vec<_> = (0..3)
        .map(|j| {
            let mut r = rules(&format!("job{j}"));
            r.retries = c.retries[j];
            r.max_concurrency = c.limits[j];
            r.retry_backoff = Duration::from_millis(10);
            r
        })
        .collect();
    let tasks = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let deps: Vec<String> = n.deps.iter().map(|&d| output(d)).collect();
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            task(&format!("job{}", n.job), &[&output(i)], &deps)
        })
        .collect();
    let requested: Vec<String> = (0..c.nodes.len()).map(output).collect();
    let mut p = policy(c.parallelism);
    p.fail_fast = c.fail_fast;
    let (mut m, _) = Machine::new("run", "g", jobs, p, Arc::new(|_| {}), tasks, &requested)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut checker = Checker {
        graph: JobGraphRunStatus::GraphAnalyzed,
        jobs: HashMap::new(),
        partitions: HashMap::new(),
    };
    let claims = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n.delegated {
            Some(_) => (i, Claim::HeldBy("owner".into())),
            None => (i, Claim::Claimed),
        })
        .collect();
    for i in 0..c.nodes.len() {
        if c.nodes[i].kept {
            let p = previous(c, &m, i);
            m.set_previous(i, p);
        }
    }
    m.on_claims(claims);
    m.inputs_known(&HashSet::new(), HashMap::new());

    // Claimed by this run at some point: its partitions' events are this run's to write.
    let mut ours: HashSet<usize> = (0..c.nodes.len())
        .filter(|&i| c.nodes[i].delegated.is_none())
        .collect();
    let mut running: HashMap<usize, String> = HashMap::new();
    let mut to_stop: HashSet<usize> = HashSet::new();
    let mut backoff: Vec<usize> = Vec::new();
    let mut reclaim: Vec<usize> = Vec::new();
    let mut runs_of = vec![0u32; c.nodes.len()];
    let mut cancelled = false;
    for step in 0.. {
        prop_assert!(step < 10_000, "the run does not end");
        m.start_ready();
        for s in std::mem::take(&mut m.out.start) {
            prop_assert!(!cancelled, "a job run started after the cancellation");
            for &d in &c.nodes[s.task].deps {
                prop_assert_eq!(
                    m.task(d).state,
                    State::Succeeded,
                    "started before its input"
                );
            }
            prop_assert!(
                running.insert(s.task, s.job_run_id).is_none(),
                "two job runs at once"
            );
            runs_of[s.task] += 1;
        }
        prop_assert!(running.len() <= c.parallelism, "-j exceeded");
        for j in 0..3 {
            let of_job = running.keys().filter(|&&t| c.nodes[t].job == j).count();
            prop_assert!(
                of_job <= c.limits[j].unwrap_or(usize::MAX),
                "max_concurrency exceeded"
            );
        }
        m.track_graph_status();
        to_stop.extend(std::mem::take(&mut m.out.cancel));
        backoff.extend(std::mem::take(&mut m.out.retry).into_iter().map(|(t, _)| t));
        reclaim.extend(m.claims_due());
        checker.take(m.out.take_events())?;
        if m.is_done() {
            break;
        }
        // Everything that can happen next, one of which does.
        let mut next: Vec<Step> = Vec::new();
        let mut picks = Vec::new();
        for (&t, id) in &running {
            let result = if to_stop.contains(&t) {
                ExecResult::failed(FailureCause::Cancelled, "stopped")
            } else if m.task(t).attempt <= c.nodes[t].failures {
                ExecResult::failed(FailureCause::JobFailed, "exit code 1")
            } else {
                ExecResult::Success
            };
            let (id, task) = (id.clone(), t);
            let digest = if c.nodes[t].same {
                old_digest(t)
            } else {
                format!("new-{t}")
            };
            picks.push(('x', t));
            next.push(Box::new(move |m| {
                m.on(Msg::Exited {
                    task,
                    job_run_id: id,
                    result,
                    digests: HashMap::from([(output(task), digest)]),
                })
            }));
        }
        for &t in &backoff {
            picks.push(('r', t));
            next.push(Box::new(move |m| m.on(Msg::RetryDue { task: t })));
        }
        reclaim.retain(|&t| m.task(t).state == State::Delegated);
        for &t in &reclaim {
            picks.push(('c', t));
            next.push(Box::new(move |m| m.on_claims(vec![(t, Claim::Claimed)])));
        }
        for t in m.delegated_tasks() {
            if reclaim.contains(&t) {
                continue;
            }
            let outcome = match c.nodes[t].delegated.expect("delegated") {
                Fate::Builds => OwnerOutcome::Built(HashMap::from([(
                    output(t),
                    PartitionManifest {
                        outputs: vec![PartitionRef::new(output(t))],
                        digests: HashMap::from([(output(t), old_digest(t))]),
                        ..Default::default()
                    },
                )])),
                Fate::Fails => OwnerOutcome::Failed {
                    partition: output(t),
                    cause: FailureCause::JobFailed,
                    reason: "exit code 1".into(),
                },
                Fate::Dies => OwnerOutcome::Failed {
                    partition: output(t),
                    cause: FailureCause::OwnerRunLost,
                    reason: "owner run lost".into(),
                },
            };
            picks.push(('o', t));
            next.push(Box::new(move |m| m.on_owner(t, outcome)));
        }
        if c.cancel_at.is_some_and(|at| step >= at) && !cancelled {
            picks.push(('!', 0));
            next.push(Box::new(|m| m.cancel_all("cancelled (interrupted)".into())));
        }
        prop_assert!(
            !next.is_empty(),
            "nothing can happen, but the run is not done"
        );
        let k = choices[step % choices.len()] as usize % next.len();
        match picks[k] {
            ('x', t) => {
                running.remove(&t);
                to_stop.remove(&t);
            }
            ('r', t) => backoff.retain(|&b| b != t),
            ('c', t) => {
                reclaim.retain(|&r| r != t);
                ours.insert(t);
            }
            ('!', _) => cancelled = true,
            _ => {}
        }
        next.swap_remove(k)(&mut m);
    }

    prop_assert!(running.is_empty());
    let outcome = m.finish(&requested);
    checker.take(m.out.take_events())?;
    prop_assert!(matches!(
        checker.graph,
        JobGraphRunStatus::GraphSuccess | JobGraphRunStatus::GraphFailed
    ));
    for (id, status) in &checker.jobs {
        prop_assert!(
            matches!(status, JobRunStatus::JobSuccess | JobRunStatus::JobFailed),
            "job run {} left {:?}",
            id,
            status
        );
    }
    let mut memo = HashMap::new();
    for (i, n) in c.nodes.iter().enumerate() {
        let state = m.task(i).state;
        prop_assert!(matches!(state, State::Succeeded | State::Failed));
        prop_assert!(
            runs_of[i] <= 1 + c.retries[n.job],
            "task {} ran {} times",
            i,
            runs_of[i]
        );
        let seen = checker
            .partitions
            .get(&output(i))
            .cloned()
            .unwrap_or_default();
        let terminal = seen
            .iter()
            .filter(|(s, _)| *s != PartitionStatus::PartitionBuilding)
            .count();
        if ours.contains(&i) {
            prop_assert_eq!(
                terminal,
                1,
                "`{}` of this run ends once: {:?}",
                output(i),
                seen
            );
        } else {
            prop_assert_eq!(terminal, 0, "`{}` is another run's: {:?}", output(i), seen);
        }
        if !cancelled && !c.fail_fast {
            let end = predicted(c, i, &mut memo);
            prop_assert_eq!(state == State::Succeeded, end != End::Failed, "node {}", i);
            prop_assert_eq!(
                end == End::CutOff,
                outcome.cut_off.contains(&output(i)),
                "node {} made fresh without running",
                i
            );
            if end == End::CutOff {
                prop_assert_eq!(runs_of[i], 0, "node {} was cut off but ran", i);
            }
        }
    }
    let all_ok = (0..c.nodes.len()).all(|i| m.task(i).state == State::Succeeded);
    prop_assert_eq!(outcome.success, all_ok && !cancelled);
    prop_assert_eq!(outcome.job_runs as u32, runs_of.iter().sum::<u32>());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_dags_and_random_orders(c in case(), choices in vec(any::<u32>(), 1..64)) {
        simulate(&c, &choices)?;
    }
}
