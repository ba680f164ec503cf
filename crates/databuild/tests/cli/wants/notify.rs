//! Notifications: an SLA miss POSTs the want, its deadline and the root cause to a real
//! HTTP receiver; a late satisfaction follows; a receiver answering 500 is retried; a
//! failing notify command is logged and never blocks the reconciler.

use std::time::Duration;

use super::{wants, Receiver};
use crate::{
    service::Service,
    util::{assert_code, jobs_graph, ref_job, wait_for, TestGraph},
};

/// A job `slow` that waits for the file `go` before it succeeds.
fn slow_graph(notify: &str) -> TestGraph {
    let toml = format!(
        "{}\n[notify]\n{notify}\n",
        jobs_graph("notified", &[("slow", "")])
    );
    let g = TestGraph::new(&toml);
    ref_job(&g, "slow", "", "while [ ! -e go ]; do sleep 0.05; done");
    g
}

#[test]
fn an_sla_miss_posts_the_want_the_deadline_and_the_cause_to_the_webhook() {
    // The first delivery gets a 500 and is retried.
    let hook = Receiver::start(&[500, 200]);
    let g = slow_graph(&format!("webhook = \"{}\"\ntimeout = \"2s\"", hook.url));
    let mut s = Service::start(&g, &[]);
    let out = g.run(&["want", "slow/1", "--sla", "1s"]);
    assert_code(&out, 0);
    let id = out.stdout.split_whitespace().next().unwrap().to_string();
    let first = hook.next(Duration::from_secs(30));
    let retry = hook.next(Duration::from_secs(30));
    for r in [&first, &retry] {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hook"));
        assert_eq!(r.body["kind"], "sla_missed", "{}", r.body);
        assert_eq!(r.body["want_id"], id.as_str());
        assert_eq!(r.body["partition_ref"], "slow/1");
        assert!(
            r.body["deadline"].as_str().unwrap().ends_with('Z'),
            "{}",
            r.body
        );
        let cause = r.body["root_cause"].as_str().unwrap();
        assert!(
            cause.contains("`slow/1`") && cause.contains("being built"),
            "{cause}"
        );
    }
    // The SLA miss is in the log once.
    let show = g.run(&["wants", "show", &id]);
    assert_eq!(
        show.stdout.matches("WANT_SLA_MISSED").count(),
        1,
        "{}",
        show.stdout
    );
    // Let the job finish: satisfied late, and said so.
    g.write("go", "");
    let late = hook.next(Duration::from_secs(30));
    assert_eq!(late.body["kind"], "satisfied_late", "{}", late.body);
    wait_for("the want to be satisfied", Duration::from_secs(10), || {
        wants(&g, &[])
            .get(&id)
            .is_some_and(|(_, s)| s == "WANT_SATISFIED")
    });
    assert_eq!(s.signal_and_wait("TERM"), 0);
    assert!(hook.pending().is_empty());
}

#[test]
fn a_dead_webhook_and_a_failing_command_never_block_the_reconciler() {
    // Nothing listens on the webhook's port; the command fails after reading its input.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = slow_graph(&format!(
        "webhook = \"http://127.0.0.1:{port}/hook\"\ncommand = [\"sh\", \"-c\", \"cat >> notified.jsonl; echo >> notified.jsonl; exit 3\"]\ntimeout = \"1s\""
    ));
    g.write("go", "");
    let mut s = Service::start(&g, &[]);
    // Already late when created: the miss is noticed at once, then it is built anyway.
    assert_code(&g.run(&["want", "slow/1", "--sla", "0s"]), 0);
    wait_for("the want to be satisfied", Duration::from_secs(30), || {
        wants(&g, &[]).values().all(|(_, s)| s == "WANT_SATISFIED")
    });
    // The command got the notification on stdin, and was retried after failing.
    wait_for("the command's retries", Duration::from_secs(30), || {
        std::fs::read_to_string(g.path().join("notified.jsonl"))
            .unwrap_or_default()
            .matches("sla_missed")
            .count()
            >= 2
    });
    assert_eq!(s.signal_and_wait("TERM"), 0);
    let err = s.stderr();
    assert!(err.contains("notification not delivered"), "{err}");
}
