//! The run loop of one subscription: pull, decode, batch, append, and only then ack.
//!
//! Delivery guarantee:
//! - **Nothing is acked before BigQuery acknowledged its row.** A message is acked only (a)
//!   after the append holding its row returned `Ok`, (b) as a duplicate of a key that already
//!   landed, or that lands in the same append, or (c) after the dead-letter topic stored it.
//! - Transient append failures are retried with exponential backoff for as long as it takes
//!   (the client keeps extending the leases meanwhile, up to `max_lease`). Rows BigQuery names in
//!   row errors are dead-lettered with the reason and the rest of the batch is appended again.
//! - **Outage mode**: a request BigQuery refuses as a whole (schema drift, table or dataset
//!   missing, permission denied), or row errors whose indices match no row of the request, blame
//!   no row. The rows are held, nothing is acked or dead-lettered, the backlog stays in Pub/Sub
//!   (flow control stops deliveries), `/healthz` turns 503, each refusal is logged at ERROR with
//!   the server's reason and counted, and the append is retried with a backoff capped at
//!   `--refused-retry-max` (60 s) until it lands; then everything goes on by itself. The process
//!   never exits for it: a restart would hit the same refusal.
//! - **Pull silence**: with `pull_silence` set, a subscription that delivers nothing for that
//!   long has its streaming pull reopened (counted, logged); silent again after the reopen, it
//!   turns `/healthz` (and `/livez`) 503 until a message arrives. Time spent appending does not
//!   count as silence (nothing is pulled meanwhile).
//! - On shutdown the loop stops pulling, appends what it holds within the deadline, acks what
//!   landed and nacks the rest, so everything pulled is either in BigQuery or redelivered.
//! - Appends are at-least-once (a retry after an unknown outcome, a crash between append and
//!   ack). The in-memory [`Window`] skips most duplicate rows; the `trades` view is what makes
//!   users see exactly one row per key.
//!
//! The loop is a state machine ([`State`]); each `select!` only picks the next [`Event`], and the
//! handling lives in methods.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batch, Batcher, Limits, Oversized};
use crate::dead_letter::{DeadLetter, Letter, letter_attributes};
use crate::decode::{Poison, Reason};
use crate::dedup::{Seen, Window};
use crate::metrics::Metrics;
use crate::sink::{RowSink, SinkError};
use crate::source::{Ack, MessageSource, Received};

pub mod backoff;
mod kind;

pub use backoff::Backoff;
pub use kind::{Decoded, Gaps, RowKind, Trades};

/// Settings of one pipeline.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Subscription name (for dead letters and logs).
    pub subscription: String,
    /// Batch limits.
    pub limits: Limits,
    /// Dedup window capacity (0 disables).
    pub dedup_window: usize,
    /// One append's time limit.
    pub append_timeout: Duration,
    /// Time from the shutdown signal to giving up on appends.
    pub shutdown_deadline: Duration,
    /// Retry delays of transient failures.
    pub backoff: Backoff,
    /// Retry delays of appends refused as a whole (outage mode).
    pub refused_backoff: Backoff,
    /// Reopen the streaming pull after this long without a message; zero: never.
    pub pull_silence: Duration,
}

/// A row waiting for BigQuery, with what is needed to ack or dead-letter it.
struct Item<K, A> {
    row: Bytes,
    key: K,
    message_id: String,
    attributes: HashMap<String, String>,
    ordering_key: String,
    event_time_micros: Option<i64>,
    ack: A,
}

/// The loop's states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Pulling messages and writing full batches.
    Pulling,
    /// The stream broke, or stayed silent: flush, reopen, pull again.
    Reconnecting(String),
    /// Shutdown asked: write what is held within the deadline, settle everything, stop.
    Draining,
}

/// What woke the loop.
enum Event<A> {
    Message(Received<A>),
    PullError(String),
    Silent,
    BatchDue,
    Shutdown,
}

/// One subscription's pipeline.
pub struct Pipeline<K: RowKind, Src: MessageSource, S, D> {
    settings: Settings,
    source: Src,
    sink: Arc<S>,
    dead_letter: Arc<D>,
    metrics: Arc<Metrics>,
    batcher: Batcher<Item<K::Key, Src::Ack>>,
    window: Window<K::Key>,
    /// Keys whose row is held (open or closed batch, not landed yet), with the acks of
    /// duplicates that arrived meanwhile: settled with the row.
    pending: HashMap<K::Key, Vec<Src::Ack>>,
    /// Set when shutdown was asked: appends stop being retried after it.
    deadline: Option<Instant>,
    /// When a message last arrived, or pulling last resumed (the pull silence clock).
    last_activity: Instant,
    /// Silences in a row (reopens without a message since).
    silences: u32,
}

impl<K, Src, S, D> Pipeline<K, Src, S, D>
where
    K: RowKind,
    Src: MessageSource,
    S: RowSink,
    D: DeadLetter,
{
    /// A pipeline; nothing runs until [`Pipeline::run`].
    pub fn new(
        settings: Settings,
        source: Src,
        sink: Arc<S>,
        dead_letter: Arc<D>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            batcher: Batcher::new(settings.limits),
            window: Window::new(settings.dedup_window),
            pending: HashMap::new(),
            deadline: None,
            last_activity: Instant::now(),
            silences: 0,
            settings,
            source,
            sink,
            dead_letter,
            metrics,
        }
    }

    /// Runs until `shutdown` is cancelled and everything held is settled. Nothing else stops
    /// it: BigQuery refusals and outages are waited out (see the module doc).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut state = State::Pulling;
        loop {
            state = match state {
                State::Pulling => self.pull(&shutdown).await,
                State::Reconnecting(reason) => {
                    tracing::warn!(table = K::TABLE.as_str(), reason = %reason, "reopening the streaming pull");
                    self.write_all(&shutdown).await;
                    self.source.reconnect().await;
                    let pause = self.settings.backoff.initial();
                    let next = tokio::select! {
                        _ = tokio::time::sleep(pause) => State::Pulling,
                        _ = shutdown.cancelled() => State::Draining,
                    };
                    self.last_activity = Instant::now();
                    next
                }
                State::Draining => {
                    return self.drain(&shutdown).await;
                }
            };
        }
    }

    async fn next_event(&mut self, shutdown: &CancellationToken) -> Event<Src::Ack> {
        let due = self.batcher.deadline();
        let silence = self.settings.pull_silence;
        let silent_at = (!silence.is_zero()).then(|| self.last_activity + silence);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Event::Shutdown,
            _ = sleep_until_opt(due) => Event::BatchDue,
            _ = sleep_until_opt(silent_at) => Event::Silent,
            next = self.source.next() => match next {
                Ok(m) => Event::Message(m),
                Err(e) => Event::PullError(e),
            },
        }
    }

    async fn pull(&mut self, shutdown: &CancellationToken) -> State {
        match self.next_event(shutdown).await {
            Event::Shutdown => State::Draining,
            Event::PullError(e) => State::Reconnecting(e),
            Event::Silent => self.silent(),
            Event::BatchDue => {
                self.write_ready(shutdown).await;
                State::Pulling
            }
            Event::Message(m) => {
                self.heard();
                self.accept(m).await;
                self.write_ready(shutdown).await;
                State::Pulling
            }
        }
    }

    /// No message for `pull_silence`: reopen; silent across a reopen: unhealthy.
    fn silent(&mut self) -> State {
        let silence = self.settings.pull_silence;
        self.silences += 1;
        self.metrics.pull_reopened(K::TABLE);
        if self.silences >= 2 {
            self.metrics.set_pull_silent(K::TABLE, true);
            tracing::error!(
                table = K::TABLE.as_str(),
                subscription = %self.settings.subscription,
                silences = self.silences,
                "no message for {silence:?} even after reopening the streaming pull: the \
                 subscription or the producer is stuck (/healthz 503)"
            );
        }
        State::Reconnecting(format!("no message for {silence:?}"))
    }

    /// A message arrived: the pull works.
    fn heard(&mut self) {
        self.last_activity = Instant::now();
        if self.silences > 0 {
            tracing::info!(
                table = K::TABLE.as_str(),
                silences = self.silences,
                "messages arrive again"
            );
            self.silences = 0;
            self.metrics.set_pull_silent(K::TABLE, false);
        }
    }

    /// Decodes one message and routes it: dead letter, duplicate (ack or wait), or batch.
    async fn accept(&mut self, m: Received<Src::Ack>) {
        self.metrics.received(K::TABLE);
        let decoded = match K::decode(&m.data, &m.attributes) {
            Ok(d) => d,
            Err(poison) => {
                let item = Item {
                    row: m.data,
                    key: (),
                    message_id: m.message_id,
                    attributes: m.attributes,
                    ordering_key: m.ordering_key,
                    event_time_micros: None,
                    ack: m.ack,
                };
                self.send_to_dead_letter(item, poison).await;
                return;
            }
        };
        match self.window.check(&decoded.key, &m.message_id) {
            seen @ (Seen::Redelivery | Seen::Duplicate) => {
                self.metrics.duplicate(K::TABLE, seen == Seen::Redelivery);
                m.ack.ack();
                return;
            }
            Seen::New => {}
        }
        if let Some(waiting) = self.pending.get_mut(&decoded.key) {
            self.metrics.duplicate(K::TABLE, false);
            waiting.push(m.ack);
            return;
        }
        let len = m.data.len();
        let item = Item {
            row: m.data,
            key: decoded.key.clone(),
            message_id: m.message_id,
            attributes: m.attributes,
            ordering_key: m.ordering_key,
            event_time_micros: decoded.event_time_micros,
            ack: m.ack,
        };
        match self.batcher.push(item, len, Instant::now()) {
            Ok(()) => {
                self.pending.insert(decoded.key, Vec::new());
            }
            Err(Oversized { item, bytes }) => {
                let poison = Poison::new(
                    Reason::Oversized,
                    format!("row of {bytes} bytes exceeds the AppendRows request budget"),
                );
                self.send_to_dead_letter(item, poison).await;
            }
        }
    }

    async fn write_ready(&mut self, shutdown: &CancellationToken) {
        let mut wrote = false;
        while let Some(batch) = self.batcher.pop_ready(Instant::now()) {
            self.write(batch, shutdown).await;
            wrote = true;
        }
        if wrote {
            // Nothing was pulled while appending: that time is not silence.
            self.last_activity = self.last_activity.max(Instant::now());
        }
    }

    async fn write_all(&mut self, shutdown: &CancellationToken) {
        for batch in self.batcher.drain() {
            self.write(batch, shutdown).await;
        }
    }

    async fn drain(mut self, shutdown: &CancellationToken) {
        self.start_deadline();
        let held = self.batcher.len();
        tracing::info!(
            table = K::TABLE.as_str(),
            held,
            "shutting down: writing held rows"
        );
        self.write_all(shutdown).await;
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
            .max(Duration::from_secs(1));
        // Acks are sent by the client in the background; wait for them to reach the server.
        if tokio::time::timeout(left, self.source.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                table = K::TABLE.as_str(),
                "pending acks not confirmed before the deadline"
            );
        }
        let s = self.metrics.snapshot(K::TABLE);
        tracing::info!(
            table = K::TABLE.as_str(),
            received = s.received,
            rows = s.rows_appended,
            duplicates = s.duplicates,
            dead_lettered = s.dead_lettered,
            nacked = s.nacked,
            "stopped"
        );
    }

    fn start_deadline(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.settings.shutdown_deadline);
        }
    }

    /// Appends one batch until it lands, splitting out rows BigQuery names; settles every
    /// message. Returns only when every row landed or was dead-lettered, or at the shutdown
    /// deadline (the rest nacked).
    async fn write(&mut self, batch: Batch<Item<K::Key, Src::Ack>>, shutdown: &CancellationToken) {
        let mut queue: VecDeque<Vec<Item<K::Key, Src::Ack>>> = VecDeque::from([batch.items]);
        let mut attempt = 0u32;
        let mut refusals = 0u32;
        while let Some(items) = queue.pop_front() {
            if items.is_empty() {
                continue;
            }
            let rows: Vec<Bytes> = items.iter().map(|i| i.row.clone()).collect();
            let started = Instant::now();
            let outcome = match self.time_left() {
                Some(left) if left.is_zero() => {
                    Err(SinkError::Retry("shutdown deadline passed".into()))
                }
                limit => {
                    let limit = limit.map_or(self.settings.append_timeout, |l| {
                        l.min(self.settings.append_timeout)
                    });
                    match tokio::time::timeout(limit, self.sink.append(K::TABLE, rows)).await {
                        Ok(r) => r,
                        Err(_) => Err(SinkError::Retry(format!("no answer within {limit:?}"))),
                    }
                }
            };
            let backoff = match outcome {
                Ok(()) => {
                    attempt = 0;
                    refusals = 0;
                    self.metrics
                        .appended(K::TABLE, items.len(), started.elapsed().as_secs_f64());
                    if let Some(stuck) = self.metrics.append_landed(K::TABLE) {
                        tracing::info!(
                            table = K::TABLE.as_str(),
                            rows = items.len(),
                            "BigQuery takes the rows again after {:.0?} of failed appends",
                            stuck
                        );
                    }
                    self.land(items);
                    continue;
                }
                Err(SinkError::Retry(reason)) => {
                    attempt += 1;
                    self.metrics.retried(K::TABLE);
                    self.metrics.append_failed(K::TABLE);
                    tracing::warn!(table = K::TABLE.as_str(), attempt, rows = items.len(), error = %reason, "append failed; retrying");
                    self.settings.backoff.delay(attempt, jitter())
                }
                Err(SinkError::RowErrors(errors)) => {
                    let n = items.len();
                    let unmatched: Vec<usize> =
                        errors.iter().map(|(i, _)| *i).filter(|i| *i >= n).collect();
                    if errors.is_empty() || !unmatched.is_empty() {
                        // BigQuery named rows this request does not have: which rows it means
                        // is unknown, so none is blamed. Held, like a refusal.
                        let named: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
                        let reason = format!(
                            "row errors for indices {named:?} in a request of {n} rows (out of range: {unmatched:?}); first: {}",
                            errors.first().map_or("none", |(_, r)| r.as_str())
                        );
                        refusals += 1;
                        self.refused(refusals, "unmatched_row_errors", &reason, n)
                    } else {
                        let reasons: HashMap<usize, String> = errors.into_iter().collect();
                        let mut good = Vec::with_capacity(n);
                        for (i, item) in items.into_iter().enumerate() {
                            match reasons.get(&i) {
                                Some(reason) => {
                                    let poison =
                                        Poison::new(Reason::RejectedByBigQuery, reason.clone());
                                    self.dead_letter_pending(item, poison).await;
                                }
                                None => good.push(item),
                            }
                        }
                        queue.push_front(good);
                        continue;
                    }
                }
                Err(SinkError::Refused { code, reason }) => {
                    refusals += 1;
                    self.refused(refusals, code, &reason, items.len())
                }
            };
            if !self.wait_before_retry(backoff, shutdown).await {
                tracing::warn!(
                    table = K::TABLE.as_str(),
                    "shutdown deadline reached; handing held messages back to Pub/Sub"
                );
                queue.push_front(items);
                for items in queue {
                    self.abandon(items);
                }
                self.metrics.rows_released(K::TABLE);
                return;
            }
            queue.push_front(items);
        }
    }

    /// Outage mode: counts and logs one refusal; the delay before the next attempt.
    fn refused(&self, refusals: u32, code: &'static str, reason: &str, rows: usize) -> Duration {
        self.metrics.append_refused(K::TABLE, code, reason);
        let delay = self.settings.refused_backoff.delay(refusals, jitter());
        let stuck = self.metrics.stuck_seconds(K::TABLE);
        tracing::error!(
            table = K::TABLE.as_str(),
            code,
            reason,
            rows,
            refusals,
            stuck_seconds = stuck.round() as u64,
            retry_in = ?delay,
            "BigQuery refuses the append as a whole: holding the rows (nothing acked or \
             dead-lettered; the backlog stays in Pub/Sub) and retrying until the table or the \
             permission is fixed"
        );
        delay
    }

    /// Time left before the shutdown deadline; `None` while not shutting down.
    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sleeps `delay`; notices shutdown meanwhile. False when the deadline has passed.
    async fn wait_before_retry(&mut self, delay: Duration, shutdown: &CancellationToken) -> bool {
        let mut until = Instant::now() + delay;
        if let Some(d) = self.deadline {
            until = until.min(d);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = shutdown.cancelled(), if self.deadline.is_none() => self.start_deadline(),
        }
        self.deadline.is_none_or(|d| Instant::now() < d)
    }

    /// The rows landed: remember the keys, ack every message that carried them.
    fn land(&mut self, items: Vec<Item<K::Key, Src::Ack>>) {
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        for item in items {
            if let Some(t) = item.event_time_micros {
                self.metrics
                    .exchange_latency((now_micros - t).max(0) as f64 / 1e6);
            }
            self.window.insert(item.key.clone(), &item.message_id);
            for dup in self.pending.remove(&item.key).unwrap_or_default() {
                dup.ack();
            }
            item.ack.ack();
        }
    }

    /// The rows did not land: hand every message back to Pub/Sub.
    fn abandon(&mut self, items: Vec<Item<K::Key, Src::Ack>>) {
        let mut n = 0;
        for item in items {
            for dup in self.pending.remove(&item.key).unwrap_or_default() {
                dup.nack();
                n += 1;
            }
            item.ack.nack();
            n += 1;
        }
        self.metrics.nacked(K::TABLE, n);
    }

    /// A held row that BigQuery refused: dead-letter it; duplicates waiting on it are nacked
    /// (their payload may differ and deserves its own attempt).
    async fn dead_letter_pending(&mut self, item: Item<K::Key, Src::Ack>, poison: Poison) {
        let waiting = self.pending.remove(&item.key).unwrap_or_default();
        self.metrics.nacked(K::TABLE, waiting.len());
        for dup in waiting {
            dup.nack();
        }
        self.send_to_dead_letter(item, poison).await;
    }

    /// Publishes to the dead-letter topic, then acks; nacks if the publish failed.
    async fn send_to_dead_letter<Key>(&mut self, item: Item<Key, Src::Ack>, poison: Poison) {
        tracing::warn!(table = K::TABLE.as_str(), message_id = %item.message_id, reason = poison.reason.code(), detail = %poison.detail, "dead-lettering a message");
        let letter = Letter {
            attributes: letter_attributes(
                &item.attributes,
                &poison,
                &self.settings.subscription,
                &item.message_id,
            ),
            data: item.row,
            ordering_key: item.ordering_key,
        };
        match self.dead_letter.publish(letter).await {
            Ok(()) => {
                self.metrics.dead_lettered(K::TABLE, poison.reason);
                item.ack.ack();
            }
            Err(e) => {
                tracing::error!(table = K::TABLE.as_str(), message_id = %item.message_id, error = %e, "dead-letter publish failed; nacking");
                self.metrics.nacked(K::TABLE, 1);
                item.ack.nack();
            }
        }
    }
}

/// The uniform draw in `[0, 1]` that [`Backoff::delay`] spreads a delay by.
fn jitter() -> f64 {
    rand::random_range(0.0..=1.0)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
