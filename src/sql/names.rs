//! Output column names as PostgreSQL gives them to unaliased select items
//! (`count(*)` → `count`, `1` → `?column?`, `x::text` → `x`, `1::bigint` → `int8`).
//! DataFusion names such columns after the whole expression; clients that read
//! `row["count"]` need PostgreSQL's names. Only the names on the wire change.

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SelectItem, SetExpr, Statement as SQLStatement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

const UNNAMED: &str = "?column?";

/// For a query, the PostgreSQL name of each output column (`None`: keep the engine's,
/// e.g. for aliased items). `None` overall when it cannot be known from the text alone
/// (wildcards, not a query).
pub fn output_names(sql: &str) -> Option<Vec<Option<String>>> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    match statements.pop()? {
        SQLStatement::Query(q) => query_names(&q),
        _ => None,
    }
}

fn query_names(q: &Query) -> Option<Vec<Option<String>>> {
    set_expr_names(&q.body)
}

fn set_expr_names(body: &SetExpr) -> Option<Vec<Option<String>>> {
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) => Some(Some(expr_name(e))),
                SelectItem::ExprWithAlias { .. } => Some(None),
                _ => None,
            })
            .collect(),
        SetExpr::Query(q) => query_names(q),
        SetExpr::SetOperation { left, .. } => set_expr_names(left),
        _ => None,
    }
}

fn expr_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(id) => id.value.clone(),
        Expr::CompoundIdentifier(ids) => ids
            .last()
            .map(|i| i.value.clone())
            .unwrap_or_else(|| UNNAMED.into()),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_lowercase())
            .unwrap_or_else(|| UNNAMED.into()),
        Expr::Nested(inner) => expr_name(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match expr_name(expr) {
            name if name == UNNAMED => type_name(&data_type.to_string()),
            name => name,
        },
        Expr::Case { .. } => "case".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Subquery(q) => query_names(q)
            .and_then(|names| names.into_iter().next().flatten())
            .unwrap_or_else(|| UNNAMED.into()),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        _ => UNNAMED.into(),
    }
}

/// PostgreSQL's internal name for a type as written in a cast.
fn type_name(written: &str) -> String {
    let lower = written.to_lowercase();
    let base = lower.split('(').next().unwrap_or(&lower).trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "character varying" | "varchar" => "varchar",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp without time zone" | "timestamp" => "timestamp",
        "decimal" | "numeric" => "numeric",
        other => other,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        output_names(sql)
            .unwrap()
            .into_iter()
            .map(|n| n.unwrap_or_else(|| "<alias>".into()))
            .collect()
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(
            names(
                "SELECT count(*), max(t.id), 1, 'x', upper(min(label)), amount::text, 1::bigint, x AS y FROM t"
            ),
            [
                "count", "max", "?column?", "?column?", "upper", "amount", "int8", "<alias>"
            ]
        );
        assert_eq!(
            names("SELECT a + 1, CASE WHEN a THEN 1 END, (SELECT max(b) FROM u) FROM t"),
            ["?column?", "case", "max"]
        );
        assert!(output_names("SELECT * FROM t").is_none());
        assert!(output_names("CREATE VIEW v AS SELECT 1").is_none());
    }
}
