//! `weir bench serve`: reading a large result out of Weir over Arrow Flight SQL and over
//! the PostgreSQL port (binary rows on the extended protocol, text rows on the simple
//! one), in one run: a Parquet table of `rows` rows and a materialized view of `view_rows`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bench::drive::sql;
use crate::bench::measure::thousands;
use crate::config::SessionLimits;
use crate::engine::Engine;
use crate::error::{Result, WeirError};
use crate::server::flight::{self, FlightSql};
use crate::server::metrics::Metrics;
use crate::server::pgwire::{Handlers, Security, serve};

/// One read of a whole result: rows, bytes the server sent, seconds.
struct Read {
    rows: u64,
    bytes: u64,
    seconds: f64,
}

impl Read {
    fn line(&self, what: &str, protocol: &str) -> String {
        format!(
            "{what:<28} {protocol:<26} {:>12} rows {:>9.1} MB {:>8.2} s {:>12} rows/s {:>8.1} MB/s",
            thousands(self.rows),
            self.bytes as f64 / 1e6,
            self.seconds,
            thousands((self.rows as f64 / self.seconds) as u64),
            self.bytes as f64 / 1e6 / self.seconds
        )
    }
}

/// A TCP relay in front of `target` that counts the bytes the server sends.
async fn counting_relay(target: SocketAddr, sent: Arc<AtomicU64>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                up.abort();
            });
        }
    });
    Ok(addr)
}

async fn flight_read(addr: SocketAddr, sent: &AtomicU64, query: &str) -> Result<Read> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| WeirError::Internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| WeirError::Internal(format!("connecting to Flight SQL: {e}")))?;
    let mut client = FlightSqlServiceClient::new(channel);
    let flight = |e: arrow_flight::error::FlightError| WeirError::Internal(e.to_string());
    let before = sent.load(Ordering::Relaxed);
    let start = Instant::now();
    let info = client
        .execute(query.to_string(), None)
        .await
        .map_err(flight)?;
    let mut rows = 0u64;
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| WeirError::Internal("an endpoint without a ticket".into()))?;
        let mut batches = client.do_get(ticket).await.map_err(flight)?;
        while let Some(batch) = batches.try_next().await.map_err(flight)? {
            rows += batch.num_rows() as u64;
        }
    }
    Ok(Read {
        rows,
        seconds: start.elapsed().as_secs_f64(),
        bytes: sent.load(Ordering::Relaxed) - before,
    })
}

async fn pg_connect(addr: SocketAddr) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user=bench dbname=weir",
            addr.ip(),
            addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .map_err(|e| WeirError::Internal(format!("connecting to the PostgreSQL port: {e}")))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Binary rows over the extended protocol, each column read as raw bytes.
async fn pg_binary_read(addr: SocketAddr, sent: &AtomicU64, query: &str) -> Result<Read> {
    let client = pg_connect(addr).await?;
    let pg = |e: tokio_postgres::Error| WeirError::Internal(e.to_string());
    let before = sent.load(Ordering::Relaxed);
    let start = Instant::now();
    let stream = client
        .query_raw(query, std::iter::empty::<&str>())
        .await
        .map_err(pg)?;
    futures::pin_mut!(stream);
    let mut rows = 0u64;
    while let Some(row) = stream.next().await {
        let row = row.map_err(pg)?;
        for i in 0..row.len() {
            let _ = row.try_get::<_, Raw>(i);
        }
        rows += 1;
    }
    Ok(Read {
        rows,
        seconds: start.elapsed().as_secs_f64(),
        bytes: sent.load(Ordering::Relaxed) - before,
    })
}

/// Text rows over the simple protocol (what psql and psycopg2 read).
async fn pg_text_read(addr: SocketAddr, sent: &AtomicU64, query: &str) -> Result<Read> {
    let client = pg_connect(addr).await?;
    let before = sent.load(Ordering::Relaxed);
    let start = Instant::now();
    let stream = client
        .simple_query_raw(query)
        .await
        .map_err(|e| WeirError::Internal(e.to_string()))?;
    futures::pin_mut!(stream);
    let mut rows = 0u64;
    while let Some(message) = stream.next().await {
        if let tokio_postgres::SimpleQueryMessage::Row(row) =
            message.map_err(|e| WeirError::Internal(e.to_string()))?
        {
            for i in 0..row.len() {
                let _ = row.get(i);
            }
            rows += 1;
        }
    }
    Ok(Read {
        rows,
        seconds: start.elapsed().as_secs_f64(),
        bytes: sent.load(Ordering::Relaxed) - before,
    })
}

/// A column's bytes as sent, whatever its type.
struct Raw;

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        _: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw)
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Run the benchmark.
pub async fn run(rows: u64, view_rows: u64) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("weir-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, rows, view_rows).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(dir: &std::path::Path, rows: u64, view_rows: u64) -> Result<()> {
    let engine = Arc::new(Engine::new().await?);
    let parquet = dir.join("orders.parquet");
    let t = Instant::now();
    sql(
        &engine,
        &format!(
            "COPY (SELECT value AS id, value % 100000 AS user_id, concat('city_', value % 50) AS city, \
             CAST(value AS DOUBLE) * 0.01 AS amount, \
             to_timestamp_micros(1767225600000000 + value * 1000) AS ts \
             FROM generate_series(1, {rows})) TO '{}' STORED AS PARQUET",
            parquet.display()
        ),
    )
    .await?;
    sql(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION '{}'",
            parquet.display()
        ),
    )
    .await?;
    let size = std::fs::metadata(&parquet)?.len();
    println!(
        "table orders: {} rows (id, user_id, city, amount, ts), {:.1} MB of Parquet, written in {:.1} s",
        thousands(rows),
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    sql(
        &engine,
        &format!(
            "CREATE SOURCE events WITH (connector = 'datagen', profile = 'orders', seed = '1', \
             rate = 'unlimited', count = '{view_rows}')"
        ),
    )
    .await?;
    sql(
        &engine,
        "CREATE MATERIALIZED VIEW recent_orders AS SELECT * FROM events",
    )
    .await?;
    sql(&engine, "FLUSH").await?;
    println!(
        "materialized view recent_orders: {} rows of the datagen 'orders' profile, filled in {:.1} s",
        thousands(view_rows),
        t.elapsed().as_secs_f64()
    );

    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let pg_listener = TcpListener::bind("127.0.0.1:0").await?;
    let pg_addr = pg_listener.local_addr()?;
    let handlers = Arc::new(Handlers::new(
        engine.clone(),
        metrics.clone(),
        shutdown.clone(),
        SessionLimits::default(),
        Security::default(),
        Default::default(),
    ));
    tokio::spawn(serve(
        pg_listener,
        handlers,
        metrics.clone(),
        shutdown.clone(),
        TaskTracker::new(),
    ));
    let flight_listener = TcpListener::bind("127.0.0.1:0").await?;
    let flight_addr = flight_listener.local_addr()?;
    let flight_server = tokio::spawn(flight::serve(
        flight_listener,
        FlightSql::new(engine.clone(), metrics.clone(), None),
        shutdown.clone(),
        None,
    ));
    let sent = Arc::new(AtomicU64::new(0));
    let pg_relay = counting_relay(pg_addr, Arc::clone(&sent)).await?;
    let flight_relay = counting_relay(flight_addr, Arc::clone(&sent)).await?;

    println!("each result read once, whole, by one client; bytes are what the server sent");
    let mut results = Vec::new();
    for (what, query) in [
        ("SELECT * FROM orders", "SELECT * FROM orders"),
        ("SELECT * FROM recent_orders", "SELECT * FROM recent_orders"),
    ] {
        let flight = flight_read(flight_relay, &sent, query).await?;
        println!("{}", flight.line(what, "Arrow Flight SQL"));
        let binary = pg_binary_read(pg_relay, &sent, query).await?;
        println!("{}", binary.line(what, "PostgreSQL binary rows"));
        let text = pg_text_read(pg_relay, &sent, query).await?;
        println!("{}", text.line(what, "PostgreSQL text rows"));
        results.push((what, flight, binary, text));
    }
    for (what, flight, binary, text) in &results {
        println!(
            "RESULT {what}: Flight SQL {} rows/s, {:.1}x the PostgreSQL port's binary rows and {:.1}x its text rows",
            thousands((flight.rows as f64 / flight.seconds) as u64),
            binary.seconds / flight.seconds,
            text.seconds / flight.seconds
        );
    }
    shutdown.cancel();
    let _ = flight_server.await;
    Ok(())
}
