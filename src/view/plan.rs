//! Compiling a materialized view's query into its streaming form: the row-wise steps
//! before the aggregation (filters, projections over the windowed source), the
//! incremental aggregation itself, and the row-wise steps after it (HAVING, projection).

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
#[allow(deprecated)]
use datafusion::physical_planner::create_aggregate_expr_and_maybe_filter;

use crate::error::{Result, WeirError};
use crate::view::source::{SourceDef, SourceTable, WindowedTable};
use crate::window::aggregate::{AggregateCall, AggregateSpec, WindowKey};
use crate::window::assign::{WINDOW_END, WINDOW_START, WindowSpec, nanos_per};

/// A row-wise step.
#[derive(Debug, Clone)]
enum Step {
    Filter(Arc<dyn PhysicalExpr>),
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

/// Row-wise steps applied in order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    steps: Vec<Step>,
}

impl Chain {
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mut batch = batch;
        for step in &self.steps {
            batch = match step {
                Step::Filter(predicate) => {
                    let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| WeirError::Internal("filter is not boolean".into()))?;
                    if mask.true_count() == batch.num_rows() {
                        batch
                    } else {
                        filter_record_batch(&batch, mask)?
                    }
                }
                Step::Project(exprs, schema) => {
                    let n = batch.num_rows();
                    let columns = exprs
                        .iter()
                        .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    RecordBatch::try_new_with_options(
                        schema.clone(),
                        columns,
                        &RecordBatchOptions::new().with_row_count(Some(n)),
                    )?
                }
            };
        }
        Ok(batch)
    }
}

/// Where a view's rows come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// `TUMBLE(…)` / `HOP(…)` over the source.
    Windowed {
        time: usize,
        /// In the time column's unit.
        spec: WindowSpec,
        schema: SchemaRef,
    },
    /// The source's rows as they are.
    Plain,
}

/// A view's query in streaming form.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    pub source: Arc<SourceDef>,
    /// The source columns the view reads (the time columns included); readers may leave
    /// the others NULL.
    pub columns: Vec<usize>,
    pub input: Input,
    pub pre: Chain,
    pub aggregate: Arc<AggregateSpec>,
    pub post: Chain,
    /// The view's columns (every one nullable).
    pub schema: SchemaRef,
}

fn not_supported(what: &str) -> WeirError {
    WeirError::NotSupported(format!(
        "{what} in a materialized view is not supported; a view is \
         SELECT … FROM TUMBLE(…) | HOP(…) | source [WHERE …] GROUP BY … [HAVING …]"
    ))
}

/// Walk down row-wise nodes to the first `Aggregate` or `TableScan`; the steps come
/// back in the order they apply (bottom first).
fn chain_to<'a>(plan: &'a LogicalPlan, props: &ExecutionProps) -> Result<(&'a LogicalPlan, Chain)> {
    match plan {
        LogicalPlan::Projection(p) => {
            let (leaf, mut chain) = chain_to(&p.input, props)?;
            let exprs = p
                .expr
                .iter()
                .map(|e| physical(e, p.input.schema(), props))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            chain
                .steps
                .push(Step::Project(exprs, Arc::clone(p.schema.inner())));
            Ok((leaf, chain))
        }
        LogicalPlan::Filter(f) => {
            let (leaf, mut chain) = chain_to(&f.input, props)?;
            let predicate = physical(&f.predicate, f.input.schema(), props)?;
            chain.steps.push(Step::Filter(predicate));
            Ok((leaf, chain))
        }
        LogicalPlan::SubqueryAlias(a) => chain_to(&a.input, props),
        // A view's ORDER BY does not order later reads (as in PostgreSQL's views).
        LogicalPlan::Sort(s) if s.fetch.is_none() => chain_to(&s.input, props),
        LogicalPlan::Aggregate(_) | LogicalPlan::TableScan(_) => Ok((plan, Chain::default())),
        LogicalPlan::Join(_) => Err(not_supported("a join")),
        LogicalPlan::Limit(_) | LogicalPlan::Sort(_) => Err(not_supported("LIMIT")),
        LogicalPlan::Window(_) => Err(not_supported("a window function (OVER)")),
        LogicalPlan::Distinct(_) => Err(not_supported("DISTINCT")),
        LogicalPlan::Union(_) => Err(not_supported("UNION")),
        other => Err(not_supported(&format!("{}", other.display()))),
    }
}

fn physical(
    e: &Expr,
    schema: &DFSchema,
    props: &ExecutionProps,
) -> datafusion::common::Result<Arc<dyn PhysicalExpr>> {
    create_physical_expr(e, schema, props, &PhysicalPlanningContext::default())
}

fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ))
}

/// The names of the columns the plan's expressions refer to (more than the source's
/// columns, as it includes those of the nodes above the aggregation).
fn referenced(plan: &LogicalPlan) -> impl Iterator<Item = String> {
    let mut names = std::collections::BTreeSet::new();
    let _ = plan.apply(|node| {
        for e in node.expressions() {
            names.extend(e.column_refs().into_iter().map(|c| c.name.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter()
}

/// Compile `query` (already planned with the engine's state, types resolved).
pub fn compile(plan: &LogicalPlan, state: &SessionState) -> Result<ViewPlan> {
    let props = state.execution_props();
    let (node, post) = chain_to(plan, props)?;
    let LogicalPlan::Aggregate(agg) = node else {
        return Err(WeirError::NotSupported(
            "a materialized view without GROUP BY (a filter or projection of a stream) \
             is not supported yet; aggregate it with GROUP BY"
                .into(),
        ));
    };
    let (leaf, pre) = chain_to(&agg.input, props)?;
    let LogicalPlan::TableScan(scan) = leaf else {
        return Err(not_supported("an aggregation over an aggregation"));
    };
    let provider = source_as_provider(&scan.source)?;
    let (source, input) = if let Some(w) = provider.downcast_ref::<WindowedTable>() {
        let datafusion::arrow::datatypes::DataType::Timestamp(unit, _) = w.time_type() else {
            unreachable!("checked by the window function")
        };
        let spec = w.spec.in_unit(*unit)?;
        (
            Arc::clone(&w.source),
            Input::Windowed {
                time: w.time,
                spec,
                schema: provider.schema(),
            },
        )
    } else if let Some(s) = provider.downcast_ref::<SourceTable>() {
        (Arc::clone(&s.def), Input::Plain)
    } else {
        return Err(WeirError::NotSupported(format!(
            "materialized views read sources (CREATE SOURCE); \"{}\" is not one",
            scan.table_name
        )));
    };
    let width = source.schema.fields().len();
    let mut columns: Vec<usize> = match &scan.projection {
        Some(projection) => projection.iter().copied().filter(|&i| i < width).collect(),
        None => referenced(plan)
            .filter_map(|name| source.schema.index_of(&name).ok())
            .collect(),
    };
    columns.extend(source.event_time.map(|e| e.column));
    if let Input::Windowed { time, .. } = &input {
        columns.push(*time);
    }
    columns.sort_unstable();
    columns.dedup();
    let mut pre = pre;
    if let Some(projection) = &scan.projection {
        let table_schema = DFSchema::try_from(provider.schema().as_ref().clone())?;
        let exprs = projection
            .iter()
            .map(|&i| {
                let f = provider.schema().field(i).clone();
                physical(
                    &Expr::Column(datafusion::common::Column::from_name(f.name())),
                    &table_schema,
                    props,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        pre.steps.insert(
            0,
            Step::Project(exprs, Arc::clone(scan.projected_schema.inner())),
        );
    }
    if !scan.filters.is_empty() {
        return Err(WeirError::Internal(
            "unexpected filters on a source scan".into(),
        ));
    }

    let input_schema = agg.input.schema();
    let mut group_exprs = Vec::new();
    let mut group_fields = Vec::new();
    let mut window = None;
    for (i, e) in agg.group_expr.iter().enumerate() {
        if matches!(e, Expr::GroupingSet(_)) {
            return Err(not_supported("GROUPING SETS / ROLLUP / CUBE"));
        }
        group_exprs.push(physical(e, input_schema, props)?);
        let data_type = e.to_field(input_schema)?.1.data_type().clone();
        group_fields.push(Field::new(format!("k{i}"), data_type, true));
        if let (Expr::Column(c), Input::Windowed { spec, .. }) = (e, &input)
            && window.is_none()
            && (c.name == WINDOW_START || c.name == WINDOW_END)
        {
            window = Some(WindowKey {
                column: i,
                is_start: c.name == WINDOW_START,
                size: spec.size,
            });
        }
    }
    let physical_input = input_schema.inner();
    let mut calls = Vec::new();
    for e in &agg.aggr_expr {
        #[allow(deprecated)]
        let (function, filter, order_by) =
            create_aggregate_expr_and_maybe_filter(e, input_schema, physical_input, props)?;
        if !order_by.is_empty() && function.order_bys().is_empty() {
            return Err(not_supported("an ordered aggregate"));
        }
        calls.push(AggregateCall {
            args: function.expressions(),
            function,
            filter,
        });
    }
    let aggregate = Arc::new(AggregateSpec {
        group_exprs,
        group_schema: Arc::new(Schema::new(group_fields)),
        calls,
        window,
        output_schema: nullable(agg.schema.inner()),
    });
    Ok(ViewPlan {
        source,
        columns,
        input,
        pre,
        aggregate,
        post,
        schema: nullable(plan.schema().inner()),
    })
}

/// Nanoseconds in the unit of a timestamp column, for converting watermark delays.
pub fn ticks(nanos: i64, unit: datafusion::arrow::datatypes::TimeUnit) -> i64 {
    nanos / nanos_per(unit)
}

#[cfg(test)]
mod tests {
    use crate::bench::bids::{BID_COLUMNS, BID_VIEW};
    use crate::bench::drive::{compile_view, sql};
    use crate::engine::Engine;

    async fn columns_read(query: &str) -> Vec<String> {
        let engine = Engine::new().await.unwrap();
        sql(
            &engine,
            &format!("CREATE SOURCE bids ({BID_COLUMNS}) WITH (connector = 'nexmark')"),
        )
        .await
        .unwrap();
        let view = compile_view(&engine, "q", query).await.unwrap();
        let schema = &view.plan.source.schema;
        view.plan
            .columns
            .iter()
            .map(|&i| schema.field(i).name().clone())
            .collect()
    }

    #[tokio::test]
    async fn a_view_reads_the_columns_it_uses_and_the_event_time() {
        assert_eq!(
            columns_read(BID_VIEW).await,
            ["auction", "price", "date_time"]
        );
        assert_eq!(
            columns_read(
                "SELECT channel, count(*) AS n FROM bids WHERE bidder > 3 \
                 GROUP BY channel HAVING max(price) > 10"
            )
            .await,
            ["bidder", "price", "channel", "date_time"]
        );
    }
}
