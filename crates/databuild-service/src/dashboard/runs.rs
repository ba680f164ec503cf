//! A graph run's page (its job graph as a picture coloured by status, delegations, a
//! timeline of job runs) and a job run's page (its config and log).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use databuild_bel::{Event, LoggedEvent};
use databuild_proto::{
    DepType, GraphRequestEvent, JobGraph, JobGraphRunStatus, JobRunStatus, PartitionStatus,
};

use super::{
    dag,
    html::{self, esc, Nav},
    PageError,
};
use crate::state::App;

/// One job run as the run's events tell it.
#[derive(Debug, Default)]
struct JobRunView {
    job_run_id: String,
    label: String,
    outputs: Vec<String>,
    status: i32,
    scheduled: i64,
    started: Option<i64>,
    ended: Option<i64>,
}

/// What a graph run's events say.
#[derive(Debug, Default)]
struct RunView {
    label: String,
    status: i32,
    started: i64,
    ended: Option<i64>,
    graph: Option<JobGraph>,
    /// What GRAPH_STARTED says was asked for.
    request: Option<GraphRequestEvent>,
    requested: Vec<String>,
    jobs: Vec<JobRunView>,
    /// Delegated ref → the run it waited for.
    delegated: BTreeMap<String, String>,
    /// Latest status in the log (whichever run wrote it) of each delegated ref.
    delegated_now: HashMap<String, PartitionStatus>,
    /// Ref → its latest status in this run, with the failure reason.
    partitions: HashMap<String, (PartitionStatus, String)>,
    last_seq: i64,
}

fn read_run(events: &[LoggedEvent]) -> RunView {
    let mut v = RunView::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    for e in events {
        v.last_seq = e.seq;
        let ts = e.event.timestamp_micros();
        match &e.event {
            Event::Run(r) => {
                if let Some(g) = &r.graph_event {
                    if v.started == 0 {
                        v.started = ts;
                    }
                    v.status = g.status;
                    if let Some(l) = &g.label {
                        v.label.clone_from(&l.label);
                    }
                    if let Some(r) = &g.request {
                        v.request = Some(r.clone());
                    }
                    if let Some(a) = g.analysis.as_ref().and_then(|a| a.graph.clone()) {
                        v.graph = Some(a);
                    }
                    if matches!(
                        JobGraphRunStatus::try_from(g.status),
                        Ok(JobGraphRunStatus::GraphSuccess | JobGraphRunStatus::GraphFailed)
                    ) {
                        v.ended = Some(ts);
                    }
                }
                if let Some(j) = &r.job_event {
                    let i = *index.entry(j.job_run_id.clone()).or_insert_with(|| {
                        v.jobs.push(JobRunView {
                            job_run_id: j.job_run_id.clone(),
                            label: j.label_name().to_string(),
                            outputs: j.outputs.iter().map(|o| o.str.clone()).collect(),
                            scheduled: ts,
                            ..Default::default()
                        });
                        v.jobs.len() - 1
                    });
                    let job = &mut v.jobs[i];
                    job.status = j.status;
                    match JobRunStatus::try_from(j.status) {
                        Ok(JobRunStatus::JobRunning) => {
                            job.started.get_or_insert(ts);
                        }
                        Ok(JobRunStatus::JobSuccess | JobRunStatus::JobFailed) => {
                            job.ended = Some(ts);
                        }
                        _ => {}
                    }
                }
            }
            Event::Want(_) | Event::Backfill(_) => {}
            Event::Partition(p) => {
                let Some(r) = p.partition_ref.as_ref().map(|r| r.str.clone()) else {
                    continue;
                };
                let status = PartitionStatus::try_from(p.status).unwrap_or_default();
                if status == PartitionStatus::PartitionRequested && !v.requested.contains(&r) {
                    v.requested.push(r.clone());
                }
                if status == PartitionStatus::PartitionDelegated {
                    v.delegated.insert(r.clone(), p.delegated_to_run_id.clone());
                }
                v.partitions.insert(r, (status, p.failure_reason.clone()));
            }
        }
    }
    v
}

/// The CSS status class of a task: what its latest job run (or delegation) says.
fn task_status(v: &RunView, outputs: &[String], jobs_by_ref: &HashMap<&str, usize>) -> String {
    if let Some(&j) = outputs.iter().find_map(|o| jobs_by_ref.get(o.as_str())) {
        return job_class(v.jobs[j].status).to_string();
    }
    for o in outputs {
        if v.delegated.contains_key(o) {
            // The owner run wrote the outcome; this run adopted it.
            return match v.delegated_now.get(o) {
                Some(PartitionStatus::PartitionAvailable | PartitionStatus::PartitionStale) => {
                    "success"
                }
                Some(PartitionStatus::PartitionFailed) => "failed",
                _ => "delegated",
            }
            .to_string();
        }
        if let Some((PartitionStatus::PartitionFailed, _)) = v.partitions.get(o) {
            return "failed".to_string();
        }
    }
    "pending".to_string()
}

fn job_class(status: i32) -> &'static str {
    match JobRunStatus::try_from(status) {
        Ok(JobRunStatus::JobScheduled) => "scheduled",
        Ok(JobRunStatus::JobRunning) => "running",
        Ok(JobRunStatus::JobSuccess) => "success",
        Ok(JobRunStatus::JobFailed) => "failed",
        _ => "pending",
    }
}

fn job_status_name(status: i32) -> &'static str {
    JobRunStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

fn graph_status_name(status: i32) -> &'static str {
    JobGraphRunStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name())
}

/// The page of graph run `id`.
pub async fn run_page(app: &App, id: &str) -> Result<(String, Nav, String), PageError> {
    let Some(row) = app.bel.run(id).await? else {
        return Err(PageError::not_found(
            "Run not found",
            format!("There is no graph run `{id}` in the event log."),
        ));
    };
    let events = app.bel.run_events(id).await?;
    let mut v = read_run(&events);
    let delegated: Vec<String> = v.delegated.keys().cloned().collect();
    v.delegated_now = app
        .bel
        .partitions(&delegated)
        .await?
        .into_iter()
        .map(|p| (p.partition_ref, p.status))
        .collect();
    let mut body = String::new();
    let _ = write!(
        body,
        "<div id=\"live\" data-run=\"{}\" data-seq=\"{}\" data-finished=\"{}\"></div>\
<h1>Graph run <code>{}</code></h1>\
<p class=\"summary\" data-live=\"summary\"><span id=\"run-status\">{}</span> graph <b>{}</b> · started {} UTC · {}</p>",
        esc(id),
        v.last_seq,
        row.is_finished(),
        esc(id),
        html::badge(graph_status_name(v.status)),
        esc(&v.label),
        html::time(v.started),
        match v.ended {
            Some(end) => format!("took {}", html::duration(end - v.started)),
            None => "running".to_string(),
        },
    );
    if let Some(r) = &v.request {
        let _ = write!(
            body,
            "<p class=\"request\">asked by <b>{}</b> for {} partition{}{}{}</p>",
            esc(&r.client_id),
            r.requested,
            if r.requested == 1 { "" } else { "s" },
            if r.already_available > 0 {
                format!(", {} already available", r.already_available)
            } else {
                String::new()
            },
            if r.force {
                " (rebuilt even if available)"
            } else {
                ""
            },
        );
    }
    if !v.requested.is_empty() {
        body.push_str("<p class=\"requested\">requested: ");
        let shown: Vec<String> = v
            .requested
            .iter()
            .take(20)
            .map(|r| html::partition_link(r))
            .collect();
        body.push_str(&shown.join(", "));
        if v.requested.len() > 20 {
            let _ = write!(body, " and {} more", v.requested.len() - 20);
        }
        body.push_str("</p>");
    }
    if v.delegated.is_empty() {
        body.push_str("<div data-live=\"delegation\"></div>");
    } else {
        let mut by_run: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (r, owner) in &v.delegated {
            by_run.entry(owner.as_str()).or_default().push(r.as_str());
        }
        body.push_str("<section class=\"delegation\" data-live=\"delegation\"><h2>Waited for other runs</h2><ul>");
        for (owner, refs) in by_run {
            let links: Vec<String> = refs.iter().map(|r| html::partition_link(r)).collect();
            let _ = write!(
                body,
                "<li>run {} was already building {}</li>",
                html::run_link(owner),
                links.join(", ")
            );
        }
        body.push_str("</ul></section>");
    }
    body.push_str(&failures(&v));
    body.push_str(&graph_section(&v));
    body.push_str(&timeline(&v));
    Ok((format!("Run {}", html::short_id(id)), Nav::Runs, body))
}

/// Failed partitions shown on a run page at most.
const FAILURES_SHOWN: usize = 50;

/// The partitions this run failed, with their reasons.
fn failures(v: &RunView) -> String {
    let mut failed: Vec<(&String, &String)> = v
        .partitions
        .iter()
        .filter(|(_, (s, _))| *s == PartitionStatus::PartitionFailed)
        .map(|(r, (_, why))| (r, why))
        .collect();
    if failed.is_empty() {
        return "<div data-live=\"failures\"></div>".to_string();
    }
    failed.sort();
    let mut out = format!(
        "<section class=\"failures\" data-live=\"failures\"><h2>Failed partitions ({})</h2><ul>",
        failed.len()
    );
    for (r, why) in failed.iter().take(FAILURES_SHOWN) {
        let _ = write!(
            out,
            "<li>{}: <span class=\"reason\">{}</span></li>",
            html::partition_link(r),
            esc(why)
        );
    }
    out.push_str("</ul></section>");
    out
}

fn graph_section(v: &RunView) -> String {
    let mut out = String::from("<section data-live=\"graph\"><h2>Job graph</h2>");
    let Some(graph) = &v.graph else {
        out.push_str(
            "<p class=\"muted\">No job graph: not analyzed yet, or planning failed.</p></section>",
        );
        return out;
    };
    if graph.nodes.is_empty() {
        out.push_str("<p class=\"muted\">Nothing to build: every requested partition was already available.</p></section>");
        return out;
    }
    // The latest job run of each output.
    let mut jobs_by_ref: HashMap<&str, usize> = HashMap::new();
    for (i, j) in v.jobs.iter().enumerate() {
        for o in &j.outputs {
            jobs_by_ref.insert(o.as_str(), i);
        }
    }
    let mut producer: HashMap<String, String> = HashMap::new();
    let mut nodes = Vec::new();
    for task in &graph.nodes {
        let outputs: Vec<String> = task
            .config
            .as_ref()
            .map(|c| c.outputs.iter().map(|o| o.str.clone()).collect())
            .unwrap_or_default();
        let Some(first) = outputs.first().cloned() else {
            continue;
        };
        for o in &outputs {
            producer.insert(o.clone(), first.clone());
        }
        let label = task
            .job
            .as_ref()
            .map(|j| j.label.clone())
            .unwrap_or_default();
        let more = if outputs.len() > 1 {
            format!(" +{}", outputs.len() - 1)
        } else {
            String::new()
        };
        let status = task_status(v, &outputs, &jobs_by_ref);
        let href = outputs
            .iter()
            .find_map(|o| jobs_by_ref.get(o.as_str()))
            .map_or_else(
                || html::partition_url(&first),
                |&j| html::job_run_url(&v.jobs[j].job_run_id),
            );
        nodes.push(dag::Node {
            id: first.clone(),
            title: label.clone(),
            subtitle: format!("{first}{more}"),
            status,
            href,
            tooltip: format!("{label}\n{}", outputs.join("\n")),
            data: vec![
                (
                    "outputs",
                    serde_json::to_string(&outputs).unwrap_or_default(),
                ),
                ("label", label),
            ],
            focus: false,
        });
    }
    let mut edges = Vec::new();
    for task in &graph.nodes {
        let Some(cfg) = &task.config else { continue };
        let Some(me) = cfg.outputs.first().map(|o| o.str.clone()) else {
            continue;
        };
        for input in &cfg.inputs {
            if input.dep_type != DepType::Materialize as i32 {
                continue;
            }
            let Some(r) = input.partition_ref.as_ref() else {
                continue;
            };
            if let Some(p) = producer.get(&r.str) {
                edges.push((p.clone(), me.clone()));
            }
        }
    }
    match dag::svg(&nodes, &edges) {
        Some(svg) => {
            let _ =
                write!(
                out,
                "<ul class=\"legend\">{}</ul><div class=\"dag-wrap\" id=\"run-dag\">{svg}</div>",
                ["pending", "scheduled", "running", "success", "failed", "delegated"]
                    .iter()
                    .map(|s| format!("<li><span class=\"swatch s-{s}\"></span>{s}</li>"))
                    .collect::<String>()
            );
        }
        None => {
            let _ = write!(
                out,
                "<p class=\"muted\">{} tasks: too many to draw (at most {}); see the timeline below.</p>",
                nodes.len(),
                dag::MAX_NODES
            );
        }
    }
    out.push_str("</section>");
    out
}

/// Rows of the timeline shown at most.
const TIMELINE_ROWS: usize = 500;

fn timeline(v: &RunView) -> String {
    let mut out = String::from("<section data-live=\"timeline\"><h2>Job runs</h2>");
    if v.jobs.is_empty() {
        out.push_str("<p class=\"muted\">No job runs yet.</p></section>");
        return out;
    }
    let now = databuild_proto::timestamp_micros(&databuild_proto::now());
    let t0 = v
        .jobs
        .iter()
        .map(|j| j.scheduled)
        .min()
        .unwrap_or(v.started);
    let t1 = v
        .jobs
        .iter()
        .map(|j| j.ended.unwrap_or(now))
        .max()
        .unwrap_or(now)
        .max(t0 + 1);
    let span = (t1 - t0) as f64;
    out.push_str(
        "<table class=\"timeline\"><thead><tr><th>job</th><th>outputs</th><th>status</th>\
<th>start</th><th>duration</th><th class=\"bar-col\">timeline</th></tr></thead><tbody>",
    );
    for j in v.jobs.iter().take(TIMELINE_ROWS) {
        let start = j.started.unwrap_or(j.scheduled);
        let end = j.ended.unwrap_or(now);
        let left = (start - t0) as f64 / span * 100.0;
        let width = ((end - start) as f64 / span * 100.0).max(0.5);
        let first = j.outputs.first().map_or("", String::as_str);
        let more = if j.outputs.len() > 1 {
            format!(" +{}", j.outputs.len() - 1)
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr data-job-run=\"{id}\"><td><a href=\"{url}\">{label}</a></td><td>{out}{more}</td><td>{badge}</td>\
<td>+{offset}</td><td>{dur}</td><td class=\"bar-col\"><div class=\"bar s-{class}\" style=\"margin-left:{left:.2}%;width:{width:.2}%\"></div></td></tr>",
            id = esc(&j.job_run_id),
            url = html::job_run_url(&j.job_run_id),
            label = esc(&j.label),
            out = html::partition_link(first),
            badge = html::badge(job_status_name(j.status)),
            offset = html::duration(start - t0),
            dur = if j.ended.is_some() {
                html::duration(end - start)
            } else {
                format!("{} so far", html::duration(end - start))
            },
            class = job_class(j.status),
        );
    }
    out.push_str("</tbody></table>");
    if v.jobs.len() > TIMELINE_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">and {} more job runs.</p>",
            v.jobs.len() - TIMELINE_ROWS
        );
    }
    out.push_str("</section>");
    out
}

/// The page of job run `id`: what it built, its config, and its log.
pub async fn job_run_page(app: &App, id: &str) -> Result<(String, Nav, String), PageError> {
    let Some(row) = app.bel.job_run(id).await? else {
        return Err(PageError::not_found(
            "Job run not found",
            format!("There is no job run `{id}` in the event log."),
        ));
    };
    let events = app.bel.job_run_events(id).await?;
    // Its outputs, start and end, as the run page reads them; then its config and log.
    let v = read_run(&events);
    let last_seq = v.last_seq;
    let (outputs, started, ended) = v
        .jobs
        .into_iter()
        .next()
        .map_or((Vec::new(), None, None), |j| {
            (j.outputs, j.started, j.ended)
        });
    let mut config = None;
    let mut lines: Vec<String> = Vec::new();
    for j in events.iter().filter_map(|e| match &e.event {
        Event::Run(r) => r.job_event.as_ref(),
        Event::Partition(_) | Event::Want(_) | Event::Backfill(_) => None,
    }) {
        if let Some(c) = j.config.as_ref().and_then(|c| c.config.clone()) {
            config = Some(c);
        }
        if let Some(l) = &j.logs {
            lines.extend(l.logs.iter().cloned());
        }
    }
    let finished = matches!(
        row.status,
        JobRunStatus::JobSuccess | JobRunStatus::JobFailed
    );
    let mut body = String::new();
    let _ = write!(
        body,
        "<div id=\"live\" data-run=\"{}\" data-job-run=\"{}\" data-seq=\"{}\" data-finished=\"{}\"></div>\
<h1>Job run <code>{}</code></h1><p class=\"summary\"><span id=\"job-status\">{}</span> job <b>{}</b> · graph run {} · started {} UTC · {}</p>",
        esc(&row.run_id),
        esc(id),
        last_seq,
        finished,
        esc(id),
        html::badge(row.status.as_str_name()),
        esc(&row.label),
        html::run_link(&row.run_id),
        html::time(started.unwrap_or(row.scheduled_micros)),
        match (started, ended) {
            (Some(s), Some(e)) => format!("took {}", html::duration(e - s)),
            _ if finished => String::new(),
            _ => "running".to_string(),
        }
    );
    body.push_str("<section><h2>Outputs</h2><ul class=\"refs\">");
    for o in &outputs {
        let _ = write!(body, "<li>{}</li>", html::partition_link(o));
    }
    body.push_str("</ul></section>");
    if let Some(c) = &config {
        body.push_str("<section><h2>Config</h2><table class=\"kv\">");
        let inputs: Vec<String> = c
            .inputs
            .iter()
            .filter_map(|d| {
                let r = d.partition_ref.as_ref()?;
                let kind = if d.dep_type == DepType::Materialize as i32 {
                    "materialize"
                } else {
                    "query"
                };
                Some(format!(
                    "{} <span class=\"muted\">({kind})</span>",
                    html::partition_link(&r.str)
                ))
            })
            .collect();
        let _ = write!(
            body,
            "<tr><th>inputs</th><td>{}</td></tr><tr><th>args</th><td><code>{}</code></td></tr>",
            if inputs.is_empty() {
                "none".to_string()
            } else {
                inputs.join("<br>")
            },
            esc(&c.args.join(" "))
        );
        let mut env: Vec<_> = c.env.iter().collect();
        env.sort();
        for (k, val) in env {
            let _ = write!(
                body,
                "<tr><th>env</th><td><code>{}={}</code></td></tr>",
                esc(k),
                esc(val)
            );
        }
        body.push_str("</table></section>");
    }
    let _ = write!(
        body,
        "<section><h2>Log</h2><p class=\"muted\">The lines the event log keeps (the whole log is in the \
service's log directory).</p><pre class=\"log\" id=\"log\">{}</pre></section>",
        lines
            .iter()
            .map(|l| esc(l))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok((format!("Job run {}", html::short_id(id)), Nav::Runs, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_classes_cover_every_status() {
        assert_eq!(job_class(JobRunStatus::JobRunning as i32), "running");
        assert_eq!(job_class(JobRunStatus::JobSuccess as i32), "success");
        assert_eq!(job_class(JobRunStatus::JobFailed as i32), "failed");
        assert_eq!(job_class(99), "pending");
    }
}
