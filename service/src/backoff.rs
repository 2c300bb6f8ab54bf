//! Retry delays, written once: "how long before retry number `n`", exponential from a first
//! delay, doubling, capped, with jitter so that many clients (replicas, connections, ordering
//! keys) failing together do not retry in step.
//!
//! The exponential schedule is `backon`'s ([`backon::ExponentialBuilder`], factor 2). Its
//! arithmetic is `f32` seconds, so a delay is rounded to the whole microsecond (100 ms doubled
//! three times is then exactly 800 ms, not 800.000012 ms).
//!
//! Jitter ("Exponential Backoff And Jitter", AWS Architecture Blog,
//! <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>), for a capped
//! delay `d` and a uniform draw `u` in `[0, 1]`:
//! - [`Jitter::Full`]: `d * u`, anywhere in `[0, d]` (the spread is widest);
//! - [`Jitter::Equal`]: `d * (1 + u) / 2`, in `[d/2, d]` (never much shorter than planned).
//!
//! Pure: the draw is a parameter, so tests pass fixed values and callers pass `rand`'s.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// How a draw spreads the delay. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Anywhere in `[0, delay]`.
    Full,
    /// In `[delay / 2, delay]`.
    Equal,
}

/// A capped exponential retry schedule with jitter. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (at most `max`).
    initial: Duration,
    /// Largest delay, before jitter.
    max: Duration,
    /// How the draw spreads each delay.
    jitter: Jitter,
}

impl Backoff {
    /// `initial` before the first retry, doubling up to `max` (`initial` is cut to `max`).
    pub fn new(initial: Duration, max: Duration, jitter: Jitter) -> Self {
        Self {
            initial: initial.min(max),
            max,
            jitter,
        }
    }

    /// The delay before the first retry.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The cap, before jitter.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry number `attempt` (1-based; 0 is the first try: no delay) before
    /// jitter: `initial * 2^(attempt-1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let schedule = ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .without_max_times()
            .build();
        // 64 doublings exceed any cap a Duration can hold: stop there, the cap is reached.
        let steps = usize::try_from(attempt.min(64)).unwrap_or(64);
        let d = schedule
            .take(steps)
            .last()
            .unwrap_or(self.max)
            .min(self.max);
        round_to_micros(d)
    }

    /// The delay before retry number `attempt` (1-based) for the uniform draw `u` in `[0, 1]`
    /// (clamped): [`Backoff::ceiling`] spread by the [`Jitter`].
    pub fn delay(&self, attempt: u32, u: f64) -> Duration {
        let d = self.ceiling(attempt);
        let u = if u.is_nan() { 1.0 } else { u.clamp(0.0, 1.0) };
        match self.jitter {
            Jitter::Full => d.mul_f64(u),
            Jitter::Equal => d.mul_f64(0.5 + u / 2.0),
        }
    }
}

fn round_to_micros(d: Duration) -> Duration {
    let micros = (d.as_nanos() + 500) / 1000;
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_from_the_initial_delay_and_stops_at_the_cap() {
        let b = Backoff::new(MS(100), Duration::from_secs(10), Jitter::Equal);
        let ceilings: Vec<Duration> = (1..=9).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(MS)
        );
        assert_eq!(b.ceiling(0), Duration::ZERO, "the first try waits nothing");
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
        assert_eq!(b.initial(), MS(100));
        assert_eq!(b.max(), Duration::from_secs(10));
    }

    #[test]
    fn an_initial_delay_above_the_cap_is_cut_to_it() {
        let b = Backoff::new(Duration::from_secs(1), MS(300), Jitter::Full);
        assert_eq!(b.initial(), MS(300));
        assert_eq!(b.ceiling(1), MS(300));
        assert_eq!(b.ceiling(5), MS(300));
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO, Jitter::Full);
        assert_eq!(zero.delay(100, 1.0), Duration::ZERO);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_delay() {
        let b = Backoff::new(Duration::from_secs(8), Duration::from_secs(8), Jitter::Full);
        assert_eq!(b.delay(1, 0.0), Duration::ZERO);
        assert_eq!(b.delay(1, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(1, 7.0), Duration::from_secs(8), "clamped");
        assert_eq!(b.delay(1, -1.0), Duration::ZERO, "clamped");
    }

    #[test]
    fn equal_jitter_never_goes_below_half() {
        let b = Backoff::new(MS(100), Duration::from_secs(10), Jitter::Equal);
        assert_eq!(b.delay(3, 0.0), MS(200));
        assert_eq!(b.delay(3, 0.5), MS(300));
        assert_eq!(b.delay(3, 1.0), MS(400));
        assert_eq!(b.delay(3, f64::NAN), MS(400), "a NaN draw is no jitter");
    }
}
