//! The `weir_catalog` schema: system tables over the running sources and materialized
//! views (rows read, late rows, decode errors, watermarks, state size), computed from
//! the views' counters each time they are read.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::array::{TimestampMicrosecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::atomic::Ordering;

use crate::sql::streaming::Emit;
use crate::view::Streams;
use crate::view::pipeline::time_unit;
use crate::view::state::View;
use crate::window::assign::nanos_per;

/// The schema's name.
pub const SCHEMA: &str = "weir_catalog";

/// The tables of `weir_catalog`.
#[derive(Debug)]
pub struct SystemSchema {
    pub streams: Weak<Streams>,
}

const TABLES: [&str; 2] = ["materialized_views", "sources"];

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let kind = match name {
            "materialized_views" => Kind::Views,
            "sources" => Kind::Sources,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(SystemTable {
            kind,
            streams: self.streams.clone(),
        })))
    }
    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Views,
    Sources,
}

#[derive(Debug)]
struct SystemTable {
    kind: Kind,
    streams: Weak<Streams>,
}

fn micros_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

fn schema_of(kind: Kind) -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let time = |n: &str| Field::new(n, micros_type(), true);
    Arc::new(Schema::new(match kind {
        Kind::Views => vec![
            text("name"),
            text("source"),
            text("emit"),
            text("status"),
            int("rows_in"),
            int("late_rows"),
            int("decode_errors"),
            int("open_windows"),
            int("open_groups"),
            int("closed_windows"),
            int("closed_rows"),
            int("state_bytes"),
            time("watermark"),
            time("last_update"),
        ],
        Kind::Sources => vec![
            text("name"),
            text("connector"),
            text("watermark_definition"),
            int("views"),
            int("rows_in"),
            int("late_rows"),
            int("decode_errors"),
            time("watermark"),
        ],
    }))
}

/// A view's watermark as a timestamp in microseconds (`None` before the first, and once
/// a bounded source has ended).
fn watermark_micros(view: &View) -> Option<i64> {
    let w = view.stats.watermark.load(Ordering::Relaxed);
    (w != i64::MIN && w != i64::MAX).then(|| {
        let per = nanos_per(time_unit(view));
        w.saturating_mul(per) / 1000
    })
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn views_batch(views: &[Arc<View>]) -> DfResult<RecordBatch> {
    let text = |f: &dyn Fn(&View) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(views.iter().map(|v| f(v))))
    };
    let int = |f: &dyn Fn(&View) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(views.iter().map(|v| f(v))))
    };
    let state: Vec<(usize, usize, usize)> = views
        .iter()
        .map(|v| {
            v.with_state(|s| {
                (
                    s.aggregate.windows(),
                    s.aggregate.groups(),
                    s.aggregate.state_bytes(),
                )
            })
        })
        .collect();
    let at = |i: usize| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(state.iter().map(|s| {
            count(match i {
                0 => s.0,
                1 => s.1,
                _ => s.2,
            } as u64)
        })))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|v| v.name.clone()),
        text(&|v| v.plan.source.name.clone()),
        text(&|v| match v.emit {
            Emit::OnUpdate => "on update".into(),
            Emit::OnWindowClose => "on window close".into(),
        }),
        text(&|v| match v.failure() {
            None => "running".into(),
            Some(f) => format!("stopped: {f}"),
        }),
        int(&|v| count(v.stats.rows_in.load(Ordering::Relaxed))),
        int(&|v| count(v.stats.late_rows.load(Ordering::Relaxed))),
        int(&|v| count(v.stats.decode_errors.load(Ordering::Relaxed))),
        at(0),
        at(1),
        int(&|v| count(v.stats.windows_closed.load(Ordering::Relaxed))),
        int(&|v| count(v.closed_rows() as u64)),
        at(2),
        Arc::new(TimestampMicrosecondArray::from(
            views
                .iter()
                .map(|v| watermark_micros(v))
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            views
                .iter()
                .map(|v| {
                    let t = v.stats.last_update.load(Ordering::Relaxed);
                    (t != 0).then_some(t)
                })
                .collect::<Vec<_>>(),
        )),
    ];
    Ok(RecordBatch::try_new(schema_of(Kind::Views), columns)?)
}

fn sources_batch(streams: &Streams) -> DfResult<RecordBatch> {
    let sources = streams.sources();
    let views = streams.views();
    let reading = |name: &str| -> Vec<&Arc<View>> {
        views
            .iter()
            .filter(|v| v.plan.source.name == name)
            .collect()
    };
    let sum = |name: &str, f: &dyn Fn(&View) -> u64| -> i64 {
        count(reading(name).iter().map(|v| f(v)).sum())
    };
    let most = |name: &str, f: &dyn Fn(&View) -> u64| -> i64 {
        count(reading(name).iter().map(|v| f(v)).max().unwrap_or(0))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            sources.iter().map(|s| s.name.clone()),
        )),
        Arc::new(StringArray::from_iter_values(
            sources.iter().map(|s| s.connector_name()),
        )),
        Arc::new(StringArray::from_iter_values(
            sources.iter().map(|s| s.watermark_text()),
        )),
        Arc::new(UInt64Array::from_iter_values(
            sources.iter().map(|s| reading(&s.name).len() as u64),
        )),
        // Every view reads the whole source: the furthest one has read the most.
        Arc::new(Int64Array::from_iter_values(sources.iter().map(|s| {
            most(&s.name, &|v| v.stats.rows_in.load(Ordering::Relaxed))
        }))),
        Arc::new(Int64Array::from_iter_values(sources.iter().map(|s| {
            sum(&s.name, &|v| v.stats.late_rows.load(Ordering::Relaxed))
        }))),
        Arc::new(Int64Array::from_iter_values(sources.iter().map(|s| {
            most(&s.name, &|v| v.stats.decode_errors.load(Ordering::Relaxed))
        }))),
        // The source's progress is that of its slowest reader.
        Arc::new(TimestampMicrosecondArray::from(
            sources
                .iter()
                .map(|s| {
                    let marks: Vec<Option<i64>> = reading(&s.name)
                        .iter()
                        .map(|v| watermark_micros(v))
                        .collect();
                    if marks.iter().any(Option::is_none) {
                        None
                    } else {
                        marks.into_iter().flatten().min()
                    }
                })
                .collect::<Vec<_>>(),
        )),
    ];
    let schema = schema_of(Kind::Sources);
    // `views` is a count: the one unsigned array becomes a bigint like the others.
    let mut columns = columns;
    columns[3] = datafusion::arrow::compute::cast(&columns[3], &DataType::Int64)?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        schema_of(self.kind)
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = match self.streams.upgrade() {
            Some(streams) => match self.kind {
                Kind::Views => views_batch(&streams.views())?,
                Kind::Sources => sources_batch(&streams)?,
            },
            None => RecordBatch::new_empty(self.schema()),
        };
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}
