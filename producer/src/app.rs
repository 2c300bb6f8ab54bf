//! Wiring and the hub: settings validated from the command line, the tasks, and the one loop
//! that owns the state (the binary's edge, so errors are `anyhow` with context).
//!
//! Tasks and channels (all bounded; backfill requests by `MAX_BACKFILL_IN_FLIGHT`):
//!
//! ```text
//!  connection tasks --ConnEvent--> hub --Outgoing(trade)--> trade publisher --> Pub/Sub trades
//!  (1, 2 in overlap)               | ^ \--Outgoing(gap)---> gap publisher   --> Pub/Sub gaps
//!                   BackfillRequest v | BackfillResult
//!                               backfill task (REST)
//! ```
//!
//! The hub runs the pure parts: the [`Supervisor`] (which connections exist), the [`Merger`]
//! (continuity per symbol, gaps), and turns their answers into commands, messages and metrics.
//!
//! Shutdown (SIGTERM/Ctrl-C cancel the token given to [`run`]): the hub stops the connections
//! (no new reads), handles every frame already read, writes `Gap` records (reason
//! `producer_shutdown`) for gaps it had not filled yet, and closes the queues; the publishers
//! flush within `shutdown_deadline`; whatever is still unpublished then is logged per symbol and
//! returned in the [`RunReport`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use binance::TimeUnit;
use binance::continuity::{IdRange, Verdict};
use binance::rest::{BanPolicy, RestClient, RestConfig};
use bytes::Bytes;
use gcp::GcpTarget;
use gcp::pubsub::{Admin, Batching};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use trade_proto::{Gap, Source, Trade};

use crate::backfill::{BackfillConfig, BackfillRequest, BackfillResult, Outcome, run_backfill};
use crate::config::RunArgs;
use crate::connection::{ConnEvent, ConnectionSpec, run_connection, stream_url};
use crate::merger::Merger;
use crate::metrics::{Health, Metrics};
use crate::publisher::{
    Kind, Outgoing, PublishReport, PublisherConfig, PubsubSink, now_us, run_publisher,
};
use crate::reconnect::{AttemptBudget, BINANCE_ATTEMPT_WINDOW, BINANCE_MAX_ATTEMPTS};
use crate::resume::{self, Ledger, StartPoint};
use crate::rotation::OverlapConfig;
use crate::supervisor::{Command, ConnId, Supervisor, SupervisorConfig};
use crate::watchdog::WatchdogConfig;

/// Capacity of the connection-to-hub channel (frames): a short buffer, the queue is the real one.
const EVENT_CHANNEL: usize = 4_096;
/// How often the hub checks rotation, the watchdog and due backfills.
const TICK: Duration = Duration::from_millis(200);
/// Backfill chunks requested and not answered at most: the rest of a gap is cut later.
const MAX_BACKFILL_IN_FLIGHT: usize = 8;
/// Longest wait before a failed chunk is asked for again, in multiples of the first.
const BACKFILL_RETRY_MAX_FACTOR: u32 = 20;

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Project and emulator endpoint.
    pub target: GcpTarget,
    /// Trade topic (short name).
    pub trade_topic: String,
    /// Gap topic (short name).
    pub gap_topic: String,
    /// Create the topics first.
    pub create_topics: bool,
    /// Upper-case symbols.
    pub symbols: Vec<String>,
    /// Websocket base URL.
    pub ws_url: String,
    /// REST base URL.
    pub rest_url: String,
    /// Metrics server address (`127.0.0.1:0` in tests).
    pub metrics_addr: String,
    /// Pub/Sub client batching.
    pub batching: Batching,
    /// Trade queue capacity.
    pub queue_size: usize,
    /// Publisher task settings.
    pub publisher: PublisherConfig,
    /// Connection state machine settings.
    pub supervisor: SupervisorConfig,
    /// Wait before backfilling a gap.
    pub gap_grace: Duration,
    /// Longest 418 ban sat out during backfill.
    pub max_ban_wait: Duration,
    /// First wait before a chunk that failed for a passing reason is fetched again.
    pub backfill_retry: Duration,
    /// Backfill rounds for passing troubles.
    pub backfill: BackfillConfig,
    /// Reconnect backoff floor.
    pub reconnect_min: Duration,
    /// Reconnect backoff cap.
    pub reconnect_max: Duration,
    /// Websocket handshake timeout.
    pub connect_timeout: Duration,
    /// Shortest time between two reads of a socket that found nothing waiting.
    pub read_coalesce: Duration,
    /// Connection attempts per 5 minutes.
    pub max_attempts: u32,
    /// Flush deadline at shutdown.
    pub shutdown_deadline: Duration,
    /// Resume-point state file (None: each run starts at the exchange's latest id).
    pub state_file: Option<PathBuf>,
    /// How often the state file is rewritten.
    pub state_interval: Duration,
    /// Most ids backfilled per symbol after a restart.
    pub max_resume_ids: u64,
}

impl Settings {
    /// Validates the command line; the error names the setting.
    pub fn from_args(a: &RunArgs) -> anyhow::Result<Self> {
        let project = a
            .project
            .clone()
            .filter(|p| !p.trim().is_empty())
            .context("GCP_PROJECT (--project) is required: the project that owns the topics")?;
        let mut symbols = Vec::new();
        for raw in &a.symbols {
            let s = raw.trim().to_ascii_uppercase();
            if s.is_empty() {
                continue;
            }
            if s.len() > 20
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            {
                bail!(
                    "SYMBOLS (--symbols): {raw:?} is not a Binance symbol (^[A-Z0-9-_.]{{1,20}}$)"
                );
            }
            if !symbols.contains(&s) {
                symbols.push(s);
            }
        }
        if symbols.is_empty() {
            bail!("SYMBOLS (--symbols): at least one symbol is needed");
        }
        // Binance: at most 1024 streams per connection.
        if symbols.len() > 1024 {
            bail!("SYMBOLS (--symbols): at most 1024 streams per Binance connection");
        }
        if !(a.ws_url.starts_with("wss://") || a.ws_url.starts_with("ws://")) {
            bail!(
                "BINANCE_WS_URL (--ws-url): {:?} must start with wss:// or ws://",
                a.ws_url
            );
        }
        if !(a.rest_url.starts_with("https://") || a.rest_url.starts_with("http://")) {
            bail!(
                "BINANCE_REST_URL (--rest-url): {:?} must start with https:// or http://",
                a.rest_url
            );
        }
        if a.rest_url.contains("data-api.binance.vision") {
            bail!(
                "BINANCE_REST_URL (--rest-url): data-api.binance.vision does not serve historicalTrades, which backfill needs; use https://api.binance.com (or api1..api4, api-gcp)"
            );
        }
        // Pub/Sub: at most 1000 messages and 10 MB per publish request.
        if a.batch_messages == 0 || a.batch_messages > 1000 {
            bail!(
                "PRODUCER_BATCH_MESSAGES (--batch-messages): {} must be within 1..=1000 (Pub/Sub limit)",
                a.batch_messages
            );
        }
        if a.batch_bytes == 0 || a.batch_bytes > 10_000_000 {
            bail!(
                "PRODUCER_BATCH_BYTES (--batch-bytes): {} must be within 1..=10000000 (Pub/Sub limit)",
                a.batch_bytes
            );
        }
        if a.queue_size == 0 || a.max_in_flight == 0 {
            bail!("PRODUCER_QUEUE_SIZE and PRODUCER_MAX_IN_FLIGHT must be at least 1");
        }
        if a.max_attempts == 0 || a.max_attempts > BINANCE_MAX_ATTEMPTS {
            bail!(
                "PRODUCER_MAX_ATTEMPTS (--max-attempts): {} must be within 1..={BINANCE_MAX_ATTEMPTS} (Binance's limit per 5 minutes)",
                a.max_attempts
            );
        }
        if a.state_interval.is_zero() {
            bail!("PRODUCER_STATE_INTERVAL (--state-interval): must be above zero");
        }
        if a.max_resume_ids == 0 {
            bail!(
                "PRODUCER_MAX_RESUME_IDS (--max-resume-ids): must be at least 1 (unset PRODUCER_STATE_FILE to not resume)"
            );
        }
        if a.rotate_after.is_zero() || a.rotate_after >= Duration::from_secs(24 * 3600) {
            bail!(
                "PRODUCER_ROTATE_AFTER (--rotate-after): {:?} must be above zero and below Binance's 24h cut",
                a.rotate_after
            );
        }
        Ok(Self {
            target: GcpTarget {
                project,
                pubsub_endpoint: a.pubsub_endpoint.clone().filter(|e| !e.is_empty()),
                bigquery_endpoint: None,
                bigquery_grpc_endpoint: None,
            },
            trade_topic: a.trade_topic.clone(),
            gap_topic: a.gap_topic.clone(),
            create_topics: a.create_topics,
            symbols,
            ws_url: a.ws_url.clone(),
            rest_url: a.rest_url.clone(),
            metrics_addr: a.metrics_addr.clone(),
            batching: Batching {
                max_messages: a.batch_messages,
                max_bytes: a.batch_bytes,
                max_delay: a.batch_delay,
            },
            queue_size: a.queue_size,
            publisher: PublisherConfig {
                max_in_flight: a.max_in_flight,
                ..PublisherConfig::default()
            },
            supervisor: SupervisorConfig {
                rotate_after: a.rotate_after,
                overlap: OverlapConfig {
                    quiet_grace: a.quiet_grace,
                    max_overlap: a.max_overlap,
                },
                watchdog: WatchdogConfig {
                    silence: a.watchdog_silence,
                    socket_timeout: a.socket_timeout,
                },
            },
            gap_grace: a.gap_grace,
            max_ban_wait: a.max_ban_wait,
            backfill_retry: a.backfill_retry,
            backfill: BackfillConfig::default(),
            reconnect_min: a.reconnect_min,
            reconnect_max: a.reconnect_max,
            connect_timeout: Duration::from_secs(10),
            read_coalesce: a.read_coalesce,
            max_attempts: a.max_attempts,
            shutdown_deadline: a.shutdown_deadline,
            state_file: a
                .state_file
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            state_interval: a.state_interval,
            max_resume_ids: a.max_resume_ids,
        })
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Trades acknowledged by Pub/Sub.
    pub trades_published: u64,
    /// Gap records acknowledged by Pub/Sub.
    pub gaps_published: u64,
    /// Trade ids not published at exit, per symbol, as ranges.
    pub unpublished: BTreeMap<String, Vec<IdRange>>,
}

/// A running producer, for tests and the binary.
pub struct Running {
    /// The bound metrics address.
    pub metrics_addr: std::net::SocketAddr,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub health: Arc<Health>,
    task: tokio::task::JoinHandle<anyhow::Result<RunReport>>,
}

impl Running {
    /// Waits for the run to end (after `shutdown` was cancelled, or on a fatal error).
    pub async fn wait(self) -> anyhow::Result<RunReport> {
        self.task.await.context("the producer task panicked")?
    }
}

/// Starts the producer; it runs until `shutdown` is cancelled or a fatal error.
pub async fn start(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let settings = Arc::new(settings);
    let metrics = Arc::new(Metrics::new(&settings.symbols));
    let saved = load_state(&settings, &metrics);
    let health = Arc::new(Health::default());
    if settings.create_topics {
        let admin = Admin::connect(&settings.target)
            .await
            .context("connecting the Pub/Sub admin client")?;
        for topic in [&settings.trade_topic, &settings.gap_topic] {
            admin
                .ensure_topic(topic)
                .await
                .with_context(|| format!("creating topic {topic}"))?;
        }
    }
    let server_stop = CancellationToken::new();
    let (metrics_addr, server) = crate::metrics::serve(
        &settings.metrics_addr,
        metrics.clone(),
        health.clone(),
        server_stop.clone(),
    )
    .await
    .with_context(|| format!("binding METRICS_ADDR {}", settings.metrics_addr))?;
    tracing::info!(%metrics_addr, "serving /metrics and /healthz");
    let trade_pub =
        gcp::pubsub::publisher(&settings.target, &settings.trade_topic, settings.batching)
            .await
            .context("building the trade publisher")?;
    let gap_pub =
        gcp::pubsub::publisher(&settings.target, &settings.gap_topic, Batching::default())
            .await
            .context("building the gap publisher")?;
    let rest = RestClient::new(RestConfig {
        base_url: settings.rest_url.clone(),
        ban_policy: BanPolicy::WaitUpTo(settings.max_ban_wait),
        time_unit: TimeUnit::Microsecond,
        ..RestConfig::default()
    })
    .context("BINANCE_REST_URL")?;
    let m = metrics.clone();
    let h = health.clone();
    let task = tokio::spawn(async move {
        let r = run_tasks(settings, saved, rest, trade_pub, gap_pub, m, h, shutdown).await;
        server_stop.cancel();
        let _ = server.await;
        r
    });
    Ok(Running {
        metrics_addr,
        metrics,
        health,
        task,
    })
}

/// Runs the producer until `shutdown`; the binary's whole job.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<RunReport> {
    start(settings, shutdown).await?.wait().await
}

/// Reads the state file, and tries a write now rather than at the first save.
///
/// Nothing here stops the start: a producer that cannot resume still publishes every trade it
/// sees, while one that refuses to start publishes none. So a file that is not a state file is
/// set aside (renamed `<file>.corrupt-<unix seconds>`, kept for inspection) and the run starts
/// as without one, at the exchange's latest id; the trades of the downtime before it are then
/// recovered by the daily reconciliation (`batch reconcile`), see producer/README.md. A disk
/// that cannot be written (full, read-only) is logged and counted; saves are retried.
fn load_state(settings: &Settings, metrics: &Metrics) -> BTreeMap<String, i64> {
    let Some(path) = &settings.state_file else {
        return BTreeMap::new();
    };
    let saved = match resume::load(path) {
        Ok(state) => state.map(|s| s.resume_after).unwrap_or_default(),
        Err(e @ resume::StateError::Invalid { .. }) => {
            metrics.state_file_set_aside.inc();
            match resume::set_aside(path, now_us() / 1_000_000) {
                Ok(kept) => {
                    tracing::error!(error = %e, kept = %kept.display(), "PRODUCER_STATE_FILE is not a state file: set aside; starting at the exchange's latest id (the trades since the last run come back through the daily reconciliation, see producer/README.md)")
                }
                Err(e2) => {
                    tracing::error!(error = %e, set_aside_error = %e2, "PRODUCER_STATE_FILE is not a state file and could not be set aside; starting at the exchange's latest id")
                }
            }
            BTreeMap::new()
        }
        Err(e) => {
            tracing::error!(error = %e, "PRODUCER_STATE_FILE cannot be read; starting at the exchange's latest id (the trades since the last run come back through the daily reconciliation)");
            BTreeMap::new()
        }
    };
    match resume::save(path, &resume::State::new(saved.clone(), now_us())) {
        Ok(()) => {
            metrics.state_file_ok.set(1);
        }
        Err(e) => {
            metrics.state_write_failures.inc();
            metrics.state_file_ok.set(0);
            tracing::error!(error = %e, "PRODUCER_STATE_FILE cannot be written (full or read-only disk?): running anyway, retrying every interval; a restart meanwhile resumes from an older point or the exchange's latest id");
        }
    }
    tracing::info!(path = %path.display(), resume_after = ?saved, "state file read");
    saved
}

/// Each symbol's start point: the saved resume point held against the exchange's latest id
/// (one 24h-ticker request, weight 2 per symbol). REST trouble is not fatal here: the run then
/// starts at the resume point, or at the first id seen.
async fn start_points(
    settings: &Settings,
    rest: &RestClient,
    saved: &BTreeMap<String, i64>,
) -> Vec<StartPoint> {
    let names: Vec<&str> = settings.symbols.iter().map(String::as_str).collect();
    let latest: HashMap<String, i64> = match tokio::time::timeout(
        Duration::from_secs(10),
        rest.ticker_24hr(&names),
    )
    .await
    {
        Ok(Ok(tickers)) => tickers.into_iter().map(|t| (t.symbol, t.last_id)).collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read the latest trade ids; symbols without a resume point start at the first id seen");
            HashMap::new()
        }
        Err(_) => {
            tracing::warn!(
                "the latest trade ids took over 10 s; symbols without a resume point start at the first id seen"
            );
            HashMap::new()
        }
    };
    settings
        .symbols
        .iter()
        .map(|symbol| {
            let (s, l) = (saved.get(symbol).copied(), latest.get(symbol).copied());
            let p = resume::decide_start(s, l, settings.max_resume_ids);
            tracing::info!(%symbol, rule = p.rule.as_str(), start_after = ?p.after, saved = ?s, latest = ?l, "start point");
            p
        })
        .collect()
}

/// Keeps the resume-point gauges current and, with a state file, writes it when it moved.
async fn run_state_writer(
    settings: Arc<Settings>,
    ledger: Arc<Mutex<Ledger>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.state_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snapshot = resume_snapshot(&settings, &ledger, &metrics);
        if written.as_ref() == Some(&snapshot) {
            continue;
        }
        let Some(path) = settings.state_file.clone() else {
            written = Some(snapshot);
            continue;
        };
        let state = resume::State::new(snapshot.clone(), now_us());
        match tokio::task::spawn_blocking(move || resume::save(&path, &state)).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("state file written again");
                }
                failing = false;
                metrics.state_file_ok.set(1);
                written = Some(snapshot);
            }
            Ok(Err(e)) => {
                metrics.state_write_failures.inc();
                metrics.state_file_ok.set(0);
                if !failing {
                    tracing::error!(error = %e, "could not write the state file: a restart now would resume from an older point (more backfill, no loss)");
                }
                failing = true;
            }
            Err(e) => tracing::error!(error = %e, "the state writer panicked"),
        }
    }
}

/// The ledger's resume points by symbol, and the gauges set from them.
fn resume_snapshot(
    settings: &Settings,
    ledger: &Mutex<Ledger>,
    metrics: &Metrics,
) -> BTreeMap<String, i64> {
    let l = ledger.lock().expect("ledger lock");
    let mut out = BTreeMap::new();
    for (sym, symbol) in settings.symbols.iter().enumerate() {
        if let Some(t) = l.through(sym) {
            metrics.symbols[sym].resume_id.set(t);
            out.insert(symbol.clone(), t);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn run_tasks(
    settings: Arc<Settings>,
    saved: BTreeMap<String, i64>,
    rest: RestClient,
    trade_pub: google_cloud_pubsub::client::Publisher,
    gap_pub: google_cloud_pubsub::client::Publisher,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunReport> {
    let starts = start_points(&settings, &rest, &saved).await;
    let ledger = Arc::new(Mutex::new(Ledger::new(settings.symbols.len())));
    let writer_stop = CancellationToken::new();
    let writer_task = tokio::spawn(run_state_writer(
        settings.clone(),
        ledger.clone(),
        metrics.clone(),
        writer_stop.clone(),
    ));
    let abandon = CancellationToken::new();
    let (trades_tx, trades_rx) = mpsc::channel(settings.queue_size);
    let (gaps_tx, gaps_rx) = mpsc::channel(4096);
    let trade_task = tokio::spawn(run_publisher(
        Arc::new(PubsubSink::new(trade_pub, settings.trade_topic.clone())),
        trades_rx,
        settings.publisher,
        metrics.clone(),
        Some(health.clone()),
        Some(ledger.clone()),
        abandon.clone(),
    ));
    let gap_task = tokio::spawn(run_publisher(
        Arc::new(PubsubSink::new(gap_pub, settings.gap_topic.clone())),
        gaps_rx,
        settings.publisher,
        metrics.clone(),
        None,
        Some(ledger.clone()),
        abandon.clone(),
    ));
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let (res_tx, res_rx) = mpsc::channel(64);
    let backfill_stop = CancellationToken::new();
    let symbols = Arc::new(settings.symbols.clone());
    let backfill_task = tokio::spawn(run_backfill(
        rest,
        symbols.clone(),
        settings.backfill,
        req_rx,
        res_tx,
        backfill_stop.clone(),
    ));

    // The flush deadline runs from the stop signal, not from the hub's end: a hub blocked on a
    // full queue (Pub/Sub not answering) would otherwise outlive the container's stop timeout
    // and lose the final resume save to docker's SIGKILL. At the deadline the publishers give
    // back what they hold, the hub's blocked send fails, and the run ends with the report.
    let stopping = CancellationToken::new();
    let hub_stop = CancellationToken::new();
    let deadline_timer = {
        let (shutdown, stopping, hub_stop, abandon) = (
            shutdown.clone(),
            stopping.clone(),
            hub_stop.clone(),
            abandon.clone(),
        );
        let deadline = settings.shutdown_deadline;
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = stopping.cancelled() => {}
            }
            hub_stop.cancel();
            tokio::time::sleep(deadline).await;
            if !abandon.is_cancelled() {
                tracing::error!(?deadline, "flush deadline passed; abandoning what is left");
                abandon.cancel();
            }
        })
    };
    let hub = Hub::new(
        settings.clone(),
        metrics.clone(),
        health.clone(),
        trades_tx,
        gaps_tx,
        req_tx,
        ledger.clone(),
        hub_stop,
    );
    let hub = hub.with_starts(&starts).await;
    // Trades the hub could not hand to a publisher (its sends failed after the deadline).
    let (hub_result, unsent) = match hub.run(res_rx).await {
        Ok(unsent) => (Ok(()), unsent),
        Err(e) => (Err(e), Vec::new()),
    };
    // The hub may also end on its own (a fatal error): the deadline starts now at the latest.
    stopping.cancel();
    backfill_stop.cancel();
    let _ = backfill_task.await;
    if hub_result.is_err() {
        // Fatal (451, or the publisher is gone): do not wait long for a flush.
        abandon.cancel();
    }

    // The queues are closed (the hub dropped its senders): the publishers flush until the
    // deadline timer abandons what is left.
    let (trade_done, gap_done) = tokio::join!(trade_task, gap_task);
    deadline_timer.abort();
    let mut report = RunReport::default();
    let mut failure = None;
    // What never reached a publisher and what the publishers gave back.
    let mut left = unsent;
    for (what, done) in [("trade", trade_done), ("gap", gap_done)] {
        let r = done.context("publisher task panicked")?;
        let PublishReport {
            published,
            unpublished,
        } = match r {
            Ok(r) => r,
            Err(f) => {
                let detail = f.detail.clone();
                failure.get_or_insert(format!("{what} publisher: {detail}"));
                PublishReport {
                    published: 0,
                    unpublished: f.unpublished,
                }
            }
        };
        if what == "trade" {
            report.trades_published = published;
        } else {
            report.gaps_published = published;
        }
        left.extend(unpublished);
    }
    report.unpublished = unpublished_ranges(&symbols, &left);
    for (symbol, ranges) in &report.unpublished {
        let ids: u64 = ranges.iter().map(|r| r.len()).sum();
        tracing::error!(symbol, ids, ranges = ?ranges, "trades NOT published to Pub/Sub");
    }
    // Last word on the resume point: everything acknowledged is in it, nothing else.
    writer_stop.cancel();
    let _ = writer_task.await;
    let snapshot = resume_snapshot(&settings, &ledger, &metrics);
    if let Some(path) = &settings.state_file {
        match resume::save(path, &resume::State::new(snapshot.clone(), now_us())) {
            Ok(()) => tracing::info!(resume_after = ?snapshot, "resume point saved"),
            Err(e) => {
                metrics.state_write_failures.inc();
                tracing::error!(error = %e, "could not save the resume point at exit");
            }
        }
    }
    hub_result?;
    if let Some(f) = failure {
        bail!("{f}");
    }
    Ok(report)
}

/// Trade ids of `msgs` per symbol, as sorted ranges.
fn unpublished_ranges(symbols: &[String], msgs: &[Outgoing]) -> BTreeMap<String, Vec<IdRange>> {
    let mut ids: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for m in msgs {
        if let Kind::Trade { sym, id, .. } = m.kind {
            ids.entry(sym).or_default().push(id);
        }
    }
    let mut out = BTreeMap::new();
    for (sym, mut v) in ids {
        v.sort_unstable();
        v.dedup();
        let mut ranges: Vec<IdRange> = Vec::new();
        for id in v {
            match ranges.last_mut() {
                Some(r) if r.to + 1 == id => r.to = id,
                _ => ranges.push(IdRange::new(id, id)),
            }
        }
        out.insert(symbols[sym].clone(), ranges);
    }
    out
}

/// The hub's state. See the module documentation.
struct Hub {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    supervisor: Supervisor,
    merger: Merger,
    conns: HashMap<ConnId, CancellationToken>,
    spec: Arc<ConnectionSpec>,
    budget: Arc<Mutex<AttemptBudget>>,
    events_tx: Option<mpsc::Sender<ConnEvent>>,
    events_rx: mpsc::Receiver<ConnEvent>,
    trades_tx: mpsc::Sender<Outgoing>,
    gaps_tx: mpsc::Sender<Outgoing>,
    backfill_tx: mpsc::UnboundedSender<BackfillRequest>,
    /// Backfill chunks requested and not answered yet.
    in_backfill: Vec<(usize, IdRange)>,
    /// Resume points, fed by the publishers.
    ledger: Arc<Mutex<Ledger>>,
    /// Per symbol: the start of its sequence is known (set, or the first id seen).
    started: Vec<bool>,
    /// Cancelled at shutdown (the signal, or a fatal error).
    stop: CancellationToken,
    /// Backfill fetches failed in a row for a passing reason (REST trouble is the IP's, not a
    /// symbol's): sets how long the next retry waits.
    rest_failures: u32,
    /// Messages that could not be queued after the stop (the publishers had given up at the
    /// flush deadline): reported as unpublished.
    unsent: Vec<Outgoing>,
}

impl Hub {
    #[allow(clippy::too_many_arguments)]
    fn new(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        trades_tx: mpsc::Sender<Outgoing>,
        gaps_tx: mpsc::Sender<Outgoing>,
        backfill_tx: mpsc::UnboundedSender<BackfillRequest>,
        ledger: Arc<Mutex<Ledger>>,
        stop: CancellationToken,
    ) -> Self {
        let n = settings.symbols.len();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL);
        let spec = Arc::new(ConnectionSpec {
            url: stream_url(&settings.ws_url, &settings.symbols),
            symbols: settings
                .symbols
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
            connect_timeout: settings.connect_timeout,
            backoff_min: settings.reconnect_min,
            backoff_max: settings.reconnect_max,
            read_coalesce: settings.read_coalesce,
        });
        Self {
            supervisor: Supervisor::new(settings.supervisor, n, Instant::now()),
            merger: Merger::new(n, settings.gap_grace),
            budget: Arc::new(Mutex::new(AttemptBudget::new(
                settings.max_attempts,
                BINANCE_ATTEMPT_WINDOW,
            ))),
            settings,
            metrics,
            health,
            conns: HashMap::new(),
            spec,
            events_tx: Some(events_tx),
            events_rx,
            trades_tx,
            gaps_tx,
            backfill_tx,
            in_backfill: Vec::new(),
            ledger,
            started: vec![false; n],
            stop,
            rest_failures: 0,
            unsent: Vec::new(),
        }
    }

    /// Applies the start points (before any connection): trackers and ledger start after them,
    /// and what a too-old resume point gives up becomes a gap record.
    async fn with_starts(mut self, starts: &[StartPoint]) -> Self {
        for (sym, p) in starts.iter().enumerate() {
            let Some(after) = p.after else { continue };
            self.merger.start_after(sym, after, Instant::now());
            self.metrics.symbols[sym].start_id.set(after + 1);
            self.started[sym] = true;
            // The ledger starts below a given-up range, so it passes it only once its gap
            // record is acknowledged.
            let ledger_after = p.given_up.map_or(after, |g| g.from - 1);
            self.ledger
                .lock()
                .expect("ledger lock")
                .start_after(sym, ledger_after);
            if let Some(g) = p.given_up {
                let detail = format!(
                    "the resume point is more than {} ids behind the exchange (PRODUCER_MAX_RESUME_IDS)",
                    self.settings.max_resume_ids
                );
                // The queue is empty and its publisher running: this cannot block for long.
                if let Err(e) = self
                    .emit_gap(sym, g, resume::REASON_RESUME_TOO_OLD, &detail)
                    .await
                {
                    tracing::error!(error = %e, "could not queue the resume_too_old gap record");
                }
            }
        }
        self
    }

    /// Runs until the stop; returns what could not be queued after it.
    async fn run(
        mut self,
        mut backfill_rx: mpsc::Receiver<BackfillResult>,
    ) -> anyhow::Result<Vec<Outgoing>> {
        let stop = self.stop.clone();
        let start = self.supervisor.start();
        self.exec(start);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ok(()),
                Some(ev) = self.events_rx.recv() => {
                    if let Err(e) = self.on_event(ev).await {
                        break Err(e);
                    }
                }
                Some(res) = backfill_rx.recv() => {
                    if let Err(e) = self.on_backfill(res).await {
                        break Err(e);
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.on_tick().await {
                        break Err(e);
                    }
                }
            }
        };
        // Stop reading; handle every frame already read.
        for (_, token) in self.conns.drain() {
            token.cancel();
        }
        self.events_tx = None;
        self.health
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.metrics.connected.set(0);
        if result.is_ok() {
            while let Some(ev) = self.events_rx.recv().await {
                if let ConnEvent::Trade { conn, sym, trade } = ev {
                    self.on_stream_trade(conn, sym, trade).await?;
                }
            }
            // A last backfill of every gap still open (grace or not), within half the flush
            // deadline: a stop right after a reconnect then leaves nothing behind. Not when the
            // publisher already gave up (nothing fetched could be published), and no more
            // chunks once REST fails (it will not heal within seconds).
            let deadline = Instant::now() + self.settings.shutdown_deadline / 2;
            let failures_before = self.rest_failures;
            loop {
                if !self.trades_tx.is_closed() && self.rest_failures == failures_before {
                    let room = MAX_BACKFILL_IN_FLIGHT.saturating_sub(self.in_backfill.len());
                    for (sym, range) in self.merger.all_backfills(room) {
                        self.request_backfill(sym, range);
                    }
                }
                if self.in_backfill.is_empty() {
                    break;
                }
                match tokio::time::timeout_at(deadline, backfill_rx.recv()).await {
                    Ok(Some(res)) => self.on_backfill(res).await?,
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(
                            chunks = self.in_backfill.len(),
                            "backfill still running at the shutdown deadline"
                        );
                        break;
                    }
                }
            }
            // Gaps not filled by now: with a state file the next run backfills them (the resume
            // point stays below them); without one, say so, in BigQuery too.
            for sym in 0..self.settings.symbols.len() {
                let open: Vec<IdRange> = self
                    .merger
                    .still_missing(sym, IdRange::new(i64::MIN + 1, i64::MAX - 1));
                if self.settings.state_file.is_some() {
                    if !open.is_empty() {
                        let ids: u64 = open.iter().map(|r| r.len()).sum();
                        tracing::warn!(symbol = %self.settings.symbols[sym], ids, ranges = ?open, "gaps not backfilled before the stop; the next run backfills them from the resume point");
                    }
                    continue;
                }
                for r in open {
                    for u in self.merger.on_backfill_done(sym, r) {
                        self.emit_gap(
                            sym,
                            u,
                            "producer_shutdown",
                            "the producer stopped before the backfill",
                        )
                        .await?;
                    }
                }
            }
        }
        result?;
        Ok(std::mem::take(&mut self.unsent))
    }

    fn exec(&mut self, commands: Vec<Command>) {
        for c in commands {
            match c {
                Command::Open { conn, reason } => {
                    tracing::info!(conn, reason = reason.as_str(), "opening a connection");
                    self.metrics.reconnect(reason.as_str());
                    let token = CancellationToken::new();
                    self.conns.insert(conn, token.clone());
                    if let Some(tx) = &self.events_tx {
                        tokio::spawn(run_connection(
                            conn,
                            self.spec.clone(),
                            self.budget.clone(),
                            tx.clone(),
                            self.metrics.clone(),
                            token,
                        ));
                    }
                }
                Command::Close { conn, why } => {
                    tracing::info!(conn, why, "closing a connection");
                    if let Some(t) = self.conns.remove(&conn) {
                        t.cancel();
                    }
                }
            }
        }
    }

    fn update_connected(&self) {
        let up = self.supervisor.active().is_some();
        self.health
            .connected
            .store(up, std::sync::atomic::Ordering::Relaxed);
        self.metrics.connected.set(i64::from(up));
    }

    async fn on_event(&mut self, ev: ConnEvent) -> anyhow::Result<()> {
        let now = Instant::now();
        match ev {
            ConnEvent::Trade { conn, sym, trade } => self.on_stream_trade(conn, sym, trade).await?,
            ConnEvent::Alive { conn } => self.supervisor.on_alive(conn, now),
            ConnEvent::Opened { conn } => {
                let c = self.supervisor.on_opened(conn, now);
                self.exec(c);
                self.update_connected();
            }
            ConnEvent::ServerShutdown { conn } => {
                tracing::warn!(
                    conn,
                    "serverShutdown: opening a successor before this connection closes"
                );
                let c = self.supervisor.on_server_shutdown(conn);
                self.exec(c);
            }
            ConnEvent::Malformed { conn, error } => {
                self.metrics.malformed_frames.inc();
                tracing::warn!(conn, %error, "malformed frame skipped; continuity will backfill a lost trade");
            }
            ConnEvent::Closed { conn, reason } => {
                tracing::info!(conn, %reason, "connection closed");
                self.conns.remove(&conn);
                let c = self.supervisor.on_closed(conn, now);
                self.exec(c);
                self.update_connected();
            }
            ConnEvent::Fatal { error, .. } => bail!("{error}"),
        }
        Ok(())
    }

    async fn on_stream_trade(
        &mut self,
        conn: ConnId,
        sym: usize,
        trade: Trade,
    ) -> anyhow::Result<()> {
        let now = Instant::now();
        if !self.merger.plausible(sym, trade.trade_id, now) {
            // Not published, not tracked, not shown to the supervisor: an id like this would
            // open a gap of billions of ids and move the resume point past them.
            self.metrics
                .quarantined
                .get_or_create(&vec![("symbol", self.settings.symbols[sym].clone())])
                .inc();
            tracing::error!(conn, symbol = %self.settings.symbols[sym], trade_id = trade.trade_id, highest = ?self.merger.highest(sym), "implausible trade id quarantined (far beyond what the exchange can have made since the last id seen); not published");
            return Ok(());
        }
        self.supervisor.on_trade(conn, sym, trade.trade_id, now);
        let m = &self.metrics.symbols[sym];
        m.received_stream.inc();
        match self.merger.on_trade(sym, trade.trade_id, now) {
            Verdict::Emit => self.emit_trade(sym, trade, Source::Stream).await,
            Verdict::EmitWithGap(range) => {
                m.gaps_detected.inc();
                m.gap_ids_detected.inc_by(range.len());
                tracing::info!(symbol = %self.settings.symbols[sym], gap = %range, ids = range.len(), "trade-id gap detected");
                self.emit_trade(sym, trade, Source::Stream).await
            }
            Verdict::Duplicate | Verdict::BeforeStart => {
                m.duplicates.inc();
                Ok(())
            }
        }
    }

    async fn emit_trade(&mut self, sym: usize, trade: Trade, source: Source) -> anyhow::Result<()> {
        if !self.started[sym] {
            // Started at the first id seen: nothing below it is this run's to account for.
            self.started[sym] = true;
            self.metrics.symbols[sym].start_id.set(trade.trade_id);
            self.ledger
                .lock()
                .expect("ledger lock")
                .start_after(sym, trade.trade_id - 1);
        }
        let symbol = &self.settings.symbols[sym];
        let out = Outgoing {
            key: symbol.clone(),
            data: Bytes::from(trade.encode_to_vec()),
            attributes: [
                ("symbol", symbol.clone()),
                ("source", source.as_str().to_owned()),
            ],
            kind: Kind::Trade {
                sym,
                id: trade.trade_id,
                source,
                trade_time_us: trade.trade_time,
            },
            enqueued: Instant::now(),
        };
        let sent = self.trades_tx.send(out).await;
        self.sent_or_unsent(sent, "trade")
    }

    /// After the stop a failed send means the publisher gave up at the flush deadline: the
    /// message is reported as unpublished. Before it, the publisher failed: a fatal error.
    fn sent_or_unsent(
        &mut self,
        sent: Result<(), mpsc::error::SendError<Outgoing>>,
        what: &str,
    ) -> anyhow::Result<()> {
        match sent {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(out)) if self.stop.is_cancelled() => {
                self.unsent.push(out);
                Ok(())
            }
            Err(_) => bail!("the {what} publisher stopped"),
        }
    }

    async fn emit_gap(
        &mut self,
        sym: usize,
        range: IdRange,
        reason: &'static str,
        detail: &str,
    ) -> anyhow::Result<()> {
        let symbol = self.settings.symbols[sym].clone();
        tracing::error!(%symbol, from_id = range.from, to_id = range.to, ids = range.len(), reason, %detail, "trade ids could not be recovered: writing a Gap record");
        self.metrics.unfilled(&symbol, reason, range.len());
        let gap = Gap {
            symbol: symbol.clone(),
            from_id: range.from,
            to_id: range.to,
            reason: reason.to_owned(),
            detected_time: now_us(),
            reporter: "producer".to_owned(),
        };
        let out = Outgoing {
            key: symbol.clone(),
            data: Bytes::from(gap.encode_to_vec()),
            attributes: [("symbol", symbol), ("reason", reason.to_owned())],
            kind: Kind::Gap {
                sym,
                from: range.from,
                to: range.to,
            },
            enqueued: Instant::now(),
        };
        let sent = self.gaps_tx.send(out).await;
        self.sent_or_unsent(sent, "gap")
    }

    fn request_backfill(&mut self, sym: usize, range: IdRange) {
        self.in_backfill.push((sym, range));
        let _ = self.backfill_tx.send(BackfillRequest { sym, range });
    }

    async fn on_backfill(&mut self, res: BackfillResult) -> anyhow::Result<()> {
        let now = Instant::now();
        let BackfillResult {
            sym,
            range,
            outcome,
        } = res;
        self.in_backfill.retain(|&(s, r)| !(s == sym && r == range));
        let (reason, detail) = match outcome {
            Outcome::Fetched(trades) => {
                self.rest_failures = 0;
                let mut filled = 0u64;
                for t in trades {
                    if t.trade_id < range.from || t.trade_id > range.to {
                        continue;
                    }
                    self.metrics.symbols[sym].received_backfill.inc();
                    if self.merger.on_trade(sym, t.trade_id, now).should_emit() {
                        filled += 1;
                        self.emit_trade(sym, t, Source::Backfill).await?;
                    } else {
                        self.metrics.symbols[sym].duplicates.inc();
                    }
                }
                self.metrics.symbols[sym].gap_ids_filled.inc_by(filled);
                tracing::info!(symbol = %self.settings.symbols[sym], %range, filled, "backfilled");
                (
                    "ids_unavailable",
                    "historicalTrades did not return these ids".to_owned(),
                )
            }
            Outcome::Failed {
                reason,
                detail,
                retry_after: Some(wait),
            } => {
                // A passing trouble: the ids stay open (and below the resume point) and are
                // asked for again later, backing off while REST keeps failing.
                self.rest_failures = self.rest_failures.saturating_add(1);
                let first = self.settings.backfill_retry;
                let backoff = first
                    .saturating_mul(1 << (self.rest_failures - 1).min(8))
                    .min(first.saturating_mul(BACKFILL_RETRY_MAX_FACTOR));
                let wait = wait.max(backoff);
                self.metrics.backfill_deferred(reason);
                tracing::warn!(symbol = %self.settings.symbols[sym], %range, reason, ?wait, %detail, "backfill failed; the ids stay open and are fetched again later");
                self.merger.retry_later(sym, range, now + wait);
                return Ok(());
            }
            Outcome::Failed {
                reason,
                detail,
                retry_after: None,
            } => (reason, detail),
        };
        for u in self.merger.on_backfill_done(sym, range) {
            self.emit_gap(sym, u, reason, &detail).await?;
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let c = self.supervisor.tick(now);
        self.exec(c);
        self.update_connected();
        let room = MAX_BACKFILL_IN_FLIGHT.saturating_sub(self.in_backfill.len());
        for (sym, range) in self.merger.due_backfills(now, room) {
            self.request_backfill(sym, range);
        }
        for (sym, range) in self.merger.take_overflowed() {
            self.emit_gap(sym, range, "tracker_overflow", "too many gaps open at once")
                .await?;
        }
        for sym in 0..self.settings.symbols.len() {
            self.metrics.symbols[sym]
                .gap_ids_outstanding
                .set(self.merger.outstanding_ids(sym) as i64);
        }
        Ok(())
    }
}
