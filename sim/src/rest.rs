//! REST market-data bodies computed from the tape (no I/O: parameters in, JSON text out).
//!
//! Parameter errors are Binance's (spot "Error codes"): `-1100` ILLEGAL_CHARS, `-1102`
//! MANDATORY_PARAM_EMPTY_OR_MALFORMED, `-1120` BAD_INTERVAL, `-1121` BAD_SYMBOL, `-1023`
//! START_TIME_GREATER_THAN_END_TIME, `-1127` MORE_THAN_XX_HOURS, all with HTTP 400.
//! Time parameters are accepted in ms or µs (values >= 10^14 are µs); the `X-MBX-TIME-UNIT:
//! MICROSECOND` header switches output timestamps to µs.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::SymbolSpec;
use crate::decimal::{signed_units_string, units_string};
use crate::frames::TimeUnit;
use crate::kline::{Agg, Interval, MINUTE_MS, parse_time_zone};
use crate::state::Shared;
use crate::tape::Tape;
use crate::trade::Trade;

// `ticker/24hr` (weights, rolling-window bodies) is its own concern, in `rest/ticker.rs`.
mod ticker;
#[cfg(test)]
use ticker::percent_string;
pub use ticker::{ticker_24hr, ticker_weight};

/// Binance: klines `limit` default 500, max 1000; trades and aggTrades the same.
const DEFAULT_LIMIT: u64 = 500;
/// See [`DEFAULT_LIMIT`].
const MAX_LIMIT: u64 = 1000;
/// aggTrades: "If both startTime and endTime are sent, time between startTime and endTime must
/// be less than 1 hour."
const AGG_WINDOW_US: i64 = 3_600_000_000;

/// A Binance error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (400 for parameter errors).
    pub status: StatusCode,
    /// Binance error code.
    pub code: i64,
    /// Binance error message.
    pub msg: String,
}

fn bad(code: i64, msg: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        code,
        msg: msg.into(),
    }
}

fn mandatory(name: &str) -> ApiError {
    bad(
        -1102,
        format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

fn illegal(name: &str, range: &str) -> ApiError {
    bad(
        -1100,
        format!("Illegal characters found in parameter '{name}'; legal range is '{range}'."),
    )
}

const SYMBOL_RANGE: &str = trade_proto::rules::SYMBOL_PATTERN;
const NUMBER_RANGE: &str = "^[0-9]{1,20}$";

/// The symbol index for the `symbol` parameter.
pub fn symbol_param(q: &HashMap<String, String>, tape: &Tape) -> Result<usize, ApiError> {
    let raw = q
        .get("symbol")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| mandatory("symbol"))?;
    if !trade_proto::rules::is_symbol(raw) {
        return Err(illegal("symbol", SYMBOL_RANGE));
    }
    tape.index_of(raw)
        .ok_or_else(|| bad(-1121, "Invalid symbol."))
}

fn u64_param(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Err(bad(-1105, format!("Parameter '{name}' was empty."))),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| illegal(name, NUMBER_RANGE)),
    }
}

/// A time parameter in µs (ms accepted; values >= 10^14 are taken as µs).
fn time_param(q: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    Ok(u64_param(q, name)?.map(|v| {
        let v = v.min(i64::MAX as u64 / 1000) as i64;
        if v >= 100_000_000_000_000 {
            v
        } else {
            v * 1000
        }
    }))
}

fn limit_param(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    Ok(u64_param(q, "limit")?
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT) as usize)
}

/// Parse `symbols=["A","B"]`.
fn symbols_param(raw: &str, tape: &Tape) -> Result<Vec<usize>, ApiError> {
    let range = r#"^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$"#;
    let list: Vec<String> = serde_json::from_str(raw).map_err(|_| illegal("symbols", range))?;
    if list.iter().any(|s| !trade_proto::rules::is_symbol(s)) {
        return Err(illegal("symbols", range));
    }
    list.iter()
        .map(|s| {
            tape.index_of(s)
                .ok_or_else(|| bad(-1121, "Invalid symbol."))
        })
        .collect()
}

fn last_id_at(tape: &Tape, sym: usize, now_us: i64) -> Option<u64> {
    let next = tape.id_before(sym, now_us + 1);
    (next > tape.symbols()[sym].spec.first_trade_id).then(|| next - 1)
}

/// `GET /api/v3/klines` and `uiKlines`.
pub fn klines(
    sh: &Shared,
    q: &HashMap<String, String>,
    unit: TimeUnit,
) -> Result<String, ApiError> {
    let tape = &sh.tape;
    let sym = symbol_param(q, tape)?;
    let interval_raw = q
        .get("interval")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| mandatory("interval"))?;
    let interval = Interval::parse(interval_raw).ok_or_else(|| bad(-1120, "Invalid interval."))?;
    let start = time_param(q, "startTime")?;
    let end = time_param(q, "endTime")?;
    let offset = match q.get("timeZone") {
        None => 0,
        Some(tz) => parse_time_zone(tz).ok_or_else(|| {
            bad(-1100, format!("Illegal characters found in parameter 'timeZone'; legal range is '[-12:00 to +14:00]'. Got {tz:?}."))
        })?,
    };
    let limit = limit_param(q)?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(bad(-1023, "Start time is greater than end time."));
    }
    let now_us = sh.clock.now_us();
    let now_ms = now_us.div_euclid(1000);
    let genesis_ms = tape.genesis_us().div_euclid(1000);
    let lo = interval.bucket_start(genesis_ms, offset);
    let hi_ms = end.map_or(now_ms, |e| e.div_euclid(1000).min(now_ms));
    let mut opens = Vec::with_capacity(limit);
    if hi_ms >= genesis_ms {
        let hi = interval.bucket_start(hi_ms, offset);
        match start {
            Some(s) => {
                let s_ms = (s + 999).div_euclid(1000);
                let b = interval.bucket_start(s_ms, offset);
                let mut open = if b == s_ms {
                    b
                } else {
                    interval.next_start(b, offset)
                };
                open = open.max(lo);
                while open <= hi && opens.len() < limit {
                    opens.push(open);
                    open = interval.next_start(open, offset);
                }
            }
            None => {
                let mut open = hi;
                while open >= lo && opens.len() < limit {
                    opens.push(open);
                    open = interval.prev_start(open, offset);
                }
                opens.reverse();
            }
        }
    }
    let mut rows = Vec::with_capacity(opens.len());
    for open in opens {
        let next = interval.next_start(open, offset);
        let to_us = (next * 1000 - 1).min(now_us);
        let agg = tape.agg_between(sym, open * 1000, to_us);
        let fallback = || {
            tape.last_trade_before(sym, open * 1000)
                .map(|t| t.price)
                .unwrap_or_else(|| tape.anchor_price(sym, open.div_euclid(MINUTE_MS)))
        };
        rows.push(kline_row(&agg, open, next - 1, unit, fallback));
    }
    Ok(Value::Array(rows).to_string())
}

/// One 12-field kline row.
pub fn kline_row(
    agg: &Agg,
    open_ms: i64,
    close_ms: i64,
    unit: TimeUnit,
    empty_price: impl FnOnce() -> u64,
) -> Value {
    let (o, h, l, c) = if agg.count == 0 {
        let p = empty_price();
        (p, p, p, p)
    } else {
        (agg.open, agg.high, agg.low, agg.close)
    };
    let (open_t, close_t) = match unit {
        TimeUnit::Millisecond => (open_ms, close_ms),
        TimeUnit::Microsecond => (open_ms * 1000, close_ms * 1000 + 999),
    };
    json!([
        open_t,
        units_string(o.into()),
        units_string(h.into()),
        units_string(l.into()),
        units_string(c.into()),
        units_string(agg.volume),
        close_t,
        units_string(agg.quote_volume),
        agg.count,
        units_string(agg.taker_buy_volume),
        units_string(agg.taker_buy_quote),
        "0"
    ])
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RateLimit {
    rate_limit_type: &'static str,
    interval: &'static str,
    interval_num: u32,
    limit: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SymbolInfo {
    symbol: String,
    status: String,
    base_asset: String,
    base_asset_precision: u32,
    quote_asset: String,
    quote_precision: u32,
    quote_asset_precision: u32,
    base_commission_precision: u32,
    quote_commission_precision: u32,
    order_types: [&'static str; 7],
    iceberg_allowed: bool,
    oco_allowed: bool,
    oto_allowed: bool,
    opo_allowed: bool,
    quote_order_qty_market_allowed: bool,
    allow_trailing_stop: bool,
    cancel_replace_allowed: bool,
    amend_allowed: bool,
    peg_instructions_allowed: bool,
    is_spot_trading_allowed: bool,
    is_margin_trading_allowed: bool,
    filters: Vec<Value>,
    permissions: Vec<String>,
    permission_sets: Vec<Vec<&'static str>>,
    default_self_trade_prevention_mode: &'static str,
    allowed_self_trade_prevention_modes: [&'static str; 4],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeInfo {
    timezone: &'static str,
    server_time: i64,
    rate_limits: Vec<RateLimit>,
    exchange_filters: Vec<Value>,
    symbols: Vec<SymbolInfo>,
}

fn symbol_info(s: &SymbolSpec) -> SymbolInfo {
    let u = |v: u64| units_string(v.into());
    SymbolInfo {
        symbol: s.symbol.clone(),
        status: s.status.clone(),
        base_asset: s.base_asset.clone(),
        base_asset_precision: 8,
        quote_asset: s.quote_asset.clone(),
        quote_precision: 8,
        quote_asset_precision: 8,
        base_commission_precision: 8,
        quote_commission_precision: 8,
        order_types: [
            "LIMIT",
            "LIMIT_MAKER",
            "MARKET",
            "STOP_LOSS",
            "STOP_LOSS_LIMIT",
            "TAKE_PROFIT",
            "TAKE_PROFIT_LIMIT",
        ],
        iceberg_allowed: true,
        oco_allowed: true,
        oto_allowed: true,
        opo_allowed: true,
        quote_order_qty_market_allowed: true,
        allow_trailing_stop: true,
        cancel_replace_allowed: true,
        amend_allowed: true,
        peg_instructions_allowed: true,
        is_spot_trading_allowed: true,
        is_margin_trading_allowed: true,
        filters: vec![
            json!({"filterType": "PRICE_FILTER", "minPrice": u(s.min_price), "maxPrice": u(s.max_price), "tickSize": u(s.tick_size)}),
            json!({"filterType": "LOT_SIZE", "minQty": u(s.min_qty), "maxQty": u(s.max_qty), "stepSize": u(s.step_size)}),
            json!({"filterType": "ICEBERG_PARTS", "limit": 10}),
            json!({"filterType": "MARKET_LOT_SIZE", "minQty": u(0), "maxQty": u(s.max_qty / 100), "stepSize": u(0)}),
            json!({"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000, "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000}),
            json!({"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2", "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5}),
            json!({"filterType": "NOTIONAL", "minNotional": u(s.min_notional), "applyMinToMarket": true, "maxNotional": u(s.max_notional), "applyMaxToMarket": false, "avgPriceMins": 5}),
            json!({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200}),
            json!({"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5}),
        ],
        permissions: Vec::new(),
        permission_sets: vec![vec![
            "SPOT",
            "MARGIN",
            "TRD_GRP_004",
            "TRD_GRP_005",
            "TRD_GRP_006",
        ]],
        default_self_trade_prevention_mode: "EXPIRE_MAKER",
        allowed_self_trade_prevention_modes: [
            "EXPIRE_TAKER",
            "EXPIRE_MAKER",
            "EXPIRE_BOTH",
            "DECREMENT",
        ],
    }
}

/// `GET /api/v3/exchangeInfo` (`symbol`, `symbols`, `symbolStatus`).
pub fn exchange_info(sh: &Shared, q: &HashMap<String, String>) -> Result<String, ApiError> {
    let meta = sh.meta.read().unwrap_or_else(|e| e.into_inner()).clone();
    let chosen: Vec<&SymbolSpec> = if q.contains_key("symbol") {
        if q.contains_key("symbols") {
            return Err(bad(-1128, "Combination of optional parameters invalid."));
        }
        let i = symbol_param(q, &sh.tape)?;
        vec![&meta[i]]
    } else if let Some(raw) = q.get("symbols") {
        symbols_param(raw, &sh.tape)?
            .into_iter()
            .map(|i| &meta[i])
            .collect()
    } else if let Some(st) = q.get("symbolStatus") {
        if !crate::config::SYMBOL_STATUSES.contains(&st.as_str()) {
            return Err(bad(-1122, format!("Invalid symbolStatus {st:?}.")));
        }
        meta.iter().filter(|s| &s.status == st).collect()
    } else {
        meta.iter().collect()
    };
    let limit = sh.faults.lock().map(|f| f.weight_limit).unwrap_or(0);
    let weight_limit = if limit > 0 {
        limit
    } else {
        sh.config.weight_limit
    };
    let info = ExchangeInfo {
        timezone: "UTC",
        server_time: sh.now_ms(),
        rate_limits: vec![
            RateLimit {
                rate_limit_type: "REQUEST_WEIGHT",
                interval: "MINUTE",
                interval_num: 1,
                limit: weight_limit,
            },
            RateLimit {
                rate_limit_type: "ORDERS",
                interval: "SECOND",
                interval_num: 10,
                limit: 100,
            },
            RateLimit {
                rate_limit_type: "ORDERS",
                interval: "DAY",
                interval_num: 1,
                limit: 200_000,
            },
            RateLimit {
                rate_limit_type: "RAW_REQUESTS",
                interval: "MINUTE",
                interval_num: 5,
                limit: 61_000,
            },
        ],
        exchange_filters: Vec::new(),
        symbols: chosen.into_iter().map(symbol_info).collect(),
    };
    serde_json::to_string(&info).map_err(|e| bad(-1000, e.to_string()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TradeRow {
    id: u64,
    price: String,
    qty: String,
    quote_qty: String,
    time: i64,
    is_buyer_maker: bool,
    is_best_match: bool,
}

fn trade_row(t: &Trade, unit: TimeUnit) -> TradeRow {
    TradeRow {
        id: t.id,
        price: units_string(t.price.into()),
        qty: units_string(t.qty.into()),
        quote_qty: units_string(crate::decimal::mul_units(t.price, t.qty)),
        time: unit.from_us(t.time_us),
        is_buyer_maker: t.is_buyer_maker,
        is_best_match: true,
    }
}

/// `GET /api/v3/trades` (recent) and `historicalTrades` (`fromId`).
pub fn trades(
    sh: &Shared,
    q: &HashMap<String, String>,
    unit: TimeUnit,
    historical: bool,
) -> Result<String, ApiError> {
    let tape = &sh.tape;
    let sym = symbol_param(q, tape)?;
    let limit = limit_param(q)?;
    let from_id = if historical {
        u64_param(q, "fromId")?
    } else {
        None
    };
    let now_us = sh.clock.now_us();
    let Some(last) = last_id_at(tape, sym, now_us) else {
        return Ok("[]".into());
    };
    let first_possible = tape.symbols()[sym].spec.first_trade_id;
    let from = match from_id {
        Some(f) => f,
        None => (last + 1).saturating_sub(limit as u64).max(first_possible),
    };
    let rows: Vec<TradeRow> = tape
        .trades_from_id(sym, from, last, limit)
        .iter()
        .map(|t| trade_row(t, unit))
        .collect();
    serde_json::to_string(&rows).map_err(|e| bad(-1000, e.to_string()))
}

#[derive(Serialize)]
struct AggRow {
    a: u64,
    p: String,
    q: String,
    f: u64,
    l: u64,
    #[serde(rename = "T")]
    t: i64,
    m: bool,
    #[serde(rename = "M")]
    best: bool,
}

/// `GET /api/v3/aggTrades` (`fromId`, `startTime`, `endTime`, `limit`).
pub fn agg_trades(
    sh: &Shared,
    q: &HashMap<String, String>,
    unit: TimeUnit,
) -> Result<String, ApiError> {
    let tape = &sh.tape;
    let sym = symbol_param(q, tape)?;
    let limit = limit_param(q)?;
    let from_id = u64_param(q, "fromId")?;
    let start = time_param(q, "startTime")?;
    let end = time_param(q, "endTime")?;
    let now_us = sh.clock.now_us();
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(bad(-1023, "Start time is greater than end time."));
        }
        if e - s > AGG_WINDOW_US {
            return Err(bad(
                -1127,
                "More than 1 hours between startTime and endTime.",
            ));
        }
    }
    let until = end.map_or(now_us, |e| e.min(now_us));
    let (from, lower_time) = match (from_id, start, end) {
        (Some(f), _, _) => (f, i64::MIN),
        (None, Some(s), _) => (tape.agg_id_before(sym, s), s),
        (None, None, Some(e)) => {
            let s = e - AGG_WINDOW_US;
            (tape.agg_id_before(sym, s), s)
        }
        (None, None, None) => {
            let next = tape.agg_id_before(sym, now_us + 1);
            let first = tape.symbols()[sym].spec.first_agg_id;
            ((next).saturating_sub(limit as u64).max(first), i64::MIN)
        }
    };
    let rows: Vec<AggRow> = tape
        .agg_trades_from(sym, from, until, limit)
        .iter()
        .filter(|fills| fills[0].time_us >= lower_time)
        .map(|fills| {
            let f0 = fills[0];
            let qty: u128 = fills.iter().map(|t| u128::from(t.qty)).sum();
            AggRow {
                a: f0.agg_id,
                p: units_string(f0.price.into()),
                q: units_string(qty),
                f: f0.id,
                l: fills[fills.len() - 1].id,
                t: unit.from_us(f0.time_us),
                m: f0.is_buyer_maker,
                best: true,
            }
        })
        .collect();
    serde_json::to_string(&rows).map_err(|e| bad(-1000, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_three_decimals() {
        assert_eq!(percent_string(-9_499_999_800, 9_900_000_000), "-95.959");
        assert_eq!(percent_string(1_000_000, 100_000_000), "1.000");
        assert_eq!(percent_string(0, 0), "0.000");
    }

    #[test]
    fn ticker_weights() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(ticker_weight(&q("symbol", "BTCUSDT")), 2);
        assert_eq!(ticker_weight(&q("symbols", r#"["BTCUSDT","ARBUSDT"]"#)), 2);
        let many: Vec<String> = (0..30).map(|i| format!("S{i}USDT")).collect();
        assert_eq!(
            ticker_weight(&q("symbols", &serde_json::to_string(&many).unwrap())),
            40
        );
        assert_eq!(ticker_weight(&HashMap::new()), 80);
    }
}
