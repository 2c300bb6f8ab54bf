//! The consumer's decode and validate of a Pub/Sub message (data + attributes).

use std::borrow::Cow;
use std::collections::HashMap;

use consumer::decode::{Reason, decode_gap, decode_trade, present_fields};
use consumer::pipeline::{Gaps, RowKind as _, Trades};
use prost::Message as _;
use trade_proto::{Gap, Trade};

use super::{TRADE_FIELDS, numeric_fits};
use crate::Verdict;

/// The six required fields of `Gap` as a bit set of field numbers (1..=6).
const GAP_FIELDS: u64 = 0b111_1110;

/// 2017-01-01T00:00:00Z in µs: the contract's earliest time (`proto/src/lib.rs`).
const EARLIEST_TIME_MICROS: i64 = 1_483_228_800_000_000;

/// Which attributes a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    /// `symbol` and `source` of the payload (when it decodes as a `Trade`), as the producer
    /// publishes them.
    AsProducer,
    /// None.
    Absent,
    /// Only `symbol`, from the payload.
    SymbolOnly,
    /// These `symbol` and `source` values.
    Explicit(String, String),
}

/// How a consumer input is laid out: byte 0 holds the topic (bit 0: 0 trades, 1 gaps) and the
/// attributes (bits 1-2: [`Attributes`] in declaration order); [`Attributes::Explicit`] is
/// followed by a length byte and the `symbol` bytes, then a length byte and the `source` bytes;
/// the rest is the message data. Returns (gap topic, attributes, data).
pub fn split_consumer_input(input: &[u8]) -> (bool, Attributes, &[u8]) {
    let Some((&flags, mut rest)) = input.split_first() else {
        return (false, Attributes::AsProducer, input);
    };
    let attributes = match (flags >> 1) & 3 {
        0 => Attributes::AsProducer,
        1 => Attributes::Absent,
        2 => Attributes::SymbolOnly,
        _ => {
            let mut take = || {
                let (&n, tail) = rest.split_first().unwrap_or((&0, &[]));
                let n = usize::from(n).min(tail.len());
                let (s, tail) = tail.split_at(n);
                rest = tail;
                String::from_utf8_lossy(s).into_owned()
            };
            let symbol = take();
            let source = take();
            Attributes::Explicit(symbol, source)
        }
    };
    (flags & 1 == 1, attributes, rest)
}

/// Builds a consumer input (the inverse of [`split_consumer_input`]; explicit values are cut
/// to 255 bytes).
pub fn consumer_input(gap_topic: bool, attributes: &Attributes, data: &[u8]) -> Vec<u8> {
    let mode = match attributes {
        Attributes::AsProducer => 0u8,
        Attributes::Absent => 1,
        Attributes::SymbolOnly => 2,
        Attributes::Explicit(..) => 3,
    };
    let mut out = vec![u8::from(gap_topic) | (mode << 1)];
    if let Attributes::Explicit(symbol, source) = attributes {
        for s in [symbol, source] {
            let b = &s.as_bytes()[..s.len().min(255)];
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
    }
    out.extend_from_slice(data);
    out
}

/// One Pub/Sub message through the consumer's decode of both topics (as
/// [`consumer::pipeline::RowKind::decode`], what the pipeline calls, and the `decode` functions
/// under it).
///
/// Invariants:
/// - the pipeline's decode and `decode_trade`/`decode_gap` agree (key, poison);
/// - the outcome is exactly the oracle's: undecodable when prost fails, missing field when a
///   required field number never appears, invalid value when `validate()` (gaps: the gap rules)
///   or NUMERIC refuses, then the attributes; accepted otherwise. So the consumer never accepts
///   what `validate()` refuses, and never refuses what the contract accepts;
/// - an accepted message equals prost's reading of it, and its canonical re-encoding is
///   accepted to the same value;
/// - no payload is both a valid trade and a valid gap.
pub fn consumer(input: &[u8]) -> Verdict {
    let (gap_topic, attributes, data) = split_consumer_input(input);
    let prost_trade = Trade::decode(data);
    let attrs = match &attributes {
        Attributes::AsProducer | Attributes::SymbolOnly => {
            let mut m = HashMap::new();
            if let Ok(t) = &prost_trade {
                m.insert("symbol".to_owned(), t.symbol.clone());
                if attributes == Attributes::AsProducer {
                    m.insert("source".to_owned(), t.source.clone());
                }
            }
            m
        }
        Attributes::Absent => HashMap::new(),
        Attributes::Explicit(symbol, source) => HashMap::from([
            ("symbol".to_owned(), symbol.clone()),
            ("source".to_owned(), source.clone()),
        ]),
    };
    let present = present_fields(data);
    let trade = check_trade(data, &attrs, prost_trade, present);
    let gap = check_gap(data, present);
    assert!(
        !(trade.accepted && gap.accepted),
        "invariant: one payload is both a valid trade and a valid gap"
    );
    if gap_topic { gap } else { trade }
}

fn reason_class(topic: &str, r: Reason) -> Cow<'static, str> {
    Cow::Owned(format!("{topic}: {}", r.code()))
}

fn check_trade(
    data: &[u8],
    attrs: &HashMap<String, String>,
    prost: Result<Trade, prost::DecodeError>,
    present: Option<u64>,
) -> Verdict {
    let got = decode_trade(data, attrs);
    let via_pipeline = Trades::decode(data, attrs);
    match (&got, &via_pipeline) {
        (Ok(t), Ok(d)) => assert!(
            d.key == (t.symbol.clone(), t.trade_id) && d.event_time_micros == Some(t.trade_time),
            "invariant: pipeline key {d:?} for {t:?}"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b, "invariant: pipeline and decode_trade disagree"),
        _ => panic!("invariant: decode_trade {got:?} but the pipeline {via_pipeline:?}"),
    }
    let expected = (|| {
        let t = prost.as_ref().map_err(|_| Reason::Undecodable)?;
        let present = present.ok_or(Reason::Undecodable)?;
        if present & TRADE_FIELDS != TRADE_FIELDS {
            return Err(Reason::MissingField);
        }
        t.validate().map_err(|_| Reason::InvalidValue)?;
        if !numeric_fits(&t.price) || !numeric_fits(&t.quantity) {
            return Err(Reason::InvalidValue);
        }
        for (name, value) in [("symbol", &t.symbol), ("source", &t.source)] {
            match attrs.get(name) {
                None => return Err(Reason::MissingAttribute),
                Some(a) if a != value => return Err(Reason::AttributeMismatch),
                Some(_) => {}
            }
        }
        Ok(())
    })();
    assert_eq!(
        got.as_ref().map(|_| ()).map_err(|p| p.reason),
        expected,
        "invariant: decode_trade says {got:?}, the contract {expected:?}"
    );
    match got {
        Ok(t) => {
            assert!(
                prost.as_ref() == Ok(&t),
                "invariant: accepted {t:?}, prost reads {prost:?}"
            );
            let canonical = t.encode_to_vec();
            assert_eq!(
                decode_trade(&canonical, attrs),
                Ok(t.clone()),
                "invariant: the re-encoded trade is refused"
            );
            Verdict::accepted(if canonical == data {
                "trade: accepted"
            } else if present.unwrap_or(0) & !TRADE_FIELDS != 0 {
                "trade: accepted with unknown fields"
            } else {
                "trade: accepted, fields repeated or out of order"
            })
        }
        Err(p) => Verdict::rejected(reason_class("trade", p.reason)),
    }
}

fn check_gap(data: &[u8], present: Option<u64>) -> Verdict {
    let got = decode_gap(data);
    let via_pipeline = Gaps::decode(data, &HashMap::new());
    match (&got, &via_pipeline) {
        (Ok(g), Ok(d)) => assert!(
            d.key == (g.symbol.clone(), g.from_id, g.to_id, g.reporter.clone())
                && d.event_time_micros.is_none(),
            "invariant: pipeline key {d:?} for {g:?}"
        ),
        (Err(a), Err(b)) => assert_eq!(a, b, "invariant: pipeline and decode_gap disagree"),
        _ => panic!("invariant: decode_gap {got:?} but the pipeline {via_pipeline:?}"),
    }
    let prost = Gap::decode(data);
    let expected = (|| {
        let g = prost.as_ref().map_err(|_| Reason::Undecodable)?;
        let present = present.ok_or(Reason::Undecodable)?;
        if present & GAP_FIELDS != GAP_FIELDS {
            return Err(Reason::MissingField);
        }
        // Binance's grammar, ^[A-Z0-9-_.]{1,20}$, stated here again on purpose: the oracle
        // must not call the rule it checks.
        let symbol_ok = (1..=20).contains(&g.symbol.len())
            && g.symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        let range_ok = g.from_id >= 0 && g.to_id >= g.from_id;
        let text_ok = !g.reason.is_empty() && !g.reporter.is_empty();
        if !(symbol_ok && range_ok && text_ok && g.detected_time >= EARLIEST_TIME_MICROS) {
            return Err(Reason::InvalidValue);
        }
        Ok(())
    })();
    assert_eq!(
        got.as_ref().map(|_| ()).map_err(|p| p.reason),
        expected,
        "invariant: decode_gap says {got:?}, the contract {expected:?}"
    );
    match got {
        Ok(g) => {
            assert!(
                prost.as_ref() == Ok(&g),
                "invariant: accepted {g:?}, prost reads {prost:?}"
            );
            assert_eq!(
                decode_gap(&g.encode_to_vec()),
                Ok(g.clone()),
                "invariant: the re-encoded gap is refused"
            );
            Verdict::accepted("gap: accepted")
        }
        Err(p) => Verdict::rejected(reason_class("gap", p.reason)),
    }
}
