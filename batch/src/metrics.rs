//! `/healthz` and Prometheus `/metrics` for the life of the process. Small on purpose: gauges
//! are registered with the function that reads them at scrape time, then the server starts.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A gauge and what it reads at scrape time.
type Reading = (Gauge<i64>, Box<dyn Fn() -> i64 + Send + Sync>);

/// The metrics to serve.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    readings: Vec<Reading>,
}

impl Metrics {
    /// Registers a gauge whose value `read` gives at each scrape.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        let gauge = Gauge::<i64>::default();
        self.registry.register(name, help, gauge.clone());
        self.readings.push((gauge, Box::new(read)));
    }

    /// Serves `/healthz` and `/metrics` on `addr` in the background. A port that cannot be
    /// bound only logs a warning: parallel runs on one host must not fail.
    pub async fn serve(self, addr: SocketAddr) {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%addr, %error, "metrics endpoint not served");
                return;
            }
        };
        let Metrics { registry, readings } = self;
        let registry = Arc::new(registry);
        let readings = Arc::new(readings);
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let registry = registry.clone();
                    for (gauge, read) in readings.iter() {
                        gauge.set(read());
                    }
                    async move {
                        let mut body = String::new();
                        match prometheus_client::encoding::text::encode(&mut body, &registry) {
                            Ok(()) => (axum::http::StatusCode::OK, body),
                            Err(e) => {
                                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                            }
                        }
                    }
                }),
            );
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "metrics endpoint stopped");
            }
        });
    }
}
