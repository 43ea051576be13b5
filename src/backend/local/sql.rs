//! Quoting for the SQL that the local engines are sent. PostgreSQL and
//! DuckDB follow the standard here, so one pair of functions serves both.

/// Quotes an identifier: `"name"`, with any `"` doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal: `'text'`, with any `'` doubled. Backslashes
/// stay as they are, as both engines read standard strings by default.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_nothing_else_changes() {
        assert_eq!(ident("user_purchase"), r#""user_purchase""#);
        assert_eq!(ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(literal("/tmp/it's"), "'/tmp/it''s'");
        assert_eq!(literal(r"C:\dir"), r"'C:\dir'");
    }
}
