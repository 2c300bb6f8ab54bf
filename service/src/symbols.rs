//! The symbols captured when `--symbols` / `SYMBOLS` is not given.

/// Comma-separated, as the `SYMBOLS` variable takes them (read by
/// `trade_proto::rules::parse_symbol_list`).
pub const DEFAULT_SYMBOLS: &str = "BTCUSDT,AAVEUSDT,STXUSDT,ARBUSDT";

#[cfg(test)]
mod tests {
    use trade_proto::rules::{is_symbol, parse_symbol_list};

    #[test]
    fn every_default_is_a_contract_symbol() {
        let symbols = parse_symbol_list(super::DEFAULT_SYMBOLS).unwrap();
        assert_eq!(symbols, ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]);
        // As written, not only once upper-cased: the list is what the topics carry.
        for s in super::DEFAULT_SYMBOLS.split(',') {
            assert!(is_symbol(s), "{s:?}");
        }
    }
}
