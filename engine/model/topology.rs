//! The service dependency graph: configuration items (CIs), their `dependent → dependency`
//! relations and impact rules. Built once from [`CiRecord`]s (the topology file format and
//! the topology topic's value), validated, and then read-only; CIs are addressed by a dense
//! index so that propagation walks vectors, not hash maps.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    pub attributes: BTreeMap<String, String>,
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

/// The validated, indexed dependency graph.
#[derive(Debug, Default)]
pub struct Topology {
    cis: Vec<Ci>,
    index: FxHashMap<Arc<str>, CiIdx>,
    dependencies: Vec<Vec<CiIdx>>,
    dependents: Vec<Vec<CiIdx>>,
    /// Longest dependency chain below each CI: propagation visits CIs in rank order so
    /// that each is recomputed once, after all of its dependencies.
    rank: Vec<u32>,
}

impl Topology {
    pub fn from_records(records: Vec<CiRecord>) -> Result<Topology, TopologyError> {
        let mut index: FxHashMap<Arc<str>, CiIdx> = FxHashMap::default();
        index.reserve(records.len());
        let mut ids = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            if record.id.is_empty() {
                return Err(TopologyError::EmptyId);
            }
            let id: Arc<str> = Arc::from(record.id.as_str());
            if index.insert(id.clone(), i as CiIdx).is_some() {
                return Err(TopologyError::DuplicateId(record.id.clone()));
            }
            ids.push(id);
        }
        let lookup = |id: &str| index.get(id).copied();

        let mut dependencies = Vec::with_capacity(records.len());
        let mut dependents = vec![Vec::new(); records.len()];
        for (i, record) in records.iter().enumerate() {
            let mut deps = Vec::with_capacity(record.depends_on.len());
            for dep in &record.depends_on {
                let Some(d) = lookup(dep) else {
                    return Err(TopologyError::UnknownDependency { ci: record.id.clone(), dependency: dep.clone() });
                };
                if !deps.contains(&d) {
                    deps.push(d);
                    dependents[d as usize].push(i as CiIdx);
                }
            }
            if let Rule::Quorum(k) = record.rule
                && k as usize > deps.len()
            {
                return Err(TopologyError::QuorumTooLarge { ci: record.id.clone(), k, deps: deps.len() });
            }
            dependencies.push(deps);
        }

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
                attributes: record.attributes,
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
        self.index.get(id).copied()
    }

    pub fn ci(&self, idx: CiIdx) -> &Ci {
        &self.cis[idx as usize]
    }

    pub fn dependencies(&self, idx: CiIdx) -> &[CiIdx] {
        &self.dependencies[idx as usize]
    }

    pub fn dependents(&self, idx: CiIdx) -> &[CiIdx] {
        &self.dependents[idx as usize]
    }

    pub fn rank(&self, idx: CiIdx) -> u32 {
        self.rank[idx as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (CiIdx, &Ci)> {
        self.cis.iter().enumerate().map(|(i, ci)| (i as CiIdx, ci))
    }
}

/// Kahn's algorithm from the leaves up; returns a CI on a cycle if there is one.
fn ranks(dependencies: &[Vec<CiIdx>], dependents: &[Vec<CiIdx>]) -> Result<Vec<u32>, usize> {
    let n = dependencies.len();
    let mut pending: Vec<usize> = dependencies.iter().map(Vec::len).collect();
    let mut rank = vec![0u32; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &d in &dependents[i] {
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
