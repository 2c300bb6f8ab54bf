//! The pipeline's datasets and tables, from the very schema files Terraform applies
//! (`terraform/schemas/*.json`, embedded at compile time), so that the local stack and the tests
//! create exactly what `terraform apply` creates in the cloud.

use super::schema::{self, Field, SchemaError, TableSpec};

/// `market.trades_raw`: what the consumer appends (at-least-once).
pub const TRADES_RAW_SCHEMA: &str = include_str!("../../../terraform/schemas/trades_raw.json");
/// `market.gaps`: trade ids known to be undeliverable.
pub const GAPS_SCHEMA: &str = include_str!("../../../terraform/schemas/gaps.json");
/// `market.coverage`: per-symbol, per-day completeness of `market.trades` (`batch history`).
pub const COVERAGE_SCHEMA: &str = include_str!("../../../terraform/schemas/coverage.json");
/// `dwh.klines_<symbol>`: one-minute klines per symbol.
pub const KLINES_SCHEMA: &str = include_str!("../../../terraform/schemas/klines.json");
/// `dwh.symbols`: current symbol metadata.
pub const SYMBOLS_SCHEMA: &str = include_str!("../../../terraform/schemas/symbols.json");
/// `scd.symbols_history`: type-2 history of symbol metadata.
pub const SYMBOLS_HISTORY_SCHEMA: &str =
    include_str!("../../../terraform/schemas/symbols_history.json");

/// Dataset and table names; defaults match Terraform's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datasets {
    /// Real-time data: `trades_raw`, the `trades` view, `gaps`.
    pub market: String,
    /// Warehouse tables loaded by the batch.
    pub dwh: String,
    /// Slowly-changing-dimension history.
    pub scd: String,
}

impl Default for Datasets {
    fn default() -> Self {
        Self {
            market: "market".into(),
            dwh: "dwh".into(),
            scd: "scd".into(),
        }
    }
}

/// The table the consumer appends trades to.
pub const TRADES_RAW: &str = "trades_raw";
/// The deduplicated view users query.
pub const TRADES_VIEW: &str = "trades";
/// The deduplicating table function for a time range (reads only the partitions it needs).
pub const TRADES_BETWEEN: &str = "trades_between";
/// The gap records table.
pub const GAPS: &str = "gaps";
/// The per-day completeness table.
pub const COVERAGE: &str = "coverage";

/// `klines_<symbol in lower case>`.
pub fn klines_table(symbol: &str) -> String {
    format!("klines_{}", symbol.to_ascii_lowercase())
}

fn spec(
    dataset: &str,
    table: &str,
    json: &str,
    partition: Option<&str>,
    cluster: &[&str],
) -> Result<TableSpec, SchemaError> {
    Ok(TableSpec {
        dataset: dataset.to_owned(),
        table: table.to_owned(),
        fields: schema::parse(json)?,
        partition_by_day: partition.map(str::to_owned),
        cluster_by: cluster.iter().map(|c| (*c).to_owned()).collect(),
    })
}

/// Every table of the pipeline for these symbols, laid out as in Terraform.
pub fn all_tables(ds: &Datasets, symbols: &[String]) -> Result<Vec<TableSpec>, SchemaError> {
    let mut out = vec![
        spec(
            &ds.market,
            TRADES_RAW,
            TRADES_RAW_SCHEMA,
            Some("trade_time"),
            &["symbol", "trade_id"],
        )?,
        spec(
            &ds.market,
            GAPS,
            GAPS_SCHEMA,
            Some("detected_time"),
            &["symbol"],
        )?,
        // A row per symbol-day (a few thousand rows a symbol): too small to partition.
        spec(&ds.market, COVERAGE, COVERAGE_SCHEMA, None, &["symbol"])?,
        spec(&ds.dwh, "symbols", SYMBOLS_SCHEMA, None, &["symbol"])?,
        spec(
            &ds.scd,
            "symbols_history",
            SYMBOLS_HISTORY_SCHEMA,
            None,
            &["symbol"],
        )?,
    ];
    for s in symbols {
        out.push(spec(
            &ds.dwh,
            &klines_table(s),
            KLINES_SCHEMA,
            Some("open_time"),
            &[],
        )?);
    }
    Ok(out)
}

/// The deduplicating view: exactly one row per (symbol, trade_id), the first received.
/// Terraform's `google_bigquery_table.trades` view carries the same query (a test holds them
/// together).
pub fn trades_view_query(project: &str, ds: &Datasets) -> String {
    format!(
        "SELECT * FROM `{project}.{}.{TRADES_RAW}` WHERE TRUE QUALIFY ROW_NUMBER() OVER \
         (PARTITION BY symbol, trade_id ORDER BY receive_time) = 1",
        ds.market
    )
}

/// The table function users query for a time range: the same one row per (symbol, trade_id),
/// with the `trade_time` filter *before* the deduplication, so BigQuery reads only the daily
/// partitions of `trades_raw` the range touches. (A filter on the view sits after its window
/// function, so the view reads the whole table whatever the filter.) Terraform's
/// `google_bigquery_routine.trades_between` carries the same body.
pub fn trades_between_query(project: &str, ds: &Datasets) -> String {
    dedup_between(project, ds, "start_time", "end_time")
}

/// The body of [`trades_between_query`] with SQL expressions for its two bounds: for the batch,
/// which reads `trades_raw` itself (the table grant it has) rather than calling the function (that
/// would need a grant on the routine too), through the very same deduplication.
pub fn dedup_between(project: &str, ds: &Datasets, start: &str, end: &str) -> String {
    format!(
        "SELECT * FROM `{project}.{}.{TRADES_RAW}` WHERE trade_time >= {start} AND \
         trade_time < {end} QUALIFY ROW_NUMBER() OVER (PARTITION BY symbol, trade_id ORDER BY \
         receive_time) = 1",
        ds.market
    )
}

/// Every statement that creates the datasets, tables and views, idempotently.
pub fn setup_statements(
    project: &str,
    ds: &Datasets,
    symbols: &[String],
) -> Result<Vec<String>, SchemaError> {
    let mut out: Vec<String> = [&ds.market, &ds.dwh, &ds.scd]
        .iter()
        .map(|d| format!("CREATE SCHEMA IF NOT EXISTS `{project}.{d}`"))
        .collect();
    for t in all_tables(ds, symbols)? {
        out.push(schema::create_table_ddl(project, &t)?);
    }
    out.push(format!(
        "CREATE VIEW IF NOT EXISTS `{project}.{}.{TRADES_VIEW}` AS {}",
        ds.market,
        trades_view_query(project, ds)
    ));
    out.push(format!(
        "CREATE OR REPLACE TABLE FUNCTION `{project}.{}.{TRADES_BETWEEN}`\
         (start_time TIMESTAMP, end_time TIMESTAMP) AS {}",
        ds.market,
        trades_between_query(project, ds)
    ));
    Ok(out)
}

/// The columns of a schema, in order (for tests and for the batch's inserts).
pub fn column_names(fields: &[Field]) -> Vec<&str> {
    fields.iter().map(|f| f.name.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_parses_and_trades_raw_matches_the_proto() {
        let specs = all_tables(&Datasets::default(), &["BTCUSDT".into()]).unwrap();
        assert_eq!(specs.len(), 6);
        let trades = &specs[0];
        let proto = trade_proto::message_descriptor("Trade").unwrap();
        let proto_cols: Vec<&str> = proto.field.iter().map(|f| f.name()).collect();
        assert_eq!(column_names(&trades.fields), proto_cols);
        let gaps = &specs[1];
        let gap = trade_proto::message_descriptor("Gap").unwrap();
        let gap_cols: Vec<&str> = gap.field.iter().map(|f| f.name()).collect();
        assert_eq!(column_names(&gaps.fields), gap_cols);
        let coverage = &specs[2];
        assert_eq!(
            (coverage.table.as_str(), coverage.cluster_by.as_slice()),
            (COVERAGE, ["symbol".to_owned()].as_slice())
        );
        assert_eq!(coverage.partition_by_day, None);
        assert_eq!(
            column_names(&coverage.fields),
            [
                "symbol",
                "day",
                "first_id",
                "last_id",
                "trade_count",
                "source_mix",
                "status",
                "missing_ids",
                "checked_time"
            ]
        );
        assert_eq!(specs[5].table, "klines_btcusdt");
    }

    /// The string value of `key = "..."` in the block of `resource`, HCL escapes undone.
    fn hcl_string(tf: &str, resource: &str, key: &str) -> String {
        let block = &tf[tf
            .find(resource)
            .unwrap_or_else(|| panic!("{resource} missing"))..];
        let line = block
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{resource} has no {key}"));
        let quoted = line.trim_start_matches([' ', '=']);
        quoted
            .trim()
            .trim_matches('"')
            .replace("\\\"", "\"")
            .replace("${var.project_id}", "P")
            .replace("${local.market_dataset_id}", "market")
    }

    #[test]
    fn terraform_creates_the_same_view_and_function_as_the_code() {
        // Read at run time: terraform/*.tf is not part of the crate (nor of the Docker context).
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../terraform/bigquery.tf");
        let tf = std::fs::read_to_string(path).unwrap();
        let ds = Datasets::default();
        let pairs = [
            (
                r#"resource "google_bigquery_table" "trades" {"#,
                "query",
                trades_view_query("P", &ds),
            ),
            (
                r#"resource "google_bigquery_routine" "trades_between" {"#,
                "definition_body",
                trades_between_query("P", &ds),
            ),
        ];
        for (resource, key, code) in pairs {
            let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(hcl_string(&tf, resource, key), code, "{resource}");
        }
    }

    #[test]
    fn setup_creates_datasets_first_and_the_view_and_function_last() {
        let stmts = setup_statements("p", &Datasets::default(), &["ARBUSDT".into()]).unwrap();
        assert!(stmts[0].starts_with("CREATE SCHEMA IF NOT EXISTS `p.market`"));
        assert!(stmts.iter().any(|s| s.contains("`p.dwh.klines_arbusdt`")));
        let [.., view, function] = stmts.as_slice() else {
            panic!("{stmts:?}")
        };
        assert!(view.starts_with("CREATE VIEW IF NOT EXISTS `p.market.trades` AS SELECT"));
        assert!(view.contains("PARTITION BY symbol, trade_id"));
        assert!(function.starts_with(
            "CREATE OR REPLACE TABLE FUNCTION `p.market.trades_between`(start_time TIMESTAMP, end_time TIMESTAMP) AS SELECT"
        ));
        // The range filter comes before the deduplication (that is what lets BigQuery prune).
        let (filter, dedup) = (
            function.find("WHERE trade_time >=").unwrap(),
            function.find("QUALIFY").unwrap(),
        );
        assert!(filter < dedup, "{function}");
    }
}
