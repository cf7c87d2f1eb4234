//! The durable catalog against a real `weir serve`: sources, materialized views, sinks,
//! tables and views created over the PostgreSQL port come back after a restart on the
//! same data directory, with the rows of tables; `DROP` removes them for good; a `.sql`
//! file's definition wins over one made over the port.

use std::path::Path;

use crate::harness::{Server, connect, first_value, rows};

async fn run(client: &tokio_postgres::Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn flight_client(
    server: &Server,
) -> arrow_flight::sql::client::FlightSqlServiceClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", server.flight_port))
            .unwrap()
            .connect()
            .await
            .unwrap();
    arrow_flight::sql::client::FlightSqlServiceClient::new(channel)
}

/// The names of the objects the catalog file keeps.
fn kept_names(catalog: &Path) -> Vec<String> {
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(catalog).unwrap()).unwrap();
    kept["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

fn start(sql: &Path, data: &Path) -> Server {
    Server::start_on(sql, data, &["--checkpoint-interval-ms", "0"])
}

const CITIES: &str = "SELECT city, n FROM wire_cities ORDER BY city";
const ORACLE: &str =
    "SELECT city, count(*) AS n FROM datagen('orders', 300, 7) GROUP BY city ORDER BY city";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_created_over_the_port_survive_a_restart_and_drops_are_for_good() {
    let sql = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let archive = tempfile::tempdir().unwrap();
    std::fs::write(
        sql.path().join("base.sql"),
        "CREATE SOURCE file_orders (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (
           connector = 'datagen', profile = 'orders', seed = '3', rate = 'unlimited', count = '100',
           start = '2026-01-01 00:00:00');
         CREATE TABLE shadowed AS VALUES ('from the file');",
    )
    .unwrap();
    let products = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/data/products/");

    let server = start(sql.path(), data.path());
    let c = connect(&server).await;
    run(
        &c,
        "CREATE SOURCE wire_orders (WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (
           connector = 'datagen', profile = 'orders', seed = '7', rate = 'unlimited', count = '300',
           start = '2026-01-01 00:00:00')",
    )
    .await;
    run(&c, "CREATE MATERIALIZED VIEW wire_cities AS SELECT city, count(*) AS n FROM wire_orders GROUP BY city").await;
    run(
        &c,
        "CREATE MATERIALIZED VIEW wire_on_file AS SELECT count(*) AS n FROM file_orders",
    )
    .await;
    run(
        &c,
        "CREATE MATERIALIZED VIEW wire_gone AS SELECT count(*) AS n FROM wire_orders",
    )
    .await;
    run(&c, "CREATE TABLE wire_t (id INT, name VARCHAR)").await;
    run(&c, "INSERT INTO wire_t VALUES (1, 'a'), (2, 'b')").await;
    // The extended protocol writes too.
    c.execute("INSERT INTO wire_t VALUES ($1, $2)", &[&3i32, &"c"])
        .await
        .unwrap();
    run(
        &c,
        "CREATE TABLE wire_ctas AS SELECT id * 10 AS id FROM wire_t",
    )
    .await;
    run(
        &c,
        "CREATE VIEW wire_v AS SELECT id FROM wire_t WHERE id > 1",
    )
    .await;
    run(
        &c,
        "CREATE VIEW wire_v2 AS SELECT count(*) AS n FROM wire_ctas",
    )
    .await;
    run(
        &c,
        &format!(
            "CREATE EXTERNAL TABLE wire_ext STORED AS PARQUET LOCATION '{}'",
            products.display()
        ),
    )
    .await;
    run(
        &c,
        &format!(
            "CREATE SINK wire_sink FROM wire_orders WITH (connector = 'parquet', path = '{}')",
            archive.path().display()
        ),
    )
    .await;
    // IF NOT EXISTS over an object of the file keeps the file's; a view over the port
    // named like one a file defines later is replaced by the file's at the next start.
    run(
        &c,
        "CREATE SOURCE IF NOT EXISTS file_orders WITH (connector = 'datagen', profile = 'orders')",
    )
    .await;
    run(
        &c,
        "CREATE MATERIALIZED VIEW later_in_file AS SELECT count(*) AS n FROM wire_orders",
    )
    .await;
    run(&c, "DROP MATERIALIZED VIEW wire_gone").await;
    // The Flight SQL port keeps what it creates and writes the same way.
    let mut flight = flight_client(&server).await;
    flight
        .execute_update(
            "CREATE MATERIALIZED VIEW flight_total AS SELECT count(*) AS n FROM wire_orders".into(),
            None,
        )
        .await
        .unwrap();
    flight
        .execute_update("INSERT INTO wire_t VALUES (9, 'flight')".into(), None)
        .await
        .unwrap();
    run(&c, "FLUSH").await;

    let cities = rows(&c, CITIES).await;
    assert_eq!(cities, rows(&c, ORACLE).await);
    let ext = rows(&c, "SELECT count(*) FROM wire_ext").await;
    assert_ne!(ext, vec!["0".to_string()]);
    let catalog = data.path().join("catalog/objects.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&catalog).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", catalog.display());
    }
    let kept = kept_names(&catalog);
    assert!(
        !kept.contains(&"file_orders".into()),
        "a file's object was kept: {kept:?}"
    );
    assert!(
        !kept.contains(&"wire_gone".into()),
        "a dropped view was kept: {kept:?}"
    );
    assert!(server.stop().success());

    std::fs::write(
        sql.path().join("later.sql"),
        "CREATE MATERIALIZED VIEW later_in_file AS SELECT 42 AS n FROM file_orders GROUP BY 1;",
    )
    .unwrap();
    let server = start(sql.path(), data.path());
    let c = connect(&server).await;
    run(&c, "FLUSH").await;
    assert_eq!(rows(&c, CITIES).await, cities);
    assert_eq!(rows(&c, "SELECT n FROM wire_on_file").await, vec!["100"]);
    assert_eq!(
        rows(&c, "SELECT id, name FROM wire_t ORDER BY id").await,
        vec!["1|a", "2|b", "3|c", "9|flight"]
    );
    assert_eq!(rows(&c, "SELECT n FROM flight_total").await, vec!["300"]);
    assert_eq!(
        rows(&c, "SELECT id FROM wire_ctas ORDER BY id").await,
        vec!["10", "20", "30"]
    );
    assert_eq!(
        rows(&c, "SELECT id FROM wire_v ORDER BY id").await,
        vec!["2", "3", "9"]
    );
    assert_eq!(rows(&c, "SELECT count(*) FROM wire_ext").await, ext);
    assert_eq!(rows(&c, "SELECT n FROM later_in_file").await, vec!["42"]);
    assert_eq!(
        rows(&c, "SELECT name FROM weir_catalog.sinks").await,
        vec!["wire_sink"]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT name FROM weir_catalog.materialized_views ORDER BY name"
        )
        .await,
        vec![
            "flight_total",
            "later_in_file",
            "wire_cities",
            "wire_on_file"
        ]
    );
    // Rows written after the restart are kept too; then drops, some by CASCADE.
    run(&c, "INSERT INTO wire_t VALUES (4, 'd')").await;
    run(&c, "DROP SOURCE wire_orders CASCADE").await;
    run(&c, "DROP TABLE wire_ctas").await;
    assert!(server.stop().success());

    let server = start(sql.path(), data.path());
    let c = connect(&server).await;
    assert_eq!(
        rows(&c, "SELECT id FROM wire_t ORDER BY id").await,
        vec!["1", "2", "3", "4", "9"]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT name FROM weir_catalog.materialized_views ORDER BY name"
        )
        .await,
        vec!["later_in_file", "wire_on_file"]
    );
    assert!(
        rows(&c, "SELECT name FROM weir_catalog.sinks")
            .await
            .is_empty()
    );
    assert!(
        rows(
            &c,
            "SELECT name FROM weir_catalog.sources WHERE name = 'wire_orders'"
        )
        .await
        .is_empty()
    );
    // wire_v2 read the dropped table: it could not be planned, so it went.
    let err = c.simple_query("SELECT * FROM wire_v2").await.unwrap_err();
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("wire_v2"), "{message}");
    assert_eq!(
        first_value(
            &c.simple_query("SELECT shadowed.column1 FROM shadowed")
                .await
                .unwrap()
        )
        .as_deref(),
        Some("from the file")
    );
    let kept = kept_names(&catalog);
    for gone in [
        "wire_orders",
        "wire_cities",
        "flight_total",
        "wire_sink",
        "wire_ctas",
        "wire_v2",
        "later_in_file",
    ] {
        assert!(
            !kept.contains(&gone.to_string()),
            "{gone} is still kept: {kept:?}"
        );
    }
    assert!(server.stop().success());
}
