//! databuild's engine: the graph definition (`databuild.toml`), the job protocol, the
//! planner that turns requested partitions into a job graph, and the scheduler that runs
//! it and records every step in the build event log.

pub mod backfill;
pub mod catalog;
mod error;
pub mod estimate;
pub mod events;
pub mod forget;
pub mod graph;
pub mod logs;
pub mod planner;
pub mod protocol;
pub mod ranges;
pub mod register;
pub mod remote;
pub mod request;
pub mod scheduler;
pub mod wants;

pub use error::{CoreError, ExitKind};
pub use graph::{Graph, GraphError, JobDef};
pub use planner::{analyze, PlanError};
pub use remote::{RemoteError, RemoteExec, RemoteJobs};
pub use scheduler::{build, build_owned, execute, BuildOptions, Progress, RunOutcome};

/// Stable hash of a job label and its (sorted) outputs, tying runs of one task together.
pub fn job_key(label: &str, outputs: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&str> = outputs.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    for o in sorted {
        h.update([0u8]);
        h.update(o.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
