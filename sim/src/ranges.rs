//! A compact set of trade ids as sorted, disjoint, inclusive ranges (for ground truth).
//!
//! Ids missed by a connection are mostly long runs (a stall, a drop) or isolated ids (a
//! malformed frame), so ranges keep the report small: `[[5052000100, 5052000350], [5052000402,
//! 5052000402]]`.

use serde::{Deserialize, Serialize};

/// Sorted, disjoint, non-adjacent inclusive ranges of ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdRanges(Vec<(u64, u64)>);

impl IdRanges {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `first..=last` (ignored when `first > last`). Amortised O(1) for increasing ids.
    pub fn insert_range(&mut self, first: u64, last: u64) {
        if first > last {
            return;
        }
        // Fast path: at or after the end.
        if let Some(tail) = self.0.last_mut() {
            if first > tail.1.saturating_add(1) {
                self.0.push((first, last));
                return;
            }
            if first >= tail.0 {
                tail.1 = tail.1.max(last);
                return;
            }
        } else {
            self.0.push((first, last));
            return;
        }
        // General case: merge into place.
        let mut merged = Vec::with_capacity(self.0.len() + 1);
        let mut new = (first, last);
        let mut placed = false;
        for &(a, b) in &self.0 {
            if b.saturating_add(1) < new.0 {
                merged.push((a, b));
            } else if new.1.saturating_add(1) < a {
                if !placed {
                    merged.push(new);
                    placed = true;
                }
                merged.push((a, b));
            } else {
                new = (new.0.min(a), new.1.max(b));
            }
        }
        if !placed {
            merged.push(new);
        }
        self.0 = merged;
    }

    /// Add one id.
    pub fn insert(&mut self, id: u64) {
        self.insert_range(id, id);
    }

    /// Remove one id (a reordered frame delivered late was counted missing meanwhile).
    pub fn remove(&mut self, id: u64) {
        let Some(pos) = self.0.iter().position(|&(a, b)| a <= id && id <= b) else {
            return;
        };
        let (a, b) = self.0[pos];
        match (a == id, b == id) {
            (true, true) => {
                self.0.remove(pos);
            }
            (true, false) => self.0[pos].0 = id + 1,
            (false, true) => self.0[pos].1 = id - 1,
            (false, false) => {
                self.0[pos].1 = id - 1;
                self.0.insert(pos + 1, (id + 1, b));
            }
        }
    }

    /// `true` if `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        let i = self.0.partition_point(|&(_, b)| b < id);
        i < self.0.len() && self.0[i].0 <= id
    }

    /// Number of ids.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Every id, in order (for tests; beware of huge sets).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..=b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_adjacent_and_overlapping() {
        let mut r = IdRanges::new();
        r.insert(5);
        r.insert(6);
        r.insert_range(10, 12);
        r.insert(8);
        assert_eq!(r.ranges(), &[(5, 6), (8, 8), (10, 12)]);
        r.insert(7);
        assert_eq!(r.ranges(), &[(5, 8), (10, 12)]);
        r.insert_range(1, 20);
        assert_eq!(r.ranges(), &[(1, 20)]);
        r.remove(1);
        r.remove(20);
        r.remove(10);
        assert_eq!(r.ranges(), &[(2, 9), (11, 19)]);
        assert_eq!(r.count(), 17);
        assert!(r.contains(9) && !r.contains(10) && !r.contains(0));
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((0u64..60, 0u64..5, any::<bool>()), 0..80)) {
            let mut r = IdRanges::new();
            let mut s = BTreeSet::new();
            for (a, len, add) in ops {
                if add {
                    r.insert_range(a, a + len);
                    s.extend(a..=a + len);
                } else {
                    r.remove(a);
                    s.remove(&a);
                }
            }
            prop_assert_eq!(r.iter().collect::<Vec<_>>(), s.iter().copied().collect::<Vec<_>>());
            for w in r.ranges().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0, "disjoint and non-adjacent");
            }
        }
    }
}
