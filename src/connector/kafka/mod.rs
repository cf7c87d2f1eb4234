//! Kafka source: its `WITH (…)` options, checked against the topic when the source is
//! created. The reader of its partitions is in `reader`; the producer and admin helpers
//! of `weir produce`, `weir gen` and the tests in `admin`.

mod admin;
mod reader;

pub use admin::{add_partitions, create_topic, produce, producer, records_from_lines};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::task::JoinHandle;

use super::retry::Health;
use super::{
    DECODE_SAMPLES, DecodeSample, Outage, PartitionBatch, Poll, Positions, SAMPLE_BYTES,
    SourceReader, check_options, now_micros, parsed, required,
};
use crate::decode::{Decoder, Format, TimeGuard};
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;

const CONNECTOR: &str = "kafka";
/// Options of the connector besides `COMMON_OPTIONS` and `properties.*`.
const OPTIONS: &[&str] = &[
    "topic",
    "scan.startup.mode",
    "scan.startup.timestamp.millis",
    "format",
    "csv.delimiter",
    "format.on_error",
];
/// Bound on every metadata, offset and watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `poll` waits for a first message.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// The most messages one `poll` gathers.
const MAX_POLL_RECORDS: usize = 8192;
/// How often a reader looks for new partitions of its topic.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// The same broker warning is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Where a new reader starts in each partition (`scan.startup.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupMode {
    /// The first offset still in the partition (the default).
    Earliest,
    /// The end of the partition when the reader opens: only later records.
    Latest,
    /// The consumer group's committed offsets (`properties.group.id`), else earliest.
    GroupOffsets,
    /// The first record whose timestamp is at or after these milliseconds since the epoch.
    Timestamp(i64),
}

/// What to do with a payload that cannot be decoded (`format.on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Skip it and count it (`decode_errors`).
    Skip,
    /// Fail the reader, naming topic, partition and offset.
    Fail,
}

/// A validated Kafka source definition: what `CREATE SOURCE … WITH (connector = 'kafka')`
/// says, ready to open readers.
#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub topic: String,
    /// `properties.*` without the prefix, handed to librdkafka as they are.
    pub properties: BTreeMap<String, String>,
    pub startup: StartupMode,
    pub format: Format,
    pub on_error: OnError,
    pub schema: SchemaRef,
}

impl KafkaSpec {
    /// Validates options against the declared schema, at CREATE SOURCE time, and checks
    /// that the topic exists (a metadata request bounded by a few seconds).
    pub async fn from_options(schema: SchemaRef, options: &Options) -> Result<KafkaSpec> {
        let spec = Self::parse(schema, options)?;
        let check = spec.clone();
        off_runtime(move || check.partition_ids(&check.consumer()?).map(drop)).await?;
        Ok(spec)
    }

    /// The checks of [`KafkaSpec::from_options`] that need no broker.
    pub fn parse(schema: SchemaRef, options: &Options) -> Result<KafkaSpec> {
        check_options(CONNECTOR, options, OPTIONS, &["properties."])?;
        let topic = required(CONNECTOR, options, "topic")?.to_string();
        if topic.trim().is_empty() {
            return Err(invalid(
                "option 'topic' of connector 'kafka' must not be empty",
            ));
        }
        required(CONNECTOR, options, "properties.bootstrap.servers")?;
        let properties = properties(options)?;

        let mode = one_of(
            options,
            "scan.startup.mode",
            &["earliest", "latest", "group-offsets", "timestamp"],
        )?;
        let millis: Option<i64> = parsed(
            CONNECTOR,
            options,
            "scan.startup.timestamp.millis",
            "milliseconds since 1970-01-01 UTC",
        )?;
        let startup = match (mode.as_deref().unwrap_or("earliest"), millis) {
            ("timestamp", Some(ms)) => StartupMode::Timestamp(ms),
            ("timestamp", None) => {
                return Err(invalid(
                    "'scan.startup.mode' = 'timestamp' needs the option 'scan.startup.timestamp.millis'",
                ));
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "option 'scan.startup.timestamp.millis' needs 'scan.startup.mode' = 'timestamp'",
                ));
            }
            ("latest", None) => StartupMode::Latest,
            ("group-offsets", None) => StartupMode::GroupOffsets,
            _ => StartupMode::Earliest,
        };
        if startup == StartupMode::GroupOffsets && !properties.contains_key("group.id") {
            return Err(invalid(
                "'scan.startup.mode' = 'group-offsets' needs the option 'properties.group.id'",
            ));
        }

        let format = match one_of(options, "format", &["json", "csv"])?.as_deref() {
            Some("csv") => Format::Csv {
                delimiter: delimiter(options)?,
            },
            _ => {
                if options.get("csv.delimiter").is_some() {
                    return Err(invalid("option 'csv.delimiter' needs 'format' = 'csv'"));
                }
                Format::Json
            }
        };
        let on_error = match one_of(options, "format.on_error", &["skip", "fail"])?.as_deref() {
            Some("fail") => OnError::Fail,
            _ => OnError::Skip,
        };
        Decoder::new(schema.clone(), format)?;
        let spec = KafkaSpec {
            topic,
            properties,
            startup,
            format,
            on_error,
            schema,
        };
        // Unknown or malformed librdkafka properties fail here rather than at open.
        spec.client_config()
            .create_native_config()
            .map_err(|e| spec.bad_properties(e))?;
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
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // librdkafka reconnects by itself; cap its back-off as the reader caps its own.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000")
            // librdkafka assigns partitions through a group handle, so it needs an id even
            // though nothing joins or commits unless the startup mode is group-offsets.
            .set("group.id", "weir");
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    fn bad_properties(&self, e: KafkaError) -> WeirError {
        invalid(format!(
            "invalid Kafka properties for topic '{}': {e}",
            self.topic
        ))
    }

    /// The end offset (high watermark) of each partition now, from a consumer of its own.
    pub async fn end_offsets(&self, partitions: Vec<i32>) -> Result<Positions> {
        let spec = self.clone();
        tokio::task::spawn_blocking(move || {
            let c = spec.consumer()?;
            partitions
                .into_iter()
                .map(|p| Ok((p, spec.watermarks(&c, p)?.1)))
                .collect()
        })
        .await
        .map_err(|e| WeirError::Internal(e.to_string()))?
    }

    fn consumer(&self) -> Result<BaseConsumer> {
        self.client_config()
            .create()
            .map_err(|e| self.bad_properties(e))
    }

    fn broker_error(&self, what: &str, e: KafkaError) -> WeirError {
        WeirError::Transient(format!(
            "{what} topic '{}' on brokers '{}': {e}",
            self.topic,
            self.brokers()
        ))
    }

    /// The topic's partitions, from a fresh metadata request.
    fn partition_ids(&self, c: &BaseConsumer) -> Result<Vec<i32>> {
        self.lookup(c, false)
    }

    /// Whether the topic can be read now: a fresh metadata request names it, and every
    /// partition has a leader. A topic that does not exist (any more) is an
    /// `InvalidParameter` error; brokers that cannot be reached or answer errors, an `Io` one.
    fn probe(&self, c: &BaseConsumer) -> Result<()> {
        self.lookup(c, true).map(drop)
    }

    /// The topic's partitions from a fresh metadata request; with `leaders`, an error for a
    /// partition without leader or with an error of its own.
    fn lookup(&self, c: &BaseConsumer, leaders: bool) -> Result<Vec<i32>> {
        let metadata = c
            .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
            .map_err(|e| self.broker_error("could not fetch metadata of", e))?;
        let topic = metadata.topics().iter().find(|t| t.name() == self.topic);
        let missing = || {
            invalid(format!(
                "Kafka topic '{}' does not exist on brokers '{}'",
                self.topic,
                self.brokers()
            ))
        };
        let topic = topic.ok_or_else(missing)?;
        match topic.error() {
            None => {}
            Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => return Err(missing()),
            Some(e) => {
                return Err(self.broker_error(
                    "metadata error for",
                    KafkaError::MetadataFetch(RDKafkaErrorCode::from(e)),
                ));
            }
        }
        if leaders {
            for p in topic.partitions() {
                if let Some(e) = p.error() {
                    return Err(self.broker_error(
                        &format!("metadata error for partition {} of", p.id()),
                        KafkaError::MetadataFetch(RDKafkaErrorCode::from(e)),
                    ));
                }
                if p.leader() < 0 {
                    return Err(kafka_io(format!(
                        "partition {} of topic '{}' on brokers '{}' has no leader",
                        p.id(),
                        self.topic,
                        self.brokers()
                    )));
                }
            }
        }
        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        if ids.is_empty() {
            return Err(missing());
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn watermarks(&self, c: &BaseConsumer, partition: i32) -> Result<(i64, i64)> {
        c.fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| {
                self.broker_error(
                    &format!("could not fetch offsets of partition {partition} of"),
                    e,
                )
            })
    }

    /// The earliest and latest offset of each of the topic's partitions now.
    fn marks(&self, c: &BaseConsumer) -> Result<BTreeMap<i32, (i64, i64)>> {
        self.partition_ids(c)?
            .into_iter()
            .map(|p| Ok((p, self.watermarks(c, p)?)))
            .collect()
    }

    /// The first offset to read in each partition, by the startup mode.
    fn start_positions(&self, c: &BaseConsumer) -> Result<Positions> {
        let marks = self.marks(c)?;
        let ids: Vec<i32> = marks.keys().copied().collect();
        let found: BTreeMap<i32, Offset> = match self.startup {
            StartupMode::Earliest | StartupMode::Latest => BTreeMap::new(),
            StartupMode::Timestamp(ms) => {
                let mut tpl = TopicPartitionList::new();
                for &p in &ids {
                    tpl.add_partition_offset(&self.topic, p, Offset::Offset(ms))
                        .map_err(|e| self.broker_error("bad timestamp for", e))?;
                }
                let tpl = c
                    .offsets_for_times(tpl, REQUEST_TIMEOUT)
                    .map_err(|e| self.broker_error("could not look up offsets by time of", e))?;
                offsets_of(&tpl)
            }
            StartupMode::GroupOffsets => {
                let mut tpl = TopicPartitionList::new();
                for &p in &ids {
                    tpl.add_partition(&self.topic, p);
                }
                let tpl = c
                    .committed_offsets(tpl, REQUEST_TIMEOUT)
                    .map_err(|e| self.broker_error("could not fetch committed offsets of", e))?;
                offsets_of(&tpl)
            }
        };
        Ok(marks
            .into_iter()
            .map(|(p, (low, high))| {
                let start = match (self.startup, found.get(&p)) {
                    (StartupMode::Latest, _) => high,
                    (StartupMode::Timestamp(_), Some(Offset::Offset(n))) => *n,
                    // No record at or after the time: start at the end.
                    (StartupMode::Timestamp(_), _) => high,
                    (StartupMode::GroupOffsets, Some(Offset::Offset(n))) => *n,
                    _ => low,
                };
                (p, within(start, (low, high)))
            })
            .collect())
    }

    /// The offsets to resume at: `resume`'s, within what each partition still holds.
    fn resume_positions(&self, c: &BaseConsumer, resume: &Positions) -> Result<Positions> {
        let mut out = Positions::new();
        for (p, (low, high)) in self.marks(c)? {
            let want = resume.get(&p).copied().unwrap_or(low);
            if want < low {
                tracing::warn!(
                    topic = %self.topic,
                    "partition {p}: offsets {want} to {low} are no longer in the topic \
                     (retention); resuming at {low}"
                );
            }
            if want > high {
                tracing::warn!(
                    topic = %self.topic,
                    "partition {p}: the checkpoint is at offset {want} but the topic ends at \
                     {high} (was it recreated?); resuming at {high}"
                );
            }
            out.insert(p, within(want, (low, high)));
        }
        Ok(out)
    }

    fn assignment(&self, positions: &Positions) -> Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &offset) in positions {
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(offset))
                .map_err(|e| self.broker_error("bad offset for", e))?;
        }
        Ok(tpl)
    }
}

/// `offset` moved into a partition's `(earliest, latest)` offsets.
fn within(offset: i64, (low, high): (i64, i64)) -> i64 {
    offset.clamp(low, high.max(low))
}

fn invalid(msg: impl Into<String>) -> WeirError {
    WeirError::InvalidParameter(msg.into())
}

/// An option restricted to a few values (compared case-insensitively), or an error naming
/// the option and the valid values.
fn one_of(options: &Options, key: &str, valid: &[&str]) -> Result<Option<String>> {
    let Some(v) = options.get(key) else {
        return Ok(None);
    };
    let v = v.trim().to_ascii_lowercase();
    if valid.contains(&v.as_str()) {
        Ok(Some(v))
    } else {
        Err(invalid(format!(
            "option '{key}' of connector '{CONNECTOR}' must be one of {}; got '{}'",
            valid
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", "),
            options.get(key).unwrap_or_default()
        )))
    }
}

fn delimiter(options: &Options) -> Result<u8> {
    match options.get("csv.delimiter") {
        None => Ok(b','),
        Some("\\t") => Ok(b'\t'),
        Some(d) if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
        Some(d) => Err(invalid(format!(
            "option 'csv.delimiter' of connector 'kafka' must be one ASCII character (or '\\t'); got '{d}'"
        ))),
    }
}

fn offsets_of(tpl: &TopicPartitionList) -> BTreeMap<i32, Offset> {
    tpl.elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

/// Runs blocking librdkafka calls off the async runtime.
async fn off_runtime<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    joined(tokio::task::spawn_blocking(f)).await
}

/// The result of a background Kafka call; its panic as an error.
async fn joined<T>(task: JoinHandle<Result<T>>) -> Result<T> {
    task.await
        .map_err(|e| WeirError::Internal(format!("Kafka call panicked: {e}")))?
}

/// The result of the call in `slot`, taken from it: waited for with `wait`, else only if
/// it is done. `None` while there is nothing to take.
async fn take_done<T>(slot: &mut Option<JoinHandle<Result<T>>>, wait: bool) -> Option<Result<T>> {
    if !slot.as_ref().is_some_and(|h| wait || h.is_finished()) {
        return None;
    }
    Some(joined(slot.take()?).await)
}

/// [`off_runtime`] with a shared consumer.
async fn blocking<T, F>(consumer: &Arc<BaseConsumer>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&BaseConsumer) -> Result<T> + Send + 'static,
{
    let c = consumer.clone();
    off_runtime(move || f(&c)).await
}

fn kafka_io(msg: String) -> WeirError {
    WeirError::Transient(msg)
}

#[async_trait::async_trait]
impl crate::connector::SourceConnector for KafkaSpec {
    fn name(&self) -> &'static str {
        "kafka"
    }

    /// A new reader (a view calls it when it starts) that decodes the `columns` given
    /// (indexes into the schema) and leaves the other nullable ones NULL. It starts where
    /// the startup mode says, or at `resume` (a checkpoint's next offsets) if given;
    /// partitions `resume` does not know start at their earliest offset.
    async fn reader(
        &self,
        columns: &[usize],
        resume: Option<&Positions>,
        guard: Option<TimeGuard>,
    ) -> Result<Box<dyn SourceReader>> {
        let spec = self.clone();
        let resume = resume.cloned();
        let (consumer, positions) = off_runtime(move || {
            let c = spec.consumer()?;
            let start = match &resume {
                Some(r) => spec.resume_positions(&c, r)?,
                None => spec.start_positions(&c)?,
            };
            c.assign(&spec.assignment(&start)?)
                .map_err(|e| spec.broker_error("assigning partitions of", e))?;
            Ok((Arc::new(c), start))
        })
        .await?;
        tracing::debug!(topic = %self.topic, ?positions, "kafka reader assigned");
        Ok(Box::new(reader::KafkaReader::new(
            self, consumer, positions, columns, guard,
        )?))
    }

    async fn end_positions(&self, partitions: Vec<i32>) -> Positions {
        self.end_offsets(partitions).await.unwrap_or_default()
    }
}

/// librdkafka settings that load code or run a command on the server: never from SQL.
const CODE_PROPERTIES: &[&str] = &[
    "plugin.library.paths",
    "ssl.engine.location",
    "ssl.providers",
    "sasl.kerberos.kinit.cmd",
];

/// librdkafka settings that name a file on the server: it must be an allowed location.
const FILE_PROPERTIES: &[&str] = &[
    "ssl.key.location",
    "ssl.certificate.location",
    "ssl.ca.location",
    "ssl.crl.location",
    "ssl.keystore.location",
    "sasl.kerberos.keytab",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.jwt.template.file",
];

/// The `properties.*` options without their prefix, for librdkafka (sources, sinks):
/// settings that load code are refused, and files must lie in the allowed locations
/// (42501 either way).
pub fn properties(options: &Options) -> Result<BTreeMap<String, String>> {
    let mut properties = BTreeMap::new();
    for (key, value) in &options.0 {
        let Some(name) = key.strip_prefix("properties.") else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        if CODE_PROPERTIES.contains(&lower.as_str()) {
            return Err(WeirError::InsufficientPrivilege(format!(
                "option '{key}' is refused: it would load code or run a command on the server"
            )));
        }
        // `ssl.ca.location = 'probe'` asks librdkafka to find the system's certificates.
        let value = if FILE_PROPERTIES.contains(&lower.as_str()) && value != "probe" {
            crate::storage::resolve_location(value, None).map_err(|e| match e {
                WeirError::InsufficientPrivilege(m) => {
                    WeirError::InsufficientPrivilege(format!("option '{key}': {m}"))
                }
                other => other,
            })?
        } else {
            value.clone()
        };
        properties.insert(name.to_string(), value);
    }
    Ok(properties)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::schema_of;
    use datafusion::arrow::datatypes::{DataType, IntervalUnit};

    fn options(pairs: &[(&str, &str)]) -> Options {
        let mut o = Options::default();
        o.0.insert("connector".into(), "kafka".into());
        o.0.insert("topic".into(), "events".into());
        o.0.insert("properties.bootstrap.servers".into(), "127.0.0.1:9".into());
        for (k, v) in pairs {
            o.0.insert(k.to_string(), v.to_string());
        }
        o
    }

    fn schema() -> SchemaRef {
        schema_of(&[("id", DataType::Int64), ("name", DataType::Utf8)])
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        KafkaSpec::parse(schema(), &options(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn produce_lines() {
        let records = records_from_lines("a\n\n@2 {\"x\": 1}\n@x y\n@0\n", Some(1)).unwrap();
        let expect: Vec<(Option<i32>, Vec<u8>)> = vec![
            (Some(1), b"a".to_vec()),
            (Some(2), b"{\"x\": 1}".to_vec()),
            (Some(1), b"@x y".to_vec()),
            (Some(0), b"".to_vec()),
        ];
        assert_eq!(records, expect);
        assert_eq!(
            records_from_lines("b", None).unwrap(),
            vec![(None, b"b".to_vec())]
        );
        assert!(records_from_lines("@-1 z", None).is_err());
    }

    #[test]
    fn defaults() {
        let spec = KafkaSpec::parse(schema(), &options(&[])).unwrap();
        assert_eq!(spec.topic, "events");
        assert_eq!(spec.startup, StartupMode::Earliest);
        assert_eq!(spec.format, Format::Json);
        assert_eq!(spec.on_error, OnError::Skip);
        assert_eq!(spec.properties["bootstrap.servers"], "127.0.0.1:9");
    }

    #[test]
    fn every_option() {
        let spec = KafkaSpec::parse(
            schema(),
            &options(&[
                ("scan.startup.mode", "Timestamp"),
                ("scan.startup.timestamp.millis", "1700000000000"),
                ("format", "csv"),
                ("csv.delimiter", "|"),
                ("format.on_error", "fail"),
                ("properties.group.id", "g"),
                ("properties.client.id", "weir-test"),
            ]),
        )
        .unwrap();
        assert_eq!(spec.startup, StartupMode::Timestamp(1_700_000_000_000));
        assert_eq!(spec.format, Format::Csv { delimiter: b'|' });
        assert_eq!(spec.on_error, OnError::Fail);
        assert_eq!(spec.properties["group.id"], "g");
        assert_eq!(spec.properties.len(), 3);
    }

    #[test]
    fn bad_options_fail_naming_the_option() {
        let e = err(&[("scan.startup.mode", "foo")]);
        assert!(
            e.contains("'scan.startup.mode'")
                && e.contains("'earliest', 'latest'")
                && e.contains("'foo'"),
            "{e}"
        );
        let e = err(&[("startup", "earliest")]);
        assert!(
            e.contains("unknown option 'startup'") && e.contains("properties.*"),
            "{e}"
        );
        let e = err(&[("format", "avro")]);
        assert!(e.contains("'format'") && e.contains("'json', 'csv'"), "{e}");
        let e = err(&[("format.on_error", "ignore")]);
        assert!(
            e.contains("'format.on_error'") && e.contains("'skip', 'fail'"),
            "{e}"
        );
        let e = err(&[("scan.startup.mode", "timestamp")]);
        assert!(e.contains("'scan.startup.timestamp.millis'"), "{e}");
        let e = err(&[("scan.startup.timestamp.millis", "12")]);
        assert!(e.contains("'timestamp'"), "{e}");
        let e = err(&[
            ("scan.startup.mode", "timestamp"),
            ("scan.startup.timestamp.millis", "yesterday"),
        ]);
        assert!(
            e.contains("'scan.startup.timestamp.millis'") && e.contains("yesterday"),
            "{e}"
        );
        let e = err(&[("scan.startup.mode", "group-offsets")]);
        assert!(e.contains("'properties.group.id'"), "{e}");
        let e = err(&[("format", "csv"), ("csv.delimiter", ";;")]);
        assert!(e.contains("'csv.delimiter'"), "{e}");
        let e = err(&[("csv.delimiter", ";")]);
        assert!(e.contains("'csv.delimiter'") && e.contains("csv"), "{e}");
        let e = err(&[("properties.no.such.thing", "1")]);
        assert!(e.contains("no.such.thing"), "{e}");

        let mut o = options(&[]);
        o.0.remove("properties.bootstrap.servers");
        let e = KafkaSpec::parse(schema(), &o).unwrap_err().to_string();
        assert!(e.contains("'properties.bootstrap.servers'"), "{e}");
        let mut o = options(&[]);
        o.0.remove("topic");
        let e = KafkaSpec::parse(schema(), &o).unwrap_err().to_string();
        assert!(e.contains("'topic'"), "{e}");
    }

    #[test]
    fn undecodable_column_fails() {
        let s = schema_of(&[("gap", DataType::Interval(IntervalUnit::MonthDayNano))]);
        let e = KafkaSpec::parse(s, &options(&[])).unwrap_err().to_string();
        assert!(e.contains("\"gap\""), "{e}");
    }

    #[tokio::test]
    async fn unreachable_brokers_fail_within_the_timeout() {
        let started = Instant::now();
        let e = KafkaSpec::from_options(schema(), &options(&[]))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("'events'") && e.contains("127.0.0.1:9"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(15));
    }
}
