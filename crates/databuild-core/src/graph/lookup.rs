//! Lookup: which job produces each partition ref, by `produces` patterns (no process
//! spawned) or by an external `GraphLookup` program.

mod patterns;

use std::collections::{BTreeMap, HashMap};

use databuild_proto::{GraphLookupResponse, JobLabel, PartitionRef, TaskRef};

pub use patterns::PatternLookup;

use super::{Graph, Lookup};
use crate::protocol;

/// The refs grouped by the job that produces them, and the refs no job produces.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// Job label → refs it must produce, in request order.
    pub by_job: BTreeMap<String, Vec<String>>,
    /// Refs no job produces (external data).
    pub unproduced: Vec<String>,
}

impl LookupResult {
    /// The answer as `GraphLookup.Lookup` gives it: one task ref per job, with its refs.
    pub fn to_response(&self) -> GraphLookupResponse {
        GraphLookupResponse {
            task_refs: self
                .by_job
                .iter()
                .map(|(label, refs)| TaskRef {
                    job: Some(JobLabel::new(label.clone())),
                    outputs: refs.iter().map(|r| PartitionRef::new(r.clone())).collect(),
                })
                .collect(),
        }
    }
}

/// A lookup that could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Two jobs' patterns match one ref.
    #[error("partition `{partition_ref}` is produced by two jobs: `{first}` (pattern `{first_pattern}`) and `{second}` (pattern `{second_pattern}`); make their `produces` patterns disjoint")]
    Ambiguous {
        partition_ref: String,
        first: String,
        first_pattern: String,
        second: String,
        second_pattern: String,
    },
    /// A job's pattern that parses but cannot be compiled (compiled on first use).
    #[error("job `{job}`: `produces` pattern `{pattern}` cannot be used: {message}; make it smaller: fewer or shorter repetitions, and ASCII classes such as `[0-9]` for `\\d` or `[A-Za-z0-9_]` for `\\w` (the Unicode ones are large)")]
    PatternTooLarge {
        job: String,
        pattern: String,
        message: String,
    },
    /// The lookup program failed or answered badly.
    #[error(transparent)]
    Program(#[from] protocol::ProtocolError),
}

impl Graph {
    /// Maps each of `refs` to its producing job (or to "unproduced").
    pub async fn lookup(&self, refs: &[String]) -> Result<LookupResult, LookupError> {
        let mut result = LookupResult::default();
        match &self.lookup {
            Lookup::Patterns(p) => {
                for r in refs {
                    match p.job_for(r)? {
                        Some(job) => result
                            .by_job
                            .entry(job.to_string())
                            .or_default()
                            .push(r.clone()),
                        None => result.unproduced.push(r.clone()),
                    }
                }
            }
            Lookup::Program(entrypoint) => {
                let resp = protocol::lookup(self, entrypoint, refs).await?;
                result = self.lookup_answer(&entrypoint.join(" "), refs, resp)?;
            }
            Lookup::Remote(url) => {
                let resp = protocol::lookup_remote(self, url, refs).await?;
                result = self.lookup_answer(url, refs, resp)?;
            }
        }
        Ok(result)
    }

    /// Checks a lookup program's or server's answer and groups the refs by job.
    fn lookup_answer(
        &self,
        program: &str,
        refs: &[String],
        resp: databuild_proto::GraphLookupResponse,
    ) -> Result<LookupResult, LookupError> {
        let mut result = LookupResult::default();
        let asked: HashMap<&str, &String> = refs.iter().map(|r| (r.as_str(), r)).collect();
        let mut claimed: HashMap<&str, String> = HashMap::new();
        for task_ref in resp.task_refs {
            let label = task_ref.job.map(|j| j.label).unwrap_or_default();
            if self.job(&label).is_none() {
                return Err(protocol::ProtocolError::UnknownJob {
                    program: program.to_string(),
                    job: label,
                }
                .into());
            }
            for out in task_ref.outputs {
                if let Some(&r) = asked.get(out.str.as_str()) {
                    if let Some(prev) = claimed.insert(r.as_str(), label.clone()) {
                        return Err(LookupError::Ambiguous {
                            partition_ref: r.clone(),
                            first: prev,
                            first_pattern: "(lookup)".into(),
                            second: label.clone(),
                            second_pattern: "(lookup)".into(),
                        });
                    }
                    result
                        .by_job
                        .entry(label.clone())
                        .or_default()
                        .push(r.clone());
                }
            }
        }
        result.unproduced = refs
            .iter()
            .filter(|r| !claimed.contains_key(r.as_str()))
            .cloned()
            .collect();
        Ok(result)
    }
}
