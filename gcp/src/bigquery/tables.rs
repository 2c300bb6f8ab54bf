//! The pipeline's datasets and tables, from the very schema files Terraform applies
//! (`terraform/schemas/*.json`, embedded at compile time), so that the local stack and the tests
//! create exactly what `terraform apply` creates in the cloud.

use super::schema::{self, Field, SchemaError, TableSpec};

/// `market.trades_raw`: what the consumer appends (at-least-once).
pub const TRADES_RAW_SCHEMA: &str = include_str!("../../../terraform/schemas/trades_raw.json");
/// `market.gaps`: trade ids known to be undeliverable.
pub const GAPS_SCHEMA: &str = include_str!("../../../terraform/schemas/gaps.json");
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
/// The gap records table.
pub const GAPS: &str = "gaps";

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
        assert_eq!(specs.len(), 5);
        let trades = &specs[0];
        let proto = trade_proto::message_descriptor("Trade").unwrap();
        let proto_cols: Vec<&str> = proto.field.iter().map(|f| f.name()).collect();
        assert_eq!(column_names(&trades.fields), proto_cols);
        let gaps = &specs[1];
        let gap = trade_proto::message_descriptor("Gap").unwrap();
        let gap_cols: Vec<&str> = gap.field.iter().map(|f| f.name()).collect();
        assert_eq!(column_names(&gaps.fields), gap_cols);
        assert_eq!(specs[4].table, "klines_btcusdt");
    }

    #[test]
    fn setup_creates_datasets_first_and_the_view_last() {
        let stmts = setup_statements("p", &Datasets::default(), &["ARBUSDT".into()]).unwrap();
        assert!(stmts[0].starts_with("CREATE SCHEMA IF NOT EXISTS `p.market`"));
        assert!(stmts.iter().any(|s| s.contains("`p.dwh.klines_arbusdt`")));
        let last = stmts.last().unwrap();
        assert!(last.starts_with("CREATE VIEW IF NOT EXISTS `p.market.trades` AS SELECT"));
        assert!(last.contains("PARTITION BY symbol, trade_id"));
    }
}
