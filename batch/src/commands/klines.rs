//! `batch klines`: a UTC day of klines from Binance into `dwh.klines_<symbol>`, replacing that
//! day (staged with the Storage Write API, merged in one statement).

use anyhow::{Context as _, bail};
use binance::wire::Kline;
use futures::{StreamExt, TryStreamExt, stream};
use gcp::bigquery::tables;
use gcp::bigquery::write::StorageWriter;

use super::{Batch, LOAD_GATE, ensure_ended};
use crate::day::Day;
use crate::klines::{self, Interval, KlineRow, PAGE_LIMIT, Page};
use crate::sql;

/// Result of loading one symbol's day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlinesLoaded {
    /// Symbol.
    pub symbol: String,
    /// Day.
    pub day: Day,
    /// Rows Binance returned.
    pub rows: usize,
    /// Rows the MERGE inserted, updated or deleted (0 on an identical rerun).
    pub changed: i64,
}

impl Batch {
    /// Every kline of `symbol` on `day`, paged.
    pub async fn fetch_klines(
        &self,
        symbol: &str,
        day: Day,
        interval: Interval,
    ) -> anyhow::Result<Vec<KlineRow>> {
        let mut out: Vec<Kline> = Vec::with_capacity(interval.per_day());
        let mut start = day.start_ms();
        loop {
            let page = self
                .rest
                .klines(
                    symbol,
                    interval.name(),
                    Some(start),
                    Some(day.end_ms() - 1),
                    PAGE_LIMIT,
                )
                .await
                .with_context(|| format!("klines of {symbol} for {day}"))?;
            let step = klines::next_page(&page, PAGE_LIMIT, interval, day.end_ms());
            out.extend(page);
            match step {
                Page::Next(next) => start = next,
                Page::Done => break,
            }
        }
        out.retain(|k| k.open_time >= day.start_ms() && k.open_time < day.end_ms());
        out.iter()
            .map(|k| {
                KlineRow::from_wire(k)
                    .with_context(|| format!("{symbol} {day}: kline at {}", k.open_time))
            })
            .collect()
    }

    /// Loads one symbol's day (replacing it).
    pub async fn load_klines(
        &self,
        symbol: &str,
        day: Day,
        interval: Interval,
        now_us: i64,
    ) -> anyhow::Result<KlinesLoaded> {
        let rows = self.fetch_klines(symbol, day, interval).await?;
        if rows.is_empty() {
            bail!(
                "{symbol} {day}: Binance returned no klines; nothing loaded (the day's stored rows are kept)"
            );
        }
        let changed = self
            .replace_day(symbol, day, &rows, now_us)
            .await
            .with_context(|| format!("loading klines of {symbol} for {day}"))?;
        tracing::info!(symbol, day = %day, rows = rows.len(), changed, "klines loaded");
        Ok(KlinesLoaded {
            symbol: symbol.to_owned(),
            day,
            rows: rows.len(),
            changed,
        })
    }

    /// Appends `rows` to a fresh staging table (Storage Write API), MERGEs them into the
    /// symbol's table replacing `day`, drops the staging table. Returns the rows changed.
    async fn replace_day(
        &self,
        symbol: &str,
        day: Day,
        rows: &[KlineRow],
        now_us: i64,
    ) -> anyhow::Result<i64> {
        let _gate = LOAD_GATE.acquire().await?;
        let project = self.warehouse.project().to_owned();
        let name = format!(
            "_stage_{}_{}_{}",
            tables::klines_table(symbol),
            day.to_string().replace('-', ""),
            now_us
        );
        let spec = gcp::bigquery::schema::TableSpec {
            dataset: self.datasets.dwh.clone(),
            table: name.clone(),
            fields: gcp::bigquery::schema::parse(tables::KLINES_SCHEMA)?,
            partition_by_day: None,
            cluster_by: vec![],
        };
        self.warehouse
            .execute(&gcp::bigquery::schema::create_table_ddl(&project, &spec)?)
            .await?;
        let stage = self.table(&self.datasets.dwh, &name);
        let result = async {
            let writer = StorageWriter::connect(&self.target).await?;
            writer
                .append(
                    &gcp::bigquery::table_path(&project, &self.datasets.dwh, &name),
                    &crate::stage::descriptor(),
                    crate::stage::encode(symbol, rows, now_us),
                )
                .await?;
            let changed = self
                .warehouse
                .execute(&sql::klines_merge_from(
                    &self.klines_table(symbol),
                    &stage,
                    day,
                ))
                .await?
                .unwrap_or(0);
            anyhow::Ok(changed)
        }
        .await;
        if let Err(e) = self
            .warehouse
            .execute(&format!("DROP TABLE IF EXISTS {stage}"))
            .await
        {
            tracing::warn!(error = %e, table = %stage, "could not drop the staging table");
        }
        result
    }

    /// `batch klines`: every symbol's day, `concurrency` symbols at a time.
    pub async fn klines(
        &self,
        day: Day,
        interval: Interval,
        now_us: i64,
    ) -> anyhow::Result<Vec<KlinesLoaded>> {
        ensure_ended(day, now_us)?;
        stream::iter(self.symbols.clone())
            .map(|s| async move { self.load_klines(&s, day, interval, now_us).await })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await
    }
}

pub(super) async fn run(
    batch: &Batch,
    date: Day,
    interval: Interval,
    now_us: i64,
) -> anyhow::Result<()> {
    for l in batch.klines(date, interval, now_us).await? {
        println!(
            "klines {} {}: {} rows from Binance, {} rows changed",
            l.symbol, l.day, l.rows, l.changed
        );
    }
    Ok(())
}
