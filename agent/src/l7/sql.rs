//! SQL statement shapes: literals become `?`, whitespace collapses, `IN (?, ?, …)`
//! lists fold to `IN (?)`, so one shape stands for every call of a statement.

/// The statement with string and number literals replaced by `?`.
pub fn shape(sql: &str, obfuscate: bool) -> String {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut last_space = true;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
            i += 1;
            continue;
        }
        last_space = false;
        if obfuscate && (c == '\'' || c == '"') {
            // A quoted literal ('' and \' escape the quote); a truncated one ends the text.
            i += 1;
            while i < chars.len() {
                if chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push('?');
            continue;
        }
        let prev_ident = out
            .chars()
            .last()
            .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '.' || p == '`' || p == '$');
        if obfuscate && c.is_ascii_digit() && !prev_ident {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push('?');
            continue;
        }
        out.push(c);
        i += 1;
    }
    let mut shaped = out.trim().trim_end_matches(';').trim_end().to_owned();
    if obfuscate {
        shaped = fold_lists(&shaped);
    }
    shaped
}

/// `(?, ?, ?)` → `(?)`.
fn fold_lists(s: &str) -> String {
    let mut out = s.to_owned();
    while out.contains("?, ?") || out.contains("?,?") {
        out = out.replace("?, ?", "?").replace("?,?", "?");
    }
    out
}

/// The statement's verb in upper case (`SELECT`, `INSERT`, …).
pub fn verb(sql: &str) -> String {
    sql.trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn verbs() {
        assert_eq!(verb("  select 1"), "SELECT");
        assert_eq!(verb("(SELECT 1) UNION (SELECT 2)"), "SELECT");
    }
}
