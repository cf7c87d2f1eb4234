//! Sinks: where a source's records or a view's rows go — Parquet files on an object
//! store, rows upserted into PostgreSQL, JSON records on a Kafka topic. A sink's runner
//! (`runner`) reads its input and hands batches to its connector's [`SinkWriter`]; files
//! are committed in two phases with the checkpoints, so a crash never leaves a half file
//! or a duplicate one.

pub mod kafka;
pub mod parquet;
pub mod postgres;
pub mod runner;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::sql::streaming::Emit;
use crate::view::plan::Operator;
use crate::view::source::SourceDef;
use crate::view::state::View;

/// How a sink's rows arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Append-only rows of the input's schema: a source's records, the rows of a view
    /// without aggregation, or the final rows of an `EMIT ON WINDOW CLOSE` view.
    Append,
    /// A view's changes as they happen (its default emit mode): batches of
    /// [`crate::view::changes::change_schema`] — `weir_timestamp`, `weir_op` (`insert` or
    /// `delete`), then the view's columns. A row that changes comes as a delete of its
    /// old values then an insert of its new ones, in one batch.
    Changes,
}

/// What a writer is made from: the sink's name, its options, and its input.
#[derive(Debug, Clone)]
pub struct SinkInput {
    pub sink: String,
    /// The source or view it reads.
    pub from: String,
    /// The input's columns (a view's or source's schema, without the change columns).
    pub schema: SchemaRef,
    pub delivery: Delivery,
}

pub use crate::checkpoint::Staged;

/// A sink connector's writer, driven by the sink's runner on one task.
#[async_trait]
pub trait SinkWriter: Send {
    /// Take rows: the input's schema for [`Delivery::Append`], the change schema for
    /// [`Delivery::Changes`]. A writer may buffer them. An `Err` means the batch was not
    /// taken: the runner hands the same batch again.
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;
    /// Everything taken so far reaches the destination (`FLUSH`, before a checkpoint).
    async fn flush(&mut self) -> Result<()>;
    /// A checkpoint's first phase: finish what is open and say what becomes visible once
    /// the checkpoint is durable. Writers whose output is visible at `flush` (upserts,
    /// Kafka records) need nothing more.
    async fn prepare(&mut self) -> Result<Vec<Staged>> {
        self.flush().await?;
        Ok(Vec::new())
    }
    /// The checkpoint holding `staged` is durable: make it visible. Also called at start
    /// with what the restored checkpoint held (some of it may be in place already).
    async fn commit(&mut self, staged: &[Staged]) -> Result<()> {
        let _ = staged;
        Ok(())
    }
    /// At start from a checkpoint, after `commit` of what it held: remove what was staged
    /// after it (never committed), so that replayed rows are not written twice.
    async fn discard_uncommitted(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink's counters and state, for `SHOW SINKS` and `weir_catalog.sinks`.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Rows handed to the writer.
    pub rows_written: AtomicU64,
    /// Files (or batches) made visible at a commit.
    pub commits: AtomicU64,
    /// When the last commit (or flush that made rows visible) happened, microseconds
    /// since the Unix epoch; 0 before the first.
    pub last_commit: AtomicI64,
    /// Failed writes (each retried).
    pub errors: AtomicU64,
    /// The last error, while the sink retries (cleared once a write succeeds).
    pub retrying: Mutex<Option<String>>,
    /// The error that stopped the sink.
    pub failed: Mutex<Option<String>>,
}

impl SinkStats {
    pub fn status(&self) -> (&'static str, Option<String>) {
        let lock = |m: &Mutex<Option<String>>| m.locked().clone();
        if let Some(f) = lock(&self.failed) {
            return ("failed", Some(f));
        }
        match lock(&self.retrying) {
            Some(e) => ("retrying", Some(e)),
            None => ("running", None),
        }
    }
}

/// A kind of sink as `CREATE SINK` configured it: its validated options, and the factory
/// of its writer. Each kind registers in [`sink_connector`].
#[async_trait]
pub trait SinkConnector: std::fmt::Debug + Send + Sync {
    /// The name `WITH (connector = …)` gives.
    fn name(&self) -> &'static str;
    /// Whether what it writes becomes visible only at a checkpoint's commit.
    fn two_phase(&self) -> bool {
        false
    }
    /// A writer for `input` (connecting to its destination).
    async fn open(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>>;
}

/// The sink connectors, by the name `WITH (connector = …)` gives.
const CONNECTORS: &str = "'parquet', 'postgres', 'kafka'";

/// The connector `options` name for a sink reading `from`, its options checked against
/// `input`.
pub fn sink_connector(
    ctx: &SessionContext,
    from: &Upstream,
    input: &SinkInput,
    options: &crate::sql::streaming::Options,
) -> Result<Arc<dyn SinkConnector>> {
    let connector = options.get("connector").ok_or_else(|| {
        WeirError::InvalidParameter(format!(
            "sink \"{}\" needs WITH (connector = …); valid connectors: {CONNECTORS}",
            input.sink
        ))
    })?;
    Ok(match connector.to_ascii_lowercase().as_str() {
        "parquet" => {
            let event_time = match from {
                Upstream::Source(s) => s.event_time.map(|e| e.column),
                Upstream::View(v) => v
                    .as_source()
                    .ok()
                    .and_then(|s| s.event_time)
                    .map(|e| e.column),
            };
            Arc::new(parquet::ParquetSinkSpec::parse(
                ctx, input, options, event_time,
            )?)
        }
        "postgres" => Arc::new(postgres::PostgresSinkSpec::parse(input, options)?),
        "kafka" => Arc::new(kafka::KafkaSinkSpec::parse(input, options)?),
        other => {
            return Err(WeirError::InvalidParameter(format!(
                "unknown sink connector '{other}'; valid connectors: {CONNECTORS}"
            )));
        }
    })
}

/// What a sink reads.
#[derive(Debug, Clone)]
pub enum Upstream {
    Source(Arc<SourceDef>),
    View(Arc<View>),
}

impl Upstream {
    pub fn name(&self) -> &str {
        match self {
            Upstream::Source(s) => &s.name,
            Upstream::View(v) => &v.name,
        }
    }

    /// The `CREATE` text of what it reads: another text means other rows.
    pub fn definition(&self) -> &str {
        match self {
            Upstream::Source(s) => &s.definition,
            Upstream::View(v) => &v.definition,
        }
    }
}

/// A sink: its definition, counters, and the handle of its runner.
pub struct Sink {
    pub name: String,
    /// The `CREATE SINK` text.
    pub definition: String,
    pub from: Upstream,
    pub connector: Arc<dyn SinkConnector>,
    pub input: SinkInput,
    pub stats: SinkStats,
    pub(crate) commands: mpsc::UnboundedSender<runner::SinkCommand>,
}

impl Sink {
    /// `append` or `upsert`, as the catalog shows it.
    pub fn delivery_text(&self) -> &'static str {
        match self.input.delivery {
            Delivery::Append => "append",
            Delivery::Changes => "upsert",
        }
    }

    /// Everything its input holds now has been handed to the destination.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(runner::SinkCommand::Flush(tx))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    fn gone(&self) -> WeirError {
        WeirError::Stopped(format!("sink \"{}\" stopped", self.name))
    }
}

/// Sinks by name.
pub type Sinks = RwLock<BTreeMap<String, Arc<Sink>>>;

/// What rows of `from` a sink receives: the final rows of a view that only appends
/// (no aggregation, or `EMIT ON WINDOW CLOSE`) and a source's records as they are; a
/// view whose rows change, as changes.
pub fn delivery_of(from: &Upstream) -> Delivery {
    match from {
        Upstream::Source(_) => Delivery::Append,
        Upstream::View(v) => {
            let appends = match &v.plan.operator {
                Operator::Append => true,
                Operator::Join(j) => j.then.is_none(),
                _ => false,
            };
            if appends || v.emit == Emit::OnWindowClose {
                Delivery::Append
            } else {
                Delivery::Changes
            }
        }
    }
}
