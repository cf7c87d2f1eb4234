//! Running a view's streaming path on the calling thread: the view is compiled by a real
//! engine (`view::plan::compile`), and the pipeline's own `Processor` does per poll what the
//! view's thread does (watermark, window assignment, late rows, pre-chain, aggregation).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use tokio::sync::mpsc;

use crate::engine::{Engine, Outcome};
use crate::error::{Result, WeirError};
use crate::sql::streaming::StreamingStatement;
use crate::sql::{Statement, classify, parse_postgres};
pub use crate::view::pipeline::Processor;
use crate::view::plan::compile;
use crate::view::state::View;

/// Run one statement; the rows it returns, if any.
pub async fn sql(engine: &Engine, text: &str) -> Result<Vec<RecordBatch>> {
    match engine.execute(&classify(text)?, None).await? {
        Outcome::Rows(df) => Ok(df.collect().await?),
        Outcome::Done(_) => Ok(Vec::new()),
        Outcome::Changes(_) => Err(WeirError::NotSupported(format!(
            "{text} follows changes without end; read its stream instead"
        ))),
    }
}

/// `CREATE MATERIALIZED VIEW name AS query`, parsed and compiled as the engine does it,
/// without starting its pipeline (the caller drives it).
pub async fn compile_view(engine: &Engine, name: &str, query: &str) -> Result<Arc<View>> {
    compile_statement(
        engine,
        &format!("CREATE MATERIALIZED VIEW {name} AS {query}"),
    )
    .await
}

/// A whole `CREATE MATERIALIZED VIEW` statement (options included), compiled as the engine
/// does it, without starting its pipeline.
pub async fn compile_statement(engine: &Engine, text: &str) -> Result<Arc<View>> {
    let Statement::Streaming(statement, _) = classify(text)? else {
        return Err(WeirError::Internal(format!("not a view: {text}")));
    };
    let StreamingStatement::CreateMaterializedView(create) = *statement else {
        return Err(WeirError::Internal(format!("not a view: {text}")));
    };
    let state = engine.context().state();
    let plan = state
        .statement_to_plan(parse_postgres(&create.query)?)
        .await?;
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let compiled = compile(&plan, &state).await?;
    let retention = crate::view::retention(&create, &compiled)?;
    // Nobody sends commands to a driven view; the receiver is not needed.
    let (tx, _rx) = mpsc::unbounded_channel();
    Ok(Arc::new(View::new(
        create.name,
        create.query,
        create.emit,
        compiled,
        retention,
        tx,
    )))
}
