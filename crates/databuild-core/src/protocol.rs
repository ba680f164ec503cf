//! The job protocol (any language): `config` and lookup calls with validation of what
//! the program printed, and the environment of `exec`.

mod call;
mod persistent;

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use databuild_proto::{GraphLookupResponse, JobConfig, JobConfigureResponse};

pub use call::{ARGV_MAX_BYTES, ARGV_MAX_REFS, REFS_FILE_VAR};

use crate::graph::{ConfigMode, Graph, JobDef, Lookup};

/// How much of a program's stderr an error shows.
const STDERR_LINES: usize = 20;

/// Whose call it was, as errors name it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A job's `config`.
    Job(String),
    /// The graph's `[lookup]` program.
    Lookup(String),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Job(label) => write!(f, "job `{label}`: `config`"),
            Caller::Lookup(program) => write!(f, "lookup program `{program}`"),
        }
    }
}

impl Caller {
    /// The graph file key that gives this call more time.
    fn timeout_key(&self) -> String {
        match self {
            Caller::Job(label) => format!(
                "`config_timeout` of job `{label}` (or `[graph] config_timeout` for every job)"
            ),
            Caller::Lookup(_) => "`config_timeout` in `[lookup]`".into(),
        }
    }
}

/// "64 MiB", "4 KiB", "1000 bytes".
fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// "1500ms", "30s", "2m": a limit as a person would write it in the graph file.
fn human_duration(d: &Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A `config` or lookup call that did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The program could not be started.
    #[error("job `{job}`: cannot start `{program}`: {error}")]
    Spawn {
        job: String,
        program: String,
        error: std::io::Error,
    },
    /// It ran longer than its `config_timeout`; its process group was killed.
    #[error("{caller} for {refs} timed out after {} and was killed with its process group; if it needs longer, raise {}", human_duration(after), caller.timeout_key())]
    Timeout {
        caller: Caller,
        refs: String,
        after: Duration,
    },
    /// It printed more than `[graph] max_config_bytes`; its process group was killed.
    #[error("{caller} for {refs} printed more than {} on stdout and was killed with its process group; make its answer smaller, or raise `[graph] max_config_bytes` (default {})", human_bytes(*limit), human_bytes(crate::graph::DEFAULT_MAX_CONFIG_BYTES))]
    TooLarge {
        caller: Caller,
        refs: String,
        limit: u64,
    },
    /// The file of requested refs could not be written.
    #[error("{caller} for {refs}: cannot write the refs file in `{}`: {error}; set `TMPDIR` to a writable directory", dir.display())]
    RefsFile {
        caller: Caller,
        refs: String,
        dir: std::path::PathBuf,
        error: std::io::Error,
    },
    /// Reading its output failed.
    #[error("{caller} for {refs}: cannot read its output: {error}")]
    Read {
        caller: Caller,
        refs: String,
        error: std::io::Error,
    },
    /// Non-zero exit.
    #[error("job `{job}`: `config` for {refs} failed ({status}){stderr}")]
    Failed {
        job: String,
        refs: String,
        status: String,
        stderr: String,
    },
    /// A persistent `config` exited (or closed its stdout) before answering a request.
    #[error("job `{job}`: persistent `config` for {refs} {status} before answering; with `config_mode = \"persistent\"` it must answer each request line on stdin with one line of JSON on stdout, and keep running until its stdin is closed{stderr}")]
    PersistentExited {
        job: String,
        refs: String,
        /// "exited (exit code 3)", or "closed its stdout".
        status: String,
        stderr: String,
    },
    /// Stdout was not JSON.
    #[error("job `{job}`: `config` for {refs} printed invalid JSON: {message}; it must print one `JobConfigureResponse` object on stdout and nothing else (write logs to stderr){output}")]
    NotJson {
        job: String,
        refs: String,
        message: String,
        /// Excerpts of the program's stdout and stderr.
        output: String,
    },
    /// Stdout was JSON but not a `JobConfigureResponse` / `GraphLookupResponse`.
    #[error("job `{job}`: `config` for {refs} printed JSON of the wrong shape: {message}; expected {{\"configs\": [{{\"outputs\": [{{\"str\": \"...\"}}], \"inputs\": [...], \"args\": [...], \"env\": {{}}}}]}}")]
    WrongShape {
        job: String,
        refs: String,
        message: String,
    },
    /// Requested refs that no config produces.
    #[error("job `{job}`: `config` returned no config producing {missing}; every requested ref must be an output of exactly one config")]
    MissingRefs { job: String, missing: String },
    /// A ref produced by two configs.
    #[error("job `{job}`: `config` returned two configs producing `{partition_ref}` (configs #{first} and #{second}); a ref must be an output of exactly one config")]
    DuplicateRef {
        job: String,
        partition_ref: String,
        first: usize,
        second: usize,
    },
    /// A config output outside the job's patterns.
    #[error("job `{job}`: `config` returned output `{partition_ref}`, which matches none of the job's `produces` patterns [{patterns}]; add a pattern that matches it or stop returning it")]
    UnmatchedOutput {
        job: String,
        partition_ref: String,
        patterns: String,
    },
    /// A config with an invalid ref.
    #[error("job `{job}`: `config` returned an invalid {role} in config #{config}: {error}")]
    InvalidRef {
        job: String,
        role: &'static str,
        config: usize,
        error: databuild_proto::RefError,
    },
    /// A config with no outputs.
    #[error("job `{job}`: `config` returned config #{config} with no outputs")]
    NoOutputs { job: String, config: usize },
    /// A remote job or lookup server gave no usable answer.
    #[error("job `{job}`: `config` for {refs} failed: {error}")]
    Remote {
        job: String,
        refs: String,
        error: Box<crate::remote::RemoteError>,
    },
    /// The lookup program named a job the graph does not have.
    #[error("lookup `{program}` answered with unknown job `{job}`")]
    UnknownJob { program: String, job: String },
}

/// Formats refs as "[`a`, `b`]", eliding past 10.
pub fn ref_list<S: AsRef<str>>(refs: &[S]) -> String {
    let mut out = String::from("[");
    for (i, r) in refs.iter().take(10).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "`{}`", r.as_ref());
    }
    if refs.len() > 10 {
        let _ = write!(out, ", ... {} more", refs.len() - 10);
    }
    out.push(']');
    out
}

/// The first lines of what a program printed on stdout, to show where it went wrong.
fn stdout_excerpt(stdout: &[u8]) -> String {
    const LINES: usize = 5;
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "\n  (no stdout)".into();
    }
    let mut out = String::from("\n  stdout:");
    for l in lines.iter().take(LINES) {
        let short: String = l.chars().take(200).collect();
        let more = if short.len() < l.len() { " ..." } else { "" };
        let _ = write!(out, "\n    {short}{more}");
    }
    if lines.len() > LINES {
        let _ = write!(out, "\n    ... {} more lines", lines.len() - LINES);
    }
    out
}

fn stderr_excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "\n  (no stderr)".into();
    }
    let skip = lines.len().saturating_sub(STDERR_LINES);
    let mut out = String::from("\n  stderr:");
    if skip > 0 {
        let _ = write!(out, "\n    ... {skip} earlier lines");
    }
    for l in &lines[skip..] {
        let _ = write!(out, "\n    {l}");
    }
    out
}

/// Describes how a process ended: "exit code 3" or "killed by signal 9".
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s} ({})", signal_name(s)),
        _ => "unknown exit".into(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGHUP => "SIGHUP",
        libc::SIGBUS => "SIGBUS",
        _ => "signal",
    }
}

/// Runs `argv` (refs appended when they fit) with the graph's directory, `env` and
/// `DATABUILD_REFS_FILE`, within the time `timeout` and the graph's stdout cap.
async fn call(
    graph: &Graph,
    caller: &Caller,
    env: &std::collections::BTreeMap<String, String>,
    mut argv: Vec<String>,
    refs: &[String],
    timeout: Duration,
    refs_desc: &str,
) -> Result<call::Finished, ProtocolError> {
    if call::refs_fit_argv(refs) {
        argv.extend(refs.iter().cloned());
    }
    let limits = call::Limits {
        timeout,
        max_stdout: graph.max_config_bytes,
    };
    call::run(&graph.dir, env, &argv, refs, limits)
        .await
        .map_err(|failure| match failure {
            call::Failure::Spawn(error) => ProtocolError::Spawn {
                job: match caller {
                    Caller::Job(label) => label.clone(),
                    Caller::Lookup(_) => "(lookup)".into(),
                },
                program: argv[0].clone(),
                error,
            },
            call::Failure::RefsFile(error) => ProtocolError::RefsFile {
                caller: caller.clone(),
                refs: refs_desc.to_string(),
                dir: std::env::temp_dir(),
                error,
            },
            call::Failure::Io(error) => ProtocolError::Read {
                caller: caller.clone(),
                refs: refs_desc.to_string(),
                error,
            },
            call::Failure::TimedOut => ProtocolError::Timeout {
                caller: caller.clone(),
                refs: refs_desc.to_string(),
                after: timeout,
            },
            call::Failure::TooLarge => ProtocolError::TooLarge {
                caller: caller.clone(),
                refs: refs_desc.to_string(),
                limit: graph.max_config_bytes,
            },
        })
}

fn parse<T: serde::de::DeserializeOwned>(
    job: &str,
    refs: &str,
    out: &call::Finished,
) -> Result<T, ProtocolError> {
    parse_bytes(job, refs, &out.stdout, &out.stderr)
}

fn parse_bytes<T: serde::de::DeserializeOwned>(
    job: &str,
    refs: &str,
    stdout: &[u8],
    stderr: &[u8],
) -> Result<T, ProtocolError> {
    let text = String::from_utf8_lossy(stdout);
    serde_json::from_str(&text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ProtocolError::WrongShape {
            job: job.to_string(),
            refs: refs.to_string(),
            message: e.to_string(),
        },
        _ => ProtocolError::NotJson {
            job: job.to_string(),
            refs: refs.to_string(),
            message: e.to_string(),
            output: stdout_excerpt(stdout) + &stderr_excerpt(stderr),
        },
    })
}

/// Calls `<entrypoint> config <refs...>` (the refs always in `DATABUILD_REFS_FILE`, and
/// on the command line only while [`call::refs_fit_argv`]) and validates the answer:
/// every requested ref an output of exactly one config, no ref in two configs, valid refs, and (with pattern
/// lookup) every output matching one of the job's patterns.
pub async fn configure(
    graph: &Graph,
    job: &JobDef,
    refs: &[String],
    sessions: &ConfigSessions,
) -> Result<Vec<JobConfig>, ProtocolError> {
    if let Some(endpoint) = job.remote_endpoint() {
        let resp = remote_call(graph, endpoint, job.config_timeout, |r| {
            r.configure(endpoint, refs)
        })
        .await
        .map_err(|error| ProtocolError::Remote {
            job: job.label.clone(),
            refs: ref_list(refs),
            error: Box::new(error),
        })?;
        validate_configs(graph, job, refs, &resp.configs)?;
        return Ok(resp.configs);
    }
    if job.config_mode == ConfigMode::Persistent {
        return configure_persistent(graph, job, refs, sessions).await;
    }
    let mut argv = job.entrypoint.clone();
    argv.push("config".into());
    let refs_desc = ref_list(refs);
    let caller = Caller::Job(job.label.clone());
    let out = call(
        graph,
        &caller,
        &job.env,
        argv,
        refs,
        job.config_timeout,
        &refs_desc,
    )
    .await?;
    if !out.status.success() {
        return Err(ProtocolError::Failed {
            job: job.label.clone(),
            refs: refs_desc,
            status: describe_exit(out.status),
            stderr: stderr_excerpt(&out.stderr),
        });
    }
    let resp: JobConfigureResponse = parse(&job.label, &refs_desc, &out)?;
    validate_configs(graph, job, refs, &resp.configs)?;
    Ok(resp.configs)
}

/// The persistent `config` processes of one planning (`config_mode = "persistent"`), one
/// per job, each started on its job's first request and killed when the last clone of
/// the sessions is dropped (or when it fails).
#[derive(Clone, Default)]
pub struct ConfigSessions(Arc<Mutex<HashMap<String, Session>>>);

type Session = Arc<tokio::sync::Mutex<Option<persistent::Process>>>;

impl ConfigSessions {
    fn session(&self, label: &str) -> Session {
        let mut all = self.0.lock().expect("config sessions lock");
        all.entry(label.to_string()).or_default().clone()
    }
}

/// Asks job `job`'s persistent `config` process (started on first use) for `refs`: one
/// `{"refs": [...]}` line on its stdin, one `JobConfigureResponse` line back, validated
/// as a per-call answer is.
async fn configure_persistent(
    graph: &Graph,
    job: &JobDef,
    refs: &[String],
    sessions: &ConfigSessions,
) -> Result<Vec<JobConfig>, ProtocolError> {
    let session = sessions.session(&job.label);
    let mut slot = session.lock().await;
    let refs_desc = ref_list(refs);
    let caller = Caller::Job(job.label.clone());
    let mut process = match slot.take() {
        Some(p) => p,
        None => {
            let mut argv = job.entrypoint.clone();
            argv.extend(["config".to_string(), "--persistent".to_string()]);
            persistent::Process::spawn(&graph.dir, &job.env, &argv).map_err(|f| match f {
                persistent::Failure::Spawn(error) => ProtocolError::Spawn {
                    job: job.label.clone(),
                    program: argv[0].clone(),
                    error,
                },
                other => unreachable!("spawning fails only to start: {other:?}"),
            })?
        }
    };
    let limits = call::Limits {
        timeout: job.config_timeout,
        max_stdout: graph.max_config_bytes,
    };
    let line = match process.request(refs, limits).await {
        Ok(line) => line,
        Err(failure) => {
            let stderr = process.stderr_tail().await;
            return Err(match failure {
                persistent::Failure::Exited(status) => ProtocolError::PersistentExited {
                    job: job.label.clone(),
                    refs: refs_desc,
                    status: status.map_or("closed its stdout".into(), |s| {
                        format!("exited ({})", describe_exit(s))
                    }),
                    stderr: stderr_excerpt(&stderr),
                },
                persistent::Failure::TimedOut => ProtocolError::Timeout {
                    caller,
                    refs: refs_desc,
                    after: job.config_timeout,
                },
                persistent::Failure::TooLarge => ProtocolError::TooLarge {
                    caller,
                    refs: refs_desc,
                    limit: graph.max_config_bytes,
                },
                persistent::Failure::Io(error) => ProtocolError::Read {
                    caller,
                    refs: refs_desc,
                    error,
                },
                persistent::Failure::Spawn(error) => ProtocolError::Read {
                    caller,
                    refs: refs_desc,
                    error,
                },
            });
        }
    };
    let resp: JobConfigureResponse = match parse_bytes(&job.label, &refs_desc, &line, &[]) {
        Ok(resp) => resp,
        Err(ProtocolError::NotJson {
            job, refs, message, ..
        }) => {
            // A malformed line leaves the stream out of step: the process is killed,
            // and what it printed shown.
            let stderr = process.abandon().await;
            return Err(ProtocolError::NotJson {
                job,
                refs,
                message,
                output: stdout_excerpt(&line) + &stderr_excerpt(&stderr),
            });
        }
        Err(e) => return Err(e),
    };
    validate_configs(graph, job, refs, &resp.configs)?;
    *slot = Some(process);
    Ok(resp.configs)
}

fn validate_configs(
    graph: &Graph,
    job: &JobDef,
    refs: &[String],
    configs: &[JobConfig],
) -> Result<(), ProtocolError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, c) in configs.iter().enumerate() {
        let n = i + 1;
        if c.outputs.is_empty() {
            return Err(ProtocolError::NoOutputs {
                job: job.label.clone(),
                config: n,
            });
        }
        for o in &c.outputs {
            databuild_proto::validate_ref(&o.str).map_err(|source| ProtocolError::InvalidRef {
                job: job.label.clone(),
                role: "output",
                config: n,
                error: source,
            })?;
            if let Some(first) = producer.insert(&o.str, n) {
                return Err(ProtocolError::DuplicateRef {
                    job: job.label.clone(),
                    partition_ref: o.str.clone(),
                    first,
                    second: n,
                });
            }
            if let Lookup::Patterns(p) = &graph.lookup {
                if !p.job_matches(&job.label, &o.str) {
                    let patterns: Vec<String> =
                        job.produces.iter().map(|p| format!("`{p}`")).collect();
                    return Err(ProtocolError::UnmatchedOutput {
                        job: job.label.clone(),
                        partition_ref: o.str.clone(),
                        patterns: patterns.join(", "),
                    });
                }
            }
        }
        for d in &c.inputs {
            let r = d
                .partition_ref
                .as_ref()
                .map(|r| r.str.as_str())
                .unwrap_or("");
            databuild_proto::validate_ref(r).map_err(|source| ProtocolError::InvalidRef {
                job: job.label.clone(),
                role: "input",
                config: n,
                error: source,
            })?;
        }
    }
    let missing: Vec<&String> = refs
        .iter()
        .filter(|r| !producer.contains_key(r.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(ProtocolError::MissingRefs {
            job: job.label.clone(),
            missing: ref_list(&missing),
        });
    }
    Ok(())
}

/// Calls the graph's lookup program with `refs` (on the command line when they fit, and
/// always in `DATABUILD_REFS_FILE`).
pub async fn lookup(
    graph: &Graph,
    entrypoint: &[String],
    refs: &[String],
) -> Result<GraphLookupResponse, ProtocolError> {
    let refs_desc = ref_list(refs);
    let who = "(lookup)";
    let caller = Caller::Lookup(entrypoint[0].clone());
    let out = call(
        graph,
        &caller,
        &Default::default(),
        entrypoint.to_vec(),
        refs,
        graph.lookup_config_timeout,
        &refs_desc,
    )
    .await?;
    if !out.status.success() {
        return Err(ProtocolError::Failed {
            job: who.into(),
            refs: refs_desc,
            status: describe_exit(out.status),
            stderr: stderr_excerpt(&out.stderr),
        });
    }
    parse(who, &refs_desc, &out)
}

/// Calls a `GraphLookup` server with `refs`.
pub async fn lookup_remote(
    graph: &Graph,
    endpoint: &str,
    refs: &[String],
) -> Result<GraphLookupResponse, ProtocolError> {
    if refs.is_empty() {
        return Ok(GraphLookupResponse::default());
    }
    remote_call(graph, endpoint, graph.lookup_config_timeout, |r| {
        r.lookup(endpoint, refs)
    })
    .await
    .map_err(|error| ProtocolError::Remote {
        job: "(lookup)".into(),
        refs: ref_list(refs),
        error: Box::new(error),
    })
}

/// One call to a remote server through the graph's client, within `deadline`.
async fn remote_call<'a, T, F>(
    graph: &'a Graph,
    endpoint: &str,
    deadline: Duration,
    call: impl FnOnce(&'a dyn crate::remote::RemoteJobs) -> F,
) -> Result<T, crate::remote::RemoteError>
where
    F: std::future::Future<Output = Result<T, crate::remote::RemoteError>>,
{
    let Some(remote) = graph.remote.as_deref() else {
        return Err(crate::remote::RemoteError::NoClient {
            endpoint: endpoint.to_string(),
        });
    };
    crate::remote::with_deadline(endpoint, deadline, call(remote)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_written_in_the_graph_file() {
        assert_eq!(human_duration(&Duration::from_secs(1)), "1s");
        assert_eq!(human_duration(&Duration::from_secs(120)), "2m");
        assert_eq!(human_duration(&Duration::from_millis(1500)), "1500ms");
        assert_eq!(human_bytes(64 * 1024 * 1024), "64 MiB");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
    }
}

/// How a job's `exec` is called: `<entrypoint> exec <args...>`, the JobConfig as JSON on
/// stdin, and the environment the protocol promises (the job's `env`, the config's `env`,
/// then `DATABUILD_JOB_RUN_ID`, `DATABUILD_GRAPH_RUN_ID`, `DATABUILD_OUTPUTS`,
/// `DATABUILD_JOB_CONFIG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCall {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment added to the caller's.
    pub env: Vec<(String, String)>,
    /// Written to stdin.
    pub stdin: String,
}

/// The `exec` call of job run `job_run_id` (in graph run `run_id`) of `job` with
/// `config`, building `outputs`.
pub fn exec_call(
    job: &crate::graph::JobDef,
    config: &databuild_proto::JobConfig,
    outputs: &[String],
    job_run_id: &str,
    run_id: &str,
) -> ExecCall {
    let config_json = databuild_proto::to_json(config);
    let outputs_json = serde_json::to_string(outputs).expect("strings serialize");
    let mut env: Vec<(String, String)> = job
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(config.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.push(("DATABUILD_JOB_RUN_ID".into(), job_run_id.to_string()));
    env.push(("DATABUILD_GRAPH_RUN_ID".into(), run_id.to_string()));
    env.push(("DATABUILD_OUTPUTS".into(), outputs_json));
    env.push(("DATABUILD_JOB_CONFIG".into(), config_json.clone()));
    let mut argv = job.entrypoint.clone();
    argv.push("exec".into());
    argv.extend(config.args.iter().cloned());
    ExecCall {
        argv,
        env,
        stdin: config_json,
    }
}
