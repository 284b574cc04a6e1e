//! `INCIDENT_VIEW_DELTA`: what one change did to an incident's lists, so that a subscriber
//! holding the previous version gets a few hundred bytes per change instead of the whole
//! incident again (a storm's incident holds hundreds of alarms and a timeline of hundreds of
//! entries; a change typically adds a few of them).
//!
//! [`IncidentDelta::between`] compares two versions of an incident on the server side;
//! [`apply`] brings a client's `v1::Incident` up to date from a received change. Both follow
//! the rules written in `incident.proto` (`IncidentDelta`): per list, removals by position in
//! the held list, then insertions and replacements by position in the new one.

use super::v1;
use crate::model::alarm::AlarmRef;
use crate::model::incident::{ImpactedCustomer, ImpactedService, Incident, Note, TimelineEntry};
use rustc_hash::FxHashMap;
use std::hash::Hash;

/// How one list of an incident changed between two versions.
#[derive(Debug)]
pub struct ListEdit<'a, T> {
    /// Positions in the earlier list, ascending.
    pub removed: Vec<u32>,
    /// (position in the new list, how, entry), ascending.
    pub edits: Vec<(u32, EditKind, &'a T)>,
}

/// `faultline.v1.EditKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditKind {
    Inserted = 1,
    Replaced = 2,
    /// Only the entry's state changed: only that is sent.
    Updated = 3,
}

/// An entry of an incident's list, part of which is its state (what changes as the
/// incident goes on: an alarm's severity, last seen time, tally and clearing; a service's or
/// customer's impact).
pub trait Entry: PartialEq {
    /// Whether `next` differs from `self` in its state only.
    fn same_but_state(&self, next: &Self) -> bool;
}

impl Entry for AlarmRef {
    fn same_but_state(&self, next: &AlarmRef) -> bool {
        self.identity() == next.identity() && self.text == next.text && self.raised_at == next.raised_at
    }
}

impl Entry for ImpactedService {
    fn same_but_state(&self, next: &ImpactedService) -> bool {
        self.id == next.id && self.name == next.name && self.customer == next.customer
    }
}

impl Entry for ImpactedCustomer {
    fn same_but_state(&self, next: &ImpactedCustomer) -> bool {
        self.id == next.id && self.name == next.name && self.sla == next.sla
    }
}

impl<T> ListEdit<'_, T> {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.edits.is_empty()
    }
}

/// What a change did to an incident's lists, borrowed from its new version.
#[derive(Debug)]
pub struct IncidentDelta<'a> {
    pub base_version: u64,
    pub root_cause_alarms: ListEdit<'a, AlarmRef>,
    pub symptom_alarms: ListEdit<'a, AlarmRef>,
    pub services: ListEdit<'a, ImpactedService>,
    pub customers: ListEdit<'a, ImpactedCustomer>,
    pub timeline_dropped: usize,
    pub timeline_added: Vec<&'a TimelineEntry>,
    pub notes_added: &'a [Note],
}

impl<'a> IncidentDelta<'a> {
    /// What made `next` of `earlier`, or `None` when the lists did not change in a way the
    /// delta expresses (entries reordered, a timeline or the notes rewritten): the
    /// subscriber is then sent the whole incident.
    pub fn between(earlier: &'a Incident, next: &'a Incident) -> Option<IncidentDelta<'a>> {
        if earlier.id != next.id || next.notes.len() < earlier.notes.len() {
            return None;
        }
        let alarm = |a: &'a AlarmRef| a.identity();
        let (timeline_dropped, added) = next.timeline.changes_since(&earlier.timeline)?;
        Some(IncidentDelta {
            base_version: earlier.version,
            root_cause_alarms: list_edit(&earlier.root_cause_alarms, &next.root_cause_alarms, alarm)?,
            symptom_alarms: list_edit(&earlier.symptom_alarms, &next.symptom_alarms, alarm)?,
            services: list_edit(&earlier.services, &next.services, |s| &*s.id)?,
            customers: list_edit(&earlier.customers, &next.customers, |c| &*c.id)?,
            timeline_dropped,
            timeline_added: added.collect(),
            notes_added: &next.notes[earlier.notes.len()..],
        })
    }
}

/// The edit that makes `next` of `earlier`, entries matched by `key`. Both lists keep their
/// entries in one order (whatever it is), so entries in both keep their relative order;
/// `None` if they do not, or a key repeats.
fn list_edit<'a, T: Entry, K: Hash + Eq>(
    earlier: &'a [T],
    next: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Option<ListEdit<'a, T>> {
    // Most changes touch a few entries of long lists: the equal ends are skipped cheaply
    // (entries share their strings, so comparing them mostly compares pointers).
    let prefix = earlier.iter().zip(next).take_while(|(a, b)| a == b).count();
    let (old_rest, new_rest) = (&earlier[prefix..], &next[prefix..]);
    let suffix = old_rest.iter().rev().zip(new_rest.iter().rev()).take_while(|(a, b)| a == b).count();
    let old_middle = &old_rest[..old_rest.len() - suffix];
    let new_middle = &new_rest[..new_rest.len() - suffix];
    let mut edit = ListEdit { removed: Vec::new(), edits: Vec::new() };
    let position = |offset: usize| u32::try_from(prefix + offset).ok();
    if old_middle.is_empty() || new_middle.is_empty() {
        for i in 0..old_middle.len() {
            edit.removed.push(position(i)?);
        }
        for (j, entry) in new_middle.iter().enumerate() {
            edit.edits.push((position(j)?, EditKind::Inserted, entry));
        }
        return Some(edit);
    }
    let mut at: FxHashMap<K, usize> = FxHashMap::default();
    at.reserve(old_middle.len());
    for (i, entry) in old_middle.iter().enumerate() {
        if at.insert(key(entry), i).is_some() {
            return None;
        }
    }
    let mut kept = vec![false; old_middle.len()];
    let mut last_kept = None;
    for (j, entry) in new_middle.iter().enumerate() {
        match at.remove(&key(entry)) {
            Some(i) => {
                if last_kept.is_some_and(|last| i < last) {
                    return None;
                }
                last_kept = Some(i);
                kept[i] = true;
                let earlier = &old_middle[i];
                if earlier != entry {
                    let kind = if earlier.same_but_state(entry) { EditKind::Updated } else { EditKind::Replaced };
                    edit.edits.push((position(j)?, kind, entry));
                }
            }
            None => edit.edits.push((position(j)?, EditKind::Inserted, entry)),
        }
    }
    for (i, kept) in kept.into_iter().enumerate() {
        if !kept {
            edit.removed.push(position(i)?);
        }
    }
    Some(edit)
}

/// Why a received change could not be applied to the incident held.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("the change is for version {base} of {id}, and version {held} is held")]
    Version { id: String, base: u64, held: u64 },
    #[error("{list}: position {index} is past the end of the list")]
    Position { list: &'static str, index: u32 },
    #[error("{list}: unknown edit kind {kind}")]
    Kind { list: &'static str, kind: i32 },
}

/// Brings `held` up to date from one change of the stream: `incident` is the summary of the
/// new version (every field but the lists) and `delta` what the lists did. A change without
/// a delta carries the whole incident: use it as it is. On an error other than
/// [`ApplyError::Version`] (which leaves `held` as it was) `held` may be partly changed: the
/// stream and the incidents held no longer agree, and the remedy is to subscribe again.
pub fn apply(held: &mut v1::Incident, incident: v1::Incident, delta: v1::IncidentDelta) -> Result<(), ApplyError> {
    if held.version != delta.base_version || held.id != incident.id {
        return Err(ApplyError::Version { id: incident.id, base: delta.base_version, held: held.version });
    }
    let alarm_state = |held: &mut v1::AlarmRef, next: v1::AlarmRef| {
        (held.severity, held.last_seen_time, held.tally, held.cleared_time) =
            (next.severity, next.last_seen_time, next.tally, next.cleared_time);
    };
    apply_list(
        &mut held.root_cause_alarms,
        "root_cause_alarms",
        &delta.root_cause_alarms_removed,
        delta.root_cause_alarms.into_iter().map(|e| (e.index, e.kind, e.alarm.unwrap_or_default())),
        alarm_state,
    )?;
    apply_list(
        &mut held.symptom_alarms,
        "symptom_alarms",
        &delta.symptom_alarms_removed,
        delta.symptom_alarms.into_iter().map(|e| (e.index, e.kind, e.alarm.unwrap_or_default())),
        alarm_state,
    )?;
    apply_list(
        &mut held.impacted_services,
        "impacted_services",
        &delta.impacted_services_removed,
        delta.impacted_services.into_iter().map(|e| (e.index, e.kind, e.service.unwrap_or_default())),
        |held, next| held.impact = next.impact,
    )?;
    apply_list(
        &mut held.impacted_customers,
        "impacted_customers",
        &delta.impacted_customers_removed,
        delta.impacted_customers.into_iter().map(|e| (e.index, e.kind, e.customer.unwrap_or_default())),
        |held, next| held.impact = next.impact,
    )?;
    let dropped = delta.timeline_dropped as usize;
    if dropped > 0 {
        if dropped >= held.timeline.len() {
            return Err(ApplyError::Position { list: "timeline", index: delta.timeline_dropped });
        }
        held.timeline.drain(1..=dropped);
    }
    held.timeline.extend(delta.timeline_added);
    held.notes.extend(delta.notes_added);
    let lists = std::mem::take(held);
    *held = v1::Incident {
        root_cause_alarms: lists.root_cause_alarms,
        symptom_alarms: lists.symptom_alarms,
        impacted_services: lists.impacted_services,
        impacted_customers: lists.impacted_customers,
        timeline: lists.timeline,
        notes: lists.notes,
        ..incident
    };
    Ok(())
}

/// One list: `removed` (positions in the held list), then `edits` (position, a
/// `v1::EditKind`, entry), an update taking the state of the entry with `update`.
fn apply_list<T>(
    list: &mut Vec<T>,
    name: &'static str,
    removed: &[u32],
    edits: impl Iterator<Item = (u32, i32, T)>,
    update: impl Fn(&mut T, T),
) -> Result<(), ApplyError> {
    for &index in removed.iter().rev() {
        if index as usize >= list.len() {
            return Err(ApplyError::Position { list: name, index });
        }
        list.remove(index as usize);
    }
    for (index, kind, entry) in edits {
        let at = index as usize;
        let past = || ApplyError::Position { list: name, index };
        match v1::EditKind::try_from(kind) {
            Ok(v1::EditKind::Inserted) if at <= list.len() => list.insert(at, entry),
            Ok(v1::EditKind::Replaced) => *list.get_mut(at).ok_or_else(past)? = entry,
            Ok(v1::EditKind::Updated) => update(list.get_mut(at).ok_or_else(past)?, entry),
            Ok(v1::EditKind::Inserted) => return Err(past()),
            Ok(v1::EditKind::Unspecified) | Err(_) => return Err(ApplyError::Kind { list: name, kind }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{play, ring};
    use crate::model::incident::{IncidentChange, IncidentId};
    use crate::proto::incident_to_proto;
    use prost::Message as _;
    use std::collections::HashMap;

    fn storm_changes(seed: u64) -> Vec<IncidentChange> {
        let (mut correlator, mut changes, mut now) = play(&ring(8), 3_000, seed, &mut |_| {});
        for _ in 0..200 {
            now += 1_000;
            correlator.tick(now, &mut changes);
        }
        changes
    }

    /// The summary a delta change carries: the incident without its lists.
    fn summary(incident: &Incident) -> v1::Incident {
        let mut bytes = Vec::new();
        super::super::encode::incident_summary(incident, &mut bytes);
        v1::Incident::decode(bytes.as_slice()).unwrap()
    }

    #[test]
    fn a_subscriber_applying_each_delta_holds_every_version_as_sent_whole() {
        let mut checked = 0;
        let mut whole = 0;
        let (mut delta_bytes, mut whole_bytes) = (0, 0);
        for seed in [3, 11] {
            let changes = storm_changes(seed);
            let mut held: HashMap<IncidentId, (std::sync::Arc<Incident>, v1::Incident)> = HashMap::new();
            for change in &changes {
                let next = &change.incident;
                let expected = incident_to_proto(next);
                let Some((earlier, client)) = held.get_mut(&next.id) else {
                    held.insert(next.id, (next.clone(), expected));
                    continue;
                };
                match IncidentDelta::between(earlier, next) {
                    Some(delta) => {
                        let mut encoded = Vec::new();
                        super::super::encode::incident_delta(&delta, &mut encoded);
                        let received = v1::IncidentDelta::decode(encoded.as_slice()).unwrap();
                        apply(client, summary(next), received).unwrap();
                        assert_eq!(*client, expected, "{} version {}", next.id, next.version);
                        checked += 1;
                        delta_bytes += encoded.len();
                        whole_bytes += expected.encoded_len();
                    }
                    None => {
                        whole += 1;
                        *client = expected;
                    }
                }
                *earlier = next.clone();
            }
        }
        // Storm changes are expressed as deltas, and they are much smaller.
        assert!(checked > 1_000 && whole * 100 < checked, "{checked} deltas, {whole} whole");
        assert!(delta_bytes * 10 < whole_bytes, "{delta_bytes} bytes of deltas against {whole_bytes} whole");
    }

    /// (key, state).
    impl Entry for (u8, u8) {
        fn same_but_state(&self, next: &(u8, u8)) -> bool {
            self.0 == next.0
        }
    }

    #[test]
    fn list_edits_cover_insertions_removals_and_changes_anywhere() {
        // Entries (key, value): the key identifies, the value may change.
        let lists: [&[(u8, u8)]; 6] = [
            &[],
            &[(1, 0), (2, 0), (3, 0), (4, 0), (5, 0)],
            &[(0, 0), (1, 0), (3, 1), (4, 0), (6, 0)],
            &[(2, 0), (5, 9)],
            &[(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)],
            &[(7, 0)],
        ];
        for earlier in lists {
            for next in lists {
                let edit = list_edit(earlier, next, |e| e.0).expect("same order");
                let mut list = earlier.to_vec();
                let edits = edit.edits.iter().map(|&(i, kind, e)| (i, kind as i32, *e));
                // An update carries the state only: the key is not sent.
                apply_list(&mut list, "test", &edit.removed, edits, |held, next| held.1 = next.1).unwrap();
                assert_eq!(list, next, "{earlier:?} -> {next:?} by {edit:?}");
                if earlier == next {
                    assert!(edit.is_empty());
                }
            }
        }
        // Entries that swapped places, or a repeated key: not expressible.
        assert!(list_edit(&[(1, 0), (2, 0), (3, 0)], &[(2, 0), (1, 0), (3, 0)], |e| e.0).is_none());
        assert!(list_edit(&[(1, 0), (1, 1)], &[(1, 2)], |e: &(u8, u8)| e.0).is_none());
    }

    #[test]
    fn a_delta_for_another_version_is_refused() {
        let changes = storm_changes(5);
        let first = &changes[0].incident;
        let later = changes.iter().map(|c| &c.incident).find(|i| i.id == first.id && i.version > first.version + 1);
        let later = later.expect("the first incident changed twice");
        let middle =
            changes.iter().map(|c| &c.incident).find(|i| i.id == first.id && i.version > first.version).unwrap();
        let delta = IncidentDelta::between(middle, later).unwrap();
        let mut encoded = Vec::new();
        super::super::encode::incident_delta(&delta, &mut encoded);
        let received = v1::IncidentDelta::decode(encoded.as_slice()).unwrap();
        let mut client = incident_to_proto(first);
        let error = apply(&mut client, summary(later), received).unwrap_err();
        assert!(matches!(error, ApplyError::Version { .. }), "{error}");
        assert_eq!(client, incident_to_proto(first), "left as it was");
    }
}
