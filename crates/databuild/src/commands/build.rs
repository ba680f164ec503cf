//! `build`, `execute`, `analyze`, `lookup`.

use std::io::Read as _;

use anyhow::Result;
use databuild_core::{BuildOptions, CoreError, ExitKind, RunOutcome};
use databuild_proto::JobGraph;
use databuild_service::wire::WireOutcome;

use crate::{
    cli::{BuildArgs, Cli, ExecArgs, Format},
    context, output, render,
};

pub(super) fn options(args: &ExecArgs, log_dir: std::path::PathBuf) -> BuildOptions {
    let defaults = BuildOptions::default();
    BuildOptions {
        parallelism: args.jobs.unwrap_or(defaults.parallelism).max(1),
        fail_fast: args.fail_fast,
        kill_grace: args.kill_grace,
        lease: args.lease,
        log_dir,
        log_cap_bytes: args.log_cap_bytes,
        ..defaults
    }
}

pub async fn build(cli: &Cli, args: &BuildArgs) -> Result<ExitKind> {
    let refs = super::refs_and_file(&args.refs, args.from_file.as_deref(), args.syntax)?;
    let graph = context::graph(cli)?;
    for r in &refs {
        databuild_proto::validate_ref(r)
            .map_err(databuild_core::PlanError::from)
            .map_err(CoreError::from)?;
    }
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let mut opts = options(&args.exec, bel.log_dir);
    opts.force = args.force;
    opts.keep_outdated = args.keep_outdated;
    let outcome =
        databuild_core::build_owned(&graph, bel.log, refs, &opts, output::reporter(false)).await?;
    Ok(report(cli, &outcome))
}

pub async fn execute(cli: &Cli, args: &ExecArgs) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let job_graph: JobGraph = databuild_proto::from_json(&text).map_err(|e| {
        CoreError::InvalidJobGraph(format!("stdin is not a `JobGraph` JSON document: {e}"))
    })?;
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let opts = options(args, bel.log_dir);
    let outcome =
        databuild_core::execute(&graph, bel.log, job_graph, &opts, output::reporter(false)).await?;
    Ok(report(cli, &outcome))
}

pub(super) fn report(cli: &Cli, o: &RunOutcome) -> ExitKind {
    if cli.json {
        println!("{}", databuild_proto::to_json_pretty(&WireOutcome::from(o)));
    } else if o.success && o.job_runs == 0 && o.delegated.is_empty() && o.cut_off.is_empty() {
        println!(
            "nothing to do: {} already available (graph run {})",
            output::count(o.up_to_date.len(), "requested partition"),
            o.run_id
        );
    } else if o.success {
        let delegated = if o.delegated.is_empty() {
            String::new()
        } else {
            format!("; {} more built by other graph runs", o.delegated.len())
        };
        let kept = if o.cut_off.is_empty() {
            String::new()
        } else {
            format!(
                "; {} kept without running (inputs unchanged)",
                output::count(o.cut_off.len(), "partition")
            )
        };
        println!(
            "built {} with {}{delegated}{kept} (graph run {})",
            output::count(o.built.len(), "partition"),
            output::count(o.job_runs, "job run"),
            o.run_id
        );
    } else {
        let n = o.failed.len();
        println!(
            "build failed: {n} partition{} failed, {} built (graph run {})",
            if n == 1 { "" } else { "s" },
            o.built.len(),
            o.run_id
        );
        for (r, reason) in &o.failed {
            println!("  {r}: {reason}");
        }
        println!(
            "see a job's output with `databuild logs <job run id>`, the whole run with `databuild runs show {}`",
            o.run_id
        );
    }
    if o.success {
        ExitKind::Success
    } else {
        ExitKind::BuildFailed
    }
}

pub async fn analyze(cli: &Cli, refs: &[String], format: Format, force: bool) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    let bel = context::bel(cli, Some(&graph)).await?;
    let g = databuild_core::analyze(&graph, bel.log.as_ref(), refs, force)
        .await
        .map_err(CoreError::from)?;
    let format = if cli.json { Format::Json } else { format };
    match format {
        Format::Json => println!("{}", databuild_proto::to_json_pretty(&g)),
        Format::Text => print!("{}", render::graph_text(&g)),
        Format::Dot => print!("{}", render::graph_dot(&g)),
        Format::Mermaid => print!("{}", render::graph_mermaid(&g)),
    }
    Ok(ExitKind::Success)
}

/// `analyze --estimate`: plans `refs`, then prints what building them would take.
pub async fn estimate(
    cli: &Cli,
    refs: &[String],
    force: bool,
    parallelism: usize,
) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    let bel = context::bel(cli, Some(&graph)).await?;
    let g = databuild_core::analyze(&graph, bel.log.as_ref(), refs, force)
        .await
        .map_err(CoreError::from)?;
    let wanted: Vec<String> = g.outputs.iter().map(|o| o.str.clone()).collect();
    let statuses = bel.log.statuses(&wanted).await?;
    let history = databuild_core::estimate::history(bel.log.as_ref(), &g).await?;
    let e = databuild_core::estimate::estimate(&g, &statuses, &history, parallelism);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", render::estimate_text(&e));
    }
    Ok(ExitKind::Success)
}

/// `check`: the graph file loads (entrypoints and patterns included).
pub fn check(cli: &Cli) -> Result<ExitKind> {
    let graph = crate::context::graph(cli)?;
    let lookup = match &graph.lookup {
        databuild_core::graph::Lookup::Patterns(_) => "their `produces` patterns".to_string(),
        databuild_core::graph::Lookup::Program(argv) => format!("the program `{}`", argv.join(" ")),
        databuild_core::graph::Lookup::Remote(url) => format!("the server {url}"),
    };
    println!(
        "graph `{}`: {} with entrypoints found, looked up by {lookup}",
        graph.label,
        crate::output::count(graph.jobs.len(), "job")
    );
    Ok(ExitKind::Success)
}

pub async fn lookup(cli: &Cli, refs: &[String]) -> Result<ExitKind> {
    let graph = context::graph(cli)?;
    for r in refs {
        databuild_proto::validate_ref(r)
            .map_err(databuild_core::PlanError::from)
            .map_err(CoreError::from)?;
    }
    let result = graph
        .lookup(refs)
        .await
        .map_err(databuild_core::PlanError::from)
        .map_err(CoreError::from)?;
    if cli.json {
        println!("{}", databuild_proto::to_json_pretty(&result.to_response()));
    } else {
        for (label, refs) in &result.by_job {
            for r in refs {
                println!("{r}\t{label}");
            }
        }
        for r in &result.unproduced {
            println!("{r}\t(external: no job produces it)");
        }
    }
    Ok(ExitKind::Success)
}

pub async fn request(
    cli: &Cli,
    partition_ref: &str,
    client_id: Option<String>,
    allow_delegation: bool,
    timeout: std::time::Duration,
) -> Result<ExitKind> {
    let graph = std::sync::Arc::new(context::graph(cli)?);
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let build_opts = BuildOptions {
        log_dir: bel.log_dir.clone(),
        ..BuildOptions::default()
    };
    let opts = databuild_core::request::RequestOptions {
        client_id: client_id.unwrap_or_else(|| build_opts.client_id.clone()),
        allow_delegation,
        timeout,
    };
    let requested = databuild_core::request::request_partition(
        graph,
        bel.log,
        partition_ref,
        &opts,
        &build_opts,
    )
    .await?;
    let resp = databuild_proto::RequestPartitionResponse {
        result: Some(requested.result),
    };
    println!("{}", databuild_proto::to_json_pretty(&resp));
    match requested.build {
        Some(handle) => {
            let outcome = handle.await??;
            Ok(if outcome.success {
                ExitKind::Success
            } else {
                ExitKind::BuildFailed
            })
        }
        None => Ok(ExitKind::Success),
    }
}
