//! Prometheus metrics and the `/healthz` + `/metrics` HTTP endpoint (axum).
//!
//! Every label set is bounded: `table` is `trades_raw` or `gaps`, `reason` is a
//! [`crate::decode::Reason`] code. Counters are updated per message or per batch, never inside a
//! byte loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::decode::Reason;
use crate::sink::Table;

/// `table="trades_raw"|"gaps"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TableLabel {
    /// The BigQuery table.
    pub table: &'static str,
}

/// `table`, `reason` for dead-lettered messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DeadLetterLabel {
    /// The BigQuery table the message was meant for.
    pub table: &'static str,
    /// A [`Reason`] code.
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn append_latency_histogram() -> Histogram {
    // 5 ms .. ~40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// All consumer metrics.
pub struct Metrics {
    registry: Registry,
    received: Family<TableLabel, Counter>,
    rows_appended: Family<TableLabel, Counter>,
    batches: Family<TableLabel, Counter>,
    append_seconds: HistogramFamily<TableLabel>,
    retries: Family<TableLabel, Counter>,
    redeliveries: Family<TableLabel, Counter>,
    duplicates: Family<TableLabel, Counter>,
    dead_lettered: Family<DeadLetterLabel, Counter>,
    nacked: Family<TableLabel, Counter>,
    exchange_to_bigquery: Histogram,
    healthy: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn label(table: Table) -> TableLabel {
    TableLabel {
        table: table.as_str(),
    }
}

impl Metrics {
    /// Registers every metric under the `consumer_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("consumer");
        let received = Family::default();
        let rows_appended = Family::default();
        let batches = Family::default();
        let append_seconds: HistogramFamily<TableLabel> =
            Family::new_with_constructor(append_latency_histogram);
        let retries = Family::default();
        let redeliveries = Family::default();
        let duplicates = Family::default();
        let dead_lettered = Family::default();
        let nacked = Family::default();
        // 50 ms .. ~27 min: from a quiet 1 s batch to a long BigQuery outage.
        let exchange_to_bigquery = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register(
            "messages_received",
            "Pub/Sub messages pulled",
            received.clone(),
        );
        registry.register(
            "rows_appended",
            "Rows BigQuery acknowledged",
            rows_appended.clone(),
        );
        registry.register(
            "batches_appended",
            "AppendRows requests BigQuery acknowledged",
            batches.clone(),
        );
        registry.register(
            "append_seconds",
            "Duration of successful AppendRows calls",
            append_seconds.clone(),
        );
        registry.register(
            "append_retries",
            "AppendRows attempts that failed transiently and were retried",
            retries.clone(),
        );
        registry.register(
            "redeliveries_seen",
            "Messages whose row had already landed from the same Pub/Sub message",
            redeliveries.clone(),
        );
        registry.register(
            "duplicates_suppressed",
            "Messages not appended because their key landed recently or is already pending",
            duplicates.clone(),
        );
        registry.register(
            "dead_lettered",
            "Messages published to the dead-letter topic, by reason",
            dead_lettered.clone(),
        );
        registry.register(
            "messages_nacked",
            "Messages handed back to Pub/Sub for redelivery (shutdown, dead-letter failure)",
            nacked.clone(),
        );
        registry.register(
            "exchange_to_bigquery_seconds",
            "Trade time to BigQuery's append acknowledgement",
            exchange_to_bigquery.clone(),
        );
        Self {
            registry,
            received,
            rows_appended,
            batches,
            append_seconds,
            retries,
            redeliveries,
            duplicates,
            dead_lettered,
            nacked,
            exchange_to_bigquery,
            healthy: AtomicBool::new(true),
        }
    }

    /// A message was pulled.
    pub fn received(&self, table: Table) {
        self.received.get_or_create(&label(table)).inc();
    }

    /// A batch landed.
    pub fn appended(&self, table: Table, rows: usize, seconds: f64) {
        let l = label(table);
        self.rows_appended.get_or_create(&l).inc_by(rows as u64);
        self.batches.get_or_create(&l).inc();
        self.append_seconds.get_or_create(&l).observe(seconds);
    }

    /// Observes one trade's exchange-to-BigQuery latency.
    pub fn exchange_latency(&self, seconds: f64) {
        self.exchange_to_bigquery.observe(seconds);
    }

    /// An append failed transiently.
    pub fn retried(&self, table: Table) {
        self.retries.get_or_create(&label(table)).inc();
    }

    /// A duplicate was not appended; `redelivery` when it came from the same message.
    pub fn duplicate(&self, table: Table, redelivery: bool) {
        let l = label(table);
        self.duplicates.get_or_create(&l).inc();
        if redelivery {
            self.redeliveries.get_or_create(&l).inc();
        }
    }

    /// A message went to the dead-letter topic.
    pub fn dead_lettered(&self, table: Table, reason: Reason) {
        self.dead_lettered
            .get_or_create(&DeadLetterLabel {
                table: table.as_str(),
                reason: reason.code(),
            })
            .inc();
    }

    /// Messages were nacked.
    pub fn nacked(&self, table: Table, n: usize) {
        self.nacked.get_or_create(&label(table)).inc_by(n as u64);
    }

    /// Marks the process unhealthy (a pipeline failed fatally).
    pub fn set_unhealthy(&self) {
        self.healthy.store(false, Ordering::Relaxed);
    }

    /// True until a pipeline failed fatally.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Values for tests and logs: (received, rows appended, retries, duplicates, redeliveries).
    pub fn snapshot(&self, table: Table) -> Snapshot {
        let l = label(table);
        Snapshot {
            received: self.received.get_or_create(&l).get(),
            rows_appended: self.rows_appended.get_or_create(&l).get(),
            batches: self.batches.get_or_create(&l).get(),
            retries: self.retries.get_or_create(&l).get(),
            duplicates: self.duplicates.get_or_create(&l).get(),
            redeliveries: self.redeliveries.get_or_create(&l).get(),
            nacked: self.nacked.get_or_create(&l).get(),
            dead_lettered: Reason::ALL
                .iter()
                .map(|r| {
                    self.dead_lettered
                        .get_or_create(&DeadLetterLabel {
                            table: table.as_str(),
                            reason: r.code(),
                        })
                        .get()
                })
                .sum(),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counter values of one table, for tests and the shutdown log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Messages pulled.
    pub received: u64,
    /// Rows BigQuery acknowledged.
    pub rows_appended: u64,
    /// Batches BigQuery acknowledged.
    pub batches: u64,
    /// Transient append failures.
    pub retries: u64,
    /// Duplicates not appended.
    pub duplicates: u64,
    /// Of which redeliveries of the same message.
    pub redeliveries: u64,
    /// Messages nacked.
    pub nacked: u64,
    /// Messages dead-lettered, all reasons.
    pub dead_lettered: u64,
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.is_healthy() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "a pipeline failed\n")
    }
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// The `/healthz` and `/metrics` routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

/// Serves the routes on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Binds the metrics address (so a busy port fails at start-up, not later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition_with_bounded_labels() {
        let m = Metrics::new();
        m.received(Table::Trades);
        m.appended(Table::Trades, 7, 0.02);
        m.duplicate(Table::Trades, true);
        m.dead_lettered(Table::Gaps, Reason::Undecodable);
        m.exchange_latency(0.3);
        let text = m.encode();
        assert!(
            text.contains("consumer_rows_appended_total{table=\"trades_raw\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("consumer_dead_lettered_total{table=\"gaps\",reason=\"undecodable\"} 1")
        );
        assert!(text.contains("consumer_exchange_to_bigquery_seconds_count 1"));
        let s = m.snapshot(Table::Trades);
        assert_eq!((s.rows_appended, s.duplicates, s.redeliveries), (7, 1, 1));
    }

    #[tokio::test]
    async fn the_endpoint_serves_health_and_metrics() {
        let m = Arc::new(Metrics::new());
        m.appended(Table::Gaps, 2, 0.01);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, m.clone(), stop.clone()));
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            body
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        let body = get("/metrics").await;
        assert!(
            body.contains("consumer_rows_appended_total{table=\"gaps\"} 2"),
            "{body}"
        );
        m.set_unhealthy();
        assert!(get("/healthz").await.starts_with("HTTP/1.1 503"));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
