//! Frame -> Trade -> encoded bytes, the producer's per-trade CPU work on the live path
//! (parse in the connection task, encode in the hub), reported per trade.

use std::hint::black_box;

use binance::{Frame, FrameContext, TimeUnit, parse_frame};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;

const COMBINED: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1751132780369123,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368456,"m":true,"M":true}}"#;

fn pipeline(c: &mut Criterion) {
    let ctx = FrameContext {
        receive_time_us: 1_751_132_780_370_000,
        time_unit: TimeUnit::Microsecond,
    };
    let mut g = c.benchmark_group("producer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_to_encoded_trade", |b| {
        b.iter(|| {
            let Ok(Frame::Trade(t)) = parse_frame(black_box(COMBINED), &ctx) else {
                panic!("fixture is a trade");
            };
            let bytes = bytes::Bytes::from(t.encode_to_vec());
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
