//! The resume-point state file around a run: read at start (a bad file is set aside, never
//! fatal), each symbol's start point, the periodic writer, and the last save at exit. The pure
//! rules (file format, start decisions, the ledger) are in [`crate::resume`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use binance::rest::RestClient;
use service::clock::now_us;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::resume::{self, Ledger, StartPoint};
use crate::settings::Settings;

/// Reads the state file, and tries a write now rather than at the first save.
///
/// Nothing here stops the start: a producer that cannot resume still publishes every trade it
/// sees, while one that refuses to start publishes none. So a file that is not a state file is
/// set aside (renamed `<file>.corrupt-<unix seconds>`, kept for inspection) and the run starts
/// as without one, at the exchange's latest id; the trades of the downtime before it are then
/// recovered by the daily reconciliation (`batch reconcile`), see producer/README.md. A disk
/// that cannot be written (full, read-only) is logged and counted; saves are retried.
pub(crate) fn load_state(settings: &Settings, metrics: &Metrics) -> BTreeMap<String, i64> {
    let Some(path) = &settings.state_file else {
        return BTreeMap::new();
    };
    let saved = match resume::load(path) {
        Ok(state) => state.map(|s| s.resume_after).unwrap_or_default(),
        Err(e @ resume::StateError::Invalid { .. }) => {
            metrics.state_file_set_aside.inc();
            match resume::set_aside(path, now_us() / 1_000_000) {
                Ok(kept) => {
                    tracing::error!(error = %e, kept = %kept.display(), "PRODUCER_STATE_FILE is not a state file: set aside; starting at the exchange's latest id (the trades since the last run come back through the daily reconciliation, see producer/README.md)")
                }
                Err(e2) => {
                    tracing::error!(error = %e, set_aside_error = %e2, "PRODUCER_STATE_FILE is not a state file and could not be set aside; starting at the exchange's latest id")
                }
            }
            BTreeMap::new()
        }
        Err(e) => {
            tracing::error!(error = %e, "PRODUCER_STATE_FILE cannot be read; starting at the exchange's latest id (the trades since the last run come back through the daily reconciliation)");
            BTreeMap::new()
        }
    };
    match resume::save(path, &resume::State::new(saved.clone(), now_us())) {
        Ok(()) => {
            metrics.state_file_ok.set(1);
        }
        Err(e) => {
            metrics.state_write_failures.inc();
            metrics.state_file_ok.set(0);
            tracing::error!(error = %e, "PRODUCER_STATE_FILE cannot be written (full or read-only disk?): running anyway, retrying every interval; a restart meanwhile resumes from an older point or the exchange's latest id");
        }
    }
    tracing::info!(path = %path.display(), resume_after = ?saved, "state file read");
    saved
}

/// Each symbol's start point: the saved resume point held against the exchange's latest id
/// (one 24h-ticker request, weight 2 per symbol). REST trouble is not fatal here: the run then
/// starts at the resume point, or at the first id seen.
pub(crate) async fn start_points(
    settings: &Settings,
    rest: &RestClient,
    saved: &BTreeMap<String, i64>,
) -> Vec<StartPoint> {
    let names: Vec<&str> = settings.symbols.iter().map(String::as_str).collect();
    let latest: HashMap<String, i64> = match tokio::time::timeout(
        Duration::from_secs(10),
        rest.ticker_24hr(&names),
    )
    .await
    {
        Ok(Ok(tickers)) => tickers.into_iter().map(|t| (t.symbol, t.last_id)).collect(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not read the latest trade ids; symbols without a resume point start at the first id seen");
            HashMap::new()
        }
        Err(_) => {
            tracing::warn!(
                "the latest trade ids took over 10 s; symbols without a resume point start at the first id seen"
            );
            HashMap::new()
        }
    };
    settings
        .symbols
        .iter()
        .map(|symbol| {
            let (s, l) = (saved.get(symbol).copied(), latest.get(symbol).copied());
            let p = resume::decide_start(s, l, settings.max_resume_ids);
            tracing::info!(%symbol, rule = p.rule.as_str(), start_after = ?p.after, saved = ?s, latest = ?l, "start point");
            p
        })
        .collect()
}

/// Keeps the resume-point gauges current and, with a state file, writes it when it moved.
pub(crate) async fn run_state_writer(
    settings: Arc<Settings>,
    ledger: Arc<Mutex<Ledger>>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.state_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snapshot = resume_snapshot(&settings, &ledger, &metrics);
        if written.as_ref() == Some(&snapshot) {
            continue;
        }
        let Some(path) = settings.state_file.clone() else {
            written = Some(snapshot);
            continue;
        };
        let state = resume::State::new(snapshot.clone(), now_us());
        match tokio::task::spawn_blocking(move || resume::save(&path, &state)).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("state file written again");
                }
                failing = false;
                metrics.state_file_ok.set(1);
                written = Some(snapshot);
            }
            Ok(Err(e)) => {
                metrics.state_write_failures.inc();
                metrics.state_file_ok.set(0);
                if !failing {
                    tracing::error!(error = %e, "could not write the state file: a restart now would resume from an older point (more backfill, no loss)");
                }
                failing = true;
            }
            Err(e) => tracing::error!(error = %e, "the state writer panicked"),
        }
    }
}

/// The ledger's resume points by symbol, and the gauges set from them.
pub(crate) fn resume_snapshot(
    settings: &Settings,
    ledger: &Mutex<Ledger>,
    metrics: &Metrics,
) -> BTreeMap<String, i64> {
    let l = ledger.lock().expect("ledger lock");
    let mut out = BTreeMap::new();
    for (sym, symbol) in settings.symbols.iter().enumerate() {
        if let Some(t) = l.through(sym) {
            metrics.symbols[sym].resume_id.set(t);
            out.insert(symbol.clone(), t);
        }
    }
    out
}

/// Last word on the resume point at exit: everything acknowledged is in it, nothing else.
pub(crate) fn save_at_exit(settings: &Settings, ledger: &Mutex<Ledger>, metrics: &Metrics) {
    let snapshot = resume_snapshot(settings, ledger, metrics);
    if let Some(path) = &settings.state_file {
        match resume::save(path, &resume::State::new(snapshot.clone(), now_us())) {
            Ok(()) => tracing::info!(resume_after = ?snapshot, "resume point saved"),
            Err(e) => {
                metrics.state_write_failures.inc();
                tracing::error!(error = %e, "could not save the resume point at exit");
            }
        }
    }
}
