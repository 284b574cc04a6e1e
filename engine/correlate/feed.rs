//! The topology feed: CI records from the CMDB's compacted topic, applied as they come.
//!
//! A compacted topic keyed by CI id has no order across its partitions, and a CMDB writes
//! a change of several CIs as several records: a service may arrive before the port it
//! runs on, a port's tombstone before the update of the service that moved off it. Each
//! poll's records are applied as one batch (all or nothing, like a gRPC batch), less what
//! cannot apply yet: a change that names a CI not there, or deletes one something still
//! depends on, is **held**, keyed by its CI, until the CI it waits for changes; then it is
//! tried again. A change refused for what it is (a cycle, an impossible quorum, a customer
//! reference that is not a customer) is refused for good: the core dead-letters it.
//!
//! Held changes are core state: written to the changelog and restored with the rest, so a
//! restart neither loses nor doubles one. They are bounded (`topology.max_held`): past it the
//! oldest is refused, so a feed that never sends what it promised cannot grow memory.

use crate::model::EpochMillis;
use crate::model::topology::{CiChange, TopologyError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A topology change from the feed, with where it came from (`topic/partition/offset`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedChange {
    pub change: CiChange,
    pub source: String,
}

/// A feed change that cannot apply yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldChange {
    pub change: CiChange,
    /// The CI whose change may let it apply: the dependency or customer it names that is
    /// not there, or the CI that still depends on (or names) the one it deletes.
    pub waits_for: String,
    /// Why it waits: the validation error, readable.
    pub reason: String,
    /// Stream time it was first held at.
    pub since: EpochMillis,
    /// Arrival order: the oldest goes first when too many are held.
    pub order: u64,
    pub source: String,
}

/// A feed change refused for good, for the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Its place among the records of the feed batch it came in, if it came in the batch
    /// being applied (the original bytes are there); else it had been held.
    pub index: Option<usize>,
    pub change: CiChange,
    /// A stable, low-cardinality code.
    pub reason: &'static str,
    pub detail: String,
    pub source: String,
}

/// What one feed batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// Changes applied, in topology batches (usually one).
    pub applied: usize,
    /// Changes that left the topology as it was (the CMDB sending a CI again).
    pub unchanged: usize,
    /// Changes held this time (not counting those held before and held again).
    pub held: usize,
    /// Records replaced by a later one of the same CI (in the batch, or held) before being tried.
    pub superseded: usize,
    /// Changes refused this time (dead-lettered by the core).
    pub refused: usize,
    /// The topology versions the batch made, first and last.
    pub versions: Option<(u64, u64)>,
}

/// The held changes, by CI id.
#[derive(Clone, Debug, Default)]
pub struct Held {
    changes: BTreeMap<Arc<str>, HeldChange>,
    /// Held CI ids by the CI they wait for.
    waiting: BTreeMap<String, BTreeSet<Arc<str>>>,
    by_order: BTreeMap<u64, Arc<str>>,
    next_order: u64,
    /// Ids whose held change was set or dropped since the changelog last took them.
    dirty: BTreeSet<Arc<str>>,
}

impl Held {
    /// The held changes a changelog recorded.
    pub fn restore(changes: impl IntoIterator<Item = (Arc<str>, HeldChange)>) -> Held {
        let mut held = Held::default();
        for (id, change) in changes {
            held.next_order = held.next_order.max(change.order + 1);
            held.insert(id, change);
        }
        held.dirty.clear();
        held
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&HeldChange> {
        self.changes.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &HeldChange)> {
        self.changes.iter()
    }

    /// The held changes, oldest first.
    pub fn oldest(&self) -> impl Iterator<Item = (&Arc<str>, &HeldChange)> {
        self.by_order.values().filter_map(|id| self.changes.get_key_value(id))
    }

    /// The next arrival number: a change held anew takes it.
    pub fn next_order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order - 1
    }

    pub fn insert(&mut self, id: Arc<str>, change: HeldChange) {
        self.remove(&id);
        self.waiting.entry(change.waits_for.clone()).or_default().insert(id.clone());
        self.by_order.insert(change.order, id.clone());
        self.dirty.insert(id.clone());
        self.changes.insert(id, change);
    }

    pub fn remove(&mut self, id: &str) -> Option<HeldChange> {
        let (id, change) = self.changes.remove_entry(id)?;
        if let Some(ids) = self.waiting.get_mut(&change.waits_for) {
            ids.remove(&id);
            if ids.is_empty() {
                self.waiting.remove(&change.waits_for);
            }
        }
        self.by_order.remove(&change.order);
        self.dirty.insert(id);
        Some(change)
    }

    /// The changes waiting for `id`.
    pub fn waiting_for(&self, id: &str) -> Vec<(&Arc<str>, &HeldChange)> {
        let Some(ids) = self.waiting.get(id) else { return Vec::new() };
        ids.iter().filter_map(|held| self.changes.get_key_value(held)).collect()
    }

    /// Takes out the oldest change.
    pub fn take_oldest(&mut self) -> Option<(Arc<str>, HeldChange)> {
        let (_, id) = self.by_order.first_key_value()?;
        let id = id.clone();
        self.remove(&id).map(|change| (id, change))
    }

    /// The ids whose held change was set or dropped since the last call, with it.
    pub fn take_dirty(&mut self) -> Vec<(Arc<str>, Option<HeldChange>)> {
        std::mem::take(&mut self.dirty).into_iter().map(|id| (id.clone(), self.changes.get(&id).cloned())).collect()
    }
}

/// A change waiting to be tried in the current feed batch.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub change: CiChange,
    pub source: String,
    pub index: Option<usize>,
    /// Set when it had been held: kept when it is held again.
    pub held: Option<(EpochMillis, u64)>,
}

impl Candidate {
    pub(super) fn held(held: &HeldChange) -> Candidate {
        Candidate {
            change: held.change.clone(),
            source: held.source.clone(),
            index: None,
            held: Some((held.since, held.order)),
        }
    }
}

/// The longest reason a held change keeps (it names two CIs, which may be long).
pub(super) const MAX_REASON: usize = 1024;

/// How the feed treats a change the topology refused: hold it until the named CI changes,
/// or refuse it for good.
pub(super) enum Verdict {
    Hold { waits_for: String },
    Refuse { reason: &'static str },
}

/// What the feed makes of a validation error: a change another CI's change may mend (a
/// name not there yet, a deletion still depended on, a customer not yet a customer, a
/// cycle another record of the same CMDB change breaks) is held, for a while
/// (`topology.max_held_secs`); one wrong in itself is refused at once.
pub(super) fn verdict(error: &TopologyError) -> Verdict {
    match error {
        TopologyError::UnknownDependency { dependency, .. } => Verdict::Hold { waits_for: dependency.clone() },
        TopologyError::UnknownCustomer { customer, .. } | TopologyError::NotACustomer { customer, .. } => {
            Verdict::Hold { waits_for: customer.clone() }
        }
        TopologyError::StillDependedOn { dependent, .. } => Verdict::Hold { waits_for: dependent.clone() },
        TopologyError::StillCustomerOf { service, .. } => Verdict::Hold { waits_for: service.clone() },
        TopologyError::Cycle { through: Some(through), .. } => Verdict::Hold { waits_for: through.clone() },
        TopologyError::Cycle { through: None, .. } => Verdict::Refuse { reason: "dependency_cycle" },
        TopologyError::QuorumTooLarge { .. } => Verdict::Refuse { reason: "impossible_quorum" },
        TopologyError::DuplicateId(_) | TopologyError::EmptyId => Verdict::Refuse { reason: "invalid_ci" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(waits_for: &str, order: u64) -> HeldChange {
        HeldChange {
            change: CiChange::Delete("x".into()),
            waits_for: waits_for.into(),
            reason: String::new(),
            since: 0,
            order,
            source: String::new(),
        }
    }

    #[test]
    fn held_changes_are_found_by_what_they_wait_for_and_by_age() {
        let mut h = Held::default();
        h.insert("a".into(), held("p", 5));
        h.insert("b".into(), held("p", 3));
        h.insert("c".into(), held("q", 4));
        assert_eq!(h.len(), 3);
        let woken: Vec<_> = h.waiting_for("p").into_iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(woken, vec![Arc::from("a"), Arc::from("b")]);
        h.remove("a");
        h.remove("b");
        assert!(h.waiting_for("p").is_empty());
        h.insert("d".into(), held("r", 1));
        assert_eq!(h.take_oldest().map(|(id, _)| id), Some("d".into()));
        assert_eq!(h.take_oldest().map(|(id, _)| id), Some("c".into()));
        assert!(h.is_empty());
        // Replacing a held change drops its old wait.
        h.insert("a".into(), held("p", 7));
        h.insert("a".into(), held("q", 8));
        assert!(h.waiting_for("p").is_empty());
        assert_eq!(h.waiting_for("q").len(), 1);
        let dirty = h.take_dirty();
        assert!(dirty.iter().all(|(id, change)| change.is_some() == (&**id == "a")), "{dirty:?}");
        assert!(h.take_dirty().is_empty());
    }

    #[test]
    fn a_restored_set_numbers_new_arrivals_after_its_own() {
        let mut h = Held::restore([(Arc::from("a"), held("p", 41))]);
        assert!(h.take_dirty().is_empty(), "a restore has nothing to write again");
        assert_eq!(h.next_order(), 42);
    }
}
