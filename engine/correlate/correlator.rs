//! Chains the stages into one deterministic state machine: `apply(alarm, now)` runs the
//! alarm stage, hands a resource update (if any) to the impact stage, and lets incident
//! management follow the CIs that changed. Operator actions and timer ticks enter here too,
//! so one writer owns all state and the same inputs always give the same outputs.

use super::alarm_stage::{AlarmOutcome, AlarmPolicy, AlarmStage, ChangedResource, LastHeard, ResourceUpdate};
use super::changelog::{CoreChanges, CoreMeta, CoreSnapshot, ResourceRecord, RestoreSummary, TopologyEntry};
use super::feed::{self, Candidate, FeedChange, FeedOutcome, Held, HeldChange, Refusal, Verdict};
use super::impact::{Changes, ImpactStage, Landed};
use super::incidents::{CoreError, IncidentBook, IncidentPolicy, IncidentStats};
use super::maintenance::{Maintenance, MaintenanceError, Transition, WindowSpec, WindowState};
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, Resync};
use crate::model::incident::{Incident, IncidentChange, IncidentId, Priority, TimelineKind};
use crate::model::state::State;
use crate::model::topology::{Applied, CiChange, CiClass, CiIdx, CiRecord, Rule, SlaTier, Topology, TopologyError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct CorrelatorConfig {
    pub alarms: AlarmPolicy,
    pub incidents: IncidentPolicy,
    pub feed: FeedPolicy,
}

/// How the topology feed waits (see [`feed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedPolicy {
    /// Feed changes held at most, waiting for another CI's change; past it the oldest is
    /// refused.
    pub max_held: usize,
    /// How long (stream time) a change is held at most; then it is refused.
    pub max_held_ms: EpochMillis,
}

impl Default for FeedPolicy {
    fn default() -> Self {
        FeedPolicy { max_held: 100_000, max_held_ms: 3_600_000 }
    }
}

/// Counters a NOC engineer reads to check the engine's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub alarms_in: u64,
    pub raised: u64,
    /// Repeats of active alarms folded into their tally (deduplicated).
    pub duplicates: u64,
    pub severity_changes: u64,
    /// Retransmissions of the last notification of an alarm, ignored.
    pub duplicate_notifications: u64,
    /// Notifications older than the last one applied to their alarm (by sequence within one
    /// notification id, else by event time), or than its clear: not applied.
    pub stale: u64,
    pub cleared: u64,
    /// Active alarms cleared by a resynchronisation of their source that did not list them
    /// (counted in `cleared` too).
    pub cleared_by_resync: u64,
    /// Active alarms cleared for not being repeated within their source's maximum age
    /// (counted in `cleared` too).
    pub aged: u64,
    pub clears_without_raise: u64,
    /// Raises past what the engine keeps (a resource's 1,000 active alarms, or
    /// `correlation.max_unmapped_resources` resources unknown to the topology), not applied.
    pub dropped: u64,
    /// Resource updates for resources the topology does not know.
    pub unmapped: u64,
    /// Input messages the edges refused (dead-lettered). Counted here, with the rest, so
    /// that "applied + refused = consumed" holds across restarts.
    pub refused: u64,
    pub active_alarms: u64,
    /// Resources the topology does not know that have active alarms (kept, reported).
    pub unmapped_resources: u64,
    /// Topology feed changes waiting for another CI's change.
    pub topology_held: u64,
    pub incidents: IncidentStats,
}

/// What an alarm-list resynchronisation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResyncOutcome {
    /// Listed alarms applied as notifications.
    pub listed: u64,
    /// Active alarms of the source cleared because the list did not name them.
    pub cleared: u64,
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
    changed: Changes,
    /// The meta last handed to the changelog, to write it again only when it moved.
    exported_meta: CoreMeta,
    /// Stream time: the latest time the correlator has been given. It never goes back, and
    /// timers fire as it passes their deadline, before the input that moved it is applied:
    /// so outcomes depend on the input and its times alone, never on batching or speed.
    clock: EpochMillis,
    /// CIs topology batches touched since the last [`Correlator::take_changes`].
    topology_dirty: Vec<CiIdx>,
    /// Restored, and not yet reconciled with the configuration and topology it runs under
    /// (see [`IncidentBook::reconcile`]): done as the clock is next advanced, so that what
    /// it changes is published.
    reconcile: bool,
    /// Topology feed changes waiting for another CI's change.
    held: Held,
    feed: FeedPolicy,
    /// Feed changes refused since the last [`Correlator::take_refusals`].
    refusals: Vec<Refusal>,
    /// Maintenance windows.
    maintenance: Maintenance,
    /// Deleted CIs whose slots are not released yet: each is released, for a new CI to
    /// take, once nothing the core keeps names it (see [`Correlator::release_quiet`]).
    deleted: BTreeSet<CiIdx>,
    /// Ids released since the last [`Correlator::take_changes`], with their slots, whose
    /// entries the changelog marks released (`true`) or deletes (`false`: a restore found
    /// that the topology file does not have them, so nothing would take them back).
    released: Vec<(Arc<str>, CiIdx, bool)>,
}

impl Correlator {
    pub fn new(topology: Arc<Topology>, config: CorrelatorConfig) -> Correlator {
        let deleted = (0..topology.slots() as CiIdx)
            .filter(|&slot| !topology.ci(slot).present && !topology.ci(slot).id.is_empty())
            .collect();
        Correlator {
            alarms: AlarmStage::with_topology(config.alarms, topology.clone()),
            incidents: IncidentBook::new(config.incidents, topology.slots()),
            impact: ImpactStage::new(topology),
            stats: Stats::default(),
            changed: Changes::default(),
            exported_meta: CoreMeta::default(),
            clock: EpochMillis::MIN,
            topology_dirty: Vec::new(),
            reconcile: false,
            held: Held::default(),
            feed: config.feed,
            refusals: Vec::new(),
            maintenance: Maintenance::default(),
            deleted,
            released: Vec::new(),
        }
    }

    /// Stream time (see the field); `EpochMillis::MIN` before any input.
    pub fn clock(&self) -> EpochMillis {
        self.clock
    }

    /// Moves the clock to `now` if it is later, firing the timers it passes: incidents'
    /// hold-downs and reopen windows, and the ageing of alarms.
    fn advance(&mut self, now: EpochMillis, out: &mut Vec<IncidentChange>) -> EpochMillis {
        if now > self.clock {
            self.clock = now;
            if self.maintenance.due(now) {
                let transitions = self.maintenance.advance(now);
                self.follow_windows(&transitions, now, out);
            }
            self.alarms.forget_expired(now);
            self.incidents.tick(&self.impact, now, out);
            if self.alarms.ageing_due(now) {
                let aged = self.alarms.aged(now);
                for clear in &aged {
                    self.apply_now(clear, now, out);
                }
                self.stats.aged += aged.len() as u64;
                self.mark_cleared(&aged, now, TimelineKind::Aged, "no longer repeated by its source: aged out", out);
            }
        }
        let restored = std::mem::take(&mut self.reconcile);
        if restored {
            self.incidents.reconcile(&self.impact, self.clock, out);
        }
        if !self.held.is_empty() {
            self.settle_held(self.clock, out, restored);
        }
        self.clock
    }

    /// A correlator in the state a changelog recorded: active alarms re-propagated through
    /// `topology`, incidents with their bookkeeping, counters and the id sequence. It
    /// behaves from here on exactly as the one that wrote the changelog.
    pub fn restore(
        topology: Arc<Topology>,
        config: CorrelatorConfig,
        snapshot: CoreSnapshot,
    ) -> (Correlator, RestoreSummary) {
        // The topology as the changelog's writer had it: what the batches it applied
        // changed, over the topology this start has.
        let restored = restore_topology(topology, &snapshot.topology, snapshot.meta.topology_version);
        let topology_rejected = restored.rejected;
        let mut correlator = Correlator::new(Arc::new(restored.topology), config);
        // Released CIs the file does not have: nothing would take them back, their entries go.
        correlator.released = restored.forget.into_iter().map(|(id, slot)| (id, slot, false)).collect();
        // Where CIs took other slots than their entries say, the entries are written again.
        correlator.topology_dirty = restored.moved;
        let alarms = snapshot.resources.values().flat_map(|record| {
            let notifications = record.notifications.iter().copied().chain(std::iter::repeat(0));
            let sequences = record.sequences.iter().copied().chain(std::iter::repeat(0));
            let sources = record.sources.iter().cloned().chain(std::iter::repeat_with(|| Arc::from("")));
            let heard = notifications.zip(sequences).zip(sources).map(|((notification, sequence), source)| LastHeard {
                notification,
                sequence,
                source,
            });
            record.active.iter().cloned().zip(heard)
        });
        let clock = snapshot.meta.clock;
        let clears = snapshot
            .resources
            .iter()
            .flat_map(|(resource, record)| record.clears.iter().map(|clear| (resource.clone(), clear.clone())));
        for mut update in correlator.alarms.restore(alarms, clears, clock) {
            // The impact stage gets the alarms as it last heard of them, not the live tallies.
            if let Some(record) = snapshot.resources.get(&update.resource)
                && record.reported.len() == update.alarms.len()
            {
                for (alarm, &(tally, last_seen)) in update.alarms.iter_mut().zip(&record.reported) {
                    alarm.tally = tally;
                    alarm.last_seen = last_seen;
                }
            }
            correlator.changed.clear();
            correlator.impact.apply(update, &mut correlator.changed);
        }
        correlator.alarms.take_dirty();
        let topology = correlator.impact.topology().clone();
        let incidents = snapshot.incidents.len();
        let unknown_cis =
            correlator.incidents.restore(snapshot.incidents.into_values().collect(), &topology, &snapshot.meta);
        correlator.incidents.reschedule();
        correlator.incidents.find_orphaned(&correlator.impact);
        correlator.stats = snapshot.meta.stats;
        correlator.clock = snapshot.meta.clock;
        correlator.exported_meta = correlator.meta();
        correlator.reconcile = true;
        correlator.held = Held::restore(snapshot.held);
        correlator.maintenance = Maintenance::restore(snapshot.windows.into_values());
        if correlator.maintenance.any_active() {
            // What the windows cover, before the reconcile follows the unowned impacts.
            let topology = correlator.impact.topology().clone();
            correlator.maintenance.cover(&topology);
            let covered = correlator.maintenance.covered().collect();
            correlator.incidents.follow_maintenance(&correlator.impact, covered, &[], "", clock, &mut Vec::new());
            correlator.incidents.restore_suppressed(&correlator.impact);
        }
        let summary = RestoreSummary {
            active_alarms: correlator.alarms.active_count(),
            incidents,
            unknown_cis,
            topology_changes: snapshot.topology.len(),
            topology_rejected,
        };
        (correlator, summary)
    }

    fn meta(&self) -> CoreMeta {
        CoreMeta {
            next_incident: self.incidents.next_id,
            clock: self.clock,
            stats: Stats { active_alarms: 0, unmapped_resources: 0, topology_held: 0, ..self.stats() },
            topology_version: self.impact.topology().version(),
        }
    }

    /// Everything that changed since the last call, for the changelog; `None` when nothing did.
    pub fn take_changes(&mut self) -> Option<CoreChanges> {
        let resources: Vec<_> = self
            .alarms
            .take_dirty()
            .into_iter()
            .map(|ChangedResource { resource, alarms: active, notifications, sequences, sources, clears }| {
                let heard = self.impact.reported_alarms(&resource);
                let reported = active
                    .iter()
                    .map(|a| {
                        let seen = heard.iter().find(|r| r.identity() == a.identity()).unwrap_or(a);
                        (seen.tally, seen.last_seen)
                    })
                    .collect();
                (resource, ResourceRecord { active, reported, notifications, sequences, sources, clears })
            })
            .collect();
        let topology = self.impact.topology().clone();
        let incidents: Vec<_> =
            self.incidents.take_dirty().into_iter().map(|id| (id, self.incidents.export(id, &topology))).collect();
        let mut touched = std::mem::take(&mut self.topology_dirty);
        touched.sort_unstable();
        touched.dedup();
        // Released ids first (unless back since, in a slot of their own): a CI in a slot
        // one of them had is written after, under its own key.
        let released = std::mem::take(&mut self.released).into_iter().filter(|(id, _, _)| topology.slot(id).is_none());
        let mut topology_entries: Vec<_> = released
            .map(|(id, slot, keep)| {
                let entry = keep.then(|| TopologyEntry {
                    record: CiRecord::bare(id.to_string()),
                    deleted: true,
                    released: true,
                    slot,
                });
                (id, entry)
            })
            .collect();
        topology_entries.extend(touched.into_iter().filter(|&slot| !topology.ci(slot).id.is_empty()).map(|slot| {
            let ci = topology.ci(slot);
            let entry = TopologyEntry { record: topology.record(slot), deleted: !ci.present, released: false, slot };
            (ci.id.clone(), Some(entry))
        }));
        let held = self.held.take_dirty();
        let windows = self.maintenance.take_dirty();
        let meta = self.meta();
        if resources.is_empty()
            && incidents.is_empty()
            && topology_entries.is_empty()
            && held.is_empty()
            && windows.is_empty()
            && meta == self.exported_meta
        {
            return None;
        }
        self.exported_meta = meta;
        Some(CoreChanges { resources, incidents, topology: topology_entries, held, windows, meta })
    }

    /// Counts input messages the edges refused, so that accounting stays in one place.
    pub fn count_refused(&mut self, messages: u64) {
        self.stats.refused += messages;
    }

    /// Applies one alarm notification observed at `now`; incident changes go to `out`.
    pub fn apply(&mut self, alarm: &Alarm, now: EpochMillis, out: &mut Vec<IncidentChange>) -> Outcome {
        let now = self.advance(now, out);
        self.stats.alarms_in += 1;
        self.apply_now(alarm, now, out)
    }

    /// Applies an element manager's alarm list at `now`: its `listed` alarms as
    /// notifications (each counted as one), then a clear of every active alarm of its
    /// source that it does not name and that was last reported at or before its time.
    /// Each incident naming a cleared alarm says so in its timeline.
    pub fn resync(
        &mut self,
        resync: &Resync,
        listed: &[Alarm],
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> ResyncOutcome {
        let now = self.advance(now, out);
        // A list is no newer than the time it is applied at.
        let as_of = resync.as_of.min(now);
        for alarm in listed {
            self.stats.alarms_in += 1;
            // The list says what is active at its time: it realigns each alarm it names, by
            // time alone, unless a later notification or clear has said more since.
            let Some(floor) = self.alarms.listed_floor(alarm, as_of) else {
                self.stats.stale += 1;
                continue;
            };
            let mut listed = alarm.clone();
            listed.event_time = listed.event_time.min(as_of).max(floor);
            listed.notification_id.clear();
            listed.sequence = 0;
            self.apply_now(&listed, now, out);
        }
        let clears = self.alarms.unlisted(&resync.source_system, listed, as_of);
        for clear in &clears {
            self.apply_now(clear, now, out);
        }
        self.stats.cleared_by_resync += clears.len() as u64;
        let why = format!("not in the alarm list of {}: cleared by resync", resync.source_system);
        self.mark_cleared(&clears, now, TimelineKind::Resync, &why, out);
        ResyncOutcome { listed: listed.len() as u64, cleared: clears.len() as u64 }
    }

    /// Notes on every incident that names a resource of `clears` why its alarms cleared.
    fn mark_cleared(
        &mut self,
        clears: &[Alarm],
        now: EpochMillis,
        kind: TimelineKind,
        why: &str,
        out: &mut Vec<IncidentChange>,
    ) {
        let topology = self.impact.topology().clone();
        let mut cis: Vec<(CiIdx, String)> = clears
            .iter()
            .filter_map(|c| {
                let ci = topology.lookup(&c.resource)?;
                Some((ci, format!("{} {}", c.resource, c.alarm_type)))
            })
            .collect();
        cis.sort_unstable();
        if !cis.is_empty() {
            self.incidents.annotate(&cis, now, kind, why, out);
        }
    }

    /// Applies one notification at `now` (the clock already there).
    fn apply_now(&mut self, alarm: &Alarm, now: EpochMillis, out: &mut Vec<IncidentChange>) -> Outcome {
        let (outcome, update) = self.alarms.apply(alarm, now);
        match outcome {
            AlarmOutcome::Raised => self.stats.raised += 1,
            AlarmOutcome::Repeated => self.stats.duplicates += 1,
            AlarmOutcome::SeverityChanged => self.stats.severity_changes += 1,
            AlarmOutcome::DuplicateNotification => self.stats.duplicate_notifications += 1,
            AlarmOutcome::Stale => self.stats.stale += 1,
            AlarmOutcome::Cleared => self.stats.cleared += 1,
            AlarmOutcome::ClearWithoutRaise => self.stats.clears_without_raise += 1,
            AlarmOutcome::Dropped => self.stats.dropped += 1,
        }
        let landed = update.map(|update| self.apply_update(update, now, out));
        Outcome { alarm: outcome, landed }
    }

    /// The impact stage's entry point: one resource's active alarms changed.
    pub fn apply_update(&mut self, update: ResourceUpdate, now: EpochMillis, out: &mut Vec<IncidentChange>) -> Landed {
        let now = self.advance(now, out);
        self.changed.clear();
        let landed = self.impact.apply(update, &mut self.changed);
        match landed {
            Landed::Unmapped => self.stats.unmapped += 1,
            Landed::Mapped(_) => self.incidents.on_changes(&self.impact, &self.changed, now, out),
        }
        landed
    }

    /// Applies a batch of topology changes at `now`, all or nothing (see
    /// [`Topology::apply`]), and follows it: alarms of deleted CIs become unmapped, those
    /// of CIs added come to them, impact is evaluated again where the batch touched the
    /// graph and propagated from there, and incidents follow as they do for alarms.
    ///
    /// Feed changes held for a CI the batch names are dropped (the batch is newer; they
    /// are refused as `superseded`), and those waiting for a CI it changed are tried after
    /// it; refusals are taken by [`Correlator::take_refusals`].
    pub fn apply_topology(
        &mut self,
        batch: Vec<CiChange>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> Result<Applied, TopologyError> {
        let now = self.advance(now, out);
        let ids: Vec<Arc<str>> = batch.iter().map(|c| Arc::from(c.id())).collect();
        let applied = self.apply_topology_now(batch, now, out)?;
        if !self.held.is_empty() {
            let mut outcome = FeedOutcome::default();
            for id in ids {
                if let Some(held) = self.held.remove(&id) {
                    let detail =
                        format!("CI `{id}` was changed over gRPC after this change was held ({})", held.reason);
                    let candidate = Candidate { change: held.change, source: held.source, index: None, held: None };
                    self.refuse(candidate, "superseded", detail, &mut outcome);
                }
            }
            let topology = self.impact.topology();
            let touched = applied.added.iter().chain(&applied.changed).chain(&applied.deleted);
            let woken = touched.map(|&slot| topology.ci(slot).id.clone()).collect();
            self.settle_feed(Candidates::default(), woken, now, out, &mut outcome);
        }
        Ok(applied)
    }

    /// Applies records of the topology feed at `now`, in the order they came (see
    /// [`feed`]): what can apply does, as one topology batch, with the held changes that
    /// waited for a CI it changes; what waits for another CI's change is held; what is
    /// invalid is refused, for the core to dead-letter ([`Correlator::take_refusals`]).
    pub fn apply_feed(
        &mut self,
        records: Vec<FeedChange>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> FeedOutcome {
        let now = self.advance(now, out);
        let mut outcome = FeedOutcome::default();
        let mut candidates = Candidates::default();
        for (index, FeedChange { change, source }) in records.into_iter().enumerate() {
            let id: Arc<str> = Arc::from(change.id());
            if candidates.contains(&id) {
                outcome.superseded += 1;
            }
            candidates.push(id, Candidate { change, source, index: Some(index), held: None });
        }
        // A newer record of a CI replaces the change held for it.
        for id in candidates.ids() {
            if self.held.remove(&id).is_some() {
                outcome.superseded += 1;
            }
        }
        let topology = self.impact.topology();
        let before = candidates.len();
        candidates.retain(|c| !topology.is_current(&c.change));
        outcome.unchanged += before - candidates.len();
        let woken = candidates.ids();
        self.settle_feed(candidates, woken, now, out, &mut outcome);
        outcome
    }

    /// The maintenance windows.
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// The impacted services active maintenance windows suppress.
    pub fn suppressed(&self) -> impl Iterator<Item = CiIdx> + '_ {
        self.incidents.suppressed()
    }

    pub fn is_suppressed(&self, service: CiIdx) -> bool {
        self.incidents.is_suppressed(service)
    }

    /// Whether a CI is impacted and every root cause of its impact lies in active
    /// maintenance windows.
    pub fn in_maintenance(&self, ci: CiIdx) -> bool {
        let roots = self.impact.roots(ci);
        !roots.is_empty() && roots.iter().all(|root| self.maintenance.covers(root))
    }

    /// Creates a maintenance window at `now` (see [`Maintenance::create`]); one whose start
    /// has come starts at once.
    pub fn create_window(
        &mut self,
        spec: WindowSpec,
        replace: bool,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> Result<(), MaintenanceError> {
        let now = self.advance(now, out);
        let topology = self.impact.topology().clone();
        let change = spec.change.clone();
        let was_active = self.maintenance.get(&change).is_some_and(|w| w.state == WindowState::Active);
        if replace && was_active && spec.end <= now {
            // Change management closing the change at its actual end: it ends now.
            let by = spec.by.clone();
            return self.finish_window(&change, false, &by, now, out);
        }
        self.maintenance.create(spec, replace, &topology, now)?;
        let transitions = self.maintenance.advance(now);
        if was_active && transitions.is_empty() {
            // Replaced while active (the changes topic): what it covers may have moved.
            let note = format!("maintenance {change} changed and no longer covers the fault");
            self.cover_windows_noting(&[], &note, now, out);
        }
        self.follow_windows(&transitions, now, out);
        Ok(())
    }

    /// Moves the end of a window not over yet.
    pub fn extend_window(
        &mut self,
        change: &str,
        end: EpochMillis,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> Result<(), MaintenanceError> {
        let now = self.advance(now, out);
        self.maintenance.extend(change, end, now)
    }

    /// Ends an active window now, or cancels one (`cancel`): what it suppressed with the
    /// fault still there opens its incidents.
    pub fn finish_window(
        &mut self,
        change: &str,
        cancel: bool,
        by: &str,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> Result<(), MaintenanceError> {
        let now = self.advance(now, out);
        if self.maintenance.finish(change, cancel, by, now)? {
            self.follow_windows(&[Transition::Finished(change.to_owned())], now, out);
        }
        Ok(())
    }

    /// Incident management follows windows that started and finished.
    fn follow_windows(&mut self, transitions: &[Transition], now: EpochMillis, out: &mut Vec<IncidentChange>) {
        if transitions.is_empty() {
            return;
        }
        let started: Vec<&str> = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Started(change) => Some(change.as_str()),
                Transition::Finished(_) => None,
            })
            .collect();
        let finished: Vec<String> = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Finished(change) => {
                    let window = self.maintenance.get(change);
                    let how = match window.map(|w| (w.state, w.finished_by.as_str())) {
                        Some((WindowState::Cancelled, by)) if !by.is_empty() => format!("cancelled by {by}"),
                        Some((WindowState::Cancelled, _)) => "cancelled".to_owned(),
                        Some((_, by)) if !by.is_empty() => format!("ended early by {by}"),
                        _ => "ended".to_owned(),
                    };
                    Some(format!("maintenance {change} {how} with the fault still present"))
                }
                Transition::Started(_) => None,
            })
            .collect();
        self.cover_windows_noting(&started, &finished.join("; "), now, out);
    }

    /// Works out again what active windows cover and lets incident management follow:
    /// incidents naming what a window started to cover are annotated, impacts no longer
    /// covered open their incidents, saying `released`.
    fn cover_windows_noting(
        &mut self,
        started: &[&str],
        released: &str,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        let topology = self.impact.topology().clone();
        let gained = self.maintenance.cover(&topology);
        let covered: rustc_hash::FxHashSet<CiIdx> = self.maintenance.covered().collect();
        let annotated: Vec<(CiIdx, String)> = gained
            .into_iter()
            .filter_map(|ci| {
                let change = self.maintenance.covering(ci).iter().find(|c| started.contains(&&***c))?;
                Some((ci, change.to_string()))
            })
            .collect();
        self.incidents.follow_maintenance(&self.impact, covered, &annotated, released, now, out);
    }

    /// Feed changes refused since the last call, for the dead-letter topic.
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    /// The feed changes waiting for another CI's change, by CI id.
    pub fn held(&self) -> &Held {
        &self.held
    }

    /// Tries every held change again (a restore: the topology it runs on may have what
    /// they wait for), and refuses those held longer than the policy allows.
    fn settle_held(&mut self, now: EpochMillis, out: &mut Vec<IncidentChange>, all: bool) {
        let mut outcome = FeedOutcome::default();
        loop {
            let expired = self
                .held
                .oldest()
                .next()
                .filter(|(_, oldest)| now.saturating_sub(oldest.since) > self.feed.max_held_ms);
            let Some(id) = expired.map(|(id, _)| id.clone()) else { break };
            let held = self.held.remove(&id).expect("held");
            let detail = format!(
                "held for {} s waiting for `{}` ({}), longer than topology.max_held_secs",
                now.saturating_sub(held.since) / 1000,
                held.waits_for,
                held.reason
            );
            let candidate = Candidate { change: held.change, source: held.source, index: None, held: None };
            self.refuse(candidate, "held_too_long", detail, &mut outcome);
        }
        if all && !self.held.is_empty() {
            let mut candidates = Candidates::default();
            for (id, held) in self.held.oldest() {
                candidates.push(id.clone(), Candidate::held(held));
            }
            let woken = candidates.ids();
            self.settle_feed(candidates, woken, now, out, &mut outcome);
        }
    }

    /// Tries `candidates`, with the held changes waiting for a CI in `woken` (and those
    /// waiting for them), as one topology batch. A held change tried again stays held, as it
    /// was, unless it applies, is refused, or waits for another CI now.
    fn settle_feed(
        &mut self,
        mut candidates: Candidates,
        mut woken: Vec<Arc<str>>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
        outcome: &mut FeedOutcome,
    ) {
        while let Some(id) = woken.pop() {
            for (held_id, held) in self.held.waiting_for(&id) {
                if !candidates.contains(held_id) {
                    woken.push(held_id.clone());
                    candidates.push(held_id.clone(), Candidate::held(held));
                }
            }
        }
        // What names a CI neither there nor coming is held at once, to a fixed point: the
        // usual case of a feed out of order, found without validating the batch each time.
        // So is the deletion of a CI that a CI the batch leaves alone depends on.
        loop {
            let topology = self.impact.topology();
            let known = |id: &str| match candidates.get(id) {
                Some(c) => matches!(c.change, CiChange::Upsert(_)),
                None => topology.lookup(id).is_some(),
            };
            let blocked: Vec<(Arc<str>, String, String)> = candidates
                .iter()
                .filter_map(|(id, c)| match &c.change {
                    CiChange::Upsert(record) => {
                        record.depends_on.iter().chain(&record.customer).find(|named| !known(named)).map(|named| {
                            let reason = format!("CI `{id}` names `{named}`, which the topology does not have");
                            (id.clone(), named.clone(), reason)
                        })
                    }
                    CiChange::Delete(_) => {
                        let idx = topology.lookup(id)?;
                        let dependents = topology.dependents(idx).iter();
                        dependents.map(|&d| &topology.ci(d).id).find(|d| !candidates.contains(d)).map(|d| {
                            let reason = format!("CI `{id}` cannot be deleted: `{d}` still depends on it");
                            (id.clone(), d.to_string(), reason)
                        })
                    }
                })
                .collect();
            if blocked.is_empty() {
                break;
            }
            for (id, waits_for, reason) in blocked {
                let candidate = candidates.remove(&id).expect("a candidate");
                self.hold(id, candidate, waits_for, reason, now, outcome);
            }
        }
        // One batch; what the topology refuses in it is held or refused, and the rest tried again.
        while !candidates.is_empty() {
            let batch: Vec<CiChange> = candidates.iter().map(|(_, c)| c.change.clone()).collect();
            match self.apply_topology_now(batch, now, out) {
                Ok(applied) => {
                    outcome.applied += candidates.len();
                    let first = outcome.versions.map_or(applied.version, |(first, _)| first);
                    outcome.versions = Some((first, applied.version));
                    for (id, candidate) in candidates.drain() {
                        if candidate.held.is_some() {
                            self.held.remove(&id);
                        }
                    }
                    break;
                }
                Err(error) => {
                    let Some((id, candidate)) = error.ci().and_then(|id| candidates.remove_entry(id)) else {
                        // Validation names a CI of the batch; should it not, nothing is lost
                        // for it: the batch is tried one change at a time.
                        if candidates.len() == 1 {
                            for (_, candidate) in candidates.drain() {
                                self.refuse(candidate, "invalid_ci", error.to_string(), outcome);
                            }
                            break;
                        }
                        let single: Vec<(Arc<str>, Candidate)> = candidates.drain().collect();
                        for (id, candidate) in single {
                            let mut alone = Candidates::default();
                            alone.push(id, candidate);
                            self.settle_feed(alone, Vec::new(), now, out, outcome);
                        }
                        break;
                    };
                    let detail = error.to_string();
                    match feed::verdict(&error) {
                        Verdict::Hold { waits_for } => self.hold(id, candidate, waits_for, detail, now, outcome),
                        Verdict::Refuse { reason } => self.refuse(candidate, reason, detail, outcome),
                    }
                }
            }
        }
        while self.held.len() > self.feed.max_held {
            let Some((_, held)) = self.held.take_oldest() else { break };
            let detail = format!(
                "held since {} waiting for `{}` ({}); more than topology.max_held ({}) changes were waiting",
                held.since, held.waits_for, held.reason, self.feed.max_held
            );
            let candidate = Candidate { change: held.change, source: held.source, index: None, held: None };
            self.refuse(candidate, "held_too_long", detail, outcome);
        }
    }

    /// Holds a change until `waits_for` changes. One held already, waiting for the same
    /// CI, stays as it is (nothing to write again); one held anew takes the next arrival
    /// number, one held again keeps its own.
    fn hold(
        &mut self,
        id: Arc<str>,
        candidate: Candidate,
        waits_for: String,
        mut reason: String,
        now: EpochMillis,
        outcome: &mut FeedOutcome,
    ) {
        if self.held.get(&id).is_some_and(|held| held.waits_for == waits_for) {
            return;
        }
        if candidate.held.is_none() {
            outcome.held += 1;
        }
        // Bounded, so that the changelog record of a held change fits where its CI's does.
        if reason.len() > feed::MAX_REASON {
            let mut cut = feed::MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        let (since, order) = candidate.held.unwrap_or_else(|| (now, self.held.next_order()));
        let change = HeldChange { change: candidate.change, waits_for, reason, since, order, source: candidate.source };
        self.held.insert(id, change);
    }

    fn refuse(&mut self, candidate: Candidate, reason: &'static str, detail: String, outcome: &mut FeedOutcome) {
        let Candidate { change, source, index, held } = candidate;
        if held.is_some() {
            self.held.remove(change.id());
        }
        self.refusals.push(Refusal { index, change, reason, detail, source });
        outcome.refused += 1;
    }

    /// [`Correlator::apply_topology`] with the clock already at `now`, held changes left alone.
    fn apply_topology_now(
        &mut self,
        batch: Vec<CiChange>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) -> Result<Applied, TopologyError> {
        let quiet = self.quiet_deleted();
        // The alarm stage's share let go of, the topology changes in place, never copied
        // (unless someone outside the core still holds it).
        self.alarms.release_topology();
        let topology = Arc::make_mut(self.impact.topology_mut());
        for (id, slot) in topology.release(&quiet) {
            self.deleted.remove(&slot);
            self.released.push((id, slot, true));
        }
        let result = topology.apply(batch);
        let topology = self.impact.topology().clone();
        let applied = match result {
            Ok(applied) => applied,
            Err(error) => {
                self.alarms.relocate(topology, &Applied::default());
                return Err(error);
            }
        };
        let attached = self.alarms.relocate(topology, &applied);
        self.topology_dirty.extend(applied.added.iter().chain(&applied.changed).chain(&applied.deleted));
        for &slot in &applied.added {
            // Back in its slot before it was released.
            self.deleted.remove(&slot);
        }
        self.deleted.extend(&applied.deleted);
        self.changed.clear();
        self.impact.follow_topology(&applied, attached, &mut self.changed);
        self.incidents.on_topology(&self.impact, &self.changed, &applied, now, out);
        if self.maintenance.any_active() {
            // What a window of dependents covers follows the graph: an impact moved out of
            // it, still failing, opens its incident now.
            let note = "no longer in maintenance after a topology change, the fault still present";
            self.cover_windows_noting(&[], note, now, out);
        }
        Ok(applied)
    }

    /// The deleted CIs whose slots can be released: nothing the core keeps names them any
    /// more (no alarm, state or root in the impact stage, no incident, no maintenance
    /// window, no deleted CI that stays naming it as its customer). Looked for before each
    /// topology batch, so that the batch's new CIs take their slots; the incidents in memory
    /// are scanned only when some deleted CI passes the cheaper checks.
    ///
    /// Nothing names a deleted CI anew, so once releasable a slot stays so: the set is
    /// taken whole (to a fixed point: a customer is released with the deleted services
    /// naming it), and which slots are free when a batch comes does not depend on how many
    /// times this ran before it (a restart retries held changes, and runs it once more).
    fn quiet_deleted(&self) -> Vec<CiIdx> {
        let mut quiet: BTreeSet<CiIdx> = self
            .deleted
            .iter()
            .copied()
            .filter(|&ci| self.impact.is_quiet(ci) && self.incidents.is_quiet(ci) && !self.maintenance.covers(ci))
            .collect();
        if quiet.is_empty() {
            return Vec::new();
        }
        let named = self.incidents.named();
        quiet.retain(|ci| !named.contains(ci));
        let topology = self.impact.topology();
        loop {
            let kept: rustc_hash::FxHashSet<CiIdx> = self
                .deleted
                .iter()
                .filter(|ci| !quiet.contains(ci))
                .filter_map(|&ci| topology.ci(ci).customer)
                .collect();
            let before = quiet.len();
            quiet.retain(|ci| !kept.contains(ci));
            if quiet.len() == before {
                return quiet.into_iter().collect();
            }
        }
    }

    /// What failing `failed` would do to services and customers on top of the live state,
    /// changing nothing (see [`ImpactStage::simulate`]).
    pub fn simulate(&self, failed: &[CiIdx]) -> Simulation {
        let topology = self.impact.topology();
        let moved = self.impact.simulate(failed);
        let mut simulation = Simulation::default();
        let mut customers: BTreeMap<CiIdx, State> = BTreeMap::new();
        let (mut tiers, mut parties, mut any_down) = (None, std::collections::BTreeSet::new(), false);
        for (&ci, &(now, would_be)) in &moved {
            let record = topology.ci(ci);
            if !(matches!(record.class, CiClass::Rfs | CiClass::Cfs) || record.incidents) {
                continue;
            }
            simulation.worst_tier = simulation.worst_tier.max(record.sla);
            if let Some(customer) = record.customer {
                let worst = customers.entry(customer).or_default();
                *worst = (*worst).max(would_be);
            }
            let incident = self.incidents.service_owner(ci).filter(|_| !now.is_up());
            let service = SimulatedService { ci, now, would_be, incident };
            if now.is_up() {
                if record.incidents {
                    tiers = tiers.max(record.sla);
                    any_down |= would_be == State::Down;
                    if would_be == State::Down {
                        // A party: its customer, or the service itself when it has none.
                        parties.insert(record.customer.unwrap_or(ci));
                    }
                }
                simulation.newly_impacted.push(service);
            } else {
                simulation.escalated.extend(incident);
                simulation.worsened.push(service);
            }
        }
        simulation.escalated.sort_unstable();
        simulation.escalated.dedup();
        simulation.customers = customers.into_iter().collect();
        if simulation.newly_impacted.iter().any(|s| topology.ci(s.ci).incidents) {
            let (_, _, priority) = self.incidents.policy.priority.assess(tiers, parties.len(), any_down);
            simulation.new_incident_priority = Some(priority);
        }
        simulation
    }

    /// Advances the clock to `now` with no input (a quiet network), firing due timers.
    pub fn tick(&mut self, now: EpochMillis, out: &mut Vec<IncidentChange>) {
        self.advance(now, out);
    }

    pub fn acknowledge(&mut self, id: IncidentId, by: &str, now: EpochMillis) -> Result<IncidentChange, CoreError> {
        self.incidents.acknowledge(id, by, now)
    }

    /// An operator resolves an incident; one still impacting services only with `force`
    /// (see [`IncidentBook::resolve`]).
    pub fn resolve(
        &mut self,
        id: IncidentId,
        by: &str,
        reason: &str,
        force: bool,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        self.incidents.resolve(id, by, reason, force, now)
    }

    /// An operator adds a note; `request_id` (may be empty) is kept with it, so that a
    /// retry can be recognised (see [`Note::request_id`](crate::model::incident::Note)).
    pub fn add_note(
        &mut self,
        id: IncidentId,
        author: &str,
        text: &str,
        request_id: &str,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        self.incidents.add_note(id, author, text, request_id, now)
    }

    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(id)
    }

    /// The incident as shared with readers: its latest version, not a copy.
    pub fn shared_incident(&self, id: IncidentId) -> Option<&Arc<Incident>> {
        self.incidents.get_shared(id)
    }

    /// Checks the views incident management keeps incrementally against a recomputation
    /// from scratch; for tests.
    pub fn check_views(&self) -> Result<(), String> {
        self.incidents.check_views(&self.impact)
    }

    /// Incidents not yet closed, by id.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter()
    }

    /// The incidents as the core shares them with its published changes.
    pub fn shared_incidents(&self) -> impl Iterator<Item = &Arc<Incident>> {
        self.incidents.shared()
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
        Stats {
            active_alarms: self.alarms.active_count() as u64,
            unmapped_resources: self.impact.unmapped().len() as u64,
            topology_held: self.held.len() as u64,
            incidents: self.incidents.stats(),
            ..self.stats
        }
    }
}

/// What the core holds, for the soak benchmark.
impl Correlator {
    /// Entry counts of every structure of the three stages (see
    /// [`super::sizes::CoreSizes`]). Walks the incidents held and the per-service table:
    /// for sampling, not for every alarm.
    pub fn sizes(&self) -> super::sizes::CoreSizes {
        let topology = self.impact.topology();
        super::sizes::CoreSizes {
            topology_slots: topology.slots(),
            free_slots: topology.free_slots(),
            deleted_cis: self.deleted.len(),
            ..super::sizes::CoreSizes::of(&self.alarms, &self.impact, &self.incidents)
        }
    }
}

/// What [`restore_topology`] gives back.
struct RestoredTopology {
    topology: Topology,
    /// Entries no longer applying, left out.
    rejected: usize,
    /// Released CIs the file does not have, with their slots: their entries can go.
    forget: Vec<(Arc<str>, CiIdx)>,
    /// CIs in other slots than their entries say (the file changed under them).
    moved: Vec<CiIdx>,
}

/// The topology a changelog's writer had: the CIs its topology batches changed (`entries`),
/// over `file`, the topology this start read.
///
/// Every CI goes back to the slot it had, released slots stay released, and the version is
/// the one the changelog recorded: the correlator goes on exactly as the writer would have.
/// When the file changed under the entries so that this cannot be (a CI of the file where
/// an entry's CI was, a dependency gone), the entries are applied over the file as changes
/// instead: one batch, or one by one, leaving out (logged and counted) what no longer
/// applies; a CI whose deletion is refused stays as the file has it.
fn restore_topology(
    file: Arc<Topology>,
    entries: &BTreeMap<Arc<str>, TopologyEntry>,
    version: u64,
) -> RestoredTopology {
    let forget = entries
        .iter()
        .filter(|(id, entry)| entry.released && file.slot(id).is_none())
        .map(|(id, entry)| (id.clone(), entry.slot))
        .collect();
    if entries.is_empty() {
        let mut topology = Arc::unwrap_or_clone(file);
        topology.set_version(version);
        return RestoredTopology { topology, rejected: 0, forget, moved: Vec::new() };
    }
    if let Some(mut topology) = restore_slots(&file, entries) {
        topology.set_version(version);
        return RestoredTopology { topology, rejected: 0, forget, moved: Vec::new() };
    }
    tracing::warn!(
        "the topology file changed under the topology changes kept in the state changelog: they are applied over it again, CIs may take other slots"
    );
    let mut topology = Arc::unwrap_or_clone(file);
    let rejected = apply_entries(&mut topology, entries);
    let moved = entries.iter().filter_map(|(id, entry)| topology.slot(id).filter(|&slot| slot != entry.slot)).collect();
    topology.set_version(version);
    RestoredTopology { topology, rejected, forget, moved }
}

/// The writer's topology, each CI in its slot, if the entries and the file agree on slots:
/// CIs of the file keep theirs unless an entry moves or releases them, entries' CIs take
/// theirs, and no slot is claimed twice. Slots no one claims are released (a released CI's
/// entry, when kept, only says that the file's CI is gone).
fn restore_slots(file: &Topology, entries: &BTreeMap<Arc<str>, TopologyEntry>) -> Option<Topology> {
    let mut slots: Vec<Option<(CiRecord, bool)>> = (0..file.slots() as CiIdx)
        .map(|slot| {
            let ci = file.ci(slot);
            (!ci.id.is_empty()).then(|| (file.record(slot), ci.present))
        })
        .collect();
    for id in entries.keys() {
        if let Some(slot) = file.slot(id) {
            slots[slot as usize] = None;
        }
    }
    for entry in entries.values().filter(|entry| !entry.released) {
        let at = entry.slot as usize;
        if slots.len() <= at {
            slots.resize(at + 1, None);
        }
        if slots[at].is_some() {
            return None;
        }
        slots[at] = Some((entry.record.clone(), !entry.deleted));
    }
    match Topology::from_slots(slots) {
        Ok(topology) => Some(topology),
        Err(error) => {
            tracing::warn!(%error, "the topology changes kept in the state changelog do not fit the topology file as they were");
            None
        }
    }
}

/// The entries applied over `topology` as changes: their records first, in slot order,
/// then the deletions (released CIs are deleted and their slots released). Returns how
/// many no longer apply.
fn apply_entries(topology: &mut Topology, entries: &BTreeMap<Arc<str>, TopologyEntry>) -> usize {
    let mut ordered: Vec<&TopologyEntry> = entries.values().collect();
    ordered.sort_by_key(|entry| entry.slot);
    // Deleted CIs the topology has: as it has them, should their deletion be refused.
    let own: Vec<CiRecord> = ordered
        .iter()
        .filter(|entry| entry.deleted)
        .filter_map(|entry| topology.lookup(&entry.record.id))
        .map(|idx| topology.record(idx))
        .collect();
    let upserts: Vec<CiChange> = ordered
        .iter()
        .filter(|entry| !entry.released)
        .map(|entry| {
            let mut record = entry.record.clone();
            if entry.deleted {
                record.depends_on.clear();
                record.rule = Rule::Any;
            }
            CiChange::Upsert(record)
        })
        .collect();
    let deletes: Vec<CiChange> =
        ordered.iter().filter(|entry| entry.deleted).map(|entry| CiChange::Delete(entry.record.id.clone())).collect();
    let mut rejected = 0;
    for batch in [upserts, deletes] {
        if batch.is_empty() || topology.apply(batch.clone()).is_ok() {
            continue;
        }
        // One by one, pass after pass (one may need another later in the order), until a
        // pass applies none.
        let mut left = batch;
        loop {
            let before = left.len();
            let mut refused = Vec::new();
            for change in left {
                if let Err(error) = topology.apply(vec![change.clone()]) {
                    refused.push((change, error));
                }
            }
            left = refused.iter().map(|(change, _)| change.clone()).collect();
            if left.is_empty() || left.len() == before {
                for (change, error) in refused {
                    tracing::warn!(ci = %change.id(), %error, "a topology change kept in the state changelog no longer applies to the topology; left out");
                    rejected += 1;
                }
                break;
            }
        }
    }
    for record in own {
        if topology.lookup(&record.id).is_some() {
            // Its deletion was refused: it stays as the topology had it, not emptied.
            let _ = topology.apply(vec![CiChange::Upsert(record)]);
        }
    }
    let released: Vec<CiIdx> =
        ordered.iter().filter(|entry| entry.released).filter_map(|entry| topology.slot(&entry.record.id)).collect();
    topology.release(&released);
    rejected
}

/// The changes a feed batch tries, in the order they came: an id once, at its first place,
/// with its last change.
#[derive(Default)]
struct Candidates {
    order: BTreeMap<usize, (Arc<str>, Candidate)>,
    at: rustc_hash::FxHashMap<Arc<str>, usize>,
    next: usize,
}

impl Candidates {
    fn push(&mut self, id: Arc<str>, candidate: Candidate) {
        match self.at.get(&id) {
            Some(place) => self.order.get_mut(place).expect("placed").1 = candidate,
            None => {
                self.at.insert(id.clone(), self.next);
                self.order.insert(self.next, (id, candidate));
                self.next += 1;
            }
        }
    }

    fn ids(&self) -> Vec<Arc<str>> {
        self.order.values().map(|(id, _)| id.clone()).collect()
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn contains(&self, id: &str) -> bool {
        self.at.contains_key(id)
    }

    fn get(&self, id: &str) -> Option<&Candidate> {
        self.at.get(id).map(|place| &self.order[place].1)
    }

    fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Candidate)> {
        self.order.values().map(|(id, c)| (id, c))
    }

    fn remove(&mut self, id: &str) -> Option<Candidate> {
        self.remove_entry(id).map(|(_, c)| c)
    }

    fn remove_entry(&mut self, id: &str) -> Option<(Arc<str>, Candidate)> {
        let place = self.at.remove(id)?;
        self.order.remove(&place)
    }

    fn retain(&mut self, mut keep: impl FnMut(&Candidate) -> bool) {
        let at = &mut self.at;
        self.order.retain(|_, (id, c)| {
            let kept = keep(c);
            if !kept {
                at.remove(id);
            }
            kept
        });
    }

    fn drain(&mut self) -> impl Iterator<Item = (Arc<str>, Candidate)> + use<> {
        self.at.clear();
        std::mem::take(&mut self.order).into_values()
    }
}

/// A service a simulation would take down or degrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedService {
    pub ci: CiIdx,
    pub now: State,
    pub would_be: State,
    /// The incident it is impacted under now, if any.
    pub incident: Option<IncidentId>,
}

/// What failing some CIs would do, on top of the live state ([`Correlator::simulate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Simulation {
    /// Services up now that would go down or degraded, by CI.
    pub newly_impacted: Vec<SimulatedService>,
    /// Services impacted already that would be worse, by CI.
    pub worsened: Vec<SimulatedService>,
    /// The customers of those services, each with the worst state one of them would be in.
    pub customers: Vec<(CiIdx, State)>,
    /// The best tier among the services hit.
    pub worst_tier: Option<SlaTier>,
    /// The priority of the incident the newly impacted services would open, if any of
    /// them opens incidents.
    pub new_incident_priority: Option<Priority>,
    /// The incidents whose services would be worse.
    pub escalated: Vec<IncidentId>,
}
