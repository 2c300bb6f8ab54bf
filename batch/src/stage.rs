//! Klines travel to BigQuery as proto rows through the Storage Write API into a staging table,
//! then one MERGE moves them into `dwh.klines_<symbol>` ([`crate::sql::klines_merge_from`]).
//!
//! Why not a MERGE with the rows inlined as SQL literals: BigQuery would take it (a day is
//! ~250 KB of SQL, under the 1 MB query-text limit), but bqemulator parses literal rows at about
//! 10 ms each (a day of one symbol: ~15 s; 30 days x 4 symbols: ~30 minutes), while a MERGE from
//! a table runs in tens of milliseconds. Appends are binary, cheap and the same path the
//! consumer uses; the MERGE keeps the load atomic and idempotent.
//!
//! The message is proto2 with `required` fields (proto3 would drop zero values, and BigQuery
//! would store NULL): field names are the columns of `terraform/schemas/klines.json`; TIMESTAMP
//! columns take int64 microseconds, NUMERIC columns take decimal strings.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use crate::klines::KlineRow;

/// One row of a klines table, as appended.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KlineMessage {
    /// Symbol.
    #[prost(string, required, tag = "1")]
    pub symbol: String,
    /// Open time, µs.
    #[prost(int64, required, tag = "2")]
    pub open_time: i64,
    /// Open.
    #[prost(string, required, tag = "3")]
    pub open: String,
    /// High.
    #[prost(string, required, tag = "4")]
    pub high: String,
    /// Low.
    #[prost(string, required, tag = "5")]
    pub low: String,
    /// Close.
    #[prost(string, required, tag = "6")]
    pub close: String,
    /// Base volume.
    #[prost(string, required, tag = "7")]
    pub volume: String,
    /// Close time, µs.
    #[prost(int64, required, tag = "8")]
    pub close_time: i64,
    /// Quote volume.
    #[prost(string, required, tag = "9")]
    pub quote_volume: String,
    /// Trades.
    #[prost(int64, required, tag = "10")]
    pub trade_count: i64,
    /// Taker buy base volume.
    #[prost(string, required, tag = "11")]
    pub taker_buy_base_volume: String,
    /// Taker buy quote volume.
    #[prost(string, required, tag = "12")]
    pub taker_buy_quote_volume: String,
    /// Load time, µs.
    #[prost(int64, required, tag = "13")]
    pub loaded_at: i64,
}

/// (column, proto type) in tag order; must match [`KlineMessage`].
const FIELDS: [(&str, Type); 13] = [
    ("symbol", Type::String),
    ("open_time", Type::Int64),
    ("open", Type::String),
    ("high", Type::String),
    ("low", Type::String),
    ("close", Type::String),
    ("volume", Type::String),
    ("close_time", Type::Int64),
    ("quote_volume", Type::String),
    ("trade_count", Type::Int64),
    ("taker_buy_base_volume", Type::String),
    ("taker_buy_quote_volume", Type::String),
    ("loaded_at", Type::Int64),
];

/// The descriptor the Storage Write API needs for [`KlineMessage`].
pub fn descriptor() -> DescriptorProto {
    DescriptorProto {
        name: Some("KlineMessage".into()),
        field: FIELDS
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| FieldDescriptorProto {
                name: Some((*name).into()),
                number: Some(i32::try_from(i + 1).expect("13 fields")),
                label: Some(Label::Required as i32),
                r#type: Some(*ty as i32),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Encodes rows for an append.
pub fn encode(symbol: &str, rows: &[KlineRow], loaded_at_us: i64) -> Vec<Vec<u8>> {
    use prost::Message as _;
    rows.iter()
        .map(|r| {
            KlineMessage {
                symbol: symbol.to_owned(),
                open_time: r.open_time_ms * 1000,
                open: r.open.canonical(),
                high: r.high.canonical(),
                low: r.low.canonical(),
                close: r.close.canonical(),
                volume: r.volume.canonical(),
                close_time: r.close_time_ms * 1000,
                quote_volume: r.quote_volume.canonical(),
                trade_count: r.trade_count,
                taker_buy_base_volume: r.taker_buy_base_volume.canonical(),
                taker_buy_quote_volume: r.taker_buy_quote_volume.canonical(),
                loaded_at: loaded_at_us,
            }
            .encode_to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcp::bigquery::schema;
    use gcp::bigquery::tables::{KLINES_SCHEMA, column_names};

    #[test]
    fn the_descriptor_has_the_klines_columns_in_order() {
        let fields = schema::parse(KLINES_SCHEMA).unwrap();
        let d = descriptor();
        let names: Vec<&str> = d.field.iter().map(|f| f.name()).collect();
        assert_eq!(names, column_names(&fields));
        for (f, col) in d.field.iter().zip(&fields) {
            let want = if col.field_type == "INTEGER"
                || col.field_type == "INT64"
                || col.field_type == "TIMESTAMP"
            {
                Type::Int64
            } else {
                Type::String
            };
            assert_eq!(f.r#type(), want, "{}", col.name);
        }
    }
}
