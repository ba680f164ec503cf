//! Unit and property tests of range expansion.

use proptest::prelude::*;

use super::*;

fn expand(r: &str) -> Vec<String> {
    expand_refs(&[r.to_string()]).unwrap_or_else(|e| panic!("{r}: {e}"))
}

fn error(r: &str) -> RangeError {
    expand_refs(&[r.to_string()]).expect_err(r)
}

#[test]
fn a_ref_without_groups_is_itself() {
    assert_eq!(
        expand("reviews/daily/date=2025-01-01"),
        ["reviews/daily/date=2025-01-01"]
    );
    assert_eq!(expand("a..b"), ["a..b"]);
}

#[test]
fn days_cross_months_and_leap_days() {
    let v = expand("d/date=[2024-02-27..2024-03-02]");
    assert_eq!(
        v,
        [
            "d/date=2024-02-27",
            "d/date=2024-02-28",
            "d/date=2024-02-29",
            "d/date=2024-03-01",
            "d/date=2024-03-02"
        ]
    );
    assert_eq!(expand("[2025-01-01..2025-03-31]").len(), 90);
    assert_eq!(
        expand("[2024-12-31..2025-01-01]"),
        ["2024-12-31", "2025-01-01"]
    );
    assert_eq!(expand("[2000-01-01..2000-12-31]").len(), 366);
    assert_eq!(expand("[1900-01-01..1900-12-31]").len(), 365);
}

#[test]
fn months_and_hours() {
    assert_eq!(
        expand("m=[2024-11..2025-02]"),
        ["m=2024-11", "m=2024-12", "m=2025-01", "m=2025-02"]
    );
    let h = expand("h=[2025-01-31T22..2025-02-01T01]");
    assert_eq!(
        h,
        [
            "h=2025-01-31T22",
            "h=2025-01-31T23",
            "h=2025-02-01T00",
            "h=2025-02-01T01"
        ]
    );
    assert_eq!(expand("[2025-01-01T00..2025-01-01T23]").len(), 24);
}

#[test]
fn integers_keep_zero_padding() {
    assert_eq!(expand("s=[0..3]"), ["s=0", "s=1", "s=2", "s=3"]);
    let padded = expand("s=[000..063]");
    assert_eq!(padded.len(), 64);
    assert_eq!(
        (padded[0].as_str(), padded[63].as_str()),
        ("s=000", "s=063")
    );
    assert_eq!(expand("[8..11]"), ["8", "9", "10", "11"]);
    assert_eq!(expand("[08..11]"), ["08", "09", "10", "11"]);
    assert_eq!(expand("[5..5]"), ["5"]);
}

#[test]
fn lists_and_products_vary_the_first_group_slowest() {
    assert_eq!(expand("c/{red,green,blue}"), ["c/red", "c/green", "c/blue"]);
    assert_eq!(
        expand("{a,b}/[1..2]/{x,y}"),
        ["a/1/x", "a/1/y", "a/2/x", "a/2/y", "b/1/x", "b/1/y", "b/2/x", "b/2/y"]
    );
    assert_eq!(
        expand_refs(&["p/[1..2]".to_string(), "q".to_string()]).unwrap(),
        ["p/1", "p/2", "q"]
    );
}

#[test]
fn count_is_computed_without_expanding() {
    let refs = vec![
        "a/[2025-01-01..2025-12-31]/{x,y,z}".to_string(),
        "b".to_string(),
    ];
    assert_eq!(count(&refs), Ok(365 * 3 + 1));
    let huge = vec!["[0..999999999]/[0..999999999]/[0..999999999]".to_string()];
    assert_eq!(count(&huge), Ok(u64::MAX));
    assert_eq!(
        expand_refs(&huge),
        Err(RangeError::TooMany { count: u64::MAX })
    );
    let just_over = vec!["[1..10000000]".to_string(), "x".to_string()];
    assert_eq!(
        expand_refs(&just_over),
        Err(RangeError::TooMany { count: 10_000_001 })
    );
}

#[test]
fn bad_ranges_say_what_is_wrong() {
    assert!(matches!(
        error("a/[2025-03-01..2025-01-01]"),
        RangeError::Backwards { .. }
    ));
    assert!(matches!(error("a/[9..1]"), RangeError::Backwards { .. }));
    assert!(matches!(
        error("a/[2025-01..2025-03-31]"),
        RangeError::MixedKinds {
            start_kind: "a month",
            end_kind: "a day",
            ..
        }
    ));
    for bad in [
        "[2025-02-30..2025-03-01]",
        "[2025-13..2025-14]",
        "[2025-01-01T24..2025-01-02T01]",
        "[2023-02-29..2023-03-01]",
    ] {
        assert!(
            matches!(error(bad), RangeError::InvalidDate { .. }),
            "{bad}"
        );
    }
    for bad in ["a/[2025", "a/{x,y", "a/[1..2]/{"] {
        assert!(matches!(error(bad), RangeError::Unclosed { .. }), "{bad}");
    }
    for bad in ["a]", "a}", "[1..[2]]", "{a,{b}}"] {
        assert!(matches!(error(bad), RangeError::Unexpected { .. }), "{bad}");
    }
    for bad in [
        "[]",
        "[1-3]",
        "[a..b]",
        "[1..]",
        "[2025-1-1..2025-1-2]",
        "[-1..3]",
    ] {
        assert!(matches!(error(bad), RangeError::NotARange { .. }), "{bad}");
    }
    assert!(matches!(error("a/{}"), RangeError::EmptyList { .. }));
    assert_eq!(
        error("a/[2025-02-30..2025-03-01]").to_string(),
        "`2025-02-30` in range `[2025-02-30..2025-03-01]` of `a/[2025-02-30..2025-03-01]` is not a valid day; check the month, day and hour"
    );
}

#[test]
fn day_numbers_round_trip() {
    for z in -800_000..800_000 {
        let (y, m, d) = civil_from_days(z);
        assert_eq!(days_from_civil(y, m, d), z);
        assert!((1..=days_in_month(y, m)).contains(&d));
    }
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(civil_from_days(20_089), (2025, 1, 1));
}

/// One group of a generated ref: its source text.
fn group() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..200, 0u64..40, any::<bool>()).prop_map(|(a, n, pad)| if pad {
            format!("[{a:04}..{:04}]", a + n)
        } else {
            format!("[{a}..{}]", a + n)
        }),
        (0i64..40_000, 0i64..60).prop_map(|(a, n)| {
            let (y1, m1, d1) = civil_from_days(a);
            let (y2, m2, d2) = civil_from_days(a + n);
            format!("[{y1:04}-{m1:02}-{d1:02}..{y2:04}-{m2:02}-{d2:02}]")
        }),
        (0i64..20_000, 0i64..30).prop_map(|(a, n)| {
            let (b, c) = (a + n, a);
            format!(
                "[{:04}-{:02}..{:04}-{:02}]",
                c / 12,
                c % 12 + 1,
                b / 12,
                b % 12 + 1
            )
        }),
        (0i64..900_000, 0i64..50).prop_map(|(a, n)| {
            let (y1, m1, d1) = civil_from_days(a / 24);
            let (y2, m2, d2) = civil_from_days((a + n) / 24);
            format!(
                "[{y1:04}-{m1:02}-{d1:02}T{:02}..{y2:04}-{m2:02}-{d2:02}T{:02}]",
                a % 24,
                (a + n) % 24
            )
        }),
        prop::collection::btree_set("[a-z]{1,4}", 1..5)
            .prop_map(|items| format!("{{{}}}", items.into_iter().collect::<Vec<_>>().join(","))),
    ]
}

proptest! {
    /// Groups separated by `/`: the count is the number of refs made, and no ref is made
    /// twice.
    #[test]
    fn count_matches_expansion_and_refs_are_distinct(
        prefix in "[a-z]{0,3}",
        groups in prop::collection::vec(group(), 0..4),
    ) {
        let r = std::iter::once(prefix).chain(groups).collect::<Vec<_>>().join("/");
        let refs = vec![r];
        let n = count(&refs).unwrap();
        let v = expand_refs(&refs).unwrap();
        prop_assert_eq!(n, v.len() as u64);
        let distinct: std::collections::HashSet<&String> = v.iter().collect();
        prop_assert_eq!(distinct.len(), v.len());
        for r in &v {
            prop_assert!(!r.contains(['[', ']', '{', '}']), "{}", r);
        }
    }
}
