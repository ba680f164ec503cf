//! `serve`: the graph as a service (gRPC and HTTP on one port) until SIGTERM or Ctrl-C.

use anyhow::{bail, Context as _, Result};
use databuild_core::ExitKind;
use databuild_service::{
    conn::ConnLimits,
    security::{Security, SecurityOptions},
    App, ServeOptions,
};

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
    let auth = args.auth.clone().or_else(|| graph.service_auth.clone());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(databuild_service::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on `{}`; pass another `--addr HOST:PORT` (port 0 picks a free port)",
                args.addr
            )
        })?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && auth.is_none() {
        if !args.insecure_no_auth {
            bail!(
                "refusing to listen on `{}` without authentication: anyone who can reach it could build, invalidate and append events. \
Make a token file with `databuild auth add NAME --role admin --file auth.toml` and start with `--auth auth.toml` \
(or `[service] auth = \"auth.toml\"` in the graph file), listen on a loopback address such as `--addr 127.0.0.1:{}`, \
or, on a network you trust entirely, pass `--insecure-no-auth`",
                args.addr,
                args.addr.rsplit(':').next().unwrap_or("50051")
            );
        }
        eprintln!(
            "warning: listening on {addr} WITHOUT authentication (--insecure-no-auth): anyone who reaches this port can build, invalidate and append events"
        );
    }
    let mut allowed_hosts = args.allowed_host.clone();
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        // The address it listens on names it too.
        allowed_hosts.push(match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    }
    let security = Security::new(SecurityOptions {
        auth: auth.clone(),
        allowed_hosts,
        tls: tls.is_some(),
    })
    .with_context(|| "cannot use the access-token file (`--auth` / `[service] auth`)")?;
    let bel = context::writable_bel(cli, Some(&graph)).await?;
    let opts = ServeOptions {
        build: super::build::options(&args.exec, bel.log_dir),
        stream_buffer: args.stream_buffer.max(1),
        security,
        conn: ConnLimits {
            max_connections: args.max_connections.max(1),
            fd_reserve: args.fd_reserve,
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_streams_per_principal: args.max_streams_per_principal,
        },
        tls,
        ..ServeOptions::default()
    };
    println!("{scheme}://{addr}");
    {
        use std::io::Write as _;
        std::io::stdout().flush()?;
    }
    eprintln!(
        "serving graph `{}` on {scheme}://{addr}: gRPC, HTTP (see /api/v1/openapi.json) and the dashboard ({scheme}://{addr}/); {}{}",
        graph.label,
        match &auth {
            Some(a) => format!("access tokens from `{}`", a.display()),
            None => "no authentication (loopback only)".to_string(),
        },
        if scheme == "https" { "; TLS" } else { "" }
    );
    let notifiers = databuild_service::notify::notifiers(&graph).map_err(anyhow::Error::msg)?;
    let app = App::new(graph, bel.log, opts);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let reconciler = (!args.no_reconcile).then(|| {
        tokio::spawn(databuild_service::notify::reconcile(
            app.clone(),
            notifiers,
            stopped.clone(),
        ))
    });
    tokio::spawn(async move {
        signals().await;
        let _ = stop.send(true);
    });
    databuild_service::serve(app, listener, until(stopped))
        .await
        .context("the service stopped")?;
    if let Some(r) = reconciler {
        let _ = r.await;
    }
    Ok(ExitKind::Success)
}
