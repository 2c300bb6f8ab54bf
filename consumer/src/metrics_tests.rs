//! The metrics exposition and the health endpoints.

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
    assert!(text.contains("consumer_dead_lettered_total{table=\"gaps\",reason=\"undecodable\"} 1"));
    assert!(text.contains("consumer_exchange_to_bigquery_seconds_count 1"));
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
    stop.cancel();
    server.await.unwrap().unwrap();
}
