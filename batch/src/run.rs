//! The commands, wired to Binance and BigQuery. Decisions are in the pure modules
//! ([`crate::klines`], [`crate::symbols`], [`crate::trades`], [`crate::sql`]); this module only
//! fetches, calls them and writes. The clock is passed in by the caller (`now_us`).
//!
//! Idempotence: klines replace a day through one MERGE that changes only what differs; the SCD
//! MERGE writes only what the diff says; reconcile appends only ids still missing (and the
//! `market.trades` view keeps one row per id if two runs race).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, anyhow, bail};
use binance::rest::WindowUse;
use binance::wire::Kline;
use binance::{IdRange, RestClient, TimeUnit};
use futures::{StreamExt, TryStreamExt, stream};
use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::{self, Datasets};
use gcp::bigquery::write::StorageWriter;
use prost::Message as _;
use trade_proto::Source;

use crate::backfill::{self, WeightLog};
use crate::day::Day;
use crate::decimal::Numeric;
use crate::klines::{self, Interval, KlineRow, PAGE_LIMIT, Page, Problem};
use crate::progress::Progress;
use crate::sql;
use crate::symbols::{self, SymbolRow};
use crate::trades::{self, Expected, Held};

/// One BigQuery load (staging DDL + Storage Write append + MERGE + DROP) at a time per process,
/// while Binance fetches run `concurrency` wide. Why: bqemulator deadlocks when appends and DDL
/// of several loads interleave (seen: every request hangs from the first four concurrent loads);
/// one load takes ~0.3 s there, so a month of four symbols still loads in under a minute. In
/// BigQuery, loads of different tables could run together; this gate costs little next to the
/// REST side.
static LOAD_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Trades per `historicalTrades` walk before appending (bounds memory: ~100 bytes a trade).
const FETCH_CHUNK: i64 = 50_000;
/// Rows per AppendRows request: ~100 bytes a Trade, far under the 10 MB request limit
/// (BigQuery "Storage Write API quotas": AppendRows request size 10 MB).
const APPEND_CHUNK: usize = 10_000;

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

/// Result of `batch check`.
#[derive(Debug, Clone, Default)]
pub struct CheckOutcome {
    /// Everything wrong (empty = passed).
    pub problems: Vec<Problem>,
    /// What was checked or skipped, one line each.
    pub notes: Vec<String>,
}

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

fn ensure_ended(day: Day, now_us: i64) -> anyhow::Result<()> {
    if day.end_ms() > now_us.div_euclid(1000) {
        bail!(
            "{day} has not ended yet (UTC); a full day can be loaded and checked once it is over"
        );
    }
    Ok(())
}

impl Batch {
    fn table(&self, dataset: &str, table: &str) -> String {
        sql::table(self.warehouse.project(), dataset, table)
    }

    fn klines_table(&self, symbol: &str) -> String {
        self.table(&self.datasets.dwh, &tables::klines_table(symbol))
    }

    /// `batch setup`: datasets and tables, from Terraform's schema files. Returns the number of
    /// statements run.
    pub async fn setup(&self) -> anyhow::Result<usize> {
        let statements =
            tables::setup_statements(self.warehouse.project(), &self.datasets, &self.symbols)?;
        for s in &statements {
            self.warehouse.execute(s).await?;
        }
        Ok(statements.len())
    }

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
            .query(&sql::scd_current(&history, &self.symbols))
            .await?
            .iter()
            .map(|r| Ok((r.get::<String>("symbol")?, r.get::<String>("row_hash")?)))
            .collect::<anyhow::Result<_>>()?;
        let plan = symbols::diff(&current, &fetched, &scope);
        if let Some(statement) = sql::scd_merge(&history, &plan, as_of_us) {
            tracing::debug!(%statement, "SCD MERGE");
            let affected = self.warehouse.execute(&statement).await?.unwrap_or(0);
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
            .execute(&sql::symbols_current_merge(
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

    async fn held(&self, sql: &str) -> anyhow::Result<Held> {
        let rows = self.warehouse.query(sql).await?;
        let r = rows.first().ok_or_else(|| anyhow!("no row from {sql}"))?;
        Ok(Held {
            ids: r.get::<i64>("ids")?,
            lo: r.get::<i64>("lo")?,
            hi: r.get::<i64>("hi")?,
        })
    }

    async fn check_symbol(
        &self,
        symbol: &str,
        day: Day,
        interval: Interval,
        skip_trades: bool,
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
        let rows = self
            .warehouse
            .query(&sql::trades_day_summary(&view, symbol, day))
            .await?;
        let r = rows.first().ok_or_else(|| anyhow!("no summary row"))?;
        let held = Held {
            ids: r.get::<i64>("ids")?,
            lo: r.get::<i64>("lo")?,
            hi: r.get::<i64>("hi")?,
        };
        problems.extend(trades::check_day(symbol, day, expected, held));
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
            .map(|s| async move { self.check_symbol(&s, day, interval, skip_trades).await })
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

    async fn reconcile_symbol(
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
                .query(&sql::trade_id_holes(&view, symbol, range))
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
        let table = gcp::bigquery::table_path(
            self.warehouse.project(),
            &self.datasets.market,
            tables::TRADES_RAW,
        );
        let descriptor = trade_proto::message_descriptor("Trade")
            .ok_or_else(|| anyhow!("the Trade descriptor is missing from trade-proto"))?;
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
            // What Binance did not return, as ranges.
            let mut next = part.from;
            for t in &got {
                if t.trade_id > next {
                    unfilled.push(IdRange::new(next, t.trade_id - 1));
                }
                next = t.trade_id + 1;
            }
            if next <= part.to {
                unfilled.push(IdRange::new(next, part.to));
            }
            for chunk in got.chunks(APPEND_CHUNK) {
                let rows: Vec<Vec<u8>> = chunk.iter().map(|t| t.encode_to_vec()).collect();
                // A backfill reconciles several days at once, beside klines loads.
                let _gate = LOAD_GATE.acquire().await?;
                writer
                    .append(&table, &descriptor, rows)
                    .await
                    .with_context(|| {
                        format!("appending {} trades of {symbol} to {table}", chunk.len())
                    })?;
            }
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
