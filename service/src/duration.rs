//! The duration syntax every flag takes: `250ms`, `90s`, `2m`, `23h30m`, `1h 30m`; a bare whole
//! number is seconds (`0` is zero). Parsing is jiff's "friendly" format, so the units a user may
//! try (`min`, `hours`, `sec`) work too; negative and fractional-nanosecond values are refused.

use std::time::Duration;

/// Parses a flag's duration; the error names the value and the accepted forms (clap prints it).
pub fn parse(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty duration: use e.g. 250ms, 90s, 2m or 23h30m".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{raw:?}: number too large"));
    }
    let signed: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{raw:?} is not a duration like 250ms, 90s or 23h30m ({e})"))?;
    Duration::try_from(signed).map_err(|_| format!("{raw:?} is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("250ms", Duration::from_millis(250))]
    #[case("5s", Duration::from_secs(5))]
    #[case("90s", Duration::from_secs(90))]
    #[case("2m", Duration::from_secs(120))]
    #[case("1h", Duration::from_secs(3_600))]
    #[case("23h30m", Duration::from_secs(23 * 3_600 + 30 * 60))]
    #[case("2m10s", Duration::from_secs(130))]
    #[case("1h 30m", Duration::from_secs(5_400))]
    #[case("0", Duration::ZERO)]
    #[case("30", Duration::from_secs(30))]
    #[case(" 5s ", Duration::from_secs(5))]
    fn accepted(#[case] raw: &str, #[case] want: Duration) {
        assert_eq!(parse(raw), Ok(want));
    }

    #[rstest]
    #[case("", "empty")]
    #[case("5x", "\"5x\"")]
    #[case("-5s", "negative")]
    #[case("s", "\"s\"")]
    #[case("99999999999999999999", "too large")]
    #[case("99999999999999999999h", "\"99999999999999999999h\"")]
    fn refused_with_a_reason(#[case] raw: &str, #[case] needle: &str) {
        let e = parse(raw).unwrap_err();
        assert!(e.contains(needle), "{raw:?}: {e}");
    }
}
