//! Retry delays of failed appends. Pure: the jitter draw is a parameter.

use std::time::Duration;

/// Exponential backoff with jitter for failed appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s: quick after a blip, gentle during an outage.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// For appends refused as a whole: 1 s doubling to `max` (`--refused-retry-max`, 60 s by
    /// default), so a fixed table is noticed within a minute without hammering BigQuery.
    pub fn refused(max: Duration) -> Self {
        Self {
            initial: Duration::from_secs(1).min(max),
            max,
        }
    }

    /// The delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`, capped,
    /// then scaled by `jitter` in `[0.5, 1.0]` so replicas do not retry in step.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        exp.min(self.max).mul_f64(jitter.clamp(0.5, 1.0))
    }
}
