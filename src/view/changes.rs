//! A view's changes as they happen: the rows it gains and loses, each stamped with the
//! time of the change and an operation, for `SUBSCRIBE` on the PostgreSQL port and the
//! change tickets of Flight SQL. The view never waits for a subscriber: one that falls
//! too far behind is told so and dropped.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::{concat_batches, interleave_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::connector::now_micros;
use crate::error::{Result, WeirError};

/// The column that tells when the view changed (UTC).
pub const TIMESTAMP: &str = "weir_timestamp";
/// The column that tells whether the row came (`insert`) or went (`delete`).
pub const OP: &str = "weir_op";
/// Change batches a subscriber may be behind before it is dropped.
pub const CAPACITY: usize = 4096;

/// What a view tells its subscribers.
#[derive(Debug, Clone)]
pub enum Change {
    /// Rows of the change schema: deleted rows first, then inserted ones.
    Rows(RecordBatch),
    /// Rows the view let go because they passed its retention (all deletes): subscribers
    /// see them as deletes, sinks keep what they wrote.
    Expired(RecordBatch),
    /// The view's source ended: nothing more will change.
    End,
    /// The view stopped, or was dropped: why.
    Stopped(String),
}

/// The rows a subscriber reads: the view's columns after [`TIMESTAMP`] and [`OP`].
pub fn change_schema(view: &Schema) -> SchemaRef {
    let mut fields = vec![
        Arc::new(Field::new(
            TIMESTAMP,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )),
        Arc::new(Field::new(OP, DataType::Utf8, false)),
    ];
    fields.extend(view.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// A view's subscribers.
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
    view: SchemaRef,
    schema: SchemaRef,
    /// The last timestamp given, so that timestamps never go back.
    last: i64,
}

impl ChangeFeed {
    pub fn new(view: SchemaRef) -> ChangeFeed {
        ChangeFeed {
            sender: broadcast::Sender::new(CAPACITY),
            schema: change_schema(&view),
            view,
            last: i64::MIN,
        }
    }

    /// Whether anyone listens (nothing is computed for changes otherwise).
    pub fn active(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    fn stamp(&mut self) -> i64 {
        self.last = self.last.max(now_micros());
        self.last
    }

    /// Tell the subscribers that `deleted` rows went and `inserted` rows came.
    pub fn publish(&mut self, deleted: &[RecordBatch], inserted: &[RecordBatch]) -> Result<()> {
        if !self.active() {
            return Ok(());
        }
        let at = self.stamp();
        if let Some(batch) = self.changes(at, deleted, inserted)? {
            let _ = self.sender.send(Change::Rows(batch));
        }
        Ok(())
    }

    /// Tell the subscribers that `gone` rows passed the view's retention.
    pub fn publish_expired(&mut self, gone: &[RecordBatch]) -> Result<()> {
        if !self.active() {
            return Ok(());
        }
        let at = self.stamp();
        if let Some(batch) = self.changes(at, gone, &[])? {
            let _ = self.sender.send(Change::Expired(batch));
        }
        Ok(())
    }

    /// Tell the subscribers what changed between a window's (or the whole view's) rows
    /// `old` and `new`: only the rows that differ.
    pub fn publish_diff(
        &mut self,
        old: Option<&RecordBatch>,
        new: Option<&RecordBatch>,
    ) -> Result<()> {
        if !self.active() {
            return Ok(());
        }
        let (deleted, inserted) = diff(old, new)?;
        self.publish(&deleted, &inserted)
    }

    /// The view's source ended.
    pub fn end(&self) {
        let _ = self.sender.send(Change::End);
    }

    /// The view stopped (or was dropped): `why`.
    pub fn stop(&self, why: String) {
        let _ = self.sender.send(Change::Stopped(why));
    }

    /// A new subscriber that first reads `current` (the view's rows now, as inserts),
    /// then every change after this call (with the rows that expire when `expired`).
    /// `ended`: the view will not change any more.
    pub fn subscribe(
        &mut self,
        name: &str,
        current: Option<Vec<RecordBatch>>,
        ended: bool,
        expired: bool,
    ) -> Result<ChangeStream> {
        let first = match current {
            Some(rows) => {
                let at = self.stamp();
                self.changes(at, &[], &rows)?
            }
            None => None,
        };
        let first = futures::stream::iter(first.map(Ok));
        if ended {
            return Ok(ChangeStream {
                schema: Arc::clone(&self.schema),
                stream: first.boxed(),
            });
        }
        let receiver = self.sender.subscribe();
        let rest = futures::stream::unfold(
            Some((receiver, name.to_string())),
            move |state| async move {
                let (mut receiver, name) = state?;
                let item = loop {
                    break match receiver.recv().await {
                        Ok(Change::Rows(batch)) => Ok(batch),
                        Ok(Change::Expired(batch)) if expired => Ok(batch),
                        Ok(Change::Expired(_)) => continue,
                        Ok(Change::End) => return None,
                        Ok(Change::Stopped(why)) => Err(WeirError::Stopped(why)),
                        Err(broadcast::error::RecvError::Lagged(n)) => Err(WeirError::Lagged {
                            view: name.clone(),
                            missed: n,
                            kept: CAPACITY,
                        }),
                        Err(broadcast::error::RecvError::Closed) => Err(WeirError::Stopped(
                            format!("materialized view \"{name}\" was dropped"),
                        )),
                    };
                };
                // An error ends the subscription.
                let next = item.is_ok().then_some((receiver, name));
                Some((item, next))
            },
        );
        Ok(ChangeStream {
            schema: Arc::clone(&self.schema),
            stream: first.chain(rest).boxed(),
        })
    }

    /// One batch of the change schema: `deleted` then `inserted`, all at `at`.
    fn changes(
        &self,
        at: i64,
        deleted: &[RecordBatch],
        inserted: &[RecordBatch],
    ) -> Result<Option<RecordBatch>> {
        let gone: usize = deleted.iter().map(RecordBatch::num_rows).sum();
        let came: usize = inserted.iter().map(RecordBatch::num_rows).sum();
        if gone + came == 0 {
            return Ok(None);
        }
        let rows = concat_batches(&self.view, deleted.iter().chain(inserted))?;
        let ops = std::iter::repeat_n("delete", gone).chain(std::iter::repeat_n("insert", came));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from_value(at, gone + came).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(ops)),
        ];
        columns.extend(rows.columns().iter().cloned());
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }
}

/// A view's changes as a client reads them.
pub struct ChangeStream {
    /// [`change_schema`] of the view.
    pub schema: SchemaRef,
    /// Batches of that schema, as the view changes; ends when the view's source ends.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
}

/// The rows of `old` that are not in `new`, and the rows of `new` that are not in `old`
/// (as multisets: a row twice in `old` and once in `new` is deleted once).
pub fn diff(
    old: Option<&RecordBatch>,
    new: Option<&RecordBatch>,
) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
    let (old, new) = match (old, new) {
        (None, None) => return Ok((vec![], vec![])),
        (Some(old), None) => return Ok((vec![old.clone()], vec![])),
        (None, Some(new)) => return Ok((vec![], vec![new.clone()])),
        (Some(old), Some(new)) => (old, new),
    };
    let fields = old
        .schema()
        .fields()
        .iter()
        .map(|f| SortField::new(f.data_type().clone()))
        .collect();
    // Types the row format cannot hold: everything went and came again.
    let Ok(converter) = RowConverter::new(fields) else {
        return Ok((vec![old.clone()], vec![new.clone()]));
    };
    let old_rows = converter.convert_columns(old.columns())?;
    let new_rows = converter.convert_columns(new.columns())?;
    let mut unmatched: HashMap<&[u8], Vec<u32>> = HashMap::with_capacity(old.num_rows());
    for (i, row) in old_rows.iter().enumerate().rev() {
        unmatched.entry(row.data()).or_default().push(i as u32);
    }
    let mut inserted = Vec::new();
    for (i, row) in new_rows.iter().enumerate() {
        match unmatched.get_mut(row.data()).and_then(Vec::pop) {
            Some(_) => {}
            None => inserted.push(i as u32),
        }
    }
    let mut deleted: Vec<u32> = unmatched.into_values().flatten().collect();
    deleted.sort_unstable();
    let pick = |batch: &RecordBatch, indices: Vec<u32>| -> Result<Vec<RecordBatch>> {
        if indices.is_empty() {
            return Ok(vec![]);
        }
        let indices = datafusion::arrow::array::UInt32Array::from(indices);
        Ok(vec![take_record_batch(batch, &indices)?])
    };
    Ok((pick(old, deleted)?, pick(new, inserted)?))
}

/// A change batch ([`change_schema`]) taken apart: the view's rows, and for each whether
/// it was deleted (`weir_op` = `delete`) rather than inserted.
pub fn split_ops(batch: &RecordBatch) -> Result<(RecordBatch, Vec<bool>)> {
    let schema = batch.schema();
    if schema.fields().len() < 2
        || schema.field(0).name() != TIMESTAMP
        || schema.field(1).name() != OP
    {
        return Err(WeirError::Internal(format!(
            "a change batch starts with {TIMESTAMP} and {OP}, not {:?}",
            schema
                .fields()
                .iter()
                .take(2)
                .map(|f| f.name())
                .collect::<Vec<_>>()
        )));
    }
    let ops = batch
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| WeirError::Internal(format!("{OP} is not a string column")))?;
    let deleted = ops.iter().map(|op| op == Some("delete")).collect();
    Ok((
        batch.project(&(2..batch.num_columns()).collect::<Vec<_>>())?,
        deleted,
    ))
}

/// What a run of changes leaves behind, key by key: the last change of each key wins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetEffect {
    /// The rows whose key's last change inserted them (a key deleted and inserted again
    /// is one row here), in the order of those last changes.
    pub upserts: Option<RecordBatch>,
    /// The rows whose key's last change deleted them, in the same order.
    pub deletes: Option<RecordBatch>,
}

/// The net effect per key of `changes` — rows of one schema, each with whether it was
/// deleted (as [`split_ops`] gives them), in the order they happened. `key` holds column
/// indexes; rows without a key (append-only input) are all inserts.
pub fn net_effect(changes: &[(RecordBatch, Vec<bool>)], key: &[usize]) -> Result<NetEffect> {
    let Some((first, _)) = changes.first() else {
        return Ok(NetEffect {
            upserts: None,
            deletes: None,
        });
    };
    let fields = key
        .iter()
        .map(|&i| SortField::new(first.schema().field(i).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    // Per key: where its last change is (batch, row) and whether it deleted.
    let mut last: HashMap<Vec<u8>, (usize, usize, bool)> = HashMap::new();
    for (b, (rows, deleted)) in changes.iter().enumerate() {
        let columns: Vec<ArrayRef> = key.iter().map(|&i| Arc::clone(rows.column(i))).collect();
        let keys = converter.convert_columns(&columns)?;
        for (r, k) in keys.iter().enumerate() {
            let gone = deleted.get(r).copied().unwrap_or(false);
            last.insert(k.as_ref().to_vec(), (b, r, gone));
        }
    }
    let mut chosen: Vec<(usize, usize, bool)> = last.into_values().collect();
    chosen.sort_unstable();
    let batches: Vec<&RecordBatch> = changes.iter().map(|(rows, _)| rows).collect();
    let pick = |gone: bool| -> Result<Option<RecordBatch>> {
        let indices: Vec<(usize, usize)> = chosen
            .iter()
            .filter(|c| c.2 == gone)
            .map(|&(b, r, _)| (b, r))
            .collect();
        if indices.is_empty() {
            return Ok(None);
        }
        Ok(Some(interleave_record_batch(&batches, &indices)?))
    };
    Ok(NetEffect {
        upserts: pick(false)?,
        deletes: pick(true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};

    fn batch(keys: &[&str], counts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(counts.to_vec())),
            ],
        )
        .unwrap()
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let k = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for i in 0..b.num_rows() {
                out.push((k.value(i).to_string(), n.value(i)));
            }
        }
        out
    }

    #[test]
    fn diff_keeps_only_the_rows_that_changed() {
        let old = batch(&["a", "b", "c", "c"], &[1, 2, 3, 3]);
        let new = batch(&["c", "a", "b", "d"], &[3, 1, 5, 1]);
        let (deleted, inserted) = diff(Some(&old), Some(&new)).unwrap();
        assert_eq!(rows(&deleted), vec![("b".into(), 2), ("c".into(), 3)]);
        assert_eq!(rows(&inserted), vec![("b".into(), 5), ("d".into(), 1)]);
        let (deleted, inserted) = diff(Some(&old), None).unwrap();
        assert_eq!(rows(&deleted).len(), 4);
        assert!(inserted.is_empty());
    }

    #[tokio::test]
    async fn subscribers_read_the_rows_then_each_change_once_in_order() {
        let view = batch(&[], &[]).schema();
        let mut feed = ChangeFeed::new(Arc::clone(&view));
        assert!(!feed.active());
        feed.publish(&[], &[batch(&["before"], &[0])]).unwrap();
        let sub = feed
            .subscribe("v", Some(vec![batch(&["a"], &[1])]), false, true)
            .unwrap();
        assert!(feed.active());
        assert_eq!(sub.schema.field(0).name(), TIMESTAMP);
        feed.publish_diff(Some(&batch(&["a"], &[1])), Some(&batch(&["a"], &[2])))
            .unwrap();
        feed.publish(&[batch(&["a"], &[2])], &[]).unwrap();
        feed.end();
        let got: Vec<RecordBatch> = sub.stream.map(|b| b.unwrap()).collect::<Vec<_>>().await;
        let ops: Vec<String> = got
            .iter()
            .flat_map(|b| {
                let ops = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                let keys = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
                let n = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..b.num_rows())
                    .map(|i| format!("{} {} {}", ops.value(i), keys.value(i), n.value(i)))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            ops,
            vec!["insert a 1", "delete a 1", "insert a 2", "delete a 2"]
        );
        let stamps: Vec<i64> = got
            .iter()
            .map(|b| {
                let t = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .unwrap();
                assert!(!t.is_null(0));
                t.value(0)
            })
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told() {
        let view = batch(&[], &[]).schema();
        let mut feed = ChangeFeed::new(view);
        let mut sub = feed.subscribe("v", None, false, true).unwrap();
        for i in 0..(CAPACITY as i64 + 10) {
            feed.publish(&[], &[batch(&["x"], &[i])]).unwrap();
        }
        let err = sub.stream.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("fell 10 changes behind"), "{err}");
        assert!(sub.stream.next().await.is_none());
    }

    fn change(ops: &[&str], keys: &[&str], counts: &[i64]) -> (RecordBatch, Vec<bool>) {
        let rows = batch(keys, counts);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from_value(0, ops.len()).with_timezone("UTC")),
            Arc::new(StringArray::from(ops.to_vec())),
        ];
        columns.extend(rows.columns().iter().cloned());
        let batch = RecordBatch::try_new(change_schema(&rows.schema()), columns).unwrap();
        split_ops(&batch).unwrap()
    }

    #[test]
    fn net_effect_keeps_the_last_change_of_each_key() {
        // a changes (delete old, insert new), b goes, c comes, d comes and goes again.
        let first = change(
            &["delete", "delete", "insert", "insert", "insert"],
            &["a", "b", "a", "c", "d"],
            &[1, 2, 5, 3, 4],
        );
        let second = change(&["delete", "insert"], &["d", "c"], &[4, 7]);
        let net = net_effect(&[first.clone(), second], &[0]).unwrap();
        assert_eq!(
            rows(net.upserts.as_slice()),
            vec![("a".into(), 5), ("c".into(), 7)]
        );
        assert_eq!(
            rows(net.deletes.as_slice()),
            vec![("b".into(), 2), ("d".into(), 4)]
        );
        // Keyed on both columns, a's old and new rows are different keys.
        let net = net_effect(&[first], &[0, 1]).unwrap();
        assert_eq!(
            rows(net.deletes.as_slice()),
            vec![("a".into(), 1), ("b".into(), 2)]
        );
        assert_eq!(rows(net.upserts.as_slice()).len(), 3);
        // Append-only rows: the last row of a key wins.
        let appended = (batch(&["x", "y", "x"], &[1, 2, 3]), vec![false; 3]);
        let net = net_effect(&[appended], &[0]).unwrap();
        assert_eq!(
            rows(net.upserts.as_slice()),
            vec![("y".into(), 2), ("x".into(), 3)]
        );
        assert!(net.deletes.is_none());
        assert_eq!(net_effect(&[], &[0]).unwrap().upserts, None);
    }
}
