//! The commands that ask a service (`--remote URL`) to do work: `build`, `analyze`,
//! `lookup`, `execute`, `request`, and the wants (`want`, `unwant`, `wants list|show`). Read commands need nothing here: they read the
//! service's log through `context::bel` and print it as they print a local one.

use std::io::Read as _;

use anyhow::{bail, Result};
use databuild_bel::WantRow;
use databuild_core::{ExitKind, RunOutcome};
use databuild_proto::{
    CancelWantsRequest, CancelWantsResponse, CreateWantsResponse, GetWantResponse,
    GraphAnalyzeRequest, GraphAnalyzeResponse, GraphBuildRequest, GraphExecuteResponse,
    GraphLookupRequest, GraphLookupResponse, JobGraph, ListWantsResponse, PartitionRef,
    RequestOptions, RequestPartitionRequest, RequestPartitionResponse, WantEvent,
};
use databuild_service::{
    remote::{query, segment, Client, ClientError},
    wire::{WireBuild, WireEvent, WireSubmitted, WireWantRequest},
};

use crate::{
    cli::{Cli, Command, Format, WantsCommand},
    render,
};

fn refs(v: &[String]) -> Vec<PartitionRef> {
    v.iter().map(|r| PartitionRef::new(r.clone())).collect()
}

/// Runs the command against the service if it is one that asks for work; `None` for the
/// rest.
pub async fn run(cli: &Cli, client: &Client) -> Result<Option<ExitKind>> {
    Ok(Some(match &cli.command {
        Command::Build(args) => {
            let all = super::refs_and_file(&args.refs, args.from_file.as_deref(), args.syntax)?;
            build(cli, client, &all, args.force).await?
        }
        Command::Analyze {
            refs: r,
            from_file,
            syntax,
            format,
            force,
            estimate,
            jobs: _,
        } => {
            if *force {
                bail!("`analyze --force` is not available with `--remote`; the service plans like `AnalyzeGraph`, without force");
            }
            if *estimate {
                bail!("`analyze --estimate` is not available with `--remote`; run it where the graph file and the event log are");
            }
            let all = super::refs_and_file(r, from_file.as_deref(), *syntax)?;
            let resp: GraphAnalyzeResponse = client
                .post(
                    "/api/v1/analyze",
                    &GraphAnalyzeRequest {
                        outputs: refs(&all),
                    },
                )
                .await?;
            let g = resp.graph.unwrap_or_default();
            match if cli.json { Format::Json } else { *format } {
                Format::Json => println!("{}", databuild_proto::to_json_pretty(&g)),
                Format::Text => print!("{}", render::graph_text(&g)),
                Format::Dot => print!("{}", render::graph_dot(&g)),
                Format::Mermaid => print!("{}", render::graph_mermaid(&g)),
            }
            ExitKind::Success
        }
        Command::Lookup {
            refs: r,
            from_file,
            syntax,
        } => {
            let all = super::refs_and_file(r, from_file.as_deref(), *syntax)?;
            let resp: GraphLookupResponse = client
                .post(
                    "/api/v1/lookup",
                    &GraphLookupRequest {
                        outputs: refs(&all),
                    },
                )
                .await?;
            if cli.json {
                println!("{}", databuild_proto::to_json_pretty(&resp));
            } else {
                let mut found = std::collections::HashSet::new();
                for t in &resp.task_refs {
                    let label = t.job.as_ref().map_or("", |j| j.label.as_str());
                    for o in &t.outputs {
                        found.insert(o.str.clone());
                        println!("{}\t{label}", o.str);
                    }
                }
                for x in all.iter().filter(|x| !found.contains(*x)) {
                    println!("{x}\t(external: no job produces it)");
                }
            }
            ExitKind::Success
        }
        Command::Execute(_) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            let job_graph: JobGraph = databuild_proto::from_json(&text)
                .map_err(|e| anyhow::anyhow!("stdin is not a `JobGraph` JSON document: {e}"))?;
            match client
                .post::<_, GraphExecuteResponse>("/api/v1/execute", &job_graph)
                .await
            {
                Ok(resp) => {
                    if cli.json {
                        println!("{}", databuild_proto::to_json_pretty(&resp));
                    } else {
                        println!("executed: {} job runs succeeded", resp.manifests.len());
                    }
                    ExitKind::Success
                }
                Err(ClientError::Api { code, message, .. }) if code == "build_failed" => {
                    println!("build failed: {message}");
                    ExitKind::BuildFailed
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Request {
            partition_ref,
            client_id,
            no_delegation,
            timeout,
        } => {
            let req = RequestPartitionRequest {
                partition_ref: Some(PartitionRef::new(partition_ref.clone())),
                client_id: client_id.clone().unwrap_or_default(),
                options: Some(RequestOptions {
                    allow_delegation: !no_delegation,
                    timeout_seconds: timeout.as_secs().min(i32::MAX as u64) as i32,
                }),
            };
            let resp: RequestPartitionResponse =
                client.post("/api/v1/partitions/request", &req).await?;
            println!("{}", databuild_proto::to_json_pretty(&resp));
            ExitKind::Success
        }
        Command::Want {
            refs,
            from_file,
            syntax,
            ttl,
            sla,
        } => {
            let all = super::refs_and_file(refs, from_file.as_deref(), *syntax)?;
            // Whole seconds, in the graph file's duration syntax.
            let secs = |d: &Option<std::time::Duration>| {
                d.map(|d| format!("{}s", d.as_secs_f64().ceil() as u64))
                    .unwrap_or_default()
            };
            let resp: CreateWantsResponse = client
                .post(
                    "/api/v1/wants",
                    &WireWantRequest {
                        refs: all,
                        ttl: secs(ttl),
                        sla: secs(sla),
                    },
                )
                .await?;
            let rows: Vec<WantRow> = resp.wants.iter().map(WantRow::from_proto).collect();
            super::wants::print_wants(cli, &rows);
            if !cli.json {
                eprintln!(
                    "recorded {} want{} on {}; its reconciler builds them",
                    rows.len(),
                    if rows.len() == 1 { "" } else { "s" },
                    client.url()
                );
            }
            ExitKind::Success
        }
        Command::Unwant { wants } => {
            let resp: CancelWantsResponse = client
                .post(
                    "/api/v1/wants/cancel",
                    &CancelWantsRequest {
                        wants: wants.clone(),
                    },
                )
                .await?;
            let rows: Vec<WantRow> = resp.wants.iter().map(WantRow::from_proto).collect();
            super::wants::print_wants(cli, &rows);
            ExitKind::Success
        }
        Command::Wants(WantsCommand::List { status, limit }) => {
            let rows = list_wants(client, status, *limit).await?;
            super::wants::print_wants(cli, &rows);
            ExitKind::Success
        }
        Command::Wants(WantsCommand::Show { want_id }) => {
            let resp: GetWantResponse = client
                .get(&format!("/api/v1/wants/{}", segment(want_id)))
                .await?;
            let Some(w) = resp.want.as_ref() else {
                bail!("{} answered without the want `{want_id}`", client.url());
            };
            let events: Vec<(Option<i64>, WantEvent)> =
                resp.events.into_iter().map(|e| (None, e)).collect();
            super::wants::print_show(cli, &WantRow::from_proto(w), &events, resp.waiting_for);
            ExitKind::Success
        }
        _ => return Ok(None),
    }))
}

/// `wants list` from the service: each status asked for (all if none), page by page
/// along `next_after`, merged by id; at most `limit` (0: all).
async fn list_wants(client: &Client, statuses: &[String], limit: usize) -> Result<Vec<WantRow>> {
    let statuses: Vec<Option<&str>> = if statuses.is_empty() {
        vec![None]
    } else {
        statuses.iter().map(|s| Some(s.as_str())).collect()
    };
    let mut rows = Vec::new();
    for status in statuses {
        let mut after = String::new();
        loop {
            let mut params: Vec<(&str, &str)> = vec![("limit", "10000")];
            if let Some(s) = status {
                params.push(("status", s));
            }
            if !after.is_empty() {
                params.push(("after", after.as_str()));
            }
            let page: ListWantsResponse = client
                .get(&format!("/api/v1/wants?{}", query(params)))
                .await?;
            rows.extend(page.wants.iter().map(WantRow::from_proto));
            if page.next_after.is_empty() || (limit > 0 && rows.len() >= limit) {
                break;
            }
            after = page.next_after;
        }
    }
    rows.sort_by(|a, b| a.want_id.cmp(&b.want_id));
    if limit > 0 {
        rows.truncate(limit);
    }
    Ok(rows)
}

/// Submits the build, prints its events as they happen (stderr), then the same summary as
/// a local build.
async fn build(cli: &Cli, client: &Client, all: &[String], force: bool) -> Result<ExitKind> {
    let path = format!(
        "/api/v1/builds?{}",
        query([("force", if force { "true" } else { "false" })])
    );
    let submitted: WireSubmitted = client
        .post(&path, &GraphBuildRequest { outputs: refs(all) })
        .await?;
    eprintln!(
        "graph run {} on {}",
        submitted.job_graph_run_id,
        client.url()
    );
    let mut end: Option<WireBuild> = None;
    let mut bad: Option<String> = None;
    client
        .sse(&submitted.events_url, |ev| match ev.event.as_str() {
            "end" => {
                end = databuild_proto::from_json(&ev.data).ok();
                false
            }
            "error" => {
                bad = Some(ev.data);
                false
            }
            _ => {
                if let Some(e) = databuild_proto::from_json::<WireEvent>(&ev.data)
                    .ok()
                    .and_then(WireEvent::into_logged)
                {
                    eprintln!("{}", render::event_line(&e));
                }
                true
            }
        })
        .await?;
    if let Some(e) = bad {
        bail!("the service stopped reporting the build: {e}");
    }
    let state = match end {
        Some(s) => s,
        None => client.get(&submitted.status_url).await?,
    };
    if let Some(e) = state.error {
        bail!(
            "graph run {}: {} ({})",
            state.job_graph_run_id,
            e.message,
            e.code
        );
    }
    let Some(outcome) = state.outcome else {
        bail!(
            "graph run {} is {}; the service has no outcome for it (see `databuild --remote {} runs show {}`)",
            state.job_graph_run_id,
            state.state,
            client.url(),
            state.job_graph_run_id
        );
    };
    Ok(super::build::report(cli, &RunOutcome::from(outcome)))
}
