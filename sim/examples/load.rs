//! Load test: the simulator on ONE core (a current-thread runtime on its own thread) streaming
//! to WebSocket clients on another thread; reports trades/s actually delivered.
//!
//! ```text
//! cargo run --release -p binance-sim --example load -- [CLIENTS] [SECONDS] [RATE_MULTIPLIER]
//! ```
//! Defaults: 1 client, 10 s, multiplier 3000 (44 trades/s x 3000 x 0.8 outside burst minutes = ~105,000 trades/s
//! across BTCUSDT, AAVEUSDT, STXUSDT, ARBUSDT). Each client subscribes to all four on one
//! combined stream; ids are checked for gaps per symbol.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use binance_sim::{Sim, SimConfig};
use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn field_u64(frame: &str, key: &str) -> Option<u64> {
    let i = frame.find(key)? + key.len();
    let rest = &frame[i..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1);
    let secs: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10);
    let mult: f64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(3000.0);

    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (truth_tx, truth_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let cfg = SimConfig {
                rate_multiplier: mult,
                history_days: 1,
                ..SimConfig::default()
            };
            let sim = Sim::start(cfg, "127.0.0.1:0").await.expect("start");
            addr_tx.send(sim.ws_base_url()).expect("send addr");
            let _ = stop_rx.await;
            let _ = truth_tx.send(sim.ground_truth());
            sim.shutdown().await;
        });
    });
    let ws = addr_rx.recv().expect("addr");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    let results = rt.block_on(async move {
        let url =
            format!("{ws}/stream?streams=btcusdt@trade/aaveusdt@trade/stxusdt@trade/arbusdt@trade");
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let (mut s, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("connect");
                // Skip the first second (connection warm-up), then measure.
                let warm = Instant::now() + Duration::from_secs(1);
                while Instant::now() < warm {
                    let _ = tokio::time::timeout(Duration::from_millis(100), s.next()).await;
                }
                let start = Instant::now();
                let end = start + Duration::from_secs(secs);
                let mut n = 0u64;
                let mut gaps = 0u64;
                let mut last: HashMap<String, u64> = HashMap::new();
                while Instant::now() < end {
                    match tokio::time::timeout(Duration::from_millis(200), s.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            n += 1;
                            let stream = t
                                .get(11..t.find("@trade").unwrap_or(11))
                                .unwrap_or("")
                                .to_string();
                            if let Some(id) = field_u64(&t, "\"t\":")
                                && let Some(prev) = last.insert(stream, id)
                                && id != prev + 1
                            {
                                gaps += 1;
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                (n, gaps, start.elapsed())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("client"));
        }
        out
    });
    let _ = stop_tx.send(());
    let truth = truth_rx.recv().expect("truth");
    server.join().expect("server thread");
    let produced: u64 = truth.symbols.values().map(|s| s.count).sum();
    let total: u64 = results.iter().map(|r| r.0).sum();
    let gaps: u64 = results.iter().map(|r| r.1).sum();
    let elapsed = results.iter().map(|r| r.2).max().unwrap_or_default();
    println!(
        "simulator: 1 core (current-thread runtime); clients: {clients}; measured {:.1} s",
        elapsed.as_secs_f64()
    );
    println!("produced by the tape since start: {produced} trades");
    println!(
        "delivered: {total} trades, {:.0} trades/s in total, {:.0} per client; id gaps seen: {gaps}",
        total as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / clients as f64
    );
}
