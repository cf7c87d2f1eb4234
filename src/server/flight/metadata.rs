//! The Flight SQL metadata calls: SqlInfo (what Weir advertises about itself and its SQL),
//! catalogs, schemas, tables (with their Arrow schemas) and table types, all read from the
//! engine's DataFusion catalog, and the empty key listings (Weir has no keys).

use std::sync::{Arc, LazyLock};

use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder, SqlInfoData, SqlInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedSubqueries,
    SqlSupportedTransaction, SqlSupportedUnions, SupportedSqlGrammar,
};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::TableType;
use datafusion::prelude::SessionContext;

use super::flight_schema;
use crate::error::{Result, WeirError};

/// The arrow-rs release line Weir is built with (Cargo.toml; DataFusion's).
const ARROW_VERSION: &str = "59";

/// The table types GetTables reports, as `information_schema.tables` sorts them:
/// materialized views are views there too.
pub const TABLE: &str = "TABLE";
pub const VIEW: &str = "VIEW";
pub const TEMPORARY: &str = "LOCAL TEMPORARY";

fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::Base => TABLE,
        TableType::View => VIEW,
        TableType::Temporary => TEMPORARY,
    }
}

/// What GetSqlInfo answers: the server, and the SQL it speaks (PostgreSQL's dialect over
/// DataFusion, autocommit, no transactions).
pub static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let bits = |values: &[i32]| values.iter().fold(0i32, |acc, v| acc | (1 << v));
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Weir");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, ARROW_VERSION);
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        bits(&[
            SqlSupportedGroupBy::SqlGroupByUnrelated as i32,
            SqlSupportedGroupBy::SqlGroupByBeyondSelect as i32,
        ]),
    );
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        // SupportedAnsi92SqlGrammarLevel::Ansi92EntrySql (not re-exported by arrow-flight).
        bits(&[0]),
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "function");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    b.append(SqlInfo::SqlMaxColumnNameLength, 63i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 63i64);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("SqlInfo values of the declared types")
});

/// A metadata builder's failure (an Arrow error inside).
fn built(e: arrow_flight::error::FlightError) -> WeirError {
    WeirError::Internal(format!("building a metadata answer: {e}"))
}

/// GetCatalogs: the one database.
pub fn catalogs(ctx: &SessionContext) -> Result<RecordBatch> {
    let mut b = GetCatalogsBuilder::new();
    for name in ctx.catalog_names() {
        b.append(name);
    }
    b.build().map_err(built)
}

/// GetDbSchemas, with its catalog and schema-pattern filters.
pub fn schemas(ctx: &SessionContext, cmd: CommandGetDbSchemas) -> Result<RecordBatch> {
    let mut b = GetDbSchemasBuilder::new(cmd.catalog, cmd.db_schema_filter_pattern);
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema in catalog.schema_names() {
            b.append(&catalog_name, schema);
        }
    }
    b.build().map_err(built)
}

/// GetTables: every table, view, materialized view and source of every schema, filtered
/// by catalog, schema and table-name patterns and table types; with `include_schema`,
/// each one's Arrow schema as queries return it.
pub async fn tables(ctx: &SessionContext, cmd: CommandGetTables) -> Result<RecordBatch> {
    let include_schema = cmd.include_schema;
    let wanted_catalog = cmd.catalog.clone();
    let wanted_types = cmd.table_types.clone();
    let mut b = GetTablesBuilder::new(
        cmd.catalog,
        cmd.db_schema_filter_pattern,
        cmd.table_name_filter_pattern,
        cmd.table_types,
        include_schema,
    );
    for catalog_name in ctx.catalog_names() {
        if wanted_catalog.as_ref().is_some_and(|c| *c != catalog_name) {
            continue;
        }
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for name in names {
                // A table can go between listing and reading it (a concurrent DROP).
                let Ok(Some(table)) = schema.table(&name).await else {
                    continue;
                };
                let kind = table_type_name(table.table_type());
                if !wanted_types.is_empty() && !wanted_types.iter().any(|t| t == kind) {
                    continue;
                }
                let arrow_schema = if include_schema {
                    flight_schema(&table.schema())
                } else {
                    Arc::new(Schema::empty())
                };
                b.append(&catalog_name, &schema_name, &name, kind, &arrow_schema)
                    .map_err(built)?;
            }
        }
    }
    b.build().map_err(built)
}

/// GetTableTypes.
pub fn table_types() -> Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "table_type",
        DataType::Utf8,
        false,
    )]));
    let column: ArrayRef = Arc::new(StringArray::from(vec![TABLE, VIEW, TEMPORARY]));
    Ok(RecordBatch::try_new(schema, vec![column])?)
}

/// The schema of GetPrimaryKeys, GetExportedKeys and GetImportedKeys answers (Weir
/// declares no keys, so they come back with no rows).
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The schema of GetExportedKeys, GetImportedKeys and GetCrossReference answers.
pub fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::CommandGetSqlInfo;
    use datafusion::arrow::array::{Array, BinaryArray};
    use datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer;

    use crate::engine::Engine;

    fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
        let a = batch.column_by_name(column).unwrap();
        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
        (0..a.len()).map(|i| a.value(i).to_string()).collect()
    }

    #[tokio::test]
    async fn tables_filter_by_pattern_and_type_and_carry_schemas() {
        let engine = Engine::new().await.unwrap();
        let ctx = engine.context();
        ctx.sql("CREATE TABLE t_one AS VALUES (1, 'a')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        ctx.sql("CREATE VIEW v_one AS SELECT column1 AS n FROM t_one")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let get = |pattern: &str, types: Vec<&str>, include_schema| CommandGetTables {
            catalog: Some("weir".into()),
            db_schema_filter_pattern: Some("pub%".into()),
            table_name_filter_pattern: Some(pattern.into()),
            table_types: types.into_iter().map(String::from).collect(),
            include_schema,
        };
        let all = tables(ctx, get("%_one", vec![], true)).await.unwrap();
        assert_eq!(strings(&all, "table_name"), ["t_one", "v_one"]);
        assert_eq!(strings(&all, "table_type"), ["TABLE", "VIEW"]);
        assert_eq!(strings(&all, "db_schema_name"), ["public", "public"]);
        let ipc = all.column_by_name("table_schema").unwrap();
        let ipc = ipc.as_any().downcast_ref::<BinaryArray>().unwrap();
        let view_schema = try_schema_from_ipc_buffer(ipc.value(1)).unwrap();
        assert_eq!(view_schema.field(0).name(), "n");
        assert_eq!(view_schema.field(0).data_type(), &DataType::Int64);

        let views = tables(ctx, get("%", vec!["VIEW"], false)).await.unwrap();
        assert!(views.column_by_name("table_schema").is_none());
        let names = strings(&views, "table_name");
        assert!(names.contains(&"v_one".to_string()), "{names:?}");
        assert!(!names.contains(&"t_one".to_string()), "{names:?}");
    }

    #[tokio::test]
    async fn schemas_and_catalogs_list_the_one_database() {
        let engine = Engine::new().await.unwrap();
        let ctx = engine.context();
        assert_eq!(strings(&catalogs(ctx).unwrap(), "catalog_name"), ["weir"]);
        let all = schemas(
            ctx,
            CommandGetDbSchemas {
                catalog: None,
                db_schema_filter_pattern: None,
            },
        )
        .unwrap();
        let names = strings(&all, "db_schema_name");
        for s in ["information_schema", "pg_catalog", "public", "weir_catalog"] {
            assert!(names.contains(&s.to_string()), "{names:?}");
        }
        let some = schemas(
            ctx,
            CommandGetDbSchemas {
                catalog: Some("weir".into()),
                db_schema_filter_pattern: Some("pub%".into()),
            },
        )
        .unwrap();
        assert_eq!(strings(&some, "db_schema_name"), ["public"]);
    }

    #[test]
    fn sql_info_names_the_server() {
        let batch = CommandGetSqlInfo {
            info: vec![SqlInfo::FlightSqlServerName as u32],
        }
        .into_builder(&SQL_INFO)
        .build()
        .unwrap();
        assert_eq!(batch.num_rows(), 1);
        let all = CommandGetSqlInfo { info: vec![] }
            .into_builder(&SQL_INFO)
            .build()
            .unwrap();
        assert!(all.num_rows() > 40, "{}", all.num_rows());
    }
}
