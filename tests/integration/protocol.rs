//! Protocol behaviour that SQL files cannot express: portals with row limits
//! (PortalSuspended), named statements re-executed, typed binary parameters,
//! cancellation of a running statement, and the HTTP metrics of what happened.

use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use crate::harness::{Server, connect, first_value, http_get, metric, wait_for_statements};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_portals_parameters_and_cancel() {
    let server = Server::start("tests/fixtures/sql");
    let mut client = connect(&server).await;

    // A named statement with typed parameters, executed several times.
    let stmt = client
        .prepare_typed(
            "SELECT id, label FROM typed WHERE id >= $1 AND flag = $2 ORDER BY id",
            &[Type::INT4, Type::BOOL],
        )
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::INT4, Type::BOOL]);
    assert_eq!(stmt.columns()[0].type_(), &Type::INT4);
    for _ in 0..6 {
        let rows = client.query(&stmt, &[&1i32, &true]).await.unwrap();
        let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got, vec![(1, "alpha".to_string()), (3, String::new())]);
    }

    // Parameter types inferred by the server.
    let stmt = client
        .prepare("SELECT count(*) FROM sales WHERE city = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[Type::TEXT]);
    let n: i64 = client.query_one(&stmt, &[&"Paris"]).await.unwrap().get(0);
    assert_eq!(n, 3);

    // A portal read two rows at a time: Execute with max_rows answers PortalSuspended
    // until the rows run out.
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare("SELECT product_id FROM products ORDER BY product_id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = tx.query_portal(&portal, 3).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 3);
        seen.extend(batch.iter().map(|r| r.get::<_, i32>(0)));
    }
    assert_eq!(seen, (1..=10).collect::<Vec<i32>>());
    tx.commit().await.unwrap();

    // A statement error in the extended protocol leaves the session usable.
    let err = client
        .query("SELECT * FROM missing_table", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
    let one: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);

    // Cancellation: a long statement is stopped by a CancelRequest with SQLSTATE 57014,
    // sent once the statement is streaming.
    let cancel = client.cancel_token();
    let before = metric(server.http_port, "weir_queries_total");
    let long = tokio::spawn(async move {
        client
            .simple_query("SELECT count(*) FROM generate_series(1, 2000000000) a")
            .await
            .map(|m| m.len())
    });
    wait_for_statements(server.http_port, before).await;
    cancel.cancel_query(NoTls).await.unwrap();
    let err = long.await.unwrap().expect_err("cancelled query must fail");
    assert_eq!(err.code().unwrap().code(), "57014", "{err}");

    // Comment-only queries are empty queries, not errors.
    let fresh = connect(&server).await;
    let msgs = fresh.simple_query("-- ping").await.unwrap();
    assert!(
        msgs.iter()
            .all(|m| !matches!(m, SimpleQueryMessage::Row(_)))
    );

    // What happened shows in /metrics.
    let (status, metrics) = http_get(server.http_port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("weir_query_errors_total{sqlstate=\"42P01\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_query_duration_seconds_bucket"),
        "{metrics}"
    );
    assert_eq!(
        http_get(server.http_port, "/healthz").unwrap(),
        (200, "ok\n".to_string())
    );
    drop(fresh);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_statements_finish_and_closes_idle_connections() {
    // A grace period far longer than the test: exiting promptly proves idle connections
    // do not hold shutdown up, and the statement below proves running ones finish.
    let server = Server::start_with("tests/fixtures/sql", &["--shutdown-grace-secs", "600"]);
    let idle = connect(&server).await;
    let busy = connect(&server).await;
    let before = metric(server.http_port, "weir_queries_total");
    let running = tokio::spawn(async move {
        busy.simple_query("SELECT count(*) FROM generate_series(1, 200000000) a")
            .await
    });
    wait_for_statements(server.http_port, before).await;
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let messages = running
        .await
        .unwrap()
        .expect("the running statement completes");
    assert_eq!(first_value(&messages).as_deref(), Some("200000000"));
    // The idle connection was closed by the server.
    assert!(idle.simple_query("SELECT 1").await.is_err());
}
