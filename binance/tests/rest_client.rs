//! The REST client against a tiny axum server on 127.0.0.1:0 that answers like Binance does when
//! things go wrong: 429 with Retry-After, 418, 451 with the restricted-location body, 5xx then
//! 200, timeouts, invalid symbol, and historicalTrades paging.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use binance::TimeUnit;
use binance::continuity::IdRange;
use binance::rest::{BanPolicy, RestClient, RestConfig, RestError};
use trade_proto::Source;

const RESTRICTED: &str = include_str!("fixtures/rest_451_restricted.json");

/// What the test server does, and what it saw.
#[derive(Default)]
struct Server {
    /// Requests received so far, per path.
    hits: std::sync::Mutex<HashMap<String, usize>>,
    /// Query strings received on historicalTrades.
    queries: std::sync::Mutex<Vec<HashMap<String, String>>>,
    /// Number of requests to fail before succeeding (scenario-specific).
    failures_left: AtomicUsize,
}

type Shared = Arc<Server>;

fn count(s: &Server, path: &str) -> usize {
    let mut h = s.hits.lock().unwrap();
    let n = h.entry(path.to_owned()).or_default();
    *n += 1;
    *n
}

fn json(status: StatusCode, body: &str, extra: &[(&'static str, &str)]) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in extra {
        headers.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    (status, headers, body.to_owned()).into_response()
}

const TRADE_ROW_OK: &str = r#"[{"id":7,"price":"1.50000000","qty":"2.00000000","quoteQty":"3.0","time":1700000000000,"isBuyerMaker":false,"isBestMatch":true}]"#;

async fn rate_limited_once(State(s): State<Shared>) -> Response {
    if count(&s, "429") == 1 {
        return json(
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}"#,
            &[("retry-after", "1"), ("x-mbx-used-weight-1m", "300")],
        );
    }
    json(
        StatusCode::OK,
        TRADE_ROW_OK,
        &[("x-mbx-used-weight-1m", "1234")],
    )
}

async fn banned(State(s): State<Shared>) -> Response {
    count(&s, "418");
    json(
        StatusCode::IM_A_TEAPOT,
        r#"{"code":-1003,"msg":"Way too much request weight used; IP banned until 1751133000000."}"#,
        &[("retry-after", "7200")],
    )
}

async fn geo_blocked(State(s): State<Shared>) -> Response {
    count(&s, "451");
    json(StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, RESTRICTED, &[])
}

async fn flaky(State(s): State<Shared>) -> Response {
    count(&s, "5xx");
    if s.failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    json(StatusCode::OK, TRADE_ROW_OK, &[])
}

async fn always_500(State(s): State<Shared>) -> Response {
    count(&s, "500");
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"code":-1000,"msg":"An unknown error occurred while processing the request."}"#,
        &[],
    )
}

async fn slow_once(State(s): State<Shared>) -> Response {
    if count(&s, "slow") == 1 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    json(StatusCode::OK, TRADE_ROW_OK, &[])
}

async fn invalid_symbol(State(s): State<Shared>) -> Response {
    count(&s, "400");
    json(
        StatusCode::BAD_REQUEST,
        include_str!("fixtures/rest_invalid_symbol.json"),
        &[],
    )
}

async fn not_json(State(s): State<Shared>) -> Response {
    count(&s, "html");
    (StatusCode::OK, "<html>maintenance</html>").into_response()
}

/// historicalTrades over ids 0..2500, honouring `fromId` and `limit` like Binance.
async fn historical(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    count(&s, "historical");
    s.queries.lock().unwrap().push(q.clone());
    let from: i64 = q.get("fromId").map_or(0, |v| v.parse().unwrap());
    let limit: i64 = q.get("limit").map_or(500, |v| v.parse().unwrap());
    assert!(limit <= 1000, "limit {limit} above Binance's max");
    let rows: Vec<String> = (from..(from + limit).min(2500))
        .map(|id| {
            format!(
                r#"{{"id":{id},"price":"{id}.00000000","qty":"0.00100000","quoteQty":"1.0","time":{},"isBuyerMaker":{},"isBestMatch":true}}"#,
                1_700_000_000_000i64 + id,
                id % 2 == 0
            )
        })
        .collect();
    json(
        StatusCode::OK,
        &format!("[{}]", rows.join(",")),
        &[("x-mbx-used-weight-1m", "25")],
    )
}

async fn klines(Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q.get("interval").map(String::as_str), Some("1m"));
    assert_eq!(
        q.get("startTime").map(String::as_str),
        Some("1499040000000")
    );
    json(
        StatusCode::OK,
        include_str!("fixtures/rest_klines_docs.json"),
        &[],
    )
}

async fn exchange_info(Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(
        q.get("symbols").map(String::as_str),
        Some(r#"["BTCUSDT","ARBUSDT"]"#)
    );
    json(
        StatusCode::OK,
        r#"{"timezone":"UTC","serverTime":1,"rateLimits":[],"symbols":[
          {"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT","quoteAssetPrecision":8,"orderTypes":["LIMIT"],"permissionSets":[["SPOT"]],"filters":[]},
          {"symbol":"ARBUSDT","status":"TRADING","baseAsset":"ARB","baseAssetPrecision":8,"quoteAsset":"USDT","quoteAssetPrecision":8,"orderTypes":["LIMIT"],"permissionSets":[["SPOT"]],"filters":[]}]}"#,
        &[],
    )
}

async fn ticker(Query(q): Query<HashMap<String, String>>) -> Response {
    assert_eq!(q.get("symbols").map(String::as_str), Some(r#"["BTCUSDT"]"#));
    json(
        StatusCode::OK,
        r#"[{"symbol":"BTCUSDT","openTime":1,"closeTime":2,"firstId":100,"lastId":199,"count":100,"volume":"1.0"}]"#,
        &[],
    )
}

/// Starts the server; returns its base URL and shared state. Each test mounts the scenario it
/// needs at `/api/v3/historicalTrades` (the path the client calls).
async fn start(scenario: axum::routing::MethodRouter<Shared>, failures: usize) -> (String, Shared) {
    let state: Shared = Arc::new(Server::default());
    state.failures_left.store(failures, Ordering::SeqCst);
    let app = Router::new()
        .route("/api/v3/historicalTrades", scenario)
        .route("/api/v3/klines", get(klines))
        .route("/api/v3/exchangeInfo", get(exchange_info))
        .route("/api/v3/ticker/24hr", get(ticker))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn client(base_url: String) -> RestClient {
    RestClient::new(RestConfig {
        base_url,
        max_retries: 3,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_millis(200),
        ..RestConfig::default()
    })
    .unwrap()
}

fn hits(s: &Server, key: &str) -> usize {
    s.hits.lock().unwrap().get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn honours_retry_after_on_429_then_succeeds() {
    let (url, s) = start(get(rate_limited_once), 0).await;
    let c = client(url);
    let started = Instant::now();
    let rows = c.historical_trades("btcusdt", Some(7), 1).await.unwrap();
    assert_eq!(rows[0].id, 7);
    assert_eq!(hits(&s, "429"), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried before Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(c.used_weight(), 1234);
}

#[tokio::test]
async fn surfaces_a_ban_with_its_duration_without_retrying() {
    let (url, s) = start(get(banned), 0).await;
    let c = client(url);
    match c.historical_trades("BTCUSDT", None, 10).await {
        Err(RestError::Banned { wait, msg }) => {
            assert_eq!(wait, Duration::from_secs(7200));
            assert!(msg.contains("IP banned"), "{msg}");
        }
        other => panic!("expected Banned, got {other:?}"),
    }
    assert_eq!(hits(&s, "418"), 1);
}

#[tokio::test]
async fn ban_policy_refuses_to_sit_out_a_long_ban() {
    let (url, s) = start(get(banned), 0).await;
    let c = RestClient::new(RestConfig {
        base_url: url,
        ban_policy: BanPolicy::WaitUpTo(Duration::from_secs(60)),
        ..RestConfig::default()
    })
    .unwrap();
    assert!(matches!(
        c.historical_trades("BTCUSDT", None, 10).await,
        Err(RestError::Banned { .. })
    ));
    assert_eq!(hits(&s, "418"), 1);
}

#[tokio::test]
async fn geo_block_is_never_retried_and_says_what_to_do() {
    let (url, s) = start(get(geo_blocked), 0).await;
    let c = client(url);
    let err = c.historical_trades("BTCUSDT", None, 10).await.unwrap_err();
    assert!(matches!(err, RestError::GeoBlocked { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "HTTP 451",
        "restricted locations",
        "United States",
        "outside the US",
        "data-stream.binance.vision",
        "Service unavailable from a restricted location",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert_eq!(hits(&s, "451"), 1);
}

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let (url, s) = start(get(flaky), 2).await;
    let rows = client(url)
        .historical_trades("BTCUSDT", Some(7), 1)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(hits(&s, "5xx"), 3);
}

#[tokio::test]
async fn gives_up_after_bounded_retries() {
    let (url, s) = start(get(always_500), 0).await;
    match client(url).historical_trades("BTCUSDT", None, 1).await {
        Err(RestError::Transient {
            attempts, detail, ..
        }) => {
            assert_eq!(attempts, 4);
            assert!(detail.contains("HTTP 500"), "{detail}");
            assert!(detail.contains("unknown error"), "{detail}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert_eq!(hits(&s, "500"), 4);
}

#[tokio::test]
async fn a_timeout_is_transient_and_retried() {
    let (url, s) = start(get(slow_once), 0).await;
    let rows = client(url)
        .historical_trades("BTCUSDT", Some(7), 1)
        .await
        .unwrap();
    assert_eq!(rows[0].id, 7);
    assert_eq!(hits(&s, "slow"), 2);
}

#[tokio::test]
async fn invalid_symbol_is_permanent_with_binance_code() {
    let (url, s) = start(get(invalid_symbol), 0).await;
    let err = client(url)
        .historical_trades("NOPE", None, 1)
        .await
        .unwrap_err();
    match &err {
        RestError::Permanent {
            status, code, msg, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(*code, Some(-1121));
            assert_eq!(msg, "Invalid symbol.");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(err.to_string().contains("Binance code -1121"), "{err}");
    assert_eq!(hits(&s, "400"), 1);
}

#[tokio::test]
async fn a_non_json_200_is_retried_then_a_decode_error_quoting_the_body() {
    let (url, s) = start(get(not_json), 0).await;
    let r = client(url).historical_trades("BTCUSDT", None, 1).await;
    match r {
        Err(RestError::Decode { detail, .. }) => {
            assert!(detail.contains("<html>maintenance</html>"), "{detail}")
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // A proxy's page or a cut body is weather: retried like a 5xx (max_retries 3).
    assert_eq!(hits(&s, "html"), 4);
}

/// A maintenance page first, then a body cut short, then the real answer.
async fn html_then_truncated_then_ok(State(s): State<Shared>) -> Response {
    match count(&s, "mangled") {
        1 => (StatusCode::OK, "<html>maintenance</html>").into_response(),
        2 => json(StatusCode::OK, &TRADE_ROW_OK[..40], &[]),
        _ => json(StatusCode::OK, TRADE_ROW_OK, &[]),
    }
}

#[tokio::test]
async fn a_mangled_body_then_a_good_one_is_a_success() {
    let (url, s) = start(get(html_then_truncated_then_ok), 0).await;
    let rows = client(url)
        .historical_trades("BTCUSDT", None, 1)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(hits(&s, "mangled"), 3);
}

#[tokio::test]
async fn fetches_an_id_range_in_pages_of_1000() {
    let (url, s) = start(get(historical), 0).await;
    let c = client(url);
    let trades = c
        .fetch_trade_range("btcusdt", IdRange::new(100, 2345), Source::Backfill)
        .await
        .unwrap();
    let ids: Vec<i64> = trades.iter().map(|t| t.trade_id).collect();
    assert_eq!(ids, (100..=2345).collect::<Vec<_>>());
    assert!(
        trades
            .iter()
            .all(|t| t.source == "backfill" && t.symbol == "BTCUSDT")
    );
    assert_eq!(trades[0].price, "100.00000000");
    assert_eq!(trades[0].trade_time, (1_700_000_000_000 + 100) * 1000);
    assert_eq!(trades[0].event_time, trades[0].trade_time);
    assert!(trades[0].buyer_is_maker);
    let q = s.queries.lock().unwrap().clone();
    let pages: Vec<(String, String)> = q
        .iter()
        .map(|q| (q["fromId"].clone(), q["limit"].clone()))
        .collect();
    assert_eq!(
        pages,
        vec![
            ("100".into(), "1000".into()),
            ("1100".into(), "1000".into()),
            ("2100".into(), "246".into())
        ]
    );
    assert_eq!(c.used_weight(), 25);
}

#[tokio::test]
async fn a_client_in_another_time_unit_shares_the_weight_budget() {
    let (url, _s) = start(get(historical), 0).await;
    let ms = client(url);
    let us = ms.with_time_unit(TimeUnit::Microsecond);
    assert_eq!(ms.config().time_unit, TimeUnit::Millisecond);
    assert_eq!(us.config().time_unit, TimeUnit::Microsecond);
    let trades = us
        .fetch_trade_range("BTCUSDT", IdRange::new(7, 7), Source::Batch)
        .await
        .unwrap();
    // Read as µs: the number is taken as it is, not multiplied by 1000.
    assert_eq!(trades[0].trade_time, 1_700_000_000_000 + 7);
    // Binance counts weight per IP: what one spent, the other sees.
    assert_eq!(ms.used_weight(), 25);
    assert!(ms.budget_used() >= 25, "{}", ms.budget_used());
}

#[tokio::test]
async fn a_range_beyond_what_binance_has_stops_instead_of_looping() {
    let (url, s) = start(get(historical), 0).await;
    let trades = client(url)
        .fetch_trade_range("BTCUSDT", IdRange::new(2490, 4000), Source::Batch)
        .await
        .unwrap();
    assert_eq!(trades.len(), 10);
    assert_eq!(hits(&s, "historical"), 2);
}

#[tokio::test]
async fn klines_exchange_info_and_ticker() {
    let (url, _s) = start(get(historical), 0).await;
    let c = client(url);
    let k = c
        .klines("BNBBTC", "1m", Some(1_499_040_000_000), None, 1000)
        .await
        .unwrap();
    assert_eq!(k[0].trade_count, 308);
    let info = c.exchange_info(&["BTCUSDT", "arbusdt"]).await.unwrap();
    assert_eq!(
        info.symbols
            .iter()
            .map(|s| s.symbol.as_str())
            .collect::<Vec<_>>(),
        ["BTCUSDT", "ARBUSDT"]
    );
    let t = c.ticker_24hr(&["BTCUSDT"]).await.unwrap();
    assert_eq!(t[0].last_id - t[0].first_id + 1, t[0].count);
    // The budget counted 2 + 20 + 2 (less if a minute boundary fell in between).
    assert!((1..=24).contains(&c.budget_used()), "{}", c.budget_used());
}
