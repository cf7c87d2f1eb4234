//! Statement text: splitting a script into statements with their line numbers, and
//! sorting each statement into what Weir runs itself and what goes to the
//! PostgreSQL-compatible DataFusion front. Parsing only; nothing here executes.

pub mod access;
pub mod compat;
pub mod depth;
pub mod loader;
pub mod names;
pub mod redact;
pub mod streaming;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::error::{Result, WeirError};

/// One statement of a script, without its terminating `;`.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlText {
    /// 1-based line of the statement's first token in the script.
    pub line: u64,
    pub text: String,
}

/// A statement sorted by who runs it.
#[derive(Debug, Clone)]
pub enum Statement {
    /// DataFusion's own extensions (`CREATE EXTERNAL TABLE`, `COPY … TO`), parsed by its parser and
    /// run by the engine so locations can be resolved and object stores registered.
    DataFusion(Box<DFStatement>, String),
    /// `SHOW TABLES`: the user's tables and views in `public`.
    ShowTables,
    /// `SHOW name`: a server or session setting, by its canonical lower-case name.
    Show(String),
    /// Session statements that PostgreSQL drivers send and that have nothing to do in
    /// Weir (`UNLISTEN *`, `RESET ALL`, `DISCARD ALL`); answered with their tag.
    Accepted(&'static str),
    /// Streaming DDL (`CREATE SOURCE`, `CREATE MATERIALIZED VIEW`, `CREATE SINK`, `FLUSH`, `SHOW SOURCES`,
    /// `DROP SOURCE`…), with the statement's text.
    Streaming(Box<streaming::StreamingStatement>, String),
    /// Everything else: PostgreSQL-dialect SQL (queries, `CREATE VIEW`, `DROP`, `SET`…).
    Postgres(String),
}

fn tokenize(script: &str) -> Result<Vec<TokenWithSpan>> {
    Tokenizer::new(&PostgreSqlDialect {}, script)
        .tokenize_with_location()
        .map_err(|e| WeirError::Syntax(e.to_string()))
}

fn is_trivia(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Byte offset of each line start, to turn the tokenizer's (line, column) into slices.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// Byte offset of a 1-based (line, column-in-characters) location.
    fn offset(&self, line: u64, column: u64) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1) as usize) else {
            return self.text.len();
        };
        self.text[start..]
            .char_indices()
            .nth(column.saturating_sub(1) as usize)
            .map(|(i, _)| start + i)
            .unwrap_or(self.text.len())
    }
}

/// Split a script at top-level semicolons. Comment-only and empty pieces are dropped,
/// so `-- ping` yields no statement at all.
pub fn split_statements(script: &str) -> Result<Vec<SqlText>> {
    let tokens = tokenize(script)?;
    let index = LineIndex::new(script);
    let mut out = Vec::new();
    let mut first: Option<&TokenWithSpan> = None;
    let mut last: Option<&TokenWithSpan> = None;
    let mut flush = |first: Option<&TokenWithSpan>, last: Option<&TokenWithSpan>| {
        if let (Some(f), Some(l)) = (first, last) {
            let start = index.offset(f.span.start.line, f.span.start.column);
            let end = index.offset(l.span.end.line, l.span.end.column);
            out.push(SqlText {
                line: f.span.start.line,
                text: script[start..end].to_string(),
            });
        }
    };
    for t in &tokens {
        match &t.token {
            Token::SemiColon => {
                flush(first.take(), last.take());
            }
            Token::EOF => {}
            tok if is_trivia(tok) => {}
            _ => {
                first.get_or_insert(t);
                last = Some(t);
            }
        }
    }
    flush(first, last);
    Ok(out)
}

/// A statement written with `?` placeholders (the style of JDBC and ADBC clients) with
/// them numbered `$1`, `$2`… in order, as PostgreSQL and the planner take them. A
/// statement that already has `$n` placeholders, or no `?`, comes back unchanged; a `?`
/// inside a string or a comment is no placeholder.
pub fn numbered_placeholders(text: &str) -> Result<std::borrow::Cow<'_, str>> {
    let tokens = tokenize(text)?;
    if tokens
        .iter()
        .any(|t| matches!(&t.token, Token::Placeholder(p) if p.starts_with('$')))
    {
        return Ok(text.into());
    }
    let index = LineIndex::new(text);
    let marks: Vec<usize> = tokens
        .iter()
        .filter(|t| {
            matches!(&t.token, Token::Question)
                || matches!(&t.token, Token::Placeholder(p) if p == "?")
        })
        .map(|t| index.offset(t.span.start.line, t.span.start.column))
        .collect();
    if marks.is_empty() {
        return Ok(text.into());
    }
    let mut out = String::with_capacity(text.len() + 2 * marks.len());
    let mut last = 0;
    for (n, at) in marks.into_iter().enumerate() {
        out.push_str(&text[last..at]);
        out.push_str(&format!("${}", n + 1));
        last = at + 1;
    }
    out.push_str(&text[last..]);
    Ok(out.into())
}

/// The leading keywords of a statement, upper-case, comments skipped.
fn leading_words(tokens: &[TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .take(n)
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect()
}

/// Sort one statement (as produced by [`split_statements`]).
pub fn classify(text: &str) -> Result<Statement> {
    let tokens = tokenize(text)?;
    // Before anything parses it into a tree: too deep a tree is refused (54001).
    depth::check(text, &tokens)?;
    let words = leading_words(&tokens, 6);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    // `COPY (query) TO 'location'` writes files; PostgreSQL's COPY … TO STDOUT is not it.
    let copy_to_files = w.first().is_some_and(|w| *w == "COPY") && {
        let upper = text.to_ascii_uppercase();
        !upper.contains("STDOUT") && !upper.contains("STDIN")
    };
    let external = copy_to_files
        || matches!(
            w.as_slice(),
            ["CREATE", "EXTERNAL", ..]
                | ["CREATE", "UNBOUNDED", "EXTERNAL", ..]
                | ["CREATE", "OR", "REPLACE", "EXTERNAL", ..]
                | ["CREATE", "OR", "REPLACE", "UNBOUNDED", "EXTERNAL", ..]
        );
    let streaming_form = matches!(
        w.as_slice(),
        ["CREATE", "SOURCE", ..]
            | ["CREATE", "SINK", ..]
            | ["CREATE", "MATERIALIZED", ..]
            | ["FLUSH", ..]
            | ["CHECKPOINT", ..]
            | ["SUBSCRIBE", ..]
            | ["SHOW", "SOURCES", ..]
            | ["SHOW", "MATERIALIZED", "VIEWS", ..]
            | ["SHOW", "SINKS", ..]
            | ["DROP", "SOURCE", ..]
            | ["DROP", "MATERIALIZED", ..]
            | ["DROP", "SINK", ..]
            | ["ALTER", "MATERIALIZED", ..]
            | ["ALTER", "SINK", ..]
    );
    if streaming_form && let Some(statement) = streaming::parse(text)? {
        return Ok(Statement::Streaming(Box::new(statement), text.to_string()));
    }
    if external {
        let mut parsed = DFParser::parse_sql_with_dialect(text, &PostgreSqlDialect {})
            .map_err(|e| WeirError::Syntax(e.to_string()))?;
        return match parsed.len() {
            1 => Ok(Statement::DataFusion(
                Box::new(parsed.pop_front().expect("one statement")),
                text.to_string(),
            )),
            _ => Err(WeirError::Syntax("expected exactly one statement".into())),
        };
    }
    if matches!(w.as_slice(), ["SHOW", "TABLES"]) {
        return Ok(Statement::ShowTables);
    }
    match w.as_slice() {
        ["UNLISTEN", ..] => return Ok(Statement::Accepted("UNLISTEN")),
        ["RESET", ..] => return Ok(Statement::Accepted("RESET")),
        ["DISCARD", ..] => return Ok(Statement::Accepted("DISCARD ALL")),
        _ => {}
    }
    if let ["SHOW", rest @ ..] = w.as_slice() {
        let name = rest.join("_").to_ascii_lowercase();
        match name.as_str() {
            // Session state that the PostgreSQL front keeps itself.
            "time_zone" | "timezone" | "statement_timeout" | "catalogs" | "all" => {}
            "transaction_isolation_level" => {
                return Ok(Statement::Show("transaction_isolation".into()));
            }
            _ if rest.len() == 1 => return Ok(Statement::Show(name)),
            _ => {}
        }
    }
    let text = compat::rewrite(text);
    Ok(Statement::Postgres(
        compat::rewrite_tree(&text).into_owned(),
    ))
}

/// Parse PostgreSQL-dialect text into DataFusion's statement form, applying the
/// rewrites that let DataFusion run what PostgreSQL clients send.
pub fn parse_postgres(text: &str) -> Result<DFStatement> {
    let mut stmts = PostgresCompatibilityParser::new()
        .parse(text)
        .map_err(|e| WeirError::Syntax(e.to_string()))?;
    match stmts.len() {
        1 => Ok(DFStatement::Statement(Box::new(stmts.remove(0)))),
        0 => Err(WeirError::Syntax("empty statement".into())),
        _ => Err(WeirError::Syntax("expected exactly one statement".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_lines_and_keeps_semicolons_in_strings() {
        let script = "-- header\nSELECT 1;\n\nSELECT ';' AS s\n  FROM t; -- trailing\n/* only */ ;";
        let parts = split_statements(script).unwrap();
        assert_eq!(
            parts,
            vec![
                SqlText {
                    line: 2,
                    text: "SELECT 1".into()
                },
                SqlText {
                    line: 4,
                    text: "SELECT ';' AS s\n  FROM t".into()
                },
            ]
        );
        assert!(split_statements("-- ping").unwrap().is_empty());
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let p = |t| numbered_placeholders(t).unwrap().into_owned();
        assert_eq!(
            p("SELECT * FROM t WHERE a = ? AND b IN (?,?)"),
            "SELECT * FROM t WHERE a = $1 AND b IN ($2,$3)"
        );
        assert_eq!(
            p("SELECT '?', \"?\" FROM t -- ?\nWHERE a = ?"),
            "SELECT '?', \"?\" FROM t -- ?\nWHERE a = $1"
        );
        assert_eq!(p("SELECT $1, ?"), "SELECT $1, ?");
        assert_eq!(p("SELECT 'é', ?"), "SELECT 'é', $1");
        assert_eq!(p("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn classifies_extensions() {
        assert!(matches!(
            classify("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'x/'").unwrap(),
            Statement::DataFusion(..)
        ));
        assert!(matches!(
            classify("show tables").unwrap(),
            Statement::ShowTables
        ));
        assert!(matches!(
            classify("SELECT 1").unwrap(),
            Statement::Postgres(_)
        ));
    }
}
