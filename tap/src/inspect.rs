//! One received message → what tap does with it. Pure: the payload, its attributes and the
//! caller's state (symbols asked for, the de-duplication memory) come in, a [`Verdict`] goes out.
//!
//! The checks are the contract's (`docs/trade-topic.md`): the payload decodes as a `Trade`,
//! passes `Trade::validate()` (prost does not enforce proto2 `required`), and the `symbol` and
//! `source` attributes agree with the payload (they are what filters match on).

use std::collections::HashMap;

use prost::Message as _;
use trade_proto::{Source, Trade};

use crate::dedup::Dedup;

/// What to do with one message. Every message is acknowledged whatever the verdict: tap is an
/// observer, and a redelivered invalid message would be just as invalid.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A valid trade to print.
    Print(Trade),
    /// Breaks the contract; print the reason to stderr and keep going.
    Invalid(String),
    /// `(symbol, trade_id)` already printed (only with de-duplication on).
    Duplicate,
    /// A valid trade of a symbol or source not asked for: the Pub/Sub emulator stores a
    /// subscription's filter but does not apply it, and a reused subscription may have another.
    NotWanted,
}

/// What the flags ask for, checked again on our side of the filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// Symbols asked for; empty means every symbol.
    pub symbols: &'a [String],
    /// The source asked for, if any.
    pub source: Option<Source>,
}

/// Decides what to do with the message `data` carrying `attributes`.
///
/// `dedup` is `None` when de-duplication is off.
pub fn inspect(
    data: &[u8],
    attributes: &HashMap<String, String>,
    wanted: Wanted<'_>,
    dedup: Option<&mut Dedup>,
) -> Verdict {
    let trade = match Trade::decode(data) {
        Ok(t) => t,
        Err(e) => {
            return Verdict::Invalid(format!(
                "payload of {} bytes is not a Trade: {e}",
                data.len()
            ));
        }
    };
    if let Err(e) = trade.validate() {
        return Verdict::Invalid(format!("trade_id {}: {e}", trade.trade_id));
    }
    for (name, in_payload) in [("symbol", &trade.symbol), ("source", &trade.source)] {
        match attributes.get(name) {
            Some(attr) if attr == in_payload => {}
            Some(attr) => {
                return Verdict::Invalid(format!(
                    "{} trade_id {}: attribute {name:?} is {attr:?} but the payload says {in_payload:?}",
                    trade.symbol, trade.trade_id
                ));
            }
            None => {
                return Verdict::Invalid(format!(
                    "{} trade_id {}: attribute {name:?} is missing",
                    trade.symbol, trade.trade_id
                ));
            }
        }
    }
    let other_symbol = !wanted.symbols.is_empty() && !wanted.symbols.contains(&trade.symbol);
    let other_source = wanted
        .source
        .is_some_and(|s| s.as_str() != trade.source.as_str());
    if other_symbol || other_source {
        return Verdict::NotWanted;
    }
    if let Some(dedup) = dedup
        && !dedup.first_sighting(&trade.symbol, trade.trade_id)
    {
        return Verdict::Duplicate;
    }
    Verdict::Print(trade)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn trade(symbol: &str, id: i64) -> Trade {
        Trade {
            symbol: symbol.into(),
            trade_id: id,
            price: "1.5".into(),
            quantity: "2".into(),
            trade_time: 1_751_132_780_368_123,
            event_time: 1_751_132_780_369_000,
            receive_time: 1_751_132_780_371_999,
            buyer_is_maker: false,
            source: "stream".into(),
        }
    }

    fn attrs(symbol: &str, source: &str) -> HashMap<String, String> {
        [("symbol", symbol), ("source", source)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_valid_trade_is_printed() {
        let t = trade("BTCUSDT", 1);
        let v = inspect(
            &t.encode_to_vec(),
            &attrs("BTCUSDT", "stream"),
            Wanted::default(),
            None,
        );
        assert_eq!(v, Verdict::Print(t));
    }

    #[rstest]
    #[case::not_protobuf(b"\xff\xff\xff".to_vec(), attrs("BTCUSDT", "stream"), "is not a Trade")]
    #[case::empty_payload_fails_validation(Vec::new(), attrs("", ""), "field \"symbol\"")]
    #[case::float_price(
        Trade { price: "1e5".into(), ..trade("BTCUSDT", 3) }.encode_to_vec(),
        attrs("BTCUSDT", "stream"),
        "field \"price\": \"1e5\""
    )]
    #[case::milliseconds_not_micros(
        Trade { trade_time: 1_751_132_780_368, ..trade("BTCUSDT", 4) }.encode_to_vec(),
        attrs("BTCUSDT", "stream"),
        "field \"trade_time\""
    )]
    #[case::attribute_disagrees(
        trade("BTCUSDT", 5).encode_to_vec(),
        attrs("ARBUSDT", "stream"),
        "attribute \"symbol\" is \"ARBUSDT\" but the payload says \"BTCUSDT\""
    )]
    #[case::attribute_missing(
        trade("BTCUSDT", 6).encode_to_vec(),
        HashMap::new(),
        "attribute \"symbol\" is missing"
    )]
    fn contract_breaches_are_reported_with_the_reason(
        #[case] data: Vec<u8>,
        #[case] attributes: HashMap<String, String>,
        #[case] want: &str,
    ) {
        match inspect(&data, &attributes, Wanted::default(), None) {
            Verdict::Invalid(reason) => assert!(reason.contains(want), "{reason}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn unwanted_trades_are_skipped_and_duplicates_dropped() {
        let mut dedup = Dedup::default();
        let symbols = vec!["BTCUSDT".to_owned()];
        let only = Wanted {
            symbols: &symbols,
            source: None,
        };
        let arb = trade("ARBUSDT", 1);
        let v = inspect(
            &arb.encode_to_vec(),
            &attrs("ARBUSDT", "stream"),
            only,
            Some(&mut dedup),
        );
        assert_eq!(v, Verdict::NotWanted);
        let backfill_only = Wanted {
            symbols: &[],
            source: Some(Source::Backfill),
        };
        let stream_trade = trade("BTCUSDT", 9);
        let v = inspect(
            &stream_trade.encode_to_vec(),
            &attrs("BTCUSDT", "stream"),
            backfill_only,
            None,
        );
        assert_eq!(v, Verdict::NotWanted);
        let btc = trade("BTCUSDT", 1);
        let backfilled = Trade {
            source: "backfill".into(),
            ..btc.clone()
        };
        let first = inspect(
            &btc.encode_to_vec(),
            &attrs("BTCUSDT", "stream"),
            only,
            Some(&mut dedup),
        );
        assert_eq!(first, Verdict::Print(btc));
        let again = inspect(
            &backfilled.encode_to_vec(),
            &attrs("BTCUSDT", "backfill"),
            only,
            Some(&mut dedup),
        );
        assert_eq!(again, Verdict::Duplicate, "same pair, other source");
    }
}
