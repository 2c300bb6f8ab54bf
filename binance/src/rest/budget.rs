//! The request-weight budget: how long to wait before a request so that we never get a 429.
//!
//! Binance counts `REQUEST_WEIGHT` per IP in a one-minute window and reports the running total in
//! `X-MBX-USED-WEIGHT-1M` on every response. The budget keeps its own count of what it let
//! through (so concurrent requests do not all see the same stale header), takes the header as the
//! floor (other processes on the same IP count too), and refuses a request that would pass
//! `limit - safety_margin`, answering how long to wait: until the window rolls over, plus a slack
//! for clock skew. A 429/418 blocks the budget until its `Retry-After` has passed.
//!
//! Pure: the time (Unix milliseconds) is passed in.

use std::time::Duration;

/// `REQUEST_WEIGHT` limit per minute per IP. Source: Binance spot `GET /api/v3/exchangeInfo`
/// `rateLimits` (`{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,
/// "limit":6000}`) and `rest-api.md` "LIMITS".
pub const REQUEST_WEIGHT_LIMIT_1M: u32 = 6000;

/// Weight kept in reserve below the limit (10%): headroom for requests of other processes on the
/// same IP that our header reading has not seen yet.
pub const DEFAULT_SAFETY_MARGIN: u32 = 600;

/// Length of Binance's weight window. Source: the `1M` in `X-MBX-USED-WEIGHT-1M`.
pub const WINDOW_MS: i64 = 60_000;

/// Extra wait after a window boundary, in case our clock is ahead of Binance's.
pub const BOUNDARY_SLACK_MS: i64 = 1_000;

/// Request weights. Source: Binance spot `rest-api.md`, "Weight" of each endpoint (copied
/// into `docs/binance.md`, "Endpoint weights and page sizes").
pub mod weights {
    /// `GET /api/v3/klines`.
    pub const KLINES: u32 = 2;
    /// `GET /api/v3/historicalTrades`.
    pub const HISTORICAL_TRADES: u32 = 25;
    /// `GET /api/v3/trades`.
    pub const TRADES: u32 = 25;
    /// `GET /api/v3/exchangeInfo`.
    pub const EXCHANGE_INFO: u32 = 20;
    /// `GET /api/v3/aggTrades`.
    pub const AGG_TRADES: u32 = 4;
    /// `GET /api/v3/ticker/24hr` for one symbol.
    pub const TICKER_24HR_PER_SYMBOL: u32 = 2;
    /// `GET /api/v3/ticker/24hr` for all symbols, and the cap for many.
    pub const TICKER_24HR_ALL: u32 = 80;

    /// Weight of `ticker/24hr` for `n` symbols (0 = all). Counted as 2 per symbol capped at 80,
    /// as `docs/binance.md` explains; Binance's own table (2 for 1-20 symbols, 40 for 21-100) is
    /// never above this, so the budget errs on the safe side.
    pub const fn ticker_24hr(n: usize) -> u32 {
        if n == 0 || n >= (TICKER_24HR_ALL / TICKER_24HR_PER_SYMBOL) as usize {
            TICKER_24HR_ALL
        } else {
            TICKER_24HR_PER_SYMBOL * n as u32
        }
    }
}

/// What one weight window counted, for reporting (e.g. `batch backfill`'s weight per minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUse {
    /// Start of the window, Unix milliseconds (a multiple of [`WINDOW_MS`]).
    pub start_ms: i64,
    /// Weight of the requests this budget let through in the window.
    pub sent: u32,
    /// The highest `X-MBX-USED-WEIGHT-1M` read in the window (0 if none): Binance's count for
    /// the whole IP, other clients included.
    pub header: u32,
}

/// The weight budget of one IP. See the module documentation.
#[derive(Debug, Clone)]
pub struct WeightBudget {
    /// The server's limit per window.
    limit: u32,
    /// Weight kept in reserve.
    margin: u32,
    /// Index of the current window (`now_ms / WINDOW_MS`).
    window: i64,
    /// Weight used in the current window: ours plus what the header reported.
    used: u32,
    /// No request before this time (a 429/418's `Retry-After`).
    blocked_until_ms: i64,
    /// The last `X-MBX-USED-WEIGHT-1M` read, for metrics.
    last_header: Option<u32>,
    /// Weight this budget let through in the current window (`used` without the header floor).
    sent: u32,
    /// The highest header read in the current window.
    header_max: u32,
    /// The last window that ended before the current one, if any counted something.
    closed: Option<WindowUse>,
}

impl Default for WeightBudget {
    fn default() -> Self {
        Self::new(REQUEST_WEIGHT_LIMIT_1M, DEFAULT_SAFETY_MARGIN)
    }
}

impl WeightBudget {
    /// A budget for `limit` per minute keeping `safety_margin` in reserve.
    pub fn new(limit: u32, safety_margin: u32) -> Self {
        WeightBudget {
            limit,
            margin: safety_margin.min(limit),
            window: i64::MIN,
            used: 0,
            blocked_until_ms: i64::MIN,
            last_header: None,
            sent: 0,
            header_max: 0,
            closed: None,
        }
    }

    /// The weight we allow ourselves per window.
    pub fn capacity(&self) -> u32 {
        self.limit - self.margin
    }

    fn roll(&mut self, now_ms: i64) {
        let w = now_ms.div_euclid(WINDOW_MS);
        if w != self.window {
            if let Some(current) = self.current_window() {
                self.closed = Some(current);
            }
            self.window = w;
            self.used = 0;
            self.sent = 0;
            self.header_max = 0;
        }
    }

    /// How long to wait before a request of `weight` may be sent at `now_ms`; zero when it may
    /// go now. A request heavier than the whole capacity goes alone at the start of a window.
    pub fn delay_for(&mut self, weight: u32, now_ms: i64) -> Duration {
        if now_ms < self.blocked_until_ms {
            return ms(self.blocked_until_ms - now_ms);
        }
        self.roll(now_ms);
        let fits = self.used.saturating_add(weight) <= self.capacity();
        if fits || self.used == 0 {
            return Duration::ZERO;
        }
        let next_window_ms = (self.window + 1) * WINDOW_MS;
        ms(next_window_ms - now_ms + BOUNDARY_SLACK_MS)
    }

    /// Counts a request of `weight` sent at `now_ms`.
    pub fn record_request(&mut self, weight: u32, now_ms: i64) {
        self.roll(now_ms);
        self.used = self.used.saturating_add(weight);
        self.sent = self.sent.saturating_add(weight);
    }

    /// Reserves `weight` at `now_ms` if it fits (and counts it); otherwise says how long to wait.
    pub fn try_acquire(&mut self, weight: u32, now_ms: i64) -> Result<(), Duration> {
        match self.delay_for(weight, now_ms) {
            d if d.is_zero() => {
                self.record_request(weight, now_ms);
                Ok(())
            }
            d => Err(d),
        }
    }

    /// Takes in a response's `X-MBX-USED-WEIGHT-1M` read at `now_ms`.
    pub fn observe_used_weight(&mut self, used: u32, now_ms: i64) {
        self.roll(now_ms);
        self.used = self.used.max(used);
        self.header_max = self.header_max.max(used);
        self.last_header = Some(used);
    }

    /// Blocks every request until `now_ms + wait` (after a 429 or a 418).
    pub fn block_for(&mut self, wait: Duration, now_ms: i64) {
        let until = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        self.blocked_until_ms = self.blocked_until_ms.max(until);
    }

    /// Weight counted in the current window (as of the last call that passed a time).
    pub fn used(&self) -> u32 {
        self.used
    }

    /// The last `X-MBX-USED-WEIGHT-1M` value seen.
    pub fn last_header(&self) -> Option<u32> {
        self.last_header
    }

    /// The window last counted in (the current one, or the latest if none has begun since);
    /// `None` before the first request.
    pub fn current_window(&self) -> Option<WindowUse> {
        (self.window != i64::MIN).then(|| WindowUse {
            start_ms: self.window * WINDOW_MS,
            sent: self.sent,
            header: self.header_max,
        })
    }

    /// The window counted in before [`Self::current_window`]; `None` until one has ended. A
    /// reader sampling both more often than once a window sees every window exactly.
    pub fn closed_window(&self) -> Option<WindowUse> {
        self.closed
    }
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_751_132_760_000; // a minute boundary

    #[test]
    fn lets_requests_through_until_the_margin_then_waits_for_the_next_window() {
        let mut b = WeightBudget::new(100, 10);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(25, T0 + 5_000), Ok(()));
        }
        assert_eq!(b.used(), 75);
        // 75 + 25 = 100 > 90: wait until the window ends (55 s left) plus the slack.
        assert_eq!(
            b.try_acquire(25, T0 + 5_000),
            Err(Duration::from_millis(56_000))
        );
        // A lighter request still fits.
        assert_eq!(b.try_acquire(15, T0 + 5_000), Ok(()));
        // Next window: the count starts again.
        assert_eq!(b.try_acquire(25, T0 + 60_000), Ok(()));
        assert_eq!(b.used(), 25);
    }

    #[test]
    fn header_is_a_floor_not_a_replacement() {
        let mut b = WeightBudget::new(6000, 600);
        b.record_request(25, T0);
        b.observe_used_weight(10, T0 + 1); // stale header: our own count stays
        assert_eq!(b.used(), 25);
        b.observe_used_weight(5_390, T0 + 2); // another process used the IP too
        assert_eq!(b.used(), 5_390);
        assert_eq!(b.last_header(), Some(5_390));
        assert!(b.delay_for(25, T0 + 3) > Duration::ZERO);
        assert_eq!(b.delay_for(10, T0 + 3), Duration::ZERO);
    }

    #[test]
    fn retry_after_blocks_everything() {
        let mut b = WeightBudget::default();
        b.block_for(Duration::from_secs(7), T0);
        assert_eq!(b.delay_for(1, T0 + 2_000), Duration::from_secs(5));
        assert_eq!(b.delay_for(1, T0 + 7_000), Duration::ZERO);
    }

    #[test]
    fn oversized_request_goes_alone_in_a_fresh_window() {
        let mut b = WeightBudget::new(100, 10);
        assert_eq!(b.try_acquire(500, T0), Ok(()));
        assert!(b.try_acquire(1, T0 + 1).is_err());
    }

    #[test]
    fn each_window_reports_what_it_sent_and_the_highest_header_apart() {
        let mut b = WeightBudget::new(100, 0);
        assert_eq!((b.current_window(), b.closed_window()), (None, None));
        b.record_request(25, T0 + 1_000);
        b.observe_used_weight(40, T0 + 1_100); // another client on the IP
        b.record_request(4, T0 + 2_000);
        b.observe_used_weight(30, T0 + 2_100); // an older response: not the highest
        let first = WindowUse {
            start_ms: T0,
            sent: 29,
            header: 40,
        };
        assert_eq!(b.current_window(), Some(first));
        assert_eq!(
            b.used(),
            44,
            "what the budget counts still takes the header as a floor (40), then ours on top"
        );
        // A request in a later window closes the first; quiet windows in between do not count.
        b.record_request(2, T0 + 3 * WINDOW_MS + 5);
        assert_eq!(b.closed_window(), Some(first));
        assert_eq!(
            b.current_window(),
            Some(WindowUse {
                start_ms: T0 + 3 * WINDOW_MS,
                sent: 2,
                header: 0,
            })
        );
    }

    #[test]
    fn ticker_weight() {
        assert_eq!(weights::ticker_24hr(0), 80);
        assert_eq!(weights::ticker_24hr(1), 2);
        assert_eq!(weights::ticker_24hr(4), 8);
        assert_eq!(weights::ticker_24hr(40), 80);
        assert_eq!(weights::ticker_24hr(500), 80);
    }
}
