//! The simulator clock, and the one place the simulator reads the wall clock.

use std::time::Duration;

use tokio::time::Instant;

/// Wall-clock time now, in µs since the Unix epoch: the pipeline's one reading of it.
pub use service::clock::now_us;

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
