//! WebSocket conformance and limits: frame shapes, consecutive ids, agreement with REST,
//! control messages, pings, rate limit, age, `serverShutdown`, attempt and stream limits.

mod common;

use std::time::Duration;

use binance_sim::SimConfig;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn parse(frames: &[String]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| serde_json::from_str(f).expect("valid JSON frame"))
        .collect()
}

#[tokio::test]
async fn raw_stream_frames_are_binance_trades_and_match_rest() {
    let sim = start(test_config()).await;
    let (mut ws, _) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let frames = parse(&collect_for(&mut ws, Duration::from_millis(600)).await);
    assert!(frames.len() > 20, "BTCUSDT at 200/s: got {}", frames.len());
    let real = fixture("trade_frame.json");
    for f in &frames {
        assert_eq!(shape(f), shape(&real), "{f}");
        assert_eq!(f["s"], "BTCUSDT");
        assert!(f["E"].as_i64().unwrap() >= f["T"].as_i64().unwrap());
        assert_eq!(f["M"], true);
        let p = f["p"].as_str().unwrap();
        assert_eq!(p.split('.').nth(1).unwrap().len(), 8, "8 decimals: {p}");
    }
    for w in frames.windows(2) {
        assert_eq!(w[1]["t"].as_u64().unwrap(), w[0]["t"].as_u64().unwrap() + 1);
    }
    // Key order is Binance's, byte for byte.
    let text = serde_json::to_string(&frames[0]).unwrap();
    assert!(text.starts_with(r#"{"E":"#) || text.starts_with(r#"{"e":"#));
    // REST history has the same trades.
    let first = frames[0]["t"].as_u64().unwrap();
    let (_, hist) = get_json(&format!(
        "{}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={first}&limit=10",
        sim.rest_base_url()
    ))
    .await;
    for (h, f) in hist.as_array().unwrap().iter().zip(&frames) {
        assert_eq!(h["id"], f["t"]);
        assert_eq!(h["price"], f["p"]);
        assert_eq!(h["qty"], f["q"]);
        assert_eq!(h["time"], f["T"]);
        assert_eq!(h["isBuyerMaker"], f["m"]);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn combined_stream_in_microseconds() {
    let sim = start(test_config()).await;
    let url = format!(
        "{}/stream?streams=btcusdt@trade/aaveusdt@trade/stxusdt@trade/arbusdt@trade&timeUnit=MICROSECOND",
        sim.ws_base_url()
    );
    let (mut ws, id) = connect(&url).await;
    let frames = parse(&collect_for(&mut ws, Duration::from_millis(1500)).await);
    let combined = fixture("combined_trade_frame.json");
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    for f in &frames {
        assert_eq!(shape(f), shape(&combined));
        let stream = f["stream"].as_str().unwrap();
        let data = &f["data"];
        assert_eq!(
            stream,
            format!("{}@trade", data["s"].as_str().unwrap().to_lowercase())
        );
        // µs: 16 digits.
        assert!(data["T"].as_i64().unwrap() > 1_000_000_000_000_000);
        let t = data["t"].as_u64().unwrap();
        if let Some(prev) = last.insert(stream.to_string(), t) {
            assert_eq!(t, prev + 1, "{stream}");
        }
    }
    assert_eq!(last.len(), 4, "all four symbols seen");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let truth = sim.connection_truth(id).unwrap();
    for (sym, s) in &truth.symbols {
        // Without faults, only trades in flight when the client hung up are undelivered.
        assert_eq!(s.missed_by_faults(), 0, "{s:?}");
        assert!(
            s.missed_by_reason
                .keys()
                .all(|r| *r == binance_sim::MissReason::Closed)
        );
        let seen = last[&format!("{}@trade", sym.to_lowercase())];
        assert!(
            s.missed.ids().all(|id| u64::try_from(id).unwrap() > seen),
            "{s:?}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn control_messages_subscribe_list_property_unsubscribe() {
    let sim = start(test_config()).await;
    let (mut ws, _) = connect(&format!("{}/ws", sim.ws_base_url())).await;
    send_text(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","arbusdt@trade"],"id":1}"#,
    )
    .await;
    let reply: Value =
        serde_json::from_str(&next_text(&mut ws, Duration::from_secs(2)).await.unwrap()).unwrap();
    assert_eq!(reply, fixture("ws_subscribe_response.json"));
    send_text(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#).await;
    let mut got_list = false;
    let mut got_trade = false;
    for f in parse(&collect_for(&mut ws, Duration::from_millis(400)).await) {
        if f.get("result").is_some() {
            assert_eq!(
                f,
                json!({"result": ["btcusdt@trade", "arbusdt@trade"], "id": 3})
            );
            assert_eq!(
                shape(&f),
                shape(&fixture("ws_list_subscriptions_response.json"))
            );
            got_list = true;
        } else {
            assert_eq!(shape(&f), shape(&fixture("trade_frame.json")));
            got_trade = true;
        }
    }
    assert!(got_list && got_trade);
    send_text(
        &mut ws,
        r#"{"method":"SET_PROPERTY","params":["combined",true],"id":5}"#,
    )
    .await;
    send_text(
        &mut ws,
        r#"{"method":"UNSUBSCRIBE","params":["arbusdt@trade"],"id":6}"#,
    )
    .await;
    let frames = parse(&collect_for(&mut ws, Duration::from_millis(900)).await);
    let replies: Vec<&Value> = frames
        .iter()
        .filter(|f| f.get("result").is_some())
        .collect();
    assert_eq!(
        replies,
        vec![
            &json!({"result": null, "id": 5}),
            &json!({"result": null, "id": 6})
        ]
    );
    // After both replies, frames are combined and only BTCUSDT.
    let pos = frames
        .iter()
        .position(|f| f.get("id") == Some(&json!(6)))
        .unwrap();
    let after: Vec<&Value> = frames[pos + 1..].iter().collect();
    assert!(!after.is_empty());
    for f in after {
        assert_eq!(f["stream"], "btcusdt@trade", "{f}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_control_messages_get_code_2_and_3() {
    let sim = start(test_config()).await;
    let (mut ws, _) = connect(&format!("{}/ws", sim.ws_base_url())).await;
    send_text(&mut ws, "{not json").await;
    let r: Value =
        serde_json::from_str(&next_text(&mut ws, Duration::from_secs(2)).await.unwrap()).unwrap();
    assert_eq!(r["code"], 3);
    assert!(r["msg"].as_str().unwrap().starts_with("Invalid JSON: "));
    assert_eq!(shape(&r), shape(&fixture("ws_error_invalid_json.json")));
    send_text(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":"x y"}"#,
    )
    .await;
    let r: Value =
        serde_json::from_str(&next_text(&mut ws, Duration::from_secs(2)).await.unwrap()).unwrap();
    assert_eq!(
        r,
        json!({"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"})
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn sixth_control_message_in_a_second_disconnects() {
    let sim = start(test_config()).await;
    let (mut ws, id) = connect(&format!("{}/ws", sim.ws_base_url())).await;
    for i in 0..5 {
        send_text(
            &mut ws,
            &format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}"#),
        )
        .await;
    }
    for _ in 0..5 {
        assert!(next_text(&mut ws, Duration::from_secs(1)).await.is_some());
    }
    send_text(&mut ws, r#"{"method":"LIST_SUBSCRIPTIONS","id":6}"#).await;
    assert!(closed_within(&mut ws, Duration::from_secs(2)).await);
    let t = sim.connection_truth(id).unwrap();
    assert_eq!(
        t.close_reason.as_deref(),
        Some("too many incoming messages")
    );
    // Five per second is fine when spread out.
    let (mut ws, _) = connect(&format!("{}/ws", sim.ws_base_url())).await;
    for i in 0..10 {
        send_text(
            &mut ws,
            &format!(r#"{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}"#),
        )
        .await;
        assert!(next_text(&mut ws, Duration::from_secs(1)).await.is_some());
        tokio::time::sleep(Duration::from_millis(210)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn client_ignoring_pings_is_cut_after_the_pong_timeout() {
    let cfg = SimConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(1000),
        ..test_config()
    };
    let sim = start(cfg).await;
    // A raw TCP client that completes the handshake and then never reads: no pong goes back.
    let (ws, id) = connect(&format!("{}/ws", sim.ws_base_url())).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        sim.connection_truth(id).unwrap().closed_at_ms.is_none(),
        "alive before the timeout"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let t = sim.connection_truth(id).unwrap();
    assert_eq!(t.close_reason.as_deref(), Some("pong timeout"));
    drop(ws);
    // A client that reads (tungstenite answers pings with the same payload) stays connected.
    let (mut ws, id) = connect(&format!("{}/ws", sim.ws_base_url())).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    let mut pings = 0;
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_millis(100), ws.next()).await
        {
            pings += 1;
        }
    }
    assert!(pings >= 5, "pings every 200 ms: {pings}");
    assert!(sim.connection_truth(id).unwrap().closed_at_ms.is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn connections_are_closed_at_max_age() {
    let cfg = SimConfig {
        max_connection_age: Duration::from_millis(700),
        ..test_config()
    };
    let sim = start(cfg).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let opened = tokio::time::Instant::now();
    assert!(closed_within(&mut ws, Duration::from_secs(3)).await);
    assert!(opened.elapsed() >= Duration::from_millis(600));
    let t = sim.connection_truth(id).unwrap();
    assert_eq!(t.close_reason.as_deref(), Some("maximum connection age"));
    sim.shutdown().await;
}

#[tokio::test]
async fn server_shutdown_event_then_close() {
    let cfg = SimConfig {
        server_shutdown_grace: Duration::from_millis(500),
        ..test_config()
    };
    let sim = start(cfg).await;
    let (mut raw, _) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let (mut comb, _) = connect(&format!(
        "{}/stream?streams=btcusdt@trade",
        sim.ws_base_url()
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.server_shutdown_now();
    let raw_frames = parse(&collect_for(&mut raw, Duration::from_secs(3)).await);
    let ev = raw_frames
        .iter()
        .find(|f| f["e"] == "serverShutdown")
        .expect("event");
    assert_eq!(shape(ev), shape(&fixture("server_shutdown.json")));
    let comb_frames = parse(&collect_for(&mut comb, Duration::from_secs(3)).await);
    let ev = comb_frames
        .iter()
        .find(|f| f["stream"] == "!serverShutdown")
        .expect("combined event");
    assert_eq!(ev["data"]["e"], "serverShutdown");
    // Both collections ended because the server closed after the grace period.
    let gt = sim.ground_truth();
    assert!(
        gt.connections
            .iter()
            .all(|c| c.close_reason.as_deref() == Some("server shutdown (injected fault)"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn connection_attempts_and_stream_count_are_limited() {
    let cfg = SimConfig {
        connection_attempts: 3,
        max_streams: 2,
        ..test_config()
    };
    let sim = start(cfg).await;
    let url = format!("{}/ws", sim.ws_base_url());
    let mut keep = Vec::new();
    for _ in 0..3 {
        keep.push(connect(&url).await);
    }
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 429);
            assert!(r.headers().contains_key("retry-after"));
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    let (ws, _) = &mut keep[0];
    send_text(
        ws,
        r#"{"method":"SUBSCRIBE","params":["a@trade","b@trade","c@trade"],"id":1}"#,
    )
    .await;
    let r: Value =
        serde_json::from_str(&next_text(ws, Duration::from_secs(2)).await.unwrap()).unwrap();
    assert_eq!(r["code"], 2);
    sim.shutdown().await;
}
