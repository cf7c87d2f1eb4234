//! Rewrites of exact client idioms that DataFusion cannot plan, applied to the text
//! before parsing. Each entry names the client that sends it; general PostgreSQL
//! rewrites live in `datafusion-pg-catalog`, this is only what it lacks.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

/// Grafana's "schemas in the search path" sub-query (table and column pickers, the
/// legacy query builder). It unnests `current_setting('search_path')` with
/// `generate_series` over array bounds and a table-valued `string_to_array`; Weir's
/// search path is always `public`, so the sub-query is that one value.
const GRAFANA_SEARCH_PATH: &str = r#"SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END FROM generate_series( array_lower(string_to_array(current_setting('search_path'),','),1), array_upper(string_to_array(current_setting('search_path'),','),1) ) as i, string_to_array(current_setting('search_path'),',') s"#;

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
    let mut out = Cow::Borrowed(text);
    for (pattern, replacement) in IDIOMS.iter() {
        if pattern.is_match(&out) {
            out = Cow::Owned(pattern.replace_all(&out, *replacement).into_owned());
        }
    }
    out
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
}
