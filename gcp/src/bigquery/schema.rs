//! BigQuery table schemas in BigQuery's JSON format (the files under `terraform/schemas/`), and
//! the `CREATE TABLE` DDL made from them for the local stack and the tests.
//!
//! One definition serves Terraform (`google_bigquery_table.schema = file(...)`), the emulators
//! and the tests that hold the proto against the tables: nothing is declared twice. Pure.

use serde::{Deserialize, Serialize};

/// A column, as in BigQuery's JSON schema format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// BigQuery type name (`STRING`, `INT64`/`INTEGER`, `NUMERIC`, `TIMESTAMP`, `BOOL`/`BOOLEAN`...).
    #[serde(rename = "type")]
    pub field_type: String,
    /// `REQUIRED`, `NULLABLE` (the default) or `REPEATED`.
    #[serde(default = "nullable")]
    pub mode: String,
    /// Human description, shown in the BigQuery console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn nullable() -> String {
    "NULLABLE".to_owned()
}

/// A schema file that is not valid, or a type we do not map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The JSON does not parse as a list of fields. Fix the schema file.
    #[error("invalid BigQuery JSON schema: {0}")]
    Json(#[from] serde_json::Error),
    /// A column has a type this code does not handle. Use a standard SQL type name.
    #[error("column {column:?} has unsupported type {field_type:?}")]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its type as written.
        field_type: String,
    },
    /// A column has a mode other than REQUIRED, NULLABLE or REPEATED.
    #[error("column {column:?} has unknown mode {mode:?}")]
    UnknownMode {
        /// The column.
        column: String,
        /// Its mode as written.
        mode: String,
    },
}

/// Parses a BigQuery JSON schema (an array of fields).
pub fn parse(json: &str) -> Result<Vec<Field>, SchemaError> {
    let fields: Vec<Field> = serde_json::from_str(json)?;
    for f in &fields {
        standard_type(f)?;
    }
    Ok(fields)
}

/// The standard SQL spelling of a field's type (legacy names accepted).
pub fn standard_type(field: &Field) -> Result<&'static str, SchemaError> {
    Ok(match field.field_type.to_ascii_uppercase().as_str() {
        "STRING" => "STRING",
        "INT64" | "INTEGER" => "INT64",
        "NUMERIC" => "NUMERIC",
        "BIGNUMERIC" => "BIGNUMERIC",
        "FLOAT64" | "FLOAT" => "FLOAT64",
        "BOOL" | "BOOLEAN" => "BOOL",
        "TIMESTAMP" => "TIMESTAMP",
        "DATE" => "DATE",
        "DATETIME" => "DATETIME",
        "BYTES" => "BYTES",
        "JSON" => "JSON",
        _ => {
            return Err(SchemaError::UnsupportedType {
                column: field.name.clone(),
                field_type: field.field_type.clone(),
            });
        }
    })
}

/// A table to create: where, which columns, how it is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Dataset id, e.g. `market`.
    pub dataset: String,
    /// Table id, e.g. `trades_raw`.
    pub table: String,
    /// Columns, in order.
    pub fields: Vec<Field>,
    /// Column to partition by day on (a TIMESTAMP), if any.
    pub partition_by_day: Option<String>,
    /// Clustering columns (at most four, BigQuery's limit).
    pub cluster_by: Vec<String>,
}

/// `CREATE TABLE IF NOT EXISTS` for a spec, in GoogleSQL.
pub fn create_table_ddl(project: &str, spec: &TableSpec) -> Result<String, SchemaError> {
    let mut columns = Vec::with_capacity(spec.fields.len());
    for f in &spec.fields {
        let ty = match standard_type(f)? {
            // NUMERIC's own precision and scale, spelled out: bqemulator transpiles a bare NUMERIC
            // in DDL to DuckDB's default DECIMAL(18, 3), which rounds 0.00000001 to 0. In
            // BigQuery NUMERIC(38, 9) has exactly NUMERIC's range, so nothing changes there.
            "NUMERIC" => "NUMERIC(38, 9)",
            other => other,
        };
        let column = match f.mode.to_ascii_uppercase().as_str() {
            "REQUIRED" => format!("`{}` {ty} NOT NULL", f.name),
            "NULLABLE" => format!("`{}` {ty}", f.name),
            "REPEATED" => format!("`{}` ARRAY<{ty}>", f.name),
            _ => {
                return Err(SchemaError::UnknownMode {
                    column: f.name.clone(),
                    mode: f.mode.clone(),
                });
            }
        };
        columns.push(column);
    }
    let mut ddl = format!(
        "CREATE TABLE IF NOT EXISTS `{project}.{}.{}` (\n  {}\n)",
        spec.dataset,
        spec.table,
        columns.join(",\n  ")
    );
    if let Some(col) = &spec.partition_by_day {
        ddl.push_str(&format!("\nPARTITION BY DATE(`{col}`)"));
    }
    if !spec.cluster_by.is_empty() {
        let cols: Vec<String> = spec.cluster_by.iter().map(|c| format!("`{c}`")).collect();
        ddl.push_str(&format!("\nCLUSTER BY {}", cols.join(", ")));
    }
    Ok(ddl)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[
      {"name": "symbol", "type": "STRING", "mode": "REQUIRED", "description": "Binance symbol"},
      {"name": "trade_id", "type": "INTEGER", "mode": "REQUIRED"},
      {"name": "price", "type": "NUMERIC"},
      {"name": "tags", "type": "STRING", "mode": "REPEATED"},
      {"name": "trade_time", "type": "TIMESTAMP", "mode": "REQUIRED"}
    ]"#;

    #[test]
    fn parses_modes_with_nullable_default() {
        let fields = parse(SAMPLE).unwrap();
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[2].mode, "NULLABLE");
        assert_eq!(standard_type(&fields[1]).unwrap(), "INT64");
    }

    #[test]
    fn ddl_has_not_null_arrays_partition_and_clustering() {
        let spec = TableSpec {
            dataset: "market".into(),
            table: "trades_raw".into(),
            fields: parse(SAMPLE).unwrap(),
            partition_by_day: Some("trade_time".into()),
            cluster_by: vec!["symbol".into(), "trade_id".into()],
        };
        let ddl = create_table_ddl("p", &spec).unwrap();
        assert_eq!(
            ddl,
            "CREATE TABLE IF NOT EXISTS `p.market.trades_raw` (\n  `symbol` STRING NOT NULL,\n  \
             `trade_id` INT64 NOT NULL,\n  `price` NUMERIC(38, 9),\n  `tags` ARRAY<STRING>,\n  \
             `trade_time` TIMESTAMP NOT NULL\n)\nPARTITION BY DATE(`trade_time`)\n\
             CLUSTER BY `symbol`, `trade_id`"
        );
    }

    #[test]
    fn unknown_type_and_field_are_named() {
        let err = parse(r#"[{"name": "g", "type": "GEOGRAPHY"}]"#).unwrap_err();
        assert!(err.to_string().contains("\"g\""), "{err}");
        assert!(err.to_string().contains("GEOGRAPHY"), "{err}");
        let err = parse(r#"[{"name": "g", "type": "STRING", "typo": 1}]"#).unwrap_err();
        assert!(err.to_string().contains("typo"), "{err}");
    }

    #[test]
    fn bad_mode_is_rejected() {
        let spec = TableSpec {
            dataset: "d".into(),
            table: "t".into(),
            fields: parse(r#"[{"name": "a", "type": "STRING", "mode": "OPTIONAL"}]"#).unwrap(),
            partition_by_day: None,
            cluster_by: vec![],
        };
        assert!(matches!(
            create_table_ddl("p", &spec),
            Err(SchemaError::UnknownMode { .. })
        ));
    }
}
