//! A graph: its jobs, how refs map to jobs (lookup), and where its event log lives.

mod executor;
mod file;
mod lookup;
mod version;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

pub use executor::{JobExecutor, SlurmResources, EXECUTORS};
pub use file::{
    parse_duration, GraphError, Notify, DEFAULT_CONFIG_TIMEOUT, DEFAULT_MAX_CONFIG_BYTES,
};
pub use lookup::{LookupError, LookupResult};
pub use version::config_fingerprint;

/// One job of a graph.
#[derive(Debug, Clone)]
pub struct JobDef {
    /// Unique label.
    pub label: String,
    /// Program and leading arguments, the program resolved to an absolute path when it is
    /// a file relative to the graph file; or one `grpc://host:port` URL (a remote job).
    pub entrypoint: Vec<String>,
    /// The anchored `produces` patterns as written.
    pub produces: Vec<String>,
    /// Extra environment for configure and execute.
    pub env: BTreeMap<String, String>,
    /// Kill the job (its whole process group) after this long.
    pub timeout: Option<Duration>,
    /// Kill a `config` call (its whole process group) after this long.
    pub config_timeout: Duration,
    /// Extra attempts after a failed execute.
    pub retries: u32,
    /// Delay before the first retry; doubles each attempt.
    pub retry_backoff: Duration,
    /// At most this many runs of this job at once.
    pub max_concurrency: Option<usize>,
    /// Where `exec` runs: a local process group or a cluster engine.
    pub executor: JobExecutor,
    /// Kill what is left of a local job's process group once the job exited (its
    /// background processes); `kill_leftovers = false` in the graph file keeps them.
    pub kill_leftovers: bool,
    /// How its `config` program is run: once per planning wave, or one process per
    /// planning answering a request per line.
    pub config_mode: ConfigMode,
    /// The job's version: its `version` with the content hash of its `version_files`
    /// ("" when it declares neither), recorded with every build.
    pub version: String,
    /// Where each output is, relative to the graph file, with `{ref}` standing for the
    /// ref: databuild hashes it for the output's digest when the job reports none.
    pub path: Option<String>,
}

/// How a job's `config` program is run (`config_mode` in the graph file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConfigMode {
    /// `<entrypoint> config <refs...>`, one process per planning wave (the default).
    #[default]
    PerCall,
    /// `<entrypoint> config --persistent`, one process for the whole planning: one JSON
    /// request (`{"refs": [...]}`) per line on its stdin, one `JobConfigureResponse` per
    /// line on its stdout.
    Persistent,
}

/// How refs are mapped to jobs.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The jobs' `produces` patterns, indexed by literal prefix.
    Patterns(lookup::PatternLookup),
    /// An external program answering `GraphLookup` in JSON.
    Program(Vec<String>),
    /// A `GraphLookup` gRPC server at this `grpc://host:port` URL.
    Remote(String),
}

/// A loaded, validated graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The graph label.
    pub label: String,
    /// Directory of the graph file: entrypoints and relative paths resolve here.
    pub dir: PathBuf,
    /// The event log URL from the file, if any.
    pub bel: Option<String>,
    /// Jobs in file order.
    pub jobs: Vec<JobDef>,
    /// How refs map to jobs.
    pub lookup: Lookup,
    /// Kill a lookup program call (its whole process group) after this long.
    pub lookup_config_timeout: Duration,
    /// Most bytes a `config` or lookup program may print on stdout.
    pub max_config_bytes: u64,
    /// `[service] auth`: the access-token file `databuild serve` requires tokens from
    /// (resolved against the graph file's directory).
    pub service_auth: Option<PathBuf>,
    /// `[[wants]]`: schedules that create wants tick by tick.
    pub schedules: Vec<crate::wants::Schedule>,
    /// `[notify]`: where notifications about wants go.
    pub notify: Notify,
    /// The client for `grpc://` entrypoints (jobs and lookup), if the program has one.
    pub remote: Option<Arc<dyn crate::remote::RemoteJobs>>,
}

impl JobDef {
    /// The `grpc://host:port` URL of a remote job.
    pub fn remote_endpoint(&self) -> Option<&str> {
        crate::remote::endpoint(&self.entrypoint)
    }
}

impl Graph {
    /// Whether any job or the lookup is a `grpc://` server.
    pub fn uses_remote(&self) -> bool {
        matches!(self.lookup, Lookup::Remote(_))
            || self.jobs.iter().any(|j| j.remote_endpoint().is_some())
    }

    /// The job labelled `label`.
    pub fn job(&self, label: &str) -> Option<&JobDef> {
        self.jobs.iter().find(|j| j.label == label)
    }

    /// The event log URL to use when none is given: the file's, else
    /// `.databuild/bel.sqlite` beside the graph file.
    pub fn default_bel(&self) -> String {
        self.bel.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.dir.join(".databuild/bel.sqlite").display()
            )
        })
    }
}
