//! Where Binance's trade archive keeps a file, and which files cover a range of days.
//!
//! Layout (binance/binance-public-data README, "Where do I access it" / "Trades"):
//! `data/spot/{daily,monthly}/trades/<SYMBOL>/<SYMBOL>-trades-<YYYY-MM-DD|YYYY-MM>.zip` under
//! `https://data.binance.vision`, each with a `<file>.CHECKSUM` beside it; the zip holds one CSV
//! named like the zip with `.csv`. The time unit of the CSV's `time` column follows the file's
//! date: milliseconds before 2025-01-01, microseconds from then on (same README: "The timestamp
//! for SPOT Data from January 1st 2025 onwards will be in microseconds"). The switch falls on a
//! month boundary, so a monthly file never mixes units.
//!
//! Pure: "today" is passed in by the caller.

use std::fmt;

use binance::TimeUnit;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use trade_proto::rules;

use crate::day::{DAY_MS, Day};

/// The archive's host; paths below are relative to it.
pub const BASE_URL: &str = "https://data.binance.vision";

/// First day whose spot files carry microseconds (README note quoted in the module doc).
pub const MICROSECOND_FROM: &str = "2025-01-01";

/// Days after the end of a month before its monthly file is asked for. Binance uploads monthly
/// files "at the first monday of the month" that follows (binance-public-data README, "new
/// `monthly` data at the first monday of the month"): at most 7 days in, so from the 8th on the
/// file exists; before that the month's days come as daily files.
pub const MONTHLY_SETTLE_DAYS: i64 = 7;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i16,
    month: i8,
}

/// The civil date of a [`Day`] (through its first millisecond, in UTC).
fn civil(day: Day) -> Option<Date> {
    let ts = jiff::Timestamp::from_millisecond(day.start_ms()).ok()?;
    Some(TimeZone::UTC.to_datetime(ts).date())
}

/// The [`Day`] of a civil date.
fn day_of(date: Date) -> Option<Day> {
    let ts = TimeZone::UTC.to_timestamp(date.to_datetime(jiff::civil::Time::midnight()));
    ts.ok().map(|ts| Day::containing_ms(ts.as_millisecond()))
}

impl Month {
    /// The month containing `day`.
    pub fn containing(day: Day) -> Option<Month> {
        let d = civil(day)?;
        Some(Month {
            year: d.year(),
            month: d.month(),
        })
    }

    /// Its first day.
    pub fn first_day(self) -> Day {
        // A Month is only built from a valid date, so day 1 of it exists.
        day_of(Date::new(self.year, self.month, 1).expect("valid month"))
            .expect("month within jiff's range")
    }

    /// The month after.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Its last day.
    pub fn last_day(self) -> Day {
        self.next().first_day().prev()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = PathError;

    /// `YYYY-MM`, e.g. `2024-03`.
    fn from_str(raw: &str) -> Result<Self, PathError> {
        let bad = || PathError::Period(raw.to_owned());
        let (y, m) = raw.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let (year, month): (i16, i8) =
            (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        Date::new(year, month, 1).map_err(|_| bad())?;
        Ok(Month { year, month })
    }
}

/// The span one archive file covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// One UTC day: `daily/`, `YYYY-MM-DD`.
    Day(Day),
    /// One calendar month: `monthly/`, `YYYY-MM`.
    Month(Month),
}

impl Period {
    /// First day covered.
    pub fn first_day(self) -> Day {
        match self {
            Period::Day(d) => d,
            Period::Month(m) => m.first_day(),
        }
    }

    /// Last day covered.
    pub fn last_day(self) -> Day {
        match self {
            Period::Day(d) => d,
            Period::Month(m) => m.last_day(),
        }
    }

    /// `[start, end)` of the period in µs since the epoch: every row's time must lie in it.
    pub fn window_us(self) -> (i64, i64) {
        (
            self.first_day().start_ms() * 1000,
            self.last_day().end_ms() * 1000,
        )
    }

    /// The unit of the `time` column in this period's spot files.
    pub fn time_unit(self) -> TimeUnit {
        let switch: Day = MICROSECOND_FROM.parse().expect("constant is a day");
        if self.first_day() >= switch {
            TimeUnit::Microsecond
        } else {
            TimeUnit::Millisecond
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Period::Day(_) => "daily",
            Period::Month(_) => "monthly",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day(d) => d.fmt(f),
            Period::Month(m) => m.fmt(f),
        }
    }
}

/// A path or file name that is not one of the archive's, quoting it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not `<SYMBOL>-trades-<period>.zip`.
    #[error("{0:?} is not an archive trade file name (<SYMBOL>-trades-<YYYY-MM-DD|YYYY-MM>.zip)")]
    FileName(String),
    /// Not `data/spot/{{daily,monthly}}/trades/<SYMBOL>/<file>`, or folder and file disagree.
    #[error(
        "{0:?} is not an archive trade path (data/spot/{{daily,monthly}}/trades/<SYMBOL>/<file>)"
    )]
    Path(String),
    /// The period part is neither `YYYY-MM-DD` nor `YYYY-MM`.
    #[error("{0:?} is not a day (YYYY-MM-DD) or a month (YYYY-MM)")]
    Period(String),
    /// The symbol breaks Binance's grammar.
    #[error("{0:?} is not a Binance symbol ({pat})", pat = rules::SYMBOL_PATTERN)]
    Symbol(String),
    /// `from` after `to`, or `to` not before today (a day's file appears the next day).
    #[error("days {from}..={to} cannot be fetched on {today}: {why}")]
    Range {
        /// First day asked for.
        from: Day,
        /// Last day asked for.
        to: Day,
        /// The caller's today.
        today: Day,
        /// What is wrong.
        why: &'static str,
    },
}

/// One file of the archive: a symbol's trades for a day or a month.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArchiveFile {
    /// Upper-case Binance symbol, as in the path.
    pub symbol: String,
    /// The day or month it covers.
    pub period: Period,
}

impl ArchiveFile {
    /// The file for `symbol` (checked against Binance's grammar) and `period`.
    pub fn new(symbol: &str, period: Period) -> Result<Self, PathError> {
        if !rules::is_symbol(symbol) {
            return Err(PathError::Symbol(symbol.to_owned()));
        }
        Ok(ArchiveFile {
            symbol: symbol.to_owned(),
            period,
        })
    }

    /// `BTCUSDT-trades-2018-02-08` (no extension).
    fn stem(&self) -> String {
        format!("{}-trades-{}", self.symbol, self.period)
    }

    /// `BTCUSDT-trades-2018-02-08.zip`.
    pub fn file_name(&self) -> String {
        format!("{}.zip", self.stem())
    }

    /// The one entry inside the zip: `BTCUSDT-trades-2018-02-08.csv`.
    pub fn csv_name(&self) -> String {
        format!("{}.csv", self.stem())
    }

    /// `data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip`.
    pub fn url_path(&self) -> String {
        format!(
            "data/spot/{}/trades/{}/{}",
            self.period.folder(),
            self.symbol,
            self.file_name()
        )
    }

    /// The checksum file beside it: `<url_path>.CHECKSUM`.
    pub fn checksum_path(&self) -> String {
        format!("{}.CHECKSUM", self.url_path())
    }

    /// The full URL under [`BASE_URL`] (or a simulator's base).
    pub fn url(&self, base: &str) -> String {
        format!("{}/{}", base.trim_end_matches('/'), self.url_path())
    }

    /// Parses a file name back (`BTCUSDT-trades-2018-02-08.zip`).
    pub fn parse_file_name(name: &str) -> Result<Self, PathError> {
        let bad = || PathError::FileName(name.to_owned());
        let stem = name.strip_suffix(".zip").ok_or_else(bad)?;
        // The symbol may itself hold '-' (Binance's grammar allows it): split at the last marker.
        let (symbol, period) = stem.rsplit_once("-trades-").ok_or_else(bad)?;
        let period = parse_period(period)?;
        ArchiveFile::new(symbol, period)
    }

    /// Parses a URL path back (`data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip`);
    /// a leading `/` or the [`BASE_URL`] prefix is accepted.
    pub fn parse_url_path(path: &str) -> Result<Self, PathError> {
        let bad = || PathError::Path(path.to_owned());
        let rel = path
            .strip_prefix(BASE_URL)
            .unwrap_or(path)
            .trim_start_matches('/');
        let parts: Vec<&str> = rel.split('/').collect();
        let ["data", "spot", folder, "trades", symbol, name] = parts[..] else {
            return Err(bad());
        };
        let file = ArchiveFile::parse_file_name(name)?;
        if file.symbol != symbol || file.period.folder() != folder {
            return Err(bad());
        }
        Ok(file)
    }
}

impl fmt::Display for ArchiveFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

fn parse_period(raw: &str) -> Result<Period, PathError> {
    match raw.len() {
        10 => raw
            .parse::<Day>()
            .map(Period::Day)
            .map_err(|_| PathError::Period(raw.to_owned())),
        7 => raw.parse::<Month>().map(Period::Month),
        _ => Err(PathError::Period(raw.to_owned())),
    }
}

/// The files covering the days `from..=to` of `symbol`, in order, each day exactly once.
///
/// The rule: a calendar month is one **monthly** file when the caller wants monthly files, the
/// whole month lies inside `from..=to`, and `today` is at least [`MONTHLY_SETTLE_DAYS`] days
/// past the month's end (so Binance has published it); every other day is a **daily** file.
/// `to` must be before `today`: a day's daily file is published the day after.
pub fn plan(
    symbol: &str,
    from: Day,
    to: Day,
    today: Day,
    monthly: bool,
) -> Result<Vec<ArchiveFile>, PathError> {
    let range = |why| PathError::Range {
        from,
        to,
        today,
        why,
    };
    if from > to {
        return Err(range("the first day is after the last"));
    }
    if to >= today {
        return Err(range(
            "a day's file is published the day after: the last day must be before today",
        ));
    }
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        let month = Month::containing(day).ok_or_else(|| range("beyond the calendar"))?;
        let settled = Day::containing_ms(month.last_day().end_ms() + MONTHLY_SETTLE_DAYS * DAY_MS);
        if monthly && day == month.first_day() && month.last_day() <= to && today >= settled {
            out.push(ArchiveFile::new(symbol, Period::Month(month))?);
            day = month.last_day().next();
        } else {
            out.push(ArchiveFile::new(symbol, Period::Day(day))?);
            day = day.next();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    fn daily(s: &str) -> ArchiveFile {
        ArchiveFile::new("BTCUSDT", Period::Day(day(s))).unwrap()
    }

    #[test]
    fn names_and_paths_of_a_daily_and_a_monthly_file() {
        let f = daily("2018-02-08");
        assert_eq!(f.file_name(), "BTCUSDT-trades-2018-02-08.zip");
        assert_eq!(f.csv_name(), "BTCUSDT-trades-2018-02-08.csv");
        assert_eq!(
            f.url_path(),
            "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip"
        );
        assert_eq!(
            f.checksum_path(),
            "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip.CHECKSUM"
        );
        assert_eq!(
            f.url(BASE_URL),
            "https://data.binance.vision/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip"
        );
        // The README's own example: BNBUSDT trades of 2019-01.
        let m = ArchiveFile::new("BNBUSDT", Period::Month("2019-01".parse().unwrap())).unwrap();
        assert_eq!(
            m.url(BASE_URL),
            "https://data.binance.vision/data/spot/monthly/trades/BNBUSDT/BNBUSDT-trades-2019-01.zip"
        );
    }

    #[rstest]
    #[case("data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip")]
    #[case("data/spot/monthly/trades/BNBUSDT/BNBUSDT-trades-2019-01.zip")]
    #[case("data/spot/daily/trades/BTC-USDT/BTC-USDT-trades-2025-01-01.zip")]
    fn paths_parse_back_to_themselves(#[case] path: &str) {
        let f = ArchiveFile::parse_url_path(path).unwrap();
        assert_eq!(f.url_path(), path);
        assert_eq!(ArchiveFile::parse_url_path(&format!("/{path}")).unwrap(), f);
        assert_eq!(ArchiveFile::parse_url_path(&f.url(BASE_URL)).unwrap(), f);
        assert_eq!(ArchiveFile::parse_file_name(&f.file_name()).unwrap(), f);
    }

    #[rstest]
    #[case("data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip")]
    #[case("data/spot/daily/trades/ETHUSDT/BTCUSDT-trades-2018-02-08.zip")]
    #[case("data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.zip")]
    #[case("data/spot/daily/klines/BTCUSDT/BTCUSDT-trades-2018-02-08.zip")]
    #[case("data/spot/daily/trades/BTCUSDT/BTCUSDT-aggTrades-2018-02-08.zip")]
    #[case("data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-30.zip")]
    #[case("data/spot/daily/trades/btcusdt/btcusdt-trades-2018-02-08.zip")]
    #[case("data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2018-02-08.csv")]
    fn foreign_paths_are_refused_quoting_what_was_wrong(#[case] path: &str) {
        let e = ArchiveFile::parse_url_path(path).unwrap_err().to_string();
        // Either the whole path or the piece that failed is quoted.
        assert!(
            e.contains(path)
                || e.contains(path.rsplit('/').next().unwrap())
                || e.contains("2018-02-30")
                || e.contains("btcusdt"),
            "{e}"
        );
    }

    #[test]
    fn the_time_unit_switches_on_2025_01_01() {
        assert_eq!(
            daily("2024-12-31").period.time_unit(),
            TimeUnit::Millisecond
        );
        assert_eq!(
            daily("2025-01-01").period.time_unit(),
            TimeUnit::Microsecond
        );
        let dec: Month = "2024-12".parse().unwrap();
        let jan: Month = "2025-01".parse().unwrap();
        assert_eq!(Period::Month(dec).time_unit(), TimeUnit::Millisecond);
        assert_eq!(Period::Month(jan).time_unit(), TimeUnit::Microsecond);
        assert_eq!(dec.next(), jan);
    }

    #[test]
    fn a_months_window_runs_from_its_first_to_past_its_last_day() {
        let feb: Month = "2024-02".parse().unwrap();
        assert_eq!(feb.first_day(), day("2024-02-01"));
        assert_eq!(feb.last_day(), day("2024-02-29"));
        let (start, end) = Period::Month(feb).window_us();
        assert_eq!(start, day("2024-02-01").start_ms() * 1000);
        assert_eq!(end, day("2024-03-01").start_ms() * 1000);
        for bad in ["2024-13", "2024-2", "24-02", "2024-02-01x"] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
    }

    fn names(files: &[ArchiveFile]) -> Vec<String> {
        files.iter().map(|f| f.period.to_string()).collect()
    }

    #[test]
    fn whole_settled_months_are_monthly_the_rest_daily() {
        // 2024-01-30 .. 2024-04-02 on 2024-05-01: January's tail and April's head are daily,
        // February and March whole and settled.
        let files = plan(
            "BTCUSDT",
            day("2024-01-30"),
            day("2024-04-02"),
            day("2024-05-01"),
            true,
        )
        .unwrap();
        assert_eq!(
            names(&files),
            [
                "2024-01-30",
                "2024-01-31",
                "2024-02",
                "2024-03",
                "2024-04-01",
                "2024-04-02"
            ]
        );
        // Without monthly files: every day.
        let daily_only = plan(
            "BTCUSDT",
            day("2024-01-30"),
            day("2024-04-02"),
            day("2024-05-01"),
            false,
        )
        .unwrap();
        assert_eq!(daily_only.len(), 2 + 29 + 31 + 2);
        assert!(
            daily_only
                .iter()
                .all(|f| matches!(f.period, Period::Day(_)))
        );
    }

    #[test]
    fn a_month_is_daily_until_its_monthly_file_has_settled() {
        // March 2024 ended on the 31st; its monthly file is asked for from April 8th.
        let march = |today| {
            plan(
                "BTCUSDT",
                day("2024-03-01"),
                day("2024-03-31"),
                day(today),
                true,
            )
            .unwrap()
        };
        assert_eq!(march("2024-04-07").len(), 31);
        assert_eq!(names(&march("2024-04-08")), ["2024-03"]);
    }

    #[test]
    fn every_day_is_covered_once_and_in_order() {
        let from = day("2023-11-17");
        let to = day("2025-02-03");
        let files = plan("BTCUSDT", from, to, day("2026-01-01"), true).unwrap();
        let days: Vec<Day> = files
            .iter()
            .flat_map(|f| f.period.first_day().through(f.period.last_day()))
            .collect();
        let want: Vec<Day> = from.through(to).collect();
        assert_eq!(days, want);
    }

    #[test]
    fn impossible_ranges_say_why() {
        let e = plan(
            "BTCUSDT",
            day("2024-02-02"),
            day("2024-02-01"),
            day("2024-05-01"),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("after the last"), "{e}");
        let e = plan(
            "BTCUSDT",
            day("2024-02-02"),
            day("2024-05-01"),
            day("2024-05-01"),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("before today"), "{e}");
        let e = plan(
            "btc",
            day("2024-02-02"),
            day("2024-02-03"),
            day("2024-05-01"),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"btc\""), "{e}");
    }
}
