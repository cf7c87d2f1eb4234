//! Rewrites of exact client idioms that DataFusion cannot plan, applied to the text
//! before parsing. Each entry names the client that sends it; general PostgreSQL
//! rewrites live in `datafusion-pg-catalog`, this is only what it lacks.

use std::borrow::Cow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, SelectItem, SetExpr, Statement, Value, ValueWithSpan,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use regex::Regex;

/// Grafana's "schemas in the search path" sub-query (table and column pickers, the
/// legacy query builder). It unnests `current_setting('search_path')` with
/// `generate_series` over array bounds and a table-valued `string_to_array`; Weir's
/// search path is always `public`, so the sub-query is that one value.
const GRAFANA_SEARCH_PATH: &str = r#"SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END FROM generate_series( array_lower(string_to_array(current_setting('search_path'),','),1), array_upper(string_to_array(current_setting('search_path'),','),1) ) as i, string_to_array(current_setting('search_path'),',') s"#;

/// asyncpg's type introspection (`WITH RECURSIVE typeinfo_tree …`) relies on
/// correlated sub-queries DataFusion cannot run. Weir has no composite, domain or
/// range types, so the answer is the requested types and their array elements, with
/// the columns and order asyncpg reads (element types first, by `depth`).
const ASYNCPG_INTROSPECTION: &str = "\
SELECT * FROM (\
 SELECT t.oid AS oid, n.nspname AS ns, t.typname AS name, t.typtype AS kind, \
  t.typbasetype AS basetype, t.typelem AS elemtype, t.typdelim AS elemdelim, \
  CAST(NULL AS oid) AS range_subtype, CAST(NULL AS oid[]) AS attrtypoids, \
  CAST(NULL AS text[]) AS attrnames, 0 AS depth, CAST(NULL AS text) AS basetype_name, \
  CAST(NULL AS text) AS elemtype_name, CAST(NULL AS text) AS range_subtype_name \
 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
 WHERE t.oid = ANY($1::oid[]) \
 UNION ALL \
 SELECT t.oid, n.nspname, t.typname, t.typtype, t.typbasetype, t.typelem, t.typdelim, \
  CAST(NULL AS oid), CAST(NULL AS oid[]), CAST(NULL AS text[]), 1, CAST(NULL AS text), \
  CAST(NULL AS text), CAST(NULL AS text) \
 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
 WHERE t.oid IN (SELECT e.typelem FROM pg_catalog.pg_type e WHERE e.oid = ANY($1::oid[])) \
) AS typeinfo ORDER BY depth DESC";

/// A regex that matches `sql` with any white space between its tokens.
fn flexible(sql: &str) -> Regex {
    let mut pattern = String::from("(?i)");
    let mut pending_space = false;
    for c in sql.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space || !c.is_alphanumeric() {
            pattern.push_str(r"\s*");
        }
        pending_space = false;
        pattern.push_str(&regex::escape(&c.to_string()));
    }
    Regex::new(&pattern).expect("idiom pattern is valid")
}

static IDIOMS: LazyLock<Vec<(Regex, &'static str)>> =
    LazyLock::new(|| vec![(flexible(GRAFANA_SEARCH_PATH), "'public'")]);

/// `text` with every known idiom replaced.
pub fn rewrite(text: &str) -> Cow<'_, str> {
    if text.contains("typeinfo_tree") && text.contains("attrtypoids") {
        return Cow::Borrowed(ASYNCPG_INTROSPECTION);
    }
    let mut out = Cow::Borrowed(text);
    for (pattern, replacement) in IDIOMS.iter() {
        if pattern.is_match(&out) {
            out = Cow::Owned(pattern.replace_all(&out, *replacement).into_owned());
        }
    }
    out
}

/// Rewrites on the statement's syntax tree; the text is rebuilt only when one applied.
/// - `LIKE … ESCAPE '/'` over literal patterns (SQLAlchemy's schema listing): the
///   engine knows only backslash escapes, so the pattern is re-escaped.
/// - A select item that is a bare integer literal is `integer` in PostgreSQL, not
///   `bigint` (`SELECT 1`; node-postgres returns int8 as a string).
pub fn rewrite_tree(text: &str) -> Cow<'_, str> {
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, text) else {
        return Cow::Borrowed(text);
    };
    let [statement] = statements.as_mut_slice() else {
        return Cow::Borrowed(text);
    };
    let mut changed = int4_literals(statement);
    let mut escapes = LikeEscapes { changed: false };
    let _ = statement.visit(&mut escapes);
    changed |= escapes.changed;
    if changed {
        Cow::Owned(statement.to_string())
    } else {
        Cow::Borrowed(text)
    }
}

fn int4_literals(statement: &mut Statement) -> bool {
    let Statement::Query(query) = statement else {
        return false;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    let mut changed = false;
    for item in &mut select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        if let Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        }) = expr
            && n.parse::<i32>().is_ok()
        {
            *expr = Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(expr.clone()),
                data_type: DataType::Integer(None),
                array: false,
                format: None,
            };
            changed = true;
        }
    }
    changed
}

struct LikeEscapes {
    changed: bool,
}

impl VisitorMut for LikeEscapes {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> std::ops::ControlFlow<()> {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(ValueWithSpan {
                value: Value::SingleQuotedString(esc),
                ..
            }) = escape_char.as_ref()
            && let Some(esc) = single_char(esc)
            && esc != '\\'
            && literal_pattern(pattern)
        {
            reescape(pattern, esc);
            *escape_char = None;
            self.changed = true;
        }
        std::ops::ControlFlow::Continue(())
    }
}

fn single_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

/// Only string literals joined by `||` can be re-escaped ahead of time.
fn literal_pattern(e: &Expr) -> bool {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(_),
            ..
        }) => true,
        Expr::Nested(inner) => literal_pattern(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => literal_pattern(left) && literal_pattern(right),
        _ => false,
    }
}

fn reescape(e: &mut Expr, esc: char) {
    match e {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => {
            let mut out = String::with_capacity(s.len());
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                match c {
                    c if c == esc => match chars.next() {
                        Some(next) => {
                            out.push('\\');
                            out.push(next);
                        }
                        None => out.push(c),
                    },
                    '\\' => out.push_str("\\\\"),
                    c => out.push(c),
                }
            }
            *s = out;
        }
        Expr::Nested(inner) => reescape(inner, esc),
        Expr::BinaryOp { left, right, .. } => {
            reescape(left, esc);
            reescape(right, esc);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_search_path_becomes_public() {
        let q = "SELECT 1 WHERE quote_ident(table_schema) IN (\n  SELECT\n    CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END\n  FROM\n    generate_series(\n      array_lower(string_to_array(current_setting('search_path'),','),1),\n      array_upper(string_to_array(current_setting('search_path'),','),1)\n    ) as i,\n    string_to_array(current_setting('search_path'),',') s\n  )";
        assert_eq!(
            rewrite(q),
            "SELECT 1 WHERE quote_ident(table_schema) IN (\n  'public'\n  )"
        );
        assert!(matches!(rewrite("SELECT 1"), Cow::Borrowed(_)));
    }

    #[test]
    fn tree_rewrites() {
        assert_eq!(
            rewrite_tree("SELECT 1, 10000000000, 'x' AS s"),
            "SELECT CAST(1 AS INTEGER), 10000000000, 'x' AS s"
        );
        assert_eq!(
            rewrite_tree("SELECT n FROM t WHERE n NOT LIKE 'pg/_' || '%' ESCAPE '/'"),
            "SELECT n FROM t WHERE n NOT LIKE 'pg\\_' || '%'"
        );
        assert!(matches!(rewrite_tree("SELECT a FROM t"), Cow::Borrowed(_)));
    }
}
