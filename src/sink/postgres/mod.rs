//! PostgreSQL sink: validates `connector = 'postgres'` options, maps Arrow types to
//! PostgreSQL ones, and upserts rows on the primary key (deletes keys a view's change left
//! without a row) in one transaction per flush, retried with back-off on failure.
//! Connections use TLS as libpq's `sslmode` says (`prefer` by default, `require`).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use pgwire::tokio::tokio_rustls::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Delivery, SinkInput, SinkWriter};
use crate::connector::retry::Backoff;
use crate::connector::{check_options, parsed, required};
use crate::error::{Result, WeirError};
use crate::sql::streaming::Options;
use crate::view::changes::{net_effect, split_ops};
use crate::view::source::parse_duration;

mod sql;
mod tls;
mod writer;

use sql::Sql;
pub use sql::pg_type;
use writer::{PostgresWriter, invalid, pg_message, transient};

const CONNECTOR: &str = "postgres";
/// Options of the connector besides `COMMON_OPTIONS`.
const OPTIONS: &[&str] = &[
    "url",
    "table",
    "primary.key",
    "create.table",
    "batch.size",
    "retry.max_elapsed",
];
/// Rows per statement unless `batch.size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// How long a flush keeps retrying unless `retry.max_elapsed` says otherwise.
pub const DEFAULT_RETRY_MAX_ELAPSED: Duration = Duration::from_secs(60);
/// A write flushes by itself once this many statements' worth of rows are pending.
const AUTO_FLUSH_STATEMENTS: usize = 10;
/// The connect timeout unless the URL sets one (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A validated `CREATE SINK … WITH (connector = 'postgres', …)`.
#[derive(Debug, Clone)]
pub struct PostgresSinkSpec {
    /// The target table as given (`table` or `schema.table`; each part is quoted, so its
    /// case is kept).
    pub table: String,
    /// The input columns rows are upserted on; empty: rows are appended.
    pub primary_key: Vec<String>,
    /// Create the table (`CREATE TABLE IF NOT EXISTS`) when the writer opens.
    pub create_table: bool,
    /// Rows per statement.
    pub batch_size: usize,
    /// How long a flush (or opening) keeps retrying before it fails.
    pub retry_max_elapsed: Duration,
    /// The connection settings of `url` (its password is not shown by `Debug`).
    config: Config,
}

impl PostgresSinkSpec {
    /// Checks the options against the sink's input, without connecting.
    pub fn parse(input: &SinkInput, options: &Options) -> Result<PostgresSinkSpec> {
        check_options(CONNECTOR, options, OPTIONS, &[])?;
        let url = required(CONNECTOR, options, "url")?;
        let mut config = Config::from_str(url).map_err(|e| {
            invalid(format!(
                "option 'url' of connector 'postgres' is not a PostgreSQL connection URL \
                 (postgres://user:password@host:port/database): {e}"
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(invalid(
                "option 'url' of connector 'postgres' names no host (postgres://user:password@host:port/database)",
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("weir");
        }
        let table = required(CONNECTOR, options, "table")?.trim().to_string();
        if table.is_empty() || table.split('.').any(|p| p.trim().is_empty()) {
            return Err(invalid(format!(
                "option 'table' of connector 'postgres' must be a table name or schema.table, got '{table}'"
            )));
        }
        for field in input.schema.fields() {
            if pg_type(field.data_type()).is_none() {
                return Err(invalid(format!(
                    "column '{}' of '{}' has type {}, which the postgres sink cannot write; \
                     cast it in the view (to text, a number, a timestamp…)",
                    field.name(),
                    input.from,
                    field.data_type()
                )));
            }
        }
        let primary_key: Vec<String> = options
            .get("primary.key")
            .map(|v| {
                v.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut seen = HashSet::new();
        for column in &primary_key {
            if input.schema.index_of(column).is_err() {
                let names: Vec<&str> = input
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                return Err(invalid(format!(
                    "'primary.key' column '{column}' is not a column of '{}'; its columns: {}",
                    input.from,
                    names.join(", ")
                )));
            }
            if !seen.insert(column) {
                return Err(invalid(format!(
                    "'primary.key' names column '{column}' twice"
                )));
            }
        }
        if options.get("primary.key").is_some() && primary_key.is_empty() {
            return Err(invalid("option 'primary.key' names no column"));
        }
        if input.delivery == Delivery::Changes && primary_key.is_empty() {
            return Err(invalid(format!(
                "the postgres sink '{}' needs 'primary.key': the rows of '{}' change as its \
                 windows fill, so the sink upserts and deletes them by key. Name the columns \
                 that identify a row (e.g. 'primary.key' = 'window_start,category'), or give \
                 the view EMIT ON WINDOW CLOSE so that its rows are final and only appended",
                input.sink, input.from
            )));
        }
        let create_table =
            parsed(CONNECTOR, options, "create.table", "true or false")?.unwrap_or(false);
        let batch_size = parsed(
            CONNECTOR,
            options,
            "batch.size",
            "a number of rows (at least 1)",
        )?
        .unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(invalid(
                "option 'batch.size' of connector 'postgres' must be at least 1",
            ));
        }
        let retry_max_elapsed = match options.get("retry.max_elapsed") {
            None => DEFAULT_RETRY_MAX_ELAPSED,
            Some(v) => parse_duration(v).ok_or_else(|| {
                invalid(format!(
                    "option 'retry.max_elapsed' of connector 'postgres' must be a duration \
                     such as '30s', '500ms' or '5m', got '{v}'"
                ))
            })?,
        };
        Ok(PostgresSinkSpec {
            table,
            primary_key,
            create_table,
            batch_size,
            retry_max_elapsed,
            config,
        })
    }

    /// `host:port/database`, for messages (never the password).
    pub fn target(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("");
        format!("{host}:{port}/{db}")
    }

    /// Connects (retrying while the server cannot be reached, up to `retry.max_elapsed`),
    /// creates the table if asked, and checks that its columns take the input's.
    async fn writer(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        let key = self
            .primary_key
            .iter()
            .map(|c| input.schema.index_of(c))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let sql = Sql::new(&self.table, &input.schema, &key);
        let mut writer = PostgresWriter {
            spec: self.clone(),
            sink: input.sink.clone(),
            delivery: input.delivery,
            schema: Arc::clone(&input.schema),
            key,
            sql,
            conn: None,
            pending: Vec::new(),
            pending_rows: 0,
        };
        let started = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            match writer.connect(self.create_table).await {
                Ok(conn) => {
                    writer.conn = Some(conn);
                    return Ok(Box::new(writer));
                }
                Err(e) if !transient(&e) => {
                    return Err(invalid(format!(
                        "postgres sink '{}': table '{}' on {}: {}",
                        input.sink,
                        self.table,
                        self.target(),
                        pg_message(&e)
                    )));
                }
                Err(e) => {
                    let delay = backoff.delay();
                    if started.elapsed() + delay > self.retry_max_elapsed {
                        return Err(writer.gave_up("could not connect to", started, &e));
                    }
                    tracing::warn!(sink = %input.sink, "could not connect to PostgreSQL on {}, retrying: {}", self.target(), pg_message(&e));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl crate::sink::SinkConnector for PostgresSinkSpec {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn open(&self, input: &SinkInput) -> Result<Box<dyn SinkWriter>> {
        self.writer(input).await
    }
}

#[cfg(test)]
mod tests {
    use super::sql::texts;
    use super::*;
    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Date64Array, Decimal128Array, DictionaryArray, Float64Array,
        Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema, TimeUnit};

    fn input(delivery: Delivery) -> SinkInput {
        SinkInput {
            sink: "s".into(),
            from: "v".into(),
            schema: Arc::new(Schema::new(vec![
                Field::new(
                    "window_start",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                ),
                Field::new("category", DataType::Utf8, true),
                Field::new("revenue", DataType::Decimal128(12, 2), true),
            ])),
            delivery,
        }
    }

    fn options(pairs: &[(&str, &str)]) -> Options {
        let mut o = Options::default();
        o.0.insert("connector".into(), "postgres".into());
        o.0.insert(
            "url".into(),
            "postgres://u:secret@127.0.0.1:5433/shop".into(),
        );
        o.0.insert("table".into(), "revenue".into());
        for (k, v) in pairs {
            o.0.insert(k.to_string(), v.to_string());
        }
        o
    }

    fn err(delivery: Delivery, pairs: &[(&str, &str)]) -> String {
        PostgresSinkSpec::parse(&input(delivery), &options(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_every_option() {
        let spec = PostgresSinkSpec::parse(&input(Delivery::Append), &options(&[])).unwrap();
        assert!(spec.primary_key.is_empty());
        assert!(!spec.create_table);
        assert_eq!(spec.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(spec.retry_max_elapsed, DEFAULT_RETRY_MAX_ELAPSED);
        assert_eq!(spec.target(), "127.0.0.1:5433/shop");
        assert!(!format!("{spec:?}").contains("secret"));
        let spec = PostgresSinkSpec::parse(
            &input(Delivery::Changes),
            &options(&[
                ("primary.key", "window_start, category"),
                ("create.table", "true"),
                ("batch.size", "10"),
                ("retry.max_elapsed", "5s"),
            ]),
        )
        .unwrap();
        assert_eq!(spec.primary_key, vec!["window_start", "category"]);
        assert!(spec.create_table);
        assert_eq!(spec.batch_size, 10);
        assert_eq!(spec.retry_max_elapsed, Duration::from_secs(5));
    }

    #[test]
    fn bad_options_fail_naming_them() {
        let e = err(Delivery::Append, &[("primary_key", "x")]);
        assert!(
            e.contains("unknown option 'primary_key'") && e.contains("primary.key"),
            "{e}"
        );
        let e = err(Delivery::Append, &[("primary.key", "nope")]);
        assert!(
            e.contains("'nope' is not a column of 'v'") && e.contains("category"),
            "{e}"
        );
        let e = err(Delivery::Changes, &[]);
        assert!(
            e.contains("needs 'primary.key'") && e.contains("EMIT ON WINDOW CLOSE"),
            "{e}"
        );
        let e = err(Delivery::Append, &[("create.table", "yes")]);
        assert!(
            e.contains("'create.table'") && e.contains("true or false"),
            "{e}"
        );
        let e = err(Delivery::Append, &[("batch.size", "0")]);
        assert!(e.contains("'batch.size'"), "{e}");
        let e = err(Delivery::Append, &[("retry.max_elapsed", "soon")]);
        assert!(e.contains("'retry.max_elapsed'"), "{e}");
        let e = err(Delivery::Append, &[("url", "mysql://x")]);
        assert!(e.contains("'url'"), "{e}");
        let mut o = options(&[]);
        o.0.remove("table");
        let e = PostgresSinkSpec::parse(&input(Delivery::Append), &o).unwrap_err();
        assert!(e.to_string().contains("'table'"), "{e}");
    }

    #[test]
    fn arrow_types_map_to_postgres_types() {
        use DataType::*;
        let cases = [
            (Boolean, "boolean"),
            (Int16, "smallint"),
            (Int32, "integer"),
            (Int64, "bigint"),
            (UInt64, "numeric(20,0)"),
            (Float32, "real"),
            (Float64, "double precision"),
            (Decimal128(12, 2), "numeric(12,2)"),
            (Utf8, "text"),
            (Utf8View, "text"),
            (Binary, "bytea"),
            (Date32, "date"),
            (Timestamp(TimeUnit::Nanosecond, None), "timestamp"),
            (
                Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamptz",
            ),
            (Dictionary(Box::new(Int32), Box::new(Utf8)), "text"),
        ];
        for (t, pg) in cases {
            assert_eq!(pg_type(&t).as_deref(), Some(pg), "{t}");
        }
        assert_eq!(pg_type(&List(Arc::new(Field::new("x", Int64, true)))), None);
    }

    #[test]
    fn values_as_postgres_text() {
        let t = |a: ArrayRef| texts(&a).unwrap();
        assert_eq!(
            t(Arc::new(Int64Array::from(vec![Some(1), None]))),
            vec![Some("1".to_string()), None]
        );
        assert_eq!(
            t(Arc::new(BooleanArray::from(vec![true]))),
            vec![Some("true".to_string())]
        );
        assert_eq!(
            t(Arc::new(Float64Array::from(vec![1.5]))),
            vec![Some("1.5".to_string())]
        );
        let dec = Decimal128Array::from(vec![12345])
            .with_precision_and_scale(12, 2)
            .unwrap();
        assert_eq!(t(Arc::new(dec)), vec![Some("123.45".to_string())]);
        assert_eq!(
            t(Arc::new(
                TimestampMicrosecondArray::from(vec![1_000_001]).with_timezone("UTC")
            )),
            vec![Some("1970-01-01T00:00:01.000001Z".to_string())]
        );
        assert_eq!(
            t(Arc::new(Date64Array::from(vec![86_400_000]))),
            vec![Some("1970-01-02".to_string())]
        );
        assert_eq!(
            t(Arc::new(BinaryArray::from(vec![&b"\x01\xff"[..]]))),
            vec![Some("\\x01ff".to_string())]
        );
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        assert_eq!(t(Arc::new(dict))[2].as_deref(), Some("a"));
        assert_eq!(
            t(Arc::new(StringArray::from(vec![""]))),
            vec![Some(String::new())]
        );
    }

    #[test]
    fn statements_upsert_on_the_key() {
        let schema = input(Delivery::Changes).schema;
        let sql = Sql::new("shop.Revenue", &schema, &[0, 1]);
        assert_eq!(
            sql.create,
            "CREATE TABLE IF NOT EXISTS \"shop\".\"Revenue\" (\"window_start\" timestamp NOT NULL, \
             \"category\" text, \"revenue\" numeric(12,2), PRIMARY KEY (\"window_start\", \"category\"))"
        );
        assert_eq!(
            sql.write,
            "INSERT INTO \"shop\".\"Revenue\" (\"window_start\", \"category\", \"revenue\") \
             SELECT CAST(u.\"window_start\" AS timestamp), CAST(u.\"category\" AS text), \
             CAST(u.\"revenue\" AS numeric(12,2)) FROM unnest($1::text[], $2::text[], $3::text[]) \
             AS u(\"window_start\", \"category\", \"revenue\") ON CONFLICT (\"window_start\", \
             \"category\") DO UPDATE SET \"revenue\" = EXCLUDED.\"revenue\""
        );
        assert_eq!(
            sql.delete.as_deref(),
            Some(
                "DELETE FROM \"shop\".\"Revenue\" WHERE (\"window_start\", \"category\") IN \
                 (SELECT CAST(u.\"window_start\" AS timestamp), CAST(u.\"category\" AS text) \
                 FROM unnest($1::text[], $2::text[]) AS u(\"window_start\", \"category\"))"
            )
        );
        let append = Sql::new("t", &schema, &[]);
        assert!(!append.write.contains("ON CONFLICT"));
        assert!(append.delete.is_none());
        assert!(!append.create.contains("PRIMARY KEY"));
        let all_key = Sql::new("t", &schema, &[0, 1, 2]);
        assert!(all_key.write.ends_with("DO NOTHING"), "{}", all_key.write);
    }
}
