//! The sizes of what the core holds, structure by structure: what the soak benchmark
//! (`faultline bench --soak`) samples over weeks of stream time, so that a structure that
//! grows without bound is named, not only seen in the process's resident memory.
//!
//! Each size is an entry count read from the structure itself (the active alarms are
//! counted resource by resource, not taken from the running count), so that the soak's
//! consistency checks compare two ways of knowing the same thing. Counting walks the
//! incidents held and the per-service table: for sampling, never for the hot path.

use super::alarm_stage::AlarmStage;
use super::impact::ImpactStage;
use super::incidents::IncidentBook;
use crate::model::incident::IncidentState;

/// Entry counts of the core's structures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreSizes {
    /// Alarm stage: active alarms, counted over the resources that hold them.
    pub active_alarms: usize,
    /// Alarm stage: resources with at least one active alarm.
    pub alarm_resources: usize,
    /// Alarm stage: of those, the resources the topology does not know.
    pub unlocated_resources: usize,
    /// Alarm stage: clears remembered, by alarm identity.
    pub remembered_clears: usize,
    /// Alarm stage: the queue that forgets remembered clears in stream-time order.
    pub clear_queue: usize,
    /// Alarm stage: source systems interned (the unnamed one included).
    pub sources: usize,
    /// Alarm stage: the ageing queue (alarms of sources with a maximum age, by due time).
    pub ageing_queue: usize,
    /// Alarm stage: resources changed since the changelog last took them.
    pub dirty_resources: usize,
    /// Impact stage: resources with active alarms that the topology does not know.
    pub unmapped_resources: usize,
    /// Impact stage: CIs whose inherited roots live in a B-tree (more than 64 of them).
    pub large_root_sets: usize,
    /// Impact stage: CIs whose dependency counts are kept beside the states.
    pub wide_counts: usize,
    /// Incidents held (not yet closed), and by state.
    pub incidents: usize,
    pub open: usize,
    pub acknowledged: usize,
    pub resolved: usize,
    /// Incident timers waiting (hold-downs, reopen windows), stale ones included.
    pub timers: usize,
    /// Roots owned by an incident.
    pub by_root: usize,
    /// Failing roots no incident owns.
    pub orphaned_roots: usize,
    /// Roots owned weakly (gained by a service already in the incident).
    pub weak_roots: usize,
    /// CIs with many roots, with the incidents owning them.
    pub wide_owners: usize,
    /// Symptoms owned by an incident.
    pub by_symptom: usize,
    /// CIs named by incidents (as roots or symptoms), with the incidents naming them.
    pub members: usize,
    /// Services impacted under an incident (non-empty entries of the per-CI table).
    pub services_followed: usize,
    /// Incidents changed since the changelog last took them.
    pub dirty_incidents: usize,
    /// Over the incidents held: the roots each lists, those it registered, its symptoms,
    /// and the CIs waiting for its next refresh.
    pub incident_roots: usize,
    pub registered_roots: usize,
    pub incident_symptoms: usize,
    pub stale_cis: usize,
    /// Over the incidents held: active alarms waiting past a full alarm list (omitted).
    pub waiting_alarms: usize,
    /// Over the incidents held: what each publishes.
    pub impacted_services: usize,
    pub timeline_entries: usize,
    pub notes: usize,
    pub root_cause_alarms: usize,
    pub symptom_alarms: usize,
    /// Topology: slots (the length of every table indexed by CI), those released and
    /// waiting for a new CI, and deleted CIs whose slots are not released yet.
    pub topology_slots: usize,
    pub free_slots: usize,
    pub deleted_cis: usize,
}

/// What the incidents held keep beside what they publish, summed over them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TrackedTotals {
    pub(super) roots: usize,
    pub(super) registered_roots: usize,
    pub(super) symptoms: usize,
    pub(super) stale: usize,
    pub(super) waiting: usize,
}

impl CoreSizes {
    /// Reads every size from the three stages.
    pub(super) fn of(alarms: &AlarmStage, impact: &ImpactStage, incidents: &IncidentBook) -> CoreSizes {
        let mut sizes = CoreSizes {
            active_alarms: alarms.counted_alarms_len(),
            alarm_resources: alarms.resources_len(),
            unlocated_resources: alarms.unlocated_len(),
            remembered_clears: alarms.remembered_clears(),
            clear_queue: alarms.clear_queue_len(),
            sources: alarms.sources_len(),
            ageing_queue: alarms.ageing_len(),
            dirty_resources: alarms.dirty_len(),
            unmapped_resources: impact.unmapped().len(),
            large_root_sets: impact.large_sets_len(),
            wide_counts: impact.wide_counts_len(),
            timers: incidents.timers_len(),
            by_root: incidents.by_root_len(),
            orphaned_roots: incidents.orphaned_len(),
            weak_roots: incidents.weak_len(),
            wide_owners: incidents.wide_len(),
            by_symptom: incidents.by_symptom_len(),
            members: incidents.members_len(),
            services_followed: incidents.services_followed_len(),
            dirty_incidents: incidents.dirty_len(),
            ..CoreSizes::default()
        };
        let TrackedTotals { roots, registered_roots, symptoms, stale, waiting } = incidents.tracked_totals();
        (
            sizes.incident_roots,
            sizes.registered_roots,
            sizes.incident_symptoms,
            sizes.stale_cis,
            sizes.waiting_alarms,
        ) = (roots, registered_roots, symptoms, stale, waiting);
        for incident in incidents.iter() {
            sizes.incidents += 1;
            match incident.state {
                IncidentState::Open => sizes.open += 1,
                IncidentState::Acknowledged => sizes.acknowledged += 1,
                IncidentState::Resolved => sizes.resolved += 1,
                // A closed incident leaves memory: one still held counts among the incidents only.
                IncidentState::Closed => {}
            }
            sizes.impacted_services += incident.services.len();
            sizes.timeline_entries += incident.timeline.len();
            sizes.notes += incident.notes.len();
            sizes.root_cause_alarms += incident.root_cause_alarms.len();
            sizes.symptom_alarms += incident.symptom_alarms.len();
        }
        sizes
    }

    /// Every size with a short name, in the order the soak prints them.
    pub fn named(&self) -> [(&'static str, usize); 34] {
        [
            ("active", self.active_alarms),
            ("alarm_res", self.alarm_resources),
            ("unlocated", self.unlocated_resources),
            ("clears", self.remembered_clears),
            ("clear_q", self.clear_queue),
            ("sources", self.sources),
            ("ageing_q", self.ageing_queue),
            ("dirty_res", self.dirty_resources),
            ("unmapped", self.unmapped_resources),
            ("large_sets", self.large_root_sets),
            ("wide_cnt", self.wide_counts),
            ("incidents", self.incidents),
            ("open", self.open),
            ("ack", self.acknowledged),
            ("resolved", self.resolved),
            ("timers", self.timers),
            ("by_root", self.by_root),
            ("orphaned", self.orphaned_roots),
            ("weak", self.weak_roots),
            ("wide", self.wide_owners),
            ("by_symptom", self.by_symptom),
            ("members", self.members),
            ("by_service", self.services_followed),
            ("dirty_inc", self.dirty_incidents),
            ("inc_roots", self.incident_roots),
            ("reg_roots", self.registered_roots),
            ("inc_symp", self.incident_symptoms),
            ("stale", self.stale_cis),
            ("waiting", self.waiting_alarms),
            ("services", self.impacted_services),
            ("timeline", self.timeline_entries),
            ("notes", self.notes),
            ("rc_alarms", self.root_cause_alarms),
            ("sym_alarms", self.symptom_alarms),
        ]
    }
}
