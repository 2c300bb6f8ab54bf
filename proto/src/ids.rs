//! A set of trade ids kept as sorted, disjoint, non-adjacent inclusive ranges: the one id-range
//! set of the workspace (the producer's continuity tracker and resume ledger, `tap`'s
//! de-duplication, the simulator's ground truth and the chaos test's report all use it).
//!
//! Binance trade ids are consecutive per symbol, so the ids a reader has seen (or misses) are a
//! few long runs: a set of a million consecutive ids is one range. Ids are `i64`, as the `Trade`
//! contract carries them.
//!
//! Cost: ranges live in a `VecDeque` sorted by start. Adding ids in increasing order (the
//! common case: a stream) touches only the last range, amortised O(1); dropping the lowest
//! range ([`IdSet::pop_first`], a caller's bound on memory) is O(1); a lookup is a binary
//! search; an insert or removal that creates or merges ranges in the middle moves the ranges
//! after it (callers bound the range count).
//!
//! With the `serde` feature the set is written as its ranges, `[[first, last], ...]`, and read
//! back from any list of ranges (overlapping or unsorted ones are merged).

use std::collections::VecDeque;

/// Sorted, disjoint, non-adjacent inclusive ranges of trade ids. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSet {
    /// `(first, last)` inclusive, `first <= last`, sorted, and `last + 1 < next.first`.
    ranges: VecDeque<(i64, i64)>,
}

impl IdSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` when the set holds no id.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of ids (saturates at `u64::MAX`: only the whole `i64` range exceeds it).
    pub fn len(&self) -> u64 {
        self.ranges.iter().fold(0u64, |n, &(a, b)| {
            n.saturating_add(b.abs_diff(a)).saturating_add(1)
        })
    }

    /// Number of ranges (1 when the ids are consecutive).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// `true` if `id` is in the set.
    pub fn contains(&self, id: i64) -> bool {
        let i = self.ranges.partition_point(|&(_, b)| b < id);
        self.ranges.get(i).is_some_and(|&(a, _)| a <= id)
    }

    /// Adds `id`; `true` if it was not in the set yet.
    pub fn insert(&mut self, id: i64) -> bool {
        // Above everything (a stream's next id): no search needed.
        let above = self.ranges.back().is_none_or(|&(_, b)| id > b);
        if !above && self.contains(id) {
            return false;
        }
        self.insert_range(id, id);
        true
    }

    /// Adds every id of `first..=last` (nothing when `first > last`).
    pub fn insert_range(&mut self, first: i64, last: i64) {
        if first > last {
            return;
        }
        // Fast path, ids in increasing order: at or after the start of the last range.
        match self.ranges.back_mut() {
            None => {
                self.ranges.push_back((first, last));
                return;
            }
            Some(tail) if first > tail.1.saturating_add(1) => {
                self.ranges.push_back((first, last));
                return;
            }
            Some(tail) if first >= tail.0 => {
                tail.1 = tail.1.max(last);
                return;
            }
            Some(_) => {}
        }
        // Ranges i..j overlap or touch first..=last.
        let i = self
            .ranges
            .partition_point(|&(_, b)| b.saturating_add(1) < first);
        let j = self
            .ranges
            .partition_point(|&(a, _)| a <= last.saturating_add(1));
        if i == j {
            self.ranges.insert(i, (first, last));
            return;
        }
        let merged = (first.min(self.ranges[i].0), last.max(self.ranges[j - 1].1));
        self.ranges[i] = merged;
        self.ranges.drain(i + 1..j);
    }

    /// Removes `id`; `true` if it was in the set.
    pub fn remove(&mut self, id: i64) -> bool {
        let i = self.ranges.partition_point(|&(_, b)| b < id);
        let Some(&(a, b)) = self.ranges.get(i) else {
            return false;
        };
        if a > id {
            return false;
        }
        match (a == id, b == id) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].0 = id + 1,
            (false, true) => self.ranges[i].1 = id - 1,
            (false, false) => {
                self.ranges[i].1 = id - 1;
                self.ranges.insert(i + 1, (id + 1, b));
            }
        }
        true
    }

    /// Removes every id of `first..=last`; returns the ranges that were in the set, ascending.
    pub fn remove_range(&mut self, first: i64, last: i64) -> Vec<(i64, i64)> {
        if first > last {
            return Vec::new();
        }
        let i = self.ranges.partition_point(|&(_, b)| b < first);
        let j = self.ranges.partition_point(|&(a, _)| a <= last);
        if i >= j {
            return Vec::new();
        }
        let (lo, hi) = (self.ranges[i].0, self.ranges[j - 1].1);
        let removed = self
            .ranges
            .drain(i..j)
            .map(|(a, b)| (a.max(first), b.min(last)))
            .collect();
        // What sticks out on either side stays.
        if hi > last {
            self.ranges.insert(i, (last + 1, hi));
        }
        if lo < first {
            self.ranges.insert(i, (lo, first - 1));
        }
        removed
    }

    /// The lowest range.
    pub fn first(&self) -> Option<(i64, i64)> {
        self.ranges.front().copied()
    }

    /// The highest range.
    pub fn last(&self) -> Option<(i64, i64)> {
        self.ranges.back().copied()
    }

    /// Removes and returns the lowest range (a caller's bound on the range count).
    pub fn pop_first(&mut self) -> Option<(i64, i64)> {
        self.ranges.pop_front()
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> impl DoubleEndedIterator<Item = (i64, i64)> + ExactSizeIterator + '_ {
        self.ranges.iter().copied()
    }

    /// Every id, ascending (beware of huge sets).
    pub fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    /// The parts of the set within `lo..=hi`, ascending.
    pub fn within(&self, lo: i64, hi: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let i = if lo > hi {
            self.ranges.len()
        } else {
            self.ranges.partition_point(|&(_, b)| b < lo)
        };
        self.ranges
            .range(i..)
            .take_while(move |&&(a, _)| a <= hi)
            .map(move |&(a, b)| (a.max(lo), b.min(hi)))
    }

    /// The ids of `lo..=hi` not in the set, as ranges, ascending (empty when `lo > hi`).
    pub fn missing_within(&self, lo: i64, hi: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        if lo > hi {
            return out;
        }
        let mut next = lo;
        for (a, b) in self.within(lo, hi) {
            if a > next {
                out.push((next, a - 1));
            }
            match b.checked_add(1) {
                Some(n) => next = n,
                None => return out,
            }
        }
        if next <= hi {
            out.push((next, hi));
        }
        out
    }
}

impl FromIterator<i64> for IdSet {
    fn from_iter<T: IntoIterator<Item = i64>>(iter: T) -> Self {
        let mut set = IdSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<i64> for IdSet {
    fn extend<T: IntoIterator<Item = i64>>(&mut self, iter: T) {
        for id in iter {
            self.insert_range(id, id);
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for IdSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.ranges.iter().map(|&(a, b)| [a, b]))
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for IdSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ranges = <Vec<[i64; 2]> as serde::Deserialize>::deserialize(deserializer)?;
        let mut set = IdSet::new();
        for [a, b] in ranges {
            if a > b {
                return Err(serde::de::Error::custom(format!(
                    "id range [{a}, {b}]: first above last"
                )));
            }
            set.insert_range(a, b);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ranges(s: &IdSet) -> Vec<(i64, i64)> {
        s.ranges().collect()
    }

    #[test]
    fn merges_adjacent_and_overlapping_ranges() {
        let mut s = IdSet::new();
        assert!(s.insert(5));
        assert!(s.insert(6));
        s.insert_range(10, 12);
        assert!(s.insert(8));
        assert!(!s.insert(11), "already there");
        assert_eq!(ranges(&s), [(5, 6), (8, 8), (10, 12)]);
        s.insert(7);
        assert_eq!(ranges(&s), [(5, 8), (10, 12)]);
        s.insert_range(3, 3);
        assert_eq!(ranges(&s), [(3, 3), (5, 8), (10, 12)]);
        s.insert_range(1, 20);
        assert_eq!(ranges(&s), [(1, 20)]);
        s.insert_range(9, 2);
        assert_eq!(s.len(), 20, "an empty range adds nothing");
    }

    #[test]
    fn removes_ids_and_ranges_splitting_where_needed() {
        let mut s: IdSet = (1..=20).collect();
        assert!(s.remove(1) && s.remove(20) && s.remove(10));
        assert!(!s.remove(10) && !s.remove(0));
        assert_eq!(ranges(&s), [(2, 9), (11, 19)]);
        assert_eq!((s.len(), s.range_count()), (17, 2));
        assert!(s.contains(9) && !s.contains(10) && !s.contains(0));
        assert_eq!(s.remove_range(5, 12), [(5, 9), (11, 12)]);
        assert_eq!(ranges(&s), [(2, 4), (13, 19)]);
        assert_eq!(s.remove_range(30, 40), []);
        assert_eq!(s.remove_range(14, 14), [(14, 14)]);
        assert_eq!(ranges(&s), [(2, 4), (13, 13), (15, 19)]);
    }

    #[test]
    fn first_last_pop_and_the_parts_within_a_window() {
        let mut s = IdSet::new();
        assert_eq!((s.first(), s.last(), s.pop_first()), (None, None, None));
        s.insert_range(10, 19);
        s.insert_range(30, 39);
        s.insert(50);
        assert_eq!((s.first(), s.last()), (Some((10, 19)), Some((50, 50))));
        assert_eq!(s.within(15, 35).collect::<Vec<_>>(), [(15, 19), (30, 35)]);
        assert_eq!(s.missing_within(15, 35), [(20, 29)]);
        assert_eq!(
            s.missing_within(0, 60),
            [(0, 9), (20, 29), (40, 49), (51, 60)]
        );
        assert_eq!(s.missing_within(31, 32), []);
        assert_eq!(s.missing_within(5, 4), []);
        assert_eq!(s.within(35, 31).count(), 0, "an empty window");
        assert_eq!(s.pop_first(), Some((10, 19)));
        assert_eq!(s.first(), Some((30, 39)));
    }

    #[test]
    fn the_extremes_of_i64_do_not_overflow() {
        let mut s = IdSet::new();
        assert!(s.insert(i64::MAX));
        assert!(s.insert(i64::MAX - 1));
        assert!(s.insert(i64::MIN));
        assert!(!s.insert(i64::MAX));
        assert_eq!(ranges(&s), [(i64::MIN, i64::MIN), (i64::MAX - 1, i64::MAX)]);
        assert_eq!(
            s.missing_within(i64::MAX - 3, i64::MAX),
            [(i64::MAX - 3, i64::MAX - 2)]
        );
        s.insert_range(i64::MIN, i64::MAX);
        assert_eq!(s.len(), u64::MAX, "saturates");
        assert!(s.remove(i64::MIN) && s.remove(i64::MAX));
        assert_eq!(ranges(&s), [(i64::MIN + 1, i64::MAX - 1)]);
    }

    /// One operation of the model check.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64, i64),
        Remove(i64),
        RemoveRange(i64, i64),
        PopFirst,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0i64..80, 0i64..6).prop_map(|(a, n)| Op::Insert(a, a + n)),
            2 => (0i64..80).prop_map(Op::Remove),
            1 => (0i64..80, 0i64..10).prop_map(|(a, n)| Op::RemoveRange(a, a + n)),
            1 => Just(Op::PopFirst),
        ]
    }

    proptest! {
        /// Model check against a `BTreeSet`: every answer agrees and the ranges stay sorted,
        /// disjoint and non-adjacent.
        #[test]
        fn behaves_like_a_btreeset(ops in proptest::collection::vec(op(), 0..100)) {
            let mut s = IdSet::new();
            let mut m = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(a, b) => {
                        s.insert_range(a, b);
                        m.extend(a..=b);
                    }
                    Op::Remove(id) => prop_assert_eq!(s.remove(id), m.remove(&id)),
                    Op::RemoveRange(a, b) => {
                        let removed: Vec<i64> =
                            s.remove_range(a, b).into_iter().flat_map(|(x, y)| x..=y).collect();
                        let want: Vec<i64> = m.range(a..=b).copied().collect();
                        for id in &want {
                            m.remove(id);
                        }
                        prop_assert_eq!(removed, want);
                    }
                    Op::PopFirst => {
                        if let Some((a, b)) = s.pop_first() {
                            prop_assert_eq!(m.first().copied(), Some(a));
                            for id in a..=b {
                                prop_assert!(m.remove(&id));
                            }
                            prop_assert!(!m.contains(&(b + 1)), "the range was maximal");
                        } else {
                            prop_assert!(m.is_empty());
                        }
                    }
                }
            }
            prop_assert_eq!(s.ids().collect::<Vec<_>>(), m.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(s.len(), m.len() as u64);
            for w in ranges(&s).windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0, "disjoint and non-adjacent: {:?}", w);
            }
            for id in -1..90 {
                prop_assert_eq!(s.contains(id), m.contains(&id));
            }
            let missing: Vec<i64> =
                s.missing_within(10, 60).into_iter().flat_map(|(a, b)| a..=b).collect();
            let want: Vec<i64> = (10..=60).filter(|i| !m.contains(i)).collect();
            prop_assert_eq!(missing, want);
            let within: Vec<i64> = s.within(10, 60).flat_map(|(a, b)| a..=b).collect();
            prop_assert_eq!(within, m.range(10..=60).copied().collect::<Vec<_>>());
        }

        /// Any insertion order of the same ids gives the same set.
        #[test]
        fn the_insertion_order_does_not_matter(
            ids in proptest::collection::vec(0i64..200, 0..150).prop_shuffle(),
        ) {
            let shuffled: IdSet = ids.iter().copied().collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            let in_order: IdSet = sorted.into_iter().collect();
            prop_assert_eq!(&shuffled, &in_order);
            let model: BTreeSet<i64> = ids.into_iter().collect();
            prop_assert_eq!(shuffled.ids().collect::<BTreeSet<_>>(), model);
        }
    }
}
