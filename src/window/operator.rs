//! The operator trait: what keeps a view's rows between the row-wise stage before it and
//! the stage after it (a windowed aggregation, each window's rows, appended rows, the two
//! sides of a join), fed batch by batch, closed by the watermark, and saved into and
//! restored from a checkpoint's named sections.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Result, WeirError};
use crate::window::log::AppendLog;

/// A checkpoint's sections of one view, by name: batches whose first column is a tag (a
/// window end, or an event time per row), see [`tagged`].
pub type Sections = BTreeMap<String, Vec<RecordBatch>>;

/// An operator's state. Section names are the operator's own, after `prefix` (an
/// operator inside another — the aggregation after a join — has a longer one).
pub trait OperatorState: Send {
    /// Fold in rows of the stage before it.
    fn process_batch(&mut self, batch: &RecordBatch) -> Result<()>;
    /// Close the windows that ended at or before `watermark`: their final rows, by
    /// window end.
    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>>;
    /// The current rows of the open windows that changed since the last call.
    fn refresh(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        Ok(Vec::new())
    }
    /// Open windows.
    fn windows(&self) -> usize {
        0
    }
    /// Open (window, key) groups, or rows kept.
    fn groups(&self) -> usize;
    /// Bytes held.
    fn state_bytes(&self) -> usize;
    /// Its state for a checkpoint, into `out`; nothing changes.
    fn snapshot(&mut self, prefix: &str, out: &mut Vec<(String, Vec<RecordBatch>)>) -> Result<()>;
    /// Bring back what [`OperatorState::snapshot`] wrote, into an empty state.
    fn restore(&mut self, prefix: &str, sections: &mut Sections) -> Result<()>;
    /// Whether its rows are appended as they come (views without aggregation): the
    /// pipeline then appends them with their event times instead of `process_batch`.
    fn appends(&self) -> bool {
        false
    }
    /// The log of the view's appended rows, when it keeps one (views without
    /// aggregation, joins of streams without one).
    fn appended(&mut self) -> Option<&mut AppendLog> {
        None
    }
    /// A copy of those rows.
    fn appended_rows(&self) -> Option<Vec<RecordBatch>> {
        None
    }
    /// The operator itself, to reach its own methods (the appended rows, a join's sides).
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    /// The same, read-only.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// The batches of section `prefix` + `name`, taken out of `sections`.
pub fn take_section(sections: &mut Sections, prefix: &str, name: &str) -> Vec<RecordBatch> {
    sections
        .remove(&format!("{prefix}{name}"))
        .unwrap_or_default()
}

/// `rows` with `tag` as a first column.
pub fn tagged(tag: Int64Array, rows: &RecordBatch) -> Result<RecordBatch> {
    let schema = rows.schema();
    let mut fields = vec![Arc::new(Field::new("tag", DataType::Int64, true))];
    fields.extend(schema.fields().iter().cloned());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(tag)];
    columns.extend(rows.columns().iter().cloned());
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )?)
}

/// The tag and the rows of a batch [`tagged`] made.
pub fn untag(batch: &RecordBatch) -> Result<(Int64Array, RecordBatch)> {
    let tag = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| WeirError::Internal("checkpointed rows without their tag".into()))?
        .clone();
    let schema = batch.schema();
    let fields: Vec<_> = schema.fields().iter().skip(1).cloned().collect();
    let rows = RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        batch.columns()[1..].to_vec(),
    )?;
    Ok((tag, rows))
}
