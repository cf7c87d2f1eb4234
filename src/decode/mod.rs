//! Decoding of message payloads (one record each) into Arrow record batches of a declared
//! schema, as JSON objects (`arrow-json`) or CSV lines (`arrow-csv`). Records that cannot
//! be decoded are skipped and reported, so one bad message does not stop a source; so are
//! records whose event time is NULL, outside the representable range or too far ahead of
//! the wall clock ([`TimeGuard`]), so that one hostile record cannot move a watermark.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, BooleanArray, Int64Array, RecordBatch, RecordBatchOptions, new_null_array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;

use crate::error::{Result, WeirError};
use crate::window::assign::{describe, nanos_per};

/// How a payload encodes one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object; fields are matched to columns by exact name, unknown fields are
    /// ignored and missing ones are NULL. Numbers and booleans are accepted for text columns.
    Json,
    /// One CSV line without header, fields in column order; an empty field is NULL.
    Csv { delimiter: u8 },
}

impl Format {
    /// `json` or `csv`, as the `format` option spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv { .. } => "csv",
        }
    }

    /// The column types this format decodes, for error messages.
    fn decodable(&self) -> &'static str {
        match self {
            Format::Json => {
                "boolean, integers, floats, decimals, text, binary, date, time, timestamp, \
                 duration, lists, structs and maps of these"
            }
            Format::Csv { .. } => {
                "boolean, integers, floats, decimals, text, date, time and timestamp"
            }
        }
    }
}

/// A record that was skipped: its index among the payloads and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub index: usize,
    pub reason: String,
}

/// The event-time checks a source's decoder makes (`WATERMARK FOR column`): a record whose
/// event time is NULL, outside years 1 to 9999 (or the sentinel values `i64::MIN` and
/// `i64::MAX`), or more than `max_future` ahead of the wall clock is undecodable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeGuard {
    /// Index of the event-time column (a TIMESTAMP) in the schema.
    pub column: usize,
    /// How far ahead of the wall clock an event time may be, in nanoseconds (`None`: any).
    pub max_future: Option<i64>,
}

/// Seconds since the epoch of 0001-01-01 00:00:00 UTC and of 10000-01-01 00:00:00 UTC.
const FIRST_SECOND: i128 = -62_135_596_800;
const END_SECOND: i128 = 253_402_300_800;

/// The ticks of `unit` from 0001-01-01 to the end of 9999, without the sentinels
/// `i64::MIN` and `i64::MAX`.
fn representable(unit: TimeUnit) -> (i128, i128) {
    let per_second = 1_000_000_000 / i128::from(nanos_per(unit));
    (
        (FIRST_SECOND * per_second).max(i128::from(i64::MIN) + 1),
        (END_SECOND * per_second - 1).min(i128::from(i64::MAX) - 1),
    )
}

impl TimeGuard {
    /// The event times (ticks of `unit`) [`TimeGuard::check`] lets through at `now_nanos`,
    /// as an inclusive range: one comparison per record on the common path.
    fn bounds(&self, unit: TimeUnit, now_nanos: i64) -> (i64, i64) {
        let (lo, mut hi) = representable(unit);
        if let Some(max_future) = self.max_future {
            hi = hi.min(
                (i128::from(now_nanos) + i128::from(max_future)) / i128::from(nanos_per(unit)),
            );
        }
        (lo as i64, hi.max(i128::from(i64::MIN)) as i64)
    }

    /// Why the event time `t` (ticks of `unit`; `None`: NULL) makes its record a bad one,
    /// the wall clock being `now_nanos`; `None` when it is good.
    pub fn check(&self, t: Option<i64>, unit: TimeUnit, now_nanos: i64) -> Option<String> {
        let Some(t) = t else {
            return Some("event time is NULL".into());
        };
        let (lo, hi) = representable(unit);
        let wide = i128::from(t);
        if wide < lo || wide > hi {
            return Some(format!(
                "event time {t} ({unit:?}s since 1970) is outside the representable range \
                 (years 1 to 9999)"
            ));
        }
        let max_future = self.max_future?;
        let limit = (i128::from(now_nanos) + i128::from(max_future)) / i128::from(nanos_per(unit));
        (wide > limit).then(|| {
            format!(
                "event time {} is more than {} ahead of the wall clock \
                 (option 'watermark.max_future')",
                show_time(t, unit),
                describe(max_future)
            )
        })
    }
}

/// `t` ticks of `unit` as a UTC date and time, for messages.
fn show_time(t: i64, unit: TimeUnit) -> String {
    use datafusion::arrow::temporal_conversions as tc;
    match unit {
        TimeUnit::Second => tc::timestamp_s_to_datetime(t),
        TimeUnit::Millisecond => tc::timestamp_ms_to_datetime(t),
        TimeUnit::Microsecond => tc::timestamp_us_to_datetime(t),
        TimeUnit::Nanosecond => tc::timestamp_ns_to_datetime(t),
    }
    .map(|d| d.format("%Y-%m-%d %H:%M:%S%.f").to_string())
    .unwrap_or_else(|| t.to_string())
}

/// The wall clock in nanoseconds since the Unix epoch.
fn wall_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Decodes batches of payloads of one format into record batches of one schema. The
/// arrow decoder is kept from one call to the next, so its buffers are reused.
pub struct Decoder {
    schema: SchemaRef,
    format: Format,
    /// The columns decoded from the payloads (all of `schema`, or those kept by
    /// [`Decoder::only`]); the others come out NULL.
    decoded: SchemaRef,
    /// For each column of `schema`, its index in `decoded`; `None` when all are decoded.
    layout: Option<Vec<Option<usize>>>,
    /// The arrow decoder of the fast path and how many records it holds at most (one more
    /// than the payloads it is fed, so that a payload holding two records shows up as a
    /// count mismatch rather than stopping early). Dropped when a call fails part way.
    fast: Option<(Inner, usize)>,
    /// The event-time checks, when the source declares an event time.
    guard: Option<TimeGuard>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("schema", &self.schema)
            .field("format", &self.format)
            .finish()
    }
}

impl Decoder {
    /// Fails naming the column and its type if the format cannot decode that type, listing
    /// what it can decode.
    pub fn new(schema: SchemaRef, format: Format) -> Result<Self> {
        for field in schema.fields() {
            let ok = match format {
                Format::Json => arrow_json::ReaderBuilder::new_with_field(field.clone())
                    .build_decoder()
                    .is_ok(),
                Format::Csv { .. } => csv_decodes(field.data_type()),
            };
            if !ok {
                return Err(WeirError::InvalidParameter(format!(
                    "column \"{}\" has type {} which format '{}' cannot decode; it decodes {}",
                    field.name(),
                    field.data_type(),
                    format.name(),
                    format.decodable()
                )));
            }
        }
        Ok(Decoder {
            decoded: schema.clone(),
            schema,
            format,
            layout: None,
            fast: None,
            guard: None,
        })
    }

    /// Check event times with `guard` (before [`Decoder::only`], which then keeps the
    /// event-time column).
    pub fn guard(mut self, guard: Option<TimeGuard>) -> Self {
        if let Some(g) = guard {
            let fits = self
                .schema
                .fields()
                .get(g.column)
                .is_some_and(|f| matches!(f.data_type(), DataType::Timestamp(_, _)));
            self.guard = fits.then_some(g);
        } else {
            self.guard = None;
        }
        self
    }

    /// Decode only the columns in `needed` (indexes into the schema); the batches keep the
    /// whole schema, with the other nullable columns NULL. A reader whose consumer uses a
    /// few columns of wide records then skips building the rest. Whether a payload is
    /// well-formed is still checked as a whole, but a value of the wrong type in a column
    /// that is not decoded no longer makes it undecodable.
    pub fn only(mut self, needed: &[usize]) -> Self {
        let mut kept = Vec::new();
        let layout: Vec<Option<usize>> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let guarded = self.guard.is_some_and(|g| g.column == i);
                (needed.contains(&i) || guarded || !f.is_nullable()).then(|| {
                    kept.push(i);
                    kept.len() - 1
                })
            })
            .collect();
        if kept.len() == self.schema.fields().len() {
            self.decoded = self.schema.clone();
            self.layout = None;
        } else {
            self.decoded = Arc::new(self.schema.project(&kept).expect("indexes in range"));
            self.layout = Some(layout);
        }
        self.fast = None;
        self
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Decodes payloads (one record each) into one batch with the schema. A payload that
    /// cannot be decoded (bad JSON, wrong type, wrong field count) is skipped and counted;
    /// the others are kept, in order. Returns (batch, skipped).
    pub fn decode(&mut self, payloads: &[&[u8]]) -> Result<(RecordBatch, usize)> {
        let (batch, skipped) = self.decode_reporting(payloads)?;
        Ok((batch, skipped.len()))
    }

    /// [`Decoder::decode`], telling which payloads were skipped and why.
    pub fn decode_reporting(&mut self, payloads: &[&[u8]]) -> Result<(RecordBatch, Vec<Skipped>)> {
        if payloads.is_empty() {
            return Ok((RecordBatch::new_empty(self.schema.clone()), Vec::new()));
        }
        // Fast path: every payload through one decoder, one flush.
        if let Ok(batch) = self.decode_all(payloads) {
            let batch = self.widen(batch)?;
            let mut skipped = Vec::new();
            let batch = self.screen(batch, |row| row, &mut skipped)?;
            return Ok((batch, skipped));
        }
        // Something is wrong: decode one by one to keep the good records.
        let mut batches = Vec::with_capacity(payloads.len());
        let mut decoded = Vec::with_capacity(payloads.len());
        let mut skipped = Vec::new();
        let mut inner: Option<Inner> = None;
        for (index, payload) in payloads.iter().enumerate() {
            let dec = match inner.as_mut() {
                Some(d) => d,
                None => inner.insert(self.inner(2)?),
            };
            match dec.one(payload) {
                Ok(batch) => {
                    batches.push(batch);
                    decoded.push(index);
                }
                Err(reason) => {
                    // A decoder that failed part way holds a broken state: start afresh.
                    inner = None;
                    skipped.push(Skipped { index, reason });
                }
            }
        }
        let batch = concat_batches(&self.decoded, &batches)
            .map_err(|e| WeirError::Internal(format!("concatenating decoded records: {e}")))?;
        let batch = self.widen(batch)?;
        let batch = self.screen(batch, |row| decoded[row], &mut skipped)?;
        skipped.sort_by_key(|s| s.index);
        Ok((batch, skipped))
    }

    /// `batch` without the rows whose event time the guard refuses, each added to
    /// `skipped` under its payload's index (`index_of` a row).
    fn screen(
        &self,
        batch: RecordBatch,
        index_of: impl Fn(usize) -> usize,
        skipped: &mut Vec<Skipped>,
    ) -> Result<RecordBatch> {
        let Some(guard) = self.guard else {
            return Ok(batch);
        };
        let column = batch.column(guard.column);
        let DataType::Timestamp(unit, _) = column.data_type().clone() else {
            return Ok(batch);
        };
        let ticks = cast(column, &DataType::Int64)?;
        let ticks = ticks
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to Int64");
        let now = wall_nanos();
        let (lo, hi) = guard.bounds(unit, now);
        if ticks.null_count() == 0 && ticks.values().iter().all(|t| (lo..=hi).contains(t)) {
            return Ok(batch);
        }
        let mut bad = false;
        let keep: BooleanArray = ticks
            .iter()
            .enumerate()
            .map(|(row, t)| match guard.check(t, unit, now) {
                None => Some(true),
                Some(reason) => {
                    bad = true;
                    skipped.push(Skipped {
                        index: index_of(row),
                        reason,
                    });
                    Some(false)
                }
            })
            .collect();
        if !bad {
            return Ok(batch);
        }
        Ok(filter_record_batch(&batch, &keep)?)
    }

    /// A batch of the decoded columns as one of the whole schema.
    fn widen(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(layout) = &self.layout else {
            return Ok(batch);
        };
        let n = batch.num_rows();
        let columns = layout
            .iter()
            .zip(self.schema.fields())
            .map(|(at, field)| match at {
                Some(at) => Arc::clone(batch.column(*at)),
                None => new_null_array(field.data_type(), n),
            })
            .collect();
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }

    fn decode_all(&mut self, payloads: &[&[u8]]) -> std::result::Result<RecordBatch, String> {
        let rows = payloads.len() + 1;
        let mut dec = match self.fast.take() {
            Some((dec, capacity)) if capacity >= rows => (dec, capacity),
            _ => {
                let capacity = rows.max(FAST_ROWS);
                (self.inner(capacity).map_err(|e| e.to_string())?, capacity)
            }
        };
        for payload in payloads {
            dec.0.feed(payload)?;
        }
        if dec.0.complete_rows() != Some(payloads.len()) {
            return Err("record count differs from payload count".into());
        }
        let batch = dec.0.flush()?;
        if batch.num_rows() != payloads.len() {
            return Err("record count differs from payload count".into());
        }
        // Only a decoder that ended clean is kept.
        self.fast = Some(dec);
        Ok(batch)
    }

    /// The schema's indexes of the decoded columns.
    fn decoded_indexes(&self) -> Vec<usize> {
        match &self.layout {
            Some(layout) => (0..layout.len()).filter(|&i| layout[i].is_some()).collect(),
            None => (0..self.schema.fields().len()).collect(),
        }
    }

    /// A fresh arrow decoder with room for `batch_size` records.
    fn inner(&self, batch_size: usize) -> Result<Inner> {
        Ok(match self.format {
            Format::Json => Inner::Json(
                arrow_json::ReaderBuilder::new(self.decoded.clone())
                    .with_batch_size(batch_size)
                    .with_coerce_primitive(true)
                    .build_decoder()
                    .map_err(|e| WeirError::InvalidParameter(e.to_string()))?,
            ),
            Format::Csv { delimiter } => Inner::Csv {
                decoder: arrow_csv::ReaderBuilder::new(self.schema.clone())
                    .with_projection(self.decoded_indexes())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(batch_size)
                    .build_decoder(),
                batch_size,
            },
        })
    }
}

/// The smallest capacity of the kept fast-path decoder.
const FAST_ROWS: usize = 8192;

/// The arrow decoder of one format (one per reader: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Inner {
    Json(arrow_json::reader::Decoder),
    Csv {
        decoder: arrow_csv::reader::Decoder,
        batch_size: usize,
    },
}

impl Inner {
    /// Append one payload as one line.
    fn feed(&mut self, payload: &[u8]) -> std::result::Result<(), String> {
        let payload = trim_line_end(payload);
        for buf in [payload, b"\n"] {
            let read = match self {
                Inner::Json(d) => d.decode(buf),
                Inner::Csv { decoder, .. } => decoder.decode(buf),
            }
            .map_err(message)?;
            if read != buf.len() {
                return Err("more than one record in the payload".into());
            }
        }
        Ok(())
    }

    /// Whole records buffered, or `None` when one is only partly read.
    fn complete_rows(&self) -> Option<usize> {
        match self {
            Inner::Json(d) => (!d.has_partial_record()).then(|| d.len()),
            Inner::Csv {
                decoder,
                batch_size,
            } => Some(batch_size - decoder.capacity()),
        }
    }

    fn flush(&mut self) -> std::result::Result<RecordBatch, String> {
        match self {
            Inner::Json(d) => d.flush(),
            Inner::Csv { decoder, .. } => decoder.flush(),
        }
        .map_err(message)?
        .ok_or_else(|| "empty payload".to_string())
    }

    /// Decode a single payload into a batch of one row.
    fn one(&mut self, payload: &[u8]) -> std::result::Result<RecordBatch, String> {
        self.feed(payload)?;
        match self.complete_rows() {
            Some(1) => {}
            Some(0) => return Err("empty payload".into()),
            None => return Err("incomplete record".into()),
            Some(_) => return Err("more than one record in the payload".into()),
        }
        let batch = self.flush()?;
        if batch.num_rows() != 1 {
            return Err("more than one record in the payload".into());
        }
        Ok(batch)
    }
}

fn trim_line_end(mut payload: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = payload {
        payload = rest;
    }
    payload
}

fn message(e: ArrowError) -> String {
    match e {
        ArrowError::JsonError(m)
        | ArrowError::CsvError(m)
        | ArrowError::ParseError(m)
        | ArrowError::CastError(m)
        | ArrowError::InvalidArgumentError(m) => m,
        other => other.to_string(),
    }
}

/// The types arrow-csv's reader turns text into (its `parse` function).
fn csv_decodes(t: &DataType) -> bool {
    use DataType::*;
    match t {
        Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
        | Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) | Date32 | Date64 | Timestamp(..) | Utf8 | Utf8View => true,
        Time32(u) => matches!(u, TimeUnit::Second | TimeUnit::Millisecond),
        Time64(u) => matches!(u, TimeUnit::Microsecond | TimeUnit::Nanosecond),
        Dictionary(k, v) => k.is_integer() && **v == Utf8,
        _ => false,
    }
}

/// A schema from `(name, type)` pairs, all nullable (handy for tests and tools).
pub fn schema_of(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(datafusion::arrow::datatypes::Schema::new(
        columns
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{
        Float64Type, Int32Type, Int64Type, IntervalUnit, TimestampMicrosecondType,
        TimestampNanosecondType,
    };

    fn events() -> SchemaRef {
        schema_of(&[
            ("id", DataType::Int64),
            ("name", DataType::Utf8),
            ("price", DataType::Float64),
            ("ts", DataType::Timestamp(TimeUnit::Nanosecond, None)),
        ])
    }

    fn decode(dec: &mut Decoder, payloads: &[&str]) -> (RecordBatch, usize) {
        let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        dec.decode(&bytes).unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    fn json_records_decode_in_order() {
        let mut dec = Decoder::new(events(), Format::Json).unwrap();
        let (batch, skipped) = decode(
            &mut dec,
            &[
                r#"{"id": 1, "name": "a", "price": 1.5, "ts": "2024-01-01T00:00:01Z"}"#,
                r#"{"id": 2, "name": "b", "price": 2, "ts": "2024-01-01 00:00:02", "extra": [1]}"#,
                "{\"id\": 3}\n",
            ],
        );
        assert_eq!(skipped, 0);
        assert_eq!(batch.schema(), events());
        assert_eq!(ids(&batch), vec![1, 2, 3]);
        let price = batch.column(2).as_primitive::<Float64Type>();
        assert_eq!(price.value(1), 2.0);
        assert!(price.is_null(2), "a missing field is NULL");
        let ts = batch.column(3).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(0), 1_704_067_201_000_000_000);
        assert_eq!(ts.value(1), 1_704_067_202_000_000_000);
        assert!(ts.is_null(2));
    }

    #[test]
    fn json_timestamps_in_microseconds() {
        let schema = schema_of(&[("ts", DataType::Timestamp(TimeUnit::Microsecond, None))]);
        let mut dec = Decoder::new(schema, Format::Json).unwrap();
        let (batch, skipped) = decode(
            &mut dec,
            &[
                r#"{"ts": "2024-01-01T00:00:01.5Z"}"#,
                r#"{"ts": "2024-01-01 00:00:02"}"#,
                r#"{"ts": "2024-01-01T02:00:00+02:00"}"#,
            ],
        );
        assert_eq!(skipped, 0);
        let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), 1_704_067_201_500_000);
        assert_eq!(ts.value(1), 1_704_067_202_000_000);
        assert_eq!(ts.value(2), 1_704_067_200_000_000);
    }

    #[test]
    fn numbers_into_text_columns() {
        let mut dec = Decoder::new(events(), Format::Json).unwrap();
        let (batch, skipped) = decode(&mut dec, &[r#"{"id": 1, "name": 42}"#]);
        assert_eq!(skipped, 0);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "42");
    }

    #[test]
    fn bad_json_is_skipped_and_counted() {
        let mut dec = Decoder::new(events(), Format::Json).unwrap();
        let (batch, skipped) = decode(
            &mut dec,
            &[
                r#"{"id": 1}"#,
                r#"{"id": 2, "name": "#,
                r#"{"id": 3}"#,
                "not json",
                r#"{"id": 5}"#,
            ],
        );
        assert_eq!(skipped, 2);
        assert_eq!(ids(&batch), vec![1, 3, 5]);
    }

    #[test]
    fn wrong_types_are_skipped_and_reported() {
        let mut dec = Decoder::new(events(), Format::Json).unwrap();
        let payloads: Vec<&[u8]> = vec![
            br#"{"id": 1}"#,
            br#"{"id": "two"}"#,
            br#"{"id": 3, "ts": "yesterday"}"#,
            br#"{"id": 4}"#,
            b"",
            br#"{"id": 6} {"id": 7}"#,
            br#"[1, 2]"#,
        ];
        let (batch, skipped) = dec.decode_reporting(&payloads).unwrap();
        assert_eq!(ids(&batch), vec![1, 4]);
        let idx: Vec<usize> = skipped.iter().map(|s| s.index).collect();
        assert_eq!(idx, vec![1, 2, 4, 5, 6]);
        assert!(skipped[0].reason.contains("two"), "{:?}", skipped[0]);
        // The decoder is still good afterwards, on the fast path.
        let (batch, n) = decode(&mut dec, &[r#"{"id": 8}"#]);
        assert_eq!((ids(&batch), n), (vec![8], 0));
    }

    #[test]
    fn all_bad_gives_an_empty_batch() {
        let mut dec = Decoder::new(events(), Format::Json).unwrap();
        let (batch, skipped) = decode(&mut dec, &["x", "y"]);
        assert_eq!((batch.num_rows(), skipped), (0, 2));
        assert_eq!(batch.schema(), events());
        let (batch, skipped) = decode(&mut dec, &[]);
        assert_eq!((batch.num_rows(), skipped), (0, 0));
    }

    #[test]
    fn csv_lines() {
        let mut dec = Decoder::new(events(), Format::Csv { delimiter: b',' }).unwrap();
        let (batch, skipped) = decode(
            &mut dec,
            &[
                "1,a,1.5,2024-01-01T00:00:01Z",
                "2,\"b, quoted\",,2024-01-01 00:00:02\r\n",
                "3,c,x,2024-01-01 00:00:03",
                "4,d",
                "5,e,5,2024-01-01 00:00:05",
            ],
        );
        assert_eq!(skipped, 2, "a bad float and a short line");
        assert_eq!(ids(&batch), vec![1, 2, 5]);
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "b, quoted");
        assert!(batch.column(2).is_null(1), "an empty field is NULL");
        let ts = batch.column(3).as_primitive::<TimestampNanosecondType>();
        assert_eq!(ts.value(1), 1_704_067_202_000_000_000);

        let schema = schema_of(&[("a", DataType::Int32), ("b", DataType::Utf8)]);
        let mut dec = Decoder::new(schema, Format::Csv { delimiter: b'|' }).unwrap();
        let (batch, skipped) = decode(&mut dec, &["1|x,y", "2|z"]);
        assert_eq!(skipped, 0);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<Int32Type>()
                .values()
                .to_vec(),
            vec![1, 2]
        );
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "x,y");
    }

    #[test]
    fn only_the_needed_columns_are_decoded() {
        for format in [Format::Json, Format::Csv { delimiter: b',' }] {
            let mut dec = Decoder::new(events(), format).unwrap().only(&[0, 3]);
            let payloads: Vec<&str> = match format {
                Format::Json => vec![
                    r#"{"id": 1, "name": "a", "price": 1.5, "ts": "2024-01-01T00:00:01Z"}"#,
                    r#"{"id": 2, "name": "b", "price": "not a number", "ts": "2024-01-01 00:00:02"}"#,
                    r#"{"id": 3, "name": "#,
                ],
                Format::Csv { .. } => vec![
                    "1,a,1.5,2024-01-01T00:00:01Z",
                    "2,b,not a number,2024-01-01 00:00:02",
                    "3,c",
                ],
            };
            let (batch, skipped) = decode(&mut dec, &payloads);
            assert_eq!(batch.schema(), events(), "{format:?}");
            assert_eq!(skipped, 1, "{format:?}: the broken record");
            assert_eq!(ids(&batch), vec![1, 2], "{format:?}");
            assert_eq!(batch.column(1).null_count(), 2, "{format:?}: not decoded");
            assert_eq!(batch.column(2).null_count(), 2, "{format:?}: not decoded");
            let ts = batch.column(3).as_primitive::<TimestampNanosecondType>();
            assert_eq!(ts.value(1), 1_704_067_202_000_000_000, "{format:?}");
        }
        // A column that cannot be NULL is always decoded.
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, false),
        ]));
        let mut dec = Decoder::new(schema, Format::Json).unwrap().only(&[0]);
        let (batch, skipped) = decode(&mut dec, &[r#"{"id": 1, "name": "a"}"#]);
        assert_eq!(skipped, 0);
        assert_eq!(batch.column(1).as_string::<i32>().value(0), "a");
    }

    #[test]
    fn the_kept_decoder_serves_calls_of_any_size() {
        let mut dec = Decoder::new(events(), Format::Json).unwrap();
        let many: Vec<String> = (0..20_000).map(|i| format!(r#"{{"id": {i}}}"#)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for payloads in [&many[..3], &many[..], &many[..1], &many[..9000]] {
            let (batch, skipped) = decode(&mut dec, payloads);
            assert_eq!(skipped, 0);
            assert_eq!(ids(&batch), (0..payloads.len() as i64).collect::<Vec<_>>());
        }
        // Two records in one payload are caught on the fast path with a full decoder too.
        let (batch, skipped) = decode(&mut dec, &many[..8192]);
        assert_eq!((batch.num_rows(), skipped), (8192, 0));
        let mut two = many[..8191].to_vec();
        two.push(r#"{"id": 1} {"id": 2}"#);
        let (batch, skipped) = decode(&mut dec, &two);
        assert_eq!((batch.num_rows(), skipped), (8191, 1));
    }

    #[test]
    fn undecodable_types_fail_naming_the_column() {
        let interval = schema_of(&[
            ("id", DataType::Int64),
            ("gap", DataType::Interval(IntervalUnit::MonthDayNano)),
        ]);
        let err = Decoder::new(interval.clone(), Format::Json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gap\""), "{err}");
        assert!(err.contains("Interval"), "{err}");
        assert!(err.contains("it decodes boolean"), "{err}");
        let err = Decoder::new(interval, Format::Csv { delimiter: b',' })
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"gap\""), "{err}");

        let list = schema_of(&[(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        )]);
        assert!(Decoder::new(list.clone(), Format::Json).is_ok());
        let err = Decoder::new(list, Format::Csv { delimiter: b',' })
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"tags\"") && err.contains("'csv'"), "{err}");
    }

    #[test]
    fn hostile_event_times_are_bad_records() {
        let schema = schema_of(&[
            ("id", DataType::Int64),
            ("ts", DataType::Timestamp(TimeUnit::Millisecond, None)),
        ]);
        let day = 86_400_000_000_000;
        let mut dec = Decoder::new(schema.clone(), Format::Json)
            .unwrap()
            .guard(Some(TimeGuard {
                column: 1,
                max_future: Some(day),
            }))
            .only(&[0]);
        let payloads = [
            r#"{"id": 1, "ts": "2024-01-01T00:00:01Z"}"#,
            r#"{"id": 2, "ts": "2200-01-01T00:00:00Z"}"#,
            r#"{"id": 3, "ts": "9999-12-31T00:00:00Z"}"#,
            r#"{"id": 4, "ts": -9223372036854775808}"#,
            r#"{"id": 5, "ts": 9223372036854775807}"#,
            r#"{"id": 6}"#,
            r#"{"id": 7, "ts": 1000}"#,
        ];
        let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let (batch, skipped) = dec.decode_reporting(&bytes).unwrap();
        assert_eq!(ids(&batch), vec![1, 7]);
        let indexes: Vec<usize> = skipped.iter().map(|s| s.index).collect();
        assert_eq!(indexes, vec![1, 2, 3, 4, 5]);
        assert!(
            skipped[0].reason.contains("2200-01-01 00:00:00"),
            "{skipped:?}"
        );
        assert!(skipped[0].reason.contains("'watermark.max_future'"));
        assert!(skipped[2].reason.contains("representable"), "{skipped:?}");
        assert!(skipped[4].reason.contains("NULL"), "{skipped:?}");
        // Mixed with an undecodable record: indexes still name the payloads.
        let payloads = [
            r#"{"id": 1, "ts": 5}"#,
            "not json",
            r#"{"id": 3, "ts": 9223372036854775807}"#,
            r#"{"id": 4, "ts": 6}"#,
        ];
        let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let (batch, skipped) = dec.decode_reporting(&bytes).unwrap();
        assert_eq!(ids(&batch), vec![1, 4]);
        let indexes: Vec<usize> = skipped.iter().map(|s| s.index).collect();
        assert_eq!(indexes, vec![1, 2]);
        // Without max_future, far-future times within the range are good.
        let mut dec = Decoder::new(schema, Format::Json)
            .unwrap()
            .guard(Some(TimeGuard {
                column: 1,
                max_future: None,
            }));
        let payloads = [
            r#"{"id": 2, "ts": "2200-01-01T00:00:00Z"}"#,
            r#"{"id": 3, "ts": "9999-12-31T00:00:00Z"}"#,
            r#"{"id": 5, "ts": 9223372036854775807}"#,
        ];
        let bytes: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let (batch, skipped) = dec.decode_reporting(&bytes).unwrap();
        assert_eq!(ids(&batch), vec![2, 3]);
        assert_eq!(skipped.len(), 1);
    }

    #[test]
    fn time_guard_bounds_each_unit() {
        let g = TimeGuard {
            column: 0,
            max_future: Some(1_000_000_000),
        };
        let now = 1_700_000_000_000_000_000;
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let per = nanos_per(unit);
            assert!(g.check(Some(i64::MIN), unit, now).is_some(), "{unit:?}");
            assert!(g.check(Some(i64::MAX), unit, now).is_some(), "{unit:?}");
            assert!(g.check(None, unit, now).is_some());
            assert_eq!(g.check(Some(now / per), unit, now), None, "{unit:?}");
            assert_eq!(g.check(Some((now + 1_000_000_000) / per), unit, now), None);
            assert!(
                g.check(Some((now + 2_000_000_000) / per), unit, now)
                    .is_some()
            );
            assert_eq!(g.check(Some(0), unit, now), None);
        }
        // i64::MIN nanoseconds is 1677, inside the years, but the no-watermark sentinel.
        let off = TimeGuard {
            column: 0,
            max_future: None,
        };
        assert!(
            off.check(Some(i64::MIN), TimeUnit::Nanosecond, now)
                .is_some()
        );
        assert_eq!(
            off.check(Some(i64::MIN + 1), TimeUnit::Nanosecond, now),
            None
        );
    }
}
