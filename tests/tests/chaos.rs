//! The chaos test: the real binaries (binance-sim, producer, consumer) against the Pub/Sub
//! emulator and a bqemulator of its own, with faults injected for about two minutes, then the
//! user-facing `market.trades` view held against the simulator's ground truth: every trade id the
//! producer was due, once each, with the exact price, quantity, time and side Binance's REST gives.
//!
//! Faults: random connection drops, rotations (the simulator cuts connections at 25 s, the
//! producer rotates at 18 s), a silent stall, `serverShutdown`, 1% malformed frames, a 429 storm
//! while backfilling, the consumer killed with SIGKILL and restarted, bqemulator paused (SIGSTOP).
//!
//! A second test runs a consumer that acks on receipt (the bug "ack before append", injected with
//! the hidden `--unsafe-ack-on-receipt`) and kills it: the same check must find the loss. So the
//! check is shown to fail when a guarantee is broken.
//!
//! `CHAOS_SECS` (default 100) sets how long faults are injected and `CHAOS_RATE_MULTIPLIER`
//! (default 1, ~43 trades/s) the simulator's rate: `scripts/soak` runs ~17 minutes at x30
//! (~1,150 trades/s, over 1,000,000 trades). The producer's and consumer's resident memory is
//! sampled throughout; its peak is printed and must stay within `CHAOS_MAX_RSS_MIB` (default
//! 256 MiB) for each process. `CHAOS_MALFORMED_RATIO` (default 0.01 divided by the rate
//! multiplier) sets the share of malformed frames: each one is a missing trade the producer must backfill over `historicalTrades`
//! (weight 25 of 6,000 a minute, so ~4 calls a second at best, one call per gap today), so the
//! soak keeps the x1 mix's ~0.4 malformed frames a second rather than 1% of ~1,300 trades/s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use pipeline_tests::procs::{Proc, start_sim};
use pipeline_tests::{
    BigQueryEmulator, PROJECT, PubsubEmulator, free_port, normalise_decimal, producer_start_ids,
    shared, unique_name,
};
use serde_json::{Value, json};
use trade_proto::ids::IdSet;

const SYMBOLS: [&str; 4] = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"];

/// The resource names of one run.
struct Names {
    trade_topic: String,
    gap_topic: String,
    trade_sub: String,
    gap_sub: String,
    dead_topic: String,
    market: String,
    producer_metrics: u16,
}

impl Names {
    fn new() -> Self {
        Self {
            trade_topic: unique_name("chaos_trades"),
            gap_topic: unique_name("chaos_gaps"),
            trade_sub: unique_name("chaos_trades_bq"),
            gap_sub: unique_name("chaos_gaps_bq"),
            dead_topic: unique_name("chaos_dead"),
            market: unique_name("chaos_market"),
            producer_metrics: free_port(),
        }
    }
}

fn producer_args(pubsub: &str, sim: &str, n: &Names) -> Vec<String> {
    [
        format!("--project={PROJECT}"),
        format!("--pubsub-endpoint={pubsub}"),
        format!("--trade-topic={}", n.trade_topic),
        format!("--gap-topic={}", n.gap_topic),
        "--create-topics".into(),
        format!("--ws-url=ws://{sim}"),
        format!("--rest-url=http://{sim}"),
        format!("--metrics-addr=127.0.0.1:{}", n.producer_metrics),
        "--log-format=text".into(),
        // Faults must be noticed within the test's minutes, not production's.
        "--rotate-after=18s".into(),
        "--watchdog-silence=5s".into(),
        "--socket-timeout=8s".into(),
        "--gap-grace=1s".into(),
        "--reconnect-max=2s".into(),
    ]
    .into()
}

fn consumer_args(pubsub: &str, bq: &BigQueryEmulator, n: &Names, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        format!("--project={PROJECT}"),
        format!("--pubsub-endpoint={pubsub}"),
        format!("--bigquery-endpoint={}", bq.rest_endpoint),
        format!("--bigquery-grpc-endpoint={}", bq.grpc_endpoint),
        format!("--trade-topic={}", n.trade_topic),
        format!("--gap-topic={}", n.gap_topic),
        format!("--trade-subscription={}", n.trade_sub),
        format!("--gap-subscription={}", n.gap_sub),
        format!("--dead-letter-topic={}", n.dead_topic),
        format!("--market-dataset={}", n.market),
        format!("--metrics-addr=127.0.0.1:{}", free_port()),
        "--log-format=text".into(),
        "--append-timeout=3s".into(),
        // A killed consumer's messages come back when their lease lapses: 10 s (the least
        // Pub/Sub allows) instead of 60 s keeps the test short.
        "--lease-extension=10s".into(),
        "--create-missing".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The simulator's admin and REST API.
struct SimApi {
    base: String,
    http: reqwest::Client,
}

impl SimApi {
    fn new(addr: &str) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn faults(&self, body: Value) {
        let r = self
            .http
            .post(format!("{}/admin/faults", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "faults {body} refused: {r:?}");
    }

    async fn ground_truth(&self) -> Value {
        self.http
            .get(format!("{}/admin/ground-truth", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Binance's record of trades `from..=to` (historicalTrades, µs times), as rows.
    async fn trades(&self, symbol: &str, from: i64, to: i64) -> Vec<Row> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to {
            let r = self
                .http
                .get(format!("{}/api/v3/historicalTrades", self.base))
                .query(&[
                    ("symbol", symbol.to_owned()),
                    ("fromId", next.to_string()),
                    ("limit", "1000".to_owned()),
                ])
                .header("X-MBX-TIME-UNIT", "MICROSECOND")
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "historicalTrades: {r:?}");
            let page: Vec<Value> = r.json().await.unwrap();
            assert!(!page.is_empty(), "no trades from {next} for {symbol}");
            for t in page {
                let id = t["id"].as_i64().unwrap();
                if id > to {
                    break;
                }
                out.push(Row {
                    symbol: symbol.to_owned(),
                    trade_id: id,
                    price: normalise_decimal(t["price"].as_str().unwrap()),
                    quantity: normalise_decimal(t["qty"].as_str().unwrap()),
                    trade_time: t["time"].as_i64().unwrap(),
                    buyer_is_maker: t["isBuyerMaker"].as_bool().unwrap(),
                });
                next = id + 1;
            }
        }
        out
    }
}

/// One trade as users see it (and as Binance has it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    symbol: String,
    trade_id: i64,
    price: String,
    quantity: String,
    trade_time: i64,
    buyer_is_maker: bool,
}

/// What the producer was due per symbol: from the first id it accounts for (after the
/// exchange's latest id at its start, no later than its first connection's first trade), to at
/// least the last id produced before it was stopped.
type Due = BTreeMap<String, (i64, i64)>;

/// The producer's `producer_start_id` per symbol (read while it runs).
async fn producer_starts(port: u16) -> BTreeMap<String, i64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    producer_start_ids(&text)
}

fn due_from(truth: &Value, starts: &BTreeMap<String, i64>) -> Due {
    let mut due = Due::new();
    for symbol in SYMBOLS {
        let first_sent = truth["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["symbols"][symbol]["first_expected_id"].as_i64())
            .min()
            .unwrap_or_else(|| panic!("no connection carried {symbol}: {truth}"));
        let first = starts[symbol];
        assert!(
            (0..=first_sent).contains(&first),
            "{symbol}: the producer accounts from {first}, its first connection started at {first_sent}"
        );
        let last = truth["symbols"][symbol]["last_id"].as_i64().unwrap();
        due.insert(symbol.to_owned(), (first, last));
    }
    due
}

async fn view_rows(w: &Warehouse, market: &str) -> Vec<Row> {
    w.query(&format!(
        "SELECT symbol, trade_id, CAST(price AS STRING) AS price, \
         CAST(quantity AS STRING) AS quantity, UNIX_MICROS(trade_time) AS trade_time, \
         buyer_is_maker FROM `{PROJECT}.{market}.trades` ORDER BY symbol, trade_id"
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| Row {
        symbol: r.get("symbol").unwrap(),
        trade_id: r.get("trade_id").unwrap(),
        price: normalise_decimal(&r.get::<String>("price").unwrap()),
        quantity: normalise_decimal(&r.get::<String>("quantity").unwrap()),
        trade_time: r.get("trade_time").unwrap(),
        buyer_is_maker: r.get("buyer_is_maker").unwrap(),
    })
    .collect()
}

/// Per symbol: (rows, lowest id, highest id) in the view.
async fn landed(w: &Warehouse, market: &str) -> BTreeMap<String, (i64, i64, i64)> {
    w.query(&format!(
        "SELECT symbol, COUNT(*) AS n, MIN(trade_id) AS lo, MAX(trade_id) AS hi \
         FROM `{PROJECT}.{market}.trades` GROUP BY symbol"
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get("symbol").unwrap(),
            (
                r.get("n").unwrap(),
                r.get("lo").unwrap(),
                r.get("hi").unwrap(),
            ),
        )
    })
    .collect()
}

/// Waits until every symbol's rows are one contiguous run covering what was due, or `timeout`.
async fn wait_until_complete(w: &Warehouse, market: &str, due: &Due, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let now = landed(w, market).await;
        let complete = due.iter().all(|(s, (first, last))| {
            now.get(s)
                .is_some_and(|(n, lo, hi)| lo == first && hi >= last && *n == hi - lo + 1)
        });
        if complete {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Holds the view against Binance's record: every due id once, exact values, nothing else.
/// `Err` lists what is wrong (missing ranges, extra or differing rows).
/// It reads Binance's record over historicalTrades (weight 25 a page of 1,000; a soak's million
/// trades is ~27,500 weight, above the simulator's 6,000 a minute), so it lifts the simulator's
/// weight limit: every caller has stopped the producer, so nothing measured depends on it.
async fn check(w: &Warehouse, market: &str, sim: &SimApi, due: &Due) -> Result<usize, Vec<String>> {
    sim.faults(json!({"weight_limit": 100_000_000})).await;
    let rows = view_rows(w, market).await;
    let mut problems = Vec::new();
    let mut total = 0;
    for (symbol, (first, last)) in due {
        let got: Vec<&Row> = rows.iter().filter(|r| &r.symbol == symbol).collect();
        let hi = got.last().map_or(*last, |r| r.trade_id.max(*last));
        let want = sim.trades(symbol, *first, hi).await;
        let mut missing = IdSet::new();
        let (mut i, mut j) = (0, 0);
        while i < want.len() || j < got.len() {
            match (want.get(i), got.get(j)) {
                (Some(a), Some(b)) if a.trade_id == b.trade_id => {
                    if a != *b {
                        problems.push(format!(
                            "{symbol} {}: landed {b:?}, Binance has {a:?}",
                            a.trade_id
                        ));
                    }
                    i += 1;
                    j += 1;
                }
                (Some(a), b) if b.is_none_or(|b| a.trade_id < b.trade_id) => {
                    missing.insert(a.trade_id);
                    i += 1;
                }
                (_, Some(b)) => {
                    problems.push(format!(
                        "{symbol} {}: landed but not due (or twice)",
                        b.trade_id
                    ));
                    j += 1;
                }
                _ => unreachable!(),
            }
        }
        if got.windows(2).any(|p| p[0].trade_id == p[1].trade_id) {
            problems.push(format!("{symbol}: an id appears twice in the view"));
        }
        if !missing.is_empty() {
            problems.push(format!(
                "{symbol}: {} of {} due trades missing, ranges {:?}",
                missing.len(),
                want.len(),
                missing.ranges().take(10).collect::<Vec<_>>()
            ));
        }
        total += got.len();
    }
    if problems.is_empty() {
        Ok(total)
    } else {
        Err(problems)
    }
}

fn warehouse_target(bq: &BigQueryEmulator) -> GcpTarget {
    GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: None,
        bigquery_endpoint: Some(bq.rest_endpoint.clone()),
        bigquery_grpc_endpoint: Some(bq.grpc_endpoint.clone()),
    }
}

/// Total of one counter over the simulator's connections, e.g. missed trades by reason.
fn missed_by(truth: &Value, reason: &str) -> i64 {
    truth["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["symbols"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
        })
        .filter_map(|s| s["missed_by_reason"][reason].as_i64())
        .sum()
}

/// How many connections ended for each reason.
fn close_reasons(truth: &Value) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in truth["connections"].as_array().unwrap() {
        let reason = c["close_reason"].as_str().unwrap_or("open").to_owned();
        *out.entry(reason).or_insert(0) += 1;
    }
    out
}

/// Peak resident memory (KiB) per process name, sampled every second from /proc while the
/// test runs; processes are added as they start (a replaced consumer keeps its name).
#[derive(Clone, Default)]
struct RssPeaks(std::sync::Arc<std::sync::Mutex<Watched>>);

/// The processes watched (name, pid) and the peak seen per name.
type Watched = (Vec<(String, u32)>, BTreeMap<String, u64>);

impl RssPeaks {
    fn watch(&self, p: &Proc) {
        self.0
            .lock()
            .unwrap()
            .0
            .push((p.name.clone(), p.child.id()));
    }

    fn start(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut g = me.0.lock().unwrap();
                let (procs, peaks) = &mut *g;
                for (name, pid) in procs.iter() {
                    let kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(|s| {
                            s.lines()
                                .find_map(|l| l.strip_prefix("VmRSS:"))
                                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                        })
                        .unwrap_or(0);
                    let peak = peaks.entry(name.clone()).or_insert(0);
                    *peak = (*peak).max(kib);
                }
            }
        });
    }

    fn peaks(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().1.clone()
    }
}

async fn sleep_until(start: Instant, at_secs: f64) {
    tokio::time::sleep_until((start + Duration::from_secs_f64(at_secs)).into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_chaos_the_trades_view_holds_every_due_trade_once_with_exact_values() {
    let secs: f64 = std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100.0);
    let pubsub = shared().pubsub.clone();
    let bq = tokio::task::spawn_blocking(BigQueryEmulator::start)
        .await
        .unwrap();
    let bq_pid = bq.pid().expect("this test's own bqemulator") as i32;
    let n = Names::new();
    let rate = std::env::var("CHAOS_RATE_MULTIPLIER").unwrap_or_else(|_| "1".into());
    let max_rss_mib: u64 = std::env::var("CHAOS_MAX_RSS_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    // 1% of frames at x1, the same number a second at a higher multiplier.
    let malformed = std::env::var("CHAOS_MALFORMED_RATIO").unwrap_or_else(|_| {
        (0.01
            / rate
                .parse::<f64>()
                .expect("CHAOS_RATE_MULTIPLIER is a number"))
        .to_string()
    });
    let rss = RssPeaks::default();
    rss.start();
    let (mut sim_proc, sim_addr) = start_sim(&[
        "--max-connection-age-secs",
        "25",
        "--shutdown-grace-secs",
        "5",
        "--malformed-ratio",
        &malformed,
        "--drop-random-every-secs",
        "17",
        "--rate-multiplier",
        &rate,
    ]);
    let sim = SimApi::new(&sim_addr);
    let mut consumer = Proc::spawn("consumer", &consumer_args(&pubsub, &bq, &n, &[]));
    rss.watch(&consumer);
    // The consumer creates the subscriptions before the producer publishes anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    consumer.assert_alive();
    let mut producer = Proc::spawn("producer", &producer_args(&pubsub, &sim_addr, &n));
    rss.watch(&producer);
    let start = Instant::now();

    // A timeline of faults, scaled to `secs` (100 by default).
    let at = |f: f64| sleep_until(start, f * secs / 100.0);
    at(10.0).await;
    sim.faults(json!({"stall": {"with_pings": false, "duration_secs": 12.0}}))
        .await;
    at(28.0).await;
    sim.faults(json!({"server_shutdown_now": true})).await;
    at(38.0).await;
    // A 429 storm: the weight limit falls below one historicalTrades call (weight 25) while every
    // connection drops, so every gap must wait out Retry-After.
    sim.faults(json!({"weight_limit": 20, "drop_all_now": true}))
        .await;
    at(45.0).await;
    consumer.kill();
    at(50.0).await;
    consumer = Proc::spawn("consumer", &consumer_args(&pubsub, &bq, &n, &[]));
    rss.watch(&consumer);
    at(55.0).await;
    sim.faults(json!({"weight_limit": 0})).await;
    producer.assert_alive();
    consumer.assert_alive();
    at(62.0).await;
    // SAFETY: kill(2) on the process group of our own bqemulator.
    unsafe { libc::kill(-bq_pid, libc::SIGSTOP) };
    at(72.0).await;
    unsafe { libc::kill(-bq_pid, libc::SIGCONT) };
    at(100.0).await;
    sim.faults(json!({"clear": true})).await;

    // Stop the producer: it flushes what it holds. Everything produced before this was due.
    let due = stop_the_producer(&mut producer, &sim, &n).await;

    eprintln!("chaos: producer stopped after {:?}", start.elapsed());
    let w = Warehouse::connect(&warehouse_target(&bq)).await.unwrap();
    // The consumer catches up at the emulator's pull rate (~1,900 messages/s).
    let due_total: i64 = due.values().map(|(a, b)| b - a + 1).sum();
    let wait = Duration::from_secs(150 + (due_total / 1_000) as u64);
    wait_until_complete(&w, &n.market, &due, wait).await;
    eprintln!(
        "chaos: view complete (or waited enough) after {:?}",
        start.elapsed()
    );
    let peaks = rss.peaks();
    let status = consumer.stop(Duration::from_secs(30));
    assert!(
        status.success(),
        "consumer exited {status}: {}",
        consumer.tail()
    );

    // The faults really happened (otherwise this test proves nothing).
    let truth = sim.ground_truth().await;
    let connections = truth["connections"].as_array().unwrap().len();
    let closes = close_reasons(&truth);
    // `serverShutdown` and rotations end as "client closed": the producer closes the old
    // connection itself once the new one has caught up (make-before-break).
    for reason in ["dropped", "client closed"] {
        assert!(
            closes.keys().any(|k| k.starts_with(reason)),
            "no connection ended by {reason}: {closes:?}"
        );
    }
    for reason in ["malformed", "stall"] {
        assert!(missed_by(&truth, reason) > 0, "no trade missed by {reason}");
    }
    let backfilled = w
        .query(&format!(
            "SELECT COUNT(*) AS n FROM `{PROJECT}.{}.trades` WHERE source = 'backfill'",
            n.market
        ))
        .await
        .unwrap()[0]
        .get::<i64>("n")
        .unwrap();
    assert!(backfilled > 0, "no trade came from the backfill");

    match check(&w, &n.market, &sim, &due).await {
        Ok(rows) => {
            assert!(rows as i64 >= due_total);
            eprintln!(
                "chaos: {rows} trades landed, every due id once with exact values, \
                 {backfilled} of them backfilled; {connections} connections ended by {closes:?}; \
                 trades missed on the wire: malformed {}, stall {}; peak RSS KiB {peaks:?}",
                missed_by(&truth, "malformed"),
                missed_by(&truth, "stall"),
            );
        }
        Err(problems) => panic!(
            "the trades view does not match Binance:\n{}\nproducer log: {}\nconsumer log: {}",
            problems.join("\n"),
            producer.log.display(),
            consumer.log.display()
        ),
    }
    let gaps = w
        .query(&format!(
            "SELECT COUNT(*) AS n FROM `{PROJECT}.{}.gaps`",
            n.market
        ))
        .await
        .unwrap()[0]
        .get::<i64>("n")
        .unwrap();
    assert_eq!(gaps, 0, "every gap was fillable, yet gap records landed");
    for (name, kib) in &peaks {
        assert!(
            *kib <= max_rss_mib * 1024,
            "{name} peaked at {kib} KiB, above CHAOS_MAX_RSS_MIB={max_rss_mib}"
        );
    }
    sim_proc.stop(Duration::from_secs(10));
}

/// Stops the producer (SIGTERM: it flushes what it holds; it must exit 0) and returns what it
/// was due: from its start id to the last trade the exchange had made just before the stop.
async fn stop_the_producer(producer: &mut Proc, sim: &SimApi, n: &Names) -> Due {
    let truth = sim.ground_truth().await;
    let starts = producer_starts(n.producer_metrics).await;
    // Let the frames of the trades in that snapshot cross the socket before reading stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = producer.stop(Duration::from_secs(40));
    assert!(
        status.success(),
        "producer exited {status}: {}",
        producer.tail()
    );
    due_from(&truth, &starts)
}

/// A consumer started with `first_flags` is SIGKILLed 10 s into trading, with a batch held (rows
/// wait up to 30 s), and replaced by a normal one; trading goes on for `after_kill`. Returns
/// the check's verdict and the replacement's log.
async fn kill_and_replace_the_consumer(
    first_flags: &[&str],
    after_kill: Duration,
    wait: Duration,
) -> (Result<usize, Vec<String>>, PathBuf) {
    let pubsub = shared().pubsub.clone();
    let bq = tokio::task::spawn_blocking(BigQueryEmulator::start)
        .await
        .unwrap();
    let n = Names::new();
    let (_sim_proc, sim_addr) = start_sim(&[]);
    let sim = SimApi::new(&sim_addr);
    let mut flags = vec!["--batch-max-age=30s", "--batch-max-rows=4000"];
    flags.extend_from_slice(first_flags);
    let mut consumer = Proc::spawn("consumer", &consumer_args(&pubsub, &bq, &n, &flags));
    tokio::time::sleep(Duration::from_secs(3)).await;
    consumer.assert_alive();
    let mut producer = Proc::spawn("producer", &producer_args(&pubsub, &sim_addr, &n));
    tokio::time::sleep(Duration::from_secs(10)).await;
    producer.assert_alive();
    consumer.kill();
    let mut consumer = Proc::spawn("consumer", &consumer_args(&pubsub, &bq, &n, &[]));
    tokio::time::sleep(after_kill).await;
    let due = stop_the_producer(&mut producer, &sim, &n).await;
    let w = Warehouse::connect(&warehouse_target(&bq)).await.unwrap();
    wait_until_complete(&w, &n.market, &due, wait).await;
    assert!(consumer.stop(Duration::from_secs(30)).success());
    (check(&w, &n.market, &sim, &due).await, consumer.log.clone())
}

/// The check above must be able to fail: a consumer that acks trades on receipt and is killed
/// with a batch held loses them, and the check says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_check_finds_the_loss_of_a_consumer_that_acks_before_appending() {
    let (verdict, _) = kill_and_replace_the_consumer(
        &["--unsafe-ack-on-receipt"],
        Duration::from_secs(5),
        Duration::from_secs(15),
    )
    .await;
    let problems =
        verdict.expect_err("acking before the append lost nothing: the check cannot see a loss");
    assert!(
        problems.iter().any(|p| p.contains("missing")),
        "{problems:?}"
    );
    eprintln!("ack-before-append, as the check reports it: {problems:?}");
}

/// The same kill with the real consumer: nothing is lost, because nothing was acked before
/// BigQuery had it; the killed consumer's messages come back when their leases lapse (trading
/// goes on past them: the emulator redelivers expired messages slowly once publishing stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_batch_and_restarted_loses_nothing() {
    let (verdict, log) =
        kill_and_replace_the_consumer(&[], Duration::from_secs(20), Duration::from_secs(150)).await;
    if let Err(problems) = verdict {
        panic!("{problems:?}\nconsumer log: {}", log.display());
    }
}

/// Pub/Sub itself stops answering for 12 s (its process frozen with SIGSTOP): the producer's
/// publishes and the consumer's pulls and acks hang or fail, and both carry on afterwards.
/// Nothing is lost (the producer keeps what it has not seen acknowledged, the consumer acks only
/// after BigQuery), and whatever comes twice is kept once by the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_pubsub_delays_the_pipeline_and_loses_nothing() {
    let pubsub = tokio::task::spawn_blocking(PubsubEmulator::start)
        .await
        .unwrap();
    let pubsub_pid = pubsub.pid().expect("this test's own Pub/Sub emulator") as i32;
    let bq = tokio::task::spawn_blocking(BigQueryEmulator::start)
        .await
        .unwrap();
    let n = Names::new();
    let (_sim_proc, sim_addr) = start_sim(&[]);
    let sim = SimApi::new(&sim_addr);
    let mut consumer = Proc::spawn(
        "consumer",
        &consumer_args(&pubsub.endpoint, &bq, &n, &["--batch-max-age=1s"]),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    consumer.assert_alive();
    let mut producer = Proc::spawn("producer", &producer_args(&pubsub.endpoint, &sim_addr, &n));
    let w = Warehouse::connect(&warehouse_target(&bq)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;

    // SAFETY: kill(2) on the process group of our own emulator.
    unsafe { libc::kill(-pubsub_pid, libc::SIGSTOP) };
    // Whatever was in flight lands within a few seconds; after that nothing can.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let frozen_at = landed(&w, &n.market).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still = landed(&w, &n.market).await;
    unsafe { libc::kill(-pubsub_pid, libc::SIGCONT) };
    assert_eq!(
        frozen_at, still,
        "rows landed while Pub/Sub was frozen: no freeze happened"
    );

    tokio::time::sleep(Duration::from_secs(15)).await;
    producer.assert_alive();
    consumer.assert_alive();
    let due = stop_the_producer(&mut producer, &sim, &n).await;
    wait_until_complete(&w, &n.market, &due, Duration::from_secs(120)).await;
    assert!(consumer.stop(Duration::from_secs(30)).success());
    match check(&w, &n.market, &sim, &due).await {
        Ok(rows) => eprintln!("pubsub freeze: {rows} trades landed, every due id once"),
        Err(problems) => panic!(
            "{}\nproducer log: {}\nconsumer log: {}",
            problems.join("\n"),
            producer.log.display(),
            consumer.log.display()
        ),
    }
}
