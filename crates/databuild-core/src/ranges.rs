//! Ranges and brace lists in partition refs, expanded without I/O: `[2025-01-01..2025-01-31]`
//! (days), `[2025-01..2025-12]` (months), `[2025-01-01T00..2025-01-01T23]` (hours),
//! `[0..63]` (integers, zero-padding kept) and `{red,green,blue}`; several in one ref make
//! the cartesian product, the first group varying slowest.

use std::fmt::Write as _;

/// The most refs a set of refs may expand to.
pub const MAX_REFS: u64 = 10_000_000;

/// Why refs could not be expanded. Every message names the ref it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// A `[` or `{` that is never closed.
    #[error("unclosed `{open}` in `{r}`; close it with `{close}`, or pass `--literal` if the ref really contains `{open}`")]
    Unclosed { r: String, open: char, close: char },
    /// A `]` or `}` that nothing opened, or an opening one inside a group.
    #[error("unexpected `{c}` in `{r}`; ranges are `[start..end]` and lists `{{a,b}}`, not nested, or pass `--literal` if the ref really contains `{c}`")]
    Unexpected { r: String, c: char },
    /// `[...]` that is not `start..end` with ends of a known kind.
    #[error("`[{text}]` in `{r}` is not a range; write `[start..end]` with both ends days (`2025-01-31`), months (`2025-01`), hours (`2025-01-31T23`) or integers (`0`, `007`), or pass `--literal` if the ref really contains brackets")]
    NotARange { r: String, text: String },
    /// The two ends of a range are of different kinds.
    #[error("range `[{start}..{end}]` in `{r}` mixes {start_kind} `{start}` and {end_kind} `{end}`; write both ends as days (`2025-01-31`), months (`2025-01`), hours (`2025-01-31T23`) or integers")]
    MixedKinds {
        r: String,
        start: String,
        end: String,
        start_kind: &'static str,
        end_kind: &'static str,
    },
    /// An end has a date's shape but is not a date (month 13, February 30, hour 24).
    #[error("`{value}` in range `[{start}..{end}]` of `{r}` is not a valid {kind}; check the month, day and hour")]
    InvalidDate {
        r: String,
        value: String,
        start: String,
        end: String,
        kind: &'static str,
    },
    /// The end comes before the start.
    #[error(
        "range `[{start}..{end}]` in `{r}` ends before it starts; write the earlier end first"
    )]
    Backwards {
        r: String,
        start: String,
        end: String,
    },
    /// `{}`.
    #[error("empty list `{{}}` in `{r}`; write `{{a,b}}`, or pass `--literal` if the ref really contains braces")]
    EmptyList { r: String },
    /// More than [`MAX_REFS`] refs in all.
    #[error("the refs expand to {count} partition refs, more than the limit of {max}; ask for fewer at a time (a shorter range)", max = MAX_REFS)]
    TooMany { count: u64 },
}

/// One ref, parsed: literal text and groups in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Group(Group),
}

/// The values of one `[a..b]` or `{a,b}`; `start..=end` in the kind's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Group {
    Int { start: u64, end: u64, width: usize },
    Days { start: i64, end: i64 },
    Months { start: i64, end: i64 },
    Hours { start: i64, end: i64 },
    List(Vec<String>),
}

impl Group {
    fn len(&self) -> u64 {
        match self {
            Group::Int { start, end, .. } => (end - start).saturating_add(1),
            Group::Days { start, end }
            | Group::Months { start, end }
            | Group::Hours { start, end } => (end - start + 1) as u64,
            Group::List(items) => items.len() as u64,
        }
    }

    /// Appends the `i`-th value (`i < len`).
    fn push(&self, i: u64, out: &mut String) {
        let _ = match self {
            Group::Int { start, width, .. } => write!(out, "{:0width$}", start + i),
            Group::Days { start, .. } => {
                let (y, m, d) = civil_from_days(start + i as i64);
                write!(out, "{y:04}-{m:02}-{d:02}")
            }
            Group::Months { start, .. } => {
                let n = start + i as i64;
                write!(out, "{:04}-{:02}", n.div_euclid(12), n.rem_euclid(12) + 1)
            }
            Group::Hours { start, .. } => {
                let n = start + i as i64;
                let (y, m, d) = civil_from_days(n.div_euclid(24));
                write!(out, "{y:04}-{m:02}-{d:02}T{:02}", n.rem_euclid(24))
            }
            Group::List(items) => {
                out.push_str(&items[i as usize]);
                Ok(())
            }
        };
    }
}

impl Template {
    /// Parses `r`; a ref without `[`, `]`, `{` or `}` is one literal.
    pub fn parse(r: &str) -> Result<Template, RangeError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = r;
        while let Some(i) = rest.find(['[', ']', '{', '}']) {
            literal.push_str(&rest[..i]);
            let open = rest[i..].chars().next().expect("found a char");
            let close = match open {
                '[' => ']',
                '{' => '}',
                c => {
                    return Err(RangeError::Unexpected {
                        r: r.to_string(),
                        c,
                    })
                }
            };
            let body = &rest[i + 1..];
            let Some(j) = body.find(close) else {
                return Err(RangeError::Unclosed {
                    r: r.to_string(),
                    open,
                    close,
                });
            };
            let text = &body[..j];
            if let Some(c) = text.chars().find(|c| matches!(c, '[' | ']' | '{' | '}')) {
                return Err(RangeError::Unexpected {
                    r: r.to_string(),
                    c,
                });
            }
            let group = if open == '[' {
                parse_range(r, text)?
            } else {
                parse_list(r, text)?
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Group(group));
            rest = &body[j + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// How many refs this expands to (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.groups().fold(1u64, |n, g| n.saturating_mul(g.len()))
    }

    fn groups(&self) -> impl Iterator<Item = &Group> {
        self.parts.iter().filter_map(|p| match p {
            Part::Group(g) => Some(g),
            Part::Literal(_) => None,
        })
    }

    /// Appends every ref this expands to, the first group varying slowest.
    pub fn expand_into(&self, out: &mut Vec<String>) {
        let sizes: Vec<u64> = self.groups().map(Group::len).collect();
        if sizes.contains(&0) {
            return;
        }
        // A mixed-radix counter over the groups, the last one the fastest digit.
        let mut digits = vec![0u64; sizes.len()];
        loop {
            let mut s = String::new();
            let mut g = 0;
            for part in &self.parts {
                match part {
                    Part::Literal(l) => s.push_str(l),
                    Part::Group(group) => {
                        group.push(digits[g], &mut s);
                        g += 1;
                    }
                }
            }
            out.push(s);
            let mut k = digits.len();
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                digits[k] += 1;
                if digits[k] < sizes[k] {
                    break;
                }
                digits[k] = 0;
            }
        }
    }
}

/// How many refs `refs` expand to in all (saturating at `u64::MAX`), without making them.
pub fn count(refs: &[String]) -> Result<u64, RangeError> {
    let mut n = 0u64;
    for r in refs {
        n = n.saturating_add(Template::parse(r)?.count());
    }
    Ok(n)
}

/// Expands every ref's ranges and lists, in order. Refs are not deduplicated: a ref
/// given twice (or made twice) appears twice. More than [`MAX_REFS`] refs in all is an
/// error, found before any is made.
pub fn expand_refs(refs: &[String]) -> Result<Vec<String>, RangeError> {
    let templates = refs
        .iter()
        .map(|r| Template::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    let total = templates
        .iter()
        .fold(0u64, |n, t| n.saturating_add(t.count()));
    if total > MAX_REFS {
        return Err(RangeError::TooMany { count: total });
    }
    let mut out = Vec::with_capacity(total as usize);
    for t in &templates {
        t.expand_into(&mut out);
    }
    Ok(out)
}

fn parse_list(r: &str, text: &str) -> Result<Group, RangeError> {
    if text.is_empty() {
        return Err(RangeError::EmptyList { r: r.to_string() });
    }
    Ok(Group::List(text.split(',').map(str::to_string).collect()))
}

/// The kind of one end of a range, by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Month,
    Day,
    Hour,
}

impl Kind {
    fn of(s: &str) -> Option<Kind> {
        let b = s.as_bytes();
        let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
        if !s.is_empty() && digits(0..b.len()) {
            return Some(Kind::Int);
        }
        let month = b.len() >= 7 && digits(0..4) && b[4] == b'-' && digits(5..7);
        let day = month && b.len() >= 10 && b[7] == b'-' && digits(8..10);
        match b.len() {
            7 if month => Some(Kind::Month),
            10 if day => Some(Kind::Day),
            13 if day && b[10] == b'T' && digits(11..13) => Some(Kind::Hour),
            _ => None,
        }
    }

    /// "a day" etc., for messages.
    fn article_name(self) -> &'static str {
        match self {
            Kind::Int => "an integer",
            Kind::Month => "a month",
            Kind::Day => "a day",
            Kind::Hour => "an hour",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Month => "month",
            Kind::Day => "day",
            Kind::Hour => "hour",
        }
    }
}

fn parse_range(r: &str, text: &str) -> Result<Group, RangeError> {
    let not_a_range = || RangeError::NotARange {
        r: r.to_string(),
        text: text.to_string(),
    };
    let (start, end) = text.split_once("..").ok_or_else(not_a_range)?;
    let (Some(ks), Some(ke)) = (Kind::of(start), Kind::of(end)) else {
        return Err(not_a_range());
    };
    if ks != ke {
        return Err(RangeError::MixedKinds {
            r: r.to_string(),
            start: start.to_string(),
            end: end.to_string(),
            start_kind: ks.article_name(),
            end_kind: ke.article_name(),
        });
    }
    let invalid = |value: &str| RangeError::InvalidDate {
        r: r.to_string(),
        value: value.to_string(),
        start: start.to_string(),
        end: end.to_string(),
        kind: ks.name(),
    };
    let num = |s: &str| s.parse::<i64>().expect("digits checked by Kind::of");
    // Each end as a number in the kind's unit.
    let value = |s: &str| -> Result<i64, RangeError> {
        let (y, m) = (num(&s[0..4]), num(&s[5..7]));
        if !(1..=12).contains(&m) {
            return Err(invalid(s));
        }
        if ks == Kind::Month {
            return Ok(y * 12 + m - 1);
        }
        let d = num(&s[8..10]);
        if d < 1 || d > days_in_month(y, m) {
            return Err(invalid(s));
        }
        let days = days_from_civil(y, m, d);
        if ks == Kind::Day {
            return Ok(days);
        }
        let h = num(&s[11..13]);
        if h > 23 {
            return Err(invalid(s));
        }
        Ok(days * 24 + h)
    };
    let backwards = || RangeError::Backwards {
        r: r.to_string(),
        start: start.to_string(),
        end: end.to_string(),
    };
    if ks == Kind::Int {
        let parse = |s: &str| s.parse::<u64>().map_err(|_| not_a_range());
        let (a, b) = (parse(start)?, parse(end)?);
        if b < a {
            return Err(backwards());
        }
        let padded = |s: &str| s.len() > 1 && s.starts_with('0');
        let width = if padded(start) || padded(end) {
            start.len().max(end.len())
        } else {
            0
        };
        return Ok(Group::Int {
            start: a,
            end: b,
            width,
        });
    }
    let (a, b) = (value(start)?, value(end)?);
    if b < a {
        return Err(backwards());
    }
    Ok(match ks {
        Kind::Month => Group::Months { start: a, end: b },
        Kind::Day => Group::Days { start: a, end: b },
        _ => Group::Hours { start: a, end: b },
    })
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number from [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests;
