//! Pure conversion of one websocket text frame (or one REST trade row) into a [`Trade`].
//!
//! This module owns the hot path of the producer: [`parse_frame`] turns a frame into a [`Frame`]
//! with no clock read (the receive time and the connection's time unit come in a
//! [`FrameContext`]), no I/O, and no allocation except the four strings the [`Trade`] itself
//! owns. It is a single-pass scanner over the bytes rather than serde, chosen for its errors
//! (field name and raw token in every message, any key order, unknown fields of any type
//! skipped) more than for speed: `benches/parse.rs` measures it on par with serde_json on
//! borrowed wire types (about 0.4-0.5 µs per frame to prost bytes, 2 M trades/s on one core of a
//! loaded 2-core machine), far above the 1 M trades/s target.
//!
//! What it accepts (see [`crate::wire`] for the shapes):
//! - raw events (`{"e":"trade",...}`) and combined ones (`{"stream":..,"data":{...}}`), keys in
//!   any order, with or without `b`/`a`, unknown fields skipped whatever their JSON type;
//! - `serverShutdown`, raw or under stream `!serverShutdown`;
//! - control replies `{"result":..,"id":..}` and control errors `{"code":2,"msg":..}`.
//!
//! What it guarantees about a [`Trade`]: the symbol is upper case and made of `A-Z 0-9 - _ .`
//! (1..=20 bytes, Binance's symbol grammar); price and quantity are the exact strings Binance sent
//! and are plain decimals (`digits [ "." digits ]`, no sign, no exponent); times are µs.
//!
//! Errors name the field and quote the raw JSON token (truncated to
//! [`MAX_QUOTED_BYTES`]), e.g. `field "p": "1e5" is not a plain decimal`.

use trade_proto::rules::normalise_symbol;
pub use trade_proto::rules::{MAX_SYMBOL_LEN, is_plain_decimal};
use trade_proto::{Source, Trade};

use crate::wire::RestTrade;

mod scan;
use scan::{Cursor, EventFields, Kind, Tok};

/// Longest raw value quoted in an error message; longer values are cut with `...`.
pub const MAX_QUOTED_BYTES: usize = 64;

/// Deepest nesting skipped inside an unknown field; deeper frames are rejected so a hostile frame
/// cannot make the scanner recurse without bound (it does not recurse, but it counts).
pub const MAX_NESTING: usize = 64;

/// The unit of `E`/`T` on a connection: milliseconds by default, microseconds when the URL says
/// `timeUnit=MICROSECOND` (Binance spot docs, "General WSS information").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeUnit {
    /// Milliseconds since the Unix epoch (Binance's default).
    #[default]
    Millisecond,
    /// Microseconds since the Unix epoch (`timeUnit=MICROSECOND`, what the producer asks for).
    Microsecond,
}

impl TimeUnit {
    /// Converts a time in this unit to microseconds; `None` on overflow.
    pub const fn to_micros(self, value: i64) -> Option<i64> {
        match self {
            TimeUnit::Millisecond => value.checked_mul(1000),
            TimeUnit::Microsecond => Some(value),
        }
    }

    /// The spelling of the websocket URL parameter `timeUnit` and the REST header
    /// `X-MBX-TIME-UNIT`.
    pub const fn as_param(self) -> &'static str {
        match self {
            TimeUnit::Millisecond => "MILLISECOND",
            TimeUnit::Microsecond => "MICROSECOND",
        }
    }
}

/// What the caller knows about a frame that the frame does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameContext {
    /// When the frame was read from the socket, µs since the Unix epoch.
    pub receive_time_us: i64,
    /// The connection's time unit.
    pub time_unit: TimeUnit,
}

/// One websocket frame, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A trade, ready to publish (`source` = `stream`).
    Trade(Trade),
    /// Binance will close this connection soon: reconnect now, before it does.
    ServerShutdown {
        /// The event time (`E`) in µs.
        event_time_us: i64,
    },
    /// The answer to a control request (`{"result":..,"id":..}`).
    ControlReply {
        /// The request id, when it was a non-negative integer.
        id: Option<u64>,
        /// The `result` value as raw JSON text (`null` for SUBSCRIBE).
        result: String,
    },
    /// A rejected control request (`{"code":2,"msg":..}`).
    ControlError {
        /// The request id, when present and a non-negative integer.
        id: Option<u64>,
        /// Binance's websocket error code.
        code: i64,
        /// Binance's message, unescaped.
        msg: String,
    },
    /// A well-formed frame of no interest to the trade pipeline (another event type, or an
    /// object with none of the known keys). Count it; do not fail on it.
    Other {
        /// The `e` field, when there was one.
        event_type: Option<String>,
        /// The combined `stream` name, when there was one.
        stream: Option<String>,
    },
}

/// Why a frame or a row could not be turned into a [`Frame`]/[`Trade`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text is not a JSON object we can read. The caller should count it, log it (the
    /// message carries the offset and the start of the frame) and carry on with the next frame:
    /// one bad frame is not a reason to reconnect, but a trade may have been lost with it, which
    /// the continuity tracker will notice from the next trade id.
    #[error("malformed JSON at byte {offset}: {reason} (frame starts {excerpt})")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What was expected.
        reason: &'static str,
        /// The start of the frame, quoted and truncated.
        excerpt: String,
    },
    /// A field every frame of this kind must carry is absent. Same handling as `Syntax`.
    #[error("missing field \"{field}\" in {context}")]
    MissingField {
        /// The JSON key.
        field: &'static str,
        /// Which kind of frame or row, e.g. `trade frame`.
        context: &'static str,
    },
    /// A field is present but its value breaks the contract (not a plain decimal, negative id,
    /// wrong JSON type, time overflow, bad symbol). Same handling as `Syntax`; never publish a
    /// trade with a repaired value.
    #[error("field \"{field}\": {value} {problem}")]
    InvalidField {
        /// The JSON key.
        field: &'static str,
        /// The raw JSON token (strings keep their quotes), truncated.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

/// Parses one websocket text frame.
///
/// Pure: the receive time and time unit come from `ctx`. Trades get `source = "stream"`.
pub fn parse_frame(text: &str, ctx: &FrameContext) -> Result<Frame, ParseError> {
    let mut cur = Cursor::new(text);
    let top = cur.top_level()?;

    if let Some(data) = top.data {
        let stream = top.stream.map(|t| t.unescaped());
        return event_to_frame(&data, ctx, stream, "combined frame \"data\"");
    }
    if top.event.e.is_some() {
        return event_to_frame(&top.event, ctx, None, "event frame");
    }
    if let Some(code) = top.code {
        let code_value = int_field("code", code)?;
        let msg = top.msg.map(|m| m.unescaped()).unwrap_or_default();
        let id = top.id.and_then(|t| t.as_u64());
        return Ok(Frame::ControlError {
            id,
            code: code_value,
            msg,
        });
    }
    if top.result.is_some() || top.id.is_some() {
        let id = top.id.and_then(|t| t.as_u64());
        let result = top.result.map(|t| t.raw.to_owned()).unwrap_or_default();
        return Ok(Frame::ControlReply { id, result });
    }
    Ok(Frame::Other {
        event_type: None,
        stream: top.stream.map(|t| t.unescaped()),
    })
}

/// Converts one `historicalTrades`/`trades` row into a [`Trade`].
///
/// `event_time` is the trade time (REST has no event time). `time_unit` is the unit the request
/// asked for (milliseconds unless `X-MBX-TIME-UNIT` said otherwise). The symbol is the one the
/// request was for; it is validated and upper-cased.
pub fn parse_rest_trade(
    row: &RestTrade,
    symbol: &str,
    time_unit: TimeUnit,
    receive_time_us: i64,
    source: Source,
) -> Result<Trade, ParseError> {
    let symbol = validate_symbol("symbol", symbol, symbol)?;
    if row.id < 0 {
        return Err(invalid(
            "id",
            &row.id.to_string(),
            "is not a non-negative integer",
        ));
    }
    if !is_plain_decimal(&row.price) {
        return Err(invalid(
            "price",
            &quote(&row.price),
            "is not a plain decimal",
        ));
    }
    if !is_plain_decimal(&row.qty) {
        return Err(invalid("qty", &quote(&row.qty), "is not a plain decimal"));
    }
    if row.time < 0 {
        return Err(invalid("time", &row.time.to_string(), "is negative"));
    }
    let time = time_unit
        .to_micros(row.time)
        .ok_or_else(|| invalid("time", &row.time.to_string(), "overflows microseconds"))?;
    Ok(Trade {
        symbol,
        trade_id: row.id,
        price: row.price.clone(),
        quantity: row.qty.clone(),
        trade_time: time,
        event_time: time,
        receive_time: receive_time_us,
        buyer_is_maker: row.is_buyer_maker,
        source: source.as_str().to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Conversion of scanned fields
// ---------------------------------------------------------------------------------------------

fn event_to_frame(
    ev: &EventFields<'_>,
    ctx: &FrameContext,
    stream: Option<String>,
    context: &'static str,
) -> Result<Frame, ParseError> {
    let Some(e) = ev.e else {
        return Err(ParseError::MissingField {
            field: "e",
            context,
        });
    };
    let Some(kind) = e.plain_str() else {
        return Err(invalid("e", e.raw, "is not a string"));
    };
    match kind {
        "trade" => Ok(Frame::Trade(trade_from(ev, ctx)?)),
        "serverShutdown" => {
            let time = ev.big_e.ok_or(ParseError::MissingField {
                field: "E",
                context: "serverShutdown frame",
            })?;
            Ok(Frame::ServerShutdown {
                event_time_us: time_field("E", time, ctx.time_unit)?,
            })
        }
        _ => Ok(Frame::Other {
            event_type: Some(e.unescaped()),
            stream,
        }),
    }
}

const TRADE_CONTEXT: &str = "trade frame";

fn require<'a>(tok: Option<Tok<'a>>, field: &'static str) -> Result<Tok<'a>, ParseError> {
    tok.ok_or(ParseError::MissingField {
        field,
        context: TRADE_CONTEXT,
    })
}

fn trade_from(ev: &EventFields<'_>, ctx: &FrameContext) -> Result<Trade, ParseError> {
    let s = require(ev.s, "s")?;
    let t = require(ev.t, "t")?;
    let p = require(ev.p, "p")?;
    let q = require(ev.q, "q")?;
    let big_t = require(ev.big_t, "T")?;
    let big_e = require(ev.big_e, "E")?;
    let m = require(ev.m, "m")?;

    let symbol = match s.plain_str() {
        Some(v) => validate_symbol("s", v, s.raw)?,
        None => return Err(invalid("s", s.raw, "is not a symbol string")),
    };
    let trade_id = int_field("t", t)?;
    if trade_id < 0 {
        return Err(invalid("t", t.raw, "is not a non-negative integer"));
    }
    let price = decimal_field("p", p)?;
    let quantity = decimal_field("q", q)?;
    let trade_time = time_field("T", big_t, ctx.time_unit)?;
    let event_time = time_field("E", big_e, ctx.time_unit)?;
    let buyer_is_maker = match m.kind {
        Kind::True => true,
        Kind::False => false,
        _ => return Err(invalid("m", m.raw, "is not a boolean")),
    };
    Ok(Trade {
        symbol,
        trade_id,
        price: price.to_owned(),
        quantity: quantity.to_owned(),
        trade_time,
        event_time,
        receive_time: ctx.receive_time_us,
        buyer_is_maker,
        source: Source::Stream.as_str().to_owned(),
    })
}

fn decimal_field<'a>(field: &'static str, tok: Tok<'a>) -> Result<&'a str, ParseError> {
    match tok.plain_str() {
        Some(v) if is_plain_decimal(v) => Ok(v),
        Some(_) => Err(invalid(field, tok.raw, "is not a plain decimal")),
        None if tok.kind == Kind::Number => Err(invalid(
            field,
            tok.raw,
            "is a JSON number, expected a decimal string",
        )),
        None => Err(invalid(field, tok.raw, "is not a plain decimal")),
    }
}

fn int_field(field: &'static str, tok: Tok<'_>) -> Result<i64, ParseError> {
    if tok.kind != Kind::Number {
        return Err(invalid(field, tok.raw, "is not an integer"));
    }
    let (neg, digits) = match tok.raw.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid(field, tok.raw, "is not an integer"));
    }
    let mut v: i64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d - b'0')))
            .ok_or_else(|| invalid(field, tok.raw, "overflows a 64-bit integer"))?;
    }
    Ok(if neg { -v } else { v })
}

fn time_field(field: &'static str, tok: Tok<'_>, unit: TimeUnit) -> Result<i64, ParseError> {
    let v = int_field(field, tok)?;
    if v < 0 {
        return Err(invalid(field, tok.raw, "is a negative time"));
    }
    unit.to_micros(v)
        .ok_or_else(|| invalid(field, tok.raw, "overflows microseconds"))
}

/// Upper-cases `v` and checks it against the contracts' one symbol rule.
fn validate_symbol(field: &'static str, v: &str, raw: &str) -> Result<String, ParseError> {
    normalise_symbol(v).ok_or_else(|| invalid(field, raw, NOT_A_SYMBOL))
}

/// A literal because `problem` is `&'static str`; a test keeps it quoting
/// [`trade_proto::rules::SYMBOL_PATTERN`].
const NOT_A_SYMBOL: &str = "is not a Binance symbol (^[A-Z0-9-_.]{1,20}$)";

fn invalid(field: &'static str, raw: &str, problem: &'static str) -> ParseError {
    ParseError::InvalidField {
        field,
        value: truncate(raw),
        problem,
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// Cuts `s` to [`MAX_QUOTED_BYTES`] on a char boundary, marking the cut.
fn truncate(s: &str) -> String {
    if s.len() <= MAX_QUOTED_BYTES {
        return s.to_owned();
    }
    let mut end = MAX_QUOTED_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symbol_problem_quotes_the_rule() {
        assert!(NOT_A_SYMBOL.contains(trade_proto::rules::SYMBOL_PATTERN));
    }

    #[test]
    fn time_unit_conversion() {
        assert_eq!(
            TimeUnit::Millisecond.to_micros(1_751_132_780_369),
            Some(1_751_132_780_369_000)
        );
        assert_eq!(TimeUnit::Microsecond.to_micros(42), Some(42));
        assert_eq!(TimeUnit::Millisecond.to_micros(i64::MAX), None);
    }

    #[test]
    fn truncate_cuts_on_char_boundary() {
        let long = "é".repeat(100);
        let t = truncate(&long);
        assert!(t.ends_with("..."));
        assert!(t.len() <= MAX_QUOTED_BYTES + 3);
        assert_eq!(truncate("short"), "short");
    }
}
