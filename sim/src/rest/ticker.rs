//! `GET /api/v3/ticker/24hr`: its request weight and the rolling 24-hour window bodies (full
//! and `type=MINI`), from the tape.

use super::*;

/// Rolling window of `ticker/24hr`.
const DAY_US: i64 = 86_400_000_000;

/// Weight of `ticker/24hr`: 2 for 1-20 symbols, 40 for 21-100, 80 above or for all.
pub fn ticker_weight(q: &HashMap<String, String>) -> u32 {
    if q.contains_key("symbol") {
        return 2;
    }
    match q.get("symbols") {
        Some(raw) => match serde_json::from_str::<Vec<String>>(raw) {
            Ok(l) if l.len() <= 20 => 2,
            Ok(l) if l.len() <= 100 => 40,
            Ok(_) => 80,
            Err(_) => 2,
        },
        None => 80,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TickerFull {
    symbol: String,
    price_change: String,
    price_change_percent: String,
    weighted_avg_price: String,
    prev_close_price: String,
    last_price: String,
    last_qty: String,
    bid_price: String,
    bid_qty: String,
    ask_price: String,
    ask_qty: String,
    open_price: String,
    high_price: String,
    low_price: String,
    volume: String,
    quote_volume: String,
    open_time: i64,
    close_time: i64,
    first_id: i64,
    last_id: i64,
    count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TickerMini {
    symbol: String,
    open_price: String,
    high_price: String,
    low_price: String,
    last_price: String,
    volume: String,
    quote_volume: String,
    open_time: i64,
    close_time: i64,
    first_id: i64,
    last_id: i64,
    count: u64,
}

pub(super) fn percent_string(change: i128, open: u64) -> String {
    if open == 0 {
        return "0.000".into();
    }
    // Thousandths of a percent, truncated towards zero like Binance.
    let milli = change * 100_000 / i128::from(open);
    let sign = if milli < 0 { "-" } else { "" };
    let m = milli.unsigned_abs();
    format!("{sign}{}.{:03}", m / 1000, m % 1000)
}

fn ticker_value(tape: &Tape, sym: usize, now_us: i64, unit: TimeUnit, mini: bool) -> Value {
    let spec = &tape.symbols()[sym].spec;
    let open_us = now_us - DAY_US;
    let agg = tape.agg_between(sym, open_us, now_us);
    let u = |v: u64| units_string(v.into());
    let (first_id, last_id) = if agg.count == 0 {
        (-1, -1)
    } else {
        (agg.first_id as i64, agg.last_id as i64)
    };
    let (open_t, close_t) = (unit.from_us(open_us), unit.from_us(now_us));
    if mini {
        return serde_json::to_value(TickerMini {
            symbol: spec.symbol.clone(),
            open_price: u(agg.open),
            high_price: u(agg.high),
            low_price: u(agg.low),
            last_price: u(agg.close),
            volume: units_string(agg.volume),
            quote_volume: units_string(agg.quote_volume),
            open_time: open_t,
            close_time: close_t,
            first_id,
            last_id,
            count: agg.count,
        })
        .unwrap_or(Value::Null);
    }
    let prev_close = tape.last_trade_before(sym, open_us).map_or(0, |t| t.price);
    let weighted = (agg.quote_volume * u128::from(crate::decimal::SCALE))
        .checked_div(agg.volume)
        .unwrap_or(0);
    let bid = if agg.close_buyer_maker {
        agg.close
    } else {
        agg.close.saturating_sub(spec.tick_size)
    };
    let change = i128::from(agg.close) - i128::from(agg.open);
    serde_json::to_value(TickerFull {
        symbol: spec.symbol.clone(),
        price_change: signed_units_string(change),
        price_change_percent: percent_string(change, agg.open),
        weighted_avg_price: units_string(weighted),
        prev_close_price: u(prev_close),
        last_price: u(agg.close),
        last_qty: u(agg.close_qty),
        bid_price: u(bid),
        bid_qty: u(spec.step_size * 1000),
        ask_price: u(if agg.count == 0 {
            0
        } else {
            bid + spec.tick_size
        }),
        ask_qty: u(spec.step_size * 700),
        open_price: u(agg.open),
        high_price: u(agg.high),
        low_price: u(agg.low),
        volume: units_string(agg.volume),
        quote_volume: units_string(agg.quote_volume),
        open_time: open_t,
        close_time: close_t,
        first_id,
        last_id,
        count: agg.count,
    })
    .unwrap_or(Value::Null)
}

/// `GET /api/v3/ticker/24hr` (`symbol` or `symbols`, `type=FULL|MINI`).
pub fn ticker_24hr(
    sh: &Shared,
    q: &HashMap<String, String>,
    unit: TimeUnit,
) -> Result<String, ApiError> {
    let tape = &sh.tape;
    let mini = match q.get("type").map(String::as_str) {
        None | Some("FULL") => false,
        Some("MINI") => true,
        Some(other) => {
            return Err(bad(
                -1100,
                format!(
                    "Illegal characters found in parameter 'type'; legal range is 'FULL, MINI'. Got {other:?}."
                ),
            ));
        }
    };
    let now_us = sh.clock.now_us();
    if q.contains_key("symbol") {
        if q.contains_key("symbols") {
            return Err(bad(-1128, "Combination of optional parameters invalid."));
        }
        let sym = symbol_param(q, tape)?;
        return Ok(ticker_value(tape, sym, now_us, unit, mini).to_string());
    }
    let syms: Vec<usize> = match q.get("symbols") {
        Some(raw) => symbols_param(raw, tape)?,
        None => (0..tape.len()).collect(),
    };
    let all: Vec<Value> = syms
        .into_iter()
        .map(|i| ticker_value(tape, i, now_us, unit, mini))
        .collect();
    Ok(Value::Array(all).to_string())
}
