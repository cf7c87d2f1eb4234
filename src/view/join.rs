//! The rows each side of a join of two streams keeps, indexed by the join's equality
//! keys so that a new row meets only its partners, and the join of a new batch with the
//! other side's rows. Rows go a batch at a time, once the other side's watermark has
//! passed all of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{and, cast, interleave_record_batch, max, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::Result;
use crate::view::plan::{Chain, JoinBy, JoinSpec};
use crate::window::aggregate::WindowedAggregate;
use crate::window::log::AppendLog;
use crate::window::operator::{OperatorState, Sections, tagged, take_section, untag};

/// The equality keys of a join (`ON l.a = r.b AND …`), evaluated over each side's rows.
#[derive(Debug)]
pub struct JoinKeys {
    /// Key expressions over the left and the right side's rows.
    pub exprs: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// The key columns' types (the left side's; the right's are cast to them).
    pub types: Vec<DataType>,
    /// Encodes keys of those types as comparable bytes.
    pub converter: RowConverter,
    /// Whether NULL keys match each other (`IS NOT DISTINCT FROM`).
    pub nulls_match: bool,
    /// The non-equality part of the condition, over the joined rows.
    pub filter: Chain,
    /// The joined rows: the left side's columns, then the right side's.
    pub schema: SchemaRef,
}

/// The keys of a batch of one side's rows.
pub struct Keyed {
    rows: Rows,
    /// Which rows have a key (`None`: all); a NULL key matches nothing.
    valid: Option<BooleanArray>,
}

impl Keyed {
    /// The rows with a key: their index and key bytes.
    fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> {
        (0..self.rows.num_rows())
            .filter(|&i| self.valid.as_ref().is_none_or(|v| v.value(i)))
            .map(|i| (i, self.rows.row(i).data()))
    }
}

impl JoinKeys {
    /// The keys of `rows`, new on side `side`.
    pub fn keys(&self, side: usize, rows: &RecordBatch) -> Result<Keyed> {
        let n = rows.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.types.len());
        for (e, t) in self.exprs[side].iter().zip(&self.types) {
            let c = e.evaluate(rows)?.into_array(n)?;
            columns.push(if c.data_type() == t { c } else { cast(&c, t)? });
        }
        let mut valid: Option<BooleanArray> = None;
        if !self.nulls_match {
            for c in &columns {
                if let Some(nulls) = c.logical_nulls() {
                    let v = BooleanArray::new(nulls.into_inner(), None);
                    valid = Some(match valid {
                        Some(prev) => and(&prev, &v)?,
                        None => v,
                    });
                }
            }
        }
        Ok(Keyed {
            rows: self.converter.convert_columns(&columns)?,
            valid,
        })
    }

    /// Join `rows` (new on side `side`, with their `keys`) with the rows `other` keeps
    /// (the other side): the joined rows, left columns first, that meet the whole
    /// condition.
    pub fn probe(
        &self,
        side: usize,
        rows: &RecordBatch,
        keys: &Keyed,
        other: &JoinSide,
    ) -> Result<RecordBatch> {
        let mut mine: Vec<u32> = Vec::new();
        // The partners: (index into `batches`, row in that batch).
        let mut theirs: Vec<(usize, usize)> = Vec::new();
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut slot: HashMap<u64, usize> = HashMap::new();
        for (i, key) in keys.iter() {
            for &seq in other.index.get(key).into_iter().flatten() {
                if let Some((first, chunk, row)) = other.locate(seq) {
                    let b = *slot.entry(first).or_insert_with(|| {
                        batches.push(chunk);
                        batches.len() - 1
                    });
                    mine.push(i as u32);
                    theirs.push((b, row));
                }
            }
        }
        if mine.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let mine = take_record_batch(rows, &UInt32Array::from(mine))?;
        let theirs = interleave_record_batch(&batches, &theirs)?;
        let (left, right) = if side == 0 {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let mut columns = left.columns().to_vec();
        columns.extend(right.columns().iter().cloned());
        let joined = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.filter.apply(joined)
    }
}

struct Chunk {
    rows: RecordBatch,
    /// The latest event time among the rows, in the time column's unit.
    newest: i64,
}

/// The rows one side keeps, numbered in arrival order, with an index from key to rows.
#[derive(Default)]
pub struct JoinSide {
    /// Kept batches by the number of their first row.
    chunks: BTreeMap<u64, Chunk>,
    /// The number the next row gets.
    next: u64,
    /// Key → numbers of the rows with it (some of them may have gone).
    index: HashMap<Box<[u8]>, Vec<u64>>,
    /// Kept rows, and index entries of rows that have gone.
    live: usize,
    stale: usize,
    /// The smallest `newest` of the kept batches (`None`: none kept).
    oldest: Option<i64>,
}

impl JoinSide {
    /// Keep `rows` with their event times, indexed by their `keys` (`None`: no equality
    /// keys, every row is a partner of every other).
    pub fn push(&mut self, rows: RecordBatch, times: &Int64Array, keys: Option<&Keyed>) {
        let n = rows.num_rows();
        if n == 0 {
            return;
        }
        let first = self.next;
        for (i, key) in keys.into_iter().flat_map(Keyed::iter) {
            self.index
                .entry(key.into())
                .or_default()
                .push(first + i as u64);
        }
        let newest = max::<Int64Type>(times).unwrap_or(i64::MAX);
        self.oldest = Some(self.oldest.map_or(newest, |o| o.min(newest)));
        self.chunks.insert(first, Chunk { rows, newest });
        self.next += n as u64;
        self.live += n;
    }

    /// Let go of the batches whose rows are all older than `cutoff`.
    pub fn evict(&mut self, cutoff: i64) {
        if self.oldest.is_none_or(|o| o >= cutoff) {
            return;
        }
        let before = self.live;
        self.chunks.retain(|_, c| c.newest >= cutoff);
        self.live = self.chunks.values().map(|c| c.rows.num_rows()).sum();
        self.oldest = self.chunks.values().map(|c| c.newest).min();
        self.stale += before - self.live;
        if self.stale > self.live.max(1024) {
            self.compact();
        }
    }

    /// Drop the index entries of rows that have gone.
    fn compact(&mut self) {
        let mut index = std::mem::take(&mut self.index);
        index.retain(|_, seqs| {
            seqs.retain(|&s| self.locate(s).is_some());
            !seqs.is_empty()
        });
        self.index = index;
        self.stale = 0;
    }

    /// Row number `seq`, if it is still kept: its batch's first row number, the batch,
    /// and its row in the batch.
    fn locate(&self, seq: u64) -> Option<(u64, &RecordBatch, usize)> {
        let (first, chunk) = self.chunks.range(..=seq).next_back()?;
        let i = (seq - first) as usize;
        (i < chunk.rows.num_rows()).then_some((*first, &chunk.rows, i))
    }

    /// Every kept row (for joins without equality keys).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.chunks.values().map(|c| c.rows.clone()).collect()
    }

    /// The kept batches with the latest event time of each, in arrival order, for a
    /// checkpoint (pushed back with that time on every row, eviction is the same).
    pub fn export(&self) -> Vec<(RecordBatch, i64)> {
        self.chunks
            .values()
            .map(|c| (c.rows.clone(), c.newest))
            .collect()
    }

    pub fn rows(&self) -> usize {
        self.live
    }

    pub fn state_bytes(&self) -> usize {
        let rows: usize = self
            .chunks
            .values()
            .map(|c| c.rows.get_array_memory_size())
            .sum();
        let index: usize = self
            .index
            .iter()
            .map(|(k, v)| k.len() + v.capacity() * 8 + 48)
            .sum();
        rows + index
    }
}

/// The rows each side of a join of two streams keeps, and what the joined rows go to:
/// appended rows, or an aggregation.
pub struct JoinState {
    pub spec: Arc<JoinSpec>,
    pub sides: [JoinSide; 2],
    pub out: Box<dyn OperatorState>,
}

impl JoinState {
    pub fn new(spec: Arc<JoinSpec>) -> JoinState {
        let out: Box<dyn OperatorState> = match &spec.then {
            Some(agg) => Box::new(WindowedAggregate::new(Arc::clone(agg))),
            None => Box::new(AppendLog::default()),
        };
        JoinState {
            spec,
            sides: Default::default(),
            out,
        }
    }

    /// Let go of the rows the other side can no longer match, given each side's
    /// watermark (rows from now on are at or after it).
    pub fn evict(&mut self, marks: [i64; 2]) {
        let Some(bound) = self.spec.bound else {
            return;
        };
        // Left rows at t match right rows up to t + hi; likewise right rows at t match
        // left rows from t - lo. A side that has ended matches nothing more: the other
        // side's rows go.
        let cutoff = |mark: i64, shifted: i64| match mark {
            i64::MIN => i64::MIN,
            i64::MAX => i64::MAX,
            _ => shifted,
        };
        self.sides[0].evict(cutoff(marks[1], marks[1].saturating_sub(bound.hi)));
        self.sides[1].evict(cutoff(marks[0], marks[0].saturating_add(bound.lo)));
    }
}

impl OperatorState for JoinState {
    /// Joined rows (the pipeline joins each side's new rows with the other's).
    fn process_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.out.process_batch(batch)
    }
    fn on_watermark(&mut self, watermark: i64) -> Result<Vec<(i64, RecordBatch)>> {
        self.out.on_watermark(watermark)
    }
    fn refresh(&mut self) -> Result<Vec<(i64, RecordBatch)>> {
        self.out.refresh()
    }
    fn windows(&self) -> usize {
        self.out.windows()
    }
    fn groups(&self) -> usize {
        let groups = if self.out.appends() {
            0
        } else {
            self.out.groups()
        };
        self.sides[0].rows() + self.sides[1].rows() + groups
    }
    fn state_bytes(&self) -> usize {
        self.sides[0].state_bytes() + self.sides[1].state_bytes() + self.out.state_bytes()
    }
    fn snapshot(&mut self, prefix: &str, out: &mut Vec<(String, Vec<RecordBatch>)>) -> Result<()> {
        for (i, side) in self.sides.iter().enumerate() {
            let rows = side
                .export()
                .into_iter()
                .map(|(rows, newest)| {
                    tagged(Int64Array::from_value(newest, rows.num_rows()), &rows)
                })
                .collect::<Result<_>>()?;
            out.push((format!("{prefix}join{i}"), rows));
        }
        self.out.snapshot(&format!("{prefix}out."), out)
    }
    fn restore(&mut self, prefix: &str, sections: &mut Sections) -> Result<()> {
        for (i, side) in self.sides.iter_mut().enumerate() {
            for batch in take_section(sections, prefix, &format!("join{i}")) {
                let (times, rows) = untag(&batch)?;
                let keys = match &self.spec.by {
                    JoinBy::Keys(k) => Some(k.keys(i, &rows)?),
                    JoinBy::Query(_) => None,
                };
                side.push(rows, &times, keys.as_ref());
            }
        }
        self.out.restore(&format!("{prefix}out."), sections)
    }
    /// The joined rows' log, when they are not aggregated.
    fn appended(&mut self) -> Option<&mut AppendLog> {
        self.out.appended()
    }
    fn appended_rows(&self) -> Option<Vec<RecordBatch>> {
        self.out.appended_rows()
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn side_rows(keys: &[Option<i64>], tag: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]));
        let values: Vec<String> = (0..keys.len()).map(|i| format!("{tag}{i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(keys.to_vec())),
                Arc::new(datafusion::arrow::array::StringArray::from(values)),
            ],
        )
        .unwrap()
    }

    fn keys() -> JoinKeys {
        let joined = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
            Field::new("k2", DataType::Int64, true),
            Field::new("v2", DataType::Utf8, true),
        ]));
        let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        JoinKeys {
            exprs: [vec![Arc::clone(&col)], vec![col]],
            types: vec![DataType::Int64],
            converter: RowConverter::new(vec![datafusion::arrow::row::SortField::new(
                DataType::Int64,
            )])
            .unwrap(),
            nulls_match: false,
            filter: Chain::default(),
            schema: joined,
        }
    }

    fn pairs(joined: &RecordBatch) -> Vec<String> {
        let l = joined
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let r = joined
            .column(3)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .unwrap();
        let mut out: Vec<String> = (0..joined.num_rows())
            .map(|i| format!("{}-{}", l.value(i), r.value(i)))
            .collect();
        out.sort();
        out
    }

    /// Keep `rows` on the right side, indexed.
    fn keep(k: &JoinKeys, side: &mut JoinSide, rows: RecordBatch, times: Vec<i64>) {
        let keys = k.keys(1, &rows).unwrap();
        side.push(rows, &Int64Array::from(times), Some(&keys));
    }

    /// Join new left rows with the right side's.
    fn probe(k: &JoinKeys, left: &RecordBatch, right: &JoinSide) -> RecordBatch {
        k.probe(0, left, &k.keys(0, left).unwrap(), right).unwrap()
    }

    #[test]
    fn a_new_row_meets_only_kept_partners_with_its_key() {
        let k = keys();
        let mut right = JoinSide::default();
        keep(
            &k,
            &mut right,
            side_rows(&[Some(1), Some(2), Some(1), None], "r"),
            vec![10, 20, 30, 40],
        );
        keep(&k, &mut right, side_rows(&[Some(2)], "s"), vec![100]);
        let left = side_rows(&[Some(1), Some(2), None, Some(3)], "l");
        assert_eq!(
            pairs(&probe(&k, &left, &right)),
            ["l0-r0", "l0-r2", "l1-r1", "l1-s0"]
        );
        // The first batch goes once the cutoff passes its newest row; the second stays.
        right.evict(41);
        assert_eq!(right.rows(), 1);
        assert_eq!(pairs(&probe(&k, &left, &right)), ["l1-s0"]);
        right.evict(i64::MAX);
        assert_eq!(right.rows(), 0);
        assert_eq!(probe(&k, &left, &right).num_rows(), 0);
    }

    #[test]
    fn index_entries_of_gone_rows_are_dropped() {
        let k = keys();
        let mut side = JoinSide::default();
        for t in 0..3000i64 {
            keep(&k, &mut side, side_rows(&[Some(t % 7)], "r"), vec![t]);
        }
        side.evict(2990);
        assert_eq!(side.rows(), 10);
        assert_eq!(side.index.values().map(Vec::len).sum::<usize>(), 10);
        let left = side_rows(&[Some(0), Some(1)], "l");
        assert_eq!(probe(&k, &left, &side).num_rows(), 3);
    }
}
