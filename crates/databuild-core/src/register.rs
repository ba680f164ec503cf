//! Registering external data: partitions no job builds (a dump, a vendor's file) recorded
//! as AVAILABLE, so that builds can read them.

use std::collections::HashSet;

use databuild_bel::{Event, EventLog};
use databuild_proto::{PartitionManifest, PartitionRef, PartitionStatus};

use crate::{events, graph::Graph, planner::PlanError, CoreError};

/// Why refs cannot be registered. Nothing is written when any ref is refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A job of the graph produces the ref: it is built, not registered.
    #[error("partition `{partition_ref}` is produced by job `{job}`; build it with `databuild build {partition_ref}`, or pass `--force` to register it as external data anyway")]
    Produced { partition_ref: String, job: String },
}

/// What [`register`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Refs recorded as AVAILABLE now, in request order.
    pub registered: Vec<String>,
    /// Refs that were AVAILABLE already (nothing written for them), in request order.
    pub already_available: Vec<String>,
}

/// Refs registered per append.
const CHUNK: usize = 50_000;

/// Records the distinct `refs` (each validated) as AVAILABLE external data, in appends of
/// 50,000 (each atomic); refs AVAILABLE already are left alone. With `graph`, refs one of its jobs
/// produces are refused (pass `None` to register them anyway). `client` is recorded as
/// the requesting client.
pub async fn register(
    graph: Option<&Graph>,
    bel: &dyn EventLog,
    refs: &[String],
    client: &str,
) -> Result<Registered, CoreError> {
    let refs = crate::planner::distinct(refs).into_owned();
    for r in &refs {
        databuild_proto::validate_ref(r).map_err(PlanError::from)?;
    }
    if let Some(graph) = graph {
        let found = graph.lookup(&refs).await.map_err(PlanError::from)?;
        if let Some((job, produced)) = found.by_job.into_iter().next() {
            return Err(RegisterError::Produced {
                partition_ref: produced[0].clone(),
                job,
            }
            .into());
        }
    }
    let available: HashSet<String> = bel
        .partitions(&refs)
        .await?
        .into_iter()
        .filter(|s| s.status == PartitionStatus::PartitionAvailable)
        .map(|s| s.partition_ref)
        .collect();
    let (already_available, registered): (Vec<String>, Vec<String>) =
        refs.into_iter().partition(|r| available.contains(r));
    // In appends of at most CHUNK events, so that registering ten million refs needs
    // memory for one chunk at a time; a run stopped half-way is finished by running it
    // again (refs registered already are left alone).
    for chunk in registered.chunks(CHUNK) {
        let evs: Vec<Event> = chunk
            .iter()
            .map(|r| Event::Partition(external(r, client)))
            .collect();
        bel.append(evs).await?;
    }
    Ok(Registered {
        registered,
        already_available,
    })
}

/// The AVAILABLE event of external partition `r`.
fn external(r: &str, client: &str) -> databuild_proto::PartitionEvent {
    let mut e = events::partition(r, PartitionStatus::PartitionAvailable, "");
    let now = databuild_proto::now();
    e.requesting_clients = vec![client.to_string()];
    e.storage_backend = "external".into();
    e.manifest = Some(PartitionManifest {
        outputs: vec![PartitionRef::new(r)],
        start_time: Some(now),
        end_time: Some(now),
        ..Default::default()
    });
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registers_each_ref_once_and_leaves_available_ones_alone() {
        let dir = tempfile::tempdir().unwrap();
        let bel = databuild_bel::open("sqlite://bel.sqlite", dir.path())
            .await
            .unwrap();
        let refs = ["ext/1", "ext/2", "ext/1"].map(String::from);
        let done = register(None, bel.as_ref(), &refs, "test").await.unwrap();
        assert_eq!(done.registered, ["ext/1", "ext/2"]);
        assert!(done.already_available.is_empty());
        let e = bel.latest_partition_event("ext/2").await.unwrap().unwrap();
        assert_eq!(e.status, PartitionStatus::PartitionAvailable as i32);
        assert_eq!(e.storage_backend, "external");
        assert_eq!(e.requesting_clients, ["test"]);

        let refs = ["ext/2", "ext/3"].map(String::from);
        let done = register(None, bel.as_ref(), &refs, "test").await.unwrap();
        assert_eq!(done.registered, ["ext/3"]);
        assert_eq!(done.already_available, ["ext/2"]);
    }

    #[tokio::test]
    async fn a_bad_ref_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let bel = databuild_bel::open("sqlite://bel.sqlite", dir.path())
            .await
            .unwrap();
        let refs = ["ext/1", "a\tb"].map(String::from);
        let err = register(None, bel.as_ref(), &refs, "test")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
        assert!(bel.events_after(0, 10).await.unwrap().is_empty());
    }
}
