//! Sinks: where a source's records or a view's rows go — Parquet files on an object
//! store, rows upserted into PostgreSQL, JSON records on a Kafka topic. A sink's runner
//! (`runner`) reads its input and hands batches to its connector's [`SinkWriter`]; files
//! are committed in two phases with the checkpoints, so a crash never leaves a half file
//! or a duplicate one.

pub mod kafka;
pub mod postgres;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::error::Result;

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
