//! Where a producer run starts per symbol, and the resume point it leaves for the next run.
//!
//! Binance trade ids are consecutive, so "no trade lost across a restart" reduces to one number
//! per symbol: the highest id up to which every trade was acknowledged by Pub/Sub or named in an
//! acknowledged `Gap` record (the *resume point*). A run keeps it in a [`Ledger`] fed by the
//! publishers' acknowledgements, writes it to a small state file ([`save`]), and the next run
//! starts its continuity tracker right after it, so the first stream trade opens a gap that the
//! normal backfill fills. Acknowledged, not merely sent: a trade lost in the client at a crash
//! is below no resume point, so it is fetched again (a duplicate on the topic at worst, which
//! the documented dedup rule removes).
//!
//! [`decide_start`] picks each symbol's starting point from the saved resume point and the
//! exchange's latest id (the 24h ticker's `lastId`, read at start):
//! - resume point known and recent: start after it;
//! - resume point older than `max_resume_ids`: a `Gap` record for the part beyond the limit
//!   (reason `resume_too_old`; the daily batch is the net for it), start after the rest;
//! - no resume point (first run, new symbol): start after the latest id, so even the trades
//!   between start-up and the first frame are backfilled;
//! - nothing known (REST unreachable): start at the first id seen, as before.
//!
//! The ledger and the decision are pure; [`load`] and [`save`] are the only I/O.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use binance::continuity::IdRange;
use serde::{Deserialize, Serialize};
use trade_proto::ids::IdSet;

/// Format version of the state file.
const STATE_VERSION: u32 = 1;

/// Gap reason for a resume point too far behind the exchange.
pub const REASON_RESUME_TOO_OLD: &str = "resume_too_old";

/// Where a symbol's run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartPoint {
    /// Start the continuity tracker after this id (`None`: at the first id seen).
    pub after: Option<i64>,
    /// Ids given up on (resume point beyond `max_resume_ids`): a gap record is due.
    pub given_up: Option<IdRange>,
    /// Which rule applied, for the log.
    pub rule: StartRule,
}

/// The rule [`decide_start`] applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRule {
    /// After the saved resume point.
    Resume,
    /// After the saved resume point minus the part given up on.
    ResumeTruncated,
    /// After the exchange's latest id at start (no resume point).
    Baseline,
    /// The saved point is above the exchange's latest id (another exchange or a reset
    /// simulator): ignored, after the latest id.
    ResumeAheadIgnored,
    /// At the first id seen (nothing known).
    FirstSeen,
}

impl StartRule {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StartRule::Resume => "resume",
            StartRule::ResumeTruncated => "resume_truncated",
            StartRule::Baseline => "baseline",
            StartRule::ResumeAheadIgnored => "resume_ahead_ignored",
            StartRule::FirstSeen => "first_seen",
        }
    }
}

/// Picks where a symbol's run starts. `saved`: the resume point from the state file; `latest`:
/// the exchange's latest trade id now (a negative `lastId` means no trade in 24 h: unknown).
pub fn decide_start(saved: Option<i64>, latest: Option<i64>, max_resume_ids: u64) -> StartPoint {
    let latest = latest.filter(|&l| l >= 0);
    let point = |after, given_up, rule| StartPoint {
        after,
        given_up,
        rule,
    };
    match (saved, latest) {
        (Some(r), Some(l)) if r > l => point(Some(l), None, StartRule::ResumeAheadIgnored),
        (Some(r), Some(l)) => {
            let behind = l.abs_diff(r);
            if behind > max_resume_ids {
                // Keep the newest `max_resume_ids` ids; the older part is given up loudly.
                let after = l - i64::try_from(max_resume_ids).unwrap_or(i64::MAX);
                point(
                    Some(after),
                    Some(IdRange::new(r + 1, after)),
                    StartRule::ResumeTruncated,
                )
            } else {
                point(Some(r), None, StartRule::Resume)
            }
        }
        (Some(r), None) => point(Some(r), None, StartRule::Resume),
        (None, Some(l)) => point(Some(l), None, StartRule::Baseline),
        (None, None) => point(None, None, StartRule::FirstSeen),
    }
}

/// Per symbol: the highest id up to which everything is acknowledged, and acknowledged ranges
/// above a hole (trades published while an older gap waits for backfill).
#[derive(Debug, Clone, Default)]
struct SymbolLedger {
    through: Option<i64>,
    /// Acknowledged ids above `through` (and above the hole that holds it).
    ahead: IdSet,
}

impl SymbolLedger {
    fn advance(&mut self) {
        let Some(mut t) = self.through else { return };
        while let Some((from, to)) = self.ahead.first() {
            if from > t.saturating_add(1) {
                break;
            }
            t = t.max(to);
            self.ahead.pop_first();
        }
        self.through = Some(t);
    }

    fn confirm(&mut self, r: IdRange) {
        if self.through.is_some_and(|t| r.to <= t) {
            return;
        }
        self.ahead.insert_range(r.from, r.to);
        self.advance();
    }
}

/// The resume points of one run, fed with acknowledgements. See the module documentation.
#[derive(Debug, Clone)]
pub struct Ledger {
    symbols: Vec<SymbolLedger>,
}

impl Ledger {
    /// A ledger for `n` symbols, nothing known yet.
    pub fn new(n: usize) -> Self {
        Self {
            symbols: vec![SymbolLedger::default(); n],
        }
    }

    /// Everything of `sym` up to `id` is accounted for (the start point). Only the first call
    /// per symbol counts: the start of a run is set once.
    pub fn start_after(&mut self, sym: usize, id: i64) {
        let s = &mut self.symbols[sym];
        if s.through.is_none() {
            s.through = Some(id);
            s.advance();
        }
    }

    /// Pub/Sub acknowledged the trades (or the gap record) of `range`.
    pub fn confirm(&mut self, sym: usize, range: IdRange) {
        self.symbols[sym].confirm(range);
    }

    /// The resume point of `sym`: every id up to it is published or in a gap record.
    pub fn through(&self, sym: usize) -> Option<i64> {
        self.symbols[sym].through
    }

    /// Ranges acknowledged above the resume point (waiting for an older hole to fill).
    pub fn ranges_ahead(&self, sym: usize) -> usize {
        self.symbols[sym].ahead.range_count()
    }
}

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// When it was written, µs since the epoch (for people reading it).
    pub written_at_us: i64,
    /// Per symbol: every trade id up to this one was published or named in a gap record.
    pub resume_after: BTreeMap<String, i64>,
}

impl State {
    /// A state holding `resume_after`, stamped now.
    pub fn new(resume_after: BTreeMap<String, i64>, now_us: i64) -> Self {
        Self {
            version: STATE_VERSION,
            written_at_us: now_us,
            resume_after,
        }
    }
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or renaming failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not a state file of this version.
    #[error("state file {path} is not a producer state file ({detail})")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// Reads the state file; `Ok(None)` when it does not exist yet (first run).
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Invalid {
            path: path.to_owned(),
            detail: format!(
                "version {} (this producer writes {STATE_VERSION})",
                state.version
            ),
        });
    }
    Ok(Some(state))
}

/// Renames a broken state file to `<file>.corrupt-<unix_secs>` (kept for inspection, out of the
/// way of the next save); returns the new name.
pub fn set_aside(path: &Path, unix_secs: i64) -> Result<PathBuf, StateError> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".corrupt-{unix_secs}"));
    let kept = path.with_file_name(name);
    std::fs::rename(path, &kept).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(kept)
}

/// Writes the state file atomically: a temporary file beside it, flushed to disk, renamed over
/// it. A crash leaves the old or the new file, never half of one.
pub fn save(path: &Path, state: &State) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let body = serde_json::to_vec_pretty(state).expect("a State always serialises");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&body).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    // Make the rename itself durable (best effort: not every filesystem allows opening a dir).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_recent_resume_point_is_resumed_after() {
        let s = decide_start(Some(100), Some(150), 1000);
        assert_eq!(s.after, Some(100));
        assert_eq!(s.given_up, None);
        assert_eq!(s.rule, StartRule::Resume);
        // The exchange unreachable: the saved point still counts (backfill reports failures).
        assert_eq!(decide_start(Some(100), None, 1000).after, Some(100));
    }

    #[test]
    fn a_resume_point_too_far_behind_gives_up_the_oldest_part_loudly() {
        let s = decide_start(Some(100), Some(5100), 1000);
        assert_eq!(s.after, Some(4100));
        assert_eq!(s.given_up, Some(IdRange::new(101, 4100)));
        assert_eq!(s.rule, StartRule::ResumeTruncated);
        // Exactly at the limit: nothing given up.
        assert_eq!(decide_start(Some(100), Some(1100), 1000).given_up, None);
    }

    #[test]
    fn without_a_resume_point_the_run_starts_after_the_latest_id() {
        let s = decide_start(None, Some(42), 1000);
        assert_eq!((s.after, s.rule), (Some(42), StartRule::Baseline));
        // lastId -1: no trade in 24 h, so nothing is known.
        let s = decide_start(None, Some(-1), 1000);
        assert_eq!((s.after, s.rule), (None, StartRule::FirstSeen));
        assert_eq!(decide_start(None, None, 1000).after, None);
    }

    #[test]
    fn a_resume_point_ahead_of_the_exchange_is_ignored() {
        let s = decide_start(Some(900), Some(10), 1000);
        assert_eq!((s.after, s.rule), (Some(10), StartRule::ResumeAheadIgnored));
    }

    #[test]
    fn the_ledger_waits_for_holes_and_jumps_when_they_fill() {
        let mut l = Ledger::new(2);
        l.confirm(0, IdRange::new(5, 5));
        assert_eq!(l.through(0), None, "no start yet");
        l.start_after(0, 3);
        assert_eq!(l.through(0), Some(3));
        l.confirm(0, IdRange::new(4, 4));
        assert_eq!(l.through(0), Some(5));
        l.confirm(0, IdRange::new(8, 9));
        l.confirm(0, IdRange::new(11, 11));
        assert_eq!((l.through(0), l.ranges_ahead(0)), (Some(5), 2));
        // A gap record for 6..=7 fills the hole below 8..=9.
        l.confirm(0, IdRange::new(6, 7));
        assert_eq!((l.through(0), l.ranges_ahead(0)), (Some(9), 1));
        l.confirm(0, IdRange::new(10, 10));
        assert_eq!((l.through(0), l.ranges_ahead(0)), (Some(11), 0));
        // A second start is ignored; old and repeated confirmations change nothing.
        l.start_after(0, 100);
        l.confirm(0, IdRange::new(2, 11));
        assert_eq!(l.through(0), Some(11));
        assert_eq!(l.through(1), None, "symbols are independent");
    }

    proptest! {
        /// Whatever the order and repetition of acknowledgements, the resume point is the end of
        /// the contiguous acknowledged run after the start, and nothing above it is lost.
        #[test]
        fn the_resume_point_is_the_contiguous_prefix(
            start in 0i64..50,
            acks in proptest::collection::vec((0i64..200, 0i64..4), 0..120),
        ) {
            let mut l = Ledger::new(1);
            l.start_after(0, start);
            let mut seen = std::collections::BTreeSet::new();
            for (from, len) in acks {
                l.confirm(0, IdRange::new(from, from + len));
                seen.extend(from..=from + len);
            }
            let mut want = start;
            while seen.contains(&(want + 1)) {
                want += 1;
            }
            prop_assert_eq!(l.through(0), Some(want));
            let s = &l.symbols[0];
            let ahead: std::collections::BTreeSet<i64> = s.ahead.ids().collect();
            let expected: std::collections::BTreeSet<i64> =
                seen.iter().copied().filter(|&i| i > want).collect();
            prop_assert_eq!(ahead, expected);
            // Disjoint and not adjacent: merged as far as possible.
            let v: Vec<(i64, i64)> = s.ahead.ranges().collect();
            for w in v.windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
        }
    }

    #[test]
    fn the_state_file_round_trips_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume.json");
        assert!(load(&path).unwrap().is_none(), "no file yet: first run");
        let state = State::new(BTreeMap::from([("BTCUSDT".to_owned(), 42)]), 7);
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state));
        assert!(!dir.path().join("resume.json.tmp").exists());
        std::fs::write(&path, b"{\"version\":1,").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("resume.json") && e.contains("not a producer state file"),
            "{e}"
        );
        std::fs::write(
            &path,
            br#"{"version":9,"written_at_us":0,"resume_after":{}}"#,
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("version 9"), "{e}");
    }

    #[test]
    fn a_broken_file_is_set_aside_with_its_content_and_the_next_save_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume.json");
        std::fs::write(&path, b"\0\0garbage").unwrap();
        let kept = set_aside(&path, 1_790_000_000).unwrap();
        assert_eq!(kept, dir.path().join("resume.json.corrupt-1790000000"));
        assert_eq!(std::fs::read(&kept).unwrap(), b"\0\0garbage");
        assert!(load(&path).unwrap().is_none(), "out of the way");
        save(&path, &State::new(BTreeMap::new(), 1)).unwrap();
        assert!(load(&path).unwrap().is_some());
        assert!(set_aside(&dir.path().join("absent.json"), 1).is_err());
    }

    #[test]
    fn saving_into_a_missing_directory_names_the_file() {
        let e = save(
            Path::new("/nonexistent-dir/resume.json"),
            &State::new(BTreeMap::new(), 0),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent-dir/resume.json"), "{e}");
    }
}
