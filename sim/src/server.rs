//! The running simulator: shared state, the live pump, start-up and the [`SimHandle`].
//!
//! One axum router serves REST (`/api/v3/...`), WebSocket streams (`/ws`, `/ws/<streams>`,
//! `/stream?streams=`) and the admin API (`/admin/...`) on one port. The **pump** task walks the
//! tape second by second and, as the simulator clock passes each trade's time, broadcasts the
//! trades in small per-symbol batches to every connection task.
//!
//! Shutdown: [`SimHandle::shutdown`] cancels one token; the pump, the connection tasks and the
//! HTTP server stop, and `shutdown` returns when they have.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, SimConfig, SymbolSpec};
use crate::faults::{FaultRequest, FaultSettings, StallRequest, next_drop_delay};
use crate::limits::{AttemptLimiter, WeightLedger};
use crate::rng::{KeyedRng, Stream};
use crate::tape::{SEC_US, Tape, Trade};
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

/// The simulator clock: tape time advancing with tokio time (so paused tests control it).
#[derive(Debug, Clone)]
pub struct SimClock {
    start_us: i64,
    start: Instant,
    speed: f64,
}

impl SimClock {
    /// A clock reading `start_us` now and advancing `speed` times real time.
    pub fn new(start_us: i64, speed: f64) -> Self {
        Self {
            start_us,
            start: Instant::now(),
            speed,
        }
    }

    /// Tape time now (µs).
    pub fn now_us(&self) -> i64 {
        let real = self.start.elapsed().as_micros() as f64;
        self.start_us + (real * self.speed) as i64
    }

    /// Tape time at start-up (µs).
    pub fn start_us(&self) -> i64 {
        self.start_us
    }

    /// Real time until the tape clock reads `t_us` (zero if past).
    pub fn until(&self, t_us: i64) -> Duration {
        let d = t_us - self.now_us();
        if d <= 0 {
            Duration::ZERO
        } else {
            Duration::from_micros((d as f64 / self.speed).ceil() as u64)
        }
    }
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

    fn live_conns(&self) -> Vec<Arc<ConnEntry>> {
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

/// The simulator. Start it with [`Sim::start`].
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Validate `config`, bind `addr` (e.g. `"127.0.0.1:0"`), and serve until
    /// [`SimHandle::shutdown`].
    pub async fn start(config: SimConfig, addr: &str) -> Result<SimHandle, SimError> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| SimError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let wall_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        let start_us = config.start_time_ms.map(|ms| ms * 1000).unwrap_or(wall_us);
        let genesis_ms = config.genesis_ms.unwrap_or_else(|| {
            start_us.div_euclid(1000) - i64::from(config.history_days) * 86_400_000
        });
        let tape = Arc::new(Tape::new(
            config.seed,
            &config.symbols,
            config.rate_multiplier,
            genesis_ms,
        ));
        let clock = SimClock::new(start_us, config.clock_speed);
        // Checkpoints up to now are computed here, once (cheap: one draw per symbol-minute).
        let live_first: Vec<u64> = (0..tape.len())
            .map(|i| tape.id_before(i, start_us + 1))
            .collect();
        let (trades_tx, _) = broadcast::channel(config.broadcast_capacity);
        let now = Instant::now();
        let shared = Arc::new(Shared {
            meta: RwLock::new(config.symbols.clone()),
            faults: Mutex::new(config.faults.clone()),
            weights: Mutex::new(WeightLedger::new(
                now,
                config.weight_window,
                config.ban_after_429s,
                config.ban_duration,
            )),
            attempts: Mutex::new(AttemptLimiter::new(
                config.connection_attempts,
                config.connection_attempt_window,
            )),
            trades_tx,
            cursors: live_first.iter().map(|&id| AtomicU64::new(id)).collect(),
            live_first,
            conns: Mutex::new(BTreeMap::new()),
            next_conn_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            tape,
            clock,
            config,
        });
        shared.tracker.spawn(pump(shared.clone()));
        shared.tracker.spawn(random_drops(shared.clone()));
        let app = crate::http::router(shared.clone());
        let token = shared.shutdown.clone();
        let server = tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { token.cancelled().await });
            if let Err(error) = serve.await {
                tracing::error!(%error, "http server failed");
            }
        });
        tracing::info!(addr = %local, symbols = shared.tape.len(), genesis_ms, "simulator started");
        Ok(SimHandle {
            shared,
            addr: local,
            server,
        })
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT`: append `/ws/btcusdt@trade` or `/stream?streams=...`.
    pub fn ws_base_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT`: append `/api/v3/...`.
    pub fn rest_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The tape (to compute expected trades in tests).
    pub fn tape(&self) -> &Tape {
        &self.shared.tape
    }

    /// Simulator clock now (ms).
    pub fn now_ms(&self) -> i64 {
        self.shared.now_ms()
    }

    /// Ground truth: per symbol and per connection.
    pub fn ground_truth(&self) -> GroundTruth {
        self.shared.ground_truth(None)
    }

    /// Ground truth for one connection (`None` if unknown).
    pub fn connection_truth(&self, id: u64) -> Option<ConnectionTruth> {
        self.shared.ground_truth(Some(id)).connections.pop()
    }

    /// Ids of the connections still open, oldest first.
    pub fn open_connections(&self) -> Vec<u64> {
        self.shared.live_conns().iter().map(|c| c.id).collect()
    }

    /// Apply a fault request (same as `POST /admin/faults`); returns the persistent settings.
    pub fn apply_faults(&self, req: FaultRequest) -> Result<FaultSettings, SimError> {
        self.shared.apply_faults(&req)
    }

    /// Close every WebSocket connection now, abruptly.
    pub fn drop_all_connections(&self) {
        let _ = self.apply_faults(FaultRequest {
            drop_all_now: true,
            ..Default::default()
        });
    }

    /// Close one connection now, abruptly.
    pub fn drop_connection(&self, id: u64) -> Result<(), SimError> {
        self.apply_faults(FaultRequest {
            drop_connection: Some(id),
            ..Default::default()
        })
        .map(|_| ())
    }

    /// Stall connections (all open ones, or `req.connection`).
    pub fn stall(&self, req: StallRequest) -> Result<(), SimError> {
        self.apply_faults(FaultRequest {
            stall: Some(req),
            ..Default::default()
        })
        .map(|_| ())
    }

    /// End every stall.
    pub fn clear_stall(&self) {
        let _ = self.apply_faults(FaultRequest {
            clear_stall: true,
            ..Default::default()
        });
    }

    /// Send `serverShutdown` to every connection; they close after the configured grace.
    pub fn server_shutdown_now(&self) {
        let _ = self.apply_faults(FaultRequest {
            server_shutdown_now: true,
            ..Default::default()
        });
    }

    /// Turn the HTTP 451 geo-block on or off.
    pub fn set_geo_block(&self, on: bool) {
        let _ = self.apply_faults(FaultRequest {
            geo_block: Some(on),
            ..Default::default()
        });
    }

    /// Fail the next `count` REST requests with HTTP 503.
    pub fn http_5xx_burst(&self, count: u32) {
        let _ = self.apply_faults(FaultRequest {
            http_5xx_burst: Some(crate::faults::Http5xxBurst {
                count,
                status: None,
            }),
            ..Default::default()
        });
    }

    /// Current persistent fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Change a symbol's `exchangeInfo` metadata (same as `POST /admin/symbols/<SYMBOL>`).
    pub fn update_symbol(
        &self,
        symbol: &str,
        update: SymbolUpdate,
    ) -> Result<SymbolSpec, SimError> {
        self.shared.update_symbol(symbol, &update)
    }

    /// Stop serving and wait for every task.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        let _ = self.server.await;
        tracing::info!("simulator stopped");
    }
}

/// Per-symbol pump cursor.
struct PumpCursor {
    sec: i64,
    buf: Vec<Trade>,
    idx: usize,
}

/// Emit trades as the clock passes them.
async fn pump(shared: Arc<Shared>) {
    let tape = shared.tape.clone();
    let start_us = shared.clock.start_us();
    let mut cursors: Vec<PumpCursor> = (0..tape.len())
        .map(|i| {
            let sec = start_us.div_euclid(SEC_US);
            let buf = tape.second(i, sec);
            let idx = buf.iter().take_while(|t| t.time_us <= start_us).count();
            PumpCursor { sec, buf, idx }
        })
        .collect();
    let tick = shared.config.pump_tick;
    loop {
        let now_us = shared.clock.now_us();
        let mut next_due = i64::MAX;
        for (i, c) in cursors.iter_mut().enumerate() {
            let mut out = Vec::new();
            loop {
                while c.idx < c.buf.len() && c.buf[c.idx].time_us <= now_us {
                    out.push(c.buf[c.idx]);
                    c.idx += 1;
                }
                if c.idx < c.buf.len() || (c.sec + 1) * SEC_US > now_us {
                    break;
                }
                c.sec += 1;
                c.buf.clear();
                tape.second_into(i, c.sec, &mut c.buf);
                c.idx = 0;
            }
            let due = c
                .buf
                .get(c.idx)
                .map(|t| t.time_us)
                .unwrap_or((c.sec + 1) * SEC_US);
            next_due = next_due.min(due);
            if let Some(last) = out.last() {
                let next_id = last.id + 1;
                let _ = shared.trades_tx.send(Arc::new(TradeBatch {
                    sym: i,
                    trades: out,
                }));
                shared.cursors[i].store(next_id, Ordering::Release);
            }
        }
        let wait = shared.clock.until(next_due).max(tick);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// Drop a random open connection at random intervals when enabled.
async fn random_drops(shared: Arc<Shared>) {
    let mut rng = KeyedRng::new(shared.config.seed, 0, Stream::Drops, 0);
    loop {
        let mean = shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drop_random_every_secs;
        let wait = if mean > 0.0 {
            Duration::from_secs_f64(next_drop_delay(&mut rng, mean))
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        let still = shared
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drop_random_every_secs;
        if mean > 0.0 && still > 0.0 {
            let live = shared.live_conns();
            if !live.is_empty() {
                let victim = &live[rng.below(live.len() as u64) as usize];
                tracing::info!(connection = victim.id, "random drop");
                victim.drop_token.cancel();
            }
        }
    }
}
