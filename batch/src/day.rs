//! UTC days and instants as the batch names them: `YYYY-MM-DD` days, RFC 3339 instants.
//!
//! Pure: no clock. The calendar is jiff's proleptic Gregorian one, which is what BigQuery's
//! `DATE` and Binance's UTC days use. The syntax is checked here first, so an error says which
//! part of the value is wrong.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Time, date};
use jiff::{Span, Unit};

/// Milliseconds in a UTC day (no leap seconds in Unix time).
pub const DAY_MS: i64 = 86_400_000;

/// A UTC calendar day, stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(i64);

/// A day or instant that could not be read; the message quotes the raw value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {raw:?} is not valid: {why}")]
pub struct DayError {
    what: &'static str,
    raw: String,
    why: &'static str,
}

fn err(what: &'static str, raw: &str, why: &'static str) -> DayError {
    DayError {
        what,
        raw: raw.to_owned(),
        why,
    }
}

/// Day 0 of [`Day`].
const EPOCH: Date = date(1970, 1, 1);

/// The calendar date `d` days after 1970-01-01, when jiff's calendar (years -9999 to 9999) has it.
fn civil(d: i64) -> Option<Date> {
    let span = Span::new().try_days(d).ok()?;
    EPOCH.checked_add(span).ok()
}

/// Days from 1970-01-01 to `date`.
fn days_since_epoch(date: Date) -> Result<i64, jiff::Error> {
    let span = date.since((Unit::Day, EPOCH))?;
    Ok(i64::from(span.get_days()))
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl Day {
    /// The day containing `ms` (Unix milliseconds).
    pub fn containing_ms(ms: i64) -> Self {
        Day(ms.div_euclid(DAY_MS))
    }

    /// First millisecond of the day.
    pub fn start_ms(self) -> i64 {
        self.0 * DAY_MS
    }

    /// First millisecond of the next day (exclusive end).
    pub fn end_ms(self) -> i64 {
        (self.0 + 1) * DAY_MS
    }

    /// The next day.
    pub fn next(self) -> Self {
        Day(self.0 + 1)
    }

    /// The previous day.
    pub fn prev(self) -> Self {
        Day(self.0 - 1)
    }

    /// Every day from `self` to `last`, both included (empty when `last < self`).
    pub fn through(self, last: Day) -> impl Iterator<Item = Day> {
        (self.0..=last.0).map(Day)
    }
}

impl FromStr for Day {
    type Err = DayError;

    /// `YYYY-MM-DD`, e.g. `2026-01-31`.
    fn from_str(raw: &str) -> Result<Self, DayError> {
        let what = "date";
        let parts: Vec<&str> = raw.split('-').collect();
        let [y, m, d] = parts[..] else {
            return Err(err(what, raw, "expected YYYY-MM-DD"));
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(err(what, raw, "expected YYYY-MM-DD"));
        }
        let (Some(y), Some(m), Some(d)) = (digits(y), digits(m), digits(d)) else {
            return Err(err(what, raw, "expected digits in YYYY-MM-DD"));
        };
        if !(1..=12).contains(&m) {
            return Err(err(what, raw, "month must be 01-12"));
        }
        // Four and two digits fit jiff's integer types; only the day can still be wrong.
        let day = Date::new(y as i16, m as i8, d as i8)
            .map_err(|_| err(what, raw, "no such day in that month"))?;
        let n = days_since_epoch(day).map_err(|_| err(what, raw, "expected YYYY-MM-DD"))?;
        Ok(Day(n))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match civil(self.0) {
            Some(d) => write!(f, "{}", d.strftime("%Y-%m-%d")),
            // Beyond year 9999: no real day, but still printable.
            None => write!(f, "day {} since 1970-01-01", self.0),
        }
    }
}

/// Reads an instant: RFC 3339 in UTC (`2026-01-31T12:00:00Z`, optional `.fff` fraction up to
/// microseconds) or a bare day (its midnight). Returns Unix microseconds.
pub fn parse_instant_us(raw: &str) -> Result<i64, DayError> {
    let what = "instant";
    let Some((date, rest)) = raw.split_once('T') else {
        let day: Day = raw
            .parse()
            .map_err(|_| err(what, raw, "expected RFC 3339"))?;
        return Ok(day.start_ms() * 1000);
    };
    let day: Day = date.parse().map_err(|_| err(what, raw, "bad date part"))?;
    let Some(time) = rest.strip_suffix('Z') else {
        return Err(err(what, raw, "must end in Z (UTC)"));
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, mi, s] = parts[..] else {
        return Err(err(what, raw, "expected HH:MM:SS"));
    };
    let (Some(h), Some(mi), Some(s)) = (digits(h), digits(mi), digits(s)) else {
        return Err(err(what, raw, "expected digits in HH:MM:SS"));
    };
    let micros = if frac.is_empty() {
        0
    } else if frac.len() <= 6 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<6}").parse::<i32>().unwrap_or(0)
    } else {
        return Err(err(what, raw, "fraction must be 1-6 digits"));
    };
    let range = || err(what, raw, "time out of range");
    let clamp = |v: i64| i8::try_from(v).unwrap_or(i8::MAX);
    let time = Time::new(clamp(h), clamp(mi), clamp(s), micros * 1_000).map_err(|_| range())?;
    let date = civil(day.0).ok_or_else(range)?;
    let ts = jiff::tz::TimeZone::UTC
        .to_timestamp(date.to_datetime(time))
        .map_err(|_| range())?;
    Ok(ts.as_microsecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case("1970-01-01", 0)]
    #[case("2024-02-29", 1_709_164_800_000)]
    #[case("2026-01-31", 1_769_817_600_000)]
    fn parses_days(#[case] raw: &str, #[case] start_ms: i64) {
        let d: Day = raw.parse().unwrap();
        assert_eq!(d.start_ms(), start_ms);
        assert_eq!(d.end_ms() - d.start_ms(), DAY_MS);
        assert_eq!(d.to_string(), raw);
    }

    #[rstest]
    #[case("2023-02-29", "no such day")]
    #[case("2026-13-01", "month")]
    #[case("2026-1-01", "YYYY-MM-DD")]
    #[case("yesterday", "YYYY-MM-DD")]
    fn rejects_bad_days_quoting_them(#[case] raw: &str, #[case] why: &str) {
        let e = raw.parse::<Day>().unwrap_err().to_string();
        assert!(e.contains(why) && e.contains(raw), "{e}");
    }

    #[rstest]
    #[case("2026-01-31T00:00:00Z", 1_769_817_600_000_000)]
    #[case("2026-01-31T01:02:03.5Z", 1_769_817_600_000_000 + 3_723_500_000)]
    #[case("2026-01-31", 1_769_817_600_000_000)]
    fn parses_instants(#[case] raw: &str, #[case] us: i64) {
        assert_eq!(parse_instant_us(raw).unwrap(), us);
    }

    #[test]
    fn rejects_non_utc_instants() {
        assert!(parse_instant_us("2026-01-31T00:00:00+01:00").is_err());
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(n in -100_000i64..200_000) {
            let d = Day(n);
            prop_assert_eq!(d.to_string().parse::<Day>().unwrap(), d);
            prop_assert_eq!(Day::containing_ms(d.start_ms() + DAY_MS - 1), d);
        }
    }
}
