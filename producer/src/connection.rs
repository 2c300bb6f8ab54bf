//! One websocket connection: connect (with backoff inside the attempt budget), read, parse, and
//! report to the hub. The I/O task of the producer; decisions live in the supervisor.
//!
//! The task connects to one combined stream for every configured symbol with
//! `timeUnit=MICROSECOND`, retrying failed attempts with capped, jittered exponential backoff
//! and never beyond the shared [`AttemptBudget`]. Once connected it parses each text frame where
//! it was read (so parsing is spread over connections and off the hub) and sends a
//! [`ConnEvent`] per frame over a bounded channel: when the hub is slow the socket is not read,
//! which is the backpressure we want.
//!
//! Pings: tungstenite queues a pong carrying the ping's payload as soon as it reads a ping and
//! flushes it on the next read, which is what Binance requires (`docs/binance.md`, "Ping and
//! pong": echo the payload); the integration tests run the simulator with a short pong timeout
//! to hold us to it.
//!
//! HTTP 451 on the upgrade is fatal ([`ConnEvent::Fatal`]): no retry can fix a restricted
//! location.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use binance::{Frame, FrameContext, ParseError, TimeUnit, parse_frame};
use futures::{FutureExt as _, StreamExt};
use service::clock::now_us;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use trade_proto::Trade;

use crate::metrics::Metrics;
use crate::reconnect::{AttemptBudget, Backoff, wait_before_attempt};
use crate::supervisor::ConnId;

/// What a connection tells the hub.
#[derive(Debug)]
pub enum ConnEvent {
    /// The handshake completed.
    Opened {
        /// The connection.
        conn: ConnId,
    },
    /// A trade of configured symbol number `sym`.
    Trade {
        /// The connection.
        conn: ConnId,
        /// Index of the symbol.
        sym: usize,
        /// The trade (`source` = stream).
        trade: Trade,
    },
    /// A frame that is not a trade (ping, control reply, other event): the socket is alive.
    Alive {
        /// The connection.
        conn: ConnId,
    },
    /// Binance announced it will close this connection.
    ServerShutdown {
        /// The connection.
        conn: ConnId,
    },
    /// A frame that could not be parsed.
    Malformed {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: ParseError,
    },
    /// The connection ended (the task exits after this).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why, for the log.
        reason: String,
    },
    /// An error no reconnect can fix (HTTP 451): the producer must stop and say why.
    Fatal {
        /// The connection.
        conn: ConnId,
        /// What it means and what to change.
        error: String,
    },
}

/// What every connection needs.
#[derive(Debug)]
pub struct ConnectionSpec {
    /// The full URL: `{base}/stream?streams=a@trade/b@trade&timeUnit=MICROSECOND`.
    pub url: String,
    /// Upper-case symbol to index.
    pub symbols: HashMap<String, usize>,
    /// Handshake timeout.
    pub connect_timeout: Duration,
    /// First retry delay.
    pub backoff_min: Duration,
    /// Cap on the retry delay.
    pub backoff_max: Duration,
    /// After the socket has no frame waiting, sleep this long before reading it again (zero:
    /// read as frames arrive).
    pub read_coalesce: Duration,
}

/// The combined-stream URL for `symbols` on `base` (e.g. `wss://data-stream.binance.vision`).
pub fn stream_url(base: &str, symbols: &[String]) -> String {
    let streams: Vec<String> = symbols
        .iter()
        .map(|s| format!("{}@trade", s.to_ascii_lowercase()))
        .collect();
    format!(
        "{}/stream?streams={}&timeUnit={}",
        base.trim_end_matches('/'),
        streams.join("/"),
        TimeUnit::Microsecond.as_param()
    )
}

/// The message for HTTP 451 on the websocket upgrade.
pub fn geo_blocked_message(url: &str, body: &str) -> String {
    format!(
        "HTTP 451 from {url}: Binance refuses connections from restricted locations, including \
         the United States and US cloud regions (Binance said: {body}). Reconnecting cannot help. \
         Fix: run the producer from a region Binance serves (a GCP region outside the US, e.g. \
         asia-northeast1) and use the market-data hosts (BINANCE_WS_URL=wss://data-stream.binance.vision)."
    )
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Attempt {
    Connected(Box<Ws>),
    Retry(String),
    Fatal(String),
}

async fn attempt(spec: &ConnectionSpec) -> Attempt {
    match tokio::time::timeout(
        spec.connect_timeout,
        tokio_tungstenite::connect_async(spec.url.as_str()),
    )
    .await
    {
        Err(_) => Attempt::Retry(format!(
            "handshake timed out after {:?}",
            spec.connect_timeout
        )),
        Ok(Ok((ws, resp))) => {
            if let Some(id) = resp.headers().get("x-sim-connection-id") {
                tracing::debug!(server_connection = ?id, "simulator connection id");
            }
            Attempt::Connected(Box::new(ws))
        }
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status().as_u16() == 451 => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Attempt::Fatal(geo_blocked_message(&spec.url, &body))
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            Attempt::Retry(format!("upgrade refused with HTTP {}", resp.status()))
        }
        Ok(Err(e)) => Attempt::Retry(e.to_string()),
    }
}

/// Runs connection `conn` until it closes or `cancel` fires; always ends with
/// [`ConnEvent::Closed`] or [`ConnEvent::Fatal`].
pub async fn run_connection(
    conn: ConnId,
    spec: Arc<ConnectionSpec>,
    budget: Arc<Mutex<AttemptBudget>>,
    events: mpsc::Sender<ConnEvent>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(spec.backoff_min, spec.backoff_max);
    let ws = loop {
        let wait = {
            let mut b = budget.lock().expect("attempt budget lock");
            wait_before_attempt(&mut backoff, &mut b, Instant::now(), rand::random::<f64>())
        };
        if !wait.is_zero() {
            tracing::debug!(conn, ?wait, "waiting before the next connection attempt");
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = events.send(ConnEvent::Closed { conn, reason: "cancelled before connecting".into() }).await;
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        budget
            .lock()
            .expect("attempt budget lock")
            .record(Instant::now());
        let result = tokio::select! {
            _ = cancel.cancelled() => {
                let _ = events.send(ConnEvent::Closed { conn, reason: "cancelled while connecting".into() }).await;
                return;
            }
            r = attempt(&spec) => r,
        };
        match result {
            Attempt::Connected(ws) => break ws,
            Attempt::Fatal(error) => {
                tracing::error!(conn, %error, "cannot connect to Binance");
                let _ = events.send(ConnEvent::Fatal { conn, error }).await;
                return;
            }
            Attempt::Retry(error) => {
                metrics.connect_failures.inc();
                backoff.failed();
                tracing::warn!(conn, failures = backoff.failures(), %error, "connection attempt failed");
            }
        }
    };
    let mut ws = *ws;
    tracing::info!(conn, url = %spec.url, "connected");
    if events.send(ConnEvent::Opened { conn }).await.is_err() {
        return;
    }
    let reason = read_loop(conn, &spec, &mut ws, &events, &cancel).await;
    tracing::info!(conn, %reason, "connection ended");
    let _ = events.send(ConnEvent::Closed { conn, reason }).await;
}

/// At the stop, frames already received are still handled until the socket is quiet this
/// long, for at most [`STOP_DRAIN_LIMIT`] and [`STOP_DRAIN_FRAMES`] (bounds, so a socket that
/// keeps delivering cannot hold the stop).
const STOP_DRAIN_QUIET: Duration = Duration::from_millis(5);
const STOP_DRAIN_LIMIT: Duration = Duration::from_millis(200);
const STOP_DRAIN_FRAMES: usize = 100_000;

async fn read_loop(
    conn: ConnId,
    spec: &ConnectionSpec,
    ws: &mut Ws,
    events: &mpsc::Sender<ConnEvent>,
    cancel: &CancellationToken,
) -> String {
    loop {
        let msg = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                // Frames that reached us before the stop are handled, as they would have been
                // without the coalescing rest; then no more reads. Reads wait a little (not
                // `now_or_never`): the runtime learns that bytes arrived only when it polls
                // the OS, which a read that never waits may not give it a chance to do.
                let deadline = Instant::now() + STOP_DRAIN_LIMIT;
                for _ in 0..STOP_DRAIN_FRAMES {
                    let wait = STOP_DRAIN_QUIET.min(deadline.saturating_duration_since(Instant::now()));
                    let Ok(msg) = tokio::time::timeout(wait, ws.next()).await else { break };
                    if let Some(reason) = handle(conn, spec, msg, events).await {
                        return reason;
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return "closed by the producer".into();
            }
            m = ws.next() => m,
        };
        if let Some(reason) = handle(conn, spec, msg, events).await {
            return reason;
        }
        if spec.read_coalesce.is_zero() {
            continue;
        }
        // Everything already received is handled in this wake-up; then the socket rests, so
        // the frames of the next interval arrive together. At Binance's rates a wake-up per
        // frame cost more CPU than the frame (BENCHMARKS.md).
        while let Some(msg) = ws.next().now_or_never() {
            if let Some(reason) = handle(conn, spec, msg, events).await {
                return reason;
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(spec.read_coalesce) => {}
        }
    }
}

/// Parses one read and hands it to the hub; `Some(reason)` ends the connection.
async fn handle(
    conn: ConnId,
    spec: &ConnectionSpec,
    msg: Option<Result<Message, tungstenite::Error>>,
    events: &mpsc::Sender<ConnEvent>,
) -> Option<String> {
    let event = match msg {
        None => return Some("end of stream".into()),
        Some(Err(e)) => return Some(format!("read error: {e}")),
        Some(Ok(Message::Close(frame))) => {
            return Some(match frame {
                Some(f) => format!("closed by the server: {} {}", f.code, f.reason),
                None => "closed by the server".into(),
            });
        }
        Some(Ok(Message::Text(text))) => {
            let ctx = FrameContext {
                receive_time_us: now_us(),
                time_unit: TimeUnit::Microsecond,
            };
            match parse_frame(text.as_str(), &ctx) {
                Ok(Frame::Trade(trade)) => match spec.symbols.get(trade.symbol.as_str()) {
                    Some(&sym) => ConnEvent::Trade { conn, sym, trade },
                    None => ConnEvent::Alive { conn },
                },
                Ok(Frame::ServerShutdown { .. }) => ConnEvent::ServerShutdown { conn },
                Ok(_) => ConnEvent::Alive { conn },
                Err(error) => ConnEvent::Malformed { conn, error },
            }
        }
        // Ping: tungstenite has queued the pong with the same payload; it goes out on the
        // next read. Pong, binary and raw frames only prove the socket alive.
        Some(Ok(_)) => ConnEvent::Alive { conn },
    };
    // Not cancellable: a frame that was read reaches the hub (which drains at shutdown).
    match events.send(event).await {
        Ok(()) => None,
        Err(_) => Some("the producer stopped".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_combined_stream_in_microseconds() {
        let url = stream_url(
            "wss://data-stream.binance.vision/",
            &["BTCUSDT".into(), "ARBUSDT".into()],
        );
        assert_eq!(
            url,
            "wss://data-stream.binance.vision/stream?streams=btcusdt@trade/arbusdt@trade&timeUnit=MICROSECOND"
        );
    }

    #[test]
    fn the_451_message_says_what_it_means_and_what_to_change() {
        let m = geo_blocked_message("wss://x", "restricted location");
        for needle in [
            "451",
            "restricted location",
            "United States",
            "BINANCE_WS_URL",
            "region",
        ] {
            assert!(m.contains(needle), "{needle}: {m}");
        }
    }
}
