//! Per-symbol trade-id continuity: which trades to emit, which to drop, which ids to backfill.
//!
//! Binance trade ids are consecutive per symbol (the 24h ticker's `lastId - firstId + 1 ==
//! count`), so gaps and duplicates are visible from the id alone. A [`Continuity`] tracker is fed
//! every trade id of one symbol, whether it came from the websocket (possibly two sockets during
//! a make-before-break reconnect) or from a REST backfill, and answers with a [`Verdict`]:
//!
//! - [`Verdict::Emit`]: never seen, publish it;
//! - [`Verdict::EmitWithGap`]: publish it, and the ids between the previous highest and this one
//!   are missing: backfill that range;
//! - [`Verdict::Duplicate`]: already emitted (overlap between sockets, backfill of an id that
//!   arrived late on the stream): drop it;
//! - [`Verdict::BeforeStart`]: below the start of the sequence: drop it.
//!
//! Guarantee (property-tested): every id at or above the start that arrives is emitted exactly
//! once, whatever the order of arrival, and [`Continuity::outstanding`] is exactly the set of ids
//! between the start and the highest id seen that have neither arrived nor been declared
//! unfillable.
//!
//! The start of the sequence: the first id seen (no gap is reported before it), or
//! `resume_from + 1` when the caller knows the last id it published before a restart, so a
//! restarted producer backfills from where it stopped.
//!
//! Memory is bounded: state is a handful of integers plus two sets of *ranges* (outstanding gaps
//! and gaps declared unfillable), each capped at [`Continuity::max_ranges`]. When outstanding
//! gaps overflow the cap, the oldest is declared unfillable and handed to the caller through
//! [`Continuity::take_overflowed`]; when the memory of unfillable gaps overflows, the oldest is
//! forgotten (a trade of it arriving later still would be dropped as a duplicate: the daily
//! batch reconciliation is the net for that).
//!
//! Pure: no clock, no I/O. The caller owns one tracker per symbol.

use std::fmt;

use trade_proto::ids::IdSet;

/// An inclusive range of trade ids, `from..=to`, `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdRange {
    /// First id (inclusive).
    pub from: i64,
    /// Last id (inclusive).
    pub to: i64,
}

impl IdRange {
    /// `from..=to`. Panics if `from > to` (a caller bug, never data).
    pub fn new(from: i64, to: i64) -> Self {
        assert!(from <= to, "IdRange::new({from}, {to}): from > to");
        IdRange { from, to }
    }

    /// Number of ids in the range.
    pub fn len(self) -> u64 {
        self.to.abs_diff(self.from) + 1
    }

    /// Always false: a range holds at least one id.
    pub fn is_empty(self) -> bool {
        false
    }

    /// True when `id` is in the range.
    pub fn contains(self, id: i64) -> bool {
        self.from <= id && id <= self.to
    }
}

impl fmt::Display for IdRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.from, self.to)
    }
}

/// What to do with one trade id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: emit the trade.
    Emit,
    /// New, and the ids in the range (all below this one) have never been seen: emit the trade
    /// and backfill the range.
    EmitWithGap(IdRange),
    /// Already emitted: drop the trade.
    Duplicate,
    /// Below the start of the sequence (at or below `resume_from`, or below the first id seen):
    /// drop the trade.
    BeforeStart,
}

impl Verdict {
    /// True for [`Verdict::Emit`] and [`Verdict::EmitWithGap`].
    pub fn should_emit(self) -> bool {
        matches!(self, Verdict::Emit | Verdict::EmitWithGap(_))
    }
}

/// Default cap on each range set. 4096 ranges is 64 KiB of ids per symbol at most and far more
/// distinct gaps than a healthy connection makes in a day (one per reconnect at worst).
pub const DEFAULT_MAX_RANGES: usize = 4096;

/// The continuity tracker of one symbol. See the module documentation.
#[derive(Debug, Clone)]
pub struct Continuity {
    /// Lowest id of the sequence; `None` until the first id (without `resume_from`).
    floor: Option<i64>,
    /// Highest id seen; `floor - 1` right after a resume.
    highest: Option<i64>,
    /// Ids in `[floor, highest]` that never arrived and are still worth waiting for.
    outstanding: IdSet,
    /// Ids declared unfillable that never arrived, remembered so a late arrival is emitted once.
    unfillable: IdSet,
    /// Outstanding ranges evicted by the cap, waiting for [`Continuity::take_overflowed`].
    overflowed: Vec<IdRange>,
    /// Cap on the number of ranges in each set.
    max_ranges: usize,
}

impl Default for Continuity {
    fn default() -> Self {
        Self::new()
    }
}

impl Continuity {
    /// A tracker whose sequence starts at the first id it sees.
    pub fn new() -> Self {
        Continuity {
            floor: None,
            highest: None,
            outstanding: IdSet::new(),
            unfillable: IdSet::new(),
            overflowed: Vec::new(),
            max_ranges: DEFAULT_MAX_RANGES,
        }
    }

    /// A tracker for a restarted producer: `last_published` and everything below it are known to
    /// be published, so they are dropped as [`Verdict::BeforeStart`], and the first id seen above
    /// `last_published + 1` reports the ids in between as a gap.
    pub fn resume_from(last_published: i64) -> Self {
        let mut c = Self::new();
        c.floor = Some(last_published.saturating_add(1));
        c.highest = Some(last_published);
        c
    }

    /// Sets the cap on each range set (at least 1).
    pub fn with_max_ranges(mut self, max_ranges: usize) -> Self {
        self.max_ranges = max_ranges.max(1);
        self
    }

    /// The cap on each range set.
    pub fn max_ranges(&self) -> usize {
        self.max_ranges
    }

    /// Classifies one trade id and records it. Ids must be below `i64::MAX`.
    pub fn observe(&mut self, id: i64) -> Verdict {
        let (Some(floor), Some(highest)) = (self.floor, self.highest) else {
            self.floor = Some(id);
            self.highest = Some(id);
            return Verdict::Emit;
        };
        if id < floor {
            return Verdict::BeforeStart;
        }
        if id > highest {
            self.highest = Some(id);
            if id == highest + 1 {
                return Verdict::Emit;
            }
            let gap = IdRange::new(highest + 1, id - 1);
            // Above every id seen, so never adjacent to an outstanding range: one more range.
            self.outstanding.insert_range(gap.from, gap.to);
            while self.outstanding.range_count() > self.max_ranges {
                let (from, to) = self.outstanding.pop_first().expect("len > max_ranges >= 1");
                let oldest = IdRange { from, to };
                self.remember_unfillable(oldest);
                self.overflowed.push(oldest);
            }
            return Verdict::EmitWithGap(gap);
        }
        if self.outstanding.remove(id) || self.unfillable.remove(id) {
            Verdict::Emit
        } else {
            Verdict::Duplicate
        }
    }

    /// Declares the ids of `range` that are still outstanding unfillable (REST could not deliver
    /// them) and returns them, ascending: one `Gap` record each. Ids of `range` that already
    /// arrived, or were never outstanding, are not returned. A later arrival of a returned id is
    /// still emitted once.
    pub fn mark_unfillable(&mut self, range: IdRange) -> Vec<IdRange> {
        let removed: Vec<IdRange> = self
            .outstanding
            .remove_range(range.from, range.to)
            .into_iter()
            .map(|(from, to)| IdRange { from, to })
            .collect();
        for r in &removed {
            self.remember_unfillable(*r);
        }
        removed
    }

    /// Outstanding ranges evicted because more than [`Continuity::max_ranges`] gaps were open at
    /// once. They are already declared unfillable; the caller should write a `Gap` record for
    /// each (reason e.g. `tracker_overflow`).
    pub fn take_overflowed(&mut self) -> Vec<IdRange> {
        std::mem::take(&mut self.overflowed)
    }

    /// The gaps still waiting for their ids, ascending.
    pub fn outstanding(&self) -> impl Iterator<Item = IdRange> + '_ {
        self.outstanding
            .ranges()
            .map(|(from, to)| IdRange { from, to })
    }

    /// The parts of the gaps within `from..=to`, ascending.
    pub fn outstanding_within(&self, from: i64, to: i64) -> impl Iterator<Item = IdRange> + '_ {
        self.outstanding
            .within(from, to)
            .map(|(from, to)| IdRange { from, to })
    }

    /// Number of ids still outstanding (for a metric).
    pub fn outstanding_ids(&self) -> u64 {
        self.outstanding.len()
    }

    /// The highest id seen (or `resume_from`), `None` before the first id.
    pub fn highest(&self) -> Option<i64> {
        self.highest
    }

    /// The highest id `h` such that every id of the sequence up to `h` has been emitted or
    /// declared unfillable: the candidate for `resume_from` after a restart, once the publisher
    /// has confirmed everything up to it.
    pub fn settled_through(&self) -> Option<i64> {
        let highest = self.highest?;
        Some(match self.outstanding.first() {
            Some((from, _)) => from - 1,
            None => highest,
        })
    }

    fn remember_unfillable(&mut self, range: IdRange) {
        self.unfillable.insert_range(range.from, range.to);
        while self.unfillable.range_count() > self.max_ranges {
            self.unfillable.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_id_starts_the_sequence() {
        let mut c = Continuity::new();
        assert_eq!(c.observe(100), Verdict::Emit);
        assert_eq!(c.observe(99), Verdict::BeforeStart);
        assert_eq!(c.observe(101), Verdict::Emit);
        assert_eq!(c.observe(101), Verdict::Duplicate);
        assert_eq!(c.outstanding().count(), 0);
        assert_eq!(c.settled_through(), Some(101));
    }

    #[test]
    fn gap_then_late_stream_then_backfill_overlap() {
        let mut c = Continuity::new();
        c.observe(10);
        assert_eq!(c.observe(15), Verdict::EmitWithGap(IdRange::new(11, 14)));
        assert_eq!(c.settled_through(), Some(10));
        // A late stream frame fills part of the gap.
        assert_eq!(c.observe(12), Verdict::Emit);
        assert_eq!(
            c.outstanding().collect::<Vec<_>>(),
            vec![IdRange::new(11, 11), IdRange::new(13, 14)]
        );
        // The backfill returns 11..=15: 12 and 15 are duplicates.
        let verdicts: Vec<_> = (11..=15).map(|id| c.observe(id)).collect();
        assert_eq!(
            verdicts,
            vec![
                Verdict::Emit,
                Verdict::Duplicate,
                Verdict::Emit,
                Verdict::Emit,
                Verdict::Duplicate
            ]
        );
        assert_eq!(c.outstanding_ids(), 0);
        assert_eq!(c.settled_through(), Some(15));
    }

    #[test]
    fn resume_from_backfills_from_where_it_stopped() {
        let mut c = Continuity::resume_from(1000);
        assert_eq!(c.observe(1000), Verdict::BeforeStart);
        assert_eq!(
            c.observe(1005),
            Verdict::EmitWithGap(IdRange::new(1001, 1004))
        );
        let mut c = Continuity::resume_from(1000);
        assert_eq!(c.observe(1001), Verdict::Emit);
    }

    #[test]
    fn unfillable_returns_only_what_is_still_missing_and_late_arrival_is_emitted_once() {
        let mut c = Continuity::new();
        c.observe(0);
        c.observe(10);
        c.observe(5);
        assert_eq!(
            c.mark_unfillable(IdRange::new(3, 20)),
            vec![IdRange::new(3, 4), IdRange::new(6, 9)]
        );
        assert_eq!(
            c.outstanding().collect::<Vec<_>>(),
            vec![IdRange::new(1, 2)]
        );
        assert_eq!(c.observe(7), Verdict::Emit);
        assert_eq!(c.observe(7), Verdict::Duplicate);
        assert_eq!(c.mark_unfillable(IdRange::new(3, 20)), vec![]);
    }

    #[test]
    fn too_many_gaps_overflow_into_unfillable_records() {
        let mut c = Continuity::new().with_max_ranges(2);
        c.observe(0);
        c.observe(2); // gap 1
        c.observe(4); // gap 3
        assert!(c.take_overflowed().is_empty());
        c.observe(6); // gap 5: evicts gap 1
        assert_eq!(c.take_overflowed(), vec![IdRange::new(1, 1)]);
        assert!(c.take_overflowed().is_empty());
        assert_eq!(
            c.outstanding().collect::<Vec<_>>(),
            vec![IdRange::new(3, 3), IdRange::new(5, 5)]
        );
        // The evicted id is remembered as unfillable: a late arrival is still emitted once.
        assert_eq!(c.observe(1), Verdict::Emit);
        assert_eq!(c.observe(1), Verdict::Duplicate);
    }

    #[test]
    fn range_len_and_display() {
        assert_eq!(IdRange::new(5, 5).len(), 1);
        assert_eq!(IdRange::new(5, 9).len(), 5);
        assert_eq!(IdRange::new(5, 9).to_string(), "5..=9");
        assert!(IdRange::new(5, 9).contains(9) && !IdRange::new(5, 9).contains(10));
    }
}
