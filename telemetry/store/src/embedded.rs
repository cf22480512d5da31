//! The embedded SQLite store: the default telemetry store and Vigil's state.
//!
//! One file holds the same telemetry the ClickHouse reader exposes — request,
//! edge and resource series as hour chunks of per-minute columns, plus
//! statements, samples, profiles, events and topology as plain tables — and
//! Vigil's own patrol runs, reports and incidents, which live here whichever
//! telemetry backend is configured.
//!
//! All SQLite work runs on tokio's blocking pool behind one connection, so the
//! async runtime never waits on disk. Read rules (resampling, merging) are
//! documented on [`EmbeddedStore`]'s `TelemetrySource` implementation.

mod agent;
mod chunk;
mod database;
mod error;
mod ingest;
mod query;
mod schema;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::params;
use tokio::sync::mpsc;
use vigil_model::{
    aggregate_records, AggregateOptions, CallEdge, DeliveryRecord, EdgeMetrics, EntityId, Event,
    FindingMark, IngestBatch, IngestReceipt, Profile, RequestSample, RequestSeries, ResourceMetric,
    ResourceSeries, SampleQuery, SeriesQuery, SourceError, StatementQuery, StatementStats,
    StatementStep, StatementStepQuery, TelemetryBatch, TelemetryIngest, TelemetrySource, TimeRange,
    Timestamp, Topology,
};

use database::Database;
pub use error::StoreError;
pub use ingest::WriteStats;
pub use schema::LATEST_VERSION as SCHEMA_VERSION;
pub use state::{Incident, IncidentFeedback, IncidentStatus, ReportContent, StoredReport};
pub use vigil_model::{PatrolOutcome, PatrolRun};

/// How long data is kept. Defaults suit a single host: a week of telemetry
/// (enough for week-over-week baselines), three months of reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedOptions {
    /// Days of telemetry kept by [`EmbeddedStore::apply_retention`]; 0 keeps everything.
    pub retention_days: u32,
    /// Days of reports, finished patrol runs, deliveries and expired marks
    /// kept; 0 keeps everything.
    /// Incidents are never deleted: they are the memory similar problems are matched against.
    pub report_retention_days: u32,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            retention_days: 7,
            report_retention_days: 90,
        }
    }
}

/// What [`EmbeddedStore::apply_retention`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionStats {
    /// Hour chunks of request, edge and resource series.
    pub chunks: usize,
    /// Statement minutes, samples, profiles and events.
    pub rows: usize,
    /// Entities and relations last seen before the cut-off.
    pub topology: usize,
    /// Reports, patrol runs, deliveries and expired marks.
    pub state: usize,
}

struct Shared {
    path: String,
    options: EmbeddedOptions,
    database: Mutex<Database>,
    /// Serialises agent ingests: each re-aggregates whole minutes, so two at
    /// once could write a minute from fewer requests than are stored.
    ingest: tokio::sync::Mutex<()>,
}

/// The embedded store. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

const SECS_PER_DAY: i64 = 86_400;

impl EmbeddedStore {
    /// Opens the store at `path`, creating the file and schema when missing and
    /// migrating an older schema. Refuses files that are not SQLite databases and
    /// files written by a newer Vigil, without touching them.
    pub async fn open(path: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let owned: PathBuf = path.to_owned();
        let label = path.display().to_string();
        let database = tokio::task::spawn_blocking(move || Database::open(&owned))
            .await
            .map_err(|error| StoreError::Task {
                path: label.clone(),
                detail: error.to_string(),
            })??;
        Ok(Self::from_database(database, options))
    }

    /// A private in-memory store with default options, for tests and dry runs.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(Self::from_database(
            Database::open_in_memory()?,
            EmbeddedOptions::default(),
        ))
    }

    fn from_database(database: Database, options: EmbeddedOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                path: database.path.clone(),
                options,
                database: Mutex::new(database),
                ingest: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The database file, as shown in messages.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &EmbeddedOptions {
        &self.shared.options
    }

    /// Runs `work` on the blocking pool with the connection.
    ///
    /// A panic inside `work` poisons the mutex; the connection is still sound
    /// (an open transaction rolled back when it unwound, and the entity maps are
    /// only changed after commits), so later calls go on using it.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Database) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut database = shared
                .database
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            work(&mut database)
        })
        .await
        .map_err(|error| StoreError::Task {
            path: self.shared.path.clone(),
            detail: error.to_string(),
        })?
    }

    /// Stores a batch in one transaction: all of it or, on any error, none of it.
    ///
    /// Idempotent per entity and minute: a minute written again takes the later
    /// values, minutes a batch leaves `NaN` keep what was stored. Samples,
    /// statement minutes, profiles and events are keyed the same way, so
    /// rewriting a batch changes nothing.
    pub async fn write(&self, batch: &TelemetryBatch) -> Result<WriteStats, StoreError> {
        let span = ingest::validate(batch)?;
        let points = batch.point_count();
        let (sender, receiver) = mpsc::channel(4);
        let shared = Arc::clone(&self.shared);
        let writer = tokio::task::spawn_blocking(move || {
            let mut database = shared
                .database
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            database.write_batch(span, points, receiver)
        });
        // When the writer fails it stops receiving; its error is the one that matters.
        ingest::send_parts(batch, &sender).await;
        drop(sender);
        writer.await.map_err(|error| StoreError::Task {
            path: self.shared.path.clone(),
            detail: error.to_string(),
        })?
    }

    /// Stores what an agent sent: its raw requests are kept, and every minute
    /// they touch is re-aggregated from all of that minute's requests and
    /// written as a batch (see [`vigil_model::aggregate_records`]); profiles
    /// and resource series are written as they are. Sending the same batch
    /// again changes nothing.
    ///
    /// The raw rows are written first; if the aggregate write then fails, the
    /// agent's retry stores nothing twice and writes the aggregates again.
    pub async fn ingest_agent(&self, batch: &IngestBatch) -> Result<IngestReceipt, StoreError> {
        let mut receipt = IngestReceipt {
            protocol: vigil_model::INGEST_PROTOCOL_VERSION,
            records: batch.records.len(),
            profiles: batch.profiles.len(),
            resources: batch.resources.len(),
            minutes: 0,
        };
        if batch.is_empty() {
            return Ok(receipt);
        }
        let _one_at_a_time = self.shared.ingest.lock().await;
        let mut telemetry = TelemetryBatch::default();
        if !batch.records.is_empty() {
            let records = batch.records.clone();
            let (all, minutes) = self
                .run(move |database| database.store_agent_records(&records))
                .await?;
            receipt.minutes = minutes;
            telemetry = aggregate_records(&all, &AggregateOptions::default());
        }
        telemetry.profiles = batch.profiles.clone();
        telemetry.resources = batch.resources.clone();
        self.write(&telemetry).await?;
        Ok(receipt)
    }

    /// Deletes telemetry older than `retention_days` before `now`, and reports
    /// and finished patrol runs older than `report_retention_days`.
    ///
    /// Series are deleted by whole hours, so up to an hour more than asked may
    /// remain. The file does not shrink; SQLite reuses the freed pages.
    pub async fn apply_retention(&self, now: Timestamp) -> Result<RetentionStats, StoreError> {
        let options = self.shared.options.clone();
        self.run(move |database| database.apply_retention(now, &options))
            .await
    }

    /// Inserts or replaces a patrol run (save it when it starts and again when it ends).
    pub async fn save_patrol_run(&self, run: &PatrolRun) -> Result<(), StoreError> {
        let run = run.clone();
        self.run(move |database| database.save_patrol_run(&run))
            .await
    }

    /// The patrol run `id`, if stored.
    pub async fn patrol_run(&self, id: &str) -> Result<Option<PatrolRun>, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.patrol_run(&id)).await
    }

    /// Up to `limit` patrol runs, latest start first, of one playbook or all.
    pub async fn list_patrol_runs(
        &self,
        playbook_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PatrolRun>, StoreError> {
        let playbook_id = playbook_id.map(str::to_owned);
        self.run(move |database| database.list_patrol_runs(playbook_id.as_deref(), limit))
            .await
    }

    /// Inserts or replaces a report.
    pub async fn save_report(&self, report: &StoredReport) -> Result<(), StoreError> {
        let report = report.clone();
        self.run(move |database| database.save_report(&report))
            .await
    }

    /// The report `id`, if stored.
    pub async fn report(&self, id: &str) -> Result<Option<StoredReport>, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.report(&id)).await
    }

    /// Up to `limit` reports, latest first, of one playbook or all.
    pub async fn list_reports(
        &self,
        playbook_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredReport>, StoreError> {
        let playbook_id = playbook_id.map(str::to_owned);
        self.run(move |database| database.list_reports(playbook_id.as_deref(), limit))
            .await
    }

    /// Inserts or replaces an incident.
    pub async fn save_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let incident = incident.clone();
        self.run(move |database| database.save_incident(&incident))
            .await
    }

    /// The incident `id`, if stored.
    pub async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.incident(&id)).await
    }

    /// The open incident with `fingerprint`, if any: where a new detection of the
    /// same problem should be attached instead of opening another.
    pub async fn open_incident(&self, fingerprint: &str) -> Result<Option<Incident>, StoreError> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |database| database.open_incident(&fingerprint))
            .await
    }

    /// Up to `limit` incidents, latest opened first, with one status or any.
    pub async fn list_incidents(
        &self,
        status: Option<IncidentStatus>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.run(move |database| database.list_incidents(status, limit))
            .await
    }

    /// Marks an open incident resolved; `false` when it is not open or unknown.
    pub async fn resolve_incident(&self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.run(move |database| database.resolve_incident(&id, at))
            .await
    }

    /// Records an acknowledgement or suppression of a finding.
    pub async fn save_mark(&self, mark: &FindingMark) -> Result<(), StoreError> {
        let mark = mark.clone();
        self.run(move |database| database.save_mark(&mark)).await
    }

    /// Acknowledgements and suppressions in force at `now` (the latest per finding).
    pub async fn active_marks(&self, now: Timestamp) -> Result<Vec<FindingMark>, StoreError> {
        self.run(move |database| database.active_marks(now)).await
    }

    /// Ends a finding's marks at `now`; returns how many were in force.
    pub async fn clear_marks(
        &self,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let fingerprint = fingerprint.to_owned();
        self.run(move |database| database.clear_marks(&fingerprint, now))
            .await
    }

    /// Keeps a record of notification deliveries.
    pub async fn save_deliveries(&self, records: &[DeliveryRecord]) -> Result<(), StoreError> {
        let records = records.to_vec();
        self.run(move |database| database.save_deliveries(&records))
            .await
    }

    /// Up to `limit` delivery records, latest first.
    pub async fn list_deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.run(move |database| database.list_deliveries(limit))
            .await
    }

    /// Records an operator's feedback on an incident; `false` when unknown.
    pub async fn set_incident_feedback(
        &self,
        id: &str,
        feedback: &IncidentFeedback,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let feedback = feedback.clone();
        self.run(move |database| database.set_incident_feedback(&id, &feedback))
            .await
    }
}

impl Database {
    fn apply_retention(
        &mut self,
        now: Timestamp,
        options: &EmbeddedOptions,
    ) -> Result<RetentionStats, StoreError> {
        let mut stats = RetentionStats::default();
        let path = self.path.clone();
        let transaction = self
            .connection
            .transaction()
            .map_err(|source| StoreError::sqlite(&path, "schema_migrations", source))?;
        let execute = |table: &'static str, sql: &str, cutoff: i64| {
            transaction
                .execute(sql, params![cutoff])
                .map_err(|source| StoreError::sqlite(&path, table, source))
        };
        let mut topology_changed = false;
        if options.retention_days > 0 {
            let cutoff = now.secs() - i64::from(options.retention_days) * SECS_PER_DAY;
            let chunk_cutoff = cutoff - chunk::CHUNK_SECS;
            for table in ["request_chunk", "edge_chunk", "resource_chunk"] {
                stats.chunks += execute(
                    table,
                    &format!("DELETE FROM {table} WHERE chunk_start <= ?1"),
                    chunk_cutoff,
                )?;
            }
            stats.rows += execute(
                "statement_minute",
                "DELETE FROM statement_minute WHERE minute < ?1",
                cutoff,
            )?;
            // Shapes with no minute left; `?1` is unused but keeps one statement form.
            execute(
                "statement_shape",
                "DELETE FROM statement_shape WHERE ?1 IS NOT NULL
                   AND id NOT IN (SELECT DISTINCT shape FROM statement_minute)",
                cutoff,
            )?;
            stats.rows += execute(
                "request_sample",
                "DELETE FROM request_sample WHERE time < ?1",
                cutoff,
            )?;
            execute(
                "profile_stack",
                "DELETE FROM profile_stack WHERE profile IN (SELECT id FROM profile WHERE range_end <= ?1)",
                cutoff,
            )?;
            stats.rows += execute(
                "profile",
                "DELETE FROM profile WHERE range_end <= ?1",
                cutoff,
            )?;
            stats.rows += execute("event", "DELETE FROM event WHERE time < ?1", cutoff)?;
            stats.rows += execute(
                "agent_request",
                "DELETE FROM agent_request WHERE minute < ?1",
                cutoff,
            )?;
            stats.topology += execute(
                "relation",
                "DELETE FROM relation WHERE last_seen <= ?1",
                cutoff,
            )?;
            // Chunks of an entity can outlive its last-seen time by up to an hour
            // (whole-hour deletion), so entities are kept as long as their chunks.
            let removed = execute(
                "entity",
                "DELETE FROM entity WHERE last_seen <= ?1
                   AND id NOT IN (SELECT entity FROM request_chunk)
                   AND id NOT IN (SELECT entity FROM resource_chunk)
                   AND id NOT IN (SELECT client FROM edge_chunk)
                   AND id NOT IN (SELECT server FROM edge_chunk)
                   AND id NOT IN (SELECT server FROM statement_shape)
                   AND id NOT IN (SELECT from_entity FROM relation)
                   AND id NOT IN (SELECT to_entity FROM relation)",
                cutoff,
            )?;
            stats.topology += removed;
            // What survives was seen since the cut-off at the earliest, as far as the store can still tell.
            execute(
                "entity",
                "UPDATE entity SET first_seen = ?1 WHERE first_seen < ?1",
                cutoff,
            )?;
            execute(
                "relation",
                "UPDATE relation SET first_seen = ?1 WHERE first_seen < ?1",
                cutoff,
            )?;
            topology_changed = removed > 0;
        }
        if options.report_retention_days > 0 {
            let cutoff = now.secs() - i64::from(options.report_retention_days) * SECS_PER_DAY;
            stats.state += execute("report", "DELETE FROM report WHERE created_at < ?1", cutoff)?;
            stats.state += execute(
                "patrol_run",
                "DELETE FROM patrol_run WHERE ended_at IS NOT NULL AND ended_at < ?1",
                cutoff,
            )?;
            stats.state += execute("delivery", "DELETE FROM delivery WHERE at < ?1", cutoff)?;
            stats.state += execute(
                "finding_mark",
                "DELETE FROM finding_mark WHERE expires_at < ?1",
                cutoff,
            )?;
        }
        transaction
            .commit()
            .map_err(|source| StoreError::sqlite(&path, "entity", source))?;
        if topology_changed {
            self.load_entities()?;
        }
        Ok(stats)
    }
}

/// Telemetry read back at any whole-minute step.
///
/// Merging rules, for resampling to a step and for window summaries:
/// - requests and errors are summed; a step with no measured minute is `NaN`;
/// - mean latency is the request-weighted mean of the minutes' means;
/// - in `request_series`/`edge_series`, p50/p90/p99 of a step are the maximum
///   of its minutes' values: an upper bound of the true quantile, exact at a
///   one-minute step;
/// - in `call_edges`, `top_statements` and `statement_steps`, the window's (or
///   step's) p99 is the request-weighted 99th percentile of the per-minute p99s
///   (exact when every minute has the same distribution, and always within the
///   minutes' p99s); statement maxima are the maximum of the minutes';
/// - resources: CPU and memory are averaged over the step, TCP retransmits and
///   resets summed.
///
/// Windows are widened to whole steps (whole minutes for summaries); samples
/// and events use the range as given.
#[async_trait]
impl TelemetryIngest for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ingest(&self, batch: &IngestBatch) -> Result<IngestReceipt, SourceError> {
        Ok(self.ingest_agent(batch).await?)
    }
}

#[async_trait]
impl TelemetrySource for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn topology(&self, range: TimeRange) -> Result<Topology, SourceError> {
        Ok(self.run(move |database| database.topology(range)).await?)
    }

    async fn request_series(&self, query: &SeriesQuery) -> Result<Vec<RequestSeries>, SourceError> {
        query.validate()?;
        let query = query.clone();
        Ok(self
            .run(move |database| database.request_series(&query))
            .await?)
    }

    async fn edge_series(&self, query: &SeriesQuery) -> Result<Vec<EdgeMetrics>, SourceError> {
        query.validate()?;
        let query = query.clone();
        Ok(self
            .run(move |database| database.edge_series(&query))
            .await?)
    }

    async fn call_edges(&self, range: TimeRange) -> Result<Vec<CallEdge>, SourceError> {
        Ok(self.run(move |database| database.call_edges(range)).await?)
    }

    async fn resource_series(
        &self,
        query: &SeriesQuery,
        metric: ResourceMetric,
    ) -> Result<Vec<ResourceSeries>, SourceError> {
        query.validate()?;
        let query = query.clone();
        Ok(self
            .run(move |database| database.resource_series(&query, metric))
            .await?)
    }

    async fn top_statements(
        &self,
        query: &StatementQuery,
    ) -> Result<Vec<StatementStats>, SourceError> {
        let query = query.clone();
        Ok(self
            .run(move |database| database.top_statements(&query))
            .await?)
    }

    async fn statement_steps(
        &self,
        query: &StatementStepQuery,
    ) -> Result<Vec<StatementStep>, SourceError> {
        query.validate()?;
        let query = query.clone();
        Ok(self
            .run(move |database| database.statement_steps(&query))
            .await?)
    }

    async fn slow_requests(&self, query: &SampleQuery) -> Result<Vec<RequestSample>, SourceError> {
        let query = query.clone();
        Ok(self
            .run(move |database| database.slow_requests(&query))
            .await?)
    }

    async fn profile(&self, entity: &EntityId, range: TimeRange) -> Result<Profile, SourceError> {
        let entity = entity.clone();
        Ok(self
            .run(move |database| database.profile(&entity, range))
            .await?)
    }

    async fn events(&self, range: TimeRange) -> Result<Vec<Event>, SourceError> {
        Ok(self.run(move |database| database.events(range)).await?)
    }
}
