//! Faults that last or come from hostile input, end to end: the producer in-process against the
//! simulator and a Pub/Sub emulator, each test ending with the topic held against the
//! simulator's ground truth (every id from the start point on, published or in a gap record).
//!
//! - Pub/Sub frozen (its emulator SIGSTOPped): `/healthz` turns 503, SIGTERM still ends the run
//!   within the flush deadline with the resume point saved, and a restart over the same state
//!   file fills everything (duplicates allowed: the frozen emulator takes the abandoned
//!   publishes when it thaws).
//! - An off-tape trade id far in the future: quarantined, nothing else changes.
//! - REST answering 200 with an HTML page or a cut body during backfill: the gap stays open and
//!   is filled once REST heals; no gap record.
//! - A broken state file: set aside, the run starts at the exchange's latest id.
//! - The state file's disk full, then read-only (a small tmpfs): trades keep flowing; a restart
//!   resumes from the last point written and loses nothing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use binance_sim::{FaultRequest, GroundTruth, InjectTrade, SimConfig};
use pipeline_tests::PubsubEmulator;
use support::*;

/// Every id from `starts[symbol]` to the simulator's last id before the stop is on the topic or
/// in a gap record; duplicates are counted, not refused. Returns the duplicates.
fn complete_from(d: &Drained, starts: &BTreeMap<String, i64>, before_stop: &GroundTruth) -> usize {
    let mut dups = 0;
    for (symbol, truth) in &before_stop.symbols {
        let mut seen = BTreeSet::new();
        for t in d.trades.iter().filter(|t| &t.symbol == symbol) {
            if !seen.insert(t.trade_id) {
                dups += 1;
            }
        }
        for g in d.gaps.iter().filter(|g| &g.symbol == symbol) {
            seen.extend(g.from_id..=g.to_id);
        }
        let start = starts[symbol];
        let last = truth.last_id.expect("the simulator traded") as i64;
        let missing: Vec<i64> = (start..=last).filter(|id| !seen.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{symbol}: {} of {start}..={last} missing, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert!(
            seen.first() == Some(&start),
            "{symbol}: the topic starts at {:?}, the producer accounts from {start}",
            seen.first()
        );
    }
    dups
}

fn signal_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process group we started; no memory is involved.
    unsafe { libc::kill(-(pid as i32), signal) };
}

async fn healthz(r: &producer::Running) -> (u16, String) {
    http_get(r.metrics_addr, "/healthz").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_pubsub_turns_health_red_sigterm_meets_the_deadline_and_a_restart_fills_all() {
    let pubsub = PubsubEmulator::start();
    let pid = pubsub.pid().expect("our own emulator");
    let e = env_on(SimConfig::default(), &pubsub.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("resume.json");
    let state_arg = state.to_str().unwrap();
    let tuning = [
        "--state-file",
        state_arg,
        "--queue-size",
        "2000",
        "--max-in-flight",
        "500",
        "--shutdown-deadline",
        "4s",
    ];
    let (running, stop) = e.start(&tuning).await;
    wait_connected(&running).await;
    let starts = starts_of(&running).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(healthz(&running).await.0, 200);

    signal_group(pid, libc::SIGSTOP);
    let frozen = Instant::now();
    let red = loop {
        let (status, body) = healthz(&running).await;
        if status == 503 {
            break body;
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(60),
            "/healthz still {status} after 60 s of a frozen Pub/Sub"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let red_after = frozen.elapsed();
    assert!(red.contains("not publishing"), "{red}");
    let (_, metrics) = http_get(running.metrics_addr, "/metrics").await;
    assert_eq!(metric(&metrics, "producer_publishing "), 0.0, "{metrics}");
    let saved_before = producer::resume::load(&state).unwrap().unwrap();

    // SIGTERM under backpressure: the hub waits on a full queue, the publishes hang.
    let signalled = Instant::now();
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .expect("the run must end, not hang on the full queue")
        .expect("a clean stop");
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(4 + 3),
        "stopped {took:?} after the signal; the deadline is 4 s"
    );
    let unpublished: u64 = report.unpublished.values().flatten().map(|r| r.len()).sum();
    assert!(
        unpublished > 0,
        "a frozen Pub/Sub leaves trades unpublished"
    );
    let saved_at_exit = producer::resume::load(&state).unwrap().unwrap();
    assert!(
        saved_at_exit.written_at_us > saved_before.written_at_us,
        "the resume point is saved at exit"
    );
    for (symbol, ranges) in &report.unpublished {
        let resume = saved_at_exit.resume_after[symbol];
        assert!(
            ranges.iter().all(|r| r.from > resume),
            "{symbol}: the resume point {resume} passed unpublished ids {ranges:?}"
        );
    }

    signal_group(pid, libc::SIGCONT);
    let (running, stop) = e.start(&tuning).await;
    wait_connected(&running).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = e.sim.ground_truth();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let report2 = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(report2.unpublished.is_empty(), "{:?}", report2.unpublished);
    let d = drain_all(&e).await;
    let dups = complete_from(&d, &starts, &before);
    eprintln!(
        "frozen Pub/Sub: /healthz red after {red_after:?}, stop took {took:?}, {unpublished} ids left unpublished by run 1 and filled by run 2, {dups} duplicates on the topic"
    );
    e.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_trade_id_is_quarantined_and_nothing_else_changes() {
    let e = env(SimConfig::default()).await;
    let (running, stop) = e.start(&[]).await;
    wait_connected(&running).await;
    let first = e.sim.ground_truth();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let btc_last = e.sim.ground_truth().symbols["BTCUSDT"].last_id.unwrap();
    for trade_id in [i64::MAX as u64, btc_last + 50_000_000] {
        e.sim
            .apply_faults(FaultRequest {
                inject_trade: Some(InjectTrade {
                    symbol: "BTCUSDT".into(),
                    trade_id,
                }),
                ..FaultRequest::default()
            })
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, metrics) = http_get(running.metrics_addr, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "producer_quarantined_trades_total{symbol=\"BTCUSDT\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "producer_gap_ids_outstanding{symbol=\"BTCUSDT\"}"),
        0.0
    );
    let before = e.sim.ground_truth();
    let starts = starts_of(&running).await;
    stop_clean(running, stop).await;
    let d = drain_all(&e).await;
    assert!(
        d.trades.iter().all(|t| t.trade_id < 1 << 50),
        "a quarantined id was published"
    );
    assert!(d.gaps.is_empty(), "{:?}", d.gaps);
    check_against_truth(&d, &first, &before, &starts);
    e.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_rest_bodies_keep_a_gap_open_until_rest_heals_with_no_gap_record() {
    let e = env(SimConfig::default()).await;
    let (running, stop) = e.start(&["--backfill-retry", "1s"]).await;
    wait_connected(&running).await;
    let first = e.sim.ground_truth();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One full fetch (6 attempts x 3 rounds) fails on mangled bodies, then REST heals.
    e.sim
        .apply_faults(FaultRequest {
            rest_mangled_burst: Some(20),
            ..FaultRequest::default()
        })
        .unwrap();
    e.sim.drop_all_connections();
    let healed = Instant::now();
    let mut dropped = Instant::now();
    loop {
        // A drop leaves a hole only when trades were in flight; at the simulator's quiet rates
        // a reconnect within milliseconds can miss none. Drop again until a fetch has begun.
        if e.sim.faults().rest_mangled_remaining == 20 && dropped.elapsed() > Duration::from_secs(4)
        {
            e.sim.drop_all_connections();
            dropped = Instant::now();
        }
        let (_, m) = http_get(running.metrics_addr, "/metrics").await;
        let retries = metric(&m, "producer_backfill_retries_total");
        let filled = metric(&m, "producer_gap_ids_filled_total");
        let open = metric(&m, "producer_gap_ids_outstanding");
        if retries >= 1.0
            && filled > 0.0
            && open == 0.0
            && e.sim.faults().rest_mangled_remaining == 0
        {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(90),
            "gap not filled after REST healed: retries {retries}, filled {filled}, open {open}, mangled left {}",
            e.sim.faults().rest_mangled_remaining
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = e.sim.ground_truth();
    let starts = starts_of(&running).await;
    stop_clean(running, stop).await;
    let d = drain_all(&e).await;
    assert!(
        d.gaps.is_empty(),
        "passing REST trouble became a hole: {:?}",
        d.gaps
    );
    let by_source = check_against_truth(&d, &first, &before, &starts);
    let backfilled: u64 = ["backfill", "backfill_at_start"]
        .iter()
        .filter_map(|k| by_source.get(*k))
        .sum();
    assert!(backfilled > 0, "{by_source:?}");
    e.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_state_file_is_set_aside_and_the_run_starts_at_the_latest_id() {
    let e = env(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("resume.json");
    std::fs::write(&state, b"{\"version\":1,\"resume_after\":{\"BTCUSDT\":").unwrap();
    let (running, stop) = e.start(&["--state-file", state.to_str().unwrap()]).await;
    wait_connected(&running).await;
    let first = e.sim.ground_truth();
    // Long enough for the quietest symbol to trade.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, metrics) = http_get(running.metrics_addr, "/metrics").await;
    assert_eq!(metric(&metrics, "producer_state_file_set_aside_total"), 1.0);
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("resume.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&kept[0])).unwrap(),
        b"{\"version\":1,\"resume_after\":{\"BTCUSDT\":",
        "kept as it was"
    );
    assert!(log_text().contains("is not a state file: set aside"));
    let before = e.sim.ground_truth();
    let starts = starts_of(&running).await;
    stop_clean(running, stop).await;
    assert!(
        producer::resume::load(&state).unwrap().is_some(),
        "a good file again"
    );
    let d = drain_all(&e).await;
    check_against_truth(&d, &first, &before, &starts);
    e.sim.shutdown().await;
}

/// A tmpfs of `size` at a fresh directory, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }

    fn remount(&self, opts: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_then_read_only_state_disk_never_stops_the_trades_and_a_restart_loses_nothing() {
    let Some(disk) = Tmpfs::mount("64k") else {
        // Needs root (CI and the dev container run as root); say so rather than pass quietly.
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    let e = env(SimConfig::default()).await;
    let state = disk.0.join("resume.json");
    let state_arg = state.to_str().unwrap().to_owned();
    let (running, stop) = e.start(&["--state-file", &state_arg]).await;
    wait_connected(&running).await;
    let starts = starts_of(&running).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Fill the disk to the last byte.
    let filler = disk.0.join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 1024]).is_ok() {}
        let _ = f.flush();
    }
    let (_, m0) = http_get(running.metrics_addr, "/metrics").await;
    let published_then = metric(&m0, "producer_trades_published_total");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, m1) = http_get(running.metrics_addr, "/metrics").await;
    assert!(
        metric(&m1, "producer_state_write_failures_total") >= 1.0,
        "a full disk fails the saves: {m1}"
    );
    assert_eq!(metric(&m1, "producer_state_file_ok "), 0.0);
    assert!(
        metric(&m1, "producer_trades_published_total") > published_then,
        "trades keep flowing with a full disk"
    );
    // Read-only now (the old file stays readable).
    std::fs::remove_file(&filler).unwrap();
    disk.remount("ro");
    let (_, m2) = http_get(running.metrics_addr, "/metrics").await;
    let published_ro = metric(&m2, "producer_trades_published_total");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, m3) = http_get(running.metrics_addr, "/metrics").await;
    assert!(metric(&m3, "producer_trades_published_total") > published_ro);
    assert!(
        healthz(&running).await.0 == 200,
        "a state disk is no reason to go red"
    );
    let saved_ro = producer::resume::load(&state)
        .unwrap()
        .unwrap()
        .resume_after;
    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(30), running.wait())
        .await
        .unwrap()
        .expect("a read-only state disk does not fail the run");
    assert!(report.unpublished.is_empty());
    // The next run resumes from what was last written: an older point, more backfill.
    disk.remount("rw");
    let (running, stop) = e.start(&["--state-file", &state_arg]).await;
    wait_connected(&running).await;
    let starts2 = starts_of(&running).await;
    for (symbol, after) in &saved_ro {
        assert_eq!(
            starts2[symbol],
            after + 1,
            "{symbol} resumes after its saved point"
        );
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = e.sim.ground_truth();
    stop_clean(running, stop).await;
    let d = drain_all(&e).await;
    let dups = complete_from(&d, &starts, &before);
    assert!(
        dups > 0,
        "the older resume point refetches what run 1 published after it"
    );
    e.sim.shutdown().await;
}

async fn stop_clean(running: producer::Running, token: tokio_util::sync::CancellationToken) {
    stop(running, token).await;
}
