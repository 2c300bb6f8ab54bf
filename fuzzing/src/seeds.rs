//! Seed inputs, built from the repository's fixtures: `tests/fixtures/binance/*.json` and
//! `binance/tests/fixtures/*.json` (Binance's documented examples and our captures; their
//! sources are in the `SOURCES.md` next to them), read at run time so a new fixture seeds the
//! next run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use binance::parse::{Frame, FrameContext, TimeUnit, parse_frame, parse_rest_trade};
use binance::wire::RestTrade;
use prost::Message as _;
use trade_proto::{Gap, Source, Trade};

use crate::targets::pubsub::{Attributes, consumer_input};
use crate::targets::rest::rest_input;
use crate::{RECEIVE_TIME_US, Target};

/// The repository root (this crate's parent directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the repository")
        .to_path_buf()
}

/// The fixture directories, relative to the repository root.
pub const FIXTURE_DIRS: [&str; 2] = ["tests/fixtures/binance", "binance/tests/fixtures"];

/// Every `*.json` fixture as (`dir/file`, bytes), sorted by name.
pub fn fixtures() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let root = repo_root();
    let mut out = Vec::new();
    for dir in FIXTURE_DIRS {
        for entry in std::fs::read_dir(root.join(dir))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = format!(
                    "{dir}/{}",
                    path.file_name().unwrap_or_default().to_string_lossy()
                );
                out.push((name, std::fs::read(&path)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A trade as the producer makes it today (µs times after 2017), valid for the contract.
pub fn valid_trade(source: Source) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        trade_id: 5_052_328_858,
        price: "107407.88000000".into(),
        quantity: "0.00024000".into(),
        trade_time: 1_751_132_780_368_000,
        event_time: 1_751_132_780_369_000,
        receive_time: RECEIVE_TIME_US,
        buyer_is_maker: true,
        source: source.as_str().into(),
    }
}

/// A gap record valid for the consumer.
pub fn valid_gap() -> Gap {
    Gap {
        symbol: "ARBUSDT".into(),
        from_id: 10,
        to_id: 12,
        reason: "ids_unavailable".into(),
        detected_time: 1_751_132_780_368_000,
        reporter: "producer".into(),
    }
}

/// The seeds of `target` as (name, bytes), without duplicates, in a fixed order.
pub fn seeds(target: Target) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let fixtures = fixtures()?;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    match target {
        Target::Frame => {
            for (name, bytes) in &fixtures {
                out.push((name.clone(), bytes.clone()));
                let text = String::from_utf8_lossy(bytes);
                let text = text.trim();
                if text.starts_with(r#"{"e":"#) {
                    out.push((
                        format!("{name} combined"),
                        format!(r#"{{"stream":"x@trade","data":{text}}}"#).into_bytes(),
                    ));
                }
            }
            // The frames the producer really reads: microsecond times.
            let us = r#"{"e":"trade","E":1751132780369001,"s":"BTCUSDT","t":5052328858,"p":"107407.88000000","q":"0.00024000","T":1751132780368999,"m":true,"M":true}"#;
            out.push(("trade in µs".into(), us.as_bytes().to_vec()));
            out.push((
                "combined trade in µs".into(),
                format!(r#"{{"stream":"btcusdt@trade","data":{us}}}"#).into_bytes(),
            ));
        }
        Target::RestRows => {
            out.extend(fixtures.iter().cloned());
        }
        Target::Rest => {
            for (name, body) in &fixtures {
                let is_error = serde_json::from_slice::<binance::wire::ApiError>(body).is_ok();
                let cases: &[(u16, &[(&str, &str)])] = if is_error {
                    &[
                        (
                            429,
                            &[("retry-after", "17"), ("x-mbx-used-weight-1m", "6001")],
                        ),
                        (418, &[("retry-after", "7200")]),
                        (451, &[]),
                        (400, &[]),
                        (403, &[]),
                        (408, &[]),
                        (503, &[]),
                    ]
                } else {
                    &[(200, &[("x-mbx-used-weight-1m", "25")]), (502, &[])]
                };
                for (status, headers) in cases {
                    out.push((
                        format!("{name} {status}"),
                        rest_input(*status, headers, body),
                    ));
                }
            }
        }
        Target::Consumer => {
            let mut trades = vec![
                ("valid stream trade".to_owned(), valid_trade(Source::Stream)),
                (
                    "valid backfill trade".to_owned(),
                    valid_trade(Source::Backfill),
                ),
                ("valid batch trade".to_owned(), valid_trade(Source::Batch)),
                (
                    "valid archive trade".to_owned(),
                    valid_trade(Source::Archive),
                ),
            ];
            for (name, bytes) in &fixtures {
                let text = String::from_utf8_lossy(bytes);
                for unit in [TimeUnit::Millisecond, TimeUnit::Microsecond] {
                    let ctx = FrameContext {
                        receive_time_us: RECEIVE_TIME_US,
                        time_unit: unit,
                    };
                    if let Ok(Frame::Trade(t)) = parse_frame(&text, &ctx) {
                        trades.push((format!("{name} {unit:?}"), t));
                    }
                }
                if let Ok(rows) = serde_json::from_slice::<Vec<RestTrade>>(bytes) {
                    for row in rows {
                        if let Ok(t) = parse_rest_trade(
                            &row,
                            "BTCUSDT",
                            TimeUnit::Millisecond,
                            RECEIVE_TIME_US,
                            Source::Backfill,
                        ) {
                            trades.push((format!("{name} row {}", row.id), t));
                        }
                    }
                }
            }
            for (name, t) in &trades {
                out.push((
                    format!("{name} trade topic"),
                    consumer_input(false, &Attributes::AsProducer, &t.encode_to_vec()),
                ));
            }
            out.push((
                "trade on the gap topic".into(),
                consumer_input(true, &Attributes::AsProducer, &trades[0].1.encode_to_vec()),
            ));
            let gap = valid_gap().encode_to_vec();
            out.push((
                "valid gap".into(),
                consumer_input(true, &Attributes::Absent, &gap),
            ));
            out.push((
                "gap on the trade topic".into(),
                consumer_input(false, &Attributes::AsProducer, &gap),
            ));
            out.push((
                "trade with other attributes".into(),
                consumer_input(
                    false,
                    &Attributes::Explicit("ETHUSDT".into(), "stream".into()),
                    &valid_trade(Source::Stream).encode_to_vec(),
                ),
            ));
            out.push(("empty".into(), Vec::new()));
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|(_, bytes)| seen.insert(bytes.clone()));
    Ok(out)
}
