//! DDL, DML and queries through the official REST client (`google-cloud-bigquery`), which works
//! against bqemulator unchanged when given its endpoint and anonymous credentials.
//!
//! Values travel as named query parameters ([`Statement`], `@name` in the SQL), never as
//! escaped literals: BigQuery parses them as values, so no string can change a statement's
//! meaning. Identifiers (project, dataset, table) cannot be parameters; callers validate those.

use google_cloud_bigquery::client::BigQuery;
use google_cloud_bigquery::query::Row;
use google_cloud_bigquery_v2::model::{QueryParameter, QueryParameterType, QueryParameterValue};

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

/// SQL text with the values of its `@name` parameters.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    sql: String,
    params: Vec<QueryParameter>,
}

impl Statement {
    /// A statement; add its parameters with [`Statement::string`] and friends.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// The same parameters with `sql` as the text: for statements whose text is built while
    /// their values are bound.
    pub fn with_sql(mut self, sql: impl Into<String>) -> Self {
        self.sql = sql.into();
        self
    }

    /// The SQL text (without values).
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The parameter names, in the order they were added.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// The value of the scalar parameter `name`, as sent (for tests).
    pub fn param_value(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.parameter_value.as_ref())
            .and_then(|v| v.value.as_deref())
    }

    /// Binds `@name` to a STRING.
    pub fn string(self, name: &str, value: impl Into<String>) -> Self {
        self.opt_string(name, Some(value))
    }

    /// Binds `@name` to a STRING or NULL.
    pub fn opt_string(mut self, name: &str, value: Option<impl Into<String>>) -> Self {
        let v = QueryParameterValue::new().set_or_clear_value(value.map(Into::into));
        self.params.push(param(name, scalar_type("STRING"), v));
        self
    }

    /// Binds `@name` to an ARRAY<STRING> (for `IN UNNEST(@name)`).
    pub fn strings<S: Into<String>>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        let v = QueryParameterValue::new().set_array_values(
            values
                .into_iter()
                .map(|s| QueryParameterValue::new().set_value(s.into())),
        );
        let t = QueryParameterType::new()
            .set_type("ARRAY")
            .set_array_type(scalar_type("STRING"));
        self.params.push(param(name, t, v));
        self
    }
}

fn scalar_type(ty: &str) -> QueryParameterType {
    QueryParameterType::new().set_type(ty)
}

fn param(name: &str, ty: QueryParameterType, value: QueryParameterValue) -> QueryParameter {
    QueryParameter::new()
        .set_name(name)
        .set_parameter_type(ty)
        .set_parameter_value(value)
}

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

    /// Runs a statement (DDL or DML) without parameters; see [`Warehouse::execute_with`].
    pub async fn execute(&self, sql: &str) -> Result<Option<i64>, SqlError> {
        self.execute_with(&Statement::new(sql)).await
    }

    /// Runs a query without parameters; see [`Warehouse::query_with`].
    pub async fn query(&self, sql: &str) -> Result<Vec<Row>, SqlError> {
        self.query_with(&Statement::new(sql)).await
    }

    /// Runs a statement (DDL or DML) to completion; returns the DML affected-row count if any.
    pub async fn execute_with(&self, stmt: &Statement) -> Result<Option<i64>, SqlError> {
        let done = self
            .request(stmt)
            .until_done()
            .await
            .map_err(|source| error(&stmt.sql, source))?;
        Ok(done.metadata().num_dml_affected_rows)
    }

    /// Runs a query and collects every row.
    pub async fn query_with(&self, stmt: &Statement) -> Result<Vec<Row>, SqlError> {
        let mut rows = self
            .request(stmt)
            .until_done()
            .await
            .map_err(|source| error(&stmt.sql, source))?
            .read();
        let mut out = Vec::new();
        while let Some(row) = rows.next().await {
            out.push(row.map_err(|source| error(&stmt.sql, source))?);
        }
        Ok(out)
    }

    fn request(&self, stmt: &Statement) -> google_cloud_bigquery::builder::bigquery::Query {
        let q = self.client.query(stmt.sql.as_str());
        if stmt.params.is_empty() {
            q
        } else {
            q.set_parameter_mode("NAMED")
                .set_query_parameters(stmt.params.iter().cloned())
        }
    }
}

fn error(sql: &str, source: impl std::error::Error + Send + Sync + 'static) -> SqlError {
    let first_line = sql.lines().find(|l| !l.trim().is_empty()).unwrap_or(sql);
    SqlError {
        statement: first_line.trim().chars().take(120).collect(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_keep_names_types_and_values_apart_from_the_text() {
        let s = Statement::new("SELECT 1 FROM t WHERE a = @a AND b IN UNNEST(@b)")
            .string("a", "it's")
            .strings("b", ["X", "Y"])
            .opt_string("c", None::<String>);
        assert_eq!(s.param_names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(s.param_value("a"), Some("it's"));
        assert_eq!(s.param_value("c"), None);
        let b = &s.params[1];
        let t = b.parameter_type.as_ref().unwrap();
        assert_eq!(t.r#type, "ARRAY");
        assert_eq!(t.array_type.as_ref().unwrap().r#type, "STRING");
        let vals: Vec<_> = b
            .parameter_value
            .as_ref()
            .unwrap()
            .array_values
            .iter()
            .map(|v| v.value.clone().unwrap())
            .collect();
        assert_eq!(vals, ["X", "Y"]);
        assert!(!s.sql().contains("it's"));
    }
}
