//! Weir's streaming DDL, parsed from text: `CREATE SOURCE` (columns, `WATERMARK FOR`,
//! `WITH (…)` options), `CREATE MATERIALIZED VIEW … [EMIT ON WINDOW CLOSE]`,
//! `CREATE SINK … FROM … WITH (…)`, `FLUSH`,
//! `SHOW SOURCES | MATERIALIZED VIEWS | SINKS`, `DROP SOURCE | MATERIALIZED VIEW |
//! SINK` and `SUBSCRIBE TO view`. Only syntax lives here; what an option means
//! belongs to its connector.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{BinaryOperator, ColumnDef, Expr, Ident, ObjectName, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{Result, WeirError};

/// A parsed streaming statement (one per statement: its size does not matter).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum StreamingStatement {
    CreateSource(CreateSource),
    CreateMaterializedView(CreateMaterializedView),
    CreateSink(CreateSink),
    Flush,
    /// `CHECKPOINT`: write a checkpoint now.
    Checkpoint,
    /// `SUBSCRIBE [TO] view [WITH (snapshot = false)]`: follow a view's changes.
    Subscribe {
        name: String,
        snapshot: bool,
    },
    Show(ObjectKind),
    Drop {
        kind: ObjectKind,
        name: String,
        if_exists: bool,
        cascade: bool,
    },
    /// `ALTER MATERIALIZED VIEW name RESTART` / `ALTER SINK name RESTART`: start a failed
    /// view or sink again from its last checkpointed state.
    Restart {
        kind: ObjectKind,
        name: String,
    },
}

/// The streaming objects of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Source,
    MaterializedView,
    Sink,
}

/// `CREATE SOURCE name (columns, WATERMARK FOR …) WITH (options)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSource {
    pub name: String,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<Watermark>,
    pub options: Options,
}

/// `WATERMARK FOR column AS column - INTERVAL '…'`: event time with its allowed delay.
#[derive(Debug, Clone, PartialEq)]
pub struct Watermark {
    pub column: String,
    /// The delay subtracted from the largest event time seen; `None` for `AS column`.
    pub delay: Option<Expr>,
}

/// `CREATE MATERIALIZED VIEW name [WITH (options)] AS query [EMIT ON WINDOW CLOSE]`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateMaterializedView {
    pub name: String,
    pub if_not_exists: bool,
    pub options: Options,
    /// The defining query as planned (Flink's `TABLE(TUMBLE(TABLE …))` rewritten).
    pub query: String,
    /// The defining query as the statement spelled it, for `SHOW` and the catalogs.
    pub written: String,
    pub emit: Emit,
}

/// `CREATE SINK [IF NOT EXISTS] name FROM source_or_view WITH (connector = …, …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSink {
    pub name: String,
    pub if_not_exists: bool,
    /// The source or materialized view whose rows it writes.
    pub from: String,
    pub options: Options,
}

/// When a windowed view shows a window's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The current, still-changing value of every open window.
    OnUpdate,
    /// Once the watermark passes the window's end, and never changed after.
    OnWindowClose,
}

/// `WITH (key = value, …)`: keys lower-cased (`'properties.bootstrap.servers'` or bare
/// `topic`), values as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options(pub BTreeMap<String, String>);

impl Options {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

fn syntax(e: ParserError) -> WeirError {
    WeirError::Syntax(e.to_string())
}

fn name_of(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_lowercase()
            }
        })
        .next_back()
        .unwrap_or_default()
}

fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// Parse `text` if it is a streaming statement; `None` leaves it to plain SQL.
pub fn parse(text: &str) -> Result<Option<StreamingStatement>> {
    // `… FROM t EMIT ON WINDOW CLOSE` would read EMIT as t's alias, so a trailing EMIT
    // clause is cut off before parsing.
    let (text, emit_tail) = split_emit(text);
    let mut statement = parse_statement(text)?;
    if emit_tail {
        match &mut statement {
            Some(StreamingStatement::CreateMaterializedView(create)) => {
                create.emit = Emit::OnWindowClose;
            }
            Some(_) => {
                return Err(WeirError::Syntax(
                    "EMIT ON WINDOW CLOSE belongs at the end of CREATE MATERIALIZED VIEW".into(),
                ));
            }
            None => {}
        }
    }
    Ok(statement)
}

/// `text` without a trailing `EMIT ON WINDOW CLOSE [;]`, and whether it had one.
fn split_emit(text: &str) -> (&str, bool) {
    let body = text.trim_end().trim_end_matches(';').trim_end();
    let mut rest = body;
    for word in ["CLOSE", "WINDOW", "ON", "EMIT"] {
        let start = rest.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        if !rest[start..].eq_ignore_ascii_case(word) {
            return (text, false);
        }
        rest = rest[..start].trim_end();
    }
    if rest.is_empty() {
        return (text, false);
    }
    (rest, true)
}

fn parse_statement(text: &str) -> Result<Option<StreamingStatement>> {
    let original = text;
    let rewritten = rewrite_flink_windows(text);
    let text = rewritten.as_str();
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text).map_err(syntax)?;
    let statement = if p.parse_keyword(Keyword::CREATE) {
        if p.parse_keyword(Keyword::SOURCE) {
            StreamingStatement::CreateSource(create_source(&mut p)?)
        } else if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            StreamingStatement::CreateMaterializedView(create_view(&mut p, text, original)?)
        } else if parse_word(&mut p, "SINK") {
            StreamingStatement::CreateSink(create_sink(&mut p)?)
        } else {
            return Ok(None);
        }
    } else if p.parse_keyword(Keyword::FLUSH) {
        StreamingStatement::Flush
    } else if matches!(p.peek_token().token, Token::Word(ref w) if w.value.eq_ignore_ascii_case("checkpoint"))
    {
        p.next_token();
        StreamingStatement::Checkpoint
    } else if parse_word(&mut p, "SUBSCRIBE") {
        subscribe(&mut p)?
    } else if p.parse_keyword(Keyword::SHOW) {
        match object_kind_plural(&mut p) {
            Some(kind) => StreamingStatement::Show(kind),
            None => return Ok(None),
        }
    } else if p.parse_keyword(Keyword::ALTER) {
        let (kind, what) = if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            (ObjectKind::MaterializedView, "MATERIALIZED VIEW")
        } else if parse_word(&mut p, "SINK") {
            (ObjectKind::Sink, "SINK")
        } else {
            return Ok(None);
        };
        let name = name_of(&p.parse_object_name(false).map_err(syntax)?);
        if !parse_word(&mut p, "RESTART") {
            return Err(WeirError::Syntax(format!(
                "ALTER {what} {name} RESTART is the only ALTER of a {}",
                what.to_lowercase()
            )));
        }
        StreamingStatement::Restart { kind, name }
    } else if p.parse_keyword(Keyword::DROP) {
        let kind = if p.parse_keyword(Keyword::SOURCE) {
            ObjectKind::Source
        } else if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
            ObjectKind::MaterializedView
        } else if parse_word(&mut p, "SINK") {
            ObjectKind::Sink
        } else {
            return Ok(None);
        };
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = name_of(&p.parse_object_name(false).map_err(syntax)?);
        let cascade = p.parse_keyword(Keyword::CASCADE);
        if !cascade {
            let _ = p.parse_keyword(Keyword::RESTRICT);
        }
        StreamingStatement::Drop {
            kind,
            name,
            if_exists,
            cascade,
        }
    } else {
        return Ok(None);
    };
    let _ = p.consume_token(&Token::SemiColon);
    match p.peek_token().token {
        Token::EOF => Ok(Some(statement)),
        other => Err(WeirError::Syntax(format!(
            "unexpected {other} after the statement"
        ))),
    }
}

/// The Flink form `TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), …))` → `TUMBLE(src, ts, …)`.
pub fn rewrite_flink_windows(query: &str) -> String {
    let re = regex::Regex::new(
        r#"(?i)\bTABLE\s*\(\s*(TUMBLE|HOP)\s*\(\s*TABLE\s+("[^"]+"|[\w.]+)\s*,\s*DESCRIPTOR\s*\(\s*("[^"]+"|\w+)\s*\)"#,
    )
    .expect("valid regex");
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(m) = re.captures(rest) {
        let whole = m.get(0).expect("match");
        out.push_str(&rest[..whole.start()]);
        out.push_str(&format!("{}({}, {}", &m[1], &m[2], &m[3]));
        // Drop the closing parenthesis of the outer TABLE( … ).
        let tail = &rest[whole.end()..];
        let mut depth = 1i32; // inside TUMBLE(
        let mut cut = None;
        for (i, c) in tail.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        // TUMBLE's own closing parenthesis; TABLE's follows.
                        let after = &tail[i + 1..];
                        if let Some(j) = after.find(')')
                            && after[..j].trim().is_empty()
                        {
                            cut = Some((i + 1, i + 1 + j + 1));
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
        match cut {
            Some((keep, skip)) => {
                out.push_str(&tail[..keep]);
                rest = &tail[skip..];
            }
            None => {
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    // Table functions are looked up by their name as written; ours are lower-case.
    let names = regex::Regex::new(r"(?i)\b(tumble|hop)(\s*\()").expect("valid regex");
    names
        .replace_all(&out, |c: &regex::Captures| {
            format!("{}{}", c[1].to_lowercase(), &c[2])
        })
        .into_owned()
}

/// Consume the next token if it is the (non-keyword) word `word`.
fn parse_word(p: &mut Parser, word: &str) -> bool {
    match p.peek_token().token {
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
            p.next_token();
            true
        }
        _ => false,
    }
}

/// After `SUBSCRIBE`: `[TO] view [WITH (snapshot = true | false)]`.
fn subscribe(p: &mut Parser) -> Result<StreamingStatement> {
    let _ = p.parse_keyword(Keyword::TO);
    if p.peek_token().token == Token::LParen {
        return Err(WeirError::NotSupported(
            "SUBSCRIBE follows a materialized view: SUBSCRIBE TO view_name; \
             create a materialized view for the query first"
                .into(),
        ));
    }
    let name = name_of(&p.parse_object_name(false).map_err(syntax)?);
    let options = with_options(p)?;
    if let Some(key) = options.0.keys().find(|k| *k != "snapshot") {
        return Err(WeirError::InvalidParameter(format!(
            "unknown option '{key}' for SUBSCRIBE; valid options: snapshot"
        )));
    }
    let snapshot = match options
        .get("snapshot")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("true") | Some("on") => true,
        Some("false") | Some("off") => false,
        Some(other) => {
            return Err(WeirError::InvalidParameter(format!(
                "option 'snapshot' of SUBSCRIBE is true or false, got '{other}'"
            )));
        }
    };
    Ok(StreamingStatement::Subscribe { name, snapshot })
}

fn object_kind_plural(p: &mut Parser) -> Option<ObjectKind> {
    let word = |p: &Parser| match p.peek_token().token {
        Token::Word(w) => w.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    match word(p).as_str() {
        "SOURCES" => {
            p.next_token();
            Some(ObjectKind::Source)
        }
        "SINKS" => {
            p.next_token();
            Some(ObjectKind::Sink)
        }
        "MATERIALIZED" => {
            p.next_token();
            if word(p) == "VIEWS" {
                p.next_token();
                Some(ObjectKind::MaterializedView)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn create_source(p: &mut Parser) -> Result<CreateSource> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name_of(&p.parse_object_name(false).map_err(syntax)?);
    let mut columns = Vec::new();
    let mut watermark = None;
    if p.consume_token(&Token::LParen) {
        loop {
            if parse_word(p, "WATERMARK") {
                if watermark.is_some() {
                    return Err(WeirError::Syntax(format!(
                        "source \"{name}\" declares WATERMARK twice"
                    )));
                }
                p.expect_keyword(Keyword::FOR).map_err(syntax)?;
                let column = ident(&p.parse_identifier().map_err(syntax)?);
                p.expect_keyword(Keyword::AS).map_err(syntax)?;
                watermark = Some(watermark_expr(column, p.parse_expr().map_err(syntax)?)?);
            } else {
                columns.push(p.parse_column_def().map_err(syntax)?);
            }
            if p.consume_token(&Token::Comma) {
                continue;
            }
            p.expect_token(&Token::RParen).map_err(syntax)?;
            break;
        }
    }
    if let Some(w) = &watermark
        && !columns.is_empty()
        && !columns.iter().any(|c| ident(&c.name) == w.column)
    {
        return Err(WeirError::InvalidParameter(format!(
            "WATERMARK FOR \"{}\": source \"{name}\" has no such column",
            w.column
        )));
    }
    let options = with_options(p)?;
    Ok(CreateSource {
        name,
        if_not_exists,
        columns,
        watermark,
        options,
    })
}

/// After `CREATE SINK`: `[IF NOT EXISTS] name FROM source_or_view WITH (…)`.
fn create_sink(p: &mut Parser) -> Result<CreateSink> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name_of(&p.parse_object_name(false).map_err(syntax)?);
    if p.parse_keyword(Keyword::AS) {
        return Err(WeirError::NotSupported(format!(
            "CREATE SINK {name} AS SELECT …: a sink writes a source or a materialized view; \
             create a materialized view for the query, then CREATE SINK {name} FROM that_view \
             WITH (…)"
        )));
    }
    p.expect_keyword(Keyword::FROM).map_err(syntax)?;
    let from = name_of(&p.parse_object_name(false).map_err(syntax)?);
    let options = with_options(p)?;
    Ok(CreateSink {
        name,
        if_not_exists,
        from,
        options,
    })
}

/// `col` or `col - <interval>`; anything else is not a watermark Weir can keep.
fn watermark_expr(column: String, expr: Expr) -> Result<Watermark> {
    let names_column = |e: &Expr| matches!(e, Expr::Identifier(i) if ident(i) == column);
    match expr {
        e if names_column(&e) => Ok(Watermark {
            column,
            delay: None,
        }),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if names_column(&left) => Ok(Watermark {
            column,
            delay: Some(*right),
        }),
        other => Err(WeirError::InvalidParameter(format!(
            "WATERMARK FOR {column} AS {other}: expected {column} - INTERVAL '…'"
        ))),
    }
}

fn with_options(p: &mut Parser) -> Result<Options> {
    let mut options = Options::default();
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(options);
    }
    p.expect_token(&Token::LParen).map_err(syntax)?;
    loop {
        let key = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s.to_lowercase(),
            Token::Word(w) => {
                // Bare dotted keys: properties.bootstrap.servers
                let mut key = w.value.to_lowercase();
                while p.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&ident(&p.parse_identifier().map_err(syntax)?));
                }
                key
            }
            other => {
                return Err(WeirError::Syntax(format!(
                    "expected an option name in WITH (…), found {other}"
                )));
            }
        };
        p.expect_token(&Token::Eq).map_err(syntax)?;
        let value = match p.parse_value().map_err(syntax)?.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s,
            Value::Number(n, _) => n,
            Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        };
        if options.0.insert(key.clone(), value).is_some() {
            return Err(WeirError::InvalidParameter(format!(
                "option \"{key}\" is given twice"
            )));
        }
        if p.consume_token(&Token::Comma) {
            continue;
        }
        p.expect_token(&Token::RParen).map_err(syntax)?;
        return Ok(options);
    }
}

/// `text` is the statement with Flink's window form rewritten, `original` as it came.
fn create_view(p: &mut Parser, text: &str, original: &str) -> Result<CreateMaterializedView> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name_of(&p.parse_object_name(false).map_err(syntax)?);
    let options = with_options(p)?;
    let as_token = p.expect_keyword(Keyword::AS).map_err(syntax)?;
    // The query runs from after AS to an optional trailing EMIT ON WINDOW CLOSE.
    let start = byte_offset(text, as_token.span.end.line, as_token.span.end.column);
    let query_end;
    let _query = p.parse_query().map_err(syntax)?;
    let emit = if parse_word(p, "EMIT") {
        let emit_token = p.get_current_token().clone();
        query_end = byte_offset(
            text,
            emit_token.span.start.line,
            emit_token.span.start.column,
        );
        p.expect_keywords(&[Keyword::ON, Keyword::WINDOW, Keyword::CLOSE])
            .map_err(syntax)?;
        Emit::OnWindowClose
    } else {
        query_end = text.trim_end().trim_end_matches(';').len();
        Emit::OnUpdate
    };
    let query = text[start..query_end].trim().to_string();
    // The rewrite changes only the query, so what precedes and follows it is the same in
    // both texts.
    let tail = text.len() - query_end;
    let written = match original.get(start..original.len().saturating_sub(tail)) {
        Some(w)
            if original.get(..start) == text.get(..start)
                && original.ends_with(&text[query_end..]) =>
        {
            w.trim().to_string()
        }
        _ => query.clone(),
    };
    Ok(CreateMaterializedView {
        name,
        if_not_exists,
        options,
        query,
        written,
        emit,
    })
}

/// Byte offset of a 1-based (line, column-in-characters) position.
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    text[line_start..]
        .char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map(|(i, _)| line_start + i)
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_source_with_watermark_and_options() {
        let s = parse(
            "CREATE SOURCE page_views (\n  event_id VARCHAR,\n  price DOUBLE,\n  ts TIMESTAMP,\n  \
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (\n  connector = 'kafka',\n  topic = 'produit-consulte',\n  \
             'properties.bootstrap.servers' = '127.0.0.1:9092',\n  format = 'json'\n);",
        )
        .unwrap()
        .unwrap();
        let StreamingStatement::CreateSource(s) = s else {
            panic!("{s:?}")
        };
        assert_eq!(s.name, "page_views");
        assert_eq!(s.columns.len(), 3);
        let w = s.watermark.unwrap();
        assert_eq!(w.column, "ts");
        assert_eq!(w.delay.unwrap().to_string(), "INTERVAL '5' SECOND");
        assert_eq!(
            s.options.get("properties.bootstrap.servers"),
            Some("127.0.0.1:9092")
        );
        assert_eq!(s.options.get("connector"), Some("kafka"));
    }

    #[test]
    fn create_sink_names_its_input_and_options() {
        let Some(StreamingStatement::CreateSink(s)) = parse(
            "CREATE SINK IF NOT EXISTS Raw FROM page_views WITH (connector = 'parquet', \
             path = 'file:///tmp/raw/', 'partition.by' = 'dt');",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!((s.name.as_str(), s.from.as_str()), ("raw", "page_views"));
        assert!(s.if_not_exists);
        assert_eq!(s.options.get("partition.by"), Some("dt"));
        let e = parse("CREATE SINK s AS SELECT 1").unwrap_err().to_string();
        assert!(e.contains("CREATE SINK s FROM that_view"), "{e}");
        assert!(parse("CREATE SINK s WITH (connector = 'kafka')").is_err());
    }

    #[test]
    fn materialized_views_keep_their_query_and_emit_mode() {
        let text = "CREATE MATERIALIZED VIEW revenue_5m AS\nSELECT window_start, sum(amount) AS revenue\n\
                    FROM HOP(orders, ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)\nGROUP BY window_start\nEMIT ON WINDOW CLOSE;";
        let Some(StreamingStatement::CreateMaterializedView(v)) = parse(text).unwrap() else {
            panic!()
        };
        assert_eq!(v.name, "revenue_5m");
        assert_eq!(v.emit, Emit::OnWindowClose);
        assert!(
            v.query.starts_with("SELECT window_start")
                && v.query.ends_with("GROUP BY window_start"),
            "{}",
            v.query
        );
        let Some(StreamingStatement::CreateMaterializedView(v)) =
            parse("create materialized view v with (retention = '1 hour') as select 1").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (v.emit, v.query.as_str(), v.options.get("retention")),
            (Emit::OnUpdate, "select 1", Some("1 hour"))
        );
    }

    #[test]
    fn alter_restart() {
        assert_eq!(
            parse("ALTER MATERIALIZED VIEW Counts RESTART;").unwrap(),
            Some(StreamingStatement::Restart {
                kind: ObjectKind::MaterializedView,
                name: "counts".into()
            })
        );
        assert_eq!(
            parse("alter sink \"Out\" restart").unwrap(),
            Some(StreamingStatement::Restart {
                kind: ObjectKind::Sink,
                name: "Out".into()
            })
        );
        let e = parse("ALTER SINK out RENAME TO x").unwrap_err().to_string();
        assert!(
            e.contains("ALTER SINK out RESTART is the only ALTER"),
            "{e}"
        );
        assert_eq!(parse("ALTER TABLE t RENAME TO u").unwrap(), None);
    }

    #[test]
    fn other_statements() {
        assert_eq!(parse("FLUSH").unwrap(), Some(StreamingStatement::Flush));
        assert_eq!(
            parse("checkpoint;").unwrap(),
            Some(StreamingStatement::Checkpoint)
        );
        assert_eq!(
            parse("show materialized views").unwrap(),
            Some(StreamingStatement::Show(ObjectKind::MaterializedView))
        );
        assert_eq!(
            parse("SHOW SOURCES;").unwrap(),
            Some(StreamingStatement::Show(ObjectKind::Source))
        );
        assert_eq!(
            parse("DROP SOURCE IF EXISTS Orders CASCADE").unwrap(),
            Some(StreamingStatement::Drop {
                kind: ObjectKind::Source,
                name: "orders".into(),
                if_exists: true,
                cascade: true
            })
        );
        assert_eq!(
            parse("SUBSCRIBE TO Counts").unwrap(),
            Some(StreamingStatement::Subscribe {
                name: "counts".into(),
                snapshot: true
            })
        );
        assert_eq!(
            parse("subscribe counts with (snapshot = false);").unwrap(),
            Some(StreamingStatement::Subscribe {
                name: "counts".into(),
                snapshot: false
            })
        );
        assert_eq!(
            parse("SUBSCRIBE TO c WITH (progress = true)")
                .unwrap_err()
                .to_string(),
            "unknown option 'progress' for SUBSCRIBE; valid options: snapshot"
        );
        assert_eq!(
            parse("SUBSCRIBE TO (SELECT 1)").unwrap_err().sqlstate(),
            "0A000"
        );
        assert_eq!(parse("SELECT 1").unwrap(), None);
        assert_eq!(parse("SHOW TABLES").unwrap(), None);
        assert_eq!(parse("CREATE VIEW v AS SELECT 1").unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("CREATE SOURCE s (a INT, WATERMARK FOR b AS b - INTERVAL '1' SECOND)")
            .unwrap_err();
        assert!(err.to_string().contains("no such column"), "{err}");
        let err = parse("CREATE SOURCE s (ts TIMESTAMP, WATERMARK FOR ts AS now()) WITH (x = 1)")
            .unwrap_err();
        assert!(err.to_string().contains("expected ts - INTERVAL"), "{err}");
        let err = parse("CREATE SOURCE s (a INT) WITH (topic = 'a', topic = 'b')").unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        assert_eq!(parse("FLUSH everything").unwrap_err().sqlstate(), "42601");
    }

    #[test]
    fn a_view_keeps_its_query_as_written() {
        let text = "CREATE MATERIALIZED VIEW v AS SELECT window_start, count(*) FROM \
                    TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' SECOND)) \
                    GROUP BY window_start EMIT ON WINDOW CLOSE;";
        let Some(StreamingStatement::CreateMaterializedView(v)) = parse(text).unwrap() else {
            panic!("not a view")
        };
        assert_eq!(
            v.query,
            "SELECT window_start, count(*) FROM tumble(s, ts, INTERVAL '1' SECOND) GROUP BY window_start"
        );
        assert_eq!(
            v.written,
            "SELECT window_start, count(*) FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY window_start"
        );
        assert_eq!(v.emit, Emit::OnWindowClose);
    }

    #[test]
    fn flink_window_form_is_rewritten() {
        assert_eq!(
            rewrite_flink_windows(
                "SELECT * FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '10' SECOND)) GROUP BY 1"
            ),
            "SELECT * FROM tumble(bids, date_time, INTERVAL '10' SECOND) GROUP BY 1"
        );
        assert_eq!(
            rewrite_flink_windows(
                "FROM TABLE( HOP( TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) ) x"
            ),
            "FROM hop(s, ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) x"
        );
        assert_eq!(rewrite_flink_windows("SELECT 1"), "SELECT 1");
    }
}
