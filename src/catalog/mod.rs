//! The catalog: every source, materialized view and sink by name — their DDL, the
//! dependencies between them, `FLUSH`, `DROP`, the threads that run them and checkpoint
//! orchestration — and the durable catalog that brings objects created over the ports
//! back at restart. Views, sinks and connectors below know nothing of one another.

mod checkpoint;
mod durable;
mod faults;
mod sinks;
#[cfg(test)]
mod tests;
pub mod threads;

pub use checkpoint::{checkpointed, run_checkpoints};
pub use durable::{Durable, Entry, Kind};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use tokio::sync::mpsc;

use crate::checkpoint::{Checkpoints, Restored, SinkMeta, age_secs};
use crate::connector::{SourceConnector, source_connector};
use crate::error::{Result, WeirError};
use crate::locks::{Unpoisoned, UnpoisonedRw};
use crate::sql::parse_postgres;
use crate::sql::streaming::{CreateMaterializedView, CreateSource, Emit};
use crate::view::pipeline::{self, ViewCommand, ViewStart};
use crate::view::plan;
use crate::view::source::{
    ConnectorSpec, DEFAULT_MAX_FUTURE, EventTime, SourceDef, SourceTable, Sources, WindowFunction,
    interval_nanos, parse_duration,
};
use crate::view::state::{View, ViewTable};
use crate::view::{Views, one_line, retention};
use crate::window::watermark::DEFAULT_IDLE_TIMEOUT;

/// Sources, materialized views and sinks by name.
#[derive(Default)]
pub struct Catalog {
    sources: Sources,
    views: Views,
    /// The checkpoint read at start, until the `.sql` folder has been applied: the views
    /// it defines start from it.
    restored: Mutex<Option<Arc<Restored>>>,
    /// Where checkpoints go (a server with a data directory).
    checkpoints: OnceLock<Arc<Checkpoints>>,
    /// Views that started from the checkpoint read at start.
    resumed: AtomicUsize,
    /// Sinks by name.
    sinks: crate::sink::Sinks,
    /// Each sink's last meta, kept for a checkpoint the sink cannot answer (it is
    /// retrying a write): it then resumes from there.
    last_sinks: Mutex<BTreeMap<String, SinkMeta>>,
    /// `weir check`: statements are validated, nothing is written anywhere.
    checking: AtomicBool,
}

impl Catalog {
    /// Register `TUMBLE` and `HOP` on `ctx`.
    pub fn install(&self, ctx: &SessionContext) {
        faults::install(ctx);
        for (name, hop) in [("tumble", false), ("hop", true)] {
            ctx.register_udtf(
                name,
                Arc::new(WindowFunction {
                    sources: Arc::clone(&self.sources),
                    views: Arc::clone(&self.views),
                    hop,
                }),
            );
        }
    }

    pub fn sources(&self) -> Vec<Arc<SourceDef>> {
        self.sources.read_locked().values().cloned().collect()
    }

    /// The source `name`.
    pub fn source(&self, name: &str) -> Option<Arc<SourceDef>> {
        self.sources.read_locked().get(name).cloned()
    }

    /// Validate statements without running anything (`weir check`): sources do not ask
    /// their brokers, views are planned but their pipelines do not start, sinks do not
    /// open their destinations.
    pub fn set_checking(&self) {
        self.checking.store(true, Ordering::Relaxed);
    }

    pub(crate) fn checking(&self) -> bool {
        self.checking.load(Ordering::Relaxed)
    }

    /// Whether checkpoints are taken (a server with a data directory).
    pub(crate) fn checkpointing(&self) -> bool {
        self.checkpoints.get().is_some()
    }

    /// The checkpoint read at start, while the `.sql` folder is being applied.
    pub(crate) fn restored_checkpoint(&self) -> Option<Arc<Restored>> {
        self.restored.locked().clone()
    }

    pub fn views(&self) -> Vec<Arc<View>> {
        self.views.read_locked().values().cloned().collect()
    }

    /// Let the source `name` read through `supplied` from now on (views created after).
    pub fn supply(
        &self,
        ctx: &SessionContext,
        name: &str,
        supplied: Arc<dyn SourceConnector>,
    ) -> Result<()> {
        let mut sources = self.sources.write_locked();
        let def = sources
            .get(name)
            .ok_or_else(|| WeirError::Internal(format!("no source \"{name}\"")))?;
        let replaced = Arc::new(SourceDef {
            connector: ConnectorSpec::Connector(supplied),
            ..def.as_ref().clone()
        });
        ctx.deregister_table(name)?;
        ctx.register_table(
            name,
            Arc::new(SourceTable {
                def: Arc::clone(&replaced),
            }),
        )?;
        sources.insert(name.to_string(), replaced);
        Ok(())
    }

    /// Take checkpoints into `checkpoints`; views created until [`Catalog::restored`]
    /// start from `restored` when it holds them unchanged.
    pub fn set_checkpoints(&self, checkpoints: Arc<Checkpoints>, restored: Option<Restored>) {
        let _ = self.checkpoints.set(checkpoints);
        if let Some(r) = &restored {
            *self.last_sinks.locked() = r.sinks().clone();
        }
        *self.restored.locked() = restored.map(Arc::new);
    }

    /// The views are defined: say which views of the checkpoint nothing defines any more,
    /// and start every view created from now on afresh. `true` when the views do not all
    /// start from the checkpoint on disk (there is none, or some view starts afresh or
    /// is rebuilt, or one went): a checkpoint is then due before they read far.
    pub fn restored(&self) -> bool {
        let Some(restored) = self.restored.locked().take() else {
            return true;
        };
        for meta in restored.views() {
            if !self.is_view(&meta.name) {
                tracing::warn!(
                    "checkpoint {} holds materialized view {}, which no .sql file defines; \
                     its state is not kept",
                    restored.sequence,
                    meta.name
                );
            }
        }
        let resumed = self.resumed.load(Ordering::Relaxed);
        let checkpointed_now = self.views().iter().filter(|v| checkpointed(v)).count();
        resumed != restored.views().count() || resumed != checkpointed_now
    }

    /// How the pipeline of `view` begins: from the checkpoint read at start when it holds
    /// the view as it is now; rebuilt from where it began reading when its definition
    /// changed; else afresh.
    fn begin(&self, view: &View) -> ViewStart {
        let restored = self.restored.locked().clone();
        let Some(restored) = restored else {
            return ViewStart::Fresh;
        };
        let Some(meta) = restored.view(&view.name) else {
            return ViewStart::Fresh;
        };
        if !checkpointed(view) {
            return ViewStart::Fresh;
        }
        if meta.sources != view.source_definitions() {
            tracing::info!(
                "materialized view {} reads sources defined differently than in checkpoint {}: \
                 it starts from their startup mode",
                view.name,
                restored.sequence
            );
            return ViewStart::Fresh;
        }
        if meta.definition != view.definition {
            tracing::info!(
                "materialized view {} changed since checkpoint {}: it is rebuilt from its \
                 sources, from offsets {:?}",
                view.name,
                restored.sequence,
                meta.origin
            );
            return ViewStart::Rebuild(meta.origin.clone());
        }
        tracing::info!(
            "materialized view {} restored from checkpoint {} (taken {:.1} s ago): {} rows of \
             state, {} records read so far, resuming at offsets {:?}",
            view.name,
            restored.sequence,
            age_secs(restored.taken_at),
            meta.rows,
            meta.counters.rows_in,
            meta.positions
        );
        ViewStart::Restore(Arc::clone(&restored), meta.clone())
    }

    /// The materialized view `name`.
    pub fn view(&self, name: &str) -> Option<Arc<View>> {
        self.views.read_locked().get(name).cloned()
    }

    pub fn is_view(&self, name: &str) -> bool {
        self.views.read_locked().contains_key(name)
    }

    /// `CREATE SOURCE`; `false` when it existed and `IF NOT EXISTS` was given.
    pub async fn create_source(
        &self,
        ctx: &SessionContext,
        create: &CreateSource,
        text: &str,
        exists: bool,
    ) -> Result<bool> {
        if exists {
            return name_taken(&create.name, create.if_not_exists);
        }
        let options = &create.options;
        let declared = if create.columns.is_empty() {
            None
        } else {
            Some(column_schema(ctx, create).await?)
        };
        // `weir check` reads the options without asking a broker.
        let (connector, schema) =
            source_connector(&create.name, declared, options, self.checking()).await?;
        let connector = ConnectorSpec::Connector(connector);
        let event_time = match &create.watermark {
            None => None,
            Some(w) => {
                let column = schema.index_of(&w.column).map_err(|_| {
                    WeirError::InvalidParameter(format!(
                        "WATERMARK FOR \"{}\": source \"{}\" has no such column; its columns: {}",
                        w.column,
                        create.name,
                        column_list(&schema)
                    ))
                })?;
                let data_type = schema.field(column).data_type();
                if !matches!(data_type, DataType::Timestamp(_, _)) {
                    return Err(WeirError::InvalidParameter(format!(
                        "WATERMARK FOR \"{}\": the column is {data_type}, event time needs a TIMESTAMP",
                        w.column
                    )));
                }
                let delay = match &w.delay {
                    None => 0,
                    Some(expr) => interval_of(ctx, &expr.to_string()).await?,
                };
                let max_future = match options.get("watermark.max_future") {
                    None => Some(DEFAULT_MAX_FUTURE),
                    Some(v) if v.trim().eq_ignore_ascii_case("none") => None,
                    Some(v) => Some(
                        parse_duration(v)
                            .and_then(|d| i64::try_from(d.as_nanos()).ok())
                            .ok_or_else(|| {
                                WeirError::InvalidParameter(format!(
                                    "option 'watermark.max_future' must be an interval such as \
                                     '1 hour' or '1d', or 'none'; got '{v}'"
                                ))
                            })?,
                    ),
                };
                Some(EventTime {
                    column,
                    delay,
                    max_future,
                })
            }
        };
        if event_time.is_none() && options.get("watermark.max_future").is_some() {
            return Err(WeirError::InvalidParameter(format!(
                "option 'watermark.max_future' needs an event time: \
                 WATERMARK FOR column AS column - INTERVAL … in source \"{}\"",
                create.name
            )));
        }
        let idle_timeout = match options.get("watermark.idle_timeout") {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(v) => parse_duration(v).ok_or_else(|| {
                WeirError::InvalidParameter(format!(
                    "option 'watermark.idle_timeout' must be a duration such as '10s' or '500ms', got '{v}'"
                ))
            })?,
        };
        let def = Arc::new(SourceDef {
            name: create.name.clone(),
            schema,
            event_time,
            idle_timeout,
            connector,
            options: options.clone(),
            definition: one_line(text),
        });
        ctx.register_table(
            create.name.as_str(),
            Arc::new(SourceTable {
                def: Arc::clone(&def),
            }),
        )?;
        self.sources.write_locked().insert(create.name.clone(), def);
        Ok(true)
    }

    /// `CREATE MATERIALIZED VIEW`; `false` when it existed and `IF NOT EXISTS` was given.
    pub async fn create_view(
        &self,
        ctx: &SessionContext,
        create: &CreateMaterializedView,
        exists: bool,
    ) -> Result<bool> {
        if exists {
            return name_taken(&create.name, create.if_not_exists);
        }
        if let Some(key) = create.options.0.keys().find(|k| *k != "retention") {
            return Err(WeirError::InvalidParameter(format!(
                "unknown option '{key}' for a materialized view; valid options: retention"
            )));
        }
        let query = create.query.clone();
        let state = ctx.state();
        let plan = state.statement_to_plan(parse_postgres(&query)?).await?;
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})?;
        let mut compiled = plan::compile(&plan, &state).await?;
        compiled.schema = pg_names(&query, compiled.schema);
        let emit_text = match create.emit {
            Emit::OnUpdate => "",
            Emit::OnWindowClose => " EMIT ON WINDOW CLOSE",
        };
        let windowed = compiled.operator.window().is_some();
        if create.emit == Emit::OnWindowClose && !windowed {
            return Err(WeirError::InvalidParameter(format!(
                "EMIT ON WINDOW CLOSE needs a window: group \"{}\" by window_start or window_end of TUMBLE(…) or HOP(…)",
                create.name
            )));
        }
        let retention = retention(create, &compiled)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let view = Arc::new(View::new(
            create.name.clone(),
            format!("{}{emit_text}", one_line(&create.written)),
            create.emit,
            compiled,
            retention,
            tx,
        ));
        let begin = self.begin(&view);
        if matches!(begin, ViewStart::Restore(..)) {
            self.resumed.fetch_add(1, Ordering::Relaxed);
            view.resumed.store(true, Ordering::Relaxed);
        }
        // `weir check` plans the view and registers it for the views that read it, but
        // runs nothing.
        if !self.checking() {
            let run = Arc::clone(&view);
            let checkpoints = self
                .checkpoints
                .get()
                .filter(|_| checkpointed(&view))
                .cloned();
            threads::start(format!("view-{}", view.name), move |ready| {
                pipeline::run(run, rx, begin, ready, checkpoints)
            })
            .await?;
        }
        if let Err(e) = ctx.register_table(
            create.name.as_str(),
            Arc::new(ViewTable {
                view: Arc::clone(&view),
            }),
        ) {
            let _ = view.commands.send(ViewCommand::Stop);
            return Err(e.into());
        }
        self.views.write_locked().insert(create.name.clone(), view);
        Ok(true)
    }

    /// `FLUSH`: every view reflects everything that was in its source when it began.
    /// Views that read views wait for those first, so that their rows are there; then
    /// every sink has written what it reads.
    pub async fn flush(&self) -> Result<()> {
        let views = self.views();
        let mut errors = Vec::new();
        let mut level = 0;
        loop {
            let at: Vec<Arc<View>> = views
                .iter()
                .filter(|v| depth(v) == level)
                .cloned()
                .collect();
            if at.is_empty() {
                break;
            }
            errors.extend(flush_all(at).await);
            level += 1;
        }
        errors.extend(self.flush_sinks().await);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(WeirError::Stopped(errors.join("; ")))
        }
    }

    /// `ALTER MATERIALIZED VIEW name RESTART`: a failed view starts again from its last
    /// checkpointed state (with a fresh count of automatic restarts); a running one is
    /// left as it is.
    pub async fn restart_view(&self, name: &str) -> Result<()> {
        let view = self
            .view(name)
            .ok_or_else(|| WeirError::UndefinedTable(name.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        view.commands.send(ViewCommand::Restart(tx)).map_err(|_| {
            WeirError::Stopped(format!("materialized view \"{name}\" is not running"))
        })?;
        rx.await.map_err(|_| {
            WeirError::Stopped(format!(
                "materialized view \"{name}\" stopped while restarting"
            ))
        })?
    }

    /// `DROP SOURCE`; `false` when it did not exist and `IF EXISTS` was given.
    pub fn drop_source(
        &self,
        ctx: &SessionContext,
        name: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<bool> {
        if !self.sources.read_locked().contains_key(name) {
            return missing(name, if_exists);
        }
        self.drop_dependents(ctx, "SOURCE", "source", name, cascade)?;
        ctx.deregister_table(name)?;
        self.sources.write_locked().remove(name);
        Ok(true)
    }

    /// Drop the views that read `name` (with `CASCADE`), or refuse naming them (2BP01).
    fn drop_dependents(
        &self,
        ctx: &SessionContext,
        keyword: &str,
        kind: &str,
        name: &str,
        cascade: bool,
    ) -> Result<()> {
        let dependents: Vec<String> = self
            .views()
            .iter()
            .filter(|v| v.reads(name))
            .map(|v| v.name.clone())
            .collect();
        let sinks = self.sinks_reading(name);
        if (!dependents.is_empty() || !sinks.is_empty()) && !cascade {
            let quoted = |names: &[String]| {
                names
                    .iter()
                    .map(|d| format!("\"{d}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut what = Vec::new();
            if !dependents.is_empty() {
                what.push(format!("materialized view {}", quoted(&dependents)));
            }
            if !sinks.is_empty() {
                what.push(format!("sink {}", quoted(&sinks)));
            }
            return Err(WeirError::DependentObjects(format!(
                "cannot drop {kind} \"{name}\" because {} depends on it; \
                 use DROP {keyword} {name} CASCADE to drop them too",
                what.join(" and ")
            )));
        }
        for sink in &sinks {
            self.drop_sink(sink, true)?;
        }
        for view in &dependents {
            self.drop_view(ctx, view, true, true)?;
        }
        Ok(())
    }

    /// `DROP MATERIALIZED VIEW`; `false` when it did not exist and `IF EXISTS` was given.
    pub fn drop_view(
        &self,
        ctx: &SessionContext,
        name: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<bool> {
        if !self.is_view(name) {
            return missing(name, if_exists);
        }
        self.drop_dependents(ctx, "MATERIALIZED VIEW", "materialized view", name, cascade)?;
        let Some(view) = self.views.write_locked().remove(name) else {
            return Ok(false);
        };
        let _ = view.commands.send(ViewCommand::Stop);
        view.dropped();
        ctx.deregister_table(name)?;
        Ok(true)
    }
}

/// How many views lie between `view` and a source.
fn depth(view: &View) -> usize {
    view.sources()
        .iter()
        .map(|s| match &s.connector {
            ConnectorSpec::View(up) => 1 + depth(up),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}

/// Flush `views` together; the errors of those that failed.
async fn flush_all(views: Vec<Arc<View>>) -> Vec<String> {
    let mut waits = Vec::new();
    for view in views {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if view.commands.send(ViewCommand::Flush(tx)).is_err() {
            continue;
        }
        waits.push((view, rx));
    }
    let mut errors = Vec::new();
    for (view, rx) in waits {
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => {
                if let Some(f) = view.failure() {
                    errors.push(format!("materialized view \"{}\" failed: {f}", view.name));
                }
            }
        }
    }
    errors
}

/// `DROP` of a name that does not exist: nothing to do with `IF EXISTS`, an error otherwise.
fn missing(name: &str, if_exists: bool) -> Result<bool> {
    if if_exists {
        Ok(false)
    } else {
        Err(WeirError::UndefinedTable(name.to_string()))
    }
}

/// `CREATE` of a name that exists: nothing to do with `IF NOT EXISTS`, an error otherwise.
fn name_taken(name: &str, if_not_exists: bool) -> Result<bool> {
    if if_not_exists {
        Ok(false)
    } else {
        Err(WeirError::DuplicateTable(name.to_string()))
    }
}

fn column_list(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Arrow schema of `CREATE SOURCE`'s column list, with DataFusion's SQL types.
async fn column_schema(ctx: &SessionContext, create: &CreateSource) -> Result<SchemaRef> {
    let columns: Vec<String> = create.columns.iter().map(|c| c.to_string()).collect();
    let sql = format!("CREATE TABLE weir_columns ({})", columns.join(", "));
    let plan = ctx.state().create_logical_plan(&sql).await.map_err(|e| {
        WeirError::InvalidParameter(format!(
            "columns of source \"{}\": {}",
            create.name,
            WeirError::from(e)
        ))
    })?;
    match plan {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(t)) => {
            Ok(Arc::clone(t.input.schema().inner()))
        }
        _ => Err(WeirError::Internal(
            "column list did not plan as a table".into(),
        )),
    }
}

/// Nanoseconds of an interval expression such as `INTERVAL '5' SECOND`.
async fn interval_of(ctx: &SessionContext, expr: &str) -> Result<i64> {
    let batches = ctx.sql(&format!("SELECT {expr}")).await?.collect().await?;
    let value = batches
        .first()
        .filter(|b| b.num_rows() == 1)
        .map(|b| ScalarValue::try_from_array(b.column(0), 0))
        .transpose()?;
    value
        .as_ref()
        .and_then(interval_nanos)
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            WeirError::InvalidParameter(format!(
                "watermark delay must be an interval of days or less, such as INTERVAL '5' SECOND; got {expr}"
            ))
        })
}

/// PostgreSQL's names for unaliased columns (`count(*)` → `count`).
fn pg_names(query: &str, schema: SchemaRef) -> SchemaRef {
    let Some(names) = crate::sql::names::output_names(query) else {
        return schema;
    };
    if names.len() != schema.fields().len() {
        return schema;
    }
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| match n {
            Some(n) => f.as_ref().clone().with_name(n),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new(fields))
}
