//! The `tap` binary itself: `--help` tells a stranger what they need, and Ctrl-C (SIGINT) makes
//! it delete the subscription it created before exiting successfully (Pub/Sub emulator).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use gcp::GcpTarget;
use gcp::pubsub::{Admin, SubscriptionSpec};
use pipeline_tests::{PROJECT, shared, unique_name};

const TAP: &str = env!("CARGO_BIN_EXE_tap");

#[test]
fn help_names_every_setting_and_what_tap_does_with_the_subscription() {
    let out = Command::new(TAP).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "[env: GCP_PROJECT=]",
        "[env: PUBSUB_ENDPOINT=]",
        "[env: TRADE_TOPIC=]",
        "[default: binance-trades]",
        "--symbol <SYMBOL>",
        "--limit",
        "--from-now",
        "--dedup",
        "deletes it when it exits",
        "docs/trade-topic.md",
        "--attach-existing",
        "expires after 1 day",
        "binance-trades-bq",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn ctrl_c_deletes_the_subscription_tap_created() {
    let endpoint = shared().pubsub.clone();
    let topic = unique_name("trades");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(endpoint.clone()),
        bigquery_endpoint: None,
        bigquery_grpc_endpoint: None,
    };
    let admin = rt.block_on(Admin::connect(&target)).unwrap();
    rt.block_on(admin.ensure_topic(&topic)).unwrap();

    let mut child = Command::new(TAP)
        .args(["--project", PROJECT, "--pubsub-endpoint", &endpoint])
        .args(["--topic", &topic, "--symbol", "BTCUSDT"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let name = first
        .strip_prefix("tap: created subscription ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();
    assert!(
        first.contains(r#"(filter: attributes.symbol = "BTCUSDT")"#),
        "{first}"
    );
    // Let it open its stream, then Ctrl-C.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on the pid of the child we spawned; no memory is touched.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{status:?}\n{rest}");
    assert!(
        rest.contains(&format!("tap: deleted subscription {name}")),
        "{rest}"
    );
    // It is really gone: creating it again creates it.
    let created = rt
        .block_on(admin.create_subscription(&name, &topic, &SubscriptionSpec::default()))
        .unwrap();
    assert!(created, "tap left {name} behind");
    rt.block_on(admin.delete_subscription(&name)).unwrap();
}
