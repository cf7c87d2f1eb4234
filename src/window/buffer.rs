//! Rows kept per window until the window closes, for queries that need a window's rows
//! themselves rather than aggregates of them (a window function such as Top-N over the
//! rows of each window). A window's rows are freed when it closes.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

use crate::error::Result;
use crate::window::aggregate::WindowKey;
use crate::window::operator::{OperatorState, Sections, tagged, take_section, untag};

struct Rows {
    batches: Vec<RecordBatch>,
    /// Changed since its rows were last read.
    dirty: bool,
}

/// The rows of every open window, by window end.
pub struct WindowBuffer {
    key: WindowKey,
    schema: Option<SchemaRef>,
    windows: BTreeMap<i64, Rows>,
}

impl WindowBuffer {
    pub fn new(key: WindowKey) -> Self {
        WindowBuffer {
            key,
            schema: None,
            windows: BTreeMap::new(),
        }
    }

    fn add(&mut self, end: i64, batch: RecordBatch) {
        let rows = self.windows.entry(end).or_insert(Rows {
            batches: Vec::new(),
            dirty: true,
        });
        rows.batches.push(batch);
        rows.dirty = true;
    }

    /// Keep the rows of `batch` (with the window column at the key's index).
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.schema.get_or_insert_with(|| batch.schema());
        let column = cast(batch.column(self.key.column), &DataType::Int64)?;
        let column = column
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        let shift = if self.key.is_start { self.key.size } else { 0 };
        if column.null_count() == 0 && column.values().iter().all(|v| *v == column.value(0)) {
            self.add(column.value(0) + shift, batch.clone());
            return Ok(());
        }
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, v) in column.iter().enumerate() {
            if let Some(v) = v {
                rows.entry(v + shift).or_default().push(i as u32);
            }
        }
        for (end, idx) in rows {
            let part = take_record_batch(batch, &UInt32Array::from(idx))?;
            self.add(end, part);
        }
        Ok(())
    }

    fn concat(&self, batches: &[RecordBatch]) -> Result<RecordBatch> {
        let schema = batches
            .first()
            .map(|b| b.schema())
            .or_else(|| self.schema.clone())
            .expect("a window has rows");
        Ok(concat_batches(&schema, batches)?)
    }

    /// Close every window that ended at or before `watermark`: their rows, in window
    /// order, freed here.
    pub fn close_until(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        let still_open = match watermark.checked_add(1) {
            Some(w) => self.windows.split_off(&w),
            None => BTreeMap::new(),
        };
        let closed = std::mem::replace(&mut self.windows, still_open);
        closed
            .into_iter()
            .map(|(end, rows)| Ok((end, self.concat(&rows.batches)?)))
            .collect()
    }

    /// The rows of every open window that changed since the last call.
    pub fn refresh(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        let mut out = Vec::new();
        let dirty: Vec<i64> = self
            .windows
            .iter()
            .filter(|(_, r)| r.dirty)
            .map(|(e, _)| *e)
            .collect();
        for end in dirty {
            let batch = self.concat(&self.windows[&end].batches)?;
            let rows = self.windows.get_mut(&end).expect("listed");
            rows.batches = vec![batch.clone()];
            rows.dirty = false;
            out.push((end, batch));
        }
        Ok(out)
    }

    /// Each open window's rows, by window end, for a checkpoint.
    pub fn export(&self) -> Result<Vec<(i64, RecordBatch)>> {
        self.windows
            .iter()
            .map(|(end, rows)| Ok((*end, self.concat(&rows.batches)?)))
            .collect()
    }

    /// Bring back a window's rows [`WindowBuffer::export`] wrote.
    pub fn import(&mut self, end: i64, rows: RecordBatch) {
        self.schema.get_or_insert_with(|| rows.schema());
        self.add(end, rows);
    }

    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Rows kept.
    pub fn rows(&self) -> usize {
        self.windows
            .values()
            .flat_map(|r| &r.batches)
            .map(|b| b.num_rows())
            .sum()
    }

    pub fn state_bytes(&self) -> usize {
        self.windows
            .values()
            .flat_map(|r| &r.batches)
            .map(|b| b.get_array_memory_size())
            .sum()
    }
}

impl OperatorState for WindowBuffer {
    fn process_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.update(batch)
    }
    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        self.close_until(watermark)
    }
    fn refresh(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        WindowBuffer::refresh(self)
    }
    fn windows(&self) -> usize {
        WindowBuffer::windows(self)
    }
    fn groups(&self) -> usize {
        self.rows()
    }
    fn state_bytes(&self) -> usize {
        WindowBuffer::state_bytes(self)
    }
    fn snapshot(&mut self, prefix: &str, out: &mut Vec<(String, Vec<RecordBatch>)>) -> Result<()> {
        let rows = self
            .export()?
            .into_iter()
            .map(|(end, rows)| tagged(Int64Array::from_value(end, rows.num_rows()), &rows))
            .collect::<Result<_>>()?;
        out.push((format!("{prefix}buffer"), rows));
        Ok(())
    }
    fn restore(&mut self, prefix: &str, sections: &mut Sections) -> Result<()> {
        for batch in take_section(sections, prefix, "buffer") {
            let (ends, rows) = untag(&batch)?;
            if rows.num_rows() > 0 {
                self.import(ends.value(0), rows);
            }
        }
        Ok(())
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests;
