//! The consumer against the Pub/Sub emulator and bqemulator: every trade lands once with exact
//! values, poison goes to the dead-letter topic, a crash between append and ack is redelivered
//! without a second row in the view, and a BigQuery outage loses nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use consumer::config::Config;
use consumer::metrics::Metrics;
use consumer::pipeline::{Pipeline, Trades};
use consumer::sink::{BigQuerySink, RowSink, SinkError, Table};
use consumer::source::{Ack, MessageSource, PubsubSource, Received};
use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::{self, Datasets};
use gcp::pubsub::{self, Admin, Batching, SubscriptionSpec};
use google_cloud_pubsub::model::Message;
use pipeline_tests::{BigQueryEmulator, PROJECT, normalise_decimal, shared, unique_name};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use trade_proto::{Gap, Source, Trade};

/// Names of one test's resources.
struct Names {
    trade_topic: String,
    trade_sub: String,
    gap_topic: String,
    gap_sub: String,
    dead_topic: String,
    dead_sub: String,
    market: String,
}

impl Names {
    fn new() -> Self {
        Self {
            trade_topic: unique_name("trades"),
            trade_sub: unique_name("trades_bq"),
            gap_topic: unique_name("gaps"),
            gap_sub: unique_name("gaps_bq"),
            dead_topic: unique_name("dead"),
            dead_sub: unique_name("dead_sub"),
            market: unique_name("market"),
        }
    }
}

fn target(bq_rest: &str, bq_grpc: &str) -> GcpTarget {
    GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(shared().pubsub.clone()),
        bigquery_endpoint: Some(bq_rest.to_owned()),
        bigquery_grpc_endpoint: Some(bq_grpc.to_owned()),
    }
}

fn shared_target() -> GcpTarget {
    target(&shared().bq_rest, &shared().bq_grpc)
}

fn config(t: &GcpTarget, n: &Names, extra: &[&str]) -> Config {
    let mut args = vec![
        "consumer".to_owned(),
        format!("--project={PROJECT}"),
        format!("--pubsub-endpoint={}", t.pubsub_endpoint.as_ref().unwrap()),
        format!(
            "--bigquery-endpoint={}",
            t.bigquery_endpoint.as_ref().unwrap()
        ),
        format!(
            "--bigquery-grpc-endpoint={}",
            t.bigquery_grpc_endpoint.as_ref().unwrap()
        ),
        format!("--trade-topic={}", n.trade_topic),
        format!("--trade-subscription={}", n.trade_sub),
        format!("--gap-topic={}", n.gap_topic),
        format!("--gap-subscription={}", n.gap_sub),
        format!("--dead-letter-topic={}", n.dead_topic),
        format!("--market-dataset={}", n.market),
        "--metrics-addr=127.0.0.1:0".into(),
        "--log-format=text".into(),
        "--batch-max-rows=50".into(),
        "--batch-max-age=200ms".into(),
        "--lease-extension=10s".into(),
        "--max-outstanding-messages=1000".into(),
    ];
    // A flag in `extra` replaces the default above (clap refuses a flag given twice).
    let flag = |a: &str| a.split('=').next().unwrap_or_default().to_owned();
    let overridden: Vec<String> = extra.iter().map(|e| flag(e)).collect();
    args.retain(|a| !overridden.contains(&flag(a)));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    use clap::Parser as _;
    Config::try_parse_from(args).unwrap()
}

/// Topics, subscriptions (10 s ack deadline, so redeliveries come quickly) and tables.
async fn set_up(t: &GcpTarget, n: &Names) {
    // bqemulator (DuckDB) fails DDL run concurrently from several tests: one at a time.
    static DDL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = DDL.lock().await;
    let admin = Admin::connect(t).await.unwrap();
    let spec = SubscriptionSpec {
        ack_deadline_secs: 10,
        ..SubscriptionSpec::default()
    };
    for (topic, sub) in [
        (&n.trade_topic, &n.trade_sub),
        (&n.gap_topic, &n.gap_sub),
        (&n.dead_topic, &n.dead_sub),
    ] {
        admin.ensure_topic(topic).await.unwrap();
        admin.ensure_subscription(sub, topic, &spec).await.unwrap();
    }
    let warehouse = Warehouse::connect(t).await.unwrap();
    let ds = Datasets {
        market: n.market.clone(),
        dwh: unique_name("dwh"),
        scd: unique_name("scd"),
    };
    for statement in tables::setup_statements(PROJECT, &ds, &[]).unwrap() {
        warehouse.execute(&statement).await.unwrap();
    }
}

fn trade(id: i64) -> Trade {
    // Prices and quantities exercise NUMERIC's edges: 8 decimals, large, tiny, zeros.
    let prices = [
        "107407.88000000",
        "0.00000001",
        "99999999.99999999",
        "1.10000000",
    ];
    Trade {
        symbol: ["BTCUSDT", "ARBUSDT"][(id % 2) as usize].into(),
        trade_id: id,
        price: prices[(id % 4) as usize].into(),
        quantity: format!("{}.{:08}", id % 7, id * 37 % 100_000_000),
        trade_time: 1_751_132_780_368_000 + id * 1_000,
        event_time: 1_751_132_780_369_000 + id * 1_000,
        receive_time: 1_751_132_780_371_000 + id * 1_000,
        buyer_is_maker: id % 3 == 0,
        source: Source::Stream.as_str().into(),
    }
}

async fn publish(t: &GcpTarget, topic: &str, messages: Vec<Message>) {
    let publisher = pubsub::publisher(t, topic, Batching::default())
        .await
        .unwrap();
    let futures: Vec<_> = messages.into_iter().map(|m| publisher.publish(m)).collect();
    for f in futures {
        f.await.unwrap();
    }
}

fn trade_message(t: &Trade) -> Message {
    Message::new()
        .set_data(t.encode_to_vec())
        .set_ordering_key(t.symbol.clone())
        .set_attributes([("symbol", t.symbol.as_str()), ("source", t.source.as_str())])
}

/// BigQuery prints NUMERIC without trailing zeros.
async fn count(w: &Warehouse, market: &str, table: &str) -> i64 {
    let rows = w
        .query(&format!(
            "SELECT COUNT(*) AS n FROM `{PROJECT}.{market}.{table}`"
        ))
        .await
        .unwrap();
    rows[0].get::<i64>("n").unwrap()
}

/// Polls until `table` holds `want` rows, or panics after `timeout`.
async fn wait_for_count(w: &Warehouse, market: &str, table: &str, want: i64, timeout: Duration) {
    let start = Instant::now();
    loop {
        let n = count(w, market, table).await;
        if n == want {
            return;
        }
        assert!(n <= want, "{table} has {n} rows, more than {want}");
        assert!(
            start.elapsed() < timeout,
            "{table} has {n} rows, not {want}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Every row of the `trades` view, as the trades they must equal.
async fn trades_in_view(w: &Warehouse, market: &str) -> Vec<Trade> {
    let rows = w
        .query(&format!(
            "SELECT symbol, trade_id, CAST(price AS STRING) AS price, \
             CAST(quantity AS STRING) AS quantity, UNIX_MICROS(trade_time) AS trade_time, \
             UNIX_MICROS(event_time) AS event_time, UNIX_MICROS(receive_time) AS receive_time, \
             buyer_is_maker, source FROM `{PROJECT}.{market}.trades` ORDER BY trade_id"
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| Trade {
            symbol: r.get("symbol").unwrap(),
            trade_id: r.get("trade_id").unwrap(),
            price: normalise_decimal(&r.get::<String>("price").unwrap()),
            quantity: normalise_decimal(&r.get::<String>("quantity").unwrap()),
            trade_time: r.get("trade_time").unwrap(),
            event_time: r.get("event_time").unwrap(),
            receive_time: r.get("receive_time").unwrap(),
            buyer_is_maker: r.get("buyer_is_maker").unwrap(),
            source: r.get("source").unwrap(),
        })
        .collect()
}

fn normalised(t: &Trade) -> Trade {
    Trade {
        price: normalise_decimal(&t.price),
        quantity: normalise_decimal(&t.quantity),
        ..t.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trade_and_gap_lands_once_with_exact_values() {
    let t = shared_target();
    let n = Names::new();
    set_up(&t, &n).await;
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let app = tokio::spawn(consumer::app::run_with_metrics(
        config(&t, &n, &[]),
        stop.clone(),
        metrics.clone(),
    ));

    let sent: Vec<Trade> = (0..300).map(trade).collect();
    publish(&t, &n.trade_topic, sent.iter().map(trade_message).collect()).await;
    let gap = Gap {
        symbol: "STXUSDT".into(),
        from_id: 100,
        to_id: 104,
        reason: "ids_unavailable".into(),
        detected_time: 1_751_132_780_368_123,
        reporter: "producer".into(),
    };
    publish(
        &t,
        &n.gap_topic,
        vec![Message::new().set_data(gap.encode_to_vec())],
    )
    .await;

    let w = Warehouse::connect(&t).await.unwrap();
    wait_for_count(&w, &n.market, "trades", 300, Duration::from_secs(40)).await;
    assert_eq!(
        count(&w, &n.market, "trades_raw").await,
        300,
        "no duplicate rows"
    );
    let got = trades_in_view(&w, &n.market).await;
    let want: Vec<Trade> = sent.iter().map(normalised).collect();
    assert_eq!(got, want);

    wait_for_count(&w, &n.market, "gaps", 1, Duration::from_secs(10)).await;
    let rows = w
        .query(&format!(
            "SELECT symbol, from_id, to_id, reason, UNIX_MICROS(detected_time) AS t, reporter \
             FROM `{PROJECT}.{}.gaps`",
            n.market
        ))
        .await
        .unwrap();
    assert_eq!(rows[0].get::<String>("symbol").unwrap(), gap.symbol);
    assert_eq!(rows[0].get::<i64>("from_id").unwrap(), 100);
    assert_eq!(rows[0].get::<i64>("to_id").unwrap(), 104);
    assert_eq!(rows[0].get::<i64>("t").unwrap(), gap.detected_time);
    assert_eq!(rows[0].get::<String>("reporter").unwrap(), "producer");

    stop.cancel();
    app.await.unwrap().unwrap();
    let s = metrics.snapshot(Table::Trades);
    assert_eq!(s.rows_appended, 300);
    assert_eq!(s.dead_lettered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_with_its_reason_and_the_good_ones_land() {
    let t = shared_target();
    let n = Names::new();
    set_up(&t, &n).await;
    let stop = CancellationToken::new();
    let app = tokio::spawn(consumer::app::run(config(&t, &n, &[]), stop.clone()));

    let mut bad_price = trade(3);
    bad_price.price = "1e5".into();
    let messages = vec![
        trade_message(&trade(1)),
        Message::new()
            .set_data(Bytes::from_static(b"\xff\xff not a proto"))
            .set_ordering_key("BTCUSDT"),
        Message::new()
            .set_data(trade(2).encode_to_vec())
            .set_ordering_key("BTCUSDT"),
        trade_message(&bad_price),
        trade_message(&trade(4)),
    ];
    publish(&t, &n.trade_topic, messages).await;

    let w = Warehouse::connect(&t).await.unwrap();
    wait_for_count(&w, &n.market, "trades", 2, Duration::from_secs(30)).await;
    let ids: Vec<i64> = trades_in_view(&w, &n.market)
        .await
        .iter()
        .map(|t| t.trade_id)
        .collect();
    assert_eq!(ids, vec![1, 4]);

    let subscriber = pubsub::subscriber(&t).await.unwrap();
    let mut stream = subscriber
        .subscribe(pubsub::subscription_path(PROJECT, &n.dead_sub))
        .build();
    let mut reasons = BTreeSet::new();
    while reasons.len() < 3 {
        let (m, h) = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("a dead letter within 20 s")
            .unwrap()
            .unwrap();
        h.ack();
        assert!(m.attributes.contains_key("reason_detail"), "{m:?}");
        assert_eq!(m.attributes["subscription"], n.trade_sub);
        reasons.insert(m.attributes["reason"].clone());
    }
    assert_eq!(
        reasons,
        BTreeSet::from([
            "invalid_value".to_owned(),
            "missing_attribute".to_owned(),
            "undecodable".to_owned()
        ])
    );
    stop.cancel();
    app.await.unwrap().unwrap();
}

/// Settles normally, but a dropped handle is forgotten instead of nacked: like a killed
/// process, the message comes back only when its ack deadline expires.
struct CrashableAck(Option<google_cloud_pubsub::subscriber::handler::Handler>);

impl Ack for CrashableAck {
    fn ack(mut self) {
        if let Some(h) = self.0.take() {
            h.ack();
        }
    }
    fn nack(mut self) {
        if let Some(h) = self.0.take() {
            h.nack();
        }
    }
}

impl Drop for CrashableAck {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            std::mem::forget(h);
        }
    }
}

struct CrashableSource(PubsubSource);

impl MessageSource for CrashableSource {
    type Ack = CrashableAck;
    async fn next(&mut self) -> Result<Received<CrashableAck>, String> {
        let m = self.0.next().await?;
        Ok(Received {
            data: m.data,
            attributes: m.attributes,
            message_id: m.message_id,
            ordering_key: m.ordering_key,
            ack: CrashableAck(Some(m.ack)),
        })
    }
    async fn reconnect(&mut self) {
        self.0.reconnect().await;
    }
    async fn shutdown(self) {
        self.0.shutdown().await;
    }
}

/// Appends for real, then "crashes": signals and never returns, so nothing is acked.
struct CrashAfterAppend {
    inner: BigQuerySink,
    crashed: tokio::sync::Notify,
}

impl RowSink for CrashAfterAppend {
    async fn append(&self, table: Table, rows: Vec<Bytes>) -> Result<(), SinkError> {
        self.inner.append(table, rows).await?;
        self.crashed.notify_one();
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_append_before_ack_is_redelivered_and_the_view_keeps_one_row() {
    let t = shared_target();
    let n = Names::new();
    set_up(&t, &n).await;
    // The crashed instance stops extending leases after 1 s, as a dead process would at once.
    let crash_config = config(&t, &n, &["--batch-max-rows=20", "--max-lease=1s"]);
    let sent: Vec<Trade> = (0..20).map(trade).collect();
    publish(&t, &n.trade_topic, sent.iter().map(trade_message).collect()).await;

    let subscriber = pubsub::subscriber(&t).await.unwrap();
    let sink = Arc::new(CrashAfterAppend {
        inner: BigQuerySink::connect(&t, &n.market).await.unwrap(),
        crashed: tokio::sync::Notify::new(),
    });
    let dead = Arc::new(
        consumer::dead_letter::PubsubDeadLetter::connect(&t, &n.dead_topic)
            .await
            .unwrap(),
    );
    let crashing = Pipeline::<Trades, _, _, _>::new(
        consumer::app::pipeline_settings(&crash_config, &n.trade_sub),
        CrashableSource(PubsubSource::new(
            subscriber.clone(),
            consumer::app::pull_settings(&crash_config, &n.trade_sub),
        )),
        sink.clone(),
        dead,
        Arc::new(Metrics::new()),
    );
    let task = tokio::spawn(crashing.run(CancellationToken::new()));
    tokio::time::timeout(Duration::from_secs(30), sink.crashed.notified())
        .await
        .expect("the batch was appended");
    task.abort(); // killed after the append, before any ack
    let _ = task.await;

    let w = Warehouse::connect(&t).await.unwrap();
    assert_eq!(count(&w, &n.market, "trades_raw").await, 20);

    // Restarted: the messages come back after the ack deadline and are appended again.
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let app = tokio::spawn(consumer::app::run_with_metrics(
        config(&t, &n, &["--batch-max-rows=20"]),
        stop.clone(),
        metrics.clone(),
    ));
    wait_for_count(&w, &n.market, "trades_raw", 40, Duration::from_secs(40)).await;
    stop.cancel();
    app.await.unwrap().unwrap();

    assert_eq!(
        count(&w, &n.market, "trades").await,
        20,
        "one row per trade in the view"
    );
    let got = trades_in_view(&w, &n.market).await;
    assert_eq!(got, sent.iter().map(normalised).collect::<Vec<_>>());
    assert_eq!(metrics.snapshot(Table::Trades).received, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_outage_mid_stream_is_retried_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut bq = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || BigQueryEmulator::start_persistent(&path)
    })
    .await
    .unwrap();
    let t = target(&bq.rest_endpoint, &bq.grpc_endpoint);
    let n = Names::new();
    set_up(&t, &n).await;
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let app = tokio::spawn(consumer::app::run_with_metrics(
        config(&t, &n, &["--batch-max-rows=10", "--append-timeout=2s"]),
        stop.clone(),
        metrics.clone(),
    ));
    let w = Warehouse::connect(&t).await.unwrap();
    let first: Vec<Trade> = (0..30).map(trade).collect();
    publish(
        &t,
        &n.trade_topic,
        first.iter().map(trade_message).collect(),
    )
    .await;
    wait_for_count(&w, &n.market, "trades", 30, Duration::from_secs(30)).await;

    bq = tokio::task::spawn_blocking(move || {
        bq.stop();
        bq
    })
    .await
    .unwrap();
    let second: Vec<Trade> = (30..60).map(trade).collect();
    publish(
        &t,
        &n.trade_topic,
        second.iter().map(trade_message).collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = metrics.snapshot(Table::Trades);
    assert_eq!(
        during.rows_appended, 30,
        "nothing lands while BigQuery is down"
    );
    assert!(
        during.received > 30,
        "the second half was pulled: {during:?}"
    );
    assert!(during.retries > 0, "{during:?}");

    let _bq = tokio::task::spawn_blocking(move || {
        bq.restart();
        bq
    })
    .await
    .unwrap();
    let w = Warehouse::connect(&t).await.unwrap();
    wait_for_count(&w, &n.market, "trades", 60, Duration::from_secs(40)).await;
    stop.cancel();
    app.await.unwrap().unwrap();
    let got = trades_in_view(&w, &n.market).await;
    let want: Vec<Trade> = first.iter().chain(&second).map(normalised).collect();
    assert_eq!(got, want);
}
