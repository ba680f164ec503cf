//! The machine's decisions, message by message, without processes or an event log.

use std::{collections::HashMap, sync::Arc, time::Duration};

use databuild_bel::Event;
use databuild_proto::{
    DataDep, DepType, FailureCause, JobConfig, JobGraphRunStatus, JobLabel, JobRunHandle,
    JobRunStatus, PartitionManifest, PartitionRef, PartitionStatus, Task,
};

use super::{Claim, JobRules, Machine, Msg, OwnerOutcome, Policy, Start, State};
use crate::scheduler::{executor::Submission, runner::ExecResult};

/// A task of job `job` building `outputs` from MATERIALIZE inputs `inputs`.
pub(super) fn task(job: &str, outputs: &[&str], inputs: &[&str]) -> Task {
    Task {
        job: Some(JobLabel::new(job)),
        config: Some(JobConfig {
            outputs: outputs.iter().map(|o| PartitionRef::new(*o)).collect(),
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

pub(super) fn rules(label: &str) -> JobRules {
    JobRules {
        label: label.into(),
        max_concurrency: None,
        retries: 0,
        retry_backoff: Duration::from_secs(1),
        executor: "local",
        queues: false,
        version: String::new(),
        finds_unrecorded: true,
    }
}

pub(super) fn policy(parallelism: usize) -> Policy {
    Policy {
        parallelism,
        fail_fast: false,
        force: false,
    }
}

/// A machine of one job `j`, `-j 1`, over `tasks`, with `requested`; nothing claimed yet.
fn unclaimed(tasks: Vec<Task>, requested: &[String]) -> Machine {
    let (m, _) = Machine::new(
        "run",
        "g",
        vec![rules("j")],
        policy(1),
        Arc::new(|_| {}),
        tasks,
        requested,
    )
    .unwrap();
    m
}

/// A machine over `tasks`, every output requested, claimed and its outside inputs
/// available.
fn claimed(jobs: Vec<JobRules>, policy: Policy, tasks: Vec<Task>) -> Machine {
    let requested: Vec<String> = tasks
        .iter()
        .flat_map(|t| {
            t.config
                .as_ref()
                .unwrap()
                .outputs
                .iter()
                .map(|o| o.str.clone())
        })
        .collect();
    let (mut m, _) = Machine::new(
        "run",
        "g",
        jobs,
        policy,
        Arc::new(|_| {}),
        tasks,
        &requested,
    )
    .unwrap();
    let claims = (0..m.len()).map(|i| (i, Claim::Claimed)).collect();
    m.on_claims(claims);
    m.inputs_known(&Default::default(), HashMap::new());
    m
}

fn starts(m: &mut Machine) -> Vec<Start> {
    m.start_ready();
    std::mem::take(&mut m.out.start)
}

fn exit(m: &mut Machine, s: &Start, result: ExecResult) {
    m.on(Msg::Exited {
        task: s.task,
        job_run_id: s.job_run_id.clone(),
        result,
        digests: HashMap::new(),
    });
}

fn failed(reason: &str) -> ExecResult {
    ExecResult::failed(FailureCause::JobFailed, reason)
}

/// The partition events taken from the machine: (ref, status, cause).
fn partition_events(m: &mut Machine) -> Vec<(String, PartitionStatus, FailureCause)> {
    m.out
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Partition(p) => Some((
                p.partition_ref.as_ref().unwrap().str.clone(),
                p.status(),
                p.failure_cause(),
            )),
            Event::Run(_) | Event::Want(_) | Event::Backfill(_) => None,
        })
        .collect()
}

fn job_statuses(events: &[Event]) -> Vec<JobRunStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Run(r) => r.job_event.as_ref().map(|j| j.status()),
            Event::Partition(_) | Event::Want(_) | Event::Backfill(_) => None,
        })
        .collect()
}

#[test]
fn a_chain_runs_in_order_and_ends_in_success() {
    let mut m = claimed(
        vec![rules("j")],
        policy(4),
        vec![
            task("j", &["a"], &[]),
            task("j", &["b"], &["a"]),
            task("j", &["c"], &["b"]),
        ],
    );
    for want in ["a", "b", "c"] {
        let s = starts(&mut m);
        assert_eq!(s.len(), 1, "only the task whose inputs are built starts");
        assert_eq!(m.task(s[0].task).outputs, [want]);
        let events = m.out.take_events();
        assert_eq!(
            job_statuses(&events),
            [JobRunStatus::JobScheduled, JobRunStatus::JobRunning]
        );
        exit(&mut m, &s[0], ExecResult::Success);
        assert_eq!(
            partition_events(&mut m),
            [(
                want.to_string(),
                PartitionStatus::PartitionAvailable,
                FailureCause::Unknown
            )]
        );
    }
    assert!(m.is_done());
    let outcome = m.finish(&["c".into()]);
    assert!(outcome.success);
    assert_eq!(outcome.built, ["a", "b", "c"]);
    assert_eq!(outcome.job_runs, 3);
}

#[test]
fn the_lineage_of_a_run_names_the_inputs_it_started_with() {
    let mut m = claimed(
        vec![rules("j")],
        policy(1),
        vec![task("j", &["a"], &[]), task("j", &["b"], &["a"])],
    );
    let a = starts(&mut m).remove(0);
    exit(&mut m, &a, ExecResult::Success);
    let b = starts(&mut m).remove(0);
    exit(&mut m, &b, ExecResult::Success);
    let outcome = m.finish(&[]);
    let inputs: Vec<_> = outcome.manifests[1]
        .inputs
        .iter()
        .map(|i| i.outputs[0].str.clone())
        .collect();
    assert_eq!(inputs, ["a"]);
}

#[test]
fn a_failure_fails_everything_downstream_as_upstream_failed() {
    let mut m = claimed(
        vec![rules("j")],
        policy(2),
        vec![
            task("j", &["a"], &[]),
            task("j", &["b"], &["a"]),
            task("j", &["c"], &["b"]),
            task("j", &["d"], &[]),
        ],
    );
    let s = starts(&mut m);
    assert_eq!(s.len(), 2);
    m.out.take_events();
    exit(&mut m, &s[0], failed("exit code 1"));
    let got = partition_events(&mut m);
    assert_eq!(
        got,
        [
            (
                "a".into(),
                PartitionStatus::PartitionFailed,
                FailureCause::JobFailed
            ),
            (
                "b".into(),
                PartitionStatus::PartitionFailed,
                FailureCause::UpstreamFailed
            ),
            (
                "c".into(),
                PartitionStatus::PartitionFailed,
                FailureCause::UpstreamFailed
            ),
        ]
    );
    exit(&mut m, &s[1], ExecResult::Success);
    assert!(m.is_done());
    let outcome = m.finish(&["d".into()]);
    assert!(!outcome.success, "a failed partition fails the run");
    assert_eq!(outcome.failed.len(), 3);
    assert!(outcome.failed[0]
        .1
        .starts_with("job `j` failed: exit code 1 (job run `"));
    assert_eq!(
        outcome.failed[1].1,
        "upstream partition `a` failed (job `j`)"
    );
}

#[test]
fn a_failed_job_is_retried_after_its_backoff_and_may_then_succeed() {
    let mut j = rules("j");
    j.retries = 2;
    j.retry_backoff = Duration::from_millis(100);
    let mut m = claimed(vec![j], policy(1), vec![task("j", &["a"], &[])]);
    let first = starts(&mut m).remove(0);
    exit(&mut m, &first, failed("flaky"));
    assert_eq!(m.out.retry, [(0, Duration::from_millis(100))]);
    assert!(!m.is_done(), "a task in backoff keeps the run going");
    assert!(
        starts(&mut m).is_empty(),
        "nothing starts before the retry is due"
    );
    m.on(Msg::RetryDue { task: 0 });
    let second = starts(&mut m).remove(0);
    assert_ne!(
        second.job_run_id, first.job_run_id,
        "a retry is a new job run"
    );
    assert_eq!(m.task(0).attempt, 2);
    exit(&mut m, &second, failed("flaky"));
    assert_eq!(
        m.out.retry[1],
        (0, Duration::from_millis(200)),
        "backoff doubles"
    );
    m.on(Msg::RetryDue { task: 0 });
    let third = starts(&mut m).remove(0);
    m.out.take_events();
    exit(&mut m, &third, failed("flaky"));
    assert_eq!(m.out.retry.len(), 2, "no retry after the last attempt");
    let outcome = m.finish(&["a".into()]);
    assert!(outcome.failed[0]
        .1
        .contains("failed after 3 attempts: flaky"));
}

#[test]
fn parallelism_and_max_concurrency_bound_what_starts() {
    let mut limited = rules("limited");
    limited.max_concurrency = Some(2);
    let mut m = claimed(
        vec![limited, rules("free")],
        policy(3),
        vec![
            task("limited", &["l1"], &[]),
            task("limited", &["l2"], &[]),
            task("limited", &["l3"], &[]),
            task("free", &["f1"], &[]),
            task("free", &["f2"], &[]),
        ],
    );
    let s = starts(&mut m);
    let labels: Vec<_> = s.iter().map(|s| m.task(s.task).label.as_str()).collect();
    assert_eq!(
        labels,
        ["limited", "free", "limited"],
        "round robin over jobs"
    );
    assert!(starts(&mut m).is_empty(), "-j 3 is reached");
    exit(&mut m, &s[1], ExecResult::Success);
    let next = starts(&mut m);
    assert_eq!(
        m.task(next[0].task).outputs,
        ["f2"],
        "`limited` is at its max_concurrency, so `free` goes first"
    );
}

#[test]
fn cancelling_stops_running_jobs_and_fails_waiting_work_as_cancelled() {
    let mut m = claimed(
        vec![rules("j")],
        policy(1),
        vec![
            task("j", &["a"], &[]),
            task("j", &["b"], &[]),
            task("j", &["c"], &["a"]),
        ],
    );
    let s = starts(&mut m);
    m.out.take_events();
    m.cancel_all("cancelled (interrupted)".into());
    assert_eq!(m.out.cancel, [s[0].task], "the running job is stopped");
    let got = partition_events(&mut m);
    assert_eq!(
        got,
        [
            (
                "b".into(),
                PartitionStatus::PartitionFailed,
                FailureCause::Cancelled
            ),
            (
                "c".into(),
                PartitionStatus::PartitionFailed,
                FailureCause::Cancelled
            ),
        ]
    );
    assert!(!m.is_done(), "the run waits for its running job");
    exit(
        &mut m,
        &s[0],
        ExecResult::failed(FailureCause::Cancelled, "stopped"),
    );
    assert!(m.out.retry.is_empty(), "nothing is retried once cancelled");
    assert!(starts(&mut m).is_empty(), "nothing starts once cancelled");
    assert!(m.is_done());
    let outcome = m.finish(&[]);
    assert!(outcome.cancelled && !outcome.success);
    let a = outcome.failed.iter().find(|(r, _)| r == "a").unwrap();
    assert!(
        a.1.contains("cancelled (interrupted)"),
        "a job stopped by the cancellation says why: {}",
        a.1
    );
}

#[test]
fn fail_fast_cancels_the_rest_after_the_first_failure() {
    let mut p = policy(2);
    p.fail_fast = true;
    let mut m = claimed(
        vec![rules("j")],
        p,
        vec![
            task("j", &["a"], &[]),
            task("j", &["b"], &[]),
            task("j", &["c"], &[]),
        ],
    );
    let s = starts(&mut m);
    exit(&mut m, &s[0], failed("boom"));
    assert_eq!(m.out.cancel, [s[1].task]);
    let outcome = {
        exit(
            &mut m,
            &s[1],
            ExecResult::failed(FailureCause::Cancelled, "stopped"),
        );
        m.finish(&[])
    };
    let c = outcome.failed.iter().find(|(r, _)| r == "c").unwrap();
    assert_eq!(c.1, "cancelled: --fail-fast after job `j` failed");
}

#[test]
fn a_missing_outside_input_fails_its_task_before_anything_runs() {
    let mut m = unclaimed(
        vec![
            task("j", &["b"], &["outside"]),
            task("j", &["c"], &["there"]),
        ],
        &["b".into(), "c".into()],
    );
    assert_eq!(m.outside_inputs(), ["outside", "there"]);
    m.on_claims(vec![(0, Claim::Claimed), (1, Claim::Claimed)]);
    m.inputs_known(&["there".to_string()].into(), HashMap::new());
    assert_eq!(
        partition_events(&mut m),
        [(
            "b".into(),
            PartitionStatus::PartitionFailed,
            FailureCause::InputMissing
        )]
    );
    assert_eq!(m.task(1).state, State::Ready);
}

#[test]
fn a_delegated_task_follows_its_owner() {
    let mut m = unclaimed(
        vec![
            task("j", &["a"], &[]),
            task("j", &["b"], &["a"]),
            task("j", &["x"], &[]),
            task("j", &["y"], &["x"]),
        ],
        &[],
    );
    m.on_claims(vec![
        (0, Claim::HeldBy("owner".into())),
        (1, Claim::Claimed),
        (2, Claim::HeldBy("owner".into())),
        (3, Claim::Claimed),
    ]);
    m.inputs_known(&Default::default(), HashMap::new());
    assert_eq!(m.delegated_tasks(), [0, 2]);
    assert!(starts(&mut m).is_empty(), "dependents wait for the owner");
    // The owner died: claim it again; once claimed, it is built here.
    m.on_owner(
        0,
        OwnerOutcome::Failed {
            partition: "a".into(),
            cause: FailureCause::OwnerRunLost,
            reason: "owner run lost".into(),
        },
    );
    assert_eq!(m.out.claim, [0]);
    m.out.claim.clear();
    m.on_claims(vec![(0, Claim::Claimed)]);
    assert_eq!(m.task(0).state, State::Ready);
    // The other owner failed for real: this run fails what depends on it.
    m.on_owner(
        2,
        OwnerOutcome::Failed {
            partition: "x".into(),
            cause: FailureCause::JobFailed,
            reason: "exit code 1".into(),
        },
    );
    assert!(
        m.out.claim.is_empty(),
        "a real failure is not claimed again"
    );
    assert_eq!(
        partition_events(&mut m),
        [(
            "y".into(),
            PartitionStatus::PartitionFailed,
            FailureCause::UpstreamFailed
        )],
        "the owner's partitions are not this run's to fail"
    );
    let a = starts(&mut m).remove(0);
    exit(&mut m, &a, ExecResult::Success);
    let b = starts(&mut m).remove(0);
    exit(&mut m, &b, ExecResult::Success);
    assert!(m.is_done());
    let outcome = m.finish(&[]);
    assert_eq!(outcome.built, ["a", "b"]);
    assert_eq!(
        outcome.failed[0],
        (
            "x".into(),
            "graph run `owner` failed to build `x`: exit code 1".into()
        )
    );
}

#[test]
fn what_the_owner_built_is_adopted_with_its_lineage() {
    let mut m = unclaimed(vec![task("j", &["a"], &[]), task("j", &["b"], &["a"])], &[]);
    m.on_claims(vec![
        (0, Claim::HeldBy("owner".into())),
        (1, Claim::Claimed),
    ]);
    m.inputs_known(&Default::default(), HashMap::new());
    let manifest = PartitionManifest {
        outputs: vec![PartitionRef::new("a")],
        ..Default::default()
    };
    m.on_owner(0, OwnerOutcome::Built([("a".to_string(), manifest)].into()));
    let b = starts(&mut m).remove(0);
    exit(&mut m, &b, ExecResult::Success);
    let outcome = m.finish(&[]);
    assert_eq!(outcome.delegated, ["a"]);
    assert_eq!(outcome.manifests[0].inputs[0].outputs[0].str, "a");
    assert!(outcome.success);
}

#[test]
fn a_queueing_executor_has_outputs_building_once_its_engine_accepts_the_job() {
    let mut j = rules("j");
    j.executor = "slurm";
    j.queues = true;
    let mut m = claimed(vec![j], policy(1), vec![task("j", &["a"], &[])]);
    let s = starts(&mut m).remove(0);
    assert!(
        partition_events(&mut m).is_empty(),
        "not BUILDING while queued"
    );
    let submission = Submission {
        executor: "slurm",
        id: "42".into(),
        adopted_from: None,
    };
    m.on(Msg::Submitted {
        task: s.task,
        job_run_id: "another job run".into(),
        submission: submission.clone(),
    });
    assert!(m.out.events.is_empty(), "a stale report is ignored");
    m.on(Msg::Submitted {
        task: s.task,
        job_run_id: s.job_run_id.clone(),
        submission,
    });
    let events = m.out.take_events();
    let Event::Run(r) = &events[0] else {
        panic!("a job event first")
    };
    let handle = r.job_event.as_ref().unwrap().handle.as_ref().unwrap();
    assert_eq!(
        (handle.executor.as_str(), handle.id.as_str()),
        ("slurm", "42")
    );
    let Event::Partition(p) = &events[1] else {
        panic!("then BUILDING")
    };
    assert_eq!(p.status(), PartitionStatus::PartitionBuilding);
    assert_eq!(p.storage_metadata["slurm_job_id"], "42");
}

#[test]
fn a_local_job_run_starts_early_and_its_events_wait_for_more_until_something_cannot() {
    let mut m = claimed(
        vec![rules("j")],
        policy(2),
        vec![task("j", &["a"], &[]), task("j", &["b"], &[])],
    );
    assert!(!m.out.may_wait(), "nothing to write does not wait");
    m.start_ready();
    assert_eq!(m.out.start.len(), 2);
    assert!(m.out.start.iter().all(|s| s.early));
    assert!(
        m.out.may_wait(),
        "local starts may go before their events are durable"
    );
    let a = m.out.start.remove(0);
    let b = m.out.start.remove(0);
    let handle = JobRunHandle {
        executor: "local".into(),
        pid: 7,
        ..Default::default()
    };
    m.on(Msg::Started {
        task: a.task,
        job_run_id: a.job_run_id.clone(),
        handle,
    });
    m.on(Msg::Lines {
        task: a.task,
        job_run_id: a.job_run_id.clone(),
        lines: vec!["working".into()],
    });
    exit(&mut m, &a, ExecResult::Success);
    assert!(
        m.out.may_wait(),
        "a handle, output lines and an end may wait"
    );
    // Everything so far, in order, in one write; the handle went into a's pending
    // JOB_RUNNING event instead of one of its own.
    let statuses = job_statuses(&m.out.events);
    assert_eq!(
        statuses,
        [
            JobRunStatus::JobScheduled,
            JobRunStatus::JobRunning,
            JobRunStatus::JobScheduled,
            JobRunStatus::JobRunning,
            JobRunStatus::JobRunning,
            JobRunStatus::JobSuccess,
        ]
    );
    let handles: Vec<(String, Option<u32>)> = m
        .out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Run(r) => r.job_event.as_ref(),
            _ => None,
        })
        .map(|j| (j.job_run_id.clone(), j.handle.as_ref().map(|h| h.pid)))
        .collect();
    assert_eq!(
        handles
            .iter()
            .filter(|(_, pid)| pid.is_some())
            .collect::<Vec<_>>(),
        [&(a.job_run_id.clone(), Some(7))],
        "one event records a's process: its first JOB_RUNNING"
    );
    assert_eq!(handles[1], (a.job_run_id.clone(), Some(7)));
    // A stop does not wait.
    m.cancel_all("cancelled: test".into());
    assert_eq!(m.out.cancel, [b.task]);
    assert!(!m.out.may_wait(), "a stop is sent at once");
    m.out.take_events();
    m.out.cancel.clear();
    assert!(!m.out.may_wait(), "taken: nothing left");
}

#[test]
fn a_handle_that_comes_after_the_start_was_taken_to_be_written_is_an_event_of_its_own() {
    let mut m = claimed(vec![rules("j")], policy(1), vec![task("j", &["a"], &[])]);
    m.start_ready();
    let a = m.out.start.remove(0);
    let written = m.out.take_events();
    assert_eq!(
        job_statuses(&written),
        [JobRunStatus::JobScheduled, JobRunStatus::JobRunning]
    );
    m.on(Msg::Started {
        task: a.task,
        job_run_id: a.job_run_id.clone(),
        handle: JobRunHandle {
            executor: "local".into(),
            pid: 9,
            ..Default::default()
        },
    });
    let Some(Event::Run(r)) = m.out.events.first() else {
        panic!("a JOB_RUNNING event with the handle: {:?}", m.out.events)
    };
    let j = r.job_event.as_ref().expect("a job event");
    assert_eq!(j.status(), JobRunStatus::JobRunning);
    assert_eq!(j.handle.as_ref().map(|h| h.pid), Some(9));
    assert_eq!(m.out.events.len(), 1);
}

#[test]
fn a_job_run_whose_executor_cannot_find_it_unrecorded_starts_once_its_events_are_durable() {
    let mut j = rules("j");
    j.executor = "slurm";
    j.queues = true;
    j.finds_unrecorded = false;
    let mut m = claimed(vec![j], policy(1), vec![task("j", &["a"], &[])]);
    m.start_ready();
    assert!(!m.out.start[0].early);
    assert!(!m.out.may_wait(), "its start waits for nothing");
    let s = m.out.start.remove(0);
    m.out.take_events();
    m.on(Msg::Submitted {
        task: s.task,
        job_run_id: s.job_run_id.clone(),
        submission: Submission {
            executor: "slurm",
            id: "42".into(),
            adopted_from: None,
        },
    });
    assert!(!m.out.may_wait(), "the engine's id is written at once");
    m.out.take_events();
    exit(&mut m, &s, ExecResult::Success);
    assert!(m.out.may_wait(), "its end may wait");
}

#[test]
fn the_graph_status_follows_the_work() {
    let mut m = claimed(vec![rules("j")], policy(1), vec![task("j", &["a"], &[])]);
    m.out.take_events();
    let graph_statuses = |m: &mut Machine| -> Vec<JobGraphRunStatus> {
        m.out
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Run(r) => r.graph_event.map(|g| g.status()),
                Event::Partition(_) | Event::Want(_) | Event::Backfill(_) => None,
            })
            .collect()
    };
    m.track_graph_status();
    assert_eq!(graph_statuses(&mut m), [JobGraphRunStatus::AwaitingDeps]);
    let s = starts(&mut m).remove(0);
    m.track_graph_status();
    m.track_graph_status();
    assert_eq!(graph_statuses(&mut m), [JobGraphRunStatus::GraphRunning]);
    exit(&mut m, &s, ExecResult::Success);
    m.track_graph_status();
    assert!(
        graph_statuses(&mut m).is_empty(),
        "done: the end is up to finish"
    );
    m.finish(&["a".into()]);
    assert_eq!(graph_statuses(&mut m), [JobGraphRunStatus::GraphSuccess]);
}

#[test]
fn a_plan_naming_an_unknown_job_or_one_output_twice_is_refused() {
    let new = |tasks| {
        Machine::new(
            "run",
            "g",
            vec![rules("j")],
            policy(1),
            Arc::new(|_| {}),
            tasks,
            &[],
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    assert!(new(vec![task("nope", &["a"], &[])]).contains("task #1 names unknown job `nope`"));
    assert!(new(vec![task("j", &["a"], &[]), task("j", &["a"], &[])])
        .contains("partition `a` is an output of two tasks"));
}
