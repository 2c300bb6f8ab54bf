//! The producer: Binance trade streams to Pub/Sub, with no trade lost (issue 4).
//!
//! Module map. Pure logic (no I/O, unit-tested with paused tokio time):
//! - [`reconnect`]: backoff with full jitter, and the 300-attempts-per-5-minutes budget.
//! - [`watchdog`]: when a connection stopped delivering (socket stall, silent symbol).
//! - [`rotation`]: make-before-break, when is the new connection caught up.
//! - [`supervisor`]: which connections exist (start, replace, rotate), as commands.
//! - [`merger`]: continuity per symbol over every source, gap bookkeeping to backfill or `Gap`.
//! - [`resume`]: where a run starts per symbol, and the resume point it leaves (state file).
//! - [`decode`]: the `producer decode` filter.
//! - [`config`]: the command line (clap, env fallbacks).
//! - [`settings`]: the command line validated once into [`Settings`].
//!
//! I/O tasks, small and connected by bounded channels:
//! - [`connection`]: one websocket (connect, read, parse, report).
//! - [`backfill`]: REST `historicalTrades` for missing ids, via the `binance` crate's client.
//! - [`publisher`]: queue to Pub/Sub with retries and ordering-key resumption.
//! - [`metrics`]: Prometheus `/metrics`, `/healthz`.
//! - `state`: the state file around a run (read, start points, periodic and last writes).
//! - `hub`: the one loop that runs the pure parts, behind a `Connector` (fakes in its tests).
//! - [`app`]: wiring the tasks together; start, run, and the report at shutdown.

pub mod app;
pub mod backfill;
pub mod config;
pub mod connection;
pub mod decode;
mod hub;
pub mod merger;
pub mod metrics;
pub mod publisher;
pub mod reconnect;
pub mod resume;
pub mod rotation;
pub mod settings;
mod state;
pub mod supervisor;
pub mod watchdog;

pub use app::{RunReport, Running, run, start};
pub use settings::Settings;
