//! What a subscription carries: how its messages decode, their dedup key, and their table.

use std::collections::HashMap;
use std::hash::Hash;

use crate::decode::{self, GapKey, Poison, TradeKey};
use crate::sink::Table;

/// What a message becomes once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<K> {
    /// The dedup key.
    pub key: K,
    /// Trade time in µs since the epoch, for the exchange-to-BigQuery latency (trades only).
    pub event_time_micros: Option<i64>,
}

/// A kind of row: how its messages decode and which table it lands in.
pub trait RowKind: Send + Sync + 'static {
    /// The dedup key.
    type Key: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static;
    /// The destination.
    const TABLE: Table;
    /// Pure decoding and validation.
    fn decode(
        data: &[u8],
        attributes: &HashMap<String, String>,
    ) -> Result<Decoded<Self::Key>, Poison>;
}

/// Trades into `trades_raw`, keyed by (symbol, trade_id).
#[derive(Debug, Clone, Copy)]
pub struct Trades;

impl RowKind for Trades {
    type Key = TradeKey;
    const TABLE: Table = Table::Trades;
    fn decode(
        data: &[u8],
        attributes: &HashMap<String, String>,
    ) -> Result<Decoded<TradeKey>, Poison> {
        let t = decode::decode_trade(data, attributes)?;
        Ok(Decoded {
            event_time_micros: Some(t.trade_time),
            key: (t.symbol, t.trade_id),
        })
    }
}

/// Gap records into `gaps`, keyed by (symbol, from_id, to_id, reporter).
#[derive(Debug, Clone, Copy)]
pub struct Gaps;

impl RowKind for Gaps {
    type Key = GapKey;
    const TABLE: Table = Table::Gaps;
    fn decode(
        data: &[u8],
        _attributes: &HashMap<String, String>,
    ) -> Result<Decoded<GapKey>, Poison> {
        let g = decode::decode_gap(data)?;
        Ok(Decoded {
            key: (g.symbol, g.from_id, g.to_id, g.reporter),
            event_time_micros: None,
        })
    }
}
