//! The merger's logic: one continuity tracker per symbol over every source of trades, and the
//! bookkeeping of gaps from detection to backfill to (if need be) a `Gap` record.
//!
//! Every trade, whichever connection or REST page it came from, goes through
//! [`Merger::on_trade`]: a new id is published, a seen one dropped (overlapping connections,
//! duplicated frames, backfill pages crossing late stream frames). When an id jumps, the missing
//! range is remembered with the time it was seen; after `gap_grace` (reordered frames and the
//! old connection of a rotation usually fill it first) [`Merger::due_backfills`] hands out the
//! parts still missing, in REST-page-sized chunks. When a chunk's fetch ends,
//! [`Merger::on_backfill_done`] declares whatever is still missing unfillable: those ranges
//! become `Gap` records. Nothing is silent: each id is published once or reported in a gap.
//!
//! Pure: time is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use binance::continuity::{Continuity, IdRange, Verdict};
use tokio::time::Instant;

/// Largest chunk requested at once: one `historicalTrades` page (Binance: limit <= 1000).
pub const MAX_CHUNK: i64 = 1000;

#[derive(Debug, Clone, Copy)]
struct PendingGap {
    sym: usize,
    range: IdRange,
    since: Instant,
}

/// The per-symbol continuity state and gap bookkeeping. See the module documentation.
#[derive(Debug)]
pub struct Merger {
    trackers: Vec<Continuity>,
    pending: VecDeque<PendingGap>,
    grace: Duration,
}

impl Merger {
    /// A merger for `n` symbols, waiting `grace` before backfilling a gap.
    pub fn new(n: usize, grace: Duration) -> Self {
        Self {
            trackers: vec![Continuity::new(); n],
            pending: VecDeque::new(),
            grace,
        }
    }

    /// Starts `sym`'s sequence right after `id` (a resume point or the exchange's latest id at
    /// start), so the first trade seen above it opens a gap to backfill. Call before any trade.
    pub fn start_after(&mut self, sym: usize, id: i64) {
        let max = self.trackers[sym].max_ranges();
        self.trackers[sym] = Continuity::resume_from(id).with_max_ranges(max);
    }

    /// Classifies trade `id` of symbol `sym` seen at `now`.
    pub fn on_trade(&mut self, sym: usize, id: i64, now: Instant) -> Verdict {
        let v = self.trackers[sym].observe(id);
        if let Verdict::EmitWithGap(range) = v {
            self.pending.push_back(PendingGap {
                sym,
                range,
                since: now,
            });
        }
        v
    }

    /// Gaps detected at least `grace` ago, restricted to the ids still missing, in chunks of at
    /// most [`MAX_CHUNK`] ids. Each id is handed out once.
    pub fn due_backfills(&mut self, now: Instant) -> Vec<(usize, IdRange)> {
        self.take_due(Some(now))
    }

    /// Every pending gap now, grace or not (a last backfill at shutdown), in the same chunks.
    pub fn all_backfills(&mut self) -> Vec<(usize, IdRange)> {
        self.take_due(None)
    }

    fn take_due(&mut self, now: Option<Instant>) -> Vec<(usize, IdRange)> {
        let mut out = Vec::new();
        while let Some(p) = self.pending.front().copied() {
            if now.is_some_and(|now| now.saturating_duration_since(p.since) < self.grace) {
                break;
            }
            self.pending.pop_front();
            for missing in self.still_missing(p.sym, p.range) {
                let mut from = missing.from;
                while from <= missing.to {
                    let to = missing.to.min(from + MAX_CHUNK - 1);
                    out.push((p.sym, IdRange::new(from, to)));
                    from = to + 1;
                }
            }
        }
        out
    }

    /// The parts of `range` still outstanding for `sym`.
    pub fn still_missing(&self, sym: usize, range: IdRange) -> Vec<IdRange> {
        self.trackers[sym]
            .outstanding()
            .filter(|r| r.to >= range.from && r.from <= range.to)
            .map(|r| IdRange::new(r.from.max(range.from), r.to.min(range.to)))
            .collect()
    }

    /// The fetch of `range` for `sym` ended (its trades already went through
    /// [`Merger::on_trade`]): what is still missing is unfillable; returns those ranges.
    pub fn on_backfill_done(&mut self, sym: usize, range: IdRange) -> Vec<IdRange> {
        self.trackers[sym].mark_unfillable(range)
    }

    /// Gaps the trackers gave up on because too many were open at once (already unfillable).
    pub fn take_overflowed(&mut self) -> Vec<(usize, IdRange)> {
        let mut out = Vec::new();
        for (sym, t) in self.trackers.iter_mut().enumerate() {
            out.extend(t.take_overflowed().into_iter().map(|r| (sym, r)));
        }
        out
    }

    /// Ids of `sym` still missing (a metric).
    pub fn outstanding_ids(&self, sym: usize) -> u64 {
        self.trackers[sym].outstanding_ids()
    }

    /// The highest id seen of `sym`.
    pub fn highest(&self, sym: usize) -> Option<i64> {
        self.trackers[sym].highest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_symbol_backfills_from_its_start_point() {
        let t0 = Instant::now();
        let mut m = Merger::new(2, Duration::ZERO);
        m.start_after(0, 99);
        assert_eq!(m.on_trade(0, 99, t0), Verdict::BeforeStart);
        assert_eq!(
            m.on_trade(0, 2105, t0),
            Verdict::EmitWithGap(IdRange::new(100, 2104))
        );
        // One REST page at a time.
        let due = m.due_backfills(t0);
        assert_eq!(
            due,
            vec![
                (0, IdRange::new(100, 1099)),
                (0, IdRange::new(1100, 2099)),
                (0, IdRange::new(2100, 2104)),
            ]
        );
        // The other symbol still starts at its first id.
        assert_eq!(m.on_trade(1, 7, t0), Verdict::Emit);
        // At shutdown every pending gap is handed out, grace or not.
        let mut m = Merger::new(1, Duration::from_secs(3600));
        m.on_trade(0, 1, t0);
        m.on_trade(0, 5, t0);
        assert!(m.due_backfills(t0).is_empty());
        assert_eq!(m.all_backfills(), vec![(0, IdRange::new(2, 4))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reordered_frame_fills_its_gap_before_the_grace_and_nothing_is_fetched() {
        let mut m = Merger::new(1, Duration::from_secs(1));
        let t = Instant::now();
        assert_eq!(m.on_trade(0, 10, t), Verdict::Emit);
        assert_eq!(
            m.on_trade(0, 12, t),
            Verdict::EmitWithGap(IdRange::new(11, 11))
        );
        assert_eq!(m.on_trade(0, 11, t), Verdict::Emit);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(m.due_backfills(Instant::now()), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_gap_is_fetched_after_the_grace_in_page_sized_chunks_once() {
        let mut m = Merger::new(2, Duration::from_secs(1));
        let t = Instant::now();
        m.on_trade(1, 0, t);
        m.on_trade(1, 2_501, t); // 1..=2500 missing
        m.on_trade(1, 700, t); // one arrives late on the stream
        assert_eq!(m.due_backfills(t), vec![], "not before the grace");
        tokio::time::advance(Duration::from_secs(1)).await;
        let due = m.due_backfills(Instant::now());
        assert_eq!(
            due,
            vec![
                (1, IdRange::new(1, 699)),
                (1, IdRange::new(701, 1700)),
                (1, IdRange::new(1701, 2500)),
            ]
        );
        assert_eq!(m.due_backfills(Instant::now()), vec![], "handed out once");
        assert_eq!(m.outstanding_ids(1), 2499);
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_backfill_did_not_return_becomes_unfillable_and_the_rest_is_deduplicated() {
        let mut m = Merger::new(1, Duration::ZERO);
        let t = Instant::now();
        m.on_trade(0, 100, t);
        m.on_trade(0, 110, t);
        let due = m.due_backfills(t);
        assert_eq!(due, vec![(0, IdRange::new(101, 109))]);
        // The page returns 101..=105 and, overlapping, 110.
        for id in 101..=105 {
            assert_eq!(m.on_trade(0, id, t), Verdict::Emit);
        }
        assert_eq!(m.on_trade(0, 110, t), Verdict::Duplicate);
        assert_eq!(
            m.on_backfill_done(0, IdRange::new(101, 109)),
            vec![IdRange::new(106, 109)]
        );
        assert_eq!(m.outstanding_ids(0), 0);
        assert_eq!(m.highest(0), Some(110));
    }
}
