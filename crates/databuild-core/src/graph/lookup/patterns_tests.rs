//! Tests of the prefix-indexed pattern lookup, against a naive anchored match per pattern.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::graph::JobExecutor;

fn job(label: &str, produces: &[&str]) -> JobDef {
    JobDef {
        label: label.into(),
        entrypoint: vec!["true".into()],
        produces: produces.iter().map(|p| p.to_string()).collect(),
        env: Default::default(),
        timeout: None,
        config_timeout: Duration::from_secs(60),
        retries: 0,
        retry_backoff: Duration::ZERO,
        max_concurrency: None,
        executor: JobExecutor::Local,
        kill_leftovers: true,
        config_mode: Default::default(),
        version: String::new(),
        path: None,
    }
}

fn lookup(jobs: &[JobDef]) -> PatternLookup {
    PatternLookup::new(jobs).expect("valid patterns")
}

fn prefix_of(pattern: &str) -> (String, bool) {
    let hir = regex_syntax::Parser::new().parse(pattern).unwrap();
    let (p, complete) = literal_prefix(&hir);
    (String::from_utf8(p).unwrap(), complete)
}

/// The reference: every pattern compiled on its own, anchored, in job order.
fn naive(jobs: &[JobDef], r: &str) -> Result<Option<String>, (String, String)> {
    let mut first: Option<&str> = None;
    for j in jobs {
        for p in &j.produces {
            if Regex::new(&format!("^(?:{p})$")).unwrap().is_match(r) {
                match first {
                    None => first = Some(&j.label),
                    Some(f) if f != j.label => return Err((f.to_string(), j.label.clone())),
                    Some(_) => {}
                }
            }
        }
    }
    Ok(first.map(str::to_string))
}

#[test]
fn literal_prefixes_stop_at_the_first_non_literal_piece() {
    let cases = [
        (r"t17/date=(?P<d>\d{4}-\d{2}-\d{2})", "t17/date=", false),
        (r"a/(x|y)", "a/", false),
        (r"(a|b)/x", "", false),
        (r"a|b", "", false),
        (r"ab|cd", "", false),
        (r"x\.y/[0-9]+", "x.y/", false),
        (r"(?i)abc/\d", "", false),
        (r"ab(?i)c", "ab", false),
        (r"all", "all", true),
        (r"(all)", "all", true),
        (r"(?P<x>a/b)/c", "a/b/c", true),
        (r"", "", true),
        (r"a+", "", false),
        (r"^a/b$", "", false),
        (r"é/\d", "é/", false),
    ];
    for (pattern, prefix, complete) in cases {
        assert_eq!(
            prefix_of(pattern),
            (prefix.to_string(), complete),
            "pattern {pattern}"
        );
    }
}

#[test]
fn a_top_level_alternation_matches_either_side() {
    let l = lookup(&[job("j", &["a|b/x"]), job("k", &[r"(c|d)/\d"])]);
    assert_eq!(l.job_for("a").unwrap(), Some("j"));
    assert_eq!(l.job_for("b/x").unwrap(), Some("j"));
    assert_eq!(l.job_for("a/x").unwrap(), None);
    assert_eq!(l.job_for("c/1").unwrap(), Some("k"));
    assert_eq!(l.job_for("d/2").unwrap(), Some("k"));
}

#[test]
fn overlapping_prefixes_are_all_tried() {
    let l = lookup(&[
        job("short", &[r"t1\d/x"]),
        job("long", &[r"t17/y/\d+"]),
        job("mid", &[r"t17/[a-w]"]),
    ]);
    assert_eq!(l.job_for("t17/x").unwrap(), Some("short"));
    assert_eq!(l.job_for("t17/y/3").unwrap(), Some("long"));
    assert_eq!(l.job_for("t17/a").unwrap(), Some("mid"));
    assert_eq!(l.job_for("t1").unwrap(), None);
    assert_eq!(l.job_for("").unwrap(), None);
}

#[test]
fn a_pattern_without_prefix_is_tried_for_every_ref() {
    let l = lookup(&[job("dated", &[r"t1/\d+"]), job("any", &[r"[a-z]+/[a-z]+"])]);
    assert_eq!(l.job_for("foo/bar").unwrap(), Some("any"));
    assert_eq!(l.job_for("t1/22").unwrap(), Some("dated"));
    assert!(l.job_matches("any", "foo/bar"));
    assert!(!l.job_matches("dated", "foo/bar"));
}

#[test]
fn a_ref_matched_by_a_prefixed_and_an_unprefixed_pattern_is_ambiguous() {
    let l = lookup(&[job("dated", &[r"t/\d+"]), job("any", &[r".*/1"])]);
    let err = l.job_for("t/1").unwrap_err();
    assert!(
        matches!(&err, LookupError::Ambiguous { first, second, first_pattern, second_pattern, .. }
            if first == "dated" && second == "any" && first_pattern == r"t/\d+" && second_pattern == ".*/1"),
        "{err}"
    );
    assert_eq!(l.job_for("t/2").unwrap(), Some("dated"));
}

#[test]
fn two_patterns_of_one_job_are_not_ambiguous() {
    let l = lookup(&[job("j", &[r"a/\d", r"a/[0-5]", "a/1"])]);
    assert_eq!(l.job_for("a/1").unwrap(), Some("j"));
}

#[test]
fn patterns_with_the_same_rest_after_their_prefix_share_one_regex() {
    let l = lookup(&[
        job("a", &[r"a/(?P<d>\d+)"]),
        job("b", &[r"b/(?P<n>\d+)"]),
        job("c", &[r"c/\w"]),
    ]);
    let rest = |i: usize| match &l.index.patterns[i].matcher {
        Matcher::Rest(lazy) => lazy.clone(),
        m => panic!("pattern {i} is {m:?}"),
    };
    assert!(Arc::ptr_eq(&rest(0), &rest(1)));
    assert!(!Arc::ptr_eq(&rest(0), &rest(2)));
    assert_eq!(l.job_for("a/12").unwrap(), Some("a"));
    assert_eq!(l.job_for("b/12").unwrap(), Some("b"));
    assert_eq!(l.job_for("b/x").unwrap(), None);
}

#[test]
fn an_assertion_after_the_prefix_is_matched_with_the_prefix() {
    let l = lookup(&[job("word", &[r"ab\b.*"]), job("start", &[r"x/^y"])]);
    assert!(matches!(l.index.patterns[0].matcher, Matcher::Whole(_)));
    assert_eq!(l.job_for("ab").unwrap(), Some("word"));
    assert_eq!(l.job_for("ab/c").unwrap(), Some("word"));
    assert_eq!(l.job_for("abc").unwrap(), None);
    assert_eq!(l.job_for("x/y").unwrap(), None);
}

#[test]
fn literal_patterns_match_only_themselves() {
    let l = lookup(&[job("all", &["all"]), job("allx", &["all/x"])]);
    assert_eq!(l.job_for("all").unwrap(), Some("all"));
    assert_eq!(l.job_for("all/x").unwrap(), Some("allx"));
    assert_eq!(l.job_for("alll").unwrap(), None);
}

#[test]
fn escapes_are_literals_and_case_insensitive_patterns_still_match() {
    let l = lookup(&[job("dot", &[r"a\.b/\d"]), job("ci", &[r"(?i)report/\d"])]);
    assert_eq!(l.job_for("a.b/1").unwrap(), Some("dot"));
    assert_eq!(l.job_for("axb/1").unwrap(), None);
    assert_eq!(l.job_for("REPORT/1").unwrap(), Some("ci"));
}

#[test]
fn an_invalid_pattern_is_rejected_at_load_naming_the_job() {
    let err = PatternLookup::new(&[job("ok", &["a"]), job("bad", &["x/([0-9]+"])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "job `bad`: invalid `produces` pattern `x/([0-9]+`: unclosed group; patterns are Rust `regex` syntax, anchored at both ends"
    );
}

#[test]
fn a_pattern_too_large_to_compile_names_the_job_when_used() {
    let big = r"big/\w{200}\w{200}\w{200}";
    let l = lookup(&[job("small", &[r"small/\d"]), job("huge", &[big])]);
    assert_eq!(l.job_for("small/1").unwrap(), Some("small"));
    let err = l.job_for("big/x").unwrap_err();
    insta::assert_snapshot!(err.to_string());
}

#[test]
fn thousands_of_unicode_class_patterns_load_and_answer() {
    let jobs: Vec<JobDef> = (0..5_000)
        .map(|i| {
            job(
                &format!("job{i}"),
                &[format!(r"t{i}/date=(?P<d>\d{{4}}-\d{{2}}-\d{{2}})").as_str()],
            )
        })
        .collect();
    let l = lookup(&jobs);
    for i in [0, 1, 17, 170, 1_700, 4_999] {
        let r = format!("t{i}/date=2025-01-0{}", i % 10);
        assert_eq!(l.job_for(&r).unwrap(), Some(format!("job{i}").as_str()));
    }
    assert_eq!(l.job_for("t5000/date=2025-01-01").unwrap(), None);
    assert_eq!(l.job_for("t17/date=2025-1-01").unwrap(), None);
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a", "b", "ab", "/", r"\.", ".", r"\d", "[ab]", "a*", "(a|b)", "(?i)a", "b?", "x",
        "(?:ab|a)", "|", r"\b", "$", "^", "(a/)",
    ])
}

fn pattern() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..5).prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn matches_like_one_anchored_regex_per_pattern(
        patterns in prop::collection::vec(prop::collection::vec(pattern(), 1..3), 1..5),
        refs in prop::collection::vec("[abAx./1]{0,6}", 1..20),
    ) {
        let jobs: Vec<JobDef> = patterns
            .iter()
            .enumerate()
            .map(|(i, ps)| {
                let ps: Vec<&str> = ps.iter().map(String::as_str).collect();
                job(&format!("j{i}"), &ps)
            })
            .collect();
        let l = lookup(&jobs);
        for r in &refs {
            let got = match l.job_for(r) {
                Ok(j) => Ok(j.map(str::to_string)),
                Err(LookupError::Ambiguous { first, second, .. }) => Err((first, second)),
                Err(e) => panic!("{e}"),
            };
            prop_assert_eq!(&got, &naive(&jobs, r), "ref {:?}", r);
            for j in &jobs {
                let want = j.produces.iter().any(|p| {
                    Regex::new(&format!("^(?:{p})$")).unwrap().is_match(r)
                });
                prop_assert_eq!(l.job_matches(&j.label, r), want);
            }
        }
    }
}
