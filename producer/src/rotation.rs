//! Make-before-break rotation: when is the new connection caught up with the old one?
//!
//! Before Binance's 24-hour cut, on `serverShutdown`, and when the watchdog gives up on a
//! connection, the hub opens a second connection and keeps the old one until the new one has
//! caught up. Both feed the same per-symbol continuity trackers, which drop the overlap as
//! duplicates, so the hand-over loses nothing and publishes nothing twice.
//!
//! Caught up, per symbol (an [`Overlap`] tracks the last trade id each connection delivered):
//! - the new connection's last id is at or past the old one's: every later trade arrives on the
//!   new connection, which was subscribed before it happened; or
//! - the old connection has delivered nothing of the symbol since the overlap began and a quiet
//!   grace has passed (a quiet symbol cannot hold a rotation forever; anything in flight on the
//!   old connection would have arrived within the grace).
//!
//! When every symbol is caught up the old connection is closed. If the overlap lasts longer
//! than `max_overlap` the old connection is closed anyway and the symbols still behind are named
//! in the log; continuity tracking and REST backfill then cover any id they missed.
//!
//! Pure: time is passed in.

use std::time::Duration;

use tokio::time::Instant;

/// Settings of the overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverlapConfig {
    /// A symbol silent on the old connection since the overlap began counts as caught up after
    /// this long.
    pub quiet_grace: Duration,
    /// Close the old connection after this long whatever the state.
    pub max_overlap: Duration,
}

/// The state of an overlap after a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlapStep {
    /// Keep both connections; these symbols are still behind.
    Waiting {
        /// Indices of the symbols not caught up yet.
        behind: Vec<usize>,
    },
    /// Every symbol caught up: close the old connection.
    CaughtUp,
    /// `max_overlap` passed: close the old connection; these symbols were still behind.
    TimedOut {
        /// Indices of the symbols not caught up.
        behind: Vec<usize>,
    },
}

/// One make-before-break hand-over. See the module documentation.
#[derive(Debug, Clone)]
pub struct Overlap {
    /// When the new connection opened.
    started: Instant,
    /// Last id delivered by the old connection, per symbol.
    old_last: Vec<Option<i64>>,
    /// Whether the old connection delivered the symbol since `started`.
    old_active: Vec<bool>,
    /// Last id delivered by the new connection, per symbol.
    new_last: Vec<Option<i64>>,
}

impl Overlap {
    /// Starts an overlap at `now`; `old_last` is what the old connection delivered so far.
    pub fn new(now: Instant, old_last: Vec<Option<i64>>) -> Self {
        let n = old_last.len();
        Self {
            started: now,
            old_last,
            old_active: vec![false; n],
            new_last: vec![None; n],
        }
    }

    /// A trade of symbol `i` on the old connection.
    pub fn on_old_trade(&mut self, i: usize, id: i64) {
        self.old_last[i] = Some(self.old_last[i].map_or(id, |l| l.max(id)));
        self.old_active[i] = true;
    }

    /// A trade of symbol `i` on the new connection.
    pub fn on_new_trade(&mut self, i: usize, id: i64) {
        self.new_last[i] = Some(self.new_last[i].map_or(id, |l| l.max(id)));
    }

    /// Whether symbol `i` is caught up at `now`.
    pub fn caught_up(&self, i: usize, now: Instant, cfg: &OverlapConfig) -> bool {
        match (self.old_last[i], self.new_last[i]) {
            (Some(old), Some(new)) if new >= old => true,
            (None, Some(_)) => true,
            _ => {
                !self.old_active[i]
                    && now.saturating_duration_since(self.started) >= cfg.quiet_grace
            }
        }
    }

    /// Checks the overlap at `now`.
    pub fn step(&self, now: Instant, cfg: &OverlapConfig) -> OverlapStep {
        let behind: Vec<usize> = (0..self.old_last.len())
            .filter(|&i| !self.caught_up(i, now, cfg))
            .collect();
        if behind.is_empty() {
            OverlapStep::CaughtUp
        } else if now.saturating_duration_since(self.started) >= cfg.max_overlap {
            OverlapStep::TimedOut { behind }
        } else {
            OverlapStep::Waiting { behind }
        }
    }

    /// How long the overlap has lasted at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// Whether a connection opened at `opened` is due for rotation at `now`.
pub fn rotation_due(opened: Instant, now: Instant, rotate_after: Duration) -> bool {
    now.saturating_duration_since(opened) >= rotate_after
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: OverlapConfig = OverlapConfig {
        quiet_grace: Duration::from_secs(3),
        max_overlap: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn caught_up_when_the_new_connection_reaches_the_old_ones_last_id() {
        let mut o = Overlap::new(Instant::now(), vec![Some(100), Some(7)]);
        // The old connection keeps delivering while the new one starts behind.
        o.on_old_trade(0, 101);
        o.on_new_trade(0, 100);
        o.on_old_trade(1, 8);
        o.on_new_trade(1, 8);
        assert_eq!(
            o.step(Instant::now(), &CFG),
            OverlapStep::Waiting { behind: vec![0] }
        );
        o.on_new_trade(0, 101);
        assert_eq!(o.step(Instant::now(), &CFG), OverlapStep::CaughtUp);
        // The old one moves ahead again: behind again until the new one follows.
        o.on_old_trade(0, 102);
        assert!(!o.caught_up(0, Instant::now(), &CFG));
        o.on_new_trade(0, 103);
        assert!(o.caught_up(0, Instant::now(), &CFG));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_symbol_is_caught_up_after_the_grace_only_if_the_old_side_stayed_quiet() {
        let mut o = Overlap::new(Instant::now(), vec![Some(500), Some(9)]);
        o.on_new_trade(0, 501);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            o.step(Instant::now(), &CFG),
            OverlapStep::Waiting { behind: vec![1] }
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(o.step(Instant::now(), &CFG), OverlapStep::CaughtUp);

        // Same, but the old connection delivered symbol 1 during the overlap: wait for the new.
        let mut o = Overlap::new(Instant::now(), vec![None, Some(9)]);
        o.on_old_trade(1, 10);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            o.step(Instant::now(), &CFG),
            OverlapStep::Waiting { behind: vec![1] }
        );
        o.on_new_trade(1, 10);
        assert_eq!(o.step(Instant::now(), &CFG), OverlapStep::CaughtUp);
    }

    #[tokio::test(start_paused = true)]
    async fn never_catching_up_times_out_naming_the_symbols() {
        let mut o = Overlap::new(Instant::now(), vec![Some(1), Some(2)]);
        o.on_old_trade(0, 2);
        o.on_old_trade(1, 3);
        o.on_new_trade(1, 3);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(matches!(
            o.step(Instant::now(), &CFG),
            OverlapStep::Waiting { .. }
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            o.step(Instant::now(), &CFG),
            OverlapStep::TimedOut { behind: vec![0] }
        );
        assert_eq!(o.age(Instant::now()), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn rotation_is_due_at_the_configured_age() {
        let opened = Instant::now();
        let after = Duration::from_secs(23 * 3600 + 30 * 60);
        tokio::time::advance(after - Duration::from_secs(1)).await;
        assert!(!rotation_due(opened, Instant::now(), after));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(rotation_due(opened, Instant::now(), after));
    }
}
