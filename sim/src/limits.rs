//! Binance's limits as pure state machines over `tokio::time::Instant` (tests drive the time).
//!
//! - [`MessageRate`]: at most 5 incoming messages per second per connection (pings, pongs and
//!   control messages count); the next one disconnects. Source: spot "WebSocket Limits".
//! - [`KeepAlive`]: a ping every 20 s; a ping unanswered for 60 s disconnects; only a pong echoing
//!   an outstanding ping's payload counts ("Unsolicited pong frames ... will not prevent
//!   disconnection"). Source: spot "General WSS information".
//! - [`AttemptLimiter`]: 300 connection attempts per 5 minutes per IP.
//! - [`WeightLedger`]: REST `REQUEST_WEIGHT` 6000 per minute per IP; over it HTTP 429 with
//!   `Retry-After`; continuing after 429s earns an HTTP 418 ban. Source: spot "LIMITS".

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Sliding one-second window of incoming messages.
#[derive(Debug)]
pub struct MessageRate {
    max: u32,
    window: Duration,
    times: VecDeque<Instant>,
}

impl MessageRate {
    /// At most `max` messages per second.
    pub fn new(max: u32) -> Self {
        Self {
            max,
            window: Duration::from_secs(1),
            times: VecDeque::with_capacity(max as usize + 1),
        }
    }

    /// Record a message; `false` means it exceeds the limit (disconnect).
    pub fn on_message(&mut self, now: Instant) -> bool {
        while let Some(&t) = self.times.front() {
            if now.duration_since(t) >= self.window {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() >= self.max as usize {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

/// What the keep-alive wants done now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAliveAction {
    /// Nothing until [`KeepAlive::next_deadline`].
    Idle,
    /// Send a ping with this payload.
    SendPing(Vec<u8>),
    /// A ping went unanswered for the timeout: disconnect.
    TimedOut,
}

/// Server-side ping/pong bookkeeping.
#[derive(Debug)]
pub struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    outstanding: VecDeque<(Vec<u8>, Instant)>,
    counter: u64,
}

impl KeepAlive {
    /// First ping one interval after `now`.
    pub fn new(interval: Duration, timeout: Duration, now: Instant) -> Self {
        Self {
            interval,
            timeout,
            next_ping: now + interval,
            outstanding: VecDeque::new(),
            counter: 0,
        }
    }

    /// Decide what to do at `now`; `pings_enabled = false` during a silent stall.
    pub fn poll(&mut self, now: Instant, pings_enabled: bool) -> KeepAliveAction {
        if let Some((_, sent)) = self.outstanding.front()
            && now.duration_since(*sent) >= self.timeout
        {
            return KeepAliveAction::TimedOut;
        }
        if now >= self.next_ping {
            self.next_ping = now + self.interval;
            if pings_enabled {
                self.counter += 1;
                let payload = self.counter.to_string().into_bytes();
                self.outstanding.push_back((payload.clone(), now));
                return KeepAliveAction::SendPing(payload);
            }
        }
        KeepAliveAction::Idle
    }

    /// A pong arrived; `true` if it answered an outstanding ping (that ping and older ones are
    /// cleared).
    pub fn on_pong(&mut self, payload: &[u8]) -> bool {
        match self.outstanding.iter().position(|(p, _)| p == payload) {
            Some(i) => {
                self.outstanding.drain(..=i);
                true
            }
            None => false,
        }
    }

    /// When [`KeepAlive::poll`] next has something to do.
    pub fn next_deadline(&self) -> Instant {
        match self.outstanding.front() {
            Some((_, sent)) => self.next_ping.min(*sent + self.timeout),
            None => self.next_ping,
        }
    }
}

/// Connection attempts per IP in a sliding window.
#[derive(Debug)]
pub struct AttemptLimiter {
    max: u32,
    window: Duration,
    ips: HashMap<IpAddr, VecDeque<Instant>>,
}

impl AttemptLimiter {
    /// At most `max` attempts per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            ips: HashMap::new(),
        }
    }

    /// Record an attempt; `Err(retry_after)` when over the limit (the attempt is not recorded).
    pub fn attempt(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let q = self.ips.entry(ip).or_default();
        while let Some(&t) = q.front() {
            if now.duration_since(t) >= self.window {
                q.pop_front();
            } else {
                break;
            }
        }
        if q.len() >= self.max as usize {
            let oldest = *q.front().unwrap_or(&now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }
}

/// Outcome of charging a REST request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDecision {
    /// Serve it; `used` weight in the current window (the `X-MBX-USED-WEIGHT-1M` value).
    Allowed {
        /// Weight used in the window, including this request.
        used: u32,
    },
    /// HTTP 429: over the limit; retry after the window ends.
    TooMany {
        /// Weight used in the window.
        used: u32,
        /// Until the window ends.
        retry_after: Duration,
    },
    /// HTTP 418: banned for ignoring 429s.
    Banned {
        /// Weight used in the window.
        used: u32,
        /// Until the ban ends.
        retry_after: Duration,
    },
}

#[derive(Debug)]
struct IpWeight {
    window: u64,
    used: u32,
    rejected: u32,
    banned_until: Option<Instant>,
}

/// REST weight per IP in fixed windows (Binance counts per calendar minute; we align windows
/// to the ledger's creation).
#[derive(Debug)]
pub struct WeightLedger {
    origin: Instant,
    window: Duration,
    ban_after: u32,
    ban_duration: Duration,
    ips: HashMap<IpAddr, IpWeight>,
}

impl WeightLedger {
    /// Windows of `window`; more than `ban_after` rejected requests in one window ban the IP for
    /// `ban_duration`.
    pub fn new(origin: Instant, window: Duration, ban_after: u32, ban_duration: Duration) -> Self {
        Self {
            origin,
            window,
            ban_after,
            ban_duration,
            ips: HashMap::new(),
        }
    }

    fn window_of(&self, now: Instant) -> (u64, Duration) {
        let elapsed = now.duration_since(self.origin);
        let n = (elapsed.as_nanos() / self.window.as_nanos().max(1)) as u64;
        let end = self.window * (n as u32 + 1);
        (n, end.saturating_sub(elapsed))
    }

    /// Weight used by `ip` in the current window.
    pub fn used(&self, ip: IpAddr, now: Instant) -> u32 {
        let (n, _) = self.window_of(now);
        match self.ips.get(&ip) {
            Some(s) if s.window == n => s.used,
            _ => 0,
        }
    }

    /// Charge `weight` to `ip` against `limit`.
    pub fn charge(&mut self, ip: IpAddr, weight: u32, limit: u32, now: Instant) -> WeightDecision {
        let (n, left) = self.window_of(now);
        let s = self.ips.entry(ip).or_insert(IpWeight {
            window: n,
            used: 0,
            rejected: 0,
            banned_until: None,
        });
        if s.window != n {
            s.window = n;
            s.used = 0;
            s.rejected = 0;
        }
        if let Some(until) = s.banned_until {
            if until > now {
                return WeightDecision::Banned {
                    used: s.used,
                    retry_after: until - now,
                };
            }
            s.banned_until = None;
        }
        if s.used.saturating_add(weight) > limit {
            s.rejected += 1;
            if s.rejected > self.ban_after {
                s.banned_until = Some(now + self.ban_duration);
                return WeightDecision::Banned {
                    used: s.used,
                    retry_after: self.ban_duration,
                };
            }
            return WeightDecision::TooMany {
                used: s.used,
                retry_after: left,
            };
        }
        s.used += weight;
        WeightDecision::Allowed { used: s.used }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn sixth_message_in_a_second_is_refused() {
        let mut r = MessageRate::new(5);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(
                r.on_message(t0 + Duration::from_millis(i * 100)),
                "message {i}"
            );
        }
        assert!(!r.on_message(t0 + Duration::from_millis(900)));
        // A second later the window has room again.
        let mut r = MessageRate::new(5);
        for i in 0..5 {
            assert!(r.on_message(t0 + Duration::from_millis(i * 100)));
        }
        assert!(r.on_message(t0 + Duration::from_millis(1000)));
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_pings_and_times_out() {
        let t0 = Instant::now();
        let mut k = KeepAlive::new(Duration::from_secs(20), Duration::from_secs(60), t0);
        assert_eq!(k.poll(t0, true), KeepAliveAction::Idle);
        assert_eq!(k.next_deadline(), t0 + Duration::from_secs(20));
        let KeepAliveAction::SendPing(p1) = k.poll(t0 + Duration::from_secs(20), true) else {
            panic!("expected a ping");
        };
        // An unsolicited pong does not count.
        assert!(!k.on_pong(b""));
        for at in [40, 60] {
            let KeepAliveAction::SendPing(_) = k.poll(t0 + Duration::from_secs(at), true) else {
                panic!("expected a ping at {at}");
            };
        }
        assert_eq!(
            k.poll(t0 + Duration::from_secs(79), true),
            KeepAliveAction::Idle
        );
        assert_eq!(
            k.poll(t0 + Duration::from_secs(80), true),
            KeepAliveAction::TimedOut
        );
        // Answering the first ping in time clears it.
        let mut k = KeepAlive::new(Duration::from_secs(20), Duration::from_secs(60), t0);
        let KeepAliveAction::SendPing(p) = k.poll(t0 + Duration::from_secs(20), true) else {
            panic!();
        };
        assert_eq!(p, p1);
        assert!(k.on_pong(&p));
        assert_ne!(
            k.poll(t0 + Duration::from_secs(81), true),
            KeepAliveAction::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_per_window() {
        let t0 = Instant::now();
        let mut a = AttemptLimiter::new(3, Duration::from_secs(300));
        for _ in 0..3 {
            a.attempt(IP, t0).unwrap();
        }
        let retry = a.attempt(IP, t0 + Duration::from_secs(100)).unwrap_err();
        assert_eq!(retry, Duration::from_secs(200));
        a.attempt(IP, t0 + Duration::from_secs(300)).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn weight_429_then_418_then_recovers() {
        let t0 = Instant::now();
        let mut w = WeightLedger::new(t0, Duration::from_secs(60), 2, Duration::from_secs(120));
        for i in 1..=5 {
            assert_eq!(
                w.charge(IP, 2, 10, t0),
                WeightDecision::Allowed { used: 2 * i }
            );
        }
        let at = t0 + Duration::from_secs(15);
        assert_eq!(
            w.charge(IP, 2, 10, at),
            WeightDecision::TooMany {
                used: 10,
                retry_after: Duration::from_secs(45)
            }
        );
        assert!(matches!(
            w.charge(IP, 2, 10, at),
            WeightDecision::TooMany { .. }
        ));
        assert_eq!(
            w.charge(IP, 2, 10, at),
            WeightDecision::Banned {
                used: 10,
                retry_after: Duration::from_secs(120)
            }
        );
        // Still banned in the next window.
        assert!(matches!(
            w.charge(IP, 2, 10, t0 + Duration::from_secs(70)),
            WeightDecision::Banned { .. }
        ));
        assert_eq!(
            w.charge(IP, 2, 10, at + Duration::from_secs(120)),
            WeightDecision::Allowed { used: 2 }
        );
        assert_eq!(w.used(IP, at + Duration::from_secs(120)), 2);
    }
}
