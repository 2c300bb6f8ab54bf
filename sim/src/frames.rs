//! Byte-exact WebSocket payloads: trade events, combined wrappers, `serverShutdown`.
//!
//! Key order and types follow the real frame quoted in BINANCE.md:
//! `{"e":"trade","E":1751132780369,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000",
//! "q":"0.00024000","T":1751132780368,"m":true,"M":true}` (the `b`/`a` order ids were removed by
//! Binance on 2024-06-18). Written by hand into a byte buffer: this is the hot path.

use crate::decimal::{push_int, push_uint, push_units};
use crate::trade::Trade;

/// Unit of `E` and `T` (`timeUnit=MICROSECOND` in the stream URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Milliseconds (Binance's default).
    #[default]
    Millisecond,
    /// Microseconds.
    Microsecond,
}

impl TimeUnit {
    /// Parse the `timeUnit` query value (Binance accepts `MICROSECOND`/`microsecond`,
    /// `MILLISECOND`/`millisecond`).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_uppercase().as_str() {
            "MICROSECOND" => Some(Self::Microsecond),
            "MILLISECOND" => Some(Self::Millisecond),
            _ => None,
        }
    }

    /// A µs timestamp in this unit.
    #[inline]
    pub fn from_us(self, us: i64) -> i64 {
        match self {
            Self::Millisecond => us.div_euclid(1000),
            Self::Microsecond => us,
        }
    }
}

/// Append one trade event. `stream` (e.g. `btcusdt@trade`) is used only when `combined`.
#[inline]
pub fn push_trade_frame(
    out: &mut Vec<u8>,
    trade: &Trade,
    symbol: &str,
    stream: &str,
    event_time_us: i64,
    unit: TimeUnit,
    combined: bool,
) {
    if combined {
        out.extend_from_slice(b"{\"stream\":\"");
        out.extend_from_slice(stream.as_bytes());
        out.extend_from_slice(b"\",\"data\":");
    }
    out.extend_from_slice(b"{\"e\":\"trade\",\"E\":");
    push_int(out, unit.from_us(event_time_us));
    out.extend_from_slice(b",\"s\":\"");
    out.extend_from_slice(symbol.as_bytes());
    out.extend_from_slice(b"\",\"t\":");
    push_uint(out, u128::from(trade.id));
    out.extend_from_slice(b",\"p\":\"");
    push_units(out, u128::from(trade.price));
    out.extend_from_slice(b"\",\"q\":\"");
    push_units(out, u128::from(trade.qty));
    out.extend_from_slice(b"\",\"T\":");
    push_int(out, unit.from_us(trade.time_us));
    out.extend_from_slice(if trade.is_buyer_maker {
        b",\"m\":true,\"M\":true}"
    } else {
        b",\"m\":false,\"M\":true}"
    });
    if combined {
        out.push(b'}');
    }
}

/// One trade event as a `String`.
pub fn trade_frame(
    trade: &Trade,
    symbol: &str,
    stream: &str,
    event_time_us: i64,
    unit: TimeUnit,
    combined: bool,
) -> String {
    let mut out = Vec::with_capacity(192);
    push_trade_frame(
        &mut out,
        trade,
        symbol,
        stream,
        event_time_us,
        unit,
        combined,
    );
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// The `serverShutdown` event: raw `{"e":"serverShutdown","E":..}`, combined under the
/// `!serverShutdown` stream.
pub fn server_shutdown_frame(event_time_us: i64, unit: TimeUnit, combined: bool) -> String {
    let e = unit.from_us(event_time_us);
    if combined {
        format!(r#"{{"stream":"!serverShutdown","data":{{"e":"serverShutdown","E":{e}}}}}"#)
    } else {
        format!(r#"{{"e":"serverShutdown","E":{e}}}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> Trade {
        Trade {
            id: 5_052_328_858,
            agg_id: 1,
            price: 10_740_788_000_000,
            qty: 24_000,
            time_us: 1_751_132_780_368_123,
            is_buyer_maker: true,
        }
    }

    #[test]
    fn byte_for_byte_the_real_frame() {
        let f = trade_frame(
            &real(),
            "BTCUSDT",
            "btcusdt@trade",
            1_751_132_780_369_000,
            TimeUnit::Millisecond,
            false,
        );
        assert_eq!(
            f,
            r#"{"e":"trade","E":1751132780369,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368,"m":true,"M":true}"#
        );
    }

    #[test]
    fn combined_and_microseconds() {
        let mut t = real();
        t.is_buyer_maker = false;
        let f = trade_frame(
            &t,
            "BTCUSDT",
            "btcusdt@trade",
            1_751_132_780_369_001,
            TimeUnit::Microsecond,
            true,
        );
        assert_eq!(
            f,
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1751132780369001,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368123,"m":false,"M":true}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["data"]["t"], 5_052_328_858u64);
    }

    #[test]
    fn shutdown_frames() {
        assert_eq!(
            server_shutdown_frame(1_770_123_456_789_000, TimeUnit::Millisecond, false),
            r#"{"e":"serverShutdown","E":1770123456789}"#
        );
        assert_eq!(
            server_shutdown_frame(1_770_123_456_789_000, TimeUnit::Millisecond, true),
            r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#
        );
    }
}
