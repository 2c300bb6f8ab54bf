//! Binance's public trade archive (`data.binance.vision`), the pure core of `batch history`:
//! which files to fetch, how to trust them, how to read them into contract trades, and what the
//! result proves. No network and no BigQuery here; facts and their sources are in
//! `docs/archive.md`.
//!
//! Module map, in the order a file goes through them:
//! - [`path`]: file names and URL paths for (symbol, day | month), parsed back; the checksum
//!   file's path; the files covering a range of days (monthly for whole settled months).
//! - [`checksum`]: the `.zip.CHECKSUM` body, and verifying a zip's SHA-256 against it.
//! - [`unzip`]: the one CSV entry of a zip, from bytes.
//! - [`row`]: one CSV line into a [`trade_proto::Trade`] with `source = archive`: exact
//!   decimals, the time unit of the file's date, µs in the contract.
//! - [`continuity`]: ids consecutive inside each file, across neighbours and up to the live
//!   table; every break a hole with the gap ledger's reason.
//! - [`coverage`]: the per-symbol, per-day completeness rows of `market.coverage`.

pub mod checksum;
pub mod continuity;
pub mod coverage;
pub mod path;
pub mod row;
pub mod unzip;

pub use path::{ArchiveFile, Month, Period};
