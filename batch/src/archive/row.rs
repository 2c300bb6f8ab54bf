//! One CSV line of an archive file into a contract [`Trade`], exactly.
//!
//! Columns, no header (binance-public-data README, SPOT "Trades"): `id, price, qty, quoteQty,
//! time, isBuyerMaker, isBestMatch`. Spot files write the booleans `True`/`False`; the futures
//! files of the same archive write `true`/`false` (README, FUTURES "Trades"), so both
//! spellings are read, and nothing else.
//!
//! What is kept: `id` as `trade_id`; `price` and `qty` as the exact strings Binance wrote,
//! checked with the contract's own rule ([`trade_proto::rules::is_plain_decimal`], the one the
//! producer's frame parser uses: no reformatting, `"7599.00000000"` stays that); `time` read in
//! the unit of the file's date ([`super::path::Period::time_unit`]), converted to the
//! contract's microseconds, checked with [`trade_proto::rules::is_contract_time`] and against
//! the file's own day or month (a time outside it means a unit mix-up or a corrupt file);
//! `isBuyerMaker` as `buyer_is_maker`. `quoteQty` and `isBestMatch` are checked (a shifted
//! column shows there first) but not kept: the contract has no field for them. The archive has
//! no event time, so `event_time = trade_time`, as for REST rows; `receive_time` is when the
//! file was fetched, passed in; `source` is `archive`.
//!
//! Errors name the line (1-based), the field and its raw value.

use binance::TimeUnit;
use trade_proto::{Source, Trade, rules};

use super::path::ArchiveFile;

/// The column names, in order, for error messages.
pub const COLUMNS: [&str; 7] = [
    "id",
    "price",
    "qty",
    "quoteQty",
    "time",
    "isBuyerMaker",
    "isBestMatch",
];

/// What a line does not say: the symbol, the time unit and window of its file, the fetch time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowContext<'a> {
    /// The file's symbol.
    pub symbol: &'a str,
    /// Unit of the `time` column.
    pub unit: TimeUnit,
    /// `[start, end)` in µs: the file's day or month.
    pub window_us: (i64, i64),
    /// When the file was fetched, µs since the epoch (the rows' `receive_time`).
    pub receive_time_us: i64,
}

impl<'a> RowContext<'a> {
    /// The context of `file`'s rows, fetched at `receive_time_us`.
    pub fn for_file(file: &'a ArchiveFile, receive_time_us: i64) -> Self {
        RowContext {
            symbol: &file.symbol,
            unit: file.period.time_unit(),
            window_us: file.period.window_us(),
            receive_time_us,
        }
    }
}

/// A line that is not a trade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field} {raw:?} {why}")]
pub struct RowError {
    /// 1-based line number.
    pub line: u64,
    /// The column (one of [`COLUMNS`]), or `line` for the line as a whole.
    pub field: &'static str,
    /// The raw value (at most 80 characters).
    pub raw: String,
    /// What is wrong with it.
    pub why: &'static str,
}

fn error(line: u64, field: &'static str, raw: &str, why: &'static str) -> RowError {
    RowError {
        line,
        field,
        raw: raw.chars().take(80).collect(),
        why,
    }
}

/// Parses one line (without its line break) into a trade.
pub fn parse_line(ctx: &RowContext<'_>, line_no: u64, line: &str) -> Result<Trade, RowError> {
    let mut fields = line.split(',');
    let mut cols: [&str; 7] = [""; 7];
    for (i, slot) in cols.iter_mut().enumerate() {
        *slot = fields
            .next()
            .ok_or_else(|| error(line_no, "line", line, column_count_why(i)))?;
    }
    if fields.next().is_some() {
        return Err(error(line_no, "line", line, "has more than 7 columns"));
    }
    let [
        id,
        price,
        qty,
        quote_qty,
        time,
        is_buyer_maker,
        is_best_match,
    ] = cols;

    let trade_id = digits(id).ok_or_else(|| error(line_no, "id", id, "is not a trade id"))?;
    for (field, v) in [("price", price), ("qty", qty), ("quoteQty", quote_qty)] {
        if !rules::is_plain_decimal(v) {
            return Err(error(line_no, field, v, "is not a plain decimal"));
        }
    }
    let raw_time = digits(time).ok_or_else(|| error(line_no, "time", time, "is not an integer"))?;
    let trade_time = ctx
        .unit
        .to_micros(raw_time)
        .filter(|&us| rules::is_contract_time(us))
        .ok_or_else(|| error(line_no, "time", time, unit_why(ctx.unit)))?;
    if trade_time < ctx.window_us.0 || trade_time >= ctx.window_us.1 {
        return Err(error(line_no, "time", time, outside_why(ctx.unit)));
    }
    let buyer_is_maker = boolean(is_buyer_maker)
        .ok_or_else(|| error(line_no, "isBuyerMaker", is_buyer_maker, BOOL_WHY))?;
    boolean(is_best_match).ok_or_else(|| error(line_no, "isBestMatch", is_best_match, BOOL_WHY))?;

    Ok(Trade {
        symbol: ctx.symbol.to_owned(),
        trade_id,
        price: price.to_owned(),
        quantity: qty.to_owned(),
        trade_time,
        event_time: trade_time,
        receive_time: ctx.receive_time_us,
        buyer_is_maker,
        source: Source::Archive.as_str().to_owned(),
    })
}

const BOOL_WHY: &str = "is not True, False, true or false";

/// `split` yields at least one field, so `found` is 1 to 6.
fn column_count_why(found: usize) -> &'static str {
    const WHY: [&str; 7] = [
        "has 1 column, expected 7",
        "has 1 column, expected 7",
        "has 2 columns, expected 7",
        "has 3 columns, expected 7",
        "has 4 columns, expected 7",
        "has 5 columns, expected 7",
        "has 6 columns, expected 7",
    ];
    WHY[found.min(6)]
}

fn unit_why(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Millisecond => {
            "is not a time in milliseconds since 2017 (files before 2025-01-01 use ms)"
        }
        TimeUnit::Microsecond => {
            "is not a time in microseconds since 2017 (files from 2025-01-01 use µs)"
        }
    }
}

fn outside_why(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Millisecond => {
            "is outside the file's day or month (read as milliseconds, the unit before 2025)"
        }
        TimeUnit::Microsecond => {
            "is outside the file's day or month (read as microseconds, the unit from 2025)"
        }
    }
}

/// A non-negative decimal integer that fits an i64 (no sign, no spaces).
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn boolean(s: &str) -> Option<bool> {
    match s {
        "True" | "true" => Some(true),
        "False" | "false" => Some(false),
        _ => None,
    }
}

/// Parses a whole CSV, calling `each` with every trade in file order; returns the row count.
/// Lines end in `\n` (a `\r` before it is dropped); the last line may lack it; an empty line
/// elsewhere is an error.
pub fn for_each_row(
    ctx: &RowContext<'_>,
    csv: &[u8],
    mut each: impl FnMut(Trade),
) -> Result<u64, RowError> {
    let body = csv.strip_suffix(b"\n").unwrap_or(csv);
    if body.is_empty() {
        return Ok(0);
    }
    let mut n = 0u64;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| {
            error(
                line_no,
                "line",
                &String::from_utf8_lossy(raw),
                "is not UTF-8",
            )
        })?;
        if line.is_empty() {
            return Err(error(line_no, "line", line, "is empty"));
        }
        each(parse_line(ctx, line_no, line)?);
        n += 1;
    }
    Ok(n)
}

/// Parses a whole CSV into trades (see [`for_each_row`]).
pub fn parse_csv(ctx: &RowContext<'_>, csv: &[u8]) -> Result<Vec<Trade>, RowError> {
    let mut out = Vec::new();
    for_each_row(ctx, csv, |t| out.push(t))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::path::Period;
    use crate::day::Day;
    use rstest::rstest;

    const FETCHED: i64 = 1_764_806_400_000_000; // 2025-12-04T00:00:00Z

    fn file(symbol: &str, day: &str) -> ArchiveFile {
        ArchiveFile::new(symbol, Period::Day(day.parse::<Day>().unwrap())).unwrap()
    }

    #[test]
    fn a_millisecond_line_becomes_the_exact_trade() {
        let f = file("BTCUSDT", "2018-02-08");
        let ctx = RowContext::for_file(&f, FETCHED);
        let line = "14764081,7599.00000000,0.22477000,1708.02723000,1518048000016,True,True";
        let t = parse_line(&ctx, 1, line).unwrap();
        assert_eq!(
            t,
            Trade {
                symbol: "BTCUSDT".into(),
                trade_id: 14764081,
                price: "7599.00000000".into(),
                quantity: "0.22477000".into(),
                trade_time: 1_518_048_000_016_000,
                event_time: 1_518_048_000_016_000,
                receive_time: FETCHED,
                buyer_is_maker: true,
                source: "archive".into(),
            }
        );
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn a_microsecond_file_keeps_its_microseconds() {
        let f = file("BTCUSDT", "2025-01-01");
        let ctx = RowContext::for_file(&f, FETCHED);
        let t = parse_line(&ctx, 1, "9,1.5,2,3,1735689600123456,false,true").unwrap();
        assert_eq!(t.trade_time, 1_735_689_600_123_456);
        assert!(!t.buyer_is_maker);
    }

    #[rstest]
    #[case("True", true)]
    #[case("true", true)]
    #[case("False", false)]
    #[case("false", false)]
    fn both_boolean_spellings_are_read(#[case] raw: &str, #[case] want: bool) {
        let f = file("BTCUSDT", "2018-02-08");
        let ctx = RowContext::for_file(&f, FETCHED);
        let line = format!("1,1,1,1,1518048000016,{raw},{raw}");
        assert_eq!(parse_line(&ctx, 1, &line).unwrap().buyer_is_maker, want);
    }

    #[rstest]
    #[case("x,1,1,1,1518048000016,True,True", "id", "\"x\"")]
    #[case("-1,1,1,1,1518048000016,True,True", "id", "\"-1\"")]
    #[case("99999999999999999999,1,1,1,1518048000016,True,True", "id", "99999")]
    #[case("1,1e5,1,1,1518048000016,True,True", "price", "\"1e5\"")]
    #[case("1,1,-2,1,1518048000016,True,True", "qty", "\"-2\"")]
    #[case("1,1,1,1.,1518048000016,True,True", "quoteQty", "\"1.\"")]
    #[case("1,1,1,1,1518048000016.5,True,True", "time", "1518048000016.5")]
    #[case("1,1,1,1,1518048000016000,True,True", "time", "read as milliseconds")]
    #[case("1,1,1,1,1518134400000,True,True", "time", "outside the file's day")]
    #[case("1,1,1,1,1518048000016,TRUE,True", "isBuyerMaker", "\"TRUE\"")]
    #[case("1,1,1,1,1518048000016,True,1", "isBestMatch", "\"1\"")]
    #[case("1,1,1,1,1518048000016,True", "line", "6 columns")]
    #[case("1,1,1,1,1518048000016,True,True,x", "line", "more than 7")]
    #[case("", "line", "1 column")]
    fn a_bad_line_names_line_field_and_raw_value(
        #[case] line: &str,
        #[case] field: &str,
        #[case] quoted: &str,
    ) {
        let f = file("BTCUSDT", "2018-02-08");
        let ctx = RowContext::for_file(&f, FETCHED);
        let e = parse_line(&ctx, 42, line).unwrap_err();
        assert_eq!(e.line, 42);
        assert_eq!(e.field, field);
        let msg = e.to_string();
        assert!(msg.starts_with("line 42: "), "{msg}");
        assert!(msg.contains(quoted), "{msg}");
    }

    #[test]
    fn a_millisecond_value_in_a_microsecond_file_is_a_unit_error() {
        let f = file("BTCUSDT", "2025-01-01");
        let ctx = RowContext::for_file(&f, FETCHED);
        let e = parse_line(&ctx, 3, "1,1,1,1,1735689600123,True,True").unwrap_err();
        assert_eq!(e.field, "time");
        assert!(e.to_string().contains("microseconds"), "{e}");
    }

    #[test]
    fn a_csv_parses_line_by_line_and_stops_at_the_first_bad_line() {
        let f = file("BTCUSDT", "2018-02-08");
        let ctx = RowContext::for_file(&f, FETCHED);
        let ok = b"1,1,1,1,1518048000016,True,True\r\n2,1,1,1,1518048000017,False,True\n";
        let trades = parse_csv(&ctx, ok).unwrap();
        assert_eq!(
            trades.iter().map(|t| t.trade_id).collect::<Vec<_>>(),
            [1, 2]
        );
        // Without the final newline too.
        assert_eq!(parse_csv(&ctx, &ok[..ok.len() - 1]).unwrap().len(), 2);
        assert_eq!(parse_csv(&ctx, b"").unwrap().len(), 0);
        let e = parse_csv(
            &ctx,
            b"1,1,1,1,1518048000016,True,True\n\n3,1,1,1,1518048000017,True,True\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.field), (2, "line"));
        let e = parse_csv(
            &ctx,
            b"1,1,1,1,1518048000016,True,True\n2,\xff,1,1,1,True,True\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.why), (2, "is not UTF-8"));
    }
}
