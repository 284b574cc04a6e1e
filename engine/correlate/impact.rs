//! The impact stage: where impact propagates. Takes resource updates from the alarm stage,
//! sets the resource's own state, and propagates through the dependency graph's rules
//! (`any`, `all`, `quorum k`, `degrade`) to every dependent CI, in rank order so each CI
//! is recomputed once. Each failed CI knows its root causes: the CIs whose own failure is
//! not explained by failed dependencies of their own.

use super::alarm_stage::ResourceUpdate;
use crate::model::alarm::AlarmRef;
use crate::model::state::State;
use crate::model::topology::{CiClass, CiIdx, Rule, Topology};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::sync::Arc;
use thin_vec::ThinVec;

/// The live state of one CI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CiState {
    /// From the CI's own active alarms alone.
    pub own: State,
    /// After propagation: the worse of `own` and what the rule makes of the dependencies.
    pub effective: State,
    /// Root-cause CIs that explain `effective`, sorted; empty when up. Contains the CI
    /// itself when its own failure is worse than what its dependencies explain. A
    /// `ThinVec`: one word, its length and capacity on the heap, so that the million CIs
    /// that are up hold 8 bytes each for it instead of 24, while a failed CI's list keeps
    /// its allocation from one propagation to the next.
    pub roots: ThinVec<CiIdx>,
    /// The CI's active alarms, as last reported by the alarm stage: replaced whole at each
    /// update, and one word while empty, as it is on most CIs.
    pub alarms: ThinVec<AlarmRef>,
}

impl CiState {
    /// Failed by its own alarms and not explained by its dependencies.
    pub fn is_root(&self, idx: CiIdx) -> bool {
        self.roots.binary_search(&idx).is_ok()
    }
}

/// Where a resource update landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landed {
    Mapped(CiIdx),
    /// The resource is not in the topology: its alarms are kept and reported, not dropped.
    Unmapped,
}

/// One hop-by-hop explanation of why a CI is not up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub root: CiIdx,
    /// From the explained CI down to the root, both included.
    pub path: Vec<CiIdx>,
}

#[derive(Debug)]
pub struct ImpactStage {
    topology: Arc<Topology>,
    states: Vec<CiState>,
    /// Resources with active alarms that the topology does not know.
    unmapped: BTreeMap<Arc<str>, ThinVec<AlarmRef>>,
    /// Propagation worklist by rank: a dependent always ranks above its dependencies, so
    /// taking the ranks in order, each in index order, recomputes every CI once, after all
    /// it depends on (and in the same order every time).
    ranks: Vec<Vec<CiIdx>>,
    queued: Vec<bool>,
    /// Scratch space for root causes while propagating.
    roots_buffer: Vec<CiIdx>,
}

impl ImpactStage {
    pub fn new(topology: Arc<Topology>) -> ImpactStage {
        let n = topology.len();
        ImpactStage {
            topology,
            states: vec![CiState::default(); n],
            unmapped: BTreeMap::new(),
            ranks: Vec::new(),
            queued: vec![false; n],
            roots_buffer: Vec::new(),
        }
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    pub fn state(&self, idx: CiIdx) -> &CiState {
        &self.states[idx as usize]
    }

    pub fn unmapped(&self) -> &BTreeMap<Arc<str>, ThinVec<AlarmRef>> {
        &self.unmapped
    }

    /// A resource's alarms as the alarm stage last reported them, mapped or not.
    pub fn reported_alarms(&self, resource: &str) -> &[AlarmRef] {
        match self.topology.lookup(resource) {
            Some(idx) => &self.states[idx as usize].alarms,
            None => self.unmapped.get(resource).map(|alarms| alarms.as_slice()).unwrap_or_default(),
        }
    }

    /// Applies a resource update and propagates it. Every CI whose effective state, roots
    /// or alarms changed is appended to `changed`, in propagation order.
    pub fn apply(&mut self, update: ResourceUpdate, changed: &mut Vec<CiIdx>) -> Landed {
        debug_assert!(update.ci.is_none_or(|ci| *self.topology.ci(ci).id == *update.resource));
        let Some(idx) = update.ci.or_else(|| self.topology.lookup(&update.resource)) else {
            if update.alarms.is_empty() {
                self.unmapped.remove(&update.resource);
            } else {
                self.unmapped.insert(update.resource, update.alarms);
            }
            return Landed::Unmapped;
        };
        let state = &mut self.states[idx as usize];
        state.own = update.own_state;
        state.alarms = update.alarms;
        self.propagate_from(idx, changed);
        Landed::Mapped(idx)
    }

    fn propagate_from(&mut self, start: CiIdx, changed: &mut Vec<CiIdx>) {
        self.enqueue(start);
        let mut start_reported = false;
        // One buffer for every evaluation: most leave the roots as they were, and those
        // that move them copy into the CI's own list, reusing its allocation.
        let mut roots = std::mem::take(&mut self.roots_buffer);
        let mut rank = self.topology.rank(start) as usize;
        while rank < self.ranks.len() {
            let mut taken = std::mem::take(&mut self.ranks[rank]);
            taken.sort_unstable();
            for &idx in &taken {
                self.queued[idx as usize] = false;
                let effective = self.evaluate(idx, &mut roots);
                let state = &mut self.states[idx as usize];
                let moved = state.effective != effective || *state.roots != *roots;
                if moved {
                    state.effective = effective;
                    if roots.is_empty() {
                        // Restored: its list goes, so a network's worth of CIs once failed
                        // holds no memory for it.
                        state.roots = ThinVec::new();
                    } else {
                        state.roots.clear();
                        state.roots.extend_from_slice(&roots);
                    }
                    for i in 0..self.topology.dependents(idx).len() {
                        let dependent = self.topology.dependents(idx)[i];
                        self.enqueue(dependent);
                    }
                }
                if moved || idx == start {
                    start_reported |= idx == start;
                    changed.push(idx);
                }
            }
            taken.clear();
            // Back in its place with its allocation; nothing joined it meanwhile, since
            // dependents rank higher.
            debug_assert!(self.ranks[rank].is_empty());
            self.ranks[rank] = taken;
            rank += 1;
        }
        self.roots_buffer = roots;
        debug_assert!(start_reported);
    }

    fn enqueue(&mut self, idx: CiIdx) {
        if !self.queued[idx as usize] {
            self.queued[idx as usize] = true;
            let rank = self.topology.rank(idx) as usize;
            if rank >= self.ranks.len() {
                self.ranks.resize_with(rank + 1, Vec::new);
            }
            self.ranks[rank].push(idx);
        }
    }

    /// The state a CI's rule makes of its dependencies' current states.
    fn dependency_state(&self, idx: CiIdx) -> State {
        let deps = self.topology.dependencies(idx);
        if deps.is_empty() {
            return State::Up;
        }
        let states = deps.iter().map(|&d| self.states[d as usize].effective);
        match self.topology.ci(idx).rule {
            Rule::Any => states.max().unwrap_or(State::Up),
            Rule::Degrade => states.max().unwrap_or(State::Up).min(State::Degraded),
            Rule::All => combine_redundant(states, deps.len()),
            Rule::Quorum(k) => {
                let (mut available, mut worst) = (0usize, State::Up);
                for s in states {
                    available += usize::from(s != State::Down);
                    worst = worst.max(s);
                }
                if available < k as usize { State::Down } else { worst.min(State::Degraded) }
            }
        }
    }

    /// The state of `idx` from its own alarms and its dependencies; its root causes, sorted,
    /// into `roots` (empty when up).
    fn evaluate(&self, idx: CiIdx, roots: &mut Vec<CiIdx>) -> State {
        roots.clear();
        let own = self.states[idx as usize].own;
        let from_deps = self.dependency_state(idx);
        let effective = own.max(from_deps);
        if effective.is_up() {
            return State::Up;
        }
        if own > from_deps {
            roots.push(idx);
        }
        if !from_deps.is_up() {
            for &d in self.topology.dependencies(idx) {
                let dep = &self.states[d as usize];
                if !dep.effective.is_up() {
                    roots.extend_from_slice(&dep.roots);
                }
            }
        }
        roots.sort_unstable();
        roots.dedup();
        effective
    }

    /// For each root cause of `idx`, a path down the dependency graph that links them.
    pub fn explain(&self, idx: CiIdx) -> Vec<Explanation> {
        let state = self.state(idx);
        state
            .roots
            .iter()
            .map(|&root| {
                let mut path = vec![idx];
                let mut at = idx;
                while at != root {
                    let next = self.topology.dependencies(at).iter().copied().find(|&d| {
                        let dep = self.state(d);
                        !dep.effective.is_up() && dep.roots.binary_search(&root).is_ok()
                    });
                    match next {
                        Some(n) => {
                            path.push(n);
                            at = n;
                        }
                        None => break,
                    }
                }
                Explanation { root, path }
            })
            .collect()
    }

    /// Services (resource- and customer-facing) that `idx` currently takes down or
    /// degrades: failed dependents whose failure traces back to `idx`'s own root causes.
    pub fn impact_of(&self, idx: CiIdx) -> Vec<CiIdx> {
        let roots: Vec<CiIdx> = self.state(idx).roots.to_vec();
        if roots.is_empty() {
            return Vec::new();
        }
        let mut seen: FxHashSet<CiIdx> = FxHashSet::default();
        seen.insert(idx);
        let mut stack = vec![idx];
        let mut services = Vec::new();
        while let Some(at) = stack.pop() {
            for &dependent in self.topology.dependents(at) {
                let state = self.state(dependent);
                if state.effective.is_up() || !state.roots.iter().any(|r| roots.contains(r)) || !seen.insert(dependent)
                {
                    continue;
                }
                stack.push(dependent);
                let ci = self.topology.ci(dependent);
                if matches!(ci.class, CiClass::Rfs | CiClass::Cfs) || ci.incidents {
                    services.push(dependent);
                }
            }
        }
        services.sort_unstable();
        services
    }
}

fn combine_redundant(states: impl Iterator<Item = State>, count: usize) -> State {
    let (mut down, mut worst) = (0usize, State::Up);
    for s in states {
        down += usize::from(s == State::Down);
        worst = worst.max(s);
    }
    if down == count { State::Down } else { worst.min(State::Degraded) }
}
