//! Frame -> Trade -> prost bytes, per trade, for raw and combined frames; and the serde_json
//! wire-type path next to the scanner for comparison. Throughput is reported in trades/s.
//!
//! Run: `cargo bench -p binance --bench parse`.

use std::hint::black_box;

use binance::parse::{Frame, FrameContext, TimeUnit, parse_frame};
use binance::wire::{Combined, TradeEvent};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use trade_proto::Trade;

const RAW: &str = include_str!("../tests/fixtures/trade_2025.json");
const RAW_US: &str = r#"{"e":"trade","E":1751132780369001,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368999,"m":true,"M":true}"#;

fn combined() -> String {
    format!(r#"{{"stream":"btcusdt@trade","data":{}}}"#, RAW_US)
}

fn scanner_to_bytes(text: &str, ctx: &FrameContext, buf: &mut Vec<u8>) -> usize {
    let Ok(Frame::Trade(t)) = parse_frame(text, ctx) else {
        panic!("not a trade")
    };
    buf.clear();
    t.encode(buf).expect("vec grows");
    buf.len()
}

/// The same work through serde_json and the borrowed wire type (validation included), to show
/// what the hand-rolled scanner buys.
fn serde_to_bytes(text: &str, ctx: &FrameContext, buf: &mut Vec<u8>) -> usize {
    let c: Combined<TradeEvent<'_>> = serde_json::from_str(text).expect("combined trade");
    let e = c.data;
    assert!(
        binance::parse::is_plain_decimal(e.price) && binance::parse::is_plain_decimal(e.quantity)
    );
    let t = Trade {
        symbol: e.symbol.to_ascii_uppercase(),
        trade_id: e.trade_id,
        price: e.price.to_owned(),
        quantity: e.quantity.to_owned(),
        trade_time: e.trade_time,
        event_time: e.event_time,
        receive_time: ctx.receive_time_us,
        buyer_is_maker: e.buyer_is_maker,
        source: "stream".to_owned(),
    };
    buf.clear();
    t.encode(buf).expect("vec grows");
    buf.len()
}

fn bench(c: &mut Criterion) {
    let ms = FrameContext {
        receive_time_us: 1_751_132_780_400_000,
        time_unit: TimeUnit::Millisecond,
    };
    let us = FrameContext {
        time_unit: TimeUnit::Microsecond,
        ..ms
    };
    let combined = combined();
    let mut buf = Vec::with_capacity(128);

    let mut g = c.benchmark_group("frame_to_proto");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_ms", |b| {
        b.iter(|| scanner_to_bytes(black_box(RAW), &ms, &mut buf))
    });
    g.bench_function("combined_us", |b| {
        b.iter(|| scanner_to_bytes(black_box(&combined), &us, &mut buf))
    });
    g.bench_function("combined_us_serde_reference", |b| {
        b.iter(|| serde_to_bytes(black_box(&combined), &us, &mut buf))
    });
    g.finish();

    let mut g = c.benchmark_group("parse_only");
    g.throughput(Throughput::Elements(1));
    g.bench_function("combined_us", |b| {
        b.iter(|| parse_frame(black_box(&combined), &us).expect("trade"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
