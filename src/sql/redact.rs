//! Secrets out of what Weir shows: the values of secret-looking options (`*.password`,
//! `*secret*`, `sasl.*`, `ssl.key.*`, tokens) and the passwords inside URLs become `***`
//! in definitions (`SHOW`, `pg_matviews`, `weir_catalog`, the checkpoint manifest), logs and errors.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::LineIndex;

/// What a hidden value is shown as.
pub const HIDDEN: &str = "***";

/// Is an option (or librdkafka property) named `key` a secret?
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let key = key.strip_prefix("properties.").unwrap_or(&key);
    key.contains("password")
        || key.contains("secret")
        || key.contains("token")
        || key.contains("credential")
        || key.starts_with("sasl.")
        || key.starts_with("ssl.key.")
        || key.ends_with(".key")
        || key == "ssl.keystore.password"
        || key.contains("api.key")
        || key.contains("apikey")
}

/// `text` with the password of every `scheme://user:password@host` replaced, and the
/// value of `password=` / `sslpassword=` in connection strings.
pub fn url_passwords(text: &str) -> String {
    static USERINFO: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'?#]*):[^@\s'/]*@").expect("valid")
    });
    static KEYWORD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)\b((?:ssl)?password\s*=\s*)('[^']*'|[^\s&'?]+)").expect("valid")
    });
    let text = USERINFO.replace_all(text, format!("$1:{HIDDEN}@"));
    KEYWORD
        .replace_all(&text, format!("${{1}}{HIDDEN}"))
        .into_owned()
}

/// A statement's text with its secrets hidden: the string value after `key =` when the
/// key looks secret, and URL passwords anywhere in a string. The rest is kept as written.
pub fn statement(text: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location() else {
        // Not SQL this tokenizer reads: hide what looks like a URL password at least.
        return url_passwords(text);
    };
    let index = LineIndex::new(text);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0usize;
    // The last two tokens that are not whitespace: a key, then `=`.
    let mut key: Option<String> = None;
    let mut after_eq = false;
    for t in &tokens {
        match &t.token {
            Token::Whitespace(_) => continue,
            Token::SingleQuotedString(value)
            | Token::EscapedStringLiteral(value)
            | Token::DoubleQuotedString(value) => {
                let secret = after_eq && key.as_deref().is_some_and(is_secret_key);
                let shown = if secret {
                    Some(HIDDEN.to_string())
                } else {
                    let hidden = url_passwords(value);
                    (hidden != *value).then_some(hidden)
                };
                if let Some(shown) = shown {
                    let start = index.offset(t.span.start.line, t.span.start.column);
                    let end = index.offset(t.span.end.line, t.span.end.column);
                    if start >= copied && end > start && end <= text.len() {
                        out.push_str(&text[copied..start]);
                        out.push('\'');
                        out.push_str(&shown.replace('\'', "''"));
                        out.push('\'');
                        copied = end;
                    }
                }
                key = Some(value.clone());
                after_eq = false;
            }
            Token::Eq => {
                after_eq = true;
                continue;
            }
            Token::Word(w) => {
                key = Some(w.value.clone());
                after_eq = false;
            }
            _ => {
                key = None;
                after_eq = false;
            }
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_options_and_url_passwords_are_hidden() {
        let sql = "CREATE SINK s FROM v WITH (connector = 'postgres', \
                   url = 'postgres://weir:hunter2@db:5432/shop?sslmode=require', table = 't', \
                   'properties.sasl.password' = 'p@ss', 'properties.sasl.username' = 'u', \
                   \"properties.ssl.key.password\" = 'k', token = 'abc', path = '/tmp/x')";
        let shown = statement(sql);
        for secret in ["hunter2", "p@ss", "'k'", "'abc'", "'u'"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in [
            "postgres://weir:***@db:5432/shop?sslmode=require",
            "'properties.sasl.password' = '***'",
            "table = 't'",
            "path = '/tmp/x'",
            "connector = 'postgres'",
        ] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
        // Nothing secret: the text is kept byte for byte.
        let plain =
            "CREATE SOURCE s (a INT)\n  WITH (connector = 'datagen', 'rows.per.second' = '10')";
        assert_eq!(statement(plain), plain);
    }

    #[test]
    fn connection_strings_and_messages_lose_their_passwords() {
        assert_eq!(
            url_passwords("host=db user=weir password=hunter2 dbname=x"),
            "host=db user=weir password=*** dbname=x"
        );
        assert_eq!(
            url_passwords("cannot connect to postgresql://a:b@h/d: refused"),
            "cannot connect to postgresql://a:***@h/d: refused"
        );
        assert_eq!(url_passwords("s3://bucket/a:b/c"), "s3://bucket/a:b/c");
        assert!(is_secret_key("properties.sasl.jaas.config"));
        assert!(!is_secret_key("properties.bootstrap.servers"));
    }
}
