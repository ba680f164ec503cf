//! Status names as people write them: `available`, `AVAILABLE` or `PARTITION_AVAILABLE`
//! for partitions, `failed` or `GRAPH_FAILED` for graph runs, and the short names shown
//! in listings. The one place the CLI, the HTTP API and the dashboard take them from.

use crate::{JobGraphRunStatus, PartitionStatus, WantStatus};

/// A status name that names no status of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status `{given}`; expected one of [{}]", expected.join(", "))]
pub struct StatusError {
    /// What was given.
    pub given: String,
    /// `partition`, `graph run` or `want`.
    pub kind: &'static str,
    /// The names that would have been accepted.
    pub expected: Vec<String>,
}

impl PartitionStatus {
    /// Every status, in the proto's order.
    const ALL: [PartitionStatus; 9] = [
        PartitionStatus::PartitionRequested,
        PartitionStatus::PartitionScheduled,
        PartitionStatus::PartitionBuilding,
        PartitionStatus::PartitionAvailable,
        PartitionStatus::PartitionFailed,
        PartitionStatus::PartitionStale,
        PartitionStatus::PartitionDelegated,
        PartitionStatus::PartitionForgotten,
        PartitionStatus::PartitionUnknown,
    ];

    /// Parses `available`, `AVAILABLE` or `PARTITION_AVAILABLE` (any case).
    pub fn parse_name(s: &str) -> Result<Self, StatusError> {
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("PARTITION_") {
            upper
        } else {
            format!("PARTITION_{upper}")
        };
        Self::from_str_name(&name)
            .filter(|s| *s != PartitionStatus::PartitionUnknown)
            .ok_or_else(|| StatusError {
                given: s.to_string(),
                kind: "partition",
                expected: Self::short_names(),
            })
    }

    /// The name without its `PARTITION_` prefix (`AVAILABLE`).
    pub fn short_name(&self) -> &'static str {
        self.as_str_name().trim_start_matches("PARTITION_")
    }

    /// The short names people may give, lowercase (`requested`, ..., `forgotten`).
    pub fn short_names() -> Vec<String> {
        Self::ALL
            .iter()
            .filter(|s| **s != PartitionStatus::PartitionUnknown)
            .map(|s| s.short_name().to_ascii_lowercase())
            .collect()
    }
}

impl JobGraphRunStatus {
    /// Every status, in the proto's order.
    const ALL: [JobGraphRunStatus; 6] = [
        JobGraphRunStatus::GraphStarted,
        JobGraphRunStatus::GraphAnalyzed,
        JobGraphRunStatus::AwaitingDeps,
        JobGraphRunStatus::GraphRunning,
        JobGraphRunStatus::GraphSuccess,
        JobGraphRunStatus::GraphFailed,
    ];

    /// Parses `failed`, `FAILED`, `GRAPH_FAILED` or `awaiting_deps` (any case).
    pub fn parse_name(s: &str) -> Result<Self, StatusError> {
        let upper = s.to_ascii_uppercase();
        Self::from_str_name(&upper)
            .or_else(|| Self::from_str_name(&format!("GRAPH_{upper}")))
            .ok_or_else(|| StatusError {
                given: s.to_string(),
                kind: "graph run",
                expected: Self::short_names(),
            })
    }

    /// The name without its `GRAPH_` prefix (`FAILED`, `AWAITING_DEPS`).
    pub fn short_name(&self) -> &'static str {
        self.as_str_name().trim_start_matches("GRAPH_")
    }

    /// The short names people may give, lowercase (`started`, ..., `failed`).
    pub fn short_names() -> Vec<String> {
        Self::ALL
            .iter()
            .map(|s| s.short_name().to_ascii_lowercase())
            .collect()
    }
}

impl WantStatus {
    /// The statuses a want can have (SLA missed is an event, not a status).
    const ALL: [WantStatus; 5] = [
        WantStatus::WantActive,
        WantStatus::WantSatisfied,
        WantStatus::WantFailed,
        WantStatus::WantExpired,
        WantStatus::WantCancelled,
    ];

    /// Parses `active`, `ACTIVE` or `WANT_ACTIVE` (any case).
    pub fn parse_name(s: &str) -> Result<Self, StatusError> {
        let upper = s.to_ascii_uppercase();
        let name = if upper.starts_with("WANT_") {
            upper
        } else {
            format!("WANT_{upper}")
        };
        Self::from_str_name(&name)
            .filter(|s| Self::ALL.contains(s))
            .ok_or_else(|| StatusError {
                given: s.to_string(),
                kind: "want",
                expected: Self::short_names(),
            })
    }

    /// The name without its `WANT_` prefix (`ACTIVE`).
    pub fn short_name(&self) -> &'static str {
        self.as_str_name().trim_start_matches("WANT_")
    }

    /// The short names people may give, lowercase.
    pub fn short_names() -> Vec<String> {
        Self::ALL
            .iter()
            .map(|s| s.short_name().to_ascii_lowercase())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_parses_from_its_short_and_full_names() {
        for s in PartitionStatus::ALL {
            if s == PartitionStatus::PartitionUnknown {
                continue;
            }
            assert_eq!(PartitionStatus::parse_name(s.as_str_name()), Ok(s));
            assert_eq!(
                PartitionStatus::parse_name(&s.short_name().to_ascii_lowercase()),
                Ok(s)
            );
        }
        let err = PartitionStatus::parse_name("done").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown partition status `done`; expected one of [requested, scheduled, building, available, failed, stale, delegated, forgotten]"
        );
    }

    #[test]
    fn every_graph_run_status_parses_from_its_short_and_full_names() {
        for s in JobGraphRunStatus::ALL {
            assert_eq!(JobGraphRunStatus::parse_name(s.as_str_name()), Ok(s));
            assert_eq!(
                JobGraphRunStatus::parse_name(&s.short_name().to_ascii_lowercase()),
                Ok(s)
            );
        }
        let err = JobGraphRunStatus::parse_name("done").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown graph run status `done`; expected one of [started, analyzed, awaiting_deps, running, success, failed]"
        );
    }
}
