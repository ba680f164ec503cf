//! `runs list` and `runs show`: graph runs as the event log records them.

use anyhow::{bail, Result};
use databuild_bel::{Event, RunFilter};
use databuild_core::ExitKind;
use databuild_proto::{GraphRequestEvent, JobGraphRunStatus, JobRunStatus};
use databuild_service::wire::{WireRun, WireRuns};

use crate::{
    cli::{Cli, RunsCommand},
    context,
    output::{secs, timestamp},
    render,
};

/// What a run was asked for, in a few words: its first ref and how many more.
fn requested(r: Option<&GraphRequestEvent>) -> String {
    let Some(r) = r else {
        return "-".into();
    };
    let more = (r.requested - 1).max(0);
    match (r.first_ref.as_str(), more) {
        ("", _) => crate::output::count(r.requested.max(0) as usize, "partition"),
        (first, 0) => first.to_string(),
        (first, n) => format!("{first} +{n} more"),
    }
}

pub async fn runs(cli: &Cli, cmd: &RunsCommand) -> Result<ExitKind> {
    let bel = context::bel(cli, None).await?;
    match cmd {
        RunsCommand::List { limit } => {
            let runs = bel
                .log
                .list_runs(&RunFilter {
                    limit: *limit,
                    ..Default::default()
                })
                .await?;
            if cli.json {
                let resp = WireRuns {
                    runs: runs.iter().map(WireRun::from).collect(),
                };
                println!("{}", databuild_proto::to_json_pretty(&resp));
            } else {
                if !runs.is_empty() {
                    println!(
                        "{:<36} {:<24} {:<15} {:>8} {:<16} REQUESTED",
                        "GRAPH RUN", "STARTED", "STATUS", "TOOK", "GRAPH"
                    );
                }
                for r in &runs {
                    let took = std::time::Duration::from_micros(
                        (r.updated_micros - r.started_micros).max(0) as u64,
                    );
                    let request = bel.log.run_request(&r.run_id).await?;
                    println!(
                        "{:<36} {:<24} {:<15} {:>8} {:<16} {}",
                        r.run_id,
                        timestamp(r.started_micros),
                        r.status.as_str_name(),
                        secs(took),
                        r.label,
                        requested(request.as_ref())
                    );
                }
            }
        }
        RunsCommand::Show { run_id } => show(cli, &bel, run_id).await?,
    }
    Ok(ExitKind::Success)
}

async fn show(cli: &Cli, bel: &context::Bel, run_id: &str) -> Result<()> {
    let Some(run) = bel.log.run(run_id).await? else {
        bail!("no graph run `{run_id}`; see `databuild runs list`");
    };
    let events = bel.log.run_events(run_id).await?;
    let graph_events = || {
        events.iter().filter_map(|e| match &e.event {
            Event::Run(r) => r.graph_event.as_ref(),
            Event::Partition(_) | Event::Want(_) | Event::Backfill(_) => None,
        })
    };
    if cli.json {
        let doc = databuild_core::catalog::job_graph_run(&run.run_id, &events);
        println!("{}", databuild_proto::to_json_pretty(&doc));
        return Ok(());
    }
    let took =
        std::time::Duration::from_micros((run.updated_micros - run.started_micros).max(0) as u64);
    println!("graph run  {}", run.run_id);
    println!("graph      {}", run.label);
    println!("status     {}", run.status.as_str_name());
    println!("started    {}", timestamp(run.started_micros));
    println!("took       {}", secs(took));
    if let (Some(h), Some(p)) = (&run.host, run.pid) {
        println!("owner      pid {p} on {h}");
    }
    if let Some(r) = graph_events().find_map(|g| g.request.as_ref()) {
        println!("request    {}", render::request(r));
        if !r.first_ref.is_empty() {
            println!("requested  {}", requested(Some(r)));
        }
    }
    if let Some(f) = graph_events()
        .map(|g| g.failure_reason.as_str())
        .find(|f| !f.is_empty())
    {
        println!("reason     {f}");
    }
    if run.status != JobGraphRunStatus::GraphSuccess && run.status != JobGraphRunStatus::GraphFailed
    {
        println!("(still running)");
    }
    let jobs = bel.log.job_runs(run_id).await?;
    // The cluster job and the outputs of each job run, from its events.
    let mut cluster_jobs = std::collections::HashMap::new();
    let mut outputs = std::collections::HashMap::new();
    for e in &events {
        if let Some(c) = databuild_bel::cluster_job(&e.event) {
            cluster_jobs.insert(c.job_run_id, format!(" ({} job {})", c.executor, c.id));
        }
        if let Event::Run(r) = &e.event {
            if let Some(j) = r.job_event.as_ref().filter(|j| !j.outputs.is_empty()) {
                let refs: Vec<&str> = j.outputs.iter().map(|o| o.str.as_str()).collect();
                outputs.insert(j.job_run_id.as_str(), refs.join(" "));
            }
        }
    }
    println!("job runs   {}", jobs.len());
    for j in &jobs {
        let took =
            std::time::Duration::from_micros((j.updated_micros - j.scheduled_micros).max(0) as u64);
        let status = j.status.as_str_name();
        let mark = if j.status == JobRunStatus::JobSuccess {
            ""
        } else {
            " <--"
        };
        let cluster = cluster_jobs
            .get(j.job_run_id.as_str())
            .map_or("", String::as_str);
        let built = match outputs.get(j.job_run_id.as_str()) {
            Some(o) if j.status == JobRunStatus::JobSuccess => format!(": built {o}"),
            Some(o) => format!(": for {o}"),
            None => String::new(),
        };
        println!(
            "  {} {:<12} {:>8} {}{cluster}{built}{mark}",
            j.job_run_id,
            status,
            secs(took),
            j.label
        );
    }
    println!("events");
    for e in &events {
        println!("  {}", render::event_line(e));
    }
    Ok(())
}
