//! Fault injection and ground truth: what a client sees must match what the simulator says it
//! did not deliver, id for id.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use binance_sim::{FaultRequest, MissReason, SimConfig, StallRequest};
use common::*;
use serde_json::{Value, json};

/// Trade ids of BTCUSDT parsed from frames; the count of frames that did not parse.
fn ids(frames: &[String]) -> (Vec<u64>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for f in frames {
        match serde_json::from_str::<Value>(f) {
            Ok(v) => {
                let d = if v.get("data").is_some() {
                    &v["data"]
                } else {
                    &v
                };
                if d["e"] == "trade" {
                    out.push(d["t"].as_u64().unwrap());
                }
            }
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

/// Ids in `first..=last` the client never parsed.
fn client_missing(received: &[u64]) -> BTreeSet<u64> {
    let got: BTreeSet<u64> = received.iter().copied().collect();
    let (Some(&first), Some(&last)) = (got.first(), got.last()) else {
        return BTreeSet::new();
    };
    (first..=last).filter(|i| !got.contains(i)).collect()
}

fn truth_missing(sim: &binance_sim::SimHandle, conn: u64, upto: u64) -> BTreeSet<u64> {
    let t = sim.connection_truth(conn).unwrap();
    t.symbols["BTCUSDT"]
        .missed
        .ids()
        .map(|i| u64::try_from(i).unwrap())
        .filter(|&i| i <= upto)
        .collect()
}

#[tokio::test]
async fn stall_gap_equals_reported_missed_ids() {
    let sim = start(test_config()).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let mut frames = collect_for(&mut ws, Duration::from_millis(300)).await;
    sim.stall(StallRequest {
        with_pings: true,
        duration_secs: Some(0.5),
        connection: None,
    })
    .unwrap();
    frames.extend(collect_for(&mut ws, Duration::from_millis(1200)).await);
    let (got, bad) = ids(&frames);
    assert_eq!(bad, 0);
    let missing = client_missing(&got);
    assert!(
        missing.len() > 30,
        "a 0.5 s stall at 200 trades/s: {}",
        missing.len()
    );
    let last = *got.last().unwrap();
    assert_eq!(
        truth_missing(&sim, id, last),
        missing,
        "ground truth is exact"
    );
    let t = sim.connection_truth(id).unwrap();
    let btc = &t.symbols["BTCUSDT"];
    assert_eq!(
        btc.missed_by_reason.get(&MissReason::Stall).copied(),
        Some(missing.len() as u64)
    );
    assert_eq!(btc.missed_by_faults(), missing.len() as u64);
    // Everything the client saw or missed is exactly what was produced in between.
    let gt = sim.ground_truth();
    assert!(gt.symbols["BTCUSDT"].last_id.unwrap() >= last);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_injected_off_tape_trade_reaches_subscribers_only_and_leaves_the_tape_alone() {
    let sim = start(test_config()).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let (mut other, _) = connect(&format!("{}/ws/arbusdt@trade", sim.ws_base_url())).await;
    let mut frames = collect_for(&mut ws, Duration::from_millis(200)).await;
    sim.apply_faults(FaultRequest {
        inject_trade: Some(binance_sim::InjectTrade {
            symbol: "BTCUSDT".into(),
            trade_id: i64::MAX as u64,
        }),
        ..FaultRequest::default()
    })
    .unwrap();
    frames.extend(collect_for(&mut ws, Duration::from_millis(300)).await);
    let (got, bad) = ids(&frames);
    assert_eq!(bad, 0);
    assert_eq!(got.iter().filter(|&&t| t == i64::MAX as u64).count(), 1);
    // The tape goes on as before: the ids around it stay consecutive.
    let real: Vec<u64> = got
        .iter()
        .copied()
        .filter(|&t| t != i64::MAX as u64)
        .collect();
    assert!(real.windows(2).all(|w| w[1] == w[0] + 1), "{real:?}");
    assert!(
        sim.connection_truth(id).unwrap().symbols["BTCUSDT"]
            .missed
            .is_empty()
    );
    let arb = collect_for(&mut other, Duration::from_millis(300)).await;
    assert!(!arb.iter().any(|f| f.contains("9223372036854775807")));
    assert!(
        sim.apply_faults(FaultRequest {
            inject_trade: Some(binance_sim::InjectTrade {
                symbol: "NOPEUSDT".into(),
                trade_id: 1,
            }),
            ..FaultRequest::default()
        })
        .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_frames_are_counted_as_missed() {
    let sim = start(test_config()).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    // Through the admin HTTP API.
    let r = reqwest::Client::new()
        .post(format!("{}/admin/faults", sim.rest_base_url()))
        .json(&json!({"malformed_ratio": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let settings: Value = r.json().await.unwrap();
    assert_eq!(settings["malformed_ratio"], 0.2);
    let frames = collect_for(&mut ws, Duration::from_millis(1000)).await;
    let (got, bad) = ids(&frames);
    assert!(bad > 5, "malformed frames seen: {bad}");
    let missing = client_missing(&got);
    let last = *got.last().unwrap();
    assert_eq!(truth_missing(&sim, id, last), missing);
    assert!(missing.len() <= bad);
    let t = sim.connection_truth(id).unwrap();
    assert!(t.symbols["BTCUSDT"].missed_by_reason[&MissReason::Malformed] >= missing.len() as u64);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicates_and_reordering_lose_nothing() {
    let sim = start(test_config()).await;
    sim.apply_faults(FaultRequest {
        duplicate_ratio: Some(0.1),
        reorder_ratio: Some(0.1),
        ..Default::default()
    })
    .unwrap();
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let frames = collect_for(&mut ws, Duration::from_millis(1000)).await;
    let (got, bad) = ids(&frames);
    assert_eq!(bad, 0);
    let dups = got.len() - got.iter().collect::<BTreeSet<_>>().len();
    let inversions = got.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(
        dups > 3 && inversions > 3,
        "dups {dups} inversions {inversions}"
    );
    // Reordered frames arrive one frame late, so only the very last id can still be in flight
    // when the client stops reading.
    let last = *got.iter().max().unwrap();
    let missing: Vec<u64> = client_missing(&got)
        .into_iter()
        .filter(|&i| i + 1 < last)
        .collect();
    assert!(missing.is_empty(), "nothing lost: {missing:?}");
    let t = sim.connection_truth(id).unwrap();
    let btc = &t.symbols["BTCUSDT"];
    assert!(btc.duplicated >= dups as u64);
    assert!(btc.reordered > 0);
    assert!(btc.missed.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn drop_all_now_cuts_without_close_frame_and_records_in_flight() {
    let sim = start(test_config()).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    let before = collect_for(&mut ws, Duration::from_millis(300)).await;
    assert!(!before.is_empty());
    sim.drop_all_connections();
    let mut saw_close_frame = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    use futures::StreamExt;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))) => {
                saw_close_frame = true;
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("not dropped"),
        }
    }
    assert!(!saw_close_frame, "an injected drop is abrupt");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = sim.connection_truth(id).unwrap();
    assert_eq!(t.close_reason.as_deref(), Some("dropped (injected fault)"));
    assert!(t.symbols["BTCUSDT"].next_expected_id.is_none());
    assert!(sim.open_connections().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn random_drops_happen() {
    let mut cfg = test_config();
    cfg.faults.drop_random_every_secs = 0.3;
    let sim = start(cfg).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    assert!(closed_within(&mut ws, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        sim.connection_truth(id).unwrap().close_reason.as_deref(),
        Some("dropped (injected fault)")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn silent_stall_stops_pings_too() {
    let cfg = SimConfig {
        ping_interval: Duration::from_millis(100),
        ..test_config()
    };
    let sim = start(cfg).await;
    let (mut ws, id) = connect(&format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    sim.stall(StallRequest {
        with_pings: false,
        duration_secs: None,
        connection: Some(id),
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Drain what was in flight, then nothing at all arrives: no trades, no pings.
    let _ = collect_for(&mut ws, Duration::from_millis(100)).await;
    use futures::StreamExt;
    let r = tokio::time::timeout(Duration::from_millis(600), ws.next()).await;
    assert!(r.is_err(), "socket silent, got {r:?}");
    sim.clear_stall();
    assert!(
        next_text(&mut ws, Duration::from_secs(2)).await.is_some(),
        "resumes"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_api_ground_truth_connections_and_symbols() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    let (mut ws, id) = connect(&format!(
        "{}/stream?streams=btcusdt@trade",
        sim.ws_base_url()
    ))
    .await;
    let frames = collect_for(&mut ws, Duration::from_millis(500)).await;
    let (got, _) = ids(&frames);
    let (st, conns) = get_json(&format!("{base}/admin/connections")).await;
    assert_eq!(st, 200);
    assert_eq!(conns[0]["id"], id);
    assert_eq!(conns[0]["streams"], json!(["btcusdt@trade"]));
    let (_, gt) = get_json(&format!("{base}/admin/ground-truth?connection={id}")).await;
    let btc = &gt["symbols"]["BTCUSDT"];
    let first = btc["first_id"].as_u64().unwrap();
    let last = btc["last_id"].as_u64().unwrap();
    assert_eq!(btc["count"].as_u64().unwrap(), last - first + 1);
    assert!(got[0] >= first && *got.last().unwrap() <= last);
    assert_eq!(gt["connections"].as_array().unwrap().len(), 1);
    assert_eq!(
        gt["connections"][0]["symbols"]["BTCUSDT"]["missed"],
        json!([])
    );
    // Ground truth agrees with REST: the produced ids exist with consecutive ids.
    let (_, hist) = get_json(&format!(
        "{base}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={first}&limit=3"
    ))
    .await;
    assert_eq!(hist[0]["id"].as_u64().unwrap(), first);
    assert!(
        hist[0]["time"].as_i64().unwrap() > START_MS,
        "first live trade is after start"
    );

    // Change metadata: the SCD sees it in exchangeInfo.
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/admin/symbols/BTCUSDT"))
        .json(&json!({"status": "HALT", "tick_size": "0.1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, info) = get_json(&format!("{base}/api/v3/exchangeInfo?symbol=BTCUSDT")).await;
    assert_eq!(info["symbols"][0]["status"], "HALT");
    assert_eq!(info["symbols"][0]["filters"][0]["tickSize"], "0.10000000");
    let r = client
        .post(format!("{base}/admin/symbols/BTCUSDT"))
        .json(&json!({"status": "OPEN"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("status"), "{e}");
    let r = client
        .post(format!("{base}/admin/symbols/NOPEUSDT"))
        .json(&json!({"status": "HALT"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .post(format!("{base}/admin/faults"))
        .json(&json!({"malformed_ratio": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("malformed_ratio"),
        "{e}"
    );
    let r = client
        .post(format!("{base}/admin/faults"))
        .json(&json!({"drop_all_now": true, "geo_block": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(closed_within(&mut ws, Duration::from_secs(2)).await);
    sim.shutdown().await;
}
