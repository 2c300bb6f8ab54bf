//! The `consumer` binary as a process: `--help`/`--version`, `consumer replay --help`, and SIGTERM
//! with a half-full batch (everything pulled lands in BigQuery, exit code 0 within the deadline).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use pipeline_tests::{PROJECT, free_port, shared, unique_name};
use prost::Message as _;
use trade_proto::{Source, Trade};

const BIN: &str = env!("CARGO_BIN_EXE_consumer");

#[test]
fn help_names_every_setting_and_its_environment_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for env in [
        "GCP_PROJECT",
        "PUBSUB_ENDPOINT",
        "BIGQUERY_ENDPOINT",
        "BIGQUERY_GRPC_ENDPOINT",
        "TRADE_SUBSCRIPTION",
        "GAP_SUBSCRIPTION",
        "DEAD_LETTER_TOPIC",
        "BQ_MARKET_DATASET",
        "METRICS_ADDR",
        "LOG_FORMAT",
        "BATCH_MAX_ROWS",
        "SHUTDOWN_DEADLINE",
        "STUCK_AFTER",
        "REFUSED_RETRY_MAX",
        "PULL_SILENCE",
        "consumer replay --help",
    ] {
        assert!(help.contains(env), "--help does not mention {env}");
    }
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("consumer "));
}

#[test]
fn replay_is_a_subcommand_with_its_own_help_and_insists_on_a_reason() {
    let out = Command::new(BIN)
        .args(["replay", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Usage: consumer replay",
        "--dry-run",
        "--reason <REASON>",
        "--all-reasons",
        "--create-subscription",
        "[default: binance-trades-dead-letter-sub]",
    ] {
        assert!(
            help.contains(needle),
            "replay --help lacks {needle:?}:\n{help}"
        );
    }
    let out = Command::new(BIN)
        .args(["replay", "--project", "p"])
        .env_remove("REPLAY_REASONS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--reason"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_half_full_batch_lands_everything_and_exits_zero() {
    let e = shared();
    let market = unique_name("market");
    let (topic, sub) = (unique_name("trades"), unique_name("trades_bq"));
    let metrics_port = free_port();
    let mut child = Command::new(BIN)
        .args(["--project", PROJECT, "--pubsub-endpoint", &e.pubsub])
        .args([
            "--bigquery-endpoint",
            &e.bq_rest,
            "--bigquery-grpc-endpoint",
            &e.bq_grpc,
        ])
        .args(["--trade-topic", &topic, "--trade-subscription", &sub])
        .args([
            "--gap-topic",
            &unique_name("gaps"),
            "--gap-subscription",
            &unique_name("gaps_bq"),
        ])
        .args([
            "--dead-letter-topic",
            &unique_name("dead"),
            "--market-dataset",
            &market,
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args([
            "--batch-max-rows",
            "1000",
            "--batch-max-age",
            "10m",
            "--create-missing",
        ])
        .args(["--log-format", "text", "--shutdown-deadline", "8s"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let start = Instant::now();
    while pipeline_tests::http_status(addr, "/healthz") != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "consumer never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let target = GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(e.pubsub.clone()),
        bigquery_endpoint: Some(e.bq_rest.clone()),
        bigquery_grpc_endpoint: Some(e.bq_grpc.clone()),
    };
    let publisher = gcp::pubsub::publisher(&target, &topic, gcp::pubsub::Batching::default())
        .await
        .unwrap();
    for id in 0..7 {
        let t = Trade {
            symbol: "AAVEUSDT".into(),
            trade_id: id,
            price: "301.25".into(),
            quantity: "0.5".into(),
            trade_time: 1_751_132_780_368_000 + id,
            event_time: 1_751_132_780_369_000 + id,
            receive_time: 1_751_132_780_371_000 + id,
            buyer_is_maker: true,
            source: Source::Backfill.as_str().into(),
        };
        publisher
            .publish(
                google_cloud_pubsub::model::Message::new()
                    .set_data(t.encode_to_vec())
                    .set_ordering_key("AAVEUSDT")
                    .set_attributes([("symbol", "AAVEUSDT"), ("source", "backfill")]),
            )
            .await
            .unwrap();
    }
    // Wait until all 7 were pulled (they sit in the open batch: 1000 rows / 10 min limits).
    let start = Instant::now();
    loop {
        let body = metrics_body(addr);
        if body.contains("consumer_messages_received_total{table=\"trades_raw\"} 7") {
            assert!(
                !body.contains("consumer_rows_appended_total{table=\"trades_raw\"}"),
                "{body}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not pulled:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SAFETY: kill(2) on the child we spawned; no memory is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(12),
            "no exit within the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    let w = Warehouse::connect(&target).await.unwrap();
    let rows = w
        .query(&format!(
            "SELECT COUNT(*) AS n FROM `{PROJECT}.{market}.trades`"
        ))
        .await
        .unwrap();
    assert_eq!(rows[0].get::<i64>("n").unwrap(), 7);
}

fn metrics_body(addr: SocketAddr) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}
