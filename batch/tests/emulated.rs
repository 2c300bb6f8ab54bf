//! The batch against the simulator (a local Binance with deterministic history) and bqemulator:
//! loads, reruns, the SCD history, checks, reconciliation, backfill and Binance's limits.
//!
//! Each test makes its own datasets (`unique_name`) and its own simulator on 127.0.0.1:0. The
//! simulator's symbols trade slowly here (a few thousand trades a day) so that a whole day of
//! trades fits the emulator quickly; the REST paths and limits are the same as at full rate.

use std::time::{Duration, Instant};

use batch::commands::{BackfillRequest, Batch};
use batch::day::Day;
use batch::klines::Interval;
use batch::progress::Silent;
use binance::rest::BanPolicy;
use binance::{IdRange, RestConfig, TimeUnit};
use binance_sim::{Sim, SimConfig, SymbolUpdate};
use gcp::bigquery::write::StorageWriter;
use pipeline_tests::PROJECT;
use prost::Message as _;
use trade_proto::Source;

mod common;
use common::{SERIAL, batch_for, count, now_us, yesterday};

const SYMBOLS: [&str; 4] = ["BTCUSDT", "AAVEUSDT", "STXUSDT", "ARBUSDT"];

fn sim_config() -> SimConfig {
    let mut c = SimConfig::default();
    for s in &mut c.symbols {
        s.trades_per_sec = 0.03; // ~2,600 trades a day
    }
    c.history_days = 35;
    c
}

fn dwh(batch: &Batch, table: &str) -> String {
    format!("`{PROJECT}.{}.{table}`", batch.datasets.dwh)
}

/// Every column of a klines table as text, ordered: "identical tables" made comparable.
async fn snapshot(batch: &Batch, symbol: &str) -> Vec<String> {
    let sql = format!(
        "SELECT TO_JSON_STRING(STRUCT(UNIX_MICROS(open_time) AS o, CAST(open AS STRING) AS op, \
         CAST(high AS STRING) AS h, CAST(low AS STRING) AS l, CAST(close AS STRING) AS c, \
         CAST(volume AS STRING) AS v, trade_count AS n, UNIX_MICROS(loaded_at) AS at)) AS j \
         FROM {} ORDER BY open_time",
        dwh(batch, &format!("klines_{}", symbol.to_lowercase()))
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
async fn a_day_loads_1440_klines_per_symbol_a_rerun_changes_nothing_and_check_names_a_missing_minute()
 {
    let _serial = SERIAL.lock().await;
    let sim = Sim::start(sim_config(), "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &SYMBOLS, RestConfig::default()).await;
    let day = yesterday();

    let mut loaded = batch.klines(day, Interval::MINUTE, now_us()).await.unwrap();
    loaded.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    assert_eq!(loaded.len(), 4);
    for l in &loaded {
        assert_eq!(l.rows, 1440, "{l:?}");
        assert_eq!(l.changed, 1440, "first load inserts every row: {l:?}");
        let table = dwh(&batch, &format!("klines_{}", l.symbol.to_lowercase()));
        assert_eq!(
            count(&batch, &format!("SELECT COUNT(*) AS n FROM {table}")).await,
            1440
        );
    }
    // The loaded values are Binance's: the sum of trade counts is the tape's trade count.
    let sym = sim.tape().index_of("STXUSDT").unwrap();
    let tape_count = sim.tape().count_before(sym, day.end_ms() * 1000)
        - sim.tape().count_before(sym, day.start_ms() * 1000);
    let stored = count(
        &batch,
        &format!(
            "SELECT SUM(trade_count) AS n FROM {}",
            dwh(&batch, "klines_stxusdt")
        ),
    )
    .await;
    assert_eq!(stored as u64, tape_count);

    let before = snapshot(&batch, "BTCUSDT").await;
    let again = batch.klines(day, Interval::MINUTE, now_us()).await.unwrap();
    assert!(
        again.iter().all(|l| l.changed == 0),
        "a rerun changes nothing: {again:?}"
    );
    assert_eq!(
        snapshot(&batch, "BTCUSDT").await,
        before,
        "identical table after a rerun"
    );

    let ok = batch
        .check(day, Interval::MINUTE, true, now_us())
        .await
        .unwrap();
    assert!(ok.problems.is_empty(), "{:?}", ok.problems);
    assert!(
        ok.notes.iter().all(|n| n.contains("SKIPPED")),
        "{:?}",
        ok.notes
    );

    // Break the day: remove 12:34 of ARBUSDT.
    let minute = day.start_ms() + (12 * 60 + 34) * 60_000;
    batch
        .warehouse
        .execute(&format!(
            "DELETE FROM {} WHERE open_time = TIMESTAMP_MILLIS({minute})",
            dwh(&batch, "klines_arbusdt")
        ))
        .await
        .unwrap();
    let broken = batch
        .check(day, Interval::MINUTE, true, now_us())
        .await
        .unwrap();
    let text: Vec<String> = broken.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![format!(
            "ARBUSDT {day}: 1439 klines of 1m, expected 1440; missing 1 open time(s): 12:34"
        )]
    );
    // A rerun of the load repairs exactly that minute.
    let repaired = batch.klines(day, Interval::MINUTE, now_us()).await.unwrap();
    let arb = repaired.iter().find(|l| l.symbol == "ARBUSDT").unwrap();
    assert_eq!(arb.changed, 1);
    sim.shutdown().await;
}

#[derive(Debug, PartialEq)]
struct Version {
    symbol: String,
    tick: String,
    status: String,
    from: i64,
    to: Option<i64>,
    current: bool,
}

async fn history(batch: &Batch) -> Vec<Version> {
    let sql = format!(
        "SELECT symbol, CAST(tick_size AS STRING) AS tick, status, UNIX_MICROS(valid_from) AS vf, \
         IFNULL(UNIX_MICROS(valid_to), -1) AS vt, is_current FROM `{PROJECT}.{}.symbols_history` \
         ORDER BY symbol, valid_from",
        batch.datasets.scd
    );
    batch
        .warehouse
        .query(&sql)
        .await
        .unwrap()
        .iter()
        .map(|r| Version {
            symbol: r.get::<String>("symbol").unwrap(),
            tick: batch::decimal::Numeric::parse("tick", &r.get::<String>("tick").unwrap())
                .unwrap()
                .canonical(),
            status: r.get::<String>("status").unwrap(),
            from: r.get::<i64>("vf").unwrap(),
            to: Some(r.get::<i64>("vt").unwrap()).filter(|v| *v >= 0),
            current: r.get::<bool>("is_current").unwrap(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbol_changes_close_one_version_and_open_one_and_no_change_writes_nothing() {
    let _serial = SERIAL.lock().await;
    let sim = Sim::start(sim_config(), "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &SYMBOLS, RestConfig::default()).await;
    let (t1, t2, t3) = (
        1_000_000_000_000_000,
        1_000_000_060_000_000,
        1_000_000_120_000_000,
    );

    let first = batch.symbols(t1).await.unwrap();
    assert_eq!(first.opened.len(), 4);
    let h1 = history(&batch).await;
    assert_eq!(h1.len(), 4);
    assert!(
        h1.iter()
            .all(|v| v.current && v.to.is_none() && v.from == t1)
    );

    let second = batch.symbols(t2).await.unwrap();
    assert!(
        second.opened.is_empty() && second.closed.is_empty(),
        "{second:?}"
    );
    assert_eq!(history(&batch).await, h1, "no change writes nothing");

    sim.update_symbol(
        "ARBUSDT",
        SymbolUpdate {
            tick_size: Some("0.00001000".into()),
            ..Default::default()
        },
    )
    .unwrap();
    sim.update_symbol(
        "STXUSDT",
        SymbolUpdate {
            status: Some("BREAK".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut third = batch.symbols(t3).await.unwrap();
    third.closed.sort();
    third.opened.sort();
    assert_eq!(
        third.closed,
        vec!["ARBUSDT".to_owned(), "STXUSDT".to_owned()]
    );
    assert_eq!(
        third.opened,
        vec!["ARBUSDT".to_owned(), "STXUSDT".to_owned()]
    );
    let h3 = history(&batch).await;
    assert_eq!(h3.len(), 6);
    let arb: Vec<&Version> = h3.iter().filter(|v| v.symbol == "ARBUSDT").collect();
    assert_eq!(arb.len(), 2);
    assert_eq!((arb[0].to, arb[0].current), (Some(t3), false));
    assert_eq!((arb[1].from, arb[1].to, arb[1].current), (t3, None, true));
    assert_eq!(arb[1].tick, "0.00001");
    assert_ne!(arb[0].tick, arb[1].tick);
    let stx: Vec<&Version> = h3.iter().filter(|v| v.symbol == "STXUSDT").collect();
    assert_eq!(
        (stx[0].status.as_str(), stx[1].status.as_str()),
        ("TRADING", "BREAK")
    );
    // The untouched symbols keep their single version.
    assert_eq!(h3.iter().filter(|v| v.symbol == "BTCUSDT").count(), 1);
    // dwh.symbols is the current state.
    let current = batch
        .warehouse
        .query(&format!(
            "SELECT status FROM {} WHERE symbol = 'STXUSDT'",
            dwh(&batch, "symbols")
        ))
        .await
        .unwrap();
    assert_eq!(current[0].get::<String>("status").unwrap(), "BREAK");

    let fourth = batch.symbols(t3 + 60_000_000).await.unwrap();
    assert!(fourth.opened.is_empty() && fourth.closed.is_empty());
    assert_eq!(history(&batch).await, h3);
    sim.shutdown().await;
}

/// (day, status, missing ids, source mix) of each `market.coverage` row of `symbol`.
async fn coverage_of(batch: &Batch, symbol: &str) -> Vec<(String, String, i64, String)> {
    batch
        .warehouse
        .query(&format!(
            "SELECT CAST(day AS STRING) AS d, status, IFNULL(missing_ids, -1) AS m, \
             IFNULL(source_mix, '') AS s FROM `{PROJECT}.{}.coverage` WHERE symbol = '{symbol}' \
             ORDER BY day",
            batch.datasets.market
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String>("d").unwrap(),
                r.get::<String>("status").unwrap(),
                r.get::<i64>("m").unwrap(),
                r.get::<String>("s").unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_fills_trade_ids_removed_from_market_trades_and_check_then_passes() {
    let _serial = SERIAL.lock().await;
    let sim = Sim::start(sim_config(), "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &["STXUSDT"], RestConfig::default()).await;
    let day = yesterday();
    batch.klines(day, Interval::MINUTE, now_us()).await.unwrap();

    // The real-time path did not run: check says so.
    let empty = batch
        .check(day, Interval::MINUTE, false, now_us())
        .await
        .unwrap();
    assert_eq!(empty.problems.len(), 1);
    assert!(
        empty.problems[0].what.contains("did not run"),
        "{:?}",
        empty.problems
    );

    // Simulate the consumer: the day's trades, minus a few, appended to trades_raw.
    let sym = sim.tape().index_of("STXUSDT").unwrap();
    let first = sim.tape().id_before(sym, day.start_ms() * 1000) as i64;
    let last = sim.tape().id_before(sym, day.end_ms() * 1000) as i64 - 1;
    // In µs, as the producer asks for them.
    let all = batch
        .rest
        .with_time_unit(TimeUnit::Microsecond)
        .fetch_trade_range("STXUSDT", IdRange::new(first, last), Source::Stream)
        .await
        .unwrap();
    assert_eq!(all.len() as i64, last - first + 1);
    let removed: Vec<i64> = vec![
        first,
        first + 1,
        first + 100,
        first + 101,
        first + 102,
        last,
    ];
    let kept: Vec<Vec<u8>> = all
        .iter()
        .filter(|t| !removed.contains(&t.trade_id))
        .map(|t| t.encode_to_vec())
        .collect();
    let writer = StorageWriter::connect(&batch.target).await.unwrap();
    let table = gcp::bigquery::table_path(PROJECT, &batch.datasets.market, "trades_raw");
    let descriptor = trade_proto::message_descriptor("Trade").unwrap();
    writer.append(&table, &descriptor, kept).await.unwrap();

    let short = batch
        .check(day, Interval::MINUTE, false, now_us())
        .await
        .unwrap();
    assert_eq!(short.problems.len(), 1, "{:?}", short.problems);
    let msg = short.problems[0].to_string();
    assert!(
        msg.starts_with(&format!(
            "STXUSDT {day}: market.trades holds {}",
            all.len() - 6
        )),
        "{msg}"
    );
    assert!(msg.contains(&format!("(ids {first}..={last})")), "{msg}");
    // The check writes the day's verdict: holes, with every missing id counted (the edges too,
    // which only Binance's count reveals).
    assert_eq!(
        coverage_of(&batch, "STXUSDT").await,
        [(
            day.to_string(),
            "holes".to_owned(),
            6,
            format!("stream={}", all.len() - 6)
        )]
    );

    let done = batch.reconcile(day, now_us()).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].missing, done[0].filled), (6, 6), "{done:?}");
    assert!(done[0].unfilled.is_empty());
    let batch_rows = batch
        .warehouse
        .query(&format!(
            "SELECT trade_id, UNIX_MICROS(trade_time) AS t FROM `{PROJECT}.{}.trades_raw` \
             WHERE source = 'batch' ORDER BY trade_id",
            batch.datasets.market
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<i64>("trade_id").unwrap(),
                r.get::<i64>("t").unwrap(),
            )
        })
        .collect::<Vec<_>>();
    // The filled trades carry the exchange's µs times, exactly like the stream's rows.
    let want: Vec<(i64, i64)> = all
        .iter()
        .filter(|t| removed.contains(&t.trade_id))
        .map(|t| (t.trade_id, t.trade_time))
        .collect();
    assert_eq!(batch_rows, want);
    assert!(
        want.iter().any(|(_, t)| t % 1000 != 0),
        "the simulator's times have sub-millisecond digits, or this proves nothing"
    );

    let ok = batch
        .check(day, Interval::MINUTE, false, now_us())
        .await
        .unwrap();
    assert!(ok.problems.is_empty(), "{:?}", ok.problems);
    assert_eq!(
        coverage_of(&batch, "STXUSDT").await,
        [(
            day.to_string(),
            "complete".to_owned(),
            0,
            format!("batch=6,stream={}", all.len() - 6)
        )]
    );
    let again = batch.reconcile(day, now_us()).await.unwrap();
    assert_eq!(
        (again[0].missing, again[0].filled),
        (0, 0),
        "a rerun fetches nothing"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_block_fails_with_a_clear_message_and_5xx_are_retried() {
    let _serial = SERIAL.lock().await;
    let sim = Sim::start(sim_config(), "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &["BTCUSDT"], RestConfig::default()).await;
    let day = yesterday();
    sim.http_5xx_burst(2);
    let ok = batch.klines(day, Interval::MINUTE, now_us()).await.unwrap();
    assert_eq!(ok[0].rows, 1440, "two 503s were retried");
    sim.set_geo_block(true);
    let err = batch
        .klines(day, Interval::MINUTE, now_us())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("HTTP 451") && text.contains("restricted location"),
        "{text}"
    );
    assert!(text.contains("outside the US"), "{text}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_a_418_ban_fails_the_run() {
    let _serial = SERIAL.lock().await;
    // A server whose limit our budget does not know: 10 weight per 2 s window.
    let mut config = sim_config();
    config.weight_limit = 10;
    config.weight_window = Duration::from_secs(2);
    let sim = Sim::start(config, "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &SYMBOLS, RestConfig::default()).await;
    let day = yesterday();
    let started = Instant::now();
    let loaded = batch.klines(day, Interval::MINUTE, now_us()).await.unwrap();
    assert!(loaded.iter().all(|l| l.rows == 1440), "{loaded:?}");
    // 16 weight at 10 per 2 s: at least one Retry-After was honoured.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    sim.shutdown().await;

    let mut config = sim_config();
    config.weight_limit = 2;
    config.ban_after_429s = 0;
    let sim = Sim::start(config, "127.0.0.1:0").await.unwrap();
    let batch = batch_for(
        &sim,
        &["BTCUSDT"],
        RestConfig {
            ban_policy: BanPolicy::Surface,
            ..RestConfig::default()
        },
    )
    .await;
    let err = batch
        .klines(day, Interval::MINUTE, now_us())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("418") && text.contains("banned"), "{text}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_of_30_days_by_4_symbols_resumes_and_never_earns_a_429() {
    let _serial = SERIAL.lock().await;
    let sim = Sim::start(sim_config(), "127.0.0.1:0").await.unwrap();
    // No retries: a single 429 (or 5xx) would fail the backfill.
    let batch = batch_for(
        &sim,
        &SYMBOLS,
        RestConfig {
            max_retries: 0,
            ..RestConfig::default()
        },
    )
    .await;
    let last = yesterday();
    let first = Day::containing_ms(last.start_ms() - 29 * 86_400_000);
    // Two days already there: resumable means they are skipped.
    batch
        .klines(last, Interval::MINUTE, now_us())
        .await
        .unwrap();
    let started = Instant::now();
    let request = klines_only(first, last);
    let done = batch.backfill(&request, now_us(), &Silent).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "backfill 30 days x 4 symbols: {} loaded, {} skipped in {secs:.1} s",
        done.loaded, done.skipped
    );
    assert_eq!((done.loaded, done.skipped), (116, 4));
    for s in SYMBOLS {
        let n = count(
            &batch,
            &format!(
                "SELECT COUNT(*) AS n FROM {}",
                dwh(&batch, &format!("klines_{}", s.to_lowercase()))
            ),
        )
        .await;
        assert_eq!(n, 30 * 1440, "{s}");
    }
    let again = batch.backfill(&request, now_us(), &Silent).await.unwrap();
    assert_eq!((again.loaded, again.skipped), (0, 120));
    sim.shutdown().await;
}

fn klines_only(first: Day, last: Day) -> BackfillRequest {
    BackfillRequest {
        first,
        last,
        interval: Interval::MINUTE,
        trades: false,
        force: false,
        max_days: batch::backfill::DEFAULT_MAX_DAYS,
    }
}

/// Weight lines as the backfill prints them (one per minute), kept for the test to read.
#[derive(Default)]
struct Recorded(std::sync::Mutex<Vec<String>>);

impl batch::progress::Progress for Recorded {
    fn start(&self, _: u64, _: u64) {}
    fn step(&self, _: &str) {}
    fn finish(&self) {}
    fn weight(&self, line: &str) {
        eprintln!("{line}");
        self.0.lock().unwrap().push(line.to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trades_backfill_keeps_to_its_own_weight_budget_every_minute_and_resumes() {
    let _serial = SERIAL.lock().await;
    const BUDGET: u32 = 100;
    // The simulator refuses anything over BUDGET + one historicalTrades request per window (its
    // windows start when it does, ours on the minute: the header floor lets at most one request
    // through in the overlap), and bans at the first refusal, so a single 429 fails the backfill.
    let mut config = sim_config();
    config.weight_limit = BUDGET + 25;
    config.ban_after_429s = 0;
    let sim = Sim::start(config, "127.0.0.1:0").await.unwrap();
    let mut batch = batch_for(
        &sim,
        &["STXUSDT"],
        batch::backfill::rest_config(String::new(), BUDGET),
    )
    .await;
    // One day at a time: the weight of one request in flight at a minute boundary, not four.
    batch.concurrency = 1;
    let last = yesterday();
    let first = last.prev();
    let request = BackfillRequest {
        trades: true,
        ..klines_only(first, last)
    };
    // Two days of trades: ~2,600 a day, 3 historicalTrades pages (75) + klines (4) + aggTrades
    // (4) each, ~166 in all: more than one minute's budget, and more than the simulator allows.
    let started = Instant::now();
    let recorded = Recorded::default();
    let done = batch.backfill(&request, now_us(), &recorded).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let w = batch::backfill::summarize(&done.weight);
    eprintln!(
        "trades backfill of 2 days: {} ids filled in {secs:.1} s; weight per minute {:?} \
         (sent, X-MBX-USED-WEIGHT-1M) against a budget of {BUDGET}; max {} sent, {} in total",
        done.trades_filled,
        done.weight
            .iter()
            .map(|m| (m.sent, m.header))
            .collect::<Vec<_>>(),
        w.max_sent,
        w.total_sent
    );
    assert_eq!(done.budget, BUDGET);
    assert!(
        done.weight.iter().all(|m| m.sent <= BUDGET),
        "{:?}",
        done.weight
    );
    assert!(
        w.minutes >= 2 && w.total_sent > u64::from(BUDGET),
        "the work needs more than one minute's budget: {:?}",
        done.weight
    );
    assert!(
        w.max_header <= BUDGET + 25,
        "Binance's count: {:?}",
        done.weight
    );
    // One line per minute, each naming the budget.
    let lines = recorded.0.lock().unwrap().clone();
    assert_eq!(lines.len(), done.weight.len(), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(&format!("sent of {BUDGET} per minute"))),
        "{lines:?}"
    );
    // Every trade of both days is now in market.trades, and the check passes.
    let sym = sim.tape().index_of("STXUSDT").unwrap();
    let tape = sim.tape().count_before(sym, last.end_ms() * 1000)
        - sim.tape().count_before(sym, first.start_ms() * 1000);
    assert_eq!(
        (done.trades_missing, done.trades_filled),
        (tape, tape),
        "{done:?}"
    );
    assert!(done.trades_unfilled.is_empty());
    assert_eq!((done.loaded, done.skipped), (2, 0));
    for day in [first, last] {
        let ok = batch
            .check(day, Interval::MINUTE, false, now_us())
            .await
            .unwrap();
        assert!(ok.problems.is_empty(), "{day}: {:?}", ok.problems);
    }
    // Resumed: nothing is missing any more, so nothing is fetched but the day's first id.
    let again = batch.backfill(&request, now_us(), &Silent).await.unwrap();
    assert_eq!(
        (again.loaded, again.skipped, again.trades_filled),
        (0, 2, 0)
    );
    assert!(
        batch::backfill::summarize(&again.weight).total_sent <= 2 * 4,
        "{:?}",
        again.weight
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_longer_than_max_days_is_refused_before_any_request() {
    let _serial = SERIAL.lock().await;
    let sim = Sim::start(sim_config(), "127.0.0.1:0").await.unwrap();
    let batch = batch_for(&sim, &["BTCUSDT"], RestConfig::default()).await;
    let last = yesterday();
    let first = Day::containing_ms(last.start_ms() - 31 * 86_400_000);
    let err = batch
        .backfill(&klines_only(first, last), now_us(), &Silent)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("32 days, more than --max-days 31"),
        "{err:#}"
    );
    assert_eq!(
        batch.rest.weight_windows(),
        (None, None),
        "no request was sent"
    );
    let ok = batch
        .backfill(
            &BackfillRequest {
                max_days: 32,
                ..klines_only(last, last)
            },
            now_us(),
            &Silent,
        )
        .await
        .unwrap();
    assert_eq!(ok.loaded, 1);
    sim.shutdown().await;
}
