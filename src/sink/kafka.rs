//! Kafka sink: validates `connector = 'kafka'` sink options, and produces one JSON record
//! per row to a topic (created if missing) with an idempotent rdkafka producer — keyed by
//! the key columns, a tombstone when a view's change leaves a key without a row.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::{Delivery, SinkInput, SinkWriter};
use crate::connector::kafka::create_topic;
use crate::connector::{check_options, required};
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;
use crate::view::changes::{net_effect, split_ops};

const CONNECTOR: &str = "kafka";
/// Options of the sink besides `COMMON_OPTIONS` and `properties.*`.
const OPTIONS: &[&str] = &["topic", "format", "key.columns"];
/// Partitions of a topic the sink creates.
const NEW_TOPIC_PARTITIONS: i32 = 1;
/// How long a record may wait for its delivery (librdkafka retries until then), unless
/// `properties.message.timeout.ms` says otherwise.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A validated `CREATE SINK … WITH (connector = 'kafka', …)`.
///
/// Each row becomes one record whose value is a JSON object of the row's columns (the
/// JSON the `json` source format reads back; timestamps as ISO 8601 text). Its key is made
/// of `key.columns`: one column gives its value as text (a string as it is, without
/// quotes; a number or timestamp as it reads in the JSON), several give a JSON object of
/// those columns; no key columns (or a NULL single key) give a record without key.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    pub topic: String,
    /// `properties.*` without the prefix, handed to the librdkafka producer as they are.
    pub properties: BTreeMap<String, String>,
    /// The columns of a record's key.
    pub key_columns: Vec<String>,
}

impl KafkaSinkSpec {
    /// Checks the options against the sink's input, without reaching the brokers.
    pub fn parse(input: &SinkInput, options: &Options) -> Result<KafkaSinkSpec> {
        check_options(CONNECTOR, options, OPTIONS, &["properties."])?;
        let topic = required(CONNECTOR, options, "topic")?.trim().to_string();
        if topic.is_empty() {
            return Err(invalid(
                "option 'topic' of connector 'kafka' must not be empty",
            ));
        }
        required(CONNECTOR, options, "properties.bootstrap.servers")?;
        match options.get("format").map(|f| f.trim().to_ascii_lowercase()) {
            None => {}
            Some(f) if f == "json" => {}
            Some(f) => {
                return Err(invalid(format!(
                    "option 'format' of the kafka sink must be 'json', got '{f}'"
                )));
            }
        }
        let properties = crate::connector::kafka::properties(options)?;
        let key_columns: Vec<String> = options
            .get("key.columns")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if options.get("key.columns").is_some() && key_columns.is_empty() {
            return Err(invalid("option 'key.columns' names no column"));
        }
        for (i, column) in key_columns.iter().enumerate() {
            if input.schema.index_of(column).is_err() {
                let names: Vec<&str> = input
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                return Err(invalid(format!(
                    "'key.columns' column '{column}' is not a column of '{}'; its columns: {}",
                    input.from,
                    names.join(", ")
                )));
            }
            if key_columns[..i].contains(column) {
                return Err(invalid(format!(
                    "'key.columns' names column '{column}' twice"
                )));
            }
        }
        if input.delivery == Delivery::Changes && key_columns.is_empty() {
            return Err(invalid(format!(
                "the kafka sink '{}' needs 'key.columns': the rows of '{}' change as its \
                 windows fill, so each record is keyed and a row that goes away becomes a \
                 tombstone for its key. Name the columns that identify a row (e.g. \
                 'key.columns' = 'window_start,category'), or give the view EMIT ON WINDOW \
                 CLOSE so that its rows are final and only appended",
                input.sink, input.from
            )));
        }
        let spec = KafkaSinkSpec {
            topic,
            properties,
            key_columns,
        };
        // Unknown or malformed librdkafka properties fail here rather than at open.
        spec.client_config().create_native_config().map_err(|e| {
            invalid(format!(
                "invalid Kafka properties for the sink to topic '{}': {e}",
                spec.topic
            ))
        })?;
        Ok(spec)
    }

    fn brokers(&self) -> &str {
        self.properties
            .get("bootstrap.servers")
            .map(String::as_str)
            .unwrap_or("")
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            // No record twice, none reordered, while librdkafka retries.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            )
            .set("linger.ms", "5")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000");
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// Creates the topic if it is missing, and a producer for it.
    async fn writer(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        let key = self
            .key_columns
            .iter()
            .map(|c| input.schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        create_topic(self.brokers(), &self.topic, NEW_TOPIC_PARTITIONS)
            .await
            .map_err(|e| {
                WeirError::Stopped(format!(
                    "kafka sink '{}' could not reach topic '{}': {e}",
                    input.sink, self.topic
                ))
            })?;
        let config = self.client_config();
        let producer: FutureProducer = config.create().map_err(|e| {
            invalid(format!(
                "kafka sink '{}': producer for brokers '{}': {e}",
                input.sink,
                self.brokers()
            ))
        })?;
        Ok(Box::new(KafkaWriter {
            producer,
            config,
            topic: self.topic.clone(),
            sink: input.sink.clone(),
            delivery: input.delivery,
            key,
            in_flight: VecDeque::new(),
            undelivered: Vec::new(),
            last_failure: None,
        }))
    }
}

struct KafkaWriter {
    producer: FutureProducer,
    /// The producer's settings, to make a new one when this one cannot go on.
    config: ClientConfig,
    topic: String,
    sink: String,
    delivery: Delivery,
    /// Indexes of the key columns.
    key: Vec<usize>,
    /// Records handed to the producer and not yet known delivered, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Records the producer gave up on (the broker was away longer than
    /// `message.timeout.ms`): kept, and sent again at the next flush, so that a flush (and
    /// the checkpoint that waits for it) succeeds only once every record is delivered.
    undelivered: Vec<Record>,
    /// Why the last record was not delivered.
    last_failure: Option<String>,
}

/// A record's key and value (`None`: a tombstone).
type Record = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A record handed to the producer, kept until its delivery is known.
struct InFlight {
    delivery: DeliveryFuture,
    record: Record,
}

/// How many times a flush sends the undelivered records again before it reports failure
/// (each time waits up to `message.timeout.ms` for them).
const FLUSH_ROUNDS: usize = 3;

/// Each row of `batch` as a JSON object (NULL columns included as `null`).
pub fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::LineDelimited>(Vec::new());
    writer.write(batch)?;
    writer.finish()?;
    let text = writer.into_inner();
    let rows: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if rows.len() != batch.num_rows() {
        return Err(WeirError::Internal(format!(
            "{} JSON rows for {} rows",
            rows.len(),
            batch.num_rows()
        )));
    }
    Ok(rows)
}

/// The record keys of `rows`: see [`KafkaSinkSpec`].
pub fn record_keys(rows: &RecordBatch, key: &[usize]) -> Result<Vec<Option<Vec<u8>>>> {
    if key.is_empty() {
        return Ok(vec![None; rows.num_rows()]);
    }
    let objects = json_rows(&rows.project(key)?)?;
    if key.len() > 1 {
        return Ok(objects.into_iter().map(Some).collect());
    }
    objects
        .into_iter()
        .map(|object| {
            let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&object)
                .map_err(|e| WeirError::Internal(format!("a key's JSON: {e}")))?;
            Ok(match value.into_iter().next().map(|(_, v)| v) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.into_bytes()),
                Some(other) => Some(other.to_string().into_bytes()),
            })
        })
        .collect()
}

impl KafkaWriter {
    /// Hands one record to the producer; while its queue is full, waits for the oldest
    /// record in flight.
    async fn send(&mut self, key: Option<&[u8]>, payload: Option<&[u8]>) -> Result<()> {
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic);
            if let Some(k) = key {
                record = record.key(k);
            }
            if let Some(p) = payload {
                record = record.payload(p);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push_back(InFlight {
                        delivery,
                        record: (key.map(<[u8]>::to_vec), payload.map(<[u8]>::to_vec)),
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match self.in_flight.pop_front() {
                        Some(oldest) => self.settle(oldest).await,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    return Err(WeirError::Stopped(format!(
                        "kafka sink '{}' could not produce to topic '{}': {e}",
                        self.sink, self.topic
                    )));
                }
            }
        }
    }

    /// Waits for one record's delivery; a record not delivered is kept to be sent again.
    async fn settle(&mut self, in_flight: InFlight) {
        let failure = match in_flight.delivery.await {
            Ok(Ok(_)) => return,
            Ok(Err((e, _))) => format!(
                "kafka sink '{}': records were not delivered to topic '{}' (sent again at the next flush): {e}",
                self.sink, self.topic
            ),
            Err(_) => format!(
                "kafka sink '{}': the producer for topic '{}' stopped before a record's delivery",
                self.sink, self.topic
            ),
        };
        self.last_failure = Some(failure);
        self.undelivered.push(in_flight.record);
    }

    async fn settle_all(&mut self) {
        while let Some(oldest) = self.in_flight.pop_front() {
            self.settle(oldest).await;
        }
    }

    async fn produce_rows(&mut self, rows: &RecordBatch, tombstones: bool) -> Result<()> {
        let keys = record_keys(rows, &self.key)?;
        if tombstones {
            for key in keys.iter().flatten() {
                self.send(Some(key), None).await?;
            }
        } else {
            for (payload, key) in json_rows(rows)?.iter().zip(&keys) {
                self.send(key.as_deref(), Some(payload)).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for KafkaWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match self.delivery {
            Delivery::Append => self.produce_rows(&batch, false).await,
            Delivery::Changes => {
                // A row that changed comes as its delete then its insert in one batch: only
                // a key left without a row gets a tombstone.
                let net = net_effect(&[split_ops(&batch)?], &self.key)?;
                if let Some(deleted) = net.deletes {
                    self.produce_rows(&deleted, true).await?;
                }
                if let Some(inserted) = net.upserts {
                    self.produce_rows(&inserted, false).await?;
                }
                Ok(())
            }
        }
    }

    /// Waits until every record is delivered, sending again the ones the producer gave
    /// up on; if some still are not, says why and keeps them for the next flush.
    async fn flush(&mut self) -> Result<()> {
        self.settle_all().await;
        for _ in 0..FLUSH_ROUNDS {
            if self.undelivered.is_empty() {
                self.last_failure = None;
                return Ok(());
            }
            // The idempotent producer that gave up on records keeps their sequence numbers,
            // which a broker may refuse from then on: a new producer sends them.
            self.producer = self.config.create().map_err(|e| {
                WeirError::Transient(format!("kafka sink '{}': a new producer: {e}", self.sink))
            })?;
            for (key, payload) in std::mem::take(&mut self.undelivered) {
                self.send(key.as_deref(), payload.as_deref()).await?;
            }
            self.settle_all().await;
        }
        if self.undelivered.is_empty() {
            self.last_failure = None;
            return Ok(());
        }
        Err(WeirError::Transient(format!(
            "{} ({} records waiting)",
            self.last_failure.clone().unwrap_or_default(),
            self.undelivered.len()
        )))
    }
}

fn invalid(msg: impl Into<String>) -> WeirError {
    WeirError::InvalidParameter(msg.into())
}

#[async_trait::async_trait]
impl super::SinkConnector for KafkaSinkSpec {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn open(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        self.writer(input).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn input(delivery: Delivery) -> SinkInput {
        SinkInput {
            sink: "alerts".into(),
            from: "low_stock".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new("product_id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, true),
                Field::new(
                    "at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
            ])),
            delivery,
        }
    }

    fn options(pairs: &[(&str, &str)]) -> Options {
        let mut o = Options::default();
        o.0.insert("connector".into(), "kafka".into());
        o.0.insert("topic".into(), "alerts".into());
        o.0.insert("properties.bootstrap.servers".into(), "127.0.0.1:9".into());
        for (k, v) in pairs {
            o.0.insert(k.to_string(), v.to_string());
        }
        o
    }

    fn err(delivery: Delivery, pairs: &[(&str, &str)]) -> String {
        KafkaSinkSpec::parse(&input(delivery), &options(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn options_and_their_errors() {
        let spec = KafkaSinkSpec::parse(
            &input(Delivery::Changes),
            &options(&[
                ("format", "json"),
                ("key.columns", "product_id"),
                ("properties.linger.ms", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(spec.key_columns, vec!["product_id"]);
        assert_eq!(
            spec.properties.get("linger.ms").map(String::as_str),
            Some("1")
        );
        let e = err(Delivery::Append, &[("format", "csv")]);
        assert!(e.contains("must be 'json', got 'csv'"), "{e}");
        let e = err(Delivery::Append, &[("key", "x")]);
        assert!(
            e.contains("unknown option 'key'") && e.contains("key.columns"),
            "{e}"
        );
        let e = err(Delivery::Append, &[("key.columns", "nope")]);
        assert!(
            e.contains("'nope' is not a column") && e.contains("product_id"),
            "{e}"
        );
        let e = err(Delivery::Changes, &[]);
        assert!(
            e.contains("needs 'key.columns'") && e.contains("EMIT ON WINDOW CLOSE"),
            "{e}"
        );
        let e = err(Delivery::Append, &[("properties.no.such.thing", "1")]);
        assert!(e.contains("invalid Kafka properties"), "{e}");
        let mut o = options(&[]);
        o.0.remove("topic");
        let e = KafkaSinkSpec::parse(&input(Delivery::Append), &o).unwrap_err();
        assert!(e.to_string().contains("'topic'"), "{e}");
    }

    #[test]
    fn rows_as_json_and_keys() {
        let batch = RecordBatch::try_new(
            input(Delivery::Append).schema,
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(StringArray::from(vec![Some("a\nb"), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_500_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let rows: Vec<String> = json_rows(&batch)
            .unwrap()
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap())
            .collect();
        assert_eq!(
            rows,
            vec![
                r#"{"product_id":7,"name":"a\nb","at":"1970-01-01T00:00:01.500Z"}"#,
                r#"{"product_id":8,"name":null,"at":null}"#,
            ]
        );
        let text = |keys: Vec<Option<Vec<u8>>>| -> Vec<Option<String>> {
            keys.into_iter()
                .map(|k| k.map(|k| String::from_utf8(k).unwrap()))
                .collect()
        };
        assert_eq!(
            text(record_keys(&batch, &[0]).unwrap()),
            vec![Some("7".into()), Some("8".into())]
        );
        assert_eq!(
            text(record_keys(&batch, &[1]).unwrap()),
            vec![Some("a\nb".into()), None]
        );
        assert_eq!(
            text(record_keys(&batch, &[0, 1]).unwrap()),
            vec![
                Some(r#"{"product_id":7,"name":"a\nb"}"#.into()),
                Some(r#"{"product_id":8,"name":null}"#.into())
            ]
        );
        assert_eq!(record_keys(&batch, &[]).unwrap(), vec![None, None]);
    }
}
