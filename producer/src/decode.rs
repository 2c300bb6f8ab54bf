//! `producer decode`: raw Binance frames on stdin, one Trade as JSON per line on stdout.
//!
//! For replaying captures and checking what the producer would publish. Each non-empty line is
//! parsed with the same parser as the live path ([`binance::parse_frame`], raw or combined
//! frames); a trade is printed as one JSON object with the proto's field names. A line that
//! does not parse is reported on stderr as `line N: reason` and the rest still flow; a
//! well-formed frame that is not a trade (`serverShutdown`, a control reply) is noted on stderr
//! as skipped. Pure over its reader and writers; the clock is passed in.

use std::io::{self, BufRead, Write};

use binance::{Frame, FrameContext, TimeUnit, parse_frame};
use trade_proto::Trade;

/// Counts of one decode run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DecodeReport {
    /// Lines read (including blank ones).
    pub lines: u64,
    /// Trades printed.
    pub trades: u64,
    /// Well-formed frames that are not trades.
    pub skipped: u64,
    /// Lines that could not be parsed.
    pub errors: u64,
}

/// The JSON of a trade: the proto's field names; decimals stay strings.
pub fn trade_json(t: &Trade) -> serde_json::Value {
    serde_json::json!({
        "symbol": t.symbol,
        "trade_id": t.trade_id,
        "price": t.price,
        "quantity": t.quantity,
        "trade_time": t.trade_time,
        "event_time": t.event_time,
        "receive_time": t.receive_time,
        "buyer_is_maker": t.buyer_is_maker,
        "source": t.source,
    })
}

/// Decodes every line of `input`.
pub fn decode<R: BufRead, W: Write, E: Write>(
    input: R,
    mut out: W,
    mut err: E,
    time_unit: TimeUnit,
    mut now_us: impl FnMut() -> i64,
) -> io::Result<DecodeReport> {
    let mut report = DecodeReport::default();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        report.lines += 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                report.errors += 1;
                writeln!(err, "line {n}: unreadable: {e}")?;
                continue;
            }
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let ctx = FrameContext {
            receive_time_us: now_us(),
            time_unit,
        };
        match parse_frame(text, &ctx) {
            Ok(Frame::Trade(t)) => {
                report.trades += 1;
                writeln!(out, "{}", trade_json(&t))?;
            }
            Ok(other) => {
                report.skipped += 1;
                let what = match other {
                    Frame::ServerShutdown { .. } => "serverShutdown event".to_owned(),
                    Frame::ControlReply { .. } => "control reply".to_owned(),
                    Frame::ControlError { code, .. } => format!("control error {code}"),
                    Frame::Other { event_type, .. } => {
                        format!("event {:?}", event_type.unwrap_or_default())
                    }
                    Frame::Trade(_) => unreachable!("handled above"),
                };
                writeln!(err, "line {n}: skipped: not a trade ({what})")?;
            }
            Err(e) => {
                report.errors += 1;
                writeln!(err, "line {n}: {e}")?;
            }
        }
    }
    out.flush()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = r#"{"e":"trade","E":1751132780369,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368,"m":true,"M":true}"#;
    const OLD: &str = r#"{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","b":88,"a":50,"T":1672515782136,"m":true,"M":true}"#;
    const COMBINED: &str = r#"{"stream":"arbusdt@trade","data":{"e":"trade","E":1751132780369,"s":"ARBUSDT","t":265000001,"p":"0.33000000","q":"12.10000000","T":1751132780368,"m":false,"M":true}}"#;
    const SHUTDOWN: &str =
        r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#;

    fn run(input: &str) -> (DecodeReport, Vec<serde_json::Value>, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let r = decode(
            input.as_bytes(),
            &mut out,
            &mut err,
            TimeUnit::Millisecond,
            || 7,
        )
        .unwrap();
        let values = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (r, values, String::from_utf8(err).unwrap())
    }

    #[test]
    fn every_shape_decodes_and_bad_lines_are_reported_with_their_number() {
        let input =
            format!("{RAW}\n\n{{\"e\":\"trade\",\"p\":1e5\n{COMBINED}\n{SHUTDOWN}\n{OLD}\n");
        let (r, values, err) = run(&input);
        assert_eq!(
            r,
            DecodeReport {
                lines: 6,
                trades: 3,
                skipped: 1,
                errors: 1
            }
        );
        assert_eq!(values[0]["symbol"], "BTCUSDT");
        assert_eq!(values[0]["trade_id"], 5052328858i64);
        assert_eq!(values[0]["price"], "107407.88000000");
        assert_eq!(values[0]["trade_time"], 1_751_132_780_368_000i64);
        assert_eq!(values[0]["receive_time"], 7);
        assert_eq!(values[0]["source"], "stream");
        assert_eq!(values[0]["buyer_is_maker"], true);
        assert_eq!(values[1]["symbol"], "ARBUSDT");
        assert_eq!(values[1]["buyer_is_maker"], false);
        assert_eq!(values[2]["trade_id"], 12345);
        assert!(err.contains("line 3: "), "{err}");
        assert!(
            err.contains("line 5: skipped: not a trade (serverShutdown event)"),
            "{err}"
        );
        assert!(!err.contains("line 2"), "blank lines are not errors: {err}");
    }
}
