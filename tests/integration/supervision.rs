//! Supervision against a real `weir serve` reading a real Kafka-protocol broker: a view
//! whose thread panics (the test-only `weir_test_panic`, present only on a server started
//! with `WEIR_TEST_FAULTS`) shows `failed` with the reason, `FLUSH` fails naming it once
//! its restarts are used up, checkpoints keep its last checkpointed state, and it
//! recovers from that state: after a restart of the server, automatically and with
//! `ALTER MATERIALIZED VIEW … RESTART`.

use crate::harness::{Broker, Server, connect, first_value, rows};

async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    first_value(&client.simple_query(sql).await.unwrap()).unwrap_or_default()
}

fn ids(range: std::ops::Range<i64>) -> Vec<String> {
    range.map(|i| format!("{{\"id\":{i}}}")).collect()
}

/// `FLUSH` fails naming `totals`, which gave up after its restarts.
async fn flush_fails_naming_totals(client: &tokio_postgres::Client) {
    let e = client.batch_execute("FLUSH").await.unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "55000", "{db:?}");
    assert!(
        db.message().contains("materialized view \"totals\" failed")
            && db.message().contains("weir_test_panic")
            && db.message().contains("gave up after 5 restarts"),
        "{}",
        db.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_whose_thread_panics_fails_and_recovers_from_its_checkpoint() {
    let broker = Broker::start();
    broker.create_topic("faults", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (sql, data) = (dir.path().join("sql"), dir.path().join("data"));
    std::fs::create_dir(&sql).unwrap();
    // Six panics: at the first read of record 1000 and at each of the five restarts.
    let server = Server::start_on_with_env(&sql, &data, &[], &[("WEIR_TEST_FAULTS", "6")]);
    let client = connect(&server).await;
    // From the end of the topic: a view that started afresh rather than from its
    // checkpoint would miss the records before.
    client
        .batch_execute(&format!(
            "CREATE SOURCE faults (id BIGINT) WITH (connector = 'kafka', topic = 'faults', \
             'properties.bootstrap.servers' = '{}', 'scan.startup.mode' = 'latest', \
             format = 'json');
             CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n, sum(id) AS total \
             FROM faults WHERE weir_test_panic(id = 1000) IS NOT NULL GROUP BY 'all';
             CREATE MATERIALIZED VIEW healthy AS SELECT count(*) AS n FROM faults GROUP BY 'all'",
            broker.addr()
        ))
        .await
        .unwrap();
    broker.produce("faults", 0, &ids(0..500)).await;
    client.batch_execute("FLUSH; CHECKPOINT").await.unwrap();
    assert_eq!(value(&client, "SELECT n FROM totals").await, "500");

    // Record 1000 makes the view's thread panic, at the first read and at each restart.
    broker.produce("faults", 0, &ids(500..1001)).await;
    flush_fails_naming_totals(&client).await;
    let status = value(
        &client,
        "SELECT status || ': ' || status_detail FROM weir_catalog.materialized_views \
         WHERE name = 'totals'",
    )
    .await;
    assert!(
        status.starts_with("failed: ")
            && status.contains("panicked: weir_test_panic")
            && status.contains("ALTER MATERIALIZED VIEW totals RESTART"),
        "{status}"
    );
    let shown = rows(&client, "SHOW MATERIALIZED VIEWS").await;
    let totals = shown
        .iter()
        .find(|r| r.starts_with("totals|"))
        .expect("SHOW lists the view");
    assert_eq!(
        totals.split('|').nth(3).map(|s| s.starts_with("failed: ")),
        Some(true),
        "{totals}"
    );
    // Queries of the failed view say why; the other view keeps serving.
    let e = client
        .simple_query("SELECT * FROM totals")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error().unwrap().message().contains("failed"),
        "{e:?}"
    );
    assert_eq!(value(&client, "SELECT n FROM healthy").await, "1001");
    // Checkpoints keep the failed view's last checkpointed state (500 records read):
    // this one, and the last at shutdown.
    client.batch_execute("CHECKPOINT").await.unwrap();
    assert!(server.stop().success());

    // The server again, on the same data directory: the view resumes from that state
    // (else it would start at the topic's end and never panic), fails again, and gives
    // up again; ALTER … RESTART starts it again: it panics once more, restarts by itself
    // and recovers, and FLUSH waits for that. Every record is counted once: 500 from the
    // checkpoint, 501 read again.
    let server = Server::start_on_with_env(&sql, &data, &[], &[("WEIR_TEST_FAULTS", "7")]);
    let client = connect(&server).await;
    flush_fails_naming_totals(&client).await;
    client
        .batch_execute("ALTER MATERIALIZED VIEW totals RESTART")
        .await
        .unwrap();
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(
        value(&client, "SELECT n || ' ' || total FROM totals").await,
        "1001 500500"
    );
    assert_eq!(
        value(
            &client,
            "SELECT status FROM weir_catalog.materialized_views WHERE name = 'totals'"
        )
        .await,
        "running"
    );
    // On a running view, RESTART does nothing; unknown names are refused.
    client
        .batch_execute("ALTER MATERIALIZED VIEW totals RESTART")
        .await
        .unwrap();
    let e = client
        .batch_execute("ALTER MATERIALIZED VIEW nothing RESTART")
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42P01");
    let e = client
        .batch_execute("ALTER SINK nothing RESTART")
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42704");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fault_hook_does_not_exist_without_weir_test_faults() {
    let sql = tempfile::tempdir().unwrap();
    let server = Server::start(sql.path().to_str().unwrap());
    let client = connect(&server).await;
    let e = client
        .simple_query("SELECT weir_test_panic(true)")
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("weir_test_panic"),
        "{e:?}"
    );
    assert!(server.stop().success());
}
