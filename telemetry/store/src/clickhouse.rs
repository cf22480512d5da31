//! ClickHouse: reads DeepFlow 6.6 tables and Vigil's own; DDL and migrations.
//!
//! [`ClickHouseStore`] implements [`vigil_model::TelemetrySource`] by sending
//! aggregating SQL (`GROUP BY`, `quantiles`) so only per-step results cross the
//! wire. It works against the ClickHouse 23.8 that DeepFlow 6.6 ships and newer,
//! and against Debian's 18.16 used in tests: every query uses only functions
//! both have, casts every selected column to the exact Rust type, and binds
//! values with `?` only.
//!
//! # Which rows count
//! A request observed by DeepFlow can appear several times in `l7_flow_log`:
//! once per observation point (client process, client NIC, server NIC, server
//! process, OpenTelemetry span…). Vigil counts **server-side observations
//! only**: rows whose `observation_point` starts with `s` (`s`, `s-p`, `s-app`,
//! `s-nd`…), whatever their `signal_source`. A server on a host without an agent is
//! therefore not seen; in exchange nothing is counted twice.
//!
//! # Identity
//! The serving entity of a row is, in order:
//! 1. `service:<app_service>` when the row carries an OpenTelemetry service name;
//! 2. `<kind>:<container>` when Vigil's agent recorded the container behind the
//!    server process (in [`schema::ENTITIES`]: a `container:<name>` entity with
//!    `ip`, `pid`, `port`/`ports` and `process_name` attributes; for the agent's
//!    own request log, its `container_name_1` column);
//! 3. `<kind>:<process_kname>@<ip>:<port>`, e.g. `database:mysqld@10.0.0.5:3306`.
//!
//! `<kind>` comes from the server's protocol ([`vigil_model::L7Protocol::server_kind`]):
//! MySQL/PostgreSQL → `database`, Redis → `cache`, anything else → `service`.
//! A client is named like the same process is named when it serves (looked up
//! by ip and pid among the range's server-side rows), else by its container,
//! else `service:<process_kname>@<ip>`. The small identity maps are loaded
//! first and applied in SQL with `transform(key, [..], [..], default)`, so
//! grouping still happens in ClickHouse.

mod config;
mod error;
mod read;
mod rows;
pub mod schema;
mod sql;
mod write;

use std::time::Duration;

use clickhouse::Client;
use serde::Deserialize;

pub use config::{ClickHouseConfig, ConfigProblem, RequestLog};
pub use error::ClickHouseError;
pub use schema::{Migration, MigrationReport, TableSpec, MIGRATIONS};
pub use write::ProfileCompression;

use error::classify;
use sql::Sql;

/// The oldest server on which the `clickhouse` crate's row validation works.
///
/// Validation reads results as `RowBinaryWithNamesAndTypes` and describes
/// tables with the `describe_include_subcolumns` setting; 18.16 has neither
/// ("Unknown setting describe_include_subcolumns"). 23.8, the version DeepFlow
/// 6.6 ships, has both, so validation is on from there and off below (where
/// every query casts its columns to the exact Rust types instead).
pub const VALIDATION_MIN_VERSION: (u32, u32) = (23, 8);

/// A ClickHouse server holding DeepFlow's tables and Vigil's own.
///
/// Cheap to clone: clones share one HTTP connection pool.
#[derive(Clone, Debug)]
pub struct ClickHouseStore {
    client: Client,
    config: ClickHouseConfig,
    version: String,
    validation: bool,
}

#[derive(clickhouse::Row, Deserialize)]
struct VersionRow {
    version: String,
}

impl ClickHouseStore {
    /// Validates `config`, connects, and asks the server its version
    /// (`SELECT version()`), so a wrong address fails here with one clear
    /// error instead of at the first patrol.
    ///
    /// Row validation of the `clickhouse` crate is enabled on servers at or
    /// above [`VALIDATION_MIN_VERSION`] and disabled below.
    pub async fn connect(config: ClickHouseConfig) -> Result<Self, ClickHouseError> {
        config.validate().map_err(ClickHouseError::Config)?;
        let base = Client::default()
            .with_url(config.url.clone())
            .with_user(config.user.clone())
            .with_password(config.password.clone())
            .with_validation(false);
        let probe = Self {
            client: base.clone(),
            config,
            version: String::new(),
            validation: false,
        };
        let rows: Vec<VersionRow> = probe
            .fetch(
                Sql::new("SELECT toString(version()) AS version"),
                "system",
                "version check",
            )
            .await?;
        let version = rows
            .into_iter()
            .next()
            .map(|row| row.version)
            .unwrap_or_default();
        let validation = parse_version(&version).is_some_and(|v| v >= VALIDATION_MIN_VERSION);
        tracing::info!(url = %probe.config.url, %version, validation, "connected to ClickHouse");
        Ok(Self {
            client: base.with_validation(validation),
            version,
            validation,
            config: probe.config,
        })
    }

    /// The server's version string, e.g. `23.8.16.40` or `18.16.1`.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// Whether the crate's row validation is on (see [`VALIDATION_MIN_VERSION`]).
    pub fn validation_enabled(&self) -> bool {
        self.validation
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    /// The fully qualified name of one of Vigil's tables (the Distributed one in cluster mode).
    pub fn vigil_table(&self, table: &TableSpec) -> String {
        format!("{}.{}", self.config.database, table.name)
    }

    /// Creates Vigil's database and applies every migration not yet applied,
    /// in order, recording each in `schema_migrations`. Safe to run again:
    /// applied versions are skipped and all DDL is `IF NOT EXISTS`.
    pub async fn migrate(&self) -> Result<MigrationReport, ClickHouseError> {
        let database = &self.config.database;
        let cluster = self.config.cluster.as_deref();
        self.execute(&schema::create_database_sql(database, cluster), database)
            .await?;
        for ddl in schema::create_table_sql(database, &schema::SCHEMA_MIGRATIONS, cluster) {
            self.execute(&ddl, "schema_migrations").await?;
        }
        let applied = self.applied_versions().await?;
        let mut report = MigrationReport::default();
        for migration in MIGRATIONS {
            if applied.contains(&migration.version) {
                report.already_applied.push(migration.version);
                continue;
            }
            for table in migration.tables {
                for ddl in schema::create_table_sql(database, table, cluster) {
                    self.execute(&ddl, table.name).await.map_err(|error| {
                        ClickHouseError::Migration {
                            version: migration.version,
                            description: migration.description,
                            detail: error.to_string(),
                        }
                    })?;
                }
            }
            let row = rows::MigrationRow {
                time: now_secs(),
                version: migration.version,
                description: migration.description.to_owned(),
            };
            self.insert(&self.vigil_table(&schema::SCHEMA_MIGRATIONS), &[row])
                .await?;
            report
                .applied
                .push((migration.version, migration.description));
        }
        report.current_version = MIGRATIONS
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or_default();
        Ok(report)
    }

    /// Versions recorded in `schema_migrations`, ascending and without duplicates.
    pub async fn applied_versions(&self) -> Result<Vec<u32>, ClickHouseError> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Row {
            version: u32,
        }
        let table = self.vigil_table(&schema::SCHEMA_MIGRATIONS);
        let rows: Vec<Row> = self
            .fetch(
                Sql::new(&format!(
                    "SELECT toUInt32(version) AS version FROM {table} GROUP BY version ORDER BY version"
                )),
                &table,
                "reading applied migrations",
            )
            .await?;
        Ok(rows.into_iter().map(|row| row.version).collect())
    }

    /// **Tests and demos only.** Creates DeepFlow's databases and the mirror
    /// tables Vigil reads (`l7_flow_log`, `application.1m`,
    /// `application_map.1m`, `in_process`) with DeepFlow's column names and
    /// types that exist in 18.16. Never run it against a real DeepFlow: there
    /// the tables exist and belong to DeepFlow.
    pub async fn create_deepflow_mirror(&self) -> Result<(), ClickHouseError> {
        let config = &self.config;
        let tables = [
            (&config.flow_log_database, schema::DEEPFLOW_L7_FLOW_LOG),
            (
                &config.flow_metrics_database,
                schema::DEEPFLOW_APPLICATION_1M,
            ),
            (
                &config.flow_metrics_database,
                schema::DEEPFLOW_APPLICATION_MAP_1M,
            ),
            (&config.profile_database, schema::DEEPFLOW_IN_PROCESS),
        ];
        for (database, table) in tables {
            self.execute(&schema::create_database_sql(database, None), database)
                .await?;
            for ddl in schema::create_table_sql(database, &table, None) {
                self.execute(&ddl, table.name).await?;
            }
        }
        Ok(())
    }

    /// Runs one statement that returns no rows.
    async fn execute(&self, text: &str, table: &str) -> Result<(), ClickHouseError> {
        let query = self.client.query(text);
        self.timed(query.execute(), table, "DDL").await
    }

    /// Runs `sql` and decodes every result row as `T`.
    async fn fetch<T>(&self, sql: Sql, table: &str, what: &str) -> Result<Vec<T>, ClickHouseError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let query = sql.into_query(&self.client);
        self.timed(query.fetch_all::<T>(), table, what).await
    }

    /// Inserts `rows` into `table` (a backquoted or plain `db.table` name) as one batch.
    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), ClickHouseError>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite + Sync,
    {
        self.insert_rows::<T, &T>(table, rows).await
    }

    /// Inserts `rows` into `table` as one batch, each serialised as it comes:
    /// rows built on the fly may borrow their text from the caller's data.
    async fn insert_rows<'r, T, R>(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = R, IntoIter: Send> + Send,
    ) -> Result<(), ClickHouseError>
    where
        T: clickhouse::RowWrite,
        R: std::borrow::Borrow<T::Value<'r>> + Send,
    {
        let mut rows = rows.into_iter().peekable();
        if rows.peek().is_none() {
            return Ok(());
        }
        let work = async {
            let mut insert = self.client.insert_unescaped::<T>(table).await?;
            for row in rows {
                insert.write(row.borrow()).await?;
            }
            insert.end().await
        };
        self.timed(work, table, "insert").await
    }

    /// Awaits `work` within the configured timeout and classifies its error.
    pub(crate) async fn timed<T>(
        &self,
        work: impl std::future::Future<Output = clickhouse::error::Result<T>>,
        table: &str,
        what: &str,
    ) -> Result<T, ClickHouseError> {
        match tokio::time::timeout(self.config.timeout(), work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error, &self.config.url, table, what)),
            Err(_) => Err(ClickHouseError::Unreachable {
                url: self.config.url.clone(),
                detail: format!(
                    "no answer within {}s ({what} on {table}); check the address or raise timeout_secs",
                    self.config.timeout_secs
                ),
            }),
        }
    }
}

/// `(major, minor)` of a version string like `23.8.16.40`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some((major, minor))
}

fn now_secs() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_server_version() {
        assert_eq!(parse_version("18.16.1"), Some((18, 16)));
        assert_eq!(parse_version("23.8.16.40"), Some((23, 8)));
        assert!(parse_version("18.16.1").is_some_and(|v| v < VALIDATION_MIN_VERSION));
        assert!(parse_version("23.8.2.7").is_some_and(|v| v >= VALIDATION_MIN_VERSION));
        assert!(parse_version("24.3.1").is_some_and(|v| v >= VALIDATION_MIN_VERSION));
        assert_eq!(parse_version("garbage"), None);
    }
}
