//! Versions and early cutoff in the machine: which tasks rebuild outputs that are
//! available (outdated), and making a ready task fresh without running its job when its
//! MATERIALIZE inputs have the digests its outputs' latest build was made from and its
//! job's version and config are unchanged.

use databuild_proto::PartitionManifest;

use super::{materialize_refs, stripped, Machine, State};
use crate::scheduler::Progress;

impl Machine {
    /// Marks task `i` outdated: its outputs are AVAILABLE but built by another version of
    /// its job, so it is claimed even though they are available.
    pub fn mark_outdated(&mut self, i: usize) {
        self.tasks[i].outdated = true;
    }

    /// The tasks whose outputs' latest build the machine could keep: outdated ones and
    /// those with an output `stale` says may be STALE, each with at least one MATERIALIZE
    /// input (a source has nothing to compare).
    pub fn keepable(&self, stale: &dyn Fn(&str) -> bool) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&i| {
                let t = &self.tasks[i];
                !t.forced
                    && !materialize_refs(&t.config).is_empty()
                    && (t.outdated || t.outputs.iter().any(|o| stale(o)))
            })
            .collect()
    }

    /// The manifest of task `i`'s outputs' latest build (the same build for all of them).
    pub fn set_previous(&mut self, i: usize, manifest: PartitionManifest) {
        self.tasks[i].previous = Some(manifest);
    }

    /// Makes fresh, without running, the ready tasks whose inputs are unchanged.
    pub(super) fn cut_off_fresh(&mut self) {
        while let Some(i) = self.fresh.pop() {
            if self.tasks[i].state == State::Ready && self.unchanged(i) {
                self.cut_off(i);
            }
        }
    }

    /// Whether task `i`'s previous build can be kept: same job version and config, and
    /// every MATERIALIZE input has a digest, the one that build was made from.
    fn unchanged(&self, i: usize) -> bool {
        let t = &self.tasks[i];
        let Some(previous) = &t.previous else {
            return false;
        };
        let inputs = materialize_refs(&t.config);
        if previous.job_version != self.jobs[t.job].version
            || previous.config_fingerprint != t.fingerprint
        {
            return false;
        }
        !inputs.is_empty()
            && inputs.iter().all(|input| {
                let r = &input.str;
                let now = self.manifests.get(r).and_then(|m| m.digests.get(r));
                let then = previous
                    .inputs
                    .iter()
                    .find(|m| m.outputs.iter().any(|o| &o.str == r))
                    .and_then(|m| m.digests.get(r));
                matches!((now, then), (Some(a), Some(b)) if !a.is_empty() && a == b)
            })
    }

    /// Task `i`'s outputs become AVAILABLE again, keeping their latest build (no job run).
    fn cut_off(&mut self, i: usize) {
        let job = self.tasks[i].job;
        self.ready[job].retain(|&x| x != i);
        let t = &self.tasks[i];
        let manifest = t.previous.clone().expect("checked");
        let building = t.partition_events_building(&self.run_id);
        self.out.events.extend(building);
        let available = t.available(&self.run_id, "", &manifest);
        self.out.events.extend(available);
        for o in &t.outputs {
            self.manifests.insert(o.clone(), stripped(&manifest));
        }
        (self.progress)(Progress::CutOff {
            label: t.label.clone(),
            outputs: t.outputs.clone(),
        });
        self.outcome.cut_off.extend(t.outputs.iter().cloned());
        self.tasks[i].state = State::Succeeded;
        self.unfinished -= 1;
        self.release_dependents(i);
    }
}
