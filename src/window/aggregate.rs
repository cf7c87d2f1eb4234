//! Incremental windowed aggregation: per window, a hash table of group keys
//! (DataFusion's `GroupValues`) and one `GroupsAccumulator` per aggregate. Work per
//! event is constant; a window's state is freed once the watermark closes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::{Result, WeirError};
use crate::window::operator::{OperatorState, Sections, take_section};

/// One aggregate of the view: its function, argument expressions and `FILTER`.
#[derive(Debug, Clone)]
pub struct AggregateCall {
    pub function: Arc<AggregateFunctionExpr>,
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
}

impl AggregateCall {
    fn accumulator(&self) -> Result<Box<dyn GroupsAccumulator>> {
        if self.function.groups_accumulator_supported() {
            Ok(self.function.create_groups_accumulator()?)
        } else {
            let f = Arc::clone(&self.function);
            Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                f.create_accumulator()
            })))
        }
    }
}

/// Which group column is the window, and how to get its end from it.
#[derive(Debug, Clone, Copy)]
pub struct WindowKey {
    /// Index among the group expressions.
    pub column: usize,
    /// The column is `window_start` (end = start + size) rather than `window_end`.
    pub is_start: bool,
    /// Window size in the time column's unit.
    pub size: i64,
}

/// The compiled `GROUP BY … aggregates` of a view.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// Schema of the group columns (for the key tables).
    pub group_schema: SchemaRef,
    pub calls: Vec<AggregateCall>,
    /// `None`: no window among the keys; the one bucket never closes.
    pub window: Option<WindowKey>,
    /// Group columns then one column per aggregate.
    pub output_schema: SchemaRef,
    /// An aggregation without `GROUP BY` groups by one constant key, which its rows do
    /// not show.
    pub hidden_key: bool,
}

/// The groups of one window.
struct Bucket {
    keys: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Changed since its rows were last computed.
    dirty: bool,
}

impl Bucket {
    /// The group keys and each aggregate's intermediate state, in group order; the bucket
    /// keeps them (the keys re-inserted into a fresh table, the states merged into fresh
    /// accumulators), since emitting both takes them out.
    fn take_state(
        &mut self,
        calls: &[AggregateCall],
        schema: &SchemaRef,
    ) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        let n = self.keys.len();
        let keys = self.keys.emit(EmitTo::All)?;
        // `indices` maps old group i to its index in the fresh table.
        let mut indices = Vec::new();
        self.keys = new_group_values(schema.clone(), &GroupOrdering::None)?;
        self.keys.intern(&keys, &mut indices)?;
        let mut states = Vec::with_capacity(calls.len());
        for (acc, call) in self.accumulators.iter_mut().zip(calls) {
            let state = acc.state(EmitTo::All)?;
            let mut kept = call.accumulator()?;
            kept.merge_batch(&state, &indices, n)?;
            *acc = kept;
            states.push(state);
        }
        Ok((keys, states))
    }
}

/// The key of the bucket of a view without windows.
const UNWINDOWED: i64 = i64::MAX;

/// All open windows of one view.
pub struct WindowedAggregate {
    spec: Arc<AggregateSpec>,
    buckets: BTreeMap<i64, Bucket>,
    group_indices: Vec<usize>,
}

impl WindowedAggregate {
    pub fn new(spec: Arc<AggregateSpec>) -> Self {
        WindowedAggregate {
            spec,
            buckets: BTreeMap::new(),
            group_indices: Vec::new(),
        }
    }

    pub fn spec(&self) -> &Arc<AggregateSpec> {
        &self.spec
    }

    fn new_bucket(&self) -> Result<Bucket> {
        Ok(Bucket {
            keys: new_group_values(self.spec.group_schema.clone(), &GroupOrdering::None)?,
            accumulators: self
                .spec
                .calls
                .iter()
                .map(AggregateCall::accumulator)
                .collect::<Result<_>>()?,
            dirty: true,
        })
    }

    /// Window end of every row of `batch` (the aggregation's input).
    fn window_ends(&self, groups: &[ArrayRef]) -> Result<Option<Int64Array>> {
        let Some(w) = self.spec.window else {
            return Ok(None);
        };
        let col = cast(&groups[w.column], &DataType::Int64)?;
        let col = col
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        Ok(Some(if w.is_start {
            col.iter().map(|v| v.map(|v| v + w.size)).collect()
        } else {
            col.clone()
        }))
    }

    /// Fold the rows of `batch` (the aggregation's input) into their windows' groups.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let groups = self
            .spec
            .group_exprs
            .iter()
            .map(|e| {
                e.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut args = Vec::with_capacity(self.spec.calls.len());
        let mut filters = Vec::with_capacity(self.spec.calls.len());
        for call in &self.spec.calls {
            args.push(
                call.args
                    .iter()
                    .map(|e| {
                        e.evaluate(batch)
                            .and_then(|v| v.into_array(batch.num_rows()))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?,
            );
            filters.push(match &call.filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(batch.num_rows())?),
                None => None,
            });
        }
        let ends = self.window_ends(&groups)?;
        let uniform = match &ends {
            None => Some(UNWINDOWED),
            Some(e) if e.null_count() == 0 && e.values().iter().all(|v| *v == e.value(0)) => {
                Some(e.value(0))
            }
            Some(_) => None,
        };
        if let Some(end) = uniform {
            return self.update_bucket(end, &groups, &args, &filters);
        }
        let ends = ends.expect("windowed");
        let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, e) in ends.iter().enumerate() {
            if let Some(e) = e {
                rows.entry(e).or_default().push(i as u32);
            }
        }
        let pick = |arrays: &[ArrayRef], idx: &UInt32Array| -> Result<Vec<ArrayRef>> {
            arrays
                .iter()
                .map(|a| take(a.as_ref(), idx, None).map_err(WeirError::from))
                .collect()
        };
        for (end, rows) in rows {
            let idx = UInt32Array::from(rows);
            let g = pick(&groups, &idx)?;
            let a = args
                .iter()
                .map(|a| pick(a, &idx))
                .collect::<Result<Vec<_>>>()?;
            let f = filters
                .iter()
                .map(|f| match f {
                    Some(f) => take(f.as_ref(), &idx, None)
                        .map(Some)
                        .map_err(WeirError::from),
                    None => Ok(None),
                })
                .collect::<Result<Vec<_>>>()?;
            self.update_bucket(end, &g, &a, &f)?;
        }
        Ok(())
    }

    fn update_bucket(
        &mut self,
        end: i64,
        groups: &[ArrayRef],
        args: &[Vec<ArrayRef>],
        filters: &[Option<ArrayRef>],
    ) -> Result<()> {
        if !self.buckets.contains_key(&end) {
            let bucket = self.new_bucket()?;
            self.buckets.insert(end, bucket);
        }
        let bucket = self.buckets.get_mut(&end).expect("just inserted");
        bucket.keys.intern(groups, &mut self.group_indices)?;
        let total = bucket.keys.len();
        for (i, acc) in bucket.accumulators.iter_mut().enumerate() {
            let filter = filters[i].as_ref().map(|f| {
                f.as_any()
                    .downcast_ref::<BooleanArray>()
                    .expect("boolean filter")
            });
            acc.update_batch(&args[i], &self.group_indices, filter, total)?;
        }
        bucket.dirty = true;
        Ok(())
    }

    /// Close every window whose end is at or before `watermark`: their final rows, in
    /// window order, and their state freed.
    pub fn close_until(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        if self.spec.window.is_none() {
            return Ok(Vec::new());
        }
        let still_open = match watermark.checked_add(1) {
            Some(w) => self.buckets.split_off(&w),
            None => BTreeMap::new(),
        };
        let closed = std::mem::replace(&mut self.buckets, still_open);
        let mut out = Vec::with_capacity(closed.len());
        for (end, mut bucket) in closed {
            let mut columns = bucket.keys.emit(EmitTo::All)?;
            for acc in &mut bucket.accumulators {
                columns.push(acc.evaluate(EmitTo::All)?);
            }
            out.push((end, self.batch(columns)?));
        }
        Ok(out)
    }

    /// Current rows of every open window that changed since the last call; the state
    /// stays as it was.
    pub fn refresh(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        let mut out = Vec::new();
        let calls = self.spec.calls.clone();
        let schema = self.spec.group_schema.clone();
        for (end, bucket) in self.buckets.iter_mut().filter(|(_, b)| b.dirty) {
            let (mut columns, states) = bucket.take_state(&calls, &schema)?;
            let identity: Vec<usize> = (0..bucket.keys.len()).collect();
            for (state, call) in states.iter().zip(&calls) {
                let mut value = call.accumulator()?;
                value.merge_batch(state, &identity, identity.len())?;
                columns.push(value.evaluate(EmitTo::All)?);
            }
            bucket.dirty = false;
            out.push((*end, columns));
        }
        out.into_iter()
            .map(|(end, columns)| Ok((end, self.batch_of(columns)?)))
            .collect()
    }

    /// The open windows' groups for a checkpoint, one batch per window: the window end
    /// (`end`), the group keys (`k0`, `k1`…), then each aggregate's intermediate state
    /// (`a0_0`, `a0_1`, `a1_0`…). The state stays as it was.
    pub fn export(&mut self) -> Result<Vec<RecordBatch>> {
        let calls = self.spec.calls.clone();
        let schema = self.spec.group_schema.clone();
        let mut out = Vec::with_capacity(self.buckets.len());
        for (end, bucket) in self.buckets.iter_mut() {
            let (keys, states) = bucket.take_state(&calls, &schema)?;
            let n = bucket.keys.len();
            let mut fields = vec![Field::new("end", DataType::Int64, false)];
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_value(*end, n))];
            for (i, k) in keys.into_iter().enumerate() {
                fields.push(Field::new(format!("k{i}"), k.data_type().clone(), true));
                columns.push(k);
            }
            for (i, state) in states.into_iter().enumerate() {
                for (j, s) in state.into_iter().enumerate() {
                    fields.push(Field::new(format!("a{i}_{j}"), s.data_type().clone(), true));
                    columns.push(s);
                }
            }
            out.push(RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                columns,
            )?);
        }
        Ok(out)
    }

    /// Bring back the windows [`WindowedAggregate::export`] wrote.
    pub fn import(&mut self, batches: &[RecordBatch]) -> Result<()> {
        let width = self.spec.group_schema.fields().len();
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let ends = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| WeirError::Internal("checkpointed groups without ends".into()))?;
            let end = ends.value(0);
            let mut bucket = self.new_bucket()?;
            bucket
                .keys
                .intern(&batch.columns()[1..1 + width], &mut self.group_indices)?;
            let total = bucket.keys.len();
            let schema = batch.schema();
            let mut at = 1 + width;
            for (i, acc) in bucket.accumulators.iter_mut().enumerate() {
                let prefix = format!("a{i}_");
                let n = schema.fields()[at..]
                    .iter()
                    .take_while(|f| f.name().starts_with(&prefix))
                    .count();
                acc.merge_batch(&batch.columns()[at..at + n], &self.group_indices, total)?;
                at += n;
            }
            self.buckets.insert(end, bucket);
        }
        Ok(())
    }

    fn batch(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        self.batch_of(columns)
    }

    fn batch_of(&self, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
        let schema = &self.spec.output_schema;
        let columns = columns
            .into_iter()
            .skip(usize::from(self.spec.hidden_key))
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type()).map_err(WeirError::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    /// Open windows.
    pub fn windows(&self) -> usize {
        self.buckets.len()
    }

    /// Open (window, key) groups.
    pub fn groups(&self) -> usize {
        self.buckets.values().map(|b| b.keys.len()).sum()
    }

    /// Bytes held by keys and accumulators.
    pub fn state_bytes(&self) -> usize {
        self.buckets
            .values()
            .map(|b| b.keys.size() + b.accumulators.iter().map(|a| a.size()).sum::<usize>())
            .sum()
    }
}

impl OperatorState for WindowedAggregate {
    fn process_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.update(batch)
    }
    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        self.close_until(watermark)
    }
    fn refresh(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        WindowedAggregate::refresh(self)
    }
    fn windows(&self) -> usize {
        WindowedAggregate::windows(self)
    }
    fn groups(&self) -> usize {
        WindowedAggregate::groups(self)
    }
    fn state_bytes(&self) -> usize {
        WindowedAggregate::state_bytes(self)
    }
    fn snapshot(&mut self, prefix: &str, out: &mut Vec<(String, Vec<RecordBatch>)>) -> Result<()> {
        out.push((format!("{prefix}aggregate"), self.export()?));
        Ok(())
    }
    fn restore(&mut self, prefix: &str, sections: &mut Sections) -> Result<()> {
        self.import(&take_section(sections, prefix, "aggregate"))
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
