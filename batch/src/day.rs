//! UTC days and instants as the batch names them: `YYYY-MM-DD` days, RFC 3339 instants.
//!
//! Pure: no clock. Conversions use the proleptic Gregorian calendar (days-from-civil, as in
//! Howard Hinnant's "chrono-Compatible Low-Level Date Algorithms"), which is what BigQuery's
//! `DATE` and Binance's UTC days use.

use std::fmt;
use std::str::FromStr;

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

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
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
        if d < 1 || d > days_in_month(y, m) {
            return Err(err(what, raw, "no such day in that month"));
        }
        Ok(Day(days_from_civil(y, m, d)))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
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
    if h > 23 || mi > 59 || s > 59 {
        return Err(err(what, raw, "time out of range"));
    }
    let micros = if frac.is_empty() {
        0
    } else if frac.len() <= 6 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<6}").parse::<i64>().unwrap_or(0)
    } else {
        return Err(err(what, raw, "fraction must be 1-6 digits"));
    };
    Ok(day.start_ms() * 1000 + ((h * 60 + mi) * 60 + s) * 1_000_000 + micros)
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
