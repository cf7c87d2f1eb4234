//! Reading a folder of `.sql` files: every statement with its file and line, what it
//! creates and what it reads, put in dependency order so a file may use names that a
//! later file defines. Cycles and unknown names are reported with file and line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use datafusion::common::TableReference;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::resolve::resolve_table_references;

use crate::sql::streaming::StreamingStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement as SQLStatement};

use super::{Statement, classify, parse_postgres, split_statements};
use crate::error::{Result, WeirError};

/// A statement read from a file, with what the dependency order needs to know.
#[derive(Debug, Clone)]
pub struct Definition {
    pub file: PathBuf,
    pub line: u64,
    pub text: String,
    pub statement: Statement,
    /// The object this statement creates, lower-cased, if any.
    pub creates: Option<String>,
    /// The objects it reads, lower-cased (system schemas left out).
    pub reads: Vec<String>,
}

impl Definition {
    /// `file:line`, the way errors point at a definition.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// The folder of the file, against which relative locations resolve.
    pub fn base_dir(&self) -> Option<&Path> {
        self.file.parent()
    }
}

/// The `.sql` files of `dir`, in name order.
pub fn sql_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        WeirError::Definition(format!("cannot read SQL folder {}: {e}", dir.display()))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

/// Read every statement of every `.sql` file in `dir`, in dependency order.
/// `known` answers whether a name exists already (built-ins, objects made earlier).
pub fn load_dir(dir: &Path, known: &dyn Fn(&str) -> bool) -> Result<Vec<Definition>> {
    let mut defs = Vec::new();
    for file in sql_files(dir)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| WeirError::Definition(format!("cannot read {}: {e}", file.display())))?;
        let text = substitute(&text, &|name| std::env::var(name).ok()).map_err(|(line, e)| {
            WeirError::Definition(format!("{}:{line}: {e}", file.display()))
        })?;
        defs.extend(read_script(&file, &text)?);
    }
    order(defs, known)
}

/// `${NAME}` and `${NAME:-default}` in `script` replaced by `lookup(NAME)` (the
/// environment, for files): the default when the variable is unset or empty, and an
/// error with the 1-based line when it is unset and has no default. Only that form is
/// expanded — `$1`, `$$`, `$tag$` and a `${` not followed by a name and `}` or `:-` stay
/// as written — and nothing inside `--` or `/* */` comments.
pub fn substitute(
    script: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<String, (usize, String)> {
    let bytes = script.as_bytes();
    let mut out = String::with_capacity(script.len());
    let (mut i, mut copied, mut line) = (0, 0, 1);
    // Inside a '…' string, a "…" identifier, or neither.
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (_, b'\n') => line += 1,
            (Some(q), _) if b == q => quote = None,
            (None, b'\'' | b'"') => quote = Some(b),
            (None, b'-') if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            (None, b'/') if bytes.get(i + 1) == Some(&b'*') => {
                let end = script[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                line += script[i..end].matches('\n').count();
                i = end;
                continue;
            }
            (_, b'$') if bytes.get(i + 1) == Some(&b'{') => {
                if let Some((len, name, default)) = reference(&script[i + 2..]) {
                    let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
                        (Some(v), _) => v,
                        (None, Some(d)) => d.to_string(),
                        (None, None) => {
                            return Err((
                                line,
                                format!(
                                    "environment variable {name} is not set (write ${{{name}:-default}} to give it a default)"
                                ),
                            ));
                        }
                    };
                    out.push_str(&script[copied..i]);
                    out.push_str(&value);
                    i += 2 + len;
                    copied = i;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&script[copied..]);
    Ok(out)
}

/// After `${`: `NAME}` or `NAME:-default}` — its length through the `}`, the name and
/// the default.
fn reference(rest: &str) -> Option<(usize, &str, Option<&str>)> {
    let name_len = rest
        .char_indices()
        .take_while(|&(k, c)| c == '_' || c.is_ascii_alphabetic() || (k > 0 && c.is_ascii_digit()))
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &rest[..name_len];
    let after = &rest[name_len..];
    if after.starts_with('}') {
        return Some((name_len + 1, name, None));
    }
    let default = after.strip_prefix(":-")?;
    let end = default.find(['}', '\n'])?;
    if default.as_bytes()[end] != b'}' {
        return None;
    }
    Some((name_len + 2 + end + 1, name, Some(&default[..end])))
}

/// The statements of one script, classified, with what each creates and reads.
pub fn read_script(file: &Path, script: &str) -> Result<Vec<Definition>> {
    let at =
        |line: u64, e: WeirError| WeirError::Definition(format!("{}:{line}: {e}", file.display()));
    let mut defs = Vec::new();
    for piece in split_statements(script).map_err(|e| at(1, e))? {
        let statement = classify(&piece.text).map_err(|e| at(piece.line, e))?;
        let (creates, reads) = names(&statement).map_err(|e| at(piece.line, e))?;
        defs.push(Definition {
            file: file.to_path_buf(),
            line: piece.line,
            text: piece.text,
            statement,
            creates,
            reads,
        });
    }
    Ok(defs)
}

pub(crate) fn object_name(name: &ObjectName) -> String {
    name.0
        .last()
        .map(|p| match p.as_ident() {
            Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
            Some(ident) => ident.value.to_lowercase(),
            None => p.to_string().to_lowercase(),
        })
        .unwrap_or_default()
}

fn is_system(r: &TableReference) -> bool {
    matches!(r.schema(), Some("pg_catalog" | "information_schema"))
}

/// What a statement creates and which relations it reads.
fn names(statement: &Statement) -> Result<(Option<String>, Vec<String>)> {
    let df = match statement {
        Statement::DataFusion(df, _) => (**df).clone(),
        Statement::ShowTables | Statement::Show(_) | Statement::Accepted(_) => {
            return Ok((None, vec![]));
        }
        Statement::Streaming(s, _) => return Ok(streaming_names(s)),
        Statement::Postgres(text) => parse_postgres(text)?,
    };
    let creates = match &df {
        DFStatement::CreateExternalTable(c) => Some(object_name(&c.name)),
        DFStatement::Statement(s) => match s.as_ref() {
            SQLStatement::CreateView(v) => Some(object_name(&v.name)),
            SQLStatement::CreateTable(t) => Some(object_name(&t.name)),
            _ => None,
        },
        _ => None,
    };
    let (tables, _ctes) = resolve_table_references(&df, true)?;
    let mut reads: Vec<String> = tables
        .iter()
        .filter(|r| !is_system(r))
        .map(|r| r.table().to_string())
        .filter(|t| Some(t) != creates.as_ref())
        .collect();
    reads.dedup();
    Ok((creates, reads))
}

/// What a streaming statement creates and reads: a view reads the sources and tables
/// of its query, including those named inside `TUMBLE(…)` / `HOP(…)`.
fn streaming_names(statement: &StreamingStatement) -> (Option<String>, Vec<String>) {
    match statement {
        StreamingStatement::CreateSource(s) => (Some(s.name.clone()), vec![]),
        StreamingStatement::CreateMaterializedView(v) => {
            let query = &v.query;
            let mut reads: Vec<String> = Vec::new();
            if let Ok(df) = parse_postgres(query)
                && let Ok((tables, _)) = resolve_table_references(&df, true)
            {
                reads.extend(
                    tables
                        .iter()
                        .filter(|r| !is_system(r))
                        .map(|r| r.table().to_string())
                        .filter(|t| t != "tumble" && t != "hop"),
                );
            }
            let windowed = regex::Regex::new(r#"(?i)\b(?:TUMBLE|HOP)\s*\(\s*("[^"]+"|\w+)"#)
                .expect("valid regex");
            for c in windowed.captures_iter(query) {
                let name = &c[1];
                reads.push(
                    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                        Some(quoted) => quoted.to_string(),
                        None => name.to_lowercase(),
                    },
                );
            }
            reads.retain(|r| *r != v.name);
            reads.sort();
            reads.dedup();
            (Some(v.name.clone()), reads)
        }
        StreamingStatement::CreateSink(s) => (Some(s.name.clone()), vec![s.from.clone()]),
        _ => (None, vec![]),
    }
}

/// Stable topological order: a statement runs after those creating what it reads, and
/// otherwise in file order.
pub(crate) fn order(
    defs: Vec<Definition>,
    known: &dyn Fn(&str) -> bool,
) -> Result<Vec<Definition>> {
    let mut creator: HashMap<&str, usize> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        if let Some(name) = &d.creates
            && let Some(&prev) = creator.get(name.as_str())
        {
            return Err(WeirError::Definition(format!(
                "{}: \"{name}\" is already defined at {}",
                d.location(),
                defs[prev].location()
            )));
        }
        if let Some(name) = &d.creates {
            creator.insert(name, i);
        }
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(defs.len());
    for d in &defs {
        let mut mine = Vec::new();
        for r in &d.reads {
            match creator.get(r.as_str()) {
                Some(&j) => mine.push(j),
                None if known(r) => {}
                None => {
                    return Err(WeirError::Definition(format!(
                        "{}: unknown relation \"{r}\": no statement in the folder creates it",
                        d.location()
                    )));
                }
            }
        }
        deps.push(mine);
    }
    // Depth-first with colours so a cycle can be reported as the path that closes it.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        out: &mut Vec<usize>,
        defs: &[Definition],
    ) -> Result<()> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let from = stack.iter().position(|&s| s == i).unwrap_or(0);
                let cycle: Vec<String> = stack[from..]
                    .iter()
                    .chain(std::iter::once(&i))
                    .map(|&k| {
                        format!(
                            "{} ({})",
                            defs[k].creates.as_deref().unwrap_or("?"),
                            defs[k].location()
                        )
                    })
                    .collect();
                return Err(WeirError::Definition(format!(
                    "{}: dependency cycle: {}",
                    defs[i].location(),
                    cycle.join(" -> ")
                )));
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        stack.push(i);
        for &j in &deps[i] {
            visit(j, deps, marks, stack, out, defs)?;
        }
        stack.pop();
        marks[i] = Mark::Done;
        out.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; defs.len()];
    let mut out = Vec::with_capacity(defs.len());
    for i in 0..defs.len() {
        visit(i, &deps, &mut marks, &mut Vec::new(), &mut out, &defs)?;
    }
    let mut slots: BTreeMap<usize, Definition> = defs.into_iter().enumerate().collect();
    Ok(out.into_iter().filter_map(|i| slots.remove(&i)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_known_names(_: &str) -> bool {
        false
    }

    fn defs(files: &[(&str, &str)]) -> Result<Vec<Definition>> {
        let mut all = Vec::new();
        for (name, text) in files {
            all.extend(read_script(Path::new(name), text)?);
        }
        order(all, &no_known_names)
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "BROKERS" => Some("kafka:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_are_replaced_with_their_value_or_default() {
        let sql = "CREATE SOURCE s WITH ('properties.bootstrap.servers' = '${BROKERS}',\n\
                   path = '${DATA:-file:///tmp/x}/y/', other = '${EMPTY:-d}', none = '${UNSET:-}');";
        assert_eq!(
            substitute(sql, &env).unwrap(),
            "CREATE SOURCE s WITH ('properties.bootstrap.servers' = 'kafka:9092',\n\
             path = 'file:///tmp/x/y/', other = 'd', none = '');"
        );
        assert_eq!(
            substitute("${BROKERS:-127.0.0.1:9092}", &env).unwrap(),
            "kafka:9092"
        );
    }

    #[test]
    fn other_dollar_uses_and_comments_are_left_alone() {
        for sql in [
            "SELECT $1, $$a ${b$$, $tag$x$tag$, '${', '${ X}', '${1}', '${X:}' FROM t",
            "-- ${UNSET} in a comment\nSELECT 1 /* and ${UNSET} here */",
            "SELECT '${X:-never closed",
        ] {
            assert_eq!(substitute(sql, &env).unwrap(), sql);
        }
    }

    #[test]
    fn an_unset_variable_without_default_names_the_variable_and_line() {
        let (line, e) = substitute("SELECT 1;\n\nSELECT '${KAFKA_BROKERS}';", &env).unwrap_err();
        assert_eq!(line, 3);
        assert!(e.contains("KAFKA_BROKERS is not set"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.sql"),
            "-- ${WEIR_TEST_SURELY_UNSET}\nCREATE VIEW v AS SELECT '${WEIR_TEST_SURELY_UNSET}';",
        )
        .unwrap();
        let err = load_dir(dir.path(), &no_known_names)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.sql:2: environment variable WEIR_TEST_SURELY_UNSET is not set"),
            "{err}"
        );
    }

    #[test]
    fn later_files_may_define_what_earlier_ones_read() {
        let ordered = defs(&[
            ("a.sql", "CREATE VIEW v AS SELECT * FROM t;"),
            (
                "b.sql",
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'x/';",
            ),
        ])
        .unwrap();
        let created: Vec<_> = ordered.iter().map(|d| d.creates.clone().unwrap()).collect();
        assert_eq!(created, ["t", "v"]);
    }

    #[test]
    fn cycles_and_unknown_names_point_at_file_and_line() {
        let err = defs(&[(
            "a.sql",
            "CREATE VIEW a AS SELECT * FROM b;\nCREATE VIEW b AS SELECT * FROM a;",
        )])
        .unwrap_err()
        .to_string();
        assert!(err.contains("dependency cycle"), "{err}");
        assert!(err.contains("a.sql:1") && err.contains("a.sql:2"), "{err}");
        let err = defs(&[("x.sql", "\n\nCREATE VIEW v AS SELECT * FROM missing;")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.sql:3: unknown relation \"missing\""),
            "{err}"
        );
    }
}
