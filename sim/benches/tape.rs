//! Criterion benchmarks of the per-trade hot path: tape generation and frame serialisation.
//!
//! Run: `cargo bench -p binance-sim --bench tape`. The "trades/s on one core" figure is the
//! inverse of the per-trade time of `generate_and_serialise`.

use std::hint::black_box;

use binance_sim::frames::{TimeUnit, push_trade_frame};
use binance_sim::kline::Agg;
use binance_sim::{SymbolSpec, Tape};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const GENESIS_MS: i64 = 1_751_068_800_000;

fn tape(multiplier: f64) -> Tape {
    let specs: Vec<SymbolSpec> = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"]
        .iter()
        .map(|s| SymbolSpec::for_symbol(s))
        .collect();
    Tape::new(42, &specs, multiplier, GENESIS_MS)
}

fn benches(c: &mut Criterion) {
    // ~100,000 trades/s in total: 44 trades/s x 2300.
    let t = tape(2300.0);
    let sec0 = GENESIS_MS / 1000 + 600;
    let n: usize = (0..4).map(|s| t.second(s, sec0).len()).sum();
    let mut g = c.benchmark_group("tape");
    g.throughput(Throughput::Elements(n as u64));
    let mut sec = sec0;
    g.bench_function("generate_one_second_all_symbols", |b| {
        b.iter(|| {
            sec += 1;
            let mut total = 0;
            for s in 0..4 {
                total += black_box(t.second(s, sec)).len();
            }
            total
        })
    });
    let trades: Vec<_> = (0..4).flat_map(|s| t.second(s, sec0)).collect();
    g.bench_function("serialise_frames_combined_us", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            let mut bytes = 0;
            for tr in &trades {
                buf.clear();
                push_trade_frame(
                    &mut buf,
                    tr,
                    "BTCUSDT",
                    "btcusdt@trade",
                    tr.time_us + 900,
                    TimeUnit::Microsecond,
                    true,
                );
                bytes += buf.len();
            }
            black_box(bytes)
        })
    });
    let mut sec2 = sec0 + 10_000;
    g.bench_function("generate_and_serialise", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            sec2 += 1;
            let mut bytes = 0;
            for s in 0..4 {
                for tr in t.second(s, sec2) {
                    buf.clear();
                    push_trade_frame(
                        &mut buf,
                        &tr,
                        "BTCUSDT",
                        "btcusdt@trade",
                        tr.time_us,
                        TimeUnit::Millisecond,
                        false,
                    );
                    bytes += buf.len();
                }
            }
            black_box(bytes)
        })
    });
    g.finish();

    // A month of 1-minute klines for BTCUSDT at its real rate, from an empty cache.
    let mut g = c.benchmark_group("klines");
    g.sample_size(10);
    g.bench_function("btcusdt_one_day_of_1m_aggregates_cold", |b| {
        b.iter_with_setup(
            || tape(1.0),
            |t| {
                let m0 = GENESIS_MS / 60_000;
                let mut a = Agg::default();
                for m in m0..m0 + 1440 {
                    a.merge(&t.minute_agg(0, m));
                }
                black_box(a.count)
            },
        )
    });
    g.finish();
}

criterion_group!(tape_benches, benches);
criterion_main!(tape_benches);
