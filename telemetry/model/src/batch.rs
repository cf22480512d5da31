//! [`TelemetryBatch`]: aggregated telemetry ready to be stored, as the simulator
//! and the agent's ingest path produce it.

use serde::{Deserialize, Serialize};

use crate::entity::Topology;
use crate::signal::{
    EdgeMetrics, Event, Profile, RequestSample, RequestSeries, ResourceSeries, StatementStats,
};
use crate::time::Timestamp;

/// Statement statistics of one shape for one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementStep {
    /// Start of the step.
    pub time: Timestamp,
    /// The shape's statistics within the step.
    pub stats: StatementStats,
}

/// Aggregated telemetry for some stretch of time. Stores merge batches: writing
/// the same entity and minute twice keeps the later values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryBatch {
    /// Entities and relations the batch's signals refer to.
    pub topology: Topology,
    /// Request metrics per serving entity.
    pub requests: Vec<RequestSeries>,
    /// Request metrics per call edge.
    pub edges: Vec<EdgeMetrics>,
    /// Resource metrics.
    pub resources: Vec<ResourceSeries>,
    /// Statement and command statistics per step.
    pub statements: Vec<StatementStep>,
    /// Example slow or failed requests.
    pub samples: Vec<RequestSample>,
    /// On-CPU profiles.
    pub profiles: Vec<Profile>,
    /// Events.
    pub events: Vec<Event>,
}

impl TelemetryBatch {
    /// Number of data points the batch carries (for throughput figures).
    pub fn point_count(&self) -> usize {
        let request_points: usize = self.requests.iter().map(|s| s.metrics.len() * 6).sum();
        let edge_points: usize = self.edges.iter().map(|s| s.metrics.len() * 6).sum();
        let resource_points: usize = self.resources.iter().map(|s| s.series.values.len()).sum();
        request_points
            + edge_points
            + resource_points
            + self.statements.len()
            + self.samples.len()
            + self.profiles.iter().map(|p| p.stacks.len()).sum::<usize>()
            + self.events.len()
    }
}
