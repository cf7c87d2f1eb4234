//! The engine: one DataFusion `SessionContext` that holds Weir's catalog (database
//! `weir`, schema `public`, plus `pg_catalog` and `information_schema`), and the one
//! code path that runs a statement for every front (the `.sql` loader, pgwire, Flight).
//! It owns no sockets and no session variables; those belong to the servers.

mod durable;
pub use durable::Pending;
pub mod functions;
pub mod information_schema;
mod matviews;
mod streaming;
pub(crate) use streaming::micros_text;
pub mod system;

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use tracing::info;

use crate::catalog::Catalog;
use crate::catalog::Durable;
use crate::error::{Result, WeirError};
use crate::sql::loader::{self, Definition};
use crate::sql::streaming::StreamingStatement;
use crate::sql::{Statement, parse_postgres};
use crate::storage::{ObjectStores, resolve_location};
use crate::view::changes::{ChangeStream, change_schema};

/// The one database the catalog shows.
pub const DATABASE: &str = "weir";
/// The schema that holds user objects.
pub const SCHEMA: &str = "public";

/// What running a statement produced.
pub enum Outcome {
    /// Rows to stream to the client.
    Rows(DataFrame),
    /// A command that completed, with its PostgreSQL command tag (`CREATE TABLE`, `DROP VIEW`…).
    Done(String),
    /// A view's changes, for as long as the client follows them (`SUBSCRIBE`).
    Changes(ChangeStream),
}

/// A statement planned without running anything, to run later (once or many times, with
/// parameter values): what fronts that prepare statements hold (Flight SQL).
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Statement,
    /// The plan of ordinary SQL (`Statement::Postgres`); statements the engine runs
    /// itself are planned when they run.
    plan: Option<LogicalPlan>,
    /// The columns it returns; `None`: no rows (DDL and other commands).
    schema: Option<SchemaRef>,
}

impl Prepared {
    /// The statement as classified.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    /// The columns it returns; `None` for a statement that returns no rows.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// The columns it returns with `parameters` bound: binding can type a column the plan
    /// left open (`SELECT $1`) or make one non-null.
    pub fn schema_with(&self, parameters: Option<&[ScalarValue]>) -> Result<Option<SchemaRef>> {
        match (&self.plan, parameters, &self.schema) {
            (Some(plan), Some(values), Some(_)) => {
                let bound = plan.clone().with_param_values(values.to_vec())?;
                Ok(Some(Arc::clone(bound.schema().inner())))
            }
            _ => Ok(self.schema.clone()),
        }
    }

    /// The types of its parameters `$1`…`$n` in order (`None` where the plan leaves one
    /// untyped, as in `SELECT $1`). Statements the engine runs itself take none.
    pub fn parameter_types(&self) -> Result<Vec<Option<DataType>>> {
        let Some(plan) = &self.plan else {
            return Ok(Vec::new());
        };
        let mut types = Vec::new();
        for (id, ty) in plan.get_parameter_types()? {
            let index = id
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    WeirError::NotSupported(format!(
                        "parameter {id}: only positional parameters ($1, $2, …) are supported"
                    ))
                })?;
            if types.len() < index {
                types.resize(index, None);
            }
            types[index - 1] = ty;
        }
        Ok(types)
    }

    /// `SET`, `BEGIN`/`COMMIT` and SQL-level `PREPARE`/`EXECUTE`: statements about a
    /// session, which only fronts that keep sessions can honour.
    pub fn is_session_statement(&self) -> bool {
        matches!(self.plan, Some(LogicalPlan::Statement(_)))
    }
}

/// Weir's catalog and executor, shared by every connection.
pub struct Engine {
    ctx: Arc<SessionContext>,
    catalog: Arc<Catalog>,
    /// Where objects created over the ports are kept (a server with a data directory).
    durable: std::sync::OnceLock<Arc<Durable>>,
}

impl Engine {
    /// An engine with an empty `public` schema and the PostgreSQL catalogs, without a
    /// memory limit on queries.
    pub async fn new() -> Result<Self> {
        Self::with_query_memory(None).await
    }

    /// [`Engine::new`], where ad-hoc queries together may hold at most `limit` bytes for
    /// their sorts, joins and aggregations: one that needs more fails alone
    /// (ResourcesExhausted). Views' own queries run outside this pool.
    pub async fn with_query_memory(limit: Option<usize>) -> Result<Self> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, SCHEMA)
            .with_create_default_catalog_and_schema(true)
            // PostgreSQL's information_schema replaces DataFusion's (see information_schema.rs).
            .with_information_schema(false)
            // Hive-style folders (`dt=2026-11-21/`) become columns without declaring them.
            .set_bool(
                "datafusion.execution.listing_table_factory_infer_partitions",
                true,
            )
            // `timestamptz` means a UTC-anchored instant, as in PostgreSQL with TimeZone=UTC.
            .set_str("datafusion.execution.time_zone", "UTC");
        let mut runtime =
            RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(ObjectStores::new()));
        if let Some(limit) = limit {
            use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
            runtime = runtime.with_memory_pool(Arc::new(TrackConsumersPool::new(
                GreedyMemoryPool::new(limit),
                std::num::NonZeroUsize::new(3).expect("non-zero"),
            )));
        }
        let runtime = runtime.build_arc()?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider)
            .map_err(|e| WeirError::DataFusion(*e))?;
        functions::register(&ctx);
        ctx.register_udtf("datagen", Arc::new(crate::connector::datagen::DatagenTable));
        ctx.register_udtf("nexmark", Arc::new(crate::connector::nexmark::NexmarkTable));
        let catalog = Arc::new(Catalog::default());
        catalog.install(&ctx);
        if let Some(database) = ctx.catalog(DATABASE)
            && let Some(inner) = database.schema("pg_catalog")
        {
            database.register_schema(
                "pg_catalog",
                Arc::new(matviews::PgCatalogWithViews {
                    inner,
                    catalog: Arc::downgrade(&catalog),
                }),
            )?;
        }
        if let Some(database) = ctx.catalog(DATABASE) {
            database.register_schema(
                system::SCHEMA,
                Arc::new(system::SystemSchema {
                    catalog: Arc::downgrade(&catalog),
                }),
            )?;
        }
        information_schema::install(&ctx).await?;
        Ok(Engine {
            ctx: Arc::new(ctx),
            catalog,
            durable: std::sync::OnceLock::new(),
        })
    }

    /// The shared DataFusion context (the pgwire front plans ordinary SQL on it).
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.ctx
    }

    /// Sources and materialized views.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Does `name` exist in `public`?
    pub fn exists(&self, name: &str) -> bool {
        self.ctx
            .catalog(DATABASE)
            .and_then(|c| c.schema(SCHEMA))
            .is_some_and(|s| s.table_exist(name))
    }

    /// Read a folder of `.sql` files and apply them in dependency order.
    pub async fn load_dir(&self, dir: &Path) -> Result<Vec<Definition>> {
        let defs = loader::load_dir(dir, &|name| self.exists(name))?;
        for def in &defs {
            self.apply(def).await?;
        }
        Ok(defs)
    }

    /// Run one definition from a file; errors point at its file and line.
    pub async fn apply(&self, def: &Definition) -> Result<()> {
        let run = async {
            match self.run(&def.statement, def.base_dir()).await? {
                Outcome::Rows(df) => {
                    df.collect().await?;
                }
                Outcome::Done(tag) => {
                    if let Some(name) = &def.creates {
                        info!(target: "weir::sql", "{}: {} {name}", def.location(), tag.to_lowercase());
                    }
                }
                Outcome::Changes(_) => {
                    return Err(WeirError::NotSupported(
                        "SUBSCRIBE streams a view's changes to a client; it has no place in a .sql file"
                            .into(),
                    ));
                }
            }
            Ok::<_, WeirError>(())
        };
        run.await.map_err(|e| {
            WeirError::Definition(format!(
                "{}: {e} [SQLSTATE {}]",
                def.location(),
                e.sqlstate()
            ))
        })
    }

    /// The columns a statement returns, for statements the engine runs itself
    /// (`None`: it returns no rows). Lets extended-protocol clients describe them.
    pub fn result_schema(&self, statement: &Statement) -> Option<SchemaRef> {
        match statement {
            Statement::ShowTables => Some(Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
            ]))),
            Statement::Show(name) => Some(Arc::new(Schema::new(vec![Field::new(
                name,
                DataType::Utf8,
                false,
            )]))),
            Statement::Streaming(s, _) => match s.as_ref() {
                StreamingStatement::Subscribe { name, .. } => {
                    self.catalog.view(name).map(|v| change_schema(&v.schema()))
                }
                s => streaming::result_schema(s),
            },
            Statement::DataFusion(..) | Statement::Postgres(_) | Statement::Accepted(_) => None,
        }
    }

    /// The columns any statement returns, planning ordinary SQL without running it.
    pub async fn plan_schema(&self, statement: &Statement) -> Result<Option<SchemaRef>> {
        Ok(self.prepare(statement.clone()).await?.schema)
    }

    /// Plan a statement without running anything: ordinary SQL into its logical plan
    /// (placeholders `$1`… left in), the engine's own statements kept as they are.
    pub async fn prepare(&self, statement: Statement) -> Result<Prepared> {
        match statement {
            Statement::Postgres(ref text) => {
                let plan = self
                    .ctx
                    .state()
                    .statement_to_plan(parse_postgres(text)?)
                    .await?;
                let schema = command_tag(&plan)
                    .is_none()
                    .then(|| Arc::clone(plan.schema().inner()));
                Ok(Prepared {
                    statement,
                    plan: Some(plan),
                    schema,
                })
            }
            other => Ok(Prepared {
                schema: self.result_schema(&other),
                statement: other,
                plan: None,
            }),
        }
    }

    /// Run a prepared statement, with `parameters` for `$1`… when it has any.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        parameters: Option<Vec<ScalarValue>>,
    ) -> Result<Outcome> {
        let pending = self.before(&prepared.statement);
        let outcome = match (&prepared.plan, parameters) {
            (Some(plan), Some(values)) => {
                self.run_plan(plan.clone().with_param_values(values)?).await
            }
            (Some(plan), None) => self.run_plan(plan.clone()).await,
            (None, _) => self.run(&prepared.statement, None).await,
        }?;
        if let Some(pending) = pending {
            self.after(pending).await?;
        }
        Ok(outcome)
    }

    /// [`Engine::execute`], run to its end on a task of its own when the statement
    /// creates or drops a streaming object: a client that stops waiting (its
    /// `statement_timeout`, a cancel, a closed connection) cannot leave it half done.
    pub async fn execute_whole(
        self: &Arc<Self>,
        statement: &Statement,
        base: Option<&Path>,
    ) -> Result<Outcome> {
        if !changes_the_catalog(statement) {
            return self.execute(statement, base).await;
        }
        let (engine, statement) = (Arc::clone(self), statement.clone());
        let base = base.map(Path::to_path_buf);
        tokio::spawn(async move { engine.execute(&statement, base.as_deref()).await })
            .await
            .map_err(|e| WeirError::Internal(format!("a statement's task: {e}")))?
    }

    /// [`Engine::execute_prepared`], run to its end as [`Engine::execute_whole`] is.
    pub async fn execute_prepared_whole(
        self: &Arc<Self>,
        prepared: &Prepared,
        parameters: Option<Vec<ScalarValue>>,
    ) -> Result<Outcome> {
        if !changes_the_catalog(&prepared.statement) {
            return self.execute_prepared(prepared, parameters).await;
        }
        let (engine, prepared) = (Arc::clone(self), prepared.clone());
        tokio::spawn(async move { engine.execute_prepared(&prepared, parameters).await })
            .await
            .map_err(|e| WeirError::Internal(format!("a statement's task: {e}")))?
    }

    /// Run one statement from a client. `base` is the folder relative locations are read
    /// from. What it creates, drops or writes is kept in the durable catalog.
    pub async fn execute(&self, statement: &Statement, base: Option<&Path>) -> Result<Outcome> {
        let pending = self.before(statement);
        let outcome = self.run(statement, base).await?;
        if let Some(pending) = pending {
            self.after(pending).await?;
        }
        Ok(outcome)
    }

    /// Run one statement, keeping nothing in the durable catalog (`.sql` files, and the
    /// catalog's own objects at start).
    async fn run(&self, statement: &Statement, base: Option<&Path>) -> Result<Outcome> {
        match statement {
            Statement::DataFusion(df, _) => self.execute_datafusion((**df).clone(), base).await,
            Statement::ShowTables => Ok(Outcome::Rows(
                self.ctx
                    .sql(&format!(
                        "SELECT table_name AS name, \
                         CASE table_type WHEN 'BASE TABLE' THEN 'table' WHEN 'VIEW' THEN 'view' \
                         ELSE lower(table_type) END AS kind \
                         FROM information_schema.tables \
                         WHERE table_catalog = '{DATABASE}' AND table_schema = '{SCHEMA}' ORDER BY name"
                    ))
                    .await?,
            )),
            Statement::Show(name) => self.show(name, None),
            Statement::Accepted(tag) => Ok(Outcome::Done(tag.to_string())),
            Statement::Streaming(s, text) => self.execute_streaming(s, text, base).await,
            Statement::Postgres(text) => self.execute_datafusion(parse_postgres(text)?, base).await,
        }
    }

    /// `SHOW name`: `session` is the connection's own value when it has set one.
    pub fn show(&self, name: &str, session: Option<&str>) -> Result<Outcome> {
        let value = match session {
            Some(v) => v.to_string(),
            None => functions::setting(name)
                .ok_or_else(|| WeirError::UnknownSetting(name.to_string()))?
                .to_string(),
        };
        let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec![value]))])
            .map_err(|e| WeirError::Internal(e.to_string()))?;
        Ok(Outcome::Rows(self.ctx.read_batch(batch)?))
    }

    async fn execute_datafusion(
        &self,
        mut statement: DFStatement,
        base: Option<&Path>,
    ) -> Result<Outcome> {
        match &mut statement {
            DFStatement::CreateExternalTable(create) => {
                for location in &mut create.locations {
                    *location = resolve_location(location, base)?;
                }
            }
            DFStatement::CopyTo(copy) => copy.target = resolve_location(&copy.target, base)?,
            _ => {}
        }
        let plan = self.ctx.state().statement_to_plan(statement).await?;
        self.run_plan(plan).await
    }

    /// Run a plan: a command to its end (with its tag), `INSERT`, `UPDATE` and `DELETE`
    /// to their end (their `count` row kept), a query as rows to stream.
    async fn run_plan(&self, plan: LogicalPlan) -> Result<Outcome> {
        let tag = command_tag(&plan);
        let dml = matches!(plan, LogicalPlan::Dml(_));
        let df = self.ctx.execute_logical_plan(plan).await?;
        match tag {
            Some(tag) => {
                df.collect().await?;
                Ok(Outcome::Done(tag))
            }
            None if dml => {
                let schema = Arc::clone(df.schema().inner());
                let batches = df.collect().await?;
                let done = datafusion::catalog::MemTable::try_new(schema, vec![batches])?;
                Ok(Outcome::Rows(self.ctx.read_table(Arc::new(done))?))
            }
            None => Ok(Outcome::Rows(df)),
        }
    }
}

/// Does the statement create, drop or restart a streaming object (work that must not
/// stop half way)?
fn changes_the_catalog(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Streaming(s, _) if matches!(
            s.as_ref(),
            StreamingStatement::CreateSource(_)
                | StreamingStatement::CreateMaterializedView(_)
                | StreamingStatement::CreateSink(_)
                | StreamingStatement::Drop { .. }
                | StreamingStatement::Restart { .. }
        )
    )
}

/// The PostgreSQL command tag of a plan that does not return rows.
fn command_tag(plan: &LogicalPlan) -> Option<String> {
    let tag = match plan {
        LogicalPlan::Ddl(ddl) => match ddl {
            DdlStatement::CreateExternalTable(_) | DdlStatement::CreateMemoryTable(_) => {
                "CREATE TABLE"
            }
            DdlStatement::CreateView(_) => "CREATE VIEW",
            DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA",
            DdlStatement::CreateCatalog(_) => "CREATE DATABASE",
            DdlStatement::CreateIndex(_) => "CREATE INDEX",
            DdlStatement::DropTable(_) => "DROP TABLE",
            DdlStatement::DropView(_) => "DROP VIEW",
            DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
            DdlStatement::CreateFunction(_) => "CREATE FUNCTION",
            DdlStatement::DropFunction(_) => "DROP FUNCTION",
        },
        LogicalPlan::Statement(_) => "SET",
        _ => return None,
    };
    Some(tag.to_string())
}
