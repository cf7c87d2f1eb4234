//! Sources in the catalog: a `SourceDef` (columns, event-time watermark, connector) as
//! created by `CREATE SOURCE`, the table the name resolves to, and the `TUMBLE` / `HOP`
//! table functions that window a source inside a materialized view's query.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result as DfResult, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::connector::{Positions, SourceConnector, SourceReader};
use crate::decode::TimeGuard;
use crate::error::Result;
use crate::locks::UnpoisonedRw;
use crate::sql::streaming::Options;
use crate::view::state::View;
use crate::view::upstream::ViewReader;
use crate::window::assign::{WindowSpec, describe, windowed_schema};

/// How a source reads its records.
#[derive(Debug, Clone)]
pub enum ConnectorSpec {
    /// A connector (`WITH (connector = …)`, or readers a program embedding the engine
    /// supplies).
    Connector(Arc<dyn SourceConnector>),
    /// Another materialized view's final rows.
    View(Arc<View>),
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View({})", self.name)
    }
}

/// The event time a source declares with `WATERMARK FOR column AS column - delay`.
#[derive(Debug, Clone, Copy)]
pub struct EventTime {
    /// Index of the time column.
    pub column: usize,
    /// Allowed lateness, in nanoseconds.
    pub delay: i64,
    /// How far ahead of the wall clock an event time may be, in nanoseconds
    /// (`watermark.max_future`; `None`: any); a record further ahead is a bad record.
    pub max_future: Option<i64>,
}

/// Default `watermark.max_future`: one day.
pub const DEFAULT_MAX_FUTURE: i64 = 86_400_000_000_000;

/// A source as created: what `CREATE SOURCE` said, validated.
#[derive(Debug, Clone)]
pub struct SourceDef {
    pub name: String,
    pub schema: SchemaRef,
    /// `None`: processing time (the watermark is the wall clock).
    pub event_time: Option<EventTime>,
    pub idle_timeout: Duration,
    pub connector: ConnectorSpec,
    pub options: Options,
    /// The `CREATE SOURCE` text.
    pub definition: String,
}

impl SourceDef {
    pub fn connector_name(&self) -> &'static str {
        match &self.connector {
            ConnectorSpec::Connector(c) => c.name(),
            ConnectorSpec::View(_) => "view",
        }
    }

    /// `ts - 5s`, or `processing time`.
    pub fn watermark_text(&self) -> String {
        match self.event_time {
            Some(e) => format!(
                "{} - {}",
                self.schema.field(e.column).name(),
                describe(e.delay)
            ),
            None => "processing time".into(),
        }
    }

    /// Where the source ends now, per partition (empty where it cannot be known).
    pub async fn end_positions(&self, partitions: Vec<i32>) -> Positions {
        match &self.connector {
            ConnectorSpec::Connector(c) => c.end_positions(partitions).await,
            ConnectorSpec::View(v) => Positions::from([(
                0,
                i64::try_from(v.emitted.load(std::sync::atomic::Ordering::Relaxed))
                    .unwrap_or(i64::MAX),
            )]),
        }
    }

    /// Whether a checkpoint keeps the state of views reading it: records it can read
    /// again from positions. A view that reads a view starts again from the rows that
    /// view keeps (restored with it).
    pub fn replayable(&self) -> bool {
        matches!(&self.connector, ConnectorSpec::Connector(c) if c.replayable())
    }

    /// A new reader, positioned where the connector's start-up options say, or at `resume`
    /// (a checkpoint's positions) if given. It fills the `columns` given (indexes into the
    /// schema); others may be left NULL. A view read as a stream starts again from the rows
    /// it keeps.
    pub async fn open(
        &self,
        columns: &[usize],
        resume: Option<&Positions>,
    ) -> Result<Box<dyn SourceReader>> {
        match &self.connector {
            ConnectorSpec::Connector(c) => {
                let guard = self.event_time.map(|e| TimeGuard {
                    column: e.column,
                    max_future: e.max_future,
                });
                c.reader(columns, resume, guard).await
            }
            ConnectorSpec::View(v) => Ok(Box::new(ViewReader::open(Arc::clone(v), true))),
        }
    }
}

/// The sources by name, shared with the table functions.
pub type Sources = Arc<RwLock<BTreeMap<String, Arc<SourceDef>>>>;

fn stream_error(name: &str) -> datafusion::error::DataFusionError {
    plan_datafusion_err!(
        "\"{name}\" is a source, an unbounded stream: read it through a materialized view \
         (CREATE MATERIALIZED VIEW … AS SELECT … FROM {name}, or FROM TUMBLE({name}, …))"
    )
}

/// What a source's name resolves to in SQL.
#[derive(Debug)]
pub struct SourceTable {
    pub def: Arc<SourceDef>,
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        self.def.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(stream_error(&self.def.name))
    }
}

/// `TUMBLE(source, time_col, …)` / `HOP(…)`: the source's columns plus `window_start`
/// and `window_end`. Only a materialized view can read it.
#[derive(Debug)]
pub struct WindowedTable {
    pub source: Arc<SourceDef>,
    /// Index of the time column in the source.
    pub time: usize,
    pub spec: WindowSpec,
    schema: SchemaRef,
}

impl WindowedTable {
    pub fn time_type(&self) -> &DataType {
        self.source.schema.field(self.time).data_type()
    }
}

#[async_trait]
impl TableProvider for WindowedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Err(stream_error(&self.source.name))
    }
}

/// `TUMBLE` (`hop: false`) or `HOP` as a table function over the sources.
#[derive(Debug)]
pub struct WindowFunction {
    pub sources: Sources,
    pub views: crate::view::Views,
    pub hop: bool,
}

/// Nanoseconds of an interval literal (months are not a fixed length, so refused).
pub fn interval_nanos(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * 86_400_000_000_000 + v.nanoseconds)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(v.days as i64 * 86_400_000_000_000 + v.milliseconds as i64 * 1_000_000)
        }
        ScalarValue::DurationSecond(Some(v)) => Some(v * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(v * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v * 1_000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(*v),
        _ => None,
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let (fname, usage) = if self.hop {
            ("HOP", "HOP(source, time_column, slide, size [, offset])")
        } else {
            ("TUMBLE", "TUMBLE(source, time_column, size [, offset])")
        };
        let exprs = args.exprs();
        let ident = |i: usize| -> DfResult<String> {
            match exprs.get(i) {
                Some(Expr::Column(c)) => Ok(c.name.clone()),
                _ => plan_err!("{fname} argument {} must be a name; usage: {usage}", i + 1),
            }
        };
        let interval = |i: usize| -> DfResult<Option<i64>> {
            match exprs.get(i) {
                None => Ok(None),
                Some(Expr::Literal(v, _)) => interval_nanos(v).map(Some).ok_or_else(|| {
                    plan_datafusion_err!(
                        "{fname} argument {} must be an interval of days or less \
                         (INTERVAL '10' MINUTE), got {v}; usage: {usage}",
                        i + 1
                    )
                }),
                Some(other) => plan_err!(
                    "{fname} argument {} must be a constant interval, got {other}; usage: {usage}",
                    i + 1
                ),
            }
        };
        let want = if self.hop { 4 } else { 3 };
        if exprs.len() < want || exprs.len() > want + 1 {
            return plan_err!(
                "{fname} takes {} or {} arguments; usage: {usage}",
                want,
                want + 1
            );
        }
        let source_name = ident(0)?;
        let source = self.sources.read_locked().get(&source_name).cloned();
        let source = match source {
            Some(s) => s,
            None => {
                let view = self
                    .views
                    .read_locked()
                    .get(&source_name)
                    .cloned()
                    .ok_or_else(|| {
                        plan_datafusion_err!(
                            "{fname}: no source or materialized view named \"{source_name}\""
                        )
                    })?;
                view.as_source()
                    .map_err(|e| plan_datafusion_err!("{fname}: {e}"))?
            }
        };
        for clash in [crate::window::WINDOW_START, crate::window::WINDOW_END] {
            if source.schema.index_of(clash).is_ok() {
                return plan_err!(
                    "{fname}: \"{source_name}\" already has a column \"{clash}\", which the window \
                     adds; rename it where \"{source_name}\" is defined ({clash} AS …)"
                );
            }
        }
        let time_name = ident(1)?;
        let time = source.schema.index_of(&time_name).map_err(|_| {
            plan_datafusion_err!(
                "{fname}: source \"{source_name}\" has no column \"{time_name}\"; its columns: {}",
                source
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let time_type = source.schema.field(time).data_type().clone();
        if !matches!(time_type, DataType::Timestamp(_, _)) {
            return plan_err!(
                "{fname}: column \"{time_name}\" is {time_type}, a window needs a TIMESTAMP column"
            );
        }
        if let Some(e) = source.event_time
            && e.column != time
        {
            return plan_err!(
                "{fname}: source \"{source_name}\" keeps event time in \"{}\" (its WATERMARK), \
                 so windows must be over that column, not \"{time_name}\"",
                source.schema.field(e.column).name()
            );
        }
        let spec = if self.hop {
            let slide = interval(2)?.expect("checked count");
            let size = interval(3)?.expect("checked count");
            WindowSpec::hop(slide, size, interval(4)?.unwrap_or(0))
        } else {
            let size = interval(2)?.expect("checked count");
            WindowSpec::tumble(size, interval(3)?.unwrap_or(0))
        }
        .map_err(|e| plan_datafusion_err!("{fname}: {e}"))?;
        let schema = windowed_schema(&source.schema, &time_type);
        Ok(Arc::new(WindowedTable {
            source,
            time,
            spec,
            schema,
        }))
    }
}

/// Parse `10s`, `500ms`, `2m`, `1h`, `10 seconds`… into a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" | "millisecond" | "milliseconds" => n / 1000.0,
        "s" | "sec" | "second" | "seconds" => n,
        "m" | "min" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        "d" | "day" | "days" => n * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}
