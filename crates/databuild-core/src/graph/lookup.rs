//! Lookup: which job produces each partition ref, by `produces` patterns (no process
//! spawned) or by an external `GraphLookup` program.

use std::collections::BTreeMap;

use regex::RegexSet;

use super::{file::GraphError, Graph, JobDef, Lookup};
use crate::protocol;

/// The refs grouped by the job that produces them, and the refs no job produces.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// Job label → refs it must produce, in request order.
    pub by_job: BTreeMap<String, Vec<String>>,
    /// Refs no job produces (external data).
    pub unproduced: Vec<String>,
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
    /// The lookup program failed or answered badly.
    #[error(transparent)]
    Program(#[from] protocol::ProtocolError),
}

/// All jobs' `produces` patterns compiled into one anchored set.
#[derive(Debug, Clone)]
pub struct PatternLookup {
    set: RegexSet,
    /// For each pattern in `set`: (job label, pattern as written).
    owners: Vec<(String, String)>,
}

impl PatternLookup {
    /// Compiles every job's patterns, anchored at both ends.
    pub fn new(jobs: &[JobDef]) -> Result<Self, GraphError> {
        let mut anchored = Vec::new();
        let mut owners = Vec::new();
        for j in jobs {
            for p in &j.produces {
                regex::Regex::new(p).map_err(|e| GraphError::InvalidPattern {
                    job: j.label.clone(),
                    pattern: p.clone(),
                    message: e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .trim_start_matches("error: ")
                        .to_string(),
                })?;
                anchored.push(format!("^(?:{p})$"));
                owners.push((j.label.clone(), p.clone()));
            }
        }
        let set = RegexSet::new(&anchored).map_err(|e| GraphError::InvalidPattern {
            job: "(all)".into(),
            pattern: String::new(),
            message: e.to_string(),
        })?;
        Ok(Self { set, owners })
    }

    /// The job producing `r`, if any; an error if several jobs match.
    pub fn job_for(&self, r: &str) -> Result<Option<&str>, LookupError> {
        let mut matches = self.set.matches(r).into_iter();
        let Some(first) = matches.next() else {
            return Ok(None);
        };
        let first_owner = &self.owners[first];
        for other in matches {
            let o = &self.owners[other];
            if o.0 != first_owner.0 {
                return Err(LookupError::Ambiguous {
                    partition_ref: r.to_string(),
                    first: first_owner.0.clone(),
                    first_pattern: first_owner.1.clone(),
                    second: o.0.clone(),
                    second_pattern: o.1.clone(),
                });
            }
        }
        Ok(Some(&first_owner.0))
    }

    /// Whether any of `job`'s patterns match `r`.
    pub fn job_matches(&self, job: &str, r: &str) -> bool {
        self.set
            .matches(r)
            .into_iter()
            .any(|i| self.owners[i].0 == job)
    }
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
        let mut claimed: BTreeMap<&str, String> = BTreeMap::new();
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
                if let Some(r) = refs.iter().find(|r| **r == out.str) {
                    if let Some(prev) = claimed.insert(r, label.clone()) {
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
