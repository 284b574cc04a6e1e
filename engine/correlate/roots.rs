//! The root causes a CI inherits from its dependencies, counted: each root with the number
//! of failed dependencies that carry it. A dependency that fails, recovers or changes its
//! roots moves these counts by what it changed, so a CI above twenty thousand failing
//! ports takes one port's failure at the cost of one entry, not of the twenty thousand.
//!
//! Most failed CIs inherit a handful of roots: their counts are a sorted [`ThinVec`] in
//! the CI's state, one word while empty. Past [`SMALL_MAX`] roots a CI's counts move to a
//! B-tree kept beside the states ([`LargeSets`]), its `ThinVec` then holding a single
//! marker entry; they move back once they fall below [`SMALL_MIN`].
//!
//! Readers get a [`Roots`]: the CI's roots, sorted, the CI itself among them when its own
//! failure is worse than what its dependencies explain.

use crate::model::topology::CiIdx;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;
use std::iter::Peekable;
use thin_vec::ThinVec;

/// A root and the number of failed dependencies carrying it (never 0, but in the marker).
pub(super) type Entry = (CiIdx, u32);

/// Past this many roots, a CI's counts move to a B-tree: inserting into a sorted vector
/// moves half of it on average.
pub(super) const SMALL_MAX: usize = 64;
/// Below this many, they move back (not at [`SMALL_MAX`], so that a CI hovering around it
/// does not move at every change).
pub(super) const SMALL_MIN: usize = 32;

/// The marker a CI's `ThinVec` holds while its counts live in [`LargeSets`]: a count of 0,
/// which no real entry has.
const MARKER: Entry = (CiIdx::MAX, 0);

fn is_large(small: &[Entry]) -> bool {
    small.len() == 1 && small[0].1 == 0
}

/// What a count change did to the set of roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transition {
    /// The root was not inherited and now is.
    Appeared,
    /// The root was inherited and no longer is.
    Vanished,
    /// Still inherited, or still not.
    Kept,
}

/// The counts of the CIs that inherit more than [`SMALL_MAX`] roots, by CI.
#[derive(Debug, Default)]
pub(super) struct LargeSets {
    sets: FxHashMap<CiIdx, BTreeMap<CiIdx, u32>>,
}

impl LargeSets {
    /// The inherited roots of `ci`, whose state holds `small`.
    pub(super) fn get<'a>(&'a self, ci: CiIdx, small: &'a [Entry]) -> Inherited<'a> {
        if is_large(small) {
            match self.sets.get(&ci) {
                Some(set) => Inherited::Large(set),
                None => Inherited::Small(&[]),
            }
        } else {
            Inherited::Small(small)
        }
    }

    /// Moves the count of `root` in `ci`'s inherited roots by `delta`. A count never goes
    /// below zero: a dependency only takes back what it gave.
    pub(super) fn adjust(&mut self, ci: CiIdx, small: &mut ThinVec<Entry>, root: CiIdx, delta: i64) -> Transition {
        if delta == 0 {
            return Transition::Kept;
        }
        if is_large(small) {
            let set = self.sets.entry(ci).or_default();
            let transition = adjust_map(set, root, delta);
            if set.len() < SMALL_MIN {
                let set = self.sets.remove(&ci).unwrap_or_default();
                *small = if set.is_empty() { ThinVec::new() } else { set.into_iter().collect() };
            }
            return transition;
        }
        match small.binary_search_by_key(&root, |e| e.0) {
            Ok(at) => {
                let count = apply(small[at].1, delta);
                if count == 0 {
                    small.remove(at);
                    if small.is_empty() {
                        // Restored: its list goes, so that a network's worth of CIs once
                        // failed holds no memory for it.
                        *small = ThinVec::new();
                    }
                    Transition::Vanished
                } else {
                    small[at].1 = count;
                    Transition::Kept
                }
            }
            Err(at) => {
                let count = apply(0, delta);
                if count == 0 {
                    return Transition::Kept;
                }
                if small.len() < SMALL_MAX {
                    small.insert(at, (root, count));
                } else {
                    let mut set: BTreeMap<CiIdx, u32> = small.iter().copied().collect();
                    set.insert(root, count);
                    self.sets.insert(ci, set);
                    *small = ThinVec::new();
                    small.push(MARKER);
                }
                Transition::Appeared
            }
        }
    }

    /// Sets `ci`'s inherited roots whole (`entries` sorted by root, counts above zero): a
    /// CI whose dependencies a topology change set anew.
    pub(super) fn replace(&mut self, ci: CiIdx, small: &mut ThinVec<Entry>, entries: Vec<Entry>) {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0) && entries.iter().all(|e| e.1 > 0));
        self.sets.remove(&ci);
        *small = ThinVec::new();
        if entries.len() > SMALL_MAX {
            self.sets.insert(ci, entries.into_iter().collect());
            small.push(MARKER);
        } else {
            small.extend(entries);
        }
    }

    /// CIs whose counts are held here; for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.sets.len()
    }
}

fn apply(count: u32, delta: i64) -> u32 {
    let count = i64::from(count) + delta;
    debug_assert!(count >= 0, "a root's count went below zero");
    u32::try_from(count.max(0)).unwrap_or(u32::MAX)
}

fn adjust_map(set: &mut BTreeMap<CiIdx, u32>, root: CiIdx, delta: i64) -> Transition {
    // One search, whatever the change: a national service's map holds thousands of roots.
    match set.entry(root) {
        MapEntry::Vacant(vacant) => match apply(0, delta) {
            0 => Transition::Kept,
            after => {
                vacant.insert(after);
                Transition::Appeared
            }
        },
        MapEntry::Occupied(mut occupied) => match apply(*occupied.get(), delta) {
            0 => {
                occupied.remove();
                Transition::Vanished
            }
            after => {
                *occupied.get_mut() = after;
                Transition::Kept
            }
        },
    }
}

/// A CI's inherited roots, sorted.
#[derive(Clone, Copy, Debug)]
pub enum Inherited<'a> {
    Small(&'a [Entry]),
    Large(&'a BTreeMap<CiIdx, u32>),
}

impl<'a> Inherited<'a> {
    fn len(self) -> usize {
        match self {
            Inherited::Small(entries) => entries.len(),
            Inherited::Large(set) => set.len(),
        }
    }

    fn contains(self, root: CiIdx) -> bool {
        match self {
            Inherited::Small(entries) => entries.binary_search_by_key(&root, |e| e.0).is_ok(),
            Inherited::Large(set) => set.contains_key(&root),
        }
    }

    fn iter(self) -> InheritedIter<'a> {
        match self {
            Inherited::Small(entries) => InheritedIter::Small(entries.iter()),
            Inherited::Large(set) => InheritedIter::Large(set.keys()),
        }
    }
}

enum InheritedIter<'a> {
    Small(std::slice::Iter<'a, Entry>),
    Large(std::collections::btree_map::Keys<'a, CiIdx, u32>),
}

impl Iterator for InheritedIter<'_> {
    type Item = CiIdx;
    fn next(&mut self) -> Option<CiIdx> {
        match self {
            InheritedIter::Small(entries) => entries.next().map(|e| e.0),
            InheritedIter::Large(keys) => keys.next().copied(),
        }
    }
}

/// The root causes of one CI, sorted: empty when it is up, itself among them when its own
/// failure is worse than what its dependencies explain.
#[derive(Clone, Copy, Debug)]
pub struct Roots<'a> {
    /// The CI itself, when it is a root.
    own: Option<CiIdx>,
    inherited: Inherited<'a>,
}

impl<'a> Roots<'a> {
    pub(super) fn new(own: Option<CiIdx>, inherited: Inherited<'a>) -> Roots<'a> {
        debug_assert!(own.is_none_or(|own| !inherited.contains(own)), "a CI inherits itself");
        Roots { own, inherited }
    }

    pub fn len(&self) -> usize {
        self.inherited.len() + usize::from(self.own.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, root: CiIdx) -> bool {
        self.own == Some(root) || self.inherited.contains(root)
    }

    /// In increasing CI order.
    pub fn iter(self) -> impl Iterator<Item = CiIdx> + 'a {
        Merged { own: self.own, inherited: self.inherited.iter().peekable() }
    }

    pub fn to_vec(&self) -> Vec<CiIdx> {
        let mut roots = Vec::with_capacity(self.len());
        roots.extend(self.iter());
        roots
    }
}

/// The inherited roots with the CI's own slotted in at its place.
struct Merged<'a> {
    own: Option<CiIdx>,
    inherited: Peekable<InheritedIter<'a>>,
}

impl Iterator for Merged<'_> {
    type Item = CiIdx;
    fn next(&mut self) -> Option<CiIdx> {
        match (self.own, self.inherited.peek()) {
            (Some(own), Some(&next)) if own < next => self.own.take(),
            (Some(_), None) => self.own.take(),
            _ => self.inherited.next(),
        }
    }
}

/// Entry counts, for [`super::sizes`].
impl LargeSets {
    /// CIs whose counts are held here.
    pub(super) fn sets_len(&self) -> usize {
        self.sets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Plays count changes on one CI against a plain map, through the move to the B-tree
    /// and back.
    #[test]
    fn counts_follow_a_plain_map_across_both_representations() {
        let mut large = LargeSets::default();
        let mut small: ThinVec<Entry> = ThinVec::new();
        let mut expected: BTreeMap<CiIdx, u32> = BTreeMap::new();
        let mut rng = crate::generate::Rng::new(5);
        let mut was_large = false;
        let mut was_small_again = false;
        for step in 0..20_000 {
            // Grow to about 150 roots, then shrink to nothing.
            let growing = step < 10_000;
            let root = rng.below(200) as CiIdx;
            let present = expected.get(&root).copied().unwrap_or(0);
            let delta: i64 = if growing || present == 0 { 1 } else { -i64::from(present.min(2)) };
            let delta = if !growing && present == 0 { 0 } else { delta };
            let transition = large.adjust(7, &mut small, root, delta);
            let after = (i64::from(present) + delta) as u32;
            let want = match (present, after) {
                (0, a) if a > 0 => Transition::Appeared,
                (p, 0) if p > 0 => Transition::Vanished,
                _ => Transition::Kept,
            };
            assert_eq!(transition, want, "step {step}, root {root}");
            if after == 0 {
                expected.remove(&root);
            } else {
                expected.insert(root, after);
            }
            let roots = Roots::new(None, large.get(7, &small));
            assert_eq!(roots.to_vec(), expected.keys().copied().collect::<Vec<_>>(), "step {step}");
            assert_eq!(roots.len(), expected.len());
            was_large |= large.len() == 1;
            was_small_again |= was_large && large.len() == 0 && !small.is_empty();
        }
        // Shrink what is left to nothing.
        for (root, count) in std::mem::take(&mut expected) {
            assert_eq!(large.adjust(7, &mut small, root, -i64::from(count)), Transition::Vanished);
        }
        assert!(was_large && was_small_again, "both representations were used");
        assert!(Roots::new(None, large.get(7, &small)).is_empty());
        assert_eq!(small.capacity(), 0, "an empty set holds no memory");
        assert_eq!(large.len(), 0);
    }

    #[test]
    fn own_root_takes_its_place_in_order() {
        let entries = [(2, 1), (5, 3), (9, 1)];
        for (own, expected) in [(0, vec![0, 2, 5, 9]), (6, vec![2, 5, 6, 9]), (12, vec![2, 5, 9, 12])] {
            let roots = Roots::new(Some(own), Inherited::Small(&entries));
            assert_eq!(roots.to_vec(), expected);
            assert!(roots.contains(own) && roots.contains(5) && !roots.contains(3));
            assert_eq!(roots.len(), 4);
        }
        assert!(Roots::new(None, Inherited::Small(&[])).is_empty());
        assert_eq!(Roots::new(Some(3), Inherited::Small(&[])).to_vec(), vec![3]);
    }
}
