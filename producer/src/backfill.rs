//! The backfill task: fetches missing trade ids over REST, one chunk at a time, off the live
//! path.
//!
//! The merger sends [`BackfillRequest`]s (one `historicalTrades` page at most each); this task
//! fetches them with the `binance` crate's [`RestClient`], which waits on the request-weight
//! budget (fed by `X-MBX-USED-WEIGHT-1M`), honours `Retry-After` on 429 and on 418 bans it may sit
//! out, and retries 5xx with jittered backoff. The trades go back to the merger as a
//! [`BackfillResult`]. The live stream never waits for this task: the request channel is
//! unbounded (its length is bounded by the continuity tracker's cap on open gaps) and results
//! are consumed by the merger between frames.
//!
//! A chunk that cannot be fetched ends as [`Outcome::Failed`] with a reason from a closed set
//! (see [`unfillable_reason`]). For a passing trouble (429, 5xx, a ban longer than the client
//! may sit out, a body a proxy mangled) it says when to try again: the hub keeps those ids open
//! and asks again later, so weather never becomes a permanent hole. Only what cannot change
//! (451, a 4xx, a row breaking the contract) ends in `Gap` records.

use std::sync::Arc;
use std::time::Duration;

use binance::continuity::IdRange;
use binance::rest::{RestClient, RestError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use trade_proto::{Source, Trade};

/// Fetch the ids of `range` for symbol number `sym`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillRequest {
    /// Index of the symbol.
    pub sym: usize,
    /// The ids (at most one page).
    pub range: IdRange,
}

/// How a fetch ended.
#[derive(Debug)]
pub enum Outcome {
    /// The trades REST returned (possibly fewer than asked: the rest is unfillable).
    Fetched(Vec<Trade>),
    /// Nothing could be fetched.
    Failed {
        /// The `Gap.reason` (a closed set).
        reason: &'static str,
        /// The error, for the log.
        detail: String,
        /// A passing trouble: try again, no sooner than this (`None`: permanent, write a gap).
        retry_after: Option<Duration>,
    },
}

/// The answer to one [`BackfillRequest`].
#[derive(Debug)]
pub struct BackfillResult {
    /// Index of the symbol.
    pub sym: usize,
    /// The ids asked for.
    pub range: IdRange,
    /// What happened.
    pub outcome: Outcome,
}

/// The `Gap.reason` for a REST failure, and whether another round later may succeed.
pub fn unfillable_reason(e: &RestError) -> (&'static str, bool) {
    match e {
        // Restricted location: only running elsewhere helps.
        RestError::GeoBlocked { .. } => ("geo_blocked_451", false),
        // Banned longer than the client may sit out: the ban ends (2 minutes to 3 days).
        RestError::Banned { .. } => ("ip_banned_418", true),
        // Still 429 after the client's retries: another round after a pause may pass.
        RestError::RateLimited { .. } => ("rate_limited_429", true),
        // 5xx / network on every attempt: another round may pass.
        RestError::Transient { .. } => ("rest_unavailable", true),
        // 4xx: the request is wrong and stays wrong.
        RestError::Permanent { .. } => ("rest_rejected", false),
        // A 2xx body that is not JSON (a proxy's HTML page, a truncated body), still so after
        // the client's retries: another round later may pass.
        RestError::Decode { .. } => ("rest_invalid_response", true),
        // A trade row breaking the contract comes back the same every time.
        RestError::InvalidRow(_) => ("rest_invalid_row", false),
        _ => ("rest_error", false),
    }
}

/// Settings of the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillConfig {
    /// Rounds per chunk for errors another round may fix (each round is a full client retry
    /// cycle).
    pub rounds: u32,
    /// Pause between rounds.
    pub round_pause: Duration,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        Self {
            rounds: 3,
            round_pause: Duration::from_secs(5),
        }
    }
}

/// Runs until `cancel` or until the request channel closes.
pub async fn run_backfill(
    client: RestClient,
    symbols: Arc<Vec<String>>,
    cfg: BackfillConfig,
    mut requests: mpsc::UnboundedReceiver<BackfillRequest>,
    results: mpsc::Sender<BackfillResult>,
    cancel: CancellationToken,
) {
    loop {
        let req = tokio::select! {
            _ = cancel.cancelled() => return,
            r = requests.recv() => match r { Some(r) => r, None => return },
        };
        let symbol = &symbols[req.sym];
        let mut round = 0;
        let outcome = loop {
            round += 1;
            let fetch = client.fetch_trade_range(symbol, req.range, Source::Backfill);
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = fetch => r,
            };
            match r {
                Ok(trades) => break Outcome::Fetched(trades),
                Err(e) => {
                    let (reason, again) = unfillable_reason(&e);
                    let banned = matches!(e, RestError::Banned { .. });
                    if again && !banned && round < cfg.rounds {
                        tracing::warn!(symbol, range = %req.range, round, error = %e, "backfill failed; trying again");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(cfg.round_pause) => continue,
                        }
                    }
                    let retry_after = again.then_some(match &e {
                        RestError::Banned { wait, .. } | RestError::RateLimited { wait, .. } => {
                            *wait
                        }
                        _ => Duration::ZERO,
                    });
                    break Outcome::Failed {
                        reason,
                        detail: e.to_string(),
                        retry_after,
                    };
                }
            }
        };
        let result = BackfillResult {
            sym: req.sym,
            range: req.range,
            outcome,
        };
        if results.send(result).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_a_closed_set_and_only_passing_troubles_are_retried() {
        let geo = RestError::GeoBlocked {
            url: "u".into(),
            msg: "m".into(),
        };
        assert_eq!(unfillable_reason(&geo), ("geo_blocked_451", false));
        let ban = RestError::Banned {
            wait: Duration::from_secs(7200),
            msg: "m".into(),
        };
        assert_eq!(unfillable_reason(&ban), ("ip_banned_418", true));
        let busy = RestError::RateLimited {
            endpoint: "/api/v3/historicalTrades",
            attempts: 6,
            wait: Duration::from_secs(1),
            msg: "m".into(),
        };
        assert_eq!(unfillable_reason(&busy), ("rate_limited_429", true));
        let down = RestError::Transient {
            endpoint: "/api/v3/historicalTrades",
            attempts: 6,
            detail: "503".into(),
        };
        assert_eq!(unfillable_reason(&down), ("rest_unavailable", true));
        let html = RestError::Decode {
            endpoint: "/api/v3/historicalTrades",
            detail: "expected value at line 1 column 1".into(),
        };
        assert_eq!(unfillable_reason(&html), ("rest_invalid_response", true));
        let nope = RestError::Permanent {
            endpoint: "/api/v3/historicalTrades",
            status: 400,
            code: Some(-1121),
            msg: "Invalid symbol.".into(),
        };
        assert_eq!(unfillable_reason(&nope), ("rest_rejected", false));
    }
}
