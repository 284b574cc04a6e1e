//! The active alarms an incident's alarm list leaves out once it is full: grouped by
//! resource (a CI's alarms are looked up by its id, with no key to build), in alarm order,
//! so that the first of them fills the list when room comes.

use crate::model::alarm::AlarmRef;
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One resource's waiting alarms, in identity order: one, nearly always, held inline.
type Group = SmallVec<[AlarmRef; 1]>;

#[derive(Debug, Default)]
pub struct Waiting {
    groups: BTreeMap<Arc<str>, Group>,
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
    pub fn take(&mut self, resource: &str) -> Group {
        if self.groups.is_empty() {
            return Group::new();
        }
        let group = self.groups.remove(resource).unwrap_or_default();
        self.len -= group.len();
        group
    }

    /// Puts alarms of one resource, in identity order, past any it holds for it.
    pub fn put(&mut self, alarms: impl IntoIterator<Item = AlarmRef>) {
        for alarm in alarms {
            let group = self.groups.entry(alarm.resource.clone()).or_default();
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
