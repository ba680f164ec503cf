//! The engine's error type and how it maps to exit codes.

use crate::{graph::GraphError, planner::PlanError};

/// Why databuild itself could not proceed. A failed job is not an error: it is recorded
/// in the event log and reported in the run outcome.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The graph file.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// Planning.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The event log.
    #[error(transparent)]
    Bel(#[from] databuild_bel::BelError),
    /// A job graph given to `execute` that cannot run.
    #[error("invalid job graph: {0}")]
    InvalidJobGraph(String),
    /// A catalog request.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// A partition that cannot be forgotten.
    #[error(transparent)]
    Forget(#[from] crate::forget::ForgetError),
    /// Partitions that cannot be registered as external data.
    #[error(transparent)]
    Register(#[from] crate::register::RegisterError),
    /// A request that cannot join the build in flight.
    #[error("{0}")]
    Delegation(String),
    /// The run was cancelled (SIGINT or SIGTERM) before it executed anything.
    #[error("{0}; the graph run is recorded as failed")]
    Cancelled(String),
    /// The run stopped after it began running jobs (the event log could not be written):
    /// its jobs were stopped.
    #[error("graph run `{run_id}` stopped after running jobs: {cause}; its jobs were stopped and {recorded}")]
    Stopped {
        run_id: String,
        cause: Box<CoreError>,
        recorded: &'static str,
    },
    /// Local I/O (log directory and the like).
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

/// The documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// 0: everything asked for is available.
    Success = 0,
    /// 1: the build ran and some partition failed.
    BuildFailed = 1,
    /// 2: usage or configuration error; nothing was built.
    Usage = 2,
}

impl CoreError {
    /// The exit code this error maps to.
    pub fn exit_kind(&self) -> ExitKind {
        match self {
            CoreError::Bel(
                databuild_bel::BelError::Busy { .. }
                | databuild_bel::BelError::Claimed { .. }
                | databuild_bel::BelError::ConnectionLost { .. },
            ) => ExitKind::BuildFailed,
            CoreError::Cancelled(_) | CoreError::Delegation(_) | CoreError::Stopped { .. } => {
                ExitKind::BuildFailed
            }
            _ => ExitKind::Usage,
        }
    }
}
