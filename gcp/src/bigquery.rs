//! BigQuery: table schemas shared with Terraform, Storage Write appends, and SQL.

pub mod schema;
pub mod sql;
pub mod tables;
pub mod write;

/// `projects/{project}/datasets/{dataset}/tables/{table}`, the Storage Write API's table name.
pub fn table_path(project: &str, dataset: &str, table: &str) -> String {
    format!("projects/{project}/datasets/{dataset}/tables/{table}")
}
