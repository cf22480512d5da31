//! [`TelemetrySource`]: how analysis reads telemetry, at the level of meaning
//! ("request series of these services"), never of tables.
//!
//! Implementations aggregate where the data lives (ClickHouse does the grouping
//! and quantiles; the embedded store reads pre-aggregated minutes), so callers
//! never pull raw rows.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::batch::StatementStep;
use crate::entity::{EntityId, EntityKind, L7Protocol, Topology};
use crate::signal::{
    CallEdge, EdgeMetrics, Event, Profile, RequestSample, RequestSeries, ResourceMetric,
    ResourceSeries, StatementStats,
};
use crate::time::TimeRange;

/// Why a telemetry query failed. Each variant says what a user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The backend cannot be reached (down, wrong address, refused credentials).
    #[error("{backend} is unreachable at {address}: {detail}")]
    Unavailable {
        /// `clickhouse` or `embedded`.
        backend: &'static str,
        /// Where it was looked for.
        address: String,
        /// The underlying error.
        detail: String,
    },
    /// A table or column Vigil needs is missing or has another type.
    #[error("{backend} schema: table {table}: {detail}")]
    Schema {
        /// `clickhouse` or `embedded`.
        backend: &'static str,
        /// The table concerned.
        table: String,
        /// What is missing or wrong, and what to do.
        detail: String,
    },
    /// The backend answered with an error.
    #[error("{backend} query failed: {detail}")]
    Query {
        /// `clickhouse` or `embedded`.
        backend: &'static str,
        /// The backend's message.
        detail: String,
    },
    /// The request itself is not valid (e.g. a zero step).
    #[error("invalid telemetry request: {0}")]
    InvalidRequest(String),
}

/// Which entities a query is about. Empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityFilter {
    /// Only entities of these kinds.
    #[serde(default)]
    pub kinds: Vec<EntityKind>,
    /// Only these entities.
    #[serde(default)]
    pub ids: Vec<EntityId>,
}

impl EntityFilter {
    /// Every entity.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every entity of the given kinds.
    pub fn kinds(kinds: &[EntityKind]) -> Self {
        Self {
            kinds: kinds.to_vec(),
            ids: Vec::new(),
        }
    }

    /// Exactly these entities.
    pub fn ids(ids: &[EntityId]) -> Self {
        Self {
            kinds: Vec::new(),
            ids: ids.to_vec(),
        }
    }

    /// Whether `id` passes the filter.
    pub fn matches(&self, id: &EntityId) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&id.kind()))
            && (self.ids.is_empty() || self.ids.contains(id))
    }
}

/// A request for series: which entities, over what time, at what step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesQuery {
    /// Which entities.
    pub filter: EntityFilter,
    /// Over what time (widened to whole steps).
    pub range: TimeRange,
    /// Seconds per step; a multiple of 60.
    pub step_secs: u32,
}

impl SeriesQuery {
    /// Checks the step: stores keep minutes, so steps are whole minutes.
    pub fn validate(&self) -> Result<(), SourceError> {
        validate_step(self.step_secs)
    }
}

fn validate_step(step_secs: u32) -> Result<(), SourceError> {
    if step_secs == 0 || !step_secs.is_multiple_of(60) {
        return Err(SourceError::InvalidRequest(format!(
            "step_secs must be a positive multiple of 60, got {step_secs}"
        )));
    }
    Ok(())
}

/// How to order statement statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatementOrder {
    /// Slowest p99 first.
    P99,
    /// Most total time first (the shapes that cost the server most).
    TotalTime,
    /// Most errors first.
    Errors,
}

/// A request for statement or command statistics of databases and caches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementQuery {
    /// Only this server; all when `None`.
    pub server: Option<EntityId>,
    /// Only this protocol; all database and cache protocols when `None`.
    pub protocol: Option<L7Protocol>,
    /// Over what time.
    pub range: TimeRange,
    /// Order of the result.
    pub order: StatementOrder,
    /// At most this many rows.
    pub limit: usize,
}

/// A request for statement statistics per step, for detectors that need a
/// shape's history rather than a window summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementStepQuery {
    /// Only this server; all when `None`.
    pub server: Option<EntityId>,
    /// Only this protocol; all database and cache protocols when `None`.
    pub protocol: Option<L7Protocol>,
    /// Over what time (widened to whole steps).
    pub range: TimeRange,
    /// Seconds per step; a multiple of 60.
    pub step_secs: u32,
}

impl StatementStepQuery {
    /// Checks the step, as [`SeriesQuery::validate`] does.
    pub fn validate(&self) -> Result<(), SourceError> {
        validate_step(self.step_secs)
    }
}

/// A request for example slow or failed requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleQuery {
    /// Only requests served by this entity; all when `None`.
    pub server: Option<EntityId>,
    /// Over what time.
    pub range: TimeRange,
    /// Requests at least this slow, ms.
    pub min_duration_ms: f64,
    /// Also return failed requests of any duration.
    pub include_errors: bool,
    /// At most this many, slowest first.
    pub limit: usize,
}

/// Telemetry as analysis needs it. Implemented by the ClickHouse reader
/// (DeepFlow's tables and the agent's) and by the embedded store.
///
/// Every method answers for one time range; results are sorted by entity id (or
/// as documented) so equal data gives equal answers from every implementation.
#[async_trait]
pub trait TelemetrySource: Send + Sync {
    /// `clickhouse` or `embedded`: for messages and reports.
    fn backend(&self) -> &'static str;

    /// Entities seen in the range and how they relate.
    async fn topology(&self, range: TimeRange) -> Result<Topology, SourceError>;

    /// Request metrics per serving entity, one series per entity, sorted by id.
    async fn request_series(&self, query: &SeriesQuery) -> Result<Vec<RequestSeries>, SourceError>;

    /// Request metrics per client→server edge whose client or server passes the filter.
    async fn edge_series(&self, query: &SeriesQuery) -> Result<Vec<EdgeMetrics>, SourceError>;

    /// Every client→server edge active in the range, summarised, sorted by (client, server).
    async fn call_edges(&self, range: TimeRange) -> Result<Vec<CallEdge>, SourceError>;

    /// One resource metric per entity, sorted by id.
    async fn resource_series(
        &self,
        query: &SeriesQuery,
        metric: ResourceMetric,
    ) -> Result<Vec<ResourceSeries>, SourceError>;

    /// Statement shapes or commands of databases and caches, ordered as asked.
    async fn top_statements(
        &self,
        query: &StatementQuery,
    ) -> Result<Vec<StatementStats>, SourceError>;

    /// Statement statistics per (server, shape, step), steps with executions
    /// only, sorted by (time, server, shape): the per-step view of `top_statements`.
    async fn statement_steps(
        &self,
        query: &StatementStepQuery,
    ) -> Result<Vec<StatementStep>, SourceError>;

    /// Example slow or failed requests, slowest first.
    async fn slow_requests(&self, query: &SampleQuery) -> Result<Vec<RequestSample>, SourceError>;

    /// On-CPU profile of one process (or service) over the range, heaviest stacks first.
    async fn profile(&self, entity: &EntityId, range: TimeRange) -> Result<Profile, SourceError>;

    /// Events in the range, oldest first.
    async fn events(&self, range: TimeRange) -> Result<Vec<Event>, SourceError>;

    /// One number from a backend-native read-only query (a playbook's query
    /// check), with `{start}`/`{end}` standing for the window's bounds in unix
    /// seconds. Backends without a query language refuse it.
    async fn query_scalar(&self, query: &str, range: TimeRange) -> Result<f64, SourceError> {
        let _ = (query, range);
        Err(SourceError::InvalidRequest(format!(
            "the {} backend does not run queries; query checks need ClickHouse",
            self.backend()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn filter_combines_kinds_and_ids() {
        let redis = EntityId::new(EntityKind::Cache, "redis@h1:6379");
        let api = EntityId::new(EntityKind::Service, "api");
        assert!(EntityFilter::all().matches(&redis));
        assert!(EntityFilter::kinds(&[EntityKind::Cache]).matches(&redis));
        assert!(!EntityFilter::kinds(&[EntityKind::Cache]).matches(&api));
        assert!(!EntityFilter::ids(std::slice::from_ref(&api)).matches(&redis));
    }

    #[test]
    fn step_must_be_whole_minutes() {
        let range = TimeRange::new(Timestamp(0), Timestamp(3600)).expect("valid");
        let query = |step_secs| SeriesQuery {
            filter: EntityFilter::all(),
            range,
            step_secs,
        };
        assert!(query(60).validate().is_ok());
        assert!(query(300).validate().is_ok());
        assert!(query(0).validate().is_err());
        assert!(query(90).validate().is_err());
        let statements = |step_secs| StatementStepQuery {
            server: None,
            protocol: None,
            range,
            step_secs,
        };
        assert!(statements(300).validate().is_ok());
        assert!(statements(0).validate().is_err());
        assert!(statements(30).validate().is_err());
    }
}
