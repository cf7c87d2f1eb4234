//! Compiling a materialized view's query into its streaming form: the stage before the
//! operator (filters, projections, joins with batch tables, over the windowed source), the
//! operator (incremental aggregation, rows buffered per window, or rows appended), and
//! the stage after it (HAVING, projection, or a query such as Top-N run per window).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{cast, filter, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, JoinType};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
#[allow(deprecated)]
use datafusion::physical_planner::create_aggregate_expr_and_maybe_filter;

use crate::error::{Result, WeirError};
use crate::view::join::{JoinKeys, JoinState};
use crate::view::query::{BatchQuery, materialize};
use crate::view::source::{SourceDef, SourceTable, WindowedTable};
use crate::view::state::ViewTable;
use crate::window::aggregate::{AggregateCall, AggregateSpec, WindowKey, WindowedAggregate};
use crate::window::assign::{WINDOW_END, WINDOW_START, WindowSpec, nanos_per};
use crate::window::buffer::WindowBuffer;
use crate::window::log::AppendLog;
use crate::window::operator::OperatorState;

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
    /// One filter step, or none.
    pub fn filter(predicate: Option<Arc<dyn PhysicalExpr>>) -> Chain {
        Chain {
            steps: predicate.into_iter().map(Step::Filter).collect(),
        }
    }

    /// Apply the steps; `carried` (one value per row) is filtered along with the rows.
    pub fn apply_carrying(
        &self,
        batch: RecordBatch,
        mut carried: Option<&mut ArrayRef>,
    ) -> Result<RecordBatch> {
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
                        if let Some(c) = carried.as_deref_mut() {
                            *c = filter(c.as_ref(), mask)?;
                        }
                        filter_record_batch(&batch, mask)?
                    }
                }
                Step::Project(exprs, schema) => {
                    let n = batch.num_rows();
                    // An expression may compute a narrower type than planned
                    // (DataFusion's `round` of a decimal): the view's column type wins.
                    let columns = exprs
                        .iter()
                        .zip(schema.fields())
                        .map(|(e, field)| {
                            let column = e.evaluate(&batch).and_then(|v| v.into_array(n))?;
                            if column.data_type() == field.data_type() {
                                Ok(column)
                            } else {
                                Ok(cast(&column, field.data_type())?)
                            }
                        })
                        .collect::<std::result::Result<Vec<_>, datafusion::error::DataFusionError>>(
                        )?;
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

    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.apply_carrying(batch, None)
    }
}

/// Row-wise steps, then (for what is not row-wise) a query run over their result.
#[derive(Debug, Clone, Default)]
pub struct Stage {
    pub chain: Chain,
    pub query: Option<Arc<BatchQuery>>,
}

impl Stage {
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = self.chain.apply(batch)?;
        match &self.query {
            None => Ok(batch),
            Some(q) => q.run(vec![batch]),
        }
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

/// What keeps a view's state between the stage before it and the stage after it.
#[derive(Debug, Clone)]
pub enum Operator {
    /// `GROUP BY`: incremental aggregation, per window when grouped by one.
    Aggregate(Arc<AggregateSpec>),
    /// A window function over the rows of each window (Top-N over a window's rows): the
    /// rows are kept per window, and the stage after runs over each window's rows.
    Buffer(WindowKey),
    /// No aggregation: rows are appended to the view (and dropped after its retention).
    Append,
    /// An inner join of two streams: each side's rows are kept (until the watermark of
    /// the other side passes the time bound), and each new row is joined with the other
    /// side's kept rows; the joined rows are appended, or folded into an aggregation.
    Join(Arc<JoinSpec>),
}

/// One input of a view: a stream and the row-wise steps over it.
#[derive(Debug, Clone)]
pub struct Side {
    pub source: Arc<SourceDef>,
    /// The source columns this side reads (the time columns included); readers may
    /// leave the others NULL.
    pub columns: Vec<usize>,
    pub input: Input,
    pub pre: Stage,
}

/// `right.time BETWEEN left.time + lo AND left.time + hi`, in the time columns' unit
/// (`i64::MIN` / `i64::MAX`: no bound on that side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    pub lo: i64,
    pub hi: i64,
}

/// A join of two streams.
#[derive(Debug)]
pub struct JoinSpec {
    /// The right input (the left one is the view's own stream).
    pub right: Side,
    /// How a new batch meets the other side's kept rows.
    pub by: JoinBy,
    /// Row-wise steps from the joined rows up to the aggregation (or the view's rows).
    pub after: Chain,
    /// The aggregation over the joined rows (running, without windows), if any.
    pub then: Option<Arc<AggregateSpec>>,
    /// The bound on the sides' event times the join condition sets, which lets kept rows
    /// go; `None`: rows are kept for the life of the view.
    pub bound: Option<TimeBound>,
}

/// How a join of two streams finds a new row's partners.
#[derive(Debug)]
pub enum JoinBy {
    /// Through each side's index on the condition's equality keys.
    Keys(JoinKeys),
    /// A condition without equalities: the join (DataFusion) of a new batch with all
    /// the other side's rows.
    Query(Arc<BatchQuery>),
}

impl Operator {
    /// A new, empty state of this operator.
    pub fn state(&self) -> Box<dyn OperatorState> {
        match self {
            Operator::Aggregate(spec) => Box::new(WindowedAggregate::new(Arc::clone(spec))),
            Operator::Buffer(key) => Box::new(WindowBuffer::new(*key)),
            Operator::Append => Box::new(AppendLog::default()),
            Operator::Join(spec) => Box::new(JoinState::new(Arc::clone(spec))),
        }
    }

    /// The window whose closing frees state and finalizes rows.
    pub fn window(&self) -> Option<WindowKey> {
        match self {
            Operator::Aggregate(spec) => spec.window,
            Operator::Buffer(key) => Some(*key),
            Operator::Append | Operator::Join(_) => None,
        }
    }
}

/// What a column of a plan's output carries, traced from the windowed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Start,
    End,
    /// The source's event time.
    Time,
}

/// A view's query in streaming form.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    /// The stream the view reads (the left one of a join of streams).
    pub stream: Side,
    pub operator: Operator,
    pub post: Stage,
    /// The view's columns (every one nullable).
    pub schema: SchemaRef,
    /// What each of the view's columns carries (window bounds, event time).
    pub tags: Vec<Option<Tag>>,
}

impl ViewPlan {
    /// The streams the view reads, each with its stage: its own, and the right one of a
    /// join of streams.
    pub fn sides(&self) -> Vec<&Side> {
        let mut out = vec![&self.stream];
        if let Operator::Join(spec) = &self.operator {
            out.push(&spec.right);
        }
        out
    }
}

const SHAPE: &str = "a view is SELECT … FROM TUMBLE(…) | HOP(…) | source [JOIN batch table] \
     [WHERE …] [GROUP BY … [HAVING …]], optionally filtered by a window function over \
     each window (ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY …) <= N), or an \
     inner join of two sources or views, optionally under an aggregation";

fn not_supported(what: &str) -> WeirError {
    WeirError::NotSupported(format!(
        "{what} in a materialized view is not supported; {SHAPE}"
    ))
}

/// The stream a scan reads, if it reads one (a source, a windowed source, or a view that
/// emits its rows once).
fn stream_of(
    scan: &datafusion::logical_expr::TableScan,
) -> Result<Option<(Arc<SourceDef>, Input)>> {
    let provider = source_as_provider(&scan.source)?;
    if let Some(w) = provider.downcast_ref::<WindowedTable>() {
        let datafusion::arrow::datatypes::DataType::Timestamp(unit, _) = w.time_type() else {
            unreachable!("checked by the window function")
        };
        let spec = w.spec.in_unit(*unit)?;
        return Ok(Some((
            Arc::clone(&w.source),
            Input::Windowed {
                time: w.time,
                spec,
                schema: provider.schema(),
            },
        )));
    }
    if let Some(s) = provider.downcast_ref::<SourceTable>() {
        return Ok(Some((Arc::clone(&s.def), Input::Plain)));
    }
    if let Some(v) = provider.downcast_ref::<ViewTable>() {
        return Ok(Some((v.as_source()?, Input::Plain)));
    }
    Ok(None)
}

/// Whether a scan reads a stream (without building its source, as `stream_of` does).
fn is_stream(scan: &datafusion::logical_expr::TableScan) -> bool {
    source_as_provider(&scan.source).is_ok_and(|p| {
        p.downcast_ref::<WindowedTable>().is_some()
            || p.downcast_ref::<SourceTable>().is_some()
            || p.downcast_ref::<ViewTable>().is_some()
    })
}

fn reads_stream(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && is_stream(scan)
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Every input of a join that reads no stream is read once now and kept in memory.
async fn materialize_batch_sides(plan: &LogicalPlan, state: &SessionState) -> Result<LogicalPlan> {
    let LogicalPlan::Join(join) = plan else {
        let inputs = plan.inputs();
        if inputs.is_empty() {
            return Ok(plan.clone());
        }
        let mut new_inputs = Vec::with_capacity(inputs.len());
        for input in inputs {
            new_inputs.push(Box::pin(materialize_batch_sides(input, state)).await?);
        }
        return Ok(plan.with_new_exprs(plan.expressions(), new_inputs)?);
    };
    let mut sides = Vec::with_capacity(2);
    for side in [&join.left, &join.right] {
        sides.push(if reads_stream(side) {
            Box::pin(materialize_batch_sides(side, state)).await?
        } else {
            materialize(side, state).await?
        });
    }
    let (left_stream, right_stream) = (reads_stream(&join.left), reads_stream(&join.right));
    let row_wise = match (left_stream, right_stream) {
        (true, true) if join.join_type == JoinType::Inner => true,
        (true, true) => {
            return Err(not_supported(&format!(
                "a {} join of two streams (inner joins only)",
                join.join_type.to_string().to_uppercase()
            )));
        }
        (false, false) => true,
        (true, false) => matches!(
            join.join_type,
            JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
        ),
        (false, true) => matches!(
            join.join_type,
            JoinType::Inner | JoinType::Right | JoinType::RightSemi | JoinType::RightAnti
        ),
    };
    if !row_wise {
        return Err(not_supported(&format!(
            "a {} join that keeps the batch table's unmatched rows",
            join.join_type
        )));
    }
    Ok(plan.with_new_exprs(plan.expressions(), sides)?)
}

fn column_of(e: &Expr) -> Option<&datafusion::common::Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Alias(a) => column_of(&a.expr),
        _ => None,
    }
}

/// What each output column of `node` carries.
pub fn tags(node: &LogicalPlan) -> Vec<Option<Tag>> {
    let through = |exprs: &[Expr], input: &LogicalPlan| -> Vec<Option<Tag>> {
        let below = tags(input);
        exprs
            .iter()
            .map(|e| {
                column_of(e)
                    .and_then(|c| input.schema().index_of_column(c).ok())
                    .and_then(|i| below.get(i).copied().flatten())
            })
            .collect()
    };
    match node {
        LogicalPlan::TableScan(scan) => {
            let full: Vec<Option<Tag>> = match source_as_provider(&scan.source) {
                Ok(provider) => {
                    let schema = provider.schema();
                    if let Some(w) = provider.downcast_ref::<WindowedTable>() {
                        let width = w.source.schema.fields().len();
                        (0..schema.fields().len())
                            .map(|i| match schema.field(i).name().as_str() {
                                WINDOW_START if i >= width => Some(Tag::Start),
                                WINDOW_END if i >= width => Some(Tag::End),
                                _ if i == w.time => Some(Tag::Time),
                                _ => None,
                            })
                            .collect()
                    } else if let Ok(Some((def, _))) = stream_of(scan) {
                        (0..schema.fields().len())
                            .map(|i| {
                                (def.event_time.map(|e| e.column) == Some(i)).then_some(Tag::Time)
                            })
                            .collect()
                    } else {
                        vec![None; schema.fields().len()]
                    }
                }
                Err(_) => vec![None; scan.source.schema().fields().len()],
            };
            match &scan.projection {
                Some(p) => p.iter().map(|&i| full.get(i).copied().flatten()).collect(),
                None => full,
            }
        }
        LogicalPlan::Projection(p) => through(&p.expr, &p.input),
        LogicalPlan::Aggregate(a) => {
            let mut out = through(&a.group_expr, &a.input);
            out.extend(a.aggr_expr.iter().map(|_| None));
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = tags(&w.input);
            out.extend(w.window_expr.iter().map(|_| None));
            out
        }
        LogicalPlan::Join(j) => {
            let mut out = tags(&j.left);
            if !matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti) {
                out.extend(tags(&j.right));
            }
            if matches!(j.join_type, JoinType::RightSemi | JoinType::RightAnti) {
                out = tags(&j.right);
            }
            out
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Limit(_) => tags(node.inputs()[0]),
        other => vec![None; other.schema().fields().len()],
    }
}

/// Row-wise nodes from `top` down to `stop` (exclusive): the steps in the order they
/// apply, or `None` when a node in between is not row-wise.
fn chain_between(
    top: &LogicalPlan,
    stop: &LogicalPlan,
    props: &ExecutionProps,
) -> Result<Option<Chain>> {
    if std::ptr::eq(top, stop) {
        return Ok(Some(Chain::default()));
    }
    let step = match top {
        LogicalPlan::Projection(p) => Some(Step::Project(
            p.expr
                .iter()
                .map(|e| physical(e, p.input.schema(), props))
                .collect::<std::result::Result<Vec<_>, _>>()?,
            Arc::clone(p.schema.inner()),
        )),
        LogicalPlan::Filter(f) => Some(Step::Filter(physical(
            &f.predicate,
            f.input.schema(),
            props,
        )?)),
        // A view's ORDER BY does not order later reads (as in PostgreSQL's views).
        LogicalPlan::SubqueryAlias(_) => None,
        LogicalPlan::Sort(s) if s.fetch.is_none() => None,
        _ => return Ok(None),
    };
    let Some(mut chain) = chain_between(top.inputs()[0], stop, props)? else {
        return Ok(None);
    };
    chain.steps.extend(step);
    Ok(Some(chain))
}

/// The stage from `input` (exclusive) up to `top`: row-wise steps when it can be, else a query.
fn stage(top: &LogicalPlan, input: &LogicalPlan, state: &SessionState) -> Result<Stage> {
    match chain_between(top, input, state.execution_props())? {
        Some(chain) => Ok(Stage { chain, query: None }),
        None => Ok(Stage {
            chain: Chain::default(),
            query: Some(Arc::new(BatchQuery::new(top, input, state)?)),
        }),
    }
}

/// Whether `node` is row-wise over its one stream: each stream row is handled on its own.
fn row_wise(node: &LogicalPlan) -> bool {
    match node {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            row_wise(node.inputs()[0])
        }
        LogicalPlan::Sort(s) => s.fetch.is_none() && row_wise(&s.input),
        LogicalPlan::Join(j) => {
            // Batch sides were checked and materialized before.
            !joins_streams(node)
                && [&j.left, &j.right]
                    .into_iter()
                    .all(|side| !reads_stream(side) || row_wise(side))
        }
        _ => !reads_stream(node),
    }
}

/// Whether `plan` joins two streams anywhere.
fn has_stream_join(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        found = joins_streams(node);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// Whether `node` is a join whose two sides read streams.
fn joins_streams(node: &LogicalPlan) -> bool {
    matches!(node, LogicalPlan::Join(j) if reads_stream(&j.left) && reads_stream(&j.right))
}

/// The one child of `node` that reads the stream.
fn stream_child(node: &LogicalPlan) -> Result<&LogicalPlan> {
    let mut children = node.inputs().into_iter().filter(|c| reads_stream(c));
    match (children.next(), children.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(not_supported("reading a stream twice (a self-join)")),
        (None, _) => Err(WeirError::NotSupported(
            "a materialized view reads a source or another view; this query reads neither \
             (use CREATE VIEW or CREATE TABLE … AS for batch queries)"
                .into(),
        )),
    }
}

/// The scan of the stream in the row-wise subtree `node`.
fn stream_scan(node: &LogicalPlan) -> Result<&datafusion::logical_expr::TableScan> {
    match node {
        LogicalPlan::TableScan(scan) => Ok(scan),
        _ => stream_scan(stream_child(node)?),
    }
}

/// The join of two streams under `node` through row-wise steps only.
fn join_below(node: &LogicalPlan) -> Option<&LogicalPlan> {
    match node {
        LogicalPlan::Join(_) if joins_streams(node) => Some(node),
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            join_below(node.inputs()[0])
        }
        _ => None,
    }
}

/// The equality keys of a join of two streams, if its condition has any.
fn join_keys(
    j: &datafusion::logical_expr::Join,
    props: &ExecutionProps,
) -> Result<Option<JoinKeys>> {
    if j.on.is_empty() {
        return Ok(None);
    }
    let mut exprs = [Vec::new(), Vec::new()];
    let mut types = Vec::new();
    for (l, r) in &j.on {
        exprs[0].push(physical(l, j.left.schema(), props)?);
        exprs[1].push(physical(r, j.right.schema(), props)?);
        types.push(l.get_type(j.left.schema())?);
    }
    let converter = datafusion::arrow::row::RowConverter::new(
        types
            .iter()
            .cloned()
            .map(datafusion::arrow::row::SortField::new)
            .collect(),
    )?;
    Ok(Some(JoinKeys {
        exprs,
        types,
        converter,
        nulls_match: j.null_equality == datafusion::common::NullEquality::NullEqualsNull,
        filter: Chain::filter(
            j.filter
                .as_ref()
                .map(|f| physical(f, &j.schema, props))
                .transpose()?,
        ),
        schema: nullable(j.schema.inner()),
    }))
}

/// A join of two streams written as `FROM a, b WHERE a.k = b.k …` is a cross join under a
/// filter: move the condition into the join (its equalities become keys) and the
/// conditions on one side below it.
fn join_conditions(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::optimizer::extract_equijoin_predicate::ExtractEquijoinPredicate;
    use datafusion::optimizer::push_down_filter::PushDownFilter;
    use datafusion::optimizer::{Optimizer, OptimizerContext};
    let optimizer = Optimizer::with_rules(vec![
        Arc::new(PushDownFilter::new()),
        Arc::new(ExtractEquijoinPredicate::new()),
    ]);
    Ok(optimizer.optimize(plan, &OptimizerContext::new(), |_, _| {})?)
}

/// Nodes between `top` and `stop` (exclusive) that cannot run one window at a time.
fn check_per_window(top: &LogicalPlan, stop: &LogicalPlan) -> Result<()> {
    if std::ptr::eq(top, stop) {
        return Ok(());
    }
    match top {
        LogicalPlan::Window(w) => {
            let below = tags(&w.input);
            let by_window = w.window_expr.iter().all(|e| {
                let Expr::WindowFunction(f) = e.clone().unalias() else {
                    return false;
                };
                f.params.partition_by.iter().any(|p| {
                    column_of(p)
                        .and_then(|c| w.input.schema().index_of_column(c).ok())
                        .and_then(|i| below[i])
                        .is_some_and(|t| t != Tag::Time)
                })
            });
            if !by_window {
                return Err(not_supported(
                    "a window function not partitioned by window_start or window_end",
                ));
            }
        }
        LogicalPlan::Limit(_) => return Err(not_supported("LIMIT over windows")),
        LogicalPlan::Sort(s) if s.fetch.is_some() => {
            return Err(not_supported("LIMIT over windows"));
        }
        LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) | LogicalPlan::Union(_) => {
            return Err(not_supported(&format!(
                "{} after the aggregation",
                top.display()
            )));
        }
        _ => {}
    }
    check_per_window(stream_child(top)?, stop)
}

/// `e` as a physical expression over `schema`. Simplified first, as a query's plan is:
/// some functions (`coalesce`, `nvl`) are rewritten by the simplifier and have no
/// physical form of their own. Without a start time, `now()` is not folded.
fn physical(
    e: &Expr,
    schema: &DFSchema,
    props: &ExecutionProps,
) -> datafusion::common::Result<Arc<dyn PhysicalExpr>> {
    let mut context = SimplifyContext::builder().with_schema(Arc::new(schema.clone()));
    if let Some(options) = &props.config_options {
        context = context.with_config_options(Arc::clone(options));
    }
    let e = ExprSimplifier::new(context.build()).simplify(e.clone())?;
    create_physical_expr(&e, schema, props, &PhysicalPlanningContext::default())
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
pub async fn compile(plan: &LogicalPlan, state: &SessionState) -> Result<ViewPlan> {
    let joined;
    let plan = if has_stream_join(plan) {
        joined = join_conditions(plan.clone())?;
        &joined
    } else {
        plan
    };
    let plan = &materialize_batch_sides(plan, state).await?;
    let props = state.execution_props();
    // Down from the top along the stream to the first aggregation or row-wise subtree.
    let mut node = plan;
    // An aggregation right over a join of two streams (through row-wise steps).
    let mut then = None;
    let (operator_node, pre_root) = loop {
        if row_wise(node) {
            break (node, node);
        }
        if let LogicalPlan::Join(j) = node
            && joins_streams(node)
        {
            if !row_wise(&j.left) || !row_wise(&j.right) {
                return Err(not_supported(
                    "a join of two streams where a side aggregates \
                     (join the views that aggregate instead)",
                ));
            }
            break (node, j.left.as_ref());
        }
        if let LogicalPlan::Aggregate(agg) = node {
            if row_wise(&agg.input) {
                break (node, agg.input.as_ref());
            }
            if let Some(join) = join_below(&agg.input) {
                then = Some((node, agg));
                node = join;
                continue;
            }
        }
        node = stream_child(node)?;
    };
    let stream = side(plan, pre_root, state)?;
    let window_size = match &stream.input {
        Input::Windowed { spec, .. } => Some(spec.size),
        Input::Plain => None,
    };

    let operator = if let LogicalPlan::Aggregate(agg) = operator_node {
        Operator::Aggregate(Arc::new(aggregate_spec(agg, window_size, props)?))
    } else if let LogicalPlan::Join(j) = operator_node {
        let right = side(plan, &j.right, state)?;
        if stream.pre.query.is_some() || right.pre.query.is_some() {
            return Err(not_supported(
                "a join of two streams that also joins a batch table",
            ));
        }
        let bound = time_bound(j, &stream.source, &right.source)?;
        let by = match join_keys(j, props)? {
            Some(keys) => JoinBy::Keys(keys),
            None => JoinBy::Query(Arc::new(BatchQuery::with_inputs(
                operator_node,
                &[&j.left, &j.right],
                state,
            )?)),
        };
        let top = then.map_or(plan, |(_, agg)| agg.input.as_ref());
        let Some(after) = chain_between(top, operator_node, props)? else {
            return Err(not_supported(
                "an aggregation or window function over a join of two streams \
                 (make the join a view, and aggregate that view)",
            ));
        };
        Operator::Join(Arc::new(JoinSpec {
            right,
            by,
            after,
            then: then
                .map(|(_, agg)| aggregate_spec(agg, None, props).map(Arc::new))
                .transpose()?,
            bound,
        }))
    } else if std::ptr::eq(operator_node, plan) {
        Operator::Append
    } else {
        let below = tags(pre_root);
        let key = below
            .iter()
            .position(|t| *t == Some(Tag::End))
            .or_else(|| below.iter().position(|t| *t == Some(Tag::Start)));
        match (key, window_size) {
            (Some(column), Some(size)) => Operator::Buffer(WindowKey {
                column,
                is_start: below[column] == Some(Tag::Start),
                size,
            }),
            _ => {
                return Err(not_supported(
                    "a window function over a stream without TUMBLE or HOP \
                     (partition it by window_start or window_end)",
                ));
            }
        }
    };
    if operator.window().is_some() {
        check_per_window(plan, operator_node)?;
    }
    let post = match &operator {
        Operator::Append => Stage::default(),
        Operator::Join(_) => match then {
            Some((agg, _)) => stage(plan, agg, state)?,
            None => Stage::default(),
        },
        _ => stage(plan, operator_node, state)?,
    };
    Ok(ViewPlan {
        stream,
        operator,
        post,
        schema: nullable(plan.schema().inner()),
        tags: tags(plan),
    })
}

/// The stream `pre_root` reads and the stage over it (`plan` is the whole query).
fn side(plan: &LogicalPlan, pre_root: &LogicalPlan, state: &SessionState) -> Result<Side> {
    let props = state.execution_props();
    let scan = stream_scan(pre_root)?;
    let (source, input) = stream_of(scan)?.expect("a stream scan");
    let scan_node = {
        let mut n = pre_root;
        while !matches!(n, LogicalPlan::TableScan(_)) {
            n = stream_child(n)?;
        }
        n
    };
    let provider = source_as_provider(&scan.source)?;
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
    let mut pre = stage(pre_root, scan_node, state)?;
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
        pre.chain.steps.insert(
            0,
            Step::Project(exprs, Arc::clone(scan.projected_schema.inner())),
        );
    }
    if !scan.filters.is_empty() {
        return Err(WeirError::Internal(
            "unexpected filters on a source scan".into(),
        ));
    }
    Ok(Side {
        source,
        columns,
        input,
        pre,
    })
}

/// The bound a join condition sets between the two sides' event times: an equality of
/// them (`ON l.t = r.t`, as in window joins of views), or `r.t BETWEEN l.t - INTERVAL …
/// AND l.t + INTERVAL …` (either side first). `None` when it sets none.
fn time_bound(
    j: &datafusion::logical_expr::Join,
    left: &SourceDef,
    right: &SourceDef,
) -> Result<Option<TimeBound>> {
    let time_unit = |s: &SourceDef| {
        s.event_time
            .map(|e| match s.schema.field(e.column).data_type() {
                datafusion::arrow::datatypes::DataType::Timestamp(unit, _) => *unit,
                _ => datafusion::arrow::datatypes::TimeUnit::Microsecond,
            })
    };
    let (Some(lu), Some(ru)) = (time_unit(left), time_unit(right)) else {
        return Ok(None);
    };
    if lu != ru {
        return Ok(None);
    }
    let (lt, rt) = (tags(&j.left), tags(&j.right));
    // Which side's event time an expression is: Some(true) left, Some(false) right.
    let time_side = |e: &Expr| -> Option<bool> {
        let c = column_of(e)?;
        if let Ok(i) = j.left.schema().index_of_column(c)
            && lt.get(i).copied().flatten() == Some(Tag::Time)
        {
            return Some(true);
        }
        if let Ok(i) = j.right.schema().index_of_column(c)
            && rt.get(i).copied().flatten() == Some(Tag::Time)
        {
            return Some(false);
        }
        None
    };
    // `t ± INTERVAL` → (side, offset in the time unit).
    let offset = |e: &Expr| -> Option<(bool, i64)> {
        use datafusion::logical_expr::{BinaryExpr, Operator as Op};
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(op, Op::Plus | Op::Minus) =>
            {
                let side = time_side(left)?;
                let Expr::Literal(v, _) = right.as_ref() else {
                    return None;
                };
                let n = crate::view::source::interval_nanos(v)? / nanos_per(lu);
                Some((side, if *op == Op::Minus { -n } else { n }))
            }
            other => time_side(other).map(|side| (side, 0)),
        }
    };
    let mut conjuncts = Vec::new();
    if let Some(f) = &j.filter {
        conjuncts = datafusion::logical_expr::utils::split_conjunction(f);
    }
    // Equalities: the join's keys, and those left in its filter.
    let equal = conjuncts.iter().filter_map(|c| match c {
        Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr {
            left,
            op: datafusion::logical_expr::Operator::Eq,
            right,
        }) => Some((left.as_ref(), right.as_ref())),
        _ => None,
    });
    for (l, r) in j.on.iter().map(|(l, r)| (l, r)).chain(equal) {
        if let (Some(a), Some(b)) = (time_side(l), time_side(r))
            && a != b
        {
            return Ok(Some(TimeBound { lo: 0, hi: 0 }));
        }
    }
    for c in conjuncts {
        let Expr::Between(b) = c else { continue };
        let Some(side) = time_side(&b.expr) else {
            continue;
        };
        if b.negated {
            continue;
        }
        // A limit that is not the other side's time (`a.expires`) bounds nothing.
        let limit = |e: &Expr| offset(e).filter(|(s, _)| *s != side).map(|(_, o)| o);
        let (lo, hi) = match (limit(&b.low), limit(&b.high)) {
            (None, None) => continue,
            (lo, hi) => (lo.unwrap_or(i64::MIN), hi.unwrap_or(i64::MAX)),
        };
        if lo > hi {
            continue;
        }
        // right.t in [left.t + lo, left.t + hi], or left.t in [right.t + lo, right.t + hi]
        // which is right.t in [left.t - hi, left.t - lo].
        return Ok(Some(if side {
            TimeBound {
                lo: hi.saturating_neg(),
                hi: lo.saturating_neg(),
            }
        } else {
            TimeBound { lo, hi }
        }));
    }
    Ok(None)
}

/// The incremental form of `GROUP BY … aggregates`.
fn aggregate_spec(
    agg: &datafusion::logical_expr::Aggregate,
    window_size: Option<i64>,
    props: &ExecutionProps,
) -> Result<AggregateSpec> {
    let input_schema = agg.input.schema();
    let below = tags(&agg.input);
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
        let tag = column_of(e)
            .and_then(|c| input_schema.index_of_column(c).ok())
            .and_then(|i| below[i]);
        if let (Some(Tag::Start | Tag::End), Some(size), None) = (tag, window_size, window) {
            window = Some(WindowKey {
                column: i,
                is_start: tag == Some(Tag::Start),
                size,
            });
        }
    }
    let hidden_key = group_exprs.is_empty();
    if hidden_key {
        group_exprs.push(datafusion::physical_expr::expressions::lit(true));
        group_fields.push(Field::new(
            "k0",
            datafusion::arrow::datatypes::DataType::Boolean,
            true,
        ));
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
    Ok(AggregateSpec {
        group_exprs,
        group_schema: Arc::new(Schema::new(group_fields)),
        calls,
        window,
        output_schema: nullable(agg.schema.inner()),
        hidden_key,
    })
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
        let schema = &view.plan.stream.source.schema;
        view.plan
            .stream
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

#[cfg(test)]
mod plan_tests;
