//! The watchdog: decides when the active connection is no longer delivering, although the socket
//! may look open ("silent stalls", the first complaint about existing feed handlers).
//!
//! Two signals, checked on a timer by the hub:
//! - **socket stall**: no frame of any kind (trade, ping, control reply) for `socket_timeout`.
//!   Binance pings every 20 s (`docs/binance.md`), so a healthy socket is never quiet longer.
//! - **symbol silence**: a symbol that *normally trades* has sent nothing for longer than its
//!   threshold, `max(silence, SILENCE_FACTOR x its usual gap between trades)`. "Normally trades"
//!   means at least [`MIN_TRADES`] trades seen so far; the usual gap is an exponentially weighted
//!   mean of the gaps between its trades. A quiet symbol thus gets a longer leash than BTCUSDT.
//!   After a silence verdict the symbol's threshold doubles until it trades again, so a halted
//!   symbol does not cause a reconnect storm.
//!
//! The hub answers either verdict with a make-before-break reconnect, so a false alarm costs one
//! extra connection and never a trade. Pure: time is passed in.

use std::time::Duration;

use tokio::time::Instant;

/// Trades a symbol must have shown before its silence counts.
pub const MIN_TRADES: u64 = 20;
/// A symbol is silent after this many times its usual gap between trades (and at least the
/// configured silence).
pub const SILENCE_FACTOR: f64 = 20.0;
/// Weight of the newest gap in the moving mean.
const EWMA_ALPHA: f64 = 0.05;

/// Thresholds of the watchdog.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchdogConfig {
    /// Shortest silence of a normally trading symbol that triggers a reconnect.
    pub silence: Duration,
    /// Longest time without any frame on the socket.
    pub socket_timeout: Duration,
}

/// What the watchdog says about the active connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Everything delivers.
    Healthy,
    /// No frame at all for `silent_for`.
    SocketStalled {
        /// Time since the last frame.
        silent_for: Duration,
    },
    /// Symbol number `symbol` has been silent for `silent_for`, above its `threshold`.
    SymbolSilent {
        /// Index of the symbol in the configured list.
        symbol: usize,
        /// Time since its last trade (or since the connection became active).
        silent_for: Duration,
        /// Its threshold at the time.
        threshold: Duration,
    },
}

#[derive(Debug, Clone, Default)]
struct Activity {
    /// Trades seen, across connections.
    count: u64,
    /// Last trade on the active connection (or when it became active).
    last: Option<Instant>,
    /// Moving mean of the gap between trades, seconds.
    mean_gap: f64,
    /// Threshold multiplier, doubled after each silence verdict until the symbol trades again.
    penalty: u32,
}

/// The watchdog of the active connection. See the module documentation.
#[derive(Debug, Clone)]
pub struct Watchdog {
    cfg: WatchdogConfig,
    symbols: Vec<Activity>,
    last_frame: Instant,
}

impl Watchdog {
    /// A watchdog for `n` symbols, counting from `now`.
    pub fn new(cfg: WatchdogConfig, n: usize, now: Instant) -> Self {
        Self {
            cfg,
            symbols: vec![
                Activity {
                    penalty: 1,
                    ..Activity::default()
                };
                n
            ],
            last_frame: now,
        }
    }

    /// A new connection became the active one: every clock restarts at `now` (the learned
    /// trading rates are kept).
    pub fn connection_changed(&mut self, now: Instant) {
        self.last_frame = now;
        for a in &mut self.symbols {
            a.last = Some(now);
        }
    }

    /// Any frame arrived on the active connection.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// A trade of symbol `i` arrived on the active connection.
    pub fn on_trade(&mut self, i: usize, now: Instant) {
        self.last_frame = now;
        let a = &mut self.symbols[i];
        if let Some(last) = a.last {
            let gap = now.saturating_duration_since(last).as_secs_f64();
            a.mean_gap = if a.count <= 1 {
                gap
            } else {
                a.mean_gap + EWMA_ALPHA * (gap - a.mean_gap)
            };
        }
        a.count += 1;
        a.last = Some(now);
        a.penalty = 1;
    }

    /// The current threshold of symbol `i`, `None` while it does not normally trade.
    pub fn threshold(&self, i: usize) -> Option<Duration> {
        let a = &self.symbols[i];
        if a.count < MIN_TRADES {
            return None;
        }
        let learned = Duration::from_secs_f64((a.mean_gap * SILENCE_FACTOR).min(86_400.0));
        Some(self.cfg.silence.max(learned) * a.penalty)
    }

    /// Checks the connection at `now`. A `SymbolSilent` verdict doubles that symbol's threshold
    /// (until it trades again), so the next check does not repeat it at once.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let quiet = now.saturating_duration_since(self.last_frame);
        if quiet >= self.cfg.socket_timeout {
            self.last_frame = now;
            return Verdict::SocketStalled { silent_for: quiet };
        }
        for i in 0..self.symbols.len() {
            let (Some(threshold), Some(last)) = (self.threshold(i), self.symbols[i].last) else {
                continue;
            };
            let silent_for = now.saturating_duration_since(last);
            if silent_for >= threshold {
                let a = &mut self.symbols[i];
                a.penalty = a.penalty.saturating_mul(2).min(1024);
                return Verdict::SymbolSilent {
                    symbol: i,
                    silent_for,
                    threshold,
                };
            }
        }
        Verdict::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: WatchdogConfig = WatchdogConfig {
        silence: Duration::from_secs(10),
        socket_timeout: Duration::from_secs(30),
    };

    async fn trade_every(w: &mut Watchdog, i: usize, every: Duration, n: usize) {
        for _ in 0..n {
            tokio::time::advance(every).await;
            w.on_trade(i, Instant::now());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_symbol_going_silent_triggers_after_the_configured_silence() {
        let mut w = Watchdog::new(CFG, 2, Instant::now());
        trade_every(&mut w, 0, Duration::from_millis(30), 100).await;
        assert_eq!(w.threshold(0), Some(Duration::from_secs(10)));
        assert_eq!(w.threshold(1), None, "symbol 1 never traded: not judged");
        tokio::time::advance(Duration::from_secs(9)).await;
        w.on_frame(Instant::now()); // pings keep the socket alive
        assert_eq!(w.check(Instant::now()), Verdict::Healthy);
        tokio::time::advance(Duration::from_secs(1)).await;
        match w.check(Instant::now()) {
            Verdict::SymbolSilent {
                symbol: 0,
                silent_for,
                threshold,
            } => {
                assert!(silent_for >= Duration::from_secs(10));
                assert_eq!(threshold, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        // Not repeated at once: the threshold doubled.
        assert_eq!(w.check(Instant::now()), Verdict::Healthy);
        assert_eq!(w.threshold(0), Some(Duration::from_secs(20)));
        // It trades again: the penalty goes (the 10 s gap nudges the learned mean up a little).
        w.on_trade(0, Instant::now());
        let t = w.threshold(0).unwrap();
        assert!(
            t >= Duration::from_secs(10) && t < Duration::from_secs(11),
            "{t:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_symbol_gets_a_longer_leash() {
        let mut w = Watchdog::new(CFG, 1, Instant::now());
        trade_every(&mut w, 0, Duration::from_secs(3), 30).await;
        let t = w.threshold(0).unwrap();
        assert!(
            t >= Duration::from_secs(59) && t <= Duration::from_secs(61),
            "{t:?}"
        );
        tokio::time::advance(Duration::from_secs(25)).await;
        w.on_frame(Instant::now());
        assert_eq!(w.check(Instant::now()), Verdict::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn no_frame_at_all_is_a_socket_stall() {
        let mut w = Watchdog::new(CFG, 1, Instant::now());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(w.check(Instant::now()), Verdict::Healthy);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(
            w.check(Instant::now()),
            Verdict::SocketStalled { silent_for } if silent_for == Duration::from_secs(30)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_restarts_the_clocks() {
        let mut w = Watchdog::new(CFG, 1, Instant::now());
        trade_every(&mut w, 0, Duration::from_millis(100), 50).await;
        tokio::time::advance(Duration::from_secs(9)).await;
        w.connection_changed(Instant::now());
        tokio::time::advance(Duration::from_secs(9)).await;
        w.on_frame(Instant::now());
        assert_eq!(w.check(Instant::now()), Verdict::Healthy);
    }
}
