//! The engine's side of streaming statements: `CREATE SOURCE`, `CREATE MATERIALIZED
//! VIEW`, `FLUSH`, `SHOW SOURCES | MATERIALIZED VIEWS | SINKS` and `DROP`, run against
//! the streaming catalog (`crate::view::Streams`) and answered like any statement.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Engine, Outcome};
use crate::error::Result;
use crate::sql::streaming::{Emit, ObjectKind, StreamingStatement};

fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

const SOURCE_COLUMNS: &[&str] = &["name", "connector", "watermark", "definition"];
const VIEW_COLUMNS: &[&str] = &["name", "source", "emit", "status", "definition"];
const SINK_COLUMNS: &[&str] = &["name", "connector"];

/// The columns `SHOW …` returns; `None` for statements without rows.
pub(super) fn result_schema(statement: &StreamingStatement) -> Option<SchemaRef> {
    match statement {
        StreamingStatement::Show(ObjectKind::Source) => Some(text_schema(SOURCE_COLUMNS)),
        StreamingStatement::Show(ObjectKind::MaterializedView) => Some(text_schema(VIEW_COLUMNS)),
        StreamingStatement::Show(ObjectKind::Sink) => Some(text_schema(SINK_COLUMNS)),
        _ => None,
    }
}

fn rows(columns: &[&str], rows: Vec<Vec<String>>) -> Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(text_schema(columns), arrays)?)
}

impl Engine {
    pub(super) async fn execute_streaming(
        &self,
        statement: &StreamingStatement,
        text: &str,
    ) -> Result<Outcome> {
        let streams = &self.streams;
        let ctx = &self.ctx;
        match statement {
            StreamingStatement::CreateSource(create) => {
                streams
                    .create_source(ctx, create, text, self.exists(&create.name))
                    .await?;
                Ok(Outcome::Done("CREATE SOURCE".into()))
            }
            StreamingStatement::CreateMaterializedView(create) => {
                streams
                    .create_view(ctx, create, self.exists(&create.name))
                    .await?;
                Ok(Outcome::Done("CREATE MATERIALIZED VIEW".into()))
            }
            StreamingStatement::Flush => {
                streams.flush().await?;
                Ok(Outcome::Done("FLUSH".into()))
            }
            StreamingStatement::Show(kind) => {
                let batch = match kind {
                    ObjectKind::Source => rows(
                        SOURCE_COLUMNS,
                        streams
                            .sources()
                            .iter()
                            .map(|s| {
                                vec![
                                    s.name.clone(),
                                    s.connector_name().to_string(),
                                    s.watermark_text(),
                                    s.definition.clone(),
                                ]
                            })
                            .collect(),
                    )?,
                    ObjectKind::MaterializedView => rows(
                        VIEW_COLUMNS,
                        streams
                            .views()
                            .iter()
                            .map(|v| {
                                vec![
                                    v.name.clone(),
                                    v.plan.source.name.clone(),
                                    match v.emit {
                                        Emit::OnUpdate => "on update".to_string(),
                                        Emit::OnWindowClose => "on window close".to_string(),
                                    },
                                    match v.failure() {
                                        None => "running".to_string(),
                                        Some(f) => format!("stopped: {f}"),
                                    },
                                    v.definition.clone(),
                                ]
                            })
                            .collect(),
                    )?,
                    ObjectKind::Sink => rows(SINK_COLUMNS, vec![])?,
                };
                Ok(Outcome::Rows(ctx.read_batch(batch)?))
            }
            StreamingStatement::Drop {
                kind,
                name,
                if_exists,
                cascade,
            } => {
                let tag = match kind {
                    ObjectKind::Source => {
                        streams.drop_source(ctx, name, *if_exists, *cascade)?;
                        "DROP SOURCE"
                    }
                    ObjectKind::MaterializedView => {
                        streams.drop_view(ctx, name, *if_exists, *cascade)?;
                        "DROP MATERIALIZED VIEW"
                    }
                    ObjectKind::Sink => {
                        if !*if_exists {
                            return Err(crate::error::WeirError::UndefinedTable(name.clone()));
                        }
                        "DROP SINK"
                    }
                };
                Ok(Outcome::Done(tag.into()))
            }
        }
    }
}
