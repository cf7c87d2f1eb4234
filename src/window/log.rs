//! The rows of a view without aggregation (filters, projections, joins with batch
//! tables): appended as they arrive, each with its event time, and dropped once older
//! than the view's retention behind the watermark, so memory stays bounded.

use std::collections::VecDeque;

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::kernels::boolean::not;
use datafusion::arrow::compute::{filter, filter_record_batch, max, min};
use datafusion::arrow::datatypes::Int64Type;

use crate::error::{Result, WeirError};
use crate::window::operator::{OperatorState, Sections, tagged, take_section, untag};

struct Chunk {
    rows: RecordBatch,
    /// Event time of each row, in the time column's unit.
    times: Int64Array,
    oldest: i64,
}

/// Appended rows, oldest first.
#[derive(Default)]
pub struct AppendLog {
    chunks: VecDeque<Chunk>,
}

impl AppendLog {
    pub fn push(&mut self, rows: RecordBatch, times: Int64Array) {
        if rows.num_rows() == 0 {
            return;
        }
        let oldest = min::<Int64Type>(&times).unwrap_or(i64::MIN);
        self.chunks.push_back(Chunk {
            rows,
            times,
            oldest,
        });
    }

    /// Drop the rows whose time is before `cutoff`; the rows dropped.
    pub fn evict(&mut self, cutoff: i64) -> Result<Vec<RecordBatch>> {
        let mut gone = Vec::new();
        if self.chunks.iter().all(|c| c.oldest >= cutoff) {
            return Ok(gone);
        }
        let mut kept = VecDeque::with_capacity(self.chunks.len());
        for chunk in self.chunks.drain(..) {
            if chunk.oldest >= cutoff {
                kept.push_back(chunk);
                continue;
            }
            if max::<Int64Type>(&chunk.times).is_none_or(|m| m < cutoff) {
                gone.push(chunk.rows);
                continue;
            }
            let keep: BooleanArray = chunk
                .times
                .iter()
                .map(|t| Some(t.is_some_and(|t| t >= cutoff)))
                .collect();
            let times = filter(&chunk.times, &keep)?;
            let times = times
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("Int64")
                .clone();
            let rows = filter_record_batch(&chunk.rows, &keep)?;
            gone.push(filter_record_batch(&chunk.rows, &not(&keep)?)?);
            let oldest = min::<Int64Type>(&times).unwrap_or(i64::MIN);
            kept.push_back(Chunk {
                rows,
                times,
                oldest,
            });
        }
        self.chunks = kept;
        Ok(gone)
    }

    pub fn batches(&self) -> Vec<RecordBatch> {
        self.chunks.iter().map(|c| c.rows.clone()).collect()
    }

    /// The kept rows with their event times, oldest first, for a checkpoint.
    pub fn export(&self) -> Vec<(RecordBatch, Int64Array)> {
        self.chunks
            .iter()
            .map(|c| (c.rows.clone(), c.times.clone()))
            .collect()
    }

    pub fn rows(&self) -> usize {
        self.chunks.iter().map(|c| c.rows.num_rows()).sum()
    }

    pub fn state_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.rows.get_array_memory_size() + c.times.get_array_memory_size())
            .sum()
    }
}

impl OperatorState for AppendLog {
    /// Appended rows come with their event times ([`AppendLog::push`]).
    fn process_batch(&mut self, _batch: &RecordBatch) -> Result<()> {
        Err(WeirError::Internal(
            "appended rows are pushed with their event times".into(),
        ))
    }
    /// Appended rows are final as they come; retention expires them.
    fn on_watermark(&mut self, _watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        Ok(Vec::new())
    }
    fn groups(&self) -> usize {
        self.rows()
    }
    fn state_bytes(&self) -> usize {
        AppendLog::state_bytes(self)
    }
    fn snapshot(&mut self, prefix: &str, out: &mut Vec<(String, Vec<RecordBatch>)>) -> Result<()> {
        let rows = self
            .export()
            .into_iter()
            .map(|(rows, times)| tagged(times, &rows))
            .collect::<Result<_>>()?;
        out.push((format!("{prefix}log"), rows));
        Ok(())
    }
    fn restore(&mut self, prefix: &str, sections: &mut Sections) -> Result<()> {
        for batch in take_section(sections, prefix, "log") {
            let (times, rows) = untag(&batch)?;
            self.push(rows, times);
        }
        Ok(())
    }
    fn appends(&self) -> bool {
        true
    }
    fn appended(&mut self) -> Option<&mut AppendLog> {
        Some(self)
    }
    fn appended_rows(&self) -> Option<Vec<RecordBatch>> {
        Some(self.batches())
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
