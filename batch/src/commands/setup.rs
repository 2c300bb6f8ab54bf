//! `batch setup`: the datasets and tables, from Terraform's schema files.

use gcp::bigquery::tables;

use super::Batch;

impl Batch {
    /// `batch setup`: datasets and tables, from Terraform's schema files. Returns the number of
    /// statements run.
    pub async fn setup(&self) -> anyhow::Result<usize> {
        let statements =
            tables::setup_statements(self.warehouse.project(), &self.datasets, &self.symbols)?;
        for s in &statements {
            self.warehouse.execute(s).await?;
        }
        Ok(statements.len())
    }
}

pub(super) async fn run(batch: &Batch) -> anyhow::Result<()> {
    let n = batch.setup().await?;
    println!("setup: {n} statements applied (datasets, tables, view)");
    Ok(())
}
