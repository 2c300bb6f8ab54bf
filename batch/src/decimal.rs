//! Exact decimals for the checks and the SQL literals: Binance sends prices and volumes as
//! decimal strings, BigQuery stores NUMERIC (38 digits, 9 after the point). No float touches them.

use std::cmp::Ordering;

/// A decimal string that is not a plain decimal NUMERIC can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {raw:?} is not a plain decimal with at most 9 fractional digits")]
pub struct DecimalError {
    /// The field it was read for.
    pub field: &'static str,
    /// The raw value.
    pub raw: String,
}

/// A NUMERIC value, scaled by 10^9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Numeric(i128);

/// NUMERIC's scale: 9 fractional digits. Source: BigQuery "Numeric types" (NUMERIC: precision
/// 38, scale 9).
pub const SCALE: u32 = 9;

impl Numeric {
    /// Parses `-?digits(.digits)?` with at most [`SCALE`] fractional digits (trailing zeros
    /// beyond that are accepted, as BigQuery prints `1.500000000`).
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, DecimalError> {
        let bad = || DecimalError {
            field,
            raw: raw.to_owned(),
        };
        let (neg, body) = match raw.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, raw),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let frac = frac.trim_end_matches('0');
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > SCALE as usize
            || int.len() > 29
        {
            return Err(bad());
        }
        let int: i128 = int.parse().map_err(|_| bad())?;
        let frac_v: i128 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| bad())?
        };
        let v = int * 10i128.pow(SCALE) + frac_v;
        Ok(Numeric(if neg { -v } else { v }))
    }

    /// Zero.
    pub const ZERO: Numeric = Numeric(0);

    /// Canonical text: no trailing zeros, no trailing point (`"0.01000000"` -> `"0.01"`).
    pub fn canonical(self) -> String {
        let neg = self.0 < 0;
        let a = self.0.unsigned_abs();
        let scale = 10u128.pow(SCALE);
        let (i, f) = (a / scale, a % scale);
        let mut s = if f == 0 {
            i.to_string()
        } else {
            let frac = format!("{f:09}");
            format!("{i}.{}", frac.trim_end_matches('0'))
        };
        if neg && a != 0 {
            s.insert(0, '-');
        }
        s
    }

    /// Compares two values.
    pub fn cmp_to(self, other: Numeric) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case("0.01000000", "0.01")]
    #[case("107407.88000000", "107407.88")]
    #[case("1.500000000", "1.5")]
    #[case("-0.5", "-0.5")]
    #[case("0", "0")]
    #[case("92233.72036854", "92233.72036854")]
    fn canonical_forms(#[case] raw: &str, #[case] want: &str) {
        assert_eq!(Numeric::parse("price", raw).unwrap().canonical(), want);
    }

    #[rstest]
    #[case("1e5")]
    #[case("")]
    #[case(".5")]
    #[case("1.0000000001")]
    #[case("NaN")]
    #[case("1'; DROP TABLE x; --")]
    fn rejects_what_is_not_a_plain_decimal(#[case] raw: &str) {
        let e = Numeric::parse("volume", raw).unwrap_err();
        assert!(e.to_string().contains("volume"), "{e}");
    }

    #[test]
    fn orders_exactly() {
        let a = Numeric::parse("a", "0.00000001").unwrap();
        let b = Numeric::parse("b", "0.00000002").unwrap();
        assert_eq!(a.cmp_to(b), Ordering::Less);
        assert!(Numeric::parse("c", "-0.00000001").unwrap() < Numeric::ZERO);
    }

    proptest! {
        #[test]
        fn canonical_parses_back_to_the_same_value(units in -10i128.pow(20)..10i128.pow(20)) {
            let n = Numeric(units);
            prop_assert_eq!(Numeric::parse("x", &n.canonical()).unwrap(), n);
        }
    }
}
