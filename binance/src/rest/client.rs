//! [`RestClient`]: the async Binance REST client of the producer and the batch.
//!
//! Every request: waits until the [`WeightBudget`] allows its weight, sends it, records
//! `X-MBX-USED-WEIGHT-1M`, and acts on [`classify()`]:
//! - `Ok`: decode the body;
//! - `Transient` (5xx, 408, timeouts, connection errors): retry with capped exponential backoff and
//!   full jitter, at most [`RestConfig::max_retries`] times;
//! - `RetryAfter` (429): block the whole budget (every request of this client) for `Retry-After`,
//!   then retry (counts as a retry);
//! - `Banned` (418): block the budget; wait it out if the [`BanPolicy`] allows that long, else
//!   return [`RestError::Banned`] with the duration;
//! - `GeoBlocked` (451) and `Permanent` (other 4xx): return at once, never retried.
//!
//! The client reads the wall clock (for the weight window and receive times): this is the I/O
//! layer; the decisions live in the pure [`super::budget`] and [`super::classify`](mod@super::classify).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::de::DeserializeOwned;
use trade_proto::{Source, Trade};

use super::budget::{
    DEFAULT_SAFETY_MARGIN, REQUEST_WEIGHT_LIMIT_1M, WeightBudget, WindowUse, weights,
};
use super::classify::{Outcome, classify, used_weight};
use crate::continuity::IdRange;
use crate::parse::{ParseError, TimeUnit, parse_rest_trade};
use crate::wire::{AggTrade, ExchangeInfo, Kline, RestTrade, Ticker24hr};

/// Largest `limit` of `historicalTrades`, `trades` and `klines`. Source: Binance spot
/// `rest-api.md` ("limit: Default 500; max 1000").
pub const MAX_PAGE_LIMIT: u16 = 1000;

/// What to do when Binance answers 418 (IP banned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanPolicy {
    /// Return [`RestError::Banned`] at once; the caller decides (the producer records the gap,
    /// the batch fails the run).
    Surface,
    /// Sleep through bans up to this long, then retry; longer bans are surfaced.
    WaitUpTo(Duration),
}

/// Configuration of a [`RestClient`]. `Default` is production: `https://api.binance.com`
/// (the data-api host does not serve `historicalTrades`).
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Scheme and host, no trailing path, e.g. `https://api.binance.com` or a simulator's
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Retries after the first attempt, for transient failures and 429s together.
    pub max_retries: usize,
    /// First backoff delay (before jitter).
    pub min_backoff: Duration,
    /// Cap on one backoff delay (before jitter).
    pub max_backoff: Duration,
    /// Timeout of one request, connect to last byte.
    pub request_timeout: Duration,
    /// The server's weight limit per minute.
    pub weight_limit: u32,
    /// Weight kept in reserve below the limit.
    pub safety_margin: u32,
    /// What to do on 418.
    pub ban_policy: BanPolicy,
    /// Unit of REST times; `Microsecond` sends `X-MBX-TIME-UNIT: MICROSECOND`.
    pub time_unit: TimeUnit,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            base_url: "https://api.binance.com".into(),
            max_retries: 5,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            weight_limit: REQUEST_WEIGHT_LIMIT_1M,
            safety_margin: DEFAULT_SAFETY_MARGIN,
            ban_policy: BanPolicy::Surface,
            time_unit: TimeUnit::Millisecond,
        }
    }
}

/// Why a REST call failed, after the client did what it could.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// HTTP 451. Binance refuses requests from restricted locations, including the United
    /// States and US cloud regions. Retrying cannot help: run the service from a location
    /// Binance serves (a GCP region outside the US, e.g. `asia-northeast1`, the default) and
    /// use the market-data hosts. Producer: record the gap with reason `geo_blocked_451`; batch:
    /// fail the run with this message.
    #[error(
        "HTTP 451 from {url}: Binance refuses requests from restricted locations, including the \
         United States and US cloud regions (Binance said: {msg}). Retrying cannot help. Fix: run \
         from a GCP region outside the US (e.g. asia-northeast1, the default) and use the \
         market-data hosts (BINANCE_WS_URL=wss://data-stream.binance.vision, \
         BINANCE_REST_URL=https://api.binance.com or https://data-api.binance.vision for \
         everything but historicalTrades)"
    )]
    GeoBlocked {
        /// The URL that was refused.
        url: String,
        /// Binance's message.
        msg: String,
    },
    /// HTTP 418: the IP is banned for `wait`. Send nothing to Binance from this IP until then
    /// (the client's budget already blocks itself). Producer: record the gap with reason
    /// `ip_banned_418` if it cannot wait; batch: fail and let the scheduler retry later.
    #[error(
        "HTTP 418: IP banned by Binance for {wait:?} ({msg}); no request may be sent until then"
    )]
    Banned {
        /// How long the ban lasts (from `Retry-After`).
        wait: Duration,
        /// Binance's message.
        msg: String,
    },
    /// Still answered 429 after every retry. Try again later; check what else uses the IP.
    #[error("HTTP 429 after {attempts} attempts on {endpoint}: last Retry-After {wait:?} ({msg})")]
    RateLimited {
        /// The path.
        endpoint: &'static str,
        /// Attempts made.
        attempts: usize,
        /// The last `Retry-After`.
        wait: Duration,
        /// Binance's message.
        msg: String,
    },
    /// Transient failures (5xx, timeouts, connection errors) on every attempt. Binance or the
    /// network is down: retry the whole operation later.
    #[error("{endpoint} failed {attempts} times, last: {detail}")]
    Transient {
        /// The path.
        endpoint: &'static str,
        /// Attempts made.
        attempts: usize,
        /// The last failure.
        detail: String,
    },
    /// A 4xx other than 418/429/451: the request is wrong (e.g. code -1121, invalid symbol).
    /// Do not retry; fix the configuration or the call.
    #[error("{endpoint} rejected with HTTP {status}{}: {msg}", code.map(|c| format!(" (Binance code {c})")).unwrap_or_default())]
    Permanent {
        /// The path.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Binance's error code.
        code: Option<i64>,
        /// Binance's message.
        msg: String,
    },
    /// A 2xx body that is not the documented JSON, on every attempt: a proxy's or WAF's page,
    /// a body cut short, or Binance changed. Retry the whole operation later; report it.
    #[error("{endpoint}: unexpected response body: {detail}")]
    Decode {
        /// The path.
        endpoint: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A trade row broke the contract (not a plain decimal, ...). Report it; do not publish.
    #[error("invalid trade row: {0}")]
    InvalidRow(#[from] ParseError),
    /// The client could not be built (TLS backend, invalid base URL). Fix the configuration.
    #[error("REST client configuration: {0}")]
    Config(String),
}

/// The async Binance REST client. Cheap to clone; clones share the weight budget.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    config: Arc<RestConfig>,
    /// Shared by every clone: one IP, one budget. Never held across an await.
    budget: Arc<Mutex<WeightBudget>>,
    /// The last `X-MBX-USED-WEIGHT-1M` read, for metrics.
    last_used_weight: Arc<AtomicU32>,
}

/// What the request loop does next.
enum Step {
    /// Retry after the backoff schedule's next delay (jittered).
    Backoff(String),
    /// Retry after this exact wait (Retry-After, or a ban we may sit out).
    Wait(Duration, String),
    /// A 2xx whose body does not decode: retry after the backoff, like a 5xx.
    BadBody(String),
}

impl RestClient {
    /// Builds a client. Fails only on an unusable base URL or TLS setup.
    pub fn new(config: RestConfig) -> Result<Self, RestError> {
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|e| RestError::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(RestError::Config(format!(
                "base_url {:?}: scheme must be http or https",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("binance-gcp-pipeline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RestError::Config(e.to_string()))?;
        let budget = WeightBudget::new(config.weight_limit, config.safety_margin);
        Ok(RestClient {
            http,
            config: Arc::new(config),
            budget: Arc::new(Mutex::new(budget)),
            last_used_weight: Arc::new(AtomicU32::new(0)),
        })
    }

    /// The last `X-MBX-USED-WEIGHT-1M` Binance reported (0 before the first response).
    pub fn used_weight(&self) -> u32 {
        self.last_used_weight.load(Ordering::Relaxed)
    }

    /// The weight the budget counts in the current window (ours and the header's).
    pub fn budget_used(&self) -> u32 {
        self.budget.lock().expect("budget lock").used()
    }

    /// The weight windows the budget counted: (the one before, the latest). Sampled more often
    /// than once a minute, they give every minute's weight exactly.
    pub fn weight_windows(&self) -> (Option<WindowUse>, Option<WindowUse>) {
        let b = self.budget.lock().expect("budget lock");
        (b.closed_window(), b.current_window())
    }

    /// The configuration in use.
    pub fn config(&self) -> &RestConfig {
        &self.config
    }

    /// The same client (connection pool, weight budget: Binance counts weight per IP, not per
    /// client) answering in `unit`: trade ids in µs for the warehouse, klines in ms for their
    /// own columns.
    pub fn with_time_unit(&self, unit: TimeUnit) -> RestClient {
        RestClient {
            config: Arc::new(RestConfig {
                time_unit: unit,
                ..(*self.config).clone()
            }),
            ..self.clone()
        }
    }

    /// `GET /api/v3/historicalTrades` (weight 25): up to `limit` (≤ 1000) trades from `from_id`
    /// (the most recent ones when `None`).
    pub async fn historical_trades(
        &self,
        symbol: &str,
        from_id: Option<i64>,
        limit: u16,
    ) -> Result<Vec<RestTrade>, RestError> {
        let mut q = vec![
            ("symbol", symbol.to_ascii_uppercase()),
            ("limit", clamp_limit(limit).to_string()),
        ];
        if let Some(id) = from_id {
            q.push(("fromId", id.to_string()));
        }
        self.get_json("/api/v3/historicalTrades", &q, weights::HISTORICAL_TRADES)
            .await
    }

    /// `GET /api/v3/klines` (weight 2): up to `limit` (≤ 1000) klines of `interval` (`1m`, ...),
    /// oldest first from `start_ms` when given. Times in ms (the request's time unit).
    pub async fn klines(
        &self,
        symbol: &str,
        interval: &str,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        limit: u16,
    ) -> Result<Vec<Kline>, RestError> {
        let mut q = vec![
            ("symbol", symbol.to_ascii_uppercase()),
            ("interval", interval.to_owned()),
            ("limit", clamp_limit(limit).to_string()),
        ];
        if let Some(s) = start_ms {
            q.push(("startTime", s.to_string()));
        }
        if let Some(e) = end_ms {
            q.push(("endTime", e.to_string()));
        }
        self.get_json("/api/v3/klines", &q, weights::KLINES).await
    }

    /// `GET /api/v3/aggTrades` (weight 4): up to `limit` (≤ 1000) aggregate trades from
    /// `start_time` (in the client's time unit) on, oldest first.
    pub async fn agg_trades_from(
        &self,
        symbol: &str,
        start_time: i64,
        limit: u16,
    ) -> Result<Vec<AggTrade>, RestError> {
        let q = vec![
            ("symbol", symbol.to_ascii_uppercase()),
            ("startTime", start_time.to_string()),
            ("limit", clamp_limit(limit).to_string()),
        ];
        self.get_json("/api/v3/aggTrades", &q, weights::AGG_TRADES)
            .await
    }

    /// `GET /api/v3/exchangeInfo` (weight 20) for `symbols` (all symbols when empty).
    pub async fn exchange_info(&self, symbols: &[&str]) -> Result<ExchangeInfo, RestError> {
        let q = symbols_param(symbols);
        self.get_json("/api/v3/exchangeInfo", &q, weights::EXCHANGE_INFO)
            .await
    }

    /// `GET /api/v3/ticker/24hr` (weight 2 per symbol, 80 for all) for `symbols` (all when
    /// empty). Always uses the `symbols=[...]` form so the answer is a list.
    pub async fn ticker_24hr(&self, symbols: &[&str]) -> Result<Vec<Ticker24hr>, RestError> {
        let q = symbols_param(symbols);
        self.get_json(
            "/api/v3/ticker/24hr",
            &q,
            weights::ticker_24hr(symbols.len()),
        )
        .await
    }

    /// Every trade of `symbol` with an id in `range` (inclusive), fetched with
    /// `historicalTrades` in pages of 1000, as [`Trade`]s with `source` and the receive time of
    /// each page. Ids Binance does not return (none should be missing: ids are consecutive) are
    /// simply absent; the caller's continuity tracker tells which.
    pub async fn fetch_trade_range(
        &self,
        symbol: &str,
        range: IdRange,
        source: Source,
    ) -> Result<Vec<Trade>, RestError> {
        let mut out = Vec::with_capacity(usize::try_from(range.len()).unwrap_or(0).min(1 << 20));
        let mut next = range.from;
        while next <= range.to {
            let want = u16::try_from((range.to - next + 1).min(i64::from(MAX_PAGE_LIMIT)))
                .expect("at most 1000");
            let page = self.historical_trades(symbol, Some(next), want).await?;
            let received = now_micros();
            let mut last = None;
            for row in &page {
                if row.id < next || row.id > range.to {
                    continue;
                }
                out.push(parse_rest_trade(
                    row,
                    symbol,
                    self.config.time_unit,
                    received,
                    source,
                )?);
                last = Some(row.id);
            }
            match last {
                // No progress: Binance has nothing at or after `next` within the range.
                None => break,
                Some(id) => next = id + 1,
            }
        }
        Ok(out)
    }

    /// One GET with the budget, retry and classification discipline; decodes the JSON body.
    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &'static str,
        query: &[(&str, String)],
        weight: u32,
    ) -> Result<T, RestError> {
        let url = format!("{}{}", self.config.base_url.trim_end_matches('/'), path);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_max_times(self.config.max_retries)
            .build();
        let mut attempts = 0usize;
        loop {
            self.wait_for_budget(weight).await;
            attempts += 1;
            let mut req = self.http.get(&url).query(query);
            if self.config.time_unit == TimeUnit::Microsecond {
                req = req.header("X-MBX-TIME-UNIT", TimeUnit::Microsecond.as_param());
            }
            let step = match req.send().await {
                Err(e) => Step::Backoff(describe(&e)),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    if let Some(w) = used_weight(&headers) {
                        self.last_used_weight.store(w, Ordering::Relaxed);
                        self.budget
                            .lock()
                            .expect("budget lock")
                            .observe_used_weight(w, now_millis());
                    }
                    match resp.bytes().await {
                        Err(e) => Step::Backoff(describe(&e)),
                        Ok(body) => match classify(status, &headers, &body) {
                            // A body that does not decode (an HTML page from a proxy, a body
                            // cut short) is weather, not an answer: retried like a 5xx.
                            Outcome::Ok => match serde_json::from_slice(&body) {
                                Ok(v) => return Ok(v),
                                Err(e) => Step::BadBody(format!(
                                    "{e} (body: {})",
                                    crate::rest::classify::body_excerpt(&body)
                                )),
                            },
                            Outcome::Transient { status, detail } => {
                                Step::Backoff(format!("HTTP {status}: {detail}"))
                            }
                            Outcome::RetryAfter { wait, msg } => {
                                self.block(wait);
                                tracing::warn!(endpoint = path, ?wait, %msg, "Binance answered 429");
                                Step::Wait(wait, msg)
                            }
                            Outcome::Banned { wait, msg } => {
                                self.block(wait);
                                tracing::error!(endpoint = path, ?wait, %msg, "Binance answered 418: IP banned");
                                match self.config.ban_policy {
                                    BanPolicy::WaitUpTo(max) if wait <= max => {
                                        Step::Wait(wait, msg)
                                    }
                                    _ => return Err(RestError::Banned { wait, msg }),
                                }
                            }
                            Outcome::GeoBlocked { msg } => {
                                return Err(RestError::GeoBlocked { url, msg });
                            }
                            Outcome::Permanent { status, code, msg } => {
                                return Err(RestError::Permanent {
                                    endpoint: path,
                                    status,
                                    code,
                                    msg,
                                });
                            }
                        },
                    }
                }
            };
            let Some(delay) = backoff.next() else {
                return Err(match step {
                    Step::Backoff(detail) => RestError::Transient {
                        endpoint: path,
                        attempts,
                        detail,
                    },
                    Step::Wait(wait, msg) => RestError::RateLimited {
                        endpoint: path,
                        attempts,
                        wait,
                        msg,
                    },
                    Step::BadBody(detail) => RestError::Decode {
                        endpoint: path,
                        detail,
                    },
                });
            };
            match step {
                Step::Backoff(detail) | Step::BadBody(detail) => {
                    let sleep = full_jitter(delay);
                    tracing::debug!(endpoint = path, attempts, ?sleep, %detail, "retrying Binance request");
                    tokio::time::sleep(sleep).await;
                }
                // The budget is blocked until the wait is over; `wait_for_budget` sleeps it.
                Step::Wait(..) => {}
            }
        }
    }

    /// Sleeps until the budget admits `weight`, then counts it.
    async fn wait_for_budget(&self, weight: u32) {
        loop {
            let verdict = self
                .budget
                .lock()
                .expect("budget lock")
                .try_acquire(weight, now_millis());
            match verdict {
                Ok(()) => return,
                Err(wait) => {
                    tracing::debug!(weight, ?wait, "waiting for Binance request weight");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn block(&self, wait: Duration) {
        self.budget
            .lock()
            .expect("budget lock")
            .block_for(wait, now_millis());
    }
}

fn clamp_limit(limit: u16) -> u16 {
    limit.clamp(1, MAX_PAGE_LIMIT)
}

fn symbols_param(symbols: &[&str]) -> Vec<(&'static str, String)> {
    if symbols.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = symbols.iter().map(|s| s.to_ascii_uppercase()).collect();
    vec![(
        "symbols",
        serde_json::to_string(&list).expect("strings serialise"),
    )]
}

/// Full jitter: uniform in `[0, delay]` (AWS architecture blog, "Exponential Backoff And
/// Jitter"), so that many clients retrying together spread out.
fn full_jitter(delay: Duration) -> Duration {
    let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

/// A transport error in one line: its kind, then its source chain, which names the cause (e.g.
/// "end of file before message length reached" for a body cut short).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut out = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn now_millis() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn now_micros() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_delay() {
        let d = Duration::from_millis(100);
        for _ in 0..1000 {
            assert!(full_jitter(d) <= d);
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn symbols_are_a_json_list() {
        assert_eq!(
            symbols_param(&["btcusdt", "ARBUSDT"]),
            vec![("symbols", r#"["BTCUSDT","ARBUSDT"]"#.to_owned())]
        );
        assert!(symbols_param(&[]).is_empty());
    }

    #[test]
    fn bad_base_url_is_a_config_error() {
        let cfg = RestConfig {
            base_url: "ftp://x".into(),
            ..RestConfig::default()
        };
        assert!(matches!(RestClient::new(cfg), Err(RestError::Config(_))));
    }
}
