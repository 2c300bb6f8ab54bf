//! The REST wire types against Binance's documented payloads (see `fixtures/SOURCES.md`).

use binance::wire::{
    ApiError, ControlReply, ControlRequest, ExchangeInfo, Kline, RestTrade, SymbolFilter,
    Ticker24hr,
};
use rstest::rstest;

#[test]
fn historical_trades_rows() {
    let rows: Vec<RestTrade> =
        serde_json::from_str(include_str!("fixtures/rest_historical_trades_docs.json")).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.id, 28457);
    assert_eq!(r.price, "4.00000100");
    assert_eq!(r.qty, "12.00000000");
    assert_eq!(r.quote_qty, "48.000012");
    assert_eq!(r.time, 1_499_865_549_590);
    assert!(r.is_buyer_maker);
    assert!(r.is_best_match);
}

#[test]
fn rest_trade_ignores_unknown_fields() {
    let r: RestTrade = serde_json::from_str(
        r#"{"id":1,"price":"1.0","qty":"2.0","quoteQty":"2.0","time":5,"isBuyerMaker":false,"isBestMatch":true,"newField":[1]}"#,
    )
    .unwrap();
    assert_eq!(r.id, 1);
    assert!(!r.is_buyer_maker);
}

#[test]
fn kline_rows_are_12_element_arrays() {
    let rows: Vec<Kline> =
        serde_json::from_str(include_str!("fixtures/rest_klines_docs.json")).unwrap();
    let k = &rows[0];
    assert_eq!(k.open_time, 1_499_040_000_000);
    assert_eq!(k.open, "0.01634790");
    assert_eq!(k.high, "0.80000000");
    assert_eq!(k.low, "0.01575800");
    assert_eq!(k.close, "0.01577100");
    assert_eq!(k.volume, "148976.11427815");
    assert_eq!(k.close_time, 1_499_644_799_999);
    assert_eq!(k.quote_volume, "2434.19055334");
    assert_eq!(k.trade_count, 308);
    assert_eq!(k.taker_buy_base_volume, "1756.87402397");
    assert_eq!(k.taker_buy_quote_volume, "28.46694368");
    // And back to Binance's array, byte for byte.
    assert_eq!(
        serde_json::to_string(&rows).unwrap(),
        include_str!("fixtures/rest_klines_docs.json").trim()
    );
}

#[rstest]
#[case::eleven_elements(r#"[1,"1","1","1","1","1",2,"1",3,"1","1"]"#)]
#[case::string_open_time(r#"["1","1","1","1","1","1",2,"1",3,"1","1","0"]"#)]
#[case::thirteen_elements(r#"[1,"1","1","1","1","1",2,"1",3,"1","1","0","x"]"#)]
fn kline_rejects_bad_rows(#[case] row: &str) {
    assert!(serde_json::from_str::<Kline>(row).is_err());
}

const EXCHANGE_INFO: &str = r#"{
  "timezone":"UTC","serverTime":1751132780369,
  "rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}],
  "exchangeFilters":[],
  "symbols":[
    {"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,
     "quoteAsset":"USDT","quotePrecision":8,"quoteAssetPrecision":8,
     "orderTypes":["LIMIT","LIMIT_MAKER","MARKET","STOP_LOSS_LIMIT","TAKE_PROFIT_LIMIT"],
     "icebergAllowed":true,"isSpotTradingAllowed":true,
     "filters":[
       {"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},
       {"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"},
       {"filterType":"ICEBERG_PARTS","limit":10},
       {"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,"maxNotional":"9000000.00000000","applyMaxToMarket":false,"avgPriceMins":5}
     ],
     "permissions":[],"permissionSets":[["SPOT","MARGIN","TRD_GRP_004"]],
     "defaultSelfTradePreventionMode":"EXPIRE_MAKER"},
    {"symbol":"OLDUSDT","status":"BREAK","baseAsset":"OLD","baseAssetPrecision":8,
     "quoteAsset":"USDT","quotePrecision":8,
     "orderTypes":["LIMIT"],
     "filters":[{"filterType":"MIN_NOTIONAL","minNotional":"10.00000000","applyToMarket":true,"avgPriceMins":5}]}
  ]}"#;

#[test]
fn exchange_info_symbols_and_filters() {
    let info: ExchangeInfo = serde_json::from_str(EXCHANGE_INFO).unwrap();
    assert_eq!(info.rate_limits[0].limit, 6000);
    let btc = &info.symbols[0];
    assert_eq!(btc.status, "TRADING");
    assert_eq!(btc.base_asset, "BTC");
    assert_eq!(btc.quote_asset_precision, 8);
    assert_eq!(btc.order_types.len(), 5);
    assert_eq!(
        btc.permission_sets,
        vec![vec!["SPOT", "MARGIN", "TRD_GRP_004"]]
    );
    assert_eq!(btc.price_filter().unwrap().tick_size, "0.01000000");
    assert_eq!(btc.lot_size().unwrap().step_size, "0.00001000");
    let n = btc.notional().unwrap();
    assert_eq!(n.min_notional, "5.00000000");
    assert_eq!(n.max_notional.as_deref(), Some("9000000.00000000"));
    assert!(btc.filters.contains(&SymbolFilter::Other));

    // Legacy payload: MIN_NOTIONAL, quotePrecision only, no permissionSets.
    let old = &info.symbols[1];
    assert_eq!(old.status, "BREAK");
    assert_eq!(old.quote_asset_precision, 8);
    assert!(old.permission_sets.is_empty());
    assert!(old.price_filter().is_none());
    let n = old.notional().unwrap();
    assert_eq!(n.min_notional, "10.00000000");
    assert_eq!(n.max_notional, None);
}

#[test]
fn ticker_24hr_continuity_fields() {
    let t: Vec<Ticker24hr> = serde_json::from_str(
        r#"[{"symbol":"BTCUSDT","priceChange":"-94.99999800","openTime":1499783499040,"closeTime":1499869899040,
             "firstId":28385,"lastId":28460,"count":76,"volume":"8913.30000000","lastPrice":"4.00000200"}]"#,
    )
    .unwrap();
    assert_eq!(t[0].last_id - t[0].first_id + 1, t[0].count);
    assert_eq!(t[0].volume, "8913.30000000");
}

#[rstest]
#[case::invalid_symbol(include_str!("fixtures/rest_invalid_symbol.json"), -1121, "Invalid symbol.")]
#[case::restricted_location(include_str!("fixtures/rest_451_restricted.json"), 0, "Service unavailable from a restricted location")]
#[case::too_much_weight(r#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}"#, -1003, "Too much request weight")]
fn api_error_bodies(#[case] body: &str, #[case] code: i64, #[case] msg_start: &str) {
    let e: ApiError = serde_json::from_str(body).unwrap();
    assert_eq!(e.code, code);
    assert!(e.msg.starts_with(msg_start), "{}", e.msg);
}

#[test]
fn control_request_and_reply() {
    let req = ControlRequest {
        method: "SUBSCRIBE".into(),
        params: vec!["btcusdt@trade".into()],
        id: 1,
    };
    assert_eq!(
        serde_json::to_string(&req).unwrap(),
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#
    );
    let reply: ControlReply = serde_json::from_str(r#"{"result":null,"id":1}"#).unwrap();
    assert_eq!(reply.id, Some(1));
    assert!(reply.result.is_null());
}

#[test]
fn symbol_without_any_quote_precision_is_rejected_with_its_name() {
    let err = serde_json::from_str::<binance::wire::SymbolInfo>(
        r#"{"symbol":"XUSDT","status":"TRADING","baseAsset":"X","baseAssetPrecision":8,"quoteAsset":"USDT"}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("symbol XUSDT: missing field `quoteAssetPrecision`"),
        "{err}"
    );
}
