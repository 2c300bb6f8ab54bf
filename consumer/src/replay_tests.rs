//! `consumer replay` against fakes: which letters go back where, and what is left alone.

use super::*;
use crate::dead_letter::letter_attributes;
use crate::decode::{Poison, Reason};

const ROUTES: Routes = Routes {
    trades: "binance-trades-bq",
    gaps: "binance-gaps-bq",
};

fn original() -> HashMap<String, String> {
    [("symbol", "BTCUSDT"), ("source", "stream")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The consumer's own letter (as `PubsubDeadLetter` publishes it) comes back with exactly
/// the original attributes and ordering key.
#[test]
fn a_consumer_letter_goes_back_with_its_original_attributes_and_key() {
    let poison = Poison::new(Reason::RejectedByBigQuery, "row 3: bad");
    let mut attrs = letter_attributes(&original(), &poison, "binance-trades-bq", "m-7");
    attrs.insert("original_ordering_key".into(), "BTCUSDT".into());
    let p = plan(&attrs, "", ROUTES);
    assert_eq!(p.reason, "rejected_by_bigquery");
    assert_eq!(p.source.as_deref(), Some("binance-trades-bq"));
    assert_eq!(p.target, Some(Target::Trades));
    assert_eq!(p.attributes, original());
    assert_eq!(p.ordering_key, "BTCUSDT");
}

#[test]
fn a_gap_letter_gets_its_own_reason_attribute_back() {
    let gap: HashMap<String, String> = [
        ("symbol".to_owned(), "STXUSDT".to_owned()),
        ("reason".to_owned(), "ids_unavailable".to_owned()),
    ]
    .into();
    let poison = Poison::new(Reason::RejectedByBigQuery, "row 0: bad");
    let attrs = letter_attributes(&gap, &poison, "binance-gaps-bq", "m-1");
    let p = plan(&attrs, "", ROUTES);
    assert_eq!(p.reason, "rejected_by_bigquery");
    assert_eq!(p.target, Some(Target::Gaps));
    assert_eq!(p.attributes, gap);
}

#[test]
fn a_letter_pubsub_forwarded_is_a_max_delivery_attempts_letter_of_its_source() {
    let mut attrs = original();
    for (k, v) in [
        ("CloudPubSubDeadLetterSourceSubscription", "binance-gaps-bq"),
        ("CloudPubSubDeadLetterSourceSubscriptionProject", "p"),
        ("CloudPubSubDeadLetterSourceDeliveryCount", "5"),
        (
            "CloudPubSubDeadLetterSourceTopicPublishTime",
            "2025-01-01T00:00:00Z",
        ),
    ] {
        attrs.insert(k.into(), v.into());
    }
    let p = plan(&attrs, "STXUSDT", ROUTES);
    assert_eq!(p.reason, MAX_DELIVERY_ATTEMPTS);
    assert_eq!(p.target, Some(Target::Gaps));
    assert_eq!(p.attributes, original());
    assert_eq!(p.ordering_key, "STXUSDT", "the message's own key");
}

#[test]
fn a_letter_from_another_subscription_has_no_target() {
    let poison = Poison::new(Reason::Undecodable, "x");
    let attrs = letter_attributes(&original(), &poison, "someone-elses-sub", "m");
    let p = plan(&attrs, "", ROUTES);
    assert_eq!((p.reason.as_str(), p.target), ("undecodable", None));
    let path = letter_attributes(
        &original(),
        &poison,
        "projects/p/subscriptions/binance-trades-bq",
        "m",
    );
    assert_eq!(plan(&path, "", ROUTES).target, Some(Target::Trades));
}

fn parse(args: &[&str]) -> Result<ReplayArgs, clap::Error> {
    let mut all = vec!["consumer replay", "--project", "p"];
    all.extend_from_slice(args);
    ReplayArgs::try_parse_from(all)
}

#[test]
fn a_reason_must_be_chosen_unless_dry_run() {
    let err = parse(&[]).unwrap_err().to_string();
    assert!(err.contains("--reason"), "{err}");
    assert_eq!(
        parse(&["--dry-run"]).unwrap().chosen(),
        Some(BTreeSet::new())
    );
    assert_eq!(parse(&["--all-reasons"]).unwrap().chosen(), None);
    let two = parse(&["--reason", "rejected_by_bigquery,max_delivery_attempts"]).unwrap();
    assert_eq!(
        two.chosen().unwrap(),
        BTreeSet::from([
            "max_delivery_attempts".into(),
            "rejected_by_bigquery".into()
        ])
    );
    assert!(parse(&["--reason", "x", "--all-reasons"]).is_err());
}

#[test]
fn every_flag_has_an_env_fallback_and_help() {
    use clap::CommandFactory as _;
    let cmd = ReplayArgs::command();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        assert!(arg.get_env().is_some(), "--{id} has no env fallback");
        assert!(arg.get_help().is_some(), "--{id} has no help");
    }
    cmd.debug_assert();
}

#[test]
fn the_summary_says_what_happened_by_reason() {
    let mut s = Summary {
        subscription: "dl".into(),
        ..Summary::default()
    };
    s.by_reason.insert(
        "rejected_by_bigquery".into(),
        Counts {
            read: 3,
            republished: 3,
            ..Counts::default()
        },
    );
    s.by_reason.insert(
        "undecodable".into(),
        Counts {
            read: 1,
            left: 1,
            ..Counts::default()
        },
    );
    s.by_target.insert(Target::Trades, 3);
    let text = s.to_string();
    assert!(
        text.starts_with("replay: read 4 dead letter(s) from dl\n"),
        "{text}"
    );
    assert!(
        text.contains("rejected_by_bigquery            3            3"),
        "{text}"
    );
    assert!(text.contains("republished to the trade topic: 3, to the gap topic: 0"));
    assert_eq!((s.read(), s.republished(), s.failed()), (4, 3, 0));
}
