//! DDL, DML and queries through the official REST client (`google-cloud-bigquery`), which works
//! against bqemulator unchanged when given its endpoint and anonymous credentials.

use google_cloud_bigquery::client::BigQuery;
use google_cloud_bigquery::query::Row;

use crate::GcpTarget;

/// A SQL statement failed; the message names the statement's first line.
#[derive(Debug, thiserror::Error)]
#[error("BigQuery query failed ({statement}): {source}")]
pub struct SqlError {
    statement: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The REST client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the BigQuery client: {0}")]
pub struct ConnectError(#[from] google_cloud_gax::client_builder::Error);

/// Runs SQL against one project.
#[derive(Clone)]
pub struct Warehouse {
    client: BigQuery,
    project: String,
}

impl Warehouse {
    /// Connects the REST client (the emulator when the target has a REST endpoint).
    pub async fn connect(target: &GcpTarget) -> Result<Self, ConnectError> {
        let mut builder = BigQuery::builder().with_project_id(target.project.clone());
        if let Some(endpoint) = &target.bigquery_endpoint {
            builder = builder.with_endpoint(endpoint.clone()).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        Ok(Self {
            client: builder.build().await?,
            project: target.project.clone(),
        })
    }

    /// The project every unqualified name resolves in.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Runs a statement (DDL or DML) to completion; returns the DML affected-row count if any.
    pub async fn execute(&self, sql: &str) -> Result<Option<i64>, SqlError> {
        let done = self
            .client
            .query(sql)
            .until_done()
            .await
            .map_err(|source| error(sql, source))?;
        Ok(done.metadata().num_dml_affected_rows)
    }

    /// Runs a query and collects every row.
    pub async fn query(&self, sql: &str) -> Result<Vec<Row>, SqlError> {
        let mut rows = self
            .client
            .query(sql)
            .until_done()
            .await
            .map_err(|source| error(sql, source))?
            .read();
        let mut out = Vec::new();
        while let Some(row) = rows.next().await {
            out.push(row.map_err(|source| error(sql, source))?);
        }
        Ok(out)
    }
}

fn error(sql: &str, source: impl std::error::Error + Send + Sync + 'static) -> SqlError {
    let first_line = sql.lines().find(|l| !l.trim().is_empty()).unwrap_or(sql);
    SqlError {
        statement: first_line.trim().chars().take(120).collect(),
        source: Box::new(source),
    }
}
