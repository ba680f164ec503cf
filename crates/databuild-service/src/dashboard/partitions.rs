//! Partition search (by ref prefix or `*` pattern and status, keyset-paginated so every
//! page is an index range) and a partition's page: status and why, manifest, lineage
//! picture, history, and the Build and Invalidate buttons.

use std::{collections::HashMap, fmt::Write as _, time::Instant};

use databuild_bel::PartitionFilter;
use databuild_proto::{DependencyType, PartitionManifest, PartitionStatus};

use super::{
    dag,
    html::{self, esc, Nav},
    PageError,
};
use crate::{http::Params, state::App};

/// Partitions per page.
pub const PAGE: usize = 50;

/// The statuses to search by: all but FORGOTTEN (forgotten partitions are not listed).
fn searchable_statuses() -> Vec<String> {
    PartitionStatus::short_names()
        .into_iter()
        .filter(|s| s != "forgotten")
        .collect()
}

/// `/partitions?q=..&status=..&after=..`: `q` is a prefix, or a pattern when it has `*`.
pub async fn search_page(app: &App, p: &Params) -> Result<(String, Nav, String), PageError> {
    let started = Instant::now();
    let text = p.get("q").unwrap_or("").trim().to_string();
    let status = p.get("status").unwrap_or("").to_ascii_lowercase();
    let statuses = if status.is_empty() {
        Vec::new()
    } else {
        p.statuses()?
    };
    let after = p.get("after").filter(|a| !a.is_empty()).map(str::to_string);
    let (prefix, pattern) = if text.contains('*') {
        (None, Some(text.clone()))
    } else {
        ((!text.is_empty()).then(|| text.clone()), None)
    };
    let rows = app
        .bel
        .list_partitions(&PartitionFilter {
            statuses,
            prefix,
            pattern,
            after: after.clone(),
            limit: PAGE + 1,
            ..Default::default()
        })
        .await?;
    let more = rows.len() > PAGE;
    let rows = &rows[..rows.len().min(PAGE)];
    let took = started.elapsed();

    let mut body = String::from("<h1>Partitions</h1>");
    let options: String = std::iter::once((String::new(), "any status".to_string()))
        .chain(searchable_statuses().into_iter().map(|s| (s.clone(), s)))
        .map(|(v, text)| {
            let sel = if v == status { " selected" } else { "" };
            format!("<option value=\"{v}\"{sel}>{text}</option>")
        })
        .collect();
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/partitions\" class=\"search\" role=\"search\">\
<input type=\"search\" name=\"q\" id=\"search-q\" value=\"{}\" placeholder=\"ref prefix, or a pattern with * (e.g. */date=2025-01-01)\" autofocus>\
<select name=\"status\" id=\"search-status\">{options}</select><button type=\"submit\">Search</button></form>",
        esc(&text)
    );
    if rows.is_empty() {
        body.push_str("<p class=\"muted\" id=\"no-results\">No partitions match.</p>");
    } else {
        body.push_str(
            "<table class=\"partitions\" id=\"results\"><thead><tr><th>partition</th><th>status</th>\
<th>updated (UTC)</th><th>graph run</th></tr></thead><tbody>",
        );
        for r in rows {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html::partition_link(&r.partition_ref),
                html::badge(r.status.as_str_name()),
                html::time(r.updated_micros),
                if r.run_id.is_empty() {
                    "<span class=\"muted\">registered</span>".to_string()
                } else {
                    html::run_link(&r.run_id)
                }
            );
        }
        body.push_str("</tbody></table>");
    }
    let base = format!(
        "/partitions?q={}&status={}",
        html::q(&text),
        html::q(&status)
    );
    body.push_str("<p class=\"pager\">");
    if after.is_some() {
        let _ = write!(body, "<a href=\"{base}\" id=\"first-page\">first page</a> ");
    }
    if more {
        let last = &rows[rows.len() - 1].partition_ref;
        let _ = write!(
            body,
            "<a href=\"{base}&after={}\" id=\"next-page\" rel=\"next\">next {PAGE} →</a>",
            html::q(last)
        );
    }
    let _ = write!(
        body,
        "</p><p class=\"muted timing\">{} shown; found in {:.1} ms.</p>",
        rows.len(),
        took.as_secs_f64() * 1000.0
    );
    Ok(("Partitions".to_string(), Nav::Partitions, body))
}

fn depth_of(p: &Params) -> Result<i32, PageError> {
    Ok(p.int("depth", 2, 10)? as i32)
}

/// `/partition?ref=..&depth=..`.
pub async fn partition_page(app: &App, p: &Params) -> Result<(String, Nav, String), PageError> {
    let Some(r) = p.get("ref").map(str::to_string) else {
        return Err(PageError::not_found(
            "Which partition?",
            "Name a partition: /partition?ref=<partition ref>, or search for one.",
        ));
    };
    databuild_proto::validate_ref(&r)?;
    let depth = depth_of(p)?;
    // The job that produces it, if any: only then can it be built from here.
    let producer = app
        .graph
        .lookup(std::slice::from_ref(&r))
        .await
        .ok()
        .and_then(|l| l.by_job.into_keys().next());
    let Some(latest) = app.bel.latest_partition_event(&r).await? else {
        let why = databuild_core::catalog::why(Some(&app.graph), app.bel.as_ref(), &r).await?;
        let extra = if producer.is_some() {
            build_form(&r, "Build it")
        } else {
            String::new()
        };
        return Err(PageError::not_found(
            "Partition not found",
            format!("The event log has no partition `{r}`. {why}"),
        )
        .with_extra(extra));
    };
    let status = PartitionStatus::try_from(latest.status).unwrap_or_default();
    let why = databuild_core::catalog::why(Some(&app.graph), app.bel.as_ref(), &r).await?;
    let mut body = String::new();
    let _ = write!(
        body,
        "<div id=\"live\" data-ref=\"{}\"></div><h1 class=\"ref-title\">{}</h1>\
<section data-live=\"status\"><p class=\"summary\"><span id=\"partition-status\">{}</span> <span class=\"why\" id=\"why\">{}</span></p>",
        esc(&r),
        esc(&r),
        html::badge(status.as_str_name()),
        esc(&why)
    );
    body.push_str("<div class=\"actions\">");
    match &producer {
        Some(job) => body.push_str(&build_form(&r, &format!("Build (job {job})"))),
        None => body.push_str(
            "<span class=\"muted\">No job of this graph produces it: external data, registered with `databuild partitions register`.</span> ",
        ),
    }
    if status == PartitionStatus::PartitionAvailable {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/actions/invalidate\" class=\"inline\">{}\
<input type=\"hidden\" name=\"ref\" value=\"{}\"><button type=\"submit\" id=\"invalidate\" class=\"danger\">Invalidate</button></form>",
            crate::security::session::csrf_field(),
            esc(&r)
        );
    }
    body.push_str("</div></section>");
    let history = app.bel.partition_history(&r).await?;
    let manifest = history.iter().rev().find_map(|e| match &e.event {
        databuild_bel::Event::Partition(p) => p.manifest.as_ref().map(|m| (&p.job_run_id, m)),
        databuild_bel::Event::Run(_)
        | databuild_bel::Event::Want(_)
        | databuild_bel::Event::Backfill(_) => None,
    });
    body.push_str(&manifest_section(manifest));
    body.push_str(&lineage_section(app, &r, depth).await?);
    body.push_str(&history_section(&history));
    Ok((r.clone(), Nav::Partitions, body))
}

fn build_form(r: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/actions/build\" class=\"inline\">{}\
<input type=\"hidden\" name=\"refs\" value=\"{}\"><button type=\"submit\" id=\"build\">{}</button></form>",
        crate::security::session::csrf_field(),
        esc(r),
        esc(label)
    )
}

fn manifest_section(m: Option<(&String, &PartitionManifest)>) -> String {
    let mut out =
        String::from("<section data-live=\"manifest\"><h2>Manifest of the latest build</h2>");
    let Some((job_run, m)) = m else {
        out.push_str(
            "<p class=\"muted\">Not built yet (or registered as external data).</p></section>",
        );
        return out;
    };
    let job = m
        .task
        .as_ref()
        .and_then(|t| t.job.as_ref())
        .map_or("", |j| j.label.as_str());
    if job.is_empty() && job_run.is_empty() {
        out.push_str("<p class=\"muted\">Registered as external data: no job of this graph built it.</p></section>");
        return out;
    }
    let start = m
        .start_time
        .as_ref()
        .map_or(0, databuild_proto::timestamp_micros);
    let end = m
        .end_time
        .as_ref()
        .map_or(0, databuild_proto::timestamp_micros);
    let _ = write!(
        out,
        "<table class=\"kv\"><tr><th>job</th><td>{}</td></tr><tr><th>job run</th><td>{}</td></tr>\
<tr><th>ran</th><td>{} UTC, took {}</td></tr><tr><th>outputs</th><td>{}</td></tr><tr><th>inputs</th><td>{}</td></tr></table></section>",
        esc(job),
        if job_run.is_empty() {
            "–".to_string()
        } else {
            format!(
                "<a href=\"{}\">{}</a>",
                html::job_run_url(job_run),
                esc(html::short_id(job_run))
            )
        },
        html::time(start),
        html::duration(end - start),
        m.outputs
            .iter()
            .map(|o| html::partition_link(&o.str))
            .collect::<Vec<_>>()
            .join(", "),
        {
            let inputs: Vec<String> = m
                .inputs
                .iter()
                .flat_map(|i| i.outputs.iter())
                .map(|o| html::partition_link(&o.str))
                .collect();
            if inputs.is_empty() {
                "none".to_string()
            } else {
                inputs.join(", ")
            }
        }
    );
    out
}

async fn lineage_section(app: &App, r: &str, depth: i32) -> Result<String, PageError> {
    let g = databuild_core::catalog::dependency_graph(app.bel.as_ref(), r, depth).await?;
    let status: HashMap<String, PartitionStatus> = g
        .nodes
        .iter()
        .filter_map(|n| {
            Some((
                n.partition_ref.as_ref()?.str.clone(),
                PartitionStatus::try_from(n.status).unwrap_or_default(),
            ))
        })
        .collect();
    let refs: Vec<String> = g
        .nodes
        .iter()
        .filter_map(|n| Some(n.partition_ref.as_ref()?.str.clone()))
        .collect();
    let mut out = format!(
        "<section data-live=\"lineage\"><h2>Lineage</h2><p class=\"depth\">{} hops each way: ",
        depth
    );
    for d in 1..=5 {
        let _ = write!(
            out,
            "<a href=\"{}&depth={d}\"{}>{d}</a> ",
            html::partition_url(r),
            if d == depth { " class=\"here\"" } else { "" }
        );
    }
    out.push_str("</p>");
    if !g
        .edges
        .iter()
        .any(|e| e.r#type == DependencyType::DependsOn as i32)
    {
        out.push_str("<p class=\"muted\">No recorded upstream or downstream partitions (lineage is recorded when a job builds a partition from MATERIALIZE inputs).</p></section>");
        return Ok(out);
    }
    let nodes: Vec<dag::Node> = refs
        .iter()
        .map(|n| {
            let s = status.get(n).copied().unwrap_or_default();
            let word = html::status_word(s.as_str_name()).to_ascii_lowercase();
            dag::Node {
                id: n.clone(),
                title: n.clone(),
                subtitle: word.clone(),
                status: word,
                href: html::partition_url(n),
                tooltip: n.clone(),
                data: vec![("ref", n.clone())],
                focus: n == r,
            }
        })
        .collect();
    // DEPENDS_ON edges point from the downstream partition to its input; the picture flows
    // from inputs (left) to what was built from them (right).
    let edges: Vec<(String, String)> = g
        .edges
        .iter()
        .filter(|e| e.r#type == DependencyType::DependsOn as i32)
        .filter_map(|e| {
            Some((
                e.target.as_ref()?.str.clone(),
                e.source.as_ref()?.str.clone(),
            ))
        })
        .collect();
    match dag::svg(&nodes, &edges) {
        Some(svg) => {
            let _ = write!(out, "<div class=\"dag-wrap\" id=\"lineage\">{svg}</div>");
        }
        None => {
            out.push_str("<p class=\"muted\">Too many partitions to draw; choose fewer hops.</p>")
        }
    }
    out.push_str("</section>");
    Ok(out)
}

/// Events shown in a partition's history (newest first).
const HISTORY_ROWS: usize = 200;

fn history_section(events: &[databuild_bel::LoggedEvent]) -> String {
    let mut out = String::from(
        "<section data-live=\"history\"><h2>History</h2><table class=\"history\"><thead><tr><th>time (UTC)</th>\
<th>status</th><th>graph run</th><th>job run</th><th>detail</th></tr></thead><tbody>",
    );
    for e in events.iter().rev().take(HISTORY_ROWS) {
        let databuild_bel::Event::Partition(p) = &e.event else {
            continue;
        };
        let status = PartitionStatus::try_from(p.status).unwrap_or_default();
        let mut detail = esc(&p.failure_reason);
        if !p.delegated_to_run_id.is_empty() {
            detail = format!("waited for run {}", html::run_link(&p.delegated_to_run_id));
        }
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html::time(e.event.timestamp_micros()),
            html::badge(status.as_str_name()),
            if p.job_graph_run_id.is_empty() {
                String::new()
            } else {
                html::run_link(&p.job_graph_run_id)
            },
            if p.job_run_id.is_empty() {
                String::new()
            } else {
                format!(
                    "<a href=\"{}\">{}</a>",
                    html::job_run_url(&p.job_run_id),
                    esc(html::short_id(&p.job_run_id))
                )
            },
            detail
        );
    }
    out.push_str("</tbody></table>");
    if events.len() > HISTORY_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">The newest {HISTORY_ROWS} of {} events.</p>",
            events.len()
        );
    }
    out.push_str("</section>");
    out
}
