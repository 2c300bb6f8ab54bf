//! Wiring: the tasks, the channels between them, and the report at shutdown (the binary's
//! edge, so errors are `anyhow` with context).
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
//! The hub (`hub.rs`) runs the pure parts; the state file is read and written around it
//! (`state.rs`).
//!
//! Shutdown (SIGTERM/Ctrl-C cancel the token given to [`run`]): the hub stops the connections
//! (no new reads), handles every frame already read, writes `Gap` records (reason
//! `producer_shutdown`) for gaps it had not filled yet, and closes the queues; the publishers
//! flush within `shutdown_deadline`; whatever is still unpublished then is logged per symbol and
//! returned in the [`RunReport`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use binance::TimeUnit;
use binance::continuity::IdRange;
use binance::rest::{BanPolicy, RestClient, RestConfig};
use gcp::pubsub::{Admin, Batching};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backfill::run_backfill;
use crate::hub::{Hub, HubParts, WsConnector};
use crate::metrics::{Health, Metrics};
use crate::publisher::{Kind, Outgoing, PublishReport, PubsubSink, run_publisher};
use crate::resume::Ledger;
use crate::settings::Settings;
use crate::state;

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
    let saved = state::load_state(&settings, &metrics);
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
        let clients = Clients {
            rest,
            trade_pub,
            gap_pub,
        };
        let r = run_tasks(settings, saved, clients, m, h, shutdown).await;
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

/// The clients `start` built (and checked) before the run.
struct Clients {
    rest: RestClient,
    trade_pub: google_cloud_pubsub::client::Publisher,
    gap_pub: google_cloud_pubsub::client::Publisher,
}

async fn run_tasks(
    settings: Arc<Settings>,
    saved: BTreeMap<String, i64>,
    clients: Clients,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunReport> {
    let Clients {
        rest,
        trade_pub,
        gap_pub,
    } = clients;
    let starts = state::start_points(&settings, &rest, &saved).await;
    let ledger = Arc::new(Mutex::new(Ledger::new(settings.symbols.len())));
    let writer_stop = CancellationToken::new();
    let writer_task = tokio::spawn(state::run_state_writer(
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
    let hub = Hub::new(HubParts {
        connector: WsConnector::new(&settings, metrics.clone()),
        settings: settings.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        trades: trades_tx,
        gaps: gaps_tx,
        backfill: req_tx,
        ledger: ledger.clone(),
        stop: hub_stop,
    });
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
    writer_stop.cancel();
    let _ = writer_task.await;
    state::save_at_exit(&settings, &ledger, &metrics);
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
