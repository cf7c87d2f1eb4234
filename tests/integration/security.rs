//! Least privilege over both ports: locations outside the allowed ones (every spelling,
//! `..`, symbolic links, other hosts and buckets) refused, the server's own files out of
//! reach, librdkafka settings that load code refused, `admin` and `reader` roles, `SET`
//! kept to its session, and no secret in any `SHOW`, catalog, manifest, error or log line.

use arrow_flight::sql::client::FlightSqlServiceClient;
use tonic::transport::Channel;

use crate::harness::{Server, first_value};

/// `SQLSTATE` of a statement's error, or `ok`.
async fn run(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => "ok".into(),
        Err(e) => match e.as_db_error() {
            Some(d) => format!("{} {}", d.code().code(), d.message()),
            None => format!("client error: {e}"),
        },
    }
}

async fn connect_as(server: &Server, user: &str, password: &str) -> tokio_postgres::Client {
    let mut config = server.pg_config();
    config.user(user).password(password);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn flight_as(server: &Server, user: &str, password: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://127.0.0.1:{}", server.flight_port))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(user, password).await.unwrap();
    client
}

fn refused(outcome: &str) -> bool {
    outcome.starts_with("42501 ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_reaches_only_the_allowed_locations() {
    let sql = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.csv"), "l\nsecret\n").unwrap();
    std::fs::write(sql.path().join("rows.csv"), "l\nfine\n").unwrap();
    // The users file lies in an allowed folder: it stays out of reach all the same.
    let users = allowed.path().join("users");
    std::fs::write(&users, "admin:admin-pw:admin\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(outside.path(), allowed.path().join("escape")).unwrap();
    let allowed_list = format!("{},s3://weir-test/shared/", allowed.path().display());
    let server = Server::start_on(
        sql.path(),
        data.path(),
        &[
            "--storage-allowed-locations",
            &allowed_list,
            "--auth-users-file",
            users.to_str().unwrap(),
            "--checkpoint-interval-ms",
            "0",
        ],
    );
    let client = connect_as(&server, "admin", "admin-pw").await;
    assert_eq!(run(&client, "CHECKPOINT").await, "ok");
    let o = outside.path().display();
    let d = data.path().display();
    let a = allowed.path().display();
    let cwd_relative = format!(
        "{}{}/secret.csv",
        "../".repeat(std::env::current_dir().unwrap().components().count()),
        outside.path().strip_prefix("/").unwrap().display()
    );
    for location in [
        "/etc/passwd".to_string(),
        "file:///etc/passwd".into(),
        "file://localhost/etc/passwd".into(),
        "FILE:///etc/passwd".into(),
        "file:/etc/passwd".into(),
        "file://evil/etc/passwd".into(),
        format!("{o}/secret.csv"),
        cwd_relative,
        format!(
            "{a}/../{}/secret.csv",
            outside.path().file_name().unwrap().to_str().unwrap()
        ),
        format!("file://{a}/%2e%2e/x.csv"),
        format!("{a}/escape/secret.csv"),
        format!("{a}/"),
        users.display().to_string(),
        format!("{d}/checkpoints/MANIFEST.json"),
        format!("{d}/catalog/objects.json"),
        format!("{d}/"),
        "hdfs://evil:8020/x/".into(),
        "s3://other-bucket/x/".into(),
        "s3://weir-test/private/x/".into(),
    ] {
        let create = format!(
            "CREATE EXTERNAL TABLE t (l VARCHAR) STORED AS CSV LOCATION '{location}' OPTIONS ('format.has_header' 'true')"
        );
        let outcome = run(&client, &create).await;
        assert!(refused(&outcome), "{location}: {outcome}");
        assert!(
            outcome.contains("storage.allowed_locations"),
            "{location}: {outcome}"
        );
    }
    // Writing: COPY and Parquet sinks over the manifest or outside are refused too.
    for target in [
        format!("{d}/checkpoints/MANIFEST.json"),
        format!("{o}/out.parquet"),
        "/tmp/../etc/weir.parquet".into(),
    ] {
        let outcome = run(&client, &format!("COPY (SELECT 1 AS a) TO '{target}'")).await;
        assert!(refused(&outcome), "{target}: {outcome}");
    }
    assert_eq!(
        run(
            &client,
            "CREATE SOURCE orders WITH (connector = 'datagen', profile = 'orders', rate = '10')"
        )
        .await,
        "ok"
    );
    for path in [format!("{d}/checkpoints/"), format!("{o}/sink/")] {
        let outcome = run(
            &client,
            &format!("CREATE SINK s FROM orders WITH (connector = 'parquet', path = '{path}')"),
        )
        .await;
        assert!(refused(&outcome), "{path}: {outcome}");
    }
    // librdkafka settings that load code or read a file outside are refused.
    for (key, value) in [
        ("plugin.library.paths", "/tmp/evil.so"),
        ("ssl.engine.location", "/tmp/evil.so"),
        ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
        ("ssl.ca.location", "/etc/shadow"),
    ] {
        let outcome = run(
            &client,
            &format!(
                "CREATE SOURCE k (a BIGINT) WITH (connector = 'kafka', topic = 't', \
                 'properties.bootstrap.servers' = '127.0.0.1:9', 'properties.{key}' = '{value}', format = 'json')"
            ),
        )
        .await;
        assert!(refused(&outcome), "{key}: {outcome}");
    }
    // What is allowed works: the .sql folder, data_dir/files and the listed folder.
    let rows = client
        .simple_query(&format!(
            "CREATE EXTERNAL TABLE in_sql (l VARCHAR) STORED AS CSV LOCATION '{}/rows.csv' \
             OPTIONS ('format.has_header' 'true')",
            sql.path().display()
        ))
        .await;
    assert!(rows.is_ok(), "{rows:?}");
    let rows = client.simple_query("SELECT l FROM in_sql").await.unwrap();
    assert_eq!(first_value(&rows).as_deref(), Some("fine"));
    for (name, location) in [
        ("copied", format!("{a}/copy/")),
        ("own", format!("{d}/files/own/")),
    ] {
        assert_eq!(
            run(
                &client,
                &format!("COPY (SELECT 'fine' AS l) TO '{location}' STORED AS PARQUET")
            )
            .await,
            "ok",
            "{location}"
        );
        assert_eq!(
            run(
                &client,
                &format!("CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{location}'")
            )
            .await,
            "ok",
            "{location}"
        );
        let rows = client
            .simple_query(&format!("SELECT l FROM {name}"))
            .await
            .unwrap();
        assert_eq!(first_value(&rows).as_deref(), Some("fine"), "{location}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_read_and_admins_change_on_both_ports() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        "root:root-pw:admin\nviewer:viewer-pw:reader\nold:old-pw\n",
    )
    .unwrap();
    let server = Server::start_with(
        "tests/fixtures/sql",
        &["--auth-users-file", users.to_str().unwrap()],
    );
    let admin = connect_as(&server, "root", "root-pw").await;
    let reader = connect_as(&server, "viewer", "viewer-pw").await;
    // A users file line without a role keeps the admin's rights.
    let old = connect_as(&server, "old", "old-pw").await;
    assert_eq!(run(&old, "CREATE TABLE kept (a INT)").await, "ok");
    for sql in [
        "CREATE TABLE t (a INT)",
        "CREATE SOURCE s WITH (connector = 'datagen', profile = 'orders')",
        "CREATE MATERIALIZED VIEW m AS SELECT 1 AS a",
        "CREATE VIEW v AS SELECT 1 AS a",
        "INSERT INTO kept VALUES (1)",
        "DELETE FROM kept",
        "DROP TABLE kept",
        "COPY (SELECT 1 AS a) TO '/tmp/weir-reader.parquet'",
        "FLUSH",
        "CHECKPOINT",
    ] {
        let outcome = run(&reader, sql).await;
        assert!(refused(&outcome), "{sql}: {outcome}");
    }
    // The extended protocol is held to the same rule.
    let e = reader
        .execute("INSERT INTO kept VALUES ($1)", &[&1i32])
        .await
        .unwrap_err();
    assert_eq!(e.as_db_error().unwrap().code().code(), "42501");
    for sql in [
        "SELECT count(*) FROM kept",
        "SHOW TABLES",
        "SHOW MATERIALIZED VIEWS",
        "SELECT * FROM pg_catalog.pg_class LIMIT 1",
        "SET application_name = 'dash'",
        "BEGIN",
        "COMMIT",
    ] {
        assert_eq!(run(&reader, sql).await, "ok", "{sql}");
    }
    let n = reader
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(n.get::<_, i64>(0), 0);
    assert_eq!(run(&admin, "INSERT INTO kept VALUES (1)").await, "ok");

    // Flight SQL: the same users, the same rule.
    let mut flight_reader = flight_as(&server, "viewer", "viewer-pw").await;
    let e = flight_reader
        .execute_update("INSERT INTO kept VALUES (2)".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("42501"), "{e}");
    let e = flight_reader
        .prepare("DROP TABLE kept".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("42501"), "{e}");
    let info = flight_reader
        .execute("SELECT count(*) FROM kept".into(), None)
        .await
        .unwrap();
    assert_eq!(info.endpoint.len(), 1);
    let mut flight_admin = flight_as(&server, "root", "root-pw").await;
    let n = flight_admin
        .execute_update("INSERT INTO kept VALUES (3)".into(), None)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_stays_in_its_session_and_server_settings_are_refused() {
    let server = Server::start("tests/fixtures/sql");
    let a = crate::harness::connect(&server).await;
    let b = crate::harness::connect(&server).await;
    for sql in [
        "SET datafusion.runtime.memory_limit = '1M'",
        "SET datafusion.runtime.temp_directory = '/tmp/elsewhere'",
        "SET datafusion.execution.batch_size = 1",
        "SET ROLE postgres",
    ] {
        let outcome = run(&a, sql).await;
        assert!(refused(&outcome), "{sql}: {outcome}");
    }
    assert_eq!(run(&a, "SET TIME ZONE 'Europe/Paris'").await, "ok");
    assert_eq!(run(&a, "SET timezone = 'Asia/Tokyo'").await, "ok");
    let zone = |rows: Vec<tokio_postgres::SimpleQueryMessage>| first_value(&rows).unwrap();
    assert_eq!(
        zone(a.simple_query("SHOW TIME ZONE").await.unwrap()),
        "Asia/Tokyo"
    );
    assert_eq!(zone(b.simple_query("SHOW TIME ZONE").await.unwrap()), "UTC");
    // The context every session shares keeps its zone.
    let rows = b.simple_query("SELECT arrow_typeof(now())").await.unwrap();
    let typed = first_value(&rows).unwrap();
    assert!(
        !typed.contains("Tokyo") && !typed.contains("Paris"),
        "{typed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_shown() {
    let sql = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_on(
        sql.path(),
        data.path(),
        &["--checkpoint-interval-ms", "0", "--log", "info"],
    );
    let client = crate::harness::connect(&server).await;
    assert_eq!(
        run(
            &client,
            "CREATE SOURCE orders WITH (connector = 'datagen', profile = 'orders', rate = '10')"
        )
        .await,
        "ok"
    );
    // A sink whose database cannot be reached: its errors name the URL.
    let outcome = run(
        &client,
        "CREATE SINK pg FROM orders WITH (connector = 'postgres', \
         url = 'postgres://weir:hunter2@127.0.0.1:9/shop', table = 'orders', \
         'retry.max_elapsed' = '1s')",
    )
    .await;
    assert!(!outcome.contains("hunter2"), "{outcome}");
    let outcome = run(
        &client,
        "CREATE SOURCE k (a BIGINT) WITH (connector = 'kafka', topic = 't', format = 'json', \
         'properties.bootstrap.servers' = '127.0.0.1:9', 'properties.sasl.password' = 'hunter3')",
    )
    .await;
    assert!(!outcome.contains("hunter3"), "{outcome}");
    run(&client, "CHECKPOINT").await;
    let mut shown = String::new();
    for query in [
        "SHOW SINKS",
        "SHOW SOURCES",
        "SHOW MATERIALIZED VIEWS",
        "SELECT * FROM weir_catalog.sinks",
        "SELECT * FROM weir_catalog.sources",
        "SELECT * FROM pg_catalog.pg_matviews",
        "SELECT * FROM pg_catalog.pg_views",
    ] {
        for m in client.simple_query(query).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                for i in 0..r.len() {
                    shown.push_str(r.get(i).unwrap_or(""));
                    shown.push('\n');
                }
            }
        }
    }
    if outcome == "ok" {
        assert!(
            shown.contains("postgres://weir:***@127.0.0.1:9/shop"),
            "{shown}"
        );
    }
    let manifest = data.path().join("checkpoints/MANIFEST.json");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    #[cfg(unix)]
    if manifest.exists() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&manifest).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "manifest mode {mode:o}");
    }
    drop(client);
    let log = server.output();
    for (what, text) in [("SHOW", &shown), ("manifest", &text), ("log", &log)] {
        assert!(!text.contains("hunter2"), "{what}: {text}");
        assert!(!text.contains("hunter3"), "{what}: {text}");
    }
}
