//! The `/healthz`, `/livez` and `/metrics` endpoint over [`Metrics`] (axum); what each answers
//! is in the parent module's documentation.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::{Health, Metrics};

fn answer(ok: bool, health: &Health) -> (StatusCode, String) {
    if ok {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        let mut body = health.problems.join("\n");
        body.push('\n');
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn healthz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let health = metrics.health();
    answer(health.is_ok(), &health)
}

async fn livez(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let health = metrics.health();
    answer(!health.wedged, &health)
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

/// The `/healthz`, `/livez` and `/metrics` routes.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
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
