//! The documented de-duplication rule (`docs/trade-topic.md`, "Delivery"): a trade is identified
//! by `(symbol, trade_id)`; the first message carrying a pair is the trade, every later one is a
//! duplicate, whatever its `source`, message id or arrival order.
//!
//! Memory stays small because Binance trade ids are consecutive per symbol: the ids seen form a
//! few contiguous ranges (one, once backfills have filled the gaps), kept per symbol in a
//! [`trade_proto::ids::IdSet`]. When a symbol holds more than `max_ranges` ranges (ids scattered
//! by a very long, unfilled gap history), the lowest range is forgotten: a very late duplicate
//! of it would then be printed again (a duplicate, never a loss).

use std::collections::HashMap;

use trade_proto::ids::IdSet;

/// Ranges kept per symbol by [`Dedup::default`]: far more than the gaps a day produces.
pub const DEFAULT_MAX_RANGES: usize = 10_000;

/// Seen `(symbol, trade_id)` pairs as compact id ranges.
#[derive(Debug, Clone)]
pub struct Dedup {
    /// Per symbol: the ids seen.
    seen: HashMap<String, IdSet>,
    /// Per-symbol bound on the number of ranges.
    max_ranges: usize,
    /// Ranges forgotten because of `max_ranges`.
    forgotten: u64,
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RANGES)
    }
}

impl Dedup {
    /// Keeps at most `max_ranges` ranges per symbol (at least 1).
    pub fn new(max_ranges: usize) -> Self {
        Self {
            seen: HashMap::new(),
            max_ranges: max_ranges.max(1),
            forgotten: 0,
        }
    }

    /// Records the pair; `true` the first time it is seen, `false` for a duplicate.
    pub fn first_sighting(&mut self, symbol: &str, trade_id: i64) -> bool {
        // Look up before inserting: a symbol is allocated once, not per message.
        let ids = match self.seen.get_mut(symbol) {
            Some(ids) => ids,
            None => self.seen.entry(symbol.to_owned()).or_default(),
        };
        if !ids.insert(trade_id) {
            return false;
        }
        if ids.range_count() > self.max_ranges {
            ids.pop_first();
            self.forgotten += 1;
        }
        true
    }

    /// Number of ranges held for `symbol` (1 when its ids are contiguous).
    pub fn ranges(&self, symbol: &str) -> usize {
        self.seen.get(symbol).map_or(0, IdSet::range_count)
    }

    /// Ranges forgotten because a symbol exceeded `max_ranges`.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn a_rotation_overlap_and_a_late_backfill_collapse_to_one_range() {
        let mut d = Dedup::default();
        // Old connection 1..=60, new connection 50..=120 (overlap 50..=60), gap 121..=130,
        // stream resumes at 131, the backfill of 121..=130 arrives last.
        let arrivals = (1..=60)
            .chain(50..=120)
            .chain(131..=150)
            .chain(121..=130)
            .chain([125, 1]);
        let firsts: Vec<i64> = arrivals
            .filter(|&id| d.first_sighting("BTCUSDT", id))
            .collect();
        assert_eq!(firsts.len(), 150);
        assert_eq!(firsts.iter().copied().collect::<HashSet<_>>().len(), 150);
        assert_eq!(d.ranges("BTCUSDT"), 1);
    }

    #[test]
    fn symbols_are_independent() {
        let mut d = Dedup::default();
        assert!(d.first_sighting("BTCUSDT", 7));
        assert!(d.first_sighting("ARBUSDT", 7));
        assert!(!d.first_sighting("BTCUSDT", 7));
    }

    #[test]
    fn the_extremes_of_i64_do_not_overflow() {
        let mut d = Dedup::default();
        assert!(d.first_sighting("X", i64::MAX));
        assert!(d.first_sighting("X", i64::MAX - 1));
        assert!(d.first_sighting("X", i64::MIN));
        assert!(!d.first_sighting("X", i64::MAX));
        assert_eq!(d.ranges("X"), 2);
    }

    #[test]
    fn beyond_the_bound_the_lowest_range_is_forgotten_so_a_duplicate_passes_never_a_loss() {
        let mut d = Dedup::new(2);
        for id in [10, 20, 30] {
            assert!(d.first_sighting("X", id));
        }
        assert_eq!(d.ranges("X"), 2);
        assert_eq!(d.forgotten(), 1);
        assert!(d.first_sighting("X", 10), "forgotten: printed again");
        assert!(!d.first_sighting("X", 30));
    }

    proptest! {
        /// Model check: with room enough, the range set answers exactly like a set of pairs.
        #[test]
        fn answers_like_a_set_of_pairs(
            arrivals in proptest::collection::vec((0u8..3, 0i64..200), 0..600)
        ) {
            let mut d = Dedup::new(usize::MAX);
            let mut model = HashSet::new();
            for (sym, id) in arrivals {
                let symbol = ["BTCUSDT", "AAVEUSDT", "ARBUSDT"][usize::from(sym)];
                prop_assert_eq!(
                    d.first_sighting(symbol, id),
                    model.insert((symbol, id))
                );
            }
            // Ranges are disjoint and not adjacent: their count is the number of runs.
            for symbol in ["BTCUSDT", "AAVEUSDT", "ARBUSDT"] {
                let mut ids: Vec<i64> =
                    model.iter().filter(|(s, _)| *s == symbol).map(|&(_, i)| i).collect();
                ids.sort_unstable();
                let runs = ids.windows(2).filter(|w| w[1] != w[0] + 1).count()
                    + usize::from(!ids.is_empty());
                prop_assert_eq!(d.ranges(symbol), runs);
            }
        }
    }
}
