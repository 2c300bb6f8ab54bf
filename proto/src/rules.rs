//! The value rules of the contracts, in one place: what a symbol, a decimal and a time may be.
//! The producer checks what it parses against them, the consumer what it decodes, `tap` what it
//! shows; a trade one of them accepts, the others accept too.
//!
//! - Symbol: Binance's own grammar, `^[A-Z0-9-_.]{1,20}$`, the legal range its REST API names
//!   when it refuses a `symbol` parameter (error -1100, "Illegal characters found in parameter
//!   'symbol'"; <https://developers.binance.com/docs/binance-spot-api-docs/errors>). Upper case
//!   on the wire and in the tables. A list of symbols (`--symbols`, `SYMBOLS`) is
//!   [`parse_symbol_list`]'s: comma separated, each entry trimmed and upper-cased.
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

/// Why a symbol list was refused; every variant names the entry as it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolListError {
    /// An entry is empty or blank (two commas in a row, a comma at an end, an empty list):
    /// remove it.
    #[error("entry {position} of {list:?} is empty: symbols are separated by single commas")]
    Empty {
        /// 1-based position of the entry.
        position: usize,
        /// The whole list, as given.
        list: String,
    },
    /// An entry is not a symbol even upper-cased: fix its spelling.
    #[error("{entry:?} is not a Binance symbol ({SYMBOL_PATTERN})")]
    Invalid {
        /// The entry, as given.
        entry: String,
    },
    /// An entry names a symbol listed before it: remove one of them.
    #[error("{entry:?} repeats {symbol}, listed before it")]
    Duplicate {
        /// The entry, as given.
        entry: String,
        /// The symbol it names.
        symbol: String,
    },
}

/// Parses a comma-separated symbol list (`"btcusdt, ARBUSDT"` → `["BTCUSDT", "ARBUSDT"]`):
/// each entry trimmed and upper-cased ([`normalise_symbol`]), in the order given. Refuses an
/// empty entry, an entry that is no symbol and a repeated symbol, naming the entry.
pub fn parse_symbol_list(list: &str) -> Result<Vec<String>, SymbolListError> {
    let mut symbols: Vec<String> = Vec::new();
    for (i, raw) in list.split(',').enumerate() {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(SymbolListError::Empty {
                position: i + 1,
                list: list.to_owned(),
            });
        }
        let Some(symbol) = normalise_symbol(entry) else {
            return Err(SymbolListError::Invalid {
                entry: raw.to_owned(),
            });
        };
        if symbols.contains(&symbol) {
            return Err(SymbolListError::Duplicate {
                entry: raw.to_owned(),
                symbol,
            });
        }
        symbols.push(symbol);
    }
    Ok(symbols)
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
    fn symbol_lists_are_trimmed_upper_cased_and_kept_in_order() {
        assert_eq!(
            parse_symbol_list("btcusdt, ARBUSDT ,1000sats,ETH-BTC").unwrap(),
            ["BTCUSDT", "ARBUSDT", "1000SATS", "ETH-BTC"]
        );
        assert_eq!(parse_symbol_list(" x ").unwrap(), ["X"]);
    }

    #[test]
    fn symbol_lists_refuse_empty_entries_naming_where() {
        for (list, position) in [
            ("", 1),
            ("BTCUSDT,,ARBUSDT", 2),
            ("BTCUSDT,", 2),
            (" , X", 1),
        ] {
            let e = parse_symbol_list(list).unwrap_err();
            assert_eq!(
                e,
                SymbolListError::Empty {
                    position,
                    list: list.to_owned()
                },
                "{list:?}"
            );
            assert!(e.to_string().contains(&format!("{list:?}")), "{e}");
        }
    }

    #[test]
    fn symbol_lists_refuse_non_symbols_and_repeats_naming_the_entry() {
        let e = parse_symbol_list("BTCUSDT,btc/usdt").unwrap_err();
        assert_eq!(
            e,
            SymbolListError::Invalid {
                entry: "btc/usdt".into()
            }
        );
        assert!(e.to_string().contains("\"btc/usdt\"") && e.to_string().contains(SYMBOL_PATTERN));
        let too_long = "ABCDEFGHIJKLMNOPQRSTU";
        assert!(matches!(
            parse_symbol_list(too_long),
            Err(SymbolListError::Invalid { entry }) if entry == too_long
        ));
        let e = parse_symbol_list("BTCUSDT,ARBUSDT, btcusdt").unwrap_err();
        assert_eq!(
            e,
            SymbolListError::Duplicate {
                entry: " btcusdt".into(),
                symbol: "BTCUSDT".into()
            }
        );
        assert!(e.to_string().contains("\" btcusdt\""), "{e}");
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
