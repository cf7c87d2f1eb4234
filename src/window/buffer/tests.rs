//! Rows kept per window for window functions: each window's rows by its end, the current
//! rows of the windows that changed, closing in window order, and export and import.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{Field, Schema};

use super::*;

/// Rows (id, window_start) in a window of size 10 keyed by its start (column 1).
fn rows(rows: &[(i64, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("window_start", DataType::Int64, true),
    ]));
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)));
    let starts: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
    RecordBatch::try_new(schema, vec![ids, starts]).unwrap()
}

fn buffer() -> WindowBuffer {
    WindowBuffer::new(WindowKey {
        column: 1,
        is_start: true,
        size: 10,
    })
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    let mut v = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec();
    v.sort_unstable();
    v
}

#[test]
fn windows_close_in_order_with_all_their_rows_and_are_freed() {
    let mut b = buffer();
    b.update(&rows(&[(1, 0), (2, 10), (3, 0)])).unwrap();
    b.update(&rows(&[(4, 20), (5, 20)])).unwrap();
    b.update(&rows(&[(6, 0)])).unwrap();
    assert_eq!((b.windows(), b.rows()), (3, 6));
    assert!(b.close_until(9).unwrap().is_empty(), "[0, 10) ends at 10");
    let closed = b.close_until(20).unwrap();
    let ends: Vec<i64> = closed.iter().map(|(e, _)| *e).collect();
    assert_eq!(ends, [10, 20]);
    assert_eq!(ids(&closed[0].1), [1, 3, 6]);
    assert_eq!(ids(&closed[1].1), [2]);
    assert_eq!((b.windows(), b.rows()), (1, 2));
    let closed = b.close_until(i64::MAX).unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(ids(&closed[0].1), [4, 5]);
    assert_eq!((b.windows(), b.rows(), b.state_bytes()), (0, 0, 0));
}

#[test]
fn refresh_gives_the_windows_that_changed_and_export_import_keeps_every_row() {
    let mut b = buffer();
    b.update(&rows(&[(1, 0), (2, 10)])).unwrap();
    assert_eq!(b.refresh().unwrap().len(), 2);
    assert!(b.refresh().unwrap().is_empty());
    b.update(&rows(&[(3, 10)])).unwrap();
    let changed = b.refresh().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].0, 20);
    assert_eq!(ids(&changed[0].1), [2, 3]);

    let mut restored = buffer();
    for (end, rows) in b.export().unwrap() {
        restored.import(end, rows);
    }
    assert_eq!((restored.windows(), restored.rows()), (2, 3));
    for buf in [&mut b, &mut restored] {
        buf.update(&rows(&[(4, 10)])).unwrap();
    }
    let a = b.close_until(i64::MAX).unwrap();
    let r = restored.close_until(i64::MAX).unwrap();
    assert_eq!(a.len(), r.len());
    for ((ea, ra), (er, rr)) in a.iter().zip(&r) {
        assert_eq!(ea, er);
        assert_eq!(ids(ra), ids(rr));
    }
    assert_eq!(ids(&r[1].1), [2, 3, 4]);
}
