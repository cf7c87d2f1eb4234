//! The one error type of the server, and the single place where an error gets its
//! PostgreSQL SQLSTATE. Every front (pgwire, HTTP, the `weir` CLI) reports errors
//! through [`WeirError`], so a failure reads the same wherever it surfaces.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

/// `Result` with [`WeirError`].
pub type Result<T, E = WeirError> = std::result::Result<T, E>;

/// Errors raised by Weir. The variant is the origin; [`WeirError::sqlstate`] maps it
/// to the code a PostgreSQL client expects.
#[derive(Debug, thiserror::Error)]
pub enum WeirError {
    /// The statement text does not parse.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A table, view or source that does not exist.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// Creating an object whose name is taken.
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// A sink (or other object that is not a relation) that does not exist.
    #[error("{0}")]
    UndefinedObject(String),
    /// Creating a sink whose name is taken.
    #[error("{0}")]
    DuplicateObject(String),
    /// Valid SQL that Weir does not do.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A bad option or value in a statement (unknown `WITH` key, bad location…).
    #[error("{0}")]
    InvalidParameter(String),
    /// Problems in a `.sql` folder: dependency cycles, unknown names; carries file and line.
    #[error("{0}")]
    Definition(String),
    /// `SHOW` or `current_setting` of a name that is no setting.
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),
    /// Configuration that cannot be used (weir.toml, flags, environment).
    #[error("configuration error: {0}")]
    Config(String),
    /// Errors from DataFusion; the SQLSTATE is derived from the root cause.
    #[error("{}", datafusion_message(.0))]
    DataFusion(#[from] DataFusionError),
    /// Local or remote storage.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A source or destination that cannot be reached now (brokers down, a network
    /// error): trying again later can succeed.
    #[error("{0}")]
    Transient(String),
    /// What the user's role, or the server's rules, do not allow (a location outside the
    /// allowed ones, DDL as a reader, `SET` of a server setting): 42501.
    #[error("{0}")]
    InsufficientPrivilege(String),
    /// Dropping an object that others still read (`DROP SOURCE` without `CASCADE`).
    #[error("{0}")]
    DependentObjects(String),
    /// A streaming object (view pipeline, source reader) that stopped on an error.
    #[error("{0}")]
    Stopped(String),
    /// A subscriber fell further behind a view's changes than they are kept for it: it
    /// has to read the view again.
    #[error(
        "the subscription to \"{view}\" fell {missed} changes behind the view (at most {kept} are kept for a subscriber); subscribe again"
    )]
    Lagged {
        view: String,
        missed: u64,
        kept: usize,
    },
    /// A statement nested too deeply to plan safely.
    #[error("{0}")]
    TooComplex(String),
    /// A statement stopped by `statement_timeout` or a cancel request.
    #[error("canceling statement due to {0}")]
    Canceled(String),
    /// A per-client limit of the server was reached (prepared statements…).
    #[error("{0}")]
    LimitExceeded(String),
    /// The server is stopping and takes no new statements.
    #[error("terminating connection due to administrator command")]
    ShuttingDown,
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ArrowError> for WeirError {
    fn from(e: ArrowError) -> Self {
        WeirError::DataFusion(DataFusionError::from(e))
    }
}

impl From<datafusion::parquet::errors::ParquetError> for WeirError {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        WeirError::DataFusion(DataFusionError::from(e))
    }
}

impl WeirError {
    /// Whether trying again later can succeed: a source or destination that cannot be
    /// reached now. Readers retry these with back-off; every other error is permanent.
    pub fn is_transient(&self) -> bool {
        matches!(self, WeirError::Transient(_))
    }

    /// The five-character PostgreSQL error code for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            WeirError::Syntax(_) => "42601",
            WeirError::UndefinedTable(_) => "42P01",
            WeirError::DuplicateTable(_) => "42P07",
            WeirError::UndefinedObject(_) => "42704",
            WeirError::DuplicateObject(_) => "42710",
            WeirError::NotSupported(_) => "0A000",
            WeirError::InvalidParameter(_) => "22023",
            WeirError::Definition(_) => "42000",
            WeirError::UnknownSetting(_) => "42704",
            WeirError::Config(_) => "F0000",
            WeirError::DataFusion(e) => datafusion_sqlstate(e),
            WeirError::Io(_) => "58030",
            WeirError::Transient(_) => "08006",
            WeirError::DependentObjects(_) => "2BP01",
            WeirError::InsufficientPrivilege(_) => "42501",
            WeirError::Stopped(_) | WeirError::Lagged { .. } => "55000",
            WeirError::TooComplex(_) => "54001",
            WeirError::Canceled(_) => "57014",
            WeirError::LimitExceeded(_) => "53400",
            WeirError::ShuttingDown => "57P01",
            WeirError::Internal(_) => "XX000",
        }
    }
}

/// The innermost DataFusion error, through contexts, diagnostics and wrapped externals.
fn root(e: &DataFusionError) -> &DataFusionError {
    let mut e = e.find_root();
    loop {
        match e {
            DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
                Some(df) => e = df.find_root(),
                None => return e,
            },
            DataFusionError::Collection(errs) if !errs.is_empty() => e = errs[0].find_root(),
            _ => return e,
        }
    }
}

fn datafusion_message(e: &DataFusionError) -> String {
    let e = root(e);
    match e {
        // "relation … does not exist" is what PostgreSQL clients and people expect to read.
        DataFusionError::Plan(msg) if is_missing_table(msg) => missing_table_name(msg)
            .map(|t| format!("relation \"{t}\" does not exist"))
            .unwrap_or_else(|| msg.clone()),
        DataFusionError::SQL(err, _) => format!("syntax error: {err}"),
        DataFusionError::Plan(msg)
        | DataFusionError::Execution(msg)
        | DataFusionError::NotImplemented(msg)
        | DataFusionError::Configuration(msg)
        | DataFusionError::Internal(msg)
        | DataFusionError::ResourcesExhausted(msg) => msg.clone(),
        DataFusionError::SchemaError(err, _) => err.to_string(),
        DataFusionError::ArrowError(err, _) => arrow_message(err),
        other => other.to_string(),
    }
}

fn arrow_message(err: &ArrowError) -> String {
    match err {
        ArrowError::DivideByZero => "division by zero".to_string(),
        ArrowError::CastError(m)
        | ArrowError::ParseError(m)
        | ArrowError::ComputeError(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::ArithmeticOverflow(m) => m.clone(),
        other => other.to_string(),
    }
}

fn is_missing_table(msg: &str) -> bool {
    (msg.starts_with("table '") && msg.ends_with("' not found"))
        || (msg.contains("Table") && msg.contains("not found"))
        || msg.contains("doesn't exist")
}

/// The bare table name out of DataFusion's "table 'weir.public.x' not found".
fn missing_table_name(msg: &str) -> Option<String> {
    let start = msg.find('\'')? + 1;
    let end = start + msg[start..].find('\'')?;
    let full = &msg[start..end];
    Some(full.rsplit('.').next().unwrap_or(full).to_string())
}

fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match root(e) {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(err, _) => match &**err {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(err, _) => arrow_sqlstate(err),
        DataFusionError::Execution(msg) => execution_sqlstate(msg),
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::ObjectStore(err) => match **err {
            object_store::Error::NotFound { .. } => "58P01",
            _ => "58030",
        },
        DataFusionError::IoError(_) => "58030",
        DataFusionError::ParquetError(_) => "XX001",
        DataFusionError::Configuration(_) => "22023",
        _ => "XX000",
    }
}

fn plan_sqlstate(msg: &str) -> &'static str {
    if msg.starts_with("No files found at") {
        "58P01"
    } else if is_missing_table(msg) {
        "42P01"
    } else if msg.contains("already exists") {
        "42P07"
    } else if msg.contains("Invalid function") || msg.contains("No function matches") {
        "42883"
    } else if msg.contains("No field named") || msg.contains("column") && msg.contains("not found")
    {
        "42703"
    } else if msg.contains("Cannot infer common")
        || msg.contains("type coercion")
        || msg.contains("Cannot coerce")
    {
        "42804"
    } else if msg.contains("Unsupported") || msg.contains("not supported") {
        "0A000"
    } else {
        "42000"
    }
}

fn arrow_sqlstate(err: &ArrowError) -> &'static str {
    match err {
        ArrowError::DivideByZero => "22012",
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::ComputeError(m) if m.contains("verflow") => "22003",
        ArrowError::InvalidArgumentError(_) => "22023",
        _ => "XX000",
    }
}

fn execution_sqlstate(msg: &str) -> &'static str {
    if msg.contains("unrecognized configuration parameter") {
        "42704"
    } else if msg.contains("Divide by zero") || msg.contains("division by zero") {
        "22012"
    } else if msg.contains("Cast error")
        || msg.contains("Cannot cast")
        || msg.contains("invalid input syntax")
    {
        "22P02"
    } else if msg.contains("verflow") || msg.contains("out of range") {
        "22003"
    } else if msg.contains("already exists") {
        "42P07"
    } else if is_missing_table(msg) {
        "42P01"
    } else {
        "XX000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn code_of(sql: &str) -> (&'static str, String) {
        let ctx = SessionContext::new();
        let err = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.expect_err("query should fail"),
            Err(e) => e,
        };
        let err = WeirError::from(err);
        (err.sqlstate(), err.to_string())
    }

    #[tokio::test]
    async fn datafusion_errors_map_to_postgres_codes() {
        assert_eq!(code_of("SELEC 1").await.0, "42601");
        let (code, msg) = code_of("SELECT * FROM nowhere").await;
        assert_eq!(code, "42P01");
        assert_eq!(msg, "relation \"nowhere\" does not exist");
        assert_eq!(code_of("SELECT nope FROM (SELECT 1 AS a)").await.0, "42703");
        assert_eq!(code_of("SELECT no_such_fn(1)").await.0, "42883");
        assert_eq!(code_of("SELECT CAST('x' AS INT)").await.0, "22P02");
        assert_eq!(code_of("SELECT 1 / 0").await.0, "22012");
    }
}
