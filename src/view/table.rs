//! A materialized view's name in SQL: a table whose scan reads the rows the view's
//! pipeline last published.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::Result;
use crate::view::source::SourceDef;
use crate::view::state::View;

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
            .published_rows()
            .map_err(|e| datafusion::error::DataFusionError::Execution(e.to_string()))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.view.schema(),
            projection.cloned(),
        )?)
    }
}

impl ViewTable {
    /// The view as a stream another view reads.
    pub fn as_source(&self) -> Result<Arc<SourceDef>> {
        self.view.as_source()
    }
}
