//! [`ClickHouseError`]: what can go wrong talking to ClickHouse, classified so a
//! user knows whether to fix the address, the schema, or report a bug.

use vigil_model::SourceError;

use super::config::ConfigProblem;

const BACKEND: &str = "clickhouse";

/// Why a ClickHouse operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The configuration is not usable; nothing was sent.
    #[error("invalid clickhouse config: {}", join(.0))]
    Config(Vec<ConfigProblem>),
    /// The server could not be reached, did not answer in time, or refused the credentials.
    #[error("clickhouse is unreachable at {url}: {detail}")]
    Unreachable {
        /// The configured URL.
        url: String,
        /// What happened (connection refused, timeout, authentication failed…).
        detail: String,
    },
    /// A table or column Vigil needs is missing or has another type.
    #[error("clickhouse table {table}: {detail}")]
    Schema {
        /// The table the failing statement read or wrote.
        table: String,
        /// What is missing, with the server's message.
        detail: String,
    },
    /// Applying a schema migration failed; earlier versions stay applied.
    #[error("clickhouse migration {version} ({description}) failed: {detail}")]
    Migration {
        /// The migration's version.
        version: u32,
        /// What the migration does.
        description: &'static str,
        /// The server's message.
        detail: String,
    },
    /// The server answered with an error, or an answer that does not decode.
    #[error("clickhouse {what} failed: {detail}")]
    Query {
        /// What Vigil was doing (e.g. `request series from flow_log.l7_flow_log`).
        what: String,
        /// The server's or the client's message.
        detail: String,
    },
    /// The request was refused before anything was sent (e.g. a bad step).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn join(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<ClickHouseError> for SourceError {
    fn from(error: ClickHouseError) -> Self {
        match error {
            ClickHouseError::Unreachable { url, detail } => SourceError::Unavailable {
                backend: BACKEND,
                address: url,
                detail,
            },
            ClickHouseError::Schema { table, detail } => SourceError::Schema {
                backend: BACKEND,
                table,
                detail,
            },
            ClickHouseError::Migration { .. } => SourceError::Schema {
                backend: BACKEND,
                table: "schema_migrations".to_owned(),
                detail: error.to_string(),
            },
            ClickHouseError::InvalidRequest(detail) => SourceError::InvalidRequest(detail),
            ClickHouseError::Config(_) | ClickHouseError::Query { .. } => SourceError::Query {
                backend: BACKEND,
                detail: error.to_string(),
            },
        }
    }
}

/// ClickHouse error codes meaning "a table, database or column is missing or
/// has another type" (UNKNOWN_IDENTIFIER, NO_SUCH_COLUMN_IN_TABLE,
/// NOT_FOUND_COLUMN_IN_BLOCK, ILLEGAL_TYPE_OF_ARGUMENT, UNKNOWN_TABLE,
/// UNKNOWN_DATABASE, THERE_IS_NO_COLUMN).
const SCHEMA_CODES: [u32; 7] = [47, 16, 10, 43, 60, 81, 8];
/// Authentication failures (UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD,
/// AUTHENTICATION_FAILED): the server is there but refuses us.
const AUTH_CODES: [u32; 4] = [192, 193, 194, 516];

/// Classifies an error of the `clickhouse` crate. `table` is the table the
/// statement works on, `what` says what Vigil was doing.
pub(crate) fn classify(
    error: clickhouse::error::Error,
    url: &str,
    table: &str,
    what: &str,
) -> ClickHouseError {
    use clickhouse::error::Error;
    match error {
        Error::Network(source) => ClickHouseError::Unreachable {
            url: url.to_owned(),
            detail: source_chain(source.as_ref()),
        },
        Error::TimedOut => ClickHouseError::Unreachable {
            url: url.to_owned(),
            detail: "timed out".to_owned(),
        },
        Error::BadResponse(message) => classify_server_message(&message, url, table, what),
        other => ClickHouseError::Query {
            what: what.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// Classifies a server exception text by its `Code: N` prefix.
pub(crate) fn classify_server_message(
    message: &str,
    url: &str,
    table: &str,
    what: &str,
) -> ClickHouseError {
    let message = message.trim();
    let code = server_code(message);
    if code.is_some_and(|code| AUTH_CODES.contains(&code)) {
        return ClickHouseError::Unreachable {
            url: url.to_owned(),
            detail: format!("credentials refused: {message}"),
        };
    }
    if code.is_some_and(|code| SCHEMA_CODES.contains(&code)) {
        let detail = match missing_column(message) {
            Some(column) => format!(
                "column `{column}` is missing or has another type (is this DeepFlow 6.6's schema?); server said: {message}"
            ),
            None => format!("missing or incompatible table or column; server said: {message}"),
        };
        return ClickHouseError::Schema {
            table: table.to_owned(),
            detail,
        };
    }
    ClickHouseError::Query {
        what: what.to_owned(),
        detail: message.to_owned(),
    }
}

/// The numeric code of a server exception (`Code: 47, e.displayText() = …` in
/// 18.16, `Code: 47. DB::Exception: …` in 23.8).
fn server_code(message: &str) -> Option<u32> {
    let rest = &message[message.find("Code: ")? + "Code: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The column a schema error names, in the wordings of 18.16 and 23.8+.
fn missing_column(message: &str) -> Option<String> {
    for marker in [
        "Unknown identifier: ",
        "Missing columns: '",
        "There's no column '",
        "Unknown expression identifier `",
        "Unknown expression or function identifier `",
        "Not found column ",
    ] {
        if let Some(position) = message.find(marker) {
            let rest = &message[position + marker.len()..];
            let column: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect();
            if !column.is_empty() {
                return Some(column);
            }
        }
    }
    None
}

fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_column_is_a_schema_error_in_both_dialects() {
        let old = "Code: 47, e.displayText() = DB::Exception: Unknown identifier: response_duration, e.what() = DB::Exception";
        let new = "Code: 47. DB::Exception: Missing columns: 'response_duration' while processing query: 'SELECT …', required columns: 'response_duration' 'time'. (UNKNOWN_IDENTIFIER) (version 23.8.1.1)";
        for message in [old, new] {
            match classify_server_message(message, "http://x", "flow_log.l7_flow_log", "q") {
                ClickHouseError::Schema { table, detail } => {
                    assert_eq!(table, "flow_log.l7_flow_log");
                    assert!(detail.contains("`response_duration`"), "{detail}");
                }
                other => panic!("expected schema error, got {other:?}"),
            }
        }
    }

    #[test]
    fn refused_credentials_are_unreachable() {
        let message = "Code: 516. DB::Exception: default: Authentication failed";
        assert!(matches!(
            classify_server_message(message, "http://x", "t", "q"),
            ClickHouseError::Unreachable { .. }
        ));
    }

    #[test]
    fn other_errors_are_query_errors() {
        let message = "Code: 62. DB::Exception: Syntax error";
        let error = classify_server_message(message, "http://x", "t", "request series");
        assert!(matches!(error, ClickHouseError::Query { .. }));
        assert!(matches!(
            SourceError::from(error),
            SourceError::Query {
                backend: "clickhouse",
                ..
            }
        ));
    }
}
