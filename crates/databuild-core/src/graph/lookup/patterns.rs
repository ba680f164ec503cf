//! The jobs' `produces` patterns indexed by literal prefix: a ref is matched only against
//! the patterns whose leading literal it starts with, each compiled on first use.
//!
//! Loading parses every pattern (cheap) but compiles none: one set over thousands of
//! patterns with Unicode classes exceeds the regex size limit, and compiling thousands up
//! front costs seconds. A pattern that is a plain literal is never compiled at all.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
};

use regex::Regex;
use regex_syntax::hir::{Hir, HirKind};

use super::LookupError;
use crate::graph::{file::GraphError, JobDef};

/// All jobs' `produces` patterns, anchored at both ends, indexed by literal prefix.
/// Cloning is cheap (the index is shared, and so are the patterns compiled so far).
#[derive(Debug, Clone)]
pub struct PatternLookup {
    index: Arc<Index>,
}

/// Literal prefix → the patterns (ascending) with that prefix.
type ByPrefix = HashMap<Box<[u8]>, Vec<u32>>;

#[derive(Debug)]
struct Index {
    /// Every pattern, in job order then `produces` order.
    patterns: Vec<Pattern>,
    /// Prefix length → prefix → patterns (ascending) with that literal prefix; lengths
    /// ascending. Patterns without a literal prefix are under length 0.
    by_prefix: Vec<(usize, ByPrefix)>,
}

#[derive(Debug)]
struct Pattern {
    job: String,
    /// As written.
    source: String,
    /// The leading literal every match starts with.
    prefix_len: usize,
    matcher: Matcher,
}

#[derive(Debug)]
enum Matcher {
    /// The whole pattern is its prefix: a ref matches if it is the prefix.
    Literal,
    /// What follows the prefix, `^(?:rest)$`, matched against the rest of the ref;
    /// compiled on first use and shared by every pattern with the same rest (`a/\d+` and
    /// `b/\d+` compile `\d+` once).
    Rest(Arc<Lazy>),
    /// `^(?:pattern)$`, for a pattern whose rest has an assertion such as `\b` (which
    /// looks at the prefix) and cannot be matched alone.
    Whole(Lazy),
}

/// A regex compiled on first use, or why it could not be.
#[derive(Debug)]
struct Lazy {
    pattern: String,
    compiled: OnceLock<Result<Regex, String>>,
}

impl Lazy {
    fn new(pattern: String) -> Self {
        Self {
            pattern,
            compiled: OnceLock::new(),
        }
    }

    fn get(&self) -> &Result<Regex, String> {
        self.compiled.get_or_init(|| {
            Regex::new(&format!("^(?:{})$", self.pattern)).map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => {
                    format!("it compiles to more than the regex size limit of {limit} bytes")
                }
                e => last_line(&e.to_string()),
            })
        })
    }
}

impl PatternLookup {
    /// Checks every job's patterns and indexes them by literal prefix; compiles nothing.
    pub fn new(jobs: &[JobDef]) -> Result<Self, GraphError> {
        let mut patterns = Vec::new();
        let mut by_len: HashMap<usize, ByPrefix> = HashMap::new();
        let mut rests: HashMap<String, Arc<Lazy>> = HashMap::new();
        for j in jobs {
            for p in &j.produces {
                let hir = regex_syntax::Parser::new().parse(p).map_err(|e| {
                    GraphError::InvalidPattern {
                        job: j.label.clone(),
                        pattern: p.clone(),
                        message: last_line(&e.to_string()),
                    }
                })?;
                let (prefix, complete) = literal_prefix(&hir);
                let i = u32::try_from(patterns.len()).expect("fewer than 4 billion patterns");
                by_len
                    .entry(prefix.len())
                    .or_default()
                    .entry(prefix.as_slice().into())
                    .or_default()
                    .push(i);
                patterns.push(Pattern {
                    job: j.label.clone(),
                    source: p.clone(),
                    prefix_len: prefix.len(),
                    matcher: if complete {
                        Matcher::Literal
                    } else {
                        let rest = rest_after_prefix(&hir);
                        if rest.properties().look_set().is_empty() {
                            let rest = rest.to_string();
                            Matcher::Rest(
                                rests
                                    .entry(rest.clone())
                                    .or_insert_with(|| Arc::new(Lazy::new(rest)))
                                    .clone(),
                            )
                        } else {
                            Matcher::Whole(Lazy::new(p.clone()))
                        }
                    },
                });
            }
        }
        let mut by_prefix: Vec<_> = by_len.into_iter().collect();
        by_prefix.sort_by_key(|(len, _)| *len);
        Ok(Self {
            index: Arc::new(Index {
                patterns,
                by_prefix,
            }),
        })
    }

    /// The job producing `r`, if any; an error if several jobs match, or if a candidate
    /// pattern is too large to compile.
    pub fn job_for(&self, r: &str) -> Result<Option<&str>, LookupError> {
        let mut first: Option<&Pattern> = None;
        for i in self.index.candidates(r) {
            let p = &self.index.patterns[i as usize];
            if !p.is_match(r)? {
                continue;
            }
            match first {
                None => first = Some(p),
                Some(f) if f.job != p.job => {
                    return Err(LookupError::Ambiguous {
                        partition_ref: r.to_string(),
                        first: f.job.clone(),
                        first_pattern: f.source.clone(),
                        second: p.job.clone(),
                        second_pattern: p.source.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(first.map(|p| p.job.as_str()))
    }

    /// Whether any of `job`'s patterns match `r`. A pattern too large to compile matches
    /// nothing here; [`PatternLookup::job_for`] reports it.
    pub fn job_matches(&self, job: &str, r: &str) -> bool {
        self.index.candidates(r).into_iter().any(|i| {
            let p = &self.index.patterns[i as usize];
            p.job == job && p.is_match(r).unwrap_or(false)
        })
    }
}

impl Index {
    /// The patterns whose literal prefix `r` starts with, ascending.
    fn candidates(&self, r: &str) -> Vec<u32> {
        let bytes = r.as_bytes();
        let mut found = Vec::new();
        for (len, prefixes) in &self.by_prefix {
            let Some(head) = bytes.get(..*len) else {
                break;
            };
            if let Some(ids) = prefixes.get(head) {
                found.extend_from_slice(ids);
            }
        }
        found.sort_unstable();
        found
    }
}

impl Pattern {
    /// Whether `r` (known to start with the prefix) matches the whole pattern.
    fn is_match(&self, r: &str) -> Result<bool, LookupError> {
        let (lazy, text) = match &self.matcher {
            Matcher::Literal => return Ok(r.len() == self.prefix_len),
            Matcher::Rest(lazy) => match r.get(self.prefix_len..) {
                Some(rest) => (&**lazy, rest),
                None => return Ok(false),
            },
            Matcher::Whole(lazy) => (lazy, r),
        };
        match lazy.get() {
            Ok(re) => Ok(re.is_match(text)),
            Err(message) => Err(LookupError::PatternTooLarge {
                job: self.job.clone(),
                pattern: self.source.clone(),
                message: message.clone(),
            }),
        }
    }
}

/// The literal every match of `hir` starts with, and whether that literal is the whole
/// of `hir` (so matching is comparing). Stops at the first piece that is not a plain
/// literal: a class, repetition, alternation or assertion (case-insensitive letters are
/// classes, so `(?i)` stops it too).
fn literal_prefix(hir: &Hir) -> (Vec<u8>, bool) {
    match hir.kind() {
        HirKind::Empty => (Vec::new(), true),
        HirKind::Literal(lit) => (lit.0.to_vec(), true),
        HirKind::Capture(cap) => literal_prefix(&cap.sub),
        HirKind::Concat(subs) => {
            let mut prefix = Vec::new();
            for sub in subs {
                let (p, complete) = literal_prefix(sub);
                prefix.extend_from_slice(&p);
                if !complete {
                    return (prefix, false);
                }
            }
            (prefix, true)
        }
        HirKind::Class(_) | HirKind::Look(_) | HirKind::Repetition(_) | HirKind::Alternation(_) => {
            (Vec::new(), false)
        }
    }
}

/// `hir` without the literal prefix [`literal_prefix`] finds (capture groups around the
/// prefix are dropped: they do not change what matches).
fn rest_after_prefix(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Empty | HirKind::Literal(_) => Hir::empty(),
        HirKind::Capture(cap) => rest_after_prefix(&cap.sub),
        HirKind::Concat(subs) => {
            let mut rest = Vec::new();
            let mut in_prefix = true;
            for sub in subs {
                if !in_prefix {
                    rest.push(sub.clone());
                    continue;
                }
                let (_, complete) = literal_prefix(sub);
                if !complete {
                    rest.push(rest_after_prefix(sub));
                    in_prefix = false;
                }
            }
            Hir::concat(rest)
        }
        HirKind::Class(_) | HirKind::Look(_) | HirKind::Repetition(_) | HirKind::Alternation(_) => {
            hir.clone()
        }
    }
}

/// The last line of a regex error, without its `error: ` label.
fn last_line(message: &str) -> String {
    message
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
#[path = "patterns_tests.rs"]
mod tests;
