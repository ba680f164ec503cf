//! Remote jobs (`entrypoint = "grpc://host:port"`, the example job server of
//! `databuild-service`) in a graph with local jobs; a remote `[lookup]` (a `databuild
//! serve` answering `GraphLookup`); and remote job servers that are down, hang or answer
//! garbage.

use databuild_service::example_job::{self, ExampleJob, Fault};

use super::{example, runtime, Service};
use crate::util::TestGraph;

/// Starts an example job server producing `summary/<key>` from `raw/<key>` in `g`'s
/// `data/`; returns its `grpc://` URL. It runs as long as `rt`.
fn job_server(rt: &tokio::runtime::Runtime, g: &TestGraph, fault: Fault) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("grpc://{}", listener.local_addr().unwrap());
    let job = ExampleJob {
        prefix: "summary".into(),
        input_prefix: Some("raw".into()),
        data_dir: g.path().join("data"),
        fault,
    };
    rt.spawn(example_job::serve(job, listener, std::future::pending()));
    url
}

/// local `ingest` (raw/) -> remote `summarize` (summary/, with `timeout` as its
/// `timeout` and `config_timeout`) -> local `report` (report/).
fn mixed_graph(remote: &str, timeout: &str) -> TestGraph {
    let g = TestGraph::new(&format!(
        r#"[graph]
label = "mixed"
[[jobs]]
label = "ingest"
entrypoint = ["jobs/ingest"]
produces = ['raw/.*']
[[jobs]]
label = "summarize"
entrypoint = "{remote}"
produces = ['summary/.*']
timeout = "{timeout}"
config_timeout = "{timeout}"
[[jobs]]
label = "report"
entrypoint = ["jobs/report"]
produces = ['report/.*']
"#
    ));
    g.script(
        "ingest",
        r#"if [ "$1" = config ]; then shift; sep=''; printf '{"configs":['
  for r in "$@"; do printf '%s{"outputs":[{"str":"%s"}],"args":["%s"]}' "$sep" "$r" "$r"; sep=','; done
  printf ']}'; exit 0; fi
mkdir -p "data/$(dirname "$2")"; echo "raw data" > "data/$2.txt""#,
    );
    g.script(
        "report",
        r#"if [ "$1" = config ]; then shift; sep=''; printf '{"configs":['
  for r in "$@"; do k=${r#report/}
    printf '%s{"outputs":[{"str":"%s"}],"inputs":[{"depType":"MATERIALIZE","partitionRef":{"str":"summary/%s"}}],"args":["%s"]}' "$sep" "$r" "$k" "$k"; sep=','; done
  printf ']}'; exit 0; fi
mkdir -p data/report; cat "data/summary/$2.txt" > "data/report/$2.txt""#,
    );
    g
}

/// Rewrites the graph's remote entrypoint (the server's port is known only once it runs).
fn point_at(g: &TestGraph, url: &str) {
    let path = g.path().join("databuild.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let re = regex::Regex::new(r"grpc://[^\x22]+").unwrap();
    std::fs::write(path, re.replace(&text, url).as_ref()).unwrap();
}

#[test]
fn a_graph_mixing_local_and_remote_jobs_builds() {
    let rt = runtime();
    let g = mixed_graph("grpc://127.0.0.1:1", "10s");
    let url = job_server(&rt, &g, Fault::None);
    point_at(&g, &url);
    let out = g.run(&["build", "report/2025-01-07", "report/2025-01-08"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("built 6 partitions with 6 job runs"),
        "{}",
        out.stdout
    );
    let report = std::fs::read_to_string(g.path().join("data/report/2025-01-07.txt")).unwrap();
    assert!(
        report.starts_with("summary/2025-01-07 built by job run ")
            && report.ends_with("raw data\n"),
        "{report}"
    );
    let show = g.run(&["partitions", "show", "summary/2025-01-07"]);
    assert!(
        show.stdout.contains("job        summarize")
            && show.stdout.contains("input      raw/2025-01-07"),
        "{}",
        show.stdout
    );
    g.assert_bel_intact();
}

#[test]
fn a_graph_whose_lookup_is_a_remote_graph_lookup_server() {
    let served = example();
    let svc = Service::start(&served, &[]);
    let g = example();
    let toml = std::fs::read_to_string(g.path().join("databuild.toml")).unwrap();
    let with_lookup = format!("{toml}\n[lookup]\nentrypoint = \"grpc://{}\"\n", svc.addr);
    std::fs::write(g.path().join("databuild.toml"), with_lookup).unwrap();
    let out = g.run(&[
        "lookup",
        "reviews/daily/date=2025-01-07",
        "catalog/podcasts",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "reviews/daily/date=2025-01-07\tdaily_summary\ncatalog/podcasts\t(external: no job produces it)\n");
    let out = g.run(&["build", "reviews/daily/date=2025-01-07"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("built 4 partitions with 3 job runs"),
        "{}",
        out.stdout
    );
    g.assert_bel_intact();
}

#[test]
fn remote_job_servers_that_are_down_hang_or_answer_garbage_give_clear_errors() {
    let rt = runtime();
    let mut report = Vec::new();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cases = [
        ("down", None, 2),
        ("configure hangs", Some(Fault::HangConfigure), 2),
        (
            "configure answers garbage",
            Some(Fault::MalformedConfigure),
            2,
        ),
        ("execute hangs", Some(Fault::HangExecute), 1),
        ("execute fails", Some(Fault::FailExecute), 1),
    ];
    for (what, fault, code) in cases {
        let g = mixed_graph(&format!("grpc://{free}"), "300ms");
        let url = match fault {
            Some(f) => job_server(&rt, &g, f),
            None => format!("grpc://{free}"),
        };
        point_at(&g, &url);
        let before = g.assert_bel_intact();
        let out = g.run(&["build", "summary/2025-01-07"]);
        assert_eq!(out.code, code, "{what}: {}\n{}", out.stdout, out.stderr);
        let shown = if code == 1 { out.stdout } else { out.stderr };
        let addr = url.trim_start_matches("grpc://");
        let text = g.redact(&shown).replace(addr, "[ADDR]");
        report.push(format!("== {what}\n{}", text.trim_end()));
        assert!(
            g.assert_bel_intact() > before,
            "{what}: the failed run is recorded"
        );
    }
    insta::assert_snapshot!("remote_job_faults", report.join("\n"));
}

#[test]
fn a_remote_entrypoint_without_a_port_is_a_graph_file_error() {
    let g = TestGraph::new(
        "[graph]\nlabel = \"g\"\n[[jobs]]\nlabel = \"summarize\"\nentrypoint = [\"grpc://jobs.internal\", \"--verbose\"]\nproduces = ['s/.*']\n",
    );
    let out = g.run(&["build", "s/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("remote_entrypoint_with_arguments", g.redact(&out.stderr));
    g.write(
        "databuild.toml",
        "[graph]\nlabel = \"g\"\n[[jobs]]\nlabel = \"summarize\"\nentrypoint = \"grpc://jobs.internal\"\nproduces = ['s/.*']\n",
    );
    let out = g.run(&["build", "s/1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!("remote_entrypoint_without_port", g.redact(&out.stderr));
    g.assert_bel_intact();
}
