//! `binance-sim`: a faithful local Binance for tests and local runs.
//!
//! One port serves Binance's spot WebSocket trade streams, the REST market-data endpoints the
//! project uses, and an admin API for fault injection and ground truth. The trade tape is a pure,
//! deterministic function of (seed, symbol, time), so streams, REST history and ground truth
//! always agree, and any past day can be materialised.
//!
//! ```no_run
//! # async fn demo() -> Result<(), binance_sim::SimError> {
//! use binance_sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig::default(), "127.0.0.1:0").await?;
//! let url = format!("{}/stream?streams=btcusdt@trade/aaveusdt@trade", sim.ws_base_url());
//! // ... connect, then compare with sim.ground_truth() ...
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Module map
//! Pure (no I/O, unit-tested):
//! - [`rng`]: keyed SplitMix64 and cheap distributions.
//! - [`decimal`]: 1e-8 fixed point, Binance's 8-decimal formatting.
//! - [`tape`]: the deterministic trade tape (ids, prices, sizes, times, aggregate trades);
//!   its [`Trade`] type lives in the leaf module `trade`.
//! - [`kline`]: intervals, bucket alignment, aggregation.
//! - [`frames`]: byte-exact stream payloads.
//! - [`control`]: `SUBSCRIBE`/`UNSUBSCRIBE`/... parsing and replies.
//! - [`limits`]: message rate, keep-alive, connection attempts, REST weight.
//! - [`faults`]: fault settings and per-frame decisions.
//! - [`truth`]: ground-truth bookkeeping (missed ids as a `trade_proto::ids::IdSet`).
//! - `rest`: REST bodies from the tape.
//! - [`archive`]: Binance's trade archive (`data.binance.vision` daily/monthly zips, their
//!   `.CHECKSUM`s, the ms/µs switch at 2025-01-01) built byte-deterministically from the tape.
//!
//! I/O: `clock` (the simulator clock, the one wall-clock read), `state` (what every task shares,
//! fault and symbol changes), `pump` (releases tape trades as the clock passes them, random drops),
//! `http` (router, admin API, archive routes), `ws` (connection tasks), `server` (start-up, [`SimHandle`]).
//!
//! Dependency order (a module uses only modules before it; no cycles): `rng`, `decimal`, `trade`,
//! `control`, `limits`, `clock` → `faults`, `kline`, `frames`, `truth` → `config` →
//! `tape` → `archive` → `state` → `pump`, `rest`, `ws` → `http` → `server`.

pub mod archive;
mod clock;
pub mod config;
pub mod control;
pub mod decimal;
pub mod faults;
pub mod frames;
mod http;
pub mod kline;
pub mod limits;
mod pump;
mod rest;
pub mod rng;
mod server;
mod state;
pub mod tape;
mod trade;
pub mod truth;
mod ws;

pub use clock::SimClock;
pub use config::{ConfigError, SimConfig, SymbolSpec, parse_rates};
pub use faults::{
    ArchiveFault, ArchiveFaultKind, FaultRequest, FaultSettings, Http5xxBurst, InjectTrade,
    StallRequest,
};
pub use server::{Sim, SimHandle};
pub use state::{SimError, SymbolUpdate};
pub use tape::{Tape, Trade};
pub use truth::{ConnSymbolTruth, ConnectionTruth, GroundTruth, MissReason, SymbolTruth};
pub use ws::{CONNECTION_ID_HEADER, GEO_BLOCK_BODY};
