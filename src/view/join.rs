//! The rows each side of a join of two streams keeps, indexed by the join's equality
//! keys so that a new row meets only its partners, and the join of a new batch with the
//! other side's rows. Rows go a batch at a time, once the other side's watermark has
//! passed all of them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{
    and, cast, filter_record_batch, interleave_record_batch, max, take,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Result, WeirError};

/// The equality keys of a join (`ON l.a = r.b AND …`), evaluated over each side's rows.
#[derive(Debug)]
pub struct JoinKeys {
    /// Key expressions over the left and the right side's rows.
    pub exprs: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// The key columns' types (the left side's; the right's are cast to them).
    pub types: Vec<DataType>,
    /// Whether NULL keys match each other (`IS NOT DISTINCT FROM`).
    pub nulls_match: bool,
    /// The non-equality part of the condition, over the joined rows.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The joined rows: the left side's columns, then the right side's.
    pub schema: SchemaRef,
}

impl JoinKeys {
    /// Each row's key, and which rows have one (a NULL key matches nothing).
    fn keys(&self, side: usize, rows: &RecordBatch) -> Result<(Rows, Option<BooleanArray>)> {
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
        let converter =
            RowConverter::new(self.types.iter().cloned().map(SortField::new).collect())?;
        Ok((converter.convert_columns(&columns)?, valid))
    }

    /// Join `rows`, new on side `side`, with the rows `other` keeps (the other side):
    /// the joined rows, left columns first, that meet the whole condition.
    pub fn probe(&self, side: usize, rows: &RecordBatch, other: &JoinSide) -> Result<RecordBatch> {
        let (keys, valid) = self.keys(side, rows)?;
        let mut new_rows: Vec<u32> = Vec::new();
        let mut partners: Vec<u64> = Vec::new();
        for i in 0..rows.num_rows() {
            if valid.as_ref().is_some_and(|v| !v.value(i)) {
                continue;
            }
            if let Some(seqs) = other.index.get(keys.row(i).as_ref()) {
                for &seq in seqs {
                    if other.locate(seq).is_some() {
                        new_rows.push(i as u32);
                        partners.push(seq);
                    }
                }
            }
        }
        if new_rows.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        let mine = take_rows(rows, &UInt32Array::from(new_rows))?;
        let theirs = other.gather(&partners)?;
        let (left, right) = if side == 0 {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let mut columns = left.columns().to_vec();
        columns.extend(right.columns().iter().cloned());
        let joined = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(left.num_rows())),
        )?;
        match &self.filter {
            Some(f) if joined.num_rows() > 0 => {
                let mask = f.evaluate(&joined)?.into_array(joined.num_rows())?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| WeirError::Internal("join filter is not boolean".into()))?;
                Ok(filter_record_batch(&joined, mask)?)
            }
            _ => Ok(joined),
        }
    }
}

fn take_rows(rows: &RecordBatch, indices: &UInt32Array) -> Result<RecordBatch> {
    let columns = rows
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        rows.schema(),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )?)
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
    /// Keep `rows` with their event times; `keys` indexes them (`None`: no equality keys,
    /// every row is a partner of every other).
    pub fn push(
        &mut self,
        rows: RecordBatch,
        times: &Int64Array,
        keys: Option<(&JoinKeys, usize)>,
    ) -> Result<()> {
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let first = self.next;
        if let Some((k, side)) = keys {
            let (key_rows, valid) = k.keys(side, &rows)?;
            for i in 0..n {
                if valid.as_ref().is_some_and(|v| !v.value(i)) {
                    continue;
                }
                self.index
                    .entry(key_rows.row(i).as_ref().into())
                    .or_default()
                    .push(first + i as u64);
            }
        }
        let newest = max::<Int64Type>(times).unwrap_or(i64::MAX);
        self.oldest = Some(self.oldest.map_or(newest, |o| o.min(newest)));
        self.chunks.insert(first, Chunk { rows, newest });
        self.next += n as u64;
        self.live += n;
        Ok(())
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
        let chunks = &self.chunks;
        self.index.retain(|_, seqs| {
            seqs.retain(|&s| {
                chunks
                    .range(..=s)
                    .next_back()
                    .is_some_and(|(first, c)| s < first + c.rows.num_rows() as u64)
            });
            !seqs.is_empty()
        });
        self.stale = 0;
    }

    /// The batch and row of row number `seq`, if it is still kept.
    fn locate(&self, seq: u64) -> Option<(&RecordBatch, usize)> {
        let (first, chunk) = self.chunks.range(..=seq).next_back()?;
        let i = (seq - first) as usize;
        (i < chunk.rows.num_rows()).then_some((&chunk.rows, i))
    }

    /// The rows with the given numbers (all kept, at least one), in that order.
    fn gather(&self, seqs: &[u64]) -> Result<RecordBatch> {
        let mut batches: Vec<&RecordBatch> = Vec::new();
        let mut slot: HashMap<u64, usize> = HashMap::new();
        let mut indices = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let (first, chunk) = self.chunks.range(..=seq).next_back().expect("a kept row");
            let b = *slot.entry(*first).or_insert_with(|| {
                batches.push(&chunk.rows);
                batches.len() - 1
            });
            indices.push((b, (seq - first) as usize));
        }
        Ok(interleave_record_batch(&batches, &indices)?)
    }

    /// Every kept row (for joins without equality keys).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.chunks.values().map(|c| c.rows.clone()).collect()
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
            nulls_match: false,
            filter: None,
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

    #[test]
    fn a_new_row_meets_only_kept_partners_with_its_key() {
        let k = keys();
        let mut right = JoinSide::default();
        let times = Int64Array::from(vec![10, 20, 30, 40]);
        right
            .push(
                side_rows(&[Some(1), Some(2), Some(1), None], "r"),
                &times,
                Some((&k, 1)),
            )
            .unwrap();
        right
            .push(
                side_rows(&[Some(2)], "s"),
                &Int64Array::from(vec![100]),
                Some((&k, 1)),
            )
            .unwrap();
        let left = side_rows(&[Some(1), Some(2), None, Some(3)], "l");
        assert_eq!(
            pairs(&k.probe(0, &left, &right).unwrap()),
            ["l0-r0", "l0-r2", "l1-r1", "l1-s0"]
        );
        // The first batch goes once the cutoff passes its newest row; the second stays.
        right.evict(41);
        assert_eq!(right.rows(), 1);
        assert_eq!(pairs(&k.probe(0, &left, &right).unwrap()), ["l1-s0"]);
        right.evict(i64::MAX);
        assert_eq!(right.rows(), 0);
        assert_eq!(k.probe(0, &left, &right).unwrap().num_rows(), 0);
    }

    #[test]
    fn index_entries_of_gone_rows_are_dropped() {
        let k = keys();
        let mut side = JoinSide::default();
        for t in 0..3000i64 {
            side.push(
                side_rows(&[Some(t % 7)], "r"),
                &Int64Array::from(vec![t]),
                Some((&k, 1)),
            )
            .unwrap();
        }
        side.evict(2990);
        assert_eq!(side.rows(), 10);
        assert_eq!(side.index.values().map(Vec::len).sum::<usize>(), 10);
        let probe = side_rows(&[Some(0), Some(1)], "l");
        assert_eq!(k.probe(0, &probe, &side).unwrap().num_rows(), 3);
    }
}
