//! Helpers shared by the integration tests: a simulator with test-friendly settings, a
//! WebSocket client, REST calls, and key/type "shapes" of JSON payloads.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use binance_sim::{Sim, SimConfig, SimHandle};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// 2025-06-28 17:46:20.368 UTC, the time of the real trade frame in BINANCE.md.
pub const START_MS: i64 = 1_751_132_780_368;

/// A config for fast tests: fixed start time, two hours of history, busy symbols.
pub fn test_config() -> SimConfig {
    let mut c = SimConfig {
        start_time_ms: Some(START_MS),
        history_days: 0,
        genesis_ms: Some(START_MS - 2 * 3_600_000),
        ..SimConfig::default()
    };
    c.apply_rates(&[
        ("BTCUSDT".into(), 200.0),
        ("AAVEUSDT".into(), 40.0),
        ("STXUSDT".into(), 30.0),
        ("ARBUSDT".into(), 30.0),
    ]);
    c
}

pub async fn start(config: SimConfig) -> SimHandle {
    Sim::start(config, "127.0.0.1:0")
        .await
        .expect("simulator starts")
}

/// Connect; returns the socket and the connection id from the upgrade response.
pub async fn connect(url: &str) -> (Ws, u64) {
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    let id = resp
        .headers()
        .get(binance_sim::CONNECTION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("connection id header");
    (ws, id)
}

/// Next text frame (skipping pings/pongs), or `None` on close/timeout.
pub async fn next_text(ws: &mut Ws, timeout: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
            Err(_) => return None,
        }
    }
}

/// Read text frames for `d` (or until closed).
pub async fn collect_for(ws: &mut Ws, d: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => out.push(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => break,
        }
    }
    out
}

pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_string().into()))
        .await
        .expect("sends");
}

/// `true` once the server has closed the socket (close frame, EOF or error) within `d`.
pub async fn closed_within(ws: &mut Ws, d: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) else {
            return false;
        };
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
            Err(_) => return false,
        }
    }
}

pub async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.expect("request")
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let r = get(url).await;
    let status = r.status().as_u16();
    (status, r.json().await.expect("json body"))
}

/// The "shape" of a JSON value: key sets and JSON types, recursively (arrays by first element).
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "int".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
    }
}

pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/binance/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}
