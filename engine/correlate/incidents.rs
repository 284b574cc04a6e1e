//! Incident management: one incident per root-cause group. An impacted service opens an
//! incident, or joins the one that already owns one of its root causes; the incident follows
//! the impact as it changes, resolves itself once every impacted service has stayed restored
//! for a hold-down period, reopens if its root cause fails again within the reopen window,
//! and closes after it. Operators acknowledge, annotate and resolve.

use super::impact::{Change, Changes, ImpactStage};
use super::impacted::Impacted;
use super::priority::PriorityPolicy;
use super::roots::{SMALL_MAX, SMALL_MIN};
use super::waiting::Waiting;
use crate::model::EpochMillis;
use crate::model::alarm::AlarmRef;
use crate::model::incident::{
    Acknowledgement, ChangeKind, Incident, IncidentChange, IncidentId, IncidentState, Note, TimelineEntry, TimelineKind,
};
use crate::model::state::State;
use crate::model::topology::{Applied, CiIdx, Topology};
use rustc_hash::{FxHashMap, FxHashSet};
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
    /// Notes an incident takes; one more is refused.
    pub max_notes: usize,
    /// Root causes an incident names; the others are counted (`omitted.root_causes`).
    pub max_roots: usize,
    /// Entries each of an incident's alarm lists holds: cleared alarms make room for active
    /// ones, active alarms beyond it are counted (`omitted`).
    pub max_alarms: usize,
}

/// Note text an incident holds in all, so that its notes leave room in its record for the
/// rest of it.
pub const MAX_NOTES_BYTES: usize = 256 * 1024;

impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            hold_down_ms: 60_000,
            reopen_window_ms: 900_000,
            priority: PriorityPolicy::default(),
            timeline_limit: 500,
            max_notes: 100,
            max_roots: 500,
            max_alarms: 500,
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
    /// Every CI that has explained this incident's impact, less those since explained by
    /// another; sorted. A vector, not a set: `incident.root_causes` lists them in this
    /// order, and a root joining or leaving takes the same position in both.
    pub(super) roots: Vec<CiIdx>,
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
    /// Whether `roots` holds every root of the services the incident follows and
    /// `incident.root_causes` names `roots`, so that both follow the roots the services
    /// gain; false after a restore (the writer may have trimmed the lists), until a
    /// refresh has recomputed them in full.
    pub(super) synced: bool,
    /// Where in the root-cause and the symptom alarm lists the last merge ended: the next
    /// CI merged is often the next one there.
    pub(super) merge_hints: [usize; 2],
    /// Per alarm list (root-cause, symptom): the active alarms past the first
    /// `max_alarms` entries, which the incident's list leaves out (and counts), in alarm
    /// order. Empty while the whole list fits.
    pub(super) rest: [Waiting; 2],
    /// Per alarm list: its cleared entries, oldest cleared first, the first to go when
    /// active alarms need the room.
    pub(super) cleared: [BTreeSet<ClearedKey>; 2],
    /// Whether `lists` hold every alarm, which a restore leaves to the first refresh (it
    /// takes back only the listed part).
    pub(super) complete: bool,
}

/// A cleared entry of an alarm list: when it cleared, then its identity.
pub(super) type ClearedKey = (EpochMillis, Arc<str>, Arc<str>, Arc<str>);

pub(super) fn cleared_key(alarm: &AlarmRef) -> Option<ClearedKey> {
    let at = alarm.cleared_at?;
    Some((at, alarm.resource.clone(), alarm.alarm_type.clone(), alarm.qualifier.clone()))
}

/// The cleared entries of an alarm list, as [`Tracked::cleared`] keeps them.
pub(super) fn cleared_index(list: &[AlarmRef]) -> BTreeSet<ClearedKey> {
    list.iter().filter_map(cleared_key).collect()
}

/// The root-cause alarm list, then the symptom alarm list: the index of each in the
/// per-list parts of [`Tracked`].
const ROOT_LIST: usize = 0;
const SYMPTOM_LIST: usize = 1;

fn alarm_list(incident: &Incident, which: usize) -> &[AlarmRef] {
    if which == ROOT_LIST { &incident.root_cause_alarms } else { &incident.symptom_alarms }
}

impl Tracked {
    /// Brings one CI's part of alarm list `which` up to date (`listed`: whether the CI
    /// belongs there). Its entries up to `boundary` (the last one listed when the refresh
    /// began with the list full; `None` when it was not) go to the incident's list; active
    /// ones past it wait in `rest`, cleared ones past it are dropped (never listed).
    /// Returns whether the incident's list changed, and how many alarms it gained.
    #[allow(clippy::too_many_arguments)]
    fn merge_list(
        &mut self,
        which: usize,
        ci: CiIdx,
        listed: bool,
        boundary: Option<&AlarmKey>,
        topology: &Topology,
        impact: &ImpactStage,
        now: EpochMillis,
    ) -> Option<(bool, usize)> {
        let resource = &topology.ci(ci).id;
        let rest = &mut self.rest[which];
        // Its entries waiting past the listed part, if any, taken out (put back below).
        let waiting = rest.take(resource);
        let list = alarm_list(&self.incident, which);
        let merged = if waiting.is_empty() {
            merge_ci_alarms(list, &mut self.merge_hints[which], ci, listed, topology, impact, now)
        } else {
            // The CI's entries straddle the end of the listed part: merged as one list.
            let at = list.partition_point(|a| *a.resource < **resource);
            let end = at + list[at..].iter().take_while(|a| a.resource == *resource).count();
            let mut whole = list[at..end].to_vec();
            whole.extend(waiting.iter().cloned());
            let mut hint = 0;
            merge_ci_alarms(&whole, &mut hint, ci, listed, topology, impact, now)
                .map(|(_, alarms, new)| (at..end, alarms, new))
        };
        let Some((range, alarms, new)) = merged else {
            rest.put(waiting);
            return None;
        };
        // What goes to the incident's list, and what waits past it.
        // (`alarms` is in identity order: a split, not a partition.)
        let mut listed_part = alarms;
        let past = match boundary {
            Some(boundary) => {
                let split = listed_part.partition_point(|a| a.identity() <= key_ref(boundary));
                if split == 0 { std::mem::take(&mut listed_part) } else { listed_part.split_off(split) }
            }
            None => Vec::new(),
        };
        // Symptom alarms newly listed: one walk, both lists being in identity order.
        let mut gained = 0;
        if new > 0 && which == SYMPTOM_LIST {
            let before = &list[range.clone()];
            let mut at = 0;
            for alarm in &listed_part {
                while before.get(at).is_some_and(|b| b.identity() < alarm.identity()) {
                    at += 1;
                }
                let listed_before = before.get(at).is_some_and(|b| b.identity() == alarm.identity());
                let waited = waiting.binary_search_by(|w| w.identity().cmp(&alarm.identity())).is_ok();
                gained += usize::from(alarm.cleared_at.is_none() && !listed_before && !waited);
            }
        }
        // One that cleared past the listed part was never listed: it goes.
        rest.put(past.into_iter().filter(|a| a.cleared_at.is_none()));
        if *list.get(range.clone()).unwrap_or_default() == *listed_part {
            return Some((false, 0));
        }
        let cleared = &mut self.cleared[which];
        for old in &list[range.clone()] {
            if let Some(key) = cleared_key(old) {
                cleared.remove(&key);
            }
        }
        cleared.extend(listed_part.iter().filter_map(cleared_key));
        self.merge_hints[which] = range.start + listed_part.len();
        let incident = Arc::make_mut(&mut self.incident);
        let list = if which == ROOT_LIST { &mut incident.root_cause_alarms } else { &mut incident.symptom_alarms };
        list.splice(range, listed_part);
        Some((true, gained))
    }

    /// Whether list `which` needs [`Tracked::settle_list`] after a refresh's merges.
    fn unsettled(&self, which: usize, cap: usize) -> bool {
        let omitted = self.incident.omitted;
        let counted = if which == ROOT_LIST { omitted.root_cause_alarms } else { omitted.symptom_alarms };
        !self.complete || !self.rest[which].is_empty() || counted > 0 || alarm_list(&self.incident, which).len() > cap
    }

    /// Settles alarm list `which` after a refresh's merges: the incident's list holds the
    /// first `cap` entries of the whole list, active ones past them wait in `rest`
    /// (counted as omitted). While alarms wait, cleared entries go once they are a tenth
    /// of the list, the oldest cleared first, one for each alarm waiting. Returns whether
    /// the incident moved.
    fn settle_list(&mut self, which: usize, cap: usize) -> bool {
        let mut moved = false;
        let rest = &mut self.rest[which];
        let cleared = &mut self.cleared[which];
        let listed = alarm_list(&self.incident, which);
        let mut dropped = 0u32;
        if listed.len() > cap
            || (!rest.is_empty() && cleared.len() >= (cap / 10).max(1))
            || listed.len() < cap && !rest.is_empty()
        {
            let incident = Arc::make_mut(&mut self.incident);
            let list = if which == ROOT_LIST { &mut incident.root_cause_alarms } else { &mut incident.symptom_alarms };
            while list.len() > cap {
                let Some(last) = list.pop() else { break };
                match cleared_key(&last) {
                    Some(key) => {
                        cleared.remove(&key);
                        dropped += 1;
                    }
                    None => rest.put([last]),
                }
            }
            if !rest.is_empty() && cleared.len() >= (cap / 10).max(1) {
                let evicted = cleared.len().min(rest.len());
                let gone: FxHashSet<(Arc<str>, Arc<str>, Arc<str>)> =
                    (0..evicted).filter_map(|_| cleared.pop_first()).map(|(_, r, t, q)| (r, t, q)).collect();
                list.retain(|a| a.cleared_at.is_none() || !gone.contains(&key_of(a)));
                dropped += gone.len() as u32;
            }
            while list.len() < cap {
                let Some(next) = rest.pop_first() else { break };
                list.push(next);
            }
            moved = true;
        }
        let omitted = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let counts = self.incident.omitted;
        let counted = if which == ROOT_LIST { counts.root_cause_alarms } else { counts.symptom_alarms };
        if counted != omitted || dropped > 0 {
            let counts = &mut Arc::make_mut(&mut self.incident).omitted;
            *(if which == ROOT_LIST { &mut counts.root_cause_alarms } else { &mut counts.symptom_alarms }) = omitted;
            counts.cleared_alarms = counts.cleared_alarms.saturating_add(dropped);
            moved = true;
        }
        moved
    }
}

/// An alarm's identity, owned: the key of the alarms waiting past an incident's list.
pub(super) type AlarmKey = (Arc<str>, Arc<str>, Arc<str>);

fn key_of(alarm: &AlarmRef) -> AlarmKey {
    (alarm.resource.clone(), alarm.alarm_type.clone(), alarm.qualifier.clone())
}

fn key_ref(key: &AlarmKey) -> (&str, &str, &str) {
    (&key.0, &key.1, &key.2)
}

/// Names the root just inserted at `at` in `t.roots` among the incident's root causes,
/// which name the first `cap` roots and count the others.
fn name_inserted_root(t: &mut Tracked, at: usize, cap: usize, topology: &Topology) {
    let incident = Arc::make_mut(&mut t.incident);
    if at < cap {
        incident.root_causes.insert(at, topology.ci(t.roots[at]).id.clone());
        incident.root_causes.truncate(cap);
    }
    incident.omitted.root_causes = (t.roots.len() - incident.root_causes.len()) as u32;
}

/// Takes the root just removed from `at` in `t.roots` out of the incident's root causes;
/// the first root not named yet takes the place freed.
fn unname_removed_root(t: &mut Tracked, at: usize, cap: usize, topology: &Topology) {
    let incident = Arc::make_mut(&mut t.incident);
    if at < incident.root_causes.len() {
        incident.root_causes.remove(at);
        let named = incident.root_causes.len();
        if named < cap && named < t.roots.len() {
            incident.root_causes.push(topology.ci(t.roots[named]).id.clone());
        }
    }
    incident.omitted.root_causes = (t.roots.len() - incident.root_causes.len()) as u32;
}

/// What one batch of CI changes did to an incident: the kind of change to publish, whether
/// its services moved (their states or root causes), the CIs whose alarms or membership
/// may have changed, and the roots its services gained (all of a service's roots when it
/// joined). [`IncidentBook::refresh`] redoes only what these can have moved.
#[derive(Debug)]
struct Touch {
    kind: ChangeKind,
    services: bool,
    cis: Vec<CiIdx>,
    roots: Vec<CiIdx>,
}

fn touch(kinds: &mut BTreeMap<IncidentId, Touch>, id: IncidentId) -> &mut Touch {
    kinds.entry(id).or_insert_with(|| Touch {
        kind: ChangeKind::Updated,
        services: false,
        cis: Vec::new(),
        roots: Vec::new(),
    })
}

#[derive(Debug)]
pub struct IncidentBook {
    pub(super) policy: IncidentPolicy,
    /// Incidents not yet closed. Closed ones leave memory; their last snapshot stays on
    /// the compacted incidents topic.
    pub(super) incidents: BTreeMap<IncidentId, Tracked>,
    pub(super) by_root: FxHashMap<CiIdx, IncidentId>,
    /// Failing roots no incident owns any more (their owner closed, or not known since a
    /// restore). A service registers the roots it gains; these it registers too, at its
    /// next change, if it has them.
    pub(super) orphaned: FxHashSet<CiIdx>,
    /// Roots in `by_root` registered by a service already in the incident when it gained
    /// them, not by one joining it: they reach the incident (its alarm lists, its
    /// symptoms), but draw no newly impacted service into it. A service they impact that
    /// no incident follows yet opens an incident of its own, which takes them over. This is
    /// what keeps an unrelated failure that also hits one service of an old incident from
    /// dragging everything else it takes down into that incident.
    pub(super) weak: FxHashSet<CiIdx>,
    /// For each CI with more than [`SMALL_MAX`] roots: the incidents owning some of them
    /// in `by_root`, each with how many. A change of such a CI (a national service above
    /// thousands of failed ports) reaches its roots' incidents through this, not through
    /// a look-up per root. Built when a CI's roots grow past the limit, dropped when they
    /// fall below [`SMALL_MIN`], kept exact as roots move and incidents take and give
    /// them up.
    pub(super) wide: FxHashMap<CiIdx, Vec<(IncidentId, u32)>>,
    /// Scratch space for the incidents owning a changed CI's roots.
    owners_buffer: Vec<IncidentId>,
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
    /// The CIs active maintenance windows cover (see [`super::maintenance`]).
    in_maintenance: FxHashSet<CiIdx>,
    /// Impacted services no incident follows because every root cause of theirs lies in
    /// active maintenance windows.
    suppressed: BTreeSet<CiIdx>,
}

impl IncidentBook {
    /// An incident book for a topology of `cis` CIs.
    pub fn new(policy: IncidentPolicy, cis: usize) -> IncidentBook {
        IncidentBook {
            policy,
            incidents: BTreeMap::new(),
            by_root: FxHashMap::default(),
            orphaned: FxHashSet::default(),
            weak: FxHashSet::default(),
            wide: FxHashMap::default(),
            owners_buffer: Vec::new(),
            by_service: vec![0; cis],
            by_symptom: FxHashMap::default(),
            members: FxHashMap::default(),
            next_id: 1,
            stats: IncidentStats::default(),
            dirty: BTreeSet::new(),
            timers: BinaryHeap::new(),
            in_maintenance: FxHashSet::default(),
            suppressed: BTreeSet::new(),
        }
    }

    /// The impacted services active maintenance windows suppress (no incident).
    pub fn suppressed(&self) -> impl Iterator<Item = CiIdx> + '_ {
        self.suppressed.iter().copied()
    }

    /// After a restore, with the coverage of the windows restored: the impacted services no
    /// incident follows whose roots all lie in maintenance are suppressed again (the set is
    /// not written; it follows from the rest).
    pub(super) fn restore_suppressed(&mut self, impact: &ImpactStage) {
        if self.in_maintenance.is_empty() {
            return;
        }
        let topology = impact.topology().clone();
        for (service, ci) in topology.iter() {
            if ci.incidents
                && !impact.state(service).effective.is_up()
                && self.service_owner(service).is_none()
                && self.in_maintenance(impact, service)
            {
                self.suppressed.insert(service);
            }
        }
    }

    /// Whether a service's impact is suppressed by maintenance.
    pub fn is_suppressed(&self, service: CiIdx) -> bool {
        self.suppressed.contains(&service)
    }

    /// Whether every root cause of an impacted service lies in active maintenance windows.
    fn in_maintenance(&self, impact: &ImpactStage, service: CiIdx) -> bool {
        if self.in_maintenance.is_empty() {
            return false;
        }
        let roots = impact.roots(service);
        !roots.is_empty() && roots.iter().all(|root| self.in_maintenance.contains(&root))
    }

    /// Takes the CIs active maintenance windows now cover. Incidents naming a CI covered
    /// anew among their roots are annotated (`why` says by which change); they stay open.
    /// Services suppressed whose roots are no longer all covered are followed again: their
    /// incidents open now, saying why (`released`).
    pub(super) fn follow_maintenance(
        &mut self,
        impact: &ImpactStage,
        covered: FxHashSet<CiIdx>,
        started: &[(CiIdx, String)],
        released: &str,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        self.in_maintenance = covered;
        if !started.is_empty() {
            let roots: Vec<(CiIdx, String)> = started
                .iter()
                .filter(|(ci, _)| self.by_root.contains_key(ci) || self.members.contains_key(ci))
                .cloned()
                .collect();
            let why = "in a maintenance window now; the incident stays open";
            let topology = impact.topology();
            let labelled: Vec<(CiIdx, String)> =
                roots.into_iter().map(|(ci, change)| (ci, format!("{} ({change})", topology.ci(ci).name))).collect();
            self.annotate(&labelled, now, TimelineKind::Maintenance, why, out);
        }
        let topology = impact.topology();
        // Services no longer opening incidents (deleted, or their flag turned off) just leave.
        self.suppressed.retain(|&service| {
            let ci = topology.ci(service);
            ci.present && ci.incidents && !impact.state(service).effective.is_up()
        });
        let released_services: Vec<(CiIdx, State)> = self
            .suppressed
            .iter()
            .copied()
            .filter(|&service| !self.in_maintenance(impact, service))
            .map(|service| (service, State::Up))
            .collect();
        if released_services.is_empty() {
            return;
        }
        for &(service, _) in &released_services {
            self.suppressed.remove(&service);
        }
        let impacted = released_services;
        self.follow_as_changed_noting(impact, impacted, Some(released), now, out);
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
        changes: &Changes,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        self.follow_changes(impact, changes, BTreeMap::new(), now, out);
    }

    /// Follows a topology batch: incidents listing a service or customer it changed list
    /// them as they now are; the CIs it deleted that an incident follows as impacted
    /// services leave it (its timeline says so); then the CIs the impact stage reports as
    /// changed are followed, as for an alarm.
    pub(super) fn on_topology(
        &mut self,
        impact: &ImpactStage,
        changes: &Changes,
        applied: &Applied,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        let topology = impact.topology().clone();
        crate::model::topology::grow_table(&mut self.by_service, topology.slots(), 0);
        let mut kinds: BTreeMap<IncidentId, Touch> = BTreeMap::new();
        // What incidents show of a CI (names, customers, tiers) moved for these: attributes
        // or relations alone change nothing in an incident's lists.
        let changed: FxHashSet<CiIdx> =
            applied.relabelled.iter().chain(&applied.deleted).chain(&applied.added).copied().collect();
        if !changed.is_empty() {
            for (&id, t) in self.incidents.iter_mut() {
                let names_changed = t.services.iter().any(|(service, _)| {
                    changed.contains(&service) || topology.ci(service).customer.is_some_and(|c| changed.contains(&c))
                });
                if names_changed {
                    // Its lists are written again in full at its refresh, names and
                    // customers as the topology now gives them.
                    let services: Vec<(CiIdx, State)> = t.services.iter().collect();
                    t.services = Impacted::restore(services, &topology);
                    t.titled = None;
                    touch(&mut kinds, id).services = true;
                    self.dirty.insert(id);
                }
            }
        }
        // A root renamed: the titles naming it are written again.
        for &ci in &applied.relabelled {
            for &id in self.members.get(&ci).into_iter().flatten() {
                if let Some(t) = self.incidents.get_mut(&id)
                    && find_root(&t.roots, ci).is_ok()
                {
                    t.titled = None;
                    touch(&mut kinds, id).services = true;
                }
            }
        }
        // A CI deleted while an incident names it as a root or symptom: its alarms stay
        // active, unmapped, and leave the incident's lists as if cleared.
        for &ci in &applied.deleted {
            for &id in self.members.get(&ci).into_iter().flatten() {
                if let Some(t) = self.incidents.get_mut(&id) {
                    push_timeline(
                        &mut t.incident,
                        &self.policy,
                        now,
                        TimelineKind::Impact,
                        format_args!(
                            "{} deleted from the topology: its alarms no longer count here",
                            topology.ci(ci).id
                        ),
                    );
                    touch(&mut kinds, id);
                    self.dirty.insert(id);
                }
            }
        }
        // Services an incident follows that leave it: deleted, or no longer opening
        // incidents (their record says so now, or they are no longer services).
        let deleted = applied.deleted.iter().map(|&ci| (ci, "deleted from the topology"));
        let unfollowed = applied
            .relabelled
            .iter()
            .filter(|&&ci| !topology.ci(ci).incidents)
            .map(|&ci| (ci, "no longer followed by incidents (topology change)"));
        for (ci, why) in deleted.chain(unfollowed).collect::<Vec<_>>() {
            let Some(id) = self.set_service_owner(ci, None) else { continue };
            self.dirty.insert(id);
            let Some(t) = self.incidents.get_mut(&id) else { continue };
            if t.services.get(ci).is_some_and(|s| !s.is_up()) {
                t.services.set(ci, State::Up, &topology);
            }
            push_service_entry(&mut t.incident, &self.policy, now, &topology.ci(ci).name, why);
            touch(&mut kinds, id).services = true;
        }
        self.follow_changes(impact, changes, kinds, now, out);
        // Services that open incidents now (added, or made to) and are impacted without
        // moving (nothing in `changes` names them): followed as if they had just failed.
        let newly: Vec<(CiIdx, State)> = applied
            .added
            .iter()
            .chain(&applied.relabelled)
            .copied()
            .filter(|&ci| {
                topology.ci(ci).incidents && !impact.state(ci).effective.is_up() && self.service_owner(ci).is_none()
            })
            .map(|ci| (ci, State::Up))
            .collect();
        if !newly.is_empty() {
            self.follow_as_changed(impact, newly, now, out);
        }
    }

    fn follow_changes(
        &mut self,
        impact: &ImpactStage,
        changes: &Changes,
        mut kinds: BTreeMap<IncidentId, Touch>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        let topology = impact.topology().clone();

        self.follow_roots(impact, changes);
        for change in changes.iter() {
            if topology.ci(change.ci).incidents {
                self.follow_service(&topology, impact, change, now, &mut kinds);
            }
        }
        let mut owners = std::mem::take(&mut self.owners_buffer);
        for &ci in changes.cis() {
            self.follow_member(impact, ci, &mut owners, &mut kinds);
        }
        self.owners_buffer = owners;
        for (id, touched) in kinds {
            if let Some(change) = self.refresh(&topology, impact, id, touched, now) {
                self.dirty.insert(id);
                out.push(change);
            }
        }
    }

    /// Follows one CI whose state or roots changed: the incidents owning its roots (and
    /// those naming it) refresh its part, and a symptom joins the incident of its roots.
    #[inline]
    fn follow_member(
        &mut self,
        impact: &ImpactStage,
        ci: CiIdx,
        owners: &mut Vec<IncidentId>,
        kinds: &mut BTreeMap<IncidentId, Touch>,
    ) {
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
        // The incidents owning its roots, in the roots' order: for a CI with many
        // roots, from their counts, as long as the order cannot matter (not a symptom,
        // or a single owner).
        owners.clear();
        match self.wide.get(&ci) {
            Some(wide) if !symptom || wide.len() <= 1 => owners.extend(wide.iter().map(|&(id, _)| id)),
            _ => owners.extend(impact.roots(ci).iter().filter_map(|root| self.by_root.get(&root).copied())),
        }
        for &id in owners.iter() {
            let touched = touch(kinds, id);
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
            let touched = touch(kinds, *owner);
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

    /// Brings the root indexes up to date with the roots each CI gained and lost: the
    /// owner counts of CIs with many roots, and the orphaned roots that stopped failing.
    fn follow_roots(&mut self, impact: &ImpactStage, changes: &Changes) {
        for change in changes.iter() {
            let ci = change.ci;
            if !self.orphaned.is_empty() && change.lost.binary_search(&ci).is_ok() {
                self.orphaned.remove(&ci);
            }
            let by_root = &self.by_root;
            match self.wide.get_mut(&ci) {
                Some(_) if change.gained.is_empty() && change.lost.is_empty() => {}
                Some(_) if impact.roots(ci).len() < SMALL_MIN => {
                    self.wide.remove(&ci);
                }
                Some(owners) => {
                    for (roots, by) in [(change.gained, 1), (change.lost, -1)] {
                        for root in roots {
                            if let Some(&id) = by_root.get(root) {
                                count_owner(owners, id, by);
                            }
                        }
                    }
                }
                None => {
                    let roots = impact.roots(ci);
                    if roots.len() > SMALL_MAX {
                        let mut owners = Vec::new();
                        for root in roots.iter() {
                            if let Some(&id) = by_root.get(&root) {
                                count_owner(&mut owners, id, 1);
                            }
                        }
                        self.wide.insert(ci, owners);
                    }
                }
            }
        }
    }

    fn follow_service(
        &mut self,
        topology: &Topology,
        impact: &ImpactStage,
        change: Change<'_>,
        now: EpochMillis,
        kinds: &mut BTreeMap<IncidentId, Touch>,
    ) {
        let service = change.ci;
        let state = impact.state(service);
        let name = &topology.ci(service).name;
        if state.effective.is_up() {
            if !self.suppressed.is_empty() {
                self.suppressed.remove(&service);
            }
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

        // Planned works explain all of it: no incident, while they last; none opened, joined
        // or reopened, whatever else holds its roots. Only an incident already following the
        // service (open before the works began) goes on following it.
        if !self.in_maintenance.is_empty() && self.in_maintenance(impact, service) {
            let following = self.service_owner(service).is_some_and(|id| {
                self.incidents.get(&id).is_some_and(|t| {
                    t.incident.state.is_active()
                        && t.incident.state != IncidentState::Resolved
                        && t.services.get(service).is_some_and(|s| !s.is_up())
                })
            });
            if !following {
                self.suppressed.insert(service);
                return;
            }
        }
        let id = match self.choose(impact, service) {
            Some(id) => id,
            None => {
                let id = self.open(now);
                touch(kinds, id).kind = ChangeKind::Opened;
                id
            }
        };
        if !self.suppressed.is_empty() {
            self.suppressed.remove(&service);
        }
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
        let before = t.services.set(service, state.effective, topology);
        if before != Some(state.effective) {
            self.dirty.insert(id);
            push_service_entry(&mut t.incident, &self.policy, now, name, state.effective.as_str());
        }
        if t.restored_since.take().is_some() {
            self.dirty.insert(id);
        }
        // The service's roots are registered to this incident where no incident owns them:
        // all of them by a service joining it (taking over those only weakly owned), what
        // it gains by a service already in it (weakly, see `weak`). Those it had before
        // were registered when it joined or gained them, and stayed so but for an owner
        // that closed since (orphaned): only what it gained and the orphaned are looked
        // at. The incident's root list takes them (all of them if it just joined).
        let joined = before.is_none_or(|s| s.is_up());
        let roots = impact.roots(service);
        let orphaned: Vec<CiIdx> = if self.orphaned.is_empty() {
            Vec::new()
        } else if self.orphaned.len() < roots.len() {
            self.orphaned.iter().copied().filter(|&r| roots.contains(r)).collect()
        } else {
            roots.iter().filter(|r| self.orphaned.contains(r)).collect()
        };
        let touched = touch(kinds, id);
        let mut taken = Vec::new();
        let mut register = |root: CiIdx, strong: bool| {
            let registers = Registers { by_root: &mut self.by_root, weak: &mut self.weak, wide: &mut self.wide };
            match register_root(registers, &mut self.orphaned, impact, root, id, strong) {
                Registered::No => {}
                Registered::Yes => {
                    t.registered_roots.insert(root);
                    self.dirty.insert(id);
                }
                Registered::TakenFrom(owner) => {
                    t.registered_roots.insert(root);
                    self.dirty.insert(id);
                    taken.push((root, owner));
                }
            }
        };
        if joined || !t.synced {
            for root in roots.iter() {
                register(root, joined);
                touched.roots.push(root);
            }
        } else {
            for &root in change.gained {
                register(root, false);
                touched.roots.push(root);
            }
        }
        for root in orphaned {
            register(root, joined);
        }
        touched.services = true;
        // A root taken over is no longer its former owner's.
        for (root, owner) in taken {
            if let Some(former) = self.incidents.get_mut(&owner) {
                former.registered_roots.remove(&root);
            }
            self.dirty.insert(owner);
        }
    }

    /// The incident a service is impacted under, if any.
    /// Whether nothing the book keeps beside its incidents names this CI (what they name
    /// is [`IncidentBook::named`]).
    pub(super) fn is_quiet(&self, ci: CiIdx) -> bool {
        self.by_service.get(ci as usize).is_none_or(|&id| id == 0)
            && !self.by_root.contains_key(&ci)
            && !self.orphaned.contains(&ci)
            && !self.weak.contains(&ci)
            && !self.wide.contains_key(&ci)
            && !self.by_symptom.contains_key(&ci)
            && !self.members.contains_key(&ci)
            && !self.in_maintenance.contains(&ci)
            && !self.suppressed.contains(&ci)
    }

    /// Every CI the incidents in memory name: roots, symptoms, services and their
    /// customers, and those waiting for a refresh.
    pub(super) fn named(&self) -> FxHashSet<CiIdx> {
        let mut named = FxHashSet::default();
        for t in self.incidents.values() {
            named.extend(t.roots.iter().chain(&t.registered_roots).chain(&t.symptoms).chain(&t.stale).copied());
            named.extend(t.services.cis());
        }
        named
    }

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
    fn choose(&self, impact: &ImpactStage, service: CiIdx) -> Option<IncidentId> {
        if let Some(id) = self.service_owner(service) {
            let continuing = self
                .incidents
                .get(&id)
                .is_some_and(|t| t.incident.state.is_active() && t.services.get(service).is_some_and(|s| !s.is_up()));
            // It stays unless every root that explains it now belongs to other incidents
            // (its own incident's roots have all cleared): then it moves on to theirs.
            let explained = || match self.wide.get(&service) {
                Some(owners) => {
                    let owned: u32 = owners.iter().map(|&(_, count)| count).sum();
                    owners.iter().any(|&(owner, _)| owner == id) || (owned as usize) < impact.roots(service).len()
                }
                None => impact.roots(service).iter().any(|r| self.by_root.get(&r).is_none_or(|&owner| owner == id)),
            };
            if continuing && explained() {
                return Some(id);
            }
            // Moving on from its incident, it may go where its roots are, however owned.
            if continuing {
                return self.oldest_owner(impact, service);
            }
        }
        // Newly impacted: only roots registered by a service joining an incident draw it in.
        if !self.weak.is_empty() {
            let owner = |r: CiIdx| self.by_root.get(&r).copied().filter(|_| !self.weak.contains(&r));
            return impact.roots(service).iter().filter_map(owner).min();
        }
        self.oldest_owner(impact, service)
    }

    /// The oldest incident owning one of the service's roots.
    fn oldest_owner(&self, impact: &ImpactStage, service: CiIdx) -> Option<IncidentId> {
        match self.wide.get(&service) {
            Some(owners) => owners.iter().map(|&(id, _)| id).min(),
            None => impact.roots(service).iter().filter_map(|r| self.by_root.get(&r).copied()).min(),
        }
    }

    fn open(&mut self, now: EpochMillis) -> IncidentId {
        let id = IncidentId(self.next_id);
        self.next_id += 1;
        self.stats.opened += 1;
        let mut incident = Arc::new(Incident::new(id, now));
        push_timeline(&mut incident, &self.policy, now, TimelineKind::Opened, format_args!("incident opened"));
        let tracked = Tracked {
            incident,
            roots: Vec::new(),
            registered_roots: BTreeSet::new(),
            services: Impacted::new(),
            symptoms: BTreeSet::new(),
            restored_since: None,
            stale: BTreeSet::new(),
            titled: None,
            synced: true,
            merge_hints: [0; 2],
            rest: Default::default(),
            cleared: Default::default(),
            complete: true,
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
        let Touch { kind, services: services_moved, cis: mut alarm_cis, roots: mut candidates } = touched;
        alarm_cis.extend(std::mem::take(&mut t.stale));
        alarm_cis.sort_unstable();
        alarm_cis.dedup();
        // Whether anything a reader sees moved: tracked field by field, so that no refresh
        // clones the whole incident (timeline included) just to compare it afterwards.
        let mut moved = false;
        let mut roots_moved = false;

        // Roots accumulate over the incident's life, so a resolved incident still names
        // every root cause it had; a former root now explained by another failure moves
        // to the symptoms. The live roots (those of its impacted services) can only have
        // moved if a service did, and then by what the services gained, which on_changes
        // gathered: the roots already listed hold all the others. Until a refresh has
        // checked that (after a restore), the live roots are gathered in full.
        let full = services_moved && !t.synced;
        if full {
            candidates =
                t.services.iter().filter(|(_, s)| !s.is_up()).flat_map(|(s, _)| impact.roots(s).iter()).collect();
        }
        if services_moved {
            candidates.sort_unstable();
            candidates.dedup();
        } else {
            candidates.clear();
        }
        for &root in &candidates {
            let Err(at) = find_root(&t.roots, root) else { continue };
            push_timeline(
                &mut t.incident,
                policy,
                now,
                TimelineKind::RootCause,
                format_args!("root cause {}", topology.ci(root).name),
            );
            moved = true;
            roots_moved = true;
            let registers = Registers { by_root: &mut self.by_root, weak: &mut self.weak, wide: &mut self.wide };
            if register_root(registers, &mut self.orphaned, impact, root, id, false) == Registered::Yes {
                t.registered_roots.insert(root);
            }
            if !t.symptoms.remove(&root) {
                join(&mut self.members, root, id);
            }
            alarm_cis.push(root);
            t.roots.insert(at, root);
            if t.synced {
                name_inserted_root(t, at, policy.max_roots, topology);
            }
        }
        // A root that another failure now explains has changed (its alarms, or what its
        // dependencies make of it) since the incident last refreshed: it is among the CIs
        // to look at, where it was or as the incident's stale part.
        let explained_by_other = |r: CiIdx| !impact.state(r).alarms.is_empty() && !impact.is_root(r);
        let explained: Vec<CiIdx> = if full {
            t.roots.iter().copied().filter(|&r| explained_by_other(r)).collect()
        } else {
            alarm_cis.iter().copied().filter(|r| find_root(&t.roots, *r).is_ok() && explained_by_other(*r)).collect()
        };
        for former in explained {
            if let Ok(at) = find_root(&t.roots, former) {
                t.roots.remove(at);
                roots_moved = true;
                if t.synced {
                    unname_removed_root(t, at, policy.max_roots, topology);
                }
            }
            t.symptoms.insert(former);
            alarm_cis.push(former);
            if let Some(previous) = self.by_symptom.insert(former, id).filter(|&p| p != id) {
                self.dirty.insert(previous);
            }
        }
        // A CI on_changes attached as a symptom that is still one of the roots stays a root.
        for ci in &alarm_cis {
            if find_root(&t.roots, *ci).is_ok() && t.symptoms.remove(ci) {
                self.dirty.insert(id);
            }
        }

        if roots_moved {
            if t.synced {
                moved = true;
            } else {
                let root_causes: Vec<Arc<str>> =
                    t.roots.iter().take(policy.max_roots).map(|&r| topology.ci(r).id.clone()).collect();
                let omitted = (t.roots.len() - root_causes.len()) as u32;
                moved |= set!(t.incident, root_causes, root_causes);
                if t.incident.omitted.root_causes != omitted {
                    Arc::make_mut(&mut t.incident).omitted.root_causes = omitted;
                    moved = true;
                }
            }
        }
        if full {
            let named = t.incident.root_causes.len();
            t.synced = named == t.roots.len().min(policy.max_roots)
                && t.incident.omitted.root_causes as usize == t.roots.len() - named
                && t.incident.root_causes.iter().zip(&t.roots).all(|(id, &r)| *id == topology.ci(r).id);
        }
        alarm_cis.sort_unstable();
        alarm_cis.dedup();
        // Where each list's listed part ends when it is full: what the merges put past it
        // waits (or, cleared, goes).
        let cap = policy.max_alarms;
        let boundaries = [ROOT_LIST, SYMPTOM_LIST].map(|which| {
            let list = alarm_list(&t.incident, which);
            if list.len() >= cap { list.get(cap - 1).map(key_of) } else { None }
        });
        let mut attached = 0;
        for &ci in &alarm_cis {
            let (root, symptom) = (find_root(&t.roots, ci).is_ok(), t.symptoms.contains(&ci));
            for (which, listed) in [(ROOT_LIST, root), (SYMPTOM_LIST, symptom)] {
                let boundary = boundaries[which].as_ref();
                if let Some((changed, gained)) = t.merge_list(which, ci, listed, boundary, topology, impact, now) {
                    attached += if which == SYMPTOM_LIST { gained } else { 0 };
                    moved |= changed;
                }
            }
        }
        for which in [ROOT_LIST, SYMPTOM_LIST] {
            if t.unsettled(which, cap) {
                moved |= t.settle_list(which, cap);
            }
        }
        t.complete = true;
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
        if t.incident.topology_version != topology.version() {
            Arc::make_mut(&mut t.incident).topology_version = topology.version();
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
            let (best_tier, parties_down) = t.services.priority_inputs();
            let (level, urgency, priority) = policy.priority.assess(best_tier, parties_down, down > 0);
            let was = t.incident.priority;
            moved |= set!(t.incident, impact, level);
            moved |= set!(t.incident, urgency, urgency);
            moved |= set!(t.incident, priority, priority);
            // An escalation is not covered by the acknowledgement of the lesser incident:
            // it is open again, for someone to acknowledge it anew.
            if priority < was && t.incident.state == IncidentState::Acknowledged {
                let incident = Arc::make_mut(&mut t.incident);
                incident.state = IncidentState::Open;
                let by = incident.acknowledgement.take().map(|a| a.by).unwrap_or_default();
                push_timeline(
                    &mut t.incident,
                    policy,
                    now,
                    TimelineKind::Escalated,
                    format_args!("priority rose from {was} to {priority}: open again (it was acknowledged by {by})"),
                );
            }
        }

        if down + degraded > 0 {
            // The roots may have moved without the services.
            if t.titled != Some((down, degraded)) {
                moved |= set_title(&mut t.incident, topology, &t.roots, down, degraded);
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
    pub fn tick(&mut self, impact: &ImpactStage, now: EpochMillis, out: &mut Vec<IncidentChange>) {
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
        // Services still impacted by an incident that closes (an operator resolved it by
        // force): a new incident follows them.
        let mut still = Vec::new();
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
            for &root in &t.registered_roots {
                if self.by_root.get(&root) == Some(&id) {
                    self.by_root.remove(&root);
                    self.weak.remove(&root);
                    // Still failing: the next service to have it takes it.
                    if impact.is_root(root) {
                        self.orphaned.insert(root);
                    }
                }
            }
            // It owns no root any more.
            for owners in self.wide.values_mut() {
                owners.retain(|&(owner, _)| owner != id);
            }
            // It owns services among those it impacted, and symptoms among its symptoms
            // and former roots.
            for (service, _) in t.services.iter() {
                if self.service_owner(service) == Some(id) {
                    self.set_service_owner(service, None);
                    if !impact.state(service).effective.is_up() {
                        still.push(service);
                    }
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
        if !still.is_empty() {
            self.follow_again(impact, still, now, out);
        }
    }

    /// Follows services that no incident follows although they are impacted (their
    /// incident closed under them), as if they had just changed.
    fn follow_again(
        &mut self,
        impact: &ImpactStage,
        mut services: Vec<CiIdx>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        services.sort_unstable();
        services.dedup();
        let unfollowed = services
            .into_iter()
            .map(|service| (service, impact.state(service).effective))
            .filter(|&(service, was)| self.service_owner(service).is_none() && !was.is_up())
            .collect();
        self.follow_as_changed(impact, unfollowed, now, out);
    }

    /// Follows `services`, each with the state it is taken to have had, as if they had
    /// just changed; publishes what that does to their incidents.
    fn follow_as_changed(
        &mut self,
        impact: &ImpactStage,
        services: Vec<(CiIdx, State)>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        self.follow_as_changed_noting(impact, services, None, now, out);
    }

    /// [`IncidentBook::follow_as_changed`], with a timeline entry (`note`, of kind
    /// maintenance) on each incident that takes one of the services.
    fn follow_as_changed_noting(
        &mut self,
        impact: &ImpactStage,
        services: Vec<(CiIdx, State)>,
        note: Option<&str>,
        now: EpochMillis,
        out: &mut Vec<IncidentChange>,
    ) {
        let topology = impact.topology().clone();
        let mut kinds: BTreeMap<IncidentId, Touch> = BTreeMap::new();
        // Maintenance kept the symptoms under these services' roots out of any incident:
        // they join as the services do.
        let symptoms =
            if note.is_some() { symptoms_above(impact, services.iter().map(|&(s, _)| s)) } else { Vec::new() };
        for (service, was) in services {
            let change = Change { ci: service, was, gained: &[], lost: &[] };
            self.follow_service(&topology, impact, change, now, &mut kinds);
        }
        if !symptoms.is_empty() {
            let mut owners = std::mem::take(&mut self.owners_buffer);
            for ci in symptoms {
                self.follow_member(impact, ci, &mut owners, &mut kinds);
            }
            self.owners_buffer = owners;
        }
        if let Some(note) = note {
            for &id in kinds.keys() {
                if let Some(t) = self.incidents.get_mut(&id) {
                    push_timeline(
                        &mut t.incident,
                        &self.policy,
                        now,
                        TimelineKind::Maintenance,
                        format_args!("{note}"),
                    );
                    self.dirty.insert(id);
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

    /// After a restore: follows again, as if they had just changed, the services whose
    /// state recorded in their incident differs from what the restored alarms make of them
    /// now, and the impacted services no incident follows. Both happen only when the
    /// configuration or the topology changed between the run that wrote the state and this
    /// one (warnings made to degrade, a dependency added or removed): the incidents then
    /// say what is true under the new ones, not until each service happens to change.
    pub(super) fn reconcile(&mut self, impact: &ImpactStage, now: EpochMillis, out: &mut Vec<IncidentChange>) {
        let topology = impact.topology().clone();
        let mut services = Vec::new();
        for (ci, record) in topology.iter() {
            if !record.incidents {
                continue;
            }
            let state = impact.state(ci).effective;
            match self.service_owner(ci) {
                Some(id) => {
                    let recorded = self.incidents.get(&id).and_then(|t| t.services.get(ci));
                    if recorded.is_none_or(|recorded| recorded != state) {
                        services.push((ci, recorded.unwrap_or(State::Up)));
                    }
                }
                None if !state.is_up() => services.push((ci, State::Up)),
                None => {}
            }
        }
        if !services.is_empty() {
            self.follow_as_changed(impact, services, now, out);
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
            if t.roots.iter().any(|r| t.symptoms.contains(r)) {
                return Err(format!("{id}: a CI is both root and symptom"));
            }
            if !t.roots.is_sorted_by(|a, b| a < b) {
                return Err(format!("{id}: roots {:?} not sorted", t.roots));
            }
            if t.synced {
                let named: Vec<&str> =
                    t.roots.iter().take(self.policy.max_roots).map(|&r| &*topology.ci(r).id).collect();
                let listed: Vec<&str> = t.incident.root_causes.iter().map(|r| &**r).collect();
                if named != listed {
                    return Err(format!("{id}: root causes {listed:?}, expected {named:?}"));
                }
                if t.incident.omitted.root_causes as usize != t.roots.len() - named.len() {
                    return Err(format!(
                        "{id}: {} root causes omitted of {}",
                        t.incident.omitted.root_causes,
                        t.roots.len()
                    ));
                }
                // Every root of the services it follows is listed.
                for (service, state) in t.services.iter() {
                    if let Some(root) =
                        impact.roots(service).iter().find(|r| !state.is_up() && t.roots.binary_search(r).is_err())
                    {
                        return Err(format!("{id}: root {root} of service {service} not listed"));
                    }
                }
            }
            // A root another failure explains since has changed since: it waits in the
            // stale part.
            for &r in &t.roots {
                if !t.stale.contains(&r) && !impact.state(r).alarms.is_empty() && !impact.is_root(r) {
                    return Err(format!("{id}: root {r} explained by another failure, and not stale"));
                }
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
                list.iter().filter(|a| topology.slot(&a.resource).is_none_or(current)).cloned().collect()
            };
            let roots: BTreeSet<CiIdx> = t.roots.iter().copied().collect();
            let cap = self.policy.max_alarms;
            for (which, what, list, set, omitted) in [
                (ROOT_LIST, "root-cause", &t.incident.root_cause_alarms, &roots, t.incident.omitted.root_cause_alarms),
                (SYMPTOM_LIST, "symptom", &t.incident.symptom_alarms, &t.symptoms, t.incident.omitted.symptom_alarms),
            ] {
                let rest = &t.rest[which];
                let whole: Vec<AlarmRef> = list.iter().chain(rest.iter()).cloned().collect();
                let set: BTreeSet<CiIdx> = set.iter().copied().filter(|&ci| current(ci)).collect();
                let kept = settled(&whole);
                let expected = merge_alarms(&kept, &set, topology, impact, EpochMillis::MIN);
                if expected != kept {
                    return Err(format!("{id}: {what} alarms {kept:?}, expected {expected:?}"));
                }
                if t.cleared[which] != cleared_index(list) {
                    return Err(format!("{id}: {what} cleared index {:?}", t.cleared[which]));
                }
                if !t.complete {
                    continue;
                }
                if list.len() > cap || (!rest.is_empty() && list.len() < cap) {
                    return Err(format!("{id}: {what} list of {} entries, {} waiting", list.len(), rest.len()));
                }
                if rest.iter().any(|a| a.cleared_at.is_some()) {
                    return Err(format!("{id}: a cleared {what} alarm waits past the list"));
                }
                if omitted as usize != rest.len() {
                    return Err(format!("{id}: {omitted} {what} alarms omitted, {} waiting", rest.len()));
                }
                if !rest.is_empty() && t.cleared[which].len() >= (cap / 10).max(1) {
                    return Err(format!(
                        "{id}: {what} list keeps {} cleared entries while alarms wait",
                        t.cleared[which].len()
                    ));
                }
            }
        }
        for (&ci, owners) in &self.wide {
            let mut expected = Vec::new();
            for root in impact.roots(ci).iter() {
                if let Some(&id) = self.by_root.get(&root) {
                    count_owner(&mut expected, id, 1);
                }
            }
            if *owners != expected {
                return Err(format!("owners of the roots of {ci}: {owners:?}, expected {expected:?}"));
            }
        }
        for &root in &self.orphaned {
            if self.by_root.contains_key(&root) || !impact.is_root(root) {
                return Err(format!("root {root} orphaned, but owned or not failing"));
            }
        }
        if let Some(root) = self.weak.iter().find(|r| !self.by_root.contains_key(r)) {
            return Err(format!("root {root} weakly owned by no incident"));
        }
        for (&root, id) in &self.by_root {
            if !self.incidents.get(id).is_some_and(|t| t.registered_roots.contains(&root)) {
                return Err(format!("root {root} owned by {id}, which does not have it registered"));
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

    /// An operator resolves an incident. One whose services are not all restored is
    /// refused, naming them, unless `force`: then it resolves, and the services still
    /// impacted when it closes are followed by a new incident.
    pub fn resolve(
        &mut self,
        id: IncidentId,
        by: &str,
        reason: &str,
        force: bool,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        let t = self.incidents.get_mut(&id).ok_or_else(|| CoreError::NotFound(id.to_string()))?;
        if !t.incident.state.is_active() {
            return Err(CoreError::FailedPrecondition(format!(
                "incident {id} is already {}",
                t.incident.state.as_str()
            )));
        }
        let impacted: Vec<_> = t.incident.services.iter().filter(|s| !s.impact.is_up()).collect();
        if !impacted.is_empty() && !force {
            const NAMED: usize = 10;
            let mut named: Vec<String> =
                impacted.iter().take(NAMED).map(|s| format!("{} ({})", s.id, s.impact.as_str())).collect();
            if impacted.len() > NAMED {
                named.push(format!("and {} more", impacted.len() - NAMED));
            }
            return Err(CoreError::FailedPrecondition(format!(
                "incident {id} still impacts {}: resolve it once they are restored, or with force (they are then \
                 followed by a new incident when this one closes)",
                named.join(", ")
            )));
        }
        let still = impacted.len();
        Arc::make_mut(&mut t.incident).state = IncidentState::Resolved;
        Arc::make_mut(&mut t.incident).resolved_at = Some(now);
        t.restored_since = None;
        let close_at = now + self.policy.reopen_window_ms;
        self.timers.push(Reverse((close_at, id)));
        self.dirty.insert(id);
        let colon = if reason.is_empty() { "" } else { ": " };
        let policy = &self.policy;
        let forced = if still > 0 {
            format!(" (forced: {still} service(s) still impacted, followed by a new incident when this one closes)")
        } else {
            String::new()
        };
        push_timeline(
            &mut t.incident,
            policy,
            now,
            TimelineKind::Resolved,
            format_args!("resolved by {by}{colon}{reason}{forced}"),
        );
        self.stats.resolved += 1;
        Ok(publish(&mut t.incident, ChangeKind::Resolved, now))
    }

    /// An operator adds a note; `request_id` (may be empty) is kept with it.
    pub fn add_note(
        &mut self,
        id: IncidentId,
        author: &str,
        text: &str,
        request_id: &str,
        now: EpochMillis,
    ) -> Result<IncidentChange, CoreError> {
        let t = self.incidents.get_mut(&id).ok_or_else(|| CoreError::NotFound(id.to_string()))?;
        if t.incident.notes.len() >= self.policy.max_notes {
            return Err(CoreError::FailedPrecondition(format!(
                "incident {id} has {} notes, the most correlation.max_notes allows",
                t.incident.notes.len()
            )));
        }
        let held: usize = t.incident.notes.iter().map(|n| n.text.len() + n.author.len()).sum();
        if held + text.len() + author.len() > MAX_NOTES_BYTES {
            return Err(CoreError::FailedPrecondition(format!(
                "incident {id} holds {held} bytes of notes; this one would pass the {MAX_NOTES_BYTES} bytes an \
                 incident holds"
            )));
        }
        Arc::make_mut(&mut t.incident).notes.push(Note {
            author: author.to_owned(),
            text: text.to_owned(),
            time: now,
            request_id: request_id.to_owned(),
        });
        self.dirty.insert(id);
        push_timeline(&mut t.incident, &self.policy, now, TimelineKind::Note, format_args!("note by {author}"));
        Ok(publish(&mut t.incident, ChangeKind::NoteAdded, now))
    }
}

impl IncidentBook {
    /// Adds to every live incident naming one of `cis` (as a root or a symptom) a timeline
    /// entry of `kind` listing its alarms among `cis` (each with a label) and `why`.
    pub(super) fn annotate(
        &mut self,
        cis: &[(CiIdx, String)],
        now: EpochMillis,
        kind: TimelineKind,
        why: &str,
        out: &mut Vec<IncidentChange>,
    ) {
        let mut named: BTreeMap<IncidentId, Vec<&str>> = BTreeMap::new();
        for (ci, label) in cis {
            for &id in self.members.get(ci).into_iter().flatten() {
                named.entry(id).or_default().push(label);
            }
        }
        for (id, labels) in named {
            let Some(t) = self.incidents.get_mut(&id) else { continue };
            if t.incident.state == IncidentState::Closed {
                continue;
            }
            const LISTED: usize = 10;
            let more = labels.len().saturating_sub(LISTED);
            let listed = labels[..labels.len().min(LISTED)].join(", ");
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            push_timeline(&mut t.incident, &self.policy, now, kind, format_args!("{listed}{more} {why}"));
            self.dirty.insert(id);
            out.push(publish(&mut t.incident, ChangeKind::Updated, now));
        }
    }
}

/// The CIs with alarms of their own that the roots of `services` explain (their symptoms):
/// found going up from each root, in slot order.
fn symptoms_above(impact: &ImpactStage, services: impl Iterator<Item = CiIdx>) -> Vec<CiIdx> {
    let topology = impact.topology();
    let mut seen = FxHashSet::default();
    let mut stack: Vec<CiIdx> = Vec::new();
    for service in services {
        stack.extend(impact.roots(service).iter().filter(|&root| seen.insert(root)));
    }
    let mut symptoms = Vec::new();
    while let Some(ci) = stack.pop() {
        let state = impact.state(ci);
        if !state.alarms.is_empty() && !impact.is_root(ci) {
            symptoms.push(ci);
        }
        stack.extend(topology.dependents(ci).iter().copied().filter(|&d| seen.insert(d)));
    }
    symptoms.sort_unstable();
    symptoms
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

/// Where `root` is in an incident's sorted roots (`binary_search`); the last place is
/// tried first, where a root new to the incident usually goes.
fn find_root(roots: &[CiIdx], root: CiIdx) -> Result<usize, usize> {
    match roots.last() {
        None => Err(0),
        Some(&last) if last < root => Err(roots.len()),
        Some(&last) if last == root => Ok(roots.len() - 1),
        Some(_) => roots.binary_search(&root),
    }
}

/// The indexes a root's registration moves.
struct Registers<'a> {
    by_root: &'a mut FxHashMap<CiIdx, IncidentId>,
    weak: &'a mut FxHashSet<CiIdx>,
    wide: &'a mut FxHashMap<CiIdx, Vec<(IncidentId, u32)>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Registered {
    No,
    /// Registered to the incident, new or from weak to strong.
    Yes,
    /// Taken over from the incident that owned it weakly.
    TakenFrom(IncidentId),
}

/// Registers `root` as owned by `id` (`strong`: by a service joining it) where no
/// incident owns it, or only weakly and `strong`. The owner counts of the CIs with many
/// roots that have it follow.
fn register_root(
    registers: Registers<'_>,
    orphaned: &mut FxHashSet<CiIdx>,
    impact: &ImpactStage,
    root: CiIdx,
    id: IncidentId,
    strong: bool,
) -> Registered {
    let Registers { by_root, weak, wide } = registers;
    let previous = match by_root.entry(root) {
        std::collections::hash_map::Entry::Vacant(vacant) => {
            vacant.insert(id);
            if !strong {
                weak.insert(root);
            }
            None
        }
        std::collections::hash_map::Entry::Occupied(mut occupied) => {
            if !strong || weak.is_empty() || !weak.remove(&root) {
                return Registered::No;
            }
            let owner = occupied.insert(id);
            if owner == id {
                return Registered::Yes;
            }
            Some(owner)
        }
    };
    if !orphaned.is_empty() {
        orphaned.remove(&root);
    }
    for (&ci, owners) in wide.iter_mut() {
        if impact.roots(ci).contains(root) {
            if let Some(owner) = previous {
                count_owner(owners, owner, -1);
            }
            count_owner(owners, id, 1);
        }
    }
    previous.map_or(Registered::Yes, Registered::TakenFrom)
}

/// Moves an incident's count among a CI's root owners by `by`; an incident whose count
/// reaches zero leaves the list.
fn count_owner(owners: &mut Vec<(IncidentId, u32)>, id: IncidentId, by: i32) {
    match owners.iter().position(|&(owner, _)| owner == id) {
        Some(at) => {
            let count = owners[at].1 as i64 + i64::from(by);
            debug_assert!(count >= 0, "an incident owned fewer roots than it gave up");
            if count <= 0 {
                owners.remove(at);
            } else {
                owners[at].1 = count as u32;
            }
        }
        None => {
            debug_assert!(by > 0, "an incident gave up a root it did not own");
            if by > 0 {
                owners.push((id, by as u32));
                owners.sort_unstable();
            }
        }
    }
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
#[allow(clippy::too_many_arguments)]
fn merge_ci_alarms(
    list: &[AlarmRef],
    hint: &mut usize,
    ci: CiIdx,
    listed: bool,
    topology: &Topology,
    impact: &ImpactStage,
    now: EpochMillis,
) -> Option<(std::ops::Range<usize>, Vec<AlarmRef>, usize)> {
    let resource: &str = &topology.ci(ci).id;
    // Where the CI's alarms are, or go. Storms move neighbouring resources one after the
    // other (ports failing or clearing in turn): the place after the last merge, and the
    // end of the list, are tried before a search, each string compared a cache miss.
    let at = |i: usize| &*list[i].resource;
    let start = if *hint <= list.len()
        && (*hint == list.len() || at(*hint) >= resource)
        && (*hint == 0 || at(*hint - 1) < resource)
    {
        *hint
    } else if list.last().is_none_or(|a| &*a.resource < resource) {
        list.len()
    } else {
        list.partition_point(|a| &*a.resource < resource)
    };
    let end = start + list[start..].iter().take_while(|a| &*a.resource == resource).count();
    *hint = end;
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
    *hint = start + merged.len();
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
        if topology.slot(&old.resource).is_some_and(|ci| cis.contains(&ci)) {
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

fn title(topology: &Topology, roots: &[CiIdx], down: usize, degraded: usize) -> String {
    let mut title = String::new();
    write_title(&mut title, topology, roots, down, degraded);
    title
}

/// Sets the incident's title; true when that changed it. Written into a reused buffer
/// first: an incident whose roots grow by one at every alarm has its title rewritten at
/// every alarm.
fn set_title(incident: &mut Arc<Incident>, topology: &Topology, roots: &[CiIdx], down: usize, degraded: usize) -> bool {
    thread_local! {
        static TITLE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    TITLE.with_borrow_mut(|buffer| {
        buffer.clear();
        write_title(buffer, topology, roots, down, degraded);
        if incident.title == *buffer {
            return false;
        }
        let writable = Arc::make_mut(incident);
        writable.title.clear();
        writable.title.push_str(buffer);
        true
    })
}

fn write_title(out: &mut String, topology: &Topology, roots: &[CiIdx], down: usize, degraded: usize) {
    use std::fmt::Write;
    let what = if down > 0 { "Outage" } else { "Degradation" };
    let services = down + degraded;
    let plural = if services == 1 { "" } else { "s" };
    let _ = write!(out, "{what} of {services} service{plural}: root cause ");
    for (i, &root) in roots.iter().take(2).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&topology.ci(root).name);
    }
    if roots.len() > 2 {
        let _ = write!(out, " and {} more", roots.len() - 2);
    }
}

/// Entry counts of the book's indexes and of what its incidents keep, for [`super::sizes`].
impl IncidentBook {
    pub(super) fn timers_len(&self) -> usize {
        self.timers.len()
    }

    pub(super) fn by_root_len(&self) -> usize {
        self.by_root.len()
    }

    pub(super) fn orphaned_len(&self) -> usize {
        self.orphaned.len()
    }

    pub(super) fn weak_len(&self) -> usize {
        self.weak.len()
    }

    pub(super) fn wide_len(&self) -> usize {
        self.wide.len()
    }

    pub(super) fn by_symptom_len(&self) -> usize {
        self.by_symptom.len()
    }

    pub(super) fn members_len(&self) -> usize {
        self.members.len()
    }

    /// Services impacted under an incident: the non-empty entries of the per-CI table.
    pub(super) fn services_followed_len(&self) -> usize {
        self.by_service.iter().filter(|&&id| id != 0).count()
    }

    pub(super) fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// What the incidents held keep beside what they publish, summed over them.
    pub(super) fn tracked_totals(&self) -> super::sizes::TrackedTotals {
        let mut totals = super::sizes::TrackedTotals::default();
        for t in self.incidents.values() {
            totals.roots += t.roots.len();
            totals.registered_roots += t.registered_roots.len();
            totals.symptoms += t.symptoms.len();
            totals.stale += t.stale.len();
            totals.waiting += t.rest.iter().map(Waiting::len).sum::<usize>();
        }
        totals
    }
}
