//! Trade-id accounting for a day, pure: what Binance says the day had, what `market.trades`
//! holds, the verdict of `batch check`, and the ranges `batch reconcile` must fetch.
//!
//! Trade ids are consecutive per symbol (Binance: the 24h ticker's `lastId - firstId + 1 ==
//! count`), so a day's trades are exactly the ids `first ..= first + count - 1`, where `first` is
//! the first trade at or after midnight (from `aggTrades`) and `count` the sum of the day's kline
//! trade counts.

use binance::IdRange;

use crate::day::Day;
use crate::klines::Problem;

/// The ids a symbol's day must hold, per Binance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// First trade id of the day (meaningless when `count == 0`).
    pub first: i64,
    /// Number of trades (sum of kline trade counts).
    pub count: i64,
}

impl Expected {
    /// The id range, `None` for a day without trades.
    pub fn range(self) -> Option<IdRange> {
        (self.count > 0).then(|| IdRange::new(self.first, self.first + self.count - 1))
    }
}

/// What `market.trades` holds for a symbol (by trade time within the day, or by id range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Distinct trade ids.
    pub ids: i64,
    /// Smallest id (ignored when `ids == 0`).
    pub lo: i64,
    /// Largest id (ignored when `ids == 0`).
    pub hi: i64,
}

/// Compares what the day holds with what Binance says. Empty = exact.
pub fn check_day(symbol: &str, day: Day, expected: Expected, held: Held) -> Vec<Problem> {
    let problem = |what: String| Problem {
        symbol: symbol.to_owned(),
        day,
        what,
    };
    let Some(range) = expected.range() else {
        return if held.ids == 0 {
            vec![]
        } else {
            vec![problem(format!(
                "Binance reports no trades, but market.trades holds {} trade ids ({}..={})",
                held.ids, held.lo, held.hi
            ))]
        };
    };
    if held.ids == 0 {
        return vec![problem(format!(
            "market.trades holds no trades for this day, Binance had {} (ids {}..={}). The \
             real-time path (producer/consumer) did not run or did not deliver: run `batch \
             reconcile --date {day}` to fill it, or pass --skip-trades to check klines only",
            expected.count, range.from, range.to
        ))];
    }
    if held.ids == expected.count && held.lo == range.from && held.hi == range.to {
        return vec![];
    }
    vec![problem(format!(
        "market.trades holds {} trade ids ({}..={}), Binance had {} (ids {}..={}); run `batch \
         reconcile --date {day}` to fill the missing ones",
        held.ids, held.lo, held.hi, expected.count, range.from, range.to
    ))]
}

/// The ids of `range` missing from the store, given what it holds inside `range` and the holes
/// between consecutive stored ids (from [`crate::sql::trade_id_holes`]).
pub fn missing_ranges(range: IdRange, held: Held, holes: &[IdRange]) -> Vec<IdRange> {
    if held.ids == 0 {
        return vec![range];
    }
    let mut out = Vec::with_capacity(holes.len() + 2);
    if held.lo > range.from {
        out.push(IdRange::new(range.from, held.lo - 1));
    }
    out.extend(holes.iter().copied());
    if held.hi < range.to {
        out.push(IdRange::new(held.hi + 1, range.to));
    }
    out
}

/// Splits ranges so that none is longer than `max` ids (bounds the memory of one fetch).
pub fn split(ranges: &[IdRange], max: i64) -> Vec<IdRange> {
    let mut out = Vec::new();
    for r in ranges {
        let mut from = r.from;
        while from <= r.to {
            let to = (from + max - 1).min(r.to);
            out.push(IdRange::new(from, to));
            from = to + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day() -> Day {
        "2026-01-31".parse().unwrap()
    }

    #[test]
    fn exact_day_passes_and_a_short_one_names_symbol_date_and_numbers() {
        let e = Expected {
            first: 100,
            count: 50,
        };
        let all = Held {
            ids: 50,
            lo: 100,
            hi: 149,
        };
        assert!(check_day("BTCUSDT", day(), e, all).is_empty());
        let p = check_day("BTCUSDT", day(), e, Held { ids: 48, ..all });
        assert_eq!(p.len(), 1);
        let text = p[0].to_string();
        assert!(
            text.starts_with("BTCUSDT 2026-01-31: market.trades holds 48"),
            "{text}"
        );
        assert!(text.contains("Binance had 50 (ids 100..=149)"), "{text}");
    }

    #[test]
    fn an_empty_store_says_the_real_time_path_did_not_run() {
        let p = check_day(
            "ARBUSDT",
            day(),
            Expected { first: 1, count: 3 },
            Held {
                ids: 0,
                lo: -1,
                hi: -1,
            },
        );
        assert!(p[0].what.contains("did not run"), "{p:?}");
        assert!(p[0].what.contains("--skip-trades"), "{p:?}");
    }

    #[test]
    fn shifted_ids_fail_even_with_the_right_count() {
        let e = Expected {
            first: 100,
            count: 10,
        };
        let p = check_day(
            "A",
            day(),
            e,
            Held {
                ids: 10,
                lo: 101,
                hi: 110,
            },
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn missing_ranges_cover_head_holes_and_tail() {
        let r = IdRange::new(10, 30);
        let held = Held {
            ids: 10,
            lo: 12,
            hi: 27,
        };
        let holes = [IdRange::new(15, 16), IdRange::new(20, 20)];
        assert_eq!(
            missing_ranges(r, held, &holes),
            vec![
                IdRange::new(10, 11),
                IdRange::new(15, 16),
                IdRange::new(20, 20),
                IdRange::new(28, 30)
            ]
        );
        assert_eq!(
            missing_ranges(
                r,
                Held {
                    ids: 0,
                    lo: -1,
                    hi: -1
                },
                &[]
            ),
            vec![r]
        );
    }

    proptest! {
        /// Whatever subset of a range is stored, the missing ranges are exactly its complement.
        #[test]
        fn missing_ranges_are_the_complement(present in proptest::collection::btree_set(0i64..60, 0..60)) {
            let range = IdRange::new(0, 59);
            let ids: Vec<i64> = present.iter().copied().collect();
            let held = Held {
                ids: ids.len() as i64,
                lo: ids.first().copied().unwrap_or(-1),
                hi: ids.last().copied().unwrap_or(-1),
            };
            let holes: Vec<IdRange> = ids
                .windows(2)
                .filter(|w| w[1] > w[0] + 1)
                .map(|w| IdRange::new(w[0] + 1, w[1] - 1))
                .collect();
            let missing: Vec<i64> = split(&missing_ranges(range, held, &holes), 7)
                .iter()
                .flat_map(|r| r.from..=r.to)
                .collect();
            let want: Vec<i64> = (0..60).filter(|i| !present.contains(i)).collect();
            prop_assert_eq!(missing, want);
        }
    }
}
