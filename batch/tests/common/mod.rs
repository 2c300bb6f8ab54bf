//! Helpers shared by the emulated test binaries (`emulated.rs`, `history.rs`): the shared
//! emulators' target, a fresh `Batch` with its own datasets, one-number queries.
#![allow(dead_code)] // each test binary uses its own subset

use batch::commands::Batch;
use batch::day::Day;
use binance::{RestClient, RestConfig};
use binance_sim::SimHandle;
use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::Datasets;
use pipeline_tests::{PROJECT, shared, unique_name};
pub use service::clock::now_us;

/// One test at a time on the shared bqemulator: it deadlocks when Storage Write appends and DDL
/// of concurrent loads interleave (the batch gates its own loads, see `commands::LOAD_GATE`, but the
/// tests also append and run DDL themselves).
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The last UTC day that has ended.
pub fn yesterday() -> Day {
    Day::containing_ms(now_us() / 1000).prev()
}

/// The shared emulators (started once per test binary).
pub fn target() -> GcpTarget {
    let e = shared();
    GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: None,
        bigquery_endpoint: Some(e.bq_rest.clone()),
        bigquery_grpc_endpoint: Some(e.bq_grpc.clone()),
    }
}

/// A `Batch` against `sim`'s REST with fresh datasets, set up.
pub async fn batch_for(sim: &SimHandle, symbols: &[&str], rest: RestConfig) -> Batch {
    let target = target();
    let batch = Batch {
        rest: RestClient::new(RestConfig {
            base_url: sim.rest_base_url(),
            ..rest
        })
        .unwrap(),
        warehouse: Warehouse::connect(&target).await.unwrap(),
        target,
        datasets: Datasets {
            market: unique_name("market"),
            dwh: unique_name("dwh"),
            scd: unique_name("scd"),
        },
        symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
        concurrency: 4,
    };
    batch.setup().await.unwrap();
    batch
}

/// The `n` column of the first row of `sql`.
pub async fn count(batch: &Batch, sql: &str) -> i64 {
    batch.warehouse.query(sql).await.unwrap()[0]
        .get::<i64>("n")
        .unwrap()
}
