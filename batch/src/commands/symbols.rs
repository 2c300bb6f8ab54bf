//! `batch symbols`: exchangeInfo into `dwh.symbols`, changes into `scd.symbols_history` (type 2).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};

use super::Batch;
use crate::sql;
use crate::symbols::{self, SymbolRow};

/// Result of `batch symbols`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymbolsApplied {
    /// Versions opened.
    pub opened: Vec<String>,
    /// Versions closed.
    pub closed: Vec<String>,
    /// Symbols without change.
    pub unchanged: Vec<String>,
}

impl Batch {
    /// `batch symbols`: exchangeInfo -> dwh.symbols and the SCD history, as of `as_of_us`.
    pub async fn symbols(&self, as_of_us: i64) -> anyhow::Result<SymbolsApplied> {
        // The whole exchangeInfo (weight 20 either way): asking for a symbol Binance no longer
        // lists answers -1121 for the whole request, and a vanished symbol must be closed.
        let info = self.rest.exchange_info(&[]).await.context("exchangeInfo")?;
        let scope: BTreeSet<String> = self.symbols.iter().cloned().collect();
        let fetched: Vec<SymbolRow> = info
            .symbols
            .iter()
            .filter(|s| scope.contains(&s.symbol))
            .map(SymbolRow::from_info)
            .collect::<Result<_, _>>()?;
        let history = self.table(&self.datasets.scd, "symbols_history");
        let current: BTreeMap<String, String> = self
            .warehouse
            .query_with(&sql::scd_current(&history, &self.symbols))
            .await?
            .iter()
            .map(|r| Ok((r.get::<String>("symbol")?, r.get::<String>("row_hash")?)))
            .collect::<anyhow::Result<_>>()?;
        let plan = symbols::diff(&current, &fetched, &scope);
        if let Some(statement) = sql::scd_merge(&history, &plan, as_of_us) {
            tracing::debug!(statement = statement.sql(), "SCD MERGE");
            let affected = self.warehouse.execute_with(&statement).await?.unwrap_or(0);
            if affected != plan.expected_affected() {
                bail!(
                    "scd.symbols_history: the MERGE changed {affected} rows, the plan {} (closes \
                     {:?}, opens {}); another run changed the table meanwhile, or --as-of is \
                     before the current versions' valid_from. Rerun `batch symbols`",
                    plan.expected_affected(),
                    plan.close,
                    plan.open.len()
                );
            }
        }
        let current_table = self.table(&self.datasets.dwh, "symbols");
        self.warehouse
            .execute_with(&sql::symbols_current_merge(
                &current_table,
                &fetched,
                &self.symbols,
                as_of_us,
            ))
            .await?;
        let missing: Vec<&String> = scope
            .iter()
            .filter(|s| !fetched.iter().any(|r| &r.symbol == *s))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(
                ?missing,
                "symbols not listed by exchangeInfo (closed in the history)"
            );
        }
        let applied = SymbolsApplied {
            opened: plan.open.iter().map(|r| r.symbol.clone()).collect(),
            closed: plan.close.iter().map(|(s, _)| s.clone()).collect(),
            unchanged: plan.unchanged,
        };
        tracing::info!(opened = ?applied.opened, closed = ?applied.closed, unchanged = ?applied.unchanged, "symbols applied");
        Ok(applied)
    }
}

pub(super) async fn run(batch: &Batch, as_of_us: i64) -> anyhow::Result<()> {
    let a = batch.symbols(as_of_us).await?;
    println!(
        "symbols: opened {:?}, closed {:?}, unchanged {:?}",
        a.opened, a.closed, a.unchanged
    );
    Ok(())
}
