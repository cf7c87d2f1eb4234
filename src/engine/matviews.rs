//! Materialized views in the PostgreSQL catalogs: `pg_class.relkind` is `m` for them
//! (so psql's `\dm` lists them) and `pg_matviews` has a row per view; `weir_catalog`'s
//! tables stay out of `pg_class`. Wraps the `pg_catalog` schema of datafusion-pg-catalog
//! and overrides those two tables.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::{ExecutionPlan, collect};

use crate::catalog::Catalog;

/// `pg_catalog` with `pg_class` and `pg_matviews` aware of materialized views.
#[derive(Debug)]
pub struct PgCatalogWithViews {
    pub inner: Arc<dyn SchemaProvider>,
    pub catalog: Weak<Catalog>,
}

#[async_trait]
impl SchemaProvider for PgCatalogWithViews {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        Ok(match (name, table) {
            ("pg_class", Some(inner)) => Some(Arc::new(PgClass {
                inner,
                namespaces: self.inner.table("pg_namespace").await?,
                catalog: self.catalog.clone(),
            })),
            ("pg_matviews", _) => Some(Arc::new(PgMatviews {
                catalog: self.catalog.clone(),
            })),
            (_, table) => table,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

fn view_names(catalog: &Weak<Catalog>) -> Vec<String> {
    catalog
        .upgrade()
        .map(|s| s.views().iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default()
}

#[derive(Debug)]
struct PgClass {
    inner: Arc<dyn TableProvider>,
    /// `pg_namespace`, to leave out the relations of `weir_catalog`: PostgreSQL's psql
    /// lists only relations on the search path, which Weir's visibility test does not
    /// check.
    namespaces: Option<Arc<dyn TableProvider>>,
    catalog: Weak<Catalog>,
}

/// The oids of the namespaces called `name`.
async fn namespace_oids(
    namespaces: &Arc<dyn TableProvider>,
    state: &dyn Session,
    name: &str,
) -> DfResult<Vec<i64>> {
    let plan = namespaces.scan(state, None, &[], None).await?;
    let mut oids = Vec::new();
    for batch in collect(plan, state.task_ctx()).await? {
        let schema = batch.schema();
        let (Ok(o), Ok(n)) = (schema.index_of("oid"), schema.index_of("nspname")) else {
            continue;
        };
        let o = datafusion::arrow::compute::cast(batch.column(o), &DataType::Int64)?;
        let o = o.as_any().downcast_ref::<Int64Array>().expect("Int64");
        let n = datafusion::arrow::compute::cast(batch.column(n), &DataType::Utf8)?;
        let n = n.as_any().downcast_ref::<StringArray>().expect("Utf8");
        for i in 0..batch.num_rows() {
            if n.is_valid(i) && n.value(i) == name && o.is_valid(i) {
                oids.push(o.value(i));
            }
        }
    }
    Ok(oids)
}

#[async_trait]
impl TableProvider for PgClass {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, None, &[], None).await?;
        let mut batches = collect(plan, state.task_ctx()).await?;
        let schema = self.inner.schema();
        if let (Some(namespaces), Ok(ns_col)) = (&self.namespaces, schema.index_of("relnamespace"))
        {
            let hidden = namespace_oids(namespaces, state, crate::engine::system::SCHEMA).await?;
            if !hidden.is_empty() {
                let mut kept = Vec::with_capacity(batches.len());
                for batch in batches {
                    let ns =
                        datafusion::arrow::compute::cast(batch.column(ns_col), &DataType::Int64)?;
                    let ns = ns.as_any().downcast_ref::<Int64Array>().expect("Int64");
                    let keep: BooleanArray = ns
                        .iter()
                        .map(|o| Some(!o.is_some_and(|o| hidden.contains(&o))))
                        .collect();
                    kept.push(filter_record_batch(&batch, &keep)?);
                }
                batches = kept;
            }
        }
        let views = view_names(&self.catalog);
        let (Ok(name_col), Ok(kind_col)) = (schema.index_of("relname"), schema.index_of("relkind"))
        else {
            return Ok(MemorySourceConfig::try_new_exec(
                &[batches],
                schema,
                projection.cloned(),
            )?);
        };
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let names = batch
                .column(name_col)
                .as_any()
                .downcast_ref::<StringArray>();
            let kinds = batch
                .column(kind_col)
                .as_any()
                .downcast_ref::<StringArray>();
            let (Some(names), Some(kinds)) = (names, kinds) else {
                out.push(batch);
                continue;
            };
            let relkind: StringArray = (0..batch.num_rows())
                .map(|i| {
                    if kinds.is_valid(i)
                        && kinds.value(i) == "v"
                        && views.iter().any(|v| v == names.value(i))
                    {
                        Some("m")
                    } else {
                        kinds.is_valid(i).then(|| kinds.value(i))
                    }
                })
                .collect();
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns[kind_col] = Arc::new(relkind);
            out.push(RecordBatch::try_new(batch.schema(), columns)?);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[out],
            schema,
            projection.cloned(),
        )?)
    }
}

#[derive(Debug)]
struct PgMatviews {
    catalog: Weak<Catalog>,
}

fn matviews_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("schemaname", DataType::Utf8, true),
        Field::new("matviewname", DataType::Utf8, true),
        Field::new("matviewowner", DataType::Utf8, true),
        Field::new("tablespace", DataType::Utf8, true),
        Field::new("hasindexes", DataType::Boolean, true),
        Field::new("ispopulated", DataType::Boolean, true),
        Field::new("definition", DataType::Utf8, true),
    ]))
}

#[async_trait]
impl TableProvider for PgMatviews {
    fn schema(&self) -> SchemaRef {
        matviews_schema()
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
        let views = self
            .catalog
            .upgrade()
            .map(|s| s.views())
            .unwrap_or_default();
        let n = views.len();
        let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<StringArray>())
        };
        let columns = vec![
            text(&|_| Some(crate::engine::SCHEMA.to_string())),
            text(&|i| Some(views[i].name.clone())),
            text(&|_| Some("weir".to_string())),
            text(&|_| None),
            Arc::new(BooleanArray::from(vec![false; n])) as ArrayRef,
            Arc::new(BooleanArray::from(vec![true; n])) as ArrayRef,
            text(&|i| Some(views[i].definition.clone())),
        ];
        let batch = RecordBatch::try_new(matviews_schema(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            matviews_schema(),
            projection.cloned(),
        )?)
    }
}
