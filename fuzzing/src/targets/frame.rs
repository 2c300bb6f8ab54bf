//! The websocket frame parser and what the producer does per frame.

use std::borrow::Cow;

use binance::parse::{
    Frame, FrameContext, MAX_QUOTED_BYTES, MAX_SYMBOL_LEN, ParseError, TimeUnit, is_plain_decimal,
    parse_frame,
};
use binance::wire::{Combined, TradeEvent};
use serde::Deserialize;
use trade_proto::{Source, Trade};

use super::{RECEIVE_TIME_US, producer_to_consumer};
use crate::Verdict;

/// Longest error message a frame may produce (errors quote at most [`MAX_QUOTED_BYTES`] of
/// the frame, escaped: this leaves room for `\u{..}` escapes of every quoted byte).
const MAX_ERROR_MESSAGE: usize = 1024;

/// One websocket text frame (the bytes, read as UTF-8 with lossy replacement: tungstenite only
/// hands over valid UTF-8 text).
///
/// Invariants:
/// - both time units give the same frame, times scaled by 1000, unless milliseconds overflow;
/// - errors are bounded (message, quoted value) and point inside the frame;
/// - a trade has an upper-case symbol of Binance's grammar, plain decimals copied from the
///   frame as sent, non-negative id and times, the receive time passed in, source `stream`;
///   its prost encoding round-trips and the consumer accepts it (see
///   [`producer_to_consumer`]);
/// - when serde reads the same text as a [`TradeEvent`] (raw, or under `data` of a
///   [`Combined`]) and the scanner reads a trade, both read the same values.
pub fn frame(data: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(data);
    let us = parse_frame(&text, &ctx(TimeUnit::Microsecond));
    let ms = parse_frame(&text, &ctx(TimeUnit::Millisecond));
    units_agree(&ms, &us);
    for r in [&us, &ms] {
        if let Err(e) = r {
            check_error(e, text.len());
        }
    }
    if let Ok(Frame::Trade(t)) = &ms {
        agrees_with_serde(&text, t);
    }
    // The producer's connections ask for microseconds.
    match us {
        Ok(Frame::Trade(t)) => {
            check_trade(&text, &t);
            Verdict::accepted(Cow::Owned(format!("trade, {}", producer_to_consumer(&t))))
        }
        Ok(Frame::ServerShutdown { event_time_us }) => {
            assert!(event_time_us >= 0, "invariant: negative shutdown time");
            Verdict::accepted("serverShutdown")
        }
        Ok(Frame::ControlReply { .. }) => Verdict::accepted("control reply"),
        Ok(Frame::ControlError { .. }) => Verdict::accepted("control error"),
        Ok(Frame::Other { .. }) => Verdict::accepted("other event"),
        Err(e) => Verdict::rejected(error_class(&e)),
    }
}

fn ctx(time_unit: TimeUnit) -> FrameContext {
    FrameContext {
        receive_time_us: RECEIVE_TIME_US,
        time_unit,
    }
}

/// The class of an error: its kind, field and reason, never the frame's text.
pub(crate) fn error_class(e: &ParseError) -> Cow<'static, str> {
    match e {
        ParseError::Syntax { reason, .. } => Cow::Owned(format!("syntax: {reason}")),
        ParseError::MissingField { field, context } => {
            Cow::Owned(format!("missing {field} in {context}"))
        }
        ParseError::InvalidField { field, problem, .. } => {
            Cow::Owned(format!("field {field} {problem}"))
        }
        other => Cow::Owned(format!("other error: {other}")),
    }
}

fn check_error(e: &ParseError, len: usize) {
    let message = e.to_string();
    assert!(
        message.len() <= MAX_ERROR_MESSAGE,
        "invariant: a {}-byte error message: {message:.200}",
        message.len()
    );
    match e {
        ParseError::Syntax { offset, .. } => assert!(
            *offset <= len,
            "invariant: syntax error at byte {offset} of a {len}-byte frame"
        ),
        ParseError::InvalidField { value, .. } => assert!(
            value.len() <= MAX_QUOTED_BYTES + 3,
            "invariant: quoted value of {} bytes",
            value.len()
        ),
        _ => {}
    }
}

fn is_overflow(r: &Result<Frame, ParseError>) -> bool {
    matches!(r, Err(ParseError::InvalidField { problem, .. }) if *problem == "overflows microseconds")
}

fn units_agree(ms: &Result<Frame, ParseError>, us: &Result<Frame, ParseError>) {
    if is_overflow(ms) {
        return;
    }
    let scaled = match us {
        Ok(Frame::Trade(t)) => Ok(Frame::Trade(Trade {
            trade_time: t.trade_time.saturating_mul(1000),
            event_time: t.event_time.saturating_mul(1000),
            ..t.clone()
        })),
        Ok(Frame::ServerShutdown { event_time_us }) => Ok(Frame::ServerShutdown {
            event_time_us: event_time_us.saturating_mul(1000),
        }),
        // `us` failed or is a frame without times: milliseconds must say the very same.
        other => other.clone(),
    };
    assert!(
        *ms == scaled,
        "invariant: the time units disagree: ms {ms:?}, µs {us:?}"
    );
}

fn check_trade(text: &str, t: &Trade) {
    let s = t.symbol.as_bytes();
    assert!(
        !s.is_empty()
            && s.len() <= MAX_SYMBOL_LEN
            && s.iter().all(|&b| {
                b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            }),
        "invariant: symbol {:?} outside the grammar",
        t.symbol
    );
    for v in [&t.price, &t.quantity] {
        assert!(
            is_plain_decimal(v),
            "invariant: {v:?} is not a plain decimal"
        );
        assert!(
            text.contains(&format!("\"{v}\"")),
            "invariant: {v:?} is not a string of the frame"
        );
    }
    assert!(t.trade_id >= 0, "invariant: negative trade id");
    assert!(
        t.trade_time >= 0 && t.event_time >= 0,
        "invariant: negative time"
    );
    assert_eq!(t.receive_time, RECEIVE_TIME_US, "invariant: receive time");
    assert_eq!(t.source, Source::Stream.as_str(), "invariant: source");
}

/// Only to see whether a frame has `data` (borrowing nothing, allocating nothing).
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    data: Option<serde::de::IgnoredAny>,
}

fn agrees_with_serde(text: &str, t: &Trade) {
    let reference = match serde_json::from_str::<Combined<TradeEvent<'_>>>(text) {
        Ok(c) => Some(c.data),
        Err(_) => match serde_json::from_str::<Probe>(text) {
            Ok(Probe { data: None }) => serde_json::from_str::<TradeEvent<'_>>(text).ok(),
            _ => None,
        },
    };
    // serde refusing what the scanner reads is expected (the scanner does not validate the
    // inside of unknown fields); reading it differently is not.
    let Some(ev) = reference else { return };
    let same = ev.event_type == "trade"
        && ev.symbol.to_ascii_uppercase() == t.symbol
        && ev.trade_id == t.trade_id
        && ev.price == t.price
        && ev.quantity == t.quantity
        && ev.trade_time.checked_mul(1000) == Some(t.trade_time)
        && ev.event_time.checked_mul(1000) == Some(t.event_time)
        && ev.buyer_is_maker == t.buyer_is_maker;
    assert!(
        same,
        "invariant: serde reads {ev:?}, the scanner {t:?} (frame {text:.300})"
    );
}
