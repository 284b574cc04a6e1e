//! The impact stage: where impact propagates. Takes resource updates from the alarm stage,
//! sets the resource's own state, and propagates through the dependency graph's rules
//! (`any`, `all`, `quorum k`, `degrade`) to every dependent CI, in rank order so each CI
//! is recomputed once. Each failed CI knows its root causes: the CIs whose own failure is
//! not explained by failed dependencies of their own.
//!
//! Nothing here costs what a CI's fan-in is: each CI counts its dependencies down and
//! degraded (all its rule needs) and counts the roots it inherits ([`super::roots`]); a
//! CI that moves tells its dependents what moved (its state, the roots it gained and
//! lost), and they adjust their counts by that. The update's [`Changes`] carry the same
//! deltas on to incident management.

use super::alarm_stage::ResourceUpdate;
use super::roots::{Entry, LargeSets, Roots, Transition};
use crate::model::alarm::AlarmRef;
use crate::model::state::State;
use crate::model::topology::{Applied, CiClass, CiIdx, Rule, Topology, grow_table};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::sync::Arc;
use thin_vec::ThinVec;

/// The live state of one CI: 24 bytes, on a million CIs most of them up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CiState {
    /// From the CI's own active alarms alone.
    pub own: State,
    /// After propagation: the worse of `own` and what the rule makes of the dependencies.
    pub effective: State,
    /// How many dependencies are down and degraded: the rule needs nothing else, so a
    /// change below costs the same under twenty thousand dependencies as under two.
    counts: DependencyCounts,
    /// Roots inherited from the dependencies that are not up, each with the number of
    /// them carrying it (see [`super::roots`]); one word while empty, as on most CIs.
    inherited: ThinVec<Entry>,
    /// The CI's active alarms, as last reported by the alarm stage: replaced whole at each
    /// update, and one word while empty, as it is on most CIs.
    pub alarms: ThinVec<AlarmRef>,
}

/// The dependencies down (24 bits) and degraded (23 bits), and whether the CI is a root
/// of itself (its own failure worse than what they explain; 1 bit), packed into the six
/// bytes `CiState` would otherwise pad. A CI with more dependencies than that counts
/// ([`PACKED_MAX`], 8.4M) keeps its counts beside the states instead ([`WIDE`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DependencyCounts([u8; 6]);

/// The `down` count of a CI whose counts are kept in [`ImpactStage::wide_counts`].
const WIDE: u32 = 0xFF_FFFF;
/// Dependencies past which a CI's counts are kept beside the states.
const PACKED_MAX: u32 = 0x7F_FFFF;
const ROOT_BIT: u8 = 0x80;

impl DependencyCounts {
    fn get(self) -> (u32, u32) {
        let b = self.0;
        (u32::from_le_bytes([b[0], b[1], b[2], 0]), u32::from_le_bytes([b[3], b[4], b[5] & !ROOT_BIT, 0]))
    }

    fn set(&mut self, down: u32, degraded: u32) {
        debug_assert!(down <= WIDE && degraded < PACKED_MAX);
        let (d, g) = (down.to_le_bytes(), degraded.to_le_bytes());
        let root = self.0[5] & ROOT_BIT;
        self.0 = [d[0], d[1], d[2], g[0], g[1], g[2] | root];
    }

    fn root(self) -> bool {
        self.0[5] & ROOT_BIT != 0
    }

    fn set_root(&mut self, root: bool) {
        self.0[5] = (self.0[5] & !ROOT_BIT) | if root { ROOT_BIT } else { 0 };
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

/// What one resource update moved: every CI whose effective state, roots or alarms
/// changed, in propagation order, each with the roots it gained and lost, so that incident
/// management works from what moved instead of from every root a CI has.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    cis: Vec<CiIdx>,
    /// Per changed CI: its effective state before, and the end of its gained and of its
    /// lost roots in `roots` (each starting where the previous one ends).
    entries: Vec<(State, u32, u32)>,
    roots: Vec<CiIdx>,
}

/// One changed CI.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub ci: CiIdx,
    /// Its effective state before the update.
    pub was: State,
    /// Roots it has now and did not have, sorted.
    pub gained: &'a [CiIdx],
    /// Roots it had and no longer has, sorted.
    pub lost: &'a [CiIdx],
}

impl Changes {
    pub fn clear(&mut self) {
        self.cis.clear();
        self.entries.clear();
        self.roots.clear();
    }

    /// The changed CIs, in propagation order.
    pub fn cis(&self) -> &[CiIdx] {
        &self.cis
    }

    pub fn len(&self) -> usize {
        self.cis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cis.is_empty()
    }

    pub fn get(&self, i: usize) -> Change<'_> {
        let start = if i == 0 { 0 } else { self.entries[i - 1].2 as usize };
        let (was, gained_end, lost_end) = self.entries[i];
        Change {
            ci: self.cis[i],
            was,
            gained: &self.roots[start..gained_end as usize],
            lost: &self.roots[gained_end as usize..lost_end as usize],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Change<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }

    fn push(&mut self, ci: CiIdx, was: State) {
        self.cis.push(ci);
        let end = self.roots.len() as u32;
        self.entries.push((was, end, end));
    }

    fn push_gained(&mut self, root: CiIdx) {
        self.roots.push(root);
        let last = self.entries.last_mut().expect("a CI pushed first");
        debug_assert_eq!(last.1, last.2, "gained roots come before lost ones");
        last.1 += 1;
        last.2 += 1;
    }

    fn push_lost(&mut self, root: CiIdx) {
        self.roots.push(root);
        self.entries.last_mut().expect("a CI pushed first").2 += 1;
    }
}

/// What the dependencies that moved tell a CI above them, waiting until its rank is taken.
#[derive(Debug, Default)]
struct Pending {
    /// A dependency's effective state went from the first to the second.
    states: Vec<(CiIdx, State, State)>,
    /// A dependency gained (+1) or lost (-1) a root.
    roots: Vec<(CiIdx, CiIdx, i8)>,
}

#[derive(Debug)]
pub struct ImpactStage {
    topology: Arc<Topology>,
    states: Vec<CiState>,
    /// Inherited roots of the CIs that have many (see [`super::roots`]).
    large: LargeSets,
    /// Counts of the CIs with more dependencies than [`DependencyCounts`] packs.
    wide_counts: FxHashMap<CiIdx, (u32, u32)>,
    /// Resources with active alarms that the topology does not know.
    unmapped: BTreeMap<Arc<str>, ThinVec<AlarmRef>>,
    /// Propagation worklist by rank: a dependent always ranks above its dependencies, so
    /// taking the ranks in order, each in index order, recomputes every CI once, after all
    /// it depends on (and in the same order every time).
    ranks: Vec<Vec<CiIdx>>,
    /// By rank: what the CIs of that rank have to take from their dependencies.
    pending: Vec<Pending>,
    queued: Vec<bool>,
    /// Scratch space for one CI's roots gained and lost while propagating.
    roots_buffers: (Vec<CiIdx>, Vec<CiIdx>),
}

/// The state a rule makes of dependencies of which `down` are down and `degraded`
/// degraded, out of `deps`.
fn rule_state(rule: Rule, deps: usize, down: u32, degraded: u32) -> State {
    if deps == 0 {
        return State::Up;
    }
    let worst = if down > 0 {
        State::Down
    } else if degraded > 0 {
        State::Degraded
    } else {
        State::Up
    };
    match rule {
        Rule::Any => worst,
        Rule::Degrade => worst.min(State::Degraded),
        Rule::All if down as usize == deps => State::Down,
        Rule::Quorum(k) if deps - (down as usize) < k as usize => State::Down,
        Rule::All | Rule::Quorum(_) => worst.min(State::Degraded),
    }
}

fn count_slot(counts: &mut (u32, u32), state: State) -> Option<&mut u32> {
    match state {
        State::Up => None,
        State::Degraded => Some(&mut counts.1),
        State::Down => Some(&mut counts.0),
    }
}

impl ImpactStage {
    pub fn new(topology: Arc<Topology>) -> ImpactStage {
        let n = topology.slots();
        let mut states = vec![CiState::default(); n];
        let mut wide_counts = FxHashMap::default();
        for (idx, state) in states.iter_mut().enumerate() {
            if topology.dependencies(idx as CiIdx).len() >= PACKED_MAX as usize {
                state.counts.set(WIDE, 0);
                wide_counts.insert(idx as CiIdx, (0, 0));
            }
        }
        ImpactStage {
            topology,
            states,
            large: LargeSets::default(),
            wide_counts,
            unmapped: BTreeMap::new(),
            ranks: Vec::new(),
            pending: Vec::new(),
            queued: vec![false; n],
            roots_buffers: (Vec::new(), Vec::new()),
        }
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    pub fn state(&self, idx: CiIdx) -> &CiState {
        &self.states[idx as usize]
    }

    /// Whether the stage keeps nothing for this CI: up, no alarms, no roots, no counts.
    pub(super) fn is_quiet(&self, idx: CiIdx) -> bool {
        self.states.get(idx as usize).is_none_or(|state| *state == CiState::default())
            && !self.wide_counts.contains_key(&idx)
    }

    /// The root causes that explain the CI's state, sorted; empty when it is up.
    pub fn roots(&self, idx: CiIdx) -> Roots<'_> {
        debug_assert_eq!(
            self.states[idx as usize].counts.root(),
            self.states[idx as usize].own > self.dependency_state(idx)
        );
        self.recorded_roots(idx)
    }

    /// The roots the CI's state records, whether or not they still follow from its alarms
    /// and dependencies (a topology change sets them anew).
    fn recorded_roots(&self, idx: CiIdx) -> Roots<'_> {
        let state = &self.states[idx as usize];
        Roots::new(state.counts.root().then_some(idx), self.large.get(idx, &state.inherited))
    }

    pub(super) fn topology_mut(&mut self) -> &mut Arc<Topology> {
        &mut self.topology
    }

    /// Follows a batch the topology has just applied: the alarms of deleted CIs go to the
    /// unmapped resources, those of CIs (back) in the topology (`attached`, from the alarm
    /// stage) come to them; then every CI the batch added, changed or deleted is
    /// evaluated anew from its dependencies as they are now, in rank order, and what moved
    /// propagates to the CIs above as an alarm's change does. Only the CIs the batch
    /// touched and those their moves reach are evaluated.
    pub fn follow_topology(&mut self, applied: &Applied, attached: Vec<ResourceUpdate>, changes: &mut Changes) {
        let n = self.topology.slots();
        grow_table(&mut self.states, n, CiState::default());
        grow_table(&mut self.queued, n, false);
        for &idx in &applied.deleted {
            let state = &mut self.states[idx as usize];
            state.own = State::Up;
            let alarms = std::mem::take(&mut state.alarms);
            if !alarms.is_empty() {
                self.unmapped.insert(self.topology.ci(idx).id.clone(), alarms);
            }
        }
        for update in attached {
            let Some(idx) = update.ci else { continue };
            self.unmapped.remove(&update.resource);
            let state = &mut self.states[idx as usize];
            state.own = update.own_state;
            state.alarms = update.alarms;
        }
        let mut touched: Vec<CiIdx> =
            applied.added.iter().chain(&applied.changed).chain(&applied.deleted).copied().collect();
        touched.sort_unstable();
        touched.dedup();
        if touched.is_empty() {
            return;
        }
        let anew: FxHashSet<CiIdx> = touched.iter().copied().collect();
        let mut rank = usize::MAX;
        for &idx in &touched {
            self.enqueue(idx);
            rank = rank.min(self.topology.rank(idx) as usize);
        }
        // No CI to report whether it moved or not: `CiIdx::MAX` is none.
        self.propagate(rank, (CiIdx::MAX, State::Up), Some(&anew), changes);
    }

    /// Evaluates a CI from its own alarms and its dependencies' states and roots alone
    /// (what it recorded before is only compared with); pushes it to `changes` if it
    /// moved. True when it moved.
    fn evaluate_anew(
        &mut self,
        idx: CiIdx,
        was: State,
        (gained, lost): (&mut Vec<CiIdx>, &mut Vec<CiIdx>),
        changes: &mut Changes,
    ) -> bool {
        let before: Vec<CiIdx> = self.recorded_roots(idx).iter().collect();
        let deps = self.topology.dependencies(idx);
        let mut counts = (0u32, 0u32);
        let mut inherited: Vec<CiIdx> = Vec::new();
        for &d in deps {
            if let Some(slot) = count_slot(&mut counts, self.states[d as usize].effective) {
                *slot += 1;
            }
            inherited.extend(self.roots(d).iter());
        }
        let (down, degraded) = counts;
        inherited.sort_unstable();
        let mut entries: Vec<Entry> = Vec::new();
        for root in inherited {
            match entries.last_mut() {
                Some(last) if last.0 == root => last.1 += 1,
                _ => entries.push((root, 1)),
            }
        }
        let rule = self.topology.ci(idx).rule;
        let wide = deps.len() >= PACKED_MAX as usize;
        let deps = deps.len();
        let state = &mut self.states[idx as usize];
        self.large.replace(idx, &mut state.inherited, entries);
        match (wide, self.wide_counts.contains_key(&idx)) {
            (true, _) => {
                state.counts.set(WIDE, 0);
                self.wide_counts.insert(idx, (down, degraded));
            }
            (false, true) => {
                self.wide_counts.remove(&idx);
                state.counts.set(down, degraded);
            }
            (false, false) => state.counts.set(down, degraded),
        }
        let from_deps = rule_state(rule, deps, down, degraded);
        let effective = state.own.max(from_deps);
        state.effective = effective;
        let root = state.own > from_deps;
        state.counts.set_root(root);

        gained.clear();
        lost.clear();
        let mut before = before.into_iter().peekable();
        for now in self.recorded_roots(idx).iter() {
            while let Some(old) = before.next_if(|&old| old < now) {
                lost.push(old);
            }
            if before.next_if_eq(&now).is_none() {
                gained.push(now);
            }
        }
        lost.extend(before);
        let moved = effective != was || !gained.is_empty() || !lost.is_empty();
        if moved {
            changes.push(idx, was);
            for &root in gained.iter() {
                changes.push_gained(root);
            }
            for &root in lost.iter() {
                changes.push_lost(root);
            }
        }
        moved
    }

    /// Failed by its own alarms and not explained by its dependencies.
    pub fn is_root(&self, idx: CiIdx) -> bool {
        self.states[idx as usize].counts.root()
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
    /// or alarms changed is appended to `changes`, in propagation order, with the roots
    /// it gained and lost.
    pub fn apply(&mut self, update: ResourceUpdate, changes: &mut Changes) -> Landed {
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
        let own_before = std::mem::replace(&mut state.own, update.own_state);
        state.alarms = update.alarms;
        self.propagate_from(idx, own_before, changes);
        Landed::Mapped(idx)
    }

    fn counts(&self, idx: CiIdx) -> (u32, u32) {
        match self.states[idx as usize].counts.get() {
            (WIDE, _) => self.wide_counts.get(&idx).copied().unwrap_or_default(),
            counts => counts,
        }
    }

    fn set_counts(&mut self, idx: CiIdx, counts: (u32, u32)) {
        match self.wide_counts.get_mut(&idx) {
            Some(wide) => *wide = counts,
            None => self.states[idx as usize].counts.set(counts.0, counts.1),
        }
    }

    /// Recomputes the CIs the update reaches, rank by rank. Each CI takes what its moved
    /// dependencies tell it (states that changed: its counts; roots gained and lost: its
    /// inherited roots), and tells its dependents in turn what moved in it: never more
    /// than what moved, so a CI's cost does not grow with its number of dependencies.
    fn propagate_from(&mut self, start: CiIdx, start_own_before: State, changes: &mut Changes) {
        self.enqueue(start);
        let reported = self.propagate(self.topology.rank(start) as usize, (start, start_own_before), None, changes);
        debug_assert!(reported);
    }

    /// Recomputes the CIs queued from `rank` up, rank by rank (see
    /// [`ImpactStage::propagate_from`]). `start` is the CI an update landed on, with its
    /// own state before: reported in `changes` even when it did not move. The CIs of
    /// `anew` (a topology batch's) are evaluated from scratch, not from their news. True
    /// when `start` was recomputed.
    fn propagate(
        &mut self,
        mut rank: usize,
        (start, start_own_before): (CiIdx, State),
        anew: Option<&FxHashSet<CiIdx>>,
        changes: &mut Changes,
    ) -> bool {
        let mut start_reported = false;
        let (mut gained, mut lost) = std::mem::take(&mut self.roots_buffers);
        while rank < self.ranks.len() {
            let mut taken = std::mem::take(&mut self.ranks[rank]);
            taken.sort_unstable();
            let mut pending = std::mem::take(&mut self.pending[rank]);
            pending.states.sort_unstable_by_key(|p| p.0);
            pending.roots.sort_unstable_by_key(|p| (p.0, p.1));
            let (mut states, mut roots) = (&pending.states[..], &pending.roots[..]);
            for &idx in &taken {
                self.queued[idx as usize] = false;
                let ci_states = take_run(&mut states, idx, |p| p.0);
                let ci_roots = take_run(&mut roots, idx, |p| p.0);
                let was = self.states[idx as usize].effective;
                let buffers = (&mut gained, &mut lost);
                let moved = if anew.is_some_and(|anew| anew.contains(&idx)) {
                    self.evaluate_anew(idx, was, buffers, changes)
                } else {
                    self.recompute(idx, start_own_before, start, ci_states, ci_roots, was, buffers, changes)
                };
                start_reported |= idx == start;
                if moved {
                    self.tell_dependents(idx, was, changes);
                }
            }
            debug_assert!(states.is_empty() && roots.is_empty(), "news for a CI not queued");
            pending.states.clear();
            pending.roots.clear();
            self.pending[rank] = pending;
            taken.clear();
            // Back in its place with its allocation; nothing joined it meanwhile, since
            // dependents rank higher.
            debug_assert!(self.ranks[rank].is_empty());
            self.ranks[rank] = taken;
            rank += 1;
        }
        self.roots_buffers = (gained, lost);
        start_reported
    }

    /// Takes one CI's news; pushes it to `changes` (with its roots gained and lost) if it
    /// moved or is the CI the update landed on. True when it moved.
    #[allow(clippy::too_many_arguments)]
    fn recompute(
        &mut self,
        idx: CiIdx,
        start_own_before: State,
        start: CiIdx,
        news_states: &[(CiIdx, State, State)],
        news_roots: &[(CiIdx, CiIdx, i8)],
        was: State,
        (gained, lost): (&mut Vec<CiIdx>, &mut Vec<CiIdx>),
        changes: &mut Changes,
    ) -> bool {
        let deps = self.topology.dependencies(idx).len();
        let rule = self.topology.ci(idx).rule;
        let counts_before = self.counts(idx);
        let mut counts = counts_before;
        for &(_, from, to) in news_states {
            if let Some(slot) = count_slot(&mut counts, from) {
                *slot -= 1;
            }
            if let Some(slot) = count_slot(&mut counts, to) {
                *slot += 1;
            }
        }
        if counts != counts_before {
            self.set_counts(idx, counts);
        }
        let own = self.states[idx as usize].own;
        let own_before = if idx == start { start_own_before } else { own };
        let from_deps_before = rule_state(rule, deps, counts_before.0, counts_before.1);
        let from_deps = rule_state(rule, deps, counts.0, counts.1);
        let (root_before, root_now) = (own_before > from_deps_before, own > from_deps);
        let effective = own.max(from_deps);

        // Inherited roots: the net change of each root's count, and what it did to the set.
        gained.clear();
        lost.clear();
        let mut rest = news_roots;
        while let Some(&(_, root, _)) = rest.first() {
            let run = take_run(&mut rest, root, |p| p.1);
            let delta: i64 = run.iter().map(|p| i64::from(p.2)).sum();
            let state = &mut self.states[idx as usize];
            match self.large.adjust(idx, &mut state.inherited, root, delta) {
                Transition::Appeared => gained.push(root),
                Transition::Vanished => lost.push(root),
                Transition::Kept => {}
            }
        }
        if root_now != root_before {
            let list = if root_now { &mut *gained } else { &mut *lost };
            let at = list.partition_point(|&r| r < idx);
            list.insert(at, idx);
        }
        let moved = effective != was || !gained.is_empty() || !lost.is_empty();
        self.states[idx as usize].effective = effective;
        self.states[idx as usize].counts.set_root(root_now);
        if moved || idx == start {
            changes.push(idx, was);
            for &root in gained.iter() {
                changes.push_gained(root);
            }
            for &root in lost.iter() {
                changes.push_lost(root);
            }
        }
        debug_assert_eq!(effective.is_up(), self.roots(idx).is_empty(), "CI {idx}: up with roots, or failed without");
        moved
    }

    /// Tells each dependent of `idx`, which just moved, what moved: its state if it did,
    /// and the roots it gained and lost (the last entry of `changes`).
    fn tell_dependents(&mut self, idx: CiIdx, was: State, changes: &Changes) {
        let effective = self.states[idx as usize].effective;
        let change = changes.get(changes.len() - 1);
        debug_assert_eq!(change.ci, idx);
        for i in 0..self.topology.dependents(idx).len() {
            let dependent = self.topology.dependents(idx)[i];
            let rank = self.topology.rank(dependent) as usize;
            self.enqueue(dependent);
            let pending = &mut self.pending[rank];
            if effective != was {
                pending.states.push((dependent, was, effective));
            }
            pending.roots.extend(change.gained.iter().map(|&r| (dependent, r, 1)));
            pending.roots.extend(change.lost.iter().map(|&r| (dependent, r, -1)));
        }
    }

    fn enqueue(&mut self, idx: CiIdx) {
        if !self.queued[idx as usize] {
            self.queued[idx as usize] = true;
            let rank = self.topology.rank(idx) as usize;
            if rank >= self.ranks.len() {
                self.ranks.resize_with(rank + 1, Vec::new);
                self.pending.resize_with(rank + 1, Pending::default);
            }
            self.ranks[rank].push(idx);
        }
    }

    /// The state a CI's rule makes of its dependencies' current states.
    fn dependency_state(&self, idx: CiIdx) -> State {
        let (down, degraded) = self.counts(idx);
        rule_state(self.topology.ci(idx).rule, self.topology.dependencies(idx).len(), down, degraded)
    }

    /// For each root cause of `idx`, a path down the dependency graph that links them.
    pub fn explain(&self, idx: CiIdx) -> Vec<Explanation> {
        self.roots(idx)
            .iter()
            .map(|root| {
                let mut path = vec![idx];
                let mut at = idx;
                while at != root {
                    let next = self
                        .topology
                        .dependencies(at)
                        .iter()
                        .copied()
                        .find(|&d| !self.state(d).effective.is_up() && self.roots(d).contains(root));
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

    /// What failing `failed` (their own state down) would do on top of the live states,
    /// changing nothing: every CI whose effective state would worsen, with its state now
    /// and the one it would have, by CI. Only the CIs the failures reach are looked at,
    /// each once, in rank order, each from its dependencies' states (as they would be).
    pub fn simulate(&self, failed: &[CiIdx]) -> BTreeMap<CiIdx, (State, State)> {
        let failed: FxHashSet<CiIdx> = failed.iter().copied().collect();
        let mut would: FxHashMap<CiIdx, State> = FxHashMap::default();
        let mut queued: FxHashSet<CiIdx> = FxHashSet::default();
        let mut next = std::collections::BinaryHeap::new();
        for &idx in &failed {
            if queued.insert(idx) {
                next.push(std::cmp::Reverse((self.topology.rank(idx), idx)));
            }
        }
        while let Some(std::cmp::Reverse((_, idx))) = next.pop() {
            let own = if failed.contains(&idx) { State::Down } else { self.states[idx as usize].own };
            let deps = self.topology.dependencies(idx);
            let mut counts = (0u32, 0u32);
            for &d in deps {
                if let Some(slot) =
                    count_slot(&mut counts, would.get(&d).copied().unwrap_or(self.states[d as usize].effective))
                {
                    *slot += 1;
                }
            }
            let effective = own.max(rule_state(self.topology.ci(idx).rule, deps.len(), counts.0, counts.1));
            if effective == self.states[idx as usize].effective {
                continue;
            }
            would.insert(idx, effective);
            for &dependent in self.topology.dependents(idx) {
                if queued.insert(dependent) {
                    next.push(std::cmp::Reverse((self.topology.rank(dependent), dependent)));
                }
            }
        }
        would.into_iter().map(|(idx, state)| (idx, (self.states[idx as usize].effective, state))).collect()
    }

    /// Services (resource- and customer-facing) that `idx` currently takes down or
    /// degrades: failed dependents whose failure traces back to `idx`'s own root causes.
    pub fn impact_of(&self, idx: CiIdx) -> Vec<CiIdx> {
        let roots: Vec<CiIdx> = self.roots(idx).to_vec();
        if roots.is_empty() {
            return Vec::new();
        }
        let mut seen: FxHashSet<CiIdx> = FxHashSet::default();
        seen.insert(idx);
        let mut stack = vec![idx];
        let mut services = Vec::new();
        while let Some(at) = stack.pop() {
            for &dependent in self.topology.dependents(at) {
                if self.state(dependent).effective.is_up() || seen.contains(&dependent) {
                    continue;
                }
                let theirs = self.roots(dependent);
                if !roots.iter().any(|&r| theirs.contains(r)) {
                    continue;
                }
                seen.insert(dependent);
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

/// Takes from the front of `items` (sorted by `key`) the run whose key is `key`.
fn take_run<'a, T, K: PartialEq>(items: &mut &'a [T], key: K, of: impl Fn(&T) -> K) -> &'a [T] {
    let end = items.iter().position(|item| of(item) != key).unwrap_or(items.len());
    let (run, rest) = items.split_at(end);
    *items = rest;
    run
}

/// Entry counts, for [`super::sizes`].
impl ImpactStage {
    pub(super) fn large_sets_len(&self) -> usize {
        self.large.sets_len()
    }

    pub(super) fn wide_counts_len(&self) -> usize {
        self.wide_counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ci_state_stays_three_words() {
        // The bytes per CI of a million-CI network are a published figure: the counts
        // live in what would otherwise be padding.
        assert_eq!(std::mem::size_of::<CiState>(), 24);
        let mut counts = DependencyCounts::default();
        for root in [false, true] {
            counts.set_root(root);
            for (down, degraded) in [(0, 0), (1, 2), (WIDE, 0), (0xAB_CDEF, 0x12_3456), (WIDE, PACKED_MAX - 1)] {
                counts.set(down, degraded);
                assert_eq!((counts.get(), counts.root()), ((down, degraded), root));
            }
        }
    }
}
