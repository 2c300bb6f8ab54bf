//! The trade archive over HTTP: files unzip to the tape's trades (the same as REST
//! `historicalTrades`), checksums verify, and each injected fault is visible to a client.

mod common;

use std::io::{Cursor, Read};
use std::time::Duration;

use binance_sim::{ArchiveFault, ArchiveFaultKind, FaultRequest, SimConfig, SimHandle};
use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// 2025-01-03 12:00 UTC: days on both sides of the 2025-01-01 switch to µs are published.
const START: i64 = 1_735_905_600_000;
/// 2024-12-30 00:00 UTC: the listing day.
const GENESIS: i64 = 1_735_516_800_000;

fn config() -> SimConfig {
    SimConfig {
        start_time_ms: Some(START),
        genesis_ms: Some(GENESIS),
        // 200 BTC trades/s live, 0.2/s in history: ~17,000 rows a day, quick in debug builds.
        history_rate_multiplier: 0.001,
        ..test_config()
    }
}

fn url(sim: &SimHandle, granularity: &str, symbol: &str, label: &str, checksum: bool) -> String {
    format!(
        "{}/data/spot/{granularity}/trades/{symbol}/{symbol}-trades-{label}.zip{}",
        sim.archive_base_url(),
        if checksum { ".CHECKSUM" } else { "" }
    )
}

async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let r = get(url).await;
    let status = r.status().as_u16();
    (status, r.bytes().await.expect("body").to_vec())
}

/// The checksum file's digest, after checking its format.
async fn checksum(sim: &SimHandle, granularity: &str, symbol: &str, label: &str) -> String {
    let (status, body) = fetch(&url(sim, granularity, symbol, label, true)).await;
    assert_eq!(status, 200);
    let body = String::from_utf8(body).unwrap();
    let (digest, name) = body.split_once("  ").expect("two spaces");
    assert_eq!(name, format!("{symbol}-trades-{label}.zip\n"));
    assert_eq!(digest.len(), 64);
    digest.to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn unzip(zip: &[u8]) -> (String, String) {
    let mut a = zip::ZipArchive::new(Cursor::new(zip)).expect("a zip");
    assert_eq!(a.len(), 1);
    let mut f = a.by_index(0).unwrap();
    let mut body = String::new();
    f.read_to_string(&mut body).unwrap();
    (f.name().unwrap().to_string(), body)
}

/// Fetch a file, check it against its checksum, return its CSV rows split into fields.
async fn rows(sim: &SimHandle, granularity: &str, symbol: &str, label: &str) -> Vec<Vec<String>> {
    let digest = checksum(sim, granularity, symbol, label).await;
    let (status, zip) = fetch(&url(sim, granularity, symbol, label, false)).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&zip), digest, "checksum verifies");
    let (entry, csv) = unzip(&zip);
    assert_eq!(entry, format!("{symbol}-trades-{label}.csv"));
    csv.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

async fn historical(sim: &SimHandle, symbol: &str, from_id: &str, micros: bool) -> Vec<Value> {
    let mut req = reqwest::Client::new().get(format!(
        "{}/api/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000",
        sim.rest_base_url()
    ));
    if micros {
        req = req.header("X-MBX-TIME-UNIT", "MICROSECOND");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

fn ids(rows: &[Vec<String>]) -> Vec<u64> {
    rows.iter().map(|r| r[0].parse().unwrap()).collect()
}

fn assert_no_such_key(status: u16, body: &[u8], what: &str) {
    assert_eq!(status, 404, "{what}");
    let body = String::from_utf8_lossy(body);
    assert!(body.contains("<Code>NoSuchKey</Code>"), "{what}: {body}");
}

#[tokio::test]
async fn days_unzip_to_the_rest_trades_in_the_right_time_unit() {
    let sim = start(config()).await;
    let mut next_id: Option<u64> = None;
    for (label, micros) in [
        ("2024-12-31", false),
        ("2025-01-01", true),
        ("2025-01-02", true),
    ] {
        let rows = rows(&sim, "daily", "BTCUSDT", label).await;
        assert!(rows.len() > 10_000, "{label}: {} rows", rows.len());
        let first: u64 = rows[0][0].parse().unwrap();
        if let Some(n) = next_id {
            assert_eq!(first, n, "{label} continues the previous day");
        }
        for w in rows.windows(2) {
            assert_eq!(
                w[1][0].parse::<u64>().unwrap(),
                w[0][0].parse::<u64>().unwrap() + 1
            );
        }
        next_id = Some(rows.last().unwrap()[0].parse::<u64>().unwrap() + 1);
        // The first 1000 rows are what REST answers for the same ids, in the file's unit.
        let rest = historical(&sim, "BTCUSDT", &rows[0][0], micros).await;
        assert_eq!(rest.len(), 1000);
        for (row, t) in rows.iter().zip(&rest) {
            assert_eq!(row[0], t["id"].as_u64().unwrap().to_string());
            assert_eq!(row[1], t["price"].as_str().unwrap());
            assert_eq!(row[2], t["qty"].as_str().unwrap());
            assert_eq!(row[3], t["quoteQty"].as_str().unwrap());
            assert_eq!(row[4], t["time"].as_i64().unwrap().to_string());
            let m = if t["isBuyerMaker"].as_bool().unwrap() {
                "True"
            } else {
                "False"
            };
            assert_eq!(row[5], m);
            assert_eq!(row[6], "True");
        }
        let time: i64 = rows[0][4].parse().unwrap();
        let day_start_ms = binance_sim::archive::Period::parse("daily", label)
            .unwrap()
            .start_ms();
        let want = if micros {
            day_start_ms * 1000
        } else {
            day_start_ms
        };
        assert!(
            (want..want + if micros { 86_400_000_000 } else { 86_400_000 }).contains(&time),
            "{label}: time {time} in the file's unit"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_month_is_its_days_and_the_listing_day_starts_at_the_first_id() {
    let sim = start(config()).await;
    let month = rows(&sim, "monthly", "ARBUSDT", "2024-12").await;
    let mut days = rows(&sim, "daily", "ARBUSDT", "2024-12-30").await;
    assert_eq!(
        days[0][0],
        sim.ground_truth().symbols["ARBUSDT"]
            .genesis_first_id
            .to_string(),
        "the listing day starts at the symbol's first trade"
    );
    days.extend(rows(&sim, "daily", "ARBUSDT", "2024-12-31").await);
    assert!(!days.is_empty());
    assert_eq!(month, days);
    sim.shutdown().await;
}

#[tokio::test]
async fn unpublished_files_answer_no_such_key() {
    let sim = start(config()).await;
    for (g, sym, label, what) in [
        ("daily", "BTCUSDT", "2025-01-03", "today"),
        ("daily", "BTCUSDT", "2024-12-29", "before listing"),
        ("monthly", "BTCUSDT", "2025-01", "month not ended"),
        ("daily", "DOGEUSDT", "2025-01-01", "unknown symbol"),
        ("daily", "BTCUSDT", "2025-1-1", "unpadded date"),
        (
            "monthly",
            "BTCUSDT",
            "2025-01-01",
            "daily label under monthly",
        ),
    ] {
        for checksum in [false, true] {
            let (status, body) = fetch(&url(&sim, g, sym, label, checksum)).await;
            assert_no_such_key(status, &body, what);
        }
    }
    let (status, body) = fetch(&format!(
        "{}/data/spot/daily/trades/BTCUSDT/ARBUSDT-trades-2025-01-01.zip",
        sim.archive_base_url()
    ))
    .await;
    assert_no_such_key(status, &body, "another symbol's file name");
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_day_set_through_the_admin_api() {
    let sim = start(config()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/admin/faults", sim.rest_base_url()))
        .body(
            r#"{"archive_faults": [{"symbol": "BTCUSDT", "period": "2025-01-01", "kind": "missing"}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let settings: Value = r.json().await.unwrap();
    assert_eq!(settings["archive"][0]["kind"], "missing");
    for checksum in [false, true] {
        let (status, body) = fetch(&url(&sim, "daily", "BTCUSDT", "2025-01-01", checksum)).await;
        assert_no_such_key(status, &body, "missing day");
    }
    // Only that file: the next day and another symbol's same day are served.
    assert_eq!(
        fetch(&url(&sim, "daily", "BTCUSDT", "2025-01-02", false))
            .await
            .0,
        200
    );
    assert_eq!(
        fetch(&url(&sim, "daily", "ARBUSDT", "2025-01-01", false))
            .await
            .0,
        200
    );
    // A bad period is refused, naming the field.
    let r = reqwest::Client::new()
        .post(format!("{}/admin/faults", sim.rest_base_url()))
        .body(r#"{"archive_faults": [{"symbol": "BTCUSDT", "period": "2025-1-1", "kind": "missing"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("period"));
    sim.shutdown().await;
}

fn fault(symbol: &str, period: &str, kind: ArchiveFaultKind) -> ArchiveFault {
    ArchiveFault {
        symbol: symbol.into(),
        period: period.into(),
        kind,
    }
}

#[tokio::test]
async fn truncated_zip_and_wrong_checksum_from_the_config() {
    let mut cfg = config();
    cfg.faults.archive = vec![
        fault("BTCUSDT", "2024-12-31", ArchiveFaultKind::Truncated),
        fault("ARBUSDT", "2024-12-31", ArchiveFaultKind::WrongChecksum),
    ];
    let sim = start(cfg).await;
    // Truncated: the checksum is the true one, the bytes are not, and they do not unzip.
    let digest = checksum(&sim, "daily", "BTCUSDT", "2024-12-31").await;
    let (status, cut) = fetch(&url(&sim, "daily", "BTCUSDT", "2024-12-31", false)).await;
    assert_eq!(status, 200);
    assert_ne!(sha256_hex(&cut), digest);
    assert!(zip::ZipArchive::new(Cursor::new(&cut)).is_err());
    let full = binance_sim::archive::build(
        sim.tape(),
        0,
        binance_sim::archive::Period::parse("daily", "2024-12-31").unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(
        sha256_hex(&full.zip),
        digest,
        "the checksum names the true file"
    );
    assert!(full.zip.starts_with(&cut) && cut.len() < full.zip.len());
    // Wrong checksum: an intact zip whose digest is not the one announced.
    let digest = checksum(&sim, "daily", "ARBUSDT", "2024-12-31").await;
    let (status, zip) = fetch(&url(&sim, "daily", "ARBUSDT", "2024-12-31", false)).await;
    assert_eq!(status, 200);
    assert_ne!(sha256_hex(&zip), digest);
    assert!(!unzip(&zip).1.is_empty(), "the zip itself is fine");
    // Clearing restores both.
    sim.apply_faults(FaultRequest {
        clear_archive_faults: true,
        ..Default::default()
    })
    .unwrap();
    let _ = rows(&sim, "daily", "BTCUSDT", "2024-12-31").await;
    let _ = rows(&sim, "daily", "ARBUSDT", "2024-12-31").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn late_and_reuploaded_files_change_when_the_clock_passes() {
    let sim = start(config()).await;
    let at = sim.now_ms() + 1_500;
    sim.apply_faults(FaultRequest {
        archive_faults: Some(vec![
            fault(
                "BTCUSDT",
                "2025-01-02",
                ArchiveFaultKind::Late {
                    available_at_ms: at,
                },
            ),
            fault(
                "ARBUSDT",
                "2025-01-02",
                ArchiveFaultKind::Reuploaded { at_ms: at },
            ),
        ]),
        ..Default::default()
    })
    .unwrap();
    for checksum in [false, true] {
        let (status, body) = fetch(&url(&sim, "daily", "BTCUSDT", "2025-01-02", checksum)).await;
        assert_no_such_key(status, &body, "not uploaded yet");
    }
    // The first upload verifies against its own checksum but lacks a stretch of ids.
    let first = rows(&sim, "daily", "ARBUSDT", "2025-01-02").await;
    let first_digest = checksum(&sim, "daily", "ARBUSDT", "2025-01-02").await;
    let holes = ids(&first).windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert_eq!(holes, 1, "one hole in the first upload");
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert!(sim.now_ms() >= at);
    let late = rows(&sim, "daily", "BTCUSDT", "2025-01-02").await;
    assert!(!late.is_empty(), "uploaded late");
    let second = rows(&sim, "daily", "ARBUSDT", "2025-01-02").await;
    assert_ne!(
        checksum(&sim, "daily", "ARBUSDT", "2025-01-02").await,
        first_digest
    );
    let ids2 = ids(&second);
    assert!(ids2.windows(2).all(|w| w[1] == w[0] + 1), "complete now");
    assert_eq!(ids2.first(), ids(&first).first());
    assert_eq!(ids2.last(), ids(&first).last());
    assert!(second.len() > first.len());
    sim.shutdown().await;
}
