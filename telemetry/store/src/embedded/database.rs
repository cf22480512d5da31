//! The one SQLite connection of a store, with the interned entity ids.
//!
//! Every method here is synchronous and runs on a blocking thread; the async
//! facade in `embedded.rs` is the only way in.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use vigil_model::EntityId;

use super::error::{not_a_database, StoreError};
use super::schema;

/// A connection plus the entity table held in memory both ways.
///
/// The maps only ever hold rows that are committed: a write collects new ids
/// separately and adds them after its transaction commits, so a rolled-back
/// batch cannot leave a dangling id behind.
pub(crate) struct Database {
    /// The connection.
    pub connection: Connection,
    /// The file, as shown in errors (`:memory:` for in-memory stores).
    pub path: String,
    /// Row of each known entity.
    pub entity_rows: HashMap<EntityId, i64>,
    /// Entity of each known row.
    pub entity_ids: HashMap<i64, EntityId>,
}

impl Database {
    /// Opens (creating if needed) the file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let label = path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).map_err(|source| {
            match not_a_database(&source) {
                Some(detail) => StoreError::NotADatabase {
                    path: label.clone(),
                    detail,
                },
                None => StoreError::Open {
                    path: label.clone(),
                    source,
                },
            }
        })?;
        Self::prepare(connection, label, true)
    }

    /// A private in-memory database, for tests and throwaway runs.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let label = ":memory:".to_owned();
        let connection = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: label.clone(),
            source,
        })?;
        Self::prepare(connection, label, false)
    }

    fn prepare(
        mut connection: Connection,
        path: String,
        on_disk: bool,
    ) -> Result<Self, StoreError> {
        let pragma_error = |source| StoreError::sqlite(&path, "sqlite_master", source);
        // Reading the schema is the first access to the file: a non-SQLite file fails here.
        connection
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(pragma_error)?;
        if on_disk {
            // WAL lets readers run during a write; NORMAL sync is durable across
            // process crashes and only risks the last commit on power loss.
            let mode: String = connection
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(pragma_error)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path, mode, "embedded store could not switch to WAL mode");
            }
        }
        connection
            .execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 5000;
                 PRAGMA cache_size = -65536;
                 PRAGMA temp_store = MEMORY;",
            )
            .map_err(pragma_error)?;
        connection.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut connection, &path)?;
        let mut database = Self {
            connection,
            path,
            entity_rows: HashMap::new(),
            entity_ids: HashMap::new(),
        };
        database.load_entities()?;
        Ok(database)
    }

    /// Reloads the entity maps from the table (after opening or deleting rows).
    pub fn load_entities(&mut self) -> Result<(), StoreError> {
        let mut rows = HashMap::new();
        let mut ids = HashMap::new();
        let mut statement = self
            .connection
            .prepare("SELECT id, name FROM entity")
            .map_err(|source| StoreError::sqlite(&self.path, "entity", source))?;
        let mut cursor = statement
            .query([])
            .map_err(|source| StoreError::sqlite(&self.path, "entity", source))?;
        while let Some(row) = cursor
            .next()
            .map_err(|source| StoreError::sqlite(&self.path, "entity", source))?
        {
            let row_id: i64 = row
                .get(0)
                .map_err(|source| StoreError::sqlite(&self.path, "entity", source))?;
            let name: String = row
                .get(1)
                .map_err(|source| StoreError::sqlite(&self.path, "entity", source))?;
            let id: EntityId = name.parse().map_err(|error| StoreError::Damaged {
                path: self.path.clone(),
                table: "entity",
                detail: format!("row {row_id}: {error}"),
            })?;
            rows.insert(id.clone(), row_id);
            ids.insert(row_id, id);
        }
        drop(cursor);
        drop(statement);
        self.entity_rows = rows;
        self.entity_ids = ids;
        Ok(())
    }

    /// The entity stored under `row`, or a damage error naming `table`.
    pub fn entity(&self, row: i64, table: &'static str) -> Result<&EntityId, StoreError> {
        self.entity_ids
            .get(&row)
            .ok_or_else(|| StoreError::Damaged {
                path: self.path.clone(),
                table,
                detail: format!("refers to entity row {row}, which does not exist"),
            })
    }

    /// Wraps a SQLite error on `table` of this file.
    pub fn error(&self, table: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::sqlite(&self.path, table, source)
    }
}
