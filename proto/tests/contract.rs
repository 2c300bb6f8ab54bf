//! The Trade contract survives encoding exactly, and its descriptor is what BigQuery needs.

use proptest::prelude::*;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use trade_proto::{Gap, Source, Trade, message_descriptor};

fn sample() -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        trade_id: 5_052_328_858,
        price: "107407.88000000".into(),
        quantity: "0.00024000".into(),
        trade_time: 1_751_132_780_368_000,
        event_time: 1_751_132_780_369_000,
        receive_time: 1_751_132_780_371_234,
        buyer_is_maker: true,
        source: Source::Stream.as_str().into(),
    }
}

#[test]
fn every_field_survives_encode_decode() {
    let t = sample();
    let bytes = t.encode_to_vec();
    assert_eq!(Trade::decode(bytes.as_slice()).unwrap(), t);
}

#[test]
fn decimals_are_kept_digit_for_digit() {
    // Values a binary float would damage: 1e-8 and a quantity past f64's exact integer range once
    // scaled by 1e8 (9223372036854 units of 1e-8).
    for (price, qty) in [
        ("0.00000001", "92233.72036854"),
        ("107407.88000000", "0.00000001"),
    ] {
        let t = Trade {
            price: price.into(),
            quantity: qty.into(),
            ..sample()
        };
        let back = Trade::decode(t.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.price, price);
        assert_eq!(back.quantity, qty);
    }
}

#[test]
fn zero_and_false_are_serialised_so_bigquery_never_sees_null() {
    // proto2 `required`: zero values are on the wire. In proto3 they would be omitted, and the
    // Storage Write API would store NULL.
    let t = Trade {
        trade_id: 0,
        buyer_is_maker: false,
        trade_time: 0,
        ..sample()
    };
    let bytes = t.encode_to_vec();
    // Field 2 (trade_id, varint) = tag 0x10 followed by 0x00; field 8 (bool) = tag 0x40, 0x00.
    assert!(bytes.windows(2).any(|w| w == [0x10, 0x00]), "{bytes:02x?}");
    assert!(bytes.windows(2).any(|w| w == [0x40, 0x00]), "{bytes:02x?}");
}

#[test]
fn a_trade_missing_required_fields_fails_validation() {
    // Only the symbol (field 1) on the wire: prost decodes it with defaults, validation refuses.
    let partial = [0x0a, 0x07, b'B', b'T', b'C', b'U', b'S', b'D', b'T'];
    let t = Trade::decode(partial.as_slice()).expect("prost fills defaults");
    let err = t.validate().unwrap_err();
    assert!(err.to_string().contains("\"price\""), "{err}");
    assert!(sample().validate().is_ok());
}

#[test]
fn validation_names_the_bad_field_and_value() {
    let cases: Vec<(Trade, &str)> = vec![
        (
            Trade {
                symbol: "btcusdt".into(),
                ..sample()
            },
            "\"symbol\"",
        ),
        (
            Trade {
                price: "1e5".into(),
                ..sample()
            },
            "\"1e5\"",
        ),
        (
            Trade {
                quantity: "-1".into(),
                ..sample()
            },
            "\"quantity\"",
        ),
        (
            Trade {
                price: "1.".into(),
                ..sample()
            },
            "\"price\"",
        ),
        (
            Trade {
                trade_time: 1_751_132_780_368,
                ..sample()
            },
            "\"trade_time\"",
        ),
        (
            Trade {
                trade_id: -1,
                ..sample()
            },
            "\"trade_id\"",
        ),
        (
            Trade {
                source: "ws".into(),
                ..sample()
            },
            "\"ws\"",
        ),
    ];
    for (t, needle) in cases {
        let err = t.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{err} should name {needle}");
    }
}

#[test]
fn descriptor_lists_bigquery_columns_in_order_all_required() {
    let d = message_descriptor("Trade").expect("Trade descriptor");
    let cols: Vec<(&str, Type)> = d.field.iter().map(|f| (f.name(), f.r#type())).collect();
    assert_eq!(
        cols,
        vec![
            ("symbol", Type::String),
            ("trade_id", Type::Int64),
            ("price", Type::String),
            ("quantity", Type::String),
            ("trade_time", Type::Int64),
            ("event_time", Type::Int64),
            ("receive_time", Type::Int64),
            ("buyer_is_maker", Type::Bool),
            ("source", Type::String),
        ]
    );
    assert!(d.field.iter().all(|f| f.label() == Label::Required));
    let g = message_descriptor("Gap").expect("Gap descriptor");
    assert!(g.field.iter().all(|f| f.label() == Label::Required));
    assert!(message_descriptor("Nope").is_none());
}

#[test]
fn sources_round_trip_and_unknown_is_named() {
    for s in Source::ALL {
        assert_eq!(s.as_str().parse::<Source>().unwrap(), s);
    }
    let err = "websocket".parse::<Source>().unwrap_err();
    assert!(err.to_string().contains("\"websocket\""), "{err}");
    assert_eq!(sample().source_kind().unwrap(), Source::Stream);
}

#[test]
fn gap_round_trips() {
    let g = Gap {
        symbol: "ARBUSDT".into(),
        from_id: 10,
        to_id: 20,
        reason: "geo_blocked_451".into(),
        detected_time: 1,
        reporter: "producer".into(),
    };
    assert_eq!(Gap::decode(g.encode_to_vec().as_slice()).unwrap(), g);
}

fn decimal() -> impl Strategy<Value = String> {
    ("[0-9]{1,12}", proptest::option::of("[0-9]{1,8}")).prop_map(|(i, f)| match f {
        Some(f) => format!("{i}.{f}"),
        None => i,
    })
}

proptest! {
    #[test]
    fn any_trade_round_trips(
        symbol in "[A-Z]{3,12}",
        trade_id in any::<i64>(),
        price in decimal(),
        quantity in decimal(),
        times in any::<(i64, i64, i64)>(),
        buyer_is_maker in any::<bool>(),
        source in prop::sample::select(Source::ALL.to_vec()),
    ) {
        let t = Trade {
            symbol, trade_id, price, quantity,
            trade_time: times.0, event_time: times.1, receive_time: times.2,
            buyer_is_maker, source: source.as_str().into(),
        };
        prop_assert_eq!(Trade::decode(t.encode_to_vec().as_slice()).unwrap(), t);
    }
}
