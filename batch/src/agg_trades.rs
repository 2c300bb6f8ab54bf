//! The first trade id at or after a time, from `GET /api/v3/aggTrades?startTime=..&limit=1`
//! (each aggregate trade carries `f`, its first trade id).
//!
//! Written here because `binance::RestClient` has no `aggTrades` call yet; it follows the same
//! discipline through the same pure pieces (`binance::rest::classify`, the same `RestError`s,
//! `Retry-After` honoured, 5xx retried, 451/418 surfaced at once). Its weight (4, Binance spot
//! `rest-api.md`) is not counted in the client's budget: it is one call per symbol and day, next
//! to two klines pages (2 each). When `RestClient` gains `agg_trades`, call that instead.

use std::time::Duration;

use binance::RestError;
use binance::rest::classify::{Outcome, classify};
use serde::Deserialize;

/// Retries of one probe (5xx and 429 together).
const MAX_ATTEMPTS: usize = 5;

/// One aggregate trade: only the fields we read.
#[derive(Debug, Deserialize)]
struct AggTrade {
    /// First trade id of the aggregate.
    f: i64,
    /// Time (ms).
    #[serde(rename = "T")]
    time: i64,
}

/// Finds the first trade at or after a time.
#[derive(Debug, Clone)]
pub struct FirstTradeProbe {
    http: reqwest::Client,
    base_url: String,
}

impl FirstTradeProbe {
    /// A probe against `base_url` (e.g. `https://api.binance.com`).
    pub fn new(base_url: &str) -> Result<Self, RestError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| RestError::Config(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// `(trade id, trade time ms)` of the first trade at or after `start_ms`, `None` if there is
    /// none yet.
    pub async fn first_trade_at(
        &self,
        symbol: &str,
        start_ms: i64,
    ) -> Result<Option<(i64, i64)>, RestError> {
        const PATH: &str = "/api/v3/aggTrades";
        let url = format!("{}{PATH}", self.base_url);
        let mut last = String::new();
        for attempt in 1..=MAX_ATTEMPTS {
            let resp = self
                .http
                .get(&url)
                .query(&[
                    ("symbol", symbol.to_owned()),
                    ("startTime", start_ms.to_string()),
                    ("limit", "1".to_owned()),
                ])
                .send()
                .await;
            let (status, headers, body) = match resp {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    match r.bytes().await {
                        Ok(b) => (status, headers, b),
                        Err(e) => {
                            last = e.to_string();
                            tokio::time::sleep(backoff(attempt)).await;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            match classify(status, &headers, &body) {
                Outcome::Ok => {
                    let rows: Vec<AggTrade> =
                        serde_json::from_slice(&body).map_err(|e| RestError::Decode {
                            endpoint: PATH,
                            detail: e.to_string(),
                        })?;
                    return Ok(rows.first().map(|a| (a.f, a.time)));
                }
                Outcome::RetryAfter { wait, msg } => {
                    tracing::warn!(endpoint = PATH, ?wait, %msg, "Binance answered 429");
                    last = msg;
                    tokio::time::sleep(wait).await;
                }
                Outcome::Transient { status, detail } => {
                    last = format!("HTTP {status}: {detail}");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Outcome::Banned { wait, msg } => return Err(RestError::Banned { wait, msg }),
                Outcome::GeoBlocked { msg } => return Err(RestError::GeoBlocked { url, msg }),
                Outcome::Permanent { status, code, msg } => {
                    return Err(RestError::Permanent {
                        endpoint: PATH,
                        status,
                        code,
                        msg,
                    });
                }
            }
        }
        Err(RestError::Transient {
            endpoint: PATH,
            attempts: MAX_ATTEMPTS,
            detail: last,
        })
    }
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(200u64 << attempt.min(6))
}
