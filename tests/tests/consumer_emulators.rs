//! The consumer against the Pub/Sub emulator and bqemulator: every trade lands once with exact
//! values, poison goes to the dead-letter topic, a crash between append and ack is redelivered
//! without a second row in the view, and a BigQuery outage loses nothing.
//!
//! Outage mode (issue 15): a column dropped mid-run, and a missing dataset (what a revoked
//! permission looks like to the consumer: every append refused), dead-letter nothing, turn
//! `/healthz` 503, and every trade lands once after the fix. `consumer replay` brings
//! dead-lettered good trades back into BigQuery once and leaves true poison where it is. A frozen
//! Pub/Sub emulator (SIGSTOP) is noticed by the pull-silence check.
//!
//! Measured on bqemulator (1.4.0), by appending after each DDL: `DROP COLUMN` makes AppendRows
//! fail with `UNKNOWN` ("Binder Error: table trades_raw has 8 columns but 9 values were
//! supplied"), a transient code, so that test covers the stuck path (`--stuck-after`); real
//! BigQuery answers `INVALID_ARGUMENT` "Input schema has more fields than BigQuery schema"
//! (<https://github.com/apache/beam/issues/27892>), the refused path, covered with fakes in
//! `consumer/src/pipeline_outage_tests.rs` and here by the missing dataset (`NOT_FOUND`). bqemulator
//! accepts appends after `ALTER COLUMN ... SET DATA TYPE` and `RENAME COLUMN` without a word, so
//! a retyped column cannot be tested against it. `DROP COLUMN source` then `ADD COLUMN source`
//! restores appends (the column is last, so positions line up again).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use consumer::config::Config;
use consumer::dead_letter::{DeadLetter, DeadLetterError, Letter};
use consumer::metrics::Metrics;
use consumer::pipeline::{Pipeline, Trades};
use consumer::replay::{Counts, ReplayArgs, Target};
use consumer::sink::{BigQuerySink, RowSink, SinkError, Table};
use consumer::source::{Ack, MessageSource, PubsubSource, Received};
use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::{self, Datasets};
use gcp::pubsub::{self, Admin, Batching, SubscriptionSpec};
use google_cloud_pubsub::model::Message;
use pipeline_tests::{
    BigQueryEmulator, PROJECT, PubsubEmulator, free_port, http_status, normalise_decimal, shared,
    unique_name,
};
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
    /// A second subscription on the dead-letter topic.
    dead_sub_2: String,
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
            dead_sub_2: unique_name("dead_sub_2"),
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

/// bqemulator (DuckDB) fails DDL run concurrently from several tests: one at a time.
static DDL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Topics, subscriptions (10 s ack deadline, so redeliveries come quickly) and tables.
async fn set_up(t: &GcpTarget, n: &Names) {
    set_up_pubsub(t, n).await;
    set_up_tables(t, n).await;
}

/// Topics and subscriptions only.
async fn set_up_pubsub(t: &GcpTarget, n: &Names) {
    let admin = Admin::connect(t).await.unwrap();
    let spec = SubscriptionSpec {
        ack_deadline_secs: 10,
        ..SubscriptionSpec::default()
    };
    for (topic, sub) in [(&n.trade_topic, &n.trade_sub), (&n.gap_topic, &n.gap_sub)] {
        admin.ensure_topic(topic).await.unwrap();
        admin.ensure_subscription(sub, topic, &spec).await.unwrap();
    }
    // Unordered, like Terraform's dead-letter subscription: the emulator treats letters without
    // an ordering key as one key on an ordered subscription, so a nack of one letter redelivers
    // every later one, acked or not.
    let unordered = SubscriptionSpec {
        ordering: false,
        ..spec
    };
    admin.ensure_topic(&n.dead_topic).await.unwrap();
    for sub in [&n.dead_sub, &n.dead_sub_2] {
        admin
            .ensure_subscription(sub, &n.dead_topic, &unordered)
            .await
            .unwrap();
    }
}

/// The market dataset's tables and view.
async fn set_up_tables(t: &GcpTarget, n: &Names) {
    let _one_at_a_time = DDL.lock().await;
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
    trades_in_view_where(w, market, "TRUE").await
}

/// The rows of the `trades` view matching `condition`.
async fn trades_in_view_where(w: &Warehouse, market: &str, condition: &str) -> Vec<Trade> {
    let rows = w
        .query(&format!(
            "SELECT symbol, trade_id, CAST(price AS STRING) AS price, \
             CAST(quantity AS STRING) AS quantity, UNIX_MICROS(trade_time) AS trade_time, \
             UNIX_MICROS(event_time) AS event_time, UNIX_MICROS(receive_time) AS receive_time, \
             buyer_is_maker, source FROM `{PROJECT}.{market}.trades` WHERE {condition} \
             ORDER BY trade_id"
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
    // Down for longer than two leases (10 s ack deadline, 10 s extensions): the held rows' leases
    // are extended meanwhile, and whatever Pub/Sub redelivers anyway lands once.
    tokio::time::sleep(Duration::from_secs(25)).await;
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

/// `--metrics-addr` on a free port, and that address.
fn metrics_flag() -> (String, SocketAddr) {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    (format!("--metrics-addr={addr}"), addr)
}

/// `GET path` answers (blocking client, off the runtime's threads).
async fn status(addr: SocketAddr, path: &'static str) -> Option<u16> {
    tokio::task::spawn_blocking(move || http_status(addr, path))
        .await
        .unwrap()
}

/// Polls `GET path` until it answers `want`, or panics after `timeout`.
async fn wait_for_status(addr: SocketAddr, path: &'static str, want: u16, timeout: Duration) {
    let start = Instant::now();
    loop {
        let got = status(addr, path).await;
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{path} answers {got:?}, not {want}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Pulls `sub` until nothing arrives for `idle`; acks and returns what came.
async fn drain(t: &GcpTarget, sub: &str, idle: Duration) -> Vec<Message> {
    let subscriber = pubsub::subscriber(t).await.unwrap();
    let mut stream = subscriber
        .subscribe(pubsub::subscription_path(PROJECT, sub))
        .build();
    let mut got = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout(idle, stream.next()).await {
        let (m, h) = next.unwrap();
        h.ack();
        got.push(m);
    }
    // Let the acks go out while the stream is open (the emulator ignores a nack sent only as a
    // stream shuts down; acks are given the same chance).
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.shutdown_token().shutdown().await;
    got
}

/// Receives (and acks) `n` messages from `sub` within `timeout`, then whatever else comes
/// within 2 s more.
async fn receive(t: &GcpTarget, sub: &str, n: usize, timeout: Duration) -> Vec<Message> {
    let subscriber = pubsub::subscriber(t).await.unwrap();
    let mut stream = subscriber
        .subscribe(pubsub::subscription_path(PROJECT, sub))
        .build();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let wait = if got.len() < n {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        } else {
            Duration::from_secs(2)
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Ok(Some(next)) => {
                let (m, h) = next.unwrap();
                h.ack();
                got.push(m);
            }
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.shutdown_token().shutdown().await;
    got
}

async fn ddl(t: &GcpTarget, statement: &str) {
    let _one_at_a_time = DDL.lock().await;
    Warehouse::connect(t)
        .await
        .unwrap()
        .execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn raw_ids(w: &Warehouse, market: &str) -> Vec<i64> {
    w.query(&format!(
        "SELECT trade_id FROM `{PROJECT}.{market}.trades_raw` ORDER BY trade_id"
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<i64>("trade_id").unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_dropped_mid_run_dead_letters_nothing_and_every_trade_lands_once_restored() {
    let t = shared_target();
    let n = Names::new();
    set_up(&t, &n).await;
    let (metrics_flag, addr) = metrics_flag();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let flags = [
        metrics_flag.as_str(),
        "--batch-max-rows=10",
        "--stuck-after=2s",
        "--refused-retry-max=2s",
        "--append-timeout=5s",
    ];
    let app = tokio::spawn(consumer::app::run_with_metrics(
        config(&t, &n, &flags),
        stop.clone(),
        metrics.clone(),
    ));
    let w = Warehouse::connect(&t).await.unwrap();
    let sent: Vec<Trade> = (0..40).map(trade).collect();
    publish(
        &t,
        &n.trade_topic,
        sent[..20].iter().map(trade_message).collect(),
    )
    .await;
    wait_for_count(&w, &n.market, "trades", 20, Duration::from_secs(30)).await;
    wait_for_status(addr, "/healthz", 200, Duration::from_secs(5)).await;

    let table = format!("`{PROJECT}.{}.trades_raw`", n.market);
    ddl(&t, &format!("ALTER TABLE {table} DROP COLUMN source")).await;
    publish(
        &t,
        &n.trade_topic,
        sent[20..].iter().map(trade_message).collect(),
    )
    .await;
    wait_for_status(addr, "/healthz", 503, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(addr, "/healthz").await, Some(503), "still refused");
    let during = metrics.snapshot(Table::Trades);
    assert_eq!(during.rows_appended, 20, "{during:?}");
    assert_eq!(
        during.dead_lettered, 0,
        "no good trade dead-lettered: {during:?}"
    );
    assert!(during.received >= 30 && during.retries > 0, "{during:?}");
    assert!(!app.is_finished(), "the consumer stays up");

    ddl(&t, &format!("ALTER TABLE {table} ADD COLUMN source STRING")).await;
    wait_for_count(&w, &n.market, "trades", 40, Duration::from_secs(40)).await;
    wait_for_status(addr, "/healthz", 200, Duration::from_secs(10)).await;
    assert_eq!(
        raw_ids(&w, &n.market).await,
        (0..40).collect::<Vec<_>>(),
        "each once"
    );
    // The first 20 lost their `source` with the column; the held 20 landed whole.
    let held = trades_in_view_where(&w, &n.market, "trade_id >= 20").await;
    assert_eq!(held, sent[20..].iter().map(normalised).collect::<Vec<_>>());
    assert!(
        drain(&t, &n.dead_sub, Duration::from_secs(2))
            .await
            .is_empty()
    );
    stop.cancel();
    app.await.unwrap().unwrap();
    assert_eq!(metrics.snapshot(Table::Trades).dead_lettered, 0);
}

/// A dataset that is not there is what a revoked permission looks like to the consumer too:
/// every append refused as a whole (`NOT_FOUND` here, `PERMISSION_DENIED` in the cloud, the same
/// path). Outage mode, not an exit; the trades land when the dataset appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dataset_holds_the_trades_unhealthy_until_it_appears_then_they_land_once() {
    let t = shared_target();
    let n = Names::new();
    set_up_pubsub(&t, &n).await;
    let (metrics_flag, addr) = metrics_flag();
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let app = tokio::spawn(consumer::app::run_with_metrics(
        config(&t, &n, &[metrics_flag.as_str(), "--refused-retry-max=1s"]),
        stop.clone(),
        metrics.clone(),
    ));
    let sent: Vec<Trade> = (0..30).map(trade).collect();
    publish(&t, &n.trade_topic, sent.iter().map(trade_message).collect()).await;
    wait_for_status(addr, "/healthz", 503, Duration::from_secs(30)).await;
    assert_eq!(
        status(addr, "/livez").await,
        Some(200),
        "a new VM would not help"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = metrics.encode();
    assert!(
        text.contains(r#"consumer_append_refused_total{table="trades_raw",code="not_found"}"#),
        "{text}"
    );
    let during = metrics.snapshot(Table::Trades);
    assert!(during.refused >= 2, "retried: {during:?}");
    assert_eq!(
        (during.rows_appended, during.dead_lettered, during.nacked),
        (0, 0, 0)
    );
    assert!(!app.is_finished(), "the consumer stays up");

    set_up_tables(&t, &n).await;
    let w = Warehouse::connect(&t).await.unwrap();
    wait_for_count(&w, &n.market, "trades", 30, Duration::from_secs(40)).await;
    wait_for_status(addr, "/healthz", 200, Duration::from_secs(10)).await;
    assert_eq!(count(&w, &n.market, "trades_raw").await, 30);
    assert_eq!(
        trades_in_view(&w, &n.market).await,
        sent.iter().map(normalised).collect::<Vec<_>>()
    );
    assert!(
        drain(&t, &n.dead_sub, Duration::from_secs(2))
            .await
            .is_empty()
    );
    stop.cancel();
    app.await.unwrap().unwrap();
}

/// Appends for real, but names some rows in row errors the first time it sees them, as BigQuery
/// does for a row it refuses: the consumer dead-letters exactly those (`rejected_by_bigquery`).
struct RefuseRowsOnce {
    inner: BigQuerySink,
    ids: HashSet<i64>,
    refused: Mutex<HashSet<i64>>,
}

impl RowSink for RefuseRowsOnce {
    async fn append(&self, table: Table, rows: Vec<Bytes>) -> Result<(), SinkError> {
        let errors: Vec<(usize, String)> = {
            let mut refused = self.refused.lock().unwrap();
            rows.iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let id = Trade::decode(r.as_ref()).ok()?.trade_id;
                    (self.ids.contains(&id) && refused.insert(id))
                        .then(|| (i, format!("row {i}: refused for the test")))
                })
                .collect()
        };
        if !errors.is_empty() {
            return Err(SinkError::RowErrors(errors));
        }
        self.inner.append(table, rows).await
    }
}

fn replay_args(n: &Names, flags: &[&str]) -> ReplayArgs {
    let mut args = vec![
        "consumer replay".to_owned(),
        format!("--project={PROJECT}"),
        format!("--pubsub-endpoint={}", shared().pubsub),
        format!("--subscription={}", n.dead_sub),
        format!("--trade-topic={}", n.trade_topic),
        format!("--gap-topic={}", n.gap_topic),
        format!("--trade-subscription={}", n.trade_sub),
        format!("--gap-subscription={}", n.gap_sub),
        "--idle=3s".to_owned(),
    ];
    // A flag in `flags` replaces the default above.
    let name = |a: &str| a.split('=').next().unwrap_or_default().to_owned();
    let given: Vec<String> = flags.iter().map(|f| name(f)).collect();
    args.retain(|a| !given.contains(&name(a)) || name(a) == "--reason");
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    use clap::Parser as _;
    ReplayArgs::try_parse_from(args).unwrap()
}

fn counts(read: u64, republished: u64, left: u64) -> Counts {
    Counts {
        read,
        republished,
        left,
        failed: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_brings_dead_lettered_good_trades_into_bigquery_once_and_leaves_the_poison() {
    let t = shared_target();
    let n = Names::new();
    set_up(&t, &n).await;
    let w = Warehouse::connect(&t).await.unwrap();
    let sent: Vec<Trade> = (0..21).map(trade).collect();

    // 1. A consumer whose BigQuery names trades 3, 8 and 13 in row errors, and a junk message:
    //    four letters from the consumer itself.
    let run_config = config(&t, &n, &["--batch-max-rows=20"]);
    let sink = Arc::new(RefuseRowsOnce {
        inner: BigQuerySink::connect(&t, &n.market).await.unwrap(),
        ids: HashSet::from([3, 8, 13]),
        refused: Mutex::default(),
    });
    let dead = Arc::new(
        consumer::dead_letter::PubsubDeadLetter::connect(&t, &n.dead_topic)
            .await
            .unwrap(),
    );
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let first = tokio::spawn(
        Pipeline::<Trades, _, _, _>::new(
            consumer::app::pipeline_settings(&run_config, &n.trade_sub),
            PubsubSource::new(
                pubsub::subscriber(&t).await.unwrap(),
                consumer::app::pull_settings(&run_config, &n.trade_sub),
            ),
            sink,
            dead,
            metrics.clone(),
        )
        .run(stop.clone()),
    );
    let mut messages: Vec<Message> = sent[..20].iter().map(trade_message).collect();
    messages.push(
        Message::new()
            .set_data(Bytes::from_static(b"\xff\xff not a proto"))
            .set_attributes([("symbol", "BTCUSDT"), ("source", "stream")]),
    );
    publish(&t, &n.trade_topic, messages).await;
    wait_for_count(&w, &n.market, "trades", 17, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics.snapshot(Table::Trades).dead_lettered < 4 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            metrics.snapshot(Table::Trades)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    first.await.unwrap();
    // 2. A good trade that a Pub/Sub dead-letter policy forwarded (before this issue's fix).
    let forwarded = &sent[20];
    publish(
        &t,
        &n.dead_topic,
        vec![
            Message::new()
                .set_data(forwarded.encode_to_vec())
                .set_ordering_key(forwarded.symbol.clone())
                .set_attributes([
                    ("symbol", forwarded.symbol.as_str()),
                    ("source", forwarded.source.as_str()),
                    (
                        "CloudPubSubDeadLetterSourceSubscription",
                        n.trade_sub.as_str(),
                    ),
                    ("CloudPubSubDeadLetterSourceDeliveryCount", "5"),
                ]),
        ],
    )
    .await;
    // What the trade topic receives from the replay, seen by a subscription of its own.
    let watch = unique_name("watch");
    Admin::connect(&t)
        .await
        .unwrap()
        .ensure_subscription(&watch, &n.trade_topic, &SubscriptionSpec::default())
        .await
        .unwrap();

    // 3. Dry run, on a second subscription of the dead-letter topic (the emulator ignores the
    //    nacks a run sends as it stops, so its letters would come back only ~20 s later): counts
    //    by reason, acks nothing.
    let dry = consumer::replay::run(
        &replay_args(
            &n,
            &["--dry-run", &format!("--subscription={}", n.dead_sub_2)],
        ),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let want_dry = BTreeMap::from([
        ("max_delivery_attempts".to_owned(), counts(1, 0, 1)),
        ("rejected_by_bigquery".to_owned(), counts(3, 0, 3)),
        ("undecodable".to_owned(), counts(1, 0, 1)),
    ]);
    assert_eq!(dry.by_reason, want_dry, "{dry}");

    // 4. Replay the good ones only.
    let flags = [
        "--reason=rejected_by_bigquery",
        "--reason=max_delivery_attempts",
        "--limit=5",
    ];
    let done = consumer::replay::run(&replay_args(&n, &flags), CancellationToken::new())
        .await
        .unwrap();
    let want = BTreeMap::from([
        ("max_delivery_attempts".to_owned(), counts(1, 1, 0)),
        ("rejected_by_bigquery".to_owned(), counts(3, 3, 0)),
        ("undecodable".to_owned(), counts(1, 0, 1)),
    ]);
    assert_eq!(done.by_reason, want, "{done}");
    assert_eq!(done.by_target, BTreeMap::from([(Target::Trades, 4)]));
    assert!(done.to_string().contains("rejected_by_bigquery"), "{done}");

    // 5. They come back as the producer published them: attributes and ordering key.
    let back = drain(&t, &watch, Duration::from_secs(3)).await;
    let mut ids: Vec<i64> = back
        .iter()
        .map(|m| Trade::decode(m.data.as_ref()).unwrap().trade_id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![3, 8, 13, 20]);
    for m in &back {
        let tr = Trade::decode(m.data.as_ref()).unwrap();
        let want_attrs: HashMap<String, String> = [
            ("symbol".to_owned(), tr.symbol.clone()),
            ("source".to_owned(), tr.source.clone()),
        ]
        .into();
        assert_eq!(m.attributes, want_attrs);
        assert_eq!(m.ordering_key, tr.symbol);
    }

    // 6. The consumer takes them like any trade: every trade once in BigQuery.
    let stop = CancellationToken::new();
    let app = tokio::spawn(consumer::app::run(config(&t, &n, &[]), stop.clone()));
    wait_for_count(&w, &n.market, "trades", 21, Duration::from_secs(30)).await;
    assert_eq!(
        count(&w, &n.market, "trades_raw").await,
        21,
        "each trade once"
    );
    assert_eq!(
        trades_in_view(&w, &n.market).await,
        sent.iter().map(normalised).collect::<Vec<_>>()
    );
    stop.cancel();
    app.await.unwrap().unwrap();

    // 7. The poison is still there, for a human (back once its lease lapsed, as above; the
    //    emulator may deliver that one letter twice), and only the poison.
    let left = receive(&t, &n.dead_sub, 1, Duration::from_secs(60)).await;
    let left: BTreeMap<String, String> = left
        .iter()
        .map(|m| (m.message_id.clone(), m.attributes["reason"].clone()))
        .collect();
    assert_eq!(
        left.values().collect::<Vec<_>>(),
        vec!["undecodable"],
        "{left:?}"
    );
    // The dry run acked nothing: its subscription still has all five.
    let kept = receive(&t, &n.dead_sub_2, 5, Duration::from_secs(60)).await;
    let kept: BTreeSet<String> = kept.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(kept.len(), 5, "{kept:?}");
}

/// Accepts every append.
struct Accept;

impl RowSink for Accept {
    async fn append(&self, _table: Table, _rows: Vec<Bytes>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Never called: no poison in this test.
struct NoDeadLetter;

impl DeadLetter for NoDeadLetter {
    async fn publish(&self, _letter: Letter) -> Result<(), DeadLetterError> {
        Err(DeadLetterError("not expected".into()))
    }
}

fn signal_group(emulator: &PubsubEmulator, signal: libc::c_int) {
    let pid = emulator.pid().expect("our own emulator") as libc::pid_t;
    // SAFETY: kill(2) on the process group this test started; no memory is touched.
    let rc = unsafe { libc::kill(-pid, signal) };
    assert_eq!(rc, 0, "kill(-{pid}, {signal})");
}

/// The Pub/Sub emulator SIGSTOPped: the streaming pull stays open, no message, no error. The
/// consumer reopens it after `--pull-silence`, turns `/healthz` and `/livez` 503 when the silence
/// outlasts the reopen, and is healthy again once messages flow after SIGCONT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_pubsub_emulator_is_noticed_by_the_pull_silence_check() {
    let emulator = tokio::task::spawn_blocking(PubsubEmulator::start)
        .await
        .unwrap();
    let t = GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(emulator.endpoint.clone()),
        bigquery_endpoint: None,
        bigquery_grpc_endpoint: None,
    };
    let (topic, sub) = (unique_name("trades"), unique_name("trades_bq"));
    let admin = Admin::connect(&t).await.unwrap();
    admin.ensure_topic(&topic).await.unwrap();
    admin
        .ensure_subscription(&sub, &topic, &SubscriptionSpec::default())
        .await
        .unwrap();
    // BigQuery is never called (the sink is a fake): any endpoints make a valid config.
    let config_target = GcpTarget {
        bigquery_endpoint: Some("http://127.0.0.1:9".into()),
        bigquery_grpc_endpoint: Some("127.0.0.1:9".into()),
        ..t.clone()
    };
    let mut run_config = config(&config_target, &Names::new(), &["--pull-silence=3s"]);
    run_config.trade_subscription = sub.clone();
    let metrics = Arc::new(Metrics::new());
    let listener = service::http::bind("127.0.0.1:0").await.unwrap();
    let server_stop = CancellationToken::new();
    let (addr, server) = service::http::serve(
        listener,
        consumer::metrics::router(metrics.clone()),
        server_stop.clone(),
    )
    .unwrap();
    let stop = CancellationToken::new();
    let pipeline = tokio::spawn(
        Pipeline::<Trades, _, _, _>::new(
            consumer::app::pipeline_settings(&run_config, &sub),
            PubsubSource::new(
                pubsub::subscriber(&t).await.unwrap(),
                consumer::app::pull_settings(&run_config, &sub),
            ),
            Arc::new(Accept),
            Arc::new(NoDeadLetter),
            metrics.clone(),
        )
        .run(stop.clone()),
    );
    let publish_some = |ids: std::ops::Range<i64>| {
        let t = t.clone();
        let topic = topic.clone();
        async move {
            let publisher = pubsub::publisher(&t, &topic, Batching::default())
                .await
                .unwrap();
            for id in ids {
                publisher.publish(trade_message(&trade(id))).await.unwrap();
            }
        }
    };
    let received = |n: u64| {
        let metrics = metrics.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while metrics.snapshot(Table::Trades).received < n {
                assert!(
                    Instant::now() < deadline,
                    "{:?}",
                    metrics.snapshot(Table::Trades)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    publish_some(0..5).await;
    received(5).await;
    assert_eq!(status(addr, "/healthz").await, Some(200));

    signal_group(&emulator, libc::SIGSTOP);
    let frozen = Instant::now();
    wait_for_status(addr, "/healthz", 503, Duration::from_secs(30)).await;
    let noticed = frozen.elapsed();
    assert_eq!(status(addr, "/livez").await, Some(503));
    let s = metrics.snapshot(Table::Trades);
    assert!(s.reopened >= 2, "{s:?}");
    assert!(
        noticed >= Duration::from_secs(6),
        "two silences of 3 s: {noticed:?}"
    );

    signal_group(&emulator, libc::SIGCONT);
    publish_some(5..10).await;
    received(10).await;
    wait_for_status(addr, "/healthz", 200, Duration::from_secs(10)).await;
    stop.cancel();
    pipeline.await.unwrap();
    server_stop.cancel();
    server.await.unwrap();
}
