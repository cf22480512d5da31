//! SQL statement shapes: literals become `?`, whitespace collapses, `IN (?, ?, …)`
//! lists fold to `IN (?)`, so one shape stands for every call of a statement.

use vigil_model::{SmolStr, StrExt};

/// Writes `sql`'s shape into `out`, replacing what it held: with `obfuscate`,
/// string and number literals become `?` and `?, ?` lists fold to one `?`.
pub fn shape_into(sql: &str, obfuscate: bool, out: &mut String) {
    out.clear();
    let mut chars = sql.chars().peekable();
    let mut last_space = true;
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
            continue;
        }
        last_space = false;
        if obfuscate && (c == '\'' || c == '"') {
            // A quoted literal ('' and \' escape the quote); a truncated one ends the text.
            while let Some(inner) = chars.next() {
                if inner == '\\' {
                    chars.next();
                } else if inner == c {
                    if chars.peek() != Some(&c) {
                        break;
                    }
                    chars.next();
                }
            }
            push_placeholder(out, obfuscate);
            continue;
        }
        let prev_ident = out
            .chars()
            .next_back()
            .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '.' || p == '`' || p == '$');
        if obfuscate && c.is_ascii_digit() && !prev_ident {
            while chars
                .next_if(|n| n.is_ascii_alphanumeric() || *n == '.')
                .is_some()
            {}
            push_placeholder(out, obfuscate);
            continue;
        }
        if c == '?' {
            push_placeholder(out, obfuscate);
        } else {
            out.push(c);
        }
    }
    let end = out.trim_end().trim_end_matches(';').trim_end().len();
    out.truncate(end);
}

/// Pushes a `?`; with `fold`, a `?` right after `?, ` or `?,` replaces the
/// separator instead (`(?, ?, ?)` → `(?)`).
fn push_placeholder(out: &mut String, fold: bool) {
    if fold {
        for separator in ["?, ", "?,"] {
            if out.ends_with(separator) {
                out.truncate(out.len() - separator.len() + 1);
                return;
            }
        }
    }
    out.push('?');
}

/// The statement's verb in upper case (`SELECT`, `INSERT`, …).
pub fn verb(sql: &str) -> SmolStr {
    sql.trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase_smolstr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sql: &str, obfuscate: bool) -> String {
        let mut out = String::new();
        shape_into(sql, obfuscate, &mut out);
        out
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(shape("SELECT SLEEP(0.3)", true), "SELECT SLEEP(?)");
        assert_eq!(
            shape("select * from t1 where id = 42 and name='o''neil'  ;", true),
            "select * from t1 where id = ? and name=?"
        );
        assert_eq!(
            shape(
                "SELECT a FROM t2 WHERE x IN (1, 2, 3) AND y = \"s\\\"q\"",
                true
            ),
            "SELECT a FROM t2 WHERE x IN (?) AND y = ?"
        );
        assert_eq!(shape("SELECT -1.5e3", true), "SELECT -?");
    }

    #[test]
    fn identifiers_with_digits_are_kept() {
        assert_eq!(shape("SELECT c1 FROM t2", true), "SELECT c1 FROM t2");
    }

    #[test]
    fn no_obfuscation_keeps_values() {
        assert_eq!(shape("SELECT  1", false), "SELECT 1");
    }

    #[test]
    fn placeholders_fold_like_lists_of_literals() {
        assert_eq!(
            shape("INSERT INTO t VALUES (?, ?,?), ('a', 2)", true),
            "INSERT INTO t VALUES (?), (?)"
        );
        assert_eq!(shape("SELECT ? , ?", true), "SELECT ? , ?");
        assert_eq!(shape("SELECT 'unterminated", true), "SELECT ?");
        assert_eq!(shape("SELECT 1;  ", true), "SELECT ?");
    }

    #[test]
    fn verbs() {
        assert_eq!(verb("  select 1"), "SELECT");
        assert_eq!(verb("(SELECT 1) UNION (SELECT 2)"), "SELECT");
    }
}
