//! The hub: the one loop that owns the producer's state. It runs the pure parts, the
//! [`Supervisor`] (which connections exist) and the [`Merger`] (continuity per symbol, gaps),
//! and turns their answers into connection commands, messages for the publishers, backfill
//! requests and metrics.
//!
//! Connections are opened through a [`Connector`], so the loop's decisions are tested with fake
//! connections under paused time (`hub_tests.rs`); [`WsConnector`] opens the real websockets.
//!
//! Shutdown (the `stop` token): the hub stops the connections (no new reads), handles every
//! frame already read, backfills what it can within half the flush deadline, writes `Gap`
//! records (reason `producer_shutdown`) for gaps still open when there is no state file to carry
//! them to the next run, and closes its queues by dropping their senders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use binance::continuity::{IdRange, Verdict};
use bytes::Bytes;
use prost::Message as _;
use service::clock::now_us;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use trade_proto::{Gap, Source, Trade};

use crate::backfill::{BackfillRequest, BackfillResult, Outcome};
use crate::connection::{ConnEvent, ConnectionSpec, run_connection, stream_url};
use crate::merger::Merger;
use crate::metrics::{Health, Metrics};
use crate::publisher::{Kind, Outgoing};
use crate::reconnect::{AttemptBudget, BINANCE_ATTEMPT_WINDOW};
use crate::resume::{self, Ledger, StartPoint};
use crate::settings::Settings;
use crate::supervisor::{Command, ConnId, Supervisor};

/// Capacity of the connection-to-hub channel (frames): a short buffer, the queue is the real one.
const EVENT_CHANNEL: usize = 4_096;
/// How often the hub checks rotation, the watchdog and due backfills.
const TICK: Duration = Duration::from_millis(200);
/// Backfill chunks requested and not answered at most: the rest of a gap is cut later.
const MAX_BACKFILL_IN_FLIGHT: usize = 8;
/// Longest wait before a failed chunk is asked for again, in multiples of the first.
const BACKFILL_RETRY_MAX_FACTOR: u32 = 20;

/// Opens connections for the hub: the seam between its decisions and the sockets.
pub(crate) trait Connector {
    /// Starts connection `conn` in a task of its own that sends its events to `events` and
    /// ends, after [`ConnEvent::Closed`] or [`ConnEvent::Fatal`], when the socket closes or
    /// `cancel` fires.
    fn open(&mut self, conn: ConnId, events: mpsc::Sender<ConnEvent>, cancel: CancellationToken);
}

/// The real connections: one websocket task per connection, all sharing one attempt budget.
pub(crate) struct WsConnector {
    spec: Arc<ConnectionSpec>,
    budget: Arc<Mutex<AttemptBudget>>,
    metrics: Arc<Metrics>,
}

impl WsConnector {
    /// Connections to the combined stream of every configured symbol.
    pub(crate) fn new(settings: &Settings, metrics: Arc<Metrics>) -> Self {
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
            spec,
            budget: Arc::new(Mutex::new(AttemptBudget::new(
                settings.max_attempts,
                BINANCE_ATTEMPT_WINDOW,
            ))),
            metrics,
        }
    }
}

impl Connector for WsConnector {
    fn open(&mut self, conn: ConnId, events: mpsc::Sender<ConnEvent>, cancel: CancellationToken) {
        tokio::spawn(run_connection(
            conn,
            self.spec.clone(),
            self.budget.clone(),
            events,
            self.metrics.clone(),
            cancel,
        ));
    }
}

/// What the hub is connected to (see the module documentation of `app` for the picture).
pub(crate) struct HubParts<C> {
    /// The validated settings.
    pub settings: Arc<Settings>,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
    /// Readiness (`connected`).
    pub health: Arc<Health>,
    /// Opens connections.
    pub connector: C,
    /// The trade publisher's queue.
    pub trades: mpsc::Sender<Outgoing>,
    /// The gap publisher's queue.
    pub gaps: mpsc::Sender<Outgoing>,
    /// Requests to the backfill task.
    pub backfill: mpsc::UnboundedSender<BackfillRequest>,
    /// Resume points, fed by the publishers.
    pub ledger: Arc<Mutex<Ledger>>,
    /// Cancelled at shutdown.
    pub stop: CancellationToken,
}

/// The hub's state. See the module documentation.
pub(crate) struct Hub<C> {
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    supervisor: Supervisor,
    merger: Merger,
    conns: HashMap<ConnId, CancellationToken>,
    connector: C,
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

impl<C: Connector> Hub<C> {
    /// A hub with no connection yet: [`Hub::run`] opens the first.
    pub(crate) fn new(parts: HubParts<C>) -> Self {
        let HubParts {
            settings,
            metrics,
            health,
            connector,
            trades,
            gaps,
            backfill,
            ledger,
            stop,
        } = parts;
        let n = settings.symbols.len();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL);
        Self {
            supervisor: Supervisor::new(settings.supervisor, n, Instant::now()),
            merger: Merger::new(n, settings.gap_grace),
            settings,
            metrics,
            health,
            conns: HashMap::new(),
            connector,
            events_tx: Some(events_tx),
            events_rx,
            trades_tx: trades,
            gaps_tx: gaps,
            backfill_tx: backfill,
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
    pub(crate) async fn with_starts(mut self, starts: &[StartPoint]) -> Self {
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
    pub(crate) async fn run(
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
                        self.connector.open(conn, tx.clone(), token);
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

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
