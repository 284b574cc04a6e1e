//! Incident management: one incident per root-cause group. An impacted service opens an
//! incident, or joins the one that already owns one of its root causes; the incident follows
//! the impact as it changes, resolves itself once every impacted service has stayed restored
//! for a hold-down period, reopens if its root cause fails again within the reopen window,
//! and closes after it. Operators acknowledge, annotate and resolve.

use super::impact::ImpactStage;
use super::impacted::Impacted;
use super::priority::PriorityPolicy;
use crate::model::EpochMillis;
use crate::model::alarm::AlarmRef;
use crate::model::incident::{
    Acknowledgement, ChangeKind, Incident, IncidentChange, IncidentId, IncidentState, Note, TimelineEntry, TimelineKind,
};
use crate::model::state::State;
use crate::model::topology::{CiIdx, Topology};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

/// Puts a value in a field of a shared incident; true when that changed it. The incident
/// is copied (if a reader holds it) only when the value differs.
macro_rules! set {
    ($incident:expr, $field:ident, $value:expr) => {{
        let value = $value;
        if $incident.$field == value {
            false
        } else {
            Arc::make_mut(&mut $incident).$field = value;
            true
        }
    }};
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentPolicy {
    /// How long every impacted service must stay restored before auto-resolution.
    pub hold_down_ms: EpochMillis,
    /// How long a resolved incident can be reopened by its root cause failing again.
    pub reopen_window_ms: EpochMillis,
    pub priority: PriorityPolicy,
    /// Timeline entries kept per incident (the first, `opened`, is always kept).
    pub timeline_limit: usize,
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            hold_down_ms: 60_000,
            reopen_window_ms: 900_000,
            priority: PriorityPolicy::default(),
            timeline_limit: 500,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("incident `{0}` not found")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IncidentStats {
    pub opened: u64,
    pub resolved: u64,
    pub reopened: u64,
    pub closed: u64,
    /// Symptom alarms attached to an incident under its root cause.
    pub symptoms_attached: u64,
}

/// An incident with the bookkeeping that is not published.
#[derive(Debug)]
pub(super) struct Tracked {
    /// Shared with the changes published from it: publishing is a reference count, and a
    /// later change copies the incident only if a reader still holds the previous version.
    pub(super) incident: Arc<Incident>,
    /// Every CI that has explained this incident's impact, less those since explained by another.
    pub(super) roots: BTreeSet<CiIdx>,
    /// Every root registered in `by_root` for this incident, to unregister on close.
    pub(super) registered_roots: BTreeSet<CiIdx>,
    /// Impacted services with their current state (`Up` once restored), and their customers.
    pub(super) services: Impacted,
    /// Failed CIs with alarms of their own whose failure the roots explain.
    pub(super) symptoms: BTreeSet<CiIdx>,
    /// When every impacted service was last seen restored; cleared by a new impact.
    pub(super) restored_since: Option<EpochMillis>,
    /// Roots and symptoms whose alarms changed since the last refresh: their part of the
    /// alarm lists is brought up to date at the next one. A set: a busy incident names
    /// hundreds of CIs, and a list was scanned on every change of each.
    pub(super) stale: BTreeSet<CiIdx>,
    /// The services down and degraded when the title was last written (it names them and
    /// the roots); `None` until it is written by this process.
    pub(super) titled: Option<(usize, usize)>,
}

/// What one batch of CI changes did to an incident: the kind of change to publish, whether
/// its services moved (their states or root causes), and the CIs whose alarms or membership
/// may have changed. [`IncidentBook::refresh`] redoes only what these can have moved.
#[derive(Debug)]
struct Touch {
    kind: ChangeKind,
    services: bool,
    cis: Vec<CiIdx>,
}

fn touch(kinds: &mut BTreeMap<IncidentId, Touch>, id: IncidentId) -> &mut Touch {
    kinds.entry(id).or_insert_with(|| Touch { kind: ChangeKind::Updated, services: false, cis: Vec::new() })
}

#[derive(Debug)]
pub struct IncidentBook {
    pub(super) policy: IncidentPolicy,
    /// Incidents not yet closed. Closed ones leave memory; their last snapshot stays on
    /// the compacted incidents topic.
    pub(super) incidents: BTreeMap<IncidentId, Tracked>,
    pub(super) by_root: FxHashMap<CiIdx, IncidentId>,
    /// The incident each service is impacted under, by CI (0 for none): a table, not a
    /// map, since every service a storm moves looks itself up here.
    pub(super) by_service: Vec<u64>,
    pub(super) by_symptom: FxHashMap<CiIdx, IncidentId>,
    /// The incidents whose roots or symptoms contain a CI: a change to the CI's alarms
    /// reaches each of them, not only the one that owns it.
    pub(super) members: FxHashMap<CiIdx, Vec<IncidentId>>,
    pub(super) next_id: u64,
    pub(super) stats: IncidentStats,
    /// Incidents whose state or bookkeeping changed since the last
    /// [`IncidentBook::take_dirty`] (closed ones included): the changelog's next writes.
    /// Only those: a record carries the whole incident, and an incident a storm merely
    /// touched (a symptom repeating, a service whose roots stayed) has nothing new to write.
    pub(super) dirty: BTreeSet<IncidentId>,
    /// Timers by deadline: a hold-down ending, a reopen window closing. An entry is
    /// checked against its incident when due, so one left by a cancelled hold-down or a
    /// reopened incident is dropped then. Lets [`IncidentBook::tick`] run before every
    /// alarm at the cost of one comparison, and look only at the incidents due.
    pub(super) timers: BinaryHeap<Reverse<(EpochMillis, IncidentId)>>,
}

impl IncidentBook {
    /// An incident book for a topology of `cis` CIs.
    pub fn new(policy: IncidentPolicy, cis: usize) -> IncidentBook {
        IncidentBook {
            policy,
            incidents: BTreeMap::new(),
            by_root: FxHashMap::default(),
            by_service: vec![0; cis],
            by_symptom: FxHashMap::default(),
            members: FxHashMap::default(),
            next_id: 1,
            stats: IncidentStats::default(),
            dirty: BTreeSet::new(),
            timers: BinaryHeap::new(),
        }
    }

    /// Sets every incident's timer from its state (after a restore).
    pub(super) fn reschedule(&mut self) {
        let policy = &self.policy;
        self.timers = self
            .incidents
            .iter()
            .filter_map(|(&id, t)| {
                let at = match t.incident.state {
                    IncidentState::Open | IncidentState::Acknowledged => {
                        t.restored_since.map(|since| since + policy.hold_down_ms)
                    }
                    IncidentState::Resolved => {
                        Some(t.incident.resolved_at.map_or(EpochMillis::MIN, |at| at + policy.reopen_window_ms))
                    }
                    IncidentState::Closed => Some(EpochMillis::MIN),
                };
                at.map(|at| Reverse((at, id)))
            })
            .collect();
    }

    /// The incidents changed since the last call, in id order.
    pub fn take_dirty(&mut self) -> Vec<IncidentId> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    pub fn stats(&self) -> IncidentStats {
        self.stats
    }

    pub fn get(&self, id: IncidentId) -> Option<&Incident> {
        self.incidents.get(&id).map(|t| &*t.incident)
    }

    /// The incident as shared with readers (Kafka output, subscribers).
    pub fn get_shared(&self, id: IncidentId) -> Option<&Arc<Incident>> {
        self.incidents.get(&id).map(|t| &t.incident)
    }

    /// Incidents not yet closed, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.values().map(|t| &*t.incident)
    }

    /// Incidents not yet closed, by id, as shared with published changes.
    pub fn shared(&self) -> impl Iterator<Item = &Arc<Incident>> {
        self.incidents.values().map(|t| &t.incident)
    }

    /// Follows the CIs the impact stage reports as changed; appends incident changes.
    pub fn on_changes(
        &mut self,
        impact: &ImpactStage,
        changed: &[CiIdx],
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        let topology = impact.topology().clone();
        let mut kinds: BTreeMap<IncidentId, Touch> = BTreeMap::new();

        for &ci in changed {
            if topology.ci(ci).incidents {
                self.follow_service(&topology, impact, ci, now, &mut kinds);
            }
        }
        for &ci in changed {
            let state = impact.state(ci);
            let symptom = !state.alarms.is_empty() && !impact.is_root(ci);
            // A symptom of several incidents' roots is owned by the last root's incident;
            // each of them lists it. Ownership is settled once the roots are walked: an
            // owner passed on the way and left again has nothing new to write.
            let owner = if symptom { self.by_symptom.get(&ci).copied() } else { None };
            let mut settled = owner;
            // A CI with no alarms that no incident names (a service, a port down with its
            // card) has no part in any alarm list: its owners refresh, but need not look
            // at it. Most changed CIs are such.
            let listed = !state.alarms.is_empty() || self.members.contains_key(&ci);
            for root in impact.roots(ci).iter() {
                let Some(&id) = self.by_root.get(&root) else { continue };
                let touched = touch(&mut kinds, id);
                if listed {
                    touched.cis.push(ci);
                }
                if symptom && settled != Some(id) {
                    settled = Some(id);
                    if let Some(t) = self.incidents.get_mut(&id)
                        && t.symptoms.insert(ci)
                    {
                        join(&mut self.members, ci, id);
                        self.dirty.insert(id);
                    }
                }
            }
            if let Some(id) = settled
                && settled != owner
            {
                // Its owned symptoms changed, and the previous owner's too, even if nothing
                // either publishes did: the changelog must hear of it.
                self.by_symptom.insert(ci, id);
                self.dirty.insert(id);
                self.dirty.extend(owner);
            }
            for owner in [self.by_root.get(&ci), self.by_symptom.get(&ci)].into_iter().flatten() {
                let touched = touch(&mut kinds, *owner);
                if listed {
                    touched.cis.push(ci);
                }
            }
            // Every incident naming the CI brings its part up to date at its next refresh;
            // only the owners refresh now.
            for owner in self.members.get(&ci).into_iter().flatten() {
                if let Some(t) = self.incidents.get_mut(owner) {
                    t.stale.insert(ci);
                }
            }
        }
        for (id, touched) in kinds {
            if let Some(change) = self.refresh(&topology, impact, id, touched, now) {
                self.dirty.insert(id);
                out.push(change);
            }
        }
    }

    fn follow_service(
        &mut self,
        topology: &Topology,
        impact: &ImpactStage,
        service: CiIdx,
        now: EpochMillis,
        kinds: &mut BTreeMap<IncidentId, Touch>,
    ) {
        let state = impact.state(service);
        let name = &topology.ci(service).name;
        if state.effective.is_up() {
            let Some(id) = self.service_owner(service) else { return };
            if let Some(t) = self.incidents.get_mut(&id)
                && t.incident.state.is_active()
                && t.services.get(service).is_some_and(|s| !s.is_up())
            {
                t.services.set(service, State::Up, topology);
                self.dirty.insert(id);
                push_service_entry(&mut t.incident, &self.policy, now, name, "restored");
                touch(kinds, id).services = true;
            }
            return;
        }

        let id = match self.choose(service, impact.roots(service).iter()) {
            Some(id) => id,
            None => {
                let id = self.open(now);
                touch(kinds, id).kind = ChangeKind::Opened;
                id
            }
        };
        let previous = self.set_service_owner(service, Some(id));
        if previous != Some(id) {
            // It follows the service now and the previous owner no longer does, whether or
            // not their views change below.
            self.dirty.insert(id);
            self.dirty.extend(previous);
        }
        let previous = previous.filter(|&p| p != id);
        if let Some(previous) = previous
            && let Some(t) = self.incidents.get_mut(&previous)
            && t.services.get(service).is_some_and(|s| !s.is_up())
        {
            t.services.set(service, State::Up, topology);
            push_timeline(
                &mut t.incident,
                &self.policy,
                now,
                TimelineKind::Impact,
                format_args!("service {name} now impacted under {id}"),
            );
            touch(kinds, previous).services = true;
        }
        let Some(t) = self.incidents.get_mut(&id) else { return };
        if t.incident.state == IncidentState::Resolved {
            Arc::make_mut(&mut t.incident).state = IncidentState::Open;
            Arc::make_mut(&mut t.incident).resolved_at = None;
            push_timeline(
                &mut t.incident,
                &self.policy,
                now,
                TimelineKind::Reopened,
                format_args!("root cause failed again"),
            );
            self.stats.reopened += 1;
            touch(kinds, id).kind = ChangeKind::Reopened;
        }
        if t.services.set(service, state.effective, topology) != Some(state.effective) {
            self.dirty.insert(id);
            push_service_entry(&mut t.incident, &self.policy, now, name, state.effective.as_str());
        }
        if t.restored_since.take().is_some() {
            self.dirty.insert(id);
        }
        for root in impact.roots(service).iter() {
            if let std::collections::hash_map::Entry::Vacant(v) = self.by_root.entry(root) {
                v.insert(id);
                t.registered_roots.insert(root);
                self.dirty.insert(id);
            }
        }
        touch(kinds, id).services = true;
    }

    /// The incident a service is impacted under, if any.
    pub(super) fn service_owner(&self, service: CiIdx) -> Option<IncidentId> {
        Some(self.by_service[service as usize]).filter(|&id| id != 0).map(IncidentId)
    }

    /// Sets the incident a service is impacted under; returns the previous one.
    pub(super) fn set_service_owner(&mut self, service: CiIdx, id: Option<IncidentId>) -> Option<IncidentId> {
        let previous = self.service_owner(service);
        self.by_service[service as usize] = id.map_or(0, |id| id.0);
        previous
    }

    /// The incident an impacted service belongs to: the one it is already impacted under,
    /// else the oldest one that owns one of its root causes.
    fn choose(&self, service: CiIdx, mut roots: impl Iterator<Item = CiIdx>) -> Option<IncidentId> {
        if let Some(id) = self.service_owner(service) {
            let continuing = self
                .incidents
                .get(&id)
                .is_some_and(|t| t.incident.state.is_active() && t.services.get(service).is_some_and(|s| !s.is_up()));
            if continuing {
                return Some(id);
            }
        }
        roots.by_ref().filter_map(|r| self.by_root.get(&r).copied()).min()
    }

    fn open(&mut self, now: EpochMillis) -> IncidentId {
        let id = IncidentId(self.next_id);
        self.next_id += 1;
        self.stats.opened += 1;
        let mut incident = Arc::new(Incident::new(id, now));
        push_timeline(&mut incident, &self.policy, now, TimelineKind::Opened, format_args!("incident opened"));
        let tracked = Tracked {
            incident,
            roots: BTreeSet::new(),
            registered_roots: BTreeSet::new(),
            services: Impacted::new(),
            symptoms: BTreeSet::new(),
            restored_since: None,
            stale: BTreeSet::new(),
            titled: None,
        };
        self.incidents.insert(id, tracked);
        id
    }

    /// Brings an incident's published view up to date with the live CI states; returns the
    /// change if anything a reader sees moved. Only what `touched` can have moved is redone:
    /// root causes when its services moved, and the alarm lists of the CIs it names (a
    /// symptom alarm raised in a large incident costs the CI's alarms, not the incident's).
    fn refresh(
        &mut self,
        topology: &Topology,
        impact: &ImpactStage,
        id: IncidentId,
        touched: Touch,
        now: EpochMillis,
    ) -> Option<IncidentChange> {
        let policy = &self.policy;
        let t = self.incidents.get_mut(&id)?;
        let Touch { kind, services: services_moved, cis: mut alarm_cis } = touched;
        alarm_cis.extend(std::mem::take(&mut t.stale));
        // Whether anything a reader sees moved: tracked field by field, so that no refresh
        // clones the whole incident (timeline included) just to compare it afterwards.
        let mut moved = false;
        let mut roots_moved = false;

        // Roots accumulate over the incident's life, so a resolved incident still names
        // every root cause it had; a former root now explained by another failure moves
        // to the symptoms. The live roots can only have moved if a service did.
        let live: BTreeSet<CiIdx> = if services_moved {
            t.services.iter().filter(|(_, s)| !s.is_up()).flat_map(|(s, _)| impact.roots(s).iter()).collect()
        } else {
            BTreeSet::new()
        };
        for &root in live.difference(&t.roots) {
            push_timeline(
                &mut t.incident,
                policy,
                now,
                TimelineKind::RootCause,
                format_args!("root cause {}", topology.ci(root).name),
            );
            moved = true;
            roots_moved = true;
            if let std::collections::hash_map::Entry::Vacant(v) = self.by_root.entry(root) {
                v.insert(id);
                t.registered_roots.insert(root);
            }
            if !t.symptoms.remove(&root) {
                join(&mut self.members, root, id);
            }
            alarm_cis.push(root);
        }
        t.roots.extend(live.iter().copied());
        let explained_by_other =
            |r: CiIdx| !live.contains(&r) && !impact.state(r).alarms.is_empty() && !impact.is_root(r);
        let explained: Vec<CiIdx> = if services_moved {
            t.roots.iter().copied().filter(|&r| explained_by_other(r)).collect()
        } else {
            alarm_cis.iter().copied().filter(|r| t.roots.contains(r) && explained_by_other(*r)).collect()
        };
        for former in explained {
            if t.roots.remove(&former) {
                roots_moved = true;
            }
            t.symptoms.insert(former);
            alarm_cis.push(former);
            if let Some(previous) = self.by_symptom.insert(former, id).filter(|&p| p != id) {
                self.dirty.insert(previous);
            }
        }
        // A CI on_changes attached as a symptom that is still one of the roots stays a root.
        for ci in &alarm_cis {
            if t.roots.contains(ci) && t.symptoms.remove(ci) {
                self.dirty.insert(id);
            }
        }

        if roots_moved {
            let root_causes = t.roots.iter().map(|&r| topology.ci(r).id.clone()).collect();
            moved |= set!(t.incident, root_causes, root_causes);
        }
        alarm_cis.sort_unstable();
        alarm_cis.dedup();
        let mut attached = 0;
        for &ci in &alarm_cis {
            let (root, symptom) = (t.roots.contains(&ci), t.symptoms.contains(&ci));
            let current = &t.incident;
            let root_alarms = merge_ci_alarms(&current.root_cause_alarms, ci, root, topology, impact, now);
            let symptom_alarms = merge_ci_alarms(&current.symptom_alarms, ci, symptom, topology, impact, now);
            if let Some((range, alarms, _)) = root_alarms {
                Arc::make_mut(&mut t.incident).root_cause_alarms.splice(range, alarms);
                moved = true;
            }
            if let Some((range, alarms, new)) = symptom_alarms {
                Arc::make_mut(&mut t.incident).symptom_alarms.splice(range, alarms);
                attached += new;
                moved = true;
            }
        }
        if attached > 0 {
            self.stats.symptoms_attached += attached as u64;
            push_timeline(
                &mut t.incident,
                policy,
                now,
                TimelineKind::Symptom,
                format_args!("{attached} symptom alarm(s) attached"),
            );
        }

        if services_moved || roots_moved {
            moved |= Self::refresh_impact(t, topology, policy, roots_moved, &mut self.timers, now);
        }

        if !moved && kind == ChangeKind::Updated {
            return None;
        }
        Some(publish(&mut t.incident, kind, now))
    }

    /// The services, customers, priority and title of an incident from its services'
    /// states; starts the hold-down once they are all restored. True when anything moved.
    fn refresh_impact(
        t: &mut Tracked,
        topology: &Topology,
        policy: &IncidentPolicy,
        roots_moved: bool,
        timers: &mut BinaryHeap<Reverse<(EpochMillis, IncidentId)>>,
        now: EpochMillis,
    ) -> bool {
        let (down, degraded) = t.services.counts();
        if roots_moved {
            t.titled = None;
        }
        // The lists follow the services that moved since they were last published; the
        // priority follows the lists.
        let mut moved = t.services.publish(&mut t.incident, topology);
        if moved && down + degraded > 0 {
            let tiers: Vec<_> = t.services.customer_impact().collect();
            let (level, urgency, priority) = policy.priority.assess(&tiers, down > 0);
            moved |= set!(t.incident, impact, level);
            moved |= set!(t.incident, urgency, urgency);
            moved |= set!(t.incident, priority, priority);
        }

        if down + degraded > 0 {
            // The roots may have moved without the services.
            if t.titled != Some((down, degraded)) {
                moved |= set!(t.incident, title, title(topology, &t.roots, down, degraded));
                t.titled = Some((down, degraded));
            }
        } else if t.incident.state.is_active() && t.restored_since.is_none() && !t.services.is_empty() {
            t.restored_since = Some(now);
            timers.push(Reverse((now + policy.hold_down_ms, t.incident.id)));
            push_timeline(
                &mut t.incident,
                policy,
                now,
                TimelineKind::Restored,
                format_args!(
                    "all services restored; resolves after {} s unless impacted again",
                    policy.hold_down_ms / 1000
                ),
            );
            moved = true;
        }
        moved
    }

    /// Advances timers: auto-resolution after the hold-down, closing after the reopen window.
    pub fn tick(&mut self, now: EpochMillis, out: &mut Vec<IncidentChange>) {
        if self.timers.peek().is_none_or(|Reverse((at, _))| now < *at) {
            return;
        }
        let mut due = Vec::new();
        while let Some(&Reverse((at, id))) = self.timers.peek()
            && at <= now
        {
            self.timers.pop();
            due.push(id);
        }
        // In id order, as everything the core publishes at one time.
        due.sort_unstable();
        due.dedup();
        let mut closing = Vec::new();
        for id in due {
            let Some(t) = self.incidents.get_mut(&id) else { continue };
            match t.incident.state {
                IncidentState::Open | IncidentState::Acknowledged => {
                    // Not restored (any more), or restored again since: not due.
                    let Some(since) = t.restored_since else { continue };
                    if now - since < self.policy.hold_down_ms {
                        continue;
                    }
                    Arc::make_mut(&mut t.incident).state = IncidentState::Resolved;
                    Arc::make_mut(&mut t.incident).resolved_at = Some(now);
                    t.restored_since = None;
                    push_timeline(
                        &mut t.incident,
                        &self.policy,
                        now,
                        TimelineKind::Resolved,
                        format_args!(
                            "resolved automatically: services restored for {} s",
                            self.policy.hold_down_ms / 1000
                        ),
                    );
                    self.stats.resolved += 1;
                    self.dirty.insert(id);
                    out.push(publish(&mut t.incident, ChangeKind::Resolved, now));
                    self.timers.push(Reverse((now + self.policy.reopen_window_ms, id)));
                }
                IncidentState::Resolved => match t.incident.resolved_at {
                    Some(at) if now - at < self.policy.reopen_window_ms => {}
                    _ => closing.push(id),
                },
                IncidentState::Closed => closing.push(id),
            }
        }
        for id in closing {
            let Some(mut t) = self.incidents.remove(&id) else { continue };
            for root in &t.registered_roots {
                if self.by_root.get(root) == Some(&id) {
                    self.by_root.remove(root);
                }
            }
            // It owns services among those it impacted, and symptoms among its symptoms
            // and former roots.
            for (service, _) in t.services.iter() {
                if self.service_owner(service) == Some(id) {
                    self.set_service_owner(service, None);
                }
            }
            for ci in t.symptoms.iter().chain(&t.roots) {
                if self.by_symptom.get(ci) == Some(&id) {
                    self.by_symptom.remove(ci);
                }
            }
            for ci in t.roots.iter().chain(&t.symptoms) {
                if let Some(owners) = self.members.get_mut(ci) {
                    owners.retain(|&owner| owner != id);
                    if owners.is_empty() {
                        self.members.remove(ci);
                    }
                }
            }
            Arc::make_mut(&mut t.incident).state = IncidentState::Closed;
            push_timeline(&mut t.incident, &self.policy, now, TimelineKind::Closed, format_args!("reopen window over"));
            self.stats.closed += 1;
            self.dirty.insert(id);
            out.push(publish(&mut t.incident, ChangeKind::Closed, now));
        }
    }

    /// Checks the incrementally kept views against a recomputation from scratch: each
    /// incident's alarm lists against the CIs' live alarms, and the membership index against
    /// the incidents' roots and symptoms. For tests; `Err` describes the first difference.
    pub fn check_views(&self, impact: &ImpactStage) -> Result<(), String> {
        let topology = impact.topology();
        let mut members: FxHashMap<CiIdx, Vec<IncidentId>> = FxHashMap::default();
        for (&id, t) in &self.incidents {
            for &ci in t.roots.iter().chain(&t.symptoms) {
                join(&mut members, ci, id);
            }
            if !t.roots.is_disjoint(&t.symptoms) {
                return Err(format!("{id}: a CI is both root and symptom"));
            }
            t.services.check(&t.incident, topology).map_err(|difference| format!("{id}: {difference}"))?;
            let (down, degraded) = t.services.counts();
            if t.titled.is_some()
                && down + degraded > 0
                && t.incident.title != title(topology, &t.roots, down, degraded)
            {
                return Err(format!("{id}: title {:?} does not name its roots and services", t.incident.title));
            }
            // Merging again must change nothing (no active alarm missing, none left over),
            // leaving out the CIs whose update waits for the incident's next refresh.
            let current = |ci: CiIdx| !t.stale.contains(&ci);
            let settled = |list: &[AlarmRef]| -> Vec<AlarmRef> {
                list.iter().filter(|a| topology.lookup(&a.resource).is_none_or(current)).cloned().collect()
            };
            for (what, list, set) in [
                ("root-cause", &t.incident.root_cause_alarms, &t.roots),
                ("symptom", &t.incident.symptom_alarms, &t.symptoms),
            ] {
                let set: BTreeSet<CiIdx> = set.iter().copied().filter(|&ci| current(ci)).collect();
                let kept = settled(list);
                let expected = merge_alarms(&kept, &set, topology, impact, EpochMillis::MIN);
                if expected != kept {
                    return Err(format!("{id}: {what} alarms {kept:?}, expected {expected:?}"));
                }
            }
        }
        let mut kept = self.members.clone();
        for owners in kept.values_mut().chain(members.values_mut()) {
            owners.sort_unstable();
        }
        if kept != members {
            return Err(format!("membership index {kept:?}, expected {members:?}"));
        }
        Ok(())
    }

    pub fn acknowledge(&mut self, id: IncidentId, by: &str, now: EpochMillis) -> Result<IncidentChange, CoreError> {
        let t = self.incidents.get_mut(&id).ok_or_else(|| CoreError::NotFound(id.to_string()))?;
        if t.incident.state != IncidentState::Open {
            return Err(CoreError::FailedPrecondition(format!(
                "incident {id} is {}, only an open incident can be acknowledged",
                t.incident.state.as_str()
            )));
        }
        Arc::make_mut(&mut t.incident).state = IncidentState::Acknowledged;
        Arc::make_mut(&mut t.incident).acknowledgement = Some(Acknowledgement { by: by.to_owned(), time: now });
        self.dirty.insert(id);
        push_timeline(
            &mut t.incident,
            &self.policy,
            now,
            TimelineKind::Acknowledged,
            format_args!("acknowledged by {by}"),
        );
        Ok(publish(&mut t.incident, ChangeKind::Acknowledged, now))
    }

    pub fn resolve(
        &mut self,
        id: IncidentId,
        by: &str,
        reason: &str,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        let t = self.incidents.get_mut(&id).ok_or_else(|| CoreError::NotFound(id.to_string()))?;
        if !t.incident.state.is_active() {
            return Err(CoreError::FailedPrecondition(format!(
                "incident {id} is already {}",
                t.incident.state.as_str()
            )));
        }
        Arc::make_mut(&mut t.incident).state = IncidentState::Resolved;
        Arc::make_mut(&mut t.incident).resolved_at = Some(now);
        t.restored_since = None;
        let close_at = now + self.policy.reopen_window_ms;
        self.timers.push(Reverse((close_at, id)));
        self.dirty.insert(id);
        let colon = if reason.is_empty() { "" } else { ": " };
        let policy = &self.policy;
        push_timeline(
            &mut t.incident,
            policy,
            now,
            TimelineKind::Resolved,
            format_args!("resolved by {by}{colon}{reason}"),
        );
        self.stats.resolved += 1;
        Ok(publish(&mut t.incident, ChangeKind::Resolved, now))
    }

    pub fn add_note(
        &mut self,
        id: IncidentId,
        author: &str,
        text: &str,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        let t = self.incidents.get_mut(&id).ok_or_else(|| CoreError::NotFound(id.to_string()))?;
        Arc::make_mut(&mut t.incident).notes.push(Note { author: author.to_owned(), text: text.to_owned(), time: now });
        self.dirty.insert(id);
        push_timeline(&mut t.incident, &self.policy, now, TimelineKind::Note, format_args!("note by {author}"));
        Ok(publish(&mut t.incident, ChangeKind::NoteAdded, now))
    }
}

fn publish(incident: &mut Arc<Incident>, kind: ChangeKind, now: EpochMillis) -> IncidentChange {
    let writable = Arc::make_mut(incident);
    writable.version += 1;
    writable.updated_at = now;
    IncidentChange { kind, incident: incident.clone() }
}

fn push_timeline(
    incident: &mut Arc<Incident>,
    policy: &IncidentPolicy,
    now: EpochMillis,
    kind: TimelineKind,
    text: std::fmt::Arguments<'_>,
) {
    let text: Arc<str> = match text.as_str() {
        Some(text) => Arc::from(text),
        None => shared_text(|buffer| {
            use std::fmt::Write;
            buffer.write_fmt(text).expect("formatting into a String does not fail");
        }),
    };
    let entry = TimelineEntry { time: now, kind, text };
    Arc::make_mut(incident).timeline.push_limited(entry, policy.timeline_limit);
}

/// The impact entry for a service (`service <name> <what>`), put together without the
/// formatting machinery: a storm writes one for every service it moves.
fn push_service_entry(incident: &mut Arc<Incident>, policy: &IncidentPolicy, now: EpochMillis, name: &str, what: &str) {
    let text = shared_text(|buffer| ["service ", name, " ", what].iter().for_each(|part| buffer.push_str(part)));
    let entry = TimelineEntry { time: now, kind: TimelineKind::Impact, text };
    Arc::make_mut(incident).timeline.push_limited(entry, policy.timeline_limit);
}

/// A timeline text written into a reused buffer and copied once into its shared string.
fn shared_text(write: impl FnOnce(&mut String)) -> Arc<str> {
    thread_local! {
        static TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    TEXT.with_borrow_mut(|buffer| {
        buffer.clear();
        write(buffer);
        Arc::from(buffer.as_str())
    })
}

/// Adds `ci` to the incidents whose roots or symptoms name it.
pub(super) fn join(members: &mut FxHashMap<CiIdx, Vec<IncidentId>>, ci: CiIdx, id: IncidentId) {
    let owners = members.entry(ci).or_default();
    if !owners.contains(&id) {
        owners.push(id);
    }
}

/// One CI's part of an incident's alarm list (sorted by identity, so a resource's alarms
/// sit together): its active alarms, plus the ones listed before that have since cleared
/// (kept, marked cleared); nothing if `listed` is false. Returns the range to replace, the
/// new entries and how many of them are new identities; `None` when nothing changed.
fn merge_ci_alarms(
    list: &[AlarmRef],
    ci: CiIdx,
    listed: bool,
    topology: &Topology,
    impact: &ImpactStage,
    now: EpochMillis,
) -> Option<(std::ops::Range<usize>, Vec<AlarmRef>, usize)> {
    let resource: &str = &topology.ci(ci).id;
    let start = list.partition_point(|a| &*a.resource < resource);
    let end = start + list[start..].partition_point(|a| &*a.resource == resource);
    let previous = &list[start..end];
    let active: &[AlarmRef] = if listed { &impact.state(ci).alarms } else { &[] };
    if active.len() == previous.len() && active.iter().zip(previous).all(|(a, b)| a == b) {
        return None;
    }
    // Most refreshes change nothing here (the CI's cleared alarms stay listed as they
    // were): find that out without building the merged list.
    if listed && merged_unchanged(previous, active) {
        return None;
    }
    let mut merged: Vec<AlarmRef> = active.to_vec();
    let mut new = merged.len();
    if listed {
        for old in previous {
            match merged.iter().position(|a| a.identity() == old.identity()) {
                Some(_) => new -= 1,
                None => {
                    let mut gone = old.clone();
                    gone.cleared_at = gone.cleared_at.or(Some(now));
                    merged.push(gone);
                }
            }
        }
        merged.sort_unstable_by(|a, b| a.identity().cmp(&b.identity()));
    }
    if merged.as_slice() == previous {
        return None;
    }
    Some((start..end, merged, new))
}

/// Whether merging `active` into `previous` (both one CI's, listed) would give `previous`
/// back: every active alarm listed as it is, every other listed alarm already marked
/// cleared. Walks both in identity order; `false` when `active` is not in that order, and
/// the caller then merges the long way.
fn merged_unchanged(previous: &[AlarmRef], active: &[AlarmRef]) -> bool {
    if !active.is_sorted_by(|a, b| a.identity() < b.identity()) {
        return false;
    }
    let mut active = active.iter().peekable();
    for old in previous {
        match active.peek() {
            Some(next) if next.identity() == old.identity() => {
                if *next != old {
                    return false;
                }
                active.next();
            }
            // An active alarm the list does not have yet.
            Some(next) if next.identity() < old.identity() => return false,
            _ if old.cleared_at.is_none() => return false,
            _ => {}
        }
    }
    active.peek().is_none()
}

/// The active alarms of `cis`, plus the ones previously listed for them that have since
/// cleared (kept, marked cleared), in identity order: what the incremental lists must
/// always equal (see [`IncidentBook::check_views`]).
fn merge_alarms(
    previous: &[AlarmRef],
    cis: &BTreeSet<CiIdx>,
    topology: &Topology,
    impact: &ImpactStage,
    now: EpochMillis,
) -> Vec<AlarmRef> {
    let mut merged: Vec<AlarmRef> = cis.iter().flat_map(|&ci| impact.state(ci).alarms.iter().cloned()).collect();
    merged.sort_unstable_by(|a, b| a.identity().cmp(&b.identity()));
    // Both lists are in identity order: one pass finds the previous alarms gone from the
    // active ones.
    let mut cleared = Vec::new();
    let mut active = merged.iter().peekable();
    for old in previous {
        while active.next_if(|a| a.identity() < old.identity()).is_some() {}
        if active.peek().is_some_and(|a| a.identity() == old.identity()) {
            continue;
        }
        if topology.lookup(&old.resource).is_some_and(|ci| cis.contains(&ci)) {
            let mut gone = old.clone();
            gone.cleared_at = gone.cleared_at.or(Some(now));
            cleared.push(gone);
        }
    }
    if !cleared.is_empty() {
        merged.append(&mut cleared);
        merged.sort_unstable_by(|a, b| a.identity().cmp(&b.identity()));
    }
    merged
}

fn title(topology: &Topology, roots: &BTreeSet<CiIdx>, down: usize, degraded: usize) -> String {
    let what = if down > 0 { "Outage" } else { "Degradation" };
    let services = down + degraded;
    let plural = if services == 1 { "" } else { "s" };
    let mut names = roots.iter().take(2).map(|&r| topology.ci(r).name.to_string()).collect::<Vec<_>>().join(", ");
    if roots.len() > 2 {
        names.push_str(&format!(" and {} more", roots.len() - 2));
    }
    format!("{what} of {services} service{plural}: root cause {names}")
}
