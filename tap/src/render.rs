//! How a trade is printed.
//!
//! - JSON lines: exactly the proto's fields under their proto names (which are also the BigQuery
//!   column names), decimals as the exact strings Binance sent, times as integer microseconds
//!   since the epoch, so a line can be compared with `market.trades` or fed to `jq`.
//! - Table: for eyes; times in UTC ISO 8601 with microseconds, and the taker side (`buy` when
//!   the buyer took liquidity, i.e. `buyer_is_maker` is false).

use serde::Serialize;
use trade_proto::Trade;

/// One JSON line per trade; field order is the proto's.
#[derive(Serialize)]
struct JsonTrade<'a> {
    symbol: &'a str,
    trade_id: i64,
    price: &'a str,
    quantity: &'a str,
    trade_time: i64,
    event_time: i64,
    receive_time: i64,
    buyer_is_maker: bool,
    source: &'a str,
}

/// The trade as one line of JSON (no newline).
pub fn json_line(t: &Trade) -> String {
    let row = JsonTrade {
        symbol: &t.symbol,
        trade_id: t.trade_id,
        price: &t.price,
        quantity: &t.quantity,
        trade_time: t.trade_time,
        event_time: t.event_time,
        receive_time: t.receive_time,
        buyer_is_maker: t.buyer_is_maker,
        source: &t.source,
    };
    // Serialising a struct of strings, integers and a bool cannot fail.
    serde_json::to_string(&row).unwrap_or_default()
}

/// The table header, aligned with [`table_row`].
pub fn table_header() -> String {
    format!(
        "{:<10} {:>12} {:>18} {:>16} {:<4} {:<27} {:<8}",
        "symbol", "trade_id", "price", "quantity", "side", "trade_time (UTC)", "source"
    )
}

/// One aligned table row.
pub fn table_row(t: &Trade) -> String {
    let side = if t.buyer_is_maker { "sell" } else { "buy" };
    format!(
        "{:<10} {:>12} {:>18} {:>16} {:<4} {:<27} {:<8}",
        t.symbol,
        t.trade_id,
        t.price,
        t.quantity,
        side,
        utc_micros(t.trade_time),
        t.source
    )
}

/// `2025-06-28T17:46:20.368123Z` from microseconds since the epoch (UTC). A value outside
/// jiff's years -9999..=9999 (no real trade time) is printed as the bare integer.
pub fn utc_micros(micros: i64) -> String {
    match jiff::Timestamp::from_microsecond(micros) {
        // jiff's RFC 3339 form, the precision fixed at microseconds (what the contracts carry).
        Ok(ts) => format!("{ts:.6}"),
        Err(_) => micros.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn trade() -> Trade {
        Trade {
            symbol: "BTCUSDT".into(),
            trade_id: 5_052_328_858,
            price: "107407.88000000".into(),
            quantity: "0.00024000".into(),
            trade_time: 1_751_132_780_368_123,
            event_time: 1_751_132_780_369_000,
            receive_time: 1_751_132_780_371_999,
            buyer_is_maker: true,
            source: "stream".into(),
        }
    }

    #[test]
    fn a_json_line_keeps_every_field_exactly() {
        let line = json_line(&trade());
        assert_eq!(
            line,
            r#"{"symbol":"BTCUSDT","trade_id":5052328858,"price":"107407.88000000","quantity":"0.00024000","trade_time":1751132780368123,"event_time":1751132780369000,"receive_time":1751132780371999,"buyer_is_maker":true,"source":"stream"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["price"], "107407.88000000", "a string, never a float");
    }

    #[test]
    fn a_table_row_lines_up_with_the_header() {
        let row = table_row(&trade());
        assert_eq!(row.len(), table_header().len());
        assert!(row.contains(" sell "), "{row}");
        assert!(row.contains("2025-06-28T17:46:20.368123Z"), "{row}");
    }

    #[rstest]
    #[case::epoch(0, "1970-01-01T00:00:00.000000Z")]
    #[case::before_epoch(-1, "1969-12-31T23:59:59.999999Z")]
    #[case::leap_day(951_782_400_000_000, "2000-02-29T00:00:00.000000Z")]
    #[case::binance_launch(1_500_000_000_123_456, "2017-07-14T02:40:00.123456Z")]
    #[case::end_of_2024(1_735_689_599_999_999, "2024-12-31T23:59:59.999999Z")]
    #[case::year_2100_not_leap(4_107_542_400_000_000, "2100-03-01T00:00:00.000000Z")]
    #[case::out_of_range(i64::MAX, "9223372036854775807")]
    fn times_print_as_utc(#[case] micros: i64, #[case] want: &str) {
        assert_eq!(utc_micros(micros), want);
    }
}
