//! `backfill start|list|show|resume|retry|cancel`: backfills, driven in the foreground
//! with a progress bar (counts and an ETA) on a terminal.

use std::{io::IsTerminal as _, sync::Arc, time::Duration};

use anyhow::{bail, Result};
use databuild_bel::BackfillRow;
use databuild_core::{
    backfill::{self, Counts, DriveOptions, Spec},
    CoreError, ExitKind,
};
use databuild_proto::{BackfillStatus, FailureCause, WantStatus};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    cli::{BackfillCommand, Cli},
    context,
    output::timestamp,
};

fn local_only(cli: &Cli) -> Result<()> {
    if cli.remote.is_some() {
        bail!("`backfill` works on a local graph and event log; drop `--remote`");
    }
    Ok(())
}

fn status_name(s: BackfillStatus) -> &'static str {
    s.as_str_name().trim_start_matches("BACKFILL_")
}

fn line(b: &BackfillRow, c: &Counts) -> String {
    format!(
        "{}  {:<9}  {}/{} built, {} failed, {} pending  `{}`  started {}{}",
        b.backfill_id,
        status_name(b.status),
        c.built,
        c.total,
        c.failed,
        c.pending(),
        b.name,
        timestamp(b.created_micros),
        if b.reason.is_empty() {
            String::new()
        } else {
            format!("  ({})", b.reason)
        }
    )
}

fn json(b: &BackfillRow, c: &Counts) -> serde_json::Value {
    serde_json::json!({
        "backfillId": b.backfill_id,
        "name": b.name,
        "status": b.status.as_str_name(),
        "refs": b.refs,
        "total": c.total,
        "built": c.built,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "pending": c.pending(),
        "maxFailures": b.max_failures,
        "parallelism": b.parallelism,
        "reason": b.reason,
        "createdMicros": b.created_micros,
        "updatedMicros": b.updated_micros,
    })
}

/// What is told a backfill's counts after each chunk.
type Report = Arc<dyn Fn(&Counts) + Send + Sync>;

/// A progress display: a bar with counts and an ETA on a terminal, nothing otherwise.
fn progress(cli: &Cli, total: u64) -> (Report, Option<ProgressBar>) {
    if cli.json || !std::io::stderr().is_terminal() {
        return (Arc::new(|_| {}), None);
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} partitions  {msg}  ETA {eta}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let b = bar.clone();
    (
        Arc::new(move |c: &Counts| {
            b.set_position(c.built + c.failed + c.cancelled);
            b.set_message(format!("{} built, {} failed", c.built, c.failed));
        }),
        Some(bar),
    )
}

async fn drive(cli: &Cli, id: &str, chunk: usize) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let row = backfill::get(bel.log.as_ref(), id).await?;
    let mut build = databuild_core::BuildOptions {
        log_dir: bel.log_dir,
        ..Default::default()
    };
    build.client_id = format!("backfill:{id}");
    let opts = DriveOptions { build, chunk };
    let (report, bar) = progress(cli, row.total);
    let end = backfill::drive(&graph, bel.log.clone(), id, &opts, report.as_ref()).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let c = backfill::counts(bel.log.as_ref(), &end).await?;
    if end.status == BackfillStatus::BackfillPaused {
        notify_paused(&graph, &end, &c).await;
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&json(&end, &c))?);
    } else {
        println!("{}", line(&end, &c));
    }
    Ok(match end.status {
        BackfillStatus::BackfillCompleted if c.failed == 0 => ExitKind::Success,
        BackfillStatus::BackfillCancelled => ExitKind::Success,
        _ => ExitKind::BuildFailed,
    })
}

/// Sends `[notify]` about a backfill paused after too many failures.
async fn notify_paused(graph: &databuild_core::Graph, b: &BackfillRow, c: &Counts) {
    let Ok(n) = databuild_service::notify::notifiers(graph) else {
        return;
    };
    if n.is_empty() {
        return;
    }
    let handles = n.send(databuild_core::wants::Notification {
        kind: databuild_core::wants::NotificationKind::BackfillPaused,
        want_id: String::new(),
        partition_ref: String::new(),
        deadline: None,
        at: timestamp(databuild_proto::timestamp_micros(&databuild_proto::now())),
        schedule: String::new(),
        root_cause: format!(
            "backfill `{}` ({}) paused: {} of {} partitions failed; {}",
            b.backfill_id, b.name, c.failed, c.total, b.reason
        ),
        graph: graph.label.clone(),
    });
    for h in handles {
        let _ = h.await;
    }
}

pub async fn backfill(cli: &Cli, cmd: &BackfillCommand) -> Result<ExitKind> {
    local_only(cli)?;
    match cmd {
        BackfillCommand::Start {
            refs,
            from_file,
            name,
            max_failures,
            jobs,
            chunk,
            dry_run,
        } => {
            // Ranges are kept as given (the backfill records them) and expanded here.
            let given = super::read_refs(refs, from_file.as_deref())?;
            let parallelism =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            if *dry_run {
                // Planning looks the refs up (and refuses those no job produces) once.
                let all = databuild_core::ranges::expand_refs(&given)?;
                return super::build::estimate(cli, &all, false, parallelism).await;
            }
            let graph = context::graph(cli)?;
            let bel = context::writable_bel(cli, Some(&graph)).await?;
            let spec = Spec {
                name: name.clone(),
                refs: given,
                max_failures: *max_failures,
                parallelism: parallelism as u32,
                client: format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
                ),
            };
            let row = backfill::start(&graph, bel.log.as_ref(), &spec).await?;
            eprintln!(
                "backfill {} `{}`: {} partitions (`databuild backfill resume {}` continues it if this stops)",
                row.backfill_id, row.name, row.total, row.backfill_id
            );
            drop(bel);
            drive(cli, &row.backfill_id, *chunk).await
        }
        BackfillCommand::List => {
            let graph = context::graph(cli)?;
            let bel = context::bel(cli, Some(&graph)).await?;
            let rows = bel.log.backfills().await.map_err(CoreError::from)?;
            let mut out = Vec::new();
            for b in &rows {
                let c = backfill::counts(bel.log.as_ref(), b).await?;
                if cli.json {
                    out.push(json(b, &c));
                } else {
                    println!("{}", line(b, &c));
                }
            }
            if cli.json {
                println!("{}", serde_json::json!({ "backfills": out }));
            }
            Ok(ExitKind::Success)
        }
        BackfillCommand::Show { backfill_id } => {
            let graph = context::graph(cli)?;
            let bel = context::bel(cli, Some(&graph)).await?;
            let b = backfill::get(bel.log.as_ref(), backfill_id).await?;
            let c = backfill::counts(bel.log.as_ref(), &b).await?;
            let wants = backfill::wants(bel.log.as_ref(), backfill_id, 0).await?;
            let mut by_cause: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for w in wants.iter().filter(|w| w.status == WantStatus::WantFailed) {
                let cause = last_cause(bel.log.as_ref(), &w.want_id).await?;
                by_cause
                    .entry(cause)
                    .or_default()
                    .push(w.partition_ref.clone());
            }
            if cli.json {
                let mut v = json(&b, &c);
                v["failuresByCause"] = serde_json::to_value(&by_cause)?;
                v["partitions"] = wants
                    .iter()
                    .map(|w| serde_json::json!({"partitionRef": w.partition_ref, "status": w.status.as_str_name()}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", line(&b, &c));
                println!("refs: {}", b.refs.join(" "));
                for (cause, refs) in &by_cause {
                    let shown: Vec<&str> = refs.iter().take(5).map(String::as_str).collect();
                    let more = refs.len().saturating_sub(shown.len());
                    println!(
                        "failed ({cause}): {} partitions: {}{}",
                        refs.len(),
                        shown.join(", "),
                        if more > 0 {
                            format!(", and {more} more")
                        } else {
                            String::new()
                        }
                    );
                }
            }
            Ok(ExitKind::Success)
        }
        BackfillCommand::Resume { backfill_id, chunk } => {
            let graph = context::graph(cli)?;
            let bel = context::writable_bel(cli, Some(&graph)).await?;
            backfill::resume(bel.log.as_ref(), backfill_id).await?;
            drop(bel);
            drive(cli, backfill_id, *chunk).await
        }
        BackfillCommand::Retry { backfill_id, chunk } => {
            let graph = context::graph(cli)?;
            let bel = context::writable_bel(cli, Some(&graph)).await?;
            let n = backfill::retry(bel.log.as_ref(), backfill_id).await?;
            eprintln!("retrying {n} failed partitions of backfill {backfill_id}");
            drop(bel);
            drive(cli, backfill_id, *chunk).await
        }
        BackfillCommand::Cancel { backfill_id, now } => {
            let graph = context::graph(cli)?;
            let bel = context::writable_bel(cli, Some(&graph)).await?;
            let b = backfill::cancel(bel.log.as_ref(), backfill_id, *now).await?;
            let c = backfill::counts(bel.log.as_ref(), &b).await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&json(&b, &c))?);
            } else {
                println!("{}", line(&b, &c));
            }
            Ok(ExitKind::Success)
        }
    }
}

/// The failure cause of a backfill want's latest FAILED event, as people read it.
async fn last_cause(bel: &dyn databuild_bel::EventRead, want_id: &str) -> Result<String> {
    let events = bel.want_events(want_id).await.map_err(CoreError::from)?;
    let cause = events.iter().rev().find_map(|e| match &e.event {
        databuild_bel::Event::Want(w) if w.status == WantStatus::WantFailed as i32 => {
            Some(w.failure_cause())
        }
        _ => None,
    });
    Ok(cause
        .unwrap_or(FailureCause::Unknown)
        .as_str_name()
        .trim_start_matches("FAILURE_CAUSE_")
        .to_ascii_lowercase()
        .replace('_', " "))
}
