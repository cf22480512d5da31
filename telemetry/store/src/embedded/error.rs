//! [`StoreError`]: what can go wrong in the embedded store, with the file or
//! table concerned and what to do about it.

use vigil_model::SourceError;

/// Why an embedded-store operation failed.
///
/// Every variant names the database file (and the table where one is involved)
/// so a message in a log is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or created (missing directory, permissions).
    #[error("cannot open embedded store {path}: {source}; check that the directory exists and is writable")]
    Open {
        /// The database file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file exists but is not an SQLite database, or is damaged.
    #[error("{path} is not a usable SQLite database ({detail}); move the file aside or point the store at another path — Vigil never overwrites it")]
    NotADatabase {
        /// The database file.
        path: String,
        /// SQLite's description of the problem.
        detail: String,
    },
    /// The file was written by a newer Vigil whose schema this binary does not know.
    #[error("embedded store {path} has schema version {found}, but this Vigil knows versions up to {supported}; upgrade Vigil or use another file")]
    SchemaTooNew {
        /// The database file.
        path: String,
        /// The version recorded in `schema_migrations`.
        found: i64,
        /// The newest version this binary can migrate to.
        supported: i64,
    },
    /// A schema migration failed; it was rolled back and the file is as before.
    #[error(
        "migration to schema version {version} of {path} failed and was rolled back: {source}"
    )]
    Migration {
        /// The database file.
        path: String,
        /// The version being applied.
        version: i64,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A statement on one table failed.
    #[error("embedded store {path}, table {table}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The table the statement worked on.
        table: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A batch was refused before anything of it was kept.
    #[error("telemetry batch refused, nothing of it was stored: {0}")]
    InvalidBatch(String),
    /// A stored row does not decode (a chunk of the wrong size, unknown names, bad JSON).
    #[error("embedded store {path}, table {table}: stored row is damaged: {detail}; restore the file from a backup or delete the affected rows")]
    Damaged {
        /// The database file.
        path: String,
        /// The table holding the row.
        table: &'static str,
        /// What does not decode.
        detail: String,
    },
    /// A state payload could not be turned into JSON.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// The blocking task running SQLite panicked or was cancelled.
    #[error(
        "embedded store {path}: background task failed: {detail}; this is a bug, please report it"
    )]
    Task {
        /// The database file.
        path: String,
        /// What the runtime reported.
        detail: String,
    },
}

impl StoreError {
    /// Wraps a SQLite error on `table`, recognising damaged files.
    pub(crate) fn sqlite(path: &str, table: &'static str, source: rusqlite::Error) -> Self {
        if let Some(detail) = not_a_database(&source) {
            return Self::NotADatabase {
                path: path.to_owned(),
                detail,
            };
        }
        Self::Sqlite {
            path: path.to_owned(),
            table,
            source,
        }
    }
}

/// SQLite's description when `error` means the file is not (or no longer) a database.
pub(crate) fn not_a_database(error: &rusqlite::Error) -> Option<String> {
    match error {
        rusqlite::Error::SqliteFailure(failure, message)
            if matches!(
                failure.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            Some(message.clone().unwrap_or_else(|| failure.to_string()))
        }
        _ => None,
    }
}

impl From<StoreError> for SourceError {
    fn from(error: StoreError) -> Self {
        const BACKEND: &str = "embedded";
        match error {
            StoreError::Open { ref path, .. } | StoreError::NotADatabase { ref path, .. } => {
                SourceError::Unavailable {
                    backend: BACKEND,
                    address: path.clone(),
                    detail: error.to_string(),
                }
            }
            StoreError::SchemaTooNew { .. } | StoreError::Migration { .. } => SourceError::Schema {
                backend: BACKEND,
                table: "schema_migrations".to_owned(),
                detail: error.to_string(),
            },
            StoreError::Damaged { table, .. } => SourceError::Schema {
                backend: BACKEND,
                table: table.to_owned(),
                detail: error.to_string(),
            },
            StoreError::InvalidBatch(detail) => SourceError::InvalidRequest(detail),
            StoreError::Sqlite { .. } | StoreError::Encode { .. } | StoreError::Task { .. } => {
                SourceError::Query {
                    backend: BACKEND,
                    detail: error.to_string(),
                }
            }
        }
    }
}
