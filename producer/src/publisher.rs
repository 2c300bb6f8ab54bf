//! The publisher task: a bounded queue in, Pub/Sub out, and no message dropped on the way.
//!
//! Delivery guarantee: every message taken from the queue is either acknowledged by Pub/Sub,
//! or reported as unpublished when the task is abandoned at the shutdown deadline, or makes the
//! task fail loudly on a permanent error (permission denied, topic not found, invalid message:
//! retrying cannot fix those, and a producer that cannot publish must not pretend to run).
//! Transient failures are retried forever with capped, jittered exponential backoff.
//!
//! Ordering keys: the Pub/Sub client pauses a key after a failed publish and fails every later
//! message of that key with `OrderingKeyPaused` until `resume_publish(key)`. So on the first
//! failure of a key this task holds every message of that key (the failed ones and the new
//! ones), waits the backoff, calls [`Sink::resume`], and republishes the held messages in
//! trade-id order. Other keys keep flowing.
//!
//! Backpressure: at most `max_in_flight` messages are outstanding, in flight or held for a
//! paused key alike; beyond that the task stops taking from the queue, the queue fills, and the
//! merger waits on it. So memory stays bounded whatever the outage's length (held messages used
//! to be outside the cap: a long Pub/Sub outage then moved the whole stream into memory).
//!
//! Health: publishing counts as stuck when messages are outstanding and none was acknowledged
//! for `stuck_after`, whether a key is paused or the publishes simply hang (a frozen service
//! answers nothing, so no failure ever pauses a key).
//!
//! I/O sits behind the small [`Sink`] trait so this loop is tested with a fake; [`PubsubSink`]
//! is the official client.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use binance::continuity::IdRange;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use service::clock::now_us;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use trade_proto::Source;

use crate::metrics::{Health, Metrics};
use crate::reconnect::Backoff;
use crate::resume::Ledger;

/// What a message carries, for metrics and the unpublished report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A trade.
    Trade {
        /// Index of the symbol.
        sym: usize,
        /// Its id.
        id: i64,
        /// Stream or backfill.
        source: Source,
        /// Trade time, µs since the epoch.
        trade_time_us: i64,
    },
    /// A gap record.
    Gap {
        /// Index of the symbol.
        sym: usize,
        /// First missing id.
        from: i64,
        /// Last missing id.
        to: i64,
    },
}

/// One message for Pub/Sub.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Ordering key: the symbol.
    pub key: String,
    /// The encoded proto.
    pub data: Bytes,
    /// Message attributes.
    pub attributes: [(&'static str, String); 2],
    /// What it is.
    pub kind: Kind,
    /// When it was queued.
    pub enqueued: Instant,
}

impl Outgoing {
    /// The symbol and the trade ids this message accounts for.
    pub fn ids(&self) -> (usize, IdRange) {
        match self.kind {
            Kind::Trade { sym, id, .. } => (sym, IdRange::new(id, id)),
            Kind::Gap { sym, from, to } => (sym, IdRange::new(from, to)),
        }
    }

    fn order(&self) -> i64 {
        match self.kind {
            Kind::Trade { id, .. } => id,
            Kind::Gap { from, .. } => from,
        }
    }
}

/// Why one publish failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkError {
    /// Transient: retry after a backoff (and resume the ordering key).
    Retry(String),
    /// Permanent: retrying cannot help; the message says what to fix.
    Permanent(String),
}

/// Where messages go. Implemented by [`PubsubSink`] and by test fakes.
pub trait Sink: Send + Sync + 'static {
    /// Publishes one message; the future resolves when the service acknowledged it.
    fn publish(&self, msg: &Outgoing) -> BoxFuture<'static, Result<(), SinkError>>;
    /// Resumes a paused ordering key.
    fn resume(&self, key: &str);
}

/// The official Pub/Sub publisher as a [`Sink`].
#[derive(Debug, Clone)]
pub struct PubsubSink {
    publisher: Publisher,
    topic: String,
}

impl PubsubSink {
    /// Wraps a publisher for `topic` (named in error messages).
    pub fn new(publisher: Publisher, topic: impl Into<String>) -> Self {
        Self {
            publisher,
            topic: topic.into(),
        }
    }
}

impl Sink for PubsubSink {
    fn publish(&self, m: &Outgoing) -> BoxFuture<'static, Result<(), SinkError>> {
        let msg = Message::new()
            .set_data(m.data.clone())
            .set_ordering_key(m.key.clone())
            .set_attributes(m.attributes.iter().map(|(k, v)| (*k, v.clone())));
        let fut = self.publisher.publish(msg);
        let topic = self.topic.clone();
        Box::pin(async move {
            fut.await
                .map(|_| ())
                .map_err(|e| classify_publish_error(&topic, &e))
        })
    }

    fn resume(&self, key: &str) {
        self.publisher.resume_publish(key);
    }
}

/// One place that decides retry or fail for a Pub/Sub publish error.
pub fn classify_publish_error(
    topic: &str,
    e: &google_cloud_pubsub::error::PublishError,
) -> SinkError {
    use google_cloud_pubsub::error::PublishError as E;
    match e {
        E::Rpc(err) => match err.status().map(|s| s.code) {
            // The service account may not publish: fix IAM (roles/pubsub.publisher on the topic).
            Some(Code::PermissionDenied) | Some(Code::Unauthenticated) => {
                SinkError::Permanent(format!(
                    "permission denied publishing to topic {topic}: grant the producer's service account roles/pubsub.publisher ({err})"
                ))
            }
            // The topic does not exist: create it (Terraform, or --create-topics locally).
            Some(Code::NotFound) => SinkError::Permanent(format!(
                "topic {topic} not found: create it (terraform apply, or --create-topics locally) ({err})"
            )),
            // The message breaks the topic's schema or a size limit: a bug, not weather.
            Some(Code::InvalidArgument) | Some(Code::FailedPrecondition) => {
                SinkError::Permanent(format!("Pub/Sub rejected a message on {topic}: {err}"))
            }
            // Unavailable, DeadlineExceeded, ResourceExhausted, Internal, transport errors...
            _ => SinkError::Retry(err.to_string()),
        },
        // A previous failure paused the key: resume and retry.
        E::OrderingKeyPaused => SinkError::Retry("ordering key paused".into()),
        // The client's background task is gone: nothing will publish any more.
        E::Shutdown => SinkError::Permanent("the Pub/Sub publisher shut down".into()),
        other => SinkError::Retry(other.to_string()),
    }
}

/// Settings of the publisher task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherConfig {
    /// Publishes outstanding at most.
    pub max_in_flight: usize,
    /// First retry delay of a failing key.
    pub retry_min: Duration,
    /// Cap on the retry delay.
    pub retry_max: Duration,
    /// No acknowledgement for this long while messages are outstanding makes `/healthz` report
    /// "not publishing".
    pub stuck_after: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 5_000,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            stuck_after: Duration::from_secs(30),
        }
    }
}

/// What the task did.
#[derive(Debug, Default)]
pub struct PublishReport {
    /// Messages acknowledged.
    pub published: u64,
    /// Messages not published when the task was abandoned (queue, in flight, held).
    pub unpublished: Vec<Outgoing>,
}

/// The task stopped on a permanent error.
#[derive(Debug, thiserror::Error)]
#[error("publishing failed permanently: {detail}")]
pub struct PublishFailure {
    /// What to fix.
    pub detail: String,
    /// Messages not published.
    pub unpublished: Vec<Outgoing>,
}

struct Paused {
    until: Instant,
    held: Vec<Outgoing>,
}

/// Runs until the queue is closed and everything is acknowledged, or `abandon` fires (then the
/// rest is returned as unpublished), or a permanent error. Every acknowledged message is
/// confirmed in `ledger` (the resume point), and nothing else is.
pub async fn run_publisher<S: Sink>(
    sink: Arc<S>,
    mut rx: mpsc::Receiver<Outgoing>,
    cfg: PublisherConfig,
    metrics: Arc<Metrics>,
    health: Option<Arc<Health>>,
    ledger: Option<Arc<Mutex<Ledger>>>,
    abandon: CancellationToken,
) -> Result<PublishReport, PublishFailure> {
    let mut in_flight: FuturesUnordered<BoxFuture<'static, (u64, Result<(), SinkError>)>> =
        FuturesUnordered::new();
    let mut slots: HashMap<u64, Outgoing> = HashMap::new();
    let mut paused: HashMap<String, Paused> = HashMap::new();
    let mut backoffs: HashMap<String, Backoff> = HashMap::new();
    let mut next_seq = 0u64;
    let mut open = true;
    let mut published = 0u64;
    // The last acknowledgement, or the last moment nothing was outstanding.
    let mut progress = Instant::now();
    // Refreshes the queue-depth gauge and the health flag while the loop waits.
    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(h) = &health {
        h.publishing.store(true, Ordering::Relaxed);
    }

    let submit = |m: Outgoing,
                  slots: &mut HashMap<u64, Outgoing>,
                  in_flight: &mut FuturesUnordered<_>,
                  seq: &mut u64| {
        let fut = sink.publish(&m);
        let id = *seq;
        *seq += 1;
        slots.insert(id, m);
        in_flight.push(Box::pin(async move { (id, fut.await) }) as BoxFuture<'static, _>);
    };

    loop {
        let held: usize = paused.values().map(|p| p.held.len()).sum();
        let outstanding = in_flight.len() + held;
        metrics.queue_depth.set((rx.len() + outstanding) as i64);
        if !open && outstanding == 0 {
            return Ok(PublishReport {
                published,
                unpublished: Vec::new(),
            });
        }
        let now = Instant::now();
        if outstanding == 0 {
            progress = now;
        }
        if let Some(h) = &health {
            let stuck = now.saturating_duration_since(progress) >= cfg.stuck_after;
            h.publishing.store(!stuck, Ordering::Relaxed);
            metrics.publishing.set(i64::from(!stuck));
        }
        let next_resume = paused.values().map(|p| p.until).min();
        tokio::select! {
            biased;
            _ = abandon.cancelled() => {
                let mut unpublished: Vec<Outgoing> = slots.into_values().collect();
                unpublished.extend(paused.into_values().flat_map(|p| p.held));
                rx.close();
                while let Some(m) = rx.recv().await {
                    unpublished.push(m);
                }
                metrics.unpublished.inc_by(unpublished.len() as u64);
                return Ok(PublishReport { published, unpublished });
            }
            Some((id, result)) = in_flight.next(), if !in_flight.is_empty() => {
                let m = slots.remove(&id).expect("every in-flight publish has a slot");
                match result {
                    Ok(()) => {
                        published += 1;
                        progress = Instant::now();
                        record_success(&metrics, &m);
                        if let Some(l) = &ledger {
                            let (sym, range) = m.ids();
                            l.lock().expect("ledger lock").confirm(sym, range);
                        }
                        if let Some(b) = backoffs.get_mut(&m.key) {
                            b.reset();
                        }
                    }
                    Err(SinkError::Retry(detail)) => {
                        metrics.publish_error("retry");
                        let now = Instant::now();
                        let p = paused.entry(m.key.clone()).or_insert_with(|| {
                            let b = backoffs.entry(m.key.clone()).or_insert_with(|| Backoff::new(cfg.retry_min, cfg.retry_max));
                            b.failed();
                            let wait = b.next_wait(rand::random::<f64>()).max(cfg.retry_min / 2);
                            tracing::warn!(key = %m.key, ?wait, %detail, "publish failed; pausing the ordering key and retrying");
                            Paused { until: now + wait, held: Vec::new() }
                        });
                        p.held.push(m);
                    }
                    Err(SinkError::Permanent(detail)) => {
                        metrics.publish_error("permanent");
                        if let Some(h) = &health {
                            h.publishing.store(false, Ordering::Relaxed);
                        }
                        let mut unpublished: Vec<Outgoing> = slots.into_values().collect();
                        unpublished.push(m);
                        unpublished.extend(paused.into_values().flat_map(|p| p.held));
                        rx.close();
                        while let Some(m) = rx.recv().await {
                            unpublished.push(m);
                        }
                        metrics.unpublished.inc_by(unpublished.len() as u64);
                        return Err(PublishFailure { detail, unpublished });
                    }
                }
            }
            _ = tokio::time::sleep_until(next_resume.unwrap_or_else(Instant::now)), if next_resume.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = paused.iter().filter(|(_, p)| p.until <= now).map(|(k, _)| k.clone()).collect();
                for key in due {
                    let mut p = paused.remove(&key).expect("listed");
                    sink.resume(&key);
                    p.held.sort_by_key(Outgoing::order);
                    tracing::info!(%key, messages = p.held.len(), "resuming the ordering key");
                    for m in p.held {
                        submit(m, &mut slots, &mut in_flight, &mut next_seq);
                    }
                }
            }
            _ = refresh.tick() => {}
            m = rx.recv(), if open && outstanding < cfg.max_in_flight => match m {
                None => open = false,
                Some(m) => match paused.get_mut(&m.key) {
                    Some(p) => p.held.push(m),
                    None => submit(m, &mut slots, &mut in_flight, &mut next_seq),
                },
            },
        }
    }
}

fn record_success(metrics: &Metrics, m: &Outgoing) {
    metrics
        .publish_latency
        .observe(m.enqueued.elapsed().as_secs_f64());
    if let Kind::Trade {
        sym,
        source,
        trade_time_us,
        ..
    } = m.kind
    {
        let s = &metrics.symbols[sym];
        match source {
            Source::Backfill => s.published_backfill.inc(),
            _ => s.published_stream.inc(),
        };
        if source == Source::Stream {
            let lag_us = now_us() - trade_time_us;
            metrics
                .exchange_to_publish
                .observe((lag_us.max(0) as f64) / 1e6);
        }
    }
}

#[cfg(test)]
#[path = "publisher_tests.rs"]
mod tests;
