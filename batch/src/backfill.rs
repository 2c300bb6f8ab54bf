//! `batch backfill`, the explicit way to load days the DAG does not schedule (days before its
//! start date, `PIPELINE_START_DATE`): its bounds, its own REST weight budget, and the record of
//! the weight it used per minute.
//!
//! Pure: the clock and the REST client's weight windows are passed in.
//!
//! The budget is the REST client's own [`binance::rest::WeightBudget`] with a lower limit and no
//! margin ([`rest_config`]): the backfill counts every request it sends per minute and takes
//! Binance's `X-MBX-USED-WEIGHT-1M` (the whole IP's count) as a floor, so it also yields to
//! anything else spending weight on its IP in that minute.

use binance::RestConfig;
use binance::rest::WindowUse;
use binance::rest::budget::{DEFAULT_SAFETY_MARGIN, REQUEST_WEIGHT_LIMIT_1M, WINDOW_MS};

use crate::day::{DAY_MS, Day};

/// Days one backfill may cover unless `--max-days` says more.
pub const DEFAULT_MAX_DAYS: u32 = 31;

/// Default `--max-weight-per-minute`: a quarter of Binance's 6000 per IP, so a backfill leaves
/// most of the minute to anything else on its IP (the daily DAG's runs), and is far from a 429.
pub const DEFAULT_MAX_WEIGHT_PER_MINUTE: u32 = 1500;

/// Smallest `--max-weight-per-minute`: two `historicalTrades` requests (weight 25 each).
pub const MIN_WEIGHT_PER_MINUTE: u32 = 50;

/// Largest `--max-weight-per-minute`: what the daily commands allow themselves (Binance's 6000
/// less the default safety margin).
pub const MAX_WEIGHT_PER_MINUTE: u32 = REQUEST_WEIGHT_LIMIT_1M - DEFAULT_SAFETY_MARGIN;

/// Why a backfill range is refused, before any I/O.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// `--to` is before `--from`.
    #[error("--to {to} is before --from {from}")]
    Reversed {
        /// First day asked for.
        from: Day,
        /// Last day asked for.
        to: Day,
    },
    /// More days than `--max-days`.
    #[error(
        "--from {from} --to {to} is {days} days, more than --max-days {max}: a backfill is \
         bounded on purpose (each BTCUSDT day of trades is ~3,000 historicalTrades requests); \
         split the range, or pass --max-days {days} if you mean it"
    )]
    TooLong {
        /// First day asked for.
        from: Day,
        /// Last day asked for.
        to: Day,
        /// Days in the range.
        days: u32,
        /// The bound.
        max: u32,
    },
}

/// The number of days in `from..=to`, if the range is allowed.
pub fn check_range(from: Day, to: Day, max_days: u32) -> Result<u32, RangeError> {
    if to < from {
        return Err(RangeError::Reversed { from, to });
    }
    let days = u32::try_from((to.start_ms() - from.start_ms()) / DAY_MS + 1).unwrap_or(u32::MAX);
    if days > max_days {
        return Err(RangeError::TooLong {
            from,
            to,
            days,
            max: max_days,
        });
    }
    Ok(days)
}

/// The REST client configuration of a backfill: Binance at `base_url`, at most
/// `max_weight_per_minute` per minute (no margin on top: the number is the budget).
pub fn rest_config(base_url: String, max_weight_per_minute: u32) -> RestConfig {
    RestConfig {
        base_url,
        weight_limit: max_weight_per_minute,
        safety_margin: 0,
        ..RestConfig::default()
    }
}

/// `hh:mm` of a window start, with its day: `2026-03-01 13:42 UTC`.
pub fn minute_label(start_ms: i64) -> String {
    let day = Day::containing_ms(start_ms);
    let minute = (start_ms - day.start_ms()) / 60_000;
    format!("{day} {:02}:{:02} UTC", minute / 60, minute % 60)
}

/// One line per minute: what the backfill sent against its budget, and Binance's count.
pub fn weight_line(w: &WindowUse, budget: u32) -> String {
    format!(
        "weight {}: {} sent of {budget} per minute (X-MBX-USED-WEIGHT-1M up to {})",
        minute_label(w.start_ms),
        w.sent,
        w.header
    )
}

/// Every minute's weight, from samples of the client's windows.
#[derive(Debug, Clone, Default)]
pub struct WeightLog {
    /// What the client had counted before the backfill began (not the backfill's).
    baseline: Option<WindowUse>,
    /// Per window start: the latest sample (counts only grow within a window).
    minutes: std::collections::BTreeMap<i64, WindowUse>,
    /// Windows already handed out by [`WeightLog::observe`].
    reported: std::collections::BTreeSet<i64>,
}

impl WeightLog {
    /// A log of what is sent from now on, `current` being the client's latest window now: its
    /// earlier windows and what it had sent in this one are not the backfill's.
    pub fn since(current: Option<WindowUse>) -> Self {
        WeightLog {
            baseline: current,
            ..WeightLog::default()
        }
    }

    /// Records a sample of (closed, current) windows taken at `now_ms`; returns the minutes that
    /// are over and not yet returned, oldest first.
    pub fn observe(
        &mut self,
        windows: (Option<WindowUse>, Option<WindowUse>),
        now_ms: i64,
    ) -> Vec<WindowUse> {
        for mut w in [windows.0, windows.1].into_iter().flatten() {
            if let Some(b) = self.baseline {
                if w.start_ms < b.start_ms {
                    continue;
                }
                if w.start_ms == b.start_ms {
                    w.sent = w.sent.saturating_sub(b.sent);
                }
            }
            let slot = self.minutes.entry(w.start_ms).or_insert(w);
            slot.sent = slot.sent.max(w.sent);
            slot.header = slot.header.max(w.header);
        }
        let over: Vec<WindowUse> = self
            .minutes
            .values()
            .filter(|w| w.start_ms + WINDOW_MS <= now_ms && !self.reported.contains(&w.start_ms))
            .copied()
            .collect();
        self.reported.extend(over.iter().map(|w| w.start_ms));
        over
    }

    /// Every minute seen, oldest first (the last one may still be running).
    pub fn minutes(&self) -> Vec<WindowUse> {
        self.minutes.values().copied().collect()
    }

    /// The minutes not returned by [`WeightLog::observe`] yet.
    pub fn unreported(&self) -> Vec<WindowUse> {
        self.minutes
            .values()
            .filter(|w| !self.reported.contains(&w.start_ms))
            .copied()
            .collect()
    }
}

/// Totals of a backfill's weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightSummary {
    /// Minutes in which the backfill sent anything.
    pub minutes: usize,
    /// The most it sent in one minute.
    pub max_sent: u32,
    /// All it sent.
    pub total_sent: u64,
    /// The highest `X-MBX-USED-WEIGHT-1M` Binance reported.
    pub max_header: u32,
}

/// Totals of `minutes`.
pub fn summarize(minutes: &[WindowUse]) -> WeightSummary {
    WeightSummary {
        minutes: minutes.iter().filter(|w| w.sent > 0).count(),
        max_sent: minutes.iter().map(|w| w.sent).max().unwrap_or(0),
        total_sent: minutes.iter().map(|w| u64::from(w.sent)).sum(),
        max_header: minutes.iter().map(|w| w.header).max().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    #[test]
    fn a_range_is_bounded_and_in_order() {
        assert_eq!(
            check_range(day("2026-01-01"), day("2026-01-31"), 31),
            Ok(31)
        );
        assert_eq!(check_range(day("2026-01-05"), day("2026-01-05"), 1), Ok(1));
        let long = check_range(day("2026-01-01"), day("2026-12-01"), 31).unwrap_err();
        assert_eq!(
            long,
            RangeError::TooLong {
                from: day("2026-01-01"),
                to: day("2026-12-01"),
                days: 335,
                max: 31
            }
        );
        let text = long.to_string();
        assert!(text.contains("--max-days 335"), "{text}");
        assert!(
            check_range(day("2026-01-01"), day("2026-12-01"), 335).is_ok(),
            "an explicit --max-days allows it"
        );
        assert_eq!(
            check_range(day("2026-01-02"), day("2026-01-01"), 31),
            Err(RangeError::Reversed {
                from: day("2026-01-02"),
                to: day("2026-01-01")
            })
        );
    }

    #[test]
    fn the_budget_is_the_number_given_with_no_margin() {
        let c = rest_config("http://127.0.0.1:1".into(), 1500);
        assert_eq!((c.weight_limit, c.safety_margin), (1500, 0));
        assert_eq!(c.base_url, "http://127.0.0.1:1");
        const { assert!(DEFAULT_MAX_WEIGHT_PER_MINUTE <= REQUEST_WEIGHT_LIMIT_1M / 4) };
        const { assert!(MIN_WEIGHT_PER_MINUTE <= DEFAULT_MAX_WEIGHT_PER_MINUTE) };
    }

    const T0: i64 = 1_772_323_200_000; // 2026-03-01 00:00 UTC

    fn w(start_ms: i64, sent: u32, header: u32) -> WindowUse {
        WindowUse {
            start_ms,
            sent,
            header,
        }
    }

    #[test]
    fn each_minute_is_reported_once_when_it_is_over() {
        let mut log = WeightLog::default();
        assert_eq!(log.observe((None, Some(w(T0, 10, 12))), T0 + 1_000), vec![]);
        assert_eq!(
            log.observe((None, Some(w(T0, 90, 95))), T0 + 59_000),
            vec![]
        );
        // Nothing sent since the boundary: the budget still shows the first minute, now over.
        assert_eq!(
            log.observe((None, Some(w(T0, 100, 100))), T0 + 60_500),
            vec![w(T0, 100, 100)]
        );
        // The next request rolls it: the first minute is the closed one, not reported again.
        let (closed, current) = (Some(w(T0, 100, 100)), Some(w(T0 + 60_000, 25, 125)));
        assert_eq!(log.observe((closed, current), T0 + 61_000), vec![]);
        assert_eq!(log.unreported(), vec![w(T0 + 60_000, 25, 125)]);
        assert_eq!(
            summarize(&log.minutes()),
            WeightSummary {
                minutes: 2,
                max_sent: 100,
                total_sent: 125,
                max_header: 125
            }
        );
        assert_eq!(
            weight_line(&w(T0 + 13 * 3_600_000 + 42 * 60_000, 1480, 1490), 1500),
            "weight 2026-03-01 13:42 UTC: 1480 sent of 1500 per minute (X-MBX-USED-WEIGHT-1M up to 1490)"
        );
    }

    #[test]
    fn what_the_client_sent_before_the_backfill_is_not_counted() {
        // The same client ran something else before: 30 sent in this minute, more before.
        let mut log = WeightLog::since(Some(w(T0 + 60_000, 30, 30)));
        let before = Some(w(T0, 500, 500));
        assert_eq!(
            log.observe((before, Some(w(T0 + 60_000, 38, 38))), T0 + 119_000),
            vec![]
        );
        assert_eq!(log.minutes(), vec![w(T0 + 60_000, 8, 38)]);
    }
}
