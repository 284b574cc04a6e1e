//! The alarm stage: where a clear is matched to its raise. Keeps every active alarm under
//! its RFC 8632 identity `(resource, alarm_type, qualifier)`, folds repeats into a tally,
//! and tells the impact stage whenever a resource's set of active alarms changes.
//!
//! Feeds repeat, reorder and resend. A notification older than the last one applied to its
//! alarm never undoes it: within one notification id (VES `eventId`, 3GPP `alarmId`) the
//! sequence orders them (VES `sequence`, 3GPP `notificationId`: the same again is a
//! retransmission, a lower one is stale); otherwise the event time does (older than the
//! alarm's last-seen time: stale). A clear is remembered for `clear_memory_ms` of stream
//! time, whether it found its raise or came before it: a raise it supersedes (the same id
//! with a sequence not above the clear's, or an event time before it) is stale too, so
//! that a late or resent raise does not stay active forever.
//!
//! Each active alarm knows its source system, for an alarm-list resynchronisation of that
//! source and for the optional ageing of alarms it stopped repeating ([`sources`]).

mod sources;

pub use sources::MaxAges;
use sources::{Ageing, Sources};

use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, AlarmRef, Severity};
use crate::model::state::{Effect, State};
use crate::model::topology::{Applied, CiIdx, Topology};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use thin_vec::{ThinVec, thin_vec};

/// Maps an alarm to its effect on the resource: X.733 severity by default, with
/// per-alarm-type overrides from configuration; and how long a clear is remembered.
#[derive(Clone, Debug)]
pub struct AlarmPolicy {
    overrides: FxHashMap<String, Effect>,
    /// Stream time a clear is remembered for, to recognise the raises it supersedes.
    pub clear_memory_ms: EpochMillis,
    /// Resources the topology does not know that hold active alarms at most (with a
    /// topology); a raise on one more is dropped.
    pub max_unmapped_resources: usize,
    /// How long an active alarm may go unrepeated, by source, before it is cleared.
    pub max_age: MaxAges,
}

/// Clears remembered at most at once; the oldest go first past it (a storm of clears for
/// alarms never raised must not grow memory without bound).
const REMEMBERED_CLEARS: usize = 1_000_000;

impl Default for AlarmPolicy {
    fn default() -> Self {
        AlarmPolicy {
            overrides: FxHashMap::default(),
            clear_memory_ms: 300_000,
            max_age: MaxAges::default(),
            max_unmapped_resources: 100_000,
        }
    }
}

impl AlarmPolicy {
    pub fn new(overrides: impl IntoIterator<Item = (String, Effect)>) -> AlarmPolicy {
        AlarmPolicy { overrides: overrides.into_iter().collect(), ..AlarmPolicy::default() }
    }

    pub fn effect(&self, alarm_type: &str, severity: Severity) -> Effect {
        match self.overrides.get(alarm_type) {
            Some(&effect) => effect,
            None => Effect::of_severity(severity),
        }
    }
}

/// What one notification did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlarmOutcome {
    Raised,
    /// A repeat of an active alarm at the same severity: tally and last-seen bumped.
    Repeated,
    SeverityChanged,
    /// A notification whose id and sequence are those of the last one applied to the
    /// alarm: a retransmission, ignored so that nothing is counted twice.
    DuplicateNotification,
    /// Older than the last notification applied to its alarm, or than its clear: ignored.
    Stale,
    Cleared,
    /// A clear that found no active alarm (already cleared, or raised before we started).
    ClearWithoutRaise,
    /// A raise past what the engine keeps: a resource's [`MAX_ALARMS_PER_RESOURCE`] active
    /// alarms, or the most resources the topology does not know that may hold active alarms
    /// ([`AlarmPolicy::max_unmapped_resources`]). Not applied.
    Dropped,
}

/// Active alarms a resource holds at most (distinct types and qualifiers).
pub const MAX_ALARMS_PER_RESOURCE: usize = 1_000;

/// A resource's active alarms changed: the message from the alarm stage to the impact
/// stage. Self-contained, so the two stages can later run on different instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceUpdate {
    pub resource: Arc<str>,
    /// The resource's own state from its active alarms alone.
    pub own_state: State,
    /// Its active alarms, in identity order; kept as they come by the impact stage (one
    /// word per CI there).
    pub alarms: ThinVec<AlarmRef>,
    /// Where the resource sits in the topology, when the sender knows it (an alarm stage
    /// given the topology looks each resource up once, as its first alarm is raised); the
    /// impact stage looks it up otherwise.
    pub ci: Option<CiIdx>,
}

/// A resource whose active alarms changed, for the changelog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedResource {
    pub resource: Arc<str>,
    /// Its active alarms, empty once all have cleared.
    pub alarms: Vec<AlarmRef>,
    /// Parallel to `alarms`: the fingerprint of the last notification applied to each.
    pub notifications: Vec<u64>,
    /// Parallel to `alarms`: that notification's sequence.
    pub sequences: Vec<u64>,
    /// Parallel to `alarms`: the source system that reported each.
    pub sources: Vec<Arc<str>>,
    /// The clears remembered for it, by alarm type and qualifier.
    pub clears: Vec<RememberedClear>,
}

/// What the changelog keeps of the last notification applied to an active alarm.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastHeard {
    pub notification: u64,
    pub sequence: u64,
    pub source: Arc<str>,
}

#[derive(Debug)]
struct ActiveAlarm {
    alarm: AlarmRef,
    effect: Effect,
    /// Fingerprint of the id of the last notification applied to this alarm: the same id
    /// again is a retransmission (an element manager resending after a timeout), not a
    /// repeat. A fingerprint, so the per-repeat path allocates nothing.
    notification: u64,
    /// The sequence of that notification, within its id.
    sequence: u64,
    /// [`identity_key`] of the alarm's type and qualifier: a resource's alarms are told
    /// apart by comparing these first, not their strings.
    identity: u64,
    /// Stream time the last notification was applied at (what ageing measures).
    heard: EpochMillis,
    /// The source system that reported it last ([`Sources`]).
    source: u32,
}

/// A 64-bit hash of an alarm's type and qualifier (the resource is the map's key). Kept in
/// memory only, never written.
fn identity_key(alarm_type: &str, qualifier: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(alarm_type.as_bytes());
    hasher.write_u8(0xff);
    hasher.write(qualifier.as_bytes());
    hasher.finish()
}

/// A stable 64-bit fingerprint of a notification id (FNV-1a; the same on every machine and
/// version, since it is written to the changelog); 0 for no id.
pub fn notification_key(id: &str) -> u64 {
    if id.is_empty() {
        return 0;
    }
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A clear, remembered: what a later raise of the same alarm (on the resource it is kept
/// under) must be newer than.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RememberedClear {
    pub alarm_type: Arc<str>,
    pub qualifier: Arc<str>,
    /// The fingerprint of the clear's notification id, and its sequence.
    pub notification: u64,
    pub sequence: u64,
    pub event_time: EpochMillis,
    /// Stream time it is forgotten at.
    pub until: EpochMillis,
}

impl RememberedClear {
    fn names(&self, alarm_type: &str, qualifier: &str) -> bool {
        &*self.alarm_type == alarm_type && &*self.qualifier == qualifier
    }

    fn supersedes(&self, alarm: &Alarm) -> bool {
        let notification = notification_key(&alarm.notification_id);
        if notification != 0 && notification == self.notification {
            alarm.sequence <= self.sequence
        } else {
            // At the same time, arrival order decides: the raise after the clear applies.
            alarm.event_time < self.event_time
        }
    }
}

/// The clears remembered for one resource: one, nearly always, held inline (a storm's
/// clears cost no allocation each).
type Clears = smallvec::SmallVec<[RememberedClear; 1]>;

/// An alarm's full identity, the key of remembered clears.
type Identity = (Arc<str>, Arc<str>, Arc<str>);

/// An [`Identity`] borrowed from a notification, to look one up without allocating. Hashes
/// as the tuple does (each string in turn).
#[derive(Hash, PartialEq, Eq)]
struct IdentityRef<'a>(&'a str, &'a str, &'a str);

impl hashbrown::Equivalent<Identity> for IdentityRef<'_> {
    fn equivalent(&self, key: &Identity) -> bool {
        self.0 == &*key.0 && self.1 == &*key.1 && self.2 == &*key.2
    }
}

/// One resource's active alarms, in identity order.
#[derive(Debug, Default)]
struct Resource {
    alarms: Vec<ActiveAlarm>,
    /// Listed in `AlarmStage::dirty` since the last take: a flag here spares every repeat
    /// a second look-up of the resource.
    dirty: bool,
    /// Its place in the topology, if the stage has one and the resource is in it.
    ci: Option<CiIdx>,
}

#[derive(Debug)]
pub struct AlarmStage {
    /// Active alarms per resource. Most resources carry one or two alarms, so a short
    /// vector scanned linearly beats a map keyed by the full identity (no key allocation
    /// when a repeat is looked up).
    resources: hashbrown::HashMap<Arc<str>, Resource, rustc_hash::FxBuildHasher>,
    policy: AlarmPolicy,
    active: usize,
    /// Resources whose active alarms (tallies included) changed since the last
    /// [`AlarmStage::take_dirty`]: what the changelog must write at the next commit. A
    /// resource whose last alarm cleared and that was raised again may be listed twice.
    dirty: Vec<Arc<str>>,
    /// Resources are looked up here once, not by the impact stage at every update.
    topology: Option<Arc<Topology>>,
    /// Recent clears by resource (see the module doc), written to the changelog with the
    /// resource's alarms so that a restart remembers them too.
    cleared: hashbrown::HashMap<Arc<str>, Clears, rustc_hash::FxBuildHasher>,
    /// How many clears `cleared` holds.
    remembered: usize,
    /// Resources the topology does not know that hold active alarms (0 without a topology).
    unmapped: usize,
    /// The same clears in the order they were remembered (stream time only grows), so that
    /// forgetting them walks the front; an entry replaced since is skipped then.
    cleared_order: VecDeque<(EpochMillis, Identity)>,
    sources: Sources,
    ageing: Ageing,
}

impl Default for AlarmStage {
    fn default() -> Self {
        AlarmStage::new(AlarmPolicy::default())
    }
}

impl AlarmStage {
    pub fn new(policy: AlarmPolicy) -> AlarmStage {
        AlarmStage {
            resources: Default::default(),
            policy,
            active: 0,
            dirty: Vec::new(),
            topology: None,
            cleared: Default::default(),
            remembered: 0,
            unmapped: 0,
            cleared_order: VecDeque::new(),
            sources: Sources::new(),
            ageing: Ageing::default(),
        }
    }

    /// An alarm stage whose updates say where each resource sits in `topology`.
    pub fn with_topology(policy: AlarmPolicy, topology: Arc<Topology>) -> AlarmStage {
        AlarmStage { topology: Some(topology), ..AlarmStage::new(policy) }
    }

    /// Lets go of the stage's topology, for its owner to change it.
    pub(super) fn release_topology(&mut self) {
        self.topology = None;
    }

    /// Follows a batch `topology` has just applied (and takes it as the stage's): the
    /// resources of deleted CIs are unknown from now on, those of CIs added (or back) are
    /// known. Returns the latter's updates, for the impact stage to take their alarms.
    pub(super) fn relocate(&mut self, topology: Arc<Topology>, applied: &Applied) -> Vec<ResourceUpdate> {
        for &idx in &applied.deleted {
            if let Some(entry) = self.resources.get_mut(&*topology.ci(idx).id)
                && entry.ci.take().is_some()
            {
                self.unmapped += 1;
            }
        }
        let mut updates = Vec::new();
        for &idx in &applied.added {
            let Some((key, entry)) = self.resources.get_key_value_mut(&*topology.ci(idx).id) else { continue };
            if entry.ci.replace(idx).is_none() {
                self.unmapped -= 1;
            }
            let update = ResourceUpdate {
                resource: key.clone(),
                own_state: own_state(&entry.alarms),
                alarms: entry.alarms.iter().map(|a| a.alarm.clone()).collect(),
                ci: Some(idx),
            };
            // The impact stage hears of its alarms as they are now (repeats included):
            // what the changelog keeps of what it heard must be written again.
            self.mark_dirty(&update.resource);
            updates.push(update);
        }
        self.topology = Some(topology);
        updates
    }

    fn locate(&self, resource: &str) -> Option<CiIdx> {
        self.topology.as_ref().and_then(|topology| topology.lookup(resource))
    }

    /// Whether a resource found at `ci` is one the topology does not know.
    fn unknown(&self, ci: Option<CiIdx>) -> bool {
        ci.is_none() && self.topology.is_some()
    }

    /// Rebuilds the active alarms from a changelog: one list per resource, as
    /// [`AlarmStage::take_dirty`] reported them. Returns the resource updates that give the
    /// impact stage the same view.
    /// `now`: the restored stream time, from which ageing counts again. `clears`: the
    /// clears remembered per resource; those due to be forgotten by `now` are not taken.
    pub fn restore(
        &mut self,
        alarms: impl IntoIterator<Item = (AlarmRef, LastHeard)>,
        clears: impl IntoIterator<Item = (Arc<str>, RememberedClear)>,
        now: EpochMillis,
    ) -> Vec<ResourceUpdate> {
        let mut order = Vec::new();
        for (resource, clear) in clears {
            if clear.until <= now || self.policy.clear_memory_ms <= 0 {
                continue;
            }
            let held = self.cleared.entry(resource.clone()).or_default();
            if held.len() >= MAX_ALARMS_PER_RESOURCE
                || held.iter().any(|c| c.names(&clear.alarm_type, &clear.qualifier))
            {
                continue;
            }
            order.push((clear.until, (resource, clear.alarm_type.clone(), clear.qualifier.clone())));
            held.push(clear);
            self.remembered += 1;
        }
        // Forgotten in the order they were remembered: by time, then by name.
        order.sort_unstable();
        self.cleared_order = order.into();
        while self.cleared_order.len() > REMEMBERED_CLEARS {
            self.forget_front();
        }
        for (alarm, LastHeard { notification, sequence, source }) in alarms {
            let effect = self.policy.effect(&alarm.alarm_type, alarm.severity);
            let ci = self.locate(&alarm.resource);
            let source = self.sources.intern(&source, &self.policy.max_age);
            let identity = identity_key(&alarm.alarm_type, &alarm.qualifier);
            let resource =
                self.resources.entry(alarm.resource.clone()).or_insert_with(|| Resource { ci, ..Resource::default() });
            let active = &mut resource.alarms;
            let entry = ActiveAlarm { alarm, effect, notification, sequence, identity, heard: now, source };
            match active.binary_search_by(|a| a.alarm.identity().cmp(&entry.alarm.identity())) {
                Ok(at) => active[at] = entry,
                Err(at) => active.insert(at, entry),
            }
        }
        self.active = self.resources.values().map(|r| r.alarms.len()).sum();
        self.unmapped = self.resources.values().filter(|r| self.unknown(r.ci)).count();
        // Ageing counts from the restore, for every alarm at once.
        self.rebuild_ageing();
        let mut resources: Vec<&Arc<str>> = self.resources.keys().collect();
        resources.sort_unstable();
        resources
            .into_iter()
            .map(|resource| {
                let entry = &self.resources[resource];
                ResourceUpdate {
                    resource: resource.clone(),
                    own_state: own_state(&entry.alarms),
                    alarms: entry.alarms.iter().map(|a| a.alarm.clone()).collect(),
                    ci: entry.ci,
                }
            })
            .collect()
    }

    /// The resources changed since the last call, sorted.
    pub fn take_dirty(&mut self) -> Vec<ChangedResource> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty
            .into_iter()
            .map(|resource| {
                let active = match self.resources.get_mut(&resource) {
                    Some(entry) => {
                        entry.dirty = false;
                        entry.alarms.as_slice()
                    }
                    None => &[],
                };
                let alarms = active.iter().map(|a| a.alarm.clone()).collect();
                let notifications = active.iter().map(|a| a.notification).collect();
                let sequences = active.iter().map(|a| a.sequence).collect();
                let sources = active.iter().map(|a| self.sources.name(a.source).clone()).collect();
                let mut clears = self.clears_of(&resource).to_vec();
                clears.sort_unstable_by(|a, b| (&a.alarm_type, &a.qualifier).cmp(&(&b.alarm_type, &b.qualifier)));
                ChangedResource { resource, alarms, notifications, sequences, sources, clears }
            })
            .collect()
    }

    /// Number of active alarms over all resources.
    pub fn active_count(&self) -> usize {
        self.active
    }

    /// Clears remembered now (bounded by stream time and by count).
    pub fn remembered_clears(&self) -> usize {
        self.remembered
    }

    /// The clears remembered for `resource`.
    fn clears_of(&self, resource: &str) -> &[RememberedClear] {
        self.cleared.get(resource).map_or(&[], |clears| clears.as_slice())
    }

    /// Lists `resource` among those the changelog writes next, if it is not yet.
    fn mark_dirty(&mut self, resource: &Arc<str>) {
        match self.resources.get_mut(&**resource) {
            Some(entry) if entry.dirty => {}
            Some(entry) => {
                entry.dirty = true;
                self.dirty.push(resource.clone());
            }
            None => self.dirty.push(resource.clone()),
        }
    }

    /// Remembers a clear of `identity` until `now` plus the policy's memory.
    fn remember(&mut self, identity: Identity, alarm: &Alarm, event_time: EpochMillis, now: EpochMillis) {
        if self.policy.clear_memory_ms <= 0 {
            return;
        }
        let until = now.saturating_add(self.policy.clear_memory_ms);
        let (resource, alarm_type, qualifier) = identity;
        let remembered = RememberedClear {
            alarm_type: alarm_type.clone(),
            qualifier: qualifier.clone(),
            notification: notification_key(&alarm.notification_id),
            sequence: alarm.sequence,
            event_time,
            until,
        };
        self.mark_dirty(&resource);
        let clears = self.cleared.entry(resource.clone()).or_default();
        let held = clears.iter().position(|c| c.names(&alarm_type, &qualifier));
        match held {
            Some(at) => clears[at] = remembered,
            None if clears.len() >= MAX_ALARMS_PER_RESOURCE => {
                // A resource remembers as many clears as it holds alarms: the one it
                // remembered first makes room (its entry in the queue is skipped later).
                let oldest = (0..clears.len()).min_by(|&a, &b| {
                    let (a, b) = (&clears[a], &clears[b]);
                    (a.until, &a.alarm_type, &a.qualifier).cmp(&(b.until, &b.alarm_type, &b.qualifier))
                });
                if let Some(oldest) = oldest {
                    clears[oldest] = remembered;
                }
            }
            None => {
                clears.push(remembered);
                self.remembered += 1;
            }
        }
        self.cleared_order.push_back((until, (resource, alarm_type, qualifier)));
        while self.cleared_order.len() > REMEMBERED_CLEARS {
            self.forget_front();
        }
    }

    fn forget_front(&mut self) {
        let Some((until, (resource, alarm_type, qualifier))) = self.cleared_order.pop_front() else { return };
        let Some(clears) = self.cleared.get_mut(&*resource) else { return };
        // An entry replaced since (remembered anew) is forgotten by its own.
        let Some(at) = clears.iter().position(|c| c.names(&alarm_type, &qualifier) && c.until == until) else {
            return;
        };
        clears.swap_remove(at);
        self.remembered -= 1;
        if clears.is_empty() {
            self.cleared.remove(&*resource);
        }
        self.mark_dirty(&resource);
    }

    /// Forgets the clears remembered until `now` or before.
    pub fn forget_expired(&mut self, now: EpochMillis) {
        while self.cleared_order.front().is_some_and(|(until, _)| *until <= now) {
            self.forget_front();
        }
    }

    /// Applies one notification at stream time `now`; returns what it did and, when the
    /// resource's active alarms changed, the update for the impact stage.
    pub fn apply(&mut self, alarm: &Alarm, now: EpochMillis) -> (AlarmOutcome, Option<ResourceUpdate>) {
        self.forget_expired(now);
        let source = self.sources.intern(&alarm.source_system, &self.policy.max_age);
        let Some((key, entry)) = self.resources.get_key_value_mut(alarm.resource.as_str()) else {
            if alarm.cleared {
                let identity = (
                    Arc::from(alarm.resource.as_str()),
                    Arc::from(alarm.alarm_type.as_str()),
                    Arc::from(alarm.qualifier.as_str()),
                );
                self.remember(identity, alarm, alarm.event_time, now);
                return (AlarmOutcome::ClearWithoutRaise, None);
            }
            if superseded(&self.cleared, alarm) {
                return (AlarmOutcome::Stale, None);
            }
            let ci = self.locate(&alarm.resource);
            if self.unknown(ci) {
                if self.unmapped >= self.policy.max_unmapped_resources {
                    return (AlarmOutcome::Dropped, None);
                }
                self.unmapped += 1;
            }
            let resource: Arc<str> = Arc::from(alarm.resource.as_str());
            let active = raised(&self.policy, resource.clone(), alarm, source, now);
            let identity = active.identity;
            self.dirty.push(resource.clone());
            let update = ResourceUpdate {
                resource: resource.clone(),
                own_state: own_state(std::slice::from_ref(&active)),
                alarms: thin_vec![active.alarm.clone()],
                ci,
            };
            self.resources.insert(resource.clone(), Resource { alarms: vec![active], dirty: true, ci });
            self.active += 1;
            // Under ageing once it is in place, so that a rebuild of the queue finds it.
            self.age_from(&resource, identity, source, now);
            return (AlarmOutcome::Raised, Some(update));
        };
        let identity = identity_key(&alarm.alarm_type, &alarm.qualifier);
        let position = entry.alarms.iter().position(|a| a.identity == identity && same_identity(&a.alarm, alarm));
        if let Some(i) = position
            && let Some(outcome) = ordered(&entry.alarms[i], alarm)
        {
            return (outcome, None);
        }
        let mut cleared = None;
        let mut aging = None;
        let outcome = match (alarm.cleared, position) {
            (true, None) => {
                let identity = (key.clone(), Arc::from(alarm.alarm_type.as_str()), Arc::from(alarm.qualifier.as_str()));
                self.remember(identity, alarm, alarm.event_time, now);
                return (AlarmOutcome::ClearWithoutRaise, None);
            }
            (true, Some(i)) => {
                let gone = entry.alarms.remove(i);
                self.active -= 1;
                cleared = Some(gone.alarm);
                AlarmOutcome::Cleared
            }
            (false, Some(i)) => {
                let active = &mut entry.alarms[i];
                active.notification = notification_key(&alarm.notification_id);
                active.sequence = alarm.sequence;
                active.heard = now;
                // A notification that names no source keeps the alarm its source's.
                if source != 0 {
                    active.source = source;
                }
                active.alarm.tally += 1;
                active.alarm.last_seen = active.alarm.last_seen.max(alarm.event_time);
                if active.alarm.severity == alarm.severity {
                    AlarmOutcome::Repeated
                } else {
                    active.alarm.severity = alarm.severity;
                    active.effect = self.policy.effect(&alarm.alarm_type, alarm.severity);
                    if !alarm.text.is_empty() {
                        active.alarm.text = Arc::from(bounded_text(&alarm.text));
                    }
                    AlarmOutcome::SeverityChanged
                }
            }
            (false, None) if superseded(&self.cleared, alarm) => return (AlarmOutcome::Stale, None),
            (false, None) if entry.alarms.len() >= MAX_ALARMS_PER_RESOURCE => return (AlarmOutcome::Dropped, None),
            (false, None) => {
                let active = raised(&self.policy, key.clone(), alarm, source, now);
                if self.sources.max_age(source).is_some() {
                    aging = Some(active.identity);
                }
                let at = entry
                    .alarms
                    .binary_search_by(|a| a.alarm.identity().cmp(&active.alarm.identity()))
                    .unwrap_or_else(|at| at);
                entry.alarms.insert(at, active);
                self.active += 1;
                AlarmOutcome::Raised
            }
        };
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(key.clone());
        }
        // A repeat changes the tally the changelog keeps, not the resource's alarms.
        if outcome == AlarmOutcome::Repeated {
            return (outcome, None);
        }
        let update = ResourceUpdate {
            resource: key.clone(),
            own_state: own_state(&entry.alarms),
            alarms: entry.alarms.iter().map(|a| a.alarm.clone()).collect(),
            ci: entry.ci,
        };
        if entry.alarms.is_empty() {
            let unknown = entry.ci.is_none() && self.topology.is_some();
            self.resources.remove(alarm.resource.as_str());
            self.unmapped -= usize::from(unknown);
        }
        if let Some(gone) = cleared {
            let event_time = alarm.event_time.max(gone.last_seen);
            self.remember((gone.resource, gone.alarm_type, gone.qualifier), alarm, event_time, now);
        }
        if let Some(identity) = aging {
            self.age_from(&update.resource, identity, source, now);
        }
        (outcome, Some(update))
    }

    /// The active alarms of one resource, with live tallies.
    pub fn active_alarms(&self, resource: &str) -> Vec<AlarmRef> {
        self.resources.get(resource).map(|r| r.alarms.iter().map(|a| a.alarm.clone()).collect()).unwrap_or_default()
    }

    /// The clock of the newest notification on an alarm, if it is active.
    pub fn last_seen(&self, resource: &str, alarm_type: &str, qualifier: &str) -> Option<EpochMillis> {
        self.resources.get(resource).and_then(|r| {
            r.alarms
                .iter()
                .find(|a| &*a.alarm.alarm_type == alarm_type && &*a.alarm.qualifier == qualifier)
                .map(|a| a.alarm.last_seen)
        })
    }
}

/// A newly raised alarm on `resource`, reported by `source`, at stream time `now`.
fn raised(policy: &AlarmPolicy, resource: Arc<str>, alarm: &Alarm, source: u32, now: EpochMillis) -> ActiveAlarm {
    ActiveAlarm {
        alarm: AlarmRef {
            resource,
            alarm_type: Arc::from(alarm.alarm_type.as_str()),
            qualifier: Arc::from(alarm.qualifier.as_str()),
            severity: alarm.severity,
            text: Arc::from(bounded_text(&alarm.text)),
            raised_at: alarm.event_time,
            last_seen: alarm.event_time,
            tally: 1,
            cleared_at: None,
        },
        effect: policy.effect(&alarm.alarm_type, alarm.severity),
        notification: notification_key(&alarm.notification_id),
        sequence: alarm.sequence,
        identity: identity_key(&alarm.alarm_type, &alarm.qualifier),
        heard: now,
        source,
    }
}

/// The longest alarm text kept, in bytes: an alarm's text travels in every snapshot of every
/// incident that names it, which must fit one Kafka record.
pub const MAX_TEXT_BYTES: usize = 1024;

/// `text`, cut at a character boundary to [`MAX_TEXT_BYTES`].
fn bounded_text(text: &str) -> &str {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Whether a remembered clear supersedes `alarm`, a raise of an alarm not active. Looked up
/// only on that path, so that repeats of active alarms pay nothing for it.
fn superseded(cleared: &hashbrown::HashMap<Arc<str>, Clears, rustc_hash::FxBuildHasher>, alarm: &Alarm) -> bool {
    if cleared.is_empty() {
        return false;
    }
    cleared.get(alarm.resource.as_str()).is_some_and(|clears| {
        clears.iter().any(|c| c.names(&alarm.alarm_type, &alarm.qualifier) && c.supersedes(alarm))
    })
}

/// Whether `alarm` comes too late for the active alarm it names: `DuplicateNotification`
/// for the same notification again, `Stale` for an older one; `None` to apply it.
fn ordered(active: &ActiveAlarm, alarm: &Alarm) -> Option<AlarmOutcome> {
    let notification = notification_key(&alarm.notification_id);
    if notification != 0 && notification == active.notification {
        return match alarm.sequence.cmp(&active.sequence) {
            std::cmp::Ordering::Equal => Some(AlarmOutcome::DuplicateNotification),
            std::cmp::Ordering::Less => Some(AlarmOutcome::Stale),
            std::cmp::Ordering::Greater => None,
        };
    }
    (alarm.event_time < active.alarm.last_seen).then_some(AlarmOutcome::Stale)
}

fn same_identity(active: &AlarmRef, alarm: &Alarm) -> bool {
    *active.alarm_type == *alarm.alarm_type && *active.qualifier == *alarm.qualifier
}

fn own_state(active: &[ActiveAlarm]) -> State {
    active.iter().map(|a| a.effect.state()).max().unwrap_or(State::Up)
}

/// Entry counts of what the stage holds, for [`super::sizes`].
impl AlarmStage {
    /// Active alarms counted resource by resource (not the running count).
    pub(super) fn counted_alarms_len(&self) -> usize {
        self.resources.values().map(|r| r.alarms.len()).sum()
    }

    pub(super) fn resources_len(&self) -> usize {
        self.resources.len()
    }

    /// Resources with active alarms that the stage's topology does not know.
    pub(super) fn unlocated_len(&self) -> usize {
        self.resources.values().filter(|r| r.ci.is_none()).count()
    }

    pub(super) fn clear_queue_len(&self) -> usize {
        self.cleared_order.len()
    }

    pub(super) fn sources_len(&self) -> usize {
        self.sources.len()
    }

    pub(super) fn ageing_len(&self) -> usize {
        self.ageing.len()
    }

    pub(super) fn dirty_len(&self) -> usize {
        self.dirty.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_text_is_kept_to_its_bound_at_a_character_boundary() {
        let mut stage = AlarmStage::default();
        let mut alarm = Alarm::raise("port-1", "LOS", Severity::Major, 1_000);
        alarm.text = format!("x{}", "é".repeat(2_000));
        stage.apply(&alarm, 0);
        let text = stage.active_alarms("port-1")[0].text.clone();
        assert!(text.len() <= MAX_TEXT_BYTES && text.len() >= MAX_TEXT_BYTES - 1, "{}", text.len());
        assert!(alarm.text.starts_with(&*text));
    }

    #[test]
    fn repeats_fold_into_a_tally_and_a_clear_finds_its_raise() {
        let mut stage = AlarmStage::default();
        let (outcome, update) = stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1_000), 0);
        assert_eq!(outcome, AlarmOutcome::Raised);
        assert_eq!(update.unwrap().own_state, State::Down);

        let (outcome, update) = stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 2_000), 0);
        assert_eq!((outcome, update), (AlarmOutcome::Repeated, None));
        let active = stage.active_alarms("port-1");
        assert_eq!((active[0].tally, active[0].last_seen, active[0].raised_at), (2, 2_000, 1_000));

        let (outcome, update) = stage.apply(&Alarm::raise("port-1", "LOS", Severity::Minor, 3_000), 0);
        assert_eq!(outcome, AlarmOutcome::SeverityChanged);
        assert_eq!(update.unwrap().own_state, State::Degraded);

        let (outcome, update) = stage.apply(&Alarm::clear("port-1", "LOS", 4_000), 0);
        assert_eq!(outcome, AlarmOutcome::Cleared);
        let update = update.unwrap();
        assert_eq!((update.own_state, update.alarms.len()), (State::Up, 0));
        assert_eq!(stage.active_count(), 0);

        let (outcome, _) = stage.apply(&Alarm::clear("port-1", "LOS", 5_000), 0);
        assert_eq!(outcome, AlarmOutcome::ClearWithoutRaise);
    }

    #[test]
    fn changed_resources_are_reported_once_and_restore_gives_the_same_view() {
        let mut stage = AlarmStage::default();
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1_000), 0);
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 2_000), 0);
        stage.apply(&Alarm::raise("port-2", "LOS", Severity::Minor, 2_000), 0);
        let dirty = stage.take_dirty();
        assert_eq!(
            dirty.iter().map(|c| (&*c.resource, c.alarms.len())).collect::<Vec<_>>(),
            vec![("port-1", 1), ("port-2", 1)]
        );
        assert_eq!(dirty[0].alarms[0].tally, 2);
        assert!(stage.take_dirty().is_empty(), "nothing changed since");

        stage.apply(&Alarm::clear("port-2", "LOS", 3_000), 0);
        assert_eq!(
            stage.take_dirty(),
            vec![ChangedResource {
                resource: Arc::from("port-2"),
                alarms: Vec::new(),
                notifications: Vec::new(),
                sequences: Vec::new(),
                sources: Vec::new(),
                clears: vec![RememberedClear {
                    alarm_type: Arc::from("LOS"),
                    qualifier: Arc::from(""),
                    notification: 0,
                    sequence: 0,
                    event_time: 3_000,
                    until: AlarmPolicy::default().clear_memory_ms,
                }],
            }],
            "a cleared resource is written with the clear it remembers"
        );

        let mut restored = AlarmStage::default();
        let alarms = stage.active_alarms("port-1").into_iter().map(|a| (a, LastHeard::default()));
        let updates = restored.restore(alarms, [], 0);
        assert_eq!(updates.len(), 1);
        assert_eq!((updates[0].own_state, restored.active_count()), (State::Down, 1));
        assert_eq!(restored.active_alarms("port-1"), stage.active_alarms("port-1"));
        // The restored stage folds the next repeat exactly as the original does.
        let repeat = Alarm::raise("port-1", "LOS", Severity::Major, 4_000);
        assert_eq!(restored.apply(&repeat, 0).0, stage.apply(&repeat, 0).0);
        assert_eq!(restored.active_alarms("port-1"), stage.active_alarms("port-1"));
    }

    #[test]
    fn notification_fingerprints_never_change() {
        // Written to the changelog: a new version must read what an older one wrote.
        assert_eq!(notification_key("ems-1"), 0x77b8_acb3_c294_7806);
        assert_eq!(notification_key(""), 0);
    }

    #[test]
    fn a_retransmitted_notification_is_applied_once() {
        let mut stage = AlarmStage::default();
        let mut raise = Alarm::raise("port-1", "LOS", Severity::Major, 1_000);
        raise.notification_id = "n-1".into();
        assert_eq!(stage.apply(&raise, 0).0, AlarmOutcome::Raised);
        assert_eq!(stage.apply(&raise, 0).0, AlarmOutcome::DuplicateNotification);
        let mut repeat = raise.clone();
        repeat.notification_id = "n-2".into();
        assert_eq!(stage.apply(&repeat, 0).0, AlarmOutcome::Repeated);
        assert_eq!(stage.apply(&repeat, 0).0, AlarmOutcome::DuplicateNotification);
        let mut unnamed = raise.clone();
        unnamed.notification_id.clear();
        assert_eq!(stage.apply(&unnamed, 0).0, AlarmOutcome::Repeated, "without ids every repeat counts");
        assert_eq!(stage.apply(&unnamed, 0).0, AlarmOutcome::Repeated);
        assert_eq!(stage.active_alarms("port-1")[0].tally, 4);
    }

    #[test]
    fn qualifier_separates_alarms_of_one_type() {
        let mut stage = AlarmStage::default();
        let mut a = Alarm::raise("dev", "FAN", Severity::Minor, 0);
        a.qualifier = "fan-1".into();
        let mut b = a.clone();
        b.qualifier = "fan-2".into();
        b.severity = Severity::Critical;
        stage.apply(&a, 0);
        let (_, update) = stage.apply(&b, 0);
        assert_eq!(update.unwrap().own_state, State::Down);
        let mut clear_b = b.clone();
        clear_b.cleared = true;
        let (_, update) = stage.apply(&clear_b, 0);
        let update = update.unwrap();
        assert_eq!((update.own_state, update.alarms.len()), (State::Degraded, 1));
    }

    #[test]
    fn policy_overrides_the_severity_mapping() {
        let mut stage = AlarmStage::new(AlarmPolicy::new([("TEMP_HIGH".to_owned(), Effect::None)]));
        let (_, update) = stage.apply(&Alarm::raise("dev", "TEMP_HIGH", Severity::Critical, 0), 0);
        assert_eq!(update.unwrap().own_state, State::Up);
    }

    fn ves(severity: Option<Severity>, sequence: u64, event_time: EpochMillis) -> Alarm {
        let mut alarm = match severity {
            Some(severity) => Alarm::raise("par-r1/1/1", "LOS", severity, event_time),
            None => Alarm::clear("par-r1/1/1", "LOS", event_time),
        };
        alarm.notification_id = "ves-fault-1".into();
        alarm.sequence = sequence;
        alarm
    }

    #[test]
    fn a_ves_fault_lifecycle_is_ordered_by_its_sequence() {
        let mut stage = AlarmStage::default();
        assert_eq!(stage.apply(&ves(Some(Severity::Minor), 0, 1_000), 1_000).0, AlarmOutcome::Raised);
        let (outcome, update) = stage.apply(&ves(Some(Severity::Critical), 1, 2_000), 2_000);
        assert_eq!(outcome, AlarmOutcome::SeverityChanged, "the escalation shares the raise's eventId");
        assert_eq!(update.unwrap().own_state, State::Down);
        assert_eq!(stage.apply(&ves(Some(Severity::Critical), 1, 2_000), 2_100).0, AlarmOutcome::DuplicateNotification);
        assert_eq!(stage.apply(&ves(Some(Severity::Minor), 0, 1_000), 2_200).0, AlarmOutcome::Stale, "the raise again");
        assert_eq!(stage.active_alarms("par-r1/1/1")[0].severity, Severity::Critical, "not lowered by it");
        assert_eq!(stage.apply(&ves(None, 3, 3_000), 3_000).0, AlarmOutcome::Cleared);
        assert_eq!(
            stage.apply(&ves(Some(Severity::Major), 2, 2_500), 3_100).0,
            AlarmOutcome::Stale,
            "a change sent before the clear, arriving after it, does not raise the alarm again"
        );
        assert_eq!(stage.active_count(), 0);
        assert_eq!(stage.apply(&ves(Some(Severity::Major), 4, 4_000), 4_000).0, AlarmOutcome::Raised, "raised again");
    }

    #[test]
    fn an_older_notification_never_undoes_a_newer_one() {
        let mut stage = AlarmStage::default();
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Critical, 2_000), 2_000);
        assert_eq!(stage.apply(&Alarm::clear("port-1", "LOS", 1_000), 2_100).0, AlarmOutcome::Stale, "a stale clear");
        assert_eq!(
            stage.apply(&Alarm::raise("port-1", "LOS", Severity::Minor, 1_500), 2_200).0,
            AlarmOutcome::Stale,
            "a stale repeat"
        );
        let active = stage.active_alarms("port-1");
        assert_eq!((active.len(), active[0].severity, active[0].tally), (1, Severity::Critical, 1));
        assert_eq!(stage.apply(&Alarm::clear("port-1", "LOS", 2_000), 2_300).0, AlarmOutcome::Cleared, "same time");
    }

    #[test]
    fn a_clear_before_its_raise_is_remembered_for_a_while() {
        let mut stage = AlarmStage::default();
        let memory = AlarmPolicy::default().clear_memory_ms;
        assert_eq!(stage.apply(&Alarm::clear("port-1", "LOS", 5_000), 5_000).0, AlarmOutcome::ClearWithoutRaise);
        assert_eq!(
            stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 4_000), 5_100).0,
            AlarmOutcome::Stale,
            "the late raise of an alarm already cleared"
        );
        assert_eq!(stage.active_count(), 0);
        assert_eq!(stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 6_000), 6_000).0, AlarmOutcome::Raised);

        // Forgotten after the memory, by stream time, so memory stays bounded.
        for i in 0..1_000 {
            stage.apply(&Alarm::clear(&format!("port-{i}"), "LOS", 7_000), 7_000);
        }
        assert_eq!(stage.remembered_clears(), 1_000);
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1_000), 7_000 + memory);
        assert_eq!(stage.remembered_clears(), 0);
        assert_eq!(stage.active_alarms("port-1").len(), 1, "a raise after the memory applies");
    }

    #[test]
    fn unmapped_resources_and_alarms_per_resource_are_bounded() {
        let topology = Arc::new(
            Topology::from_records(vec![crate::model::topology::CiRecord {
                id: "port-1".into(),
                class: crate::model::topology::CiClass::Port,
                name: String::new(),
                depends_on: Vec::new(),
                rule: crate::model::topology::Rule::Any,
                customer: None,
                sla: None,
                incidents: None,
                attributes: Default::default(),
            }])
            .unwrap(),
        );
        let policy = AlarmPolicy { max_unmapped_resources: 3, ..AlarmPolicy::default() };
        let mut stage = AlarmStage::with_topology(policy, topology);
        for i in 0..3 {
            assert_eq!(
                stage.apply(&Alarm::raise(&format!("ghost-{i}"), "LOS", Severity::Major, 1), 1).0,
                AlarmOutcome::Raised
            );
        }
        let fourth = Alarm::raise("ghost-3", "LOS", Severity::Major, 1);
        assert_eq!(stage.apply(&fourth, 1).0, AlarmOutcome::Dropped, "a fourth unmapped resource");
        // A known resource, and more alarms on a kept unmapped one, still apply.
        assert_eq!(stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1), 1).0, AlarmOutcome::Raised);
        assert_eq!(stage.apply(&Alarm::raise("ghost-0", "EQPT", Severity::Major, 1), 1).0, AlarmOutcome::Raised);
        // Once one clears, another takes its place.
        stage.apply(&Alarm::clear("ghost-1", "LOS", 2), 2);
        assert_eq!(stage.apply(&Alarm::raise("ghost-3", "LOS", Severity::Major, 3), 3).0, AlarmOutcome::Raised);

        for i in 1..MAX_ALARMS_PER_RESOURCE {
            let raise = Alarm { qualifier: format!("ch-{i}"), ..Alarm::raise("port-1", "LOS", Severity::Major, 4) };
            assert_eq!(stage.apply(&raise, 4).0, AlarmOutcome::Raised);
        }
        let over = Alarm { qualifier: "ch-x".into(), ..Alarm::raise("port-1", "LOS", Severity::Major, 4) };
        assert_eq!(stage.apply(&over, 4).0, AlarmOutcome::Dropped);
        assert_eq!(stage.active_alarms("port-1").len(), MAX_ALARMS_PER_RESOURCE);
        let repeat = Alarm { qualifier: "ch-7".into(), ..Alarm::raise("port-1", "LOS", Severity::Major, 5) };
        assert_eq!(stage.apply(&repeat, 5).0, AlarmOutcome::Repeated, "alarms it holds still repeat");
    }

    #[test]
    fn a_resource_remembers_as_many_clears_as_it_holds_alarms() {
        let mut stage = AlarmStage::default();
        let clear =
            |i: usize| Alarm { qualifier: format!("alarm-{i}"), ..Alarm::clear("gnb-1", "LOS", 1_000 + i as i64) };
        for i in 0..=MAX_ALARMS_PER_RESOURCE {
            stage.apply(&clear(i), 1_000 + i as i64);
        }
        assert_eq!(stage.remembered_clears(), MAX_ALARMS_PER_RESOURCE);
        let late =
            |i: usize| Alarm { qualifier: format!("alarm-{i}"), ..Alarm::raise("gnb-1", "LOS", Severity::Major, 0) };
        assert_eq!(stage.apply(&late(0), 3_000).0, AlarmOutcome::Raised, "the first clear made room");
        assert_eq!(stage.apply(&late(MAX_ALARMS_PER_RESOURCE), 3_000).0, AlarmOutcome::Stale);
        let written = stage.take_dirty();
        assert_eq!(written[0].clears.len(), MAX_ALARMS_PER_RESOURCE, "a record of a bounded size");
    }

    #[test]
    fn remembered_clears_are_written_and_taken_back_until_forgotten() {
        let memory = AlarmPolicy::default().clear_memory_ms;
        let mut stage = AlarmStage::default();
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1_000), 1_000);
        stage.apply(&Alarm::clear("port-1", "LOS", 5_000), 5_000);
        stage.apply(&Alarm::clear("port-2", "LOS", 6_000), 6_000);
        let written: Vec<ChangedResource> = stage.take_dirty();
        assert_eq!(
            written.iter().map(|c| (&*c.resource, c.clears.len())).collect::<Vec<_>>(),
            [("port-1", 1), ("port-2", 1)]
        );

        // A restart takes them back: the late raise the clear overtook is still stale.
        let clears = |written: &[ChangedResource]| {
            written
                .iter()
                .flat_map(|c| c.clears.iter().map(|clear| (c.resource.clone(), clear.clone())))
                .collect::<Vec<_>>()
        };
        let mut restored = AlarmStage::default();
        restored.restore([], clears(&written), 6_000);
        assert_eq!(restored.remembered_clears(), 2);
        let late = Alarm::raise("port-2", "LOS", Severity::Major, 5_500);
        assert_eq!(restored.apply(&late, 6_100).0, AlarmOutcome::Stale);
        assert_eq!(stage.apply(&late, 6_100).0, AlarmOutcome::Stale);

        // Forgetting a clear rewrites its resource: the record goes once nothing is left.
        stage.take_dirty();
        stage.apply(&Alarm::raise("port-3", "LOS", Severity::Major, 5_000 + memory), 5_000 + memory);
        let written = stage.take_dirty();
        let port_1 = written.iter().find(|c| &*c.resource == "port-1").expect("port-1 written again");
        assert!(port_1.alarms.is_empty() && port_1.clears.is_empty(), "{port_1:?}");

        // One due to be forgotten by the restored clock is not taken back.
        let mut late_restore = AlarmStage::default();
        late_restore.restore(
            [],
            clears(&[ChangedResource {
                clears: vec![RememberedClear {
                    alarm_type: Arc::from("LOS"),
                    qualifier: Arc::from(""),
                    notification: 0,
                    sequence: 0,
                    event_time: 1_000,
                    until: 2_000,
                }],
                ..port_1.clone()
            }]),
            2_000,
        );
        assert_eq!(late_restore.remembered_clears(), 0);
    }
}
