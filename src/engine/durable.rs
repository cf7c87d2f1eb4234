//! The engine's side of the durable catalog ([`crate::catalog`]): what a statement run
//! over a port creates, drops or writes, noted before it runs and kept once it has
//! succeeded; and, at start, the kept objects brought back after the `.sql` folder.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::MemTable;
use datafusion::common::TableReference;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Statement as SQLStatement, TableObject};
use tracing::{info, warn};

use super::Engine;
use crate::catalog::{Durable, Entry, Kind};
use crate::error::{Result, WeirError};
use crate::sql::loader::{self, object_name};
use crate::sql::streaming::StreamingStatement;
use crate::sql::{Statement, parse_postgres};

/// What a statement is about to change in the durable catalog, noted before it runs.
pub struct Pending {
    change: Change,
    /// The object it creates existed before it ran (`IF NOT EXISTS` did nothing).
    existed: bool,
}

enum Change {
    Create {
        name: String,
        kind: Kind,
        text: String,
        replace: bool,
    },
    Drop,
    /// Rows written into a table: `Some(name)`, or some table (`UPDATE`, `DELETE`…).
    Write(Option<String>),
}

/// What ordinary SQL changes, from its first word and then its parse.
fn postgres_change(text: &str) -> Option<Change> {
    let first = text.split_whitespace().next().unwrap_or_default();
    if !["CREATE", "DROP", "INSERT", "UPDATE", "DELETE", "TRUNCATE"]
        .iter()
        .any(|w| first.eq_ignore_ascii_case(w))
    {
        return None;
    }
    let DFStatement::Statement(statement) = parse_postgres(text).ok()? else {
        return None;
    };
    let create = |name, kind, replace| Change::Create {
        name,
        kind,
        text: text.to_string(),
        replace,
    };
    match *statement {
        SQLStatement::CreateTable(t) => {
            Some(create(object_name(&t.name), Kind::Table, t.or_replace))
        }
        SQLStatement::CreateView(v) if !v.materialized => {
            Some(create(object_name(&v.name), Kind::View, v.or_replace))
        }
        SQLStatement::Drop { .. } => Some(Change::Drop),
        SQLStatement::Insert(i) => Some(Change::Write(match &i.table {
            TableObject::TableName(name) => Some(object_name(name)),
            _ => None,
        })),
        SQLStatement::Update(_) | SQLStatement::Delete(_) | SQLStatement::Truncate(_) => {
            Some(Change::Write(None))
        }
        _ => None,
    }
}

fn change_of(statement: &Statement) -> Option<Change> {
    let create = |name: &str, kind, text: &str| Change::Create {
        name: name.to_string(),
        kind,
        text: text.to_string(),
        replace: false,
    };
    match statement {
        Statement::Streaming(s, text) => match s.as_ref() {
            StreamingStatement::CreateSource(c) => Some(create(&c.name, Kind::Source, text)),
            StreamingStatement::CreateMaterializedView(c) => {
                Some(create(&c.name, Kind::MaterializedView, text))
            }
            StreamingStatement::CreateSink(c) => Some(create(&c.name, Kind::Sink, text)),
            StreamingStatement::Drop { .. } => Some(Change::Drop),
            _ => None,
        },
        Statement::DataFusion(df, text) => match df.as_ref() {
            DFStatement::CreateExternalTable(c) => Some(Change::Create {
                name: object_name(&c.name),
                kind: Kind::ExternalTable,
                text: text.clone(),
                replace: c.or_replace,
            }),
            _ => None,
        },
        Statement::Postgres(text) => postgres_change(text),
        Statement::ShowTables | Statement::Show(_) | Statement::Accepted(_) => None,
    }
}

/// `batch` in the column types of `schema` (same columns, in order), cast where one
/// differs: rows inserted as text into a string-view column.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                datafusion::arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

impl Engine {
    /// Keep the objects created over the ports in `durable` from now on.
    pub fn set_durable(&self, durable: Arc<Durable>) {
        let _ = self.durable.set(durable);
    }

    /// Whether a table, view, source or sink is called `name`.
    fn object_exists(&self, name: &str) -> bool {
        self.exists(name) || self.catalog.sink(name).is_some()
    }

    /// What `statement` will change in the durable catalog; `None` when nothing (no
    /// durable catalog, or a statement that creates, drops and writes nothing).
    pub fn before(&self, statement: &Statement) -> Option<Pending> {
        self.durable.get()?;
        self.pending(change_of(statement)?)
    }

    /// [`Engine::before`] for ordinary SQL, from its text.
    pub fn before_sql(&self, text: &str) -> Option<Pending> {
        self.durable.get()?;
        self.pending(postgres_change(text)?)
    }

    fn pending(&self, change: Change) -> Option<Pending> {
        let existed = match &change {
            Change::Create { name, .. } => self.object_exists(name),
            _ => false,
        };
        Some(Pending { change, existed })
    }

    /// The statement noted by [`Engine::before`] succeeded: keep what it created, forget
    /// what it dropped, save the rows it wrote. An error here means the statement took
    /// effect but will not survive a restart.
    pub async fn after(&self, pending: Pending) -> Result<()> {
        let Some(durable) = self.durable.get() else {
            return Ok(());
        };
        let kept = match pending.change {
            Change::Create {
                name,
                kind,
                text,
                replace,
            } => {
                if (pending.existed && !replace) || !self.object_exists(&name) {
                    return Ok(());
                }
                durable.created(Entry {
                    name: name.clone(),
                    kind,
                    text,
                    base: std::env::current_dir().ok(),
                })?;
                if kind == Kind::Table && !durable.from_files(&name) {
                    self.save_table(durable, &name).await?;
                }
                Ok(())
            }
            Change::Drop => durable.dropped(|e| self.object_exists(&e.name)),
            Change::Write(Some(table)) => match durable.entry(&table) {
                Some(e) if e.kind == Kind::Table => self.save_table(durable, &table).await,
                _ => Ok(()),
            },
            Change::Write(None) => self.save_tables().await,
        };
        kept.map_err(|e| {
            WeirError::Io(std::io::Error::other(format!(
                "the statement took effect, but the catalog in {} could not be saved, so it will not survive a restart: {e}",
                durable.path().display()
            )))
        })
    }

    /// Save the rows of every table kept in the durable catalog (at shutdown).
    pub async fn save_tables(&self) -> Result<()> {
        let Some(durable) = self.durable.get() else {
            return Ok(());
        };
        for e in durable.entries() {
            if e.kind == Kind::Table && self.exists(&e.name) {
                self.save_table(durable, &e.name).await?;
            }
        }
        Ok(())
    }

    async fn save_table(&self, durable: &Durable, name: &str) -> Result<()> {
        durable
            .save_table(name, || async {
                let provider = self
                    .ctx
                    .table_provider(TableReference::bare(name.to_string()))
                    .await?;
                let schema = provider.schema();
                let batches = self.ctx.read_table(provider)?.collect().await?;
                // Rows inserted with parameters can hold a column in another type than
                // the table's (text for a `VARCHAR` kept as a string view): the file
                // holds them in the table's types.
                let batches = batches
                    .iter()
                    .map(|b| conform(b, &schema))
                    .collect::<Result<Vec<_>>>()?;
                Ok((schema, batches))
            })
            .await
    }

    /// Bring back the objects kept in the durable catalog, once the `.sql` folder (which
    /// defined `file_names`) has been applied: tables from their saved rows, the others
    /// by running their statements again in dependency order. An object that cannot be
    /// brought back stops the start, as a `.sql` file's would.
    pub async fn restore_catalog(&self, file_names: Vec<String>) -> Result<usize> {
        let Some(durable) = self.durable.get() else {
            return Ok(0);
        };
        for e in durable.set_file_names(file_names)? {
            warn!(
                "{} was created over a port and is now defined by the .sql folder: the file's definition is used",
                e.name
            );
        }
        let entries = durable.entries();
        let failed = |e: &Entry, err: WeirError| {
            WeirError::Definition(format!(
                "cannot bring back \"{}\" kept in {}: {err} [SQLSTATE {}]; fix the cause, or remove the object from that file",
                e.name,
                durable.path().display(),
                err.sqlstate()
            ))
        };
        for e in entries.iter().filter(|e| e.kind == Kind::Table) {
            let (schema, batches) = durable.load_table(&e.name).map_err(|err| failed(e, err))?;
            let table = MemTable::try_new(schema, vec![batches])?;
            self.ctx
                .register_table(TableReference::bare(e.name.clone()), Arc::new(table))?;
        }
        let mut defs = Vec::new();
        for (i, e) in entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind != Kind::Table)
        {
            let mut read =
                loader::read_script(&durable.path(), &e.text).map_err(|err| failed(e, err))?;
            if read.len() != 1 {
                return Err(failed(
                    e,
                    WeirError::Internal(format!("{} statements where one was kept", read.len())),
                ));
            }
            let mut def = read.remove(0);
            def.line = i as u64 + 1;
            defs.push(def);
        }
        let defs = loader::order(defs.clone(), &|n| self.object_exists(n)).unwrap_or(defs);
        let mut orphans = Vec::new();
        for def in &defs {
            let e = &entries[def.line as usize - 1];
            // A plain view or a table dropped under what reads it leaves an object
            // that cannot be planned any more: it goes, and says so.
            if let Some(missing) = def.reads.iter().find(|r| !self.object_exists(r)) {
                warn!(
                    "\"{}\" reads \"{missing}\", which no longer exists: it is not brought back",
                    e.name
                );
                orphans.push(e.name.clone());
                continue;
            }
            self.run(&def.statement, e.base.as_deref())
                .await
                .map_err(|err| failed(e, err))?;
        }
        if !orphans.is_empty() {
            durable.dropped(|e| !orphans.contains(&e.name))?;
        }
        if !entries.is_empty() {
            info!(
                "brought back {} objects created over the ports from {}",
                entries.len(),
                durable.path().display()
            );
        }
        Ok(entries.len())
    }
}
