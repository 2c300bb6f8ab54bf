//! REST conformance: payload shapes against Binance's, consistency with the tape, errors and
//! the weight limit.

mod common;

use std::time::Duration;

use binance_sim::SimConfig;
use common::*;
use serde_json::Value;

fn dec(v: &Value) -> u128 {
    binance_sim::decimal::parse_units(v.as_str().unwrap()).unwrap() as u128
}

#[tokio::test]
async fn payload_shapes_match_binance() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();

    let (st, trades) = get_json(&format!("{base}/api/v3/trades?symbol=BTCUSDT&limit=5")).await;
    assert_eq!(st, 200);
    assert_eq!(shape(&trades), shape(&fixture("trades.json")));

    let (_, hist) = get_json(&format!(
        "{base}/api/v3/historicalTrades?symbol=BTCUSDT&limit=5&fromId={}",
        trades[0]["id"]
    ))
    .await;
    assert_eq!(shape(&hist), shape(&fixture("trades.json")));
    assert_eq!(hist[0], trades[0], "both endpoints read the same tape");

    let (_, aggs) = get_json(&format!("{base}/api/v3/aggTrades?symbol=BTCUSDT&limit=5")).await;
    assert_eq!(shape(&aggs), shape(&fixture("agg_trades.json")));

    let (_, kl) = get_json(&format!(
        "{base}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=3"
    ))
    .await;
    assert_eq!(shape(&kl), shape(&fixture("klines.json")));
    assert_eq!(kl.as_array().unwrap().len(), 3);
    let (_, ui) = get_json(&format!(
        "{base}/api/v3/uiKlines?symbol=BTCUSDT&interval=1m&limit=3"
    ))
    .await;
    // Closed minutes are identical; the open one keeps growing.
    assert_eq!(ui[0], kl[0]);
    assert_eq!(ui[1], kl[1]);

    let (_, t) = get_json(&format!("{base}/api/v3/ticker/24hr?symbol=ARBUSDT")).await;
    assert_eq!(shape(&t), shape(&fixture("ticker_24hr.json")));
    let (_, m) = get_json(&format!(
        "{base}/api/v3/ticker/24hr?symbol=ARBUSDT&type=MINI"
    ))
    .await;
    assert_eq!(shape(&m), shape(&fixture("ticker_24hr_mini.json")));
    let (_, all) = get_json(&format!("{base}/api/v3/ticker/24hr")).await;
    assert_eq!(all.as_array().unwrap().len(), 4);

    let (_, info) = get_json(&format!(
        "{base}/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22,%22STXUSDT%22%5D"
    ))
    .await;
    let want = fixture("exchange_info.json");
    let mut info_top = shape(&info);
    info_top["symbols"] = Value::Null;
    info_top["rateLimits"] = Value::Null;
    let mut want_top = shape(&want);
    want_top["symbols"] = Value::Null;
    want_top["rateLimits"] = Value::Null;
    assert_eq!(info_top, want_top);
    assert_eq!(shape(&info["rateLimits"][0]), shape(&want["rateLimits"][0]));
    let mut sym = shape(&info["symbols"][0]);
    sym["filters"] = Value::Null;
    let mut want_sym = shape(&want["symbols"][0]);
    want_sym["filters"] = Value::Null;
    assert_eq!(sym, want_sym);
    assert_eq!(info["symbols"].as_array().unwrap().len(), 2);
    assert_eq!(info["symbols"][0]["permissions"], serde_json::json!([]));
    // PRICE_FILTER, LOT_SIZE and NOTIONAL exactly as documented.
    let filters = info["symbols"][1]["filters"].as_array().unwrap();
    for want_f in fixture("filters.json").as_array().unwrap() {
        let got = filters
            .iter()
            .find(|f| f["filterType"] == want_f["filterType"])
            .unwrap_or_else(|| panic!("missing {}", want_f["filterType"]));
        assert_eq!(shape(got), shape(want_f));
    }
    let price_filter = filters
        .iter()
        .find(|f| f["filterType"] == "PRICE_FILTER")
        .unwrap();
    assert_eq!(price_filter["tickSize"], "0.00010000", "STXUSDT tick");
    sim.shutdown().await;
}

#[tokio::test]
async fn klines_sum_to_the_tape_and_match_its_trades() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    // A 20-minute window in the past, starting mid-minute.
    let from = START_MS - 30 * 60_000 + 12_345;
    let to = from + 20 * 60_000;
    let (_, kl) = get_json(&format!(
        "{base}/api/v3/klines?symbol=AAVEUSDT&interval=1m&startTime={from}&endTime={to}&limit=1000"
    ))
    .await;
    let rows = kl.as_array().unwrap();
    assert_eq!(rows.len(), 20, "open times >= startTime and <= endTime");
    let first_open = rows[0][0].as_i64().unwrap();
    assert!(first_open >= from && first_open % 60_000 == 0);
    // Every trade of the covered minutes, from the REST history.
    let start_id = sim.tape().id_before(1, first_open * 1000);
    let end_ms = rows.last().unwrap()[6].as_i64().unwrap();
    let mut trades = Vec::new();
    let mut next = start_id;
    loop {
        let (_, page) = get_json(&format!(
            "{base}/api/v3/historicalTrades?symbol=AAVEUSDT&fromId={next}&limit=1000"
        ))
        .await;
        let page = page.as_array().unwrap().clone();
        let done = page.is_empty() || page.last().unwrap()["time"].as_i64().unwrap() > end_ms;
        for t in page {
            if t["time"].as_i64().unwrap() <= end_ms {
                trades.push(t);
            }
        }
        if done {
            break;
        }
        next = trades.last().unwrap()["id"].as_u64().unwrap() + 1;
    }
    for w in trades.windows(2) {
        assert_eq!(
            w[1]["id"].as_u64().unwrap(),
            w[0]["id"].as_u64().unwrap() + 1
        );
    }
    let total: u64 = rows.iter().map(|r| r[8].as_u64().unwrap()).sum();
    assert_eq!(
        total,
        trades.len() as u64,
        "sum of kline counts == trades on the tape"
    );
    for row in rows {
        let open = row[0].as_i64().unwrap();
        let close = row[6].as_i64().unwrap();
        assert_eq!(close, open + 59_999);
        let ts: Vec<&Value> = trades
            .iter()
            .filter(|t| (open..=close).contains(&t["time"].as_i64().unwrap()))
            .collect();
        assert_eq!(row[8].as_u64().unwrap(), ts.len() as u64);
        assert_eq!(row[1], ts[0]["price"], "open");
        assert_eq!(row[4], ts[ts.len() - 1]["price"], "close");
        let hi = ts.iter().map(|t| dec(&t["price"])).max().unwrap();
        let lo = ts.iter().map(|t| dec(&t["price"])).min().unwrap();
        assert_eq!((dec(&row[2]), dec(&row[3])), (hi, lo));
        let vol: u128 = ts.iter().map(|t| dec(&t["qty"])).sum();
        let quote: u128 = ts.iter().map(|t| dec(&t["quoteQty"])).sum();
        let taker: u128 = ts
            .iter()
            .filter(|t| t["isBuyerMaker"] == false)
            .map(|t| dec(&t["qty"]))
            .sum();
        assert_eq!(
            (dec(&row[5]), dec(&row[7]), dec(&row[9])),
            (vol, quote, taker)
        );
        assert_eq!(row[11], "0");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_past_utc_day_has_1440_one_minute_klines() {
    let mut cfg = test_config();
    cfg.genesis_ms = None;
    cfg.history_days = 3;
    cfg.apply_rates(&[("BTCUSDT".into(), 1.0)]);
    let sim = start(cfg).await;
    let base = sim.rest_base_url();
    let day = (START_MS / 86_400_000 - 1) * 86_400_000;
    let mut opens = Vec::new();
    let mut start = day;
    while start < day + 86_400_000 {
        let (st, page) = get_json(&format!(
            "{base}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={start}&endTime={}&limit=1000",
            day + 86_400_000 - 1
        ))
        .await;
        assert_eq!(st, 200);
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        opens.extend(page.iter().map(|r| r[0].as_i64().unwrap()));
        start = opens.last().unwrap() + 60_000;
    }
    assert_eq!(opens.len(), 1440);
    assert_eq!(opens[0], day);
    assert!(opens.windows(2).all(|w| w[1] == w[0] + 60_000));
    // The daily kline agrees with the minutes.
    let (_, d) = get_json(&format!(
        "{base}/api/v3/klines?symbol=BTCUSDT&interval=1d&startTime={day}&limit=1"
    ))
    .await;
    let (_, m1) = get_json(&format!(
        "{base}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={day}&limit=1000"
    ))
    .await;
    let (_, m2) = get_json(&format!(
        "{base}/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={}&limit=440",
        day + 1000 * 60_000
    ))
    .await;
    let minutes: u64 = m1
        .as_array()
        .unwrap()
        .iter()
        .chain(m2.as_array().unwrap())
        .map(|r| r[8].as_u64().unwrap())
        .sum();
    assert_eq!(d[0][8].as_u64().unwrap(), minutes);
    sim.shutdown().await;
}

#[tokio::test]
async fn ticker_ids_are_consistent_with_the_tape() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    let (_, all) = get_json(&format!("{base}/api/v3/ticker/24hr")).await;
    for t in all.as_array().unwrap() {
        let first = t["firstId"].as_i64().unwrap();
        let last = t["lastId"].as_i64().unwrap();
        let count = t["count"].as_i64().unwrap();
        assert!(count > 0);
        assert_eq!(last - first + 1, count, "{t}");
    }
    // The window starts at genesis here (2 h of history), so firstId is the genesis id.
    let btc = &all[0];
    assert_eq!(
        btc["firstId"].as_u64().unwrap(),
        sim.tape().symbols()[0].spec.first_trade_id
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_have_binance_codes_and_statuses() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    let cases = [
        (
            "/api/v3/klines?symbol=NOPEUSDT&interval=1m",
            400,
            -1121,
            "Invalid symbol.",
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=2m",
            400,
            -1120,
            "Invalid interval.",
        ),
        (
            "/api/v3/klines?interval=1m",
            400,
            -1102,
            "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT",
            400,
            -1102,
            "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
        ),
        (
            "/api/v3/trades?symbol=btcusdt",
            400,
            -1100,
            "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=abc",
            400,
            -1100,
            "Illegal characters found in parameter 'startTime'; legal range is '^[0-9]{1,20}$'.",
        ),
        (
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=2000&endTime=1000",
            400,
            -1023,
            "Start time is greater than end time.",
        ),
        (
            "/api/v3/exchangeInfo?symbol=NOPE",
            400,
            -1121,
            "Invalid symbol.",
        ),
    ];
    for (path, status, code, msg) in cases {
        let (st, body) = get_json(&format!("{base}{path}")).await;
        assert_eq!(st, status, "{path}");
        assert_eq!(body["code"], code, "{path}: {body}");
        assert_eq!(body["msg"], msg, "{path}");
        assert_eq!(shape(&body), shape(&fixture("error_invalid_symbol.json")));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn weight_header_then_429_then_418() {
    let cfg = SimConfig {
        weight_limit: 10,
        ban_after_429s: 2,
        ..test_config()
    };
    let sim = start(cfg).await;
    let url = format!(
        "{}/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1",
        sim.rest_base_url()
    );
    for i in 1..=5 {
        let r = get(&url).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-mbx-used-weight-1m"],
            (2 * i).to_string().as_str()
        );
    }
    for _ in 0..2 {
        let r = get(&url).await;
        assert_eq!(r.status(), 429);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry));
        assert!(r.headers().contains_key("x-mbx-used-weight-1m"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], -1003);
    }
    let r = get(&url).await;
    assert_eq!(r.status(), 418, "ignoring 429s earns a ban");
    assert_eq!(r.headers()["retry-after"], "120");
    let body: Value = r.json().await.unwrap();
    assert!(body["msg"].as_str().unwrap().contains("IP banned until"));
    sim.shutdown().await;
}

#[tokio::test]
async fn geo_block_and_5xx_bursts() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    sim.set_geo_block(true);
    let r = get(&format!("{base}/api/v3/exchangeInfo")).await;
    assert_eq!(r.status(), 451);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, fixture("error_restricted_location_451.json"));
    let ws =
        tokio_tungstenite::connect_async(format!("{}/ws/btcusdt@trade", sim.ws_base_url())).await;
    match ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 451)
        }
        other => panic!(
            "expected a 451 upgrade refusal, got {:?}",
            other.map(|_| ())
        ),
    }
    sim.set_geo_block(false);
    sim.http_5xx_burst(2);
    for _ in 0..2 {
        assert_eq!(get(&format!("{base}/api/v3/ping")).await.status(), 503);
    }
    assert_eq!(get(&format!("{base}/api/v3/ping")).await.status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn mangled_bodies_are_200s_that_are_not_json_then_the_real_answer() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    let r = reqwest::Client::new()
        .post(format!("{base}/admin/faults"))
        .json(&serde_json::json!({"rest_mangled_burst": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let r = get(&format!("{base}/api/v3/ticker/24hr?symbol=BTCUSDT")).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        bodies.push(text);
    }
    assert!(
        bodies.iter().any(|b| b.starts_with("<!DOCTYPE html>")),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b.starts_with("[{")),
        "a body cut short: {bodies:?}"
    );
    let r = get(&format!("{base}/api/v3/ticker/24hr?symbol=BTCUSDT")).await;
    let v: Value = r.json().await.unwrap();
    assert!(v["lastId"].as_u64().is_some(), "{v}");
    sim.shutdown().await;
}

#[tokio::test]
async fn agg_trades_cover_trades_exactly() {
    let sim = start(test_config()).await;
    let base = sim.rest_base_url();
    let from = START_MS - 10 * 60_000;
    let (_, aggs) = get_json(&format!(
        "{base}/api/v3/aggTrades?symbol=BTCUSDT&startTime={from}&endTime={}",
        from + 60_000
    ))
    .await;
    let aggs = aggs.as_array().unwrap();
    assert!(aggs.len() > 10);
    let first = aggs[0]["f"].as_u64().unwrap();
    let last = aggs.last().unwrap()["l"].as_u64().unwrap();
    let (_, trades) = get_json(&format!(
        "{base}/api/v3/historicalTrades?symbol=BTCUSDT&fromId={first}&limit={}",
        (last - first + 1).min(1000)
    ))
    .await;
    let trades = trades.as_array().unwrap();
    let mut i = 0;
    for (k, a) in aggs.iter().enumerate() {
        if k > 0 {
            assert_eq!(
                a["a"].as_u64().unwrap(),
                aggs[k - 1]["a"].as_u64().unwrap() + 1
            );
            assert_eq!(
                a["f"].as_u64().unwrap(),
                aggs[k - 1]["l"].as_u64().unwrap() + 1
            );
        }
        let n = (a["l"].as_u64().unwrap() - a["f"].as_u64().unwrap() + 1) as usize;
        if i + n > trades.len() {
            break;
        }
        let fills = &trades[i..i + n];
        let qty: u128 = fills.iter().map(|t| dec(&t["qty"])).sum();
        assert_eq!(dec(&a["q"]), qty);
        for f in fills {
            assert_eq!(f["price"], a["p"]);
            assert_eq!(f["time"], a["T"]);
            assert_eq!(f["isBuyerMaker"], a["m"]);
        }
        i += n;
    }
    let ts = aggs[0]["T"].as_i64().unwrap();
    assert!(ts >= from);
    let r = get(&format!(
        "{base}/api/v3/aggTrades?symbol=BTCUSDT&startTime={from}&endTime={}",
        from + 2 * 3_600_000
    ))
    .await;
    assert_eq!(r.status(), 400);
    tokio::time::sleep(Duration::from_millis(1)).await;
    sim.shutdown().await;
}
