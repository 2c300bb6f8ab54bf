//! The REST discipline shared by the producer (gap backfill) and the batch (klines, symbols,
//! reconciliation): never earn a 429, never hammer after one, never retry what cannot succeed.
//!
//! - [`budget`] (pure): the request-weight budget, fed by `X-MBX-USED-WEIGHT-1M`, saying how long
//!   to wait before a request of weight W.
//! - [`classify`](mod@classify) (pure): one function mapping a response (status, headers, body) to an
//!   [`Outcome`]: ok, retry after, banned, geo-blocked, transient, permanent.
//! - [`client`] (I/O): [`RestClient`], an async client on `reqwest` that waits on the budget before
//!   each request, retries transient failures and 429s with capped exponential backoff and full
//!   jitter (`backon`), and surfaces bans, geo-blocks and permanent errors to the caller.

pub mod budget;
pub mod classify;
pub mod client;

pub use budget::{WeightBudget, WindowUse, weights};
pub use classify::{Outcome, classify};
pub use client::{BanPolicy, RestClient, RestConfig, RestError};
