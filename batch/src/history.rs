//! The decisions of `batch history` (pure, unit-tested): which planned files are this Cloud Run
//! task's, which files a rerun may skip, which rows of a file to append, and how the holes left
//! after the files are spent against a REST weight budget.
//!
//! The I/O is in [`crate::commands`] (`history.rs`); the archive's own rules (paths, checksums,
//! rows, continuity, coverage) are in [`crate::archive`].

use std::collections::BTreeMap;

use binance::IdRange;
use binance::rest::weights;
use trade_proto::Trade;

use crate::archive::ArchiveFile;
use crate::archive::continuity::{FileIds, Hole};
use crate::archive::coverage::Status;
use crate::day::Day;

/// Trades per `historicalTrades` page (Binance's `limit` maximum).
pub const PAGE_IDS: u64 = 1000;

/// Default `--max-rest-weight`: 100,000 weight is 4,000 pages, 4 M ids, about 67 minutes at
/// the backfill's default 1500 weight a minute.
pub const DEFAULT_MAX_REST_WEIGHT: u64 = 100_000;

/// This task's share of the plan: Cloud Run job tasks each take every `count`-th file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// `CLOUD_RUN_TASK_INDEX`, 0-based.
    pub index: u32,
    /// `CLOUD_RUN_TASK_COUNT`, at least 1.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

/// A `CLOUD_RUN_TASK_*` value that is not a task index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={raw:?}: {why}")]
pub struct ShardError {
    name: &'static str,
    raw: String,
    why: &'static str,
}

impl Shard {
    /// From the values of `CLOUD_RUN_TASK_INDEX` and `CLOUD_RUN_TASK_COUNT` (unset: 0 and 1,
    /// a run outside Cloud Run does the whole plan).
    pub fn from_env_values(index: Option<&str>, count: Option<&str>) -> Result<Shard, ShardError> {
        let parse = |name: &'static str, raw: Option<&str>, default: u32| match raw {
            None => Ok(default),
            Some(r) => r.trim().parse::<u32>().map_err(|_| ShardError {
                name,
                raw: r.to_owned(),
                why: "not a non-negative integer",
            }),
        };
        let index = parse("CLOUD_RUN_TASK_INDEX", index, 0)?;
        let count = parse("CLOUD_RUN_TASK_COUNT", count, 1)?;
        if count == 0 {
            return Err(ShardError {
                name: "CLOUD_RUN_TASK_COUNT",
                raw: "0".into(),
                why: "must be at least 1",
            });
        }
        if index >= count {
            return Err(ShardError {
                name: "CLOUD_RUN_TASK_INDEX",
                raw: index.to_string(),
                why: "must be below CLOUD_RUN_TASK_COUNT",
            });
        }
        Ok(Shard { index, count })
    }

    /// Whether file `i` of the plan (0-based, plan order) is this task's.
    pub fn owns(self, i: usize) -> bool {
        i % self.count as usize == self.index as usize
    }

    /// Whether this task sees the whole plan (and so may judge the seams between files).
    pub fn is_whole(self) -> bool {
        self.count == 1
    }
}

/// What `market.coverage` says of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCoverage {
    /// The status column.
    pub status: String,
    /// Smallest id of the day.
    pub first_id: Option<i64>,
    /// Largest id of the day.
    pub last_id: Option<i64>,
    /// Distinct ids.
    pub count: i64,
}

/// The ids of `file` when `market.coverage` already says every one of its days is complete
/// (so a rerun downloads nothing for it); `None` when the file must be fetched. The ids stand
/// in for the file's own in the continuity check.
pub fn skip_file(file: &ArchiveFile, coverage: &BTreeMap<Day, DayCoverage>) -> Option<FileIds> {
    let mut span: Option<(i64, i64)> = None;
    let mut count = 0u64;
    for day in file.period.first_day().through(file.period.last_day()) {
        let c = coverage.get(&day)?;
        if c.status != Status::Complete.as_str() {
            return None;
        }
        let (first, last) = (c.first_id?, c.last_id?);
        // Complete days must meet: the next day starts right after the previous one.
        match span {
            Some((_, prev)) if first != prev + 1 => return None,
            Some((lo, _)) => span = Some((lo, last)),
            None => span = Some((first, last)),
        }
        count += u64::try_from(c.count).ok()?;
    }
    let (first, last) = span?;
    Some(FileIds {
        first,
        last,
        count,
        holes: Vec::new(),
    })
}

/// The rows of a file whose ids lie in `missing` (sorted, disjoint, from
/// [`crate::trades::missing_ranges`]): what to append. `rows` are in id order.
pub fn rows_to_append(rows: Vec<Trade>, missing: &[IdRange]) -> Vec<Trade> {
    let mut out = Vec::new();
    let mut ranges = missing.iter().peekable();
    for t in rows {
        while ranges.peek().is_some_and(|r| r.to < t.trade_id) {
            ranges.next();
        }
        match ranges.peek() {
            Some(r) if r.contains(t.trade_id) => out.push(t),
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// REST weight of fetching `ids` ids with `historicalTrades` (weight 25 per page of 1000).
pub fn weight_of(ids: u64) -> u64 {
    ids.div_ceil(PAGE_IDS) * u64::from(weights::HISTORICAL_TRADES)
}

/// How the holes are spent against the budget: what to fetch, what to ledger at once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FillPlan {
    /// Ranges to fetch from REST, with the reason of the hole they belong to.
    pub fetch: Vec<(IdRange, &'static str)>,
    /// Ranges beyond the budget: straight to `market.gaps`, with the hole's own reason (why
    /// the archive lacked them; the budget only decided they are not fetched this run).
    pub ledger: Vec<(IdRange, &'static str)>,
    /// Weight the fetches will spend.
    pub weight: u64,
}

/// Fills holes in id order while the budget lasts, in whole pages; a hole the budget reaches
/// only partly is fetched from its start and the rest ledgered.
pub fn fill_plan(holes: &[(IdRange, &'static str)], max_weight: u64) -> FillPlan {
    let mut plan = FillPlan::default();
    let per_page = u64::from(weights::HISTORICAL_TRADES);
    for &(range, reason) in holes {
        let pages_left = (max_weight - plan.weight) / per_page;
        let can = pages_left.saturating_mul(PAGE_IDS);
        if can == 0 {
            plan.ledger.push((range, reason));
        } else if range.len() <= can {
            plan.weight += weight_of(range.len());
            plan.fetch.push((range, reason));
        } else {
            let cut = range.from + i64::try_from(can).unwrap_or(i64::MAX);
            plan.weight += weight_of(can);
            plan.fetch.push((IdRange::new(range.from, cut - 1), reason));
            plan.ledger.push((IdRange::new(cut, range.to), reason));
        }
    }
    plan
}

/// The holes of [`crate::archive::continuity::seams`] as (range, ledger reason).
pub fn hole_ranges(holes: &[Hole]) -> Vec<(IdRange, &'static str)> {
    holes.iter().map(|h| (h.range, h.reason.as_str())).collect()
}

/// What a REST fetch of `range` did not return, as ranges (`got` in id order).
pub fn not_returned(range: IdRange, got: &[Trade]) -> Vec<IdRange> {
    let mut out = Vec::new();
    let mut next = range.from;
    for t in got {
        if t.trade_id > next {
            out.push(IdRange::new(next, t.trade_id - 1));
        }
        next = next.max(t.trade_id + 1);
    }
    if next <= range.to {
        out.push(IdRange::new(next, range.to));
    }
    out
}

/// The default last day: yesterday (UTC) by `now_us`, the last day that has ended.
pub fn default_to(now_us: i64) -> Day {
    Day::containing_ms(now_us.div_euclid(1000)).prev()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Period;
    use crate::archive::path::Month;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn trade(id: i64) -> Trade {
        Trade {
            symbol: "BTCUSDT".into(),
            trade_id: id,
            ..Trade::default()
        }
    }

    fn complete(first: i64, last: i64) -> DayCoverage {
        DayCoverage {
            status: "complete".into(),
            first_id: Some(first),
            last_id: Some(last),
            count: last - first + 1,
        }
    }

    #[test]
    fn shards_take_every_nth_file_and_bad_env_values_are_named() {
        let s = Shard::from_env_values(Some("1"), Some("3")).unwrap();
        let mine: Vec<usize> = (0..8).filter(|&i| s.owns(i)).collect();
        assert_eq!(mine, [1, 4, 7]);
        assert!(!s.is_whole());
        // Every file is exactly one task's.
        for i in 0..20 {
            let owners = (0..3)
                .filter(|&k| Shard { index: k, count: 3 }.owns(i))
                .count();
            assert_eq!(owners, 1, "file {i}");
        }
        let whole = Shard::from_env_values(None, None).unwrap();
        assert_eq!(whole, Shard::default());
        assert!((0..5).all(|i| whole.owns(i)));
        for (index, count, named) in [
            (Some("3"), Some("3"), "CLOUD_RUN_TASK_INDEX"),
            (Some("x"), None, "CLOUD_RUN_TASK_INDEX"),
            (None, Some("0"), "CLOUD_RUN_TASK_COUNT"),
            (None, Some("-1"), "CLOUD_RUN_TASK_COUNT"),
        ] {
            let e = Shard::from_env_values(index, count)
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn a_file_is_skipped_only_when_every_day_is_complete_and_the_days_meet() {
        let daily = ArchiveFile::new("BTCUSDT", Period::Day(day("2024-02-03"))).unwrap();
        let mut cov = BTreeMap::new();
        assert_eq!(skip_file(&daily, &cov), None, "nothing known: fetch");
        cov.insert(day("2024-02-03"), complete(100, 199));
        let ids = skip_file(&daily, &cov).unwrap();
        assert_eq!((ids.first, ids.last, ids.count), (100, 199, 100));
        cov.get_mut(&day("2024-02-03")).unwrap().status = "holes".into();
        assert_eq!(skip_file(&daily, &cov), None, "a day with holes: fetch");

        let month: Month = "2024-02".parse().unwrap();
        let monthly = ArchiveFile::new("BTCUSDT", Period::Month(month)).unwrap();
        let mut cov = BTreeMap::new();
        let mut next = 1000;
        for d in month.first_day().through(month.last_day()) {
            cov.insert(d, complete(next, next + 9));
            next += 10;
        }
        let ids = skip_file(&monthly, &cov).unwrap();
        assert_eq!((ids.first, ids.last, ids.count), (1000, 1289, 290));
        // Two complete days that do not meet hide a hole between them: fetch.
        cov.insert(day("2024-02-10"), complete(1095, 1099));
        assert_eq!(skip_file(&monthly, &cov), None);
        cov.insert(day("2024-02-10"), complete(1090, 1099));
        cov.remove(&day("2024-02-29"));
        assert_eq!(skip_file(&monthly, &cov), None, "a day not yet covered");
    }

    #[test]
    fn only_the_ids_the_store_lacks_are_appended() {
        let rows: Vec<Trade> = (10..=30).map(trade).collect();
        let missing = [
            IdRange::new(10, 11),
            IdRange::new(15, 15),
            IdRange::new(29, 40),
        ];
        let ids: Vec<i64> = rows_to_append(rows.clone(), &missing)
            .iter()
            .map(|t| t.trade_id)
            .collect();
        assert_eq!(ids, [10, 11, 15, 29, 30]);
        assert!(rows_to_append(rows.clone(), &[]).is_empty(), "all held");
        assert_eq!(
            rows_to_append(rows, &[IdRange::new(0, 100)]).len(),
            21,
            "nothing held"
        );
    }

    #[test]
    fn holes_are_filled_in_whole_pages_until_the_budget_ends_and_the_rest_is_ledgered() {
        let holes = [
            (IdRange::new(1, 1500), "archive_missing"), // 2 pages = 50
            (IdRange::new(5001, 5001), "archive_seam"), // 1 page = 25
            (IdRange::new(9001, 12_000), "checksum_mismatch"), // 3 pages = 75
        ];
        let all = fill_plan(&holes, 1000);
        assert_eq!(all.fetch, holes);
        assert!(all.ledger.is_empty());
        assert_eq!(all.weight, 150);

        // 100 weight: 4 pages; the third hole gets one page, 2000 ids are ledgered.
        let part = fill_plan(&holes, 110);
        assert_eq!(part.weight, 100);
        assert_eq!(
            part.fetch,
            [
                holes[0],
                holes[1],
                (IdRange::new(9001, 10_000), "checksum_mismatch")
            ]
        );
        assert_eq!(
            part.ledger,
            [(IdRange::new(10_001, 12_000), "checksum_mismatch")]
        );
        let none = fill_plan(&holes, 24);
        assert!(none.fetch.is_empty());
        assert_eq!(none.ledger, holes);
        assert_eq!(fill_plan(&[], 0), FillPlan::default());
    }

    #[test]
    fn what_rest_did_not_return_is_named() {
        let got: Vec<Trade> = [3, 4, 7].into_iter().map(trade).collect();
        assert_eq!(
            not_returned(IdRange::new(1, 9), &got),
            [IdRange::new(1, 2), IdRange::new(5, 6), IdRange::new(8, 9)]
        );
        assert!(not_returned(IdRange::new(3, 4), &got[..2]).is_empty());
        assert_eq!(weight_of(0), 0);
        assert_eq!(weight_of(1000), 25);
        assert_eq!(weight_of(1001), 50);
    }

    #[test]
    fn the_default_last_day_is_yesterday() {
        // 2026-02-01T00:00:00.000001Z
        let now = 1_769_904_000_000_001;
        assert_eq!(default_to(now), day("2026-01-31"));
    }
}
