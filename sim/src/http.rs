//! The HTTP router: REST market data (`/api/v3/...`), WebSocket upgrades and the admin API.
//!
//! Every REST answer goes through [`gate`]: geo-block (451), injected 5xx, then the request
//! weight (429, 418), and carries `X-MBX-USED-WEIGHT-1M`. Weights are Binance's (spot REST docs,
//! "Market data endpoints"): klines/uiKlines 2, trades 25, historicalTrades 25, aggTrades 4,
//! exchangeInfo 20, ticker/24hr 2 per 1-20 symbols / 40 for 21-100 / 80 above or without symbol,
//! ping and time 1. Heavy computation runs on the blocking pool.
//!
//! The trade archive (`/data/spot/{daily,monthly}/trades/...`, another host at Binance) is not
//! gated: no weight, no geo-block, no REST faults; its own faults are per file.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use crate::archive::Period;
use crate::faults::{FaultRequest, archive_plan};
use crate::frames::TimeUnit;
use crate::limits::WeightDecision;
use crate::rest;
use crate::state::{Shared, SymbolUpdate};
use crate::ws::{self, WsRequest};

type Params = Query<HashMap<String, String>>;

/// Build the router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v3/ping", get(ping))
        .route("/api/v3/time", get(time))
        .route("/api/v3/klines", get(klines))
        .route("/api/v3/uiKlines", get(klines))
        .route("/api/v3/exchangeInfo", get(exchange_info))
        .route("/api/v3/ticker/24hr", get(ticker_24hr))
        .route("/api/v3/trades", get(trades))
        .route("/api/v3/historicalTrades", get(historical_trades))
        .route("/api/v3/aggTrades", get(agg_trades))
        .route("/ws", get(ws_bare))
        .route("/ws/{*streams}", get(ws_raw))
        .route("/stream", get(ws_combined))
        .route("/admin/ground-truth", get(admin_ground_truth))
        .route("/admin/connections", get(admin_connections))
        .route(
            "/admin/faults",
            get(admin_faults_get).post(admin_faults_post),
        )
        .route("/admin/symbols/{symbol}", post(admin_symbol_post))
        .route(
            "/data/spot/{granularity}/trades/{symbol}/{file}",
            get(archive_file),
        )
        .fallback(not_found)
        .with_state(shared)
}

const JSON_CT: &str = "application/json;charset=UTF-8";

/// A JSON answer with the used-weight header.
fn answer(status: StatusCode, body: String, used: Option<u32>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CT),
    );
    if let Some(u) = used
        && let Ok(v) = HeaderValue::from_str(&u.to_string())
    {
        r.headers_mut().insert("x-mbx-used-weight-1m", v.clone());
        r.headers_mut().insert("x-mbx-used-weight", v);
    }
    r
}

/// Binance error body `{"code":..,"msg":".."}` with HTTP 400 (or the given status).
pub(crate) fn api_error(status: StatusCode, code: i64, msg: &str, used: Option<u32>) -> Response {
    answer(status, json!({"code": code, "msg": msg}).to_string(), used)
}

/// A maintenance page as a CDN or proxy serves it, with HTTP 200.
const MANGLED_HTML: &str = "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>System maintenance in progress.</body></html>";

/// Geo-block, injected 5xx, mangled bodies, weight. `Ok(used weight)` or the refusal.
fn gate(shared: &Shared, ip: IpAddr, weight: u32) -> Result<u32, Box<Response>> {
    let limit = {
        let mut f = shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        if f.geo_block {
            return Err(Box::new(answer(
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                ws::GEO_BLOCK_BODY.into(),
                None,
            )));
        }
        if f.http_5xx_remaining > 0 {
            f.http_5xx_remaining -= 1;
            let status = StatusCode::from_u16(if f.http_5xx_status == 0 {
                503
            } else {
                f.http_5xx_status
            })
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(Box::new(api_error(
                status,
                -1001,
                "Internal error; unable to process your request. Please try again.",
                None,
            )));
        }
        if f.rest_mangled_remaining > 0 {
            f.rest_mangled_remaining -= 1;
            // What users have seen in front of Binance: a proxy's HTML page with a 200, or a
            // JSON body cut short (the connection dropped mid-body behind a proxy).
            let body = if f.rest_mangled_remaining.is_multiple_of(2) {
                MANGLED_HTML.to_owned()
            } else {
                r#"[{"id":1,"price":"1.0000"#.to_owned()
            };
            return Err(Box::new(answer(StatusCode::OK, body, None)));
        }
        if f.weight_limit > 0 {
            f.weight_limit
        } else {
            shared.config.weight_limit
        }
    };
    let decision = shared
        .weights
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .charge(ip, weight, limit, tokio::time::Instant::now());
    match decision {
        WeightDecision::Allowed { used } => Ok(used),
        WeightDecision::TooMany { used, retry_after } => {
            let msg = format!(
                "Too much request weight used; current limit is {limit} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."
            );
            let mut r = api_error(StatusCode::TOO_MANY_REQUESTS, -1003, &msg, Some(used));
            set_retry_after(&mut r, retry_after);
            Err(Box::new(r))
        }
        WeightDecision::Banned { used, retry_after } => {
            let until = shared.now_ms() + retry_after.as_millis() as i64;
            let msg = format!(
                "Way too much request weight used; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans."
            );
            let mut r = api_error(StatusCode::IM_A_TEAPOT, -1003, &msg, Some(used));
            set_retry_after(&mut r, retry_after);
            Err(Box::new(r))
        }
    }
}

fn set_retry_after(r: &mut Response, d: std::time::Duration) {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert("retry-after", v);
    }
}

fn time_unit(headers: &HeaderMap) -> TimeUnit {
    headers
        .get("x-mbx-time-unit")
        .and_then(|v| v.to_str().ok())
        .and_then(TimeUnit::parse)
        .unwrap_or_default()
}

/// Run a REST computation on the blocking pool and turn its result into an answer.
async fn serve(
    shared: Arc<Shared>,
    used: u32,
    f: impl FnOnce(&Shared) -> Result<String, rest::ApiError> + Send + 'static,
) -> Response {
    let s = shared.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(body)) => answer(StatusCode::OK, body, Some(used)),
        Ok(Err(e)) => api_error(e.status, e.code, &e.msg, Some(used)),
        Err(join) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            -1000,
            &format!("An unknown error occurred while processing the request. ({join})"),
            Some(used),
        ),
    }
}

macro_rules! gated {
    ($shared:expr, $addr:expr, $weight:expr) => {
        match gate(&$shared, $addr.ip(), $weight) {
            Ok(u) => u,
            Err(r) => return *r,
        }
    };
}

async fn ping(State(s): State<Arc<Shared>>, ConnectInfo(a): ConnectInfo<SocketAddr>) -> Response {
    let used = gated!(s, a, 1);
    answer(StatusCode::OK, "{}".into(), Some(used))
}

async fn time(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let used = gated!(s, a, 1);
    let t = time_unit(&headers).from_us(s.clock.now_us());
    answer(
        StatusCode::OK,
        format!(r#"{{"serverTime":{t}}}"#),
        Some(used),
    )
}

async fn klines(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let used = gated!(s, a, 2);
    let unit = time_unit(&headers);
    serve(s, used, move |sh| rest::klines(sh, &q, unit)).await
}

async fn exchange_info(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    Query(q): Params,
) -> Response {
    let used = gated!(s, a, 20);
    serve(s, used, move |sh| rest::exchange_info(sh, &q)).await
}

async fn ticker_24hr(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let weight = rest::ticker_weight(&q);
    let used = gated!(s, a, weight);
    let unit = time_unit(&headers);
    serve(s, used, move |sh| rest::ticker_24hr(sh, &q, unit)).await
}

async fn trades(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let used = gated!(s, a, 25);
    let unit = time_unit(&headers);
    serve(s, used, move |sh| rest::trades(sh, &q, unit, false)).await
}

async fn historical_trades(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let used = gated!(s, a, 25);
    let unit = time_unit(&headers);
    serve(s, used, move |sh| rest::trades(sh, &q, unit, true)).await
}

async fn agg_trades(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Params,
) -> Response {
    let used = gated!(s, a, 4);
    let unit = time_unit(&headers);
    serve(s, used, move |sh| rest::agg_trades(sh, &q, unit)).await
}

async fn not_found(uri: OriginalUri) -> Response {
    tracing::debug!(uri = %uri.0, "not found");
    (StatusCode::NOT_FOUND, "").into_response()
}

fn ws_request(
    uri: &OriginalUri,
    streams: Vec<String>,
    combined: bool,
    q: &HashMap<String, String>,
) -> WsRequest {
    WsRequest {
        streams,
        combined,
        unit: q
            .get("timeUnit")
            .and_then(|v| TimeUnit::parse(v))
            .unwrap_or_default(),
        path: uri.0.to_string(),
    }
}

async fn ws_bare(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    uri: OriginalUri,
    Query(q): Params,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let req = ws_request(&uri, Vec::new(), false, &q);
    ws::upgrade(s, a, req, ws)
}

async fn ws_raw(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    uri: OriginalUri,
    Path(streams): Path<String>,
    Query(q): Params,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let streams = streams.split('/').map(str::to_string).collect();
    let req = ws_request(&uri, streams, false, &q);
    ws::upgrade(s, a, req, ws)
}

async fn ws_combined(
    State(s): State<Arc<Shared>>,
    ConnectInfo(a): ConnectInfo<SocketAddr>,
    uri: OriginalUri,
    Query(q): Params,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let streams = q
        .get("streams")
        .map(|v| v.split('/').map(str::to_string).collect())
        .unwrap_or_default();
    let req = ws_request(&uri, streams, true, &q);
    ws::upgrade(s, a, req, ws)
}

fn admin_json<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_string_pretty(v) {
        Ok(body) => answer(status, body, None),
        Err(e) => admin_err(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn admin_err(status: StatusCode, msg: &str) -> Response {
    answer(status, json!({"error": msg}).to_string(), None)
}

async fn admin_ground_truth(State(s): State<Arc<Shared>>, Query(q): Params) -> Response {
    let conn = match q.get("connection").map(|v| v.parse::<u64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return admin_err(
                StatusCode::BAD_REQUEST,
                &format!("connection={:?} is not a connection id", q["connection"]),
            );
        }
    };
    admin_json(StatusCode::OK, &s.ground_truth(conn))
}

async fn admin_connections(State(s): State<Arc<Shared>>) -> Response {
    let gt = s.ground_truth(None);
    let list: Vec<_> = gt
        .connections
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "remote": c.remote,
                "path": c.path,
                "opened_at_ms": c.opened_at_ms,
                "closed_at_ms": c.closed_at_ms,
                "close_reason": c.close_reason,
                "streams": c.streams,
            })
        })
        .collect();
    admin_json(StatusCode::OK, &list)
}

async fn admin_faults_get(State(s): State<Arc<Shared>>) -> Response {
    let f = s.faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
    admin_json(StatusCode::OK, &f)
}

async fn admin_faults_post(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return admin_err(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    match s.apply_faults(&req) {
        Ok(settings) => admin_json(StatusCode::OK, &settings),
        Err(e) => admin_err(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn admin_symbol_post(
    State(s): State<Arc<Shared>>,
    Path(symbol): Path<String>,
    body: Bytes,
) -> Response {
    let u: SymbolUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return admin_err(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    match s.update_symbol(&symbol, &u) {
        Ok(spec) => admin_json(StatusCode::OK, &spec),
        Err(crate::state::SimError::UnknownSymbol(_)) => {
            admin_err(StatusCode::NOT_FOUND, &format!("unknown symbol {symbol:?}"))
        }
        Err(e) => admin_err(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// S3's answer for a key that does not exist, as `data.binance.vision` gives it (HTTP 404,
/// `application/xml`).
fn no_such_key(key: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"
    );
    let mut r = (StatusCode::NOT_FOUND, body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    r
}

/// `GET /data/spot/{daily|monthly}/trades/<SYMBOL>/<SYMBOL>-trades-<period>.zip[.CHECKSUM]`.
async fn archive_file(
    State(s): State<Arc<Shared>>,
    Path((granularity, symbol, file)): Path<(String, String, String)>,
) -> Response {
    let key = format!("data/spot/{granularity}/trades/{symbol}/{file}");
    let (stem, is_checksum) = match file.strip_suffix(".zip.CHECKSUM") {
        Some(stem) => (stem, true),
        None => match file.strip_suffix(".zip") {
            Some(stem) => (stem, false),
            None => return no_such_key(&key),
        },
    };
    let period = stem
        .strip_prefix(symbol.as_str())
        .and_then(|rest| rest.strip_prefix("-trades-"))
        .and_then(|label| Period::parse(&granularity, label));
    let (Some(period), Some(sym)) = (period, s.tape.index_of(&symbol)) else {
        return no_such_key(&key);
    };
    let now_ms = s.now_ms();
    if !period.published(s.tape.genesis_us().div_euclid(1000), now_ms) {
        return no_such_key(&key);
    }
    let plan = {
        let f = s.faults.lock().unwrap_or_else(|e| e.into_inner());
        archive_plan(&f.archive, &symbol, &period.label(), now_ms)
    };
    if plan.missing {
        return no_such_key(&key);
    }
    let sh = s.clone();
    let built =
        tokio::task::spawn_blocking(move || sh.archive_file(sym, period, plan.first_upload)).await;
    let built = match built {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            tracing::error!(error = %e, key = %key, "archive file not built");
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
        Err(join) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, join.to_string()).into_response();
        }
    };
    let (content_type, body) = if is_checksum {
        ("text/plain", Bytes::from(built.served_checksum(&plan)))
    } else {
        (
            "application/zip",
            Bytes::copy_from_slice(built.served_zip(&plan)),
        )
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}
