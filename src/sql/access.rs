//! Who may run what: the two roles (`admin`, `reader`), which statements each may run,
//! and the settings that belong to the server rather than to a session. Both ports ask
//! here, so the same statement gets the same answer on each.

use std::fmt;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, SetExpr};

use super::streaming::StreamingStatement;
use super::{Statement, parse_postgres};
use crate::error::{Result, WeirError};

/// What a logged-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: DDL, `COPY`, sinks, `FLUSH`, `CHECKPOINT`, writes.
    Admin,
    /// Queries, `SUBSCRIBE`, `SHOW`, `EXPLAIN` of a query, session settings, transactions.
    Reader,
}

impl Role {
    /// `admin` or `reader`, as the users file spells it.
    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// May `role` run `statement`? `Err` (42501) names what was refused. `SET` of a server
/// setting is refused whatever the role.
pub fn check(role: Role, statement: &Statement) -> Result<()> {
    if let Some(name) = server_setting(statement) {
        return Err(WeirError::InsufficientPrivilege(format!(
            "\"{name}\" is a setting of the server, not of a session: set it in weir.toml"
        )));
    }
    if role == Role::Admin || reads_only(statement) {
        return Ok(());
    }
    Err(WeirError::InsufficientPrivilege(format!(
        "permission denied: role {role} may query, SUBSCRIBE and SHOW; {} needs the admin role",
        what(statement)
    )))
}

/// Does the statement only read (queries, `SHOW`, `SUBSCRIBE`, session statements)?
fn reads_only(statement: &Statement) -> bool {
    match statement {
        Statement::ShowTables | Statement::Show(_) | Statement::Accepted(_) => true,
        Statement::Streaming(s, _) => matches!(
            s.as_ref(),
            StreamingStatement::Subscribe { .. } | StreamingStatement::Show(_)
        ),
        Statement::DataFusion(df, _) => df_reads_only(df),
        // A statement that does not parse is refused by the planner anyway.
        Statement::Postgres(text) => parse_postgres(text).is_ok_and(|df| df_reads_only(&df)),
    }
}

fn df_reads_only(statement: &DFStatement) -> bool {
    match statement {
        DFStatement::Statement(s) => ast_reads_only(s),
        DFStatement::Explain(e) => df_reads_only(&e.statement),
        // `CREATE EXTERNAL TABLE`, `COPY … TO` and the rest change something.
        _ => false,
    }
}

fn ast_reads_only(statement: &ast::Statement) -> bool {
    use ast::Statement as S;
    match statement {
        S::Query(q) => query_reads_only(q),
        S::Explain { statement, .. } => ast_reads_only(statement),
        S::ExplainTable { .. }
        | S::ShowVariable { .. }
        | S::ShowVariables { .. }
        | S::ShowTables { .. }
        | S::ShowColumns { .. }
        | S::ShowCreate { .. }
        | S::ShowFunctions { .. }
        | S::ShowSchemas { .. }
        | S::ShowDatabases { .. }
        | S::ShowCatalogs { .. }
        | S::ShowViews { .. }
        | S::ShowObjects { .. }
        | S::ShowStatus { .. }
        | S::ShowCollation { .. }
        | S::Set(_)
        | S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. }
        | S::Fetch { .. }
        | S::Close { .. }
        | S::Deallocate { .. }
        | S::Discard { .. } => true,
        S::Declare { stmts } => stmts
            .iter()
            .all(|d| d.for_query.as_ref().is_none_or(|q| query_reads_only(q))),
        S::Prepare { statement, .. } => ast_reads_only(statement),
        // The statement it runs was checked when it was prepared.
        S::Execute { .. } => true,
        _ => false,
    }
}

/// A query reads, unless it is `SELECT … INTO` (which creates a table).
fn query_reads_only(query: &ast::Query) -> bool {
    match query.body.as_ref() {
        SetExpr::Select(select) => select.into.is_none(),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => false,
        _ => true,
    }
}

/// The name of a server setting the statement would `SET`, if it is one: DataFusion's
/// own (`datafusion.*`: the memory pool, spill folder and planner options every session
/// and view shares) and `ROLE`/`SESSION AUTHORIZATION`.
pub fn server_setting(statement: &Statement) -> Option<String> {
    let parsed;
    let ast = match statement {
        Statement::Postgres(text) if may_be_set(text) => {
            parsed = parse_postgres(text).ok()?;
            match &parsed {
                DFStatement::Statement(s) => s.as_ref(),
                _ => return None,
            }
        }
        Statement::DataFusion(df, _) => match df.as_ref() {
            DFStatement::Statement(s) => s.as_ref(),
            _ => return None,
        },
        _ => return None,
    };
    let ast::Statement::Set(set) = ast else {
        return None;
    };
    let names: Vec<String> = match set {
        ast::Set::SingleAssignment { variable, .. } => vec![variable.to_string()],
        ast::Set::ParenthesizedAssignments { variables, .. } => {
            variables.iter().map(ToString::to_string).collect()
        }
        ast::Set::MultipleAssignments { assignments } => {
            assignments.iter().map(|a| a.name.to_string()).collect()
        }
        ast::Set::SetRole { .. } => vec!["role".into()],
        ast::Set::SetSessionAuthorization(_) => vec!["session_authorization".into()],
        _ => Vec::new(),
    };
    names.into_iter().find(|n| {
        let n = n.trim_matches('"').to_ascii_lowercase();
        n.starts_with("datafusion.") || n == "role" || n == "session_authorization"
    })
}

/// The zone of `SET TIME ZONE …` or `SET timezone = …`, which only the session's own
/// state may take (DataFusion would set it for every session).
pub fn time_zone_set(statement: &Statement) -> Option<String> {
    let Statement::Postgres(text) = statement else {
        return None;
    };
    if !may_be_set(text) || !contains_word(text, "ZONE") {
        return None;
    }
    let DFStatement::Statement(ast) = parse_postgres(text).ok()? else {
        return None;
    };
    let ast::Statement::Set(set) = *ast else {
        return None;
    };
    let value = match set {
        ast::Set::SetTimeZone { value, .. } => value,
        ast::Set::SingleAssignment {
            variable, values, ..
        } if matches!(
            variable
                .to_string()
                .trim_matches('"')
                .to_ascii_lowercase()
                .as_str(),
            "timezone" | "time_zone" | "time.zone"
        ) && values.len() == 1 =>
        {
            values.into_iter().next()?
        }
        _ => return None,
    };
    let text = value.to_string();
    Some(text.trim_matches('\'').trim_matches('"').to_string())
}

/// Could `text` be a `SET`? Queries, which never contain the word, are not parsed again.
fn may_be_set(text: &str) -> bool {
    contains_word(text, "SET")
}

/// Does `text` contain `word` (upper-case ASCII), in any case?
fn contains_word(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// A short name for a refused statement, for the error: its leading keywords
/// (`DROP TABLE`, `CREATE MATERIALIZED VIEW`, `COPY`).
fn what(statement: &Statement) -> String {
    const KEYWORDS: &[&str] = &[
        "CREATE",
        "DROP",
        "ALTER",
        "OR",
        "REPLACE",
        "MATERIALIZED",
        "VIEW",
        "TABLE",
        "EXTERNAL",
        "UNBOUNDED",
        "SOURCE",
        "SINK",
        "INSERT",
        "INTO",
        "UPDATE",
        "DELETE",
        "FROM",
        "COPY",
        "FLUSH",
        "CHECKPOINT",
        "TRUNCATE",
        "SCHEMA",
        "DATABASE",
        "INDEX",
        "FUNCTION",
        "EXPLAIN",
        "ANALYZE",
        "MERGE",
        "PREPARE",
    ];
    let text = match statement {
        Statement::DataFusion(_, text)
        | Statement::Streaming(_, text)
        | Statement::Postgres(text) => text.as_str(),
        _ => "",
    };
    let words: Vec<String> = text
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .take_while(|w| KEYWORDS.contains(&w.as_str()))
        .collect();
    if words.is_empty() {
        "this statement".into()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::classify;

    fn reader(sql: &str) -> &'static str {
        match check(Role::Reader, &classify(sql).unwrap()) {
            Ok(()) => "ok",
            Err(e) => e.sqlstate(),
        }
    }

    #[test]
    fn readers_query_and_admins_change() {
        for ok in [
            "SELECT 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "EXPLAIN SELECT 1",
            "SHOW TABLES",
            "SHOW SOURCES",
            "SHOW MATERIALIZED VIEWS",
            "SHOW search_path",
            "SUBSCRIBE v",
            "BEGIN",
            "COMMIT",
            "SET application_name = 'x'",
            "SET statement_timeout = 1000",
            "DISCARD ALL",
            "SELECT * FROM pg_catalog.pg_class",
        ] {
            assert_eq!(reader(ok), "ok", "{ok}");
        }
        for refused in [
            "CREATE TABLE t (a INT)",
            "CREATE TABLE t AS SELECT 1",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "DELETE FROM t",
            "DROP TABLE t",
            "CREATE VIEW v AS SELECT 1",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/tmp/x.csv'",
            "COPY (SELECT 1) TO '/tmp/x.parquet'",
            "CREATE SOURCE s WITH (connector = 'datagen')",
            "CREATE MATERIALIZED VIEW m AS SELECT 1",
            "CREATE SINK k FROM m WITH (connector = 'parquet', path = '/tmp/k/')",
            "DROP SOURCE s",
            "FLUSH",
            "CHECKPOINT",
            "EXPLAIN ANALYZE INSERT INTO t VALUES (1)",
        ] {
            assert_eq!(reader(refused), "42501", "{refused}");
        }
        let e = check(Role::Reader, &classify("DROP TABLE t").unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("; DROP TABLE needs the admin role"),
            "{e}"
        );
        assert!(check(Role::Admin, &classify("DROP TABLE t").unwrap()).is_ok());
    }

    #[test]
    fn server_settings_are_refused_to_everyone() {
        for sql in [
            "SET datafusion.runtime.memory_limit = '1G'",
            "SET datafusion.execution.batch_size = 1",
            "SET \"datafusion.runtime.temp_directory\" = '/tmp'",
            "SET ROLE admin",
            "SET SESSION AUTHORIZATION admin",
        ] {
            let e = check(Role::Admin, &classify(sql).unwrap()).unwrap_err();
            assert_eq!(e.sqlstate(), "42501", "{sql}");
        }
        assert!(check(Role::Admin, &classify("SET TIME ZONE 'UTC'").unwrap()).is_ok());
    }
}
