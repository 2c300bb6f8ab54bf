//! The small HTTP server every binary runs beside its work: `/healthz` (and `/livez` where a
//! binary has one) for the orchestrator, `/metrics` for Prometheus. The routes are the binary's;
//! binding, serving until shutdown and the two standard answers are the same everywhere.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The content type of the OpenMetrics text format that `prometheus-client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` now, so a busy port fails the start, not the first scrape.
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `app` on `listener` until `shutdown` is cancelled (in-flight requests finish). Returns
/// the bound address and the server task; a server error is logged, never a panic.
pub fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(error) = served.await {
            tracing::error!(%error, "metrics server failed");
        }
    });
    Ok((local, task))
}

/// `/metrics`: the registry in the OpenMetrics text format.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => encoded_metrics_response(body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `/metrics` for a body already encoded (a binary that encodes under its own lock).
pub fn encoded_metrics_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
}

/// `/healthz` and `/livez`: 200 `ok`, or 503 with the reason, one line each.
pub fn health_response<E: std::fmt::Display>(state: Result<(), E>) -> Response {
    match state {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get_raw(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_health_and_metrics_until_shutdown() {
        let mut registry = Registry::with_prefix("demo");
        crate::build_info::register(&mut registry);
        let registry = std::sync::Arc::new(registry);
        let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = healthy.clone();
        let app = Router::new()
            .route(
                "/healthz",
                get(move || {
                    let ok = h.load(std::sync::atomic::Ordering::Relaxed);
                    async move { health_response(if ok { Ok(()) } else { Err("not yet") }) }
                }),
            )
            .route(
                "/metrics",
                get(move || async move { metrics_response(&registry) }),
            );
        let stop = CancellationToken::new();
        let (addr, task) = serve(bind("127.0.0.1:0").await.unwrap(), app, stop.clone()).unwrap();

        let sick = get_raw(addr, "/healthz").await;
        assert!(sick.starts_with("HTTP/1.1 503"), "{sick}");
        assert!(sick.ends_with("not yet\n"), "{sick}");
        healthy.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(get_raw(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let metrics = get_raw(addr, "/metrics").await;
        assert!(metrics.contains(OPENMETRICS), "{metrics}");
        assert!(metrics.contains("demo_build_info{"), "{metrics}");

        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the server stops at shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn a_busy_port_fails_at_bind() {
        let first = bind("127.0.0.1:0").await.unwrap();
        let taken = first.local_addr().unwrap();
        assert!(bind(taken).await.is_err());
    }
}
