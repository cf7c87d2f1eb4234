//! Readers of the in-process generators (`datagen`, `nexmark`): paced to a rate of
//! events per second (or as fast as possible), optionally bounded by a count, and
//! projected onto the columns the source declares.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::SchemaRef;

use crate::connector::{PartitionBatch, Poll, Positions, SourceReader};
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;

/// Events per batch a generator produces at most.
pub const BATCH: u64 = 8192;

/// A deterministic event generator.
pub trait Generate: Send {
    fn next_batch(&mut self, n: usize) -> Result<RecordBatch>;
}

/// Pacing shared by every reader of one source, fixed when the source is created.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Events per second; `None`: as fast as possible.
    pub rate: Option<f64>,
    /// Total events; `None`: unbounded.
    pub count: Option<u64>,
    /// Event `i` is due at `wall_start + i / rate`.
    pub wall_start: SystemTime,
}

impl Pace {
    /// `rate` ('unlimited' or events per second, default `default_rate`) and `count`.
    pub fn from_options(
        connector: &str,
        options: &Options,
        rate_key: &str,
        count_key: &str,
        default_rate: Option<f64>,
    ) -> Result<Pace> {
        let rate = match options.get(rate_key) {
            None => default_rate,
            Some(v) if v.trim().eq_ignore_ascii_case("unlimited") => None,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Some(r),
                _ => {
                    return Err(WeirError::InvalidParameter(format!(
                        "option '{rate_key}' of connector '{connector}' must be a positive number of events per second or 'unlimited', got '{v}'"
                    )));
                }
            },
        };
        let count =
            crate::connector::parsed::<u64>(connector, options, count_key, "a number of events")?;
        Ok(Pace {
            rate,
            count,
            wall_start: SystemTime::now(),
        })
    }

    /// Events due by now.
    fn due(&self, position: u64) -> u64 {
        let due = match self.rate {
            None => position + BATCH,
            Some(r) => {
                let elapsed = SystemTime::now()
                    .duration_since(self.wall_start)
                    .unwrap_or(Duration::ZERO);
                (elapsed.as_secs_f64() * r) as u64
            }
        };
        self.count.map_or(due, |c| due.min(c))
    }
}

/// Which generated columns a source keeps, and their declared types.
#[derive(Debug, Clone)]
pub struct Projection {
    columns: Option<Vec<usize>>,
    pub schema: SchemaRef,
}

impl Projection {
    /// The declared columns, matched by name to what the generator produces.
    pub fn new(connector: &str, declared: Option<SchemaRef>, native: SchemaRef) -> Result<Self> {
        let Some(declared) = declared else {
            return Ok(Projection {
                columns: None,
                schema: native,
            });
        };
        let valid = || {
            native
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut columns = Vec::new();
        for field in declared.fields() {
            let i = native.index_of(field.name()).map_err(|_| {
                WeirError::InvalidParameter(format!(
                    "connector '{connector}' produces no column \"{}\"; it produces: {}",
                    field.name(),
                    valid()
                ))
            })?;
            if !can_cast_types(native.field(i).data_type(), field.data_type()) {
                return Err(WeirError::InvalidParameter(format!(
                    "column \"{}\" is declared {} but connector '{connector}' produces {}, which cannot be converted",
                    field.name(),
                    field.data_type(),
                    native.field(i).data_type()
                )));
            }
            columns.push(i);
        }
        Ok(Projection {
            columns: Some(columns),
            schema: declared,
        })
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(columns) = &self.columns else {
            return Ok(batch);
        };
        let arrays = columns
            .iter()
            .zip(self.schema.fields())
            .map(|(&i, f)| {
                let c = batch.column(i);
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    cast(c, f.data_type()).map_err(WeirError::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

/// A generator behind the `SourceReader` interface, as partition 0.
pub struct GeneratedReader {
    generator: Box<dyn Generate>,
    projection: Projection,
    pace: Pace,
    positions: Positions,
}

impl GeneratedReader {
    pub fn new(generator: Box<dyn Generate>, projection: Projection, pace: Pace) -> Self {
        GeneratedReader {
            generator,
            projection,
            pace,
            positions: Positions::from([(0, 0)]),
        }
    }

    /// This reader from event number `skip` on: the events before it are generated and
    /// dropped (generators are sequential), and a paced source keeps its pace from there.
    pub fn resumed(mut self, skip: i64) -> Result<Box<dyn SourceReader>> {
        let mut left = skip.max(0) as u64;
        if let Some(c) = self.pace.count {
            left = left.min(c);
        }
        let total = left;
        while left > 0 {
            let n = left.min(BATCH);
            self.generator.next_batch(n as usize)?;
            left -= n;
        }
        if let Some(r) = self.pace.rate {
            self.pace.wall_start = SystemTime::now() - Duration::from_secs_f64(total as f64 / r);
        }
        self.positions.insert(0, total as i64);
        Ok(Box::new(self))
    }

    fn position(&self) -> u64 {
        self.positions[&0] as u64
    }
}

#[async_trait]
impl SourceReader for GeneratedReader {
    async fn poll(&mut self) -> Result<Poll> {
        let position = self.position();
        if self.pace.count.is_some_and(|c| position >= c) {
            return Ok(Poll::End);
        }
        let due = self.pace.due(position);
        if due <= position {
            let wait = match self.pace.rate {
                Some(r) => Duration::from_secs_f64((1.0 / r).min(0.1)),
                None => Duration::from_millis(1),
            };
            tokio::time::sleep(wait).await;
            return Ok(Poll::Idle);
        }
        let n = (due - position).min(BATCH);
        let batch = self.generator.next_batch(n as usize)?;
        let batch = self.projection.apply(batch)?;
        self.positions.insert(0, (position + n) as i64);
        Ok(Poll::Records(vec![PartitionBatch {
            partition: 0,
            batch,
        }]))
    }

    async fn end_positions(&mut self) -> Result<Positions> {
        let position = self.position();
        let end = match (self.pace.rate, self.pace.count) {
            (None, Some(c)) => c,
            (None, None) => position + BATCH,
            (Some(_), _) => self.pace.due(position).max(position),
        };
        Ok(Positions::from([(0, end as i64)]))
    }

    fn positions(&self) -> &Positions {
        &self.positions
    }

    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }

    fn decode_errors(&self) -> u64 {
        0
    }
}
