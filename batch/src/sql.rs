//! Every SQL statement the batch sends, built here from validated values (pure, unit-tested).
//!
//! Values that come from outside (symbols, Binance's metadata strings and decimals) travel as
//! named query parameters ([`Statement`]): BigQuery never parses them as SQL, so nothing needs
//! escaping. Identifiers are validated at start-up ([`crate::cli::validate_identifier`]) and are
//! the only text spliced in, with integers formatted from `i64`. Timestamps travel as integers and
//! are converted with `TIMESTAMP_MILLIS`/`TIMESTAMP_MICROS`; reads cast NUMERIC to STRING and
//! TIMESTAMP to Unix ms so that nothing goes through a float.
//!
//! Klines are staged with the Storage Write API and merged from the staging table (see
//! [`crate::stage`] for why); symbol rows (a handful) are bound as parameters of their MERGE.

use binance::IdRange;
pub use gcp::bigquery::sql::Statement;
use gcp::bigquery::tables;

use crate::archive::coverage::CoverageRow;
use crate::day::Day;
use crate::symbols::{ScdPlan, SymbolRow};

/// `` `project.dataset.table` ``.
pub fn table(project: &str, dataset: &str, table: &str) -> String {
    format!("`{project}.{dataset}.{table}`")
}

fn day_filter(col: &str, day: Day) -> String {
    format!(
        "{col} >= TIMESTAMP_MILLIS({}) AND {col} < TIMESTAMP_MILLIS({})",
        day.start_ms(),
        day.end_ms()
    )
}

const KLINE_VALUE_COLS: [&str; 9] = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trade_count",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
];

/// Replaces `day`'s rows of a klines table with the rows of a staging table (same schema),
/// atomically and touching only what differs: an identical rerun
/// affects 0 rows (and keeps `loaded_at`), a changed minute is updated, a new one inserted, a
/// stored minute Binance no longer returns deleted. Rows outside `day` are never touched.
pub fn klines_merge_from(table: &str, stage: &str, day: Day) -> String {
    let cols: Vec<&str> = KLINE_VALUE_COLS
        .iter()
        .copied()
        .chain(["close_time"])
        .collect();
    let changed: Vec<String> = cols.iter().map(|c| format!("t.{c} != s.{c}")).collect();
    let set: Vec<String> = cols.iter().map(|c| format!("{c} = s.{c}")).collect();
    let all = format!("symbol, open_time, {}, loaded_at", cols.join(", "));
    let s_all = format!(
        "s.symbol, s.open_time, {}, s.loaded_at",
        cols.iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    format!(
        "MERGE {table} t\n\
         USING (SELECT * FROM {stage} WHERE {in_day_s}) s\n\
         ON t.open_time = s.open_time AND {in_day_t}\n\
         WHEN MATCHED AND ({changed}) THEN UPDATE SET {set}, loaded_at = s.loaded_at\n\
         WHEN NOT MATCHED BY TARGET THEN INSERT ({all}) VALUES ({s_all})\n\
         WHEN NOT MATCHED BY SOURCE AND {in_day_t} THEN DELETE",
        in_day_s = day_filter("open_time", day),
        in_day_t = day_filter("t.open_time", day),
        changed = changed.join(" OR "),
        set = set.join(", "),
    )
}

/// Reads a day of klines back, in the shape [`crate::klines::KlineRow`] is parsed from.
pub fn klines_select(table: &str, day: Day) -> String {
    format!(
        "SELECT UNIX_MILLIS(open_time) AS open_time, UNIX_MILLIS(close_time) AS close_time, \
         CAST(open AS STRING) AS open, CAST(high AS STRING) AS high, CAST(low AS STRING) AS low, \
         CAST(close AS STRING) AS close, CAST(volume AS STRING) AS volume, \
         CAST(quote_volume AS STRING) AS quote_volume, trade_count, \
         CAST(taker_buy_base_volume AS STRING) AS taker_buy_base_volume, \
         CAST(taker_buy_quote_volume AS STRING) AS taker_buy_quote_volume \
         FROM {table} WHERE {} ORDER BY open_time",
        day_filter("open_time", day)
    )
}

/// Rows per day between two days (both included), for resuming a backfill.
pub fn klines_day_counts(table: &str, first: Day, last: Day) -> String {
    format!(
        "SELECT CAST(DATE(open_time) AS STRING) AS day, COUNT(*) AS n FROM {table} \
         WHERE open_time >= TIMESTAMP_MILLIS({}) AND open_time < TIMESTAMP_MILLIS({}) GROUP BY day",
        first.start_ms(),
        last.end_ms()
    )
}

const SYMBOL_ATTRS: [&str; 17] = [
    "symbol",
    "status",
    "base_asset",
    "quote_asset",
    "base_asset_precision",
    "quote_asset_precision",
    "tick_size",
    "min_price",
    "max_price",
    "step_size",
    "min_qty",
    "max_qty",
    "min_notional",
    "max_notional",
    "order_types",
    "permission_sets",
    "row_hash",
];

/// Typed NULLs/empties in [`SYMBOL_ATTRS`] order, for a close-only entry of [`scd_merge`].
fn null_attrs() -> Vec<String> {
    SYMBOL_ATTRS
        .iter()
        .map(|c| match *c {
            "base_asset_precision" | "quote_asset_precision" => "CAST(NULL AS INT64)".into(),
            "order_types" => "ARRAY<STRING>[]".into(),
            _ => "CAST(NULL AS STRING)".into(),
        })
        .collect()
}

/// Typed expressions for a row's attributes, in [`SYMBOL_ATTRS`] order; the row's strings are
/// bound to `stmt` as `@<prefix>_<column>`. Decimals travel as STRING and become NUMERIC through
/// [`value`] (`PARSE_NUMERIC`): exact in BigQuery, and bqemulator rounds NUMERIC casts inside such
/// sources to three decimals (0.00001 became 0).
fn attr_values(r: &SymbolRow, prefix: &str, stmt: &mut Statement) -> Vec<String> {
    let name = |c: &str| format!("{prefix}_{c}");
    let strings: [(&str, &str); 13] = [
        ("symbol", &r.symbol),
        ("status", &r.status),
        ("base_asset", &r.base_asset),
        ("quote_asset", &r.quote_asset),
        ("tick_size", &r.tick_size),
        ("min_price", &r.min_price),
        ("max_price", &r.max_price),
        ("step_size", &r.step_size),
        ("min_qty", &r.min_qty),
        ("max_qty", &r.max_qty),
        ("min_notional", &r.min_notional),
        ("permission_sets", &r.permission_sets),
        ("row_hash", &r.row_hash),
    ];
    let mut bound = std::mem::take(stmt);
    for (c, v) in strings {
        bound = bound.string(&name(c), v);
    }
    *stmt = bound
        .opt_string(&name("max_notional"), r.max_notional.clone())
        .strings(&name("order_types"), r.order_types.iter().cloned());
    SYMBOL_ATTRS
        .iter()
        .map(|c| match *c {
            "base_asset_precision" => format!("CAST({} AS INT64)", r.base_asset_precision),
            "quote_asset_precision" => format!("CAST({} AS INT64)", r.quote_asset_precision),
            c => format!("@{}", name(c)),
        })
        .collect()
}

const DECIMAL_ATTRS: [&str; 8] = [
    "tick_size",
    "min_price",
    "max_price",
    "step_size",
    "min_qty",
    "max_qty",
    "min_notional",
    "max_notional",
];

/// `s.col` as the target column's type.
fn value(c: &str) -> String {
    if DECIMAL_ATTRS.contains(&c) {
        format!("PARSE_NUMERIC(s.{c})")
    } else {
        format!("s.{c}")
    }
}

fn named(vals: Vec<String>, names: &[&str]) -> String {
    let v: Vec<String> = vals
        .into_iter()
        .zip(names)
        .map(|(v, n)| format!("{v} AS {n}"))
        .collect();
    format!("SELECT {}", v.join(", "))
}

/// Applies an [`ScdPlan`] to `scd.symbols_history` in one MERGE. Close entries carry the symbol
/// as `merge_key` and the hash the current version must still have; open entries carry a NULL
/// key, so they never match and are inserted. A version is closed only if it is still current,
/// still has the expected hash, and began at or before `as_of`; the caller compares the affected
/// count with [`ScdPlan::expected_affected`]. Returns `None` for an empty plan (write nothing).
pub fn scd_merge(table: &str, plan: &ScdPlan, as_of_us: i64) -> Option<Statement> {
    if plan.is_empty() {
        return None;
    }
    let mut names = vec!["merge_key", "expect_hash"];
    names.extend(SYMBOL_ATTRS);
    let mut stmt = Statement::default();
    let mut entries = Vec::new();
    for (i, (symbol, hash)) in plan.close.iter().enumerate() {
        let (key, expect) = (format!("c{i}_key"), format!("c{i}_hash"));
        stmt = stmt
            .string(&key, symbol.as_str())
            .string(&expect, hash.as_str());
        let mut v = vec![format!("@{key}"), format!("@{expect}")];
        v.extend(null_attrs());
        entries.push(v);
    }
    for (i, row) in plan.open.iter().enumerate() {
        let mut v = vec!["CAST(NULL AS STRING)".into(), "CAST(NULL AS STRING)".into()];
        v.extend(attr_values(row, &format!("o{i}"), &mut stmt));
        entries.push(v);
    }
    let src: Vec<String> = entries.into_iter().map(|v| named(v, &names)).collect();
    let cols = SYMBOL_ATTRS.join(", ");
    let s_cols: Vec<String> = SYMBOL_ATTRS.iter().map(|c| value(c)).collect();
    Some(stmt.with_sql(format!(
        "MERGE {table} t\n\
         USING (\n{src}\n) s\n\
         ON t.symbol = s.merge_key AND t.is_current AND t.row_hash = s.expect_hash AND t.valid_from <= TIMESTAMP_MICROS({as_of_us})\n\
         WHEN MATCHED THEN UPDATE SET valid_to = TIMESTAMP_MICROS({as_of_us}), is_current = FALSE\n\
         WHEN NOT MATCHED BY TARGET AND s.merge_key IS NULL THEN INSERT ({cols}, valid_from, valid_to, is_current) \
         VALUES ({s_cols}, TIMESTAMP_MICROS({as_of_us}), CAST(NULL AS TIMESTAMP), TRUE)",
        src = src.join("\nUNION ALL\n"),
        s_cols = s_cols.join(", "),
    )))
}

/// The current versions' hashes of the symbols in `scope`.
pub fn scd_current(table: &str, scope: &[String]) -> Statement {
    Statement::new(format!(
        "SELECT symbol, row_hash FROM {table} WHERE is_current AND symbol IN UNNEST(@scope)"
    ))
    .strings("scope", scope.iter().cloned())
}

/// Makes `dwh.symbols` hold exactly `rows` for the symbols in `scope` (others untouched).
pub fn symbols_current_merge(
    table: &str,
    rows: &[SymbolRow],
    scope: &[String],
    as_of_us: i64,
) -> Statement {
    let mut stmt = Statement::default().strings("scope", scope.iter().cloned());
    if rows.is_empty() {
        return stmt.with_sql(format!(
            "DELETE FROM {table} WHERE symbol IN UNNEST(@scope)"
        ));
    }
    let src: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| named(attr_values(r, &format!("r{i}"), &mut stmt), &SYMBOL_ATTRS))
        .collect();
    let set: Vec<String> = SYMBOL_ATTRS[1..]
        .iter()
        .map(|c| format!("{c} = {}", value(c)))
        .collect();
    let s_cols: Vec<String> = SYMBOL_ATTRS.iter().map(|c| value(c)).collect();
    stmt.with_sql(format!(
        "MERGE {table} t\n\
         USING (\n{src}\n) s\n\
         ON t.symbol = s.symbol\n\
         WHEN MATCHED THEN UPDATE SET {set}, as_of = TIMESTAMP_MICROS({as_of_us})\n\
         WHEN NOT MATCHED BY TARGET THEN INSERT ({cols}, as_of) VALUES ({s_cols}, TIMESTAMP_MICROS({as_of_us}))\n\
         WHEN NOT MATCHED BY SOURCE AND t.symbol IN UNNEST(@scope) THEN DELETE",
        src = src.join("\nUNION ALL\n"),
        set = set.join(", "),
        cols = SYMBOL_ATTRS.join(", "),
        s_cols = s_cols.join(", "),
    ))
}

/// Summary of a symbol's trades in `market.trades` on `day` (by trade time).
pub fn trades_day_summary(view: &str, symbol: &str, day: Day) -> Statement {
    Statement::new(format!(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT trade_id) AS ids, IFNULL(MIN(trade_id), -1) AS lo, \
         IFNULL(MAX(trade_id), -1) AS hi FROM {view} WHERE symbol = @symbol AND {}",
        day_filter("trade_time", day)
    ))
    .string("symbol", symbol)
}

/// Summary of a symbol's trades in `market.trades` with ids in `range` (whatever their time).
pub fn trades_range_summary(view: &str, symbol: &str, range: IdRange) -> Statement {
    Statement::new(format!(
        "SELECT COUNT(DISTINCT trade_id) AS ids, IFNULL(MIN(trade_id), -1) AS lo, \
         IFNULL(MAX(trade_id), -1) AS hi FROM {view} WHERE symbol = @symbol AND trade_id BETWEEN {} AND {}",
        range.from, range.to
    ))
    .string("symbol", symbol)
}

/// The holes between stored trade ids inside `range` (not the head or tail: see
/// [`crate::reconcile::missing_ranges`]).
pub fn trade_id_holes(view: &str, symbol: &str, range: IdRange) -> Statement {
    Statement::new(format!(
        "SELECT from_id, to_id FROM (SELECT trade_id + 1 AS from_id, \
         LEAD(trade_id) OVER (ORDER BY trade_id) - 1 AS to_id FROM {view} \
         WHERE symbol = @symbol AND trade_id BETWEEN {} AND {}) WHERE to_id >= from_id ORDER BY from_id",
        range.from, range.to
    ))
    .string("symbol", symbol)
}

/// What `market.coverage` says of `symbol`'s days `first..=last` (NULL ids read as -1, the
/// day as the Unix ms of its midnight).
pub fn coverage_select(table: &str, symbol: &str, first: Day, last: Day) -> Statement {
    Statement::new(format!(
        "SELECT UNIX_MILLIS(TIMESTAMP(day)) AS day_ms, status, IFNULL(first_id, -1) AS first_id, \
         IFNULL(last_id, -1) AS last_id, trade_count FROM {table} WHERE symbol = @symbol AND day \
         BETWEEN DATE(TIMESTAMP_MILLIS({})) AND DATE(TIMESTAMP_MILLIS({})) ORDER BY day",
        first.start_ms(),
        last.start_ms()
    ))
    .string("symbol", symbol)
}

/// The smallest trade id of `symbol` that came from `source` (-1 when none).
pub fn first_id_of_source(view: &str, symbol: &str, source: &str) -> Statement {
    Statement::new(format!(
        "SELECT IFNULL(MIN(trade_id), -1) AS lo FROM {view} WHERE symbol = @symbol AND source = \
         @source"
    ))
    .string("symbol", symbol)
    .string("source", source)
}

/// The id, time (Unix µs) and source of every trade of `symbol` on the days `first..=last`, in
/// id order: the input of [`crate::archive::coverage::CoverageBuilder`]. Read through the body of
/// the `market.trades_between` table function ([`tables::dedup_between`]), whose time filter
/// comes before its deduplication, so BigQuery reads only those days' partitions (the view would
/// read them all).
pub fn coverage_trades(
    project: &str,
    ds: &tables::Datasets,
    symbol: &str,
    first: Day,
    last: Day,
) -> Statement {
    let days = tables::dedup_between(
        project,
        ds,
        &format!("TIMESTAMP_MILLIS({})", first.start_ms()),
        &format!("TIMESTAMP_MILLIS({})", last.end_ms()),
    );
    Statement::new(format!(
        "SELECT trade_id, UNIX_MICROS(trade_time) AS t, source FROM ({days}) WHERE symbol = \
         @symbol ORDER BY trade_id"
    ))
    .string("symbol", symbol)
}

/// Writes coverage `rows` (one symbol's) into `market.coverage` by (symbol, day), changing only
/// rows whose verdict differs (so a rerun affects 0 rows and keeps `checked_time`). `None` for
/// no rows.
pub fn coverage_merge(table: &str, rows: &[CoverageRow], checked_us: i64) -> Option<Statement> {
    let first = rows.first()?;
    let mut stmt = Statement::default().string("symbol", first.symbol.as_str());
    let opt =
        |v: Option<i64>| v.map_or_else(|| "CAST(NULL AS INT64)".to_owned(), |v| v.to_string());
    let src: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (mix, status) = (format!("m{i}"), format!("s{i}"));
            stmt = std::mem::take(&mut stmt)
                .string(&mix, r.source_mix())
                .string(&status, r.status.as_str());
            let missing: u64 = r.holes.iter().map(|h| h.len()).sum();
            format!(
                "SELECT DATE(TIMESTAMP_MILLIS({day})) AS day, {f} AS first_id, {l} AS last_id, \
                 {n} AS trade_count, NULLIF(@{mix}, '') AS source_mix, @{status} AS status, \
                 {missing} AS missing_ids",
                day = r.day.start_ms(),
                f = opt(r.first_id),
                l = opt(r.last_id),
                n = r.count,
            )
        })
        .collect();
    const COLS: [&str; 7] = [
        "first_id",
        "last_id",
        "trade_count",
        "source_mix",
        "status",
        "missing_ids",
        "day",
    ];
    // NULL-safe inequality (first_id, last_id and source_mix are NULL on a missing day).
    let changed: Vec<String> = COLS[..6]
        .iter()
        .map(|c| {
            let none = if *c == "source_mix" || *c == "status" {
                "''"
            } else {
                "-1"
            };
            format!("IFNULL(t.{c}, {none}) != IFNULL(s.{c}, {none})")
        })
        .collect();
    let set: Vec<String> = COLS[..6].iter().map(|c| format!("{c} = s.{c}")).collect();
    let s_cols: Vec<String> = COLS.iter().map(|c| format!("s.{c}")).collect();
    Some(stmt.with_sql(format!(
        "MERGE {table} t\n\
         USING (\n{src}\n) s\n\
         ON t.symbol = @symbol AND t.day = s.day\n\
         WHEN MATCHED AND ({changed}) THEN UPDATE SET {set}, checked_time = TIMESTAMP_MICROS({checked_us})\n\
         WHEN NOT MATCHED BY TARGET THEN INSERT (symbol, {cols}, checked_time) VALUES (@symbol, {s_cols}, TIMESTAMP_MICROS({checked_us}))",
        src = src.join("\nUNION ALL\n"),
        changed = changed.join(" OR "),
        set = set.join(", "),
        cols = COLS.join(", "),
        s_cols = s_cols.join(", "),
    )))
}

/// Records `ranges` of `symbol` (each with its reason) in `market.gaps` as reported by the
/// batch, unless the same (symbol, from_id, to_id, reporter) is already there (a rerun that
/// still cannot fill them writes nothing). `None` for no ranges.
pub fn gaps_insert(
    table: &str,
    symbol: &str,
    ranges: &[(IdRange, &str)],
    detected_us: i64,
) -> Option<Statement> {
    if ranges.is_empty() {
        return None;
    }
    let mut stmt = Statement::default()
        .string("symbol", symbol)
        .string("reporter", "batch");
    let src: Vec<String> = ranges
        .iter()
        .enumerate()
        .map(|(i, (r, reason))| {
            let name = format!("r{i}");
            stmt = std::mem::take(&mut stmt).string(&name, *reason);
            format!(
                "SELECT {} AS from_id, {} AS to_id, @{name} AS reason",
                r.from, r.to
            )
        })
        .collect();
    Some(stmt.with_sql(format!(
        "MERGE {table} t\n\
         USING (\n{}\n) s\n\
         ON t.symbol = @symbol AND t.from_id = s.from_id AND t.to_id = s.to_id AND t.reporter = @reporter\n\
         WHEN NOT MATCHED BY TARGET THEN INSERT (symbol, from_id, to_id, reason, detected_time, reporter) \
         VALUES (@symbol, s.from_id, s.to_id, s.reason, TIMESTAMP_MICROS({detected_us}), @reporter)",
        src.join("\nUNION ALL\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(symbol: &str, status: &str) -> SymbolRow {
        SymbolRow {
            symbol: symbol.into(),
            status: status.into(),
            base_asset: "BTC".into(),
            quote_asset: "USDT".into(),
            base_asset_precision: 8,
            quote_asset_precision: 8,
            tick_size: "0.01".into(),
            min_price: "0.01".into(),
            max_price: "1000000".into(),
            step_size: "0.00001".into(),
            min_qty: "0.00001".into(),
            max_qty: "9000".into(),
            min_notional: "5".into(),
            max_notional: None,
            order_types: vec!["LIMIT".into(), "MARKET".into()],
            permission_sets: "[[\"SPOT\"]]".into(),
            row_hash: "h".into(),
        }
    }

    #[test]
    fn values_travel_as_parameters_never_as_text() {
        // A quote, a backslash and a newline in Binance's strings cannot reach the SQL text.
        let hostile = "TRADING' OR TRUE --\\\n";
        let s = symbols_current_merge(
            "`p.dwh.symbols`",
            &[row("BTCUSDT", hostile)],
            &["BTCUSDT".into()],
            9,
        );
        assert!(!s.sql().contains("TRADING"), "{}", s.sql());
        assert_eq!(s.param_value("r0_status"), Some(hostile));
        assert_eq!(s.param_value("r0_max_notional"), None);
        assert!(s.sql().contains("@r0_status AS status"), "{}", s.sql());
        assert!(
            s.sql().contains("CAST(8 AS INT64) AS base_asset_precision"),
            "{}",
            s.sql()
        );
        assert!(
            s.sql().contains("PARSE_NUMERIC(s.tick_size)"),
            "{}",
            s.sql()
        );
        let names: Vec<&str> = s.param_names().collect();
        assert!(
            names.contains(&"scope") && names.contains(&"r0_order_types"),
            "{names:?}"
        );

        let q = trades_day_summary("`p.market.trades`", "A'B", "2026-01-31".parse().unwrap());
        assert!(q.sql().contains("symbol = @symbol"));
        assert!(!q.sql().contains("A'B"));
        assert_eq!(q.param_value("symbol"), Some("A'B"));
    }

    #[test]
    fn an_empty_row_set_deletes_only_the_scope() {
        let s = symbols_current_merge("`p.dwh.symbols`", &[], &["X".into()], 1);
        assert_eq!(
            s.sql(),
            "DELETE FROM `p.dwh.symbols` WHERE symbol IN UNNEST(@scope)"
        );
        assert_eq!(s.param_names().collect::<Vec<_>>(), ["scope"]);
    }

    #[test]
    fn klines_merge_bounds_the_delete_to_the_day() {
        let day: Day = "2026-01-31".parse().unwrap();
        let sql = klines_merge_from("`p.dwh.klines_btcusdt`", "`p.dwh._stage`", day);
        let delete = sql.lines().last().unwrap();
        assert_eq!(
            delete,
            format!(
                "WHEN NOT MATCHED BY SOURCE AND t.open_time >= TIMESTAMP_MILLIS({}) AND t.open_time < TIMESTAMP_MILLIS({}) THEN DELETE",
                day.start_ms(),
                day.end_ms()
            )
        );
        assert!(
            sql.contains("USING (SELECT * FROM `p.dwh._stage` WHERE open_time >= "),
            "{sql}"
        );
        assert!(
            sql.contains("WHEN MATCHED AND (t.open != s.open OR "),
            "{sql}"
        );
    }

    #[test]
    fn scd_merge_is_none_for_an_empty_plan_and_has_one_entry_per_action() {
        assert!(scd_merge("`p.scd.h`", &ScdPlan::default(), 1).is_none());
        let plan = ScdPlan {
            close: vec![("A".into(), "h-old".into())],
            open: vec![],
            unchanged: vec![],
        };
        let stmt = scd_merge("`p.scd.h`", &plan, 5).unwrap();
        let sql = stmt.sql();
        assert!(
            sql.contains("SELECT @c0_key AS merge_key, @c0_hash AS expect_hash"),
            "{sql}"
        );
        assert_eq!(stmt.param_value("c0_key"), Some("A"));
        assert_eq!(stmt.param_value("c0_hash"), Some("h-old"));
        assert!(sql.contains("valid_to = TIMESTAMP_MICROS(5), is_current = FALSE"));
    }

    #[test]
    fn coverage_and_gaps_bind_their_strings_and_change_only_what_differs() {
        use crate::archive::coverage::Status;
        let day: Day = "2026-01-02".parse().unwrap();
        let row = CoverageRow {
            symbol: "BTCUSDT".into(),
            day,
            first_id: Some(10),
            last_id: Some(19),
            count: 10,
            sources: [("archive".to_owned(), 10)].into(),
            status: Status::Complete,
            holes: vec![],
        };
        let missing = CoverageRow {
            day: day.next(),
            first_id: None,
            last_id: None,
            count: 0,
            sources: Default::default(),
            status: Status::Missing,
            ..row.clone()
        };
        assert!(coverage_merge("`p.market.coverage`", &[], 1).is_none());
        let stmt = coverage_merge("`p.market.coverage`", &[row, missing], 7).unwrap();
        let sql = stmt.sql();
        assert_eq!(stmt.param_value("symbol"), Some("BTCUSDT"));
        assert_eq!(stmt.param_value("m0"), Some("archive=10"));
        assert_eq!(stmt.param_value("s1"), Some("missing"));
        assert!(
            !sql.contains("BTCUSDT") && !sql.contains("'complete'"),
            "{sql}"
        );
        assert!(sql.contains(&format!("DATE(TIMESTAMP_MILLIS({}))", day.start_ms())));
        assert!(sql.contains("CAST(NULL AS INT64) AS first_id"), "{sql}");
        assert!(
            sql.contains("WHEN MATCHED AND (IFNULL(t.first_id, -1) != IFNULL(s.first_id, -1) OR"),
            "{sql}"
        );

        assert!(gaps_insert("`p.market.gaps`", "BTCUSDT", &[], 1).is_none());
        let stmt = gaps_insert(
            "`p.market.gaps`",
            "BTCUSDT",
            &[(IdRange::new(5, 9), "archive_missing")],
            3,
        )
        .unwrap();
        assert_eq!(stmt.param_value("r0"), Some("archive_missing"));
        assert_eq!(stmt.param_value("reporter"), Some("batch"));
        assert!(
            stmt.sql()
                .contains("SELECT 5 AS from_id, 9 AS to_id, @r0 AS reason")
        );
        assert!(!stmt.sql().contains("archive_missing"));
    }
}
