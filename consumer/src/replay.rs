//! `consumer replay`: dead letters back to the topic they came from, once their cause is fixed.
//!
//! Pulls a subscription on the dead-letter topic and republishes each chosen letter to the trade
//! (or gap) topic: the original payload, the original attributes without the ones dead-lettering
//! added (an original kept aside as `original_attribute_<name>` gets its name back), and the
//! original ordering key. A letter is acked only after its republish was
//! acknowledged by Pub/Sub; a failed republish nacks it (it stays for the next run). Letters not
//! chosen (another reason, `--dry-run`, no known source) are held until the end and then nacked,
//! so they stay on the subscription, untouched, for the next run or a human (on the Pub/Sub
//! emulator they come back only when their 10 s lease lapses, ~20 s later).
//!
//! Which letters: those whose `reason` is named by `--reason` (repeatable), or every one with
//! `--all-reasons`. Replaying true poison (`undecodable`, `invalid_value`, ...) only sends it
//! round again, so choose: `--dry-run` first prints the counts by reason. Letters that Pub/Sub
//! itself forwarded under a subscription's dead-letter policy (no `reason`, `CloudPubSubDeadLetter*`
//! attributes instead, <https://cloud.google.com/pubsub/docs/handling-failures>) have the reason
//! [`MAX_DELIVERY_ATTEMPTS`].
//!
//! Where to: the letter's `subscription` attribute (set by the consumer; for Pub/Sub's own,
//! `CloudPubSubDeadLetterSourceSubscription`) names the subscription it was pulled from:
//! `--trade-subscription` → `--trade-topic`, `--gap-subscription` → `--gap-topic`. Any other is
//! left alone and reported.
//!
//! The run ends when no letter arrived for `--idle`, after `--limit` letters, or on Ctrl-C /
//! SIGTERM, and prints a summary. Replayed trades go through the consumer again like any other;
//! a replayed duplicate of a landed trade costs one raw row at most (the `trades` view keeps one).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler;
use tokio_util::sync::CancellationToken;

use crate::config::LogFormat;

use crate::dead_letter::{CLASHING_ATTRIBUTE_PREFIX, LETTER_ATTRIBUTES};

/// Prefix of the attributes Pub/Sub adds when its dead-letter policy forwards a message
/// (`CloudPubSubDeadLetterSourceSubscription`, `...SourceDeliveryCount`, ...); removed too.
pub const PUBSUB_LETTER_PREFIX: &str = "CloudPubSubDeadLetter";

/// The reason of a letter Pub/Sub forwarded under a dead-letter policy (it sets no `reason`).
pub const MAX_DELIVERY_ATTEMPTS: &str = "max_delivery_attempts";

/// Time given to the client to flush the last acks and nacks before the stream closes.
const FLUSH: Duration = Duration::from_millis(500);

/// Lease extension of the letters held during a run.
const LEASE: Duration = Duration::from_secs(10);

/// Republish dead letters to the trade or gap topic they came from.
///
/// Pulls --subscription (on the dead-letter topic) and republishes each letter whose reason was
/// chosen (--reason, repeatable, or --all-reasons) with its original payload, attributes (minus
/// reason, reason_detail, subscription, original_message_id, original_ordering_key and Pub/Sub's
/// CloudPubSubDeadLetter*; an original kept as original_attribute_NAME gets its name back) and
/// ordering key. A letter is acked only after Pub/Sub acknowledged its
/// republish; the others are left on the subscription. Stops when no letter came for --idle and
/// prints what it did, by reason. Start with --dry-run: it prints the counts and changes nothing.
#[derive(Debug, Clone, Parser)]
#[command(name = "consumer replay", version = build_info::VERSION, about, long_about)]
pub struct ReplayArgs {
    /// Google Cloud project that owns the topics and subscriptions.
    #[arg(long, env = "GCP_PROJECT")]
    pub project: String,

    #[command(flatten)]
    pub pubsub: service::gcp::PubSubFlags,

    /// Subscription on the dead-letter topic to read letters from.
    #[arg(
        long,
        env = "DEAD_LETTER_SUBSCRIPTION",
        default_value = "binance-trades-dead-letter-sub"
    )]
    pub subscription: String,

    /// Create --subscription on --dead-letter-topic if it does not exist. A new subscription
    /// holds only letters published after it was created.
    #[arg(long, env = "REPLAY_CREATE_SUBSCRIPTION")]
    pub create_subscription: bool,

    /// The dead-letter topic (only used by --create-subscription).
    #[arg(
        long,
        env = "DEAD_LETTER_TOPIC",
        default_value = "binance-trades-dead-letter"
    )]
    pub dead_letter_topic: String,

    /// Replay letters with this reason (repeat, or comma-separate): e.g. rejected_by_bigquery,
    /// max_delivery_attempts (forwarded by a Pub/Sub dead-letter policy).
    #[arg(
        long = "reason",
        value_name = "REASON",
        env = "REPLAY_REASONS",
        value_delimiter = ',',
        required_unless_present_any = ["all_reasons", "dry_run"],
        conflicts_with = "all_reasons"
    )]
    pub reasons: Vec<String>,

    /// Replay letters of every reason, true poison included.
    #[arg(long, env = "REPLAY_ALL_REASONS")]
    pub all_reasons: bool,

    /// Read and count by reason; republish nothing, ack nothing.
    #[arg(long, env = "REPLAY_DRY_RUN")]
    pub dry_run: bool,

    /// Stop when no letter arrived for this long (e.g. 10s, 1m).
    #[arg(long, env = "REPLAY_IDLE", default_value = "10s", value_parser = service::duration::parse)]
    pub idle: Duration,

    /// Stop after reading this many letters.
    #[arg(long, env = "REPLAY_LIMIT")]
    pub limit: Option<u64>,

    /// Letters held at once (flow control); the ones not replayed count against it until the end.
    #[arg(long, env = "REPLAY_MAX_OUTSTANDING", default_value_t = 10_000)]
    pub max_outstanding: i64,

    /// Trades go back to this topic.
    #[arg(long, env = "TRADE_TOPIC", default_value = "binance-trades")]
    pub trade_topic: String,

    /// Gap records go back to this topic.
    #[arg(long, env = "GAP_TOPIC", default_value = "binance-gaps")]
    pub gap_topic: String,

    /// Letters from this subscription are trades.
    #[arg(long, env = "TRADE_SUBSCRIPTION", default_value = "binance-trades-bq")]
    pub trade_subscription: String,

    /// Letters from this subscription are gap records.
    #[arg(long, env = "GAP_SUBSCRIPTION", default_value = "binance-gaps-bq")]
    pub gap_subscription: String,

    /// Log format (logs go to stderr, the summary to stdout).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ReplayArgs {
    /// The letters chosen: `None` for every reason.
    pub fn chosen(&self) -> Option<BTreeSet<String>> {
        (!self.all_reasons).then(|| self.reasons.iter().cloned().collect())
    }

    fn routes(&self) -> Routes<'_> {
        Routes {
            trades: &self.trade_subscription,
            gaps: &self.gap_subscription,
        }
    }
}

/// Where a letter goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The trade topic.
    Trades,
    /// The gap topic.
    Gaps,
}

/// Source subscription (short name) → target.
#[derive(Debug, Clone, Copy)]
pub struct Routes<'a> {
    /// Letters from this subscription are trades.
    pub trades: &'a str,
    /// Letters from this subscription are gap records.
    pub gaps: &'a str,
}

/// What one letter is and what republishing it means. Pure: see [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The `reason` attribute, or [`MAX_DELIVERY_ATTEMPTS`], or `unknown`.
    pub reason: String,
    /// The subscription it was dead-lettered from, if the letter says.
    pub source: Option<String>,
    /// Where it goes back to; `None` when the source is not one of ours.
    pub target: Option<Target>,
    /// The original attributes.
    pub attributes: HashMap<String, String>,
    /// The original ordering key (empty: none).
    pub ordering_key: String,
}

/// Reads a letter: its reason, its source subscription and target, and the original
/// attributes and ordering key.
pub fn plan(attributes: &HashMap<String, String>, ordering_key: &str, routes: Routes) -> Planned {
    let forwarded = attributes
        .keys()
        .any(|k| k.starts_with(PUBSUB_LETTER_PREFIX));
    let reason = match attributes.get("reason") {
        Some(r) => r.clone(),
        None if forwarded => MAX_DELIVERY_ATTEMPTS.to_owned(),
        None => "unknown".to_owned(),
    };
    let source = attributes
        .get("subscription")
        .or_else(|| attributes.get("CloudPubSubDeadLetterSourceSubscription"))
        // A full path names the same subscription.
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_owned());
    let target = match source.as_deref() {
        Some(s) if s == routes.trades => Some(Target::Trades),
        Some(s) if s == routes.gaps => Some(Target::Gaps),
        _ => None,
    };
    let ordering_key = attributes
        .get("original_ordering_key")
        .cloned()
        .unwrap_or_else(|| ordering_key.to_owned());
    let attributes = attributes
        .iter()
        .filter(|(k, _)| {
            !LETTER_ATTRIBUTES.contains(&k.as_str())
                && k.as_str() != "original_ordering_key"
                && !k.starts_with(PUBSUB_LETTER_PREFIX)
        })
        .map(|(k, v)| {
            let name = k.strip_prefix(CLASHING_ATTRIBUTE_PREFIX).unwrap_or(k);
            (name.to_owned(), v.clone())
        })
        .collect();
    Planned {
        reason,
        source,
        target,
        attributes,
        ordering_key,
    }
}

/// Counts of one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Letters read.
    pub read: u64,
    /// Republished and acked.
    pub republished: u64,
    /// Left on the subscription (not chosen, dry run, or no known source).
    pub left: u64,
    /// Republish failed; nacked, left for the next run.
    pub failed: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The subscription read.
    pub subscription: String,
    /// Whether this run created it.
    pub created: bool,
    /// `--dry-run`.
    pub dry_run: bool,
    /// By reason.
    pub by_reason: BTreeMap<String, Counts>,
    /// Chosen letters whose source subscription is not ours (left alone).
    pub unroutable: u64,
    /// Republished, by target.
    pub by_target: BTreeMap<Target, u64>,
}

impl Summary {
    /// Letters read, all reasons.
    pub fn read(&self) -> u64 {
        self.by_reason.values().map(|c| c.read).sum()
    }

    /// Letters republished, all reasons.
    pub fn republished(&self) -> u64 {
        self.by_reason.values().map(|c| c.republished).sum()
    }

    /// Republishes that failed, all reasons.
    pub fn failed(&self) -> u64 {
        self.by_reason.values().map(|c| c.failed).sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replay: read {} dead letter(s) from {}{}{}",
            self.read(),
            self.subscription,
            if self.created { " (created now)" } else { "" },
            if self.dry_run {
                "; dry run: nothing republished, nothing acked"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  {:<24} {:>8} {:>12} {:>8} {:>8}",
            "reason", "read", "republished", "left", "failed"
        )?;
        for (reason, c) in &self.by_reason {
            writeln!(
                f,
                "  {reason:<24} {:>8} {:>12} {:>8} {:>8}",
                c.read, c.republished, c.left, c.failed
            )?;
        }
        let to = |t| self.by_target.get(&t).copied().unwrap_or(0);
        writeln!(
            f,
            "  republished to the trade topic: {}, to the gap topic: {}",
            to(Target::Trades),
            to(Target::Gaps)
        )?;
        if self.unroutable > 0 {
            writeln!(
                f,
                "  left alone, source subscription not the trade or gap one: {}",
                self.unroutable
            )?;
        }
        if self.failed() > 0 {
            writeln!(
                f,
                "  {} republish(es) failed: those letters stay on the subscription; run again",
                self.failed()
            )?;
        }
        Ok(())
    }
}

type Publishing = std::pin::Pin<
    Box<dyn Future<Output = (Result<(), String>, Handler, String, Target, String)> + Send>,
>;

/// Runs one replay (see the module doc) until idle, the limit or `shutdown`.
pub async fn run(args: &ReplayArgs, shutdown: CancellationToken) -> anyhow::Result<Summary> {
    let target = service::gcp::target(&args.project, Some(&args.pubsub), None);
    let mut summary = Summary {
        subscription: args.subscription.clone(),
        dry_run: args.dry_run,
        ..Summary::default()
    };
    if args.create_subscription {
        let admin = gcp::pubsub::Admin::connect(&target).await?;
        let spec = gcp::pubsub::SubscriptionSpec {
            ordering: false,
            ..Default::default()
        };
        summary.created = admin
            .create_subscription(&args.subscription, &args.dead_letter_topic, &spec)
            .await?;
        if summary.created {
            tracing::warn!(subscription = %args.subscription, topic = %args.dead_letter_topic,
                "created the subscription: it holds only letters published from now on");
        }
    }
    let publishers = |topic: String| {
        let target = target.clone();
        async move {
            gcp::pubsub::publisher(&target, &topic, gcp::pubsub::Batching::default())
                .await
                .with_context(|| format!("publisher for {topic}"))
        }
    };
    let trades = publishers(args.trade_topic.clone()).await?;
    let gaps = publishers(args.gap_topic.clone()).await?;
    let subscriber = gcp::pubsub::subscriber(&target).await?;
    let path = gcp::pubsub::subscription_path(&args.project, &args.subscription);
    let mut stream = subscriber
        .subscribe(path.clone())
        .set_max_outstanding_messages(args.max_outstanding)
        .set_max_lease(Duration::from_secs(3600))
        // Short leases (Pub/Sub's 10 s minimum): a letter this run leaves, or a killed run's,
        // is back soon even where a nack is not honoured. Measured on the Pub/Sub emulator: a
        // nack sent while the stream shuts down is ignored, and the letter returns ~20 s later
        // with 10 s leases (over 60 s with the client's default).
        .set_max_lease_extension(LEASE)
        .build();
    let chosen = args.chosen();
    let routes = args.routes();

    let mut held: Vec<Handler> = Vec::new();
    let mut in_flight: FuturesUnordered<Publishing> = FuturesUnordered::new();
    // A letter redelivered during the run (lease lapsed) is handled like its first copy.
    let mut replayed: HashSet<String> = HashSet::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut read = 0u64;
    let mut stream_error = None;
    loop {
        let reading = args.limit.is_none_or(|l| read < l);
        if !reading && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((result, handler, reason, target, key)) = in_flight.next(), if !in_flight.is_empty() => {
                let counts = summary.by_reason.entry(reason).or_default();
                match result {
                    Ok(()) => {
                        handler.ack();
                        counts.republished += 1;
                        *summary.by_target.entry(target).or_default() += 1;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "republish failed; the letter stays");
                        handler.nack();
                        counts.failed += 1;
                        if !key.is_empty() {
                            let publisher = if target == Target::Trades { &trades } else { &gaps };
                            publisher.resume_publish(key);
                        }
                    }
                }
            }
            next = tokio::time::timeout(args.idle, stream.next()), if reading => match next {
                Err(_idle) => {
                    if in_flight.is_empty() {
                        break;
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    stream_error = Some(e);
                    break;
                }
                Ok(Some(Ok((message, handler)))) => {
                    let id = message.message_id.clone();
                    if replayed.contains(&id) {
                        handler.ack();
                        continue;
                    }
                    if !taken.insert(id.clone()) {
                        held.push(handler);
                        continue;
                    }
                    read += 1;
                    let p = plan(&message.attributes, &message.ordering_key, routes);
                    let counts = summary.by_reason.entry(p.reason.clone()).or_default();
                    counts.read += 1;
                    let wanted = chosen.as_ref().is_none_or(|c| c.contains(&p.reason));
                    match p.target {
                        Some(t) if wanted && !args.dry_run => {
                            replayed.insert(id);
                            let publisher = if t == Target::Trades { trades.clone() } else { gaps.clone() };
                            in_flight.push(republish(publisher, message.data, p, t, handler));
                        }
                        None if wanted => {
                            tracing::warn!(message_id = %id, source = ?p.source, "letter from no known subscription; left alone");
                            summary.unroutable += 1;
                            counts.left += 1;
                            held.push(handler);
                        }
                        _ => {
                            counts.left += 1;
                            held.push(handler);
                        }
                    }
                }
            },
        }
    }
    // Settle every republish already sent, so no letter is acked without one, or left leased.
    while let Some((result, handler, reason, target, _)) = in_flight.next().await {
        let counts = summary.by_reason.entry(reason).or_default();
        if result.is_ok() {
            handler.ack();
            counts.republished += 1;
            *summary.by_target.entry(target).or_default() += 1;
        } else {
            handler.nack();
            counts.failed += 1;
        }
    }
    for handler in held {
        handler.nack();
    }
    // Let the client send those acks and nacks while the stream is still open (it flushes every
    // 100 ms). Measured on the Pub/Sub emulator: a nack sent only as the stream shuts down is
    // ignored, and the letter comes back once its lease lapses.
    tokio::time::sleep(FLUSH).await;
    stream.shutdown_token().shutdown().await;
    match stream_error {
        Some(e) => Err(anyhow::Error::new(e).context(format!("pulling {path}"))),
        None => Ok(summary),
    }
}

fn republish(
    publisher: Publisher,
    data: Bytes,
    p: Planned,
    target: Target,
    handler: Handler,
) -> Publishing {
    let mut message = Message::new().set_data(data).set_attributes(p.attributes);
    if !p.ordering_key.is_empty() {
        message = message.set_ordering_key(p.ordering_key.clone());
    }
    let sent = publisher.publish(message);
    Box::pin(async move {
        let result = sent.await.map(|_id| ()).map_err(|e| e.to_string());
        (result, handler, p.reason, target, p.ordering_key)
    })
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
