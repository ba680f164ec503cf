//! Loading `databuild.toml`: parsing, validation and resolving entrypoints.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use super::{
    executor::{JobExecutor, RayOptions, SlurmResources, EXECUTORS},
    lookup::PatternLookup,
    ConfigMode, Graph, JobDef, Lookup,
};

/// A graph file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// No file at the path.
    #[error("graph file `{}` not found; pass `--graph path/to/databuild.toml`", path.display())]
    Missing { path: PathBuf },
    /// The file could not be read.
    #[error("cannot read graph file `{}`: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Not TOML, or not the expected keys.
    #[error("invalid graph file `{}`: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// Two jobs share a label.
    #[error("job label `{label}` is defined twice (jobs #{first} and #{second}) in `{}`; job labels must be unique", path.display())]
    DuplicateLabel {
        path: PathBuf,
        label: String,
        first: usize,
        second: usize,
    },
    /// A `produces` pattern does not compile.
    #[error("job `{job}`: invalid `produces` pattern `{pattern}`: {message}; patterns are Rust `regex` syntax, anchored at both ends")]
    InvalidPattern {
        job: String,
        pattern: String,
        message: String,
    },
    /// An empty entrypoint list.
    #[error("job `{job}`: `entrypoint` is empty; give the program to run, e.g. `entrypoint = [\"jobs/{job}.sh\"]`")]
    EmptyEntrypoint { job: String },
    /// The program does not exist.
    #[error("job `{job}`: entrypoint `{entrypoint}` not found (looked for `{}`); a path in `entrypoint` is relative to the graph file's directory", resolved.display())]
    EntrypointNotFound {
        job: String,
        entrypoint: String,
        resolved: PathBuf,
    },
    /// The program is not on PATH.
    #[error("job `{job}`: entrypoint `{entrypoint}` not found on PATH; install it, or give a path such as `./{entrypoint}` (relative to the graph file's directory)")]
    EntrypointNotOnPath { job: String, entrypoint: String },
    /// The program is not executable.
    #[error("job `{job}`: entrypoint `{}` is not executable; run `chmod +x {}`", path.display(), path.display())]
    EntrypointNotExecutable { job: String, path: PathBuf },
    /// A duration that does not parse.
    #[error("job `{job}`: invalid `{key}` value `{value}`; use a duration such as `30s`, `5m`, `1h` or `500ms`")]
    InvalidDuration {
        job: String,
        key: &'static str,
        value: String,
    },
    /// A `grpc://` entrypoint that is not `grpc://host:port` alone.
    #[error("job `{job}`: invalid remote entrypoint `{entrypoint}`: {message}; a remote job or lookup is written `entrypoint = \"grpc://host:port\"`")]
    InvalidEndpoint {
        job: String,
        entrypoint: String,
        message: String,
    },
    /// A `[[wants]]` schedule that cannot be used.
    #[error("in `{}`: {error}", path.display())]
    InvalidSchedule {
        path: PathBuf,
        error: crate::wants::ScheduleError,
    },
    /// A `[notify]` value that cannot be used.
    #[error("`[notify]`: invalid `{key}`: {message}")]
    InvalidNotify { key: &'static str, message: String },
    /// A `[graph]` value that cannot be used.
    #[error("`[graph]`: invalid `{key}`: {message}")]
    InvalidGraphValue { key: &'static str, message: String },
    /// A value out of range.
    #[error("job `{job}`: invalid `{key}`: {message}")]
    InvalidValue {
        job: String,
        key: &'static str,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    graph: GraphSection,
    #[serde(default)]
    jobs: Vec<JobSection>,
    lookup: Option<LookupSection>,
    service: Option<ServiceSection>,
    /// Schedules, read by `crate::wants::Schedule`.
    #[serde(default)]
    wants: Vec<toml::Table>,
    notify: Option<NotifySection>,
}

/// `[notify]`: where notifications about wants go.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifySection {
    webhook: Option<String>,
    command: Option<Vec<String>>,
    timeout: Option<String>,
}

/// `[service]`: how `databuild serve` runs this graph.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSection {
    /// The access-token file (`databuild auth add`), relative to the graph file.
    auth: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphSection {
    label: String,
    bel: Option<String>,
    /// The executor of jobs that name none.
    executor: Option<String>,
    /// Slurm resources of every Slurm job, unless the job sets its own.
    slurm: Option<SlurmResources>,
    /// Ray options of every Ray job, unless the job sets its own.
    ray: Option<RayOptions>,
    /// The `config_timeout` of jobs and the lookup program that set none.
    config_timeout: Option<String>,
    /// Most bytes a `config` or lookup program may print.
    max_config_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupSection {
    entrypoint: Entrypoint,
    config_timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Entrypoint {
    One(String),
    Many(Vec<String>),
}

impl Entrypoint {
    fn into_vec(self) -> Vec<String> {
        match self {
            Entrypoint::One(s) => vec![s],
            Entrypoint::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobSection {
    label: String,
    entrypoint: Entrypoint,
    #[serde(default)]
    produces: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<String>,
    config_timeout: Option<String>,
    #[serde(default)]
    retries: u32,
    retry_backoff: Option<String>,
    max_concurrency: Option<usize>,
    executor: Option<String>,
    slurm: Option<SlurmResources>,
    ray: Option<RayOptions>,
    kill_leftovers: Option<bool>,
    config_mode: Option<String>,
    version: Option<String>,
    #[serde(default)]
    version_files: Vec<String>,
    path: Option<String>,
}

impl Graph {
    /// Loads and validates the graph file at `path`.
    pub fn load(path: &Path) -> Result<Graph, GraphError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                GraphError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                GraphError::Read {
                    path: path.to_path_buf(),
                    error: source,
                }
            }
        })?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Self::from_toml(&text, path, &dir)
    }

    /// Parses graph file text; `path` names it in errors, `dir` resolves entrypoints.
    pub fn from_toml(text: &str, path: &Path, dir: &Path) -> Result<Graph, GraphError> {
        let doc: FileDoc = toml::from_str(text).map_err(|e| GraphError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, j) in doc.jobs.iter().enumerate() {
            if let Some(first) = seen.insert(&j.label, i + 1) {
                return Err(GraphError::DuplicateLabel {
                    path: path.to_path_buf(),
                    label: j.label.clone(),
                    first,
                    second: i + 1,
                });
            }
        }
        let config_timeout = match doc.graph.config_timeout {
            None => DEFAULT_CONFIG_TIMEOUT,
            Some(v) => parse_duration(&v).ok_or_else(|| GraphError::InvalidGraphValue {
                key: "config_timeout",
                message: format!(
                    "`{v}` is not a duration; use one such as `30s`, `5m`, `1h` or `500ms`"
                ),
            })?,
        };
        let max_config_bytes = doc
            .graph
            .max_config_bytes
            .unwrap_or(DEFAULT_MAX_CONFIG_BYTES);
        if max_config_bytes == 0 {
            return Err(GraphError::InvalidGraphValue {
                key: "max_config_bytes",
                message: "must be at least 1".into(),
            });
        }
        let defaults = Defaults {
            executor: doc.graph.executor.unwrap_or_else(|| "local".into()),
            slurm: doc.graph.slurm.unwrap_or_default(),
            ray: doc.graph.ray.unwrap_or_default(),
            config_timeout,
        };
        if !EXECUTORS.contains(&defaults.executor.as_str()) {
            return Err(GraphError::InvalidGraphValue {
                key: "executor",
                message: unknown_executor(&defaults.executor),
            });
        }
        if let Err((key, message)) = defaults.slurm.validate() {
            return Err(GraphError::InvalidGraphValue { key, message });
        }
        if let Err((key, message)) = defaults.ray.validate() {
            return Err(GraphError::InvalidGraphValue { key, message });
        }
        let mut jobs = Vec::with_capacity(doc.jobs.len());
        for j in doc.jobs {
            jobs.push(job_def(j, dir, &defaults)?);
        }
        let mut lookup_config_timeout = defaults.config_timeout;
        let lookup = match doc.lookup {
            Some(l) => {
                if let Some(v) = l.config_timeout {
                    lookup_config_timeout =
                        parse_duration(&v).ok_or(GraphError::InvalidDuration {
                            job: "[lookup]".into(),
                            key: "config_timeout",
                            value: v,
                        })?;
                }
                let ep = resolve_entrypoint("[lookup]", l.entrypoint.into_vec(), dir)?;
                match crate::remote::endpoint(&ep) {
                    Some(url) => Lookup::Remote(url.to_string()),
                    None => Lookup::Program(ep),
                }
            }
            None => Lookup::Patterns(PatternLookup::new(&jobs)?),
        };
        let mut schedules: Vec<crate::wants::Schedule> = Vec::new();
        for (i, t) in doc.wants.iter().enumerate() {
            let s = crate::wants::Schedule::parse(i + 1, t).map_err(|error| {
                GraphError::InvalidSchedule {
                    path: path.to_path_buf(),
                    error,
                }
            })?;
            if schedules.iter().any(|o| o.name == s.name) {
                return Err(GraphError::InvalidSchedule {
                    path: path.to_path_buf(),
                    error: crate::wants::ScheduleError {
                        index: i + 1,
                        name: Some(s.name.clone()),
                        key: "name".into(),
                        message: "another schedule has this name; names must be unique".into(),
                    },
                });
            }
            schedules.push(s);
        }
        let notify = match doc.notify {
            None => Notify::default(),
            Some(n) => Notify::parse(n.webhook, n.command, n.timeout)?,
        };
        Ok(Graph {
            schedules,
            notify,
            label: doc.graph.label,
            dir: dir.to_path_buf(),
            bel: doc.graph.bel,
            jobs,
            lookup,
            lookup_config_timeout,
            max_config_bytes,
            service_auth: doc.service.and_then(|s| s.auth).map(|a| dir.join(a)),
            remote: None,
        })
    }
}

/// `[notify]`: where notifications about wants go.
#[derive(Debug, Clone, Default)]
pub struct Notify {
    /// `webhook`: an `http://` or `https://` URL that gets a JSON POST.
    pub webhook: Option<String>,
    /// `command`: a program that gets the JSON on stdin.
    pub command: Option<Vec<String>>,
    /// `timeout`: how long one delivery may take (default 10 s).
    pub timeout: Duration,
}

impl Notify {
    fn parse(
        webhook: Option<String>,
        command: Option<Vec<String>>,
        timeout: Option<String>,
    ) -> Result<Notify, GraphError> {
        if let Some(w) = &webhook {
            let rest = w
                .strip_prefix("http://")
                .or_else(|| w.strip_prefix("https://"))
                .unwrap_or("");
            if rest.is_empty() || rest.starts_with('/') {
                return Err(GraphError::InvalidNotify {
                    key: "webhook",
                    message: format!("`{w}` is not an `http://` or `https://` URL"),
                });
            }
        }
        if command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(GraphError::InvalidNotify {
                key: "command",
                message:
                    "empty; give the program and its arguments, e.g. `command = [\"notify.sh\"]`"
                        .into(),
            });
        }
        let timeout = match timeout {
            None => Duration::from_secs(10),
            Some(t) => parse_duration(&t).ok_or_else(|| GraphError::InvalidNotify {
                key: "timeout",
                message: format!("`{t}` is not a duration; use e.g. `10s`"),
            })?,
        };
        Ok(Notify {
            webhook,
            command,
            timeout,
        })
    }
}

/// How long a `config` or lookup call may take unless the graph file says otherwise.
pub const DEFAULT_CONFIG_TIMEOUT: Duration = Duration::from_secs(60);
/// How much a `config` or lookup program may print unless the graph file says otherwise.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// What `[graph]` sets for every job.
struct Defaults {
    executor: String,
    slurm: SlurmResources,
    ray: RayOptions,
    config_timeout: Duration,
}

fn unknown_executor(name: &str) -> String {
    let available: Vec<String> = EXECUTORS.iter().map(|e| format!("`{e}`")).collect();
    format!(
        "unknown executor `{name}`; available: [{}]",
        available.join(", ")
    )
}

fn job_def(j: JobSection, dir: &Path, defaults: &Defaults) -> Result<JobDef, GraphError> {
    let label = j.label;
    let explicit_executor = j.executor.is_some();
    let mut executor = match j.executor.as_deref().unwrap_or(&defaults.executor) {
        "local" => JobExecutor::Local,
        "slurm" => {
            let resources = j.slurm.unwrap_or_default().or(&defaults.slurm);
            if let Err((key, message)) = resources.validate() {
                return Err(GraphError::InvalidValue {
                    job: label,
                    key,
                    message,
                });
            }
            JobExecutor::Slurm(resources)
        }
        "ray" => {
            let options = j.ray.unwrap_or_default().or(&defaults.ray);
            if let Err((key, message)) = options.validate() {
                return Err(GraphError::InvalidValue {
                    job: label,
                    key,
                    message,
                });
            }
            JobExecutor::Ray(options)
        }
        other => {
            return Err(GraphError::InvalidValue {
                message: unknown_executor(other),
                job: label,
                key: "executor",
            });
        }
    };
    if j.max_concurrency == Some(0) {
        return Err(GraphError::InvalidValue {
            job: label,
            key: "max_concurrency",
            message: "must be at least 1".into(),
        });
    }
    let duration = |key: &'static str, v: Option<String>| -> Result<Option<Duration>, GraphError> {
        v.map(|v| {
            parse_duration(&v).ok_or_else(|| GraphError::InvalidDuration {
                job: label.clone(),
                key,
                value: v.clone(),
            })
        })
        .transpose()
    };
    let timeout = duration("timeout", j.timeout)?;
    let config_timeout =
        duration("config_timeout", j.config_timeout)?.unwrap_or(defaults.config_timeout);
    let retry_backoff =
        duration("retry_backoff", j.retry_backoff)?.unwrap_or(Duration::from_secs(1));
    let entrypoint = resolve_entrypoint(&label, j.entrypoint.into_vec(), dir)?;
    let version = super::version::job_version(j.version.as_deref(), &j.version_files, dir)
        .map_err(|message| GraphError::InvalidValue {
            job: label.clone(),
            key: "version_files",
            message,
        })?;
    if let Some(path) = &j.path {
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|s| s == "..") {
            return Err(GraphError::InvalidValue {
                job: label,
                key: "path",
                message: format!(
                    "`{path}` must be a path relative to the graph file's directory, without `..`, e.g. `data/out/{{ref}}.csv`"
                ),
            });
        }
    }
    let config_mode = match j.config_mode.as_deref() {
        None | Some("per-call") => ConfigMode::PerCall,
        Some("persistent") => ConfigMode::Persistent,
        Some(other) => {
            return Err(GraphError::InvalidValue {
                job: label,
                key: "config_mode",
                message: format!(
                    "`{other}` is not a config mode; use `per-call` (the default: one `config` process per planning wave) or `persistent` (one process for the whole planning, one request per line on stdin)"
                ),
            });
        }
    };
    if config_mode == ConfigMode::Persistent && crate::remote::endpoint(&entrypoint).is_some() {
        return Err(GraphError::InvalidValue {
            job: label,
            key: "config_mode",
            message: "a remote (`grpc://`) job is configured over gRPC; remove `config_mode` from this job".into(),
        });
    }
    if crate::remote::endpoint(&entrypoint).is_some() && executor != JobExecutor::Local {
        if explicit_executor {
            return Err(GraphError::InvalidValue {
                job: label,
                key: "executor",
                message: format!(
                    "a remote (`grpc://`) job runs on its own server, not on executor `{}`; remove `executor` from this job",
                    executor.name()
                ),
            });
        }
        // `[graph] executor` applies to programs; a remote job runs on its own server.
        executor = JobExecutor::Local;
    }
    Ok(JobDef {
        label,
        entrypoint,
        produces: j.produces,
        env: j.env,
        timeout,
        config_timeout,
        retries: j.retries,
        retry_backoff,
        max_concurrency: j.max_concurrency,
        executor,
        kill_leftovers: j.kill_leftovers.unwrap_or(true),
        config_mode,
        version,
        path: j.path,
    })
}

/// Resolves the program of an entrypoint: a path with a `/` relative to `dir`, else a
/// command on PATH. Checks that it exists and is executable. A `grpc://host:port` URL (a
/// remote server) is checked for form only and kept as it is.
fn resolve_entrypoint(
    job: &str,
    mut ep: Vec<String>,
    dir: &Path,
) -> Result<Vec<String>, GraphError> {
    let Some(program) = ep.first().cloned() else {
        return Err(GraphError::EmptyEntrypoint {
            job: job.to_string(),
        });
    };
    if program.starts_with(crate::remote::SCHEME) {
        let bad = |message: String| GraphError::InvalidEndpoint {
            job: job.to_string(),
            entrypoint: ep.join(" "),
            message,
        };
        if ep.len() > 1 {
            return Err(bad("a remote entrypoint takes no arguments".into()));
        }
        crate::remote::check_endpoint(&program).map_err(bad)?;
        return Ok(ep);
    }
    let resolved = if program.contains('/') {
        let p = dir.join(&program);
        if !p.is_file() {
            return Err(GraphError::EntrypointNotFound {
                job: job.to_string(),
                entrypoint: program,
                resolved: p,
            });
        }
        p
    } else {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(&program))
            .find(|p| p.is_file())
            .ok_or_else(|| GraphError::EntrypointNotOnPath {
                job: job.to_string(),
                entrypoint: program.clone(),
            })?
    };
    if !is_executable(&resolved) {
        return Err(GraphError::EntrypointNotExecutable {
            job: job.to_string(),
            path: resolved,
        });
    }
    ep[0] = resolved.to_string_lossy().into_owned();
    Ok(ep)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// Parses `500ms`, `30s`, `5m`, `2h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        "w" => n * 7.0 * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("lots"), None);
        assert_eq!(parse_duration("5 years"), None);
    }
}
