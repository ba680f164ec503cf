//! The planner and the scheduler on random DAGs, through the library API and a real job
//! program. Node `i` produces `n/<i>`; it may MATERIALIZE any nodes below it, may QUERY any
//! node, and may be set to fail. Every case builds a random set of refs three times:
//!
//! 1. from an empty event log, with some nodes failing;
//! 2. with every node fixed: only what is not AVAILABLE yet runs;
//! 3. again: nothing runs.
//!
//! After each build the event log must show that every job started after its MATERIALIZE
//! inputs were AVAILABLE, that no task ran twice, that `-j` was never exceeded, that every
//! requested ref ended AVAILABLE or FAILED (with a reason) exactly as the DAG predicts, and
//! that the graph run's outcome agrees with its partitions.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::Arc,
    time::Duration,
};

use databuild_bel::{Event, EventLog};
use databuild_core::{BuildOptions, Graph, RunOutcome};
use databuild_proto::{JobGraphRunStatus, JobRunStatus, PartitionStatus};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{select, subsequence},
    test_runner::TestCaseError,
};

/// One job answers for every node: `config` prints the node's prepared config fragment,
/// `exec` records the run and fails if the node is marked to fail.
const JOB: &str = r#"set -eu
cmd=$1
shift
case "$cmd" in
  config)
    printf '{"configs":['
    sep=
    for r in "$@"; do
      printf '%s' "$sep"
      cat "spec/${r#n/}.json"
      sep=,
    done
    printf ']}\n'
    ;;
  exec)
    echo "building n/$1"
    echo "$1 $DATABUILD_OUTPUTS" >> executions
    if [ -e "spec/$1.fail" ]; then
      echo "node $1 is marked to fail" >&2
      exit 1
    fi
    ;;
  *)
    echo "unknown command: $cmd" >&2
    exit 2
    ;;
esac
"#;

const GRAPH: &str = r#"[graph]
label = "random_dag"

[[jobs]]
label = "node"
entrypoint = ["sh", "job.sh"]
produces = ['n/\d+']
"#;

#[derive(Debug, Clone)]
struct Node {
    /// MATERIALIZE inputs (all lower node ids).
    deps: Vec<usize>,
    /// A QUERY input (any node, possibly one that is never planned).
    query: Option<usize>,
    /// `exec` exits 1 (in the first build).
    fails: bool,
}

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<Node>,
    /// Requested node ids, in request order (may repeat one).
    requested: Vec<usize>,
    parallelism: usize,
}

fn node(i: usize, n: usize) -> impl Strategy<Value = Node> {
    (
        vec(prop::bool::weighted(0.35), i),
        prop::option::weighted(0.3, 0..n),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(mask, query, fails)| Node {
            deps: mask
                .iter()
                .enumerate()
                .filter(|(_, &on)| on)
                .map(|(j, _)| j)
                .collect(),
            query,
            fails,
        })
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..=12)
        .prop_flat_map(|n| {
            let nodes: Vec<_> = (0..n).map(|i| node(i, n)).collect();
            let ids: Vec<usize> = (0..n).collect();
            (
                nodes,
                subsequence(ids.clone(), 1..=n.min(4)).prop_shuffle(),
                prop::option::weighted(0.2, select(ids)),
                1usize..=3,
            )
        })
        .prop_map(|(nodes, mut requested, repeat, parallelism)| {
            if let Some(r) = repeat {
                requested.push(r);
            }
            Case {
                nodes,
                requested,
                parallelism,
            }
        })
}

fn node_ref(i: usize) -> String {
    format!("n/{i}")
}

fn node_id(r: &str) -> usize {
    r.strip_prefix("n/")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("`{r}` is not a node ref"))
}

/// What a build must do, derived from the DAG alone.
#[derive(Debug)]
struct Expected {
    /// Nodes planned (not AVAILABLE before, needed by a requested ref).
    planned: BTreeSet<usize>,
    /// Planned nodes whose job runs (no failed MATERIALIZE input).
    executed: BTreeSet<usize>,
    /// Planned nodes that end FAILED (marked failing, or downstream of one).
    failed: BTreeSet<usize>,
}

fn expect(case: &Case, available: &BTreeSet<usize>, failing: &BTreeSet<usize>) -> Expected {
    let mut planned = BTreeSet::new();
    let mut stack: Vec<usize> = case.requested.clone();
    while let Some(i) = stack.pop() {
        if available.contains(&i) || !planned.insert(i) {
            continue;
        }
        stack.extend(&case.nodes[i].deps);
    }
    // Deps have lower ids, so one pass in id order settles every node.
    let mut failed = BTreeSet::new();
    let mut executed = BTreeSet::new();
    for &i in &planned {
        if case.nodes[i].deps.iter().any(|d| failed.contains(d)) {
            failed.insert(i);
        } else {
            executed.insert(i);
            if failing.contains(&i) {
                failed.insert(i);
            }
        }
    }
    Expected {
        planned,
        executed,
        failed,
    }
}

/// Writes the graph, the job and the per-node config fragments into `dir`.
fn write_graph(dir: &Path, case: &Case) {
    std::fs::write(dir.join("databuild.toml"), GRAPH).unwrap();
    std::fs::write(dir.join("job.sh"), JOB).unwrap();
    let spec = dir.join("spec");
    std::fs::create_dir_all(&spec).unwrap();
    for (i, n) in case.nodes.iter().enumerate() {
        let mut inputs: Vec<String> = n
            .deps
            .iter()
            .map(|d| format!(r#"{{"depType":"MATERIALIZE","partitionRef":{{"str":"n/{d}"}}}}"#))
            .collect();
        if let Some(q) = n.query {
            inputs.push(format!(
                r#"{{"depType":"QUERY","partitionRef":{{"str":"n/{q}"}}}}"#
            ));
        }
        std::fs::write(
            spec.join(format!("{i}.json")),
            format!(
                r#"{{"outputs":[{{"str":"n/{i}"}}],"inputs":[{}],"args":["{i}"]}}"#,
                inputs.join(",")
            ),
        )
        .unwrap();
        if n.fails {
            std::fs::write(spec.join(format!("{i}.fail")), "").unwrap();
        }
    }
}

/// Lines `exec` appended to the executions file, from line `from` on.
fn executions(dir: &Path, from: usize) -> Vec<String> {
    std::fs::read_to_string(dir.join("executions"))
        .unwrap_or_default()
        .lines()
        .skip(from)
        .map(str::to_string)
        .collect()
}

struct Ctx<'a> {
    dir: &'a Path,
    graph: &'a Graph,
    bel: Arc<dyn EventLog>,
    case: &'a Case,
}

impl Ctx<'_> {
    async fn build(&self) -> Result<RunOutcome, TestCaseError> {
        let refs: Vec<String> = self.case.requested.iter().map(|&i| node_ref(i)).collect();
        let opts = BuildOptions {
            parallelism: self.case.parallelism,
            log_dir: self.dir.join(".databuild/logs"),
            kill_grace: Duration::from_millis(300),
            ..Default::default()
        };
        let build =
            databuild_core::build(self.graph, self.bel.clone(), &refs, &opts, Arc::new(|_| {}));
        match tokio::time::timeout(Duration::from_secs(20), build).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(TestCaseError::fail(format!("build failed to run: {e}"))),
            Err(_) => Err(TestCaseError::fail("build did not finish within 20 s")),
        }
    }

    /// Builds the case's refs with `failing` nodes and checks the build against the DAG.
    /// Returns the nodes AVAILABLE afterwards, what was expected and the run's outcome.
    async fn build_and_check(
        &self,
        available_before: &BTreeSet<usize>,
        failing: &BTreeSet<usize>,
    ) -> Result<(BTreeSet<usize>, Expected, RunOutcome), TestCaseError> {
        let case = self.case;
        let expected = expect(case, available_before, failing);
        let log_before = self.bel.events_after(0, 0).await.unwrap();
        let last_seq = log_before.last().map_or(0, |e| e.seq);
        let executions_before = executions(self.dir, 0).len();

        let outcome = self.build().await?;

        let log = self.bel.events_after(0, 0).await.unwrap();
        // Partition statuses replayed along the log; checked at each job start.
        let mut status: HashMap<String, PartitionStatus> = HashMap::new();
        let mut started: BTreeMap<usize, i64> = BTreeMap::new();
        let mut job_keys = BTreeSet::new();
        let mut running_ids = BTreeSet::new();
        let mut running = 0usize;
        let mut scheduled = BTreeSet::new();
        let mut graph_statuses = Vec::new();
        let mut failures: BTreeMap<usize, String> = BTreeMap::new();
        for logged in &log {
            let this_run = logged.seq > last_seq;
            match &logged.event {
                Event::Partition(p) => {
                    let r = p.partition_ref.as_ref().unwrap().str.clone();
                    let st = p.status();
                    if this_run {
                        prop_assert_eq!(&p.job_graph_run_id, &outcome.run_id);
                        match st {
                            PartitionStatus::PartitionScheduled => {
                                scheduled.insert(node_id(&r));
                            }
                            PartitionStatus::PartitionFailed => {
                                prop_assert!(
                                    !p.failure_reason.is_empty(),
                                    "`{}` FAILED without a reason",
                                    r
                                );
                                failures.insert(node_id(&r), p.failure_reason.clone());
                            }
                            _ => {}
                        }
                    }
                    let cur = status.get(&r).copied();
                    status.insert(r, next_status(cur, st));
                }
                Event::Want(_) | Event::Backfill(_) => {
                    prop_assert!(false, "a build wrote a want or backfill event");
                }
                Event::Run(e) => {
                    if !this_run {
                        continue;
                    }
                    if let Some(g) = &e.graph_event {
                        prop_assert_eq!(&g.job_graph_run_id, &outcome.run_id);
                        graph_statuses.push(g.status());
                    }
                    let Some(j) = &e.job_event else {
                        continue;
                    };
                    prop_assert_eq!(&j.job_graph_run_id, &outcome.run_id);
                    match j.status() {
                        // Log lines and the process handle are RUNNING events too (the
                        // handle often in the start's own); the start is the first.
                        JobRunStatus::JobRunning
                            if j.logs.is_none() && !running_ids.contains(&j.job_run_id) =>
                        {
                            prop_assert_eq!(j.outputs.len(), 1);
                            let i = node_id(&j.outputs[0].str);
                            prop_assert!(
                                started.insert(i, logged.seq).is_none(),
                                "node {} started twice",
                                i
                            );
                            prop_assert!(
                                job_keys.insert(j.job_key.clone()),
                                "job key of node {} started twice",
                                i
                            );
                            prop_assert!(running_ids.insert(j.job_run_id.clone()));
                            for d in &case.nodes[i].deps {
                                prop_assert_eq!(
                                    status.get(&node_ref(*d)).copied(),
                                    Some(PartitionStatus::PartitionAvailable),
                                    "node {} started (seq {}) before its input n/{} was AVAILABLE",
                                    i,
                                    logged.seq,
                                    d
                                );
                            }
                            running += 1;
                            prop_assert!(
                                running <= case.parallelism,
                                "{} jobs running at seq {} with -j {}",
                                running,
                                logged.seq,
                                case.parallelism
                            );
                        }
                        JobRunStatus::JobSuccess | JobRunStatus::JobFailed => {
                            prop_assert!(
                                running_ids.remove(&j.job_run_id),
                                "job run {} ended without running",
                                j.job_run_id
                            );
                            running -= 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        prop_assert_eq!(running, 0, "jobs still running after the build");

        // The planner planned exactly the needed nodes; the scheduler ran exactly those
        // not behind a failure, each once.
        prop_assert_eq!(&scheduled, &expected.planned, "planned nodes");
        let started_nodes: BTreeSet<usize> = started.keys().copied().collect();
        prop_assert_eq!(&started_nodes, &expected.executed, "started nodes");
        let mut ran = executions(self.dir, executions_before);
        ran.sort();
        let mut want: Vec<String> = expected
            .executed
            .iter()
            .map(|i| format!(r#"{i} ["n/{i}"]"#))
            .collect();
        want.sort();
        prop_assert_eq!(ran, want, "executions");
        prop_assert_eq!(outcome.job_runs, expected.executed.len());

        // Final statuses: planned nodes FAILED or AVAILABLE as predicted, with reasons
        // that name the failed upstream.
        let mut available = available_before.clone();
        for &i in &expected.planned {
            let st = status.get(&node_ref(i)).copied();
            if expected.failed.contains(&i) {
                prop_assert_eq!(st, Some(PartitionStatus::PartitionFailed), "n/{}", i);
                let reason = &failures[&i];
                if !expected.executed.contains(&i) {
                    prop_assert!(
                        case.nodes[i]
                            .deps
                            .iter()
                            .filter(|d| expected.failed.contains(d))
                            .any(|d| reason.contains(&format!("`n/{d}`"))),
                        "reason of n/{} names no failed input: {}",
                        i,
                        reason
                    );
                }
            } else {
                prop_assert_eq!(st, Some(PartitionStatus::PartitionAvailable), "n/{}", i);
                available.insert(i);
            }
        }
        let requested: BTreeSet<usize> = case.requested.iter().copied().collect();
        let rows = self
            .bel
            .partitions(&requested.iter().map(|&i| node_ref(i)).collect::<Vec<_>>())
            .await
            .unwrap();
        prop_assert_eq!(rows.len(), requested.len());
        for row in &rows {
            let i = node_id(&row.partition_ref);
            let want = if expected.failed.contains(&i) {
                PartitionStatus::PartitionFailed
            } else {
                PartitionStatus::PartitionAvailable
            };
            prop_assert_eq!(row.status, want, "{}", row.partition_ref);
        }

        // QUERY inputs are in a built partition's lineage iff they were AVAILABLE at its
        // job's start.
        for logged in log.iter().filter(|l| l.seq > last_seq) {
            let Event::Partition(p) = &logged.event else {
                continue;
            };
            if p.status() != PartitionStatus::PartitionAvailable {
                continue;
            }
            let i = node_id(&p.partition_ref.as_ref().unwrap().str);
            let manifest = p.manifest.as_ref().expect("AVAILABLE carries a manifest");
            let inputs: BTreeSet<usize> = manifest
                .inputs
                .iter()
                .flat_map(|m| m.outputs.iter().map(|o| node_id(&o.str)))
                .collect();
            let mut want: BTreeSet<usize> = case.nodes[i].deps.iter().copied().collect();
            if let Some(q) = case.nodes[i].query {
                let at_start = replay_status(&log, started[&i], &node_ref(q));
                if at_start == Some(PartitionStatus::PartitionAvailable) {
                    want.insert(q);
                }
            }
            prop_assert_eq!(inputs, want, "lineage of n/{}", i);
        }

        // The run's outcome agrees with its partitions.
        let requested_failed = requested.iter().any(|i| expected.failed.contains(i));
        prop_assert_eq!(outcome.success, !requested_failed, "outcome.success");
        let outcome_failed: BTreeSet<usize> =
            outcome.failed.iter().map(|(r, _)| node_id(r)).collect();
        prop_assert_eq!(&outcome_failed, &expected.failed, "outcome.failed");
        let built: BTreeSet<usize> = outcome.built.iter().map(|r| node_id(r)).collect();
        let want_built: BTreeSet<usize> = expected
            .executed
            .difference(&expected.failed)
            .copied()
            .collect();
        prop_assert_eq!(built, want_built, "outcome.built");
        let last = graph_statuses.last().copied();
        prop_assert_eq!(
            last,
            Some(if outcome.success {
                JobGraphRunStatus::GraphSuccess
            } else {
                JobGraphRunStatus::GraphFailed
            }),
            "last graph status"
        );
        prop_assert_eq!(
            graph_statuses
                .iter()
                .filter(|s| matches!(
                    s,
                    JobGraphRunStatus::GraphSuccess | JobGraphRunStatus::GraphFailed
                ))
                .count(),
            1
        );
        Ok((available, expected, outcome))
    }
}

/// A partition's status after an event with `event` status: a request (or delegation)
/// of a partition that is claimed or AVAILABLE is logged but leaves its status alone.
fn next_status(current: Option<PartitionStatus>, event: PartitionStatus) -> PartitionStatus {
    use PartitionStatus as P;
    match (current, event) {
        (
            Some(cur @ (P::PartitionScheduled | P::PartitionBuilding | P::PartitionAvailable)),
            P::PartitionRequested | P::PartitionDelegated,
        ) => cur,
        _ => event,
    }
}

/// The status of `r` just before log position `seq`.
fn replay_status(log: &[databuild_bel::LoggedEvent], seq: i64, r: &str) -> Option<PartitionStatus> {
    let mut st = None;
    for l in log.iter().take_while(|l| l.seq < seq) {
        if let Event::Partition(p) = &l.event {
            if p.partition_ref.as_ref().is_some_and(|x| x.str == r) {
                st = Some(next_status(st, p.status()));
            }
        }
    }
    st
}

async fn run_case(case: Case) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write_graph(dir.path(), &case);
    let graph = Graph::load(&dir.path().join("databuild.toml")).unwrap();
    let bel = databuild_bel::open("sqlite://.databuild/bel.sqlite", dir.path())
        .await
        .unwrap();
    let ctx = Ctx {
        dir: dir.path(),
        graph: &graph,
        bel,
        case: &case,
    };

    // 1. Some nodes fail.
    let failing: BTreeSet<usize> = (0..case.nodes.len())
        .filter(|&i| case.nodes[i].fails)
        .collect();
    let (available, first, _) = ctx.build_and_check(&BTreeSet::new(), &failing).await?;

    // 2. Every node fixed: exactly the nodes that failed are built.
    for &i in &failing {
        std::fs::remove_file(dir.path().join(format!("spec/{i}.fail"))).unwrap();
    }
    let (available, second, _) = ctx.build_and_check(&available, &BTreeSet::new()).await?;
    prop_assert_eq!(&second.planned, &first.failed);
    prop_assert!(second.failed.is_empty());

    // 3. Everything is built: nothing runs.
    let (_, third, outcome) = ctx.build_and_check(&available, &BTreeSet::new()).await?;
    prop_assert!(third.planned.is_empty());
    prop_assert!(outcome.success);
    let up_to_date: BTreeSet<usize> = outcome.up_to_date.iter().map(|r| node_id(r)).collect();
    prop_assert_eq!(
        up_to_date,
        case.requested.iter().copied().collect::<BTreeSet<_>>()
    );
    Ok(())
}

proptest! {
    // PROPTEST_CASES=1000 for a deeper search; 24 keeps the test fast.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_dags_build_in_order_once_within_parallelism(case in case()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run_case(case))?;
    }
}
