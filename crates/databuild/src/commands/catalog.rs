//! `partitions`, `events`, `deps`, `active`, `logs`: reading (and registering into, and
//! forgetting from) the event log.

use anyhow::{bail, Result};
use databuild_bel::PartitionFilter;
use databuild_core::{
    catalog::{self, EventFilter},
    logs::{self, JobOutput},
    register, ExitKind,
};
use databuild_proto::PartitionStatus;
use databuild_service::wire::{WireEvent, WirePartition, WirePartitions};

use crate::{
    cli::{Cli, Format, PartitionsCommand},
    context,
    output::timestamp,
    render,
};

pub async fn partitions(cli: &Cli, cmd: &PartitionsCommand) -> Result<ExitKind> {
    match cmd {
        PartitionsCommand::List {
            status,
            prefix,
            pattern,
            limit,
            offset,
            outdated,
        } => {
            let statuses = status
                .iter()
                .map(|s| PartitionStatus::parse_name(s))
                .collect::<Result<Vec<_>, _>>()?;
            let bel = context::bel(cli, None).await?;
            let rows = match pattern {
                _ if *outdated => {
                    let graph = context::graph(cli)?;
                    catalog::outdated_partitions(
                        &graph,
                        bel.log.as_ref(),
                        prefix.clone(),
                        *limit,
                        *offset,
                    )
                    .await?
                }
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
                let resp = WirePartitions {
                    partitions: rows.iter().map(WirePartition::from).collect(),
                };
                println!("{}", databuild_proto::to_json_pretty(&resp));
            } else {
                for r in &rows {
                    println!(
                        "{:<10} {} {}",
                        r.status.short_name(),
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
                println!("status     {}", status.short_name());
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
        PartitionsCommand::Why { refs, syntax } => {
            let refs = super::refs_and_file(refs, None, *syntax)?;
            let graph = context::graph(cli).ok();
            let bel = context::bel(cli, graph.as_ref()).await?;
            for (i, r) in refs.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!(
                    "{}",
                    catalog::why(graph.as_ref(), bel.log.as_ref(), r).await?
                );
            }
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
        PartitionsCommand::Forget {
            refs,
            from_file,
            syntax,
        } => {
            let refs = super::refs_and_file(refs, from_file.as_deref(), *syntax)?;
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
            syntax,
        } => {
            let refs = super::refs_and_file(refs, from_file.as_deref(), *syntax)?;
            let graph = context::graph(cli)?;
            let bel = context::writable_bel(cli, Some(&graph)).await?;
            let client = format!("cli@{}", databuild_core::scheduler::hostname());
            let done =
                register::register((!force).then_some(&graph), bel.log.as_ref(), &refs, &client)
                    .await?;
            for r in &done.already_available {
                println!("already available: {r}");
            }
            if !done.registered.is_empty() {
                println!(
                    "registered {} as available",
                    crate::output::count(done.registered.len(), "partition")
                );
            }
        }
    }
    Ok(ExitKind::Success)
}

fn print_events(cli: &Cli, events: &[databuild_bel::LoggedEvent]) -> Result<()> {
    if cli.json {
        for e in events {
            println!("{}", databuild_proto::to_json(&WireEvent::from(e)));
        }
    } else {
        for e in events {
            println!("{}", render::event_line(e));
        }
    }
    Ok(())
}

pub async fn events(
    cli: &Cli,
    filter: &EventFilter,
    after: i64,
    limit: usize,
    follow: bool,
) -> Result<ExitKind> {
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
            .filter(|e| filter.matches(e))
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
                status.short_name(),
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
    match logs::job_output(bel.log.as_ref(), &bel.log_dir, job_run_id).await? {
        None => bail!("no job run `{job_run_id}`; see `databuild runs show <graph run id>`"),
        Some(JobOutput::File(bytes)) => {
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
        }
        Some(JobOutput::Lines(lines)) => {
            for l in lines {
                println!("{l}");
            }
        }
    }
    Ok(ExitKind::Success)
}
