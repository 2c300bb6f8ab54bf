//! The REST response classifier, and the decoding of REST bodies the client does.

use std::borrow::Cow;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use binance::parse::{TimeUnit, is_plain_decimal, parse_rest_trade};
use binance::rest::WeightBudget;
use binance::rest::classify::{
    DEFAULT_BAN, DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, Outcome, USED_WEIGHT_HEADER, body_excerpt,
    classify, used_weight,
};
use binance::wire::{AggTrade, ApiError, ExchangeInfo, Kline, RestTrade, Ticker24hr};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use trade_proto::Source;

use super::{RECEIVE_TIME_US, producer_to_consumer};
use crate::Verdict;

/// Longest message [`body_excerpt`] can make: 200 bytes, each possibly a 3-byte U+FFFD, and
/// `...`.
const MAX_EXCERPT: usize = 3 * 200 + 3;

/// Builds a REST input: the status (2 bytes, big-endian), one `name: value` line per header, an
/// empty line, the body. See [`split_rest_input`].
pub fn rest_input(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = status.to_be_bytes().to_vec();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out
}

/// Reads a REST input: the status from the first two bytes (missing bytes read as 0), then
/// header lines up to the first empty line (none when the input continues with `\n`; all of it
/// when there is no empty line), then the body. Lines that are not a valid header are skipped.
/// Returns (status, headers, body, lines skipped).
pub fn split_rest_input(input: &[u8]) -> (u16, HeaderMap, &[u8], usize) {
    let status = u16::from_be_bytes([
        input.first().copied().unwrap_or(0),
        input.get(1).copied().unwrap_or(0),
    ]);
    let rest = input.get(2..).unwrap_or(&[]);
    let (head, body): (&[u8], &[u8]) = if let Some(body) = rest.strip_prefix(b"\n") {
        (&[], body)
    } else {
        match rest.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &[]),
        }
    };
    let mut headers = HeaderMap::new();
    let mut skipped = 0;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            skipped += 1;
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii_start();
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => skipped += 1,
        }
    }
    (status, headers, body, skipped)
}

/// One REST response through [`classify`], the header readers and the weight budget, and, on a
/// 2xx, its body through [`rest_rows`] (the client decodes the body only then).
///
/// Invariants:
/// - every status maps to the outcome its class says (2xx ok, 429 retry after, 418 banned, 451
///   geo-blocked, 408 and 5xx transient, anything else permanent), whatever the headers and body;
/// - the wait is `Retry-After` in seconds, capped at [`MAX_RETRY_AFTER`], or the default, and
///   can be added to an `Instant` (the producer does `now + wait`);
/// - the message is Binance's `msg` when the body is an API error, else an excerpt of at most
///   [`MAX_EXCERPT`] bytes; a permanent outcome carries the body's code;
/// - the budget, blocked for that wait, asks for no longer than it.
pub fn rest(input: &[u8]) -> Verdict {
    let (status, headers, body, _) = split_rest_input(input);
    let outcome = classify(status, &headers, body);
    let api = serde_json::from_slice::<ApiError>(body).ok();
    let msg = match &api {
        Some(e) => e.msg.clone(),
        None => {
            let m = body_excerpt(body);
            assert!(
                m.len() <= MAX_EXCERPT,
                "invariant: {}-byte excerpt",
                m.len()
            );
            m
        }
    };
    let retry_after = |default: Duration| {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(default, |s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
    };
    let expected = match status {
        200..=299 => Outcome::Ok,
        429 => Outcome::RetryAfter {
            wait: retry_after(DEFAULT_RETRY_AFTER),
            msg,
        },
        418 => Outcome::Banned {
            wait: retry_after(DEFAULT_BAN),
            msg,
        },
        451 => Outcome::GeoBlocked { msg },
        408 | 500..=599 => Outcome::Transient {
            status,
            detail: msg,
        },
        _ => Outcome::Permanent {
            status,
            code: api.as_ref().map(|e| e.code),
            msg,
        },
    };
    assert_eq!(
        outcome, expected,
        "invariant: status {status} classified as {outcome:?}"
    );
    let weight = headers
        .get(USED_WEIGHT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u32>().ok());
    assert_eq!(used_weight(&headers), weight, "invariant: used weight");

    let now_ms = RECEIVE_TIME_US / 1000;
    let mut budget = WeightBudget::default();
    if let Some(w) = weight {
        budget.observe_used_weight(w, now_ms);
    }
    match &outcome {
        Outcome::RetryAfter { wait, .. } | Outcome::Banned { wait, .. } => {
            assert!(
                *wait <= MAX_RETRY_AFTER && Instant::now().checked_add(*wait).is_some(),
                "invariant: a wait of {wait:?} (the producer's `now + wait` overflows)"
            );
            // A fresh budget (the weight window of `budget` may ask for longer on its own).
            let mut blocked = WeightBudget::default();
            blocked.block_for(*wait, now_ms);
            let delay = blocked.delay_for(1, now_ms);
            assert!(
                delay <= *wait,
                "invariant: blocked for {wait:?}, the budget asks for {delay:?}"
            );
            budget.block_for(*wait, now_ms);
        }
        _ => {}
    }
    let _ = budget.delay_for(25, now_ms);

    let class = match &outcome {
        Outcome::Ok => {
            let rows = rest_rows(body);
            return Verdict {
                accepted: rows.accepted,
                class: Cow::Owned(format!("2xx: {}", rows.class)),
            };
        }
        Outcome::RetryAfter { .. } => "429 retry after",
        Outcome::Banned { .. } => "418 banned",
        Outcome::GeoBlocked { .. } => "451 geo-blocked",
        Outcome::Transient { .. } => "transient",
        Outcome::Permanent { code: Some(_), .. } => "permanent with an API code",
        Outcome::Permanent { code: None, .. } => "permanent",
    };
    Verdict::accepted(class)
}

/// Decodes `body` as `T`; when it decodes, serialising and decoding again gives the same value.
fn round_trip<T>(body: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let v: T = serde_json::from_slice(body).ok()?;
    let again = serde_json::to_vec(&v).expect("wire types serialise");
    let back: Result<T, _> = serde_json::from_slice(&again);
    assert!(
        back.as_ref().is_ok_and(|b| *b == v),
        "invariant: {} does not round-trip: {v:?} -> {back:?}",
        std::any::type_name::<T>()
    );
    Some(v)
}

/// A REST body through the serde decoding of every endpoint the client reads
/// (`historicalTrades`, `aggTrades`, `klines`, `exchangeInfo`, `ticker/24hr`, the error body),
/// then each `historicalTrades` row through [`parse_rest_trade`] in both time units and, as a
/// backfilled trade, to the consumer.
///
/// Invariants:
/// - whatever decodes round-trips through serde;
/// - a row becomes a trade exactly when its id and time are non-negative, its price and
///   quantity plain decimals and its time fits in µs; the trade carries the row's values;
/// - such a trade reaches the consumer as [`producer_to_consumer`] says.
pub fn rest_rows(body: &[u8]) -> Verdict {
    let mut kinds: Vec<&'static str> = Vec::new();
    let mut first_trade = None;
    if let Some(rows) = round_trip::<Vec<RestTrade>>(body) {
        kinds.push("trades");
        for row in &rows {
            let class = check_row(row);
            first_trade.get_or_insert(class);
        }
    }
    if round_trip::<Vec<AggTrade>>(body).is_some() {
        kinds.push("aggTrades");
    }
    if round_trip::<Vec<Kline>>(body).is_some() {
        kinds.push("klines");
    }
    if let Some(info) = round_trip::<ExchangeInfo>(body) {
        kinds.push("exchangeInfo");
        for s in &info.symbols {
            let _ = (s.price_filter(), s.lot_size(), s.notional());
        }
    }
    if round_trip::<Vec<Ticker24hr>>(body).is_some() {
        kinds.push("ticker");
    }
    if round_trip::<ApiError>(body).is_some() {
        kinds.push("error body");
    }
    if kinds.is_empty() {
        return Verdict::rejected(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => "JSON of no endpoint's shape",
                Err(_) => "not JSON",
            },
        );
    }
    let mut class = kinds.join(", ");
    if let Some(first) = first_trade {
        class.push_str("; first row: ");
        class.push_str(&first);
    }
    Verdict::accepted(class)
}

fn check_row(row: &RestTrade) -> Cow<'static, str> {
    let mut class = Cow::Borrowed("refused");
    for unit in [TimeUnit::Microsecond, TimeUnit::Millisecond] {
        let got = parse_rest_trade(row, "btcusdt", unit, RECEIVE_TIME_US, Source::Backfill);
        let micros = unit.to_micros(row.time);
        let expect_ok = row.id >= 0
            && is_plain_decimal(&row.price)
            && is_plain_decimal(&row.qty)
            && row.time >= 0
            && micros.is_some();
        assert_eq!(
            got.is_ok(),
            expect_ok,
            "invariant: {row:?} ({unit:?}) parsed as {got:?}"
        );
        if let Ok(t) = got {
            assert!(
                t.symbol == "BTCUSDT"
                    && t.trade_id == row.id
                    && t.price == row.price
                    && t.quantity == row.qty
                    && Some(t.trade_time) == micros
                    && t.event_time == t.trade_time
                    && t.receive_time == RECEIVE_TIME_US
                    && t.buyer_is_maker == row.is_buyer_maker
                    && t.source == Source::Backfill.as_str(),
                "invariant: {row:?} ({unit:?}) became {t:?}"
            );
            let c = producer_to_consumer(&t);
            if unit == TimeUnit::Millisecond {
                class = c;
            }
        }
    }
    class
}
