//! The data contracts of the pipeline, generated from `proto/*.proto`.
//!
//! - [`Trade`]: one Binance trade; the payload of every message on the trade topic and, unchanged,
//!   one row of BigQuery `market.trades` (field names are column names).
//! - [`Gap`]: trade ids known to be undeliverable; lands in `market.gaps`.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for the Storage Write API's writer schema
//!   and for tests that hold Terraform's schemas against the proto.
//!
//! Decimal values stay strings end to end: no binary floating point ever touches a price.

use std::fmt;
use std::str::FromStr;

use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorSet};

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/binance_pipeline.v1.rs"));
}

pub mod rules;

pub use generated::{Gap, Trade};
pub use rules::is_plain_decimal;

/// The encoded `FileDescriptorSet` of `trade.proto` and `gap.proto`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The proto package, as Pub/Sub schemas and type URLs spell it.
pub const PACKAGE: &str = "binance_pipeline.v1";

/// The `.proto` source of the trade contract, byte for byte the file Terraform uploads.
pub const TRADE_PROTO_SOURCE: &str = include_str!("../proto/trade.proto");

/// The `.proto` source of the gap contract.
pub const GAP_PROTO_SOURCE: &str = include_str!("../proto/gap.proto");

/// Decodes [`FILE_DESCRIPTOR_SET`].
pub fn file_descriptor_set() -> FileDescriptorSet {
    // The bytes were produced by our own build script from the same prost version: a failure here
    // is a build bug, not a runtime condition.
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("embedded descriptor set is valid")
}

/// The descriptor of one top-level message (`"Trade"` or `"Gap"`), as the BigQuery Storage Write
/// API wants it in `ProtoSchema.proto_descriptor`. Self-contained: our messages have no imports or
/// nested types.
pub fn message_descriptor(name: &str) -> Option<DescriptorProto> {
    file_descriptor_set()
        .file
        .into_iter()
        .flat_map(|f| f.message_type)
        .find(|m| m.name() == name)
}

/// Where a trade entered the pipeline; the `source` field and the Pub/Sub `source` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Received on the websocket trade stream.
    Stream,
    /// Fetched over REST by the producer to fill a trade-id gap.
    Backfill,
    /// Fetched over REST by the daily batch reconciliation.
    Batch,
    /// Read from Binance's public trade archive (data.binance.vision) by `batch history`.
    Archive,
}

impl Source {
    /// Every source, for metrics label sets and validation messages.
    pub const ALL: [Source; 4] = [
        Source::Stream,
        Source::Backfill,
        Source::Batch,
        Source::Archive,
    ];

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Stream => "stream",
            Source::Backfill => "backfill",
            Source::Batch => "batch",
            Source::Archive => "archive",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `source` value that is not one of [`Source::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trade source {0:?} (expected stream, backfill, batch or archive)")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSource(s.to_owned()))
    }
}

impl Trade {
    /// The parsed `source` field.
    pub fn source_kind(&self) -> Result<Source, UnknownSource> {
        self.source.parse()
    }
}

/// Why a decoded [`Trade`] breaks the contract. prost fills absent `required` fields with
/// defaults instead of failing, so every consumer validates after decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTrade {
    /// The symbol breaks Binance's grammar ([`rules::SYMBOL_PATTERN`]).
    #[error("field \"symbol\": {0:?} is not a Binance symbol (^[A-Z0-9-_.]{{1,20}}$)")]
    Symbol(String),
    /// A decimal field is not a plain non-negative decimal (digits, at most one dot).
    #[error("field {field:?}: {value:?} is not a plain decimal")]
    Decimal {
        /// `price` or `quantity`.
        field: &'static str,
        /// The value, truncated to 40 characters.
        value: String,
    },
    /// A time is not after 2017-01-01 (before Binance existed: a unit or missing-field bug).
    #[error("field {field:?}: {value} is not a time in microseconds since the epoch")]
    Time {
        /// `trade_time`, `event_time` or `receive_time`.
        field: &'static str,
        /// The value.
        value: i64,
    },
    /// The trade id is negative.
    #[error("field \"trade_id\": {0} is negative")]
    TradeId(i64),
    /// The source is not one of stream, backfill, batch, archive.
    #[error(transparent)]
    Source(#[from] UnknownSource),
}

impl Trade {
    /// Checks what the wire cannot: every field present and meaningful.
    pub fn validate(&self) -> Result<(), InvalidTrade> {
        if !rules::is_symbol(&self.symbol) {
            return Err(InvalidTrade::Symbol(self.symbol.clone()));
        }
        if self.trade_id < 0 {
            return Err(InvalidTrade::TradeId(self.trade_id));
        }
        for (field, value) in [("price", &self.price), ("quantity", &self.quantity)] {
            if !is_plain_decimal(value) {
                return Err(InvalidTrade::Decimal {
                    field,
                    value: value.chars().take(40).collect(),
                });
            }
        }
        for (field, value) in [
            ("trade_time", self.trade_time),
            ("event_time", self.event_time),
            ("receive_time", self.receive_time),
        ] {
            if !rules::is_contract_time(value) {
                return Err(InvalidTrade::Time { field, value });
            }
        }
        self.source_kind()?;
        Ok(())
    }
}

/// Why a decoded [`Gap`] breaks the contract (as [`InvalidTrade`] for trades).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidGap {
    /// The symbol breaks Binance's grammar ([`rules::SYMBOL_PATTERN`]).
    #[error("field \"symbol\": {0:?} is not a Binance symbol (^[A-Z0-9-_.]{{1,20}}$)")]
    Symbol(String),
    /// `from_id..=to_id` is not a range of trade ids.
    #[error("fields \"from_id\"/\"to_id\": {from_id}..={to_id} is not a range of trade ids")]
    Range {
        /// First missing id.
        from_id: i64,
        /// Last missing id.
        to_id: i64,
    },
    /// `reason` or `reporter` is empty.
    #[error("fields \"reason\"/\"reporter\": {reason:?}/{reporter:?} must not be empty")]
    Empty {
        /// The reason as decoded.
        reason: String,
        /// The reporter as decoded.
        reporter: String,
    },
    /// `detected_time` is not after 2017-01-01.
    #[error("field \"detected_time\": {0} is not a time in microseconds since the epoch")]
    Time(i64),
}

impl Gap {
    /// Checks what the wire cannot: every field present and meaningful.
    pub fn validate(&self) -> Result<(), InvalidGap> {
        if !rules::is_symbol(&self.symbol) {
            return Err(InvalidGap::Symbol(self.symbol.clone()));
        }
        if self.from_id < 0 || self.to_id < self.from_id {
            return Err(InvalidGap::Range {
                from_id: self.from_id,
                to_id: self.to_id,
            });
        }
        if self.reason.is_empty() || self.reporter.is_empty() {
            return Err(InvalidGap::Empty {
                reason: self.reason.clone(),
                reporter: self.reporter.clone(),
            });
        }
        if !rules::is_contract_time(self.detected_time) {
            return Err(InvalidGap::Time(self.detected_time));
        }
        Ok(())
    }
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    fn gap() -> Gap {
        Gap {
            symbol: "BTC-USDT".into(),
            from_id: 10,
            to_id: 12,
            reason: "geo_blocked_451".into(),
            detected_time: rules::EARLIEST_TIME_MICROS,
            reporter: "producer".into(),
        }
    }

    #[test]
    fn a_whole_gap_is_valid_and_each_broken_field_is_named() {
        assert_eq!(gap().validate(), Ok(()));
        type Break = fn(&mut Gap);
        let cases: [(Break, &str); 5] = [
            (|g| g.symbol = "btcusdt".into(), "\"symbol\""),
            (|g| g.to_id = 9, "\"from_id\"/\"to_id\""),
            (|g| g.from_id = -1, "\"from_id\"/\"to_id\""),
            (|g| g.reporter.clear(), "\"reason\"/\"reporter\""),
            (|g| g.detected_time = 1_700_000_000_000, "\"detected_time\""),
        ];
        for (break_it, field) in cases {
            let mut g = gap();
            break_it(&mut g);
            let e = g.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn a_trade_with_binance_punctuation_is_valid() {
        // Binance's grammar allows - _ . ; the producer publishes such symbols, so the contract
        // must not refuse them downstream.
        let t = Trade {
            symbol: "BTC_USDT.X".into(),
            trade_id: 1,
            price: "1.5".into(),
            quantity: "2".into(),
            trade_time: rules::EARLIEST_TIME_MICROS,
            event_time: rules::EARLIEST_TIME_MICROS,
            receive_time: rules::EARLIEST_TIME_MICROS,
            buyer_is_maker: false,
            source: "stream".into(),
        };
        assert_eq!(t.validate(), Ok(()));
    }
}
