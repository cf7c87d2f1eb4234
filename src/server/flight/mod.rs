//! The Arrow Flight SQL front: arrow-flight's [`FlightSqlService`] on tonic over the same
//! engine as the PostgreSQL port (statements, prepared statements with parameters, DDL,
//! metadata calls), every error carrying Weir's message and SQLSTATE.

pub mod auth;
pub mod conn;
pub mod metadata;
pub mod statements;

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::arrow::array::{Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::config::SessionLimits;
use crate::engine::{Engine, Outcome, Prepared};
use crate::error::{Result, WeirError};
use crate::locks::Unpoisoned;
use crate::server::Admission;
use crate::server::metrics::Metrics;
use crate::sql::access::{self, Role};
use crate::sql::{classify, numbered_placeholders, split_statements};
use auth::{Auth, Caller, Gate, Gated};
use statements::{MAX_PREPARED, PreparedStatements, parameter_rows};

/// Parameter rows one DoPut may bind (each row of an update runs it once).
const MAX_PARAMETER_ROWS: usize = 10_000;

type FlightDataStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// The Flight SQL service: the engine, the open prepared statements and the users'
/// tokens.
pub struct FlightSql {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    statements: PreparedStatements,
    auth: Option<Arc<Auth>>,
    /// Ends the subscriptions still streaming when the server stops ([`serve`] sets it).
    shutdown: CancellationToken,
    /// The pools both ports share, and the limits (`statement_timeout_ms`, …).
    admission: Admission,
    limits: SessionLimits,
}

/// Rows to send: the schema they go out in (batches are cast to it) and a stream of
/// batches.
pub struct Rows {
    pub schema: SchemaRef,
    pub batches: BoxStream<'static, Result<RecordBatch>>,
}

impl Rows {
    /// No columns and no rows: what a command answers.
    fn none() -> Rows {
        Rows {
            schema: Arc::new(Schema::empty()),
            batches: stream::empty().boxed(),
        }
    }

    /// One batch built in memory (metadata answers).
    fn one(batch: RecordBatch) -> Rows {
        Rows {
            schema: batch.schema(),
            batches: stream::once(async move { Ok(batch) }).boxed(),
        }
    }
}

impl FlightSql {
    pub fn new(engine: Arc<Engine>, metrics: Arc<Metrics>, auth: Option<Arc<Auth>>) -> Self {
        FlightSql {
            engine,
            metrics,
            statements: PreparedStatements::new(MAX_PREPARED),
            auth,
            shutdown: CancellationToken::new(),
            admission: Admission::default(),
            limits: SessionLimits::default(),
        }
    }

    /// Share the PostgreSQL port's pools and limits; prepared statements unused for
    /// `idle_session_timeout_secs` (an hour when 0) are closed.
    pub fn with_admission(
        mut self,
        admission: Admission,
        limits: SessionLimits,
        idle_secs: u64,
    ) -> FlightSql {
        self.admission = admission;
        self.limits = limits;
        let idle = if idle_secs > 0 { idle_secs } else { 3600 };
        self.statements = PreparedStatements::new(MAX_PREPARED)
            .with_idle_lifetime(std::time::Duration::from_secs(idle));
        self
    }

    /// `work` within `statement_timeout_ms` (57014 past it).
    async fn bounded<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match self.limits.statement_timeout {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .unwrap_or_else(|_| Err(WeirError::Canceled("statement timeout".into()))),
            None => work.await,
        }
    }

    /// A statement that failed before it ran, counted like the PostgreSQL port counts them.
    fn failed(&self, e: WeirError) -> Status {
        self.metrics.failed(e.sqlstate());
        status(&e)
    }

    /// One statement of text, planned without running: split (exactly one), `?`
    /// placeholders numbered, classified as the PostgreSQL port does, planned by the engine.
    async fn prepare(&self, sql: &str, role: Role) -> Result<Prepared> {
        let mut pieces = split_statements(sql)?;
        match pieces.len() {
            1 => {}
            0 => return Err(WeirError::Syntax("empty statement".into())),
            n => {
                return Err(WeirError::Syntax(format!(
                    "{n} statements in one query: Flight SQL runs one statement at a time (a statement update runs several in order)"
                )));
            }
        }
        self.prepare_one(&pieces.remove(0).text, role).await
    }

    /// [`Self::prepare`] of one statement, which `role` must be allowed to run.
    async fn prepare_one(&self, text: &str, role: Role) -> Result<Prepared> {
        let text = numbered_placeholders(text)?;
        let statement = classify(&text)?;
        access::check(role, &statement)?;
        let prepared = self.engine.prepare(statement).await?;
        if prepared.is_session_statement() {
            return Err(WeirError::NotSupported(
                "SET, transaction and PREPARE statements over Arrow Flight SQL: it keeps no session, every statement runs alone (autocommit)".into(),
            ));
        }
        Ok(prepared)
    }

    /// Run a statement and hand back its rows as a stream (a command runs to its end and
    /// answers none), in the schema its FlightInfo announced. The one path from a
    /// statement to batches for every ticket.
    pub async fn rows(
        &self,
        prepared: &Prepared,
        parameters: Option<Vec<ScalarValue>>,
    ) -> Result<Rows> {
        let timer = self.metrics.query_started();
        let deadline = self
            .limits
            .statement_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let result: Result<Rows> = self
            .bounded(async {
                match self
                    .engine
                    .execute_prepared_whole(prepared, parameters)
                    .await?
                {
                    Outcome::Rows(df) => {
                        // The plan's schema with the parameters bound: what FlightInfo announced.
                        let schema = flight_schema(df.schema().as_arrow());
                        let stream = df.execute_stream().await?;
                        Ok(Rows {
                            schema,
                            batches: until(
                                stream.map_err(WeirError::from).boxed(),
                                self.shutdown.clone(),
                                deadline,
                            ),
                        })
                    }
                    Outcome::Done(_) => Ok(Rows::none()),
                    Outcome::Changes(changes) => Ok(Rows {
                        schema: changes.schema,
                        batches: until(changes.stream, self.shutdown.clone(), deadline),
                    }),
                }
            })
            .await;
        timer.finish(result.as_ref().err().map(WeirError::sqlstate));
        result
    }

    /// Run a statement for its effect; the rows it changed (0 for DDL, -1 when unknown).
    async fn run_command(
        &self,
        prepared: &Prepared,
        parameters: Option<Vec<ScalarValue>>,
    ) -> Result<i64> {
        let timer = self.metrics.query_started();
        let result: Result<i64> = self.bounded(async {
            match self.engine.execute_prepared_whole(prepared, parameters).await? {
                Outcome::Done(_) => Ok(0),
                Outcome::Changes(_) => Err(WeirError::NotSupported(
                    "SUBSCRIBE streams rows: run it as a query (GetFlightInfo, then DoGet), not as an update".into(),
                )),
                Outcome::Rows(df) => {
                    // DataFusion's DML and COPY answer one `count` row; other rows are read
                    // to the end (that is the statement's work) and dropped.
                    let mut stream = df.execute_stream().await?;
                    let counted = stream.schema().fields().len() == 1
                        && stream.schema().field(0).name() == "count";
                    let mut count = 0i64;
                    while let Some(batch) = stream.next().await {
                        let batch = batch?;
                        if counted && batch.num_rows() > 0 {
                            let n = cast(batch.column(0), &DataType::Int64)?;
                            let n = n
                                .as_any()
                                .downcast_ref::<datafusion::arrow::array::Int64Array>()
                                .map(|a| a.iter().flatten().sum::<i64>())
                                .unwrap_or(0);
                            count += n;
                        }
                    }
                    Ok(if counted { count } else { -1 })
                }
            }
        })
        .await;
        timer.finish(result.as_ref().err().map(WeirError::sqlstate));
        result
    }

    /// The FlightInfo of a result: the schema it will be sent in, and one endpoint whose
    /// ticket is `ticket`.
    fn info(
        &self,
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| status(&WeirError::from(e)))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// FlightInfo for a statement: a query is planned (not run) and its ticket carries
    /// the text; anything else runs now, once, and its ticket streams nothing.
    async fn statement_info(
        &self,
        sql: &str,
        descriptor: FlightDescriptor,
        role: Role,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = self.prepare(sql, role).await.map_err(|e| self.failed(e))?;
        no_parameters(&prepared, " (CreatePreparedStatement, then DoPut)")
            .map_err(|e| self.failed(e))?;
        match prepared.schema() {
            Some(schema) => self.info(
                &flight_schema(schema),
                statement_ticket(statements::Ticket::Query(sql.to_string())),
                descriptor,
            ),
            None => {
                self.run_command(&prepared, None)
                    .await
                    .map_err(|e| status(&e))?;
                self.info(
                    &Schema::empty(),
                    statement_ticket(statements::Ticket::Done),
                    descriptor,
                )
            }
        }
    }

    /// A metadata answer's FlightInfo: its schema, and the command itself as the ticket.
    fn metadata_info(
        &self,
        command: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        self.info(schema, command.as_any().encode_to_vec(), descriptor)
    }

    /// The parameter rows a DoPut carries (none when it sends no batch).
    async fn parameter_rows(
        &self,
        request: Request<PeekableFlightDataStream>,
        types: &[Option<DataType>],
    ) -> Result<Option<Vec<Vec<ScalarValue>>>> {
        let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        );
        let mut rows: Option<Vec<Vec<ScalarValue>>> = None;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| {
                WeirError::InvalidParameter(format!("cannot read the parameter batch: {e}"))
            })?;
            let got = rows.get_or_insert_with(Vec::new);
            if got.len() + batch.num_rows() > MAX_PARAMETER_ROWS {
                return Err(WeirError::InvalidParameter(format!(
                    "more than {MAX_PARAMETER_ROWS} rows of parameters in one DoPut"
                )));
            }
            got.extend(parameter_rows(&batch, types)?);
        }
        Ok(rows)
    }
}

/// Refuse a statement with parameters where none can be bound; `how` tells how to bind.
fn no_parameters(prepared: &Prepared, how: &str) -> Result<()> {
    let types = prepared.parameter_types()?;
    if types.is_empty() {
        return Ok(());
    }
    Err(WeirError::InvalidParameter(format!(
        "the statement takes {} parameter(s): prepare it and bind them{how}",
        types.len()
    )))
}

/// Rows changed by two statements together (-1: unknown, once either is).
fn add_count(total: i64, n: i64) -> i64 {
    if n < 0 || total < 0 { -1 } else { total + n }
}

/// Weir's error as a gRPC status: the message with its SQLSTATE (also in the
/// `x-weir-sqlstate` header), and a code that says what kind of failure it is.
pub fn status(e: &WeirError) -> Status {
    use tonic::Code;
    let sqlstate = e.sqlstate();
    let code = match sqlstate {
        "42P01" | "58P01" => Code::NotFound,
        "42P07" => Code::AlreadyExists,
        "42501" => Code::PermissionDenied,
        "57P01" => Code::Unavailable,
        "57014" => Code::Cancelled,
        "53200" | "53300" | "53400" | "54000" => Code::ResourceExhausted,
        "54001" => Code::InvalidArgument,
        "55000" => Code::FailedPrecondition,
        s if s.starts_with("28") => Code::Unauthenticated,
        s if s.starts_with("42")
            || s.starts_with("22")
            || s.starts_with("0A")
            || s.starts_with("2B") =>
        {
            Code::InvalidArgument
        }
        _ => Code::Internal,
    };
    let message = crate::sql::redact::url_passwords(&e.to_string());
    let mut status = Status::new(code, format!("{message} [SQLSTATE {sqlstate}]"));
    if let Ok(value) = sqlstate.parse() {
        status.metadata_mut().insert("x-weir-sqlstate", value);
    }
    status
}

/// A statement ticket, wrapped as Flight SQL's `TicketStatementQuery`.
fn statement_ticket(ticket: statements::Ticket) -> Vec<u8> {
    TicketStatementQuery {
        statement_handle: ticket.encode(),
    }
    .as_any()
    .encode_to_vec()
}

/// A type as Flight sends it: dictionaries (Hive partition columns) as their values, and
/// string and binary views as plain strings and binaries, which every Flight SQL client
/// reads.
fn flight_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, values) => flight_type(values),
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(Arc::new(flight_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(flight_field(f))),
        DataType::ListView(f) => DataType::List(Arc::new(flight_field(f))),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(flight_field(f)), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| Arc::new(flight_field(f))).collect())
        }
        other => other.clone(),
    }
}

fn flight_field(f: &Field) -> Field {
    f.clone().with_data_type(flight_type(f.data_type()))
}

/// A schema as Flight sends it (see [`flight_type`]), every column nullable: a
/// FlightInfo's schema comes from the plan before it runs (before its parameters are
/// bound), and clients check that the stream's schema is the same, while binding a value
/// can make a column non-null.
pub fn flight_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| Arc::new(flight_field(f).with_nullable(true)))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// A batch in `schema` (its [`flight_schema`]), columns cast where the types differ.
fn to_flight(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

/// Encode rows as Flight data, batch by batch as they are produced; the statement counts
/// as running (for graceful shutdown) until the last batch is sent.
pub fn flight_data(rows: Rows, metrics: &Arc<Metrics>) -> FlightDataStream {
    let schema = rows.schema;
    let running = metrics.running();
    let target = Arc::clone(&schema);
    let batches = rows.batches.map(move |batch| {
        let _running = &running;
        batch
            .and_then(|b| to_flight(b, &target))
            .map_err(|e| FlightError::Tonic(Box::new(status(&e))))
    });
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Box::pin(encoded)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // The gate checked the credentials; a password earns a bearer token.
        let token = match (request.extensions().get::<Caller>(), &self.auth) {
            (Some(Caller::Password(user)), Some(auth)) => Some(auth.issue(user)),
            _ => None,
        };
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().unwrap_or_default().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(stream::iter(vec![Ok(answer)])));
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("token is not a header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let role = role_of(&request);
        self.statement_info(&query.query, request.into_inner(), role)
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let rows =
            match statements::Ticket::decode(&ticket.statement_handle).map_err(|e| status(&e))? {
                statements::Ticket::Query(sql) => {
                    let prepared = self
                        .prepare(&sql, role_of(&request))
                        .await
                        .map_err(|e| self.failed(e))?;
                    self.rows(&prepared, None).await.map_err(|e| status(&e))?
                }
                statements::Ticket::Done => Rows::none(),
            };
        Ok(Response::new(flight_data(rows, &self.metrics)))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let open = self
            .statements
            .get(&cmd.prepared_statement_handle)
            .map_err(|e| status(&e))?;
        access::check(role_of(&request), open.prepared.statement()).map_err(|e| self.failed(e))?;
        let parameters = open.bound().map_err(|e| status(&e))?;
        let schema = open
            .prepared
            .schema_with(parameters.as_deref())
            .map_err(|e| self.failed(e))?;
        match schema {
            Some(schema) => self.info(
                &flight_schema(&schema),
                cmd.as_any().encode_to_vec(),
                request.into_inner(),
            ),
            None => {
                self.run_command(&open.prepared, parameters)
                    .await
                    .map_err(|e| status(&e))?;
                self.info(
                    &Schema::empty(),
                    statement_ticket(statements::Ticket::Done),
                    request.into_inner(),
                )
            }
        }
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let open = self
            .statements
            .get(&cmd.prepared_statement_handle)
            .map_err(|e| status(&e))?;
        access::check(role_of(&request), open.prepared.statement()).map_err(|e| self.failed(e))?;
        let parameters = open.bound().map_err(|e| status(&e))?;
        let rows = self
            .rows(&open.prepared, parameters)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(flight_data(rows, &self.metrics)))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let role = role_of(&request);
        // A script runs statement after statement (each planned once the ones before it
        // ran), stopping at the first error.
        let pieces = split_statements(&cmd.query).map_err(|e| self.failed(e))?;
        if pieces.is_empty() {
            return Err(self.failed(WeirError::Syntax("empty statement".into())));
        }
        let mut total = 0i64;
        for piece in pieces {
            let prepared = self
                .prepare_one(&piece.text, role)
                .await
                .map_err(|e| self.failed(e))?;
            no_parameters(&prepared, "").map_err(|e| self.failed(e))?;
            let n = self
                .run_command(&prepared, None)
                .await
                .map_err(|e| status(&e))?;
            total = add_count(total, n);
        }
        Ok(total)
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let open = self
            .statements
            .get(&cmd.prepared_statement_handle)
            .map_err(|e| status(&e))?;
        let rows = self
            .parameter_rows(request, &open.parameter_types)
            .await
            .map_err(|e| status(&e))?;
        let bound = match rows {
            None => None,
            Some(mut rows) if rows.len() == 1 => Some(rows.remove(0)),
            Some(rows) if rows.is_empty() => None,
            Some(rows) => {
                return Err(status(&WeirError::InvalidParameter(format!(
                    "a query binds one row of parameters; {} were sent (run it once per row)",
                    rows.len()
                ))));
            }
        };
        *open.parameters.locked() = bound;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let open = self
            .statements
            .get(&cmd.prepared_statement_handle)
            .map_err(|e| status(&e))?;
        access::check(role_of(&request), open.prepared.statement()).map_err(|e| self.failed(e))?;
        let rows = self
            .parameter_rows(request, &open.parameter_types)
            .await
            .map_err(|e| status(&e))?;
        match rows {
            // Each row of parameters runs the statement once.
            Some(rows) if !rows.is_empty() => {
                let mut total = 0i64;
                for row in rows {
                    let n = self
                        .run_command(&open.prepared, Some(row))
                        .await
                        .map_err(|e| status(&e))?;
                    total = add_count(total, n);
                }
                Ok(total)
            }
            _ => {
                let parameters = open.bound().map_err(|e| status(&e))?;
                self.run_command(&open.prepared, parameters)
                    .await
                    .map_err(|e| status(&e))
            }
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        // Prepared statements are bounded per client: a user, or an address when no
        // users are configured.
        let owner = match request.extensions().get::<Caller>() {
            Some(Caller::Anyone) | None => request
                .extensions()
                .get::<conn::ConnInfo>()
                .map(|c| c.state.peer.ip().to_string())
                .unwrap_or_default(),
            Some(caller) => caller.user().to_string(),
        };
        let prepared = self
            .prepare(&query.query, role_of(&request))
            .await
            .map_err(|e| self.failed(e))?;
        let dataset = prepared
            .schema()
            .map(|s| flight_schema(s))
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let (handle, open) = self
            .statements
            .insert(prepared, &owner)
            .map_err(|e| self.failed(e))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: schema_ipc(&dataset)?,
            parameter_schema: schema_ipc(&open.parameter_schema())?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.statements
            .remove(&query.prepared_statement_handle)
            .map_err(|e| status(&e))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = metadata::catalogs(self.engine.context()).map_err(|e| status(&e))?;
        Ok(Response::new(flight_data(Rows::one(batch), &self.metrics)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = metadata::schemas(self.engine.context(), query).map_err(|e| status(&e))?;
        Ok(Response::new(flight_data(Rows::one(batch), &self.metrics)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = metadata::tables(self.engine.context(), query)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(flight_data(Rows::one(batch), &self.metrics)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = metadata::table_types().map_err(|e| status(&e))?;
        Ok(Response::new(flight_data(Rows::one(batch), &self.metrics)))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&metadata::SQL_INFO).schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query
            .into_builder(&metadata::SQL_INFO)
            .build()
            .map_err(|e| Status::internal(format!("building the SqlInfo answer: {e}")))?;
        Ok(Response::new(flight_data(Rows::one(batch), &self.metrics)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            query,
            &metadata::primary_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(empty(
            metadata::primary_keys_schema(),
            &self.metrics,
        )))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            query,
            &metadata::foreign_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(empty(
            metadata::foreign_keys_schema(),
            &self.metrics,
        )))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            query,
            &metadata::foreign_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(empty(
            metadata::foreign_keys_schema(),
            &self.metrics,
        )))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(
            query,
            &metadata::foreign_keys_schema(),
            request.into_inner(),
        )
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(empty(
            metadata::foreign_keys_schema(),
            &self.metrics,
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A result with `schema` and no rows.
fn empty(schema: SchemaRef, metrics: &Arc<Metrics>) -> FlightDataStream {
    flight_data(
        Rows {
            schema,
            batches: stream::empty().boxed(),
        },
        metrics,
    )
}

/// A schema as the IPC message Flight SQL puts in prepared statement results.
fn schema_ipc(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| status(&WeirError::from(e)))?;
    Ok(bytes)
}

/// Batches until `shutdown` (a subscription does not end by itself, and the server waits
/// for running calls) or `deadline` (`statement_timeout_ms`), either of which ends them
/// with an error.
fn until(
    batches: BoxStream<'static, Result<RecordBatch>>,
    shutdown: CancellationToken,
    deadline: Option<tokio::time::Instant>,
) -> BoxStream<'static, Result<RecordBatch>> {
    stream::unfold(
        (batches, shutdown, false),
        move |(mut batches, shutdown, done)| async move {
            if done {
                return None;
            }
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = batches.next() => item.map(|item| (item, (batches, shutdown, false))),
                _ = shutdown.cancelled() => Some((Err(WeirError::ShuttingDown), (batches, shutdown, true))),
                _ = expired => Some((Err(WeirError::Canceled("statement timeout".into())), (batches, shutdown, true))),
            }
        },
    )
    .boxed()
}

/// The role the gate found for the caller; a call it did not see may only read.
fn role_of<T>(request: &Request<T>) -> Role {
    request
        .extensions()
        .get::<Role>()
        .copied()
        .unwrap_or(Role::Reader)
}

/// Serve Flight SQL on `listener` (over TLS with `tls`) until `shutdown`; then stop
/// accepting, refuse new calls (Unavailable) and let running ones finish.
pub async fn serve(
    listener: TcpListener,
    mut flight: FlightSql,
    shutdown: CancellationToken,
    tls: Option<pgwire::tokio::TlsAcceptor>,
) -> Result<()> {
    flight.shutdown = shutdown.clone();
    let limits = flight.limits;
    let admission = flight.admission.clone();
    let gate = Arc::new(Gate {
        shutdown: shutdown.clone(),
        auth: flight.auth.clone(),
        admission: admission.clone(),
        max_connections: limits.max_connections,
    });
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(conn::accept(
        listener,
        tls,
        admission,
        limits,
        tx,
        shutdown.clone(),
    ));
    let incoming = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let service = FlightServiceServer::new(flight)
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(usize::MAX);
    tonic::transport::Server::builder()
        // Headers (credentials, metadata) are small; a call's body is bounded by
        // max_message_bytes.
        .http2_max_header_list_size(Some(64 * 1024))
        .add_service(Gated {
            inner: service,
            gate,
        })
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| WeirError::Internal(format!("Flight SQL server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, StringViewArray};
    use datafusion::arrow::datatypes::Int32Type;

    #[test]
    fn flight_types_hydrate_dictionaries_and_views() {
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let view = StringViewArray::from(vec!["x", "y", "z"]);
        let batch = RecordBatch::try_from_iter(vec![
            ("d", Arc::new(dict) as Arc<dyn Array>),
            ("v", Arc::new(view) as Arc<dyn Array>),
        ])
        .unwrap();
        let schema = flight_schema(&batch.schema());
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        let sent = to_flight(batch, &schema).unwrap();
        assert_eq!(sent.schema(), schema);
        assert_eq!(sent.num_rows(), 3);
    }

    #[test]
    fn errors_keep_message_and_sqlstate() {
        let s = status(&WeirError::UndefinedTable("nope".into()));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(
            s.message(),
            "relation \"nope\" does not exist [SQLSTATE 42P01]"
        );
        assert_eq!(s.metadata().get("x-weir-sqlstate").unwrap(), "42P01");
        assert_eq!(
            status(&WeirError::Syntax("x".into())).code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            status(&WeirError::ShuttingDown).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            status(&WeirError::Internal("x".into())).code(),
            tonic::Code::Internal
        );
    }
}
