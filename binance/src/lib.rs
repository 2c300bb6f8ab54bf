//! The exchange side of the pipeline: everything about Binance that needs no GCP.
//!
//! Module map:
//! - [`wire`]: Binance's payloads as serde types (websocket events, REST rows, error bodies).
//! - [`continuity`]: per-symbol trade-id tracker: emit, drop as duplicate, or emit and backfill
//!   a gap; remembers outstanding gaps as compact ranges, bounded.
//! - [`parse`]: pure, allocation-light conversion of a websocket frame into a [`Frame`]
//!   (a [`trade_proto::Trade`], a `serverShutdown`, a control reply), and of a REST trade row
//!   into a `Trade`. The clock and the connection's time unit are passed in.
//! - [`archive`]: downloads of the public trade archive (`data.binance.vision`): bounded
//!   retries, 404 as "missing", never a REST weight.
//! - [`rest`]: the REST discipline: weight budget and response classification (pure), and the
//!   async [`RestClient`] (budget-aware, bounded retries, bans and geo-blocks surfaced).
//!
//! The producer reads frames, calls [`parse::parse_frame`], feeds each trade id to the
//! continuity tracker and backfills what it reports over REST; the batch uses the REST client
//! and the wire types for klines, `exchangeInfo` and reconciliation.

pub mod archive;
pub mod continuity;
pub mod parse;
pub mod rest;
pub mod wire;

pub use continuity::{Continuity, IdRange, Verdict};
pub use parse::{Frame, FrameContext, ParseError, TimeUnit, parse_frame, parse_rest_trade};
pub use rest::{RestClient, RestConfig, RestError};
