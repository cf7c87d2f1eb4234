//! Window assignment: `TUMBLE(size)` and `HOP(slide, size)` put each event into every
//! window that contains its event time, adding `window_start` (inclusive) and
//! `window_end` (exclusive), aligned to the Unix epoch plus an optional offset.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Result, WeirError};

/// The most windows of one `HOP` an event may fall into (size / slide): beyond it, one
/// event would make that many rows under the view's lock.
pub const MAX_HOPS: i64 = 1000;

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// A window shape in nanoseconds; a tumbling window is a hop whose slide is its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub slide: i64,
    pub size: i64,
    pub offset: i64,
}

/// Nanoseconds per tick of `unit`.
pub fn nanos_per(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

impl WindowSpec {
    pub fn tumble(size: i64, offset: i64) -> Result<Self> {
        Self::hop(size, size, offset)
    }

    pub fn hop(slide: i64, size: i64, offset: i64) -> Result<Self> {
        if size <= 0 || slide <= 0 {
            return Err(WeirError::InvalidParameter(
                "window size and slide must be positive intervals".into(),
            ));
        }
        if slide > size {
            return Err(WeirError::InvalidParameter(format!(
                "HOP slide ({}) is longer than the window size ({}): events between windows would be lost",
                describe(slide),
                describe(size)
            )));
        }
        if size / slide > MAX_HOPS {
            return Err(WeirError::InvalidParameter(format!(
                "HOP slide ({}) puts each event into {} windows of size {}; at most {MAX_HOPS}",
                describe(slide),
                size / slide,
                describe(size)
            )));
        }
        Ok(WindowSpec {
            slide,
            size,
            offset,
        })
    }

    pub fn is_tumble(&self) -> bool {
        self.slide == self.size
    }

    /// The same shape in ticks of `unit`; it must divide evenly.
    pub fn in_unit(&self, unit: TimeUnit) -> Result<WindowSpec> {
        let n = nanos_per(unit);
        let conv = |v: i64| {
            if v % n == 0 {
                Ok(v / n)
            } else {
                Err(WeirError::InvalidParameter(format!(
                    "window interval {} is finer than the time column's unit ({unit:?})",
                    describe(v)
                )))
            }
        };
        Ok(WindowSpec {
            slide: conv(self.slide)?,
            size: conv(self.size)?,
            offset: conv(self.offset)?,
        })
    }

    /// The latest window start at or before `t` (in this spec's unit); `None` when it
    /// lies before the smallest representable time.
    pub fn last_start(&self, t: i64) -> Option<i64> {
        let t = i128::from(t);
        let s = t - (t - i128::from(self.offset)).rem_euclid(i128::from(self.slide));
        i64::try_from(s).ok()
    }

    /// The starts of the windows that hold `t`, latest first, pushed onto `out`; `false`
    /// (and nothing pushed) when one of them would start or end outside the representable
    /// times: such an event belongs to no window. Computed in 128 bits, so that no event
    /// time overflows or loops.
    pub fn starts(&self, t: i64, out: &mut Vec<i64>) -> bool {
        let (size, slide) = (i128::from(self.size), i128::from(self.slide));
        let t128 = i128::from(t);
        let last = t128 - (t128 - i128::from(self.offset)).rem_euclid(slide);
        let fits = |v: i128| i64::try_from(v).is_ok();
        // Windows run from `last` down to the earliest start still holding `t`.
        let first = last - (size - 1) / slide * slide;
        if !fits(first) || !fits(last + size) {
            return false;
        }
        let mut s = last;
        while s + size > t128 {
            out.push(s as i64);
            s -= slide;
        }
        true
    }
}

/// `90000000000` → `1m30s`, for messages.
pub fn describe(nanos: i64) -> String {
    let mut out = String::new();
    let mut rest = nanos;
    for (unit, n) in [
        ("d", 86_400_000_000_000i64),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if rest >= n {
            out.push_str(&format!("{}{unit}", rest / n));
            rest %= n;
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// The schema of `input` with `window_start` and `window_end` of the time column's type.
pub fn windowed_schema(input: &Schema, time_type: &DataType) -> SchemaRef {
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(WINDOW_START, time_type.clone(), false));
    fields.push(Field::new(WINDOW_END, time_type.clone(), false));
    Arc::new(Schema::new(fields))
}

/// Assigns the rows of `batch` to windows over column `time` (already in `spec`'s unit).
/// Rows with a NULL event time belong to no window, and so do rows whose windows would
/// start or end outside the representable times. Returns the windowed batch with
/// `schema` (from `windowed_schema`).
pub fn assign(
    batch: &RecordBatch,
    time: usize,
    spec: &WindowSpec,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let time_col = batch.column(time);
    let time_type = time_col.data_type().clone();
    let ticks = cast(time_col, &DataType::Int64)?;
    let ticks = ticks
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("cast to Int64");
    let all_valid = ticks.null_count() == 0;
    let fast = spec.is_tumble() && all_valid;
    let tumbled: Option<Vec<i64>> = if fast {
        ticks
            .values()
            .iter()
            .map(|&t| {
                spec.last_start(t)
                    .filter(|s| s.checked_add(spec.size).is_some())
            })
            .collect()
    } else {
        None
    };
    let (columns, starts): (Vec<ArrayRef>, Vec<i64>) = if let Some(starts) = tumbled {
        (batch.columns().to_vec(), starts)
    } else {
        let mut rows: Vec<u32> = Vec::with_capacity(ticks.len());
        let mut starts = Vec::with_capacity(ticks.len());
        for (i, t) in ticks.iter().enumerate() {
            let Some(t) = t else { continue };
            let before = starts.len();
            if spec.starts(t, &mut starts) {
                rows.extend(std::iter::repeat_n(i as u32, starts.len() - before));
            }
        }
        let idx = UInt32Array::from(rows);
        let cols = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        (cols, starts)
    };
    let ends: Int64Array = starts.iter().map(|s| s + spec.size).collect();
    let starts = Int64Array::from(starts);
    let mut columns = columns;
    columns.push(cast(&starts, &time_type)?);
    columns.push(cast(&ends, &time_type)?);
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;

    fn batch(ts: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(TimestampMillisecondArray::from(ts))]).unwrap()
    }

    fn starts_ends(b: &RecordBatch) -> Vec<(i64, i64, i64)> {
        let col = |i: usize| {
            cast(b.column(i), &DataType::Int64)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        let (t, s, e) = (col(0), col(1), col(2));
        (0..b.num_rows()).map(|i| (t[i], s[i], e[i])).collect()
    }

    #[test]
    fn tumble_aligns_to_epoch_and_offset() {
        let b = batch(vec![Some(0), Some(9_999), Some(10_000), Some(-1)]);
        let spec = WindowSpec::tumble(10_000_000_000, 0)
            .unwrap()
            .in_unit(TimeUnit::Millisecond)
            .unwrap();
        let schema = windowed_schema(&b.schema(), b.column(0).data_type());
        let out = assign(&b, 0, &spec, &schema).unwrap();
        assert_eq!(
            starts_ends(&out),
            vec![
                (0, 0, 10_000),
                (9_999, 0, 10_000),
                (10_000, 10_000, 20_000),
                (-1, -10_000, 0)
            ]
        );
        let spec = WindowSpec::tumble(10_000_000_000, 3_000_000_000)
            .unwrap()
            .in_unit(TimeUnit::Millisecond)
            .unwrap();
        let out = assign(&b, 0, &spec, &schema).unwrap();
        assert_eq!(starts_ends(&out)[0], (0, -7_000, 3_000));
    }

    #[test]
    fn hop_puts_each_event_in_size_over_slide_windows() {
        let b = batch(vec![Some(61_000), None]);
        let spec = WindowSpec::hop(60_000_000_000, 300_000_000_000, 0)
            .unwrap()
            .in_unit(TimeUnit::Millisecond)
            .unwrap();
        let schema = windowed_schema(&b.schema(), b.column(0).data_type());
        let out = assign(&b, 0, &spec, &schema).unwrap();
        let got: Vec<i64> = starts_ends(&out).iter().map(|r| r.1).collect();
        assert_eq!(got, vec![60_000, 0, -60_000, -120_000, -180_000]);
        assert!(WindowSpec::hop(2, 1, 0).is_err());
        let e = WindowSpec::hop(1_000_000, 86_400_000_000_000, 0).unwrap_err();
        assert!(e.to_string().contains("at most 1000"), "{e}");
        assert!(WindowSpec::hop(1, 1000, 0).is_ok());
        assert_eq!(describe(90_000_000_000), "1m30s");
    }

    #[test]
    fn extreme_event_times_neither_overflow_nor_loop() {
        let b = batch(vec![
            Some(i64::MIN),
            Some(i64::MIN + 1),
            Some(61_000),
            Some(i64::MAX),
            Some(i64::MAX - 1),
        ]);
        let schema = windowed_schema(&b.schema(), b.column(0).data_type());
        for (slide, size) in [(60_000, 60_000), (60_000, 300_000), (7, 10)] {
            for offset in [0, 3, -3] {
                let spec = WindowSpec::hop(slide, size, offset).unwrap();
                let out = assign(&b, 0, &spec, &schema).unwrap();
                let rows = starts_ends(&out);
                // Only the ordinary event time has windows; each holds it.
                assert!(!rows.is_empty(), "{spec:?}");
                for (t, s, e) in rows {
                    assert_eq!(t, 61_000, "{spec:?}");
                    assert!(s <= t && t < e && e - s == size, "{spec:?}");
                }
            }
        }
        // The extremes alone, through the tumbling fast path too.
        let b = batch(vec![Some(i64::MIN), Some(i64::MAX)]);
        let spec = WindowSpec::tumble(10, 0).unwrap();
        assert_eq!(assign(&b, 0, &spec, &schema).unwrap().num_rows(), 0);
        let spec = WindowSpec::hop(5, 10, 0).unwrap();
        assert_eq!(assign(&b, 0, &spec, &schema).unwrap().num_rows(), 0);
        // Windows that still fit are assigned near both ends.
        let spec = WindowSpec::tumble(10, 0).unwrap();
        assert_eq!(spec.last_start(i64::MIN + 10), Some(i64::MIN + 8));
        let b = batch(vec![Some(i64::MIN + 10), Some(i64::MAX - 20)]);
        let rows = starts_ends(&assign(&b, 0, &spec, &schema).unwrap());
        assert_eq!(rows.len(), 2);
        let hop = WindowSpec::hop(5, 10, 0).unwrap();
        let mut out = Vec::new();
        assert!(hop.starts(i64::MAX - 20, &mut out));
        assert_eq!(out.len(), 2);
    }
}
