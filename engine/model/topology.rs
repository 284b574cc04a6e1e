//! The service dependency graph: configuration items (CIs), their `dependent → dependency`
//! relations and impact rules. Built from [`CiRecord`]s (the topology file format and the
//! topology topic's value) and validated; then changed by batches of upserts and deletes
//! ([`Topology::apply`]), each validated as a whole and applied all or nothing, each one
//! version. CIs are addressed by a dense index (a slot) so that propagation walks vectors,
//! not hash maps. A deleted CI keeps its slot, and its id, to come back to, until its owner
//! (the correlator, once nothing names the slot any more) releases it
//! ([`Topology::release`]): a CI new to the topology then takes the lowest released slot
//! before the tables grow, so that a CMDB's churn (services provisioned and ceased every
//! day) does not make them grow.

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// Dense index of a CI inside one [`Topology`].
pub type CiIdx = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CiClass {
    Site,
    Device,
    Card,
    Port,
    Link,
    Rfs,
    Cfs,
    Customer,
}

/// How the states of a CI's dependencies combine into its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Worst dependency wins: every dependency is a single point of failure.
    #[default]
    Any,
    /// Redundancy: down only when every dependency is down, degraded while any is not up.
    All,
    /// Down when fewer than k dependencies are up, degraded while any is not up.
    Quorum(u32),
    /// A dependency outage or degradation degrades this CI, never takes it down.
    Degrade,
}

impl Rule {
    pub fn describe(self) -> String {
        match self {
            Rule::Any => "any".to_owned(),
            Rule::All => "all".to_owned(),
            Rule::Quorum(k) => format!("quorum {k}"),
            Rule::Degrade => "degrade".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaTier {
    Bronze,
    Silver,
    Gold,
}

/// One line of the topology file: a CI with its relations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CiRecord {
    pub id: String,
    pub class: CiClass,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub rule: Rule,
    /// For services: the customer CI the service is sold to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// For customers (and services that override their customer's): the SLA tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaTier>,
    /// Whether an impact opens an incident; customer-facing services by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incidents: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl CiRecord {
    /// A record with an id and nothing else (a device with no relations): what stands for
    /// a CI whose record no longer matters.
    pub fn bare(id: String) -> CiRecord {
        CiRecord {
            id,
            class: CiClass::Device,
            name: String::new(),
            depends_on: Vec::new(),
            rule: Rule::Any,
            customer: None,
            sla: None,
            incidents: None,
            attributes: BTreeMap::new(),
        }
    }
}

/// A validated CI inside a [`Topology`].
#[derive(Clone, Debug, PartialEq)]
pub struct Ci {
    pub id: Arc<str>,
    pub class: CiClass,
    pub name: Arc<str>,
    pub rule: Rule,
    pub customer: Option<CiIdx>,
    /// Effective tier: the CI's own, else its customer's.
    pub sla: Option<SlaTier>,
    /// The CI's own tier, as its record gives it.
    pub own_sla: Option<SlaTier>,
    pub incidents: bool,
    /// False once deleted: the slot stays, with its id, for the CI to come back to (until
    /// released: then its id is empty).
    pub present: bool,
    /// Boxed: most CIs have none, and an empty map would still take 24 bytes in each.
    pub attributes: Option<Box<BTreeMap<String, String>>>,
}

impl Ci {
    /// A slot taken for an id before its CI is put there.
    fn vacant(id: Arc<str>) -> Ci {
        Ci {
            name: id.clone(),
            id,
            class: CiClass::Device,
            rule: Rule::Any,
            customer: None,
            sla: None,
            own_sla: None,
            incidents: false,
            present: false,
            attributes: None,
        }
    }

    pub fn attributes(&self) -> impl Iterator<Item = (&String, &String)> {
        self.attributes.iter().flat_map(|a| a.iter())
    }

    /// A released slot: no id, nothing kept.
    fn released() -> Ci {
        static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
        Ci::vacant(EMPTY.clone())
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum TopologyError {
    #[error("duplicate CI id `{0}`")]
    DuplicateId(String),
    #[error("CI `{ci}` depends on unknown CI `{dependency}`")]
    UnknownDependency { ci: String, dependency: String },
    #[error("CI `{ci}` names unknown customer `{customer}`")]
    UnknownCustomer { ci: String, customer: String },
    #[error("CI `{ci}` names `{customer}` as its customer, which is a {class:?} CI, not a customer")]
    NotACustomer { ci: String, customer: String, class: CiClass },
    #[error("CI `{ci}` cannot be deleted: `{dependent}` still depends on it")]
    StillDependedOn { ci: String, dependent: String },
    #[error("CI `{ci}` cannot be deleted or stop being a customer: service `{service}` still names it")]
    StillCustomerOf { ci: String, service: String },
    #[error("CI `{ci}` has rule quorum {k} but only {deps} dependencies")]
    QuorumTooLarge { ci: String, k: u32, deps: usize },
    #[error("dependency cycle through CI `{ci}`{}", through.as_ref().map(|t| format!(" (its dependency `{t}` depends on it)")).unwrap_or_default())]
    Cycle {
        ci: String,
        /// Its dependency on the cycle, when known.
        through: Option<String>,
    },
    #[error("CI id must not be empty")]
    EmptyId,
}

impl TopologyError {
    /// The CI the error is about, if it names one.
    pub fn ci(&self) -> Option<&str> {
        match self {
            TopologyError::DuplicateId(ci) | TopologyError::Cycle { ci, .. } => Some(ci),
            TopologyError::UnknownDependency { ci, .. }
            | TopologyError::UnknownCustomer { ci, .. }
            | TopologyError::NotACustomer { ci, .. }
            | TopologyError::QuorumTooLarge { ci, .. }
            | TopologyError::StillDependedOn { ci, .. }
            | TopologyError::StillCustomerOf { ci, .. } => Some(ci),
            TopologyError::EmptyId => None,
        }
    }
}

/// Each CI's neighbours on one side of the relation, packed into one vector: CI `i`'s are
/// `targets[offsets[i]..offsets[i + 1]]` (8 bytes a CI and 4 a relation, where a vector per
/// CI would take 24 bytes a CI and an allocation each). A list set since the vectors were
/// packed is in `changed`, its slot's bit set in `moved`; the topology packs them again
/// once they are many.
#[derive(Clone, Debug, Default)]
struct Adjacency {
    offsets: Vec<u32>,
    targets: Vec<CiIdx>,
    changed: FxHashMap<CiIdx, Box<[CiIdx]>>,
    moved: Vec<u64>,
}

impl Adjacency {
    fn of(&self, idx: CiIdx) -> &[CiIdx] {
        let i = idx as usize;
        if !self.changed.is_empty() && self.moved.get(i / 64).is_some_and(|word| word & (1 << (i % 64)) != 0) {
            return self.changed.get(&idx).map_or(&[], |list| list);
        }
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&start), Some(&end)) => &self.targets[start as usize..end as usize],
            _ => &[],
        }
    }

    fn set(&mut self, idx: CiIdx, list: Box<[CiIdx]>) {
        let i = idx as usize;
        if self.moved.len() <= i / 64 {
            self.moved.resize(i / 64 + 1, 0);
        }
        self.moved[i / 64] |= 1 << (i % 64);
        self.changed.insert(idx, list);
    }

    /// Packs every slot's list (of `slots`) into the vectors again.
    fn pack(&mut self, slots: usize) {
        let mut offsets = Vec::with_capacity(slots + 1);
        let mut targets =
            Vec::with_capacity(self.targets.len() + self.changed.values().map(|l| l.len()).sum::<usize>());
        offsets.push(0);
        for i in 0..slots {
            targets.extend_from_slice(self.of(i as CiIdx));
            offsets.push(targets.len() as u32);
        }
        targets.shrink_to_fit();
        *self = Adjacency { offsets, targets, changed: FxHashMap::default(), moved: Vec::new() };
    }

    /// The same relations seen from the other side, each list in increasing CI order.
    fn reversed(&self, slots: usize) -> Adjacency {
        let mut offsets = vec![0u32; slots + 1];
        for i in 0..slots {
            for &t in self.of(i as CiIdx) {
                offsets[t as usize + 1] += 1;
            }
        }
        for i in 0..slots {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut targets = vec![0; offsets[slots] as usize];
        for i in 0..slots {
            for &t in self.of(i as CiIdx) {
                targets[next[t as usize] as usize] = i as CiIdx;
                next[t as usize] += 1;
            }
        }
        Adjacency { offsets, targets, changed: FxHashMap::default(), moved: Vec::new() }
    }
}

/// Grows a table indexed by slot to `len` entries: when it must reallocate, by a sixteenth
/// more, not double. The topology's slots grow a few at a time (CIs added faster than
/// deleted ones' slots are released), and doubling a million-slot table for them would
/// leave nearly half of it unused.
pub fn grow_table<T: Clone>(table: &mut Vec<T>, len: usize, fill: T) {
    if len > table.capacity() {
        table.reserve_exact(len + len / 16 - table.len());
    }
    table.resize(len.max(table.len()), fill);
}

fn hash(id: &str) -> u64 {
    FxBuildHasher.hash_one(id)
}

/// One change of a topology batch: a CI put whole (added, or replacing the one with its
/// id), or deleted by id (deleting a CI the topology does not have is no error: a
/// compacted topic may play a deletion again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CiChange {
    Upsert(CiRecord),
    Delete(String),
}

impl CiChange {
    pub fn id(&self) -> &str {
        match self {
            CiChange::Upsert(record) => &record.id,
            CiChange::Delete(id) => id,
        }
    }
}

/// What an applied batch did: each CI once, by slot, in slot order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The topology's version after the batch.
    pub version: u64,
    /// CIs new to the topology, or back after a deletion.
    pub added: Vec<CiIdx>,
    /// CIs present before and after whose record changed.
    pub changed: Vec<CiIdx>,
    /// CIs deleted by the batch.
    pub deleted: Vec<CiIdx>,
    /// CIs present after the batch whose dependencies are not what they were (every added
    /// one with dependencies among them), and the deleted ones that had some.
    pub rewired: Vec<CiIdx>,
    /// Of `changed`, those whose name, class, customer, tier or incidents flag moved: what
    /// incidents show of a CI. (Attributes and relations alone leave incidents' lists as
    /// they are.)
    pub relabelled: Vec<CiIdx>,
}

impl Applied {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.deleted.is_empty()
    }
}

/// The validated, indexed dependency graph.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    /// Every slot: CIs present, and deleted ones (`present` false) keeping their ids.
    cis: Vec<Ci>,
    /// CI indexes, hashed by the id of the CI they point at: 4 bytes an entry, where a map
    /// keyed by the id would repeat its 16-byte pointer.
    index: HashTable<CiIdx>,
    dependencies: Adjacency,
    dependents: Adjacency,
    /// Longest dependency chain below each CI: propagation visits CIs in rank order so
    /// that each is recomputed once, after all of its dependencies.
    rank: Vec<u32>,
    /// CIs present.
    present: usize,
    /// Batches applied since the topology was built.
    version: u64,
    /// Released slots, for CIs new to the topology to take, the lowest first.
    free: std::collections::BTreeSet<CiIdx>,
}

/// A CI from its record, its relations resolved by `lookup`.
fn ci_of(record: CiRecord, id: Arc<str>, customer: Option<CiIdx>) -> Ci {
    let name = if record.name.is_empty() { id.clone() } else { Arc::from(record.name) };
    Ci {
        id,
        class: record.class,
        name,
        rule: record.rule,
        customer,
        sla: record.sla,
        own_sla: record.sla,
        incidents: record.incidents.unwrap_or(record.class == CiClass::Cfs),
        present: true,
        attributes: (!record.attributes.is_empty()).then(|| Box::new(record.attributes)),
    }
}

/// A record's dependencies, each once, in its order: looked for among the few listed
/// before, or in a set for a CI with many (a national service over 20,000 ports).
fn distinct_dependencies<E>(
    record: &CiRecord,
    mut lookup: impl FnMut(&str) -> Result<CiIdx, E>,
    seen: &mut FxHashSet<CiIdx>,
    out: &mut Vec<CiIdx>,
) -> Result<(), E> {
    let start = out.len();
    let many = record.depends_on.len() > 32;
    seen.clear();
    for dep in &record.depends_on {
        let d = lookup(dep)?;
        let new = if many { seen.insert(d) } else { !out[start..].contains(&d) };
        if new {
            out.push(d);
        }
    }
    Ok(())
}

fn check_quorum(record: &CiRecord, deps: usize) -> Result<(), TopologyError> {
    match record.rule {
        Rule::Quorum(k) if k as usize > deps => Err(TopologyError::QuorumTooLarge { ci: record.id.clone(), k, deps }),
        _ => Ok(()),
    }
}

impl Topology {
    pub fn from_records(records: Vec<CiRecord>) -> Result<Topology, TopologyError> {
        let mut index: HashTable<CiIdx> = HashTable::with_capacity(records.len());
        let mut ids: Vec<Arc<str>> = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            if record.id.is_empty() {
                return Err(TopologyError::EmptyId);
            }
            let h = hash(&record.id);
            if index.find(h, |&j| *ids[j as usize] == *record.id).is_some() {
                return Err(TopologyError::DuplicateId(record.id.clone()));
            }
            index.insert_unique(h, i as CiIdx, |&j| hash(&ids[j as usize]));
            ids.push(Arc::from(record.id.as_str()));
        }
        let lookup = |id: &str| index.find(hash(id), |&j| *ids[j as usize] == *id).copied();

        let relations = records.iter().map(|r| r.depends_on.len()).sum();
        let mut dependencies = Adjacency { offsets: Vec::with_capacity(records.len() + 1), ..Default::default() };
        dependencies.targets.reserve_exact(relations);
        dependencies.offsets.push(0);
        let mut seen: FxHashSet<CiIdx> = Default::default();
        for record in &records {
            let start = dependencies.targets.len();
            let lookup_dep = |dep: &str| {
                lookup(dep).ok_or_else(|| TopologyError::UnknownDependency {
                    ci: record.id.clone(),
                    dependency: dep.to_owned(),
                })
            };
            distinct_dependencies(record, lookup_dep, &mut seen, &mut dependencies.targets)?;
            check_quorum(record, dependencies.targets.len() - start)?;
            dependencies.offsets.push(dependencies.targets.len() as u32);
        }
        let dependents = dependencies.reversed(records.len());

        let classes: Vec<CiClass> = records.iter().map(|r| r.class).collect();
        let mut cis = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            let customer = match &record.customer {
                Some(c) => {
                    let idx = lookup(c)
                        .ok_or_else(|| TopologyError::UnknownCustomer { ci: record.id.clone(), customer: c.clone() })?;
                    if classes[idx as usize] != CiClass::Customer {
                        return Err(TopologyError::NotACustomer {
                            ci: record.id.clone(),
                            customer: c.clone(),
                            class: classes[idx as usize],
                        });
                    }
                    Some(idx)
                }
                None => None,
            };
            cis.push(ci_of(record, ids[i].clone(), customer));
        }
        // A service without a tier of its own inherits its customer's.
        for i in 0..cis.len() {
            if cis[i].sla.is_none()
                && let Some(c) = cis[i].customer
            {
                cis[i].sla = cis[c as usize].sla;
            }
        }

        let rank = ranks(&dependencies, &dependents, cis.len())
            .map_err(|i| TopologyError::Cycle { ci: cis[i].id.to_string(), through: None })?;
        let present = cis.len();
        Ok(Topology { cis, index, dependencies, dependents, rank, present, version: 0, free: Default::default() })
    }

    /// A topology with each CI in a given slot: how a restore puts back the slots a
    /// running engine had (tables indexed by slot, and everything ordered by slot, stay as
    /// they were). `slots[i]` is slot `i`'s record and whether its CI is present (a deleted
    /// one keeps its id and name, with no dependencies), or `None` for a released slot.
    /// Validated as [`Topology::from_records`] validates.
    pub fn from_slots(slots: Vec<Option<(CiRecord, bool)>>) -> Result<Topology, TopologyError> {
        let mut deletes = Vec::new();
        let mut placeholders = Vec::new();
        // A deleted CI's customer is put back as it was, unchecked: the CI it names may
        // have changed since (batches check the CIs present only).
        let mut customers = Vec::new();
        let records: Vec<CiRecord> = slots
            .into_iter()
            .enumerate()
            .map(|(slot, entry)| match entry {
                Some((record, true)) => record,
                Some((mut record, false)) => {
                    record.depends_on.clear();
                    record.rule = Rule::Any;
                    if let Some(customer) = record.customer.take() {
                        customers.push((slot, customer));
                    }
                    deletes.push(CiChange::Delete(record.id.clone()));
                    record
                }
                None => {
                    // An id no record can have: ids are never empty, and this one is
                    // checked against the others as theirs are.
                    let id = format!("\0released-{slot}");
                    deletes.push(CiChange::Delete(id.clone()));
                    placeholders.push(slot as CiIdx);
                    CiRecord::bare(id)
                }
            })
            .collect();
        let mut topology = Topology::from_records(records)?;
        if !deletes.is_empty() {
            topology.apply(deletes)?;
            topology.release(&placeholders);
            topology.version = 0;
        }
        for (slot, customer) in customers {
            let customer = topology.slot(&customer);
            let tier = customer.and_then(|c| topology.cis[c as usize].own_sla);
            let ci = &mut topology.cis[slot];
            ci.customer = customer;
            ci.sla = ci.own_sla.or(tier);
        }
        Ok(topology)
    }

    /// CIs present.
    pub fn len(&self) -> usize {
        self.present
    }

    pub fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// Slots, deleted CIs' and released ones included: the length of a table indexed by
    /// [`CiIdx`].
    pub fn slots(&self) -> usize {
        self.cis.len()
    }

    /// Released slots, waiting for new CIs.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Releases deleted CIs' slots: their ids are forgotten (a CI with one of them comes
    /// back as a new CI, in another slot perhaps) and the slots taken by the next CIs new
    /// to the topology, the lowest first. The caller vouches that nothing it keeps names
    /// these slots any more. Slots of CIs present, or already released, are left alone;
    /// returns the ids released, with their slots.
    pub fn release(&mut self, slots: &[CiIdx]) -> Vec<(Arc<str>, CiIdx)> {
        let mut released = Vec::new();
        for &slot in slots {
            let ci = &self.cis[slot as usize];
            if ci.present || ci.id.is_empty() {
                continue;
            }
            debug_assert!(self.dependencies.of(slot).is_empty() && self.dependents.of(slot).is_empty());
            let id = ci.id.clone();
            let cis = &self.cis;
            if let Ok(entry) = self.index.find_entry(hash(&id), |&j| Arc::ptr_eq(&cis[j as usize].id, &id)) {
                entry.remove();
            }
            self.cis[slot as usize] = Ci::released();
            self.free.insert(slot);
            released.push((id, slot));
        }
        released
    }

    /// Batches applied since the topology was built.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the version: a restore takes back the one its changelog recorded.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The CI present with this id.
    pub fn lookup(&self, id: &str) -> Option<CiIdx> {
        self.slot(id).filter(|&idx| self.cis[idx as usize].present)
    }

    /// The slot of this id, present or deleted.
    pub fn slot(&self, id: &str) -> Option<CiIdx> {
        self.index.find(hash(id), |&j| *self.cis[j as usize].id == *id).copied()
    }

    pub fn ci(&self, idx: CiIdx) -> &Ci {
        &self.cis[idx as usize]
    }

    pub fn dependencies(&self, idx: CiIdx) -> &[CiIdx] {
        self.dependencies.of(idx)
    }

    pub fn dependents(&self, idx: CiIdx) -> &[CiIdx] {
        self.dependents.of(idx)
    }

    pub fn rank(&self, idx: CiIdx) -> u32 {
        self.rank[idx as usize]
    }

    /// The CIs present, by slot.
    pub fn iter(&self) -> impl Iterator<Item = (CiIdx, &Ci)> {
        self.cis.iter().enumerate().filter(|(_, ci)| ci.present).map(|(i, ci)| (i as CiIdx, ci))
    }

    /// The record a CI present would be written as.
    pub fn record(&self, idx: CiIdx) -> CiRecord {
        let ci = &self.cis[idx as usize];
        CiRecord {
            id: ci.id.to_string(),
            class: ci.class,
            name: if ci.name == ci.id { String::new() } else { ci.name.to_string() },
            depends_on: self.dependencies(idx).iter().map(|&d| self.cis[d as usize].id.to_string()).collect(),
            rule: ci.rule,
            customer: ci.customer.map(|c| self.cis[c as usize].id.to_string()),
            sla: ci.own_sla,
            incidents: (ci.incidents != (ci.class == CiClass::Cfs)).then_some(ci.incidents),
            attributes: ci.attributes.as_deref().cloned().unwrap_or_default(),
        }
    }

    /// Whether applying `change` would leave the topology as it is: an upsert of the record
    /// a present CI already has (written as [`Topology::record`] gives it back, or with the
    /// name or the incidents flag spelled out at their defaults, or a dependency twice), or
    /// the delete of a CI not present. A feed that sends the whole CMDB again changes
    /// nothing, and moves no version.
    pub fn is_current(&self, change: &CiChange) -> bool {
        match change {
            CiChange::Delete(id) => self.lookup(id).is_none(),
            CiChange::Upsert(record) => {
                let Some(idx) = self.lookup(&record.id) else { return false };
                let ci = &self.cis[idx as usize];
                let dependencies = self.dependencies(idx);
                let name = if record.name.is_empty() { &record.id } else { &record.name };
                // The listed dependencies, each once in its first place, must be the CI's.
                let mut next = 0;
                let mut earlier: Option<FxHashSet<CiIdx>> = None;
                for dep in &record.depends_on {
                    let Some(d) = self.lookup(dep) else { return false };
                    if dependencies.get(next) == Some(&d) {
                        next += 1;
                        if let Some(earlier) = &mut earlier {
                            earlier.insert(d);
                        }
                        continue;
                    }
                    let earlier = earlier.get_or_insert_with(|| dependencies[..next].iter().copied().collect());
                    if !earlier.contains(&d) {
                        return false;
                    }
                }
                ci.class == record.class
                    && *ci.name == **name
                    && next == dependencies.len()
                    && ci.rule == record.rule
                    && ci.customer.map(|c| &*self.cis[c as usize].id) == record.customer.as_deref()
                    && ci.own_sla == record.sla
                    && ci.incidents == record.incidents.unwrap_or(record.class == CiClass::Cfs)
                    && ci.attributes.as_deref().map_or(record.attributes.is_empty(), |a| *a == record.attributes)
            }
        }
    }

    /// Applies a batch of changes, in order, as one: validated as a whole (the
    /// dependencies and customers every CI names must be present after it, quorums
    /// possible, no cycle, nothing left depending on a deleted CI), and either applied
    /// whole, the version moving on by one, or refused whole with the first error found,
    /// naming the CI, the topology unchanged. An id twice in a batch: its last change
    /// counts.
    pub fn apply(&mut self, batch: Vec<CiChange>) -> Result<Applied, TopologyError> {
        // The batch's last word on each id, ids in the order they first appear.
        let mut staged: Vec<CiChange> = Vec::with_capacity(batch.len());
        let mut by_id: FxHashMap<String, usize> = FxHashMap::default();
        for change in batch {
            if change.id().is_empty() {
                return Err(TopologyError::EmptyId);
            }
            match by_id.get(change.id()) {
                Some(&at) => staged[at] = change,
                None => {
                    by_id.insert(change.id().to_owned(), staged.len());
                    staged.push(change);
                }
            }
        }
        self.validate(&staged, &by_id)?;

        // Slots for the ids new to the topology, then every change in place.
        let mut applied = Applied::default();
        let mut slots = Vec::with_capacity(staged.len());
        for change in &staged {
            let slot = match self.slot(change.id()) {
                Some(slot) => Some(slot),
                None if matches!(change, CiChange::Upsert(_)) => {
                    let id: Arc<str> = Arc::from(change.id());
                    let h = hash(&id);
                    let ci = Ci::vacant(id);
                    let slot = match self.free.pop_first() {
                        Some(slot) => {
                            self.cis[slot as usize] = ci;
                            self.rank[slot as usize] = 0;
                            slot
                        }
                        None => {
                            let slot = self.cis.len();
                            grow_table(&mut self.cis, slot + 1, ci);
                            grow_table(&mut self.rank, slot + 1, 0);
                            slot as CiIdx
                        }
                    };
                    let cis = &self.cis;
                    self.index.insert_unique(h, slot, |&j| hash(&cis[j as usize].id));
                    Some(slot)
                }
                None => None,
            };
            slots.push(slot);
        }
        // An existing customer's own tier moved: its services without one follow.
        let mut tiers_moved = false;
        let mut upserted: Vec<(CiIdx, Ci, bool)> = Vec::new();
        let mut seen = FxHashSet::default();
        let mut dependents_moved = FxHashMap::default();
        for (change, slot) in staged.into_iter().zip(slots) {
            let Some(slot) = slot else { continue };
            let was_present = self.cis[slot as usize].present;
            match change {
                CiChange::Delete(_) => {
                    if !was_present {
                        continue;
                    }
                    self.cis[slot as usize].present = false;
                    self.present -= 1;
                    if self.rewire(slot, Vec::new(), &mut dependents_moved) {
                        applied.rewired.push(slot);
                    }
                    applied.deleted.push(slot);
                }
                CiChange::Upsert(record) => {
                    let mut deps = Vec::with_capacity(record.depends_on.len());
                    let lookup = |dep: &str| self.slot(dep).ok_or(());
                    distinct_dependencies(&record, lookup, &mut seen, &mut deps)
                        .expect("dependencies validated before any change");
                    let customer = record.customer.as_deref().and_then(|c| self.slot(c));
                    let id = self.cis[slot as usize].id.clone();
                    let before = std::mem::replace(&mut self.cis[slot as usize], ci_of(record, id, customer));
                    let after = &self.cis[slot as usize];
                    tiers_moved |= was_present
                        && before.class == CiClass::Customer
                        && after.class == CiClass::Customer
                        && before.own_sla != after.own_sla;
                    let rewired = self.rewire(slot, deps, &mut dependents_moved);
                    if rewired {
                        applied.rewired.push(slot);
                    }
                    if !was_present {
                        self.present += 1;
                    }
                    upserted.push((slot, before, was_present && !rewired));
                }
            }
        }
        self.move_dependents(dependents_moved);
        // Effective tiers: a CI's own, else its customer's, once every customer is in place.
        if tiers_moved {
            for i in 0..self.cis.len() {
                if let Some(c) = self.cis[i].customer {
                    self.cis[i].sla = self.cis[i].own_sla.or(self.cis[c as usize].own_sla);
                }
            }
        } else {
            for &(slot, _, _) in &upserted {
                let ci = &self.cis[slot as usize];
                let inherited = ci.customer.and_then(|c| self.cis[c as usize].own_sla);
                self.cis[slot as usize].sla = ci.own_sla.or(inherited);
            }
        }
        for (slot, before, unwired) in upserted {
            let after = &self.cis[slot as usize];
            if !before.present {
                applied.added.push(slot);
            } else if !unwired || before != *after {
                applied.changed.push(slot);
                fn shown(ci: &Ci) -> (CiClass, &str, Option<CiIdx>, Option<SlaTier>, bool) {
                    (ci.class, &ci.name, ci.customer, ci.sla, ci.incidents)
                }
                if shown(&before) != shown(after) {
                    applied.relabelled.push(slot);
                }
            }
        }
        if tiers_moved {
            // Services took their customers' new tiers: their incidents show them.
            applied.relabelled.extend(
                self.cis
                    .iter()
                    .enumerate()
                    .filter(|(_, ci)| ci.present && ci.customer.is_some())
                    .map(|(i, _)| i as CiIdx),
            );
            applied.relabelled.sort_unstable();
            applied.relabelled.dedup();
        }
        for list in [
            &mut applied.added,
            &mut applied.changed,
            &mut applied.deleted,
            &mut applied.rewired,
            &mut applied.relabelled,
        ] {
            list.sort_unstable();
        }
        self.rerank(&applied.rewired);
        if self.dependencies.changed.len() + self.dependents.changed.len() > (self.cis.len() / 8).max(4096) {
            self.pack();
        }
        self.version += 1;
        applied.version = self.version;
        Ok(applied)
    }

    /// Sets a CI's dependencies; notes in `moved` what its dependencies' dependents lists
    /// gain and lose (each list is rewritten once, for the whole batch). True when they
    /// moved.
    fn rewire(&mut self, idx: CiIdx, deps: Vec<CiIdx>, moved: &mut FxHashMap<CiIdx, DependentsMoved>) -> bool {
        let before = self.dependencies.of(idx);
        if before == deps.as_slice() {
            return false;
        }
        let (mut old, mut new) = (before.to_vec(), deps.clone());
        old.sort_unstable();
        new.sort_unstable();
        let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
        loop {
            match (old.peek().copied(), new.peek().copied()) {
                (Some(o), Some(n)) if o == n => {
                    old.next();
                    new.next();
                }
                (Some(o), n) if n.is_none_or(|n| o < n) => {
                    moved.entry(o).or_default().lost.push(idx);
                    old.next();
                }
                (_, Some(n)) => {
                    moved.entry(n).or_default().gained.push(idx);
                    new.next();
                }
                _ => break,
            }
        }
        self.dependencies.set(idx, deps.into_boxed_slice());
        true
    }

    /// Rewrites the dependents lists a batch moved, each once.
    fn move_dependents(&mut self, moved: FxHashMap<CiIdx, DependentsMoved>) {
        for (ci, DependentsMoved { mut gained, mut lost }) in moved {
            lost.sort_unstable();
            gained.sort_unstable();
            let mut list: Vec<CiIdx> =
                self.dependents.of(ci).iter().copied().filter(|x| lost.binary_search(x).is_err()).collect();
            list.extend(gained);
            list.sort_unstable();
            list.dedup();
            self.dependents.set(ci, list.into_boxed_slice());
        }
    }

    /// Sets the ranks of the rewired CIs to their longest chains again, and those of every
    /// CI above them: ranks are a function of the graph alone, never of the batches that
    /// made it, so that propagation visits CIs in the same order however the topology came
    /// to be (a restore rebuilds it otherwise). Kahn's algorithm over the CIs above the
    /// rewired ones: each of them, and each of their relations, is looked at once.
    fn rerank(&mut self, rewired: &[CiIdx]) {
        if rewired.is_empty() {
            return;
        }
        let mut above: FxHashMap<CiIdx, u32> = FxHashMap::default();
        let mut stack: Vec<CiIdx> = rewired.to_vec();
        while let Some(idx) = stack.pop() {
            if above.insert(idx, 0).is_none() {
                stack.extend_from_slice(self.dependents.of(idx));
            }
        }
        // Each one's dependencies among them, still to be ranked.
        let members: Vec<CiIdx> = above.keys().copied().collect();
        for &idx in &members {
            let waiting = self.dependencies(idx).iter().filter(|d| above.contains_key(d)).count() as u32;
            above.insert(idx, waiting);
        }
        let mut ready: Vec<CiIdx> = members.into_iter().filter(|idx| above[idx] == 0).collect();
        let mut ranked = 0;
        while let Some(idx) = ready.pop() {
            ranked += 1;
            self.rank[idx as usize] =
                self.dependencies(idx).iter().map(|&d| self.rank[d as usize] + 1).max().unwrap_or(0);
            for &dependent in self.dependents.of(idx) {
                let waiting = above.get_mut(&dependent).expect("a dependent is above");
                *waiting -= 1;
                if *waiting == 0 {
                    ready.push(dependent);
                }
            }
        }
        // Validation keeps cycles out: one here would be a bug, stopped loudly.
        assert_eq!(ranked, above.len(), "a dependency cycle above the rewired CIs");
    }

    /// Packs the changed relation lists and sets every rank to its longest chain again.
    fn pack(&mut self) {
        let slots = self.cis.len();
        self.dependencies.pack(slots);
        self.dependents.pack(slots);
        self.rank = ranks(&self.dependencies, &self.dependents, slots).expect("a batch never leaves a cycle");
    }

    /// Checks a batch (each id once) against the topology as it would be after it.
    fn validate(&self, staged: &[CiChange], by_id: &FxHashMap<String, usize>) -> Result<(), TopologyError> {
        // The class a CI has after the batch, if it is present then.
        let after = |id: &str| -> Option<CiClass> {
            match by_id.get(id).map(|&at| &staged[at]) {
                Some(CiChange::Upsert(record)) => Some(record.class),
                Some(CiChange::Delete(_)) => None,
                None => self.lookup(id).map(|idx| self.cis[idx as usize].class),
            }
        };
        let mut seen = FxHashSet::default();
        let mut deps = Vec::new();
        // Customers deleted or no longer customers, and CIs deleted: what named them must
        // be in the batch too.
        let mut unmade_customers = FxHashSet::default();
        for change in staged {
            let current = self.lookup(change.id());
            match change {
                CiChange::Delete(id) => {
                    let Some(idx) = current else { continue };
                    for &dependent in self.dependents(idx) {
                        let dependent_id = &self.cis[dependent as usize].id;
                        if !by_id.contains_key(&**dependent_id) {
                            return Err(TopologyError::StillDependedOn {
                                ci: id.clone(),
                                dependent: dependent_id.to_string(),
                            });
                        }
                    }
                    if self.cis[idx as usize].class == CiClass::Customer {
                        unmade_customers.insert(idx);
                    }
                }
                CiChange::Upsert(record) => {
                    deps.clear();
                    let lookup = |dep: &str| match after(dep) {
                        Some(_) => Ok(self.slot(dep).unwrap_or_else(|| by_id[dep] as CiIdx | STAGED)),
                        None => {
                            Err(TopologyError::UnknownDependency { ci: record.id.clone(), dependency: dep.to_owned() })
                        }
                    };
                    distinct_dependencies(record, lookup, &mut seen, &mut deps)?;
                    check_quorum(record, deps.len())?;
                    if let Some(customer) = &record.customer {
                        match after(customer) {
                            None => {
                                return Err(TopologyError::UnknownCustomer {
                                    ci: record.id.clone(),
                                    customer: customer.clone(),
                                });
                            }
                            Some(CiClass::Customer) => {}
                            Some(class) => {
                                return Err(TopologyError::NotACustomer {
                                    ci: record.id.clone(),
                                    customer: customer.clone(),
                                    class,
                                });
                            }
                        }
                    }
                    if let Some(idx) = current
                        && self.cis[idx as usize].class == CiClass::Customer
                        && record.class != CiClass::Customer
                    {
                        unmade_customers.insert(idx);
                    }
                }
            }
        }
        if !unmade_customers.is_empty() {
            for (_, ci) in self.iter() {
                if let Some(c) = ci.customer
                    && unmade_customers.contains(&c)
                    && !by_id.contains_key(&*ci.id)
                {
                    return Err(TopologyError::StillCustomerOf {
                        ci: self.cis[c as usize].id.to_string(),
                        service: ci.id.to_string(),
                    });
                }
            }
        }
        self.check_cycles(staged, by_id, &after)
    }

    /// Whether the batch closes a dependency cycle. One would pass through a CI whose
    /// dependencies the batch sets: followed from each of them, down the dependencies as
    /// they would be. Below the lowest rank of those already present, a CI the batch
    /// leaves alone leads only to CIs of lower rank it leaves alone too: not followed.
    fn check_cycles(
        &self,
        staged: &[CiChange],
        by_id: &FxHashMap<String, usize>,
        after: &dyn Fn(&str) -> Option<CiClass>,
    ) -> Result<(), TopologyError> {
        let floor = staged
            .iter()
            .filter(|c| matches!(c, CiChange::Upsert(_)))
            .filter_map(|c| self.lookup(c.id()))
            .map(|idx| self.rank[idx as usize])
            .min();
        // A node: a CI present (its slot) or one the batch adds (its place in the batch,
        // marked). Its dependencies as they would be after the batch.
        let deps_of = |node: CiIdx| -> Vec<CiIdx> {
            let change = if node & STAGED != 0 {
                Some(&staged[(node & !STAGED) as usize])
            } else {
                by_id.get(&*self.cis[node as usize].id).map(|&at| &staged[at])
            };
            match change {
                Some(CiChange::Upsert(record)) => record
                    .depends_on
                    .iter()
                    .filter(|d| after(d).is_some())
                    .map(|d| self.slot(d).unwrap_or_else(|| by_id[d.as_str()] as CiIdx | STAGED))
                    .collect(),
                Some(CiChange::Delete(_)) => Vec::new(),
                None => self.dependencies(node).to_vec(),
            }
        };
        let pruned = |node: CiIdx| -> bool {
            node & STAGED == 0
                && !by_id.contains_key(&*self.cis[node as usize].id)
                && floor.is_none_or(|floor| self.rank[node as usize] < floor)
        };
        // Depth-first, iterative: 1 on the current path, 2 done.
        let mut marks: FxHashMap<CiIdx, u8> = FxHashMap::default();
        for (at, change) in staged.iter().enumerate() {
            if !matches!(change, CiChange::Upsert(_)) {
                continue;
            }
            let start = self.slot(change.id()).unwrap_or(at as CiIdx | STAGED);
            if marks.contains_key(&start) {
                continue;
            }
            let mut stack: Vec<(CiIdx, Vec<CiIdx>)> = vec![(start, deps_of(start))];
            marks.insert(start, 1);
            while let Some((node, pending)) = stack.last_mut() {
                let node = *node;
                match pending.pop() {
                    Some(next) if pruned(next) => {}
                    Some(next) => match marks.get(&next) {
                        Some(1) => {
                            // The cycle: the path from `next` to here, and back to `next`. It
                            // is named by the CI on it closest to here whose dependencies the
                            // batch sets (there is one: the topology had no cycle), with its
                            // dependency on the cycle.
                            let id = |node: CiIdx| {
                                if node & STAGED != 0 {
                                    staged[(node & !STAGED) as usize].id().to_owned()
                                } else {
                                    self.cis[node as usize].id.to_string()
                                }
                            };
                            let from = stack.iter().rposition(|(n, _)| *n == next).unwrap_or(0);
                            let path: Vec<CiIdx> = stack[from..].iter().map(|(n, _)| *n).chain([next]).collect();
                            let staged_at =
                                |node: CiIdx| node & STAGED != 0 || by_id.contains_key(&*self.cis[node as usize].id);
                            let at = (0..path.len() - 1).rev().find(|&i| staged_at(path[i])).unwrap_or(path.len() - 2);
                            return Err(TopologyError::Cycle { ci: id(path[at]), through: Some(id(path[at + 1])) });
                        }
                        Some(_) => {}
                        None => {
                            marks.insert(next, 1);
                            let deps = deps_of(next);
                            stack.push((next, deps));
                        }
                    },
                    None => {
                        marks.insert(node, 2);
                        stack.pop();
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a batch does to one CI's dependents list.
#[derive(Debug, Default)]
struct DependentsMoved {
    gained: Vec<CiIdx>,
    lost: Vec<CiIdx>,
}

/// Marks a CI the batch adds, by its place in the batch, among slots while validating.
const STAGED: CiIdx = 1 << 31;

/// Kahn's algorithm from the leaves up; returns a CI on a cycle if there is one.
fn ranks(dependencies: &Adjacency, dependents: &Adjacency, n: usize) -> Result<Vec<u32>, usize> {
    let mut pending: Vec<usize> = (0..n).map(|i| dependencies.of(i as CiIdx).len()).collect();
    let mut rank = vec![0u32; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &d in dependents.of(i as CiIdx) {
            let d = d as usize;
            rank[d] = rank[d].max(rank[i] + 1);
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.push(d);
            }
        }
    }
    if done == n { Ok(rank) } else { Err((0..n).find(|&i| pending[i] > 0).unwrap_or(0)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, class: CiClass, deps: &[&str], rule: Rule) -> CiRecord {
        CiRecord {
            id: id.into(),
            class,
            name: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            rule,
            customer: None,
            sla: None,
            incidents: None,
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn ranks_follow_dependencies() {
        let topo = Topology::from_records(vec![
            record("port", CiClass::Port, &["card"], Rule::Any),
            record("card", CiClass::Card, &["dev"], Rule::Any),
            record("dev", CiClass::Device, &[], Rule::Any),
        ])
        .unwrap();
        assert_eq!(topo.rank(topo.lookup("dev").unwrap()), 0);
        assert_eq!(topo.rank(topo.lookup("port").unwrap()), 2);
        assert_eq!(topo.dependents(topo.lookup("dev").unwrap()), &[topo.lookup("card").unwrap()]);
    }

    #[test]
    fn relations_are_packed_both_ways_once_each() {
        let topo = Topology::from_records(vec![
            record("dev", CiClass::Device, &[], Rule::Any),
            record("card-1", CiClass::Card, &["dev"], Rule::Any),
            record("card-2", CiClass::Card, &["dev", "dev"], Rule::Any),
            record("svc", CiClass::Rfs, &["card-2", "card-1"], Rule::All),
        ])
        .unwrap();
        let idx = |id: &str| topo.lookup(id).unwrap();
        assert_eq!(topo.dependencies(idx("card-2")), &[idx("dev")], "a repeated dependency counts once");
        assert_eq!(topo.dependencies(idx("svc")), &[idx("card-2"), idx("card-1")], "in the file's order");
        assert_eq!(topo.dependents(idx("dev")), &[idx("card-1"), idx("card-2")]);
        assert_eq!(topo.dependents(idx("card-1")), &[idx("svc")]);
        assert!(topo.dependencies(idx("dev")).is_empty() && topo.dependents(idx("svc")).is_empty());
        assert_eq!(topo.lookup("nope"), None);
        let duplicate = Topology::from_records(vec![
            record("dev", CiClass::Device, &[], Rule::Any),
            record("dev", CiClass::Device, &[], Rule::Any),
        ]);
        assert_eq!(duplicate.unwrap_err(), TopologyError::DuplicateId("dev".into()));

        // Past a few dependencies, repeats are found through a set, the order kept.
        let ports: Vec<String> = (0..100).map(|i| format!("port-{i}")).collect();
        let mut records: Vec<CiRecord> = ports.iter().map(|p| record(p, CiClass::Port, &[], Rule::Any)).collect();
        let mut listed: Vec<&str> = ports.iter().map(String::as_str).collect();
        listed.extend(["port-7", "port-99", "port-0"]);
        records.push(record("rfs", CiClass::Rfs, &listed, Rule::Quorum(50)));
        let topo = Topology::from_records(records).unwrap();
        let deps: Vec<CiIdx> = ports.iter().map(|p| topo.lookup(p).unwrap()).collect();
        assert_eq!(topo.dependencies(topo.lookup("rfs").unwrap()), deps.as_slice());
    }

    #[test]
    fn rejects_cycles_unknown_dependencies_and_bad_quorum() {
        let cycle = Topology::from_records(vec![
            record("a", CiClass::Device, &["b"], Rule::Any),
            record("b", CiClass::Device, &["a"], Rule::Any),
        ]);
        assert!(matches!(cycle, Err(TopologyError::Cycle { .. })));
        let unknown = Topology::from_records(vec![record("a", CiClass::Device, &["nope"], Rule::Any)]);
        assert_eq!(
            unknown.unwrap_err(),
            TopologyError::UnknownDependency { ci: "a".into(), dependency: "nope".into() }
        );
        let quorum = Topology::from_records(vec![
            record("a", CiClass::Device, &[], Rule::Any),
            record("s", CiClass::Rfs, &["a"], Rule::Quorum(2)),
        ]);
        assert!(matches!(quorum, Err(TopologyError::QuorumTooLarge { k: 2, deps: 1, .. })));
    }

    #[test]
    fn rule_reads_from_json() {
        let r: CiRecord =
            serde_json::from_str(r#"{"id":"s","class":"rfs","depends_on":["a","b","c"],"rule":{"quorum":2}}"#).unwrap();
        assert_eq!(r.rule, Rule::Quorum(2));
        let r: CiRecord = serde_json::from_str(r#"{"id":"s","class":"rfs","rule":"all"}"#).unwrap();
        assert_eq!(r.rule, Rule::All);
    }

    fn upsert(id: &str, class: CiClass, deps: &[&str]) -> CiChange {
        CiChange::Upsert(record(id, class, deps, Rule::Any))
    }

    fn ids(topo: &Topology, list: &[CiIdx]) -> Vec<String> {
        list.iter().map(|&i| topo.ci(i).id.to_string()).collect()
    }

    #[test]
    fn a_batch_adds_changes_and_deletes_cis_and_keeps_ranks_above_dependencies() {
        let mut topo = Topology::from_records(vec![
            record("dev", CiClass::Device, &[], Rule::Any),
            record("card", CiClass::Card, &["dev"], Rule::Any),
            record("port", CiClass::Port, &["card"], Rule::Any),
        ])
        .unwrap();
        assert_eq!(topo.version(), 0);
        let applied = topo
            .apply(vec![
                upsert("svc", CiClass::Rfs, &["port", "port-2"]),
                upsert("port-2", CiClass::Port, &["card"]),
                upsert("dev", CiClass::Device, &[]),
            ])
            .unwrap();
        assert_eq!(applied.version, 1);
        assert_eq!(ids(&topo, &applied.added), ["svc", "port-2"]);
        assert!(applied.changed.is_empty(), "an upsert that changes nothing is no change");
        assert_eq!(ids(&topo, &applied.rewired), ["svc", "port-2"]);
        let idx = |id: &str| topo.lookup(id).unwrap();
        assert_eq!(topo.dependents(idx("card")), &[idx("port"), idx("port-2")]);
        assert!(topo.rank(idx("svc")) > topo.rank(idx("port-2")));

        // The device moves under a new site: everything above it ranks higher.
        let applied =
            topo.apply(vec![upsert("site", CiClass::Site, &[]), upsert("dev", CiClass::Device, &["site"])]).unwrap();
        assert_eq!(ids(&topo, &applied.changed), ["dev"]);
        let idx = |id: &str| topo.lookup(id).unwrap();
        let chain = ["site", "dev", "card", "port", "svc"].map(|id| topo.rank(idx(id)));
        assert!(chain.windows(2).all(|w| w[0] < w[1]), "{chain:?}");

        // Deleting what others depend on needs them changed in the same batch.
        let before = topo.version();
        let refused = topo.apply(vec![CiChange::Delete("port-2".into())]);
        assert_eq!(
            refused.unwrap_err(),
            TopologyError::StillDependedOn { ci: "port-2".into(), dependent: "svc".into() }
        );
        assert_eq!(topo.version(), before, "a refused batch changes nothing");
        let applied =
            topo.apply(vec![CiChange::Delete("port-2".into()), upsert("svc", CiClass::Rfs, &["port"])]).unwrap();
        assert_eq!(ids(&topo, &applied.deleted), ["port-2"]);
        assert_eq!(topo.lookup("port-2"), None);
        let slot = topo.slot("port-2").unwrap();
        assert!(!topo.ci(slot).present);
        assert_eq!(topo.dependents(topo.lookup("card").unwrap()), &[topo.lookup("port").unwrap()]);
        assert_eq!(topo.len(), 5);
        assert_eq!(topo.iter().count(), 5);

        // It comes back to its slot.
        let applied = topo.apply(vec![upsert("port-2", CiClass::Port, &["card"])]).unwrap();
        assert_eq!(applied.added, [slot]);
        assert_eq!(topo.lookup("port-2"), Some(slot));
        // Deleting what is not there is no error.
        assert!(topo.apply(vec![CiChange::Delete("never".into())]).unwrap().is_empty());
    }

    #[test]
    fn a_released_slot_is_taken_by_the_next_new_ci_and_its_id_forgotten() {
        let mut topo = Topology::from_records(vec![
            record("dev", CiClass::Device, &[], Rule::Any),
            record("card-1", CiClass::Card, &["dev"], Rule::Any),
            record("card-2", CiClass::Card, &["dev"], Rule::Any),
        ])
        .unwrap();
        // Present CIs are not released.
        assert!(topo.release(&[1]).is_empty());
        topo.apply(vec![CiChange::Delete("card-1".into())]).unwrap();
        // Deleted and not yet released: it comes back to its slot.
        assert_eq!(topo.slot("card-1"), Some(1));
        let released = topo.release(&[1, 1]);
        assert_eq!(released, [(Arc::from("card-1"), 1)]);
        assert_eq!((topo.slot("card-1"), topo.lookup("card-1")), (None, None));
        assert_eq!((topo.slots(), topo.free_slots(), topo.len()), (3, 1, 2));
        // The next new CI takes the slot; the tables do not grow.
        let applied = topo.apply(vec![CiChange::Upsert(record("card-3", CiClass::Card, &["dev"], Rule::Any))]).unwrap();
        assert_eq!(applied.added, [1]);
        assert_eq!((topo.slots(), topo.free_slots(), topo.len()), (3, 0, 3));
        assert_eq!(topo.lookup("card-3"), Some(1));
        assert_eq!(ids(&topo, topo.dependents(0)), ["card-3", "card-2"]);
        // The released id comes back as a new CI, past the end now.
        let applied = topo.apply(vec![CiChange::Upsert(record("card-1", CiClass::Card, &["dev"], Rule::Any))]).unwrap();
        assert_eq!(applied.added, [3]);
        assert_eq!(topo.rank(3), 1);
    }

    #[test]
    fn a_batch_is_refused_whole_naming_the_ci() {
        let mut topo = Topology::from_records(vec![
            record("acme", CiClass::Customer, &[], Rule::Any),
            record("a", CiClass::Device, &[], Rule::Any),
            record("b", CiClass::Card, &["a"], Rule::Any),
        ])
        .unwrap();
        let mut service = record("vpn", CiClass::Cfs, &["b"], Rule::Any);
        service.customer = Some("acme".into());
        topo.apply(vec![CiChange::Upsert(service.clone())]).unwrap();
        let version = topo.version();
        let cases: Vec<(Vec<CiChange>, TopologyError)> = vec![
            (
                vec![upsert("c", CiClass::Port, &["b"]), upsert("a", CiClass::Device, &["c"])],
                // Named by the changed CI whose new dependency closes it.
                TopologyError::Cycle { ci: "a".into(), through: Some("c".into()) },
            ),
            (
                vec![upsert("x", CiClass::Port, &["nope"])],
                TopologyError::UnknownDependency { ci: "x".into(), dependency: "nope".into() },
            ),
            (
                vec![CiChange::Upsert(record("q", CiClass::Rfs, &["a", "b", "a"], Rule::Quorum(3)))],
                TopologyError::QuorumTooLarge { ci: "q".into(), k: 3, deps: 2 },
            ),
            (
                vec![CiChange::Upsert(CiRecord { customer: Some("a".into()), ..service.clone() })],
                TopologyError::NotACustomer { ci: "vpn".into(), customer: "a".into(), class: CiClass::Device },
            ),
            (
                vec![CiChange::Delete("acme".into())],
                TopologyError::StillCustomerOf { ci: "acme".into(), service: "vpn".into() },
            ),
            (
                vec![upsert("acme", CiClass::Site, &[])],
                TopologyError::StillCustomerOf { ci: "acme".into(), service: "vpn".into() },
            ),
            (vec![upsert("", CiClass::Port, &[])], TopologyError::EmptyId),
        ];
        for (batch, error) in cases {
            let before: Vec<CiRecord> = topo.iter().map(|(i, _)| topo.record(i)).collect();
            assert_eq!(topo.apply(batch.clone()).unwrap_err(), error, "{batch:?}");
            let after: Vec<CiRecord> = topo.iter().map(|(i, _)| topo.record(i)).collect();
            assert_eq!(before, after);
            assert_eq!(topo.version(), version);
        }
        // The customer's tier reaches its services, and a file refuses a non-customer too.
        let mut acme = record("acme", CiClass::Customer, &[], Rule::Any);
        acme.sla = Some(SlaTier::Gold);
        topo.apply(vec![CiChange::Upsert(acme)]).unwrap();
        assert_eq!(topo.ci(topo.lookup("vpn").unwrap()).sla, Some(SlaTier::Gold));
        let file = Topology::from_records(vec![
            record("a", CiClass::Device, &[], Rule::Any),
            CiRecord { customer: Some("a".into()), ..record("s", CiClass::Cfs, &["a"], Rule::Any) },
        ]);
        assert!(matches!(file, Err(TopologyError::NotACustomer { .. })));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const IDS: usize = 10;

        fn id(i: usize) -> String {
            format!("ci-{i}")
        }

        /// A change over a small universe of ids: a CI depending on up to three others
        /// (cycles, dangling and repeated dependencies included), sometimes a customer
        /// reference, sometimes a deletion.
        fn change() -> impl Strategy<Value = CiChange> {
            (0..IDS, 0..10u8, proptest::collection::vec(0..IDS, 0..4), 0..4u32, 0..IDS, 0..4u8).prop_map(
                |(i, kind, deps, quorum, customer, tier)| {
                    if kind == 0 {
                        return CiChange::Delete(id(i));
                    }
                    let class = if kind <= 2 { CiClass::Customer } else { CiClass::Cfs };
                    let deps: Vec<String> = deps.into_iter().map(id).collect();
                    let rule = if quorum == 0 { Rule::Any } else { Rule::Quorum(quorum) };
                    CiChange::Upsert(CiRecord {
                        id: id(i),
                        class,
                        name: String::new(),
                        depends_on: if class == CiClass::Customer { Vec::new() } else { deps },
                        rule: if class == CiClass::Customer { Rule::Any } else { rule },
                        customer: (class == CiClass::Cfs && tier > 0).then(|| id(customer)),
                        sla: [None, Some(SlaTier::Gold), Some(SlaTier::Bronze), None][tier as usize],
                        incidents: None,
                        attributes: BTreeMap::new(),
                    })
                },
            )
        }

        fn check_same(topo: &Topology, model: &BTreeMap<String, CiRecord>) -> Result<(), TestCaseError> {
            let built = Topology::from_records(model.values().cloned().collect()).expect("the model is valid");
            prop_assert_eq!(topo.len(), built.len());
            for (i, ci) in built.iter() {
                let idx = topo.lookup(&ci.id).expect("present");
                prop_assert_eq!(topo.record(idx), built.record(i));
                prop_assert_eq!(topo.ci(idx).sla, ci.sla);
                let dependents = |t: &Topology, x: CiIdx| {
                    let mut list = ids(t, t.dependents(x));
                    list.sort();
                    list
                };
                prop_assert_eq!(dependents(topo, idx), dependents(&built, i));
                prop_assert_eq!(topo.rank(idx), built.rank(i), "rank of {}: the longest chain below it", &ci.id);
            }
            for (_, ci) in topo.iter() {
                prop_assert!(model.contains_key(&*ci.id));
            }
            Ok(())
        }

        /// The topology [`Topology::from_slots`] builds from this one's slots is the same,
        /// CI by CI and slot by slot, released slots included.
        fn check_restored(topo: &Topology) -> Result<(), TestCaseError> {
            let slots = (0..topo.slots() as CiIdx)
                .map(|i| {
                    let ci = topo.ci(i);
                    (!ci.id.is_empty()).then(|| (topo.record(i), ci.present))
                })
                .collect();
            let restored = Topology::from_slots(slots).expect("a topology's own slots");
            prop_assert_eq!(restored.slots(), topo.slots());
            prop_assert_eq!(restored.len(), topo.len());
            prop_assert_eq!(restored.free_slots(), topo.free_slots());
            for i in 0..topo.slots() as CiIdx {
                prop_assert_eq!(&restored.ci(i).id, &topo.ci(i).id);
                prop_assert_eq!(restored.ci(i).present, topo.ci(i).present);
                if topo.ci(i).present {
                    prop_assert_eq!(restored.record(i), topo.record(i));
                    prop_assert_eq!(restored.rank(i), topo.rank(i));
                    prop_assert_eq!(restored.dependents(i), topo.dependents(i));
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

            /// Any sequence of batches leaves the topology a file of the same CIs would
            /// give, or refuses a batch exactly when that file would be invalid.
            #[test]
            fn batches_give_what_a_file_of_the_result_gives(
                batches in proptest::collection::vec(
                    (proptest::collection::vec(change(), 1..6), any::<bool>(), any::<bool>()),
                    1..12
                )
            ) {
                let mut topo = Topology::default();
                let mut model: BTreeMap<String, CiRecord> = BTreeMap::new();
                for (batch, pack, release) in batches {
                    if release {
                        let deleted: Vec<CiIdx> = (0..topo.slots() as CiIdx).collect();
                        topo.release(&deleted);
                    }
                    let mut next = model.clone();
                    for change in &batch {
                        match change {
                            CiChange::Upsert(record) => { next.insert(record.id.clone(), record.clone()); }
                            CiChange::Delete(id) => { next.remove(id); }
                        }
                    }
                    let valid = Topology::from_records(next.values().cloned().collect()).is_ok();
                    let version = topo.version();
                    match topo.apply(batch) {
                        Ok(applied) => {
                            prop_assert!(valid, "accepted a batch a file would refuse");
                            prop_assert_eq!(applied.version, version + 1);
                            model = next;
                        }
                        Err(error) => {
                            prop_assert!(!valid, "refused a valid batch: {}", error);
                            prop_assert_eq!(topo.version(), version);
                        }
                    }
                    if pack {
                        topo.pack();
                    }
                    check_same(&topo, &model)?;
                    check_restored(&topo)?;
                }
            }
        }
    }
}
