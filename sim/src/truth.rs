//! Ground truth: what the simulator produced per symbol and what each connection did and did
//! not receive. Served by `GET /admin/ground-truth` and [`crate::SimHandle::ground_truth`].
//!
//! Definitions (exact, so tests can assert "nothing lost, nothing duplicated"):
//! - **produced**: trades the live tape emitted since start-up, i.e. ids `first_id..=last_id`,
//!   with no gap (ids are consecutive). The REST history also holds every earlier trade back to
//!   `genesis_first_id`.
//! - **expected** by a connection, per symbol: every id emitted while it was subscribed to that
//!   symbol's `@trade` stream, from `first_expected_id` on.
//! - **missed**: expected ids never delivered intact: emitted during a stall, sent malformed,
//!   in flight when the connection was dropped or shut down, or skipped because the connection
//!   lagged. A duplicate is extra (counted in `duplicated`), not missing; a reordered frame is
//!   delivered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use trade_proto::ids::IdSet;

/// Why an expected trade was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissReason {
    /// Emitted while the connection was stalled.
    Stall,
    /// Sent as a malformed frame.
    Malformed,
    /// In flight when the connection was dropped (injected drop).
    Dropped,
    /// In flight when the connection was closed after `serverShutdown`.
    Shutdown,
    /// In flight when the server closed the connection for another reason (age, pong timeout,
    /// rate limit, client close): not an injected fault.
    Closed,
    /// The connection fell behind the broadcast buffer: not an injected fault.
    Lagged,
}

impl MissReason {
    /// `true` for reasons caused by injected faults.
    pub fn is_injected(self) -> bool {
        matches!(
            self,
            Self::Stall | Self::Malformed | Self::Dropped | Self::Shutdown
        )
    }
}

/// What the live tape produced for one symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolTruth {
    /// First trade id produced live (the first trade after start-up).
    pub first_id: u64,
    /// Last trade id produced so far (`None` before the first).
    pub last_id: Option<u64>,
    /// `last_id - first_id + 1`, or 0.
    pub count: u64,
    /// Id of the first trade at genesis (the oldest the REST history has).
    pub genesis_first_id: u64,
}

/// One connection's record for one symbol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnSymbolTruth {
    /// First id this connection was expected to receive.
    pub first_expected_id: Option<u64>,
    /// Next id it expects (`None` when not subscribed).
    pub next_expected_id: Option<u64>,
    /// Trades delivered intact (a duplicate counts once).
    pub delivered: u64,
    /// Last id delivered.
    pub last_delivered_id: Option<u64>,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Frames sent after their successor.
    pub reordered: u64,
    /// Ids expected but not delivered, as inclusive ranges: `[[first, last], ...]` in JSON.
    pub missed: IdSet,
    /// Count of missed ids per reason.
    pub missed_by_reason: BTreeMap<MissReason, u64>,
}

impl ConnSymbolTruth {
    /// Record missed ids.
    pub fn miss(&mut self, first: u64, last: u64, reason: MissReason) {
        if first > last {
            return;
        }
        self.missed
            .insert_range(contract_id(first), contract_id(last));
        *self.missed_by_reason.entry(reason).or_default() += last - first + 1;
    }

    /// Missed ids due to injected faults only.
    pub fn missed_by_faults(&self) -> u64 {
        self.missed_by_reason
            .iter()
            .filter(|(r, _)| r.is_injected())
            .map(|(_, n)| n)
            .sum()
    }
}

/// A tape id as the contract types it (`i64`). Tape ids stay far below `i64::MAX`; the one
/// hostile id the faults inject, `i64::MAX`, still fits.
fn contract_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Everything about one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTruth {
    /// Connection id (also in `GET /admin/connections`).
    pub id: u64,
    /// Client address.
    pub remote: String,
    /// Request path and query of the upgrade.
    pub path: String,
    /// Open time (ms, simulator clock).
    pub opened_at_ms: i64,
    /// Close time, when closed.
    pub closed_at_ms: Option<i64>,
    /// Why it closed.
    pub close_reason: Option<String>,
    /// Current subscriptions.
    pub streams: Vec<String>,
    /// Per upper-case symbol.
    pub symbols: BTreeMap<String, ConnSymbolTruth>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Simulator clock now (ms).
    pub now_ms: i64,
    /// Simulator clock at start-up (ms).
    pub started_at_ms: i64,
    /// Genesis (ms): no trade is older.
    pub genesis_ms: i64,
    /// Per symbol.
    pub symbols: BTreeMap<String, SymbolTruth>,
    /// Per connection (all, or the one asked for).
    pub connections: Vec<ConnectionTruth>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_ids_are_reported_as_ranges_in_json() {
        let mut t = ConnSymbolTruth::default();
        t.miss(5_052_000_100, 5_052_000_350, MissReason::Stall);
        t.miss(5_052_000_402, 5_052_000_402, MissReason::Malformed);
        t.miss(5_052_000_351, 5_052_000_351, MissReason::Dropped);
        t.miss(9, 8, MissReason::Closed);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json["missed"],
            serde_json::json!([
                [5_052_000_100u64, 5_052_000_351u64],
                [5_052_000_402u64, 5_052_000_402u64]
            ])
        );
        assert_eq!(t.missed_by_faults(), 253);
        let back: ConnSymbolTruth = serde_json::from_value(json).unwrap();
        assert_eq!(back, t);
    }
}
