//! The embedded store's schema and its versioned migrations.
//!
//! Migrations are applied in order, each in its own transaction, and recorded in
//! `schema_migrations`. A file whose recorded version is newer than
//! [`LATEST_VERSION`] is refused rather than guessed at.

use rusqlite::{Connection, OptionalExtension};

use super::error::{not_a_database, StoreError};

/// One step of the schema, applied once.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// The migrations this binary knows, oldest first. Never edit a released one:
/// add a new version instead.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "telemetry chunks, topology, statements, samples, profiles, events, state",
        sql: r#"
-- Interned entity ids; first/last seen bound the span of batches that mentioned them.
CREATE TABLE entity (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
);
CREATE TABLE relation (
    from_entity INTEGER NOT NULL,
    to_entity   INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (from_entity, to_entity, kind)
) WITHOUT ROWID;

-- Per-minute columns, one row per hour: little-endian f64, NaN where nothing was measured.
CREATE TABLE request_chunk (
    chunk_start INTEGER NOT NULL,
    entity      INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (chunk_start, entity)
);
CREATE TABLE edge_chunk (
    chunk_start INTEGER NOT NULL,
    client      INTEGER NOT NULL,
    server      INTEGER NOT NULL,
    protocol    INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (chunk_start, client, server, protocol)
);
-- Edge series of a few named entities are looked up from either end.
CREATE INDEX edge_chunk_by_client ON edge_chunk (client, chunk_start);
CREATE INDEX edge_chunk_by_server ON edge_chunk (server, chunk_start);
CREATE TABLE resource_chunk (
    chunk_start INTEGER NOT NULL,
    metric      TEXT NOT NULL,
    entity      INTEGER NOT NULL,
    data        BLOB NOT NULL,
    PRIMARY KEY (chunk_start, metric, entity)
);

CREATE TABLE statement_shape (
    id           INTEGER PRIMARY KEY,
    server       INTEGER NOT NULL,
    protocol     INTEGER NOT NULL,
    request_type TEXT NOT NULL,
    shape        TEXT NOT NULL,
    UNIQUE (server, protocol, request_type, shape)
);
CREATE TABLE statement_minute (
    minute          INTEGER NOT NULL,
    shape           INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    errors          INTEGER NOT NULL,
    latency_mean_ms REAL NOT NULL,
    latency_p99_ms  REAL NOT NULL,
    latency_max_ms  REAL NOT NULL,
    PRIMARY KEY (minute, shape)
) WITHOUT ROWID;

CREATE TABLE request_sample (
    time         INTEGER NOT NULL,
    server       INTEGER NOT NULL,
    client       INTEGER NOT NULL, -- 0 when the caller is unknown
    protocol     INTEGER NOT NULL,
    request_type TEXT NOT NULL,
    resource     TEXT NOT NULL,
    duration_ms  REAL NOT NULL,
    status       INTEGER NOT NULL,
    code         INTEGER,
    trace_id     TEXT NOT NULL,    -- '' when none
    UNIQUE (time, server, client, request_type, resource, duration_ms, trace_id)
);
CREATE INDEX request_sample_by_duration ON request_sample (duration_ms);

CREATE TABLE profile (
    id          INTEGER PRIMARY KEY,
    entity      INTEGER NOT NULL,
    range_start INTEGER NOT NULL,
    range_end   INTEGER NOT NULL,
    unit        TEXT NOT NULL,
    UNIQUE (entity, range_start, range_end, unit)
);
CREATE TABLE profile_stack (
    profile INTEGER NOT NULL,
    frames  TEXT NOT NULL,
    value   INTEGER NOT NULL,
    PRIMARY KEY (profile, frames)
) WITHOUT ROWID;

CREATE TABLE event (
    time   INTEGER NOT NULL,
    entity INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (time, entity, kind, detail)
) WITHOUT ROWID;

-- Vigil's own state.
CREATE TABLE patrol_run (
    id          TEXT PRIMARY KEY,
    playbook_id TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT NOT NULL,
    findings    INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX patrol_run_by_start ON patrol_run (started_at);

CREATE TABLE report (
    id            TEXT PRIMARY KEY,
    playbook_id   TEXT,
    patrol_run_id TEXT,
    created_at    INTEGER NOT NULL,
    language      TEXT NOT NULL,
    title         TEXT NOT NULL,
    format        TEXT NOT NULL,
    content       TEXT NOT NULL
);
CREATE INDEX report_by_created ON report (created_at);

CREATE TABLE incident (
    id          TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status      TEXT NOT NULL,
    opened_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    payload     TEXT NOT NULL,
    feedback    TEXT
);
CREATE INDEX incident_by_fingerprint ON incident (fingerprint, status);
CREATE INDEX incident_by_opened ON incident (opened_at);
"#,
    },
    Migration {
        version: 2,
        description: "finding acknowledgements and suppressions, notification deliveries",
        sql: r#"
CREATE TABLE finding_mark (
    fingerprint TEXT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    marked_by   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, created_at)
);
CREATE INDEX finding_mark_by_expiry ON finding_mark (expires_at);

CREATE TABLE delivery (
    message_id  TEXT NOT NULL,
    channel     TEXT NOT NULL,
    route       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    http_status INTEGER,
    at          INTEGER NOT NULL,
    elapsed_ms  INTEGER NOT NULL
);
CREATE INDEX delivery_by_at ON delivery (at);
CREATE INDEX delivery_by_message ON delivery (message_id);
"#,
    },
    Migration {
        version: 3,
        description: "raw agent requests, re-aggregated per minute on ingest",
        sql: r#"
-- One row per request as vigil-agent sent it (JSON); the key makes a resent batch a no-op.
CREATE TABLE agent_request (
    minute INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (minute, record)
) WITHOUT ROWID;
"#,
    },
];

/// The newest schema version this binary can create or migrate to.
pub const LATEST_VERSION: i64 = 3;

/// Brings the schema of `connection` (the file `path`) up to [`LATEST_VERSION`].
pub(crate) fn migrate(connection: &mut Connection, path: &str) -> Result<(), StoreError> {
    let table_error =
        |source: rusqlite::Error| StoreError::sqlite(path, "schema_migrations", source);
    connection
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version     INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at  INTEGER NOT NULL
            )",
        )
        .map_err(table_error)?;
    let current: i64 = connection
        .query_row("SELECT max(version) FROM schema_migrations", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()
        .map_err(table_error)?
        .flatten()
        .unwrap_or(0);
    if current > LATEST_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: current,
            supported: LATEST_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let failed = |source: rusqlite::Error| match not_a_database(&source) {
            Some(detail) => StoreError::NotADatabase {
                path: path.to_owned(),
                detail,
            },
            None => StoreError::Migration {
                path: path.to_owned(),
                version: migration.version,
                source,
            },
        };
        let transaction = connection.transaction().map_err(failed)?;
        transaction.execute_batch(migration.sql).map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version, description, applied_at)
                 VALUES (?1, ?2, CAST(strftime('%s', 'now') AS INTEGER))",
                rusqlite::params![migration.version, migration.description],
            )
            .map_err(failed)?;
        transaction.commit().map_err(failed)?;
        tracing::info!(
            path,
            version = migration.version,
            "embedded store schema migrated"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_in_order_and_end_at_latest() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.last().copied(), Some(LATEST_VERSION));
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut connection = Connection::open_in_memory().expect("open");
        migrate(&mut connection, ":memory:").expect("first");
        migrate(&mut connection, ":memory:").expect("second");
        let rows: i64 = connection
            .query_row("SELECT count(*) FROM schema_migrations", [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(rows, LATEST_VERSION);
    }
}
