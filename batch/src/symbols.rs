//! The symbol dimension, pure: `exchangeInfo` -> rows of `dwh.symbols`, the row hash, and the
//! type-2 diff against the current versions in `scd.symbols_history`.
//!
//! The diff decides; one MERGE ([`crate::sql::scd_merge`]) applies it:
//! - same hash as the current version: nothing is written;
//! - a different hash: the current version is closed (`valid_to = as_of`, `is_current = false`)
//!   and a new one opened (`valid_from = as_of`, `valid_to = NULL`, `is_current = true`);
//! - a symbol with no current version: a version is opened;
//! - a symbol in scope with a current version that `exchangeInfo` no longer lists: closed.
//!
//! Symbols outside the run's scope (`--symbols`) are never touched, so a run for fewer symbols
//! does not close the others.

use std::collections::{BTreeMap, BTreeSet};

use binance::wire::SymbolInfo;
use sha2::{Digest, Sha256};

use crate::decimal::{DecimalError, Numeric};

/// The attribute columns of `dwh.symbols` and `scd.symbols_history` (schema order), decimals in
/// canonical form so that `"0.01000000"` and `"0.01"` hash the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolRow {
    /// Symbol, upper case.
    pub symbol: String,
    /// Trading status.
    pub status: String,
    /// Base asset.
    pub base_asset: String,
    /// Quote asset.
    pub quote_asset: String,
    /// baseAssetPrecision.
    pub base_asset_precision: i64,
    /// quoteAssetPrecision.
    pub quote_asset_precision: i64,
    /// PRICE_FILTER tickSize.
    pub tick_size: String,
    /// PRICE_FILTER minPrice.
    pub min_price: String,
    /// PRICE_FILTER maxPrice.
    pub max_price: String,
    /// LOT_SIZE stepSize.
    pub step_size: String,
    /// LOT_SIZE minQty.
    pub min_qty: String,
    /// LOT_SIZE maxQty.
    pub max_qty: String,
    /// NOTIONAL / MIN_NOTIONAL minNotional.
    pub min_notional: String,
    /// NOTIONAL maxNotional, if the symbol has that filter.
    pub max_notional: Option<String>,
    /// Allowed order types.
    pub order_types: Vec<String>,
    /// permissionSets as JSON text.
    pub permission_sets: String,
    /// SHA-256 (hex) of every attribute above.
    pub row_hash: String,
}

/// `exchangeInfo` lacked something the dimension needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// A filter the table requires is absent.
    #[error("exchangeInfo for {symbol} has no {filter} filter")]
    MissingFilter {
        /// The symbol.
        symbol: String,
        /// `PRICE_FILTER`, `LOT_SIZE` or `NOTIONAL`.
        filter: &'static str,
    },
    /// A decimal field is not a decimal.
    #[error("exchangeInfo for {symbol}: {source}")]
    Decimal {
        /// The symbol.
        symbol: String,
        /// Which field and value.
        source: DecimalError,
    },
}

fn canon(symbol: &str, field: &'static str, raw: &str) -> Result<String, SymbolError> {
    Numeric::parse(field, raw)
        .map(Numeric::canonical)
        .map_err(|source| SymbolError::Decimal {
            symbol: symbol.to_owned(),
            source,
        })
}

impl SymbolRow {
    /// Builds the row (and its hash) from one `exchangeInfo` symbol.
    pub fn from_info(info: &SymbolInfo) -> Result<Self, SymbolError> {
        let s = info.symbol.as_str();
        let missing = |filter| SymbolError::MissingFilter {
            symbol: s.to_owned(),
            filter,
        };
        let price = info.price_filter().ok_or_else(|| missing("PRICE_FILTER"))?;
        let lot = info.lot_size().ok_or_else(|| missing("LOT_SIZE"))?;
        let notional = info.notional().ok_or_else(|| missing("NOTIONAL"))?;
        let mut row = SymbolRow {
            symbol: s.to_owned(),
            status: info.status.clone(),
            base_asset: info.base_asset.clone(),
            quote_asset: info.quote_asset.clone(),
            base_asset_precision: i64::from(info.base_asset_precision),
            quote_asset_precision: i64::from(info.quote_asset_precision),
            tick_size: canon(s, "tickSize", &price.tick_size)?,
            min_price: canon(s, "minPrice", &price.min_price)?,
            max_price: canon(s, "maxPrice", &price.max_price)?,
            step_size: canon(s, "stepSize", &lot.step_size)?,
            min_qty: canon(s, "minQty", &lot.min_qty)?,
            max_qty: canon(s, "maxQty", &lot.max_qty)?,
            min_notional: canon(s, "minNotional", &notional.min_notional)?,
            max_notional: notional
                .max_notional
                .as_deref()
                .map(|m| canon(s, "maxNotional", m))
                .transpose()?,
            order_types: info.order_types.clone(),
            permission_sets: serde_json::to_string(&info.permission_sets)
                .expect("strings serialise"),
            row_hash: String::new(),
        };
        row.row_hash = row.compute_hash();
        Ok(row)
    }

    /// SHA-256 over the attributes as a JSON array in schema order (unambiguous: every value is
    /// quoted or a number, so no two different rows share an encoding).
    pub fn compute_hash(&self) -> String {
        let attrs = serde_json::json!([
            self.symbol,
            self.status,
            self.base_asset,
            self.quote_asset,
            self.base_asset_precision,
            self.quote_asset_precision,
            self.tick_size,
            self.min_price,
            self.max_price,
            self.step_size,
            self.min_qty,
            self.max_qty,
            self.min_notional,
            self.max_notional,
            self.order_types,
            self.permission_sets,
        ]);
        hex::encode(Sha256::digest(attrs.to_string().as_bytes()))
    }
}

/// What the SCD MERGE must do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScdPlan {
    /// Current versions to close: (symbol, the row hash it must still have).
    pub close: Vec<(String, String)>,
    /// Versions to open.
    pub open: Vec<SymbolRow>,
    /// Symbols whose current version is unchanged.
    pub unchanged: Vec<String>,
}

impl ScdPlan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.close.is_empty() && self.open.is_empty()
    }

    /// Rows the MERGE must affect (closed + opened); anything else means someone else changed
    /// the table in between.
    pub fn expected_affected(&self) -> i64 {
        i64::try_from(self.close.len() + self.open.len()).unwrap_or(i64::MAX)
    }
}

/// The type-2 diff. `current` maps symbol -> row hash of its current version; `fetched` is what
/// `exchangeInfo` says now (already filtered to the scope); `scope` is the run's symbols.
pub fn diff(
    current: &BTreeMap<String, String>,
    fetched: &[SymbolRow],
    scope: &BTreeSet<String>,
) -> ScdPlan {
    let mut plan = ScdPlan::default();
    let mut seen = BTreeSet::new();
    for row in fetched.iter().filter(|r| scope.contains(&r.symbol)) {
        if !seen.insert(row.symbol.clone()) {
            continue; // exchangeInfo lists each symbol once; keep the first if not.
        }
        match current.get(&row.symbol) {
            Some(h) if *h == row.row_hash => plan.unchanged.push(row.symbol.clone()),
            Some(h) => {
                plan.close.push((row.symbol.clone(), h.clone()));
                plan.open.push(row.clone());
            }
            None => plan.open.push(row.clone()),
        }
    }
    for (symbol, hash) in current {
        if scope.contains(symbol) && !seen.contains(symbol) {
            plan.close.push((symbol.clone(), hash.clone()));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(symbol: &str, tick: &str, status: &str) -> SymbolInfo {
        serde_json::from_value(serde_json::json!({
            "symbol": symbol, "status": status, "baseAsset": "BTC", "baseAssetPrecision": 8,
            "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"], "permissions": [], "permissionSets": [["SPOT"]],
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5}
            ]
        }))
        .unwrap()
    }

    fn row(symbol: &str, tick: &str, status: &str) -> SymbolRow {
        SymbolRow::from_info(&info(symbol, tick, status)).unwrap()
    }

    fn scope(s: &[&str]) -> BTreeSet<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn row_takes_every_filter_in_canonical_form() {
        let r = row("BTCUSDT", "0.01000000", "TRADING");
        assert_eq!(r.tick_size, "0.01");
        assert_eq!(r.min_qty, "0.00001");
        assert_eq!(r.max_notional.as_deref(), Some("9000000"));
        assert_eq!(r.permission_sets, r#"[["SPOT"]]"#);
        assert_eq!(r.row_hash.len(), 64);
    }

    #[test]
    fn hash_ignores_spelling_but_not_value() {
        assert_eq!(
            row("BTCUSDT", "0.01000000", "TRADING").row_hash,
            row("BTCUSDT", "0.01", "TRADING").row_hash
        );
        assert_ne!(
            row("BTCUSDT", "0.01", "TRADING").row_hash,
            row("BTCUSDT", "0.1", "TRADING").row_hash
        );
        assert_ne!(
            row("BTCUSDT", "0.01", "TRADING").row_hash,
            row("BTCUSDT", "0.01", "BREAK").row_hash
        );
    }

    #[test]
    fn first_run_opens_every_symbol() {
        let fetched = vec![row("A", "0.01", "TRADING"), row("B", "0.01", "TRADING")];
        let plan = diff(&BTreeMap::new(), &fetched, &scope(&["A", "B"]));
        assert!(plan.close.is_empty());
        assert_eq!(plan.open, fetched);
    }

    #[test]
    fn no_change_writes_nothing() {
        let fetched = vec![row("A", "0.01", "TRADING")];
        let current = BTreeMap::from([("A".to_owned(), fetched[0].row_hash.clone())]);
        let plan = diff(&current, &fetched, &scope(&["A"]));
        assert!(plan.is_empty());
        assert_eq!(plan.unchanged, vec!["A".to_owned()]);
    }

    #[test]
    fn a_change_closes_one_and_opens_one() {
        let old = row("A", "0.01", "TRADING");
        let new = row("A", "0.001", "TRADING");
        let current = BTreeMap::from([("A".to_owned(), old.row_hash.clone())]);
        let plan = diff(&current, std::slice::from_ref(&new), &scope(&["A"]));
        assert_eq!(plan.close, vec![("A".to_owned(), old.row_hash)]);
        assert_eq!(plan.open, vec![new]);
        assert_eq!(plan.expected_affected(), 2);
    }

    #[test]
    fn a_vanished_symbol_in_scope_is_closed_out_of_scope_is_left_alone() {
        let current = BTreeMap::from([
            ("A".to_owned(), "h-a".to_owned()),
            ("Z".to_owned(), "h-z".to_owned()),
        ]);
        let plan = diff(&current, &[], &scope(&["A"]));
        assert_eq!(plan.close, vec![("A".to_owned(), "h-a".to_owned())]);
        assert!(plan.open.is_empty());
    }

    proptest! {
        /// Applying a plan to the current map and diffing again gives an empty plan: a rerun
        /// writes nothing, whatever the starting state.
        #[test]
        fn a_second_diff_after_applying_is_empty(
            cur in proptest::collection::btree_map("[A-D]", "[a-c]", 0..4),
            ticks in proptest::collection::btree_map("[A-D]", prop_oneof![Just("0.01"), Just("0.1"), Just("1")], 0..4),
        ) {
            let scope = scope(&["A", "B", "C"]);
            let fetched: Vec<SymbolRow> =
                ticks.iter().map(|(s, t)| row(s, t, "TRADING")).collect();
            let plan = diff(&cur, &fetched, &scope);
            let mut applied = cur.clone();
            for (s, h) in &plan.close {
                prop_assert_eq!(applied.remove(s), Some(h.clone()));
            }
            for r in &plan.open {
                prop_assert!(applied.insert(r.symbol.clone(), r.row_hash.clone()).is_none());
            }
            prop_assert!(diff(&applied, &fetched, &scope).is_empty());
            // Out-of-scope symbols are untouched.
            prop_assert_eq!(applied.get("D"), cur.get("D"));
        }
    }
}
