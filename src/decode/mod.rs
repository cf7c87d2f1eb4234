//! Decoding of message payloads (one record each) into Arrow record batches of a declared
//! schema, as JSON objects (`arrow-json`) or CSV lines (`arrow-csv`). Records that cannot
//! be decoded are skipped and reported, so one bad message does not stop a source.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;

use crate::error::{Result, WeirError};

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
        })
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
                (needed.contains(&i) || !f.is_nullable()).then(|| {
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
            return Ok((self.widen(batch)?, Vec::new()));
        }
        // Something is wrong: decode one by one to keep the good records.
        let mut batches = Vec::with_capacity(payloads.len());
        let mut skipped = Vec::new();
        let mut inner: Option<Inner> = None;
        for (index, payload) in payloads.iter().enumerate() {
            let dec = match inner.as_mut() {
                Some(d) => d,
                None => inner.insert(self.inner(2)?),
            };
            match dec.one(payload) {
                Ok(batch) => batches.push(batch),
                Err(reason) => {
                    // A decoder that failed part way holds a broken state: start afresh.
                    inner = None;
                    skipped.push(Skipped { index, reason });
                }
            }
        }
        let batch = concat_batches(&self.decoded, &batches)
            .map_err(|e| WeirError::Internal(format!("concatenating decoded records: {e}")))?;
        Ok((self.widen(batch)?, skipped))
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
}
