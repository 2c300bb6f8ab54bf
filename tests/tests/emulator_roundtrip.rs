//! The foundation works against the real local stand-ins: a Trade goes through the Pub/Sub
//! emulator unchanged, and an encoded Trade appended through the BigQuery Storage Write API to a
//! table made from Terraform's schema reads back with exact decimals and timestamps.

use std::time::Duration;

use gcp::GcpTarget;
use gcp::bigquery::sql::Warehouse;
use gcp::bigquery::tables::{self, Datasets};
use gcp::bigquery::{table_path, write::StorageWriter};
use gcp::pubsub::{self, Admin, Batching, SubscriptionSpec};
use google_cloud_pubsub::model::Message;
use pipeline_tests::{PROJECT, normalise_decimal, shared, unique_name};
use prost::Message as _;
use trade_proto::{Source, Trade};

fn target() -> GcpTarget {
    let e = shared();
    GcpTarget {
        project: PROJECT.into(),
        pubsub_endpoint: Some(e.pubsub.clone()),
        bigquery_endpoint: Some(e.bq_rest.clone()),
        bigquery_grpc_endpoint: Some(e.bq_grpc.clone()),
    }
}

fn trade(id: i64, price: &str, quantity: &str, maker: bool) -> Trade {
    Trade {
        symbol: "BTCUSDT".into(),
        trade_id: id,
        price: price.into(),
        quantity: quantity.into(),
        trade_time: 1_751_132_780_368_123 + id,
        event_time: 1_751_132_780_369_000 + id,
        receive_time: 1_751_132_780_371_999 + id,
        buyer_is_maker: maker,
        source: Source::Stream.as_str().into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_published_to_pubsub_is_pulled_back_identical() {
    let target = target();
    let topic = unique_name("trades");
    let sub = unique_name("trades_sub");
    let admin = Admin::connect(&target).await.unwrap();
    admin.ensure_topic(&topic).await.unwrap();
    admin
        .ensure_subscription(&sub, &topic, &SubscriptionSpec::default())
        .await
        .unwrap();
    // Idempotent: a second call is not an error.
    admin.ensure_topic(&topic).await.unwrap();

    let sent = trade(5_052_328_858, "0.00000001", "92233.72036854", false);
    let publisher = pubsub::publisher(&target, &topic, Batching::default())
        .await
        .unwrap();
    let id = publisher
        .publish(
            Message::new()
                .set_data(sent.encode_to_vec())
                .set_ordering_key(sent.symbol.clone())
                .set_attributes([("symbol", "BTCUSDT"), ("source", "stream")]),
        )
        .await
        .unwrap();
    assert!(!id.is_empty());

    let subscriber = pubsub::subscriber(&target).await.unwrap();
    let mut stream = subscriber
        .subscribe(pubsub::subscription_path(PROJECT, &sub))
        .build();
    let (msg, handler) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("a message within 30 s")
        .expect("stream open")
        .expect("no pull error");
    handler.ack();
    let got = Trade::decode(msg.data.as_ref()).unwrap();
    assert_eq!(got, sent);
    assert_eq!(msg.ordering_key, "BTCUSDT");
    assert_eq!(
        msg.attributes.get("source").map(String::as_str),
        Some("stream")
    );
    admin.delete_subscription(&sub).await.unwrap();
}

/// New datasets with every table, view and function of the setup.
async fn fresh_warehouse(target: &GcpTarget) -> (Warehouse, Datasets) {
    let warehouse = Warehouse::connect(target).await.unwrap();
    let ds = Datasets {
        market: unique_name("market"),
        dwh: unique_name("dwh"),
        scd: unique_name("scd"),
    };
    for statement in tables::setup_statements(PROJECT, &ds, &["BTCUSDT".into()]).unwrap() {
        warehouse.execute(&statement).await.unwrap();
    }
    (warehouse, ds)
}

/// Rows in `trades_raw`, duplicates included.
async fn raw_rows(warehouse: &Warehouse, ds: &Datasets) -> i64 {
    let raw = warehouse
        .query(&format!(
            "SELECT COUNT(*) AS n FROM `{PROJECT}.{}.trades_raw`",
            ds.market
        ))
        .await
        .unwrap();
    raw[0].get::<i64>("n").unwrap()
}

/// BigQuery prints NUMERIC without trailing zeros; compare decimal values, not spellings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_trades_appended_through_storage_write_read_back_exactly() {
    let target = target();
    let (warehouse, ds) = fresh_warehouse(&target).await;

    let sent = vec![
        trade(0, "0.00000001", "92233.72036854", false),
        trade(1, "107407.88000000", "0.00024000", true),
        trade(2, "99999999.99999999", "0.00000001", false),
    ];
    let writer = StorageWriter::connect(&target).await.unwrap();
    let table = table_path(PROJECT, &ds.market, tables::TRADES_RAW);
    let descriptor = trade_proto::message_descriptor("Trade").unwrap();
    // The Pub/Sub payloads, appended unchanged; the middle one twice, as a redelivery would.
    let mut rows: Vec<Vec<u8>> = sent.iter().map(|t| t.encode_to_vec()).collect();
    rows.push(sent[1].encode_to_vec());
    writer.append(&table, &descriptor, rows).await.unwrap();

    assert_eq!(raw_rows(&warehouse, &ds).await, 4);

    let rows = warehouse
        .query(&format!(
            "SELECT symbol, trade_id, CAST(price AS STRING) AS price, \
             CAST(quantity AS STRING) AS quantity, UNIX_MICROS(trade_time) AS trade_time, \
             UNIX_MICROS(event_time) AS event_time, UNIX_MICROS(receive_time) AS receive_time, \
             buyer_is_maker, source FROM `{PROJECT}.{}.trades` ORDER BY trade_id",
            ds.market
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), sent.len(), "the view has one row per trade id");
    for (row, t) in rows.iter().zip(&sent) {
        assert_eq!(row.get::<String>("symbol").unwrap(), t.symbol);
        assert_eq!(row.get::<i64>("trade_id").unwrap(), t.trade_id);
        assert_eq!(
            normalise_decimal(&row.get::<String>("price").unwrap()),
            normalise_decimal(&t.price)
        );
        assert_eq!(
            normalise_decimal(&row.get::<String>("quantity").unwrap()),
            normalise_decimal(&t.quantity)
        );
        assert_eq!(row.get::<i64>("trade_time").unwrap(), t.trade_time);
        assert_eq!(row.get::<i64>("event_time").unwrap(), t.event_time);
        assert_eq!(row.get::<i64>("receive_time").unwrap(), t.receive_time);
        assert_eq!(row.get::<bool>("buyer_is_maker").unwrap(), t.buyer_is_maker);
        assert_eq!(row.get::<String>("source").unwrap(), t.source);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_between_keeps_one_row_per_trade_of_its_range_only() {
    let target = target();
    let (warehouse, ds) = fresh_warehouse(&target).await;
    // Again: setup is idempotent, the function included.
    for statement in tables::setup_statements(PROJECT, &ds, &["BTCUSDT".into()]).unwrap() {
        warehouse.execute(&statement).await.unwrap();
    }
    // Trades one hour apart over three days, each delivered twice (a redelivery).
    const HOUR_US: i64 = 3_600_000_000;
    let day0 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    let sent: Vec<Trade> = (0..72)
        .map(|i| Trade {
            trade_time: day0 + i * HOUR_US + 123,
            ..trade(i, "1.00000000", "2.00000000", i % 2 == 0)
        })
        .collect();
    let rows: Vec<Vec<u8>> = sent
        .iter()
        .chain(&sent)
        .map(|t| t.encode_to_vec())
        .collect();
    let writer = StorageWriter::connect(&target).await.unwrap();
    let table = table_path(PROJECT, &ds.market, tables::TRADES_RAW);
    let descriptor = trade_proto::message_descriptor("Trade").unwrap();
    writer.append(&table, &descriptor, rows).await.unwrap();

    // The second day, half-open: [day1 00:00, day2 00:00).
    let got = warehouse
        .query(&format!(
            "SELECT trade_id FROM `{PROJECT}.{}.trades_between`(TIMESTAMP_MICROS({}), \
             TIMESTAMP_MICROS({})) ORDER BY trade_id",
            ds.market,
            day0 + 24 * HOUR_US,
            day0 + 48 * HOUR_US
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64>("trade_id").unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        got,
        (24..48).collect::<Vec<i64>>(),
        "one row per trade of that day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_to_a_missing_table_is_rejected_not_retried() {
    let target = target();
    let writer = StorageWriter::connect(&target).await.unwrap();
    let table = table_path(PROJECT, &unique_name("nowhere"), "trades_raw");
    let descriptor = trade_proto::message_descriptor("Trade").unwrap();
    let err = writer
        .append(
            &table,
            &descriptor,
            vec![trade(1, "1", "1", true).encode_to_vec()],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.disposition(),
        gcp::bigquery::write::Disposition::Reject,
        "{err}"
    );
    // The refused table's connection is not reused; the writer goes on to other tables.
    let (warehouse, ds) = fresh_warehouse(&target).await;
    let good = table_path(PROJECT, &ds.market, tables::TRADES_RAW);
    for id in 0..3 {
        writer
            .append(
                &good,
                &descriptor,
                vec![trade(id, "1", "1", true).encode_to_vec()],
            )
            .await
            .unwrap();
    }
    assert_eq!(raw_rows(&warehouse, &ds).await, 3);
    // One connection for the refused table, one for all three appends to the good one.
    assert_eq!(writer.connections_opened(), 2);
}
