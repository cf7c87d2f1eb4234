//! Parquet through the object-store layer: `COPY … TO` writes a partitioned folder,
//! `CREATE EXTERNAL TABLE` reads it back, over `file://` always, over `s3://` against an
//! S3-compatible server (moto) and over `hdfs://` when `WEIR_TEST_HDFS` names a namenode
//! (for example `hdfs://127.0.0.1:9000`). On `s3://` a Parquet sink's files read back too.

use std::path::Path;

use crate::harness::{S3, Server, connect, first_value};

/// `table`'s rows per `dt`: the date, how many, and `figure` as text.
async fn by_date(
    client: &tokio_postgres::Client,
    table: &str,
    figure: &str,
) -> Vec<(String, i64, String)> {
    let sql = format!(
        "SELECT dt, count(*), CAST({figure} AS VARCHAR) FROM {table} GROUP BY dt ORDER BY dt"
    );
    let rows = client.query(&sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn round_trip(client: &tokio_postgres::Client, base: &str, table: &str) {
    let location = format!("{}/{table}/", base.trim_end_matches('/'));
    client
        .batch_execute(&format!(
            "COPY (SELECT city, category, amount, dt FROM sales) TO '{location}' \
             STORED AS PARQUET PARTITIONED BY (dt)"
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{location}'"
        ))
        .await
        .unwrap();
    assert_eq!(
        by_date(client, table, "sum(amount)").await,
        vec![
            ("2026-11-20".to_string(), 3, "157.90".to_string()),
            ("2026-11-21".to_string(), 2, "208.90".to_string()),
        ],
        "{location}"
    );
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_round_trip_through_object_stores() {
    let server = Server::start("tests/fixtures/sql");
    let client = connect(&server).await;

    let dir = tempfile::tempdir().unwrap();
    round_trip(
        &client,
        &format!("file://{}", dir.path().display()),
        "local_copy",
    )
    .await;
    // Hive folders really were written.
    assert!(dir.path().join("local_copy/dt=2026-11-20").is_dir());
    sink_round_trip(
        &client,
        &format!("file://{}", dir.path().display()),
        Some(dir.path()),
    )
    .await;

    match std::env::var("WEIR_TEST_HDFS") {
        Ok(namenode) => {
            let base = format!(
                "{}/weir-test-{}",
                namenode.trim_end_matches('/'),
                std::process::id()
            );
            round_trip(&client, &base, "hdfs_copy").await;
        }
        Err(_) => println!(
            "WEIR_TEST_HDFS not set: HDFS round trip skipped (file:// ran on the same code path)"
        ),
    }
    drop(client);
    assert!(server.stop().success());
}

/// A Parquet sink archiving 5,000 generated orders into `base`, read back as a table:
/// each event once, under the date of its event time. `local`: `base` as a local folder,
/// where a file is then planted in the sink's staging folder, which the table must skip.
async fn sink_round_trip(client: &tokio_postgres::Client, base: &str, local: Option<&Path>) {
    let location = format!("{}/raw_orders/", base.trim_end_matches('/'));
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders (WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH ( \
               connector = 'datagen', profile = 'orders', seed = '11', rate = 'unlimited', \
               count = '5000', start = '2026-01-01 23:59:58'); \
             CREATE SINK raw_orders FROM orders WITH (connector = 'parquet', \
               path = '{location}', 'partition.by' = 'dt', 'rollover.size' = '64KB'); \
             FLUSH"
        ))
        .await
        .unwrap();
    if let Some(local) = local {
        let day = local.join("raw_orders/dt=2026-01-01");
        let committed = std::fs::read_dir(&day)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "parquet"))
            .expect("a committed file");
        let staging = local.join("raw_orders/_inprogress/dt=2026-01-01");
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::copy(committed, staging.join("planted.parquet")).unwrap();
    }
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE archived STORED AS PARQUET LOCATION '{location}'"
        ))
        .await
        .unwrap();
    assert_eq!(
        by_date(client, "archived", "count(DISTINCT order_id)").await,
        vec![
            ("2026-01-01".to_string(), 2000, "2000".to_string()),
            ("2026-01-02".to_string(), 3000, "3000".to_string())
        ],
        "{location}"
    );
    let missing = client
        .simple_query(
            "SELECT count(*) FROM ( \
               SELECT order_id, user_id, product_id, amount, ts + INTERVAL '86398' SECOND \
               FROM datagen('orders', 5000, 11, 1000, 0) \
               EXCEPT SELECT order_id, user_id, product_id, amount, ts FROM archived)",
        )
        .await
        .unwrap();
    assert_eq!(first_value(&missing).as_deref(), Some("0"), "{location}");
    let written = client
        .simple_query(
            "SELECT CAST(rows_written AS TEXT) || ' ' || CAST(errors AS TEXT) \
             FROM weir_catalog.sinks WHERE name = 'raw_orders'",
        )
        .await
        .unwrap();
    assert_eq!(first_value(&written).as_deref(), Some("5000 0"));
    client
        .batch_execute("DROP TABLE archived; DROP SOURCE orders CASCADE")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_on_s3_through_the_same_object_store_layer() {
    let Some(s3) = S3::start("weir-test") else {
        return;
    };
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with_env("tests/fixtures/sql", &env);
    let client = connect(&server).await;
    round_trip(&client, "s3://weir-test/copies", "s3_copy").await;
    sink_round_trip(&client, "s3://weir-test/archive", None).await;
    // A bucket that does not exist is an error that names it, and the server goes on.
    let err = client
        .batch_execute(
            "CREATE EXTERNAL TABLE nowhere STORED AS PARQUET LOCATION 's3://no-such-bucket/x/'",
        )
        .await
        .unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("no-such-bucket"), "{message}");
    assert!(client.simple_query("SELECT 1").await.is_ok());
    drop(client);
    assert!(server.stop().success());
}
