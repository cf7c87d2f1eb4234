//! The PostgreSQL and Kafka sinks' writers against real servers (a throw-away PostgreSQL
//! cluster, a tansu broker): upserts and deletes of a view's changes, replays, appends, a
//! PostgreSQL restart mid-stream, keyed JSON records and tombstones, and option errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch,
    StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use weir::decode::{Decoder, Format};
use weir::sink::kafka::KafkaSinkSpec;
use weir::sink::postgres::PostgresSinkSpec;
use weir::sink::{Delivery, SinkConnector, SinkInput, SinkWriter};
use weir::sql::streaming::Options;
use weir::view::changes::change_schema;

use crate::harness::{Broker, Postgres, free_port, rows};

/// 2024-01-01 00:00:00 UTC in microseconds.
const T0: i64 = 1_704_067_200_000_000;

fn view_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("category", DataType::Utf8, true),
        Field::new("revenue", DataType::Decimal128(12, 2), true),
        Field::new("orders", DataType::Int64, true),
        Field::new("avg_amount", DataType::Float64, true),
        Field::new("day", DataType::Date32, true),
        Field::new("hot", DataType::Boolean, true),
    ]))
}

/// One view row: (window minute, category, revenue in cents, orders).
type Row = (i64, &'static str, i128, i64);

fn view_rows(rows: &[Row]) -> Vec<ArrayRef> {
    vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| T0 + r.0 * 60_000_000))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(
            Decimal128Array::from_iter_values(rows.iter().map(|r| r.2))
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| Some(r.2 as f64 / 100.0 / r.3 as f64)),
        )),
        Arc::new(Date32Array::from_iter_values(rows.iter().map(|_| 19723))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.3 > 2)))),
    ]
}

/// A change batch: `deleted` rows then `inserted` ones.
fn changes(deleted: &[Row], inserted: &[Row]) -> RecordBatch {
    let view = view_schema();
    let n = deleted.len() + inserted.len();
    let ops = std::iter::repeat_n("delete", deleted.len())
        .chain(std::iter::repeat_n("insert", inserted.len()));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_value(T0, n).with_timezone("UTC")),
        Arc::new(StringArray::from_iter_values(ops)),
    ];
    let all: Vec<Row> = deleted.iter().chain(inserted).copied().collect();
    columns.extend(view_rows(&all));
    RecordBatch::try_new(change_schema(&view), columns).unwrap()
}

fn appended(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(view_schema(), view_rows(rows)).unwrap()
}

fn input(delivery: Delivery) -> SinkInput {
    SinkInput {
        sink: "revenue_out".into(),
        from: "revenue_5m".into(),
        schema: view_schema(),
        delivery,
    }
}

fn options(connector: &str, pairs: &[(&str, &str)]) -> Options {
    let mut o = Options::default();
    o.0.insert("connector".into(), connector.into());
    for (k, v) in pairs {
        o.0.insert(k.to_string(), v.to_string());
    }
    o
}

async fn pg_writer(
    pg: &Postgres,
    delivery: Delivery,
    extra: &[(&str, &str)],
) -> Box<dyn SinkWriter> {
    let url = pg.url();
    let mut pairs = vec![("url", url.as_str()), ("table", "revenue")];
    pairs.extend_from_slice(extra);
    let input = input(delivery);
    PostgresSinkSpec::parse(&input, &options("postgres", &pairs))
        .unwrap()
        .open(&input)
        .await
        .unwrap()
}

/// The table's rows as text, in key order.
async fn table_rows(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let sql = format!(
        "SELECT concat_ws('|', window_start AT TIME ZONE 'UTC', category, revenue, orders, \
         avg_amount, day, hot) FROM {table} ORDER BY window_start, category, revenue"
    );
    client
        .query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const KEYED: &[(&str, &str)] = &[
    ("primary.key", "window_start,category"),
    ("create.table", "true"),
    ("batch.size", "2"),
];

/// (1,a) and (1,b) come; then (1,a) changes, (1,b) goes, (2,c) comes, goes and comes again.
fn keyed_batches() -> Vec<RecordBatch> {
    vec![
        changes(
            &[],
            &[(1, "a", 1050, 1), (1, "b", 200, 2), (2, "c", 100, 1)],
        ),
        changes(
            &[(1, "a", 1050, 1), (1, "b", 200, 2), (2, "c", 100, 1)],
            &[(1, "a", 2575, 3), (2, "c", 300, 2)],
        ),
        changes(&[], &[(3, "d", 99, 1)]),
    ]
}

fn keyed_expected() -> Vec<String> {
    vec![
        "2024-01-01 00:01:00|a|25.75|3|8.583333333333334|2024-01-01|t".to_string(),
        "2024-01-01 00:02:00|c|3.00|2|1.5|2024-01-01|f".to_string(),
        "2024-01-01 00:03:00|d|0.99|1|0.99|2024-01-01|f".to_string(),
    ]
}

#[tokio::test]
async fn postgres_upserts_changes_and_a_replay_leaves_the_same_rows() {
    let Some(pg) = Postgres::start() else { return };
    let client = pg.client().await;
    let mut writer = pg_writer(&pg, Delivery::Changes, KEYED).await;

    // The table is made with PostgreSQL types for the Arrow ones, keyed as asked.
    let types: Vec<String> = client
        .query(
            "SELECT column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_name = 'revenue' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        vec![
            "window_start timestamp with time zone",
            "category text",
            "revenue numeric",
            "orders bigint",
            "avg_amount double precision",
            "day date",
            "hot boolean"
        ]
    );
    let key: String = client
        .query_one(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'revenue'::regclass AND contype = 'p'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, "PRIMARY KEY (window_start, category)");

    let batches = keyed_batches();
    writer.write(batches[0].clone()).await.unwrap();
    writer.flush().await.unwrap();
    assert_eq!(table_rows(&client, "revenue").await.len(), 3);
    for b in &batches[1..] {
        writer.write(b.clone()).await.unwrap();
    }
    // Nothing reaches the table before the flush.
    assert_eq!(table_rows(&client, "revenue").await.len(), 3);
    writer.flush().await.unwrap();
    assert_eq!(table_rows(&client, "revenue").await, keyed_expected());
    writer.flush().await.unwrap();

    // A replay (after a restart from an older checkpoint) through a new writer, in one
    // flush: the same table.
    let mut again = pg_writer(&pg, Delivery::Changes, KEYED).await;
    for b in &batches {
        again.write(b.clone()).await.unwrap();
    }
    again.flush().await.unwrap();
    assert_eq!(table_rows(&client, "revenue").await, keyed_expected());
    // Batch by batch as well.
    for b in &batches {
        again.write(b.clone()).await.unwrap();
        again.flush().await.unwrap();
    }
    assert_eq!(table_rows(&client, "revenue").await, keyed_expected());
}

#[tokio::test]
async fn postgres_appends_rows_and_upserts_final_rows_by_key() {
    let Some(pg) = Postgres::start() else { return };
    let client = pg.client().await;
    // No key: plain inserts, several statements per flush, NULLs kept.
    let mut writer = pg_writer(
        &pg,
        Delivery::Append,
        &[("create.table", "true"), ("batch.size", "2")],
    )
    .await;
    let rows: Vec<Row> = (0..5).map(|i| (i, "x", 100 * i as i128, i + 1)).collect();
    writer.write(appended(&rows)).await.unwrap();
    let mut columns = view_rows(&[(9, "y", 1, 1)]);
    columns[1] = Arc::new(StringArray::from(vec![None::<&str>]));
    columns[4] = Arc::new(Float64Array::from(vec![f64::NAN]));
    writer
        .write(RecordBatch::try_new(view_schema(), columns).unwrap())
        .await
        .unwrap();
    writer.flush().await.unwrap();
    let got = table_rows(&client, "revenue").await;
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got[0], "2024-01-01 00:00:00|x|0.00|1|0|2024-01-01|f");
    assert_eq!(got[5], "2024-01-01 00:09:00|0.01|1|NaN|2024-01-01|f");
    let none: i64 = client
        .query_one("SELECT count(*) FROM revenue WHERE category IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 1);

    // Final rows with a key (EMIT ON WINDOW CLOSE): a replayed row is written again, not
    // twice; within one flush the last row of a key wins.
    client
        .batch_execute("DROP TABLE revenue; CREATE TABLE revenue (window_start timestamptz, category varchar(10), revenue numeric, orders integer, avg_amount float8, day date, hot boolean, extra text DEFAULT 'kept', PRIMARY KEY (window_start, category))")
        .await
        .unwrap();
    let mut writer = pg_writer(
        &pg,
        Delivery::Append,
        &[("primary.key", "window_start,category")],
    )
    .await;
    writer
        .write(appended(&[
            (1, "a", 100, 1),
            (1, "a", 200, 2),
            (2, "b", 300, 3),
        ]))
        .await
        .unwrap();
    writer.flush().await.unwrap();
    writer.write(appended(&[(2, "b", 300, 3)])).await.unwrap();
    writer.flush().await.unwrap();
    assert_eq!(
        table_rows(&client, "revenue").await,
        vec![
            "2024-01-01 00:01:00|a|2.00|2|1|2024-01-01|f",
            "2024-01-01 00:02:00|b|3.00|3|1|2024-01-01|t"
        ]
    );
}

/// `sslmode=require` against a server with TLS: the rows arrive over an encrypted
/// connection (a self-signed certificate, which `require` does not check, as libpq).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sink_over_tls() {
    let Some(pg) = Postgres::start_tls() else {
        return;
    };
    let url = format!(
        "{}?sslmode=require&application_name=weir_tls_sink",
        pg.url()
    );
    let input = input(Delivery::Append);
    let pairs = [
        ("url", url.as_str()),
        ("table", "revenue"),
        ("create.table", "true"),
    ];
    let mut writer = PostgresSinkSpec::parse(&input, &options("postgres", &pairs))
        .unwrap()
        .open(&input)
        .await
        .unwrap();
    let rows: Vec<Row> = (0..3).map(|i| (i, "x", 100 * i as i128, i + 1)).collect();
    writer.write(appended(&rows)).await.unwrap();
    writer.flush().await.unwrap();
    let client = pg.client().await;
    assert_eq!(table_rows(&client, "revenue").await.len(), 3);
    let encrypted: Vec<bool> = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'weir_tls_sink'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(encrypted, [true], "the sink's connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writer_retries_through_a_server_restart() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let batches = keyed_batches();
    let mut extra = KEYED.to_vec();
    extra.push(("retry.max_elapsed", "30s"));
    let mut writer = pg_writer(&pg, Delivery::Changes, &extra).await;
    writer.write(batches[0].clone()).await.unwrap();
    writer.flush().await.unwrap();

    // The server goes away mid-stream: the flush waits for it, then writes everything.
    pg.stop();
    for b in &batches[1..] {
        writer.write(b.clone()).await.unwrap();
    }
    let flushing = tokio::spawn(async move {
        let started = Instant::now();
        writer.flush().await.map(|()| (writer, started.elapsed()))
    });
    let pg = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1500));
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    let (mut writer, took) = flushing.await.unwrap().unwrap();
    assert!(took >= Duration::from_millis(1000), "flushed in {took:?}");
    let client = pg.client().await;
    assert_eq!(table_rows(&client, "revenue").await, keyed_expected());
    drop(client);

    // A connection cut between flushes (the server restarted quickly) is mended too.
    let mut pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    writer.write(changes(&[], &[(4, "e", 1, 1)])).await.unwrap();
    writer.flush().await.unwrap();
    let client = pg.client().await;
    assert_eq!(table_rows(&client, "revenue").await.len(), 4);
    drop(client);

    // Past 'retry.max_elapsed' the flush fails, saying so; the rows stay pending.
    let mut short = pg_writer(
        &pg,
        Delivery::Changes,
        &[
            ("primary.key", "window_start,category"),
            ("retry.max_elapsed", "700ms"),
        ],
    )
    .await;
    pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    short.write(changes(&[], &[(5, "f", 1, 1)])).await.unwrap();
    let started = Instant::now();
    let e = short.flush().await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        e.contains("postgres sink 'revenue_out' could not write to table 'revenue' on 127.0.0.1:")
            && e.contains("retry.max_elapsed"),
        "{e}"
    );
    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    short.flush().await.unwrap();
    let client = pg.client().await;
    assert_eq!(table_rows(&client, "revenue").await.len(), 5);
}

#[tokio::test]
async fn postgres_failed_write_is_retried_without_copies() {
    let Some(pg) = Postgres::start() else { return };
    // batch.size 1: every tenth row flushes inside `write`.
    let mut writer = pg_writer(
        &pg,
        Delivery::Append,
        &[
            ("create.table", "true"),
            ("batch.size", "1"),
            ("retry.max_elapsed", "300ms"),
        ],
    )
    .await;
    let first: Vec<Row> = (0..5).map(|i| (i, "a", 1, 1)).collect();
    writer.write(appended(&first)).await.unwrap();
    let mut pg = tokio::task::spawn_blocking(move || {
        let mut pg = pg;
        pg.stop();
        pg
    })
    .await
    .unwrap();
    // The write that fills the batch fails while the server is away, twice, as the
    // runner retries it; then the server is back and the same batch goes in once.
    let second: Vec<Row> = (5..12).map(|i| (i, "b", 1, 1)).collect();
    for _ in 0..2 {
        assert!(writer.write(appended(&second)).await.is_err());
    }
    pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    writer.write(appended(&second)).await.unwrap();
    writer.flush().await.unwrap();
    let client = pg.client().await;
    assert_eq!(table_rows(&client, "revenue").await.len(), 12);
}

#[tokio::test]
async fn postgres_option_errors() {
    let parse = |delivery, pairs: &[(&str, &str)]| {
        let mut all = vec![("url", "postgres://u:pw@127.0.0.1:1/db"), ("table", "t")];
        all.extend_from_slice(pairs);
        PostgresSinkSpec::parse(&input(delivery), &options("postgres", &all))
            .unwrap_err()
            .to_string()
    };
    let e = parse(Delivery::Append, &[("topic", "x")]);
    assert!(
        e.contains("unknown option 'topic' for connector 'postgres'")
            && e.contains("primary.key, create.table, batch.size, retry.max_elapsed"),
        "{e}"
    );
    let e = parse(Delivery::Changes, &[]);
    assert!(
        e.contains("needs 'primary.key'") && e.contains("EMIT ON WINDOW CLOSE"),
        "{e}"
    );
    let e = parse(Delivery::Append, &[("primary.key", "window_start,cat")]);
    assert!(e.contains("'cat' is not a column of 'revenue_5m'"), "{e}");
    let e = parse(Delivery::Append, &[("batch.size", "many")]);
    assert!(e.contains("option 'batch.size'"), "{e}");

    let Some(pg) = Postgres::start() else { return };
    // A missing table (without create.table) fails at once, naming it.
    let url = pg.url();
    let spec_input = input(Delivery::Append);
    let spec = PostgresSinkSpec::parse(
        &spec_input,
        &options("postgres", &[("url", &url), ("table", "missing")]),
    )
    .unwrap();
    let started = Instant::now();
    let e = spec.open(&spec_input).await.err().unwrap().to_string();
    assert!(
        e.contains("table 'missing'") && e.contains("relation \"missing\" does not exist"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // A table that lacks a column.
    pg.client()
        .await
        .batch_execute("CREATE TABLE narrow (window_start timestamptz)")
        .await
        .unwrap();
    let spec = PostgresSinkSpec::parse(
        &spec_input,
        &options("postgres", &[("url", &url), ("table", "narrow")]),
    )
    .unwrap();
    let e = spec.open(&spec_input).await.err().unwrap().to_string();
    assert!(e.contains("column \"category\" does not exist"), "{e}");
    // Nothing listens: retried up to the bound, then a clear error.
    let closed = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let spec = PostgresSinkSpec::parse(
        &spec_input,
        &options(
            "postgres",
            &[
                ("url", &closed),
                ("table", "t"),
                ("retry.max_elapsed", "500ms"),
            ],
        ),
    )
    .unwrap();
    let e = spec.open(&spec_input).await.err().unwrap().to_string();
    assert!(e.contains("could not connect to table 't'"), "{e}");
}

/// Every record of partition 0 of `topic`: (key, value), until `count` are read.
fn consume(broker: &Broker, topic: &str, count: usize) -> Vec<(Option<String>, Option<String>)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", "sink-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "read only {out:?} in 30 s");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push((text(m.key()), text(m.payload())));
        }
    }
    out
}

fn kafka_options(broker: &Broker, topic: &str, extra: &[(&str, &str)]) -> Options {
    let addr = broker.addr();
    let mut pairs = vec![
        ("topic", topic),
        ("properties.bootstrap.servers", addr.as_str()),
        ("format", "json"),
    ];
    pairs.extend_from_slice(extra);
    options("kafka", &pairs)
}

async fn kafka_writer(
    broker: &Broker,
    topic: &str,
    delivery: Delivery,
    extra: &[(&str, &str)],
) -> Box<dyn SinkWriter> {
    let input = input(delivery);
    KafkaSinkSpec::parse(&input, &kafka_options(broker, topic, extra))
        .unwrap()
        .open(&input)
        .await
        .unwrap()
}

#[tokio::test]
async fn kafka_sink_keeps_records_the_broker_missed_until_delivered() {
    let mut broker = Broker::start();
    let mut writer = kafka_writer(
        &broker,
        "kept_records",
        Delivery::Append,
        &[("properties.message.timeout.ms", "1500")],
    )
    .await;
    let rows =
        |from: i64, n: i64| -> Vec<Row> { (from..from + n).map(|i| (i, "k", 1, 1)).collect() };
    writer.write(appended(&rows(0, 3))).await.unwrap();
    writer.flush().await.unwrap();
    // The broker is away longer than message.timeout.ms: the producer gives up on the
    // records, the flush says so, and nothing is dropped.
    broker.kill();
    writer.write(appended(&rows(3, 4))).await.unwrap();
    let e = writer.flush().await.unwrap_err();
    assert!(e.to_string().contains("not delivered"), "{e}");
    broker.restart();
    writer.flush().await.unwrap();
    let got = consume(&broker, "kept_records", 7);
    let ids: std::collections::BTreeSet<String> =
        got.iter().map(|(_, v)| v.clone().unwrap()).collect();
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(ids.len(), 7, "{got:?}");
}

#[tokio::test]
async fn kafka_sink_produces_keyed_json_records_and_tombstones() {
    let broker = Broker::start();
    // The topic does not exist yet: the sink makes it.
    let mut writer = kafka_writer(
        &broker,
        "revenue_changes",
        Delivery::Changes,
        &[("key.columns", "category")],
    )
    .await;
    for b in keyed_batches() {
        writer.write(b).await.unwrap();
    }
    writer.flush().await.unwrap();
    let got = consume(&broker, "revenue_changes", 7);
    let keys: Vec<(&str, bool)> = got
        .iter()
        .map(|(k, v)| (k.as_deref().unwrap(), v.is_some()))
        .collect();
    // (1,b) goes: a tombstone; (1,a) and (2,c) change: new values, no tombstone.
    assert_eq!(
        keys,
        vec![
            ("a", true),
            ("b", true),
            ("c", true),
            ("b", false),
            ("a", true),
            ("c", true),
            ("d", true)
        ]
    );
    assert_eq!(
        got[4].1.as_deref(),
        Some(
            r#"{"window_start":"2024-01-01T00:01:00Z","category":"a","revenue":25.75,"orders":3,"avg_amount":8.583333333333334,"day":"2024-01-01","hot":true}"#
        )
    );
    // The JSON source format reads the values back as they were.
    let payloads: Vec<&[u8]> = got
        .iter()
        .filter_map(|(_, v)| v.as_deref().map(str::as_bytes))
        .collect();
    let (decoded, skipped) = Decoder::new(view_schema(), Format::Json)
        .unwrap()
        .decode(&payloads)
        .unwrap();
    assert_eq!(skipped, 0);
    let sent = datafusion::arrow::compute::concat_batches(
        &view_schema(),
        &[appended(&[
            (1, "a", 1050, 1),
            (1, "b", 200, 2),
            (2, "c", 100, 1),
            (1, "a", 2575, 3),
            (2, "c", 300, 2),
            (3, "d", 99, 1),
        ])],
    )
    .unwrap();
    assert_eq!(decoded, sent);
}

#[tokio::test]
async fn kafka_sink_keys_of_several_columns_or_none() {
    let broker = Broker::start();
    broker.create_topic("appended", 1).await;
    let mut keyed = kafka_writer(
        &broker,
        "appended",
        Delivery::Append,
        &[
            ("key.columns", "window_start,category"),
            ("properties.linger.ms", "0"),
        ],
    )
    .await;
    keyed.write(appended(&[(1, "a", 100, 1)])).await.unwrap();
    keyed.flush().await.unwrap();
    let mut unkeyed = kafka_writer(&broker, "appended", Delivery::Append, &[]).await;
    unkeyed
        .write(appended(&[(2, "b", 100, 1), (3, "c", 1, 1)]))
        .await
        .unwrap();
    unkeyed.flush().await.unwrap();
    let got = consume(&broker, "appended", 3);
    assert_eq!(
        got[0].0.as_deref(),
        Some(r#"{"window_start":"2024-01-01T00:01:00Z","category":"a"}"#)
    );
    assert_eq!(got[1].0, None);
    assert_eq!(got[2].0, None);
    assert!(got[2].1.as_deref().unwrap().contains(r#""category":"c""#));
}

#[tokio::test]
async fn kafka_sink_option_errors() {
    let parse = |delivery, pairs: &[(&str, &str)]| {
        let mut all = vec![
            ("topic", "t"),
            ("properties.bootstrap.servers", "127.0.0.1:1"),
        ];
        all.extend_from_slice(pairs);
        KafkaSinkSpec::parse(&input(delivery), &options("kafka", &all))
            .unwrap_err()
            .to_string()
    };
    let e = parse(Delivery::Append, &[("format", "csv")]);
    assert!(
        e.contains("'format' of the kafka sink must be 'json'"),
        "{e}"
    );
    let e = parse(Delivery::Append, &[("primary.key", "category")]);
    assert!(
        e.contains("unknown option 'primary.key' for connector 'kafka'")
            && e.contains("key.columns, properties.*"),
        "{e}"
    );
    let e = parse(Delivery::Changes, &[]);
    assert!(e.contains("needs 'key.columns'"), "{e}");
    let e = parse(Delivery::Append, &[("key.columns", "nope")]);
    assert!(e.contains("'nope' is not a column of 'revenue_5m'"), "{e}");
    let e = parse(Delivery::Append, &[("properties.acks", "most")]);
    assert!(e.contains("invalid Kafka properties"), "{e}");
    let mut o = options("kafka", &[("topic", "t")]);
    o.0.insert("format".into(), "json".into());
    let e = KafkaSinkSpec::parse(&input(Delivery::Append), &o).unwrap_err();
    assert!(
        e.to_string().contains("'properties.bootstrap.servers'"),
        "{e}"
    );

    // No broker: opening fails with the topic named.
    let input = input(Delivery::Append);
    let spec = KafkaSinkSpec::parse(
        &input,
        &options(
            "kafka",
            &[
                ("topic", "t"),
                (
                    "properties.bootstrap.servers",
                    &format!("127.0.0.1:{}", free_port()),
                ),
            ],
        ),
    )
    .unwrap();
    let e = spec.open(&input).await.err().unwrap().to_string();
    assert!(
        e.contains("kafka sink 'revenue_out' could not reach topic 't'"),
        "{e}"
    );
}

/// Every row of `sql` as one line of text, its values separated by spaces, sorted.
async fn lines(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = rows(client, sql)
        .await
        .into_iter()
        .map(|r| r.replace('|', " "))
        .collect();
    out.sort();
    out
}

/// Orders `from..to`: 1 ms apart from 2026-01-01 00:00, over three partitions.
async fn produce_orders(broker: &Broker, topic: &str, from: u64, to: u64) {
    let categories = ["books", "games", "garden", "music", "toys"];
    for partition in 0..3 {
        let payloads: Vec<String> = (from..to)
            .filter(|i| i % 3 == partition as u64)
            .map(|i| {
                let (s, ms) = (i / 1000, i % 1000);
                format!(
                    "{{\"id\":{i},\"category\":\"{}\",\"amount\":{},\"ts\":\"2026-01-01 00:{:02}:{:02}.{ms:03}\"}}",
                    categories[(i * 7 % 5) as usize],
                    i % 97 + 1,
                    s / 60,
                    s % 60
                )
            })
            .collect();
        broker.produce(topic, partition, &payloads).await;
    }
}

/// A `.sql` folder reading `topic`: running totals by category (changes, upserted by
/// key) and final rows per 10 seconds (appended), each with a PostgreSQL sink, and the
/// final rows also to the Kafka topic `<topic>_out`.
fn sink_sql(dir: &std::path::Path, broker: &Broker, topic: &str, pg: &str) {
    std::fs::write(
        dir.join("sinks.sql"),
        format!(
            "CREATE SOURCE orders (id BIGINT, category VARCHAR, amount BIGINT, ts TIMESTAMP, \
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (connector = 'kafka', \
             topic = '{topic}', 'properties.bootstrap.servers' = '{broker}', format = 'json', \
             'watermark.idle_timeout' = '1h');\n\
             CREATE MATERIALIZED VIEW by_category AS SELECT category, count(*) AS n, \
             sum(amount) AS total, max(ts) AS last FROM orders GROUP BY category;\n\
             CREATE MATERIALIZED VIEW per_10s AS SELECT window_start, category, count(*) AS n, \
             sum(amount) AS total FROM TUMBLE(orders, ts, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end, category EMIT ON WINDOW CLOSE;\n\
             CREATE SINK by_category_pg FROM by_category WITH (connector = 'postgres', \
             url = '{pg}', table = 'by_category', 'primary.key' = 'category', \
             'create.table' = 'true');\n\
             CREATE SINK per_10s_pg FROM per_10s WITH (connector = 'postgres', url = '{pg}', \
             table = 'per_10s', 'primary.key' = 'window_start,category', 'create.table' = 'true');\n\
             CREATE SINK per_10s_kafka FROM per_10s WITH (connector = 'kafka', \
             topic = '{topic}_out', 'properties.bootstrap.servers' = '{broker}', \
             'key.columns' = 'window_start,category');\n",
            broker = broker.addr()
        ),
    )
    .unwrap();
}

const BY_CATEGORY: &str = "SELECT category, n, total, last FROM by_category";
const PER_10S: &str = "SELECT window_start, category, n, total FROM per_10s";

/// The PostgreSQL tables equal the views.
async fn tables_equal_views(weir: &tokio_postgres::Client, pg: &tokio_postgres::Client) {
    for query in [BY_CATEGORY, PER_10S] {
        let view = lines(weir, query).await;
        assert!(!view.is_empty(), "{query}: no rows");
        assert_eq!(lines(pg, query).await, view, "{query} in PostgreSQL");
    }
}

/// Read the Kafka sink's topic back through a source and a view named after `tag`: its
/// rows (one per key) must equal the view's; returns the distinct copy counts.
async fn read_back(weir: &tokio_postgres::Client, broker: &Broker, tag: &str) -> Vec<String> {
    weir.batch_execute(&format!(
        "CREATE SOURCE back_{tag} (window_start TIMESTAMP, category VARCHAR, n BIGINT, \
         total BIGINT) WITH (connector = 'kafka', topic = 'sink_orders_out', \
         'properties.bootstrap.servers' = '{}', format = 'json');\n\
         CREATE MATERIALIZED VIEW read_{tag} AS SELECT window_start, category, \
         max(n) AS n, max(total) AS total, count(*) AS copies \
         FROM back_{tag} GROUP BY window_start, category;\n\
         FLUSH",
        broker.addr()
    ))
    .await
    .unwrap();
    assert_eq!(
        lines(
            weir,
            &format!("SELECT window_start, category, n, total FROM read_{tag}")
        )
        .await,
        lines(weir, PER_10S).await,
        "the final rows read back from Kafka"
    );
    lines(weir, &format!("SELECT DISTINCT copies FROM read_{tag}")).await
}

/// Through `weir serve`: after `FLUSH` the PostgreSQL tables hold the views' rows — the
/// running totals upserted as they change, the final rows once each — also after the
/// server is killed mid-stream and started again, and the Kafka topic holds each final
/// row once, read back by a source over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_of_a_server_equal_its_views_across_a_kill() {
    let Some(pg) = Postgres::start() else { return };
    let broker = Broker::start();
    broker.create_topic("sink_orders", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let sql = dir.path().join("sql");
    std::fs::create_dir(&sql).unwrap();
    sink_sql(&sql, &broker, "sink_orders", &pg.url());
    let data = dir.path().join("data");
    let every_second = ["--checkpoint-interval-ms", "1000"];

    let mut server = crate::harness::Server::start_on(&sql, &data, &every_second);
    produce_orders(&broker, "sink_orders", 0, 20_000).await;
    let weir = crate::harness::connect(&server).await;
    weir.batch_execute("FLUSH").await.unwrap();
    let target = pg.client().await;
    tables_equal_views(&weir, &target).await;
    let sinks = lines(
        &weir,
        "SELECT name, delivery, status, rows_written > 0, errors FROM weir_catalog.sinks",
    )
    .await;
    assert_eq!(
        sinks,
        [
            "by_category_pg upsert running t 0",
            "per_10s_kafka append running t 0",
            "per_10s_pg append running t 0"
        ]
    );
    // Without a crash, each final row is on the topic exactly once.
    let copies = read_back(&weir, &broker, "before").await;
    assert_eq!(copies, ["1"], "copies of a final row on the topic");

    // Killed while it reads more; started again on the same data directory.
    produce_orders(&broker, "sink_orders", 20_000, 45_000).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.kill();
    drop(weir);
    let server = crate::harness::Server::start_on(&sql, &data, &every_second);
    produce_orders(&broker, "sink_orders", 45_000, 50_000).await;
    let weir = crate::harness::connect(&server).await;
    weir.batch_execute("FLUSH").await.unwrap();
    tables_equal_views(&weir, &target).await;
    assert_eq!(
        lines(&weir, "SELECT sum(n) FROM by_category").await,
        ["50000"]
    );

    // The final rows on Kafka: a kill may send some again (the sink delivers at least
    // once), so the consumer keeps one per key, as a compacted topic does.
    read_back(&weir, &broker, "after").await;
    assert!(server.stop().success());
}
