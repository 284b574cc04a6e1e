//! What the core hands to its changelog, and takes back at restore.
//!
//! The correlator's state is three parts: the active alarms (alarm stage), the CI states
//! (impact stage), and the incidents with their bookkeeping. Only the first and the last
//! are written: CI states are a pure function of the active alarms and the topology, so a
//! restore re-derives them by propagation. Records name CIs by id, never by dense index, so
//! that they stay valid when the topology is reloaded between two runs.
//!
//! [`Correlator::take_changes`](super::Correlator::take_changes) drains what changed since
//! the last call (coalesced: a resource that saw a thousand repeats is written once);
//! [`Correlator::restore`](super::Correlator::restore) rebuilds a correlator that behaves
//! exactly as the one that wrote the records.

use super::Stats;
use super::alarm_stage::RememberedClear;
use super::feed::HeldChange;
use super::impact::ImpactStage;
use super::impacted::Impacted;
use super::incidents::{IncidentBook, Tracked};
use super::maintenance::Window;
use crate::model::EpochMillis;
use crate::model::alarm::AlarmRef;
use crate::model::incident::{Incident, IncidentId};
use crate::model::state::State;
use crate::model::topology::{CiIdx, CiRecord, Topology};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// [`IncidentRecord::root_registration`]: registered by a service joining the incident.
pub const REGISTERED: u8 = 1;
/// [`IncidentRecord::root_registration`]: registered by a service already in the incident
/// when it gained the root.
pub const REGISTERED_WEAKLY: u8 = 2;

/// One incident with the bookkeeping incident management needs to carry on with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentRecord {
    /// Shared with the core: an export costs a reference count, not a copy.
    pub incident: Arc<Incident>,
    /// Root-cause CIs (the incident's root-cause group).
    pub roots: Vec<Arc<str>>,
    /// Parallel to `roots`: whether this incident owns each in the root → incident index,
    /// and how ([`REGISTERED`], [`REGISTERED_WEAKLY`]; 0: not). One byte a root, where a
    /// storm incident has tens of thousands of them.
    pub root_registration: Vec<u8>,
    /// Roots this incident owns in the root → incident index that are not among `roots`
    /// (since explained by another failure); all of them in records of earlier versions.
    pub registered_roots: Vec<Arc<str>>,
    /// Of those, the ones registered weakly (by a service already in the incident).
    pub weak_roots: Vec<Arc<str>>,
    /// Every service the incident has impacted, with its current state.
    pub services: Vec<(Arc<str>, State)>,
    pub symptoms: Vec<Arc<str>>,
    /// Services currently followed by this incident (a service moves between incidents).
    pub owned_services: Vec<Arc<str>>,
    /// Symptom CIs currently attached to this incident.
    pub owned_symptoms: Vec<Arc<str>>,
    pub restored_since: Option<EpochMillis>,
}

/// One resource's active alarms. `active` is the alarm stage's live view; `reported` is,
/// alarm by alarm, the tally and last-seen time the impact stage last heard of. They differ
/// because repeats only bump the live tally (a repeat changes no state, so it is not
/// propagated, and incident snapshots keep the tally of their last change); a restore needs
/// both to continue exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRecord {
    pub active: Vec<AlarmRef>,
    pub reported: Vec<(u64, EpochMillis)>,
    /// Parallel to `active`: the fingerprint of the last notification applied to each alarm.
    pub notifications: Vec<u64>,
    /// Parallel to `active`: that notification's sequence (empty in records of versions
    /// that did not write it: zeros).
    pub sequences: Vec<u64>,
    /// Parallel to `active`: the source system that reported each alarm (empty in records
    /// of versions that did not write it: unnamed).
    pub sources: Vec<Arc<str>>,
    /// The clears remembered for the resource, by alarm type and qualifier: a resource
    /// whose alarms have all cleared keeps its record while it has some.
    pub clears: Vec<RememberedClear>,
}

impl ResourceRecord {
    /// Nothing to keep: no active alarm, no clear remembered (the record is deleted).
    pub fn is_empty(&self) -> bool {
        self.active.is_empty() && self.clears.is_empty()
    }
}

/// The part of the core's state that belongs to no key: the incident id sequence and the
/// counters, so that accounting survives restarts exactly like the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreMeta {
    pub next_incident: u64,
    /// Stream time, so that timers carry on from where they were.
    pub clock: EpochMillis,
    pub stats: Stats,
    /// Topology batches applied since the topology was first built.
    pub topology_version: u64,
}

impl Default for CoreMeta {
    fn default() -> Self {
        CoreMeta { next_incident: 1, clock: EpochMillis::MIN, stats: Stats::default(), topology_version: 0 }
    }
}

/// A CI the topology changed at run time, as the changelog keeps it: a restore applies
/// these over the topology it starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyEntry {
    /// The CI's record; for a deleted one, its last (incidents may still name it).
    pub record: CiRecord,
    pub deleted: bool,
    /// Deleted, and its slot released (taken by another CI perhaps): a restore leaves the
    /// CI out, and its slot to whoever else names it. Kept only for CIs of the topology
    /// file (a restore would take them back from it); others' entries are deleted.
    pub released: bool,
    /// Its slot in the topology that wrote it: a restore puts it back there, so that
    /// everything indexed or ordered by slot stays as it was.
    pub slot: CiIdx,
}

/// What changed since the last [`Correlator::take_changes`](super::Correlator::take_changes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreChanges {
    /// Each changed resource with its active alarms; empty when all have cleared.
    pub resources: Vec<(Arc<str>, ResourceRecord)>,
    /// Each changed incident; `None` once it has closed and left memory.
    pub incidents: Vec<(IncidentId, Option<IncidentRecord>)>,
    /// Each CI a topology batch added, changed or deleted; `None` once released and
    /// forgotten.
    pub topology: Vec<(Arc<str>, Option<TopologyEntry>)>,
    /// Each CI whose held feed change was set (`Some`) or dropped (`None`).
    pub held: Vec<(Arc<str>, Option<HeldChange>)>,
    /// Each maintenance window set (`Some`) or forgotten (`None`), by change reference.
    pub windows: Vec<(Arc<str>, Option<Window>)>,
    pub meta: CoreMeta,
}

/// What a compacted changelog holds: the latest value of every key. Folding each
/// [`CoreChanges`] in order gives what a reader finds after compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreSnapshot {
    /// Active alarms and remembered clears per resource; resources with neither are absent.
    pub resources: BTreeMap<Arc<str>, ResourceRecord>,
    pub incidents: BTreeMap<IncidentId, IncidentRecord>,
    /// CIs topology batches changed, by id.
    pub topology: BTreeMap<Arc<str>, TopologyEntry>,
    /// Feed changes held, by CI id.
    pub held: BTreeMap<Arc<str>, HeldChange>,
    /// Maintenance windows, by change reference.
    pub windows: BTreeMap<Arc<str>, Window>,
    pub meta: CoreMeta,
}

impl CoreSnapshot {
    pub fn fold(&mut self, changes: CoreChanges) {
        for (resource, record) in changes.resources {
            if record.is_empty() {
                self.resources.remove(&resource);
            } else {
                self.resources.insert(resource, record);
            }
        }
        for (id, record) in changes.incidents {
            match record {
                Some(record) => self.incidents.insert(id, record),
                None => self.incidents.remove(&id),
            };
        }
        for (id, entry) in changes.topology {
            match entry {
                Some(entry) => self.topology.insert(id, entry),
                None => self.topology.remove(&id),
            };
        }
        for (id, held) in changes.held {
            match held {
                Some(held) => self.held.insert(id, held),
                None => self.held.remove(&id),
            };
        }
        for (id, window) in changes.windows {
            match window {
                Some(window) => self.windows.insert(id, window),
                None => self.windows.remove(&id),
            };
        }
        self.meta = changes.meta;
    }
}

/// What a restore took back, for the log line that reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub active_alarms: usize,
    pub incidents: usize,
    /// References to CIs the current topology no longer has, dropped.
    pub unknown_cis: usize,
    /// CIs changed at run time taken back over the topology file, and those of them it no
    /// longer takes (left out).
    pub topology_changes: usize,
    pub topology_rejected: usize,
}

impl IncidentBook {
    /// The record of an incident still in memory.
    pub(super) fn export(&self, id: IncidentId, topology: &Topology) -> Option<IncidentRecord> {
        let t = self.incidents.get(&id)?;
        let name = |ci: CiIdx| topology.ci(ci).id.clone();
        let names = |set: &mut dyn Iterator<Item = &CiIdx>| set.map(|&ci| name(ci)).collect::<Vec<_>>();
        // An incident owns services among those it impacted, and symptoms among its
        // symptoms and former roots: looking there avoids scanning the whole indexes.
        let owned_services =
            t.services.iter().filter(|&(ci, _)| self.service_owner(ci) == Some(id)).map(|(ci, _)| name(ci)).collect();
        let owned: BTreeSet<CiIdx> =
            t.symptoms.iter().chain(&t.roots).copied().filter(|ci| self.by_symptom.get(ci) == Some(&id)).collect();
        let owned_symptoms = names(&mut owned.iter());
        let registration = |root: &CiIdx| match (t.registered_roots.contains(root), self.weak.contains(root)) {
            (false, _) => 0,
            (true, false) => REGISTERED,
            (true, true) => REGISTERED_WEAKLY,
        };
        let elsewhere: Vec<CiIdx> =
            t.registered_roots.iter().copied().filter(|r| t.roots.binary_search(r).is_err()).collect();
        Some(IncidentRecord {
            incident: t.incident.clone(),
            roots: names(&mut t.roots.iter()),
            root_registration: t.roots.iter().map(registration).collect(),
            registered_roots: names(&mut elsewhere.iter()),
            weak_roots: names(&mut elsewhere.iter().filter(|r| self.weak.contains(r))),
            services: t.services.iter().map(|(ci, state)| (name(ci), state)).collect(),
            symptoms: names(&mut t.symptoms.iter()),
            owned_services,
            owned_symptoms,
            restored_since: t.restored_since,
        })
    }

    /// Takes back exported records. CIs the topology has never had are dropped (one deleted
    /// by a topology batch keeps its place: incidents still name it); their count is
    /// returned so the caller can report it.
    pub(super) fn restore(&mut self, records: Vec<IncidentRecord>, topology: &Topology, meta: &CoreMeta) -> usize {
        let mut missing = 0usize;
        let mut lookup = |id: &Arc<str>| {
            let found = topology.slot(id);
            missing += usize::from(found.is_none());
            found
        };
        let mut highest = 0;
        for record in records {
            let id = record.incident.id;
            highest = highest.max(id.0);
            let set = |ids: &[Arc<str>], lookup: &mut dyn FnMut(&Arc<str>) -> Option<CiIdx>| {
                ids.iter().filter_map(&mut *lookup).collect::<BTreeSet<CiIdx>>()
            };
            let mut registered_roots = set(&record.registered_roots, &mut lookup);
            let mut weak = set(&record.weak_roots, &mut lookup);
            for (root, &how) in record.roots.iter().zip(&record.root_registration) {
                if how == 0 {
                    continue;
                }
                let Some(root) = lookup(root) else { continue };
                registered_roots.insert(root);
                if how == REGISTERED_WEAKLY {
                    weak.insert(root);
                }
            }
            for &root in &registered_roots {
                self.by_root.insert(root, id);
            }
            self.weak.extend(weak);
            for service in set(&record.owned_services, &mut lookup) {
                self.set_service_owner(service, Some(id));
            }
            for symptom in set(&record.owned_symptoms, &mut lookup) {
                self.by_symptom.insert(symptom, id);
            }
            let services: Vec<(CiIdx, State)> =
                record.services.iter().filter_map(|(ci, state)| Some((lookup(ci)?, *state))).collect();
            let services = Impacted::restore(services, topology);
            let cleared = [
                super::incidents::cleared_index(&record.incident.root_cause_alarms),
                super::incidents::cleared_index(&record.incident.symptom_alarms),
            ];
            let mut tracked = Tracked {
                roots: set(&record.roots, &mut lookup).into_iter().collect(),
                registered_roots,
                services,
                symptoms: set(&record.symptoms, &mut lookup),
                restored_since: record.restored_since,
                incident: record.incident,
                stale: BTreeSet::new(),
                titled: None,
                synced: false,
                merge_hints: [0; 2],
                rest: Default::default(),
                cleared,
                complete: false,
            };
            for &ci in tracked.roots.iter().chain(&tracked.symptoms) {
                super::incidents::join(&mut self.members, ci, id);
            }
            // The writer may have had updates pending for any of them: the first refresh
            // brings every part up to date, as the writer's would.
            tracked.stale.extend(tracked.roots.iter().chain(&tracked.symptoms));
            self.incidents.insert(id, tracked);
        }
        self.next_id = meta.next_incident.max(highest + 1);
        self.stats = meta.stats.incidents;
        self.dirty.clear();
        missing
    }

    /// After a restore, once the CI states are propagated again: the failing roots no
    /// incident owns, which services that have them register at their next change.
    pub(super) fn find_orphaned(&mut self, impact: &ImpactStage) {
        let topology = impact.topology();
        self.orphaned = topology
            .iter()
            .map(|(ci, _)| ci)
            .filter(|&ci| !self.by_root.contains_key(&ci) && impact.is_root(ci))
            .collect();
    }
}
