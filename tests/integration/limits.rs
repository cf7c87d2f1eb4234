//! Limits on clients: the connection limit (53300 past it), the statement timeout (57014,
//! from the server's default or the session's `SET`), the idle-session timeout, the
//! memory pool of ad-hoc queries (53200 for the query that exceeds it, nothing else), and
//! 200 clients at once reading views while events arrive.

use std::time::Duration;

use crate::harness::{Server, connect, first_value};

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| format!("{} {}", d.code().code(), d.message()))
        .unwrap_or_else(|| e.to_string())
}

/// A statement that runs for seconds in a debug build, without rows until the end.
const LONG: &str = "SELECT count(*) FROM generate_series(1, 2000000000) a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused_with_53300() {
    let server = Server::start_with("tests/fixtures/sql", &["--max-connections", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect(&server).await);
    }
    let refused = server
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("a fourth connection is refused");
    assert_eq!(code(&refused), "53300 sorry, too many clients already");
    // The open ones still work; closing one lets a new client in.
    let messages = open[0].simple_query("SELECT 41 + 1").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("42"));
    drop(open.pop());
    let mut admitted = None;
    for _ in 0..100 {
        if let Ok((client, conn)) = server.pg_config().connect(tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            admitted = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let admitted = admitted.expect("a slot frees once a connection closes");
    let messages = admitted.simple_query("SELECT 1").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_the_timeout_end_with_57014_and_the_session_goes_on() {
    let server = Server::start_with("tests/fixtures/sql", &["--statement-timeout-ms", "300"]);
    let client = connect(&server).await;
    let messages = client.simple_query("SHOW statement_timeout").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("300ms"));
    let err = client.simple_query(LONG).await.unwrap_err();
    assert_eq!(
        code(&err),
        "57014 canceling statement due to statement timeout"
    );
    // The extended protocol too.
    let err = client.query(LONG, &[]).await.unwrap_err();
    assert_eq!(
        code(&err),
        "57014 canceling statement due to statement timeout"
    );
    let messages = client.simple_query("SELECT 2").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("2"));
    // The session's own setting wins over the server's default.
    client
        .simple_query("SET statement_timeout = '20s'")
        .await
        .unwrap();
    let messages = client
        .simple_query("SELECT count(*) FROM generate_series(1, 20000000) a")
        .await
        .unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("20000000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_close_and_busy_ones_stay() {
    let server = Server::start_with("tests/fixtures/sql", &["--idle-session-timeout-secs", "1"]);
    let idle = connect(&server).await;
    let busy = connect(&server).await;
    // `busy` runs a statement every 200 ms for 2.5 s; `idle` does nothing meanwhile.
    for _ in 0..12 {
        busy.simple_query("SELECT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(idle.simple_query("SELECT 1").await.is_err());
    assert!(idle.is_closed());
    let messages = busy.simple_query("SELECT 3").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_the_memory_limit_fails_alone() {
    let server = Server::start_with("tests/fixtures/sql", &["--query-memory-mb", "16"]);
    let client = connect(&server).await;
    let other = connect(&server).await;
    // A hash join whose build side (3 M rows) cannot fit in 16 MiB and cannot spill.
    let err = client
        .simple_query(
            "SELECT count(*) FROM generate_series(1, 3000000) a(x) \
             JOIN generate_series(1, 3000000) b(y) ON a.x = b.y",
        )
        .await
        .unwrap_err();
    let message = code(&err);
    assert!(message.starts_with("53200 "), "{message}");
    assert!(message.contains("Failed to allocate"), "{message}");
    // Both sessions go on, and a query within the limit runs.
    for c in [&client, &other] {
        let messages = c
            .simple_query("SELECT count(*) FROM generate_series(1, 1000) a(x) JOIN generate_series(1, 1000) b(y) ON a.x = b.y")
            .await
            .unwrap();
        assert_eq!(first_value(&messages).as_deref(), Some("1000"));
    }
}

/// 200 clients at once, each reading views five times while a source feeds them: every
/// query answers, and each client sees the count only grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_read_views_while_events_arrive() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("views.sql"),
        "CREATE SOURCE pv (WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (
           connector = 'datagen', profile = 'page_views', seed = '5', rate = '20000');
         CREATE MATERIALIZED VIEW per_category AS
         SELECT category, count(*) AS n FROM pv GROUP BY category;
         CREATE MATERIALIZED VIEW per_second AS
         SELECT window_start, count(*) AS n
         FROM TUMBLE(pv, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end;",
    )
    .unwrap();
    let server = Server::start_with(dir.path().to_str().unwrap(), &["--max-connections", "250"]);
    let admin = connect(&server).await;
    let rows_in = |messages: Vec<tokio_postgres::SimpleQueryMessage>| -> i64 {
        first_value(&messages).unwrap().parse().unwrap()
    };
    let read = "SELECT rows_in FROM weir_catalog.materialized_views WHERE name = 'per_category'";
    let before = rows_in(admin.simple_query(read).await.unwrap());
    let mut clients = Vec::new();
    for i in 0..200 {
        let config = server.pg_config();
        clients.push(tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let mut last = 0i64;
            for round in 0..5 {
                let sql = if (i + round) % 2 == 0 {
                    "SELECT coalesce(sum(n), 0) FROM per_category"
                } else {
                    "SELECT coalesce(sum(n), 0) FROM per_second"
                };
                let n: i64 = first_value(&client.simple_query(sql).await?)
                    .unwrap()
                    .parse()
                    .unwrap();
                if sql.contains("per_category") {
                    assert!(n >= last, "the count went back: {last} then {n}");
                    last = n;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, tokio_postgres::Error>(last)
        }));
    }
    let mut seen = Vec::new();
    for c in clients {
        seen.push(c.await.unwrap().unwrap());
    }
    let after = rows_in(admin.simple_query(read).await.unwrap());
    assert!(after > before, "ingestion went on: {before} then {after}");
    // Every client read rows, and none more than the view had read when they were done.
    assert_eq!(seen.len(), 200);
    assert!(
        seen.iter().all(|&n| n > 0 && n <= after),
        "counts outside 1..={after}: {:?}",
        seen.iter()
            .filter(|&&n| n == 0 || n > after)
            .collect::<Vec<_>>()
    );
    let messages = admin
        .simple_query(
            "SELECT status FROM weir_catalog.materialized_views WHERE status <> 'running'",
        )
        .await
        .unwrap();
    assert_eq!(first_value(&messages), None);
}

/// FLUSH over a Kafka source whose broker is gone waits for rows that cannot come: the
/// session's statement_timeout stops it with 57014 (not the flush's own 15 s), and the
/// server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_over_a_stalled_source_ends_at_the_statement_timeout() {
    let mut broker = crate::harness::Broker::start();
    broker.create_topic("stalled", 1).await;
    broker
        .produce("stalled", 0, &[r#"{"id": 1, "ts": "2026-01-01 00:00:00"}"#])
        .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.sql"),
        format!(
            "CREATE SOURCE s (id BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (connector = 'kafka', topic = 'stalled', 'properties.bootstrap.servers' = '{}');
             CREATE MATERIALIZED VIEW n AS SELECT count(*) AS n FROM s;",
            broker.addr()
        ),
    )
    .unwrap();
    let mut server = Server::start_with(dir.path().to_str().unwrap(), &[]);
    let client = connect(&server).await;
    client.simple_query("FLUSH").await.unwrap();
    let messages = client.simple_query("SELECT n FROM n").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("1"));
    broker.kill();
    client
        .simple_query("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let err = client.simple_query("FLUSH").await.unwrap_err();
    assert_eq!(
        code(&err),
        "57014 canceling statement due to statement timeout"
    );
    // The extended protocol too, and the server's default.
    let err = client.execute("FLUSH", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"));
    let messages = client.simple_query("SELECT n FROM n").await.unwrap();
    assert_eq!(first_value(&messages).as_deref(), Some("1"));
    assert!(server.alive());
}
