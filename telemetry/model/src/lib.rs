//! Vigil's shared domain model: the words every other crate speaks.
//!
//! Owns the entities of an estate and their stable ids, the signals measured on
//! them (request metrics, resources, slow requests, profiles, events), what the
//! analysis produces from them (anomalies, findings, root-cause candidates), the
//! catalogue of fault kinds, and the [`TelemetrySource`] trait through which all
//! analysis reads telemetry.
//!
//! Does not own any IO: no runtime, no database client, no HTTP, no files. It is
//! the one crate everyone may depend on, so it stays small and pure.

pub mod analysis;
pub mod batch;
pub mod delivery;
pub mod entity;
pub mod fault;
pub mod ingest;
pub mod record;
pub mod report;
pub mod signal;
pub mod source;
pub mod time;

pub use analysis::{Anomaly, Evidence, Finding, RootCauseCandidate, Severity, SignalKind};
pub use batch::{StatementStep, TelemetryBatch};
pub use delivery::{DeliveryOutcome, DeliveryRecord};
pub use entity::{Entity, EntityId, EntityKind, L7Protocol, Relation, RelationKind, Topology};
pub use fault::{FaultKind, PlantedFault};
pub use ingest::{
    aggregate_records, AggregateOptions, IngestBatch, IngestReceipt, TelemetryIngest,
    INGEST_PROTOCOL_VERSION,
};
pub use record::{Peer, RequestRecord};
pub use report::{
    Coverage, CpuConsumer, FindingMark, FindingStatus, GraphLink, Language, LocalizedText,
    MarkKind, PatrolOutcome, PatrolReport, PatrolRun, ReportedFinding, ResolvedFinding, SloStatus,
};
pub use signal::{
    CallEdge, EdgeMetrics, Event, EventKind, FoldedStack, Profile, RequestMetric, RequestMetrics,
    RequestPoint, RequestSample, RequestSeries, ResourceMetric, ResourceSeries, ResponseStatus,
    Series, StatementStats,
};
pub use smol_str::{format_smolstr, SmolStr, SmolStrBuilder, StrExt};
pub use source::{
    EntityFilter, SampleQuery, SeriesQuery, SourceError, StatementOrder, StatementQuery,
    StatementStepQuery, TelemetrySource,
};
pub use time::{TimeRange, Timestamp, MINUTE_SECS};

/// Errors raised when text from outside (config, CLI, files) does not form a valid model value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An entity id is not `<kind>:<name>` with a known kind and a non-empty name.
    #[error("invalid entity id {id:?}: {reason}")]
    InvalidEntityId {
        /// The text that was given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A name that should be one of a fixed set is not.
    #[error("unknown {what} {given:?}; expected one of: {expected}")]
    UnknownName {
        /// What kind of name (e.g. "fault kind").
        what: &'static str,
        /// The text that was given.
        given: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// A time range whose end is not after its start.
    #[error("time range end {end} is not after its start {start}")]
    EmptyRange {
        /// Start, unix seconds.
        start: i64,
        /// End, unix seconds.
        end: i64,
    },
}
