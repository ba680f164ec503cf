//! The job protocol (any language): `config` and lookup calls with validation of what
//! the program printed, and the environment of `exec`.

use std::{collections::HashMap, fmt::Write as _, process::Stdio, time::Duration};

use databuild_proto::{GraphLookupResponse, JobConfig, JobConfigureResponse};

use crate::graph::{Graph, JobDef, Lookup};

/// How long a `config` or lookup call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of a program's stderr an error shows.
const STDERR_LINES: usize = 20;

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
    /// It ran longer than allowed.
    #[error("job `{job}`: `config` for {refs} did not finish within {secs} s")]
    Timeout {
        job: String,
        refs: String,
        secs: u64,
    },
    /// Non-zero exit.
    #[error("job `{job}`: `config` for {refs} failed ({status}){stderr}")]
    Failed {
        job: String,
        refs: String,
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

/// Runs a program to completion with the graph's directory and env, capturing output.
async fn call(
    graph: &Graph,
    job: &str,
    env: &std::collections::BTreeMap<String, String>,
    argv: &[String],
    refs_desc: &str,
) -> Result<std::process::Output, ProtocolError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&graph.dir)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| ProtocolError::Spawn {
        job: job.to_string(),
        program: argv[0].clone(),
        error: source,
    })?;
    match tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(source)) => Err(ProtocolError::Spawn {
            job: job.to_string(),
            program: argv[0].clone(),
            error: source,
        }),
        Err(_) => Err(ProtocolError::Timeout {
            job: job.to_string(),
            refs: refs_desc.to_string(),
            secs: CALL_TIMEOUT.as_secs(),
        }),
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    job: &str,
    refs: &str,
    out: &std::process::Output,
) -> Result<T, ProtocolError> {
    let text = String::from_utf8_lossy(&out.stdout);
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
            output: stdout_excerpt(&out.stdout) + &stderr_excerpt(&out.stderr),
        },
    })
}

/// Calls `<entrypoint> config <refs...>` and validates the answer: every requested ref
/// an output of exactly one config, no ref in two configs, valid refs, and (with pattern
/// lookup) every output matching one of the job's patterns.
pub async fn configure(
    graph: &Graph,
    job: &JobDef,
    refs: &[String],
) -> Result<Vec<JobConfig>, ProtocolError> {
    if let Some(endpoint) = job.remote_endpoint() {
        let deadline = job.timeout.map_or(CALL_TIMEOUT, |t| t.min(CALL_TIMEOUT));
        let resp = remote_call(graph, endpoint, deadline, |r| r.configure(endpoint, refs))
            .await
            .map_err(|error| ProtocolError::Remote {
                job: job.label.clone(),
                refs: ref_list(refs),
                error: Box::new(error),
            })?;
        validate_configs(graph, job, refs, &resp.configs)?;
        return Ok(resp.configs);
    }
    let mut argv = job.entrypoint.clone();
    argv.push("config".into());
    argv.extend(refs.iter().cloned());
    let refs_desc = ref_list(refs);
    let out = call(graph, &job.label, &job.env, &argv, &refs_desc).await?;
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

/// Calls the graph's lookup program with `refs`.
pub async fn lookup(
    graph: &Graph,
    entrypoint: &[String],
    refs: &[String],
) -> Result<GraphLookupResponse, ProtocolError> {
    let mut argv = entrypoint.to_vec();
    argv.extend(refs.iter().cloned());
    let refs_desc = ref_list(refs);
    let who = "(lookup)";
    let out = call(graph, who, &Default::default(), &argv, &refs_desc).await?;
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
    remote_call(graph, endpoint, CALL_TIMEOUT, |r| r.lookup(endpoint, refs))
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
