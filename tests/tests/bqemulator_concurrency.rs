//! bqemulator under the concurrency our processes put on it: Storage Write appends, queries and
//! DDL from several clients at once. Unpatched, bqemulator runs REST handlers on its event loop
//! and gRPC handlers on worker threads against ONE DuckDB connection, and hangs for good when they
//! overlap; our launcher serialises them (`scripts/bqemulator-launcher.py`). This test fails (by
//! its deadline, not by hanging CI) if that protection is lost.

use std::time::Duration;

use gcp::GcpTarget;
use gcp::bigquery::schema::{self, TableSpec};
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables;
use gcp::bigquery::write::StorageWriter;
use pipeline_tests::{PROJECT, shared, unique_name};
use prost::Message as _;
use trade_proto::{Source, Trade};

const CLIENTS: usize = 6;
const ROUNDS: i64 = 15;
const ROWS: i64 = 50;

fn trade(id: i64) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        trade_id: id,
        price: "91234.56000000".into(),
        quantity: "0.00100000".into(),
        trade_time: 1_764_000_000_000_000 + id,
        event_time: 1_764_000_000_000_000 + id,
        receive_time: 1_764_000_000_000_000 + id,
        buyer_is_maker: id % 2 == 0,
        source: Source::Stream.as_str().into(),
    }
}

async fn client(t: GcpTarget, dataset: String, n: usize) {
    let w = Warehouse::connect(&t).await.unwrap();
    let writer = StorageWriter::connect(&t).await.unwrap();
    let table = format!("t{n}");
    let spec = TableSpec {
        dataset: dataset.clone(),
        table: table.clone(),
        fields: schema::parse(tables::TRADES_RAW_SCHEMA).unwrap(),
        partition_by_day: None,
        cluster_by: vec![],
    };
    w.execute(&schema::create_table_ddl(PROJECT, &spec).unwrap())
        .await
        .unwrap();
    let path = gcp::bigquery::table_path(PROJECT, &dataset, &table);
    let descriptor = trade_proto::message_descriptor("Trade").unwrap();
    for round in 0..ROUNDS {
        let rows = (round * ROWS..(round + 1) * ROWS)
            .map(|id| trade(id).encode_to_vec())
            .collect();
        writer.append(&path, &descriptor, rows).await.unwrap();
        let scratch = format!("`{PROJECT}.{dataset}.scratch_{n}_{round}`");
        w.execute(&format!("CREATE TABLE {scratch} (x INT64)"))
            .await
            .unwrap();
        let got = w
            .query(&format!(
                "SELECT COUNT(*) AS n FROM `{PROJECT}.{dataset}.{table}`"
            ))
            .await
            .unwrap();
        let count: i64 = got[0].get("n").unwrap();
        assert_eq!(count, (round + 1) * ROWS, "client {n} round {round}");
        w.execute(&format!("DROP TABLE {scratch}")).await.unwrap();
    }
    // Every append of the run went over one long-lived AppendRows connection.
    assert_eq!(writer.connections_opened(), 1, "client {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_queries_and_ddl_from_several_clients_at_once_all_complete() {
    let t = GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: None,
        bigquery_endpoint: Some(shared().bq_rest.clone()),
        bigquery_grpc_endpoint: Some(shared().bq_grpc.clone()),
    };
    let dataset = unique_name("concurrency");
    let w = Warehouse::connect(&t).await.unwrap();
    w.execute(&format!("CREATE SCHEMA `{PROJECT}.{dataset}`"))
        .await
        .unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| tokio::spawn(client(t.clone(), dataset.clone(), n)))
        .collect();
    let all = async {
        for c in clients {
            c.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(180), all)
        .await
        .expect("bqemulator stopped answering with appends, queries and DDL in flight");
}
