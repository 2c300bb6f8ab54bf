//! State shared by every task of a running simulator: the tape, the clock, limits, faults,
//! connections and the live cursors, with the operations the admin API and [`crate::SimHandle`]
//! perform on it (ground truth, fault requests, symbol metadata changes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{self, ArchiveCache, ArchiveError, ArchiveFile, Period};
use crate::clock::SimClock;
use crate::config::{ConfigError, SimConfig, SymbolSpec};
use crate::faults::{FaultRequest, FaultSettings, StallRequest};
use crate::limits::{AttemptLimiter, WeightLedger};
use crate::tape::Tape;
use crate::trade::Trade;
use crate::truth::{ConnectionTruth, GroundTruth, SymbolTruth};

/// Errors from starting or steering the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The configuration is invalid: fix the named setting.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound: choose another (or port 0).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A fault or symbol change was rejected: the message says which field.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// No such symbol.
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
}
/// Trades of one symbol emitted together.
#[derive(Debug)]
pub struct TradeBatch {
    /// Symbol index in the tape.
    pub sym: usize,
    /// Consecutive trades.
    pub trades: Vec<Trade>,
}

/// Per-connection control flags set by fault requests.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    /// `Some(None)` = stalled until cleared; `Some(Some(t))` = stalled until `t`.
    pub stall: Option<Option<Instant>>,
    /// Keep pinging while stalled.
    pub stall_pings: bool,
    /// Close after `serverShutdown` at this time.
    pub shutdown_at: Option<Instant>,
    /// `serverShutdown` still to be sent.
    pub shutdown_pending: bool,
    /// Off-tape trade frames still to be sent: (symbol index, trade id).
    pub inject: Vec<(usize, u64)>,
}

impl ConnCtl {
    pub fn stalled(&self, now: Instant) -> bool {
        match self.stall {
            Some(None) => true,
            Some(Some(until)) => now < until,
            None => false,
        }
    }
}

/// A connection as seen by the rest of the server.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub id: u64,
    pub ctl: Mutex<ConnCtl>,
    pub notify: Notify,
    pub drop_token: CancellationToken,
    pub truth: Mutex<ConnectionTruth>,
}

/// State shared by every task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub tape: Arc<Tape>,
    pub clock: SimClock,
    /// `exchangeInfo` metadata, changed by `POST /admin/symbols/<SYMBOL>`.
    pub meta: RwLock<Vec<SymbolSpec>>,
    pub faults: Mutex<FaultSettings>,
    pub weights: Mutex<WeightLedger>,
    pub attempts: Mutex<AttemptLimiter>,
    pub trades_tx: broadcast::Sender<Arc<TradeBatch>>,
    /// Archive files built recently (see [`ArchiveCache`]).
    pub archive_cache: Mutex<ArchiveCache>,
    /// Next id to be emitted, per symbol.
    pub cursors: Vec<AtomicU64>,
    /// First id emitted live, per symbol.
    pub live_first: Vec<u64>,
    pub conns: Mutex<BTreeMap<u64, Arc<ConnEntry>>>,
    pub next_conn_id: AtomicU64,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

impl Shared {
    pub fn now_ms(&self) -> i64 {
        self.clock.now_us().div_euclid(1000)
    }

    /// The ground truth, optionally for one connection only.
    pub fn ground_truth(&self, connection: Option<u64>) -> GroundTruth {
        let mut symbols = BTreeMap::new();
        for (i, s) in self.tape.symbols().iter().enumerate() {
            let next = self.cursors[i].load(Ordering::Acquire);
            let first = self.live_first[i];
            let last = (next > first).then(|| next - 1);
            symbols.insert(
                s.spec.symbol.clone(),
                SymbolTruth {
                    first_id: first,
                    last_id: last,
                    count: next.saturating_sub(first),
                    genesis_first_id: s.spec.first_trade_id,
                },
            );
        }
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let connections = conns
            .values()
            .filter(|c| connection.is_none_or(|id| id == c.id))
            .map(|c| c.truth.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        GroundTruth {
            now_ms: self.now_ms(),
            started_at_ms: self.clock.start_us().div_euclid(1000),
            genesis_ms: self.tape.genesis_us().div_euclid(1000),
            symbols,
            connections,
        }
    }

    /// One archive file of symbol `sym`, from the cache or built now (CPU-heavy for busy days:
    /// call on the blocking pool).
    pub fn archive_file(
        &self,
        sym: usize,
        period: Period,
        first_upload: bool,
    ) -> Result<Arc<ArchiveFile>, ArchiveError> {
        let key = (sym, period, first_upload);
        if let Some(f) = self
            .archive_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(f);
        }
        let file = Arc::new(archive::build(&self.tape, sym, period, first_upload)?);
        tracing::debug!(
            file = %file.name,
            bytes = file.zip.len(),
            first_upload,
            "archive file built"
        );
        self.archive_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, file.clone());
        Ok(file)
    }

    pub(crate) fn live_conns(&self) -> Vec<Arc<ConnEntry>> {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| {
                c.truth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .closed_at_ms
                    .is_none()
            })
            .cloned()
            .collect()
    }

    /// Apply a fault request: persistent settings and one-shot actions.
    pub fn apply_faults(&self, req: &FaultRequest) -> Result<FaultSettings, SimError> {
        let settings = {
            let mut f = self.faults.lock().unwrap_or_else(|e| e.into_inner());
            let next = req.apply_to(&f).map_err(SimError::BadRequest)?;
            *f = next.clone();
            next
        };
        tracing::info!(request = ?req, "faults applied");
        let now = Instant::now();
        if req.clear_stall || req.clear {
            for c in self.live_conns() {
                c.ctl.lock().unwrap_or_else(|e| e.into_inner()).stall = None;
                c.notify.notify_one();
            }
        }
        if let Some(st) = &req.stall {
            self.stall(st, now);
        }
        if req.drop_all_now {
            for c in self.live_conns() {
                c.drop_token.cancel();
            }
        }
        if let Some(id) = req.drop_connection {
            match self.live_conns().into_iter().find(|c| c.id == id) {
                Some(c) => c.drop_token.cancel(),
                None => {
                    return Err(SimError::BadRequest(format!(
                        "drop_connection: no open connection {id}"
                    )));
                }
            }
        }
        if let Some(inj) = &req.inject_trade {
            let Some(sym) = self
                .tape
                .symbols()
                .iter()
                .position(|s| s.spec.symbol == inj.symbol)
            else {
                return Err(SimError::BadRequest(format!(
                    "inject_trade: unknown symbol {}",
                    inj.symbol
                )));
            };
            for c in self.live_conns() {
                c.ctl
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .inject
                    .push((sym, inj.trade_id));
                c.notify.notify_one();
            }
        }
        if req.server_shutdown_now {
            let at = now + self.config.server_shutdown_grace;
            for c in self.live_conns() {
                let mut ctl = c.ctl.lock().unwrap_or_else(|e| e.into_inner());
                ctl.shutdown_at = Some(at);
                ctl.shutdown_pending = true;
                drop(ctl);
                c.notify.notify_one();
            }
        }
        Ok(settings)
    }

    fn stall(&self, st: &StallRequest, now: Instant) {
        let until = st.duration_secs.map(|d| now + Duration::from_secs_f64(d));
        for c in self.live_conns() {
            if st.connection.is_some_and(|id| id != c.id) {
                continue;
            }
            let mut ctl = c.ctl.lock().unwrap_or_else(|e| e.into_inner());
            ctl.stall = Some(until);
            ctl.stall_pings = st.with_pings;
            drop(ctl);
            c.notify.notify_one();
        }
    }
}

/// A symbol metadata change (`POST /admin/symbols/<SYMBOL>`); decimals as strings.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SymbolUpdate {
    /// New status (`TRADING`, `END_OF_DAY`, `HALT`, `BREAK`, `CANCEL_ONLY`).
    pub status: Option<String>,
    /// New `PRICE_FILTER.tickSize`, e.g. `"0.1"`.
    pub tick_size: Option<String>,
    /// New `LOT_SIZE.stepSize`.
    pub step_size: Option<String>,
    /// New `LOT_SIZE.minQty`.
    pub min_qty: Option<String>,
    /// New `LOT_SIZE.maxQty`.
    pub max_qty: Option<String>,
    /// New `PRICE_FILTER.minPrice`.
    pub min_price: Option<String>,
    /// New `PRICE_FILTER.maxPrice`.
    pub max_price: Option<String>,
    /// New `NOTIONAL.minNotional`.
    pub min_notional: Option<String>,
    /// New `NOTIONAL.maxNotional`.
    pub max_notional: Option<String>,
}

impl Shared {
    pub fn update_symbol(&self, symbol: &str, u: &SymbolUpdate) -> Result<SymbolSpec, SimError> {
        let mut meta = self.meta.write().unwrap_or_else(|e| e.into_inner());
        let spec = meta
            .iter_mut()
            .find(|s| s.symbol == symbol)
            .ok_or_else(|| SimError::UnknownSymbol(symbol.to_string()))?;
        let mut next = spec.clone();
        if let Some(s) = &u.status {
            next.status = s.clone();
        }
        let fields: [(&str, &Option<String>, &mut u64); 8] = [
            ("tick_size", &u.tick_size, &mut next.tick_size),
            ("step_size", &u.step_size, &mut next.step_size),
            ("min_qty", &u.min_qty, &mut next.min_qty),
            ("max_qty", &u.max_qty, &mut next.max_qty),
            ("min_price", &u.min_price, &mut next.min_price),
            ("max_price", &u.max_price, &mut next.max_price),
            ("min_notional", &u.min_notional, &mut next.min_notional),
            ("max_notional", &u.max_notional, &mut next.max_notional),
        ];
        for (name, value, slot) in fields {
            if let Some(raw) = value {
                *slot = crate::decimal::parse_units(raw)
                    .map_err(|e| SimError::BadRequest(format!("{name}: {e}")))?;
            }
        }
        next.validate()
            .map_err(|e| SimError::BadRequest(e.to_string()))?;
        *spec = next.clone();
        tracing::info!(symbol, update = ?u, "symbol metadata changed");
        Ok(next)
    }
}
