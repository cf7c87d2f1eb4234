//! The parts of a view's query that are not row-wise — window functions such as Top-N,
//! joins with batch tables — run by DataFusion over the batches the pipeline hands them:
//! the stream's (or the aggregation's) place in the plan becomes a slot that each run fills.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::TryStreamExt;

use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;

const SLOT: &str = "weir_slot";

/// Batches handed to one run of a query, read by its scan.
#[derive(Debug)]
struct Slot {
    schema: SchemaRef,
    batches: Mutex<Vec<RecordBatch>>,
}

#[derive(Debug)]
struct SlotTable(Arc<Slot>);

#[async_trait]
impl TableProvider for SlotTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batches = self.0.batches.locked();
        Ok(MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&*batches),
            self.0.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// A plan that stands where `node` stood — same columns, same qualified names — and reads
/// `provider` (whose columns are `node`'s, in order).
fn stand_in(node: &LogicalPlan, provider: Arc<dyn TableProvider>) -> Result<LogicalPlan> {
    let schema = node.schema();
    let provided = provider.schema();
    let exprs: Vec<Expr> = (0..schema.fields().len())
        .map(|i| {
            let (qualifier, field) = schema.qualified_field(i);
            Expr::Column(Column::new(Some(SLOT), provided.field(i).name()))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    Ok(
        LogicalPlanBuilder::scan(SLOT, provider_as_source(provider), None)?
            .project(exprs)?
            .build()?,
    )
}

/// `node`'s columns under names that cannot clash (two inputs of a join may share names).
fn slot_schema(node: &LogicalPlan) -> SchemaRef {
    Arc::new(Schema::new(
        node.schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| Field::new(format!("c{i}"), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

/// Replace the node of `plan` equal to `target` with `replacement`.
fn replace(
    plan: &LogicalPlan,
    target: &LogicalPlan,
    replacement: LogicalPlan,
) -> Result<LogicalPlan> {
    let mut replacement = Some(replacement);
    let out = plan.clone().transform_down(|node| {
        if replacement.is_some() && &node == target {
            let new = replacement.take().expect("checked");
            Ok(Transformed::new(new, true, TreeNodeRecursion::Jump))
        } else {
            Ok(Transformed::no(node))
        }
    })?;
    if replacement.is_some() {
        return Err(WeirError::Internal("query split: node not found".into()));
    }
    Ok(out.data)
}

/// A session for running view queries: one partition, so a run is plain sequential work.
fn single_partition(state: &SessionState) -> SessionState {
    let config = state
        .config()
        .clone()
        .with_target_partitions(1)
        .with_repartition_joins(false)
        .with_repartition_windows(false)
        .with_repartition_aggregations(false)
        .with_repartition_sorts(false);
    // Outside the memory pool of ad-hoc queries: a huge ad-hoc query must fail alone, not
    // stop a view.
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::clone(&state.runtime_env().object_store_registry))
        .build_arc()
        .expect("a runtime without limits builds");
    SessionStateBuilder::new_from_existing(state.clone())
        .with_config(config)
        .with_runtime_env(runtime)
        .build()
}

/// Run `plan` to completion, partition by partition (no tasks are spawned).
async fn run_plan(plan: Arc<dyn ExecutionPlan>, state: &SessionState) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for p in 0..plan.output_partitioning().partition_count() {
        let stream = plan.execute(p, state.task_ctx())?;
        out.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

/// Run the part of `plan` that reads no stream once, now, and stand its result in for it
/// (a batch table a view joins with is read when the view is created).
pub async fn materialize(node: &LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let physical = state.create_physical_plan(node).await?;
    let batches = run_plan(physical, state).await?;
    let schema = slot_schema(node);
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])?;
    stand_in(node, Arc::new(table))
}

/// A query over the rows of one node (`input`) of a plan, run on demand over batches.
pub struct BatchQuery {
    plan: LogicalPlan,
    slots: Vec<Arc<Slot>>,
    state: SessionState,
    /// One run at a time (runs share the slot).
    running: Mutex<()>,
    pub schema: SchemaRef,
}

impl std::fmt::Debug for BatchQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchQuery({})", self.plan.display_indent())
    }
}

impl BatchQuery {
    /// `top` with its node `input` replaced by the batches of each run.
    pub fn new(top: &LogicalPlan, input: &LogicalPlan, state: &SessionState) -> Result<Self> {
        Self::with_inputs(top, &[input], state)
    }

    /// `top` with each of its nodes `inputs` replaced by batches of each run.
    pub fn with_inputs(
        top: &LogicalPlan,
        inputs: &[&LogicalPlan],
        state: &SessionState,
    ) -> Result<Self> {
        let mut plan = top.clone();
        let mut slots = Vec::with_capacity(inputs.len());
        for input in inputs {
            let slot = Arc::new(Slot {
                schema: slot_schema(input),
                batches: Mutex::new(Vec::new()),
            });
            plan = replace(
                &plan,
                input,
                stand_in(input, Arc::new(SlotTable(Arc::clone(&slot))))?,
            )?;
            slots.push(slot);
        }
        Ok(BatchQuery {
            schema: Arc::clone(top.schema().inner()),
            plan,
            slots,
            state: single_partition(state),
            running: Mutex::new(()),
        })
    }

    /// The query's rows over `input` (batches with the replaced node's columns, in order).
    pub fn run(&self, input: Vec<RecordBatch>) -> Result<RecordBatch> {
        self.run_with(vec![input])
    }

    /// The query's rows over one list of batches per replaced node.
    pub fn run_with(&self, inputs: Vec<Vec<RecordBatch>>) -> Result<RecordBatch> {
        let _running = self.running.locked();
        for (slot, input) in self.slots.iter().zip(inputs) {
            let input = input
                .into_iter()
                .filter(|b| b.num_rows() > 0)
                .map(|b| RecordBatch::try_new(slot.schema.clone(), b.columns().to_vec()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            *slot.batches.locked() = input;
        }
        // Outside tokio's cooperative budget: the caller's task may have spent it, and a
        // stream that yields for budget would never be polled again by this loop's task.
        // Tasks the plan spawns (a sort's merge) run on a runtime of their own: the
        // caller's threads may all be waiting, this one on the query.
        let _spawns = query_runtime().enter();
        let out = futures::executor::block_on(tokio::task::unconstrained(async {
            let physical = self.state.create_physical_plan(&self.plan).await?;
            run_plan(physical, &self.state).await
        }));
        for slot in &self.slots {
            slot.batches.locked().clear();
        }
        let out = out?;
        let schema = out
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| self.schema.clone());
        Ok(concat_batches(&schema, &out)?)
    }
}

/// The runtime for the tasks view queries spawn.
fn query_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("view-query")
            .enable_all()
            .build()
            .expect("the view-query runtime starts")
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::BatchQuery;

    /// A query over `t`, a table of two non-null Int64 columns named `a` and `b`, with `t`
    /// replaced by the batches each run is given; and `t`'s schema.
    async fn query_over_t(sql: &str, a: &str, b: &str) -> (BatchQuery, Arc<Schema>) {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new(a, DataType::Int64, false),
            Field::new(b, DataType::Int64, false),
        ]));
        let empty = MemTable::try_new(schema.clone(), vec![vec![]]).unwrap();
        ctx.register_table("t", Arc::new(empty)).unwrap();
        let plan = ctx.sql(sql).await.unwrap().logical_plan().clone();
        let mut scan = &plan;
        while !scan.inputs().is_empty() {
            scan = scan.inputs()[0];
        }
        (BatchQuery::new(&plan, scan, &ctx.state()).unwrap(), schema)
    }

    /// Many runs inside one task that never yields (as a pipeline busy with a fast
    /// source): each run must still finish, whatever is left of the task's budget.
    #[test]
    fn runs_finish_inside_a_busy_task() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (query, schema) = query_over_t(
                    "SELECT w, n FROM (SELECT w, n, ROW_NUMBER() OVER \
                     (PARTITION BY w ORDER BY n DESC) AS r FROM t) WHERE r <= 2",
                    "w",
                    "n",
                )
                .await;
                let batch = RecordBatch::try_new(
                    schema,
                    vec![
                        Arc::new(Int64Array::from(vec![1, 1, 1, 2])),
                        Arc::new(Int64Array::from(vec![5, 7, 6, 1])),
                    ],
                )
                .unwrap();
                let mut rows = 0;
                for _ in 0..500 {
                    rows += query.run(vec![batch.clone(); 3]).unwrap().num_rows();
                }
                tx.send(rows).unwrap();
            });
        });
        let rows = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the runs did not finish");
        assert_eq!(rows, 500 * 4);
    }

    /// A query whose plan spawns tasks (a ranking over more rows than a sort keeps in
    /// place: it merges sorted runs through spawned tasks), run by a task on a
    /// multi-thread runtime whose every worker is busy (here, its only one, on the query).
    #[test]
    fn runs_a_query_that_spawns_from_a_busy_runtime() {
        let (tx, rx) = std::sync::mpsc::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        {
            runtime.spawn(async move {
                let (query, schema) = query_over_t(
                    "SELECT k, avg(n) AS a FROM (SELECT k, n, ROW_NUMBER() OVER \
                     (PARTITION BY k ORDER BY n DESC) AS r FROM t) WHERE r <= 10 GROUP BY k",
                    "k",
                    "n",
                )
                .await;
                let batches: Vec<RecordBatch> = (0..50i64)
                    .map(|b| {
                        RecordBatch::try_new(
                            schema.clone(),
                            vec![
                                Arc::new(Int64Array::from_iter_values((0..5000).map(|i| i % 37))),
                                Arc::new(Int64Array::from_iter_values((0..5000).map(|i| i * b))),
                            ],
                        )
                        .unwrap()
                    })
                    .collect();
                tx.send(query.run(batches).unwrap().num_rows()).unwrap();
            });
        }
        let rows = rx.recv_timeout(Duration::from_secs(60));
        runtime.shutdown_background();
        assert_eq!(rows.expect("the query did not finish"), 37);
    }
}
