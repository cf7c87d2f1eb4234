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
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::error::{Result, WeirError};
use crate::locks::{Unpoisoned, UnpoisonedRw};
use crate::sql::streaming::{CreateSink, Emit};
use crate::view::Streams;
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

/// Something a writer finished that becomes visible once the checkpoint recording it is
/// durable (a Parquet file written under a staging name, to be renamed into place).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// Where it was written (an object-store path).
    pub staged: String,
    /// Where it goes.
    pub target: String,
}

/// A sink connector's writer, driven by the sink's runner on one task.
#[async_trait]
pub trait SinkWriter: Send {
    /// Take rows: the input's schema for [`Delivery::Append`], the change schema for
    /// [`Delivery::Changes`]. A writer may buffer them.
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

/// A sink's connector with its validated options (one per sink: its size does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Connector {
    Parquet(parquet::ParquetSinkSpec),
    Postgres(postgres::PostgresSinkSpec),
    Kafka(kafka::KafkaSinkSpec),
}

impl Connector {
    pub fn name(&self) -> &'static str {
        match self {
            Connector::Parquet(_) => "parquet",
            Connector::Postgres(_) => "postgres",
            Connector::Kafka(_) => "kafka",
        }
    }

    /// Whether what it writes becomes visible only at a checkpoint's commit.
    pub fn two_phase(&self) -> bool {
        matches!(self, Connector::Parquet(_))
    }

    /// A writer for `input` (connecting to its destination).
    pub async fn open(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        match self {
            Connector::Parquet(spec) => spec.open(input),
            Connector::Postgres(spec) => spec.open(input).await,
            Connector::Kafka(spec) => spec.open(input).await,
        }
    }
}

/// What a sink reads.
#[derive(Debug, Clone)]
pub enum From {
    Source(Arc<SourceDef>),
    View(Arc<View>),
}

impl From {
    pub fn name(&self) -> &str {
        match self {
            From::Source(s) => &s.name,
            From::View(v) => &v.name,
        }
    }

    /// The `CREATE` text of what it reads: another text means other rows.
    pub fn definition(&self) -> &str {
        match self {
            From::Source(s) => &s.definition,
            From::View(v) => &v.definition,
        }
    }
}

/// A sink: its definition, counters, and the handle of its runner.
pub struct Sink {
    pub name: String,
    /// The `CREATE SINK` text.
    pub definition: String,
    pub from: From,
    pub connector: Connector,
    pub input: SinkInput,
    pub stats: SinkStats,
    pub(crate) commands: mpsc::UnboundedSender<runner::Command>,
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
            .send(runner::Command::Flush(tx))
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
    }

    fn gone(&self) -> WeirError {
        WeirError::Stopped(format!("sink \"{}\" stopped", self.name))
    }
}

/// Sinks by name.
pub type Sinks = RwLock<BTreeMap<String, Arc<Sink>>>;

const CONNECTORS: &str = "'parquet', 'postgres', 'kafka'";

/// What rows of `from` a sink receives: the final rows of a view that only appends
/// (no aggregation, or `EMIT ON WINDOW CLOSE`) and a source's records as they are; a
/// view whose rows change, as changes.
pub fn delivery_of(from: &From) -> Delivery {
    match from {
        From::Source(_) => Delivery::Append,
        From::View(v) => {
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

impl Streams {
    /// `CREATE SINK`: validate its options against its input, then start its runner
    /// (not under `weir check`). `false` when it existed and `IF NOT EXISTS` was given.
    pub async fn create_sink(
        &self,
        ctx: &SessionContext,
        create: &CreateSink,
        text: &str,
    ) -> Result<bool> {
        if self.sink(&create.name).is_some() {
            if create.if_not_exists {
                return Ok(false);
            }
            return Err(WeirError::DuplicateObject(format!(
                "sink \"{}\" already exists",
                create.name
            )));
        }
        let from = match (self.view(&create.from), self.source(&create.from)) {
            (Some(v), _) => From::View(v),
            (None, Some(s)) => From::Source(s),
            (None, None) => {
                return Err(WeirError::UndefinedTable(format!(
                    "{} (a sink reads a source or a materialized view)",
                    create.from
                )));
            }
        };
        let input = SinkInput {
            sink: create.name.clone(),
            from: from.name().to_string(),
            schema: match &from {
                From::Source(s) => s.schema.clone(),
                From::View(v) => v.schema(),
            },
            delivery: delivery_of(&from),
        };
        let options = &create.options;
        let connector = options.get("connector").ok_or_else(|| {
            WeirError::InvalidParameter(format!(
                "sink \"{}\" needs WITH (connector = …); valid connectors: {CONNECTORS}",
                create.name
            ))
        })?;
        let connector = match connector.to_ascii_lowercase().as_str() {
            "parquet" => {
                let event_time = match &from {
                    From::Source(s) => s.event_time.map(|e| e.column),
                    From::View(v) => v
                        .as_source()
                        .ok()
                        .and_then(|s| s.event_time)
                        .map(|e| e.column),
                };
                Connector::Parquet(parquet::ParquetSinkSpec::parse(
                    ctx, &input, options, event_time,
                )?)
            }
            "postgres" => Connector::Postgres(postgres::PostgresSinkSpec::parse(&input, options)?),
            "kafka" => Connector::Kafka(kafka::KafkaSinkSpec::parse(&input, options)?),
            other => {
                return Err(WeirError::InvalidParameter(format!(
                    "unknown sink connector '{other}'; valid connectors: {CONNECTORS}"
                )));
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(Sink {
            name: create.name.clone(),
            definition: crate::view::one_line(text),
            from,
            connector,
            input,
            stats: SinkStats::default(),
            commands: tx,
        });
        if !self.checking() {
            let begin = self.sink_begin(&sink);
            runner::start(Arc::clone(&sink), rx, begin, self.checkpointing()).await?;
        }
        self.sinks.write_locked().insert(sink.name.clone(), sink);
        Ok(true)
    }

    /// How the runner of `sink` begins: from the checkpoint read at start when it holds
    /// the sink as it is now, reading the same input (a view's from that checkpoint too).
    fn sink_begin(&self, sink: &Sink) -> runner::Begin {
        let Some(restored) = self.restored_checkpoint() else {
            return runner::Begin::Fresh;
        };
        let Some(meta) = restored.sink(&sink.name) else {
            return runner::Begin::Fresh;
        };
        let view_fresh = matches!(&sink.from, From::View(v) if !v.resumed.load(std::sync::atomic::Ordering::Relaxed));
        if meta.definition != sink.definition || meta.input != sink.from.definition() || view_fresh
        {
            info!(
                target: "weir::sink",
                "sink {} or what it reads changed since checkpoint {}: it starts afresh",
                sink.name,
                restored.sequence
            );
            return runner::Begin::Fresh;
        }
        runner::Begin::Restore(meta.clone())
    }

    /// The sink `name`.
    pub fn sink(&self, name: &str) -> Option<Arc<Sink>> {
        self.sinks.read_locked().get(name).cloned()
    }

    pub fn all_sinks(&self) -> Vec<Arc<Sink>> {
        self.sinks.read_locked().values().cloned().collect()
    }

    /// The sinks that read `name`.
    pub fn sinks_reading(&self, name: &str) -> Vec<String> {
        self.all_sinks()
            .iter()
            .filter(|s| s.from.name() == name)
            .map(|s| s.name.clone())
            .collect()
    }

    /// `DROP SINK`; `false` when it did not exist and `IF EXISTS` was given. What it
    /// committed stays; what it staged since the last checkpoint goes with it.
    pub fn drop_sink(&self, name: &str, if_exists: bool) -> Result<bool> {
        match self.sinks.write_locked().remove(name) {
            Some(sink) => {
                let _ = sink.commands.send(runner::Command::Stop);
                Ok(true)
            }
            None if if_exists => Ok(false),
            None => Err(WeirError::UndefinedObject(format!(
                "sink \"{name}\" does not exist"
            ))),
        }
    }

    /// `FLUSH`, after the views: every sink has handed its input's rows to its
    /// destination; then a checkpoint commits the files sinks staged.
    pub async fn flush_sinks(&self) -> Vec<String> {
        let sinks = self.all_sinks();
        let waits = sinks.iter().map(|s| async move {
            s.flush()
                .await
                .map_err(|e| format!("sink \"{}\": {e}", s.name))
        });
        let mut errors: Vec<String> = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter_map(|r| r.err())
            .collect();
        if sinks.iter().any(|s| s.connector.two_phase())
            && self.checkpointing()
            && let Err(e) = self.checkpoint().await
        {
            errors.push(format!("committing the sinks' files: {e}"));
        }
        errors
    }
}
