//! Klines, pure: the interval, validated rows, paging through a day, and the day's checks.
//!
//! A day of 1-minute klines is 1440 rows; `GET /api/v3/klines` returns at most 1000 per call
//! (Binance spot `rest-api.md`: "limit: Default 500; max 1000"), so a day takes two pages.

use std::fmt;

use binance::wire::Kline;

use crate::day::{DAY_MS, Day};
use crate::decimal::{DecimalError, Numeric};

/// Largest page of `GET /api/v3/klines`. Source: Binance spot `rest-api.md`.
pub const PAGE_LIMIT: u16 = 1000;

/// A kline interval that divides a UTC day (so "a full day" has a fixed row count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    name: &'static str,
    ms: i64,
}

/// Binance's intervals of at most a day (`rest-api.md`, "Kline/Candlestick chart intervals"),
/// without `1s` (86,400 rows a day per symbol is not what the warehouse tables are for).
const INTERVALS: [(&str, i64); 12] = [
    ("1m", 60_000),
    ("3m", 180_000),
    ("5m", 300_000),
    ("15m", 900_000),
    ("30m", 1_800_000),
    ("1h", 3_600_000),
    ("2h", 7_200_000),
    ("4h", 14_400_000),
    ("6h", 21_600_000),
    ("8h", 28_800_000),
    ("12h", 43_200_000),
    ("1d", DAY_MS),
];

impl Interval {
    /// One minute: what `dwh.klines_<symbol>` holds.
    pub const MINUTE: Interval = Interval {
        name: "1m",
        ms: 60_000,
    };

    /// Parses `1m`, `5m`, `1h`, ... (intervals that divide a day).
    pub fn parse(raw: &str) -> Result<Self, String> {
        INTERVALS
            .iter()
            .find(|(n, _)| *n == raw)
            .map(|&(name, ms)| Interval { name, ms })
            .ok_or_else(|| {
                let names: Vec<&str> = INTERVALS.iter().map(|(n, _)| *n).collect();
                format!("interval {raw:?} is not one of {}", names.join(", "))
            })
    }

    /// Binance's name, e.g. `1m`.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Length in milliseconds.
    pub fn ms(self) -> i64 {
        self.ms
    }

    /// Rows in a full UTC day (1440 for `1m`).
    pub fn per_day(self) -> usize {
        usize::try_from(DAY_MS / self.ms).expect("positive")
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// One kline as loaded into and read back from `dwh.klines_<symbol>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlineRow {
    /// Open time, Unix ms.
    pub open_time_ms: i64,
    /// Close time, Unix ms (inclusive: `open + interval - 1`).
    pub close_time_ms: i64,
    /// Open price.
    pub open: Numeric,
    /// High price.
    pub high: Numeric,
    /// Low price.
    pub low: Numeric,
    /// Close price.
    pub close: Numeric,
    /// Base volume.
    pub volume: Numeric,
    /// Quote volume.
    pub quote_volume: Numeric,
    /// Number of trades.
    pub trade_count: i64,
    /// Taker buy base volume.
    pub taker_buy_base_volume: Numeric,
    /// Taker buy quote volume.
    pub taker_buy_quote_volume: Numeric,
}

impl KlineRow {
    /// Validates a REST row: every decimal must be a plain decimal NUMERIC can hold.
    pub fn from_wire(k: &Kline) -> Result<Self, DecimalError> {
        Ok(KlineRow {
            open_time_ms: k.open_time,
            close_time_ms: k.close_time,
            open: Numeric::parse("open", &k.open)?,
            high: Numeric::parse("high", &k.high)?,
            low: Numeric::parse("low", &k.low)?,
            close: Numeric::parse("close", &k.close)?,
            volume: Numeric::parse("volume", &k.volume)?,
            quote_volume: Numeric::parse("quote_volume", &k.quote_volume)?,
            trade_count: k.trade_count,
            taker_buy_base_volume: Numeric::parse(
                "taker_buy_base_volume",
                &k.taker_buy_base_volume,
            )?,
            taker_buy_quote_volume: Numeric::parse(
                "taker_buy_quote_volume",
                &k.taker_buy_quote_volume,
            )?,
        })
    }
}

/// What to do after a page of klines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Ask again from this open time.
    Next(i64),
    /// The day is complete (or Binance has nothing more).
    Done,
}

/// The next page after `rows` when fetching open times `< end_ms`. An empty or short page, or
/// one reaching `end_ms`, ends the day.
pub fn next_page(rows: &[Kline], limit: u16, interval: Interval, end_ms: i64) -> Page {
    match rows.last() {
        Some(last) if rows.len() >= usize::from(limit) => {
            let next = last.open_time + interval.ms();
            if next < end_ms {
                Page::Next(next)
            } else {
                Page::Done
            }
        }
        _ => Page::Done,
    }
}

/// One thing wrong with a symbol's day of klines. `Display` names the symbol, the day and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The symbol.
    pub symbol: String,
    /// The day.
    pub day: Day,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.symbol, self.day, self.what)
    }
}

fn hhmm(day: Day, ms: i64) -> String {
    let m = (ms - day.start_ms()).div_euclid(60_000);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// Lists at most this many missing or extra open times by name; the rest are counted.
const NAMED: usize = 10;

/// Checks a day of klines (sorted or not): the full count with contiguous open times, aligned
/// close times, OHLC sanity (`low <= open, close <= high`), non-negative volumes and counts.
/// Returns every problem found (empty = the day is good).
pub fn check_day(symbol: &str, day: Day, interval: Interval, rows: &[KlineRow]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |what: String| {
        problems.push(Problem {
            symbol: symbol.to_owned(),
            day,
            what,
        })
    };
    let want = interval.per_day();
    let mut opens: Vec<i64> = rows.iter().map(|r| r.open_time_ms).collect();
    opens.sort_unstable();
    let dups = opens.windows(2).filter(|w| w[0] == w[1]).count();
    opens.dedup();
    if dups > 0 {
        push(format!("{dups} duplicate open time(s)"));
    }
    let expected = (0..want as i64).map(|i| day.start_ms() + i * interval.ms());
    let have: std::collections::BTreeSet<i64> = opens.iter().copied().collect();
    let missing: Vec<i64> = expected.clone().filter(|t| !have.contains(t)).collect();
    let expected: std::collections::BTreeSet<i64> = expected.collect();
    let extra: Vec<i64> = opens
        .iter()
        .copied()
        .filter(|t| !expected.contains(t))
        .collect();
    if rows.len() != want || !missing.is_empty() {
        let mut what = format!("{} klines of {interval}, expected {want}", rows.len());
        if !missing.is_empty() {
            let named: Vec<String> = missing.iter().take(NAMED).map(|&t| hhmm(day, t)).collect();
            what.push_str(&format!(
                "; missing {} open time(s): {}{}",
                missing.len(),
                named.join(", "),
                if missing.len() > NAMED { ", ..." } else { "" }
            ));
        }
        push(what);
    }
    if !extra.is_empty() {
        let named: Vec<String> = extra.iter().take(NAMED).map(|t| t.to_string()).collect();
        push(format!(
            "{} open time(s) outside the day or off the {interval} grid (ms): {}",
            extra.len(),
            named.join(", ")
        ));
    }
    for r in rows {
        let at = hhmm(day, r.open_time_ms);
        if r.close_time_ms != r.open_time_ms + interval.ms() - 1 {
            push(format!(
                "kline {at}: close time {} is not open time + {interval} - 1 ms",
                r.close_time_ms
            ));
        }
        let sane = r.low <= r.open && r.low <= r.close && r.open <= r.high && r.close <= r.high;
        if !sane {
            push(format!(
                "kline {at}: OHLC not sane (open {}, high {}, low {}, close {}): need low <= open, close <= high",
                r.open.canonical(),
                r.high.canonical(),
                r.low.canonical(),
                r.close.canonical()
            ));
        }
        for (name, v) in [
            ("volume", r.volume),
            ("quote_volume", r.quote_volume),
            ("taker_buy_base_volume", r.taker_buy_base_volume),
            ("taker_buy_quote_volume", r.taker_buy_quote_volume),
        ] {
            if v < Numeric::ZERO {
                push(format!("kline {at}: {name} {} is negative", v.canonical()));
            }
        }
        if r.trade_count < 0 {
            push(format!(
                "kline {at}: trade count {} is negative",
                r.trade_count
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> Day {
        "2026-01-31".parse().unwrap()
    }

    fn n(s: &str) -> Numeric {
        Numeric::parse("x", s).unwrap()
    }

    fn full_day() -> Vec<KlineRow> {
        (0..1440)
            .map(|i| {
                let open = day().start_ms() + i * 60_000;
                KlineRow {
                    open_time_ms: open,
                    close_time_ms: open + 59_999,
                    open: n("100"),
                    high: n("101"),
                    low: n("99"),
                    close: n("100.5"),
                    volume: n("1.5"),
                    quote_volume: n("150"),
                    trade_count: 3,
                    taker_buy_base_volume: n("0.5"),
                    taker_buy_quote_volume: n("50"),
                }
            })
            .collect()
    }

    #[test]
    fn a_full_sane_day_passes() {
        assert_eq!(
            check_day("BTCUSDT", day(), Interval::MINUTE, &full_day()),
            vec![]
        );
    }

    #[test]
    fn a_missing_minute_is_named() {
        let mut rows = full_day();
        rows.remove(12 * 60 + 34);
        let p = check_day("BTCUSDT", day(), Interval::MINUTE, &rows);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(
            p[0].to_string(),
            "BTCUSDT 2026-01-31: 1439 klines of 1m, expected 1440; missing 1 open time(s): 12:34"
        );
    }

    #[test]
    fn a_duplicate_does_not_hide_a_missing_minute() {
        let mut rows = full_day();
        rows[5] = rows[4].clone();
        let p = check_day("ARBUSDT", day(), Interval::MINUTE, &rows);
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|t| t.contains("1 duplicate")), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("missing 1 open time(s): 00:05")),
            "{text:?}"
        );
    }

    #[test]
    fn insane_ohlc_and_negative_volume_are_reported_with_the_minute() {
        let mut rows = full_day();
        rows[61].low = n("100.6"); // above the close
        rows[62].volume = n("-1");
        rows[63].close_time_ms += 1;
        let p = check_day("AAVEUSDT", day(), Interval::MINUTE, &rows);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].what.starts_with("kline 01:01: OHLC not sane"));
        assert_eq!(p[1].what, "kline 01:02: volume -1 is negative");
        assert!(p[2].what.starts_with("kline 01:03: close time"));
    }

    #[test]
    fn a_row_from_another_day_is_extra() {
        let mut rows = full_day();
        rows[0].open_time_ms -= 60_000;
        rows[0].close_time_ms -= 60_000;
        let p = check_day("STXUSDT", day(), Interval::MINUTE, &rows);
        assert!(
            p.iter().any(|p| p.what.contains("outside the day")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.what.contains("missing 1 open time(s): 00:00")),
            "{p:?}"
        );
    }

    #[test]
    fn intervals_divide_the_day() {
        assert_eq!(Interval::parse("1m").unwrap().per_day(), 1440);
        assert_eq!(Interval::parse("1h").unwrap().per_day(), 24);
        assert!(Interval::parse("1s").unwrap_err().contains("\"1s\""));
        assert!(Interval::parse("1w").is_err());
    }

    fn wire(open: i64) -> Kline {
        Kline {
            open_time: open,
            open: "1".into(),
            high: "1".into(),
            low: "1".into(),
            close: "1".into(),
            volume: "0".into(),
            close_time: open + 59_999,
            quote_volume: "0".into(),
            trade_count: 0,
            taker_buy_base_volume: "0".into(),
            taker_buy_quote_volume: "0".into(),
        }
    }

    #[test]
    fn paging_a_day_takes_two_pages_of_1000() {
        let d = day();
        let first: Vec<Kline> = (0..1000).map(|i| wire(d.start_ms() + i * 60_000)).collect();
        let Page::Next(start) = next_page(&first, PAGE_LIMIT, Interval::MINUTE, d.end_ms()) else {
            panic!("a full page asks for more");
        };
        assert_eq!(start, d.start_ms() + 1000 * 60_000);
        let second: Vec<Kline> = (1000..1440)
            .map(|i| wire(d.start_ms() + i * 60_000))
            .collect();
        assert_eq!(
            next_page(&second, PAGE_LIMIT, Interval::MINUTE, d.end_ms()),
            Page::Done
        );
        assert_eq!(
            next_page(&[], PAGE_LIMIT, Interval::MINUTE, d.end_ms()),
            Page::Done
        );
        // A full page that ends exactly at the end of the day is the last one.
        let exact: Vec<Kline> = (440..1440)
            .map(|i| wire(d.start_ms() + i * 60_000))
            .collect();
        assert_eq!(
            next_page(&exact, PAGE_LIMIT, Interval::MINUTE, d.end_ms()),
            Page::Done
        );
    }

    #[test]
    fn a_row_that_is_not_a_decimal_names_its_field() {
        let mut k = wire(0);
        k.high = "1e3".into();
        assert!(
            KlineRow::from_wire(&k)
                .unwrap_err()
                .to_string()
                .starts_with("high \"1e3\"")
        );
    }
}
