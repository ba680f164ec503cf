//! Ref patterns for listing partitions (`*` matches any text, everything else itself):
//! the literal start that bounds an index range, and the SQLite `GLOB` and PostgreSQL
//! `LIKE` forms of a pattern.

use crate::PartitionFilter;

/// The longest text every listed ref must start with: the prefix, or the pattern's
/// part before its first `*` when that is longer. `None` when nothing is known.
pub(crate) fn literal_start(filter: &PartitionFilter) -> Option<String> {
    let from_prefix = filter.prefix.as_deref().unwrap_or("");
    let from_pattern = filter
        .pattern
        .as_deref()
        .map_or("", |p| p.split('*').next().unwrap_or(""));
    let longest = if from_pattern.len() > from_prefix.len() {
        from_pattern
    } else {
        from_prefix
    };
    (!longest.is_empty()).then(|| longest.to_string())
}

/// The SQLite `GLOB` form: `*` stays, `?` and `[` become one-character classes.
pub(crate) fn to_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

/// The PostgreSQL `LIKE ... ESCAPE '\'` form: `*` becomes `%`; `%`, `_` and `\` are escaped.
pub(crate) fn to_like(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_start_takes_the_longer_of_prefix_and_pattern() {
        let f = |prefix: Option<&str>, pattern: Option<&str>| {
            literal_start(&PartitionFilter {
                prefix: prefix.map(str::to_string),
                pattern: pattern.map(str::to_string),
                ..Default::default()
            })
        };
        assert_eq!(f(None, None), None);
        assert_eq!(f(Some("a/"), None).as_deref(), Some("a/"));
        assert_eq!(f(Some("a/"), Some("a/b*c")).as_deref(), Some("a/b"));
        assert_eq!(f(None, Some("*x")), None);
        assert_eq!(f(Some("abc"), Some("a*")).as_deref(), Some("abc"));
    }

    #[test]
    fn special_characters_match_themselves() {
        assert_eq!(to_glob("a?[b]*"), "a[?][[]b]*");
        assert_eq!(to_like(r"a%_\*"), r"a\%\_\\%");
    }
}
