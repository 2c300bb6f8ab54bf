//! `/healthz` and Prometheus `/metrics` for the life of the process. Small on purpose: gauges
//! are registered with the function that reads them at scrape time, then the server starts.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service::http::{bind, health_response, metrics_response, serve};
use tokio_util::sync::CancellationToken;

/// A gauge and what it reads at scrape time.
type Reading = (Gauge<i64>, Box<dyn Fn() -> i64 + Send + Sync>);

/// The metrics to serve.
pub struct Metrics {
    registry: Registry,
    readings: Vec<Reading>,
}

impl Default for Metrics {
    fn default() -> Self {
        // The gauges are registered with their full `batch_…` names (unprefixed registry); only
        // the shared build_info family needs the prefix, so it gets a prefixed sub-registry.
        let mut registry = Registry::default();
        service::build_info::register(registry.sub_registry_with_prefix("batch"));
        Metrics {
            registry,
            readings: Vec::new(),
        }
    }
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

    /// Serves `/healthz` and `/metrics` on `addr` in the background until the process exits;
    /// returns the bound address. A port that cannot be bound only logs a warning: parallel runs
    /// on one host must not fail.
    pub async fn serve(self, addr: SocketAddr) -> Option<SocketAddr> {
        let listener = match bind(addr).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%addr, %error, "metrics endpoint not served");
                return None;
            }
        };
        // Never cancelled: a batch run ends by exiting, and the server goes with it.
        match serve(listener, self.app(), CancellationToken::new()) {
            Ok((local, _task)) => Some(local),
            Err(error) => {
                tracing::warn!(%addr, %error, "metrics endpoint not served");
                None
            }
        }
    }

    fn app(self) -> Router {
        let Metrics { registry, readings } = self;
        let registry = Arc::new(registry);
        let readings = Arc::new(readings);
        Router::new()
            .route(
                "/healthz",
                get(|| async { health_response(Ok::<(), &str>(())) }),
            )
            .route(
                "/metrics",
                get(move || {
                    for (gauge, read) in readings.iter() {
                        gauge.set(read());
                    }
                    let registry = registry.clone();
                    async move { metrics_response(&registry) }
                }),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exposes_the_gauges_read_at_scrape_time_and_build_info() {
        let mut m = Metrics::default();
        m.gauge("batch_rest_used_weight", "Used weight", || 42);
        let addr = m
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bound");
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("batch_rest_used_weight 42\n"), "{body}");
        let build = format!(
            "batch_build_info{{version=\"{}\",git_revision=\"{}\"}} 1\n",
            build_info::PKG_VERSION,
            build_info::GIT_REVISION
        );
        assert!(body.contains(&build), "{body}");
        let health = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
}
