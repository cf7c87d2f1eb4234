//! The engine's side of streaming statements: `CREATE SOURCE`, `CREATE MATERIALIZED
//! VIEW`, `FLUSH`, `SHOW SOURCES | MATERIALIZED VIEWS | SINKS`, `DROP` and `SUBSCRIBE`, run against
//! the streaming catalog (`crate::catalog::Catalog`) and answered like any statement.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::{Engine, Outcome};
use crate::engine::system::{SinkRow, ViewRow, source_rows};
use crate::error::{Result, WeirError};
use crate::sql::streaming::{CreateSink, ObjectKind, StreamingStatement};

fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

const SOURCE_COLUMNS: &[&str] = &[
    "name",
    "connector",
    "watermark",
    "definition",
    "views",
    "rows_in",
    "decode_errors",
    "late_rows",
    "event_time",
];
const VIEW_COLUMNS: &[&str] = &[
    "name",
    "source",
    "emit",
    "status",
    "definition",
    "rows_in",
    "late_rows",
    "watermark",
];
const SINK_COLUMNS: &[&str] = &[
    "name",
    "connector",
    "from",
    "delivery",
    "status",
    "definition",
    "rows_written",
    "last_commit",
    "errors",
];

/// The columns `SHOW …` returns; `None` for statements without rows.
pub(super) fn result_schema(statement: &StreamingStatement) -> Option<SchemaRef> {
    match statement {
        StreamingStatement::Show(ObjectKind::Source) => Some(text_schema(SOURCE_COLUMNS)),
        StreamingStatement::Show(ObjectKind::MaterializedView) => Some(text_schema(VIEW_COLUMNS)),
        StreamingStatement::Show(ObjectKind::Sink) => Some(text_schema(SINK_COLUMNS)),
        _ => None,
    }
}

/// Microseconds since the epoch as `2026-01-01 10:00:14`.
pub(crate) fn micros_text(micros: Option<i64>) -> Option<String> {
    micros
        .and_then(datafusion::arrow::temporal_conversions::timestamp_us_to_datetime)
        .map(|t| t.to_string())
}

fn rows(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>(),
            )) as ArrayRef
        })
        .collect();
    Ok(RecordBatch::try_new(text_schema(columns), arrays)?)
}

/// A sink's relative `path` taken from the `.sql` file's folder, as table locations are.
fn located(create: &CreateSink, base: Option<&Path>) -> CreateSink {
    let mut create = create.clone();
    if let (Some(base), Some(path)) = (base, create.options.0.get_mut("path"))
        && !path.contains(':')
        && Path::new(path.as_str()).is_relative()
    {
        *path = base.join(path.as_str()).to_string_lossy().into_owned();
    }
    create
}

impl Engine {
    pub(super) async fn execute_streaming(
        &self,
        statement: &StreamingStatement,
        text: &str,
        base: Option<&Path>,
    ) -> Result<Outcome> {
        let catalog = &self.catalog;
        let ctx = &self.ctx;
        match statement {
            StreamingStatement::CreateSource(create) => {
                catalog
                    .create_source(ctx, create, text, self.exists(&create.name))
                    .await?;
                Ok(Outcome::Done("CREATE SOURCE".into()))
            }
            StreamingStatement::CreateMaterializedView(create) => {
                catalog
                    .create_view(ctx, create, self.exists(&create.name))
                    .await?;
                Ok(Outcome::Done("CREATE MATERIALIZED VIEW".into()))
            }
            StreamingStatement::CreateSink(create) => {
                catalog
                    .create_sink(ctx, &located(create, base), text)
                    .await?;
                Ok(Outcome::Done("CREATE SINK".into()))
            }
            StreamingStatement::Flush => {
                catalog.flush().await?;
                Ok(Outcome::Done("FLUSH".into()))
            }
            StreamingStatement::Checkpoint => {
                catalog.checkpoint().await?;
                Ok(Outcome::Done("CHECKPOINT".into()))
            }
            StreamingStatement::Subscribe { name, snapshot } => match catalog.view(name) {
                Some(view) => Ok(Outcome::Changes(view.subscribe_changes(*snapshot, true)?)),
                None if self.exists(name) => Err(WeirError::NotSupported(format!(
                    "SUBSCRIBE follows materialized views, and \"{name}\" is not one; \
                     create a materialized view over it and subscribe to that"
                ))),
                None => Err(WeirError::UndefinedTable(name.clone())),
            },
            StreamingStatement::Show(kind) => {
                let batch = match kind {
                    ObjectKind::Source => rows(
                        SOURCE_COLUMNS,
                        catalog
                            .sources()
                            .iter()
                            .zip(source_rows(catalog))
                            .map(|(s, r)| {
                                vec![
                                    Some(s.name.clone()),
                                    Some(s.connector_name().to_string()),
                                    Some(s.watermark_text()),
                                    Some(s.definition.clone()),
                                    Some(r.views.to_string()),
                                    Some(r.rows_in.to_string()),
                                    Some(r.decode_errors.to_string()),
                                    Some(r.late_rows.to_string()),
                                    micros_text(r.watermark),
                                ]
                            })
                            .collect(),
                    )?,
                    ObjectKind::MaterializedView => rows(
                        VIEW_COLUMNS,
                        catalog
                            .views()
                            .iter()
                            .map(|v| {
                                let r = ViewRow::of(v);
                                vec![
                                    Some(r.name),
                                    Some(r.source),
                                    Some(r.emit.to_string()),
                                    Some(match &r.status_detail {
                                        Some(d) => format!("{}: {d}", r.status),
                                        None => r.status.to_string(),
                                    }),
                                    Some(v.definition.clone()),
                                    Some(r.rows_in.to_string()),
                                    Some(r.late_rows.to_string()),
                                    micros_text(r.watermark),
                                ]
                            })
                            .collect(),
                    )?,
                    ObjectKind::Sink => rows(
                        SINK_COLUMNS,
                        catalog
                            .all_sinks()
                            .iter()
                            .map(|s| {
                                let r = SinkRow::of(s);
                                vec![
                                    Some(r.name),
                                    Some(r.connector.to_string()),
                                    Some(r.from),
                                    Some(r.delivery.to_string()),
                                    Some(match &r.status_detail {
                                        Some(d) => format!("{}: {d}", r.status),
                                        None => r.status.to_string(),
                                    }),
                                    Some(s.definition.clone()),
                                    Some(r.rows_written.to_string()),
                                    micros_text(r.last_commit),
                                    Some(r.errors.to_string()),
                                ]
                            })
                            .collect(),
                    )?,
                };
                Ok(Outcome::Rows(ctx.read_batch(batch)?))
            }
            StreamingStatement::Restart { kind, name } => {
                let tag = match kind {
                    ObjectKind::MaterializedView => {
                        catalog.restart_view(name).await?;
                        "ALTER MATERIALIZED VIEW"
                    }
                    ObjectKind::Sink => {
                        catalog.restart_sink(name).await?;
                        "ALTER SINK"
                    }
                    ObjectKind::Source => {
                        return Err(WeirError::NotSupported("ALTER SOURCE".into()));
                    }
                };
                Ok(Outcome::Done(tag.into()))
            }
            StreamingStatement::Drop {
                kind,
                name,
                if_exists,
                cascade,
            } => {
                let tag = match kind {
                    ObjectKind::Source => {
                        catalog.drop_source(ctx, name, *if_exists, *cascade)?;
                        "DROP SOURCE"
                    }
                    ObjectKind::MaterializedView => {
                        catalog.drop_view(ctx, name, *if_exists, *cascade)?;
                        "DROP MATERIALIZED VIEW"
                    }
                    ObjectKind::Sink => {
                        catalog.drop_sink(name, *if_exists)?;
                        "DROP SINK"
                    }
                };
                Ok(Outcome::Done(tag.into()))
            }
        }
    }
}
