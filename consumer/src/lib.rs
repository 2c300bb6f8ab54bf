//! The consumer: Pub/Sub trades (and gap records) into BigQuery, acked only when durable.
//!
//! Where is the code:
//! - [`config`]: flags and environment variables, validated at start-up.
//! - [`decode`]: pure decoding and validation of payloads; the poison reasons.
//! - [`batcher`]: pure, size-aware batching by count, bytes and age (AppendRows' 10 MB limit).
//! - [`dedup`]: pure window of recently landed keys (saves duplicate rows; not the guarantee).
//! - [`source`]: streaming pull behind the `MessageSource`/`Ack` traits.
//! - [`sink`]: BigQuery Storage Write (default stream) behind the `RowSink` trait; why default.
//! - [`dead_letter`]: poison messages to the dead-letter topic with the reason.
//! - [`pipeline`]: the run loop with named states; the delivery guarantee.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/metrics`.
//! - [`app`]: wiring the real clients from a [`config::Config`]; `--create-missing` set-up.
//! - [`replay`]: `consumer replay`, dead letters back to their topic once the cause is fixed.
//!
//! Guarantee: nothing is acked before BigQuery acknowledged its row; `market.trades_raw` is
//! at-least-once; the `market.trades` view (`QUALIFY ROW_NUMBER() OVER (PARTITION BY symbol,
//! trade_id ORDER BY receive_time) = 1`) has exactly one row per (symbol, trade_id), with any
//! number of replicas and crashes. `market.gaps` is at-least-once (readers use DISTINCT).

pub mod app;
pub mod batcher;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod dedup;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod sink;
pub mod source;
