//! What the alarm stage knows of the element managers that report alarms: which source
//! reported each active alarm (in four bytes per alarm), an alarm-list resynchronisation
//! per source, and the optional ageing of alarms a source stopped repeating.

#[cfg(test)]
use super::LastHeard;
use super::{AlarmStage, IdentityRef};
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, AlarmRef};
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Distinct source systems remembered at most. Past it a new source's alarms are kept
/// unnamed (index 0): a feed that invents a source per alarm cannot grow the table without
/// bound; such alarms take part in no resync and no per-source ageing.
const MAX_SOURCES: usize = 65_536;

/// Source systems by index; index 0 is the unnamed source.
#[derive(Debug)]
pub(super) struct Sources {
    names: Vec<Arc<str>>,
    index: FxHashMap<Arc<str>, u32>,
    /// The last source interned: feeds come in runs from one element manager.
    last: (Arc<str>, u32),
    /// Per source index: its maximum alarm age, if ageing applies to it.
    max_age: Vec<Option<EpochMillis>>,
    warned: bool,
}

impl Sources {
    pub(super) fn new() -> Sources {
        let unnamed: Arc<str> = Arc::from("");
        Sources {
            names: vec![unnamed.clone()],
            index: FxHashMap::from_iter([(unnamed.clone(), 0)]),
            last: (unnamed, 0),
            max_age: vec![None],
            warned: false,
        }
    }

    /// The index of `name`, adding it (with its maximum age under `ages`) if it is new.
    pub(super) fn intern(&mut self, name: &str, ages: &MaxAges) -> u32 {
        if *self.last.0 == *name {
            return self.last.1;
        }
        let index = match self.index.get(name) {
            Some(&index) => index,
            None if self.names.len() >= MAX_SOURCES => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(limit = MAX_SOURCES, "too many distinct source systems; new ones are kept unnamed");
                }
                return 0;
            }
            None => {
                let name: Arc<str> = Arc::from(name);
                let index = self.names.len() as u32;
                self.names.push(name.clone());
                self.max_age.push(ages.of(&name));
                self.index.insert(name, index);
                index
            }
        };
        self.last = (self.names[index as usize].clone(), index);
        index
    }

    pub(super) fn lookup(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub(super) fn name(&self, index: u32) -> &Arc<str> {
        &self.names[index as usize]
    }

    pub(super) fn max_age(&self, index: u32) -> Option<EpochMillis> {
        self.max_age[index as usize]
    }
}

/// Maximum alarm ages by source system (`correlation.alarm_max_age_secs`); `*` for every
/// source not named; 0 for a source: never aged, whatever `*` says. Empty: no ageing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaxAges(FxHashMap<String, EpochMillis>);

impl MaxAges {
    pub fn new(ages: impl IntoIterator<Item = (String, EpochMillis)>) -> MaxAges {
        MaxAges(ages.into_iter().collect())
    }

    fn of(&self, source: &str) -> Option<EpochMillis> {
        self.0.get(source).or_else(|| self.0.get("*")).copied().filter(|&age| age > 0)
    }
}

/// Active alarms of sources with a maximum age, by the stream time they are due to be
/// looked at: at most about one entry per such alarm (a repeat moves no entry; a due
/// entry whose alarm was heard since is put back at its new time).
#[derive(Debug, Default)]
pub(super) struct Ageing {
    due: BinaryHeap<Reverse<(EpochMillis, Arc<str>, u64)>>,
}

impl AlarmStage {
    /// Puts an alarm just raised under ageing, if its source has a maximum age.
    pub(super) fn age_from(&mut self, resource: &Arc<str>, identity: u64, source: u32, now: EpochMillis) {
        if let Some(age) = self.sources.max_age(source) {
            self.ageing.due.push(Reverse((now.saturating_add(age), resource.clone(), identity)));
            // Entries of alarms cleared meanwhile leave only when due: past twice the
            // active alarms, the queue is rebuilt from them.
            if self.ageing.due.len() > 2 * self.active + 1024 {
                self.rebuild_ageing();
            }
        }
    }

    pub(super) fn rebuild_ageing(&mut self) {
        let sources = &self.sources;
        self.ageing.due = self
            .resources
            .iter()
            .flat_map(|(resource, entry)| {
                entry.alarms.iter().filter_map(move |a| {
                    let age = sources.max_age(a.source)?;
                    Some(Reverse((a.heard.saturating_add(age), resource.clone(), a.identity)))
                })
            })
            .collect();
    }

    /// Whether an alarm may have aged by stream time `now` (one comparison when not).
    pub fn ageing_due(&self, now: EpochMillis) -> bool {
        self.ageing.due.peek().is_some_and(|Reverse((at, _, _))| *at <= now)
    }

    /// The clears of the active alarms that their source has not repeated for its maximum
    /// age by stream time `now`, in identity order: to be applied as notifications.
    pub fn aged(&mut self, now: EpochMillis) -> Vec<Alarm> {
        let mut clears = Vec::new();
        while let Some(Reverse((at, _, _))) = self.ageing.due.peek()
            && *at <= now
        {
            let Some(Reverse((_, resource, identity))) = self.ageing.due.pop() else { break };
            let Some(entry) = self.resources.get(&resource) else { continue };
            let Some(active) = entry.alarms.iter().find(|a| a.identity == identity) else { continue };
            let Some(age) = self.sources.max_age(active.source) else { continue };
            let due = active.heard.saturating_add(age);
            if due > now {
                self.ageing.due.push(Reverse((due, resource, identity)));
                continue;
            }
            // Dated at its last report, not now: a repeat the source sent after that (late
            // in the backlog of a restart, say) is not stale, and raises it again.
            clears.push(clear_of(&active.alarm, self.sources.name(active.source), active.alarm.last_seen));
        }
        clears.sort_unstable_by(|a, b| identity(a).cmp(&identity(b)));
        clears.dedup_by(|a, b| identity(a) == identity(b));
        clears
    }

    /// What the notification of an alarm listed by a resynchronisation taken at `as_of`
    /// must be dated at least, to realign the alarm whatever ids and sequences it carries
    /// (an element manager that restarted numbers its notifications anew): the alarm's last
    /// report, or the clear remembered for it. `None` when either is later than the list,
    /// which then says nothing new of it.
    pub fn listed_floor(&self, alarm: &Alarm, as_of: EpochMillis) -> Option<EpochMillis> {
        let identity = IdentityRef(&alarm.resource, &alarm.alarm_type, &alarm.qualifier);
        let cleared = self
            .clears_of(&alarm.resource)
            .iter()
            .find(|c| c.names(&alarm.alarm_type, &alarm.qualifier))
            .map(|c| c.event_time);
        let seen = self.resources.get(alarm.resource.as_str()).and_then(|entry| {
            entry
                .alarms
                .iter()
                .find(|a| a.alarm.identity() == (identity.0, identity.1, identity.2))
                .map(|a| a.alarm.last_seen)
        });
        let floor = cleared.max(seen).unwrap_or(EpochMillis::MIN);
        (floor <= as_of).then_some(floor)
    }

    /// The clears a resynchronisation of `source` implies: every active alarm of that source
    /// that `listed` does not name and that was last reported at or before `as_of` (an
    /// alarm raised after the list was taken stays), in identity order.
    pub fn unlisted(&self, source: &str, listed: &[Alarm], as_of: EpochMillis) -> Vec<Alarm> {
        let Some(index) = self.sources.lookup(source).filter(|&i| i != 0) else { return Vec::new() };
        let named: FxHashSet<IdentityRef<'_>> =
            listed.iter().map(|a| IdentityRef(&a.resource, &a.alarm_type, &a.qualifier)).collect();
        let mut clears: Vec<Alarm> = self
            .resources
            .values()
            .flat_map(|entry| &entry.alarms)
            .filter(|a| a.source == index && a.alarm.last_seen <= as_of)
            .filter(|a| !named.contains(&IdentityRef(&a.alarm.resource, &a.alarm.alarm_type, &a.alarm.qualifier)))
            .map(|a| clear_of(&a.alarm, self.sources.name(index), as_of))
            .collect();
        clears.sort_unstable_by(|a, b| identity(a).cmp(&identity(b)));
        clears
    }
}

fn identity(alarm: &Alarm) -> (&str, &str, &str) {
    (&alarm.resource, &alarm.alarm_type, &alarm.qualifier)
}

/// A clear of `active` at `time` (never before its last report, so that it is not stale).
fn clear_of(active: &AlarmRef, source: &str, time: EpochMillis) -> Alarm {
    let mut clear = Alarm::clear(&active.resource, &active.alarm_type, time.max(active.last_seen));
    clear.qualifier = active.qualifier.to_string();
    clear.severity = active.severity;
    clear.source_system = source.to_owned();
    clear
}

/// Entry counts, for [`crate::correlate::sizes`].
impl Sources {
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }
}

impl Ageing {
    pub(super) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::alarm_stage::{AlarmOutcome, AlarmPolicy};
    use crate::model::alarm::Severity;

    fn from(source: &str, resource: &str, alarm_type: &str, time: EpochMillis) -> Alarm {
        let mut alarm = Alarm::raise(resource, alarm_type, Severity::Major, time);
        alarm.source_system = source.to_owned();
        alarm
    }

    fn names(alarms: &[Alarm]) -> Vec<String> {
        alarms.iter().map(|a| format!("{} {}", a.resource, a.alarm_type)).collect()
    }

    #[test]
    fn a_resync_clears_what_its_source_no_longer_lists_and_nothing_newer_or_of_another_source() {
        let mut stage = AlarmStage::default();
        stage.apply(&from("ems-a", "port-1", "LOS", 1_000), 1_000);
        stage.apply(&from("ems-a", "port-2", "LOS", 1_000), 1_000);
        stage.apply(&from("ems-a", "port-3", "LOS", 5_000), 5_000);
        stage.apply(&from("ems-b", "port-4", "LOS", 1_000), 1_000);

        // ems-a's list, taken at 3 s, names port-1 only: port-2 is gone; port-3 was raised
        // after the list was taken and stays; ems-b's alarm is not ems-a's to clear.
        let listed = [from("ems-a", "port-1", "LOS", 3_000)];
        let clears = stage.unlisted("ems-a", &listed, 3_000);
        assert_eq!(names(&clears), ["port-2 LOS"]);
        assert!(clears[0].cleared && clears[0].source_system == "ems-a");
        assert_eq!(stage.apply(&clears[0], 6_000).0, AlarmOutcome::Cleared, "the clear is not stale");

        assert!(stage.unlisted("ems-unknown", &[], 10_000).is_empty());
        assert!(stage.unlisted("", &[], 10_000).is_empty(), "alarms of no named source are never resynced");
        // An empty list clears every alarm of the source reported by its time.
        assert_eq!(names(&stage.unlisted("ems-a", &[], 10_000)), ["port-1 LOS", "port-3 LOS"]);
    }

    #[test]
    fn the_source_of_an_alarm_survives_a_restore() {
        let mut stage = AlarmStage::default();
        stage.apply(&from("ems-a", "port-1", "LOS", 1_000), 1_000);
        let written = stage.take_dirty();
        assert_eq!(&*written[0].sources[0], "ems-a");
        let mut restored = AlarmStage::default();
        let heard =
            written[0].alarms.iter().cloned().zip(
                written[0].sources.iter().map(|source| LastHeard { source: source.clone(), ..LastHeard::default() }),
            );
        restored.restore(heard, [], 1_000);
        assert_eq!(names(&restored.unlisted("ems-a", &[], 2_000)), ["port-1 LOS"]);
    }

    #[test]
    fn alarms_not_repeated_within_their_sources_max_age_age_out() {
        let policy = AlarmPolicy {
            max_age: MaxAges::new([("ems-a".to_owned(), 10_000), ("*".to_owned(), 60_000)]),
            ..AlarmPolicy::default()
        };
        let mut stage = AlarmStage::new(policy);
        stage.apply(&from("ems-a", "port-1", "LOS", 0), 0);
        stage.apply(&from("ems-a", "port-2", "LOS", 0), 0);
        stage.apply(&from("ems-b", "port-3", "LOS", 0), 0);
        assert!(!stage.ageing_due(9_999));
        // port-2 is repeated at 5 s: it ages at 15 s, port-1 at 10 s.
        stage.apply(&from("ems-a", "port-2", "LOS", 5_000), 5_000);
        assert!(stage.ageing_due(10_000));
        let aged = stage.aged(10_000);
        assert_eq!(names(&aged), ["port-1 LOS"]);
        for clear in &aged {
            assert_eq!(stage.apply(clear, 10_000).0, AlarmOutcome::Cleared);
        }
        assert!(stage.aged(14_999).is_empty());
        assert_eq!(names(&stage.aged(15_000)), ["port-2 LOS"]);
        // Another source falls under `*`.
        assert!(stage.aged(59_999).is_empty());
        assert_eq!(names(&stage.aged(60_000)), ["port-3 LOS"]);
    }

    #[test]
    fn a_restore_puts_every_alarm_under_ageing_once_and_zero_means_never() {
        let ages = || MaxAges::new([("*".to_owned(), 60_000), ("ems-exempt".to_owned(), 0)]);
        let mut stage = AlarmStage::new(AlarmPolicy { max_age: ages(), ..AlarmPolicy::default() });
        for i in 0..5_000 {
            stage.apply(&from("ems-a", &format!("port-{i}"), "LOS", 0), 0);
        }
        stage.apply(&from("ems-exempt", "port-x", "LOS", 0), 0);
        let written = stage.take_dirty();
        let mut restored = AlarmStage::new(AlarmPolicy { max_age: ages(), ..AlarmPolicy::default() });
        let heard = written.iter().flat_map(|r| {
            r.alarms
                .iter()
                .cloned()
                .zip(r.sources.iter().map(|s| LastHeard { source: s.clone(), ..LastHeard::default() }))
        });
        restored.restore(heard, [], 100_000);
        assert_eq!(restored.ageing.due.len(), 5_000, "one entry each, the exempt source's none");
        assert!(restored.aged(159_999).is_empty(), "ageing counts from the restore");
        let aged = restored.aged(160_000);
        assert_eq!(aged.len(), 5_000);
        assert!(aged.iter().all(|c| c.event_time == 0), "dated at their last report");
    }

    #[test]
    fn a_flapping_alarm_does_not_grow_the_ageing_queue_without_bound() {
        let policy = AlarmPolicy { max_age: MaxAges::new([("*".to_owned(), 3_600_000)]), ..AlarmPolicy::default() };
        let mut stage = AlarmStage::new(policy);
        for i in 0..100_000 {
            let mut alarm = from("ems-a", "port-1", "LOS", i * 2);
            stage.apply(&alarm, i * 2);
            alarm.cleared = true;
            alarm.event_time += 1;
            stage.apply(&alarm, i * 2 + 1);
        }
        assert!(stage.ageing.due.len() <= 2 * stage.active_count() + 1025, "{}", stage.ageing.due.len());
    }

    #[test]
    fn sources_past_the_table_limit_are_kept_unnamed() {
        let mut sources = Sources::new();
        let ages = MaxAges::default();
        for i in 0..MAX_SOURCES + 10 {
            sources.intern(&format!("ems-{i}"), &ages);
        }
        assert_eq!(sources.names.len(), MAX_SOURCES);
        assert_eq!(sources.intern("ems-1", &ages), 2, "known ones keep their index");
        assert_eq!(sources.intern("one-more", &ages), 0);
    }
}
