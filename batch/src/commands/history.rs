//! `batch history`: loads a symbol's trades from Binance's public archive
//! (`data.binance.vision`) into `market.trades_raw` with `source = archive`, fills the holes the
//! archive leaves from REST (`historicalTrades`, `source = batch`) within a weight budget,
//! ledgers what stays missing in `market.gaps`, and records per-day completeness in
//! `market.coverage`.
//!
//! Per file, in plan order: skipped when `market.coverage` already says all its days are
//! complete (a rerun downloads nothing); else `.CHECKSUM` and `.zip` are downloaded and
//! verified (a mismatch or an unreadable zip is downloaded once more, then refused); rows are
//! parsed with the run's clock as receive time; only the ids `market.trades` lacks are
//! appended. Idempotent per file: appending twice is prevented by the held-ids check, and the
//! `market.trades` view keeps one row per id if two runs race.
//!
//! Sharded runs (Cloud Run job tasks, `CLOUD_RUN_TASK_COUNT` > 1) load their files only: the
//! seams between files are another task's business, so holes are judged (and filled) by a run
//! over the whole plan, which skips every complete file and so downloads only what failed.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use binance::archive::{ArchiveClient, Download};
use binance::{IdRange, TimeUnit};
use gcp::bigquery::tables;
use gcp::bigquery::write::StorageWriter;
use trade_proto::{Source, Trade};

use super::{Batch, ensure_ended};
use crate::archive::checksum::Checksum;
use crate::archive::continuity::{self, FileIds, Outcome};
use crate::archive::coverage::{CoverageBuilder, CoverageRow};
use crate::archive::row::{RowContext, parse_csv};
use crate::archive::{ArchiveFile, path, unzip};
use crate::day::Day;
use crate::history::{self, DayCoverage, Shard};
use crate::progress::Progress;
use crate::sql;
use crate::trades;

/// Ids per `historicalTrades` walk before appending (bounds memory, as reconcile).
const FETCH_CHUNK: i64 = 50_000;
/// Largest CSV taken out of one zip, in memory: a daily file of the busiest symbol is a few
/// hundred MB of CSV; a BTCUSDT monthly file (~7 GB) is beyond it and fails by name.
const MAX_CSV_BYTES: u64 = 4 << 30;
/// Coverage rows per MERGE (each row is one SELECT of the USING list).
const COVERAGE_CHUNK: usize = 400;
/// Days of trades read per coverage query.
const COVERAGE_DAYS: usize = 31;
/// Gap rows per MERGE.
const GAPS_CHUNK: usize = 400;

/// What to load.
#[derive(Debug, Clone)]
pub struct HistoryRequest {
    /// Upper-case symbol.
    pub symbol: String,
    /// First day; `None`: the day of the symbol's first trade (REST `historicalTrades` from id 0).
    pub from: Option<Day>,
    /// Last day; `None`: yesterday (UTC).
    pub to: Option<Day>,
    /// Whole settled months as monthly files.
    pub monthly: bool,
    /// Most REST weight spent filling holes.
    pub max_rest_weight: u64,
    /// This task's share of the plan.
    pub shard: Shard,
}

/// What one file became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileResult {
    /// The file.
    pub file: ArchiveFile,
    /// Its outcome (a skipped file counts as loaded, with the ids coverage holds).
    pub outcome: Outcome,
    /// Whether it was skipped (coverage complete).
    pub skipped: bool,
    /// Rows appended from it.
    pub appended: u64,
    /// Downloads made for it (checksum and zip count one each).
    pub downloads: u32,
}

/// The summary of `batch history` for one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRun {
    /// Symbol.
    pub symbol: String,
    /// First day loaded.
    pub from: Day,
    /// Last day loaded.
    pub to: Day,
    /// Files of the plan (all tasks).
    pub planned: usize,
    /// This task's files, in plan order.
    pub files: Vec<FileResult>,
    /// Rows appended from the archive.
    pub appended: u64,
    /// HTTP downloads made (0 on a rerun over complete days).
    pub downloads: u32,
    /// Ids fetched from REST and appended (`source = batch`).
    pub rest_filled: u64,
    /// REST weight the hole filling planned to spend.
    pub rest_weight: u64,
    /// Ranges written to `market.gaps`, with their reason.
    pub ledgered: Vec<(IdRange, &'static str)>,
    /// Failed files before the first loaded one: their ids cannot be bounded from the archive,
    /// so they are neither filled nor ledgered (their days show `missing` in coverage).
    pub unbounded: Vec<ArchiveFile>,
    /// Overlapping neighbours (a re-uploaded or wrong file), as ranges.
    pub overlaps: Vec<IdRange>,
    /// Days per coverage status after the run.
    pub coverage: BTreeMap<&'static str, usize>,
    /// Whether the seams were judged (only in an unsharded run).
    pub seams_checked: bool,
    /// Seconds spent appending archive rows (Storage Write), for rows/s.
    pub append_seconds: f64,
}

impl Batch {
    /// `batch history` for one symbol. `now_us` is the run's clock: the last day must have
    /// ended by it, and it is every archive row's `receive_time`.
    pub async fn history(
        &self,
        archive: &ArchiveClient,
        req: &HistoryRequest,
        progress: &dyn Progress,
        now_us: i64,
    ) -> anyhow::Result<HistoryRun> {
        let symbol = req.symbol.as_str();
        let to = req.to.unwrap_or_else(|| history::default_to(now_us));
        ensure_ended(to, now_us)?;
        let from = match req.from {
            Some(d) => d,
            None => self.first_trade_day(symbol).await?,
        };
        let today = Day::containing_ms(now_us.div_euclid(1000));
        let plan = path::plan(symbol, from, to, today, req.monthly)?;
        let coverage_table = self.table(&self.datasets.market, tables::COVERAGE);
        let known = self.coverage_of(&coverage_table, symbol, from, to).await?;
        let writer = StorageWriter::connect(&self.target).await?;

        let mine: Vec<&ArchiveFile> = plan
            .iter()
            .enumerate()
            .filter(|(i, _)| req.shard.owns(*i))
            .map(|(_, f)| f)
            .collect();
        let skippable: Vec<Option<FileIds>> =
            mine.iter().map(|f| history::skip_file(f, &known)).collect();
        let skipped = skippable.iter().filter(|s| s.is_some()).count();
        progress.start(mine.len() as u64, skipped as u64);
        let mut results = Vec::with_capacity(mine.len());
        let mut append_seconds = 0.0;
        for (file, skip) in mine.into_iter().zip(skippable) {
            let r = match skip {
                Some(ids) => FileResult {
                    file: file.clone(),
                    outcome: Outcome::Loaded(Some(ids)),
                    skipped: true,
                    appended: 0,
                    downloads: 0,
                },
                None => {
                    self.load_file(archive, &writer, file, now_us, &mut append_seconds)
                        .await?
                }
            };
            tracing::info!(symbol, file = %r.file, rows = r.appended, skipped = r.skipped, outcome = ?r.outcome, "archive file");
            progress.step(&format!("{} {} rows", r.file, r.appended));
            results.push(r);
        }
        progress.finish();

        let mut run = HistoryRun {
            symbol: symbol.to_owned(),
            from,
            to,
            planned: plan.len(),
            appended: results.iter().map(|r| r.appended).sum(),
            downloads: results.iter().map(|r| r.downloads).sum(),
            files: results,
            rest_filled: 0,
            rest_weight: 0,
            ledgered: Vec::new(),
            unbounded: Vec::new(),
            overlaps: Vec::new(),
            coverage: BTreeMap::new(),
            seams_checked: req.shard.is_whole(),
            append_seconds,
        };
        if run.seams_checked {
            self.close_holes(&writer, req, &mut run, now_us).await?;
        }
        let rows = self
            .recompute_coverage(symbol, from, to, &run.ledgered)
            .await?;
        for r in &rows {
            *run.coverage.entry(r.status.as_str()).or_default() += 1;
        }
        self.merge_coverage(&coverage_table, &rows, now_us).await?;
        tracing::info!(
            symbol,
            files = run.files.len(),
            rows = run.appended,
            downloads = run.downloads,
            rest_filled = run.rest_filled,
            ledgered = run.ledgered.len(),
            coverage = ?run.coverage,
            "history loaded"
        );
        Ok(run)
    }

    /// The day of `symbol`'s first trade: `historicalTrades` from id 0 (weight 25).
    async fn first_trade_day(&self, symbol: &str) -> anyhow::Result<Day> {
        let first = self
            .rest
            .historical_trades(symbol, Some(0), 1)
            .await
            .with_context(|| format!("first trade of {symbol} (historicalTrades fromId=0)"))?;
        let t = first
            .first()
            .ok_or_else(|| anyhow!("{symbol}: historicalTrades from id 0 returned nothing"))?;
        // The client asks in ms unless told otherwise.
        let ms = match self.rest.config().time_unit {
            TimeUnit::Microsecond => t.time.div_euclid(1000),
            _ => t.time,
        };
        Ok(Day::containing_ms(ms))
    }

    /// `market.coverage` rows of `symbol` for `from..=to`.
    async fn coverage_of(
        &self,
        table: &str,
        symbol: &str,
        from: Day,
        to: Day,
    ) -> anyhow::Result<BTreeMap<Day, DayCoverage>> {
        let rows = self
            .warehouse
            .query_with(&sql::coverage_select(table, symbol, from, to))
            .await?;
        let id = |v: i64| (v >= 0).then_some(v);
        rows.iter()
            .map(|r| {
                Ok((
                    Day::containing_ms(r.get::<i64>("day_ms")?),
                    DayCoverage {
                        status: r.get::<String>("status")?,
                        first_id: id(r.get::<i64>("first_id")?),
                        last_id: id(r.get::<i64>("last_id")?),
                        count: r.get::<i64>("trade_count")?,
                    },
                ))
            })
            .collect()
    }

    /// Downloads, verifies and appends one file (a failed verification is tried once more).
    async fn load_file(
        &self,
        archive: &ArchiveClient,
        writer: &StorageWriter,
        file: &ArchiveFile,
        now_us: i64,
        append_seconds: &mut f64,
    ) -> anyhow::Result<FileResult> {
        let mut result = FileResult {
            file: file.clone(),
            outcome: Outcome::Missing,
            skipped: false,
            appended: 0,
            downloads: 0,
        };
        let mut fetched = None;
        for attempt in 1..=2 {
            match self
                .fetch_file(archive, file, now_us, &mut result.downloads)
                .await?
            {
                Fetched::Missing => {
                    result.outcome = Outcome::Missing;
                    return Ok(result);
                }
                Fetched::Refused(outcome, why) => {
                    tracing::warn!(symbol = %file.symbol, file = %file, attempt, error = %why, "archive file refused");
                    result.outcome = outcome;
                }
                Fetched::Rows(rows, ids) => {
                    fetched = Some((rows, ids));
                    break;
                }
            }
        }
        let Some((rows, ids)) = fetched else {
            return Ok(result);
        };
        if let Some(ids) = &ids {
            let started = Instant::now();
            result.appended = self
                .append_missing(
                    writer,
                    &file.symbol,
                    IdRange::new(ids.first, ids.last),
                    file.period.window_us(),
                    rows,
                )
                .await?;
            *append_seconds += started.elapsed().as_secs_f64();
        }
        result.outcome = Outcome::Loaded(ids);
        Ok(result)
    }

    /// One download of a file and its checksum, verified and parsed.
    async fn fetch_file(
        &self,
        archive: &ArchiveClient,
        file: &ArchiveFile,
        now_us: i64,
        downloads: &mut u32,
    ) -> anyhow::Result<Fetched> {
        *downloads += 1;
        let sum = match archive.get(&file.checksum_path()).await? {
            Download::Missing => return Ok(Fetched::Missing),
            Download::Found(b) => b,
        };
        *downloads += 1;
        let zip = match archive.get(&file.url_path()).await? {
            Download::Missing => return Ok(Fetched::Missing),
            Download::Found(b) => b,
        };
        // A checksum file we cannot read cannot vouch for the zip: refused like a mismatch.
        let verified = std::str::from_utf8(&sum)
            .map_err(|e| e.to_string())
            .and_then(|body| Checksum::parse(body, &file.file_name()).map_err(|e| e.to_string()))
            .and_then(|c| c.verify(&zip).map_err(|e| e.to_string()));
        if let Err(why) = verified {
            return Ok(Fetched::Refused(Outcome::ChecksumMismatch, why));
        }
        let csv = match unzip::read_single_csv(
            &zip,
            &file.file_name(),
            &file.csv_name(),
            MAX_CSV_BYTES,
        ) {
            Ok(csv) => csv,
            Err(e) => return Ok(Fetched::Refused(Outcome::Unreadable, e.to_string())),
        };
        let rows = match parse_csv(&RowContext::for_file(file, now_us), &csv) {
            Ok(rows) => rows,
            Err(e) => return Ok(Fetched::Refused(Outcome::Unreadable, e.to_string())),
        };
        match FileIds::from_ids(rows.iter().map(|t| t.trade_id)) {
            Ok(ids) => Ok(Fetched::Rows(rows, ids)),
            Err(e) => Ok(Fetched::Refused(Outcome::Unreadable, e.to_string())),
        }
    }

    /// The ids of `range` that `market.trades` does not hold (as reconcile computes them),
    /// looking only at trades of `window` (Unix µs, end exclusive): through the trades_between
    /// body, so BigQuery reads those days' partitions, not the whole table (the view would: a
    /// full scan per file, ~3,000 of them for BTCUSDT's history).
    async fn missing_in(
        &self,
        symbol: &str,
        range: IdRange,
        window: (i64, i64),
    ) -> anyhow::Result<Vec<IdRange>> {
        let view = format!(
            "({})",
            tables::dedup_between(
                self.warehouse.project(),
                &self.datasets,
                &format!("TIMESTAMP_MICROS({})", window.0),
                &format!("TIMESTAMP_MICROS({})", window.1),
            )
        );
        let held = self
            .held(&sql::trades_range_summary(&view, symbol, range))
            .await?;
        if held.ids == 0 {
            return Ok(vec![range]);
        }
        if u64::try_from(held.ids).ok() == Some(range.len()) {
            return Ok(vec![]);
        }
        let holes: Vec<IdRange> = self
            .warehouse
            .query_with(&sql::trade_id_holes(&view, symbol, range))
            .await?
            .iter()
            .map(|r| {
                Ok(IdRange::new(
                    r.get::<i64>("from_id")?,
                    r.get::<i64>("to_id")?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(trades::missing_ranges(range, held, &holes))
    }

    /// Appends the rows of `rows` (one file's, over `range`, traded within `window`) that the
    /// store lacks.
    async fn append_missing(
        &self,
        writer: &StorageWriter,
        symbol: &str,
        range: IdRange,
        window: (i64, i64),
        rows: Vec<Trade>,
    ) -> anyhow::Result<u64> {
        let missing = self.missing_in(symbol, range, window).await?;
        let rows = history::rows_to_append(rows, &missing);
        self.append_trades(writer, symbol, &rows).await?;
        Ok(rows.len() as u64)
    }

    /// The seams of the run: holes filled from REST within the budget, the rest ledgered.
    async fn close_holes(
        &self,
        writer: &StorageWriter,
        req: &HistoryRequest,
        run: &mut HistoryRun,
        now_us: i64,
    ) -> anyhow::Result<()> {
        let symbol = req.symbol.as_str();
        let view = self.table(&self.datasets.market, tables::TRADES_VIEW);
        let live = self
            .warehouse
            .query_with(&sql::first_id_of_source(
                &view,
                symbol,
                Source::Stream.as_str(),
            ))
            .await?
            .first()
            .map(|r| r.get::<i64>("lo"))
            .transpose()?
            .filter(|&id| id >= 0);
        let outcomes: Vec<(ArchiveFile, Outcome)> = run
            .files
            .iter()
            .map(|r| (r.file.clone(), r.outcome.clone()))
            .collect();
        let seams = continuity::seams(&outcomes, live);
        run.unbounded = seams.unbounded.iter().map(|(f, _)| f.clone()).collect();
        run.overlaps = seams.overlaps.iter().map(|o| o.ids).collect();
        for f in &run.unbounded {
            tracing::warn!(symbol, file = %f, "failed before the first loaded file: its ids are unknown, not filled");
        }
        // Only what the store still lacks: a rerun over filled holes fetches nothing. A hole's
        // trades lie somewhere from the run's first day to now (before live: after its last day).
        let window = (run.from.start_ms() * 1000, now_us + 1);
        let mut holes = Vec::new();
        for (range, reason) in history::hole_ranges(&seams.holes) {
            for part in self.missing_in(symbol, range, window).await? {
                holes.push((part, reason));
            }
        }
        let plan = history::fill_plan(&holes, req.max_rest_weight);
        run.rest_weight = plan.weight;
        let mut ledger = plan.ledger.clone();
        let rest = self.rest.with_time_unit(TimeUnit::Microsecond);
        for (range, reason) in &plan.fetch {
            for part in trades::split(&[*range], FETCH_CHUNK) {
                let got = rest
                    .fetch_trade_range(symbol, part, Source::Batch)
                    .await
                    .with_context(|| {
                        format!(
                            "historicalTrades of {symbol} ids {}..={}",
                            part.from, part.to
                        )
                    })?;
                ledger.extend(
                    history::not_returned(part, &got)
                        .into_iter()
                        .map(|r| (r, *reason)),
                );
                self.append_trades(writer, symbol, &got).await?;
                run.rest_filled += got.len() as u64;
                tracing::info!(
                    symbol,
                    from_id = part.from,
                    to_id = part.to,
                    rows = got.len(),
                    reason,
                    "hole filled from REST"
                );
            }
        }
        let gaps = self.table(&self.datasets.market, tables::GAPS);
        for chunk in ledger.chunks(GAPS_CHUNK) {
            if let Some(stmt) = sql::gaps_insert(&gaps, symbol, chunk, now_us) {
                self.warehouse.execute_with(&stmt).await?;
            }
        }
        for (range, reason) in &ledger {
            tracing::warn!(
                symbol,
                from_id = range.from,
                to_id = range.to,
                reason,
                "ids ledgered in market.gaps"
            );
        }
        run.ledgered = ledger;
        Ok(())
    }

    /// Coverage of `from..=to` from what `market.trades` holds now, a month of days per query
    /// (bounds memory: the verdict of a day needs only that day's rows and the known holes).
    pub(super) async fn recompute_coverage(
        &self,
        symbol: &str,
        from: Day,
        to: Day,
        ledgered: &[(IdRange, &'static str)],
    ) -> anyhow::Result<Vec<CoverageRow>> {
        let known: Vec<IdRange> = ledgered.iter().map(|(r, _)| *r).collect();
        let mut out = Vec::new();
        let mut first = from;
        while first <= to {
            let mut last = first;
            for _ in 1..COVERAGE_DAYS {
                if last >= to {
                    break;
                }
                last = last.next();
            }
            let rows = self
                .warehouse
                .query_with(&sql::coverage_trades(
                    self.warehouse.project(),
                    &self.datasets,
                    symbol,
                    first,
                    last,
                ))
                .await?;
            let mut b = CoverageBuilder::new(symbol);
            for r in &rows {
                let t = r.get::<i64>("t")?;
                b.push(&Trade {
                    symbol: symbol.to_owned(),
                    trade_id: r.get::<i64>("trade_id")?,
                    trade_time: t,
                    event_time: t,
                    receive_time: t,
                    source: r.get::<String>("source")?,
                    ..Trade::default()
                })?;
            }
            out.extend(b.finish(first, last, &known));
            first = last.next();
        }
        Ok(out)
    }

    pub(super) async fn merge_coverage(
        &self,
        table: &str,
        rows: &[CoverageRow],
        now_us: i64,
    ) -> anyhow::Result<()> {
        for chunk in rows.chunks(COVERAGE_CHUNK) {
            if let Some(stmt) = sql::coverage_merge(table, chunk, now_us) {
                self.warehouse.execute_with(&stmt).await?;
            }
        }
        Ok(())
    }
}

/// One download's verdict.
enum Fetched {
    /// 404 (zip or checksum).
    Missing,
    /// Downloaded but not trusted or not readable, and why.
    Refused(Outcome, String),
    /// Verified rows (`None` ids: a file without rows).
    Rows(Vec<Trade>, Option<FileIds>),
}

/// Prints each symbol's summary; fails when ids stay missing.
pub(super) async fn run(
    batch: &Batch,
    archive: &ArchiveClient,
    req: &HistoryRequest,
    progress: &dyn Progress,
    now_us: i64,
) -> anyhow::Result<()> {
    let r = batch.history(archive, req, progress, now_us).await?;
    let ledgered: u64 = r.ledgered.iter().map(|(x, _)| x.len()).sum();
    let rate = if r.append_seconds > 0.0 {
        r.appended as f64 / r.append_seconds
    } else {
        0.0
    };
    println!(
        "history {} {}..={}: {} of {} files this task, {} skipped (complete), {} downloads, \
         {} archive rows appended ({rate:.0} rows/s), {} ids from REST (weight {}), {} ids \
         ledgered, coverage {:?}{}",
        r.symbol,
        r.from,
        r.to,
        r.files.len(),
        r.planned,
        r.files.iter().filter(|f| f.skipped).count(),
        r.downloads,
        r.appended,
        r.rest_filled,
        r.rest_weight,
        ledgered,
        r.coverage,
        if r.seams_checked {
            ""
        } else {
            " (sharded: seams left to an unsharded run)"
        }
    );
    if !r.unbounded.is_empty() {
        bail!(
            "history {}: {} file(s) before the first loaded one failed; their ids are unknown: {:?}",
            r.symbol,
            r.unbounded.len(),
            r.unbounded
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
    }
    if ledgered > 0 {
        bail!(
            "history {}: {ledgered} trade ids are missing (see market.gaps)",
            r.symbol
        );
    }
    Ok(())
}
