//! Named cases for every websocket payload shape and every malformed frame we know of, plus a
//! property test holding the hand-rolled scanner against serde_json on generated frames.

use binance::parse::{Frame, FrameContext, ParseError, TimeUnit, parse_frame, parse_rest_trade};
use binance::wire::{self, RestTrade};
use proptest::prelude::*;
use rstest::rstest;
use trade_proto::{Source, Trade};

const TRADE_2025: &str = include_str!("fixtures/trade_2025.json");
const TRADE_PRE_2024: &str = include_str!("fixtures/trade_docs_pre_2024.json");
const SHUTDOWN: &str = include_str!("fixtures/server_shutdown.json");

const RECV: i64 = 1_751_132_780_400_123;

fn ctx(unit: TimeUnit) -> FrameContext {
    FrameContext {
        receive_time_us: RECV,
        time_unit: unit,
    }
}

fn combined(stream: &str, data: &str) -> String {
    format!(r#"{{"stream":"{stream}","data":{}}}"#, data.trim())
}

fn btc_trade(trade_time_us: i64, event_time_us: i64) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        trade_id: 5_052_328_858,
        price: "107407.88000000".into(),
        quantity: "0.00024000".into(),
        trade_time: trade_time_us,
        event_time: event_time_us,
        receive_time: RECV,
        buyer_is_maker: true,
        source: "stream".into(),
    }
}

#[rstest]
#[case::raw_2025_ms(TRADE_2025.to_owned(), TimeUnit::Millisecond, 1_751_132_780_368_000, 1_751_132_780_369_000)]
#[case::combined_2025_ms(
    combined("btcusdt@trade", TRADE_2025),
    TimeUnit::Millisecond,
    1_751_132_780_368_000,
    1_751_132_780_369_000
)]
#[case::raw_us(
    r#"{"e":"trade","E":1751132780369001,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368999,"m":true,"M":true}"#.to_owned(),
    TimeUnit::Microsecond, 1_751_132_780_368_999, 1_751_132_780_369_001)]
#[case::combined_us(combined("btcusdt@trade",
    r#"{"e":"trade","E":1751132780369001,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368999,"m":true,"M":true}"#),
    TimeUnit::Microsecond, 1_751_132_780_368_999, 1_751_132_780_369_001)]
#[case::data_before_stream(
    format!(r#"{{"data":{},"stream":"btcusdt@trade"}}"#, TRADE_2025.trim()),
    TimeUnit::Millisecond, 1_751_132_780_368_000, 1_751_132_780_369_000)]
#[case::keys_reordered_with_whitespace(
    "  {\n \"m\" : true , \"T\":1751132780368,\"q\":\"0.00024000\",\"p\":\"107407.88000000\",\t\"t\":5052328858,\"s\":\"BTCUSDT\",\"E\":1751132780369,\"e\":\"trade\"}\r\n".to_owned(),
    TimeUnit::Millisecond, 1_751_132_780_368_000, 1_751_132_780_369_000)]
#[case::with_b_and_a(
    r#"{"e":"trade","E":1751132780369,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","b":88,"a":50,"T":1751132780368,"m":true,"M":true}"#.to_owned(),
    TimeUnit::Millisecond, 1_751_132_780_368_000, 1_751_132_780_369_000)]
#[case::unknown_fields_of_every_type(
    r#"{"e":"trade","x":{"nested":[1,{"y":"}]"}],"z":null},"E":1751132780369,"w":[[],{}],"s":"BTCUSDT","u":-1.5e-3,"t":5052328858,"v":"esc\"aped\\","p":"107407.88000000","q":"0.00024000","T":1751132780368,"m":true,"M":false,"n":null,"f":false}"#.to_owned(),
    TimeUnit::Millisecond, 1_751_132_780_368_000, 1_751_132_780_369_000)]
fn trade_shapes(
    #[case] frame: String,
    #[case] unit: TimeUnit,
    #[case] trade_time: i64,
    #[case] event_time: i64,
) {
    let got = parse_frame(&frame, &ctx(unit)).unwrap();
    assert_eq!(got, Frame::Trade(btc_trade(trade_time, event_time)));
}

#[test]
fn docs_example_with_b_a_keeps_exact_strings() {
    let Frame::Trade(t) = parse_frame(TRADE_PRE_2024, &ctx(TimeUnit::Millisecond)).unwrap() else {
        panic!("not a trade");
    };
    assert_eq!(t.symbol, "BNBBTC");
    assert_eq!(t.trade_id, 12345);
    assert_eq!(t.price, "0.001");
    assert_eq!(t.quantity, "100");
    assert_eq!(t.trade_time, 123_456_785_000);
    assert_eq!(t.event_time, 123_456_789_000);
    assert!(t.buyer_is_maker);
    assert_eq!(t.source_kind().unwrap(), Source::Stream);
}

#[test]
fn lower_case_symbol_is_upper_cased() {
    let frame = TRADE_2025.replace("BTCUSDT", "btcusdt");
    let Frame::Trade(t) = parse_frame(&frame, &ctx(TimeUnit::Millisecond)).unwrap() else {
        panic!("not a trade");
    };
    assert_eq!(t.symbol, "BTCUSDT");
}

#[rstest]
#[case::raw_ms(SHUTDOWN.to_owned(), TimeUnit::Millisecond, 1_770_123_456_789_000)]
#[case::raw_us(r#"{"e":"serverShutdown","E":1770123456789123}"#.to_owned(), TimeUnit::Microsecond, 1_770_123_456_789_123)]
#[case::combined_ms(
    combined("!serverShutdown", SHUTDOWN),
    TimeUnit::Millisecond,
    1_770_123_456_789_000
)]
#[case::with_unknown_field(r#"{"e":"serverShutdown","E":1770123456789,"reason":"upgrade"}"#.to_owned(), TimeUnit::Millisecond, 1_770_123_456_789_000)]
fn server_shutdown(#[case] frame: String, #[case] unit: TimeUnit, #[case] at: i64) {
    assert_eq!(
        parse_frame(&frame, &ctx(unit)).unwrap(),
        Frame::ServerShutdown { event_time_us: at }
    );
}

#[rstest]
#[case::subscribe_ok(r#"{"result":null,"id":1}"#, Frame::ControlReply { id: Some(1), result: "null".into() })]
#[case::list_subscriptions(r#"{"result":["btcusdt@trade","arbusdt@trade"],"id":7}"#,
    Frame::ControlReply { id: Some(7), result: r#"["btcusdt@trade","arbusdt@trade"]"#.into() })]
#[case::get_property(r#"{"result":true,"id":3}"#, Frame::ControlReply { id: Some(3), result: "true".into() })]
#[case::invalid_request(r#"{"code":2,"msg":"Invalid request: unknown variant `SUBSCRIB`","id":4}"#,
    Frame::ControlError { id: Some(4), code: 2, msg: "Invalid request: unknown variant `SUBSCRIB`".into() })]
#[case::invalid_json_escaped_msg(r#"{"code":3,"msg":"Invalid JSON: expected \"value\""}"#,
    Frame::ControlError { id: None, code: 3, msg: "Invalid JSON: expected \"value\"".into() })]
#[case::other_event(r#"{"e":"aggTrade","E":1,"s":"BTCUSDT"}"#, Frame::Other { event_type: Some("aggTrade".into()), stream: None })]
#[case::other_combined_event(r#"{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1}}"#,
    Frame::Other { event_type: Some("depthUpdate".into()), stream: Some("btcusdt@depth".into()) })]
#[case::empty_object("{}", Frame::Other { event_type: None, stream: None })]
fn control_and_other(#[case] frame: &str, #[case] expected: Frame) {
    assert_eq!(
        parse_frame(frame, &ctx(TimeUnit::Microsecond)).unwrap(),
        expected
    );
}

#[rstest]
#[case::missing_t(TRADE_2025.replace(r#""t":5052328858,"#, ""), r#"missing field "t" in trade frame"#)]
#[case::missing_p(TRADE_2025.replace(r#""p":"107407.88000000","#, ""), r#"missing field "p" in trade frame"#)]
#[case::missing_m(TRADE_2025.replace(r#","m":true"#, ""), r#"missing field "m" in trade frame"#)]
#[case::missing_big_e(TRADE_2025.replace(r#""E":1751132780369,"#, ""), r#"missing field "E" in trade frame"#)]
#[case::missing_e_in_data(r#"{"stream":"btcusdt@trade","data":{"E":1}}"#.to_owned(), r#"missing field "e" in combined frame "data""#)]
#[case::shutdown_without_time(r#"{"e":"serverShutdown"}"#.to_owned(), r#"missing field "E" in serverShutdown frame"#)]
#[case::exponent_price(TRADE_2025.replace("107407.88000000", "1e5"), r#"field "p": "1e5" is not a plain decimal"#)]
#[case::signed_qty(TRADE_2025.replace("0.00024000", "-0.1"), r#"field "q": "-0.1" is not a plain decimal"#)]
#[case::empty_price(TRADE_2025.replace("107407.88000000", ""), r#"field "p": "" is not a plain decimal"#)]
#[case::numeric_price(TRADE_2025.replace(r#""107407.88000000""#, "107407.88"), r#"field "p": 107407.88 is a JSON number, expected a decimal string"#)]
#[case::string_id(TRADE_2025.replace("5052328858", r#""5052328858""#), r#"field "t": "5052328858" is not an integer"#)]
#[case::negative_id(TRADE_2025.replace("5052328858", "-5"), r#"field "t": -5 is not a non-negative integer"#)]
#[case::fractional_time(TRADE_2025.replace("1751132780368", "1751132780368.5"), r#"field "T": 1751132780368.5 is not an integer"#)]
#[case::overflowing_id(TRADE_2025.replace("5052328858", "99999999999999999999"), r#"field "t": 99999999999999999999 is not an integer"#)]
#[case::ms_time_overflow(TRADE_2025.replace("1751132780368", "9223372036854775807"), r#"field "T": 9223372036854775807 overflows microseconds"#)]
#[case::negative_time(TRADE_2025.replace("1751132780368", "-1"), r#"field "T": -1 is a negative time"#)]
#[case::string_bool(TRADE_2025.replace(r#""m":true"#, r#""m":"true""#), r#"field "m": "true" is not a boolean"#)]
#[case::bad_symbol(TRADE_2025.replace("BTCUSDT", "BTC USDT"), r#"field "s": "BTC USDT" is not a Binance symbol"#)]
#[case::empty_symbol(TRADE_2025.replace("BTCUSDT", ""), r#"field "s": "" is not a Binance symbol"#)]
#[case::data_not_object(r#"{"stream":"btcusdt@trade","data":"x"}"#.to_owned(), r#"field "data": "x" is not a JSON object"#)]
#[case::long_value_truncated(TRADE_2025.replace("107407.88000000", &"9x".repeat(100)), r#"field "p": "9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9x9..."#)]
fn malformed_fields(#[case] frame: String, #[case] message_start: &str) {
    let err = parse_frame(&frame, &ctx(TimeUnit::Millisecond)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(message_start), "got: {msg}");
}

#[rstest]
#[case::empty("", "unexpected end of frame (truncated?)")]
#[case::array("[1,2]", "expected '{' at the start of the frame")]
#[case::truncated_in_string(&TRADE_2025[..TRADE_2025.find("107407").unwrap()], "unterminated string")]
#[case::truncated_after_value(&TRADE_2025[..TRADE_2025.find(",\"s\"").unwrap()], "unexpected end of frame (truncated?)")]
#[case::truncated_after_comma(&TRADE_2025[..=TRADE_2025.find(",\"s\"").unwrap()], "unexpected end of frame (truncated?)")]
#[case::truncated_after_colon(&TRADE_2025[..=TRADE_2025.find(":").unwrap()], "unexpected end of frame (truncated?)")]
#[case::missing_comma(r#"{"e":"trade" "E":1}"#, "expected ',' or '}' after an object member")]
#[case::trailing_garbage(r#"{"e":"trade"} x"#, "unexpected text after the closing '}'")]
#[case::two_objects(r#"{}{}"#, "unexpected text after the closing '}'")]
#[case::missing_colon(r#"{"e" "trade"}"#, "expected ':' after an object key")]
#[case::bare_word(r#"{"e":trade}"#, "expected true, false or null")]
#[case::unquoted_key(r#"{e:"trade"}"#, "expected '\"' to start a string")]
#[case::mismatched_brackets(r#"{"x":[1,2}}"#, "mismatched bracket")]
#[case::unterminated_unknown(r#"{"x":[1,2"#, "unterminated object or array")]
#[case::too_deep(&format!(r#"{{"x":{}1{}}}"#, "[".repeat(70), "]".repeat(70)), "nesting deeper than 64 levels")]
#[case::control_char_in_string("{\"e\":\"tr\nade\"}", "control character inside a string")]
#[case::missing_value(r#"{"e":}"#, "expected a JSON value")]
fn malformed_json(#[case] frame: &str, #[case] reason: &str) {
    match parse_frame(frame, &ctx(TimeUnit::Millisecond)).unwrap_err() {
        ParseError::Syntax { reason: r, .. } => assert_eq!(r, reason),
        other => panic!("expected a syntax error, got {other}"),
    }
}

#[test]
fn syntax_error_quotes_the_frame() {
    let err = parse_frame(r#"{"e":"trade","E":1,}"#, &ctx(TimeUnit::Millisecond)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("at byte 19"), "{msg}");
    assert!(msg.contains(r#"{\"e\":\"trade\""#), "{msg}");
}

// ------------------------------------------------------------------------------------------------
// REST rows
// ------------------------------------------------------------------------------------------------

#[test]
fn agg_trades_rows_parse_with_their_trade_id_range() {
    // The repository's copy of the documented example (tests/fixtures/binance/SOURCES.md).
    let rows: Vec<binance::wire::AggTrade> =
        serde_json::from_str(include_str!("../../tests/fixtures/binance/agg_trades.json")).unwrap();
    assert_eq!(rows.len(), 1);
    let a = &rows[0];
    assert_eq!(
        (a.agg_id, a.first_trade_id, a.last_trade_id),
        (26129, 27781, 27781)
    );
    assert_eq!(
        (a.price.as_str(), a.qty.as_str()),
        ("0.01633102", "4.70443515")
    );
    assert_eq!(a.time, 1_498_793_709_153);
    assert!(a.is_buyer_maker && a.is_best_match);
}

fn rest_row() -> RestTrade {
    let rows: Vec<RestTrade> =
        serde_json::from_str(include_str!("fixtures/rest_historical_trades_docs.json")).unwrap();
    rows.into_iter().next().unwrap()
}

#[rstest]
#[case::backfill_ms(Source::Backfill, TimeUnit::Millisecond, 1_499_865_549_590_000)]
#[case::batch_us(Source::Batch, TimeUnit::Microsecond, 1_499_865_549_590)]
fn rest_trade_row(#[case] source: Source, #[case] unit: TimeUnit, #[case] time: i64) {
    let t = parse_rest_trade(&rest_row(), "bnbbtc", unit, RECV, source).unwrap();
    assert_eq!(
        t,
        Trade {
            symbol: "BNBBTC".into(),
            trade_id: 28457,
            price: "4.00000100".into(),
            quantity: "12.00000000".into(),
            trade_time: time,
            event_time: time,
            receive_time: RECV,
            buyer_is_maker: true,
            source: source.as_str().into(),
        }
    );
}

#[rstest]
#[case::exponent_price(|r: &mut RestTrade| r.price = "4e-6".into(), r#"field "price": "4e-6" is not a plain decimal"#)]
#[case::signed_qty(|r: &mut RestTrade| r.qty = "+1".into(), r#"field "qty": "+1" is not a plain decimal"#)]
#[case::negative_id(|r: &mut RestTrade| r.id = -1, r#"field "id": -1 is not a non-negative integer"#)]
#[case::negative_time(|r: &mut RestTrade| r.time = -1, r#"field "time": -1 is negative"#)]
fn rest_trade_row_rejects(#[case] spoil: fn(&mut RestTrade), #[case] message: &str) {
    let mut row = rest_row();
    spoil(&mut row);
    let err = parse_rest_trade(
        &row,
        "BNBBTC",
        TimeUnit::Millisecond,
        RECV,
        Source::Backfill,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), message);
}

#[test]
fn rest_trade_row_rejects_bad_symbol() {
    let err = parse_rest_trade(
        &rest_row(),
        "BNB/BTC",
        TimeUnit::Millisecond,
        RECV,
        Source::Backfill,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"field "symbol": BNB/BTC is not a Binance symbol"#),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------------
// Scanner against serde_json, on generated frames
// ------------------------------------------------------------------------------------------------

fn decimal() -> impl Strategy<Value = String> {
    ("[0-9]{1,12}", proptest::option::of("[0-9]{1,12}")).prop_map(|(i, f)| match f {
        Some(f) => format!("{i}.{f}"),
        None => i,
    })
}

fn extra_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,3}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn trade_event()(
        symbol in "[A-Z0-9]{2,12}",
        id in 0i64..i64::MAX / 2,
        price in decimal(),
        qty in decimal(),
        e_time in 0i64..4_000_000_000_000,
        t_time in 0i64..4_000_000_000_000,
        maker in any::<bool>(),
        ba in proptest::option::of((any::<i64>(), any::<i64>())),
        extras in proptest::collection::vec(("[a-zA-Z_]{2,6}", extra_value()), 0..4),
        combined in any::<bool>(),
        pretty in any::<bool>(),
    ) -> (String, Trade, bool) {
        let mut obj = serde_json::Map::new();
        // serde_json sorts keys, so known and unknown keys interleave in many orders.
        for (k, v) in extras {
            obj.insert(format!("x{k}"), v);
        }
        obj.insert("e".into(), "trade".into());
        obj.insert("E".into(), e_time.into());
        obj.insert("s".into(), symbol.clone().into());
        obj.insert("t".into(), id.into());
        obj.insert("p".into(), price.clone().into());
        obj.insert("q".into(), qty.clone().into());
        if let Some((b, a)) = ba {
            obj.insert("b".into(), b.into());
            obj.insert("a".into(), a.into());
        }
        obj.insert("T".into(), t_time.into());
        obj.insert("m".into(), maker.into());
        obj.insert("M".into(), true.into());
        let mut v = serde_json::Value::Object(obj);
        if combined {
            v = serde_json::json!({"stream": format!("{}@trade", symbol.to_lowercase()), "data": v});
        }
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        let trade = Trade {
            symbol, trade_id: id, price, quantity: qty,
            trade_time: t_time * 1000, event_time: e_time * 1000, receive_time: RECV,
            buyer_is_maker: maker, source: "stream".into(),
        };
        (text, trade, combined)
    }
}

proptest! {
    #[test]
    fn scanner_agrees_with_serde((text, expected, combined) in trade_event()) {
        let got = parse_frame(&text, &ctx(TimeUnit::Millisecond)).unwrap();
        prop_assert_eq!(got, Frame::Trade(expected.clone()));
        // The serde wire types read the same frame to the same values.
        let ev: wire::TradeEvent<'_> = if combined {
            let c: wire::Combined<wire::TradeEvent<'_>> = serde_json::from_str(&text).unwrap();
            c.data
        } else {
            serde_json::from_str(&text).unwrap()
        };
        prop_assert_eq!(ev.trade_id, expected.trade_id);
        prop_assert_eq!(ev.price, expected.price.as_str());
        prop_assert_eq!(ev.quantity, expected.quantity.as_str());
    }

    #[test]
    fn scanner_never_panics(text in ".{0,200}") {
        let _ = parse_frame(&text, &ctx(TimeUnit::Millisecond));
    }

    #[test]
    fn scanner_never_panics_on_cut_frames(cut in 0usize..140) {
        let cut = cut.min(TRADE_2025.len());
        let r = parse_frame(&TRADE_2025[..cut], &ctx(TimeUnit::Millisecond));
        // A strict prefix of a frame is never a trade.
        prop_assert!(cut >= TRADE_2025.trim_end().len() || r.is_err());
    }
}
