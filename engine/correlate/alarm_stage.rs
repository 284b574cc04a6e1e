//! The alarm stage: where a clear is matched to its raise. Keeps every active alarm under
//! its RFC 8632 identity `(resource, alarm_type, qualifier)`, folds repeats into a tally,
//! and tells the impact stage whenever a resource's set of active alarms changes.

use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, AlarmRef, Severity};
use crate::model::state::{Effect, State};
use crate::model::topology::{CiIdx, Topology};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use thin_vec::{ThinVec, thin_vec};

/// Maps an alarm to its effect on the resource: X.733 severity by default, with
/// per-alarm-type overrides from configuration.
#[derive(Clone, Debug, Default)]
pub struct AlarmPolicy {
    overrides: FxHashMap<String, Effect>,
}

impl AlarmPolicy {
    pub fn new(overrides: impl IntoIterator<Item = (String, Effect)>) -> AlarmPolicy {
        AlarmPolicy { overrides: overrides.into_iter().collect() }
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
    /// A notification whose id is that of the last one applied to the alarm: a
    /// retransmission, ignored so that nothing is counted twice.
    DuplicateNotification,
    Cleared,
    /// A clear that found no active alarm (already cleared, or raised before we started).
    ClearWithoutRaise,
}

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
}

#[derive(Debug)]
struct ActiveAlarm {
    alarm: AlarmRef,
    effect: Effect,
    /// Fingerprint of the id of the last notification applied to this alarm: the same id
    /// again is a retransmission (an element manager resending after a timeout), not a
    /// repeat. A fingerprint, so the per-repeat path allocates nothing.
    notification: u64,
    /// [`identity_key`] of the alarm's type and qualifier: a resource's alarms are told
    /// apart by comparing these first, not their strings.
    identity: u64,
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

#[derive(Debug, Default)]
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
}

impl AlarmStage {
    pub fn new(policy: AlarmPolicy) -> AlarmStage {
        AlarmStage { resources: Default::default(), policy, active: 0, dirty: Vec::new(), topology: None }
    }

    /// An alarm stage whose updates say where each resource sits in `topology`.
    pub fn with_topology(policy: AlarmPolicy, topology: Arc<Topology>) -> AlarmStage {
        AlarmStage { topology: Some(topology), ..AlarmStage::new(policy) }
    }

    fn locate(&self, resource: &str) -> Option<CiIdx> {
        self.topology.as_ref().and_then(|topology| topology.lookup(resource))
    }

    /// Rebuilds the active alarms from a changelog: one list per resource, as
    /// [`AlarmStage::take_dirty`] reported them. Returns the resource updates that give the
    /// impact stage the same view.
    pub fn restore(&mut self, alarms: impl IntoIterator<Item = (AlarmRef, u64)>) -> Vec<ResourceUpdate> {
        for (alarm, notification) in alarms {
            let effect = self.policy.effect(&alarm.alarm_type, alarm.severity);
            let ci = self.locate(&alarm.resource);
            let resource =
                self.resources.entry(alarm.resource.clone()).or_insert_with(|| Resource { ci, ..Resource::default() });
            let active = &mut resource.alarms;
            let identity = identity_key(&alarm.alarm_type, &alarm.qualifier);
            let entry = ActiveAlarm { alarm, effect, notification, identity };
            match active.binary_search_by(|a| a.alarm.identity().cmp(&entry.alarm.identity())) {
                Ok(at) => active[at] = entry,
                Err(at) => active.insert(at, entry),
            }
        }
        self.active = self.resources.values().map(|r| r.alarms.len()).sum();
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
                ChangedResource { resource, alarms, notifications }
            })
            .collect()
    }

    /// Number of active alarms over all resources.
    pub fn active_count(&self) -> usize {
        self.active
    }

    /// Applies one notification; returns what it did and, when the resource's active
    /// alarms changed, the update for the impact stage.
    pub fn apply(&mut self, alarm: &Alarm) -> (AlarmOutcome, Option<ResourceUpdate>) {
        let Some((key, entry)) = self.resources.get_key_value_mut(alarm.resource.as_str()) else {
            if alarm.cleared {
                return (AlarmOutcome::ClearWithoutRaise, None);
            }
            let resource: Arc<str> = Arc::from(alarm.resource.as_str());
            let active = raised(&self.policy, resource.clone(), alarm);
            self.dirty.push(resource.clone());
            let ci = self.locate(&resource);
            let update = ResourceUpdate {
                resource: resource.clone(),
                own_state: own_state(std::slice::from_ref(&active)),
                alarms: thin_vec![active.alarm.clone()],
                ci,
            };
            self.resources.insert(resource, Resource { alarms: vec![active], dirty: true, ci });
            self.active += 1;
            return (AlarmOutcome::Raised, Some(update));
        };
        let identity = identity_key(&alarm.alarm_type, &alarm.qualifier);
        let position = entry.alarms.iter().position(|a| a.identity == identity && same_identity(&a.alarm, alarm));
        let outcome = match (alarm.cleared, position) {
            (true, None) => return (AlarmOutcome::ClearWithoutRaise, None),
            (true, Some(i)) => {
                entry.alarms.remove(i);
                self.active -= 1;
                AlarmOutcome::Cleared
            }
            (false, Some(i)) => {
                let active = &mut entry.alarms[i];
                let notification = notification_key(&alarm.notification_id);
                if notification != 0 && active.notification == notification {
                    return (AlarmOutcome::DuplicateNotification, None);
                }
                active.notification = notification;
                active.alarm.tally += 1;
                active.alarm.last_seen = active.alarm.last_seen.max(alarm.event_time);
                if active.alarm.severity == alarm.severity {
                    AlarmOutcome::Repeated
                } else {
                    active.alarm.severity = alarm.severity;
                    active.effect = self.policy.effect(&alarm.alarm_type, alarm.severity);
                    if !alarm.text.is_empty() {
                        active.alarm.text = Arc::from(alarm.text.as_str());
                    }
                    AlarmOutcome::SeverityChanged
                }
            }
            (false, None) => {
                let active = raised(&self.policy, key.clone(), alarm);
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
            self.resources.remove(alarm.resource.as_str());
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

/// A newly raised alarm on `resource`.
fn raised(policy: &AlarmPolicy, resource: Arc<str>, alarm: &Alarm) -> ActiveAlarm {
    ActiveAlarm {
        alarm: AlarmRef {
            resource,
            alarm_type: Arc::from(alarm.alarm_type.as_str()),
            qualifier: Arc::from(alarm.qualifier.as_str()),
            severity: alarm.severity,
            text: Arc::from(alarm.text.as_str()),
            raised_at: alarm.event_time,
            last_seen: alarm.event_time,
            tally: 1,
            cleared_at: None,
        },
        effect: policy.effect(&alarm.alarm_type, alarm.severity),
        notification: notification_key(&alarm.notification_id),
        identity: identity_key(&alarm.alarm_type, &alarm.qualifier),
    }
}

fn same_identity(active: &AlarmRef, alarm: &Alarm) -> bool {
    *active.alarm_type == *alarm.alarm_type && *active.qualifier == *alarm.qualifier
}

fn own_state(active: &[ActiveAlarm]) -> State {
    active.iter().map(|a| a.effect.state()).max().unwrap_or(State::Up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_fold_into_a_tally_and_a_clear_finds_its_raise() {
        let mut stage = AlarmStage::default();
        let (outcome, update) = stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1_000));
        assert_eq!(outcome, AlarmOutcome::Raised);
        assert_eq!(update.unwrap().own_state, State::Down);

        let (outcome, update) = stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 2_000));
        assert_eq!((outcome, update), (AlarmOutcome::Repeated, None));
        let active = stage.active_alarms("port-1");
        assert_eq!((active[0].tally, active[0].last_seen, active[0].raised_at), (2, 2_000, 1_000));

        let (outcome, update) = stage.apply(&Alarm::raise("port-1", "LOS", Severity::Minor, 3_000));
        assert_eq!(outcome, AlarmOutcome::SeverityChanged);
        assert_eq!(update.unwrap().own_state, State::Degraded);

        let (outcome, update) = stage.apply(&Alarm::clear("port-1", "LOS", 4_000));
        assert_eq!(outcome, AlarmOutcome::Cleared);
        let update = update.unwrap();
        assert_eq!((update.own_state, update.alarms.len()), (State::Up, 0));
        assert_eq!(stage.active_count(), 0);

        let (outcome, _) = stage.apply(&Alarm::clear("port-1", "LOS", 5_000));
        assert_eq!(outcome, AlarmOutcome::ClearWithoutRaise);
    }

    #[test]
    fn changed_resources_are_reported_once_and_restore_gives_the_same_view() {
        let mut stage = AlarmStage::default();
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 1_000));
        stage.apply(&Alarm::raise("port-1", "LOS", Severity::Major, 2_000));
        stage.apply(&Alarm::raise("port-2", "LOS", Severity::Minor, 2_000));
        let dirty = stage.take_dirty();
        assert_eq!(
            dirty.iter().map(|c| (&*c.resource, c.alarms.len())).collect::<Vec<_>>(),
            vec![("port-1", 1), ("port-2", 1)]
        );
        assert_eq!(dirty[0].alarms[0].tally, 2);
        assert!(stage.take_dirty().is_empty(), "nothing changed since");

        stage.apply(&Alarm::clear("port-2", "LOS", 3_000));
        assert_eq!(
            stage.take_dirty(),
            vec![ChangedResource { resource: Arc::from("port-2"), alarms: Vec::new(), notifications: Vec::new() }],
            "a cleared resource is written empty"
        );

        let mut restored = AlarmStage::default();
        let updates = restored.restore(stage.active_alarms("port-1").into_iter().map(|a| (a, 0)));
        assert_eq!(updates.len(), 1);
        assert_eq!((updates[0].own_state, restored.active_count()), (State::Down, 1));
        assert_eq!(restored.active_alarms("port-1"), stage.active_alarms("port-1"));
        // The restored stage folds the next repeat exactly as the original does.
        let repeat = Alarm::raise("port-1", "LOS", Severity::Major, 4_000);
        assert_eq!(restored.apply(&repeat).0, stage.apply(&repeat).0);
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
        assert_eq!(stage.apply(&raise).0, AlarmOutcome::Raised);
        assert_eq!(stage.apply(&raise).0, AlarmOutcome::DuplicateNotification);
        let mut repeat = raise.clone();
        repeat.notification_id = "n-2".into();
        assert_eq!(stage.apply(&repeat).0, AlarmOutcome::Repeated);
        assert_eq!(stage.apply(&repeat).0, AlarmOutcome::DuplicateNotification);
        let mut unnamed = raise.clone();
        unnamed.notification_id.clear();
        assert_eq!(stage.apply(&unnamed).0, AlarmOutcome::Repeated, "without ids every repeat counts");
        assert_eq!(stage.apply(&unnamed).0, AlarmOutcome::Repeated);
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
        stage.apply(&a);
        let (_, update) = stage.apply(&b);
        assert_eq!(update.unwrap().own_state, State::Down);
        let mut clear_b = b.clone();
        clear_b.cleared = true;
        let (_, update) = stage.apply(&clear_b);
        let update = update.unwrap();
        assert_eq!((update.own_state, update.alarms.len()), (State::Degraded, 1));
    }

    #[test]
    fn policy_overrides_the_severity_mapping() {
        let mut stage = AlarmStage::new(AlarmPolicy::new([("TEMP_HIGH".to_owned(), Effect::None)]));
        let (_, update) = stage.apply(&Alarm::raise("dev", "TEMP_HIGH", Severity::Critical, 0));
        assert_eq!(update.unwrap().own_state, State::Up);
    }
}
