//! PostgreSQL functions that clients call on connect and that neither DataFusion nor
//! the pg_catalog crates provide: `version()`, `current_setting()`, the advisory-lock
//! and session helpers. Values describe a PostgreSQL 16 server named Weir.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility, create_udf,
};
use datafusion::prelude::SessionContext;

/// The PostgreSQL release Weir answers as; psql and drivers pick their catalog queries by it.
pub const PG_VERSION: &str = "16.6";
/// `server_version_num` for [`PG_VERSION`].
pub const PG_VERSION_NUM: &str = "160006";

/// `server_version` as sent in the start-up parameters.
pub fn server_version() -> String {
    format!("{PG_VERSION} (Weir {})", env!("CARGO_PKG_VERSION"))
}

/// The text of `SELECT version()`; drivers match `PostgreSQL \d+\.\d+` in it.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (Weir {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// The value of a server setting as `current_setting` and `SHOW` report it.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => PG_VERSION,
        "server_version_num" => PG_VERSION_NUM,
        "search_path" => "public",
        "standard_conforming_strings" => "on",
        "client_encoding" | "server_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "off",
        "max_identifier_length" => "63",
        "max_index_keys" => "32",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => {
            "C.UTF-8"
        }
        "is_superuser" => "on",
        "application_name" => "",
        "extra_float_digits" => "1",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        "block_size" => "8192",
        "bytea_output" => "hex",
        // No JIT: asyncpg turns it off before introspecting types and reads it first.
        "jit" => "off",
        _ => return None,
    })
}

/// Register the functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version_string(),
            ))))
        }),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new()));
    // set_config(name, value, is_local) answers the value; settings live per session
    // in the PostgreSQL front (`SET`), so this only keeps drivers that call it working.
    ctx.register_udf(create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| Ok(args[1].clone())),
    ));
    // SQLAlchemy reads it for every column; Weir has no sequences.
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    // Pooled drivers (asyncpg) reset connections with these; Weir holds no advisory locks.
    ctx.register_udf(create_udf(
        "pg_advisory_unlock_all",
        vec![],
        DataType::Null,
        Volatility::Volatile,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Null))),
    ));
}

/// `current_setting(name [, missing_ok])`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl CurrentSetting {
    fn new() -> Self {
        CurrentSetting {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let missing_ok = matches!(
            args.args.get(1),
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
        );
        let lookup = |name: &str| -> datafusion::error::Result<Option<String>> {
            match setting(name) {
                Some(v) => Ok(Some(v.to_string())),
                None if missing_ok => Ok(None),
                None => exec_err!("unrecognized configuration parameter \"{name}\""),
            }
        };
        match &args.args[0] {
            ColumnarValue::Scalar(ScalarValue::Utf8(name)) => {
                let value = match name {
                    Some(n) => lookup(n)?,
                    None => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
            }
            ColumnarValue::Array(array) => {
                let names = array
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("signature is Utf8");
                let mut out = Vec::with_capacity(names.len());
                for i in 0..names.len() {
                    out.push(if names.is_null(i) {
                        None
                    } else {
                        lookup(names.value(i))?
                    });
                }
                Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
            }
            other => exec_err!("current_setting expects text, got {}", other.data_type()),
        }
    }
}
