//! Start-up and the [`SimHandle`] of a running simulator.
//!
//! One axum router serves REST (`/api/v3/...`), WebSocket streams (`/ws`, `/ws/<streams>`,
//! `/stream?streams=`), the trade archive (`/data/spot/...`) and the admin API (`/admin/...`)
//! on one port; the pump
//! ([`crate::pump`]) feeds the connection tasks.
//!
//! Shutdown: [`SimHandle::shutdown`] cancels one token; the pump, the connection tasks and the
//! HTTP server stop, and `shutdown` returns when they have.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::ArchiveCache;
use crate::clock::{SimClock, now_us};
use crate::config::{SimConfig, SymbolSpec};
use crate::faults::{FaultRequest, FaultSettings, StallRequest};
use crate::limits::{AttemptLimiter, WeightLedger};
use crate::pump::{pump, random_drops};
use crate::state::{Shared, SimError, SymbolUpdate};
use crate::tape::Tape;
use crate::truth::{ConnectionTruth, GroundTruth};

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
        let start_us = config
            .start_time_ms
            .map(|ms| ms * 1000)
            .unwrap_or_else(now_us);
        let genesis_ms = config.genesis_ms.unwrap_or_else(|| {
            start_us.div_euclid(1000) - i64::from(config.history_days) * 86_400_000
        });
        let tape = Arc::new(
            Tape::new(
                config.seed,
                &config.symbols,
                config.rate_multiplier,
                genesis_ms,
            )
            .with_history_rate(config.history_rate_multiplier, start_us.div_euclid(1000)),
        );
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
            archive_cache: Mutex::new(ArchiveCache::new(config.archive_cache_bytes)),
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

    /// `http://127.0.0.1:PORT`, standing in for `https://data.binance.vision`: append
    /// `/data/spot/daily/trades/<SYMBOL>/<SYMBOL>-trades-<YYYY-MM-DD>.zip` (or `.zip.CHECKSUM`,
    /// or `monthly` and `<YYYY-MM>`). Binance serves the archive from another host; the
    /// simulator serves it on its one port.
    pub fn archive_base_url(&self) -> String {
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
