//! The consumer's own CPU cost per row, network mocked: decode + validate a Pub/Sub payload,
//! batch it, and build the AppendRows request body (the encoded `ProtoRows`). Run with
//! `cargo bench -p consumer --bench per_row`; criterion reports time per 1000 rows.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use consumer::batcher::{Batcher, Limits};
use consumer::decode::decode_trade;
use consumer::dedup::{Seen, Window};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use trade_proto::{Source, Trade};

const ROWS: usize = 1000;

/// Distinct payload sets cycled through, more than the window holds, so every row is new.
const SETS: i64 = 30;
const WINDOW: usize = 20_000;

fn payloads(set: i64) -> Vec<(Bytes, HashMap<String, String>, String)> {
    (set * ROWS as i64..(set + 1) * ROWS as i64)
        .map(|id| {
            let t = Trade {
                symbol: "BTCUSDT".into(),
                trade_id: 5_052_328_858 + id,
                price: "107407.88000000".into(),
                quantity: "0.00024000".into(),
                trade_time: 1_751_132_780_368_000 + id,
                event_time: 1_751_132_780_369_000 + id,
                receive_time: 1_751_132_780_371_000 + id,
                buyer_is_maker: id % 2 == 0,
                source: Source::Stream.as_str().into(),
            };
            let attrs = [("symbol", "BTCUSDT"), ("source", "stream")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (Bytes::from(t.encode_to_vec()), attrs, format!("m{id}"))
        })
        .collect()
}

/// `ProtoRows { repeated bytes serialized_rows = 1; }`, as the request carries it.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoRows {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    serialized_rows: Vec<Bytes>,
}

fn per_row(c: &mut Criterion) {
    let sets: Vec<_> = (0..SETS).map(payloads).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("consumer");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("decode_validate_dedup_batch_build_request_1000_rows", |b| {
        let mut window = Window::new(WINDOW);
        let mut next = 0;
        b.iter(|| {
            let input = &sets[next % sets.len()];
            next += 1;
            let now = tokio::time::Instant::now();
            let mut batcher = Batcher::new(Limits {
                max_rows: ROWS,
                max_bytes: 5_000_000,
                max_age: Duration::from_secs(1),
            });
            for (data, attrs, id) in input {
                let t = decode_trade(data, attrs).unwrap();
                let key = (t.symbol, t.trade_id);
                if window.check(&key, id) == Seen::New {
                    batcher.push((key, data.clone()), data.len(), now).unwrap();
                }
            }
            let batch = batcher.pop_ready(now).unwrap();
            let rows = ProtoRows {
                serialized_rows: batch.items.iter().map(|(_, d)| d.clone()).collect(),
            };
            let request = rows.encode_to_vec();
            for (key, _) in batch.items {
                window.insert(key, "m");
            }
            black_box(request.len())
        });
    });
    group.finish();
}

criterion_group!(benches, per_row);
criterion_main!(benches);
