//! The `/healthz`, `/livez` and `/metrics` routes over [`Metrics`] (axum); what each answers is
//! in the parent module's documentation. Binding and serving are `service::http`'s.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use service::http::{encoded_metrics_response, health_response};

use super::{Health, Metrics};

/// 200 `ok` when `ok`, else 503 with one problem a line.
fn answer(ok: bool, health: &Health) -> Response {
    health_response(if ok {
        Ok(())
    } else {
        Err(health.problems.join("\n"))
    })
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> Response {
    let health = metrics.health();
    answer(health.is_ok(), &health)
}

async fn livez(State(metrics): State<Arc<Metrics>>) -> Response {
    let health = metrics.health();
    answer(!health.wedged, &health)
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> Response {
    // `encode` refreshes the stuck gauges first, so the registry is not encoded directly.
    encoded_metrics_response(metrics.encode())
}

/// The `/healthz`, `/livez` and `/metrics` routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}
