//! Pure decoding and validation of Pub/Sub payloads into rows. No I/O.
//!
//! A payload is already an encoded proto2 `Trade` (or `Gap`), and it is appended to BigQuery
//! byte for byte once it passes here. prost fills absent `required` fields with defaults instead
//! of failing, so we also scan the wire for the field numbers present: an absent `trade_id` or
//! `buyer_is_maker` would otherwise pass as 0/false while BigQuery, reading the very same bytes,
//! would see a missing REQUIRED column. Every failure is a [`Poison`] with a stable reason code
//! (the dead-letter `reason` attribute and a metric label) and a detail naming the field and
//! quoting the raw value.

use std::collections::HashMap;

use prost::Message as _;
use trade_proto::{Gap, Trade};

/// Why a message can never be written. The code is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not a protobuf message of the expected type (bad wire format).
    Undecodable,
    /// Decodes, but a required field is absent on the wire.
    MissingField,
    /// Decodes, but a value breaks the contract (symbol, decimal, time, source...).
    InvalidValue,
    /// A required Pub/Sub attribute (`symbol`, `source`) is absent.
    MissingAttribute,
    /// An attribute disagrees with the payload.
    AttributeMismatch,
    /// The row alone is larger than an AppendRows request may be.
    Oversized,
    /// BigQuery refused the row itself (row error or invalid data).
    RejectedByBigQuery,
}

impl Reason {
    /// Every reason, for metric label sets.
    pub const ALL: [Reason; 7] = [
        Reason::Undecodable,
        Reason::MissingField,
        Reason::InvalidValue,
        Reason::MissingAttribute,
        Reason::AttributeMismatch,
        Reason::Oversized,
        Reason::RejectedByBigQuery,
    ];

    /// The stable code: the dead-letter `reason` attribute and the metric label.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::MissingField => "missing_field",
            Reason::InvalidValue => "invalid_value",
            Reason::MissingAttribute => "missing_attribute",
            Reason::AttributeMismatch => "attribute_mismatch",
            Reason::Oversized => "oversized",
            Reason::RejectedByBigQuery => "rejected_by_bigquery",
        }
    }
}

/// A message that must go to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.code())]
pub struct Poison {
    /// The category.
    pub reason: Reason,
    /// Human-readable detail naming the field and quoting the value.
    pub detail: String,
}

impl Poison {
    /// A poison of this reason.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The dedup key of a trade: Binance trade ids are unique per symbol.
pub type TradeKey = (String, i64);

/// The dedup key of a gap record: the same gap reported twice is the same row.
pub type GapKey = (String, i64, i64, String);

/// BigQuery NUMERIC holds 29 integer digits and 9 fractional digits (precision 38, scale 9:
/// <https://cloud.google.com/bigquery/docs/reference/standard-sql/data-types#decimal_types>).
const NUMERIC_MAX_INTEGER_DIGITS: usize = 29;
/// See [`NUMERIC_MAX_INTEGER_DIGITS`].
const NUMERIC_MAX_FRACTION_DIGITS: usize = 9;

/// Decodes and validates a trade message; the attributes must name the same symbol and source.
pub fn decode_trade(data: &[u8], attributes: &HashMap<String, String>) -> Result<Trade, Poison> {
    let trade = Trade::decode(data).map_err(|e| {
        Poison::new(
            Reason::Undecodable,
            format!("not an encoded Trade ({} bytes): {e}", data.len()),
        )
    })?;
    require_fields(data, &TRADE_FIELDS)?;
    trade
        .validate()
        .map_err(|e| Poison::new(Reason::InvalidValue, e.to_string()))?;
    for (field, value) in [("price", &trade.price), ("quantity", &trade.quantity)] {
        check_numeric_range(field, value)?;
    }
    for (name, payload) in [("symbol", &trade.symbol), ("source", &trade.source)] {
        match attributes.get(name) {
            None => {
                return Err(Poison::new(
                    Reason::MissingAttribute,
                    format!("attribute {name:?} is absent (payload says {payload:?})"),
                ));
            }
            Some(attr) if attr != payload => {
                return Err(Poison::new(
                    Reason::AttributeMismatch,
                    format!("attribute {name:?} is {attr:?} but the payload says {payload:?}"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(trade)
}

/// Decodes and validates a gap record (no attributes required).
pub fn decode_gap(data: &[u8]) -> Result<Gap, Poison> {
    let gap = Gap::decode(data).map_err(|e| {
        Poison::new(
            Reason::Undecodable,
            format!("not an encoded Gap ({} bytes): {e}", data.len()),
        )
    })?;
    require_fields(data, &GAP_FIELDS)?;
    gap.validate()
        .map_err(|e| Poison::new(Reason::InvalidValue, e.to_string()))?;
    Ok(gap)
}

/// `(field number, name)` of every required `Trade` field.
const TRADE_FIELDS: [(u32, &str); 9] = [
    (1, "symbol"),
    (2, "trade_id"),
    (3, "price"),
    (4, "quantity"),
    (5, "trade_time"),
    (6, "event_time"),
    (7, "receive_time"),
    (8, "buyer_is_maker"),
    (9, "source"),
];

/// `(field number, name)` of every required `Gap` field.
const GAP_FIELDS: [(u32, &str); 6] = [
    (1, "symbol"),
    (2, "from_id"),
    (3, "to_id"),
    (4, "reason"),
    (5, "detected_time"),
    (6, "reporter"),
];

fn check_numeric_range(field: &str, value: &str) -> Result<(), Poison> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let int_digits = int.trim_start_matches('0').len();
    let frac_digits = frac.trim_end_matches('0').len();
    if int_digits > NUMERIC_MAX_INTEGER_DIGITS || frac_digits > NUMERIC_MAX_FRACTION_DIGITS {
        return Err(Poison::new(
            Reason::InvalidValue,
            format!(
                "field {field:?}: {:?} does not fit BigQuery NUMERIC (29 integer, 9 fraction digits)",
                value.chars().take(60).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Fails with the first required field whose number never appears on the wire. The payload was
/// already decoded by prost, so the wire format is known to be valid here.
fn require_fields(data: &[u8], required: &[(u32, &str)]) -> Result<(), Poison> {
    let present = present_fields(data)
        .ok_or_else(|| Poison::new(Reason::Undecodable, "truncated protobuf field".to_owned()))?;
    for (number, name) in required {
        if present & (1u64 << number) == 0 {
            return Err(Poison::new(
                Reason::MissingField,
                format!("required field {name:?} (number {number}) is absent"),
            ));
        }
    }
    Ok(())
}

/// A bit set of the field numbers (below 64) present in an encoded message; `None` if the wire
/// format is broken.
pub fn present_fields(mut data: &[u8]) -> Option<u64> {
    let mut present = 0u64;
    while !data.is_empty() {
        let key = read_varint(&mut data)?;
        let number = key >> 3;
        if number < 64 {
            present |= 1 << number;
        }
        match key & 7 {
            0 => {
                read_varint(&mut data)?;
            }
            1 => data = data.get(8..)?,
            2 => {
                let len = usize::try_from(read_varint(&mut data)?).ok()?;
                data = data.get(len..)?;
            }
            5 => data = data.get(4..)?,
            _ => return None, // groups (3, 4) are not used by our contracts
        }
    }
    Some(present)
}

fn read_varint(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use trade_proto::Source;

    pub(crate) fn trade(id: i64) -> Trade {
        Trade {
            symbol: "BTCUSDT".into(),
            trade_id: id,
            price: "107407.88000000".into(),
            quantity: "0.00024000".into(),
            trade_time: 1_751_132_780_368_000,
            event_time: 1_751_132_780_369_000,
            receive_time: 1_751_132_780_371_000,
            buyer_is_maker: false,
            source: Source::Stream.as_str().into(),
        }
    }

    fn attrs(symbol: &str, source: &str) -> HashMap<String, String> {
        [("symbol", symbol), ("source", source)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_good_trade_decodes_with_zero_values_kept() {
        let t = trade(0);
        let got = decode_trade(&t.encode_to_vec(), &attrs("BTCUSDT", "stream")).unwrap();
        assert_eq!(got, t);
    }

    fn without_field(t: &Trade, number: u32) -> Vec<u8> {
        // Re-encode field by field, skipping one: prost always writes proto2 required fields.
        let full = t.encode_to_vec();
        let mut out = Vec::new();
        let mut rest = &full[..];
        while !rest.is_empty() {
            let start = rest;
            let key = read_varint(&mut rest).unwrap();
            match key & 7 {
                0 => {
                    read_varint(&mut rest).unwrap();
                }
                2 => {
                    let len = read_varint(&mut rest).unwrap() as usize;
                    rest = &rest[len..];
                }
                _ => unreachable!(),
            }
            let used = start.len() - rest.len();
            if (key >> 3) as u32 != number {
                out.extend_from_slice(&start[..used]);
            }
        }
        out
    }

    #[rstest]
    #[case::trade_id(2, "trade_id")]
    #[case::buyer_is_maker(8, "buyer_is_maker")]
    #[case::event_time(6, "event_time")]
    fn an_absent_required_field_is_named(#[case] number: u32, #[case] name: &str) {
        let bytes = without_field(&trade(0), number);
        let err = decode_trade(&bytes, &attrs("BTCUSDT", "stream")).unwrap_err();
        assert_eq!(err.reason, Reason::MissingField, "{err}");
        assert!(err.detail.contains(name), "{err}");
    }

    #[rstest]
    #[case::garbage(b"\xff\xff\xff\xff".to_vec(), Reason::Undecodable, "not an encoded Trade")]
    #[case::empty(Vec::new(), Reason::MissingField, "symbol")]
    #[case::a_gap_on_the_trade_topic(
        Gap { symbol: "BTCUSDT".into(), from_id: 1, to_id: 2, reason: "x".into(),
              detected_time: 1_751_132_780_368_000, reporter: "producer".into() }.encode_to_vec(),
        Reason::Undecodable, "Trade.price")]
    fn wrong_payloads_are_poison(
        #[case] bytes: Vec<u8>,
        #[case] reason: Reason,
        #[case] needle: &str,
    ) {
        let err = decode_trade(&bytes, &attrs("BTCUSDT", "stream")).unwrap_err();
        assert_eq!(err.reason, reason, "{err}");
        assert!(err.detail.contains(needle), "{err}");
    }

    #[rstest]
    #[case::float_price("price", "1e5", "\"1e5\"")]
    #[case::too_many_fraction_digits("quantity", "0.0000000001", "NUMERIC")]
    #[case::too_many_integer_digits("price", "123456789012345678901234567890", "NUMERIC")]
    fn invalid_values_quote_the_raw_value(
        #[case] field: &str,
        #[case] value: &str,
        #[case] needle: &str,
    ) {
        let mut t = trade(1);
        match field {
            "price" => t.price = value.into(),
            _ => t.quantity = value.into(),
        }
        let err = decode_trade(&t.encode_to_vec(), &attrs("BTCUSDT", "stream")).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidValue, "{err}");
        assert!(
            err.detail.contains(needle) && err.detail.contains(field),
            "{err}"
        );
    }

    #[test]
    fn trailing_zeros_beyond_nine_places_still_fit_numeric() {
        let mut t = trade(1);
        t.quantity = "0.000240000000".into();
        decode_trade(&t.encode_to_vec(), &attrs("BTCUSDT", "stream")).unwrap();
    }

    #[test]
    fn attributes_must_be_present_and_agree() {
        let bytes = trade(1).encode_to_vec();
        let mut only_symbol = attrs("BTCUSDT", "stream");
        only_symbol.remove("source");
        let err = decode_trade(&bytes, &only_symbol).unwrap_err();
        assert_eq!(err.reason, Reason::MissingAttribute);
        assert!(err.detail.contains("\"source\""), "{err}");
        let err = decode_trade(&bytes, &attrs("ETHUSDT", "stream")).unwrap_err();
        assert_eq!(err.reason, Reason::AttributeMismatch);
        assert!(err.detail.contains("ETHUSDT"), "{err}");
    }

    #[test]
    fn gaps_decode_and_bad_ranges_are_poison() {
        let gap = Gap {
            symbol: "ARBUSDT".into(),
            from_id: 10,
            to_id: 12,
            reason: "ids_unavailable".into(),
            detected_time: 1_751_132_780_368_000,
            reporter: "producer".into(),
        };
        assert_eq!(decode_gap(&gap.encode_to_vec()).unwrap(), gap);
        let backwards = Gap {
            to_id: 9,
            ..gap.clone()
        };
        let err = decode_gap(&backwards.encode_to_vec()).unwrap_err();
        assert_eq!(err.reason, Reason::InvalidValue);
        assert!(err.detail.contains("10..=9"), "{err}");
        let err = decode_gap(&trade(1).encode_to_vec()).unwrap_err();
        assert!(
            matches!(
                err.reason,
                Reason::Undecodable | Reason::MissingField | Reason::InvalidValue
            ),
            "{err}"
        );
    }

    #[test]
    fn reason_codes_are_distinct() {
        let codes: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
