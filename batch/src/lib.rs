//! The daily batch of the binance-gcp-pipeline, as a library; `src/main.rs` only parses the
//! command line, sets up logging and calls [`commands::Batch`].
//!
//! Per symbol and UTC day, as the original assessment shaped it, done properly: (1) the symbol
//! dimension and its type-2 history, (2) the day's klines into `dwh.klines_<symbol>`, replacing
//! that day, (3) checks that fail loudly, plus reconciliation of `market.trades` and backfills.
//!
//! Module map. Pure (no I/O, unit-tested):
//! - [`day`]: UTC days (`YYYY-MM-DD`) and instants.
//! - [`decimal`]: exact NUMERIC values from decimal strings.
//! - [`klines`]: intervals, validated rows, paging, the day's checks.
//! - [`symbols`]: exchangeInfo -> dimension rows, row hash, the SCD type-2 diff.
//! - [`trades`]: trade-id accounting for a day: check verdict and missing ranges.
//! - [`sql`]: every statement (MERGEs and queries), built from validated values.
//! - [`stage`]: klines as proto rows for the Storage Write API (staging table).
//! - [`cli`]: the command line and its validation.
//! - [`backfill`]: the bounds and the weight budget of `batch backfill`, its weight per minute.
//! - [`history`]: the decisions of `batch history`: task shards, the skip rule, rows to append,
//!   holes spent against a REST weight budget.
//! - [`archive`]: Binance's trade archive (data.binance.vision): paths, checksums, unzip, rows,
//!   id continuity across files, per-day coverage.
//!
//! I/O: [`commands`] (one module per command, sharing [`commands::Batch`]: REST through
//! `binance::RestClient`, one weight budget), [`progress`], [`metrics`] (`/healthz`, `/metrics`).

pub mod archive;
pub mod backfill;
pub mod cli;
pub mod commands;
pub mod day;
pub mod decimal;
pub mod history;
pub mod klines;
pub mod metrics;
pub mod progress;
pub mod sql;
pub mod stage;
pub mod symbols;
pub mod trades;

pub use commands::Batch;
pub use day::Day;
