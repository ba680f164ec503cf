//! The digests of a job run's outputs: what the job wrote to the file named by
//! `DATABUILD_DIGESTS` (a JSON object of ref → digest), and for outputs it gave none of,
//! the SHA-256 of the file its job's `path` names. A bad digests file, or a declared
//! `path` with no file behind it, fails the job run.

use std::{collections::HashMap, path::Path};

use sha2::{Digest as _, Sha256};

use crate::graph::JobDef;

/// The environment variable naming the file a job may write its outputs' digests to.
pub const DIGESTS_VAR: &str = "DATABUILD_DIGESTS";

/// The digests of `outputs` after a successful run of `job` that may have written
/// `file`; `dir` is the graph's directory. `Err` says why the run must count as failed.
pub(crate) fn collect(
    job: &JobDef,
    dir: &Path,
    outputs: &[String],
    file: &Path,
) -> Result<HashMap<String, String>, String> {
    let mut digests = HashMap::new();
    match std::fs::read(file) {
        Ok(bytes) => {
            let _ = std::fs::remove_file(file);
            let parsed: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| {
                    format!(
                        "the digests file (`{DIGESTS_VAR}`) is not a JSON object of ref to digest: {e}"
                    )
                })?;
            for (r, d) in parsed {
                if !outputs.contains(&r) {
                    return Err(format!(
                        "the digests file (`{DIGESTS_VAR}`) names `{r}`, which this job run did not build (its outputs: {})",
                        crate::protocol::ref_list(outputs)
                    ));
                }
                let Some(d) = d.as_str().filter(|d| !d.is_empty()) else {
                    return Err(format!(
                        "the digests file (`{DIGESTS_VAR}`) gives `{r}` a digest that is not a non-empty string: {d}"
                    ));
                };
                digests.insert(r, d.to_string());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot read the digests file (`{DIGESTS_VAR}`): {e}"
            ))
        }
    }
    if let Some(path) = &job.path {
        let missing: Vec<&String> = outputs
            .iter()
            .filter(|r| !digests.contains_key(*r))
            .collect();
        for r in missing {
            let rel = path.replace("{ref}", r);
            let bytes = std::fs::read(dir.join(&rel)).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "output `{r}` is not at `{rel}` (the job's `path`) after the job succeeded"
                    )
                } else {
                    format!("cannot read output `{r}` at `{rel}` (the job's `path`): {e}")
                }
            })?;
            let hex: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            digests.insert(r.clone(), format!("sha256:{hex}"));
        }
    }
    Ok(digests)
}
