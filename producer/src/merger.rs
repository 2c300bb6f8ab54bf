//! The merger's logic: one continuity tracker per symbol over every source of trades, and the
//! bookkeeping of gaps from detection to backfill to (if need be) a `Gap` record.
//!
//! Every trade, whichever connection or REST page it came from, goes through
//! [`Merger::on_trade`]: a new id is published, a seen one dropped (overlapping connections,
//! duplicated frames, backfill pages crossing late stream frames). When an id jumps, the missing
//! range is remembered with the time it was seen; after `gap_grace` (reordered frames and the
//! old connection of a rotation usually fill it first) [`Merger::due_backfills`] hands out the
//! parts still missing, in REST-page-sized chunks, a few at a time: chunks are cut lazily, so a
//! huge gap costs one range, not millions of requests in memory. When a chunk's fetch ends,
//! [`Merger::on_backfill_done`] declares whatever is still missing unfillable: those ranges
//! become `Gap` records; a fetch that failed for a passing reason (429, 5xx, a ban, a proxy's
//! page) is handed back with [`Merger::retry_later`] instead and stays open. Nothing is silent:
//! each id is published once or reported in a gap.
//!
//! Stream ids are first held to [`Merger::plausible`]: an id far beyond anything the exchange
//! can have produced since the last one seen (a corrupted frame, a hostile peer) would open a
//! gap of billions of ids and move the resume point past them; such a trade is quarantined.
//!
//! Pure: time is passed in.

use std::collections::VecDeque;
use std::time::Duration;

use binance::continuity::{Continuity, IdRange, Verdict};
use tokio::time::Instant;

/// Largest chunk requested at once: one `historicalTrades` page (Binance: limit <= 1000).
pub const MAX_CHUNK: i64 = 1000;

/// Fastest id growth believed: 100,000 trades per second and symbol, ~10x the busiest bursts
/// Binance's BTCUSDT has shown (its daily average is ~35/s).
pub const MAX_IDS_PER_SEC: f64 = 100_000.0;

/// Jump always believed, whatever the time since the last id: above the producer's resume
/// window (`--max-resume-ids`, 1,000,000 by default), so a restart after hours is no suspect.
pub const PLAUSIBLE_JUMP_FLOOR: i64 = 10_000_000;

/// Largest id believed without any earlier id to compare with (Binance's ids are ~5e9 today).
pub const MAX_PLAUSIBLE_ID: i64 = 1 << 50;

#[derive(Debug, Clone, Copy)]
struct PendingGap {
    sym: usize,
    range: IdRange,
    /// Not handed out before this.
    due: Instant,
    /// First id of `range` not handed out yet.
    next: i64,
}

/// The per-symbol continuity state and gap bookkeeping. See the module documentation.
#[derive(Debug)]
pub struct Merger {
    trackers: Vec<Continuity>,
    pending: VecDeque<PendingGap>,
    /// Per symbol: the highest id accounted for and when it was (the plausibility anchor).
    anchors: Vec<Option<(i64, Instant)>>,
    grace: Duration,
}

impl Merger {
    /// A merger for `n` symbols, waiting `grace` before backfilling a gap.
    pub fn new(n: usize, grace: Duration) -> Self {
        Self {
            trackers: vec![Continuity::new(); n],
            pending: VecDeque::new(),
            anchors: vec![None; n],
            grace,
        }
    }

    /// Starts `sym`'s sequence right after `id` (a resume point or the exchange's latest id at
    /// start), so the first trade seen above it opens a gap to backfill. Call before any trade.
    pub fn start_after(&mut self, sym: usize, id: i64, now: Instant) {
        let max = self.trackers[sym].max_ranges();
        self.trackers[sym] = Continuity::resume_from(id).with_max_ranges(max);
        self.anchors[sym] = Some((id, now));
    }

    /// Whether stream trade `id` of `sym`, seen at `now`, is believable: positive, and no more
    /// than [`PLAUSIBLE_JUMP_FLOOR`] plus [`MAX_IDS_PER_SEC`] per second since the anchor above
    /// the highest id accounted for (or below [`MAX_PLAUSIBLE_ID`] when none is known yet).
    pub fn plausible(&self, sym: usize, id: i64, now: Instant) -> bool {
        if id <= 0 {
            return false;
        }
        match self.anchors[sym] {
            None => id < MAX_PLAUSIBLE_ID,
            Some((anchor, at)) => {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                let allowed = PLAUSIBLE_JUMP_FLOOR as f64 + MAX_IDS_PER_SEC * secs;
                ((id as f64) - (anchor as f64)) <= allowed
            }
        }
    }

    /// Classifies trade `id` of symbol `sym` seen at `now`.
    pub fn on_trade(&mut self, sym: usize, id: i64, now: Instant) -> Verdict {
        let v = self.trackers[sym].observe(id);
        if v.should_emit() && self.anchors[sym].is_none_or(|(a, _)| id > a) {
            self.anchors[sym] = Some((id, now));
        }
        if let Verdict::EmitWithGap(range) = v {
            self.pending.push_back(PendingGap {
                sym,
                range,
                due: now + self.grace,
                next: range.from,
            });
        }
        v
    }

    /// At most `max` chunks of gaps detected at least `grace` ago (or due again after a
    /// failure), restricted to the ids still missing, of at most [`MAX_CHUNK`] ids each. Each id
    /// is handed out once (until [`Merger::retry_later`]).
    pub fn due_backfills(&mut self, now: Instant, max: usize) -> Vec<(usize, IdRange)> {
        self.take_due(Some(now), max)
    }

    /// At most `max` chunks of every pending gap now, due or not (a last backfill at shutdown).
    pub fn all_backfills(&mut self, max: usize) -> Vec<(usize, IdRange)> {
        self.take_due(None, max)
    }

    fn take_due(&mut self, now: Option<Instant>, max: usize) -> Vec<(usize, IdRange)> {
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < max && i < self.pending.len() {
            let p = self.pending[i];
            if now.is_some_and(|now| now < p.due) {
                i += 1;
                continue;
            }
            let missing = self.trackers[p.sym]
                .outstanding_within(p.next, p.range.to)
                .next();
            let Some(missing) = missing else {
                // Nothing of this gap is missing any more.
                self.pending.remove(i);
                continue;
            };
            let to = missing.to.min(missing.from.saturating_add(MAX_CHUNK - 1));
            out.push((p.sym, IdRange::new(missing.from, to)));
            if to >= p.range.to {
                self.pending.remove(i);
            } else {
                self.pending[i].next = to + 1;
            }
        }
        out
    }

    /// The fetch of `range` for `sym` failed for a passing reason: its ids stay outstanding and
    /// are handed out again from `due`.
    pub fn retry_later(&mut self, sym: usize, range: IdRange, due: Instant) {
        self.pending.push_back(PendingGap {
            sym,
            range,
            due,
            next: range.from,
        });
    }

    /// The parts of `range` still outstanding for `sym`.
    pub fn still_missing(&self, sym: usize, range: IdRange) -> Vec<IdRange> {
        self.trackers[sym]
            .outstanding_within(range.from, range.to)
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

    const ALL: usize = usize::MAX;

    #[tokio::test(start_paused = true)]
    async fn a_huge_gap_is_cut_into_chunks_lazily_a_few_at_a_time() {
        let t = Instant::now();
        let mut m = Merger::new(1, Duration::ZERO);
        m.start_after(0, 0, t);
        // Accepted by the tracker (plausibility is the hub's call): 10^15 ids missing.
        m.on_trade(0, 1_000_000_000_000_001, t);
        let first = m.due_backfills(t, 4);
        assert_eq!(
            first,
            vec![
                (0, IdRange::new(1, 1000)),
                (0, IdRange::new(1001, 2000)),
                (0, IdRange::new(2001, 3000)),
                (0, IdRange::new(3001, 4000)),
            ]
        );
        assert_eq!(m.due_backfills(t, 1), vec![(0, IdRange::new(4001, 5000))]);
        assert_eq!(m.due_backfills(t, 0), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_chunk_stays_open_and_is_handed_out_again_when_due() {
        let t = Instant::now();
        let mut m = Merger::new(1, Duration::ZERO);
        m.on_trade(0, 1, t);
        m.on_trade(0, 1_502, t); // 2..=1501 missing
        assert_eq!(
            m.due_backfills(t, ALL),
            vec![(0, IdRange::new(2, 1001)), (0, IdRange::new(1002, 1501))]
        );
        // The first chunk's fetch failed for a passing reason: back in 30 s.
        m.retry_later(0, IdRange::new(2, 1001), t + Duration::from_secs(30));
        assert_eq!(m.outstanding_ids(0), 1500, "still open, no gap record");
        assert_eq!(m.due_backfills(t + Duration::from_secs(29), ALL), vec![]);
        // A new gap detected meanwhile is not held up behind the retry.
        m.on_trade(0, 1_504, t + Duration::from_secs(1));
        assert_eq!(
            m.due_backfills(t + Duration::from_secs(2), ALL),
            vec![(0, IdRange::new(1503, 1503))]
        );
        assert_eq!(
            m.due_backfills(t + Duration::from_secs(30), ALL),
            vec![(0, IdRange::new(2, 1001))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ids_far_beyond_what_the_exchange_can_have_made_are_implausible() {
        let t = Instant::now();
        let mut m = Merger::new(2, Duration::ZERO);
        // Nothing known yet: only absurd ids are refused.
        assert!(m.plausible(0, 5_052_328_858, t));
        assert!(!m.plausible(0, i64::MAX, t));
        assert!(!m.plausible(0, 0, t));
        assert!(!m.plausible(0, -7, t));
        m.start_after(0, 5_000_000_000, t);
        assert!(m.plausible(0, 5_000_000_001, t));
        assert!(m.plausible(0, 5_000_000_000 + PLAUSIBLE_JUMP_FLOOR, t));
        assert!(!m.plausible(0, 5_000_000_001 + PLAUSIBLE_JUMP_FLOOR, t));
        assert!(!m.plausible(0, i64::MAX, t));
        // Ten hours without a trade seen: a jump of ten hours at the fastest rate is believed.
        let later = t + Duration::from_secs(36_000);
        assert!(m.plausible(0, 5_000_000_000 + 3_000_000_000, later));
        assert!(!m.plausible(0, i64::MAX, later));
        // The anchor follows the trades accounted for.
        m.on_trade(0, 5_000_000_050, t);
        assert!(!m.plausible(0, 5_000_000_051 + PLAUSIBLE_JUMP_FLOOR, t));
        // A first id seen anchors too.
        m.on_trade(1, 42, t);
        assert!(!m.plausible(1, 43 + PLAUSIBLE_JUMP_FLOOR, t));
    }

    #[test]
    fn a_started_symbol_backfills_from_its_start_point() {
        let t0 = Instant::now();
        let mut m = Merger::new(2, Duration::ZERO);
        m.start_after(0, 99, t0);
        assert_eq!(m.on_trade(0, 99, t0), Verdict::BeforeStart);
        assert_eq!(
            m.on_trade(0, 2105, t0),
            Verdict::EmitWithGap(IdRange::new(100, 2104))
        );
        // One REST page at a time.
        let due = m.due_backfills(t0, ALL);
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
        assert!(m.due_backfills(t0, ALL).is_empty());
        assert_eq!(m.all_backfills(ALL), vec![(0, IdRange::new(2, 4))]);
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
        assert_eq!(m.due_backfills(Instant::now(), ALL), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_gap_is_fetched_after_the_grace_in_page_sized_chunks_once() {
        let mut m = Merger::new(2, Duration::from_secs(1));
        let t = Instant::now();
        m.on_trade(1, 0, t);
        m.on_trade(1, 2_501, t); // 1..=2500 missing
        m.on_trade(1, 700, t); // one arrives late on the stream
        assert_eq!(m.due_backfills(t, ALL), vec![], "not before the grace");
        tokio::time::advance(Duration::from_secs(1)).await;
        let due = m.due_backfills(Instant::now(), ALL);
        assert_eq!(
            due,
            vec![
                (1, IdRange::new(1, 699)),
                (1, IdRange::new(701, 1700)),
                (1, IdRange::new(1701, 2500)),
            ]
        );
        assert_eq!(
            m.due_backfills(Instant::now(), ALL),
            vec![],
            "handed out once"
        );
        assert_eq!(m.outstanding_ids(1), 2499);
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_backfill_did_not_return_becomes_unfillable_and_the_rest_is_deduplicated() {
        let mut m = Merger::new(1, Duration::ZERO);
        let t = Instant::now();
        m.on_trade(0, 100, t);
        m.on_trade(0, 110, t);
        let due = m.due_backfills(t, ALL);
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
