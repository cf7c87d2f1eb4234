//! The Kafka source reader against a real broker (tansu, started per test): startup
//! modes, positions and end positions, undecodable records, option errors, and
//! partitions added while reading.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};
use weir::connector::kafka::{self, KafkaSpec};
use weir::connector::{Poll, Positions, SourceConnector, SourceReader, reached};
use weir::decode::schema_of;
use weir::sql::streaming::Options;

use crate::harness::Broker;

fn schema() -> SchemaRef {
    schema_of(&[
        ("id", DataType::Int64),
        ("name", DataType::Utf8),
        ("ts", DataType::Timestamp(TimeUnit::Nanosecond, None)),
    ])
}

fn options(broker: &Broker, topic: &str, extra: &[(&str, &str)]) -> Options {
    let mut o = Options::default();
    let mut set = |k: &str, v: &str| o.0.insert(k.to_string(), v.to_string());
    set("connector", "kafka");
    set("topic", topic);
    set("properties.bootstrap.servers", &broker.addr());
    for (k, v) in extra {
        set(k, v);
    }
    o
}

async fn open(broker: &Broker, topic: &str, extra: &[(&str, &str)]) -> Box<dyn SourceReader> {
    KafkaSpec::from_options(schema(), &options(broker, topic, extra))
        .await
        .unwrap()
        .reader(&[0, 1, 2], None, None)
        .await
        .unwrap()
}

fn event(id: i64) -> String {
    format!(
        r#"{{"id": {id}, "name": "n{id}", "ts": "2024-01-01 00:00:{:02}"}}"#,
        id % 60
    )
}

/// Polls until `positions()` reaches `target`; the rows read, by partition.
async fn read_until(
    reader: &mut Box<dyn SourceReader>,
    target: &Positions,
) -> BTreeMap<i32, Vec<RecordBatch>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out: BTreeMap<i32, Vec<RecordBatch>> = BTreeMap::new();
    while !reached(reader.positions(), target) {
        assert!(
            Instant::now() < deadline,
            "positions {:?} did not reach {target:?} in 30 s",
            reader.positions()
        );
        match reader.poll().await.unwrap() {
            Poll::Records(batches) => {
                for b in batches {
                    out.entry(b.partition).or_default().push(b.batch);
                }
            }
            Poll::Idle => {}
            Poll::End => panic!("a Kafka source never ends"),
        }
    }
    out
}

fn ids(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn ids_by_partition(read: &BTreeMap<i32, Vec<RecordBatch>>) -> BTreeMap<i32, Vec<i64>> {
    read.iter().map(|(p, b)| (*p, ids(b))).collect()
}

/// Produce ids `from..to` to partition `p`.
async fn produce_ids(broker: &Broker, topic: &str, p: i32, ids: std::ops::Range<i64>) {
    let payloads: Vec<String> = ids.map(event).collect();
    broker.produce(topic, p, &payloads).await;
}

fn positions(pairs: &[(i32, i64)]) -> Positions {
    pairs.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earliest_reads_every_record_of_every_partition() {
    let broker = Broker::start();
    broker.create_topic("events", 3).await;
    for p in 0..3 {
        produce_ids(&broker, "events", p, p as i64 * 100..p as i64 * 100 + 20).await;
    }
    let mut reader = open(&broker, "events", &[]).await;
    assert_eq!(reader.partitions(), vec![0, 1, 2]);
    assert_eq!(reader.positions(), &positions(&[(0, 0), (1, 0), (2, 0)]));
    let end = reader.end_positions().await.unwrap();
    assert_eq!(end, positions(&[(0, 20), (1, 20), (2, 20)]));

    let read = read_until(&mut reader, &end).await;
    assert_eq!(reader.positions(), &end);
    let by_partition = ids_by_partition(&read);
    for p in 0..3 {
        let base = p as i64 * 100;
        assert_eq!(by_partition[&p], (base..base + 20).collect::<Vec<_>>());
    }
    // Every column decoded, timestamps included.
    let first = &read[&1][0];
    assert_eq!(first.schema(), schema());
    assert_eq!(first.column(1).as_string::<i32>().value(0), "n100");
    let ts = first
        .column(2)
        .as_primitive::<datafusion::arrow::datatypes::TimestampNanosecondType>();
    assert_eq!(ts.value(0), 1_704_067_200_000_000_000 + 40 * 1_000_000_000);
    assert_eq!(reader.decode_errors(), 0);

    // Nothing more: idle, and positions stay at the end.
    assert!(matches!(reader.poll().await.unwrap(), Poll::Idle));
    assert_eq!(reader.end_positions().await.unwrap(), end);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_sees_only_records_produced_after_open() {
    let broker = Broker::start();
    broker.create_topic("late", 2).await;
    produce_ids(&broker, "late", 0, 0..5).await;
    produce_ids(&broker, "late", 1, 10..13).await;
    let mut reader = open(&broker, "late", &[("scan.startup.mode", "latest")]).await;
    assert_eq!(reader.positions(), &positions(&[(0, 5), (1, 3)]));
    assert!(matches!(reader.poll().await.unwrap(), Poll::Idle));

    produce_ids(&broker, "late", 0, 5..8).await;
    produce_ids(&broker, "late", 1, 13..14).await;
    let end = reader.end_positions().await.unwrap();
    assert_eq!(end, positions(&[(0, 8), (1, 4)]));
    let read = ids_by_partition(&read_until(&mut reader, &end).await);
    assert_eq!(read[&0], vec![5, 6, 7]);
    assert_eq!(read[&1], vec![13]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_mode_starts_at_the_first_record_at_or_after_the_time() {
    let broker = Broker::start();
    broker.create_topic("timed", 1).await;
    produce_ids(&broker, "timed", 0, 0..4).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    tokio::time::sleep(Duration::from_millis(20)).await;
    produce_ids(&broker, "timed", 0, 4..6).await;

    let mut reader = open(
        &broker,
        "timed",
        &[
            ("scan.startup.mode", "timestamp"),
            ("scan.startup.timestamp.millis", &millis),
        ],
    )
    .await;
    assert_eq!(reader.positions(), &positions(&[(0, 4)]));
    let end = reader.end_positions().await.unwrap();
    let read = ids_by_partition(&read_until(&mut reader, &end).await);
    assert_eq!(read[&0], vec![4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_resume_after_the_committed_positions() {
    let broker = Broker::start();
    broker.create_topic("grouped", 2).await;
    produce_ids(&broker, "grouped", 0, 0..3).await;
    produce_ids(&broker, "grouped", 1, 10..12).await;
    let group = [
        ("scan.startup.mode", "group-offsets"),
        ("properties.group.id", "weir-test"),
    ];
    {
        // No committed offsets yet: from the beginning.
        let mut reader = open(&broker, "grouped", &group).await;
        assert_eq!(reader.positions(), &positions(&[(0, 0), (1, 0)]));
        let end = reader.end_positions().await.unwrap();
        let read = ids_by_partition(&read_until(&mut reader, &end).await);
        assert_eq!(read[&0], vec![0, 1, 2]);
        // Let the asynchronous commit reach the broker.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    produce_ids(&broker, "grouped", 0, 3..5).await;
    let mut reader = open(&broker, "grouped", &group).await;
    assert_eq!(reader.positions(), &positions(&[(0, 3), (1, 2)]));
    let end = reader.end_positions().await.unwrap();
    let read = ids_by_partition(&read_until(&mut reader, &end).await);
    assert_eq!(read[&0], vec![3, 4]);
    assert!(!read.contains_key(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_skipped_and_counted() {
    let broker = Broker::start();
    broker.create_topic("dirty", 1).await;
    let payloads = [
        event(1),
        "{\"id\": 2, \"name\": ".to_string(),
        event(3),
        r#"{"id": "four"}"#.to_string(),
        event(5),
    ];
    broker.produce("dirty", 0, &payloads).await;
    let mut reader = open(&broker, "dirty", &[]).await;
    let end = reader.end_positions().await.unwrap();
    let read = ids_by_partition(&read_until(&mut reader, &end).await);
    assert_eq!(read[&0], vec![1, 3, 5]);
    assert_eq!(reader.decode_errors(), 2);
    assert_eq!(reader.positions(), &positions(&[(0, 5)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_fail_names_topic_partition_and_offset() {
    let broker = Broker::start();
    broker.create_topic("strict", 2).await;
    let payloads = [event(1), event(2), r#"{"id": "three"}"#.to_string()];
    broker.produce("strict", 1, &payloads).await;
    let mut reader = open(&broker, "strict", &[("format.on_error", "fail")]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        assert!(Instant::now() < deadline, "no decode error in 30 s");
        match reader.poll().await {
            Err(e) => break e.to_string(),
            Ok(Poll::Records(_) | Poll::Idle) => {}
            Ok(Poll::End) => panic!("a Kafka source never ends"),
        }
    };
    assert!(
        err.contains("offset 2") && err.contains("partition 1") && err.contains("'strict'"),
        "{err}"
    );
    assert!(err.contains("three"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_records() {
    let broker = Broker::start();
    broker.create_topic("lines", 1).await;
    broker
        .produce(
            "lines",
            0,
            &[
                "1;one;2024-01-01 00:00:01",
                "2;two",
                "3;;2024-01-01T00:00:03Z",
            ],
        )
        .await;
    let mut reader = open(
        &broker,
        "lines",
        &[("format", "csv"), ("csv.delimiter", ";")],
    )
    .await;
    let end = reader.end_positions().await.unwrap();
    let read = read_until(&mut reader, &end).await;
    assert_eq!(ids(&read[&0]), vec![1, 3]);
    assert!(read[&0].iter().any(|b| b.column(1).null_count() == 1));
    assert_eq!(reader.decode_errors(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_are_passed_over() {
    let broker = Broker::start();
    broker.create_topic("tomb", 1).await;
    // An empty payload is a (bad) record; a null payload is a tombstone.
    weir::connector::kafka::produce(
        &broker.addr(),
        "tomb",
        vec![
            (Some(0), event(1).into_bytes()),
            (Some(0), event(2).into_bytes()),
        ],
    )
    .await
    .unwrap();
    produce_tombstone(&broker, "tomb").await;
    produce_ids(&broker, "tomb", 0, 3..4).await;
    let mut reader = open(&broker, "tomb", &[]).await;
    let end = reader.end_positions().await.unwrap();
    assert_eq!(end, positions(&[(0, 4)]));
    let read = ids_by_partition(&read_until(&mut reader, &end).await);
    assert_eq!(read[&0], vec![1, 2, 3]);
    assert_eq!(reader.decode_errors(), 0);
}

async fn produce_tombstone(broker: &Broker, topic: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::<str, [u8]>::to(topic).partition(0).key("k"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_fails_naming_topic_and_brokers() {
    let broker = Broker::start();
    let err = KafkaSpec::from_options(schema(), &options(&broker, "nowhere", &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'nowhere'") && err.contains(&broker.addr()) && err.contains("does not exist"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_fail_naming_the_option() {
    let broker = Broker::start();
    broker.create_topic("opts", 1).await;
    let err = |extra: &'static [(&'static str, &'static str)]| {
        let o = options(&broker, "opts", extra);
        async move {
            KafkaSpec::from_options(schema(), &o)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let e = err(&[("scan.startup.mode", "foo")]).await;
    assert!(
        e.contains("'scan.startup.mode'") && e.contains("'group-offsets'"),
        "{e}"
    );
    let e = err(&[("startup.mode", "latest")]).await;
    assert!(e.contains("unknown option 'startup.mode'"), "{e}");
    let e = err(&[("format", "xml")]).await;
    assert!(e.contains("'format'"), "{e}");
}

/// tansu 0.6 answers CreatePartitions with UnsupportedFeature, and a topic deleted and
/// created again under a running librdkafka client crashes it (in its metadata cache), so
/// this one needs a broker that can grow a topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu 0.6 cannot add partitions (no CreatePartitions)"]
async fn partitions_added_while_reading_are_read_from_their_beginning() {
    let broker = Broker::start();
    broker.create_topic("growing", 1).await;
    produce_ids(&broker, "growing", 0, 0..2).await;
    let mut reader = open(&broker, "growing", &[]).await;
    let end = reader.end_positions().await.unwrap();
    assert_eq!(
        ids_by_partition(&read_until(&mut reader, &end).await)[&0],
        vec![0, 1]
    );

    kafka::add_partitions(&broker.addr(), "growing", 3)
        .await
        .unwrap();
    produce_ids(&broker, "growing", 2, 20..23).await;
    let end = reader.end_positions().await.unwrap();
    assert_eq!(end, positions(&[(0, 2), (1, 0), (2, 3)]));
    assert_eq!(reader.partitions(), vec![0, 1, 2]);
    let read = ids_by_partition(&read_until(&mut reader, &end).await);
    assert_eq!(read[&2], vec![20, 21, 22]);
}
