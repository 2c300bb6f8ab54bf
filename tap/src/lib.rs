//! `tap`: look at the trade topic the way any outside subscriber does.
//!
//! The binary (`src/main.rs`) only parses flags, wires Ctrl-C/SIGTERM to a cancellation token and
//! calls [`run::run`]. The pieces, each testable without a network:
//!
//! - [`cli`]: the flags (each with its environment fallback) and the subscription filter they
//!   build.
//! - [`inspect`]: one received message → what to do with it (print, report as invalid, drop as a
//!   duplicate, skip as another symbol). Pure.
//! - [`dedup`]: the documented de-duplication rule of `docs/trade-topic.md`: a trade is
//!   identified by `(symbol, trade_id)`; print each pair once. Bounded memory.
//! - [`render`]: JSON lines (the proto's field names, exact decimal strings, times in
//!   microseconds) or a compact table.
//! - [`run`]: the subscription's life cycle: create (or reuse) with a filter, optionally seek to
//!   now, stream, ack, and delete what it created on every exit path.

pub mod cli;
pub mod dedup;
pub mod inspect;
pub mod render;
pub mod run;

pub use cli::{Args, Format};
pub use run::{RunError, Summary, run};
