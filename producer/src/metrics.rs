//! Prometheus metrics and the `/metrics` + `/healthz` HTTP server.
//!
//! Label sets are bounded: `symbol` (the configured symbols), `source` (stream, backfill),
//! `reason` (closed sets defined in code). Hot-path handles are resolved once per symbol
//! ([`SymbolMetrics`]) so a trade costs an atomic increment, not a label lookup.
//!
//! `/healthz` answers 200 only when the active connection is open and the publisher is
//! publishing (no ordering key stuck, no permanent error); otherwise 503 with the reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(&'static str, String)>;

/// Handles of one symbol's hot-path metrics.
#[derive(Debug, Clone)]
pub struct SymbolMetrics {
    /// Trades received from the stream.
    pub received_stream: Counter,
    /// Trades received from REST backfill.
    pub received_backfill: Counter,
    /// Trades published (acknowledged by Pub/Sub) from the stream.
    pub published_stream: Counter,
    /// Trades published from backfill.
    pub published_backfill: Counter,
    /// Duplicates dropped by the continuity tracker.
    pub duplicates: Counter,
    /// Gaps detected (ranges).
    pub gaps_detected: Counter,
    /// Ids missing when detected.
    pub gap_ids_detected: Counter,
    /// Ids filled by backfill.
    pub gap_ids_filled: Counter,
    /// Ids still missing, waiting for backfill.
    pub gap_ids_outstanding: Gauge,
    /// First id this run accounts for (-1 until known).
    pub start_id: Gauge,
    /// The resume point (-1 until known).
    pub resume_id: Gauge,
}

/// Latency buckets in seconds, 1-2-5 steps from 1 ms to 60 s: one bound sits exactly on the
/// exchange->published budget (p99 <= 100 ms), so a p99 read from the buckets says in or out.
const LATENCY_BUCKETS: [f64; 17] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0,
    60.0,
];

/// Every metric of the producer.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Per symbol, in the configured order.
    pub symbols: Vec<SymbolMetrics>,
    /// Ids declared unfillable, by symbol and reason.
    pub gap_ids_unfilled: Family<Labels, Counter>,
    /// Gap records written, by symbol and reason.
    pub gaps_unfilled: Family<Labels, Counter>,
    /// Connections opened, by reason.
    pub reconnects: Family<Labels, Counter>,
    /// Failed connection attempts.
    pub connect_failures: Counter,
    /// Frames that could not be parsed.
    pub malformed_frames: Counter,
    /// Frames of symbols not configured, or of no interest.
    pub ignored_frames: Counter,
    /// Messages waiting in the publisher's queue or in flight.
    pub queue_depth: Gauge,
    /// Publish failures, by kind (retry, permanent).
    pub publish_errors: Family<Labels, Counter>,
    /// Enqueue to Pub/Sub acknowledgement, seconds.
    pub publish_latency: Histogram,
    /// Trade time at the exchange to Pub/Sub acknowledgement, seconds.
    pub exchange_to_publish: Histogram,
    /// Messages not published at exit.
    pub unpublished: Counter,
    /// 1 while the active connection is open.
    pub connected: Gauge,
    /// 1 while Pub/Sub acknowledges the trades outstanding (see `PublisherConfig::stuck_after`).
    pub publishing: Gauge,
    /// Stream trades quarantined for an implausible id, by symbol.
    pub quarantined: Family<Labels, Counter>,
    /// Backfill chunks put back for a later try (passing REST trouble), by reason.
    pub backfill_retries: Family<Labels, Counter>,
    /// Failed writes of the state file.
    pub state_write_failures: Counter,
    /// 1 while the last write of the state file succeeded (0 without a state file).
    pub state_file_ok: Gauge,
    /// State files set aside at start because they were not state files.
    pub state_file_set_aside: Counter,
}

impl Metrics {
    /// Registers every metric for `symbols`.
    pub fn new(symbols: &[String]) -> Self {
        let mut registry = Registry::with_prefix("producer");
        service::build_info::register(&mut registry);
        let by_symbol_source = Family::<Labels, Counter>::default();
        let received = Family::<Labels, Counter>::default();
        let duplicates = Family::<Labels, Counter>::default();
        let gaps_detected = Family::<Labels, Counter>::default();
        let gap_ids_detected = Family::<Labels, Counter>::default();
        let gap_ids_filled = Family::<Labels, Counter>::default();
        let gap_ids_outstanding = Family::<Labels, Gauge>::default();
        let start_id = Family::<Labels, Gauge>::default();
        let resume_id = Family::<Labels, Gauge>::default();
        registry.register(
            "trades_received",
            "Trades received, by symbol and source (stream, backfill)",
            received.clone(),
        );
        registry.register(
            "trades_published",
            "Trades acknowledged by Pub/Sub, by symbol and source",
            by_symbol_source.clone(),
        );
        registry.register(
            "duplicates_dropped",
            "Trades dropped because their id was already published",
            duplicates.clone(),
        );
        registry.register(
            "gaps_detected",
            "Trade-id gaps detected",
            gaps_detected.clone(),
        );
        registry.register(
            "gap_ids_detected",
            "Trade ids missing when a gap was detected",
            gap_ids_detected.clone(),
        );
        registry.register(
            "gap_ids_filled",
            "Missing trade ids filled by REST backfill",
            gap_ids_filled.clone(),
        );
        registry.register(
            "gap_ids_outstanding",
            "Missing trade ids still waiting for backfill",
            gap_ids_outstanding.clone(),
        );
        registry.register(
            "start_id",
            "First trade id this run accounts for (after the resume point, or the exchange's latest id at start); -1 until known",
            start_id.clone(),
        );
        registry.register(
            "resume_id",
            "Every trade id up to this one is acknowledged by Pub/Sub or in a gap record (the state file's resume point); -1 until known",
            resume_id.clone(),
        );
        let sym_metrics = symbols
            .iter()
            .map(|s| {
                let sym = || vec![("symbol", s.clone())];
                let src = |source: &str| vec![("symbol", s.clone()), ("source", source.into())];
                // One statement per handle: a Family guard held while taking another would
                // deadlock (read guard vs. write lock on the same family).
                let received_stream = received.get_or_create(&src("stream")).clone();
                let received_backfill = received.get_or_create(&src("backfill")).clone();
                let published_stream = by_symbol_source.get_or_create(&src("stream")).clone();
                let published_backfill = by_symbol_source.get_or_create(&src("backfill")).clone();
                let duplicates = duplicates.get_or_create(&sym()).clone();
                let gaps_detected = gaps_detected.get_or_create(&sym()).clone();
                let gap_ids_detected = gap_ids_detected.get_or_create(&sym()).clone();
                let gap_ids_filled = gap_ids_filled.get_or_create(&sym()).clone();
                let gap_ids_outstanding = gap_ids_outstanding.get_or_create(&sym()).clone();
                let start_id = start_id.get_or_create(&sym()).clone();
                let resume_id = resume_id.get_or_create(&sym()).clone();
                start_id.set(-1);
                resume_id.set(-1);
                SymbolMetrics {
                    received_stream,
                    received_backfill,
                    published_stream,
                    published_backfill,
                    duplicates,
                    gaps_detected,
                    gap_ids_detected,
                    gap_ids_filled,
                    gap_ids_outstanding,
                    start_id,
                    resume_id,
                }
            })
            .collect();
        let m = Self {
            symbols: sym_metrics,
            gap_ids_unfilled: Family::default(),
            gaps_unfilled: Family::default(),
            reconnects: Family::default(),
            connect_failures: Counter::default(),
            malformed_frames: Counter::default(),
            ignored_frames: Counter::default(),
            queue_depth: Gauge::default(),
            publish_errors: Family::default(),
            publish_latency: Histogram::new(LATENCY_BUCKETS),
            exchange_to_publish: Histogram::new(LATENCY_BUCKETS),
            unpublished: Counter::default(),
            connected: Gauge::default(),
            publishing: Gauge::default(),
            quarantined: Family::default(),
            backfill_retries: Family::default(),
            state_write_failures: Counter::default(),
            state_file_ok: Gauge::default(),
            state_file_set_aside: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "gap_ids_unfilled",
            "Trade ids that could not be filled (a Gap record was written), by symbol and reason",
            m.gap_ids_unfilled.clone(),
        );
        registry.register(
            "gaps_unfilled",
            "Gap records written, by symbol and reason",
            m.gaps_unfilled.clone(),
        );
        registry.register(
            "reconnects",
            "Websocket connections opened, by reason",
            m.reconnects.clone(),
        );
        registry.register(
            "connect_failures",
            "Failed websocket connection attempts",
            m.connect_failures.clone(),
        );
        registry.register(
            "malformed_frames",
            "Websocket frames that could not be parsed",
            m.malformed_frames.clone(),
        );
        registry.register(
            "ignored_frames",
            "Well-formed frames of no interest (other events, unknown symbols)",
            m.ignored_frames.clone(),
        );
        registry.register(
            "queue_depth",
            "Messages queued for Pub/Sub or in flight",
            m.queue_depth.clone(),
        );
        registry.register(
            "publish_errors",
            "Pub/Sub publish failures, by kind (retry, permanent)",
            m.publish_errors.clone(),
        );
        registry.register(
            "publish_latency_seconds",
            "Time from enqueue to Pub/Sub acknowledgement",
            m.publish_latency.clone(),
        );
        registry.register(
            "exchange_to_publish_seconds",
            "Time from the trade at Binance to Pub/Sub acknowledgement",
            m.exchange_to_publish.clone(),
        );
        registry.register(
            "unpublished",
            "Messages still unpublished when the producer stopped",
            m.unpublished.clone(),
        );
        registry.register(
            "connected",
            "1 while the active websocket connection is open",
            m.connected.clone(),
        );
        registry.register(
            "publishing",
            "1 while Pub/Sub acknowledges the trades outstanding; 0 when none was acknowledged for 30 s",
            m.publishing.clone(),
        );
        registry.register(
            "quarantined_trades",
            "Stream trades not published because their id is implausible (far beyond the last id seen), by symbol",
            m.quarantined.clone(),
        );
        registry.register(
            "backfill_retries",
            "Backfill chunks whose fetch failed for a passing reason and stay open for a later try, by reason",
            m.backfill_retries.clone(),
        );
        registry.register(
            "state_write_failures",
            "Failed writes of the resume-point state file",
            m.state_write_failures.clone(),
        );
        registry.register(
            "state_file_ok",
            "1 while the last write of the resume-point state file succeeded (0 without a state file)",
            m.state_file_ok.clone(),
        );
        registry.register(
            "state_file_set_aside",
            "State files set aside at start because they were not state files (the run started at the exchange's latest id)",
            m.state_file_set_aside.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts a connection opened for `reason`.
    pub fn reconnect(&self, reason: &'static str) {
        self.reconnects
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts `ids` unfillable ids of `symbol` for `reason`.
    pub fn unfilled(&self, symbol: &str, reason: &'static str, ids: u64) {
        let labels = vec![("symbol", symbol.to_owned()), ("reason", reason.to_owned())];
        self.gap_ids_unfilled.get_or_create(&labels).inc_by(ids);
        self.gaps_unfilled.get_or_create(&labels).inc();
    }

    /// Counts a backfill chunk put back for a later try.
    pub fn backfill_deferred(&self, reason: &'static str) {
        self.backfill_retries
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Counts a publish error of `kind`.
    pub fn publish_error(&self, kind: &'static str) {
        self.publish_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Readiness, as `/healthz` reports it.
#[derive(Debug, Default)]
pub struct Health {
    /// The active connection is open.
    pub connected: AtomicBool,
    /// The publisher is not stuck (no key paused for long, no permanent error).
    pub publishing: AtomicBool,
}

impl Health {
    /// `Ok` when ready, else the reason.
    pub fn ready(&self) -> Result<(), &'static str> {
        if !self.connected.load(Ordering::Relaxed) {
            return Err("not connected to Binance");
        }
        if !self.publishing.load(Ordering::Relaxed) {
            return Err("not publishing to Pub/Sub");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The router serving `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler(State(s): State<AppState>) -> Response {
    service::http::encoded_metrics_response(s.metrics.encode())
}

async fn healthz_handler(State(s): State<AppState>) -> Response {
    service::http::health_response(s.health.ready())
}

/// Binds `addr` and serves until `shutdown`; returns the bound address.
pub async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = service::http::bind(addr).await?;
    service::http::serve(listener, router(metrics, health), shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family_with_bounded_labels() {
        let m = Metrics::new(&["BTCUSDT".into(), "ARBUSDT".into()]);
        m.symbols[0].received_stream.inc();
        m.symbols[1].duplicates.inc_by(3);
        m.reconnect("rotation");
        m.unfilled("BTCUSDT", "geo_blocked_451", 7);
        let text = m.encode();
        let build_info_line = format!(
            r#"producer_build_info{{version="{}",git_revision="{}"}} 1"#,
            build_info::PKG_VERSION,
            build_info::GIT_REVISION
        );
        for needle in [
            r#"producer_trades_received_total{symbol="BTCUSDT",source="stream"} 1"#,
            r#"producer_duplicates_dropped_total{symbol="ARBUSDT"} 3"#,
            r#"producer_reconnects_total{reason="rotation"} 1"#,
            r#"producer_gap_ids_unfilled_total{symbol="BTCUSDT",reason="geo_blocked_451"} 7"#,
            "producer_queue_depth",
            "producer_exchange_to_publish_seconds_bucket",
            "producer_publish_latency_seconds_bucket",
            build_info_line.as_str(),
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn ready_only_when_connected_and_publishing() {
        let h = Health::default();
        assert_eq!(h.ready(), Err("not connected to Binance"));
        h.connected.store(true, Ordering::Relaxed);
        assert_eq!(h.ready(), Err("not publishing to Pub/Sub"));
        h.publishing.store(true, Ordering::Relaxed);
        assert_eq!(h.ready(), Ok(()));
    }
}
