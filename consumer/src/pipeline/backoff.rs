//! The consumer's retry schedules for failed appends, on the shared
//! [`service::backoff::Backoff`]. Equal jitter (each delay in `[d/2, d]`) so replicas do not
//! retry in step, yet never retry much sooner than planned.

use std::time::Duration;

pub use service::backoff::Backoff;
use service::backoff::Jitter;

/// Transient append failures: 100 ms doubling to 10 s, quick after a blip, gentle during an
/// outage.
pub fn transient() -> Backoff {
    Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        Jitter::Equal,
    )
}

/// Appends refused as a whole: 1 s doubling to `max` (`--refused-retry-max`, 60 s by default),
/// so a fixed table is noticed within a minute without hammering BigQuery.
pub fn refused(max: Duration) -> Backoff {
    Backoff::new(Duration::from_secs(1), max, Jitter::Equal)
}
