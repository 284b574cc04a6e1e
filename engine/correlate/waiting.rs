//! The active alarms an incident's alarm list leaves out once it is full: grouped by
//! resource, in alarm order, so that the first of them fills the list when room comes.
//!
//! A storm puts thousands of alarms here, one resource after the other, and looks up
//! nearly every resource it moves. The map's keys carry the first 16 bytes of their
//! resource inline, so that a search compares integers in its nodes and reads a
//! resource's text only where those are equal.

use crate::model::alarm::AlarmRef;
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One resource's waiting alarms, in identity order: one, nearly always, held inline.
type Group = SmallVec<[AlarmRef; 1]>;

/// A resource, ordered as its text is.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Resource {
    /// Its first 16 bytes, zero-padded, big-endian: where two resources differ there,
    /// this orders them as their texts; where not, their texts do.
    head: u128,
    text: Arc<str>,
}

impl Resource {
    fn new(text: &Arc<str>) -> Resource {
        let mut head = [0u8; 16];
        let n = text.len().min(16);
        head[..n].copy_from_slice(&text.as_bytes()[..n]);
        Resource { head: u128::from_be_bytes(head), text: text.clone() }
    }
}

impl Ord for Resource {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head.cmp(&other.head).then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for Resource {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
pub struct Waiting {
    groups: BTreeMap<Resource, Group>,
    len: usize,
}

impl Waiting {
    /// Alarms waiting, over every resource.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the alarms of `resource` out, in identity order.
    pub fn take(&mut self, resource: &Arc<str>) -> Group {
        if self.len == 0 {
            return Group::new();
        }
        let group = self.groups.remove(&Resource::new(resource)).unwrap_or_default();
        self.len -= group.len();
        group
    }

    /// Puts alarms of one resource, in identity order, past any it holds for it.
    pub fn put(&mut self, alarms: impl IntoIterator<Item = AlarmRef>) {
        for alarm in alarms {
            let group = self.groups.entry(Resource::new(&alarm.resource)).or_default();
            let at = group.partition_point(|a| a.identity() < alarm.identity());
            group.insert(at, alarm);
            self.len += 1;
        }
    }

    /// The first waiting alarm in identity order, taken out.
    pub fn pop_first(&mut self) -> Option<AlarmRef> {
        let mut first = self.groups.first_entry()?;
        let alarm = first.get_mut().remove(0);
        if first.get().is_empty() {
            first.remove();
        }
        self.len -= 1;
        Some(alarm)
    }

    /// Every waiting alarm, in identity order.
    pub fn iter(&self) -> impl Iterator<Item = &AlarmRef> {
        self.groups.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alarm::Severity;

    fn alarm(resource: &str, alarm_type: &str) -> AlarmRef {
        AlarmRef {
            resource: Arc::from(resource),
            alarm_type: Arc::from(alarm_type),
            qualifier: Arc::from(""),
            severity: Severity::Major,
            text: Arc::from(""),
            raised_at: 0,
            last_seen: 0,
            tally: 1,
            cleared_at: None,
        }
    }

    fn names(alarms: impl IntoIterator<Item = AlarmRef>) -> Vec<String> {
        alarms.into_iter().map(|a| format!("{}/{}", a.resource, a.alarm_type)).collect()
    }

    #[test]
    fn alarms_come_out_in_identity_order_whatever_was_taken_and_put_again() {
        let mut waiting = Waiting::default();
        waiting.put([alarm("p-3", "LOS")]);
        waiting.put([alarm("p-1", "LOS"), alarm("p-1", "AIS")]);
        waiting.put([alarm("p-2", "LOS")]);
        assert_eq!(waiting.len(), 4);
        assert!(waiting.take(&Arc::from("p-9")).is_empty());
        for _ in 0..3 {
            let group = waiting.take(&Arc::from("p-2"));
            assert_eq!(group.len(), 1);
            waiting.put(group);
        }
        assert_eq!(names(waiting.take(&Arc::from("p-1"))), ["p-1/AIS", "p-1/LOS"]);
        waiting.put([alarm("p-0", "LOS")]);
        assert_eq!(names(waiting.iter().cloned()), ["p-0/LOS", "p-2/LOS", "p-3/LOS"]);
        let mut popped = Vec::new();
        while let Some(next) = waiting.pop_first() {
            popped.push(next);
        }
        assert_eq!(names(popped), ["p-0/LOS", "p-2/LOS", "p-3/LOS"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn resources_are_ordered_as_their_texts_within_and_past_the_inline_bytes() {
        let texts = [
            "",
            "a",
            "a\0",
            "a\0\0",
            "ab",
            "lyon-core-1/card-1/port-10",
            "lyon-core-1/card-1/port-9",
            "lyon-core-1/card-1",
            "lyon-core-1/card-",
            "0123456789abcdef",
            "0123456789abcdef0",
            "0123456789abcdeg",
            "0123456789abcde",
            "é",
            "z",
            "\u{10ffff}",
        ];
        for a in texts {
            for b in texts {
                let (ka, kb) = (Resource::new(&Arc::from(a)), Resource::new(&Arc::from(b)));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} against {b:?}");
            }
        }
    }
}
