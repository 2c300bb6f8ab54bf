//! The commands, wired to Binance and BigQuery: one module each, all methods of [`Batch`], the
//! clients and names they share. Decisions are in the pure modules ([`crate::klines`],
//! [`crate::symbols`], [`crate::trades`], [`crate::sql`]); these modules only fetch, call them
//! and write. The clock is passed in by the caller (`now_us`).
//!
//! Idempotence: klines replace a day through one MERGE that changes only what differs; the SCD
//! MERGE writes only what the diff says; reconcile and history append only ids still missing
//! (and the `market.trades` view keeps one row per id if two runs race); history skips files
//! whose days `market.coverage` says are complete.

mod backfill;
mod check;
mod history;
mod klines;
mod reconcile;
mod setup;
mod symbols;

use anyhow::{Context as _, anyhow, bail};
use binance::archive::{ArchiveClient, ArchiveConfig};
use binance::{RestClient, RestConfig};
use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::{self, Datasets};
use gcp::bigquery::write::StorageWriter;
use prost::Message as _;

pub use self::backfill::{BackfillRequest, Backfilled};
pub use self::check::CheckOutcome;
pub use self::history::{FileResult, HistoryRequest, HistoryRun};
pub use self::klines::KlinesLoaded;
pub use self::reconcile::Reconciled;
pub use self::symbols::SymbolsApplied;
use crate::cli::{Command, Global};
use crate::day::Day;
use crate::decimal::Numeric;
use crate::klines::KlineRow;
use crate::sql;
use crate::trades::{Expected, Held};

/// One BigQuery load (staging DDL + Storage Write append + MERGE + DROP) at a time per process,
/// while Binance fetches run `concurrency` wide. Why: bqemulator deadlocks when appends and DDL
/// of several loads interleave (seen: every request hangs from the first four concurrent loads);
/// one load takes ~0.3 s there, so a month of four symbols still loads in under a minute. In
/// BigQuery, loads of different tables could run together; this gate costs little next to the
/// REST side.
/// Rows per AppendRows request of trades: ~100 bytes a Trade, far under the 10 MB request limit
/// (BigQuery "Storage Write API quotas": AppendRows request size 10 MB).
const APPEND_CHUNK: usize = 10_000;

static LOAD_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Everything a command needs: clients and names.
#[derive(Clone)]
pub struct Batch {
    /// Binance REST (weight budget, retries, bans and geo-blocks surfaced).
    pub rest: RestClient,
    /// BigQuery SQL.
    pub warehouse: Warehouse,
    /// Project and endpoints (the Storage Write client is made from it when needed).
    pub target: GcpTarget,
    /// Dataset names.
    pub datasets: Datasets,
    /// The symbols of this run (validated, upper case).
    pub symbols: Vec<String>,
    /// Symbols or days worked on at once.
    pub concurrency: usize,
}

/// The REST settings of `command`: a backfill runs within its own, lower weight budget; every
/// other command within the IP's.
pub fn rest_config(global: &Global, command: &Command) -> RestConfig {
    match command {
        Command::Backfill {
            max_weight_per_minute,
            ..
        } => crate::backfill::rest_config(global.binance_rest_url.clone(), *max_weight_per_minute),
        _ => RestConfig {
            base_url: global.binance_rest_url.clone(),
            ..RestConfig::default()
        },
    }
}

impl Batch {
    /// Runs `command` and prints its summary; fails the process (`Err`) where the command says
    /// the day is not right.
    pub async fn run(&self, command: Command, now_us: i64) -> anyhow::Result<()> {
        match command {
            Command::Setup => setup::run(self).await,
            Command::Klines { date, interval } => klines::run(self, date, interval, now_us).await,
            Command::Symbols { as_of } => symbols::run(self, as_of.unwrap_or(now_us)).await,
            Command::Check {
                date,
                interval,
                skip_trades,
            } => check::run(self, date, interval, skip_trades, now_us).await,
            Command::Reconcile { date } => reconcile::run(self, date, now_us).await,
            Command::History {
                symbol,
                from,
                to,
                monthly,
                archive_url,
                max_rest_weight,
                task_index,
                task_count,
            } => {
                let shard = crate::history::Shard::from_env_values(
                    task_index.as_deref(),
                    task_count.as_deref(),
                )?;
                let archive = ArchiveClient::new(ArchiveConfig {
                    base_url: archive_url,
                    ..ArchiveConfig::default()
                })?;
                let request = HistoryRequest {
                    symbol,
                    from,
                    to,
                    monthly,
                    max_rest_weight,
                    shard,
                };
                let progress = crate::progress::for_stderr();
                history::run(self, &archive, &request, progress.as_ref(), now_us).await
            }
            Command::Backfill {
                from,
                to,
                trades,
                max_days,
                max_weight_per_minute: _,
                force,
            } => {
                let request = BackfillRequest {
                    first: from,
                    last: to,
                    interval: crate::klines::Interval::MINUTE,
                    trades,
                    force,
                    max_days,
                };
                backfill::run(self, &request, now_us).await
            }
        }
    }

    fn table(&self, dataset: &str, table: &str) -> String {
        sql::table(self.warehouse.project(), dataset, table)
    }

    fn klines_table(&self, symbol: &str) -> String {
        self.table(&self.datasets.dwh, &tables::klines_table(symbol))
    }

    /// A day of klines as stored.
    pub async fn stored_klines(&self, symbol: &str, day: Day) -> anyhow::Result<Vec<KlineRow>> {
        let rows = self
            .warehouse
            .query(&sql::klines_select(&self.klines_table(symbol), day))
            .await?;
        rows.iter()
            .map(|r| {
                let n = |c: &'static str| -> anyhow::Result<Numeric> {
                    Ok(Numeric::parse(c, &r.get::<String>(c)?)?)
                };
                Ok(KlineRow {
                    open_time_ms: r.get::<i64>("open_time")?,
                    close_time_ms: r.get::<i64>("close_time")?,
                    open: n("open")?,
                    high: n("high")?,
                    low: n("low")?,
                    close: n("close")?,
                    volume: n("volume")?,
                    quote_volume: n("quote_volume")?,
                    trade_count: r.get::<i64>("trade_count")?,
                    taker_buy_base_volume: n("taker_buy_base_volume")?,
                    taker_buy_quote_volume: n("taker_buy_quote_volume")?,
                })
            })
            .collect()
    }

    /// What Binance says `symbol` traded on `day`: first id (aggTrades) and count (klines).
    pub async fn expected_trades(
        &self,
        symbol: &str,
        day: Day,
        stored: &[KlineRow],
    ) -> anyhow::Result<Expected> {
        let count: i64 = stored.iter().map(|k| k.trade_count).sum();
        if count == 0 {
            return Ok(Expected { first: 0, count });
        }
        // The first aggregate at or after midnight names the day's first trade id (the client
        // answers in ms, like the day's bounds).
        let first = self
            .rest
            .agg_trades_from(symbol, day.start_ms(), 1)
            .await
            .with_context(|| format!("first trade id of {symbol} on {day} (aggTrades)"))?;
        match first.first() {
            Some(a) if a.time < day.end_ms() => Ok(Expected {
                first: a.first_trade_id,
                count,
            }),
            _ => Err(anyhow!(
                "{symbol} {day}: the klines count {count} trades but aggTrades has none that day"
            )),
        }
    }

    /// Appends `rows` to `market.trades_raw` in AppendRows requests of [`APPEND_CHUNK`] rows,
    /// one at a time behind [`LOAD_GATE`] (reconcile and history run beside klines loads).
    async fn append_trades(
        &self,
        writer: &StorageWriter,
        symbol: &str,
        rows: &[trade_proto::Trade],
    ) -> anyhow::Result<()> {
        let table = gcp::bigquery::table_path(
            self.warehouse.project(),
            &self.datasets.market,
            tables::TRADES_RAW,
        );
        let descriptor = trade_proto::message_descriptor("Trade")
            .ok_or_else(|| anyhow!("the Trade descriptor is missing from trade-proto"))?;
        for chunk in rows.chunks(APPEND_CHUNK) {
            let encoded: Vec<Vec<u8>> = chunk.iter().map(|t| t.encode_to_vec()).collect();
            let _gate = LOAD_GATE.acquire().await?;
            writer
                .append(&table, &descriptor, encoded)
                .await
                .with_context(|| {
                    format!("appending {} trades of {symbol} to {table}", chunk.len())
                })?;
        }
        Ok(())
    }

    /// The one row of a trades summary query ([`sql::trades_day_summary`],
    /// [`sql::trades_range_summary`]).
    async fn held(&self, stmt: &sql::Statement) -> anyhow::Result<Held> {
        let rows = self.warehouse.query_with(stmt).await?;
        let r = rows
            .first()
            .ok_or_else(|| anyhow!("no row from {}", stmt.sql()))?;
        Ok(Held {
            ids: r.get::<i64>("ids")?,
            lo: r.get::<i64>("lo")?,
            hi: r.get::<i64>("hi")?,
        })
    }
}

fn ensure_ended(day: Day, now_us: i64) -> anyhow::Result<()> {
    if day.end_ms() > now_us.div_euclid(1000) {
        bail!(
            "{day} has not ended yet (UTC); a full day can be loaded and checked once it is over"
        );
    }
    Ok(())
}
