//! `batch backfill`: klines (and with `trades`, the missing trade ids) for a bounded range of
//! days, resumably, within a REST weight budget of its own.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use binance::IdRange;
use binance::rest::WindowUse;
use futures::{StreamExt, TryStreamExt, stream};
use gcp::bigquery::write::StorageWriter;

use super::{Batch, ensure_ended};
use crate::backfill::{self, WeightLog};
use crate::day::Day;
use crate::klines::Interval;
use crate::progress::Progress;
use crate::sql;

/// What `batch backfill` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillRequest {
    /// First UTC day.
    pub first: Day,
    /// Last UTC day (included); it must have ended.
    pub last: Day,
    /// Kline interval (the warehouse holds 1m).
    pub interval: Interval,
    /// Also fetch each day's trade ids missing from `market.trades` (as `reconcile` does).
    pub trades: bool,
    /// Reload klines of days that are already complete.
    pub force: bool,
    /// Refuse a range of more days than this ([`crate::backfill::check_range`]).
    pub max_days: u32,
}

/// Result of `batch backfill`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backfilled {
    /// (symbol, day) of klines loaded.
    pub loaded: usize,
    /// (symbol, day) of klines already complete and skipped.
    pub skipped: usize,
    /// Trade ids that were missing from `market.trades` (with `trades`).
    pub trades_missing: u64,
    /// Trade ids fetched and appended (with `trades`).
    pub trades_filled: u64,
    /// Trade ids Binance did not return, per symbol and day.
    pub trades_unfilled: Vec<(String, Day, IdRange)>,
    /// The REST weight of every minute the backfill ran (the last may be partial).
    pub weight: Vec<WindowUse>,
    /// The weight budget per minute it ran with.
    pub budget: u32,
}

impl Batch {
    /// `batch backfill`: klines (and with `trades`, the missing trade ids) for every day of
    /// `first..=last`, `concurrency` (symbol, day) at a time. Refuses more than `max_days` days.
    /// Resumable: complete kline days are skipped unless `force`, and only trade ids still missing
    /// are fetched. REST goes through this batch's client, so its weight budget (see
    /// [`crate::backfill::rest_config`]) bounds the whole backfill; the weight of each minute is
    /// reported through `progress` as the minute ends, and returned.
    pub async fn backfill(
        &self,
        req: &BackfillRequest,
        now_us: i64,
        progress: &dyn Progress,
    ) -> anyhow::Result<Backfilled> {
        let BackfillRequest {
            first,
            last,
            interval,
            trades,
            force,
            max_days,
        } = *req;
        backfill::check_range(first, last, max_days)?;
        ensure_ended(last, now_us)?;
        if trades && interval != Interval::MINUTE {
            bail!("--trades needs 1m klines (the day's trade count comes from them)");
        }
        let config = self.rest.config();
        let budget = config.weight_limit.saturating_sub(config.safety_margin);
        // (symbol, day, load its klines)
        let mut todo = Vec::new();
        let mut skipped = 0;
        for symbol in &self.symbols {
            let complete: BTreeSet<String> = if force {
                BTreeSet::new()
            } else {
                self.warehouse
                    .query(&sql::klines_day_counts(
                        &self.klines_table(symbol),
                        first,
                        last,
                    ))
                    .await?
                    .iter()
                    .filter(|r| r.get::<i64>("n").ok() == i64::try_from(interval.per_day()).ok())
                    .filter_map(|r| r.get::<String>("day").ok())
                    .collect()
            };
            for day in first.through(last) {
                let load = !complete.contains(&day.to_string());
                if !load {
                    skipped += 1;
                }
                if load || trades {
                    todo.push((symbol.clone(), day, load));
                }
            }
        }
        let writer = if trades {
            Some(StorageWriter::connect(&self.target).await?)
        } else {
            None
        };
        progress.start(todo.len() as u64, if trades { 0 } else { skipped as u64 });
        let writer = writer.as_ref();
        let work = stream::iter(todo)
            .map(|(symbol, day, load)| async move {
                let mut what = format!("{symbol} {day}");
                let mut loaded = 0usize;
                if load {
                    let done = self.load_klines(&symbol, day, interval, now_us).await?;
                    what.push_str(&format!(" {} klines", done.rows));
                    loaded = 1;
                }
                let mut filled = None;
                if let Some(writer) = writer {
                    let r = self.reconcile_symbol(writer, &symbol, day).await?;
                    what.push_str(&format!(
                        ", {} of {} missing trades filled",
                        r.filled, r.missing
                    ));
                    filled = Some(r);
                }
                progress.step(&what);
                anyhow::Ok((day, loaded, filled))
            })
            .buffer_unordered(self.concurrency)
            .try_fold(
                Backfilled::default(),
                |mut acc, (day, loaded, filled)| async move {
                    acc.loaded += loaded;
                    if let Some(r) = filled {
                        acc.trades_missing += r.missing;
                        acc.trades_filled += r.filled;
                        acc.trades_unfilled
                            .extend(r.unfilled.into_iter().map(|u| (r.symbol.clone(), day, u)));
                    }
                    anyhow::Ok(acc)
                },
            );
        // The weight of each minute, printed as it ends (sampled far more often than a minute,
        // so no window is missed: the client keeps the last closed one).
        let mut log = WeightLog::since(self.rest.weight_windows().1);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tick.tick() => {
                    for w in log.observe(self.rest.weight_windows(), wall_ms()) {
                        progress.weight(&backfill::weight_line(&w, budget));
                    }
                }
            }
        };
        for w in log.observe(self.rest.weight_windows(), wall_ms()) {
            progress.weight(&backfill::weight_line(&w, budget));
        }
        for w in log.unreported() {
            progress.weight(&format!("{} (so far)", backfill::weight_line(&w, budget)));
        }
        let mut out = result?;
        progress.finish();
        out.skipped = skipped;
        out.weight = log.minutes();
        out.budget = budget;
        Ok(out)
    }
}

/// The wall clock in Unix ms, for the weight windows (the REST client counts on the same clock).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) async fn run(
    batch: &Batch,
    request: &BackfillRequest,
    now_us: i64,
) -> anyhow::Result<()> {
    let progress = crate::progress::for_stderr();
    let started = std::time::Instant::now();
    let (from, to, trades) = (request.first, request.last, request.trades);
    let b = batch
        .backfill(request, now_us, progress.as_ref())
        .await
        .context("backfill (rerun the same command to resume)")?;
    let w = backfill::summarize(&b.weight);
    println!(
        "backfill {from}..={to}: {} symbol-days of klines loaded, {} already complete, in {:.1} s",
        b.loaded,
        b.skipped,
        started.elapsed().as_secs_f64()
    );
    if trades {
        let unfilled: u64 = b.trades_unfilled.iter().map(|(_, _, r)| r.len()).sum();
        println!(
            "backfill trades: {} ids missing, {} filled, {unfilled} not available from Binance",
            b.trades_missing, b.trades_filled
        );
    }
    println!(
        "backfill weight: at most {} of {} per minute over {} minute(s), {} in total \
         (Binance's X-MBX-USED-WEIGHT-1M up to {})",
        w.max_sent, b.budget, w.minutes, w.total_sent, w.max_header
    );
    if !b.trades_unfilled.is_empty() {
        bail!(
            "backfill: trade ids Binance did not return: {:?}",
            b.trades_unfilled
        );
    }
    Ok(())
}
