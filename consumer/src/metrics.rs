//! Prometheus metrics and the `/healthz`, `/livez` + `/metrics` HTTP endpoint (axum).
//!
//! Every label set is bounded: `table` is `trades_raw` or `gaps`, `reason` is a
//! [`crate::decode::Reason`] code, `code` a gRPC status in snake case. Counters are updated per
//! message or per batch, never inside a byte loop.
//!
//! Health, per table, held here so that the endpoint and the pipelines share it:
//! - **stuck**: rows are held and their appends fail (`consumer_stuck_seconds`, from the first
//!   failed attempt until an append lands). Unhealthy once it lasts `--stuck-after`.
//! - **refused**: BigQuery refused an append as a whole (schema drift, missing table, no
//!   permission; `consumer_append_refused_total{table,code}`). Unhealthy at once, until an append
//!   lands.
//! - **pull silent**: no message for `--pull-silence` even after the streaming pull was reopened
//!   (`consumer_pull_silent`). Unhealthy until a message arrives.
//!
//! `/healthz` is 503 on any of them (is this consumer getting trades into BigQuery?); `/livez`
//! only on a silent pull, the one problem a new process or VM may cure (a BigQuery refusal or
//! outage follows the process to any VM, so replacing it only churns).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::decode::Reason;
use crate::sink::Table;

mod http;

pub use http::router;

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

/// `table`, `code` for appends BigQuery refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusedLabel {
    /// The BigQuery table.
    pub table: &'static str,
    /// The gRPC status in snake case (`invalid_argument`, `not_found`, ...) or
    /// `unmatched_row_errors`.
    pub code: &'static str,
}

/// Default of `--stuck-after`.
pub const DEFAULT_STUCK_AFTER: Duration = Duration::from_secs(60);

/// One table's health (see the module doc).
#[derive(Debug, Clone, Default)]
struct TableHealth {
    /// First failed append of the rows now held; `None` once an append landed.
    stuck_since: Option<Instant>,
    /// The last refusal (code, server's reason) since an append last landed.
    refused: Option<(&'static str, String)>,
    /// Silent across a reopen of the streaming pull.
    pull_silent: bool,
}

/// What `/healthz` and `/livez` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// One line per problem; empty when healthy.
    pub problems: Vec<String>,
    /// A problem a restart may cure (a silent pull).
    pub wedged: bool,
}

impl Health {
    /// No problem.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

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
    refused: Family<RefusedLabel, Counter>,
    refused_by_table: Family<TableLabel, Counter>,
    pull_reopened: Family<TableLabel, Counter>,
    pull_silent: Family<TableLabel, Gauge>,
    stuck_seconds: Family<TableLabel, FloatGauge>,
    health: Mutex<HashMap<Table, TableHealth>>,
    stuck_after_millis: AtomicU64,
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
        service::build_info::register(&mut registry);
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
        let refused = Family::default();
        let pull_reopened = Family::default();
        let pull_silent = Family::default();
        let stuck_seconds = Family::default();
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
            "append_refused",
            "AppendRows requests BigQuery refused as a whole (schema drift, missing table, no \
             permission) or answered with row errors matching no row; their rows are held",
            refused.clone(),
        );
        registry.register(
            "stuck_seconds",
            "Seconds since the first failed append of the rows now held (0 while appends land)",
            stuck_seconds.clone(),
        );
        registry.register(
            "pull_reopened",
            "Streaming pulls reopened because no message came for --pull-silence",
            pull_reopened.clone(),
        );
        registry.register(
            "pull_silent",
            "1 while the subscription stays silent across a reopen of its streaming pull",
            pull_silent.clone(),
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
            refused,
            refused_by_table: Family::default(),
            pull_reopened,
            pull_silent,
            stuck_seconds,
            health: Mutex::new(HashMap::new()),
            stuck_after_millis: AtomicU64::new(DEFAULT_STUCK_AFTER.as_millis() as u64),
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

    /// Sets `--stuck-after`: how long rows may wait for BigQuery before `/healthz` turns 503.
    pub fn set_stuck_after(&self, after: Duration) {
        self.stuck_after_millis
            .store(after.as_millis() as u64, Ordering::Relaxed);
    }

    fn stuck_after(&self) -> Duration {
        Duration::from_millis(self.stuck_after_millis.load(Ordering::Relaxed))
    }

    fn with_health<T>(&self, table: Table, f: impl FnOnce(&mut TableHealth) -> T) -> T {
        let mut all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(table).or_default())
    }

    /// An append of held rows failed (any reason): the table is stuck from now, if not already.
    pub fn append_failed(&self, table: Table) {
        self.with_health(table, |h| {
            h.stuck_since.get_or_insert_with(Instant::now);
        });
    }

    /// BigQuery refused an append as a whole: counted, and unhealthy until an append lands.
    pub fn append_refused(&self, table: Table, code: &'static str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabel {
                table: table.as_str(),
                code,
            })
            .inc();
        self.refused_by_table.get_or_create(&label(table)).inc();
        self.with_health(table, |h| {
            h.stuck_since.get_or_insert_with(Instant::now);
            h.refused = Some((code, reason.to_owned()));
        });
    }

    /// An append landed: the table is not stuck. Returns how long it was stuck, if it was.
    pub fn append_landed(&self, table: Table) -> Option<Duration> {
        self.with_health(table, |h| {
            h.refused = None;
            h.stuck_since.take().map(|since| since.elapsed())
        })
    }

    /// The held rows were handed back to Pub/Sub (shutdown): nothing is held any more.
    pub fn rows_released(&self, table: Table) {
        self.with_health(table, |h| {
            h.stuck_since = None;
            h.refused = None;
        });
    }

    /// The streaming pull was reopened after a silence.
    pub fn pull_reopened(&self, table: Table) {
        self.pull_reopened.get_or_create(&label(table)).inc();
    }

    /// The subscription stays silent across a reopen (`true`), or a message came (`false`).
    pub fn set_pull_silent(&self, table: Table, silent: bool) {
        self.pull_silent
            .get_or_create(&label(table))
            .set(i64::from(silent));
        self.with_health(table, |h| h.pull_silent = silent);
    }

    /// Seconds since the first failed append of the rows `table` holds (0 when not stuck).
    pub fn stuck_seconds(&self, table: Table) -> f64 {
        self.with_health(table, |h| {
            h.stuck_since
                .map_or(0.0, |since| since.elapsed().as_secs_f64())
        })
    }

    /// What is wrong, per table, now.
    pub fn health(&self) -> Health {
        let stuck_after = self.stuck_after();
        let all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let mut tables: Vec<_> = all.iter().collect();
        tables.sort_by_key(|(t, _)| t.as_str());
        let mut out = Health::default();
        for (table, h) in tables {
            let table = table.as_str();
            let stuck = h.stuck_since.map(|s| s.elapsed());
            if let Some((code, reason)) = &h.refused {
                let since = stuck.unwrap_or_default().as_secs();
                out.problems.push(format!(
                    "{table}: BigQuery refuses the appends ({code}) for {since}s, rows held: {reason}"
                ));
            } else if let Some(stuck) = stuck.filter(|s| *s >= stuck_after) {
                out.problems.push(format!(
                    "{table}: no append has landed for {}s, rows held",
                    stuck.as_secs()
                ));
            }
            if h.pull_silent {
                out.wedged = true;
                out.problems.push(format!(
                    "{table}: the subscription stays silent across a reopen of the streaming pull"
                ));
            }
        }
        out
    }

    /// True while [`Metrics::health`] finds no problem.
    pub fn is_healthy(&self) -> bool {
        self.health().is_ok()
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
            refused: self.refused_by_table.get_or_create(&l).get(),
            reopened: self.pull_reopened.get_or_create(&l).get(),
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
        for table in [Table::Trades, Table::Gaps] {
            self.stuck_seconds
                .get_or_create(&label(table))
                .set(self.stuck_seconds(table));
        }
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
    /// Appends refused as a whole (all codes).
    pub refused: u64,
    /// Streaming pulls reopened after a silence.
    pub reopened: u64,
    /// Messages dead-lettered, all reasons.
    pub dead_lettered: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

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
        let build = format!(
            "consumer_build_info{{version=\"{}\",git_revision=\"{}\"}} 1",
            build_info::PKG_VERSION,
            build_info::GIT_REVISION
        );
        assert!(text.contains(&build), "{text}");
        let s = m.snapshot(Table::Trades);
        assert_eq!((s.rows_appended, s.duplicates, s.redeliveries), (7, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn stuck_appends_turn_unhealthy_after_the_threshold_and_a_landing_clears_it() {
        let m = Metrics::new();
        m.set_stuck_after(Duration::from_secs(60));
        m.append_failed(Table::Trades);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(m.is_healthy(), "{:?}", m.health());
        m.append_failed(Table::Trades); // still the same streak
        tokio::time::sleep(Duration::from_secs(2)).await;
        let health = m.health();
        assert!(!health.is_ok() && !health.wedged, "{health:?}");
        assert!(health.problems[0].contains("no append has landed for 61s"));
        let text = m.encode();
        assert!(
            text.contains("consumer_stuck_seconds{table=\"trades_raw\"} 61"),
            "{text}"
        );
        assert_eq!(
            m.append_landed(Table::Trades),
            Some(Duration::from_secs(61))
        );
        assert!(m.is_healthy());
        assert!(
            m.encode()
                .contains("consumer_stuck_seconds{table=\"trades_raw\"} 0")
        );
    }

    #[test]
    fn refusals_are_counted_by_table_and_code() {
        let m = Metrics::new();
        m.append_refused(Table::Trades, "invalid_argument", "extra fields: 'x'");
        m.append_refused(Table::Trades, "invalid_argument", "extra fields: 'x'");
        let text = m.encode();
        assert!(
            text.contains(
                "consumer_append_refused_total{table=\"trades_raw\",code=\"invalid_argument\"} 2"
            ),
            "{text}"
        );
        assert_eq!(m.snapshot(Table::Trades).refused, 2);
        assert!(!m.is_healthy());
    }

    #[tokio::test]
    async fn the_endpoint_serves_health_and_metrics() {
        let m = Arc::new(Metrics::new());
        m.appended(Table::Gaps, 2, 0.01);
        let listener = service::http::bind("127.0.0.1:0").await.unwrap();
        let stop = CancellationToken::new();
        let (addr, server) =
            service::http::serve(listener, router(m.clone()), stop.clone()).unwrap();
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
        m.append_refused(Table::Trades, "not_found", "Table not found");
        let body = get("/healthz").await;
        assert!(body.starts_with("HTTP/1.1 503"), "{body}");
        assert!(
            body.contains("trades_raw: BigQuery refuses the appends (not_found)"),
            "{body}"
        );
        assert!(body.contains("Table not found"), "{body}");
        // A refusal follows the process to any VM: not a reason to replace it.
        assert!(get("/livez").await.starts_with("HTTP/1.1 200"));
        m.set_pull_silent(Table::Trades, true);
        assert!(get("/livez").await.starts_with("HTTP/1.1 503"));
        m.set_pull_silent(Table::Trades, false);
        assert!(m.append_landed(Table::Trades).is_some());
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(
            get("/metrics").await.contains("consumer_build_info{"),
            "the build is on /metrics"
        );
        stop.cancel();
        server.await.unwrap();
    }
}
