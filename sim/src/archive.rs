//! Binance's public trade archive (`data.binance.vision`), built from the tape.
//!
//! Pure: tape, symbol and period in; CSV, zip and checksum bytes out, byte for byte the same on
//! every call (fixed zip timestamp, fixed compression level). The rows are exactly the tape's
//! trades of the period, so they agree with REST `historicalTrades` for the same ids.
//!
//! The layout, as Binance publishes it (binance/binance-public-data README, "Trades"):
//! - `data/spot/daily/trades/<SYMBOL>/<SYMBOL>-trades-<YYYY-MM-DD>.zip` and
//!   `data/spot/monthly/trades/<SYMBOL>/<SYMBOL>-trades-<YYYY-MM>.zip`;
//! - next to each, `<zip name>.CHECKSUM` holding `<sha256 hex>  <zip name>\n` (`sha256sum`'s
//!   format, two spaces);
//! - one entry `<SYMBOL>-trades-<period>.csv`, no header, rows
//!   `id,price,qty,quoteQty,time,isBuyerMaker,isBestMatch` with `True`/`False`;
//! - `time` in milliseconds before 2025-01-01 and in microseconds from then on (the README's
//!   note on spot data from 2025-01-01); a file is one unit throughout (the switch is at a
//!   month boundary, so no file straddles it).
//!
//! Which files exist: every UTC day (month) that has ended by the simulator clock and ends after
//! genesis (all symbols share the tape's genesis; its day is the "listing" day and is partial
//! when genesis is not midnight). A monthly file is the concatenation of its daily files' rows.

use std::collections::{HashMap, VecDeque};
use std::io::{Cursor, Write};
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::Offset;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use crate::decimal::{mul_units, push_int, push_uint, push_units};
use crate::faults::ArchivePlan;
use crate::frames::TimeUnit;
use crate::tape::{MIN_US, Tape};
use crate::trade::Trade;

/// 2025-01-01 00:00:00 UTC in ms: archive files from this day on carry µs times.
pub const MICROSECOND_FROM_MS: i64 = 1_735_689_600_000;

/// Deflate level of the zips: fixed, so the bytes (and the checksum) never change.
const DEFLATE_LEVEL: i64 = 6;

/// Problems building a file (the zip writer failing; not expected with in-memory buffers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The zip writer refused: a bug or a file too large for memory.
    #[error("cannot build the zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Writing into the zip failed.
    #[error("cannot write the zip entry: {0}")]
    Io(#[from] std::io::Error),
}

/// A period of one archive file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// A UTC day (`daily`).
    Day(Date),
    /// A UTC calendar month (`monthly`); the date is its first day.
    Month(Date),
}

/// UTC midnight of `d` in ms. Dates come from parsing or from the clock, well inside jiff's
/// range, so the conversion cannot fail; the fallback only keeps this total.
fn midnight_ms(d: Date) -> i64 {
    Offset::UTC
        .to_timestamp(d.to_datetime(Time::midnight()))
        .map_or(i64::MAX, |t| t.as_millisecond())
}

/// The UTC date holding `ms` (clamped to jiff's range).
fn date_of_ms(ms: i64) -> Date {
    let (min, max) = (
        Timestamp::MIN.as_millisecond(),
        Timestamp::MAX.as_millisecond(),
    );
    let t = Timestamp::from_millisecond(ms.clamp(min, max)).unwrap_or(Timestamp::MAX);
    Offset::UTC.to_datetime(t).date()
}

impl Period {
    /// The day holding `ms`.
    pub fn day_of_ms(ms: i64) -> Self {
        Self::Day(date_of_ms(ms))
    }

    /// The month holding `ms`.
    pub fn month_of_ms(ms: i64) -> Self {
        Self::Month(date_of_ms(ms).first_of_month())
    }

    /// Parse the path's granularity (`daily`, `monthly`) and label (`2025-06-01`, `2025-06`).
    /// Only zero-padded labels are accepted, as in Binance's file names.
    pub fn parse(granularity: &str, label: &str) -> Option<Self> {
        let p = match (granularity, label.len()) {
            ("daily", 10) => Self::Day(label.parse::<Date>().ok()?),
            ("monthly", 7) => Self::Month(format!("{label}-01").parse::<Date>().ok()?),
            _ => return None,
        };
        (p.label() == label).then_some(p)
    }

    /// `daily` or `monthly`.
    pub fn granularity(&self) -> &'static str {
        match self {
            Self::Day(_) => "daily",
            Self::Month(_) => "monthly",
        }
    }

    /// `2025-06-01` or `2025-06`.
    pub fn label(&self) -> String {
        match self {
            Self::Day(d) => format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()),
            Self::Month(d) => format!("{:04}-{:02}", d.year(), d.month()),
        }
    }

    /// First day.
    fn first_day(&self) -> Date {
        match self {
            Self::Day(d) | Self::Month(d) => *d,
        }
    }

    /// The day after the period.
    fn next_day(&self) -> Date {
        let last = match self {
            Self::Day(d) => *d,
            Self::Month(d) => d.last_of_month(),
        };
        last.tomorrow().unwrap_or(Date::MAX)
    }

    /// Start (UTC midnight) in ms.
    pub fn start_ms(&self) -> i64 {
        midnight_ms(self.first_day())
    }

    /// End (exclusive: the next period's start) in ms.
    pub fn end_ms(&self) -> i64 {
        midnight_ms(self.next_day())
    }

    /// The days of the period, in order.
    pub fn days(&self) -> Vec<Period> {
        let end = self.next_day();
        let mut d = self.first_day();
        let mut out = Vec::new();
        while d < end {
            out.push(Self::Day(d));
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
        out
    }

    /// Time unit of the file's `time` column.
    pub fn time_unit(&self) -> TimeUnit {
        if self.start_ms() >= MICROSECOND_FROM_MS {
            TimeUnit::Microsecond
        } else {
            TimeUnit::Millisecond
        }
    }

    /// `true` when the file is published at `now_ms` for a tape starting at `genesis_ms`: the
    /// period has ended and holds tape time.
    pub fn published(&self, genesis_ms: i64, now_ms: i64) -> bool {
        let end = self.end_ms();
        end <= now_ms && end > genesis_ms
    }
}

/// Every published period of one granularity, oldest first.
pub fn published(monthly: bool, genesis_ms: i64, now_ms: i64) -> Vec<Period> {
    let mut p = if monthly {
        Period::month_of_ms(genesis_ms)
    } else {
        Period::day_of_ms(genesis_ms)
    };
    let mut out = Vec::new();
    while p.published(genesis_ms, now_ms) {
        out.push(p);
        let next = p.next_day();
        p = if monthly {
            Period::Month(next)
        } else {
            Period::Day(next)
        };
    }
    out
}

/// `BTCUSDT-trades-2025-06-01`.
pub fn file_stem(symbol: &str, period: Period) -> String {
    format!("{symbol}-trades-{}", period.label())
}

/// `BTCUSDT-trades-2025-06-01.zip`.
pub fn zip_name(symbol: &str, period: Period) -> String {
    format!("{}.zip", file_stem(symbol, period))
}

/// The path under the archive's base URL: `data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-....zip`.
pub fn zip_path(symbol: &str, period: Period) -> String {
    format!(
        "data/spot/{}/trades/{symbol}/{}",
        period.granularity(),
        zip_name(symbol, period)
    )
}

/// Append one CSV row.
pub fn push_row(out: &mut Vec<u8>, t: &Trade, unit: TimeUnit) {
    push_uint(out, u128::from(t.id));
    out.push(b',');
    push_units(out, u128::from(t.price));
    out.push(b',');
    push_units(out, u128::from(t.qty));
    out.push(b',');
    // The same truncated product as REST's `quoteQty`.
    push_units(out, mul_units(t.price, t.qty));
    out.push(b',');
    push_int(out, unit.from_us(t.time_us));
    out.push(b',');
    out.extend_from_slice(if t.is_buyer_maker { b"True" } else { b"False" });
    // The tape has no self-trade prevention matches: every trade is a best match.
    out.extend_from_slice(b",True\n");
}

/// The ids `[lo, hi)` left out of a re-uploaded file's first upload: the middle fifth of the
/// period's trades (at least one when there are any), so the gap is inside the file.
pub fn first_upload_gap(tape: &Tape, sym: usize, period: Period) -> (u64, u64) {
    let first = tape.id_before(sym, period.start_ms() * 1000);
    let end = tape.id_before(sym, period.end_ms() * 1000);
    let n = end - first;
    let lo = first + n * 2 / 5;
    let hi = (first + n * 3 / 5).max((lo + 1).min(end));
    (lo, hi)
}

/// The CSV of one period; with `first_upload`, without the ids of [`first_upload_gap`].
pub fn csv(tape: &Tape, sym: usize, period: Period, first_upload: bool) -> Vec<u8> {
    let unit = period.time_unit();
    let gap = first_upload.then(|| first_upload_gap(tape, sym, period));
    let from = (period.start_ms() * 1000).max(tape.genesis_us());
    let to = period.end_ms() * 1000;
    let mut out = Vec::new();
    // Periods are whole days, so whole minutes: the minute view is the cheapest full scan.
    let mut minute = from.div_euclid(MIN_US);
    while minute * MIN_US < to {
        for t in tape.minute_trades(sym, minute) {
            if gap.is_some_and(|(lo, hi)| (lo..hi).contains(&t.id)) {
                continue;
            }
            push_row(&mut out, &t, unit);
        }
        minute += 1;
    }
    out
}

/// A zip holding one deflated entry, byte-deterministic: its timestamp is `modified`, its
/// attributes fixed (Unix, 0644).
pub fn zip_bytes(entry: &str, body: &[u8], modified: Date) -> Result<Vec<u8>, ArchiveError> {
    let stamp = u16::try_from(modified.year())
        .ok()
        .and_then(|y| {
            DateTime::from_date_and_time(y, modified.month() as u8, modified.day() as u8, 0, 0, 0)
                .ok()
        })
        // DOS times cover 1980-2107; outside, the format's own epoch.
        .unwrap_or_default();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL))
        .last_modified_time(stamp)
        .system(System::Unix)
        .unix_permissions(0o644)
        .large_file(body.len() as u64 >= u64::from(u32::MAX));
    let mut w = ZipWriter::new(Cursor::new(Vec::with_capacity(body.len() / 4 + 1024)));
    w.start_file(entry, options)?;
    w.write_all(body)?;
    Ok(w.finish()?.into_inner())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The `.CHECKSUM` body: `<sha256>  <zip name>\n`.
pub fn checksum_body(digest_hex: &str, zip_name: &str) -> String {
    format!("{digest_hex}  {zip_name}\n")
}

/// One built archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// `<SYMBOL>-trades-<period>.zip`.
    pub name: String,
    /// The zip's bytes.
    pub zip: Vec<u8>,
    /// The true `.CHECKSUM` body.
    pub checksum: String,
}

/// Build one file (the complete one, or a re-uploaded file's first upload).
pub fn build(
    tape: &Tape,
    sym: usize,
    period: Period,
    first_upload: bool,
) -> Result<ArchiveFile, ArchiveError> {
    let symbol = &tape.symbols()[sym].spec.symbol;
    let name = zip_name(symbol, period);
    let body = csv(tape, sym, period, first_upload);
    // Stamped with the day after the period: when Binance would have uploaded it.
    let zip = zip_bytes(
        &format!("{}.csv", file_stem(symbol, period)),
        &body,
        period.next_day(),
    )?;
    let checksum = checksum_body(&sha256_hex(&zip), &name);
    Ok(ArchiveFile {
        name,
        zip,
        checksum,
    })
}

impl ArchiveFile {
    /// The zip bytes served under `plan`: cut to half when truncated.
    pub fn served_zip(&self, plan: &ArchivePlan) -> &[u8] {
        if plan.truncated {
            &self.zip[..self.zip.len() / 2]
        } else {
            &self.zip
        }
    }

    /// The checksum served under `plan`: with a wrong checksum, a digest of the true digest
    /// (deterministic, well-formed, never the zip's).
    pub fn served_checksum(&self, plan: &ArchivePlan) -> String {
        if plan.wrong_checksum {
            let true_hex = self.checksum.split("  ").next().unwrap_or_default();
            checksum_body(&sha256_hex(true_hex.as_bytes()), &self.name)
        } else {
            self.checksum.clone()
        }
    }
}

/// Key of a cached build: symbol index, period, first upload.
type CacheKey = (usize, Period, bool);

/// Built files kept up to a byte budget, oldest evicted first (a client fetches the checksum,
/// then the zip: one build serves both).
#[derive(Debug, Default)]
pub struct ArchiveCache {
    budget: usize,
    used: usize,
    files: HashMap<CacheKey, Arc<ArchiveFile>>,
    order: VecDeque<CacheKey>,
}

impl ArchiveCache {
    /// An empty cache holding at most `budget` bytes of zips.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

    /// A cached build.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<ArchiveFile>> {
        self.files.get(key).cloned()
    }

    /// Keep `file` unless it alone exceeds the budget; evict the oldest to make room.
    pub fn insert(&mut self, key: CacheKey, file: Arc<ArchiveFile>) {
        let size = file.zip.len();
        if size > self.budget || self.files.contains_key(&key) {
            return;
        }
        while self.used + size > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(f) = self.files.remove(&old) {
                self.used -= f.zip.len();
            }
        }
        self.used += size;
        self.order.push_back(key);
        self.files.insert(key, file);
    }

    /// Bytes held.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::config::SymbolSpec;

    /// 2024-12-30 12:00 UTC: a partial listing day, then days either side of the unit switch.
    const GENESIS_MS: i64 = 1_735_560_000_000;

    fn tape() -> Tape {
        let specs: Vec<SymbolSpec> = ["BTCUSDT", "ARBUSDT"]
            .iter()
            .map(|s| SymbolSpec::for_symbol(s))
            .collect();
        // ~0.35 BTC trades/s: ~30,000 a day, quick to build in a debug test.
        Tape::new(7, &specs, 0.01, GENESIS_MS)
    }

    fn day(label: &str) -> Period {
        Period::parse("daily", label).unwrap()
    }

    fn unzip(zip: &[u8]) -> (String, Vec<u8>) {
        let mut a = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        assert_eq!(a.len(), 1, "one entry");
        let mut f = a.by_index(0).unwrap();
        let mut body = Vec::new();
        f.read_to_end(&mut body).unwrap();
        (f.name().unwrap().to_string(), body)
    }

    #[test]
    fn periods_parse_strictly_and_span_utc_days_and_months() {
        let d = day("2025-01-01");
        assert_eq!(d.start_ms(), MICROSECOND_FROM_MS);
        assert_eq!(d.end_ms(), MICROSECOND_FROM_MS + 86_400_000);
        let m = Period::parse("monthly", "2024-02").unwrap();
        assert_eq!(m.days().len(), 29, "leap February");
        assert_eq!(m.label(), "2024-02");
        for (g, l) in [
            ("daily", "2025-1-01"),
            ("daily", "2025-02-30"),
            ("monthly", "2025-01-01"),
            ("daily", "2025-01"),
            ("weekly", "2025-01-01"),
        ] {
            assert_eq!(Period::parse(g, l), None, "{g} {l}");
        }
        assert_eq!(
            zip_path("BTCUSDT", d),
            "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.zip"
        );
    }

    #[test]
    fn published_files_run_from_the_listing_day_to_yesterday() {
        let now = MICROSECOND_FROM_MS + 3 * 86_400_000 + 5_000; // 2025-01-04 00:00:05
        let days: Vec<String> = published(false, GENESIS_MS, now)
            .iter()
            .map(Period::label)
            .collect();
        assert_eq!(
            days,
            [
                "2024-12-30",
                "2024-12-31",
                "2025-01-01",
                "2025-01-02",
                "2025-01-03"
            ]
        );
        let months: Vec<String> = published(true, GENESIS_MS, now)
            .iter()
            .map(Period::label)
            .collect();
        assert_eq!(months, ["2024-12"], "January has not ended");
        assert!(
            !day("2024-12-29").published(GENESIS_MS, now),
            "before listing"
        );
        assert!(!day("2025-01-04").published(GENESIS_MS, now), "today");
    }

    #[test]
    fn builds_are_byte_deterministic_and_checksums_match() {
        let t1 = tape();
        let t2 = tape();
        let d = day("2024-12-31");
        let a = build(&t1, 0, d, false).unwrap();
        let b = build(&t2, 0, d, false).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.name, "BTCUSDT-trades-2024-12-31.zip");
        let (digest, rest) = a.checksum.split_once("  ").unwrap();
        assert_eq!(rest, "BTCUSDT-trades-2024-12-31.zip\n");
        assert_eq!(digest.len(), 64);
        assert_eq!(digest, sha256_hex(&a.zip));
        assert!(
            digest
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        let (entry, body) = unzip(&a.zip);
        assert_eq!(entry, "BTCUSDT-trades-2024-12-31.csv");
        assert_eq!(body, csv(&t1, 0, d, false));
    }

    #[test]
    fn rows_are_the_tapes_trades_with_the_time_unit_switch() {
        let t = tape();
        for (label, unit) in [
            ("2024-12-31", TimeUnit::Millisecond),
            ("2025-01-01", TimeUnit::Microsecond),
        ] {
            let d = day(label);
            assert_eq!(d.time_unit(), unit);
            let text = String::from_utf8(csv(&t, 0, d, false)).unwrap();
            let rows: Vec<&str> = text.lines().collect();
            let first = t.id_before(0, d.start_ms() * 1000);
            let end = t.id_before(0, d.end_ms() * 1000);
            assert!(rows.len() > 10_000, "{label}: {}", rows.len());
            assert_eq!(rows.len() as u64, end - first);
            let tape_rows = t.trades_from_id(0, first, end - 1, usize::MAX);
            for (row, tr) in rows.iter().zip(&tape_rows) {
                let mut want = Vec::new();
                push_row(&mut want, tr, unit);
                assert_eq!(format!("{row}\n").as_bytes(), want.as_slice());
            }
            let f: Vec<&str> = rows[0].split(',').collect();
            assert_eq!(f.len(), 7);
            assert_eq!(f[0], first.to_string());
            let time: i64 = f[4].parse().unwrap();
            match unit {
                TimeUnit::Millisecond => assert_eq!(time, tape_rows[0].time_ms()),
                TimeUnit::Microsecond => assert_eq!(time, tape_rows[0].time_us),
            }
            assert!(time >= unit.from_us(d.start_ms() * 1000));
            assert!(time < unit.from_us(d.end_ms() * 1000));
            assert!(matches!(f[5], "True" | "False"));
            assert_eq!(f[6], "True");
            // 8 decimals, as REST and the real files.
            assert_eq!(f[1].split('.').nth(1).map(str::len), Some(8));
        }
    }

    #[test]
    fn ids_are_consecutive_across_day_seams_and_the_listing_day() {
        let t = tape();
        let days = published(false, GENESIS_MS, MICROSECOND_FROM_MS + 2 * 86_400_000);
        let mut next = SymbolSpec::for_symbol("ARBUSDT").first_trade_id;
        for d in days {
            let text = String::from_utf8(csv(&t, 1, d, false)).unwrap();
            for row in text.lines() {
                let id: u64 = row.split(',').next().unwrap().parse().unwrap();
                assert_eq!(id, next, "{} row {row}", d.label());
                next += 1;
            }
        }
        assert_eq!(
            next,
            t.id_before(1, (MICROSECOND_FROM_MS + 2 * 86_400_000) * 1000)
        );
    }

    #[test]
    fn a_month_is_its_days_concatenated() {
        let t = tape();
        let m = Period::parse("monthly", "2024-12").unwrap();
        let joined: Vec<u8> = m
            .days()
            .iter()
            .flat_map(|d| csv(&t, 1, *d, false))
            .collect();
        assert!(!joined.is_empty());
        assert_eq!(csv(&t, 1, m, false), joined);
        let (entry, body) = unzip(&build(&t, 1, m, false).unwrap().zip);
        assert_eq!(entry, "ARBUSDT-trades-2024-12.csv");
        assert_eq!(body, joined);
    }

    #[test]
    fn first_upload_lacks_the_gap_and_has_its_own_checksum() {
        let t = tape();
        let d = day("2025-01-01");
        let full = build(&t, 0, d, false).unwrap();
        let first = build(&t, 0, d, true).unwrap();
        let (lo, hi) = first_upload_gap(&t, 0, d);
        assert!(hi > lo);
        let (_, body) = unzip(&first.zip);
        let text = String::from_utf8(body).unwrap();
        let ids: Vec<u64> = text
            .lines()
            .map(|r| r.split(',').next().unwrap().parse().unwrap())
            .collect();
        let full_rows = String::from_utf8(unzip(&full.zip).1)
            .unwrap()
            .lines()
            .count();
        assert_eq!(ids.len() as u64, full_rows as u64 - (hi - lo));
        assert!(ids.iter().all(|i| !(lo..hi).contains(i)));
        assert!(
            ids.windows(2).any(|w| w[1] == hi && w[0] == lo - 1),
            "one hole"
        );
        assert_ne!(first.checksum, full.checksum);
        assert_eq!(
            first.checksum.split("  ").next(),
            Some(sha256_hex(&first.zip).as_str())
        );
    }

    #[test]
    fn faulty_views_truncate_or_lie() {
        let t = tape();
        let f = build(&t, 1, day("2024-12-31"), false).unwrap();
        let plain = ArchivePlan::default();
        assert_eq!(f.served_zip(&plain), f.zip.as_slice());
        assert_eq!(f.served_checksum(&plain), f.checksum);
        let cut = ArchivePlan {
            truncated: true,
            ..plain
        };
        let served = f.served_zip(&cut);
        assert_eq!(served.len(), f.zip.len() / 2);
        assert!(
            zip::ZipArchive::new(Cursor::new(served)).is_err(),
            "no central directory"
        );
        assert_eq!(f.served_checksum(&cut), f.checksum, "checksum stays true");
        let lie = ArchivePlan {
            wrong_checksum: true,
            ..plain
        };
        let body = f.served_checksum(&lie);
        assert!(body.ends_with(&format!("  {}\n", f.name)));
        assert_ne!(body.split("  ").next(), Some(sha256_hex(&f.zip).as_str()));
    }

    #[test]
    fn cache_keeps_to_its_budget() {
        let file = |n: usize| {
            Arc::new(ArchiveFile {
                name: String::new(),
                zip: vec![0; n],
                checksum: String::new(),
            })
        };
        let d = day("2025-01-01");
        let mut c = ArchiveCache::new(100);
        c.insert((0, d, false), file(60));
        c.insert((1, d, false), file(30));
        assert_eq!(c.used(), 90);
        c.insert((2, d, false), file(50));
        assert!(c.get(&(0, d, false)).is_none(), "oldest evicted");
        assert!(c.get(&(1, d, false)).is_some() && c.get(&(2, d, false)).is_some());
        assert_eq!(c.used(), 80);
        c.insert((3, d, false), file(101));
        assert!(c.get(&(3, d, false)).is_none(), "larger than the budget");
    }
}
