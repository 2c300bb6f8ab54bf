//! What the producer's end-to-end tests share: a simulator and topics per test, the producer
//! started through its real command line, draining the topics, and the check against the
//! simulator's ground truth (see `against_sim.rs` for the rules).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use binance_sim::{GroundTruth, Sim, SimConfig, SimHandle};
use clap::Parser as _;
use gcp::GcpTarget;
use gcp::pubsub::{self, Admin, SubscriptionSpec};
use pipeline_tests::{PROJECT, producer_start_ids, shared, unique_name};
use producer::config::Cli;
use producer::{RunReport, Running, Settings};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use trade_proto::{Gap, Trade};

/// Log lines of every producer in this process (to check what the REST client saw).
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || LogWriter(buf.clone())
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_writer(writer)
            .with_ansi(false)
            .try_init();
        buf
    })
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

pub struct Env {
    pub sim: SimHandle,
    pub target: GcpTarget,
    pub trade_topic: String,
    pub gap_topic: String,
    pub trade_sub: String,
    pub gap_sub: String,
}

pub async fn env(config: SimConfig) -> Env {
    env_on(config, &shared().pubsub).await
}

/// A simulator and fresh topics on the Pub/Sub emulator at `pubsub` (e.g. one of the test's
/// own, to freeze it).
pub async fn env_on(config: SimConfig, pubsub: &str) -> Env {
    logs();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(pubsub.to_owned()),
        bigquery_endpoint: None,
        bigquery_grpc_endpoint: None,
    };
    let (trade_topic, gap_topic) = (unique_name("trades"), unique_name("gaps"));
    let (trade_sub, gap_sub) = (unique_name("trades_sub"), unique_name("gaps_sub"));
    let admin = Admin::connect(&target).await.unwrap();
    let spec = SubscriptionSpec {
        ordering: false,
        ..SubscriptionSpec::default()
    };
    admin.ensure_topic(&trade_topic).await.unwrap();
    admin.ensure_topic(&gap_topic).await.unwrap();
    admin
        .ensure_subscription(&trade_sub, &trade_topic, &spec)
        .await
        .unwrap();
    admin
        .ensure_subscription(&gap_sub, &gap_topic, &spec)
        .await
        .unwrap();
    let sim = Sim::start(config, "127.0.0.1:0").await.unwrap();
    Env {
        sim,
        target,
        trade_topic,
        gap_topic,
        trade_sub,
        gap_sub,
    }
}

impl Env {
    /// Settings through the real command line, plus test-sized tuning `extra`.
    pub fn settings(&self, extra: &[&str]) -> Settings {
        let ws = self.sim.ws_base_url();
        let rest = self.sim.rest_base_url();
        let mut args = vec![
            "producer",
            "--project",
            PROJECT,
            "--pubsub-endpoint",
            self.target.pubsub_endpoint.as_deref().unwrap(),
            "--trade-topic",
            &self.trade_topic,
            "--gap-topic",
            &self.gap_topic,
            "--ws-url",
            &ws,
            "--rest-url",
            &rest,
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        // Test-sized defaults, unless `extra` sets the flag itself.
        let defaults = [
            ("--gap-grace", "500ms"),
            ("--quiet-grace", "1s"),
            ("--reconnect-min", "50ms"),
            ("--reconnect-max", "1s"),
            ("--shutdown-deadline", "10s"),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        let cli = Cli::try_parse_from(args).unwrap();
        Settings::from_args(&cli.run).unwrap()
    }

    pub async fn start(&self, extra: &[&str]) -> (Running, CancellationToken) {
        let stop = CancellationToken::new();
        let running = producer::start(self.settings(extra), stop.clone())
            .await
            .unwrap();
        (running, stop)
    }
}

/// Pulls every message until the subscription stays quiet for `quiet`.
pub async fn drain(
    target: &GcpTarget,
    sub: &str,
    quiet: Duration,
) -> Vec<(Vec<u8>, BTreeMap<String, String>, String)> {
    let subscriber = pubsub::subscriber(target).await.unwrap();
    let mut stream = subscriber
        .subscribe(pubsub::subscription_path(PROJECT, sub))
        .build();
    let mut out = Vec::new();
    while let Ok(next) = tokio::time::timeout(quiet, stream.next()).await {
        let Some(next) = next else { break };
        let (msg, handler) = next.expect("pull");
        handler.ack();
        out.push((
            msg.data.to_vec(),
            msg.attributes.into_iter().collect(),
            msg.ordering_key,
        ));
    }
    out
}

pub struct Drained {
    pub trades: Vec<Trade>,
    pub gaps: Vec<Gap>,
}

pub async fn drain_all(e: &Env) -> Drained {
    let raw = drain(&e.target, &e.trade_sub, Duration::from_secs(4)).await;
    let mut trades = Vec::new();
    for (data, attrs, key) in raw {
        let t = Trade::decode(data.as_slice()).unwrap();
        t.validate().unwrap();
        assert_eq!(attrs.get("symbol"), Some(&t.symbol));
        assert_eq!(attrs.get("source"), Some(&t.source));
        assert_eq!(key, t.symbol, "ordering key = symbol");
        trades.push(t);
    }
    let gaps = drain(&e.target, &e.gap_sub, Duration::from_secs(2))
        .await
        .into_iter()
        .map(|(d, _, _)| Gap::decode(d.as_slice()).unwrap())
        .collect();
    Drained { trades, gaps }
}

/// A simulator tape id (`u64`) as the contract types it.
fn contract_id(id: u64) -> i64 {
    i64::try_from(id).expect("tape ids fit in i64")
}

/// Runs the checks described in the module documentation; returns trades per source.
/// Trades produced since the first connection that no connection received intact: outside
/// every connection's delivered span, or inside it but missed.
pub fn not_delivered(truth: &GroundTruth) -> u64 {
    let mut total = 0;
    for (symbol, s) in &truth.symbols {
        let mut delivered = trade_proto::ids::IdSet::new();
        let mut start = None;
        for c in &truth.connections {
            let Some(cs) = c.symbols.get(symbol) else {
                continue;
            };
            // An open connection delivered up to its next id; a closed one up to its last.
            let end = cs
                .next_expected_id
                .map(|next| next.checked_sub(1))
                .unwrap_or(cs.last_delivered_id);
            if let (Some(from), Some(end)) = (cs.first_expected_id, end)
                && end >= from
            {
                start = Some(start.map_or(from, |s: u64| s.min(from)));
                delivered.insert_range(contract_id(from), contract_id(end));
                for id in cs.missed.ids() {
                    delivered.remove(id);
                }
            }
        }
        if let (Some(start), Some(last)) = (start, s.last_id) {
            total += (last + 1 - start) - delivered.len();
        }
    }
    total
}

/// Reads the producer's start ids (call before the stop).
pub async fn starts_of(r: &Running) -> BTreeMap<String, i64> {
    let (_, metrics) = http_get(r.metrics_addr, "/metrics").await;
    producer_start_ids(&metrics)
}

/// Trades per source; backfilled trades below the first connection's first id (the start of
/// the run, filled from the exchange's latest id at start) count as "backfill_at_start".
pub fn check_against_truth(
    d: &Drained,
    first: &GroundTruth,
    before_stop: &GroundTruth,
    starts: &BTreeMap<String, i64>,
) -> BTreeMap<String, u64> {
    let first_conn = &first.connections[0];
    let mut by_source = BTreeMap::new();
    for t in &d.trades {
        let expected_first = first_conn.symbols[&t.symbol]
            .first_expected_id
            .expect("first connection subscribed") as i64;
        let key = if t.source == "backfill" && t.trade_id < expected_first {
            "backfill_at_start".to_owned()
        } else {
            t.source.clone()
        };
        *by_source.entry(key).or_insert(0) += 1;
    }
    for (symbol, truth) in &before_stop.symbols {
        let ids: Vec<i64> = d
            .trades
            .iter()
            .filter(|t| &t.symbol == symbol)
            .map(|t| t.trade_id)
            .collect();
        let set: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(set.len(), ids.len(), "{symbol}: duplicates on the topic");
        let mut all = set.clone();
        for g in d.gaps.iter().filter(|g| &g.symbol == symbol) {
            for id in g.from_id..=g.to_id {
                assert!(
                    all.insert(id),
                    "{symbol}: id {id} both published and in a gap record"
                );
            }
        }
        let (Some(&min), Some(&max)) = (all.first(), all.last()) else {
            panic!("{symbol}: nothing published");
        };
        assert_eq!(
            all.len() as i64,
            max - min + 1,
            "{symbol}: ids {min}..={max} are not contiguous: {} missing",
            max - min + 1 - all.len() as i64
        );
        let expected_first = first_conn.symbols[symbol]
            .first_expected_id
            .expect("first connection subscribed") as i64;
        let start = starts[symbol];
        assert_eq!(
            min, start,
            "{symbol}: the topic starts at {min}, the producer accounts from {start}"
        );
        assert!(
            start <= expected_first,
            "{symbol}: the producer accounts from {start}, after the first connection's first trade {expected_first}"
        );
        let last = truth.last_id.expect("the simulator produced trades") as i64;
        assert!(
            max >= last,
            "{symbol}: ends at {max}, the simulator was at {last} before the stop"
        );
    }
    by_source
}

pub async fn stop(running: Running, stop: CancellationToken) -> RunReport {
    // Let the frames of the trades in the last ground-truth snapshot cross the socket: a stop
    // ends reading, and what is still in flight then is not this run's to publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("stops within the deadline")
        .expect("clean stop");
    assert!(report.unpublished.is_empty(), "{:?}", report.unpublished);
    report
}

pub async fn wait_connected(r: &Running) {
    for _ in 0..100 {
        if r.health.ready().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not ready within 10 s: {:?}", r.health.ready());
}

pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
