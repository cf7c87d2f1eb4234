//! Connectors: where records come from. Each source kind validates its `WITH (…)` options
//! when the source is created (a [`SourceConnector`], registered once in
//! [`source_connector`]) and turns its input into Arrow record batches per partition (a
//! [`SourceReader`]); event time and windows come after ([`crate::window`]).

pub mod datagen;
pub mod generated;
pub mod joined;
pub mod kafka;
pub mod nexmark;
pub mod retry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::decode::TimeGuard;
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;

pub use retry::Outage;

/// Where a reader stands: the next offset to read, per partition.
pub type Positions = BTreeMap<i32, i64>;

/// Decoded records of one partition, in the partition's order.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub partition: i32,
    pub batch: RecordBatch,
}

/// What one `SourceReader::poll` found.
#[derive(Debug)]
pub enum Poll {
    /// Decoded records (possibly of several partitions); `positions()` is past them.
    Records(Vec<PartitionBatch>),
    /// Nothing arrived while the poll waited.
    Idle,
    /// A bounded source has no more records.
    End,
}

/// A kind of source as `CREATE SOURCE` configured it: its validated options, and the
/// factory of the readers each view opens.
#[async_trait]
pub trait SourceConnector: std::fmt::Debug + Send + Sync {
    /// The name `WITH (connector = …)` gives.
    fn name(&self) -> &'static str;
    /// A new reader that fills the `columns` given (indexes into the source's schema;
    /// others may be left NULL), positioned where the start-up options say, or at
    /// `resume` (a checkpoint's positions). A connector that decodes records checks
    /// their event times with `guard` (the others generate their own).
    async fn reader(
        &self,
        columns: &[usize],
        resume: Option<&Positions>,
        guard: Option<TimeGuard>,
    ) -> Result<Box<dyn SourceReader>>;
    /// Where the source ends now, per partition (empty where it cannot be known).
    async fn end_positions(&self, partitions: Vec<i32>) -> Positions;
    /// Whether a reader can start again from positions, so that a checkpoint keeps
    /// the state of the views reading it.
    fn replayable(&self) -> bool {
        true
    }
}

/// The source connectors, by the name `WITH (connector = …)` gives.
pub const SOURCE_CONNECTORS: &str = "'kafka', 'datagen', 'nexmark'";

/// The connector `options` name for source `source`, its options validated, and the
/// source's columns (`declared`, or the connector's own). `offline` (`weir check`):
/// nothing is asked of a broker.
pub async fn source_connector(
    source: &str,
    declared: Option<SchemaRef>,
    options: &Options,
    offline: bool,
) -> Result<(Arc<dyn SourceConnector>, SchemaRef)> {
    let name = options.get("connector").ok_or_else(|| {
        WeirError::InvalidParameter(format!(
            "source \"{source}\" needs WITH (connector = …); valid connectors: {SOURCE_CONNECTORS}"
        ))
    })?;
    Ok(match name.to_ascii_lowercase().as_str() {
        "kafka" => {
            let schema = declared.ok_or_else(|| {
                WeirError::InvalidParameter(format!(
                    "kafka source \"{source}\" needs its columns: CREATE SOURCE {source} (col TYPE, …) WITH (…)"
                ))
            })?;
            let spec = if offline {
                kafka::KafkaSpec::parse(schema.clone(), options)?
            } else {
                kafka::KafkaSpec::from_options(schema.clone(), options).await?
            };
            (Arc::new(spec), schema)
        }
        "datagen" => {
            let (spec, schema) = datagen::DatagenSpec::from_options(declared, options)?;
            (Arc::new(spec), schema)
        }
        "nexmark" => {
            let (spec, schema) = nexmark::NexmarkSpec::from_options(declared, options)?;
            (Arc::new(spec), schema)
        }
        other => {
            return Err(WeirError::InvalidParameter(format!(
                "unknown connector '{other}'; valid connectors: {SOURCE_CONNECTORS}"
            )));
        }
    })
}

/// The record to start from of a source with one partition, numbered from 0 (the
/// generators).
pub fn skip_of(resume: Option<&Positions>) -> i64 {
    resume.and_then(|r| r.get(&0)).copied().unwrap_or(0)
}

/// One reader of a source: every materialized view reads its source through its own.
#[async_trait]
pub trait SourceReader: Send {
    /// Waits up to about 100 ms for records.
    async fn poll(&mut self) -> Result<Poll>;
    /// What is in the source now; `FLUSH` waits until `positions()` reaches it.
    async fn end_positions(&mut self) -> Result<Positions>;
    /// The next offset per partition, after everything `poll` returned.
    fn positions(&self) -> &Positions;
    /// The partitions being read (a watermark waits for each until it is idle).
    fn partitions(&self) -> Vec<i32>;
    /// Records skipped because they could not be decoded.
    fn decode_errors(&self) -> u64;
    /// The last few of those records, newest last.
    fn decode_samples(&self) -> Vec<DecodeSample> {
        Vec::new()
    }
    /// The source cannot be reached or answers errors, and the reader keeps retrying.
    fn outage(&self) -> Option<Outage> {
        None
    }
}

/// A record a source skipped because it could not be decoded.
#[derive(Debug, Clone)]
pub struct DecodeSample {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    /// The record's first bytes, as text (invalid UTF-8 replaced).
    pub payload: String,
    /// When it was skipped, in microseconds since the Unix epoch.
    pub at: i64,
}

/// Microseconds since the Unix epoch now (0 on a clock set before it).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Samples kept per reader.
pub const DECODE_SAMPLES: usize = 10;
/// Bytes of a sample's payload kept.
pub const SAMPLE_BYTES: usize = 200;

/// Has `positions` reached every offset of `target`?
pub fn reached(positions: &Positions, target: &Positions) -> bool {
    target
        .iter()
        .all(|(p, end)| positions.get(p).copied().unwrap_or(0) >= *end)
}

/// Options every connector accepts; the stream layer reads them.
pub const COMMON_OPTIONS: &[&str] = &[
    "connector",
    "watermark.idle_timeout",
    "watermark.max_future",
];

/// Fail on an option `connector` does not know, naming it and listing the valid ones.
/// `prefixes` are families passed through as they are (`properties.`).
pub fn check_options(
    connector: &str,
    options: &Options,
    valid: &[&str],
    prefixes: &[&str],
) -> Result<()> {
    for key in options.0.keys() {
        let known = COMMON_OPTIONS.contains(&key.as_str())
            || valid.contains(&key.as_str())
            || prefixes.iter().any(|p| key.starts_with(p));
        if !known {
            let mut list: Vec<String> = COMMON_OPTIONS
                .iter()
                .chain(valid)
                .map(|s| s.to_string())
                .collect();
            list.extend(prefixes.iter().map(|p| format!("{p}*")));
            return Err(WeirError::InvalidParameter(format!(
                "unknown option '{key}' for connector '{connector}'; valid options: {}",
                list.join(", ")
            )));
        }
    }
    Ok(())
}

/// The value of a required option, or an error naming it.
pub fn required<'a>(connector: &str, options: &'a Options, key: &str) -> Result<&'a str> {
    options.get(key).ok_or_else(|| {
        WeirError::InvalidParameter(format!("connector '{connector}' needs the option '{key}'"))
    })
}

/// Parse an option's value, or fail naming the option and what it expects.
pub fn parsed<T: std::str::FromStr>(
    connector: &str,
    options: &Options,
    key: &str,
    expects: &str,
) -> Result<Option<T>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
            WeirError::InvalidParameter(format!(
                "option '{key}' of connector '{connector}' must be {expects}, got '{v}'"
            ))
        }),
    }
}
