//! The subscription's life cycle and the print loop.
//!
//! 1. Create the subscription (a temporary `tap-<pid>-<millis>`, or the one `--subscription`
//!    names, created if missing) with ordering enabled, the filter from the flags, the label
//!    `created-by=tap` and an expiration after 1 day without activity, so a tap that crashed
//!    before deleting it leaves nothing behind for good. An existing subscription is used only
//!    if tap created it, unless `--attach-existing`: tap acks everything it receives, which on
//!    someone else's subscription (the consumer's `binance-trades-bq`) takes the messages away
//!    from their owner. The pipeline's own subscription names are refused before anything is
//!    created.
//! 2. With `--from-now`, seek it to now (drops a reused subscription's backlog).
//! 3. Stream: decode, validate, de-duplicate ([`crate::inspect`]), print, acknowledge.
//! 4. Stop on `--limit`, on the cancellation token (Ctrl-C/SIGTERM in `main`), when stdout is
//!    closed (`tap | head`) or on a stream error; then drain pending acks and delete the
//!    subscription if this run created it (unless `--keep`). The deletion happens on every one
//!    of these paths, errors included.
//!
//! Delivery: tap acknowledges every message it receives, printed or not; it is an observer.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gcp::GcpTarget;
use gcp::pubsub::{self, Admin, PubsubError, SubscriptionInfo, SubscriptionSpec};
use tokio_util::sync::CancellationToken;

use crate::cli::{Args, Format};
use crate::dedup::Dedup;
use crate::inspect::{Verdict, Wanted, inspect};
use crate::render;

/// Why tap stopped with an error. The subscription it created is deleted before this is
/// returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Creating, seeking or deleting the subscription failed (wrong project, topic missing, no
    /// permission, endpoint down); the message names the resource.
    #[error(transparent)]
    Pubsub(#[from] PubsubError),
    /// The message stream failed permanently (subscription deleted under us, permission revoked).
    #[error("the Pub/Sub stream on {subscription} failed: {source}")]
    Stream {
        /// The full subscription path.
        subscription: String,
        /// The client's error.
        source: google_cloud_pubsub::Error,
    },
    /// Writing to stderr failed.
    #[error("cannot write to stderr: {0}")]
    Stderr(#[source] io::Error),
    /// The subscription belongs to someone else; tap would ack its messages away from them.
    #[error("refusing to attach to subscription {subscription}: {why}")]
    Refused {
        /// The short name.
        subscription: String,
        /// Why, and how to insist.
        why: String,
    },
}

/// The pipeline's own subscriptions (the names Terraform gives them).
pub const PIPELINE_SUBSCRIPTIONS: [&str; 3] = [
    "binance-trades-bq",
    "binance-gaps-bq",
    "binance-trades-dead-letter-sub",
];

/// The label tap puts on every subscription it creates, and looks for before reusing one.
pub const CREATED_BY: (&str, &str) = ("created-by", "tap");

/// Inactivity after which a subscription tap created expires: 1 day, Pub/Sub's minimum TTL
/// (`Subscription.expiration_policy`; sources in `docs/trade-topic.md`).
pub const EXPIRE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Unacked retention of tap's subscriptions: 12 hours, shorter than [`EXPIRE_AFTER`] (an
/// observer needs no week of backlog, and retention outliving the subscription means nothing).
pub const RETENTION: Duration = Duration::from_secs(12 * 3600);

/// The subscription's settings from the flags.
pub fn subscription_spec(args: &Args) -> SubscriptionSpec {
    SubscriptionSpec {
        filter: args.subscription_filter(),
        expire_after: Some(EXPIRE_AFTER),
        message_retention: Some(RETENTION),
        labels: BTreeMap::from([(CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned())]),
        ..SubscriptionSpec::default()
    }
}

/// Before anything is created: one of the pipeline's own names is refused without
/// `--attach-existing` (creating it would even compete with Terraform's).
pub fn check_name(name: &str, attach_existing: bool) -> Result<(), RunError> {
    if PIPELINE_SUBSCRIPTIONS.contains(&name) && !attach_existing {
        return Err(RunError::Refused {
            subscription: name.to_owned(),
            why: "it is the pipeline's own: tap acks every message it receives, so they would \
                  never reach their consumer (trades never land in BigQuery). Leave out \
                  --subscription for a temporary one of your own; --attach-existing insists"
                .to_owned(),
        });
    }
    Ok(())
}

/// An existing subscription (not created by this run) is reused only if tap created it.
pub fn check_existing(
    name: &str,
    existing: Option<&SubscriptionInfo>,
    attach_existing: bool,
) -> Result<(), RunError> {
    let ours = existing
        .is_some_and(|s| s.labels.get(CREATED_BY.0).map(String::as_str) == Some(CREATED_BY.1));
    if ours || attach_existing {
        return Ok(());
    }
    Err(RunError::Refused {
        subscription: name.to_owned(),
        why: "it exists and tap did not create it (no label created-by=tap): tap acks every \
              message it receives, taking them away from the subscription's owner. Pick a new \
              name, or --attach-existing if it is yours to drain"
            .to_owned(),
    })
}

/// What a run did; printed on stderr at the end by `main`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The subscription's short name.
    pub subscription: String,
    /// Whether this run created it.
    pub created: bool,
    /// Whether it was deleted at the end.
    pub deleted: bool,
    /// Trades printed on stdout.
    pub printed: u64,
    /// Messages reported as invalid on stderr.
    pub invalid: u64,
    /// Duplicates dropped by `--dedup`.
    pub duplicates: u64,
    /// Valid trades of symbols or sources not asked for, skipped on our side.
    pub not_wanted: u64,
    /// Why the loop ended.
    pub stop: Stop,
}

/// Why the print loop ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stop {
    /// `--limit` trades printed.
    Limit,
    /// Ctrl-C, SIGTERM, or the caller's token.
    #[default]
    Cancelled,
    /// stdout was closed.
    OutputClosed,
    /// The server ended the stream.
    StreamEnded,
}

/// A temporary subscription name: starts with a letter, 3..=255 characters of `[a-z0-9-]`
/// (Pub/Sub's resource name rules, <https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names>).
fn temporary_name() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("tap-{}-{millis}", std::process::id())
}

/// Runs tap until the limit, the token, a closed stdout or an error.
pub async fn run<W: Write, E: Write>(
    args: &Args,
    out: &mut W,
    err: &mut E,
    shutdown: CancellationToken,
) -> Result<Summary, RunError> {
    let target = service::gcp::target(&args.project, Some(&args.pubsub), None);
    let name = args.subscription.clone().unwrap_or_else(temporary_name);
    check_name(&name, args.attach_existing)?;
    let admin = Admin::connect(&target).await?;
    let spec = subscription_spec(args);
    let filter = spec.filter.clone();
    let created = admin.create_subscription(&name, &args.topic, &spec).await?;
    if !created {
        let existing = admin.subscription(&name).await?;
        check_existing(&name, existing.as_ref(), args.attach_existing)?;
    }
    let mut summary = Summary {
        subscription: name.clone(),
        created,
        ..Summary::default()
    };
    writeln!(
        err,
        "tap: {} subscription {name} on topic {} (filter: {})",
        if created { "created" } else { "reusing" },
        args.topic,
        filter.as_deref().unwrap_or("none")
    )
    .map_err(RunError::Stderr)?;

    let result = match seek_if_asked(args, &admin, &name).await {
        Ok(()) => stream(args, &target, &name, out, err, shutdown, &mut summary).await,
        Err(e) => Err(e),
    };

    if created && !args.keep {
        admin.delete_subscription(&name).await?;
        summary.deleted = true;
        writeln!(err, "tap: deleted subscription {name}").map_err(RunError::Stderr)?;
    } else if created {
        writeln!(err, "tap: kept subscription {name} (--keep)").map_err(RunError::Stderr)?;
    }
    result.map(|()| summary)
}

async fn seek_if_asked(args: &Args, admin: &Admin, name: &str) -> Result<(), RunError> {
    if args.from_now {
        admin.seek_to_time(name, SystemTime::now()).await?;
    }
    Ok(())
}

/// What the select in the loop produced.
// One short-lived value per message on the stack: boxing the message would cost more.
#[allow(clippy::large_enum_variant)]
enum Event {
    Cancelled,
    Next(Option<google_cloud_pubsub::Result<(google_cloud_pubsub::model::Message, Handler)>>),
}

type Handler = google_cloud_pubsub::subscriber::handler::Handler;

async fn stream<W: Write, E: Write>(
    args: &Args,
    target: &GcpTarget,
    name: &str,
    out: &mut W,
    err: &mut E,
    shutdown: CancellationToken,
    summary: &mut Summary,
) -> Result<(), RunError> {
    let path = pubsub::subscription_path(&target.project, name);
    let subscriber = pubsub::subscriber(target).await?;
    let mut messages = subscriber.subscribe(path.clone()).build();
    let drain = messages.shutdown_token();
    let mut dedup = args.dedup.then(Dedup::default);
    let mut outcome = Ok(());

    if args.format == Format::Table
        && writeln!(out, "{}", render::table_header())
            .and_then(|()| out.flush())
            .is_err()
    {
        summary.stop = Stop::OutputClosed;
        drain.shutdown().await;
        return Ok(());
    }

    summary.stop = loop {
        if args.limit.is_some_and(|limit| summary.printed >= limit) {
            break Stop::Limit;
        }
        let event = tokio::select! {
            biased;
            () = shutdown.cancelled() => Event::Cancelled,
            next = messages.next() => Event::Next(next),
        };
        let (message, handler) = match event {
            Event::Cancelled => break Stop::Cancelled,
            Event::Next(None) => break Stop::StreamEnded,
            Event::Next(Some(Err(source))) => {
                outcome = Err(RunError::Stream {
                    subscription: path.clone(),
                    source,
                });
                break Stop::StreamEnded;
            }
            Event::Next(Some(Ok(item))) => item,
        };
        let attributes: &HashMap<String, String> = &message.attributes;
        let wanted = Wanted {
            symbols: &args.symbols,
            source: args.source,
        };
        let verdict = inspect(&message.data, attributes, wanted, dedup.as_mut());
        handler.ack();
        match verdict {
            Verdict::Print(trade) => {
                let line = match args.format {
                    Format::Json => render::json_line(&trade),
                    Format::Table => render::table_row(&trade),
                };
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    break Stop::OutputClosed;
                }
                summary.printed += 1;
            }
            Verdict::Invalid(reason) => {
                summary.invalid += 1;
                writeln!(err, "tap: invalid message {}: {reason}", message.message_id)
                    .map_err(RunError::Stderr)?;
            }
            Verdict::Duplicate => summary.duplicates += 1,
            Verdict::NotWanted => {
                if summary.not_wanted == 0 {
                    writeln!(
                        err,
                        "tap: the subscription delivers trades its filter should exclude (the emulator does not apply filters, or a reused subscription has another); skipping them"
                    )
                    .map_err(RunError::Stderr)?;
                }
                summary.not_wanted += 1;
            }
        }
    };
    // Let the acks reach the server before the subscription goes away or the process exits.
    drain.shutdown().await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn existing(labels: &[(&str, &str)]) -> SubscriptionInfo {
        SubscriptionInfo {
            topic: "projects/p/topics/binance-trades".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            expire_after: None,
            filter: String::new(),
        }
    }

    #[test]
    fn the_pipeline_s_own_subscriptions_are_refused_unless_insisted() {
        for name in PIPELINE_SUBSCRIPTIONS {
            let err = check_name(name, false).unwrap_err().to_string();
            assert!(
                err.contains("pipeline's own") && err.contains("--attach-existing"),
                "{err}"
            );
            check_name(name, true).unwrap();
        }
        check_name("tap-1-2", false).unwrap();
        check_name("my-look", false).unwrap();
    }

    #[test]
    fn an_existing_subscription_is_reused_only_if_tap_created_it() {
        let mine = existing(&[CREATED_BY]);
        check_existing("s", Some(&mine), false).unwrap();
        let theirs = existing(&[("team", "analytics")]);
        let err = check_existing("s", Some(&theirs), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tap did not create it"), "{err}");
        check_existing("s", Some(&theirs), true).unwrap();
        // Gone between the create and the look-up: not known to be ours.
        assert!(check_existing("s", None, false).is_err());
    }

    #[test]
    fn every_subscription_tap_creates_is_labelled_and_expires_after_a_day() {
        let args = Args::try_parse_from(["tap", "--project", "p", "--symbol", "BTCUSDT"]).unwrap();
        let spec = subscription_spec(&args);
        assert_eq!(spec.expire_after, Some(Duration::from_secs(86_400)));
        assert!(spec.message_retention.unwrap() < spec.expire_after.unwrap());
        assert_eq!(
            spec.labels.get("created-by").map(String::as_str),
            Some("tap")
        );
        assert_eq!(
            spec.filter.as_deref(),
            Some(r#"attributes.symbol = "BTCUSDT""#)
        );
        assert!(spec.ordering);
    }
}
