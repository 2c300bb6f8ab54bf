//! The value rules of the contracts, in one place: what a symbol, a decimal and a time may be.
//! The producer checks what it parses against them, the consumer what it decodes, `tap` what it
//! shows; a trade one of them accepts, the others accept too.
//!
//! - Symbol: Binance's own grammar, `^[A-Z0-9-_.]{1,20}$`, the legal range its REST API names
//!   when it refuses a `symbol` parameter (error -1100, "Illegal characters found in parameter
//!   'symbol'"; <https://developers.binance.com/docs/binance-spot-api-docs/errors>). Upper case
//!   on the wire and in the tables.
//! - Decimal: `digits [ "." digits ]`, what BigQuery NUMERIC and every decimal library read
//!   unambiguously; no sign, exponent, space, lone or trailing dot.
//! - Time: microseconds since the epoch, not before 2017-01-01 (Binance opened in July 2017; an
//!   older value is a unit mix-up or a missing field).

/// The longest symbol Binance accepts.
pub const MAX_SYMBOL_LEN: usize = 20;

/// The symbol grammar as Binance writes it in its -1100 answers.
pub const SYMBOL_PATTERN: &str = "^[A-Z0-9-_.]{1,20}$";

/// 2017-01-01T00:00:00Z in microseconds: no Binance trade is older.
pub const EARLIEST_TIME_MICROS: i64 = 1_483_228_800_000_000;

/// True for a symbol as the contracts carry it: 1 to 20 of `A-Z 0-9 - _ .`.
pub fn is_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_LEN
        && s.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// `s` upper-cased (stream names and flags may be lower case), if it then is a symbol.
pub fn normalise_symbol(s: &str) -> Option<String> {
    let upper = s.to_ascii_uppercase();
    is_symbol(&upper).then_some(upper)
}

/// True for a plain decimal: digits, optionally one dot followed by digits.
pub fn is_plain_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// True for a contract time (µs since the epoch, not before 2017).
pub fn is_contract_time(micros: i64) -> bool {
    micros >= EARLIEST_TIME_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_follow_binances_grammar() {
        for ok in [
            "BTCUSDT",
            "1INCHUSDT",
            "BTC-USDT",
            "A_B.C",
            "X",
            "ABCDEFGHIJKLMNOPQRST",
        ] {
            assert!(is_symbol(ok), "{ok}");
        }
        for bad in [
            "",
            "btcusdt",
            "BTC USDT",
            "BTC/USDT",
            "ABCDEFGHIJKLMNOPQRSTU",
            "É",
        ] {
            assert!(!is_symbol(bad), "{bad}");
        }
        assert_eq!(normalise_symbol("btcusdt").as_deref(), Some("BTCUSDT"));
        assert_eq!(normalise_symbol("btc usdt"), None);
    }

    #[test]
    fn the_pattern_and_the_function_say_the_same() {
        // The pattern is what error messages show; keep it in step with the code.
        assert_eq!(
            SYMBOL_PATTERN,
            format!("^[A-Z0-9-_.]{{1,{MAX_SYMBOL_LEN}}}$")
        );
    }

    #[test]
    fn plain_decimals_only() {
        for ok in ["0", "42", "0.00100000", "65000.01"] {
            assert!(is_plain_decimal(ok), "{ok}");
        }
        for bad in [
            "", ".", "1.", ".5", "-1", "+1", "1e5", "1 ", "1.2.3", "0x10", "NaN",
        ] {
            assert!(!is_plain_decimal(bad), "{bad}");
        }
    }

    #[test]
    fn times_start_in_2017() {
        assert!(is_contract_time(EARLIEST_TIME_MICROS));
        assert!(!is_contract_time(EARLIEST_TIME_MICROS - 1));
        // A millisecond value of today is far below the µs bound: caught as a unit mix-up.
        assert!(!is_contract_time(1_764_000_000_000));
    }
}
