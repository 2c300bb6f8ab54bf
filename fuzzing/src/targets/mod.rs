//! The targets, and what they share: how a trade the producer made reaches the consumer.

pub mod frame;
pub mod pubsub;
pub mod rest;

use std::borrow::Cow;
use std::collections::HashMap;

use consumer::decode::{Reason, present_fields};
use consumer::pipeline::{RowKind as _, Trades};
use prost::Message as _;
use trade_proto::{InvalidTrade, Trade};

/// The receive time every target passes in (2025-06-28, µs): a plausible clock, so that what
/// the contract says about times is about the times in the input.
pub const RECEIVE_TIME_US: i64 = 1_751_132_780_400_123;

/// Oracle for BigQuery NUMERIC (29 integer digits, 9 fraction digits, as
/// `consumer/src/decode.rs` cites): leading zeros of the integer part and trailing zeros of the
/// fraction do not count. `value` is a plain decimal.
pub fn numeric_fits(value: &str) -> bool {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    int.trim_start_matches('0').len() <= 29 && frac.trim_end_matches('0').len() <= 9
}

/// The nine required fields of `Trade` as a bit set of field numbers (1..=9).
pub(crate) const TRADE_FIELDS: u64 = 0b11_1111_1110;

/// A trade the producer built (from a frame or a REST row) goes to the consumer the way the
/// producer publishes it (prost bytes, attributes `symbol` and `source` from the trade) and
/// must come out unchanged, unless the contract refuses it. Returns the class of what happened.
///
/// Invariants: the encoding round-trips and carries every required field; the consumer accepts
/// exactly what `validate()` and NUMERIC accept; `validate()` may refuse a parsed trade only
/// for what the parser does not check itself (a time before 2017, a symbol with `-`, `_` or
/// `.`, both allowed by Binance's symbol grammar).
pub(crate) fn producer_to_consumer(t: &Trade) -> Cow<'static, str> {
    let bytes = t.encode_to_vec();
    let back = Trade::decode(bytes.as_slice());
    assert!(
        back.as_ref() == Ok(t),
        "invariant: prost round trip changed the trade: {t:?} -> {back:?}"
    );
    assert_eq!(
        present_fields(&bytes).map(|p| p & TRADE_FIELDS),
        Some(TRADE_FIELDS),
        "invariant: prost left a required field off the wire: {t:?}"
    );
    let attributes = HashMap::from([
        ("symbol".to_owned(), t.symbol.clone()),
        ("source".to_owned(), t.source.clone()),
    ]);
    let decoded = Trades::decode(&bytes, &attributes);
    match t.validate() {
        Ok(()) => {
            let fits = numeric_fits(&t.price) && numeric_fits(&t.quantity);
            match (&decoded, fits) {
                (Ok(d), true) => {
                    assert_eq!(
                        d.key,
                        (t.symbol.clone(), t.trade_id),
                        "invariant: consumer key"
                    );
                    assert_eq!(d.event_time_micros, Some(t.trade_time));
                    Cow::Borrowed("consumer accepts")
                }
                (Err(p), false) if p.reason == Reason::InvalidValue => {
                    Cow::Borrowed("consumer refuses: beyond NUMERIC")
                }
                _ => panic!(
                    "invariant: validate() accepts {t:?} (NUMERIC fits: {fits}) but the consumer \
                     says {decoded:?}"
                ),
            }
        }
        Err(e) => {
            assert!(
                matches!(&decoded, Err(p) if p.reason == Reason::InvalidValue),
                "invariant: validate() refuses {t:?} ({e}) but the consumer says {decoded:?}"
            );
            match e {
                InvalidTrade::Time { field, .. } => {
                    Cow::Owned(format!("contract refuses {field} before 2017"))
                }
                // The parser and the contract share one symbol rule (`trade_proto::rules`), so a symbol
                // refusal here is a disagreement between them, as any other refusal is.
                other => panic!("invariant: the parser let through {t:?}, which breaks {other}"),
            }
        }
    }
}
