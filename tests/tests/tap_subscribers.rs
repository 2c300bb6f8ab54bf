//! The trade topic's contract holds for outside subscribers (issue 9), against the Pub/Sub
//! emulator, with trades published by our Rust publisher exactly as the producer publishes them
//! (encoded `Trade`, ordering key = symbol, attributes `symbol` and `source`):
//!
//! - `tap --symbol X --limit N` (run in-process through its library, flags parsed as on the
//!   command line) and the Python example (`examples/python-subscriber`, a separate process using
//!   Google's Python client and the shipped `.proto`) each on their own subscription, see exactly
//!   symbol X's trade ids, in order, and print byte-identical JSON lines.
//! - A subscriber following the documented de-duplication rule (`docs/trade-topic.md`: the first
//!   message per `(symbol, trade_id)`) sees each id exactly once across a producer rotation
//!   (two connections publishing an overlapping stretch), a publish retry and a late,
//!   out-of-order backfill, while a subscriber without the rule sees the duplicates.
//!
//! - tap takes no one else's messages: it refuses the pipeline's own subscriptions and any
//!   existing one it did not create (their backlog stays for their owner) unless
//!   `--attach-existing`, and every subscription it creates is labelled `created-by=tap` and
//!   expires after 1 day without a reader.
//!
//! The Python venv `.venv/pysub` is made here from the example's pinned requirements if missing
//! (`scripts/lib.sh` `ensure_venv`; PyPI only).

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use clap::Parser as _;
use gcp::GcpTarget;
use gcp::pubsub::{self, Admin, Batching};
use google_cloud_pubsub::model::Message;
use pipeline_tests::{PROJECT, repo_root, shared, unique_name};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use trade_proto::{Source, Trade};

/// Everything here finishes in seconds; this only turns a hang into a failure.
const DEADLINE: Duration = Duration::from_secs(180);

fn endpoint() -> String {
    shared().pubsub.clone()
}

fn target() -> GcpTarget {
    GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(endpoint()),
        bigquery_endpoint: None,
        bigquery_grpc_endpoint: None,
    }
}

/// `connection` shifts receive_time, so that copies of one trade differ as real ones do.
fn trade(symbol: &str, id: i64, source: Source, connection: i64) -> Trade {
    Trade {
        symbol: symbol.into(),
        trade_id: id,
        price: format!("{}.{:08}", 100 + id, id),
        quantity: "0.00024000".into(),
        trade_time: 1_751_132_780_368_123 + id * 1000,
        event_time: 1_751_132_780_369_000 + id * 1000,
        receive_time: 1_751_132_780_371_999 + id * 1000 + connection,
        buyer_is_maker: id % 3 == 0,
        source: source.as_str().into(),
    }
}

/// Publishes like the producer: one publisher, ordering key = symbol, both attributes.
async fn publish(topic: &str, trades: &[Trade]) {
    let publisher = pubsub::publisher(&target(), topic, Batching::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for t in trades {
        pending.push(
            publisher.publish(
                Message::new()
                    .set_data(t.encode_to_vec())
                    .set_ordering_key(t.symbol.clone())
                    .set_attributes([("symbol", t.symbol.as_str()), ("source", t.source.as_str())]),
            ),
        );
    }
    for p in pending {
        p.await.unwrap();
    }
}

/// How many subscriptions the topic has, from the emulator's REST API (through `curl`: the
/// emulator keeps connections open whatever `Connection: close` says).
async fn subscriptions_of(topic: &str) -> usize {
    let url = format!(
        "{}/v1/projects/{PROJECT}/topics/{topic}/subscriptions",
        endpoint()
    );
    let out = tokio::process::Command::new("curl")
        .args(["-fsS", "--max-time", "5", &url])
        .output()
        .await
        .expect("curl runs");
    assert!(out.status.success(), "GET {url}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .matches("/subscriptions/")
        .count()
}

/// Waits until `n` subscribers have created their subscriptions (then nothing we publish is
/// missed by them).
async fn wait_for_subscriptions(topic: &str, n: usize) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while subscriptions_of(topic).await < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} subscriptions on {topic} within 60 s"));
}

/// Runs tap in-process with these flags; its result and stderr.
async fn try_run_tap(flags: &[&str]) -> (Result<tap::Summary, tap::RunError>, String) {
    let args = tap::Args::try_parse_from(
        [
            "tap",
            "--project",
            PROJECT,
            "--pubsub-endpoint",
            &endpoint(),
        ]
        .into_iter()
        .chain(flags.iter().copied()),
    )
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = tap::run(&args, &mut out, &mut err, CancellationToken::new()).await;
    (result, String::from_utf8(err).unwrap())
}

/// Runs tap in-process with these flags; returns its summary and stdout lines.
async fn run_tap(flags: Vec<String>) -> (tap::Summary, Vec<String>, String) {
    let args = tap::Args::try_parse_from(
        [
            "tap",
            "--project",
            PROJECT,
            "--pubsub-endpoint",
            &endpoint(),
        ]
        .into_iter()
        .map(String::from)
        .chain(flags),
    )
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = tap::run(&args, &mut out, &mut err, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("tap failed: {e}\n{}", String::from_utf8_lossy(&err)));
    let out = String::from_utf8(out).unwrap();
    (
        summary,
        out.lines().map(str::to_owned).collect(),
        String::from_utf8(err).unwrap(),
    )
}

/// Creates `.venv/pysub` from the example's requirements unless it is current.
fn ensure_python_venv() -> std::path::PathBuf {
    let root = repo_root();
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg("source scripts/lib.sh && ensure_venv pysub ../examples/python-subscriber/requirements.txt")
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(status.success(), "cannot install .venv/pysub");
    root.join(".venv/pysub/bin/python")
}

/// Runs the Python example to completion; returns its stdout lines.
async fn run_python(python: &std::path::Path, flags: &[&str]) -> Vec<String> {
    let root = repo_root();
    let output = tokio::process::Command::new(python)
        .arg(root.join("examples/python-subscriber/trade_subscriber.py"))
        .args(["--project", PROJECT, "--timeout", "120"])
        .args(flags)
        .env(
            "PUBSUB_EMULATOR_HOST",
            endpoint().trim_start_matches("http://"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python example failed:\n{stderr}");
    assert!(stderr.contains("deleted subscription"), "{stderr}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn ids_and_sources(lines: &[String]) -> Vec<(String, i64, String)> {
    lines
        .iter()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (
                v["symbol"].as_str().unwrap().to_owned(),
                v["trade_id"].as_i64().unwrap(),
                v["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_and_the_python_example_see_exactly_the_filtered_symbols_trade_ids() {
    let python = ensure_python_venv();
    let topic = unique_name("trades");
    Admin::connect(&target())
        .await
        .unwrap()
        .ensure_topic(&topic)
        .await
        .unwrap();
    // Two symbols interleaved; ids overlap across symbols on purpose.
    let mut trades = Vec::new();
    for i in 0..15 {
        trades.push(trade("BTCUSDT", 100 + i, Source::Stream, 0));
        trades.push(trade("ARBUSDT", 7 + i, Source::Stream, 0));
        trades.push(trade("BTCUSDT", 200 + i, Source::Stream, 0));
    }
    let want: Vec<i64> = (7..22).collect();

    let tap = run_tap(
        ["--topic", &topic, "--symbol", "ARBUSDT", "--limit", "15"]
            .map(String::from)
            .to_vec(),
    );
    let py_flags = ["--topic", &topic, "--symbol", "ARBUSDT", "--limit", "15"];
    let py = run_python(&python, &py_flags);
    let publisher = async {
        wait_for_subscriptions(&topic, 2).await;
        publish(&topic, &trades).await;
    };
    let all = async { tokio::join!(tap, py, publisher) };
    let ((summary, tap_lines, tap_err), py_lines, ()) = tokio::time::timeout(DEADLINE, all)
        .await
        .expect("both subscribers finish");

    let seen = ids_and_sources(&tap_lines);
    assert!(
        seen.iter().all(|(s, _, _)| s == "ARBUSDT"),
        "{seen:?}\n{tap_err}"
    );
    assert_eq!(
        seen.iter().map(|t| t.1).collect::<Vec<_>>(),
        want,
        "in order"
    );
    assert_eq!(
        py_lines, tap_lines,
        "the Python example decodes the same trades"
    );
    assert_eq!(summary.invalid, 0, "{tap_err}");
    assert!(summary.created && summary.deleted, "{summary:?}");
    assert_eq!(
        subscriptions_of(&topic).await,
        0,
        "both subscribers deleted their subscriptions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_dedup_rule_yields_each_trade_once_across_rotation_retry_and_backfill() {
    let python = ensure_python_venv();
    let topic = unique_name("trades");
    Admin::connect(&target())
        .await
        .unwrap()
        .ensure_topic(&topic)
        .await
        .unwrap();
    // What the producer publishes for BTCUSDT, in its order (one publisher, key = symbol):
    let (old, new) = (0, 7); // the two websocket connections of a make-before-break rotation
    let mut sent = Vec::new();
    sent.extend((1..=49).map(|i| trade("BTCUSDT", i, Source::Stream, old)));
    for i in 50..=60 {
        // Both connections are open and deliver the same trades.
        sent.push(trade("BTCUSDT", i, Source::Stream, old));
        sent.push(trade("BTCUSDT", i, Source::Stream, new));
    }
    sent.extend((61..=120).map(|i| trade("BTCUSDT", i, Source::Stream, new)));
    // 121..=130 lost on the stream; the stream goes on.
    sent.extend((131..=150).map(|i| trade("BTCUSDT", i, Source::Stream, new)));
    // The REST backfill of the gap arrives later, out of order.
    sent.extend((121..=130).map(|i| trade("BTCUSDT", i, Source::Backfill, new)));
    // A publish retry after a timeout whose first attempt had in fact succeeded.
    sent.extend((140..=145).map(|i| trade("BTCUSDT", i, Source::Stream, new)));
    sent.push(trade("BTCUSDT", 151, Source::Stream, new));
    // Another symbol with the same ids: the rule is per symbol, and these are filtered out.
    let mut all = sent.clone();
    all.extend((1..=20).map(|i| trade("ARBUSDT", i, Source::Stream, old)));
    let unique: BTreeSet<i64> = sent.iter().map(|t| t.trade_id).collect();
    assert_eq!(unique, (1..=151).collect());
    let duplicates = sent.len() - unique.len();
    assert_eq!(duplicates, 11 + 6);

    let flags = |dedup: bool, limit: usize| {
        let mut f = vec![
            "--topic".to_owned(),
            topic.clone(),
            "--symbol".into(),
            "BTCUSDT".into(),
            "--limit".into(),
            limit.to_string(),
        ];
        if dedup {
            f.push("--dedup".into());
        }
        f
    };
    let deduped = run_tap(flags(true, unique.len()));
    let raw = run_tap(flags(false, sent.len()));
    let limit = unique.len().to_string();
    let py_flags = [
        "--topic", &topic, "--symbol", "BTCUSDT", "--dedup", "--limit", &limit,
    ];
    let py = run_python(&python, &py_flags);
    let publisher = async {
        wait_for_subscriptions(&topic, 3).await;
        publish(&topic, &all).await;
    };
    let joined = async { tokio::join!(deduped, raw, py, publisher) };
    let ((summary, lines, err), (_, raw_lines, _), py_lines, ()) =
        tokio::time::timeout(DEADLINE, joined)
            .await
            .expect("every subscriber finishes");

    // Without the rule, the duplicates are there.
    let raw_ids: Vec<i64> = ids_and_sources(&raw_lines).iter().map(|t| t.1).collect();
    assert_eq!(raw_ids.len(), sent.len());
    assert_eq!(raw_ids.iter().collect::<BTreeSet<_>>().len(), unique.len());

    // With it, each id exactly once, the backfilled ones marked as such.
    let seen = ids_and_sources(&lines);
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for (symbol, id, source) in &seen {
        assert_eq!(symbol, "BTCUSDT");
        *counts.entry(*id).or_default() += 1;
        let want = if (121..=130).contains(id) {
            "backfill"
        } else {
            "stream"
        };
        assert_eq!(source, want, "trade {id}");
    }
    assert_eq!(counts.len(), unique.len(), "{err}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(
        summary.duplicates as usize, duplicates,
        "ordered delivery: every duplicate came before the last new id"
    );
    // The first copy is kept: the old connection's copy of the overlap.
    let first_55 = lines
        .iter()
        .find(|l| l.contains("\"trade_id\":55,"))
        .unwrap();
    let kept: serde_json::Value = serde_json::from_str(first_55).unwrap();
    assert_eq!(
        kept["receive_time"].as_i64(),
        Some(trade("BTCUSDT", 55, Source::Stream, old).receive_time)
    );
    // The Python example, following the same documented rule, prints the same trades.
    assert_eq!(py_lines, lines);
}

/// Pulls `sub` until nothing arrives for 3 s; acks and returns the trade ids.
async fn drain_ids(sub: &str) -> Vec<i64> {
    let subscriber = pubsub::subscriber(&target()).await.unwrap();
    let mut stream = subscriber
        .subscribe(pubsub::subscription_path(PROJECT, sub))
        .build();
    let mut ids = Vec::new();
    while let Ok(Some(next)) = tokio::time::timeout(Duration::from_secs(3), stream.next()).await {
        let (m, h) = next.unwrap();
        h.ack();
        ids.push(Trade::decode(m.data.as_ref()).unwrap().trade_id);
    }
    // Let the acks go out while the stream is open (the emulator ignores a nack sent only as a
    // stream shuts down; acks are given the same chance).
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream.shutdown_token().shutdown().await;
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_takes_no_one_else_s_subscription_and_leaves_its_backlog_to_its_owner() {
    let topic = unique_name("trades");
    let owner = unique_name("owner");
    let admin = Admin::connect(&target()).await.unwrap();
    admin.ensure_topic(&topic).await.unwrap();
    let plain = gcp::pubsub::SubscriptionSpec::default();
    admin
        .ensure_subscription(&owner, &topic, &plain)
        .await
        .unwrap();
    let trades: Vec<Trade> = (1..=5)
        .map(|i| trade("BTCUSDT", i, Source::Stream, 0))
        .collect();
    publish(&topic, &trades).await;

    let flags = ["--topic", &topic, "--subscription", &owner, "--limit", "5"];
    let (result, _) = tokio::time::timeout(DEADLINE, try_run_tap(&flags))
        .await
        .unwrap();
    let err = result.expect_err("tap must refuse a subscription it did not create");
    assert!(err.to_string().contains("tap did not create it"), "{err}");
    // The pipeline's own: refused before anything is created.
    let (result, _) =
        try_run_tap(&["--topic", &topic, "--subscription", "binance-trades-bq"]).await;
    assert!(
        matches!(result, Err(tap::RunError::Refused { .. })),
        "{result:?}"
    );
    assert!(
        admin
            .subscription("binance-trades-bq")
            .await
            .unwrap()
            .is_none()
    );

    // Its owner still has every message.
    assert_eq!(drain_ids(&owner).await, vec![1, 2, 3, 4, 5]);

    // --attach-existing: the user insists, tap drains it.
    publish(&topic, &trades).await;
    let (result, err) = tokio::time::timeout(
        DEADLINE,
        try_run_tap(&[
            "--topic",
            &topic,
            "--subscription",
            &owner,
            "--attach-existing",
            "--limit",
            "5",
        ]),
    )
    .await
    .unwrap();
    let summary = result.unwrap_or_else(|e| panic!("{e}\n{err}"));
    assert_eq!(
        (summary.printed, summary.created, summary.deleted),
        (5, false, false)
    );
    admin.delete_subscription(&owner).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_s_own_subscriptions_are_labelled_expire_after_a_day_and_can_be_reused() {
    let topic = unique_name("trades");
    let mine = unique_name("mine");
    let admin = Admin::connect(&target()).await.unwrap();
    admin.ensure_topic(&topic).await.unwrap();
    let flags = [
        "--topic",
        topic.as_str(),
        "--subscription",
        mine.as_str(),
        "--keep",
        "--limit",
        "0",
    ];
    let (result, err) = try_run_tap(&flags).await;
    let summary = result.unwrap_or_else(|e| panic!("{e}\n{err}"));
    assert!(summary.created && !summary.deleted, "{summary:?}");
    let info = admin.subscription(&mine).await.unwrap().expect("kept");
    assert_eq!(
        info.labels.get("created-by").map(String::as_str),
        Some("tap"),
        "{info:?}"
    );
    assert_eq!(
        info.expire_after,
        Some(Duration::from_secs(86_400)),
        "{info:?}"
    );
    // Coming back to it (--keep's purpose) needs no flag: tap created it.
    let (result, err) = try_run_tap(&flags).await;
    let again = result.unwrap_or_else(|e| panic!("{e}\n{err}"));
    assert!(!again.created, "{again:?}");
    admin.delete_subscription(&mine).await.unwrap();
}
