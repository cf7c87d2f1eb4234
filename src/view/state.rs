//! A materialized view's state and what readers see: the final rows of closed windows,
//! the current rows of open ones (default emit mode), and the counters behind the
//! system tables. `ViewTable` is the view's name in SQL; each read is one snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::mpsc;

use crate::error::{Result, WeirError};
use crate::sql::streaming::Emit;
use crate::view::pipeline::Command;
use crate::view::plan::ViewPlan;
use crate::window::aggregate::WindowedAggregate;

/// Counters of a running view, read without locking.
#[derive(Debug, Default)]
pub struct ViewStats {
    /// Records read from the source.
    pub rows_in: AtomicU64,
    /// (row, window) pairs dropped because the window had already closed.
    pub late_rows: AtomicU64,
    /// Windows closed so far.
    pub windows_closed: AtomicU64,
    /// Current watermark in the time column's unit (`i64::MIN` before the first).
    pub watermark: AtomicI64,
    /// Records the source could not decode.
    pub decode_errors: AtomicU64,
    /// When rows were last folded in, in microseconds since the Unix epoch (0: never).
    pub last_update: AtomicI64,
}

/// The mutable part, behind one lock shared by the pipeline and readers.
pub struct ViewState {
    pub aggregate: WindowedAggregate,
    /// Final rows of closed windows, in closing order.
    closed: Vec<RecordBatch>,
    /// Current rows of open windows, by window end.
    open: BTreeMap<i64, RecordBatch>,
}

/// A materialized view: definition, state, and the handle of its pipeline.
pub struct View {
    pub name: String,
    pub definition: String,
    pub emit: Emit,
    pub plan: ViewPlan,
    pub stats: ViewStats,
    state: Mutex<ViewState>,
    failure: Mutex<Option<String>>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl View {
    pub fn new(
        name: String,
        definition: String,
        emit: Emit,
        plan: ViewPlan,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        let aggregate = WindowedAggregate::new(Arc::clone(&plan.aggregate));
        let stats = ViewStats::default();
        stats.watermark.store(i64::MIN, Ordering::Relaxed);
        View {
            name,
            definition,
            emit,
            plan,
            stats,
            state: Mutex::new(ViewState {
                aggregate,
                closed: Vec::new(),
                open: BTreeMap::new(),
            }),
            failure: Mutex::new(None),
            commands,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.plan.schema.clone()
    }

    /// Run `f` on the state under its lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut ViewState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// Aggregated rows → the view's rows with its schema.
    fn finish(&self, rows: RecordBatch) -> Result<RecordBatch> {
        let out = self.plan.post.apply(rows)?;
        Ok(RecordBatch::try_new(
            self.plan.schema.clone(),
            out.columns().to_vec(),
        )?)
    }

    /// Close every window that ended at or before `watermark`.
    pub fn close(&self, state: &mut ViewState, watermark: i64) -> Result<()> {
        for (end, rows) in state.aggregate.close_until(watermark)? {
            state.open.remove(&end);
            let out = self.finish(rows)?;
            if out.num_rows() > 0 {
                state.closed.push(out);
            }
            self.stats.windows_closed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The rows a query sees now.
    pub fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        if let Some(f) = self.failure() {
            return Err(WeirError::Stopped(format!(
                "materialized view \"{}\" stopped: {f}",
                self.name
            )));
        }
        self.with_state(|state| {
            let mut out = state.closed.clone();
            if self.emit == Emit::OnUpdate {
                for (end, rows) in state.aggregate.refresh()? {
                    let rows = self.finish(rows)?;
                    state.open.insert(end, rows);
                }
                out.extend(state.open.values().filter(|b| b.num_rows() > 0).cloned());
            }
            Ok(out)
        })
    }

    pub fn fail(&self, message: String) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rows of closed windows kept for readers.
    pub fn closed_rows(&self) -> usize {
        self.with_state(|s| s.closed.iter().map(|b| b.num_rows()).sum())
    }
}

/// A view's name in SQL.
pub struct ViewTable {
    pub view: Arc<View>,
}

impl std::fmt::Debug for ViewTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewTable({})", self.view.name)
    }
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.view.definition)
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = self
            .view
            .snapshot()
            .map_err(|e| datafusion::error::DataFusionError::Execution(e.to_string()))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.view.schema(),
            projection.cloned(),
        )?)
    }
}
