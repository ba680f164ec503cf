//! Versions and early cutoff, the I/O side: which planned tasks rebuild outputs that are
//! AVAILABLE but were built by another version of their job (outdated) or from such a
//! partition, and the latest build of STALE or outdated outputs, which the machine keeps
//! instead of running the job when the inputs are unchanged (`machine/cutoff.rs`).

use std::collections::{HashMap, HashSet};

use databuild_bel::Event;
use databuild_proto::{PartitionManifest, PartitionStatus};

use super::Run;
use crate::CoreError;

impl Run<'_> {
    /// Marks the outdated tasks and gives the machine the builds it may keep.
    pub(super) async fn versions(&mut self) -> Result<(), CoreError> {
        let outputs: Vec<String> = (0..self.m.len())
            .flat_map(|i| self.m.task(i).outputs.clone())
            .collect();
        let statuses: HashMap<String, PartitionStatus> = self
            .bel
            .partitions(&outputs)
            .await?
            .into_iter()
            .map(|r| (r.partition_ref, r.status))
            .collect();
        let available: Vec<String> = outputs
            .iter()
            .filter(|o| statuses.get(*o) == Some(&PartitionStatus::PartitionAvailable))
            .cloned()
            .collect();
        if !self.opts.keep_outdated && !available.is_empty() {
            let outdated = outdated(self.graph, self.bel.as_ref()).await?;
            for i in 0..self.m.len() {
                if self
                    .m
                    .task(i)
                    .outputs
                    .iter()
                    .any(|o| outdated.all.contains(o))
                {
                    self.m.mark_outdated(i);
                }
            }
        }
        // STALE, or asked for since it went STALE.
        let stale = |o: &str| {
            matches!(
                statuses.get(o),
                Some(PartitionStatus::PartitionStale | PartitionStatus::PartitionRequested)
            )
        };
        for i in self.m.keepable(&stale) {
            let outputs = self.m.task(i).outputs.clone();
            let Some(first) = outputs.first() else {
                continue;
            };
            let Some(manifest) = self.latest_build(first).await? else {
                continue;
            };
            let covers = outputs
                .iter()
                .all(|o| manifest.outputs.iter().any(|m| &m.str == o));
            if covers {
                self.m.set_previous(i, manifest);
            }
        }
        Ok(())
    }

    /// The manifest of `r`'s latest build, if its data is still that build's: `r` is
    /// AVAILABLE, or STALE because of an upstream partition (not invalidated itself) and
    /// nothing but requests since. Anything else (a failed or lost rebuild may have
    /// written over it) keeps nothing.
    async fn latest_build(&self, r: &str) -> Result<Option<PartitionManifest>, CoreError> {
        use PartitionStatus as P;
        let history = self.bel.partition_history(r).await?;
        for logged in history.into_iter().rev() {
            let Event::Partition(p) = logged.event else {
                continue;
            };
            match p.status() {
                P::PartitionRequested | P::PartitionDelegated => {}
                P::PartitionStale if !p.upstream_deps.is_empty() => {}
                P::PartitionAvailable => return Ok(p.manifest),
                _ => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// AVAILABLE partitions that a build must not keep as they are, because of versions.
#[derive(Debug, Default)]
pub(crate) struct Outdated {
    /// Built by another version of their job than the graph gives it now.
    pub own: HashSet<String>,
    /// Those, and everything built from them, transitively.
    pub all: HashSet<String>,
}

/// The outdated partitions of the event log for `graph`: one indexed query per job (each
/// finds only the partitions built at another version, so the cost grows with what is
/// outdated, not with the catalog), then what was built from them, through the lineage.
pub(crate) async fn outdated(
    graph: &crate::graph::Graph,
    bel: &dyn databuild_bel::EventRead,
) -> Result<Outdated, databuild_bel::BelError> {
    let jobs: Vec<(String, String)> = graph
        .jobs
        .iter()
        .map(|j| (j.label.clone(), j.version.clone()))
        .collect();
    let own: HashSet<String> = bel
        .built_by_other_version(&jobs)
        .await?
        .into_iter()
        .collect();
    let mut all = own.clone();
    let mut frontier: Vec<String> = own.iter().cloned().collect();
    while !frontier.is_empty() {
        let pairs = bel.lineage(&frontier, true).await?;
        frontier = pairs
            .into_iter()
            .map(|(_, down)| down)
            .filter(|d| all.insert(d.clone()))
            .collect();
    }
    Ok(Outdated { own, all })
}
