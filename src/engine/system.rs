//! The `weir_catalog` schema: system tables over the running sources and materialized
//! views (status, rows read, late rows, decode errors, watermarks, state size, offsets and
//! lag per partition, sinks' rows written and commits), computed from the views' counters each time they are read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use std::sync::atomic::Ordering;

use crate::catalog::Catalog;
use crate::connector::joined::side_of;
use crate::locks::Unpoisoned;
use crate::sink::Sink;
use crate::sql::streaming::Emit;
use crate::view::pipeline::time_unit;
use crate::view::source::SourceDef;
use crate::view::state::View;
use crate::window::assign::nanos_per;

/// The schema's name.
pub const SCHEMA: &str = "weir_catalog";

/// The tables of `weir_catalog`.
#[derive(Debug)]
pub struct SystemSchema {
    pub catalog: Weak<Catalog>,
}

const TABLES: [&str; 5] = [
    "materialized_views",
    "sources",
    "source_partitions",
    "decode_errors",
    "sinks",
];

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }
    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let kind = match name {
            "materialized_views" => Kind::Views,
            "sources" => Kind::Sources,
            "source_partitions" => Kind::Partitions,
            "decode_errors" => Kind::DecodeErrors,
            "sinks" => Kind::Sinks,
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(SystemTable {
            kind,
            catalog: self.catalog.clone(),
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
    Partitions,
    DecodeErrors,
    Sinks,
}

#[derive(Debug)]
struct SystemTable {
    kind: Kind,
    catalog: Weak<Catalog>,
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
            text("status_detail"),
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
            text("status"),
            text("status_detail"),
        ],
        Kind::Partitions => vec![
            text("source"),
            text("view_name"),
            int("partition"),
            int("next_offset"),
            int("end_offset"),
            int("lag"),
            int("rows_in"),
            Field::new("rows_per_second", DataType::Float64, true),
        ],
        Kind::DecodeErrors => vec![
            text("source"),
            text("view_name"),
            int("partition"),
            int("offset"),
            text("error"),
            text("payload"),
            time("seen_at"),
        ],
        Kind::Sinks => vec![
            text("name"),
            text("connector"),
            text("from_name"),
            text("delivery"),
            text("status"),
            text("status_detail"),
            int("rows_written"),
            int("commits"),
            time("last_commit"),
            int("errors"),
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

/// One view's figures, read once.
pub(crate) struct ViewRow {
    pub name: String,
    pub source: String,
    pub emit: &'static str,
    /// `running`, `retrying` (its source cannot be reached), `ended` or `stopped`.
    pub status: &'static str,
    /// Why it is retrying or stopped.
    pub status_detail: Option<String>,
    pub rows_in: i64,
    pub late_rows: i64,
    pub decode_errors: i64,
    pub open_windows: i64,
    pub open_groups: i64,
    pub closed_windows: i64,
    pub closed_rows: i64,
    pub state_bytes: i64,
    /// Microseconds since the epoch.
    pub watermark: Option<i64>,
    pub last_update: Option<i64>,
    /// Records read from each source (two for a join of catalog).
    pub rows_by_source: Vec<(String, i64)>,
}

impl ViewRow {
    pub(crate) fn of(v: &View) -> ViewRow {
        let load = |a: &std::sync::atomic::AtomicU64| count(a.load(Ordering::Relaxed));
        let (open_windows, open_groups, state_bytes) = v.with_state(|s| {
            (
                s.operator.windows(),
                s.operator.groups(),
                s.operator.state_bytes(),
            )
        });
        let last_update = v.stats.last_update.load(Ordering::Relaxed);
        let progress = v.stats.progress_now();
        let (status, status_detail) = match (v.failure(), v.stats.outage()) {
            (Some(f), _) => ("failed", Some(f)),
            (None, Some(o)) => ("retrying", Some(o.describe())),
            (None, None) if v.has_ended() => ("ended", None),
            (None, None) => ("running", None),
        };
        let rows_by_source = v
            .sources()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let rows: u64 = progress
                    .iter()
                    .filter(|(p, _)| side_of(**p).0 == i)
                    .map(|(_, at)| at.rows)
                    .sum();
                (s.name.clone(), count(rows))
            })
            .collect();
        ViewRow {
            name: v.name.clone(),
            source: v
                .sources()
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            emit: match v.emit {
                Emit::OnUpdate => "on update",
                Emit::OnWindowClose => "on window close",
            },
            status,
            status_detail: status_detail.map(|d| crate::sql::redact::url_passwords(&d)),
            rows_in: load(&v.stats.rows_in),
            late_rows: load(&v.stats.late_rows),
            decode_errors: load(&v.stats.decode_errors),
            open_windows: count(open_windows as u64),
            open_groups: count(open_groups as u64),
            closed_windows: load(&v.stats.windows_closed),
            closed_rows: count(v.closed_rows() as u64),
            state_bytes: count(state_bytes as u64),
            watermark: watermark_micros(v),
            last_update: (last_update != 0).then_some(last_update),
            rows_by_source,
        }
    }
}

/// One sink's figures, read once.
pub(crate) struct SinkRow {
    pub name: String,
    pub connector: &'static str,
    pub from: String,
    pub delivery: &'static str,
    /// `running`, `retrying` (its destination fails; it retries) or `failed`.
    pub status: &'static str,
    pub status_detail: Option<String>,
    pub rows_written: i64,
    pub commits: i64,
    /// Microseconds since the epoch.
    pub last_commit: Option<i64>,
    pub errors: i64,
}

impl SinkRow {
    pub(crate) fn of(s: &Sink) -> SinkRow {
        let load = |a: &std::sync::atomic::AtomicU64| count(a.load(Ordering::Relaxed));
        let (status, status_detail) = s.stats.status();
        let last_commit = s.stats.last_commit.load(Ordering::Relaxed);
        SinkRow {
            name: s.name.clone(),
            connector: s.connector.name(),
            from: s.from.name().to_string(),
            delivery: s.delivery_text(),
            status,
            status_detail: status_detail.map(|d| crate::sql::redact::url_passwords(&d)),
            rows_written: load(&s.stats.rows_written),
            commits: load(&s.stats.commits),
            last_commit: (last_commit != 0).then_some(last_commit),
            errors: load(&s.stats.errors),
        }
    }
}

fn sinks_batch(rows: &[SinkRow]) -> DfResult<RecordBatch> {
    let columns = vec![
        text(rows, |r| &r.name),
        text(rows, |r| r.connector),
        text(rows, |r| &r.from),
        text(rows, |r| r.delivery),
        text(rows, |r| r.status),
        opt_text(rows, |r| r.status_detail.as_deref()),
        int(rows, |r| r.rows_written),
        int(rows, |r| r.commits),
        time(rows, |r| r.last_commit),
        int(rows, |r| r.errors),
    ];
    Ok(RecordBatch::try_new(schema_of(Kind::Sinks), columns)?)
}

fn text<T>(rows: &[T], f: impl Fn(&T) -> &str) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
}

fn opt_text<T>(rows: &[T], f: impl Fn(&T) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn int<T>(rows: &[T], f: impl Fn(&T) -> i64) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
}

fn time<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(
        rows.iter().map(f).collect::<Vec<_>>(),
    ))
}

fn views_batch(rows: &[ViewRow]) -> DfResult<RecordBatch> {
    let columns = vec![
        text(rows, |r| &r.name),
        text(rows, |r| &r.source),
        text(rows, |r| r.emit),
        text(rows, |r| r.status),
        opt_text(rows, |r| r.status_detail.as_deref()),
        int(rows, |r| r.rows_in),
        int(rows, |r| r.late_rows),
        int(rows, |r| r.decode_errors),
        int(rows, |r| r.open_windows),
        int(rows, |r| r.open_groups),
        int(rows, |r| r.closed_windows),
        int(rows, |r| r.closed_rows),
        int(rows, |r| r.state_bytes),
        time(rows, |r| r.watermark),
        time(rows, |r| r.last_update),
    ];
    Ok(RecordBatch::try_new(schema_of(Kind::Views), columns)?)
}

/// One source's figures, from the views that read it.
pub(crate) struct SourceRow {
    pub name: String,
    pub connector: &'static str,
    pub watermark_definition: String,
    pub views: i64,
    pub rows_in: i64,
    pub late_rows: i64,
    pub decode_errors: i64,
    pub watermark: Option<i64>,
    /// `retrying` when a view's reader cannot reach it, `ended` when every view has read
    /// it to its end, `running` otherwise; `NULL` while no view reads it.
    pub status: Option<&'static str>,
    /// The retrying reader's last error, since when, and its retries.
    pub status_detail: Option<String>,
}

fn sources_batch(catalog: &Catalog) -> DfResult<RecordBatch> {
    let rows = source_rows(catalog);
    let columns = vec![
        text(&rows, |r| &r.name),
        text(&rows, |r| r.connector),
        text(&rows, |r| &r.watermark_definition),
        int(&rows, |r| r.views),
        int(&rows, |r| r.rows_in),
        int(&rows, |r| r.late_rows),
        int(&rows, |r| r.decode_errors),
        time(&rows, |r| r.watermark),
        opt_text(&rows, |r| r.status),
        opt_text(&rows, |r| r.status_detail.as_deref()),
    ];
    Ok(RecordBatch::try_new(schema_of(Kind::Sources), columns)?)
}

/// Every source's figures, in the sources' order.
pub(crate) fn source_rows(catalog: &Catalog) -> Vec<SourceRow> {
    let views: Vec<ViewRow> = catalog.views().iter().map(|v| ViewRow::of(v)).collect();
    catalog
        .sources()
        .iter()
        .map(|s| {
            let reading: Vec<&ViewRow> = views
                .iter()
                .filter(|v| v.rows_by_source.iter().any(|(n, _)| *n == s.name))
                .collect();
            let most = |f: fn(&ViewRow) -> i64| reading.iter().map(|v| f(v)).max().unwrap_or(0);
            let retrying = reading.iter().find(|v| v.status == "retrying");
            let status = match retrying {
                _ if reading.is_empty() => None,
                Some(_) => Some("retrying"),
                None if reading.iter().all(|v| v.status == "ended") => Some("ended"),
                None => Some("running"),
            };
            SourceRow {
                name: s.name.clone(),
                connector: s.connector_name(),
                watermark_definition: s.watermark_text(),
                views: reading.len() as i64,
                // Every view reads the whole source: the furthest one has read the most.
                rows_in: reading
                    .iter()
                    .flat_map(|v| &v.rows_by_source)
                    .filter(|(name, _)| *name == s.name)
                    .map(|(_, n)| *n)
                    .max()
                    .unwrap_or(0),
                late_rows: reading.iter().map(|v| v.late_rows).sum(),
                decode_errors: most(|v| v.decode_errors),
                // The source's progress is that of its slowest reader.
                watermark: reading
                    .iter()
                    .map(|v| v.watermark)
                    .collect::<Option<Vec<i64>>>()
                    .and_then(|marks| marks.into_iter().min()),
                status,
                status_detail: retrying.and_then(|v| v.status_detail.clone()),
            }
        })
        .collect()
}

/// One view's reader in one partition of its source.
struct PartitionRow {
    source: String,
    view: String,
    partition: i64,
    next_offset: i64,
    end_offset: Option<i64>,
    rows_in: i64,
    rows_per_second: f64,
}

async fn partitions_batch(catalog: &Catalog) -> DfResult<RecordBatch> {
    let mut rows = Vec::new();
    // Each source's partitions read by any view, then one look-up of their ends.
    let mut wanted: BTreeMap<String, (Arc<SourceDef>, BTreeSet<i32>)> = BTreeMap::new();
    // Sources a reader cannot reach now: their ends are not looked up (NULL), rather than
    // each look-up waiting for its timeout.
    let mut unreachable = BTreeSet::new();
    for view in catalog.views() {
        let sources = view.sources();
        if view.stats.outage().is_some() {
            unreachable.extend(sources.iter().map(|s| s.name.clone()));
        }
        for (p, at) in view.stats.progress_now() {
            let (side, p) = side_of(p);
            let source = sources[side];
            wanted
                .entry(source.name.clone())
                .or_insert_with(|| (Arc::clone(source), BTreeSet::new()))
                .1
                .insert(p);
            rows.push(PartitionRow {
                source: source.name.clone(),
                view: view.name.clone(),
                partition: p as i64,
                next_offset: at.next_offset,
                end_offset: None,
                rows_in: count(at.rows),
                rows_per_second: at.rows_per_second,
            });
        }
    }
    let mut ends = BTreeMap::new();
    for (name, (source, partitions)) in wanted {
        if unreachable.contains(&name) {
            continue;
        }
        ends.insert(
            name,
            source.end_positions(partitions.into_iter().collect()).await,
        );
    }
    for row in &mut rows {
        row.end_offset = ends
            .get(&row.source)
            .and_then(|e| e.get(&(row.partition as i32)))
            .copied();
    }
    let columns = vec![
        text(&rows, |r| &r.source),
        text(&rows, |r| &r.view),
        int(&rows, |r| r.partition),
        int(&rows, |r| r.next_offset),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| r.end_offset).collect::<Vec<_>>(),
        )) as ArrayRef,
        Arc::new(Int64Array::from(
            rows.iter()
                .map(|r| r.end_offset.map(|e| (e - r.next_offset).max(0)))
                .collect::<Vec<_>>(),
        )) as ArrayRef,
        int(&rows, |r| r.rows_in),
        Arc::new(Float64Array::from_iter_values(
            rows.iter()
                .map(|r| (r.rows_per_second * 10.0).round() / 10.0),
        )) as ArrayRef,
    ];
    Ok(RecordBatch::try_new(schema_of(Kind::Partitions), columns)?)
}

/// The last records each view's reader skipped, per source.
fn decode_errors_batch(catalog: &Catalog) -> DfResult<RecordBatch> {
    let mut rows = Vec::new();
    for view in catalog.views() {
        let sources = view.sources();
        let samples = view.stats.decode_samples.locked().clone();
        for sample in samples {
            let (side, partition) = side_of(sample.partition);
            rows.push((
                sources[side].name.clone(),
                view.name.clone(),
                partition,
                sample,
            ));
        }
    }
    let columns = vec![
        text(&rows, |r| &r.0),
        text(&rows, |r| &r.1),
        int(&rows, |r| r.2 as i64),
        int(&rows, |r| r.3.offset),
        text(&rows, |r| &r.3.error),
        text(&rows, |r| &r.3.payload),
        time(&rows, |r| Some(r.3.at)),
    ];
    Ok(RecordBatch::try_new(
        schema_of(Kind::DecodeErrors),
        columns,
    )?)
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
        let batch = match self.catalog.upgrade() {
            Some(catalog) => match self.kind {
                Kind::Views => {
                    let rows: Vec<ViewRow> =
                        catalog.views().iter().map(|v| ViewRow::of(v)).collect();
                    views_batch(&rows)?
                }
                Kind::Sources => sources_batch(&catalog)?,
                Kind::Partitions => partitions_batch(&catalog).await?,
                Kind::DecodeErrors => decode_errors_batch(&catalog)?,
                Kind::Sinks => {
                    let rows: Vec<SinkRow> =
                        catalog.all_sinks().iter().map(|s| SinkRow::of(s)).collect();
                    sinks_batch(&rows)?
                }
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
