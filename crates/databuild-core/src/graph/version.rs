//! A job's version: its `version` and the content hash of its `version_files` (globs
//! relative to the graph file: `*` and `?` within a path segment, `**/` for any
//! directories), and the fingerprint of a `JobConfig`. Both are recorded with each build,
//! so that a partition built by another version or config is outdated.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The job's version from `version` and the files `version_files` match under `dir`:
/// `version` alone, `version+<hash>` with files, `files+<hash>` with files only, "" with
/// neither. A pattern that matches nothing is an error (the message says which).
pub(crate) fn job_version(
    version: Option<&str>,
    files: &[String],
    dir: &Path,
) -> Result<String, String> {
    if files.is_empty() {
        return Ok(version.unwrap_or_default().to_string());
    }
    let mut matched: Vec<PathBuf> = Vec::new();
    for pattern in files {
        let found = glob(dir, pattern)?;
        if found.is_empty() {
            return Err(format!(
                "`version_files` pattern `{pattern}` matches no file under `{}`",
                dir.display()
            ));
        }
        matched.extend(found);
    }
    matched.sort();
    matched.dedup();
    let mut hash = Sha256::new();
    for rel in &matched {
        let bytes = std::fs::read(dir.join(rel))
            .map_err(|e| format!("cannot read `version_files` file `{}`: {e}", rel.display()))?;
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let hex = hex(&hash.finalize());
    Ok(match version {
        Some(v) => format!("{v}+{}", &hex[..12]),
        None => format!("files+{}", &hex[..12]),
    })
}

/// The files under `dir` that `pattern` matches, relative to `dir`.
fn glob(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    if pattern.starts_with('/') || pattern.split('/').any(|s| s == "..") {
        return Err(format!(
            "`version_files` pattern `{pattern}` must be relative to the graph file's directory, without `..`"
        ));
    }
    let mut re = String::from("^");
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("**/") {
            re.push_str("(?:[^/]+/)*");
            rest = after;
            continue;
        }
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        rest = &rest[c.len_utf8()..];
    }
    re.push('$');
    let re = regex::Regex::new(&re).map_err(|e| format!("bad `version_files` pattern: {e}"))?;
    // Walk from the longest directory prefix without wildcards.
    let literal: Vec<&str> = pattern
        .split('/')
        .take_while(|s| !s.contains(['*', '?']))
        .collect();
    let start = if literal.len() == pattern.split('/').count() {
        // No wildcard at all: the file itself.
        let rel = PathBuf::from(pattern);
        return Ok(if dir.join(&rel).is_file() {
            vec![rel]
        } else {
            vec![]
        });
    } else {
        literal.join("/")
    };
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from(&start)];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let child = rel.join(entry.file_name());
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(child);
            } else if re.is_match(&child.to_string_lossy()) {
                found.push(child);
            }
        }
    }
    Ok(found)
}

/// The fingerprint of `config`: SHA-256 (hex) of its args, environment (sorted), inputs
/// and outputs, so that any change to what `config` returned changes it.
pub fn config_fingerprint(config: &databuild_proto::JobConfig) -> String {
    let mut hash = Sha256::new();
    let mut field = |tag: &str, value: &str| {
        hash.update(tag.as_bytes());
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    };
    for a in &config.args {
        field("arg", a);
    }
    let mut env: Vec<_> = config.env.iter().collect();
    env.sort();
    for (k, v) in env {
        field("env", k);
        field("=", v);
    }
    for d in &config.inputs {
        field("input", &d.dep_type.to_string());
        field(":", d.partition_ref.as_ref().map_or("", |r| r.str.as_str()));
    }
    for o in &config.outputs {
        field("output", &o.str);
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_files_hash_what_they_match_and_a_pattern_matching_nothing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/sub")).unwrap();
        std::fs::write(dir.path().join("jobs.sh"), "a").unwrap();
        std::fs::write(dir.path().join("lib/x.py"), "x").unwrap();
        std::fs::write(dir.path().join("lib/sub/y.py"), "y").unwrap();
        std::fs::write(dir.path().join("lib/z.txt"), "z").unwrap();
        assert_eq!(job_version(Some("3"), &[], dir.path()).unwrap(), "3");
        let files = ["jobs.sh".to_string(), "lib/**/*.py".to_string()];
        let v = job_version(Some("3"), &files, dir.path()).unwrap();
        assert!(v.starts_with("3+") && v.len() == 14, "{v}");
        assert_eq!(v, job_version(Some("3"), &files, dir.path()).unwrap());
        // A matched file changes: the version changes; an unmatched one does not.
        std::fs::write(dir.path().join("lib/z.txt"), "zz").unwrap();
        assert_eq!(v, job_version(Some("3"), &files, dir.path()).unwrap());
        std::fs::write(dir.path().join("lib/sub/y.py"), "yy").unwrap();
        assert_ne!(v, job_version(Some("3"), &files, dir.path()).unwrap());
        assert!(job_version(None, &files, dir.path())
            .unwrap()
            .starts_with("files+"));
        let err = job_version(Some("3"), &["lib/*.rs".to_string()], dir.path()).unwrap_err();
        assert!(err.starts_with("`version_files` pattern `lib/*.rs` matches no file under `"));
        let err = job_version(None, &["../x".to_string()], dir.path()).unwrap_err();
        assert!(err.contains("without `..`"), "{err}");
    }

    #[test]
    fn the_config_fingerprint_follows_every_part_of_the_config() {
        use databuild_proto::{JobConfig, PartitionRef};
        let base = JobConfig {
            outputs: vec![PartitionRef::new("a")],
            args: vec!["1".into()],
            env: [("K".to_string(), "v".to_string()), ("L".into(), "w".into())].into(),
            ..Default::default()
        };
        let fp = config_fingerprint(&base);
        assert_eq!(fp, config_fingerprint(&base.clone()));
        let mut other = base.clone();
        other.args = vec!["2".into()];
        assert_ne!(fp, config_fingerprint(&other));
        let mut other = base.clone();
        other.env.insert("K".into(), "x".into());
        assert_ne!(fp, config_fingerprint(&other));
    }
}
