//! Exact decimals as scaled integers, formatted the way Binance does.
//!
//! Binance prints prices and quantities with 8 decimals (`"107407.88000000"`, `"0.00024000"`), so
//! every amount here is an integer count of 1e-8 units (`u64` for one price or quantity, `u128`
//! for sums and products). No binary floating point ever reaches a payload.

use std::fmt;

/// One unit is 1e-8: Binance's 8-decimal precision for spot prices and quantities.
pub const SCALE: u64 = 100_000_000;

/// Number of decimals Binance prints for prices and quantities.
pub const DECIMALS: usize = 8;

/// Errors parsing a decimal string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecimalError {
    /// The text is not a plain non-negative decimal number.
    #[error("not a decimal number: {raw:?}")]
    NotANumber {
        /// The text as given.
        raw: String,
    },
    /// More than 8 decimals, or too large for 1e-8 units in 64 bits.
    #[error("decimal {raw:?} has more than 8 decimals or is too large")]
    OutOfRange {
        /// The text as given.
        raw: String,
    },
}

/// Parse `"0.01"` into 1e-8 units (`1_000_000`). At most 8 decimals.
pub fn parse_units(raw: &str) -> Result<u64, DecimalError> {
    let bad = || DecimalError::NotANumber {
        raw: raw.to_string(),
    };
    let range = || DecimalError::OutOfRange {
        raw: raw.to_string(),
    };
    let (int, frac) = match raw.split_once('.') {
        Some((i, f)) => (i, f),
        None => (raw, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > DECIMALS {
        return Err(range());
    }
    let int_v: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| range())?
    };
    let mut frac_v: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| range())?
    };
    for _ in frac.len()..DECIMALS {
        frac_v *= 10;
    }
    int_v
        .checked_mul(SCALE)
        .and_then(|v| v.checked_add(frac_v))
        .ok_or_else(range)
}

/// Number of significant decimals of a step such as a tick size (`0.01` -> 2, `1` -> 0).
pub fn decimals_of(units: u64) -> u32 {
    let mut d = DECIMALS as u32;
    let mut u = units;
    while d > 0 && u.is_multiple_of(10) && u != 0 {
        u /= 10;
        d -= 1;
    }
    d
}

/// Append `units` (1e-8) as `"123.45000000"` to `out`.
#[inline]
pub fn push_units(out: &mut Vec<u8>, units: u128) {
    // u64 arithmetic when it fits: u128 division is a slow library call.
    let (int, frac) = match u64::try_from(units) {
        Ok(u) => (u128::from(u / SCALE), u % SCALE),
        Err(_) => (
            units / u128::from(SCALE),
            (units % u128::from(SCALE)) as u64,
        ),
    };
    push_uint(out, int);
    out.push(b'.');
    let mut buf = [b'0'; DECIMALS];
    let mut f = frac;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (f % 10) as u8;
        f /= 10;
    }
    out.extend_from_slice(&buf);
}

/// Append an unsigned integer in decimal.
#[inline]
pub fn push_uint(out: &mut Vec<u8>, v: u128) {
    match u64::try_from(v) {
        Ok(v) => push_u64(out, v),
        Err(_) => push_u128_slow(out, v),
    }
}

#[inline]
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_u128_slow(out: &mut Vec<u8>, mut v: u128) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Append a signed integer in decimal.
#[inline]
pub fn push_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_uint(out, u128::from(v.unsigned_abs()));
}

/// `units` formatted with 8 decimals, as a `String`.
pub fn units_string(units: u128) -> String {
    let mut v = Vec::with_capacity(24);
    push_units(&mut v, units);
    String::from_utf8(v).unwrap_or_default()
}

/// A signed amount in 1e-8 units formatted with 8 decimals (`"-94.99999800"`).
pub fn signed_units_string(units: i128) -> String {
    let s = units_string(units.unsigned_abs());
    if units < 0 { format!("-{s}") } else { s }
}

/// The product of two 1e-8 amounts (price x quantity) in 1e-8 units, truncated.
/// Exact whenever the tick and step decimals add up to 8 or fewer, as for all default symbols.
#[inline]
pub fn mul_units(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b) / u128::from(SCALE)
}

/// Wrapper to print 1e-8 units with `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units(pub u128);

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&units_string(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("0.01", 1_000_000)]
    #[case("107407.88", 10_740_788_000_000)]
    #[case("107407.88000000", 10_740_788_000_000)]
    #[case("0.00001", 1_000)]
    #[case("1", 100_000_000)]
    #[case(".5", 50_000_000)]
    #[case("0.00000001", 1)]
    fn parses(#[case] raw: &str, #[case] units: u64) {
        assert_eq!(parse_units(raw), Ok(units));
    }

    #[rstest]
    #[case("")]
    #[case("-1")]
    #[case("1e5")]
    #[case("abc")]
    #[case("0.000000001")]
    fn rejects(#[case] raw: &str) {
        assert!(parse_units(raw).is_err(), "{raw}");
    }

    #[rstest]
    #[case(10_740_788_000_000, "107407.88000000")]
    #[case(24_000, "0.00024000")]
    #[case(0, "0.00000000")]
    #[case(1, "0.00000001")]
    fn formats_like_binance(#[case] units: u128, #[case] text: &str) {
        assert_eq!(units_string(units), text);
    }

    #[test]
    fn large_sums_format_exactly() {
        let big: u128 = u128::from(u64::MAX) * 1000 + 12_345_678;
        let want = format!("{}.{:08}", big / 100_000_000, big % 100_000_000);
        assert_eq!(units_string(big), want);
        let mut v = Vec::new();
        push_int(&mut v, -1_751_132_780_368);
        assert_eq!(v, b"-1751132780368");
    }

    #[test]
    fn decimals_of_steps() {
        assert_eq!(decimals_of(1_000_000), 2);
        assert_eq!(decimals_of(1_000), 5);
        assert_eq!(decimals_of(10_000_000), 1);
        assert_eq!(decimals_of(100_000_000), 0);
        assert_eq!(decimals_of(1), 8);
    }

    #[test]
    fn quote_quantity_is_exact() {
        // 107407.88 * 0.00024 = 25.7778912
        assert_eq!(
            units_string(mul_units(10_740_788_000_000, 24_000)),
            "25.77789120"
        );
        assert_eq!(signed_units_string(-9_499_999_800), "-94.99999800");
    }
}
