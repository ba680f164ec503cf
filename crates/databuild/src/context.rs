//! Resolving the graph file and the event log from the global flags.

use std::{path::PathBuf, sync::Arc};

use databuild_bel::{EventLog, EventRead};
use databuild_core::{CoreError, Graph};

use crate::cli::Cli;

/// The event log and where job logs live: one to read ([`bel`], the default) or to
/// write ([`writable_bel`]).
pub struct Bel<L: ?Sized = dyn EventRead> {
    pub log: Arc<L>,
    pub log_dir: PathBuf,
}

/// Loads the graph file named by `--graph`, with the gRPC client for `grpc://` jobs.
pub fn graph(cli: &Cli) -> Result<Graph, CoreError> {
    let mut graph = Graph::load(&cli.graph)?;
    graph.remote = Some(databuild_service::remote_jobs::GrpcJobs::shared());
    Ok(graph)
}

/// The client of the service named by `--remote`, if any.
pub fn remote(cli: &Cli) -> Result<Option<databuild_service::remote::Client>, CoreError> {
    let Some(url) = &cli.remote else {
        return Ok(None);
    };
    let who = format!("cli@{}", databuild_core::scheduler::hostname());
    let usage = |m: String| CoreError::Bel(databuild_bel::BelError::Remote(m));
    let token = match (&cli.token_file, std::env::var("DATABUILD_TOKEN")) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    usage(format!(
                        "cannot read the access token from `{}` (`--token-file`): {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_string(),
        ),
        (None, Ok(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        _ => None,
    };
    databuild_service::remote::Client::with_ca(url, &who, cli.ca_cert.as_deref())
        .map(|c| Some(c.with_token(token)))
        .map_err(|e| usage(e.to_string()))
}

/// Opens the event log to read: the service's with `--remote`, else `--bel`, else the
/// graph's. Commands that only read the log work without a graph file when `--bel` or
/// `--remote` is given.
pub async fn bel(cli: &Cli, graph: Option<&Graph>) -> Result<Bel, CoreError> {
    if let Some(client) = remote(cli)? {
        // The service's log, read over HTTP; job logs come from its events.
        return Ok(Bel {
            log: Arc::new(databuild_service::remote::RemoteLog::new(client)),
            log_dir: PathBuf::from("/dev/null/remote"),
        });
    }
    let Bel { log, log_dir } = local(cli, graph).await?;
    Ok(Bel { log, log_dir })
}

/// Opens the event log to write: `--bel`, else the graph's. Refused with `--remote`: the
/// service writes its own log.
pub async fn writable_bel(
    cli: &Cli,
    graph: Option<&Graph>,
) -> Result<Bel<dyn EventLog>, CoreError> {
    if cli.remote.is_some() {
        return Err(CoreError::Bel(databuild_bel::BelError::Remote(
            "writing to the event log is not available through `--remote`: the service writes its own event log; run the command on the service's machine, without `--remote`".into(),
        )));
    }
    local(cli, graph).await
}

/// The log named by `--bel`, else the graph's. Job logs live beside a SQLite log, and in
/// `.databuild/logs` under the graph's directory (else the working directory) with a
/// PostgreSQL one.
async fn local(cli: &Cli, graph: Option<&Graph>) -> Result<Bel<dyn EventLog>, CoreError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let (url, base) = match (&cli.bel, graph) {
        (Some(url), _) => (url.clone(), cwd),
        (None, Some(g)) => (g.default_bel(), g.dir.clone()),
        (None, None) => {
            let g = self::graph(cli)?;
            (g.default_bel(), g.dir.clone())
        }
    };
    let log = databuild_bel::open(&url, &base).await?;
    if databuild_bel::is_postgres_url(&url) {
        let dir = graph.map_or(base, |g| g.dir.clone());
        return Ok(Bel {
            log,
            log_dir: dir.join(".databuild/logs"),
        });
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(&url);
    let log_dir = base
        .join(path)
        .parent()
        .map(|p| p.join("logs"))
        .unwrap_or_else(|| PathBuf::from(".databuild/logs"));
    Ok(Bel { log, log_dir })
}
