//! `partitions`, `events`, `deps`, `active`, `logs`: reading (and registering into, and
//! forgetting from) the event log.

use anyhow::{bail, Result};
use databuild_bel::{Event, PartitionFilter};
use databuild_core::{catalog, events, ExitKind};
use databuild_proto::{PartitionManifest, PartitionRef, PartitionStatus};

use crate::{
    cli::{Cli, Format, PartitionsCommand},
    context,
    output::timestamp,
    render,
};

/// Parses `available`, `AVAILABLE` or `PARTITION_AVAILABLE`.
fn parse_status(s: &str) -> Result<PartitionStatus> {
    Ok(PartitionStatus::parse_name(s)?)
}

fn status_name(s: PartitionStatus) -> &'static str {
    s.short_name()
}

pub async fn partitions(cli: &Cli, cmd: &PartitionsCommand) -> Result<ExitKind> {
    match cmd {
        PartitionsCommand::List {
            status,
            prefix,
            pattern,
            limit,
            offset,
        } => {
            let statuses = status
                .iter()
                .map(|s| parse_status(s))
                .collect::<Result<Vec<_>>>()?;
            let bel = context::bel(cli, None).await?;
            let rows = match pattern {
                Some(p) => {
                    catalog::find_partitions(bel.log.as_ref(), Some(p), statuses, *limit, *offset)
                        .await?
                }
                None => {
                    bel.log
                        .list_partitions(&PartitionFilter {
                            statuses,
                            prefix: prefix.clone(),
                            limit: *limit,
                            offset: *offset,
                            ..Default::default()
                        })
                        .await?
                }
            };
            if cli.json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "partitionRef": r.partition_ref,
                            "status": r.status.as_str_name(),
                            "jobGraphRunId": r.run_id,
                            "jobRunId": r.job_run_id,
                            "updated": timestamp(r.updated_micros),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in &rows {
                    println!(
                        "{:<10} {} {}",
                        status_name(r.status),
                        timestamp(r.updated_micros),
                        r.partition_ref
                    );
                }
            }
        }
        PartitionsCommand::Show { partition_ref } => {
            let bel = context::bel(cli, None).await?;
            let Some(e) = bel.log.latest_partition_event(partition_ref).await? else {
                bail!("no events for partition `{partition_ref}`; see `databuild partitions list`");
            };
            if cli.json {
                println!("{}", databuild_proto::to_json_pretty(&e));
            } else {
                let status = PartitionStatus::try_from(e.status).unwrap_or_default();
                println!("partition  {partition_ref}");
                println!("status     {}", status_name(status));
                let ts = e
                    .timestamp
                    .as_ref()
                    .map(databuild_proto::timestamp_micros)
                    .unwrap_or(0);
                println!("since      {}", timestamp(ts));
                if !e.job_graph_run_id.is_empty() {
                    println!("graph run  {}", e.job_graph_run_id);
                }
                if !e.job_run_id.is_empty() {
                    println!("job run    {}", e.job_run_id);
                }
                if let Some(j) = &e.producing_job {
                    println!("job        {}", j.label);
                }
                if let Some(cause) = crate::render::cause_word(e.failure_cause()) {
                    println!("cause      {cause}");
                }
                if !e.failure_reason.is_empty() {
                    println!("reason     {}", e.failure_reason);
                }
                if let Some(m) = &e.manifest {
                    for i in &m.inputs {
                        let outs: Vec<&str> = i.outputs.iter().map(|o| o.str.as_str()).collect();
                        println!("input      {}", outs.join(" "));
                    }
                }
            }
        }
        PartitionsCommand::Why { partition_ref } => {
            let graph = context::graph(cli).ok();
            let bel = context::bel(cli, graph.as_ref()).await?;
            println!(
                "{}",
                catalog::why(graph.as_ref(), bel.log.as_ref(), partition_ref).await?
            );
        }
        PartitionsCommand::Invalidate {
            partition_ref,
            reason,
        } => {
            databuild_proto::validate_ref(partition_ref)?;
            let bel = context::writable_bel(cli, None).await?;
            let stale = bel.log.invalidate(partition_ref, reason).await?;
            println!(
                "{} now stale:",
                crate::output::count(stale.len(), "partition")
            );
            for r in stale {
                println!("  {r}");
            }
        }
        PartitionsCommand::Forget { refs, from_file } => {
            let refs = super::refs_and_file(refs, from_file.as_deref())?;
            let bel = context::writable_bel(cli, None).await?;
            let client = format!("cli@{}", databuild_core::scheduler::hostname());
            let forgotten =
                databuild_core::forget::forget(bel.log.as_ref(), &refs, &client).await?;
            println!(
                "forgot {}:",
                crate::output::count(forgotten.len(), "partition")
            );
            for r in forgotten {
                println!("  {r}");
            }
        }
        PartitionsCommand::History { partition_ref } => {
            let bel = context::bel(cli, None).await?;
            let events = bel.log.partition_history(partition_ref).await?;
            if events.is_empty() {
                bail!("no events for partition `{partition_ref}`; see `databuild partitions list`");
            }
            print_events(cli, &events)?;
        }
        PartitionsCommand::Register {
            refs,
            from_file,
            force,
        } => {
            let refs = &super::refs_and_file(refs, from_file.as_deref())?;
            for r in refs {
                databuild_proto::validate_ref(r)?;
            }
            let graph = context::graph(cli)?;
            if !force {
                let found = graph
                    .lookup(refs)
                    .await
                    .map_err(databuild_core::PlanError::from)?;
                if let Some((job, refs)) = found.by_job.iter().next() {
                    bail!(
                        "partition `{}` is produced by job `{job}`; build it with `databuild build {}`, or pass `--force` to register it as external data anyway",
                        refs[0],
                        refs[0]
                    );
                }
            }
            let bel = context::writable_bel(cli, Some(&graph)).await?;
            let available: std::collections::HashSet<String> = bel
                .log
                .partitions(refs)
                .await?
                .into_iter()
                .filter(|s| s.status == PartitionStatus::PartitionAvailable)
                .map(|s| s.partition_ref)
                .collect();
            let mut seen = std::collections::HashSet::new();
            let mut evs = Vec::new();
            for r in refs {
                if !seen.insert(r.as_str()) {
                    continue; // listed twice: registered once
                }
                if available.contains(r) {
                    println!("already available: {r}");
                    continue;
                }
                let mut e = events::partition(r, PartitionStatus::PartitionAvailable, "");
                let now = databuild_proto::now();
                e.requesting_clients =
                    vec![format!("cli@{}", databuild_core::scheduler::hostname())];
                e.storage_backend = "external".into();
                e.manifest = Some(PartitionManifest {
                    outputs: vec![PartitionRef::new(r.clone())],
                    start_time: Some(now),
                    end_time: Some(now),
                    ..Default::default()
                });
                evs.push(Event::Partition(e));
            }
            if !evs.is_empty() {
                let n = evs.len();
                bel.log.append(evs).await?;
                println!(
                    "registered {} as available",
                    crate::output::count(n, "partition")
                );
            }
        }
    }
    Ok(ExitKind::Success)
}

fn print_events(cli: &Cli, events: &[databuild_bel::LoggedEvent]) -> Result<()> {
    if cli.json {
        for e in events {
            println!("{}", serde_json::to_string(&render::event_json(e))?);
        }
    } else {
        for e in events {
            println!("{}", render::event_line(e));
        }
    }
    Ok(())
}

/// Which events `databuild events` prints.
pub struct EventFilter<'a> {
    /// Only partition events of these refs.
    pub refs: &'a [String],
    /// Only partition events with these statuses.
    pub statuses: &'a [String],
    /// Only events of these graph runs.
    pub runs: &'a [String],
}

impl EventFilter<'_> {
    fn matches(&self, e: &databuild_bel::LoggedEvent, statuses: &[PartitionStatus]) -> bool {
        if !self.runs.is_empty() && !self.runs.iter().any(|r| r == e.event.run_id()) {
            return false;
        }
        if self.refs.is_empty() && statuses.is_empty() {
            return true;
        }
        let Event::Partition(p) = &e.event else {
            return false;
        };
        let r = p
            .partition_ref
            .as_ref()
            .map(|r| r.str.as_str())
            .unwrap_or("");
        (self.refs.is_empty() || self.refs.iter().any(|x| x == r))
            && (statuses.is_empty() || statuses.iter().any(|s| *s as i32 == p.status))
    }
}

pub async fn events(
    cli: &Cli,
    filter: EventFilter<'_>,
    after: i64,
    limit: usize,
    follow: bool,
) -> Result<ExitKind> {
    let statuses = filter
        .statuses
        .iter()
        .map(|s| parse_status(s))
        .collect::<Result<Vec<_>>>()?;
    for r in filter.refs {
        databuild_proto::validate_ref(r)?;
    }
    let bel = context::bel(cli, None).await?;
    let mut after = after;
    let mut printed = 0usize;
    const PAGE: usize = 10_000;
    loop {
        let batch = bel.log.events_after(after, PAGE).await?;
        if let Some(last) = batch.last() {
            after = last.seq;
        }
        let mut matching: Vec<_> = batch
            .iter()
            .filter(|e| filter.matches(e, &statuses))
            .cloned()
            .collect();
        if limit != 0 {
            matching.truncate(limit - printed);
        }
        printed += matching.len();
        print_events(cli, &matching)?;
        use std::io::Write as _;
        std::io::stdout().flush()?;
        if limit != 0 && printed >= limit {
            break;
        }
        if batch.len() < PAGE {
            if !follow {
                break;
            }
            // Woken by the next append (LISTEN/NOTIFY on PostgreSQL), not by polling.
            bel.log
                .wait_for_events(after, std::time::Duration::from_secs(30))
                .await?;
        }
    }
    Ok(ExitKind::Success)
}

pub async fn deps(cli: &Cli, partition_ref: &str, depth: i32, format: Format) -> Result<ExitKind> {
    let bel = context::bel(cli, None).await?;
    let g = catalog::dependency_graph(bel.log.as_ref(), partition_ref, depth).await?;
    let format = if cli.json { Format::Json } else { format };
    match format {
        Format::Json => println!("{}", databuild_proto::to_json_pretty(&g)),
        Format::Text => print!("{}", render::deps_text(&g)),
        Format::Dot => print!("{}", render::deps_dot(&g)),
        Format::Mermaid => print!("{}", render::deps_mermaid(&g)),
    }
    Ok(ExitKind::Success)
}

pub async fn active(cli: &Cli, refs: &[String]) -> Result<ExitKind> {
    for r in refs {
        databuild_proto::validate_ref(r)?;
    }
    let bel = context::bel(cli, None).await?;
    let active = bel.log.active_builds(refs).await?;
    if cli.json {
        let resp = databuild_proto::GetActiveBuildStatusResponse {
            active_builds: active,
        };
        println!("{}", databuild_proto::to_json_pretty(&resp));
    } else if active.is_empty() {
        println!("nothing is being built");
    } else {
        for a in active {
            let status = PartitionStatus::try_from(a.status).unwrap_or_default();
            let since = a
                .started_at
                .as_ref()
                .map(databuild_proto::timestamp_micros)
                .unwrap_or(0);
            println!(
                "{:<9} {} since {} (graph run {}; requested by {})",
                status_name(status),
                a.partition_ref.map(|r| r.str).unwrap_or_default(),
                timestamp(since),
                a.job_graph_run_id,
                a.requesting_clients.join(", ")
            );
        }
    }
    Ok(ExitKind::Success)
}

pub async fn logs(cli: &Cli, job_run_id: &str) -> Result<ExitKind> {
    let bel = context::bel(cli, None).await?;
    if bel.log.job_run(job_run_id).await?.is_none() {
        bail!("no job run `{job_run_id}`; see `databuild runs show <graph run id>`");
    }
    let path = bel.log_dir.join(format!("{job_run_id}.log"));
    match std::fs::read(&path) {
        Ok(bytes) if !bytes.is_empty() => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
        _ => {
            // No file or an empty one (no output, logs from another machine, a log
            // directory that was full or not writable): the lines in the event log.
            for e in bel.log.job_run_events(job_run_id).await? {
                if let Event::Run(r) = e.event {
                    if let Some(logs) = r.job_event.and_then(|j| j.logs) {
                        for l in logs.logs {
                            println!("{l}");
                        }
                    }
                }
            }
        }
    }
    Ok(ExitKind::Success)
}
