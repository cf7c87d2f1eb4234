//! Crash and restore against a real `weir serve` reading a real Kafka-protocol broker:
//! the server is killed with SIGKILL while it reads, started again on the same data
//! directory, and at the end every view must equal a batch recomputation over every
//! record produced — none lost, none counted twice.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::harness::{Broker, Server, first_value};

const PARTITIONS: i32 = 3;
const CATEGORIES: [&str; 8] = [
    "books", "games", "garden", "music", "shoes", "sports", "tools", "toys",
];

/// Record `i` of the stream drawn from `rng`: the i-th millisecond after the base time,
/// so that times grow within every partition and no row is ever late.
fn record(i: u64, rng: &mut ChaCha8Rng) -> String {
    let user = rng.random_range(0..5_000u32);
    let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
    let amount = rng.random_range(1..10_000u32);
    let ms = i % 1000;
    let s = i / 1000;
    format!(
        "{{\"id\":{i},\"user_id\":{user},\"category\":\"{category}\",\"amount\":{amount},\
         \"ts\":\"2026-01-01 {:02}:{:02}:{:02}.{ms:03}\"}}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// The `.sql` folder of the tests: a source on `topic`, one view of each kind, and a sink
/// archiving the records as Parquet by category into `archive/` beside the folder. The
/// source starts at the end of the topic, so a view that did not resume from its
/// checkpoint would miss every record produced before its restart.
fn write_sql(dir: &Path, broker: &str, topic: &str) {
    let source = format!(
        "CREATE SOURCE events (id BIGINT, user_id BIGINT, category VARCHAR, amount BIGINT, \
         ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)\n\
         WITH (connector = 'kafka', topic = '{topic}', 'properties.bootstrap.servers' = '{broker}',\n\
         'scan.startup.mode' = 'latest', format = 'json', 'watermark.idle_timeout' = '1h');\n"
    );
    std::fs::write(dir.join("00_source.sql"), source).unwrap();
    std::fs::write(
        dir.join("10_views.sql"),
        "CREATE MATERIALIZED VIEW per_minute AS\n\
         SELECT window_start, window_end, category, count(*) AS n, sum(amount) AS total\n\
         FROM TUMBLE(events, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, category;\n\
         \n\
         CREATE MATERIALIZED VIEW sliding AS\n\
         SELECT window_start, count(*) AS n, sum(amount) AS total, max(amount) AS biggest\n\
         FROM HOP(events, ts, INTERVAL '30' SECOND, INTERVAL '2' MINUTE)\n\
         GROUP BY window_start, window_end;\n\
         \n\
         CREATE MATERIALIZED VIEW per_category AS\n\
         SELECT category, count(*) AS n, sum(amount) AS total, count(DISTINCT user_id) AS users,\n\
         min(ts) AS first, max(ts) AS last FROM events GROUP BY category;\n\
         \n\
         CREATE MATERIALIZED VIEW big_orders AS\n\
         SELECT id, user_id, amount FROM events WHERE amount > 9900;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("20_sinks.sql"),
        format!(
            "CREATE SINK archive FROM events WITH (connector = 'parquet', path = '{}', \
             'partition.by' = 'category', 'rollover.size' = '256KB');\n",
            archive(dir).display()
        ),
    )
    .unwrap();
}

/// Where the sink of the `.sql` folder `sql` writes.
fn archive(sql: &Path) -> std::path::PathBuf {
    sql.parent().unwrap().join("archive")
}

/// Each view and the batch query over `events_file` it must equal.
const CHECKS: [(&str, &str); 4] = [
    (
        "SELECT window_start, window_end, category, n, total FROM per_minute",
        "SELECT date_bin(INTERVAL '1 minute', ts) AS ws, \
         date_bin(INTERVAL '1 minute', ts) + INTERVAL '1 minute', category, count(*), sum(amount) \
         FROM events_file GROUP BY 1, 2, 3",
    ),
    (
        "SELECT window_start, n, total, biggest FROM sliding",
        "SELECT date_bin(INTERVAL '30 seconds', ts) - k AS ws, count(*), sum(amount), max(amount) \
         FROM events_file CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '30 seconds'), \
         (INTERVAL '60 seconds'), (INTERVAL '90 seconds')) AS shifts(k) GROUP BY 1",
    ),
    (
        "SELECT category, n, total, users, first, last FROM per_category",
        "SELECT category, count(*), sum(amount), count(DISTINCT user_id), min(ts), max(ts) \
         FROM events_file GROUP BY category",
    ),
    (
        "SELECT id, user_id, amount FROM big_orders",
        "SELECT id, user_id, amount FROM events_file WHERE amount > 9900",
    ),
];

async fn value(client: &tokio_postgres::Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    first_value(&rows).unwrap_or_default()
}

async fn connect(server: &Server) -> tokio_postgres::Client {
    crate::harness::connect(server).await
}

/// Every view equals its batch query over the records in `events_file`, both ways, and
/// the Parquet files of the sink hold each record once.
async fn check_views(client: &tokio_postgres::Client, file: &Path, expected_rows: u64) {
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS events_file (id BIGINT, user_id BIGINT, \
             category VARCHAR, amount BIGINT, ts TIMESTAMP) STORED AS JSON LOCATION '{}'",
            file.display()
        ))
        .await
        .unwrap();
    assert_eq!(
        value(client, "SELECT count(*) FROM events_file").await,
        expected_rows.to_string()
    );
    for (view, batch) in CHECKS {
        let rows = value(client, &format!("SELECT count(*) FROM ({view})")).await;
        let differ = value(
            client,
            &format!(
                "SELECT count(*) FROM (({view} EXCEPT ALL {batch}) UNION ALL \
                 ({batch} EXCEPT ALL {view}))"
            ),
        )
        .await;
        assert_eq!(
            differ, "0",
            "{view}: {rows} rows, {differ} differ from: {batch}"
        );
        assert_ne!(rows, "0", "{view} is empty");
    }
    let late = value(
        client,
        "SELECT sum(late_rows) FROM weir_catalog.materialized_views",
    )
    .await;
    assert_eq!(late, "0", "rows were dropped as late");
    let read = value(
        client,
        "SELECT min(rows_in) FROM weir_catalog.materialized_views",
    )
    .await;
    assert_eq!(
        read,
        expected_rows.to_string(),
        "records read, counted once"
    );
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS archived STORED AS PARQUET LOCATION '{}/'",
            archive(&file.parent().unwrap().join("sql")).display()
        ))
        .await
        .unwrap();
    let columns = "id, user_id, category, amount, ts";
    let differ = value(
        client,
        &format!(
            "SELECT count(*) FROM ((SELECT {columns} FROM archived EXCEPT ALL \
             SELECT {columns} FROM events_file) UNION ALL (SELECT {columns} FROM events_file \
             EXCEPT ALL SELECT {columns} FROM archived))"
        ),
    )
    .await;
    assert_eq!(differ, "0", "the sink's files differ from the records");
    let staged = walk(&archive(&file.parent().unwrap().join("sql")))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".inprogress"))
        .count();
    assert_eq!(staged, 0, "staged files left after FLUSH");
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Produce records `from..to` of the stream (record i to partition i % PARTITIONS), and
/// append them to `file`.
async fn produce(
    broker: &Broker,
    topic: &str,
    from: u64,
    to: u64,
    rng: &mut ChaCha8Rng,
    file: &Path,
) {
    let mut lines = String::new();
    let mut records = Vec::with_capacity((to - from) as usize);
    for i in from..to {
        let r = record(i, rng);
        writeln!(lines, "{r}").unwrap();
        records.push((Some((i % PARTITIONS as u64) as i32), r.into_bytes()));
    }
    weir::connector::kafka::produce(&broker.addr(), topic, records)
        .await
        .unwrap_or_else(|e| panic!("produce {from}..{to}: {e}"));
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    f.write_all(lines.as_bytes()).unwrap();
}

/// A broker with `topic`, and a folder holding the `.sql` files, the data directory and
/// the JSON copy of every record produced.
struct Setup {
    broker: Broker,
    _dir: tempfile::TempDir,
    sql: std::path::PathBuf,
    data: std::path::PathBuf,
    file: std::path::PathBuf,
}

async fn setup(topic: &str) -> Setup {
    let broker = Broker::start();
    broker.create_topic(topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    write_sql(&sql, &broker.addr(), topic);
    Setup {
        broker,
        sql,
        data: dir.path().join("data"),
        file: dir.path().join("events.json"),
        _dir: dir,
    }
}

/// Checkpoints only on `CHECKPOINT`, at start and at shutdown.
const NO_TIMER: &[&str] = &["--checkpoint-interval-ms", "0"];
/// A checkpoint every second too.
const EVERY_SECOND: &[&str] = &["--checkpoint-interval-ms", "1000"];

/// A server without the checkpoint timer that has read `records` events of `topic` and
/// checkpointed them.
async fn checkpointed(
    setup: &Setup,
    topic: &str,
    records: u64,
    rng: &mut ChaCha8Rng,
) -> (Server, tokio_postgres::Client) {
    let server = Server::start_on(&setup.sql, &setup.data, NO_TIMER);
    produce(&setup.broker, topic, 0, records, rng, &setup.file).await;
    let client = connect(&server).await;
    client.batch_execute("FLUSH").await.unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
    (server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_boundary_counts_an_event_after_the_checkpoint_once() {
    let setup = setup("boundary").await;
    let Setup {
        broker,
        sql,
        data,
        file,
        ..
    } = &setup;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut server, client) = checkpointed(&setup, "boundary", 5_000, &mut rng).await;
    // One event after the checkpoint, read and counted before the kill.
    produce(broker, "boundary", 5_000, 5_001, &mut rng, file).await;
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(
        value(&client, "SELECT sum(n) FROM per_category").await,
        "5001"
    );
    server.kill();

    let server = Server::start_on(sql, data, NO_TIMER);
    let client = connect(&server).await;
    // Restored at the checkpoint: the event is not there yet, and not twice.
    let restored = value(&client, "SELECT sum(n) FROM per_category").await;
    assert!(restored == "5000" || restored == "5001", "{restored}");
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(
        value(&client, "SELECT sum(n) FROM per_category").await,
        "5001"
    );
    check_views(&client, file, 5_001).await;

    // A clean stop checkpoints too: nothing is read again after it.
    let rows_in = value(
        &client,
        "SELECT max(rows_in) FROM weir_catalog.materialized_views",
    )
    .await;
    drop(client);
    server.stop();
    let server = Server::start_on(sql, data, NO_TIMER);
    let client = connect(&server).await;
    client.batch_execute("FLUSH").await.unwrap();
    assert_eq!(
        value(
            &client,
            "SELECT max(rows_in) FROM weir_catalog.materialized_views"
        )
        .await,
        rows_in
    );
    check_views(&client, file, 5_001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_rebuilds_a_changed_view_and_keeps_the_others() {
    let setup = setup("changed").await;
    let Setup {
        broker,
        sql,
        data,
        file,
        ..
    } = &setup;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (mut server, _client) = checkpointed(&setup, "changed", 3_000, &mut rng).await;
    server.kill();

    // big_orders now keeps more rows: it is read again from the start of the topic.
    let views = std::fs::read_to_string(sql.join("10_views.sql")).unwrap();
    std::fs::write(
        sql.join("10_views.sql"),
        views.replace("WHERE amount > 9900", "WHERE amount > 9000"),
    )
    .unwrap();
    let server = Server::start_on(sql, data, NO_TIMER);
    let client = connect(&server).await;
    // The unchanged views hold their state before any record is read again.
    assert_eq!(
        value(&client, "SELECT sum(n) FROM per_category").await,
        "3000"
    );
    produce(broker, "changed", 3_000, 4_000, &mut rng, file).await;
    client.batch_execute("FLUSH").await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE events_file (id BIGINT, user_id BIGINT, category VARCHAR, \
             amount BIGINT, ts TIMESTAMP) STORED AS JSON LOCATION '{}'",
            file.display()
        ))
        .await
        .unwrap();
    let differ = value(
        &client,
        "SELECT count(*) FROM ((SELECT id, amount FROM big_orders EXCEPT ALL \
         SELECT id, amount FROM events_file WHERE amount > 9000) UNION ALL \
         (SELECT id, amount FROM events_file WHERE amount > 9000 EXCEPT ALL \
         SELECT id, amount FROM big_orders))",
    )
    .await;
    assert_eq!(differ, "0");
    assert_eq!(
        value(&client, "SELECT sum(n) FROM per_category").await,
        "4000"
    );
    // Each view read each record once: the kept ones from the checkpoint on, the rebuilt
    // one from the start.
    assert_eq!(
        value(
            &client,
            "SELECT min(rows_in) || ' ' || max(rows_in) FROM weir_catalog.materialized_views"
        )
        .await,
        "4000 4000"
    );
}

/// The crash test: a seeded stream of `WEIR_CRASH_EVENTS` records (default 1,000,000)
/// produced while the server is killed at five points the seed chooses
/// (`WEIR_CRASH_SEED` repeats a run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_five_kills_lose_and_repeat_nothing() {
    let events: u64 = std::env::var("WEIR_CRASH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("WEIR_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test: seed {seed} (WEIR_CRASH_SEED={seed} repeats it), {events} records");
    let mut plan = ChaCha8Rng::seed_from_u64(seed);
    // Kill points: after these many records produced, then after a short wait.
    let mut kills: Vec<(u64, u64)> = (0..5)
        .map(|_| {
            (
                plan.random_range(events / 20..events * 19 / 20),
                plan.random_range(0..1500),
            )
        })
        .collect();
    kills.sort();
    println!(
        "crash test: kills after records {:?}",
        kills.iter().map(|k| k.0).collect::<Vec<_>>()
    );

    let Setup {
        broker,
        sql,
        data,
        file,
        _dir,
    } = setup("crash").await;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);

    let mut server = Server::start_on(&sql, &data, EVERY_SECOND);
    let chunk = (events / 50).max(1_000);
    let mut produced = 0;
    let mut next_kill = 0;
    let mut recoveries = Vec::new();
    let started = Instant::now();
    while produced < events {
        let to = (produced + chunk).min(events);
        produce(&broker, "crash", produced, to, &mut rng, &file).await;
        produced = to;
        while next_kill < kills.len() && kills[next_kill].0 <= produced {
            tokio::time::sleep(Duration::from_millis(kills[next_kill].1)).await;
            let read = {
                let client = connect(&server).await;
                value(
                    &client,
                    "SELECT min(rows_in) FROM weir_catalog.materialized_views",
                )
                .await
            };
            server.kill();
            let t = Instant::now();
            server = Server::start_on(&sql, &data, EVERY_SECOND);
            let ready = t.elapsed();
            let client = connect(&server).await;
            let restored = value(
                &client,
                "SELECT min(rows_in) FROM weir_catalog.materialized_views",
            )
            .await;
            println!(
                "crash test: kill {} after {produced} records produced, {read} read; \
                 restarted in {ready:.2?} with {restored} restored",
                next_kill + 1
            );
            recoveries.push(ready);
            next_kill += 1;
        }
    }
    let client = connect(&server).await;
    let t = Instant::now();
    client.batch_execute("FLUSH").await.unwrap();
    println!(
        "crash test: {events} records, {} kills, {:.1?} in all; restarts took {:?}; last FLUSH {:.1?}",
        recoveries.len(),
        started.elapsed(),
        recoveries,
        t.elapsed()
    );
    assert_eq!(recoveries.len(), 5);
    check_views(&client, &file, events).await;
}

/// The kinds of state a Kafka view does not have — both sides of stream joins, an
/// aggregation over a join, rows buffered per window for a ranking — restored from a
/// checkpoint taken while paced `datagen` sources were mid-stream, and resumed at their
/// event numbers: at the end each view equals its batch query over the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_keeps_join_sides_buffers_and_groups_of_generated_streams() {
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    let source = |name: &str, profile: &str, seed: u32| {
        format!(
            "CREATE SOURCE {name} (WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (\n\
             connector = 'datagen', profile = '{profile}', seed = '{seed}', rate = '4000',\n\
             count = '20000', start = '2026-01-01 00:00:00', 'max.out.of.order.ms' = '1000');\n"
        )
    };
    std::fs::write(
        sql.join("00_sources.sql"),
        source("pv", "page_views", 11)
            + &source("carts", "cart_additions", 12)
            + &source("orders", "orders", 7),
    )
    .unwrap();
    std::fs::write(
        sql.join("10_views.sql"),
        "CREATE MATERIALIZED VIEW viewed_then_added AS\n\
         SELECT v.user_id, v.product_id, v.ts AS viewed, c.ts AS added, c.quantity\n\
         FROM pv v JOIN carts c ON v.user_id = c.user_id AND v.product_id = c.product_id\n\
         AND c.ts BETWEEN v.ts AND v.ts + INTERVAL '3' SECOND;\n\
         \n\
         CREATE MATERIALIZED VIEW units_per_category AS\n\
         SELECT category, count(*) AS users, sum(units) AS units FROM (\n\
         SELECT v.category, v.user_id, sum(c.quantity) AS units FROM pv v, carts c\n\
         WHERE v.user_id = c.user_id AND v.product_id = c.product_id\n\
         AND c.ts BETWEEN v.ts AND v.ts + INTERVAL '3' SECOND GROUP BY v.category, v.user_id) u\n\
         GROUP BY category;\n\
         \n\
         CREATE MATERIALIZED VIEW biggest_orders AS\n\
         SELECT window_start, order_id, amount FROM (\n\
         SELECT window_start, order_id, amount,\n\
         ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY amount DESC, order_id) AS rn\n\
         FROM TUMBLE(orders, ts, INTERVAL '2' SECOND)) WHERE rn <= 2;\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_on(&sql, &data, NO_TIMER);
    let client = connect(&server).await;
    // Mid-stream: the sources are paced at 4,000 events/s for 5 s.
    loop {
        let read = value(
            &client,
            "SELECT min(rows_in) FROM weir_catalog.materialized_views",
        )
        .await;
        if read.parse::<u64>().unwrap() >= 6_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.batch_execute("CHECKPOINT").await.unwrap();
    let kept = value(
        &client,
        "SELECT sum(open_groups) FROM weir_catalog.materialized_views",
    )
    .await;
    server.kill();

    let server = Server::start_on(&sql, &data, NO_TIMER);
    let client = connect(&server).await;
    let restored = value(
        &client,
        "SELECT min(rows_in) FROM weir_catalog.materialized_views",
    )
    .await;
    assert!(
        restored.parse::<u64>().unwrap() >= 6_000,
        "{restored} records restored"
    );
    assert_ne!(kept, "0");
    // FLUSH waits for what a paced source has produced by now: wait for the end.
    let all = "SELECT count(*) FROM weir_catalog.materialized_views \
               WHERE rows_in = CASE name WHEN 'biggest_orders' THEN 20000 ELSE 40000 END";
    while value(&client, all).await != "3" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.batch_execute("FLUSH").await.unwrap();
    let join = "SELECT v.user_id, v.product_id, v.ts AS viewed, c.ts AS added, c.quantity \
                FROM datagen('page_views', 20000, 11, 4000, 1000) v \
                JOIN datagen('cart_additions', 20000, 12, 4000, 1000) c \
                ON v.user_id = c.user_id AND v.product_id = c.product_id \
                AND c.ts BETWEEN v.ts AND v.ts + INTERVAL '3 seconds'";
    let per_category = "SELECT category, count(*), sum(units) FROM (\
                SELECT v.category, v.user_id, sum(c.quantity) AS units \
                FROM datagen('page_views', 20000, 11, 4000, 1000) v \
                JOIN datagen('cart_additions', 20000, 12, 4000, 1000) c \
                ON v.user_id = c.user_id AND v.product_id = c.product_id \
                AND c.ts BETWEEN v.ts AND v.ts + INTERVAL '3 seconds' \
                GROUP BY v.category, v.user_id) GROUP BY category";
    let ranked = "SELECT ws, order_id, amount FROM (SELECT date_bin(INTERVAL '2 seconds', ts) AS ws, \
                order_id, amount, ROW_NUMBER() OVER (PARTITION BY date_bin(INTERVAL '2 seconds', ts) \
                ORDER BY amount DESC, order_id) AS rn FROM datagen('orders', 20000, 7, 4000, 1000)) \
                WHERE rn <= 2";
    for (view, batch) in [
        ("SELECT * FROM viewed_then_added", join),
        ("SELECT * FROM units_per_category", per_category),
        ("SELECT * FROM biggest_orders", ranked),
    ] {
        let rows = value(&client, &format!("SELECT count(*) FROM ({view})")).await;
        let differ = value(
            &client,
            &format!(
                "SELECT count(*) FROM (({view} EXCEPT ALL {batch}) UNION ALL \
                 ({batch} EXCEPT ALL {view}))"
            ),
        )
        .await;
        assert_eq!(
            differ, "0",
            "{view}: {rows} rows, {differ} differ from: {batch}"
        );
        assert_ne!(rows, "0", "{view} is empty");
    }
    assert_eq!(
        value(
            &client,
            "SELECT sum(late_rows) || ' ' || min(rows_in) FROM weir_catalog.materialized_views"
        )
        .await,
        "0 20000"
    );
}
