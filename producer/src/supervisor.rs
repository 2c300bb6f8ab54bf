//! Which websocket connections should exist: the connection state machine of the producer.
//!
//! At most two connections exist at a time: the **active** one, and a **successor** being opened
//! (after a close: the replacement; before a planned change: the new half of a make-before-break
//! rotation). Inputs are the connection events and a periodic tick; outputs are [`Command`]s
//! (open a connection, close one) that the hub carries out. Decisions:
//! - start-up: open one connection;
//! - the active connection closed: promote the successor if it is open, else open a replacement
//!   (its own task retries with backoff inside the attempt budget);
//! - `serverShutdown` on the active connection, the age limit (`rotate_after`, before Binance's
//!   24-hour cut), or a watchdog verdict: open a successor, run both, and close the old one when
//!   the [`Overlap`] says every symbol caught up (or timed out).
//!
//! Trades from every connection go to the continuity trackers whatever this state machine
//! thinks of the connection; it only decides which sockets to keep. Pure: time is passed in.

use std::time::Duration;

use tokio::time::Instant;

use crate::rotation::{Overlap, OverlapConfig, OverlapStep, rotation_due};
use crate::watchdog::{Verdict, Watchdog, WatchdogConfig};

/// A connection's number, unique in the process.
pub type ConnId = u64;

/// Why a new connection was opened (a metric label: a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconnectReason {
    /// The first connection.
    Startup,
    /// The active connection closed or failed.
    Closed,
    /// The active connection reached `rotate_after`.
    Rotation,
    /// Binance sent `serverShutdown`.
    ServerShutdown,
    /// No frame at all for the socket timeout.
    SocketStalled,
    /// A normally trading symbol fell silent.
    SymbolSilent,
}

impl ReconnectReason {
    /// Every reason, for metric label sets.
    pub const ALL: [ReconnectReason; 6] = [
        Self::Startup,
        Self::Closed,
        Self::Rotation,
        Self::ServerShutdown,
        Self::SocketStalled,
        Self::SymbolSilent,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Closed => "closed",
            Self::Rotation => "rotation",
            Self::ServerShutdown => "server_shutdown",
            Self::SocketStalled => "socket_stalled",
            Self::SymbolSilent => "symbol_silent",
        }
    }

    /// True when the old connection is kept until the new one caught up.
    pub const fn make_before_break(self) -> bool {
        !matches!(self, Self::Startup | Self::Closed)
    }
}

/// What the hub must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Spawn connection `conn` (its task retries until connected or cancelled).
    Open {
        /// The new connection's number.
        conn: ConnId,
        /// Why.
        reason: ReconnectReason,
    },
    /// Close connection `conn` (cancel its task).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for the log.
        why: &'static str,
    },
}

/// Settings of the state machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupervisorConfig {
    /// Rotate a connection at this age (Binance closes them at 24 h).
    pub rotate_after: Duration,
    /// Make-before-break settings.
    pub overlap: OverlapConfig,
    /// Watchdog thresholds.
    pub watchdog: WatchdogConfig,
}

#[derive(Debug, Clone)]
struct Conn {
    id: ConnId,
    opened_at: Option<Instant>,
    last: Vec<Option<i64>>,
}

impl Conn {
    fn new(id: ConnId, n: usize) -> Self {
        Self {
            id,
            opened_at: None,
            last: vec![None; n],
        }
    }
}

/// The connection state machine. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    cfg: SupervisorConfig,
    n: usize,
    next_id: ConnId,
    active: Option<Conn>,
    successor: Option<(Conn, ReconnectReason)>,
    overlap: Option<Overlap>,
    watchdog: Watchdog,
}

impl Supervisor {
    /// A state machine for `n` symbols.
    pub fn new(cfg: SupervisorConfig, n: usize, now: Instant) -> Self {
        Self {
            cfg,
            n,
            next_id: 1,
            active: None,
            successor: None,
            overlap: None,
            watchdog: Watchdog::new(cfg.watchdog, n, now),
        }
    }

    fn open(&mut self, reason: ReconnectReason) -> Command {
        let conn = self.next_id;
        self.next_id += 1;
        self.successor = Some((Conn::new(conn, self.n), reason));
        Command::Open { conn, reason }
    }

    /// The first connection.
    pub fn start(&mut self) -> Vec<Command> {
        vec![self.open(ReconnectReason::Startup)]
    }

    /// The active connection's number, when it is open.
    pub fn active(&self) -> Option<ConnId> {
        self.active
            .as_ref()
            .filter(|c| c.opened_at.is_some())
            .map(|c| c.id)
    }

    /// The successor's number and reason, when one is being opened or overlapping.
    pub fn successor(&self) -> Option<(ConnId, ReconnectReason)> {
        self.successor.as_ref().map(|(c, r)| (c.id, *r))
    }

    /// True while a make-before-break overlap runs.
    pub fn overlapping(&self) -> bool {
        self.overlap.is_some()
    }

    fn promote(&mut self, now: Instant) {
        if let Some((c, _)) = self.successor.take() {
            self.active = Some(c);
        }
        self.overlap = None;
        self.watchdog.connection_changed(now);
    }

    /// Connection `conn` completed its handshake.
    pub fn on_opened(&mut self, conn: ConnId, now: Instant) -> Vec<Command> {
        let Some((succ, _)) = self.successor.as_mut().filter(|(c, _)| c.id == conn) else {
            return Vec::new();
        };
        succ.opened_at = Some(now);
        match &self.active {
            Some(old) if old.opened_at.is_some() => {
                self.overlap = Some(Overlap::new(now, old.last.clone()));
            }
            _ => self.promote(now),
        }
        Vec::new()
    }

    /// A trade of symbol `i` with id `id` arrived on `conn`.
    pub fn on_trade(&mut self, conn: ConnId, i: usize, id: i64, now: Instant) {
        if let Some(a) = self.active.as_mut().filter(|c| c.id == conn) {
            a.last[i] = Some(a.last[i].map_or(id, |l| l.max(id)));
            self.watchdog.on_trade(i, now);
            if let Some(o) = &mut self.overlap {
                o.on_old_trade(i, id);
            }
        } else if let Some((s, _)) = self.successor.as_mut().filter(|(c, _)| c.id == conn) {
            s.last[i] = Some(s.last[i].map_or(id, |l| l.max(id)));
            if let Some(o) = &mut self.overlap {
                o.on_new_trade(i, id);
            }
        }
    }

    /// Any other frame (ping, control reply) arrived on `conn`.
    pub fn on_alive(&mut self, conn: ConnId, now: Instant) {
        if self.active.as_ref().is_some_and(|c| c.id == conn) {
            self.watchdog.on_frame(now);
        }
    }

    /// `serverShutdown` arrived on `conn`.
    pub fn on_server_shutdown(&mut self, conn: ConnId) -> Vec<Command> {
        let is_active = self.active.as_ref().is_some_and(|c| c.id == conn);
        if is_active && self.successor.is_none() {
            vec![self.open(ReconnectReason::ServerShutdown)]
        } else {
            Vec::new()
        }
    }

    /// Connection `conn` closed (or its task ended).
    pub fn on_closed(&mut self, conn: ConnId, now: Instant) -> Vec<Command> {
        if self.active.as_ref().is_some_and(|c| c.id == conn) {
            self.active = None;
            self.overlap = None;
            return match &self.successor {
                Some((s, _)) if s.opened_at.is_some() => {
                    self.promote(now);
                    Vec::new()
                }
                // A successor is on its way: it becomes active when it opens.
                Some(_) => Vec::new(),
                None => vec![self.open(ReconnectReason::Closed)],
            };
        }
        if let Some((_, reason)) = self.successor.as_ref().filter(|(c, _)| c.id == conn) {
            let reason = *reason;
            self.successor = None;
            self.overlap = None;
            let reason = if self.active.is_some() {
                reason
            } else {
                ReconnectReason::Closed
            };
            return vec![self.open(reason)];
        }
        Vec::new()
    }

    /// Periodic check: overlap progress, rotation age, watchdog.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        if let Some(o) = &self.overlap {
            let step = o.step(now, &self.cfg.overlap);
            let (why, behind) = match step {
                OverlapStep::Waiting { .. } => return Vec::new(),
                OverlapStep::CaughtUp => ("successor caught up", Vec::new()),
                OverlapStep::TimedOut { behind } => ("overlap timed out", behind),
            };
            if !behind.is_empty() {
                tracing::warn!(?behind, overlap = ?o.age(now), "closing the old connection before every symbol caught up; gaps, if any, will be backfilled");
            }
            let old = self.active.as_ref().map(|c| c.id);
            self.promote(now);
            return old
                .map(|conn| vec![Command::Close { conn, why }])
                .unwrap_or_default();
        }
        if self.successor.is_some() {
            return Vec::new();
        }
        let Some(opened) = self.active.as_ref().and_then(|c| c.opened_at) else {
            return Vec::new();
        };
        if rotation_due(opened, now, self.cfg.rotate_after) {
            return vec![self.open(ReconnectReason::Rotation)];
        }
        match self.watchdog.check(now) {
            Verdict::Healthy => Vec::new(),
            Verdict::SocketStalled { silent_for } => {
                tracing::warn!(
                    ?silent_for,
                    "no frame on the socket: reconnecting (make-before-break)"
                );
                vec![self.open(ReconnectReason::SocketStalled)]
            }
            Verdict::SymbolSilent {
                symbol,
                silent_for,
                threshold,
            } => {
                tracing::warn!(
                    symbol,
                    ?silent_for,
                    ?threshold,
                    "a normally trading symbol fell silent: reconnecting (make-before-break)"
                );
                vec![self.open(ReconnectReason::SymbolSilent)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SupervisorConfig {
        SupervisorConfig {
            rotate_after: Duration::from_secs(100),
            overlap: OverlapConfig {
                quiet_grace: Duration::from_secs(2),
                max_overlap: Duration::from_secs(30),
            },
            watchdog: WatchdogConfig {
                silence: Duration::from_secs(5),
                socket_timeout: Duration::from_secs(10),
            },
        }
    }

    fn now() -> Instant {
        Instant::now()
    }

    async fn sleep(secs: u64) {
        tokio::time::advance(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn start_then_rotation_is_make_before_break() {
        let mut s = Supervisor::new(cfg(), 1, now());
        assert_eq!(
            s.start(),
            vec![Command::Open {
                conn: 1,
                reason: ReconnectReason::Startup
            }]
        );
        assert_eq!(s.active(), None);
        s.on_opened(1, now());
        assert_eq!(s.active(), Some(1));
        for id in 0..10 {
            s.on_trade(1, 0, id, now());
            s.on_alive(1, now());
        }
        sleep(99).await;
        s.on_alive(1, now());
        s.on_trade(1, 0, 10, now());
        assert_eq!(s.tick(now()), vec![]);
        sleep(1).await;
        assert_eq!(
            s.tick(now()),
            vec![Command::Open {
                conn: 2,
                reason: ReconnectReason::Rotation
            }]
        );
        // Until the successor opens, nothing else happens, and the old stays active.
        assert_eq!(s.tick(now()), vec![]);
        s.on_opened(2, now());
        assert!(s.overlapping());
        s.on_trade(1, 0, 11, now());
        s.on_trade(2, 0, 10, now());
        assert_eq!(s.tick(now()), vec![], "new is behind: keep both");
        s.on_trade(2, 0, 11, now());
        assert_eq!(
            s.tick(now()),
            vec![Command::Close {
                conn: 1,
                why: "successor caught up"
            }]
        );
        assert_eq!(s.active(), Some(2));
        assert!(!s.overlapping());
        // The old connection's close is no news.
        assert_eq!(s.on_closed(1, now()), vec![]);
        assert_eq!(s.active(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn server_shutdown_opens_a_successor_once() {
        let mut s = Supervisor::new(cfg(), 1, now());
        s.start();
        s.on_opened(1, now());
        assert_eq!(
            s.on_server_shutdown(1),
            vec![Command::Open {
                conn: 2,
                reason: ReconnectReason::ServerShutdown
            }]
        );
        assert_eq!(s.on_server_shutdown(1), vec![]);
        // The old socket closes before the new one opened: the new one becomes active on open.
        assert_eq!(s.on_closed(1, now()), vec![]);
        assert_eq!(s.active(), None);
        s.on_opened(2, now());
        assert_eq!(s.active(), Some(2));
        assert!(!s.overlapping());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_connection_is_replaced_and_a_failed_successor_retried() {
        let mut s = Supervisor::new(cfg(), 2, now());
        s.start();
        s.on_opened(1, now());
        assert_eq!(
            s.on_closed(1, now()),
            vec![Command::Open {
                conn: 2,
                reason: ReconnectReason::Closed
            }]
        );
        s.on_opened(2, now());
        assert_eq!(s.active(), Some(2));
        assert_eq!(
            s.on_server_shutdown(2),
            vec![Command::Open {
                conn: 3,
                reason: ReconnectReason::ServerShutdown
            }]
        );
        s.on_opened(3, now());
        // The successor dies during the overlap: another one, same reason.
        assert_eq!(
            s.on_closed(3, now()),
            vec![Command::Open {
                conn: 4,
                reason: ReconnectReason::ServerShutdown
            }]
        );
        assert!(!s.overlapping());
        assert_eq!(s.active(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_triggers_make_before_break_and_quiet_symbols_do_not_block_it() {
        let mut s = Supervisor::new(cfg(), 2, now());
        s.start();
        s.on_opened(1, now());
        for id in 0..30 {
            tokio::time::advance(Duration::from_millis(100)).await;
            s.on_trade(1, 0, id, now());
        }
        s.on_trade(1, 1, 500, now());
        // Pings continue, trades stop.
        for _ in 0..5 {
            sleep(1).await;
            s.on_alive(1, now());
            let cmds = s.tick(now());
            if !cmds.is_empty() {
                assert_eq!(
                    cmds,
                    vec![Command::Open {
                        conn: 2,
                        reason: ReconnectReason::SymbolSilent
                    }]
                );
                break;
            }
        }
        assert_eq!(s.successor(), Some((2, ReconnectReason::SymbolSilent)));
        s.on_opened(2, now());
        s.on_trade(2, 0, 35, now());
        // Symbol 1 is quiet on both: caught up after the grace.
        assert_eq!(s.tick(now()), vec![]);
        sleep(2).await;
        assert_eq!(
            s.tick(now()),
            vec![Command::Close {
                conn: 1,
                why: "successor caught up"
            }]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fully_silent_socket_is_a_stall() {
        let mut s = Supervisor::new(cfg(), 1, now());
        s.start();
        s.on_opened(1, now());
        sleep(10).await;
        assert_eq!(
            s.tick(now()),
            vec![Command::Open {
                conn: 2,
                reason: ReconnectReason::SocketStalled
            }]
        );
    }
}
