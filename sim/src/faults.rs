//! Fault injection: the settings, the admin request that changes them, and the pure per-frame
//! decision.
//!
//! Faults are set at start-up ([`crate::SimConfig::faults`]) or at run time (`POST /admin/faults`
//! or the [`crate::SimHandle`] methods). Ratios are decided per frame by a generator keyed by
//! (seed, connection id), so a run is reproducible. "One-shot" actions (drop now, shutdown now,
//! stall the current connections) are in [`FaultRequest`] and do not persist.

use serde::{Deserialize, Serialize};

use crate::rng::KeyedRng;

/// Persistent fault settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSettings {
    /// Drop one random connection at random intervals averaging this many seconds (0 = off).
    pub drop_random_every_secs: f64,
    /// Share of trade frames sent corrupted (not parseable JSON). Counted as not delivered.
    pub malformed_ratio: f64,
    /// Share of trade frames sent twice.
    pub duplicate_ratio: f64,
    /// Share of trade frames held back and sent after the next frame.
    pub reorder_ratio: f64,
    /// Answer HTTP 451 with Binance's restricted-location body on REST and WebSocket upgrades.
    pub geo_block: bool,
    /// The next this-many REST requests answer a 5xx.
    pub http_5xx_remaining: u32,
    /// Status of those answers (500-599; default 503).
    pub http_5xx_status: u16,
    /// Overrides the configured REST weight limit per window (0 = use the configuration).
    pub weight_limit: u32,
    /// The next this-many REST requests answer HTTP 200 with a body that is not the JSON
    /// asked for: alternately a proxy's HTML maintenance page and a JSON body cut short.
    pub rest_mangled_remaining: u32,
    /// Faults of the trade archive (`/data/spot/...`), per file.
    pub archive: Vec<ArchiveFault>,
}

impl FaultSettings {
    /// Check ranges; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, r) in [
            ("malformed_ratio", self.malformed_ratio),
            ("duplicate_ratio", self.duplicate_ratio),
            ("reorder_ratio", self.reorder_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} {r} must be within [0, 1]"));
            }
        }
        if self.malformed_ratio + self.duplicate_ratio + self.reorder_ratio > 1.0 {
            return Err("malformed_ratio + duplicate_ratio + reorder_ratio must be <= 1".into());
        }
        if !(self.drop_random_every_secs.is_finite() && self.drop_random_every_secs >= 0.0) {
            return Err(format!(
                "drop_random_every_secs {} must be >= 0",
                self.drop_random_every_secs
            ));
        }
        if self.http_5xx_status != 0 && !(500..=599).contains(&self.http_5xx_status) {
            return Err(format!(
                "http_5xx_status {} must be within 500-599",
                self.http_5xx_status
            ));
        }
        for f in &self.archive {
            f.validate()?;
        }
        Ok(())
    }
}

/// A stall: connections stay open but receive no trade frames.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallRequest {
    /// Keep sending pings during the stall (`false`: the socket goes fully silent).
    #[serde(default)]
    pub with_pings: bool,
    /// How long; absent = until cleared with `clear_stall`.
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// Only this connection; absent = every connection open now.
    #[serde(default)]
    pub connection: Option<u64>,
}

/// A burst of 5xx answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http5xxBurst {
    /// Number of REST requests to fail.
    pub count: u32,
    /// HTTP status (default 503).
    #[serde(default)]
    pub status: Option<u16>,
}

/// Body of `POST /admin/faults`: every field optional; absent fields leave things unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultRequest {
    /// First reset every persistent fault to "off".
    pub clear: bool,
    /// Close every WebSocket connection now, abruptly (no close frame).
    pub drop_all_now: bool,
    /// Close this connection now, abruptly.
    pub drop_connection: Option<u64>,
    /// See [`FaultSettings::drop_random_every_secs`] (0 = off).
    pub drop_random_every_secs: Option<f64>,
    /// Stall connections now.
    pub stall: Option<StallRequest>,
    /// End every stall now.
    pub clear_stall: bool,
    /// See [`FaultSettings::malformed_ratio`].
    pub malformed_ratio: Option<f64>,
    /// See [`FaultSettings::duplicate_ratio`].
    pub duplicate_ratio: Option<f64>,
    /// See [`FaultSettings::reorder_ratio`].
    pub reorder_ratio: Option<f64>,
    /// See [`FaultSettings::geo_block`].
    pub geo_block: Option<bool>,
    /// Fail the next N REST requests with a 5xx.
    pub http_5xx_burst: Option<Http5xxBurst>,
    /// Send `serverShutdown` to every connection now and close them after the grace period.
    pub server_shutdown_now: bool,
    /// Override the REST weight limit (0 = back to the configuration).
    pub weight_limit: Option<u32>,
    /// The next N REST requests answer 200 with a mangled body (see
    /// [`FaultSettings::rest_mangled_remaining`]).
    pub rest_mangled_burst: Option<u32>,
    /// Send one trade frame with this id (and otherwise plausible values) to every open
    /// connection subscribed to its symbol, now. Not part of the tape: a corrupted or hostile
    /// frame, for the reader's plausibility checks.
    pub inject_trade: Option<InjectTrade>,
    /// Add these archive faults (after `clear_archive_faults`, if both).
    pub archive_faults: Option<Vec<ArchiveFault>>,
    /// Remove every archive fault.
    pub clear_archive_faults: bool,
}

/// A trade frame that is not on the tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectTrade {
    /// Upper-case symbol.
    pub symbol: String,
    /// The trade id to claim (e.g. `9223372036854775807`).
    pub trade_id: u64,
}

impl FaultRequest {
    /// The persistent settings after applying this request to `current`.
    pub fn apply_to(&self, current: &FaultSettings) -> Result<FaultSettings, String> {
        let mut s = if self.clear {
            FaultSettings::default()
        } else {
            current.clone()
        };
        if let Some(v) = self.drop_random_every_secs {
            s.drop_random_every_secs = v;
        }
        if let Some(v) = self.malformed_ratio {
            s.malformed_ratio = v;
        }
        if let Some(v) = self.duplicate_ratio {
            s.duplicate_ratio = v;
        }
        if let Some(v) = self.reorder_ratio {
            s.reorder_ratio = v;
        }
        if let Some(v) = self.geo_block {
            s.geo_block = v;
        }
        if let Some(b) = self.http_5xx_burst {
            s.http_5xx_remaining = b.count;
            s.http_5xx_status = b.status.unwrap_or(503);
        }
        if let Some(v) = self.weight_limit {
            s.weight_limit = v;
        }
        if let Some(n) = self.rest_mangled_burst {
            s.rest_mangled_remaining = n;
        }
        if self.clear_archive_faults {
            s.archive.clear();
        }
        if let Some(add) = &self.archive_faults {
            s.archive.extend(add.iter().cloned());
        }
        s.validate()?;
        if let Some(st) = &self.stall
            && let Some(d) = st.duration_secs
            && !(d.is_finite() && d > 0.0)
        {
            return Err(format!("stall.duration_secs {d} must be > 0"));
        }
        Ok(s)
    }
}

/// What to do with one trade frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAction {
    /// Send it.
    Deliver,
    /// Send a corrupted version (the trade is not delivered).
    Malformed,
    /// Send it twice.
    Duplicate,
    /// Hold it and send it after the next frame.
    Reorder,
}

/// Decide the fate of one frame from one uniform draw.
pub fn decide(rng: &mut KeyedRng, s: &FaultSettings) -> FrameAction {
    if s.malformed_ratio == 0.0 && s.duplicate_ratio == 0.0 && s.reorder_ratio == 0.0 {
        return FrameAction::Deliver;
    }
    let u = rng.uniform();
    if u < s.malformed_ratio {
        FrameAction::Malformed
    } else if u < s.malformed_ratio + s.duplicate_ratio {
        FrameAction::Duplicate
    } else if u < s.malformed_ratio + s.duplicate_ratio + s.reorder_ratio {
        FrameAction::Reorder
    } else {
        FrameAction::Deliver
    }
}

/// Corrupt a frame so that no JSON parser accepts it (cut in the middle, garbage appended).
pub fn corrupt(frame: &str) -> String {
    let cut = frame.len() / 2;
    let mut end = cut;
    while !frame.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\u{0}#garbage", &frame[..end])
}

/// Seconds until the next random drop: exponential with the given mean, from one draw.
pub fn next_drop_delay(rng: &mut KeyedRng, mean_secs: f64) -> f64 {
    let u = 1.0 - rng.uniform(); // (0, 1]
    (-u.ln() * mean_secs).clamp(mean_secs * 0.05, mean_secs * 5.0)
}

/// A fault of one archive file (`<SYMBOL>-trades-<period>.zip` and its `.CHECKSUM`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveFault {
    /// Upper-case symbol.
    pub symbol: String,
    /// `YYYY-MM-DD` (a daily file) or `YYYY-MM` (a monthly file).
    pub period: String,
    /// What goes wrong.
    pub kind: ArchiveFaultKind,
}

/// What goes wrong with an archive file. The known problems of Binance's dumps
/// (binance/binance-public-data issues: missing days, late uploads, re-uploaded files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ArchiveFaultKind {
    /// The zip and its checksum answer 404 (a hole in the archive).
    Missing,
    /// The zip is served cut to half its bytes; the checksum is the true one.
    Truncated,
    /// The zip is intact; the checksum file names a different digest.
    WrongChecksum,
    /// Both answer 404 until the simulator clock reaches `available_at_ms` (a late upload).
    Late {
        /// Simulator time (ms) from which the file is served.
        available_at_ms: i64,
    },
    /// Until `at_ms` the file is a first upload lacking a stretch of rows in the middle (with
    /// its own, matching checksum); from `at_ms` on, the complete file (a re-upload).
    Reuploaded {
        /// Simulator time (ms) of the re-upload.
        at_ms: i64,
    },
}

impl ArchiveFault {
    fn validate(&self) -> Result<(), String> {
        if !trade_proto::rules::is_symbol(&self.symbol) {
            return Err(format!(
                "archive fault symbol {:?} must match {}",
                self.symbol,
                trade_proto::rules::SYMBOL_PATTERN
            ));
        }
        let p = &self.period;
        let date = match p.len() {
            10 => p.parse::<jiff::civil::Date>().ok(),
            7 => format!("{p}-01").parse::<jiff::civil::Date>().ok(),
            _ => None,
        };
        // Round-trip so `2025-6-1` and the like are refused: file names are zero-padded.
        if date.is_none_or(|d| !d.to_string().starts_with(p.as_str())) {
            return Err(format!(
                "archive fault period {p:?} must be YYYY-MM-DD or YYYY-MM"
            ));
        }
        Ok(())
    }
}

/// How to serve one archive file, from its faults and the simulator clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchivePlan {
    /// Answer 404 for the zip and the checksum.
    pub missing: bool,
    /// Serve the first upload (rows missing) rather than the complete file.
    pub first_upload: bool,
    /// Cut the served zip.
    pub truncated: bool,
    /// Serve a checksum that does not match.
    pub wrong_checksum: bool,
}

/// The plan for `symbol`'s file of `period` at `now_ms`; several faults combine.
pub fn archive_plan(
    faults: &[ArchiveFault],
    symbol: &str,
    period: &str,
    now_ms: i64,
) -> ArchivePlan {
    let mut plan = ArchivePlan::default();
    for f in faults
        .iter()
        .filter(|f| f.symbol == symbol && f.period == period)
    {
        match f.kind {
            ArchiveFaultKind::Missing => plan.missing = true,
            ArchiveFaultKind::Truncated => plan.truncated = true,
            ArchiveFaultKind::WrongChecksum => plan.wrong_checksum = true,
            ArchiveFaultKind::Late { available_at_ms } => {
                plan.missing |= now_ms < available_at_ms;
            }
            ArchiveFaultKind::Reuploaded { at_ms } => plan.first_upload |= now_ms < at_ms,
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn archive_faults_are_added_cleared_and_planned() {
        let req: FaultRequest = serde_json::from_str(
            r#"{"archive_faults": [
                {"symbol": "BTCUSDT", "period": "2025-06-01", "kind": "missing"},
                {"symbol": "BTCUSDT", "period": "2025-06-02", "kind": {"late": {"available_at_ms": 1000}}},
                {"symbol": "ARBUSDT", "period": "2025-05", "kind": "wrong_checksum"},
                {"symbol": "ARBUSDT", "period": "2025-05", "kind": {"reuploaded": {"at_ms": 50}}}
            ]}"#,
        )
        .unwrap();
        let s = req.apply_to(&FaultSettings::default()).unwrap();
        assert_eq!(s.archive.len(), 4);
        let plan = |sym, p, now| archive_plan(&s.archive, sym, p, now);
        assert!(plan("BTCUSDT", "2025-06-01", 0).missing);
        assert!(plan("BTCUSDT", "2025-06-02", 999).missing);
        assert!(
            !plan("BTCUSDT", "2025-06-02", 1000).missing,
            "late file served"
        );
        assert_eq!(plan("BTCUSDT", "2025-06-03", 0), ArchivePlan::default());
        let arb = plan("ARBUSDT", "2025-05", 49);
        assert!(arb.wrong_checksum && arb.first_upload && !arb.missing);
        assert!(!plan("ARBUSDT", "2025-05", 50).first_upload);
        let cleared = FaultRequest {
            clear_archive_faults: true,
            ..Default::default()
        }
        .apply_to(&s)
        .unwrap();
        assert!(cleared.archive.is_empty());
    }

    #[test]
    fn archive_fault_periods_are_checked() {
        for bad in ["2025-6-1", "2025-13", "2025-06-31", "yesterday"] {
            let e = FaultRequest {
                archive_faults: Some(vec![ArchiveFault {
                    symbol: "BTCUSDT".into(),
                    period: bad.into(),
                    kind: ArchiveFaultKind::Missing,
                }]),
                ..Default::default()
            }
            .apply_to(&FaultSettings::default())
            .unwrap_err();
            assert!(e.contains("period") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn request_sets_and_clears() {
        let s = FaultRequest {
            malformed_ratio: Some(0.1),
            geo_block: Some(true),
            http_5xx_burst: Some(Http5xxBurst {
                count: 3,
                status: None,
            }),
            ..Default::default()
        }
        .apply_to(&FaultSettings::default())
        .unwrap();
        assert_eq!(s.malformed_ratio, 0.1);
        assert!(s.geo_block);
        assert_eq!((s.http_5xx_remaining, s.http_5xx_status), (3, 503));
        let cleared = FaultRequest {
            clear: true,
            duplicate_ratio: Some(0.2),
            ..Default::default()
        }
        .apply_to(&s)
        .unwrap();
        assert_eq!(
            cleared,
            FaultSettings {
                duplicate_ratio: 0.2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let e = FaultRequest {
            reorder_ratio: Some(1.5),
            ..Default::default()
        }
        .apply_to(&FaultSettings::default())
        .unwrap_err();
        assert!(e.contains("reorder_ratio"), "{e}");
        let e = serde_json::from_str::<FaultRequest>(r#"{"drop_everything":true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("drop_everything"), "{e}");
    }

    #[test]
    fn decisions_follow_the_ratios() {
        let s = FaultSettings {
            malformed_ratio: 0.1,
            duplicate_ratio: 0.2,
            reorder_ratio: 0.05,
            ..Default::default()
        };
        let mut rng = KeyedRng::new(1, 2, Stream::Faults, 3);
        let n = 100_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            let i = match decide(&mut rng, &s) {
                FrameAction::Deliver => 0,
                FrameAction::Malformed => 1,
                FrameAction::Duplicate => 2,
                FrameAction::Reorder => 3,
            };
            counts[i] += 1;
        }
        for (i, want) in [(1, 0.1), (2, 0.2), (3, 0.05)] {
            let got = counts[i] as f64 / n as f64;
            assert!((got - want).abs() < 0.01, "{i}: {got} vs {want}");
        }
        let none = FaultSettings::default();
        assert_eq!(decide(&mut rng, &none), FrameAction::Deliver);
    }

    #[test]
    fn corrupted_frames_do_not_parse() {
        let f = r#"{"e":"trade","E":1751132780369,"s":"BTCUSDT","t":5052328858}"#;
        assert!(serde_json::from_str::<serde_json::Value>(&corrupt(f)).is_err());
    }
}
