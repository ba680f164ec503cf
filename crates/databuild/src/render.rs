//! Rendering job graphs (text, JSON, DOT, Mermaid) and events (lines, JSON).

use std::{collections::HashMap, fmt::Write as _};

use databuild_bel::{Event, LoggedEvent};
use databuild_proto::{
    DepType, GraphRequestEvent, JobGraph, JobGraphRunStatus, JobRunStatus, PartitionStatus,
};

use crate::output::timestamp;

fn task_label(t: &databuild_proto::Task) -> &str {
    t.job.as_ref().map(|j| j.label.as_str()).unwrap_or("")
}

fn outputs(t: &databuild_proto::Task) -> Vec<&str> {
    t.config
        .iter()
        .flat_map(|c| c.outputs.iter().map(|o| o.str.as_str()))
        .collect()
}

fn inputs(t: &databuild_proto::Task) -> Vec<(&str, bool)> {
    t.config
        .iter()
        .flat_map(|c| c.inputs.iter())
        .filter_map(|d| {
            d.partition_ref
                .as_ref()
                .map(|r| (r.str.as_str(), d.dep_type == DepType::Materialize as i32))
        })
        .collect()
}

/// A readable listing of a job graph.
pub fn graph_text(g: &JobGraph) -> String {
    let mut out = String::new();
    let label = g.label.as_ref().map(|l| l.label.as_str()).unwrap_or("");
    let _ = writeln!(
        out,
        "graph `{label}`: {} for {}",
        crate::output::count(g.nodes.len(), "task"),
        crate::output::count(g.outputs.len(), "requested partition")
    );
    for t in &g.nodes {
        let _ = writeln!(out, "{} -> {}", task_label(t), outputs(t).join(" "));
        for (r, mat) in inputs(t) {
            let _ = writeln!(
                out,
                "    {} {r}",
                if mat { "materialize" } else { "query      " }
            );
        }
    }
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one box per task, ellipses for inputs from outside the graph, dashed
/// edges for QUERY inputs.
pub fn graph_dot(g: &JobGraph) -> String {
    let producer = producers(g);
    let mut out = String::from(
        "digraph databuild {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    let mut external: Vec<&str> = Vec::new();
    for (i, t) in g.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "  t{i} [label=\"{}\\n{}\"];",
            dot_escape(task_label(t)),
            outputs(t)
                .into_iter()
                .map(dot_escape)
                .collect::<Vec<_>>()
                .join("\\n")
        );
    }
    for (i, t) in g.nodes.iter().enumerate() {
        for (r, mat) in inputs(t) {
            let style = if mat {
                ""
            } else {
                " [style=dashed, label=\"query\"]"
            };
            match producer.get(r) {
                Some(p) => {
                    let _ = writeln!(out, "  t{p} -> t{i}{style};");
                }
                None => {
                    let idx = external.iter().position(|e| *e == r).unwrap_or_else(|| {
                        external.push(r);
                        external.len() - 1
                    });
                    let _ = writeln!(out, "  x{idx} -> t{i}{style};");
                }
            }
        }
    }
    for (idx, r) in external.iter().enumerate() {
        let _ = writeln!(
            out,
            "  x{idx} [shape=ellipse, label=\"{}\"];",
            dot_escape(r)
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A Mermaid flowchart of the job graph.
pub fn graph_mermaid(g: &JobGraph) -> String {
    let producer = producers(g);
    let mut out = String::from("flowchart LR\n");
    let mut external: Vec<&str> = Vec::new();
    for (i, t) in g.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "  t{i}[\"{}<br/>{}\"]",
            mermaid_escape(task_label(t)),
            mermaid_escape(&outputs(t).join("<br/>"))
        );
    }
    for (i, t) in g.nodes.iter().enumerate() {
        for (r, mat) in inputs(t) {
            let arrow = if mat { "-->" } else { "-.->|query|" };
            match producer.get(r) {
                Some(p) => {
                    let _ = writeln!(out, "  t{p} {arrow} t{i}");
                }
                None => {
                    let idx = external.iter().position(|e| *e == r).unwrap_or_else(|| {
                        external.push(r);
                        let _ = writeln!(
                            out,
                            "  x{}([\"{}\"])",
                            external.len() - 1,
                            mermaid_escape(r)
                        );
                        external.len() - 1
                    });
                    let _ = writeln!(out, "  x{idx} {arrow} t{i}");
                }
            }
        }
    }
    out
}

fn producers(g: &JobGraph) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for (i, t) in g.nodes.iter().enumerate() {
        for o in outputs(t) {
            m.insert(o, i);
        }
    }
    m
}

/// What a graph run was asked for: "3 partitions requested, 2 already available".
pub fn request(r: &GraphRequestEvent) -> String {
    let requested = crate::output::count(r.requested.max(0) as usize, "partition");
    let force = if r.force { " with --force" } else { "" };
    format!(
        "{requested} requested{force}, {} already available",
        r.already_available
    )
}

/// One line per event: position, time, what changed.
pub fn event_line(e: &LoggedEvent) -> String {
    match &e.event {
        Event::Want(w) => want_event_line(Some(e.seq), w),
        Event::Backfill(b) => {
            let ts = b
                .timestamp
                .as_ref()
                .map(databuild_proto::timestamp_micros)
                .unwrap_or(0);
            let status = databuild_proto::BackfillStatus::try_from(b.status)
                .map(|s| s.as_str_name())
                .unwrap_or("?");
            let mut line = format!(
                "#{} {} backfill {} {status}",
                e.seq,
                timestamp(ts),
                b.backfill_id
            );
            if !b.name.is_empty() {
                let _ = write!(line, " `{}` ({} partitions)", b.name, b.total);
            }
            if !b.reason.is_empty() {
                let _ = write!(line, ": {}", b.reason);
            }
            line
        }
        Event::Run(r) => {
            let ts = r
                .timestamp
                .as_ref()
                .map(databuild_proto::timestamp_micros)
                .unwrap_or(0);
            if let Some(g) = &r.graph_event {
                let status = JobGraphRunStatus::try_from(g.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?");
                let tasks = g
                    .analysis
                    .as_ref()
                    .and_then(|a| a.graph.as_ref())
                    .map(|g| format!(" ({} tasks)", g.nodes.len()))
                    .or_else(|| g.request.as_ref().map(|r| format!(" ({})", request(r))))
                    .or_else(|| {
                        (!g.failure_reason.is_empty()).then(|| format!(": {}", g.failure_reason))
                    })
                    .unwrap_or_default();
                format!(
                    "#{} {} graph run {} {status}{tasks}",
                    e.seq,
                    timestamp(ts),
                    g.job_graph_run_id
                )
            } else if let Some(j) = &r.job_event {
                let status = JobRunStatus::try_from(j.status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("?");
                let label = j.label.as_ref().map(|l| l.label.as_str()).unwrap_or("");
                let mut line = format!(
                    "#{} {} job {label} {status} [job run {}]",
                    e.seq,
                    timestamp(ts),
                    j.job_run_id
                );
                if let Some(logs) = &j.logs {
                    for l in &logs.logs {
                        let _ = write!(line, "\n      | {l}");
                    }
                }
                line
            } else {
                format!("#{} {} (empty run event)", e.seq, timestamp(ts))
            }
        }
        Event::Partition(p) => {
            let ts = p
                .timestamp
                .as_ref()
                .map(databuild_proto::timestamp_micros)
                .unwrap_or(0);
            let status = PartitionStatus::try_from(p.status)
                .map(|s| s.as_str_name())
                .unwrap_or("?");
            let r = p
                .partition_ref
                .as_ref()
                .map(|r| r.str.as_str())
                .unwrap_or("");
            let mut line = format!("#{} {} partition {r} {status}", e.seq, timestamp(ts));
            if !p.job_graph_run_id.is_empty() {
                let _ = write!(line, " [graph run {}]", p.job_graph_run_id);
            }
            if let Some(c) = databuild_bel::cluster_job(&e.event) {
                let _ = write!(line, " [{} job {}]", c.executor, c.id);
            }
            if !p.failure_reason.is_empty() {
                let _ = write!(line, ": {}", p.failure_reason);
            }
            line
        }
    }
}

fn node_status(g: &databuild_proto::DependencyGraph, r: &str) -> &'static str {
    g.nodes
        .iter()
        .find(|n| n.partition_ref.as_ref().is_some_and(|p| p.str == r))
        .and_then(|n| PartitionStatus::try_from(n.status).ok())
        .map_or("UNKNOWN", |s| s.short_name())
}

fn edge_refs(e: &databuild_proto::DependencyEdge) -> (&str, &str) {
    (
        e.source.as_ref().map(|r| r.str.as_str()).unwrap_or(""),
        e.target.as_ref().map(|r| r.str.as_str()).unwrap_or(""),
    )
}

/// A dependency graph as indented text: what the root was built from, and what was
/// built from it.
pub fn deps_text(g: &databuild_proto::DependencyGraph) -> String {
    let root = g.root.as_ref().map(|r| r.str.as_str()).unwrap_or("");
    let mut out = format!("{root} [{}]\n", node_status(g, root));
    let depends = databuild_proto::DependencyType::DependsOn as i32;
    for (title, upstream) in [
        ("built from (upstream)", true),
        ("used by (downstream)", false),
    ] {
        let _ = writeln!(out, "{title}:");
        let mut level = vec![root.to_string()];
        let mut seen = std::collections::HashSet::from([root.to_string()]);
        let mut indent = 1;
        while !level.is_empty() {
            let mut next = Vec::new();
            for from in &level {
                for e in g.edges.iter().filter(|e| e.r#type == depends) {
                    let (s, t) = edge_refs(e);
                    let hop = if upstream {
                        (s == from).then_some(t)
                    } else {
                        (t == from).then_some(s)
                    };
                    if let Some(h) = hop.filter(|h| seen.insert(h.to_string())) {
                        let _ = writeln!(out, "{}{h} [{}]", "  ".repeat(indent), node_status(g, h));
                        next.push(h.to_string());
                    }
                }
            }
            level = next;
            indent += 1;
        }
    }
    for e in g.edges.iter().filter(|e| e.r#type != depends) {
        let _ = writeln!(out, "produced together with: {}", edge_refs(e).1);
    }
    out
}

/// A dependency graph as numbered nodes `(id, ref, status)` and edges
/// `(from, to, lineage)`: lineage edges point from input to output; the others join
/// outputs of one job run.
#[allow(clippy::type_complexity)] // two plain lists, used right away by the renderers
fn deps_drawing(
    g: &databuild_proto::DependencyGraph,
) -> (Vec<(usize, &str, &'static str)>, Vec<(usize, usize, bool)>) {
    let nodes: Vec<(usize, &str, &'static str)> = g
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.partition_ref.as_ref().map(|r| (i, r.str.as_str())))
        .map(|(i, r)| (i, r, node_status(g, r)))
        .collect();
    let ids: HashMap<&str, usize> = nodes.iter().map(|(i, r, _)| (*r, *i)).collect();
    let edges = g
        .edges
        .iter()
        .filter_map(|e| {
            let (s, t) = edge_refs(e);
            let (s, t) = (*ids.get(s)?, *ids.get(t)?);
            Some(
                if e.r#type == databuild_proto::DependencyType::DependsOn as i32 {
                    (t, s, true)
                } else {
                    (s, t, false)
                },
            )
        })
        .collect();
    (nodes, edges)
}

/// A dependency graph in Graphviz DOT (edges point from input to output).
pub fn deps_dot(g: &databuild_proto::DependencyGraph) -> String {
    let mut out = String::from(
        "digraph deps {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    let (nodes, edges) = deps_drawing(g);
    for (i, r, status) in nodes {
        let _ = writeln!(out, "  p{i} [label=\"{}\\n{status}\"];", dot_escape(r));
    }
    for (a, b, lineage) in edges {
        let style = if lineage {
            ""
        } else {
            " [style=dotted, arrowhead=none]"
        };
        let _ = writeln!(out, "  p{a} -> p{b}{style};");
    }
    out.push_str("}\n");
    out
}

/// A dependency graph as a Mermaid flowchart.
pub fn deps_mermaid(g: &databuild_proto::DependencyGraph) -> String {
    let mut out = String::from("flowchart LR\n");
    let (nodes, edges) = deps_drawing(g);
    for (i, r, status) in nodes {
        let _ = writeln!(out, "  p{i}[\"{}<br/>{status}\"]", mermaid_escape(r));
    }
    for (a, b, lineage) in edges {
        let arrow = if lineage { "-->" } else { "-.-" };
        let _ = writeln!(out, "  p{a} {arrow} p{b}");
    }
    out
}

/// A failure cause in words for a terminal (`timeout`, `owner run lost`); `None` when
/// unknown.
pub(crate) fn cause_word(cause: databuild_proto::FailureCause) -> Option<String> {
    (cause != databuild_proto::FailureCause::Unknown).then(|| {
        cause
            .as_str_name()
            .trim_start_matches("FAILURE_CAUSE_")
            .to_ascii_lowercase()
            .replace('_', " ")
    })
}

/// One line for a want event: position, time, want, what happened and why.
pub fn want_event_line(seq: Option<i64>, w: &databuild_proto::WantEvent) -> String {
    let ts = w
        .timestamp
        .as_ref()
        .map(databuild_proto::timestamp_micros)
        .unwrap_or(0);
    let status = databuild_proto::WantStatus::try_from(w.status)
        .map(|s| s.as_str_name())
        .unwrap_or("?");
    let r = w
        .partition_ref
        .as_ref()
        .map(|r| r.str.as_str())
        .unwrap_or("");
    let mut line = match seq {
        Some(seq) => format!("#{seq} {} want {} {status} {r}", timestamp(ts), w.want_id),
        None => format!("{} want {} {status} {r}", timestamp(ts), w.want_id),
    };
    if w.late {
        line.push_str(" (late)");
    }
    if !w.job_graph_run_id.is_empty() {
        let _ = write!(line, " [graph run {}]", w.job_graph_run_id);
    }
    if !w.reason.is_empty() {
        let _ = write!(line, ": {}", w.reason);
    }
    line
}

/// `analyze --estimate` as lines of text.
pub fn estimate_text(e: &databuild_core::estimate::Estimate) -> String {
    use crate::output::{count, secs};
    let micros = std::time::Duration::from_micros;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "wanted: {}, {} already available",
        count(e.wanted, "partition"),
        e.available
    );
    let _ = writeln!(
        out,
        "plan: {} building {}",
        count(e.job_runs, "job run"),
        count(e.partitions_built, "partition")
    );
    let medians: Vec<String> = e
        .p50_micros
        .iter()
        .map(|(job, d)| format!("{job} {}", secs(micros(*d))))
        .collect();
    let _ = writeln!(
        out,
        "job time: {}{}",
        secs(micros(e.job_time_micros)),
        if medians.is_empty() {
            String::new()
        } else {
            format!(" (median job run: {})", medians.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "wall time at -j {}: {}",
        e.parallelism,
        secs(micros(e.wall_time_micros))
    );
    let _ = writeln!(
        out,
        "critical path: {} over {}",
        secs(micros(e.critical_path_micros)),
        count(e.critical_path_tasks, "job run")
    );
    for n in &e.no_history {
        let _ = writeln!(
            out,
            "no history for job `{}` ({})",
            n.job,
            count(n.job_runs, "run")
        );
    }
    if e.partial {
        let _ = writeln!(
            out,
            "partial estimate: the times leave out the job runs of jobs without history"
        );
    }
    out
}
