//! The service dependency graph: configuration items (CIs), their `dependent → dependency`
//! relations and impact rules. Built once from [`CiRecord`]s (the topology file format and
//! the topology topic's value), validated, and then read-only; CIs are addressed by a dense
//! index so that propagation walks vectors, not hash maps.

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

/// A validated CI inside a [`Topology`].
#[derive(Clone, Debug)]
pub struct Ci {
    pub id: Arc<str>,
    pub class: CiClass,
    pub name: Arc<str>,
    pub rule: Rule,
    pub customer: Option<CiIdx>,
    /// Effective tier: the CI's own, else its customer's.
    pub sla: Option<SlaTier>,
    pub incidents: bool,
    /// Boxed: most CIs have none, and an empty map would still take 24 bytes in each.
    pub attributes: Option<Box<BTreeMap<String, String>>>,
}

impl Ci {
    pub fn attributes(&self) -> impl Iterator<Item = (&String, &String)> {
        self.attributes.iter().flat_map(|a| a.iter())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TopologyError {
    #[error("duplicate CI id `{0}`")]
    DuplicateId(String),
    #[error("CI `{ci}` depends on unknown CI `{dependency}`")]
    UnknownDependency { ci: String, dependency: String },
    #[error("CI `{ci}` names unknown customer `{customer}`")]
    UnknownCustomer { ci: String, customer: String },
    #[error("CI `{ci}` has rule quorum {k} but only {deps} dependencies")]
    QuorumTooLarge { ci: String, k: u32, deps: usize },
    #[error("dependency cycle through CI `{0}`")]
    Cycle(String),
    #[error("CI id must not be empty")]
    EmptyId,
}

/// Each CI's neighbours on one side of the relation, packed into one vector: CI `i`'s are
/// `targets[offsets[i]..offsets[i + 1]]` (8 bytes a CI and 4 a relation, where a vector per
/// CI would take 24 bytes a CI and an allocation each).
#[derive(Debug, Default)]
struct Adjacency {
    offsets: Vec<u32>,
    targets: Vec<CiIdx>,
}

impl Adjacency {
    fn of(&self, idx: CiIdx) -> &[CiIdx] {
        let i = idx as usize;
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The same relations seen from the other side, each list in increasing CI order.
    fn reversed(&self) -> Adjacency {
        let n = self.len();
        let mut offsets = vec![0u32; n + 1];
        for &t in &self.targets {
            offsets[t as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut next = offsets.clone();
        let mut targets = vec![0; self.targets.len()];
        for i in 0..n {
            for &t in self.of(i as CiIdx) {
                targets[next[t as usize] as usize] = i as CiIdx;
                next[t as usize] += 1;
            }
        }
        Adjacency { offsets, targets }
    }
}

fn hash(id: &str) -> u64 {
    FxBuildHasher.hash_one(id)
}

/// The validated, indexed dependency graph.
#[derive(Debug, Default)]
pub struct Topology {
    cis: Vec<Ci>,
    /// CI indexes, hashed by the id of the CI they point at: 4 bytes an entry, where a map
    /// keyed by the id would repeat its 16-byte pointer.
    index: HashTable<CiIdx>,
    dependencies: Adjacency,
    dependents: Adjacency,
    /// Longest dependency chain below each CI: propagation visits CIs in rank order so
    /// that each is recomputed once, after all of its dependencies.
    rank: Vec<u32>,
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
        let mut dependencies = Adjacency { offsets: Vec::with_capacity(records.len() + 1), targets: Vec::new() };
        dependencies.targets.reserve_exact(relations);
        dependencies.offsets.push(0);
        // A dependency listed twice counts once: looked for in the few listed before it, or
        // in a set for a CI with many (a national service over 20,000 ports).
        let mut seen: rustc_hash::FxHashSet<CiIdx> = Default::default();
        for record in &records {
            let start = dependencies.targets.len();
            let many = record.depends_on.len() > 32;
            seen.clear();
            for dep in &record.depends_on {
                let Some(d) = lookup(dep) else {
                    return Err(TopologyError::UnknownDependency { ci: record.id.clone(), dependency: dep.clone() });
                };
                let new = if many { seen.insert(d) } else { !dependencies.targets[start..].contains(&d) };
                if new {
                    dependencies.targets.push(d);
                }
            }
            let deps = dependencies.targets.len() - start;
            if let Rule::Quorum(k) = record.rule
                && k as usize > deps
            {
                return Err(TopologyError::QuorumTooLarge { ci: record.id.clone(), k, deps });
            }
            dependencies.offsets.push(dependencies.targets.len() as u32);
        }
        let dependents = dependencies.reversed();

        let mut cis = Vec::with_capacity(records.len());
        for (i, record) in records.into_iter().enumerate() {
            let customer = match &record.customer {
                Some(c) => Some(
                    lookup(c)
                        .ok_or_else(|| TopologyError::UnknownCustomer { ci: record.id.clone(), customer: c.clone() })?,
                ),
                None => None,
            };
            let name = if record.name.is_empty() { ids[i].clone() } else { Arc::from(record.name) };
            cis.push(Ci {
                id: ids[i].clone(),
                class: record.class,
                name,
                rule: record.rule,
                customer,
                sla: record.sla,
                incidents: record.incidents.unwrap_or(record.class == CiClass::Cfs),
                attributes: (!record.attributes.is_empty()).then(|| Box::new(record.attributes)),
            });
        }
        // A service without a tier of its own inherits its customer's.
        for i in 0..cis.len() {
            if cis[i].sla.is_none()
                && let Some(c) = cis[i].customer
            {
                cis[i].sla = cis[c as usize].sla;
            }
        }

        let rank = ranks(&dependencies, &dependents).map_err(|i| TopologyError::Cycle(cis[i].id.to_string()))?;
        Ok(Topology { cis, index, dependencies, dependents, rank })
    }

    pub fn len(&self) -> usize {
        self.cis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cis.is_empty()
    }

    pub fn lookup(&self, id: &str) -> Option<CiIdx> {
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

    pub fn iter(&self) -> impl Iterator<Item = (CiIdx, &Ci)> {
        self.cis.iter().enumerate().map(|(i, ci)| (i as CiIdx, ci))
    }
}

/// Kahn's algorithm from the leaves up; returns a CI on a cycle if there is one.
fn ranks(dependencies: &Adjacency, dependents: &Adjacency) -> Result<Vec<u32>, usize> {
    let n = dependencies.len();
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
        assert!(matches!(cycle, Err(TopologyError::Cycle(_))));
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
}
