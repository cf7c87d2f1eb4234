//! `information_schema` as PostgreSQL shows it, built as views over `pg_catalog`, so
//! that BI tools read PostgreSQL type names (`integer`, `timestamp with time zone`)
//! and `udt_name`s instead of Arrow's. Replaces DataFusion's own information schema.

use datafusion::prelude::SessionContext;

use crate::engine::DATABASE;
use crate::error::Result;

/// Relation kinds listed as tables, and how `table_type` names them.
const TABLE_TYPE: &str = "CASE c.relkind WHEN 'r' THEN 'BASE TABLE' WHEN 'p' THEN 'BASE TABLE' \
     WHEN 'm' THEN 'VIEW' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN' ELSE 'LOCAL TEMPORARY' END";

fn views() -> Vec<(&'static str, String)> {
    let db = DATABASE;
    vec![
        (
            "schemata",
            format!(
                "SELECT CAST('{db}' AS VARCHAR) AS catalog_name, CAST(n.nspname AS VARCHAR) AS schema_name, \
                 CAST('weir' AS VARCHAR) AS schema_owner, CAST(NULL AS VARCHAR) AS default_character_set_catalog, \
                 CAST(NULL AS VARCHAR) AS default_character_set_schema, CAST(NULL AS VARCHAR) AS default_character_set_name, \
                 CAST(NULL AS VARCHAR) AS sql_path \
                 FROM pg_catalog.pg_namespace n"
            ),
        ),
        (
            "tables",
            format!(
                "SELECT CAST('{db}' AS VARCHAR) AS table_catalog, CAST(n.nspname AS VARCHAR) AS table_schema, \
                 CAST(c.relname AS VARCHAR) AS table_name, CAST({TABLE_TYPE} AS VARCHAR) AS table_type, \
                 CAST(NULL AS VARCHAR) AS self_referencing_column_name, CAST(NULL AS VARCHAR) AS reference_generation, \
                 CAST(NULL AS VARCHAR) AS user_defined_type_catalog, CAST(NULL AS VARCHAR) AS user_defined_type_schema, \
                 CAST(NULL AS VARCHAR) AS user_defined_type_name, CAST('NO' AS VARCHAR) AS is_insertable_into, \
                 CAST('NO' AS VARCHAR) AS is_typed, CAST(NULL AS VARCHAR) AS commit_action \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            ),
        ),
        (
            "views",
            format!(
                "SELECT CAST('{db}' AS VARCHAR) AS table_catalog, CAST(n.nspname AS VARCHAR) AS table_schema, \
                 CAST(c.relname AS VARCHAR) AS table_name, CAST(NULL AS VARCHAR) AS view_definition, \
                 CAST('NONE' AS VARCHAR) AS check_option, CAST('NO' AS VARCHAR) AS is_updatable, \
                 CAST('NO' AS VARCHAR) AS is_insertable_into, CAST('NO' AS VARCHAR) AS is_trigger_updatable, \
                 CAST('NO' AS VARCHAR) AS is_trigger_deletable, CAST('NO' AS VARCHAR) AS is_trigger_insertable_into \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
                 WHERE c.relkind = 'v'"
            ),
        ),
        (
            "columns",
            format!(
                "SELECT CAST('{db}' AS VARCHAR) AS table_catalog, CAST(n.nspname AS VARCHAR) AS table_schema, \
                 CAST(c.relname AS VARCHAR) AS table_name, CAST(a.attname AS VARCHAR) AS column_name, \
                 CAST(a.attnum AS INT) AS ordinal_position, CAST(NULL AS VARCHAR) AS column_default, \
                 CAST(CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS VARCHAR) AS is_nullable, \
                 CAST(format_type(a.atttypid, NULL) AS VARCHAR) AS data_type, \
                 CAST(NULL AS INT) AS character_maximum_length, CAST(NULL AS INT) AS character_octet_length, \
                 CAST(CASE CAST(a.atttypid AS INT) WHEN 21 THEN 16 WHEN 23 THEN 32 WHEN 20 THEN 64 \
                      WHEN 700 THEN 24 WHEN 701 THEN 53 ELSE NULL END AS INT) AS numeric_precision, \
                 CAST(CASE WHEN CAST(a.atttypid AS INT) IN (21, 23, 20) THEN 2 \
                      WHEN CAST(a.atttypid AS INT) IN (700, 701, 1700) THEN 2 ELSE NULL END AS INT) AS numeric_precision_radix, \
                 CAST(CASE WHEN CAST(a.atttypid AS INT) IN (21, 23, 20) THEN 0 ELSE NULL END AS INT) AS numeric_scale, \
                 CAST(CASE WHEN CAST(a.atttypid AS INT) IN (1082) THEN 0 \
                      WHEN CAST(a.atttypid AS INT) IN (1083, 1114, 1184, 1266) THEN 6 ELSE NULL END AS INT) AS datetime_precision, \
                 CAST(NULL AS VARCHAR) AS interval_type, \
                 CAST('{db}' AS VARCHAR) AS udt_catalog, CAST('pg_catalog' AS VARCHAR) AS udt_schema, \
                 CAST(t.typname AS VARCHAR) AS udt_name, \
                 CAST('NO' AS VARCHAR) AS is_identity, CAST('NEVER' AS VARCHAR) AS is_generated, \
                 CAST('NO' AS VARCHAR) AS is_updatable \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON a.attrelid = c.oid \
                 JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
                 LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                 WHERE a.attnum > 0 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            ),
        ),
    ]
}

/// Create the `information_schema` schema and its views on `ctx`.
pub async fn install(ctx: &SessionContext) -> Result<()> {
    ctx.sql(&format!(
        "CREATE SCHEMA IF NOT EXISTS {DATABASE}.information_schema"
    ))
    .await?
    .collect()
    .await?;
    for (name, query) in views() {
        ctx.sql(&format!(
            "CREATE VIEW {DATABASE}.information_schema.{name} AS {query}"
        ))
        .await?
        .collect()
        .await?;
    }
    Ok(())
}
