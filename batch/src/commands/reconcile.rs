//! `batch reconcile`: fetches the trade ids of a day missing from `market.trades`
//! (historicalTrades) and appends them to `market.trades_raw` with `source = batch`.

use anyhow::{Context as _, bail};
use binance::{IdRange, TimeUnit};
use gcp::bigquery::tables;
use gcp::bigquery::write::StorageWriter;
use trade_proto::Source;

use super::{Batch, ensure_ended};
use crate::day::Day;
use crate::klines::{self, Interval};
use crate::sql;
use crate::trades;

/// Trades per `historicalTrades` walk before appending (bounds memory: ~100 bytes a trade).
const FETCH_CHUNK: i64 = 50_000;

/// Result of `batch reconcile` for one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Symbol.
    pub symbol: String,
    /// Ids that were missing.
    pub missing: u64,
    /// Ids fetched and appended.
    pub filled: u64,
    /// Ranges Binance did not return.
    pub unfilled: Vec<IdRange>,
}

impl Batch {
    pub(super) async fn reconcile_symbol(
        &self,
        writer: &StorageWriter,
        symbol: &str,
        day: Day,
    ) -> anyhow::Result<Reconciled> {
        let stored = self.stored_klines(symbol, day).await?;
        let problems = klines::check_day(symbol, day, Interval::MINUTE, &stored);
        if !problems.is_empty() {
            bail!(
                "{symbol} {day}: the day's klines are not complete, so the trade count is unknown; \
                 run `batch klines --date {day}` first ({})",
                problems[0]
            );
        }
        let expected = self.expected_trades(symbol, day, &stored).await?;
        let Some(range) = expected.range() else {
            return Ok(Reconciled {
                symbol: symbol.to_owned(),
                missing: 0,
                filled: 0,
                unfilled: vec![],
            });
        };
        let view = self.table(&self.datasets.market, tables::TRADES_VIEW);
        let held = self
            .held(&sql::trades_range_summary(&view, symbol, range))
            .await?;
        let holes: Vec<IdRange> = if held.ids == 0 {
            vec![]
        } else {
            self.warehouse
                .query_with(&sql::trade_id_holes(&view, symbol, range))
                .await?
                .iter()
                .map(|r| {
                    Ok(IdRange::new(
                        r.get::<i64>("from_id")?,
                        r.get::<i64>("to_id")?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?
        };
        let missing = trades::missing_ranges(range, held, &holes);
        let total: u64 = missing.iter().map(|r| r.len()).sum();
        let mut filled = 0u64;
        let mut unfilled = Vec::new();
        // µs like the producer's rows: the same trade must carry the same trade_time whichever
        // path landed it (the same weight budget: one client, another time unit).
        let rest = self.rest.with_time_unit(TimeUnit::Microsecond);
        for part in trades::split(&missing, FETCH_CHUNK) {
            let got = rest
                .fetch_trade_range(symbol, part, Source::Batch)
                .await
                .with_context(|| {
                    format!(
                        "historicalTrades of {symbol} ids {}..={}",
                        part.from, part.to
                    )
                })?;
            unfilled.extend(crate::history::not_returned(part, &got));
            self.append_trades(writer, symbol, &got).await?;
            filled += got.len() as u64;
        }
        tracing::info!(symbol, day = %day, missing = total, filled, unfilled = ?unfilled, "reconciled");
        Ok(Reconciled {
            symbol: symbol.to_owned(),
            missing: total,
            filled,
            unfilled,
        })
    }

    /// `batch reconcile`: fills the day's missing trade ids of every symbol.
    pub async fn reconcile(&self, day: Day, now_us: i64) -> anyhow::Result<Vec<Reconciled>> {
        ensure_ended(day, now_us)?;
        let writer = StorageWriter::connect(&self.target).await?;
        let mut out = Vec::new();
        for s in &self.symbols {
            out.push(self.reconcile_symbol(&writer, s, day).await?);
        }
        Ok(out)
    }
}

pub(super) async fn run(batch: &Batch, date: Day, now_us: i64) -> anyhow::Result<()> {
    let mut unfilled = 0u64;
    for r in batch.reconcile(date, now_us).await? {
        let u: u64 = r.unfilled.iter().map(|x| x.len()).sum();
        unfilled += u;
        println!(
            "reconcile {} {date}: {} ids missing, {} filled, {} not available from Binance {:?}",
            r.symbol, r.missing, r.filled, u, r.unfilled
        );
    }
    if unfilled > 0 {
        bail!("reconcile {date}: {unfilled} trade ids could not be filled");
    }
    Ok(())
}
