//! The symbols captured when `--symbols` / `SYMBOLS` is not given.

/// Comma-separated, as the `SYMBOLS` variable takes them.
pub const DEFAULT_SYMBOLS: &str = "BTCUSDT,AAVEUSDT,STXUSDT,ARBUSDT";

#[cfg(test)]
mod tests {
    #[test]
    fn every_default_is_a_contract_symbol() {
        for s in super::DEFAULT_SYMBOLS.split(',') {
            assert!(
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase()),
                "{s:?}"
            );
        }
    }
}
