//! Query handling for the PostgreSQL wire front, simple and extended protocols.
//! Statements Weir owns (`CREATE EXTERNAL TABLE`, `SHOW TABLES`, later the streaming
//! DDL) run through the engine; ordinary PostgreSQL SQL goes through
//! `datafusion-postgres`, which brings the pg_catalog rewrites, `SET`/`SHOW`,
//! transactions and cursors. Every error leaves here with its SQLSTATE.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::DfSessionService;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{DataRow, RowDescription};
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;
use tokio_util::sync::CancellationToken;

use super::binary;
use super::cancel::{CancelFlag, bounded, cancellable};
use super::pgtext;
use super::session::{Activity, Busy, statement_timeout};
use crate::engine::{Engine, Outcome};
use crate::error::WeirError;
use crate::server::metrics::Metrics;
use crate::sql::access::{self, Role};
use crate::sql::names::output_names;
use crate::sql::{Statement, classify, split_statements};
use crate::view::changes::ChangeStream;

/// A prepared statement: its text, and for ordinary SQL the parsed statement and plan.
/// Statements Weir runs itself keep only their text and are planned at execution.
pub type PgStatement = (String, Option<(sqlparser::ast::Statement, LogicalPlan)>);

/// The query handler shared by all connections.
pub struct QueryHandler {
    engine: Arc<Engine>,
    df: Arc<DfSessionService>,
    parser: Arc<Parser>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl QueryHandler {
    pub fn new(engine: Arc<Engine>, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        let df = Arc::new(DfSessionService::new(engine.context().clone()));
        let parser = Arc::new(Parser {
            engine: engine.clone(),
            df: ExtendedQueryHandler::query_parser(&*df),
            metrics: metrics.clone(),
        });
        QueryHandler {
            engine,
            df,
            parser,
            metrics,
            shutdown,
        }
    }

    fn check_open(&self) -> Result<(), WeirError> {
        if self.shutdown.is_cancelled() {
            return Err(WeirError::ShuttingDown);
        }
        Ok(())
    }

    /// Run one statement of a simple-protocol query string.
    async fn simple_one<C>(
        &self,
        client: &mut C,
        text: &str,
        alone: bool,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (flag, deadline) = limits(client);
        let statement = classify(text).map_err(|e| pg_error(&e))?;
        authorize(client, &statement).map_err(|e| pg_error(&e))?;
        if let Some(response) = session_time_zone(client, &statement).await? {
            return Ok(vec![response]);
        }
        match statement {
            Statement::Postgres(sql) => {
                let pending = self.engine.before_sql(&sql);
                let responses = bounded(
                    flag,
                    deadline,
                    SimpleQueryHandler::do_query(&*self.df, client, &sql),
                )
                .await
                .map_err(map_error)?;
                if let Some(pending) = pending {
                    self.engine.after(pending).await.map_err(|e| pg_error(&e))?;
                }
                Ok(responses
                    .into_iter()
                    .map(|r| map_response(client, &self.metrics, Some(text), r))
                    .collect())
            }
            statement => {
                let outcome = bounded(flag.clone(), deadline, async {
                    self.run_engine(client, &statement)
                        .await
                        .map_err(|e| pg_error(&e))
                })
                .await?;
                if let Outcome::Changes(changes) = outcome {
                    if !alone {
                        return Err(pg_error(&WeirError::NotSupported(
                            "SUBSCRIBE must be the only statement of its query".into(),
                        )));
                    }
                    return Ok(vec![
                        self.follow(client, changes, &Format::UnifiedText, true)
                            .await?,
                    ]);
                }
                Ok(vec![
                    bounded(
                        flag,
                        deadline,
                        outcome_response(outcome, &Format::UnifiedText, client, &self.metrics),
                    )
                    .await?,
                ])
            }
        }
    }

    /// Send a view's changes as they happen (`SUBSCRIBE`): rows are flushed to the
    /// client whenever no more are ready, not held until the statement ends, since it
    /// ends only when the view's source does, on a CancelRequest, on the session's
    /// `statement_timeout`, or at shutdown. `describe`: send the RowDescription too
    /// (the simple protocol; the extended one described the portal already).
    async fn follow<C>(
        &self,
        client: &mut C,
        changes: ChangeStream,
        format: &Format,
        describe: bool,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
            &changes.schema,
            format,
            Some(options),
        )?);
        let encoder_fields = fields.clone();
        let rows = changes.stream.flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(batch) => arrow_pg::datatypes::encode_recordbatch(encoder_fields.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(pg_error(&e)))),
            };
            futures::stream::iter(rows)
        });
        let mut response = map_query(
            client,
            &self.metrics,
            None,
            QueryResponse::new(fields, rows),
        );
        if describe {
            let description =
                RowDescription::new(response.row_schema().iter().map(Into::into).collect());
            client
                .send(PgWireBackendMessage::RowDescription(description))
                .await?;
        }
        let mut sent = 0;
        let rows = response.data_rows();
        loop {
            let next = match rows.next().now_or_never() {
                Some(next) => next,
                None => {
                    // Nothing more is ready: what was fed goes out before waiting.
                    client.flush().await?;
                    tokio::select! {
                        next = rows.next() => next,
                        _ = self.shutdown.cancelled() => return Err(pg_error(&WeirError::ShuttingDown)),
                    }
                }
            };
            match next {
                Some(row) => {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    sent += 1;
                }
                None => break,
            }
        }
        Ok(Response::Execution(Tag::new("SUBSCRIBE").with_rows(sent)))
    }

    /// Run a statement the engine owns; `SHOW` first looks at what this session has `SET`.
    async fn run_engine<C: ClientInfo>(
        &self,
        client: &C,
        statement: &Statement,
    ) -> Result<Outcome, WeirError> {
        match statement {
            Statement::Show(name) => self
                .engine
                .show(name, client.metadata().get(name).map(String::as_str)),
            other => self.engine.execute_whole(other, None).await,
        }
    }
}

/// May this session run `statement`? Its role was set when it logged in; a session
/// without one may only read.
fn authorize<C: ClientInfo>(client: &C, statement: &Statement) -> Result<(), WeirError> {
    let role = client
        .session_extensions()
        .get::<Role>()
        .map_or(Role::Reader, |r| *r);
    access::check(role, statement)
}

/// `SET TIME ZONE …` / `SET timezone = …`: the session's own time zone, reported back
/// as PostgreSQL does. DataFusion would set it on the context every session shares.
async fn session_time_zone<C>(
    client: &mut C,
    statement: &Statement,
) -> PgWireResult<Option<Response>>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let Some(zone) = access::time_zone_set(statement) else {
        return Ok(None);
    };
    client
        .metadata_mut()
        .insert("timezone".to_string(), zone.clone());
    client
        .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            "TimeZone".to_string(),
            zone,
        )))
        .await?;
    Ok(Some(Response::Execution(Tag::new("SET"))))
}

/// Give unaliased columns PostgreSQL's names (see [`crate::sql::names`]).
fn pg_names(sql: &str, fields: Arc<Vec<FieldInfo>>) -> Arc<Vec<FieldInfo>> {
    let fields = asyncpg_introspection_types(sql, fields);
    let Some(names) = output_names(sql) else {
        return fields;
    };
    if names.len() != fields.len() || names.iter().all(Option::is_none) {
        return fields;
    }
    let renamed = fields
        .iter()
        .zip(names)
        .map(|(f, name)| match name {
            Some(name) if name != f.name() => relabel(f, name, f.datatype().clone()),
            _ => f.clone(),
        })
        .collect();
    Arc::new(renamed)
}

/// `f` under another name and type, with everything else kept.
fn relabel(f: &FieldInfo, name: String, datatype: Type) -> FieldInfo {
    FieldInfo::new(name, f.table_id(), f.column_id(), datatype, f.format())
        .with_format_options(f.format_options().clone())
        .with_type_size(f.type_size())
        .with_type_modifier(f.type_modifier())
}

/// asyncpg's type-introspection query aggregates `pg_attribute.atttypid` into
/// `attrtypoids`, which PostgreSQL types `oid[]`; asyncpg decodes that natively but
/// would introspect (recursively, forever) an `int4[]`. Same bytes, other label.
fn asyncpg_introspection_types(sql: &str, fields: Arc<Vec<FieldInfo>>) -> Arc<Vec<FieldInfo>> {
    if !sql.contains("attrtypoids") || !fields.iter().any(|f| f.name() == "attrtypoids") {
        return fields;
    }
    Arc::new(
        fields
            .iter()
            .map(|f| match f.name() {
                "attrtypoids" if *f.datatype() == Type::INT4_ARRAY => {
                    relabel(f, f.name().to_string(), Type::OID_ARRAY)
                }
                _ => f.clone(),
            })
            .collect(),
    )
}

/// The PostgreSQL error for a Weir error.
pub fn pg_error(e: &WeirError) -> PgWireError {
    let severity = if matches!(e, WeirError::ShuttingDown) {
        "FATAL"
    } else {
        "ERROR"
    };
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        e.sqlstate().to_string(),
        crate::sql::redact::url_passwords(&e.to_string()),
    )))
}

/// Give errors coming back from datafusion-postgres and pgwire their SQLSTATE.
fn map_error(e: PgWireError) -> PgWireError {
    match e {
        // A statement in a transaction that already failed: PostgreSQL's code is 25P02.
        PgWireError::UserError(mut info)
            if info.code == "25P01" && info.message.contains("aborted") =>
        {
            info.code = "25P02".into();
            PgWireError::UserError(info)
        }
        PgWireError::ApiError(inner) => match inner.downcast::<DataFusionError>() {
            Ok(df) => pg_error(&WeirError::DataFusion(*df)),
            Err(other) => match other.downcast::<WeirError>() {
                Ok(weir) => pg_error(&weir),
                Err(other) => match other.downcast::<ParserError>() {
                    Ok(parse) => pg_error(&WeirError::Syntax(parse.to_string())),
                    Err(other) => pg_error(&WeirError::Internal(other.to_string())),
                },
            },
        },
        other => other,
    }
}

/// Rows leave with PostgreSQL's column names for the client's `sql` (when the
/// engine's names came from DataFusion), in PostgreSQL's text forms ([`pgtext`]);
/// errors raised while they stream out (division by zero in row 10,000) get their
/// codes too, and a CancelRequest stops the stream.
fn map_response<C: ClientInfo>(
    client: &C,
    metrics: &Arc<Metrics>,
    sql: Option<&str>,
    response: Response,
) -> Response {
    match response {
        Response::Query(q) => Response::Query(map_query(client, metrics, sql, q)),
        other => other,
    }
}

/// [`map_response`] of a query's rows.
fn map_query<C: ClientInfo>(
    client: &C,
    metrics: &Arc<Metrics>,
    sql: Option<&str>,
    q: QueryResponse,
) -> QueryResponse {
    let tag = q.command_tag().to_string();
    let schema = match sql {
        Some(sql) => pg_names(sql, q.row_schema()),
        None => q.row_schema(),
    };
    let fixes = pgtext::plan(&schema);
    let running = metrics.running();
    let busy = busy(client);
    let rows = q.data_rows.map(move |row| {
        let _running = (&running, &busy);
        match (row, &fixes) {
            (Ok(row), Some(fixes)) => Ok(pgtext::rewrite(row, fixes)),
            (row, _) => row.map_err(map_error),
        }
    });
    let mut mapped = match client.session_extensions().get::<Arc<CancelFlag>>() {
        Some(flag) => {
            let flag: Arc<CancelFlag> = Arc::clone(&*flag);
            let epoch = flag.epoch();
            let deadline =
                statement_timeout(client.metadata()).map(|t| tokio::time::Instant::now() + t);
            QueryResponse::new(schema, cancellable(rows, flag, epoch, deadline))
        }
        None => QueryResponse::new(schema, rows),
    };
    mapped.set_command_tag(&tag);
    mapped
}

/// The connection's cancel flag and the deadline its `statement_timeout` sets for a
/// statement starting now.
fn limits<C: ClientInfo>(client: &C) -> (Option<Arc<CancelFlag>>, Option<tokio::time::Instant>) {
    let flag = client
        .session_extensions()
        .get::<Arc<CancelFlag>>()
        .map(|f| Arc::clone(&*f));
    let deadline = statement_timeout(client.metadata()).map(|t| tokio::time::Instant::now() + t);
    (flag, deadline)
}

/// A statement running on the client's connection, for the idle timeout.
fn busy<C: ClientInfo>(client: &C) -> Option<Busy> {
    client
        .session_extensions()
        .get::<Arc<Activity>>()
        .map(|a| a.busy())
}

async fn outcome_response<C: ClientInfo>(
    outcome: Outcome,
    format: &Format,
    client: &C,
    metrics: &Arc<Metrics>,
) -> PgWireResult<Response> {
    match outcome {
        Outcome::Rows(df) => {
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let rows = arrow_pg::datatypes::df::encode_dataframe(df, format, Some(options))
                .await
                .map_err(map_error)?;
            Ok(map_response(client, metrics, None, Response::Query(rows)))
        }
        Outcome::Done(tag) => Ok(Response::Execution(Tag::new(&tag))),
        Outcome::Changes(_) => Err(pg_error(&WeirError::Internal(
            "a subscription is sent by QueryHandler::follow".into(),
        ))),
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.check_open().map_err(|e| pg_error(&e))?;
        let _busy = busy(client);
        let pieces = split_statements(query).map_err(|e| pg_error(&e))?;
        if pieces.is_empty() {
            // A comment-only query (Grafana's `-- ping`) is an empty query, not an error.
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(pieces.len());
        let alone = pieces.len() == 1;
        for piece in pieces {
            let timer = self.metrics.query_started();
            match self.simple_one(client, &piece.text, alone).await {
                Ok(r) => {
                    timer.finish(None);
                    responses.extend(r);
                }
                Err(e) => {
                    // PostgreSQL stops a multi-statement query at its first error.
                    let info = ErrorInfo::from(e);
                    timer.finish(Some(&info.code));
                    responses.push(Response::Error(Box::new(info)));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PgStatement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.check_open().map_err(|e| pg_error(&e))?;
        let _busy = busy(client);
        let timer = self.metrics.query_started();
        check_binary_arrays(portal, || {
            if portal.statement.statement.1.is_some() {
                self.parser
                    .get_parameter_types(&portal.statement.statement)
                    .unwrap_or_default()
            } else {
                Vec::new()
            }
        })?;
        let (flag, deadline) = limits(client);
        // Classified once: the role's check, the session's time zone and the engine's own
        // statements all use it.
        let text = &portal.statement.statement.0;
        let classified = classify(text).and_then(|s| authorize(client, &s).map(|()| s));
        let result = match (classified, &portal.statement.statement.1) {
            (Err(e), _) => Err(pg_error(&e)),
            (Ok(statement), _)
                if let Some(response) = session_time_zone(client, &statement).await? =>
            {
                Ok(response)
            }
            (Ok(_), Some(_)) => {
                let pending = self.engine.before_sql(text);
                let result = bounded(
                    flag,
                    deadline,
                    ExtendedQueryHandler::do_query(&*self.df, client, portal, max_rows),
                )
                .await
                .map(|r| map_response(client, &self.metrics, Some(text), r))
                .map_err(map_error);
                match (result, pending) {
                    (Ok(r), Some(pending)) => match self.engine.after(pending).await {
                        Ok(()) => Ok(r),
                        Err(e) => Err(pg_error(&e)),
                    },
                    (result, _) => result,
                }
            }
            (Ok(statement), None) => match bounded(flag.clone(), deadline, async {
                self.run_engine(client, &statement)
                    .await
                    .map_err(|e| pg_error(&e))
            })
            .await
            {
                Ok(Outcome::Changes(changes)) => {
                    self.follow(client, changes, &portal.result_column_format, false)
                        .await
                }
                Ok(outcome) => {
                    bounded(
                        flag,
                        deadline,
                        outcome_response(
                            outcome,
                            &portal.result_column_format,
                            client,
                            &self.metrics,
                        ),
                    )
                    .await
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(r) => {
                timer.finish(None);
                Ok(r)
            }
            Err(e) => {
                let info = ErrorInfo::from(e);
                timer.finish(Some(&info.code));
                Err(PgWireError::UserError(Box::new(info)))
            }
        }
    }
}

/// Parses extended-protocol statements: Weir's own statements by Weir, the rest by
/// datafusion-postgres (which plans them without side effects).
pub struct Parser {
    engine: Arc<Engine>,
    df: Arc<datafusion_postgres::Parser>,
    metrics: Arc<Metrics>,
}

impl Parser {
    async fn parse<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut pieces = split_statements(sql).map_err(|e| pg_error(&e))?;
        match pieces.len() {
            0 => return Ok(None),
            1 => {}
            _ => {
                return Err(pg_error(&WeirError::Syntax(
                    "cannot insert multiple commands into a prepared statement".into(),
                )));
            }
        }
        let piece = pieces.remove(0);
        match classify(&piece.text).map_err(|e| pg_error(&e))? {
            // The statement keeps the client's own text: output column names and
            // parameter casts are read from it, not from the rewritten form.
            Statement::Postgres(text) => Ok(self
                .df
                .parse_sql(client, &text, types)
                .await
                .map_err(map_error)?
                .map(|(_, planned)| (piece.text, planned))),
            _ => Ok(Some((piece.text, None))),
        }
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        // Statements that fail to plan never reach Execute; count them here.
        self.parse(client, sql, types).await.inspect_err(|e| {
            if let PgWireError::UserError(info) = e {
                self.metrics.failed(&info.code);
            }
        })
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        let mut types = self.df.get_parameter_types(stmt)?;
        // `oid` is planned as int4; a parameter written `$1::oid[]` (asyncpg's type
        // introspection) must still be described as oid[], which drivers know.
        for (index, ty) in oid_casts(&stmt.0) {
            if let Some(slot) = types.get_mut(index) {
                *slot = ty;
            }
        }
        Ok(types)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            (text, Some(_)) => {
                let fields = self.df.get_result_schema(stmt, column_format)?;
                Ok(Arc::unwrap_or_clone(pg_names(text, Arc::new(fields))))
            }
            (text, None) => {
                let statement = classify(text).map_err(|e| pg_error(&e))?;
                // A cursor's portal keeps only its query text; Describe still owes its columns.
                let handle = tokio::runtime::Handle::current();
                let schema = tokio::task::block_in_place(|| {
                    handle.block_on(self.engine.plan_schema(&statement))
                })
                .map_err(|e| pg_error(&e))?;
                match schema {
                    Some(schema) => Ok(arrow_pg::datatypes::arrow_schema_to_pg_fields(
                        &schema,
                        column_format.unwrap_or(&Format::UnifiedText),
                        None,
                    )?),
                    None => Ok(vec![]),
                }
            }
        }
    }
}

/// Refuse a binary array parameter whose header claims more elements than its bytes
/// can hold (each element takes at least its 4-byte length). postgres-types reserves
/// room for the claimed count before reading any element, so a 20-byte value claiming
/// 2^31 elements made the whole process abort on a 48 GiB allocation. 22P03, like
/// PostgreSQL's `insufficient data left in message`. `planned` gives the server's
/// parameter types; it runs only for a binary value the client left untyped.
fn check_binary_arrays<S>(
    portal: &Portal<S>,
    planned: impl FnOnce() -> Vec<Type>,
) -> PgWireResult<()> {
    let planned = std::cell::LazyCell::new(planned);
    for (i, value) in portal.parameters.iter().enumerate() {
        let Some(value) = value else { continue };
        if !portal.parameter_format.is_binary(i) {
            continue;
        }
        let ty = portal
            .statement
            .parameter_types
            .get(i)
            .cloned()
            .flatten()
            .or_else(|| planned.get(i).cloned());
        // PostgreSQL names every array type after its element with a leading underscore.
        if !ty.is_some_and(|t| t.name().starts_with('_')) {
            continue;
        }
        if !binary::array_header_fits(value) {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "22P03".into(),
                format!(
                    "binary array parameter ${} claims more elements than its {} bytes hold",
                    i + 1,
                    value.len()
                ),
            ))));
        }
    }
    Ok(())
}

/// Parameters cast to `oid` or `oid[]` in the text: (0-based index, wire type).
fn oid_casts(sql: &str) -> Vec<(usize, Type)> {
    static CAST: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\$(\d+)\s*::\s*(?:pg_catalog\.)?oid\s*(\[\s*\])?")
            .expect("valid pattern")
    });
    CAST.captures_iter(sql)
        .filter_map(|c| {
            let n: usize = c[1].parse().ok()?;
            let ty = if c.get(2).is_some() {
                Type::OID_ARRAY
            } else {
                Type::OID
            };
            Some((n.checked_sub(1)?, ty))
        })
        .collect()
}
