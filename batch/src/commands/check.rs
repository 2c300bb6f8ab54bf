//! `batch check`: fails unless each symbol's day is complete and sane and `market.trades` holds
//! exactly its trade ids, and records the day's verdict in `market.coverage`.

use futures::{StreamExt, TryStreamExt, stream};
use gcp::bigquery::tables;

use super::{Batch, ensure_ended};
use crate::archive::coverage::Status;
use crate::day::Day;
use crate::klines::{self, Interval, Problem};
use crate::sql;
use crate::trades;

/// Result of `batch check`.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Everything wrong (empty = passed).
    pub problems: Vec<Problem>,
    /// What was checked or skipped, one line each.
    pub notes: Vec<String>,
}

impl Batch {
    async fn check_symbol(
        &self,
        symbol: &str,
        day: Day,
        interval: Interval,
        skip_trades: bool,
        now_us: i64,
    ) -> anyhow::Result<(Vec<Problem>, String)> {
        let stored = self.stored_klines(symbol, day).await?;
        let mut problems = klines::check_day(symbol, day, interval, &stored);
        if skip_trades {
            return Ok((
                problems,
                format!(
                    "{symbol} {day}: {} klines checked; market.trades check SKIPPED (--skip-trades)",
                    stored.len()
                ),
            ));
        }
        if interval != Interval::MINUTE || !problems.is_empty() {
            // Trade counts come from the klines; a broken day gives no trustworthy count.
            return Ok((
                problems,
                format!(
                    "{symbol} {day}: market.trades not checked (the klines must pass first, at 1m)"
                ),
            ));
        }
        let expected = self.expected_trades(symbol, day, &stored).await?;
        let view = self.table(&self.datasets.market, tables::TRADES_VIEW);
        let held = self
            .held(&sql::trades_day_summary(&view, symbol, day))
            .await?;
        let trade_problems = trades::check_day(symbol, day, expected, held);
        // The day's row of market.coverage, from what the table holds; ids missing at the day's
        // edges are invisible to it (nothing on either side), but not to Binance's count here.
        let mut rows = self.recompute_coverage(symbol, day, day, &[]).await?;
        if let Some(range) = expected.range() {
            for r in rows.iter_mut().filter(|r| r.day == day) {
                r.holes = trades::missing_ranges(range, held, &r.holes);
                if r.status == Status::Complete && !r.holes.is_empty() {
                    r.status = Status::Holes;
                }
            }
        }
        if !trade_problems.is_empty() {
            for r in rows.iter_mut().filter(|r| r.status == Status::Complete) {
                r.status = Status::Holes;
            }
        }
        let coverage = self.table(&self.datasets.market, tables::COVERAGE);
        self.merge_coverage(&coverage, &rows, now_us).await?;
        problems.extend(trade_problems);
        Ok((
            problems,
            format!(
                "{symbol} {day}: {} klines and {} trade ids checked",
                stored.len(),
                held.ids
            ),
        ))
    }

    /// `batch check`: every symbol's day; the caller fails the process if problems are found.
    pub async fn check(
        &self,
        day: Day,
        interval: Interval,
        skip_trades: bool,
        now_us: i64,
    ) -> anyhow::Result<CheckOutcome> {
        ensure_ended(day, now_us)?;
        let results: Vec<(Vec<Problem>, String)> = stream::iter(self.symbols.clone())
            .map(|s| async move {
                self.check_symbol(&s, day, interval, skip_trades, now_us)
                    .await
            })
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        let mut out = CheckOutcome::default();
        for (p, note) in results {
            out.problems.extend(p);
            out.notes.push(note);
        }
        Ok(out)
    }
}

pub(super) async fn run(
    batch: &Batch,
    date: Day,
    interval: Interval,
    skip_trades: bool,
    now_us: i64,
) -> anyhow::Result<()> {
    let out = batch.check(date, interval, skip_trades, now_us).await?;
    for n in &out.notes {
        println!("check: {n}");
    }
    if !out.problems.is_empty() {
        for p in &out.problems {
            eprintln!("check FAILED: {p}");
        }
        anyhow::bail!("check of {date} failed: {} problem(s)", out.problems.len());
    }
    println!("check {date}: passed");
    Ok(())
}
