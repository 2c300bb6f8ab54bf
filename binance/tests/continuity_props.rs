//! Property tests of the continuity tracker against a set-based model.
//!
//! Model: the true trade ids are consecutive; the arrival stream is any sequence of ids (repeats,
//! reorders, gaps, overlaps between sockets and backfills), interleaved with "declare this range
//! unfillable". After every step:
//! - every id at or above the start that arrived was emitted exactly once;
//! - the outstanding gaps are exactly the ids between the start and the highest id seen that
//!   neither arrived nor were declared unfillable;
//! - a reported gap holds only ids that never arrived.

use std::collections::{BTreeMap, BTreeSet};

use binance::continuity::{Continuity, IdRange, Verdict};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Arrive(i64),
    /// Backfill of a whole range: every id in it arrives, ascending.
    Backfill(i64, i64),
    Unfillable(i64, i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0i64..60).prop_map(Op::Arrive),
        1 => (0i64..60, 0i64..8).prop_map(|(a, n)| Op::Backfill(a, a + n)),
        1 => (0i64..60, 0i64..12).prop_map(|(a, n)| Op::Unfillable(a, a + n)),
    ]
}

fn set_of(ranges: impl IntoIterator<Item = IdRange>) -> BTreeSet<i64> {
    ranges.into_iter().flat_map(|r| r.from..=r.to).collect()
}

fn run(resume: Option<i64>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut c = match resume {
        Some(r) => Continuity::resume_from(r),
        None => Continuity::new(),
    };
    let mut floor: Option<i64> = resume.map(|r| r + 1);
    let mut highest: Option<i64> = resume;
    let mut emitted: BTreeMap<i64, u32> = BTreeMap::new();
    let mut arrived: BTreeSet<i64> = BTreeSet::new();
    let mut unfillable: BTreeSet<i64> = BTreeSet::new();

    let arrivals = |op: &Op| -> Vec<i64> {
        match *op {
            Op::Arrive(id) => vec![id],
            Op::Backfill(a, b) => (a..=b).collect(),
            Op::Unfillable(..) => vec![],
        }
    };

    for op in &ops {
        for id in arrivals(op) {
            let v = c.observe(id);
            if floor.is_none() {
                floor = Some(id);
            }
            let f = floor.unwrap();
            if id < f {
                prop_assert_eq!(v, Verdict::BeforeStart, "id {} below start {}", id, f);
                continue;
            }
            let already = emitted.contains_key(&id);
            prop_assert_eq!(v.should_emit(), !already, "id {} verdict {:?}", id, v);
            if let Verdict::EmitWithGap(g) = v {
                let h = highest.unwrap();
                prop_assert_eq!(g, IdRange::new(h + 1, id - 1));
                for x in g.from..=g.to {
                    prop_assert!(!arrived.contains(&x), "gap holds arrived id {}", x);
                }
            }
            if v == Verdict::Emit && highest.is_some_and(|h| id > h) {
                prop_assert_eq!(id, highest.unwrap() + 1, "jump without a gap report");
            }
            if v.should_emit() {
                *emitted.entry(id).or_default() += 1;
                unfillable.remove(&id);
            }
            arrived.insert(id);
            highest = Some(highest.map_or(id, |h| h.max(id)));
        }
        if let Op::Unfillable(a, b) = *op {
            let expected: BTreeSet<i64> = match (floor, highest) {
                (Some(f), Some(h)) => (a.max(f)..=b.min(h))
                    .filter(|x| !arrived.contains(x) && !unfillable.contains(x))
                    .collect(),
                _ => BTreeSet::new(),
            };
            let got = c.mark_unfillable(IdRange::new(a, b));
            prop_assert!(got.windows(2).all(|w| w[0].to < w[1].from), "not ascending");
            prop_assert_eq!(set_of(got), expected.clone());
            unfillable.extend(expected);
        }

        // Invariants after every step.
        prop_assert!(emitted.values().all(|&n| n == 1), "emitted twice");
        if let (Some(f), Some(h)) = (floor, highest) {
            let expected: BTreeSet<i64> = (f..=h)
                .filter(|x| !arrived.contains(x) && !unfillable.contains(x))
                .collect();
            prop_assert_eq!(set_of(c.outstanding()), expected.clone());
            prop_assert_eq!(c.outstanding_ids(), expected.len() as u64);
            let settled = expected.first().map_or(h, |first| first - 1);
            prop_assert_eq!(c.settled_through(), Some(settled));
            for id in &arrived {
                if *id >= f {
                    prop_assert!(emitted.contains_key(id), "arrived id {} never emitted", id);
                }
            }
        }
        prop_assert!(c.take_overflowed().is_empty(), "no overflow below the cap");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_arrival_emitted_once_and_gaps_exact(ops in proptest::collection::vec(op(), 0..80)) {
        run(None, ops)?;
    }

    #[test]
    fn same_after_a_resume(resume in 0i64..30, ops in proptest::collection::vec(op(), 0..80)) {
        run(Some(resume), ops)?;
    }

    /// The producer's loop end to end: a true consecutive sequence delivered by a stream that
    /// drops, repeats and reorders; every reported gap is backfilled from the truth (pages that
    /// overlap what arrived). In the end every id from the first one on is emitted exactly once
    /// and nothing is outstanding.
    #[test]
    fn stream_plus_backfill_delivers_everything_once(
        n in 1i64..300,
        faults in proptest::collection::vec((0u8..10, 0usize..5), 0..300),
    ) {
        let truth: Vec<i64> = (1000..1000 + n).collect();
        // Build the stream: per id, 0 = drop, 1 = repeat, 2 = delay by k positions, else pass.
        let mut stream: Vec<i64> = Vec::new();
        let mut delayed: Vec<(usize, i64)> = Vec::new();
        for (i, &id) in truth.iter().enumerate() {
            let (kind, k) = faults.get(i).copied().unwrap_or((9, 0));
            match kind {
                0 => {}
                1 => { stream.push(id); stream.push(id); }
                2 => delayed.push((stream.len() + k, id)),
                _ => stream.push(id),
            }
            delayed.sort();
            while let Some(&(at, d)) = delayed.first() {
                if at <= stream.len() { stream.push(d); delayed.remove(0); } else { break; }
            }
        }
        stream.extend(delayed.into_iter().map(|(_, d)| d));

        let mut c = Continuity::new();
        let mut emitted: BTreeMap<i64, u32> = BTreeMap::new();
        let mut gaps: Vec<IdRange> = Vec::new();
        for id in stream {
            match c.observe(id) {
                Verdict::Emit => *emitted.entry(id).or_default() += 1,
                Verdict::EmitWithGap(g) => { *emitted.entry(id).or_default() += 1; gaps.push(g); }
                Verdict::Duplicate | Verdict::BeforeStart => {}
            }
        }
        // Backfill each gap with one extra id on each side (overlap with what arrived).
        for g in gaps {
            for id in (g.from - 1)..=(g.to + 1) {
                if c.observe(id).should_emit() {
                    *emitted.entry(id).or_default() += 1;
                }
            }
        }
        prop_assert_eq!(c.outstanding_ids(), 0);
        prop_assert!(emitted.values().all(|&n| n == 1));
        let Some(&first) = emitted.keys().next() else {
            return Ok(()); // every frame was dropped: nothing to check
        };
        let last = *emitted.keys().next_back().unwrap();
        prop_assert_eq!(emitted.len() as i64, last - first + 1, "holes in what was emitted");
        prop_assert_eq!(c.settled_through(), Some(last));
    }
}

#[test]
fn memory_stays_bounded_under_a_gap_storm() {
    let mut c = Continuity::new().with_max_ranges(64);
    let mut overflowed = 0u64;
    for i in 0..100_000i64 {
        c.observe(i * 2); // every other id missing: one gap per trade
        overflowed += c.take_overflowed().iter().map(|r| r.len()).sum::<u64>();
    }
    assert_eq!(c.outstanding().count(), 64);
    assert_eq!(overflowed + c.outstanding_ids(), 99_999);
}
