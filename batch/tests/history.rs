//! `batch history` against the simulator's trade archive and bqemulator: 30 days of 4 symbols,
//! one missing day and one file with a wrong checksum, then a rerun.
//!
//! History trades slowly here (`history_rate_multiplier`: a few hundred trades a symbol-day) so
//! that 120 files load into the emulator in a minute or two; paths, zips, checksums and the REST
//! fills are the same as at full rate.

use std::collections::BTreeMap;
use std::time::Instant;

use batch::archive::continuity::Outcome;
use batch::commands::{HistoryRequest, HistoryRun};
use batch::day::Day;
use batch::history::Shard;
use batch::progress::Silent;
use binance::RestConfig;
use binance::archive::{ArchiveClient, ArchiveConfig};
use binance_sim::{ArchiveFault, ArchiveFaultKind, FaultRequest, Sim, SimConfig};
use pipeline_tests::PROJECT;

mod common;
use common::{SERIAL, batch_for, count, now_us, yesterday};

const SYMBOLS: [&str; 4] = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"];
const DAYS: i64 = 30;

fn days_before(day: Day, n: i64) -> Day {
    Day::containing_ms(day.start_ms() - n * 86_400_000)
}

/// Every stored trade of `symbol` (from `trades_raw`: each row, duplicates included) as
/// (id, price in 1e-8, qty in 1e-8, time µs, buyer is maker, source).
async fn stored(batch: &batch::Batch, symbol: &str) -> Vec<(i64, i64, i64, i64, bool, String)> {
    let sql = format!(
        "SELECT trade_id, CAST(price * 100000000 AS INT64) AS p, CAST(quantity * 100000000 AS \
         INT64) AS q, UNIX_MICROS(trade_time) AS t, buyer_is_maker AS m, source FROM \
         `{PROJECT}.{}.trades_raw` WHERE symbol = '{symbol}' ORDER BY trade_id",
        batch.datasets.market
    );
    batch
        .warehouse
        .query(&sql)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<i64>("trade_id").unwrap(),
                r.get::<i64>("p").unwrap(),
                r.get::<i64>("q").unwrap(),
                r.get::<i64>("t").unwrap(),
                r.get::<bool>("m").unwrap(),
                r.get::<String>("source").unwrap(),
            )
        })
        .collect()
}

async fn coverage_snapshot(batch: &batch::Batch) -> Vec<String> {
    let sql = format!(
        "SELECT TO_JSON_STRING(STRUCT(symbol, CAST(day AS STRING) AS d, first_id, last_id, \
         trade_count, source_mix, status, missing_ids, UNIX_MICROS(checked_time) AS c)) AS j \
         FROM `{PROJECT}.{}.coverage` ORDER BY symbol, day",
        batch.datasets.market
    );
    batch
        .warehouse
        .query(&sql)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String>("j").unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_days_of_four_symbols_load_once_with_a_missing_day_filled_a_corrupt_file_refused_and_a_rerun_changes_nothing()
 {
    let _serial = SERIAL.lock().await;
    let last = yesterday();
    let first = days_before(last, DAYS - 1);
    let missing_day = days_before(last, 19);
    let corrupt_day = days_before(last, 9);
    let mut config = SimConfig::default();
    for s in &mut config.symbols {
        s.trades_per_sec = 0.02;
    }
    // 0.02/s x 0.2 = ~350 trades a symbol-day before start-up.
    config.history_rate_multiplier = 0.2;
    config.history_days = 35;
    config.faults.archive = vec![
        ArchiveFault {
            symbol: "BTCUSDT".into(),
            period: missing_day.to_string(),
            kind: ArchiveFaultKind::Missing,
        },
        ArchiveFault {
            symbol: "AAVEUSDT".into(),
            period: corrupt_day.to_string(),
            kind: ArchiveFaultKind::WrongChecksum,
        },
    ];
    let sim = Sim::start(config, "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &SYMBOLS, RestConfig::default()).await;
    let archive = ArchiveClient::new(ArchiveConfig {
        base_url: sim.archive_base_url(),
        ..ArchiveConfig::default()
    })
    .unwrap();
    let request = |symbol: &str| HistoryRequest {
        symbol: symbol.to_owned(),
        from: Some(first),
        to: Some(last),
        monthly: false,
        max_rest_weight: 10_000,
        shard: Shard::default(),
    };
    let tape = sim.tape();
    let ids_of = |symbol: &str, from: Day, to: Day| {
        let sym = tape.index_of(symbol).unwrap();
        let lo = tape.id_before(sym, from.start_ms() * 1000) as i64;
        let hi = tape.id_before(sym, to.end_ms() * 1000) as i64 - 1;
        (lo, hi)
    };

    let mut runs: BTreeMap<&str, HistoryRun> = BTreeMap::new();
    for symbol in SYMBOLS {
        let started = Instant::now();
        let run = batch
            .history(&archive, &request(symbol), &Silent, now_us())
            .await
            .unwrap();
        let wall = started.elapsed().as_secs_f64();
        println!(
            "{symbol}: {} archive rows appended in {:.2} s of appends ({:.0} rows/s), whole run \
             {wall:.2} s ({:.0} rows/s), {} downloads, {} ids from REST",
            run.appended,
            run.append_seconds,
            run.appended as f64 / run.append_seconds,
            (run.appended + run.rest_filled) as f64 / wall,
            run.downloads,
            run.rest_filled,
        );
        assert_eq!(
            run.files.len(),
            DAYS as usize,
            "{symbol}: one daily file a day"
        );
        assert!(run.seams_checked);
        assert!(run.ledgered.is_empty(), "{symbol}: {:?}", run.ledgered);
        assert!(
            run.unbounded.is_empty() && run.overlaps.is_empty(),
            "{run:?}"
        );
        assert_eq!(
            run.coverage,
            BTreeMap::from([("complete", DAYS as usize)]),
            "{symbol}"
        );

        // Every id from the first day's first to the last day's last, exactly once, with the
        // tape's values.
        let (lo, hi) = ids_of(symbol, first, last);
        assert!(hi - lo > 200 * DAYS, "{symbol}: a few hundred trades a day");
        let rows = stored(&batch, symbol).await;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(ids, (lo..=hi).collect::<Vec<_>>(), "{symbol}: each id once");
        let sym = tape.index_of(symbol).unwrap();
        let truth = tape.trades_from_id(sym, lo as u64, hi as u64, usize::MAX);
        assert_eq!(truth.len(), rows.len());
        for (t, r) in truth.iter().zip(&rows) {
            assert_eq!(
                (
                    t.id as i64,
                    t.price as i64,
                    t.qty as i64,
                    t.time_us,
                    t.is_buyer_maker
                ),
                (r.0, r.1, r.2, r.3, r.4),
                "{symbol}: trade {} as on the tape",
                t.id
            );
        }
        let from_rest = |day: Day| {
            let (a, b) = ids_of(symbol, day, day);
            rows.iter()
                .filter(|r| r.0 >= a && r.0 <= b)
                .all(|r| r.5 == "batch")
        };
        let archive_rows = rows.iter().filter(|r| r.5 == "archive").count() as u64;
        assert_eq!(archive_rows, run.appended);
        assert_eq!(run.appended + run.rest_filled, rows.len() as u64);
        match symbol {
            "BTCUSDT" => {
                let f = run
                    .files
                    .iter()
                    .find(|r| r.file.period.first_day() == missing_day)
                    .unwrap();
                assert_eq!(f.outcome, Outcome::Missing);
                assert!(from_rest(missing_day), "the missing day came from REST");
                let (a, b) = ids_of(symbol, missing_day, missing_day);
                assert_eq!(run.rest_filled, (b - a + 1) as u64);
            }
            "AAVEUSDT" => {
                let f = run
                    .files
                    .iter()
                    .find(|r| r.file.period.first_day() == corrupt_day)
                    .unwrap();
                assert_eq!(f.outcome, Outcome::ChecksumMismatch);
                assert_eq!(f.downloads, 4, "checksum and zip, twice, then refused");
                // Refused, and its ids came from REST (not ledgered).
                assert!(from_rest(corrupt_day), "the corrupt day came from REST");
                let (a, b) = ids_of(symbol, corrupt_day, corrupt_day);
                assert_eq!(run.rest_filled, (b - a + 1) as u64);
            }
            _ => {
                assert_eq!(run.rest_filled, 0);
                assert_eq!(run.downloads, 2 * DAYS as u32);
            }
        }
        runs.insert(symbol, run);
    }
    let market = |t: &str| format!("`{PROJECT}.{}.{t}`", batch.datasets.market);
    assert_eq!(
        count(
            &batch,
            &format!("SELECT COUNT(*) AS n FROM {}", market("gaps"))
        )
        .await,
        0,
        "every hole was filled from REST"
    );
    assert_eq!(
        count(
            &batch,
            &format!(
                "SELECT COUNT(*) AS n FROM {} WHERE status = 'complete'",
                market("coverage")
            )
        )
        .await,
        4 * DAYS
    );
    let raw_rows = count(
        &batch,
        &format!("SELECT COUNT(*) AS n FROM {}", market("trades_raw")),
    )
    .await;
    let coverage = coverage_snapshot(&batch).await;

    // A rerun downloads nothing, appends nothing, asks REST nothing, changes no coverage row.
    for symbol in SYMBOLS {
        let again = batch
            .history(&archive, &request(symbol), &Silent, now_us())
            .await
            .unwrap();
        assert_eq!(
            (again.downloads, again.appended, again.rest_filled),
            (0, 0, 0),
            "{symbol}: {again:?}"
        );
        assert!(again.files.iter().all(|f| f.skipped));
        assert_eq!(again.coverage, runs[symbol].coverage);
    }
    assert_eq!(
        count(
            &batch,
            &format!("SELECT COUNT(*) AS n FROM {}", market("trades_raw"))
        )
        .await,
        raw_rows
    );
    assert_eq!(coverage_snapshot(&batch).await, coverage);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rest_budget_a_missing_day_is_ledgered_once_and_a_late_upload_completes_it() {
    let _serial = SERIAL.lock().await;
    let last = yesterday();
    let first = days_before(last, 4);
    let missing_day = days_before(last, 2);
    let mut config = SimConfig::default().with_symbols(&["STXUSDT"]);
    config.symbols[0].trades_per_sec = 0.02;
    config.history_rate_multiplier = 0.2;
    config.history_days = 10;
    config.faults.archive = vec![ArchiveFault {
        symbol: "STXUSDT".into(),
        period: missing_day.to_string(),
        kind: ArchiveFaultKind::Missing,
    }];
    let sim = Sim::start(config, "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &["STXUSDT"], RestConfig::default()).await;
    let archive = ArchiveClient::new(ArchiveConfig {
        base_url: sim.archive_base_url(),
        ..ArchiveConfig::default()
    })
    .unwrap();
    let request = HistoryRequest {
        symbol: "STXUSDT".into(),
        from: Some(first),
        to: Some(last),
        monthly: false,
        max_rest_weight: 0,
        shard: Shard::default(),
    };
    let tape = sim.tape();
    let sym = tape.index_of("STXUSDT").unwrap();
    let hole = binance::IdRange::new(
        tape.id_before(sym, missing_day.start_ms() * 1000) as i64,
        tape.id_before(sym, missing_day.end_ms() * 1000) as i64 - 1,
    );
    let gaps = format!(
        "SELECT COUNT(*) AS n FROM `{PROJECT}.{}.gaps` WHERE symbol = 'STXUSDT' AND from_id = {} \
         AND to_id = {} AND reason = 'archive_missing' AND reporter = 'batch'",
        batch.datasets.market, hole.from, hole.to
    );
    let statuses = BTreeMap::from([("complete", 2), ("holes", 2), ("missing", 1)]);

    for round in 0..2 {
        let run = batch
            .history(&archive, &request, &Silent, now_us())
            .await
            .unwrap();
        assert_eq!(run.rest_filled, 0, "no budget, no REST");
        assert_eq!(run.ledgered, [(hole, "archive_missing")], "round {round}");
        assert_eq!(run.coverage, statuses, "round {round}");
        // Only the days coverage does not call complete are fetched again.
        let fetched = run.files.iter().filter(|f| !f.skipped).count();
        assert_eq!(fetched, if round == 0 { 5 } else { 3 }, "round {round}");
        assert_eq!(
            count(&batch, &gaps).await,
            1,
            "ledgered once, round {round}"
        );
    }

    // The file is uploaded late: the next run loads it and every day is complete.
    sim.apply_faults(FaultRequest {
        clear_archive_faults: true,
        ..FaultRequest::default()
    })
    .unwrap();
    let run = batch
        .history(&archive, &request, &Silent, now_us())
        .await
        .unwrap();
    assert_eq!(run.appended, hole.len());
    assert!(run.ledgered.is_empty());
    assert_eq!(run.coverage, BTreeMap::from([("complete", 5)]));
    sim.shutdown().await;
}
