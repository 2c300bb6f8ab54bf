//! When to try the next websocket connection: capped exponential backoff with full jitter, inside
//! Binance's connection-attempt limit.
//!
//! Binance allows at most 300 connection attempts per 5 minutes per IP (`docs/binance.md`,
//! "Connection limit"); exceeding it gets the IP refused. [`AttemptBudget`] is a sliding window of
//! attempt times that says how long to wait so that the next attempt stays inside a (configurable,
//! lower) cap. [`Backoff`] is the per-connection retry schedule: the first attempt goes at once,
//! later ones wait `min * 2^n` capped at `max` (the shared [`service::backoff::Backoff`], on
//! `backon`'s exponential schedule), each drawn uniformly in `[0, delay]` ("full jitter", AWS
//! Architecture Blog, "Exponential Backoff And Jitter") so a fleet of producers does not
//! reconnect in lockstep.
//!
//! Pure: times are passed in (tokio `Instant`, so tests run on paused time) and the jitter draw
//! is a parameter.

use std::collections::VecDeque;
use std::time::Duration;

use service::backoff::Jitter;
use tokio::time::Instant;

/// Binance: "There is a limit of 300 connections per attempt every 5 minutes per IP."
pub const BINANCE_MAX_ATTEMPTS: u32 = 300;
/// The window of [`BINANCE_MAX_ATTEMPTS`].
pub const BINANCE_ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
/// Our own cap: 80% of Binance's, leaving room for other processes on the same IP.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 240;

/// A sliding window of connection attempts. See the module documentation.
#[derive(Debug, Clone)]
pub struct AttemptBudget {
    /// Attempts allowed per window.
    max: u32,
    /// Length of the window.
    window: Duration,
    /// Times of the attempts inside the current window, oldest first.
    attempts: VecDeque<Instant>,
}

impl AttemptBudget {
    /// A budget of `max` attempts (at least 1) per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            attempts: VecDeque::new(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some(&t) = self.attempts.front() {
            if now.saturating_duration_since(t) >= self.window {
                self.attempts.pop_front();
            } else {
                break;
            }
        }
    }

    /// How long to wait at `now` before an attempt fits in the window (zero: go now).
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.forget_old(now);
        if (self.attempts.len() as u32) < self.max {
            return Duration::ZERO;
        }
        let oldest = *self.attempts.front().expect("len >= max >= 1");
        (oldest + self.window).saturating_duration_since(now)
    }

    /// Records an attempt made at `now`.
    pub fn record(&mut self, now: Instant) {
        self.forget_old(now);
        self.attempts.push_back(now);
    }

    /// Attempts inside the window at `now`.
    pub fn used(&mut self, now: Instant) -> u32 {
        self.forget_old(now);
        self.attempts.len() as u32
    }
}

/// The retry schedule of one connection: no wait before the first attempt, then capped
/// exponential delays with full jitter.
#[derive(Debug)]
pub struct Backoff {
    /// The delays, by number of failures.
    schedule: service::backoff::Backoff,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `min` and capped at `max` (before jitter).
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            schedule: service::backoff::Backoff::new(min, max, Jitter::Full),
            failures: 0,
        }
    }

    /// The wait before the next attempt given the uniform draw `u`: zero before the first
    /// attempt, then the exponential delay of the failures so far, jittered.
    pub fn next_wait(&mut self, u: f64) -> Duration {
        self.schedule.delay(self.failures, u)
    }

    /// An attempt failed: the next wait grows.
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A connection succeeded: start again from no wait.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The wait before an attempt: the backoff's, or longer if the attempt budget says so.
pub fn wait_before_attempt(
    backoff: &mut Backoff,
    budget: &mut AttemptBudget,
    now: Instant,
    u: f64,
) -> Duration {
    backoff.next_wait(u).max(budget.delay(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn budget_allows_max_attempts_per_window_then_waits_for_the_oldest_to_expire() {
        let mut b = AttemptBudget::new(3, Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(b.delay(t0 + Duration::from_secs(i)), Duration::ZERO);
            b.record(t0 + Duration::from_secs(i));
        }
        // Fourth attempt at t0+10s: the first expires at t0+300s.
        assert_eq!(
            b.delay(t0 + Duration::from_secs(10)),
            Duration::from_secs(290)
        );
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(b.delay(Instant::now()), Duration::ZERO);
        assert_eq!(b.used(Instant::now()), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_binance_limit_is_never_exceeded_by_a_reconnect_storm() {
        // Every attempt fails at once; the loop always waits what it is told.
        let mut budget = AttemptBudget::new(BINANCE_MAX_ATTEMPTS, BINANCE_ATTEMPT_WINDOW);
        let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        let mut times = Vec::new();
        for _ in 0..1000 {
            let wait = wait_before_attempt(&mut backoff, &mut budget, Instant::now(), 1.0);
            tokio::time::advance(wait).await;
            budget.record(Instant::now());
            backoff.failed();
            times.push(Instant::now());
        }
        // Any 300 consecutive attempts span at least the window.
        for w in times.windows(301) {
            assert!(w[300] - w[0] >= BINANCE_ATTEMPT_WINDOW);
        }
    }

    #[test]
    fn backoff_starts_at_zero_grows_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(b.next_wait(1.0), Duration::ZERO);
        let mut waits = Vec::new();
        for _ in 0..8 {
            b.failed();
            waits.push(b.next_wait(1.0));
        }
        let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(&ms[..3], &[100, 200, 400]);
        assert_eq!(*ms.last().unwrap(), 2000);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        b.failed();
        assert_eq!(b.next_wait(0.25).as_millis(), 500);
        b.reset();
        assert_eq!(b.next_wait(1.0), Duration::ZERO);
        b.failed();
        assert_eq!(b.next_wait(0.5).as_millis(), 50);
    }

    #[test]
    fn the_draw_spreads_the_wait_between_zero_and_the_delay() {
        // The jitter's own edges are tested in `service::backoff`; this is the wiring.
        let mut b = Backoff::new(Duration::from_secs(8), Duration::from_secs(8));
        b.failed();
        assert_eq!(b.next_wait(0.0), Duration::ZERO);
        assert_eq!(b.next_wait(0.5), Duration::from_secs(4));
        assert_eq!(b.next_wait(1.0), Duration::from_secs(8));
        assert_eq!(b.next_wait(7.0), Duration::from_secs(8));
    }
}
