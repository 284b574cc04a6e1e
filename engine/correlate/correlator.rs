//! Chains the stages into one deterministic state machine: `apply(alarm, now)` runs the
//! alarm stage, hands a resource update (if any) to the impact stage, and lets incident
//! management follow the CIs that changed. Operator actions and timer ticks enter here too,
//! so one writer owns all state and the same inputs always give the same outputs.

use super::alarm_stage::{AlarmOutcome, AlarmPolicy, AlarmStage, ResourceUpdate};
use super::impact::{ImpactStage, Landed};
use super::incidents::{CoreError, IncidentBook, IncidentPolicy, IncidentStats};
use crate::model::EpochMillis;
use crate::model::alarm::Alarm;
use crate::model::incident::{Incident, IncidentChange, IncidentId};
use crate::model::topology::{CiIdx, Topology};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct CorrelatorConfig {
    pub alarms: AlarmPolicy,
    pub incidents: IncidentPolicy,
}

/// Counters a NOC engineer reads to check the engine's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub alarms_in: u64,
    pub raised: u64,
    /// Repeats of active alarms folded into their tally (deduplicated).
    pub duplicates: u64,
    pub severity_changes: u64,
    pub cleared: u64,
    pub clears_without_raise: u64,
    /// Resource updates for resources the topology does not know.
    pub unmapped: u64,
    pub active_alarms: u64,
    pub incidents: IncidentStats,
}

/// What one alarm did, for the edges' counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub alarm: AlarmOutcome,
    /// Set when the alarm changed its resource's active alarms.
    pub landed: Option<Landed>,
}

#[derive(Debug)]
pub struct Correlator {
    alarms: AlarmStage,
    impact: ImpactStage,
    incidents: IncidentBook,
    stats: Stats,
    /// Reused between calls so propagation does not allocate per alarm.
    changed: Vec<CiIdx>,
}

impl Correlator {
    pub fn new(topology: Arc<Topology>, config: CorrelatorConfig) -> Correlator {
        Correlator {
            alarms: AlarmStage::new(config.alarms),
            impact: ImpactStage::new(topology),
            incidents: IncidentBook::new(config.incidents),
            stats: Stats::default(),
            changed: Vec::new(),
        }
    }

    /// Applies one alarm notification observed at `now`; incident changes go to `out`.
    pub fn apply(&mut self, alarm: &Alarm, now: EpochMillis, out: &mut Vec<IncidentChange>) -> Outcome {
        self.stats.alarms_in += 1;
        let (outcome, update) = self.alarms.apply(alarm);
        match outcome {
            AlarmOutcome::Raised => self.stats.raised += 1,
            AlarmOutcome::Repeated => self.stats.duplicates += 1,
            AlarmOutcome::SeverityChanged => self.stats.severity_changes += 1,
            AlarmOutcome::Cleared => self.stats.cleared += 1,
            AlarmOutcome::ClearWithoutRaise => self.stats.clears_without_raise += 1,
        }
        let landed = update.map(|update| self.apply_update(&update, now, out));
        Outcome { alarm: outcome, landed }
    }

    /// The impact stage's entry point: one resource's active alarms changed.
    pub fn apply_update(&mut self, update: &ResourceUpdate, now: EpochMillis, out: &mut Vec<IncidentChange>) -> Landed {
        self.changed.clear();
        let landed = self.impact.apply(update, &mut self.changed);
        match landed {
            Landed::Unmapped => self.stats.unmapped += 1,
            Landed::Mapped(_) => self.incidents.on_changes(&self.impact, &self.changed, now, out),
        }
        landed
    }

    /// Advances incident timers to `now`.
    pub fn tick(&mut self, now: EpochMillis, out: &mut Vec<IncidentChange>) {
        self.incidents.tick(now, out);
    }

    pub fn acknowledge(&mut self, id: IncidentId, by: &str, now: EpochMillis) -> Result<IncidentChange, CoreError> {
        self.incidents.acknowledge(id, by, now)
    }

    pub fn resolve(
        &mut self,
        id: IncidentId,
        by: &str,
        reason: &str,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        self.incidents.resolve(id, by, reason, now)
    }

    pub fn add_note(
        &mut self,
        id: IncidentId,
        author: &str,
        text: &str,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        self.incidents.add_note(id, author, text, now)
    }

    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(id)
    }

    /// Incidents not yet closed, by id.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter()
    }

    pub fn alarms(&self) -> &AlarmStage {
        &self.alarms
    }

    pub fn impact(&self) -> &ImpactStage {
        &self.impact
    }

    pub fn topology(&self) -> &Arc<Topology> {
        self.impact.topology()
    }

    pub fn stats(&self) -> Stats {
        Stats { active_alarms: self.alarms.active_count() as u64, incidents: self.incidents.stats(), ..self.stats }
    }
}
