//! Resolving the graph file and the event log from the global flags.

use std::{path::PathBuf, sync::Arc};

use databuild_bel::EventLog;
use databuild_core::{CoreError, Graph};

use crate::cli::Cli;

/// The event log and where job logs live.
pub struct Bel {
    pub log: Arc<dyn EventLog>,
    pub log_dir: PathBuf,
}

/// Loads the graph file named by `--graph`.
pub fn graph(cli: &Cli) -> Result<Graph, CoreError> {
    Ok(Graph::load(&cli.graph)?)
}

/// Opens the event log: `--bel`, else the graph's. Commands that only read the log work
/// without a graph file when `--bel` is given.
pub fn bel(cli: &Cli, graph: Option<&Graph>) -> Result<Bel, CoreError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let (url, base) = match (&cli.bel, graph) {
        (Some(url), _) => (url.clone(), cwd),
        (None, Some(g)) => (g.default_bel(), g.dir.clone()),
        (None, None) => {
            let g = self::graph(cli)?;
            (g.default_bel(), g.dir.clone())
        }
    };
    let log = databuild_bel::open(&url, &base)?;
    let path = url.strip_prefix("sqlite://").unwrap_or(&url);
    let log_dir = base
        .join(path)
        .parent()
        .map(|p| p.join("logs"))
        .unwrap_or_else(|| PathBuf::from(".databuild/logs"));
    Ok(Bel { log, log_dir })
}
