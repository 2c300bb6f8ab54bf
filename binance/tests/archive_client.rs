//! The archive client against a small HTTP server on 127.0.0.1:0 that answers like the archive's
//! CDN and S3 do: the file, 404 NoSuchKey, 503 SlowDown then the file, 403 AccessDenied, and a
//! body cut short (announced length, fewer bytes, then a closed connection).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use binance::archive::{ArchiveClient, ArchiveConfig, ArchiveError, Download};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const FILE: &[u8] = b"PK\x03\x04 not really a zip, just bytes";
const NO_SUCH_KEY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";

#[derive(Default)]
struct Hits {
    slow: AtomicUsize,
    forbidden: AtomicUsize,
    missing: AtomicUsize,
}

async fn serve() -> (String, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let app = Router::new()
        .route("/data/ok.zip", get(|| async { FILE }))
        .route(
            "/data/missing.zip",
            get(|State(h): State<Arc<Hits>>| async move {
                h.missing.fetch_add(1, Ordering::SeqCst);
                (StatusCode::NOT_FOUND, NO_SUCH_KEY)
            }),
        )
        .route(
            "/data/slow.zip",
            get(|State(h): State<Arc<Hits>>| async move {
                // Two SlowDowns, then the file.
                if h.slow.fetch_add(1, Ordering::SeqCst) < 2 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "<Error><Code>SlowDown</Code></Error>",
                    )
                        .into_response()
                } else {
                    FILE.into_response()
                }
            }),
        )
        .route(
            "/data/forbidden.zip",
            get(|State(h): State<Arc<Hits>>| async move {
                h.forbidden.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::FORBIDDEN,
                    "<Error><Code>AccessDenied</Code></Error>",
                )
                    .into_response()
            }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

fn quick(base_url: String, max_retries: usize) -> ArchiveClient {
    ArchiveClient::new(ArchiveConfig {
        base_url,
        max_retries,
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn a_file_is_downloaded_whole() {
    let (url, _) = serve().await;
    let got = quick(url, 0).get("/data/ok.zip").await.unwrap();
    assert_eq!(got, Download::Found(FILE.into()));
}

#[tokio::test]
async fn a_404_is_missing_at_once_not_retried() {
    let (url, hits) = serve().await;
    let got = quick(url, 5).get("data/missing.zip").await.unwrap();
    assert_eq!(got, Download::Missing);
    assert_eq!(hits.missing.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn slow_down_is_retried_until_the_file_comes() {
    let (url, hits) = serve().await;
    let got = quick(url.clone(), 3).get("/data/slow.zip").await.unwrap();
    assert_eq!(got, Download::Found(FILE.into()));
    assert_eq!(hits.slow.load(Ordering::SeqCst), 3);

    // With fewer retries than failures, the error says how often and what.
    let (url, _) = serve().await;
    let err = quick(url, 1).get("/data/slow.zip").await.unwrap_err();
    match &err {
        ArchiveError::Transient {
            attempts, detail, ..
        } => {
            assert_eq!(*attempts, 2);
            assert!(
                detail.contains("503") && detail.contains("SlowDown"),
                "{detail}"
            );
        }
        other => panic!("expected Transient, got {other:?}"),
    }
}

#[tokio::test]
async fn forbidden_is_permanent_and_not_retried() {
    let (url, hits) = serve().await;
    let err = quick(url, 5).get("/data/forbidden.zip").await.unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Permanent { status: 403, detail, .. } if detail.contains("AccessDenied")),
        "{err:?}"
    );
    assert_eq!(hits.forbidden.load(Ordering::SeqCst), 1);
}

/// A server that announces 1,000 bytes, sends 10 and closes: every attempt.
async fn cut_short_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n0123456789")
                .await;
            let _ = sock.shutdown().await;
        }
    });
    (format!("http://{addr}"), served)
}

#[tokio::test]
async fn a_body_cut_short_is_retried_then_reported_never_returned() {
    let (url, served) = cut_short_server().await;
    let err = quick(url, 2).get("/data/cut.zip").await.unwrap_err();
    match &err {
        ArchiveError::Transient {
            attempts, detail, ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(detail.contains("body cut short"), "{detail}");
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_dead_host_is_transient_with_the_cause() {
    // A port nothing listens on: bind, learn the port, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = quick(format!("http://127.0.0.1:{port}"), 1)
        .get("/data/ok.zip")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Transient { attempts: 2, detail, .. } if detail.contains("connection failed")),
        "{err:?}"
    );
}
