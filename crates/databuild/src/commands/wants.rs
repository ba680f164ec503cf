//! `want`, `unwant`, `wants list|show` and `reconcile`: wants and the reconciler that keeps
//! them satisfied.

use anyhow::{bail, Result};
use databuild_bel::{Event, WantFilter, WantRow};
use databuild_core::{
    wants::{self, ReconcileOptions, Reconciler},
    CoreError, ExitKind,
};
use databuild_proto::{WantEvent, WantStatus};

use crate::{
    cli::{Cli, ExecArgs, WantsCommand},
    context,
    output::timestamp,
    render,
};

fn local_only(cli: &Cli, what: &str) -> Result<()> {
    if cli.remote.is_some() {
        bail!("`{what}` works on a local graph and event log; drop `--remote`");
    }
    Ok(())
}

fn line(w: &WantRow) -> String {
    let mut s = format!(
        "{}  {:<9}  {}",
        w.want_id,
        w.status.short_name(),
        w.partition_ref
    );
    if let Some(d) = w.sla_micros {
        s.push_str(&format!(
            "  sla {}{}",
            timestamp(d),
            if w.sla_missed { " (missed)" } else { "" }
        ));
    }
    if let Some(e) = w.expires_micros {
        s.push_str(&format!("  expires {}", timestamp(e)));
    }
    if !w.schedule.is_empty() {
        s.push_str(&format!("  schedule {}", w.schedule));
    }
    s
}

pub(super) fn print_wants(cli: &Cli, rows: &[WantRow]) {
    if cli.json {
        let resp = databuild_proto::ListWantsResponse {
            wants: rows.iter().map(WantRow::to_proto).collect(),
            next_after: String::new(),
        };
        println!("{}", databuild_proto::to_json_pretty(&resp));
    } else {
        for w in rows {
            println!("{}", line(w));
        }
    }
}

pub async fn want(
    cli: &Cli,
    refs: &[String],
    ttl: Option<std::time::Duration>,
    sla: Option<std::time::Duration>,
) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    for r in refs {
        databuild_proto::validate_ref(r)
            .map_err(databuild_core::PlanError::from)
            .map_err(CoreError::from)?;
    }
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let client = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let rows = wants::create(&graph, bel.log.as_ref(), refs, ttl, sla, &client).await?;
    print_wants(cli, &rows);
    if !cli.json {
        eprintln!(
            "recorded {} want{}; `databuild serve` or `databuild reconcile` builds them",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        );
    }
    Ok(ExitKind::Success)
}

pub async fn unwant(cli: &Cli, ids: &[String]) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let rows = wants::cancel(bel.log.as_ref(), ids, "withdrawn with `databuild unwant`").await?;
    print_wants(cli, &rows);
    Ok(ExitKind::Success)
}

pub async fn wants(cli: &Cli, cmd: &WantsCommand) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    let bel = context::bel(cli, Some(&graph)).await?;
    match cmd {
        WantsCommand::List { status, limit } => {
            let statuses = status
                .iter()
                .map(|s| WantStatus::parse_name(s))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = bel
                .log
                .wants(&WantFilter {
                    statuses,
                    limit: *limit,
                    ..Default::default()
                })
                .await
                .map_err(CoreError::from)?;
            print_wants(cli, &rows);
        }
        WantsCommand::Show { want_id } => {
            let Some(w) = bel.log.want(want_id).await.map_err(CoreError::from)? else {
                bail!("no want `{want_id}`; see `databuild wants list`");
            };
            let events = bel
                .log
                .want_events(want_id)
                .await
                .map_err(CoreError::from)?;
            let waiting = wants::waiting_for(&graph, bel.log.as_ref(), &w).await?;
            let events: Vec<(Option<i64>, WantEvent)> = events
                .into_iter()
                .filter_map(|e| match e.event {
                    Event::Want(w) => Some((Some(e.seq), w)),
                    _ => None,
                })
                .collect();
            print_show(cli, &w, &events, waiting);
        }
    }
    Ok(ExitKind::Success)
}

/// Prints `wants show`: the want, who asked, what it waits for, and its events (with
/// their log positions when read from the log).
pub(super) fn print_show(
    cli: &Cli,
    w: &WantRow,
    events: &[(Option<i64>, WantEvent)],
    waiting: String,
) {
    if cli.json {
        let resp = databuild_proto::GetWantResponse {
            want: Some(w.to_proto()),
            events: events.iter().map(|(_, e)| e.clone()).collect(),
            waiting_for: waiting,
        };
        println!("{}", databuild_proto::to_json_pretty(&resp));
        return;
    }
    println!("{}", line(w));
    println!(
        "created {} by {}",
        timestamp(w.created_micros),
        w.requesters.join(", ")
    );
    println!("waiting for: {waiting}");
    for (seq, ev) in events {
        println!("  {}", render::want_event_line(*seq, ev));
    }
}

/// How `reconcile` runs.
pub struct How {
    pub once: bool,
    pub dry_run: bool,
    pub retries: u32,
    pub retry_backoff: std::time::Duration,
    pub keep_outdated: bool,
}

pub async fn reconcile(cli: &Cli, how: How, exec: &ExecArgs) -> Result<ExitKind> {
    let How {
        once,
        dry_run,
        retries,
        retry_backoff,
        keep_outdated,
    } = how;
    local_only(cli, "reconcile")?;
    let graph = std::sync::Arc::new(context::graph(cli)?);
    let notifiers = databuild_service::notify::notifiers(&graph).map_err(anyhow::Error::msg)?;
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let mut build = super::build::options(exec, bel.log_dir);
    build.keep_outdated = keep_outdated;
    build.handle_signals = false;
    let mut opts = ReconcileOptions::new(build);
    opts.retries = retries;
    opts.backoff = retry_backoff;
    opts.dry_run = dry_run;
    let mut r = Reconciler::new(graph, bel.log, opts, notifiers);
    if dry_run {
        let started = std::time::Instant::now();
        r.load().await?;
        let loaded = started.elapsed();
        let report = r.pass(false).await?;
        let passed = started.elapsed() - loaded;
        if cli.json {
            println!(
                "{{\"live\":{},\"checked\":{},\"wouldBuild\":{},\"loadMs\":{:.1},\"passMs\":{:.1}}}",
                report.live,
                report.checked,
                report.would_build,
                loaded.as_secs_f64() * 1e3,
                passed.as_secs_f64() * 1e3
            );
        } else {
            println!(
                "{} wants need attention (not yet satisfied, or their partition is not AVAILABLE), {} looked at: {} partitions to build (loaded in {:.0} ms, rest of the pass {:.0} ms; nothing recorded)",
                report.live,
                report.checked,
                report.would_build,
                loaded.as_secs_f64() * 1e3,
                passed.as_secs_f64() * 1e3
            );
        }
        return Ok(ExitKind::Success);
    }
    if once {
        let report = r.once().await?;
        eprintln!(
            "reconciled: {} ticks recorded, {} partitions built or rebuilt, {} wants satisfied, {} SLA misses, {} expired, {} failed; {} wants still need attention",
            report.ticks, report.started, report.satisfied, report.sla_missed, report.expired, report.failed, report.live
        );
        return Ok(if report.failed > 0 {
            ExitKind::BuildFailed
        } else {
            ExitKind::Success
        });
    }
    eprintln!("reconciling (Ctrl-C stops)");
    r.run(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitKind::Success)
}
