//! `serve`: the graph as a service (gRPC and HTTP on one port) until SIGTERM or Ctrl-C.

use anyhow::{bail, Context as _, Result};
use databuild_core::ExitKind;
use databuild_service::{App, ServeOptions};

use crate::{
    cli::{Cli, ServeArgs},
    context,
};

/// Resolves on the first SIGINT or SIGTERM; a second one exits at once.
async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("warning: cannot listen for SIGINT/SIGTERM; stop the service with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!(
        "shutting down: no new builds; waiting for the builds in flight (signal again to exit now)"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("exiting with builds in flight; their claims expire with their lease");
        std::process::exit(1);
    });
}

pub async fn serve(cli: &Cli, args: &ServeArgs) -> Result<ExitKind> {
    if cli.remote.is_some() {
        bail!("`serve` runs a service; `--remote` is for talking to one: drop `--remote`");
    }
    let graph = context::graph(cli)?;
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let opts = ServeOptions {
        build: super::build::options(&args.exec, bel.log_dir),
        stream_buffer: args.stream_buffer.max(1),
        ..ServeOptions::default()
    };
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on `{}`; pass another `--addr HOST:PORT` (port 0 picks a free port)",
                args.addr
            )
        })?;
    let addr = listener.local_addr()?;
    println!("http://{addr}");
    {
        use std::io::Write as _;
        std::io::stdout().flush()?;
    }
    eprintln!(
        "serving graph `{}` on http://{addr}: gRPC, HTTP (see /api/v1/openapi.json) and the dashboard (http://{addr}/)",
        graph.label
    );
    let app = App::new(graph, bel.log, opts);
    databuild_service::serve(app, listener, signals())
        .await
        .context("the service stopped")?;
    Ok(ExitKind::Success)
}
