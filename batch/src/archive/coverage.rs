//! The per-symbol, per-day completeness record of `market.coverage`: which days are proven
//! complete, computed from rows and holes alone.
//!
//! One record per (symbol, UTC day of `trade_time`): `first_id`, `last_id`, `count` (distinct
//! ids), the source mix (rows per `source`), and a status:
//!
//! - `complete`: the day's ids are consecutive and no known hole touches them (a hole ending
//!   right before its first id or starting right after its last counts as touching: the
//!   missing trades' times are unknown, so either neighbour may own them);
//! - `holes`: ids skipped inside the day, or a known hole touching it;
//! - `missing`: no row at all. A day on which Binance had no trades (a long halt) is also
//!   `missing` here; the daily check, which knows the day's kline trade count, may say better.
//!
//! Input rows must come in trade-id order (archive files are; a query adds `ORDER BY
//! trade_id`). A repeated id is counted once, for the source that came first, as the
//! `market.trades` view keeps one row per id.

use std::collections::BTreeMap;

use binance::IdRange;
use trade_proto::Trade;

use crate::day::Day;

/// A day's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Every id from first to last, nothing missing around them.
    Complete,
    /// Some ids missing inside or at the edges.
    Holes,
    /// No trade at all.
    Missing,
}

impl Status {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Holes => "holes",
            Status::Missing => "missing",
        }
    }
}

/// One row of `market.coverage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageRow {
    /// Upper-case symbol.
    pub symbol: String,
    /// UTC day of `trade_time`.
    pub day: Day,
    /// Smallest id of the day (`None` when missing).
    pub first_id: Option<i64>,
    /// Largest id of the day (`None` when missing).
    pub last_id: Option<i64>,
    /// Distinct ids.
    pub count: i64,
    /// Rows per source (`archive`, `stream`, ...), sorted by source.
    pub sources: BTreeMap<String, i64>,
    /// The verdict.
    pub status: Status,
    /// The ids missing inside or at the edges of the day, for `holes`.
    pub holes: Vec<IdRange>,
}

impl CoverageRow {
    /// The source mix as one column: `archive=86000,stream=12` (sorted, no spaces).
    pub fn source_mix(&self) -> String {
        self.sources
            .iter()
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why a row cannot be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoverageError {
    /// A row of another symbol.
    #[error("trade {id} is of {found:?}, this coverage is of {expected:?}")]
    Symbol {
        /// The builder's symbol.
        expected: String,
        /// The row's.
        found: String,
        /// Its id.
        id: i64,
    },
    /// Ids went backwards: the input is not in id order.
    #[error("trade id {id} after {previous}: rows must come in trade-id order")]
    Order {
        /// The previous id.
        previous: i64,
        /// This one.
        id: i64,
    },
}

#[derive(Debug, Clone, Default)]
struct Tally {
    first: i64,
    last: i64,
    count: i64,
    sources: BTreeMap<String, i64>,
    holes: Vec<IdRange>,
}

/// Accumulates rows of one symbol into per-day tallies.
#[derive(Debug, Clone)]
pub struct CoverageBuilder {
    symbol: String,
    days: BTreeMap<Day, Tally>,
    last_id: Option<i64>,
}

impl CoverageBuilder {
    /// An empty builder for `symbol`.
    pub fn new(symbol: &str) -> Self {
        CoverageBuilder {
            symbol: symbol.to_owned(),
            days: BTreeMap::new(),
            last_id: None,
        }
    }

    /// Counts one row (rows in id order).
    pub fn push(&mut self, t: &Trade) -> Result<(), CoverageError> {
        if t.symbol != self.symbol {
            return Err(CoverageError::Symbol {
                expected: self.symbol.clone(),
                found: t.symbol.clone(),
                id: t.trade_id,
            });
        }
        match self.last_id {
            Some(prev) if t.trade_id == prev => return Ok(()),
            Some(prev) if t.trade_id < prev => {
                return Err(CoverageError::Order {
                    previous: prev,
                    id: t.trade_id,
                });
            }
            _ => {}
        }
        self.last_id = Some(t.trade_id);
        let day = Day::containing_ms(t.trade_time.div_euclid(1000));
        let tally = self.days.entry(day).or_default();
        if tally.count == 0 {
            tally.first = t.trade_id;
        } else if t.trade_id > tally.last + 1 {
            tally
                .holes
                .push(IdRange::new(tally.last + 1, t.trade_id - 1));
        }
        tally.last = t.trade_id;
        tally.count += 1;
        *tally.sources.entry(t.source.clone()).or_default() += 1;
        Ok(())
    }

    /// One row per day of `first..=last`, given the holes known from elsewhere (archive seams,
    /// the gap ledger).
    pub fn finish(self, first: Day, last: Day, known_holes: &[IdRange]) -> Vec<CoverageRow> {
        first
            .through(last)
            .map(|day| match self.days.get(&day) {
                None => CoverageRow {
                    symbol: self.symbol.clone(),
                    day,
                    first_id: None,
                    last_id: None,
                    count: 0,
                    sources: BTreeMap::new(),
                    status: Status::Missing,
                    holes: Vec::new(),
                },
                Some(t) => {
                    let mut holes = t.holes.clone();
                    // A known hole touches the day when it overlaps [first - 1, last + 1].
                    holes.extend(known_holes.iter().copied().filter(|h| {
                        h.to >= t.first.saturating_sub(1) && h.from <= t.last.saturating_add(1)
                    }));
                    holes.sort_unstable();
                    holes.dedup();
                    CoverageRow {
                        symbol: self.symbol.clone(),
                        day,
                        first_id: Some(t.first),
                        last_id: Some(t.last),
                        count: t.count,
                        sources: t.sources.clone(),
                        status: if holes.is_empty() {
                            Status::Complete
                        } else {
                            Status::Holes
                        },
                        holes,
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_US: i64 = 86_400_000_000;
    // 2024-01-01T00:00:00Z in µs.
    const JAN1: i64 = 1_704_067_200_000_000;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn trade(id: i64, time: i64, source: &str) -> Trade {
        Trade {
            symbol: "BTCUSDT".into(),
            trade_id: id,
            price: "1".into(),
            quantity: "1".into(),
            trade_time: time,
            event_time: time,
            receive_time: time,
            buyer_is_maker: false,
            source: source.into(),
        }
    }

    fn build(rows: &[Trade], holes: &[IdRange]) -> Vec<CoverageRow> {
        let mut b = CoverageBuilder::new("BTCUSDT");
        for t in rows {
            b.push(t).unwrap();
        }
        b.finish(day("2024-01-01"), day("2024-01-03"), holes)
    }

    #[test]
    fn consecutive_days_are_complete_with_their_source_mix() {
        let rows = [
            trade(1, JAN1, "archive"),
            trade(2, JAN1 + 5, "archive"),
            trade(3, JAN1 + DAY_US - 1, "backfill"),
            trade(4, JAN1 + DAY_US, "archive"),
            trade(4, JAN1 + DAY_US, "stream"), // the same trade again: counted once
            trade(5, JAN1 + 2 * DAY_US, "stream"),
        ];
        let cov = build(&rows, &[]);
        let got: Vec<_> = cov
            .iter()
            .map(|r| {
                (
                    r.day.to_string(),
                    r.first_id,
                    r.last_id,
                    r.count,
                    r.source_mix(),
                    r.status.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "2024-01-01".into(),
                    Some(1),
                    Some(3),
                    3,
                    "archive=2,backfill=1".into(),
                    "complete"
                ),
                (
                    "2024-01-02".into(),
                    Some(4),
                    Some(4),
                    1,
                    "archive=1".into(),
                    "complete"
                ),
                (
                    "2024-01-03".into(),
                    Some(5),
                    Some(5),
                    1,
                    "stream=1".into(),
                    "complete"
                ),
            ]
        );
    }

    #[test]
    fn inner_and_touching_holes_and_empty_days() {
        let rows = [
            trade(1, JAN1, "archive"),
            trade(4, JAN1 + 1, "archive"),
            trade(10, JAN1 + 2 * DAY_US, "archive"),
        ];
        // The ledger knows 5..=9 is missing: it touches day 3's first id (10) and day 1's last
        // (4), either of which may own those trades.
        let cov = build(&rows, &[IdRange::new(5, 9)]);
        assert_eq!(cov[0].status, Status::Holes);
        assert_eq!(cov[0].holes, [IdRange::new(2, 3), IdRange::new(5, 9)]);
        assert_eq!(cov[1].status, Status::Missing);
        assert_eq!((cov[1].count, cov[1].first_id), (0, None));
        assert_eq!(cov[2].status, Status::Holes);
        assert_eq!(cov[2].holes, [IdRange::new(5, 9)]);
        // A hole far away touches nothing.
        let far = build(&rows[2..], &[IdRange::new(100, 200)]);
        assert_eq!(far[2].status, Status::Complete);
    }

    #[test]
    fn rows_out_of_order_or_of_another_symbol_are_refused() {
        let mut b = CoverageBuilder::new("BTCUSDT");
        b.push(&trade(5, JAN1, "archive")).unwrap();
        let e = b.push(&trade(4, JAN1, "archive")).unwrap_err();
        assert_eq!(e, CoverageError::Order { previous: 5, id: 4 });
        let mut other = trade(6, JAN1, "archive");
        other.symbol = "ETHUSDT".into();
        assert!(b.push(&other).unwrap_err().to_string().contains("ETHUSDT"));
    }
}
