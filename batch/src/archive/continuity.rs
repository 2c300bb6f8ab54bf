//! Trade-id continuity of archive files: inside each file, across neighbouring files, and up to
//! the live table's first id.
//!
//! Binance trade ids are consecutive per symbol (see [`binance::continuity`]), so a file's ids
//! must rise by one, and the next file must start where the previous one stopped. The archive
//! is known to break both: missing files, ids skipped inside a file, late or re-uploaded files
//! (binance/binance-public-data issues #28, #307, #354, #363, #375, #402). Every break becomes
//! a [`Hole`]: an [`IdRange`] (the same type the producer's tracker and `batch reconcile` use)
//! with a [`HoleReason`] whose spelling is the gap ledger's `reason`. Maintenance halts leave
//! time gaps without id gaps (issue #316: BTCUSDT 2018-02-08 stops after 28 minutes): those
//! are not holes.
//!
//! Pure: the caller hands over each planned file's outcome in plan order.

use binance::IdRange;

use super::path::ArchiveFile;

/// The ids of one file, checked to rise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIds {
    /// First id.
    pub first: i64,
    /// Last id.
    pub last: i64,
    /// Number of rows.
    pub count: u64,
    /// Ids skipped inside the file, in order.
    pub holes: Vec<IdRange>,
}

/// A file whose ids do not rise (a duplicate or a step back): the file is corrupt, refetch it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}: trade id {id} does not follow {previous} (ids must rise)")]
pub struct OrderError {
    /// 1-based row number.
    pub row: u64,
    /// The id before.
    pub previous: i64,
    /// The offending id.
    pub id: i64,
}

/// Accumulates one file's ids in file order.
#[derive(Debug, Clone, Default)]
pub struct FileIdsBuilder {
    span: Option<(i64, i64)>,
    count: u64,
    holes: Vec<IdRange>,
}

impl FileIdsBuilder {
    /// Takes the next id of the file.
    pub fn push(&mut self, id: i64) -> Result<(), OrderError> {
        self.count += 1;
        match self.span {
            None => self.span = Some((id, id)),
            Some((first, last)) => {
                if id <= last {
                    return Err(OrderError {
                        row: self.count,
                        previous: last,
                        id,
                    });
                }
                if id > last + 1 {
                    self.holes.push(IdRange::new(last + 1, id - 1));
                }
                self.span = Some((first, id));
            }
        }
        Ok(())
    }

    /// The file's ids; `None` for a file without rows.
    pub fn finish(self) -> Option<FileIds> {
        let (first, last) = self.span?;
        Some(FileIds {
            first,
            last,
            count: self.count,
            holes: self.holes,
        })
    }
}

impl FileIds {
    /// Checks ids in file order.
    pub fn from_ids(ids: impl IntoIterator<Item = i64>) -> Result<Option<FileIds>, OrderError> {
        let mut b = FileIdsBuilder::default();
        for id in ids {
            b.push(id)?;
        }
        Ok(b.finish())
    }
}

/// What became of one planned file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched, verified, parsed: its ids. `None` when it had no rows (a day without trades).
    Loaded(Option<FileIds>),
    /// Binance has no such file (HTTP 404).
    Missing,
    /// Its bytes never matched the published checksum.
    ChecksumMismatch,
    /// It matched its checksum but could not be read (zip or rows).
    Unreadable,
}

/// Why ids are missing; [`HoleReason::as_str`] is the gap ledger's `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoleReason {
    /// Ids skipped inside one file.
    WithinFile(ArchiveFile),
    /// Between two loaded neighbours with nothing planned in between.
    Seam {
        /// The file before.
        before: ArchiveFile,
        /// The file after.
        after: ArchiveFile,
    },
    /// Where files were missing (404).
    ArchiveMissing(Vec<ArchiveFile>),
    /// Where files failed their checksum (or several failures, one of them a checksum).
    ChecksumMismatch(Vec<ArchiveFile>),
    /// Where files could not be read.
    Unreadable(Vec<ArchiveFile>),
    /// Between the last archived id and the live table's first id.
    BeforeLive,
}

impl HoleReason {
    /// The ledger spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            HoleReason::WithinFile(_) => "archive_hole",
            HoleReason::Seam { .. } => "archive_seam",
            HoleReason::ArchiveMissing(_) => "archive_missing",
            HoleReason::ChecksumMismatch(_) => "checksum_mismatch",
            HoleReason::Unreadable(_) => "archive_unreadable",
            HoleReason::BeforeLive => "archive_before_live",
        }
    }
}

/// Ids known to be missing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// The missing ids.
    pub range: IdRange,
    /// Why.
    pub reason: HoleReason,
}

/// Two loaded files whose ids overlap or step back: one of them was re-uploaded or is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The earlier file.
    pub before: ArchiveFile,
    /// The later file.
    pub after: ArchiveFile,
    /// The ids both claim (`after.first ..= before.last`).
    pub ids: IdRange,
}

/// The continuity of a run of files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seams {
    /// Holes, in id order.
    pub holes: Vec<Hole>,
    /// Overlapping neighbours.
    pub overlaps: Vec<Overlap>,
    /// Failed files before the first loaded one (or all of them): their ids cannot be bounded
    /// from the archive; the caller finds them over REST (`aggTrades` by time) or ledgers the
    /// days.
    pub unbounded: Vec<(ArchiveFile, Outcome)>,
}

/// Checks `files` (in plan order, each with its outcome) against each other and, when known,
/// against the live table's first id. A failed run between two loaded files is one hole whose
/// reason is the run's worst: checksum mismatch over unreadable over missing.
pub fn seams(files: &[(ArchiveFile, Outcome)], live_first_id: Option<i64>) -> Seams {
    let mut out = Seams::default();
    // The last loaded file with rows, and the failures since.
    let mut prev: Option<(&ArchiveFile, i64)> = None;
    let mut failed: Vec<(&ArchiveFile, &Outcome)> = Vec::new();
    for (file, outcome) in files {
        let ids = match outcome {
            Outcome::Loaded(Some(ids)) => ids,
            // A file without rows is a day without trades: no ids to bound anything.
            Outcome::Loaded(None) => continue,
            failure => {
                failed.push((file, failure));
                continue;
            }
        };
        match prev {
            None => out
                .unbounded
                .extend(failed.drain(..).map(|(f, o)| (f.clone(), o.clone()))),
            Some((before, last)) => {
                if ids.first <= last {
                    out.overlaps.push(Overlap {
                        before: before.clone(),
                        after: file.clone(),
                        ids: IdRange::new(ids.first, last.min(ids.last)),
                    });
                } else if ids.first > last + 1 {
                    let reason = if failed.is_empty() {
                        HoleReason::Seam {
                            before: before.clone(),
                            after: file.clone(),
                        }
                    } else {
                        failure_reason(&failed)
                    };
                    out.holes.push(Hole {
                        range: IdRange::new(last + 1, ids.first - 1),
                        reason,
                    });
                }
                // Failed files between neighbours that meet exactly held no trades.
                failed.clear();
            }
        }
        out.holes.extend(ids.holes.iter().map(|&range| Hole {
            range,
            reason: HoleReason::WithinFile(file.clone()),
        }));
        let last = prev.map_or(ids.last, |(_, l)| l.max(ids.last));
        prev = Some((file, last));
    }
    match (prev, live_first_id) {
        (Some((_, last)), Some(live)) if live > last + 1 => {
            let reason = if failed.is_empty() {
                HoleReason::BeforeLive
            } else {
                failure_reason(&failed)
            };
            out.holes.push(Hole {
                range: IdRange::new(last + 1, live - 1),
                reason,
            });
        }
        (None, _) => out
            .unbounded
            .extend(failed.drain(..).map(|(f, o)| (f.clone(), o.clone()))),
        _ => {}
    }
    out.holes.sort_by_key(|h| h.range);
    out
}

fn failure_reason(failed: &[(&ArchiveFile, &Outcome)]) -> HoleReason {
    let files: Vec<ArchiveFile> = failed.iter().map(|(f, _)| (*f).clone()).collect();
    let any = |want: fn(&Outcome) -> bool| failed.iter().any(|(_, o)| want(o));
    if any(|o| matches!(o, Outcome::ChecksumMismatch)) {
        HoleReason::ChecksumMismatch(files)
    } else if any(|o| matches!(o, Outcome::Unreadable)) {
        HoleReason::Unreadable(files)
    } else {
        HoleReason::ArchiveMissing(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::path::Period;
    use proptest::prelude::*;

    fn file(day: &str) -> ArchiveFile {
        ArchiveFile::new("BTCUSDT", Period::Day(day.parse().unwrap())).unwrap()
    }

    fn loaded(ids: impl IntoIterator<Item = i64>) -> Outcome {
        Outcome::Loaded(FileIds::from_ids(ids).unwrap())
    }

    #[test]
    fn a_file_reports_its_span_and_inner_holes_and_refuses_a_step_back() {
        let ids = FileIds::from_ids([10, 11, 12, 15, 16, 20])
            .unwrap()
            .unwrap();
        assert_eq!((ids.first, ids.last, ids.count), (10, 20, 6));
        assert_eq!(ids.holes, [IdRange::new(13, 14), IdRange::new(17, 19)]);
        assert_eq!(FileIds::from_ids([]).unwrap(), None);
        let e = FileIds::from_ids([10, 11, 11]).unwrap_err();
        assert_eq!(
            e,
            OrderError {
                row: 3,
                previous: 11,
                id: 11
            }
        );
        assert!(FileIds::from_ids([10, 9]).is_err());
    }

    #[test]
    fn consecutive_files_up_to_the_live_table_have_no_hole() {
        let files = [
            (file("2024-01-01"), loaded(1..=10)),
            (file("2024-01-02"), loaded(11..=20)),
        ];
        assert_eq!(seams(&files, Some(21)), Seams::default());
        // The live table may start inside the archive: overlap with it is normal.
        assert_eq!(seams(&files, Some(15)), Seams::default());
    }

    #[test]
    fn every_kind_of_hole_gets_its_range_and_reason() {
        let files = [
            (file("2024-01-01"), loaded([1, 2, 3, 5])),
            (file("2024-01-02"), loaded(8..=9)),
            (file("2024-01-03"), Outcome::Missing),
            (file("2024-01-04"), loaded(20..=25)),
            (file("2024-01-05"), Outcome::Missing),
            (file("2024-01-06"), Outcome::ChecksumMismatch),
            (file("2024-01-07"), loaded(40..=41)),
            (file("2024-01-08"), Outcome::Unreadable),
        ];
        let s = seams(&files, Some(50));
        let got: Vec<(IdRange, &str)> = s
            .holes
            .iter()
            .map(|h| (h.range, h.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (IdRange::new(4, 4), "archive_hole"),
                (IdRange::new(6, 7), "archive_seam"),
                (IdRange::new(10, 19), "archive_missing"),
                (IdRange::new(26, 39), "checksum_mismatch"),
                (IdRange::new(42, 49), "archive_unreadable"),
            ]
        );
        assert_eq!(
            s.holes[3].reason,
            HoleReason::ChecksumMismatch(vec![file("2024-01-05"), file("2024-01-06")])
        );
        assert!(s.overlaps.is_empty() && s.unbounded.is_empty());
    }

    #[test]
    fn the_gap_to_the_live_table_is_before_live() {
        let files = [(file("2024-01-01"), loaded(1..=10))];
        let s = seams(&files, Some(100));
        assert_eq!(s.holes.len(), 1);
        assert_eq!(s.holes[0].range, IdRange::new(11, 99));
        assert_eq!(s.holes[0].reason, HoleReason::BeforeLive);
    }

    #[test]
    fn failures_before_any_loaded_file_are_unbounded_and_overlaps_reported() {
        let files = [
            (file("2024-01-01"), Outcome::Missing),
            (file("2024-01-02"), loaded(10..=20)),
            (file("2024-01-03"), loaded(18..=30)),
        ];
        let s = seams(&files, None);
        assert_eq!(s.unbounded, [(file("2024-01-01"), Outcome::Missing)]);
        assert_eq!(
            s.overlaps,
            [Overlap {
                before: file("2024-01-02"),
                after: file("2024-01-03"),
                ids: IdRange::new(18, 20)
            }]
        );
        assert!(s.holes.is_empty());
        let all_missing = [(file("2024-01-01"), Outcome::Missing)];
        assert_eq!(seams(&all_missing, Some(5)).unbounded.len(), 1);
    }

    #[test]
    fn a_day_without_trades_between_neighbours_is_no_hole() {
        let files = [
            (file("2024-01-01"), loaded(1..=10)),
            (file("2024-01-02"), Outcome::Loaded(None)),
            (file("2024-01-03"), loaded(11..=12)),
        ];
        assert_eq!(seams(&files, None), Seams::default());
    }

    proptest! {
        /// Whatever ids are dropped from a consecutive run cut into files, the holes are exactly
        /// the dropped ids, none twice.
        #[test]
        fn holes_are_exactly_the_dropped_ids(
            keep in prop::collection::vec(any::<bool>(), 2..300),
            cuts in prop::collection::vec(1usize..300, 0..6),
        ) {
            let ids: Vec<i64> = (0..keep.len() as i64).filter(|&i| keep[i as usize]).collect();
            prop_assume!(!ids.is_empty());
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c < ids.len()).collect();
            bounds.sort_unstable();
            bounds.dedup();
            let mut files = Vec::new();
            let mut start = 0;
            for (n, end) in bounds.into_iter().chain([ids.len()]).enumerate() {
                if end > start {
                    let day = crate::day::Day::containing_ms(n as i64 * crate::day::DAY_MS + 1_600_000_000_000);
                    let f = ArchiveFile::new("BTCUSDT", Period::Day(day)).unwrap();
                    files.push((f, loaded(ids[start..end].iter().copied())));
                }
                start = end;
            }
            let live = keep.len() as i64;
            let s = seams(&files, Some(live));
            let mut missing: Vec<i64> = s.holes.iter().flat_map(|h| h.range.from..=h.range.to).collect();
            missing.sort_unstable();
            let first = ids[0];
            let want: Vec<i64> = (first..live).filter(|&i| !keep[i as usize]).collect();
            prop_assert_eq!(missing, want);
            prop_assert!(s.overlaps.is_empty());
        }
    }
}
